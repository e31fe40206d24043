/* test_limits: memscope under an address-space limit (ulimit -v), where its
 * large PROT_NONE reservations fail and the heap grows in many small,
 * non-contiguous reservations.  Run by test_limits.sh under `ulimit -v`;
 * run directly it applies a 700 MB RLIMIT_AS itself, after its heap has
 * made its first reservation (64 GiB of address space).  Checks:
 *   - a 16 MiB malloc succeeds under that limit, and leaves errno alone;
 *   - realloc growth of many blocks (some at a reservation's frontier, where
 *     in-place growth must not run past the reservation) keeps contents;
 *   - allocating until the limit gives NULL with ENOMEM, never a crash;
 *   - after freeing, allocation works again.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "testhelper.h"

static void *volatile sink;

int main(void) {
    /* the heap exists before the limit, as in a program that sets it at run
     * time: its first reservation alone is then above the limit */
    sink = malloc((size_t)1 << 20);
    free(sink);
    struct rlimit rl = {(rlim_t)700 << 20, (rlim_t)700 << 20};
    getrlimit(RLIMIT_AS, &rl);
    if (rl.rlim_cur == RLIM_INFINITY) {
        rl.rlim_cur = (rlim_t)700 << 20;
        setrlimit(RLIMIT_AS, &rl);
    }
    CHECK_BODY("grows-under-a-limit-set-later") {
        /* and a success leaves errno alone, whatever was refused on the way */
        errno = EDOM;
        char *p = malloc((size_t)16 << 20);
        CHECK_TRUE(p != NULL);
        CHECK_TRUE(errno == EDOM);
        if (p) memset(p, 1, (size_t)16 << 20);
        free(p);
    }
    CHECK_BODY("realloc-growth-across-reservations") {
        /* one block doubling until the limit: each growth at a reservation's
         * frontier must either stay inside it or move, and every byte of the
         * new size must be writable and the old bytes kept */
        unsigned char *b = NULL;
        size_t len = 0;
        for (size_t n = 1 << 20; n <= (size_t)1 << 30; n *= 2) {
            unsigned char *q = realloc(b, n);
            if (!q) break;
            for (size_t k = 0; k < len; k += 4093) CHECK_TRUE(q[k] == (unsigned char)(k * 7));
            for (size_t k = len; k < n; k++) q[k] = (unsigned char)(k * 7);
            b = q;
            len = n;
        }
        CHECK_TRUE(len >= (size_t)64 << 20);
        free(b);
        /* and many blocks growing in turn, so frontiers move between them */
        enum { N = 8 };
        unsigned char *m[N] = {0};
        size_t ml[N] = {0};
        for (int round = 0; round < 12; round++)
            for (int i = 0; i < N; i++) {
                size_t n = (size_t)(4096 + i * 1000) << round >> 2;
                unsigned char *q = realloc(m[i], n);
                if (!q) break;
                for (size_t k = 0; k < ml[i]; k += 4093) CHECK_TRUE(q[k] == (unsigned char)(k * 7 + i));
                for (size_t k = ml[i]; k < n; k++) q[k] = (unsigned char)(k * 7 + i);
                m[i] = q;
                ml[i] = n;
            }
        for (int i = 0; i < N; i++) free(m[i]);
    }
    CHECK_BODY("exhaustion-gives-enomem") {
        static void *blocks[100000];
        int n = 0, got_null = 0;
        for (; n < 100000; n++) {
            errno = 0;
            blocks[n] = malloc(n % 2 ? 3 << 20 : 100000);
            if (!blocks[n]) {
                got_null = 1;
                CHECK_TRUE(errno == ENOMEM);
                break;
            }
            memset(blocks[n], 1, 4096);
        }
        CHECK_TRUE(got_null);
        for (int i = 0; i < n; i++) free(blocks[i]);
        sink = malloc(50 << 20);
        CHECK_TRUE(sink != NULL);
        free(sink);
    }
    return print_test_summary();
}
