/* stack.c: stack capture for the heap profiler.
 *
 * Distribution binaries are built without frame pointers, so walking rbp
 * would give short or wrong stacks; the unwinder has to read the DWARF call
 * frame information (.eh_frame) that every x86-64 object carries.  Two
 * well-kept unwinders do that, and they were measured here on the same
 * program (-O2 -fomit-frame-pointer, 100,000 captures each):
 *
 *     depth   libgcc _Unwind_Backtrace   libunwind unw_backtrace
 *      16        14,500 ns                   146 ns
 *      56        59,900 ns                   594 ns
 *
 * libunwind wins by two orders of magnitude because unw_backtrace keeps a
 * per-thread cache of each return address's frame recipe and, once warm,
 * unwinds without parsing any DWARF; libgcc parses the FDE afresh on each
 * frame.  memscope goes one step further for the frames that are plain
 * (unwind.c: 305 instructions a capture on st_churn's warm stack against
 * libunwind's 790, callgrind) and gives every other stack to libunwind (as
 * gperftools uses it), with local-only unwinding and per-thread caching.
 *
 * Guards.  libunwind keeps its cache in memory it maps itself and finds
 * unwind tables with dl_iterate_phdr; it does not call malloc on this path,
 * but if it ever did, the allocation would not be sampled: the caller holds
 * ms_no_sample while capturing, so the profiler never re-enters itself.
 * Captures run with no memscope lock held.  A fork waits until no capture
 * is inside libunwind, the loader's list or the recipe table's emptying
 * (counters striped over the threads, and a flag that makes captures
 * started during the fork give up: ms_stack_guard_enter), so a child never
 * inherits an unwinder stopped half-way through its cache update.  A warm
 * walk of memscope's own walker needs none of it (unwind.c).  The capture itself
 * is inline (stack.h) in the sampling hook: every frame unwound costs tens
 * of instructions (about a hundred through libunwind), and memscope's own
 * frames are thrown away.  The hook unwinds into a buffer of the thread's
 * own, mapped at its first sample and hung off its cache (stack.h says why
 * not in TLS), which holds nothing but return addresses and, for replays
 * (unwind.c), stack addresses and complemented words, so it never needs
 * clearing for the leak checker.
 *
 * The capture starts at this function; every frame inside memscope (the
 * malloc family's entry points, the sampling hook, this file: all placed in
 * the memscope_text section) is dropped, so a stack begins at the
 * program's call to malloc, calloc, realloc or memalign.
 */
#include "stack.h"

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

stack_slot_t ms_stack_capturing[MS_STACK_SLOTS];
_Atomic bool ms_stack_forking;

/* A signal handler's sample may run in the middle of the thread's own first
 * one, between the mapping and the store: whichever stores first keeps its
 * buffer, the other unmaps its own (both calls are async-signal-safe). */
