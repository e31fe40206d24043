#!/usr/bin/env bash
# test_fixedrss.sh: what memscope itself keeps resident in a small program.
#
# Why: bench/run.sh's small workloads (fs-active, fs-passive, prodcons) are
# a few MiB of peak RSS, of which memscope's fixed part (its code, data and
# BSS, the first pages of its tables, the unwind tables a sample reads) was
# a fifth, and each regression of it is invisible in the larger workloads.
# A tiny program reads its own /proc/self/smaps before it exits: the
# resident KiB of its anonymous mappings (the heap, memscope's BSS and
# tables among them) and of libmemscope.so's.  Without memscope the same
# program gives the anonymous KiB the C library's malloc and the program
# need; memscope's overhead is its two sums less that.  Two runs:
#   - one 1 KiB block: the fixed part (192 KiB on the build that added this
#     test: 88 anonymous, 104 of the library: 16 of headers and read-only
#     data, the 64 KiB window of hot text, 8 of RELRO, 16 of data; 184
#     once the registry's sentinel left .data);
#   - 2 MiB of 1 KiB blocks, so that the sampler (one sample per 512 KiB
#     on average) walks a few stacks: the walk starts at the core's frame
#     and must read none of memscope's own unwind tables (36 KiB of the
#     library when it did), and the profiler's tables start small.
# The bounds leave room over those figures (240 KiB with the samples).
set -u
. "$(dirname "$0")/prelude.sh"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }

# Under THP "always" a first touch may fault in a 2 MiB page, so the
# program runs with THP off for itself (PR_SET_THP_DISABLE, kept across
# exec) where the mode is "always".
NOTHP=()
if grep -q '\[always\]' /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null; then
    cat > "$T/nothp.c" <<'CEOF'
#include <stdio.h>
#include <sys/prctl.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc < 2 || prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0) { perror("nothp"); return 1; }
    execv(argv[1], argv + 1);
    perror("nothp: execv");
    return 1;
}
CEOF
    cc -O2 -o "$T/nothp" "$T/nothp.c" || { echo "FAIL: cc nothp"; exit 1; }
    NOTHP=("$T/nothp")
fi

cat > "$T/fixed.c" <<'CEOF'
#define _GNU_SOURCE
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* eh_kib: the resident KiB (in this process's page table) of the C
 * library's unwind tables, from 64 KiB past the start of its
 * .eh_frame_hdr to the end of the segment that holds it (.eh_frame):
 * pages nearer may be mapped around the program's reads of the rodata
 * before them (the kernel's fault-around) */
static uintptr_t eh_lo, eh_hi;
static int find_libc(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)size; (void)arg;
    if (!info->dlpi_name || !strstr(info->dlpi_name, "libc.so")) return 0;
    uintptr_t hdr = 0;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_GNU_EH_FRAME) hdr = info->dlpi_addr + info->dlpi_phdr[i].p_vaddr;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && hdr >= lo && hdr < lo + ph->p_filesz) eh_lo = hdr + 65536, eh_hi = lo + ph->p_filesz;
    }
    return 1;
}
static unsigned long eh_kib(void) {
    dl_iterate_phdr(find_libc, NULL);
    int fd = open("/proc/self/pagemap", O_RDONLY);
    unsigned long kib = 0;
    for (uintptr_t a = eh_lo & ~(uintptr_t)4095; fd >= 0 && a < eh_hi; a += 4096) {
        uint64_t e;
        if (pread(fd, &e, 8, (off_t)(a / 4096 * 8)) == 8 && (e >> 63)) kib += 4;
    }
    if (fd >= 0) close(fd);
    return kib;
}
static void *in_thread(void *arg) {
    for (size_t i = 0; i < (size_t)(uintptr_t)arg; i++) memset(malloc(1024), 1, 1024);
    return NULL;
}
/* fixed [blocks] [thread]: keeps `blocks` blocks of 1 KiB (allocated by
 * a thread of their own if asked), then prints the resident KiB of its
 * anonymous mappings, of libmemscope.so's and of the C library's unwind
 * tables */
