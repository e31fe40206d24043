/* test_stall.c: no allocating thread stalls behind memscope's own work.
 *
 * A program frees one huge, mostly untouched block (16 GiB: a mapping of its
 * own; 768 MiB and a second 16 GiB: pages of the page heap, which the
 * scavenger returns in chunks while the program runs), then mallocs and frees 16-64 KiB blocks
 * for 3 s (1 s when MEMSCOPE_TEST_QUICK=1) with the scavenger releasing at
 * once (scavenge_delay_ms=0 is set by re-executing).  The worst single
 * malloc must stay under 50 ms: before bitmap scans went word by word, the
 * scavenger held the heap lock for a page-by-page walk of the freed range
 * and the worst malloc after a 16 GiB free took 900 ms.  A failed malloc
 * of an impossible size must return at once and leave the scavenger nothing
 * to do.  A leak check must not stop an allocating thread nor crash when
 * blocks it saw are unmapped meanwhile (comment at during_check).  The
 * longest heap-lock hold is read back from the stats.  Bounds
 * are generous: bench/run_latency.sh holds the strict figures.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "memscope.h"
#include "testhelper.h"

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double seconds = 3;

/* worst_malloc: after freeing a block of `big` bytes (1 MiB of it touched),
 * the longest malloc of 16-64 KiB over `seconds`, in ms */
static double worst_malloc(size_t big, uint64_t *count) {
    char *p = malloc(big);
    if (!p) return -1;
    memset(p, 1, 1 << 20);
    free(p);
    uint64_t end = now_ns() + (uint64_t)(seconds * 1e9), worst = 0, n = 0;
    uint64_t x = 88172645463325252ull;
    while (now_ns() < end) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t size = 16384 + (x % 49152);
        uint64_t t0 = now_ns();
        void *volatile q = malloc(size);
        uint64_t d = now_ns() - t0;
        if (d > worst) worst = d;
        free(q);
        n++;
    }
    *count = n;
    return (double)worst / 1e6;
}

/* A leak check beside a running program: while memscope_check_leaks walks
 * and marks a heap of many blocks, another thread frees and reallocates
 * blocks of 1 GiB (mappings of their own, which free unmaps) that the check
 * saw in use, then mallocs and frees 16-64 KiB blocks.  Before the check
 * pinned the heap's mappings, the mark read the unmapped blocks and the
 * program died of SIGSEGV.  (The walk of the spans in use also takes the
 * heap lock in bounded steps now; bench/run_latency.sh's holds part
 * measures that.) */
typedef struct node_s { struct node_s *next; } node_t;
static node_t *volatile chain;
static void *volatile bigs[2];
static _Atomic int check_state; /* 1: check under way, 2: done */
static double during_worst_ms;

static void *during_check(void *arg) {
    (void)arg;
    while (atomic_load(&check_state) == 0) usleep(100);
    usleep(2000);
    free(bigs[1]);
    bigs[1] = NULL;
    uint64_t worst = 0, x = 1, n = 0;
    while (atomic_load(&check_state) == 1) {
        if (++n == 20000) bigs[0] = realloc(bigs[0], (size_t)3 << 29); /* 1.5 GiB: the old mapping goes */
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint64_t t0 = now_ns();
        void *volatile q = malloc(16384 + (x % 49152));
        uint64_t d = now_ns() - t0;
        if (d > worst) worst = d;
        free(q);
    }
    during_worst_ms = (double)worst / 1e6;
    return NULL;
}

int main(int argc, char **argv) {
    th_run_with("scavenge_delay_ms=0", argv);
    (void)argc;
    if (getenv("MEMSCOPE_TEST_QUICK") && atoi(getenv("MEMSCOPE_TEST_QUICK"))) seconds = 1;
    struct memscope_stats st = {.size = sizeof st};

    /* the second 16 GiB block goes through the page heap: the first one's
     * free raised the direct-mapping threshold past its size (pageheap.c) */
    size_t sizes[3] = {(size_t)16 << 30, (size_t)768 << 20, (size_t)16 << 30};
    for (int i = 0; i < 3; i++) {
        char name[64];
        snprintf(name, sizeof name, "worst-malloc-after-%zu-MiB-free%s", sizes[i] >> 20, i == 2 ? "-page-heap" : "");
        CHECK_BODY(name) {
            /* Up to three tries, each with a fresh free of the big block:
             * on a shared machine one preemption of this thread can
             * last 50 ms, while a stall behind memscope's own work comes
             * back with every free (the 900 ms one did, every time). */
            double w = -1;
            for (int attempt = 0; attempt < 3 && !(w >= 0 && w < 50); attempt++) {
                uint64_t n = 0;
                memscope_read_stats(&st);
                w = worst_malloc(sizes[i], &n);
                memscope_read_stats(&st);
                fprintf(stderr, "[%llu mallocs, worst %.3f ms, longest heap-lock hold %.3f ms] ", (unsigned long long)n,
                        w, (double)st.heap_lock_max_ns / 1e6);
                if (w < 0) {
                    fprintf(stderr, "[malloc of the big block failed: not tested] ");
                    break;
                }
            }
            result = w >= 0 && w < 50;
        }
    }

    CHECK_BODY("failed-huge-malloc-returns-at-once") {
        memscope_read_stats(&st);
        uint64_t released0 = st.released_total, t0 = now_ns();
        int bad = 0;
        for (int k = 40; k < 64; k++) {
            errno = 0;
            void *volatile p = malloc((size_t)1 << k);
            if (k >= 44 && (p || errno != ENOMEM)) bad++;
            free(p);
        }
        double ms_taken = (double)(now_ns() - t0) / 1e6;
        usleep(200000); /* the scavenger would run now if it had work */
        memscope_read_stats(&st);
        fprintf(stderr, "[24 huge mallocs in %.3f ms, released by the scavenger since: %llu bytes] ", ms_taken,
                (unsigned long long)(st.released_total - released0));
        result = bad == 0 && ms_taken < 1000 && st.released_total - released0 < (64u << 20);
    }
    CHECK_BODY("leak-check-beside-frees-of-mapped-blocks") {
        size_t n = seconds < 2 ? 500000 : 2000000;
        for (size_t i = 0; i < n; i++) {
            node_t *b = malloc(sizeof(node_t) + 16 * (i % 8));
            if (!b) break;
            b->next = chain;
            chain = b;
        }
        bigs[0] = malloc((size_t)1 << 30);
        bigs[1] = malloc((size_t)1 << 30);
        pthread_t t;
        pthread_create(&t, NULL, during_check, NULL);
        int fd = open("/dev/null", O_WRONLY);
        atomic_store(&check_state, 1);
        uint64_t t0 = now_ns();
        long rc = memscope_check_leaks(fd);
        double took = (double)(now_ns() - t0) / 1e6;
        atomic_store(&check_state, 2);
        pthread_join(t, NULL);
        close(fd);
        fprintf(stderr, "[check of %zu blocks: %.0f ms, rc %ld; worst malloc beside it %.3f ms] ", n, took, rc,
                during_worst_ms);
        /* the worst malloc includes the root capture's pause and, on a busy
         * machine, preemption: the bound only says the thread was never
         * held up for a large part of the check */
        result = rc >= 0 && bigs[0] != NULL && during_worst_ms < took / 2;
        free(bigs[0]);
        while (chain) {
            node_t *b = chain;
            chain = b->next;
            free(b);
        }
    }
    return print_test_summary();
}
