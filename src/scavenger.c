/* scavenger.c: giving idle memory back to the OS.
 *
 * A malloc that never returns memory leaves a program that freed 500 MB
 * showing 500 MB in top until it exits: glibc does this to any program whose
 * freed memory is not at the very top of its heap, and it is the question
 * the Go tutorial this project grew from starts with.  memscope returns idle
 * pages on a schedule the user controls:
 *
 *   - Background: a thread sleeps until the oldest idle page will have been
 *     idle for scavenge_delay_ms, then releases (madvise MADV_DONTNEED, see
 *     os.c) every free span idle that long, in chunks of at most 16 MiB with
 *     the heap lock dropped in between, and sleeps again.  Pages the
 *     kernel refuses to release (locked by mlock or mlockall, or madvise
 *     forbidden by a seccomp filter) wait another delay, as if just freed:
 *     retried at once, they kept this thread in a loop.  While central
 *     lists park freed objects it also looks at them every quarter delay: a
 *     class untouched for the delay hands its objects back to their spans,
 *     so spans pinned by a few parked objects become idle pages too (see
 *     central.c).  At the same looks it parks the caches of threads quiet
 *     for the delay (tcache.c), so objects a sleeping thread cached stop
 *     pinning their spans.  With nothing idle, parked or cached it sleeps
 *     until a span is freed, waking once a second for a stat and a readlink
 *     of /proc (os.c: ms_os_program_gone): if every thread of the program
 *     has exited with pthread_exit, the scavenger returns so that the
 *     process ends.  For 200 ms after a thread with a cache exits it looks
 *     there every 10 ms, and only there: its looks at the central lists,
 *     the caches and the heap keep their times (scavenger_main).
 *   - Huge pages: at the same looks, dense 2 MiB regions of the heap become
 *     one huge page each (below).
 *   - Pages taken in: an allocation that takes pages that are not resident
 *     while the heap holds more idle resident pages than its goal releases
 *     some of those idle for a 32nd of the delay, in the allocating thread
 *     (over_goal below; pageheap.c says when, how many, and what it cost).
 *   - Forced: memscope_free_os_memory() (and malloc_trim) flushes the calling
 *     thread's cache and the central transfer slots, then releases every idle
 *     page at once, whatever its age (Go's debug.FreeOSMemory).
 *
 * Why a delay at all: a page released and then reused costs a page fault, a
 * zeroing and its share of a madvise call (15-28 us of CPU per refaulted
 * page in bench/RESULTS.md's churn runs); a program that frees and
 * re-allocates the same memory in a loop would pay that on every iteration
 * with no delay (delay 0 cost about 4x the CPU there).  Pages idle for the delay are unlikely to be
 * reused soon.  The default, 1 s, was chosen from bench/ measurements of the
 * churn workloads against the small-objects demo: see bench/RESULTS.md.
 *
 * Huge pages.  A program that reads objects in random order over a heap of
 * tens of MiB misses the TLB on nearly every object (os.c: huge pages);
 * bench/st_churn.c with 100,000 live objects touches the same number of
 * pages under mimalloc and tcmalloc, and runs faster once its heap is
 * backed by 2 MiB pages.  The kernel's THP mode is usually "madvise", and
 * MADV_HUGEPAGE on the heap would let khugepaged fill half-empty ranges
 * with zeros, so memscope asks for MADV_COLLAPSE itself, region by region,
 * only where every page is in a span in use, none is released, and the
 * kernel says every 4 KiB page is resident and the process's alone: RSS
 * does not move.  A release inside such a region later splits the huge
 * page (os.c says what that costs); requiring the whole region in use
 * keeps that rare, and so does asking that a region be dense at two looks
 * in a row.  The work is capped by the CPU time it takes (5% of a CPU).
 * The thread starts when the heap reaches two huge pages' worth (on_grow),
 * not only at the first idle span, and looks again HUGE_LOOK_MS after the
 * heap grew, collapsing nothing while it grows.  After fork, a huge page is shared with the child like any
 * other page; since Linux 5.8 the first write to it on either side splits
 * the mapping and copies 4 KiB, not 2 MiB, so the cost to a program that
 * forks is one page-table split per huge page written.  Fork clears the
 * marks of collapsed regions (pageheap.c), and a split region is collapsed
 * again once its pages are the process's alone.  MEMSCOPE=hugepages=0
 * turns the collapses off (the thread still starts at that size).
 *
 * Age: a free span remembers when it became idle (weighted over merges, see
 * pageheap.c).  The thread starts lazily, just before the first span of
 * pages becomes idle (before_idle below says why then; in a process that
 * has had other threads, at the allocation after that: start_here) or once
 * the heap is large enough for huge pages, so a small program that never
 * frees a span never gets a second thread; its signals are all blocked so the host's
 * signal handlers never run on it.  In a fork child the thread does not exist:
 * it is started again on demand.  The thread never calls malloc.
 */
