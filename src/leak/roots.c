/* roots.c: stopping the threads and copying the roots of the leak check.
 *
 * A root is memory the program can reach without going through the heap:
 *   - the writable PT_LOAD segments (data, bss, relro) of every object the
 *     dynamic loader lists (the executable, its libraries, dlopen'd ones),
 *     except libmemscope.so itself, whose statics hold only its metadata;
 *   - every thread's registers (general purpose and the vector registers in
 *     the signal frame), and its stack from the stack pointer (less the
 *     x86-64 red zone) to the top of the mapping that holds it;
 *   - every thread's static TLS and thread control block around its thread
 *     pointer (glibc puts them at the top of a thread's stack mapping; the
 *     main thread's sit in a mapping of their own), and its DTV, the array
 *     of pointers to dynamic TLS blocks: those blocks are malloc'd, so once
 *     the DTV is scanned they are reached like any heap block.
 *   - the DTV of every thread that is gone but whose stack glibc keeps
 *     for the next thread (add_cached_dtvs);
 * Mappings that memscope made (the heap, its metadata, this check's own
 * buffers) are never roots: nothing above names them, and every range is cut
 * exactly (TCB_BYTES below) because the kernel merges neighbouring anonymous
 * mappings.  memscope's own threads (scavenger, HTTP server) block signals
 * and hold no heap pointer: they are not stopped, but their TLS is scanned.
 * Memory the program mmaps itself is not a root (LeakSanitizer does not scan
 * it either) unless leaks_mmap asks for it (add_mmaps): then its memory
 * mappings are listed while the threads are stopped and read after they go
 * on, as the heap is, resident pages only.
 *
 * Stopping.  Every other thread (listed from /proc/self/task with getdents,
 * which does not allocate; ms_leak_roots_alone lists them the same way, so
 * that mark.c can tell a caller that is the program's only thread) is sent
 * a real-time signal with tgkill.  Its
 * handler copies the interrupted registers, stack pointer and thread pointer
 * into the thread's slot, counts itself in and waits on a futex until the
 * checker moves on; no ptrace, so the check works under a debugger and in
 * containers that forbid ptrace.  The list is read again until no new thread
 * shows up, so a thread created while the others stop is caught too.  While
 * they wait the checker copies every root into one mapped buffer and runs
 * the caller's held (mark.c: the mark from that copy, for a few ms in a
 * live check, to its end at exit), then lets them go: the pause lasts one
 * copy of the stacks and writable segments and what held took, and the
 * rest of the mark works on the copy while the program runs.
 *
 * The whole stop happens inside a dl_iterate_phdr callback, holding the
 * loader's lock (recursive), as LeakSanitizer does: no thread can be stopped
 * inside dlopen with the list of objects half updated, and the checker can
 * walk the list again while the threads wait.  While they are stopped the
 * checker takes no other lock and calls nothing that may: system calls,
 * ms_os_alloc (mmap), its own parsing of /proc.
 *
 * Threads that do not answer.  A thread that blocks the signal, or is
 * stopped by a debugger, would hang a naive checker.  Each missing thread
 * is looked at after 2 ms: gone (exited, or a zombie main thread) is
 * forgotten; the signal blocked (SigBlk in its status) is given up at once;
 * anything else by 100 ms, except a thread that is runnable and does not
 * block the signal (it answers once the scheduler gives it a CPU, which on a
 * loaded machine can take longer): it is looked at every 10 ms and waited
 * for up to 2 s.  For a thread given up, if it sits in a system
 * call (/proc/self/task/TID/syscall names its stack pointer), its stack is
 * still copied; its registers are not known.  The result lists it, and the
 * report says the check is incomplete: leaks referenced only from such a
 * thread's registers may be reported although they are not.  A late
 * handler, or one run when the thread unblocks the signal, sees that the
 * check is over (the generation is even) and returns at once.  "Blocks the
 * signal" must mean the program's mask: the handler itself runs with the
 * signal blocked, so a stop begins only once every thread let go by the
 * last one has left its handler (leave_wait), which lets the signal in
 * before it counts itself out.
 *
 * fork: a child starts with no check running (ms_leak_fork_child, from
 * init.c's handler).  The slots are mapped at the first check and never
 * returned, so that a late handler never touches memory that was; a
 * program that never checks does not pay their 2 MiB of address space.
 */
#include "leak.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <linux/futex.h>
#include <signal.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

/* Why these: 2 ms lets an idle machine schedule every thread once (a thread
 * still missing then is looked at, not given up, unless it blocks the
 * signal, so a busy machine only lengthens the pause); 100 ms
 * bounds the pause a thread in an odd state (stopped by a debugger, or
 * inside a long uninterruptible system call) can cause; 2 s bounds the
 * wait for a runnable thread starved of CPU, which would otherwise make
 * the result wrong rather than late. */
#define LOOK_AFTER_NS (2ull * 1000 * 1000)
#define GIVE_UP_NS (100ull * 1000 * 1000)
#define RUNNABLE_GIVE_UP_NS (2000ull * 1000 * 1000)
#define LOOK_AGAIN_NS (10ull * 1000 * 1000)
#define RED_ZONE 128
/* glibc's struct pthread on x86-64 (2304 bytes from glibc 2.26, the value
 * LeakSanitizer uses; 2368 since 2.35 added the rseq area, which holds no
 * pointer): the TCB lies in [tp, tp + TCB_BYTES), static TLS just
 * below it.  Ranges are exact on purpose: anonymous mappings with equal
 * permissions merge, so "the rest of the mapping" around a TLS block or
 * above a thread's stack may well be memscope's own metadata (the
 * profiler's map of block addresses would make every block reachable). */
#define TCB_BYTES 2304
/* Words of registers kept per thread: the whole mcontext (x86-64: 23
 * general registers and the fpregs pointer) plus 16 vector registers. */
/* the general registers, 32 words of vector registers, and the block the
 * thread is handing out while the profiler records it (ms_hook_block) */
#define REG_WORDS (sizeof(mcontext_t) / sizeof(uintptr_t) + 32 + 1)

typedef struct slot_s {
    _Atomic int tid;
    _Atomic uint32_t gen;  /* the stop generation this slot was filled for */
    uint8_t state;         /* SLOT_*, the checker's */
    uintptr_t sp, hsp, tp; /* interrupted stack pointer, the handler's frame, thread pointer */
    uintptr_t regs[REG_WORDS];
} slot_t;
enum { SLOT_SENT = 0, SLOT_GONE = 1, SLOT_GIVEN_UP = 2 };

