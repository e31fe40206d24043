/* test_strand.c: a thread's cache cannot keep much memory from the OS.
 *
 * The small-objects seed demo with the nodes freed in random order: every
 * object left in the thread's cache after the free pins its whole span,
 * and the cached objects are spread over thousands of spans.  With 4096
 * objects of 32 bytes allowed per class, 38 MiB stayed resident after the
 * scavenger had run; the cap of 256 objects per class leaves at most 256
 * pinned spans.  The program frees 2,000,000 shuffled 32-byte nodes
 * (64 MiB), makes no call to memscope, and RSS must come back within
 * 10 MiB of what it was before the nodes, within 2 s of the free
 * (scavenge_delay_ms is 1 s); then the heap may hold next to nothing that
 * is not allocated: the scavenger has parked the cache of this thread,
 * asleep since the free (tcache.c).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "memscope.h"
#include "testhelper.h"

static long rss_kib(void) {
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f && fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
    if (f) fclose(f);
    return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

int main(void) {
    enum { N = 2000000 };
    void **nodes = calloc(N, sizeof *nodes); /* large: a span of its own, freed last */
    for (long i = 0; i < N; i++) nodes[i] = &nodes; /* resident before the baseline */
    long before = rss_kib();
    for (long i = 0; i < N; i++) nodes[i] = malloc(32);
    uint64_t x = 88172645463325252ull;
    for (long i = N - 1; i > 0; i--) { /* shuffle */
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        long j = (long)(x % (uint64_t)(i + 1));
        void *t = nodes[i];
        nodes[i] = nodes[j], nodes[j] = t;
    }
    long peak = rss_kib();
    for (long i = 0; i < N; i++) free(nodes[i]);
    struct timespec ts = {2, 0};
    nanosleep(&ts, NULL);
    long after = rss_kib();
    fprintf(stderr, "[rss before %ld KiB, with nodes %ld KiB, 2 s after the free %ld KiB] ", before, peak, after);
    CHECK("rss-back-within-10-MiB", after - before < 10 * 1024);
    /* and the cache of the sleeping thread (this one) is parked: nearly
     * nothing of the heap stays in use */
    struct memscope_stats st = {.size = sizeof st};
    memscope_read_stats(&st);
    fprintf(stderr, "[heap in use %.2f MiB, of it allocated %.2f MiB] ", st.heap_inuse / 1048576.0,
            st.heap_alloc / 1048576.0);
    CHECK("quiet-cache-returned", st.heap_inuse - st.heap_alloc < ((uint64_t)1 << 20));
    free(nodes);
    return print_test_summary();
}
