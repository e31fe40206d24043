/* test_scav_refused: the scavenger copes with a kernel that refuses a release.
 *
 * madvise(MADV_DONTNEED) fails with EINVAL on locked pages: a program that
 * calls mlockall(MCL_CURRENT | MCL_FUTURE) (cryptsetup, chronyd -m,
 * realtime audio) has every heap page locked, and one that mlock()s a
 * buffer and frees it without munlock() leaves that span's pages locked.
 * Pages the kernel would not take back must wait like newly idle ones
 * before they are tried again.  Tried again at once, they kept the
 * scavenger in a loop of failing madvise calls (81,516 in a 3 s run, a
 * CPU's worth), and each try took the span off the free lists while the
 * call ran, so allocations that wanted its pages grew the heap instead
 * (mlockall'd, a program whose blocks peak at 192 MiB ended with 576 MiB
 * of heap and RSS).
 *
 * Here a freed 4 MiB block keeps 64 KiB locked (within the default
 * RLIMIT_MEMLOCK); with a 50 ms delay the scavenger meets it 20 times a
 * second.  While the main thread sleeps 1 s, the process must use less
 * than 100 ms of CPU (1000 ms before: the loop).  Then blocks of the same
 * size come and go over the locked span, and the stats must still add up.
 * The heap's growth is not checked here: with one span the loop's growth
 * is a few MiB at most, as a rare unlucky malloc may also grow it.
 * Skipped if mlock is refused (a lower RLIMIT_MEMLOCK).  Runs itself with
 * MEMSCOPE=scavenge_delay_ms=50.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>

#include "memscope.h"
#include "testhelper.h"

#define BLOCK ((size_t)4 << 20)

static char *volatile sink;

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static struct memscope_stats stats(void) {
    struct memscope_stats st = {.size = sizeof st};
    memscope_read_stats(&st);
    return st;
}

int main(int argc, char **argv) {
    th_run_with("scavenge_delay_ms=50", argv);
    (void)argc;
    char *p = sink = malloc(BLOCK);
    memset(p, 1, BLOCK);
    char *lk = (char *)(((uintptr_t)p + ((size_t)1 << 20)) & ~(uintptr_t)4095);
    if (mlock(lk, 64 << 10) != 0) {
        printf("SKIP: mlock of 64 KiB refused (%s)\n", strerror(errno));
        free(p);
        return 0;
    }
    free(p); /* its span is idle, with 64 KiB the kernel will not release */
    sleep_ms(100);
    double c0 = cpu_s();
    sleep_ms(1000);
    double spent = cpu_s() - c0;
    fprintf(stderr, "CPU while the main thread slept 1 s: %.0f ms\n", spent * 1e3);
    CHECK("the scavenger does not retry a refused release in a loop", spent < 0.1);

    for (int i = 0; i < 100; i++) {
        char *q = sink = malloc(BLOCK);
        memset(q, 2, 4096);
        free(q);
        sleep_ms(5);
    }
    struct memscope_stats st = stats();
    CHECK("the stats add up", st.heap_released <= st.heap_idle && st.heap_idle + st.heap_inuse == st.heap_sys);
    munlock(lk, 64 << 10);
    return print_test_summary();
}
