#!/usr/bin/env bash
# bench/run_latency.sh: malloc/free tail latency against the peers (issue 9).
#
# What it measures and why: servers judge an allocator by its worst call.
# Part "mix" runs `latency mix`: LAT_THREADS (3) threads malloc and free
# 16 B .. 64 KiB blocks while one more thread mallocs, touches 1 MiB of, and
# frees blocks of 1 MiB .. 2^LAT_MAXK (64 GiB); every malloc and free of the
# small/medium threads is timed.  Part "huge" runs `latency huge K`: the
# scenario of issue 9 (malloc 2^K, touch 1 MiB, free, then malloc+free
# 16..64 KiB for LAT_HUGE_SECS seconds, timing each call) for K in LAT_KS.
# Part "holds" runs `latency holds`: a heap fragmented into 50,000 free
# spans, then memscope's own jobs one at a time (scavenger, malloc_trim,
# stats reads, heap profile, leak check) beside a thread timing mallocs; for
# memscope the longest heap-lock hold of each job, for all the worker's
# latency.
# Configurations, interleaved in a rotating order inside every repetition:
# glibc, jemalloc, tcmalloc, mimalloc, memscope (defaults: scavenge_delay_ms
# 1000, heap profiler sampling every 512 KiB), memscope-d0
# (MEMSCOPE=scavenge_delay_ms=0: the scavenger releases at once) and
# memscope-p0 (MEMSCOPE=profile_rate=0: the allocator alone, no sampling,
# as the peers run).  Every percentile is reported as the median over the runs of that
# percentile; the max column also gives the largest max of any run.
#
# Environment:
#   LAT_PARTS="mix huge holds"  LAT_RUNS=5 (mix)  LAT_HUGE_RUNS=3  LAT_SECS=3
#   LAT_THREADS=3  LAT_MAXK=36  LAT_KS="30 34 36"  LAT_HUGE_SECS=4
#   LAT_HOLD_RUNS=3
#   LAT_CONFIGS="glibc jemalloc tcmalloc mimalloc memscope memscope-d0 memscope-p0"
#   LAT_OVERCOMMIT=1: run with vm.overcommit_memory=1 (needs root; the old
#     value is put back at exit).  Under the default heuristic policy a
#     single 64 GiB request on a machine with less memory is refused by
#     glibc, tcmalloc and memscope alike (they charge what they map), so the
#     64 GiB rows need this on a small machine; the report records the
#     setting.
#   JEMALLOC_SO TCMALLOC_SO MIMALLOC_SO MEMSCOPE_SO  BUILD=build
#   BENCH_RESULTS=bench/RESULTS.md: only the block between
#     "<!-- BEGIN bench/run_latency.sh -->" and "<!-- END bench/run_latency.sh -->"
#     is replaced (appended the first time); run.sh keeps the block.
# Raw data: bench/out/latency-mix.tsv, latency-big.tsv, latency-huge.tsv,
# latency.log; the section alone: bench/out/latency.md.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd); cd "$ROOT" || exit 2
BUILD=${BUILD:-build}; BIN=$BUILD/bench; OUT=bench/out; CC=${CC:-cc}
PARTS=${LAT_PARTS:-mix huge holds}; HOLD_RUNS=${LAT_HOLD_RUNS:-3}
RUNS=${LAT_RUNS:-5}; HRUNS=${LAT_HUGE_RUNS:-3}; SECS=${LAT_SECS:-3}
THREADS=${LAT_THREADS:-3}; MAXK=${LAT_MAXK:-36}; KS=${LAT_KS:-30 34 36}; HSECS=${LAT_HUGE_SECS:-4}
CONFIGS=${LAT_CONFIGS:-glibc jemalloc tcmalloc mimalloc memscope memscope-d0 memscope-p0}
RESULTS=${BENCH_RESULTS:-bench/RESULTS.md}
mkdir -p "$BIN" "$OUT"
note() { printf '%s\n' "$*" >&2; }

for p in latency runone; do
    $CC -std=c11 -O2 -pthread -Wall -Wextra -o "$BIN/$p" "bench/$p.c" || exit 2
