/* prog_faults.c: allocate, verify and free while the kernel refuses memory.
 *
 * Why: an allocator is judged by what happens when memory runs out.  The
 * contract is the C library's: malloc, calloc, realloc, aligned_alloc and
 * posix_memalign return NULL (or ENOMEM) with errno ENOMEM, a failed realloc
 * leaves the old block untouched, nothing that was live is damaged, and once
 * memory is available again the heap works as before.  This program checks
 * all of it; tests/test_faults.sh runs it in two ways:
 *
 *   prog_faults shim THREADS OPS   under tests/shim_faults.c (LD_PRELOAD):
 *       THREADS threads each churn OPS operations per phase while the shim
 *       fails every Nth mmap/mremap/madvise/mprotect call, for N = 7, 5
 *       (after a budget of 50 successes), 3, 2 and 1 (every call); the
 *       largest requests double each phase so the heap must keep growing,
 *       and each phase ends by releasing idle pages (madvise) still armed.  Between phases
 *       every live block is verified, and the run ends by disarming the shim,
 *       freeing everything and allocating 256 MiB again in assorted sizes.
 *   prog_faults rlimit OPS           under `ulimit -v` (set by the caller, so
 *       memscope starts under it too), allocates until memory runs out (large, medium and small
 *       blocks, and a realloc doubling), frees, and does it again 4 times.
 *
 * Every block holds a pattern derived from its key and is verified before it
 * is resized or freed.  With the debug build (build/debug/libmemscope.so,
 * MEMSCOPE_DEBUG=3) every heap structure is also validated after each
 * operation, so an inconsistent heap aborts at the operation that made it.
 * At the end the statistics identities must hold exactly (one thread).
 * Prints "faults: injected N, NULLs M, ops K" and exits 0 on success.
 */
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "memscope.h"

#define SLOTS 1024

typedef struct {
    unsigned char *p;
    size_t n;
    uint32_t key;
} blk_t;

static _Atomic long n_ops, n_null, n_bad;
static int huge_shift; /* the largest requests double each fault phase, so the heap must grow under faults */

static void bad(const char *what, size_t n) {
    if (atomic_fetch_add(&n_bad, 1) < 10) fprintf(stderr, "prog_faults: FAIL: %s (size %zu)\n", what, n);
}

