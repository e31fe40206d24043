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
# The first span a program frees leaves the heap idle and starts the
# scavenger's thread, from inside the thread cache's overflow; pthread_create
# allocates on the calling thread, and through the cache under change it
# corrupted its counts (tcache.c: ms_tcache_hide).  The debug build asserts
# that no malloc or free reaches a cache whose slow path is under way.
if out=$(LD_PRELOAD=$PWD/build/debug/libmemscope.so timeout 120 build/examples/demo_nodes 0 100 200000 2>&1); then
    echo "ok: a list built and freed starts the scavenger from a slow path (debug build)"; pass=$((pass + 1))
else
    echo "FAIL: a list built and freed (debug build):"; echo "$out" | grep "memscope:" | head -5; fail=$((fail + 1))
fi
echo "test_debug: $pass passed, $fail failed"
exit $fail
