-- Stripe (SPEC §5): signature verification, webhook ingestion applied exactly
-- once, and the parameters for Stripe Checkout. The extension never calls
-- Stripe; the application hands every webhook request to billing.stripe_ingest.
--
-- Stripe is the source of truth for the subscriptions it manages: their
-- status, plan (from the price id) and periods mirror the latest event Stripe
-- sent. Card details are never stored.

-- Every webhook event ever received, once. A redelivered id is a duplicate.
CREATE TABLE billing.stripe_events (
	id text PRIMARY KEY CHECK (id <> ''),
	type text NOT NULL,
	object_id text,
	created timestamptz NOT NULL,  -- the event's time at Stripe
	payload jsonb,  -- as received, without payment_method_details and card objects; NULL once pruned
	result text NOT NULL CHECK (result IN ('applied', 'stale', 'ignored', 'pending')),
	reason text,  -- why an event was ignored, stale or is pending
	received_at timestamptz NOT NULL,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	deleted_at timestamptz,
	stage smallint,  -- the ordering stage the core gave it (stripe::EventStage)
	customer_id text  -- the Stripe customer it names: a pending event waits for that customer's user
);
COMMENT ON TABLE billing.stripe_events IS 'Stripe webhook events received, each applied at most once';
CREATE INDEX stripe_events_object ON billing.stripe_events (object_id, created);
CREATE INDEX stripe_events_received ON billing.stripe_events (received_at);
CREATE INDEX stripe_events_pending ON billing.stripe_events (customer_id, created, stage) WHERE result = 'pending';

-- Per Stripe object, the newest event applied to it: the core decides whether
-- another event is newer (stripe::IsNewer: by created, then by the stage of
-- the object's state); one that is not is stale and changes nothing.
CREATE TABLE billing.stripe_objects (
	object_id text PRIMARY KEY,
	object_type text,
	last_event_created timestamptz,
	last_event_id text,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	deleted_at timestamptz,
	last_event_stage smallint,  -- stripe::EventStage of the newest applied event
	CONSTRAINT watermark_complete CHECK ((last_event_created IS NULL) = (last_event_id IS NULL))
);
COMMENT ON TABLE billing.stripe_objects IS 'The newest Stripe event applied per Stripe object (out-of-order protection)';

-- Which billing user a Stripe customer is (from checkout.session.completed).
CREATE TABLE billing.stripe_customers (
	customer_id text PRIMARY KEY CHECK (customer_id <> ''),
	user_id text NOT NULL CHECK (user_id <> ''),
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	deleted_at timestamptz
);
COMMENT ON TABLE billing.stripe_customers IS 'Stripe customer id -> billing user id, learnt from Checkout';
CREATE INDEX stripe_customers_user ON billing.stripe_customers (user_id);
-- Stripe's own subscription status, verbatim (billing's status is the core's
-- mapping of it, stripe::StripeStatusTable).
ALTER TABLE billing.subscriptions ADD COLUMN stripe_status text;
CREATE INDEX subscriptions_stripe_customer
	ON billing.subscriptions (stripe_customer_id) WHERE stripe_customer_id IS NOT NULL;
CREATE INDEX payments_stripe_charge ON billing.payments (stripe_charge_id) WHERE stripe_charge_id IS NOT NULL;

CREATE TRIGGER touch_updated_at BEFORE UPDATE ON billing.stripe_events
	FOR EACH ROW EXECUTE FUNCTION billing._touch_updated_at();
CREATE TRIGGER touch_updated_at BEFORE UPDATE ON billing.stripe_objects
	FOR EACH ROW EXECUTE FUNCTION billing._touch_updated_at();
CREATE TRIGGER touch_updated_at BEFORE UPDATE ON billing.stripe_customers
	FOR EACH ROW EXECUTE FUNCTION billing._touch_updated_at();

CREATE FUNCTION billing.stripe_verify(payload text, signature_header text, secret text,
									  tolerance interval DEFAULT '5 minutes', at timestamptz DEFAULT pg_catalog.now())
RETURNS boolean
AS 'MODULE_PATHNAME', 'billing_stripe_verify' LANGUAGE c IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION billing.stripe_verify(text, text, text, interval, timestamptz) IS
	'Checks a Stripe-Signature header (t=...,v1=...) against a payload and a webhook secret';

