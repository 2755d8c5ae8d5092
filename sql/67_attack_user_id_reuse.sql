-- Attack (session 8, hostile tester): attach_users promises every new user of
-- the table a Free subscription, but billing keys users by the id's text and
-- ignores DELETE: a deleted user's paid subscription stays current (and goes
-- on renewing), and whoever signs up next under the same id (a recycled
-- username or e-mail address) starts on the previous owner's Enterprise plan.
-- SAFE outcome (this expected file): the new user of a reused id is on Free.
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
INSERT INTO atk_app.users VALUES ('carol');
\c - postgres
SELECT (billing.subscribe('carol', 'enterprise_yearly', with_trial => false)).status;
SELECT (billing.record_payment(s.id, s.price_cents, s.currency, true)).status
  FROM billing.subscriptions s WHERE s.user_id = 'carol' AND s.ended_at IS NULL;
\c - regress_atk_app
SELECT (billing.effective_plan('carol')).code AS carols_plan;
-- carol closes her account; later somebody else registers the name
DELETE FROM atk_app.users WHERE id = 'carol';
INSERT INTO atk_app.users VALUES ('carol');
SELECT (billing.effective_plan('carol')).code AS new_carols_plan;
\c - postgres
-- the deleted user's Enterprise subscription ended at the DELETE, canceled
-- (as Stripe ends a deleted customer's), the Free one it fell back to stays
SELECT p.code, s.status, s.end_reason, s.ended_at IS NOT NULL AS ended
  FROM billing.subscriptions s JOIN billing.subscription_plans p ON p.id = s.plan_id
 WHERE s.user_id = 'carol' ORDER BY s.id;
SET client_min_messages = warning;
DROP SCHEMA atk_app CASCADE;
DROP OWNED BY regress_atk_migrator, regress_atk_app;
DROP ROLE regress_atk_migrator, regress_atk_app;
RESET client_min_messages;
