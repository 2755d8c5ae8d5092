-- O2 (money review 3, open until session 11): a Stripe subscription for
-- another plan than billing's own paid one, whose first event delivered says
-- it already ended (its earlier events late). In Stripe's order (created,
-- then deleted) it replaced billing's own plan at its start (a plan change:
-- the unused paid time as credit) and its end put the user on Free; first
-- seen ended it replaced nothing and billing's own plan stayed current: the
-- outcome depended on the delivery order. Now both orders end alike, as
-- Stripe's order does (stripe::TakeoverOf, `current_predates_arriving`),
-- when billing's own subscription started before the Stripe one; one that
-- started after the Stripe one (it could not have been replaced by it) is
-- left alone, as before.
-- 1 Jan 2030 = 1893456000; 15 Jan = 1894665600; 20 Jan = 1895097600; 15 Feb = 1897344000;
-- 1 Dec 2029 = 1890777600; 10 Dec 2029 = 1891555200; 1 Jan 2029 = 1861920000.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
CREATE EXTENSION IF NOT EXISTS pgcrypto;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY terse
-- a signed subscription event (pgcrypto's HMAC) handed to billing.stripe_ingest at `at`
CREATE FUNCTION pg_temp.sub_event(id text, type text, at bigint, sub text, usr text, status text,
								  start bigint, pend bigint, ended bigint) RETURNS text
LANGUAGE sql AS $$
	WITH o AS (SELECT jsonb_build_object(
		'id', sub, 'object', 'subscription', 'customer', 'cus_' || usr, 'status', status, 'currency', 'usd',
		'created', start, 'start_date', start, 'cancel_at_period_end', false, 'canceled_at', ended,
		'ended_at', ended, 'metadata', jsonb_build_object('user_id', usr),
		'items', jsonb_build_object('object', 'list', 'data', jsonb_build_array(jsonb_build_object(
			'id', 'si_' || sub, 'object', 'subscription_item', 'subscription', sub,
			'price', jsonb_build_object('id', 'price_o2_month', 'object', 'price', 'currency', 'usd'),
			'current_period_start', start, 'current_period_end', pend)))) AS obj),
	p AS (SELECT jsonb_build_object('id', id, 'object', 'event', 'type', type, 'created', at,
		'api_version', '2025-06-30.basil', 'livemode', false, 'data', jsonb_build_object('object', o.obj))::text AS body
		FROM o)
	SELECT billing.stripe_ingest(body, 't=' || at || ',v1=' || encode(hmac(at || '.' || body, 'whsec_o2', 'sha256'), 'hex'),
								 to_timestamp(at))
	  FROM p
$$;
-- what each user ends with, without ids (the two orders number rows differently)
CREATE FUNCTION pg_temp.subs(usr text) RETURNS TABLE (plan text, status billing.subscription_status,
	stripe_status text, on_stripe boolean, started_at timestamptz, ended_at timestamptz, end_reason text)
LANGUAGE sql AS $$
	SELECT p.code, s.status, s.stripe_status, s.stripe_subscription_id IS NOT NULL, s.started_at, s.ended_at, s.end_reason
	  FROM billing.subscriptions s JOIN billing.subscription_plans p ON p.id = s.plan_id
	 WHERE s.user_id = usr ORDER BY s.started_at, s.id
$$;
UPDATE billing.subscription_plans SET stripe_price_id = 'price_o2_month' WHERE code = 'pro_monthly';
SELECT billing.configure('stripe_webhook_secret', 'whsec_o2');
-- a1, a2 pay 28800 for billing's own pro_yearly on 1 Jan 2030; a3 on 1 Jan 2030 too
SELECT u, (billing.subscribe(u, 'pro_yearly', '2030-01-01', false)).status FROM unnest(ARRAY['a1', 'a2', 'a3']) AS u;
SELECT s.user_id, (billing.record_payment(s.id, 28800, 'usd', true, '2030-01-01 00:01')).status
  FROM billing.subscriptions s WHERE s.ended_at IS NULL ORDER BY s.user_id;

-- == a1, Stripe's order: pro_monthly on Stripe created 15 Jan, deleted 20 Jan
SELECT pg_temp.sub_event('evt_a1_1', 'customer.subscription.created', 1894665600, 'sub_a1', 'a1', 'active', 1894665600, 1897344000, NULL);
SELECT pg_temp.sub_event('evt_a1_2', 'customer.subscription.deleted', 1895097600, 'sub_a1', 'a1', 'canceled', 1894665600, 1897344000, 1895097600);
-- == a2, the same events delivered the other way round: first seen ended
SELECT pg_temp.sub_event('evt_a2_2', 'customer.subscription.deleted', 1895097600, 'sub_a2', 'a2', 'canceled', 1894665600, 1897344000, 1895097600);
SELECT pg_temp.sub_event('evt_a2_1', 'customer.subscription.created', 1894665600, 'sub_a2', 'a2', 'active', 1894665600, 1897344000, NULL);
-- the same subscriptions, plans on the 16th and the 21st, credit (was for a2:
-- pro_yearly current throughout, credit 0)
SELECT * FROM pg_temp.subs('a1');
SELECT * FROM pg_temp.subs('a2');
SELECT u, (billing.effective_plan(u, '2030-01-16')).code AS on_16th, (billing.effective_plan(u, '2030-01-21')).code AS on_21st,
	   billing.credit_balance(u) AS credit
  FROM unnest(ARRAY['a1', 'a2']) AS u;
SELECT (SELECT array_agg(row(t.*)::text) FROM pg_temp.subs('a1') t) = (SELECT array_agg(row(t.*)::text) FROM pg_temp.subs('a2') t)
	   AND billing.credit_balance('a1') = billing.credit_balance('a2') AS same_in_both_orders;

-- == a3: a Stripe subscription that ran 1 to 10 Dec 2029, before a3's own
-- plan began, first seen now: it replaces nothing (in Stripe's order it
-- would have ended before billing's own plan existed)
SELECT pg_temp.sub_event('evt_a3_2', 'customer.subscription.deleted', 1891555200, 'sub_a3', 'a3', 'canceled', 1890777600, 1893456000, 1891555200);
SELECT * FROM pg_temp.subs('a3');
SELECT (billing.effective_plan('a3', '2030-01-21')).code, billing.credit_balance('a3');
SET client_min_messages = warning;
DROP EXTENSION billing CASCADE;
DROP EXTENSION pgcrypto;
RESET client_min_messages;
