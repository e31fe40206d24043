#!/usr/bin/env bash
# scripts/hot-functions.sh: writes mk/hot.ld, the list of the library's
# functions that an ordinary program runs (see mk/text.ld for why they are
# linked together).
#
# It runs bench/'s workloads, small, under callgrind with the release
# library preloaded, and lists every function of libmemscope.so that ran in
# any of them (callgrind's "fn=" records of the object), less the ones in
# section memscope_text, which mk/text.ld places first anyway.  Rerun it
# after adding or renaming functions on the allocator's or the sampler's
# paths; tests/test_build.sh fails when the listed code no longer fits in
# the text's first 64 KiB.
# Needs valgrind and a built library (make lib).  usage: scripts/hot-functions.sh [build-dir]
set -eu
export LC_ALL=C # one collation for sort, comm and join
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BUILD=${1:-build}
case $BUILD in /*) SO=$BUILD/libmemscope.so ;; *) SO=$ROOT/$BUILD/libmemscope.so ;; esac
command -v valgrind >/dev/null || { echo "hot-functions: valgrind is needed" >&2; exit 2; }
[ -f "$SO" ] || { echo "hot-functions: build $SO first (make lib)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
[ -n "${HOT_KEEP:-}" ] && trap - EXIT && echo "hot-functions: files in $tmp" >&2
# workload | arguments: each of bench/run.sh's, small enough for callgrind;
# the first with MEMSCOPE set (its default values), whose parsing runs at
# every start where the variable is set
RUNS="
false_sharing|active 2 40000 10 8
false_sharing|passive 2 40000 10 8
prodcons|300000 4096
many_threads|8 5000 2000 2 2
st_churn|300000 20000
large|100 8 page
mixed_realloc|200000 4000
larson|4 20000 5000 2
tl_remote|4 50000 10000 100
small_nodes|300000 1
seed_vector|3000000 1
"
env=MEMSCOPE=profile_rate=524288,scavenge_delay_ms=1000
printf '%s\n' "$RUNS" | while IFS='|' read -r prog args; do
    [ -n "$prog" ] || continue
    cc -std=c11 -O2 -pthread -o "$tmp/$prog" "bench/$prog.c"
    # shellcheck disable=SC2086
    env $env LD_PRELOAD=$SO valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$prog.%p" "$tmp/$prog" $args >/dev/null 2>&1
    env=MEMSCOPE_UNSET=1
done
# function names of the library's object: ob= names the object of the
# records below it, fn=/cfn= name a function id the first time it appears.
# valgrind reads file and line only for .text: the functions already in
# memscope_text or memscope_hot come under the object "???" (their names
# are right), so those count too; the names are checked against the
# library's own below.
awk '
    match($0, /^c?ob=\(([0-9]+)\)( .*)?$/) {
        split(substr($0, index($0, "(") + 1), a, ")"); id = a[1]
        if (index($0, ") ")) ob[FILENAME, id] = substr($0, index($0, ") ") + 2)
        if ($0 ~ /^ob=/) cur = ob[FILENAME, id]
        next
    }
    match($0, /^c?fn=\(([0-9]+)\)( .*)?$/) {
        split(substr($0, index($0, "(") + 1), a, ")"); id = a[1]
        if (index($0, ") ")) fn[FILENAME, id] = substr($0, index($0, ") ") + 2)
        if ($0 ~ /^fn=/ && (cur ~ /libmemscope/ || cur == "???")) {
            name = fn[FILENAME, id]
            sub(/'"'"'[0-9]+$/, "", name); sub(/\..*/, "", name) # recursion marks, .cold, .part.0, ...
            if (name !~ /^0x/ && !seen[FILENAME, name]++) n[name]++
        }
    }
    END { for (f in n) print f, n[f] }' "$tmp"/cg.* | sort >"$tmp/runs"