CREATE FUNCTION billing.stripe_ingest(payload text, signature_header text, at timestamptz DEFAULT pg_catalog.now())
RETURNS text
AS 'MODULE_PATHNAME', 'billing_stripe_ingest' LANGUAGE c VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION billing.stripe_ingest(text, text, timestamptz) IS
	'Verifies and applies a Stripe webhook event exactly once; returns applied, duplicate, stale or ignored';

-- Internal: Unix seconds in a facts object as timestamptz (NULL when absent).
CREATE FUNCTION billing._stripe_time(facts jsonb, key text) RETURNS timestamptz
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT pg_catalog.to_timestamp((facts OPERATOR(pg_catalog.->>) key)::bigint)
$$;

-- Internal: the billing user a Stripe object belongs to: the user of the
-- subscription it names, metadata.user_id / client_reference_id, or the user
-- the Stripe customer was linked to.
CREATE FUNCTION billing._stripe_user(facts jsonb) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT COALESCE(
		(SELECT s.user_id FROM billing.subscriptions s
		  WHERE s.stripe_subscription_id OPERATOR(pg_catalog.=) (facts OPERATOR(pg_catalog.->>) 'subscription') AND s.deleted_at IS NULL),
		(SELECT i.user_id FROM billing.invoices i
		  WHERE i.stripe_invoice_id OPERATOR(pg_catalog.=) (facts OPERATOR(pg_catalog.->>) 'invoice') AND i.deleted_at IS NULL),
		NULLIF(facts OPERATOR(pg_catalog.->>) 'user_id', ''),
		(SELECT c.user_id FROM billing.stripe_customers c
		  WHERE c.customer_id OPERATOR(pg_catalog.=) (facts OPERATOR(pg_catalog.->>) 'customer') AND c.deleted_at IS NULL),
		(SELECT s.user_id FROM billing.subscriptions s
		  WHERE s.stripe_customer_id OPERATOR(pg_catalog.=) (facts OPERATOR(pg_catalog.->>) 'customer') AND s.deleted_at IS NULL
		  ORDER BY s.started_at DESC, s.id DESC LIMIT 1))
$$;

-- Internal: remembers that a Stripe customer is a billing user.
CREATE FUNCTION billing._stripe_link_customer(customer_id text, user_id text) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
	INSERT INTO billing.stripe_customers AS c (customer_id, user_id)
	SELECT $1, $2 WHERE $1 IS NOT NULL AND $2 IS NOT NULL
	ON CONFLICT (customer_id) DO UPDATE SET user_id = EXCLUDED.user_id, deleted_at = NULL
		WHERE c.user_id IS DISTINCT FROM EXCLUDED.user_id OR c.deleted_at IS NOT NULL
$$;

-- Internal: checkout.session.completed links the user to the Stripe customer
-- (and to the subscription, when it has already arrived).
CREATE FUNCTION billing._stripe_checkout_completed(facts jsonb) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	uid text := NULLIF(facts OPERATOR(pg_catalog.->>) 'user_id', '');
BEGIN
	IF uid IS NULL THEN
		RETURN 'the checkout session has no client_reference_id or metadata.user_id';
	END IF;
	PERFORM billing._stripe_link_customer(facts OPERATOR(pg_catalog.->>) 'customer', uid);
	IF facts OPERATOR(pg_catalog.->>) 'subscription' IS NOT NULL AND facts OPERATOR(pg_catalog.->>) 'customer' IS NOT NULL THEN
		UPDATE billing.subscriptions s SET stripe_customer_id = facts OPERATOR(pg_catalog.->>) 'customer'
		 WHERE s.stripe_subscription_id OPERATOR(pg_catalog.=) (facts OPERATOR(pg_catalog.->>) 'subscription')
		   AND s.stripe_customer_id IS DISTINCT FROM facts OPERATOR(pg_catalog.->>) 'customer';
	END IF;
	RETURN NULL;
END
$$;

-- Internal: queues a notification (once per dedupe key) in the outbox.
CREATE FUNCTION billing._stripe_notify(user_id text, subscription_id bigint, kind text, details jsonb,
									   due_at timestamptz, dedupe_key text) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
	SELECT billing._notify($1, $2, $3, $6, $5)
