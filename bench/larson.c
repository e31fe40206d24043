/* larson.c — larson-style server workload (after Larson & Krishnan, 1998).
 *
 * Measures multi-threaded small-object throughput when memory migrates
 * between threads the way it does in a server whose worker threads come and
 * go.  `threads` worker threads (default 2 = the cores of the bench box) each
 * own an array of `slots` objects of random size 16..1024 bytes and, `rounds`
 * times, free a random slot and malloc a replacement.  When a generation of
 * workers finishes, each array is handed to a NEW thread of the next
 * generation, rotated by one so it lands on a different "lane": the new
 * thread frees objects that a now-dead thread allocated.  That stresses
 * remote frees, thread-cache teardown on thread exit, and reuse of memory
 * orphaned by exited threads — the pattern that makes naive per-thread
 * caches either leak or bloat.
 *
 * usage: larson [generations=40] [rounds=250000] [slots=5000] [threads=2] [seed=1]
 */
#include "bench.h"
#include <pthread.h>

typedef struct {
    unsigned char **slot;
    size_t nslots;
    unsigned long long rounds;
    rng_t rng;
    unsigned long long sum;
} lane_t;

/* worker: the lane's state is copied in and out.  The lanes lie side by
 * side (40 bytes each, two to a cache line), and a worker that stepped
 * l->rng in place stored to its lane on every round (l escapes into
 * malloc and free, so the compiler keeps it in memory) while the other
 * worker read its own fields from the same line: whenever the two ran
 * at once, that false sharing of the benchmark's own nearly doubled the
 * CPU time of an allocator that put the lanes at a line's start, and
 * spared one that put them 32 bytes in (glibc). */
static void *worker(void *arg)
{
    lane_t *l = arg;
    unsigned char **slot = l->slot;
    size_t nslots = l->nslots;
    unsigned long long rounds = l->rounds, sum = 0;
    rng_t rng = l->rng;
    for (unsigned long long k = 0; k < rounds; k++) {
        size_t i = (size_t)(rng_next(&rng) % nslots);
        if (slot[i]) {
            sum += slot[i][0];
            free(slot[i]);
        }
        size_t n = rng_range(&rng, 16, 1024);
        unsigned char *p = malloc(n);
        if (p) { p[0] = (unsigned char)k; p[n - 1] = 1; }
        slot[i] = p;
    }
    l->rng = rng;
    l->sum += sum;
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned gens = (unsigned)arg_ull(argc, argv, 1, 40);
    unsigned long long rounds = arg_ull(argc, argv, 2, 250000ull);
    size_t slots = (size_t)arg_ull(argc, argv, 3, 5000);
    unsigned nthreads = (unsigned)arg_ull(argc, argv, 4, 2);
    unsigned long long seed = arg_ull(argc, argv, 5, 1);
    if (nthreads == 0) nthreads = 1;
    if (slots == 0) slots = 1;

    lane_t *lane = calloc(nthreads, sizeof *lane);
    pthread_t *tid = calloc(nthreads, sizeof *tid);
    lane_t **assign = calloc(nthreads, sizeof *assign);
    double t0 = now_s();

    /* Initial fill by the main thread: generation 0 already frees memory it
     * did not allocate. */
    for (unsigned t = 0; t < nthreads; t++) {
        lane[t].slot = calloc(slots, sizeof *lane[t].slot);
        lane[t].nslots = slots;
        lane[t].rounds = rounds;
        rng_seed(&lane[t].rng, seed * 1000 + t);
        for (size_t i = 0; i < slots; i++) {
            size_t n = rng_range(&lane[t].rng, 16, 1024);
            lane[t].slot[i] = malloc(n);
            if (lane[t].slot[i]) lane[t].slot[i][0] = 0;
        }
    }
    for (unsigned g = 0; g < gens; g++) {
        for (unsigned t = 0; t < nthreads; t++) {
            assign[t] = &lane[(t + g) % nthreads];   /* hand arrays onward */
            if (pthread_create(&tid[t], NULL, worker, assign[t]) != 0) {
                worker(assign[t]);                    /* degrade, never abort */
                tid[t] = 0;
            }
        }
        for (unsigned t = 0; t < nthreads; t++)
            if (tid[t]) pthread_join(tid[t], NULL);
    }
    unsigned long long sum = 0;
    for (unsigned t = 0; t < nthreads; t++) {
        for (size_t i = 0; i < slots; i++) free(lane[t].slot[i]);
        free(lane[t].slot);
        sum += lane[t].sum;
    }
    double secs = now_s() - t0;
    free(lane); free(tid); free(assign);

    printf("RESULT workload=larson generations=%u rounds=%llu slots=%zu threads=%u "
           "ops=%llu", gens, rounds, slots, nthreads,
           (unsigned long long)gens * nthreads * rounds);
    result_end(secs, sum);
    return 0;
}
