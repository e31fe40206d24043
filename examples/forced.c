/* forced.c: giving memory back now, like Go's debug.FreeOSMemory().
 *
 * Builds 2,000,000 nodes of 64 bytes (128 MB), frees them, and then, instead
 * of waiting for the scavenger, asks for the idle pages to go back at once:
 * memscope_free_os_memory() when memscope is loaded (the trace shows a gc
 * line and a scvg line ending in "(forced)"), glibc's malloc_trim(0)
 * otherwise.  It prints the RSS before and after the call.
 *
 *   build/memscope run --trace -- build/examples/forced
 */
#include "demo_util.h"

int main(int argc, char **argv) {
    elapsed_s();
    long n = argc > 1 ? atol(argv[1]) : 2 * 1000 * 1000;
    say_who(argv[0]);
    void **nodes = malloc((size_t)n * sizeof *nodes);
    if (!nodes) abort();
    for (long i = 0; i < n; i++) {
        nodes[i] = malloc(64);
        if (!nodes[i]) abort();
        memset(nodes[i], 1, 64);
    }
    logf_go("allocated %ld x 64 bytes:  RSS %6.1f MB", n, (double)rss_bytes() / (1 << 20));
    for (long i = 0; i < n; i++) free(nodes[i]);
    free(nodes);
    logf_go("freed:                        RSS %6.1f MB", (double)rss_bytes() / (1 << 20));
    double t = elapsed_s();
    if (memscope_free_os_memory) {
        size_t got = memscope_free_os_memory();
        logf_go("memscope_free_os_memory() returned %zu bytes in %.1f ms", got, (elapsed_s() - t) * 1e3);
    } else {
        int r = malloc_trim(0);
        logf_go("malloc_trim(0) returned %d in %.1f ms", r, (elapsed_s() - t) * 1e3);
    }
    logf_go("after the release:            RSS %6.1f MB", (double)rss_bytes() / (1 << 20));
    memstats_line("forced");
    return 0;
}
