#!/usr/bin/env bash
# test_leaks.sh: the leak checker by reachability (src/leak/), end to end.
#
# tests/leak/cases.c holds one known leak pattern per case (see its top
# comment), built plainly (-O2, PIE) and run the same way under memscope
# (LD_PRELOAD, MEMSCOPE=leaks=reachable) and under LeakSanitizer
# (LD_PRELOAD=liblsan.so.0).  Checks:
#   - each case: memscope's counts of directly and indirectly lost objects
#     are exactly the expected ones, and LSan's are the same (bytes differ:
#     memscope reports usable size, LSan the requested size; docs/LEAKS.md);
#   - exit status 23 when something is lost, 0 otherwise (as LSan);
#   - tests/leak/churn.c: live checks at the sampled rate while a global
#     table's blocks are replaced report few blocks lost (none is);
#   - tests/leak/ownsig.c: a program's own handler on the stop signal is
#     kept through checks (another real-time signal stops the threads);
#   - tests/leak/exitlost.c: a block lost just before exit is found, though
#     the exit handlers' frames lie over the dead frames of its malloc;
#   - the report names the allocating function with file:line, and a frame
#     without a line its object and the offset in it (as LSan);
#   - a thread that blocks every signal is reported as not stopped, and the
#     block on its stack (it sleeps in a system call) is still found;
#   - memscope_check_leaks() at run time, and in a fork child;
#   - tests/leak/mt.c: checks at arbitrary moments while 8 threads allocate
#     find every leak made before the check and no live block (rate 1 and
#     sampled);
#   - tests/leak/shuffle.c: the check at exit while two threads move
#     pointers between old blocks reports nothing lost, 8 runs of 8 (one
#     look reported blocks lost in 6 runs of 20, two looks in 1 of 8 under
#     load); and 6 s of live checks, one after the other, while they move
#     and replace blocks, each count nothing lost (a block allocated after
#     the stop in the slot of one freed before it, its malloc under way as
#     the classes were drawn, was counted lost in 56 of 2,000 checks before
#     the stop settled such slots, src/leak/mark.c; and a thread still
#     leaving the last stop's handler was given up as blocking the signal,
#     src/leak/roots.c, leave_wait);
#   - tests/leak/lists.c: the same while three threads move nodes between
#     linked lists; the threads stay stopped through the mark at exit and
#     the report says so (5 of 10 runs exited 23 when only the root copy
#     stopped them), and 20 live checks each count exactly the 5 blocks
#     lost (5-13 of 20 counted more before); with 800,000 nodes, more than
#     the stop can mark, 10 live checks at rate 1 and at the sampled rate
#     each count exactly 5, and at least one says it rescanned the pages
#     written during the mark to the end in one look (before the rescans,
#     every one looked twice), or, on a kernel that cannot track writes,
#     that it looked again; at the sampled rate a check that looked again
#     (its rescan stop ran out of time on a loaded machine) races with the
#     threads as documented, and its count is shown apart;
#   - tests/leak/writers.c: where the kernel can track writes, 7 live
#     checks while two threads write every page of a 96 MB heap count
#     exactly the 5 lost, and the median of the CPU time of their longest
#     mark in one stop stays under 11 ms, in a second round of 7 if the
#     first is over (on the code before the rescan of written pages read
#     the clock across ranges of pages, medians of 13-24 ms in both rounds,
#     against a 4 ms deadline);
#   - tests/leak/moving.c: at rate 1, and at the sampled rate where the
#     kernel can track writes, checks while the program moves its only
#     pointers to old blocks into blocks it just allocated report no loss;
#   - GET /debug/pprof/leaks: LSan-style text (?debug=1), JSON (?debug=2),
#     and a profile.proto that go tool pprof reads with the leaked_* types;
#   - memscope run --leaks and --leaks=reachable (the reachability check);
#     --leaks=allocated, the still-allocated list.
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
LIB=$(realpath "$BUILD/libmemscope.so" 2>/dev/null)
MS=$(realpath "$BUILD/memscope" 2>/dev/null)
CC=${CC:-cc}
LSAN=/usr/lib/x86_64-linux-gnu/liblsan.so.0
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }
note() { echo "note: $*"; }
for f in "$LIB" "$MS"; do [ -e "$f" ] || { echo "FAIL: $f missing (run 'make all' first)"; exit 1; }; done
tmp=$(mktemp -d)
HOST_PID=
trap '[ -n "$HOST_PID" ] && kill $HOST_PID 2>/dev/null; rm -rf "$tmp"' EXIT
$CC -O2 -g -std=gnu11 -Wall -Wextra -Werror tests/leak/cases.c -o "$tmp/cases" -lpthread -ldl || exit 1
$CC -O2 -g -std=gnu11 -Wall -Wextra -Werror -no-pie -fno-pie tests/leak/cases.c -o "$tmp/cases_nopie" -lpthread -ldl || exit 1
$CC -O2 -g -shared -fPIC tests/leak/dl.c -o "$tmp/libleakdl.so" || exit 1
$CC -O2 -g -std=gnu11 -Wall -Wextra -Werror tests/leak/mt.c -o "$tmp/mt" -lpthread -ldl || exit 1
$CC -O0 -g -std=gnu11 -Wall -Wextra -Werror tests/leak/exitlost.c -o "$tmp/exitlost" || exit 1
$CC -O2 -g -std=gnu11 -Wall -Wextra -Werror tests/leak/ownsig.c -o "$tmp/ownsig" -ldl || exit 1
$CC -O2 -g -std=gnu11 -Wall -Wextra -Werror tests/leak/sigalloc.c -o "$tmp/sigalloc" -ldl || exit 1
$CC -O2 -g -std=gnu11 -Wall -Wextra -Werror tests/leak/churn.c -o "$tmp/churn" -ldl -lpthread || exit 1
$CC -O2 -g -std=gnu11 -Wall -Wextra -Werror tests/leak/moving.c -o "$tmp/moving" -ldl -lpthread || exit 1
$CC -O2 -g -std=gnu11 -Wall -Wextra -Werror tests/leak/shuffle.c -o "$tmp/shuffle" -lpthread -ldl || exit 1
$CC -O2 -g -std=gnu11 -Wall -Wextra -Werror tests/leak/lists.c -o "$tmp/lists" -lpthread || exit 1
$CC -O2 -g -std=gnu11 -Wall -Wextra -Werror tests/leak/writers.c -o "$tmp/writers" -lpthread -ldl || exit 1
cd "$tmp" || exit 1

