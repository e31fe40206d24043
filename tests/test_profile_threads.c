/* test_profile_threads.c: at profile_rate=1 the in-use heap profile is what
 * is live, exactly, under 32 threads that free each other's blocks.
 *
 * Every allocation is sampled at rate 1, so the profile's in-use objects
 * and bytes must move exactly as memscope_read_stats' heap_objects and
 * heap_alloc do, but for the record that a block of a class of up to 1024
 * bytes keeps in its last 8 bytes at rate 1 (src/prof/sample.c, "Records
 * in the tail"): heap_alloc counts the class's bytes, the profile the
 * usable ones (malloc_usable_size), 8 fewer for each such block live
 * (by_size's counts say how many).  Threads put blocks of mixed sizes (16 B to 256 KiB, small
 * and large spans, calloc, realloc that grows in place, shrinks and moves)
 * into shared slots and free what they take out, so most frees happen on
 * another thread than the allocation, and blocks are sampled and freed
 * concurrently in the same spans.  With the threads joined, the change of
 * the profile's totals (from its debug=1 header, through the API) since the
 * start must equal the change of the stats, and the blocks left in the
 * slots must be counted in both; freeing them must bring both back to where
 * they started; snapshots taken while threads allocate and free see each
 * thread's counts up to a point of its own order.  Re-runs itself with
 * MEMSCOPE=profile_rate=1 if that is not already set.  Smaller with
 * MEMSCOPE_TEST_QUICK=1.
 */
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "memscope.h"
#include "testhelper.h"

#define NSLOTS 4096
static _Atomic(void *) slots[NSLOTS];
static int iters = 20000;

static void *worker(void *arg) {
    uint64_t x = (uintptr_t)arg * 0x9E3779B97F4A7C15ull | 1;
    for (int i = 0; i < iters; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t size = (x >> 40) % 100 < 2 ? 40000 + (x >> 20) % 220000 : 16 + (x >> 24) % 2048;
        void *p = (x & 7) == 0 ? calloc(1, size) : malloc(size);
        if (!p) abort();
        if ((x & 15) == 1) { /* realloc: grow, shrink or move */
            void *q = realloc(p, (x >> 8) & 1 ? size * 3 : size / 2 + 1);
            if (!q) abort();
            p = q;
        }
        void *old = atomic_exchange(&slots[(x >> 32) % NSLOTS], p);
        free(old);
    }
    return NULL;
}

/* tail_bytes: the bytes of the records kept in the live blocks' tails,
 * from the stats' counts per class: 8 for each block of a class of up to
 * 1024 bytes */
static long long tail_bytes(const struct memscope_stats *s) {
    long long n = 0;
    for (uint32_t i = 0; i < s->num_classes && i < MEMSCOPE_BY_SIZE_LEN; i++)
        if (s->by_size[i].size != 0 && s->by_size[i].size <= 1024)
            n += (long long)(s->by_size[i].mallocs - s->by_size[i].frees);
    return 8 * n;
}

/* totals: in-use objects and bytes from the profile's debug=1 header */
static int totals(unsigned long long *objs, unsigned long long *bytes) {
    int fd = memfd_create("profile", 0);
    if (fd < 0 || memscope_write_heap_profile_fd(fd, 1) != 0) return -1;
    char head[256] = {0};
    if (pread(fd, head, sizeof head - 1, 0) <= 0) return -1;
    close(fd);
    return sscanf(head, "heap profile: %llu: %llu [", objs, bytes) == 2 ? 0 : -1;
}

/* holder: allocates held[] and waits, alive, until told to free them */
#define NHELD 37 /* fewer than a thread's batch of counts (src/prof/sample.c) */
static void *held[NHELD];
static pthread_barrier_t held_made, held_go;
static void *holder(void *arg) {
    (void)arg;
    for (int i = 0; i < NHELD; i++) held[i] = malloc(48);
    pthread_barrier_wait(&held_made);
    pthread_barrier_wait(&held_go);
    for (int i = 0; i < NHELD; i++) free(held[i]);
    pthread_barrier_wait(&held_made);
    pthread_barrier_wait(&held_go);
    return NULL;
}

/* churner: keeps RING blocks, replacing one at a time, until told to stop
 * (snapshots-while-threads-append) */
#define NCHURN 4
#define RING 50
static _Atomic bool churn_stop;
static pthread_barrier_t churn_made, churn_go;
static void *churner(void *arg) {
    (void)arg;
    void *ring[RING];
    for (int i = 0; i < RING; i++) ring[i] = malloc(24);
    pthread_barrier_wait(&churn_made);
    pthread_barrier_wait(&churn_go);
    for (unsigned i = 0; !atomic_load_explicit(&churn_stop, memory_order_relaxed); i++) {
        void *p = malloc(24 + i % 64);
        if (!p) abort();
        free(ring[i % RING]);
        ring[i % RING] = p;
    }
    for (int i = 0; i < RING; i++) free(ring[i]);
    pthread_barrier_wait(&churn_made);
    pthread_barrier_wait(&churn_go);
    return NULL;
}

