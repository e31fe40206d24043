/* many_threads.c — many threads on few cores.
 *
 * `rounds` times, starts `threads` threads at once (pinned to the first
 * `cpus` CPUs, default 2, so the run means the same on a bigger machine) and
 * joins them.  Each thread churns its own `window` live objects of
 * 16..1024 B for `ops` steps, calling sched_yield() every 1,000 steps so the
 * threads interleave on the few cores, and frees everything before it exits.
 * Measures what per-thread state costs when threads outnumber cores:
 * contention on shared structures while threads are preempted, creating and
 * tearing down many thread caches, and the memory they pin (peak RSS).
 *
 * usage: many_threads [threads=32] [ops=300000 per thread] [window=2000] [rounds=3] [cpus=2]
 */
#include "bench.h"
#include <pthread.h>
#include <sched.h>

#define MAXT 1024
static unsigned long long ops, window;
static unsigned long long sums[MAXT];

static void *worker(void *arg)
{
    int t = (int)(intptr_t)arg;
    rng_t r;
    rng_seed(&r, 104729ull + (uint64_t)t);
    unsigned char **slot = calloc(window, sizeof *slot);
    unsigned long long sum = 0;
    if (!slot) return NULL;
    for (size_t i = 0; i < window; i++) {
        size_t n = rng_range(&r, 16, 1024);
        slot[i] = malloc(n);
        if (slot[i]) slot[i][n - 1] = (unsigned char)n;
    }
    for (unsigned long long k = 0; k < ops; k++) {
        size_t i = (size_t)(rng_next(&r) % window);
        if (slot[i]) { sum += slot[i][0]; free(slot[i]); }
        size_t n = rng_range(&r, 16, 1024);
        unsigned char *p = malloc(n);
        if (p) { p[0] = (unsigned char)k; p[n - 1] = (unsigned char)n; }
        slot[i] = p;
        if (k % 1000 == 999) sched_yield();
    }
    for (size_t i = 0; i < window; i++) free(slot[i]);
    free(slot);
    sums[t] += sum;
    return NULL;
}

int main(int argc, char **argv)
{
    int nthreads = (int)arg_ull(argc, argv, 1, 32);
    ops = arg_ull(argc, argv, 2, 300000);
    window = arg_ull(argc, argv, 3, 2000);
    unsigned long long rounds = arg_ull(argc, argv, 4, 3);
    int cpus = (int)arg_ull(argc, argv, 5, 2);
    if (nthreads < 1) nthreads = 1;
    if (nthreads > MAXT) nthreads = MAXT;
    if (window == 0) window = 1;
    cpu_set_t set;
    CPU_ZERO(&set);
    int have = 0;
    for (int c = 0; c < CPU_SETSIZE && have < cpus; c++) {
        cpu_set_t cur;
        if (sched_getaffinity(0, sizeof cur, &cur) == 0 && CPU_ISSET(c, &cur)) { CPU_SET(c, &set); have++; }
    }
    if (have) sched_setaffinity(0, sizeof set, &set);   /* inherited by the threads */
    double t0 = now_s();
    for (unsigned long long rd = 0; rd < rounds; rd++) {
        run_threads(nthreads, worker);
    }
    double secs = now_s() - t0;
    unsigned long long sum = 0;
    for (int t = 0; t < nthreads; t++) sum += sums[t];
    printf("RESULT workload=many-threads threads=%d ops=%llu window=%llu rounds=%llu cpus=%d",
           nthreads, ops, window, rounds, have);
    result_end(secs, sum);
    return 0;
}
