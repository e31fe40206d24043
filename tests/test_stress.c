/* test_stress.c: multi-threaded allocation stress with content verification.
 *
 * Why: a thread-caching allocator's worst bugs only show under concurrency:
 * a block handed out twice, a cross-thread free landing in the wrong cache,
 * a dying thread's cache lost or freed twice, a lock held across fork().
 * Every block here is filled with a pattern derived from its address, size
 * and a per-block key, and verified before it is realloc'd or freed, so any
 * overlap or stray write is caught at the next touch.
 *
 *   - THREADS threads per round, ROUNDS rounds: threads are created and
 *     joined every round (thread-cache creation and teardown).
 *   - Blocks move between threads through a shared locked ring, so most
 *     frees happen on a thread other than the allocating one; blocks left
 *     at thread exit are carried into the next round and freed by threads
 *     that did not exist when they were allocated.
 *   - Sizes span tiny to 4 MiB (some > 32 KiB, i.e. large spans), with
 *     realloc, calloc (verified zero) and memalign mixed in.
 *   - Several times the main thread fork()s while the workers allocate; the
 *     child must malloc/free/verify (including blocks inherited from the
 *     parent) and exit 0 within a timeout (a hang means a lock was held
 *     across fork).
 *
 * Usage: test_stress [THREADS [ROUNDS [ITER]]]; defaults 32 50 1500, or
 * 8 10 1000 when MEMSCOPE_TEST_QUICK=1.  Deterministic xorshift PRNG per
 * thread, so a failing run repeats with the same sequence of requests (the
 * interleaving of course varies).
 */
#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "memscope.h"
#include "testhelper.h"

static int THREADS = 32;
static int ROUNDS = 50;
static int ITER = 1500;

/* ------------------------------------------------------------------------
 * Blocks and their patterns
 * ---------------------------------------------------------------------- */

typedef struct block_s {
    unsigned char *p; /* NULL = empty slot */
    size_t n;         /* requested bytes, all of which are patterned */
    uint64_t key;     /* pattern key; kept across realloc so the prefix stays valid */
} block_t;

static atomic_long corrupt_count;  /* verification failures */
static atomic_long alloc_fail;     /* NULL results for sane sizes */
static atomic_long ops_done;

static inline uint64_t xorshift64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static inline uint64_t word_val(uint64_t key, size_t w) { return key ^ ((uint64_t)w * 0x9E3779B97F4A7C15ull); }

/* pat_fill writes bytes [from, to) of the block's pattern. */
static void pat_fill(unsigned char *p, size_t from, size_t to, uint64_t key)
{
    size_t i = from;
    while (i < to && (i & 7)) {
        uint64_t v = word_val(key, i / 8);
        p[i] = (unsigned char)(v >> (8 * (i & 7)));
        i++;
    }
    for (; i + 8 <= to; i += 8) {
        uint64_t v = word_val(key, i / 8);
        memcpy(p + i, &v, 8);
    }
    for (; i < to; i++) {
        uint64_t v = word_val(key, i / 8);
        p[i] = (unsigned char)(v >> (8 * (i & 7)));
    }
}

/* pat_check returns the offset of the first wrong byte in [0, n), or n. */
static size_t pat_check(const unsigned char *p, size_t n, uint64_t key)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v, want = word_val(key, i / 8);
        memcpy(&v, p + i, 8);
        if (v != want) break;
    }
    for (; i < n; i++) {
        uint64_t v = word_val(key, i / 8);
        if (p[i] != (unsigned char)(v >> (8 * (i & 7)))) return i;
    }
    return n;
}

static void report_corrupt(const char *where, const block_t *b, size_t off)
{
    long c = atomic_fetch_add(&corrupt_count, 1);
    if (c < 10) {
        uint64_t want = word_val(b->key, off / 8);
        fprintf(stderr,
                "\n  CORRUPT (%s): block %p size %zu key %016llx: byte %zu is 0x%02x, want 0x%02x\n",
                where, (void *)b->p, b->n, (unsigned long long)b->key, off, b->p[off],
                (unsigned char)(want >> (8 * (off & 7))));
    }
}

static bool verify(const char *where, const block_t *b)
{
    size_t off = pat_check(b->p, b->n, b->key);
    if (off != b->n) {
        report_corrupt(where, b, off);
        return false;
    }
    return true;
}

