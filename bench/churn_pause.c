/* churn_pause.c — the price of returning memory on a churning workload.
 *
 * Measures what an allocator's "give idle memory back" policy costs a program
 * that re-uses its memory: `iters` times, the program allocates a working set
 * of ws_mib MiB, writes all of it, frees all of it, and then pauses for
 * pause_ms before the next round.  An allocator that returns the freed pages
 * during the pause (memscope's scavenger after scavenge_delay_ms, jemalloc's
 * decay, mimalloc's purge/reset) must fault them in and zero them again on
 * the next round: more minor page faults and more time.  One that keeps them
 * holds that RSS through every pause.  A sampler thread reads /proc/self/statm
 * every 10 ms (open/read, no malloc) and integrates RSS over time, so the
 * output gives both sides of the trade-off.  Why: it is the evidence for
 * choosing memscope's default scavenge_delay_ms.
 *
 * Modes: small = objects of 16..1024 B (log-uniform, seeded PRNG, identical
 *                sequence for every allocator), freed in a shuffled order;
 *        large = buffers of 1..8 MiB (log-uniform), freed in order.
 *
 * usage: churn_pause [ws_mib=128] [iters=6] [pause_ms=100] [small|large]
 * Output: one line
 *   RESULT workload=churn-pause mode=.. ws_mib=.. iters=.. pause_ms=..
 *          total_s=<wall> work_s=<total minus the pauses> minflt=<rusage>
 *          mean_rss_kib=<time-weighted over the whole run> max_rss_kib=<sampled>
 *          secs=.. rss_end_kib=.. checksum=.. malloc_from=..
 * Never asserts.
 */
#include "bench.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>

static atomic_int stop;
static double rss_integral, rss_time; /* KiB*s, s; written by the sampler only */
static long rss_max;

static void *sampler(void *arg)
{
    (void)arg;
    double prev_t = now_s();
    long prev = rss_kib();
    struct timespec iv = {0, 10 * 1000000L};
    while (!atomic_load(&stop)) {
        nanosleep(&iv, NULL);
        double t = now_s();
        long r = rss_kib();
        rss_integral += (double)(prev + r) / 2.0 * (t - prev_t); /* trapezoid */
        rss_time += t - prev_t;
        if (r > rss_max) rss_max = r;
        prev = r;
        prev_t = t;
    }
    return NULL;
}

static void sleep_ms(long ms)
{
    if (ms <= 0) return;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {}
}

int main(int argc, char **argv)
{
    size_t ws = (size_t)arg_ull(argc, argv, 1, 128) << 20;
    unsigned iters = (unsigned)arg_ull(argc, argv, 2, 6);
    long pause_ms = (long)arg_ull(argc, argv, 3, 100);
    int large = argc > 4 && strcmp(argv[4], "large") == 0;
    size_t lo = large ? (1u << 20) : 16, hi = large ? (8u << 20) : 1024;

    /* The pointer arrays are sized once and kept: they are not part of the
     * churn.  Small objects average ~250 B, so ws/128 slots always suffice
     * (a round also stops if they run out). */
    size_t cap = ws / (large ? lo : 128) + 16;
    void **ptrs = malloc(cap * sizeof *ptrs);
    size_t *order = malloc(cap * sizeof *order);
    if (!ptrs || !order) { printf("RESULT workload=churn-pause error=oom\n"); return 0; }

    pthread_t th;
    int have_sampler = pthread_create(&th, NULL, sampler, NULL) == 0;
    unsigned long long sum = 0;
    double paused = 0, t0 = now_s();

    for (unsigned it = 0; it < iters; it++) {
        rng_t r;
        rng_seed(&r, 42 + it);
        size_t n = 0, bytes = 0;
        while (bytes < ws && n < cap) {
            size_t sz = rng_logrange(&r, lo, hi);
            unsigned char *p = malloc(sz);
            if (!p) break;
            memset(p, (int)(n & 0xff), sz); /* touch every byte, as a real working set would */
            ptrs[n++] = p;
            bytes += sz;
        }
        for (size_t i = 0; i < n; i++) {
            order[i] = i;
            sum += ((unsigned char *)ptrs[i])[0];
        }
        if (!large)
            for (size_t i = n; i > 1; i--) { /* Fisher-Yates: free in a random order */
                size_t j = (size_t)(rng_next(&r) % i), t = order[i - 1];
                order[i - 1] = order[j];
                order[j] = t;
            }
        for (size_t i = 0; i < n; i++) free(ptrs[order[i]]);
        if (it + 1 < iters) {
            double ps = now_s();
            sleep_ms(pause_ms);
            paused += now_s() - ps;
        }
    }
    double total = now_s() - t0;
    atomic_store(&stop, 1);
    if (have_sampler) pthread_join(th, NULL);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("RESULT workload=churn-pause mode=%s ws_mib=%zu iters=%u pause_ms=%ld total_s=%.4f work_s=%.4f "
           "minflt=%ld mean_rss_kib=%.0f max_rss_kib=%ld",
           large ? "large" : "small", ws >> 20, iters, pause_ms, total, total - paused, ru.ru_minflt,
           rss_time > 0 ? rss_integral / rss_time : -1.0, rss_max);
    free(ptrs);
    free(order);
    result_end(total, sum);
    return 0;
}
