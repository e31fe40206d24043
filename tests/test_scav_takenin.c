/* test_scav_takenin: pages taken in release idle ones past the goal.
 *
 * pageheap.c ("Pages taken in"): when an allocation takes pages that are
 * not resident while the heap holds more idle resident pages than
 * max(1 MiB, in use / 16), some of those idle for a 32nd of the scavenge
 * delay go back at once, without waiting for the delay.  Here 24 blocks of
 * 384 KiB are freed out of 48 (9 MiB idle in pieces no larger request
 * fits); a 4 MiB block taken at once releases none of them (too young),
 * and an 8 MiB block taken 200 ms later releases at least 4 MiB of them,
 * long before the 2 s delay.  Without the rule nothing is released before
 * the delay.  Runs itself with MEMSCOPE=scavenge_delay_ms=2000.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "memscope.h"
#include "testhelper.h"

#define NB 48
#define BLOCK ((size_t)384 << 10)

/* every block is stored here: a block written and freed but never read
 * could otherwise be left out by the compiler, malloc and free with it */
static char *volatile sink;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t released_total(uint64_t *sys) {
    struct memscope_stats st = {.size = sizeof st};
    memscope_read_stats(&st);
    if (sys) *sys = st.heap_sys;
    return st.released_total;
}

int main(int argc, char **argv) {
    th_run_with("scavenge_delay_ms=2000", argv);
    (void)argc;
    static char *b[NB];
    for (int i = 0; i < NB; i++) {
        sink = b[i] = malloc(BLOCK);
        memset(b[i], 1, BLOCK);
    }
    uint64_t s0, s1, r0 = released_total(&s0);
    double t0 = now_s();
    for (int i = 0; i < NB; i += 2) free(b[i]);
    char *young = sink = malloc((size_t)4 << 20);
    uint64_t r1 = released_total(&s1);
    double dt = now_s() - t0;
    CHECK("the 4 MiB block took pages in (the heap grew)", s1 > s0);
    if (dt < 0.03) { /* else the machine stalled us past the age bar: no verdict */
        CHECK("pages idle for less than a 32nd of the delay stay", r1 == r0);
    } else {
        fprintf(stderr, "young check skipped: %.0f ms between the frees and the malloc\n", dt * 1e3);
    }
    memset(young, 2, (size_t)4 << 20);
    free(young);
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
    char *big = sink = malloc((size_t)8 << 20);
    uint64_t r2 = released_total(NULL);
    dt = now_s() - t0;
    fprintf(stderr, "heap_sys %.1f -> %.1f MiB at the 4 MiB malloc\n", s0 / 1048576.0, s1 / 1048576.0);
    fprintf(stderr, "released %.1f MiB at the 4 MiB malloc, %.1f MiB at the 8 MiB one, %.0f ms after the frees\n",
            (r1 - r0) / 1048576.0, (r2 - r1) / 1048576.0, dt * 1e3);
    if (dt < 1.5) {
        CHECK("older idle pages went back when the heap took pages in", r2 - r1 >= ((uint64_t)4 << 20));
    } else {
        fprintf(stderr, "release check skipped: the scavenger's delay may have passed\n");
    }
    memset(big, 3, (size_t)8 << 20);
    struct memscope_stats st = {.size = sizeof st};
    memscope_read_stats(&st);
    CHECK("the stats add up", st.heap_released <= st.heap_idle && st.heap_idle + st.heap_inuse == st.heap_sys);
    free(big);
    for (int i = 1; i < NB; i += 2) free(b[i]);
    return print_test_summary();
}
