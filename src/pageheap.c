/* pageheap.c: spans of 8 KiB pages.  See malloc.c for the overview.
 *
 * Every page the heap owns is in exactly one span, and every span is in one
 * of three states: in use (a large object, or a small-object span owned by a
 * central list), free (in a free list here, "idle"), or busy (taken out of the
 * free lists by the scavenger while it talks to the kernel without the lock).
 * Free spans are always coalesced with free neighbours, so two free spans are
 * never adjacent; the first and last page of every free or in-use span map to
 * it in the page map, which is how a freed span finds its neighbours.
 *
 * Free spans of 1..15 pages sit in exact-size lists (a bitmap says which
 * lists are non-empty), LIFO: the most recently freed span, the one most
 * likely still in cache and resident, is reused first.  Longer ones sit in
 * one tree ordered by address (a treap, each node knowing the longest span
 * below it), and a request takes the lowest one that fits: address-ordered
 * first fit, as Go's page allocator places pages, which keeps what is in
 * use packed low and the free space in long runs above it.  A request of
 * fewer than 16 pages takes an exact fit, or the nearest longer one, from
 * the lists, else the lowest fit in the tree.  Before, longer spans sat in
 * one list per power of two of pages, searched best-fit (the shortest that
 * fits, the lowest among equals) over at most 64 spans of a list: in
 * bench/large.c (500 8 page: eight live blocks of 64 KiB to 8 MiB, 44.5
 * MiB live at most) the heap grew to 62.7 MiB, as requests found free
 * spans a few pages short of them between blocks still in use, where with
 * first fit it takes 53.9 MiB: peak RSS 64.6 -> 55.7 MiB, page faults
 * 16.3K -> 14.0K (glibc's: 55.4 MiB, 75K faults; medians of 7 interleaved
 * runs, by hand).  Best fit over all spans, with no cap on the look, grew
 * the heap to 61.0 MiB; first fit for requests of 128 pages and more
 * only, to 55.9 (peak RSS 59.0; 3 runs, by hand).  The tree's
 * walk is O(log n) under the lock for any number of free spans, where the
 * lists' look was capped at 64 spans so that a fragmented heap never held
 * the lock long.
 *
 * Released pages are tracked per page (pagemap.c), not per span, so that
 * heap_released stays exact across merges and splits of spans with different
 * histories.  A free span also remembers when it became idle; when spans merge
 * the result takes the page-weighted average of the idle times of their
 * unreleased pages, so a large region idle for minutes is not made "young" by
 * a small neighbour freed a moment ago, nor a large fresh region made "old".
 *
 * The heap grows in steps of at least MS_GROW_MIN bytes out of a large
 * PROT_NONE reservation, so successive growths are contiguous and coalesce,
 * and a large object at the frontier can grow in place; a request that no
 * free span fits grows it only by what the free span at the frontier lacks.
 * Fresh pages count as released (they are not resident and read as zero),
 * as in Go.
 *
 * Pages taken in, against a goal.  Idle pages otherwise go back by age
 * alone (scavenger.c, after the scavenge delay), and a heap that takes in
 * pages that are not resident (fresh, or released) while it still holds
 * idle resident ones grows its RSS by both.  Go's heap scavenges when it
 * grows (mheap.grow: retained + growth over a goal); here, whenever an
 * allocation takes pages that are not resident and the idle unreleased
 * pages exceed max(1 MiB, in use / 16), the excess goes back at once,
 * oldest first, up to 4 pages per page taken, but only pages idle for a
 * 32nd of the scavenge delay (31 ms by default): a freed block's pages are
 * usually taken again within milliseconds, and each one released early
 * comes back as a page fault.  Measured by hand
 * (bench/run.sh's arguments, medians of 5 and 11 interleaved runs):
 * bench/mixed_realloc.c's peak RSS 49.4 -> 47.6 MiB, for 12-18% more page
 * faults (256 madvise calls) and CPU time 0.47 -> 0.48 s; every other
 * workload of bench/run.sh kept its peak RSS and page faults.  Without
 * the age bar and the cap (goal: in use / 8, at least 4 MiB),
 * bench/large.c (500 8 page) went 63.2 -> 57.0 MiB but from 16K to 206K
 * page faults and 0.02 to 0.32 s of CPU (58K faults and 0.09 s capped at
 * one page per page taken, as Go caps it); at growth alone, as Go does
 * it, 62.7 MiB and 22K faults, as most of its peak is reached between
 * growths.  glibc's 55.4 MiB there costs it 75K faults.  With the bar the
 * rule depends on time, as the scavenger does: on a loaded machine a run
 * lasts longer and more of its pages pass the bar.  The release is the
 * scavenger's (ms_heap_on_over_goal, which knows the delay), called with
 * no lock held; it takes the heap lock as the scavenger's passes do.
 *
 * All state here is protected by ms_heap_lock, which is taken after any
 * central lock and never before one.
 */
#include "internal.h"

#include <string.h>

/* Why 1 MiB: growing is a syscall (mprotect) plus page-map work, so small
 * steps cost time, while untouched pages cost no RSS; 1 MiB keeps growth
 * syscalls under one per 128 pages without inflating heap_sys for tiny
 * programs. */
#define MS_GROW_MIN_PAGES ((size_t)(1 << 20) >> MS_PAGE_SHIFT)
/* Address space reserved at a time.  Reservations are PROT_NONE and free;
 * a larger one only makes contiguous growth last longer. */
#define MS_RESERVE_BYTES ((size_t)64 << 30)
/* The scavenger releases at most this much per kernel call, dropping the
 * lock between calls, so a thread needing the heap never waits long. */
#define MS_SCAVENGE_CHUNK_PAGES ((size_t)(16 << 20) >> MS_PAGE_SHIFT)
/* Free spans shorter than this many pages are kept in exact-size lists,
 * longer ones in the address-ordered tree (the opening comment says why) */
#define NLISTS 16
#define PAGES(n) ((size_t)(n) << MS_PAGE_SHIFT)

pthread_mutex_t ms_heap_lock = PTHREAD_MUTEX_INITIALIZER;

/* Every hold of the heap lock is timed (two reads of the TSC where it is
 * invariant, else of the clock: the lock is taken for every large or
 * over-aligned block, where clock_gettime was 7% of a program's perf
 * samples), and the longest is published twice: for
 * memscope_read_stats and for the trace's scvg lines, each reader taking
 * "the longest since I last asked".  It is the figure that says whether an
 * allocating thread can have waited long. */
static uint64_t lock_t0;
static _Atomic uint64_t max_hold[2];

static inline void heap_lock(void) {
    ms_mutex_take(&ms_heap_lock);
    lock_t0 = ms_os_ticks();
}

static inline void heap_unlock(void) {
    uint64_t d = ms_os_ticks() - lock_t0; /* ticks: ns when taken */
    for (int i = 0; i < 2; i++)
        if (d > atomic_load_explicit(&max_hold[i], memory_order_relaxed))
            atomic_store_explicit(&max_hold[i], d, memory_order_relaxed);
    ms_mutex_give(&ms_heap_lock);
}

uint64_t ms_heap_take_max_hold_ns(int reader) { return ms_os_ticks_ns(atomic_exchange(&max_hold[reader], 0)); }
/* The span structs' pool and the two sentinels below are set up by
 * ms_heap_init, at process init, before any span is made: initialized
 * here, they took .data past two pages (8,416 bytes), a third page of the
 * library's file resident in every process. */
static fixalloc_t span_pool;
static span_t free_lists[NLISTS]; /* sentinels; [0] unused */
static uint64_t nonempty;         /* bit i: free_lists[i] is not empty */
static heap_counters_t ctr;
static uintptr_t resv_next, resv_end; /* growth frontier inside the current reservation */
static void *resv_base;                /* the current reservation, as mapped */
static size_t resv_bytes;
/* Every mapping the heap's pages live in: the reservations (a handful:
 * 64 GiB each, smaller only under ulimit -v), each up to its frontier
 * (resv_hi), and the direct spans, linked through next/prev, which a
 * direct span does not otherwise use (heap lock).  The leak checker's
 * write tracking lists them all (ms_heap_mappings), the scavenger's look
 * for dense 2 MiB regions walks the reservations (ms_heap_huge_candidates). */
#define MAX_RESV 64
static struct { uintptr_t lo, hi; } resv_list[MAX_RESV];
static uint32_t nresv;
static bool resv_unlisted; /* more than MAX_RESV: ms_heap_mappings cannot name them all */
static span_t direct_spans;
/* bumped (heap lock) whenever what ms_heap_mappings lists changes; read
 * without the lock by a reader whose other threads are stopped */
