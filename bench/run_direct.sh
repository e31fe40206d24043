#!/usr/bin/env bash
# bench/run_direct.sh: where very large blocks should leave the page heap
# (issue 9, "Very large blocks: decide by measurement").
#
# memscope gives a block of MS_DIRECT_MIN_BYTES or more a mapping of its own,
# unmapped at free (pageheap.c).  Below the threshold a freed block's pages
# stay in the page heap, resident, for the next malloc, until the scavenger
# returns them.  The trade: a reused block costs no page faults through the
# page heap but one fault per page when mapped afresh; a freed block that is
# not reused leaves work for the scavenger and RSS until it runs.  This
# script builds memscope with several thresholds (build/direct-*/; the same
# sources, -DMS_DIRECT_MIN_BYTES=...) and runs, interleaved, with the heap
# profiler off so that only the allocator is measured:
#   churn   `large 2000 8 page`: blocks of 64 KiB .. 8 MiB, 8 live, one byte
#           written per page (the mid-size traffic of real programs)
#   cycleN  `large cycle N 8`: malloc N MiB, write every page, free; 8 times
#   stallK  `latency huge K 2`: malloc 2^K, write 1 MiB, free, then 2 s of
#           16..64 KiB malloc+free timed one by one (the scavenger has the
#           freed block's pages to return when it went to the page heap)
# Reported per threshold: medians of wall time, CPU time, page faults and
# peak RSS, and for the stall runs the worst malloc and p99.9.
#
# Thresholds: "16M-fixed" maps every block of 16 MiB or more on its own;
# "1G" is memscope's rule (start at 1 GiB, rise to the size of each direct
# block freed, up to 64 GiB: pageheap.c); "never" sends every block through
# the page heap.
# Environment: DIRECT_RUNS=3  DIRECT_THRESHOLDS="1M-fixed 16M-fixed 256M-fixed 1G-fixed 1G never"
#   DIRECT_CYCLES="64 256 1024"  DIRECT_KS="30 34"  BUILD=build
#   BENCH_RESULTS=bench/RESULTS.md (only the block between
#   "<!-- BEGIN bench/run_direct.sh -->" and "<!-- END bench/run_direct.sh -->"
#   is replaced).  Raw data: bench/out/direct.tsv, bench/out/direct.log.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd); cd "$ROOT" || exit 2
BUILD=${BUILD:-build}; BIN=$BUILD/bench; OUT=bench/out; CC=${CC:-cc}
RUNS=${DIRECT_RUNS:-3}; THRESHOLDS=${DIRECT_THRESHOLDS:-1M-fixed 16M-fixed 256M-fixed 1G-fixed 1G never}
CYCLES=${DIRECT_CYCLES:-64 256 1024}; KS=${DIRECT_KS:-30 34}
RESULTS=${BENCH_RESULTS:-bench/RESULTS.md}
mkdir -p "$BIN" "$OUT"
note() { printf '%s\n' "$*" >&2; }

for p in latency large runone; do
    $CC -std=c11 -O2 -pthread -Wall -Wextra -o "$BIN/$p" "bench/$p.c" || exit 2
done
bytes_of() { case ${1%-fixed} in *M) echo $(( ${1%M} << 20 ));; *G) echo $(( ${1%G} << 30 ));; never) echo $(( 1 << 60 ));; esac; }
declare -A SO
for t in $THRESHOLDS; do
    b=$(bytes_of "${t%-fixed}") || exit 2
    d=$BUILD/direct-$t
    adaptive=1; [[ $t == *-fixed ]] && adaptive=0
    make -s BUILD="$d" RELFLAGS="-O2 -g -DNDEBUG -DMS_DIRECT_MIN_BYTES=${b}ull -DMS_DIRECT_ADAPTIVE=$adaptive" "$d/libmemscope.so" >&2 || exit 2
    SO[$t]=$(realpath "$d/libmemscope.so")
done
get() { printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }
TSV=$OUT/direct.tsv; LOG=$OUT/direct.log; : > "$LOG"
printf 'threshold\trep\tworkload\twall_s\tcpu_s\tminflt\tmaxrss_kib\tworst_ms\tp999_ns\tstatus\n' > "$TSV"
START=$(date +%s); LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

WORKS="churn"; for c in $CYCLES; do WORKS="$WORKS cycle$c"; done; for k in $KS; do WORKS="$WORKS stall$k"; done
args_of() { case $1 in churn) echo "$BIN/large 2000 8 page";; cycle*) echo "$BIN/large cycle ${1#cycle} 8";;
    stall*) echo "$BIN/latency huge ${1#stall} 2";; esac; }
