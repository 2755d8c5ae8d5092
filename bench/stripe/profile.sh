#!/usr/bin/env bash
# What billing.stripe_ingest costs per event, by step of a subscription's
# life in bench.js's stream (1 customer.subscription.created, 2 .updated,
# 3 invoice.paid, 4 .updated with cancel_at_period_end, redelivery: a
# duplicate): figures that hold on a loaded machine, unlike events/s.
#   bash bench/stripe/profile.sh [subscriptions, default 200] [callgrind N1 N2, default 10 40]
# Prints per event of each step: SQL statements run inside the call (nested
# pg_stat_statements calls, track = all), WAL records and bytes
# (pg_waldump --stats over the step's LSN range, autovacuum off), and
# instructions (callgrind on `postgres --single`, one profile part per step
# cut at pg_current_wal_lsn; (I(N2) - I(N1)) / (events(N2) - events(N1)), so
# start-up and first plans cancel out). The steps run one after another (all
# created, then all first updates, ...): a delivery order billing accepts.
# VERBOSE=1 lists each step's statements and WAL records; CALLGRIND=0 skips
# callgrind; KEEP=1 keeps the work directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
source test/cluster.sh
export STRIPE_FIXTURES="$PWD/../shared/stripe/fixtures.json"
n=${1:-200} n1=${2:-10} n2=${3:-40}
work=build/bench-stripe
mkdir -p "$work"
cp bench/stripe/bench.js bench/stripe/package.json bench/stripe/package-lock.json "$work/"
[ -d "$work/node_modules" ] || (cd "$work" && npm ci --no-audit --no-fund --loglevel=error)
make -s -j2 >/dev/null
W=$(mktemp -d /tmp/billing-stripe-profile.XXXXXX)
chmod 755 "$W"
# KEEP=1 keeps the work directory (callgrind's parts: cg.b.N, N the step)
finish() { cluster_stop; if [ -n "${KEEP:-}" ]; then echo "kept $W" >&2; else rm -rf "$W"; fi; }
trap finish EXIT
# The stream as SQL, one file per step: signed as bench.js signs it, `at` the
# signature's time (no clock under callgrind's slowness).
emit() {  # subscriptions round prefix
	node "$work/bench.js" "$1" 1 --emit "$2" | python3 -c '
import json, sys
prefix = sys.argv[1]
files = {}
for line in sys.stdin:
    e = json.loads(line)
    step = str(e["step"])
    if step not in files:
        files[step] = open(f"{prefix}.{step}.sql", "w")
    t = e["header"].split(",")[0][2:]
    assert "$p$" not in e["payload"]
    payload, header = e["payload"], e["header"]
    files[step].write(f"SELECT billing.stripe_ingest($p${payload}$p$, \x27{header}\x27, pg_catalog.to_timestamp({t}));\n\n")
' "$3"
}
steps="1 2 3 4 redelivery"
emit 30 w "$W/warm"
emit "$n" p "$W/live"
cluster_start "shared_preload_libraries = 'pg_stat_statements'" "pg_stat_statements.track = all" \
	"pg_stat_statements.track_utility = off" "pg_stat_statements.max = 10000" "autovacuum = off" \
	"shared_buffers = '256MB'" "max_wal_size = '8GB'" "checkpoint_timeout = '1h'"
trap finish EXIT  # (cluster_start set its own)
export PGDATABASE=profile
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE profile"
psql -X -q -v ON_ERROR_STOP=1 <<SQL
CREATE EXTENSION billing;
CREATE EXTENSION pg_stat_statements;
UPDATE billing.subscription_plans SET stripe_price_id = '$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['subscription']['items']['data'][0]['price']['id'])" "$STRIPE_FIXTURES")' WHERE code = 'pro_monthly';
SELECT billing.configure('stripe_webhook_secret', 'whsec_bench_secret');
SQL
for s in $steps; do psql -X -q -v ON_ERROR_STOP=1 -f "$W/warm.$s.sql" >/dev/null; done
psql -X -q -c CHECKPOINT
as_cluster_owner "$CLUSTER_BIN/pg_ctl" -D "$CLUSTER_DATA" -m fast -w stop >/dev/null
cp -a "$CLUSTER_DATA" "$W/template"
as_cluster_owner "$CLUSTER_BIN/pg_ctl" -D "$CLUSTER_DATA" -l "$CLUSTER_TMP/server.log" -w -t 60 start >/dev/null

