/* test_cacheless.c: frees by threads that have no cache of their own.
 *
 * A thread's cache is made on its first allocation, and goes at its exit;
 * until then and after that, free's fast path runs on the one empty cache
 * that all such threads share, and takes room on its lists before it sees
 * there is none (tclist_t in src/internal.h: the room there stays at 0 or
 * below whatever the threads race to write, so each such free goes to the
 * slow path).  Here many threads do exactly that at once: each one's first
 * call is a free (released together by a barrier), and each frees more
 * blocks from a thread-specific-data destructor that runs after memscope's
 * own has taken its cache away.  A free that landed on the shared lists
 * would be lost to the counts and handed out again by another cacheless
 * thread, so afterwards:
 *   - heap_objects is back where it started (every free counted once);
 *   - a fresh batch of allocations has no address twice.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "memscope.h"
#include "testhelper.h"

#define THREADS 8
#define FIRST 600 /* freed by the thread's body, more than a list holds */
#define LATE 200  /* freed from its destructor, past its cache's exit */
#define PER (FIRST + LATE)

static const size_t sizes[] = {16, 48, 256, 3072};
static void *blocks[THREADS][PER];
static pthread_barrier_t start;
static pthread_key_t late_key;

static void free_late(void *arg) {
    void **b = arg;
    for (int i = FIRST; i < PER; i++) free(b[i]);
}

static void *cacheless(void *arg) {
    void **b = arg;
    pthread_barrier_wait(&start);
    for (int i = 0; i < FIRST; i++) free(b[i]);
    pthread_setspecific(late_key, b);
    return NULL;
}

static int cmp_ptr(const void *a, const void *b) {
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}


int main(void) {
    int rounds = getenv("MEMSCOPE_TEST_QUICK") && atoi(getenv("MEMSCOPE_TEST_QUICK")) ? 20 : 200;
    /* memscope makes its own key on its first call: a key made after it
     * has its destructor run after memscope's, when the cache is gone */
    free(malloc(1));
    pthread_key_create(&late_key, free_late);
    CHECK_BODY("cacheless-threads-free-counted-once") {
        static void *again[THREADS * PER];
        /* round 0 is not checked: glibc keeps a few blocks per thread
         * (its stack cache holds them) the first time */
        for (int r = 0; r <= rounds && result; r++) {
            pthread_t th[THREADS];
            pthread_barrier_init(&start, NULL, THREADS);
            uint64_t before = th_heap_objects();
            result = CHECK_TRUE(before != UINT64_MAX);
            for (int t = 0; t < THREADS; t++)
                for (int i = 0; i < PER; i++) blocks[t][i] = malloc(sizes[(t + i) % 4]);
            /* the threads' stacks and descriptors come from mmap, not malloc */
            for (int t = 0; t < THREADS; t++) pthread_create(&th[t], NULL, cacheless, blocks[t]);
            for (int t = 0; t < THREADS; t++) pthread_join(th[t], NULL);
            pthread_barrier_destroy(&start);
            uint64_t after = th_heap_objects();
            if (r > 0) result = result && CHECK_TRUE(after == before);
            if (!result) fprintf(stderr, "round %d: %llu live objects before, %llu after\n", r,
                                 (unsigned long long)before, (unsigned long long)after);
            for (int i = 0; i < THREADS * PER; i++) again[i] = malloc(sizes[i % 4]);
            qsort(again, THREADS * PER, sizeof again[0], cmp_ptr);
            for (int i = 1; i < THREADS * PER && result; i++) result = CHECK_TRUE(again[i] != again[i - 1]);
            for (int i = 0; i < THREADS * PER; i++) free(again[i]);
        }
    }
    return print_test_summary();
}