#include "internal.h"

#include <errno.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Pages that become idle without a span free (a large block shrunk in
 * place) start the thread once this much is idle: below that, the RSS a
 * program could get back is smaller than the thread's own stack. */
#define MS_SCAVENGER_START_BYTES ((uint64_t)1 << 20)

static pthread_mutex_t sc_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sc_cond;
static _Atomic bool sc_started;
static _Atomic bool sc_waiting_forever; /* asleep with nothing to wait for (but the look at GONE_LOOK_S): a kick must wake it */
static _Atomic bool sc_hold;            /* in a fork child's handler: start nothing */
static uint32_t scvg_seq;               /* trace line number (sc_lock) */
static pthread_mutex_t trace_lock = PTHREAD_MUTEX_INITIALIZER;
/* The program's threads may all exit (os.c: ms_os_thread): the scavenger
 * looks at /proc every GONE_LOOK_S, and every 10 ms for the next
 * sc_exit_hint looks after a thread with a cache exits. */
#define GONE_LOOK_S 1
static _Atomic uint32_t sc_exit_hint;
/* set by a kick (wake): the next wake is for a look, not only for /proc */
static _Atomic bool sc_kicked;

/* ms_trace_scavenge: the scavenger's trace lines, in the format of Go's
 * scavenger trace (GODEBUG=gctrace=1, Go 1.11):
 *     scvg3: 512 MB released
 *     scvg3: inuse: 0, idle: 959, sys: 959, released: 959, consumed: 0 (MB), lock: 35 us
 * written with one write() so it cannot interleave with other output.  Go's
 * line ends at "(MB)"; "lock" is memscope's: the longest hold of the heap
 * lock by any thread since the previous scvg line. */
void ms_trace_scavenge(size_t released_bytes, bool forced) {
    if (!ms_opt.trace) return;
    heap_counters_t c;
    ms_heap_counters(&c);
    char buf[512];
    size_t n = 0;
    pthread_mutex_lock(&trace_lock);
    uint32_t seq = scvg_seq++;
    pthread_mutex_unlock(&trace_lock);
    if (released_bytes >= (1u << 20) || (forced && released_bytes))
        n += ms_snprintf(buf + n, sizeof buf - n, "scvg%u: %zu MB released\n", seq, released_bytes >> 20);
    uint64_t mb = (uint64_t)1 << 20 >> MS_PAGE_SHIFT; /* pages per MB */
    n += ms_snprintf(buf + n, sizeof buf - n,
                     "scvg%u: inuse: %llu, idle: %llu, sys: %llu, released: %llu, consumed: %llu (MB), "
                     "lock: %llu us%s\n", seq,
                     (unsigned long long)(c.inuse_pages / mb), (unsigned long long)(c.free_pages / mb),
                     (unsigned long long)(c.sys_pages / mb), (unsigned long long)(c.released_pages / mb),
                     (unsigned long long)((c.sys_pages - c.released_pages) / mb),
                     (unsigned long long)(ms_heap_take_max_hold_ns(1) / 1000), forced ? " (forced)" : "");
    int fd = ms_log_fd();
    if (fd >= 0) ms_write_fd(fd, buf, n < sizeof buf ? n : sizeof buf - 1);
}

/* How often the scavenger looks at the central lists while they park
 * objects: a quarter of the delay, so parked memory is let go at most a
 * quarter-delay late; never more often than every 10 ms. */
static uint64_t look_interval_ms(uint64_t delay) { return delay / 4 > 10 ? delay / 4 : 10; }