# counts FILE: "direct indirect" objects summed over the report's paragraphs
counts() {
    awk '/^(Direct|Indirect) leak of [0-9]+ byte\(s\) in [0-9]+ object\(s\)/ { n[$1] += $(NF-3) }
         END { printf "%d %d\n", n["Direct"], n["Indirect"] }' "$1"
}

have_lsan=0
if [ -e "$LSAN" ]; then have_lsan=1; else echo "note: $LSAN missing (apt-get install liblsan0): no LSan comparison"; fi
for spec in "lost 1 0" "cycle 1 4" "stack 0 0" "reg 0 0" "tls 0 0" "dl 0 0" "interior 0 0" "xor 1 0" "tail 1 0" "smalltail 1 0" "unwritten 1 0" "respan 1 0" "moved 1 0" "grown 0 0" "shrunk 1 0" "joined 0 0" "blocked 0 0" "mmap 3 0" "ustack 2 0" "all 3 4"; do
    set -- $spec
    c=$1 want="$2 $3"
    timeout 30 env LD_PRELOAD="$LIB" MEMSCOPE=leaks=reachable ./cases "$c" >/dev/null 2>"ms.$c"
    rc=$?
    got=$(counts "ms.$c")
    [ "$got" = "$want" ] && pass "$c: memscope counts $got" || { fail "$c: memscope counts '$got', want '$want'"; cat "ms.$c"; }
    wrc=0; [ "$want" != "0 0" ] && wrc=23
    [ "$rc" = "$wrc" ] && pass "$c: exit status $rc" || fail "$c: exit status $rc, want $wrc"
    if [ "$have_lsan" = 1 ]; then
        timeout 30 env LD_PRELOAD="$LSAN" ./cases "$c" >/dev/null 2>"lsan.$c"
        lgot=$(counts "lsan.$c")
        [ "$lgot" = "$got" ] && pass "$c: LeakSanitizer agrees ($lgot)" || fail "$c: LeakSanitizer counts '$lgot', memscope '$got'"
    fi