static slot_t *slots; /* MS_LEAK_MAX_THREADS of them, from the first check on */
static _Atomic uint32_t nslots;
static _Atomic uint32_t stop_gen;  /* odd while threads must stop */
static _Atomic uint32_t arrived;   /* handlers that have saved their state */
static _Atomic uint32_t inside;    /* handlers that answered and have not let the signal in again (leave_wait) */
static int stop_sig;
static size_t tls_static_bytes = 4096;

static long futex(_Atomic uint32_t *addr, int op, uint32_t val, const struct timespec *ts) {
    return syscall(SYS_futex, (uint32_t *)addr, op, val, ts, NULL, 0);
}


/* ------------------------------------------------------------------------
 * The signal handler (runs in the stopped thread)
 * ---------------------------------------------------------------------- */

static void on_stop(int sig, siginfo_t *si, void *ucv) {
    if (si->si_code != SI_TKILL || si->si_pid != getpid()) return; /* only our tgkill */
    uint32_t g = atomic_load_explicit(&stop_gen, memory_order_acquire);
    if (!(g & 1)) return; /* late: that check is over */
    int saved = errno;
    int tid = (int)syscall(SYS_gettid);
    uint32_t n = atomic_load_explicit(&nslots, memory_order_acquire);
    slot_t *sl = NULL;
    for (uint32_t i = 0; i < n && !sl; i++)
        if (atomic_load_explicit(&slots[i].tid, memory_order_relaxed) == tid) sl = &slots[i];
    if (sl && atomic_load_explicit(&sl->gen, memory_order_relaxed) != g) {
        const ucontext_t *uc = ucv;
        const uintptr_t *mc = (const uintptr_t *)&uc->uc_mcontext;
        size_t k = 0;
        for (; k < sizeof(mcontext_t) / sizeof(uintptr_t); k++) sl->regs[k] = mc[k];
#if defined(__x86_64__)
        sl->sp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
        if (uc->uc_mcontext.fpregs) memcpy(&sl->regs[k], uc->uc_mcontext.fpregs->_xmm, 32 * sizeof(uintptr_t));
        else memset(&sl->regs[k], 0, 32 * sizeof(uintptr_t));
        sl->regs[k + 32] = (uintptr_t)ms_hook_block();
#elif defined(__aarch64__)
        sl->sp = (uintptr_t)uc->uc_mcontext.sp;
#else
        sl->sp = (uintptr_t)__builtin_frame_address(0);
#endif
        sl->hsp = (uintptr_t)__builtin_frame_address(0);
        sl->tp = ms_thread_pointer();
        atomic_fetch_add_explicit(&inside, 1, memory_order_relaxed);
        atomic_store_explicit(&sl->gen, g, memory_order_release);
        atomic_fetch_add_explicit(&arrived, 1, memory_order_release);
        futex(&arrived, FUTEX_WAKE_PRIVATE, 1, NULL);
        while (atomic_load_explicit(&stop_gen, memory_order_acquire) == g) futex(&stop_gen, FUTEX_WAIT_PRIVATE, g, NULL);
        /* the handler runs with every signal blocked (sa_mask): let the
         * stop signal in before counting out, so that a thread the next
         * stop signals never looks as if it blocked it (leave_wait) */
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, sig);
        pthread_sigmask(SIG_UNBLOCK, &set, NULL);
        if (atomic_fetch_sub_explicit(&inside, 1, memory_order_release) == 1)
            futex(&inside, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL);
    }
    errno = saved;
}

/* ------------------------------------------------------------------------
 * /proc readers (no stdio, no heap)
 * ---------------------------------------------------------------------- */

/* read_file: all of open file fd (closed here; -1: failed) into a mapped
 * buffer (*cap bytes mapped), NUL-terminated; NULL on failure. */
