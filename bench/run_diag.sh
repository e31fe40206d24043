#!/usr/bin/env bash
# bench/run_diag.sh — what memscope's diagnostics cost.
#
# What it measures and why: the seven workloads of bench/run.sh, under
# memscope only, in three variants, to check the design target that
# diagnostics cost at most 1% (geometric mean):
#   base   MEMSCOPE unset
#   trace  MEMSCOPE=trace=1 (the gc/scvg trace lines; stderr to /dev/null)
#   stats  build/bench/statsreader.so preloaded after memscope: a thread that
#          calls memscope_read_stats every STATSREADER_MS (10) ms
# Variants are interleaved in a rotating order inside every repetition; the
# report gives medians of wall time and of CPU time (user+sys, which is less
# sensitive to other load), ratios vs base, and their geometric means, plus
# the min-max spread of the base runs as the noise bound.
#
# Environment: BENCH_RUNS=5, BENCH_WORKLOADS="...", MEMSCOPE_SO, BUILD=build,
#   DIAG_OUT=bench/out/diag.md (markdown tables), raw rows in bench/out/diag.tsv
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd); cd "$ROOT" || exit 2
BUILD=${BUILD:-build}; BIN=$BUILD/bench; OUT=bench/out; CC=${CC:-cc}
RUNS=${BENCH_RUNS:-5}
mkdir -p "$BIN" "$OUT"
for p in st_churn larson prodcons mixed_realloc large seed_vector small_nodes runone; do
    $CC -std=c11 -O2 -pthread -Wall -Wextra -o "$BIN/$p" "bench/$p.c" || exit 2
done
$CC -std=c11 -O2 -Wall -Wextra -fPIC -shared -pthread -o "$BIN/statsreader.so" bench/statsreader.c -ldl || exit 2
MS_ORIG=$(realpath "${MEMSCOPE_SO:-$BUILD/libmemscope.so}") || { echo "no libmemscope.so (make lib)" >&2; exit 2; }
cp "$MS_ORIG" "$OUT/libmemscope-diag.so"; MS=$(realpath "$OUT/libmemscope-diag.so")
SR=$(realpath "$BIN/statsreader.so")
unset MEMSCOPE

WORKLOAD_TABLE="
st-churn|st_churn|30000000 20000
larson|larson|40 250000 5000 2
prodcons|prodcons|10000000 4096
mixed-realloc|mixed_realloc|4000000 4000
large|large|500 8 page
seed-vector|seed_vector|32000000 1
small-nodes|small_nodes|10000000 1
"
WORKLOADS=${BENCH_WORKLOADS:-$(printf '%s\n' "$WORKLOAD_TABLE" | awk -F'|' 'NF==3{print $1}')}
wl_field() { printf '%s\n' "$WORKLOAD_TABLE" | awk -F'|' -v n="$1" -v f="$2" '$1==n{print $f}'; }
get() { printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }

RAW=$OUT/diag.tsv
printf 'workload\tvariant\trep\twall_s\tuser_s\tsys_s\tstatus\treader_calls\treader_mean_us\n' > "$RAW"
VARIANTS="base trace stats"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg); START=$(date +%s)
for rep in $(seq 1 "$RUNS"); do
  for w in $WORKLOADS; do
    prog=$(wl_field "$w" 2); args=$(wl_field "$w" 3)
    set -- $VARIANTS; k=$(( (rep - 1) % 3 )); order=""
    for j in 0 1 2; do idx=$(( (k + j) % 3 + 1 )); order="$order ${!idx}"; done
    for v in $order; do
      case $v in
        base)  out=$("$BIN/runone" -t 120 -p "$MS" -- "$BIN/$prog" $args 2>&1) ;;
        trace) out=$(MEMSCOPE=trace=1 "$BIN/runone" -t 120 -p "$MS" -- "$BIN/$prog" $args 2>/dev/null) ;;
        stats) out=$("$BIN/runone" -t 120 -p "$MS $SR" -- "$BIN/$prog" $args 2>&1) ;;
      esac
      run=$(printf '%s\n' "$out" | grep '^RUN ' | tail -1)
      res=$(printf '%s\n' "$out" | grep '^RESULT ' | tail -1)
      sr=$(printf '%s\n' "$out" | grep -o 'STATSREADER.*' | tail -1)
      status=ok
      [ "$(get exit "$run")" = 0 ] && [ "$(get signal "$run")" = 0 ] || status=fail
      case $(get malloc_from "$res") in "$MS") ;; *) status=wrong-malloc ;; esac
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$v" "$rep" "$(get wall_s "$run")" \
        "$(get user_s "$run")" "$(get sys_s "$run")" "$status" "$(get calls "$sr")" "$(get mean_us "$sr")" >> "$RAW"
      printf 'diag: [%d/%d] %-13s %-6s wall=%s user=%s sys=%s %s %s\n' "$rep" "$RUNS" "$w" "$v" \
        "$(get wall_s "$run")" "$(get user_s "$run")" "$(get sys_s "$run")" "$status" "$sr" >&2
    done
  done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

