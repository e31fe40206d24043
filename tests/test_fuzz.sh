#!/usr/bin/env bash
# test_fuzz.sh: libFuzzer on the MEMSCOPE parser and on the malloc family.
#
# Targets (built by `make fuzzers`, see mk/check.mk):
#   build/fuzz/fuzz_options  tests/fuzz_options.c: ms_options_parse under ASan
#                            and UBSan, with its contract and a round trip
#   build/fuzz/fuzz_malloc   tests/fuzz_malloc.c: operation sequences checked
#                            against a model, memscope as the process's malloc
#                            (UBSan, no ASan: ASan would take malloc over)
# Each target first replays every input kept in tests/fuzz/corpus-<target>/
# (seeds, and the inputs of bugs found: regression inputs, never deleted),
# then fuzzes for MEMSCOPE_FUZZ_SECONDS (default 12; 6 when quick).  Any
# crash, sanitizer report or broken check fails the test, and the input is
# shown (and kept in build/fuzz/ as crash-*).  New inputs go to a scratch
# corpus, or with MEMSCOPE_FUZZ_KEEP=1 (`make fuzz`) to build/fuzz/work-<target>/,
# so tests/ is never written by a run.  The last lines give the runs per
# target: docs/RELIABILITY.md quotes them.
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
secs=${MEMSCOPE_FUZZ_SECONDS:-12}
[ "${MEMSCOPE_TEST_QUICK:-0}" = 1 ] && secs=${MEMSCOPE_FUZZ_SECONDS:-6}
ulimit -c 0 2>/dev/null || true
tmp=$(mktemp -d "${TMPDIR:-/tmp}/memscope-fuzz.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail=0

# fuzz NAME MINRUNS EXTRA...: replay tests/fuzz/corpus-NAME, fuzz, report.
fuzz() {
    local name=$1 minruns=$2 bin="$BUILD/fuzz/fuzz_$1" seeds="tests/fuzz/corpus-$1" work rc execs
    shift 2
    if [ ! -x "$bin" ]; then
        echo "FAIL $name: $bin not built (make fuzzers; needs clang and libclang-rt-14-dev)"
        fail=1; return
    fi
    if [ "${MEMSCOPE_FUZZ_KEEP:-0}" = 1 ]; then work="$BUILD/fuzz/work-$name"; else work="$tmp/work-$name"; fi
    mkdir -p "$work"
    "$bin" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$BUILD/fuzz/" "$@" \
        "$work" "$seeds" >"$tmp/$name.log" 2>&1
    rc=$?
    execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$tmp/$name.log")
    if [ "$rc" -ne 0 ]; then
        echo "FAIL $name: the fuzzer found a problem (exit $rc):"
        grep -E 'runtime error|fuzz_|memscope|ERROR|SUMMARY|Test unit written|round trip' "$tmp/$name.log" | head -20
        fail=1; return
    fi
    if [ "${execs:-0}" -lt "$minruns" ]; then
        echo "FAIL $name: only ${execs:-0} inputs in $secs s (want at least $minruns)"
        fail=1; return
    fi
    echo "ok   $name: $(ls "$seeds" | wc -l) kept inputs replayed, $execs inputs in $secs s, corpus $(ls "$work" | wc -l) new"
}

fuzz options 10000 -dict=tests/fuzz/options.dict -max_len=512
fuzz malloc 100 -max_len=2048 -rss_limit_mb=4096
[ "$fail" -eq 0 ]
