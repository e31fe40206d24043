/* test_unit_freecheck: free's check of a page (pagemap.c, "Free's check").
 *
 * free() decides from one word per page, kept in the page map's leaf,
 * whether a pointer may take the fast path: the word is nonzero exactly
 * while the page's small span is in use with no sampled block, and then
 * holds the end of the part the span has handed out (its limit) and the
 * offset of its class list.  The words are copies of what the span's
 * header says, and these checks hold them to it:
 *   open      a block's page: the span's start plus used, and its class
 *             list's offset; the same word read for an address 2^47
 *             above (the root wraps) refuses it;
 *   grow      as takes hand out more of a span, the limit of the page
 *             that holds the end of the handed-out part follows used, the
 *             pages below it admit all their blocks and those past it none
 *             (a span of three pages), and the first slot never handed out
 *             lies at or past the limit;
 *   sampled   a sampled block's page has limit 0 while the block is live
 *             (a free of it must reach the profiler), frees of its other
 *             blocks still come out even, and the limit comes back when
 *             the sampled block is freed; takes from the tail of such a
 *             span leave its page at 0, and the free opens it with their
 *             part; the span's other pages stay open meanwhile;
 *   close     a span that leaves use has every entry back at 0;
 *   race      two threads sample blocks of one class over and over, each
 *             freeing the other's, while both free unsampled ones: when all
 *             is freed no span of the class counts a sampled block (a
 *             sampled block freed on the fast path would have stayed
 *             counted) and every limit is back.
 *   fork-sync a span left with MS_MARK_SYNC set by a thread of the parent
 *             (its sync_gen an older fork generation) is finished by the
 *             child's first waiter, which does not wait for ever.
 * Linked with the debug archive: the page heap is validated on every
 * operation.
 */
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"
#include "memscope.h"
#include "testhelper.h"

/* entry_ok: every page of small span s has the check its header says:
 * with sampled blocks, the pages of the mark's page mask read 0 and the
 * others are open */
static bool entry_ok(const span_t *s) {
    uint64_t mark = ms_span_mark(s), fast = mark & MS_MARK_FAST_MASK;
    uint32_t pages = 0;
    if (!fast && ms_span_sampled(s) && s->cls) {
        pages = (uint32_t)(mark >> 48);
        fast = pages ? ms_span_mark_fast(s->cls) : 0;
    }
    uintptr_t end = s->start + s->used;
    for (uint32_t i = 0; i < s->npages; i++) {
        uintptr_t page = s->start + ((uintptr_t)i << MS_PAGE_SHIFT);
        uint64_t w = ms_pagemap_check((void *)page);
        if (!fast || (pages >> (i & 15)) & 1) {
            if (w != 0) return false;
            continue;
        }
        /* open: the class's list, and a limit a whole number of blocks
         * from the start, at most the end of the handed-out part; on the
         * page holding that end, the end itself; below it, at or past the
         * page's own end (ms_span_check_grow raises only the pages a take
         * hands out on); past it, anything up to the page's start */
        uintptr_t limit = (uintptr_t)(w >> MS_CHECK_SHIFT), page_end = page + MS_PAGE_SIZE;
        if ((w & MS_MARK_FAST_MASK) != fast || limit > end || (limit - s->start) % s->size != 0) return false;
        if (page < end && limit < (end < page_end ? end : page_end)) return false;
        if (page >= end && limit > page) return false;
    }
    return true;
}

/* page_in_mask: p's page has its bit in small span s's page mask (a
 * block the profiler drew by chance there closes it) */
static bool page_in_mask(const span_t *s, const void *p) {
    return ms_span_sampled(s) && (ms_span_mark(s) >> 48 >> ((((uintptr_t)p - s->start) >> MS_PAGE_SHIFT) & 15)) & 1;
}

static bool entries_clear(uintptr_t start, uint32_t npages) {
    for (uint32_t i = 0; i < npages; i++)
        if (ms_pagemap_check((void *)(start + ((uintptr_t)i << MS_PAGE_SHIFT))) != 0) return false;
    return true;
}

static uintptr_t limit_of(const void *p) { return (uintptr_t)(ms_pagemap_check(p) >> MS_CHECK_SHIFT); }

static volatile uintptr_t plain_at;

/* sampled_malloc: a block of `size` (small) that the profiler records:
 * its class's countdown drawn and at 0 (malloc.c: class_due) */
