/* deep.c: mallocs at the bottom of a deep stack (depth frames of about
 * 1.5 KiB each: 60 frames span 23 pages).  At profile_rate=1 every malloc
 * walks the whole stack; the walk's reads of pages it has not proven
 * readable go through process_vm_readv, and test_profile.sh counts those
 * system calls: a walk once proved every page above the first four again
 * on every capture.  usage: deep [depth=60] [mallocs=2000] */
#include <stdio.h>
#include <stdlib.h>

static void *volatile sink[64];

static __attribute__((noinline)) long down(int d, int n) {
    volatile char pad[1500];
    pad[0] = (char)d;
    if (d == 0) {
        for (int i = 0; i < n; i++) {
            free(sink[i & 63]);
            sink[i & 63] = malloc(32);
        }
        return 0;
    }
    return down(d - 1, n) + pad[0];
}

int main(int argc, char **argv) {
    int depth = argc > 1 ? atoi(argv[1]) : 60, n = argc > 2 ? atoi(argv[2]) : 2000;
    printf("%ld\n", down(depth, n));
    return 0;
}