static char *read_file(int fd, size_t *len, size_t *cap) {
    if (fd < 0) return NULL;
    size_t c = 64 << 10, n = 0;
    char *b = ms_os_alloc(c);
    while (b) {
        if (n + 1 == c) {
            char *nb = ms_os_alloc(c * 2);
            if (nb) memcpy(nb, b, n);
            ms_os_free(b, c);
            b = nb, c *= 2;
            if (!b) break;
        }
        ssize_t r = read(fd, b + n, c - 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
    }
    close(fd);
    if (b) b[n] = 0;
    *len = n, *cap = c;
    return b;
}

static uintptr_t hex(const char **s) {
    uintptr_t v = 0;
    for (;; (*s)++) {
        char c = **s;
        if (c >= '0' && c <= '9') v = v << 4 | (uintptr_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v = v << 4 | (uintptr_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v = v << 4 | (uintptr_t)(c - 'A' + 10);
        else return v;
    }
}

/* kind: what leaks_mmap may scan.  VMA_MEM is memory (anonymous, private
 * or shared, /dev/zero, memfd, /dev/shm, huge pages), VMA_FILE a regular
 * file, whose pages hold pointers only by rare design and reading them
 * reads the file; VMA_OTHER the kernel's ([vvar], [vdso]), devices and the
 * main stack.  shared: MAP_SHARED (read only with leaks_mmap=shared). */
enum { VMA_MEM, VMA_FILE, VMA_OTHER };
typedef struct vma_s {
    uintptr_t lo, hi;
    bool readable, writable, none, shared;
    uint8_t kind;
    bool stack; /* a thread's stack, live or cached: never scanned whole */
} vma_t;
typedef struct maps_s { vma_t *v; size_t n, bytes; } maps_t;

static bool starts(const char *p, const char *with) { return strncmp(p, with, strlen(with)) == 0; }

static uint8_t vma_kind(const char *path) {
    if (*path == '\n' || *path == 0 || starts(path, "[heap]") || starts(path, "[anon:") ||
        starts(path, "[anon_shmem:") || starts(path, "/memfd:") || starts(path, "/dev/zero") ||
        starts(path, "/dev/shm/") || starts(path, "/SYSV") || starts(path, "/anon_hugepage"))
        return VMA_MEM;
    if (*path == '[' || starts(path, "/dev/")) return VMA_OTHER;
    return VMA_FILE;
}

static bool maps_read(maps_t *m) {
    size_t len, cap;
    char *t = read_file(ms_os_open_proc_mm("maps"), &len, &cap);
    if (!t) return false;
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += t[i] == '\n';
    m->bytes = (lines * sizeof(vma_t) + MS_PAGE_MASK) & ~MS_PAGE_MASK;
    m->v = ms_os_alloc(m->bytes);
    m->n = 0;
    for (const char *p = t; m->v && *p;) {
        vma_t *v = &m->v[m->n];
        v->lo = hex(&p);
        if (*p == '-') p++;
        v->hi = hex(&p);
        if (*p == ' ') p++;
        v->readable = p[0] == 'r';
        v->writable = v->readable && p[1] == 'w';
        v->none = p[0] == '-' && p[1] == '-' && p[2] == '-';
        v->shared = p[3] == 's';
        v->stack = false;
        /* offset, device, inode, then the path (if any) */
        for (int f = 0; f < 4; f++) {
            while (*p && *p != ' ' && *p != '\n') p++;
            while (*p == ' ') p++;
        }
        v->kind = vma_kind(p);
        if (v->hi > v->lo) m->n++;
        while (*p && *p != '\n') p++;
        if (*p) p++;
    }
    ms_os_free(t, cap);
    return m->v != NULL;
}

/* maps_find: the mapping holding a, or NULL (the list is sorted). */
static vma_t *maps_find(const maps_t *m, uintptr_t a) {
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (a < m->v[mid].lo) hi = mid;
        else if (a >= m->v[mid].hi) lo = mid + 1;
        else return &m->v[mid];
    }
    return NULL;
}

/* task_status: 0 alive and able to take our signal, 1 gone or a zombie,
 * 2 alive with our signal blocked, 3 runnable and able to take it.  A
 * thread running our handler has the signal blocked too (the kernel masks
 * it for the handler's duration): blocked but no longer pending is that
 * thread, preempted before it answered, and it is runnable, not blocking. */
static uint64_t status_mask(const char *t, const char *field) {
    const char *s = strstr(t, field);
    if (!s) return 0;
    s += strlen(field);
    while (*s == ' ' || *s == '\t') s++;
    return hex(&s);
}

static int task_status(int tid) {
    char path[64];
    ms_snprintf(path, sizeof path, "/proc/self/task/%d/status", tid);
    size_t len, cap;
    char *t = read_file(open(path, O_RDONLY | O_CLOEXEC), &len, &cap);
    if (!t) return 1;
    int st = 0;
    const char *s = strstr(t, "\nState:");
    if (s) {
        s += 7;
        while (*s == ' ' || *s == '\t') s++;
        if (*s == 'Z' || *s == 'X') st = 1;
        else if (*s == 'R') st = 3;
    }
    uint64_t bit = 1ull << (stop_sig - 1);
    if (st != 1 && (status_mask(t, "\nSigBlk:") & bit))
        st = (status_mask(t, "\nSigPnd:") & bit) ? 2 : 3;
    ms_os_free(t, cap);
    return st;
}

/* task_syscall_sp: the stack pointer of a thread blocked in a system call, or 0. */
static uintptr_t task_syscall_sp(int tid) {
    uintptr_t sp, pc;
    return ms_os_thread_syscall(tid, &sp, &pc) ? sp : 0;
}

/* list_tasks: calls add(tid) for each thread of the process; returns how
 * many were listed. */
static int list_tasks(void (*add)(int tid, void *arg), void *arg) {
    int fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return 0;
    char buf[4096] __attribute__((aligned(8)));
    int count = 0;
    for (;;) {
        long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
        if (n <= 0) break;
        for (long off = 0; off < n;) {
            const char *d = buf + off;
            unsigned short reclen;
            memcpy(&reclen, d + 16, sizeof reclen);
            const char *name = d + 19;
            if (name[0] >= '0' && name[0] <= '9') {
                int tid = 0;
                for (const char *c = name; *c >= '0' && *c <= '9'; c++) tid = tid * 10 + (*c - '0');
                add(tid, arg), count++;
            }
            off += reclen;
        }
    }
    close(fd);
    return count;
}

/* count_other: a thread that is neither the caller nor one of memscope's */
static void count_other(int tid, void *arg) {
    int *n = arg;
    if (tid == n[0]) return;
    for (int i = 0; i < MS_OWN_MAX; i++)
        if (ms_os_own_tid(i) == tid) return;
    n[1]++;
}

bool ms_leak_roots_alone(void) {
    int n[2] = {(int)syscall(SYS_gettid), 0};
    return list_tasks(count_other, n) > 0 && n[1] == 0;
}

/* ------------------------------------------------------------------------
 * Capture
 * ---------------------------------------------------------------------- */

typedef struct range_s { uintptr_t lo, hi; uint8_t what; } range_t;
enum { R_SEG, R_STACK, R_TLS, R_REGS, R_CUT }; /* R_CUT: not a root, only kept out of leaks_mmap's scan */

typedef struct capture_s {
    ms_leak_roots_t *r;
    const ms_leak_self_t *caller; /* the calling thread's program frames; NULL: none */
    int self, pid;
    uint32_t gen;
    bool ok, done, new_tids, too_many;
    range_t *ranges;
    size_t nranges, cap_ranges, ranges_bytes;
    maps_t maps;
    uintptr_t my_lo, my_hi; /* an address inside libmemscope's own data */
    uintptr_t loader_base;  /* the dynamic loader's load address (AT_BASE), 0 if none */
    bool (*held)(ms_leak_roots_t *r, void *arg); /* run before the threads go on; NULL: none */
    void *held_arg;
    uintptr_t *pre;         /* a buffer for the copy, mapped and faulted in before the stop */
    size_t pre_bytes;
} capture_t;

static void add_range(capture_t *c, uintptr_t lo, uintptr_t hi, uint8_t what) {
    lo &= ~(uintptr_t)(sizeof(uintptr_t) - 1);
    if (hi <= lo) return;
    if (c->nranges == c->cap_ranges) {
        size_t nb = c->ranges_bytes ? c->ranges_bytes * 2 : 64 << 10;
        range_t *n = ms_os_alloc(nb);
        if (!n) {
            c->ok = false;
            return;
        }
        if (c->nranges) memcpy(n, c->ranges, c->nranges * sizeof *n);
        ms_os_free(c->ranges, c->ranges_bytes);
        c->ranges = n, c->ranges_bytes = nb, c->cap_ranges = nb / sizeof *n;
    }
    c->ranges[c->nranges++] = (range_t){lo, hi, what};
}

/* add_in_mapping: [lo, hi) clamped to the readable mapping that holds
 * `at` (lo, hi and at are usually the stack pointer or thread pointer). */
static void add_in_mapping(capture_t *c, uintptr_t at, uintptr_t lo, uintptr_t hi, uint8_t what) {
    const vma_t *v = maps_find(&c->maps, at);
    if (!v || !v->readable) return;
    if (lo < v->lo || lo > at) lo = v->lo;
    if (hi > v->hi || hi < at) hi = v->hi;
    add_range(c, lo, hi, what);
}

/* add_overlapping: the readable parts of [lo, hi), across mappings (a
 * segment's file-backed data and its anonymous bss are two mappings). */
static void add_overlapping(capture_t *c, uintptr_t lo, uintptr_t hi, uint8_t what) {
    for (size_t i = 0; i < c->maps.n; i++) {
        const vma_t *v = &c->maps.v[i];
        if (v->hi <= lo || v->lo >= hi || !v->readable) continue;
        add_range(c, v->lo > lo ? v->lo : lo, v->hi < hi ? v->hi : hi, what);
    }
}

static void copy_range(uintptr_t *dst, uintptr_t lo, size_t n);
static void add_mmaps(capture_t *c);

static void add_tls(capture_t *c, uintptr_t tp) {
    if (!tp) return;
    /* _dl_get_tls_static_info's size counts the TCB too */
    uintptr_t below = tls_static_bytes > TCB_BYTES ? tls_static_bytes - TCB_BYTES : tls_static_bytes;
#if defined(__x86_64__)
    add_overlapping(c, tp > below ? tp - below : 0, tp + TCB_BYTES, R_TLS);
#else
    add_overlapping(c, tp > TCB_BYTES ? tp - TCB_BYTES : 0, tp + tls_static_bytes, R_TLS);
#endif
    /* the DTV: glibc keeps its length in the entry before the one the TCB points at */
    uintptr_t dtv = 0, len = 0; /* read with copy_range: a memscope thread's TLS may go meanwhile */
#if defined(__x86_64__)
    copy_range(&dtv, tp + sizeof(uintptr_t), sizeof dtv);
#else
    copy_range(&dtv, tp, sizeof dtv);
#endif
    const vma_t *v = dtv > 16 ? maps_find(&c->maps, dtv - 16) : NULL;
    if (!v || !v->readable) return;
    copy_range(&len, dtv - 16, sizeof len);
    if (len > 65536) len = 65536;
    add_overlapping(c, dtv - 16, dtv + 16 * (len + 1), R_TLS);
}

/* copy_range: n bytes at lo into dst.  A range can vanish while it is
 * copied: the stack of a thread that did not stop (it exits, and glibc
 * trims its cache of thread stacks), a DTV in that cache.  memcpy from
 * such a stack crashed the program (SIGSEGV in 5 of 34 checks of 200
 * threads while detached ones came and went, found by a helper), so every
 * range goes through process_vm_readv, which stops at an unmapped page;
 * what could not be read is zero (no words, no roots).  Where that call
 * is refused (seccomp), memcpy, as before: safe for the stopped threads'
 * ranges and the segments (copied under the loader's lock), but a stack
 * that vanishes meanwhile can still fault there. */
static int read_self_ok = -1;
static void copy_range(uintptr_t *dst, uintptr_t lo, size_t n) {
    if (read_self_ok < 0) {
        uintptr_t probe = 0, one = 1;
        read_self_ok = ms_os_read_self((uintptr_t)&one, &probe, sizeof probe) == sizeof probe && probe == 1;
    }
    if (!read_self_ok) {
        memcpy(dst, (const void *)lo, n);
        return;
    }
    size_t got = 0;
    while (got < n) {
        size_t k = ms_os_read_self(lo + got, (char *)dst + got, n - got);
        if (k == 0) break;
        got += k;
    }
    if (got < n) memset((char *)dst + got, 0, n - got);
}

/* add_cached_dtvs: the DTVs of threads that are gone but whose stacks glibc
 * keeps for reuse (mark.c, mark_loader_blocks, says why they matter).  A
 * glibc thread stack is a mapping above a guard page with the thread's TCB
 * at its top (the mapping's end less the TCB, rounded down to the static
 * TLS alignment); a TCB starts with two pointers to itself (tcb and self, the
 * first and third words).  Only the DTV word is taken, not the dead
 * thread's TLS: a block a thread kept only in a __thread variable is lost
 * when the thread ends, as LeakSanitizer also reports it.  Such a mapping
 * may go while it is read (a thread that did not stop exits, glibc trims
 * its cache): its top 8 KiB are copied at once (copy_range), since direct
 * reads crashed a check of 200 threads while detached ones came and went
 * (1 run in 102, by hand). */
static void add_cached_dtvs(capture_t *c) {
#if defined(__x86_64__)
    uintptr_t top[8192 / sizeof(uintptr_t)];
    for (size_t i = 1; i < c->maps.n; i++) {
        vma_t *v = &c->maps.v[i];
        const vma_t *g = &c->maps.v[i - 1];
        if (!v->writable || !g->none || g->hi != v->lo || v->hi - v->lo < 4 * TCB_BYTES) continue;
        uintptr_t base = v->hi - sizeof top;
        copy_range(top, base, sizeof top);
        /* struct pthread's size varies with glibc's version (2304 bytes
         * in 2.26, 2368 in 2.36): the TCB is looked for, 64-byte aligned,
         * from 2 KiB to 8 KiB below the top */
        for (uintptr_t q = (v->hi - 2048) & ~(uintptr_t)63; q >= base; q -= 64) {
            const uintptr_t *w = &top[(q - base) / sizeof(uintptr_t)];
            uintptr_t s;
            size_t sz;
            if (w[0] != q || w[2] != q || ms_block_find(q, &s, &sz)) continue;
            add_range(c, q + sizeof(uintptr_t), q + 2 * sizeof(uintptr_t), R_TLS);
            v->stack = true; /* a thread's, live or kept for reuse: its dead frames are no root */
            break;
        }
    }
#else
    (void)c;
#endif
}

/* add_stack: from lo (at or below the stack pointer sp) to the top of the
 * stack: the end of its mapping, or for a glibc thread whose TCB sits in
 * the same mapping above sp, the end of the TCB (see TCB_BYTES). */
static void add_stack(capture_t *c, uintptr_t sp, uintptr_t lo, uintptr_t tp) {
    vma_t *v = maps_find(&c->maps, sp);
    if (!v || !v->readable) return;
    uintptr_t hi = v->hi;
    if (tp > sp && tp < v->hi && tp + TCB_BYTES < hi) hi = tp + TCB_BYTES;
    /* for leaks_mmap, the mapping is a stack up to the stack's top only:
     * the kernel merges a stack given by the program (pthread_attr_setstack)
     * with the program's mapping above it, whose blocks were then lost (a
     * helper session's arena) */
    if (hi == v->hi) v->stack = true;
    else if (ms_opt.leaks_mmap) add_range(c, v->lo, (hi + 4095) & ~(uintptr_t)4095, R_CUT);
    add_in_mapping(c, sp, lo, hi, R_STACK);
}

static void add_tid(int tid, void *arg) {
    capture_t *c = arg;
    if (tid == c->self) return;
    for (int i = 0; i < MS_OWN_MAX; i++)
        if (ms_os_own_tid(i) == tid) return;
    uint32_t n = atomic_load_explicit(&nslots, memory_order_relaxed);
    for (uint32_t i = 0; i < n; i++)
        if (atomic_load_explicit(&slots[i].tid, memory_order_relaxed) == tid) return;
    if (!slots || n == MS_LEAK_MAX_THREADS) { /* no slots: memory refused them */
        c->too_many = true;
        return;
    }
    slot_t *sl = &slots[n];
    atomic_store_explicit(&sl->gen, 0, memory_order_relaxed);
    atomic_store_explicit(&sl->tid, tid, memory_order_relaxed);
    sl->state = SLOT_SENT;
    atomic_store_explicit(&nslots, n + 1, memory_order_release);
    if (syscall(SYS_tgkill, c->pid, tid, stop_sig) != 0) sl->state = SLOT_GONE;
    c->new_tids = true;
}

/* wait_stopped: until every signalled thread answered, is gone, or was
 * given up (see the top of the file). */
static void wait_stopped(capture_t *c, uint64_t t0) {
    bool looked = false;
    uint64_t last_look = 0;
    for (;;) {
        uint32_t n = atomic_load(&nslots), want = 0;
        for (uint32_t i = 0; i < n; i++)
            if (slots[i].state == SLOT_SENT) want++;
        uint32_t have = atomic_load_explicit(&arrived, memory_order_acquire);
        if (have >= want) return;
        uint64_t now = ms_os_now_ns();
        if (now - t0 > GIVE_UP_NS && now - last_look > LOOK_AGAIN_NS) {
            /* a runnable thread that does not block the signal answers
             * once it gets a CPU: on a loaded machine that can take longer
             * than GIVE_UP_NS, and giving it up would report what its
             * registers hold as lost */
            last_look = now;
            bool waiting = false;
            for (uint32_t i = 0; i < n; i++) {
                if (slots[i].state != SLOT_SENT || atomic_load(&slots[i].gen) == c->gen) continue;
                int st = task_status(slots[i].tid);
                if (st == 1) slots[i].state = SLOT_GONE;
                else if (st == 3 && now - t0 < RUNNABLE_GIVE_UP_NS) waiting = true;
                else slots[i].state = SLOT_GIVEN_UP;
            }
            if (!waiting) return;
            continue;
        }
        if (!looked && now - t0 > LOOK_AFTER_NS) {
            looked = true;
            for (uint32_t i = 0; i < n; i++) {
                if (slots[i].state != SLOT_SENT || atomic_load(&slots[i].gen) == c->gen) continue;
                int st = task_status(slots[i].tid);
                if (st == 1) slots[i].state = SLOT_GONE;
                else if (st == 2) slots[i].state = SLOT_GIVEN_UP;
            }
            continue;
        }
        struct timespec ts = {0, 1000 * 1000};
        futex(&arrived, FUTEX_WAIT_PRIVATE, have, &ts);
    }
}

static int seg_cb(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)size;
    capture_t *c = arg;
    bool mine = false, is_exe = info->dlpi_name == NULL || info->dlpi_name[0] == 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && c->my_lo >= lo && c->my_lo < lo + ph->p_memsz) mine = true;
    }
    if (ms_opt.leaks_mmap) /* an object's pages are its segments' or nobody's: never the program's mmap */
        for (int i = 0; i < info->dlpi_phnum; i++) {
            const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
            uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
            if (ph->p_type == PT_LOAD) add_range(c, lo & ~(uintptr_t)4095, (lo + ph->p_memsz + 4095) & ~(uintptr_t)4095, R_CUT);
        }
    /* libmemscope.so's own statics are metadata; linked into the executable
     * (libmemscope.a) they cannot be told apart, and are scanned */
    if (mine && !is_exe) return 0;
    bool loader = info->dlpi_addr == c->loader_base && c->loader_base != 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (loader && ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
            uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
            if (!c->r->loader_hi || lo < c->r->loader_lo) c->r->loader_lo = lo;
            if (lo + ph->p_memsz > c->r->loader_hi) c->r->loader_hi = lo + ph->p_memsz;
        }
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_W)) continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        add_overlapping(c, lo, lo + ph->p_memsz, R_SEG);
        c->r->nsegments++;
    }
    return 0;
}

