#!/usr/bin/env bash
# test_build: the library builds -Wall -Wextra -Werror clean with clang as
# well as gcc, and exports nothing but the malloc family and memscope_*
# (everything internal is hidden, so it cannot clash with the host program).
set -u
cd "$(dirname "$0")/.."
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if command -v clang >/dev/null; then
    if make -s CC=clang BUILD="$tmp/clang" lib >"$tmp/clang.log" 2>&1; then
        echo "ok: clang build is warning-free"
    else
        echo "FAIL: clang build"; tail -20 "$tmp/clang.log"; fail=1
    fi
else
    echo "FAIL: clang not installed (scripts/install-deps.sh installs it)"; fail=1
fi

allowed='^(malloc|free|calloc|realloc|reallocarray|memalign|posix_memalign|aligned_alloc|valloc|pvalloc|__libc_(malloc|free|calloc|realloc|memalign|valloc|pvalloc)|dlclose|malloc_usable_size|mallinfo|mallinfo2|malloc_trim|malloc_stats|mallopt|memscope_[a-z_0-9]+)$'
exported=$(nm -D --defined-only build/libmemscope.so | awk '$2 ~ /[TWDBRV]/ {print $3}' | sed 's/@.*//')
bad=$(echo "$exported" | grep -Ev "$allowed" || true)
if [ -n "$bad" ]; then
    echo "FAIL: unexpected exported symbols: $(echo "$bad" | tr '\n' ' ')"; fail=1
else
    echo "ok: exports are the malloc family and memscope_* only ($(echo "$exported" | wc -l) symbols)"
fi
for f in malloc free calloc realloc posix_memalign aligned_alloc malloc_usable_size memscope_read_stats memscope_free_os_memory; do
    echo "$exported" | grep -qx "$f" || { echo "FAIL: $f not exported"; fail=1; }
done
# What every process pays for having memscope loaded: its thread-local
# storage is zeroed at each thread's start (a 16 KiB buffer there cost 20 KiB
# of RSS per thread), and each library it needs is loaded and relocated at
# start (zlib is dlopen'd on the first gzipped profile).
tls=$(readelf -lW build/libmemscope.so | awk '$1 == "TLS" {print $6}')
[ -n "$tls" ] && tls=$((tls))
if [ -n "$tls" ] && [ "$tls" -le 8192 ]; then
    echo "ok: thread-local storage $tls bytes (at most 8 KiB)"
else
    echo "FAIL: thread-local storage '${tls:-none}' bytes, more than 8 KiB"; fail=1
fi
if readelf -d build/libmemscope.so | grep NEEDED | grep -q 'libz\.'; then
    echo "FAIL: libmemscope.so needs libz at load time"; fail=1
else
    echo "ok: libz is not loaded with the library"
fi
[ $fail = 0 ] && echo "test_build: 1 passed, 0 failed" || echo "test_build: 0 passed, 1 failed"
exit $fail
