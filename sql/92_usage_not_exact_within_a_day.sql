-- README walk (session 9, independent tester), finding W2, fixed.
-- SPEC §4: billing.usage(user_id, metric, from, to) "answers from the rollups
-- plus the not-yet-rolled-up tail, so it is always exact". It counted whole
-- UTC days, from `from`'s day (inclusive) to `to`'s day (exclusive),
-- whatever the times: a period inside one day answered 0 although a record
-- lay inside it, and a period starting after a record on the same day
-- counted it, silently. Now the whole UTC days inside [from, to) come from
-- the daily totals (rollups plus the tail) and a partial day at either edge
-- from the usage records of that day (the core's SplitUsageSpan decides
-- which days are which). A partial day that cannot be answered exactly is
-- refused (22023): a metric the quota triggers count per day only, or a day
-- whose records retention has dropped.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY sqlstate
SELECT quantity FROM billing.record_usage('ud1', 'api_calls', 3, '2026-01-05 10:00');
-- a record at 10:00 lies inside [01:00, 23:00) of the same day
SELECT billing.usage('ud1', 'api_calls', '2026-01-05 01:00', '2026-01-05 23:00') AS within_the_day;
-- and not inside [11:00, next midnight)
SELECT billing.usage('ud1', 'api_calls', '2026-01-05 11:00', '2026-01-06 00:00') AS after_the_record;
-- whole days agree either way
SELECT billing.usage('ud1', 'api_calls', '2026-01-05', '2026-01-06') AS the_whole_day;

-- == Several days: 5 Jan 10:00 (3), 5 Jan 23:59:59.999999 (5), 6 Jan 00:00 (7),
-- 6 Jan 12:00 (11), 7 Jan 08:00 (13), 8 Jan 00:00 (17); another user and
-- another metric, and a soft-deleted record (1000), on the same days
SELECT count(*) AS recorded FROM (
	SELECT billing.record_usage('ud1', 'api_calls', q, t::timestamptz)
	  FROM (VALUES (5, '2026-01-05 23:59:59.999999'), (7, '2026-01-06 00:00'), (11, '2026-01-06 12:00'),
				   (13, '2026-01-07 08:00'), (17, '2026-01-08 00:00')) v(q, t)
	UNION ALL SELECT billing.record_usage('ud2', 'api_calls', 100, '2026-01-06 12:00')
	UNION ALL SELECT billing.record_usage('ud1', 'exports', 100, '2026-01-06 12:00')
	UNION ALL SELECT billing.record_usage('ud1', 'api_calls', 1000, '2026-01-06 13:00', 'to-delete')) r;
UPDATE billing.usage_records SET deleted_at = '2026-01-06 14:00' WHERE idempotency_key = 'to-delete';
CREATE TABLE periods (n int PRIMARY KEY, from_time timestamptz, to_time timestamptz, what text);
INSERT INTO periods VALUES
	(1, '2026-01-05 01:00', '2026-01-05 23:00', 'inside one day: 3'),
	(2, '2026-01-05 10:00', '2026-01-05 10:00:00.000001', 'a record exactly at from: 3'),
	(3, '2026-01-05 09:00', '2026-01-05 10:00', 'a record exactly at to: not counted, 0'),
	(4, '2026-01-06 00:00', '2026-01-06 12:00', 'from at midnight, to inside the day (at a record): 7'),
	(5, '2026-01-05 12:00', '2026-01-07 09:00', 'across days: 5 + 7 + 11 + 13 = 36'),
	(6, '2026-01-05 23:59:59.999999', '2026-01-06 00:00:00.000001', 'a microsecond each side of midnight: 5 + 7'),
	(7, '2026-01-05 00:00', '2026-01-08 00:00', 'midnight to midnight: 3 + 5 + 7 + 11 + 13 = 39'),
	(8, '2026-01-05 00:00', '2026-01-08 00:00:00.000001', 'and a microsecond more: 39 + 17'),
	(9, '2026-01-06 12:00', '2026-01-08 00:00', '11 + 13 (the deleted one not counted) = 24'),
	(10, '2026-01-01 00:00', '2026-01-31 00:00', 'the month: 56');
