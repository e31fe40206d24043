/* bench.h — shared helpers for the memscope benchmark workloads.
 *
 * Every workload is a plain C11 program built with `cc -O2 -pthread` and NOT
 * linked against any allocator: the allocator under test is swapped in with
 * LD_PRELOAD by bench/run.sh, so the very same binary measures glibc,
 * jemalloc, tcmalloc, mimalloc and memscope.  This header supplies a fast
 * deterministic PRNG (so every allocator sees the identical operation
 * sequence), a monotonic clock, current-RSS reading, and the one-line
 * machine-readable result format:
 *
 *     RESULT workload=<name> key=value ... malloc_from=<library path>
 *
 * malloc_from is found with dladdr(&malloc): it proves which library actually
 * served malloc, so run.sh can detect a preload that silently did not apply.
 * Workloads never assert; the checksum they print only keeps the compiler
 * from discarding the memory traffic.
 */
#ifndef MEMSCOPE_BENCH_H
#define MEMSCOPE_BENCH_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdint.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* xorshift64* — tiny, fast, and identical on every run for a given seed. */
typedef struct { uint64_t s; } rng_t;

static inline void rng_seed(rng_t *r, uint64_t seed)
{
    r->s = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
    if (r->s == 0) r->s = 1;
}

static inline uint64_t rng_next(rng_t *r)
{
    uint64_t x = r->s;
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [lo, hi]. */
static inline size_t rng_range(rng_t *r, size_t lo, size_t hi)
{
    return lo + (size_t)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

/* Log-uniform in [lo, hi]: every power-of-two band is equally likely, which
 * is how real programs' size distributions look (many small, few large). */
static inline size_t rng_logrange(rng_t *r, size_t lo, size_t hi)
{
    unsigned lb = 0, hb = 0;
    while (((size_t)1 << (lb + 1)) <= lo) lb++;
    while (((size_t)1 << (hb + 1)) <= hi) hb++;
    unsigned b = lb + (unsigned)(rng_next(r) % (uint64_t)(hb - lb + 1));
    size_t a = (size_t)1 << b;
    size_t sz = a + (size_t)(rng_next(r) % (uint64_t)a);
    if (sz < lo) sz = lo;
    if (sz > hi) sz = hi;
    return sz;
}

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* run_threads: runs fn(t) on n threads at once, t = 0 .. n-1, and waits
 * for them all: the multi-threaded workloads' timed part */
static inline void run_threads(int n, void *(*fn)(void *))
{
    pthread_t th[n > 0 ? n : 1];
    for (int t = 0; t < n; t++) pthread_create(&th[t], NULL, fn, (void *)(intptr_t)t);
    for (int t = 0; t < n; t++) pthread_join(th[t], NULL);
}

/* Resident set size right now, in KiB (from /proc/self/statm).  open/read
 * rather than stdio, so sampling the RSS does not itself allocate. */
static inline long rss_kib(void)
{
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *p = buf;
    strtol(p, &p, 10);
    return strtol(p, NULL, 10) * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Peak resident set size so far, in KiB (VmHWM, via getrusage). */
static inline long peak_rss_kib(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : -1;
}

/* Which shared object provides malloc in this process. */
static inline const char *malloc_from(void)
{
    Dl_info info;
    void *(*volatile fp)(size_t) = malloc;
    if (dladdr((void *)(uintptr_t)fp, &info) && info.dli_fname && info.dli_fname[0])
        return info.dli_fname;
    return "?";
}

/* Parse argv[i] as an unsigned count, or return dflt. */
static inline unsigned long long arg_ull(int argc, char **argv, int i,
                                         unsigned long long dflt)
{
    if (i < argc && argv[i][0]) return strtoull(argv[i], NULL, 0);
    return dflt;
}

/* Prints the common tail of the RESULT line and ends it. */
static inline void result_end(double secs, unsigned long long checksum)
{
    printf(" secs=%.4f rss_end_kib=%ld checksum=%llu malloc_from=%s\n",
           secs, rss_kib(), checksum, malloc_from());
    fflush(stdout);
}

/* The seed's small-objects demo: a singly linked list of 32-byte nodes,
 * built newest first.  Returns the head; *built is how many were made
 * (fewer than n only if malloc failed). */
typedef struct node {
    struct node *next;
    unsigned long long payload[3];
} node;

static inline node *build_list(unsigned long long n, unsigned long long *built)
{
    node *head = NULL;
    unsigned long long i = 0;
    for (; i < n; i++) {
        node *x = malloc(sizeof *x);
        if (!x) break;
        x->next = head;
        x->payload[0] = i;
        head = x;
    }
    *built = i;
    return head;
}

#endif
