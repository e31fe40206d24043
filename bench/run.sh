#!/usr/bin/env bash
# bench/run.sh — memscope benchmark suite: glibc, jemalloc, tcmalloc, mimalloc
# and memscope side by side, on the same binaries, in one run.
#
# What it measures and why: median wall time and median peak RSS of seven
# allocation workloads (bench/*.c, see bench/README.md) under each allocator,
# so every memscope change can be judged against the system allocator and the
# three well-known thread-caching allocators on this very machine.  The
# workloads are built with plain `cc -O2 -pthread` and never linked to any
# allocator; each allocator is swapped in by LD_PRELOAD (glibc = no preload).
# Each run goes through build/bench/runone (fork + wait4: wall clock and
# ru_maxrss of the child only, timeout, crash detection).  Allocators are
# interleaved inside every repetition, in a rotating order, so machine noise
# hits all of them alike.
#
# Environment:
#   BENCH_RUNS=5            repetitions per (workload, allocator)
#   BENCH_WORKLOADS="..."   subset, e.g. "st-churn larson" (default: all)
#   BENCH_ALLOCATORS="..."  subset of: glibc jemalloc tcmalloc mimalloc memscope
#   BENCH_LONG=1            also run the long variants (LONG_TABLE below)
#   BENCH_TIMEOUT=60        seconds before a run is killed (recorded as timeout)
#   BENCH_RESULTS=bench/RESULTS.md   where the report goes (rewritten; only
#                           blocks between "<!-- BEGIN x -->" and "<!-- END x -->"
#                           lines, written by other scripts, are carried over)
#   JEMALLOC_SO TCMALLOC_SO MIMALLOC_SO MEMSCOPE_SO   override library paths
#   BUILD=build             build directory (memscope is $BUILD/libmemscope.so)
# Raw data: bench/out/raw.tsv, bench/out/runs.log, bench/out/failures.txt.
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
BUILD=${BUILD:-build}
RUNS=${BENCH_RUNS:-5}
TIMEOUT=${BENCH_TIMEOUT:-60}
RESULTS=${BENCH_RESULTS:-bench/RESULTS.md}
BIN=$BUILD/bench
OUT=bench/out
CC=${CC:-cc}
mkdir -p "$BIN" "$OUT"

note() { printf '%s\n' "$*" >&2; }

# ---------------------------------------------------------------- build ----
PROGS="st_churn larson prodcons mixed_realloc large seed_vector small_nodes tl_remote false_sharing many_threads alloc_test runone"
for p in $PROGS; do
    if ! $CC -std=c11 -O2 -pthread -Wall -Wextra -o "$BIN/$p" "bench/$p.c"; then
        note "bench: failed to build bench/$p.c"; exit 2
    fi
done
if ! $CC -std=c11 -O2 -Wall -Wextra -o "$BIN/report" bench/report.c -lm; then
    note "bench: failed to build bench/report.c"; exit 2
fi

# ------------------------------------------------------------ workloads ----
# name | program | arguments   (sizes tuned for ~0.3-2 s under glibc on 2 cores)
# (bench/run_profile.sh reads this table too: build any new program there as well)
WORKLOAD_TABLE="
st-churn|st_churn|30000000 20000
larson|larson|40 250000 5000 2
prodcons|prodcons|10000000 4096
mixed-realloc|mixed_realloc|4000000 4000
large|large|500 8 page
seed-vector|seed_vector|32000000 1
small-nodes|small_nodes|10000000 1
tl-remote|tl_remote|4 3000000 10000 100
fs-active|false_sharing|active 2 40000 1000 8
fs-passive|false_sharing|passive 2 40000 1000 8
many-threads|many_threads|32 50000 2000 3 2
alloc-test|alloc_test|1 10000000 4096
"
# BENCH_LONG=1 adds these: long runs (40M+ operations) of the churn workloads,
# where placement and locality have time to degrade (issue 10).
LONG_TABLE="
st-churn-long|st_churn|40000000 100000
tl-remote-long|tl_remote|4 10000000 100000 100
larson-long|larson|160 250000 5000 2
"
[ "${BENCH_LONG:-0}" = 1 ] && WORKLOAD_TABLE="$WORKLOAD_TABLE$LONG_TABLE"
ALL_WORKLOADS=$(printf '%s\n' "$WORKLOAD_TABLE" | awk -F'|' 'NF==3{print $1}')
WORKLOADS=${BENCH_WORKLOADS:-$ALL_WORKLOADS}
wl_field() { printf '%s\n' "$WORKLOAD_TABLE" | awk -F'|' -v n="$1" -v f="$2" '$1==n{print $f}'; }
for w in $WORKLOADS; do
    [ -n "$(wl_field "$w" 2)" ] || { note "bench: unknown workload '$w'"; exit 2; }
