-- Reports read the subscription history: a report for a time t gives the
-- state as of t, whatever happened afterwards (issue 11's cases, one fresh
-- book each, with the arithmetic in the comments).
SET timezone = 'UTC';
SET client_min_messages = warning;

-- == A pause later resumed does not pay during the pause
DROP EXTENSION IF EXISTS billing CASCADE;
CREATE EXTENSION billing;
SELECT id AS a1 FROM billing.subscribe('a1', 'pro_monthly', '2027-01-01 00:00+00', with_trial => false) \gset
SELECT id AS a2 FROM billing.subscribe('a2', 'pro_monthly', '2027-01-01 00:00+00', with_trial => false) \gset
SELECT count(*) FROM (SELECT billing.record_payment(:a1, 2999, 'usd', true, '2027-01-01 01:00+00')
			UNION ALL SELECT billing.record_payment(:a2, 2999, 'usd', true, '2027-01-01 01:00+00')) p;
SELECT status FROM billing.pause(:a1, '2027-01-10 00:00+00');
-- while paused: only a2 pays, 2999
SELECT * FROM billing.mrr('2027-01-15 00:00+00');
SELECT status FROM billing.resume(:a1, '2027-01-20 00:00+00');
-- after the resume the past is unchanged (0.2.0 said 5998: a1 counted as paying in its pause)
SELECT * FROM billing.mrr('2027-01-15 00:00+00');
-- and after it both pay again: 2999 + 2999 = 5998
SELECT * FROM billing.mrr('2027-01-25 00:00+00');
-- the history: a1 active, paused from the 10th, active from the 20th
SELECT status, previous_status, valid_from, valid_to FROM billing.subscription_history
 WHERE subscription_id = :a1 ORDER BY valid_from, id;

-- == Expired or paused subscriptions keep the plan they had while they had it
DROP EXTENSION billing CASCADE;
CREATE EXTENSION billing;
SELECT id AS e1 FROM billing.subscribe('e1', 'pro_monthly', '2027-01-01 00:00+00', with_trial => false) \gset
SELECT id AS p1 FROM billing.subscribe('p1', 'pro_monthly', '2027-01-01 00:00+00', with_trial => false) \gset
SELECT count(*) FROM (SELECT billing.record_payment(:e1, 2999, 'usd', true, '2027-01-01 01:00+00')
			UNION ALL SELECT billing.record_payment(:p1, 2999, 'usd', true, '2027-01-01 01:00+00')) p;
SELECT status FROM billing.pause(:p1, '2027-01-10 00:00+00');
-- e1 renews on 1 Feb, its payment fails on 2 Feb, grace (14 days) runs out on 16 Feb
SELECT action, count FROM billing.run_maintenance('2027-02-01 00:00+00') WHERE count > 0 ORDER BY action;
SELECT status FROM billing.record_payment(:e1, 2999, 'usd', false, '2027-02-02 00:00+00');
SELECT action, count FROM billing.run_maintenance('2027-02-20 00:00+00') WHERE count > 0 ORDER BY action;
-- on 5 Jan both were on pro_monthly (0.2.0 said Free for both: expired and paused now)
SELECT * FROM billing.plan_distribution('2027-01-05 00:00+00');
-- on 15 Jan p1 was paused (Free), e1 still pro_monthly
SELECT * FROM billing.plan_distribution('2027-01-15 00:00+00');
-- on 10 Feb e1 is past_due (still pro_monthly); on 1 Mar it has expired: both Free
SELECT * FROM billing.plan_distribution('2027-02-10 00:00+00');
SELECT * FROM billing.plan_distribution('2027-03-01 00:00+00');
-- MRR on 15 Jan: e1 2999 (p1 paused); on 10 Feb: e1 past_due still counts, 2999
SELECT * FROM billing.mrr('2027-01-15 00:00+00');
SELECT * FROM billing.mrr('2027-02-10 00:00+00');
SELECT tier, status, subscriptions FROM billing.active_subscriptions('2027-02-10 00:00+00');

