/* moving.c: live leak checks while the program moves its only pointers to
 * old blocks into blocks it has just allocated.
 *
 * A thread keeps LIVE blocks that only a "spine" array points to, and moves
 * the spine again and again: a new array (of a size that changes, so it
 * seldom lands where an array was when a check began), the pointers
 * copied, the global pointed at it, the old array freed and its memory
 * overwritten by the next allocation of its size (as CPython grows a
 * list).  Nothing is ever
 * leaked, so every check must report 0 lost blocks: the blocks were in the
 * heap before the check began, and during it their only references sit in
 * spines allocated after it began, which the check must read as roots.
 * Prints one line per check; exit status 1 if any check reports a loss.
 * Usage: moving [checks]   (run with libmemscope preloaded)
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIVE 4000

static void **_Atomic spine;
static atomic_int stop;
static atomic_long moves;

static void *mover(void *arg) {
    (void)arg;
    for (size_t k = 0; !atomic_load_explicit(&stop, memory_order_relaxed); k++) {
        /* sizes that step through 32 size classes, so that the new spine
         * seldom lands where a block was when the check began */
        size_t bytes = LIVE * sizeof(void *) + k % 32 * 4096;
        void **old = atomic_load(&spine);
        void **s = malloc(bytes);
        memcpy(s, old, LIVE * sizeof *s);
        atomic_store(&spine, s);
        free(old);
        void *scratch = malloc(LIVE * sizeof *s + (k + 31) % 32 * 4096); /* the old spine's memory back */
        memset(scratch, 0, LIVE * sizeof *s);
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
    void **s = malloc(LIVE * sizeof *s);
    for (int i = 0; i < LIVE; i++) {
        s[i] = malloc(64);
        memset(s[i], 1, 64);
    }
    atomic_store(&spine, s);
    pthread_t t;
    pthread_create(&t, NULL, mover, NULL);
    int bad = 0;
    for (int c = 0; c < checks; c++) {
        long m0 = atomic_load(&moves);
        long lost = check(-1);
        long m1 = atomic_load(&moves);
        printf("check %d: %ld lost, the spine moved %ld times during it\n", c, lost, m1 - m0);
        bad += lost != 0;
    }
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    s = atomic_load(&spine);
    for (int i = 0; i < LIVE; i++) free(s[i]);
    free(s);
    return bad ? 1 : 0;
}
