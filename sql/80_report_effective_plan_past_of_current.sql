-- Review of the reports and history (session 9, hostile tester), finding R1.
-- effective_plan (and quota, has_feature) for a past `at` inside the life of
-- the CURRENT subscription judges the current row, not the history valid at
-- `at`: a date inside a pause (paused -> Free, SPEC §2/§3) or before the
-- first payment of an `incomplete` subscription (Free) answers Free while
-- the subscription is paused / incomplete, and the paid plan once it is
-- resumed / paid. SPEC §8: "effective_plan, quota and has_feature are exact
-- for any at"; "a report of a past date never changes afterwards".
-- plan_distribution of the same date reads the history and stays Free.
-- The reverse too: pausing today makes a date BEFORE the pause, when the
-- customer was active and paid, answer Free (rp3).
-- SAFE outcome (this expected file): Free (3 rooms) for the paused and the
-- incomplete dates, the paid plan for the paid date, before and after the
-- later operation.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY terse
-- rp1: Enterprise paid 1 Jan 2030, paused 1 Feb, resumed 1 Mar
SELECT status FROM billing.subscribe('rp1', 'enterprise_yearly', '2030-01-01', with_trial => false);
SELECT status FROM billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'rp1' AND ended_at IS NULL),
	99900, 'usd', true, '2030-01-01');
SELECT status FROM billing.pause((SELECT id FROM billing.subscriptions WHERE user_id = 'rp1' AND ended_at IS NULL), '2030-02-01');
SELECT (billing.effective_plan('rp1', '2030-02-15')).code AS paused_15_feb,
	   (billing.quota('rp1', 'rooms', '2030-02-15')).limit AS rooms_limit;
SELECT status FROM billing.resume((SELECT id FROM billing.subscriptions WHERE user_id = 'rp1' AND ended_at IS NULL), '2030-03-01');
-- the same past date, asked again after the resume
SELECT (billing.effective_plan('rp1', '2030-02-15')).code AS paused_15_feb,
	   (billing.quota('rp1', 'rooms', '2030-02-15')).limit AS rooms_limit;
SELECT plan_code, users FROM billing.plan_distribution('2030-02-15') ORDER BY plan_code;
-- rp2: pro_monthly without trial on 2 Jan 2030 (incomplete), paid at 20:00
SELECT status FROM billing.subscribe('rp2', 'pro_monthly', '2030-01-02', with_trial => false);
SELECT (billing.effective_plan('rp2', '2030-01-02 10:00')).code AS incomplete_10h;
SELECT status FROM billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'rp2' AND ended_at IS NULL),
	2999, 'usd', true, '2030-01-02 20:00');
SELECT (billing.effective_plan('rp2', '2030-01-02 10:00')).code AS incomplete_10h,
	   (billing.quota('rp2', 'rooms', '2030-01-02 10:00')).limit AS rooms_limit;
SELECT plan_code, users FROM billing.plan_distribution('2030-01-02 10:00') ORDER BY plan_code;
-- rp3: pro_monthly paid 1 Jan 2030; the effective plan on 10 Jan, before and
-- after a pause on 20 Jan
SELECT status FROM billing.subscribe('rp3', 'pro_monthly', '2030-01-01', with_trial => false);
SELECT status FROM billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'rp3' AND ended_at IS NULL),
	2999, 'usd', true, '2030-01-01');
SELECT (billing.effective_plan('rp3', '2030-01-10')).code AS paid_10_jan,
	   (billing.quota('rp3', 'rooms', '2030-01-10')).limit AS rooms_limit;
SELECT status FROM billing.pause((SELECT id FROM billing.subscriptions WHERE user_id = 'rp3' AND ended_at IS NULL), '2030-01-20');
SELECT (billing.effective_plan('rp3', '2030-01-10')).code AS paid_10_jan,
	   (billing.quota('rp3', 'rooms', '2030-01-10')).limit AS rooms_limit;
