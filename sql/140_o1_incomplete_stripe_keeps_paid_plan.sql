-- O1 (session 10): a Stripe subscription not paid yet (incomplete, or first
-- seen incomplete_expired) neither adopts nor replaces a plan the customer
-- has paid billing for. It is recorded aside (ended at its start, Stripe's
-- status kept, metadata awaiting_payment); billing's own plan stays current
-- and nothing is credited. When a later event says it is active (paid) the
-- existing rules apply then: the same plan is adopted, another plan replaces
-- billing's own (its unused time as credit). In any delivery order: an
-- incomplete event older than the applied active one is stale. A user on
-- Free is taken over as before (an incomplete Stripe subscription becomes
-- current). Before the fix o1 ended on Free with credit 0 (a paid year lost).
-- T = 2030-01-01 00:00:00 UTC = 1893456000; 15 Jan = 1894665600.
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
		'currency', 'usd', 'billing_reason', 'subscription_create', 'subtotal', 28800, 'total', 28800,
		'amount_paid', CASE WHEN status = 'paid' THEN 28800 ELSE 0 END, 'amount_due', 28800,
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
-- o1..o3 and o5 pay 28800 for billing's own pro_yearly on 1 Jan 2030
SELECT u, (billing.subscribe(u, 'pro_yearly', '2030-01-01', false)).status FROM unnest(ARRAY['o1', 'o2', 'o3', 'o5']) AS u;
SELECT s.user_id, (billing.record_payment(s.id, 28800, 'usd', true, '2030-01-01 00:01')).status
  FROM billing.subscriptions s WHERE s.ended_at IS NULL ORDER BY s.user_id;

-- == o1: incomplete on 15 Jan, incomplete_expired 23 h later: the paid year is kept, nothing credited
SELECT pg_temp.sub_event('evt_o1_1', 'customer.subscription.created', 1894665600, 'sub_o1', 'o1', 'incomplete', 1894665600, 1926201600);
SELECT * FROM pg_temp.subs('o1');
SELECT (billing.effective_plan('o1', '2030-01-16')).code, billing.credit_balance('o1');
SELECT pg_temp.sub_event('evt_o1_2', 'customer.subscription.updated', 1894748400, 'sub_o1', 'o1', 'incomplete_expired', 1894665600, 1926201600);
SELECT * FROM pg_temp.subs('o1');
SELECT (billing.effective_plan('o1', '2030-02-01')).code, billing.credit_balance('o1');
-- the Stripe object's state is recorded: its watermark
SELECT object_id, last_event_id FROM billing.stripe_objects WHERE object_id = 'sub_o1';
-- a late event of the expired one changes nothing
SELECT pg_temp.sub_event('evt_o1_3', 'customer.subscription.updated', 1894752000, 'sub_o1', 'o1', 'active', 1894665600, 1926201600);
SELECT * FROM pg_temp.subs('o1');

-- == o2: incomplete on 15 Jan (its open invoice arrives), then paid: active 5 min later, adopted then
SELECT pg_temp.sub_event('evt_o2_1', 'customer.subscription.created', 1894665600, 'sub_o2', 'o2', 'incomplete', 1894665600, 1926201600);
SELECT pg_temp.inv_event('evt_o2_i1', 'invoice.finalized', 1894665600, 'in_o2', 'sub_o2', 'o2', 'open', 1894665600, 1926201600);
SELECT * FROM pg_temp.subs('o2');
SELECT pg_temp.inv_event('evt_o2_i2', 'invoice.paid', 1894665900, 'in_o2', 'sub_o2', 'o2', 'paid', 1894665600, 1926201600);
SELECT pg_temp.sub_event('evt_o2_2', 'customer.subscription.updated', 1894665900, 'sub_o2', 'o2', 'active', 1894665600, 1926201600);
SELECT * FROM pg_temp.subs('o2');
SELECT (billing.effective_plan('o2', '2030-02-01')).code, billing.credit_balance('o2');
-- Stripe's invoice and its payment went with the Stripe id to the adopted subscription
SELECT i.stripe_invoice_id, i.status, s.stripe_subscription_id FROM billing.invoices i
  JOIN billing.subscriptions s ON s.id = i.subscription_id WHERE i.user_id = 'o2' ORDER BY i.id;
