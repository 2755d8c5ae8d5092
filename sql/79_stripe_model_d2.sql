-- D2 (session 9, found by the Stripe model test, shrunk by hand):
-- a paid Stripe invoice A delivered before its subscription is stored with no
-- subscription; a second paid invoice B of that subscription and period takes
-- the period after the subscription arrived; a later event of A
-- (invoice.payment_succeeded of the same second, which the README's order
-- applies: same second, same stage) failed with 23505
-- (invoices_one_per_period) before the fix, an SQLSTATE outside the README's
-- table, and Stripe retried it for days: never applied. Now it is applied and
-- A is kept beside B as a manual invoice ("another Stripe invoice for a
-- period a Stripe invoice already took is kept as a manual one").
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
UPDATE billing.subscription_plans SET stripe_price_id = 'price_review_ent' WHERE code = 'enterprise_yearly';
SELECT billing.configure('stripe_webhook_secret', 'whsec_review');
SELECT status FROM billing.subscribe('d2_user', 'free', '2030-01-01');
-- checkout names the user
SELECT pg_temp.ingest('{"id":"evt_d2_1","object":"event","type":"checkout.session.completed","created":1894540957,"api_version":"2025-06-30.basil","livemode":false,"data":{"object":{"id":"cs_d2","object":"checkout.session","mode":"subscription","client_reference_id":"d2_user","customer":"cus_d2","subscription":"sub_d2","status":"complete","payment_status":"paid","created":1894540957,"currency":"usd"}}}',
  1894541138);
-- invoice A paid, before its subscription
SELECT pg_temp.ingest('{"id":"evt_d2_2","object":"event","type":"invoice.paid","created":1894886738,"api_version":"2025-06-30.basil","livemode":false,"data":{"object":{"id":"in_d2_a","object":"invoice","customer":"cus_d2","status":"paid","currency":"usd","amount_due":99900,"amount_paid":99900,"amount_remaining":0,"subtotal":99900,"total":99900,"created":1894886738,"period_start":1894886738,"period_end":1894886738,"billing_reason":"subscription_cycle","number":null,"status_transitions":{"paid_at":1894886738},"parent":{"type":"subscription_details","subscription_details":{"subscription":"sub_d2","metadata":{}}},"lines":{"object":"list","data":[{"id":"il_in_d2_a","amount":99900,"currency":"usd","period":{"start":1894886738,"end":1897478738}}]}}}}',
  1894886738);
-- the subscription, a day late
SELECT pg_temp.ingest('{"id":"evt_d2_3","object":"event","type":"customer.subscription.created","created":1894886678,"api_version":"2025-06-30.basil","livemode":false,"data":{"object":{"id":"sub_d2","object":"subscription","customer":"cus_d2","status":"incomplete","currency":"usd","created":1894886678,"start_date":1894886678,"cancel_at_period_end":false,"canceled_at":null,"ended_at":null,"trial_start":null,"trial_end":null,"metadata":{},"items":{"object":"list","data":[{"id":"si_sub_d2","object":"subscription_item","subscription":"sub_d2","price":{"id":"price_review_ent","object":"price","currency":"usd"},"current_period_start":1894886678,"current_period_end":1926422678}]}}}}',
  1894973078);
-- invoice B of the same period, a day late
SELECT pg_temp.ingest('{"id":"evt_d2_4","object":"event","type":"invoice.paid","created":1894886738,"api_version":"2025-06-30.basil","livemode":false,"data":{"object":{"id":"in_d2_b","object":"invoice","customer":"cus_d2","status":"paid","currency":"usd","amount_due":99900,"amount_paid":99900,"amount_remaining":0,"subtotal":99900,"total":99900,"created":1894886738,"period_start":1894886738,"period_end":1894886738,"billing_reason":"subscription_cycle","number":null,"status_transitions":{"paid_at":1894886738},"parent":{"type":"subscription_details","subscription_details":{"subscription":"sub_d2","metadata":{}}},"lines":{"object":"list","data":[{"id":"il_in_d2_b","amount":99900,"currency":"usd","period":{"start":1894886738,"end":1897478738}}]}}}}',
  1894973138);
-- invoice A again (payment_succeeded, same second)
SELECT pg_temp.ingest('{"id":"evt_d2_5","object":"event","type":"invoice.payment_succeeded","created":1894886738,"api_version":"2025-06-30.basil","livemode":false,"data":{"object":{"id":"in_d2_a","object":"invoice","customer":"cus_d2","status":"paid","currency":"usd","amount_due":99900,"amount_paid":99900,"amount_remaining":0,"subtotal":99900,"total":99900,"created":1894886738,"period_start":1894886738,"period_end":1894886738,"billing_reason":"subscription_cycle","number":null,"status_transitions":{"paid_at":1894886738},"parent":{"type":"subscription_details","subscription_details":{"subscription":"sub_d2","metadata":{}}},"lines":{"object":"list","data":[{"id":"il_in_d2_a","amount":99900,"currency":"usd","period":{"start":1894886738,"end":1897478738}}]}}}}',
  1895145938);
SELECT stripe_invoice_id, status, amount_paid_cents, billing_reason, subscription_id IS NOT NULL AS on_subscription
  FROM billing.invoices ORDER BY stripe_invoice_id;
SELECT id, result FROM billing.stripe_events ORDER BY id;
