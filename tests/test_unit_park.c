/* test_unit_park: the scavenger parks the caches of quiet threads
 * (tcache.c, "Quiet threads"), and parking never loses or hands out twice
 * an object of a thread that wakes up.  Debug build (MEMSCOPE_DEBUG=3: the
 * heap checks its lists on every operation), run with scavenge_delay_ms=20
 * (the program re-executes itself with it) so that parking happens often,
 * and profile_rate=1, so that every malloc runs the sampling hook, which a
 * parked cache must not confuse (it once returned another thread's block
 * when the cache was parked just before the hook).
 *
 *   quiet:  a thread goes through every size class and then waits on a
 *           condition variable; its cache held 8.8 MiB of spans in use.
 *           Within 2 s it must be parked and the heap in use back under
 *           1 MiB, with no call from the program; woken, the thread
 *           allocates and frees again with exact counts.
 *   stress: 8 threads allocate and free blocks of every small size in
 *           bursts, keep some alive across sleeps of 0-40 ms (quiet for
 *           the delay: parked, and woken with the next malloc), check the
 *           pattern written in every block before freeing it, and one of
 *           them forks now and then right after a sleep (the child's
 *           mallocs, on a cache that may be parked, must be counted).  Every
 *           block must keep its pattern, the heap's object count must equal
 *           the blocks held at the end, and caches must have been parked
 *           while the threads came and went.
 */
#include <pthread.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "memscope.h"
#include "testhelper.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int phase;

static void wait_phase(int want) {
    pthread_mutex_lock(&mu);
    while (phase < want) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}
static void set_phase(int p) {
    pthread_mutex_lock(&mu);
    phase = p;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void *objs[4096];
static bool resumed_ok;

static void *quiet_worker(void *arg) {
    (void)arg;
    for (int c = 1; c < MS_NUM_CLASSES; c++) {
        size_t size = ms_class_size[c], n = ((size_t)256 << 10) / size;
        if (n > 4096) n = 4096;
        if (n < 8) n = 8;
        for (int r = 0; r < 3; r++) {
            for (size_t i = 0; i < n; i++) objs[i] = malloc(size);
            for (size_t i = 0; i < n; i++) free(objs[i]);
        }
    }
    set_phase(1);
    wait_phase(2); /* quiet here: blocked in a system call */
    bool ok = true;
    for (int i = 0; i < 1000; i++) {
        objs[i] = malloc(16 + (size_t)(i % 50) * 16);
        memset(objs[i], i & 0xff, 16);
    }
    for (int i = 0; i < 1000; i++) {
        ok &= ((unsigned char *)objs[i])[15] == (i & 0xff);
        free(objs[i]);
    }
    resumed_ok = ok;
    return NULL;
}

static uint64_t heap_objects(void) {
    struct memscope_stats st = {.size = sizeof st};
    memscope_read_stats(&st);
    return st.heap_objects;
}

/* ---- stress ---- */

#define THREADS 8
#define HELD 64
static _Atomic bool stop;
static _Atomic uint64_t bad, forks_bad;
static uint64_t held_count[THREADS];
static _Atomic int counted;

static uint64_t heap_objects(void);
static uint64_t xs(uint64_t *x) {
    *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
    return *x;
}

static void fill(unsigned char *p, size_t n, uint64_t tag) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(tag + i);
}
static bool check(const unsigned char *p, size_t n, uint64_t tag) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(tag + i)) return false;
    return true;
}

static void *volatile warm[THREADS];
static _Atomic int warmed;

static void *stress_worker(void *arg) {
    int id = (int)(intptr_t)arg;
    uint64_t x = 0x9E3779B97F4A7C15ull * (uint64_t)(id + 1);
    unsigned char *held[HELD] = {0};
    size_t hsz[HELD] = {0};
    uint64_t tag[HELD] = {0};
    unsigned rounds = 0;
    /* a first sampled malloc: in this debug build it also walks the stack
     * with libunwind, whose per-thread cache then takes the thread's block
     * of dynamic TLS (glibc mallocs it) before main counts */
    warm[id] = malloc(16);
    free(warm[id]);
    atomic_fetch_add(&warmed, 1);
    wait_phase(3); /* main counts the heap's objects once every thread exists */
    while (!atomic_load(&stop)) {
        for (int k = 0; k < 200; k++) { /* a burst */
            int i = (int)(xs(&x) % HELD);
            if (held[i]) {
                if (!check(held[i], hsz[i], tag[i])) atomic_fetch_add(&bad, 1);
                free(held[i]);
                held[i] = NULL;
            } else {
                hsz[i] = 1 + xs(&x) % MS_MAX_SMALL;
                if (hsz[i] > 4096 && xs(&x) % 4) hsz[i] %= 4096;
                tag[i] = xs(&x);
                held[i] = malloc(hsz[i]);
                fill(held[i], hsz[i], tag[i]);
            }
        }
        struct timespec ts = {0, (long)(xs(&x) % 40) * 1000000L};
        nanosleep(&ts, NULL);
        if (id == 0 && ++rounds % 8 == 0) {
            /* right after the sleep, before any malloc: the cache may be
             * parked; the child's mallocs must still be counted */
            pid_t pid = fork();
            if (pid == 0) {
                uint64_t before = heap_objects();
                void *p[100];
                for (int i = 0; i < 100; i++) memset(p[i] = malloc(100), 1, 100);
                bool ok = heap_objects() == before + 100;
                for (int i = 0; i < 100; i++) free(p[i]);
                _exit(ok && heap_objects() == before ? 0 : 3);
            }
            int st = 0;
            if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
                atomic_fetch_add(&forks_bad, 1);
        }
    }
    uint64_t n = 0;
    for (int i = 0; i < HELD; i++) {
        if (!held[i]) continue;
        if (!check(held[i], hsz[i], tag[i])) atomic_fetch_add(&bad, 1);
        n++;
    }
    held_count[id] = n;
    atomic_fetch_add(&counted, 1);
    /* the blocks stay allocated until main has counted them */
    wait_phase(4);
    for (int i = 0; i < HELD; i++) free(held[i]);
    return NULL;
}

