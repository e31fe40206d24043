#!/usr/bin/env bash
# test_http_abuse.sh: the endpoint under hostile clients, inside a program
# that must not notice.  For about 8 s, at once:
#   - 64 connections dribble a request head one byte every 200 ms (slowloris);
#   - clients send random bytes, a 1 MiB header, bad methods, traversal
#     attempts and NUL bytes, over and over;
#   - every 250 ms a normal GET /metrics must be answered in full within 1 s.
# The normal client is a process of its own: in the attackers' process it
# shared Python's interpreter lock with 68 threads, and on a loaded machine
# its own wait for the lock made answers look late that the server had sent
# in time.
# Then: the host program is still running, its stdout is exactly its ticks
# (unchanged), and its stderr holds only the one "serving" line.
set -u
cd "$(dirname "$0")/.." || exit 1
. tests/http_lib.sh

start_host 12
python3 - "$URL" <<'PY'
import os, random, socket, sys, threading, time, urllib.parse
u = urllib.parse.urlparse(sys.argv[1]); addr = (u.hostname, u.port)
stop = time.time() + 8
lock = threading.Lock(); stats = {"normal": 0, "slow": [], "errors": []}

def dribble():
    while time.time() < stop:
        try:
            s = socket.create_connection(addr, timeout=3)
            for c in b"GET /metrics HTTP/1.1\r\nX-Slow: " + b"a" * 1000:
                if time.time() >= stop: break
                s.send(bytes([c])); time.sleep(0.2)
        except OSError:
            time.sleep(0.1)
        finally:
            try: s.close()
            except Exception: pass

def hostile(i):
    rnd = random.Random(i)
    payloads = [lambda: bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 4096))),
                lambda: b"GET / HTTP/1.1\r\nX-Big: " + b"x" * (1 << 20) + b"\r\n\r\n",
                lambda: b"BREW /pot HTTP/1.1\r\n\r\n", lambda: b"DELETE /metrics HTTP/1.1\r\n\r\n",
                lambda: b"GET /../../etc/passwd HTTP/1.1\r\n\r\n", lambda: b"GET /%2e%2e/x HTTP/1.1\r\n\r\n",
                lambda: b"GET /met\x00rics HTTP/1.1\r\n\r\n", lambda: b"GET /metrics HTTP/1.1\r\nA: \x00\r\n\r\n",
                lambda: b"\r\n" * 5000]
    while time.time() < stop:
        try:
            s = socket.create_connection(addr, timeout=3)
            s.sendall(rnd.choice(payloads)())
            s.settimeout(2); s.recv(4096)
        except OSError:
            pass
        finally:
            try: s.close()
            except Exception: pass

def normal():
    while time.time() < stop:
        t0 = time.time()
        try:
            s = socket.create_connection(addr, timeout=2)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            s.settimeout(max(0.05, 1 - (time.time() - t0)))
            while True:
                b = s.recv(65536)
                if not b: break
                data += b
            s.close()
            dt = time.time() - t0
            ok = data.startswith(b"HTTP/1.1 200") and b"process_resident_memory_bytes" in data
            with lock:
                if ok and dt <= 1.0: stats["normal"] += 1
                else: stats["slow"].append(round(dt, 3) if ok else "bad answer: %r" % data[:60])
        except OSError as e:
            with lock: stats["errors"].append(str(e))
        time.sleep(0.25)

pid = os.fork()
if pid == 0:
    normal()
    print("normal requests answered within 1 s:", stats["normal"], "late:", stats["slow"], "errors:", stats["errors"])
    sys.stdout.flush()
    os._exit(0 if stats["normal"] >= 20 and not stats["slow"] and not stats["errors"] else 1)
threads = [threading.Thread(target=dribble) for _ in range(64)]
threads += [threading.Thread(target=hostile, args=(i,)) for i in range(4)]
for t in threads: t.start()
for t in threads: t.join()
_, status = os.waitpid(pid, 0)
sys.exit(0 if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 else 1)
PY
check "normal requests answered within 1 s throughout" [ $? = 0 ]
check "the host is still running" kill -0 "$HOST_PID"

# every connection slot held by clients waiting for ?seconds= profiles: a
# new client gets an HTTP 503 saying so, not a reset
python3 - "$URL" <<'PY'
import socket, sys, urllib.parse, urllib.request, urllib.error
u = urllib.parse.urlparse(sys.argv[1])
held = []
for i in range(16):
    s = socket.create_connection((u.hostname, u.port), timeout=5)
    s.sendall(b"GET /debug/pprof/heap?seconds=3 HTTP/1.1\r\n\r\n")
    held.append(s)
import time; time.sleep(0.3)
try:
    urllib.request.urlopen(sys.argv[1] + "metrics", timeout=5).read()
    code = 200
except urllib.error.HTTPError as e:
    code = e.code
except Exception as e:
    code = repr(e)
for s in held: s.close()
print("17th client:", code)
sys.exit(0 if code in (503, 200) else 1)
PY
check "all slots waiting: a new client gets 503, not a reset" [ $? = 0 ]
wait "$HOST_PID"; rc=$?; HOST_PID=
check "the host exits 0" [ "$rc" = 0 ]
check "the host's output is unchanged" ticks_ok "$HOST_OUT" 120
check "stderr: only the serving line" [ "$(grep -vc 'memscope: serving' "$HOST_ERR")" = 0 ]

# 20 complete requests queued while the host is stopped: when it runs again
# each client gets 200 or 503, and none is evicted unanswered (the first of
# a burst of 17 once got a reset: its slot went to the 17th)
start_host 30
python3 - "$URL" "$HOST_PID" <<'PY'
import collections, os, signal, socket, sys, time, urllib.parse
u = urllib.parse.urlparse(sys.argv[1]); pid = int(sys.argv[2])
os.kill(pid, signal.SIGSTOP); time.sleep(0.2)
socks = []
for i in range(20):
    s = socket.create_connection((u.hostname, u.port)); s.settimeout(15)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"); socks.append(s)
os.kill(pid, signal.SIGCONT)
got = collections.Counter()
for s in socks:
    b = b""
    try:
        while True:
            d = s.recv(65536)
            if not d: break
            b += d
        got[b.split(b"\r\n")[0].decode() or "no answer"] += 1
    except Exception as e:
        got["error: " + type(e).__name__] += 1
print(dict(got))
sys.exit(0 if set(got) <= {"HTTP/1.1 200 OK", "HTTP/1.1 503 Service Unavailable"} else 1)
PY
check "a burst of 20 queued requests: each gets 200 or 503" [ $? = 0 ]
stop_host

# the program closes the server's socket, which stops the server with one
# line; a later memscope_http_start serves again
port2=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BUILD/tests/prog_http_restart" 127.0.0.1:0 "127.0.0.1:$port2" >"$TMPD/restart.out" 2>"$TMPD/restart.err" &
RPID=$!
for _ in $(seq 60); do [ -s "$TMPD/restart.out" ] && break; sleep 0.1; done
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$port2/metrics")
kill "$RPID" 2>/dev/null; wait "$RPID" 2>/dev/null
check "the server stopped by a closed socket can be started again" \
    sh -c "[ '$(cat "$TMPD/restart.out")' = 'first=0 second=0' ] && [ '$code' = 200 ] && grep -q 'no longer serving' '$TMPD/restart.err'"
echo "$failures failed"
exit "$failures"
