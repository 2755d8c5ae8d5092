-- Scale audit (session 10): the usage insert trigger (billing._usage_recorded)
-- finds a new record's key by one probe of usage_keys' primary key. The
-- session keeps the trigger's plan: planned as an anti join for a first
-- statement of many records, every later record_usage in the session read
-- every key ever stored (165 ms at 200,000 users, bench/scale/audit.py).
-- Counted as the rows read from billing.usage_keys (pg_stat_xact_user_tables:
-- sequential and index fetches alike).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
CREATE FUNCTION pg_temp.keys_read() RETURNS bigint LANGUAGE sql AS $$
	SELECT COALESCE(seq_tup_read, 0) + COALESCE(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables
	 WHERE relid = 'billing.usage_keys'::regclass
$$;
-- the session's first usage insert: 3,000 records with keys at once (an import)
INSERT INTO billing.usage_records (user_id, metric, quantity, recorded_at, idempotency_key)
SELECT 'imported-' || g, 'api_calls', 1, '2026-03-01', 'k-' || g FROM generate_series(1, 3000) g;
-- then single records with keys, in the same session: a probe each, not 3,000 keys read
BEGIN;
SELECT pg_temp.keys_read() AS before \gset
SELECT quantity FROM billing.record_usage('u1', 'api_calls', 5, '2026-03-02', 'fresh-1');
INSERT INTO billing.usage_records (user_id, metric, quantity, recorded_at, idempotency_key)
VALUES ('u2', 'api_calls', 7, '2026-03-02', 'direct-1');
SELECT pg_temp.keys_read() - :before <= 10 AS probed_not_scanned;
COMMIT;
-- what the trigger keeps: the key of a record inserted directly, a repeated
-- key of record_usage returns the first record, a key another record holds
-- is refused as a unique index would refuse it
SELECT count(*) AS keys, count(*) FILTER (WHERE idempotency_key IN ('fresh-1', 'direct-1')) AS new_keys FROM billing.usage_keys;
SELECT quantity FROM billing.record_usage('u1', 'api_calls', 99, '2026-03-02', 'fresh-1');
\set VERBOSITY sqlstate
INSERT INTO billing.usage_records (user_id, metric, quantity, recorded_at, idempotency_key)
VALUES ('u2', 'api_calls', 1, '2026-03-03', 'direct-1');
\set VERBOSITY default
SELECT user_id, sum(quantity) FROM billing.usage_records WHERE user_id IN ('u1', 'u2') GROUP BY 1 ORDER BY 1;