int main(int argc, char **argv) {
    th_run_with("profile_rate=1", argv);
    (void)argc;
    int nthreads = 32;
    if (getenv("MEMSCOPE_TEST_QUICK") && atoi(getenv("MEMSCOPE_TEST_QUICK"))) iters = 5000;
    CHECK("rate-is-1", memscope_profile_rate() == 1);

    struct memscope_stats s0 = {.size = sizeof s0}, s1 = {.size = sizeof s1};
    unsigned long long o0, b0, o1, b1;
    CHECK_BODY("profile-follows-live-heap") {
        /* warm-up: the first profile with a stack loads libdw for the file:line
         * of its frames; the loader's allocations (not sampled: memscope's own
         * work) stay for good, so they must precede the baseline.  So may the
         * first read of a library's compressed DWARF (the dynamic loader's,
         * whose frames the threads' blocks of TLS carry): a short run of one
         * worker leaves such blocks for the warm-up's profile. */
        int all = iters;
        iters = 50;
        pthread_t w0;
        pthread_create(&w0, NULL, worker, (void *)(uintptr_t)99);
        pthread_join(w0, NULL);
        iters = all;
        void *volatile warm = malloc(100);
        CHECK_TRUE(totals(&o0, &b0) == 0);
        free(warm);
        CHECK_TRUE(totals(&o0, &b0) == 0);
        memscope_read_stats(&s0);
        pthread_t t[64];
        for (int i = 0; i < nthreads; i++) pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1));
        for (int i = 0; i < nthreads; i++) pthread_join(t[i], NULL);
        memscope_read_stats(&s1);
        CHECK_TRUE(totals(&o1, &b1) == 0);
        long long dobj_prof = (long long)(o1 - o0), dobj_stats = (long long)(s1.heap_objects - s0.heap_objects);
        long long dbytes_prof = (long long)(b1 - b0),
                  dbytes_stats = (long long)(s1.heap_alloc - s0.heap_alloc) - (tail_bytes(&s1) - tail_bytes(&s0));
        fprintf(stderr, "[objects: profile %+lld, stats %+lld; bytes: profile %+lld, stats %+lld] ", dobj_prof,
                dobj_stats, dbytes_prof, dbytes_stats);
        CHECK_TRUE(dobj_prof == dobj_stats);
        CHECK_TRUE(dbytes_prof == dbytes_stats);
        result = true;
    }
    CHECK_BODY("freeing-the-rest-returns-to-start") {
        for (int i = 0; i < NSLOTS; i++) free(atomic_exchange(&slots[i], NULL));
        unsigned long long o2, b2;
        struct memscope_stats s2 = {.size = sizeof s2};
        memscope_read_stats(&s2);
        CHECK_TRUE(totals(&o2, &b2) == 0);
        fprintf(stderr, "[profile %llu objects (start %llu); stats %llu (start %llu)] ", o2, o0,
                (unsigned long long)s2.heap_objects, (unsigned long long)s0.heap_objects);
        CHECK_TRUE((long long)(o2 - o0) == (long long)(s2.heap_objects - s0.heap_objects));
        CHECK_TRUE((long long)(b2 - b0) == (long long)(s2.heap_alloc - s0.heap_alloc) - (tail_bytes(&s2) - tail_bytes(&s0)));
        result = true;
    }
    /* A thread that is still running, and has not allocated since: its
     * last allocations and frees are in the profile another thread takes
     * (counts gathered per thread in leak-check mode are drained for it). */
    CHECK_BODY("a-running-threads-latest-counts-are-in") {
        unsigned long long oa, ba, ob, bb, oc, bc;
        CHECK_TRUE(totals(&oa, &ba) == 0);
        pthread_barrier_init(&held_made, NULL, 2);
        pthread_barrier_init(&held_go, NULL, 2);
        pthread_t t;
        pthread_create(&t, NULL, holder, NULL);
        pthread_barrier_wait(&held_made);
        CHECK_TRUE(totals(&ob, &bb) == 0);
        pthread_barrier_wait(&held_go);
        pthread_barrier_wait(&held_made);
        CHECK_TRUE(totals(&oc, &bc) == 0);
        pthread_barrier_wait(&held_go);
        pthread_join(t, NULL);
        fprintf(stderr, "[in use: %llu, holding %llu, freed %llu] ", oa, ob, oc);
        CHECK_TRUE(ob - oa == NHELD && bb - ba == NHELD * malloc_usable_size(held[0]));
        CHECK_TRUE(oc == oa && bc == ba);
        result = true;
    }
    /* Snapshots taken while threads count: in leak-check mode a thread
     * appends its counts to its batch with no lock, and a snapshot claims
     * each batch and waits for its thread's append to end
     * (src/prof/sample.c).  Each thread's counts come in up to some point
     * of its own order, so while NCHURN threads each hold RING blocks and
     * replace them one at a time (a malloc, then a free), every snapshot
     * finds between RING and RING + 1 blocks of each; when they have freed
     * them all, none.  A count lost or taken twice shows in either. */
    CHECK_BODY("snapshots-while-threads-append") {
        unsigned long long oh, bh, o, b, lo = ~0ull, hi = 0, oe, be;
        pthread_barrier_init(&churn_made, NULL, NCHURN + 1);
        pthread_barrier_init(&churn_go, NULL, NCHURN + 1);
        pthread_t t[NCHURN];
        for (int i = 0; i < NCHURN; i++) pthread_create(&t[i], NULL, churner, NULL);
        pthread_barrier_wait(&churn_made);
        CHECK_TRUE(totals(&oh, &bh) == 0); /* every thread holds RING */
        pthread_barrier_wait(&churn_go);
        int snaps = getenv("MEMSCOPE_TEST_QUICK") ? 100 : 400, bad = 0;
        for (int k = 0; k < snaps; k++) {
            if (totals(&o, &b) != 0) bad++;
            if (o < lo) lo = o;
            if (o > hi) hi = o;
        }
        atomic_store(&churn_stop, true);
        pthread_barrier_wait(&churn_made);
        CHECK_TRUE(totals(&oe, &be) == 0); /* the threads live, their blocks freed */
        pthread_barrier_wait(&churn_go);
        for (int i = 0; i < NCHURN; i++) pthread_join(t[i], NULL);
        fprintf(stderr, "[holding %llu, while churning %llu..%llu, after %llu] ", oh, lo, hi, oe);
        CHECK_TRUE(bad == 0);
        CHECK_TRUE(lo >= oh && hi <= oh + NCHURN);
        CHECK_TRUE(oe + NCHURN * RING == oh);
        result = true;
    }
    /* A program may write all of malloc_usable_size: in leak-check mode
     * that leaves out the record kept in the block's last bytes, so every
     * free still finds its record and the profile's in-use totals come
     * back to where they were (a usable size that took the record in
     * leaves the frees uncounted) */
    CHECK_BODY("usable-bytes-spare-the-records") {
        enum { NFILL = 3000 };
        static unsigned char *blk[NFILL];
        unsigned long long o0f, b0f, o1f, b1f, o2f, b2f;
        CHECK_TRUE(totals(&o0f, &b0f) == 0);
        size_t want = 0;
        for (int i = 0; i < NFILL; i++) {
            blk[i] = malloc(1 + (size_t)(i * 37) % 1100);
            if (!blk[i]) abort();
            size_t u = malloc_usable_size(blk[i]);
            memset(blk[i], 0xa5, u);
            want += u;
        }
        CHECK_TRUE(totals(&o1f, &b1f) == 0);
        for (int i = 0; i < NFILL; i++) free(blk[i]);
        CHECK_TRUE(totals(&o2f, &b2f) == 0);
        fprintf(stderr, "[filled: %+lld objects, %+lld bytes (usable %zu); after: %+lld, %+lld] ",
                (long long)(o1f - o0f), (long long)(b1f - b0f), want, (long long)(o2f - o0f), (long long)(b2f - b0f));
        CHECK_TRUE(o1f - o0f == NFILL && b1f - b0f == want);
        CHECK_TRUE(o2f == o0f && b2f == b0f);
        result = true;
    }
    /* Leak-check mode keeps a block of up to 1024 bytes' record in the
     * block's last bytes, and a larger one's in an array of its span's,
     * which stays for as long as the span is in use and must go with it
     * (src/prof/sample.c).  100,000 blocks of 32 bytes take no metadata
     * for their records (an array per span took 390 KiB); 20,000 of 1,100
     * bytes (about 1,430 spans of 14, an array of 128 bytes each)
     * allocated, freed, and every idle span handed back: the metadata in
     * use returns to about where it was (without the hand-back it stays
     * 180 KiB higher). */
    CHECK_BODY("records-in-tails-and-with-their-spans") {
        enum { N = 100000, NBIG = 20000 };
        static void *blk[N];
        struct memscope_stats m0 = {.size = sizeof m0}, m1 = {.size = sizeof m1}, m2 = {.size = sizeof m2};
        memscope_free_os_memory();
        memscope_read_stats(&m0);
        for (int i = 0; i < N; i++) blk[i] = malloc(32);
        memscope_read_stats(&m1);
        for (int i = 0; i < N; i++) free(blk[i]);
        long long tails = (long long)(m1.metadata_inuse - m0.metadata_inuse);
        memscope_free_os_memory();
        memscope_read_stats(&m0);
        for (int i = 0; i < NBIG; i++) blk[i] = malloc(1100);
        memscope_read_stats(&m1);
        for (int i = 0; i < NBIG; i++) free(blk[i]);
        memscope_free_os_memory();
        memscope_read_stats(&m2);
        long long grew = (long long)(m1.metadata_inuse - m0.metadata_inuse);
        long long left = (long long)(m2.metadata_inuse - m0.metadata_inuse);
        fprintf(stderr, "[metadata in use: %+lld KiB with the small blocks; %+lld KiB with the large, %+lld KiB after] ",
                tails >> 10, grew >> 10, left >> 10);
        CHECK_TRUE(tails < 64 << 10); /* no arrays */
        CHECK_TRUE(grew > 128 << 10); /* the arrays were there */
        CHECK_TRUE(left < 64 << 10);
        result = true;
    }
    return print_test_summary();
}
