/* latency.c — malloc/free tail latency while huge blocks come and go (issue 9).
 *
 * Three modes.
 *
 *   latency mix [secs=3] [threads=3] [maxk=36] [window=1000] [seed=1]
 *     `threads` worker threads each keep `window` live blocks of 16 B .. 64 KiB
 *     (log-uniform) and, in a loop, free a random one and malloc a new one,
 *     writing its first byte.  Each malloc and each free is timed on its own
 *     (clock_gettime(CLOCK_MONOTONIC) right before and right after the call)
 *     and counted into a per-thread log-linear histogram (32 sub-buckets per
 *     power of two, about 3 % resolution; static arrays, so recording never
 *     allocates); the exact maximum is kept too.  Meanwhile one more thread
 *     cycles through blocks of 2^20 .. 2^maxk bytes (1 MiB .. 64 GiB), two
 *     powers of two apart: malloc, write the first 1 MiB, free, sleep 2 ms.
 *     Which sizes it could allocate, and its own worst malloc/free per size,
 *     are printed too.  The allocator's background work (memscope's
 *     scavenger, jemalloc's decay) runs as it would by default.
 *
 *   latency huge K [secs=4] [seed=1] [lo=16384] [hi=65536]
 *     The scenario of issue 9: malloc(2^K), write its first 1 MiB, free it;
 *     then in the same thread malloc+free blocks of lo..hi bytes (uniform) for
 *     `secs` seconds, timing every malloc and free.  Reports whether the big
 *     malloc succeeded, how long it and its free took, the number of
 *     malloc+free pairs done, and the malloc/free percentiles and maxima.
 *
 *   latency holds [blocks=1600000] [settle=3]
 *     Bounded lock holds: a heap fragmented into tens of thousands of free
 *     spans, then memscope's jobs one at a time (scavenger, malloc_trim, stats
 *     reads, a heap profile, a leak check) beside a thread timing mallocs of
 *     16..64 KiB; one HOLD line per job (comment at holds()).
 *
 * Output (one line each, values in ns):
 *   LAT op=malloc n=<count> p50_ns= p99_ns= p999_ns= p9999_ns= max_ns=
 *   LAT op=free   ...
 *   BIG k=<K> ok=<0|1> n=<tries> malloc_max_ns= free_max_ns=     (mix mode)
 *   RESULT workload=latency-<mode> ... malloc_from=<lib>
 * Percentiles are the upper edge of the histogram bucket they fall in.
 */
#include "bench.h"
#include <pthread.h>
#include <stdatomic.h>
#include <errno.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <malloc.h>
#include <unistd.h>
#include "../include/memscope.h"

#define SUB 32                       /* sub-buckets per power of two */
#define NBUCKET (64 + 59 * SUB)
#define MAXT 64

typedef struct {
    unsigned long long c[NBUCKET];
    unsigned long long n, max;
} hist_t;

static hist_t H[MAXT][2];           /* [thread][0 = malloc, 1 = free] */

static inline unsigned bucket_of(unsigned long long v)
{
    if (v < 64) return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);      /* e >= 6 */
    unsigned sub = (unsigned)(v >> (e - 5)) & (SUB - 1);
    return 64 + (e - 6) * SUB + sub;
}

/* upper edge (inclusive) of bucket b */
static unsigned long long bucket_hi(unsigned b)
{
    if (b < 64) return b;
    unsigned e = (b - 64) / SUB + 6, sub = (b - 64) % SUB;
    unsigned long long lo = (1ull << e) + ((unsigned long long)sub << (e - 5));
    return lo + (1ull << (e - 5)) - 1;
}

static inline void hist_add(hist_t *h, unsigned long long v)
{
    h->c[bucket_of(v)]++;
    h->n++;
    if (v > h->max) h->max = v;
}

static inline unsigned long long ns_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

static unsigned long long pct(const hist_t *h, double q)
{
    if (h->n == 0) return 0;
    unsigned long long want = (unsigned long long)(q * (double)h->n);
    if (want >= h->n) want = h->n - 1;
    unsigned long long acc = 0;
    for (unsigned b = 0; b < NBUCKET; b++) {
        acc += h->c[b];
        if (acc > want) {
            unsigned long long hi = bucket_hi(b);
            return hi < h->max ? hi : h->max;
        }
    }
    return h->max;
}

