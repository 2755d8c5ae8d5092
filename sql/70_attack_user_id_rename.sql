-- Attack (session 8 review 2, hostile tester): the fix for finding 67
-- cancels a deleted user's subscriptions, but billing._user_inserted fires
-- on INSERT and DELETE only. An UPDATE of the users table's id column (a
-- renamed account, an e-mail address changed, a username given up) leaves
-- the paid subscription on the old id with no user behind it (it keeps
-- renewing), the renamed user on Free, and whoever signs up next under the
-- old id starts on the previous owner's Enterprise plan: finding 67 again.
-- SAFE outcome (this expected file): the new 'carol' is on Free (e.g. the
-- subscription follows the renamed id, or an UPDATE of the id is refused).
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
GRANT SELECT, INSERT, UPDATE, DELETE ON atk_app.users TO regress_atk_app;
SELECT billing.attach_users('atk_app.users', 'id');
\c - regress_atk_app
INSERT INTO atk_app.users VALUES ('carol');
\c - postgres
SELECT (billing.subscribe('carol', 'enterprise_yearly', with_trial => false)).status;
SELECT (billing.record_payment(s.id, s.price_cents, s.currency, true)).status
  FROM billing.subscriptions s WHERE s.user_id = 'carol' AND s.ended_at IS NULL;
\c - regress_atk_app
-- carol renames her account; later somebody else registers the old name
UPDATE atk_app.users SET id = 'carol_v' WHERE id = 'carol';
INSERT INTO atk_app.users VALUES ('carol');
SELECT (billing.effective_plan('carol')).code AS new_carols_plan;
\c - postgres
SET client_min_messages = warning;
DROP SCHEMA atk_app CASCADE;
DROP OWNED BY regress_atk_migrator, regress_atk_app;
DROP ROLE regress_atk_migrator, regress_atk_app;
RESET client_min_messages;