awk -F'\t' -v runs="$RUNS" -v ls="$LOAD_START" -v le="$LOAD_END" -v secs=$(( $(date +%s) - START )) '
function med(key,   n, i, j, t, a) { n = split(V[key], a, " "); for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
  return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
function mn(key,   n, i, a, m) { n = split(V[key], a, " "); m = a[1] + 0; for (i = 2; i <= n; i++) if (a[i] + 0 < m) m = a[i] + 0; return m }
function mx(key,   n, i, a, m) { n = split(V[key], a, " "); m = a[1] + 0; for (i = 2; i <= n; i++) if (a[i] + 0 > m) m = a[i] + 0; return m }
NR > 1 && $7 == "ok" { k = $1 SUBSEP $2; V[k "w"] = V[k "w"] " " $4; V[k "c"] = V[k "c"] " " ($5 + $6)
  if (!($1 in seen)) { seen[$1] = 1; order[++nw] = $1 }
  if ($2 == "stats") { calls[$1] += $8; us[$1] += $8 * $9 } }
END {
  printf "%d runs per (workload, variant), medians; whole run %ds; load average at start %s, at end %s.\n\n", runs, secs, ls, le
  print "| workload | base wall (s) [min–max] | trace wall | stats wall | base CPU (s) [min–max] | trace CPU | stats CPU | trace/base wall | stats/base wall | trace/base CPU | stats/base CPU | read_stats calls, mean µs |"
  print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for (i = 1; i <= nw; i++) { w = order[i]; b = w SUBSEP "base"; t = w SUBSEP "trace"; s = w SUBSEP "stats"
    bw = med(b "w"); tw = med(t "w"); sw = med(s "w"); bc = med(b "c"); tc = med(t "c"); sc = med(s "c")
    lw1 += log(tw / bw); lw2 += log(sw / bw); lc1 += log(tc / bc); lc2 += log(sc / bc)
    sp = (mx(b "c") - mn(b "c")) / bc; spread += log(1 + sp)
    printf "| %s | %.3f [%.3f–%.3f] | %.3f | %.3f | %.3f [%.3f–%.3f] | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %d, %.0f |\n", w, bw, mn(b "w"), mx(b "w"), tw, sw, bc, mn(b "c"), mx(b "c"), tc, sc, tw / bw, sw / bw, tc / bc, sc / bc, calls[w] / runs, calls[w] ? us[w] / calls[w] : 0 }
  printf "| **geomean** | | | | | | | **%.3f** | **%.3f** | **%.3f** | **%.3f** | |\n", exp(lw1 / nw), exp(lw2 / nw), exp(lc1 / nw), exp(lc2 / nw)
  printf "\nNoise bound: geometric mean of the (max−min)/median spread of the *base* CPU time over the workloads = %.1f%%.\n", (exp(spread / nw) - 1) * 100
}' "$RAW" > "${DIAG_OUT:-$OUT/diag.md}"
cat "${DIAG_OUT:-$OUT/diag.md}"
