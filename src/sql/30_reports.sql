-- Reports for DBAs and finance (SPEC §6). Every function takes explicit times
-- and groups money by currency; amounts are exact (numeric, never float).
-- Time series come back as (time, metric, value) rows for Grafana.

-- Internal: was this subscription paying at `at`? Paying means a paid plan
-- after its trial, not paused, not incomplete, and not yet ended. A canceled
-- subscription pays until its period ends (Stripe keeps it active until then);
-- one that ended unpaid (trial or incomplete) never paid.
CREATE FUNCTION billing._paying_at(s billing.subscriptions, at timestamptz) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
	SELECT s.price_cents > 0
	   AND s.deleted_at IS NULL
	   AND s.billing_interval <> 'lifetime'
	   AND s.started_at <= at
	   AND (s.ended_at IS NULL OR s.ended_at > at)
	   AND (s.trial_end IS NULL OR s.trial_end <= at)
	   AND COALESCE(s.end_reason, '') NOT IN ('trial_ended', 'incomplete_expired')
	   AND s.status NOT IN ('incomplete', 'trialing')
	   AND NOT (s.status = 'paused' AND s.paused_at <= at)
	   AND NOT (s.status = 'canceled' AND s.ended_at IS NULL AND s.current_period_end <= at)
$$;

-- Internal: the monthly-normalized price (yearly / 12, lifetime 0), exact.
CREATE FUNCTION billing._monthly_cents(s billing.subscriptions) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
	SELECT CASE s.billing_interval WHEN 'monthly' THEN s.price_cents::numeric
								   WHEN 'yearly' THEN s.price_cents::numeric / 12
								   ELSE 0 END
$$;