done
# usable: the bytes malloc_usable_size gave past the request are the
# program's, and read (LeakSanitizer's call gives the request alone, so it
# counts the block held there lost: docs/LEAKS.md)
timeout 30 env LD_PRELOAD="$LIB" MEMSCOPE=leaks=reachable ./cases usable >/dev/null 2>ms.usable
got=$(counts ms.usable)
[ "$got" = "0 0" ] && pass "usable: memscope counts $got" || { fail "usable: memscope counts '$got', want '0 0'"; cat ms.usable; }
# leaks_mmap=1: the program's own private memory mappings are roots too,
# shared ones only with leaks_mmap=shared, those of files never, and only
# their resident pages are read (not the 16 GiB reservation: the check must
# neither read nor fault it in); memscope's own mappings (heap, metadata)
# never are, or the other cases' leaks would hide; a stack the program gave
# a thread is a stack only up to its top (ustack)
for spec in "1 mmap 2 0" "shared mmap 1 0" "1 ustack 0 0" "1 all 3 4" "1 lost 1 0"; do
    set -- $spec
    timeout 60 env LD_PRELOAD="$LIB" MEMSCOPE=leaks=reachable,leaks_mmap=$1,stats=1 ./cases "$2" >/dev/null 2>"ms.mm$1.$2"
    got=$(counts "ms.mm$1.$2")
    [ "$got" = "$3 $4" ] && pass "leaks_mmap=$1, $2: memscope counts $got" || { fail "leaks_mmap=$1, $2: counts '$got', want '$3 $4'"; cat "ms.mm$1.$2"; }
done
kib=$(sed -n 's/.*leaks_mmap: read \([0-9]*\) KiB of the program.s own private and shared mappings.*/\1/p' ms.mmshared.mmap | head -1)
[ -n "$kib" ] && [ "$kib" -ge 4 ] && [ "$kib" -lt 65536 ] && pass "leaks_mmap read $kib KiB (resident pages only)" \
    || { fail "leaks_mmap read '${kib:-?}' KiB, want 4..65535"; grep leaks_mmap ms.mmshared.mmap; }
grep -q 'leaks_mmap: read' ms.lost && fail "leaks_mmap line without the option" || pass "no leaks_mmap line without the option"
# a live check of python3, whose objects pymalloc keeps in mmap'd arenas:
# without leaks_mmap the malloc'd buffers of live bytearrays look lost (as
# they would to LSan), with it none does
cat >pylive.py <<'PY'
import ctypes
keep = [bytearray(1000 + i) for i in range(2000)]
d = {i: str(i) * 20 for i in range(5000)}
print("lost", ctypes.CDLL(None).memscope_check_leaks(2))
PY
py0=$(timeout 60 env LD_PRELOAD="$LIB" MEMSCOPE=profile_rate=1 /usr/bin/python3 pylive.py 2>py0.err | sed -n 's/^lost //p')
py1=$(timeout 60 env LD_PRELOAD="$LIB" MEMSCOPE=profile_rate=1,leaks_mmap=1 /usr/bin/python3 pylive.py 2>py1.err | sed -n 's/^lost //p')
[ "${py0:-0}" -ge 1000 ] && [ "$py1" = 0 ] && pass "live python3: $py0 blocks lost without leaks_mmap, none with it" \
    || { fail "live python3: lost '${py0:-?}' without leaks_mmap (want 1000 or more), '${py1:-?}' with it (want 0)"; tail -3 py0.err py1.err; }
