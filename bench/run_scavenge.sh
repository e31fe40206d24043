#!/usr/bin/env bash
# bench/run_scavenge.sh — returning memory to the OS: how fast, and at what price.
#
# What it measures and why (results: bench/RESULTS.md, "Scavenging"):
#  1. timeline: bench/rss_timeline.c, the small-objects seed demo (10 M
#     32-byte list nodes built and freed), then 5 s idle with RSS sampled
#     every 50 ms, under glibc, jemalloc, tcmalloc, mimalloc and memscope
#     (defaults).  Reports peak RSS, RSS at the free, and the time from the
#     free until RSS < 60 MiB.  Target for memscope: < 60 MiB within 2 s.
#  2. churn: bench/churn_pause.c, allocate+touch+free a 96 MiB working set of
#     small objects, pause P, repeat; for P in 0 10 100 500 2000 ms, under
#     memscope with scavenge_delay_ms 0/100/1000/10000, jemalloc (default
#     decay and dirty_decay_ms:1000), mimalloc (default and
#     MIMALLOC_RESET_DELAY=1000), glibc.  Reports work time (total minus the
#     pauses), CPU time, minor faults and time-weighted mean RSS: the cost
#     of giving pages back too early vs the RSS kept by giving them back late.
# Configurations are interleaved in a rotating order inside every repetition.
#
# Environment: SCV_RUNS=3, SCV_PARTS="timeline churn", SCV_PAUSES="0 10 100 500 2000",
#   SCV_ORDER=lifo|shuffle (free order of the timeline demo), SCV_WS_MIB=96, SCV_ITERS=5, SCV_MODE=small|large, SCV_CONFIGS="..." (subset of
#   the names below), MEMSCOPE_SO JEMALLOC_SO TCMALLOC_SO MIMALLOC_SO, BUILD=build.
# Output: bench/out/timeline-$SCV_ORDER.tsv, bench/out/churn-$SCV_MODE.tsv (raw), bench/out/scavenge.md.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd); cd "$ROOT" || exit 2
BUILD=${BUILD:-build}; BIN=$BUILD/bench; OUT=bench/out; CC=${CC:-cc}
RUNS=${SCV_RUNS:-3}; PARTS=${SCV_PARTS:-timeline churn}; ORDER=${SCV_ORDER:-lifo}
mkdir -p "$BIN" "$OUT"
for p in rss_timeline churn_pause runone; do
    $CC -std=c11 -O2 -pthread -Wall -Wextra -o "$BIN/$p" "bench/$p.c" || exit 2
