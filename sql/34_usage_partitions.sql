-- billing.usage_records is partitioned by UTC month: run_maintenance creates
-- the month's partition and the next two; a record of a month without one
-- lands in the default partition (an insert never fails) and moves into its
-- month's partition when that is created; with usage_record_retention set,
-- whole months past it are dropped once rolled up (default: keep).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
CREATE EXTENSION billing;
RESET client_min_messages;
SET timezone = 'America/New_York';  -- months are UTC months all the same
CREATE FUNCTION pg_temp.parts() RETURNS TABLE (partition text, records bigint)
LANGUAGE sql AS $$
	SELECT c.relname::text, (SELECT count(*) FROM billing.usage_records r WHERE r.tableoid = c.oid)
	  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
	 WHERE i.inhparent = 'billing.usage_records'::regclass ORDER BY 1
$$;
-- a fresh install has only the default partition; records of any time go in
SELECT (billing.record_usage('u1', 'api_calls', 5, '2026-05-31 23:30+00', 'k-may')).id IS NOT NULL AS may;  -- 19:30 in New York
SELECT (billing.record_usage('u1', 'api_calls', 7, '2026-06-01 00:30+00')).id IS NOT NULL AS june;
SELECT (billing.record_usage('u1', 'api_calls', 1, '0001-06-01 00:00+00')).id IS NOT NULL AS year_1;
SELECT (billing.record_usage('u1', 'api_calls', 1, '9999-12-31 23:59+00')).id IS NOT NULL AS year_9999;
SELECT * FROM pg_temp.parts();
-- maintenance on 20 May: May, June and July get partitions; the two records
-- of May and June (UTC) move out of the default partition (the rollup takes
-- year 1's record)
SELECT * FROM billing.run_maintenance('2026-05-20 12:00+00');
SELECT * FROM pg_temp.parts();
-- UTC months (shown in New York time)
SELECT pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_class c WHERE c.relname = 'usage_records_2026_05';
SELECT indexrelid::regclass AS index FROM pg_index WHERE indrelid = 'billing.usage_records_2026_05'::regclass ORDER BY 1;
SELECT * FROM billing._usage_partitions('2026-05-20 12:00+00');  -- again: nothing to do
-- the key still finds its record after the move: the same record, nothing new
SELECT quantity, recorded_at FROM billing.record_usage('u1', 'api_calls', 99, '2026-07-01', 'k-may');
SELECT count(*) AS records FROM billing.usage_records;
-- a key is unique per user across partitions, also for a direct insert (23505)
INSERT INTO billing.usage_records (user_id, metric, quantity, recorded_at, idempotency_key)
VALUES ('u1', 'api_calls', 1, '2026-07-02', 'k-may');
-- a record deleted outright frees its key
DELETE FROM billing.usage_records WHERE idempotency_key = 'k-may';
SELECT quantity FROM billing.record_usage('u1', 'api_calls', 3, '2026-05-31 23:30+00', 'k-may');

-- Retention: kept by default
SELECT * FROM billing._usage_partitions('2027-06-01 00:00+00');
SELECT count(*) AS partitions, sum(records) AS records FROM pg_temp.parts();
-- bad values change nothing
SELECT billing.configure('usage_record_retention', 'soon');
SELECT billing.configure('usage_record_retention', '-1 day');
SELECT billing.configure('usage_record_retention', '1 month');
-- on 15 Aug 2026 the cut-off is 15 Jul: May and June are past it, but their
-- records are not rolled up yet, so they stay; year 1's record, rolled up on
-- 20 May, goes
SELECT * FROM billing._usage_partitions('2026-08-15 00:00+00');
SELECT * FROM pg_temp.parts();
-- after the rollup, May's and June's partitions go; July (ends 1 Aug, after
-- the cut-off) and year 9999's record stay
SELECT billing.rollup_usage('2026-08-15 00:00+00') AS rolled_up;
SELECT * FROM billing._usage_partitions('2026-08-15 00:00+00');
SELECT * FROM pg_temp.parts();
-- the rolled-up totals remain: 3 (k-may) on 31 May, 7 on 1 Jun
SELECT billing.usage('u1', 'api_calls', '2026-05-31 00:00+00', '2026-06-02 00:00+00') AS may_june;
-- the dropped record's key is free again
SELECT count(*) AS keys FROM billing.usage_keys;

-- The daily totals are partitioned by UTC month too (a rollup writes into its
-- month's primary key, not into one over the whole history): the maintenance
-- and _usage_partitions calls above made May to October 2026 and June to
-- August 2027; each total is in its month's partition, year 1's in the default
SELECT c.relname AS partition, (SELECT count(*) FROM billing.usage_daily d WHERE d.tableoid = c.oid) AS totals
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = 'billing.usage_daily'::regclass ORDER BY 1;
SELECT pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_class c WHERE c.relname = 'usage_daily_2026_05';
SELECT indexrelid::regclass AS index FROM pg_index WHERE indrelid = 'billing.usage_daily_2026_05'::regclass ORDER BY 1;
-- a day of a month without a partition waits in the default partition ...
SELECT (billing.record_usage('u2', 'api_calls', 4, '2030-01-15 10:00+00')).quantity AS recorded;
SELECT billing.rollup_usage('2030-02-01 00:00+00') AS rolled_up;
SELECT tableoid::regclass AS partition, day, quantity FROM billing.usage_daily WHERE user_id = 'u2';
-- ... and moves into its month's partition when that is made (once)
SELECT billing._usage_daily_partition('2030-01-31 23:59+00') AS created,
	   billing._usage_daily_partition('2030-01-01 00:00+00') AS again;
SELECT tableoid::regclass AS partition, day, quantity FROM billing.usage_daily WHERE user_id = 'u2';
-- the next rollup adds to that total in the partition: 4 + 6 + 5 = 15 on 15 Jan
-- (the record of 1 Feb, 2, goes to the default partition: February has none)
SELECT (billing.record_usage('u2', 'api_calls', 6, '2030-01-15 23:00+00')).quantity AS recorded,
	   (billing.record_usage('u2', 'api_calls', 5, '2030-01-15 01:00+00')).quantity AS recorded,
	   (billing.record_usage('u2', 'api_calls', 2, '2030-02-01 00:00+00')).quantity AS recorded;
SELECT billing.rollup_usage('2030-03-01 00:00+00') AS rolled_up;
SELECT tableoid::regclass AS partition, day, quantity FROM billing.usage_daily WHERE user_id = 'u2' ORDER BY day;
SELECT billing.usage('u2', 'api_calls', '2030-01-01 00:00+00', '2030-03-01 00:00+00') AS jan_feb;