/* ms_leak_spill_regs: the caller's callee-saved registers, as they are. */
__attribute__((noinline)) void ms_leak_spill_regs(uintptr_t regs[8]) {
    for (int i = 0; i < 8; i++) regs[i] = 0;
#if defined(__x86_64__)
    __asm__ volatile("mov %%rbx, 0(%0)\n\tmov %%rbp, 8(%0)\n\tmov %%r12, 16(%0)\n\t"
                     "mov %%r13, 24(%0)\n\tmov %%r14, 32(%0)\n\tmov %%r15, 40(%0)"
                     :
                     : "D"(regs) /* the argument register: no callee-saved one is touched first */
                     : "memory");
#elif defined(__aarch64__)
    __asm__ volatile("stp x19, x20, [%0]\n\tstp x21, x22, [%0, #16]\n\t"
                     "stp x23, x24, [%0, #32]\n\tstp x25, x26, [%0, #48]"
                     :
                     : "r"(regs)
                     : "memory");
#endif
}

/* spill_and_collect: the calling thread (its program frames and registers
 * only, see ms_leak_self_t), the stopped threads, the segments. */
static __attribute__((noinline)) void spill_and_collect(capture_t *c) {
    /* A caller without program frames (NULL: memscope's HTTP server) has
     * none of its stack or registers scanned: they hold only memscope's
     * own values, and among them, where the check's frames had been, the
     * addresses of the blocks an earlier look found lost (a second look
     * found the cases' xor-hidden block reachable through one). */
    const ms_leak_self_t *self = c->caller;
    if (self) {
        add_range(c, (uintptr_t)self->regs, (uintptr_t)(self->regs + 8), R_REGS);
        add_stack(c, self->lo, self->lo, ms_thread_pointer());
    }
    add_tls(c, ms_thread_pointer());
    c->r->nthreads = 1, c->r->nstopped = 1;
    uint32_t n = atomic_load(&nslots);
    for (uint32_t i = 0; i < n; i++) {
        slot_t *sl = &slots[i];
        if (sl->state == SLOT_GONE) continue;
        c->r->nthreads++;
        if (atomic_load_explicit(&sl->gen, memory_order_acquire) == c->gen) {
            c->r->nstopped++;
            uintptr_t lo = sl->sp - RED_ZONE;
            const vma_t *v = maps_find(&c->maps, sl->sp);
            if (v && sl->hsp >= v->lo && sl->hsp < lo) lo = sl->hsp; /* the signal frame: vector registers */
            add_stack(c, sl->sp, lo, sl->tp);
            add_range(c, (uintptr_t)sl->regs, (uintptr_t)(sl->regs + REG_WORDS), R_REGS);
            add_tls(c, sl->tp);
        } else {
            if (c->r->nunstopped < MS_LEAK_LIST_TIDS) c->r->unstopped_tids[c->r->nunstopped] = sl->tid;
            c->r->nunstopped++;
            uintptr_t sp = task_syscall_sp(sl->tid);
            if (sp) {
                add_stack(c, sp, sp - RED_ZONE, 0); /* thread pointer unknown: to the mapping's end */
                c->r->nstack_only++;
            }
        }
    }
    if (c->too_many) c->r->nunstopped++;
    /* memscope's own threads are not stopped, but glibc may hang blocks on
     * their TLS on their behalf (a DTV grown by dlopen, dlerror's buffer) */
    for (int i = 0; i < MS_OWN_MAX; i++) {
        uintptr_t tp = ms_os_own_tp(i);
        if (ms_os_own_tid(i) && tp && tp != ms_thread_pointer()) add_tls(c, tp);
    }
    add_cached_dtvs(c);
    dl_iterate_phdr(seg_cb, c);
    if (ms_opt.leaks_mmap) add_mmaps(c);
}

