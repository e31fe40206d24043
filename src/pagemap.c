/* pagemap.c: from an address to its span in two loads, and which pages are
 * released.  See malloc.c for the overview.
 *
 * A two-level radix tree over 47-bit addresses (internal.h says why): the
 * root (in BSS, 1 MiB of virtual space of which only touched entries become
 * resident) points to leaves covering 1 GiB each.  Pointers are stored XOR a
 * sentinel's address (internal.h), so an untouched zero entry reads as the
 * sentinel and free() follows the tree with three loads and no NULL test.  A
 * leaf is mapped once, lazily, under the heap lock and never freed, so
 * readers (free, malloc_usable_size) need no lock: they either see NULL (not
 * our memory) or a leaf that stays valid forever. Each leaf also holds one
 * bit per page saying whether the page has been returned to the OS (and so
 * reads as zero).  The bits are what keep heap_released exact when free spans
 * of different histories coalesce and split, and what lets calloc skip
 * zeroing pages that came back from the OS. The bits are only touched under
 * the heap lock.
 *
 * Free's check.  free() must know of any pointer whether it starts a block
 * handed out of a small span in use with nothing sampled, and which class
 * list it goes to.  Those facts lived in the span's header, one 64-byte line
 * per span, and with one-page spans a program touching a few megabytes at
 * random (bench/larson.c, 5,000 live blocks of 16 B to 1 KiB per thread)
 * missed the first-level cache on that line in 83% of its frees (callgrind's
 * cache simulation), more than once a free counting the leaf: tcmalloc's
 * free, which reads a size class per page, missed 0.3 times.  So each leaf
 * also keeps one word per page with what free needs (next to the page's
 * span word, on the same line: internal.h, pm_page_t): the limit below which
 * the page's span has handed blocks out, shifted up, and the offset of the
 * class's list in a tcache_t in the low 16 bits; 0 while the span is not in
 * use, is not small, or has a sampled block starting on the page (or on
 * another page of the same bit in the mark's page mask, internal.h: a
 * sampled block closes its page, so that a span of many pages costs no
 * more slow frees than one page would).  One compare (p < limit)
 * stands for the span being fast and p inside what it handed out, and p
 * starts a block exactly when limit - p is a multiple of the size (limit
 * lies a whole number of blocks from the span's start), so free needs no
 * start; the class's divisor comes from the thread's list.
 *
 * The word must never be nonzero while a sampled block starting on its
 * page is live, or a free of it would skip the profiler.  It is written
 * with no lock (a striped lock per span, its line touched by nothing
 * else, was two cold read-modify-writes and a fence at each sampled
 * malloc and at its free: perf put 3% of bench/alloc_test.c's time on
 * it).  A page's bit in the mark's page mask is set by the
 * compare-and-swap that counts a first sampled block on it, and cleared
 * only by the one that takes the span's last sampled block out, which
 * clears them all; so the words change in two ways:
 *   - closing: every sampler, after its compare-and-swap counted its
 *     block, stores 0 in its page's words (ms_span_close_pages), whether
 *     or not the bit was set before: the setter may not have written
 *     yet (tests/test_unit_freecheck.c's race had such a block freed on
 *     the fast path, its record left behind, when the second sampler
 *     did not wait for the first), and a 0 is right while the block is
 *     counted;
 *   - opening: the compare-and-swap that takes out the last sampled
 *     block also sets MS_MARK_SYNC (internal.h), and its thread writes
 *     the open words and then clears the bit (ms_span_open_pages).  No
 *     one changes the mark while the bit is set: the others wait
 *     (ms_span_sync_wait).
 * So an opener's writes come before every later closer's (the closer's
 * compare-and-swap read the mark from the clear of the bit, a release),
 * and no closer's 0 is overwritten by an open word while its block is
 * counted; a closer's 0 reaches the program's other threads with the
 * block.  A take that hands out more of the span raises the limit of each
 * open word it handed blocks out on by compare-and-swap and never writes
 * over a 0 (ms_span_check_grow: so the limits of open pages below the end
 * of the handed-out part may lag behind it, at or past their own ends),
 * and an opener reads used again after its writes, and writes again if it
 * grew.  Nothing here takes a lock: a signal handler's malloc may well
 * take from a span's tail, and the hooks that close and open (inside the
 * profiler: ms_prof_busy) are never entered by a handler that interrupted
 * them, so no thread waits on a bit its own thread set.  A fork that
 * leaves an opener's thread behind leaves the bit set in the child: the
 * span's sync_gen names the parent's fork generation, and the child's
 * first waiter finishes the opening itself.  A
 * span's words are set open when it enters use (nothing handed out: the limit
 * is its start; in leak-check mode with records in the blocks' tails they
 * stay 0, as the span is marked all recorded: internal.h), and go back to
 * 0 when it leaves use (no block of it is
 * live); a leaf's are 0 from its creation.
 */