done
MS_ORIG=$(realpath "${MEMSCOPE_SO:-$BUILD/libmemscope.so}") || { note "no libmemscope.so (make lib)"; exit 2; }
cp "$MS_ORIG" "$OUT/libmemscope-lat.so"; MS=$(realpath "$OUT/libmemscope-lat.so")
MS_SHA=$(sha256sum "$MS" | cut -c1-16)
unset MEMSCOPE
findlib() {  # $1 override, then sonames: first existing file
    local o=$1; shift
    [ -n "$o" ] && { realpath "$o"; return; }
    for n in "$@"; do
        p=$(ldconfig -p 2>/dev/null | awk -v n="$n" '$1==n{print $NF; exit}')
        [ -n "$p" ] && { realpath "$p"; return; }
    done
}
declare -A SO ENVV
SO[glibc]=""; SO[memscope]=$MS; SO[memscope-d0]=$MS; ENVV[memscope-d0]="scavenge_delay_ms=0"
SO[memscope-p0]=$MS; ENVV[memscope-p0]="profile_rate=0"
if [ "${LAT_OVERCOMMIT:-0}" = 1 ]; then
    OC_OLD=$(cat /proc/sys/vm/overcommit_memory)
    if echo 1 > /proc/sys/vm/overcommit_memory 2>/dev/null; then
        trap 'echo "$OC_OLD" > /proc/sys/vm/overcommit_memory' EXIT
    else
        note "LAT_OVERCOMMIT=1: cannot write /proc/sys/vm/overcommit_memory (not root?); running with $OC_OLD"
    fi
fi
SO[jemalloc]=$(findlib "${JEMALLOC_SO:-}" libjemalloc.so.2)
SO[tcmalloc]=$(findlib "${TCMALLOC_SO:-}" libtcmalloc_minimal.so.4 libtcmalloc.so.4)
SO[mimalloc]=$(findlib "${MIMALLOC_SO:-}" libmimalloc.so.2)
CFGS=""; NOTES=""
for c in $CONFIGS; do
    if [ "$c" != glibc ] && [ -z "${SO[$c]:-}" ]; then NOTES="$NOTES- $c skipped: library not found"$'\n'; continue; fi
    CFGS="$CFGS $c"
done
get() { printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }
# KV: awk's g(key), the value of key=value among the fields of a LAT/BIG/HUGE/HOLD line
KV='function g(k,  i, a) { for (i = 2; i <= NF; i++) { split($i, a, "="); if (a[1] == k) return a[2] } return "" }'
LOG=$OUT/latency.log; : > "$LOG"
TMIX=$OUT/latency-mix.tsv; TBIG=$OUT/latency-big.tsv; THUGE=$OUT/latency-huge.tsv; THOLD=$OUT/latency-holds.tsv

# run one configuration: $1 config, rest: latency arguments; output on stdout
run_cfg() {
    local c=$1; shift
    local out
    out=$(env ${ENVV[$c]:+MEMSCOPE=${ENVV[$c]}} "$BIN/runone" -t 120 -p "${SO[$c]}" -- "$BIN/latency" "$@" 2>&1)
    { echo "### config=$c args=$*"; printf '%s\n' "$out"; } >> "$LOG"
    printf '%s\n' "$out"
}
status_of() {  # $1 output, $2 config
    local run res from
    run=$(printf '%s\n' "$1" | grep '^RUN ' | tail -1); res=$(printf '%s\n' "$1" | grep '^RESULT ' | tail -1)
    from=$(get malloc_from "$res")
    if [ -z "$run" ]; then echo harness-error
    elif [ "$(get timeout "$run")" = 1 ]; then echo timeout
    elif [ "$(get signal "$run")" != 0 ]; then echo "SIG$(get signal "$run")"
    elif [ "$(get exit "$run")" != 0 ]; then echo "exit-$(get exit "$run")"
    elif [ -z "$res" ]; then echo no-result
    elif [ -n "${SO[$2]}" ] && [ "$(realpath -e "$from" 2>/dev/null)" != "${SO[$2]}" ]; then echo wrong-malloc
    elif [ -z "${SO[$2]}" ] && [[ "$from" != *libc.so* ]]; then echo wrong-malloc
    else echo ok; fi
}
rotated() {  # $1 rep: the configurations, rotated
    local rep=$1 n k j o=""
    set -- $CFGS; n=$#; k=$(( (rep - 1) % n ))
    for ((j = 0; j < n; j++)); do idx=$(( (k + j) % n + 1 )); o="$o ${!idx}"; done
    echo $o
}
part_meta() { printf '%s; took %ss; load average (1 min) %s at start, %s at end; memscope git %s, sha256 %s…\n' \
    "$(date -u '+%Y-%m-%d %H:%M UTC')" $(( $(date +%s) - P_START )) "${P_LOAD%% *}" "$(cut -d' ' -f1 /proc/loadavg)" \
    "$(git rev-parse --short HEAD)" "$MS_SHA" > "$OUT/latency-$1.meta"; }

