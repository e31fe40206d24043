/* fastpath.c: the malloc and free fast paths in isolation, for
 * bench/run_fastpath.sh to count their instructions with callgrind.
 *
 * 64 blocks of SIZE bytes stay live; each round frees each one and
 * allocates it again, so after the first round every call hits the thread
 * cache (the fast path) and nothing else runs in between.  Run twice with
 * different round counts: the difference in instructions, divided by the
 * difference in calls, is the cost of one call without the setup.
 *
 * usage: fastpath ROUNDS [SIZE=32]
 */
#include <stdlib.h>

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 1000;
    size_t size = argc > 2 ? (size_t)atol(argv[2]) : 32;
    void *volatile a[64];
    for (int i = 0; i < 64; i++) a[i] = malloc(size);
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < 64; i++) {
            free(a[i]);
            a[i] = malloc(size);
        }
    for (int i = 0; i < 64; i++) free(a[i]);
    return 0;
}
