-- Scale audit (session 10): maintenance's prune of Stripe payloads
-- (billing._stripe_prune, every run_maintenance) reads the events it may
-- prune, not every event ever pruned. Pruned events stay for ever (a late
-- redelivery of their id is still a duplicate); with an index of all events
-- by received_at each run walked every pruned one before the first it could
-- prune (bench/scale/audit.py: 1 ms at 20,000 users, 100 ms at 200,000).
-- Measured as the rows the call read from billing.stripe_events
-- (pg_stat_xact_user_tables: sequential and index fetches alike).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
-- 5,000 events pruned long ago, 20 not yet pruned (older than the
-- retention), 30 recent ones and 10 pending ones kept whole
INSERT INTO billing.stripe_events (id, type, object_id, created, payload, result, received_at)
SELECT 'evt_old_' || g, 'invoice.paid', 'in_' || g, '2026-01-01'::timestamptz + g * interval '1 minute',
	   CASE WHEN g > 5000 THEN '{"pad": 1}'::jsonb END,
	   CASE WHEN g > 5050 THEN 'pending' ELSE 'applied' END,
	   '2026-01-01'::timestamptz + g * interval '1 minute' + CASE WHEN g > 5020 THEN interval '300 days' ELSE interval '0' END
  FROM generate_series(1, 5060) g;
ANALYZE billing.stripe_events;
CREATE FUNCTION pg_temp.rows_read() RETURNS bigint LANGUAGE sql AS $$
	SELECT COALESCE(seq_tup_read, 0) + COALESCE(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables
	 WHERE relid = 'billing.stripe_events'::regclass
$$;

-- a batch of 10 of the 20 prunable ones: about 10 rows read (and each
-- updated row's key probe), not 5,000 (sequential scans off: a table this
-- small would be read whole to find 10 rows by their ids)
BEGIN;
SET LOCAL enable_seqscan = off;
SELECT pg_temp.rows_read() AS before \gset
SELECT billing._stripe_prune('2026-06-01', 10) AS pruned;
SELECT pg_temp.rows_read() - :before <= 30 AS read_only_what_it_prunes;
SELECT count(*) AS pruned_total, max(received_at) AS newest_pruned FROM billing.stripe_events WHERE payload IS NULL;
COMMIT;
-- the other 10, then nothing left: the last call reads (nearly) nothing
BEGIN;
SELECT billing._stripe_prune('2026-06-01', 10) AS pruned;
SELECT pg_temp.rows_read() AS before \gset
SELECT billing._stripe_prune('2026-06-01', 10) AS pruned;
SELECT pg_temp.rows_read() - :before <= 2 AS nothing_read_when_nothing_to_prune;
COMMIT;
-- pending events and recent ones keep their payloads
SELECT result, count(*) FILTER (WHERE payload IS NULL) AS pruned, count(*) FROM billing.stripe_events GROUP BY 1 ORDER BY 1;
