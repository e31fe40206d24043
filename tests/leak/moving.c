/* moving.c: live leak checks while the program moves its only pointers to
 * old blocks into blocks it has just allocated.
 *
 * A thread keeps LIVE blocks that only small "spine" arrays point to
 * (NSPINE of them, SPINE pointers each, hung from a global table), and
 * moves the spines again and again: a new array (of a size that changes,
 * so it seldom lands where an array was when a check began), the pointers
 * copied, the table pointed at it, the old array freed and its memory
 * overwritten by the next allocation of its size (as CPython grows a
 * list).  Nothing is ever leaked, so every check must report 0 lost
 * blocks: the blocks were in the heap before the check began, and during
 * it their only references sit in spines allocated after it began.  The
 * check must read those as roots: at profile_rate=1 the profiler lists
 * every one as new.  (At the sampled rate it lists few of these small
 * spines, and the pointers move while the mark runs: docs/LEAKS.md.)
 * Prints one line per check; exit status 1 if any check reports a loss.
 * Usage: moving [checks]   (run with libmemscope preloaded)
 */
#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SPINE 16
#define NSPINE 250
#define LIVE (SPINE * NSPINE)

static void **_Atomic spines[NSPINE];
static atomic_int stop;
static atomic_long moves;

static void *mover(void *arg) {
    (void)arg;
    for (size_t k = 0; !atomic_load_explicit(&stop, memory_order_relaxed); k++) {
        size_t i = k % NSPINE, bytes = SPINE * sizeof(void *) + k % 8 * 16;
        void **old = atomic_load(&spines[i]);
        void **s = malloc(bytes);
        memcpy(s, old, SPINE * sizeof *s);
        atomic_store(&spines[i], s);
        free(old);
        void *scratch = malloc(SPINE * sizeof *s + (k + 7) % 8 * 16); /* the old spine's memory back */
        memset(scratch, 0, SPINE * sizeof *s);
        free(scratch);
        atomic_fetch_add_explicit(&moves, 1, memory_order_relaxed);
    }
    return NULL;
}

int main(int argc, char **argv) {
    int checks = argc > 1 ? atoi(argv[1]) : 20;
    long (*check)(int) = (long (*)(int))dlsym(RTLD_DEFAULT, "memscope_check_leaks");
    if (!check) {
        fprintf(stderr, "moving: memscope_check_leaks not found (preload libmemscope.so)\n");
        return 2;
    }
    for (int i = 0; i < NSPINE; i++) {
        void **s = malloc(SPINE * sizeof *s);
        for (int j = 0; j < SPINE; j++) {
            s[j] = malloc(64);
            memset(s[j], 1, 64);
        }
        atomic_store(&spines[i], s);
    }
    pthread_t t;
    pthread_create(&t, NULL, mover, NULL);
    while (atomic_load(&moves) < 100000) sched_yield(); /* every size has its spans by now */
    int bad = 0;
    for (int c = 0; c < checks; c++) {
        long m0 = atomic_load(&moves);
        long lost = check(-1);
        long m1 = atomic_load(&moves);
        printf("check %d: %ld lost of %d blocks, the spines moved %ld times during it\n", c, lost, LIVE, m1 - m0);
        bad += lost != 0;
    }
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    for (int i = 0; i < NSPINE; i++) {
        void **s = atomic_load(&spines[i]);
        for (int j = 0; j < SPINE; j++) free(s[j]);
        free(s);
    }
    return bad ? 1 : 0;
}
