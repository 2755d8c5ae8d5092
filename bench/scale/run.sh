#!/usr/bin/env bash
# make bench-scale: builds the scale book (USERS, default 1,000,000) on a
# throwaway cluster and measures, each path against its baseline alternately
# in one run (ratios printed with min/median/max over the rounds):
#   1. start_trial / subscribe / record_payment / cancel vs the same row
#      changes in plain SQL with an audit row each (pgbench -M prepared);
#   2. start_trial for 100,000 users in one statement vs 1,000;
#   3. the first participant into a room nobody joined yet, at 10,000 and at
#      USERS rooms, and steady-state participant inserts, vs bare inserts;
#   4. run_maintenance over the book's backlog (15% of USERS due at once, 3%
#      more past due): one call (rate, peak private memory of the backend),
#      then committed batches (rate, first vs last batches).
# REUSE=1 with PGHOST/PGPORT of a running cluster holding the book and pools
# measures again without building them; PARTS="3 4" runs only those parts.
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/scale/lib.sh
USERS=${USERS:-1000000}
ROUNDS=${ROUNDS:-3}
LIFECYCLE_TX=${LIFECYCLE_TX:-1000}   # per client, 2 clients
BULK=${BULK:-100000}
FRESH_TX=${FRESH_TX:-500}
STEADY_SECONDS=${STEADY_SECONDS:-10}
MAINT_ONE=${MAINT_ONE:-20000}
MAINT_BATCHES=${MAINT_BATCHES:-10}
MAINTENANCE_BATCH=${MAINTENANCE_BATCH:-5000}
PARTS=${PARTS:-1 2 3 4}   # which of the measurements below, in this order
B=bench/scale
T0="2026-12-01 00:00+00"

# stats NAME VALUES...: min / median / max of the values
stats() {
	local name=$1
	shift
	printf '%s\n' "$@" | sort -g | awk -v name="$name" '{ v[NR] = $1 } END {
		m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		printf "%-34s min %6.2f  median %6.2f  max %6.2f   (%d rounds)\n", name, v[1], m, v[NR], NR }'
}
tps() { # tps DB SCRIPT PGBENCH-ARGS...
	local db=$1 script=$2
	shift 2
	"$CLUSTER_BIN/pgbench" -n -M prepared "$@" -f "$B/$script.sql" "$db" 2>/tmp/pgbench.err |
		sed -nE 's/^tps = ([0-9.]+) .*without initial.*/\1/p' | grep . || { cat /tmp/pgbench.err >&2; return 1; }
}
ratio() { echo "$1 / $2" | bc -l; }
q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }

if [ -n "${REUSE:-}" ]; then
	# a running cluster that holds the book and the pools (PGHOST/PGPORT set)
	CLUSTER_BIN=$(pg_config --bindir)
	echo "== reusing the book at $PGHOST"
else
	scale_cluster_start "max_connections = 40"
	echo "== the book"
	scale_book book "$USERS"
	scale_book book10k 10000
	for db in book book10k; do q -d "$db" -f "$B/pools.sql" >/dev/null; done
fi
hot=$(q -d book -c "SELECT LEAST(10000, count(*) / 5) FROM app.rooms")
q -d book -c "CHECKPOINT"