static _Atomic uint64_t maps_gen;
static inline void maps_changed(void) { atomic_fetch_add_explicit(&maps_gen, 1, memory_order_relaxed); }
/* resv_hi: the end of reservation i's part ever mapped: past it, nothing */
static inline uintptr_t resv_hi(uint32_t i) {
    return resv_list[i].lo == (uintptr_t)resv_base ? resv_next : resv_list[i].hi;
}
/* Ranges claimed at the frontier and not mapped yet.  grow() claims its
 * range under the lock and maps it without (ms_os_commit), and until the
 * mapping is made the range is still PROT_NONE: ms_heap_mappings leaves it
 * out, since its readers read what it lists (the leak checker's write
 * tracking lists a range new to it as written, and its rescan reads every
 * word of it).  Listed, a check whose stop came while a thread of the
 * program was in that mmap read the range and took SIGSEGV
 * (tests/test_leaks.sh, 8 allocating threads, profile_rate=524288, on a
 * loaded machine).  A grower that finds every slot taken maps under the
 * lock.  A fork child keeps the slots of growers that do not exist in it:
 * their ranges stay holes of address space, as they were before. */
#define MAX_CLAIMS 16
static struct { uintptr_t lo, hi; } claims[MAX_CLAIMS];
static uint32_t nclaims;
static void claim_done(uintptr_t lo) {
    for (uint32_t i = 0; i < nclaims; i++)
        if (claims[i].lo == lo) {
            claims[i] = claims[--nclaims];
            maps_changed(); /* listed from now on */
            return;
        }
    ms_assert_internal(!"claim_done: no such claim");
}
/* Scavenger batches off the lists (their spans BUSY); fork waits for none. */
static int busy_batches;
static pthread_cond_t busy_cv = PTHREAD_COND_INITIALIZER;

/* Heap cycles (cycle.c) end when the pages in use reach a goal; the check
 * costs one relaxed load after each span allocation.  A second load there
 * runs what the scavenger could not do on a free's path, starting its
 * thread (scavenger.c: start_here), set with ms_heap_on_alloc before the
 * flag is. */
_Atomic uint64_t ms_heap_goal_bytes = UINT64_MAX;
void (*ms_heap_goal_hook)(void);
static _Atomic uint64_t inuse_bytes_now;

static void note_inuse_locked(void) {
    if (ctr.inuse_pages > ctr.peak_inuse_pages) ctr.peak_inuse_pages = ctr.inuse_pages;
    atomic_store_explicit(&inuse_bytes_now, PAGES(ctr.inuse_pages), memory_order_relaxed);
}

_Atomic bool ms_heap_alloc_wanted;
void (*ms_heap_on_alloc)(void);

/* cycle_hooks: ms_heap_maybe_end_cycle's calls, apart and cold, so that
 * the check every span allocation runs stays as short as it was */
ms_cold __attribute__((noinline)) static void cycle_hooks(void) {
    if (atomic_load_explicit(&inuse_bytes_now, memory_order_relaxed) >=
            atomic_load_explicit(&ms_heap_goal_bytes, memory_order_relaxed) &&
        ms_heap_goal_hook)
        ms_heap_goal_hook();
    if (atomic_load_explicit(&ms_heap_alloc_wanted, memory_order_relaxed)) ms_heap_on_alloc();
}

void ms_heap_maybe_end_cycle(void) {
    if (ms_unlikely(atomic_load_explicit(&inuse_bytes_now, memory_order_relaxed) >=
                        atomic_load_explicit(&ms_heap_goal_bytes, memory_order_relaxed) ||
                    atomic_load_explicit(&ms_heap_alloc_wanted, memory_order_relaxed)))
        cycle_hooks();
}

void ms_heap_reset_peak(void) {
    heap_lock();
    ctr.peak_inuse_pages = ctr.inuse_pages;
    heap_unlock();
}

static inline uintptr_t span_end(const span_t *s) { return s->start + PAGES(s->npages); }



static void check_locked(void) {
#if MEMSCOPE_DEBUG >= 3
    extern bool ms_heap_is_valid_locked(void);
    ms_assert_expensive(ms_heap_is_valid_locked());
#endif
}

/* ------------------------------------------------------------------------
 * Free lists
 * ---------------------------------------------------------------------- */

/* The scavenger's list: every listed free span with unreleased pages is
 * also on this one, appended when listed, so it runs roughly oldest first
 * (a merged span is appended with an averaged age that may be older).  The
 * scavenger and ms_heap_oldest_idle_ms look at it alone, a bounded number
 * of spans per hold of the lock, never at the spans already released, which
 * in a fragmented heap are most of them.  Membership is decided when a span
 * is listed: its released count only changes while it is off the lists. */
static span_t unreleased;

void ms_heap_init(void) {
    span_pool.size = sizeof(span_t);
    direct_spans.next = direct_spans.prev = &direct_spans;
    unreleased.unext = unreleased.uprev = &unreleased;
}

/* The tree of free spans of NLISTS pages or more: a treap ordered by
 * address (priorities hashed from it), each node holding in tmax the
 * longest span of its subtree, so that the lowest free span of at least n
 * pages is one walk down (tree_first_fit).  Its links are the span's
 * tleft/tright, which share the words of freelist and limit that only a
 * small span in use has; a span leaves the tree with them zeroed.  A
 * span's length changes only while it is out of the tree (as its released
 * count does), so no tmax goes stale. */
static span_t *tree_root;

static inline uint32_t tree_prio(const span_t *s) {
    return (uint32_t)(((s->start >> MS_PAGE_SHIFT) * 0x9e3779b97f4a7c15ull) >> 32);
}

__attribute__((noinline)) static void tree_fix(span_t *t) {
    uint32_t m = t->npages;
    if (t->tleft && t->tleft->tmax > m) m = t->tleft->tmax;
    if (t->tright && t->tright->tmax > m) m = t->tright->tmax;
    t->tmax = m;
}

/* tree_split: t's spans below `at` to *lo, the others to *hi */
static void tree_split(span_t *t, uintptr_t at, span_t **lo, span_t **hi) {
    if (!t) {
        *lo = *hi = NULL;
    } else if (t->start < at) {
        tree_split(t->tright, at, &t->tright, hi);
        tree_fix(t);
        *lo = t;
    } else {
        tree_split(t->tleft, at, lo, &t->tleft);
        tree_fix(t);
        *hi = t;
    }
}

/* tree_join: the spans of a (all below b's) and b in one tree */
static span_t *tree_join(span_t *a, span_t *b) {
    if (!a) return b;
    if (!b) return a;
    if (tree_prio(a) > tree_prio(b)) {
        a->tright = tree_join(a->tright, b);
        tree_fix(a);
        return a;
    }
    b->tleft = tree_join(a, b->tleft);
    tree_fix(b);
    return b;
}

static span_t *tree_delete(span_t *t, span_t *s) {
    if (t == s) return tree_join(s->tleft, s->tright);
    if (s->start < t->start) t->tleft = tree_delete(t->tleft, s);
    else t->tright = tree_delete(t->tright, s);
    tree_fix(t);
    return t;
}

/* tree_first_fit: the lowest free span of at least npages, or NULL */
static span_t *tree_first_fit(size_t npages) {
    span_t *t = tree_root;
    if (!t || t->tmax < npages) return NULL;
    for (;;) {
        if (t->tleft && t->tleft->tmax >= npages) t = t->tleft;
        else if (t->npages >= npages) return t;
        else t = t->tright; /* its tmax holds the fit */
    }
}

/* A list's sentinel is set up by its first push: written at init, the
 * sentinels were resident in every process.  A list whose bit is clear is
 * never read, so a sentinel still zero is never followed. */
static void list_push(span_t *s) {
    if (s->npages < NLISTS) {
        span_t *h = &free_lists[s->npages];
        if (ms_unlikely(!h->next)) h->next = h->prev = h;
        s->next = h->next;
        s->prev = h;
        h->next->prev = s;
        h->next = s;
        nonempty |= 1ull << s->npages;
    } else {
        /* in between the spans below it and those above: split and
         * joined by priority, the tree is the one a treap of these spans
         * always is */
        span_t *lo, *hi;
        tree_split(tree_root, s->start, &lo, &hi);
        s->tleft = s->tright = NULL;
        s->tmax = s->npages;
        tree_root = tree_join(tree_join(lo, s), hi);
    }
    if (s->released < s->npages) {
        s->uprev = unreleased.uprev;
        s->unext = &unreleased;
        unreleased.uprev->unext = s;
        unreleased.uprev = s;
    }
}

