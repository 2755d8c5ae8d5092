-- Review of the reports and history (session 9, hostile tester), finding R5.
-- arr(at) is not 12 x mrr(at): mrr rounds the exact sum of the
-- monthly-normalised prices, arr rounds 12 x that sum, so with yearly prices
-- not divisible by 12 the two disagree (three yearly subscriptions of 1001:
-- mrr 250 (250.25), arr 3003, 12 x mrr = 3000). SPEC §6: "ARR is 12 x MRR".
-- A finance dashboard showing both (dashboards/billing.json does) shows
-- figures that do not multiply out.
-- SAFE outcome (this expected file): arr_cents = 12 * mrr_cents.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY terse
INSERT INTO billing.subscription_plans (code, name, tier, billing_interval, price_cents, currency, trial_days)
VALUES ('team_yearly', 'Team yearly', 'pro', 'yearly', 1001, 'usd', 0);
SELECT count(*) FROM generate_series(1, 3) g, billing.subscribe('ar' || g, 'team_yearly', '2026-01-01', with_trial => false) s;
SELECT count(*) FROM billing.subscriptions s,
	LATERAL billing.record_payment(s.id, 1001, 'usd', true, '2026-01-01 01:00') p
 WHERE s.user_id LIKE 'ar%' AND s.ended_at IS NULL;
SELECT m.currency, a.arr_cents OPERATOR(pg_catalog.=) 12 * m.mrr_cents AS arr_is_12_mrr
  FROM billing.mrr('2026-02-01') m JOIN billing.arr('2026-02-01') a USING (currency);
