-- Scale audit (session 10): the reports of the book at a time (mrr, arr,
-- active_subscriptions, plan_distribution, churn, daily_report: the
-- intervals valid at `at`, billing._valid_at) read the intervals still open
-- at that time, not the whole history before it. Every renewal closes an
-- interval, so for a recent time nearly all of a long history ended before
-- it: through the (valid_from, valid_to) index alone mrr read all of it
-- (bench/scale/audit.py, 36 renewals per paying subscription at 200,000
-- users: 0.55 s, 0.2 s through subscription_history_valid_to).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
CREATE FUNCTION pg_temp.plan(query text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	line text;
	plan text := '';
BEGIN
	FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || query LOOP
		plan := plan || line || E'\n';
	END LOOP;
	RETURN plan;
END
$$;
-- 200 subscriptions, each with 30 closed monthly intervals before its open one
SELECT count(*) FROM generate_series(1, 200) i, billing.subscribe('h-' || i, 'pro_monthly', '2024-01-01', false) s,
	LATERAL billing.record_payment(s.id, 2999, 'usd', true, '2024-01-01') p;
INSERT INTO billing.subscription_history (subscription_id, user_id, plan_id, status, price_cents, currency, billing_interval,
										  paid_since, valid_from, valid_to)
SELECT h.subscription_id, h.user_id, h.plan_id, 'active', h.price_cents, h.currency, h.billing_interval, '2021-01-01',
	   '2021-01-01'::timestamptz + m * interval '1 month', '2021-01-01'::timestamptz + (m + 1) * interval '1 month'
  FROM billing.subscription_history h, generate_series(0, 29) m WHERE h.valid_to = 'infinity';
ANALYZE billing.subscription_history;
-- mrr's query (its _book_at, inlined) at a recent time: the intervals open
-- then, through subscription_history_valid_to
SELECT pg_temp.plan($q$
	SELECT b.currency, pg_catalog.round(pg_catalog.sum(b.monthly_cents))::bigint, pg_catalog.count(*)
	  FROM billing._book_at('2024-06-01 00:00+00') b
	 WHERE b.paying
	 GROUP BY b.currency$q$) ~ 'Index Scan using subscription_history_valid_to|Bitmap Index Scan on subscription_history_valid_to' AS open_intervals_only;
-- a time early in the history still starts from valid_from
SELECT pg_temp.plan($q$SELECT count(*) FROM billing._book_at('2021-01-15 00:00+00') b$q$) ~ 'subscription_history_valid[^_]' AS early_from_valid_from;
-- the figures
SELECT * FROM billing.mrr('2024-06-01 00:00+00');
SELECT * FROM billing.mrr('2021-06-15 00:00+00');