SELECT p.amount_cents, p.status, s.stripe_subscription_id FROM billing.payments p
  LEFT JOIN billing.subscriptions s ON s.id = p.subscription_id WHERE p.user_id = 'o2' ORDER BY p.id;

-- == o3: the same two events delivered active first: adopted; the incomplete one is stale
SELECT pg_temp.sub_event('evt_o3_2', 'customer.subscription.updated', 1894665900, 'sub_o3', 'o3', 'active', 1894665600, 1926201600);
SELECT pg_temp.sub_event('evt_o3_1', 'customer.subscription.created', 1894665600, 'sub_o3', 'o3', 'incomplete', 1894665600, 1926201600);
SELECT * FROM pg_temp.subs('o3');
SELECT (billing.effective_plan('o3', '2030-02-01')).code, billing.credit_balance('o3');

-- == o5: another plan (pro_monthly) incomplete: kept aside, nothing credited; active a day later replaces
-- the paid year then, by the rule an active one first seen follows: billing's own ended as a plan change at
-- Stripe's start (15 Jan), its unused time credited (28800 x 351 / 365 = 27695)
SELECT pg_temp.sub_event('evt_o5_1', 'customer.subscription.created', 1894665600, 'sub_o5', 'o5', 'incomplete', 1894665600, 1897344000, 'price_o1_month');
SELECT * FROM pg_temp.subs('o5');
SELECT billing.credit_balance('o5');
SELECT pg_temp.sub_event('evt_o5_2', 'customer.subscription.updated', 1894752000, 'sub_o5', 'o5', 'active', 1894665600, 1897344000, 'price_o1_month');
SELECT * FROM pg_temp.subs('o5');
SELECT (billing.effective_plan('o5', '2030-02-01')).code, billing.credit_balance('o5');

-- == o4 on Free (nothing paid): an incomplete Stripe subscription takes over as before (README: incomplete
-- grants the plan's access while its first payment is pending), incomplete_expired puts o4 back on Free
SELECT status FROM billing.subscribe('o4', 'free', '2030-01-01', false);
SELECT pg_temp.sub_event('evt_o4_1', 'customer.subscription.created', 1894665600, 'sub_o4', 'o4', 'incomplete', 1894665600, 1926201600);
SELECT * FROM pg_temp.subs('o4');
SELECT (billing.effective_plan('o4', '2030-01-15 12:00')).code;
SELECT pg_temp.sub_event('evt_o4_2', 'customer.subscription.updated', 1894748400, 'sub_o4', 'o4', 'incomplete_expired', 1894665600, 1926201600);
SELECT * FROM pg_temp.subs('o4');
SELECT (billing.effective_plan('o4', '2030-02-01')).code, billing.credit_balance('o4');
-- == o6: paid pro_yearly; incomplete on 15 Jan, then Stripe deletes it unpaid (canceled): it stays aside for
-- good (never adopted and ended with the paid plan), the paid year kept, nothing credited
SELECT (billing.subscribe('o6', 'pro_yearly', '2030-01-01', false)).status;
SELECT (billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'o6' AND ended_at IS NULL),
							   28800, 'usd', true, '2030-01-01 00:01')).status;
SELECT pg_temp.sub_event('evt_o6_1', 'customer.subscription.created', 1894665600, 'sub_o6', 'o6', 'incomplete', 1894665600, 1926201600);
SELECT pg_temp.sub_event('evt_o6_2', 'customer.subscription.deleted', 1894669200, 'sub_o6', 'o6', 'canceled', 1894665600, 1926201600);
SELECT * FROM pg_temp.subs('o6');
SELECT (billing.effective_plan('o6', '2030-02-01')).code, billing.credit_balance('o6');
-- one current subscription each, never two
SELECT user_id, count(*) FROM billing.subscriptions WHERE ended_at IS NULL GROUP BY user_id ORDER BY user_id;