#include "internal.h"

#include <sched.h>
#include <time.h>

pagemap_t ms_pm; /* BSS: the nil leaf (2 MiB, only ever read) and the root */

#define LEAF_MASK ((1u << MS_PM_LEAF_BITS) - 1)
#define NIL_LEAF ((uintptr_t)&ms_pm)
#define NIL_SPAN ((uintptr_t)&ms_pm)

/* leaf_of: only for pages inside the heap, whose leaf exists */
static inline pm_leaf_t *leaf_of(uintptr_t pn) { return (pm_leaf_t *)(ms_pm.root[pn >> MS_PM_LEAF_BITS] ^ NIL_LEAF); }

/* leaf_if: the leaf of page pn, or NULL if it has none.  A reservation has
 * leaves only where it was committed, and the scavenger's walk of 2 MiB
 * regions also meets the rest: a range claimed at the frontier and not yet
 * committed (grow), or one whose commit the kernel refused.  The nil leaf
 * holds only the pages' words; its other arrays would lie over the root, the
 * has_leaf bits and then pagemap_t's guard (nil_tail), where a "seen" bit
 * once landed on a lock of free's check: the next sampled block of a span
 * hashed to it waited forever (tests/test_faults.sh's negative control,
 * 1 run in 3). */
static inline pm_leaf_t *leaf_if(uintptr_t pn) {
    uintptr_t r = ms_pm.root[(pn >> MS_PM_LEAF_BITS) & ((1u << MS_PM_ROOT_BITS) - 1)];
    return r ? (pm_leaf_t *)(r ^ NIL_LEAF) : NULL;
}

bool ms_pagemap_ensure(uintptr_t start, size_t npages) {
    uintptr_t first = start >> MS_PAGE_SHIFT, last = first + npages - 1;
    if (last >> (MS_PM_LEAF_BITS + MS_PM_ROOT_BITS)) return false;
    for (uintptr_t i = first >> MS_PM_LEAF_BITS; i <= last >> MS_PM_LEAF_BITS; i++) {
        if (ms_pm.root[i]) continue;
        pm_leaf_t *leaf = ms_meta_sparse(sizeof(pm_leaf_t)); /* ~2 MiB, resident as touched */
        if (!leaf) return false;
        atomic_store_explicit((_Atomic uintptr_t *)&ms_pm.root[i], (uintptr_t)leaf ^ NIL_LEAF, memory_order_release);
        ms_pm.has_leaf[i / 64] |= (uint64_t)1 << (i % 64);
    }
    return true;
}

uintptr_t ms_pagemap_next_leaf(uintptr_t i) {
    const uintptr_t n = (uintptr_t)1 << MS_PM_ROOT_BITS;
    if (i >= n) return n;
    uint64_t w = ms_pm.has_leaf[i / 64] & (~(uint64_t)0 << (i % 64));
    for (uintptr_t k = i / 64;;) {
        if (w) return k * 64 + (uintptr_t)__builtin_ctzll(w);
        if (++k == n / 64) return n;
        w = ms_pm.has_leaf[k];
    }
}

void ms_pagemap_set(uintptr_t page_addr, span_t *s) {
    uintptr_t pn = page_addr >> MS_PAGE_SHIFT;
    leaf_of(pn)->page[pn & LEAF_MASK].span = (s ? (uintptr_t)s : NIL_SPAN) ^ NIL_SPAN;
}

