#!/usr/bin/env bash
# Gate: every function and procedure in schema billing was called by a test.
# The cluster runs with track_functions = 'all'. Counts come from every
# database the tests left behind: pg_stat_user_functions for billing as it is
# now, and gate_coverage.calls, which keeps the counts of every billing that
# was dropped (test/gates/gate_coverage/, loaded into the pg_regress and
# isolation databases), and what test/gates/bin/psql saved before a shell test
# dropped its database.
#
# SQL functions the planner inlines are never counted; they are listed in
# uncounted_functions.txt with the function they are inlined into, which must
# have been called, and the reason. Run by test/run.sh after all suites, before the
# hostile-input gate (whose calls must not count).
set -euo pipefail
cd "$(dirname "$0")"
db=billing_gate_function_coverage
tmp=$(mktemp -d /tmp/billing-coverage.XXXXXX)
trap 'rm -rf "$tmp"; psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
q() { local d=$1; shift; psql -X -q -At -v ON_ERROR_STOP=1 -d "$d" "$@"; }
signature="pg_catalog.format('%I.%I(%s)', n.nspname, p.proname, pg_catalog.oidvectortypes(p.proargtypes))"

# Every database the tests used, read before this gate creates its own.
dbs=$(q postgres -c "SELECT datname FROM pg_database WHERE datallowconn AND datname NOT IN ('template0', 'template1')
                      AND datname NOT LIKE 'billing\_gate\_%'")
: >"$tmp/called"
for d in $dbs; do
	q "$d" -c "SELECT $signature FROM pg_stat_user_functions s JOIN pg_proc p ON p.oid = s.funcid
	             JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'billing' AND s.calls > 0" >>"$tmp/called"
	if [ "$(q "$d" -c "SELECT to_regclass('gate_coverage.calls') IS NOT NULL")" = t ]; then
		q "$d" -c "SELECT function FROM gate_coverage.calls WHERE calls > 0" >>"$tmp/called"
		echo "$d: $(q "$d" -c "SELECT count(*) FROM gate_coverage.calls WHERE calls > 0") functions called (kept across drops)"
	fi
done
# Saved by test/gates/bin/psql before the shell tests dropped their databases.
for f in "${GATE_COVERAGE_DIR:-/nonexistent}"/dropped-*.txt; do
	[ -e "$f" ] || continue
	cat "$f" >>"$tmp/called"
	echo "$(basename "$f" .txt | sed 's/^dropped-//'): $(sort -u "$f" | grep -c .) functions called (saved before DROP DATABASE)"
done
sort -u -o "$tmp/called" "$tmp/called"

# Every function and procedure of the current install, with its body.
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "SET client_min_messages = warning" \
	-c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
q "$db" -c "SET client_min_messages = warning" -c "CREATE EXTENSION billing" >/dev/null
q "$db" -c "SELECT $signature FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = 'billing' ORDER BY 1" >"$tmp/all"

# The allow-list: "signature | the called function it is inlined into | why".
{ grep -vE '^\s*(#|$)' uncounted_functions.txt || true; } | sed -E 's/\s*\|.*$//' | sort -u >"$tmp/allowed"
bad=0
trim() { sed -E 's/^\s+//; s/\s+$//' <<<"$1"; }
while IFS='|' read -r f caller reason; do
	f=$(trim "$f"); caller=$(trim "$caller")
	grep -qxF "$f" "$tmp/all" || { echo "uncounted_functions.txt names $f, which does not exist"; bad=1; }
	[ -n "$(trim "$reason")" ] || { echo "uncounted_functions.txt: no reason given for $f"; bad=1; }
	grep -qxF "$caller" "$tmp/called" ||
		{ echo "uncounted: $f (inlined into $caller, which no test called)"; bad=1; }
done < <(grep -vE '^\s*(#|$)' uncounted_functions.txt || true)

uncalled=$(comm -23 "$tmp/all" <(sort -u "$tmp/called" "$tmp/allowed"))
if [ -n "$uncalled" ]; then
	echo "functions in schema billing that no test called:"
	sed 's/^/  /' <<<"$uncalled"
	bad=1
fi
total=$(wc -l <"$tmp/all")
allowed=$(wc -l <"$tmp/allowed")
missing=$(grep -c . <<<"$uncalled" || true)
echo "function coverage: $((total - missing)) of $total billing functions called ($allowed inlined, their callers called)"
exit "$bad"
