#!/usr/bin/env bash
# test_debug.sh: the API, stats and stress tests again, on the debug build
# (MEMSCOPE_DEBUG=3), where the page heap validates every free list, page-map
# end and released-page count after each operation and aborts on the first
# broken invariant.  The test binaries find libmemscope.so through their
# RUNPATH, which LD_LIBRARY_PATH overrides.
set -u
cd "$(dirname "$0")/.."
export LD_LIBRARY_PATH=$PWD/build/debug
fail=0 pass=0
if ! ldd build/tests/test_api | grep -q "build/debug/libmemscope.so"; then
    echo "FAIL: test binaries do not pick up build/debug/libmemscope.so"; exit 1
fi
for t in "test_api" "test_stats" "test_stress 4 3 2000"; do
    if out=$(timeout 300 build/tests/$t 2>&1); then
        echo "ok: $t (debug build): $(echo "$out" | tail -1)"; pass=$((pass + 1))
    else
        echo "FAIL: $t (debug build):"; echo "$out" | grep -E "FAIL|memscope:" | head -5; fail=$((fail + 1))
    fi
done
echo "test_debug: $pass passed, $fail failed"
exit $fail