void ms_pagemap_set_range(uintptr_t start, size_t npages, span_t *s) {
    uintptr_t pn = start >> MS_PAGE_SHIFT, v = (s ? (uintptr_t)s : NIL_SPAN) ^ NIL_SPAN;
    for (size_t i = 0; i < npages; i++, pn++) leaf_of(pn)->page[pn & LEAF_MASK].span = v;
}

size_t ms_pagemap_count_released(uintptr_t start, size_t npages) {
    uintptr_t pn = start >> MS_PAGE_SHIFT, end = pn + npages;
    size_t n = 0;
    while (pn < end) {
        uint64_t *w = &leaf_of(pn)->released[(pn & LEAF_MASK) >> 6];
        unsigned bit = pn & 63;
        size_t take = 64 - bit;
        if (take > end - pn) take = end - pn;
        uint64_t mask = (take == 64 ? ~0ull : ((1ull << take) - 1)) << bit;
        n += (size_t)__builtin_popcountll(*w & mask);
        pn += take;
    }
    return n;
}

static uint64_t release_seq; /* calls that marked pages released (heap lock) */

void ms_pagemap_clear_huge(uintptr_t start, size_t npages) {
    uintptr_t pn = start >> MS_PAGE_SHIFT, end = pn + npages;
    for (uintptr_t r = pn / MS_HUGE_PAGES; npages && r <= (end - 1) / MS_HUGE_PAGES; r++) {
        uintptr_t i = (r * MS_HUGE_PAGES) & LEAF_MASK; /* the region's first page in its leaf */
        pm_leaf_t *leaf = leaf_of(r * MS_HUGE_PAGES);
        uint64_t *w = &leaf->huge[i / MS_HUGE_PAGES / 64], *v = &leaf->seen[i / MS_HUGE_PAGES / 64];
        uint64_t m = (uint64_t)1 << (i / MS_HUGE_PAGES % 64);
        if (*w & m) *w &= ~m; /* only ever written where set: never in the nil leaf */
        if (*v & m) *v &= ~m;
    }
}

void ms_pagemap_mark_released(uintptr_t start, size_t npages, bool released) {
    uintptr_t pn = start >> MS_PAGE_SHIFT, end = pn + npages;
    if (released && npages) {
        release_seq++;
        ms_pagemap_clear_huge(start, npages);
    }
    while (pn < end) {
        uint64_t *w = &leaf_of(pn)->released[(pn & LEAF_MASK) >> 6];
        unsigned bit = pn & 63;
        size_t take = 64 - bit;
        if (take > end - pn) take = end - pn;
        uint64_t mask = (take == 64 ? ~0ull : ((1ull << take) - 1)) << bit;
        if (released) *w |= mask;
        else *w &= ~mask;
        pn += take;
    }
}

/* find_bit: the first page in [pn, epn) whose released bit is `want`, or
 * epn; a word (64 pages) at a time. */
static uintptr_t find_bit(uintptr_t pn, uintptr_t epn, bool want) {
    while (pn < epn) {
        uint64_t w = leaf_of(pn)->released[(pn & LEAF_MASK) >> 6];
        if (!want) w = ~w;
        w &= ~0ull << (pn & 63);
        if (w) {
            uintptr_t r = (pn & ~(uintptr_t)63) + (uintptr_t)__builtin_ctzll(w);
            return r < epn ? r : epn;
        }
        pn = (pn | 63) + 1;
    }
    return epn;
}

size_t ms_pagemap_next_run(uintptr_t *pos, uintptr_t end, bool released, size_t max) {
    uintptr_t epn = end >> MS_PAGE_SHIFT;
    uintptr_t first = find_bit(*pos >> MS_PAGE_SHIFT, epn, released);
    if (first >= epn) return 0;
    uintptr_t limit = epn - first > max ? first + max : epn;
    uintptr_t stop = find_bit(first, limit, !released);
    *pos = first << MS_PAGE_SHIFT;
    return stop - first;
}