CREATE FUNCTION pg_temp.answers() RETURNS TABLE (n int, usage bigint, what text)
LANGUAGE sql AS $$ SELECT p.n, billing.usage('ud1', 'api_calls', p.from_time, p.to_time), p.what FROM periods p ORDER BY p.n $$;
-- the tail, nothing rolled up yet
SELECT * FROM pg_temp.answers();
CREATE TABLE before_rollup AS SELECT * FROM pg_temp.answers();
-- rolled up to 7 Jan 06:00: 5 and 6 Jan are daily totals, the rest pending;
-- then everything: every answer the same
SELECT billing.rollup_usage('2026-01-07 06:00') AS rolled_up;
SELECT a.n, a.usage FROM pg_temp.answers() a JOIN before_rollup b USING (n) WHERE a.usage IS DISTINCT FROM b.usage;
SELECT billing.rollup_usage('2026-02-01') AS rolled_up;
SELECT count(*) AS pending FROM billing.usage_pending;
SELECT a.n, a.usage FROM pg_temp.answers() a JOIN before_rollup b USING (n) WHERE a.usage IS DISTINCT FROM b.usage;
-- bounds given in another time zone: 05:30 in Kolkata is UTC midnight (a whole day)
SET timezone = 'Asia/Kolkata';
SELECT billing.usage('ud1', 'api_calls', '2026-01-06 05:30+05:30', '2026-01-07 05:30+05:30') AS sixth_of_january;  -- 7 + 11
SELECT billing.usage('ud1', 'api_calls', '2026-01-06 00:00+05:30', '2026-01-07 00:00+05:30') AS kolkata_day;  -- 5 + 7 + 11
SET timezone = 'UTC';

-- == The partial days are index ranges on the records' (user_id, metric,
-- recorded_at) index of the edge days' partition only
SELECT count(*) >= 0 AS maintained FROM billing.run_maintenance('2026-01-05');
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT sum(r.quantity) FROM billing.usage_records r
 WHERE r.user_id = 'ud1' AND r.metric = 'api_calls' AND r.recorded_at >= '2026-01-05 12:00' AND r.recorded_at < '2026-01-06 00:00'
   AND r.deleted_at IS NULL;
RESET enable_seqscan;
SELECT * FROM pg_temp.answers();

-- == A metric the quota triggers count per UTC day (no time of day): whole
-- days only; a partial day is refused, with a hint
SELECT quantity FROM billing.record_usage('ud1', 'rooms_created', 2, '2026-01-05 10:00');
SELECT billing.usage('ud1', 'rooms_created', '2026-01-05', '2026-01-06') AS whole_day;
\set VERBOSITY default
SELECT billing.usage('ud1', 'rooms_created', '2026-01-05 01:00', '2026-01-06') AS partial_day;
\set VERBOSITY sqlstate
SELECT billing.usage('ud1', 'participants_joined', '2026-01-05', '2026-01-06 01:00') AS partial_day;

-- == Retention: a partial day whose records were dropped is refused (the
-- daily totals answer its whole days still)
-- a record in the default partition (2020 has no partition), rolled up
SELECT quantity FROM billing.record_usage('ud1', 'api_calls', 19, '2020-03-05 12:00');
SELECT billing.rollup_usage('2026-02-01') AS rolled_up;
SELECT billing.configure('usage_record_retention', '1 month');
-- maintenance on 5 Jan: cut-off 5 Dec 2025, the 2020 record is deleted
SELECT count(*) >= 0 AS maintained FROM billing.run_maintenance('2026-01-05');
SELECT count(*) AS records_of_2020 FROM billing.usage_records WHERE recorded_at < '2021-01-01';
SELECT value FROM billing.settings WHERE key = '_usage_records_dropped_before';
SELECT billing.usage('ud1', 'api_calls', '2020-03-05', '2020-03-06') AS whole_day_kept;  -- 19
SELECT billing.usage('ud1', 'api_calls', '2020-03-05 12:00', '2020-03-06') AS dropped_day;  -- 22023
SELECT billing.usage('ud1', 'api_calls', '2020-03-06 12:00', '2020-03-07') AS a_day_after;  -- 0, answered
SELECT billing.usage('ud1', 'api_calls', '2026-01-05 01:00', '2026-01-05 23:00') AS january_kept;  -- 3
-- maintenance on 15 Mar: cut-off 15 Feb, January's partition is dropped
SELECT count(*) >= 0 AS maintained FROM billing.run_maintenance('2026-03-15');
SELECT to_regclass('billing.usage_records_2026_01') AS january, to_regclass('billing.usage_records_2026_02') AS february;
SELECT value FROM billing.settings WHERE key = '_usage_records_dropped_before';
SELECT billing.usage('ud1', 'api_calls', '2026-01-05', '2026-01-06') AS whole_day_kept;  -- 3 + 5
\set VERBOSITY default
SELECT billing.usage('ud1', 'api_calls', '2026-01-05 01:00', '2026-01-05 23:00') AS dropped_day;
\set VERBOSITY sqlstate
SELECT billing.usage('ud1', 'api_calls', '2026-01-05 00:00', '2026-01-31 00:00:01') AS dropped_tail;
SELECT billing.usage('ud1', 'api_calls', '2026-01-01', '2026-02-01 12:00') AS whole_january_and_a_kept_day;  -- 56
-- a maintenance run with an earlier `at` never moves the horizon back
SELECT count(*) >= 0 AS maintained FROM billing.run_maintenance('2026-01-05');
SELECT value FROM billing.settings WHERE key = '_usage_records_dropped_before';

DROP TABLE periods, before_rollup;
