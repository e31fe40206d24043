/* demo2.c: the seed tutorial's second program (ReadMemStats), in C.
 *
 * demo1 plus a statistics line at start, in the middle of the loop
 * (i == 16,000,000), after the loop, after the free, and then every 2 s
 * ("tick"), in the format of reference/go/demo2.memstats.stderr:
 *   start     t=  0.001s Alloc:...(bytes) HeapIdle:...(bytes) HeapReleased:...(bytes) | HeapInuse:...
 *   HeapSys:... Sys:... TotalAlloc:... Mallocs:... Frees:... HeapObjects:... NumGC:... NumForcedGC:...
 *   NextGC:... RSS:...
 * Under memscope the numbers come from memscope_read_stats() (the Go names
 * map one to one onto its fields; PauseTotalNs has no analogue); under glibc
 * the line shows mallinfo2() and the RSS instead.  Watch HeapReleased climb
 * to HeapIdle and RSS fall about scavenge_delay_ms after "after-free".
 *
 * usage: demo2 [SECONDS]   (run time after the free, default 30, then exit)
 *
 *   build/memscope run --trace -- build/examples/demo2 20
 */
#include "demo_util.h"

#define N_APPEND (32 * 1000 * 1000)

static void f(void) {
    size_t len = 8, cap = 8;
    int64_t *container = calloc(cap, sizeof *container);
    if (!container) abort();
    logf_go("> loop.");
    for (int64_t i = 0; i < N_APPEND; i++) {
        if (len == cap) {
            cap *= 2;
            int64_t *p = realloc(container, cap * sizeof *container);
            if (!p) abort();
            container = p;
        }
        container[len++] = i;
        if (i == 16 * 1000 * 1000) memstats_line("mid-loop");
    }
    logf_go("< loop.");
    memstats_line("after-f"); /* still allocated: the end of f(), before the free */
    free(container);
}

int main(int argc, char **argv) {
    elapsed_s();
    double seconds = argc > 1 ? atof(argv[1]) : 30;
    logf_go("start.");
    say_who(argv[0]);
    memstats_line("start");
    double t1 = elapsed_s();
    f();
    logf_go("f() took %.3fs", elapsed_s() - t1);
    logf_go("done.");
    memstats_line("freed");

    double t_free = elapsed_s(); /* ticks at t_free + 2, + 4, ... up to + seconds */
    for (int k = 1; 2.0 * k <= seconds + 1e-9; k++) {
        sleep_s(t_free + 2.0 * k - elapsed_s());
        memstats_line("tick");
    }
    return 0;
}
