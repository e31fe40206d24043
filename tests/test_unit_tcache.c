/* test_unit_tcache: a thread's cache holds at most 8 MiB in all (tcache.c,
 * MS_TC_TOTAL_BYTES), or one object per list in use if that is more.
 *
 * The thread goes through every size class, several times, freeing what it
 * allocated, so that every list wants to grow to its own limit (together
 * 12.7 MiB).  Then its lists are read: each list's length stays within its
 * limit, the limits add up to the cache's own sum (max_bytes), and that sum
 * stays within the total; lists cut down to one object take several frees
 * in a row; and a class used again after all the others grows back (the
 * room comes from the other lists).  Runs in the debug build.
 */
#include <string.h>

#include "internal.h"
#include "testhelper.h"

#define TOTAL ((uint64_t)8 << 20)

static void *objs[4096];
static void *held[MS_NUM_CLASSES];

/* churn: allocates and frees n objects of class c's size, `rounds` times */
static void churn(int c, int rounds) {
    size_t size = ms_class_size[c], n = ((size_t)256 << 10) / size;
    if (n > 4096) n = 4096;
    if (n < 8) n = 8;
    for (int r = 0; r < rounds; r++) {
        for (size_t i = 0; i < n; i++) objs[i] = malloc(size);
        for (size_t i = 0; i < n; i++) free(objs[i]);
    }
}

static uint64_t sum_max(const tcache_t *tc, uint64_t *cached, bool *lens_ok) {
    uint64_t sum = 0;
    *cached = 0, *lens_ok = true;
    for (int c = 1; c < MS_NUM_CLASSES; c++) {
        const tclist_t *l = &tc->lists[c];
        uint32_t len = l->max - (uint32_t)l->room;
        if (l->room < 0 || len > l->max) *lens_ok = false;
        sum += (uint64_t)l->max * ms_class_size[c];
        *cached += (uint64_t)len * ms_class_size[c];
    }
    return sum;
}

int main(void) {
    void *volatile first = malloc(16); /* this thread's cache */
    free(first);
    tcache_t *tc = ms_tc;
    CHECK("thread-has-a-cache", !tc->is_dummy);
    uint64_t floor = 0; /* one object per list */
    for (int c = 1; c < MS_NUM_CLASSES; c++) floor += ms_class_size[c];
    for (int c = 1; c < MS_NUM_CLASSES; c++) churn(c, 3);
    uint64_t cached;
    bool lens_ok;
    uint64_t sum = sum_max(tc, &cached, &lens_ok);
    fprintf(stderr, "[limits %.2f MiB, cached %.2f MiB, floor %.2f MiB] ", sum / 1048576.0, cached / 1048576.0,
            floor / 1048576.0);
    CHECK("lists-within-their-limits", lens_ok);
    CHECK("sum-kept-exactly", sum == tc->max_bytes);
    CHECK("total-within-cap", sum <= (TOTAL > floor ? TOTAL : floor));
    CHECK("cached-within-cap", cached <= sum);
    /* lists cut down to one object take frees of several at once (a
     * batch larger than the list once walked off its end) */
    for (int c = 1; c < MS_NUM_CLASSES; c++) held[c] = malloc(ms_class_size[c]);
    for (int c = 1; c < MS_NUM_CLASSES; c++) churn(c, 2);
    for (int c = 1; c < MS_NUM_CLASSES; c++) free(held[c]);
    sum = sum_max(tc, &cached, &lens_ok);
    CHECK("shrunk-lists-take-frees", lens_ok && sum == tc->max_bytes);
    /* a small class used alone again grows back to its own limit */
    int c16 = ms_size_class(16);
    churn(c16, 4);
    CHECK("small-class-grows-back", tc->lists[c16].max >= 256);
    sum = sum_max(tc, &cached, &lens_ok);
    CHECK("still-within-cap", lens_ok && sum == tc->max_bytes && sum <= (TOTAL > floor ? TOTAL : floor));
    return print_test_summary();
}
