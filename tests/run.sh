#!/usr/bin/env bash
# tests/run.sh: run every memscope test program and script; `make test` calls it.
#
# Runs each build/tests/test_* binary, then each tests/test_*.sh script, one
# at a time under a timeout, and counts test programs (not individual checks):
# the last line is "N passed, N failed" and the exit status is non-zero if any
# program failed.  A program's own output is shown indented with "  | " so
# that only the closing line reads as a summary.
#
# Environment:
#   BUILD=dir               where `make` put its outputs (default build)
#   MEMSCOPE_TEST_QUICK=1   smaller stress sizes (set automatically when CI=true)
#   TEST_TIMEOUT=secs       per-program timeout (default 300; 600 for test_stress)
#   TEST_FILTER=regex       run only tests whose name matches (bash regex)
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
if [ "${CI:-}" = true ] && [ -z "${MEMSCOPE_TEST_QUICK:-}" ]; then export MEMSCOPE_TEST_QUICK=1; fi
export MEMSCOPE_TEST_QUICK=${MEMSCOPE_TEST_QUICK:-0}
case $BUILD in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
export MEMSCOPE_LIB=${MEMSCOPE_LIB:-$BUILD/libmemscope.so}
export BUILD
ulimit -c 0 2>/dev/null || true

if [ ! -f "$BUILD/libmemscope.so" ]; then
    echo "run.sh: $BUILD/libmemscope.so not found; run 'make all' first"
    echo "0 passed, 1 failed"
    exit 1
fi

pass=0; fail=0; failed_names=()
start_all=$SECONDS

# run_one NAME TIMEOUT CMD...: run, show indented output, count the result.
run_one() {
    local name=$1 limit=$2 t0=$SECONDS rc log
    shift 2
    log=$(mktemp "${TMPDIR:-/tmp}/memscope-test.XXXXXX")
    echo "=== $name"
    timeout -k 10 "$limit" "$@" >"$log" 2>&1 </dev/null
    rc=$?
    sed 's/^/  | /' "$log"
    rm -f "$log"
    if [ "$rc" -eq 0 ]; then
        pass=$((pass + 1)); echo "--- PASS $name ($((SECONDS - t0)) s)"
    else
        fail=$((fail + 1)); failed_names+=("$name")
        if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
            echo "--- FAIL $name: timed out after $limit s"
        elif [ "$rc" -gt 128 ]; then
            echo "--- FAIL $name: killed by signal $(kill -l $((rc - 128)) 2>/dev/null || echo $((rc - 128))) ($((SECONDS - t0)) s)"
        else
            echo "--- FAIL $name: exit $rc ($((SECONDS - t0)) s)"
        fi
    fi
}

selected() { [ -z "${TEST_FILTER:-}" ] || [[ $1 =~ $TEST_FILTER ]]; }

echo "memscope tests (quick=$MEMSCOPE_TEST_QUICK, $(nproc 2>/dev/null || echo ?) cpus)"
for bin in "$BUILD"/tests/test_*; do
    if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then continue; fi
    case $bin in *.d|*.o|*.dSYM) continue ;; esac
    name=$(basename "$bin")
    selected "$name" || continue
    limit=${TEST_TIMEOUT:-300}
    [ "$name" = test_stress ] && limit=${TEST_TIMEOUT:-600}
    run_one "$name" "$limit" "$bin"
    # Variants that run the scavenger flat out (it returns idle pages as soon
    # as they are freed), racing it against allocation, thread exit and fork.
    case $name in
    test_stress|test_api)
        run_one "${name}[MEMSCOPE=scavenge_delay_ms=0]" "$limit" env MEMSCOPE=scavenge_delay_ms=0 "$bin"
        # and the heap profiler recording every allocation: sampled blocks
        # freed across threads, moved by realloc, inherited across fork
        run_one "${name}[MEMSCOPE=profile_rate=1]" "$limit" env MEMSCOPE=profile_rate=1 "$bin" ;;
    esac
done
for sh in tests/test_*.sh; do
    [ -f "$sh" ] || continue
    name=$(basename "$sh")
    selected "$name" || continue
    run_one "$name" "${TEST_TIMEOUT:-600}" bash "$sh"
done

echo
echo "ran $((pass + fail)) test programs in $((SECONDS - start_all)) s"
if [ "$fail" -gt 0 ]; then echo "failed: ${failed_names[*]}"; fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