/* pick_size: mostly small, some medium, a few large (> 32 KiB) and huge. */
static size_t pick_size(uint64_t *rng)
{
    uint64_t r = xorshift64(rng);
    unsigned bucket = (unsigned)(r % 1000);
    r >>= 10;
    if (bucket < 600) return 1 + r % 256;
    if (bucket < 850) return 257 + r % (4096 - 257);
    if (bucket < 965) return 4097 + r % (32768 - 4097);
    if (bucket < 999) return 32769 + r % (256 * 1024);
    return 256 * 1024 + r % (3u << 20); /* 0.1%: up to 3.25 MiB */
}

static void block_new(block_t *b, uint64_t *rng)
{
    size_t n = pick_size(rng);
    unsigned kind = (unsigned)(xorshift64(rng) % 20);
    unsigned char *p;
    if (kind == 0) {
        p = calloc(1, n);
        if (p) {
            for (size_t i = 0; i < n; i++) {
                if (p[i] != 0) {
                    long c = atomic_fetch_add(&corrupt_count, 1);
                    if (c < 10)
                        fprintf(stderr, "\n  CALLOC NOT ZERO: %p size %zu byte %zu = 0x%02x\n",
                                (void *)p, n, i, p[i]);
                    break;
                }
            }
        }
    } else if (kind == 1) {
        size_t align = (size_t)16 << (xorshift64(rng) % 9); /* 16 .. 4096 */
        p = memalign(align, n);
        if (p && ((uintptr_t)p & (align - 1))) {
            atomic_fetch_add(&corrupt_count, 1);
            fprintf(stderr, "\n  MISALIGNED memalign(%zu, %zu) = %p\n", align, n, (void *)p);
        }
    } else {
        p = malloc(n);
    }
    if (p == NULL) {
        atomic_fetch_add(&alloc_fail, 1);
        b->p = NULL;
        return;
    }
    /* fundamental alignment: 16, or the largest power of two <= n below that
     * (test_api checks memscope's own stricter 16 for every size) */
    size_t fa = 16;
    while (fa > 1 && fa > n) fa >>= 1;
    if (((uintptr_t)p & (fa - 1)) != 0) {
        atomic_fetch_add(&corrupt_count, 1);
        fprintf(stderr, "\n  MISALIGNED malloc(%zu) = %p\n", n, (void *)p);
    }
    b->p = p;
    b->n = n;
    b->key = ((uint64_t)(uintptr_t)p * 0xD6E8FEB86659FD93ull) ^ ((uint64_t)n << 32) ^ xorshift64(rng);
    pat_fill(p, 0, n, b->key);
}

static void block_free(const char *where, block_t *b)
{
    if (b->p == NULL) return;
    verify(where, b);
    free(b->p);
    b->p = NULL;
}

static void block_realloc(block_t *b, uint64_t *rng)
{
    if (!verify("before realloc", b)) {
        free(b->p);
        b->p = NULL;
        return;
    }
    size_t m = pick_size(rng);
    unsigned char *q = realloc(b->p, m);
    if (q == NULL) {
        atomic_fetch_add(&alloc_fail, 1);
        free(b->p);
        b->p = NULL;
        return;
    }
    size_t keep = m < b->n ? m : b->n;
    b->p = q;
    size_t oldn = b->n;
    b->n = keep;
    if (!verify("after realloc", b)) {
        free(q);
        b->p = NULL;
        return;
    }
    b->n = m;
    if (m > oldn) pat_fill(q, oldn, m, b->key);
}

/* ------------------------------------------------------------------------
 * The shared ring: blocks in transit between threads (locked; the allocator
 * is what is being stressed, not the ring).
 * ---------------------------------------------------------------------- */

#define RING_CAP 4096
static block_t ring[RING_CAP];
static size_t ring_head, ring_len;
static pthread_mutex_t ring_lock = PTHREAD_MUTEX_INITIALIZER;

static bool ring_push(const block_t *b)
{
    bool ok = false;
    pthread_mutex_lock(&ring_lock);
    if (ring_len < RING_CAP) {
        ring[(ring_head + ring_len) % RING_CAP] = *b;
        ring_len++;
        ok = true;
    }
    pthread_mutex_unlock(&ring_lock);
    return ok;
}