done
LIB=/usr/lib/$($CC -print-multiarch 2>/dev/null)
[ -d "$LIB" ] || LIB=/lib/x86_64-linux-gnu
JE=${JEMALLOC_SO:-$LIB/libjemalloc.so.2}; TC=${TCMALLOC_SO:-$LIB/libtcmalloc_minimal.so.4}
MI=${MIMALLOC_SO:-$LIB/libmimalloc.so.2}
MS_ORIG=$(realpath "${MEMSCOPE_SO:-$BUILD/libmemscope.so}") || { echo "no libmemscope.so (make lib)" >&2; exit 2; }
cp "$MS_ORIG" "$OUT/libmemscope-scv.so"; MS=$(realpath "$OUT/libmemscope-scv.so")
unset MEMSCOPE MALLOC_CONF MIMALLOC_RESET_DELAY
get() { printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }
rotate() { local k=$1; shift; local n=$# i; for ((i = 0; i < n; i++)); do local idx=$(( (k + i) % n + 1 )); printf '%s ' "${!idx}"; done; }

# config name -> "preload|env assignments"
declare -A CFG=(
  [glibc]="|"
  [jemalloc]="$JE|"
  [tcmalloc]="$TC|"
  [mimalloc]="$MI|"
  [memscope]="$MS|"
  [jemalloc-decay1000]="$JE|MALLOC_CONF=dirty_decay_ms:1000"
  [mimalloc-reset1000]="$MI|MIMALLOC_RESET_DELAY=1000"
  [memscope-d0]="$MS|MEMSCOPE=scavenge_delay_ms=0"
  [memscope-d100]="$MS|MEMSCOPE=scavenge_delay_ms=100"
  [memscope-d1000]="$MS|MEMSCOPE=scavenge_delay_ms=1000"
  [memscope-d10000]="$MS|MEMSCOPE=scavenge_delay_ms=10000"
)
runcfg() { # config, program, args...
    local c=$1; shift; local so=${CFG[$c]%%|*} envs=${CFG[$c]#*|}
    env $envs "$BIN/runone" -t 300 -p "$so" -- "$@" 2>&1
}
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg); START=$(date +%s)

if [[ " $PARTS " == *" timeline "* ]]; then
  T=$OUT/timeline-$ORDER.tsv; printf 'alloc\trep\tpeak_kib\tat_free_kib\tfirst_below_ms\tstays_below_ms\tend_kib\tbuild_free_s\tsamples\n' > "$T"
  for rep in $(seq 1 "$RUNS"); do
    for c in $(rotate $((rep - 1)) glibc jemalloc tcmalloc mimalloc memscope); do
      out=$(runcfg "$c" "$BIN/rss_timeline" 10000000 5000 50 61440 "$ORDER")
      res=$(printf '%s\n' "$out" | grep '^RESULT ' | tail -1)
      smax=$(printf '%s\n' "$out" | sed -n 's/^SAMPLE .*rss_kib=//p' | sort -n | tail -1)
      hwm=$(get peak_kib "$res"); [ "${smax:-0}" -gt "${hwm:-0}" ] && hwm=$smax
      samples=$(printf '%s\n' "$out" | awk '/^SAMPLE/{split($2,a,"=");split($3,b,"="); if (a[2] % 500 < 50) printf "%s:%d ", a[2], b[2]/1024}')
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$rep" "$hwm" "$(get rss_at_free_kib "$res")" \
        "$(get first_below_ms "$res")" "$(get stays_below_ms "$res")" "$(get rss_end_kib "$res")" "$(get build_free_s "$res")" "$samples" >> "$T"
      echo "timeline: [$rep/$RUNS] $c first_below_ms=$(get first_below_ms "$res") $samples" >&2
    done
  done
fi

if [[ " $PARTS " == *" churn "* ]]; then
  C=$OUT/churn-${SCV_MODE:-small}.tsv; printf 'config\tpause_ms\trep\twall_s\twork_s\tcpu_s\tminflt\tmean_rss_kib\tmax_rss_kib\tstatus\n' > "$C"
  CONFIGS=${SCV_CONFIGS:-glibc jemalloc jemalloc-decay1000 mimalloc mimalloc-reset1000 memscope-d0 memscope-d100 memscope-d1000 memscope-d10000}
  for rep in $(seq 1 "$RUNS"); do
    for p in ${SCV_PAUSES:-0 10 100 500 2000}; do
      for c in $(rotate $((rep + p)) $CONFIGS); do
        out=$(runcfg "$c" "$BIN/churn_pause" "${SCV_WS_MIB:-96}" "${SCV_ITERS:-5}" "$p" "${SCV_MODE:-small}")
        run=$(printf '%s\n' "$out" | grep '^RUN ' | tail -1); res=$(printf '%s\n' "$out" | grep '^RESULT ' | tail -1)
        st=ok; [ "$(get exit "$run")" = 0 ] && [ "$(get signal "$run")" = 0 ] && [ -n "$res" ] || st=fail
        cpu=$(awk -v u="$(get user_s "$run")" -v s="$(get sys_s "$run")" 'BEGIN{printf "%.3f", u + s}')
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$p" "$rep" "$(get wall_s "$run")" "$(get work_s "$res")" \
          "$cpu" "$(get minflt "$res")" "$(get mean_rss_kib "$res")" "$(get max_rss_kib "$res")" "$st" >> "$C"
        echo "churn: [$rep/$RUNS] P=$p $c work=$(get work_s "$res") cpu=$cpu minflt=$(get minflt "$res") meanrss=$(get mean_rss_kib "$res") $st" >&2
      done
    done
  done
fi
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ------------------------------------------------------------- report -----
MED='function med(s,   n, i, j, t, a) { n = split(s, a, " "); for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
  return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }'
{
  echo "Runs: $RUNS per cell, medians; took $(( $(date +%s) - START ))s; load average at start $LOAD_START, at end $LOAD_END."
  if [ -s "$OUT/timeline-$ORDER.tsv" ] && [[ " $PARTS " == *" timeline "* ]]; then
    echo; echo "### RSS after the free (10 M × 32 B nodes freed in $ORDER order, then 5 s idle, sampled every 50 ms)"; echo
    echo "| allocator | peak RSS (MiB) | RSS at free (MiB) | first < 60 MiB after free (ms), each run | RSS at +5 s (MiB) | timeline of run 1 (ms:MiB) |"
    echo "|---|---:|---:|---|---:|---|"
    awk -F'\t' "$MED"'
      NR > 1 { if (!($1 in s)) o[++n] = $1; s[$1] = 1; pk[$1] = pk[$1] " " $3; af[$1] = af[$1] " " $4
               fb[$1] = fb[$1] ($5 < 0 ? "never" : $5) " "; en[$1] = en[$1] " " $7; if ($2 == 1) tl[$1] = $9 }
      END { for (i = 1; i <= n; i++) { a = o[i]
        printf "| %s | %.1f | %.1f | %s| %.1f | %s |\n", a, med(pk[a]) / 1024, med(af[a]) / 1024, fb[a], med(en[a]) / 1024, tl[a] } }' "$OUT/timeline-$ORDER.tsv"
  fi
  if [ -s "$OUT/churn-${SCV_MODE:-small}.tsv" ] && [[ " $PARTS " == *" churn "* ]]; then
    echo; echo "### Churn with pauses (${SCV_WS_MIB:-96} MiB of ${SCV_MODE:-small} objects, ${SCV_ITERS:-5} rounds)"; echo
    echo "Each cell: work time (s, total minus the pauses) / CPU (s) / minor faults (thousands) / mean RSS (MiB)."; echo
    awk -F'\t' "$MED"'
      NR > 1 && $10 == "ok" { k = $1 SUBSEP $2; if (!($1 in sc)) co[++nc] = $1; sc[$1] = 1; if (!($2 in sp)) po[++np] = $2; sp[$2] = 1
        W[k] = W[k] " " $5; C[k] = C[k] " " $6; F[k] = F[k] " " $7; R[k] = R[k] " " $8 }
      END { printf "| config |"; for (j = 1; j <= np; j++) printf " P=%s ms |", po[j]; printf "\n|---|"; for (j = 1; j <= np; j++) printf "---:|"; printf "\n"
        for (i = 1; i <= nc; i++) { printf "| %s |", co[i]
          for (j = 1; j <= np; j++) { k = co[i] SUBSEP po[j]; if (!(k in W)) { printf " – |"; continue }
            printf " %.2f / %.2f / %.0fk / %.0f |", med(W[k]), med(C[k]), med(F[k]) / 1000, med(R[k]) / 1024 }
          printf "\n" } }' "$OUT/churn-${SCV_MODE:-small}.tsv"
  fi
} > "$OUT/scavenge.md"
cat "$OUT/scavenge.md"
