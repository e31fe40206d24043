/* stats.c: memscope_read_stats, Go's runtime.MemStats for a malloc heap.
 *
 * Every figure is a sum of counters the allocator keeps anyway (see
 * malloc.c): per-thread, per-class malloc and free counts, per-thread large
 * object bytes, and the page heap's page counts.  Nothing is sampled and no
 * thread is stopped: a snapshot takes the registry lock (to walk the thread
 * caches) and the heap lock (to copy its counters), each briefly, plus one
 * read of /proc/self/statm.  Go stops the world for ReadMemStats; memscope
 * accepts that counts from different threads are read nanoseconds apart.
 *
 * Sizes are class sizes: a 100-byte malloc counts 112 bytes in alloc, as a
 * Go object counts its size class.  heap_inuse - heap_alloc is then the space
 * in spans that holds no object (free slots, objects cached in threads).
 *
 * Numbers a poller can trust.  Because threads are read one after another,
 * a free made by thread B of a block thread A allocated can be counted
 * before A's malloc is: a class's frees may exceed its mallocs for one read,
 * and a thread's counts move to the orphan counters when it exits.  Plain
 * subtraction would then wrap to about 1.8e19.  So live counts and bytes are
 * clamped at 0 per class, and every cumulative counter a reader can see
 * (mallocs, frees, total_alloc, by_size, released_total, num_gc, ...) is
 * published as the largest value published so far: `published` below keeps
 * them, under pub_lock, held only for that copy.  Frees are published at
 * most equal to the published mallocs, so heap_objects never wraps either.
 */
#include "internal.h"

#include <string.h>

/* The last cumulative values handed out (pub_lock). */
static pthread_mutex_t pub_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    uint64_t total_alloc, mallocs, frees, released_total, num_scavenge;
    uint64_t by_mallocs[MS_NUM_CLASSES], by_frees[MS_NUM_CLASSES];
} published;

static uint64_t up(uint64_t *last, uint64_t now) {
    if (now > *last) *last = now;
    return *last;
}
static uint64_t sub0(uint64_t a, uint64_t b) { return a > b ? a - b : 0; }

/* publish: makes the cumulative fields of st (and the per-class counts in
 * by) never smaller than in any earlier snapshot, and frees <= mallocs. */
static void publish(struct memscope_stats *st, class_counts_t by[MS_NUM_CLASSES]) {
    pthread_mutex_lock(&pub_lock);
    st->total_alloc = up(&published.total_alloc, st->total_alloc);
    st->mallocs = up(&published.mallocs, st->mallocs);
    st->frees = up(&published.frees, st->frees < st->mallocs ? st->frees : st->mallocs);
    st->released_total = up(&published.released_total, st->released_total);
    st->num_scavenge = up(&published.num_scavenge, st->num_scavenge);
    for (int i = 0; i < MS_NUM_CLASSES; i++) {
        by[i].mallocs = up(&published.by_mallocs[i], by[i].mallocs);
        by[i].frees = up(&published.by_frees[i], by[i].frees < by[i].mallocs ? by[i].frees : by[i].mallocs);
    }
    pthread_mutex_unlock(&pub_lock);
}

/* ms_stats_fork_child: the fork child has one thread; a lock held by another
 * thread at fork time is re-created open. */
void ms_stats_fork_child(void) { pthread_mutex_init(&pub_lock, NULL); }

