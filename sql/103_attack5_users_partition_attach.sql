-- Attack (session 10 review 5, finding 5.4, low): ALTER TABLE ... ATTACH
-- PARTITION of a table that already holds users to an attached, partitioned
-- users table brings those users without the INSERT trigger: none got a
-- Free subscription (attach_users' backfill gives every existing user one),
-- so plan_distribution and every report counting subscriptions missed them.
-- SAFE outcome (this expected file): e1 and e2 are on Free after the attach,
-- as users inserted through the table are; an id billing could not sell a
-- plan to is refused (22023) and the attach with it; a role that does not
-- own the users table gets PostgreSQL's 42501 and billing writes nothing.
-- Before the fix: no subscription for e1 or e2, the long id attached.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
DROP SCHEMA IF EXISTS up_app CASCADE;
DROP ROLE IF EXISTS up_plain;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY sqlstate
CREATE SCHEMA up_app;
CREATE TABLE up_app.users (id text NOT NULL, region text NOT NULL, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE up_app.users_us PARTITION OF up_app.users FOR VALUES IN ('us');
SELECT billing.attach_users('up_app.users', 'id');
INSERT INTO up_app.users VALUES ('u1', 'us');
-- a partition loaded first, then attached (a bulk load)
CREATE TABLE up_app.users_eu (id text NOT NULL, region text NOT NULL, PRIMARY KEY (id, region));
INSERT INTO up_app.users_eu VALUES ('e1', 'eu'), ('e2', 'eu');
ALTER TABLE up_app.users ATTACH PARTITION up_app.users_eu FOR VALUES IN ('eu');
SELECT s.user_id, p.code FROM billing.subscriptions s JOIN billing.subscription_plans p ON p.id = s.plan_id
 WHERE s.ended_at IS NULL ORDER BY s.user_id;
SELECT plan_code, users FROM billing.plan_distribution(pg_catalog.now());
-- an id over 255 bytes: refused, the partition stays detached
CREATE TABLE up_app.users_ap (id text NOT NULL, region text NOT NULL, PRIMARY KEY (id, region));
INSERT INTO up_app.users_ap VALUES (pg_catalog.repeat('x', 300), 'ap'), ('a1', 'ap');
ALTER TABLE up_app.users ATTACH PARTITION up_app.users_ap FOR VALUES IN ('ap');
SELECT count(*) AS ap_attached FROM pg_catalog.pg_inherits WHERE inhrelid = 'up_app.users_ap'::regclass;
SELECT count(*) AS a1_subscribed FROM billing.subscriptions WHERE user_id = 'a1';
-- a plain login with a table of its own: PostgreSQL refuses it, nothing is written
CREATE ROLE up_plain;
GRANT USAGE ON SCHEMA up_app TO up_plain;
CREATE SCHEMA up_plain AUTHORIZATION up_plain;
SET ROLE up_plain;
CREATE TABLE up_plain.mine (id text NOT NULL, region text NOT NULL);
INSERT INTO up_plain.mine VALUES ('forged', 'xx');
ALTER TABLE up_app.users ATTACH PARTITION up_plain.mine FOR VALUES IN ('xx');
RESET ROLE;
SELECT count(*) AS forged_subscribed FROM billing.subscriptions WHERE user_id = 'forged';
SET client_min_messages = warning;
DROP SCHEMA up_app CASCADE;
DROP SCHEMA up_plain CASCADE;
DROP ROLE up_plain;
RESET client_min_messages;
