#!/usr/bin/env bash
# test_http_top.sh: `memscope top URL` driven in tmux (80x24), read back
# with capture-pane:
#   - the screen shows the program's figures: the five series with values
#     (live objects about 48 MiB), sparklines, and keep_big as the top
#     in-use site; after 'p', peak_burst heads the list;
#   - 'q' quits with status 0 and the terminal is restored (alternate
#     screen left: the shell's screen is back);
#   - when the program goes away, top exits with one line saying so and
#     the terminal is restored;
#   - Ctrl-C exits and restores too.
set -u
cd "$(dirname "$0")/.." || exit 1
. tests/http_lib.sh
command -v tmux >/dev/null || { echo "FAIL: tmux not installed (scripts/install-deps.sh)"; exit 1; }
export TMUX_TMPDIR=$TMPD
S=mstop$$
T="tmux -L $S"
trap '$T kill-server 2>/dev/null; cleanup' EXIT
TOP=$(realpath "$BUILD/memscope")

start_host 30
sleep 2
n=0
run_top() { # a fresh 80x24 session running top; its exit status lands in $TMPD/rc
    n=$((n + 1)); W=t$n
    $T -f /dev/null new-session -d -s $W -x 80 -y 24 "env LANG=C.UTF-8 LC_ALL=C.UTF-8 bash --norc --noprofile"
    $T send-keys -t $W "PS1='\$ '; clear; echo SHELL-READY; $TOP top $URL; echo \"rc=\$?\" >$TMPD/rc" Enter
}
screen() { $T capture-pane -p -t $W; }
wait_for() { for _ in $(seq 200); do screen | grep -q "$1" && return 0; sleep 0.1; done; return 1; }

rm -f "$TMPD/rc"
run_top
check "top draws its screen" wait_for 'memscope top'
sleep 1.5
screen >"$TMPD/s1"; sed 's/^/  screen| /' "$TMPD/s1"
check "fits 80x24" [ "$(awk 'length($0) > 80' "$TMPD/s1" | wc -l)" = 0 ]
check "series rows present" sh -c "grep -q '^heap in use' '$TMPD/s1' && grep -q '^RSS' '$TMPD/s1' && grep -q '^heap released' '$TMPD/s1'"
check "live objects ~48 MiB, as the program has" grep -Eq '^live objects +(4[89]|5[0-9])\.[0-9] MiB' "$TMPD/s1"
check "sparklines drawn" grep -q '^RSS .*[▁▂▃▄▅▆▇█]' "$TMPD/s1"
check "keep_big is the top in-use site" sh -c "grep -A2 'top sites by in-use' '$TMPD/s1' | tail -1 | grep -q keep_big"
$T send-keys -t $W p
sleep 1.5
screen >"$TMPD/s2"
check "p: sites by peak, peak_burst first" sh -c "grep -A2 'top sites by bytes at peak' '$TMPD/s2' | tail -1 | grep -q peak_burst"
$T send-keys -t $W q
for _ in $(seq 100); do [ -s "$TMPD/rc" ] && break; sleep 0.1; done
check "q quits with status 0" grep -q '^rc=0$' "$TMPD/rc"
check "q restores the terminal (the shell's screen is back)" sh -c "$T capture-pane -p -t $W | grep -q SHELL-READY"

# Ctrl-C
rm -f "$TMPD/rc"
run_top
check "top draws its screen again" wait_for 'memscope top'
$T send-keys -t $W C-c
for _ in $(seq 100); do [ -s "$TMPD/rc" ] && break; sleep 0.1; done
check "Ctrl-C exits" grep -q '^rc=130$' "$TMPD/rc"
check "Ctrl-C restores the terminal" sh -c "$T capture-pane -p -t $W | grep -q SHELL-READY"

# The program goes away.
rm -f "$TMPD/rc"
run_top
wait_for 'memscope top' >/dev/null
stop_host
for _ in $(seq 150); do [ -s "$TMPD/rc" ] && break; sleep 0.1; done
screen >"$TMPD/s3"
check "program gone: top exits 1" grep -q '^rc=1$' "$TMPD/rc"
check "program gone: one line says so, terminal restored" sh -c "grep -q 'went away' '$TMPD/s3' && grep -q SHELL-READY '$TMPD/s3'"
$T kill-server 2>/dev/null

# a server that answers 200 with something else: an error, not an empty screen
python3 - >"$TMPD/g200.port" <<'PY' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = b'{"hello": [1, 2, 3]}'
        self.send_response(200); self.send_header("Content-Length", str(len(b))); self.end_headers(); self.wfile.write(b)
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_port, flush=True)
s.handle_request(); s.handle_request()
PY
G200=$!
for _ in $(seq 50); do [ -s "$TMPD/g200.port" ] && break; sleep 0.1; done
"$BUILD/memscope" top --once "127.0.0.1:$(cat "$TMPD/g200.port")" >"$TMPD/g200.out" 2>"$TMPD/g200.err"; rc=$?
check "not memscope's endpoint: top exits 1 and says so" sh -c "[ $rc = 1 ] && grep -q 'not memscope' '$TMPD/g200.err'"
kill "$G200" 2>/dev/null; wait "$G200" 2>/dev/null

# a server that drips its answer a byte a second: top gives up within its
# 5 s bound instead of waiting for ever
python3 - >"$TMPD/drip.port" <<'PY' &
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
for _ in range(60):
    try: c.send(b"H"); time.sleep(1)
    except OSError: break
PY
DRIP=$!
for _ in $(seq 50); do [ -s "$TMPD/drip.port" ] && break; sleep 0.1; done
t0=$SECONDS
timeout 30 "$BUILD/memscope" top --once "127.0.0.1:$(cat "$TMPD/drip.port")" >/dev/null 2>"$TMPD/drip.err"; rc=$?
check "a dripping server: top exits 1 within 8 s and says so" sh -c "[ $rc = 1 ] && [ $((SECONDS - t0)) -le 8 ] && grep -q 'no complete answer' '$TMPD/drip.err'"
kill "$DRIP" 2>/dev/null; wait "$DRIP" 2>/dev/null

# a port past 65535 is a bad URL, not that port modulo 65536
"$BUILD/memscope" top --once 83688 >/dev/null 2>&1; rc1=$?
"$BUILD/memscope" top --once http://127.0.0.1:70000 >/dev/null 2>&1; rc2=$?
check "ports above 65535 are usage errors" sh -c "[ $rc1 = 2 ] && [ $rc2 = 2 ]"
echo "$failures failed"
exit "$failures"