static void list_remove(span_t *s) {
    if (s->npages < NLISTS) {
        s->prev->next = s->next;
        s->next->prev = s->prev;
        if (free_lists[s->npages].next == &free_lists[s->npages]) nonempty &= ~(1ull << s->npages);
        s->next = s->prev = NULL;
    } else {
        tree_root = tree_delete(tree_root, s);
        s->tleft = s->tright = NULL; /* freelist and limit, as a span out of the heap has them */
        s->tmax = 0;
    }
    if (s->unext) {
        s->uprev->unext = s->unext;
        s->unext->uprev = s->uprev;
        s->unext = s->uprev = NULL;
    }
}

/* find_free: a free span of at least npages, or NULL: the exact fit, or
 * the nearest above it, among the short spans; else the lowest in address
 * of the long ones that fits. */
static span_t *find_free(size_t npages) {
    uint64_t w = npages < NLISTS ? nonempty >> npages : 0;
    if (w) return free_lists[npages + (size_t)__builtin_ctzll(w)].next;
    return tree_first_fit(npages);
}

/* ------------------------------------------------------------------------
 * Span structs, page map, merging
 * ---------------------------------------------------------------------- */

static span_t *span_new(uintptr_t start, size_t npages) {
    span_t *s = ms_fixalloc_alloc(&span_pool);
    if (!s) return NULL;
    s->start = start;
    s->npages = (uint32_t)npages;
    return s;
}

static void span_delete(span_t *s) {
    s->state = SPAN_DEAD;
    ms_fixalloc_free(&span_pool, s);
}

static void map_ends(span_t *s) {
    ms_pagemap_set(s->start, s);
    ms_pagemap_set(span_end(s) - MS_PAGE_SIZE, s);
}

static uint64_t weighted_age(const span_t *a, const span_t *b) {
    uint64_t wa = a->npages - a->released, wb = b->npages - b->released;
    if (wa + wb == 0) return a->free_since_ms > b->free_since_ms ? a->free_since_ms : b->free_since_ms;
    return (uint64_t)(((unsigned __int128)a->free_since_ms * wa + (unsigned __int128)b->free_since_ms * wb) /
                      (wa + wb));
}

/* absorb: s takes over its free neighbour n (already off the lists). */
static void absorb(span_t *s, span_t *n) {
    s->free_since_ms = weighted_age(s, n);
    /* released prefix of the merged span: the first one's, and the second's
     * too if the first is released to its end */
    const span_t *a = n->start < s->start ? n : s, *b = a == s ? n : s;
    s->scan_from = a->scan_from < a->npages ? a->scan_from : a->npages + b->scan_from;
    if (n->start < s->start) s->start = n->start;
    s->npages += n->npages;
    s->released += n->released;
    ms_pagemap_set(n->start, s); /* a double free of n's first page still finds free memory */
    span_delete(n);
}

static span_t *free_neighbour(uintptr_t page_addr, uintptr_t must_touch, bool before) {
    span_t *n = ms_pagemap_lookup((void *)page_addr);
    if (!n || n->state != SPAN_FREE) return NULL;
    if (before ? span_end(n) != must_touch : n->start != must_touch) return NULL;
    return n;
}

/* insert_free_locked: s (free, its released count and age set, on no list)
 * merges with free neighbours and goes on its list. */
static void insert_free_locked(span_t *s) {
    s->state = SPAN_FREE;
    s->cls = 0;
    span_t *p = s->start >= MS_PAGE_SIZE ? free_neighbour(s->start - MS_PAGE_SIZE, s->start, true) : NULL;
    if (p) {
        list_remove(p);
        absorb(s, p);
    }
    span_t *n = free_neighbour(span_end(s), span_end(s), false);
    if (n) {
        list_remove(n);
        absorb(s, n);
    }
    map_ends(s);
    list_push(s);
}

/* split_tail: cuts [s->start + keep pages, end) off s as a new free span with
 * s's age, and lists it (its neighbours are s and a non-free span). */
static bool split_tail_free(span_t *s, size_t keep) {
    size_t rest = s->npages - keep;
    span_t *t = span_new(s->start + PAGES(keep), rest);
    if (!t) return false;
    /* count the shorter side: the scavenger cuts 16 MiB chunks off spans of
     * up to gigabytes, and counting the long side each time made one batch
     * of cuts hold the lock for milliseconds */
    uint32_t head = keep <= s->scan_from ? (uint32_t)keep /* all released, known */
                    : keep < rest        ? (uint32_t)ms_pagemap_count_released(s->start, keep)
                                         : s->released - (uint32_t)ms_pagemap_count_released(t->start, rest);
    t->released = s->released - head;
    t->free_since_ms = s->free_since_ms;
    t->scan_from = s->scan_from > keep ? s->scan_from - (uint32_t)keep : 0;
    if (s->scan_from > keep) s->scan_from = (uint32_t)keep;
    s->npages = (uint32_t)keep;
    s->released -= t->released;
    map_ends(s);
    t->state = SPAN_FREE;
    map_ends(t);
    list_push(t);
    return true;
}

/* ------------------------------------------------------------------------
 * Growth
 * ---------------------------------------------------------------------- */

/* drop_tail_locked: gives back the current reservation's unused tail
 * (heap lock held); false if it had none. */
static void resv_listed(uintptr_t lo, size_t bytes);
static bool drop_tail_locked(void) {
    if (!resv_base || resv_end <= resv_next) return false;
    ms_os_free((void *)resv_next, resv_end - resv_next);
    resv_bytes = resv_next - (uintptr_t)resv_base;
    resv_end = resv_next;
    resv_listed((uintptr_t)resv_base, resv_bytes);
    return true;
}

/* resv_listed: reservation [lo, lo + bytes) is the heap's (bytes 0: no more) */
static void resv_listed(uintptr_t lo, size_t bytes) {
    maps_changed();
    uint32_t i = 0;
    while (i < nresv && resv_list[i].lo != lo) i++;
    if (bytes == 0) {
        if (i < nresv) resv_list[i] = resv_list[--nresv];
    } else if (i < MAX_RESV) {
        resv_list[i].lo = lo, resv_list[i].hi = lo + bytes;
        if (i == nresv) nresv++;
    } else {
        resv_unlisted = true;
    }
}

/* reserve: bytes of address space for the heap.  One of a GiB or more
 * (a page-map leaf's reach) starts within the first 64 MiB of a GiB, so
 * that a heap of up to 960 MiB needs one leaf wherever the kernel puts
 * it: a reservation that straddled a boundary cost a program 2 MiB more
 * metadata at random, a heap of 14 MiB with odds of about 14 in 1024
 * (tests/test_profmeta.c failed so once in a run of make test).  Where in
 * those 64 MiB is the kernel's own choice's offset there, so the heap's
 * address keeps the bits of randomness from 8 KiB to 64 MiB that a GiB
 * boundary alone would take away (as random as the kernel made them:
 * this one puts large mappings on 2 MiB boundaries).  What was asked for
 * beyond `bytes` is address space only, and goes back at once. */
#define RESERVE_SLIDE ((size_t)64 << 20)
static void *reserve(size_t bytes) {
    const size_t g = (size_t)1 << (MS_PM_LEAF_BITS + MS_PAGE_SHIFT), extra = g + RESERVE_SLIDE;
    uintptr_t r;
    if (bytes >= g && (r = (uintptr_t)ms_os_reserve(bytes + extra)) != 0) {
        uintptr_t a = ((r + g - 1) & ~(uintptr_t)(g - 1)) + (r & (RESERVE_SLIDE - 1) & ~(uintptr_t)MS_PAGE_MASK);
        if (a > r) ms_os_free((void *)r, a - r);
        ms_os_free((void *)(a + bytes), r + extra - a);
        return (void *)a;
    }
    return ms_os_reserve(bytes);
}

/* reserve_for: makes room for npages at the frontier.  Under an address
 * space limit (ulimit -v) the big reservation fails: try smaller ones, so
 * the heap still grows in chunks that coalesce, and only then the bare
 * request.  There no reservation takes more than a sixteenth of the limit:
 * the program's own mappings count against it too, and a 256 MiB
 * reservation under a 293 MiB limit (the largest that fitted) left a
 * helper session's program unable to map 64 MiB, and CPython unable to
 * start at some limits where glibc's malloc ran it. */
