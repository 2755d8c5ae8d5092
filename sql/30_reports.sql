-- Reports on a small, fully simulated book of business (SPEC §6).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
-- Four customers in usd, one in eur:
--   m1: pro_monthly from 1 Jan, paid       -> 2999/month
--   y1: pro_yearly from 1 Jan, paid        -> 28800/12 = 2400/month
--   t1: pro trial from 1 Jan, never paid   -> 0 (trial), then Free
--   c1: pro_monthly from 1 Jan, paid, canceled 10 Jan at period end (1 Feb)
--   e1: a custom eur plan, 1000/month
INSERT INTO billing.subscription_plans (code, name, tier, billing_interval, price_cents, currency)
VALUES ('eu_basic', 'EU basic', 'custom', 'monthly', 1000, 'eur');
SELECT id AS m1 FROM billing.subscribe('m1', 'pro_monthly', '2026-01-01 00:00+00', with_trial => false) \gset
SELECT id AS y1 FROM billing.subscribe('y1', 'pro_yearly', '2026-01-01 00:00+00', with_trial => false) \gset
SELECT id AS t1 FROM billing.start_trial('t1', 'pro_monthly', '2026-01-01 00:00+00') \gset
SELECT id AS c1 FROM billing.subscribe('c1', 'pro_monthly', '2026-01-01 00:00+00', with_trial => false) \gset
SELECT id AS e1 FROM billing.subscribe('e1', 'eu_basic', '2026-01-01 00:00+00', with_trial => false) \gset
SELECT count(*) AS paid FROM (
	SELECT billing.record_payment(:m1, 2999, 'usd', true, '2026-01-01 01:00+00')
	UNION ALL SELECT billing.record_payment(:y1, 28800, 'usd', true, '2026-01-01 01:00+00')
	UNION ALL SELECT billing.record_payment(:c1, 2999, 'usd', true, '2026-01-01 01:00+00')
	UNION ALL SELECT billing.record_payment(:e1, 1000, 'eur', true, '2026-01-01 01:00+00')) p;
SELECT status FROM billing.cancel(:c1, true, '2026-01-10 00:00+00');
SELECT action, count FROM billing.run_maintenance('2026-02-01 00:00+00') ORDER BY action;
-- m1 and e1 pay February's renewal invoices (issued 1 Feb, due 4 Feb), so they stay active
SELECT count(*) AS paid_february FROM (
	SELECT billing.record_payment(:m1, 2999, 'usd', true, '2026-02-01 00:30+00')
	UNION ALL SELECT billing.record_payment(:e1, 1000, 'eur', true, '2026-02-01 00:30+00')) p;
SELECT amount_cents FROM billing.refund((SELECT id FROM billing.payments WHERE subscription_id = :m1 LIMIT 1), 999,
										'2026-01-20 00:00+00');

-- MRR on 15 Jan: m1 2999 + y1 2400 + c1 2999 (canceled, period not ended) = 8398 usd; eur 1000
SELECT * FROM billing.mrr('2026-01-15 00:00+00');
SELECT * FROM billing.arr('2026-01-15 00:00+00');
-- on 15 Feb c1 has ended and t1's trial is over
SELECT * FROM billing.mrr('2026-02-15 00:00+00');
SELECT * FROM billing.active_subscriptions('2026-01-15 00:00+00');
SELECT * FROM billing.plan_distribution('2026-02-15 00:00+00');
-- churn over January: of 3 usd customers paying on 15 Jan, c1 no longer pays on 15 Feb
SELECT * FROM billing.churn('2026-01-15 00:00+00', '2026-02-15 00:00+00');
-- ARPU in January: usd 2999 + 28800 + 2999 - 999 refunded over 3 paying users
SELECT * FROM billing.arpu('2026-01-01 00:00+00', '2026-02-01 00:00+00');
SELECT * FROM billing.trial_conversion('2026-01-01 00:00+00', '2026-02-01 00:00+00');
SELECT * FROM billing.revenue('2026-01-01 00:00+00', '2026-03-01 00:00+00', 'month');
SELECT * FROM billing.daily_report('2026-01-10');
SELECT * FROM billing.daily_report('2026-01-01');

-- usage trends read the rollups and the tail not rolled up yet
INSERT INTO billing.usage_daily (user_id, metric, day, quantity) VALUES ('m1', 'api_calls', '2026-01-02', 40);
INSERT INTO billing.usage_records (user_id, metric, quantity, recorded_at) VALUES ('m1', 'api_calls', 2, '2026-01-03 10:00+00');
SELECT * FROM billing.usage_trends('2026-01-01 00:00+00', '2026-01-05 00:00+00', 'day');
SELECT * FROM billing.usage_trends('2026-01-01 00:00+00', '2026-02-01 00:00+00', 'month');

-- bad input
SELECT * FROM billing.revenue('2026-01-01 00:00+00', '2026-03-01 00:00+00', 'fortnight');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM billing.revenue('2026-03-01 00:00+00', '2026-01-01 00:00+00', 'day');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM billing.churn('2026-03-01 00:00+00', '2026-01-01 00:00+00');
\echo :LAST_ERROR_SQLSTATE
