-- An object's first event (session 11, issue 12's cost): the row that
-- orders a Stripe object's events (billing.stripe_objects) is made with that
-- event as its watermark, in the statement that takes the object's lock. A
-- first event that does not apply (pending: its user is not known yet;
-- ignored: a price no plan has) must leave no watermark, or the same event,
-- applied later, would find itself "as new or newer" and be stale, and a
-- later event of the object could be refused for an event that never applied.
--
-- Events are signed here, at test time, with HMAC-SHA256 from pgcrypto.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
DROP SCHEMA IF EXISTS wm_app CASCADE;
CREATE EXTENSION IF NOT EXISTS pgcrypto;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY terse
CREATE SCHEMA wm_app;
CREATE TABLE wm_app.users (id text PRIMARY KEY);
SELECT billing.attach_users('wm_app.users', 'id');
SELECT billing.configure('stripe_webhook_secret', 'whsec_wm_secret');
UPDATE billing.subscription_plans SET stripe_price_id = 'price_pro' WHERE code = 'pro_monthly';

-- event(id, type, created, object) -> the payload; ingest(payload) signs it
-- at its own time and hands it to billing.stripe_ingest, as a webhook would.
CREATE FUNCTION pg_temp.event(id text, type text, created timestamptz, object jsonb) RETURNS text
LANGUAGE sql AS $$
	SELECT jsonb_build_object('id', id, 'object', 'event', 'type', type,
							  'created', extract(epoch FROM created)::bigint,
							  'data', jsonb_build_object('object', object))::text
$$;
CREATE FUNCTION pg_temp.ingest(payload text) RETURNS text
LANGUAGE sql AS $$
	SELECT billing.stripe_ingest(payload,
		't=' || t || ',v1=' || encode(hmac(t || '.' || payload, 'whsec_wm_secret', 'sha256'), 'hex'),
		to_timestamp(t::bigint))
	  FROM (SELECT (payload::jsonb ->> 'created') AS t) s
$$;
CREATE FUNCTION pg_temp.sub(id text, customer text, status text, period_start timestamptz,
							user_id text DEFAULT NULL, cancel_at_period_end boolean DEFAULT false) RETURNS jsonb
LANGUAGE sql AS $$
	SELECT jsonb_build_object('id', id, 'object', 'subscription', 'customer', customer, 'status', status,
		'cancel_at_period_end', cancel_at_period_end,
		'start_date', extract(epoch FROM period_start)::bigint,
		'current_period_start', extract(epoch FROM period_start)::bigint,
		'current_period_end', extract(epoch FROM period_start + interval '1 month')::bigint,
		'items', jsonb_build_object('data', jsonb_build_array(jsonb_build_object('price', jsonb_build_object('id', 'price_pro')))),
		'metadata', CASE WHEN user_id IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('user_id', user_id) END)
$$;
CREATE FUNCTION pg_temp.invoice(id text, customer text, subscription text, paid_at timestamptz) RETURNS jsonb
LANGUAGE sql AS $$
	SELECT jsonb_build_object('id', id, 'object', 'invoice', 'customer', customer, 'subscription', subscription,
		'status', 'paid', 'currency', 'usd', 'billing_reason', 'subscription_cycle',
		'subtotal', 2999, 'total', 2999, 'amount_paid', 2999, 'amount_due', 2999,
		'period_start', extract(epoch FROM paid_at)::bigint,
		'period_end', extract(epoch FROM paid_at + interval '1 month')::bigint,
		'created', extract(epoch FROM paid_at)::bigint,
		'status_transitions', jsonb_build_object('paid_at', extract(epoch FROM paid_at)::bigint))
$$;
CREATE FUNCTION pg_temp.checkout(id text, customer text, subscription text, user_id text) RETURNS jsonb
LANGUAGE sql AS $$
	SELECT jsonb_build_object('id', id, 'object', 'checkout.session', 'mode', 'subscription', 'status', 'complete',
		'customer', customer, 'subscription', subscription, 'client_reference_id', user_id)
$$;

-- == an invoice of a customer billing does not know yet waits; its object
-- row has no watermark
INSERT INTO wm_app.users VALUES ('w1');
SELECT pg_temp.ingest(pg_temp.event('evt_in1', 'invoice.paid', '2026-03-01 10:00:02+00',
	pg_temp.invoice('in_1', 'cus_w1', 'sub_w1', '2026-03-01 10:00+00')));
SELECT object_id, object_type, last_event_id, last_event_created, last_event_stage
  FROM billing.stripe_objects ORDER BY object_id;
-- the subscription names the user: it applies, and the waiting invoice with it
SELECT pg_temp.ingest(pg_temp.event('evt_sub1', 'customer.subscription.created', '2026-03-01 10:00:01+00',
	pg_temp.sub('sub_w1', 'cus_w1', 'active', '2026-03-01 10:00+00', 'w1')));
SELECT id, result, reason FROM billing.stripe_events ORDER BY id;
SELECT count(*) AS still_pending FROM billing.stripe_pending;
SELECT stripe_invoice_id, status, total_cents FROM billing.invoices WHERE user_id = 'w1';
-- each object's watermark is its applied event
SELECT object_id, object_type, last_event_id, last_event_created, last_event_stage
  FROM billing.stripe_objects ORDER BY object_id;
-- a redelivery of the invoice event is a duplicate; a replay finds it as new as itself
SELECT pg_temp.ingest(pg_temp.event('evt_in1', 'invoice.paid', '2026-03-01 10:00:02+00',
	pg_temp.invoice('in_1', 'cus_w1', 'sub_w1', '2026-03-01 10:00+00')));
SELECT billing.stripe_replay('evt_in1', '2026-03-01 11:00+00');

-- == a subscription whose first event names a price no plan has: ignored,
-- no watermark; its next event (the same second, naming a plan's price)
-- applies
SELECT pg_temp.ingest(pg_temp.event('evt_sub2a', 'customer.subscription.created', '2026-03-02 10:00+00',
	jsonb_set(pg_temp.sub('sub_w2', 'cus_w2', 'active', '2026-03-02 10:00+00', 'w2'),
			  '{items,data,0,price,id}', '"price_unknown"')));
SELECT object_id, last_event_id, last_event_created FROM billing.stripe_objects WHERE object_id = 'sub_w2';
SELECT pg_temp.ingest(pg_temp.event('evt_sub2b', 'customer.subscription.updated', '2026-03-02 10:00+00',
	pg_temp.sub('sub_w2', 'cus_w2', 'active', '2026-03-02 10:00+00', 'w2')));
SELECT id, result, reason FROM billing.stripe_events WHERE id LIKE 'evt_sub2%' ORDER BY id;
SELECT object_id, last_event_id FROM billing.stripe_objects WHERE object_id = 'sub_w2';
SELECT user_id, status, stripe_subscription_id FROM billing.subscriptions WHERE stripe_subscription_id IS NOT NULL ORDER BY user_id;

SET client_min_messages = warning;
-- billing first: a users table with live billing state cannot be dropped (sql/180)
DROP EXTENSION billing CASCADE;
DROP SCHEMA wm_app CASCADE;
DROP EXTENSION pgcrypto;
RESET client_min_messages;
