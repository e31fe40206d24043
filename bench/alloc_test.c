/* alloc_test.c — a window of mixed sizes from 8 bytes to 64 KiB.
 *
 * The pattern of the alloc-test benchmark (ithare.com's, which
 * mimalloc-bench runs) and of glibc's bench-malloc-thread, written here:
 * each of `threads` threads keeps `window` live blocks of a log-uniform
 * size from 8 B to 64 KiB (every power-of-two band equally likely, so
 * half of the blocks are above 1 KiB and most of the bytes above 8 KiB)
 * and, `steps` times, frees a randomly chosen one and mallocs a
 * replacement, writing its first 64 bytes (or all of a smaller one) and
 * reading its first byte back at its free.  The other workloads' blocks are
 * at most 1 KiB, or reallocated (mixed_realloc); here every class from 8
 * bytes to 64 KiB churns at once, with a few dozen live blocks in each of
 * the classes above 8 KiB, whose count wanders by more than a thread
 * caches: what passes between the thread caches, the central lists and the
 * spans for those classes, and which pages the reused blocks lie on (only
 * the first bytes of a block are written, so peak RSS counts the pages
 * blocks have started on, more than the bytes live).
 *
 * usage: alloc_test [threads=1] [steps=10000000 per thread] [window=4096] [seed=1]
 */
#include "bench.h"
#include <pthread.h>

#define MAXT 64
static unsigned long long steps;
static size_t window;
static uint64_t seed;
static unsigned long long sums[MAXT];

static void *worker(void *arg)
{
    int t = (int)(intptr_t)arg;
    rng_t r;
    rng_seed(&r, seed * 1000 + (uint64_t)t);
    unsigned char **slot = calloc(window, sizeof *slot);
    unsigned long long sum = 0;
    if (!slot) return NULL;
    for (unsigned long long k = 0; k < steps; k++) {
        size_t i = (size_t)(rng_next(&r) % window);
        if (slot[i]) {
            sum += slot[i][0];
            free(slot[i]);
        }
        size_t n = rng_logrange(&r, 8, 65536);
        slot[i] = malloc(n);
        if (slot[i]) memset(slot[i], (int)(k & 0xff), n < 64 ? n : 64);
    }
    for (size_t i = 0; i < window; i++) free(slot[i]);
    free(slot);
    sums[t] = sum;
    return NULL;
}

int main(int argc, char **argv)
{
    int nthreads = (int)arg_ull(argc, argv, 1, 1);
    steps = arg_ull(argc, argv, 2, 10000000ull);
    window = (size_t)arg_ull(argc, argv, 3, 4096);
    seed = arg_ull(argc, argv, 4, 1);
    if (nthreads < 1) nthreads = 1;
    if (nthreads > MAXT) nthreads = MAXT;
    if (window == 0) window = 1;

    double t0 = now_s();
    run_threads(nthreads, worker);
    double secs = now_s() - t0;
    unsigned long long sum = 0;
    for (int t = 0; t < nthreads; t++) sum += sums[t];

    printf("RESULT workload=alloc-test threads=%d steps=%llu window=%zu", nthreads, steps, window);
    result_end(secs, sum);
    return 0;
}