part_1() {
echo
echo "== 1. lifecycle calls vs the same row changes in plain SQL (2 clients x $LIFECYCLE_TX each, $ROUNDS rounds)"
# plain SQL runs with billing's row triggers (audit, updated_at, quota cache)
# off; it writes its audit rows itself. Foreign keys stay on.
triggers() { q -d book -c "ALTER TABLE billing.subscriptions $1 TRIGGER USER; ALTER TABLE billing.invoices $1 TRIGGER USER; ALTER TABLE billing.payments $1 TRIGGER USER"; }
summary=()
for op in start_trial subscribe record_payment cancel; do
	ratios=()
	for round in $(seq 1 "$ROUNDS"); do
		b=$(tps book "${op}_billing" -c 2 -j 2 -t "$LIFECYCLE_TX")
		triggers DISABLE
		p=$(tps book "${op}_plain" -c 2 -j 2 -t "$LIFECYCLE_TX")
		triggers ENABLE
		ratios+=("$(ratio "$b" "$p")")
		printf '   round %d  %-15s billing %7.0f/s  plain SQL %7.0f/s  ratio %.2f\n' "$round" "$op" "$b" "$p" "${ratios[-1]}"
	done
	summary+=("$(stats "$op billing/plain" "${ratios[@]}")")
done
printf '%s\n' "${summary[@]}"

}
part_2() {
echo
echo "== 2. start_trial for many users in one statement (1,000 / $BULK / 1,000)"
bulk() { # bulk N: seconds per user, for N Free users from the bulk pool
	local n=$1 start
	start=$(q -d book -c "SELECT nextval('bench.bulk_seq')")
	q -d book -c "SELECT setval('bench.bulk_seq', $start + $n - 1)" >/dev/null
	q -d book -c "\\timing on" -c "SELECT count(billing.start_trial(f.user_id, 'pro_monthly', '$T0'))
		FROM bench.free f WHERE f.n BETWEEN $start AND $start + $n - 1" |
		sed -nE 's/^Time: ([0-9.]+) ms.*/\1/p' | awk -v n="$n" '{ printf "%.4f\n", $1 / n }'
}
small1=$(bulk 1000)
large=$(bulk "$BULK")
small2=$(bulk 1000)
small=$(echo "($small1 + $small2) / 2" | bc -l)
printf '   1,000 users: %.3f ms/user, then %.3f ms/user; %d users in one statement: %.3f ms/user\n' "$small1" "$small2" "$BULK" "$large"
printf '   per user, %d vs 1,000: %.2f\n' "$BULK" "$(ratio "$large" "$small")"

}
part_3() {
echo
echo "== 3. quota: the first participant into a fresh room ($FRESH_TX per round), steady state (4 clients, ${STEADY_SECONDS}s)"
for db in book10k book; do
	rooms=$(q -d "$db" -c "SELECT count(*) FROM app.rooms")
	ratios=()
	for round in $(seq 1 "$ROUNDS"); do
		b=$(tps "$db" fresh_room_billing -c 1 -t "$FRESH_TX")
		r=$(tps "$db" fresh_room_bare -c 1 -t "$FRESH_TX")
		ratios+=("$(ratio "$b" "$r")")
		printf '   round %d  %8d rooms  billing %7.0f/s  bare %7.0f/s  ratio %.3f\n' "$round" "$rooms" "$b" "$r" "${ratios[-1]}"
	done
	stats "fresh room, $rooms rooms, billing/bare" "${ratios[@]}"
done
ratios=()
for round in $(seq 1 "$ROUNDS"); do
	b=$(tps book steady_billing -c 4 -j 2 -T "$STEADY_SECONDS" -D hot="$hot")
	r=$(tps book steady_bare -c 4 -j 2 -T "$STEADY_SECONDS" -D hot="$hot")
	ratios+=("$(ratio "$b" "$r")")
	printf '   round %d  steady state (%d rooms)  billing %7.0f/s  bare %7.0f/s  ratio %.2f\n' "$round" "$hot" "$b" "$r" "${ratios[-1]}"
	# the round's rows go again (through the quota trigger, outside the
	# timing): on a quiet machine three rounds filled some rooms to Free's 50
	q -d book -c "DELETE FROM app.participants WHERE name = 'steady'" -c "DELETE FROM bench.participants_bare WHERE name = 'steady'" >/dev/null
done
stats "steady-state inserts billing/bare" "${ratios[@]}"

}
part_4() {
echo
echo "== 4. run_maintenance over the book's backlog at the due moment"
at="$T0"
q -d book -c "VACUUM ANALYZE billing.subscriptions" -c "CHECKPOINT"
due=$(q -d book -c "SELECT count(*) FROM billing.subscriptions WHERE billing._due_at(status, current_period_end, trial_end, started_at) <= '$at' AND ended_at IS NULL AND deleted_at IS NULL")
echo "   due at $at: $due"
# one call over MAINT_ONE of them, its backend's private memory sampled
first=$MAINT_ONE
# (and its CPU time: user + system ticks from /proc, read while it sleeps
# before and after the call, so a loaded machine's figure can be compared)
q -d book -c "SELECT pg_sleep(1)" -c "\\timing on" -c "SELECT sum(count) FILTER (WHERE action = 'subscriptions_processed') FROM billing.run_maintenance('$at', $first)" -c "SELECT pg_sleep(1)" >/tmp/scale_one_call.out &
call=$!
sleep 0.5
pid=$(q -d book -c "SELECT pid FROM pg_stat_activity WHERE query LIKE '%pg_sleep(1)%' AND pid <> pg_backend_pid()")
ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo ""; }
cpu0=$(ticks)
cpu1=$cpu0
peak=0
while kill -0 "$call" 2>/dev/null; do
	kb=$(awk '/^RssAnon/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
	[ "${kb:-0}" -gt "$peak" ] && peak=$kb
	t=$(ticks)
	[ -n "$t" ] && cpu1=$t
	sleep 0.2
done
wait "$call"
ms=$(sed -nE 's/^Time: ([0-9.]+) ms.*/\1/p' /tmp/scale_one_call.out | head -1)
done_one=$(grep -E '^[0-9]+$' /tmp/scale_one_call.out | head -1)
cpu_s=$(echo "($cpu1 - $cpu0) / $(getconf CLK_TCK)" | bc -l)
printf '   one call, %d subscriptions: %.1f s, %.0f subscriptions/s, peak private memory of the backend %d MB; backend CPU %.1f s (%.0f subscriptions per CPU second)\n' \
	"$done_one" "$(echo "$ms / 1000" | bc -l)" "$(echo "$done_one * 1000 / $ms" | bc -l)" "$((peak / 1024))" "$cpu_s" \
	"$(echo "$done_one / ($cpu_s + 0.000001)" | bc -l)"
# then committed batches, as run_maintenance_batches does, each timed
batches=$(seq 1 "$MAINT_BATCHES" | while read -r _; do
	echo "SELECT sum(count) FILTER (WHERE action = 'subscriptions_processed') FROM billing.run_maintenance('$at', $MAINTENANCE_BATCH);"
done | q -d book -c "\\timing on" -f - | sed -nE 's/^Time: ([0-9.]+) ms.*/T \1/p; s/^([0-9]+)$/N \1/p')
echo "$batches" | awk -v batch="$MAINTENANCE_BATCH" '
	$1 == "N" { n += $2 } $1 == "T" { t[++nt] = $2; sum += $2 }
	END {
		k = (nt >= 20) ? 10 : int(nt / 2); if (k < 1) k = 1
		for (i = 1; i <= k; i++) { a += t[i]; b += t[nt - k + i] }
		printf "   %d subscriptions in %d batches of %d: %.0f subscriptions/s; first %d batches %.0f ms each, last %d %.0f ms each (last/first %.2f)\n",
			n, nt, batch, n * 1000 / sum, k, a / k, k, b / k, (b / k) / (a / k) }'
left=$(q -d book -c "SELECT count(*) FROM billing.subscriptions WHERE billing._due_at(status, current_period_end, trial_end, started_at) <= '$at' AND ended_at IS NULL AND deleted_at IS NULL")
echo "   still due afterwards: $left"
}
# the machine's load beside each part's figures (ratios are noisy under load)
for p in $PARTS; do
	echo "   load before part $p: $(uptime | sed 's/.*load average/load average/')"
	"part_$p"
done
echo "   load at the end: $(uptime | sed 's/.*load average/load average/')"
