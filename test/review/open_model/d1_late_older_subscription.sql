-- Open finding D1 (session 9, the Stripe model test, seed 1 shrunk): a
-- customer's first Stripe subscription (A, started 13:00:00) is canceled and
-- a new one (B, started 13:00:03) replaces it in Stripe. B's events arrive
-- first; A's creation arrives 30 s late, then A's deletion. billing lets the
-- late, older A replace the newer B ("A Stripe subscription replacing another
-- ends it only": B ends plan_changed), then A's deletion puts the user on Free
-- for good: B, which Stripe bills, is ended in billing and no later event of
-- B can undo that. The user pays for Pro and has Free.
-- SAFE outcome (this expected file): an older Stripe subscription delivered
-- late does not replace the newer current one (it is recorded ended, or
-- replaces nothing); after A's deletion the user is on B, pro_monthly active.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY terse
UPDATE billing.subscription_plans SET stripe_price_id = 'price_review_pro' WHERE code = 'pro_monthly';
UPDATE billing.subscription_plans SET stripe_price_id = 'price_review_ent' WHERE code = 'enterprise_yearly';
SELECT billing.configure('stripe_webhook_secret', 'whsec_review');
SELECT status FROM billing.subscribe('d1_user', 'free', '2030-01-01');
-- B created (the newer subscription)
SELECT billing.stripe_ingest('{"id":"evt_d1_b1","object":"event","type":"customer.subscription.created","created":1894886403,"api_version":"2025-06-30.basil","livemode":false,"data":{"object":{"id":"sub_d1_b","object":"subscription","customer":"cus_d1","status":"active","currency":"usd","created":1894886403,"start_date":1894886403,"cancel_at_period_end":false,"canceled_at":null,"ended_at":null,"trial_start":null,"trial_end":null,"metadata":{"user_id":"d1_user"},"items":{"object":"list","data":[{"id":"si_sub_d1_b","object":"subscription_item","subscription":"sub_d1_b","price":{"id":"price_review_pro","object":"price","currency":"usd"},"current_period_start":1894886403,"current_period_end":1897478403}]}}}}',
  't=1894886403,v1=5ef0e72a8a33202b485ac2bbb27e5bcbd232a7f911a6bae4119eb6f3e6febcf0', to_timestamp(1894886403));
-- A created, 30 s late (the older one)
SELECT billing.stripe_ingest('{"id":"evt_d1_a1","object":"event","type":"customer.subscription.created","created":1894886400,"api_version":"2025-06-30.basil","livemode":false,"data":{"object":{"id":"sub_d1_a","object":"subscription","customer":"cus_d1","status":"trialing","currency":"usd","created":1894886400,"start_date":1894886400,"cancel_at_period_end":false,"canceled_at":null,"ended_at":null,"trial_start":null,"trial_end":null,"metadata":{"user_id":"d1_user"},"items":{"object":"list","data":[{"id":"si_sub_d1_a","object":"subscription_item","subscription":"sub_d1_a","price":{"id":"price_review_ent","object":"price","currency":"usd"},"current_period_start":1894886400,"current_period_end":1896096000}]}}}}',
  't=1894886430,v1=4569e21c58ed65411b8592029dadb3f5f96c58f889c58aa876e71d939af09836', to_timestamp(1894886430));
-- A deleted (Stripe deleted it before B started)
SELECT billing.stripe_ingest('{"id":"evt_d1_a2","object":"event","type":"customer.subscription.deleted","created":1894886402,"api_version":"2025-06-30.basil","livemode":false,"data":{"object":{"id":"sub_d1_a","object":"subscription","customer":"cus_d1","status":"canceled","currency":"usd","created":1894886400,"start_date":1894886400,"cancel_at_period_end":false,"canceled_at":1894886402,"ended_at":1894886402,"trial_start":null,"trial_end":null,"metadata":{"user_id":"d1_user"},"items":{"object":"list","data":[{"id":"si_sub_d1_a","object":"subscription_item","subscription":"sub_d1_a","price":{"id":"price_review_ent","object":"price","currency":"usd"},"current_period_start":1894886400,"current_period_end":1896096000}]}}}}',
  't=1894886431,v1=1e66d39df258a8b470c8c4d3120b93e77304a4cba262d8e02c3256d3e74cb573', to_timestamp(1894886431));
SELECT p.code, s.status, s.stripe_subscription_id FROM billing.subscriptions s
  JOIN billing.subscription_plans p ON p.id = s.plan_id WHERE s.user_id = 'd1_user' AND s.ended_at IS NULL;
SELECT (billing.effective_plan('d1_user', to_timestamp(1894886460))).code;
