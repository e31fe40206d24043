/* churn.c: no leak at all, for tests/test_leaks.sh: every block is held by
 * a global table whose entries the main thread keeps replacing (malloc the
 * new block, store it, free the old), while another thread runs live checks
 * at the default, sampled rate.  New blocks taking freed blocks' addresses
 * used to be reported lost, about a hundred per check; the checks now copy
 * the roots a second time to confirm (leak/mark.c, confirm_lost).  Prints
 * the most blocks any of 4 checks reported lost. */
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

enum { N = 4096 };
static void *g[N];
static atomic_int done;

static void *checker(void *arg) {
    long (*check)(int) = (long (*)(int))arg;
    int null = open("/dev/null", O_WRONLY);
    long most = 0;
    for (int i = 0; i < 4; i++) {
        usleep(100000);
        long lost = check(null);
        if (lost > most) most = lost;
    }
    printf("most lost %ld\n", most);
    atomic_store(&done, 1);
    return NULL;
}

int main(void) {
    long (*check)(int) = (long (*)(int))dlsym(RTLD_DEFAULT, "memscope_check_leaks");
    if (!check) return 2;
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < N; i++) g[i] = malloc(64 + (size_t)i % 3000);
    pthread_t t;
    pthread_create(&t, NULL, checker, (void *)check);
    while (!atomic_load(&done)) {
        for (int k = 0; k < 1000; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            int i = (int)(x % N);
            void *n = malloc(1 + (x >> 20) % 5000), *o = g[i];
            g[i] = n;
            free(o);
        }
    }
    pthread_join(t, NULL);
    for (int i = 0; i < N; i++) free(g[i]);
    return 0;
}
