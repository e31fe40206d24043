#!/usr/bin/env bash
# test_http_prometheus.sh: /metrics with the real Prometheus (Debian
# prometheus).  `promtool check metrics` must pass with no complaint (names,
# units, _total counters, HELP/TYPE); then a real Prometheus server (temp
# config and TSDB, free port) scrapes the running program every second, and
# values read back through its query API must be the program's own:
# memscope_heap_alloc_bytes within 48..64 MiB (prog_http keeps 48 MiB live),
# process_resident_memory_bytes above that, counters non-decreasing.
set -u
cd "$(dirname "$0")/.." || exit 1
. tests/http_lib.sh
for t in promtool prometheus curl; do
    command -v $t >/dev/null || { echo "FAIL: $t not installed (scripts/install-deps.sh)"; exit 1; }
done

start_host 25
curl -s "${URL}metrics" >"$TMPD/metrics"
out=$(promtool check metrics <"$TMPD/metrics" 2>&1); rc=$?
echo "$out" | sed 's/^/promtool: /'
check "promtool check metrics passes" [ "$rc" = 0 ]
check "promtool has no complaint" [ -z "$out" ]

target=${URL#http://}; target=${target%/}
pport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$TMPD/prom.yml" <<YML
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: memscope
    static_configs: [{targets: ["$target"]}]
YML
prometheus --config.file="$TMPD/prom.yml" --storage.tsdb.path="$TMPD/tsdb" --web.listen-address=127.0.0.1:$pport \
    --log.level=error >"$TMPD/prom.log" 2>&1 &
PROM_PID=$!
trap 'kill $PROM_PID 2>/dev/null; cleanup' EXIT
q() { curl -s --max-time 5 "http://127.0.0.1:$pport/api/v1/query" --data-urlencode "query=$1" |
      python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' 2>/dev/null; }
val=
for _ in $(seq 60); do
    val=$(q 'memscope_heap_alloc_bytes{job="memscope"}')
    [ -n "$val" ] && break
    sleep 0.5
done
check "Prometheus scraped the program (up == 1)" [ "$(q 'up{job="memscope"}')" = 1 ]
echo "memscope_heap_alloc_bytes via Prometheus: $val"
check "heap alloc as the program has it (48..64 MiB)" python3 -c "v=float('${val:-0}'); import sys; sys.exit(not (48*2**20 <= v <= 64*2**20))"
rss=$(q 'process_resident_memory_bytes{job="memscope"}')
check "process_resident_memory_bytes >= heap alloc" python3 -c "import sys; sys.exit(not (float('${rss:-0}') >= float('${val:-1}')))"
sleep 3
m=$(q 'increase(memscope_mallocs_total{job="memscope"}[10s])')
echo "increase(memscope_mallocs_total[10s]) = $m"
check "mallocs counter grows (prog_http churns)" python3 -c "import sys; sys.exit(not (float('${m:-0}') > 1000))"
check "no counter reset seen" [ "$(q 'max(resets(memscope_mallocs_total[1m]) + resets(memscope_frees_total[1m]) + resets(memscope_alloc_bytes_total[1m]))')" = 0 ]
kill $PROM_PID 2>/dev/null; wait $PROM_PID 2>/dev/null
stop_host
echo "$failures failed"
exit "$failures"
