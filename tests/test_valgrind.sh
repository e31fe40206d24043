#!/usr/bin/env bash
# test_valgrind.sh: memscope's own code under valgrind memcheck.
#
# Why this way: memcheck replaces malloc with its own in libc and, by
# default, in the main executable, so a test that links memscope statically
# would test valgrind's allocator instead.  --soname-synonyms=somalloc=
# nouserintercepts keeps memcheck's hands off the executable's malloc, and
# tests linked with -lmemscope resolve malloc to libmemscope.so, which memcheck
# does not intercept either: memscope stays the allocator.  Memcheck then
# sees memscope's heap as plain mmap'd memory (it cannot see heap misuse by
# the program, which is memscope's own job) but checks every read and write
# memscope itself makes: uninitialised values used in branches or system
# calls, accesses outside mappings, bad frees of memscope's metadata.  Any
# report fails the test (--error-exitcode); tests/valgrind.supp holds only
# libunwind's own probe.
# The scavenger's delay is set to an hour: under memcheck's 20-50x slowdown
# it otherwise returns pages before test_stats' own timed checks look.
# By default the quick tests run (a few seconds); MEMSCOPE_VALGRIND_ALL=1
# (`make valgrind`) runs every unit test and test_api too (minutes).
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
command -v valgrind >/dev/null || { echo "FAIL: valgrind not installed (scripts/install-deps.sh)"; exit 1; }
tests="test_unit_sizeclass test_stats"
[ "${MEMSCOPE_VALGRIND_ALL:-0}" = 1 ] &&
    tests="$tests test_counters test_unit_holes test_unit_pageheap test_unit_prof test_unit_symbolize test_api test_limits"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/memscope-vg.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail=0
for t in $tests; do
    bin="$BUILD/tests/$t"
    [ -x "$bin" ] || { echo "FAIL $t: $bin not built"; fail=1; continue; }
    MEMSCOPE=scavenge_delay_ms=3600000 valgrind -q --error-exitcode=99 --soname-synonyms=somalloc=nouserintercepts --track-origins=yes \
        --suppressions=tests/valgrind.supp "$bin" >"$tmp/$t.log" 2>&1 </dev/null
    rc=$?
    n=$(grep -cE '^==[0-9]+== [A-Z]' "$tmp/$t.log")
    if [ "$rc" -ne 0 ] || [ "$n" -ne 0 ]; then
        echo "FAIL $t under memcheck (exit $rc, $n reports):"; grep -E '^==[0-9]+==' "$tmp/$t.log" | head -20
        fail=1
    else
        echo "ok   $t: no memcheck report ($(tail -1 "$tmp/$t.log"))"
    fi
done
[ "$fail" -eq 0 ]
