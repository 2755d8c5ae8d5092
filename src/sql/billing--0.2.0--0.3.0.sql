-- billing 0.2.0 -> 0.3.0 (ALTER EXTENSION billing UPDATE).
--
-- Each change to the install script (src/sql/[0-9]*.sql) has its counterpart
-- here, in the section of its area; test/shell/upgrade.sh checks that a
-- database updated from 0.1.0 and from 0.2.0 ends up object for object the same
-- as a fresh install.
\echo Use "ALTER EXTENSION billing UPDATE TO '0.3.0'" to load this file. \quit

SET LOCAL search_path TO pg_catalog, pg_temp;

-- == test gate (issue 8)

-- record_usage: #variable_conflict use_column (every call failed with 42702),
-- NULL arguments 22004, times outside 0001-9999 22008.
CREATE OR REPLACE FUNCTION billing.record_usage(user_id text, metric text, quantity bigint DEFAULT 1,
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

-- == security (issue 9)

-- == money and access (issue 10)

-- == reports and history (issue 11)

-- == Stripe (issue 12)

-- == scale (issue 13)
-- run_maintenance's due query: keyset pages over an index on the due time
CREATE FUNCTION billing._due_at(status billing.subscription_status, current_period_end timestamptz,
								trial_end timestamptz, started_at timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE status
	WHEN 'trialing' THEN trial_end
	WHEN 'incomplete' THEN pg_catalog.timezone('UTC', pg_catalog.timezone('UTC', started_at) + interval '23 hours')
	WHEN 'active' THEN current_period_end
	WHEN 'past_due' THEN current_period_end
	WHEN 'canceled' THEN current_period_end
END;
REVOKE ALL ON FUNCTION billing._due_at(billing.subscription_status, timestamptz, timestamptz, timestamptz) FROM PUBLIC;
CREATE INDEX subscriptions_due ON billing.subscriptions
	(billing._due_at(status, current_period_end, trial_end, started_at), id)
	WHERE ended_at IS NULL AND deleted_at IS NULL AND stripe_subscription_id IS NULL;
CREATE INDEX subscriptions_grace ON billing.subscriptions (past_due_since, id)
	WHERE status = 'past_due' AND ended_at IS NULL AND deleted_at IS NULL AND stripe_subscription_id IS NULL;

-- per-user row locks instead of advisory locks
CREATE TABLE billing.user_locks (
	user_id text PRIMARY KEY,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	deleted_at timestamptz
);
COMMENT ON TABLE billing.user_locks IS 'One row per user, locked to serialise changes to that user''s subscriptions';
REVOKE ALL ON billing.user_locks FROM PUBLIC;
GRANT SELECT ON billing.user_locks TO billing_analyst, billing_admin;
CREATE TRIGGER touch_updated_at BEFORE UPDATE ON billing.user_locks
	FOR EACH ROW EXECUTE FUNCTION billing._touch_updated_at();
SELECT pg_catalog.pg_extension_config_dump('billing.user_locks', '');

-- inlinable conversions (RETURN bodies, no SET clause)
CREATE OR REPLACE FUNCTION billing._micros(t timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN (EXTRACT(epoch FROM t OPERATOR(pg_catalog.-) '1970-01-01 00:00:00+00'::timestamptz) * 1000000)::bigint;
CREATE OR REPLACE FUNCTION billing._interval_micros(i interval) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN (EXTRACT(epoch FROM i) * 1000000)::bigint;

-- the audit and updated_at triggers in C++ (the triggers keep their functions' OIDs)
CREATE OR REPLACE FUNCTION billing._audit() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'billing_audit';
CREATE OR REPLACE FUNCTION billing._touch_updated_at() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'billing_touch_updated_at';
CREATE OR REPLACE FUNCTION billing._next_invoice_number(at timestamptz) RETURNS text
LANGUAGE sql VOLATILE
RETURN 'INV-' OPERATOR(pg_catalog.||) pg_catalog.to_char(pg_catalog.timezone('UTC', at), 'YYYYMM')
	OPERATOR(pg_catalog.||) '-' OPERATOR(pg_catalog.||)
	pg_catalog.lpad(pg_catalog.nextval('billing.invoice_number_seq')::text, 6, '0');