$$;

-- Internal: a payment from Stripe, stored once per payment intent (its id is
-- the external_id, as billing.record_payment uses it). A succeeded payment is
-- never turned back into a failed one.
CREATE FUNCTION billing._stripe_upsert_payment(user_id text, subscription_id bigint, invoice_id bigint,
											   amount_cents bigint, currency text, succeeded boolean,
											   payment_intent text, charge text, failure_code text,
											   failure_message text, paid_at timestamptz) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	payment_id bigint;
BEGIN
	INSERT INTO billing.payments AS p
		(user_id, subscription_id, invoice_id, amount_cents, currency, status, external_id,
		 stripe_payment_intent_id, stripe_charge_id, failure_code, failure_message, paid_at)
	VALUES ($1, $2, $3, GREATEST($4, 0), pg_catalog.lower($5), CASE WHEN $6 THEN 'succeeded' ELSE 'failed' END,
			COALESCE($7, $8), $7, $8, CASE WHEN NOT $6 THEN COALESCE($9, 'payment_failed') END,
			CASE WHEN NOT $6 THEN $10 END, $11)
	ON CONFLICT (external_id) WHERE external_id IS NOT NULL DO UPDATE
	   SET subscription_id = COALESCE(p.subscription_id, EXCLUDED.subscription_id),
		   invoice_id = COALESCE(p.invoice_id, EXCLUDED.invoice_id),
		   stripe_payment_intent_id = COALESCE(p.stripe_payment_intent_id, EXCLUDED.stripe_payment_intent_id),
		   stripe_charge_id = COALESCE(EXCLUDED.stripe_charge_id, p.stripe_charge_id),
		   amount_cents = CASE WHEN p.status OPERATOR(pg_catalog.=) 'succeeded' THEN p.amount_cents ELSE EXCLUDED.amount_cents END,
		   status = CASE WHEN p.status OPERATOR(pg_catalog.=) 'succeeded' THEN 'succeeded' ELSE EXCLUDED.status END,
		   failure_code = CASE WHEN p.status OPERATOR(pg_catalog.=) 'succeeded' THEN NULL ELSE EXCLUDED.failure_code END,
		   failure_message = CASE WHEN p.status OPERATOR(pg_catalog.=) 'succeeded' THEN NULL ELSE EXCLUDED.failure_message END,
		   paid_at = CASE WHEN p.status OPERATOR(pg_catalog.=) 'succeeded' THEN p.paid_at ELSE EXCLUDED.paid_at END
	RETURNING p.id INTO payment_id;
	RETURN payment_id;
END
$$;

-- Internal: a payment intent that succeeds after its invoice.paid (which, in
-- current API versions, names no payment intent) is the payment that invoice
-- recorded: that row takes the payment intent's id instead of a second row.
CREATE FUNCTION billing._stripe_adopt_payment(user_id text, facts jsonb, event_created timestamptz) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
	UPDATE billing.payments p
	   SET external_id = facts OPERATOR(pg_catalog.->>) 'id', stripe_payment_intent_id = facts OPERATOR(pg_catalog.->>) 'payment_intent',
		   stripe_charge_id = COALESCE(p.stripe_charge_id, facts OPERATOR(pg_catalog.->>) 'charge')
	 WHERE p.id OPERATOR(pg_catalog.=) (SELECT q.id FROM billing.payments q
					WHERE q.user_id OPERATOR(pg_catalog.=) $1 AND q.external_id OPERATOR(pg_catalog.~~) 'stripe\_invoice:%' AND q.refund_of IS NULL
					  AND q.status OPERATOR(pg_catalog.=) 'succeeded' AND q.deleted_at IS NULL AND q.stripe_payment_intent_id IS NULL
					  AND q.amount_cents OPERATOR(pg_catalog.=) COALESCE(NULLIF((facts OPERATOR(pg_catalog.->>) 'amount_received')::bigint, 0),
													(facts OPERATOR(pg_catalog.->>) 'amount')::bigint)
					  AND q.currency OPERATOR(pg_catalog.=) pg_catalog.lower(facts OPERATOR(pg_catalog.->>) 'currency')
					  AND q.paid_at OPERATOR(pg_catalog.>=) (event_created OPERATOR(pg_catalog.-) interval '1 day')
					  AND q.paid_at OPERATOR(pg_catalog.<=) (event_created OPERATOR(pg_catalog.+) interval '1 day')
					ORDER BY pg_catalog.abs(EXTRACT(epoch FROM q.paid_at OPERATOR(pg_catalog.-) event_created)), q.id LIMIT 1)
	   AND NOT EXISTS (SELECT 1 FROM billing.payments x WHERE x.external_id OPERATOR(pg_catalog.=) (facts OPERATOR(pg_catalog.->>) 'id'))
