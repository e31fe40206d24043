/* test_unit_parkwake: a thread that wakes while the scavenger is parking
 * its cache.
 *
 * Parking (tcache.c, "Quiet threads") points a blocked thread's ms_tc at
 * the shared empty cache, looks again, and points it back if the thread
 * ran meanwhile.  A thread that wakes in between runs malloc's or free's
 * fast path on the empty cache, and its slow path then finds ms_tc pointing
 * at its own cache again: the slow path must take the class from the list
 * the fast path used, not from ms_tc read a second time (the index of an
 * empty cache's list in the thread's own cache is garbage: a free wrote
 * past the cache's arrays, a malloc set up a central list out of bounds;
 * test_faults.sh's scavenge_delay_ms=0 case failed about once in 300 runs
 * with a corrupt page-heap list).
 *
 *   step back (exact): the thread itself plays the scavenger.  It points
 *           its ms_tc at the empty cache, as the scavenger's first store
 *           does, and calls malloc, then free; the debug build's hook at
 *           the entry of their slow paths points ms_tc back, as the
 *           scavenger's second store does when the thread ran.  Both must
 *           work on the right class: the block allocated must be usable
 *           and counted, the block freed must be free (the heap's object
 *           count, and the debug build's heap checks on every operation).
 *   stress: CONSUMERS threads block in read() on a pipe each, waiting for
 *           blocks the main thread allocates and sends; each frees what
 *           it gets (a pure consumer: every free takes the slow path) and
 *           allocates and frees two blocks of a class of its own.  They
 *           are quiet, so the scavenger parks their caches over and over.
 *           The main thread watches each consumer's cache (this test links
 *           memscope statically and sees its symbols) and wakes a consumer
 *           the moment the scavenger points it at the empty cache, before
 *           it looks again: many wakes land inside the window (the slow
 *           path must then come right after the fast path for the race to
 *           bite, which is why the step back above is played exactly).
 *           Every block must keep its pattern and the heap's object count
 *           must come back.
 * Run with scavenge_delay_ms=0.
 */
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "memscope.h"
#include "testhelper.h"

#define CONSUMERS 4
static int pipes[CONSUMERS][2];
static tcache_t **_Atomic slot_of[CONSUMERS]; /* each consumer's &ms_tc */
static tcache_t *_Atomic cache_of[CONSUMERS];  /* and its own cache */
static _Atomic uint64_t bad, got;

static void fill(unsigned char *p, size_t n, unsigned tag) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(tag + i);
}
static bool intact(const unsigned char *p, size_t n, unsigned tag) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(tag + i)) return false;
    return true;
}

static void *consumer(void *arg) {
    int id = (int)(intptr_t)arg;
    /* a class of its own, allocated one at a time: its list is emptied by
     * every malloc below, so the next one takes the slow path */
    size_t own = ms_class_size[8 + id % 16];
    void *volatile first = malloc(own); /* its cache exists (volatile: see main) */
    free(first);
    atomic_store(&cache_of[id], ms_tc);
    atomic_store(&slot_of[id], &ms_tc);
    for (;;) {
        unsigned char *p;
        if (read(pipes[id][0], &p, sizeof p) != (ssize_t)sizeof p || !p) break;
        if (!intact(p, 64, (unsigned)id)) atomic_fetch_add(&bad, 1);
        free(p);
        unsigned char *q = malloc(own), *r = malloc(own);
        fill(q, own, 7), fill(r, own, 9);
        if (!intact(q, own, 7) || !intact(r, own, 9)) atomic_fetch_add(&bad, 1);
        free(q), free(r);
        atomic_fetch_add(&got, 1);
    }
    return NULL;
}

/* step_back: the scavenger's second store, once */
static tcache_t *own;
static void step_back(void) {
    ms_tc = own;
    ms_debug_slow_entry = NULL;
}

static uint64_t heap_objects(void) {
    struct memscope_stats st = {.size = sizeof st};
    memscope_read_stats(&st);
    return st.heap_objects;
}

