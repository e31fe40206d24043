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

allowed='^(malloc|free|calloc|realloc|reallocarray|memalign|posix_memalign|aligned_alloc|valloc|pvalloc|__libc_(malloc|free|calloc|realloc|memalign|valloc|pvalloc)|dlclose|malloc_usable_size|mallinfo|mallinfo2|malloc_trim|malloc_stats|malloc_info|mallopt|memscope_[a-z_0-9]+)$'
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
# of RSS per thread; the profiler's 7 KiB capture buffer, 8 KiB: it now
# hangs off the thread's cache, prof/stack.h), and each library it needs is
# loaded and relocated at start (zlib is dlopen'd on the first gzipped
# profile).
tls=$(readelf -lW build/libmemscope.so | awk '$1 == "TLS" {print $6}')
[ -n "$tls" ] && tls=$((tls))
if [ -n "$tls" ] && [ "$tls" -le 1024 ]; then
    echo "ok: thread-local storage $tls bytes (at most 1 KiB)"
else
    echo "FAIL: thread-local storage '${tls:-none}' bytes, more than 1 KiB"; fail=1
fi
if readelf -d build/libmemscope.so | grep NEEDED | grep -q 'libz\.'; then
    echo "FAIL: libmemscope.so needs libz at load time"; fail=1
else
    echo "ok: libz is not loaded with the library"
fi
# Text layout (Makefile, mk/text.ld): the kernel maps a library's text 64
# KiB at a time around each page run, the first window clipped to the
# text's start, so .init maps the text up to the second 64 KiB boundary.
# Everything a process runs without asking for a report (the allocator, the
# sampler, _fini, the C library's pthread_atfork stub, libgcc's 128-bit
# division) must lie below it,
# and the code that runs only on request (HTTP, leak checker, writers,
# symbolizer) above all of it: with the cold code first, a small program
# had every page of the text resident (188 KiB; 108 KiB so).
so=build/libmemscope.so
text_lo=$(readelf -lW $so | awk '$1 == "LOAD" && / R E / {print strtonum($3); exit}')
limit=$(( (text_lo & ~0xffff) + 0x20000 ))
cold_objs=$(ls build/obj/http/*.o build/obj/leak/*.o build/obj/prof/pprof.o build/obj/prof/text.o build/obj/prof/symbolize.o)
hot_objs=$(ls build/obj/*.o build/obj/prof/*.o | grep -v -e prof/pprof.o -e prof/text.o -e prof/symbolize.o)
syms() { nm --defined-only $1 2>/dev/null | awk '$2 == "T" {print $3}' | sort -u; }
nm -n --defined-only $so | awk '$2 ~ /[Tt]/ {print $1, $3}' >"$tmp/so.syms"
addr_max() { awk 'NR==FNR {want[$1]=1; next} ($2 in want) {a=strtonum("0x"$1); if (a>m) m=a} END {print m+0}' - "$tmp/so.syms"; }
addr_min() { awk 'NR==FNR {want[$1]=1; next} ($2 in want) {a=strtonum("0x"$1); if (m==0||a<m) m=a} END {print m+0}' - "$tmp/so.syms"; }
hot_max=$( { for o in $hot_objs; do syms $o; done; echo _fini; echo pthread_atfork; echo __udivti3; } | addr_max)
cold_min=$( { for o in $cold_objs; do syms $o; done; } | addr_min)
if [ "$hot_max" -gt 0 ] && [ "$hot_max" -lt "$limit" ] && [ "$hot_max" -lt "$cold_min" ]; then
    printf 'ok: hot text ends at 0x%x, below 0x%x and the cold code (0x%x)\n' "$hot_max" "$limit" "$cold_min"
else
    printf 'FAIL: hot text reaches 0x%x (limit 0x%x, cold code from 0x%x)\n' "$hot_max" "$limit" "$cold_min"; fail=1
fi
# ... and the functions every process runs (mk/hot.ld, linked after
# memscope_text) lie in the text's first 64 KiB, which start on a 64 KiB
# boundary: the window and folio .init maps (Makefile).
hot_end=$(readelf -SW $so | awk '$2 == "memscope_hot" {print strtonum("0x" $4) + strtonum("0x" $6)}')
if [ $((text_lo & 0xffff)) = 0 ] && [ -n "$hot_end" ] && [ "$hot_end" -le $((text_lo + 0x10000)) ]; then
    printf 'ok: the text starts at 0x%x and its listed hot functions end at 0x%x\n' "$text_lo" "$hot_end"
else
    printf 'FAIL: the text starts at 0x%x, its hot functions end at 0x%x (must be 64 KiB aligned, within 64 KiB)\n' \
        "$text_lo" "${hot_end:-0}"; fail=1
fi
# ... and the unwind tables, which the sampler's walker reads in place,
# share no 64 KiB window with .rodata (mk/text.ld).
ro_end=$(readelf -SW $so | awk '$2 == ".rodata" {print strtonum("0x" $4) + strtonum("0x" $6)}')
eh_lo=$(readelf -SW $so | awk '$2 == ".eh_frame_hdr" {print strtonum("0x" $4)}')
if [ -n "$ro_end" ] && [ -n "$eh_lo" ] && [ $(( (ro_end - 1) >> 16 )) -lt $(( eh_lo >> 16 )) ]; then
    printf 'ok: .rodata ends at 0x%x, the unwind tables start a window at 0x%x\n' "$ro_end" "$eh_lo"
else
    printf 'FAIL: .rodata ends at 0x%x, in the window of .eh_frame_hdr (0x%x)\n' "${ro_end:-0}" "${eh_lo:-0}"; fail=1
fi
# ... and .data, every page of which a process reads (its options, the
# empty thread cache, the size tables), is two pages at most: at 8,416
# bytes it was a third page of the library's file resident in every
# process (pageheap.c: its sentinels are set up at init instead).
data_size=$(readelf -SW $so | awk '$2 == ".data" {print strtonum("0x" $6)}')
if [ -n "$data_size" ] && [ "$data_size" -le 8192 ]; then
    printf 'ok: .data is %d bytes, two pages at most\n' "$data_size"
else
    printf 'FAIL: .data is %s bytes, over two pages (8192)\n' "${data_size:-?}"; fail=1
fi
[ $fail = 0 ] && echo "test_build: 1 passed, 0 failed" || echo "test_build: 0 passed, 1 failed"
exit $fail
