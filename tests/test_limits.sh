#!/usr/bin/env bash
# test_limits.sh: build/tests/test_limits under several address-space limits.
# Each limit puts reservation frontiers at different places relative to the
# growing blocks; 700 MB is where in-place growth past a reservation's end
# (a bug once) crashed.
set -u
cd "$(dirname "$0")/.."
fail=0
for lim in 300000 700000 1500000; do
    if out=$( (ulimit -v "$lim"; exec build/tests/test_limits) 2>&1 ); then
        echo "ok: ulimit -v $lim"
    else
        echo "FAIL: ulimit -v $lim: $(echo "$out" | tail -3)"
        fail=$((fail + 1))
    fi
done
echo "test_limits: $((3 - fail)) passed, $fail failed"
exit $fail
