#!/usr/bin/env bash
# Gate: plpgsql_check (Debian postgresql-15-plpgsql-check) over every PL/pgSQL
# function in schema billing (see plpgsql_check.sql). Errors fail the run,
# warnings are printed. Run by test/run.sh with PGHOST/PGPORT/PGUSER set.
set -euo pipefail
cd "$(dirname "$0")"
db=billing_gate_plpgsql_check
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "SET client_min_messages = warning" \
	-c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
trap 'psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
q() { psql -X -q -v ON_ERROR_STOP=1 -d "$db" "$@"; }

q -c "SET client_min_messages = warning" -c "CREATE EXTENSION billing" -c "CREATE EXTENSION plpgsql_check" -f app_schema.sql >/dev/null
findings=$(q -A -F ' | ' -t -f plpgsql_check.sql)
checked=$(q -At -c "SELECT count(*) FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
                     WHERE l.lanname = 'plpgsql' AND p.pronamespace = 'billing'::regnamespace")
errors=$(grep -c '^error |' <<<"$findings" || true)
warnings=$(grep -c '^[a-z ]* |' <<<"$findings" || true)
warnings=$((warnings - errors))
[ -n "$findings" ] && echo "$findings"
pairs=$(q -At -c "SELECT count(*) FROM (SELECT DISTINCT t.tgfoid, t.tgrelid FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid WHERE p.pronamespace = 'billing'::regnamespace AND p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'plpgsql')) x")
echo "plpgsql_check: $checked PL/pgSQL functions (trigger functions on $pairs tables), $errors errors, $warnings warnings"
[ "$errors" -eq 0 ]
