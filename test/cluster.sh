#!/usr/bin/env bash
# Sourced by test/run.sh, demo/run.sh and bench/run.sh: builds billing into a
# private copy of the PostgreSQL installation and runs a throwaway cluster on
# it, as the unprivileged postgres user, on a free port, with its socket in a
# temporary directory. cluster_stop runs on exit, also when something fails.
set -euo pipefail

BILLING_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_BINDIR=$(pg_config --bindir)
PG_PKGLIBDIR=$(pg_config --pkglibdir)
PG_SHAREDIR=$(pg_config --sharedir)
PG_USER_OS=${PG_USER_OS:-postgres}

CLUSTER_TMP=""
CLUSTER_PORT=""
CLUSTER_DATA=""
CLUSTER_SOCKET=""
CLUSTER_BIN=""

# Runs a command as the unprivileged cluster owner (PostgreSQL refuses root).
as_cluster_owner() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u "$PG_USER_OS" -- "$@"
	else
		"$@"
	fi
}

free_port() {
	local port
	for port in $(seq 54320 54420); do
		if ! (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && [ ! -e "/tmp/.s.PGSQL.$port" ]; then
			echo "$port"
			return 0
		fi
	done
	echo "no free port between 54320 and 54420" >&2
	return 1
}

# A private installation: PostgreSQL's own files linked in, billing installed
# on top with DESTDIR, so tests never depend on (or disturb) the system copy.
cluster_install() {
	CLUSTER_TMP=$(mktemp -d /tmp/billing-cluster.XXXXXX)
	chmod 755 "$CLUSTER_TMP"
	local root="$CLUSTER_TMP/install"
	mkdir -p "$root$(dirname "$PG_BINDIR")" "$root$(dirname "$PG_SHAREDIR")"
	cp -al "$(dirname "$PG_BINDIR")/." "$root$(dirname "$PG_BINDIR")/" 2>/dev/null ||
		cp -a "$(dirname "$PG_BINDIR")/." "$root$(dirname "$PG_BINDIR")/"
	cp -al "$PG_SHAREDIR" "$root$(dirname "$PG_SHAREDIR")/" 2>/dev/null || cp -a "$PG_SHAREDIR" "$root$(dirname "$PG_SHAREDIR")/"
	rm -f "$root$PG_PKGLIBDIR"/billing.so "$root$PG_SHAREDIR"/extension/billing*
	make -C "$BILLING_ROOT" -s install DESTDIR="$root" >/dev/null
	CLUSTER_BIN="$root$PG_BINDIR"
}

# Starts the cluster; extra postgresql.conf lines may be given as arguments.
cluster_start() {
	[ -n "$CLUSTER_TMP" ] || cluster_install
	CLUSTER_PORT=$(free_port)
	CLUSTER_DATA="$CLUSTER_TMP/data"
	CLUSTER_SOCKET="$CLUSTER_TMP/socket"
	mkdir -p "$CLUSTER_SOCKET"
	chown "$PG_USER_OS" "$CLUSTER_TMP" "$CLUSTER_SOCKET" 2>/dev/null || true
	as_cluster_owner "$CLUSTER_BIN/initdb" -D "$CLUSTER_DATA" -U postgres -A trust --no-sync -E UTF8 --locale=C >"$CLUSTER_TMP/initdb.log" 2>&1 || {
		cat "$CLUSTER_TMP/initdb.log" >&2
		return 1
	}
	{
		echo "port = $CLUSTER_PORT"
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$CLUSTER_SOCKET'"
		echo "timezone = 'UTC'"
		echo "max_connections = 40"
		echo "max_prepared_transactions = 10"
		echo "cron.host = '$CLUSTER_SOCKET'"
		for line in "$@"; do echo "$line"; done
	} | as_cluster_owner tee -a "$CLUSTER_DATA/postgresql.conf" >/dev/null
	as_cluster_owner "$CLUSTER_BIN/pg_ctl" -D "$CLUSTER_DATA" -l "$CLUSTER_TMP/server.log" -w -t 60 start >/dev/null || {
		cat "$CLUSTER_TMP/server.log" >&2
		return 1
	}
	export PGHOST="$CLUSTER_SOCKET" PGPORT="$CLUSTER_PORT" PGUSER=postgres PGDATABASE=postgres
	trap cluster_stop EXIT
}

cluster_stop() {
	if [ -n "$CLUSTER_DATA" ] && [ -f "$CLUSTER_DATA/postmaster.pid" ]; then
		as_cluster_owner "$CLUSTER_BIN/pg_ctl" -D "$CLUSTER_DATA" -m immediate -w stop >/dev/null 2>&1 || true
	fi
	if [ -n "$CLUSTER_TMP" ] && [ -z "${KEEP_CLUSTER:-}" ]; then
		rm -rf "$CLUSTER_TMP"
	fi
	CLUSTER_DATA=""
}
