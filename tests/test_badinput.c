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
#include <alloca.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* ------------------------------------------------------------------------
 * The misuse matrix (issue 8): each kind of misuse, for blocks of 8 B (a
 * 16-byte class), 4 KiB (the largest class with no tail: 8 per 32 KiB span)
 * and 256 KiB (a large block, its own span).  Case names are KIND-SIZE,
 * e.g. df-delayed-4096; tests/test_badinput.sh runs every one.
 * ---------------------------------------------------------------------- */

static const size_t matrix_sizes[] = {8, 4096, 256 << 10};
static const char *const matrix_kinds[] = {
    "df-immediate", "df-delayed", "df-interleaved", "df-thread-first", "df-thread-second",
    "df-reused", "inv-stack", "inv-alloca", "inv-far", "inv-unaligned", "inv-interior",
    "inv-global", "inv-never-used", "realloc-freed", "realloc-interior",
};
#define NKINDS (sizeof matrix_kinds / sizeof matrix_kinds[0])

static void *delay_pool[64];
static int gate[2];

/* thread_free_later: frees p once the main thread writes to the gate */
static void *thread_free_later(void *p)
{
    char c;
    if (read(gate[0], &c, 1) == 1) free(p);
    return NULL;
}

/* delay: other allocations and frees between a free and its repeat, of
 * another class (112 bytes) and from blocks allocated before the first free,
 * so nothing can take the freed block or its pages back: no reuse. */
static void delay(void)
{
    for (int r = 0; r < 4; r++) {
        for (int i = 0; i < 64; i += 2) free(delay_pool[i]);
        for (int i = 0; i < 64; i += 2) delay_pool[i] = opaque(malloc(100));
    }
}

/* never_used: an address in the span of a `size`-byte block that the span
 * has not handed out (malloc_usable_size says 0 for it while its
 * neighbour below is a block of the same class), or NULL. */
static void *never_used(size_t size)
{
    if (size > 4096) {
        /* a large block's last page beyond what was asked: 256 KiB + 1 byte
         * takes 33 pages; the program never asked for the 33rd */
        char *p = opaque(malloc(size + 1));
        return p + size;
    }
    /* 8 B: 16-byte class, two-page spans of 1024 objects, handed out 32 at
     * a time from the bump pointer: the first object of a fresh span leaves
     * its first page's last slot unused.  4 KiB: that class gives whole spans
     * per batch, so the 4608-byte class is used, whose 40 KiB span ends in
     * a 4 KiB tail that is never handed out. */
    size_t cls = size <= 16 ? 16 : 4608, span = size <= 16 ? 8192 : 40960; /* 16: a page's slots */
    for (int i = 0; i < 100000; i++) {
        char *q = opaque(malloc(cls));
        size_t per = span / cls;
        if (size <= 16 && (uintptr_t)q % 8192 == 0) {
            char *x = q + (per - 1) * cls;
            if (malloc_usable_size(x) == 0) return x;
        }
        if (size > 16) {
            /* q is a span's first object if the object below it is not one */
            if (malloc_usable_size(q - cls) == cls) continue;
            char *x = q + per * cls; /* the tail past the last whole object */
            if (malloc_usable_size(q + (per - 1) * cls) == cls && malloc_usable_size(x) == 0) return x;
        }
    }
    return NULL;
}

