/* os.c: the only file that asks the kernel for memory or reads /proc.
 *
 * The heap lives in address space reserved PROT_NONE (it costs nothing and is
 * not charged against overcommit) and committed read-write as the heap grows.
 * Returning pages uses madvise(MADV_DONTNEED): the kernel drops them at once,
 * so RSS in top, ps and /proc falls immediately, and the next touch faults in
 * a zero page.  MADV_FREE would be cheaper but leaves the pages counted in
 * RSS until the kernel is short of memory, which is exactly the confusion
 * memscope exists to end (Go made the same switch back in 1.16 for the same
 * reason).  Every function returns a plain success flag; callers decide what
 * a failure means.  Nothing here allocates.
 */
#include "internal.h"

#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

/* memscope's own mappings.  A leak check asked to scan the memory the
 * program mapped itself (leaks_mmap, src/leak/roots.c) must leave out
 * memscope's: the heap, whose blocks are what it judges, and the metadata
 * and buffers that hold their addresses.  /proc/self/maps cannot tell them
 * apart (the kernel merges neighbouring anonymous mappings, and names one
 * only with CONFIG_ANON_VMA_NAME, which many kernels lack), so every range
 * that ms_os_reserve and ms_os_alloc return is listed here until it is
 * unmapped.  The list is a table of slots claimed with a compare-and-swap,
 * without a lock: a signal handler's malloc may map metadata while the
 * thread it interrupted is in here.  A slot is free while its lo is 0; hi
 * is written after lo, so a reader skips a slot whose hi is still 0.  The
 * table is mapped at the first entry, and is itself listed (its first
 * slot): its words are addresses of the heap.  Slots are only used up to
 * own_top, so a walk reads what was ever used and no more.  A table that
 * overflows sets own_full and the leak check says it cannot tell. */
#define OWN_SLOTS 8192
#define OS_ROUND(n) (((n) + 4095) & ~(size_t)4095) /* the kernel's page: what mmap really maps */
typedef struct own_map_s { _Atomic uintptr_t lo, hi; } own_map_t;
static own_map_t *_Atomic own_maps;
static _Atomic uint32_t own_top;
static _Atomic bool own_full;
/* mappings being made or unmapped and not yet listed or unlisted: a reader
 * that must see every one of memscope's mappings waits for none */
static _Atomic uint32_t own_busy;

static void own_add(uintptr_t lo, uintptr_t hi);

static own_map_t *own_table(void) {
    own_map_t *t = atomic_load_explicit(&own_maps, memory_order_acquire);
    if (t) return t;
    size_t bytes = OWN_SLOTS * sizeof(own_map_t);
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return NULL;
    own_map_t *none = NULL;
    if (!atomic_compare_exchange_strong(&own_maps, &none, (own_map_t *)p)) {
        munmap(p, bytes); /* another thread's table won */
        return none;
    }
    own_add((uintptr_t)p, (uintptr_t)p + bytes);
    return p;
}

static void own_add(uintptr_t lo, uintptr_t hi) {
    own_map_t *t = own_table();
    if (!t) {
        atomic_store(&own_full, true);
        return;
    }
    for (uint32_t i = 0; i < OWN_SLOTS; i++) {
        uintptr_t zero = 0;
        if (atomic_load_explicit(&t[i].lo, memory_order_relaxed) != 0 ||
            !atomic_compare_exchange_strong(&t[i].lo, &zero, lo))
            continue;
        atomic_store_explicit(&t[i].hi, hi, memory_order_release);
        uint32_t top = atomic_load(&own_top);
        while (top < i + 1 && !atomic_compare_exchange_weak(&own_top, &top, i + 1)) {
        }
        return;
    }
    atomic_store(&own_full, true);
}

/* own_remove: [lo, hi) is unmapped: what the slots hold of it goes.  Only
 * the thread that unmaps a range changes its slot, so a slot's update is
 * never raced by another's (a split adds the upper part first). */
