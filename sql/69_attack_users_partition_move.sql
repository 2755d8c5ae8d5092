-- Attack (session 8 review 2, hostile tester): a deleted user's
-- subscriptions are canceled by billing._user_inserted's DELETE branch
-- (kEndDeletedUser). With a partitioned users table, PostgreSQL runs an
-- UPDATE that moves a row to another partition as a DELETE from the old
-- partition and an INSERT into the new one, and fires the AFTER DELETE and
-- AFTER INSERT row triggers (not AFTER UPDATE). So a profile change (the
-- user's region here) by any role that may UPDATE the users table, not even
-- a member of billing_app, cancels that user's paid Enterprise subscription
-- at once, with no refund, and puts them on Free.
-- SAFE outcome (this expected file): carol is still on enterprise_yearly,
-- her subscription active, after the row moved.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
DROP SCHEMA IF EXISTS atk_app CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY terse
CREATE ROLE regress_atk_migrator LOGIN IN ROLE billing_admin;
CREATE ROLE regress_atk_profile LOGIN;   -- no billing role at all
CREATE SCHEMA atk_app AUTHORIZATION regress_atk_migrator;
\c - regress_atk_migrator
CREATE TABLE atk_app.users (id text NOT NULL, region text NOT NULL, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE atk_app.users_us PARTITION OF atk_app.users FOR VALUES IN ('us');
CREATE TABLE atk_app.users_eu PARTITION OF atk_app.users FOR VALUES IN ('eu');
GRANT USAGE ON SCHEMA atk_app TO regress_atk_profile;
GRANT SELECT, INSERT, UPDATE ON atk_app.users TO regress_atk_profile;
SELECT billing.attach_users('atk_app.users', 'id');
\c - regress_atk_profile
INSERT INTO atk_app.users VALUES ('carol', 'us');
\c - postgres
SELECT (billing.subscribe('carol', 'enterprise_yearly', with_trial => false)).status;
SELECT (billing.record_payment(s.id, s.price_cents, s.currency, true)).status
  FROM billing.subscriptions s WHERE s.user_id = 'carol' AND s.ended_at IS NULL;
-- carol moves to Europe: her row moves to the other partition
\c - regress_atk_profile
UPDATE atk_app.users SET region = 'eu' WHERE id = 'carol';
\c - postgres
SELECT (billing.effective_plan('carol')).code AS carols_plan;
SELECT p.code, s.status, s.ended_at IS NOT NULL AS ended
  FROM billing.subscriptions s JOIN billing.subscription_plans p ON p.id = s.plan_id
 WHERE s.user_id = 'carol' AND p.code <> 'free' ORDER BY s.id;
SET client_min_messages = warning;
-- billing first: a DROP of its users table is refused while it holds anything live (sql/180)
DROP EXTENSION billing CASCADE;
DROP SCHEMA atk_app CASCADE;
DROP OWNED BY regress_atk_migrator, regress_atk_profile;
DROP ROLE regress_atk_migrator, regress_atk_profile;
RESET client_min_messages;
