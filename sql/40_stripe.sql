-- Stripe: signature verification with known vectors, bad inputs, malformed
-- events after a valid signature, checkout parameters. (Fixture-based webhook
-- stories are in test/shell/stripe_webhooks.sh.)
--
-- Every signature below was computed outside the extension with OpenSSL:
--   printf '%s' '1700000000.<payload>' | openssl dgst -sha256 -hmac 'whsec_test_secret'
-- 1700000000 is 2023-11-14 22:13:20 UTC.
\set p1 '{"id":"evt_test_1","object":"event"}'
\set s1 '29ab30b7065c11b28e53ac114fac5d6c492ed811a12d11ed2c2aad5bb4cf9809'
\set t0 '''2023-11-14 22:13:20+00'''
SET timezone = 'UTC';

-- valid; several v1 values (one matches); unknown schemes and spaces tolerated
SELECT billing.stripe_verify(:'p1', 't=1700000000,v1=' || :'s1', 'whsec_test_secret', '5 minutes', :t0);
SELECT billing.stripe_verify(:'p1', ' t=1700000000 , v0=abc, v1=' || repeat('0', 64) || ', v1=' || :'s1',
                             'whsec_test_secret', '5 minutes', :t0);
-- wrong secret, tampered payload, timestamp not the signed one
SELECT billing.stripe_verify(:'p1', 't=1700000000,v1=' || :'s1', 'whsec_other', '5 minutes', :t0);
SELECT billing.stripe_verify(:'p1' || ' ', 't=1700000000,v1=' || :'s1', 'whsec_test_secret', '5 minutes', :t0);
SELECT billing.stripe_verify(:'p1', 't=1700000001,v1=' || :'s1', 'whsec_test_secret', '5 minutes', :t0);
-- tolerance: the edge is inside, one second past it is not, in both directions
SELECT billing.stripe_verify(:'p1', 't=1700000000,v1=' || :'s1', 'whsec_test_secret', '5 minutes', :t0::timestamptz + interval '5 minutes');
SELECT billing.stripe_verify(:'p1', 't=1700000000,v1=' || :'s1', 'whsec_test_secret', '5 minutes', :t0::timestamptz + interval '5 minutes 1 second');
SELECT billing.stripe_verify(:'p1', 't=1700000000,v1=' || :'s1', 'whsec_test_secret', '5 minutes', :t0::timestamptz - interval '5 minutes 1 second');
SELECT billing.stripe_verify(:'p1', 't=1700000000,v1=' || :'s1', 'whsec_test_secret', '1 day', :t0::timestamptz - interval '23 hours');
-- the defaults: 5 minutes around now(); a 2023 signature is long expired
SELECT billing.stripe_verify(:'p1', 't=1700000000,v1=' || :'s1', 'whsec_test_secret');
-- malformed headers are false, not errors
SELECT billing.stripe_verify(:'p1', h, 'whsec_test_secret', '5 minutes', :t0) AS verifies, h AS header
  FROM unnest(ARRAY['', 'garbage', 't=abc,v1=' || :'s1', 'v1=' || :'s1', 't=1700000000',
                    't=1700000000,v0=' || :'s1', 't=1700000000,t=1700000000,v1=' || :'s1']) AS h;
