-- Usage (SPEC §4): events in billing.usage_records, rolled up incrementally
-- into daily per-user, per-metric totals in billing.usage_daily. Days are UTC.
-- The quota triggers count rooms_created and participants_joined in their
-- counter rows (usage_pending), so an insert writes nothing more; the rollup
-- moves those counts into usage_daily too.

CREATE FUNCTION billing.record_usage(user_id text, metric text, quantity bigint DEFAULT 1,
									 at timestamptz DEFAULT pg_catalog.now(), idempotency_key text DEFAULT NULL)
RETURNS billing.usage_records
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
	rec billing.usage_records;
BEGIN
	-- Parameters share the columns' names; in SQL, a bare name is the column.
	IF user_id IS NULL OR metric IS NULL OR quantity IS NULL OR at IS NULL THEN
		RAISE EXCEPTION 'user_id, metric, quantity and at must not be NULL' USING ERRCODE = '22004';
	END IF;
	IF user_id = '' THEN
		RAISE EXCEPTION 'user id must not be empty' USING ERRCODE = '22023';
	END IF;
	IF metric !~ '^[a-z][a-z0-9_.]*$' THEN
		RAISE EXCEPTION 'invalid metric name "%"', metric
			USING ERRCODE = '22023', DETAIL = 'Metric names are lower-case letters, digits, "_" and ".", starting with a letter.';
	END IF;
	IF quantity < 0 THEN
		RAISE EXCEPTION 'usage quantity must not be negative' USING ERRCODE = '22023',
			DETAIL = pg_catalog.format('Quantity given: %s.', quantity);
	END IF;
	-- (they are indexed: a longer value could not be stored, 54000)
	IF octet_length(user_id) > 1000 OR octet_length(metric) > 200 OR octet_length(idempotency_key) > 1000 THEN
		RAISE EXCEPTION 'user id, metric or idempotency key too long' USING ERRCODE = '22023',
			DETAIL = 'User ids and idempotency keys have at most 1000 bytes, metric names 200.';
	END IF;
	IF NOT (at >= '0001-01-01 00:00:00+00' AND at < '10000-01-01 00:00:00+00') THEN
		RAISE EXCEPTION 'argument "at" must lie in the years 0001 to 9999 (UTC)' USING ERRCODE = '22008';
	END IF;
	INSERT INTO billing.usage_records AS r (user_id, subscription_id, metric, quantity, recorded_at, idempotency_key)
	VALUES ($1, (SELECT s.id FROM billing.subscriptions s
				  WHERE s.user_id = $1 AND s.ended_at IS NULL AND s.deleted_at IS NULL),
			$2, $3, $4, $5)
	ON CONFLICT (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
	RETURNING * INTO rec;
	IF rec.id IS NULL THEN
		-- the same key again: nothing new is recorded
		SELECT * INTO rec FROM billing.usage_records r WHERE r.user_id = $1 AND r.idempotency_key = $5;
	END IF;
	RETURN rec;
END
$$;
COMMENT ON FUNCTION billing.record_usage(text, text, bigint, timestamptz, text) IS
	'Records metered usage; a repeated idempotency key records nothing new';

-- Adds what arrived since the last rollup (records not yet rolled up, and the
-- counts the quota triggers hold) to the daily totals, up to `upto`.
-- Returns how many records and counters it moved.
CREATE FUNCTION billing.rollup_usage(upto timestamptz DEFAULT pg_catalog.now()) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	records bigint;
	counters bigint;
	upto_day date := (upto AT TIME ZONE 'UTC')::date;
BEGIN
	IF upto IS NULL OR NOT pg_catalog.isfinite(upto) THEN
		RAISE EXCEPTION 'argument "upto" must be a finite timestamp' USING ERRCODE = '22023';
	END IF;
	-- The partial index on NOT rolled_up makes this read only the new rows;
	-- marking them under their row locks makes concurrent rollups add each once.
	WITH taken AS (
		UPDATE billing.usage_records r SET rolled_up = true
		 WHERE NOT r.rolled_up AND r.recorded_at < upto AND r.deleted_at IS NULL
		RETURNING r.user_id, r.metric, (r.recorded_at AT TIME ZONE 'UTC')::date AS day, r.quantity),
	summed AS (
		SELECT t.user_id, t.metric, t.day, pg_catalog.sum(t.quantity) AS quantity, pg_catalog.count(*) AS n
		  FROM taken t GROUP BY 1, 2, 3),
	added AS (
		INSERT INTO billing.usage_daily AS d (user_id, metric, day, quantity)
		SELECT s.user_id, s.metric, s.day, s.quantity FROM summed s
		ON CONFLICT ON CONSTRAINT usage_daily_pkey DO UPDATE SET quantity = d.quantity + EXCLUDED.quantity)
	SELECT COALESCE(pg_catalog.sum(s.n), 0) INTO records FROM summed s;

	WITH locked AS (
		SELECT q.attachment_id, q.key, q.owner_id, q.usage_day, q.usage_pending
		  FROM billing.quota_counters q
		 WHERE q.usage_pending > 0 AND q.usage_day <= upto_day AND q.owner_id <> ''
		   FOR UPDATE),
	cleared AS (
		UPDATE billing.quota_counters q SET usage_pending = 0
		  FROM locked l WHERE q.attachment_id = l.attachment_id AND q.key = l.key
		RETURNING l.owner_id, billing._quota_metric(l.attachment_id) AS metric, l.usage_day, l.usage_pending),
	added AS (
		INSERT INTO billing.usage_daily AS d (user_id, metric, day, quantity)
		SELECT c.owner_id, c.metric, c.usage_day, pg_catalog.sum(c.usage_pending) FROM cleared c GROUP BY 1, 2, 3
		ON CONFLICT ON CONSTRAINT usage_daily_pkey DO UPDATE SET quantity = d.quantity + EXCLUDED.quantity)
	SELECT pg_catalog.count(*) INTO counters FROM cleared;
	RETURN records + counters;
END
$$;
COMMENT ON FUNCTION billing.rollup_usage(timestamptz) IS
	'Adds usage that arrived since the last rollup to the daily totals; run_maintenance calls it';

-- Exact usage for whole UTC days: from's day (inclusive) to to's day
-- (exclusive). Rolled-up days plus everything not rolled up yet.
CREATE FUNCTION billing.usage(user_id text, metric text, from_time timestamptz, to_time timestamptz)
RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT billing._required($1, 'user_id'), billing._required($2, 'metric'),
		   billing._valid_time($3, 'from_time'), billing._valid_time($4, 'to_time');
	WITH span AS (SELECT ($3 AT TIME ZONE 'UTC')::date AS d0, ($4 AT TIME ZONE 'UTC')::date AS d1)
	SELECT (COALESCE((SELECT pg_catalog.sum(d.quantity) FROM billing.usage_daily d, span
					   WHERE d.user_id = $1 AND d.metric = $2 AND d.day >= span.d0 AND d.day < span.d1
						 AND d.deleted_at IS NULL), 0)
		  + COALESCE((SELECT pg_catalog.sum(r.quantity) FROM billing.usage_records r, span
					   WHERE r.user_id = $1 AND r.metric = $2 AND NOT r.rolled_up AND r.deleted_at IS NULL
						 AND (r.recorded_at AT TIME ZONE 'UTC')::date >= span.d0
						 AND (r.recorded_at AT TIME ZONE 'UTC')::date < span.d1), 0)
		  + COALESCE((SELECT pg_catalog.sum(q.usage_pending) FROM billing.quota_counters q, span
					   WHERE q.owner_id = $1 AND billing._quota_metric(q.attachment_id) = $2
						 AND q.usage_day >= span.d0 AND q.usage_day < span.d1), 0))::bigint
$$;
COMMENT ON FUNCTION billing.usage(text, text, timestamptz, timestamptz) IS
	'Exact usage of a metric over whole UTC days [from, to), rollups plus the tail';