int main(int argc, char **argv) {
    (void)argc;
    th_run_with("scavenge_delay_ms=0", argv);
    bool quick = getenv("MEMSCOPE_TEST_QUICK") && atoi(getenv("MEMSCOPE_TEST_QUICK")) > 0;
    /* step back, malloc: a class this thread never used, so its list is
     * empty and malloc takes the slow path */
    size_t size = ms_class_size[20];
    void *volatile warm = malloc(16); /* the thread's cache exists */
    free(warm);
    own = ms_tc;
    uint64_t objs0 = heap_objects();
    ms_tc = &ms_tc_empty;
    ms_debug_slow_entry = step_back;
    unsigned char *a = malloc(size);
    CHECK("step-back-malloc-hook-ran", ms_debug_slow_entry == NULL && ms_tc == own);
    /* a block of the class asked for, exactly */
    CHECK("step-back-malloc-block", a != NULL && malloc_usable_size(a) == size && ms_size_class(size) == 20);
    if (a) fill(a, size, 3);
    CHECK("step-back-malloc-counted", heap_objects() == objs0 + 1);
    /* step back, free: a block of a class whose list is full or never
     * allocated from (the empty cache's lists are all "full") */
    ms_tc = &ms_tc_empty;
    ms_debug_slow_entry = step_back;
    free(a);
    CHECK("step-back-free-hook-ran", ms_debug_slow_entry == NULL && ms_tc == own);
    CHECK("step-back-free-counted", heap_objects() == objs0);
    void *b = malloc(size); /* the heap still hands out sound blocks of the class */
    CHECK("step-back-class-usable", b != NULL);
    free(b);

    pthread_t t[CONSUMERS];
    for (int i = 0; i < CONSUMERS; i++) {
        if (pipe(pipes[i]) != 0) return 2;
        pthread_create(&t[i], NULL, consumer, (void *)(intptr_t)i);
    }
    void *volatile big = malloc(1 << 20); /* (volatile: the compiler drops a malloc freed unused) */
    free(big); /* pages go idle: the scavenger starts */
    usleep(20000);
    uint64_t base = heap_objects(), parks0 = atomic_load(&ms_tcache_parks), sent = 0;
    uint64_t x = 88172645463325252ull;
    struct timespec end, now;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += quick ? 4 : 10;
    for (int i = 0; i < CONSUMERS; i++)
        while (!atomic_load(&slot_of[i])) usleep(1000);
    uint64_t spotted = 0, polls = 0;
    do {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int id = (int)(x % CONSUMERS);
        /* every 2-4 ms at random, and at once for a consumer whose ms_tc
         * the scavenger has just pointed at the empty cache (TAKING,
         * tcache.c: 1), between its two looks */
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        long spin_ns = 2000000 + (long)(x >> 44) % 2000000;
        for (;; polls++) { /* spinning: the window is tens of microseconds */
            int i = 0;
            while (i < CONSUMERS && !(atomic_load(&atomic_load(&cache_of[i])->park) == 1 &&
                                      *(tcache_t *volatile *)atomic_load(&slot_of[i]) == &ms_tc_empty))
                i++;
            if (i < CONSUMERS) {
                id = i, spotted++;
                break;
            }
            clock_gettime(CLOCK_MONOTONIC, &t1);
            if ((t1.tv_sec - t0.tv_sec) * 1000000000L + t1.tv_nsec - t0.tv_nsec > spin_ns) break;
        }
        unsigned char *p = malloc(64);
        fill(p, 64, (unsigned)id);
        if (write(pipes[id][1], &p, sizeof p) != (ssize_t)sizeof p) return 2;
        sent++;
        sched_yield(); /* the CPU to the consumer, while the scavenger looks again on the other */
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while (now.tv_sec < end.tv_sec || (now.tv_sec == end.tv_sec && now.tv_nsec < end.tv_nsec));
    fprintf(stderr, "[%llu wakes sent the moment a cache was being parked] ", (unsigned long long)spotted);
    for (int i = 0; i < CONSUMERS; i++) {
        unsigned char *none = NULL;
        if (write(pipes[i][1], &none, sizeof none) != (ssize_t)sizeof none) return 2;
    }
    for (int i = 0; i < CONSUMERS; i++) pthread_join(t[i], NULL);
    uint64_t parks = atomic_load(&ms_tcache_parks) - parks0, objs = heap_objects();
    fprintf(stderr, "[%llu blocks sent, %llu received; %llu caches parked; objects %llu, before %llu] ",
            (unsigned long long)sent, (unsigned long long)atomic_load(&got), (unsigned long long)parks,
            (unsigned long long)objs, (unsigned long long)base);
    CHECK("every-block-received", atomic_load(&got) == sent);
    CHECK("patterns-intact", atomic_load(&bad) == 0);
    CHECK("caches-looked-at", parks + spotted >= 100);
    /* within what glibc may keep or let go of for the exited consumers
     * (a block of dynamic TLS each, kept with a cached stack) */
    CHECK("counts-exact", objs <= base + CONSUMERS && objs + CONSUMERS >= base);
    return print_test_summary();
}