-- == A converted trial stays converted when the customer upgrades later
DROP EXTENSION billing CASCADE;
CREATE EXTENSION billing;
SELECT id AS t1 FROM billing.start_trial('t1', 'pro_monthly', '2027-01-01 00:00+00') \gset
SELECT id AS t2 FROM billing.start_trial('t2', 'pro_monthly', '2027-01-01 00:00+00') \gset
SELECT status FROM billing.record_payment(:t1, 2999, 'usd', true, '2027-01-05 00:00+00');
SELECT status FROM billing.change_plan(:t1, 'enterprise_yearly', '2027-01-20 00:00+00');
-- t2's trial (14 days) ends unpaid on 15 Jan
SELECT action, count FROM billing.run_maintenance('2027-01-16 00:00+00') WHERE count > 0 ORDER BY action;
-- 2 trials in January, t1 converted: 1 / 2 = 0.5 (0.2.0 said 1 trial, 0 converted: t1's
-- subscription ended as plan_changed)
SELECT * FROM billing.trial_conversion('2027-01-01 00:00+00', '2027-02-01 00:00+00');
-- on 1 Jan: 2 new trials (0.2.0: 1); on 5 Jan: t1's conversion
SELECT * FROM billing.daily_report('2027-01-01');
SELECT * FROM billing.daily_report('2027-01-05');
-- a window that ends before the payment: t1 still trialing then, not converted
SELECT * FROM billing.trial_conversion('2027-01-01 00:00+00', '2027-01-03 00:00+00');

-- == A cancellation stays on its day after a reactivation
DROP EXTENSION billing CASCADE;
CREATE EXTENSION billing;
SELECT id AS r1 FROM billing.subscribe('r1', 'pro_monthly', '2027-01-01 00:00+00', with_trial => false) \gset
SELECT status FROM billing.record_payment(:r1, 2999, 'usd', true, '2027-01-01 01:00+00');
SELECT status FROM billing.cancel(:r1, true, '2027-01-10 00:00+00');
SELECT status FROM billing.reactivate(:r1, '2027-01-12 00:00+00');
-- 10 Jan: 1 cancellation (0.2.0: 0, canceled_at was cleared); 12 Jan: none
SELECT * FROM billing.daily_report('2027-01-10');
SELECT value AS cancellations_12_jan FROM billing.daily_report('2027-01-12') WHERE metric = 'cancellations';
-- canceled at period end still pays until then: 2999 on 11 Jan
SELECT * FROM billing.mrr('2027-01-11 00:00+00');

-- == Churn is per user (one scan, an anti join by user): a plan change between
-- the two times is not churn, nor is a customer who pays in another currency
-- at the end; one who stops paying is
DROP EXTENSION billing CASCADE;
CREATE EXTENSION billing;
INSERT INTO billing.subscription_plans (code, name, tier, billing_interval, price_cents, currency)
VALUES ('eu_basic', 'EU basic', 'custom', 'monthly', 1000, 'eur');
SELECT id AS k1 FROM billing.subscribe('k1', 'pro_monthly', '2032-01-01 00:00+00', with_trial => false) \gset
SELECT id AS k2 FROM billing.subscribe('k2', 'pro_monthly', '2032-01-01 00:00+00', with_trial => false) \gset
SELECT id AS k3 FROM billing.subscribe('k3', 'pro_monthly', '2032-01-01 00:00+00', with_trial => false) \gset
SELECT count(*) FROM (SELECT billing.record_payment(:k1, 2999, 'usd', true, '2032-01-01 01:00+00')
			UNION ALL SELECT billing.record_payment(:k2, 2999, 'usd', true, '2032-01-01 01:00+00')
			UNION ALL SELECT billing.record_payment(:k3, 2999, 'usd', true, '2032-01-01 01:00+00')) p;
-- k1 upgrades on 10 Jan and pays the upgrade's invoice
SELECT plan_id = (SELECT id FROM billing.subscription_plans WHERE code = 'enterprise_yearly') AS upgraded
  FROM billing.change_plan(:k1, 'enterprise_yearly', '2032-01-10 00:00+00');
SELECT id AS k1b FROM billing.subscriptions WHERE user_id = 'k1' AND ended_at IS NULL \gset
SELECT status FROM billing.record_payment(:k1b, (SELECT amount_due_cents FROM billing.invoices
	WHERE subscription_id = :k1b AND status = 'open' ORDER BY issued_at LIMIT 1), 'usd', true, '2032-01-10 01:00+00');
