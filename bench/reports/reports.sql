-- Each report for a past date against the query a DBA would write on
-- billing.subscription_history for the same figures, alternately, :rounds
-- rounds; then the history trigger's cost on pause/resume. The same
-- figures: the DBA's queries apply the dunning grace too (a past_due
-- subscription past its grace end pays and grants nothing; until session 8
-- they left it out and counted 6,000 more paying subscriptions than mrr on
-- the 200,000-user book at its due moment), and mrr and arr are checked
-- against their DBA query at the measured date and at the due moment.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
\i bench/reports/lib.sql
CREATE TEMP TABLE pairs (name text, report text, dba text);
INSERT INTO pairs VALUES
('mrr', 'SELECT * FROM billing.mrr($T)',
 $$SELECT currency, round(sum(CASE billing_interval WHEN 'monthly' THEN price_cents::numeric
										  WHEN 'yearly' THEN price_cents / 12.0 ELSE 0 END))::bigint, count(*)
	 FROM billing.subscription_history
	WHERE valid_from <= $T AND valid_to > $T AND NOT removed AND price_cents > 0 AND paid_since IS NOT NULL
	  AND billing_interval <> 'lifetime' AND status IN ('active', 'past_due', 'canceled')
	  AND (ended_at IS NULL OR ended_at > $T) AND (status <> 'canceled' OR current_period_end > $T)
	  AND (trial_end IS NULL OR trial_end <= $T) AND (grace_end IS NULL OR grace_end > $T)
	GROUP BY currency$$),
('arr', 'SELECT * FROM billing.arr($T)',
 $$SELECT currency, 12 * round(sum(CASE billing_interval WHEN 'monthly' THEN price_cents::numeric
										  WHEN 'yearly' THEN price_cents / 12.0 ELSE 0 END))::bigint
	 FROM billing.subscription_history
	WHERE valid_from <= $T AND valid_to > $T AND NOT removed AND price_cents > 0 AND paid_since IS NOT NULL
	  AND billing_interval <> 'lifetime' AND status IN ('active', 'past_due', 'canceled')
	  AND (ended_at IS NULL OR ended_at > $T) AND (status <> 'canceled' OR current_period_end > $T)
	  AND (trial_end IS NULL OR trial_end <= $T) AND (grace_end IS NULL OR grace_end > $T)
	GROUP BY currency$$),
('churn', 'SELECT * FROM billing.churn($T - interval ''30 days'', $T)',
 $$WITH paying AS (
	SELECT h.valid_from, h.valid_to, h.user_id, h.currency, h.status, h.ended_at, h.current_period_end, h.trial_end, h.grace_end,
		   CASE billing_interval WHEN 'monthly' THEN price_cents::numeric WHEN 'yearly' THEN price_cents / 12.0 ELSE 0 END AS mrr
	  FROM billing.subscription_history h
	 WHERE NOT removed AND price_cents > 0 AND paid_since IS NOT NULL AND billing_interval <> 'lifetime'
	   AND status IN ('active', 'past_due', 'canceled')),
  s AS (SELECT user_id, currency, mrr FROM paying, (SELECT $T - interval '30 days' AS t) x
		 WHERE valid_from <= x.t AND valid_to > x.t AND (ended_at IS NULL OR ended_at > x.t)
		   AND (status <> 'canceled' OR current_period_end > x.t) AND (trial_end IS NULL OR trial_end <= x.t)
		   AND (grace_end IS NULL OR grace_end > x.t)),
  e AS (SELECT DISTINCT user_id FROM paying
		 WHERE valid_from <= $T AND valid_to > $T AND (ended_at IS NULL OR ended_at > $T)
		   AND (status <> 'canceled' OR current_period_end > $T) AND (trial_end IS NULL OR trial_end <= $T)
		   AND (grace_end IS NULL OR grace_end > $T))
  SELECT s.currency, count(*), count(*) FILTER (WHERE e.user_id IS NULL), sum(s.mrr),
		 sum(s.mrr) FILTER (WHERE e.user_id IS NULL)
	FROM s LEFT JOIN e USING (user_id) GROUP BY s.currency$$),
('plan_distribution', 'SELECT * FROM billing.plan_distribution($T)',
 $$SELECT COALESCE(plan_id, 1) AS plan_id, count(*)
	 FROM (SELECT user_id, max(plan_id) FILTER (
				WHERE (ended_at IS NULL OR ended_at > $T) AND status IN ('trialing', 'active', 'past_due', 'canceled')
				  AND NOT (status = 'trialing' AND trial_end <= $T)
				  AND NOT (status = 'canceled' AND current_period_end <= $T)
				  AND (grace_end IS NULL OR grace_end > $T)) AS plan_id
			 FROM billing.subscription_history
			WHERE valid_from <= $T AND valid_to > $T AND NOT removed GROUP BY user_id) u
	GROUP BY 1$$),
