#!/usr/bin/env bash
# test_profile.sh: the heap profiler end to end (src/prof), read by the real
# `go tool pprof` and by `memscope report`.
#
# tests/prof/sites.c is built as Debian builds programs (PIE, -O2,
# -fomit-frame-pointer, so stacks need DWARF unwinding) with allocation
# sites whose totals it writes down itself: two static functions of the
# executable, one function of a shared library it links, one of a library
# it dlopens.  Checks:
#   - default rate: each site's four figures (alloc/inuse objects/space)
#     lie within the sampling error of the truth (tests/prof/check_sites.py)
#     as go tool pprof reads them, and memscope report agrees;
#   - profile_rate=1: every figure is exact, in the protobuf profile and in
#     the debug=1 text (which go tool pprof parses too), whose header and
#     MemStats trailer follow Go's format;
#   - peak: the peak profile names the site that was largest at the peak,
#     the in-use profile the one largest at the end; at profile_rate=1 it
#     gives each site's bytes at the peak exactly (tests/prof/peak_walk.c);
#   - fork: heapprofile=...%p... gives parent and child each their own file,
#     and only the child's holds the child's site;
#   - leaks=1 names the leaking site with its exact bytes, leaks=exit exits
#     23, and a program that frees everything reports nothing;
#   - dlopen/dlclose and fork racing stack capture at rate 1 neither
#     deadlock nor crash (tests/prof/dlstress.c);
#   - a program exporting a deflateReset of its own still gets a gzipped
#     profile, and its function is never called (tests/prof/zlib_own.c);
#   - compressed DWARF gives file:line while it inflates to at most 4 MiB,
#     and names alone past that (tests/prof/inflate.c);
#   - captures on a deep stack do not prove its pages readable again and
#     again (tests/prof/deep.c, system calls counted with strace).
# Needs cc and go (Debian golang-go; scripts/install-deps.sh).
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
LIB=$(realpath "$BUILD/libmemscope.so" 2>/dev/null)
MS=$BUILD/memscope
CC=${CC:-cc}
failures=0
checks=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { checks=$((checks + 1)); }
for f in "$LIB" "$MS"; do [ -e "$f" ] || { echo "FAIL: $f missing (run 'make all' first)"; exit 1; }; done
command -v go >/dev/null || { echo "FAIL: go not found (apt-get install golang-go)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export GOCACHE=$tmp/gocache HOME=${HOME:-$tmp}

# --- build the program the way a distribution would
FLAGS="-O2 -g -fomit-frame-pointer -fno-ipa-icf -fPIE"
$CC $FLAGS -fPIC -shared tests/prof/sites_lib.c -o "$tmp/libsites_lib.so" || exit 1
$CC $FLAGS -fPIC -shared tests/prof/sites_dl.c -o "$tmp/libsites_dl.so" || exit 1
$CC $FLAGS -pie -DDL_PATH="\"$tmp/libsites_dl.so\"" tests/prof/sites.c -o "$tmp/sites" \
    -L"$tmp" -lsites_lib -Wl,-rpath,"$tmp" -ldl || exit 1
readelf -h "$tmp/sites" | grep -q 'DYN' || fail "sites is not a PIE"

run() { # run MEMSCOPE-value program args...
    local ms=$1; shift
    MEMSCOPE=$ms LD_PRELOAD=$LIB "$@"
}

# tops PROFILE OUTDIR TOOL: one -top listing per sample type
tops() {
    mkdir -p "$2"
    for t in alloc_objects alloc_space inuse_objects inuse_space; do
        if [ "$3" = go ]; then
            go tool pprof -top -unit=B -nodecount=200 -nodefraction=0 -edgefraction=0 -sample_index=$t "$1" >"$2/$t.top" 2>"$2/$t.err" ||
                fail "go tool pprof -sample_index=$t $1: $(head -2 "$2/$t.err")"
        else
            "$MS" report --sample-index $t --top 0 --all "$1" >"$2/$t.top" 2>"$2/$t.err" ||
                fail "memscope report --sample-index $t $1: $(head -2 "$2/$t.err")"
        fi
    done
}

check() { # check TRUTH EXACT TOOL DIR LABEL
    if python3 tests/prof/check_sites.py "$1" "$2" "$3" "$4" >"$4/check.log"; then ok
    else fail "$5:"; grep FAIL "$4/check.log"; fi
}

# --- default rate: within sampling error, go tool pprof and memscope report
run heapprofile="$tmp/def.pb.gz" "$tmp/sites" "$tmp/truth_def" >/dev/null || fail "sites (default rate) failed"
[ -s "$tmp/def.pb.gz" ] || fail "no profile written at exit"
tops "$tmp/def.pb.gz" "$tmp/def_go" go
check "$tmp/truth_def" 0 go "$tmp/def_go" "default rate, go tool pprof"
tops "$tmp/def.pb.gz" "$tmp/def_rep" report
check "$tmp/truth_def" 0 report "$tmp/def_rep" "default rate, memscope report"
go tool pprof -raw "$tmp/def.pb.gz" >"$tmp/def.raw" 2>&1
grep -q '^Period: 524288$' "$tmp/def.raw" && grep -q '^PeriodType: space bytes$' "$tmp/def.raw" && ok ||
    fail "period/period type: $(grep -i period "$tmp/def.raw")"
grep -q 'alloc_objects/count alloc_space/bytes inuse_objects/count inuse_space/bytes\[dflt\] peak_objects/count peak_space/bytes' "$tmp/def.raw" && ok ||
    fail "sample types: $(grep -m1 alloc_objects "$tmp/def.raw")"
grep -Eq "^[0-9]+: 0x[0-9a-f]+/0x[0-9a-f]+/0x[0-9a-f]+ $tmp/sites [0-9a-f]{40} \[FN\]" "$tmp/def.raw" && ok ||
    fail "no mapping with build ID and functions for the executable"

# --- the encoder's golden bytes (tests/test_unit_prof.c) as go tool pprof reads them
g=$(go tool pprof -raw tests/data/golden_profile.pb 2>&1)
grep -Eq '^ +10 +10240 +6 +6144 +8 +8192: 1 2 3 $' <<<"$g" && grep -Eq '^ +4 +3670016 +4 +3670016 +0 +0: 1 4 $' <<<"$g" &&
    grep -q 'inuse_space/bytes\[dflt\]' <<<"$g" && ok || fail "golden profile as read by go tool pprof: $g"

# --- rate 1: exact, in protobuf and in the debug=1 text
run profile_rate=1,heapprofile="$tmp/one.pb.gz" env SITES_TEXT="$tmp/one.txt" "$tmp/sites" "$tmp/truth_one" >/dev/null ||
    fail "sites (rate 1) failed"
tops "$tmp/one.pb.gz" "$tmp/one_go" go
check "$tmp/truth_one" 1 go "$tmp/one_go" "rate 1, go tool pprof"
tops "$tmp/one.pb.gz" "$tmp/one_rep" report
check "$tmp/truth_one" 1 report "$tmp/one_rep" "rate 1, memscope report"
if [ -s "$tmp/one.txt" ]; then
    head -1 "$tmp/one.txt" | grep -Eq '^heap profile: [0-9]+: [0-9]+ \[[0-9]+: [0-9]+\] @ heap/2$' && ok ||
        fail "debug=1 header: $(head -1 "$tmp/one.txt")"
    grep -Eq '^[0-9]+: [0-9]+ \[[0-9]+: [0-9]+\] @( 0x[0-9a-f]+)+$' "$tmp/one.txt" && ok || fail "debug=1 records"
    grep -Eq $'^#\t0x[0-9a-f]+\tkeep_site[.a-z0-9]*\\+0x[0-9a-f]+\t.*sites\\.c:[0-9]+$' "$tmp/one.txt" && ok ||
        fail "debug=1 frame line for keep_site: $(grep -m1 keep_site "$tmp/one.txt")"
    for k in Alloc TotalAlloc Sys Mallocs Frees HeapAlloc HeapSys HeapIdle HeapInuse HeapReleased HeapObjects NextGC NumGC; do
        grep -Eq "^# $k = [0-9]+$" "$tmp/one.txt" || fail "debug=1 trailer lacks '# $k = N'"
    done
    grep -q '^# runtime.MemStats$' "$tmp/one.txt" && ok || fail "no '# runtime.MemStats' line"
    mkdir -p "$tmp/txt"
    if python3 tests/prof/check_sites.py "$tmp/truth_one" 1 text "$tmp/one.txt" >"$tmp/txt/check.log"; then ok
    else fail "rate 1, debug=1 text:"; grep FAIL "$tmp/txt/check.log"; fi
    # go tool pprof reads the text too, with the header's in-use total
    tot=$(head -1 "$tmp/one.txt" | sed -E 's/^heap profile: [0-9]+: ([0-9]+) .*/\1/')
    got=$(go tool pprof -top -unit=B -nodefraction=0 "$tmp/one.txt" 2>/dev/null | sed -nE 's/^Showing nodes accounting for [0-9]+B, [0-9.]+% of ([0-9]+)B total$/\1/p')
    [ -n "$tot" ] && [ "$tot" = "$got" ] && ok || fail "go tool pprof on the debug=1 text: total '$got', header says '$tot'"
else
    fail "no debug=1 text written"
fi

# --- peak at rate 1: each site's bytes at the moment the heap held the most,
# exactly (tests/prof/peak_walk.c writes down its own count)
$CC -O1 -g tests/prof/peak_walk.c -o "$tmp/peak_walk" || exit 1
run profile_rate=1,heapprofile="$tmp/walk.pb.gz" "$tmp/peak_walk" "$tmp/walk_truth" || fail "peak_walk failed"
go tool pprof -top -unit=B -nodecount=200 -nodefraction=0 -edgefraction=0 -sample_index=peak_space "$tmp/walk.pb.gz" \
    >"$tmp/walk.top" 2>&1
while read -r fn want; do
    got=$(awk -v f="$fn" '$NF == f {sub(/B$/, "", $1); print $1}' "$tmp/walk.top")
    [ "$got" = "$want" ] && ok || fail "peak_space of $fn at rate 1: '$got', want $want"
done <"$tmp/walk_truth"
[ "$(wc -l <"$tmp/walk_truth")" = 3 ] && ok || fail "peak_walk wrote no truth"

# --- peak
run heapprofile="$tmp/peak.pb.gz" "$tmp/sites" peak >/dev/null || fail "sites peak failed"
top_of() { go tool pprof -top -sample_index="$2" "$1" 2>/dev/null | awk '/flat%/{getline; print $NF; exit}'; }
p=$(top_of "$tmp/peak.pb.gz" peak_space); i=$(top_of "$tmp/peak.pb.gz" inuse_space)
[[ $p == peak_site* ]] && ok || fail "peak_space top is '$p', want peak_site"
[[ $i == end_site* ]] && ok || fail "inuse_space top is '$i', want end_site"
r=$("$MS" report --peak "$tmp/peak.pb.gz" 2>&1)
grep -q peak_site <<<"$(echo "$r" | grep -A1 'flat%' | tail -1)" && ok || fail "memscope report --peak: $r"

# --- fork: one file per process
run heapprofile="$tmp/fork.%p.pb.gz" "$tmp/sites" fork >/dev/null || fail "sites fork failed"
n=$(ls "$tmp"/fork.*.pb.gz 2>/dev/null | wc -l)
[ "$n" = 2 ] && ok || fail "fork: $n profiles, want 2 (parent and child)"
withchild=0
for f in "$tmp"/fork.*.pb.gz; do
    go tool pprof -top -sample_index=inuse_space "$f" 2>/dev/null | grep -q child_site && withchild=$((withchild + 1))
done
[ "$withchild" = 1 ] && ok || fail "fork: child_site in $withchild profiles, want exactly the child's"

# --- leaks at exit
# (leak_site's blocks of 1000-1002 bytes, at profile_rate=1: 1016 usable
# bytes each, the rest of the 1024-byte class being the block's record,
# src/prof/sample.c "Records in the tail"; the profile counts usable bytes)
out=$(run profile_rate=1,leaks=1 "$tmp/sites" leak 2>&1 >/dev/null); rc=$?
[ $rc = 0 ] && ok || fail "leaks=1 changed the exit status to $rc"
grep -q 'leak_site' <<<"$out" && grep -q 'SUMMARY: 3048 bytes (3.0 KiB) in 3 blocks still allocated at exit' <<<"$out" && ok ||
    fail "leaks=1 report: $out"
grep -Eq 'leak_site[^ ]* .*sites\.c:[0-9]+' <<<"$out" && ok || fail "leaks=1: no file:line for leak_site: $out"
out=$(run profile_rate=1,leaks=exit "$tmp/sites" leak 2>&1 >/dev/null); rc=$?
[ $rc = 23 ] && ok || fail "leaks=exit with a leak: exit $rc, want 23"
out=$(run profile_rate=1,leaks=exit "$tmp/sites" noleak 2>&1 >/dev/null); rc=$?
[ $rc = 0 ] && ok || fail "leaks=exit without a leak: exit $rc, want 0 ($out)"
grep -q 'no blocks still allocated at exit' <<<"$out" && ok || fail "noleak report: $out"
o=$(run profile_rate=1,leaks=exit "$tmp/sites" leak 2>/dev/null)
[ "$o" = "leak: done" ] && ok || fail "leaks=exit lost the program's output: '$o'"
# at the default (sampled) rate the leaks may have no sampled stack, but the
# count is exact: the report says how many, and leaks=exit still fails
out=$(run leaks=exit "$tmp/sites" leak 2>&1 >/dev/null); rc=$?
[ $rc = 23 ] && ok || fail "leaks=exit, sampled, with a leak: exit $rc, want 23 ($out)"
grep -Eq '[0-9]+ block\(s\), [0-9]+ bytes, still allocated at exit \(exact\)' <<<"$out" && ok || fail "sampled leaks report: $out"

# --- depth: 64 frames kept, the rest dropped and said so
out=$(run profile_rate=1,leaks=1 "$tmp/sites" deep 2>&1 >/dev/null)
grep -q '^    #63 .*deep_site' <<<"$out" && ! grep -q '^    #64 ' <<<"$out" && grep -q 'deeper frames not recorded' <<<"$out" && ok ||
    fail "deep stack: want frames #0-#63 and a truncation note: $(head -5 <<<"$out")"

# --- C++: demangled where people read, linkage name kept in the pprof file
if command -v ${CXX:-c++} >/dev/null; then
    ${CXX:-c++} -O2 -g -fomit-frame-pointer tests/prof/sites_cxx.cc -o "$tmp/cxx" || exit 1
    out=$(run profile_rate=1,leaks=1,heapprofile="$tmp/cxx.pb.gz" "$tmp/cxx" 2>&1 >/dev/null)
    grep -q 'in shapes::Widget::make(int) .*sites_cxx.cc:[0-9]' <<<"$out" && ok || fail "C++ leak report not demangled: $out"
    "$MS" report --inuse "$tmp/cxx.pb.gz" | grep -q 'shapes::Widget::make' && ok || fail "memscope report: C++ name not demangled"
    go tool pprof -raw "$tmp/cxx.pb.gz" 2>/dev/null | grep -q '_ZN6shapes6Widget4makeEi' && ok ||
        fail "pprof file lacks the linkage name _ZN6shapes6Widget4makeEi"
else
    fail "no C++ compiler"
fi

# --- a heapprofile path that is not a regular file is written through,
# never replaced (a rename once put a file in place of /dev/null): a FIFO
# with a reader gets the profile, one without is refused with one line, and
# a symbolic link stays a link to the rewritten file
mkfifo "$tmp/fifo"
exec 7<>"$tmp/fifo" # a reader from the start; the profile waits in the pipe's buffer
run profile_rate=1,heapprofile="$tmp/fifo" "$tmp/sites" leak >/dev/null 2>&1
dd iflag=nonblock bs=1M count=1 <&7 >"$tmp/from_fifo" 2>/dev/null
exec 7<&-
[ -p "$tmp/fifo" ] && "$MS" report --inuse "$tmp/from_fifo" | grep -q leak_site && ok ||
    fail "heapprofile=FIFO: not written through the FIFO (or the FIFO replaced)"
err=$(run profile_rate=1,heapprofile="$tmp/fifo" "$tmp/sites" leak 2>&1 >/dev/null); rc=$?
[ $rc = 0 ] && [ -p "$tmp/fifo" ] && [ "$(printf '%s\n' "$err" | grep -c 'FIFO with no reader')" = 1 ] && ok ||
    fail "heapprofile=FIFO without a reader: exit $rc, $err"
echo old >"$tmp/target.pb.gz"; ln -s target.pb.gz "$tmp/link"
run profile_rate=1,heapprofile="$tmp/link" "$tmp/sites" leak >/dev/null 2>&1
[ -L "$tmp/link" ] && "$MS" report --inuse "$tmp/target.pb.gz" | grep -q leak_site && ok ||
    fail "heapprofile=symlink: the link was replaced or its file not rewritten"

# --- the same through memscope run's flags
rm -f "$tmp"/run.*.pb.gz
"$MS" run --profile-rate 1 --heapprofile "$tmp/run.%p.pb.gz" --leaks=exit -- "$tmp/sites" leak >/dev/null 2>"$tmp/run.err"; rc=$?
[ $rc = 23 ] && ok || fail "memscope run --leaks=exit: exit $rc, want 23"
grep -q 'leak_site' "$tmp/run.err" && ok || fail "memscope run --leaks: no report: $(cat "$tmp/run.err")"
f=$(ls "$tmp"/run.*.pb.gz 2>/dev/null | head -1)
[ -n "$f" ] && "$MS" report --inuse "$f" | grep -q leak_site && ok || fail "memscope run --heapprofile: no profile naming leak_site"
"$MS" run --profile-rate x -- true 2>/dev/null; [ $? = 2 ] && ok || fail "--profile-rate x is not a usage error"
# past the library's range: a usage error, not a warning from the library
"$MS" run --profile-rate 2000000000000 -- true 2>/dev/null; [ $? = 2 ] && ok || fail "--profile-rate 2000000000000 is not a usage error"

# --- dlopen, dlclose and fork racing stack capture at rate 1: no deadlock, no crash
$CC -O2 -g tests/prof/dlstress.c -o "$tmp/dlstress" -lpthread -ldl || exit 1
o=$(MEMSCOPE=profile_rate=1 LD_PRELOAD=$LIB timeout 60 "$tmp/dlstress" "$tmp/libsites_dl.so" 2>&1); rc=$?
[ $rc = 0 ] && [ "$o" = "dlstress: done" ] && ok || fail "dlstress at rate 1: exit $rc: $o"

# --- a program with a deflateReset of its own (node exports its zlib): the
# gzip never calls it, and the profile is still written and readable
$CC -O2 -g -rdynamic tests/prof/zlib_own.c -o "$tmp/zlib_own" || exit 1
for ms in profile_rate=1 profile_rate=1,leaks=1; do
    rm -f "$tmp/own.pb.gz"
    err=$(run "$ms,heapprofile=$tmp/own.pb.gz" "$tmp/zlib_own" 2>&1 >/dev/null); rc=$?
    [ $rc = 0 ] && ! grep -q "deflateReset was called" <<<"$err" && "$MS" report --inuse "$tmp/own.pb.gz" | grep -q own_site &&
        go tool pprof -top "$tmp/own.pb.gz" 2>/dev/null | grep -q own_site && ok ||
        fail "program exporting deflateReset ($ms): exit $rc, $err"
done

# --- compressed DWARF: file:line while it inflates to at most 4 MiB, the
# name alone past that (tests/prof/inflate.c)
python3 -c "print('\\n'.join('#define BIG_MACRO_%d (%d + 1)' % (i, i) for i in range(150000)))" >"$tmp/defs.h"
printf '#include <stdlib.h>\n#include "defs.h"\nvoid *volatile big_kept;\n__attribute__((noinline)) void big_site(void) { big_kept = malloc(4096 + BIG_MACRO_7); }\n' >"$tmp/big.c"
printf '#include <stdlib.h>\nvoid *volatile small_kept;\n__attribute__((noinline)) void small_site(void) {\n    small_kept = malloc(4096);\n}\n' >"$tmp/small.c"
$CC -O2 -g3 -gz -fPIC -shared -I"$tmp" "$tmp/big.c" -o "$tmp/libbig.so" || exit 1
$CC -O2 -g -gz -fPIC -shared "$tmp/small.c" -o "$tmp/libsmall.so" || exit 1
$CC -O2 -g tests/prof/inflate.c -o "$tmp/inflate" -L"$tmp" -lbig -lsmall -Wl,-rpath,"$tmp" || exit 1
run profile_rate=1,heapprofile="$tmp/inflate.pb.gz" "$tmp/inflate" >/dev/null 2>&1
go tool pprof -top -lines -nodecount=100 "$tmp/inflate.pb.gz" >"$tmp/inflate.top" 2>/dev/null
grep -qE 'small_site .*small\.c:4' "$tmp/inflate.top" && ok || fail "compressed DWARF under 4 MiB: no small.c:4 for small_site: $(grep site "$tmp/inflate.top")"
grep -q 'big_site' "$tmp/inflate.top" && ! grep -q 'big\.c:' "$tmp/inflate.top" && ok ||
    fail "compressed DWARF past 4 MiB: want big_site by name only: $(grep site "$tmp/inflate.top")"

# --- a deep stack at rate 1: the pages a walk proved readable are not proved
# again by every capture (tests/prof/deep.c: 2000 captures through 23 pages)
$CC -O2 -g tests/prof/deep.c -o "$tmp/deep" || exit 1
if command -v strace >/dev/null; then
    MEMSCOPE=profile_rate=1 LD_PRELOAD=$LIB strace -f -qq -e trace=process_vm_readv -o "$tmp/deep.trace" "$tmp/deep" >/dev/null 2>&1
    n=$(grep -c process_vm_readv "$tmp/deep.trace")
    [ "$n" -lt 200 ] && ok || fail "deep stack at rate 1: $n process_vm_readv calls for 2000 captures"
else
    fail "strace not found (apt-get install strace)"
fi

echo "test_profile: $checks checks, $failures failed"
exit $((failures > 0))