static void print_hist(const char *op, const hist_t *h)
{
    printf("LAT op=%s n=%llu p50_ns=%llu p99_ns=%llu p999_ns=%llu p9999_ns=%llu max_ns=%llu\n",
           op, h->n, pct(h, 0.50), pct(h, 0.99), pct(h, 0.999), pct(h, 0.9999), h->max);
}

static void merge(hist_t *dst, int nthreads, int op)
{
    memset(dst, 0, sizeof *dst);
    for (int t = 0; t < nthreads; t++) {
        for (unsigned b = 0; b < NBUCKET; b++) dst->c[b] += H[t][op].c[b];
        dst->n += H[t][op].n;
        if (H[t][op].max > dst->max) dst->max = H[t][op].max;
    }
}

/* ------------------------------------------------------------ mix mode -- */
static atomic_int stop;
static unsigned long long g_secs, g_window, g_seed;
static unsigned g_maxk;
static unsigned long long sums[MAXT];

#define MAXBIG 64
static struct { unsigned long long tries, ok, mmax, fmax; } big[MAXBIG];

static void *worker(void *arg)
{
    int t = (int)(intptr_t)arg;
    rng_t r;
    rng_seed(&r, g_seed * 1000 + (uint64_t)t);
    /* the slot array comes from malloc before timing starts: it is the
     * program's, not the measured traffic */
    unsigned char **slot = calloc(g_window, sizeof *slot);
    unsigned long long sum = 0;
    if (!slot) return NULL;
    for (size_t i = 0; i < g_window; i++) {
        slot[i] = malloc(rng_logrange(&r, 16, 65536));
        if (slot[i]) slot[i][0] = (unsigned char)i;
    }
    hist_t *hm = &H[t][0], *hf = &H[t][1];
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        for (int k = 0; k < 64; k++) {
            size_t i = (size_t)(rng_next(&r) % g_window);
            size_t n = rng_logrange(&r, 16, 65536);
            unsigned char *p = slot[i];
            if (p) sum += p[0];
            unsigned long long a = ns_now();
            free(p);
            unsigned long long b = ns_now();
            p = malloc(n);
            unsigned long long c = ns_now();
            hist_add(hf, b - a);
            hist_add(hm, c - b);
            if (p) p[0] = (unsigned char)k;
            slot[i] = p;
        }
    }
    for (size_t i = 0; i < g_window; i++) free(slot[i]);
    free(slot);
    sums[t] = sum;
    return NULL;
}

static void *big_thread(void *arg)
{
    (void)arg;
    struct timespec pause = { 0, 2 * 1000 * 1000 };
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        for (unsigned k = 20; k <= g_maxk && !atomic_load_explicit(&stop, memory_order_relaxed); k += 2) {
            size_t sz = (size_t)1 << k;
            unsigned long long a = ns_now();
            unsigned char *p = malloc(sz);
            unsigned long long b = ns_now();
            big[k].tries++;
            if (b - a > big[k].mmax) big[k].mmax = b - a;
            if (p) {
                big[k].ok++;
                memset(p, (int)k, 1u << 20);
                unsigned long long c = ns_now();
                free(p);
                unsigned long long d = ns_now();
                if (d - c > big[k].fmax) big[k].fmax = d - c;
            }
            nanosleep(&pause, NULL);
        }
    }
    return NULL;
}

static int mix(int argc, char **argv)
{
    g_secs = arg_ull(argc, argv, 2, 3);
    int nthreads = (int)arg_ull(argc, argv, 3, 3);
    g_maxk = (unsigned)arg_ull(argc, argv, 4, 36);
    g_window = arg_ull(argc, argv, 5, 1000);
    g_seed = arg_ull(argc, argv, 6, 1);
    if (nthreads < 1) nthreads = 1;
    if (nthreads > MAXT) nthreads = MAXT;
    if (g_maxk > 46) g_maxk = 46;
    if (g_window == 0) g_window = 1;

    pthread_t th[MAXT], bt;
    double t0 = now_s();
    for (int t = 0; t < nthreads; t++) pthread_create(&th[t], NULL, worker, (void *)(intptr_t)t);
    int have_big = g_maxk >= 20 && pthread_create(&bt, NULL, big_thread, NULL) == 0;
    struct timespec ts = { (time_t)g_secs, 0 };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
    atomic_store(&stop, 1);
    for (int t = 0; t < nthreads; t++) pthread_join(th[t], NULL);
    if (have_big) pthread_join(bt, NULL);
    double secs = now_s() - t0;

    hist_t all;
    merge(&all, nthreads, 0); print_hist("malloc", &all);
    merge(&all, nthreads, 1); print_hist("free", &all);
    for (unsigned k = 20; k <= g_maxk; k += 2)
        printf("BIG k=%u ok=%d tries=%llu okn=%llu malloc_max_ns=%llu free_max_ns=%llu\n", k,
               big[k].ok > 0, big[k].tries, big[k].ok, big[k].mmax, big[k].fmax);
    unsigned long long sum = 0;
    for (int t = 0; t < nthreads; t++) sum += sums[t];
    printf("RESULT workload=latency-mix threads=%d maxk=%u window=%llu", nthreads, g_maxk, g_window);
    result_end(secs, sum);
    return 0;
}