/* Huge pages (scavenger.c).  A region's "huge" bit says the scavenger
 * collapsed it and no page of it has been released since, so it is not
 * asked again; its "seen" bit that it was dense at the scavenger's last
 * look, as it must be at two looks before it is collapsed. */
bool ms_pagemap_region_unreleased(uintptr_t region) {
    uintptr_t pn = region >> MS_PAGE_SHIFT, i = pn & LEAF_MASK;
    const pm_leaf_t *leaf = leaf_if(pn);
    if (!leaf) return false; /* never committed: not a candidate */
    if ((leaf->huge[i / MS_HUGE_PAGES / 64] >> (i / MS_HUGE_PAGES % 64)) & 1) return false;
    for (size_t k = 0; k < MS_HUGE_PAGES / 64; k++)
        if (leaf->released[i / 64 + k]) return false;
    return true;
}

/* set_huge and seen are asked only about candidates, which have leaves
 * (region_unreleased), and leaves stay; for a region without one they
 * write nothing all the same (leaf_if). */
void ms_pagemap_set_huge(uintptr_t region) {
    uintptr_t pn = region >> MS_PAGE_SHIFT, i = pn & LEAF_MASK;
    pm_leaf_t *leaf = leaf_if(pn);
    ms_assert_internal(leaf);
    if (leaf) leaf->huge[i / MS_HUGE_PAGES / 64] |= (uint64_t)1 << (i / MS_HUGE_PAGES % 64);
}

bool ms_pagemap_seen(uintptr_t region, bool dense) {
    uintptr_t pn = region >> MS_PAGE_SHIFT, i = pn & LEAF_MASK;
    pm_leaf_t *leaf = leaf_if(pn);
    if (!leaf) return false;
    uint64_t *v = &leaf->seen[i / MS_HUGE_PAGES / 64], m = (uint64_t)1 << (i / MS_HUGE_PAGES % 64);
    bool was = (*v & m) != 0;
    if (was != dense) *v ^= m;
    return was;
}

uint64_t ms_pagemap_release_seq(void) { return release_seq; }

/* after fork: a write to a huge page shared with the other process splits
 * it, so every region is to be looked at again (the look skips pages still
 * shared: os.c, all_resident_own) */
void ms_pagemap_clear_huge_all(void) {
    for (uintptr_t i = ms_pagemap_next_leaf(0); i < ((uintptr_t)1 << MS_PM_ROOT_BITS); i = ms_pagemap_next_leaf(i + 1)) {
        pm_leaf_t *leaf = (pm_leaf_t *)(ms_pm.root[i] ^ NIL_LEAF);
        for (size_t k = 0; k < sizeof leaf->huge / sizeof leaf->huge[0]; k++) {
            if (leaf->huge[k]) leaf->huge[k] = 0; /* a page of the leaf written only if it had marks */
            if (leaf->seen[k]) leaf->seen[k] = 0;
        }
    }
}

/* ------------------------------------------------------------------------
 * Free's check (top of file)
 * ---------------------------------------------------------------------- */

static inline uint64_t *check_of(uintptr_t pn) { return &leaf_of(pn)->page[pn & LEAF_MASK].check; }

static void set_checks(const span_t *s, uint64_t v) {
    uintptr_t pn = s->start >> MS_PAGE_SHIFT;
    for (uint32_t i = 0; i < s->npages; i++, pn++) __atomic_store_n(check_of(pn), v, __ATOMIC_RELAXED);
}

void ms_pagemap_check_close(span_t *s) { set_checks(s, 0); }

static inline uint64_t word_of(const span_t *s, uint64_t fast) {
    return fast ? (uint64_t)(s->start + *(const volatile uint32_t *)&s->used) << MS_CHECK_SHIFT | fast : 0;
}

void ms_pagemap_check_open(span_t *s) {
    /* leak-check mode with records in the tails: every block counts as
     * recorded from the start, every page closed (internal.h) */
    if (ms_tail_recs) atomic_store_explicit(&s->mark, MS_MARK_ALL, memory_order_relaxed);
    set_checks(s, word_of(s, ms_span_mark(s) & MS_MARK_FAST_MASK));
}

