-- D1 (session 9, found by the Stripe model test, shrunk): a
-- customer's first Stripe subscription (A, started 13:00:00) is canceled and
-- a new one (B, started 13:00:03) replaces it in Stripe. B's events arrive
-- first; A's creation arrives 30 s late, then A's deletion. Before the fix
-- the late, older A replaced the newer B (B ended plan_changed, no later
-- event of B could undo that), then A's deletion put the user on Free while
-- Stripe bills B. Now an older Stripe subscription of the customer (by its
-- own start) delivered late replaces nothing: it is kept aside, recorded
-- ended at its own start (canceled, plan_changed, Stripe's status kept), its
-- deletion changes nothing, and the user stays on B.
-- Events are signed here, at test time (pg_temp.ingest).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
CREATE EXTENSION IF NOT EXISTS pgcrypto;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY terse
-- ingest(payload, at): signs the payload at `at` (Unix seconds) with
-- HMAC-SHA256 from pgcrypto, as Stripe signs it (independent of the
-- extension's code), and hands it to billing.stripe_ingest at that time.
CREATE FUNCTION pg_temp.ingest(payload text, at bigint) RETURNS text
LANGUAGE sql AS $$
	SELECT billing.stripe_ingest(payload,
		't=' || at || ',v1=' || encode(hmac(at || '.' || payload, 'whsec_review', 'sha256'), 'hex'),
		to_timestamp(at))
$$;
UPDATE billing.subscription_plans SET stripe_price_id = 'price_review_pro' WHERE code = 'pro_monthly';
UPDATE billing.subscription_plans SET stripe_price_id = 'price_review_ent' WHERE code = 'enterprise_yearly';
SELECT billing.configure('stripe_webhook_secret', 'whsec_review');
SELECT status FROM billing.subscribe('d1_user', 'free', '2030-01-01');
-- B created (the newer subscription)
SELECT pg_temp.ingest('{"id":"evt_d1_b1","object":"event","type":"customer.subscription.created","created":1894886403,"api_version":"2025-06-30.basil","livemode":false,"data":{"object":{"id":"sub_d1_b","object":"subscription","customer":"cus_d1","status":"active","currency":"usd","created":1894886403,"start_date":1894886403,"cancel_at_period_end":false,"canceled_at":null,"ended_at":null,"trial_start":null,"trial_end":null,"metadata":{"user_id":"d1_user"},"items":{"object":"list","data":[{"id":"si_sub_d1_b","object":"subscription_item","subscription":"sub_d1_b","price":{"id":"price_review_pro","object":"price","currency":"usd"},"current_period_start":1894886403,"current_period_end":1897478403}]}}}}',
  1894886403);
-- A created, 30 s late (the older one)
SELECT pg_temp.ingest('{"id":"evt_d1_a1","object":"event","type":"customer.subscription.created","created":1894886400,"api_version":"2025-06-30.basil","livemode":false,"data":{"object":{"id":"sub_d1_a","object":"subscription","customer":"cus_d1","status":"trialing","currency":"usd","created":1894886400,"start_date":1894886400,"cancel_at_period_end":false,"canceled_at":null,"ended_at":null,"trial_start":null,"trial_end":null,"metadata":{"user_id":"d1_user"},"items":{"object":"list","data":[{"id":"si_sub_d1_a","object":"subscription_item","subscription":"sub_d1_a","price":{"id":"price_review_ent","object":"price","currency":"usd"},"current_period_start":1894886400,"current_period_end":1896096000}]}}}}',
  1894886430);
-- A deleted (Stripe deleted it before B started)
SELECT pg_temp.ingest('{"id":"evt_d1_a2","object":"event","type":"customer.subscription.deleted","created":1894886402,"api_version":"2025-06-30.basil","livemode":false,"data":{"object":{"id":"sub_d1_a","object":"subscription","customer":"cus_d1","status":"canceled","currency":"usd","created":1894886400,"start_date":1894886400,"cancel_at_period_end":false,"canceled_at":1894886402,"ended_at":1894886402,"trial_start":null,"trial_end":null,"metadata":{"user_id":"d1_user"},"items":{"object":"list","data":[{"id":"si_sub_d1_a","object":"subscription_item","subscription":"sub_d1_a","price":{"id":"price_review_ent","object":"price","currency":"usd"},"current_period_start":1894886400,"current_period_end":1896096000}]}}}}',
  1894886431);
SELECT p.code, s.status, s.stripe_subscription_id FROM billing.subscriptions s
  JOIN billing.subscription_plans p ON p.id = s.plan_id WHERE s.user_id = 'd1_user' AND s.ended_at IS NULL;
SELECT (billing.effective_plan('d1_user', to_timestamp(1894886460))).code;
-- A is visible, kept aside: ended at its own start, current at no instant
SELECT s.stripe_subscription_id, p.code, s.status, s.stripe_status, s.end_reason,
       s.started_at = to_timestamp(1894886400) AS at_its_start, s.ended_at = s.started_at AS ended_at_start
  FROM billing.subscriptions s JOIN billing.subscription_plans p ON p.id = s.plan_id
 WHERE s.user_id = 'd1_user' AND s.stripe_subscription_id IS NOT NULL ORDER BY s.started_at;
-- a later event of B still applies to B
SELECT pg_temp.ingest('{"id":"evt_d1_b2","object":"event","type":"customer.subscription.updated","created":1894886500,"api_version":"2025-06-30.basil","livemode":false,"data":{"object":{"id":"sub_d1_b","object":"subscription","customer":"cus_d1","status":"past_due","currency":"usd","created":1894886403,"start_date":1894886403,"cancel_at_period_end":false,"canceled_at":null,"ended_at":null,"trial_start":null,"trial_end":null,"metadata":{"user_id":"d1_user"},"items":{"object":"list","data":[{"id":"si_sub_d1_b","object":"subscription_item","subscription":"sub_d1_b","price":{"id":"price_review_pro","object":"price","currency":"usd"},"current_period_start":1894886403,"current_period_end":1897478403}]}}}}',
  1894886500);
SELECT s.stripe_subscription_id, s.status, s.stripe_status FROM billing.subscriptions s
 WHERE s.user_id = 'd1_user' AND s.ended_at IS NULL;
SELECT id, result FROM billing.stripe_events ORDER BY id;
-- "Older" is by Stripe's start, not by billing's started_at: a Stripe
-- subscription B2 replacing billing's own paid subscription (another plan:
-- not adopted) starts in billing
-- when that one ended (stripe::StartAfterReplaced: at T, its subscribe, 100 s
-- after B2's Stripe start); A2, started in Stripe 50 s after B2 and delivered
-- after it, is the newer one and replaces B2 (kept aside it would leave the
-- user on B2 while Stripe bills A2).
SELECT status FROM billing.subscribe('d1b_user', 'pro_monthly', to_timestamp(1894972800));
SELECT pg_temp.ingest('{"id":"evt_d1b_b1","object":"event","type":"customer.subscription.created","created":1894972700,"api_version":"2025-06-30.basil","livemode":false,"data":{"object":{"id":"sub_d1b_b","object":"subscription","customer":"cus_d1b","status":"active","currency":"usd","created":1894972700,"start_date":1894972700,"cancel_at_period_end":false,"canceled_at":null,"ended_at":null,"trial_start":null,"trial_end":null,"metadata":{"user_id":"d1b_user"},"items":{"object":"list","data":[{"id":"si_sub_d1b_b","object":"subscription_item","subscription":"sub_d1b_b","price":{"id":"price_review_ent","object":"price","currency":"usd"},"current_period_start":1894972700,"current_period_end":1897564700}]}}}}',
  1894972810);
SELECT pg_temp.ingest('{"id":"evt_d1b_a1","object":"event","type":"customer.subscription.created","created":1894972750,"api_version":"2025-06-30.basil","livemode":false,"data":{"object":{"id":"sub_d1b_a","object":"subscription","customer":"cus_d1b","status":"active","currency":"usd","created":1894972750,"start_date":1894972750,"cancel_at_period_end":false,"canceled_at":null,"ended_at":null,"trial_start":null,"trial_end":null,"metadata":{"user_id":"d1b_user"},"items":{"object":"list","data":[{"id":"si_sub_d1b_a","object":"subscription_item","subscription":"sub_d1b_a","price":{"id":"price_review_pro","object":"price","currency":"usd"},"current_period_start":1894972750,"current_period_end":1897564750}]}}}}',
  1894972820);
SELECT s.stripe_subscription_id, s.status, s.end_reason, s.ended_at IS NULL AS current,
       extract(epoch FROM s.started_at)::bigint - 1894972800 AS started_after_t
  FROM billing.subscriptions s WHERE s.user_id = 'd1b_user' AND s.stripe_subscription_id IS NOT NULL
 ORDER BY s.started_at, s.id;
