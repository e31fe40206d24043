#!/usr/bin/env bash
# test_http_fuzz.sh: libFuzzer (clang -fsanitize=fuzzer,address,undefined)
# on the HTTP request parser, from a small seed corpus of real requests, for
# a bounded time (MEMSCOPE_FUZZ_SECONDS, default 20; 8 when quick).  Fails on
# any crash, sanitizer report or broken parser contract (tests/fuzz_http.c).
set -u
cd "$(dirname "$0")/.." || exit 1
secs=${MEMSCOPE_FUZZ_SECONDS:-20}
[ "${MEMSCOPE_TEST_QUICK:-0}" = 1 ] && secs=${MEMSCOPE_FUZZ_SECONDS:-8}
command -v clang >/dev/null || { echo "FAIL: clang not installed (scripts/install-deps.sh)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Isrc/http \
        tests/fuzz_http.c src/http/parse.c -o "$tmp/fuzz" 2>"$tmp/cc.err"; then
    echo "FAIL: cannot build the fuzzer:"; cat "$tmp/cc.err"; exit 1
fi
mkdir "$tmp/corpus"
printf 'GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n' >"$tmp/corpus/1"
printf 'GET /debug/pprof/heap?seconds=5&debug=1 HTTP/1.0\r\nUser-Agent: a\r\nAccept: */*\r\n\r\n' >"$tmp/corpus/2"
printf 'HEAD / HTTP/1.1\n\n' >"$tmp/corpus/3"
printf 'POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc' >"$tmp/corpus/4"
printf 'GET /debug/memscope/top?by=peak&n=10 HTTP/1.1\r\n\r\n' >"$tmp/corpus/5"
"$tmp/fuzz" -max_total_time="$secs" -max_len=9000 -print_final_stats=1 "$tmp/corpus" >"$tmp/log" 2>&1
rc=$?
grep -E '^stat::number_of_executed_units|^#[0-9]+.*DONE' "$tmp/log" | tail -2
if [ "$rc" -ne 0 ]; then echo "FAIL: the fuzzer found a problem:"; tail -40 "$tmp/log"; exit 1; fi
execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$tmp/log")
[ "${execs:-0}" -gt 10000 ] || { echo "FAIL: only ${execs:-0} runs"; exit 1; }
echo "ok: $execs inputs in $secs s, no finding"