grep -q 'in touch .*cases.c:[0-9]' ms.lost && pass "report names the allocating function and line" || { fail "no frame 'touch cases.c:N'"; cat ms.lost; }
# a frame without a source line names its object and the pc's offset in
# it, as LSan does (what addr2line -e takes): _start's lies within _start,
# in a PIE and in a non-PIE executable (its addresses are absolute)
timeout 30 env LD_PRELOAD="$LIB" MEMSCOPE=leaks=reachable "$tmp/cases_nopie" lost >/dev/null 2>ms.nopie
for prog in cases:ms.lost cases_nopie:ms.nopie; do
    bin=${prog%%:*} rep=${prog#*:}
    off=$(sed -n "s/.* in _start (.*$bin+0x\([0-9a-f]*\)).*/\1/p" "$rep" | head -1)
    start=$(nm "$tmp/$bin" 2>/dev/null | awk '$3 == "_start" { print $1 }')
    if [ -n "$off" ] && [ -n "$start" ] && [ $((0x$off - 0x$start)) -ge 0 ] && [ $((0x$off - 0x$start)) -lt 64 ]; then
        pass "$bin: frame offset is addr2line's (_start at 0x$start, frame at +0x$off)"
    else
        fail "$bin: frame offset: _start at 0x${start:-?}, frame at +0x${off:-?}"; grep _start "$rep"
    fi
done
# unwritten's free of 1 MiB starts the scavenger just before the exit check:
# memscope's own thread, not one that did not stop
grep -q INCOMPLETE ms.unwritten && { fail "a thread memscope just started is reported as not stopped"; grep INCOMPLETE ms.unwritten; } \
    || pass "a scavenger started just before the check is not reported as a thread that did not stop"
# a thread that blocks the stop signal: the check is incomplete, which can
# only make blocks look lost; finding none, it says nothing at exit (as
# when complete), and with stats=1 it says that the thread did not stop
! grep -q '^memscope' ms.blocked && pass "an incomplete check at exit that finds nothing says nothing" \
    || { fail "incomplete check without leaks printed lines"; cat ms.blocked; }
timeout 30 env LD_PRELOAD="$LIB" MEMSCOPE=leaks=reachable,stats=1 ./cases blocked >/dev/null 2>ms.blocked.stats
grep -q 'INCOMPLETE: 1 thread(s) did not stop' ms.blocked.stats && pass "a thread blocking signals is reported as not stopped" \
    || { fail "blocked thread not reported"; cat ms.blocked.stats; }
grep -q 'still reachable: ' ms.lost && grep -q 'stopped for [0-9]* us' ms.lost && pass "reachable bytes and pause reported" \
    || fail "reachable/pause lines missing"
# the check at exit of `all` (other threads, leaks found) marks with the
# threads stopped and, knowing every block, looks once
grep -q 'stopped for [0-9]* us, through the mark' ms.all && ! grep -q 'the check looked' ms.all \
    && pass "exit check with threads: one look, threads stopped through the mark" \
    || { fail "exit check of all: not one look through the mark"; grep -E 'stopped|looked' ms.all; }
# a check that looks again (threads ran, and leaks_mmap's mappings are read
# after they go on): "stopped for" is the longest stop, with the number of
# stops (one per look), their sum and the longest mark in one beside it
looks=$(sed -n 's/.*the check looked \([0-9]*\) times.*/\1/p' ms.mm1.all)
set -- $(sed -n 's/.*stopped for \([0-9]*\) us (the longest of \([0-9]*\) stops; \([0-9]*\) us in all; marking \([0-9]*\) us at most in one, [0-9]* us of CPU).*/\1 \2 \3 \4/p' ms.mm1.all) x x x x
[ -n "$looks" ] && [ "$2" = "$looks" ] && [ "$1" -le "$3" ] && [ "$4" -le "$1" ] && pass "each look's stop counted: longest $1 us of $2 stops, $3 us in all, marking at most $4 us in one" \
    || { fail "stops of a check that looked ${looks:-?} times: '$*'"; grep -E 'stopped|looked' ms.mm1.all; }
# a clean, complete check at exit says nothing (as LSan: tools that read a
# program's stderr with its stdout must not see memscope), unless asked
[ ! -s ms.stack ] && pass "no leak: nothing on stderr" || { fail "no leak, yet stderr has:"; cat ms.stack; }

# a block lost just before exit (tests/leak/exitlost.c): found, as LSan finds it
timeout 30 env LD_PRELOAD="$LIB" MEMSCOPE=leaks=reachable ./exitlost >/dev/null 2>ms.exitlost
got=$(counts ms.exitlost)
[ "$got" = "1 0" ] && pass "exitlost: memscope counts $got" || { fail "exitlost: memscope counts '$got', want '1 0'"; cat ms.exitlost; }
if [ "$have_lsan" = 1 ]; then
    timeout 30 env LD_PRELOAD="$LSAN" ./exitlost >/dev/null 2>lsan.exitlost
    lgot=$(counts lsan.exitlost)
    [ "$lgot" = "1 0" ] && pass "exitlost: LSan counts $lgot" || fail "exitlost: LSan counts '$lgot', want '1 0'"
fi

# a program with its own handler on SIGRTMAX-1 keeps it through live checks
out=$(timeout 30 env LD_PRELOAD="$LIB" ./ownsig 2>ownsig.err)
[ "$out" = "handled 2 checks 0 0" ] && pass "program's own SIGRTMAX-1 handler kept: $out" || { fail "own signal handler: '$out', want 'handled 2 checks 0 0'"; cat ownsig.err; }
for mode in profile_rate=1 ""; do
    out=$(timeout 60 env LD_PRELOAD="$LIB" MEMSCOPE=$mode ./sigalloc 2>sigalloc.err); rc=$?
    [ $rc = 0 ] && [ "$out" = "sigalloc ok 1" ] &&
        pass "a timer handler that allocates during checks, profiles and stats (${mode:-defaults})" ||
        { fail "timer handler allocating during checks (${mode:-defaults}): exit $rc, '$out'"; head -3 sigalloc.err; }
done
out=$(timeout 30 env LD_PRELOAD="$LIB" ./ownsig all 2>ownsig.err); rc=$?
[ $rc = 0 ] && [ "$out" = "all checks -1 -1" ] && [ "$(grep -c 'no signal can stop' ownsig.err)" = 2 ] &&
    pass "every real-time signal taken: checks fail with one line each, the program goes on" ||
    { fail "every real-time signal taken: exit $rc, '$out'"; cat ownsig.err; }
out=$(timeout 30 env LD_PRELOAD="$LIB" MEMSCOPE=leaks=reachable ./ownsig all 2>ownsig.err); rc=$?
[ $rc = 0 ] && [ "$(grep -c 'no signal can stop' ownsig.err)" = 3 ] &&
    pass "every real-time signal taken: the check at exit says why, the status is the program's" ||
    { fail "every real-time signal taken, at exit: exit $rc"; cat ownsig.err; }

# live checks at the sampled rate while a global table's blocks are replaced
# (no leak at all): new blocks at freed blocks' addresses were reported lost,
# 137-148 at most per run; confirmed by a second copy of the roots, 14-18
# (tests/leak/churn.c).  The bound leaves room for a loaded machine.
out=$(timeout 60 env LD_PRELOAD="$LIB" ./churn 2>churn.err)
most=${out#most lost }
if [[ "$most" =~ ^[0-9]+$ ]] && [ "$most" -le 60 ]; then pass "churning table, sampled checks: $out"
else fail "churning table, sampled checks: '$out' (want at most 60)"; tail -3 churn.err; fi

# a program that never allocates (not one span in the heap): the mark once
# read past its page index on a root word of -1 (SIGSEGV at exit)
timeout 30 env LD_PRELOAD="$LIB" MEMSCOPE=leaks=reachable,stats=1 /bin/true 2>ms.true
rc=$?
if [ $rc = 0 ] && grep -q "no leaks found" ms.true; then pass "no allocation at all: exit 0, no leaks (stats=1 shows the check)"
else fail "no allocation at all: exit $rc"; cat ms.true; fi
out=$(LD_PRELOAD="$LIB" MEMSCOPE=leaks=reachable uname -m 2>&1)
[ "$out" = "$(uname -m)" ] && pass "uname with nothing lost: its output alone on stdout and stderr (cmake reads it so)" \
    || fail "uname with nothing lost: '$out'"

# memscope_check_leaks at run time (sampled profile: counts exact, stacks partial), and in a fork child
out=$(CASES_CHECK_NOW=1 timeout 30 env LD_PRELOAD="$LIB" ./cases all 2>err.now)
[ "$out" = "lost 7" ] && pass "memscope_check_leaks at run time: $out" || { fail "run-time check printed '$out', want 'lost 7'"; cat err.now; }
grep -q 'stacks recorded for' err.now && pass "sampled mode says stacks are partial" || fail "sampled-mode note missing"
out=$(CASES_FORK=1 timeout 30 env LD_PRELOAD="$LIB" ./cases cycle 2>/dev/null)
[ "$out" = "child lost 5" ] && pass "check in a fork child: $out" || fail "fork child printed '$out', want 'child lost 5'"

# checks at any moment while 8 threads allocate
for ms_env in profile_rate=1 profile_rate=524288; do
    # up to four looks per check (leak/mark.c, "More looks"): 30 s at rate 1 on 2 idle CPUs
    if timeout 150 env LD_PRELOAD="$LIB" MEMSCOPE=$ms_env ./mt 3 100 >mt.out 2>mt.err; then
        pass "8 allocating threads ($ms_env): $(tr '\n' ';' <mt.out)"
    else
        fail "8 allocating threads ($ms_env)"; cat mt.out; grep -v '^ ' mt.err | head -20
    fi
done

# the check at exit while threads move pointers between old blocks
bad=0
for i in 1 2 3 4 5 6 7 8; do
    timeout 30 env LD_PRELOAD="$LIB" MEMSCOPE=leaks=reachable ./shuffle >/dev/null 2>shuffle.err
    rc=$?
    if [ $rc != 0 ]; then bad=$((bad + 1)); cp shuffle.err shuffle.bad; fi
done
[ $bad = 0 ] && pass "exit check while threads move pointers between old blocks: nothing lost in 8 runs" \
    || { fail "exit check while threads move pointers: $bad of 8 runs reported a loss"; grep '^memscope' shuffle.bad; }
# live checks back to back while the threads move and replace blocks
out=$(timeout 60 env LD_PRELOAD="$LIB" MEMSCOPE=profile_rate=1 ./shuffle live 2>shuffle.err); rc=$?
if [ $rc = 0 ]; then
    pass "live checks while threads move and replace blocks: $(echo "$out" | tail -1)"
else
    fail "live checks while threads move and replace blocks (status $rc): $(echo "$out" | tail -1)"; echo "$out" | head -5
    grep -E '^(memscope|Direct|Indirect)' shuffle.err | head -12
fi

# the check at exit while threads move whole chains between lists: the
# threads stay stopped through the mark from the roots, and the report says so
bad=0
for i in 1 2 3 4 5 6 7 8; do
    timeout 30 env LD_PRELOAD="$LIB" MEMSCOPE=leaks=reachable,trace=1 ./lists exit >/dev/null 2>lists.err
    rc=$?
    grep -q 'stopped for [0-9]* us.*through the mark' lists.err || rc=99
    if [ $rc != 0 ]; then bad=$((bad + 1)); cp lists.err lists.bad; fi
done
[ $bad = 0 ] && pass "exit check while threads move nodes between lists: nothing lost in 8 runs, stopped through the mark" \
    || { fail "exit check while threads move nodes between lists: $bad of 8 runs reported a loss or no stop through the mark"; grep '^memscope' lists.bad; }
# live checks of the same, smaller: each must count exactly the 5 lost
# a heap the 4 ms stop cannot mark: the rest of the mark runs while the
# threads move chains, and the pages they wrote are rescanned (mark.c,
# Rescans); at the sampled rate too, where blocks allocated meanwhile are
# not all listed
for rate in 1 524288; do
    out=$(timeout 120 env LD_PRELOAD="$LIB" MEMSCOPE=profile_rate=$rate ./lists big 2>lists.err); rc=$?
    sum=$(printf '%s\n' "$out" | tail -1) # after any lines of counts off by the sampled rate's race
    out=$(printf '%s\n' "$out" | tr '\n' ' ' | sed 's/ *$//')
    tracking=${sum##*tracking }
    # without write tracking the checks look again, and a heap this size
    # still races with them under load (docs/LEAKS.md): there they must
    # only have looked again; the count is shown
    case "$sum" in
        "0 of 10 checks wrong; "*"tracking yes") n=$(echo "$sum" | sed 's/.*wrong; \([0-9]*\) rescanned.*/\1/') ;;
        *" of 10 checks wrong; "*"tracking no") n=$(echo "$sum" | sed 's/.*, \([0-9]*\) looked again.*/\1/'); [ $rc = 1 ] && rc=0 ;;
        *) n=0 ;;
    esac
    if [ $rc = 0 ] && [ "${n:-0}" -ge 1 ]; then
        pass "live checks of 800,000 moving nodes at profile_rate=$rate: $out"
    else
        fail "live checks of 800,000 moving nodes at profile_rate=$rate (status $rc): $out"; head -5 lists.err
    fi
