#!/usr/bin/env bash
# make test: unit tests (GoogleTest via ctest), then on a throwaway cluster the
# pg_regress tests (sql/ + expected/), the isolation specs (test/isolation/)
# and the shell tests (test/shell/: dump/restore, pg_cron), then the gates
# (test/gates/: plpgsql_check, function coverage, hostile input), each
# counted as one test. Ends with one
# line "N passed, N failed" and exits non-zero if anything failed.
#
# While working on one area, run a subset (space-separated names; a variable
# left unset runs everything of its kind, set to "none" runs nothing):
#   UNIT=none REGRESS="10_quota 11_quota_counters" ISOLATION=none SHELL_TESTS=upgrade GATES=none bash test/run.sh
set -uo pipefail
cd "$(dirname "$0")/.."
source test/cluster.sh
set +e

passed=0
failed=0
failures=()
count() { # count NAME OK?
	if [ "$2" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=("$1"); fi
}
jobs=$(nproc)
mkdir -p build

# pick KIND_VAR ALL...: the names selected by the variable, all of them when unset.
pick() {
	local wanted=$1
	shift
	if [ -z "$wanted" ]; then echo "$*"; elif [ "$wanted" = none ]; then echo ""; else echo "$wanted"; fi
}

echo "== unit tests (GoogleTest)"
if [ "${UNIT:-}" = none ]; then
	echo "   skipped (UNIT=none)"
elif cmake -S . -B build/cmake -DCMAKE_BUILD_TYPE=Debug >build/cmake.log 2>&1 &&
	cmake --build build/cmake -j"$jobs" >>build/cmake.log 2>&1; then
	(cd build/cmake && ctest --output-on-failure -j"$jobs") >build/ctest.log 2>&1
	summary=$(grep -E 'tests passed, [0-9]+ tests? failed out of' build/ctest.log | tail -1)
	echo "   ${summary:-no ctest summary}"
	total=$(sed -nE 's/.*failed out of ([0-9]+).*/\1/p' <<<"$summary")
	bad=$(sed -nE 's/.* ([0-9]+) tests? failed out of.*/\1/p' <<<"$summary")
	if [ -n "$total" ]; then
		passed=$((passed + total - bad)); failed=$((failed + bad))
		[ "$bad" -gt 0 ] && { failures+=("unit"); grep -E '^\s+[0-9]+ - .*\(Failed\)' build/ctest.log; }
	else
		count "unit tests did not run" 1
	fi
else
	tail -30 build/cmake.log
	count "unit test build" 1
fi

echo "== build and install into a private PostgreSQL tree"
if ! make -s -j"$jobs" >build/make.log 2>&1; then
	tail -30 build/make.log
	count "extension build" 1
	echo "$passed passed, $failed failed"
	exit 1
fi
# track_functions: the function coverage gate reads pg_stat_user_functions.
cluster_start "shared_preload_libraries = 'pg_cron'" "cron.database_name = 'billing_cron'" "track_functions = 'all'" || {
	count "cluster start" 1
	echo "$passed passed, $failed failed"
	exit 1
}

# gate_coverage (test only) keeps billing's call counts across DROP EXTENSION
# in the pg_regress and isolation databases (test/gates/function_coverage.sh).
cp test/gates/gate_coverage/gate_coverage* "$CLUSTER_TMP/install$PG_SHAREDIR/extension/"
PGXS_DIR=$(dirname "$(dirname "$(dirname "$(pg_config --pgxs)")")")
run_regress() { # run_regress LABEL DRIVER ARGS...
	local label=$1 driver=$2 log=build/$1.log
	shift 2
	"$driver" --host="$PGHOST" --port="$PGPORT" --user=postgres --bindir="$CLUSTER_BIN" "$@" >"$log" 2>&1
	local line name
	while IFS= read -r line; do
		name=$(sed -nE 's/^(test )? *([A-Za-z0-9_]+) +\.\.\. .*/\2/p' <<<"$line")
		[ -n "$name" ] || continue
		if grep -qE '\.\.\. ok' <<<"$line"; then count "$label/$name" 0; else count "$label/$name" 1; fi
	done < <(grep -E '\.\.\. (ok|FAILED|failed)' "$log")
	grep -E '\.\.\. (FAILED|failed)' "$log" | sed 's/^/   /'
	if ! grep -qE 'tests? (passed|failed)' "$log"; then
		tail -3 "$log" | sed 's/^/   /'
		count "$label did not finish" 1
	fi
	grep -E 'tests? (passed|failed)|could not|error' "$log" | grep -v '^test' | sed 's/^/   /' | head -5
}

echo "== regression tests (pg_regress)"
regress_tests=$(pick "${REGRESS:-}" $(ls sql/*.sql 2>/dev/null | sed 's|sql/||; s|\.sql$||'))
if [ -n "$regress_tests" ]; then
	mkdir -p build/regress
	run_regress regress "$PGXS_DIR/src/test/regress/pg_regress" --inputdir=. --outputdir=build/regress \
		--dbname=billing_regress --load-extension=gate_coverage $regress_tests
	[ -f build/regress/regression.diffs ] && [ -s build/regress/regression.diffs ] && head -60 build/regress/regression.diffs
fi

echo "== isolation tests (pg_isolation_regress)"
isolation_tests=$(pick "${ISOLATION:-}" $(ls test/isolation/specs/*.spec 2>/dev/null | sed 's|.*/||; s|\.spec$||'))
if [ -n "$isolation_tests" ]; then
	mkdir -p build/isolation
	run_regress isolation "$PGXS_DIR/src/test/isolation/pg_isolation_regress" --inputdir=test/isolation \
		--outputdir=build/isolation --dbname=billing_isolation --load-extension=gate_coverage $isolation_tests
	[ -f build/isolation/regression.diffs ] && [ -s build/isolation/regression.diffs ] && head -60 build/isolation/regression.diffs
fi

echo "== shell tests (test/shell)"
# Their databases are dropped at the end; test/gates/bin/psql saves what was
# called in each first, for the function coverage gate.
export GATE_COVERAGE_DIR="$CLUSTER_TMP/coverage" GATE_REAL_PSQL
GATE_REAL_PSQL=$(command -v psql)
mkdir -p "$GATE_COVERAGE_DIR"
for t in $(pick "${SHELL_TESTS:-}" $(ls test/shell/*.sh 2>/dev/null | sed 's|.*/||; s|\.sh$||')); do
	t=test/shell/$t.sh
	[ -e "$t" ] || continue
	name=$(basename "$t" .sh)
	if PATH="$PWD/test/gates/bin:$PATH" bash "$t" >"build/shell-$name.log" 2>&1; then
		echo "   $name ... ok"
		count "shell/$name" 0
	else
		echo "   $name ... FAILED"
		tail -20 "build/shell-$name.log" | sed 's/^/      /'
		count "shell/$name" 1
	fi
done

echo "== gates (test/gates)"
all_gates="plpgsql_check function_coverage hostile_input shadowing qualified_names"
# Function coverage needs every suite; a subset run skips it unless named.
[ -n "${UNIT:-}${REGRESS:-}${ISOLATION:-}${SHELL_TESTS:-}" ] && all_gates="plpgsql_check hostile_input shadowing qualified_names"
for g in $(pick "${GATES:-}" $all_gates); do
	if bash "test/gates/$g.sh" >"build/gate-$g.log" 2>&1; then
		echo "   $g ... ok ($(tail -1 "build/gate-$g.log"))"
		count "gate/$g" 0
	else
		echo "   $g ... FAILED"
		tail -40 "build/gate-$g.log" | sed 's/^/      /'
		count "gate/$g" 1
	fi
done

if grep -qE 'terminated by signal|server process .* was terminated' "$CLUSTER_TMP/server.log"; then
	echo "   the server log shows a crashed backend:"
	grep -E 'terminated by signal' "$CLUSTER_TMP/server.log" | head -3
	count "no backend crashed" 1
fi

[ ${#failures[@]} -gt 0 ] && echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
