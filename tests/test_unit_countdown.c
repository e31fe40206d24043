/* test_unit_countdown: malloc's sampling countdown, one per class in
 * mallocs (malloc.c: class_due), samples as the countdown in bytes did,
 * and the same word counts the class's mallocs exactly.
 *
 * With the profiler's hooks replaced by counting ones and a small
 * profile_rate (so that a countdown is drawn every few mallocs):
 *   - draws: mallocs of two classes in turn (16 and 4000 bytes) are
 *     sampled each in proportion 1 - exp(-size / rate) (within 6 sigma),
 *     the first malloc of a class included: the countdown of a class
 *     does not depend on the bytes of the other;
 *   - exact: the stats' mallocs and frees of a class grow by exactly the
 *     program's, however many countdowns were drawn between;
 *   - reads: another thread's reads of the class's mallocs (the stats,
 *     tcache.c: mallocs_of), made while the owner allocates and draws,
 *     never count a malloc that has not begun nor miss one that returned
 *     before the read began;
 *   - frees read while moving: another thread's reads of the class's
 *     frees (tcache.c: frees_of), while the owner frees in bursts that
 *     overflow its list to the central lists and mallocs in bursts that
 *     refill it (objects moving between the terms the read sums), never
 *     count a free that has not begun.
 * Linked against the debug archive (internal symbols).
 */
#include <math.h>
#include <pthread.h>

#include "internal.h"
#include "testhelper.h"

static uint64_t nsampled[2];
static uint32_t hook_stack(const uintptr_t *fp) {
    (void)fp;
    return UINT32_MAX;
}
static bool hook_sampled(void *p, size_t size, uint32_t id) {
    (void)p, (void)id;
    nsampled[size > 16]++;
    return true;
}

/* churn1: one malloc and free of `size` bytes, which the compiler may
 * not take out */
static void churn1(size_t size) {
    void *volatile p = malloc(size);
    free(p);
}

static uint64_t class_mallocs(uint8_t c, uint64_t *frees) {
    static class_counts_t by[MS_NUM_CLASSES];
    uint64_t la, lf, cached;
    uint32_t n;
    ms_tcache_totals(by, &la, &lf, &cached, &n);
    if (frees) *frees = by[c].frees;
    return by[c].mallocs;
}

/* the owner of the "reads" case: mallocs and frees of 48 bytes, its
 * progress published after each malloc returns */
static _Atomic uint64_t done;
static _Atomic bool stop;
static void *owner(void *arg) {
    (void)arg;
    churn1(48); /* a cache of its own */
    uint64_t base = class_mallocs(ms_size_class(48), NULL);
    atomic_store(&done, base);
    for (uint64_t i = 1; !atomic_load(&stop); i++) {
        void *volatile p = malloc(48);
        atomic_store(&done, base + i);
        free(p);
    }
    return NULL;
}

/* the owner of the "frees" case: bursts of 300 mallocs and 300 frees of
 * 64 bytes (past the list's length: overflows and refills), its frees
 * published after each free returns */
static _Atomic uint64_t fdone;
static void *freer(void *arg) {
    (void)arg;
    static void *keep[300];
    churn1(64);
    uint64_t base;
    class_mallocs(ms_size_class(64), &base);
    atomic_store(&fdone, base);
    for (uint64_t n = base; !atomic_load(&stop);) {
        for (int i = 0; i < 300; i++) keep[i] = malloc(64);
        for (int i = 0; i < 300; i++) {
            free(keep[i]);
            atomic_store(&fdone, ++n);
        }
    }
    return NULL;
}

int main(void) {
    churn1(1); /* memscope set up, this thread's cache made */
    ms_prof_hooks = (prof_hooks_t){.stack = hook_stack, .sampled = hook_sampled};
    const int64_t rate = 4096;
    atomic_store(&ms_sample_rate, rate);
    ms_malloc_rearm();

    CHECK_BODY("draws-per-class-as-by-bytes") {
        const long n = 400000;
        for (long i = 0; i < n; i++) {
            churn1(16);
            churn1(4000);
        }
        const double sizes[2] = {16, ms_class_size[ms_size_class(4000)]};
        for (int k = 0; k < 2; k++) {
            double p = 1 - exp(-sizes[k] / (double)rate), want = n * p, sd = sqrt(n * p * (1 - p));
            printf("  | class of %.0f bytes: %llu sampled, %.0f expected\n", sizes[k], (unsigned long long)nsampled[k],
                   want);
            CHECK_TRUE(fabs((double)nsampled[k] - want) < 6 * sd);
        }
    }

    CHECK_BODY("mallocs-exact-across-draws") {
        uint8_t c = ms_size_class(48);
        uint64_t f0, f1, m0 = class_mallocs(c, &f0);
        static void *volatile keep[1000];
        for (int r = 0; r < 100; r++) {
            for (int i = 0; i < 1000; i++) keep[i] = malloc(48);
            for (int i = 0; i < 1000; i++) free(keep[i]);
        }
        uint64_t m1 = class_mallocs(c, &f1);
        CHECK_TRUE(m1 - m0 == 100000);
        CHECK_TRUE(f1 - f0 == 100000);
    }

    CHECK_BODY("reads-while-drawing") {
        pthread_t t;
        pthread_create(&t, NULL, owner, NULL);
        uint8_t c = ms_size_class(48);
        while (atomic_load(&done) == 0) sched_yield();
        uint64_t bad = 0, reads = 0;
        for (int i = 0; i < 200000; i++) {
            /* (this thread allocates no 48 bytes meanwhile) */
            uint64_t before = atomic_load(&done);
            uint64_t m = class_mallocs(c, NULL);
            uint64_t after = atomic_load(&done);
            reads++;
            /* every malloc done before the read is counted; none after
             * it, but the one under way */
            if (m < before || m > after + 1) {
                if (bad++ < 5) printf("  | read %llu, before %llu, after %llu\n", (unsigned long long)m, (unsigned long long)before, (unsigned long long)after);
            }
        }
        atomic_store(&stop, true);
        pthread_join(t, NULL);
        printf("  | %llu reads, %llu out of bounds\n", (unsigned long long)reads, (unsigned long long)bad);
        CHECK_TRUE(bad == 0);
    }

    CHECK_BODY("frees-read-while-moving") {
        pthread_t t;
        atomic_store(&stop, false);
        pthread_create(&t, NULL, freer, NULL);
        uint8_t c = ms_size_class(64);
        while (atomic_load(&fdone) == 0) sched_yield();
        uint64_t bad = 0, reads = 0;
        for (int i = 0; i < 200000; i++) {
            uint64_t before = atomic_load(&fdone), f;
            class_mallocs(c, &f);
            uint64_t after = atomic_load(&fdone);
            reads++;
            /* a read across a move may miss the object moving (tcache.c:
             * frees_of; the stats never publish a lower count), but never
             * counts a free that has not begun: what stats.c would keep */
            (void)before;
            if (f > after + 1) {
                if (bad++ < 5) printf("  | read %llu, before %llu, after %llu\n", (unsigned long long)f, (unsigned long long)before, (unsigned long long)after);
            }
        }
        atomic_store(&stop, true);
        pthread_join(t, NULL);
        printf("  | %llu reads of the frees, %llu out of bounds\n", (unsigned long long)reads, (unsigned long long)bad);
        CHECK_TRUE(bad == 0);
    }
    return print_test_summary();
}
