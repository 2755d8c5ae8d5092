-- The history trigger's cost: pause and resume (two lifecycle writes each)
-- on 500 paying subscriptions with the history triggers on, then on another
-- 500 with them off, alternately for :rounds rounds.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SET bench.rounds = :rounds;
CREATE TEMP TABLE op_timings (variant text, round int, us_per_op double precision);
DO $$
DECLARE
	ids bigint[];
	t0 timestamptz;
	n int := 500;
BEGIN
	FOR r IN 1 .. current_setting('bench.rounds')::int LOOP
		FOR v IN 0 .. 1 LOOP
			SELECT array_agg(id) INTO ids FROM (
				SELECT s.id FROM billing.subscriptions s
				 WHERE s.status = 'active' AND s.price_cents > 0 AND s.ended_at IS NULL AND s.paused_at IS NULL
				   AND s.billing_interval = 'monthly'
				   -- billing refuses an operation dated before a subscription's latest change
				   AND s.current_period_start <= '2026-11-20 00:00+00'
				   AND NOT EXISTS (SELECT FROM billing.payments p WHERE p.subscription_id = s.id
									  AND p.paid_at > '2026-11-20 00:00+00')
				 ORDER BY s.id OFFSET ((r - 1) * 2 + v) * n LIMIT n) x;
			IF v = 1 THEN
				ALTER TABLE billing.subscriptions DISABLE TRIGGER history_updated;
			END IF;
			t0 := clock_timestamp();
			PERFORM billing.pause(i, '2026-11-20 00:00+00') FROM unnest(ids) i;
			PERFORM billing.resume(i, '2026-11-21 00:00+00') FROM unnest(ids) i;
			INSERT INTO op_timings VALUES (CASE v WHEN 0 THEN 'history on' ELSE 'history off' END, r,
										   extract(epoch FROM clock_timestamp() - t0) * 1e6 / (2 * n));
			IF v = 1 THEN
				ALTER TABLE billing.subscriptions ENABLE TRIGGER history_updated;
			END IF;
		END LOOP;
	END LOOP;
END
$$;
\echo 'pause + resume, microseconds per operation (min / median / max)'
SELECT variant, format('%s / %s / %s', round(min(us_per_op)), round(percentile_cont(0.5) WITHIN GROUP (ORDER BY us_per_op)),
					   round(max(us_per_op))) AS us_min_median_max
  FROM op_timings GROUP BY variant ORDER BY variant DESC;