static void own_remove(uintptr_t lo, uintptr_t hi) {
    own_map_t *t = atomic_load_explicit(&own_maps, memory_order_acquire);
    uint32_t top = atomic_load(&own_top);
    for (uint32_t i = 0; t && i < top; i++) {
        uintptr_t a = atomic_load_explicit(&t[i].lo, memory_order_relaxed);
        uintptr_t b = atomic_load_explicit(&t[i].hi, memory_order_acquire);
        if (!b || b <= lo || a >= hi) continue;
        if (lo <= a && hi >= b) { /* all of it: hi first, so readers skip the slot before it is reused */
            atomic_store_explicit(&t[i].hi, 0, memory_order_relaxed);
            atomic_store_explicit(&t[i].lo, 0, memory_order_release);
        } else if (lo <= a) {
            atomic_store(&t[i].lo, hi);
        } else {
            if (hi < b) own_add(hi, b);
            atomic_store(&t[i].hi, lo);
        }
    }
}

size_t ms_os_own_ranges(uintptr_t (*out)[2], size_t cap, bool settled, bool *complete) {
    *complete = !atomic_load(&own_full);
    /* settled: after any mapping under way (a few system calls; bounded,
     * since a thread of the program may be stopped in the middle of one) */
    for (int i = 0; settled && atomic_load(&own_busy) && i < 2000; i++) sched_yield();
    if (settled && atomic_load(&own_busy)) *complete = false;
    own_map_t *t = atomic_load_explicit(&own_maps, memory_order_acquire);
    uint32_t top = atomic_load(&own_top);
    size_t n = 0;
    for (uint32_t i = 0; t && i < top; i++) {
        uintptr_t b = atomic_load_explicit(&t[i].hi, memory_order_acquire);
        uintptr_t a = atomic_load_explicit(&t[i].lo, memory_order_relaxed);
        if (!a || b <= a) continue;
        if (n == cap) {
            *complete = false;
            break;
        }
        out[n][0] = a, out[n][1] = b, n++;
    }
    return n;
}

void *ms_os_reserve(size_t bytes) {
    int saved = errno; /* a refused try is not the program's error: the caller may try smaller */
    atomic_fetch_add(&own_busy, 1);
    void *p = mmap(NULL, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p != MAP_FAILED) own_add((uintptr_t)p, (uintptr_t)p + OS_ROUND(bytes));
    atomic_fetch_sub(&own_busy, 1);
    errno = saved;
    return p == MAP_FAILED ? NULL : p;
}

/* Committing maps fresh pages over the reservation without MAP_NORESERVE,
 * so the kernel charges them as glibc's own mmap would be charged: under the
 * default overcommit policy a request larger than memory and swap fails here
 * instead of "succeeding" and being killed later.  (mprotect would keep the
 * reservation's NORESERVE and charge nothing.) */
bool ms_os_commit(void *addr, size_t bytes) {
    int saved = errno;
    void *p = mmap(addr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    errno = saved;
    return p == addr;
}

void ms_os_decommit(void *addr, size_t bytes) {
    int saved = errno;
    if (mmap(addr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) != addr)
        ms_warn("memscope: cannot return %zu bytes at %p to reserved address space: %s", bytes, addr, ms_errstr(errno));
    errno = saved;
}

void *ms_os_alloc(size_t bytes) {
    int saved = errno;
    atomic_fetch_add(&own_busy, 1);
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) own_add((uintptr_t)p, (uintptr_t)p + OS_ROUND(bytes));
    atomic_fetch_sub(&own_busy, 1);
    errno = saved;
    return p == MAP_FAILED ? NULL : p;
}

/* ms_os_as_limit: the address-space limit (RLIMIT_AS, ulimit -v) in
 * bytes, 0 if none: reserved address space counts against it like memory. */
size_t ms_os_as_limit(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return 0;
    return rl.rlim_cur > SIZE_MAX ? SIZE_MAX : (size_t)rl.rlim_cur;
}