/* add_mmaps (leaks_mmap): the program's own memory mappings, listed for the
 * mark to read with the program running (ms_leak_roots_scan_mmaps, below):
 * every writable VMA_MEM mapping that is no thread's stack, less
 * memscope's own ranges (os.c lists them) and the segments copied above.
 * Nothing is listed if memscope's ranges cannot all be known: scanning one
 * of them (the profiler's table of block addresses) would hide every leak. */
static void sort_pairs(uintptr_t (*a)[2], size_t n) {
    for (size_t gap = n / 2; gap > 0; gap /= 2) /* shell sort: no libc (qsort may malloc) */
        for (size_t i = gap; i < n; i++)
            for (size_t j = i; j >= gap && a[j - gap][0] > a[j][0]; j -= gap) {
                uintptr_t t0 = a[j][0], t1 = a[j][1];
                a[j][0] = a[j - gap][0], a[j][1] = a[j - gap][1];
                a[j - gap][0] = t0, a[j - gap][1] = t1;
            }
}

/* memscope's own ranges a check reads at once: above os.c's table (8192) */
#define OWN_CAP 16384
static void add_mmaps(capture_t *c) {
    ms_leak_roots_t *r = c->r;
    size_t cap = OWN_CAP + c->nranges;
    size_t bytes = (cap * sizeof(uintptr_t[2]) + MS_PAGE_MASK) & ~MS_PAGE_MASK;
    uintptr_t(*cut)[2] = ms_os_alloc(bytes);
    if (!cut) {
        c->ok = false;
        return;
    }
    bool complete;
    size_t n = ms_os_own_ranges(cut, OWN_CAP, false, &complete); /* the threads are stopped: no waiting */
    if (!complete) {
        r->mmap_unsure = true;
        ms_os_free(cut, bytes);
        return;
    }
    for (size_t i = 0; i < c->nranges; i++)
        if (c->ranges[i].what == R_SEG || c->ranges[i].what == R_CUT) cut[n][0] = c->ranges[i].lo, cut[n][1] = c->ranges[i].hi, n++;
    sort_pairs(cut, n);
    size_t m = 0; /* merged: disjoint, so their ends rise too */
    for (size_t i = 0; i < n; i++) {
        if (m && cut[i][0] <= cut[m - 1][1]) {
            if (cut[i][1] > cut[m - 1][1]) cut[m - 1][1] = cut[i][1];
        } else {
            cut[m][0] = cut[i][0], cut[m][1] = cut[i][1], m++;
        }
    }
    r->mmaps_map = ((c->maps.n + m + 1) * sizeof(uintptr_t[2]) + MS_PAGE_MASK) & ~MS_PAGE_MASK;
    r->mmaps = ms_os_alloc(r->mmaps_map);
    if (!r->mmaps) {
        r->mmaps_map = 0;
        c->ok = false;
    }
    for (size_t i = 0, j = 0; r->mmaps && i < c->maps.n; i++) {
        const vma_t *v = &c->maps.v[i];
        while (j < m && cut[j][1] <= v->lo) j++;
        if (!v->writable || v->kind != VMA_MEM || v->stack || (v->shared && ms_opt.leaks_mmap != LEAKS_MMAP_SHARED))
            continue;
        uintptr_t a = v->lo;
        for (size_t k = j; k < m && cut[k][0] < v->hi && a < v->hi; k++) {
            if (cut[k][0] > a) r->mmaps[r->nmmaps][0] = a, r->mmaps[r->nmmaps][1] = cut[k][0], r->nmmaps++;
            if (cut[k][1] > a) a = cut[k][1];
        }
        if (a < v->hi) r->mmaps[r->nmmaps][0] = a, r->mmaps[r->nmmaps][1] = v->hi, r->nmmaps++;
    }
    ms_os_free(cut, bytes);
}

