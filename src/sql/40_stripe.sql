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
-- (No index by object: no statement looks events up by their object; the
-- watermark is billing.stripe_objects'. One was written with every event.)
-- What maintenance may still prune (billing._stripe_prune), oldest first: only
-- events that keep their payload. Pruned events stay for ever (a late
-- redelivery of their id is a duplicate); an index of every event by
-- received_at made each run walk all of them before the first unpruned one
-- (scale audit: 1 ms at 20,000 users, 100 ms at 200,000, growing with the
-- history).
CREATE INDEX stripe_events_unpruned ON billing.stripe_events (received_at)
	WHERE payload IS NOT NULL AND result OPERATOR(pg_catalog.<>) 'pending';
CREATE INDEX stripe_events_pending ON billing.stripe_events (customer_id, created, stage) WHERE result = 'pending';
-- The payload (about 5 kB as jsonb, one per event) is compressed with lz4
-- where the server has it: as small as pglz's for Stripe's events, at a
-- fraction of the CPU. Compressed (2-3 kB) it stays in the row (STORAGE
-- MAIN; out of line only when it does not fit a page): an event is written
-- with its usual outcome, so the row is rarely updated, and a TOAST table
-- would cost two more heap and two index records per event.
DO $lz4$
BEGIN
	ALTER TABLE billing.stripe_events ALTER COLUMN payload SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
	NULL;  -- a server built without lz4 keeps pglz
END
$lz4$;
-- (Its short text columns too: with them EXTENDED, TOAST would move the
-- longest of them, e.g. a 29-byte type, out of line before it compresses a
-- MAIN payload.)
ALTER TABLE billing.stripe_events ALTER COLUMN payload SET STORAGE MAIN, ALTER COLUMN id SET STORAGE MAIN,
	ALTER COLUMN type SET STORAGE MAIN, ALTER COLUMN object_id SET STORAGE MAIN, ALTER COLUMN result SET STORAGE MAIN,
	ALTER COLUMN reason SET STORAGE MAIN, ALTER COLUMN customer_id SET STORAGE MAIN;

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
	deleted_at timestamptz,
	-- when the application deleted the user (a DELETE of the users table
	-- attach_users watches closed the link, deleted_at too): the customer's
	-- later events are not applied to whoever registers the id next
	user_deleted_at timestamptz
);
COMMENT ON TABLE billing.stripe_customers IS 'Stripe customer id -> billing user id, learnt from Checkout';
CREATE INDEX stripe_customers_user ON billing.stripe_customers (user_id);
-- Stripe's own subscription status, verbatim (billing's status is the core's
-- mapping of it, stripe::StripeStatusTable).
ALTER TABLE billing.subscriptions ADD COLUMN stripe_status text;
CREATE INDEX subscriptions_stripe_customer
	ON billing.subscriptions (stripe_customer_id) WHERE stripe_customer_id IS NOT NULL;
CREATE INDEX payments_stripe_charge ON billing.payments (stripe_charge_id) WHERE stripe_charge_id IS NOT NULL;
CREATE INDEX payments_stripe_payment_intent ON billing.payments (stripe_payment_intent_id)
	WHERE stripe_payment_intent_id IS NOT NULL;
-- The glue's lookups of Stripe payments by their state (stripe::InvoicePayment,
-- stripe::AdoptionOf): a Stripe payment on no invoice yet, which an invoice.paid
-- naming no payment intent takes; a payment recorded under its invoice,
-- which the later payment_intent.succeeded adopts.
CREATE INDEX payments_stripe_unplaced ON billing.payments (user_id, amount_cents, paid_at)
	WHERE invoice_id IS NULL AND refund_of IS NULL AND status = 'succeeded' AND deleted_at IS NULL
	  AND (stripe_payment_intent_id IS NOT NULL OR stripe_charge_id IS NOT NULL);
CREATE INDEX payments_stripe_awaiting_intent ON billing.payments (user_id, amount_cents, paid_at)
	WHERE external_id LIKE 'stripe\_invoice:%' AND stripe_payment_intent_id IS NULL AND refund_of IS NULL
	  AND status = 'succeeded' AND deleted_at IS NULL;

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
	'Verifies and applies a Stripe webhook event exactly once; returns applied, duplicate, stale, ignored or pending';

-- What each event does (the user it belongs to, the invoice, payment, refund
-- or customer link it writes) is decided in the core (src/core/stripe_event.hpp:
-- stripe::DecideInvoice, InvoicePayment, DecidePayment, MergePayment,
-- AdoptionOf, RefundedPayment, DecideRefund, DecideCheckout, UserOf) and
-- stored by glue/stripe.cpp with kept prepared statements: no PL/pgSQL.

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