static bool reserve_for(size_t npages) {
    if (resv_next && resv_next + PAGES(npages) <= resv_end) return true;
    static const size_t tries[] = {MS_RESERVE_BYTES, (size_t)4 << 30, (size_t)1 << 30, (size_t)256 << 20,
                                   (size_t)64 << 20, (size_t)16 << 20, (size_t)4 << 20};
    size_t need = PAGES(npages) + MS_PAGE_SIZE, bytes = 0;
    size_t limit = ms_os_as_limit(), most = limit ? limit / 16 : SIZE_MAX;
    void *r = NULL;
    for (size_t i = 0; !r && i < sizeof tries / sizeof tries[0]; i++)
        if (tries[i] >= need && tries[i] <= most) r = reserve(bytes = tries[i]);
    if (!r) r = ms_os_reserve(bytes = need);
    if (!r) return false;
    /* The old reservation's unused tail goes: it is address space only,
     * but ulimit -v counts it, and a run of blocks each larger than what
     * the last left (2.2 MB blocks in 4 MiB reservations) kept a
     * reservation's worth of it per block: such a program got half the heap
     * glibc's malloc gave it under the same limit. */
    drop_tail_locked();
    resv_base = r;
    resv_bytes = bytes;
    resv_listed((uintptr_t)r, bytes);
    /* keep the heap aligned to its 8 KiB pages */
    resv_next = ((uintptr_t)r + MS_PAGE_MASK) & ~(uintptr_t)MS_PAGE_MASK;
    maps_changed();
    resv_end = ((uintptr_t)r + bytes) & ~(uintptr_t)MS_PAGE_MASK;
    return resv_next + PAGES(npages) <= resv_end;
}

/* commit_range: makes npages of reserved address space at start usable:
 * memory first, then page-map leaves (under the heap lock), so a request
 * the kernel refuses leaves no metadata behind and one whose leaves cannot
 * be mapped leaves no memory. */
static bool commit_range(uintptr_t start, size_t npages, bool memory_done) {
    if (!memory_done && !ms_os_commit((void *)start, PAGES(npages))) return false;
    if (ms_pagemap_ensure(start, npages)) return true;
    ms_os_decommit((void *)start, PAGES(npages));
    return false;
}

/* commit_frontier: makes the npages right at the frontier usable and
 * accounts them as heap memory, for a span ending there that grows into
 * them; returns their address or 0. */
static uintptr_t commit_frontier(size_t npages) {
    if (!(resv_next && resv_next + PAGES(npages) <= resv_end)) return 0;
    uintptr_t start = resv_next;
    if (!commit_range(start, npages, false)) return 0;
    resv_next += PAGES(npages);
    maps_changed();
    ctr.sys_pages += npages;
    return start;
}

/* add_fresh_locked: n committed pages at start, already in sys_pages,
 * become a free span (s, allocated beforehand) of released pages. */
static void add_fresh_locked(span_t *s, uintptr_t start, size_t n) {
    s->start = start;
    s->npages = (uint32_t)n;
    ms_pagemap_mark_released(start, n, true);
    s->released = (uint32_t)n;
    s->scan_from = (uint32_t)n;
    s->free_since_ms = ms_os_now_ms();
    ctr.free_pages += n;
    ctr.released_pages += n;
    insert_free_locked(s);
}

/* grow_locked: growth in place, for a span at the frontier that grows into
 * the pages after it (ms_heap_try_resize); the kernel call is made under
 * the lock, since the pages must follow the span. */
static bool grow_locked(size_t npages) {
    size_t n = npages < MS_GROW_MIN_PAGES ? MS_GROW_MIN_PAGES : npages;
    span_t *s = span_new(0, 0);
    if (!s) return false;
    uintptr_t start = commit_frontier(n);
    if (!start && n > npages) start = commit_frontier(n = npages);
    if (!start) {
        span_delete(s);
        return false;
    }
    add_fresh_locked(s, start, n);
    return true;
}

/* grow: adds at least npages of fresh pages to the free lists, for
 * ms_heap_alloc; called and returns without the heap lock.  The lock is
 * held to claim the range at the frontier and to list it, not for the
 * kernel call between (an mmap over the reservation, which the kernel's
 * map lock can delay behind other threads' page faults), so growth never
 * shows as a long hold (bench/run_latency.sh, part holds, measures the
 * holds of every job).  A claim that the kernel refuses is rolled
 * back if it is still the last one; otherwise its range stays reserved and
 * unused, a hole of address space only. */
/* shrink_reservation: gives back the reservation's unused tail.  Under an
 * address-space limit set after the reservation was made (setrlimit at
 * run time), the reservation alone can exceed it, and then the kernel
 * refuses every mapping, even one over reserved space; without the tail
 * the heap grows again, in reservations that fit. */
static bool shrink_reservation(void) {
    heap_lock();
    bool done = drop_tail_locked();
    heap_unlock();
    return done;
}

/* grow_undo_locked: the kernel refused the pages [start, n pages) that
 * grow claimed at the frontier: their span struct goes, and so does the
 * claim if it is still the last one (cold: apart from grow's own path) */
ms_cold static void grow_undo_locked(span_t *s, uintptr_t start, size_t n, void *base, uintptr_t old_next,
                                     void *old_base) {
    span_delete(s);
    if (resv_next == start + PAGES(n) && resv_base == base) {
        if (base != old_base) { /* a reservation made for this request alone: give it back */
            resv_listed((uintptr_t)resv_base, 0);
            ms_os_free(resv_base, resv_bytes);
            /* reserve_for gave back the old one's tail (drop_tail_locked) */
            resv_next = old_next, resv_end = old_next, resv_base = old_base;
            maps_changed();
            resv_bytes = old_base ? old_next - (uintptr_t)old_base : 0;
        } else {
            resv_next = start;
            maps_changed();
        }
    }
}

static bool grow(size_t npages) {
    size_t n = npages < MS_GROW_MIN_PAGES ? MS_GROW_MIN_PAGES : npages;
    bool shrunk = false;
    for (;;) {
        heap_lock();
        span_t *s = span_new(0, 0);
        uintptr_t old_next = resv_next;
        void *old_base = resv_base;
        if (!s || !reserve_for(n)) {
            if (s) span_delete(s);
            heap_unlock();
            if (n > npages) { n = npages; continue; }
            return false;
        }
        uintptr_t start = resv_next;
        resv_next += PAGES(n);
        maps_changed();
        void *base = resv_base;
        bool ok;
        if (nclaims < MAX_CLAIMS) {
            claims[nclaims].lo = start, claims[nclaims++].hi = start + PAGES(n);
            heap_unlock();
            ok = ms_os_commit((void *)start, PAGES(n));
            heap_lock();
            claim_done(start);
        } else { /* as many growers at once as slots: this one maps under the lock */
            ok = ms_os_commit((void *)start, PAGES(n));
        }
        if (ok && commit_range(start, n, true)) {
            ctr.sys_pages += n;
            add_fresh_locked(s, start, n);
            heap_unlock();
            return true;
        }
        grow_undo_locked(s, start, n, base, old_next, old_base);
        heap_unlock();
        if (n > npages) {
            n = npages;
            continue;
        }
        if (!shrunk && ms_os_as_limit() && shrink_reservation()) {
            shrunk = true;
            n = npages < MS_GROW_MIN_PAGES ? MS_GROW_MIN_PAGES : npages;
            continue;
        }
        return false;
    }
}

/* ------------------------------------------------------------------------
 * Allocation and free
 * ---------------------------------------------------------------------- */

/* take_pages_locked: the free span s (off the lists) becomes in use as the
 * npages starting at its first page; counters and released bits follow.
 * Returns how many of them were released (not resident). */
static size_t take_pages_locked(span_t *s, size_t npages, uint8_t cls, bool *zeroed) {
    if (s->npages > npages && !split_tail_free(s, npages)) {
        /* no memory for a span struct: keep the whole span, still correct */
        npages = s->npages;
    }
    size_t rel = s->released;
    if (rel) ms_pagemap_mark_released(s->start, npages, false);
    ctr.released_pages -= rel;
    ctr.free_pages -= npages;
    ctr.inuse_pages += npages;
    note_inuse_locked();
    if (zeroed) *zeroed = rel == npages;
    s->released = 0;
    s->state = SPAN_INUSE;
    s->cls = cls;
    /* nothing handed out yet, before the span shows in use: a span struct
     * is reused, and the leak checker's walk (ms_heap_for_each_inuse) would
     * otherwise read its last owner's mark until new_span resets it */
    s->used = 0;
    ms_span_set_fast(s, 0); /* set by the central list once the span is ready */
    s->next = s->prev = NULL;
    if (cls) ms_pagemap_set_range(s->start, npages, s);
    else map_ends(s);
    return rel;
}