/* Only the pages the take handed blocks out on are raised, from the one
 * that held the old end of the handed-out part (from) to the one that
 * holds the new end's last byte: an open page wholly below the old end
 * has a limit at or past its own end already, and admits every block
 * starting on it, and a page wholly past the new end keeps an older limit,
 * at or below its start, which admits none; every limit lies a whole
 * number of blocks from the span's start.  Raising all of a 4-page span's
 * pages on every take was 0.8 of the 75 instructions a 32-byte object
 * cost in bench/small_nodes.c (callgrind, by hand). */
void ms_span_check_grow(span_t *s, uint32_t from) {
    uint32_t to = *(const volatile uint32_t *)&s->used;
    if (to <= from) return;
    uintptr_t pn = (s->start >> MS_PAGE_SHIFT) + (from >> MS_PAGE_SHIFT);
    for (uint32_t i = from >> MS_PAGE_SHIFT; i <= (to - 1) >> MS_PAGE_SHIFT; i++, pn++) {
        uint64_t *w = check_of(pn), v = __atomic_load_n(w, __ATOMIC_RELAXED);
        /* never over a 0: a sampled block may be live (the opener of the
         * span's pages reads used again after its writes).  A 0 is read
         * again after a fence: the store of used above has no barrier
         * after it, and could wait in this CPU's store buffer while the
         * opener wrote the page's word with the old used and read used
         * back, also old, as this load read the word still 0: the page was
         * left open below blocks handed out on it, whose frees then all
         * took the slow path until the span's next opening.  (A span
         * all recorded is never opened: no fence for each of leak-check
         * mode's takes.) */
        if (!v && ms_span_mark(s) != MS_MARK_ALL) {
            atomic_thread_fence(memory_order_seq_cst);
            v = __atomic_load_n(w, __ATOMIC_RELAXED);
        }
        while (v && !__atomic_compare_exchange_n(w, &v, word_of(s, v & MS_MARK_FAST_MASK), false, __ATOMIC_SEQ_CST,
                                                 __ATOMIC_RELAXED)) {
        }
    }
}

/* The pages of a bit: a page's word depends on the mark only through its
 * own page bit (its number modulo 16, as in the mark's page mask): open,
 * it is the class's list offset under the limit, whether or not other
 * pages hold sampled blocks (a span counting sampled blocks keeps its
 * pages without one open); closed, 0.  So a change of the mark changes the
 * words of the pages of the bits it changed and no others.  A span of 16
 * pages (the classes of 32 KiB and 64 KiB) wrote all 16 words for each
 * sampled block and again at its free: 252 instructions a sync, 16% of the
 * profiler's on mixed_realloc (callgrind, by hand), where one word is
 * written now. */
static inline uint32_t span_bits(const span_t *s, uint32_t bits) {
    return bits & (s->npages < 16 ? (1u << s->npages) - 1 : 0xffffu);
}

void ms_span_close_pages(span_t *s, uint32_t bits) {
    uintptr_t pn = s->start >> MS_PAGE_SHIFT;
    uint32_t npages = s->npages;
    for (uint32_t b = span_bits(s, bits); b; b &= b - 1)
        for (uint32_t i = (uint32_t)__builtin_ctz(b); i < npages; i += 16) {
            uint64_t *w = check_of(pn + i);
            if (__atomic_load_n(w, __ATOMIC_RELAXED)) __atomic_store_n(w, 0, __ATOMIC_RELAXED);
        }
}

/* ms_span_open_pages: the opener's writes (MS_MARK_SYNC set by it, so no
 * other thread changes the mark or writes 0 meanwhile), then the bit
 * cleared.  A take that grew used meanwhile may have found the words
 * closed (0) and left them, or raised them before this wrote them over:
 * used is read again after the writes and the clear, whose lock-prefixed
 * read-modify-write orders them before that read (against the take's
 * store of used and its fence before it reads a word again that read 0,
 * or its compare-and-swap of a word that did not), and if
 * it grew, the words still open are raised as a take raises them.  A
 * fence there, and the words written again, cost each sampled free of
 * bench/alloc_test.c a fence more than the clear. */