/* Huge pages: the look and its caps (see the top).  A collapse costs this
 * VM 1.2-6 ms of CPU, timed by hand, where tools would say the copy alone
 * is 0.1 ms: most of it is the host faulting in the fresh 2 MiB page again,
 * which the guest had reported free (os.c: huge pages; 0.45-0.9 ms when a
 * 2 MiB page had just been freed).  So the work is capped by the CPU time
 * it took: HUGE_CPU_US_PER_S a second, 5% of one CPU, saved up to
 * HUGE_CPU_BURST_US; the budget starts empty, so a short run never spends
 * more than 5% of its time on it.  A dense heap
 * of 30 MiB is then on huge pages within 1-2 s, one of 100 MiB within
 * 3-12 s (at 2%, bench/st_churn.c at 40M steps, a 4-5 s run, spent most of
 * its time before its heap was collapsed and gained 3% instead of 20%).  HUGE_PER_S caps the tries (each a read
 * of /proc/self/pagemap) where regions turn out not resident.  A region
 * must be dense at two looks HUGE_LOOK_MS apart: a heap that is still
 * being built, or that the program frees soon after, is not worth the
 * copies (bench/small_nodes.c builds 320 MiB and frees it within 0.5 s;
 * collapsing at once cost it 15% of its CPU time).  The looks read
 * memscope's page map only: a heap of 8 GiB is looked at once a second, a
 * larger one in turns.  State of the scavenger thread alone. */
#define HUGE_CPU_US_PER_S 50000
#define HUGE_CPU_BURST_US 100000
#define HUGE_PER_S 32
#define HUGE_LOOKS_PER_S 4096
#define HUGE_LOOKS_PER_HOLD 64 /* regions looked at per hold of the heap lock */
#define HUGE_LOOK_MS 250
static _Atomic uint64_t heap_sys_bytes; /* on_grow's latest */
static struct {
    ms_huge_cursor_t cur;
    int64_t cpu_us; /* budget left; below 0 after a collapse that overdrew it */
    uint64_t tries, looks, t_ms, sys_seen;
    bool off; /* the kernel refused (no MADV_COLLAPSE): never again */
} huge;

static uint64_t thread_cpu_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* huge_look: collapses what it may of the dense regions; returns when it
 * wants to look again (UINT64_MAX: at the usual looks) */
static uint64_t huge_look(uint64_t now) {
    if (!ms_opt.hugepages || huge.off) return UINT64_MAX;
    if (!huge.t_ms) { /* the first look: no CPU time saved yet */
        huge.t_ms = now;
        huge.tries = HUGE_PER_S, huge.looks = HUGE_LOOKS_PER_S;
    } else if (now < huge.t_ms + HUGE_LOOK_MS) {
        return huge.t_ms + HUGE_LOOK_MS;
    }
    uint64_t dt = now - huge.t_ms;
    if (dt > 1000) dt = 1000;
    huge.t_ms = now;
    huge.cpu_us += (int64_t)(dt * HUGE_CPU_US_PER_S / 1000);
    if (huge.cpu_us > HUGE_CPU_BURST_US) huge.cpu_us = HUGE_CPU_BURST_US;
    huge.tries += dt * HUGE_PER_S / 1000;
    if (huge.tries > HUGE_PER_S) huge.tries = HUGE_PER_S;
    huge.looks += dt * HUGE_LOOKS_PER_S / 1000;
    if (huge.looks > HUGE_LOOKS_PER_S) huge.looks = HUGE_LOOKS_PER_S;
    uint64_t sys = atomic_load_explicit(&heap_sys_bytes, memory_order_relaxed);
    bool soon = sys != huge.sys_seen; /* the heap grew: look at what it grew into */
    /* and collapse nothing yet: a collapse holds the kernel's lock on the
     * address space for its copy, and a program growing its heap is taking
     * page faults, which wait for it (bench/small_nodes.c, which grows by
     * 320 MiB and frees it all within 0.5 s, lost 10% of its wall time) */
    bool growing = soon;
    huge.sys_seen = sys;
    /* one pass over the heap at most */
    uint64_t pass = sys / MS_HUGE_SIZE + (uint64_t)HUGE_LOOKS_PER_HOLD;
    size_t found = 0;
    while (huge.tries > 0 && huge.looks > 0 && pass > 0) {
        uintptr_t reg[8];
        uint64_t seq, looks = huge.looks < HUGE_LOOKS_PER_HOLD ? huge.looks : HUGE_LOOKS_PER_HOLD;
        size_t fresh, n = ms_heap_huge_candidates(&huge.cur, reg, 8, (size_t)looks, &seq, &fresh);
        huge.looks -= looks;
        pass = pass > looks ? pass - looks : 0;
        found += n;
        soon |= fresh > 0; /* to be collapsed at the next look if still dense */
        for (size_t i = 0; i < n && !growing && huge.cpu_us > 0 && huge.tries > 0; i++) {
            uint64_t t0 = thread_cpu_us();
            int r = ms_os_collapse((void *)reg[i], MS_HUGE_SIZE);
            huge.cpu_us -= (int64_t)(thread_cpu_us() - t0);
            huge.tries--;
            if (r == MS_COLLAPSE_REFUSED) {
                huge.off = true;
                return UINT64_MAX;
            }
            if (r == MS_COLLAPSE_DONE) ms_heap_huge_done(reg[i], seq);
        }
        /* candidates left over when the budget ran out are found again
         * at the next look (they stay "seen"); the look goes on, to mark
         * the regions dense now */
    }
    /* new memory, or dense regions waiting for budget: look again soon;
     * else at the usual wakes, at most once a second */
    if (found > 0 && (growing || huge.cpu_us <= 0 || huge.tries == 0)) soon = true;
    return soon ? now + HUGE_LOOK_MS : UINT64_MAX;
}

