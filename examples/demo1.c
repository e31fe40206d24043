/* demo1.c: the seed tutorial's first program, in C.
 *
 * The Go original (seed/go-memory-analysis.zh.md, reference/go/programs/
 * demo1.go) appends 32,000,000 ints to a slice inside f(), calls
 * runtime.GC(), logs "done." and sleeps for an hour; top still shows the
 * memory for minutes.  Here f() grows an int64 array the way append does
 * (start with 8 elements, realloc to twice the capacity when full) and frees
 * it when f() ends.  In C free() is the collection: there is no runtime.GC()
 * to call, and like Go's runtime.GC() it does not by itself promise to give
 * anything back to the OS.  What happens to the RSS after "done." is up to
 * the malloc:
 *   - memscope: the freed pages go back after scavenge_delay_ms (1 s by
 *     default); with trace=1 a "scvg" line shows it;
 *   - glibc: blocks this large are separate mmaps, so free() unmaps them at
 *     once (small objects are another story: see demo_nodes.c).
 *
 * usage: demo1 [-v] [SECONDS]
 *   SECONDS  how long to sleep after "done." (default: forever, like Go)
 *   -v       log the RSS (from /proc/self/statm) every 2 s while sleeping
 *
 *   build/memscope run --trace -- build/examples/demo1 20
 */
#include "demo_util.h"

#define N_APPEND (32 * 1000 * 1000)

static void f(void) {
    size_t len = 8, cap = 8;
    int64_t *container = calloc(cap, sizeof *container); /* make([]int, 8) */
    if (!container) abort();
    logf_go("> loop.");
    for (int64_t i = 0; i < N_APPEND; i++) {
        if (len == cap) { /* append: grow by doubling */
            cap *= 2;
            int64_t *p = realloc(container, cap * sizeof *container);
            if (!p) abort();
            container = p;
        }
        container[len++] = i;
    }
    logf_go("< loop.");
    free(container); /* container goes out of scope here */
}

int main(int argc, char **argv) {
    elapsed_s();
    int verbose = 0;
    double seconds = -1; /* forever */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-v") == 0) verbose = 1;
        else seconds = atof(argv[i]);
    }
    logf_go("start.");
    double t1 = elapsed_s();
    f();
    logf_go("f() took %.3fs", elapsed_s() - t1);
    logf_go("done.");

    /* keep the process alive */
    double end = seconds < 0 ? -1 : elapsed_s() + seconds;
    while (end < 0 || elapsed_s() < end) {
        double step = verbose ? 2.0 : 3600.0;
        if (end >= 0 && end - elapsed_s() < step) step = end - elapsed_s();
        sleep_s(step);
        if (verbose) logf_go("t=%7.3fs RSS:%llu", elapsed_s(), (unsigned long long)rss_bytes());
    }
    return 0;
}
