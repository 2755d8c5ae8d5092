#!/usr/bin/env bash
# make coverage: builds billing.so and the unit tests with --coverage, runs
# make test (test/run.sh), and prints per-file line coverage of src/ with
# gcovr. The instrumented objects are removed afterwards, so the next build
# is a normal one.
set -uo pipefail
cd "$(dirname "$0")/.."
prefix=$(mktemp -d /tmp/billing-gcov.XXXXXX)
# The server runs as postgres, the unit tests as the caller: the directories
# of the extension's objects must be writable for both.
mkdir -p "$prefix$PWD/src/core" "$prefix$PWD/src/glue"
chmod -R 777 "$prefix"
uninstrument() { find src -name '*.o' -delete; rm -f billing.so; rm -rf build/cmake; }
uninstrument
find . -name '*.gcda' -delete
# PGXS appends its own flags to these (the Makefile uses +=); CMake reads
# CXXFLAGS and LDFLAGS when it configures.
export PG_CXXFLAGS="--coverage" SHLIB_LINK="--coverage" CXXFLAGS="--coverage" LDFLAGS="--coverage"
# The server runs as postgres, which cannot write into this tree: every
# process writes its counts under $prefix instead, copied back afterwards.
export GCOV_PREFIX=$prefix
bash test/run.sh
rc=$?
unset GCOV_PREFIX
chmod -R a+rX "$prefix"
cp -r "$prefix$PWD/." "$PWD/" 2>/dev/null
echo "== line coverage of src/ (gcovr; make test exited $rc)"
gcovr --root . --filter 'src/' --exclude-unreachable-branches --print-summary 2>/dev/null | grep -v '^-*$'
uninstrument
find . -name '*.gcda' -delete
rm -rf "$prefix"
exit "$rc"
