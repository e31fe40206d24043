/* false_sharing.c — Hoard's cache-thrash (active) and cache-scratch (passive).
 *
 * active  (cache-thrash): each of `threads` threads, `iters` times, mallocs
 *         an `size`-byte object, writes each of its bytes `writes` times, and
 *         frees it.  An allocator that hands objects from one cache line to
 *         different threads makes the cores fight over that line.
 * passive (cache-scratch): the main thread first mallocs one object per
 *         thread (so they are likely adjacent, in one cache line), and each
 *         thread frees the one it is given before starting the same loop.  An
 *         allocator that lets a thread reuse memory freed into its cache but
 *         allocated by another thread inherits the shared cache line.
 * Both are from Berger et al., "Hoard" (ASPLOS 2000).  On the 2-CPU
 * reference machine, use 2 threads: false sharing needs the threads to run at
 * the same time.  Threads are started together on a barrier.
 *
 * usage: false_sharing active|passive [threads=2] [iters=20000] [writes=1000] [size=8]
 */
#include "bench.h"
#include <pthread.h>

#define MAXT 256
static unsigned long long iters, writes;
static size_t size;
static pthread_barrier_t bar;
static void *given[MAXT];
static unsigned long long sums[MAXT];

static void *worker(void *arg)
{
    int t = (int)(intptr_t)arg;
    free(given[t]);                     /* passive: NULL in active mode */
    pthread_barrier_wait(&bar);
    unsigned long long sum = 0;
    for (unsigned long long i = 0; i < iters; i++) {
        volatile char *p = malloc(size);
        if (!p) continue;
        for (unsigned long long w = 0; w < writes; w++)
            for (size_t b = 0; b < size; b++) p[b] = (char)(p[b] + 1);
        sum += (unsigned char)p[0];
        free((void *)p);
    }
    sums[t] = sum;
    return NULL;
}

int main(int argc, char **argv)
{
    int passive = argc > 1 && strcmp(argv[1], "passive") == 0;
    int nthreads = (int)arg_ull(argc, argv, 2, 2);
    iters = arg_ull(argc, argv, 3, 20000);
    writes = arg_ull(argc, argv, 4, 1000);
    size = (size_t)arg_ull(argc, argv, 5, 8);
    if (nthreads < 1) nthreads = 1;
    if (nthreads > MAXT) nthreads = MAXT;
    if (size == 0) size = 1;
    if (passive)
        for (int t = 0; t < nthreads; t++) given[t] = malloc(size);
    pthread_barrier_init(&bar, NULL, (unsigned)nthreads);
    double t0 = now_s();
    run_threads(nthreads, worker);
    double secs = now_s() - t0;
    unsigned long long sum = 0;
    for (int t = 0; t < nthreads; t++) sum += sums[t];
    printf("RESULT workload=false-sharing-%s threads=%d iters=%llu writes=%llu size=%zu",
           passive ? "passive" : "active", nthreads, iters, writes, size);
    result_end(secs, sum);
    return 0;
}
