-- Known limit until session 10 (attack finding 4.2, test/review/open4/02):
-- PostgreSQL clones a partitioned table's row triggers onto its partitions,
-- not its statement triggers, so the users table's TRUNCATE refusal
-- (billing_user_truncated) fired for the table alone: a TRUNCATE of one
-- partition deleted its users unseen, their paid subscriptions stayed live,
-- and an id inserted again took them over. Now attach_users puts the refusal
-- on every partition (every level), a partition created or attached later
-- gets it (billing._after_partition_change, ddl_command_end), and a DETACH
-- PARTITION is refused by the same measure (55000); allowed, the detached
-- table keeps none of billing's triggers.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
DROP SCHEMA IF EXISTS tp_app CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY sqlstate
CREATE SCHEMA tp_app;
-- users by region; eu by country (a sub-partitioned partition)
CREATE TABLE tp_app.users (id text NOT NULL, region text NOT NULL, country text NOT NULL DEFAULT '',
	PRIMARY KEY (id, region, country)) PARTITION BY LIST (region);
CREATE TABLE tp_app.users_us PARTITION OF tp_app.users FOR VALUES IN ('us');
CREATE TABLE tp_app.users_eu PARTITION OF tp_app.users FOR VALUES IN ('eu') PARTITION BY LIST (country);
CREATE TABLE tp_app.users_eu_fr PARTITION OF tp_app.users_eu FOR VALUES IN ('fr');
SELECT billing.attach_users('tp_app.users', 'id');
INSERT INTO tp_app.users VALUES ('dan', 'us', ''), ('eve', 'eu', 'fr');
SELECT status FROM billing.subscribe('dan', 'pro_monthly', '2030-01-01', false);
SELECT status FROM billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'dan' AND ended_at IS NULL), 2999, 'usd', true, '2030-01-01');
-- the parent: refused (as before)
TRUNCATE tp_app.users;
-- a partition: refused the same way (was: emptied, dan's Pro live)
\set VERBOSITY default
TRUNCATE tp_app.users_us;
\set VERBOSITY sqlstate
-- a sub-partition, and its partitioned parent
TRUNCATE tp_app.users_eu_fr;
TRUNCATE tp_app.users_eu;
-- partitions created and attached after attach_users, at every depth
CREATE TABLE tp_app.users_eu_de PARTITION OF tp_app.users_eu FOR VALUES IN ('de');
CREATE TABLE tp_app.users_ap (id text NOT NULL, region text NOT NULL, country text NOT NULL DEFAULT '',
	PRIMARY KEY (id, region, country)) PARTITION BY LIST (country);
CREATE TABLE tp_app.users_ap_jp PARTITION OF tp_app.users_ap FOR VALUES IN ('jp');
ALTER TABLE tp_app.users ATTACH PARTITION tp_app.users_ap FOR VALUES IN ('ap');
INSERT INTO tp_app.users VALUES ('kei', 'ap', 'jp'), ('max', 'eu', 'de');
SELECT status FROM billing.subscribe('kei', 'pro_monthly', '2030-01-01', false);
SELECT status FROM billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'kei' AND ended_at IS NULL), 2999, 'usd', true, '2030-01-01');
SELECT status FROM billing.subscribe('max', 'pro_monthly', '2030-01-01', false);
TRUNCATE tp_app.users_ap_jp;
TRUNCATE tp_app.users_ap;
TRUNCATE tp_app.users_eu_de;
-- which tables carry billing's TRUNCATE refusal: every level
SELECT tg.tgrelid::regclass AS "table", tg.tgname FROM pg_trigger tg
 WHERE tg.tgname = 'billing_user_truncated' ORDER BY 1::text;
-- detaching a partition takes its users out as a TRUNCATE would: refused too
\set VERBOSITY default
ALTER TABLE tp_app.users DETACH PARTITION tp_app.users_us;
\set VERBOSITY sqlstate
ALTER TABLE tp_app.users_eu DETACH PARTITION tp_app.users_eu_fr;
-- nothing was emptied or detached; everyone is on their plan
SELECT id, region, country FROM tp_app.users ORDER BY id;
SELECT s.user_id, p.code FROM billing.subscriptions s JOIN billing.subscription_plans p ON p.id = s.plan_id
 WHERE s.ended_at IS NULL ORDER BY s.user_id;
-- once billing holds nothing live (the users deleted: their subscriptions
-- end, as the row triggers end a deleted user's), TRUNCATE and DETACH are
-- allowed, and the detached tables keep no billing trigger
DELETE FROM tp_app.users WHERE id IN ('dan', 'kei', 'max');
SELECT s.user_id, p.code FROM billing.subscriptions s JOIN billing.subscription_plans p ON p.id = s.plan_id
 WHERE s.ended_at IS NULL ORDER BY s.user_id;
TRUNCATE tp_app.users_us;
ALTER TABLE tp_app.users DETACH PARTITION tp_app.users_ap;
SELECT tg.tgrelid::regclass AS "table", tg.tgname FROM pg_trigger tg
 WHERE tg.tgrelid IN ('tp_app.users_ap'::regclass, 'tp_app.users_ap_jp'::regclass) ORDER BY 1::text, 2;
TRUNCATE tp_app.users_ap;
-- billing.detach takes the partitions' refusals off too
SELECT billing.detach('tp_app.users');
SELECT count(*) AS billing_truncate_triggers FROM pg_trigger tg WHERE tg.tgname = 'billing_user_truncated';
-- unrelated partitioned tables are left alone
CREATE TABLE tp_app.other (id int) PARTITION BY RANGE (id);
CREATE TABLE tp_app.other_1 PARTITION OF tp_app.other FOR VALUES FROM (0) TO (10);
SELECT count(*) AS billing_truncate_triggers FROM pg_trigger tg WHERE tg.tgname = 'billing_user_truncated';
SET client_min_messages = warning;
DROP SCHEMA tp_app CASCADE;
DROP EXTENSION billing CASCADE;
RESET client_min_messages;
