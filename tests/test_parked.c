/* test_parked: memory parked in central transfer slots goes back to the OS.
 *
 * Freeing many small objects in random order leaves batches of them parked
 * in the central lists, each object keeping a different span in use.  The
 * scavenger must notice that a class has been quiet for the delay, return
 * its parked objects to their spans, and release the spans.  Without that
 * (as in an early version) about 39 MB of this test's 96 MB stayed in use.
 * Runs itself with MEMSCOPE=scavenge_delay_ms=200.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "memscope.h"
#include "testhelper.h"

#define N (1500 * 1000)

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

int main(int argc, char **argv) {
    th_run_with("scavenge_delay_ms=200", argv);
    (void)argc;
    void **p = calloc(N, sizeof *p);
    for (int i = 0; i < N; i++) {
        p[i] = malloc(64);
        memset(p[i], 1, 64);
    }
    for (int i = N - 1; i > 0; i--) { /* shuffle, then free in that order */
        int j = (int)(next() % (uint64_t)(i + 1));
        void *t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
    for (int i = 0; i < N; i++) free(p[i]);
    struct memscope_stats st = {.size = sizeof st};
    memscope_read_stats(&st);
    uint64_t inuse_at_free = st.heap_inuse;
    struct timespec ts = {1, 500 * 1000 * 1000};
    nanosleep(&ts, NULL);
    memscope_read_stats(&st);
    fprintf(stderr, "heap_inuse at the free %.1f MB, 1.5 s later %.1f MB; released %.1f MB\n",
            inuse_at_free / 1048576.0, st.heap_inuse / 1048576.0, st.heap_released / 1048576.0);
    /* parked batches (and the thread's cache, at most 256 objects a class)
     * pin a span each: about 28 MB here */
    CHECK("objects were spread over spans at the free", inuse_at_free > ((uint64_t)20 << 20));
    /* what stays is what this (sleeping) thread's own cache pins */
    CHECK("parked objects gave their spans back", st.heap_inuse + ((uint64_t)8 << 20) < inuse_at_free);
    CHECK("and the pages went back to the OS", st.heap_released + ((uint64_t)8 << 20) > st.heap_idle);
    free(p);
    return print_test_summary();
}