static bool ring_pop(block_t *b)
{
    bool ok = false;
    pthread_mutex_lock(&ring_lock);
    if (ring_len > 0) {
        *b = ring[ring_head];
        ring_head = (ring_head + 1) % RING_CAP;
        ring_len--;
        ok = true;
    }
    pthread_mutex_unlock(&ring_lock);
    return ok;
}

/* ------------------------------------------------------------------------
 * Worker
 * ---------------------------------------------------------------------- */

#define SLOTS 128

typedef struct worker_s {
    int id;
    int round;
    pthread_t th;
} worker_t;

static void *worker(void *arg)
{
    worker_t *w = arg;
    uint64_t rng = 0x243F6A8885A308D3ull ^ ((uint64_t)(w->id + 1) * 0x100000001B3ull) ^
                   ((uint64_t)(w->round + 1) << 40);
    block_t *slots = calloc(SLOTS, sizeof *slots);
    if (slots == NULL) {
        atomic_fetch_add(&alloc_fail, 1);
        return NULL;
    }
    for (int it = 0; it < ITER; it++) {
        uint64_t r = xorshift64(&rng);
        block_t *b = &slots[r % SLOTS];
        unsigned op = (unsigned)((r >> 20) % 100);
        if (b->p == NULL) {
            if (op < 25) {
                /* adopt a block another thread allocated */
                if (!ring_pop(b)) block_new(b, &rng);
                else if (!verify("adopted", b)) { free(b->p); b->p = NULL; }
            } else {
                block_new(b, &rng);
            }
        } else if (op < 40) {
            /* hand it to another thread: it will be freed there */
            if (verify("before handoff", b) && ring_push(b)) b->p = NULL;
            else block_free("local free (ring full)", b);
        } else if (op < 55) {
            block_realloc(b, &rng);
        } else if (op < 85) {
            block_free("local free", b);
        } else {
            /* take one from the ring and free it right away (cross-thread free) */
            block_t o;
            if (ring_pop(&o)) block_free("cross-thread free", &o);
            verify("recheck", b);
        }
    }
    /* Leave a few blocks for the next round's threads (they outlive this
     * thread and its cache); free the rest here. */
    for (int i = 0; i < SLOTS; i++) {
        if (slots[i].p == NULL) continue;
        if (i % 4 == 0 && verify("at exit", &slots[i]) && ring_push(&slots[i])) slots[i].p = NULL;
        else block_free("at exit", &slots[i]);
    }
    free(slots);
    atomic_fetch_add(&ops_done, ITER);
    return NULL;
}

/* ------------------------------------------------------------------------
 * fork() while the workers allocate
 * ---------------------------------------------------------------------- */

static atomic_long fork_bad;  /* children that failed or hung */
static atomic_long fork_done; /* children that exited 0 */

/* count_threads_named returns how many threads of this process have the
 * given name (/proc/self/task/N/comm), or -1 if /proc is unreadable. */
static int count_threads_named(const char *name)
{
    DIR *d = opendir("/proc/self/task");
    if (d == NULL) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[300], comm[64] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL) continue;
        if (fgets(comm, sizeof comm, f) != NULL) comm[strcspn(comm, "\n")] = 0;
        fclose(f);
        if (strcmp(comm, name) == 0) n++;
    }
    closedir(d);
    return n;
}

static void *child_thread(void *arg)
{
    (void)arg;
    void *keep = malloc(1000);
    for (int i = 0; i < 1000; i++) free(malloc((size_t)(i * 37 % 70000) + 1));
    return keep;
}

/* child_work runs in the forked child: it may only rely on malloc being
 * usable after fork, which every production allocator guarantees. */