void ms_os_free(void *addr, size_t bytes) {
    int saved = errno;
    if (!addr) return;
    /* off the list before the unmap: once unmapped, the range may be
     * another thread's next mmap, and a listing of memscope's made there
     * first would be taken off instead (found by a helper session) */
    uintptr_t lo = (uintptr_t)addr, hi = lo + OS_ROUND(bytes);
    atomic_fetch_add(&own_busy, 1);
    own_remove(lo, hi);
    if (munmap(addr, bytes) != 0) {
        ms_warn("memscope: munmap(%p, %zu) failed: %s", addr, bytes, ms_errstr(errno));
        own_add(lo, hi);
    }
    atomic_fetch_sub(&own_busy, 1);
    errno = saved;
}

/* Huge pages.  The heap's pages are 4 KiB to the kernel, and a program
 * that reads its objects in random order over a heap of tens of MiB misses
 * the TLB on nearly every object: with the page tables' own lines evicted
 * from the caches, each miss is a walk through memory (bench/st_churn.c at
 * 100,000 live objects spends most of its time in its first read of each
 * object, with the same pages touched under mimalloc and tcmalloc).  One
 * 2 MiB page covers 512 of them.  madvise(MADV_HUGEPAGE) on the heap would
 * get them at fault time, but under THP "madvise" mode (the common default)
 * khugepaged would then also fill half-empty 2 MiB ranges with zeros
 * (max_ptes_none 511), which raises RSS: memscope instead asks for
 * MADV_COLLAPSE (Linux 6.1) on one range at a time, and only on ranges whose
 * pages are all resident already and the process's alone, so a collapse
 * never adds RSS (all_resident_own).
 *
 * What a 2 MiB page costs depends on where the kernel finds it, and on a
 * VM that can be far more than the zeroing.  This one's guest reports its
 * free 2 MiB blocks to the host (virtio-balloon free page reporting,
 * page_reporting_order 9, a pass every 2 s or so), and the host takes
 * them back: the next use of such a block is faulted in again on the
 * host's side.  Small pages mostly come from smaller free blocks, which
 * are not reported.  Timed by hand (wall, per 2 MiB, fresh anonymous
 * memory): 512 small faults 0.7-1.1 ms; a 2 MiB page at the first write
 * (MADV_HUGEPAGE) 0.1 ms when as much had been freed a moment before,
 * 4-7 ms otherwise; one write then MADV_COLLAPSE of the untouched rest
 * 0.13 / 5.8 ms; MADV_COLLAPSE of resident small pages 0.45-0.9 /
 * 2.2-3.6 ms.  Hence no huge pages for the heap as it grows: marking each
 * 2 MiB-aligned growth step MADV_HUGEPAGE took bench/small_nodes.c from
 * 0.19 s to 0.77 s (sys 0.12 to 0.70 s over 153 huge faults, with
 * compact_stall, thp_fault_fallback and thp_split_pmd all 0 in
 * /proc/vmstat: neither compaction nor splits), and to 0.105 s when run
 * right after a run that had freed as much.  Made cheap that way, the
 * suite's short workloads used 0-60% less CPU (many-threads 18%,
 * tl-remote 16%, small-nodes 60%, st-churn none) for 0.6-2.9 MiB more
 * RSS (the part of the last step not yet handed out); but a grower that
 * made fresh steps huge itself and stopped at its first slow one found
 * the first one slow in most runs made in the suite's order.  Here the
 * cost belongs on the scavenger's thread, within its CPU budget.
 *
 * "All resident" must still hold when the kernel copies: a page memscope
 * releases (MADV_DONTNEED) or moves away (mremap) between the look and the
 * collapse would come back as a resident zero page.  So releases and moves
 * hold resid_lock for reading, and a collapse holds it for writing from its
 * look (/proc/self/pagemap) to the end of the madvise; a release waits at
 * most one collapse (a few ms).  A release inside a huge page later splits it
 * into 4 KiB pages: RSS falls at once by what was released, and the kernel
 * frees the released part of the huge page when its deferred-split
 * shrinker runs (under memory pressure).  The scavenger only collapses ranges
 * whose pages are all in use (scavenger.c), so that is rare. */
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
static pthread_rwlock_t resid_lock = PTHREAD_RWLOCK_INITIALIZER;
static _Atomic bool collapse_refused; /* the kernel has no MADV_COLLAPSE (EINVAL): not asked again */

