-- Open finding D3 (session 9, the Stripe model test, seed 3 shrunk): "Refunds
-- are negative payments pointing at the payment they refund, dated at or
-- after it" (README, the ledger). A paid invoice B (paid 01:30:34) is
-- recorded under stripe_invoice:in_d3_b; then charge.refunded of another
-- charge A (charge created 01:29:34, refund event 01:29:36, same amount, its
-- payment intent never seen) adopts that row ("a charge whose payment never
-- arrived is recorded from the charge first, adopting the row invoice.paid
-- recorded") and dates the refund 58 s before the payment it refunds; a
-- month boundary between them would put the refund in an earlier month of
-- revenue() than the payment.
-- Now: one payment pi_d3_a paid 01:30:34 (the invoice's time), its refund of
-- 1 cent at 01:29:36.
-- SAFE outcome (this expected file): no refund dated before its payment (the
-- adopted payment dated at the charge's time, or a charge created before the
-- invoice was paid not adopting its row).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY terse
SELECT billing.configure('stripe_webhook_secret', 'whsec_review');
SELECT status FROM billing.subscribe('d3_user', 'free', '2030-01-01');
-- checkout names the user
SELECT billing.stripe_ingest('{"id":"evt_d3_1","object":"event","type":"checkout.session.completed","created":1895016574,"api_version":"2025-06-30.basil","livemode":false,"data":{"object":{"id":"cs_d3","object":"checkout.session","mode":"subscription","client_reference_id":"d3_user","customer":"cus_d3","subscription":"sub_d3","status":"complete","payment_status":"paid","created":1895016574,"currency":"usd"}}}',
  't=1895016574,v1=c223dd10729ebf55657617e61c8b4b0c555afae2d4e6c12c9ecdf373e8b13976', to_timestamp(1895016574));
-- invoice B paid at 01:30:34
SELECT billing.stripe_ingest('{"id":"evt_d3_2","object":"event","type":"invoice.paid","created":1895103034,"api_version":"2025-06-30.basil","livemode":false,"data":{"object":{"id":"in_d3_b","object":"invoice","customer":"cus_d3","status":"paid","currency":"usd","amount_due":28800,"amount_paid":28800,"amount_remaining":0,"subtotal":28800,"total":28800,"created":1895103034,"period_start":1895103034,"period_end":1895103034,"billing_reason":"subscription_cycle","number":null,"status_transitions":{"paid_at":1895103034},"parent":{"type":"subscription_details","subscription_details":{"subscription":"sub_d3","metadata":{}}},"lines":{"object":"list","data":[{"id":"il_in_d3_b","amount":28800,"currency":"usd","period":{"start":1895103034,"end":1897695034}}]}}}}',
  't=1895103034,v1=02cdee1bdad5319e1f67731c78a6a3da6483ca91ed238af3954f32f2c30ff17e', to_timestamp(1895103034));
-- charge A (created 01:29:34) refunded 1 cent at 01:29:36, delivered a day late
SELECT billing.stripe_ingest('{"id":"evt_d3_3","object":"event","type":"charge.refunded","created":1895102976,"api_version":"2025-06-30.basil","livemode":false,"data":{"object":{"id":"ch_d3_a","object":"charge","payment_intent":"pi_d3_a","customer":"cus_d3","amount":28800,"amount_captured":28800,"amount_refunded":1,"refunded":false,"captured":true,"currency":"usd","status":"succeeded","paid":true,"created":1895102974}}}',
  't=1895189374,v1=f64737a96856f037b7db3c0a9cabb1f84a5f7ab2f7c9c6f2c2973650a6918987', to_timestamp(1895189374));
SELECT count(*) AS refunds_before_their_payment
  FROM billing.payments r JOIN billing.payments p ON p.id = r.refund_of WHERE r.paid_at < p.paid_at;