done
# stops that keep to their deadline while two threads write every heap
# page without moving a pointer (tests/leak/writers.c): the stops' rescans
# cannot finish, and must give up at 4 ms rather than run on
if [ "$tracking" = yes ]; then
    for rate in 1 524288; do
        out=$(timeout 120 env LD_PRELOAD="$LIB" MEMSCOPE=profile_rate=$rate ./writers 2>writers.err); rc=$?
        if [ $rc = 0 ]; then
            pass "live checks while threads write every page, profile_rate=$rate: $out"
        else
            fail "live checks while threads write every page, profile_rate=$rate (status $rc): $out"; grep '^memscope: check' writers.err | head -3
        fi
    done
else
    note "write tracking unavailable here: the stops' rescan deadline (tests/leak/writers.c) is not exercised"
fi
if timeout 60 env LD_PRELOAD="$LIB" MEMSCOPE=profile_rate=1 ./lists live >lists.out 2>lists.err; then
    pass "live checks while threads move nodes between lists: $(tail -1 lists.out)"
else
    fail "live checks while threads move nodes between lists"; cat lists.out; head -5 lists.err
fi

# checks while the program moves its only pointers to old blocks into new
# ones (tests/leak/moving.c): in leak-check mode every new block is listed
# and its words read as roots, so no check may report a loss; at the
# sampled rate the new blocks are found on the pages written during the
# check (mark.c, Rescans), where the kernel can track writes (without,
# this race is documented, docs/LEAKS.md)
if timeout 120 env LD_PRELOAD="$LIB" MEMSCOPE=profile_rate=1 ./moving 10 >moving.out 2>moving.err; then
    pass "pointers moved into new blocks during checks: $(grep -c ' 0 lost' moving.out) of 10 checks clean"
