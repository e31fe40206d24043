# tests/http_lib.sh: shared by the tests/test_http*.sh scripts (sourced).
#
# start_host SECONDS [ENV...]: runs build/tests/prog_http SECONDS under
# memscope with MEMSCOPE=http=127.0.0.1:0 (a free port) plus any ENV
# assignments, waits for its "serving" line and sets HOST_PID, URL (with a
# trailing slash), HOST_OUT and HOST_ERR.  stop_host kills it.
BUILD=${BUILD:-build}
LIB=$(realpath "$BUILD/libmemscope.so" 2>/dev/null)
PROG=$BUILD/tests/prog_http
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
for f in "$LIB" "$PROG" "$BUILD/memscope"; do
    if [ ! -e "$f" ]; then echo "FAIL: $f missing (run 'make all' first)"; exit 1; fi
done
TMPD=$(mktemp -d)
HOST_PID=
cleanup() { [ -n "$HOST_PID" ] && kill "$HOST_PID" 2>/dev/null; rm -rf "$TMPD"; }
trap cleanup EXIT

start_host() {
    local secs=$1; shift
    HOST_OUT=$TMPD/out.$RANDOM HOST_ERR=$TMPD/err.$RANDOM
    env MEMSCOPE="http=127.0.0.1:0${MS_EXTRA:+,$MS_EXTRA}" LD_PRELOAD="$LIB" "$@" "$PROG" "$secs" >"$HOST_OUT" 2>"$HOST_ERR" &
    HOST_PID=$!
    URL=
    for _ in $(seq 100); do
        URL=$(grep -o 'http://127\.0\.0\.1:[0-9]*/' "$HOST_ERR" 2>/dev/null | head -1)
        [ -n "$URL" ] && break
        sleep 0.05
    done
    [ -n "$URL" ] || { echo "FAIL: the host did not start serving"; cat "$HOST_ERR"; exit 1; }
}
stop_host() { [ -n "$HOST_PID" ] && kill "$HOST_PID" 2>/dev/null; wait "$HOST_PID" 2>/dev/null; HOST_PID=; }

# ticks_ok FILE N: FILE holds exactly "tick 0" .. "tick N-1", in order.
ticks_ok() { [ "$(seq 0 $(($2 - 1)) | sed 's/^/tick /' | md5sum)" = "$(md5sum <"$1")" ]; }