$$;

-- Internal: payment_intent.succeeded / payment_failed store the payment.
CREATE FUNCTION billing._stripe_payment_intent(event_type text, facts jsonb, event_created timestamptz) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	inv billing.invoices;
	uid text;
	sub_id bigint;
	succeeded boolean := facts OPERATOR(pg_catalog.->>) 'payment_status' OPERATOR(pg_catalog.=) 'succeeded';  -- the core's (stripe::PaymentStatus)
BEGIN
	SELECT x.* INTO inv FROM billing.invoices x WHERE x.stripe_invoice_id OPERATOR(pg_catalog.=) (facts OPERATOR(pg_catalog.->>) 'invoice');
	uid := COALESCE(inv.user_id, billing._stripe_user(facts));
	IF uid IS NULL THEN
		RETURN 'pending: ' OPERATOR(pg_catalog.||) pg_catalog.format('no billing user for stripe payment intent "%s": it has no metadata.user_id '
								 'and its customer is not linked', facts OPERATOR(pg_catalog.->>) 'id');
	END IF;
	sub_id := COALESCE(inv.subscription_id,
		(SELECT s.id FROM billing.subscriptions s
		  WHERE s.user_id OPERATOR(pg_catalog.=) uid AND s.stripe_customer_id OPERATOR(pg_catalog.=) (facts OPERATOR(pg_catalog.->>) 'customer') AND s.deleted_at IS NULL
		  ORDER BY s.ended_at IS NULL DESC, s.started_at DESC, s.id DESC LIMIT 1));
	IF succeeded THEN
		PERFORM billing._stripe_adopt_payment(uid, facts, event_created);
	END IF;
	PERFORM billing._stripe_upsert_payment(
		uid, sub_id, inv.id,
		CASE WHEN succeeded THEN COALESCE(NULLIF((facts OPERATOR(pg_catalog.->>) 'amount_received')::bigint, 0), (facts OPERATOR(pg_catalog.->>) 'amount')::bigint, 0)
			 ELSE COALESCE((facts OPERATOR(pg_catalog.->>) 'amount')::bigint, 0) END,
		facts OPERATOR(pg_catalog.->>) 'currency', succeeded, facts OPERATOR(pg_catalog.->>) 'payment_intent', facts OPERATOR(pg_catalog.->>) 'charge',
		facts OPERATOR(pg_catalog.->>) 'failure_code', facts OPERATOR(pg_catalog.->>) 'failure_message', event_created);
	RETURN NULL;
END
$$;