CREATE FUNCTION billing.mrr(at timestamptz DEFAULT pg_catalog.now())
RETURNS TABLE (currency text, mrr_cents bigint, subscriptions bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT s.currency, pg_catalog.round(pg_catalog.sum(billing._monthly_cents(s)))::bigint, pg_catalog.count(*)
	  FROM billing.subscriptions s
	 WHERE billing._paying_at(s, at)
	 GROUP BY s.currency
	 ORDER BY s.currency
$$;
COMMENT ON FUNCTION billing.mrr(timestamptz) IS
	'Monthly recurring revenue by currency (Stripe''s definition: yearly counts 1/12, trials and free count 0)';

CREATE FUNCTION billing.arr(at timestamptz DEFAULT pg_catalog.now())
RETURNS TABLE (currency text, arr_cents bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT s.currency, pg_catalog.round(12 * pg_catalog.sum(billing._monthly_cents(s)))::bigint
	  FROM billing.subscriptions s
	 WHERE billing._paying_at(s, at)
	 GROUP BY s.currency
	 ORDER BY s.currency
$$;
COMMENT ON FUNCTION billing.arr(timestamptz) IS 'Annual recurring revenue: 12 x MRR, by currency';

CREATE FUNCTION billing.active_subscriptions(at timestamptz DEFAULT pg_catalog.now())
RETURNS TABLE (tier billing.plan_tier, status billing.subscription_status, subscriptions bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT p.tier, s.status, pg_catalog.count(*)
	  FROM billing.subscriptions s JOIN billing.subscription_plans p ON p.id = s.plan_id
	 WHERE s.deleted_at IS NULL AND s.started_at <= at AND (s.ended_at IS NULL OR s.ended_at > at)
	 GROUP BY p.tier, s.status
	 ORDER BY p.tier, s.status
$$;
COMMENT ON FUNCTION billing.active_subscriptions(timestamptz) IS
	'Subscriptions current at a time, by tier and status (status as stored now)';

CREATE FUNCTION billing.plan_distribution(at timestamptz DEFAULT pg_catalog.now())
RETURNS TABLE (plan_code text, tier billing.plan_tier, users bigint, share numeric)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	WITH users AS (
		SELECT DISTINCT s.user_id FROM billing.subscriptions s
		 WHERE s.deleted_at IS NULL AND s.started_at <= at),
	plans AS (
		SELECT (billing.effective_plan(u.user_id, at)).* FROM users u)
	SELECT p.code, p.tier, pg_catalog.count(*),
		   pg_catalog.round(pg_catalog.count(*)::numeric / NULLIF(pg_catalog.sum(pg_catalog.count(*)) OVER (), 0), 4)
	  FROM plans p
	 GROUP BY p.code, p.tier
	 ORDER BY pg_catalog.count(*) DESC, p.code
$$;
COMMENT ON FUNCTION billing.plan_distribution(timestamptz) IS 'Users per effective plan, with their share';

CREATE FUNCTION billing.churn(from_time timestamptz, to_time timestamptz)
RETURNS TABLE (currency text, customers_at_start bigint, customers_churned bigint, customer_churn numeric,
			   mrr_at_start_cents bigint, mrr_churned_cents bigint, revenue_churn numeric)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF from_time IS NULL OR to_time IS NULL OR to_time <= from_time THEN
		RAISE EXCEPTION 'report period must have a start before its end' USING ERRCODE = '22023';
	END IF;
	-- A customer churns when what paid at the start no longer pays at the end
	-- and the user has no paying subscription then (a plan change is not churn).
	RETURN QUERY
	WITH start AS (
		SELECT s.user_id, s.currency, billing._monthly_cents(s) AS mrr
		  FROM billing.subscriptions s WHERE billing._paying_at(s, from_time)),
	still AS (
		SELECT DISTINCT s.user_id FROM billing.subscriptions s WHERE billing._paying_at(s, to_time))
	SELECT st.currency, pg_catalog.count(*), pg_catalog.count(*) FILTER (WHERE sl.user_id IS NULL),
		   pg_catalog.round(pg_catalog.count(*) FILTER (WHERE sl.user_id IS NULL)::numeric / pg_catalog.count(*), 4),
		   pg_catalog.round(pg_catalog.sum(st.mrr))::bigint,
		   pg_catalog.round(COALESCE(pg_catalog.sum(st.mrr) FILTER (WHERE sl.user_id IS NULL), 0))::bigint,
		   pg_catalog.round(COALESCE(pg_catalog.sum(st.mrr) FILTER (WHERE sl.user_id IS NULL), 0) / NULLIF(pg_catalog.sum(st.mrr), 0), 4)
	  FROM start st LEFT JOIN still sl ON sl.user_id = st.user_id
	 GROUP BY st.currency
	 ORDER BY st.currency;
END
$$;
COMMENT ON FUNCTION billing.churn(timestamptz, timestamptz) IS
	'Customer and revenue churn between two times, by currency';

-- Internal: net money received (payments minus refunds) in [from, to).
CREATE FUNCTION billing._net_payments(from_time timestamptz, to_time timestamptz)
RETURNS TABLE (user_id text, currency text, paid_at timestamptz, amount_cents bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT p.user_id, p.currency, p.paid_at, p.amount_cents
	  FROM billing.payments p
	 WHERE p.status = 'succeeded' AND p.deleted_at IS NULL AND p.paid_at >= from_time AND p.paid_at < to_time
$$;

CREATE FUNCTION billing.arpu(from_time timestamptz, to_time timestamptz)
RETURNS TABLE (currency text, revenue_cents bigint, paying_users bigint, arpu_cents bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT n.currency, pg_catalog.sum(n.amount_cents)::bigint,
		   pg_catalog.count(DISTINCT n.user_id) FILTER (WHERE n.amount_cents > 0),
		   pg_catalog.round(pg_catalog.sum(n.amount_cents)::numeric
				/ NULLIF(pg_catalog.count(DISTINCT n.user_id) FILTER (WHERE n.amount_cents > 0), 0))::bigint
	  FROM billing._net_payments(from_time, to_time) n
	 GROUP BY n.currency
	 ORDER BY n.currency
$$;
COMMENT ON FUNCTION billing.arpu(timestamptz, timestamptz) IS
	'Average revenue per paying user between two times (net of refunds), by currency';

CREATE FUNCTION billing.trial_conversion(from_time timestamptz, to_time timestamptz)
RETURNS TABLE (tier billing.plan_tier, trials bigint, converted bigint, still_trialing bigint, conversion numeric)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT billing._valid_time($1, 'from_time'), billing._valid_time($2, 'to_time');
	-- A trial converted when its subscription got a paid first period.
	WITH trials AS (
		SELECT p.tier, s.billing_anchor IS NOT NULL AS converted,
			   s.status = 'trialing' AS trialing
		  FROM billing.subscriptions s JOIN billing.subscription_plans p ON p.id = s.plan_id
		 WHERE s.trial_start >= from_time AND s.trial_start < to_time AND s.deleted_at IS NULL
		   AND COALESCE(s.end_reason, '') <> 'plan_changed')
	SELECT t.tier, pg_catalog.count(*), pg_catalog.count(*) FILTER (WHERE t.converted),
		   pg_catalog.count(*) FILTER (WHERE t.trialing),
		   pg_catalog.round(pg_catalog.count(*) FILTER (WHERE t.converted)::numeric / pg_catalog.count(*), 4)
	  FROM trials t
	 GROUP BY t.tier
	 ORDER BY t.tier
$$;
COMMENT ON FUNCTION billing.trial_conversion(timestamptz, timestamptz) IS
	'Trials started between two times and how many became paid, by tier';

-- Internal: the buckets of a time series; grain is hour, day, week, month or year.
CREATE FUNCTION billing._buckets(from_time timestamptz, to_time timestamptz, grain text)
RETURNS TABLE (bucket timestamptz)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF grain IS NULL OR grain NOT IN ('hour', 'day', 'week', 'month', 'year') THEN
		RAISE EXCEPTION 'unknown grain "%"', grain
			USING ERRCODE = '22023', HINT = 'Use hour, day, week, month or year.';
	END IF;
	IF from_time IS NULL OR to_time IS NULL OR to_time <= from_time THEN
		RAISE EXCEPTION 'report period must have a start before its end' USING ERRCODE = '22023';
	END IF;
	RETURN QUERY
	SELECT g FROM pg_catalog.generate_series(pg_catalog.date_trunc(grain, from_time, 'UTC'), to_time - interval '1 microsecond',
											 ('1 ' || grain)::interval) g;
END
$$;

CREATE FUNCTION billing.revenue(from_time timestamptz, to_time timestamptz, grain text DEFAULT 'day')
RETURNS TABLE ("time" timestamptz, metric text, value numeric)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	WITH b AS (SELECT bucket FROM billing._buckets(from_time, to_time, grain)),
	cur AS (SELECT DISTINCT currency FROM billing.payments),
	money AS (
		SELECT pg_catalog.date_trunc(grain, n.paid_at, 'UTC') AS bucket, n.currency, pg_catalog.sum(n.amount_cents) AS cents
		  FROM billing._net_payments(from_time, to_time) n
		 GROUP BY 1, 2)
	SELECT b.bucket, 'revenue_cents_' || c.currency, COALESCE(m.cents, 0)
	  FROM b CROSS JOIN cur c
	  LEFT JOIN money m ON m.bucket = b.bucket AND m.currency = c.currency
	 ORDER BY 1, 2
$$;
COMMENT ON FUNCTION billing.revenue(timestamptz, timestamptz, text) IS
	'Net revenue per time bucket and currency as (time, metric, value) rows';

CREATE FUNCTION billing.usage_trends(from_time timestamptz, to_time timestamptz, grain text DEFAULT 'day')
RETURNS TABLE ("time" timestamptz, metric text, value numeric)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	-- Rolled-up days plus what is not rolled up yet (day granularity, UTC).
	WITH b AS (SELECT bucket FROM billing._buckets(from_time, to_time, grain)),
	daily AS (
		SELECT d.day::timestamp AT TIME ZONE 'UTC' AS t, d.metric, d.quantity FROM billing.usage_daily d
		 WHERE d.deleted_at IS NULL
		UNION ALL
		SELECT r.recorded_at, r.metric, r.quantity FROM billing.usage_records r
		 WHERE NOT r.rolled_up AND r.deleted_at IS NULL),
	agg AS (
		SELECT pg_catalog.date_trunc(grain, d.t, 'UTC') AS bucket, d.metric, pg_catalog.sum(d.quantity) AS total
		  FROM daily d WHERE d.t >= from_time AND d.t < to_time GROUP BY 1, 2)
	SELECT a.bucket, a.metric, a.total FROM agg a JOIN b ON b.bucket = a.bucket
	 ORDER BY 1, 2
$$;
COMMENT ON FUNCTION billing.usage_trends(timestamptz, timestamptz, text) IS
	'Usage per time bucket and metric as (time, metric, value) rows';

CREATE FUNCTION billing.daily_report(day date)
RETURNS TABLE (metric text, value bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT billing._valid_day($1, 'day');
	WITH bounds AS (SELECT day::timestamp AT TIME ZONE 'UTC' AS d0, (day + 1)::timestamp AT TIME ZONE 'UTC' AS d1),
	report (ord, metric, value) AS (
	SELECT 0, 'active_' || a.tier, pg_catalog.sum(a.subscriptions)::bigint
	  FROM bounds, billing.active_subscriptions(bounds.d1) a
	 WHERE a.status NOT IN ('incomplete', 'paused')  -- an ended one was active then
	 GROUP BY a.tier
	UNION ALL
	SELECT 10, 'new_trials', pg_catalog.count(*) FROM bounds, billing.subscriptions s
	 WHERE s.trial_start >= bounds.d0 AND s.trial_start < bounds.d1 AND COALESCE(s.end_reason, '') <> 'plan_changed'
	UNION ALL
	SELECT 11, 'conversions', pg_catalog.count(*) FROM bounds, billing.subscriptions s
	 WHERE s.trial_start IS NOT NULL AND s.billing_anchor >= bounds.d0 AND s.billing_anchor < bounds.d1
	UNION ALL
	SELECT 12, 'cancellations', pg_catalog.count(*) FROM bounds, billing.subscriptions s
	 WHERE s.canceled_at >= bounds.d0 AND s.canceled_at < bounds.d1 AND COALESCE(s.end_reason, '') <> 'plan_changed'
	UNION ALL
	SELECT 13, 'failed_payments', pg_catalog.count(*) FROM bounds, billing.payments p
	 WHERE p.status = 'failed' AND p.paid_at >= bounds.d0 AND p.paid_at < bounds.d1)
	SELECT r.metric, r.value FROM report r ORDER BY r.ord, r.metric
$$;
COMMENT ON FUNCTION billing.daily_report(date) IS
	'One day at a glance: active by tier, new trials, conversions, cancellations, failed payments';