bool ms_os_release(void *addr, size_t bytes) {
    int saved = errno; /* the host program must never see our errno */
    pthread_rwlock_rdlock(&resid_lock);
    bool ok = madvise(addr, bytes, MADV_DONTNEED) == 0;
    pthread_rwlock_unlock(&resid_lock);
    errno = saved;
    return ok;
}

/* all_resident_own: whether every 4 KiB page of [addr, addr+bytes) is
 * resident and mapped by this process alone, from /proc/self/pagemap
 * (present: bit 63; exclusively mapped: bit 56, Linux 4.2).  mincore would
 * also count a page that was only ever read (the shared zero page, which
 * is no RSS: a collapse gives it memory) and a page still shared with a
 * fork child (a collapse copies it). */
static bool all_resident_own(void *addr, size_t bytes) {
    uint64_t ent[512]; /* one word per 4 KiB page of a 2 MiB range */
    size_t n = bytes / 4096;
    if (n == 0 || n > sizeof ent / sizeof ent[0]) return false;
    int fd = ms_os_open_proc_mm("pagemap"), cancel = ms_cancel_off();
    if (fd < 0) {
        ms_cancel_restore(cancel);
        return false;
    }
    ssize_t r = pread(fd, ent, n * sizeof ent[0], (off_t)((uintptr_t)addr / 4096 * sizeof ent[0]));
    close(fd);
    ms_cancel_restore(cancel);
    if (r != (ssize_t)(n * sizeof ent[0])) return false;
    const uint64_t want = (uint64_t)1 << 63 | (uint64_t)1 << 56;
    for (size_t i = 0; i < n; i++)
        if ((ent[i] & want) != want) return false;
    return true;
}

int ms_os_collapse(void *addr, size_t bytes) {
    /* 2 MiB is the huge page of 4 KiB pages (x86-64, and arm64 so built) */
    if (sysconf(_SC_PAGESIZE) != 4096) atomic_store_explicit(&collapse_refused, true, memory_order_relaxed);
    if (atomic_load_explicit(&collapse_refused, memory_order_relaxed)) return MS_COLLAPSE_REFUSED;
    int saved = errno, r = MS_COLLAPSE_DONE;
    pthread_rwlock_wrlock(&resid_lock);
    if (!all_resident_own(addr, bytes)) r = MS_COLLAPSE_NOT_RESIDENT;
    else if (madvise(addr, bytes, MADV_COLLAPSE) != 0) {
        /* EINVAL: no MADV_COLLAPSE, or THP off for the process (prctl
         * PR_SET_THP_DISABLE) or the system ("never"); anything else
         * (EAGAIN, ENOMEM: no free 2 MiB page now) may pass */
        r = errno == EINVAL || errno == ENOSYS || errno == EPERM ? MS_COLLAPSE_REFUSED : MS_COLLAPSE_FAILED;
        if (r == MS_COLLAPSE_REFUSED) atomic_store_explicit(&collapse_refused, true, memory_order_relaxed);
    }
    pthread_rwlock_unlock(&resid_lock);
    errno = saved;
    return r;
}

/* ms_os_move: mremap moves the page-table entries of [from, from+bytes) to
 * `to` (replacing whatever was mapped there) without copying a byte.  The
 * source stays mapped (MREMAP_DONTUNMAP, Linux 5.7) and reads as fresh zero
 * pages.  A plain move unmapped it, and until memscope mapped it again
 * (MAP_FIXED) the hole was free address space in the middle of the heap:
 * another thread's mmap could be given it (a thread's stack, a library's
 * cache, memscope's own metadata), and the refill then replaced that
 * mapping with heap pages (a helper session's finding).  Returns 0
 * (nothing changed: the kernel refused, the range crosses two kernel
 * mappings, or it has no MREMAP_DONTUNMAP; the caller copies) or 1 (moved). */
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif
int ms_os_move(void *from, void *to, size_t bytes) {
    static _Atomic bool refused; /* the kernel's answer to DONTUNMAP does not change */
    if (atomic_load_explicit(&refused, memory_order_relaxed)) return 0;
    int saved = errno;
    pthread_rwlock_rdlock(&resid_lock); /* the source becomes unresident: not under a collapse */
    void *r = mremap(from, bytes, bytes, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, to);
    pthread_rwlock_unlock(&resid_lock);
    if (r == MAP_FAILED && errno == EINVAL) atomic_store_explicit(&refused, true, memory_order_relaxed);
    errno = saved;
    return r == MAP_FAILED ? 0 : 1;
}