/* scavenger_main: the thread's loop.  Compiled for size (ms_cold): it runs
 * a few times a second at most, and its code must fit with the allocator's
 * in the text's first 64 KiB (mk/text.ld; tests/test_build.sh), which the
 * hot functions had outgrown (by 19 bytes, 163 with this loop's looks
 * apart from its wakes): 2,045 -> 1,370 bytes here (gcc 12), and the hot
 * functions end 509 bytes short of the limit. */
ms_cold static void *scavenger_main(void *arg) {
    (void)arg;
    uint64_t gone_look_ms = ms_os_now_ms();
    uint64_t wake = 0;      /* when the next look is due (UINT64_MAX: at a kick) */
    uint64_t looked_ms = 0; /* the last look: one a second at least, as before a thread's exit wakes */
    pthread_mutex_lock(&sc_lock);
    for (;;) {
        uint64_t delay = (uint64_t)ms_opt.scavenge_delay_ms;
        pthread_mutex_unlock(&sc_lock);
        /* sc_lock is held only to go to sleep: not over the heap lock,
         * /proc or the kernel's copies.  Every thread's exit takes it
         * (on_thread_exit), and a program whose threads come and go
         * (bench/many_threads.c) had them wait on it while this thread,
         * preempted on two CPUs shared by 33 threads, held it */
        uint64_t now = ms_os_now_ms();
        /* A thread's exit wakes this thread for the look at /proc below
         * only: the looks at the central lists, the caches and the heap
         * keep their own times (and one a second at least, which finds
         * objects cached since the last look).  Each exit made one of
         * them, and a look reads every class of every cache
         * (ms_tcache_park_idle) and takes every class's lock
         * (ms_central_flush_idle): bench/many_threads.c (96 threads
         * started and ended in a run) had some 100 looks a run, and this
         * thread 2.2% of its CPU time (perf). */
        if (atomic_exchange(&sc_kicked, false) || now >= wake || now >= looked_ms + GONE_LOOK_S * 1000) {
            looked_ms = now;
            bool parked = ms_central_flush_idle(ms_os_now_ms(), delay);
            parked |= ms_tcache_park_idle(ms_os_now_ms(), delay);
            uint64_t idle_bytes;
            uint64_t oldest = ms_heap_oldest_idle_ms(&idle_bytes);
            now = ms_os_now_ms();
            bool stuck = false;
            if (oldest != UINT64_MAX && oldest + delay <= now) {
                size_t released = ms_heap_scavenge(now - delay, SIZE_MAX);
                if (released >= ((size_t)1 << 20)) ms_trace_scavenge(released, false);
                if (released) {
                    wake = 0;
                    pthread_mutex_lock(&sc_lock);
                    continue;
                }
                /* nothing went back: the kernel refused (those pages now wait
                 * a delay again, pageheap.c) or no span struct was left for a
                 * carve.  Sleep as when nothing is due, and look again in a
                 * quarter delay if something still is: never a loop */
                oldest = ms_heap_oldest_idle_ms(&idle_bytes);
                stuck = oldest != UINT64_MAX && oldest + delay <= now;
            }
            wake = oldest == UINT64_MAX ? UINT64_MAX : stuck ? now + look_interval_ms(delay) : oldest + delay;
            if (parked && now + look_interval_ms(delay) < wake) wake = now + look_interval_ms(delay);
            uint64_t hw = huge_look(now);
            if (hw < wake) wake = hw;
        }
        /* busy, it still looks once a second: a thread that never
         * allocated may be the program's last */
        if (atomic_load(&sc_exit_hint) || now + 10 >= gone_look_ms + GONE_LOOK_S * 1000) {
            gone_look_ms = now;
            if (ms_os_program_gone()) {
                pthread_mutex_lock(&sc_lock);
                break;
            }
        }
        pthread_mutex_lock(&sc_lock);
        /* Sleep until then (CLOCK_MONOTONIC_COARSE ticks every few ms, so
         * a tick late rather than early), or with nothing to wait for until
         * a span is freed.  Either way for at most GONE_LOOK_S, and 10 ms
         * while sc_exit_hint lasts: the program may end all its threads
         * (os.c: ms_os_thread). */
        bool idle = wake == UINT64_MAX;
        uint64_t wait_ms = idle ? GONE_LOOK_S * 1000 : wake - now + 5;
        if (wait_ms > GONE_LOOK_S * 1000) wait_ms = GONE_LOOK_S * 1000;
        uint32_t hint = atomic_load(&sc_exit_hint);
        if (hint) {
            atomic_store(&sc_exit_hint, hint - 1);
            if (wait_ms > 10) wait_ms = 10;
        }
        if (idle) atomic_store(&sc_waiting_forever, true);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t)(wait_ms / 1000);
        ts.tv_nsec += (long)(wait_ms % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&sc_cond, &sc_lock, &ts);
        if (idle) atomic_store(&sc_waiting_forever, false);
    }
    /* sc_started stays set: nothing is left to start it for */
    pthread_mutex_unlock(&sc_lock);
    return NULL;
}