/* ms_leak_roots_scan_mmaps: the ranges add_mmaps listed, read now: the
 * resident pages only (mincore), since a page never touched reads as
 * zero, and reading it would make it resident: a program's 64 GiB
 * reservation of read-write memory would become 64 GiB of zero pages.
 * One mincore call covers 256 MiB (MMAP_SPAN): at 256 KiB a call, a
 * terabyte of reserved address space took seconds.  A swapped-out page is
 * not read either.  The program runs meanwhile, and may unmap a listed
 * range; memscope may then map its own memory there (a table growing in
 * another thread): after each read, whatever memscope holds now of what
 * was read is dropped from it, memscope's mappings under way settled
 * first (a leak check found blocks reachable through the profiler's table
 * of block addresses, grown into a range the program had just unmapped;
 * a helper session's race, 1 check in 2). */
#define MMAP_CHUNK ((size_t)256 << 10)
#define MMAP_SPAN ((size_t)256 << 20)
void ms_leak_roots_scan_mmaps(ms_leak_roots_t *r, void (*fn)(const uintptr_t *w, size_t n, void *arg), void *arg) {
    if (!r->nmmaps || !r->mmaps) return;
    size_t vec_bytes = MMAP_SPAN / 4096, own_bytes = OWN_CAP * sizeof(uintptr_t[2]);
    uintptr_t *buf = ms_os_alloc(MMAP_CHUNK);
    unsigned char *vec = ms_os_alloc(vec_bytes);
    uintptr_t(*own)[2] = ms_os_alloc(own_bytes);
    for (size_t i = 0; buf && vec && own && i < r->nmmaps; i++) {
        for (uintptr_t a = r->mmaps[i][0]; a < r->mmaps[i][1];) {
            size_t len = r->mmaps[i][1] - a < MMAP_SPAN ? r->mmaps[i][1] - a : MMAP_SPAN, pages = len / 4096;
            int saved = errno;
            bool ok = mincore((void *)a, len, vec) == 0; /* unmapped meanwhile: nothing to read */
            errno = saved;
            for (size_t p = 0; ok && p < pages;) {
                if (!(vec[p] & 1)) {
                    p++;
                    continue;
                }
                size_t q = p;
                while (q < pages && q - p < MMAP_CHUNK / 4096 && (vec[q] & 1)) q++;
                uintptr_t lo = a + p * 4096;
                size_t got = ms_os_read_self(lo, buf, (q - p) * 4096);
                bool complete;
                size_t nown = ms_os_own_ranges(own, OWN_CAP, true, &complete);
                if (!complete) {
                    r->mmap_unsure = true;
                    got = 0;
                }
                for (size_t k = 0; got && k < nown; k++) {
                    uintptr_t x = own[k][0] > lo ? own[k][0] : lo, y = own[k][1] < lo + got ? own[k][1] : lo + got;
                    if (x < y) memset((char *)buf + (x - lo), 0, y - x);
                }
                r->mmap_bytes += got;
                if (got) fn(buf, got / sizeof(uintptr_t), arg);
                p = q;
            }
            a += len;
        }
    }
    if (!buf || !vec || !own) r->mmap_unsure = true;
    ms_os_free(buf, MMAP_CHUNK);
    ms_os_free(vec, vec_bytes);
    ms_os_free(own, own_bytes);
}

