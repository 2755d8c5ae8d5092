#!/usr/bin/env bash
# The reports benchmark (README, "Performance"): on the scale book with its
# subscription history and USAGE usage records,
#   1. each report for a past date against the query a DBA would write on the
#      history for the same figures, alternately (bench/reports/reports.sql);
#   2. the history trigger's cost on lifecycle writes (trigger_cost.sql);
#   3. rolling up 100,000 new usage records on top of USAGE already rolled up,
#      against the same on an empty database, alternately (with the WAL each
#      wrote, and the time of its search for quota counters with pending
#      usage, timed separately after it: until session 8 a scan of every
#      counter, now an index range on their usage_day);
#   4. billing.usage() for a user with HEAVY records against a plain indexed sum
#      (whole days, and noon to noon: two partial days from the records).
# Every figure is min / median / max over ROUNDS rounds.
#
#   bash bench/reports/run.sh [USERS]       # default 1,000,000 users
#   USAGE=10000000 HEAVY=500000 ROUNDS=5 bash bench/reports/run.sh 1000000
#   SECTIONS="3 4" bash bench/reports/run.sh 200000   # only the usage parts
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/scale/lib.sh
users=${1:-1000000}
usage=${USAGE:-10000000}
heavy=${HEAVY:-500000}
rounds=${ROUNDS:-5}
sections=" ${SECTIONS:-1 2 3 4} "
due='2026-12-01 00:00:00+00'

scale_cluster_start
echo "== the scale book ($users users), its history, $usage usage records   [$(uptime | sed "s/.*load/load/")]"
scale_book book "$users"
psql -X -q -d book -v usage="$usage" -v heavy="$heavy" -v due="$due" -f bench/reports/setup.sql
createdb empty
psql -X -q -d empty -c "CREATE EXTENSION billing"

if [[ $sections == *" 1 "* ]]; then
echo "== 1. reports for 15 Sep 2026 against the DBA's history queries, $rounds rounds   [$(uptime | sed "s/.*load/load/")]"
psql -X -q -d book -v rounds="$rounds" -v at='2026-09-15 00:00:00+00' -f bench/reports/reports.sql
fi

if [[ $sections == *" 2 "* ]]; then
echo "== 2. the history trigger on pause/resume, $rounds rounds   [$(uptime | sed "s/.*load/load/")]"
psql -X -q -d book -v rounds="$rounds" -f bench/reports/trigger_cost.sql
fi

if [[ $sections == *" 3 "* ]]; then
echo "== 3. rollup of 100,000 new records: on $usage rolled up vs on an empty history, $rounds rounds   [$(uptime | sed "s/.*load/load/")]"
add_new() { # add_new DB ROUND: 100,000 records of the last day before $due, through the usual insert path
	psql -X -q -d "$1" -c "INSERT INTO billing.usage_records (user_id, metric, quantity, recorded_at)
		SELECT (1 + (g * 31 + $2) % 1000000)::text, 'api_calls', 1, '$due'::timestamptz - interval '1 day'
			   + (g % 86400) * interval '1 second' FROM generate_series(1, 100000) g"
}
rollup_ms() { # rollup_ms DB: milliseconds of one rollup, and the WAL it wrote (bytes; the cluster is otherwise idle)
	psql -X -q -At -F ' ' -d "$1" <<SQL
SELECT pg_current_wal_insert_lsn() AS w0 \gset
SELECT extract(epoch FROM clock_timestamp() - t0) * 1000, pg_wal_lsn_diff(pg_current_wal_insert_lsn(), :'w0')
  FROM (SELECT clock_timestamp() AS t0) s, LATERAL (SELECT billing.rollup_usage('$due')) r;
SQL
}
counters_ms() { # counters_ms DB: milliseconds of the rollup's search for quota counters with pending usage (none here)
	# serial, as the rollup's (FOR UPDATE) is; the rollup's condition (an
	# index range on usage_day: the counters whose day it has not closed)
	psql -X -q -At -d "$1" <<SQL
SET max_parallel_workers_per_gather = 0;
SELECT clock_timestamp() AS t0 \gset
SELECT count(*) >= 0 AS found FROM billing.quota_counters q
 WHERE q.usage_day <= '$due'::date AND (q.usage_day < '$due'::date OR (q.usage_pending > 0 AND q.owner_id <> '')) \gset
SELECT extract(epoch FROM clock_timestamp() - :'t0') * 1000;
SQL
}
counters_size() { # counters_size DB: the quota counters the rollup searches among (rows, table size)
	psql -X -q -At -d "$1" -c "SELECT format('%s counters, %s (%s with a day not closed), indexes %s',
		count(*), pg_size_pretty(pg_table_size('billing.quota_counters')), count(usage_day),
		pg_size_pretty(pg_indexes_size('billing.quota_counters'))) FROM billing.quota_counters"
}
echo "   quota counters: book $(counters_size book); empty $(counters_size empty)"
results=$(mktemp)
for r in $(seq 1 "$rounds"); do
	add_new empty "$r"
	add_new book "$r"
	echo "empty $r $(rollup_ms empty) $(counters_ms empty)" >>"$results"
	echo "history $r $(rollup_ms book) $(counters_ms book)" >>"$results"
