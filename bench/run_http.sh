#!/usr/bin/env bash
# bench/run_http.sh: what the live endpoint costs the program it runs in.
#
#  1. Big profile: bench/http_host.c builds 100,000 distinct stacks, one live
#     sampled block each (profile_rate=1); we time GET /debug/pprof/heap
#     (gzipped protobuf), ?debug=1 and /debug/memscope/profile, HTTP_RUNS
#     times each, and report the median and the worst.  Target: well under 1 s.
#  2. Pauses: in the same program a probe thread allocates and frees in a
#     loop and records its longest gap between two iterations, once with no
#     client (baseline) and once while the heap profile is fetched back to
#     back.  Target: no allocating thread paused more than 1 ms.  On a
#     2-CPU machine the OS scheduler alone can make gaps of that order:
#     compare with the baseline.
#  3. Polling cost: an idle program with the endpoint on, scraped on
#     /metrics once a second for HTTP_POLL_S seconds; CPU time of the
#     process (utime+stime, /proc/PID/stat) over wall time, against the
#     same program with the endpoint on and no scraper (the server still
#     samples the heap once a second).  Target: the scrapes under 0.5 % of
#     one CPU.
# Output: bench/out/http.md (and on stdout).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd); cd "$ROOT" || exit 2
BUILD=${BUILD:-build}; BIN=$BUILD/bench; OUT=bench/out; CC=${CC:-cc}
RUNS=${HTTP_RUNS:-7}; POLL_S=${HTTP_POLL_S:-30}; NSTACKS=${HTTP_STACKS:-100000}
mkdir -p "$BIN" "$OUT"
$CC -std=c11 -O2 -g -fno-omit-frame-pointer -pthread -Wall -Wextra -o "$BIN/http_host" bench/http_host.c || exit 2
LIB=$(realpath "$BUILD/libmemscope.so") || exit 2
tmp=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT

# start MODE ARGS...: the host under memscope with the endpoint; sets PID URL.
start() {
    env MEMSCOPE="http=127.0.0.1:0,profile_rate=${RATE:-524288}" LD_PRELOAD="$LIB" "$BIN/http_host" "$@" \
        >"$tmp/out" 2>"$tmp/err" &
    PID=$!
    for _ in $(seq 600); do grep -q built "$tmp/out" 2>/dev/null && break; sleep 0.05; done
    URL=$(grep -o 'http://127\.0\.0\.1:[0-9]*/' "$tmp/err" | head -1)
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
worst() { sort -g | tail -1; }

{
echo "# The live endpoint: cost to the program"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
echo "- memscope: git $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src include || echo ' (tree modified)'); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

# 1 and 2: the big profile, and pauses meanwhile.
RATE=1 start stacks "$NSTACKS" 1000
sleep 1
n=$(curl -s "${URL}debug/memscope/top?n=1" >/dev/null; curl -s "${URL}debug/pprof/heap?debug=1" | grep -c '^[0-9]*: [0-9]* \[')
echo "## 1. Serving a profile of $NSTACKS live sampled stacks"
echo
echo "Stacks in the debug=1 profile: $n (rate 1)."
echo
echo "| route | median s | worst s | size |"
echo "|---|---|---|---|"
for r in "debug/pprof/heap" "debug/pprof/heap?debug=1" "debug/memscope/profile"; do
    : >"$tmp/t"
    for _ in $(seq "$RUNS"); do curl -s -o "$tmp/body" -w '%{time_total}\n' "$URL$r" >>"$tmp/t"; done
    echo "| \`/$r\` | $(median <"$tmp/t") | $(worst <"$tmp/t") | $(stat -c %s "$tmp/body") B |"
done
kill "$PID"; wait "$PID" 2>/dev/null
echo
echo "## 2. Longest pause of an allocating thread"
echo
echo "| while | longest gap between two malloc+free iterations | iterations |"
echo "|---|---|---|"
RATE=1 start stacks "$NSTACKS" 6
wait "$PID"; g=$(grep max_gap "$tmp/out")
echo "| no client (baseline, 6 s) | $(echo "$g" | awk '{printf "%.3f ms", $2/1e6}') | $(echo "$g" | awk '{print $4}') |"
RATE=1 start stacks "$NSTACKS" 6
end=$((SECONDS + 5)); k=0
while [ $SECONDS -lt $end ]; do curl -s -o /dev/null "${URL}debug/pprof/heap"; k=$((k + 1)); done
wait "$PID"; g=$(grep max_gap "$tmp/out")
echo "| the heap profile fetched back to back ($k times in 5 s) | $(echo "$g" | awk '{printf "%.3f ms", $2/1e6}') | $(echo "$g" | awk '{print $4}') |"
echo

# 3. polling cost
echo "## 3. Cost of scraping /metrics once a second"
echo
hz=$(getconf CLK_TCK)
start idle $((POLL_S + 5)); sleep 1
c0=$(cpu_ticks "$PID"); t0=$(date +%s.%N)
sleep "$POLL_S"
c1=$(cpu_ticks "$PID"); t1=$(date +%s.%N)
kill "$PID"; wait "$PID" 2>/dev/null
base=$(echo "$c0 $c1 $t0 $t1 $hz" | awk '{printf "%.3f", ($2-$1)/$5/($4-$3)*100}')
start idle $((POLL_S + 5)); sleep 1
c0=$(cpu_ticks "$PID"); t0=$(date +%s.%N)
for _ in $(seq "$POLL_S"); do curl -s -o /dev/null "${URL}metrics"; sleep 1; done
c1=$(cpu_ticks "$PID"); t1=$(date +%s.%N)
kill "$PID"; wait "$PID" 2>/dev/null
polled=$(echo "$c0 $c1 $t0 $t1 $hz" | awk '{printf "%.3f", ($2-$1)/$5/($4-$3)*100}')
echo "| program | CPU, % of one CPU, over $POLL_S s |"
echo "|---|---|"
echo "| endpoint on, no client (the once-a-second heap sample) | $base % |"
echo "| endpoint on, /metrics scraped every second | $polled % |"
echo
echo "CPU time is read from /proc/PID/stat in clock ticks (1/$hz s), so each figure is good to about $(awk -v h="$hz" -v s="$POLL_S" 'BEGIN{printf "%.2f", 100/h/s}') %."
} | tee "$OUT/http.md"
