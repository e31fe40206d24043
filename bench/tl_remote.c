/* tl_remote.c — thread-local churn with occasional remote frees.
 *
 * The pattern of most multi-threaded servers: every thread churns its own
 * working set of small objects (16..512 B, `window` live, a random one
 * replaced per step), and now and then (one step in `every`) hands an object
 * to the next thread instead of freeing it.  The receiver frees what it was
 * handed the next time it looks at its inbox (every 64 steps), so those frees
 * are remote: the object was allocated by another thread.  The inbox is a
 * lock-free stack threaded through the objects themselves (push with CAS,
 * the owner takes the whole list with one exchange), so the benchmark adds
 * no lock of its own.  Measures the thread-cache fast path under a steady
 * trickle of cross-thread frees, and whether remotely freed memory finds its
 * way back (RSS).
 *
 * With TL_PLACEMENT set in the environment, the threads stop after their
 * churn (a barrier) while their live objects are counted, and the program
 * prints per thread how many 4 KiB pages its live objects lie in and how
 * many of those pages also hold another thread's live objects (lines
 * "PLACEMENT thread=t pages=n shared=m"): how much memory a thread's own
 * reads of its working set cover, the TLB and cache footprint that the
 * allocator's placement decides.  The count falls inside the timed part:
 * timed runs leave TL_PLACEMENT unset.
 *
 * usage: tl_remote [threads=4] [ops=5000000 per thread] [window=10000] [every=100] [seed=1]
 */
#include "bench.h"
#include <pthread.h>
#include <stdatomic.h>

#define MAXT 256
typedef struct obj { struct obj *next; } obj;
static struct { _Alignas(64) _Atomic(obj *) head; } inbox[MAXT];
static int nthreads;
static unsigned long long ops, window, every, seed;
static unsigned long long sums[MAXT], remote_freed[MAXT];
static pthread_barrier_t finished;  /* every thread has stopped sending */
static int placement;               /* TL_PLACEMENT set */
static pthread_barrier_t churned;   /* placement: every thread's churn is over */
static unsigned char **live[MAXT];  /* placement: each thread's slots */

static int cmp_pair(const void *a, const void *b) {
    const uint64_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : x[1] < y[1] ? -1 : x[1] > y[1];
}

/* report_placement: with every thread stopped at the barrier, the pages
 * (4 KiB) of each thread's live objects, and how many hold another
 * thread's too: (page, thread) pairs sorted by page. */
static void report_placement(void) {
    size_t n = 0;
    uint64_t (*pr)[2] = malloc((size_t)nthreads * window * sizeof *pr);
    unsigned long long pages[MAXT] = {0}, shared[MAXT] = {0};
    if (!pr) return;
    for (int t = 0; t < nthreads; t++)
        for (size_t i = 0; i < window; i++)
            if (live[t][i]) pr[n][0] = (uint64_t)(uintptr_t)live[t][i] >> 12, pr[n++][1] = (uint64_t)t;
    qsort(pr, n, sizeof *pr, cmp_pair);
    for (size_t i = 0, j; i < n; i = j) {
        int owners = 0;
        for (j = i; j < n && pr[j][0] == pr[i][0]; j++)
            if (j == i || pr[j][1] != pr[j - 1][1]) owners++;
        for (size_t k = i; k < j; k++)
            if (k == i || pr[k][1] != pr[k - 1][1]) pages[pr[k][1]]++, shared[pr[k][1]] += owners > 1;
    }
    for (int t = 0; t < nthreads; t++) printf("PLACEMENT thread=%d pages=%llu shared=%llu\n", t, pages[t], shared[t]);
    free(pr);
}

static unsigned long long drain(int t)
{
    obj *o = atomic_exchange_explicit(&inbox[t].head, NULL, memory_order_acquire);
    unsigned long long n = 0;
    while (o) { obj *nx = o->next; free(o); o = nx; n++; }
    return n;
}

static void *worker(void *arg)
{
    int t = (int)(intptr_t)arg, to = (t + 1) % nthreads;
    rng_t r;
    rng_seed(&r, seed * 7919 + (uint64_t)t);
    unsigned char **slot = calloc(window, sizeof *slot);
    unsigned long long sum = 0, rf = 0;
    for (size_t i = 0; i < window; i++) {
        size_t n = rng_range(&r, 16, 512);
        slot[i] = malloc(n);
        if (slot[i]) slot[i][n - 1] = (unsigned char)n;
    }
    for (unsigned long long k = 0; k < ops; k++) {
        size_t i = (size_t)(rng_next(&r) % window);
        unsigned char *p = slot[i];
        if (p) {
            sum += p[8];
            if (every && k % every == 0 && nthreads > 1) {
                obj *o = (obj *)p, *h = atomic_load_explicit(&inbox[to].head, memory_order_relaxed);
                do o->next = h;
                while (!atomic_compare_exchange_weak_explicit(&inbox[to].head, &h, o,
                                                             memory_order_release, memory_order_relaxed));
            } else free(p);
        }
        size_t n = rng_range(&r, 16, 512);
        p = malloc(n);
        if (p) { p[8] = (unsigned char)k; p[n - 1] = (unsigned char)n; }
        slot[i] = p;
        if ((k & 63) == 0) rf += drain(t);
    }
    if (placement) {
        live[t] = slot;
        if (pthread_barrier_wait(&churned) == PTHREAD_BARRIER_SERIAL_THREAD) report_placement();
        pthread_barrier_wait(&churned);
    }
    for (size_t i = 0; i < window; i++) free(slot[i]);
    free(slot);
    /* wait, blocked, until every thread has stopped sending, then take
     * what is left: a finished thread that polled its inbox meanwhile
     * (as this did) took CPU time from the four threads still churning
     * on two CPUs, and counted as the allocator's (perf, by hand: 12% of one
     * allocator's samples, 3% of another's) */
    pthread_barrier_wait(&finished);
    rf += drain(t);
    sums[t] = sum; remote_freed[t] = rf;
    return NULL;
}

int main(int argc, char **argv)
{
    nthreads = (int)arg_ull(argc, argv, 1, 4);
    ops = arg_ull(argc, argv, 2, 5000000);
    window = arg_ull(argc, argv, 3, 10000);
    every = arg_ull(argc, argv, 4, 100);
    seed = arg_ull(argc, argv, 5, 1);
    if (nthreads < 1) nthreads = 1;
    if (nthreads > MAXT) nthreads = MAXT;
    if (window == 0) window = 1;
    placement = getenv("TL_PLACEMENT") != NULL;
    if (placement) pthread_barrier_init(&churned, NULL, (unsigned)nthreads);
    pthread_barrier_init(&finished, NULL, (unsigned)nthreads);
    double t0 = now_s();
    run_threads(nthreads, worker);
    for (int t = 0; t < nthreads; t++) drain(t);
    double secs = now_s() - t0;
    unsigned long long sum = 0, rf = 0;
    for (int t = 0; t < nthreads; t++) { sum += sums[t]; rf += remote_freed[t]; }
    printf("RESULT workload=tl-remote threads=%d ops=%llu window=%llu every=%llu remote_frees=%llu",
           nthreads, ops, window, every, rf);
    result_end(secs, sum);
    return 0;
}
