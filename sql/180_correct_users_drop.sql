-- Known limit until session 11: billing refused a TRUNCATE and a DETACH
-- PARTITION of the attached users table (or of a partition of it) while it
-- held anything live for some id (sql/105), but a DROP TABLE of a partition,
-- of the users table, or a DROP SCHEMA ... CASCADE around it, went unseen:
-- the users vanished, their paid subscriptions stayed live and renewing, and
-- an id inserted again took them over. Now such a DROP is refused by the
-- same measure, SQLSTATE and DETAIL (the core's UsersDropRefusal, event
-- trigger billing_after_users_dropped at sql_drop), whatever statement
-- drops the table; allowed once billing holds nothing live, or after
-- billing.detach().
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
DROP SCHEMA IF EXISTS td_app CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY sqlstate
CREATE SCHEMA td_app;
CREATE TABLE td_app.users (id text NOT NULL, region text NOT NULL, country text NOT NULL DEFAULT '',
	PRIMARY KEY (id, region, country)) PARTITION BY LIST (region);
CREATE TABLE td_app.users_us PARTITION OF td_app.users FOR VALUES IN ('us');
CREATE TABLE td_app.users_eu PARTITION OF td_app.users FOR VALUES IN ('eu') PARTITION BY LIST (country);
CREATE TABLE td_app.users_eu_fr PARTITION OF td_app.users_eu FOR VALUES IN ('fr');
CREATE TABLE td_app.notes (id int);
SELECT billing.attach_users('td_app.users', 'id');
-- a partition created after attach_users
CREATE TABLE td_app.users_ap PARTITION OF td_app.users FOR VALUES IN ('ap');
INSERT INTO td_app.users VALUES ('dan', 'us', ''), ('eve', 'eu', 'fr'), ('kei', 'ap', '');
SELECT status FROM billing.subscribe('dan', 'pro_monthly', '2030-01-01', false);
SELECT status FROM billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'dan' AND ended_at IS NULL), 2999, 'usd', true, '2030-01-01');
-- the partition holding dan: refused as its TRUNCATE is (was: dropped, dan's Pro live)
\set VERBOSITY default
DROP TABLE td_app.users_us;
TRUNCATE td_app.users_us;
\set VERBOSITY sqlstate
-- a sub-partition, its partitioned parent, a partition created later, the
-- users table itself, CASCADE, the schema around it: refused the same way
-- (billing does not compare ids: anything live for any id refuses)
DROP TABLE td_app.users_eu_fr;
DROP TABLE td_app.users_eu;
DROP TABLE td_app.users_ap;
DROP TABLE td_app.users;
DROP TABLE td_app.users CASCADE;
DROP TABLE td_app.notes, td_app.users_us;
SET client_min_messages = warning;
DROP SCHEMA td_app CASCADE;
RESET client_min_messages;
-- a table that is no users table drops freely
DROP TABLE td_app.notes;
-- nothing was dropped; dan is on Pro and present
SELECT id, region, country FROM td_app.users ORDER BY id;
SELECT s.user_id, p.code FROM billing.subscriptions s JOIN billing.subscription_plans p ON p.id = s.plan_id
 WHERE s.ended_at IS NULL ORDER BY s.user_id;
-- once billing holds nothing live (dan deleted: his subscription ends, as
-- the row triggers end a deleted user's), the partition drops
DELETE FROM td_app.users WHERE id = 'dan';
SELECT s.user_id, p.code FROM billing.subscriptions s JOIN billing.subscription_plans p ON p.id = s.plan_id
 WHERE s.ended_at IS NULL ORDER BY s.user_id;
DROP TABLE td_app.users_us;
-- live again (kei on Pro): refused; after billing.detach the table is
-- billing's no more and drops
SELECT status FROM billing.subscribe('kei', 'pro_monthly', '2030-01-01', false);
DROP TABLE td_app.users_ap;
SELECT billing.detach('td_app.users');
DROP TABLE td_app.users_ap;
SET client_min_messages = warning;
DROP SCHEMA td_app CASCADE;
RESET client_min_messages;
SELECT count(*) AS users_attachments FROM billing.attachments WHERE kind = 'users';
DROP EXTENSION billing CASCADE;