static void *sampled_malloc(size_t size) {
    tcache_t *tc = ms_tc;
    uint8_t c = ms_size_class(size);
    tc->armed[c >> 6] |= (uint64_t)1 << (c & 63);
    ms_tcache_set_left(tc, c, 0);
    return malloc(size);
}

/* churn41: a thread that allocates and frees blocks of class 41 */
static uintptr_t churn_start;
static uint32_t churn_pages;
static void *churn41(void *arg) {
    void *g[10];
    for (int i = 0; i < 10; i++) g[i] = malloc(ms_class_size[41]);
    span_t *s = ms_pagemap_lookup(g[0]);
    churn_start = s ? s->start : 0;
    churn_pages = s ? s->npages : 0;
    for (int i = 0; i < 10; i++) free(g[i]);
    return arg;
}

/* ------------------------------------------------------------------------ */

#define RACE_CLASS_SIZE 208
#define RACE_ROUNDS 20000
static void *_Atomic handoff[2];
static _Atomic int race_done;

static void *racer(void *arg) {
    int me = (int)(intptr_t)arg;
    void *keep[8] = {0};
    for (int r = 0; r < RACE_ROUNDS; r++) {
        void *p = (r & 3) == 0 ? sampled_malloc(RACE_CLASS_SIZE) : malloc(RACE_CLASS_SIZE);
        /* the other thread's block, whatever it was, is freed here */
        void *theirs = atomic_exchange(&handoff[!me], NULL);
        free(theirs);
        void *old = atomic_exchange(&handoff[me], p);
        free(old); /* not taken yet: ours to free */
        int k = r & 7;
        free(keep[k]);
        keep[k] = malloc(RACE_CLASS_SIZE);
    }
    for (int k = 0; k < 8; k++) free(keep[k]);
    atomic_fetch_add(&race_done, 1);
    while (atomic_load(&race_done) < 2) free(atomic_exchange(&handoff[!me], NULL));
    free(atomic_exchange(&handoff[!me], NULL));
    return NULL;
}

