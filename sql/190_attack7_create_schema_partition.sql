-- attack7 7.1 (session 11 review): a partition of the attached users table
-- created by an element of CREATE SCHEMA (CREATE SCHEMA s CREATE TABLE p
-- PARTITION OF users ...) ran as a subcommand, which fires no event trigger
-- of its own, and the event trigger billing_after_partition_change fired for
-- 'CREATE TABLE' and 'ALTER TABLE' only: the partition went without
-- billing's TRUNCATE refusal (billing_user_truncated), and a TRUNCATE of it
-- deleted its users unseen, attack finding 4.2 again: eve's paid Pro stayed
-- live and a new row 'eve' took it over.
-- SAFE outcome (this expected file): the partition carries the refusal, its
-- TRUNCATE is refused 55000 while billing holds anything live, eve stays.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
DROP SCHEMA IF EXISTS a7_app, a7_eu CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
CREATE ROLE regress_a7_owner LOGIN IN ROLE billing_admin;
GRANT CREATE ON DATABASE :"DBNAME" TO regress_a7_owner;
CREATE SCHEMA a7_app AUTHORIZATION regress_a7_owner;
\c - regress_a7_owner
CREATE TABLE a7_app.users (id text NOT NULL, region text NOT NULL, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE a7_app.users_us PARTITION OF a7_app.users FOR VALUES IN ('us');
SELECT billing.attach_users('a7_app.users', 'id');
-- a partition made by an element of CREATE SCHEMA, and one under it by a plain CREATE TABLE
CREATE SCHEMA a7_eu CREATE TABLE users_eu PARTITION OF a7_app.users FOR VALUES IN ('eu') PARTITION BY LIST (id)
	CREATE TABLE users_eu_e PARTITION OF a7_eu.users_eu FOR VALUES IN ('eve');
CREATE TABLE a7_eu.users_eu_rest PARTITION OF a7_eu.users_eu DEFAULT;
INSERT INTO a7_app.users VALUES ('dan', 'us'), ('eve', 'eu'), ('fay', 'eu');
\c - postgres
SELECT status FROM billing.subscribe('eve', 'pro_monthly', '2030-01-01', false);
SELECT status FROM billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'eve' AND ended_at IS NULL),
	2999, 'usd', true, '2030-01-01');
-- every partition, at every level, carries the refusal
SELECT c.oid::regclass AS "table",
	   EXISTS (SELECT FROM pg_trigger tg WHERE tg.tgrelid = c.oid AND tg.tgname = 'billing_user_truncated') AS refusal
  FROM pg_partition_tree('a7_app.users') t JOIN pg_class c ON c.oid = t.relid ORDER BY 1::text;
\c - regress_a7_owner
\set VERBOSITY sqlstate
TRUNCATE a7_eu.users_eu;
TRUNCATE a7_eu.users_eu_e;
TRUNCATE a7_eu.users_eu_rest;
-- (and its DROP, which main's sql_drop refusal recognises by that trigger)
DROP TABLE a7_eu.users_eu_e;
\set VERBOSITY default
SELECT id, region FROM a7_app.users ORDER BY id;
\c - postgres
SELECT (billing.effective_plan('eve', '2030-01-10')).code;

SET client_min_messages = warning;
DROP EXTENSION billing CASCADE;  -- (eve's Pro is live: the users table may not be dropped under billing)
DROP SCHEMA a7_app, a7_eu CASCADE;
REVOKE CREATE ON DATABASE :"DBNAME" FROM regress_a7_owner;
DROP OWNED BY regress_a7_owner;
DROP ROLE regress_a7_owner;
RESET client_min_messages;
