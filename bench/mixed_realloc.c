/* mixed_realloc.c — mixed sizes 16 B .. 64 KiB with realloc.
 *
 * Measures realloc quality — in-place growth, copy cost, size-class
 * crossings from small to medium — together with general mixed-size
 * traffic.  A table of `slots` buffers is driven for `ops` random steps:
 *   45%  string append: grow by 1..64 bytes (realloc to the exact new length,
 *        the way naive string builders do), write the appended bytes;
 *   20%  array growth: realloc to 2x capacity (vector doubling);
 *   15%  shrink: realloc to half (shrink-to-fit);
 *   20%  free and malloc a fresh buffer of log-uniform size 16 B .. 64 KiB.
 * Anything that would exceed 64 KiB is freed and restarted small.  Only the
 * appended bytes of a string (<= 64) are written, and just the first and last
 * new byte of a doubled array, so time is dominated by the allocator and by
 * any copying its realloc does.
 *
 * usage: mixed_realloc [ops=4000000] [slots=4000] [seed=1]
 */
#include "bench.h"

#define MAXSZ (64u * 1024u)

int main(int argc, char **argv)
{
    unsigned long long ops = arg_ull(argc, argv, 1, 4000000ull);
    size_t slots = (size_t)arg_ull(argc, argv, 2, 4000);
    rng_t r;
    rng_seed(&r, arg_ull(argc, argv, 3, 1));
    if (slots == 0) slots = 1;

    unsigned char **buf = calloc(slots, sizeof *buf);
    size_t *len = calloc(slots, sizeof *len);
    unsigned long long sum = 0, reallocs = 0;
    double t0 = now_s();

    for (unsigned long long k = 0; k < ops; k++) {
        size_t i = (size_t)(rng_next(&r) % slots);
        unsigned dice = (unsigned)(rng_next(&r) % 100);
        size_t old = len[i], want;
        if (!buf[i] || dice >= 80) {
            free(buf[i]);
            want = rng_logrange(&r, 16, MAXSZ);
            buf[i] = malloc(want);
            len[i] = buf[i] ? want : 0;
            if (buf[i]) { buf[i][0] = (unsigned char)k; buf[i][want - 1] = 1; }
            continue;
        }
        if (dice < 45)      want = old + rng_range(&r, 1, 64);
        else if (dice < 65) want = old * 2;
        else                want = old / 2 > 16 ? old / 2 : 16;
        if (want > MAXSZ) {            /* restart this buffer small */
            sum += buf[i][old - 1];
            free(buf[i]);
            want = rng_range(&r, 16, 256);
            buf[i] = malloc(want);
            len[i] = buf[i] ? want : 0;
            if (buf[i]) memset(buf[i], (int)(k & 0xff), want);
            continue;
        }
        unsigned char *p = realloc(buf[i], want);
        reallocs++;
        if (!p) continue;              /* old block still valid */
        if (want > old && want - old <= 64)
            memset(p + old, (int)(k & 0xff), want - old);
        else if (want > old)
            p[old] = p[want - 1] = (unsigned char)k;
        sum += p[0] + p[want - 1];
        buf[i] = p;
        len[i] = want;
    }
    for (size_t i = 0; i < slots; i++) free(buf[i]);
    double secs = now_s() - t0;
    free(buf); free(len);

    printf("RESULT workload=mixed-realloc ops=%llu slots=%zu reallocs=%llu",
           ops, slots, reallocs);
    result_end(secs, sum);
    return 0;
}