uint64_t ms_os_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t ms_os_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t ms_os_thread_cpu_ns(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return ms_os_now_ns();
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Ticks, for timing short holds of locks on paths that run per allocation
 * (the heap lock): the TSC where the CPU says it runs at a constant rate
 * in every power state (invariant, CPUID 0x80000007 EDX bit 8), one
 * instruction (12 ns here, against 30 for clock_gettime); else ns.  A
 * difference of ticks becomes ns by the rate seen since the first tick. */
static bool tsc_ok;
static uint64_t tsc0, tsc0_ns;

void ms_os_ticks_init(void) {
#if defined(__x86_64__)
    unsigned a = 0x80000000u, b, c, d;
    __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "=c"(c), "=d"(d));
    if (a < 0x80000007u) return;
    a = 0x80000007u;
    __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "=c"(c), "=d"(d));
    if (!(d & (1u << 8))) return;
    tsc0_ns = ms_os_now_ns();
    tsc0 = __builtin_ia32_rdtsc();
    tsc_ok = true;
#endif
}

uint64_t ms_os_ticks(void) {
#if defined(__x86_64__)
    if (tsc_ok) return __builtin_ia32_rdtsc();
#endif
    return ms_os_now_ns();
}

uint64_t ms_os_ticks_ns(uint64_t ticks) {
#if defined(__x86_64__)
    if (tsc_ok) {
        uint64_t dt = __builtin_ia32_rdtsc() - tsc0, dn = ms_os_now_ns() - tsc0_ns;
        return dt ? (uint64_t)((unsigned __int128)ticks * dn / dt) : 0;
    }
#endif
    return ticks;
}

uint64_t ms_os_wall_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t ms_os_wall_coarse_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ms_os_open_proc_mm: /proc's file `name` of the process's memory (maps,
 * statm), read through the calling thread: once the first thread has
 * exited (pthread_exit; a zombie until the process ends) the files under
 * /proc/self read as empty, and a leak check at exit saw no roots and
 * reported every block lost.  /proc/self for kernels before 3.17. */
int ms_os_open_proc_mm(const char *name) {
    int saved = errno, cancel = ms_cancel_off();
    char path[64];
    ms_snprintf(path, sizeof path, "/proc/thread-self/%s", name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ms_snprintf(path, sizeof path, "/proc/self/%s", name);
        fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    ms_cancel_restore(cancel);
    errno = saved;
    return fd;
}

/* read_small_fd: reads up to cap-1 bytes of a /proc file into buf (fd:
 * open already, or -1 to open path), and closes it. */
static ssize_t read_small_fd(int fd, const char *path, char *buf, size_t cap) {
    int saved = errno, cancel = ms_cancel_off();
    if (fd < 0) fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ms_cancel_restore(cancel);
        errno = saved;
        return -1;
    }
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    ms_cancel_restore(cancel);
    errno = saved;
    return (ssize_t)n;
}

static uint64_t parse_u64(const char *s, const char **end) {
    uint64_t v = 0;
    while (*s == ' ' || *s == '\t') s++;
    while (*s >= '0' && *s <= '9') v = v * 10 + (uint64_t)(*s++ - '0');
    if (end) *end = s;
    return v;
}

/* ms_os_rss: resident bytes and their file-backed part from
 * /proc/self/statm (one short read, the cheapest exact figures the kernel
 * offers) and, if max_rss is not NULL, the high-water mark (getrusage). */