if [[ " $PARTS " == *" mix "* ]]; then
    P_START=$(date +%s); P_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
    printf 'config\trep\top\tn\tp50\tp99\tp999\tp9999\tmax\tsecs\tstatus\n' > "$TMIX"
    printf 'config\trep\tk\ttries\tok\tmalloc_max\tfree_max\n' > "$TBIG"
    for rep in $(seq 1 "$RUNS"); do
        for c in $(rotated "$rep"); do
            out=$(run_cfg "$c" mix "$SECS" "$THREADS" "$MAXK" 1000 "$rep")
            st=$(status_of "$out" "$c"); secs=$(get secs "$(printf '%s\n' "$out" | grep '^RESULT ' | tail -1)")
            printf '%s\n' "$out" | awk -v c="$c" -v r="$rep" -v st="$st" -v s="${secs:-0}" "$KV"'
              /^LAT / { printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c, r, g("op"), g("n"), g("p50_ns"), g("p99_ns"), g("p999_ns"), g("p9999_ns"), g("max_ns"), s, st }' >> "$TMIX"
            printf '%s\n' "$out" | awk -v c="$c" -v r="$rep" "$KV"'
              /^BIG / { printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c, r, g("k"), g("tries"), g("okn"), g("malloc_max_ns"), g("free_max_ns") }' >> "$TBIG"
            note "latency: mix [$rep/$RUNS] $c $st $(printf '%s\n' "$out" | grep '^LAT op=malloc' | cut -d' ' -f4-8)"
        done
    done
    part_meta mix
fi
if [[ " $PARTS " == *" huge "* ]]; then
    P_START=$(date +%s); P_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
    printf 'config\trep\tk\tbig_ok\tbig_malloc_ns\tbig_free_ns\top\tn\tp50\tp99\tp999\tp9999\tmax\tstatus\n' > "$THUGE"
    for rep in $(seq 1 "$HRUNS"); do
        for k in $KS; do
            for c in $(rotated "$rep"); do
                out=$(run_cfg "$c" huge "$k" "$HSECS" "$rep")
                st=$(status_of "$out" "$c")
                printf '%s\n' "$out" | awk -v c="$c" -v r="$rep" -v st="$st" "$KV"'
                  /^HUGE / { k = g("k"); ok = g("ok"); bm = g("malloc_ns"); bf = g("free_ns") }
                  /^LAT / { printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c, r, k, ok, bm, bf, g("op"), g("n"), g("p50_ns"), g("p99_ns"), g("p999_ns"), g("p9999_ns"), g("max_ns"), st }' >> "$THUGE"
                note "latency: huge k=$k [$rep/$HRUNS] $c $st $(printf '%s\n' "$out" | grep '^HUGE' | cut -d' ' -f3-) $(printf '%s\n' "$out" | grep '^LAT op=malloc' | cut -d' ' -f3,8)"
            done
        done
    done
    part_meta huge
fi
if [[ " $PARTS " == *" holds "* ]]; then
    P_START=$(date +%s); P_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
    printf 'config\trep\tjob\tjob_ns\tlock_max\tn\tp99\tp999\tmax\tstatus\n' > "$THOLD"
    for rep in $(seq 1 "$HOLD_RUNS"); do
        for c in $(rotated "$rep"); do
            out=$(run_cfg "$c" holds)
            st=$(status_of "$out" "$c")
            printf '%s\n' "$out" | awk -v c="$c" -v r="$rep" -v st="$st" "$KV"'
              /^HOLD / { printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c, r, g("job"), g("job_ns"), g("lock_max_ns"), g("mallocs"), g("p99_ns"), g("p999_ns"), g("max_ns"), st }' >> "$THOLD"
            note "latency: holds [$rep/$HOLD_RUNS] $c $st $(printf '%s\n' "$out" | grep '^HOLD' | awk '{printf "%s %s; ", $2, $4}')"
        done
    done
    part_meta holds
