/* st_churn.c — single-thread small-object churn.
 *
 * Measures the allocator's fast path: one thread keeps a window of `window`
 * live objects of random size 8..512 bytes and, `ops` times, frees a randomly
 * chosen one and mallocs a replacement of a new random size.  This is the
 * dominant pattern of most C programs (strings, small structs, nodes) and is
 * where per-thread caches and size-class lookup cost show up directly.
 * Every object gets its first and last byte written and read back so the
 * traffic cannot be optimised away and each allocation is really touched.
 *
 * usage: st_churn [ops=30000000] [window=20000] [seed=1]
 */
#include "bench.h"

int main(int argc, char **argv)
{
    unsigned long long ops = arg_ull(argc, argv, 1, 30000000ull);
    size_t window = (size_t)arg_ull(argc, argv, 2, 20000ull);
    rng_t r;
    rng_seed(&r, arg_ull(argc, argv, 3, 1));
    if (window == 0) window = 1;

    unsigned char **slot = calloc(window, sizeof *slot);
    size_t *len = calloc(window, sizeof *len);
    unsigned long long sum = 0;
    double t0 = now_s();

    for (size_t i = 0; i < window; i++) {
        size_t n = rng_range(&r, 8, 512);
        slot[i] = malloc(n);
        if (!slot[i]) continue;
        slot[i][0] = (unsigned char)i; slot[i][n - 1] = (unsigned char)n;
        len[i] = n;
    }
    for (unsigned long long k = 0; k < ops; k++) {
        size_t i = (size_t)(rng_next(&r) % window);
        if (slot[i]) {
            sum += slot[i][0] + slot[i][len[i] - 1];
            free(slot[i]);
        }
        size_t n = rng_range(&r, 8, 512);
        slot[i] = malloc(n);
        if (!slot[i]) continue;
        slot[i][0] = (unsigned char)k; slot[i][n - 1] = (unsigned char)n;
        len[i] = n;
    }
    for (size_t i = 0; i < window; i++) free(slot[i]);
    double secs = now_s() - t0;
    free(slot); free(len);

    printf("RESULT workload=st-churn ops=%llu window=%zu", ops, window);
    result_end(secs, sum);
    return 0;
}
