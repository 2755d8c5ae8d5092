-- The history property: a report for a time D computed right after D gives
-- the same answer after any later sequence of operations; and every report
-- gives the same instants and figures under any session TimeZone.
-- A seeded random book: 12 users, 120 days, 4 operations a day, daily
-- maintenance; every 10 days each report is recorded for D = the next midnight.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
CREATE EXTENSION billing;
SET timezone = 'UTC';

-- render(sql, tz): the report's rows computed under TimeZone tz, rendered in UTC.
CREATE FUNCTION pg_temp.render(query text, tz text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	result text;
BEGIN
	PERFORM set_config('TimeZone', tz, true);
	EXECUTE 'CREATE TEMP TABLE report_rows AS ' || query;
	PERFORM set_config('TimeZone', 'UTC', true);
	SELECT string_agg(r::text, '; ' ORDER BY r::text) INTO result FROM report_rows r;
	DROP TABLE report_rows;
	RETURN COALESCE(result, '(none)');
END
$$;

-- The reports of D (a midnight UTC): point-in-time at D, windows ending at D.
CREATE FUNCTION pg_temp.reports(d timestamptz) RETURNS TABLE (report text, query text) LANGUAGE sql AS $$
	-- the arguments are computed here, in UTC: "D - 10 days" in New York time
	-- would be another instant across a DST change
	SELECT r, replace(replace(replace(replace(replace(q,
			'$DAY', format('%L::date', (d AT TIME ZONE 'UTC')::date - 1)),
			'$D10', format('%L::timestamptz', d - interval '10 days')),
			'$D30', format('%L::timestamptz', d - interval '30 days')),
			'$D60', format('%L::timestamptz', d - interval '60 days')),
			'$D', format('%L::timestamptz', d))
	  FROM (VALUES
		('mrr', 'SELECT * FROM billing.mrr($D)'),
		('arr', 'SELECT * FROM billing.arr($D)'),
		('active_subscriptions', 'SELECT * FROM billing.active_subscriptions($D)'),
		('plan_distribution', 'SELECT * FROM billing.plan_distribution($D)'),
		('churn', 'SELECT * FROM billing.churn($D30, $D)'),
		('arpu', 'SELECT * FROM billing.arpu($D30, $D)'),
		('trial_conversion', 'SELECT * FROM billing.trial_conversion($D30, $D)'),
		('daily_report', 'SELECT * FROM billing.daily_report($DAY)'),
		('revenue_day', 'SELECT * FROM billing.revenue($D10, $D, ''day'')'),
		('revenue_week', 'SELECT * FROM billing.revenue($D30, $D, ''week'')'),
		('revenue_month', 'SELECT * FROM billing.revenue($D60, $D, ''month'')'),
		('usage_trends', 'SELECT * FROM billing.usage_trends($D10, $D, ''day'')')) v(r, q)
$$;

CREATE TEMP TABLE recorded (d timestamptz, report text, result text);

DO $$
DECLARE
	day date;
	at timestamptz;
	u text;
	sid bigint;
	due bigint;
	plans text[] := ARRAY['pro_monthly', 'pro_yearly', 'enterprise_yearly', 'pro_monthly'];
	op int;
BEGIN
	PERFORM setseed(0.11);
	FOR i IN 0 .. 119 LOOP
		day := date '2027-01-01' + i;
		FOR k IN 1 .. 4 LOOP
			at := day::timestamp AT TIME ZONE 'UTC' + (k * 5 + floor(random() * 4)) * interval '1 hour';
			u := 'u' || (1 + floor(random() * 12))::int;
			op := floor(random() * 12)::int;
			SELECT s.id INTO sid FROM billing.subscriptions s WHERE s.user_id = u AND s.ended_at IS NULL;
			SELECT i.amount_due_cents INTO due FROM billing.invoices i
			 WHERE i.subscription_id = sid AND i.status = 'open' ORDER BY i.issued_at LIMIT 1;
			BEGIN
				CASE op
				WHEN 0 THEN PERFORM billing.start_trial(u, plans[1 + floor(random() * 4)::int], at);
				WHEN 1 THEN PERFORM billing.subscribe(u, plans[1 + floor(random() * 4)::int], at, false);
				WHEN 2, 3 THEN PERFORM billing.record_payment(sid, COALESCE(due, 2999), 'usd', true, at);
				WHEN 4 THEN PERFORM billing.record_payment(sid, COALESCE(due, 2999), 'usd', false, at);
				WHEN 5 THEN PERFORM billing.cancel(sid, random() < 0.7, at);
				WHEN 6 THEN PERFORM billing.pause(sid, at);
				WHEN 7 THEN PERFORM billing.resume(sid, at);
				WHEN 8 THEN PERFORM billing.reactivate(sid, at);
				WHEN 9 THEN PERFORM billing.change_plan(sid, plans[1 + floor(random() * 4)::int], at);
				ELSE INSERT INTO billing.usage_records (user_id, metric, quantity, recorded_at)
					 VALUES (u, 'api_calls', 1 + floor(random() * 50)::bigint, at);
				END CASE;
			EXCEPTION WHEN OTHERS THEN
				NULL;  -- a transition the state machine refuses: the book goes on
			END;
		END LOOP;
		PERFORM billing.run_maintenance(day::timestamp AT TIME ZONE 'UTC' + interval '23 hours 59 minutes');
		IF i % 10 = 9 THEN
			INSERT INTO recorded
			SELECT (day + 1)::timestamp AT TIME ZONE 'UTC', r.report, pg_temp.render(r.query, 'UTC')
			  FROM pg_temp.reports((day + 1)::timestamp AT TIME ZONE 'UTC') r;
		END IF;
	END LOOP;
END
$$;

-- the book is not trivial: subscriptions went through many states, and the
-- recorded figures differ from one date to the next
SELECT count(*) > 150 AS many_intervals, count(DISTINCT status) >= 5 AS many_statuses
  FROM billing.subscription_history;
SELECT report, count(DISTINCT result) > 3 AS varies FROM recorded
 WHERE report IN ('mrr', 'plan_distribution', 'churn', 'daily_report', 'trial_conversion', 'usage_trends')
 GROUP BY report ORDER BY report;

-- Afterwards (all 120 days played), every recorded report is unchanged, and
-- the same under New York and Kolkata time.
CREATE TEMP TABLE rechecked AS
SELECT tz, r.d, r.report, r.result, pg_temp.render(q.query, tz) AS now
  FROM recorded r
  CROSS JOIN (VALUES ('UTC'), ('America/New_York'), ('Asia/Kolkata')) z(tz)
  JOIN LATERAL pg_temp.reports(r.d) q ON q.report = r.report;
SELECT tz, report, count(*) AS dates, count(*) FILTER (WHERE now <> result) AS changed
  FROM rechecked GROUP BY tz, report ORDER BY tz, report;
-- Any difference is shown here (no rows when the property holds).
SELECT tz, d, report, result AS recorded, now FROM rechecked WHERE now <> result ORDER BY 1, 2, 3 LIMIT 5;

-- A date in dunning after the grace end, reported before maintenance has
-- ended the subscription: the reports already count it as ended there (the
-- history keeps when dunning began), and do not change once maintenance
-- writes the end, dated at the grace end. pro_monthly from 1 Jan 2031, paid;
-- February's invoice (issued 1 Feb, due 4 Feb) is not paid: past_due from
-- 4 Feb, the 14 days of grace end on 18 Feb; 20 Feb is after it.
SELECT id AS grace_sub FROM billing.subscribe('grace_user', 'pro_monthly', '2031-01-01', false) \gset
SELECT status FROM billing.record_payment(:grace_sub, 2999, 'usd', true, '2031-01-01 01:00');
SELECT count(*) > 0 AS maintained FROM billing.run_maintenance('2031-02-10');
SELECT status, past_due_since FROM billing.subscriptions WHERE id = :grace_sub;
CREATE TEMP TABLE grace_before AS
SELECT q.report, pg_temp.render(q.query, 'UTC') AS result FROM pg_temp.reports('2031-02-20 00:00+00') q;
SELECT plan_code, users FROM billing.plan_distribution('2031-02-20') WHERE plan_code = 'pro_monthly';
SELECT count(*) > 0 AS maintained FROM billing.run_maintenance('2031-03-01');
SELECT status, ended_at FROM billing.subscriptions WHERE id = :grace_sub;
SELECT b.report, b.result = pg_temp.render(q.query, 'UTC') AS unchanged
  FROM grace_before b JOIN pg_temp.reports('2031-02-20 00:00+00') q USING (report) ORDER BY 1;
-- What still changes: only the Free subscription that maintenance opens at the
-- grace end (it does not exist before maintenance runs), counted by
-- active_subscriptions and daily_report's active_free; every paid figure holds.
SELECT b.report, b.result AS before, pg_temp.render(q.query, 'UTC') AS after
  FROM grace_before b JOIN pg_temp.reports('2031-02-20 00:00+00') q USING (report)
 WHERE b.result <> pg_temp.render(q.query, 'UTC') ORDER BY 1;