static inline uint64_t rnd(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static inline unsigned char pat(uint32_t key, size_t i) { return (unsigned char)(key + i * 131 + (i >> 9)); }

/* fill/verify: every byte up to 4 KiB, then a stride (a byte or two per
 * page in blocks above 1 MiB, to keep the RSS down) and the last byte. */
static inline size_t step(size_t i, size_t n) { return i < 4096 ? 1 : n > (1u << 20) ? 65521 : 61; }
static void fill(blk_t *b) {
    for (size_t i = 0; i < b->n; i += step(i, b->n)) b->p[i] = pat(b->key, i);
    if (b->n) b->p[b->n - 1] = pat(b->key, b->n - 1);
}
/* verify_prefix: the first `upto` bytes of a block filled with length n. */
static int verify_prefix(const unsigned char *p, size_t n, uint32_t key, size_t upto) {
    for (size_t i = 0; i < upto; i += step(i, n))
        if (p[i] != pat(key, i)) return 0;
    return upto < n || n == 0 || p[n - 1] == pat(key, n - 1);
}
static int verify(const blk_t *b) { return verify_prefix(b->p, b->n, b->key, b->n); }

static size_t pick_size(uint64_t *s) {
    uint64_t r = rnd(s) % 1000;
    if (r < 700) return 1 + rnd(s) % 1024;
    if (r < 900) return 1 + rnd(s) % (64 << 10);
    if (r < 990) return 1 + rnd(s) % (1 << 20);
    return 1 + rnd(s) % ((size_t)16 << 20 << huge_shift);
}

static void release(blk_t *b, const char *why) {
    if (!b->p) return;
    if (!verify(b)) bad(why, b->n);
    free(b->p);
    b->p = NULL;
}

/* one_op: a random operation on a random slot. */
static void one_op(blk_t *slots, uint64_t *s) {
    blk_t *b = &slots[rnd(s) % SLOTS];
    unsigned op = (unsigned)(rnd(s) % 10);
    atomic_fetch_add(&n_ops, 1);
    if (b->p && op < 4) {
        release(b, "contents changed before free");
        return;
    }
    size_t n = pick_size(s);
    if (b->p && op < 7) { /* realloc: on failure the old block must be intact */
        if (!verify(b)) bad("contents changed before realloc", b->n);
        errno = 0;
        unsigned char *q = realloc(b->p, n);
        if (!q) {
            atomic_fetch_add(&n_null, 1);
            if (errno != ENOMEM) bad("realloc NULL without ENOMEM", n);
            if (!verify(b)) bad("failed realloc damaged the old block", b->n);
            return;
        }
        b->p = q;
        size_t keep = b->n < n ? b->n : n;
        if (!verify_prefix(q, b->n, b->key, keep)) bad("realloc lost contents", keep);
        b->n = n;
        fill(b);
        return;
    }
    release(b, "contents changed before free");
    errno = 0;
    unsigned char *p = NULL;
    int rc = 0;
    size_t align = (size_t)64 << (rnd(s) % 8);
    switch (op % 4) {
    case 0: p = malloc(n); break;
    case 1:
        p = calloc(1, n);
        if (p)
            for (size_t i = 0; i < n; i += (i < 4096 ? 1 : 509))
                if (p[i]) {
                    bad("calloc memory not zero", n);
                    break;
                }
        break;
    case 2:
        rc = posix_memalign((void **)&p, align, n);
        if (rc != 0) {
            if (rc != ENOMEM) bad("posix_memalign failed without ENOMEM", n);
            p = NULL;
            errno = ENOMEM;
        } else if ((uintptr_t)p % align) bad("posix_memalign misaligned", n);
        break;
    default:
        p = aligned_alloc(align, (n + align - 1) / align * align);
        if (p) n = (n + align - 1) / align * align;
        if (p && (uintptr_t)p % align) bad("aligned_alloc misaligned", n);
    }
    if (!p) {
        atomic_fetch_add(&n_null, 1);
        if (errno != ENOMEM) bad("NULL without ENOMEM", n);
        return;
    }
    if (malloc_usable_size(p) < n) bad("usable size below the request", n);
    *b = (blk_t){p, n, (uint32_t)rnd(s)};
    fill(b);
}

typedef struct {
    blk_t slots[SLOTS];
    uint64_t seed;
    long ops;
    pthread_t th;
} worker_t;

static void *churn(void *arg) {
    worker_t *w = arg;
    for (long i = 0; i < w->ops; i++) one_op(w->slots, &w->seed);
    return NULL;
}

static int check_stats(const char *when) {
    struct memscope_stats st = {.size = sizeof st};
    if (memscope_read_stats(&st) != 0) {
        fprintf(stderr, "prog_faults: FAIL: memscope_read_stats failed %s\n", when);
        return 0;
    }
    if (st.heap_objects != st.mallocs - st.frees || st.heap_sys != st.heap_inuse + st.heap_idle ||
        st.heap_released > st.heap_idle || st.heap_alloc > st.heap_inuse) {
        fprintf(stderr,
                "prog_faults: FAIL: stats identities broken %s: objects %llu mallocs %llu frees %llu sys %llu "
                "inuse %llu idle %llu released %llu alloc %llu\n",
                when, (unsigned long long)st.heap_objects, (unsigned long long)st.mallocs,
                (unsigned long long)st.frees, (unsigned long long)st.heap_sys, (unsigned long long)st.heap_inuse,
                (unsigned long long)st.heap_idle, (unsigned long long)st.heap_released,
                (unsigned long long)st.heap_alloc);
        return 0;
    }
    return 1;
}

/* recover: with memory available again, 256 MiB in assorted sizes must all
 * succeed and hold their contents. */
static void recover(void) {
    enum { N = 2048 };
    static blk_t r[N];
    uint64_t s = 0x1234567;
    size_t total = 0;
    for (int i = 0; i < N && total < ((size_t)256 << 20); i++) {
        size_t n = i % 64 == 0 ? ((size_t)4 << 20) : 1 + rnd(&s) % (96 << 10);
        r[i] = (blk_t){malloc(n), n, (uint32_t)i};
        if (!r[i].p) {
            bad("malloc failed after the faults stopped", n);
            continue;
        }
        fill(&r[i]);
        total += n;
    }
    for (int i = 0; i < N; i++) release(&r[i], "contents changed after recovery");
}

static int finish(long injected) {
    if (!check_stats("at the end")) atomic_fetch_add(&n_bad, 1);
    printf("faults: injected %ld, NULLs %ld, ops %ld, failures %ld\n", injected, atomic_load(&n_null),
           atomic_load(&n_ops), atomic_load(&n_bad));
    return atomic_load(&n_bad) == 0 ? 0 : 1;
}

static int run_shim(int threads, long ops) {
    void (*arm)(long, long) = (void (*)(long, long))dlsym(RTLD_DEFAULT, "faultshim_arm");
    long (*injected)(void) = (long (*)(void))dlsym(RTLD_DEFAULT, "faultshim_injected");
    if (!arm || !injected) {
        fprintf(stderr, "prog_faults: FAIL: shim_faults.so is not preloaded\n");
        return 1;
    }
    if (threads < 1 || threads > 64) threads = 1;
    static worker_t ws[64];
    for (int t = 0; t < threads; t++) ws[t].seed = 0x9E3779B97F4A7C15ull * (uint64_t)(t + 1);
    /* (every, budget): every 2nd, 3rd, 7th call, every call, every 5th after 50 successes */
    static const long plan[][2] = {{7, 0}, {5, 50}, {3, 0}, {2, 0}, {1, 0}};
    for (size_t ph = 0; ph < sizeof plan / sizeof plan[0]; ph++) {
        for (int t = 0; t < threads; t++) ws[t].ops = ops;
        huge_shift = ph < 3 ? (int)ph : 3;
        arm(plan[ph][0], plan[ph][1]);
        for (int t = 1; t < threads; t++) pthread_create(&ws[t].th, NULL, churn, &ws[t]);
        churn(&ws[0]);
        for (int t = 1; t < threads; t++) pthread_join(ws[t].th, NULL);
        /* releasing idle pages (madvise, under faults too) */
        memscope_free_os_memory();
        arm(0, 0);
        /* between phases, every live block of every thread must be intact */
        for (int t = 0; t < threads; t++)
            for (int i = 0; i < SLOTS; i++)
                if (ws[t].slots[i].p && !verify(&ws[t].slots[i])) bad("live block damaged during faults", 0);
        fprintf(stderr, "prog_faults: phase every=%ld budget=%ld: injected so far %ld, NULLs %ld\n", plan[ph][0],
                plan[ph][1], injected(), atomic_load(&n_null));
    }
    for (int t = 0; t < threads; t++)
        for (int i = 0; i < SLOTS; i++) release(&ws[t].slots[i], "contents changed (final free)");
    recover();
    if (injected() == 0) bad("the shim injected no fault", 0);
    if (atomic_load(&n_null) == 0) bad("no allocation ever failed under faults", 0);
    return finish(injected());
}

static long vm_size(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0;
    if (f) {
        if (fscanf(f, "%ld", &pages) != 1) pages = 0;
        fclose(f);
    }
    return pages * sysconf(_SC_PAGESIZE);
}

static int run_rlimit(long ops) {
    /* The limit must be in place before memscope starts (its first
     * reservation is made then), so it is inherited: ulimit -v. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) {
        fprintf(stderr, "prog_faults: FAIL: run under an address-space limit (ulimit -v)\n");
        return 1;
    }
    fprintf(stderr, "prog_faults: RLIMIT_AS %llu MiB, %ld MiB mapped at start\n",
            (unsigned long long)rl.rlim_cur >> 20, vm_size() >> 20);
    static blk_t big[4096];
    uint64_t s = 42;
    long exhausted = 0;
    for (int round = 0; round < 5; round++) {
        /* fill memory until it runs out, sizes shrinking as it gets tight */
        int n = 0;
        long null_before = atomic_load(&n_null);
        size_t sz = (size_t)8 << 20;
        while (n < 4096 && sz >= 16) {
            errno = 0;
            unsigned char *p = malloc(sz);
            atomic_fetch_add(&n_ops, 1);
            if (!p) {
                atomic_fetch_add(&n_null, 1);
                if (errno != ENOMEM) bad("NULL without ENOMEM under RLIMIT_AS", sz);
                sz /= 4;
                continue;
            }
            big[n] = (blk_t){p, sz, (uint32_t)rnd(&s)};
            fill(&big[n++]);
        }
        if (atomic_load(&n_null) == null_before) bad("memory never ran out under RLIMIT_AS", 0);
        else exhausted++;
        /* a realloc doubling must fail cleanly, keeping the block */
        blk_t g = {malloc(4096), 4096, 7};
        if (g.p) {
            fill(&g);
            for (;;) {
                errno = 0;
                unsigned char *q = realloc(g.p, g.n * 2);
                if (!q) {
                    if (errno != ENOMEM) bad("realloc NULL without ENOMEM under RLIMIT_AS", g.n * 2);
                    break;
                }
                g.p = q;
                g.n *= 2;
                fill(&g);
                if (g.n > ((size_t)1 << 30)) break;
            }
            release(&g, "realloc-grown block damaged");
        }
        for (int i = 0; i < n; i++) release(&big[i], "block damaged under RLIMIT_AS");
        memscope_free_os_memory();
        /* usable again: small churn must fully succeed */
        worker_t *w = calloc(1, sizeof *w);
        if (!w) {
            bad("calloc failed after freeing everything", sizeof *w);
            break;
        }
        w->seed = 99 + (uint64_t)round;
        w->ops = ops;
        churn(w);
        for (int i = 0; i < SLOTS; i++) release(&w->slots[i], "contents changed (rlimit churn)");
        free(w);
    }
    fprintf(stderr, "prog_faults: memory exhausted and recovered %ld times under RLIMIT_AS\n", exhausted);
    return finish(exhausted);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc >= 2 && strcmp(argv[1], "shim") == 0)
        return run_shim(argc > 2 ? atoi(argv[2]) : 1, argc > 3 ? atol(argv[3]) : 20000);
    if (argc >= 2 && strcmp(argv[1], "rlimit") == 0) return run_rlimit(argc > 2 ? atol(argv[2]) : 20000);
    fprintf(stderr, "usage: prog_faults shim THREADS OPS | rlimit OPS\n");
    return 2;
}
