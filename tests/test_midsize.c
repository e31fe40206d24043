/* test_midsize.c: blocks of size classes above 64 KiB strand little once
 * freed.
 *
 * Blocks of 64 KiB to 256 KiB in 24 sizes (the 16 classes above 64 KiB)
 * are allocated, written and freed, a few at a time, as bench/large.c
 * does with its smaller blocks.  With nothing live, the heap in use must
 * be within what the thread's cache may keep of those classes and their
 * spans (two blocks a span: twice MS_TC_MID_BYTES, 256 KiB, tcache.c
 * "Blocks above 64 KiB"), plus a few small spans of the test's own (12
 * pages of 8 KiB with the cap): 768 KiB.  Before that cap each of the 16
 * classes kept a block and a spare block in the thread's cache, and the
 * central lists a block or two in slots and an empty span, all with their
 * spans in use: 4.78 MiB here.  One thread, so the stats are exact.
 * Linked with -lmemscope.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memscope.h"
#include "testhelper.h"

static inline void escape(void *p) { __asm__ volatile("" : : "g"(p) : "memory"); }

int main(void) {
    enum { NSIZES = 24, LIVE = 4, ROUNDS = 8 };
    void *live[LIVE] = {0};
    uint64_t x = 88172645463325252ull;
    for (int r = 0; r < ROUNDS; r++) {
        for (int k = 0; k < NSIZES; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            int i = (int)(x % LIVE);
            free(live[i]);
            size_t size = (64 << 10) + 1 + (size_t)k * (8 << 10) + (size_t)(x >> 40) % 4096;
            char *p = malloc(size);
            if (!p) return 2;
            for (size_t off = 0; off < size; off += 4096) p[off] = (char)off;
            p[size - 1] = 1;
            escape(p);
            live[i] = p;
        }
    }
    for (int i = 0; i < LIVE; i++) free(live[i]);

    struct memscope_stats st = {.size = sizeof st};
    CHECK("read-stats", memscope_read_stats(&st) == 0);
    fprintf(stderr, "[heap in use %.2f MiB, of it allocated %.2f MiB] ", st.heap_inuse / 1048576.0,
            st.heap_alloc / 1048576.0);
    CHECK("freed-midsize-blocks-not-in-use", st.heap_inuse - st.heap_alloc < (768u << 10));
    return print_test_summary();
}
