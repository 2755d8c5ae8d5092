-- Attack (session 8 review 2, hostile tester): deleting a user of the
-- attached users table runs billing.cancel(id, false, now()) inside the
-- application's DELETE, and now() is the DELETE's transaction start. Any
-- subscription whose latest change is later than that makes billing.cancel
-- raise 22023 ("time ... is before the latest change"), and the
-- application's DELETE fails with it: an account cannot be closed. It
-- happens with defaults only (a DELETE transaction that began before a
-- concurrent subscribe, payment or renewal committed; reproduced with two
-- sessions), and billing_app can arrange it on purpose (a lifecycle call
-- dated a minute ahead, or by clock_timestamp() in the same transaction).
-- A subscription row soft-deleted by an operator blocks it as well
-- ("subscription N does not exist").
-- SAFE outcome (this expected file): the DELETE succeeds (the subscription
-- ends no earlier than its latest change, or is left to end later), never
-- 22023 from a trigger the application did not write.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
DROP SCHEMA IF EXISTS atk_app CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY terse
CREATE ROLE regress_atk_migrator LOGIN IN ROLE billing_admin;
CREATE ROLE regress_atk_app LOGIN IN ROLE billing_app;
CREATE SCHEMA atk_app AUTHORIZATION regress_atk_migrator;
\c - regress_atk_migrator
CREATE TABLE atk_app.users (id text PRIMARY KEY);
GRANT USAGE ON SCHEMA atk_app TO regress_atk_app;
GRANT SELECT, INSERT, DELETE ON atk_app.users TO regress_atk_app;
SELECT billing.attach_users('atk_app.users', 'id');
\c - regress_atk_app
INSERT INTO atk_app.users VALUES ('erin'), ('frank');
-- the application's clock is a minute ahead of the database's
SELECT (billing.subscribe('erin', 'pro_monthly', pg_catalog.now() + interval '1 minute', false)).status;
DELETE FROM atk_app.users WHERE id = 'erin';
SELECT count(*) AS erin_rows_left FROM atk_app.users WHERE id = 'erin';
-- a trial dated by the clock, then the account closed, in one transaction
BEGIN;
SELECT (billing.start_trial('frank', 'pro_monthly', pg_catalog.clock_timestamp())).status;
DELETE FROM atk_app.users WHERE id = 'frank';
COMMIT;
SELECT count(*) AS frank_rows_left FROM atk_app.users WHERE id = 'frank';
-- a subscription row soft-deleted by an operator (every billing table has
-- deleted_at): kEndDeletedUser does not skip it, billing.cancel says it
-- does not exist, and the DELETE fails with that
INSERT INTO atk_app.users VALUES ('hank');
\c - postgres
SELECT (billing.subscribe('hank', 'pro_monthly', with_trial => false)).status;
UPDATE billing.subscriptions SET deleted_at = pg_catalog.now()
 WHERE user_id = 'hank' AND ended_at IS NULL AND price_cents > 0;
\c - regress_atk_app
DELETE FROM atk_app.users WHERE id = 'hank';
SELECT count(*) AS hank_rows_left FROM atk_app.users WHERE id = 'hank';
\c - postgres
SET client_min_messages = warning;
-- billing first: a DROP of its users table is refused while it holds anything live (sql/180)
DROP EXTENSION billing CASCADE;
DROP SCHEMA atk_app CASCADE;
DROP OWNED BY regress_atk_migrator, regress_atk_app;
DROP ROLE regress_atk_migrator, regress_atk_app;
RESET client_min_messages;
