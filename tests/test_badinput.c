/* test_badinput.c: misuse of the malloc family, one misuse per run.
 *
 * Why: DESIGN.md promises that an invalid or double free is reported in one
 * clear stderr line and then aborts, never silently corrupting the heap, and
 * that impossible requests give NULL + errno, never an abort.  Aborting cases
 * cannot share a process, so tests/test_badinput.sh runs this binary once per
 * case name (argv[1]) and checks the exit signal and the message.  Before the
 * misuse the program prints `ptr=0x...` (the pointer it is about to pass) on
 * stdout so the script can check the reported address; if the misuse returns,
 * it prints "NOT ABORTED" and exits 3.
 *
 * Run without arguments (as tests/run.sh does) it performs the non-aborting
 * cases as ordinary named checks.  `test_badinput list` prints the cases.
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testhelper.h"

/* opaque hides pointers from gcc's -Wfree-nonheap-object/-Wuse-after-free
 * (the misuse is the point) and from dead-code elimination. */
static void *opaque(void *p)
{
    __asm__ volatile("" : "+r"(p) : : "memory");
    return p;
}

static volatile size_t v_size_max = SIZE_MAX;
static volatile size_t v_half = SIZE_MAX / 2;
static volatile size_t v_three = 3;

static _Alignas(64) char static_array[4096];

static void announce(const void *p)
{
    printf("ptr=%p\n", p);
    fflush(stdout);
}

static int not_aborted(const char *what)
{
    fprintf(stderr, "NOT ABORTED after %s\n", what);
    return 3;
}

static void *thread_free(void *p)
{
    free(p);
    return NULL;
}

/* Each case: set up, print the pointer, misuse it, and report if we get back. */
static int run_case(const char *c)
{
    if (strcmp(c, "free-stack") == 0) {
        _Alignas(16) char buf[256];
        memset(buf, 1, sizeof buf);
        void *p = opaque(buf + 64);
        announce(p);
        free(p);
        return not_aborted(c);
    }
    if (strcmp(c, "free-static") == 0) {
        void *p = opaque(static_array + 128);
        announce(p);
        free(p);
        return not_aborted(c);
    }
    if (strcmp(c, "free-wild") == 0) {
        void *p = opaque((void *)(uintptr_t)0x12345678);
        announce(p);
        free(p);
        return not_aborted(c);
    }
    /* free of a heap block plus an offset: outside any block, or inside one */
    static const struct {
        const char *name;
        size_t size, offset;
    } at_offset[] = {
        {"free-heap-plus-4MiB", 64, 4096 * 1024},
        {"free-interior-small", 64, 16},
        {"free-interior-odd", 200, 1},
        {"free-interior-large", 1 << 20, 4096},
    };
    for (size_t i = 0; i < sizeof at_offset / sizeof at_offset[0]; i++) {
        if (strcmp(c, at_offset[i].name) != 0) continue;
        char *m = opaque(malloc(at_offset[i].size));
        void *p = opaque(m + at_offset[i].offset);
        announce(p);
        free(p);
        return not_aborted(c);
    }
    if (strcmp(c, "free-interior-memalign") == 0) {
        char *m = opaque(memalign(4096, 10000));
        void *p = opaque(m + 16);
        announce(p);
        free(p);
        return not_aborted(c);
    }
    if (strcmp(c, "double-free-small") == 0) {
        void *p = opaque(malloc(32));
        void *again = opaque(p); /* a copy the compiler cannot tie to p */
        announce(p);
        free(p);
        free(again);
        return not_aborted(c);
    }
    if (strcmp(c, "double-free-small-after-others") == 0) {
        /* the freed slot is no longer at the head of the thread cache */
        void *p = opaque(malloc(48));
        void *q[16];
        for (int i = 0; i < 16; i++) q[i] = opaque(malloc(48));
        void *again = opaque(p);
        announce(p);
        free(p);
        for (int i = 0; i < 16; i++) free(q[i]);
        free(again);
        return not_aborted(c);
    }
    if (strcmp(c, "double-free-medium") == 0) {
        void *p = opaque(malloc(100000));
        void *again = opaque(p); /* a copy the compiler cannot tie to p */
        announce(p);
        free(p);
        free(again);
        return not_aborted(c);
    }
    if (strcmp(c, "double-free-large") == 0) {
        void *p = opaque(malloc(1 << 20));
        void *again = opaque(p); /* a copy the compiler cannot tie to p */
        announce(p);
        free(p);
        free(again);
        return not_aborted(c);
    }
    if (strcmp(c, "double-free-cross-thread") == 0) {
        /* first free on another thread, second on this one */
        void *p = opaque(malloc(64));
        pthread_t t;
        announce(p);
        if (pthread_create(&t, NULL, thread_free, p) != 0) return 4;
        pthread_join(t, NULL);
        free(p);
        return not_aborted(c);
    }
    if (strcmp(c, "realloc-invalid") == 0) {
        void *p = opaque((void *)(uintptr_t)0x12345678);
        announce(p);
        void *q = realloc(p, 100);
        (void)opaque(q);
        return not_aborted(c);
    }
    if (strcmp(c, "realloc-stack") == 0) {
        _Alignas(16) char buf[256];
        memset(buf, 1, sizeof buf);
        void *p = opaque(buf + 32);
        announce(p);
        void *q = realloc(p, 1000);
        (void)opaque(q);
        return not_aborted(c);
    }
    if (strcmp(c, "realloc-freed") == 0) {
        void *p = opaque(malloc(32));
        void *again = opaque(p);
        announce(p);
        free(p);
        void *q = realloc(again, 64);
        (void)opaque(q);
        return not_aborted(c);
    }
    if (strcmp(c, "realloc-freed-large") == 0) {
        void *p = opaque(malloc(1 << 20));
        void *again = opaque(p);
        announce(p);
        free(p);
        void *q = realloc(again, 2 << 20);
        (void)opaque(q);
        return not_aborted(c);
    }
    fprintf(stderr, "unknown case %s\n", c);
    return 2;
}

