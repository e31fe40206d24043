#!/usr/bin/env bash
# test_http.sh: every route and every status code of the live endpoint
# (src/http), fetched with curl from a running program; then go tool pprof
# on /debug/pprof/heap and allocs, the ways to start the server (MEMSCOPE,
# memscope_http_start, memscope run --http), its stderr lines (the URL, the
# beyond-loopback warning, a port in use), profile_rate=0, and a fork child.
# Prints one line per check; exit status = number of failures.
set -u
cd "$(dirname "$0")/.." || exit 1
. tests/http_lib.sh

code() { curl -s -o "$TMPD/body" -w '%{http_code}' --max-time 10 "$@"; }
body_has() { grep -q -- "$1" "$TMPD/body"; }
is_gzip() { [ "$(head -c2 "$TMPD/body" | od -An -tx1 | tr -d ' ')" = 1f8b ]; }
json_ok() { python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$TMPD/body"; }

start_host 30
check "one stderr line with the URL" [ "$(grep -c 'memscope: serving http://127.0.0.1:' "$HOST_ERR")" = 1 ]
sleep 1.2

check "/ 200 html page" [ "$(code "$URL")" = 200 ]
check "/ is the page" body_has '<canvas id="plot"'
check "/debug/pprof/ 200" [ "$(code "${URL}debug/pprof/")" = 200 ]
check "/debug/pprof/ lists heap" body_has 'heap?debug=1'
check "/debug/pprof 200" [ "$(code "${URL}debug/pprof")" = 200 ]
for p in heap allocs peak; do
    check "/debug/pprof/$p 200" [ "$(code "${URL}debug/pprof/$p")" = 200 ]
    check "/debug/pprof/$p is gzip" is_gzip
done
check "heap?debug=1 200" [ "$(code "${URL}debug/pprof/heap?debug=1")" = 200 ]
check "heap?debug=1 header" grep -q '^heap profile: [0-9]*: [0-9]* \[[0-9]*: [0-9]*\] @ heap/[0-9]*$' "$TMPD/body"
check "heap?debug=1 MemStats trailer" body_has '# runtime.MemStats'
check "heap?debug=1 names keep_big" body_has 'keep_big'
check "heap?gc=1 200" [ "$(code "${URL}debug/pprof/heap?gc=1")" = 200 ]
t0=$(date +%s.%N)
check "heap?seconds=1 200" [ "$(code "${URL}debug/pprof/heap?seconds=1")" = 200 ]
check "heap?seconds=1 waited 1 s" python3 -c "import sys,time; sys.exit(not (time.time() - $t0 >= 0.95))"
check "heap?seconds=1 is gzip" is_gzip
check "allocs?seconds=1 200" [ "$(code "${URL}debug/pprof/allocs?seconds=1")" = 200 ]
check "allocs delta names churn_small" sh -c "'${BUILD:-build}/memscope' report --alloc '$TMPD/body' | grep -q churn_small"
# a delta's in-use counts go below zero, which the text format cannot carry:
# refused as Go refuses it (they once printed as 18446744073709551614)
check "heap?seconds=1&debug=1 400, as in Go" [ "$(code "${URL}debug/pprof/heap?seconds=1&debug=1")" = 400 ]
check "heap?seconds=1&debug=1 says why" body_has 'seconds and debug params are incompatible'
check "/debug/vars 200" [ "$(code "${URL}debug/vars")" = 200 ]
check "/debug/vars JSON" json_ok
check "/debug/vars memstats has Go's fields, HeapAlloc >= 48 MiB" python3 - "$TMPD/body" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
ref = json.load(open("/work/shared/reference/go/memstats_after_gc.json")) if __import__("os").path.exists("/work/shared/reference/go/memstats_after_gc.json") else None
m = d["memstats"]
keys = ["Alloc","TotalAlloc","Sys","Lookups","Mallocs","Frees","HeapAlloc","HeapSys","HeapIdle","HeapInuse","HeapReleased","HeapObjects","StackInuse","StackSys","MSpanInuse","MSpanSys","MCacheInuse","MCacheSys","BuckHashSys","GCSys","OtherSys","NextGC","LastGC","PauseTotalNs","PauseNs","PauseEnd","NumGC","NumForcedGC","GCCPUFraction","EnableGC","DebugGC","BySize"]
if ref is not None: keys = list(ref.keys())
assert list(m.keys()) == keys, (list(m.keys()), keys)
assert m["HeapAlloc"] >= 48 << 20 and m["HeapAlloc"] == m["Alloc"], m["HeapAlloc"]
assert m["HeapSys"] == m["HeapIdle"] + m["HeapInuse"]
assert m["HeapObjects"] == m["Mallocs"] - m["Frees"]
assert m["Sys"] == m["HeapSys"] + m["OtherSys"]
assert isinstance(d["cmdline"], list) and d["cmdline"][0].endswith("prog_http")
PY
check "/metrics 200" [ "$(code "${URL}metrics")" = 200 ]
check "/metrics process_resident_memory_bytes" grep -q '^process_resident_memory_bytes [1-9][0-9]*$' "$TMPD/body"
check "/metrics heap alloc >= 48 MiB" awk '$1=="memscope_heap_alloc_bytes" && $2 >= 50331648 {f=1} END {exit !f}' "$TMPD/body"
check "/debug/memscope/series 200" [ "$(code "${URL}debug/memscope/series")" = 200 ]
check "series JSON with samples" python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["len"] >= 1 and len(d["rss"]) == d["len"] and d["heap_alloc"][-1] >= 48<<20' "$TMPD/body"
check "/debug/memscope/profile 200" [ "$(code "${URL}debug/memscope/profile")" = 200 ]
check "profile JSON: keep_big stack" python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["stacks"][0]["f"][0] == "keep_big", d["stacks"][0]' "$TMPD/body"
check "/debug/memscope/top 200" [ "$(code "${URL}debug/memscope/top?by=inuse&n=3")" = 200 ]
check "top by inuse: keep_big first, ~48 MiB" python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); s=d["sites"][0]; assert s["func"]=="keep_big" and 30<<20 < s["inuse_bytes"] < 70<<20, s' "$TMPD/body"
check "top by peak: peak_burst first" sh -c "curl -s '${URL}debug/memscope/top?by=peak&n=1' | grep -q '\"func\":\"peak_burst\"'"
check "top by alloc: peak_burst first" sh -c "curl -s '${URL}debug/memscope/top?by=alloc&n=1' | grep -q '\"func\":\"peak_burst\"'"

