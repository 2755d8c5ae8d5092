-- Attack (session 8 review 2, hostile tester): the fix for finding 67
-- cancels a deleted user's subscriptions, but billing._user_inserted fires
-- on INSERT and DELETE only. An UPDATE of the users table's id column (a
-- renamed account, an e-mail address changed, a username given up) leaves
-- the paid subscription on the old id with no user behind it (it keeps
-- renewing), the renamed user on Free, and whoever signs up next under the
-- old id starts on the previous owner's Enterprise plan: finding 67 again.
-- SAFE outcome (as fixed, session 9): renaming an id billing holds anything
-- live for (a subscription not ended but a plain Free one, a credit
-- balance, an open invoice, a Stripe customer) is refused as a foreign key
-- ON UPDATE RESTRICT refuses it (23503, the id in DETAIL); an id billing
-- holds nothing live for is renamed, and the new id starts on Free as an
-- inserted user does. Nobody registers into the old owner's plan.
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
CREATE TABLE atk_app.users (id text PRIMARY KEY, name text);
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
\set VERBOSITY default
UPDATE atk_app.users SET id = 'carol_v' WHERE id = 'carol';
\set VERBOSITY terse
INSERT INTO atk_app.users VALUES ('carol');
SELECT (billing.effective_plan('carol')).code AS carols_plan, (billing.effective_plan('carol_v')).code AS carol_vs_plan;
SELECT id FROM atk_app.users ORDER BY id;
-- an update that leaves the id alone is not the rename trigger's (WHEN)
UPDATE atk_app.users SET name = 'Carol' WHERE id = 'carol';
UPDATE atk_app.users SET id = 'carol' WHERE id = 'carol';

-- a plain Free user is renamed: the new id starts on Free, as an inserted
-- user does; the old id's Free row stays, as a deleted user's does
INSERT INTO atk_app.users VALUES ('dave');
UPDATE atk_app.users SET id = 'dave2' WHERE id = 'dave';
INSERT INTO atk_app.users VALUES ('dave');
SELECT (billing.effective_plan('dave')).code AS new_daves_plan, (billing.effective_plan('dave2')).code AS dave2s_plan;
\c - postgres
SELECT s.user_id, p.code, s.status FROM billing.subscriptions s JOIN billing.subscription_plans p ON p.id = s.plan_id
 WHERE s.user_id IN ('dave', 'dave2') ORDER BY s.id;

-- a user whose subscription has ended may still hold money under the id: a
-- trial paid in part leaves credit after a cancel, and the credit keeps the id
\c - regress_atk_app
INSERT INTO atk_app.users VALUES ('erin');
\c - postgres
SELECT (billing.start_trial('erin', 'pro_monthly')).status;
SELECT (billing.record_payment(s.id, 1000, 'usd', true)).status
  FROM billing.subscriptions s WHERE s.user_id = 'erin' AND s.ended_at IS NULL;
SELECT (billing.cancel(s.id, false, pg_catalog.now())).status
  FROM billing.subscriptions s WHERE s.user_id = 'erin' AND s.ended_at IS NULL;
SELECT billing.credit_balance('erin') AS erins_credit;
\c - regress_atk_app
\set VERBOSITY default
UPDATE atk_app.users SET id = 'erin2' WHERE id = 'erin';
\set VERBOSITY terse
-- an open invoice and a Stripe customer link hold an id too (written here as
-- billing's owner would; a soft-deleted link does not)
INSERT INTO atk_app.users VALUES ('frank'), ('gina'), ('hal');
\c - postgres
INSERT INTO billing.invoices (number, user_id, currency, issued_at, total_cents, amount_due_cents)
VALUES ('T-70-1', 'frank', 'usd', pg_catalog.now(), 500, 500);
INSERT INTO billing.stripe_customers (customer_id, user_id) VALUES ('cus_t70', 'gina');
INSERT INTO billing.stripe_customers (customer_id, user_id, deleted_at) VALUES ('cus_t70_gone', 'hal', pg_catalog.now());
\c - regress_atk_app
\set VERBOSITY default
UPDATE atk_app.users SET id = 'frank2' WHERE id = 'frank';
UPDATE atk_app.users SET id = 'gina2' WHERE id = 'gina';
\set VERBOSITY terse
UPDATE atk_app.users SET id = 'hal2' WHERE id = 'hal';
-- a second users table, whose id may be NULL and whose key is checked at
-- commit: an id set to NULL is a renamed id too, NULL to an id a new user;
-- ids swapped by one statement are both still in the table afterwards, so
-- neither leaves anything behind (the deleted-user rule, finding 69)
\c - regress_atk_migrator
CREATE TABLE atk_app.members (id text UNIQUE DEFERRABLE INITIALLY DEFERRED);
GRANT SELECT, INSERT, UPDATE ON atk_app.members TO regress_atk_app;
SELECT billing.attach_users('atk_app.members', 'id');
\c - regress_atk_app
INSERT INTO atk_app.members VALUES ('kim'), ('lee'), (NULL);
\c - postgres
SELECT (billing.subscribe('kim', 'pro_monthly', with_trial => false)).status;
\c - regress_atk_app
UPDATE atk_app.members SET id = NULL WHERE id = 'kim';
UPDATE atk_app.members SET id = CASE id WHEN 'kim' THEN 'lee' ELSE 'kim' END WHERE id IN ('kim', 'lee');
UPDATE atk_app.members SET id = 'ivan' WHERE id IS NULL;
UPDATE atk_app.members SET id = NULL WHERE id = 'lee';
SELECT id FROM atk_app.members ORDER BY id;
\c - postgres
SELECT s.user_id, p.code, s.status FROM billing.subscriptions s JOIN billing.subscription_plans p ON p.id = s.plan_id
 WHERE s.user_id IN ('ivan', 'kim', 'lee') AND s.ended_at IS NULL ORDER BY s.user_id;
-- the rename triggers: one per attached users table, with a WHEN on the id
SELECT pg_catalog.pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = 'billing_user_renamed' ORDER BY tgrelid::regclass::text;
SELECT billing.detach('atk_app.members');
SELECT count(*) AS members_triggers FROM pg_trigger WHERE tgrelid = 'atk_app.members'::regclass AND NOT tgisinternal;
SET client_min_messages = warning;
-- billing first: a DROP of its users table is refused while it holds anything live (sql/180)
DROP EXTENSION billing CASCADE;
DROP SCHEMA atk_app CASCADE;
DROP OWNED BY regress_atk_migrator, regress_atk_app;
DROP ROLE regress_atk_migrator, regress_atk_app;
RESET client_min_messages;
