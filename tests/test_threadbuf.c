/* test_threadbuf.c: a program that starts and ends threads maps no
 * profiler capture buffer per thread, and keeps no more than 64 of them.
 *
 * A thread's first sample gives it a capture buffer (src/prof/stack.c), and
 * its exit used to unmap it: an munmap per thread, which stops the threads
 * running on the other CPUs while the kernel flushes their TLBs.  A retired
 * buffer now goes to the next thread's cache (src/tcache.c: spare_own), up
 * to 64 of them.  This program counts memscope's munmap calls by defining
 * munmap itself (the library's call binds to the program's definition) and
 * checks, at profile_rate=1, that 200 threads run one after another unmap
 * nothing; that 80 threads alive at once, then ended, unmap the 16 buffers
 * past the 64 kept; that the metadata in use comes back to where it was
 * while the kept buffers stay mapped; and that every thread's samples are
 * still recorded, in a buffer cleared for it (the heap profile's live
 * objects move exactly as the heap's do, by the blocks the threads leave).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "memscope.h"
#include "testhelper.h"

static _Atomic unsigned long unmaps;

int munmap(void *addr, size_t len) {
    atomic_fetch_add(&unmaps, 1);
    return (int)syscall(SYS_munmap, addr, len);
}

#define KEEP 64      /* src/tcache.c: SPARE_OWN_MAX */
#define LIVE_EACH 3  /* blocks each thread leaves live */
static void *kept[400][LIVE_EACH];
static pthread_barrier_t all_up;
static bool use_barrier;

/* each thread samples (rate 1: every block) and leaves LIVE_EACH blocks */
static void *worker(void *arg) {
    uintptr_t t = (uintptr_t)arg;
    for (int i = 0; i < 50; i++) free(malloc(24 + (size_t)i));
    for (int i = 0; i < LIVE_EACH; i++) kept[t][i] = malloc(100);
    if (use_barrier) pthread_barrier_wait(&all_up);
    return NULL;
}

static bool stats(struct memscope_stats *st) {
    memset(st, 0, sizeof *st);
    st->size = sizeof *st;
    return memscope_read_stats(st) == 0;
}

/* the sampled profile's live objects, from its debug=1 header */
static long profile_objects(void) {
    FILE *f = tmpfile();
    if (!f || memscope_write_heap_profile_fd(fileno(f), 1) != 0) return -1;
    char head[256] = {0};
    long objs = -1;
    if (pread(fileno(f), head, sizeof head - 1, 0) > 0 && sscanf(head, "heap profile: %ld:", &objs) != 1) objs = -1;
    fclose(f);
    return objs;
}

static bool run(uintptr_t first, int n, bool together) {
    pthread_t tid[100];
    use_barrier = together;
    if (together) pthread_barrier_init(&all_up, NULL, (unsigned)n);
    for (int i = 0; i < n; i++) {
        if (pthread_create(&tid[i], NULL, worker, (void *)(first + (uintptr_t)i)) != 0) return false;
        if (!together) pthread_join(tid[i], NULL);
    }
    if (together)
        for (int i = 0; i < n; i++) pthread_join(tid[i], NULL);
    if (together) pthread_barrier_destroy(&all_up);
    return true;
}

int main(int argc, char **argv) {
    (void)argc;
    th_run_with("profile_rate=1", argv);
    struct memscope_stats s0, s1, s2;
    /* one thread first: the buffer kept from then on is reused */
    run(0, 1, false);
    /* and an allocation after it, which starts memscope's scavenger thread
     * (its exit left a span idle; in a process with threads the start waits
     * for the next allocation: scavenger.c, start_here): glibc's blocks for
     * that thread are heap objects the profile never holds, and must not
     * fall in the counts below */
    void *volatile big = malloc(1 << 20);
    free(big);
    long objs0 = profile_objects();
    CHECK_TRUE(stats(&s0));

    CHECK_BODY("threads-one-after-another-unmap-nothing") {
        unsigned long u0 = atomic_load(&unmaps);
        for (int k = 0; k < 2; k++) run(1 + (uintptr_t)k * 100, 100, false);
        unsigned long du = atomic_load(&unmaps) - u0;
        fprintf(stderr, "(%lu munmaps for 200 threads) ", du);
        result = CHECK_TRUE(du == 0);
    }
    CHECK_BODY("80-threads-at-once-keep-64-buffers") {
        unsigned long u0 = atomic_load(&unmaps);
        CHECK_TRUE(run(201, 80, true));
        unsigned long du = atomic_load(&unmaps) - u0;
        fprintf(stderr, "(%lu munmaps) ", du);
        /* 80 buffers: the one kept before and 79 mapped; 64 kept at the end */
        result = CHECK_TRUE(du == 80 - KEEP);
    }
    CHECK_BODY("kept-buffers-are-mapped-not-in-use") {
        CHECK_TRUE(stats(&s1));
        int64_t din = (int64_t)s1.metadata_inuse - (int64_t)s0.metadata_inuse;
        int64_t dsys = (int64_t)s1.metadata_sys - (int64_t)s0.metadata_sys;
        fprintf(stderr, "(metadata in use %+lld, mapped %+lld bytes) ", (long long)din, (long long)dsys);
        /* 63 more buffers of at least 4 KiB wait, mapped; what is in use
         * moved by the profiler's records of the new live blocks (about
         * 120 KiB), not by the buffers */
        CHECK_TRUE(dsys >= 63 * 4096);
        result = CHECK_TRUE(din < 63 * 4096);
    }
    CHECK_BODY("every-thread-sampled") {
        long objs = profile_objects();
        struct memscope_stats now;
        CHECK_TRUE(stats(&now));
        long live = (long)(now.heap_objects - s0.heap_objects);
        fprintf(stderr, "(profile objects %ld -> %ld, heap objects %+ld) ", objs0, objs, live);
        /* at rate 1 the profile holds every live block: it moves as the
         * heap does, by at least what the threads left */
        result = CHECK_TRUE(objs0 >= 0 && objs - objs0 == live && live >= 280L * LIVE_EACH);
    }
    CHECK_BODY("a-second-round-reuses-them") {
        unsigned long u0 = atomic_load(&unmaps);
        CHECK_TRUE(run(281, 80, true));
        unsigned long du = atomic_load(&unmaps) - u0;
        CHECK_TRUE(stats(&s2));
        fprintf(stderr, "(%lu munmaps, mapped %+lld bytes) ", du,
                (long long)((int64_t)s2.metadata_sys - (int64_t)s1.metadata_sys));
        /* 64 handed on, 16 mapped anew and unmapped again */
        result = CHECK_TRUE(du == 80 - KEEP);
    }
    for (int t = 0; t < 361; t++)
        for (int i = 0; i < LIVE_EACH; i++) free(kept[t][i]);
    return print_test_summary();
}
