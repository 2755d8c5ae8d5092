-- Review of the reports and history (session 9, hostile tester), finding R6.
-- A soft delete of a subscription (UPDATE ... SET deleted_at, by its owner
-- role: the README's soft delete) records `removed` from the latest event
-- time on the row (here its period start), not from deleted_at: the
-- subscription leaves the reports of every date since its period start, so
-- mrr of a date before the deletion changes. README: "Soft-deleted
-- subscriptions (deleted_at) leave the reports from the deletion on"; SPEC
-- §8 "a report of a past date never changes afterwards".
-- SAFE outcome (this expected file): mrr on 10 Jan unchanged (2999), the
-- removed interval starts at deleted_at (20 Jan).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY terse
SELECT status FROM billing.subscribe('sd1', 'pro_monthly', '2031-01-01', with_trial => false);
SELECT status FROM billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'sd1' AND ended_at IS NULL),
	2999, 'usd', true, '2031-01-01');
SELECT * FROM billing.mrr('2031-01-10');
UPDATE billing.subscriptions SET deleted_at = '2031-01-20' WHERE user_id = 'sd1' AND ended_at IS NULL;
SELECT * FROM billing.mrr('2031-01-10');
SELECT valid_from FROM billing.subscription_history WHERE user_id = 'sd1' AND removed;
