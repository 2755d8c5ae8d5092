-- Open finding D2 (session 9, the Stripe model test, seed 32 shrunk by hand):
-- a paid Stripe invoice delivered before its subscription is stored with no
-- subscription; a second paid invoice of that subscription and period takes
-- the period after the subscription arrived; a redelivery-like later event of
-- the first invoice (invoice.payment_succeeded of the same second, which the
-- README's order applies: same second, same stage) then fails with 23505
-- (invoices_one_per_period), an SQLSTATE outside the README's table, and
-- Stripe retries it for days: the event can never be applied.
-- SAFE outcome (this expected file): the third event is applied and the
-- invoice is kept beside the other as a manual one ("another Stripe invoice
-- for a period a Stripe invoice already took is kept as a manual one").
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY terse
UPDATE billing.subscription_plans SET stripe_price_id = 'price_review_ent' WHERE code = 'enterprise_yearly';
SELECT billing.configure('stripe_webhook_secret', 'whsec_review');
SELECT status FROM billing.subscribe('d2_user', 'free', '2030-01-01');
-- checkout names the user
SELECT billing.stripe_ingest('{"id":"evt_d2_1","object":"event","type":"checkout.session.completed","created":1894540957,"api_version":"2025-06-30.basil","livemode":false,"data":{"object":{"id":"cs_d2","object":"checkout.session","mode":"subscription","client_reference_id":"d2_user","customer":"cus_d2","subscription":"sub_d2","status":"complete","payment_status":"paid","created":1894540957,"currency":"usd"}}}',
  't=1894541138,v1=7e18e01cff0cd201b72d6eba93205ecb20e02d0efc205dbdca35c937ab4cd970', to_timestamp(1894541138));
-- invoice A paid, before its subscription
SELECT billing.stripe_ingest('{"id":"evt_d2_2","object":"event","type":"invoice.paid","created":1894886738,"api_version":"2025-06-30.basil","livemode":false,"data":{"object":{"id":"in_d2_a","object":"invoice","customer":"cus_d2","status":"paid","currency":"usd","amount_due":99900,"amount_paid":99900,"amount_remaining":0,"subtotal":99900,"total":99900,"created":1894886738,"period_start":1894886738,"period_end":1894886738,"billing_reason":"subscription_cycle","number":null,"status_transitions":{"paid_at":1894886738},"parent":{"type":"subscription_details","subscription_details":{"subscription":"sub_d2","metadata":{}}},"lines":{"object":"list","data":[{"id":"il_in_d2_a","amount":99900,"currency":"usd","period":{"start":1894886738,"end":1897478738}}]}}}}',
  't=1894886738,v1=b94c0387e343e33e7f4b27ff4548b0e8bc01f1ebdf24acdddfc84d9330434bd8', to_timestamp(1894886738));
-- the subscription, a day late
SELECT billing.stripe_ingest('{"id":"evt_d2_3","object":"event","type":"customer.subscription.created","created":1894886678,"api_version":"2025-06-30.basil","livemode":false,"data":{"object":{"id":"sub_d2","object":"subscription","customer":"cus_d2","status":"incomplete","currency":"usd","created":1894886678,"start_date":1894886678,"cancel_at_period_end":false,"canceled_at":null,"ended_at":null,"trial_start":null,"trial_end":null,"metadata":{},"items":{"object":"list","data":[{"id":"si_sub_d2","object":"subscription_item","subscription":"sub_d2","price":{"id":"price_review_ent","object":"price","currency":"usd"},"current_period_start":1894886678,"current_period_end":1926422678}]}}}}',
  't=1894973078,v1=b36769c554e0fe7729e52ce3bbb20d0dba571266363fed1cd1aa5275c3d1cc22', to_timestamp(1894973078));
-- invoice B of the same period, a day late
SELECT billing.stripe_ingest('{"id":"evt_d2_4","object":"event","type":"invoice.paid","created":1894886738,"api_version":"2025-06-30.basil","livemode":false,"data":{"object":{"id":"in_d2_b","object":"invoice","customer":"cus_d2","status":"paid","currency":"usd","amount_due":99900,"amount_paid":99900,"amount_remaining":0,"subtotal":99900,"total":99900,"created":1894886738,"period_start":1894886738,"period_end":1894886738,"billing_reason":"subscription_cycle","number":null,"status_transitions":{"paid_at":1894886738},"parent":{"type":"subscription_details","subscription_details":{"subscription":"sub_d2","metadata":{}}},"lines":{"object":"list","data":[{"id":"il_in_d2_b","amount":99900,"currency":"usd","period":{"start":1894886738,"end":1897478738}}]}}}}',
  't=1894973138,v1=b4d4d36128e5f7ffa770339a690c658e3bf755161387b237a4563f33da485d21', to_timestamp(1894973138));
-- invoice A again (payment_succeeded, same second)
SELECT billing.stripe_ingest('{"id":"evt_d2_5","object":"event","type":"invoice.payment_succeeded","created":1894886738,"api_version":"2025-06-30.basil","livemode":false,"data":{"object":{"id":"in_d2_a","object":"invoice","customer":"cus_d2","status":"paid","currency":"usd","amount_due":99900,"amount_paid":99900,"amount_remaining":0,"subtotal":99900,"total":99900,"created":1894886738,"period_start":1894886738,"period_end":1894886738,"billing_reason":"subscription_cycle","number":null,"status_transitions":{"paid_at":1894886738},"parent":{"type":"subscription_details","subscription_details":{"subscription":"sub_d2","metadata":{}}},"lines":{"object":"list","data":[{"id":"il_in_d2_a","amount":99900,"currency":"usd","period":{"start":1894886738,"end":1897478738}}]}}}}',
  't=1895145938,v1=a387f765872bb6ffc83f52774c965071e0ce1cd06b5eeed7be9023bf9201ac5f', to_timestamp(1895145938));
SELECT stripe_invoice_id, status, amount_paid_cents
  FROM billing.invoices ORDER BY stripe_invoice_id;
SELECT id, result FROM billing.stripe_events ORDER BY id;
