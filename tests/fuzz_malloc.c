/* fuzz_malloc.c: libFuzzer target on the malloc family itself, checked
 * against a model.  Built by `make fuzzers` (build/fuzz/fuzz_malloc) and run
 * by tests/test_fuzz.sh.
 *
 * memscope is this process's allocator: the binary links memscope's sources
 * compiled with clang (MEMSCOPE_DEBUG=2: internal assertions on; UBSan; and
 * libFuzzer's coverage, so the fuzzer is steered by branches inside the
 * allocator).  The page heap's full validator (ms_heap_is_valid, what
 * MEMSCOPE_DEBUG=3 runs after every operation) runs once per input: after
 * every operation it walks libFuzzer's own 25 MB of heap too, and cut the
 * rate to 3 inputs a second.
 * Its malloc replaces libc's for everything in the process, libFuzzer
 * included.  ASan is not used: ASan must own malloc itself, and with it in
 * the binary memscope would not be the allocator under test.
 *
 * The input is a program of 4-byte operations on 64 slots:
 *     op slot a b   ->  malloc, calloc, realloc, free, memalign,
 *                       posix_memalign, aligned_alloc, reallocarray,
 *                       malloc_usable_size, realloc(NULL)/realloc(p, 0),
 *                       memscope_free_os_memory
 * with a size drawn from a and b over tiny, small, page-sized and large
 * (up to 4 MiB) ranges.  The model records each live block's id, size and
 * alignment.  Every block is filled with a pattern derived from its id
 * across its whole usable size (so a usable size that overstates the block
 * overwrites a neighbour, which the neighbour's check then finds), and the
 * pattern is verified before every free and realloc (realloc must also keep
 * the common prefix) and once more for every block at the end.  Checked on
 * every allocation: alignment (16, or the requested one), usable size >=
 * request, calloc's zeroes.  After each input, all blocks freed, the stats
 * identities of include/memscope.h must hold, and heap_objects and alloc
 * must be back where they were before the input (libFuzzer allocates too,
 * but not while the target runs, so the counts are compared, not assumed;
 * memscope's own scavenger thread is started before the first input).
 */
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memscope.h"

/* memscope's page-heap validator (src/pageheap.c; internal, linked statically) */
extern _Bool ms_heap_is_valid(void);

#define NSLOTS 64

typedef struct {
    unsigned char *p;
    size_t size;   /* requested */
    size_t usable; /* malloc_usable_size at allocation, all filled */
    uint32_t id;
} slot_t;

static slot_t slots[NSLOTS];
static uint32_t next_id = 1;

static void fail(const char *what, const slot_t *s) {
    fprintf(stderr, "fuzz_malloc: %s (block %p id %u size %zu usable %zu)\n", what, s ? (void *)s->p : NULL,
            s ? s->id : 0, s ? s->size : 0, s ? s->usable : 0);
    abort();
}

static inline unsigned char pat(uint32_t id, size_t i) {
    return (unsigned char)(id * 131u + (uint32_t)i * 7u + (uint32_t)(i >> 8) * 13u);
}

/* The byte loops carry no coverage instrumentation: traced, every compare
 * called into libFuzzer and they took 90% of the time (2 inputs a second). */
#ifdef __clang__
#define NO_COVERAGE __attribute__((no_sanitize("coverage"), noinline))
#else /* gcc has no libFuzzer; the file still compiles warning-free */
#define NO_COVERAGE __attribute__((noinline))
#endif

/* next: the byte after i that fill and verify visit in a block of n bytes:
 * all of a block up to 64 KiB; beyond, the first and last 4 KiB and every
 * 61st byte (every page is touched; full passes over megabytes per
 * operation held the fuzzer to 19 inputs a second). */
static inline size_t next(size_t i, size_t n) {
    return n <= 65536 || i < 4096 || i + 4096 >= n ? i + 1 : i + 61;
}

NO_COVERAGE static void fill(slot_t *s) {
    for (size_t i = 0; i < s->usable; i = next(i, s->usable)) s->p[i] = pat(s->id, i);
}

/* verify: the first n bytes of a block filled when its usable size was
 * `filled` still carry pattern id (the bytes fill visited). */
NO_COVERAGE static void verify_n(const slot_t *s, size_t n, size_t filled, uint32_t id) {
    for (size_t i = 0; i < n; i = next(i, filled))
        if (s->p[i] != pat(id, i)) fail("block contents changed", s);
}
#define verify(s, n, id) verify_n(s, n, n, id)