int main(int argc, char **argv) {
    (void)argc;
    th_run_with("scavenge_delay_ms=20,profile_rate=1", argv);
    bool quick = getenv("MEMSCOPE_TEST_QUICK") && atoi(getenv("MEMSCOPE_TEST_QUICK")) > 0;

    pthread_t t;
    pthread_create(&t, NULL, quiet_worker, NULL);
    wait_phase(1);
    uint64_t parks0 = atomic_load(&ms_tcache_parks);
    struct memscope_stats st = {.size = sizeof st};
    double waited = 0;
    for (; waited < 2.0; waited += 0.05) {
        memscope_read_stats(&st);
        if (st.heap_inuse - st.heap_alloc < ((uint64_t)1 << 20)) break;
        usleep(50000);
    }
    fprintf(stderr, "[in use but not allocated %.2f MiB after %.2f s; %llu parked] ",
            (double)(st.heap_inuse - st.heap_alloc) / 1048576.0, waited,
            (unsigned long long)(atomic_load(&ms_tcache_parks) - parks0));
    CHECK("quiet-cache-parked", atomic_load(&ms_tcache_parks) > parks0);
    CHECK("heap-back-under-1-MiB-within-2-s", st.heap_inuse - st.heap_alloc < ((uint64_t)1 << 20));
    uint64_t before = heap_objects();
    set_phase(2);
    pthread_join(t, NULL);
    CHECK("parked-thread-resumes", resumed_ok);
    CHECK("counts-exact-after-resume", heap_objects() == before);

    uint64_t parks1 = atomic_load(&ms_tcache_parks);
    pthread_t w[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_create(&w[i], NULL, stress_worker, (void *)(intptr_t)i);
    while (atomic_load(&warmed) < THREADS) usleep(1000);
    uint64_t base = heap_objects(); /* glibc's blocks for the new threads included */
    set_phase(3);
    sleep(quick ? 2 : 6);
    atomic_store(&stop, true);
    /* the workers count what they hold, then wait for phase 4 */
    while (atomic_load(&counted) < THREADS) usleep(10000);
    uint64_t held = 0;
    for (int i = 0; i < THREADS; i++) held += held_count[i];
    fprintf(stderr, "[%llu caches parked under stress, %llu blocks held] ",
            (unsigned long long)(atomic_load(&ms_tcache_parks) - parks1), (unsigned long long)held);
    CHECK("stress-patterns-intact", atomic_load(&bad) == 0);
    CHECK("stress-forks-ok", atomic_load(&forks_bad) == 0);
    CHECK("stress-caches-parked", atomic_load(&ms_tcache_parks) - parks1 >= 8);
    /* the scavenger may be parking the quiet workers' caches while the
     * stats are read: a read may miss objects on their way (never count
     * one twice), so read until the count settles */
    uint64_t objs = 0;
    for (int i = 0; i < 100 && (objs = heap_objects()) != base + held; i++) usleep(20000);
    fprintf(stderr, "[objects %llu = %llu before + %llu held] ", (unsigned long long)objs, (unsigned long long)base,
            (unsigned long long)held);
    CHECK("stress-counts-exact", objs == base + held);
    set_phase(4);
    for (int i = 0; i < THREADS; i++) pthread_join(w[i], NULL);
    /* glibc keeps at most 40 MiB of stacks for reuse: the 8 MiB stacks of
     * the joined threads beyond that go with their DTVs */
    uint64_t after = heap_objects();
    fprintf(stderr, "[objects after the join %llu, before %llu] ", (unsigned long long)after, (unsigned long long)base);
    CHECK("stress-all-freed", after <= base && after + THREADS >= base);
    return print_test_summary();
}
