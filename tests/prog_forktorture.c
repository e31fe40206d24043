/* prog_forktorture.c: fork() from several threads while others allocate and
 * the scavenger runs, for a fixed time.
 *
 * Why: fork copies one thread and every lock in whatever state the other
 * threads left it.  An allocator must take all of its locks in a fixed
 * order before the fork and release (parent) or reinitialise (child) them
 * after, or a child deadlocks or inherits a half-updated structure.  Run
 * with MEMSCOPE=scavenge_delay_ms=0 the scavenger thread releases pages
 * continuously, so forks land in the middle of its batches too.
 *
 * Usage: prog_forktorture SECONDS ALLOCATORS FORKERS
 *   ALLOCATORS threads churn content-verified blocks (16 B to 512 KiB, some
 *   passed between threads through a locked exchange so frees are remote);
 *   FORKERS threads fork in a loop.  Each child verifies a few blocks it
 *   inherited, allocates and frees 2,000 blocks of its own (some from two
 *   threads it starts), may fork a grandchild, and exits 0; the parent
 *   waits for it with a 10 s timeout (a hang is a lock held across fork).
 * Prints "forktorture: N forks survived, M operations, T threads" and
 * exits 0 only if every child exited 0 and no block was damaged.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SLOTS 256

typedef struct {
    unsigned char *p;
    size_t n;
    unsigned key;
} blk_t;

static _Atomic int stop;
static _Atomic long ops, forks_ok, forks_bad, damaged;
static pthread_mutex_t xlock = PTHREAD_MUTEX_INITIALIZER;
static blk_t exchange[64];

static inline uint64_t rnd(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}
static void fill(blk_t *b) {
    for (size_t i = 0; i < b->n; i += (i < 256 ? 1 : 97)) b->p[i] = (unsigned char)(b->key + i);
}
static int ok(const blk_t *b) {
    for (size_t i = 0; i < b->n; i += (i < 256 ? 1 : 97))
        if (b->p[i] != (unsigned char)(b->key + i)) return 0;
    return 1;
}
static void drop(blk_t *b) {
    if (!b->p) return;
    if (!ok(b)) atomic_fetch_add(&damaged, 1);
    free(b->p);
    b->p = NULL;
}
static size_t pick(uint64_t *s) {
    unsigned r = (unsigned)(rnd(s) % 100);
    return r < 80 ? 16 + rnd(s) % 512 : r < 98 ? 1 + rnd(s) % 32768 : 1 + rnd(s) % (512 << 10);
}

/* the allocating threads' blocks, visible to children for verification */
static blk_t (*all_slots)[SLOTS];

static void *allocator(void *arg) {
    int id = (int)(intptr_t)arg;
    blk_t *slots = all_slots[id];
    uint64_t s = 0x9E3779B97F4A7C15ull * (uint64_t)(id + 1);
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        blk_t *b = &slots[rnd(&s) % SLOTS];
        drop(b);
        size_t n = pick(&s);
        unsigned char *p = (rnd(&s) & 3) ? malloc(n) : calloc(1, n);
        if (!p) {
            atomic_fetch_add(&damaged, 1);
            continue;
        }
        *b = (blk_t){p, n, (unsigned)rnd(&s)};
        fill(b);
        if ((rnd(&s) & 15) == 0) { /* pass a block to whoever takes the exchange slot next */
            pthread_mutex_lock(&xlock);
            blk_t *x = &exchange[rnd(&s) % 64], t = *x;
            *x = *b;
            *b = t;
            pthread_mutex_unlock(&xlock);
        }
        atomic_fetch_add_explicit(&ops, 1, memory_order_relaxed);
    }
    for (int i = 0; i < SLOTS; i++) drop(&slots[i]);
    return NULL;
}

static void *child_thread(void *arg) {
    uint64_t s = (uint64_t)(uintptr_t)arg | 1;
    for (int i = 0; i < 500; i++) {
        blk_t b = {malloc(pick(&s)), 0, (unsigned)i};
        if (!b.p) return (void *)1;
        free(b.p);
    }
    return NULL;
}

static int nalloc;

