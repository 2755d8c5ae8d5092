#!/usr/bin/env bash
# What one due subscription costs run_maintenance (issue 13): instructions
# (callgrind), WAL records by kind and B-tree leaf inserts by index, per
# subscription processed, on the stopped 20,000-user book callgrind.sh keeps.
#
#   CALLGRIND_STATE=/tmp/mine.state bash bench/scale/callgrind.sh setup   # once per build of the SQL
#   CALLGRIND_STATE=/tmp/mine.state bash bench/scale/maintenance_cost.sh [N1 N2]
#
# Two copies of the book each run run_maintenance(due, N) under callgrind in
# `postgres --single` (N1 = 1000 and N2 = 3000 due subscriptions: the first
# pages of the backlog, about 5 renewals to a grace end); the differences
# divided by N2 - N1 are one processed subscription's (start-up, the first
# page's plans and the run's fixed statements cancel out). WAL records are
# pg_waldump's over the call (wal_keep_size keeps the segments).
set -euo pipefail
STATE=$(cat "${CALLGRIND_STATE:-/tmp/billing-callgrind.state}")
n1=${1:-1000} n2=${2:-3000}
BIN=$STATE/install$(pg_config --bindir)
W=$(mktemp -d /tmp/billing-maintcost.XXXXXX)
chmod 755 "$W"
trap 'rm -rf "$W"' EXIT
as=()
[ "$(id -u)" -eq 0 ] && as=(runuser -u postgres --)
run() {
	local n=$1 tag=$2
	cp -a "$STATE/data.template" "$W/data.$tag"
	printf "SELECT 'LSN', pg_current_wal_lsn();\n\nSELECT * FROM billing.run_maintenance('2026-12-01 00:00:00+00', %s);\n\n%s\n\n" \
		"$n" "SELECT 'LSN', pg_current_wal_lsn(); SELECT 'MAP', string_agg(pg_relation_filenode(oid) || ' ' || relname, ',') FROM pg_class WHERE relnamespace = 'billing'::regnamespace;" >"$W/in.$tag"
	if [ "$(id -u)" -eq 0 ]; then chown -R postgres "$W"; fi
	"${as[@]}" valgrind --tool=callgrind --callgrind-out-file="$W/cg.$tag" "$BIN/postgres" --single -j -D "$W/data.$tag" \
		-c shared_buffers=128MB -c fsync=off -c wal_keep_size=4GB book <"$W/in.$tag" >"$W/out.$tag" 2>"$W/err.$tag"
	if grep -q ERROR "$W/out.$tag" "$W/err.$tag"; then
		grep -m3 ERROR "$W/out.$tag" "$W/err.$tag" >&2
		exit 1
	fi
	local lsn
	mapfile -t lsn < <(grep -o 'pg_current_wal_lsn = "[0-9A-F/]*"' "$W/out.$tag" | cut -d'"' -f2)
	"$BIN/pg_waldump" -p "$W/data.$tag/pg_wal" -s "${lsn[0]}" -e "${lsn[1]}" 2>/dev/null |
		sed -nE 's/^rmgr: (\S+) .*desc: (\S+).*blkref #0: rel [0-9]+\/[0-9]+\/([0-9]+).*/\1\/\2 \3/p' | sort | uniq -c >"$W/wal.$tag"
}
run "$n1" a &
run "$n2" b &
wait
python3 - "$W" "$n1" "$n2" <<'PY'
import re, sys
w, n1, n2 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def out(t): return open(f"{w}/out.{t}").read()
def processed(t): return int(re.search(r'action = "subscriptions_processed".*\n.*count = "(\d+)"', out(t)).group(1))
def ir(t): return int(re.search(r'^summary: (\d+)', open(f"{w}/cg.{t}").read(), re.M).group(1))
names = dict(x.split(' ', 1) for x in re.search(r'string_agg = "([^"]*)"', out('b')).group(1).split(','))
def wal(t):
    d = {}
    for line in open(f"{w}/wal.{t}"):
        c, kind, rel = line.split()
        d[(kind, names.get(rel, rel))] = int(c)
    return d
n = processed('b') - processed('a')
a, b = wal('a'), wal('b')
per = {k: (b.get(k, 0) - a.get(k, 0)) / n for k in set(a) | set(b)}
kinds = {}
for (kind, rel), v in per.items():
    kinds[kind] = kinds.get(kind, 0) + v
print(f"per subscription processed ({n} = {processed('b')} - {processed('a')}):")
print(f"  instructions {(ir('b') - ir('a')) / n:10.0f}")
print(f"  WAL records  {sum(kinds.values()):10.2f}   " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(kinds.items(), key=lambda x: -x[1]) if v >= 0.05))
print("  B-tree leaf inserts by index:")
for (kind, rel), v in sorted(per.items(), key=lambda x: -x[1]):
    if kind == 'Btree/INSERT_LEAF' and v >= 0.01:
        print(f"    {v:6.2f}  {rel}")
PY