-- NULL payload or header: false; NULL secret, tolerance or time: an error
SELECT billing.stripe_verify(NULL, 't=1700000000,v1=' || :'s1', 'whsec_test_secret', '5 minutes', :t0);
SELECT billing.stripe_verify(:'p1', NULL, 'whsec_test_secret', '5 minutes', :t0);
SELECT billing.stripe_verify(:'p1', 't=1700000000,v1=' || :'s1', NULL, '5 minutes', :t0);
SELECT billing.stripe_verify(:'p1', 't=1700000000,v1=' || :'s1', '', '5 minutes', :t0);
SELECT billing.stripe_verify(:'p1', 't=1700000000,v1=' || :'s1', 'whsec_test_secret', NULL, :t0);
SELECT billing.stripe_verify(:'p1', 't=1700000000,v1=' || :'s1', 'whsec_test_secret', '-1 minute', :t0);
SELECT billing.stripe_verify(:'p1', 't=1700000000,v1=' || :'s1', 'whsec_test_secret', '5 minutes', NULL);
SELECT billing.stripe_verify(:'p1', 't=1700000000,v1=' || :'s1', 'whsec_test_secret', '5 minutes', 'infinity');
-- times: the years 0001 to 9999 (UTC) are accepted up to their first and last
-- microsecond; outside them is 22008
SELECT billing.stripe_verify(:'p1', 't=1700000000,v1=' || :'s1', 'whsec_test_secret', '5 minutes', '0001-01-01 00:00:00+00');
SELECT billing.stripe_verify(:'p1', 't=1700000000,v1=' || :'s1', 'whsec_test_secret', '5 minutes', '9999-12-31 23:59:59.999999+00');
SELECT billing.stripe_verify(:'p1', 't=1700000000,v1=' || :'s1', 'whsec_test_secret', '5 minutes', '0001-12-31 23:59:59.999999+00 BC');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.stripe_verify(:'p1', 't=1700000000,v1=' || :'s1', 'whsec_test_secret', '5 minutes', '10000-01-01 00:00:00+00');
\echo :LAST_ERROR_SQLSTATE

-- stripe_ingest without a configured secret refuses everything
-- (earlier tests in this database configured one; start from none)
DELETE FROM billing.settings WHERE key = 'stripe_webhook_secret';
SELECT billing.stripe_ingest(:'p1', 't=1700000000,v1=' || :'s1', :t0);
\echo :LAST_ERROR_SQLSTATE
SELECT billing.configure('stripe_webhook_secret', 'whsec_rotated_away, whsec_test_secret');
-- a bad signature: QB020 with a DETAIL that names no secret
SELECT billing.stripe_ingest(:'p1', 't=1700000000,v1=' || repeat('0', 64), :t0);
\echo :LAST_ERROR_SQLSTATE
SELECT billing.stripe_ingest(:'p1', 't=1700000000,v1=' || :'s1', :t0::timestamptz + interval '6 minutes');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.stripe_ingest(:'p1', NULL, :t0);
\echo :LAST_ERROR_SQLSTATE
SELECT billing.stripe_ingest(:'p1', 'nonsense', :t0);
\echo :LAST_ERROR_SQLSTATE
SELECT billing.stripe_ingest(NULL, 't=1700000000,v1=' || :'s1', :t0);
\echo :LAST_ERROR_SQLSTATE
SELECT billing.stripe_ingest(:'p1', 't=1700000000,v1=' || :'s1', NULL);
\echo :LAST_ERROR_SQLSTATE
-- a valid signature over malformed JSON, or over JSON that is not an event: 22023
SELECT billing.stripe_ingest('{"id":', 't=1700000000,v1=9a90c15d3620277f292e2d1d45c4ce158e39bd87be594f7db3c1a2d70670ffce', :t0);
\echo :LAST_ERROR_SQLSTATE
SELECT billing.stripe_ingest('[1,2]', 't=1700000000,v1=2db9663cf97afe84960f63a21cc927c9b09e6931b1cb5d2e4f63908f8fb3c2de', :t0);
\echo :LAST_ERROR_SQLSTATE
SELECT billing.stripe_ingest('{"id":"evt_r2","type":"customer.created","created":1700000000,"data":{}}',
                             't=1700000000,v1=d6f9d736bff5aac3f086bb47cef9b58ef83a8d699eb7df3ff1aa2f339a1da8ca', :t0);
