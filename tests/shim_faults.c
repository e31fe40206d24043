/* shim_faults.c: an LD_PRELOAD shim that makes the kernel "refuse" memory.
 *
 * Why: memscope gets every byte of its heap and metadata from mmap (reserve,
 * commit, metadata pages), returns pages with madvise and mmap(MAP_FIXED,
 * PROT_NONE), and moves large blocks with mremap.  On a real machine each of
 * those can fail (overcommit refused, the VMA count limit, RLIMIT_AS, cgroup
 * pressure), but almost never in a test.  memscope calls them through libc's
 * PLT, so a preloaded library that defines the same symbols is called
 * instead: this one fails chosen calls with ENOMEM and otherwise performs
 * them with raw syscalls (no dlsym, no malloc: it must never call back into
 * the allocator under test).
 *
 * It is idle until armed, so the program's and the loader's own start-up
 * mappings are left alone.  The test program arms it through
 * dlsym(RTLD_DEFAULT, "faultshim_arm"):
 *     faultshim_arm(every, budget): from now on, after `budget` further calls
 *         have succeeded, fail every `every`-th call (every = 1: all of them);
 *         every = 0 disarms.
 *     faultshim_injected(): how many calls were failed so far.
 *     faultshim_calls(): how many calls were seen while armed.
 * Calls covered: mmap, mmap64, madvise, mprotect, mremap.  munmap is never
 * failed (the kernel only refuses it when splitting a VMA exceeds the map
 * count, and memscope only unmaps whole mappings it made).
 *
 * Every covered call may be failed: memscope's moves keep their source
 * mapped (MREMAP_DONTUNMAP, src/os.c ms_os_move), so no call of its must
 * succeed once another did (docs/RELIABILITY.md, "the hole after a moved
 * block").
 *
 * FAULTSHIM_CORRUPT=1 turns the shim into a deliberately broken one: while
 * armed, every successful MAP_FIXED read-write anonymous mmap (memscope
 * committing heap pages) gets a stray byte written at offset 64 of each of
 * its 4 KiB pages (the first 64 MiB of them).  It exists to show that tests/test_faults.sh can fail (a heap page
 * that does not come back zeroed must be caught by calloc's verification
 * or the debug build's validators).
 */

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

static _Atomic long every_n;   /* 0: disarmed */
static _Atomic long budget;    /* successful calls still allowed before faults start */
static _Atomic long seen;      /* calls while armed */
static _Atomic long injected;  /* calls failed */
static int corrupt = -1;       /* FAULTSHIM_CORRUPT, read lazily (getenv does not allocate) */

EXPORT void faultshim_arm(long every, long after) {
    atomic_store(&budget, after);
    atomic_store(&every_n, every);
}
EXPORT long faultshim_injected(void) { return atomic_load(&injected); }
EXPORT long faultshim_calls(void) { return atomic_load(&seen); }

/* should_fail: true if this call is to be refused. */
static int should_fail(void) {
    long e = atomic_load(&every_n);
    if (e <= 0) return 0;
    long n = atomic_fetch_add(&seen, 1) + 1;
    if (atomic_fetch_sub(&budget, 1) > 0) return 0;
    if (n % e != 0) return 0;
    atomic_fetch_add(&injected, 1);
    return 1;
}

static void *raw_mmap(void *a, size_t len, int prot, int flags, int fd, off_t off) {
    long r = syscall(SYS_mmap, a, len, prot, flags, fd, off);
    if (r < 0 && r > -4096) return MAP_FAILED; /* syscall() already set errno */
    return (void *)r;
}

EXPORT void *mmap(void *a, size_t len, int prot, int flags, int fd, off_t off) {
    if (should_fail()) {
        errno = ENOMEM;
        return MAP_FAILED;
    }
    void *p = raw_mmap(a, len, prot, flags, fd, off);
    if (corrupt < 0) {
        const char *c = getenv("FAULTSHIM_CORRUPT");
        corrupt = c && *c == '1';
    }
    /* a stray byte in every 4 KiB page (of the first 64 MiB): a calloc that
     * trusts any of these pages to be zero meets one, wherever its block
     * starts (one byte per mapping was met only when a block happened to
     * cover that offset, and a run could miss it) */
    if (corrupt && p != MAP_FAILED && (flags & MAP_ANONYMOUS) && (flags & MAP_FIXED) && (prot & PROT_WRITE) && len > 64 &&
        atomic_load(&every_n) > 0)
        for (size_t o = 64; o < len && o < ((size_t)64 << 20); o += 4096) ((volatile unsigned char *)p)[o] = 0xA5;
    return p;
}
EXPORT void *mmap64(void *a, size_t len, int prot, int flags, int fd, off_t off) {
    return mmap(a, len, prot, flags, fd, off);
}

EXPORT int madvise(void *a, size_t len, int advice) {
    if (should_fail()) {
        errno = ENOMEM;
        return -1;
    }
    return (int)syscall(SYS_madvise, a, len, advice);
}

EXPORT int mprotect(void *a, size_t len, int prot) {
    if (should_fail()) {
        errno = ENOMEM;
        return -1;
    }
    return (int)syscall(SYS_mprotect, a, len, prot);
}

EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...) {
    void *new_addr = NULL;
    if (flags & MREMAP_FIXED) {
        va_list ap;
        va_start(ap, flags);
        new_addr = va_arg(ap, void *);
        va_end(ap);
    }
    if (should_fail()) {
        errno = ENOMEM;
        return MAP_FAILED;
    }
    long r = syscall(SYS_mremap, old, old_len, new_len, flags, new_addr);
    if (r < 0 && r > -4096) return MAP_FAILED;
    return (void *)r;
}
