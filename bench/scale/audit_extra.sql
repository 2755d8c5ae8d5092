-- What the scale audit (bench/scale/audit.py) adds to a book built by
-- book.sql, so that the usage and Stripe paths read tables that grow with the
-- book too: a year of metered usage (3 records per user, in the monthly
-- partitions maintenance makes, rolled up but for the last day's), and for
-- every tenth user a Stripe customer link with two stored (applied) events.
--   psql -v users=N -f bench/scale/audit_extra.sql
\set ON_ERROR_STOP 1
\if :{?due}
\else
\set due '2026-12-01 00:00:00+00'
\endif
SET client_min_messages = warning;
SET work_mem = '64MB';
SELECT billing._usage_partition(m), billing._usage_daily_partition(m)
  FROM generate_series(:'due'::timestamptz - interval '13 months', :'due'::timestamptz + interval '2 months', interval '1 month') m;
-- (the keyed records in two statements, usage_keys analysed between them:
-- planned against an empty usage_keys, the insert trigger's NOT EXISTS is a
-- nested loop over a sequential scan of the keys the statement itself adds)
INSERT INTO billing.usage_records (user_id, metric, quantity, recorded_at, idempotency_key)
SELECT g::text, 'api_calls', 1 + (g + k) % 50,
	   :'due'::timestamptz - interval '365 days' + ((g * 7 + k * 131) % 365) * interval '1 day' + (g % 86400) * interval '1 second',
	   CASE WHEN k = 0 THEN 'key-' || g END
  FROM generate_series(1, :users) g, generate_series(0, 2) k
 WHERE k > 0 OR g <= 1000;
ANALYZE billing.usage_keys;
INSERT INTO billing.usage_records (user_id, metric, quantity, recorded_at, idempotency_key)
SELECT g::text, 'api_calls', 1 + g % 50,
	   :'due'::timestamptz - interval '365 days' + ((g * 7) % 365) * interval '1 day' + (g % 86400) * interval '1 second',
	   'key-' || g
  FROM generate_series(1001, :users) g;
SELECT billing.rollup_usage(:'due'::timestamptz - interval '1 day') AS rolled_up;
-- Stripe: every tenth user a customer, two events each
INSERT INTO billing.stripe_customers (customer_id, user_id)
SELECT 'cus_book_' || g, g::text FROM generate_series(10, :users, 10) g;
INSERT INTO billing.stripe_events (id, type, object_id, created, payload, result, received_at, customer_id)
SELECT 'evt_book_' || g || '_' || k, 'invoice.paid', 'in_book_' || g || '_' || k,
	   :'due'::timestamptz - interval '360 days' + ((g + k * 97) % 360) * interval '1 day',
	   jsonb_build_object('id', 'evt_book_' || g || '_' || k, 'pad', repeat('x', 200)), 'applied',
	   :'due'::timestamptz - interval '360 days' + ((g + k * 97) % 360) * interval '1 day', 'cus_book_' || g
  FROM generate_series(10, :users, 10) g, generate_series(0, 1) k;
INSERT INTO billing.stripe_objects (object_id, object_type, last_event_created, last_event_id)
SELECT e.object_id, 'invoice', e.created, e.id FROM billing.stripe_events e WHERE e.id LIKE 'evt_book_%';
VACUUM ANALYZE;
SELECT (SELECT count(*) FROM billing.usage_records) AS usage_records, (SELECT count(*) FROM billing.usage_daily) AS usage_daily,
	   (SELECT count(*) FROM billing.usage_pending) AS pending, (SELECT count(*) FROM billing.stripe_events) AS stripe_events;
