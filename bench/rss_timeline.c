/* rss_timeline.c — RSS over time after a program frees a big heap.
 *
 * Measures how fast each allocator hands freed memory back to the OS when
 * the program goes idle: the small-objects seed demo (a linked list of n
 * 32-byte nodes, ~320 MiB of payload) is built, freed front to back, and
 * then the process sleeps for idle_ms while its own resident set size is
 * sampled every sample_ms from /proc/self/statm (read with open/read, no
 * malloc, so sampling itself does not disturb the heap).  Why: this is the
 * question memscope was built around ("I freed everything, why does top
 * still show 300 MB?"); memscope's answer is a background scavenger that
 * returns pages idle for scavenge_delay_ms (default 1000 ms), so its RSS
 * should fall below 60 MB within ~1-2 s of the free without any call from
 * the program.
 *
 * usage: rss_timeline [n=10000000] [idle_ms=5000] [sample_ms=50] [threshold_kib=61440] [lifo|shuffle]
 * lifo (default) frees the list front to back, i.e. newest node first, as
 * the seed demo does.  shuffle frees the nodes in a random order (through a
 * pointer array, itself freed before t=0), as a program whose objects die in
 * no particular order would: freed slots are then scattered over all spans.
 * Output (stdout, machine-readable):
 *   SAMPLE t_ms=<ms since the free finished> rss_kib=<KiB>      (one per sample)
 *   RESULT workload=rss-timeline n=.. peak_kib=<VmHWM> rss_at_free_kib=..
 *          first_below_ms=<first sample below threshold, or -1 = never>
 *          stays_below_ms=<start of the final run of samples below it, or -1>
 *          rss_end_kib=<last sample> build_free_s=.. checksum=.. malloc_from=..
 * t=0 is the moment the last free() returned.  Never asserts.
 */
#include "bench.h"

#include <fcntl.h>

int main(int argc, char **argv)
{
    unsigned long long n = arg_ull(argc, argv, 1, 10000000ull);
    long idle_ms = (long)arg_ull(argc, argv, 2, 5000);
    long sample_ms = (long)arg_ull(argc, argv, 3, 50);
    long thr = (long)arg_ull(argc, argv, 4, 61440);
    int shuffle = argc > 5 && strcmp(argv[5], "shuffle") == 0;
    if (sample_ms < 1) sample_ms = 1;
    unsigned long long sum = 0;

    double t0 = now_s();
    unsigned long long built;
    node *head = build_list(n, &built);
    n = built; /* fewer only if malloc failed */
    for (node *x = head; x; x = x->next) sum += x->payload[0];
    node **arr = shuffle ? malloc(n * sizeof *arr) : NULL;
    if (arr) {
        size_t m = 0;
        for (node *x = head; x; x = x->next) arr[m++] = x;
        rng_t r;
        rng_seed(&r, 7);
        for (size_t i = m; i > 1; i--) {
            size_t j = (size_t)(rng_next(&r) % i);
            node *t = arr[i - 1];
            arr[i - 1] = arr[j];
            arr[j] = t;
        }
        for (size_t i = 0; i < m; i++) free(arr[i]);
        free(arr);
        head = NULL;
    }
    while (head) {
        node *nx = head->next;
        free(head);
        head = nx;
    }
    double tfree = now_s();
    long at_free = rss_kib();
    long first_below = -1, stays_below = -1, last = at_free;
    if (at_free >= 0 && at_free < thr) first_below = stays_below = 0;

    for (long k = 0; ; k++) {
        double target = tfree + (double)(k * sample_ms) / 1000.0;
        double d = target - now_s();
        if (d < -(double)sample_ms / 2000.0) continue; /* behind schedule (busy machine): skip, no burst */
        if (d > 0) {
            struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
            nanosleep(&ts, NULL);
        }
        long t_ms = (long)((now_s() - tfree) * 1000.0 + 0.5);
        last = rss_kib();
        printf("SAMPLE t_ms=%ld rss_kib=%ld\n", t_ms, last);
        if (last >= 0 && last < thr) {
            if (first_below < 0) first_below = t_ms;
            if (stays_below < 0) stays_below = t_ms;
        } else {
            stays_below = -1;
        }
        if (t_ms >= idle_ms) break;
    }
    printf("RESULT workload=rss-timeline n=%llu idle_ms=%ld sample_ms=%ld threshold_kib=%ld peak_kib=%ld "
           "rss_at_free_kib=%ld first_below_ms=%ld stays_below_ms=%ld build_free_s=%.3f order=%s",
           n, idle_ms, sample_ms, thr, peak_rss_kib(), at_free, first_below, stays_below, tfree - t0, arr ? "shuffle" : "lifo");
    result_end(0.0, sum);
    return 0;
}
