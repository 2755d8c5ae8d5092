-- Review of the reports and history (session 9, hostile tester), finding R7.
-- The reports by tier and by plan join today's billing.subscription_plans
-- row: the history keeps plan_id, not the tier or the code the plan had at
-- `t`. A billing_admin editing a plan (allowed: "editable afterwards")
-- rewrites every past active_subscriptions, plan_distribution,
-- trial_conversion and daily_report: here pro_yearly moved to tier
-- 'enterprise' on 1 Mar moves a January customer into Enterprise for
-- January. SPEC §8: "every report for a time t uses the state as of t, so a
-- report of a past date never changes afterwards".
-- SAFE outcome (this expected file): the January reports unchanged (pro).
-- Fix (session 9, decided): plan rows are not history. The code and tier of
-- a plan a subscription has used cannot change (55000, with a hint to add a
-- new plan); name, limits, features, price for new subscriptions stay
-- editable. So the edit below is refused and January stays pro.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY terse
SELECT status FROM billing.subscribe('pe1', 'pro_yearly', '2026-01-01', with_trial => false);
SELECT status FROM billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'pe1' AND ended_at IS NULL),
	28800, 'usd', true, '2026-01-01');
SELECT * FROM billing.active_subscriptions('2026-01-15');
SELECT metric, value FROM billing.daily_report('2026-01-15') WHERE value > 0;
-- on 1 Mar the admin regroups the plans
UPDATE billing.subscription_plans SET tier = 'enterprise' WHERE code = 'pro_yearly';
\echo :LAST_ERROR_SQLSTATE
UPDATE billing.subscription_plans SET code = 'pro_annual' WHERE code = 'pro_yearly';
\echo :LAST_ERROR_SQLSTATE
-- a plan nobody has used may still be regrouped; other columns stay editable
UPDATE billing.subscription_plans SET tier = 'enterprise', code = 'pro_monthly_x' WHERE code = 'pro_monthly';
UPDATE billing.subscription_plans SET name = 'Pro (annual)', sort_order = 31 WHERE code = 'pro_yearly';
SELECT * FROM billing.active_subscriptions('2026-01-15');
SELECT metric, value FROM billing.daily_report('2026-01-15') WHERE value > 0;
