-- Attack (session 9 review 4, hostile tester): TRUNCATE of the attached
-- users table is refused while billing holds anything live (trigger
-- billing_user_truncated, BEFORE TRUNCATE FOR EACH STATEMENT). PostgreSQL
-- clones a partitioned table's row triggers onto its partitions, not its
-- statement triggers: billing_user_truncated exists on the parent only, and
-- a TRUNCATE of one partition fires nothing. The table's owner empties a
-- partition: every user in it is gone without the row triggers, their paid
-- subscriptions stay live and renew, their credit stays on the id, and the
-- next user to take one of those ids inherits the old owner's plan (the
-- INSERT trigger finds a current subscription; nothing starts on Free).
-- SAFE outcome (this expected file): TRUNCATE of the partition is refused
-- like the parent's (55000), dan stays in the table and on Pro.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
DROP SCHEMA IF EXISTS tp_app CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY sqlstate
CREATE SCHEMA tp_app;
CREATE TABLE tp_app.users (id text NOT NULL, region text NOT NULL, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE tp_app.users_us PARTITION OF tp_app.users FOR VALUES IN ('us');
CREATE TABLE tp_app.users_eu PARTITION OF tp_app.users FOR VALUES IN ('eu');
SELECT billing.attach_users('tp_app.users', 'id');
INSERT INTO tp_app.users VALUES ('dan', 'us'), ('eve', 'eu');
SELECT status FROM billing.subscribe('dan', 'pro_monthly', pg_catalog.now(), false);
SELECT status FROM billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'dan' AND ended_at IS NULL), 2900, 'usd', true, pg_catalog.now());
-- the parent: refused
TRUNCATE tp_app.users;
-- one partition: should be refused the same way
TRUNCATE tp_app.users_us;
SELECT id, region FROM tp_app.users ORDER BY id;
SELECT s.user_id, p.code, s.ended_at IS NULL AS live
  FROM billing.subscriptions s JOIN billing.subscription_plans p ON p.id = s.plan_id
 WHERE s.user_id IN ('dan', 'eve') AND s.ended_at IS NULL ORDER BY s.user_id;
SET client_min_messages = warning;
DROP SCHEMA tp_app CASCADE;
RESET client_min_messages;
