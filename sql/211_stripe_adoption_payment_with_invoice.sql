-- Session 11 (attack finding 7 N1): when a Stripe subscription kept aside
-- while unpaid adopts billing's own subscription of the same plan, its
-- invoices move to the adopted one unless that one holds the period already
-- (a renewal of its own, voided by the adoption), and only the payments of
-- the invoices that moved (or of no invoice) go with them: a payment stays
-- with its invoice. Before the fix every payment moved, so the Stripe
-- payment sat on the adopted subscription while its invoice stayed aside.
-- 1 Feb 2030 00:00 UTC = 1896134400, 1 Mar = 1898553600.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
CREATE EXTENSION IF NOT EXISTS pgcrypto;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY terse
-- signs the event as Stripe does (pgcrypto's HMAC, independent of the
-- extension) and hands it to billing.stripe_ingest at `at`
CREATE FUNCTION pg_temp.sub_event(id text, type text, at bigint, sub text, usr text, status text,
								  start bigint, pend bigint, price text DEFAULT 'price_o1_year') RETURNS text
LANGUAGE sql AS $$
	WITH o AS (SELECT jsonb_build_object(
		'id', sub, 'object', 'subscription', 'customer', 'cus_' || usr, 'status', status, 'currency', 'usd',
		'created', start, 'start_date', start, 'cancel_at_period_end', false, 'canceled_at', NULL,
		'ended_at', CASE WHEN status = 'incomplete_expired' THEN at END,
		'metadata', jsonb_build_object('user_id', usr),
		'items', jsonb_build_object('object', 'list', 'data', jsonb_build_array(jsonb_build_object(
			'id', 'si_' || sub, 'object', 'subscription_item', 'subscription', sub,
			'price', jsonb_build_object('id', price, 'object', 'price', 'currency', 'usd'),
			'current_period_start', start, 'current_period_end', pend)))) AS obj),
	p AS (SELECT jsonb_build_object('id', id, 'object', 'event', 'type', type, 'created', at,
		'api_version', '2025-06-30.basil', 'livemode', false, 'data', jsonb_build_object('object', o.obj))::text AS body
		FROM o)
	SELECT billing.stripe_ingest(body, 't=' || at || ',v1=' || encode(hmac(at || '.' || body, 'whsec_o1', 'sha256'), 'hex'),
								 to_timestamp(at))
	  FROM p
$$;
-- a Stripe invoice of the subscription's first period, open (its payment pending) or paid
CREATE FUNCTION pg_temp.inv_event(id text, type text, at bigint, inv text, sub text, usr text, status text,
								  pstart bigint, pend bigint) RETURNS text
LANGUAGE sql AS $$
	WITH o AS (SELECT jsonb_build_object(
		'id', inv, 'object', 'invoice', 'customer', 'cus_' || usr, 'subscription', sub, 'status', status,
		'currency', 'usd', 'billing_reason', 'subscription_create', 'subtotal', 2999, 'total', 2999,
		'amount_paid', CASE WHEN status = 'paid' THEN 2999 ELSE 0 END, 'amount_due', 2999,
		'period_start', pstart, 'period_end', pend, 'created', pstart,
		'status_transitions', jsonb_build_object('paid_at', CASE WHEN status = 'paid' THEN at END)) AS obj),
	p AS (SELECT jsonb_build_object('id', id, 'object', 'event', 'type', type, 'created', at,
		'api_version', '2025-06-30.basil', 'livemode', false, 'data', jsonb_build_object('object', o.obj))::text AS body
		FROM o)
	SELECT billing.stripe_ingest(body, 't=' || at || ',v1=' || encode(hmac(at || '.' || body, 'whsec_o1', 'sha256'), 'hex'),
								 to_timestamp(at))
	  FROM p
$$;
CREATE FUNCTION pg_temp.subs(usr text) RETURNS TABLE (id bigint, plan text, status billing.subscription_status,
	stripe_status text, stripe_subscription_id text, started_at timestamptz, ended_at timestamptz, end_reason text,
	awaiting boolean)
LANGUAGE sql AS $$
	SELECT s.id, p.code, s.status, s.stripe_status, s.stripe_subscription_id, s.started_at, s.ended_at, s.end_reason,
		   s.metadata ? 'awaiting_payment'
	  FROM billing.subscriptions s JOIN billing.subscription_plans p ON p.id = s.plan_id
	 WHERE s.user_id = usr ORDER BY s.id
$$;
UPDATE billing.subscription_plans SET stripe_price_id = 'price_o1_year' WHERE code = 'pro_yearly';
UPDATE billing.subscription_plans SET stripe_price_id = 'price_o1_month' WHERE code = 'pro_monthly';
SELECT billing.configure('stripe_webhook_secret', 'whsec_o1');
-- n1: billing's own pro_monthly from 1 Jan, paid; maintenance renews it at 1 Feb (an open invoice)
SELECT (billing.subscribe('n1', 'pro_monthly', '2030-01-01', false)).status;
SELECT (billing.record_payment(s.id, 2999, 'usd', true, '2030-01-01 00:00')).status
  FROM billing.subscriptions s WHERE s.user_id = 'n1' AND s.ended_at IS NULL;
SELECT count(*) > 0 AS renewed FROM billing.run_maintenance('2030-02-01 00:00+00');
-- a Stripe subscription of the same plan from that instant: incomplete (kept aside), its invoice paid, then active
SELECT pg_temp.sub_event('evt_n1_1', 'customer.subscription.created', 1896134400, 'sub_n1', 'n1', 'incomplete', 1896134400, 1898553600, 'price_o1_month');
SELECT pg_temp.inv_event('evt_n1_i1', 'invoice.finalized', 1896134400, 'in_n1', 'sub_n1', 'n1', 'open', 1896134400, 1898553600);
SELECT pg_temp.inv_event('evt_n1_i2', 'invoice.paid', 1896134700, 'in_n1', 'sub_n1', 'n1', 'paid', 1896134400, 1898553600);
SELECT pg_temp.sub_event('evt_n1_2', 'customer.subscription.updated', 1896134700, 'sub_n1', 'n1', 'active', 1896134400, 1898553600, 'price_o1_month');
SELECT * FROM pg_temp.subs('n1');
SELECT i.id, i.subscription_id, i.stripe_invoice_id, i.status, i.amount_paid_cents, i.period_start
  FROM billing.invoices i WHERE i.user_id = 'n1' ORDER BY i.id;
-- every payment on its invoice's subscription
SELECT p.id, p.subscription_id, p.invoice_id, i.subscription_id AS invoice_subscription, p.amount_cents, p.status
  FROM billing.payments p LEFT JOIN billing.invoices i ON i.id = p.invoice_id WHERE p.user_id = 'n1' ORDER BY p.id;
SELECT count(*) AS payments_apart_from_their_invoice FROM billing.payments p JOIN billing.invoices i ON i.id = p.invoice_id
 WHERE p.subscription_id IS DISTINCT FROM i.subscription_id;
SELECT billing.credit_balance('n1'), (billing.effective_plan('n1', '2030-02-20')).code;
SET client_min_messages = warning;
DROP EXTENSION billing CASCADE;
RESET client_min_messages;