bool ms_os_rss(uint64_t *rss, uint64_t *file, uint64_t *max_rss) {
    char buf[256];
    int fd = ms_os_open_proc_mm("statm");
    if (fd < 0 || read_small_fd(fd, NULL, buf, sizeof buf) <= 0) return false;
    const char *s = buf;
    uint64_t ps = (uint64_t)sysconf(_SC_PAGESIZE);
    parse_u64(s, &s);                      /* size */
    *rss = parse_u64(s, &s) * ps;          /* resident */
    *file = parse_u64(s, &s) * ps;         /* shared: file-backed and shmem resident pages */
    if (max_rss) {
        struct rusage ru; /* ru_maxrss is VmHWM, in KiB, without reading /proc/self/status */
        *max_rss = getrusage(RUSAGE_SELF, &ru) == 0 ? (uint64_t)ru.ru_maxrss * 1024 : 0;
        if (*max_rss < *rss) *max_rss = *rss; /* the two counters are read at different instants */
    }
    return true;
}

/* ms_os_thread_syscall: whether thread tid of this process is blocked in a
 * system call now, and where: /proc/self/task/TID/syscall reads "nr, six
 * arguments, sp, pc" for such a thread, "-1 sp pc" for one blocked
 * elsewhere (a page fault) and "running" for one that runs. */
bool ms_os_thread_syscall(int tid, uintptr_t *sp, uintptr_t *pc) {
    char path[64], buf[256];
    ms_snprintf(path, sizeof path, "/proc/self/task/%d/syscall", tid);
    if (read_small_fd(-1, path, buf, sizeof buf) <= 0 || buf[0] < '0' || buf[0] > '9') return false;
    uintptr_t f[9];
    int n = 0;
    for (const char *q = buf; n < 9 && *q && *q != '\n';) {
        while (*q == ' ') q++;
        if (q[0] == '0' && q[1] == 'x') q += 2;
        uintptr_t v = 0;
        for (;; q++) {
            char c = *q;
            if (c >= '0' && c <= '9') v = v << 4 | (uintptr_t)(c - '0');
            else if (c >= 'a' && c <= 'f') v = v << 4 | (uintptr_t)(c - 'a' + 10);
            else break;
        }
        f[n++] = v;
        while (*q && *q != ' ' && *q != '\n') q++;
    }
    if (n != 9) return false;
    *sp = f[7], *pc = f[8];
    return true;
}

/* ms_os_thread_switches: how many times thread tid has been switched out,
 * voluntarily or not (/proc/self/task/TID/status); UINT64_MAX if unknown.
 * A thread blocked at two looks whose count did not move in between did
 * not run in between. */
uint64_t ms_os_thread_switches(int tid) {
    char path[64], buf[4096];
    ms_snprintf(path, sizeof path, "/proc/self/task/%d/status", tid);
    if (read_small_fd(-1, path, buf, sizeof buf) <= 0) return UINT64_MAX;
    static const char vk[] = "\nvoluntary_ctxt_switches:", nk[] = "\nnonvoluntary_ctxt_switches:";
    const char *v = strstr(buf, vk), *nv = strstr(buf, nk);
    if (!v || !nv) return UINT64_MAX;
    return parse_u64(v + sizeof vk - 1, NULL) + parse_u64(nv + sizeof nk - 1, NULL);
}

/* ms_os_read_self: copies up to len bytes at addr of this process into buf
 * and returns how many it could: the copy stops at the first unmapped page
 * instead of faulting.  0 where process_vm_readv is refused. */
size_t ms_os_read_self(uintptr_t addr, void *buf, size_t len) {
    int saved = errno;
    struct iovec local = {buf, len}, remote = {(void *)addr, len};
    ssize_t n = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
    errno = saved;
    return n > 0 ? (size_t)n : 0;
}

