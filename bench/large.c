/* large.c — large buffers 64 KiB .. 8 MiB.
 *
 * Measures the allocator's large-object path and its dealings with the
 * kernel: how often it maps/unmaps or madvises, and how many fresh page
 * faults result.  A window of `window` live buffers of log-uniform size
 * 64 KiB .. 8 MiB is churned `iters` times: a random buffer is freed and a
 * new one allocated, and the new one is touched — one byte per 4 KiB page,
 * or every byte when `touch`=full.  Allocators that return every large free
 * to the OS immediately pay page faults on each reuse; ones that cache it pay
 * in peak RSS.  Both costs are visible in the two columns of the report.
 *
 * usage: large [iters=500] [window=8] [touch=page|full] [seed=1]
 *        large cycle MIB [n=10] [touch_mib=all]
 * The second form is the reuse of one very large block: n times malloc(MIB
 * MiB), write one byte per 4 KiB page of its first touch_mib MiB (all: the
 * whole block), free.  An allocator that keeps the freed pages for the next
 * malloc pays the page faults once; one that unmaps at free pays them every
 * time.  bench/run_direct.sh uses it to place memscope's direct-mapping
 * threshold.
 */
#include "bench.h"

static int cycle(int argc, char **argv)
{
    size_t mib = (size_t)arg_ull(argc, argv, 2, 256);
    unsigned long long n = arg_ull(argc, argv, 3, 10);
    size_t touch = argc > 4 && strcmp(argv[4], "all") != 0 ? (size_t)arg_ull(argc, argv, 4, 0) : mib;
    if (touch > mib) touch = mib;
    unsigned long long sum = 0, fails = 0;
    double t0 = now_s(), worst = 0;
    for (unsigned long long k = 0; k < n; k++) {
        double a = now_s();
        unsigned char *p = malloc(mib << 20);
        if (!p) { fails++; continue; }
        for (size_t off = 0; off < (touch << 20); off += 4096) p[off] = (unsigned char)k;
        sum += p[0];
        free(p);
        double d = now_s() - a;
        if (d > worst) worst = d;
    }
    printf("RESULT workload=large-cycle mib=%zu n=%llu touch_mib=%zu fails=%llu worst_cycle_ms=%.3f", mib, n, touch,
           fails, worst * 1e3);
    result_end(now_s() - t0, sum);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "cycle") == 0) return cycle(argc, argv);
    unsigned long long iters = arg_ull(argc, argv, 1, 500);
    size_t window = (size_t)arg_ull(argc, argv, 2, 8);
    int full = argc > 3 && strcmp(argv[3], "full") == 0;
    rng_t r;
    rng_seed(&r, arg_ull(argc, argv, 4, 1));
    if (window == 0) window = 1;

    unsigned char **buf = calloc(window, sizeof *buf);
    size_t *len = calloc(window, sizeof *len);
    unsigned long long sum = 0, bytes = 0;
    double t0 = now_s();

    for (unsigned long long k = 0; k < iters; k++) {
        size_t i = (size_t)(rng_next(&r) % window);
        if (buf[i]) { sum += buf[i][len[i] - 1]; free(buf[i]); }
        size_t n = rng_logrange(&r, 64u * 1024u, 8u * 1024u * 1024u);
        unsigned char *p = malloc(n);
        buf[i] = p;
        len[i] = p ? n : 0;
        if (!p) continue;
        bytes += n;
        if (full) memset(p, (int)(k & 0xff), n);
        else {
            for (size_t off = 0; off < n; off += 4096) p[off] = (unsigned char)k;
            p[n - 1] = (unsigned char)k;
        }
    }
    for (size_t i = 0; i < window; i++) free(buf[i]);
    double secs = now_s() - t0;
    free(buf); free(len);

    printf("RESULT workload=large iters=%llu window=%zu touch=%s mib=%llu",
           iters, window, full ? "full" : "page", bytes >> 20);
    result_end(secs, sum);
    return 0;
}