done
psql -X -q -d empty -v ON_ERROR_STOP=1 <<SQL
CREATE TEMP TABLE t (variant text, round int, ms double precision, wal numeric, counters_ms double precision);
\copy t FROM '$results' WITH (DELIMITER ' ')
SELECT variant, format('%s / %s / %s', round(min(ms)), round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)), round(max(ms)))
	   AS ms_min_median_max, round(avg(wal) / 1048576, 1) AS wal_mb_mean,
	   format('%s / %s / %s', round(min(counters_ms)), round(percentile_cont(0.5) WITHIN GROUP (ORDER BY counters_ms)),
			  round(max(counters_ms))) AS counters_search_ms
  FROM t GROUP BY variant ORDER BY variant DESC;
SELECT round((SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FROM t WHERE variant = 'history')::numeric
		   / (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FROM t WHERE variant = 'empty')::numeric, 2)
	   AS median_ratio_history_to_empty;
-- the rollup without its search of the quota counters (until session 8 a
-- scan of every counter: the book's 1,200,000, the empty database's none;
-- now an index range on usage_day), per round
SELECT round((SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms - counters_ms) FROM t WHERE variant = 'history')::numeric
		   / (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms - counters_ms) FROM t WHERE variant = 'empty')::numeric, 2)
	   AS median_ratio_without_counters_search;
SQL
rm -f "$results"
fi

if [[ $sections == *" 4 "* ]]; then
echo "== 4. usage() for a user with $heavy records against a plain indexed sum, $rounds rounds   [$(uptime | sed "s/.*load/load/")]"
psql -X -q -d book -v rounds="$rounds" -v due="$due" <<'SQL'
\set ON_ERROR_STOP 1
\i bench/reports/lib.sql
SET bench.rounds = :rounds;
SET bench.due = :'due';
CREATE TEMP TABLE t (variant text, ms double precision);
DO $$
DECLARE
	d timestamptz := current_setting('bench.due')::timestamptz;
	span text := format('%L::timestamptz, %L::timestamptz', d - interval '365 days', d);
BEGIN
	FOR r IN 1 .. current_setting('bench.rounds')::int LOOP
		INSERT INTO t VALUES
			('usage()', pg_temp.ms_scalar(format('SELECT billing.usage(''heavy'', ''api_calls'', %s)', span))),
			-- bounds at noon: two partial days read from the records (W2)
			('usage(), noon to noon', pg_temp.ms_scalar(format('SELECT billing.usage(''heavy'', ''api_calls'', %L::timestamptz, %L::timestamptz)',
				d - interval '365 days' + interval '12 hours', d - interval '12 hours'))),
			('plain sum', pg_temp.ms_scalar(format('SELECT sum(quantity) FROM billing.usage_records WHERE user_id = ''heavy''
				AND metric = ''api_calls'' AND recorded_at >= %L AND recorded_at < %L', d - interval '365 days', d)));
	END LOOP;
END
$$;
SELECT variant, format('%s / %s / %s', round(min(ms)::numeric, 1), round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
					   round(max(ms)::numeric, 1)) AS ms_min_median_max
  FROM t GROUP BY variant ORDER BY variant DESC;
SQL
fi
echo "== done   [$(uptime | sed "s/.*load/load/")]"