done

# ------------------------------------------------------------ allocators ---
MULTIARCH=$($CC -print-multiarch 2>/dev/null || true)
LIBDIRS="/usr/lib/$MULTIARCH /lib/$MULTIARCH /usr/lib64 /usr/lib /usr/local/lib /usr/local/lib64"

# candidate paths for the given sonames: ldconfig cache first, then usual dirs
candidates() {
    for name in "$@"; do
        ldconfig -p 2>/dev/null | awk -v n="$name" '$1==n{print $NF}'
        for d in $LIBDIRS /usr/lib/*-linux-gnu*; do
            [ -f "$d/$name" ] && printf '%s\n' "$d/$name"
        done
    done
}

# realpath of the library that served malloc in a tiny preloaded run
served_by() {
    local out from
    out=$("$BIN/runone" -t 20 -p "$1" -- "$BIN/st_churn" 20000 100 2>/dev/null)
    from=$(printf '%s\n' "$out" | sed -n 's/^RESULT .*malloc_from=\(.*\)$/\1/p')
    [ -n "$from" ] && realpath -e "$from" 2>/dev/null
}

# first candidate that demonstrably takes over malloc when preloaded
find_alloc() {
    local var=$1; shift
    local override=${!var:-} c
    local list
    if [ -n "$override" ]; then list=$override; else list=$(candidates "$@"); fi
    for c in $list; do
        [ -f "$c" ] || continue
        if [ "$(served_by "$c")" = "$(realpath -e "$c")" ]; then
            printf '%s\n' "$c"; return 0
        fi
    done
    return 1
}

ALLOCS=""
MS_ORIG=""; MS_SHA=""
declare -A SO
SKIPNOTES=""
want_alloc() { [ -z "${BENCH_ALLOCATORS:-}" ] || [[ " $BENCH_ALLOCATORS " == *" $1 "* ]]; }
add_alloc() { ALLOCS="$ALLOCS $1"; SO[$1]=$2; }
skip_alloc() { SKIPNOTES="$SKIPNOTES- **$1** skipped: $2"$'\n'; note "bench: $1 skipped: $2"; }

want_alloc glibc && add_alloc glibc ""
if want_alloc jemalloc; then
    if p=$(find_alloc JEMALLOC_SO libjemalloc.so.2 libjemalloc.so); then add_alloc jemalloc "$p"
    else skip_alloc jemalloc "no working libjemalloc.so.2 (apt-get install libjemalloc2)"; fi
fi
if want_alloc tcmalloc; then
    if p=$(find_alloc TCMALLOC_SO libtcmalloc_minimal.so.4 libtcmalloc.so.4 libtcmalloc_minimal.so libtcmalloc.so)
    then add_alloc tcmalloc "$p"
    else skip_alloc tcmalloc "no working libtcmalloc (apt-get install libgoogle-perftools4)"; fi
fi
if want_alloc mimalloc; then
    if p=$(find_alloc MIMALLOC_SO libmimalloc.so.2 libmimalloc.so.2.0 libmimalloc.so); then add_alloc mimalloc "$p"
    else skip_alloc mimalloc "no working libmimalloc.so.2 (apt-get install libmimalloc2.0)"; fi
fi
if want_alloc memscope; then
    # memscope is never skipped for misbehaving: its failures are the point,
    # and every failing run is recorded with a repro command.
    # The run uses a snapshot copy, so a rebuild of the library while the
    # suite runs cannot mix two builds (or a half-written file) into one report.
    MS=${MEMSCOPE_SO:-$BUILD/libmemscope.so}
    if [ -f "$MS" ]; then
        MS_ORIG=$(realpath "$MS")
        cp "$MS_ORIG" "$OUT/libmemscope.so" || exit 2
        MS=$(realpath "$OUT/libmemscope.so")
        MS_SHA=$(sha256sum "$MS" | cut -c1-16)
        add_alloc memscope "$MS"
        [ "$(served_by "$MS")" = "$MS" ] || note "bench: WARNING: preflight: malloc not served by $MS (see failures)"
    else
        skip_alloc memscope "$MS not found (run \`make lib\` first)"
    fi
fi
set -- $ALLOCS
NALLOC=$#
[ "$NALLOC" -gt 0 ] || { note "bench: no allocator to run"; exit 2; }
note "bench: allocators:$ALLOCS; workloads: $(printf '%s ' $WORKLOADS); runs: $RUNS"
for a in $ALLOCS; do [ -n "${SO[$a]}" ] && note "bench:   $a = ${SO[$a]}"; done

# ------------------------------------------------------------------ run ----
RAW=$OUT/raw.tsv
LOG=$OUT/runs.log
FAIL=$OUT/failures.txt
printf 'workload\talloc\trep\twall_s\tmaxrss_kib\trss_end_kib\tinner_s\tuser_s\tsys_s\tstatus\n' > "$RAW"
: > "$LOG"
: > "$FAIL"
declare -A TIMEDOUT
get() { printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }
START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
busy=$(awk -v n="$(nproc)" '{print ($1 > n/2) ? 1 : 0}' /proc/loadavg)
[ "$busy" = 1 ] && note "bench: WARNING: load average $LOAD_START on $(nproc) CPUs: times will be noisy"

for rep in $(seq 1 "$RUNS"); do
    for w in $WORKLOADS; do
        prog=$(wl_field "$w" 2); args=$(wl_field "$w" 3)
        # rotate the allocator order every repetition
        set -- $ALLOCS
        k=$(( (rep - 1) % NALLOC )); order=""
        for ((j = 0; j < NALLOC; j++)); do
            idx=$(( (k + j) % NALLOC + 1 )); order="$order ${!idx}"
        done
        for a in $order; do
            if [ -n "${TIMEDOUT[$w.$a]:-}" ]; then continue; fi
            so=${SO[$a]}
            out=$("$BIN/runone" -t "$TIMEOUT" -p "$so" -- "$BIN/$prog" $args 2>&1)
            { printf '### rep=%s workload=%s alloc=%s so=%s\n' "$rep" "$w" "$a" "$so"
              printf '%s\n' "$out"; } >> "$LOG"
            run=$(printf '%s\n' "$out" | grep '^RUN ' | tail -1)
            res=$(printf '%s\n' "$out" | grep '^RESULT ' | tail -1)
            wall=$(get wall_s "$run"); rss=$(get maxrss_kib "$run")
            ex=$(get exit "$run"); sig=$(get signal "$run"); to=$(get timeout "$run")
            us=$(get user_s "$run"); ss=$(get sys_s "$run")
            inner=$(get secs "$res"); end=$(get rss_end_kib "$res"); from=$(get malloc_from "$res")
            status=ok
            if [ -z "$run" ]; then status=harness-error
            elif [ "$to" = 1 ]; then status=timeout; TIMEDOUT[$w.$a]=1   # not retried later
            elif [ "$sig" != 0 ]; then status=SIG$(kill -l "$sig" 2>/dev/null || echo "$sig")
            elif [ "$ex" != 0 ]; then status=exit-$ex
            elif [ -z "$res" ]; then status=no-result
            elif [ -n "$so" ] && [ "$(realpath -e "$from" 2>/dev/null)" != "$(realpath -e "$so")" ]; then
                status=wrong-malloc
            elif [ -z "$so" ] && [[ "$from" != *libc.so* ]]; then status=wrong-malloc
            fi
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$a" "$rep" "${wall:-0}" \
                "${rss:-0}" "${end:-0}" "${inner:-0}" "${us:-0}" "${ss:-0}" "$status" >> "$RAW"
            if [ "$status" != ok ]; then
                { printf '%s %s rep %s: %s\n' "$w" "$a" "$rep" "$status"
                  rso=$so; [ "$a" = memscope ] && rso=$MS_ORIG
                  printf '  repro: cd %s && %s%s%s %s\n' "$ROOT" "${MEMSCOPE:+MEMSCOPE=$MEMSCOPE }" "${rso:+LD_PRELOAD=$rso }" "$BIN/$prog" "$args"
                  [ "$a" = memscope ] && printf '  (the failing build is saved as %s, sha256 %s…)\n' "$OUT/libmemscope.so" "$MS_SHA"
                  [ "$status" = timeout ] && printf '  (timed out after %ss; not retried in later repetitions)\n' "$TIMEOUT"
                  printf '%s\n' "$out" | grep -v '^RESULT \|^RUN ' | tail -5 | sed 's/^/  | /'
                } >> "$FAIL"
            fi
            note "$(printf 'bench: [%d/%d] %-13s %-9s %7ss %8s KiB  %s' "$rep" "$RUNS" "$w" "$a" \
                "${wall:-?}" "${rss:-?}" "$status")"
        done
    done
done
ELAPSED=$(( $(date +%s) - START ))
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# --------------------------------------------------------------- report ----
pkgver() { dpkg-query -W -f='${Package} ${Version}' "$1" 2>/dev/null || echo "$1 (not installed)"; }
owner() {  # "package version" of the package that ships file $1
    local f pkg
    f=$(realpath -e "$1" 2>/dev/null) || { echo "?"; return; }
    pkg=$(dpkg -S "$f" 2>/dev/null | head -1 | cut -d: -f1)
    [ -z "$pkg" ] && pkg=$(dpkg -S "${f/#\/usr\/lib/\/lib}" 2>/dev/null | head -1 | cut -d: -f1)
    [ -z "$pkg" ] && pkg=$(dpkg -S "${f/#\/lib/\/usr\/lib}" 2>/dev/null | head -1 | cut -d: -f1)
    if [ -n "$pkg" ]; then pkgver "$pkg"; else echo "not from a package"; fi
}
"$BIN/report" "$RAW" > "$OUT/tables.md" || { note "bench: report failed"; exit 2; }
# memscope against the fastest peer on each workload, in wall and in CPU time
# (user + sys: much less moved by other load on a shared machine).
memscope_vs_best() {
    [[ " $ALLOCS " == *" memscope "* ]] || return 0
    echo
    echo "## memscope against the fastest peer, per workload"
    echo
    echo "Ratios of medians; the peer is whichever of the others has the lowest median on that workload (its name in parentheses). **bold** = above the 1.10 target of issue 10."
    echo
    echo "| workload | memscope CPU (s) | best peer CPU (s) | CPU ratio | memscope wall (s) | best peer wall (s) | wall ratio |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    awk -F'\t' 'function med(s,   n, i, j, t, a) { n = split(s, a, " "); for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
          return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
      function b(r) { return sprintf(r > 1.10 ? "**%.2f**" : "%.2f", r) }
      NR > 1 && $10 == "ok" { k = $1 SUBSEP $2; if (!($1 in s)) o[++n] = $1; s[$1] = 1; C[k] = C[k] " " ($8 + $9); W[k] = W[k] " " $4; if ($2 != "memscope") P[$2] = 1 }
      END { for (i = 1; i <= n; i++) { w = o[i]; if (!((w SUBSEP "memscope") in C)) continue; bc = bw = 0
          for (p in P) { k = w SUBSEP p; if (!(k in C)) continue; c = med(C[k]); x = med(W[k])
            if (!bc || c < bc) { bc = c; bcw = p } if (!bw || x < bw) { bw = x; bww = p } }
          if (!bc) continue
          mc = med(C[w SUBSEP "memscope"]); mw = med(W[w SUBSEP "memscope"]); m++; lc += log(mc / bc); lw += log(mw / bw)
          printf "| %s | %.3f | %.3f (%s) | %s | %.3f | %.3f (%s) | %s |\n", w, mc, bc, bcw, b(mc / bc), mw, bw, bww, b(mw / bw) }
        if (m) printf "| **geomean** | | | **%.2f** | | | **%.2f** |\n", exp(lc / m), exp(lw / m) }' "$RAW"
}
# Sections that other scripts write into the report between
# "<!-- BEGIN script -->" and "<!-- END script -->" lines (bench/run_profile.sh)
# are carried over to the new report unchanged.
KEPT=$OUT/kept-sections.md
: > "$KEPT"
[ -f "$RESULTS" ] && awk '/^<!-- BEGIN /{f = 1; print ""} f {print} /^<!-- END /{f = 0}' "$RESULTS" > "$KEPT"
{
    echo "# memscope benchmark results"
    echo
    echo "Generated by \`bench/run.sh\` (method: [bench/README.md](README.md))."
    echo "Raw data of this run: \`bench/out/raw.tsv\`, \`bench/out/runs.log\` (not committed)."
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/{printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo)"
    echo "- kernel: $(uname -srm); THP: $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo n/a)"
    echo "- libc: $(ldd --version 2>&1 | head -1)"
    echo "- compiler: $($CC --version | head -1) (workloads: \`-O2 -pthread\`)"
    echo "- runs: $RUNS per workload and allocator, medians reported; whole run took ${ELAPSED}s${BENCH_LONG:+; BENCH_LONG=$BENCH_LONG (long variants included)}"
    echo "- load average (1/5/15 min) at start: $LOAD_START; at end: $LOAD_END (anything near or above $(nproc) means other work competed for the CPUs)"
    for a in $ALLOCS; do
        so=${SO[$a]}
        if [ -z "$so" ]; then echo "- **glibc**: system malloc, no LD_PRELOAD"
        elif [ "$a" = memscope ]; then
            rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "no commit")
            dirty=$(git -C "$ROOT" status --porcelain -- src include 2>/dev/null | head -1)
            echo "- **memscope**: \`$MS_ORIG\` (git $rev${dirty:+, src/include modified}, built $(date -u -r "$MS_ORIG" '+%Y-%m-%d %H:%M UTC'), sha256 $MS_SHA…; run from the snapshot \`bench/out/libmemscope.so\`)${MEMSCOPE:+, MEMSCOPE=$MEMSCOPE}"
        else echo "- **$a**: \`$so\` ($(owner "$so"))"
        fi
    done
    [ -n "$SKIPNOTES" ] && { echo; echo "$SKIPNOTES"; }
    if [ -s "$FAIL" ]; then
        echo
        echo "## Failed runs"
        echo
        echo '```'
        cat "$FAIL"
        echo '```'
    fi
    echo
    cat "$OUT/tables.md"
    memscope_vs_best
    cat "$KEPT"
} > "$RESULTS"
note "bench: wrote $RESULTS (${ELAPSED}s)"
[ -s "$FAIL" ] && note "bench: some runs failed, see $FAIL"
exit 0
