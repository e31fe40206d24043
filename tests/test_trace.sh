#!/usr/bin/env bash
# test_trace.sh: the MEMSCOPE=trace=1 lines (src/cycle.c, src/scavenger.c).
#
# Runs the examples and a small helper under memscope and checks stderr:
#   - every trace line matches its format exactly, start of line to end:
#       gc N @S.SSSs: A->B->C MB, G MB goal, S MB sys, I MB idle, R MB released, X MB rss, T threads[ (forced)]
#       scvgN: inuse: #, idle: #, sys: #, released: #, consumed: # (MB), lock: # us[ (forced)]
#       scvgN: # MB released
#   - gc numbers are 1, 2, 3, ... and scvg numbers 0, 1, 2, ... with no gap,
#     times never go back, and the numbers are consistent (A <= B, C <= B,
#     released <= idle <= sys, consumed = sys - released);
#   - demo1 (a 256 MB array grown by doubling, then freed) prints a gc line per
#     doubling and, after the free, an scvg line releasing about 256 MB;
#   - examples/forced (memscope_free_os_memory) prints a gc line and an scvg
#     line ending in "(forced)", with everything idle released;
#   - with the program's stdout and stderr in the same file and a thread
#     writing stdout lines all the time, no trace line is split or mixed
#     with program output;
#   - no trace line at all without trace=1 (unset, trace=0), and
#     `memscope run --trace` turns it on;
#   - a program that puts a file of its own on descriptor 2, or on every
#     descriptor, finds only its own data in them (memscope's lines go to
#     the stderr it started with, or nowhere).
# Run from the repository root after `make all`.  Prints one line per failed
# check; exit status = number of failures.
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
LIB=$(realpath "$BUILD/libmemscope.so" 2>/dev/null)
EX=$BUILD/examples
CC=${CC:-cc}
failures=0
checks=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { checks=$((checks + 1)); }

for f in "$LIB" "$EX/demo1" "$EX/demo_nodes" "$EX/forced" "$BUILD/memscope"; do
    if [ ! -e "$f" ]; then echo "FAIL: $f missing (run 'make all' first)"; exit 1; fi
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

GC_RE='^gc [0-9]+ @[0-9]+\.[0-9]{3}s: [0-9]+->[0-9]+->[0-9]+ MB, [0-9]+ MB goal, [0-9]+ MB sys, [0-9]+ MB idle, [0-9]+ MB released, [0-9]+ MB rss, [0-9]+ threads( \(forced\))?$'
SCVG_RE='^scvg[0-9]+: inuse: [0-9]+, idle: [0-9]+, sys: [0-9]+, released: [0-9]+, consumed: [0-9]+ \(MB\), lock: [0-9]+ us( \(forced\))?$'
SCVG_REL_RE='^scvg[0-9]+: [0-9]+ MB released$'

# trace_lines FILE: the lines that look like trace output (anywhere in a line,
# so a trace line glued to other text is caught by the format checks).
trace_lines() { grep -aE '(^|[^a-z])(gc [0-9]+ @|scvg[0-9]+:)' "$1"; }

# check_formats NAME FILE: every trace-looking line matches one format.
check_formats() {
    local name=$1 file=$2 bad
    ok
    bad=$(trace_lines "$file" | grep -avE "$GC_RE|$SCVG_RE|$SCVG_REL_RE")
    if [ -n "$bad" ]; then
        fail "$name: trace lines not in the documented format:"
        printf '%s\n' "$bad" | head -5 | sed 's/^/    /'
    fi
}

