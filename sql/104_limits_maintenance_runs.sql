-- Known limit until session 10: billing.maintenance_runs grew by a row for
-- every run_maintenance call at a later `at` (each batch of
-- run_maintenance_batches too), never pruned: a daily run adds 365 rows a
-- year, one every five minutes 100,000. What the table guards is one point,
-- the latest ran_to (a refund dated back reopens an invoice due three days
-- after it, MaintainedTo): a run that records a new point deletes the
-- points before it (rows it can lock without waiting: two runs never wait
-- on each other).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY sqlstate
INSERT INTO billing.subscription_plans (code, name, tier, billing_interval, price_cents, currency, trial_days, limits, features)
VALUES ('ent_monthly_l2', 'Enterprise (monthly)', 'enterprise', 'monthly', 9999, 'usd', 30, pg_catalog.jsonb_build_object(), pg_catalog.jsonb_build_object());
SELECT status FROM billing.subscribe('l2', 'pro_yearly', '2030-01-01', false);
SELECT status FROM billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'l2' AND ended_at IS NULL), 28800, 'usd', true, '2030-01-01');
SELECT count(*) > 0 AS changed FROM billing.change_plan((SELECT id FROM billing.subscriptions WHERE user_id = 'l2' AND ended_at IS NULL), 'ent_monthly_l2', '2030-02-01');
-- a run a day from 2 to 25 Feb, each its own transaction
\o /dev/null
SELECT pg_catalog.format('SELECT count(*) FROM billing.run_maintenance(%L)', d)
  FROM pg_catalog.generate_series('2030-02-02'::timestamptz, '2030-02-25', '1 day') d \gexec
\o
-- one row: the latest point (24 rows before)
SELECT count(*) AS points, to_char(max(ran_to), 'YYYY-MM-DD') AS ran_to FROM billing.maintenance_runs;
-- a run at an earlier `at` records nothing and prunes nothing
SELECT count(*) >= 0 AS ran FROM billing.run_maintenance('2030-02-10');
SELECT count(*) AS points, to_char(max(ran_to), 'YYYY-MM-DD') AS ran_to FROM billing.maintenance_runs;
-- a run in batches: each batch that records a later point prunes the one before
CALL billing.run_maintenance_batches('2030-02-26', 1);
SELECT count(*) AS points, to_char(max(ran_to), 'YYYY-MM-DD') AS ran_to FROM billing.maintenance_runs;
-- what the point guards holds: the refund dated 2 Feb reopens the upgrade
-- invoice due three days after how far maintenance ran (26 Feb), not 5 Feb
SELECT amount_cents FROM billing.refund((SELECT id FROM billing.payments WHERE user_id = 'l2' AND refund_of IS NULL), 28800, '2030-02-02');
SELECT i.status, to_char(i.due_at, 'YYYY-MM-DD') AS due
  FROM billing.invoices i JOIN billing.subscriptions s ON s.id = i.subscription_id
  JOIN billing.subscription_plans p ON p.id = s.plan_id AND p.code = 'ent_monthly_l2'
 WHERE i.user_id = 'l2' ORDER BY i.id;
-- under REPEATABLE READ a run records its point and leaves the old ones
-- (a row a concurrent run deleted would be 40001); the next run prunes them
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) >= 0 AS ran FROM billing.run_maintenance('2030-02-27');
COMMIT;
SELECT count(*) AS points, to_char(max(ran_to), 'YYYY-MM-DD') AS ran_to FROM billing.maintenance_runs;
SELECT count(*) >= 0 AS ran FROM billing.run_maintenance('2030-02-28');
SELECT count(*) AS points, to_char(max(ran_to), 'YYYY-MM-DD') AS ran_to FROM billing.maintenance_runs;
SET client_min_messages = warning;
DROP EXTENSION billing CASCADE;
RESET client_min_messages;
