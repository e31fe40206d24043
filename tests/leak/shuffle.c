/* shuffle.c: threads that move pointers between old heap blocks while the
 * program exits, under MEMSCOPE=leaks=reachable.
 *
 * A global table holds 64 buckets of 64 slots, each slot a block; two
 * threads, each in its own half of the buckets, swap slots between random
 * buckets and now and then replace a block, with no pause, while main
 * sleeps and then exits.  Nothing is ever
 * lost.  The exit check marks while the threads run (only the copy of the
 * roots stops them), so a pointer that hops from a bucket not yet scanned
 * into one already scanned hides its block for that look: the check must
 * not call it lost (exit status 0, "no leaks found"), as LeakSanitizer,
 * which stops the world for its whole check, does not.
 * Usage: shuffle [ms before exit]   (run with libmemscope preloaded) */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BUCKETS 64
#define SLOTS 64

static void **table[BUCKETS];

static void *mover(void *arg) {
    unsigned half = (unsigned)(uintptr_t)arg; /* 0 or 1: buckets of this thread alone */
    uint64_t x = 0x9E3779B97F4A7C15ull * (half + 1);
    for (unsigned long n = 0;; n++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        void **a = &table[half * BUCKETS / 2 + x % (BUCKETS / 2)][(x >> 8) % SLOTS];
        void **b = &table[half * BUCKETS / 2 + (x >> 16) % (BUCKETS / 2)][(x >> 24) % SLOTS];
        void *t = *a;
        *a = *b;
        *b = t;
        if (n % 16 == 0) {
            void *q = malloc(16 + (x >> 32) % 200);
            memset(q, 7, 16);
            free(*a);
            *a = q;
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    int ms = argc > 1 ? atoi(argv[1]) : 300;
    for (int i = 0; i < BUCKETS; i++) {
        table[i] = calloc(SLOTS, sizeof(void *));
        for (int j = 0; j < SLOTS; j++) table[i][j] = calloc(1, 48);
    }
    pthread_t t;
    for (uintptr_t i = 0; i < 2; i++) {
        pthread_create(&t, NULL, mover, (void *)i);
        pthread_detach(t);
    }
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    printf("exiting\n");
    fflush(stdout);
    return 0;
}