size_t ms_os_pages_readable(uintptr_t lo, size_t page, size_t n) {
    enum { MAX = 64 };
    struct iovec remote[MAX];
    char buf[MAX];
    if (n > MAX) n = MAX;
    for (size_t i = 0; i < n; i++) remote[i] = (struct iovec){(void *)(lo + i * page), 1};
    struct iovec local = {buf, n};
    int saved = errno;
    ssize_t r = n ? process_vm_readv(getpid(), &local, 1, remote, n, 0) : 0; /* stops at the first page it cannot read */
    errno = saved;
    return r > 0 ? (size_t)r : 0;
}

uint64_t ms_os_random(void) {
    uint64_t v = 0;
    int saved = errno;
    /* the system call itself: glibc's getrandom is a cancellation point */
    if (syscall(SYS_getrandom, &v, sizeof v, GRND_NONBLOCK) != (long)sizeof v)
        v = ms_os_now_ns() * 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid();
    errno = saved;
    return v | 1;
}

/* memscope's own threads.  glibc ends a process when its last thread
 * exits, and it counts these: a program whose threads all left with
 * pthread_exit (its first one included) would live on as long as the
 * scavenger or the HTTP server did, with every signal pending for ever
 * (they block all of them).  So each of them asks ms_os_program_gone now
 * and then and returns when it is true; the finisher (below) is then the
 * last thread, and glibc ends the process on it with exit(0), as it would
 * have on the program's last thread. */
static _Atomic int own_threads;
static _Atomic bool finishing;
typedef void *(*thread_fn)(void *);

/* finisher: the thread that ends the process once the program is gone.
 * The last thread to exit runs the process's exit (atexit handlers, C++
 * destructors, stdio's flush) on its own stack and with its own signal
 * mask; memscope's threads have 64 KiB stacks and block every signal (a
 * helper session's atexit handler with 128 KiB of locals crashed on the
 * scavenger's stack).  So a thread with glibc's default stack and no
 * signal blocked is started to be the last (by ms_os_thread, below): it
 * waits until memscope's other threads have returned, then returns itself. */
static void *finisher(void *arg) {
    (void)arg;
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
    while (atomic_load(&own_threads) > 1) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return NULL; /* own_start counts it out */
}

/* Which threads are memscope's (ms_os_own_tid, ms_os_own_tp): the leak
 * checker neither stops them (they block every signal and hold no heap
 * pointer) nor lists them as threads it could not stop, and scans their
 * TLS, where glibc may hang blocks on their behalf.  A thread is listed
 * before ms_os_thread returns: when each listed itself once it ran, a
 * scavenger started by a free just before a check was taken for a program
 * thread that did not stop (INCOMPLETE in 8 of 10 exit checks of a
 * one-thread program, found by a helper). */
static _Atomic int own_tids[MS_OWN_MAX];
static _Atomic uintptr_t own_tps[MS_OWN_MAX];

int ms_os_own_tid(int i) { return atomic_load(&own_tids[i]); }
uintptr_t ms_os_own_tp(int i) { return atomic_load(&own_tps[i]); }

typedef struct own_arg_s {
    thread_fn fn;
    _Atomic int listed;
} own_arg_t;

/* ms_no_sample (internal.h, a word of ms_tls): the threads here hold it
 * for their whole life */

static void *own_start(void *arg) {
    /* before anything here allocates: pthread_getattr_np mallocs (twice,
     * 32 bytes), and a block of this thread's recorded in leak-check mode
     * is held only from its stack, which the leak checker never scans
     * (memscope's own): a check at that moment reported it lost (1 in
     * about 3,300 live checks, by hand) */
    ms_no_sample = 1;
    own_arg_t *a = arg;
    thread_fn fn = a->fn;
    int tid = (int)syscall(SYS_gettid), slot = -1;
    for (int i = 0; i < MS_OWN_MAX && slot < 0; i++) {
        int z = 0;
        if (atomic_compare_exchange_strong(&own_tids[i], &z, tid)) slot = i;
    }
    if (slot >= 0) atomic_store(&own_tps[slot], ms_thread_pointer());
    /* its stack is memscope's too, listed as its mappings are: the kernel
     * may merge it with a mapping of the program's, and the leak checker's
     * dead frames there hold the addresses of blocks found lost */
    uintptr_t stack_lo = 0, stack_hi = 0;
    pthread_attr_t at;
    if (pthread_getattr_np(pthread_self(), &at) == 0) {
        void *sa;
        size_t ss;
        if (pthread_attr_getstack(&at, &sa, &ss) == 0) stack_lo = (uintptr_t)sa, stack_hi = stack_lo + ss;
        pthread_attr_destroy(&at);
    }
    if (stack_hi) own_add(stack_lo, stack_hi);
    atomic_store(&a->listed, 1); /* a is the creator's, gone after this */
    void *r = fn(NULL);
    if (stack_hi) own_remove(stack_lo, stack_hi);
    if (slot >= 0) atomic_store(&own_tps[slot], 0), atomic_store(&own_tids[slot], 0);
    atomic_fetch_sub(&own_threads, 1);
    return r;
}

