#!/usr/bin/env bash
# bench/run_profile.sh: what the heap profiler costs (issue 6, "Speed").
#
# What it measures and why:
#  1. rate: the seven workloads of bench/run.sh (same programs, same sizes),
#     under memscope with MEMSCOPE=profile_rate=0 (off) and
#     profile_rate=524288 (the default), interleaved in alternating order in
#     every repetition.  Medians of wall and CPU (user+sys) time, and their
#     ratios.  Target: at most 2% cost on each workload.
#  2. peers: one or two workloads at reduced sizes, recording every
#     allocation: memscope profile_rate=1 (writing a pprof file at exit)
#     against heaptrack, valgrind --tool=massif and gperftools' HEAPPROFILE
#     (libtcmalloc.so.4), with memscope profiling off and plain glibc as the
#     baselines.  Goal: memscope rate 1 at least 3x faster than heaptrack.
#  3. stack: bench/stackcost.c, linked against build/libmemscope.a and built
#     -O2 -fomit-frame-pointer: ns per ms_stack_capture(pcs, 64, 0) from a
#     recursion 10 and 50 deep, and ns per malloc(32)+free at that depth with
#     profile_rate=1 minus profile_rate=0 (the full cost of one sample: the
#     capture, the table, the block map and the free's lookup).
#
# Environment:
#   PROF_PARTS="rate instr peers stack"   which parts to run (the report keeps
#                                   the last tables of parts not run now)
#   BENCH_RUNS=5                    repetitions of part 1 (and of part 3)
#   BENCH_WORKLOADS="..."           subset of part 1's workloads
#   PROF_PEER_RUNS=3                repetitions of part 2
#   PROF_PEER_WORKLOADS="small-nodes st-churn"
#   PROF_PEERS="glibc ms-off ms-rate1 heaptrack massif gperftools"
#   PROF_DEPTHS="10 50"  PROF_CAPTURES=200000  PROF_ALLOCS=200000   (part 3)
#   MEMSCOPE_SO, BUILD=build, BENCH_TIMEOUT=120 (seconds per run)
#   BENCH_RESULTS=bench/RESULTS.md  the report: this script replaces only the
#     text between "<!-- BEGIN bench/run_profile.sh -->" and
#     "<!-- END bench/run_profile.sh -->" (appending the block the first
#     time); the rest of the file is left alone.
# Raw data: bench/out/profile-rate.tsv, profile-peers.tsv, profile-stack.tsv;
# the section alone: bench/out/profile.md.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd); cd "$ROOT" || exit 2
BUILD=${BUILD:-build}; BIN=$BUILD/bench; OUT=bench/out; CC=${CC:-cc}
RUNS=${BENCH_RUNS:-5}; PRUNS=${PROF_PEER_RUNS:-3}; TIMEOUT=${BENCH_TIMEOUT:-120}
PARTS=${PROF_PARTS:-rate instr peers stack}
RESULTS=${BENCH_RESULTS:-bench/RESULTS.md}
mkdir -p "$BIN" "$OUT"
note() { printf '%s\n' "$*" >&2; }

# ---------------------------------------------------------------- build ----
for p in st_churn larson prodcons mixed_realloc large seed_vector small_nodes tl_remote false_sharing many_threads alloc_test runone; do
    $CC -std=c11 -O2 -pthread -Wall -Wextra -o "$BIN/$p" "bench/$p.c" || exit 2
done
[ -f "$BUILD/libmemscope.a" ] || { note "no $BUILD/libmemscope.a (make lib)"; exit 2; }
LIBIBERTY=$(ls /usr/lib/x86_64-linux-gnu/libiberty.a /usr/lib/libiberty.a 2>/dev/null | head -1)
$CC -std=c11 -O2 -fomit-frame-pointer -rdynamic -D_GNU_SOURCE -Wall -Wextra -Isrc -Iinclude \
    -o "$BIN/stackcost" bench/stackcost.c "$BUILD/libmemscope.a" -lunwind -lz -lm $LIBIBERTY -lpthread -ldl || exit 2
MS_ORIG=$(realpath "${MEMSCOPE_SO:-$BUILD/libmemscope.so}") || { note "no libmemscope.so (make lib)"; exit 2; }
cp "$MS_ORIG" "$OUT/libmemscope-prof.so"; MS=$(realpath "$OUT/libmemscope-prof.so")
MS_SHA=$(sha256sum "$MS" | cut -c1-16)
unset MEMSCOPE HEAPPROFILE

