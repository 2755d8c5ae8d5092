-- P1 (session 10, found by the Stripe model test's new mrr check, shrunk by
-- hand): SPEC 8 "Subscriptions never paid count 0 in MRR". A Stripe trial
-- whose first payment fails goes trialing -> past_due (or unpaid): it has
-- never been paid, but billing's history started paid_since at any
-- past_due, so mrr() counted it. And a Stripe subscription first seen
-- active with cancel_at_period_end (billing's canceled, not ended) has been
-- paid, but was counted never paid (0). Now billing::StartsPaying decides:
-- Stripe's `active` pays; a Stripe past_due pays only when first seen so
-- (its earlier events late); billing's own subscriptions as before.
-- T = 2030-01-01 00:00:00 UTC = 1893456000; a day is 86400 s.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
CREATE EXTENSION IF NOT EXISTS pgcrypto;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY terse
-- signs the event as Stripe does (pgcrypto's HMAC, independent of the
-- extension) and hands it to billing.stripe_ingest at `at`
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
UPDATE billing.subscription_plans SET stripe_price_id = 'price_p1_pro' WHERE code = 'pro_monthly';
UPDATE billing.subscription_plans SET stripe_price_id = 'price_p1_year' WHERE code = 'pro_yearly';
SELECT billing.configure('stripe_webhook_secret', 'whsec_p1');
-- p1a: a 14-day trial from T; at its end the first payment fails (past_due),
-- then Stripe stops retrying (unpaid). Never paid.
SELECT pg_temp.sub_event('evt_p1a_1', 'customer.subscription.created', 1893456000, 'sub_p1a', 'p1a', 'trialing', false,
						 1893456000, 1894665600, 1893456000, 1894665600);
SELECT pg_temp.sub_event('evt_p1a_2', 'customer.subscription.updated', 1894665600, 'sub_p1a', 'p1a', 'past_due', false,
						 1893456000, 1894665600, 1894665600, 1897344000);
SELECT pg_temp.sub_event('evt_p1a_3', 'customer.subscription.updated', 1894752000, 'sub_p1a', 'p1a', 'unpaid', false,
						 1893456000, 1894665600, 1894665600, 1897344000);
-- p1b: first seen active on pro_yearly (28800 a year, 2400 a month), cancel
-- at period end (T + 1 h, period to T + 365 d): paid
SELECT pg_temp.sub_event('evt_p1b_1', 'customer.subscription.created', 1893459600, 'sub_p1b', 'p1b', 'active', true,
						 1893459600, NULL, 1893459600, 1924995600, 'price_p1_year');
-- p1c: a trial, paid at its end (active), a renewal fails 20 days later
-- (past_due): it has paid, and counts until its grace ends
SELECT pg_temp.sub_event('evt_p1c_1', 'customer.subscription.created', 1893456000, 'sub_p1c', 'p1c', 'trialing', false,
						 1893456000, 1894665600, 1893456000, 1894665600);
SELECT pg_temp.sub_event('evt_p1c_2', 'customer.subscription.updated', 1894665600, 'sub_p1c', 'p1c', 'active', false,
						 1893456000, 1894665600, 1894665600, 1897344000);
SELECT pg_temp.sub_event('evt_p1c_3', 'customer.subscription.updated', 1894752000, 'sub_p1c', 'p1c', 'past_due', false,
						 1893456000, 1894665600, 1894665600, 1897344000);
SELECT s.user_id, s.status, s.stripe_status FROM billing.subscriptions s
 WHERE s.stripe_subscription_id IS NOT NULL ORDER BY 1;
-- on T + 16 d: p1b (2400, canceled before its period end) and p1c (2999,
-- past_due in its grace) pay; p1a never did: 5399 from 2 subscriptions
-- (before the fix: 5998 from 2, p1a and p1c; p1b counted never paid)
SELECT * FROM billing.mrr(to_timestamp(1894838400));
SELECT s.user_id, h.status, h.paid_since IS NOT NULL AS paid
  FROM billing.subscription_history h JOIN billing.subscriptions s ON s.id = h.subscription_id
 WHERE s.stripe_subscription_id IS NOT NULL AND h.valid_to = 'infinity' ORDER BY 1;
-- on T + 13 d (all three before the trials end): only p1b pays, 2400
SELECT * FROM billing.mrr(to_timestamp(1894579200));