void ms_stats_read(struct memscope_stats *st) {
    class_counts_t by[MS_NUM_CLASSES];
    uint64_t large_alloc, large_free, cached;
    uint32_t nthr;
    ms_tcache_totals(by, &large_alloc, &large_free, &cached, &nthr);
    uint64_t orphan[2];
    ms_malloc_orphan_counts(by, orphan);
    heap_counters_t c;
    ms_heap_counters(&c);

    memset(st, 0, sizeof *st);
    st->size = sizeof *st;
    st->version = MEMSCOPE_VERSION;
    uint64_t alloc = sub0(large_alloc + orphan[0], large_free + orphan[1]);
    uint64_t total = large_alloc + orphan[0];
    uint64_t mallocs = by[0].mallocs, frees = by[0].frees;
    for (int i = 1; i < MS_NUM_CLASSES; i++) {
        alloc += sub0(by[i].mallocs, by[i].frees) * ms_class_size[i]; /* clamped: see the top comment */
        total += by[i].mallocs * ms_class_size[i];
        mallocs += by[i].mallocs;
        frees += by[i].frees;
    }
    st->total_alloc = total;
    st->mallocs = mallocs;
    st->frees = frees;
    st->num_scavenge = c.scavenge_passes;
    st->released_total = c.released_bytes_total;
    publish(st, by);
    for (int i = 1; i < MS_NUM_CLASSES; i++) {
        st->by_size[i - 1].size = ms_class_size[i];
        st->by_size[i - 1].mallocs = by[i].mallocs;
        st->by_size[i - 1].frees = by[i].frees;
    }
    st->by_size[MS_NUM_CLASSES - 1].size = 0; /* large objects */
    st->by_size[MS_NUM_CLASSES - 1].mallocs = by[0].mallocs;
    st->by_size[MS_NUM_CLASSES - 1].frees = by[0].frees;
    st->num_classes = MS_NUM_CLASSES;

    st->alloc = st->heap_alloc = alloc;
    st->heap_objects = st->mallocs - st->frees; /* publish() keeps frees <= mallocs */
    st->heap_sys = c.sys_pages << MS_PAGE_SHIFT;
    st->heap_inuse = c.inuse_pages << MS_PAGE_SHIFT;
    st->heap_idle = c.free_pages << MS_PAGE_SHIFT;
    st->heap_released = c.released_pages << MS_PAGE_SHIFT;
    st->metadata_inuse = atomic_load(&ms_meta_inuse);
    st->metadata_sys = atomic_load(&ms_meta_sys);
    st->sys = st->heap_sys + st->metadata_sys;
    ms_cycle_info(&st->next_gc, &st->last_gc, &st->num_gc, &st->num_forced_gc);
    st->scavenge_delay_ms = (uint64_t)ms_opt.scavenge_delay_ms;
    st->num_threads = nthr;
    st->heap_lock_max_ns = ms_heap_take_max_hold_ns(0);

    ms_os_rss(&st->rss, &st->rss_file, &st->max_rss);
    st->rss_heap_live = alloc;
    st->rss_heap_frag = st->heap_inuse > alloc ? st->heap_inuse - alloc : 0;
    st->rss_heap_idle = sub0(st->heap_idle, st->heap_released);
    st->rss_metadata = st->metadata_inuse;
    uint64_t heap = st->rss_heap_live + st->rss_heap_frag + st->rss_heap_idle + st->rss_metadata;
    st->rss_other = st->rss > heap ? st->rss - heap : 0;
}

MEMSCOPE_API int memscope_read_stats(struct memscope_stats *st) {
    if (!st || st->size < offsetof(struct memscope_stats, heap_alloc)) return -1; /* the general fields, as the header says */
    ms_ensure_init();
    struct memscope_stats full;
    ms_held_t old;
    ms_hold(&old);
    ms_stats_read(&full);
    ms_release(&old);
    size_t n = st->size < sizeof full ? st->size : sizeof full;
    memcpy(st, &full, n);
    st->size = (uint32_t)n;
    return 0;
}

#define MB(x) ((double)(x) / (1 << 20))

MEMSCOPE_API void memscope_print_stats(int fd) {
    struct memscope_stats st = {.size = sizeof st};
    memscope_read_stats(&st);
    char buf[4096];
    size_t n = ms_snprintf(
        buf, sizeof buf,
        "memscope stats:\n"
        "  alloc          %12llu  (%.1f MB live objects)\n"
        "  total_alloc    %12llu\n"
        "  sys            %12llu  (%.1f MB from the OS)\n"
        "  mallocs        %12llu\n"
        "  frees          %12llu\n"
        "  heap_objects   %12llu\n"
        "  heap_sys       %12llu\n"
        "  heap_inuse     %12llu\n"
        "  heap_idle      %12llu\n"
        "  heap_released  %12llu\n"
        "  metadata_sys   %12llu\n"
        "  num_gc         %12u  (%u forced)\n"
        "  next_gc        %12llu\n"
        "  rss            %12llu  = live %.1f + frag %.1f + idle %.1f + metadata %.1f + other %.1f MB"
        " (files %.1f MB)\n"
        "  max_rss        %12llu\n",
        (unsigned long long)st.alloc, MB(st.alloc), (unsigned long long)st.total_alloc, (unsigned long long)st.sys,
        MB(st.sys), (unsigned long long)st.mallocs, (unsigned long long)st.frees,
        (unsigned long long)st.heap_objects, (unsigned long long)st.heap_sys, (unsigned long long)st.heap_inuse,
        (unsigned long long)st.heap_idle, (unsigned long long)st.heap_released,
        (unsigned long long)st.metadata_sys, st.num_gc, st.num_forced_gc, (unsigned long long)st.next_gc,
        (unsigned long long)st.rss, MB(st.rss_heap_live), MB(st.rss_heap_frag), MB(st.rss_heap_idle),
        MB(st.rss_metadata), MB(st.rss_other), MB(st.rss_file), (unsigned long long)st.max_rss);
    ms_write_fd(fd, buf, n < sizeof buf ? n : sizeof buf - 1);
}