int main(int argc, char **argv) {
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1;
    if (argc > 2) {
        pthread_t t;
        if (pthread_create(&t, NULL, in_thread, (void *)(uintptr_t)n) != 0 || pthread_join(t, NULL) != 0) return 1;
        printf("0 0 %lu\n", eh_kib());
        return 0;
    }
    char **v = malloc((n ? n : 1) * sizeof *v);
    if (!v) return 1;
    for (size_t i = 0; i < n; i++) {
        if (!(v[i] = malloc(1024))) return 1;
        memset(v[i], (int)i, 1024);
    }
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return 1;
    char line[512];
    int kind = 0; /* 1: anonymous, 2: memscope's */
    unsigned long anon = 0, lib = 0, kb;
    while (fgets(line, sizeof line, f)) {
        char path[256] = "";
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %255s", &lo, &hi, path) >= 2) {
            kind = path[0] == '\0' || strcmp(path, "[heap]") == 0 ? 1 : strstr(path, "libmemscope") ? 2 : 0;
        } else if (sscanf(line, "Rss: %lu kB", &kb) == 1) {
            if (kind == 1) anon += kb;
            if (kind == 2) lib += kb;
        }
    }
    fclose(f);
    printf("%lu %lu %lu\n", anon, lib, eh_kib());
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
    return 0;
}
CEOF
cc -O2 -pthread -o "$T/fixed" "$T/fixed.c" || { echo "FAIL: cc"; exit 1; }

# median of three runs of one figure: "anon lib" lines in, the sum of the
# fields named out
median3() { sort -n | sed -n 2p; }
run() { # run PRELOAD BLOCKS: median of three runs of anon + lib (KiB)
    for i in 1 2 3; do LD_PRELOAD=$1 "${NOTHP[@]}" "$T/fixed" "$2" | awk '{print $1 + $2}'; done | median3
}
run_lib() { # memscope's library alone, median of three
    for i in 1 2 3; do LD_PRELOAD=$LIB "${NOTHP[@]}" "$T/fixed" "$1" | awk '{print $2}'; done | median3
}

check() { # check BLOCKS BOUND WHAT
    local base ms over
    base=$(run "" "$1")
    ms=$(run "$LIB" "$1")
    if [ -z "$base" ] || [ -z "$ms" ]; then bad "$3: the program failed"; return; fi
    over=$((ms - base))
    if [ "$over" -le "$2" ]; then
        ok "$3: memscope's anonymous and library KiB $ms, less the C library's malloc's $base: $over KiB (bound $2)"
    else
        bad "$3: memscope keeps $over KiB resident (anonymous and library $ms, the C library's malloc $base), over the bound of $2"
    fi
}

check 1 224 "one 1 KiB block"
check 2048 272 "2 MiB in 1 KiB blocks, sampled"
# The C library's unwind tables: a sample's stack walk finds the recipes
# of the frames where every stack ends (start_thread and clone3 in a
# thread) in them, and read in place, the kernel's fault-around made up
# to 150 KiB of them resident (unwind.c: src_t; 68-112 KiB of this range here when it did).
# A program on the C library's malloc never reads them.
run_eh() { # run_eh PRELOAD: median of three of the third figure, blocks allocated by a thread
    for i in 1 2 3; do LD_PRELOAD=$1 "${NOTHP[@]}" "$T/fixed" 2048 thread | awk '{print $3}'; done | median3
}
eh_base=$(run_eh "")
eh_ms=$(run_eh "$LIB")
if [ -n "$eh_base" ] && [ -n "$eh_ms" ] && [ "$eh_ms" -le $((eh_base + 16)) ]; then
    ok "the C library's unwind tables resident after samples: $eh_ms KiB (its malloc's program: $eh_base)"
else
    bad "the C library's unwind tables resident after samples: '$eh_ms' KiB, its malloc's program '$eh_base' (read in place, not from the file?)"
fi
lib=$(run_lib 2048)
if [ -n "$lib" ] && [ "$lib" -le 112 ]; then
    ok "libmemscope.so resident after samples: $lib KiB (its unwind tables are not read)"
else
    bad "libmemscope.so resident after samples: '$lib' KiB, over 112 (a sample read memscope's own .eh_frame?)"
fi
exit $fail