('daily_report', 'SELECT * FROM billing.daily_report(($T AT TIME ZONE ''UTC'')::date)',
 $$SELECT p.tier::text, count(*) FROM billing.subscription_history h JOIN billing.subscription_plans p ON p.id = h.plan_id
	WHERE h.valid_from < $T + interval '1 day' AND h.valid_to >= $T + interval '1 day' AND NOT h.removed
	  AND (h.ended_at IS NULL OR h.ended_at >= $T + interval '1 day') AND h.status NOT IN ('incomplete', 'paused')
	GROUP BY p.tier
   UNION ALL SELECT 'new_trials', count(*) FROM billing.subscription_history
	WHERE status = 'trialing' AND previous_status IS NULL AND valid_from = trial_start
	  AND valid_from >= $T AND valid_from < $T + interval '1 day'
   UNION ALL SELECT 'conversions', count(*) FROM billing.subscription_history
	WHERE valid_from >= $T AND valid_from < $T + interval '1 day' AND valid_from = paid_since AND trial_start IS NOT NULL
	  AND status IN ('active', 'past_due') AND previous_status NOT IN ('active', 'past_due')
   UNION ALL SELECT 'cancellations', count(*) FROM billing.subscription_history
	WHERE status = 'canceled' AND previous_status <> 'canceled' AND valid_from >= $T AND valid_from < $T + interval '1 day'
   UNION ALL SELECT 'failed', count(*) FROM billing.payments
	WHERE status = 'failed' AND paid_at >= $T AND paid_at < $T + interval '1 day'$$);
-- the time series (session 10: each built its buckets twice, the first
-- time only to check the arguments): an hourly revenue over the year before
-- $T (8,760 buckets) and a daily usage series over ten years (3,650), against
-- the same series written as one plain query
INSERT INTO pairs VALUES
('revenue_hourly', 'SELECT * FROM billing.revenue($T - interval ''365 days'', $T, ''hour'')',
 $$WITH b AS (SELECT g AT TIME ZONE 'UTC' AS bucket FROM generate_series(date_trunc('hour', ($T - interval '365 days') AT TIME ZONE 'UTC'),
														   ($T AT TIME ZONE 'UTC') - interval '1 microsecond', interval '1 hour') g),
   m AS MATERIALIZED (SELECT date_trunc('hour', paid_at, 'UTC') AS bucket, currency, sum(amount_cents) AS cents
		   FROM billing.payments WHERE status = 'succeeded' AND paid_at >= $T - interval '365 days' AND paid_at < $T
			AND (deleted_at IS NULL OR deleted_at >= $T) GROUP BY 1, 2)
  SELECT b.bucket, 'revenue_cents_' || c.currency, COALESCE(m.cents, 0)
	FROM b CROSS JOIN (SELECT DISTINCT currency FROM m) c LEFT JOIN m ON m.bucket = b.bucket AND m.currency = c.currency
   ORDER BY 1, 2$$),
('usage_trends_10y', 'SELECT * FROM billing.usage_trends($T - interval ''3650 days'', $T, ''day'')',
 $$WITH b AS (SELECT g AT TIME ZONE 'UTC' AS bucket FROM generate_series(date_trunc('day', ($T - interval '3650 days') AT TIME ZONE 'UTC'),
														   ($T AT TIME ZONE 'UTC') - interval '1 microsecond', interval '1 day') g),
   a AS (SELECT day::timestamp AT TIME ZONE 'UTC' AS bucket, metric, sum(quantity) AS total FROM billing.usage_daily
		  WHERE deleted_at IS NULL AND day >= ($T - interval '3650 days')::date AND day < $T::date GROUP BY 1, 2)
  SELECT a.bucket, a.metric, a.total FROM a JOIN b ON b.bucket = a.bucket ORDER BY 1, 2$$);
UPDATE pairs SET report = replace(report, '$T', quote_literal(:'at') || '::timestamptz'),
				 dba = replace(dba, '$T', quote_literal(:'at') || '::timestamptz');

CREATE TEMP TABLE timings (name text, variant text, round int, ms double precision);
SET bench.rounds = :rounds;
SET bench.at = :'at';
DO $$
DECLARE
	p record;
BEGIN
	FOR r IN 1 .. current_setting('bench.rounds')::int LOOP
		FOR p IN SELECT * FROM pairs LOOP
			INSERT INTO timings VALUES (p.name, 'report', r, pg_temp.ms(p.report)), (p.name, 'dba', r, pg_temp.ms(p.dba));
		END LOOP;
	END LOOP;
END
$$;
\echo 'the same figures (report = DBA query) at the measured date and at the due moment'
CREATE TEMP TABLE same_figures (name text, at text, same boolean);
DO $$
DECLARE
	p record;
	t text;
	a text;
	b text;
BEGIN
	FOR p IN SELECT * FROM pairs WHERE name IN ('mrr', 'arr') LOOP
		FOREACH t IN ARRAY ARRAY[current_setting('bench.at'), '2026-12-01 00:00:00+00'] LOOP
			EXECUTE 'SELECT string_agg(x::text, '';'' ORDER BY x::text) FROM ('
				|| replace(p.report, quote_literal(current_setting('bench.at')), quote_literal(t)) || ') x' INTO a;
			EXECUTE 'SELECT string_agg(x::text, '';'' ORDER BY x::text) FROM ('
				|| replace(p.dba, quote_literal(current_setting('bench.at')), quote_literal(t)) || ') x' INTO b;
			INSERT INTO same_figures VALUES (p.name, t, a IS NOT DISTINCT FROM b);
		END LOOP;
	END LOOP;
END
$$;
SELECT name, at, same FROM same_figures ORDER BY name, at;
\echo 'reports for a past date against the straightforward history queries (ms)'
SELECT t.name,
	   format('%s / %s / %s', round(min(ms) FILTER (WHERE variant = 'report')), round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE variant = 'report')), round(max(ms) FILTER (WHERE variant = 'report'))) AS report_min_median_max,
	   format('%s / %s / %s', round(min(ms) FILTER (WHERE variant = 'dba')), round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE variant = 'dba')), round(max(ms) FILTER (WHERE variant = 'dba'))) AS dba_min_median_max,
	   round((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE variant = 'report')
			/ percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE variant = 'dba'))::numeric, 2) AS median_ratio
  FROM timings t GROUP BY t.name ORDER BY t.name;