static void init_cond(void) {
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&sc_cond, &ca);
    pthread_condattr_destroy(&ca);
}

/* start_thread: the scavenger thread, once.  pthread_create can fail
 * for a while and then succeed: under an address-space limit (ulimit -v) a
 * program may hold nearly all of it for a moment (GNU sort sizes its
 * buffer from the limit), and the thread's 64 KiB stack does not fit.  A
 * warning then, on stderr, was output glibc's malloc never gives (sort
 * under 13 MB: 3 runs in 60, tests/test_limits.sh).  So a failed start is
 * tried again by the next trigger at least RETRY_MS later, and warned of
 * once, only when the thread has been missing for WARN_MS: a program that
 * lives that long without it is one whose idle memory stays resident.  A
 * start that succeeds on a retry may come after spans were idle, so the
 * thread's own allocations (glibc's TLS vector) may reuse pages the
 * program freed, which before_idle's order avoids: a double free of such
 * a block would go unreported.  Only a program whose first start failed
 * can meet that. */
#define RETRY_MS 1000
#define WARN_MS 5000
static uint64_t sc_failed_ms;          /* sc_lock: the first failed start, 0 none */
static _Atomic uint64_t sc_retry_ms;    /* after a failed start, the next try's time */
static bool sc_warned;                  /* sc_lock */

/* may_start: a trigger may start the thread now (not before the library is
 * up, not in a fork child's handler, not before a failed start's retry).
 * The triggers ask it before start_thread takes sc_lock, which asks it
 * again under the lock: a trigger with nothing to do takes no lock. */
static bool may_start(void) {
    if (atomic_load(&ms_inited) != 2 || atomic_load(&sc_hold)) return false;
    uint64_t r = atomic_load_explicit(&sc_retry_ms, memory_order_relaxed);
    return r == 0 || ms_os_now_ms() >= r;
}
static void start_thread(void) {
    pthread_mutex_lock(&sc_lock);
    if (atomic_load(&sc_started) || !may_start()) {
        pthread_mutex_unlock(&sc_lock);
        return;
    }
    atomic_store(&sc_started, true);
    /* this may run in the middle of a slow path of the thread's cache (a
     * free that leaves a span idle), and pthread_create allocates: not
     * through that cache (tcache.c: ms_tcache_hide) */
    tcache_t *tc = ms_tcache_hide();
    /* the name from memscope_rodata: in .rodata, it made 64 KiB of it resident */
    static const char name[] __attribute__((section("memscope_rodata"))) = "memscope-scvg";
    int rc = ms_os_thread(scavenger_main, 64 << 10, name, NULL);
    ms_tcache_unhide(tc);
    if (rc != 0) {
        atomic_store(&sc_started, false);
        uint64_t now = ms_os_now_ms();
        if (!sc_failed_ms) sc_failed_ms = now;
        atomic_store(&sc_retry_ms, now + RETRY_MS);
        if (now - sc_failed_ms >= WARN_MS && !sc_warned) {
            sc_warned = true;
            ms_warn("memscope: cannot start the scavenger thread (error %d, for %llu s); idle memory is returned only "
                    "by memscope_free_os_memory()", rc, (unsigned long long)((now - sc_failed_ms) / 1000));
        }
    }
    pthread_mutex_unlock(&sc_lock);
}

