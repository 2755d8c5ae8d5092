#!/usr/bin/env bash
# make bench: single-row inserts, 8 clients, measured alternately in one run
# against the same schema: bare tables, billing's C++ triggers, a hand-written
# PL/pgSQL counter-row trigger and a PL/pgSQL count(*) trigger. Prints ratios,
# then a race for the last free slots and the backend memory after inserting
# for thousands of owners.
set -euo pipefail
cd "$(dirname "$0")/.."
source test/cluster.sh
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-8}
make -s -j"$(nproc)" >/dev/null
# No checkpoint lands inside a measured run (it would burden whichever variant
# runs then); fsync and synchronous commit stay on.
cluster_start "shared_buffers = '512MB'" "max_wal_size = '32GB'" "checkpoint_timeout = '1h'" \
	"fsync = on" "synchronous_commit = on"
echo "== setting up (10,000 users, 1,000 rooms with 500 participants each, per variant)"
psql -X -q -v ON_ERROR_STOP=1 -f bench/schema.sql >/dev/null

tps() { # tps SCRIPT
	"$CLUSTER_BIN/pgbench" -n -c "$CLIENTS" -j 2 -T "$SECONDS_PER_RUN" -f "bench/$1.sql" 2>/dev/null |
		sed -nE 's/^tps = ([0-9.]+) .*without initial.*/\1/p'
}
declare -A total last per_round
for round in $(seq 1 "$ROUNDS"); do
	for workload in rooms participants hot_room; do
		for variant in bare billing plcounter plpgsql; do
			t=$(tps "${workload}_${variant}")
			total[$workload.$variant]=$(echo "${total[$workload.$variant]:-0} + $t" | bc -l)
			last[$variant]=$t
			printf '   round %d  %-13s %-8s %10.0f inserts/s\n' "$round" "$workload" "$variant" "$t"
		done
		per_round[$workload]="${per_round[$workload]:-} $(printf '%.2f' "$(echo "${last[billing]} / ${last[bare]}" | bc -l)")"
	done
done
echo
echo "== results: mean of $ROUNDS alternating rounds, $CLIENTS clients, ${SECONDS_PER_RUN}s each, fsync on"
echo "   (plcounter: PL/pgSQL trigger updating a counter row; plpgsql: PL/pgSQL trigger counting with count(*))"
printf '%-13s %8s %8s %10s %8s %13s %18s %16s\n' workload bare billing plcounter plpgsql billing/bare billing/plcounter billing/plpgsql
for workload in rooms participants hot_room; do
	b=$(echo "${total[$workload.bare]} / $ROUNDS" | bc -l)
	e=$(echo "${total[$workload.billing]} / $ROUNDS" | bc -l)
	c=$(echo "${total[$workload.plcounter]} / $ROUNDS" | bc -l)
	p=$(echo "${total[$workload.plpgsql]} / $ROUNDS" | bc -l)
	printf '%-13s %8.0f %8.0f %10.0f %8.0f %13.2f %18.2f %16.2f\n' "$workload" "$b" "$e" "$c" "$p" \
		"$(echo "$e / $b" | bc -l)" "$(echo "$e / $c" | bc -l)" "$(echo "$e / $p" | bc -l)"
done
for workload in rooms participants hot_room; do
	printf '%-13s billing/bare per round:%s\n' "$workload" "${per_round[$workload]}"
done
echo
# billing counts rooms in one table: the race's table takes over from the bench's
psql -X -q -At -c "SELECT billing.detach('rooms_billing')" -c "SELECT billing.attach_room_quota('rooms_race', 'owner_id')" >/dev/null
echo "== race: $CLIENTS clients inserting rooms for 100 Free owners (limit 3) for ${SECONDS_PER_RUN}s"
"$CLUSTER_BIN/pgbench" -n -c "$CLIENTS" -j 2 -T "$SECONDS_PER_RUN" -f bench/race.sql 2>/dev/null | grep -E '^number of transactions actually processed' || true
psql -X -q -At -c "SELECT 'rooms per owner after the race: max ' || max(n) || ', owners above 3: ' || count(*) FILTER (WHERE n > 3)
                   FROM (SELECT owner_id, count(*) AS n FROM rooms_race GROUP BY 1) x"
psql -X -q -At -c "SELECT 'owners over their limit anywhere (billing.over_quota): ' || count(*) FROM billing.over_quota()"

echo
echo "== memory: one session inserts a room for each of 9,900 owners, one statement each"
{
	echo "INSERT INTO rooms_billing (owner_id, name) SELECT 101, 'memory';"
	echo "SELECT 'backend memory after the first insert:  ' || pg_size_pretty(sum(total_bytes)) FROM pg_backend_memory_contexts;"
	for owner in $(seq 102 10000); do echo "INSERT INTO rooms_billing (owner_id, name) VALUES ($owner, 'memory');"; done
	echo "SELECT 'backend memory after 9,900 owners:      ' || pg_size_pretty(sum(total_bytes)) FROM pg_backend_memory_contexts;"
} | psql -X -q -At -v ON_ERROR_STOP=1
