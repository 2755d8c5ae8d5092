#!/usr/bin/env bash
# CREATE EXTENSION billing in two databases at the same moment, on a cluster
# where billing's roles do not exist yet: roles are cluster-wide, so both
# scripts try to create them and one waits for the other's commit. Both
# installs must succeed. Runs on a fresh cluster of its own (the test
# cluster already has the roles), five rounds, dropping the roles between.
#
# Run by test/run.sh with PGHOST set for the test cluster (its install tree).
set -uo pipefail
cluster_tmp=$(dirname "$PGHOST")
bin="$cluster_tmp/install$(pg_config --bindir)"
[ -x "$bin/initdb" ] || bin=$(pg_config --bindir)
tmp=$(mktemp -d /tmp/billing-concurrent-install.XXXXXX)
chmod 777 "$tmp"
as_owner() { if [ "$(id -u)" -eq 0 ]; then runuser -u "${PG_USER_OS:-postgres}" -- "$@"; else "$@"; fi; }
cleanup() {
	[ -f "$tmp/data/postmaster.pid" ] && as_owner "$bin/pg_ctl" -D "$tmp/data" -m immediate -w stop >/dev/null 2>&1
	rm -rf "$tmp"
}
trap cleanup EXIT
port=""
for p in $(seq 54521 54620); do
	if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && [ ! -e "/tmp/.s.PGSQL.$p" ]; then port=$p; break; fi
done
[ -n "$port" ] || { echo "FAIL: no free port"; exit 1; }
mkdir "$tmp/socket" && chmod 777 "$tmp/socket"
as_owner "$bin/initdb" -D "$tmp/data" -U postgres -A trust --no-sync -E UTF8 --locale=C >"$tmp/initdb.log" 2>&1 ||
	{ cat "$tmp/initdb.log"; exit 1; }
as_owner "$bin/pg_ctl" -D "$tmp/data" -l "$tmp/log" -w \
	-o "-p $port -k $tmp/socket -c listen_addresses='' -c fsync=off" start >/dev/null || { cat "$tmp/log"; exit 1; }
q() { psql -X -q -At -v ON_ERROR_STOP=1 -h "$tmp/socket" -p "$port" -U postgres "$@"; }

failed=0
q -d postgres -c "CREATE DATABASE ci_a" -c "CREATE DATABASE ci_b" || exit 1
for round in 1 2 3 4 5; do
	q -d ci_a -c "CREATE EXTENSION billing" >"$tmp/a.out" 2>&1 &
	a=$!
	q -d ci_b -c "CREATE EXTENSION billing" >"$tmp/b.out" 2>&1 &
	b=$!
	wait $a; ra=$?
	wait $b; rb=$?
	if [ "$ra" -ne 0 ] || [ "$rb" -ne 0 ]; then
		echo "FAIL: round $round: CREATE EXTENSION exited $ra and $rb"
		cat "$tmp/a.out" "$tmp/b.out"
		failed=1
		break
	fi
	n=$(q -d ci_a -c "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'billing\_%' AND NOT rolcanlogin AND NOT rolsuper")
	[ "$n" = 4 ] || { echo "FAIL: round $round: $n billing roles, expected 4"; failed=1; break; }
	q -d ci_a -c "DROP EXTENSION billing CASCADE" >/dev/null 2>&1
	q -d ci_b -c "DROP EXTENSION billing CASCADE" >/dev/null 2>&1
	for d in ci_a ci_b; do
		q -d "$d" -c "DROP OWNED BY billing_admin, billing_app, billing_analyst, billing_owner" >/dev/null 2>&1
	done
	q -d postgres -c "DROP ROLE billing_admin" -c "DROP ROLE billing_app" -c "DROP ROLE billing_analyst" \
		-c "DROP ROLE billing_owner" || { echo "FAIL: round $round: could not drop the roles"; failed=1; break; }
done
[ "$failed" -eq 0 ] && echo "concurrent install: 5 rounds, both databases installed each time"
exit "$failed"
