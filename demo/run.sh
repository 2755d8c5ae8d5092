#!/usr/bin/env bash
# make demo: build, install, start a throwaway cluster and play the story.
set -euo pipefail
cd "$(dirname "$0")/.."
source test/cluster.sh
echo "== building billing"
make -s -j"$(nproc)" >/dev/null
make -s install >/dev/null  # the system copy, for anyone who wants it after the demo
cluster_start "shared_preload_libraries = 'pg_cron'" "cron.database_name = 'postgres'"
echo "== throwaway cluster on port $PGPORT (socket $PGHOST)"
psql -X -q -v ON_ERROR_STOP=1 -f demo/schema.sql
psql -X -q -e -f demo/story.sql 2>&1 | grep -v '^SET$'
psql -X -q -e -f demo/story_quota.sql 2>&1 | grep -v "^SET$"
psql -X -q -e -f demo/story_lifecycle.sql 2>&1 | grep -v "^SET$"
psql -X -q -e -f demo/story_reports.sql 2>&1 | grep -v "^SET$"
bash demo/story_stripe.sh
echo
echo "== demo finished; the cluster is stopped and removed"