set -- $THRESHOLDS; NT=$#
for rep in $(seq 1 "$RUNS"); do
    for w in $WORKS; do
        set -- $THRESHOLDS; k=$(( (rep - 1) % NT )); order=""
        for ((j = 0; j < NT; j++)); do idx=$(( (k + j) % NT + 1 )); order="$order ${!idx}"; done
        for t in $order; do
            out=$(MEMSCOPE=profile_rate=0 "$BIN/runone" -t 300 -p "${SO[$t]}" -- $(args_of "$w") 2>&1)
            { echo "### threshold=$t rep=$rep $w"; printf '%s\n' "$out"; } >> "$LOG"
            run=$(printf '%s\n' "$out" | grep '^RUN ' | tail -1); res=$(printf '%s\n' "$out" | grep '^RESULT ' | tail -1)
            st=ok
            if [ -z "$res" ] || [ "$(get exit "$run")" != 0 ]; then st=failed; fi
            [ "$(realpath -e "$(get malloc_from "$res")" 2>/dev/null)" = "${SO[$t]}" ] || st=wrong-malloc
            worst=$(get worst_cycle_ms "$res"); p999=""
            if [[ $w == stall* ]]; then
                lat=$(printf '%s\n' "$out" | grep '^LAT op=malloc' | tail -1)
                worst=$(awk -v v="$(get max_ns "$lat")" 'BEGIN{printf "%.3f", v / 1e6}'); p999=$(get p999_ns "$lat")
            fi
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$rep" "$w" "$(get wall_s "$run")" \
                "$(awk -v u="$(get user_s "$run")" -v s="$(get sys_s "$run")" 'BEGIN{print u + s}')" \
                "$(get minflt "$run")" "$(get maxrss_kib "$run")" "${worst:-}" "${p999:-}" "$st" >> "$TSV"
            note "direct: [$rep/$RUNS] $w threshold=$t $st wall=$(get wall_s "$run") minflt=$(get minflt "$run") worst_ms=${worst:-}"
        done
    done
done

SEC=$OUT/direct.md
{
  echo "<!-- BEGIN bench/run_direct.sh -->"
  echo "## Where very large blocks leave the page heap (issue 9)"
  echo
  echo "Generated by \`bench/run_direct.sh\`: memscope built with each threshold (\`-DMS_DIRECT_MIN_BYTES\`; blocks at or above it get their own mapping, unmapped at free; \"-fixed\" = the threshold never moves, \"1G\" = memscope's rule: it starts at 1 GiB and rises to the size of each direct block freed, up to 64 GiB; \"never\" = everything through the page heap), heap profiler off (\`MEMSCOPE=profile_rate=0\`), scavenger at its default delay (1 s). Medians of $RUNS interleaved runs. Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r), vm.overcommit_memory=$(cat /proc/sys/vm/overcommit_memory); memscope git $(git rev-parse --short HEAD)$( [ -n "$(git status --porcelain -- src include)" ] && echo ', src modified')."
  echo
  echo "_Run: $(date -u '+%Y-%m-%d %H:%M UTC'); took $(( $(date +%s) - START ))s; load average (1 min) ${LOAD0%% *} at start, $(cut -d' ' -f1 /proc/loadavg) at end_"
  echo
  echo "churn = \`large 2000 8 page\` (64 KiB .. 8 MiB, 8 live); cycleN = \`large cycle N 8\` (malloc N MiB, write every page, free, 8 times); stallK = \`latency huge K 2\` (free a 2^K block with 1 MiB written, then 2 s of 16..64 KiB malloc+free; worst = the slowest malloc)."
  echo
  echo "| workload | threshold | wall | CPU | page faults | peak RSS | worst | p99.9 |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|"
  awk -F'\t' '
    function med(s,   n, i, j, t, a) { n = split(s, a, " "); for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
    NR > 1 && $10 == "ok" { k = $3 SUBSEP $1; if (!($3 in sw)) wo[++m] = $3; sw[$3] = 1; if (!($1 in st)) to[++n] = $1; st[$1] = 1
      W[k] = W[k] " " $4; C[k] = C[k] " " $5; F[k] = F[k] " " $6; R[k] = R[k] " " $7; if ($8 != "") X[k] = X[k] " " $8; if ($9 != "") P[k] = P[k] " " $9 }
    NR > 1 && $10 != "ok" { bad[$3 SUBSEP $1] = bad[$3 SUBSEP $1] " #" $2 ":" $10 }
    END { for (j = 1; j <= m; j++) for (i = 1; i <= n; i++) { k = wo[j] SUBSEP to[i]
        if (!(k in W)) { if (k in bad) printf "| %s | %s | failed:%s | | | | | |\n", wo[j], to[i], bad[k]; continue }
        printf "| %s | %s | %.3f s | %.3f s | %d | %.0f MiB | %s | %s |\n", wo[j], to[i], med(W[k]), med(C[k]), med(F[k]), med(R[k]) / 1024,
          (k in X) ? sprintf("%.2f ms", med(X[k])) : "–", (k in P) ? sprintf("%d ns", med(P[k])) : "–" } }' "$TSV"
  echo "<!-- END bench/run_direct.sh -->"
} > "$SEC"
bash "$(dirname "$0")/put_block.sh" run_direct.sh "$SEC" "$RESULTS"
cat "$SEC"
note "direct: wrote $SEC and its block in $RESULTS"