stack_own_t *ms_stack_own_map(void) {
    tcache_t *tc = ms_tcache_mine();
    if (!tc || tc->is_dummy) return NULL;
    void *cur = __atomic_load_n(&tc->stack_own, __ATOMIC_RELAXED);
    if (cur) return cur;
    void *p = ms_meta_alloc(sizeof(stack_own_t));
    if (!p) return NULL;
    void *none = NULL;
    if (__atomic_compare_exchange_n(&tc->stack_own, &none, p, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
        tc->stack_own_bytes = (sizeof(stack_own_t) + MS_PAGE_MASK) & ~MS_PAGE_MASK;
        return p;
    }
    ms_meta_free(p, sizeof(stack_own_t));
    return none;
}

/* Memory reads, and the program's file descriptors.  Debian's libunwind is
 * built with conservative checks: before it reads a word on a page it has
 * not seen lately (four pages remembered), it proves the page readable by
 * writing a byte of it into a pipe it opens when it starts.  That pipe took
 * the program's descriptors 3 and 4, and a program that closed them and
 * opened its own files there (any daemon; a shell's "exec 3<file") had
 * libunwind read a byte of its input and write into its output at the next
 * sample on a new stack page.  So memscope gives the local address space
 * a reader of its own (unw_get_accessors hands out the accessors libunwind
 * uses), which proves a page readable with process_vm_readv on this
 * process, no descriptor involved, remembering four pages per thread as
 * libunwind did, and closes libunwind's pipe, which nothing uses then. */
#define GOOD_PAGES 4
static __thread uintptr_t good_page[GOOD_PAGES] __attribute__((tls_model("initial-exec")));
static __thread unsigned good_next __attribute__((tls_model("initial-exec")));

static inline bool page_known(uintptr_t page) {
    for (int i = 0; i < GOOD_PAGES; i++)
        if (good_page[i] == page) return true;
    return false;
}

/* The run.  A walk reads up its thread's stack from the page it starts on,
 * and with four pages remembered a deeper stack cost a process_vm_readv per
 * page on every capture: 80 frames of 1.5 KiB at profile_rate=1 took 52 s
 * of system time for a million mallocs (a helper session).  So each thread
 * also keeps one run of pages proven readable, [run_lo, run_hi): it starts
 * on a walk's first page (the walk runs on it), grows only by pages proven
 * adjacent to it, a gap of up to RUN_GROW pages proven in one system call,
 * and is used only by a walk that starts inside it.  It therefore stays on
 * one stack, whose pages are not unmapped while its thread lives; a walk
 * that starts elsewhere (another stack, a signal's alternate stack) starts
 * a new run. */
#define RUN_GROW 64
#define run_lo ms_stack_run_lo
#define run_hi ms_stack_run_hi_

uintptr_t ms_stack_run_slow(uintptr_t lo) {
    if (lo >= run_lo && lo < run_hi) return run_hi;
    size_t below = lo < run_lo ? (run_lo - lo) / MS_OS_PAGE : SIZE_MAX; /* the pages from lo up to the run */
    if (below <= RUN_GROW && ms_os_pages_readable(lo, MS_OS_PAGE, below) == below) {
        run_lo = lo;
        return run_hi;
    }
    run_lo = lo, run_hi = lo + MS_OS_PAGE;
    return run_hi;
}

uintptr_t ms_stack_run_hi(uintptr_t lo) { return lo >= run_lo && lo < run_hi ? run_hi : 0; }

uintptr_t ms_stack_run_to(uintptr_t lo, uintptr_t to) {
    if (!(lo >= run_lo && lo < run_hi)) return 0;
    if (to <= run_hi) return run_hi;
    size_t n = (to - run_hi + MS_OS_PAGE - 1) / MS_OS_PAGE;
    if (n <= RUN_GROW && ms_os_pages_readable(run_hi, MS_OS_PAGE, n) == n) run_hi += n * MS_OS_PAGE;
    return run_hi;
}

bool ms_stack_read(uintptr_t addr, uintptr_t *val) {
    /* the first 64 KiB are never mapped (vm.mmap_min_addr), and an empty
     * slot of good_page reads as page 0: a garbage address there (a walk
     * through a frame with no call frame information, __start_context's
     * under makecontext) took the fast path and faulted */
    if (addr < ((uintptr_t)64 << 10) || addr > UINTPTR_MAX - sizeof *val) return false;
    uintptr_t p0 = addr & ~(uintptr_t)(MS_OS_PAGE - 1), p1 = (addr + sizeof *val - 1) & ~(uintptr_t)(MS_OS_PAGE - 1);
    if (ms_likely((addr >= run_lo && addr + sizeof *val <= run_hi) || (page_known(p0) && page_known(p1)))) {
        *val = *(const uintptr_t *)addr;
        return true;
    }
    uintptr_t v;
    if (ms_os_read_self(addr, &v, sizeof v) != sizeof v) return false;
    good_page[good_next++ % GOOD_PAGES] = p0;
    if (p1 != p0) good_page[good_next++ % GOOD_PAGES] = p1;
    /* a page above the run: the run grows to it if the gap reads too */
    if (run_hi > run_lo && p0 >= run_hi && p0 - run_hi <= (uintptr_t)RUN_GROW * MS_OS_PAGE) {
        size_t gap = (p0 - run_hi) / MS_OS_PAGE;
        if (ms_os_pages_readable(run_hi, MS_OS_PAGE, gap) == gap) run_hi = p1 + MS_OS_PAGE;
    }
    *val = v;
    return true;
}

static int read_word(unw_addr_space_t as, unw_word_t addr, unw_word_t *val, int write, void *arg) {
    (void)as, (void)arg;
    if (write) { /* never for a backtrace; as libunwind's own */
        *(unw_word_t *)addr = *val;
        return 0;
    }
    uintptr_t v;
    if (!ms_stack_read(addr, &v)) return -UNW_EINVAL;
    *val = v;
    return 0;
}

/* libunwind, loaded on first need.  memscope's walker (unwind.c) reads
 * almost every stack itself: git, the gcc driver and sort at profile_rate=1
 * never once fell back to libunwind (gdb, a breakpoint on unw_backtrace).
 * Linked, libunwind and the liblzma it needs were loaded into every process
 * that preloads memscope: two more objects for the loader to map and
 * relocate (a third of memscope's start-up cost on /bin/true, perf stat)
 * and 148 KiB of RSS.  So it is dlopen'd, RTLD_LOCAL (its weak `backtrace`
 * then stays out of the program's symbol lookup), by the first capture
 * that needs it, inside stack_unwind: with sampling held off (ms_no_sample)
 * and counted as a capture in progress, so a fork waits for the load to
 * end.  One thread loads; a capture that finds the load under way (another
 * thread, or a signal handler that interrupted it) gets no stack rather
 * than wait.  If libunwind cannot be loaded, such stacks stay empty and one
 * line says why.  Nor is it loaded by a capture that runs on the thread's
 * alternate signal stack (sigaltstack): dlopen needs more stack than such
 * a handler has (a handler that allocated on an 8 KiB one, as glibc's
 * malloc lets it, died of SIGSEGV in the loader at the first sample, whose
 * walk stops at the signal frame); its stack stays empty, and a later
 * capture elsewhere loads it. */
enum { LU_NONE, LU_LOADING, LU_READY, LU_FAILED };
static _Atomic int lu_state;
static int (*lu_backtrace)(void **, int);
static bool reads_ok; /* process_vm_readv works here (ms_stack_init) */

/* fds_open: the descriptors below n that are open, one bit each */
static void fds_open(uint64_t *bits, int n) {
    int saved = errno;
    for (int fd = 0; fd < n; fd++) {
        if (fcntl(fd, F_GETFD) != -1) bits[fd / 64] |= 1ull << (fd % 64);
        else bits[fd / 64] &= ~(1ull << (fd % 64));
    }
    errno = saved;
}

/* close_new_pipe: libunwind's pipe, the one pair of descriptors open now
 * and not in before[], both ends of one pipe and both close-on-exec and
 * non-blocking as libunwind opens them.  Anything else new (another thread
 * opened files meanwhile) and nothing is closed: two descriptors left open
 * are better than one of the program's closed. */
static void close_new_pipe(const uint64_t *before, int n) {
    int pair[2], k = 0;
    struct stat st[2];
    int saved = errno;
    for (int fd = 0; fd < n; fd++) {
        if ((before[fd / 64] >> (fd % 64)) & 1 || fcntl(fd, F_GETFD) == -1) continue;
        if (k == 2 || fstat(fd, &st[k]) != 0 || !S_ISFIFO(st[k].st_mode) || fcntl(fd, F_GETFD) != FD_CLOEXEC ||
            !(fcntl(fd, F_GETFL) & O_NONBLOCK))
            goto out;
        pair[k++] = fd;
    }
    if (k == 2 && st[0].st_ino == st[1].st_ino && st[0].st_dev == st[1].st_dev) {
        close(pair[0]);
        close(pair[1]);
    }
out:
    errno = saved;
}

/* on_altstack: the calling thread runs on its alternate signal stack */
static bool on_altstack(void) {
    stack_t ss;
    int saved = errno;
    bool on = sigaltstack(NULL, &ss) == 0 && (ss.ss_flags & SS_ONSTACK);
    errno = saved;
    return on;
}

/* lu_load: libunwind is loaded, by the first capture that needs it and
 * may: not on an alternate signal stack (dlopen ran off an 8 KiB one),
 * nor in a signal handler (the walk stopped at a signal frame) or with one
 * of memscope's locks held (which only a handler that interrupted memscope
 * can find).  dlopen from a handler that had interrupted the program's
 * own dlopen or dlclose entered the loader a second time ("Inconsistency
 * detected by ld.so: dl-load.c: 1516: _dl_map_object_from_fd: Assertion
 * `r->r_state == RT_ADD' failed", exit status 127), and its allocations
 * waited for the page heap's lock that the interrupted malloc held.  Such
 * a capture gets an empty stack, as one made while another thread loads
 * libunwind does, and a later one loads it. */
static bool lu_load(void) {
    if (on_altstack() || ms_locks_held != 0 || ms_unwind_refused_at_signal()) return false;
    int expect = LU_NONE;
    if (!atomic_compare_exchange_strong(&lu_state, &expect, LU_LOADING)) return false;
    int cancel = ms_cancel_off(); /* inside malloc: close is a cancellation point */
    enum { LOOK = 1024 };
    uint64_t before[LOOK / 64];
    fds_open(before, LOOK);
    void *h = dlopen("libunwind.so.8", RTLD_NOW | RTLD_LOCAL);
    int (*bt)(void **, int) = h ? (int (*)(void **, int))dlsym(h, "unw_backtrace") : NULL;
    int (*policy)(unw_addr_space_t, unw_caching_policy_t) =
        h ? (int (*)(unw_addr_space_t, unw_caching_policy_t))dlsym(h, "_ULx86_64_set_caching_policy") : NULL;
    unw_accessors_t *(*accessors)(unw_addr_space_t) =
        h ? (unw_accessors_t * (*)(unw_addr_space_t)) dlsym(h, "_Ux86_64_get_accessors") : NULL;
    unw_addr_space_t *local = h ? (unw_addr_space_t *)dlsym(h, "_ULx86_64_local_addr_space") : NULL;
    if (!bt || !policy || !accessors || !local) {
        ms_warn("memscope: libunwind.so.8 could not be loaded (%s): stacks through frames memscope's own "
                "walker does not read stay empty (install libunwind8)",
                h ? "a symbol is missing" : dlerror());
        atomic_store(&lu_state, LU_FAILED);
        ms_cancel_restore(cancel);
        return false;
    }
    policy(*local, UNW_CACHE_PER_THREAD); /* libunwind starts here, and opens its pipe */
    if (reads_ok) { /* libunwind's reads go through process_vm_readv too */
        unw_accessors_t *acc = accessors(*local);
        if (acc) {
            acc->access_mem = read_word;
            close_new_pipe(before, LOOK);
        }
    }
    lu_backtrace = bt;
    atomic_store_explicit(&lu_state, LU_READY, memory_order_release);
    ms_cancel_restore(cancel);
    return true;
}

int ms_libunwind_backtrace(void **raw, int cap) {
    if (atomic_load_explicit(&lu_state, memory_order_acquire) != LU_READY && !lu_load()) return 0;
    return lu_backtrace(raw, cap);
}

void ms_stack_init(void) {
    uintptr_t one = 1, probe = 0;
    if (!ms_stack_read((uintptr_t)&one, &probe) || probe != 1) {
        ms_warn("memscope: process_vm_readv is refused here: libunwind validates memory with a pipe of its own "
                "(descriptors the program may reuse); MEMSCOPE=profile_rate=0 avoids it");
        return;
    }
    reads_ok = true;
    ms_unwind_init(); /* its reads are checked the same way */
#if MEMSCOPE_DEBUG
    lu_load(); /* now, not mid-run: every capture is held against libunwind's (unwind.c) */
#endif
}

void ms_stack_fork_prepare(void) {
    atomic_store(&ms_stack_forking, true);
    /* both sides are sequentially consistent: a capture that missed the
     * flag has its count visible here */
    for (int i = 0; i < MS_STACK_SLOTS; i++)
        while (atomic_load(&ms_stack_capturing[i].n) > 0) sched_yield();
}
void ms_stack_fork_parent(void) { atomic_store(&ms_stack_forking, false); }
void ms_stack_fork_child(void) {
    for (int i = 0; i < MS_STACK_SLOTS; i++) atomic_store(&ms_stack_capturing[i].n, 0);
    atomic_store(&ms_stack_forking, false);
}

MS_TEXT int ms_stack_capture(uintptr_t *pcs, int max, int skip) { return ms_stack_capture_inline(pcs, max, skip); }