/* wake: a running scavenger asleep with nothing to wait for looks again.
 * Parking a batch in a central slot only wakes: a thread started there could
 * take that very batch (the program's just-freed blocks) for its own
 * allocations. */
static void wake(void) {
    if (atomic_load_explicit(&sc_started, memory_order_relaxed) &&
        atomic_load_explicit(&sc_waiting_forever, memory_order_relaxed)) {
        atomic_store(&sc_kicked, true);
        pthread_mutex_lock(&sc_lock);
        pthread_cond_signal(&sc_cond);
        pthread_mutex_unlock(&sc_lock);
    }
}

/* on_thread_exit (tcache.c's hook): a thread of the program is exiting;
 * if it is the last one, the idle scavenger should see it soon.  It can be
 * only once the process's first thread has left with pthread_exit
 * (ms_os_program_gone looks for that first): until then an exit wakes
 * nothing.  Each exit woke the scavenger, which then read /proc every
 * 10 ms for 20 looks: bench/larson.c, 80 threads started and ended in
 * 0.2 s, made 200 voluntary context switches where tcmalloc and mimalloc
 * made 62, and the scavenger's wakes took the CPU from its two working
 * threads on the machine's two CPUs.  A first thread that leaves before
 * its first allocation has no cache and says nothing: the scavenger's
 * look once a second still finds the program gone. */
static _Atomic bool first_exited;
static void on_thread_exit(void) {
    if (!atomic_load_explicit(&first_exited, memory_order_relaxed)) {
        if ((pid_t)syscall(SYS_gettid) != getpid()) return;
        atomic_store(&first_exited, true);
    }
    atomic_store(&sc_exit_hint, 20);
    if (atomic_load_explicit(&sc_started, memory_order_relaxed)) { /* whatever it waits for */
        pthread_mutex_lock(&sc_lock);
        pthread_cond_signal(&sc_cond);
        pthread_mutex_unlock(&sc_lock);
    }
}

/* start_here: whether a free may start the thread itself.  glibc frees
 * the TLS vectors of threads that have exited (memscope's blocks) while it
 * holds its lock of the stack cache, in pthread_join and at a thread's
 * exit (nptl-stack.c: __nptl_deallocate_stack, __nptl_free_stacks), and
 * pthread_create takes that lock: a thread started from such a free waited
 * for ever for a lock its own thread held (a program whose detached
 * threads came and went by the thousand hung in 7 runs of 10 with
 * hugepages=0; tests/test_lifecycle.sh, thread-churn).  Those frees
 * come only once the process has had a second thread, so a process with
 * one thread starts it here, as before; otherwise the free asks for it
 * (ms_heap_alloc_wanted) and the next allocation's slow path starts it
 * (started_on_alloc): glibc never allocates with that lock held.  In a
 * process with threads, allocations of other threads may take pages freed
 * before the start then, as the program's own threads' may.  glibc counts
 * a process whose pthread_create failed (memscope's own start, under an
 * address-space limit) as one with threads too: its retries wait for an
 * allocation as well (tests/prog_scavstart.c). */
extern char __libc_single_threaded __attribute__((weak)); /* glibc 2.32 */
static bool start_here(void) {
    if (&__libc_single_threaded != NULL && __libc_single_threaded) return true;
    atomic_store(&ms_heap_alloc_wanted, true);
    return false;
}

static void started_on_alloc(void) {
    atomic_store(&ms_heap_alloc_wanted, false);
    if (!atomic_load(&sc_started) && may_start()) start_thread();
}

/* kick_start, idle_start: ms_scavenger_kick's and before_idle's start of
 * the thread, apart and cold: they run until it has started, a few times
 * in a process, and the text every free may run stays short */
ms_cold __attribute__((noinline)) static void kick_start(void) {
    if (!may_start()) return;
    heap_counters_t c;
    ms_heap_counters(&c);
    if (((c.free_pages - c.released_pages) << MS_PAGE_SHIFT) < MS_SCAVENGER_START_BYTES) return;
    if (start_here()) start_thread();
}