else
    fail "pointers moved into new blocks during checks"; cat moving.out; head -5 moving.err
fi
if [ "$tracking" = yes ]; then
    if timeout 120 env LD_PRELOAD="$LIB" ./moving 30 >moving.out 2>moving.err; then
        pass "pointers moved into new blocks during sampled checks: $(grep -c ' 0 lost' moving.out) of 30 checks clean"
    else
        fail "pointers moved into new blocks during sampled checks"; grep -v ' 0 lost' moving.out; head -5 moving.err
    fi
else
    note "sampled checks while pointers move into new blocks: not run, this kernel cannot track writes"
fi

# the HTTP endpoint
CASES_SLEEP=30 env LD_PRELOAD="$LIB" MEMSCOPE=http=127.0.0.1:0,profile_rate=1 ./cases all >host.out 2>host.err &
HOST_PID=$!
URL=
for _ in $(seq 400); do
    URL=$(grep -o 'http://127\.0\.0\.1:[0-9]*/' host.err 2>/dev/null | head -1)
    [ -n "$URL" ] && grep -q '^ready$' host.out 2>/dev/null && break
    sleep 0.05
done
if [ -z "$URL" ] || ! grep -q '^ready$' host.out; then
    fail "the HTTP host did not start or make its leaks"; cat host.err host.out