fi

# ---------------------------------------------------------------- report --
MED='function med(s,   n, i, j, t, a) { n = split(s, a, " "); for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
  return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
function mx(s,   n, i, a, m) { n = split(s, a, " "); m = a[1] + 0; for (i = 2; i <= n; i++) if (a[i] + 0 > m) m = a[i] + 0; return m }
function us(ns) { return ns >= 1e6 ? sprintf("%.1f ms", ns / 1e6) : ns >= 1e4 ? sprintf("%.0f µs", ns / 1e3) : ns >= 1e3 ? sprintf("%.1f µs", ns / 1e3) : sprintf("%.0f ns", ns) }'
SEC=$OUT/latency.md
meta() { [ -f "$OUT/latency-$1.meta" ] && printf '_Run: %s_\n\n' "$(cat "$OUT/latency-$1.meta")"; }
{
  echo "<!-- BEGIN bench/run_latency.sh -->"
  echo "## Tail latency of malloc and free (issue 9)"
  echo
  echo "Generated by \`bench/run_latency.sh\` (program \`bench/latency.c\`; method in [README.md](README.md#tail-latency)). Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/{printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo), $(awk '/SwapTotal/{printf "%.0f MiB swap", $2/1024}' /proc/meminfo), vm.overcommit_memory=$(cat /proc/sys/vm/overcommit_memory), kernel $(uname -r)."
  echo "Peers: $(for c in jemalloc tcmalloc mimalloc; do [ -n "${SO[$c]:-}" ] && printf '%s `%s` (%s); ' "$c" "${SO[$c]}" "$(dpkg -S "${SO[$c]}" 2>/dev/null | head -1 | cut -d: -f1 | xargs -r dpkg-query -W -f='${Package} ${Version}' 2>/dev/null)"; done)glibc $(ldd --version | head -1 | awk '{print $NF}'). memscope: \`$MS_ORIG\` (git $(git rev-parse --short HEAD)$( [ -n "$(git status --porcelain -- src include)" ] && echo ', src modified'), sha256 $MS_SHA…) run from a copy; memscope = defaults (scavenge_delay_ms=1000; the heap profiler samples one allocation per 512 KiB on average, and a sampled malloc takes a stack, about 0.3–0.5 µs: with 16..64 KiB blocks that is one malloc in 13, which sets memscope's p99 here), memscope-d0 = \`MEMSCOPE=scavenge_delay_ms=0\`, memscope-p0 = \`MEMSCOPE=profile_rate=0\` (no sampling: the allocator alone, as the peers run)."
  echo "Latencies are measured with \`clock_gettime(CLOCK_MONOTONIC)\` around each single call (the two clock reads, about 20–40 ns, are included in every figure). Percentiles come from a log-linear histogram (about 3 % resolution, upper bucket edge). Each cell is the median over the runs of that statistic; \"max (worst run)\" is the median of the per-run maxima and, in parentheses, the largest of them. On a loaded 2-CPU machine the worker threads are preempted, so maxima of a few ms can be scheduling, not the allocator: compare them across allocators, and trust p99.9 more."
  [ -n "$NOTES" ] && printf '%s' "$NOTES"
  if [ -s "$TMIX" ] && [ -f "$OUT/latency-mix.meta" ]; then
    echo
    echo "### Small/medium threads while huge blocks come and go (\`latency mix $SECS $THREADS $MAXK 1000\`)"
    echo
    meta mix
    echo "$THREADS threads each replace random blocks among 1,000 live blocks of 16 B .. 64 KiB (log-uniform); a fourth thread cycles malloc(2^k) for k = 20, 22, .., $MAXK, writes the first 1 MiB, frees it, and sleeps 2 ms. calls/s = malloc+free pairs per second over all $THREADS threads (throughput, includes the timing overhead)."
    echo
    echo "| allocator | malloc p50 | p99 | p99.9 | p99.99 | max (worst run) | free p50 | p99 | p99.9 | p99.99 | max (worst run) | M pairs/s | runs ok |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    awk -F'\t' "$MED"'
      NR > 1 && $11 == "ok" { k = $1 SUBSEP $3; if (!($1 in sc)) o[++n] = $1; sc[$1] = 1
        for (f = 5; f <= 9; f++) V[k, f] = V[k, f] " " $f; if ($3 == "malloc") { R[$1] = R[$1] " " $4 / $10 / 1e6; ok[$1]++ } }
      NR > 1 && $11 != "ok" && $3 == "malloc" { bad[$1] = bad[$1] " #" $2 ":" $11; if (!($1 in sc)) o[++n] = $1; sc[$1] = 1 }
      END { for (i = 1; i <= n; i++) { c = o[i]; line = "| " c
          for (op = 0; op < 2; op++) { k = c SUBSEP (op ? "free" : "malloc")
            for (f = 5; f <= 8; f++) line = line " | " ((k, f) in V ? us(med(V[k, f])) : "–")
            line = line " | " ((k, 9) in V ? us(med(V[k, 9])) " (" us(mx(V[k, 9])) ")" : "–") }
          printf "%s | %s | %d%s |\n", line, (c in R) ? sprintf("%.2f", med(R[c])) : "–", ok[c], bad[c] ? " failed:" bad[c] : "" } }' "$TMIX"
    echo
    echo "Which huge blocks each allocator could allocate in that run (the fourth thread; ok = successful mallocs / tries over all runs; worst = the slowest single malloc and free of that size in any run):"
    echo
    awk -F'\t' 'NR > 1 { if (!($1 in sc)) o[++n] = $1; sc[$1] = 1; if (!($3 in sk)) ko[++m] = $3; sk[$3] = 1; T[$1, $3] += $4; K[$1, $3] += $5
        if ($6 > M[$1, $3]) M[$1, $3] = $6; if ($7 > F[$1, $3]) F[$1, $3] = $7 }
      function sz(k) { return k >= 30 ? (2 ^ (k - 30)) " GiB" : (2 ^ (k - 20)) " MiB" }
      function t(ns) { return ns >= 1e6 ? sprintf("%.1f ms", ns / 1e6) : sprintf("%.0f µs", ns / 1e3) }
      END { printf "| allocator |"; for (j = 1; j <= m; j++) printf " %s |", sz(ko[j]); print ""
        printf "|---|"; for (j = 1; j <= m; j++) printf "---|"; print ""
        for (i = 1; i <= n; i++) { c = o[i]; printf "| %s |", c
          for (j = 1; j <= m; j++) { k = ko[j]; printf " %s %d/%d; worst %s / %s |", (K[c, k] == T[c, k] ? "ok" : K[c, k] ? "**some**" : "**fails**"), K[c, k], T[c, k], t(M[c, k]), K[c, k] ? t(F[c, k]) : "–" }
          print "" } }' "$TBIG"
  fi
  if [ -s "$THUGE" ] && [ -f "$OUT/latency-huge.meta" ]; then
    echo
    echo "### The issue's scenario: malloc 2^K, touch 1 MiB, free, then malloc+free 16..64 KiB for $HSECS s (\`latency huge K $HSECS\`)"
    echo
    meta huge
    echo "One thread. \"big malloc\" = whether malloc(2^K) succeeded, and how long it (and its free) took. Then $HSECS s of malloc+free pairs of 16..64 KiB (uniform) with each call timed: pairs done, and the malloc and free latencies (medians over runs; worst = largest over runs)."
    echo
    echo "| K (size) | allocator | big malloc | big malloc / free time | pairs in ${HSECS} s (M) | malloc p50 | p99 | p99.9 | max (worst run) | free p99.9 | free max (worst run) |"
    echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    awk -F'\t' "$MED"'
      NR > 1 && $14 == "ok" { key = $3 SUBSEP $1; if (!($3 in sk)) ko[++m] = $3; sk[$3] = 1; if (!($1 in sc)) o[++n] = $1; sc[$1] = 1
        OK[key] = OK[key] ($4 ? "y" : "n"); if ($7 == "malloc") { BM[key] = BM[key] " " $5; BF[key] = BF[key] " " $6; P[key] = P[key] " " $8 / 1e6 }
        for (f = 9; f <= 13; f++) V[key, $7, f] = V[key, $7, f] " " $f }
      NR > 1 && $14 != "ok" { bad[$3 SUBSEP $1] = bad[$3 SUBSEP $1] " #" $2 ":" $14 }
      END { for (j = 1; j <= m; j++) for (i = 1; i <= n; i++) { key = ko[j] SUBSEP o[i]; if (!(key in P)) { if (key in bad) printf "| %s | %s | failed:%s |\n", ko[j], o[i], bad[key]; continue }
          s = OK[key]; okv = (s ~ /^y+$/) ? "ok" : (s ~ /^n+$/) ? "**fails**" : "some"
          k = ko[j]; size = k >= 30 ? (2 ^ (k - 30)) " GiB" : (2 ^ (k - 20)) " MiB"
          printf "| %s (%s) | %s | %s | %s / %s | %.2f | %s | %s | %s | %s (%s) | %s | %s (%s) |\n", k, size, o[i], okv, us(med(BM[key])), (okv == "**fails**" ? "–" : us(med(BF[key]))), med(P[key]),
            us(med(V[key, "malloc", 9])), us(med(V[key, "malloc", 10])), us(med(V[key, "malloc", 11])), us(med(V[key, "malloc", 13])), us(mx(V[key, "malloc", 13])),
            us(med(V[key, "free", 11])), us(med(V[key, "free", 13])), us(mx(V[key, "free", 13])) } }' "$THUGE"
  fi
  if [ -s "$THOLD" ] && [ -f "$OUT/latency-holds.meta" ]; then
    echo
    echo "### Lock holds: memscope's own jobs on a fragmented heap (\`latency holds\`)"
    echo
    meta holds
    echo "1.6M blocks of 512 B, then every other 8 KiB span's worth freed (about 50,000 free spans between spans in use). One job at a time, while one thread mallocs and frees 16..64 KiB blocks, timing each malloc: **scavenge** = the frees and the 3 s after them (memscope's scavenger returns the freed spans; the peers' own background work runs as it would), **idle** = 1 s with nothing asked, **trim** = \`malloc_trim(0)\`, **stats** = 1,000 \`memscope_read_stats\` calls, **profile** = a heap profile written (memscope only), **leakcheck** = \`memscope_check_leaks\` on that heap (memscope only). \"lock hold\" = the longest hold of memscope's heap lock during the job (\`heap_lock_max_ns\`; wall time, so a holder preempted by another process counts its wait too): median over runs, and the largest. The malloc columns are the worker's, medians over runs."
    echo
    echo "| job | allocator | lock hold (largest) | job time | mallocs timed | malloc p99 | p99.9 | max (worst run) |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|"
    awk -F'\t' "$MED"'
      NR > 1 && $10 == "ok" { k = $3 SUBSEP $1; if (!($3 in sj)) jo[++m] = $3; sj[$3] = 1; if (!($1 in sc)) o[++n] = $1; sc[$1] = 1
        L[k] = L[k] " " $5; J[k] = J[k] " " $4; N[k] = N[k] " " $6; P99[k] = P99[k] " " $7; P999[k] = P999[k] " " $8; X[k] = X[k] " " $9 }
      END { for (j = 1; j <= m; j++) for (i = 1; i <= n; i++) { k = jo[j] SUBSEP o[i]; if (!(k in J)) continue
          printf "| %s | %s | %s | %s | %.1fM | %s | %s | %s (%s) |\n", jo[j], o[i], (o[i] ~ /^memscope/ ? us(med(L[k])) " (" us(mx(L[k])) ")" : "–"), us(med(J[k])), med(N[k]) / 1e6,
            us(med(P99[k])), us(med(P999[k])), us(med(X[k])), us(mx(X[k])) } }' "$THOLD"
  fi
  echo "<!-- END bench/run_latency.sh -->"
} > "$SEC"
bash "$(dirname "$0")/put_block.sh" run_latency.sh "$SEC" "$RESULTS"
cat "$SEC"
note "latency: wrote $SEC and its block in $RESULTS"