/* ----------------------------------------------------------- huge mode -- */
static int huge(int argc, char **argv)
{
    unsigned k = (unsigned)arg_ull(argc, argv, 2, 36);
    double secs = (double)arg_ull(argc, argv, 3, 4);
    rng_t r;
    rng_seed(&r, arg_ull(argc, argv, 4, 1));
    size_t lo = (size_t)arg_ull(argc, argv, 5, 16384), hi = (size_t)arg_ull(argc, argv, 6, 65536);
    if (lo < 1) lo = 1;
    if (hi < lo) hi = lo;
    if (k > 62) k = 62;
    size_t sz = (size_t)1 << k;

    unsigned long long a = ns_now();
    unsigned char *big_p = malloc(sz);
    unsigned long long b = ns_now(), c = b, d = b;
    if (big_p) {
        memset(big_p, 1, sz < (1u << 20) ? sz : (1u << 20));
        c = ns_now();
        free(big_p);
        d = ns_now();
    }
    printf("HUGE k=%u ok=%d malloc_ns=%llu free_ns=%llu\n", k, big_p != NULL, b - a, d - c);

    hist_t *hm = &H[0][0], *hf = &H[0][1];
    unsigned long long sum = 0, end = ns_now() + (unsigned long long)(secs * 1e9);
    double t0 = now_s();
    for (;;) {
        for (int i = 0; i < 256; i++) {
            size_t n = rng_range(&r, lo, hi);
            unsigned long long t1 = ns_now();
            unsigned char *p = malloc(n);
            unsigned long long t2 = ns_now();
            if (p) { p[0] = (unsigned char)i; sum += p[0]; }
            unsigned long long t3 = ns_now();
            free(p);
            unsigned long long t4 = ns_now();
            hist_add(hm, t2 - t1);
            hist_add(hf, t4 - t3);
        }
        if (ns_now() >= end) break;
    }
    double el = now_s() - t0;
    print_hist("malloc", hm);
    print_hist("free", hf);
    printf("RESULT workload=latency-huge k=%u lo=%zu hi=%zu big_ok=%d pairs=%llu", k, lo, hi, big_p != NULL, hm->n);
    result_end(el, sum);
    return 0;
}

/* ---------------------------------------------------------- holds mode -- */
/* A fragmented heap (blocks of 512 bytes, every other 8 KiB page's worth
 * freed: tens of thousands of free spans between spans in use), then each
 * of memscope's own jobs in turn while one thread mallocs and frees 16..64
 * KiB blocks, timing every malloc: the scavenger releasing the freed spans,
 * malloc_trim(0), a stats read, a heap profile written, a leak check.  For
 * memscope the longest hold of the heap lock during each job is read from
 * memscope_read_stats (looked up with dlsym, so the same binary runs under
 * every allocator; under the peers only the worker's latency is reported,
 * and the jobs they lack are skipped). */
static int (*p_read_stats)(struct memscope_stats *);
static int (*p_write_profile_fd)(int, int);
static long (*p_check_leaks)(int);
static atomic_int job_on;

static void *holds_worker(void *arg)
{
    (void)arg;
    rng_t r;
    rng_seed(&r, 7);
    hist_t *hm = &H[0][0];
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        if (!atomic_load_explicit(&job_on, memory_order_relaxed)) { usleep(200); continue; } /* leave the CPU to setup */
        size_t n = rng_range(&r, 16384, 65536);
        unsigned long long a = ns_now();
        unsigned char *p = malloc(n);
        unsigned long long b = ns_now();
        if (p) p[0] = 1;
        free(p);
        hist_add(hm, b - a);
    }
    return NULL;
}

static unsigned long long lock_max(void)
{
    struct memscope_stats st;
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    return p_read_stats && p_read_stats(&st) == 0 ? st.heap_lock_max_ns : 0;
}

