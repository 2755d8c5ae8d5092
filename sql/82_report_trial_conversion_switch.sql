-- Review of the reports and history (session 9, hostile tester), finding R3.
-- trial_conversion counts a trial as not converted when the customer
-- switched plans during the trial and then paid: the switch ends the trial's
-- subscription (plan_changed) and opens a new one (still trialing, not a new
-- trial), and only the first subscription's history is read for paid_since.
-- daily_report counts the same payment as a conversion. README: "a trial is
-- the first interval of a subscription that started trialing, and it stays
-- converted when the customer upgrades later"; SPEC §6 "trial_conversion
-- (trials started in the window and how many became paid)".
-- SAFE outcome (this expected file): 2 trials, 2 converted, conversion 1.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY terse
-- tc1: trial of pro_monthly on 1 Jan, switches to pro_yearly on 5 Jan (still
-- in the trial), pays 28800 on 10 Jan
SELECT status FROM billing.subscribe('tc1', 'pro_monthly', '2026-01-01');
SELECT status FROM billing.change_plan((SELECT id FROM billing.subscriptions WHERE user_id = 'tc1' AND ended_at IS NULL),
	'pro_yearly', '2026-01-05');
SELECT status FROM billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'tc1' AND ended_at IS NULL),
	28800, 'usd', true, '2026-01-10');
-- tc2: the same trial without the switch, pays 2999 on 10 Jan
SELECT status FROM billing.subscribe('tc2', 'pro_monthly', '2026-01-01');
SELECT status FROM billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'tc2' AND ended_at IS NULL),
	2999, 'usd', true, '2026-01-10');
SELECT * FROM billing.trial_conversion('2026-01-01', '2026-02-01');
SELECT * FROM billing.daily_report('2026-01-10') WHERE metric IN ('new_trials', 'conversions');