# The workloads and sizes of bench/run.sh, read from it so they stay the same.
WORKLOAD_TABLE=$(sed -n '/^WORKLOAD_TABLE="/,/^"/p' bench/run.sh | sed '1d;$d')
[ -n "$WORKLOAD_TABLE" ] || { note "cannot read WORKLOAD_TABLE from bench/run.sh"; exit 2; }
WORKLOADS=${BENCH_WORKLOADS:-$(printf '%s\n' "$WORKLOAD_TABLE" | awk -F'|' 'NF==3{print $1}')}
wl_field() { printf '%s\n' "$WORKLOAD_TABLE" | awk -F'|' -v n="$1" -v f="$2" '$1==n{print $f}'; }
# Part 2: reduced sizes (heaptrack, massif and gperftools record every
# allocation; these keep each run of theirs under ~30 s here).
PEER_TABLE="
small-nodes|small_nodes|1000000 1
st-churn|st_churn|1000000 20000
"
peer_field() { printf '%s\n' "$PEER_TABLE" | awk -F'|' -v n="$1" -v f="$2" '$1==n{print $f}'; }
get() { printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }
MED='function med(s,   n, i, j, t, a) { n = split(s, a, " "); for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
  return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
function mn(s,   n, i, a, m) { n = split(s, a, " "); m = a[1] + 0; for (i = 2; i <= n; i++) if (a[i] + 0 < m) m = a[i] + 0; return m }
function mx(s,   n, i, a, m) { n = split(s, a, " "); m = a[1] + 0; for (i = 2; i <= n; i++) if (a[i] + 0 > m) m = a[i] + 0; return m }'
# status of one runone output: ok, or why not; $2: the library that must serve malloc ("" = any)
status_of() {
    local out=$1 want=$2 run res
    run=$(printf '%s\n' "$out" | grep '^RUN ' | tail -1); res=$(printf '%s\n' "$out" | grep '^RESULT ' | tail -1)
    if [ -z "$run" ]; then echo harness-error
    elif [ "$(get timeout "$run")" = 1 ]; then echo timeout
    elif [ "$(get signal "$run")" != 0 ]; then echo "SIG$(get signal "$run")"
    elif [ "$(get exit "$run")" != 0 ]; then echo "exit-$(get exit "$run")"
    elif [ -z "$res" ]; then echo no-result
    elif [ -n "$want" ] && [ "$(get malloc_from "$res")" != "$want" ]; then echo wrong-malloc
    else echo ok; fi
}
cpu_of() { awk -v u="$(get user_s "$1")" -v s="$(get sys_s "$1")" 'BEGIN{printf "%.3f", u + s}'; }

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg); START=$(date +%s)
REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "no commit")
# part_begin/part_end: each part's date, duration, load and build go to
# bench/out/profile-PART.meta, so that a part rerun alone (PROF_PARTS=...)
# replaces only its own table and the others keep theirs, with their own dates.
part_begin() { P_START=$(date +%s); P_LOAD=$(cut -d' ' -f1-3 /proc/loadavg); }
part_end() {
    printf '%s; took %ss; load average (1 min) %s at start, %s at end; memscope git %s, sha256 %s…\n' \
        "$(date -u '+%Y-%m-%d %H:%M UTC')" $(( $(date +%s) - P_START )) "${P_LOAD%% *}" \
        "$(cut -d' ' -f1 /proc/loadavg)" "$REV" "$MS_SHA" > "$OUT/profile-$1.meta"
}
meta() { [ -f "$OUT/profile-$1.meta" ] && printf '_Run: %s_\n\n' "$(cat "$OUT/profile-$1.meta")"; }
TMPD=$(mktemp -d /tmp/msprof.XXXXXX); trap 'rm -rf "$TMPD"' EXIT