cut -d' ' -f1 "$tmp/runs" >"$tmp/ran"
# keep the functions of .text (not memscope_text, not the C library's)
nm --defined-only "$SO" | awk '$2 ~ /[tT]/ {print $3}' | sed 's/\..*//' | sort -u >"$tmp/defined"
lo=$(readelf -SW "$SO" | awk '$2 == "memscope_text" {print $4}')
size=$(readelf -SW "$SO" | awk '$2 == "memscope_text" {print $6}')
nm --defined-only "$SO" | awk -v lo=$((16#$lo)) -v hi=$((16#$lo + 16#$size)) \
    '$2 ~ /[tT]/ { a = strtonum("0x" $1); if (a >= lo && a < hi) print $3 }' | sed 's/\..*//' | sort -u >"$tmp/mstext"
# and those of the list before that are still the library's: what a run
# reaches depends on timing too (the scavenger's huge pages), so a
# function leaves the list only by hand
sed -n 's/^    \*(\.text\.\([^ ]*\) .*/\1/p' mk/hot.ld 2>/dev/null >>"$tmp/ran"
# and what only threads that run at once reach, which callgrind, running
# one thread at a time, seldom shows: the wait for a contended lock
echo ms_lock_wait >>"$tmp/ran"
sort -u -o "$tmp/ran" "$tmp/ran"
# Ordered by the number of runs that ran them, most first: if the list ever
# outgrows the first 64 KiB (tests/test_build.sh), what spills over is the
# code that fewest programs run.
# Left out on purpose, so that the code every small process runs fits the
# first 64 KiB (tests/test_build.sh): the profile's record of a sampled
# large block that realloc resized in place or moved (1.2 KiB), which of
# bench/'s workloads only seed_vector runs, at 250 MB of RSS, where a
# second window of text is noise.  And MEMSCOPE's parser (2.2 KiB), which
# runs once, at the start of a process that set the variable: the
# scavenger's formatting of /proc paths (ms_vsnprintf), which every process
# with a scavenger runs now and then, did not fit beside it.  Since the
# leak-check mode's fused hooks (2026-11), also: the scavenger's collapse
# of a dense 2 MiB region into a huge page, which a process reaches only
# once it holds such regions for the scavenge delay (none of the runs here
# did), the return of idle transfer slots, likewise, and realloc's resize
# of a large block in place (0.9 KiB, one run of the eleven), which
# programs with blocks of 256 KiB and more run: a second window of text is
# noise beside them.  And the scavenger's release of idle pages (1.2 KiB,
# one run of the eleven), which a process reaches once it has freed pages
# and lived on for the scavenge delay.  And the scavenger's look for dense
# regions (0.7 KiB), at most four times a second once the heap reaches
# 4 MiB, which left the hot text 6 bytes past its window after the
# thread caches' per-class bits and leak-check mode's leaner hook.  And,
# since 32 KiB spans for the small classes, the formatting of /proc paths
# and messages (ms_vsnprintf, 2.6 KiB with its helpers): one run of the
# eleven now reaches it, as the scavenger formats paths only to park a
# quiet thread's cache or to read the page map before a collapse, both
# left out above.  So, with it, the number formatting under it (utoa) and
# the reads of a thread's state that only a park makes (its switches and
# its system call, 0.7 KiB), which left the hot text 102 bytes past its
# window after the unwinder's reads through files and the central
# list's stride runs.  And the thread caches' free of a block above
# 64 KiB (ms_tcache_free_mid and mid_room, 0.6 KiB), four runs of the
# eleven, once per such block, whose use costs the program far more than
# a second window of text, and the first look at MEMSCOPE for the log's path (log_first,
# split from the parser, which is left out above, and like it run once):
# the hot text was 0.6 KiB past its window with both, 3 bytes with
# log_first alone before the thread caches' budget above 64 KiB.  And,
# since leak-check mode's records in the blocks' tails and the sampled
# sync of changed pages only (2026-11-28: 0.4 KiB past the window), the
# scavenger's read of a /proc file (read_small_fd) and of its own CPU time
# around a collapse (thread_cpu_us), which none of the eleven runs reached
# this time, and the unwinder's checked read of a word outside the range a
# walk has proven (read_checked, cold).  The check that a range is
# readable (ms_os_pages_readable, one run of the eleven) went out with
# them, but a thread's first samples may run it, at random, and a small
# sampled program then mapped a second 64 KiB window of text
# (tests/test_fixedrss.sh: 164 KiB of the library resident, against 100,
# in 3 runs of 15 at load 2); in its place the unwinder's reading of a
# frame address given as an expression on rbp (breg6, 0.1 KiB), which
# only frames that realign the stack use, one run of the eleven.  And,
# since the sampling countdown per class (2026-11-28: 0.2 KiB past the
# window), the look at /proc that memscope's own threads make once the
# program's first thread has left with pthread_exit
# (ms_os_program_gone, 0.2 KiB, one run of the eleven), which such a
# program makes on the scavenger's thread, and not on its own.  And, since
# a failed start of the scavenger is tried again (2026-11-28: 0.1 KiB past
# the window), that start (start_thread), once in a process; and since the
# heap's first reservation is placed within a GiB (the same day, 58 bytes
# past), the wait for a contended lock (ms_lock_wait, near the list's
# end: few of the eleven runs reach it), which spins and then sleeps in
# the kernel: a miss of the instruction cache there is nothing beside the
# wait.  Since the unwinder's interpreter of call frame programs and its
# reading of an FDE are cold (src/prof/unwind.c: run, 3.5 KiB less), the
# wait for a contended lock, the scavenger's start and the look at /proc
# for a program gone are back: any two threads that meet on a lock ran the
# wait, and with it mapped a second window of text (a two-thread program
# of 40,000 mallocs each: 128 KiB of the library's text resident, 64 KiB
# without contention; /proc/self/pagemap, by hand).
printf '%s\n' on_moved ms_options_parse ms_os_collapse ms_heap_huge_done ms_pagemap_set_huge \
    all_resident_own ms_os_open_proc_mm ms_central_give_idle ms_heap_try_resize \
    ms_heap_scavenge ms_heap_huge_candidates ms_vsnprintf ms_snprintf put_padded utoa \
    ms_os_thread_switches ms_os_thread_syscall ms_tcache_free_mid mid_room log_first \
    read_small_fd thread_cpu_us read_checked breg6 |
    sort >"$tmp/left" # sorted, for comm
comm -12 "$tmp/ran" "$tmp/defined" | comm -23 - "$tmp/mstext" | comm -23 - "$tmp/left" |
    join -a1 -e0 -o 0,2.2 - "$tmp/runs" | sort -k2,2nr -k1,1 | cut -d' ' -f1 >"$tmp/hot"
{
    echo "/* mk/hot.ld: written by scripts/hot-functions.sh; do not edit."
    echo " * The functions of libmemscope.so that bench/'s workloads ran (and those"
    echo " * listed before that the library still has), those that most runs ran"
    echo " * first, one input-section pattern each (the library is built with"
    echo " * -ffunction-sections), for mk/text.ld's memscope_hot. */"
    while read -r f; do printf '    *(.text.%s .text.%s.* .text.unlikely.%s .text.unlikely.%s.*)\n' "$f" "$f" "$f" "$f"; done <"$tmp/hot"
} >mk/hot.ld
echo "hot-functions: $(wc -l <"$tmp/hot") functions in mk/hot.ld"
