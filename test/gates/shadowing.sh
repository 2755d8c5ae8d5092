#!/usr/bin/env bash
# Gate: billing never resolves a name through its caller's search_path. The
# caller (a role below superuser, as in the hostile-input gate) plants
# shadowing objects in public and pg_temp (test/gates/shadows.sql: operators
# and functions named like pg_catalog's, types named text, jsonb, ... with
# casts, views named like billing's tables), puts them first in its
# search_path, runs the trigger paths (shadow_workload.sql) and then every
# call of the hostile-input gate. Any planted object that runs (it raises a
# WARNING "SHADOW RAN") fails the gate, and so does any call that fails with
# a SQLSTATE outside the README's table (a name resolved to a planted type
# typically fails so).
set -euo pipefail
HOSTILE_SHADOWS=1 exec bash "$(dirname "$0")/hostile_input.sh"
