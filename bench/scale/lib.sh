#!/usr/bin/env bash
# Sourced by bench/scale/run.sh and by the other benchmarks that reuse the
# scale book (bench/reports/, bench/stripe/):
#
#   source bench/scale/lib.sh
#   scale_cluster_start                 # throwaway cluster, fsync on, no checkpoint mid-run
#   scale_book book 1000000             # database "book" holding the 1,000,000-user book
#   psql -d book -c '...'               # PGHOST/PGPORT/PGUSER are exported
#
# The cluster (and the book) is removed on exit; KEEP_CLUSTER=1 keeps its files.
set -euo pipefail
SCALE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$SCALE_ROOT/test/cluster.sh"

# scale_cluster_start [EXTRA postgresql.conf LINES...]
scale_cluster_start() {
	make -C "$SCALE_ROOT" -s -j2 >/dev/null
	cluster_start "shared_buffers = '512MB'" "max_wal_size = '32GB'" "checkpoint_timeout = '1h'" \
		"fsync = on" "synchronous_commit = on" "maintenance_work_mem = '256MB'" "$@"
}

# scale_book DATABASE USERS [ROOMS]: creates DATABASE and loads the book into it.
scale_book() {
	local db=$1 users=$2 rooms=${3:-$2} start=$SECONDS
	createdb "$db"
	psql -X -q -d "$db" -v users="$users" -v rooms="$rooms" -f "$SCALE_ROOT/bench/scale/book.sql"
	echo "   book \"$db\": $users users, $rooms rooms, built in $((SECONDS - start)) s"
}
