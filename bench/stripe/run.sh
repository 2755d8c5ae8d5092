#!/usr/bin/env bash
# Stripe webhook benchmark: billing.stripe_ingest against
# @supabase/stripe-sync-engine's processWebhook on a throwaway cluster (see
# bench/stripe/bench.js). `npm ci` from the committed lockfile into build/.
#   bash bench/stripe/run.sh [subscriptions per round, default 1000] [rounds, default 3]
set -euo pipefail
cd "$(dirname "$0")/../.."
source test/cluster.sh
export STRIPE_FIXTURES="$PWD/../shared/stripe/fixtures.json"
work=build/bench-stripe
mkdir -p "$work"
cp bench/stripe/bench.js bench/stripe/package.json bench/stripe/package-lock.json "$work/"
[ -d "$work/node_modules" ] || (cd "$work" && npm ci --no-audit --no-fund --loglevel=error)
make -s -j"$(nproc)" >/dev/null
cluster_start "shared_buffers = '256MB'" "max_wal_size = '8GB'" "checkpoint_timeout = '1h'" "synchronous_commit = on"
export PGDATABASE=bench_stripe SYNC_DATABASE=bench_stripe_sync_engine
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE bench_stripe" -c "CREATE DATABASE bench_stripe_sync_engine"
psql -X -q -v ON_ERROR_STOP=1 -c "CREATE EXTENSION billing"
node "$work/bench.js" "${1:-1000}" "${2:-3}"