# Status codes.
check "unknown path 404" [ "$(code "${URL}nope")" = 404 ]
check "/debug/pprof/goroutine 404" [ "$(code "${URL}debug/pprof/goroutine")" = 404 ]
check "POST 405" [ "$(code -X POST -d x=1 "${URL}metrics")" = 405 ]
check "PUT 405" [ "$(code -X PUT "${URL}metrics")" = 405 ]
check "DELETE 405" [ "$(code -X DELETE "${URL}")" = 405 ]
check "HEAD 200 without a body" sh -c "[ \"\$(curl -s -I -o /dev/null -w '%{http_code} %{size_download}' '${URL}metrics')\" = '200 0' ]"
check "traversal /../ 400" [ "$(code --path-as-is "${URL}debug/pprof/../../etc/passwd")" = 400 ]
check "traversal %2e%2e 400" [ "$(code --path-as-is "${URL}%2e%2e/%2e%2e/etc/passwd")" = 400 ]
check "header too large 431" [ "$(code -H "X-Big: $(head -c 9000 /dev/zero | tr '\0' a)" "${URL}metrics")" = 431 ]
hdrs=(); for i in $(seq 40); do hdrs+=(-H "X-H$i: v"); done
check "too many headers 431" [ "$(code "${hdrs[@]}" "${URL}metrics")" = 431 ]
raw() { python3 - "$URL" "$1" <<'PY'
import socket, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
s = socket.create_connection((u.hostname, u.port), timeout=15)  # above the server's 5 s read timeout
s.sendall(sys.argv[2].encode().decode("unicode_escape").encode("latin-1"))
data = b""
while True:
    b = s.recv(65536)
    if not b: break
    data += b
print(data.split(b" ")[1].decode() if data.startswith(b"HTTP/1.1 ") else "none")
PY
}
check "HTTP/2.0 request line 400" [ "$(raw 'GET /metrics HTTP/2.0\r\n\r\n')" = 400 ]
check "garbage request line 400" [ "$(raw 'hello\r\n\r\n')" = 400 ]
check "OPTIONS * 405" [ "$(raw 'OPTIONS * HTTP/1.1\r\n\r\n')" = 405 ]
# query values no route takes: 400 with a line naming the parameter (they
# were read as the default and answered 200)
for q in "debug/pprof/heap?seconds=-1" "debug/pprof/heap?seconds=abc" "debug/pprof/heap?seconds=61" \
         "debug/pprof/heap?debug=9" "debug/pprof/leaks?debug=-1" "debug/memscope/top?by=zzz" \
         "debug/memscope/top?n=-5" "debug/pprof/heap?gc=xx"; do
    check "?${q#*\?} 400" [ "$(code "${URL}$q")" = 400 ]