int main(int argc, char **argv) {
    (void)argc;
    th_run_with("profile_rate=1048576", argv);

    /* open */
    void *a = malloc(48);
    span_t *s = ms_pagemap_lookup(a);
    CHECK("open-span", s != NULL && s->cls == ms_size_class(48));
    CHECK("open-entry", s && entry_ok(s));
    CHECK("open-below-limit", s && (ms_span_sampled(s) || (uintptr_t)a < limit_of(a)));
    /* an address above the page map's 47 bits reads the same page's word
     * (the root index wraps), and is refused by its absolute limit */
    void *alias = (void *)((uintptr_t)a | (uintptr_t)1 << 47);
    CHECK("open-wrap-refused", ms_pagemap_check(alias) == ms_pagemap_check(a) && (uintptr_t)alias >= limit_of(alias));
    free(a);

    /* grow: class 41 (2304 B) has spans of three pages */
    uint8_t cls = 41;
    size_t size = ms_class_size[cls];
    CHECK("grow-class", ms_class_pages[cls] == 3);
    enum { N = 10 };
    void *g[N];
    for (int i = 0; i < N; i++) g[i] = malloc(size);
    span_t *gs = ms_pagemap_lookup(g[0]);
    bool all_ok = gs != NULL;
    for (int i = 0; i < N && all_ok; i++) {
        span_t *t = ms_pagemap_lookup(g[i]);
        /* (a block the profiler drew by chance closes its span) */
        all_ok = t && t->npages == 3 && entry_ok(t) && (ms_span_sampled(t) || (uintptr_t)g[i] < limit_of(g[i]));
    }
    CHECK("grow-entries", all_ok);
    if (gs && gs->start + gs->used < gs->limit) {
        void *next = (void *)(gs->start + gs->used);
        CHECK("grow-tail-refused", (uintptr_t)next >= limit_of(next));
    }

    /* sampled */
    void *smp = sampled_malloc(96);
    void *plain = malloc(96);
    plain_at = (uintptr_t)plain; /* its words are read after the free, on purpose */
    span_t *ss = ms_pagemap_lookup(smp);
    CHECK("sampled-marked", ss && ms_span_sampled(ss) == 1);
    CHECK("sampled-closed", ss && limit_of(smp) == 0 && entry_ok(ss));
    free((void *)plain_at); /* by the slow path, as the span holds a sampled block */
    CHECK("sampled-other-free-taken", ((void *volatile *)plain_at)[1] == (void *)ms_free_cookie((void *)plain_at));
    free(smp);
    CHECK("sampled-unmarked", ss && ms_span_sampled(ss) == 0);
    CHECK("sampled-reopened", ss && entry_ok(ss) && (ms_span_sampled(ss) || limit_of(ss ? (void *)ss->start : NULL) != 0));

    /* sampled while growing: takes from the tail of a span with a live
     * sampled block leave it closed, and its free opens it with all that
     * was handed out meanwhile (class 43, 2816 B: a take from a new span
     * hands out two blocks, so later ones come from its tail) */
    size_t s43 = ms_class_size[43];
    void *first = sampled_malloc(s43);
    span_t *s3 = ms_pagemap_lookup(first);
    uint32_t used0 = s3 ? s3->used : 0;
    void *more[7];
    bool closed = s3 != NULL;
    for (int i = 0; i < 7; i++) {
        more[i] = malloc(s43);
        closed = closed && limit_of(first) == 0;
    }
    CHECK("sampled-grow-used", s3 && s3->used > used0);
    CHECK("sampled-grow-closed", closed && s3 && entry_ok(s3));
    /* only the sampled block's page is closed: a block of the span that
     * starts on another page is below its page's limit, and its free takes
     * the fast path (a span closed whole sent every free of its blocks to
     * the slow path, so larger spans cost more slow frees) */
    bool other_open = false;
    void *extra[64];
    int nextra = 0;
    while (nextra < 64 && s3 && !other_open) {
        void *b = malloc(s43);
        extra[nextra++] = b;
        if (ms_pagemap_lookup(b) == s3 && ((uintptr_t)b >> MS_PAGE_SHIFT) != ((uintptr_t)first >> MS_PAGE_SHIFT) &&
            !page_in_mask(s3, b))
            other_open = (uintptr_t)b < limit_of(b);
    }
    CHECK("sampled-other-page-open", other_open);
    while (nextra > 0) free(extra[--nextra]);
    free(first);
    CHECK("sampled-grow-reopened", s3 && entry_ok(s3) &&
                                       (ms_span_sampled(s3) || limit_of(s3 ? (void *)s3->start : NULL) == s3->start + s3->used));
    for (int i = 0; i < 7; i++) free(more[i]);

    /* close: a thread's blocks of class 41 all go back (at its exit), and
     * everything idle is returned, so that their span leaves the class */
    for (int i = 0; i < N; i++) free(g[i]);
    pthread_t th;
    pthread_create(&th, NULL, churn41, NULL);
    pthread_join(th, NULL); /* its cache goes back at its exit */
    memscope_free_os_memory();
    uintptr_t gstart = churn_start;
    uint32_t gpages = churn_pages;
    span_t *now = gstart ? ms_pagemap_lookup((void *)gstart) : NULL;
    CHECK("close-left-use", now == NULL || now->cls != cls || now->state != SPAN_INUSE);
    if (now == NULL || now->cls == 0) CHECK("close-cleared", gstart && entries_clear(gstart, gpages));

    /* race */
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, racer, (void *)(intptr_t)i);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    void *probe = malloc(RACE_CLASS_SIZE);
    span_t *ps = ms_pagemap_lookup(probe);
    CHECK("race-none-sampled", ps && ms_span_sampled(ps) == 0);
    CHECK("race-entry", ps && entry_ok(ps));
    free(probe);
    CHECK("race-heap-valid", ms_heap_is_valid());

    /* fork-sync: a span whose pages a thread of the parent was opening
     * (MS_MARK_SYNC set, sync_gen an older generation) when the process
     * forked; no pages (npages 0), so nothing is written */
    static span_t stale __attribute__((aligned(MS_CACHE_LINE)));
    stale.cls = 1;
    atomic_store(&stale.mark, ms_span_mark_fast(1) | MS_MARK_SYNC);
    atomic_store(&stale.sync_gen, ms_pm_gen - 1);
    alarm(10); /* a wait for the thread that is not there kills the test */
    uint64_t m = ms_span_sync_wait(&stale);
    alarm(0);
    CHECK("fork-sync-finished", m == ms_span_mark_fast(1) && atomic_load(&stale.sync_gen) == ms_pm_gen);
    return print_test_summary();
}