/* frontier_free_locked: the pages of the free span that ends at the growth
 * frontier, which fresh pages grown there join (insert_free_locked).  A
 * request that no free span fits grows the heap by what it lacks beyond
 * them, as Go's heap does, and not by its whole size: the top span's pages
 * are often resident already (a large block freed a moment ago), so taking
 * them first costs no page faults and adds no RSS, where a whole new range
 * would leave them idle until the scavenger returns them (bench/large.c's
 * churn of 64 KiB-8 MiB blocks). */
static size_t frontier_free_locked(size_t need) {
    if (!resv_base || resv_next <= (uintptr_t)resv_base + MS_PAGE_SIZE) return 0;
    span_t *t = free_neighbour(resv_next - MS_PAGE_SIZE, resv_next, true);
    if (!t || t->npages >= need) return 0;
    /* only where the rest fits in the reservation: grown in a new one, it
     * would not join, and the request would grow again (a program filling
     * its address space under ulimit -v got a fifth less, test_limits.sh) */
    return resv_next + PAGES(need - t->npages) <= resv_end ? t->npages : 0;
}

/* The goal for pages taken in (the opening comment): idle unreleased pages
 * kept at most in use >> RETAIN_SHIFT or RETAIN_FLOOR pages, released at
 * most RETAIN_CAP per page taken in. */
#define RETAIN_SHIFT 4
#define RETAIN_FLOOR ((size_t)(1 << 20) >> MS_PAGE_SHIFT)
#define RETAIN_CAP 4
void (*ms_heap_on_over_goal)(size_t bytes);

/* over_goal_locked: bytes to release now that `taken` pages that were not
 * resident have been taken */
static size_t over_goal_locked(size_t taken) {
    size_t idle = ctr.free_pages - ctr.released_pages, keep = ctr.inuse_pages >> RETAIN_SHIFT;
    if (keep < RETAIN_FLOOR) keep = RETAIN_FLOOR;
    if (!taken || idle <= keep) return 0;
    return PAGES(idle - keep < RETAIN_CAP * taken ? idle - keep : RETAIN_CAP * taken);
}

/* align_locked: the part of free span s (off the lists) from its first
 * page aligned to align_pages on, its prefix back on the lists; NULL if
 * no span struct was left for the cut.  Apart, and cold: only
 * posix_memalign and its kin above the page size come here, and the
 * allocation path every program runs stays in the hot text's window. */
ms_cold static span_t *align_locked(span_t *s, size_t align_pages) {
    uintptr_t a = (s->start + PAGES(align_pages) - 1) & ~(PAGES(align_pages) - 1);
    if (a == s->start) return s;
    /* the prefix stays free: s keeps it, the rest moves to a new span */
    span_t *head = s;
    if (!split_tail_free(head, (a - s->start) >> MS_PAGE_SHIFT)) {
        list_push(head);
        return NULL;
    }
    s = ms_pagemap_lookup((void *)a);
    list_remove(s);
    list_push(head);
    return s;
}

span_t *ms_heap_alloc(size_t npages, size_t align_pages, uint8_t cls, bool *zeroed) {
    if (npages == 0 || npages > (MS_MAX_ALLOC >> MS_PAGE_SHIFT)) return NULL;
    size_t need = npages + (align_pages > 1 ? align_pages - 1 : 0);
    heap_lock();
    span_t *s = find_free(need);
    /* another thread may take the pages grown before this one looks again:
     * a few rounds, then the request fails as if the kernel had said no */
    bool grew = false;
    for (int round = 0; !s && round < 4; round++) {
        /* the first round only: if another thread took the frontier's span
         * meanwhile, the later rounds grow by all of it, as before */
        size_t tail = round ? 0 : frontier_free_locked(need);
        heap_unlock();
        if (!grow(need - tail)) return NULL;
        grew = true;
        heap_lock();
        s = find_free(need);
    }
    if (!s) {
        heap_unlock();
        return NULL;
    }
    list_remove(s);
    if (align_pages > 1 && !(s = align_locked(s, align_pages))) {
        heap_unlock();
        return NULL;
    }
    size_t over = over_goal_locked(take_pages_locked(s, npages, cls, zeroed));
    check_locked();
    uint64_t sys = PAGES(ctr.sys_pages);
    heap_unlock();
    /* s is in use: none of its pages is among those released */
    if (over && ms_heap_on_over_goal) ms_heap_on_over_goal(over);
    /* after the pages are taken: the hook may start a thread, which
     * allocates, and between the growth and the take that once took the
     * start of the new pages, so that the request no longer fitted and the
     * heap grew again (bench/large.c: heap_sys 7 MiB higher) */
    if (grew && ms_heap_on_grow) ms_heap_on_grow(sys);
    return s;
}

static void free_locked(span_t *s, bool pages_released, uint64_t idle_since_ms) {
    size_t n = s->npages;
    ms_assert_internal(s->state == SPAN_INUSE);
    ms_span_set_fast(s, 0);
    if (s->cls) ms_pagemap_check_close(s);
    if (s->cls && n > 2) ms_pagemap_set_range(s->start + MS_PAGE_SIZE, n - 2, NULL);
    ctr.inuse_pages -= n;
    ctr.free_pages += n;
    note_inuse_locked();
    if (pages_released) {
        ms_pagemap_mark_released(s->start, n, true);
        ctr.released_pages += n;
        s->released = (uint32_t)n;
        s->scan_from = (uint32_t)n;
    } else {
        s->released = 0;
        s->scan_from = 0;
    }
    s->free_since_ms = idle_since_ms ? idle_since_ms : ms_os_now_ms();
    s->freelist = NULL;
    s->allocated = 0;
    insert_free_locked(s);
    check_locked();
}

void (*ms_heap_on_idle)(void);
void (*ms_heap_before_idle)(size_t bytes);
void (*ms_heap_on_grow)(uint64_t sys_bytes);

/* ------------------------------------------------------------------------
 * Very large blocks
 *
 * A block at or above a threshold gets a mapping of its own and gives it
 * back with munmap when freed, as glibc does: a program that allocates a
 * huge buffer once gets its address space, commit charge and memory back
 * the moment it frees it, and the scavenger has nothing to do.  Reusing the
 * pages is what the page heap is for, though, and it pays: a 256 MiB .. 1
 * GiB block malloc'd, written and freed over and over costs 7-9x more time
 * when each malloc maps afresh and faults every page in again
 * (bench/run_direct.sh), and below about 16 MiB mapping per block is ruinous
 * (50x on the mid-size churn).  So the threshold starts at 1 GiB and rises,
 * as glibc's mmap threshold does: once a direct block of n pages is freed,
 * blocks of that size come and go in this program, and from then on blocks
 * of up to n pages go through the page heap.  It stops at
 * MS_DIRECT_MAX_PAGES (one reservation, 64 GiB): larger blocks always have
 * their own mapping.  Freed through the page heap, a huge block's pages go
 * back to the OS through the scavenger, in bounded batches (the stall that
 * once made this path dangerous came from page-by-page bitmap scans; the
 * bench's stall rows show the same worst malloc either way).  A direct
 * span is an ordinary in-use span to the rest of memscope (page map ends,
 * stats in heap_sys and heap_inuse); only its free differs.
 * ---------------------------------------------------------------------- */

#define MS_DIRECT_MAX_PAGES (MS_RESERVE_BYTES >> MS_PAGE_SHIFT)
static _Atomic size_t direct_min = MS_DIRECT_MIN_PAGES;

bool ms_heap_wants_direct(size_t npages) { return npages >= atomic_load_explicit(&direct_min, memory_order_relaxed); }

span_t *ms_heap_alloc_direct(size_t npages) {
    size_t bytes = PAGES(npages);
    uint8_t *r = ms_os_alloc(bytes + MS_PAGE_SIZE);
    if (!r) return NULL;
    uintptr_t start = ((uintptr_t)r + MS_PAGE_MASK) & ~(uintptr_t)MS_PAGE_MASK;
    if (start > (uintptr_t)r) ms_os_free(r, start - (uintptr_t)r);
    uintptr_t tail = start + bytes, rend = (uintptr_t)r + bytes + MS_PAGE_SIZE;
    if (rend > tail) ms_os_free((void *)tail, rend - tail);
    heap_lock();
    span_t *s = NULL;
    if (ms_pagemap_ensure(start, 1) && ms_pagemap_ensure(tail - MS_PAGE_SIZE, 1) && (s = span_new(start, npages))) {
        s->state = SPAN_INUSE;
        s->cls = 0;
        s->direct = 1;
        ms_span_set_fast(s, 0);
        s->next = direct_spans.next, s->prev = &direct_spans;
        s->next->prev = s, direct_spans.next = s;
        maps_changed();
        map_ends(s);
        ctr.sys_pages += npages;
        ctr.inuse_pages += npages;
        note_inuse_locked();
    }
    heap_unlock();
    if (!s) ms_os_free((void *)start, bytes);
    return s;
}