else
    curl -s "${URL}debug/pprof/leaks?debug=1" >leaks.txt
    [ "$(counts leaks.txt)" = "3 4" ] && pass "GET /debug/pprof/leaks?debug=1: 3 direct, 4 indirect" \
        || { fail "leaks?debug=1 counts '$(counts leaks.txt)'"; cat leaks.txt; }
    curl -s "${URL}debug/pprof/leaks?debug=2" >leaks.json
    python3 -c 'import json,sys; d=json.load(open("leaks.json")); assert d["direct_objects"]==3 and d["indirect_objects"]==4 and d["exact_stacks"] and isinstance(d["exact"], bool) and d["rescans"] >= 0, d' \
        && pass "GET /debug/pprof/leaks?debug=2: JSON" || { fail "leaks JSON"; cat leaks.json; }
    curl -s -o leaks.pb.gz "${URL}debug/pprof/leaks"
    if command -v go >/dev/null; then
        export GOCACHE=$tmp/gocache HOME=${HOME:-$tmp}
        go tool pprof -raw leaks.pb.gz >raw.txt 2>raw.err
        grep -q 'leaked_objects/count leaked_space/bytes\[dflt\] indirect_objects/count indirect_space/bytes' raw.txt \
            && pass "go tool pprof reads /debug/pprof/leaks" || { fail "go tool pprof -raw"; head -20 raw.txt raw.err; }
        go tool pprof -top -sample_index=leaked_objects leaks.pb.gz 2>/dev/null | grep -q 'case_' \
            && pass "pprof top names the leaking functions" || fail "pprof top"
    fi
    grep -q 'leaks?debug=1' <(curl -s "${URL}debug/pprof/") && pass "index lists leaks" || fail "index lacks leaks"
    curl -s "$URL" | grep -q 'debug/pprof/leaks?debug=2' && pass "live page has the leaks view" || fail "live page lacks leaks"
    kill $HOST_PID 2>/dev/null; wait $HOST_PID 2>/dev/null; HOST_PID=
fi

# the CLI
"$MS" run --leaks=reachable -- ./cases cycle >/dev/null 2>cli.err
rc=$?
[ "$rc" = 23 ] && [ "$(counts cli.err)" = "1 4" ] && pass "memscope run --leaks=reachable" || { fail "memscope run --leaks=reachable: rc $rc"; cat cli.err; }
"$MS" run --leaks -- ./cases cycle >/dev/null 2>cli0.err
rc=$?
[ "$rc" = 23 ] && [ "$(counts cli0.err)" = "1 4" ] && pass "memscope run --leaks: the reachability check" || { fail "memscope run --leaks: rc $rc"; cat cli0.err; }
"$MS" run --leaks=allocated -- ./cases lost >/dev/null 2>cli1.err
grep -q 'still allocated at exit' cli1.err && ! grep -q 'Direct leak' cli1.err && pass "--leaks=allocated: the still-allocated report" \
    || { fail "--leaks=allocated"; cat cli1.err; }

echo "$failures failure(s)"
[ "$failures" = 0 ]