void ms_span_open_pages(span_t *s, uint32_t bits) {
    uintptr_t pn = s->start >> MS_PAGE_SHIFT;
    uint32_t npages = s->npages, used = *(const volatile uint32_t *)&s->used;
    bits = span_bits(s, bits);
    uint64_t v = word_of(s, ms_span_mark_fast(s->cls));
    for (uint32_t b = bits; b; b &= b - 1)
        for (uint32_t i = (uint32_t)__builtin_ctz(b); i < npages; i += 16)
            __atomic_store_n(check_of(pn + i), v, __ATOMIC_RELAXED);
    /* release: the next changer of the mark reads this, and its writes of
     * the words come after these */
    atomic_fetch_and_explicit(&s->mark, ~MS_MARK_SYNC, memory_order_seq_cst);
#if !defined(__x86_64__) && !defined(__i386__)
    atomic_thread_fence(memory_order_seq_cst); /* (an RMW is not a fence for other words everywhere) */
#endif
    if (ms_likely(*(const volatile uint32_t *)&s->used == used)) return;
    for (uint32_t b = bits; b; b &= b - 1)
        for (uint32_t i = (uint32_t)__builtin_ctz(b); i < npages; i += 16) {
            uint64_t *w = check_of(pn + i), x = __atomic_load_n(w, __ATOMIC_RELAXED);
            /* never over a 0: a sampler may have closed it since */
            while (x && !__atomic_compare_exchange_n(w, &x, word_of(s, x & MS_MARK_FAST_MASK), false,
                                                     __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
            }
        }
}

uint32_t ms_pm_gen = 1; /* the fork generation: one more in each child */

uint64_t ms_span_sync_wait(span_t *s) {
    for (unsigned spins = 0;;) {
        uint64_t m = atomic_load_explicit(&s->mark, memory_order_acquire);
        if (!(m & MS_MARK_SYNC)) return m;
        uint32_t g = atomic_load_explicit(&s->sync_gen, memory_order_relaxed);
        if (g != ms_pm_gen) {
            /* set by a thread of a process this one was forked from, which
             * the fork did not copy: one thread here finishes it (the
             * mark names no sampled block, so every page opens) */
            if (atomic_compare_exchange_strong(&s->sync_gen, &g, ms_pm_gen)) ms_span_open_pages(s, 0xffffu);
            continue;
        }
        /* its thread may be preempted: yield, and past a few thousand
         * spins sleep, so that a waiter of a higher real-time priority on
         * the opener's CPU lets it run (sched_yield alone would not) */
        if (++spins % 64 == 0) {
            if (spins < 4096) sched_yield();
            else nanosleep(&(struct timespec){0, 50000}, NULL);
        }
        else ms_spin_pause();
    }
}

void ms_span_mark_all(span_t *s) {
    uint64_t old = atomic_load_explicit(&s->mark, memory_order_relaxed);
    while (old != MS_MARK_ALL) {
        if (old & MS_MARK_SYNC) old = ms_span_sync_wait(s);
        else if (atomic_compare_exchange_weak(&s->mark, &old, MS_MARK_ALL)) break;
    }
    ms_span_close_pages(s, 0xffffu);
}

void ms_span_sync_check(span_t *s) {
    uint64_t mark = atomic_load_explicit(&s->mark, memory_order_acquire);
    if (!(mark & MS_MARK_FAST_MASK) && ((mark >> MS_MARK_SAMPLED_SHIFT) & MS_MARK_SAMPLED_MAX) && s->cls)
        ms_span_close_pages(s, (uint32_t)(mark >> 48));
}

bool ms_pagemap_check_is_clear(uintptr_t start, size_t npages) {
    uintptr_t pn = start >> MS_PAGE_SHIFT;
    for (size_t i = 0; i < npages; i++, pn++)
        if (*check_of(pn)) return false;
    return true;
}

/* Fork: a sync under way in another thread is finished in the child by
 * the first thread that waits on it (ms_span_sync_wait: the span's
 * sync_gen names an older generation); nothing to hold before it. */
void ms_pagemap_fork_child(void) { ms_pm_gen = ms_pm_gen + 1 ? ms_pm_gen + 1 : 1; }
