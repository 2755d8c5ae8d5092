#!/usr/bin/env bash
# The example webhook endpoint (examples/webhook-node/) end to end: Node.js
# and npm from Debian when missing (as root), `npm ci` from the committed
# lockfile into build/, then examples/webhook-node/test/endpoint.test.js
# against a database of its own (dropped at the end). Needs PGHOST/PGPORT/PGUSER.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
export STRIPE_FIXTURES="$REPO/../shared/stripe/fixtures.json"
[ -r "$STRIPE_FIXTURES" ] || { echo "fixtures not found at $STRIPE_FIXTURES" >&2; exit 1; }

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "node and npm are missing; install Debian's nodejs and npm packages" >&2
		exit 1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

work=$REPO/build/webhook-node
mkdir -p "$work"
cp -r "$REPO/examples/webhook-node/server.js" "$REPO/examples/webhook-node/package.json" \
	"$REPO/examples/webhook-node/package-lock.json" "$REPO/examples/webhook-node/test" "$work/"
if [ ! -d "$work/node_modules" ] || ! cmp -s "$work/package-lock.json" "$work/node_modules/.package-lock.json.used"; then
	(cd "$work" && npm ci --no-audit --no-fund --loglevel=error)
	cp "$work/package-lock.json" "$work/node_modules/.package-lock.json.used"
fi

export PGDATABASE="billing_node_$$"
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $PGDATABASE"
trap 'psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $PGDATABASE" >/dev/null 2>&1 || true' EXIT
psql -X -q -v ON_ERROR_STOP=1 -c "CREATE EXTENSION billing"
node "$work/test/endpoint.test.js"
