#!/usr/bin/env bash
# test_options.sh: the MEMSCOPE variable (src/options.c).
#
# A small helper (built here with cc, not linked with memscope, run under
# LD_PRELOAD) allocates 8 MB, which ends a heap cycle, and prints the
# scavenge_delay_ms that memscope_read_stats reports.  So one run shows both
# keys' effective values: "delay=N" on stdout, and a "gc 1 @..." line on
# stderr if and only if trace is on.  For every MEMSCOPE value below:
#   - the program runs on and exits 0;
#   - stderr has exactly the expected number of warning lines, each starting
#     "memscope: MEMSCOPE", naming the key (or item) and, for a bad value,
#     what is accepted; and nothing else;
#   - the defaults (trace off, scavenge_delay_ms 1000) are kept for bad
#     items, good items next to a bad one still apply.
# Run from the repository root after `make all`.  Prints one line per failed
# check; exit status = number of failures.
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
LIB=$(realpath "$BUILD/libmemscope.so" 2>/dev/null)
CC=${CC:-cc}
failures=0
checks=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { checks=$((checks + 1)); }

if [ ! -e "$LIB" ]; then echo "FAIL: $BUILD/libmemscope.so missing (run 'make all' first)"; exit 1; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cat >"$tmp/opt.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "memscope.h"
extern int memscope_read_stats(struct memscope_stats *) __attribute__((weak));
int main(void) {
    char *volatile p = malloc(8 << 20); /* crosses the 4 MB goal: one gc line if trace is on */
    memset(p, 1, 8 << 20);
    struct memscope_stats st;
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    if (!memscope_read_stats || memscope_read_stats(&st) != 0) { printf("memscope not loaded\n"); return 3; }
    printf("delay=%llu\n", (unsigned long long)st.scavenge_delay_ms);
    free(p);
    return 0;
}
EOF
if ! "$CC" -O1 -Iinclude -o "$tmp/opt" "$tmp/opt.c" 2>"$tmp/cc.err"; then
    echo "FAIL: could not build the helper: $(head -3 "$tmp/cc.err")"
    exit 1
fi

# run_opt VALUE: runs the helper with MEMSCOPE=VALUE; sets rc, delay, ngc,
# nwarn (lines starting "memscope: MEMSCOPE"), nother (other stderr lines).
run_opt() {
    MEMSCOPE=$1 LD_PRELOAD=$LIB "$tmp/opt" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    delay=$(sed -n 's/^delay=//p' "$tmp/out")
    ngc=$(grep -ac '^gc [0-9]* @' "$tmp/err")
    nwarn=$(grep -ac '^memscope: MEMSCOPE' "$tmp/err")
    nother=$(grep -avc -e '^memscope: MEMSCOPE' -e '^gc [0-9]* @' "$tmp/err")
}

# show VALUE: printable, short form of a MEMSCOPE value for messages.
show() {
    local v=$1
    if [ "${#v}" -gt 48 ]; then printf '%q...(%d chars)' "${v:0:40}" "${#v}"; else printf '%q' "$v"; fi
}

# expect VALUE NWARN DELAY TRACE(0/1) [PATTERN...]: each PATTERN (grep -E)
# must occur in the warning text.
expect() {
    local value=$1 want_warn=$2 want_delay=$3 want_trace=$4 desc
    shift 4
    desc="MEMSCOPE=$(show "$value")"
    run_opt "$value"
    ok; [ "$rc" -eq 0 ] || fail "$desc: exit status $rc, want 0 (stderr: $(head -c 300 "$tmp/err"))"
    ok; [ "$nwarn" -eq "$want_warn" ] || fail "$desc: $nwarn warning lines, want $want_warn: $(head -c 600 "$tmp/err")"
    ok; [ "$nother" -eq 0 ] || fail "$desc: stderr has $nother lines that are neither a warning nor a trace line: $(grep -av -e '^memscope: MEMSCOPE' -e '^gc [0-9]* @' "$tmp/err" | head -c 300)"
    ok; [ "$delay" = "$want_delay" ] || fail "$desc: scavenge_delay_ms is '$delay', want $want_delay"
    ok
    if [ "$want_trace" = 1 ] && [ "$ngc" -lt 1 ]; then fail "$desc: trace should be on, no gc line"; fi
    if [ "$want_trace" = 0 ] && [ "$ngc" -ne 0 ]; then fail "$desc: trace should be off, got $ngc gc lines"; fi
    local pat
    for pat in "$@"; do
        ok
        grep -a '^memscope: MEMSCOPE' "$tmp/err" | grep -aqE -- "$pat" ||
            fail "$desc: the warning should match /$pat/: $(head -c 200 "$tmp/err")...$(tail -c 100 "$tmp/err")"
    done
}