static int child_work(block_t *inherited, int ninh, long corrupt0, long fail0)
{
    uint64_t rng = 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid();
    int bad = 0;
    /* blocks the parent allocated before fork are intact and freeable here */
    for (int i = 0; i < ninh; i++) {
        if (inherited[i].p == NULL) continue;
        if (pat_check(inherited[i].p, inherited[i].n, inherited[i].key) != inherited[i].n) {
            fprintf(stderr, "\n  child: inherited block %p (size %zu) corrupt\n",
                    (void *)inherited[i].p, inherited[i].n);
            bad = 1;
        }
        free(inherited[i].p);
    }
    block_t b[64];
    memset(b, 0, sizeof b);
    for (int it = 0; it < 2000; it++) {
        block_t *s = &b[xorshift64(&rng) % 64];
        if (s->p == NULL) {
            block_new(s, &rng);
        } else {
            if (!verify("child", s)) bad = 1;
            if (it % 3 == 0) block_realloc(s, &rng);
            else { free(s->p); s->p = NULL; }
        }
    }
    for (int i = 0; i < 64; i++) {
        if (b[i].p == NULL) continue;
        if (!verify("child at end", &b[i])) bad = 1;
        free(b[i].p);
    }
    /* a thread in the child: thread caches must work after fork too */
    pthread_t t;
    if (pthread_create(&t, NULL, child_thread, NULL) != 0) {
        fprintf(stderr, "\n  child: pthread_create failed\n");
        bad = 1;
    } else {
        void *r = NULL;
        pthread_join(t, &r);
        if (r == NULL) {
            fprintf(stderr, "\n  child: malloc in a new thread returned NULL\n");
            bad = 1;
        }
        free(r);
    }
    /* memscope restarts its scavenger in a fork child on demand: never twice
     * (two would share one condition variable, re-initialised under a waiter) */
    int nscvg = count_threads_named("memscope-scvg");
    if (nscvg > 1) {
        fprintf(stderr, "\n  child: %d memscope-scvg threads, want at most 1\n", nscvg);
        bad = 1;
    }
    /* only failures of this child count (the parent's were inherited) */
    if (atomic_load(&corrupt_count) != corrupt0 || atomic_load(&alloc_fail) != fail0) {
        fprintf(stderr, "\n  child: corruption or allocation failure (see above)\n");
        bad = 1;
    }
    return bad;
}

static void fork_once(int round, int k)
{
    /* the parent's own blocks, inherited by the child */
    block_t inh[8];
    uint64_t rng = 77 + (uint64_t)round * 31 + (uint64_t)k;
    for (int i = 0; i < 8; i++) block_new(&inh[i], &rng);
    long corrupt0 = atomic_load(&corrupt_count), fail0 = atomic_load(&alloc_fail);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "\n  fork failed: %s\n", strerror(errno));
        atomic_fetch_add(&fork_bad, 1);
    } else if (pid == 0) {
        _exit(child_work(inh, 8, corrupt0, fail0));
    } else {
        /* wait at most 30 s: a child stuck on an allocator lock never exits */
        int status = 0;
        pid_t r = 0;
        for (int ms = 0; ms < 30000; ms += 10) {
            r = waitpid(pid, &status, WNOHANG);
            if (r != 0) break;
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        if (r == 0) {
            fprintf(stderr, "\n  fork child %d (round %d) HUNG for 30 s: lock held across fork?\n",
                    (int)pid, round);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            atomic_fetch_add(&fork_bad, 1);
        } else if (r < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "\n  fork child %d (round %d) failed: %s %d\n", (int)pid, round,
                    WIFSIGNALED(status) ? "signal" : "exit",
                    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
            atomic_fetch_add(&fork_bad, 1);
        } else {
            atomic_fetch_add(&fork_done, 1);
        }
    }
    for (int i = 0; i < 8; i++) block_free("parent after fork", &inh[i]);
}

static void *forker(void *arg)
{
    int k = (int)(intptr_t)arg;
    for (int i = 0; i < 3; i++) fork_once(2000 + k, i);
    return NULL;
}

/* ------------------------------------------------------------------------ */

#ifndef TEST_GLIBC_ONLY
static bool read_stats(struct memscope_stats *s)
{
    memset(s, 0, sizeof *s);
    s->size = sizeof *s;
    return memscope_read_stats(s) == 0;
}
#endif

