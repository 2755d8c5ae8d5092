#!/usr/bin/env bash
# The reports are read-only: on a streaming replica (pg_basebackup -R of the
# test cluster, started on its own port) every report runs and gives exactly
# the primary's answer, also after more changes have streamed over.
#
# Run by test/run.sh with PGHOST/PGPORT/PGUSER set for the throwaway cluster.
set -uo pipefail
db="billing_standby_$$"
cluster_tmp=$(dirname "$PGHOST")  # the test cluster keeps its socket in $CLUSTER_TMP/socket
bin="$cluster_tmp/install$(pg_config --bindir)"
[ -x "$bin/pg_ctl" ] || bin=$(pg_config --bindir)
standby=$(mktemp -d /tmp/billing-standby.XXXXXX)
failed=0
as_owner() { if [ "$(id -u)" -eq 0 ]; then runuser -u "${PG_USER_OS:-postgres}" -- "$@"; else "$@"; fi; }
cleanup() {
	[ -f "$standby/data/postmaster.pid" ] && as_owner "$bin/pg_ctl" -D "$standby/data" -m immediate -w stop >/dev/null 2>&1
	psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
	rm -rf "$standby"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; failed=1; }
primary() { PGTZ=UTC psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"; }
replica() { PGTZ=UTC psql -X -q -At -v ON_ERROR_STOP=1 -h "$standby/socket" -p "$sport" -d "$db" "$@"; }

sport=""
for p in $(seq 54421 54520); do
	if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && [ ! -e "/tmp/.s.PGSQL.$p" ]; then sport=$p; break; fi
done
[ -n "$sport" ] || { echo "FAIL: no free port"; exit 1; }

psql -X -q -d postgres -c "CREATE DATABASE $db" || exit 1
echo "== a book on the primary"
primary >/dev/null <<'SQL' || { echo "FAIL: could not build the book"; exit 1; }
CREATE EXTENSION billing;
SELECT billing.subscribe('m' || i, 'pro_monthly', '2026-01-01 00:00+00', with_trial => false) FROM generate_series(1, 6) i;
SELECT billing.record_payment(s.id, 2999, 'usd', true, '2026-01-01 01:00+00') FROM billing.subscriptions s WHERE s.user_id LIKE 'm%';
SELECT billing.start_trial('t' || i, 'pro_yearly', '2026-01-02 00:00+00') FROM generate_series(1, 4) i;
SELECT billing.cancel(s.id, true, '2026-01-10 00:00+00') FROM billing.subscriptions s WHERE s.user_id = 'm1';
SELECT billing.pause(s.id, '2026-01-12 00:00+00') FROM billing.subscriptions s WHERE s.user_id = 'm2';
INSERT INTO billing.usage_records (user_id, metric, quantity, recorded_at)
SELECT 'm' || (i % 6 + 1), 'api_calls', i, '2026-01-01 00:00+00'::timestamptz + i * interval '7 hours' FROM generate_series(1, 200) i;
SELECT billing.run_maintenance('2026-01-20 00:00+00');
SQL

echo "== pg_basebackup -R and a hot standby on port $sport"
chmod 755 "$standby"
mkdir -p "$standby/socket"
[ "$(id -u)" -eq 0 ] && chown "${PG_USER_OS:-postgres}" "$standby" "$standby/socket"
as_owner "$bin/pg_basebackup" -h "$PGHOST" -p "$PGPORT" -U postgres -D "$standby/data" -R -X stream -c fast ||
	{ echo "FAIL: pg_basebackup"; exit 1; }
printf "port = %s\nunix_socket_directories = '%s'\nhot_standby = on\n" "$sport" "$standby/socket" |
	as_owner tee -a "$standby/data/postgresql.conf" >/dev/null
as_owner "$bin/pg_ctl" -D "$standby/data" -l "$standby/server.log" -w -t 60 start >/dev/null ||
	{ cat "$standby/server.log"; echo "FAIL: the standby did not start"; exit 1; }
[ "$(replica -c "SELECT pg_is_in_recovery()")" = t ] || fail "the replica is not in recovery"

reports="
SELECT * FROM billing.mrr('2026-01-15 00:00+00');
SELECT * FROM billing.arr('2026-01-15 00:00+00');
SELECT * FROM billing.active_subscriptions('2026-01-15 00:00+00');
SELECT * FROM billing.plan_distribution('2026-01-15 00:00+00');
SELECT * FROM billing.churn('2026-01-05 00:00+00', '2026-02-15 00:00+00');
SELECT * FROM billing.arpu('2026-01-01 00:00+00', '2026-02-01 00:00+00');
SELECT * FROM billing.trial_conversion('2026-01-01 00:00+00', '2026-02-01 00:00+00');
SELECT * FROM billing.revenue('2026-01-01 00:00+00', '2026-03-01 00:00+00', 'week');
SELECT * FROM billing.usage_trends('2026-01-01 00:00+00', '2026-03-01 00:00+00', 'day');
SELECT * FROM billing.daily_report('2026-01-10');
SELECT billing.usage('m3', 'api_calls', '2026-01-01 00:00+00', '2026-03-01 00:00+00');
SELECT p.code FROM billing.effective_plan('m4', '2026-01-15 00:00+00') p;
"
# waits until the replica has replayed everything the primary has written
caught_up() {
	local lsn
	lsn=$(primary -c "SELECT pg_current_wal_lsn()")
	for _ in $(seq 1 100); do
		[ "$(replica -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn")" = t ] && return 0
		sleep 0.1
	done
	return 1
}
compare() { # compare LABEL
	caught_up || { fail "$1: the replica did not catch up"; return; }
	primary -c "$reports" >"$standby/primary.out" 2>&1 || fail "$1: a report failed on the primary"
	replica -c "$reports" >"$standby/replica.out" 2>&1 || { cat "$standby/replica.out"; fail "$1: a report failed on the replica"; }
	if diff "$standby/primary.out" "$standby/replica.out"; then
		echo "   $1: $(wc -l <"$standby/primary.out") report lines, the same on both"
	else
		fail "$1: the replica's reports differ"
	fi
	[ "$(wc -l <"$standby/primary.out")" -gt 30 ] || fail "$1: too few report lines to mean anything"
}
echo "== the reports on both"
compare "after the base backup"
cp "$standby/primary.out" "$standby/first.out"

echo "== more changes stream over"
primary >/dev/null <<'SQL' || fail "could not change the book"
SELECT billing.resume(s.id, '2026-01-25 00:00+00') FROM billing.subscriptions s WHERE s.user_id = 'm2' AND s.ended_at IS NULL;
SELECT billing.cancel(s.id, false, '2026-01-26 00:00+00') FROM billing.subscriptions s WHERE s.user_id IN ('m3', 'm4') AND s.ended_at IS NULL;
SELECT billing.rollup_usage('2026-01-20 00:00+00');
SQL
compare "after streaming"
# m2 no longer churns between 5 Jan and 15 Feb, m3 and m4 do: the replica saw it
cmp -s "$standby/first.out" "$standby/replica.out" && fail "the changes did not reach the reports"
# a report never writes: a write on the replica is refused, the reports above were not
replica -c "SELECT billing.rollup_usage('2026-02-01 00:00+00')" >/dev/null 2>&1 && fail "the replica accepted a write"

[ "$failed" -eq 0 ] && echo "the reports run on a hot standby and agree with the primary"
exit "$failed"