/* The copy's buffer.  Mapped in the stop, its page faults were two thirds
 * of the copy (1.1 of 1.6 ms for CPython's 1.9 MiB of roots, by hand), and
 * the stop is the program's pause; so a buffer the size of the last copy,
 * and a quarter more, is mapped and faulted in before the threads stop,
 * and the copy takes it if it fits (the roots of one program change little
 * from one stop to the next: a check stops up to seven times). */
static _Atomic size_t last_copy_bytes;

static void pre_map(capture_t *c) {
    size_t last = atomic_load_explicit(&last_copy_bytes, memory_order_relaxed);
    if (!last) return;
    size_t nb = (last + last / 4 + MS_PAGE_MASK) & ~MS_PAGE_MASK;
    if (!(c->pre = ms_os_alloc(nb))) return;
    c->pre_bytes = nb;
    for (size_t i = 0; i < nb; i += 4096) ((volatile char *)c->pre)[i] = 0;
}

/* copy_ranges: every range into r->words. */
static void copy_ranges(capture_t *c) {
    size_t words = 0;
    for (size_t i = 0; i < c->nranges; i++)
        if (c->ranges[i].what != R_CUT) words += (c->ranges[i].hi - c->ranges[i].lo) / sizeof(uintptr_t);
    ms_leak_roots_t *r = c->r;
    r->map_bytes = (words * sizeof(uintptr_t) + MS_PAGE_SIZE) & ~MS_PAGE_MASK;
    if (c->pre && r->map_bytes <= c->pre_bytes) {
        r->words = c->pre, r->map_bytes = c->pre_bytes;
        c->pre = NULL;
    } else {
        r->words = ms_os_alloc(r->map_bytes);
    }
    if (!r->words) {
        c->ok = false;
        return;
    }
    for (size_t i = 0; i < c->nranges; i++) {
        const range_t *g = &c->ranges[i];
        if (g->what == R_CUT) continue;
        size_t n = (g->hi - g->lo) / sizeof(uintptr_t);
        copy_range(r->words + r->nwords, g->lo, n * sizeof(uintptr_t));
        r->nwords += n;
        uint64_t b = n * sizeof(uintptr_t);
        if (g->what == R_SEG) r->seg_bytes += b;
        else if (g->what == R_STACK) r->stack_bytes += b;
        else if (g->what == R_TLS) r->tls_bytes += b;
        else r->reg_bytes += b;
    }
}

