/* mt.c: leak checks at arbitrary moments while 8 threads allocate and free.
 *
 * Each thread keeps 2000 live blocks (sizes 16..4 KiB, a few of 40 KiB) in an
 * array reachable from a global, replaces random ones (free, then malloc),
 * and every 64 replacements leaks one block and counts it.  The main thread
 * runs memscope_check_leaks now and then: every leak counted before a check
 * began must be found, except at most two per thread whose dead pointers
 * may still sit in a register or stack slot of their thread (a conservative
 * scan counts those reachable, as LeakSanitizer's would), and nothing beyond the leaks counted
 * when it ended may be reported: no live block is ever called lost.
 * Prints one line per check; exit status 1 on a wrong count.
 * Usage: mt [checks] [ms between checks]   (run with libmemscope preloaded)
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

#define THREADS 8
#define LIVE 2000

static void **arrays[THREADS];
static atomic_long leaked;
static atomic_int stop;

static __attribute__((noinline)) void leak_one(uint64_t r) {
    char *p = malloc(24 + r % 100);
    memset(p, 1, 24 + r % 100);
    __asm__ volatile("" ::"r"(p) : "memory");
}

static void *worker(void *arg) {
    int id = (int)(intptr_t)arg;
    uint64_t x = 0x9E3779B97F4A7C15ull * (uint64_t)(id + 1);
    void **a = arrays[id];
    for (long n = 0; !atomic_load_explicit(&stop, memory_order_relaxed); n++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t i = x % LIVE;
        free(a[i]);
        size_t sz = (x >> 20) % 64 == 0 ? 40000 : 16 + (x >> 32) % 4080;
        a[i] = malloc(sz);
        memset(a[i], 1, sz); /* initialized, as programs do: a stale pointer left in a block by its former
                               * use would keep a lost block "reachable", conservatively */
        if (n % 64 == 63) {
            leak_one(x);
            atomic_fetch_add(&leaked, 1);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    int checks = argc > 1 ? atoi(argv[1]) : 3;
    int gap_ms = argc > 2 ? atoi(argv[2]) : 150;
    long (*check)(int) = (long (*)(int))dlsym(RTLD_DEFAULT, "memscope_check_leaks");
    if (!check) {
        fprintf(stderr, "mt: memscope_check_leaks not found (preload libmemscope.so)\n");
        return 2;
    }
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        arrays[i] = calloc(LIVE, sizeof(void *));
        pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
    }
    int bad = 0;
    for (int c = 0; c < checks; c++) {
        struct timespec ts = {0, gap_ms * 1000000L};
        nanosleep(&ts, NULL);
        long before = atomic_load(&leaked);
        long found = check(c == 0 ? 2 : -1);
        long after = atomic_load(&leaked);
        int ok = found >= before - 2 * THREADS && found <= after;
        printf("check %d: leaked before %ld, found %ld, leaked after %ld: %s\n", c, before, found, after,
               ok ? "ok" : "WRONG");
        bad += !ok;
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    return bad ? 1 : 0;
}