-- k2 cancels now on 10 Jan and pays for eu_basic in eur from 11 Jan; k3 cancels now on 10 Jan
SELECT status FROM billing.cancel(:k2, false, '2032-01-10 00:00+00');
SELECT id AS k2b FROM billing.subscribe('k2', 'eu_basic', '2032-01-11 00:00+00', with_trial => false) \gset
SELECT status FROM billing.record_payment(:k2b, 1000, 'eur', true, '2032-01-11 01:00+00');
SELECT status FROM billing.cancel(:k3, false, '2032-01-10 00:00+00');
-- 5 Jan to 20 Jan: 3 usd customers at the start (3 x 2999 = 8997), only k3 lost (2999, 1/3);
-- eur had no customer at the start
SELECT * FROM billing.churn('2032-01-05 00:00+00', '2032-01-20 00:00+00');
-- on 20 Jan: k1 on enterprise_yearly (99900 / 12 = 8325) usd, k2 1000 eur
SELECT * FROM billing.mrr('2032-01-20 00:00+00');

-- == An incomplete subscription canceled before any payment never paid
DROP EXTENSION billing CASCADE;
CREATE EXTENSION billing;
SELECT id AS m1 FROM billing.subscribe('m1', 'pro_monthly', '2030-06-01 00:00+00', with_trial => false) \gset
SELECT status FROM billing.record_payment(:m1, 2999, 'usd', true, '2030-06-01 00:00+00');
SELECT id AS i4 FROM billing.subscribe('4', 'enterprise_yearly', '2030-06-01 00:00+00', false) \gset
SELECT status, ended_at FROM billing.cancel(:i4, false, '2030-06-01 20:00+00');
-- at 10:00 only m1 pays: 2999 (0.2.0: 2999 + 99900 / 12 = 2999 + 8325 = 11324)
SELECT * FROM billing.mrr('2030-06-01 10:00+00');
-- nor does it churn: 1 customer at the start, none lost (0.2.0: 2, 1 churned)
SELECT * FROM billing.churn('2030-06-01 10:00+00', '2030-06-02 00:00+00');

-- == UTC calendar buckets whatever the session's TimeZone
SELECT count(*) FROM billing.run_maintenance('2030-07-01 00:00+00');
SELECT status FROM billing.record_payment(:m1, 2999, 'usd', true, '2030-07-01 00:00+00');
SELECT count(*) FROM billing.run_maintenance('2030-08-01 00:00+00');
SELECT status FROM billing.record_payment(:m1, 2999, 'usd', true, '2030-08-01 00:00+00');
SET timezone = 'America/New_York';
-- three months paid (1 Jun, 1 Jul, 1 Aug 00:00 UTC), 2999 each, in the UTC months they were paid in
-- (0.2.0: buckets from 28 Feb 23:00 UTC stepping in New York time, only March non-zero)
SELECT "time" AT TIME ZONE 'UTC' AS utc_month, metric, value
  FROM billing.revenue('2030-03-01 00:00+00', '2030-12-01 00:00+00', 'month') WHERE value <> 0 OR "time" < '2030-04-01 00:00+00';
SELECT count(*) AS buckets, min("time" AT TIME ZONE 'UTC') AS first_utc FROM billing.revenue('2030-03-01 00:00+00', '2030-12-01 00:00+00', 'month');
-- weeks start on Monday 00:00 UTC
SELECT "time" AT TIME ZONE 'UTC' AS utc_week, value FROM billing.revenue('2030-06-01 00:00+00', '2030-06-10 00:00+00', 'week');
SET timezone = 'UTC';

-- == Unbounded periods: refused with 22008 (README, Errors), never a long run
SELECT * FROM billing.mrr('infinity');
SELECT * FROM billing.mrr('-infinity');
SELECT * FROM billing.churn('-infinity', 'infinity');
SELECT * FROM billing.trial_conversion('-infinity', 'infinity');
SELECT * FROM billing.plan_distribution('infinity');
SELECT * FROM billing.daily_report('infinity');
SELECT count(*) FROM billing.arpu('-infinity', 'infinity');
SELECT * FROM billing.revenue('-infinity', '2030-01-01 00:00+00', 'day');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM billing.usage_trends('2030-01-01 00:00+00', 'infinity', 'month');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM billing.usage_trends('1000-01-01 00:00+00', '3000-01-01 00:00+00', 'day');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM billing.revenue('1000-01-01 00:00+00', '3000-01-01 00:00+00', 'year');