# check_sequence NAME FILE: gc numbers 1,2,3..., scvg numbers 0,1,2... (the
# "N MB released" line and the summary line of one pass share a number),
# times non-decreasing, fields consistent.
check_sequence() {
    local name=$1 file=$2 msg
    ok
    msg=$(grep -aE "$GC_RE|$SCVG_RE|$SCVG_REL_RE" "$file" | awk '
        /^gc / {
            n = $2 + 0; t = substr($3, 2) + 0
            split($4, abc, "->"); a = abc[1] + 0; b = abc[2] + 0; c = abc[3] + 0
            goal = $6; sys = $9; idle = $12; rel = $15
            if (n != ngc + 1) { print "gc number " n " after " ngc; exit }
            if (t < lastt) { print "gc " n ": time " t " before " lastt; exit }
            if (a > b || c > b) { print "gc " n ": want A <= B and C <= B in " $4; exit }
            if (rel > idle || idle > sys) { print "gc " n ": want released <= idle <= sys"; exit }
            ngc = n; lastt = t; next
        }
        /^scvg[0-9]+: [0-9]+ MB released$/ {
            s = substr($1, 5) + 0
            if (s != nscvg) { print "scvg number " s ", want " nscvg; exit }
            pending = 1; next
        }
        /^scvg/ {
            s = substr($1, 5) + 0
            if (s != nscvg) { print "scvg number " s ", want " nscvg; exit }
            inuse = $3 + 0; idle = $5 + 0; sys = $7 + 0; rel = $9 + 0; cons = $11 + 0
            if (rel > sys || idle > sys) { print "scvg" s ": want released, idle <= sys: " $0; exit }
            if (cons != sys - rel && cons != sys - rel + 1 && cons + 1 != sys - rel) {
                print "scvg" s ": consumed " cons " != sys - released " sys - rel; exit
            }
            nscvg++; pending = 0; next
        }
        END { if (pending) print "scvg" nscvg ": \"MB released\" line without its summary line" }')
    if [ -n "$msg" ]; then fail "$name: $msg"; fi
}

# --- demo1: a gc line per doubling, an scvg line after the free ------------
MEMSCOPE=trace=1 LD_PRELOAD=$LIB "$EX/demo1" 2 >"$tmp/d1.out" 2>"$tmp/d1.err"
rc=$?
ok; [ "$rc" -eq 0 ] || fail "demo1 exited $rc"
check_formats demo1 "$tmp/d1.err"
check_sequence demo1 "$tmp/d1.err"
ngc=$(grep -acE "$GC_RE" "$tmp/d1.err")
ok; [ "$ngc" -ge 4 ] || fail "demo1: want at least 4 gc lines (the heap doubles up to 256 MB), got $ngc"
ok
if ! grep -aqE '^gc [0-9]+ @[0-9.]+s: [0-9]+->2(5[5-9]|6[0-9])->2(5[5-9]|6[0-9]) MB' "$tmp/d1.err"; then
    fail "demo1: want a gc line whose peak and live heap are the 256 MB array:"; grep -a '^gc' "$tmp/d1.err" | sed 's/^/    /'
fi
# the scvg line must come after "done." (the free), release ~256 MB and leave ~0 consumed
ok
if ! awk '/ done\.$/ { d = 1 } d && /^scvg[0-9]+: 2(5[0-9]|6[0-9]) MB released$/ { r = 1 }
          d && r && /^scvg[0-9]+: inuse: / { split($0, f, /[:,] */); if (f[11] + 0 <= 2) ok = 1 }
          END { exit ok ? 0 : 1 }' "$tmp/d1.err"; then
    fail "demo1: want 'scvgN: ~256 MB released' and a summary with consumed <= 2 after 'done.':"
    sed 's/^/    /' "$tmp/d1.err"
fi
ok
if grep -aq '(forced)' "$tmp/d1.err"; then fail "demo1 forces nothing, yet a (forced) line appeared"; fi

# --- forced: memscope_free_os_memory ------------------------------------
MEMSCOPE=trace=1 LD_PRELOAD=$LIB "$EX/forced" >"$tmp/f.out" 2>"$tmp/f.err"
rc=$?
ok; [ "$rc" -eq 0 ] || fail "forced exited $rc"
check_formats forced "$tmp/f.err"
check_sequence forced "$tmp/f.err"
ok
fl=$(grep -aE "$GC_RE" "$tmp/f.err" | grep -a '(forced)$')
if [ "$(printf '%s' "$fl" | grep -c .)" -ne 1 ]; then
    fail "forced: want exactly one gc line ending in (forced), got: $fl"
else
    # live heap ~0 and every idle MB released
    ok
    if ! printf '%s\n' "$fl" | awk '{ split($4, abc, "->"); if (abc[3] + 0 != 0 || $12 != $15) exit 1 }'; then
        fail "forced: want C == 0 MB live and idle == released in: $fl"
    fi
fi
ok
if ! grep -aqE '^scvg[0-9]+: inuse: 0, idle: ([0-9]+), sys: [0-9]+, released: \1, consumed: [0-9]+ \(MB\), lock: [0-9]+ us \(forced\)$' "$tmp/f.err"; then
    fail "forced: want an 'scvgN: ... (MB) (forced)' line with released == idle:"; grep -a '^scvg' "$tmp/f.err" | sed 's/^/    /'
fi
ok
if ! grep -aqE '^scvg[0-9]+: 1[0-9][0-9] MB released$' "$tmp/f.err"; then
    fail "forced: want 'scvgN: ~137 MB released' (2,000,000 x 64 bytes):"; grep -a '^scvg' "$tmp/f.err" | sed 's/^/    /'
fi
# the forced lines come between the program's 'freed:' and 'returned' lines
ok
if ! awk '/freed: / { s = 1 } s && /^gc .*\(forced\)$/ { g = 1 } g && /^scvg.*\(forced\)$/ { v = 1 }
          v && /memscope_free_os_memory\(\) returned/ { ok = 1 } END { exit ok ? 0 : 1 }' "$tmp/f.err"; then
    fail "forced: want the (forced) gc and scvg lines during the memscope_free_os_memory() call:"
    sed 's/^/    /' "$tmp/f.err"
fi

# --- interleaving: stdout and stderr into one file ---------------------------
cat >"$tmp/chatty.c" <<'EOF'
/* chatty: one thread writes stdout lines (one write each) all the time while
 * the main thread grows and frees the heap (gc lines from this thread, scvg
 * lines from the scavenger thread) and forces releases (malloc_trim). */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
static atomic_int stop;
static void *talker(void *arg) {
    (void)arg;
    char line[200];
    for (long i = 0; !atomic_load(&stop); i++) {
        int n = snprintf(line, sizeof line, "out %ld the program talks on stdout: 0123456789abcdefghijklmnopqrstuvwxyz\n", i);
        if (write(1, line, (size_t)n) != n) break;
        if (i % 50 == 0) usleep(100);
    }
    return NULL;
}
int main(void) {
    pthread_t t;
    pthread_create(&t, NULL, talker, NULL);
    for (int round = 0; round < 4; round++) {
        enum { N = 400000 };
        char **v = malloc(N * sizeof *v);
        for (int i = 0; i < N; i++) {
            v[i] = malloc(64 + (i % 4) * 16);
            memset(v[i], 1, 16);
            __asm__ volatile("" : : "g"(v[i]) : "memory"); /* keep the compiler from eliding it */
        }
        for (int i = 0; i < N; i++) free(v[i]);
        free(v);
        struct timespec ts = {0, 150 * 1000 * 1000}; /* > scavenge_delay_ms=50: the scavenger runs */
        nanosleep(&ts, NULL);
        if (round % 2) malloc_trim(0);
    }
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    return 0;
}
EOF
ok
if ! "$CC" -O1 -pthread -o "$tmp/chatty" "$tmp/chatty.c" 2>"$tmp/cc.err"; then
    fail "could not build the interleaving helper: $(head -3 "$tmp/cc.err")"
else
    MEMSCOPE=trace=1,scavenge_delay_ms=50 LD_PRELOAD=$LIB "$tmp/chatty" >"$tmp/mix.txt" 2>&1
    rc=$?
    ok; [ "$rc" -eq 0 ] || fail "chatty exited $rc"
    nout=$(grep -ac '^out ' "$tmp/mix.txt")
    ntr=$(grep -acE "$GC_RE|$SCVG_RE|$SCVG_REL_RE" "$tmp/mix.txt")
    ok
    if [ "$nout" -lt 1000 ] || [ "$ntr" -lt 6 ]; then
        fail "interleaving: want >= 1000 program lines and >= 6 trace lines, got $nout and $ntr"
    fi
    ok
    if ! grep -aq '(forced)$' "$tmp/mix.txt" || ! grep -aqE '^scvg[0-9]+: inuse: .*\(MB\), lock: [0-9]+ us$' "$tmp/mix.txt"; then
        fail "interleaving: want both background and (forced) scvg lines"
    fi
    # every line is a whole program line or a whole trace line
    bad=$(grep -avE "^out [0-9]+ the program talks on stdout: 0123456789abcdefghijklmnopqrstuvwxyz$|$GC_RE|$SCVG_RE|$SCVG_REL_RE" "$tmp/mix.txt")
    ok
    if [ -n "$bad" ]; then
        fail "interleaving: lines split or mixed with program output:"; printf '%s\n' "$bad" | head -5 | sed 's/^/    /'
    fi
    check_sequence interleaving "$tmp/mix.txt"
fi

# --- off unless asked --------------------------------------------------------
for m in UNSET trace=0 trace=off stats=0; do
    if [ "$m" = UNSET ]; then
        env -u MEMSCOPE LD_PRELOAD="$LIB" "$EX/forced" >"$tmp/off.out" 2>"$tmp/off.err"
    else
        MEMSCOPE=$m LD_PRELOAD=$LIB "$EX/forced" >"$tmp/off.out" 2>"$tmp/off.err"
    fi
    ok
    if trace_lines "$tmp/off.err" >/dev/null || trace_lines "$tmp/off.out" >/dev/null; then
        fail "MEMSCOPE=$m: trace lines printed without trace=1:"; trace_lines "$tmp/off.err" | head -3 | sed 's/^/    /'
    fi
    ok
    grep -q 'memscope loaded' "$tmp/off.err" || fail "MEMSCOPE=$m: memscope not loaded"
done
"$BUILD/memscope" run --trace -- "$EX/forced" >"$tmp/cli.out" 2>"$tmp/cli.err"
ok
grep -aqE "$GC_RE" "$tmp/cli.err" || fail "memscope run --trace: no gc line on stderr"
check_formats cli "$tmp/cli.err"

# A program that closes its stderr and opens a data file there (fd 2), and
# one that closes every descriptor and opens files on all of them: memscope's
# lines (trace, stats, leaks=1 at exit) go to the stderr the program started
# with, or nowhere, never into the program's files.
cat >"$tmp/reuse2.c" <<'EOF2'
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc > 2) for (int fd = 0; fd < 64; fd++) close(fd);
    else close(2);
    int fd = -1;
    for (int i = 0; i < (argc > 2 ? 16 : 1); i++) {
        char name[4096];
        snprintf(name, sizeof name, "%s.%d", argv[1], i);
        fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (write(fd, "DATA\n", 5) != 5) return 1;
    }
    char *b[48];
    for (int i = 0; i < 48; i++) memset(b[i] = malloc(1 << 20), 1, 1 << 20); /* gc lines */
    for (int i = 0; i < 48; i++) free(b[i]);
    usleep(300000);
    return 0;
}
EOF2
if "$CC" -O1 -o "$tmp/reuse2" "$tmp/reuse2.c" 2>"$tmp/cc2.err"; then
    for mode in one all; do
        arg=; [ "$mode" = all ] && arg=x
        rm -f "$tmp/data".*
        env LD_PRELOAD="$LIB" MEMSCOPE=trace=1,stats=1,leaks=1 "$tmp/reuse2" "$tmp/data" $arg >/dev/null 2>"$tmp/reuse.err"
        ok
        bad=$(for f in "$tmp/data".*; do [ "$(cat "$f")" = DATA ] || echo "$f"; done)
        [ -z "$bad" ] || { fail "stderr reused ($mode): memscope wrote into the program's file(s): $bad"; head -3 $bad | sed 's/^/    /'; }
        if [ "$mode" = one ]; then
            ok
            grep -aqE "$GC_RE" "$tmp/reuse.err" || fail "stderr reused (one): the gc lines did not reach the original stderr"
        fi
    done
else
    fail "cannot build the stderr-reuse helper"; cat "$tmp/cc2.err"
fi

echo "test_trace: $checks checks, $failures failed"
exit "$failures"
