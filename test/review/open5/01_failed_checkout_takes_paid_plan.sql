-- O1 (session 10, open): a failed Stripe checkout for the plan billing already sold
-- the customer takes that paid plan away. o1 pays 28800 for billing's own
-- pro_yearly on 1 Jan 2030; on 15 Jan a Stripe subscription for the same plan
-- arrives incomplete (its first payment pending) and is adopted (README: the same
-- paid plan is adopted); 23 h later Stripe expires it (incomplete_expired).
-- Expected: o1 keeps pro_yearly to 1 Jan 2031 (or gets the unused time back as
-- credit, 28800 x 351 / 365 = 27695); actual: expired, Free from 15 Jan, credit 0.
-- Run on a scratch cluster: psql -X -d DB -f this file (.out beside it: the output).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE EXTENSION billing;
SET timezone = 'UTC';
CREATE FUNCTION pg_temp.sub_event(id text, type text, at bigint, sub text, usr text, status text, cape boolean,
								  start bigint, trial_end bigint, pstart bigint, pend bigint,
								  price text DEFAULT 'price_p1_pro') RETURNS text
LANGUAGE sql AS $$
	WITH o AS (SELECT jsonb_build_object(
		'id', sub, 'object', 'subscription', 'customer', 'cus_' || usr, 'status', status, 'currency', 'usd',
		'created', start, 'start_date', start, 'cancel_at_period_end', cape, 'canceled_at', NULL, 'ended_at', NULL,
		'trial_start', CASE WHEN trial_end IS NOT NULL THEN start END, 'trial_end', trial_end,
		'metadata', jsonb_build_object('user_id', usr),
		'items', jsonb_build_object('object', 'list', 'data', jsonb_build_array(jsonb_build_object(
			'id', 'si_' || sub, 'object', 'subscription_item', 'subscription', sub,
			'price', jsonb_build_object('id', price, 'object', 'price', 'currency', 'usd'),
			'current_period_start', pstart, 'current_period_end', pend)))) AS obj),
	p AS (SELECT jsonb_build_object('id', id, 'object', 'event', 'type', type, 'created', at,
		'api_version', '2025-06-30.basil', 'livemode', false, 'data', jsonb_build_object('object', o.obj))::text AS body
		FROM o)
	SELECT billing.stripe_ingest(body, 't=' || at || ',v1=' || encode(hmac(at || '.' || body, 'whsec_p1', 'sha256'), 'hex'),
								 to_timestamp(at))
	  FROM p
$$;
UPDATE billing.subscription_plans SET stripe_price_id = 'price_p1_year' WHERE code = 'pro_yearly';
SELECT billing.configure('stripe_webhook_secret', 'whsec_p1');
SELECT status FROM billing.subscribe('o1', 'pro_yearly', '2030-01-01', false);
SELECT status FROM billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id='o1' AND ended_at IS NULL), 28800, 'usd', true, '2030-01-01 00:01');
-- a Stripe checkout for the same plan whose first payment fails: incomplete, then incomplete_expired
SELECT pg_temp.sub_event('evt_o1_1', 'customer.subscription.created', 1894665600, 'sub_o1', 'o1', 'incomplete', false, 1894665600, NULL, 1894665600, 1926201600, 'price_p1_year');
SELECT pg_temp.sub_event('evt_o1_2', 'customer.subscription.updated', 1894748400, 'sub_o1', 'o1', 'incomplete_expired', false, 1894665600, NULL, 1894665600, 1926201600, 'price_p1_year');
SELECT id, status, stripe_status, started_at, ended_at, end_reason FROM billing.subscriptions WHERE user_id='o1' ORDER BY id;
SELECT (billing.effective_plan('o1', '2030-02-01')).code, billing.credit_balance('o1');
