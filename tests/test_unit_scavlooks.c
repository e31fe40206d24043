/* test_unit_scavlooks: threads that end do not make the scavenger look at
 * every cache and every central list (scavenger.c: scavenger_main).
 *
 * A thread's exit wakes the scavenger so that it sees soon whether the
 * program's last thread is gone; it used to make a whole look each time
 * (ms_tcache_park_idle over every cache, ms_central_flush_idle over every
 * class's lock), some 100 a run of bench/many_threads.c.  Linked with
 * ms_tcache_park_idle wrapped (Makefile), this counts the looks while 48
 * threads, each with a cache, start and end one after the other, with the
 * scavenge delay at 10 s and huge pages off, so that no look is due
 * meanwhile: at most 4 may come (the look once a second, if a slow run
 * crosses a second, and one for the objects the threads left in the
 * central lists, which kick the scavenger when it sleeps with nothing
 * due); each exit made one before (53 here, by hand).  Runs in the debug
 * build.
 */
#include <pthread.h>
#include <time.h>

#include "internal.h"
#include "testhelper.h"

bool __real_ms_tcache_park_idle(uint64_t now_ms, uint64_t delay_ms);
static _Atomic int looks;
bool __wrap_ms_tcache_park_idle(uint64_t now_ms, uint64_t delay_ms) {
    atomic_fetch_add(&looks, 1);
    return __real_ms_tcache_park_idle(now_ms, delay_ms);
}

static void nap_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void *worker(void *arg) {
    (void)arg;
    void *p[64];
    for (int i = 0; i < 64; i++) p[i] = malloc(16 + 16 * (size_t)(i % 8));
    for (int i = 0; i < 64; i++) free(p[i]);
    return NULL;
}

int main(void) {
    free(malloc(16)); /* initialized */
    ms_opt.hugepages = 0;
    ms_opt.scavenge_delay_ms = 10000;
    /* 4 MiB of small blocks go back: their spans go idle, the scavenger
     * starts, and looks */
    static void *blk[32768];
    for (int i = 0; i < 32768; i++) blk[i] = malloc(128);
    for (int i = 0; i < 32768; i++) free(blk[i]);
    memscope_free_os_memory(); /* the cache and the central lists too */
    for (int i = 0; i < 100 && atomic_load(&looks) == 0; i++) nap_ms(10);
    CHECK("scavenger-started", atomic_load(&looks) > 0);
    nap_ms(50);
    int before = atomic_load(&looks);
    for (int t = 0; t < 48; t++) {
        pthread_t th;
        if (pthread_create(&th, NULL, worker, NULL) != 0) break;
        pthread_join(th, NULL);
        nap_ms(2); /* the scavenger, woken, sees the exit before the next */
    }
    nap_ms(50);
    int during = atomic_load(&looks) - before;
    fprintf(stderr, "[%d looks while 48 threads ended] ", during);
    CHECK("thread-exits-make-no-looks", during <= 4);
    return print_test_summary();
}