ms_cold __attribute__((noinline)) static void idle_start(void) {
    if (may_start() && start_here()) start_thread();
}

void ms_scavenger_kick(void) {
    if (ms_unlikely(!atomic_load_explicit(&sc_started, memory_order_relaxed))) {
        kick_start();
        return;
    }
    wake();
}

/* before_idle: the first span to become idle starts the thread, before it
 * is freed.  Starting a thread allocates (glibc's thread control block and
 * TLS vector); done once spans had been freed, those allocations could take
 * pages the program had just freed, and the program's double free of its
 * block would then free memscope's memory instead of being reported (a
 * 256 KiB block freed twice around three other frees did exactly that,
 * tests/test_badinput.sh).  With no span ever idle before the thread
 * exists, its allocations come from memory the program never held. */
static void before_idle(size_t bytes) {
    (void)bytes;
    if (ms_likely(atomic_load_explicit(&sc_started, memory_order_relaxed))) return;
    idle_start();
}

/* on_grow: the heap has grown to sys bytes.  Once it can hold a dense
 * 2 MiB region the thread starts (before_idle's reasons hold here too:
 * nothing the program freed is idle yet, or the thread would exist), and a
 * running one that sleeps for want of idle pages looks at the new memory.
 * It starts there with hugepages=0 too: growth is an allocation, where a
 * start is always safe, and a process that has had threads may otherwise
 * wait with its freed pages idle until its next allocation of pages
 * (start_here); below two huge pages' worth that wait holds little. */
static void on_grow(uint64_t sys) {
    atomic_store_explicit(&heap_sys_bytes, sys, memory_order_relaxed);
    if (sys < 2 * MS_HUGE_SIZE) return;
    if (atomic_load_explicit(&sc_started, memory_order_relaxed)) {
        if (ms_opt.hugepages) wake();
        return;
    }
    if (!may_start()) return;
    start_thread();
}

/* over_goal: the page heap took in pages that were not resident while it
 * held more idle ones than its goal (pageheap.c, "Pages taken in"): up to
 * `bytes` of those idle for a 32nd of the delay go back now, in the
 * allocating thread.  Younger ones are likely to be taken again soon, and
 * released they would come back as page faults. */
static void over_goal(size_t bytes) {
    uint64_t age = (uint64_t)ms_opt.scavenge_delay_ms / 32, now = ms_os_now_ms();
    ms_heap_scavenge(now > age ? now - age : 0, bytes);
}

void ms_scavenger_init(void) {
    init_cond();
    ms_heap_on_grow = on_grow;
    ms_heap_on_over_goal = over_goal;
    ms_heap_before_idle = before_idle;
    ms_heap_on_alloc = started_on_alloc;
    ms_heap_on_idle = ms_scavenger_kick;
    ms_central_on_park = wake;
    ms_tcache_on_unpark = wake;
    ms_tcache_on_exit = on_thread_exit;
}

void ms_scavenger_fork_child(void) {
    atomic_store(&sc_hold, true);
    pthread_mutex_init(&sc_lock, NULL);
    pthread_mutex_init(&trace_lock, NULL);
    init_cond(); /* the parent's thread may have been waiting on it */
    atomic_store(&sc_started, false);
    atomic_store(&sc_waiting_forever, false);
    sc_failed_ms = 0; /* the child's first trigger tries at once */
    atomic_store(&sc_retry_ms, 0);
}

void ms_scavenger_fork_done(void) { atomic_store(&sc_hold, false); }

/* memscope_free_os_memory: Go's debug.FreeOSMemory.  Flushes what the
 * calling thread and the central lists hold (other threads' caches belong
 * to their owners), releases every idle page whatever its age, and closes a
 * forced heap cycle. */
MEMSCOPE_API size_t memscope_free_os_memory(void) {
    ms_ensure_init();
    ms_held_t old;
    ms_hold(&old);
    tcache_t *tc = ms_tc;
    ms_tc_busy++;
    if (!tc->is_dummy) ms_tcache_flush(tc);
    ms_tc_busy--;
    ms_central_flush_slots();
    size_t released = ms_heap_scavenge(UINT64_MAX, SIZE_MAX);
    ms_cycle_forced();
    ms_trace_scavenge(released, true);
    ms_release(&old);
    return released;
}
