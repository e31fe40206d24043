#!/usr/bin/env bash
# bench/run_leaks.sh: what the leak checker costs (issue 11, "Speed").
#
# What it measures and why:
#  1. scan: bench/leakscan.c builds a heap of N blocks (10M blocks of 16..192
#     bytes: about 1 GiB; each block points at an older one, one in a
#     thousand dropped), starts T threads that keep running, and runs C
#     checks with memscope_check_leaks.  Per check: the wall time of the
#     call, the CPU time of the checking thread, the pause of the other
#     threads, snapshot and mark times and the memory the check mapped.
#     Targets: a check under 1 s, a pause under 10 ms.
#  2. mode: seven workloads of bench/run.sh at run.sh's own sizes (read
#     from its WORKLOAD_TABLE, so the two stay the same: the "allocator
#     suite" issue 11 names; runs of 0.1-1 s under glibc, long enough that
#     the CPU times are not a few clock ticks), under memscope's defaults, under
#     MEMSCOPE=leaks=reachable (every allocation keeps its stack, a check at
#     exit), under LeakSanitizer (liblsan.so.0 preloaded: its own allocator,
#     a stack per allocation, a check at exit) and plain glibc; interleaved
#     runs, medians of CPU time (user+sys: the machine may be shared).
#     Target (issue 11): leak-check mode at most 1.5x the run time; the
#     table gives it against the program's own run (glibc, no memscope) and
#     against memscope's defaults, per workload and as geometric means.
#
# Environment:
#   LEAK_PARTS="scan mode" (a part not run keeps its last table)   LEAK_BLOCKS=10000000  LEAK_THREADS=2  LEAK_CHECKS=3
#   BENCH_RUNS=3  BENCH_WORKLOADS="..."  MEMSCOPE_SO  BUILD=build  BENCH_TIMEOUT=300
#   BENCH_RESULTS=bench/RESULTS.md: only the text between
#     "<!-- BEGIN bench/run_leaks.sh -->" and "<!-- END bench/run_leaks.sh -->"
#     is replaced (the block is appended the first time).
# Raw data: bench/out/leaks-scan.txt, bench/out/leaks-mode.tsv.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd); cd "$ROOT" || exit 2
BUILD=${BUILD:-build}; BIN=$BUILD/bench; OUT=bench/out; CC=${CC:-cc}
RUNS=${BENCH_RUNS:-3}; TIMEOUT=${BENCH_TIMEOUT:-300}
PARTS=${LEAK_PARTS:-scan mode}
# LEAK_THREADS: the heap is checked once per count of running threads: 0
# (the program idle: the check has a CPU to itself) and 2 (two threads
# spinning on the 2 CPUs: the checking thread gets about two thirds of one,
# so its wall time is about 1.5x its CPU time)
NBLOCKS=${LEAK_BLOCKS:-10000000}; NTHREADS=${LEAK_THREADS:-0 2}; NCHECKS=${LEAK_CHECKS:-3}
RESULTS=${BENCH_RESULTS:-bench/RESULTS.md}
LSAN=/usr/lib/x86_64-linux-gnu/liblsan.so.0
mkdir -p "$BIN" "$OUT"
note() { printf '%s\n' "$*" >&2; }

for p in st_churn larson prodcons mixed_realloc large seed_vector small_nodes runone; do
    $CC -std=c11 -O2 -pthread -Wall -Wextra -o "$BIN/$p" "bench/$p.c" || exit 2
done
$CC -std=c11 -D_GNU_SOURCE -O2 -pthread -Wall -Wextra -o "$BIN/leakscan" bench/leakscan.c -ldl || exit 2
MS=$(realpath "${MEMSCOPE_SO:-$BUILD/libmemscope.so}") || { note "no libmemscope.so (make lib)"; exit 2; }
MS_SHA=$(sha256sum "$MS" | cut -c1-16)
REV=$(git rev-parse --short HEAD 2>/dev/null || echo "no commit")
unset MEMSCOPE
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg); START=$(date +%s)