static const char *const cases[] = {
    "free-stack", "free-static", "free-wild", "free-heap-plus-4MiB", "free-interior-small",
    "free-interior-odd", "free-interior-large", "free-interior-memalign", "double-free-small",
    "double-free-small-after-others", "double-free-medium", "double-free-large",
    "double-free-cross-thread", "realloc-invalid", "realloc-stack", "realloc-freed",
    "realloc-freed-large",
};

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "list") == 0) {
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) printf("%s\n", cases[i]);
        return 0;
    }
    if (argc > 1) return run_case(argv[1]);

    /* Non-aborting misuse: NULL + errno, and the heap keeps working. */
    CHECK_BODY("malloc-SIZE_MAX-ENOMEM") {
        errno = 0;
        void *p = opaque(malloc(v_size_max));
        result = CHECK_TRUE(p == NULL) && CHECK_TRUE(errno == ENOMEM);
    }
    CHECK_BODY("calloc-overflow-ENOMEM") {
        errno = 0;
        void *p = opaque(calloc(v_half, 3));
        result = CHECK_TRUE(p == NULL) && CHECK_TRUE(errno == ENOMEM);
    }
    CHECK_BODY("posix_memalign-bad-alignment-EINVAL") {
        void *p = NULL;
        int r24 = posix_memalign(&p, 24, 100);
        int r0 = posix_memalign(&p, 0, 100);
        int r4 = posix_memalign(&p, 4, 100);
        result = CHECK_TRUE(r24 == EINVAL) && CHECK_TRUE(r0 == EINVAL) && CHECK_TRUE(r4 == EINVAL) &&
                 CHECK_TRUE(p == NULL);
    }
    CHECK_BODY("aligned_alloc-3-64-NULL") {
        errno = 0;
        void *p = opaque(aligned_alloc(v_three, 64));
        result = CHECK_TRUE(p == NULL) && CHECK_TRUE(errno == EINVAL);
        free(p);
    }
    CHECK_BODY("heap-still-works-after-bad-requests") {
        char *p = opaque(malloc(1000));
        result = CHECK_TRUE(p != NULL);
        if (p) {
            memset(p, 7, 1000);
            result = CHECK_TRUE(p[999] == 7);
        }
        free(p);
    }
    return print_test_summary();
}
