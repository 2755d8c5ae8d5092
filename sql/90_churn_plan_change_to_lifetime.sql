-- README walk (session 9, independent tester), finding W1.
-- README, Reports table: churn(from, to) is "customers paying at `from` who
-- pay nothing at `to` (a plan change is not churn)". A paying Pro monthly
-- customer who changes plan to a lifetime plan (billing_interval 'lifetime',
-- a SPEC §1 interval) and pays for it is counted as churned, customer and
-- revenue churn alike: the lifetime plan counts 0 in MRR (SPEC §6), so the
-- history row "pays nothing" at `to`. A control customer who cancels now is
-- churned, as he should be.
-- SAFE outcome (this expected file): 2 customers at the start, 1 churned
-- (the one who canceled), 2999 of 5998 MRR churned. Today: 2 churned, 5998.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY terse
INSERT INTO billing.subscription_plans (code, name, tier, billing_interval, price_cents, currency, trial_days, limits)
VALUES ('pro_lifetime', 'Pro (lifetime)', 'pro', 'lifetime', 49900, 'usd', 0,
        '{"rooms": 50, "participants_per_room": 500}');
SELECT count(*) FROM unnest(ARRAY['lc1', 'lc2']) u, billing.subscribe(u, 'pro_monthly', '2026-01-01', with_trial => false) s;
SELECT count(*) FROM billing.subscriptions s,
	LATERAL billing.record_payment(s.id, 2999, 'usd', true, '2026-01-01 01:00') p
 WHERE s.user_id IN ('lc1', 'lc2') AND s.ended_at IS NULL;
-- lc1 moves to the lifetime plan on 16 January (an upgrade: longer interval)
-- and pays the proration invoice (49900 - 2999 x 16/31 = 49900 - 1548)
SELECT p.code, c.status FROM billing.change_plan((SELECT id FROM billing.subscriptions WHERE user_id = 'lc1' AND ended_at IS NULL),
	'pro_lifetime', '2026-01-16') c JOIN billing.subscription_plans p ON p.id = c.plan_id;
SELECT status FROM billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'lc1' AND ended_at IS NULL),
	48352, 'usd', true, '2026-01-16 01:00');
SELECT code FROM billing.effective_plan('lc1', '2026-02-10');
-- lc2 cancels now: that is churn
SELECT status FROM billing.cancel((SELECT id FROM billing.subscriptions WHERE user_id = 'lc2' AND ended_at IS NULL), false, '2026-01-20');
SELECT * FROM billing.churn('2026-01-10', '2026-02-10');