-- Internal: charge.refunded carries the cumulative amount refunded; only the
-- part not yet recorded becomes a new refund (a negative payment).
CREATE FUNCTION billing._stripe_charge_refunded(facts jsonb, event_created timestamptz) RETURNS text
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
	 WHERE p.refund_of IS NULL AND p.deleted_at IS NULL AND p.status OPERATOR(pg_catalog.=) 'succeeded'
	   AND (p.stripe_charge_id OPERATOR(pg_catalog.=) (facts OPERATOR(pg_catalog.->>) 'id') OR p.external_id OPERATOR(pg_catalog.=) (facts OPERATOR(pg_catalog.->>) 'payment_intent')
			OR p.stripe_payment_intent_id OPERATOR(pg_catalog.=) (facts OPERATOR(pg_catalog.->>) 'payment_intent'))
	 ORDER BY (p.stripe_charge_id OPERATOR(pg_catalog.=) (facts OPERATOR(pg_catalog.->>) 'id')) DESC NULLS LAST, p.id
	 LIMIT 1
	   FOR UPDATE;
	IF NOT FOUND THEN
		-- the payment itself never arrived: it is recorded from the charge
		uid := billing._stripe_user(facts);
		IF uid IS NULL THEN
			RETURN 'pending: ' OPERATOR(pg_catalog.||) pg_catalog.format('no billing user for stripe charge "%s": it has no metadata.user_id '
									 'and its customer is not linked', facts OPERATOR(pg_catalog.->>) 'id');
		END IF;
		payment_id := billing._stripe_upsert_payment(
			uid, (SELECT s.id FROM billing.subscriptions s
				   WHERE s.user_id OPERATOR(pg_catalog.=) uid AND s.stripe_customer_id OPERATOR(pg_catalog.=) (facts OPERATOR(pg_catalog.->>) 'customer') AND s.deleted_at IS NULL
				   ORDER BY s.ended_at IS NULL DESC, s.started_at DESC, s.id DESC LIMIT 1),
			(SELECT i.id FROM billing.invoices i WHERE i.stripe_invoice_id OPERATOR(pg_catalog.=) (facts OPERATOR(pg_catalog.->>) 'invoice')),
			COALESCE((facts OPERATOR(pg_catalog.->>) 'amount')::bigint, 0), facts OPERATOR(pg_catalog.->>) 'currency', true,
			facts OPERATOR(pg_catalog.->>) 'payment_intent', facts OPERATOR(pg_catalog.->>) 'id', NULL, NULL,
			COALESCE(billing._stripe_time(facts, 'created'), event_created));
		SELECT p.* INTO original FROM billing.payments p WHERE p.id OPERATOR(pg_catalog.=) payment_id FOR UPDATE;
	ELSIF original.stripe_charge_id IS NULL THEN
		UPDATE billing.payments p SET stripe_charge_id = facts OPERATOR(pg_catalog.->>) 'id' WHERE p.id OPERATOR(pg_catalog.=) original.id;
	END IF;

	SELECT COALESCE(OPERATOR(pg_catalog.-) pg_catalog.sum(p.amount_cents), 0) INTO refunded
	  FROM billing.payments p
	 WHERE p.refund_of OPERATOR(pg_catalog.=) original.id AND p.status OPERATOR(pg_catalog.=) 'succeeded' AND p.deleted_at IS NULL;
	target := LEAST(COALESCE((facts OPERATOR(pg_catalog.->>) 'amount_refunded')::bigint, 0), original.amount_cents);
	delta := target OPERATOR(pg_catalog.-) refunded;
	IF delta OPERATOR(pg_catalog.>) 0 THEN
		INSERT INTO billing.payments
			(user_id, subscription_id, invoice_id, amount_cents, currency, status, refund_of, external_id,
			 stripe_payment_intent_id, stripe_charge_id, paid_at)
		VALUES (original.user_id, original.subscription_id, original.invoice_id, OPERATOR(pg_catalog.-) delta, original.currency,
				'succeeded', original.id, 'stripe_refund:' OPERATOR(pg_catalog.||) (facts OPERATOR(pg_catalog.->>) 'id') OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) target,
				facts OPERATOR(pg_catalog.->>) 'payment_intent', facts OPERATOR(pg_catalog.->>) 'id', event_created)
		ON CONFLICT (external_id) WHERE external_id IS NOT NULL DO NOTHING;
	END IF;
	RETURN NULL;
END
$$;