BOOLS='1/0, true/false, yes/no or on/off'
DUR='a number of ms'
KEYS='known keys: trace, stats, scavenge_delay_ms'

# --- good values ---------------------------------------------------------
expect "" 0 1000 0 # empty MEMSCOPE: nothing to do, no warning
expect "trace=1" 0 1000 1
expect "trace=on" 0 1000 1
expect "trace=yes" 0 1000 1
expect "trace=TRUE" 0 1000 1
expect "trace=0" 0 1000 0
expect "trace=off" 0 1000 0
expect "scavenge_delay_ms=2s" 0 2000 0
expect "scavenge_delay_ms=500ms" 0 500 0
expect "scavenge_delay_ms=250" 0 250 0
expect "scavenge_delay_ms=0" 0 0 0
expect "scavenge_delay_ms=3600000" 0 3600000 0
expect "trace=1,scavenge_delay_ms=300" 0 300 1
expect "trace=1,trace=0" 0 1000 0   # the last one wins
expect "trace=1," 0 1000 1          # trailing comma: an empty item, ignored
expect "trace=1,,scavenge_delay_ms=7" 0 7 1
expect ",,," 0 1000 0

# --- bad items: one warning each, default kept, program runs on ------------
expect "foo=1" 1 1000 0 '"foo"' "$KEYS"
expect "TRACE=1" 1 1000 0 '"TRACE"' "$KEYS"
expect "=1" 1 1000 0 "$KEYS"
expect "trace=maybe" 1 1000 0 'trace="maybe"' "$BOOLS" 'default 0'
expect "trace=" 1 1000 0 'trace=""' "$BOOLS"
expect "trace=2" 1 1000 0 'trace="2"' "$BOOLS"
expect "scavenge_delay_ms=abc" 1 1000 0 'scavenge_delay_ms="abc"' "$DUR" 'default 1000'
expect "scavenge_delay_ms=-5" 1 1000 0 'scavenge_delay_ms' "$DUR"
expect "scavenge_delay_ms=1.5s" 1 1000 0 'scavenge_delay_ms' "$DUR"
expect "scavenge_delay_ms=10m" 1 1000 0 'scavenge_delay_ms' "$DUR"
expect "scavenge_delay_ms=99999999" 1 1000 0 'scavenge_delay_ms=99999999' 'out of range' 'between 0 and 3600000' 'default 1000'
expect "scavenge_delay_ms=3600001" 1 1000 0 'scavenge_delay_ms' 'out of range'
expect "scavenge_delay_ms=99999999999999999999999" 1 1000 0 'scavenge_delay_ms' 'default 1000'
expect "trace" 1 1000 0 '"trace"' 'no value' 'key=value'
expect "scavenge_delay_ms" 1 1000 0 '"scavenge_delay_ms"' 'no value'
expect "hugepages=0" 0 1000 0
expect "hugepages=maybe" 1 1000 0 'hugepages="maybe"' "$BOOLS" 'default 1'
# bad items next to good ones: the good ones apply
expect "foo=1,scavenge_delay_ms=250" 1 250 0 '"foo"'
expect "scavenge_delay_ms=abc,trace=1" 1 1000 1 'scavenge_delay_ms="abc"'
expect "trace=maybe,bogus,scavenge_delay_ms=2s,x=y" 3 2000 0 'trace="maybe"' '"bogus"' '"x"'
# garbage bytes (no newline): one line, names what is accepted
expect $'trace=\x01\x7f\xff\xfe' 1 1000 0 'trace=' "$BOOLS"
expect $'\xff\xfe\x01=1' 1 1000 0 "$KEYS"

# --- very long values: still one line, still saying what is accepted -------
long=$(head -c 10000 /dev/zero | tr '\0' 7)
expect "scavenge_delay_ms=$long" 1 1000 0 'scavenge_delay_ms' "$DUR"
expect "trace=$(head -c 10000 /dev/zero | tr '\0' y)" 1 1000 0 'trace' "$BOOLS"
expect "k$(head -c 10000 /dev/zero | tr '\0' x)=1,scavenge_delay_ms=42" 1 42 0 "$KEYS"
# the warning for a long value stays short (a terminal line or so, not 10 KB)
run_opt "scavenge_delay_ms=$long"
ok
len=$(head -1 "$tmp/err" | wc -c)
[ "$len" -le 400 ] || fail "MEMSCOPE=scavenge_delay_ms=<10000 digits>: warning is $len bytes long, want <= 400"

# --- control characters are not passed through to the terminal -----------
# (a newline inside the value must not turn one warning into two lines, an
# ESC must not reach the terminal)
expect $'trace=1\nfoo=2' 1 1000 0 'trace='
expect $'trace=\x1b[31mred' 1 1000 0 'trace='
ok
if grep -aq $'\x1b' "$tmp/err"; then fail "MEMSCOPE=trace=ESC[31mred: the raw ESC byte is copied into the warning"; fi