# The workloads and sizes of bench/run.sh, read from it so they stay the same.
RUN_TABLE=$(sed -n '/^WORKLOAD_TABLE="/,/^"/p' bench/run.sh | sed '1d;$d')
TABLE=$(printf '%s\n' "$RUN_TABLE" | grep -E '^(st-churn|larson|prodcons|mixed-realloc|large|seed-vector|small-nodes)\|')
[ "$(printf '%s\n' "$TABLE" | grep -c '|')" = 7 ] || { note "cannot read the seven workloads from bench/run.sh's WORKLOAD_TABLE"; exit 2; }
WORKLOADS=${BENCH_WORKLOADS:-$(printf '%s\n' "$TABLE" | cut -d'|' -f1 | xargs)}
field() { printf '%s\n' "$TABLE" | awk -F'|' -v n="$1" -v f="$2" '$1==n{print $f}'; }
get() { printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }
median() { sort -g | awk '{a[NR]=$1} END{if(NR==0){print "";exit} print (NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2}'; }

# ------------------------------------------------------------ part 1: scan ----
if [[ " $PARTS " == *" scan "* ]]; then
    P_LOAD=$(cut -d' ' -f1 /proc/loadavg)
    : >"$OUT/leaks-scan.txt"
    for t in $NTHREADS; do
        note "leaks/scan: $NBLOCKS blocks, $t running threads, $NCHECKS checks"
        LD_PRELOAD=$MS timeout "$TIMEOUT" "$BIN/leakscan" "$NBLOCKS" "$t" "$NCHECKS" 2>"$OUT/leaks-scan.err" |
            sed "s/^CHECK /CHECK running=$t /" >>"$OUT/leaks-scan.txt"
    done
    printf 'load %s %s; memscope git %s, sha256 %s…; %s\n' "$P_LOAD" "$(cut -d' ' -f1 /proc/loadavg)" "$REV" "$MS_SHA" \
        "$(date -u '+%Y-%m-%d %H:%M UTC')" >"$OUT/leaks-scan.meta"
    cat "$OUT/leaks-scan.txt" >&2
fi

# ------------------------------------------------------------ part 2: mode ----
status_ok() { # runone output, variant -> ok or why not
    local run; run=$(printf '%s\n' "$1" | grep '^RUN ' | tail -1)
    if [ -z "$run" ]; then echo harness-error
    elif [ "$(get timeout "$run")" = 1 ]; then echo timeout
    elif [ "$(get signal "$run")" != 0 ]; then echo "SIG$(get signal "$run")"
    elif [ "$(get exit "$run")" != 0 ] && [ "$(get exit "$run")" != 23 ]; then echo "exit-$(get exit "$run")"
    else echo ok; fi
}
if [[ " $PARTS " == *" mode "* ]]; then
    R=$OUT/leaks-mode.tsv; printf 'workload\tvariant\trep\twall_s\tcpu_s\tmaxrss_kib\tstatus\n' >"$R"
    VARIANTS="ms-default ms-leaks glibc"; [ -e "$LSAN" ] && VARIANTS="$VARIANTS lsan"
    for rep in $(seq 1 "$RUNS"); do
        for w in $WORKLOADS; do
            prog=$(field "$w" 2); args=$(field "$w" 3)
            order=$VARIANTS; [ $((rep % 2)) = 0 ] && order=$(printf '%s\n' $VARIANTS | tac | xargs)
            for v in $order; do
                case $v in
                    ms-default) out=$("$BIN/runone" -t "$TIMEOUT" -p "$MS" -- "$BIN/$prog" $args 2>&1) ;;
                    ms-leaks) out=$(MEMSCOPE=leaks=reachable "$BIN/runone" -t "$TIMEOUT" -p "$MS" -- "$BIN/$prog" $args 2>&1) ;;
                    glibc) out=$("$BIN/runone" -t "$TIMEOUT" -- "$BIN/$prog" $args 2>&1) ;;
                    lsan) out=$("$BIN/runone" -t "$TIMEOUT" -p "$LSAN" -- "$BIN/$prog" $args 2>&1) ;;
                esac
                run=$(printf '%s\n' "$out" | grep '^RUN ' | tail -1)
                cpu=$(awk -v u="$(get user_s "$run")" -v s="$(get sys_s "$run")" 'BEGIN{printf "%.3f", u + s}')
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$v" "$rep" "$(get wall_s "$run")" "$cpu" \
                    "$(get maxrss_kib "$run")" "$(status_ok "$out")" >>"$R"
                note "leaks/mode: [$rep/$RUNS] $w $v wall=$(get wall_s "$run") cpu=$cpu $(status_ok "$out")"
            done
        done
    done
    printf '%s; load %s at start, %s at end\n' "$(date -u '+%Y-%m-%d %H:%M UTC')" "$LOAD_START" \
        "$(cut -d' ' -f1 /proc/loadavg)" >"$OUT/leaks-mode.meta"