/* leave_wait: until every thread stopped by the last stop has left its
 * handler, or GIVE_UP_NS.  The handler runs with the stop signal blocked,
 * so a thread woken at the end of one stop but not yet scheduled to leave
 * its handler (a loaded machine, live checks one after the other) had it
 * blocked and pending when the next stop looked at it after
 * LOOK_AFTER_NS, was given up as a thread that blocks the signal, and its
 * registers went unscanned: tests/leak/shuffle.c's live checks counted
 * the block a mover held in a register lost, with the report INCOMPLETE,
 * in about one check in 400 (by hand).  A thread let go is runnable, so
 * it leaves as soon as it gets a CPU; one that never does (stopped by a
 * debugger in the handler) costs each check GIVE_UP_NS, and is then given
 * up as before. */
static void leave_wait(void) {
    uint64_t t0 = ms_os_now_ns();
    for (uint32_t v; (v = atomic_load_explicit(&inside, memory_order_acquire)) != 0;) {
        if (ms_os_now_ns() - t0 > GIVE_UP_NS) return;
        struct timespec ts = {0, 1000 * 1000};
        futex(&inside, FUTEX_WAIT_PRIVATE, v, &ts);
    }
}

static void stop_and_copy(capture_t *c) {
    uint64_t t0 = ms_os_now_ns();
    if (!slots) slots = ms_meta_sparse(MS_LEAK_MAX_THREADS * sizeof(slot_t));
    c->gen = atomic_load(&stop_gen) + 1; /* odd */
    atomic_store(&arrived, 0);
    atomic_store(&nslots, 0);
    atomic_store_explicit(&stop_gen, c->gen, memory_order_release);
    for (int pass = 0; pass < 16; pass++) {
        c->new_tids = false;
        list_tasks(add_tid, c);
        wait_stopped(c, t0);
        if (!c->new_tids) break;
    }
    if (maps_read(&c->maps)) {
        spill_and_collect(c);
        if (c->ok) copy_ranges(c);
        if (c->ok && c->held) {
            uint64_t h0 = ms_os_now_ns(), c0 = ms_os_thread_cpu_ns();
            c->r->held = c->held(c->r, c->held_arg);
            c->r->held_max_ns = c->r->held_ns = ms_os_now_ns() - h0;
            c->r->held_max_cpu_ns = ms_os_thread_cpu_ns() - c0;
        }
    } else {
        c->ok = false;
    }
    atomic_store_explicit(&stop_gen, c->gen + 1, memory_order_release);
    futex(&stop_gen, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL);
    c->r->pause_ns = c->r->pause_max_ns = ms_os_now_ns() - t0;
    c->r->nstops = 1;
}

static int stop_cb(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)info, (void)size;
    capture_t *c = arg;
    if (!c->done) {
        c->done = true;
        stop_and_copy(c);
    }
    return 1;
}

/* pick_signal: the signal that stops the threads: the one used last if
 * its handler is still ours, else the highest real-time signal the program
 * leaves at its default (SIGRTMAX-1 first), which gets our handler.  A
 * signal the program handles or ignores is never taken from it (its
 * handler was once replaced for good by the first check).  false if the
 * program has a use for every one.  Called with the check's lock held. */
static bool no_signal; /* the last pick found none */

const char *ms_leak_why(void) {
    return no_signal ? "no signal can stop the program's threads (it handles or ignores every real-time signal)"
                     : "out of memory";
}

static bool pick_signal(void) {
    struct sigaction cur;
    no_signal = false;
    if (stop_sig && sigaction(stop_sig, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_stop)
        return true;
    for (int sig = SIGRTMAX - 1; sig >= SIGRTMIN; sig--) {
        if (sigaction(sig, NULL, &cur) != 0 || (cur.sa_flags & SA_SIGINFO) || cur.sa_handler != SIG_DFL) continue;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_stop;
        sa.sa_flags = SA_SIGINFO | SA_RESTART;
        sigfillset(&sa.sa_mask);
        if (sigaction(sig, &sa, NULL) != 0) continue;
        stop_sig = sig;
        return true;
    }
    no_signal = true; /* the caller's message says so */
    return false;
}

static void setup_once(void) {
    /* glibc's static TLS size (GLIBC_PRIVATE, as LeakSanitizer uses it) */
    void (*info)(size_t *, size_t *) = (void (*)(size_t *, size_t *))dlsym(RTLD_DEFAULT, "_dl_get_tls_static_info");
    if (info) {
        size_t size = 0, align = 0;
        info(&size, &align);
        if (size > 0 && size < ((size_t)64 << 20)) tls_static_bytes = size;
    }
}

static pthread_once_t once = PTHREAD_ONCE_INIT;

bool ms_leak_roots_capture(ms_leak_roots_t *r, const ms_leak_self_t *self, bool (*held)(ms_leak_roots_t *r, void *arg),
                           void *held_arg) {
    pthread_once(&once, setup_once);
    memset(r, 0, sizeof *r);
    if (!pick_signal()) return false;
    capture_t c = {.r = r, .caller = self, .ok = true, .self = (int)syscall(SYS_gettid), .pid = getpid(),
                   .held = held, .held_arg = held_arg};
    c.my_lo = (uintptr_t)&stop_gen;
    c.loader_base = (uintptr_t)getauxval(AT_BASE);
    pre_map(&c);
    leave_wait();
    dl_iterate_phdr(stop_cb, &c);
    ms_os_free(c.pre, c.pre_bytes);
    ms_os_free(c.maps.v, c.maps.bytes);
    ms_os_free(c.ranges, c.ranges_bytes);
    if (c.ok) atomic_store_explicit(&last_copy_bytes, (size_t)r->nwords * sizeof(uintptr_t), memory_order_relaxed);
    if (!c.ok) ms_leak_roots_free(r);
    return c.ok;
}

void ms_leak_roots_free(ms_leak_roots_t *r) {
    ms_os_free(r->words, r->map_bytes);
    r->words = NULL, r->nwords = 0, r->map_bytes = 0;
    ms_os_free(r->mmaps, r->mmaps_map);
    r->mmaps = NULL, r->mmaps_map = 0; /* nmmaps stays: the report counts them */
}

void ms_leak_fork_child(void) {
    ms_leak_mark_fork_child();
    atomic_store(&inside, 0); /* the threads still leaving a handler are not the child's */
    uint32_t g = atomic_load(&stop_gen);
    if (g & 1) atomic_store(&stop_gen, g + 1);
}
