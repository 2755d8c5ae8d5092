-- A deleted user's Stripe customer (session 9): a DELETE of the users table
-- attach_users watches closes the user's Stripe customer links; a late event
-- of that customer (a subscription update or a new subscription naming the
-- id in metadata.user_id, an invoice, a refund, a new checkout) is kept
-- pending with a reason instead of landing on whoever registers the same id
-- next. The event that ends the deleted user's Stripe subscription still
-- applies (the DELETE left that subscription for Stripe's own event). Also:
-- a TRUNCATE of the users table is refused while billing holds anything live.
-- Before the fix every held event below was applied to the new "d1".
--
-- Events are signed here, at test time, with HMAC-SHA256 from pgcrypto
-- (independent of the extension's code), as Stripe signs them.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
DROP SCHEMA IF EXISTS del_app CASCADE;
CREATE EXTENSION IF NOT EXISTS pgcrypto;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY terse
CREATE SCHEMA del_app;
CREATE TABLE del_app.users (id text PRIMARY KEY);
SELECT billing.attach_users('del_app.users', 'id');
SELECT billing.configure('stripe_webhook_secret', 'whsec_del_secret');
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
		't=' || t || ',v1=' || encode(hmac(t || '.' || payload, 'whsec_del_secret', 'sha256'), 'hex'),
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

-- == TRUNCATE with nothing live (every user on plain Free): allowed
INSERT INTO del_app.users VALUES ('a'), ('b');
TRUNCATE del_app.users;
SELECT count(*) AS users_left FROM del_app.users;

-- == d1 subscribes through Stripe Checkout, pays, and is refunded later
INSERT INTO del_app.users VALUES ('d1');
SELECT pg_temp.ingest(pg_temp.event('evt_cs1', 'checkout.session.completed', '2026-01-01 10:00+00',
	pg_temp.checkout('cs_1', 'cus_old', 'sub_old', 'd1')));
SELECT pg_temp.ingest(pg_temp.event('evt_sub1', 'customer.subscription.created', '2026-01-01 10:00:01+00',
	pg_temp.sub('sub_old', 'cus_old', 'active', '2026-01-01 10:00+00', 'd1')));
SELECT pg_temp.ingest(pg_temp.event('evt_in1', 'invoice.paid', '2026-01-01 10:00:02+00',
	pg_temp.invoice('in_1', 'cus_old', 'sub_old', '2026-01-01 10:00+00')));
SELECT customer_id, user_id, deleted_at IS NULL AS open FROM billing.stripe_customers ORDER BY customer_id;
-- while d1 is live, the TRUNCATE is refused: 55000, the user and what billing holds named
\set VERBOSITY default
TRUNCATE del_app.users;
\set VERBOSITY terse
SELECT count(*) AS users_left FROM del_app.users;

-- == d1 closes the account; somebody else registers "d1"
DELETE FROM del_app.users WHERE id = 'd1';
INSERT INTO del_app.users VALUES ('d1');
-- the link is closed, kept, with when its user was deleted
SELECT customer_id, user_id, deleted_at IS NOT NULL AS closed, user_deleted_at = deleted_at AS by_deletion
  FROM billing.stripe_customers ORDER BY customer_id;

-- == late events of the old customer: none lands on the new d1
-- a renewal of the old subscription moving to a pending cancel
SELECT pg_temp.ingest(pg_temp.event('evt_sub2', 'customer.subscription.updated', '2026-02-01 10:00+00',
	pg_temp.sub('sub_old', 'cus_old', 'active', '2026-02-01 10:00+00', 'd1', true)));
-- its invoice, paid
SELECT pg_temp.ingest(pg_temp.event('evt_in2', 'invoice.paid', '2026-02-01 10:00:01+00',
	pg_temp.invoice('in_2', 'cus_old', 'sub_old', '2026-02-01 10:00+00')));
-- a refund of the old customer's charge
SELECT pg_temp.ingest(pg_temp.event('evt_ch1', 'charge.refunded', '2026-02-02 10:00+00',
	jsonb_build_object('id', 'ch_1', 'object', 'charge', 'customer', 'cus_old', 'currency', 'usd',
					   'amount', 2999, 'amount_refunded', 2999, 'refunded', true, 'invoice', 'in_1')));
-- a new checkout of the old customer naming the id, and its new subscription naming it in metadata
SELECT pg_temp.ingest(pg_temp.event('evt_cs2', 'checkout.session.completed', '2026-02-03 10:00+00',
	pg_temp.checkout('cs_2', 'cus_old', 'sub_other', 'd1')));
SELECT pg_temp.ingest(pg_temp.event('evt_sub3', 'customer.subscription.created', '2026-02-03 10:00:01+00',
	pg_temp.sub('sub_other', 'cus_old', 'active', '2026-02-03 10:00+00', 'd1')));
-- each waits, visible to a DBA with its reason (the deletion's time masked)
SELECT id, type, customer_id, regexp_replace(reason, 'deleted at [^:]+:\d\d:\d\d\+00', 'deleted at <the DELETE>') AS reason
  FROM billing.stripe_pending;
-- billing holds for "d1" only what the old customer did before the DELETE:
-- one Stripe invoice, one payment, no refund, the link closed
SELECT stripe_invoice_id, status, total_cents FROM billing.invoices WHERE user_id = 'd1' ORDER BY id;
SELECT amount_cents, refund_of IS NOT NULL AS is_refund FROM billing.payments WHERE user_id = 'd1' ORDER BY id;
SELECT customer_id, user_id, deleted_at IS NOT NULL AS closed FROM billing.stripe_customers ORDER BY customer_id;
-- the old Stripe subscription is as its last event before the DELETE left it
SELECT stripe_subscription_id, status, cancel_at_period_end, ended_at IS NULL AS current
  FROM billing.subscriptions WHERE user_id = 'd1' AND stripe_subscription_id IS NOT NULL ORDER BY id;
-- a closed link holds nothing for the id, but the old Stripe subscription,
-- left for Stripe's event, still does: a rename is refused until it ends
UPDATE del_app.users SET id = 'd1_renamed' WHERE id = 'd1';

-- == Stripe ends the old subscription: applied (the DELETE left it to this event)
SELECT pg_temp.ingest(pg_temp.event('evt_sub4', 'customer.subscription.deleted', '2026-02-05 10:00+00',
	pg_temp.sub('sub_old', 'cus_old', 'canceled', '2026-02-01 10:00+00', 'd1')));
SELECT stripe_subscription_id, status, end_reason, ended_at
  FROM billing.subscriptions WHERE stripe_subscription_id IS NOT NULL ORDER BY id;
SELECT (billing.effective_plan('d1')).code AS new_d1_plan;
-- nothing live for the id now (the closed link is no holding): a rename is allowed
BEGIN;
UPDATE del_app.users SET id = 'd1_renamed' WHERE id = 'd1';
ROLLBACK;
-- the link stays closed; the held events stay pending
SELECT customer_id, deleted_at IS NOT NULL AS closed FROM billing.stripe_customers ORDER BY customer_id;
SELECT count(*) AS still_pending FROM billing.stripe_pending;
-- a replay changes nothing while the link is closed
SELECT billing.stripe_replay('evt_in2');

-- == the new d1's own Stripe customer is applied as usual
SELECT pg_temp.ingest(pg_temp.event('evt_cs3', 'checkout.session.completed', '2026-03-01 10:00+00',
	pg_temp.checkout('cs_3', 'cus_new', 'sub_new', 'd1')));
SELECT pg_temp.ingest(pg_temp.event('evt_sub5', 'customer.subscription.created', '2026-03-01 10:00:01+00',
	pg_temp.sub('sub_new', 'cus_new', 'active', '2026-03-01 10:00+00', 'd1')));
SELECT customer_id, user_id, deleted_at IS NULL AS open FROM billing.stripe_customers ORDER BY customer_id;
SELECT (billing.effective_plan('d1')).code AS new_d1_plan;

-- == a DBA who finds the held events belong to the new d1 after all reopens
-- the link; a replay then applies them
UPDATE billing.stripe_customers SET deleted_at = NULL, user_deleted_at = NULL WHERE customer_id = 'cus_old';
SELECT billing.stripe_replay('evt_ch1');
SELECT count(*) AS refunds FROM billing.payments WHERE user_id = 'd1' AND refund_of IS NOT NULL;

-- == TRUNCATE: refused while live, allowed for a reload in replica mode
TRUNCATE del_app.users;
\echo :LAST_ERROR_SQLSTATE
SET session_replication_role = replica;
TRUNCATE del_app.users;
RESET session_replication_role;
SELECT count(*) AS users_left FROM del_app.users;

SET client_min_messages = warning;
-- billing first: a DROP of its users table is refused while it holds anything live (sql/180)
DROP EXTENSION billing CASCADE;
DROP SCHEMA del_app CASCADE;
DROP EXTENSION pgcrypto;
RESET client_min_messages;