printf '%-11s %7s %11s %11s %10s\n' step events statements WAL_records WAL_bytes
declare -A events
for s in $steps; do
	events[$s]=$(grep -c stripe_ingest "$W/live.$s.sql")
	psql -X -q -At -c "SELECT pg_stat_statements_reset()" >/dev/null
	lsn0=$(psql -X -At -c "SELECT pg_current_wal_lsn()")
	psql -X -q -v ON_ERROR_STOP=1 -f "$W/live.$s.sql" >"$W/results.$s"
	lsn1=$(psql -X -At -c "SELECT pg_current_wal_lsn()")
	st=$(psql -X -At -c "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE NOT toplevel")
	"$CLUSTER_BIN/pg_waldump" -p "$CLUSTER_DATA/pg_wal" -s "$lsn0" -e "$lsn1" --stats >"$W/wal.$s" 2>/dev/null || true
	recs=0 bytes=0  # (a step that writes nothing, as duplicates: no WAL range to read)
	read -r recs bytes < <(awk '/^Total/ {gsub(/[\[\]%]/, ""); print $2, $7}' "$W/wal.$s") || true
	recs=${recs:-0} bytes=${bytes:-0}
	python3 -c "import sys; e=int(sys.argv[2]); print(f'{sys.argv[1]:11s} {e:7d} {int(sys.argv[3])/e:11.2f} {int(sys.argv[4])/e:11.2f} {int(sys.argv[5])/e:10.0f}')" \
		"$s" "${events[$s]}" "$st" "$recs" "$bytes"
	if [ -n "${VERBOSE:-}" ]; then
		psql -X -At -F ' | ' -c "SELECT calls, left(regexp_replace(query, '\s+', ' ', 'g'), 150) FROM pg_stat_statements WHERE NOT toplevel ORDER BY calls DESC, query"
		# WAL records by relation and kind
		"$CLUSTER_BIN/pg_waldump" -p "$CLUSTER_DATA/pg_wal" -s "$lsn0" -e "$lsn1" 2>/dev/null |
			sed -nE 's/.*desc: ([A-Z_+]+).*rel [0-9]+\/[0-9]+\/([0-9]+).*/\2 \1/p' | sort | uniq -c | sort -rn >"$W/walrel.$s" || true
		psql -X -At -F ' ' -c "SELECT pg_relation_filenode(c.oid), COALESCE((SELECT 'toast(' || o.relname || ')' FROM pg_class o
			WHERE o.reltoastrelid IN (c.oid, (SELECT i.indrelid FROM pg_index i WHERE i.indexrelid = c.oid))) || CASE WHEN c.relkind = 'i' THEN '_index' ELSE '' END, c.relname)
			FROM pg_class c WHERE pg_relation_filenode(c.oid) IS NOT NULL" >"$W/filenodes"
		awk -v e="${events[$s]}" 'NR == FNR { name[$1] = $2; next } { printf "    %6.2f  %-8s %s\n", $1 / e, $3, ($2 in name ? name[$2] : $2) }' "$W/filenodes" "$W/walrel.$s"
	fi
done
[ "${CALLGRIND:-1}" = 0 ] && exit 0

# callgrind: N1 and N2 subscriptions of a fresh round on copies of the template
cg() {  # subscriptions tag
	emit "$1" "c$2" "$W/cg$2"
	{
		for s in $steps; do cat "$W/cg$2.$s.sql"; printf 'SELECT pg_current_wal_lsn();\n\n'; done
	} >"$W/in.$2.sql"
	rm -rf "$W/data.$2"
	cp -a "$W/template" "$W/data.$2"
	if [ "$(id -u)" -eq 0 ]; then chown -R postgres "$W"; fi
	as_cluster_owner valgrind --tool=callgrind --dump-before=pg_current_wal_lsn --callgrind-out-file="$W/cg.$2" \
		"$CLUSTER_BIN/postgres" --single -j -D "$W/data.$2" -c shared_preload_libraries= -c fsync=off profile \
		<"$W/in.$2.sql" >"$W/out.$2" 2>"$W/err.$2"
	if grep -q ERROR "$W/out.$2" "$W/err.$2"; then grep -m3 ERROR "$W/out.$2" "$W/err.$2" >&2; exit 1; fi
}
cg "$n1" a
cg "$n2" b
python3 - "$W" $steps <<'PY'
import glob, re, sys
w, steps = sys.argv[1], sys.argv[2:]
def parts(tag):  # instructions per part, in dump order (part k ends at the k-th pg_current_wal_lsn)
    files = sorted(glob.glob(f"{w}/cg.{tag}.*"), key=lambda f: int(f.rsplit('.', 1)[1]))
    return [int(re.search(r'^summary: (\d+)', open(f).read(), re.M).group(1)) for f in files]
def count(tag, s):
    return open(f"{w}/cg{tag}.{s}.sql").read().count('stripe_ingest')
a, b = parts('a'), parts('b')
print(f"{'step':11s} {'instructions/event':>20s}")
total_i = total_e = 0
for k, s in enumerate(steps):
    di, de = b[k] - a[k], count('b', s) - count('a', s)
    total_i += di; total_e += de
    print(f"{s:11s} {di / de:20.0f}")
print(f"{'all':11s} {total_i / total_e:20.0f}")
PY