NO_COVERAGE static int all_zero(const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

static size_t size_from(unsigned a, unsigned b) {
    switch (a >> 6) {
    case 0: return b & 31;                           /* tiny, with 0 */
    case 1: return ((a & 63) << 8 | b) & 4095;       /* small classes */
    case 2: return (((size_t)(a & 63) << 8 | b) * 9) % 40000; /* up to and over the 32 KiB class limit */
    default: /* large: mostly to 1.5 MiB (realloc moves 1 MiB and up with mremap), rarely to 4 MiB */
        return ((size_t)(a & 63) << 16 | (size_t)b << 8 | b) % ((a & 63) == 63 ? 4u << 20 : 3u << 19);
    }
}

static void check_new(slot_t *s, size_t size, size_t align) {
    if ((uintptr_t)s->p % (align < 16 ? 16 : align) != 0) fail("misaligned block", s);
    s->size = size;
    s->usable = malloc_usable_size(s->p);
    if (s->usable < size) fail("usable size below the request", s);
    s->id = next_id++;
}

static void drop(slot_t *s) {
    if (!s->p) return;
    verify(s, s->usable, s->id);
    free(s->p);
    s->p = NULL;
}

static void check_stats(const struct memscope_stats *st) {
    if (st->heap_sys != st->heap_inuse + st->heap_idle) fail("heap_sys != heap_inuse + heap_idle", NULL);
    if (st->heap_released > st->heap_idle) fail("heap_released > heap_idle", NULL);
    if (st->heap_objects != st->mallocs - st->frees) fail("heap_objects != mallocs - frees", NULL);
    if (st->alloc > st->heap_inuse) fail("alloc > heap_inuse", NULL);
    if (st->heap_alloc != st->alloc) fail("heap_alloc != alloc", NULL);
}

/* The first free of a large block starts memscope's scavenger thread, and
 * glibc's pthread_create mallocs the new thread's DTV (320 bytes, never
 * freed while the thread lives): start it here, before any count is taken. */
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    void *volatile p = malloc(1 << 20);
    free(p);
    return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t len) {
    struct memscope_stats before = {.size = sizeof before}, after = {.size = sizeof after};
    if (memscope_read_stats(&before) != 0) fail("memscope_read_stats failed", NULL);
    check_stats(&before);

    for (size_t k = 0; k + 4 <= len && k < 4 * 2000; k += 4) {
        unsigned op = data[k] % 13, a = data[k + 2], b = data[k + 3];
        slot_t *s = &slots[data[k + 1] % NSLOTS];
        size_t size = size_from(a, b);
        size_t align = (size_t)1 << (3 + (b % 14)); /* 8 .. 64 KiB */
        switch (op) {
        case 0: case 1: /* malloc */
            drop(s);
            s->p = malloc(size);
            if (!s->p) fail("malloc returned NULL", s);
            check_new(s, size, 1);
            fill(s);
            break;
        case 2: { /* calloc */
            drop(s);
            size_t n = 1 + (a & 7), m = size / n;
            s->p = calloc(n, m);
            if (!s->p) fail("calloc returned NULL", s);
            check_new(s, n * m, 1);
            if (!all_zero(s->p, n * m)) fail("calloc memory not zero", s);
            fill(s);
            break;
        }
        case 3: case 4: { /* realloc: the common prefix survives */
            if (!s->p) break;
            verify(s, s->usable, s->id);
            unsigned char *q = realloc(s->p, size ? size : 1);
            if (!q) fail("realloc returned NULL", s);
            uint32_t old_id = s->id;
            size_t filled = s->usable, keep = filled < (size ? size : 1) ? filled : (size ? size : 1);
            s->p = q;
            check_new(s, size ? size : 1, 1);
            verify_n(s, keep, filled, old_id);
            /* refill under the new id */
            fill(s);
            break;
        }
        case 5: case 6: /* free */
            drop(s);
            break;
        case 7: { /* memalign family */
            drop(s);
            void *q = NULL;
            switch (a % 3) {
            case 0: q = memalign(align, size); break;
            case 1: if (posix_memalign(&q, align, size) != 0) q = NULL; break;
            default: q = aligned_alloc(align, size); break;
            }
            if (!q) fail("aligned allocation returned NULL", s);
            s->p = q;
            check_new(s, size, align);
            fill(s);
            break;
        }
        case 8: { /* reallocarray */
            if (!s->p) break;
            verify(s, s->usable, s->id);
            size_t n = 1 + (a & 3), m = (size ? size : 1) / n + 1;
            unsigned char *q = reallocarray(s->p, n, m);
            if (!q) fail("reallocarray returned NULL", s);
            uint32_t old_id = s->id;
            size_t filled = s->usable, keep = filled < n * m ? filled : n * m;
            s->p = q;
            check_new(s, n * m, 1);
            verify_n(s, keep, filled, old_id);
            fill(s);
            break;
        }
        case 9: /* usable size is stable */
            if (s->p && malloc_usable_size(s->p) != s->usable) fail("malloc_usable_size changed", s);
            break;
        case 10: /* realloc(NULL, n) is malloc; realloc(p, 0) frees */
            if (s->p) {
                verify(s, s->usable, s->id);
                if (realloc(s->p, 0) != NULL) fail("realloc(p, 0) did not return NULL", s);
                s->p = NULL;
            } else {
                s->p = realloc(NULL, size);
                if (!s->p) fail("realloc(NULL) returned NULL", s);
                check_new(s, size, 1);
                fill(s);
            }
            break;
        case 11: /* idle pages back to the OS: live blocks must not notice */
            if ((a & 15) == 0) memscope_free_os_memory();
            break;
        default: { /* identities in the middle of a sequence too */
            struct memscope_stats mid = {.size = sizeof mid};
            memscope_read_stats(&mid);
            check_stats(&mid);
            break;
        }
        }
    }
    for (int i = 0; i < NSLOTS; i++) drop(&slots[i]);

    if (!ms_heap_is_valid()) fail("page heap invalid", NULL);
    memscope_read_stats(&after);
    check_stats(&after);
    if (getenv("FUZZ_MALLOC_DEBUG")) fprintf(stderr, "objects %llu -> %llu alloc %llu -> %llu\n", (unsigned long long)before.heap_objects, (unsigned long long)after.heap_objects, (unsigned long long)before.alloc, (unsigned long long)after.alloc);
    if (after.heap_objects != before.heap_objects) fail("heap_objects differs after freeing every block", NULL);
    if (after.alloc != before.alloc) fail("alloc differs after freeing every block", NULL);
    return 0;
}
