/* test_counters.c: published counters never go backwards and never wrap
 * (issue 7, src/stats.c), under cross-thread churn.
 *
 * Worker threads pass blocks to each other through a shared array of slots:
 * each one frees what another allocated, so a free is often counted by one
 * thread before (in the reader's walk) the matching malloc of another.
 * Workers also exit and are replaced, moving their counts to the orphan
 * counters.  Meanwhile one reader calls memscope_read_stats and mallinfo2 in
 * a loop and checks, read after read:
 *   - mallocs, frees, total_alloc, released_total, num_gc, num_scavenge and
 *     every by_size count never decrease;
 *   - frees <= mallocs, heap_objects = mallocs - frees;
 *   - heap_alloc, heap_objects and mallinfo2's fields stay below plausible
 *     bounds (far below the ~1.8e19 of a wrapped subtraction).
 */
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "memscope.h"
#include "testhelper.h"

#define NSLOTS 2 /* few live objects per class: a small read skew makes frees > mallocs */
#define BOUND ((uint64_t)1 << 40) /* 1 TiB: no test here comes near it */
static _Atomic(void *) slots[NSLOTS];
static atomic_bool stop;
static int rounds;

static void *worker(void *arg) {
    uint64_t x = (uintptr_t)arg * 0x9E3779B97F4A7C15ull + 1;
    for (int i = 0; i < rounds; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t sz = 32;
        if ((x & 63) == 0) sz = 16 + (x >> 40) % 2000;
        if ((x & 1023) == 0) sz = 40000 + (x >> 20) % 100000; /* some large blocks */
        void *p = malloc(sz);
        if (p) memset(p, 1, 16);
        void *old = atomic_exchange(&slots[(x >> 8) % NSLOTS], p);
        free(old); /* most likely allocated by another thread */
    }
    return NULL;
}

static void *churn(void *arg) {
    int gen = 0;
    while (!atomic_load(&stop)) {
        pthread_t t[4];
        for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(gen * 4 + i + 1));
        for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
        gen++;
    }
    return NULL;
}

int main(void) {
    rounds = getenv("MEMSCOPE_TEST_QUICK") && atoi(getenv("MEMSCOPE_TEST_QUICK")) ? 3000 : 5000;
    pthread_t c[2];
    for (int i = 0; i < 2; i++) pthread_create(&c[i], NULL, churn, NULL);

    struct memscope_stats last = {.size = sizeof last}, st = {.size = sizeof st};
    memscope_read_stats(&last);
    long reads = 0, backwards = 0, wrapped = 0, mi_wrapped = 0, identity = 0;
    char first_bad[200] = "";
    for (int iter = 0; iter < 150000; iter++) {
        memscope_read_stats(&st);
        reads++;
#define MONO(f)                                                                                            \
    if (st.f < last.f) {                                                                                   \
        if (!backwards++) snprintf(first_bad, sizeof first_bad, #f " went from %llu to %llu",             \
                                   (unsigned long long)last.f, (unsigned long long)st.f);                  \
    }
        MONO(mallocs) MONO(frees) MONO(total_alloc) MONO(released_total) MONO(num_gc) MONO(num_scavenge)
        for (unsigned k = 0; k < st.num_classes; k++) {
            MONO(by_size[k].mallocs)
            MONO(by_size[k].frees)
        }
        if (st.heap_alloc > BOUND || st.heap_objects > BOUND || st.alloc > BOUND) {
            if (!wrapped++ && !first_bad[0])
                snprintf(first_bad, sizeof first_bad, "heap_alloc %llu heap_objects %llu",
                         (unsigned long long)st.heap_alloc, (unsigned long long)st.heap_objects);
        }
        if (st.frees > st.mallocs || st.heap_objects != st.mallocs - st.frees) identity++;
        if (iter % 64 == 0) {
            struct mallinfo2 mi = mallinfo2();
            if (mi.uordblks > BOUND || mi.fordblks > BOUND || mi.keepcost > BOUND) mi_wrapped++;
        }
        last = st;
    }
    atomic_store(&stop, true);
    for (int i = 0; i < 2; i++) pthread_join(c[i], NULL);
    fprintf(stderr, "%ld reads; %ld backwards, %ld wrapped, %ld mallinfo2 wrapped, %ld identity%s%s\n", reads,
            backwards, wrapped, mi_wrapped, identity, first_bad[0] ? "; first: " : "", first_bad);

    CHECK("no-counter-goes-backwards", backwards == 0);
    CHECK("no-value-wraps", wrapped == 0);
    CHECK("mallinfo2-no-wrap", mi_wrapped == 0);
    CHECK("frees<=mallocs,objects=mallocs-frees", identity == 0);
    CHECK("counters-moved", st.mallocs > 1000);
    for (int i = 0; i < NSLOTS; i++) free(atomic_load(&slots[i]));
    return print_test_summary();
}