int main(int argc, char **argv)
{
    const char *q = getenv("MEMSCOPE_TEST_QUICK");
    if (q != NULL && strcmp(q, "1") == 0) {
        THREADS = 8;
        ROUNDS = 10;
        ITER = 1000;
    }
    if (argc > 1) THREADS = atoi(argv[1]);
    if (argc > 2) ROUNDS = atoi(argv[2]);
    if (argc > 3) ITER = atoi(argv[3]);
    if (THREADS < 1) THREADS = 1;
    if (ROUNDS < 1) ROUNDS = 1;
    if (ITER < 1) ITER = 1;
    fprintf(stderr, "test_stress: %d threads x %d rounds x %d iterations\n", THREADS, ROUNDS, ITER);

#ifndef TEST_GLIBC_ONLY
    struct memscope_stats before;
    bool have_before = read_stats(&before);
#endif

    worker_t *ws = calloc((size_t)THREADS, sizeof *ws);
    CHECK_BODY("threads-rounds-cross-thread-frees-fork") {
        for (int round = 0; round < ROUNDS && ws; round++) {
            for (int i = 0; i < THREADS; i++) {
                ws[i].id = i;
                ws[i].round = round;
                if (pthread_create(&ws[i].th, NULL, worker, &ws[i]) != 0) {
                    fprintf(stderr, "\n  pthread_create failed in round %d\n", round);
                    result = false;
                    ws[i].th = 0;
                }
            }
            /* fork while the workers run: every 5th round, and in round 0 */
            if (round % 5 == 0)
                for (int k = 0; k < 3; k++) fork_once(round, k);
            for (int i = 0; i < THREADS; i++)
                if (ws[i].th) pthread_join(ws[i].th, NULL);
            if (atomic_load(&corrupt_count) > 0) break; /* the first report is the useful one */
        }
        /* drain what the last round left in transit */
        block_t b;
        while (ring_pop(&b)) block_free("final drain", &b);
        long corrupt = atomic_load(&corrupt_count), failed = atomic_load(&alloc_fail);
        long ops = atomic_load(&ops_done);
        result = result && CHECK_TRUE(ws != NULL) && CHECK_TRUE(corrupt == 0) &&
                 CHECK_TRUE(failed == 0) && CHECK_TRUE(ops == (long)THREADS * ROUNDS * ITER);
    }
    free(ws);
    CHECK_BODY("fork-children-all-exited-0") {
        long bad = atomic_load(&fork_bad), done = atomic_load(&fork_done);
        result = CHECK_TRUE(bad == 0) && CHECK_TRUE(done > 0);
    }

    CHECK_BODY("fork-from-non-main-threads-concurrently") {
        /* two threads fork at the same time while four others allocate */
        enum { N = 4 };
        pthread_t t[N], f[2];
        worker_t w[N];
        int saved_iter = ITER;
        long bad0 = atomic_load(&fork_bad); /* count only this check's failures */
        long corrupt0 = atomic_load(&corrupt_count);
        ITER = ITER < 2000 ? ITER : 2000;
        for (int i = 0; i < N; i++) {
            w[i].id = 100 + i;
            w[i].round = 0;
            pthread_create(&t[i], NULL, worker, &w[i]);
        }
        for (int k = 0; k < 2; k++) pthread_create(&f[k], NULL, forker, (void *)(intptr_t)k);
        for (int k = 0; k < 2; k++) pthread_join(f[k], NULL);
        for (int i = 0; i < N; i++) pthread_join(t[i], NULL);
        ITER = saved_iter;
        block_t b;
        while (ring_pop(&b)) block_free("final drain", &b);
        long bad = atomic_load(&fork_bad) - bad0, corrupt = atomic_load(&corrupt_count) - corrupt0;
        result = CHECK_TRUE(bad == 0) && CHECK_TRUE(corrupt == 0);
    }

#ifndef TEST_GLIBC_ONLY
    CHECK_BODY("stats-no-leak-after-stress") {
        /* Every block was freed, so live objects must be back near where they
         * started: per-thread counters of dead threads must have been merged,
         * and cross-thread frees counted exactly once.  The slack covers
         * libc's own allocations (stdio, thread bookkeeping). */
        struct memscope_stats after;
        result = CHECK_TRUE(have_before) && CHECK_TRUE(read_stats(&after));
        if (result) {
            long long d = (long long)after.heap_objects - (long long)before.heap_objects;
            if (d < -64 || d > 64 + 4LL * THREADS)
                fprintf(stderr, "\n  heap_objects before %llu after %llu (mallocs %llu frees %llu)\n",
                        (unsigned long long)before.heap_objects,
                        (unsigned long long)after.heap_objects,
                        (unsigned long long)after.mallocs, (unsigned long long)after.frees);
            result = CHECK_TRUE(d >= -64 && d <= 64 + 4LL * THREADS) &&
                     CHECK_TRUE(after.heap_objects == after.mallocs - after.frees) &&
                     CHECK_TRUE(after.heap_sys == after.heap_inuse + after.heap_idle) &&
                     CHECK_TRUE(after.mallocs - before.mallocs >= (uint64_t)THREADS * ROUNDS);
        }
    }
#endif
    return print_test_summary();
}