static int run_matrix(const char *kind, size_t size)
{
    for (int i = 0; i < 64; i++) delay_pool[i] = opaque(malloc(100));
    char *p = opaque(malloc(size));
    char *again = opaque(p);
    memset(p, 0x5a, size);
    if (strcmp(kind, "df-immediate") == 0) {
        announce(p), free(p), free(again);
    } else if (strcmp(kind, "df-delayed") == 0) {
        announce(p), free(p), delay(), free(again);
    } else if (strcmp(kind, "df-interleaved") == 0) {
        /* same-size blocks freed around it: it is no longer the most recent */
        char *a = opaque(malloc(size)), *b = opaque(malloc(size)), *c = opaque(malloc(size));
        announce(p), free(a), free(p), free(b), free(c), free(again);
    } else if (strcmp(kind, "df-thread-first") == 0) {
        pthread_t t; /* first free on another thread, the second here */
        announce(p);
        if (pthread_create(&t, NULL, thread_free, p) != 0) return 4;
        pthread_join(t, NULL);
        free(again);
    } else if (strcmp(kind, "df-thread-second") == 0) {
        /* first free here, the second on another thread, created before
         * the first free: pthread_create allocates (the new thread's DTV),
         * and that could take the freed block (reuse, not this case) */
        pthread_t t;
        if (pipe(gate) != 0) return 4;
        if (pthread_create(&t, NULL, thread_free_later, again) != 0) return 4;
        announce(p), free(p);
        if (write(gate[1], "x", 1) != 1) return 4;
        pthread_join(t, NULL);
    } else if (strcmp(kind, "df-reused") == 0) {
        /* the block is handed out again before the second free: that free
         * cannot be told from q's owner freeing q (O(1) checks see a live
         * block), so memscope takes q back; q's owner then frees q, and
         * that free is the one reported, as a double free of the address. */
        free(p);
        char *q = opaque(malloc(size));
        if (q != again) {
            fprintf(stderr, "block not reused (%p, then %p): case not set up\n", (void *)again, (void *)q);
            return 5;
        }
        announce(again), free(again), free(q);
    } else if (strcmp(kind, "inv-stack") == 0) {
        _Alignas(16) char buf[512];
        memset(buf, 1, sizeof buf);
        char *x = opaque(buf + 16);
        announce(x), free(x);
    } else if (strcmp(kind, "inv-alloca") == 0) {
        char *x = opaque(alloca(size < 4096 ? size : 4096));
        memset(x, 1, size < 4096 ? size : 4096);
        announce(x), free(x);
    } else if (strcmp(kind, "inv-far") == 0) {
        /* 64 TiB past a heap block: in no mapping and no heap */
        char *x = opaque((char *)((uintptr_t)p ^ ((uintptr_t)1 << 46)));
        announce(x), free(x);
    } else if (strcmp(kind, "inv-unaligned") == 0) {
        char *x = opaque(p + 1);
        announce(x), free(x);
    } else if (strcmp(kind, "inv-interior") == 0) {
        char *x = opaque(p + (size >= 64 ? size / 2 : 8)); /* 16-aligned, inside */
        announce(x), free(x);
    } else if (strcmp(kind, "inv-global") == 0) {
        char *x = opaque(static_array + 64);
        announce(x), free(x);
    } else if (strcmp(kind, "inv-never-used") == 0) {
        char *x = opaque(never_used(size));
        if (!x) {
            fprintf(stderr, "no never-used address found: case not set up\n");
            return 5;
        }
        announce(x), free(x);
    } else if (strcmp(kind, "realloc-freed") == 0) {
        announce(p), free(p);
        (void)opaque(realloc(again, size * 2));
    } else if (strcmp(kind, "realloc-interior") == 0) {
        char *x = opaque(p + (size >= 64 ? size / 2 : 8));
        announce(x);
        (void)opaque(realloc(x, size * 2));
    } else {
        fprintf(stderr, "unknown kind %s\n", kind);
        return 2;
    }
    return not_aborted(kind);
}

/* Each case: set up, print the pointer, misuse it, and report if we get back. */
static int run_case(const char *c)
{
    for (size_t k = 0; k < NKINDS; k++) {
        size_t n = strlen(matrix_kinds[k]);
        if (strncmp(c, matrix_kinds[k], n) == 0 && c[n] == '-' && c[n + 1] >= '0' && c[n + 1] <= '9')
            return run_matrix(matrix_kinds[k], strtoul(c + n + 1, NULL, 10));
    }
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
    /* realloc(p, 0) frees, but the error is still realloc's, from here */
    if (strcmp(c, "realloc-stack") == 0 || strcmp(c, "realloc0-stack") == 0) {
        _Alignas(16) char buf[256];
        memset(buf, 1, sizeof buf);
        void *p = opaque(buf + 32);
        announce(p);
        void *q = realloc(p, c[7] == '0' ? 0 : 1000);
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
    "realloc-freed-large", "realloc0-stack",
};

/* key_abuse: writes the keys a program never created (a zeroed
 * pthread_key_t is key 0), over whatever value a thread that has allocated
 * holds there (memscope's, if it made the process's first key), then exits */
static volatile bool key_abused;
static void *key_abuse(void *arg)
{
    free(opaque(malloc(32)));
    for (pthread_key_t k = 0; k < 4; k++)
        if (pthread_getspecific(k) != NULL) key_abused = pthread_setspecific(k, (void *)0x40) == 0;
    return arg;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "list") == 0) {
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) printf("%s\n", cases[i]);
        for (size_t k = 0; k < NKINDS; k++)
            for (size_t z = 0; z < sizeof matrix_sizes / sizeof matrix_sizes[0]; z++)
                printf("%s-%zu\n", matrix_kinds[k], matrix_sizes[z]);
        return 0;
    }
    /* unbuffered: stdio's first printf would malloc its buffer, and that
     * allocation could take a freed block a case means to free again */
    setvbuf(stdout, NULL, _IONBF, 0);
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
    CHECK_BODY("aligned_alloc-3-64-as-glibc-2.36") {
        /* glibc 2.36's aligned_alloc is memalign: 3 rounds up to 4 (EINVAL
         * only from glibc 2.38; tests/test_api.c) */
        errno = 0;
        void *p = opaque(aligned_alloc(v_three, 64));
        result = CHECK_TRUE(p != NULL) && CHECK_TRUE(errno == 0) && CHECK_TRUE(((uintptr_t)p & 3) == 0);
        free(p);
    }
    CHECK_BODY("thread-exit-after-a-write-to-a-key-never-created") {
        pthread_t t;
        result = CHECK_TRUE(pthread_create(&t, NULL, key_abuse, NULL) == 0) &&
                 CHECK_TRUE(pthread_join(t, NULL) == 0) && CHECK_TRUE(key_abused);
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