# --- the CLI merges into MEMSCOPE ----------------------------------------
MEMSCOPE=scavenge_delay_ms=333 "$BUILD/memscope" run --trace -- "$tmp/opt" >"$tmp/out" 2>"$tmp/err"
ok
if ! grep -q '^delay=333$' "$tmp/out" || ! grep -q '^gc 1 @' "$tmp/err"; then
    fail "MEMSCOPE=scavenge_delay_ms=333 memscope run --trace: want delay 333 and trace on: $(cat "$tmp/out" "$tmp/err" | head -c 300)"
fi

# --- log=PATH: memscope's lines go to a file, stderr stays the program's ---
# Warnings of the same MEMSCOPE (even of an item before log=), trace lines
# and the stats summary all go there; "%p" is the pid, and a fork child
# that prints writes its own file.
cat >"$tmp/fork.c" <<'EOF2'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void) {
    char *volatile p = malloc(8 << 20);
    memset(p, 1, 8 << 20);
    free(p);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        char *volatile q = malloc(8 << 20);
        memset(q, 2, 8 << 20);
        free(q);
        exit(0);
    }
    int st = 0;
    waitpid(c, &st, 0);
    printf("child=%d\n", (int)c);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}
EOF2
if ! "$CC" -O1 -o "$tmp/fork" "$tmp/fork.c" 2>"$tmp/cc.err"; then
    fail "could not build the fork helper: $(head -3 "$tmp/cc.err")"
else
    mkdir -p "$tmp/logs"
    MEMSCOPE="bogus=1,trace=1,stats=1,log=$tmp/logs/ms.%p.log" LD_PRELOAD=$LIB "$tmp/fork" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    child=$(sed -n 's/^child=//p' "$tmp/out")
    parent_log=$(ls "$tmp"/logs/ms.*.log 2>/dev/null | grep -v "ms\.$child\.log" | head -1)
    ok; [ "$rc" -eq 0 ] || fail "log=PATH: exit status $rc, want 0"
    ok; [ ! -s "$tmp/err" ] || fail "log=PATH: stderr should be empty, has: $(head -c 300 "$tmp/err")"
    ok; [ "$(ls "$tmp/logs" | wc -l)" -eq 2 ] || fail "log=ms.%p.log: want 2 files (parent, child), have: $(ls "$tmp/logs" | tr '\n' ' ')"
    ok; [ -n "$parent_log" ] && grep -q '^memscope: MEMSCOPE key "bogus" is unknown' "$parent_log" ||
        fail "log=PATH: the parent's file lacks the warning of the item before log="
    ok; [ -n "$parent_log" ] && grep -q '^gc 1 @' "$parent_log" && grep -q '^memscope stats:' "$parent_log" ||
        fail "log=PATH: the parent's file lacks its trace line or its stats: $(head -c 300 "$parent_log" 2>/dev/null)"
    ok; grep -q '^memscope stats:' "$tmp/logs/ms.$child.log" 2>/dev/null ||
        fail "log=ms.%p.log: the fork child ($child) did not write its own file"
    # a path that cannot be opened: one line on stderr, and the lines go there
    MEMSCOPE="stats=1,log=$tmp/no/such/dir/ms.log" LD_PRELOAD=$LIB "$tmp/opt" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    ok; [ "$rc" -eq 0 ] || fail "log=<bad path>: exit status $rc, want 0"
    ok; [ "$(grep -c 'MEMSCOPE log=.*cannot be opened' "$tmp/err")" -eq 1 ] && grep -q '^memscope stats:' "$tmp/err" ||
        fail "log=<bad path>: want one 'cannot be opened' line and the stats on stderr: $(head -c 300 "$tmp/err")"
fi

# the CLI's --log gives the same
"$BUILD/memscope" run --log "$tmp/cli.log" --stats -- "$tmp/opt" >"$tmp/out" 2>"$tmp/err"
ok
if [ -s "$tmp/err" ] || ! grep -q '^memscope stats:' "$tmp/cli.log" 2>/dev/null; then
    fail "memscope run --log FILE --stats: want the stats in FILE and nothing on stderr: $(head -c 300 "$tmp/err")"
fi

# The README's table of keys is kept by hand: every key the library knows
# (as its unknown-key warning lists them) must have a row there.
known=$(MEMSCOPE=no_such_key=1 LD_PRELOAD=$LIB /bin/true 2>&1 | sed -n 's/.*(known keys: \([^)]*\)).*/\1/p' | tr -d ',')
ok; [ -n "$known" ] || fail "no list of known keys in the unknown-key warning"
for k in $known; do
    ok; grep -q "^| \`$k\` |" README.md || fail "README's MEMSCOPE table has no row for key $k"
done

echo "test_options: $checks checks, $failures failed"
exit "$failures"
