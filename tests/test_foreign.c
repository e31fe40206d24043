/* test_foreign.c: frees of blocks the freeing thread never allocated.
 *
 * Until a thread's first malloc of a size class, what it frees of that
 * class is not cached for its own reuse: it goes back to the central list
 * in batches (src/tcache.c).  Checks:
 *   - passive false sharing (Hoard's cache-scratch): the main thread
 *     allocates two adjacent 208-byte blocks (a class nothing else here
 *     uses, so its span is fresh), each of two threads frees one and then
 *     allocates its own: neither gets one of the given blocks back, and the
 *     two threads' blocks do not share a cache line (with the given blocks
 *     cached for reuse, each thread got its own back, and the two lay in
 *     one line);
 *   - a pure consumer (frees 10,000 blocks, allocates nothing) loses no
 *     count: heap_objects is back where it started, and the blocks come
 *     back to a fresh round of allocations with no address twice;
 *   - a thread that frees foreign blocks of a class and then allocates it
 *     many times keeps the counts exact.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "memscope.h"
#include "testhelper.h"

#define LINE(p) ((uintptr_t)(p) >> 6)
#define CONSUMED 10000

static void *given[2];
static void *got[2];
static pthread_barrier_t both;

static void *scratch(void *arg) {
    int t = (int)(intptr_t)arg;
    free(given[t]);
    pthread_barrier_wait(&both); /* both frees happen before either malloc */
    got[t] = malloc(208);
    memset(got[t], t, 208);
    pthread_barrier_wait(&both); /* both blocks stay live until compared */
    return NULL;
}

static void *blocks[CONSUMED];

static void *consumer(void *arg) {
    (void)arg;
    for (int i = 0; i < CONSUMED; i++) free(blocks[i]);
    return NULL;
}

static void *free_then_alloc(void *arg) {
    (void)arg;
    for (int i = 0; i < CONSUMED / 2; i++) free(blocks[i]);
    void **mine = malloc(sizeof(void *) * CONSUMED);
    for (int i = 0; i < CONSUMED; i++) mine[i] = malloc(48);
    for (int i = 0; i < CONSUMED; i++) free(mine[i]);
    free(mine);
    for (int i = CONSUMED / 2; i < CONSUMED; i++) free(blocks[i]);
    return NULL;
}


/* counted_rounds: three times, the main thread allocates CONSUMED blocks
 * (of `size` bytes, or 16..128 when 0) and a new thread runs fn on them;
 * heap_objects must be back where it started, rounds 1 and 2 checked. */
static bool counted_rounds(void *(*fn)(void *), size_t size) {
    bool ok = true;
    for (int r = 0; r < 3 && ok; r++) {
        uint64_t before = th_heap_objects();
        for (int i = 0; i < CONSUMED; i++) blocks[i] = malloc(size ? size : 16 + 16 * (size_t)(i % 8));
        pthread_t th;
        pthread_create(&th, NULL, fn, NULL);
        pthread_join(th, NULL);
        uint64_t after = th_heap_objects();
        if (r > 0) ok = CHECK_TRUE(before != UINT64_MAX && after == before);
        if (!ok)
            fprintf(stderr, "round %d: %llu live objects before, %llu after\n", r, (unsigned long long)before,
                    (unsigned long long)after);
    }
    return ok;
}

static int cmp_ptr(const void *a, const void *b) {
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

int main(void) {
    free(malloc(1));
    CHECK_BODY("passive-false-sharing") {
        given[0] = malloc(208);
        given[1] = malloc(208);
        result = CHECK_TRUE((char *)given[1] == (char *)given[0] + 208 && LINE(given[1]) == LINE(given[0]) + 3);
        void *g0 = given[0], *g1 = given[1];
        pthread_t th[2];
        pthread_barrier_init(&both, NULL, 2);
        for (int t = 0; t < 2; t++) pthread_create(&th[t], NULL, scratch, (void *)(intptr_t)t);
        for (int t = 0; t < 2; t++) pthread_join(th[t], NULL);
        pthread_barrier_destroy(&both);
        result = result && CHECK_TRUE(got[0] != g0 && got[0] != g1 && got[1] != g0 && got[1] != g1) &&
                 CHECK_TRUE(LINE(got[0]) != LINE(got[1]) && LINE(got[0]) != LINE((char *)got[1] + 207) &&
                            LINE((char *)got[0] + 207) != LINE(got[1]));
        if (!result) fprintf(stderr, "given %p %p, got %p %p\n", g0, g1, got[0], got[1]);
        free(got[0]);
        free(got[1]);
    }
    /* round 0 of each count check is not checked: glibc keeps a block or
     * two per thread (its stack cache) the first time a thread runs */
    CHECK_BODY("pure-consumer-counted-and-returned") {
        result = counted_rounds(consumer, 0);
        for (int i = 0; i < CONSUMED; i++) blocks[i] = malloc(16 + 16 * (i % 8));
        qsort(blocks, CONSUMED, sizeof blocks[0], cmp_ptr);
        for (int i = 1; i < CONSUMED && result; i++) result = CHECK_TRUE(blocks[i] != blocks[i - 1]);
        for (int i = 0; i < CONSUMED; i++) free(blocks[i]);
    }
    CHECK_BODY("free-then-allocate-counted") { result = counted_rounds(free_then_alloc, 48); }
    return print_test_summary();
}
