-- Scale audit (session 10): the usage update and delete trigger
-- (billing._usage_changed) plans each of its statements for the statement
-- that fired it. The session kept the plans of its first update or delete:
-- after one of many records, an update of one record joined the whole of
-- usage_keys and usage_pending (bench/scale/audit.py: 4 ms at 20,000 users,
-- 53 ms at 200,000). Counted as the rows read from billing.usage_keys
-- (pg_stat_xact_user_tables: sequential and index fetches alike).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
CREATE FUNCTION pg_temp.keys_read() RETURNS bigint LANGUAGE sql AS $$
	SELECT COALESCE(seq_tup_read, 0) + COALESCE(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables
	 WHERE relid = 'billing.usage_keys'::regclass
$$;
SELECT count(*) FROM generate_series(1, 3000) g,
	LATERAL billing.record_usage('u-' || g, 'api_calls', 1, '2026-03-01', 'k-' || g);
-- the session's first update and delete of usage records: many at once
UPDATE billing.usage_records SET quantity = quantity + 1 WHERE user_id LIKE 'u-1%';
DELETE FROM billing.usage_records WHERE user_id LIKE 'u-2%';
-- then one record at a time: a probe each, not every key read
BEGIN;
SELECT pg_temp.keys_read() AS before \gset
UPDATE billing.usage_records SET quantity = quantity + 1 WHERE idempotency_key = 'k-3000';
UPDATE billing.usage_records SET idempotency_key = 'k-moved' WHERE idempotency_key = 'k-999';
DELETE FROM billing.usage_records WHERE idempotency_key = 'k-998';
SELECT pg_temp.keys_read() - :before <= 20 AS probed_not_scanned;
COMMIT;
-- what the trigger keeps: the moved key, the deleted record's key freed,
-- the pending rows as the records are
SELECT count(*) AS keys, count(*) FILTER (WHERE idempotency_key = 'k-moved') AS moved,
	   count(*) FILTER (WHERE idempotency_key IN ('k-999', 'k-998')) AS gone FROM billing.usage_keys;
SELECT count(*) AS pending, sum(quantity) AS quantity FROM billing.usage_pending;
SELECT count(*) AS records, sum(quantity) AS quantity FROM billing.usage_records;
