-- Attack (session 9 review 4, hostile tester): a refund that reopens an
-- invoice takes SHARE on billing.maintenance_runs (MaintainedTo, attack
-- finding 3.3's fix) and keeps it until its transaction ends. billing_app
-- (hostile) refunds one of its own payments that reopens an upgrade invoice
-- inside a transaction it never ends: every run_maintenance (ROW EXCLUSIVE
-- on the same table, taken first thing) waits for ever, and, queued behind
-- it, every other user's reopening refund too. No renewal, no expiry, no
-- dunning for anyone, from one application session (no lock_timeout in
-- billing; idle_in_transaction_session_timeout is off by default).
-- The holder runs through dblink (a second session) as billing_app.
-- SAFE outcome (this expected file): run_maintenance by the admin completes
-- while the app's transaction is open (billing orders the two without a
-- table lock a billing_app session can hold, or bounds the wait).
-- Today: 55P03 (lock_timeout) on the INSERT INTO billing.maintenance_runs.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
CREATE EXTENSION IF NOT EXISTS dblink;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY sqlstate
INSERT INTO billing.subscription_plans (code, name, tier, billing_interval, price_cents, currency, trial_days, limits, features)
VALUES ('ent_monthly_a4', 'Enterprise (monthly)', 'enterprise', 'monthly', 9999, 'usd', 30, pg_catalog.jsonb_build_object(), pg_catalog.jsonb_build_object());
SELECT count(*) >= 0 AS ran FROM billing.run_maintenance('2030-02-02');
SET ROLE billing_app;
SELECT id AS sub_id FROM billing.subscribe('a4', 'pro_yearly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:sub_id, 28800, 'usd', true, '2030-01-01');
RESET ROLE;
SELECT id AS pay_id FROM billing.payments WHERE user_id = 'a4' AND refund_of IS NULL \gset
SET ROLE billing_app;
SELECT count(*) AS changed FROM billing.change_plan(:sub_id, 'ent_monthly_a4', '2030-02-01');
RESET ROLE;
-- the hostile application session: a reopening refund, transaction left open
SELECT dblink_connect('holder', pg_catalog.format('host=%s port=%s dbname=%s user=%s',
	pg_catalog.split_part(pg_catalog.current_setting('unix_socket_directories'), ',', 1),
	pg_catalog.current_setting('port'), pg_catalog.current_database(), CURRENT_USER));
SELECT dblink_exec('holder', 'BEGIN');
SELECT dblink_exec('holder', 'SET ROLE billing_app');
SELECT * FROM dblink('holder', pg_catalog.format('SELECT amount_cents FROM billing.refund(%s, 28800, %L)', :pay_id, '2030-02-02')) AS t(amount_cents bigint);
-- the administrator's scheduled run, for everyone
SET ROLE billing_admin;
SET lock_timeout = '2s';
SELECT count(*) >= 0 AS ran FROM billing.run_maintenance('2030-02-03');
RESET lock_timeout;
RESET ROLE;
SELECT dblink_exec('holder', 'ROLLBACK');
SELECT dblink_disconnect('holder');
SET client_min_messages = warning;
DROP EXTENSION dblink;
RESET client_min_messages;