# ----------------------------------------------------- part 1: rate ----
if [[ " $PARTS " == *" rate "* ]]; then
  part_begin
  R=$OUT/profile-rate.tsv; printf 'workload\tvariant\trep\twall_s\tcpu_s\tmaxrss_kib\tstatus\n' > "$R"
  for rep in $(seq 1 "$RUNS"); do
    for w in $WORKLOADS; do
      prog=$(wl_field "$w" 2); args=$(wl_field "$w" 3)
      [ -n "$prog" ] || { note "unknown workload $w"; exit 2; }
      if [ $((rep % 2)) = 1 ]; then order="off default"; else order="default off"; fi
      for v in $order; do
        case $v in off) rate=0 ;; default) rate=524288 ;; esac
        out=$(MEMSCOPE=profile_rate=$rate "$BIN/runone" -t "$TIMEOUT" -p "$MS" -- "$BIN/$prog" $args 2>&1)
        run=$(printf '%s\n' "$out" | grep '^RUN ' | tail -1); st=$(status_of "$out" "$MS")
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$v" "$rep" "$(get wall_s "$run")" "$(cpu_of "$run")" \
          "$(get maxrss_kib "$run")" "$st" >> "$R"
        note "$(printf 'profile/rate: [%d/%d] %-13s %-7s wall=%s cpu=%s %s' "$rep" "$RUNS" "$w" "$v" "$(get wall_s "$run")" "$(cpu_of "$run")" "$st")"
      done
    done
  done
  part_end rate
fi

# ---------------------------------------------------- part 1b: instr ----
# The same comparison counted in instructions under valgrind --tool=callgrind:
# exact and independent of the machine's load, at reduced sizes.  prodcons
# and larson have threads that spin or race, so their counts vary a little.
INSTR_TABLE="
st-churn|st_churn|2000000 20000
larson|larson|4 250000 5000 2
prodcons|prodcons|1000000 4096
mixed-realloc|mixed_realloc|300000 4000
large|large|500 8 page
seed-vector|seed_vector|8000000 1
small-nodes|small_nodes|2000000 1
"
CGCALLS='/^c?fn=\(/ { match($0, /\(([0-9]+)\)/, m); id = m[1]; rest = substr($0, RSTART + RLENGTH); sub(/^ /, "", rest)
    if (rest != "") name[id] = rest; if ($0 ~ /^cfn=/) callee = id; next }
  /^calls=/ { split(substr($0, 7), c, " "); if (name[callee] ~ pat) s += c[1]; next }
  END { print s + 0 }'
