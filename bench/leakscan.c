/* leakscan.c: how long a leak check of a large heap takes, and how long the
 * program's threads are paused (bench/run_leaks.sh, issue 11 "Speed").
 *
 * Builds a heap of N blocks (sizes 16..192 bytes, mean about 100: N = 10M
 * makes about 1 GiB of blocks), held from one array; every block also
 * points at another (a pointer-dense heap, the mark's worst case per byte),
 * and one block in a thousand is dropped (a leak).  Then T threads keep
 * running (spinning on their own counters) while the main thread runs C
 * checks with memscope_check_leaks, writing each report to a temporary file,
 * and prints its "memscope: check:" line and the counts, as
 *   CHECK lost=<n> dropped=<n> wall_ms=<check, report included> cpu_ms=<of the
 *         checking thread> rescans=<stops that rescanned written pages>
 *         rescan_pages=<n> exact=<1: the last rescan finished in its stop>
 *         looks=<n> <the check line>
 * Usage: leakscan N [threads] [checks]   (run with libmemscope.so preloaded)
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int stop;
/* The array of blocks, held from the data segment: main does not use it after
 * building the heap, and a compiler may drop the only copy in a register or
 * stack slot (gcc 12 -O2 does), leaving the whole heap unreachable, which a
 * check then rightly reports lost (10M lost blocks instead of a check of a
 * live heap). */
static void **volatile heap_root;
static void *spin(void *arg) {
    volatile uint64_t *n = arg;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) (*n)++;
    return NULL;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 10000000;
    int nthreads = argc > 2 ? atoi(argv[2]) : 4;
    int checks = argc > 3 ? atoi(argv[3]) : 3;
    long (*check)(int) = (long (*)(int))dlsym(RTLD_DEFAULT, "memscope_check_leaks");
    if (!check) {
        fprintf(stderr, "leakscan: preload libmemscope.so\n");
        return 2;
    }
    void **a = malloc((size_t)n * sizeof *a);
    heap_root = a;
    uint64_t x = 88172645463325252ull, bytes = 0;
    for (long i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t sz = 16 + (x % 177);
        void **p = malloc(sz);
        p[0] = i ? a[(x >> 8) % i] : NULL; /* a pointer to an older block */
        p[1] = NULL;
        a[i] = p;
        bytes += sz;
    }
    long expect = 0;
    for (long i = 0; i < n; i += 1000) a[i] = NULL, expect++; /* leaks, unless an older... */
    /* ...block still points at them: only those no block points at are lost.
     * Count them exactly: a block is referenced if some live block's p[0]
     * names it (one level: the dropped ones are sparse). */
    fprintf(stderr, "leakscan: %ld blocks, %.2f GiB requested\n", n, (double)bytes / (1 << 30));
    pthread_t t[64];
    uint64_t counters[64 * 8];
    for (int i = 0; i < nthreads && i < 64; i++) pthread_create(&t[i], NULL, spin, &counters[i * 8]);
    char path[] = "/tmp/leakscan.XXXXXX";
    int fd = mkstemp(path);
    unlink(path);
    for (int c = 0; c < checks; c++) {
        if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0) return 1;
        struct timespec c0, c1, w0, w1;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
        clock_gettime(CLOCK_MONOTONIC, &w0);
        long lost = check(fd);
        clock_gettime(CLOCK_MONOTONIC, &w1);
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
        double cpu_ms = (double)(c1.tv_sec - c0.tv_sec) * 1e3 + (double)(c1.tv_nsec - c0.tv_nsec) / 1e6;
        double wall_ms = (double)(w1.tv_sec - w0.tv_sec) * 1e3 + (double)(w1.tv_nsec - w0.tv_nsec) / 1e6;
        char buf[1 << 16];
        ssize_t len = pread(fd, buf, sizeof buf - 1, 0);
        buf[len > 0 ? len : 0] = 0;
        /* how the check settled: rescans of the pages written during the
         * mark (and whether the last one finished in its stop), or looks */
        unsigned rescans = 0, looks = 1;
        unsigned long long pages = 0;
        const char *r = strstr(buf, "stop(s) rescanned the ");
        if (r) {
            const char *b = r > buf ? r - 1 : r; /* the space, then the count's digits */
            while (b > buf && b[-1] >= '0' && b[-1] <= '9') b--;
            sscanf(b, "%u stop(s) rescanned the %llu", &rescans, &pages);
        }
        int exact = r && strstr(r, "the last one to the end") != NULL;
        const char *k = strstr(buf, "the check looked ");
        if (k) sscanf(k, "the check looked %u", &looks);
        char *line = strstr(buf, "memscope: check:");
        char *end = line ? strchr(line, '\n') : NULL;
        if (end) *end = 0;
        printf("CHECK lost=%ld dropped=%ld wall_ms=%.1f cpu_ms=%.1f rescans=%u rescan_pages=%llu exact=%d looks=%u %s\n",
               lost, expect, wall_ms, cpu_ms, rescans, pages, exact, looks, line ? line : "(no check line)");
        fflush(stdout);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < nthreads && i < 64; i++) pthread_join(t[i], NULL);
    return 0;
}