/* Pinned mappings.  Heap pages stay mapped for the life of the process,
 * so a reader from outside (the leak checker's mark) may read any block it
 * saw in use, even after the block is freed.  Two things break that: the
 * munmap of a direct block at free, and the instant inside an mremap move
 * when the source range is unmapped before it is mapped again.  While a
 * reader holds a pin, direct blocks freed are unmapped only when the last
 * pin goes (their pages leave the counters at free, as if unmapped then:
 * the delay is bounded by the reader's run), and moves are refused, so
 * realloc copies instead; a pin waits for moves already under way. */
static uint32_t pins, moving;
static span_t *unmap_later; /* freed direct spans, linked by next */
static pthread_cond_t moves_cv = PTHREAD_COND_INITIALIZER;

void ms_heap_pin_mappings(void) {
    heap_lock();
    pins++;
    while (moving > 0) {
        heap_unlock(); /* not a hold: waiting for the kernel calls of others */
        ms_mutex_take(&ms_heap_lock);
        if (moving > 0) {
            int c = ms_cancel_off(); /* a cancellation point, with the heap's lock */
            pthread_cond_wait(&moves_cv, &ms_heap_lock);
            ms_cancel_restore(c);
        }
        lock_t0 = ms_os_ticks();
    }
    heap_unlock();
}

void ms_heap_unpin_mappings(void) {
    heap_lock();
    ms_assert(pins > 0);
    span_t *l = --pins == 0 ? unmap_later : NULL;
    if (l) unmap_later = NULL;
    heap_unlock();
    while (l) {
        span_t *next = l->next;
        ms_os_free((void *)l->start, PAGES(l->npages));
        heap_lock();
        span_delete(l);
        heap_unlock();
        l = next;
    }
}

static void free_direct(span_t *s) {
    uintptr_t start = s->start;
    size_t n = s->npages;
    if (MS_DIRECT_ADAPTIVE && n < MS_DIRECT_MAX_PAGES && n >= atomic_load_explicit(&direct_min, memory_order_relaxed))
        atomic_store_explicit(&direct_min, n + 1, memory_order_relaxed);
    heap_lock();
    s->prev->next = s->next, s->next->prev = s->prev;
    s->next = s->prev = NULL;
    maps_changed();
    ctr.sys_pages -= n;
    ctr.inuse_pages -= n;
    ctr.released_bytes_total += PAGES(n);
    /* the ends point at nothing: a later free of the address is reported */
    ms_pagemap_set(start, NULL);
    ms_pagemap_set(start + PAGES(n) - MS_PAGE_SIZE, NULL);
    bool later = pins > 0;
    if (later) {
        s->state = SPAN_DEAD;
        s->next = unmap_later;
        unmap_later = s;
    } else {
        span_delete(s);
    }
    heap_unlock();
    if (!later) ms_os_free((void *)start, PAGES(n));
}

void ms_heap_free_idle_since(span_t *s, uint64_t idle_since_ms) {
    if (s->direct) {
        free_direct(s);
        return;
    }
    if (ms_heap_before_idle) ms_heap_before_idle(PAGES(s->npages));
    heap_lock();
    free_locked(s, false, idle_since_ms);
    heap_unlock();
    if (ms_heap_on_idle) ms_heap_on_idle();
}

void ms_heap_free(span_t *s) { ms_heap_free_idle_since(s, 0); }

bool ms_heap_try_resize(span_t *s, size_t new_npages) {
    if (s->direct) return new_npages == s->npages; /* realloc moves it (mremap) */
    bool ok = false;
    size_t taken = 0; /* pages taken that were not resident */
    heap_lock();
    size_t old = s->npages;
    if (new_npages == old) {
        ok = true;
    } else if (new_npages < old) {
        /* shrink: the tail becomes a free span of its own, merged onward */
        span_t *t = span_new(s->start + PAGES(new_npages), old - new_npages);
        if (t) {
            s->npages = (uint32_t)new_npages;
            map_ends(s);
            t->state = SPAN_INUSE;
            ms_pagemap_set(span_end(t) - MS_PAGE_SIZE, t);
            free_locked(t, false, 0);
            ok = true;
        }
    } else {
        size_t extra = new_npages - old;
        span_t *n = free_neighbour(span_end(s), span_end(s), false);
        /* a free tail that ends at the frontier grows with the heap first */
        if (n && n->npages < extra && span_end(n) == resv_next && grow_locked(extra - n->npages))
            n = free_neighbour(span_end(s), span_end(s), false); /* its grown pages are released ones */
        if (n && n->npages >= extra) {
            list_remove(n);
            /* n is cut to exactly the pages s needs, or s does not grow:
             * take_pages_locked would keep the whole of n when it cannot
             * split (no memory for a span struct), and the pages past
             * extra would then be in use and nobody's */
            if (n->npages > extra && !split_tail_free(n, extra)) {
                list_push(n);
            } else {
                taken = take_pages_locked(n, extra, 0, NULL);
                /* n's pages now extend s */
                s->npages += (uint32_t)extra;
                span_delete(n);
                map_ends(s);
                ok = true;
            }
        } else if (!n && span_end(s) == resv_next && commit_frontier(extra)) {
            taken = extra; /* fresh */
            ctr.inuse_pages += extra;
            note_inuse_locked();
            s->npages += (uint32_t)extra;
            map_ends(s);
            ok = true;
        }
    }
    check_locked();
    size_t over = over_goal_locked(taken);
    heap_unlock();
    if (over && ms_heap_on_over_goal) ms_heap_on_over_goal(over);
    return ok;
}

bool ms_heap_move_pages(span_t *from, span_t *to) {
    heap_lock();
    bool may = pins == 0;
    if (may) moving++;
    heap_unlock();
    if (!may) return false;
    int moved = ms_os_move((void *)from->start, (void *)to->start, PAGES(from->npages));
    heap_lock();
    if (--moving == 0) pthread_cond_broadcast(&moves_cv);
    heap_unlock();
    if (!moved) return false;
    if (!to->direct) { /* the moved pages replaced a huge page's */
        heap_lock();
        ms_pagemap_clear_huge(to->start, from->npages);
        heap_unlock();
    }
    if (from->direct) {
        free_direct(from);
    } else {
        heap_lock();
        free_locked(from, true, 0);
        heap_unlock();
    }
    return true;
}

void ms_heap_counters(heap_counters_t *out) {
    heap_lock();
    *out = ctr;
    out->busy_batches = (uint32_t)busy_batches;
    heap_unlock();
}

/* ------------------------------------------------------------------------
 * Scavenging
 * ---------------------------------------------------------------------- */

/* carve_unreleased_locked: s is a free span on its list with unreleased
 * pages.  Its first run of unreleased pages (at most one chunk) becomes a
 * span of its own, off the lists and BUSY; the pieces before and after stay
 * free.  Returns the carved span, or NULL when no span struct is left. */
static span_t *carve_unreleased_locked(span_t *s, size_t max_pages) {
    list_remove(s);
    /* the search starts past the span's released prefix: releasing a long
     * span chunk by chunk, with the chunks merging back behind, would
     * otherwise rescan that prefix each time */
    uintptr_t pos = s->start + PAGES(s->scan_from);
    size_t run = ms_pagemap_next_run(&pos, span_end(s), false, max_pages);
    if (run == 0) { /* nothing unreleased after all (the counts say otherwise: keep them honest) */
        s->scan_from = s->npages;
        list_push(s);
        return NULL;
    }
    if (pos > s->start) {
        s->scan_from = (uint32_t)((pos - s->start) >> MS_PAGE_SHIFT); /* all released before pos: the split needs no count */
        bool ok = split_tail_free(s, (pos - s->start) >> MS_PAGE_SHIFT);
        /* split: s is the prefix before pos, all released.  Not split (no
         * memory for a span struct): s still runs past pos, and scan_from
         * must stay at pos.  Set to the whole span, a later split would
         * take the unreleased tail for released and the span's released
         * count could wrap below zero: heap_released 2^32 pages below zero
         * was seen once under test_faults.sh's injected mmap failures, and
         * this is the path found that leads there (not reproduced) */
        if (ok) s->scan_from = s->npages;
        list_push(s);
        if (!ok) return NULL;
        s = ms_pagemap_lookup((void *)pos);
        list_remove(s);
    }
    if (s->npages > run && !split_tail_free(s, run)) {
        /* merged back: once a prefix was cut off above, s and it are free
         * neighbours, and listed apart they stayed two spans for good (the
         * debug build's "!free_neighbour" under injected mmap failures, a
         * helper session's prog_faults shim 4) */
        insert_free_locked(s);
        return NULL;
    }
    s->state = SPAN_BUSY;
    return s;
}

