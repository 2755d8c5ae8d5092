-- Attack (session 10 review 5, finding 5.1): attack finding 4.1's fix let
-- a maintenance run go on WITHOUT recording its point when a reopening
-- refund held SHARE on billing.maintenance_runs. The run still committed
-- having maintained everything up to its `at`, but billing.maintenance_runs
-- did not say so: every reopening refund after it (any user, not only the
-- busy one) dated its reopened invoice from the older point, i.e. due at a
-- date a committed run had passed (attack finding 3.3 again), and the next
-- run ended that subscription back then (Enterprise on 20 Feb, read as such
-- after the run, rewritten to Free). billing_app did this at will by keeping
-- one reopening refund of its own open while the scheduled run started.
-- SAFE outcome (this expected file): the run records 21 Feb; b5's reopened
-- invoice is due 3 days after it (24 Feb), as when no refund is held; the
-- next run leaves b5 on Enterprise on 20 Feb. Before the fix: recorded_to
-- 2 Feb, due 5 Feb, free on 20 Feb.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
CREATE EXTENSION IF NOT EXISTS dblink;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY sqlstate
INSERT INTO billing.subscription_plans (code, name, tier, billing_interval, price_cents, currency, trial_days, limits, features)
VALUES ('ent_monthly_a5', 'Enterprise (monthly)', 'enterprise', 'monthly', 9999, 'usd', 30, pg_catalog.jsonb_build_object(), pg_catalog.jsonb_build_object());
SELECT count(*) >= 0 AS ran FROM billing.run_maintenance('2030-02-02');
SET ROLE billing_app;
SELECT id AS a_sub FROM billing.subscribe('a5', 'pro_yearly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:a_sub, 28800, 'usd', true, '2030-01-01');
SELECT id AS b_sub FROM billing.subscribe('b5', 'pro_yearly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:b_sub, 28800, 'usd', true, '2030-01-01');
SELECT count(*) AS changed FROM billing.change_plan(:a_sub, 'ent_monthly_a5', '2030-02-01');
SELECT count(*) AS changed FROM billing.change_plan(:b_sub, 'ent_monthly_a5', '2030-02-01');
RESET ROLE;
SELECT id AS a_pay FROM billing.payments WHERE user_id = 'a5' AND refund_of IS NULL \gset
SELECT id AS b_pay FROM billing.payments WHERE user_id = 'b5' AND refund_of IS NULL \gset
-- the hostile application session: a5's reopening refund, left open
SELECT dblink_connect('holder', pg_catalog.format('host=%s port=%s dbname=%s user=%s',
	pg_catalog.split_part(pg_catalog.current_setting('unix_socket_directories'), ',', 1),
	pg_catalog.current_setting('port'), pg_catalog.current_database(), CURRENT_USER));
SELECT dblink_exec('holder', 'BEGIN');
SELECT dblink_exec('holder', 'SET ROLE billing_app');
SELECT * FROM dblink('holder', pg_catalog.format('SELECT amount_cents FROM billing.refund(%s, 28800, %L)', :a_pay, '2030-02-02')) AS t(amount_cents bigint);
-- the scheduled catch-up run to 21 Feb completes and commits
SET ROLE billing_admin;
SELECT count(*) >= 0 AS ran FROM billing.run_maintenance('2030-02-21');
RESET ROLE;
SELECT pg_catalog.max(ran_to) AS recorded_to FROM billing.maintenance_runs;
-- after that run: b5's own refund, dated 2 Feb, reopens b5's upgrade invoice
SET ROLE billing_app;
SELECT amount_cents FROM billing.refund(:b_pay, 28800, '2030-02-02');
RESET ROLE;
SELECT i.status, i.due_at FROM billing.invoices i WHERE i.user_id = 'b5' AND i.status = 'open';
SELECT dblink_exec('holder', 'ROLLBACK');
SELECT dblink_disconnect('holder');
SELECT count(*) >= 0 AS ran FROM billing.run_maintenance('2030-02-22');
SELECT p.code FROM billing.effective_plan('b5', '2030-02-20') p;
SET client_min_messages = warning;
DROP EXTENSION dblink;
RESET client_min_messages;