done
check "400 names the parameter" grep -q 'bad value for ?gc=' "$TMPD/body"
check "good values still 200" [ "$(code "${URL}debug/pprof/heap?debug=1&gc=1")" = 200 ]
check "NUL byte 400" [ "$(raw 'GET /metrics\x00 HTTP/1.1\r\n\r\n')" = 400 ]
check "header without colon 400" [ "$(raw 'GET /metrics HTTP/1.1\r\nBad header\r\n\r\n')" = 400 ]
check "request body announced 400" [ "$(raw 'GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello')" = 400 ]
check "chunked body 400" [ "$(raw 'GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n')" = 400 ]
check "HTTP/1.0 request 200" [ "$(raw 'GET /metrics HTTP/1.0\r\n\r\n')" = 200 ]
check "incomplete head -> 408 after the read timeout" [ "$(raw 'GET /metrics HTTP/1.1\r\nHost: x\r\n')" = 408 ]

# go tool pprof reads both profiles and finds the known sites.
if command -v go >/dev/null; then
    export PPROF_TMPDIR=$TMPD HOME=$TMPD
    check "go tool pprof: heap names keep_big" sh -c "go tool pprof -top -sample_index=inuse_space '${URL}debug/pprof/heap' 2>/dev/null | grep -q keep_big"
    check "go tool pprof: allocs names churn_small" sh -c "go tool pprof -top -sample_index=alloc_space '${URL}debug/pprof/allocs' 2>/dev/null | grep -q churn_small"
else
    fail "go tool pprof: golang-go not installed (scripts/install-deps.sh installs it; a skip would count as a pass)"
fi
check "the host runs on, output unchanged" kill -0 "$HOST_PID"
stop_host
check "no other stderr lines" [ "$(grep -vc 'memscope: serving' "$HOST_ERR")" = 0 ]

# A port in use: one warning, the program goes on.
start_host 1
port=${URL##*:}; port=${port%/}
MEMSCOPE=http=127.0.0.1:$port LD_PRELOAD=$LIB "$PROG" 1 >"$TMPD/o2" 2>"$TMPD/e2"
rc=$?
check "port in use: program exits 0" [ "$rc" = 0 ]
check "port in use: one warning" [ "$(grep -c 'cannot listen on 127.0.0.1:'"$port"'.*goes on' "$TMPD/e2")" = 1 ]
check "port in use: output unchanged" ticks_ok "$TMPD/o2" 10
stop_host

# memscope_http_start from the program; memscope run --http; beyond loopback.
"$PROG" 1 127.0.0.1:0 >"$TMPD/o3" 2>"$TMPD/e3"
check "memscope_http_start: serving line" grep -q 'memscope: serving http://127.0.0.1:' "$TMPD/e3"
check "memscope_http_start: program done" ticks_ok "$TMPD/o3" 10
"$BUILD/memscope" run --http 127.0.0.1:0 -- "$PROG" 1 >"$TMPD/o4" 2>"$TMPD/e4"
check "memscope run --http: serving line" grep -q 'memscope: serving http://127.0.0.1:' "$TMPD/e4"
MEMSCOPE=http=0.0.0.0:0 LD_PRELOAD=$LIB "$PROG" 1 >/dev/null 2>"$TMPD/e5"
check "0.0.0.0: one beyond-loopback warning" [ "$(grep -c 'beyond loopback' "$TMPD/e5")" = 1 ]
MEMSCOPE=http=nonsense LD_PRELOAD=$LIB "$PROG" 1 >"$TMPD/o6" 2>"$TMPD/e6"
check "bad address: one warning, program goes on" sh -c "[ \$(grep -c 'not valid' '$TMPD/e6') = 1 ] && [ \$(wc -l <'$TMPD/o6') = 10 ]"

# fork: the child has no server until it starts one; both then answer.
"$PROG" 3 127.0.0.1:0 fork >"$TMPD/o7" 2>"$TMPD/e7" &
fpid=$!
for _ in $(seq 60); do [ "$(grep -c 'memscope: serving' "$TMPD/e7")" = 2 ] && break; sleep 0.05; done
urls=$(grep -o 'http://127\.0\.0\.1:[0-9]*/' "$TMPD/e7" | sort -u)
check "fork: the child starts its own server on another port" [ "$(echo "$urls" | wc -l)" = 2 ]
for u in $urls; do check "fork: $u answers" [ "$(code "${u}metrics")" = 200 ]; done
wait $fpid; rc=$?
check "fork: parent and child exit 0, parent's output complete" sh -c "[ $rc = 0 ] && [ \$(wc -l <'$TMPD/o7') = 30 ]"

# profile_rate=0: the profile routes say so, the rest works.
MS_EXTRA=profile_rate=0 start_host 5
check "profile_rate=0: heap 503" [ "$(code "${URL}debug/pprof/heap")" = 503 ]
check "profile_rate=0: one-line reason" body_has 'profiling is off'
check "profile_rate=0: top 503" [ "$(code "${URL}debug/memscope/top")" = 503 ]
check "profile_rate=0: metrics 200" [ "$(code "${URL}metrics")" = 200 ]
stop_host

echo "$failures failed"
exit "$failures"