-- Internal: a stored event's payload for billing.stripe_replay (NULL once pruned).
CREATE FUNCTION billing._stripe_stored(event_id text, OUT found boolean, OUT payload text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT true, e.payload::pg_catalog.text FROM billing.stripe_events e WHERE e.id OPERATOR(pg_catalog.=) $1
	UNION ALL SELECT false, NULL LIMIT 1
$$;

-- What a DBA looks at: events waiting for the event that names their user.
CREATE VIEW billing.stripe_pending AS
SELECT e.id, e.type, e.object_id, e.customer_id, e.created, e.received_at, e.reason
  FROM billing.stripe_events e
 WHERE e.result = 'pending'
 ORDER BY e.customer_id, e.created, e.stage, e.received_at, e.id;
COMMENT ON VIEW billing.stripe_pending IS
	'Stripe events kept until their user is known (applied in order when the event naming the user arrives)';

CREATE FUNCTION billing.stripe_replay(event_id text, at timestamptz DEFAULT pg_catalog.now())
RETURNS text
AS 'MODULE_PATHNAME', 'billing_stripe_replay' LANGUAGE c VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION billing.stripe_replay(text, timestamptz) IS
	'Applies a stored Stripe event again, as ingesting it would (idempotent); returns its result';

-- Internal: maintenance drops the payloads of events received more than
-- stripe_event_retention ago (default 90 days); the rows stay, so a late
-- redelivery of their id is still a duplicate. Pending events are kept whole.
CREATE FUNCTION billing._stripe_prune(at timestamptz, batch integer DEFAULT 10000) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	cutoff timestamptz := at OPERATOR(pg_catalog.-) billing._setting('stripe_event_retention', '90 days')::interval;
	pruned bigint;
BEGIN
	UPDATE billing.stripe_events e SET payload = NULL
	 WHERE e.id IN (SELECT x.id FROM billing.stripe_events x
					 WHERE x.received_at OPERATOR(pg_catalog.<) cutoff AND x.payload IS NOT NULL AND x.result OPERATOR(pg_catalog.<>) 'pending'
					 ORDER BY x.received_at LIMIT batch);
	GET DIAGNOSTICS pruned = ROW_COUNT;
	RETURN pruned;
END
$$;

-- Internal: the core's one-trial-per-tier rule, as subscribe applies it.
CREATE FUNCTION billing._stripe_trial_available(user_id text, tier text) RETURNS boolean
AS 'MODULE_PATHNAME', 'billing_stripe_trial_available' LANGUAGE c STABLE
SET search_path = pg_catalog, pg_temp;

-- What the application passes to Stripe Checkout for a user and a plan: the
-- plan's Stripe price, the user as client_reference_id and subscription
-- metadata, and the plan's trial days when the user has not had a trial of
-- that tier yet.
CREATE FUNCTION billing.stripe_checkout_params(user_id text, plan_code text) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	plan billing.subscription_plans;
	subscription_data jsonb;
BEGIN
	PERFORM billing._required(user_id, 'user_id'), billing._required(plan_code, 'plan_code');
	IF user_id OPERATOR(pg_catalog.=) '' THEN
		RAISE EXCEPTION 'user id must not be empty' USING ERRCODE = '22023';
	END IF;
	SELECT p.* INTO plan FROM billing.subscription_plans p WHERE p.code OPERATOR(pg_catalog.=) plan_code AND p.deleted_at IS NULL;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown plan "%"', plan_code
			USING ERRCODE = '22023', HINT = 'The plans are listed in billing.pricing.';
	END IF;
	IF NOT plan.active THEN
		RAISE EXCEPTION 'plan "%" is not active', plan_code
			USING ERRCODE = '22023', HINT = 'The plans are listed in billing.pricing.';
	END IF;
	IF plan.stripe_price_id IS NULL THEN
		RAISE EXCEPTION 'plan "%" has no stripe price', plan_code
			USING ERRCODE = '22023',
				  DETAIL = 'billing.subscription_plans.stripe_price_id is not set for this plan.',
				  HINT = pg_catalog.format('Set it with UPDATE billing.subscription_plans SET stripe_price_id = ''price_...'' WHERE code = %L.', plan_code);
	END IF;
	subscription_data := pg_catalog.jsonb_build_object('metadata', pg_catalog.jsonb_build_object('user_id', user_id));
	IF plan.trial_days OPERATOR(pg_catalog.>) 0 AND billing._stripe_trial_available(user_id, plan.tier::pg_catalog.text) THEN
		subscription_data := subscription_data OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('trial_period_days', plan.trial_days);
	END IF;
	RETURN pg_catalog.jsonb_build_object(
		'mode', 'subscription',
		'line_items', pg_catalog.jsonb_build_array(
			pg_catalog.jsonb_build_object('price', plan.stripe_price_id, 'quantity', 1)),
		'client_reference_id', user_id,
		'subscription_data', subscription_data);
END
$$;
COMMENT ON FUNCTION billing.stripe_checkout_params(text, text) IS
	'The JSON to pass to Stripe Checkout for a user and a plan (price, client_reference_id, metadata, trial days)';
