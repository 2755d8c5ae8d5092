-- The audit log: inserts and updates on the billing tables, with the table,
-- the row id, the old and new row, the database role and the application user.
--
-- A fresh session, before anything has loaded the billing library: setting
-- billing.app_user must work already (it is a placeholder until the library
-- loads, then the module's own string setting keeps the value).
\c -
SELECT count(*) AS module_settings_defined FROM pg_settings WHERE name = 'billing.enforce_quotas';
SET billing.app_user = 'alice@example.com';
SHOW billing.app_user;
SELECT coalesce(max(id), 0) AS audit_start FROM billing.audit_log \gset

-- insert: attach_users backfills a Free subscription, the trigger gives a new user one
CREATE SCHEMA audit_app;
CREATE TABLE audit_app.users (id text PRIMARY KEY, email text NOT NULL);
INSERT INTO audit_app.users VALUES ('audit-u1', 'u1@example.com');
SELECT billing.attach_users('audit_app.users', 'id');
INSERT INTO audit_app.users VALUES ('audit-u2', 'u2@example.com');
SELECT a.table_name, a.action, s.user_id, a.row_id = s.id::text AS row_id_is_the_subscription,
       a.old_row IS NULL AS no_old_row, a.new_row ->> 'status' AS new_status, a.db_role, a.app_user
  FROM billing.audit_log a JOIN billing.subscriptions s ON s.id::text = a.new_row ->> 'id'
 WHERE a.id > :audit_start AND a.table_name = 'subscriptions'
 ORDER BY a.id;

-- update: a plan edit records the old and the new price
INSERT INTO billing.subscription_plans (code, name, tier, billing_interval, price_cents, currency)
VALUES ('audit_plan', 'Audit plan', 'custom', 'monthly', 1000, 'usd');
UPDATE billing.subscription_plans SET price_cents = 1500 WHERE code = 'audit_plan';
SELECT a.table_name, a.action, a.row_id = p.id::text AS row_id_is_the_plan,
       a.old_row ->> 'price_cents' AS old_price, a.new_row ->> 'price_cents' AS new_price, a.db_role, a.app_user
  FROM billing.audit_log a JOIN billing.subscription_plans p ON p.code = 'audit_plan'
 WHERE a.id > :audit_start AND a.table_name = 'subscription_plans'
 ORDER BY a.id;

-- billing.configure, called by an admin logged in as such, without an app user
CREATE ROLE regress_billing_audit_admin LOGIN IN ROLE billing_admin;
\c - regress_billing_audit_admin
SHOW billing.app_user;
SELECT billing.configure('past_due_grace', '20 days');
SELECT billing.configure('past_due_grace', '14 days');
SET billing.app_user = 'bob@example.com';
SELECT billing.configure('stripe_webhook_secret', 'whsec_first_secret');
SELECT billing.configure('stripe_webhook_secret', 'whsec_rotated,whsec_first_secret');
\c - postgres
SELECT a.row_id, a.action, a.old_row ->> 'value' AS old_value, a.new_row ->> 'value' AS new_value,
       a.db_role, a.app_user
  FROM billing.audit_log a
 WHERE a.id > :audit_start AND a.table_name = 'settings'
 ORDER BY a.id;
-- the secret is nowhere in the audit log in clear text, but is in the settings
SELECT count(*) AS audit_rows_with_secret FROM billing.audit_log a WHERE a::text LIKE '%whsec_%';
SELECT value FROM billing.settings WHERE key = 'stripe_webhook_secret';
-- soft delete is an update, logged as such
UPDATE billing.subscription_plans SET deleted_at = '2025-01-01 00:00:00+00' WHERE code = 'audit_plan';
SELECT a.action, a.old_row ->> 'deleted_at' AS old_deleted_at, a.new_row ->> 'deleted_at' AS new_deleted_at,
       a.app_user
  FROM billing.audit_log a
 WHERE a.id > :audit_start AND a.table_name = 'subscription_plans'
 ORDER BY a.id DESC LIMIT 1;

-- Once the library is loaded, the setting is the module's own and keeps
-- its value; a misspelt billing.* name is refused (the prefix is reserved).
SET billing.app_user = 'carol@example.com';
LOAD 'billing';
SELECT count(*) AS module_settings_defined FROM pg_settings WHERE name = 'billing.enforce_quotas';
SHOW billing.app_user;
SELECT name, setting, context, vartype FROM pg_settings WHERE name = 'billing.app_user';
SET billing.app_usr = 'typo@example.com';
\echo :LAST_ERROR_SQLSTATE
RESET billing.app_user;
SHOW billing.app_user;
-- with no application user the column is NULL, not an empty string
UPDATE billing.subscription_plans SET sort_order = 99 WHERE code = 'audit_plan';
SELECT a.action, a.db_role, a.app_user IS NULL AS no_app_user
  FROM billing.audit_log a
 WHERE a.id > :audit_start
 ORDER BY a.id DESC LIMIT 1;
-- an unprivileged user cannot write the audit log to cover their tracks
SET ROLE regress_billing_audit_admin;
DELETE FROM billing.audit_log;
\echo :LAST_ERROR_SQLSTATE
UPDATE billing.audit_log SET app_user = 'nobody';
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- clean up what later tests do not need
SELECT billing.detach('audit_app.users');
DROP SCHEMA audit_app CASCADE;
DROP ROLE regress_billing_audit_admin;
