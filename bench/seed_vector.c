/* seed_vector.c — the seed program's allocation pattern.
 *
 * memscope grew from a Go tutorial whose program appends 32,000,000 ints to
 * a slice inside f(), then drops it and asks why RSS stays high.  This is
 * the C shape of that: a vector of int64 grown one element at a time, with
 * capacity doubling through realloc, then freed.  It measures how the
 * allocator handles a huge realloc chain (mremap versus copy, how much
 * memory both old and new blocks hold at once -> peak RSS, ~256 MiB of
 * payload at the end) and, via rss_end_kib, how much of it is still resident
 * right after the free.  `reps` (default 1, as in the seed) repeats f();
 * reps after the first show whether freed memory is
 * reused or faulted in again.
 *
 * usage: seed_vector [n=32000000] [reps=1]
 */
#include "bench.h"
#include <stdint.h>

static unsigned long long f(size_t n)
{
    int64_t *v = NULL;
    size_t len = 0, cap = 0;
    for (size_t i = 0; i < n; i++) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 1;
            int64_t *nv = realloc(v, ncap * sizeof *v);
            if (!nv) break;                /* report what we got, never abort */
            v = nv;
            cap = ncap;
        }
        v[len++] = (int64_t)i;
    }
    unsigned long long s = len ? (unsigned long long)v[len / 2] + len : 0;
    free(v);
    return s;
}

int main(int argc, char **argv)
{
    size_t n = (size_t)arg_ull(argc, argv, 1, 32000000ull);
    unsigned reps = (unsigned)arg_ull(argc, argv, 2, 1);
    unsigned long long sum = 0;
    double t0 = now_s();
    for (unsigned k = 0; k < reps; k++) sum += f(n);
    double secs = now_s() - t0;
    printf("RESULT workload=seed-vector n=%zu reps=%u", n, reps);
    result_end(secs, sum);
    return 0;
}