/* job: runs one job with the worker timing beside it, prints one HOLD line */
static void job(const char *name, void (*fn)(void), double settle_s)
{
    memset(&H[0][0], 0, sizeof H[0][0]);
    lock_max(); /* "since the previous read" starts now */
    atomic_store(&job_on, 1);
    unsigned long long a = ns_now();
    fn();
    unsigned long long b = ns_now();
    if (settle_s > 0) {
        struct timespec ts = { (time_t)settle_s, (long)((settle_s - (double)(time_t)settle_s) * 1e9) };
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
    }
    atomic_store(&job_on, 0);
    unsigned long long hold = lock_max();
    const hist_t *h = &H[0][0];
    printf("HOLD job=%s job_ns=%llu lock_max_ns=%llu mallocs=%llu p99_ns=%llu p999_ns=%llu max_ns=%llu\n", name, b - a,
           p_read_stats ? hold : 0, h->n, pct(h, 0.99), pct(h, 0.999), h->max);
}

static void job_none(void) {}
static void job_trim(void) { malloc_trim(0); }
static void job_stats(void) { for (int i = 0; i < 1000; i++) lock_max(); }
static void job_profile(void)
{
    int fd = open("/dev/null", O_WRONLY);
    if (p_write_profile_fd) p_write_profile_fd(fd, 0);
    close(fd);
}
static void job_leaks(void)
{
    int fd = open("/dev/null", O_WRONLY);
    if (p_check_leaks) p_check_leaks(fd);
    close(fd);
}

static int holds(int argc, char **argv)
{
    size_t nblocks = (size_t)arg_ull(argc, argv, 2, 1600000);
    double settle = (double)arg_ull(argc, argv, 3, 3);
    p_read_stats = (int (*)(struct memscope_stats *))dlsym(RTLD_DEFAULT, "memscope_read_stats");
    p_write_profile_fd = (int (*)(int, int))dlsym(RTLD_DEFAULT, "memscope_write_heap_profile_fd");
    p_check_leaks = (long (*)(int))dlsym(RTLD_DEFAULT, "memscope_check_leaks");
    unsigned char **b = malloc(nblocks * sizeof *b);
    if (!b) return 1;
    double t0 = now_s();
    for (size_t i = 0; i < nblocks; i++) {
        b[i] = malloc(512);
        if (b[i]) b[i][0] = (unsigned char)i;
    }
    pthread_t w;
    pthread_create(&w, NULL, holds_worker, NULL);
    /* the scavenger's job: it starts on the frees (after its delay) */
    memset(&H[0][0], 0, sizeof H[0][0]);
    lock_max();
    atomic_store(&job_on, 1);
    unsigned long long a = ns_now();
    size_t freed = 0;
    for (size_t i = 0; i < nblocks; i++)
        if ((i / 16) % 2 == 0) free(b[i]), b[i] = NULL, freed++;
    unsigned long long fb = ns_now();
    struct timespec ts = { (time_t)settle, 0 };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
    atomic_store(&job_on, 0);
    unsigned long long hold = lock_max();
    printf("HOLD job=scavenge job_ns=%llu lock_max_ns=%llu mallocs=%llu p99_ns=%llu p999_ns=%llu max_ns=%llu\n",
           fb - a, p_read_stats ? hold : 0, H[0][0].n, pct(&H[0][0], 0.99), pct(&H[0][0], 0.999), H[0][0].max);
    job("idle", job_none, 1);
    job("trim", job_trim, 0.2);
    job("stats", job_stats, 0.2);
    if (p_write_profile_fd) job("profile", job_profile, 0.2);
    if (p_check_leaks) job("leakcheck", job_leaks, 0.2);
    atomic_store(&stop, 1);
    pthread_join(w, NULL);
    unsigned long long sum = 0;
    for (size_t i = 0; i < nblocks; i++) if (b[i]) sum += b[i][0], free(b[i]);
    free(b);
    printf("RESULT workload=latency-holds blocks=%zu freed=%zu", nblocks, freed);
    result_end(now_s() - t0, sum);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "holds") == 0) return holds(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "huge") == 0) return huge(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "mix") == 0) return mix(argc, argv);
    fprintf(stderr, "usage: latency mix [secs] [threads] [maxk] [window] [seed]\n"
                    "       latency huge K [secs] [seed] [lo] [hi]\n"
                    "       latency holds [blocks] [settle_secs]\n");
    return 2;
}
