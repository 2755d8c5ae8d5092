#!/usr/bin/env bash
# Instructions (callgrind) and WAL bytes per lifecycle call, billing's call
# against the plain statement: wall-clock ratios are noise on a loaded
# machine, callgrind's instruction counts are not.
#
#   bash bench/scale/callgrind.sh setup            # once: a 20,000-user book, kept
#   bash bench/scale/callgrind.sh OP VARIANT [N1 N2]
#     OP: start_trial | subscribe | record_payment | cancel; VARIANT: billing | plain
#     or OP fresh_room, VARIANT billing | bare: the first participant into a room
#     nobody has joined, against the bare insert (part 3; USERS=10000 for its book)
#
# Each measurement copies the kept (stopped) data directory, runs
# `postgres --single` under callgrind with 3 warm-up calls and then N calls
# (prepared, as pgbench -M prepared runs them; the plain variant with
# billing's row triggers off, as run.sh does), once with N1 and once with N2
# calls: (instructions(N2) - instructions(N1)) / (N2 - N1) is one call's,
# start-up and warm-up cancel out. WAL bytes are pg_current_wal_lsn's
# difference over the N2 calls (full-page images included: the copy starts
# right after a checkpoint, as run.sh's measured rounds do). After a rebuild,
# `make install DESTDIR=$STATE/install` puts the new library into the kept
# installation (a change to SQL needs `setup` again).
set -euo pipefail
B=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE_FILE=${CALLGRIND_STATE:-/tmp/billing-callgrind.state}
if [ "${1:-}" = setup ]; then
	export KEEP_CLUSTER=1
	source "$B/lib.sh"
	scale_cluster_start "autovacuum = off"
	scale_book book "${USERS:-20000}"
	psql -X -q -d book -f "$B/pools.sql" >/dev/null
	psql -X -q -d book -c CHECKPOINT
	as_cluster_owner "$CLUSTER_BIN/pg_ctl" -D "$CLUSTER_DATA" -m fast -w stop >/dev/null
	cp -a "$CLUSTER_DATA" "$CLUSTER_TMP/data.template"
	echo "$CLUSTER_TMP" >"$STATE_FILE"
	echo "kept in $CLUSTER_TMP"
	exit 0
fi
op=$1 variant=$2 n1=${3:-10} n2=${4:-60}
STATE=$(cat "$STATE_FILE")
BIN=$STATE/install$(pg_config --bindir)
W=$(mktemp -d /tmp/billing-callgrind.XXXXXX)
chmod 755 "$W"
trap 'rm -rf "$W"' EXIT
stmt=$(grep -v '^--' "$B/${op}_${variant}.sql")
run() {
	local n=$1 tag=$2
	rm -rf "$W/data"
	cp -a "$STATE/data.template" "$W/data"
	{
		if [ "$variant" = plain ]; then
			printf 'ALTER TABLE billing.subscriptions DISABLE TRIGGER USER; ALTER TABLE billing.invoices DISABLE TRIGGER USER;'
			printf ' ALTER TABLE billing.payments DISABLE TRIGGER USER;\n\n'
		fi
		printf 'PREPARE q AS %s\n\n' "$stmt"
		for _ in 1 2 3; do printf 'EXECUTE q;\n\n'; done
		printf "SELECT 'LSN0', pg_current_wal_lsn();\n\n"
		for _ in $(seq "$n"); do printf 'EXECUTE q;\n\n'; done
		printf "SELECT 'LSN1', pg_current_wal_lsn();\n\n"
	} >"$W/in.$tag.sql"
	if [ "$(id -u)" -eq 0 ]; then chown -R postgres "$W"; fi
	local as=()
	[ "$(id -u)" -eq 0 ] && as=(runuser -u postgres --)
	"${as[@]}" valgrind --tool=callgrind --callgrind-out-file="$W/cg.$tag" "$BIN/postgres" --single -j -D "$W/data" \
		-c shared_buffers=128MB -c fsync=off book <"$W/in.$tag.sql" >"$W/out.$tag" 2>"$W/err.$tag"
	if grep -q ERROR "$W/out.$tag" "$W/err.$tag"; then
		grep -m3 ERROR "$W/out.$tag" "$W/err.$tag" >&2
		exit 1
	fi
}
run "$n1" a
run "$n2" b
python3 - "$op" "$variant" "$n1" "$n2" "$W" <<'PY'
import re, sys
op, var, n1, n2, w = sys.argv[1:]
n1, n2 = int(n1), int(n2)
def ir(t):
    return int(re.search(r'^summary: (\d+)', open(f"{w}/cg.{t}").read(), re.M).group(1))
def lsn(s):
    a, b = s.split('/')
    return (int(a, 16) << 32) + int(b, 16)
l = re.findall(r'pg_current_wal_lsn = "([0-9A-F/]+)"', open(f"{w}/out.b").read())
print(f"{op:15s} {var:8s} instructions/call {(ir('b') - ir('a')) / (n2 - n1):10.0f}  WAL bytes/call {(lsn(l[1]) - lsn(l[0])) / n2:7.0f}")
PY
