#!/usr/bin/env bash
# test_pysuite.sh: CPython's own regression tests under memscope.
#
# Why: CPython's test suite is one of the most thorough exercises of a
# malloc there is: containers grown and shrunk in every pattern, bytes and
# strings of every size, pickling, compression, threads, weak references and
# the cycle collector.  With PYTHONMALLOC=malloc every allocation (not just
# those above pymalloc's 512-byte limit) reaches malloc, i.e. memscope.  The
# modules come from Debian's libpython3.11-testsuite for /usr/bin/python3.11.
#
# Each module list runs twice with `python3.11 -m test`: first without
# memscope (the baseline: which modules pass here), then with
# LD_PRELOAD=libmemscope.so (worker processes inherit it).  Every module
# that passes in the baseline must pass under memscope, and the count of
# individual tests run (from --junit-xml) must be the same.  A module that
# fails in the baseline is a broken environment and fails this test too.
# Under memscope the run is repeated with the profiler recording every
# allocation (MEMSCOPE=profile_rate=1).  Not with the HTTP server: its
# "memscope: serving ..." line on stderr fails every test that checks a
# child's stderr is empty (test_json's json.tool tests, for one); the HTTP
# server runs under the redis, fork and stress tests instead.
#
# `make test` runs a quick list of 7 fast modules; MEMSCOPE_STRESS=1
# (make stress) runs the full list of 46 modules.
set -u
. "$(dirname "$0")/prelude.sh"
PY=/usr/bin/python3.11
[ -f "$LIB" ] || { echo "FAIL: $LIB missing (make lib)"; exit 1; }
[ -x "$PY" ] || { echo "FAIL: $PY missing (scripts/install-deps.sh)"; exit 1; }
if [ ! -f /usr/lib/python3.11/test/test_list.py ]; then
    echo "FAIL: CPython's test suite is not installed (libpython3.11-testsuite; scripts/install-deps.sh)"
    exit 1
fi
QUICK="test_list test_dict test_bytes test_heapq test_struct test_bisect test_zlib"
FULL="test_list test_dict test_set test_bytes test_unicode test_json test_re test_collections test_itertools
      test_sort test_heapq test_array test_struct test_pickle test_zlib test_hashlib test_gc test_weakref
      test_threading test_mmap test_deque test_tuple test_bisect test_string test_textwrap test_difflib
      test_decimal test_fractions test_long test_float test_format test_codecs test_marshal test_memoryview
      test_copy test_functools test_enum test_statistics test_csv test_io test_dataclasses test_ast
      test_unicodedata test_random test_operator test_math"
if [ "${MEMSCOPE_STRESS:-0}" = 1 ]; then MODS=$FULL; else MODS=$QUICK; fi
TMP=$(mktemp -d "${TMPDIR:-/tmp}/memscope-pysuite.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
fail=0

# run NAME [ENV...]: the module list, its per-module result lines and the
# junit test count into $TMP/NAME.*
run() {
    local name=$1; shift
    (cd "$TMP" && env PYTHONMALLOC=malloc PYTHONHASHSEED=0 "$@" timeout 1500 "$PY" -m test -j2 \
        --junit-xml "$TMP/$name.xml" $MODS) >"$TMP/$name.log" 2>&1
    echo $? >"$TMP/$name.rc"
    sed -n 's/.*\] \(test_[a-z_0-9]*\) \(passed\|failed\|skipped\|crashed\|.*\).*/\1 \2/p' "$TMP/$name.log" |
        awk '{print $1, $2}' | sort >"$TMP/$name.res"
    "$PY" - "$TMP/$name.xml" >"$TMP/$name.count" 2>/dev/null <<'EOF'
import sys, xml.etree.ElementTree as E
r = E.parse(sys.argv[1]).getroot()
s = list(r.iter('testsuite'))
print(sum(int(x.get('tests', 0)) for x in s), sum(int(x.get('failures', 0) or 0) + int(x.get('errors', 0) or 0) for x in s),
      sum(int(x.get('skipped', 0) or 0) for x in s))
EOF
}

run base
nmods=$(echo $MODS | wc -w)
if [ "$(cat "$TMP/base.rc")" != 0 ] || [ "$(grep -c ' passed$' "$TMP/base.res")" -ne "$nmods" ]; then
    echo "FAIL: the baseline (without memscope) does not pass: fix the environment first"
    grep -v ' passed$' "$TMP/base.res" | sed 's/^/       | /'
    tail -15 "$TMP/base.log" | sed 's/^/       | /'
    exit 1
fi
read -r base_tests _ _ <"$TMP/base.count"
echo "baseline: $nmods modules, $base_tests tests pass without memscope"

for variant in "ms:LD_PRELOAD=$LIB" "ms-profile:LD_PRELOAD=$LIB MEMSCOPE=profile_rate=1"; do
    name=${variant%%:*}
    # shellcheck disable=SC2086
    run "$name" ${variant#*:}
    read -r tests errs _ <"$TMP/$name.count" 2>/dev/null || tests=0 errs=?
    if [ "$(cat "$TMP/$name.rc")" = 0 ] && cmp -s "$TMP/base.res" "$TMP/$name.res" && [ "$tests" = "$base_tests" ] &&
        [ "$errs" = 0 ]; then
        echo "ok   $name: $nmods modules, $tests tests pass as without memscope (${variant#*:})"
    else
        fail=$((fail + 1))
        echo "FAIL $name: exit $(cat "$TMP/$name.rc"), $tests tests ($base_tests without memscope), $errs failures"
        diff "$TMP/base.res" "$TMP/$name.res" | sed 's/^/       | /'
        grep -E 'FAIL|Error|memscope:' "$TMP/$name.log" | grep -v 'serving' | head -20 | sed 's/^/       | /'
    fi
done
echo "modules: $MODS" | tr -s ' \n' ' '; echo
echo "test_pysuite: $((2 - fail)) passed, $fail failed"
[ "$fail" -eq 0 ]
