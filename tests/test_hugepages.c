/* test_hugepages.c: the scavenger backs a dense heap with huge pages, never
 * adds RSS doing so, and MEMSCOPE=hugepages=0 turns it off.
 *
 * The program runs itself twice, with hugepages=1 and with hugepages=0.
 * Each run fills 24 MiB of heap with 64-byte objects, all written and all
 * live, makes no call to memscope, and watches /proc/self/smaps_rollup:
 *   - on: AnonHugePages reaches at least 8 MiB within 3 s (the heap's
 *     2 MiB-aligned regions, minus the partial ones at its ends), and the
 *     anonymous Rss is then no larger than before (a collapse only ever
 *     covers pages that were resident already);
 *   - off: AnonHugePages stays 0 for 1.5 s;
 *   - both: freeing all but one object in every 256 KiB and calling
 *     memscope_free_os_memory() returns the memory: RSS falls by at least
 *     16 MiB (a release inside a huge page splits it) and heap_released
 *     grows by as much.
 * A kernel without MADV_COLLAPSE (before 6.1), or with THP off, skips the
 * "on" checks.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "memscope.h"
#include "testhelper.h"

/* smaps: a field of /proc/self/smaps_rollup, in KiB (-1 if unreadable) */
static long smaps(const char *key) {
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == ':') v = strtol(line + n + 1, NULL, 10);
    if (f) fclose(f);
    return v;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* collapse_works: whether this kernel collapses a resident 2 MiB range */
static int collapse_works(void) {
    size_t huge = (size_t)2 << 20;
    char *p = mmap(NULL, 2 * huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 0;
    char *a = (char *)(((uintptr_t)p + huge - 1) & ~(uintptr_t)(huge - 1));
    memset(a, 1, huge);
    int ok = madvise(a, huge, 25 /* MADV_COLLAPSE */) == 0;
    munmap(p, 2 * huge);
    return ok;
}

enum { OBJ = 64, HEAP = 24 << 20, N = HEAP / OBJ };

static int child(int on) {
    char **o = malloc(N * sizeof *o); /* a large block: its own span */
    for (long i = 0; i < N; i++) {
        o[i] = malloc(OBJ);
        memset(o[i], (int)i, OBJ);
    }
    /* Anonymous: what a collapse could add is heap memory.  Total Rss was
     * seen once 72 KiB up, most likely one 64 KiB fault-around window of
     * the library's text: the scavenger's first collapse runs code out of
     * the hot text (inferred from the size, not caught in smaps) */
    long rss0 = smaps("Rss"), anon0 = smaps("Anonymous"), ahp = 0;
    for (int t = 0; t < (on ? 30 : 15); t++) {
        sleep_ms(100);
        ahp = smaps("AnonHugePages");
        if (on && ahp >= 8 * 1024) break;
    }
    long rss1 = smaps("Rss"), anon1 = smaps("Anonymous");
    fprintf(stderr, "[hugepages=%d: Rss %ld KiB (anonymous %ld), AnonHugePages %ld KiB, then Rss %ld KiB (anonymous %ld)] ",
            on, rss0, anon0, ahp, rss1, anon1);
    if (on) {
        CHECK("dense-heap-collapsed", ahp >= 8 * 1024);
        CHECK("no-rss-added", anon0 > 0 && anon1 <= anon0 + 64);
    } else {
        CHECK("off-no-huge-pages", ahp == 0);
    }
    struct memscope_stats st0 = {.size = sizeof st0}, st1 = {.size = sizeof st1};
    memscope_read_stats(&st0);
    for (long i = 0; i < N; i++)
        if (i % ((256 << 10) / OBJ)) free(o[i]);
    memscope_free_os_memory();
    memscope_read_stats(&st1);
    long rss2 = smaps("Rss");
    fprintf(stderr, "[after the free: Rss %ld KiB, AnonHugePages %ld KiB, released +%llu KiB] ", rss2,
            smaps("AnonHugePages"), (unsigned long long)((st1.heap_released - st0.heap_released) >> 10));
    CHECK("release-returns-rss", rss2 <= rss1 - 16 * 1024);
    CHECK("release-counted", st1.heap_released >= st0.heap_released + ((uint64_t)16 << 20));
    for (long i = 0; i < N; i += (256 << 10) / OBJ) free(o[i]);
    free(o);
    return print_test_summary();
}

static int run(const char *self, int on) {
    pid_t pid = fork();
    if (pid == 0) {
        setenv("MEMSCOPE", on ? "hugepages=1" : "hugepages=0", 1);
        execl(self, self, on ? "on" : "off", (char *)NULL);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

int main(int argc, char **argv) {
    if (argc > 1) return child(strcmp(argv[1], "on") == 0);
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return 1;
    self[n] = 0;
    if (!collapse_works()) {
        fprintf(stderr, "test_hugepages: this kernel does not collapse huge pages (MADV_COLLAPSE); only the off run\n");
    } else {
        CHECK("on", run(self, 1) == 0);
    }
    CHECK("off", run(self, 0) == 0);
    return print_test_summary();
}
