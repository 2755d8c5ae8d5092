-- bench/reports: on the scale book (bench/scale/book.sql), the subscription
-- history (the book is loaded with the triggers off, so it is backfilled the
-- way the upgrade from 0.2.0 does it) and :usage usage records spread evenly
-- over the year before :'due' (until session 7 they took one second each from
-- its start: 23 days at 2,000,000, 116 at 10,000,000), :heavy of them for one
-- user, already rolled up.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SET maintenance_work_mem = '256MB';
SET work_mem = '64MB';
\echo '   subscription history'
SELECT billing._history_backfill() AS subscriptions_with_history;
\echo '   usage records (loaded as already rolled up) and their daily totals'
-- the monthly partitions run_maintenance would have made over the year
SELECT sum(p.count) AS partitions_made FROM generate_series(0, 13) m,
	   LATERAL billing._usage_partitions(:'due'::timestamptz - interval '365 days' + m * interval '1 month') p;
SET session_replication_role = replica;
INSERT INTO billing.usage_records (user_id, metric, quantity, recorded_at, rolled_up)
SELECT CASE WHEN g <= :heavy THEN 'heavy' ELSE (1 + (g::bigint * 7919) % 1000000)::text END,
	   CASE WHEN g % 4 = 0 THEN 'exports' ELSE 'api_calls' END, 1 + g % 7,
	   :'due'::timestamptz - interval '365 days' + (g::bigint * 31535999 / :usage) * interval '1 second', true
  FROM generate_series(1, :usage) g;
INSERT INTO billing.usage_daily (user_id, metric, day, quantity)
SELECT user_id, metric, (recorded_at AT TIME ZONE 'UTC')::date, sum(quantity)
  FROM billing.usage_records GROUP BY 1, 2, 3;
SET session_replication_role = origin;
VACUUM ANALYZE billing.subscription_history;
VACUUM ANALYZE billing.usage_records;
VACUUM ANALYZE billing.usage_daily;
SELECT (SELECT count(*) FROM billing.subscriptions) AS subscriptions,
	   (SELECT count(*) FROM billing.subscription_history) AS history_rows,
	   (SELECT count(*) FROM billing.usage_records) AS usage_records,
	   (SELECT count(*) FROM billing.usage_daily) AS daily_rows;
