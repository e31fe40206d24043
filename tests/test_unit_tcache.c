/* test_unit_tcache: a thread's cache holds at most 12 MiB in all (tcache.c,
 * MS_TC_TOTAL_BYTES), or one object per list in use if that is more.
 *
 * The thread goes through every size class, several times, freeing what it
 * allocated, so that every list wants to grow to its own limit (together
 * 15.4 MiB).  Then its lists are read: each list's length stays within its
 * limit, its spare holds that many or none, the limits (twice over: the
 * list and its spare) add up to the cache's own sum (max_bytes), and that sum
 * stays within the total (the lists above 64 KiB, whose limit is 0,
 * hold no more than MS_TC_MID_BYTES together); the lists marked grown (shrink_for's
 * candidates) are exactly those above one object; lists cut down to one
 * object take several frees in a row; and a class used again after all the others grows back (the
 * room comes from the other lists), a list of 64 KiB blocks to two.  Then 160 threads at once do the same
 * over 24 classes: together they share 48 MiB (MS_TC_OVERALL_BYTES), so no
 * thread's limits may add up to more than 48 MiB / 160 (without the shared
 * budget each reached 3 MiB).  Runs in the debug build.
 */
#include <pthread.h>
#include <string.h>

#include "internal.h"
#include "testhelper.h"

#define TOTAL ((uint64_t)12 << 20)

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

#define MANY 160
#define OVERALL ((uint64_t)48 << 20)
static pthread_barrier_t all_in, all_done; /* no thread exits (and leaves its share) before all are done */
static _Atomic int over_share;

static void *many_main(void *arg) {
    (void)arg;
    void *volatile first = malloc(16); /* the cache, and with it the count of threads */
    free(first);
    pthread_barrier_wait(&all_in);
    void *mine[512];
    for (int round = 0; round < 2; round++)
        for (int c = 1; c <= 24; c++) {
            size_t size = ms_class_size[c], n = ((size_t)256 << 10) / size;
            if (n > 512) n = 512;
            for (size_t i = 0; i < n; i++) mine[i] = malloc(size);
            for (size_t i = 0; i < n; i++) free(mine[i]);
        }
    if (ms_tc->max_bytes > OVERALL / MANY) over_share++;
    pthread_barrier_wait(&all_done);
    return NULL;
}

static uint64_t mid_bytes; /* what the lists above 64 KiB hold (sum_max) */

static uint64_t sum_max(const tcache_t *tc, uint64_t *cached, bool *lens_ok) {
    uint64_t sum = 0;
    mid_bytes = 0;
    *cached = 0, *lens_ok = true;
    for (int c = 1; c < MS_NUM_CLASSES; c++) {
        const tclist_t *l = &tc->lists[c];
        if (c >= MS_TC_MID_FIRST) { /* max 0, -room objects, within the budget of their own */
            if (l->max != 0 || l->room > 0 || l->spare ||
                (l->room < 0 && !(tc->mid & (uint32_t)1 << (MS_NUM_CLASSES - 1 - c))))
                *lens_ok = false;
            mid_bytes += (uint64_t)(uint32_t)-l->room * ms_class_size[c];
            continue;
        }
        uint32_t len = l->max - (uint32_t)l->room, spare = 0;
        for (void *p = l->spare; p; p = *(void **)p) spare++;
        if (l->room < 0 || len > l->max || (spare != 0 && spare != l->max)) *lens_ok = false;
        /* shrink_for looks only at the lists marked grown: exactly those above one object */
        if (!!(tc->grown[c >> 6] & (uint64_t)1 << (c & 63)) != (l->max > 1)) *lens_ok = false;
        sum += 2 * (uint64_t)l->max * ms_class_size[c];
        *cached += (uint64_t)(len + spare) * ms_class_size[c];
    }
    return sum;
}

int main(void) {
    void *volatile first = malloc(16); /* this thread's cache */
    free(first);
    tcache_t *tc = ms_tc;
    CHECK("thread-has-a-cache", !tc->is_dummy);
    /* the classes above 64 KiB, as tcache.c counts them (MID_BIT) */
    CHECK("mid-classes-are-the-last-above-64k", ms_class_size[MS_TC_MID_FIRST - 1] == MS_TC_MID_ABOVE &&
                                                   ms_class_size[MS_TC_MID_FIRST] > MS_TC_MID_ABOVE &&
                                                   MS_NUM_CLASSES - MS_TC_MID_FIRST <= 32);
    /* A park that fails (the scavenger pointed ms_tc at the empty cache,
     * then saw the thread run and pointed it back) can leave a malloc on
     * the slow path with the thread's own list full: it must take from the
     * list, not refill over it (the objects there were lost). */
    {
        void *a = malloc(48), *b = malloc(48);
        free(b);
        free(a); /* a heads the list */
        ms_tc = &ms_tc_empty; /* what the malloc's fast path saw */
        void *c = malloc(48);
        CHECK("failed-park-malloc-takes-from-the-list", c == a && ms_tc == tc);
        free(c);
    }
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
    CHECK("above-64k-within-their-cap", mid_bytes > 0 && mid_bytes <= MS_TC_MID_BYTES);
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
    CHECK("small-class-grows-back", tc->lists[c16].max >= 128);
    sum = sum_max(tc, &cached, &lens_ok);
    CHECK("still-within-cap", lens_ok && sum == tc->max_bytes && sum <= (TOTAL > floor ? TOTAL : floor));
    /* above 8 KiB a list grows to 128 KiB (MS_TC_BIG_LIST_BYTES), and
     * above 32 KiB to four blocks: 256 KiB of 64 KiB blocks, where lists
     * of one and then two sent most of the class's traffic through the
     * central list */
    int c64 = ms_size_class(65536);
    churn(c64, 4);
    CHECK("64k-list-holds-four", tc->lists[c64].max == 4);
    sum = sum_max(tc, &cached, &lens_ok);
    CHECK("and-within-cap", lens_ok && sum == tc->max_bytes && sum <= (TOTAL > floor ? TOTAL : floor));

    pthread_t t[MANY];
    pthread_barrier_init(&all_in, NULL, MANY);
    pthread_barrier_init(&all_done, NULL, MANY);
    int started = 0;
    while (started < MANY && pthread_create(&t[started], NULL, many_main, NULL) == 0) started++;
    for (int i = 0; i < started; i++) pthread_join(t[i], NULL);
    fprintf(stderr, "[%d of %d threads above a share of %.0f KiB] ", (int)over_share, MANY,
            OVERALL / MANY / 1024.0);
    CHECK("many-threads-share-the-budget", started == MANY && over_share == 0);
    return print_test_summary();
}