if [[ " $PARTS " == *" instr "* ]]; then
  if [ -z "$(command -v valgrind)" ]; then note "profile/instr: no valgrind, skipped"
  else
    part_begin
    I=$OUT/profile-instr.tsv; printf 'workload\targs\tvariant\tinstructions\tsamples\tslow_frees\n' > "$I"
    for w in $WORKLOADS; do
      prog=$(printf '%s\n' "$INSTR_TABLE" | awk -F'|' -v n="$w" '$1==n{print $2}')
      args=$(printf '%s\n' "$INSTR_TABLE" | awk -F'|' -v n="$w" '$1==n{print $3}')
      [ -n "$prog" ] || continue
      for v in off default; do
        case $v in off) rate=0 ;; default) rate=524288 ;; esac
        MEMSCOPE=profile_rate=$rate LD_PRELOAD=$MS timeout 600 valgrind --tool=callgrind \
          --callgrind-out-file="$TMPD/cg.out" "$BIN/$prog" $args > "$TMPD/cg.log" 2>&1
        ir=$(sed -n 's/.*Collected : *//p' "$TMPD/cg.log" | tail -1)
        # calls to the profiler's hooks, summed from the call records of the
        # callgrind file: record, the sampled hook (samples), and on_freed (frees sent to the profiler)
        ns=$(awk -v pat='^record$' "$CGCALLS" "$TMPD/cg.out")
        nf=$(awk -v pat='^on_freed$' "$CGCALLS" "$TMPD/cg.out")
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$prog $args" "$v" "${ir//,/}" "$ns" "$nf" >> "$I"
        note "profile/instr: $w $v Ir=$ir samples=$ns on_freed=$nf"
      done
    done
    part_end instr
  fi
fi

# ---------------------------------------------------- part 2: peers ----
PEERS=${PROF_PEERS:-glibc ms-off ms-rate1 heaptrack massif gperftools}
TCFULL=${TCMALLOC_FULL_SO:-$(ls /usr/lib/x86_64-linux-gnu/libtcmalloc.so.4 /lib/x86_64-linux-gnu/libtcmalloc.so.4 2>/dev/null | head -1)}
HEAPTRACK=$(command -v heaptrack || true); VALGRIND=$(command -v valgrind || true)
PEERNOTES=""
peer_ok() {
    case $1 in
      heaptrack) [ -n "$HEAPTRACK" ] || { PEERNOTES="$PEERNOTES- heaptrack skipped: not installed (apt-get install heaptrack)"$'\n'; return 1; } ;;
      massif) [ -n "$VALGRIND" ] || { PEERNOTES="$PEERNOTES- massif skipped: valgrind not installed"$'\n'; return 1; } ;;
      gperftools) [ -n "$TCFULL" ] || { PEERNOTES="$PEERNOTES- gperftools skipped: no libtcmalloc.so.4 (apt-get install libgoogle-perftools4)"$'\n'; return 1; } ;;
    esac
    return 0
}
run_peer() { # peer, program, args... -> runone output
    local c=$1; shift
    case $c in
      glibc)      "$BIN/runone" -t "$TIMEOUT" -- "$@" 2>&1 ;;
      ms-off)     MEMSCOPE=profile_rate=0 "$BIN/runone" -t "$TIMEOUT" -p "$MS" -- "$@" 2>&1 ;;
      ms-rate1)   MEMSCOPE=profile_rate=1,heapprofile=$TMPD/ms.pb.gz "$BIN/runone" -t "$TIMEOUT" -p "$MS" -- "$@" 2>&1 ;;
      heaptrack)  "$BIN/runone" -t "$TIMEOUT" -- "$HEAPTRACK" -o "$TMPD/ht" "$@" 2>&1 ;;
      massif)     "$BIN/runone" -t "$TIMEOUT" -- "$VALGRIND" --tool=massif --massif-out-file="$TMPD/massif.out" "$@" 2>&1 ;;
      gperftools) HEAPPROFILE=$TMPD/hp "$BIN/runone" -t "$TIMEOUT" -p "$TCFULL" -- "$@" 2>&1 ;;
    esac
}
if [[ " $PARTS " == *" peers "* ]]; then
  part_begin
  P=$OUT/profile-peers.tsv; printf 'workload\tpeer\trep\twall_s\tcpu_s\tmaxrss_kib\tstatus\toutput_kib\n' > "$P"
  ACTIVE=""; for c in $PEERS; do peer_ok "$c" && ACTIVE="$ACTIVE $c"; done
  set -- $ACTIVE; NP=$#
  for rep in $(seq 1 "$PRUNS"); do
    for w in ${PROF_PEER_WORKLOADS:-small-nodes st-churn}; do
      prog=$(peer_field "$w" 2); args=$(peer_field "$w" 3)
      [ -n "$prog" ] || { note "unknown peer workload $w"; exit 2; }
      set -- $ACTIVE; order=""
      for ((j = 0; j < NP; j++)); do idx=$(( (rep - 1 + j) % NP + 1 )); order="$order ${!idx}"; done
      for c in $order; do
        rm -rf "${TMPD:?}"/*
        out=$(run_peer "$c" "$BIN/$prog" $args)
        run=$(printf '%s\n' "$out" | grep '^RUN ' | tail -1)
        want=""; case $c in ms-*) want=$MS ;; esac
        st=$(status_of "$out" "$want")
        kib=$(find "$TMPD" -type f -printf '%s\n' | awk '{s += $1} END {printf "%d", s / 1024}')
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$c" "$rep" "$(get wall_s "$run")" "$(cpu_of "$run")" \
          "$(get maxrss_kib "$run")" "$st" "$kib" >> "$P"
        note "$(printf 'profile/peers: [%d/%d] %-11s %-10s wall=%s cpu=%s out=%sKiB %s' "$rep" "$PRUNS" "$w" "$c" "$(get wall_s "$run")" "$(cpu_of "$run")" "$kib" "$st")"
      done
    done
  done
  part_end peers
fi

# ---------------------------------------------------- part 3: stack ----
if [[ " $PARTS " == *" stack "* ]]; then
  part_begin
  S=$OUT/profile-stack.tsv; printf 'depth\tkind\trep\tns\tframes\trec_frames\tstatus\n' > "$S"
  for rep in $(seq 1 "$RUNS"); do
    for d in ${PROF_DEPTHS:-10 50}; do
      for kind in capture alloc-rate0 alloc-rate1; do
        case $kind in
          capture)     out=$("$BIN/stackcost" capture "$d" "${PROF_CAPTURES:-200000}" 2>&1); rc=$? ;;
          alloc-rate0) out=$(MEMSCOPE=profile_rate=0 "$BIN/stackcost" alloc "$d" "${PROF_ALLOCS:-200000}" 2>&1); rc=$? ;;
          alloc-rate1) out=$(MEMSCOPE=profile_rate=1 "$BIN/stackcost" alloc "$d" "${PROF_ALLOCS:-200000}" 2>&1); rc=$? ;;
        esac
        res=$(printf '%s\n' "$out" | grep '^RESULT ' | tail -1)
        st=ok; [ "$rc" = 0 ] && [ -n "$res" ] || st="exit-$rc"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$d" "$kind" "$rep" "$(get ns_per_op "$res")" "$(get frames "$res")" \
          "$(get rec_frames "$res")" "$st" >> "$S"
        note "profile/stack: [$rep/$RUNS] depth=$d $kind ns=$(get ns_per_op "$res") frames=$(get frames "$res") rec=$(get rec_frames "$res") $st"
      done
    done
  done
  part_end stack
fi
ELAPSED=$(( $(date +%s) - START )); LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# --------------------------------------------------------------- report ----
SEC=$OUT/profile.md
{
  echo "<!-- BEGIN bench/run_profile.sh -->"
  echo "## Cost of heap profiling (issue 6, \"Speed\")"
  echo
  echo "Generated by \`bench/run_profile.sh\` (method: [README.md](README.md#heap-profiler-cost)); do not edit by hand, rerun the script."
  echo "Raw data: \`bench/out/profile-{rate,peers,stack}.tsv\` (not committed)."
  echo
  echo "- last run: $(date -u '+%Y-%m-%d %H:%M UTC'), parts: $PARTS (${ELAPSED}s); each table below says when it was measured"
  echo "- machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) CPUs, $(awk '/MemTotal/{printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo); kernel $(uname -srm)"
  echo "- load average (1/5/15 min) at start of the last run: $LOAD_START; at end: $LOAD_END (near or above $(nproc): other work competed for the CPUs, so trust CPU time over wall time, and instruction counts over both)"
  rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "no commit")
  dirty=$(git -C "$ROOT" status --porcelain -- src include 2>/dev/null | head -1)
  echo "- memscope: \`$MS_ORIG\` (git $rev${dirty:+, src/include modified}, sha256 $MS_SHA…), run from the copy \`bench/out/libmemscope-prof.so\`; stackcost linked against \`$BUILD/libmemscope.a\`"
  if [ -s "$OUT/profile-rate.tsv" ] && [ -f "$OUT/profile-rate.meta" ]; then
    echo
    echo "### Default rate (524288) vs profiling off, the workloads of \`run.sh\` (interleaved runs, medians)"
    echo
    meta rate
    echo "| workload | off: wall (s) [min–max] | default: wall (s) [min–max] | wall default/off | off: CPU (s) | default: CPU (s) | CPU default/off | ≤ 2 %? |"
    echo "|---|---:|---:|---:|---:|---:|---:|---|"
    awk -F'\t' "$MED"'
      NR > 1 && $7 == "ok" { k = $1 SUBSEP $2; if (!($1 in s)) o[++n] = $1; s[$1] = 1; W[k] = W[k] " " $4; C[k] = C[k] " " $5 }
      NR > 1 && $7 != "ok" { bad[$1] = bad[$1] " " $2 "#" $3 ":" $7 }
      END { for (i = 1; i <= n; i++) { w = o[i]; a = w SUBSEP "off"; b = w SUBSEP "default"
          if (!(a in W) || !(b in W)) { printf "| %s | failed:%s |\n", w, bad[w]; continue }
          rw = med(W[b]) / med(W[a]); rc = med(C[b]) / med(C[a]); lw += log(rw); lc += log(rc); m++
          verdict = (rw <= 1.02 || rc <= 1.02) ? "yes" : "**no**"
          printf "| %s | %.3f [%.3f–%.3f] | %.3f [%.3f–%.3f] | %.3f | %.3f | %.3f | %.3f | %s%s |\n", w, med(W[a]), mn(W[a]), mx(W[a]),
            med(W[b]), mn(W[b]), mx(W[b]), rw, med(C[a]), med(C[b]), rc, verdict, bad[w] ? " (failed runs:" bad[w] ")" : "" }
        if (m) printf "| **geomean** | | | **%.3f** | | | **%.3f** | |\n", exp(lw / m), exp(lc / m) }' "$OUT/profile-rate.tsv"
    echo
    echo "\"≤ 2 %?\" is yes when the wall or the CPU ratio is at most 1.02 (either can be moved by other load); see the min–max ranges for the noise."
  fi
  if [ -s "$OUT/profile-instr.tsv" ] && [ -f "$OUT/profile-instr.meta" ]; then
    echo
    echo "### Default rate vs off in instructions (\`valgrind --tool=callgrind\`, reduced sizes, one run each)"
    echo
    meta instr
    echo "samples = calls of the profiler's sampling hook; frees to profiler = frees that took the slow path to ask the block map (the block's span holds a sampled block), of which at most 'samples' are sampled blocks."
    echo
    echo "| workload | run | instructions off | instructions default | default/off | samples | frees to profiler | extra instructions per sample |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|"
    awk -F'\t' 'NR > 1 { if (!($1 in a)) o[++n] = $1; a[$1] = $2; I[$1, $3] = $4; S[$1, $3] = $5; F[$1, $3] = $6 }
      END { for (i = 1; i <= n; i++) { w = o[i]; x = I[w, "off"]; y = I[w, "default"]; if (!x || !y) continue
          r = y / x; l += log(r); m++
          printf "| %s | `%s` | %d | %d | %s | %d | %d | %s |\n", w, a[w], x, y, (r > 1.02 ? sprintf("**%.4f**", r) : sprintf("%.4f", r)),
            S[w, "default"], F[w, "default"], S[w, "default"] ? sprintf("%.0f", (y - x) / S[w, "default"]) : "–" }
        if (m) printf "| **geomean** | | | | **%.4f** | | | |\n", exp(l / m) }' "$OUT/profile-instr.tsv"
  fi
  if [ -s "$OUT/profile-peers.tsv" ] && [ -f "$OUT/profile-peers.meta" ]; then
    echo
    echo "### Recording every allocation: memscope profile_rate=1 vs heaptrack, massif, gperftools (interleaved runs, medians)"
    echo
    meta peers
    echo "- glibc: no preload; ms-off: memscope, \`MEMSCOPE=profile_rate=0\`; ms-rate1: memscope, \`MEMSCOPE=profile_rate=1,heapprofile=FILE\` (writes a pprof file at exit)"
    echo "- heaptrack: \`heaptrack -o FILE prog\` ($(dpkg-query -W -f='${Version}' heaptrack 2>/dev/null || echo '?'); glibc malloc underneath; its time includes heaptrack_interpret and compression, which run beside the program)"
    echo "- massif: \`valgrind --tool=massif\` ($(dpkg-query -W -f='${Version}' valgrind 2>/dev/null || echo '?'))"
    echo "- gperftools: \`HEAPPROFILE=FILE LD_PRELOAD=$TCFULL\` ($(dpkg-query -W -f='${Version}' libgoogle-perftools4 2>/dev/null || echo '?'))"
    [ -n "$PEERNOTES" ] && printf '%s' "$PEERNOTES"
    echo "- sizes: $(printf '%s\n' "$PEER_TABLE" | awk -F'|' 'NF==3{printf "%s`%s %s` ", sep, $2, $3; sep="; "}')"
    echo
    echo "| workload | tool | wall (s) [min–max] | CPU (s) | peak RSS (MiB) | output (KiB) | wall / ms-rate1 | CPU / ms-rate1 | wall / ms-off |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    awk -F'\t' "$MED"'
      NR > 1 && $7 == "ok" { k = $1 SUBSEP $2; if (!($1 in sw)) wo[++nw] = $1; sw[$1] = 1; if (!($2 in sp)) po[++np] = $2; sp[$2] = 1
        W[k] = W[k] " " $4; C[k] = C[k] " " $5; R[k] = R[k] " " $6; K[k] = K[k] " " $8 }
      NR > 1 && $7 != "ok" { if (!($1 in sw)) wo[++nw] = $1; sw[$1] = 1; bad[$1 SUBSEP $2] = bad[$1 SUBSEP $2] " #" $3 ":" $7 }
      END { for (i = 1; i <= nw; i++) { w = wo[i]; r1 = w SUBSEP "ms-rate1"; r0 = w SUBSEP "ms-off"
          for (j = 1; j <= np; j++) { k = w SUBSEP po[j]; if (!(k in W)) continue
            printf "| %s | %s | %.3f [%.3f–%.3f] | %.3f | %.1f | %d | %s | %s | %s |%s\n", w, po[j], med(W[k]), mn(W[k]), mx(W[k]), med(C[k]), med(R[k]) / 1024, med(K[k]),
              (r1 in W) ? sprintf("%.2f", med(W[k]) / med(W[r1])) : "–", (r1 in W) ? sprintf("%.2f", med(C[k]) / med(C[r1])) : "–",
              (r0 in W) ? sprintf("%.2f", med(W[k]) / med(W[r0])) : "–", bad[k] ? " failed:" bad[k] : "" } } }' "$OUT/profile-peers.tsv"
    awk -F'\t' 'NR > 1 && $7 != "ok" { printf "\nFailed runs: %s %s rep %s: %s", $1, $2, $3, $7; f = 1 } END { if (f) print "" }' "$OUT/profile-peers.tsv"
  fi
  if [ -s "$OUT/profile-stack.tsv" ] && [ -f "$OUT/profile-stack.meta" ]; then
    echo
    echo "### Cost of one sample (\`bench/stackcost.c\`, -O2 -fomit-frame-pointer, static libmemscope.a; medians)"
    echo
    meta stack
    echo "- capture: ns per \`ms_stack_capture(pcs, 64, 0)\` called from the bottom of a recursion D deep (${PROF_CAPTURES:-200000} calls per run); frames = pcs returned, of which \`rec\` = frames that dladdr() names as the recursive function (must be D)"
    echo "- per sample: ns per \`malloc(32)\`+\`free\` at that depth with \`profile_rate=1\` minus the same with \`profile_rate=0\` (${PROF_ALLOCS:-200000} pairs per run): capture, stack table, block map, and the free's lookup"
    echo
    echo "| depth D | capture (ns) [min–max] | frames (rec) | malloc+free rate 0 (ns) | malloc+free rate 1 (ns) [min–max] | per sample (ns) | capture share |"
    echo "|---:|---:|---|---:|---:|---:|---:|"
    awk -F'\t' "$MED"'
      NR > 1 && $7 == "ok" { k = $1 SUBSEP $2; if (!($1 in sd)) o[++n] = $1; sd[$1] = 1; V[k] = V[k] " " $4; if ($2 == "capture") { F[$1] = $5; RF[$1] = $6 } }
      NR > 1 && $7 != "ok" { bad[$1] = bad[$1] " " $2 "#" $3 ":" $7 }
      END { for (i = 1; i <= n; i++) { d = o[i]; c = d SUBSEP "capture"; a0 = d SUBSEP "alloc-rate0"; a1 = d SUBSEP "alloc-rate1"
          ps = med(V[a1]) - med(V[a0])
          printf "| %s | %.0f [%.0f–%.0f] | %s (%s)%s | %.1f | %.0f [%.0f–%.0f] | %.0f | %.0f %% |%s\n", d, med(V[c]), mn(V[c]), mx(V[c]), F[d], RF[d], (RF[d] != d ? " **wrong**" : ""),
            med(V[a0]), med(V[a1]), mn(V[a1]), mx(V[a1]), ps, (ps > 0 ? 100 * med(V[c]) / ps : 0), bad[d] ? " failed:" bad[d] : "" } }' "$OUT/profile-stack.tsv"
  fi
  echo "<!-- END bench/run_profile.sh -->"
} > "$SEC"

# Put the section into the report: replace the old block, or append it.
bash "$(dirname "$0")/put_block.sh" run_profile.sh "$SEC" "$RESULTS"
cat "$SEC"
note "profile: wrote $SEC and its block in $RESULTS (${ELAPSED}s)"