/* Spans released per trip out of the lock, and spans looked at per hold:
 * one hold finds up to a batch, so a heap of n idle spans costs n/64 holds
 * rather than n, and no hold looks at more than MS_SCAVENGE_VISIT spans,
 * however many there are.  Spans too young to release are passed over; a
 * pass that meets only those ends, and the scavenger comes back once they
 * age (an old span behind many young ones waits for them, at most one
 * scavenge delay). */
#define MS_SCAVENGE_BATCH 64
#define MS_SCAVENGE_VISIT 256

size_t ms_heap_scavenge(uint64_t older_than_ms, size_t max_bytes) {
    size_t done = 0;
    bool failed = false;
    heap_lock();
    while (done < max_bytes && !failed) {
        span_t *batch[MS_SCAVENGE_BATCH];
        int nb = 0, visited = 0;
        size_t bytes = 0;
        /* carving appends the unreleased remainders at the tail, and next is
         * read before carving (carving changes no other span) */
        for (span_t *c = unreleased.unext, *next;
             c != &unreleased && nb < MS_SCAVENGE_BATCH && visited < MS_SCAVENGE_VISIT && done + bytes < max_bytes;
             c = next, visited++) {
            next = c->unext;
            if (c->free_since_ms > older_than_ms) continue;
            /* no more than asked: a release for the goal (ms_heap_alloc)
             * asks for a few pages, and each one released beyond them may
             * come back as a page fault */
            size_t rem = max_bytes - done - bytes, left = (rem >> MS_PAGE_SHIFT) + ((rem & MS_PAGE_MASK) != 0);
            span_t *t = carve_unreleased_locked(c, left < MS_SCAVENGE_CHUNK_PAGES ? left : MS_SCAVENGE_CHUNK_PAGES);
            if (!t) {
                failed = true;
                break;
            }
            batch[nb++] = t;
            bytes += PAGES(t->npages);
        }
        if (nb == 0) break;
        busy_batches++;
        heap_unlock();
        bool ok[MS_SCAVENGE_BATCH];
        for (int k = 0; k < nb; k++) ok[k] = ms_os_release((void *)batch[k]->start, PAGES(batch[k]->npages));
        heap_lock();
        for (int k = 0; k < nb; k++) {
            span_t *t = batch[k];
            if (ok[k]) {
                size_t newly = t->npages - t->released;
                ms_pagemap_mark_released(t->start, t->npages, true);
                ctr.released_pages += newly;
                ctr.released_bytes_total += PAGES(newly);
                t->released = t->npages;
                t->scan_from = t->npages;
                done += PAGES(newly);
            } else {
                /* the kernel said no (EINVAL: a page of it is locked, by
                 * mlock or mlockall; a seccomp filter): keep the pages,
                 * stop, and let them wait a delay as if just freed.  Tried
                 * again at once, they kept the scavenger calling madvise
                 * in a loop, and each try took them off the lists while
                 * allocations grew the heap for want of them
                 * (tests/test_scav_refused.c) */
                failed = true;
                t->scan_from = 0;
                t->free_since_ms = ms_os_now_ms();
            }
            insert_free_locked(t);
        }
        if (--busy_batches == 0) pthread_cond_broadcast(&busy_cv);
    }
    if (done) ctr.scavenge_passes++;
    check_locked();
    heap_unlock();
    return done;
}

/* ------------------------------------------------------------------------
 * Dense regions, for huge pages (scavenger.c)
 * ---------------------------------------------------------------------- */

/* Free spans with unreleased pages looked at per call: a heap with more
 * of them has no candidates until the scavenger has released them. */
#define HUGE_IDLE_VISIT 1024

size_t ms_heap_huge_candidates(ms_huge_cursor_t *cur, uintptr_t *out, size_t max, size_t looks, uint64_t *seq,
                               size_t *first_seen) {
    size_t n = 0;
    heap_lock();
    *seq = ms_pagemap_release_seq();
    for (size_t k = 0; k < looks && n < max && nresv; k++) {
        if (cur->range >= nresv) cur->range = 0, cur->at = 0;
        uintptr_t lo = (resv_list[cur->range].lo + MS_HUGE_SIZE - 1) & ~(uintptr_t)(MS_HUGE_SIZE - 1);
        uintptr_t reg = cur->at > lo ? cur->at : lo;
        if (reg + MS_HUGE_SIZE > resv_hi(cur->range)) { /* this reservation done: the next one */
            cur->range++, cur->at = 0;
            continue;
        }
        cur->at = reg + MS_HUGE_SIZE;
        if (ms_pagemap_region_unreleased(reg)) out[n++] = reg;
    }
    /* every page of a candidate must be in a span in use: idle pages would
     * be released within the scavenge delay, and a release splits the huge
     * page again.  Idle pages are released ones (the bits above) or on the
     * scavenger's list (unreleased ones). */
    int visited = 0;
    for (span_t *c = unreleased.unext; n && c != &unreleased; c = c->unext) {
        if (++visited > HUGE_IDLE_VISIT) {
            for (size_t i = 0; i < n; i++) ms_pagemap_seen(out[i], false);
            n = 0;
            break;
        }
        size_t keep = 0;
        for (size_t i = 0; i < n; i++) {
            if (span_end(c) <= out[i] || c->start >= out[i] + MS_HUGE_SIZE) out[keep++] = out[i];
            else ms_pagemap_seen(out[i], false);
        }
        n = keep;
    }
    /* and dense at the previous look too: a heap that is still being
     * built, or freed soon after, is not worth the copies */
    size_t keep = 0;
    for (size_t i = 0; i < n; i++)
        if (ms_pagemap_seen(out[i], true)) out[keep++] = out[i];
    *first_seen = n - keep;
    heap_unlock();
    return keep;
}

void ms_heap_huge_done(uintptr_t region, uint64_t seq) {
    heap_lock();
    /* a release anywhere since the look may have been in this region, after
     * the collapse: it stays unmarked, and the next look asks again (a
     * collapse of a huge page is a quick no-op) */
    if (ms_pagemap_release_seq() == seq) ms_pagemap_set_huge(region);
    heap_unlock();
}

/* ------------------------------------------------------------------------
 * Validation and fork
 * ---------------------------------------------------------------------- */

/* VALID: a failed condition names itself on stderr, so a broken invariant in
 * a debug run says which one. */
