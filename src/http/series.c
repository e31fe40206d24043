/* series.c: the heap over time, kept inside the process for the live page.
 *
 * Once a second the server thread reads memscope_read_stats and appends one
 * sample to a ring of MS_SERIES_LEN: heap in use, live bytes, idle,
 * released, RSS, and the running counts of heap cycles and scavenger passes
 * (a mark on the page's time axis wherever a count grew between two
 * samples).  So the page and `memscope top` show the history from the
 * server's start, not only from when they were opened.  Events are read as
 * counters the core already keeps (num_gc, num_scavenge): nothing in the
 * core calls up here.
 *
 * The ring is written only by the server thread and read only by it too
 * (routes run on that thread), so it needs no lock.  30 minutes of samples
 * take 1800 x 64 bytes = 112 KiB of static memory, untouched (not resident)
 * in a process that never starts the server.
 */
#include "http.h"

typedef struct sample_s {
    uint64_t t_ms;   /* wall clock, ms since the epoch */
    uint64_t heap_alloc, heap_inuse, heap_idle, heap_released, rss;
    uint32_t num_gc, num_scavenge;
} sample_t;

static sample_t ring[MS_SERIES_LEN];
static size_t ring_next;   /* index of the next write */
static size_t ring_count;  /* samples held, <= MS_SERIES_LEN */

void ms_series_sample(void) {
    struct memscope_stats st = {.size = sizeof st};
    memscope_read_stats(&st);
    sample_t *s = &ring[ring_next];
    s->t_ms = ms_os_wall_ns() / 1000000;
    s->heap_alloc = st.heap_alloc;
    s->heap_inuse = st.heap_inuse;
    s->heap_idle = st.heap_idle;
    s->heap_released = st.heap_released;
    s->rss = st.rss;
    s->num_gc = st.num_gc;
    s->num_scavenge = (uint32_t)st.num_scavenge;
    ring_next = (ring_next + 1) % MS_SERIES_LEN;
    if (ring_count < MS_SERIES_LEN) ring_count++;
}

/* One JSON array per field ("columns"), oldest first: compact, and trivial
 * to read for both the page's JS and the tiny parser in tools/top.c. */
void ms_series_write_json(ms_out_t *o, long max_points) {
    size_t n = ring_count;
    if (max_points > 0 && (size_t)max_points < n) n = (size_t)max_points;
    size_t first = (ring_next + MS_SERIES_LEN - n) % MS_SERIES_LEN;
    static const char *names[] = {"t_ms", "heap_alloc", "heap_inuse", "heap_idle", "heap_released", "rss",
                                  "num_gc", "num_scavenge"};
    ms_out_printf(o, "{\"interval_ms\":1000,\"len\":%zu", n);
    for (int f = 0; f < 8; f++) {
        ms_out_printf(o, ",\n\"%s\":[", names[f]);
        for (size_t i = 0; i < n; i++) {
            const sample_t *s = &ring[(first + i) % MS_SERIES_LEN];
            uint64_t v = f == 0 ? s->t_ms : f == 1 ? s->heap_alloc : f == 2 ? s->heap_inuse : f == 3 ? s->heap_idle
                       : f == 4 ? s->heap_released : f == 5 ? s->rss : f == 6 ? s->num_gc : s->num_scavenge;
            ms_out_printf(o, i ? ",%llu" : "%llu", (unsigned long long)v);
        }
        ms_out_puts(o, "]");
    }
    ms_out_puts(o, "}\n");
}
