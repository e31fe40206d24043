#!/usr/bin/env bash
# test_redis.sh: redis-server on memscope, loaded by redis-benchmark, with
# its data read back and compared.
#
# Why: redis is a long-running, allocation-dense server (every key, value,
# list node and client buffer is a malloc; it asks malloc_usable_size for
# every block to account its memory).  Debian links it against jemalloc's
# shared library, but it calls the plain malloc/free/realloc/
# malloc_usable_size names, which LD_PRELOAD resolves to memscope first.
# The test proves that through memscope's own /metrics endpoint in the
# instrumented run.
#
# For each mode (glibc; memscope; memscope with the profiler at rate 1,
# trace, stats and the HTTP server on) the test:
#   1. starts redis-server on a free loopback port (no persistence, its own
#      directory), waits for PING;
#   2. runs redis-benchmark with a bounded request count over SET, GET, INCR,
#      LPUSH, RPUSH, LPOP, RPOP, SADD, HSET, SPOP, ZADD and LRANGE_100 with
#      random keys, pipelined; it must exit 0;
#   3. FLUSHALL, then writes a generated data set through redis-cli (strings
#      of 1 to 3000 bytes, lists, hashes, some keys overwritten and deleted)
#      and reads every key back; the read-back must equal the expected text
#      generated alongside, and be identical across the three modes;
#   4. SHUTDOWN NOSAVE; the server must exit 0 with no memscope error.
# MEMSCOPE_STRESS=1 (make stress) uses 10x the requests and keys.
set -u
. "$(dirname "$0")/prelude.sh"
[ -f "$LIB" ] || { echo "FAIL: $LIB missing (make lib)"; exit 1; }
for c in redis-server redis-cli redis-benchmark curl python3; do
    command -v $c >/dev/null || { echo "FAIL: $c missing (scripts/install-deps.sh installs redis-server, redis-tools, curl)"; exit 1; }
done
TMP=$(mktemp -d "${TMPDIR:-/tmp}/memscope-redis.XXXXXX")
SRV=
cleanup() { [ -n "$SRV" ] && kill "$SRV" 2>/dev/null; wait 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
if [ "${MEMSCOPE_STRESS:-0}" = 1 ]; then REQ=500000 KEYS=100000; else REQ=10000 KEYS=3000; fi
pass=0; fail=0
ok()  { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }

# The data set: commands for redis-cli and the exact read-back expected.
awk -v n="$KEYS" 'BEGIN {
    srand(7);
    for (i = 0; i < n; i++) {
        len = 1 + (i * 7919) % 3000; v = sprintf("v%d-", i);
        while (length(v) < len) v = v sprintf("%x", (i * 31 + length(v)) % 4096);
        val[i] = substr(v, 1, len);
        printf "SET k:%d %s\n", i, val[i] > "'"$TMP/cmds"'";
        if (i % 10 == 0) { printf "RPUSH l:%d a%d b%d c%d\n", i, i, i * 2, i * 3 > "'"$TMP/cmds"'"; }
        if (i % 13 == 0) { printf "HSET h:%d f1 %d f2 %s\n", i, i, substr(val[i], 1, 50) > "'"$TMP/cmds"'"; }
    }
    for (i = 0; i < n; i += 3) { val[i] = "over" i; printf "SET k:%d %s\n", i, val[i] > "'"$TMP/cmds"'"; }
    for (i = 1; i < n; i += 17) { val[i] = ""; printf "DEL k:%d\n", i > "'"$TMP/cmds"'"; }
    for (i = 0; i < n; i++) {
        printf "GET k:%d\n", i > "'"$TMP/reads"'"; print val[i] > "'"$TMP/expect"'";
        if (i % 10 == 0) { printf "LRANGE l:%d 0 -1\n", i > "'"$TMP/reads"'"; printf "a%d\nb%d\nc%d\n", i, i * 2, i * 3 > "'"$TMP/expect"'"; }
        if (i % 13 == 0) { printf "HGET h:%d f1\n", i > "'"$TMP/reads"'"; print i > "'"$TMP/expect"'"; }
    }
}'

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# run_mode NAME ENV...: one full cycle; read-back into $TMP/NAME.read
run_mode() {
    local name=$1; shift
    local port t0=$SECONDS
    port=$(free_port)
    env "$@" redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$TMP" \
        --logfile "$TMP/$name.log" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    SRV=$!
    local up=
    for _ in $(seq 200); do
        [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && { up=1; break; }
        sleep 0.05
    done
    [ -n "$up" ] || { bad "$name: redis-server did not answer PING"; cat "$TMP/$name.err" "$TMP/$name.log" | tail -5; return; }
    if ! timeout 600 redis-benchmark -p "$port" -n "$REQ" -c 20 -P 16 -r 50000 -d 64 -q \
        -t set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,lrange_100 >"$TMP/$name.bench" 2>&1; then
        bad "$name: redis-benchmark failed"; tail -5 "$TMP/$name.bench"
    fi
    redis-cli -p "$port" flushall >/dev/null
    timeout 600 redis-cli -p "$port" <"$TMP/cmds" >"$TMP/$name.w" 2>&1
    timeout 600 redis-cli -p "$port" <"$TMP/reads" >"$TMP/$name.read" 2>&1
    local dbsize mallocs=
    dbsize=$(redis-cli -p "$port" dbsize)
    if grep -q '^memscope: serving' "$TMP/$name.err"; then
        local url
        url=$(sed -n 's|.*\(http://127\.0\.0\.1:[0-9]*/\).*|\1|p' "$TMP/$name.err" | head -1)
        mallocs=$(curl -s "${url}metrics" | awk '$1 == "memscope_mallocs_total" {print $2}')
    fi
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1
    wait "$SRV"; local rc=$?; SRV=
    local why=
    [ "$rc" -eq 0 ] || why="$why server exit $rc;"
    grep -q 'memscope: .*\(double free\|invalid\|cannot\|assert\)' "$TMP/$name.err" && why="$why memscope error on stderr;"
    cmp -s "$TMP/$name.read" "$TMP/expect" || why="$why read-back differs from the data written;"
    grep -q 'ERR\|Error' "$TMP/$name.w" && why="$why a write failed;"
    if [ "$#" -gt 0 ] && [[ "$*" == *http=* ]] && ! [ "${mallocs:-0}" -gt "$REQ" ] 2>/dev/null; then
        why="$why memscope's /metrics shows ${mallocs:-no} mallocs (is memscope really the allocator?);"
    fi
    if [ -n "$why" ]; then
        bad "$name:$why"; diff "$TMP/expect" "$TMP/$name.read" | head -5 | sed 's/^/       | /'
        grep -v '^memscope: \(gc\|scvg\|serving\)' "$TMP/$name.err" | tail -5 | sed 's/^/       | /'
    else
        ok "$name: $REQ benchmark requests x 12 commands, $dbsize keys written and read back intact ($(wc -l <"$TMP/expect") lines)${mallocs:+, memscope counted $mallocs mallocs} [$((SECONDS - t0)) s]"
    fi
}

run_mode glibc
run_mode memscope LD_PRELOAD="$LIB"
run_mode memscope-profile-http LD_PRELOAD="$LIB" MEMSCOPE=profile_rate=1,trace=1,stats=1,scavenge_delay_ms=0,http=127.0.0.1:0
for m in memscope memscope-profile-http; do
    if [ -f "$TMP/$m.read" ] && ! cmp -s "$TMP/glibc.read" "$TMP/$m.read"; then bad "$m: read-back differs from glibc's"; fi
done
echo "test_redis: $pass ok, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -eq 3 ]
