/* test_unit_runs: freed objects go back into their spans in runs of
 * neighbours (central.c: return_to_spans_locked, and stride_run for a chain
 * that steps through memory by one object at a time), in the debug build
 * (MEMSCOPE_DEBUG=3: the heap validates itself after every operation, and
 * a span whose count of objects out goes below what comes back aborts).
 *
 * A thread allocates a few spans' worth of objects of one class and frees
 * them in orders that make the chains the central list walks step up
 * through memory, step down, break every few objects, or interleave two
 * spans; each chain that reaches a span's end runs on into the next span's
 * objects whenever the spans lie next to each other.  After each order the
 * central lists' slots go back to the spans (memscope_free_os_memory), and
 * every span listed must count exactly the objects it has out.  When the
 * thread has exited (its cache flushed), the heap must hold no more pages
 * in use than before it: a span that counted an object twice, or one too
 * few, would stay in use or have gone back with objects still out.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "testhelper.h"

static const size_t sizes[] = {16, 32, 48, 80, 112, 256, 1024, 3072};
enum { DOWN, UP, PAIRS, SEVENS, ODD_EVEN, SPANS_ALTERNATE, NORDERS };
static const char *const order_name[NORDERS] = {"down", "up", "pairs", "sevens", "odd-even", "spans-alternate"};
static int bad_size = -1, bad_order = -1;

static int by_addr(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)*(void *const *)a, y = (uintptr_t)*(void *const *)b;
    return x < y ? -1 : x > y;
}

/* index of the k-th object to free, of n sorted by address */
static size_t pick(int order, size_t k, size_t n, size_t per_span) {
    switch (order) {
    case DOWN: return n - 1 - k; /* frees from the top: each chain steps up */
    case UP: return k;           /* each chain steps down */
    case PAIRS: return (k ^ 1) < n ? k ^ 1 : k;
    case SEVENS: {
        size_t base = k / 7 * 7, len = n - base < 7 ? n - base : 7;
        return base + (len - 1 - k % 7);
    }
    case ODD_EVEN: return k < n / 2 ? 2 * k + 1 : 2 * (k - n / 2); /* (n even) */
    default: {                   /* one object of each span in turn, top down */
        size_t full = n / per_span; /* n is whole spans' worth here */
        return n - 1 - ((k % full) * per_span + k / full);
    }
    }
}

static void *worker(void *arg) {
    (void)arg;
    for (int si = 0; si < (int)(sizeof sizes / sizeof sizes[0]); si++) {
        size_t size = sizes[si];
        uint8_t cls = (uint8_t)ms_size_class(size);
        size_t per_span = ((size_t)ms_class_pages[cls] << MS_PAGE_SHIFT) / ms_class_size[cls];
        for (int order = 0; order < NORDERS; order++) {
            size_t n = order == SPANS_ALTERNATE ? 4 * per_span : 3 * per_span + 18;
            void **p = malloc(n * sizeof *p);
            if (!p) abort();
            for (size_t i = 0; i < n; i++) {
                p[i] = malloc(size);
                memset(p[i], 0x5a, size);
            }
            qsort(p, n, sizeof *p, by_addr);
            for (size_t k = 0; k < n; k++) {
                size_t i = pick(order, k, n, per_span);
                free(p[i]);
                p[i] = NULL;
            }
            for (size_t i = 0; i < n; i++)
                if (p[i]) abort(); /* an order that missed one */
            free(p);
            memscope_free_os_memory();
            if (!ms_central_is_valid(cls) && bad_size < 0) bad_size = si, bad_order = order;
        }
    }
    return NULL;
}

static void run_thread(void) {
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL) != 0) abort();
    pthread_join(t, NULL);
}

int main(void) {
    /* a first thread for what a thread's first run leaves behind (the
     * scavenger's start, glibc's thread bookkeeping) */
    void *volatile warm = malloc(100);
    free(warm);
    run_thread();
    memscope_free_os_memory();
    heap_counters_t base, after;
    ms_heap_counters(&base);

    CHECK_BODY("runs-back-to-spans-in-every-order") {
        run_thread();
        if (bad_size >= 0)
            fprintf(stderr, "\n  central list of %zu-byte objects invalid after freeing in order '%s'",
                    sizes[bad_size], order_name[bad_order]);
        CHECK_TRUE(bad_size < 0);
        for (int c = 1; c < MS_NUM_CLASSES; c++) CHECK_TRUE(ms_central_is_valid((uint8_t)c));
        memscope_free_os_memory();
        ms_heap_counters(&after);
        if (after.inuse_pages != base.inuse_pages)
            fprintf(stderr, "\n  pages in use: %llu before, %llu after", (unsigned long long)base.inuse_pages,
                    (unsigned long long)after.inuse_pages);
        CHECK_TRUE(after.inuse_pages == base.inuse_pages);
        result = ms_heap_is_valid();
    }
    return print_test_summary();
}
