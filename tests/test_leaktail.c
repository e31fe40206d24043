/* test_leaktail.c: in leak-check mode (profile_rate=1) no byte past the
 * request that the slot held before is ever read as a pointer (internal.h:
 * ms_every_block_recorded): a stale pointer there would keep a lost block
 * "reachable".  Above 1 KiB a small block leaves malloc with those bytes
 * cleared; up to 1 KiB (records in the tail) the leak checker reads only
 * the request, and once the program asks malloc_usable_size, after which
 * it may use them all, the bytes from the request to the block's end are
 * cleared then (malloc.c: tail_widen).  Either way a program that asks
 * sees zeros there.
 *
 * For every request of 0 to 5 KiB (the classes up to 1 KiB, and the
 * classes above, whose tails malloc.c's clear_tail clears with fixed
 * stores or sample_long by stores or by memset) a block of the request's
 * class is taken and filled whole with a pattern the program could have
 * left (a pointer's bytes), freed, and a block of the request asked for:
 * the thread's list gives the same slot back, and its bytes from the
 * request to the block's end must all be 0.  malloc_usable_size gives the
 * block's end.  tests/leak/cases.c (smalltail, grown, shrunk, usable)
 * checks what the leak checker reads.  Run with
 * MEMSCOPE=profile_rate=1 (the test execs itself so).
 */
#include "testhelper.h"

#include <malloc.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    (void)argc;
    const char *env = getenv("MEMSCOPE");
    if (!env || strcmp(env, "profile_rate=1") != 0) {
        setenv("MEMSCOPE", "profile_rate=1", 1);
        execv("/proc/self/exe", argv);
        perror("execv");
        return 1;
    }
    CHECK_BODY("leak-check mode: the tail past the request is cleared, requests 0 .. 5120") {
        size_t bad = 0, same = 0, tried = 0, first_bad = 0;
        for (size_t req = 0; req <= 5120; req++) {
            /* the class's whole block, dirty to its end */
            unsigned char *p = malloc(req ? req : 1);
            size_t usable = malloc_usable_size(p);
            memset(p, 0xa5, usable);
            __asm__ volatile("" : : "r"(p) : "memory"); /* the stores are not dead before the free */
            free(p);
            unsigned char *q = malloc(req);
            size_t end = malloc_usable_size(q);
            tried++;
            if (q == p) same++;
            for (size_t i = req; i < end; i++)
                if (q[i] != 0) {
                    if (!bad++) first_bad = req;
                    break;
                }
            free(q);
        }
        fprintf(stderr, "(%zu requests, %zu given the dirty slot back, %zu with a dirty tail%s", tried, same, bad,
                bad ? ", first at request " : ")  ");
        if (bad) fprintf(stderr, "%zu)  ", first_bad);
        /* the slot must come back for the test to test anything */
        CHECK_TRUE(same * 10 >= tried * 9);
        CHECK_TRUE(bad == 0);
    }
    return print_test_summary();
}
