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
-- ordering by (created, stage), pending events, replay, retention, bounds
ALTER TABLE billing.stripe_events ALTER COLUMN payload DROP NOT NULL,
	DROP CONSTRAINT stripe_events_result_check,
	ADD CONSTRAINT stripe_events_result_check CHECK (result IN ('applied', 'stale', 'ignored', 'pending')),
	ADD COLUMN stage smallint,
	ADD COLUMN customer_id text;
ALTER TABLE billing.stripe_objects ADD COLUMN last_event_stage smallint;
ALTER TABLE billing.subscriptions ADD COLUMN stripe_status text;
CREATE INDEX stripe_events_pending ON billing.stripe_events (customer_id, created, stage) WHERE result = 'pending';
DROP FUNCTION billing._stripe_apply(text, text, timestamptz, jsonb, jsonb, timestamptz);

CREATE OR REPLACE FUNCTION billing.configure(key text, value text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF key IS NULL OR value IS NULL THEN
		RAISE EXCEPTION 'setting key and value must not be null' USING ERRCODE = '22023';
	END IF;
	CASE key
	WHEN 'past_due_grace', 'stripe_tolerance', 'stripe_event_retention' THEN
		BEGIN
			IF value::interval < interval '0' THEN
				RAISE EXCEPTION 'setting "%" must not be negative', key USING ERRCODE = '22023';
			END IF;
		EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow THEN
			RAISE EXCEPTION 'invalid value for setting "%": "%"', key, value
				USING ERRCODE = '22023', HINT = 'Give an interval such as ''14 days''.';
		END;
	WHEN 'stripe_webhook_secret' THEN
		IF pg_catalog.btrim(value) = '' THEN
			RAISE EXCEPTION 'setting "stripe_webhook_secret" must not be empty' USING ERRCODE = '22023';
		END IF;
		-- secrets are separated by commas (for rotation); none may be empty
		IF EXISTS (SELECT 1 FROM pg_catalog.unnest(pg_catalog.string_to_array(value, ',')) AS secret
					WHERE pg_catalog.btrim(secret) = '') THEN
			RAISE EXCEPTION 'setting "stripe_webhook_secret" must not hold an empty secret'
				USING ERRCODE = '22023', HINT = 'Separate two or more secrets with single commas.';
		END IF;
	ELSE
		RAISE EXCEPTION 'unknown setting "%"', key
			USING ERRCODE = '22023',
				  HINT = 'Known settings are past_due_grace, stripe_event_retention, stripe_tolerance and stripe_webhook_secret.';
	END CASE;
	INSERT INTO billing.settings AS s (key, value) VALUES (key, value)
	ON CONFLICT ON CONSTRAINT settings_pkey DO UPDATE SET value = EXCLUDED.value, deleted_at = NULL;
END
$$;
COMMENT ON FUNCTION billing.configure(text, text) IS 'Changes a billing setting (billing_admin only)';

CREATE OR REPLACE FUNCTION billing._stripe_precheck(event_type text, facts jsonb) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	-- which event types are handled at all is the core's (stripe::Handled)
	IF facts ->> 'id' IS NULL THEN
		RETURN 'the event''s object has no id';
	END IF;
	IF event_type LIKE 'customer.subscription.%' THEN
		IF facts ->> 'object' IS DISTINCT FROM 'subscription' THEN
			RETURN 'the event''s object is not a subscription';
		END IF;
		IF facts ->> 'price_id' IS NULL THEN
			RETURN 'the stripe subscription has no price';
		END IF;
		IF NOT EXISTS (SELECT 1 FROM billing.subscription_plans p
						WHERE p.stripe_price_id = facts ->> 'price_id' AND p.deleted_at IS NULL) THEN
			RETURN pg_catalog.format('no plan has stripe price "%s"; set billing.subscription_plans.stripe_price_id',
									 facts ->> 'price_id');
		END IF;
		IF facts ->> 'status' IS NULL THEN
			RETURN pg_catalog.format('unknown stripe subscription status "%s"', facts ->> 'stripe_status');
		END IF;
	ELSIF event_type LIKE 'invoice.%' AND facts ->> 'object' IS DISTINCT FROM 'invoice' THEN
		RETURN 'the event''s object is not an invoice';
	ELSIF event_type LIKE 'payment_intent.%' AND facts ->> 'object' IS DISTINCT FROM 'payment_intent' THEN
		RETURN 'the event''s object is not a payment intent';
	ELSIF event_type = 'charge.refunded' AND facts ->> 'object' IS DISTINCT FROM 'charge' THEN
		RETURN 'the event''s object is not a charge';
	END IF;
	IF event_type LIKE 'invoice.%' OR event_type LIKE 'payment_intent.%' OR event_type = 'charge.refunded' THEN
		IF COALESCE(facts ->> 'currency', '') !~ '^[A-Za-z]{3}$' THEN
			RETURN 'the stripe object has no currency';
		END IF;
	END IF;
	RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION billing._stripe_subscription(event_type text, facts jsonb, event_created timestamptz) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
<<fn>>
DECLARE
	plan billing.subscription_plans;
	s billing.subscriptions;
	cur billing.subscriptions;
	uid text;
	-- status, pending cancel, cancel and end: the core's decision (stripe::MirrorSubscription)
	mirror jsonb := facts -> 'mirror';
	status billing.subscription_status := (mirror ->> 'status')::billing.subscription_status;
	pending_cancel boolean := (mirror ->> 'cancel_at_period_end')::boolean;
	started timestamptz := COALESCE(billing._stripe_time(facts, 'start_date'), billing._stripe_time(facts, 'created'),
									event_created);
	period_start timestamptz;
	period_end timestamptz := billing._stripe_time(facts, 'current_period_end');
	trial_start timestamptz := billing._stripe_time(facts, 'trial_start');
	trial_end timestamptz := billing._stripe_time(facts, 'trial_end');
	ended timestamptz := billing._stripe_time(mirror, 'ended_at');
	canceled timestamptz := billing._stripe_time(mirror, 'canceled_at');
	reason text := mirror ->> 'end_reason';
BEGIN
	SELECT p.* INTO plan FROM billing.subscription_plans p
	 WHERE p.stripe_price_id = facts ->> 'price_id' AND p.deleted_at IS NULL;

	SELECT x.* INTO s FROM billing.subscriptions x
	 WHERE x.stripe_subscription_id = facts ->> 'id' AND x.deleted_at IS NULL
	   FOR UPDATE;
	IF FOUND THEN
		uid := s.user_id;
		started := s.started_at;
	ELSE
		uid := billing._stripe_user(facts);
		IF uid IS NULL THEN
			RETURN 'pending: ' || pg_catalog.format('no billing user for stripe subscription "%s": it has no metadata.user_id '
									 'and its customer is not linked', facts ->> 'id');
		END IF;
	END IF;

	period_start := COALESCE(billing._stripe_time(facts, 'current_period_start'), started);
	IF period_end < period_start THEN
		period_end := NULL;
	END IF;
	IF trial_end IS NOT NULL THEN
		trial_start := COALESCE(trial_start, LEAST(started, trial_end));
		IF trial_end < trial_start THEN
			trial_end := trial_start;
		END IF;
	END IF;
	IF ended IS NOT NULL THEN
		ended := GREATEST(ended, started);
	END IF;
	PERFORM billing._stripe_link_customer(facts ->> 'customer', uid);

	IF s.id IS NULL THEN
		-- the user's current subscription: adopted when it is the same paid plan
		-- not yet linked to Stripe, otherwise ended as a plan change
		SELECT x.* INTO cur FROM billing.subscriptions x
		 WHERE x.user_id = uid AND x.ended_at IS NULL AND x.deleted_at IS NULL
		   FOR UPDATE;
		IF cur.id IS NOT NULL AND cur.stripe_subscription_id IS NULL AND cur.plan_id = plan.id AND plan.tier <> 'free' THEN
			s := cur;
		ELSIF ended IS NULL AND cur.id IS NOT NULL THEN
			UPDATE billing.subscriptions x
			   SET status = 'canceled', canceled_at = COALESCE(x.canceled_at, GREATEST(x.started_at, started)),
				   ended_at = GREATEST(x.started_at, started), end_reason = 'plan_changed', cancel_at_period_end = false
			 WHERE x.id = cur.id;
		END IF;
	END IF;

	IF s.id IS NULL THEN
		INSERT INTO billing.subscriptions AS x
			(user_id, plan_id, status, price_cents, currency, billing_interval, started_at, billing_anchor,
			 current_period_start, current_period_end, trial_start, trial_end, cancel_at_period_end, canceled_at,
			 ended_at, end_reason, past_due_since, paused_at, stripe_customer_id, stripe_subscription_id, metadata,
			 stripe_status)
		VALUES (uid, plan.id, status, plan.price_cents, plan.currency, plan.billing_interval, started, period_start,
				period_start, period_end, trial_start, trial_end, pending_cancel, canceled,
				ended, reason, CASE WHEN status = 'past_due' THEN event_created END,
				CASE WHEN status = 'paused' THEN event_created END,
				facts ->> 'customer', facts ->> 'id', '{"source": "stripe"}', mirror ->> 'stripe_status')
		RETURNING x.* INTO s;
	ELSIF s.ended_at IS NOT NULL THEN
		-- billing already ended it (e.g. a plan change); Stripe cannot bring an
		-- ended subscription back, so only the links are kept up to date
		UPDATE billing.subscriptions x
		   SET stripe_customer_id = COALESCE(facts ->> 'customer', x.stripe_customer_id)
		 WHERE x.id = s.id AND x.stripe_customer_id IS DISTINCT FROM COALESCE(facts ->> 'customer', x.stripe_customer_id);
		RETURN NULL;
	ELSE
		UPDATE billing.subscriptions x
		   SET plan_id = plan.id,
			   price_cents = CASE WHEN x.plan_id = plan.id THEN x.price_cents ELSE plan.price_cents END,
			   currency = CASE WHEN x.plan_id = plan.id THEN x.currency ELSE plan.currency END,
			   billing_interval = plan.billing_interval,
			   status = fn.status,
			   current_period_start = period_start,
			   current_period_end = period_end,
			   trial_start = COALESCE(fn.trial_start, x.trial_start),
			   trial_end = COALESCE(fn.trial_end, x.trial_end),
			   cancel_at_period_end = pending_cancel,
			   canceled_at = canceled,
			   ended_at = ended,
			   end_reason = reason,
			   past_due_since = CASE WHEN fn.status = 'past_due'
									 THEN COALESCE(x.past_due_since, event_created) END,
			   paused_at = CASE WHEN fn.status = 'paused' THEN COALESCE(x.paused_at, event_created) END,
			   scheduled_plan_id = NULL,
			   scheduled_change_at = NULL,
			   stripe_customer_id = COALESCE(facts ->> 'customer', x.stripe_customer_id),
			   stripe_subscription_id = facts ->> 'id',
			   stripe_status = mirror ->> 'stripe_status',
			   metadata = x.metadata || '{"source": "stripe"}'
		 WHERE x.id = s.id
		RETURNING x.* INTO s;
	END IF;

	IF s.ended_at IS NOT NULL THEN
		PERFORM billing._start_free(uid, s.ended_at);
	END IF;
	IF event_type = 'customer.subscription.trial_will_end' THEN
		PERFORM billing._stripe_notify(uid, s.id, 'trial_will_end',
			pg_catalog.jsonb_build_object('source', 'stripe', 'stripe_subscription_id', facts ->> 'id',
										  'trial_end', s.trial_end, 'plan', plan.code),
			event_created, 'stripe:trial_will_end:' || (facts ->> 'id') || ':' || COALESCE(facts ->> 'trial_end', ''));
	END IF;
	RETURN NULL;
END fn
$$;

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
		RETURN 'pending: ' || pg_catalog.format('no billing user for stripe invoice "%s": neither its subscription nor its customer is known',
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
			ELSIF pg_catalog.to_regprocedure('billing._next_invoice_number()') IS NOT NULL THEN
				EXECUTE 'SELECT billing._next_invoice_number()' INTO invoice_number;
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

CREATE OR REPLACE FUNCTION billing._stripe_payment_intent(event_type text, facts jsonb, event_created timestamptz) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	inv billing.invoices;
	uid text;
	sub_id bigint;
	succeeded boolean := event_type = 'payment_intent.succeeded';
BEGIN
	SELECT x.* INTO inv FROM billing.invoices x WHERE x.stripe_invoice_id = facts ->> 'invoice';
	uid := COALESCE(inv.user_id, billing._stripe_user(facts));
	IF uid IS NULL THEN
		RETURN 'pending: ' || pg_catalog.format('no billing user for stripe payment intent "%s": it has no metadata.user_id '
								 'and its customer is not linked', facts ->> 'id');
	END IF;
	sub_id := COALESCE(inv.subscription_id,
		(SELECT s.id FROM billing.subscriptions s
		  WHERE s.user_id = uid AND s.stripe_customer_id = facts ->> 'customer' AND s.deleted_at IS NULL
		  ORDER BY s.ended_at IS NULL DESC, s.started_at DESC, s.id DESC LIMIT 1));
	PERFORM billing._stripe_upsert_payment(
		uid, sub_id, inv.id,
		CASE WHEN succeeded THEN COALESCE(NULLIF((facts ->> 'amount_received')::bigint, 0), (facts ->> 'amount')::bigint, 0)
			 ELSE COALESCE((facts ->> 'amount')::bigint, 0) END,
		facts ->> 'currency', succeeded, facts ->> 'id', facts ->> 'charge',
		facts ->> 'failure_code', facts ->> 'failure_message', event_created);
	RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION billing._stripe_charge_refunded(facts jsonb, event_created timestamptz) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	original billing.payments;
	uid text;
	refunded bigint;
	target bigint;
	delta bigint;
	payment_id bigint;
BEGIN
	SELECT p.* INTO original FROM billing.payments p
	 WHERE p.refund_of IS NULL AND p.deleted_at IS NULL AND p.status = 'succeeded'
	   AND (p.stripe_charge_id = facts ->> 'id' OR p.external_id = facts ->> 'payment_intent'
			OR p.stripe_payment_intent_id = facts ->> 'payment_intent')
	 ORDER BY (p.stripe_charge_id = facts ->> 'id') DESC NULLS LAST, p.id
	 LIMIT 1
	   FOR UPDATE;
	IF NOT FOUND THEN
		-- the payment itself never arrived: it is recorded from the charge
		uid := billing._stripe_user(facts);
		IF uid IS NULL THEN
			RETURN 'pending: ' || pg_catalog.format('no billing user for stripe charge "%s": it has no metadata.user_id '
									 'and its customer is not linked', facts ->> 'id');
		END IF;
		payment_id := billing._stripe_upsert_payment(
			uid, (SELECT s.id FROM billing.subscriptions s
				   WHERE s.user_id = uid AND s.stripe_customer_id = facts ->> 'customer' AND s.deleted_at IS NULL
				   ORDER BY s.ended_at IS NULL DESC, s.started_at DESC, s.id DESC LIMIT 1),
			(SELECT i.id FROM billing.invoices i WHERE i.stripe_invoice_id = facts ->> 'invoice'),
			COALESCE((facts ->> 'amount')::bigint, 0), facts ->> 'currency', true,
			facts ->> 'payment_intent', facts ->> 'id', NULL, NULL,
			COALESCE(billing._stripe_time(facts, 'created'), event_created));
		SELECT p.* INTO original FROM billing.payments p WHERE p.id = payment_id FOR UPDATE;
	ELSIF original.stripe_charge_id IS NULL THEN
		UPDATE billing.payments p SET stripe_charge_id = facts ->> 'id' WHERE p.id = original.id;
	END IF;

	SELECT COALESCE(-pg_catalog.sum(p.amount_cents), 0) INTO refunded
	  FROM billing.payments p
	 WHERE p.refund_of = original.id AND p.status = 'succeeded' AND p.deleted_at IS NULL;
	target := LEAST(COALESCE((facts ->> 'amount_refunded')::bigint, 0), original.amount_cents);
	delta := target - refunded;
	IF delta > 0 THEN
		INSERT INTO billing.payments
			(user_id, subscription_id, invoice_id, amount_cents, currency, status, refund_of, external_id,
			 stripe_payment_intent_id, stripe_charge_id, paid_at)
		VALUES (original.user_id, original.subscription_id, original.invoice_id, -delta, original.currency,
				'succeeded', original.id, 'stripe_refund:' || (facts ->> 'id') || ':' || target,
				facts ->> 'payment_intent', facts ->> 'id', event_created)
		ON CONFLICT (external_id) WHERE external_id IS NOT NULL DO NOTHING;
	END IF;
	RETURN NULL;
END
$$;

CREATE FUNCTION billing._stripe_record(event_id text, event_type text, object_id text, customer_id text,
									   event_created bigint, stage integer, payload jsonb, received timestamptz,
									   handled boolean, OUT recorded boolean, OUT last_created bigint,
									   OUT last_stage integer)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	-- exactly once: a concurrent delivery of the same id waits here for the
	-- other transaction, then finds the row and is a duplicate
	INSERT INTO billing.stripe_events (id, type, object_id, customer_id, created, stage, payload, result, reason,
									   received_at)
	VALUES (event_id, event_type, object_id, customer_id, pg_catalog.to_timestamp(event_created), stage, payload,
			'ignored', CASE WHEN NOT handled THEN 'event type not handled' END, received)
	ON CONFLICT (id) DO NOTHING;
	recorded := FOUND;
	IF recorded AND handled AND object_id IS NOT NULL THEN
		SELECT w.last_created, w.last_stage INTO last_created, last_stage
		  FROM billing._stripe_lock_object(object_id) w;
	END IF;
END
$$;

CREATE FUNCTION billing._stripe_lock_object(object_id text, OUT last_created bigint, OUT last_stage integer)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	INSERT INTO billing.stripe_objects AS o (object_id) VALUES ($1)
	ON CONFLICT ON CONSTRAINT stripe_objects_pkey DO NOTHING;
	SELECT EXTRACT(epoch FROM o.last_event_created)::bigint, o.last_event_stage INTO last_created, last_stage
	  FROM billing.stripe_objects o WHERE o.object_id = $1 FOR UPDATE;
END
$$;

CREATE FUNCTION billing._stripe_dispatch(event_id text, event_type text, event_created timestamptz, stage integer,
										 facts jsonb, stale boolean) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
<<fn>>
DECLARE
	object_id text := facts ->> 'id';
	result text;
	reason text;
BEGIN
	IF stale THEN
		result := 'stale';
		SELECT pg_catalog.format('event "%s" of %s is as new or newer for this object', o.last_event_id,
								 o.last_event_created)
		  INTO reason FROM billing.stripe_objects o WHERE o.object_id = fn.object_id;
	ELSE
		reason := billing._stripe_precheck(event_type, facts);
		IF reason IS NULL THEN
			reason := CASE
				WHEN event_type = 'checkout.session.completed' THEN billing._stripe_checkout_completed(facts)
				WHEN event_type LIKE 'customer.subscription.%' THEN
					billing._stripe_subscription(event_type, facts, event_created)
				WHEN event_type LIKE 'invoice.%' THEN billing._stripe_invoice(event_type, facts, event_created)
				WHEN event_type LIKE 'payment_intent.%' THEN
					billing._stripe_payment_intent(event_type, facts, event_created)
				WHEN event_type = 'charge.refunded' THEN billing._stripe_charge_refunded(facts, event_created)
			END;
		END IF;
		IF reason IS NULL THEN
			result := 'applied';
			UPDATE billing.stripe_objects o
			   SET last_event_created = event_created, last_event_id = event_id, last_event_stage = stage,
				   object_type = facts ->> 'object'
			 WHERE o.object_id = fn.object_id;
		ELSIF reason LIKE 'pending: %' THEN
			result := 'pending';
			reason := pg_catalog.substr(reason, 10);
		ELSE
			result := 'ignored';
		END IF;
	END IF;
	UPDATE billing.stripe_events e SET result = fn.result, reason = fn.reason
	 WHERE e.id = event_id AND (e.result, e.reason) IS DISTINCT FROM (fn.result, fn.reason);
	RETURN result;
END fn
$$;

CREATE FUNCTION billing._stripe_pending_for(customer_id text)
RETURNS TABLE (id text, payload text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT e.id, e.payload::text FROM billing.stripe_events e
	 WHERE e.result = 'pending' AND e.customer_id = $1 AND e.payload IS NOT NULL
	 ORDER BY e.created, e.stage, e.received_at, e.id
$$;

CREATE FUNCTION billing._stripe_stored(event_id text, OUT found boolean, OUT payload text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT true, e.payload::text FROM billing.stripe_events e WHERE e.id = $1
	UNION ALL SELECT false, NULL LIMIT 1
$$;

CREATE FUNCTION billing.stripe_replay(event_id text, at timestamptz DEFAULT pg_catalog.now())
RETURNS text
AS 'MODULE_PATHNAME', 'billing_stripe_replay' LANGUAGE c VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION billing.stripe_replay(text, timestamptz) IS
	'Applies a stored Stripe event again, as ingesting it would (idempotent); returns its result';

CREATE FUNCTION billing._stripe_prune(at timestamptz, batch integer DEFAULT 10000) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	cutoff timestamptz := at - billing._setting('stripe_event_retention', '90 days')::interval;
	pruned bigint;
BEGIN
	UPDATE billing.stripe_events e SET payload = NULL
	 WHERE e.id IN (SELECT x.id FROM billing.stripe_events x
					 WHERE x.received_at < cutoff AND x.payload IS NOT NULL AND x.result <> 'pending'
					 ORDER BY x.received_at LIMIT batch);
	GET DIAGNOSTICS pruned = ROW_COUNT;
	RETURN pruned;
END
$$;

CREATE VIEW billing.stripe_pending AS
SELECT e.id, e.type, e.object_id, e.customer_id, e.created, e.received_at, e.reason
  FROM billing.stripe_events e
 WHERE e.result = 'pending'
 ORDER BY e.customer_id, e.created, e.stage, e.received_at, e.id;
COMMENT ON VIEW billing.stripe_pending IS
	'Stripe events kept until their user is known (applied in order when the event naming the user arrives)';

REVOKE ALL ON billing.stripe_pending FROM PUBLIC;
GRANT SELECT ON billing.stripe_pending TO billing_analyst, billing_admin;
REVOKE ALL ON FUNCTION billing._stripe_record(text, text, text, text, bigint, integer, jsonb, timestamptz, boolean),
	billing._stripe_lock_object(text), billing._stripe_dispatch(text, text, timestamptz, integer, jsonb, boolean),
	billing._stripe_pending_for(text), billing._stripe_stored(text), billing._stripe_prune(timestamptz, integer),
	billing.stripe_replay(text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION billing.stripe_replay(text, timestamptz) TO billing_admin;

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
