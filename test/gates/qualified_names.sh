#!/usr/bin/env bash
# Gate: every function, operator and cast in the SQL billing runs is
# schema-qualified (issue 9): the bodies of every SQL and PL/pgSQL function
# and procedure in schema billing as CREATE EXTENSION installs them (pg_proc),
# and every SQL text in src/glue/*.cpp. The lint is qualified_names.py (a
# small lexer; its allowlists of SQL grammar are commented there). Views,
# column defaults and check constraints are not read: PostgreSQL stores them
# as parse trees bound to the objects found at CREATE EXTENSION, nothing in
# them is looked up by name when they run. Run by test/run.sh with
# PGHOST/PGPORT/PGUSER set.
set -euo pipefail
cd "$(dirname "$0")"
python3 qualified_names.py --self-test
db=billing_gate_qualified
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "SET client_min_messages = warning" \
	-c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
out=$(mktemp -d /tmp/billing-qualified.XXXXXX)
trap 'psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; rm -rf "$out"' EXIT
psql -X -q -v ON_ERROR_STOP=1 -d "$db" -c "SET client_min_messages = warning" -c "CREATE EXTENSION billing" >/dev/null
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"; }
# Every SQL and PL/pgSQL function runs with search_path = pg_catalog, pg_temp
# (its SET clause), except these, whose bodies are then checked as running
# with the caller's search_path: SQL functions that must stay inlinable (a
# SET clause prevents inlining; the reports and the due-time index need them
# inlined) and procedures that commit (a SET clause forbids COMMIT).
unpinned="'_book_at', '_micros', '_interval_micros', '_due_at', '_grants_plan', '_trials_started',
	'_next_invoice_number', 'run_maintenance_batches'"
pinned="p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp']"
stray=$(q -c "SELECT p.oid::regprocedure FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
	WHERE p.pronamespace = 'billing'::regnamespace AND l.lanname IN ('sql', 'plpgsql')
	  AND NOT $pinned AND p.proname NOT IN ($unpinned)")
# BEGIN ATOMIC bodies (prosqlbody) are parse trees bound at creation, like views
q -c "COPY (
	SELECT p.oid::regprocedure::text, l.lanname, CASE WHEN $pinned THEN 'pinned' ELSE 'caller' END, p.prosrc
	  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
	 WHERE p.pronamespace = 'billing'::regnamespace AND l.lanname IN ('sql', 'plpgsql') AND p.prosqlbody IS NULL
	 ORDER BY 1) TO STDOUT" >"$out/bodies.tsv"
[ -n "${QUALIFIED_KEEP:-}" ] && cp "$out/bodies.tsv" "$QUALIFIED_KEEP"
status=0
if [ -n "$stray" ]; then
	echo "functions without SET search_path = pg_catalog, pg_temp:"
	echo "$stray"
	status=1
fi
if ! python3 qualified_names.py --bodies "$out/bodies.tsv" --cpp ../../src/glue/*.cpp; then
	status=1
	echo "(python3 test/gates/qualified_names.py --fix src/sql/NN_x.sql src/glue/x.cpp rewrites most of it in place;" \
		"a function's last definition in the upgrade script needs the same text)"
fi
exit $status
