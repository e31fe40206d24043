#!/usr/bin/env bash
# test_ubsan.sh: the unit tests that link the allocator statically, with the
# allocator and the tests built under UndefinedBehaviorSanitizer.
#
# Why: the unit tests drive memscope's internals (page heap, size classes,
# profiler, symbolizer, the trust holes) directly; built by `make ubsan`
# (mk/check.mk: gcc -fsanitize=undefined -fno-sanitize-recover=all, the
# debug allocator with MEMSCOPE_DEBUG=3) any shift, overflow, misaligned
# access or bad enum load in memscope's code aborts the test with a report.
# Each binary must exit 0 with no "runtime error" line.  ASan is not used:
# these tests link memscope as the process's malloc, which ASan must own.
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fail=0; n=0
for t in tests/test_unit_*.c; do
    name=$(basename "$t" .c); bin="$BUILD/ubsan/tests/$name"
    if [ ! -x "$bin" ]; then echo "FAIL $name: $bin not built (make ubsan)"; fail=1; continue; fi
    n=$((n + 1))
    out=$("$bin" 2>&1 </dev/null); rc=$?
    if [ "$rc" -ne 0 ] || grep -q 'runtime error' <<<"$out"; then
        echo "FAIL $name under UBSan (exit $rc):"; grep -E 'runtime error|FAILED|SUMMARY' <<<"$out" | head -10
        fail=1
    else
        echo "ok   $name: $(tail -1 <<<"$out")"
    fi
done
echo "test_ubsan: $n unit tests run under UBSan"
[ "$fail" -eq 0 ]