/* ms_os_fork_child: a fork child has none of them */
void ms_os_fork_child(void) {
    pthread_rwlock_init(&resid_lock, NULL); /* the parent's scavenger may have held it */
    atomic_store(&own_busy, 0); /* mappings other threads were making: theirs are gone */
    atomic_store(&own_threads, 0);
    atomic_store(&finishing, false);
    for (int i = 0; i < MS_OWN_MAX; i++) atomic_store(&own_tids[i], 0), atomic_store(&own_tps[i], 0);
}

/* program_gone: the process's first thread has exited (a zombie until the
 * process ends) and no thread is left but memscope's own.  Read without
 * opening a file: a program that closes descriptor 0 and opens /dev/null
 * expects to get 0 back, and a file opened here meanwhile would take it.
 * The link count of /proc/self/task is 2 plus the threads (the zombie first
 * one included), and /proc/self/exe reads as ENOENT once the first thread
 * has exited (its memory is gone).  Without /proc this never says so, and
 * such a process lives on (README). */
static bool program_gone(void) {
    int saved = errno;
    struct stat st;
    char link[8];
    bool gone = stat("/proc/self/task", &st) == 0 && st.st_nlink >= 2 &&
                st.st_nlink - 2 <= 1 + (nlink_t)atomic_load(&own_threads) &&
                readlink("/proc/self/exe", link, sizeof link) < 0 && errno == ENOENT;
    errno = saved;
    return gone;
}

/* ms_os_program_gone: true if the calling thread of memscope's should
 * return now, the program's threads having all exited; the first to see it
 * starts the finisher (above). */
bool ms_os_program_gone(void) {
    if (atomic_load(&finishing)) return true;
    if (!program_gone()) return false;
    if (!atomic_exchange(&finishing, true)) ms_os_thread(finisher, 0, "memscope-exit", NULL);
    return true;
}

/* ms_os_thread: one of memscope's own threads (scavenger, HTTP server),
 * detached, with every signal blocked so that the host's signals are never
 * delivered to it, and errno left as it was.  stack 0: the default size.
 * fn is called with NULL, and should return once ms_os_program_gone says
 * so (above).  Returns pthread_create's result. */
int ms_os_thread(void *(*fn)(void *), size_t stack, const char *name, pthread_t *out) {
    int saved = errno, cancel = ms_cancel_off(); /* its wait below sleeps */
    ms_held_t old;
    ms_hold(&old); /* the new thread inherits the mask */
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (stack) pthread_attr_setstacksize(&attr, stack);
    pthread_t t;
    own_arg_t a = {fn, 0};
    atomic_fetch_add(&own_threads, 1);
    int rc = pthread_create(&t, &attr, own_start, &a);
    if (rc != 0) atomic_fetch_sub(&own_threads, 1);
    pthread_attr_destroy(&attr);
    ms_release(&old);
    if (rc == 0) {
        pthread_setname_np(t, name);
        if (out) *out = t;
        /* until it is listed (and done with a): a start, once per thread */
        while (!atomic_load(&a.listed)) {
            struct timespec ts = {0, 20000};
            nanosleep(&ts, NULL);
        }
    }
    ms_cancel_restore(cancel);
    errno = saved;
    return rc;
}