fi

# ---------------------------------------------------------------- report ----
section() {
    echo "<!-- BEGIN bench/run_leaks.sh -->"
    echo "## Cost of the leak checker (issue 11, \"Speed\")"
    echo
    echo "Generated by \`bench/run_leaks.sh\`; do not edit by hand, rerun the script. Raw data: \`bench/out/leaks-*\` (not committed)."
    echo
    echo "- machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs; kernel $(uname -sr)"
    echo "- memscope: git $REV, sha256 $MS_SHA…"
    echo "- load average at start of the last run: $LOAD_START (other work shared the 2 CPUs: the checking thread's CPU time is the figure to trust, wall time includes waiting for a CPU)"
    echo
    if [[ " $PARTS " != *" scan "* ]] && [ -f "$RESULTS" ] && grep -q '^### A check of a large heap' "$RESULTS"; then
        # scan not run now: keep its last table from the report as it stands
        awk '/^<!-- BEGIN bench\/run_leaks.sh -->/{b=1} b && /^### A check of a large heap/{k=1}
             b && /^### Leak-check mode/{k=0} b && /^<!-- END bench\/run_leaks.sh -->/{b=0; k=0} k' "$RESULTS"
    elif [ -s "$OUT/leaks-scan.txt" ]; then
        echo "### A check of a large heap (\`bench/leakscan.c\`: $(grep -o '[0-9]* blocks, [0-9.]* GiB' "$OUT/leaks-scan.err" | head -1) requested; $NCHECKS checks with each count of other threads running)"
        echo
        echo "_Run: $(cat "$OUT/leaks-scan.meta" 2>/dev/null)_"
        echo
        echo "| threads running | check | wall ms | CPU ms (checking thread) | longest pause µs | stops | settled by | threads stopped | snapshot ms | mark ms | check memory | blocks | lost (dropped) |"
        echo "|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|"
        i=0
        while read -r line; do
            r=$(get running "$line")
            [ "$r" = "${prev_r:-}" ] && i=$((i + 1)) || i=1
            prev_r=$r
            l=$(get lost "$line"); d=$(get dropped "$line"); w=$(get wall_ms "$line"); c=$(get cpu_ms "$line")
            pause=$(printf '%s\n' "$line" | sed -n 's/.*stopped for \([0-9]*\) us.*/\1/p')
            thr=$(printf '%s\n' "$line" | sed -n 's/.*check: \([0-9]* of [0-9]*\) thread.*/\1/p')
            snap=$(printf '%s\n' "$line" | sed -n 's/.*snapshot \([0-9]*\) ms.*/\1/p')
            mark=$(printf '%s\n' "$line" | sed -n 's/.*mark \([0-9]*\) ms.*/\1/p')
            mem=$(printf '%s\n' "$line" | sed -n 's/.*memory \([0-9]*\) KiB.*/\1/p')
            blk=$(printf '%s\n' "$line" | sed -n 's/.*; \([0-9]*\) blocks in.*/\1/p')
            stops=$(printf '%s\n' "$line" | sed -n 's/.*the longest of \([0-9]*\) stops.*/\1/p')
            rs=$(get rescans "$line"); rp=$(get rescan_pages "$line"); ex=$(get exact "$line"); lk=$(get looks "$line")
            how="one look"
            [ "${rs:-0}" -gt 0 ] && how="rescan of $rp written pages$([ "$ex" = 1 ] && echo ', exact')"
            [ "${lk:-1}" -gt 1 ] && how="$how; $lk looks"
            echo "| $r | $i | $w | $c | $pause | ${stops:-1} | $how | $thr | $snap | $mark | $((mem / 1024)) MiB | $blk | $l ($d) |"
        done < <(grep '^CHECK ' "$OUT/leaks-scan.txt")
        echo
        echo "\"lost\" is below \"dropped\" because a dropped block that another block still points at is not lost. With threads running, the checking thread shares the 2 CPUs with them, so its wall time is longer than its CPU time by the time it waited for a CPU."
        echo
    fi
    if [[ " $PARTS " != *" mode "* ]] && [ -f "$RESULTS" ] && grep -q '^### Leak-check mode' "$RESULTS"; then
        # mode not run now: keep its last table from the report as it stands
        awk '/^<!-- BEGIN bench\/run_leaks.sh -->/{b=1} b && /^### Leak-check mode/{k=1}
             b && /^<!-- END bench\/run_leaks.sh -->/{b=0; k=0} k' "$RESULTS"
    elif [ -s "$OUT/leaks-mode.tsv" ]; then
        echo "### Leak-check mode vs memscope's defaults, LeakSanitizer and glibc (medians of $RUNS interleaved runs, CPU seconds)"
        echo
        echo "_Run: $(cat "$OUT/leaks-mode.meta" 2>/dev/null)_"
        echo
        echo "ms-leaks is \`MEMSCOPE=leaks=reachable\`: profile_rate=1 (a stack for every allocation) and a check at exit. lsan is liblsan.so.0 preloaded (its allocator, a stack per allocation, a check at exit)."
        echo
        echo "The program's own run is the glibc column (no memscope), so \"ms-leaks / glibc\" is what turning leak checks on costs a program, the figure valgrind's 20-50x and LeakSanitizer's \"lsan / glibc\" are quoted against; \"ms-leaks / ms-default\" is the cost over memscope's own defaults."
        echo
        echo "| workload | args | glibc | ms-default | ms-leaks | lsan | ms-leaks / glibc | ms-leaks / ms-default | lsan / glibc | ms-leaks / lsan |"
        echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
        ratios=""
        for w in $WORKLOADS; do
            declare -A med=()
            for v in glibc ms-default ms-leaks lsan; do
                med[$v]=$(awk -F'\t' -v w="$w" -v v="$v" '$1==w && $2==v && $7=="ok"{print $5}' "$OUT/leaks-mode.tsv" | median)
            done
            ratio() { awk -v a="$1" -v b="$2" 'BEGIN{if(a&&b)printf "%.4f",a/b}'; }
            r0=$(ratio "${med[ms-leaks]}" "${med[glibc]}"); r1=$(ratio "${med[ms-leaks]}" "${med[ms-default]}")
            r2=$(ratio "${med[lsan]}" "${med[glibc]}"); r3=$(ratio "${med[ms-leaks]}" "${med[lsan]}")
            ratios="$ratios${r0:--} ${r1:--} ${r2:--} ${r3:--}"$'\n'
            x() { [ -n "$1" ] && awk -v r="$1" 'BEGIN{printf "%.2fx", r}'; }
            echo "| $w | \`$(field "$w" 3)\` | ${med[glibc]} | ${med[ms-default]} | ${med[ms-leaks]} | ${med[lsan]} | $(x "$r0") | $(x "$r1") | $(x "$r2") | $(x "$r3") |"
            unset med
        done
        # geometric means over the workloads where both sides ran
        geo=$(printf '%s' "$ratios" | awk '{for(i=1;i<=4;i++) if($i!="-"){s[i]+=log($i);n[i]++}}
            END{for(i=1;i<=4;i++) printf "%s ", (n[i] ? sprintf("**%.2fx**", exp(s[i]/n[i])) : "-")}')
        set -- $geo
        echo "| **geomean** | | | | | | $1 | $2 | $3 | $4 |"
        echo
    fi
    echo "<!-- END bench/run_leaks.sh -->"
}
section >"$OUT/leaks.md"
bash "$(dirname "$0")/put_block.sh" run_leaks.sh "$OUT/leaks.md" "$RESULTS"
note "leaks: wrote $RESULTS ($(( $(date +%s) - START )) s)"
