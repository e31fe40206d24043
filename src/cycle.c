/* cycle.c: heap cycles and the gctrace-style trace line.
 *
 * A malloc heap has no garbage collection, but the question gctrace answers
 * ("how big is my heap, how much of it is live, how much does the process
 * hold") still needs a rhythm.  memscope borrows Go's: a cycle ends when the
 * bytes in spans in use reach the goal, twice what was in use when the last
 * cycle ended and at least 4 MiB (GOGC=100), or when the program forces one
 * with memscope_free_os_memory() or malloc_trim().  So a growing heap prints
 * a line each time it doubles, a steady one stays quiet, and the moment the
 * seed's program frees its 700 MB and forces a release shows up as
 * "700->700->0 MB ... (forced)".
 *
 * The line (MEMSCOPE=trace=1), one write() to stderr:
 *   gc 3 @1.204s: 8->17->16 MB, 16 MB goal, 24 MB sys, 7 MB idle, 1 MB released, 30 MB rss, 1 threads
 *   A: MB in spans in use when the cycle began (the last line's end)
 *   B: the most MB in spans in use during the cycle
 *   C: MB of live objects (heap_alloc) now, exact
 *   goal: the in-use MB that ended this cycle; then sys, idle, released
 *   (heap_sys, heap_idle, heap_released), RSS and threads with a cache.
 * The check runs on the page heap's slow path only (ms_heap_goal_hook), and a
 * cycle is closed by whichever thread gets there first; the others go on.
 */
#include "internal.h"

#define MS_MIN_GOAL ((uint64_t)4 << 20)

static pthread_mutex_t cyc_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t start_inuse;      /* in-use bytes when the current cycle began (cyc_lock) */
static uint64_t t0_ns;            /* process start, monotonic */
static uint64_t last_gc_wall_ns;  /* cyc_lock */
static _Atomic uint32_t num_gc, num_forced;

static void end_cycle(bool forced) {
    heap_counters_t c;
    ms_heap_counters(&c);
    uint64_t inuse = c.inuse_pages << MS_PAGE_SHIFT, peak = c.peak_inuse_pages << MS_PAGE_SHIFT;
    uint64_t goal = atomic_load(&ms_heap_goal_bytes);
    uint32_t n = atomic_fetch_add(&num_gc, 1) + 1;
    if (forced) atomic_fetch_add(&num_forced, 1);
    last_gc_wall_ns = ms_os_wall_ns();
    uint64_t next = inuse * 2 > MS_MIN_GOAL ? inuse * 2 : MS_MIN_GOAL;
    atomic_store(&ms_heap_goal_bytes, next);
    if (ms_opt.trace) { /* the full snapshot (and its /proc read) only when someone reads it */
        struct memscope_stats st = {.size = sizeof st};
        memscope_read_stats(&st);
        double t = (double)(ms_os_now_ns() - t0_ns) / 1e9;
        ms_printf_fd(ms_log_fd(),
                     "gc %u @%.3fs: %llu->%llu->%llu MB, %llu MB goal, %llu MB sys, %llu MB idle, %llu MB released, "
                     "%llu MB rss, %u threads%s\n",
                     n, t, (unsigned long long)(start_inuse >> 20), (unsigned long long)(peak >> 20),
                     (unsigned long long)(st.heap_alloc >> 20), (unsigned long long)(goal >> 20),
                     (unsigned long long)(st.heap_sys >> 20), (unsigned long long)(st.heap_idle >> 20),
                     (unsigned long long)(st.heap_released >> 20), (unsigned long long)(st.rss >> 20),
                     st.num_threads, forced ? " (forced)" : "");
    }
    start_inuse = inuse;
    ms_heap_reset_peak();
}

/* A cycle's end reads /proc and writes the trace line, cancellation points,
 * under cyc_lock: cancellation is off meanwhile (ms_cancel_off). */
static void goal_reached(void) {
    if (pthread_mutex_trylock(&cyc_lock) != 0) return;
    int cancel = ms_cancel_off();
    heap_counters_t c;
    ms_heap_counters(&c);
    if ((c.inuse_pages << MS_PAGE_SHIFT) >= atomic_load(&ms_heap_goal_bytes)) end_cycle(false);
    pthread_mutex_unlock(&cyc_lock);
    ms_cancel_restore(cancel);
}

void ms_cycle_forced(void) {
    int cancel = ms_cancel_off();
    pthread_mutex_lock(&cyc_lock);
    end_cycle(true);
    pthread_mutex_unlock(&cyc_lock);
    ms_cancel_restore(cancel);
}

void ms_cycle_info(uint64_t *next_gc, uint64_t *last_gc_ns, uint32_t *ngc, uint32_t *nforced) {
    *next_gc = atomic_load(&ms_heap_goal_bytes);
    *last_gc_ns = last_gc_wall_ns;
    *ngc = atomic_load(&num_gc);
    *nforced = atomic_load(&num_forced);
}

void ms_cycle_init(void) {
    t0_ns = ms_os_now_ns();
    atomic_store(&ms_heap_goal_bytes, MS_MIN_GOAL);
    ms_heap_goal_hook = goal_reached;
}

void ms_cycle_fork_child(void) { pthread_mutex_init(&cyc_lock, NULL); }
