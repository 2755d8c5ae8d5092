-- Session 11 (scale): billing._plan_used, which an edit of a plan's code or
-- tier calls, read the whole subscription history when no subscription is
-- on the plan now (a Seq Scan on billing.subscription_history: 73 ms at
-- 200,000 users). Now the history is probed by its plan_id index
-- (subscription_history_plan), and the function plans each call for its
-- plan id (plan_cache_mode = force_custom_plan): a generic plan would expect
-- a used plan's many rows and scan for the first, reading everything for an
-- unused one. Observed on the function's own queries, through the
-- transaction's scan counters of the history, not on a copy of its query.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
-- a history of 2,000 trials, half of them converted to Free at their end
SELECT count(*) FROM (
	SELECT billing.start_trial('pu-' || i, 'pro_monthly', '2030-01-01 00:00+00'::timestamptz + (i % 2) * interval '20 days')
	  FROM generate_series(1, 2000) i) t;
SELECT count(*) > 0 AS ran FROM billing.run_maintenance('2030-01-16 00:00+00');
INSERT INTO billing.subscription_plans (code, name, tier, billing_interval, price_cents, currency)
VALUES ('pu_new', 'New', 'custom', 'monthly', 100, 'usd');
ANALYZE billing.subscription_history;
ANALYZE billing.subscriptions;
SELECT count(*) > 2000 AS history_rows FROM billing.subscription_history;
-- the history's scans by this backend not yet reported (no report inside
-- a transaction block): differences within one transaction
CREATE FUNCTION pg_temp.history_scans() RETURNS TABLE (seq_scan bigint, idx_scan bigint) LANGUAGE sql AS $$
	SELECT t.seq_scan, t.idx_scan FROM pg_stat_xact_user_tables t WHERE t.relid = 'billing.subscription_history'::regclass
$$;
BEGIN;
SELECT seq_scan AS seq0, idx_scan AS idx0 FROM pg_temp.history_scans() \gset
-- the new plan, used by nobody, seven times (a kept plan goes generic after
-- five): each call one index probe of the history, no Seq Scan
SELECT billing._plan_used(p.id) FROM billing.subscription_plans p, generate_series(1, 7) WHERE p.code = 'pu_new';
SELECT seq_scan - :seq0 AS seq_scans, idx_scan - :idx0 AS index_scans FROM pg_temp.history_scans();
-- the edit of its code calls it once more; allowed (nobody used it)
UPDATE billing.subscription_plans SET code = 'pu_newer' WHERE code = 'pu_new';
SELECT seq_scan - :seq0 AS seq_scans, idx_scan - :idx0 AS index_scans FROM pg_temp.history_scans();
COMMIT;
-- the answers did not change: a plan a subscription is on, or was on, is used
SELECT p.code, billing._plan_used(p.id) FROM billing.subscription_plans p
 WHERE p.code IN ('pro_monthly', 'free', 'pu_newer') ORDER BY p.code;
-- a plan only the history names (a Stripe price switch rewrites a
-- subscription's plan in place): still used
BEGIN;
SET LOCAL session_replication_role = replica;  -- no history trigger: the history keeps the old plan
UPDATE billing.subscriptions SET plan_id = (SELECT id FROM billing.subscription_plans WHERE code = 'free')
 WHERE plan_id = (SELECT id FROM billing.subscription_plans WHERE code = 'pro_monthly');
COMMIT;
SELECT count(*) AS on_pro_now FROM billing.subscriptions s JOIN billing.subscription_plans p ON p.id = s.plan_id
 WHERE p.code = 'pro_monthly';
SELECT p.code, billing._plan_used(p.id) FROM billing.subscription_plans p WHERE p.code = 'pro_monthly';
SET client_min_messages = warning;
DROP EXTENSION billing CASCADE;
RESET client_min_messages;