\echo :LAST_ERROR_SQLSTATE
-- the envelope minimum (the object is all a handler could use): recorded, ignored, then a duplicate
\set p2 '{"id":"evt_r1","type":"customer.created","created":1700000000,"data":{"object":{"id":"cus_1","object":"customer"}}}'
\set s2 '2b9585d4047258fef397ecb7889e92b838c67f9ff1f3e99832eb4cc5c0d39e0b'
SELECT billing.stripe_ingest(:'p2', 't=1700000000,v1=' || :'s2', :t0);
SELECT billing.stripe_ingest(:'p2', 't=1700000000,v1=' || :'s2', :t0::timestamptz + interval '1 minute');
SELECT id, type, object_id, created, result, reason, received_at, payload = :'p2'::jsonb AS payload_kept
  FROM billing.stripe_events;
-- nothing was recorded by the refused calls
SELECT count(*) FROM billing.stripe_events;

-- replay: NULL is 22004, an unknown id 22023; a stored event replays to its result
SELECT billing.stripe_replay(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT billing.stripe_replay('evt_never_received');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.stripe_replay('evt_r1');
-- a validly signed payload nested 100,000 levels deep: 54000, nothing stored, no crash
-- (signature: printf '1700000000.' followed by 100000 '[' | openssl dgst -sha256 -hmac 'whsec_test_secret')
SELECT billing.stripe_ingest(repeat('[', 100000), 't=1700000000,v1=afd88d850381800ee8df7790362ef18a2de70ace72976fc0cc8e5f07abf0169b', :t0);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM billing.stripe_events;

-- an invoice's times are stored in UTC whatever the session's TimeZone: the
-- same invoice.paid ingested under UTC and under America/New_York stores the
-- same period, issue and paid times, the same lines (their times written in
-- UTC by the core) and the same payment (signatures as above, t=1700000000)
\set tz_utc '{"id":"evt_tz_utc","object":"event","type":"invoice.paid","created":1700000000,"data":{"object":{"object":"invoice","id":"in_tz_utc","customer":"cus_tz","currency":"usd","status":"paid","billing_reason":"manual","amount_paid":1500,"amount_due":1500,"subtotal":1500,"total":1500,"created":1699990000,"period_start":1699990000,"period_end":1699990000,"status_transitions":{"paid_at":1699999990},"metadata":{"user_id":"tz_user_utc"},"lines":{"object":"list","data":[{"description":"Seats","amount":1500,"currency":"USD","period":{"start":1699990000,"end":1702582000}}]}}}}'
\set tz_ny '{"id":"evt_tz_ny","object":"event","type":"invoice.paid","created":1700000000,"data":{"object":{"object":"invoice","id":"in_tz_ny","customer":"cus_tz","currency":"usd","status":"paid","billing_reason":"manual","amount_paid":1500,"amount_due":1500,"subtotal":1500,"total":1500,"created":1699990000,"period_start":1699990000,"period_end":1699990000,"status_transitions":{"paid_at":1699999990},"metadata":{"user_id":"tz_user_ny"},"lines":{"object":"list","data":[{"description":"Seats","amount":1500,"currency":"USD","period":{"start":1699990000,"end":1702582000}}]}}}}'
SET timezone = 'UTC';
SELECT billing.stripe_ingest(:'tz_utc', 't=1700000000,v1=0027639b58c641712233ccd1d25c888973ba6060db032d009541107f3ab6c9e1', :t0);
SET timezone = 'America/New_York';
SELECT billing.stripe_ingest(:'tz_ny', 't=1700000000,v1=c822fb670aef07d140fac3c95eae59c1608985cedff45909d703d75700bc7bad', :t0);
SET timezone = 'UTC';
SELECT u.lines = n.lines AS same_lines, u.period_start = n.period_start AND u.period_end = n.period_end AS same_period,
       u.issued_at = n.issued_at AND u.paid_at = n.paid_at AS same_times, n.lines ->> 0 AS lines_ny,
       n.status, n.paid_at, n.currency, n.amount_paid_cents
  FROM billing.invoices u, billing.invoices n
 WHERE u.stripe_invoice_id = 'in_tz_utc' AND n.stripe_invoice_id = 'in_tz_ny';
SELECT p.external_id, p.amount_cents, p.currency, p.paid_at, i.stripe_invoice_id,
       (SELECT count(*) FROM billing.ledger_entries e WHERE e.payment_id = p.id AND e.kind = 'payment_to_invoice') AS ledger
  FROM billing.payments p JOIN billing.invoices i ON i.id = p.invoice_id
 WHERE p.user_id LIKE 'tz_user_%' ORDER BY p.external_id;
-- "within a day" of an invoice's paid time is 86,400 seconds, not the
-- session's calendar day: under America/New_York the day of the fall-back
-- (2023-11-05) is 25 hours, and a payment 24.5 hours before the invoice was
-- paid was taken as its payment under that zone and not under UTC; now under
-- none (the invoice records its own payment, the earlier one stays unplaced)
\set dst_pi '{"id":"evt_dst_pi","object":"event","type":"payment_intent.succeeded","created":1699099200,"data":{"object":{"object":"payment_intent","id":"pi_dst","amount":700,"amount_received":700,"currency":"usd","status":"succeeded","metadata":{"user_id":"tz_user_dst"}}}}'
\set dst_inv '{"id":"evt_dst_inv","object":"event","type":"invoice.paid","created":1699187400,"data":{"object":{"object":"invoice","id":"in_dst","customer":"cus_dst","currency":"usd","status":"paid","billing_reason":"manual","amount_paid":700,"amount_due":700,"subtotal":700,"total":700,"created":1699187400,"status_transitions":{"paid_at":1699187400},"metadata":{"user_id":"tz_user_dst"},"lines":{"object":"list","data":[]}}}}'
SET timezone = 'America/New_York';
SELECT billing.stripe_ingest(:'dst_pi', 't=1700000000,v1=8aff052b484f7e6284a6f977b63e09bc387278a2f4c809e2ff243898ff5f1c02', :t0);
SELECT billing.stripe_ingest(:'dst_inv', 't=1700000000,v1=88dd60a49b68be0cae013dcf3428bea53cd5398f7cdd6ab943cb117cb517c750', :t0);
SET timezone = 'UTC';
SELECT p.external_id, p.amount_cents, p.paid_at, i.stripe_invoice_id
  FROM billing.payments p LEFT JOIN billing.invoices i ON i.id = p.invoice_id
 WHERE p.user_id = 'tz_user_dst' ORDER BY p.paid_at;
DELETE FROM billing.ledger_entries WHERE user_id LIKE 'tz_user_%';
DELETE FROM billing.payments WHERE user_id LIKE 'tz_user_%';
DELETE FROM billing.invoices WHERE user_id LIKE 'tz_user_%';
DELETE FROM billing.stripe_objects WHERE object_id LIKE 'in_tz_%' OR object_id IN ('pi_dst', 'in_dst');
DELETE FROM billing.stripe_events WHERE id LIKE 'evt_tz_%' OR id LIKE 'evt_dst_%';

-- the glue's lookups of Stripe payments by their ids and state are served by
-- indexes: the statements of glue/stripe.cpp with values for their parameters
-- (scans turned off: these tables are tiny here, where a scan would win)
SET enable_seqscan = off;
-- invoice.paid naming no payment intent: the unplaced payment it takes (payments_stripe_unplaced)
EXPLAIN (COSTS OFF) SELECT q.id FROM billing.payments q
 WHERE q.user_id OPERATOR(pg_catalog.=) 'u1' AND q.invoice_id IS NULL AND q.refund_of IS NULL
   AND q.status OPERATOR(pg_catalog.=) 'succeeded' AND q.deleted_at IS NULL
   AND (q.stripe_payment_intent_id IS NOT NULL OR q.stripe_charge_id IS NOT NULL)
   AND q.amount_cents OPERATOR(pg_catalog.=) 2999 AND q.currency OPERATOR(pg_catalog.=) 'usd'
   AND q.paid_at OPERATOR(pg_catalog.>=) '2026-01-01 00:00:00+00' AND q.paid_at OPERATOR(pg_catalog.<=) '2026-01-03 00:00:00+00'
 ORDER BY pg_catalog.abs(EXTRACT(epoch FROM q.paid_at OPERATOR(pg_catalog.-) '2026-01-02 00:00:00+00'::timestamptz)), q.id LIMIT 1;
-- payment_intent.succeeded: the row its invoice.paid recorded (payments_stripe_awaiting_intent)
EXPLAIN (COSTS OFF) SELECT q.id FROM billing.payments q
 WHERE q.user_id OPERATOR(pg_catalog.=) 'u1' AND q.external_id OPERATOR(pg_catalog.~~) 'stripe\_invoice:%'
   AND q.refund_of IS NULL AND q.status OPERATOR(pg_catalog.=) 'succeeded' AND q.deleted_at IS NULL
   AND q.stripe_payment_intent_id IS NULL AND q.amount_cents OPERATOR(pg_catalog.=) 2999
   AND q.currency OPERATOR(pg_catalog.=) 'usd' AND q.paid_at OPERATOR(pg_catalog.>=) '2026-01-01 00:00:00+00'
   AND q.paid_at OPERATOR(pg_catalog.<=) '2026-01-03 00:00:00+00'
 ORDER BY pg_catalog.abs(EXTRACT(epoch FROM q.paid_at OPERATOR(pg_catalog.-) '2026-01-02 00:00:00+00'::timestamptz)), q.id LIMIT 1;
-- charge.refunded: the charge's payment by charge, external id or payment intent (three indexes)
EXPLAIN (COSTS OFF) SELECT p.id, COALESCE(p.stripe_charge_id OPERATOR(pg_catalog.=) 'ch_1', false)
  FROM billing.payments p WHERE p.refund_of IS NULL AND p.deleted_at IS NULL
   AND p.status OPERATOR(pg_catalog.=) 'succeeded' AND (p.stripe_charge_id OPERATOR(pg_catalog.=) 'ch_1'
    OR p.external_id OPERATOR(pg_catalog.=) 'pi_1' OR p.stripe_payment_intent_id OPERATOR(pg_catalog.=) 'pi_1');
RESET enable_seqscan;

-- checkout parameters
UPDATE billing.subscription_plans SET stripe_price_id = 'price_pro_monthly_regress' WHERE code = 'pro_monthly';
SELECT jsonb_pretty(billing.stripe_checkout_params('user_1', 'pro_monthly'));
SELECT billing.stripe_checkout_params('user_1', 'free');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.stripe_checkout_params('user_1', 'no_such_plan');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.stripe_checkout_params(NULL, 'pro_monthly');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.stripe_checkout_params('user_1', NULL);
\echo :LAST_ERROR_SQLSTATE
-- a user who has had a Pro trial gets no trial days for any Pro plan
INSERT INTO billing.subscriptions (user_id, plan_id, status, price_cents, currency, billing_interval, started_at,
                                   current_period_start, trial_start, trial_end, ended_at, end_reason)
SELECT 'user_1', id, 'canceled', price_cents, currency, billing_interval, '2026-01-01', '2026-01-01',
       '2026-01-01', '2026-01-15', '2026-01-15', 'trial_ended'
  FROM billing.subscription_plans WHERE code = 'pro_yearly';
SELECT billing.stripe_checkout_params('user_1', 'pro_monthly') -> 'subscription_data';
SELECT billing.stripe_checkout_params('user_2', 'pro_monthly') -> 'subscription_data';
UPDATE billing.subscription_plans SET stripe_price_id = NULL WHERE code = 'pro_monthly';
DELETE FROM billing.subscriptions WHERE user_id = 'user_1';
-- who may call what
SELECT p.proname, has_function_privilege('billing_app', p.oid, 'EXECUTE') AS app,
       has_function_privilege('billing_analyst', p.oid, 'EXECUTE') AS analyst, p.prosecdef
  FROM pg_proc p WHERE p.pronamespace = 'billing'::regnamespace AND p.proname LIKE '%stripe%'
 ORDER BY 1;
DELETE FROM billing.stripe_events;
DELETE FROM billing.settings WHERE key = 'stripe_webhook_secret';
