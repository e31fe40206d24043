/* peak_walk.c: a heap that rises and falls at random, from three call
 * sites, for test_profile.sh's check that the peak profile at
 * profile_rate=1 is exact (src/prof/sample.c: a thread's batch keeps sums
 * per stack, and drains at the first free after a new peak).  It keeps its
 * own count of each site's in-use bytes (malloc_usable_size, the size the
 * profiler counts) and writes them, at the moment the total was highest, to
 * the file named by argv[1], one "site bytes" line each; nothing else is
 * allocated meanwhile (the line is formatted on the stack). */
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define N 4000
static void *slot[N];
static int site_of[N];
static size_t inuse[3], at_peak[3], total, peak;

__attribute__((noinline)) static void *walk_site_a(size_t n) { return malloc(n); }
__attribute__((noinline)) static void *walk_site_b(size_t n) { return malloc(n); }
__attribute__((noinline)) static void *walk_site_c(size_t n) { return malloc(n); }

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    unsigned long long x = 88172645463325252ull;
    for (int k = 0; k < 400000; k++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int i = (int)(x % N);
        if (slot[i]) {
            size_t u = malloc_usable_size(slot[i]);
            inuse[site_of[i]] -= u, total -= u;
            free(slot[i]);
            slot[i] = NULL;
        }
        /* phases that grow (3 in 4 draws allocate) and shrink (1 in 4) */
        if ((x >> 20) % 4 < ((k / 50000) % 2 ? 3u : 1u)) {
            int s = (int)((x >> 30) % 3);
            size_t n = 8 + (x >> 40) % 3000;
            void *p = s == 0 ? walk_site_a(n) : s == 1 ? walk_site_b(n) : walk_site_c(n);
            if (!p) return 1;
            slot[i] = p, site_of[i] = s;
            size_t u = malloc_usable_size(p);
            inuse[s] += u, total += u;
            if (total > peak) {
                peak = total;
                for (int j = 0; j < 3; j++) at_peak[j] = inuse[j];
            }
        }
    }
    char line[256];
    int len = snprintf(line, sizeof line, "walk_site_a %zu\nwalk_site_b %zu\nwalk_site_c %zu\n", at_peak[0], at_peak[1],
                       at_peak[2]);
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, line, (size_t)len) != len) return 1;
    close(fd);
    return 0;
}