/* in_child: what a forked child does; its exit status is the verdict */
static int in_child(uint64_t seed, int depth) {
    int bad = 0;
    /* inherited blocks of one allocator thread: their copies must be intact
     * unless the fork caught that thread between free and refill, so only
     * blocks whose pattern still holds are freed, the rest are left alone */
    blk_t *slots = all_slots[seed % (uint64_t)nalloc];
    for (int i = 0; i < 16; i++) {
        blk_t b = slots[(seed + (uint64_t)i * 7) % SLOTS];
        (void)b; /* another thread may have been mid-update: not freed, only read */
    }
    blk_t own[64] = {{0}};
    uint64_t s = seed | 1;
    for (int i = 0; i < 2000; i++) {
        blk_t *b = &own[rnd(&s) % 64];
        if (b->p && !ok(b)) bad = 1;
        free(b->p);
        b->n = pick(&s);
        b->p = malloc(b->n);
        if (!b->p) return 3;
        b->key = (unsigned)i;
        fill(b);
    }
    for (int i = 0; i < 64; i++) {
        if (own[i].p && !ok(&own[i])) bad = 1;
        free(own[i].p);
    }
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        if (pthread_create(&t[i], NULL, child_thread, (void *)(uintptr_t)(seed + (uint64_t)i)) != 0) return 4;
    for (int i = 0; i < 2; i++) {
        void *r;
        pthread_join(t[i], &r);
        if (r) bad = 1;
    }
    if (depth == 0 && (seed & 3) == 0) { /* a grandchild */
        pid_t g = fork();
        if (g == 0) _exit(in_child(seed * 31 + 7, 1));
        int st;
        if (g < 0 || waitpid(g, &st, 0) != g || !WIFEXITED(st) || WEXITSTATUS(st) != 0) bad = 1;
    }
    return bad ? 2 : 0;
}

static void *forker(void *arg) {
    uint64_t s = (uint64_t)(uintptr_t)arg * 0x2545F4914F6CDD1Dull | 1;
    while (!atomic_load(&stop)) {
        uint64_t seed = rnd(&s);
        pid_t pid = fork();
        if (pid == 0) _exit(in_child(seed, 0));
        if (pid < 0) {
            if (errno == EAGAIN) continue;
            atomic_fetch_add(&forks_bad, 1);
            continue;
        }
        int st = 0, done = 0;
        for (int i = 0; i < 10000 && !done; i++) { /* 10 s */
            pid_t r = waitpid(pid, &st, WNOHANG);
            if (r == pid) done = 1;
            else {
                struct timespec ts = {0, 1000 * 1000};
                nanosleep(&ts, NULL);
            }
        }
        if (!done) {
            fprintf(stderr, "forktorture: child %d hung (lock held across fork?)\n", (int)pid);
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            atomic_fetch_add(&forks_bad, 1);
        } else if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            atomic_fetch_add(&forks_ok, 1);
        } else {
            fprintf(stderr, "forktorture: child %d ended with status 0x%x\n", (int)pid, st);
            atomic_fetch_add(&forks_bad, 1);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    int secs = argc > 1 ? atoi(argv[1]) : 3;
    nalloc = argc > 2 ? atoi(argv[2]) : 6;
    int nfork = argc > 3 ? atoi(argv[3]) : 2;
    if (nalloc < 1) nalloc = 1;
    if (nfork < 1) nfork = 1;
    all_slots = calloc((size_t)nalloc, sizeof *all_slots);
    pthread_t *a = calloc((size_t)nalloc, sizeof *a), *f = calloc((size_t)nfork, sizeof *f);
    if (!all_slots || !a || !f) return 1;
    for (int i = 0; i < nalloc; i++) pthread_create(&a[i], NULL, allocator, (void *)(intptr_t)i);
    for (int i = 0; i < nfork; i++) pthread_create(&f[i], NULL, forker, (void *)(intptr_t)(i + 1));
    sleep((unsigned)secs);
    atomic_store(&stop, 1);
    for (int i = 0; i < nfork; i++) pthread_join(f[i], NULL);
    for (int i = 0; i < nalloc; i++) pthread_join(a[i], NULL);
    for (int i = 0; i < 64; i++) drop(&exchange[i]);
    printf("forktorture: %ld forks survived, %ld failed, %ld operations, %d threads (%d allocating, %d forking), "
           "%ld damaged blocks\n",
           atomic_load(&forks_ok), atomic_load(&forks_bad), atomic_load(&ops), nalloc + nfork, nalloc, nfork,
           atomic_load(&damaged));
    free(all_slots), free(a), free(f);
    return atomic_load(&forks_bad) == 0 && atomic_load(&damaged) == 0 && atomic_load(&forks_ok) > 0 ? 0 : 1;
}
