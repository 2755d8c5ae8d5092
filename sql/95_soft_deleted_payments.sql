-- A soft-deleted payment leaves the reports from its deletion on (README
-- walk W8), the rule SPEC §8 gives a soft-deleted subscription: revenue,
-- arpu and daily_report's failed_payments agree. A report of a period that
-- ended before the deletion still counts the payment (a past figure does not
-- change); one that ends after it does not.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
SELECT count(*) FROM unnest(ARRAY['sd1', 'sd2']) u, billing.subscribe(u, 'pro_monthly', '2026-01-01', with_trial => false) s;
-- sd1 pays 2999 on 1 Jan; sd2 pays 3000 (1 cent to credit), then a payment of
-- sd2's fails on 5 Jan at 10:00
SELECT status FROM billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'sd1' AND ended_at IS NULL),
	2999, 'usd', true, '2026-01-01 10:00');
SELECT status FROM billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'sd2' AND ended_at IS NULL),
	3000, 'usd', true, '2026-01-01 10:00');
SELECT status FROM billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'sd2' AND ended_at IS NULL),
	2999, 'usd', false, '2026-01-05 10:00');
CREATE TEMP TABLE figures AS
SELECT 'before' AS moment, (SELECT revenue_cents FROM billing.arpu('2026-01-01', '2026-01-10')) AS arpu_jan1_10,
	   (SELECT sum(value) FROM billing.revenue('2026-01-01', '2026-01-10', 'day')) AS revenue_jan1_10,
	   (SELECT value FROM billing.daily_report('2026-01-05') WHERE metric = 'failed_payments') AS failed_jan5;
-- sd1's payment soft-deleted on 20 Jan, sd2's failed one the same day at 12:00
UPDATE billing.payments SET deleted_at = '2026-01-20' WHERE user_id = 'sd1';
UPDATE billing.payments SET deleted_at = '2026-01-05 12:00' WHERE user_id = 'sd2' AND status = 'failed';
INSERT INTO figures
SELECT 'after', (SELECT revenue_cents FROM billing.arpu('2026-01-01', '2026-01-10')),
	   (SELECT sum(value) FROM billing.revenue('2026-01-01', '2026-01-10', 'day')),
	   (SELECT value FROM billing.daily_report('2026-01-05') WHERE metric = 'failed_payments');
-- the period 1-10 Jan ended before sd1's deletion: unchanged; 5 Jan ended
-- after sd2's deletion: the failed payment is gone
SELECT * FROM figures ORDER BY moment DESC;
-- a period that ends after sd1's deletion does not count it
SELECT * FROM billing.arpu('2026-01-01', '2026-02-01');
SELECT sum(value) AS revenue_jan FROM billing.revenue('2026-01-01', '2026-02-01', 'month');
