#!/usr/bin/env bash
# test_torture.sh: fork torture, an oversubscribed run and test_stress with
# every diagnostic on.
#
# Why: the bugs that matter most in a thread-caching allocator show only
# under contention and fork: a lock held across fork (the child hangs), a
# thread cache lost when 64 threads share 2 cores and are preempted inside
# the allocator, the profiler, tracer or HTTP server racing the heap.  Each
# run below is done twice: with diagnostics off, and with
# MEMSCOPE=trace=1,stats=1,profile_rate=1 and the HTTP server on a free
# port (scavenge_delay_ms=0 throughout, so the scavenger thread races too):
#   fork torture     build/tests/prog_forktorture: 6 threads allocate while 2
#                    fork (children allocate from threads of their own and
#                    sometimes fork again); every child must exit 0
#   oversubscribed   build/tests/test_stress with 64 threads pinned to 2 CPUs
#                    (taskset), content-verified, cross-thread frees, forks
#   stress           build/tests/test_stress at its quick size
# `make test` runs 3 s of fork torture and small sizes (about 40 s in all);
# MEMSCOPE_STRESS=1 (make stress) runs 15 s of fork torture, and the
# oversubscribed and stress runs at full size.
set -u
. "$(dirname "$0")/prelude.sh"
FT=$BUILD/tests/prog_forktorture
ST=$BUILD/tests/test_stress
for f in "$FT" "$ST"; do [ -x "$f" ] || { echo "FAIL: $f missing (make all)"; exit 1; }; done
command -v taskset >/dev/null || { echo "FAIL: taskset missing (util-linux)"; exit 1; }
if [ "${MEMSCOPE_STRESS:-0}" = 1 ]; then
    FSECS=15; OVER="64 20 1500"; STR=""          # test_stress defaults: 32 threads x 50 rounds x 1500
else
    FSECS=3; OVER="64 4 800"; STR="8 3 600"
fi
TMP=$(mktemp -d "${TMPDIR:-/tmp}/memscope-torture.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
pass=0; fail=0
DIAG="trace=1,stats=1,profile_rate=1,http=127.0.0.1:0"

# one NAME MEMSCOPE CMD...: must exit 0; with the HTTP server, it must have served.
one() {
    local name=$1 ms=$2 t0=$SECONDS; shift 2
    env MEMSCOPE="scavenge_delay_ms=0${ms:+,$ms}" timeout 900 "$@" >"$TMP/out" 2>"$TMP/err"
    local rc=$?
    if [ "$rc" -eq 0 ] && { [[ $ms != *http=* ]] || grep -q '^memscope: serving' "$TMP/err"; }; then
        pass=$((pass + 1))
        echo "ok   $name [$((SECONDS - t0)) s] $(grep -h -m1 -E '^forktorture:|passed' "$TMP/out" "$TMP/err" | head -1)"
    else
        fail=$((fail + 1))
        echo "FAIL $name: exit $rc [$((SECONDS - t0)) s]"
        grep -v '^memscope: \(gc\|scvg\|serving\)\|^gc \|^  ' "$TMP/err" | tail -10 | sed 's/^/       | /'
        tail -3 "$TMP/out" | sed 's/^/       | /'
    fi
}
for diag in "" "$DIAG"; do
    tag=${diag:+ [diagnostics on]}
    one "fork torture ${FSECS} s$tag" "$diag" "$FT" "$FSECS" 6 2
    # shellcheck disable=SC2086
    one "oversubscribed: test_stress $OVER on 2 CPUs$tag" "$diag" taskset -c 0,1 "$ST" $OVER
    # shellcheck disable=SC2086
    one "test_stress ${STR:-full size}$tag" "$diag" "$ST" $STR
done
echo "test_torture: $pass ok, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -eq 6 ]