-- == The change time a lifecycle call declares ends with it: a later UPDATE
-- in the same transaction is dated by its own row (before: by the call's
-- `at`, so this cancel would have started on 10 Jan, not on 20 Jan)
SELECT id AS d1 FROM billing.subscribe('d1', 'pro_monthly', '2031-01-01 00:00+00', with_trial => false) \gset
SELECT status FROM billing.record_payment(:d1, 2999, 'usd', true, '2031-01-01 01:00+00');
BEGIN;
SELECT status FROM billing.pause(:d1, '2031-01-10 00:00+00');
SELECT current_setting('billing.change_at') AS declared_after_the_call;
UPDATE billing.subscriptions SET cancel_at_period_end = true, canceled_at = '2031-01-20 00:00+00' WHERE id = :d1;
COMMIT;
SELECT status, cancel_at_period_end, valid_from, valid_to FROM billing.subscription_history
 WHERE subscription_id = :d1 ORDER BY valid_from, id;

-- == Set-based: the helpers are inlined into the reports' queries (no
-- function call per history row; EXPLAIN VERBOSE names none of them)
CREATE FUNCTION pg_temp.calls_in_plan(q text) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
	plan text := '';
	line text;
BEGIN
	FOR line IN EXECUTE 'EXPLAIN (VERBOSE, COSTS OFF) ' || q LOOP
		plan := plan || line || E'\n';
	END LOOP;
	RETURN ARRAY(SELECT DISTINCT m[1] FROM regexp_matches(plan, '\m(_[a-z_]+)\(', 'g') m ORDER BY 1);
END
$$;
SELECT pg_temp.calls_in_plan($$SELECT count(*) FILTER (WHERE b.paying), count(*) FILTER (WHERE b.entitled),
	count(*) FILTER (WHERE b.current), sum(b.monthly_cents) FROM billing._book_at('2031-01-15 00:00+00') b$$) AS book_at,
	   pg_temp.calls_in_plan($$SELECT count(*) FROM billing._trials_started('2031-01-01 00:00+00', '2031-02-01 00:00+00')$$) AS trials;
-- and the reports' own queries, read from the functions as installed (the
-- query each runs with EXECUTE, and trial_conversion's), with the arguments
-- as literals: no helper left as a call either (churn's predicates included)
SELECT p.proname, pg_temp.calls_in_plan(replace(replace(substring(p.prosrc from '\$q\$(.*)\$q\$'),
		 '$1', CASE WHEN p.proname = 'daily_report' THEN '''2031-01-15''::date' ELSE '''2031-01-01 00:00+00''::timestamptz' END),
		 '$2', '''2031-02-01 00:00+00''::timestamptz')) AS calls
  FROM pg_proc p WHERE p.pronamespace = 'billing'::regnamespace AND p.prosrc LIKE '%$q$%' ORDER BY 1;
SELECT pg_temp.calls_in_plan(replace(replace(substring(prosrc from '(WITH trials AS.*)$'),
		 'from_time', '''2031-01-01 00:00+00''::timestamptz'), 'to_time', '''2031-02-01 00:00+00''::timestamptz')) AS trial_conversion
  FROM pg_proc WHERE oid = 'billing.trial_conversion(timestamptz, timestamptz)'::regprocedure;

-- == A payment that ends dunning while the subscription is canceled at
-- period end changes only past_due_since: the history records it (a new
-- interval without a grace end), so the reports count the customer as
-- paying until the period ends, as effective_plan does (the model test,
-- seed 8, shrunk: plan_distribution said free). Trial 21 Sep, paid at once
-- (period to 21 Oct), renewed unpaid (due 24 Oct: past_due, grace to
-- 7 Nov), canceled at period end on 5 Nov, paid on 5 Nov; on 19 Nov the
-- period (to 21 Nov) is paid and still running.
SELECT id AS s8 FROM billing.start_trial('rh_grace', 'pro_monthly', '2030-09-21 05:53:17+00') \gset
SELECT status FROM billing.record_payment(:s8, 2999, 'usd', true, '2030-09-21 06:03:00+00');
SELECT status, past_due_since FROM billing.cancel(:s8, true, '2030-11-05 09:43:02+00');
SELECT status, past_due_since FROM billing.record_payment(:s8, 2999, 'usd', true, '2030-11-05 09:49:46+00');
SELECT status, previous_status, valid_from, valid_to, grace_end FROM billing.subscription_history
 WHERE subscription_id = :s8 AND valid_from >= '2030-11-05 00:00+00' ORDER BY valid_from, id;
SELECT code FROM billing.effective_plan('rh_grace', '2030-11-19 23:30:05+00');
SELECT b.entitled, b.paying FROM billing._book_at('2030-11-19 23:30:05+00') b WHERE b.user_id = 'rh_grace';
