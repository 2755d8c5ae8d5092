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

-- _stripe_invoice: without the branch calling billing._next_invoice_number(),
-- which never existed (plpgsql_check: 42883).
CREATE OR REPLACE FUNCTION billing._stripe_invoice(event_type text, facts jsonb, event_created timestamptz) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
<<fn>>
DECLARE
	sub billing.subscriptions;
	inv billing.invoices;
	uid text;
	status text := facts ->> 'status';
	reason text := COALESCE(facts ->> 'billing_reason', 'manual');
	period_start timestamptz := COALESCE(billing._stripe_time(facts -> 'lines' -> 0, 'period_start'),
										 billing._stripe_time(facts, 'period_start'));
	period_end timestamptz := COALESCE(billing._stripe_time(facts -> 'lines' -> 0, 'period_end'),
									   billing._stripe_time(facts, 'period_end'));
	issued timestamptz := COALESCE(billing._stripe_time(facts, 'created'), event_created);
	paid timestamptz;
	invoice_number text;
	lines jsonb;
BEGIN
	SELECT x.* INTO sub FROM billing.subscriptions x
	 WHERE x.stripe_subscription_id = facts ->> 'subscription' AND x.deleted_at IS NULL;
	uid := COALESCE(sub.user_id, billing._stripe_user(facts));
	IF uid IS NULL THEN
		RETURN pg_catalog.format('no billing user for stripe invoice "%s": neither its subscription nor its customer is known',
								 facts ->> 'id');
	END IF;
	status := COALESCE(status, CASE event_type WHEN 'invoice.created' THEN 'draft'
											   WHEN 'invoice.paid' THEN 'paid' ELSE 'open' END);
	IF event_type = 'invoice.paid' THEN
		status := 'paid';
	END IF;
	IF status = 'paid' THEN
		paid := COALESCE(billing._stripe_time(facts, 'paid_at'), event_created);
	END IF;
	IF period_end < period_start THEN
		period_end := NULL;
	END IF;
	SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
			'description', l ->> 'description',
			'amount_cents', (l ->> 'amount_cents')::bigint,
			'currency', pg_catalog.lower(l ->> 'currency'),
			'period_start', billing._stripe_time(l, 'period_start'),
			'period_end', billing._stripe_time(l, 'period_end'),
			'stripe_price_id', l ->> 'stripe_price_id') ORDER BY n), '[]')
	  INTO lines
	  FROM pg_catalog.jsonb_array_elements(COALESCE(facts -> 'lines', '[]')) WITH ORDINALITY AS e(l, n);

	SELECT x.* INTO inv FROM billing.invoices x WHERE x.stripe_invoice_id = facts ->> 'id' FOR UPDATE;
	IF NOT FOUND AND sub.id IS NOT NULL AND reason IN ('subscription_create', 'subscription_cycle') THEN
		-- billing's own invoice for this period becomes Stripe's; another Stripe
		-- invoice for the same period is kept as a manual one
		SELECT x.* INTO inv FROM billing.invoices x
		 WHERE x.subscription_id = sub.id AND x.period_start = fn.period_start
		   AND x.billing_reason IN ('subscription_create', 'subscription_cycle') AND x.deleted_at IS NULL
		   FOR UPDATE;
		IF FOUND AND inv.stripe_invoice_id IS NOT NULL THEN
			inv := NULL;
			reason := 'manual';
		END IF;
	END IF;

	IF inv.id IS NULL THEN
		invoice_number := facts ->> 'number';
		IF invoice_number IS NULL OR EXISTS (SELECT 1 FROM billing.invoices x WHERE x.number = invoice_number) THEN
			IF pg_catalog.to_regprocedure('billing._next_invoice_number(timestamptz)') IS NOT NULL THEN
				EXECUTE 'SELECT billing._next_invoice_number($1)' INTO invoice_number USING issued;
			ELSE
				invoice_number := 'STRIPE-' || (facts ->> 'id');
			END IF;
		END IF;
		INSERT INTO billing.invoices AS x
			(number, user_id, subscription_id, status, billing_reason, currency, period_start, period_end,
			 subtotal_cents, total_cents, amount_paid_cents, amount_due_cents, lines, issued_at, paid_at,
			 stripe_invoice_id)
		VALUES (invoice_number, uid, sub.id, status, reason, pg_catalog.lower(facts ->> 'currency'),
				period_start, period_end,
				COALESCE((facts ->> 'subtotal')::bigint, 0), COALESCE((facts ->> 'total')::bigint, 0),
				GREATEST(COALESCE((facts ->> 'amount_paid')::bigint, 0), 0),
				GREATEST(COALESCE((facts ->> 'amount_due')::bigint, 0), 0),
				lines, issued, paid, facts ->> 'id')
		RETURNING x.* INTO inv;
	ELSE
		UPDATE billing.invoices x
		   SET subscription_id = COALESCE(x.subscription_id, sub.id),
			   status = fn.status,
			   currency = pg_catalog.lower(facts ->> 'currency'),
			   period_start = COALESCE(fn.period_start, x.period_start),
			   period_end = COALESCE(fn.period_end, x.period_end),
			   subtotal_cents = COALESCE((facts ->> 'subtotal')::bigint, x.subtotal_cents),
			   total_cents = COALESCE((facts ->> 'total')::bigint, x.total_cents),
			   amount_paid_cents = GREATEST(COALESCE((facts ->> 'amount_paid')::bigint, x.amount_paid_cents), 0),
			   amount_due_cents = GREATEST(COALESCE((facts ->> 'amount_due')::bigint, x.amount_due_cents), 0),
			   lines = CASE WHEN pg_catalog.jsonb_array_length(fn.lines) > 0
							THEN fn.lines ELSE x.lines END,
			   paid_at = CASE WHEN fn.status = 'paid' THEN COALESCE(x.paid_at, paid) END,
			   stripe_invoice_id = facts ->> 'id'
		 WHERE x.id = inv.id
		RETURNING x.* INTO inv;
	END IF;

	-- older API versions name the payment intent on the invoice: the payment is
	-- recorded here, under the same external id payment_intent.succeeded uses
	IF event_type = 'invoice.paid' AND facts ->> 'payment_intent' IS NOT NULL
	   AND COALESCE((facts ->> 'amount_paid')::bigint, 0) > 0 THEN
		PERFORM billing._stripe_upsert_payment(uid, sub.id, inv.id, (facts ->> 'amount_paid')::bigint,
											   facts ->> 'currency', true, facts ->> 'payment_intent',
											   facts ->> 'charge', NULL, NULL, paid);
	END IF;
	RETURN NULL;
END fn
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