#define VALID(cond)                                                                                   \
    do {                                                                                              \
        if (!(cond)) {                                                                                \
            ms_printf_fd(2, "memscope: heap invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
            return false;                                                                             \
        }                                                                                             \
    } while (0)

/* valid_free: the checks of one listed free span; adds up its pages */
static bool valid_free(span_t *s, uint64_t *free_pages, uint64_t *released, uint64_t *dirty) {
    VALID(s->state == SPAN_FREE);
    VALID(ms_pagemap_lookup((void *)s->start) == s);
    VALID(ms_pagemap_lookup((void *)(span_end(s) - MS_PAGE_SIZE)) == s);
    VALID(ms_pagemap_count_released(s->start, s->npages) == s->released);
    /* free lets nothing into a free span (its ends: a long one is
     * not walked whole after every operation) */
    VALID(ms_pagemap_check_is_clear(s->start, s->npages < 4 ? s->npages : 2) &&
          ms_pagemap_check_is_clear(span_end(s) - 2 * MS_PAGE_SIZE, s->npages < 4 ? 0 : 2));
    VALID(s->scan_from <= s->npages && ms_pagemap_count_released(s->start, s->scan_from) == s->scan_from);
    /* coalesced: no free neighbour on either side */
    VALID(!free_neighbour(span_end(s), span_end(s), false));
    VALID(s->start < MS_PAGE_SIZE || !free_neighbour(s->start - MS_PAGE_SIZE, s->start, true));
    *free_pages += s->npages;
    *released += s->released;
    VALID((s->unext != NULL) == (s->released < s->npages));
    *dirty += s->released < s->npages;
    return true;
}

/* valid_tree: t's subtree holds spans in [lo, hi) in address order, heap
 * ordered by priority, none shorter than NLISTS pages, each with the
 * longest span under it as its tmax, which goes to *max */
static bool valid_tree(span_t *t, uintptr_t lo, uintptr_t hi, uint32_t *max, uint64_t *free_pages,
                       uint64_t *released, uint64_t *dirty) {
    *max = 0;
    if (!t) return true;
    VALID(t->start >= lo && span_end(t) <= hi && t->npages >= NLISTS);
    VALID(!t->tleft || tree_prio(t->tleft) <= tree_prio(t));
    VALID(!t->tright || tree_prio(t->tright) <= tree_prio(t));
    uint32_t ml, mr;
    if (!valid_free(t, free_pages, released, dirty) ||
        !valid_tree(t->tleft, lo, t->start, &ml, free_pages, released, dirty) ||
        !valid_tree(t->tright, span_end(t), hi, &mr, free_pages, released, dirty))
        return false;
    *max = t->npages > ml ? t->npages : ml;
    if (mr > *max) *max = mr;
    VALID(t->tmax == *max);
    return true;
}

bool ms_heap_is_valid_locked(void) {
    uint64_t free_pages = 0, released = 0, dirty = 0, on_ulist = 0;
    for (span_t *s = unreleased.unext; s != &unreleased; s = s->unext) {
        VALID(s->state == SPAN_FREE && s->unext->uprev == s && s->released < s->npages);
        on_ulist++;
    }
    for (int i = 1; i < NLISTS; i++) {
        span_t *h = &free_lists[i];
        VALID(((nonempty >> i) & 1) == (h->next && h->next != h));
        for (span_t *s = h->next; s && s != h; s = s->next) {
            VALID(s->npages == (uint32_t)i);
            if (!valid_free(s, &free_pages, &released, &dirty)) return false;
        }
    }
    uint32_t max;
    if (!valid_tree(tree_root, 0, UINTPTR_MAX, &max, &free_pages, &released, &dirty)) return false;
    VALID(dirty == on_ulist);
    /* busy spans (being scavenged) are off the lists but counted as free */
    VALID(free_pages <= ctr.free_pages && released <= ctr.released_pages);
    VALID(busy_batches > 0 || (free_pages == ctr.free_pages && released == ctr.released_pages));
    VALID(ctr.inuse_pages + ctr.free_pages == ctr.sys_pages);
    return true;
}

bool ms_heap_is_valid(void) {
    heap_lock();
    bool ok = ms_heap_is_valid_locked();
    heap_unlock();
    return ok;
}

/* Fork waits until no scavenger batch is out of the lists: the scavenger
 * thread does not exist in the child, and spans it held BUSY there would be
 * counted idle and never used again.  A batch is out for the time of its
 * madvise calls (at most 64 spans of 16 MiB). */
void ms_heap_fork_prepare(void) {
    int c = ms_cancel_off(); /* the wait is a cancellation point */
    pthread_mutex_lock(&ms_heap_lock);
    while (busy_batches > 0) pthread_cond_wait(&busy_cv, &ms_heap_lock);
    ms_cancel_restore(c);
}
void ms_heap_fork_parent(void) {
    ms_pagemap_clear_huge_all(); /* the child shares the huge pages: a write splits them */
    pthread_mutex_unlock(&ms_heap_lock);
}
void ms_heap_fork_child(void) {
    ms_pagemap_clear_huge_all();
    pthread_mutex_init(&ms_heap_lock, NULL);
    pthread_cond_init(&busy_cv, NULL);
    pthread_cond_init(&moves_cv, NULL);
    /* movers and pin holders were other threads: nothing of theirs goes on
     * here, and the mappings they kept are the child's to return */
    moving = 0;
    pins = 0;
    for (span_t *l = unmap_later, *next; l; l = next) {
        next = l->next;
        ms_os_free((void *)l->start, PAGES(l->npages));
        span_delete(l);
    }
    unmap_later = NULL;
}

size_t ms_heap_mappings(uintptr_t (*out)[2], size_t cap, uint64_t *gen) {
    heap_lock();
    *gen = atomic_load_explicit(&maps_gen, memory_order_relaxed);
    size_t n = resv_unlisted ? SIZE_MAX : 0;
    for (uint32_t i = 0; n != SIZE_MAX && i < nresv; i++) {
        /* the current reservation up to its frontier: past it, no page
         * was ever mapped, and a walk of 64 GiB of nothing is not free;
         * less the claims not mapped yet (claims, above), in address order */
        uintptr_t at = resv_list[i].lo, hi = resv_hi(i);
        for (;;) {
            uintptr_t cut = hi, past = hi;
            for (uint32_t k = 0; k < nclaims; k++)
                if (claims[k].lo >= at && claims[k].lo < cut) cut = claims[k].lo, past = claims[k].hi;
            if (cut > at) {
                if (n < cap) out[n][0] = at, out[n][1] = cut;
                n++;
            }
            if (cut >= hi) break;
            at = past;
        }
    }
    for (span_t *d = direct_spans.next; n != SIZE_MAX && d != &direct_spans; d = d->next, n++)
        if (n < cap) out[n][0] = d->start, out[n][1] = d->start + PAGES(d->npages);
    heap_unlock();
    return n;
}

uint64_t ms_heap_mappings_gen(void) { return atomic_load_explicit(&maps_gen, memory_order_relaxed); }

/* ms_heap_oldest_idle_ms: the idle time of the oldest free span that still
 * has unreleased pages among the first MS_SCAVENGE_VISIT of the scavenger's
 * list (UINT64_MAX if none), and the unreleased idle bytes. */
uint64_t ms_heap_oldest_idle_ms(uint64_t *idle_bytes) {
    uint64_t oldest = UINT64_MAX;
    heap_lock();
    *idle_bytes = PAGES(ctr.free_pages - ctr.released_pages);
    int k = 0;
    for (span_t *s = unreleased.unext; s != &unreleased && k < MS_SCAVENGE_VISIT; s = s->unext, k++)
        if (s->free_since_ms < oldest) oldest = s->free_since_ms;
    heap_unlock();
    return oldest;
}

/* ------------------------------------------------------------------------
 * Spans in use, for the leak checker (src/leak/)
 * ---------------------------------------------------------------------- */

/* ms_heap_for_each_inuse: calls fn(copy, arg) once for every span in use,
 * in address order.  The walk reads the page map's leaves: a span's first
 * page maps to it, so a page whose entry is a span starting there is that
 * span's start (stale entries in the middle of other spans point at structs
 * that start elsewhere or are not in use), and the walk then skips the
 * span's pages.  It holds the heap lock for at most WALK_PAGES pages or
 * WALK_SPANS span structs read (in use or free: each read may miss the
 * cache) at a time, copying the spans it finds, and calls fn on
 * the copies with no lock held, so a heap of any size never keeps the lock
 * long; a span allocated or freed between two holds may be seen or not,
 * as with any walk that runs beside the program.  (A copy's `used` is the
 * central list's, read racily: 0 when the span is taken, it only grows
 * while the span is in use.) */
#define WALK_PAGES 4096
#define WALK_SPANS 32

size_t ms_heap_for_each_inuse(void (*fn)(const span_t *s, void *arg), void *arg) {
    size_t n = 0;
    const uintptr_t all = (uintptr_t)1 << (MS_PM_ROOT_BITS + MS_PM_LEAF_BITS);
    uintptr_t pn = 0; /* next page number to look at */
    span_t copy[WALK_SPANS];
    while (pn < all) {
        int got = 0;
        uintptr_t budget = WALK_PAGES;
        heap_lock();
        int seen = 0; /* span structs read: each may be a cache miss, free ones too */
        while (pn < all && seen < WALK_SPANS && budget > 0) {
            if (!ms_pm.root[pn >> MS_PM_LEAF_BITS]) { /* no leaf: none of its pages is the heap's */
                pn = ms_pagemap_next_leaf((pn >> MS_PM_LEAF_BITS) + 1) << MS_PM_LEAF_BITS;
                budget--;
                continue;
            }
            uintptr_t page = pn << MS_PAGE_SHIFT;
            span_t *s = ms_pagemap_span((void *)page);
            budget--;
            pn++;
            if (s == MS_SPAN_NIL) continue;
            seen++;
            if (s->start != page || s->state == SPAN_DEAD) continue;
            if (s->state == SPAN_INUSE) memcpy(&copy[got++], s, sizeof *s);
            pn = (s->start >> MS_PAGE_SHIFT) + s->npages;
        }
        heap_unlock();
        for (int k = 0; k < got; k++) fn(&copy[k], arg);
        n += (size_t)got;
    }
    return n;
}
