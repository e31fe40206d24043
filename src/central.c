/* central.c: one central list per size class.  See malloc.c for the overview.
 *
 * A central list owns the spans of its class that are in use and hands their
 * objects to thread caches in batches (Go's mcentral).  It keeps two things
 * under one lock per class, each lock on its own cache line (locks, below):
 *   - transfer slots: whole chains as a thread cache gave them back (the
 *     spare chain of a list that filled up while it had one, tcache.c
 *     "Batches", or a batch of frees), handed out again as they are, so the common
 *     exchange between threads costs O(1) under the lock both ways and
 *     touches no object (tcmalloc's transfer cache, with chains of any
 *     length).  Slots are capped by bytes so they cannot hoard memory.
 *   - spans with free objects (the nonempty list): objects come from a span's
 *     free list first, then from its never-used tail (s->used), so a new
 *     span's pages are only touched as objects are really handed out.
 *     A take uses the first span listed; a span that was full goes first
 *     when objects come back (return_to_spans_locked), a new one last.
 *     Other orders were measured no better (interleaved runs, by hand):
 *     fullest first (two, four or eight lists by the fraction handed out,
 *     the take from the fullest) and lowest address first (jemalloc's
 *     slabs) moved peak RSS and CPU time by less than the runs spread on
 *     bench/run.sh's st-churn, prodcons, tl-remote, larson, many-threads
 *     and small-nodes, and the peak heap in use by 1.5% or less; these two
 *     and a thread's own spans first (a tag of the cache that took the span
 *     from the page heap, looked for among the first 4-64 listed) moved
 *     tl_remote's pages a thread (bench/run_placement.sh) by less than its
 *     runs spread.  Few objects pass here: the thread caches and the slots
 *     absorb the rest (takes from the spans per malloc: st-churn 1 in
 *     35,000, larson 1 in 9,500, tl-remote 1 in 4,200), and at peak RSS the
 *     spans' free lists held none of st-churn's 1.1 MiB of free space in
 *     spans in use, 0.09 of prodcons' 1.5, 0.06 of many-threads' 11.1 and
 *     2.1 of tl-remote's 6.2; the rest was in the thread caches and slots,
 *     and 0.4 in never-used tails.
 * A span whose objects have all come back returns to the page heap, unless it
 * is the only span of the class with free objects (a class that oscillates
 * around zero live objects would otherwise take the heap lock every time)
 * and its class is of at most 64 KiB: above, a span holds two blocks, the
 * thread caches absorb that oscillation (tcache.c, "Blocks above 64 KiB"),
 * and a kept span in each of those 16 classes was megabytes that the
 * page heap's other blocks could not use.
 * The central lock is never held while taking the heap lock.
 *
 * Segments.  A span's free list is a stack of segments whose lengths and
 * last objects are known, so that a take cuts it between two segments
 * without reading the objects in between.  Objects come back as runs of
 * the same span (return_to_spans_locked); a run joins the first segment
 * while that stays within a batch, else it starts a new one, and the old
 * first segment's length and last object go into its first object's third
 * word (seg_push; the span keeps the first segment's in seg_n and
 * seg_tail).  A take then takes whole segments while the list it fills
 * has room for them, and object by object only within a segment longer
 * than that room.  Before, a take that wanted fewer objects than the
 * span's free list held (nearly every one where a span had thousands of
 * objects freed in random order by threads that exited) popped them one
 * by one: a row of dependent loads of objects freed a while ago, seldom
 * in this CPU's cache, under the lock.  On an mstress-like run (threads
 * in rounds, each allocating tens of thousands of blocks of 8 to 128
 * bytes, keeping half, then freeing them all at its exit) that walk was
 * 8-11% of the run's time (perf, by hand): its 1.16 M objects walked in
 * 57,600 takes went to 0.50 M (those of 16-byte objects, which have no
 * third word: their list is one segment) in 45,200, and take_spans_locked
 * from 10% of the samples to 2% (perf), for 3 instructions more a run given
 * back (callgrind).  A segment's word is marked so that it reads as no
 * address: the block that keeps it once handed out holds no pointer the
 * leak checker could follow.
 *
 * Objects parked in slots keep their spans in use, and after frees in random
 * order those can be thousands of spans: so the scavenger looks at every
 * class now and then (ms_central_flush_idle), and a class that has seen no
 * take or give for the scavenge delay gives its slots back to their spans.
 */
#include "internal.h"

#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define MS_SLOT_MAX 64
/* Bytes of whole batches a class may keep in its slots: enough to absorb
 * the bursts of a producer/consumer pair, little enough to be noise.  At
 * 512 KiB, mixed_realloc (one thread, 16 B to 64 KiB) kept 6.8 MiB in slots
 * out of 15.6 MiB free in its spans in use, and at 128 KiB its peak RSS was
 * 1.2 MiB lower, while prodcons, larson, tl_remote and many_threads ran
 * as fast (interleaved runs, by hand). */
#define MS_SLOT_BYTES ((size_t)128 << 10)
/* Above 8 KiB a class's batch is 2 to 7 objects of 44 to 128 KiB in all,
 * so 128 KiB was one or two chains, and a thread whose count of free blocks
 * of such a class wandered by more than its list and spare (tcache.c: 128
 * KiB each) sent nearly every chain back into the spans and refilled from
 * them, a block at a time from the spans' free lists: a cache miss on each
 * block's link, and the blocks it got back lay on other pages than the ones
 * it had freed.  On a window of 4096 blocks of 8 B to 64 KiB replaced at
 * random (bench/alloc_test.c, the alloc-test benchmark's pattern), 24,600
 * of 2M mallocs took from the spans (callgrind's call counts), and in 10M
 * steps the blocks started on 6,157 different pages, against 2,590 under
 * tcmalloc, whose transfer cache keeps up to 1 MiB of batches a class:
 * peak RSS 34.0 MiB against its 19.4.  So those classes keep up to
 * MS_SLOT_BIG_BYTES in slots (8 to 23 chains): 6,000 takes from the spans,
 * 3,104 pages, peak RSS 17.1 MiB and 7% less time; on glibc's
 * bench-malloc-thread pattern (4 B to 32 KiB) 10.0 -> 6.6 MiB, on an
 * rptest-like one 23.9 -> 17.1; larson, prodcons, tl_remote, many_threads
 * and small_nodes (blocks of at most 1 KiB) as before, mixed_realloc (16 B
 * to 64 KiB) 49.1 -> 49.5 MiB, within its runs' spread, and one thread of
 * an mstress-like run (mimalloc's stress test: bursts of blocks mostly
 * below 1 KiB, 1% up to 1 MiB) 44.6 -> 46.2 MiB (by hand, medians of 5-9
 * interleaved runs each; the instructions of the first six within 1%,
 * callgrind).
 * The classes from 1 to 8 KiB at 1 MiB gained nothing more there, and at
 * 1 MiB for every class larson's peak RSS rose by 2 MiB.  What slots hold
 * goes back to the spans once the class has been quiet for the scavenge
 * delay (ms_central_flush_idle). */
#define MS_SLOT_BIG_BYTES ((size_t)1 << 20)
#define MS_SLOT_BIG_FROM 8192u

typedef struct central_s {
    span_t nonempty;               /* sentinel: spans with free objects */
    uint32_t nslots;               /* chains in slots */
    uint32_t slot_objs, max_slot_objs; /* objects in them, and the most they may hold */
    uint64_t ops;                  /* takes and gives so far: the scavenger's sign of activity */
    uint64_t ops_seen;             /* ops at the scavenger's last look */
    uint64_t quiet_since_ms;       /* when the scavenger last saw ops change */
} __attribute__((aligned(MS_CACHE_LINE))) central_t;

static central_t central[MS_NUM_CLASSES];
/* Each class's slots (under its lock), each a NULL-terminated chain of
 * n[i] objects, at least half a batch.  Apart from the lists, so that a class in
 * use makes a 192-byte list resident and not 768 bytes more of slots it may
 * never fill: the lists of all classes fit in 4 pages. */
static struct {
    void *chain[MS_SLOT_MAX];
    uint32_t n[MS_SLOT_MAX];
} __attribute__((aligned(MS_CACHE_LINE))) slots[MS_NUM_CLASSES];
#define SLOTS(ct) (slots[(ct) - central].chain)
#define SLOT_N(ct) (slots[(ct) - central].n)
/* Each class's lock, one to a cache line, apart from its list: fork takes
 * and releases every lock, and after a fork each page written costs the
 * parent and the child a copy-on-write fault.  Packed, the locks fill two
 * pages instead of the 17 the lists span: 51 more page faults per fork
 * than glibc before, by hand, on a program forking in a loop. */
static struct {
    ms_lock_t m;
} __attribute__((aligned(MS_CACHE_LINE))) locks[MS_NUM_CLASSES];
#define LOCK(ct) (&locks[(ct) - central].m)
/* Nothing is set up at process start: zeroed memory is a free lock
 * (lock.c), and each list is set up by its class's
 * first take (first_take).  An init that wrote every list made all of
 * central[] resident in every process. */

/* first_take: class ct's list before its first span (lock held).  Only a
 * take can come first: a give returns objects some take handed out.  Until
 * then the sentinel's links are NULL, and the walks over every class
 * (flush_class_locked, ms_central_is_valid) see an empty list. */
ms_cold static void first_take(central_t *ct, uint8_t cls) {
    ct->nonempty.next = ct->nonempty.prev = &ct->nonempty;
    /* as many objects as MS_SLOT_MAX batches or MS_SLOT_BYTES (above 8
     * KiB MS_SLOT_BIG_BYTES) hold, whichever is less, and at least two
     * batches; none where a batch is more than MS_SLOT_BYTES, which are
     * the classes above 64 KiB: their
     * lists take one block at a time and give theirs straight back to
     * their spans (tcache.c, "Blocks above 64 KiB"), and a chain left in
     * a slot at a thread's exit would wait there for the class to go
     * quiet */
    size_t per = (size_t)ms_class_batch[cls] * ms_class_size[cls];
    size_t m = (ms_class_size[cls] > MS_SLOT_BIG_FROM && ms_class_size[cls] <= MS_TC_MID_ABOVE ? MS_SLOT_BIG_BYTES : MS_SLOT_BYTES) / per;
    m = m == 1 ? 2 : m > MS_SLOT_MAX ? MS_SLOT_MAX : m;
    ct->max_slot_objs = (uint32_t)m * ms_class_batch[cls];
}

/* ne_insert: s joins a nonempty list after `after` (its sentinel: first) */
static void ne_insert(span_t *after, span_t *s) {
    s->prev = after;
    s->next = after->next;
    after->next->prev = s;
    after->next = s;
    s->in_list = 1;
}

static void ne_remove(span_t *s) {
    s->prev->next = s->next;
    s->next->prev = s->prev;
    s->next = s->prev = NULL;
    s->in_list = 0;
}

/* new_span: a span for class cls from the page heap.  In leak-check mode
 * its pages are cleared unless the kernel just did (ms_every_block_recorded):
 * what a span of another class, or a large block, left there lies at any
 * offset of the new objects, past the words malloc clears (the free-list
 * link and the cookie) and outside anything the new class's requests
 * write, and it would keep blocks reachable for the leak checker. */
static span_t *new_span(uint8_t cls) {
    bool zeroed = false;
    span_t *s = ms_heap_alloc(ms_class_pages[cls], 1, cls, &zeroed);
    if (!s) return NULL;
    size_t size = ms_class_size[cls];
    size_t objs = ((size_t)ms_class_pages[cls] << MS_PAGE_SHIFT) / size;
    s->freelist = NULL;
    s->seg_n = 0;
    s->allocated = 0;
    /* s->used is 0 from the page heap (take_pages_locked), so a leak check
     * meanwhile sees no block handed out here */
    if (!zeroed && ms_every_block_recorded()) memset((void *)s->start, 0, (size_t)s->npages << MS_PAGE_SHIFT);
    s->limit = s->start + objs * size;
    s->size = (uint32_t)size;
    s->div = UINT64_MAX / size + 1;
    ms_span_set_fast(s, cls);
    ms_pagemap_check_open(s);
    return s;
}

/* link_run: the m consecutive objects of `size` bytes from first, linked
 * in ascending order ahead of chain; returns the new chain.  Each carries
 * its free cookie: not yet the program's, on its way to a thread cache it
 * must read as free to free's check and to the leak checker, like a freed
 * one.  Every object a program allocates from a fresh span is linked here,
 * so it is written for the instruction count: an object's two words
 * {next, cookie} are {q + size, q + key}, both linear in q, so one vector
 * of the two steps by size from object to object and each object costs a
 * 16-byte store and a vector add (eight a turn, addressed from one base).
 * 2.6 instructions an object, where four a turn took 3.5 (the compiler
 * stepped a pointer from store to store) and the scalar loop with the
 * cookie as q xor key 6 (callgrind on small_nodes, by hand).  Not inlined: in
 * ms_central_take its registers cost every take a spill, the takes of a
 * whole batch from a slot (most of prodcons's) included. */
__attribute__((noinline)) static void *link_run(uintptr_t first, uint32_t m, size_t size, void *chain) {
    /* the key read once: ms_free_cookie's, which the compiler would load
     * again after every store (they may alias it) */
    uintptr_t key = ms_cookie_key, q = first, last = first + (uintptr_t)(m - 1) * size;
    uint32_t turns = m / 8;
#if defined(__SSE2__)
    if (turns) {
        __m128i v = _mm_set_epi64x((long long)(q + key), (long long)(q + size)); /* {next, cookie} */
        const __m128i step = _mm_set1_epi64x((long long)size);
        /* each object stored at q plus a multiple of size that an
         * addressing mode forms (q + s, q + s * 2, q + s3, ...): the
         * barriers keep q and the multiples in registers */
        uintptr_t s = size, s3 = 3 * size, s5 = 5 * size, s7 = 7 * size, s8 = 8 * size;
        __asm__("" : "+r"(s), "+r"(s3), "+r"(s5), "+r"(s7));
        do {
            __asm__("" : "+r"(q));
            _mm_storeu_si128((__m128i *)q, v);
            v = _mm_add_epi64(v, step);
            _mm_storeu_si128((__m128i *)(q + s), v);
            v = _mm_add_epi64(v, step);
            _mm_storeu_si128((__m128i *)(q + s * 2), v);
            v = _mm_add_epi64(v, step);
            _mm_storeu_si128((__m128i *)(q + s3), v);
            v = _mm_add_epi64(v, step);
            _mm_storeu_si128((__m128i *)(q + s * 4), v);
            v = _mm_add_epi64(v, step);
            _mm_storeu_si128((__m128i *)(q + s5), v);
            v = _mm_add_epi64(v, step);
            _mm_storeu_si128((__m128i *)(q + s3 * 2), v);
            v = _mm_add_epi64(v, step);
            _mm_storeu_si128((__m128i *)(q + s7), v);
            v = _mm_add_epi64(v, step);
            q += s8;
        } while (--turns);
    }
#else
    for (; turns; turns--) {
        for (int i = 0; i < 8; i++, q += size) ((uintptr_t *)q)[0] = q + size, ((uintptr_t *)q)[1] = q + key;
    }
#endif
    /* the last turn's link of the last object is overwritten below */
    for (; q <= last; q += size) ((uintptr_t *)q)[0] = q + size, ((uintptr_t *)q)[1] = q + key;
    ((void **)last)[0] = chain;
    return (void *)first;
}

/* Segments (see the opening comment): a segment's first object below the
 * span's first segment keeps, in its third word, SEG_MARK, the offset of
 * its last object in the span (bits 16-62) and its length (bits 0-15; a
 * span holds at most 1024 objects).  Marked, the word is no address, so a
 * block that keeps it once handed out holds no pointer the leak checker
 * could follow.  Objects of 16 bytes have no third word (the first is the
 * link, the second the free cookie): their list is one segment. */
#define SEG_MARK ((uint64_t)1 << 63)
#define SEG_MIN_SIZE 32u

/* seg_cap: the longest segment that runs join in class cls, a batch (the
 * most its lists take at a time from the spans but for a bulk refill,
 * tcache.c "Batches"); for 16-byte objects the whole list */
static inline uint32_t seg_cap(uint8_t cls) {
    return ms_class_size[cls] < SEG_MIN_SIZE ? UINT32_MAX / 2 : ms_class_batch[cls];
}

/* seg_push: a run of k objects ending at last goes ahead of span s's free
 * list (the caller links it): it joins the first segment while that stays
 * within cap (seg_cap), else the first segment's word goes into its first
 * object and the run is the first segment */
static inline void seg_push(span_t *s, uint32_t cap, void *last, uint32_t k) {
    uint32_t sn = s->seg_n;
    if (sn && sn + k <= cap) {
        s->seg_n = sn + k;
        return;
    }
    if (sn) ((uint64_t *)s->freelist)[2] = SEG_MARK | (uint64_t)((uintptr_t)s->seg_tail - s->start) << 16 | sn;
    s->seg_n = k;
    s->seg_tail = last;
}

/* seg_next: span s's first segment has just left its free list; the next
 * one, if any, is first now, as its first object's word says */
static inline void seg_next(span_t *s) {
    uint64_t *h = s->freelist;
    if (!h) {
        s->seg_n = 0;
        return;
    }
    ms_assert_internal(s->size >= SEG_MIN_SIZE && (h[2] & SEG_MARK));
    uint64_t d = h[2];
    s->seg_n = (uint32_t)(d & 0xffff);
    s->seg_tail = (void *)(s->start + (uintptr_t)((d & ~SEG_MARK) >> 16));
}

/* take_spans_locked: ms_central_take's objects from the spans, class ct
 * locked; unlocks it.  Apart, so that a take from a slot (most takes of a
 * program that frees what it allocated in batches) does not pay for this
 * part's registers: 72 instructions a take from a slot, 58 so (callgrind
 * on an sh6bench-like run). */
__attribute__((noinline)) static uint32_t take_spans_locked(central_t *ct, uint8_t cls, uint32_t want, uint32_t room, void **head,
                                                            void **spare) {
    uint32_t batch = ms_class_batch[cls];
    size_t size = ms_class_size[cls];
    void *chain = NULL;
    uint32_t n = 0;
    while (n < want) {
        span_t *s = ct->nonempty.next;
        if (s == &ct->nonempty) {
            ms_unlock(LOCK(ct));
            s = new_span(cls);
            ms_lock(LOCK(ct));
            if (!s) break;
            ne_insert(ct->nonempty.prev, s); /* last: spans listed meanwhile are partly used, and go first */
            continue;
        }
        /* The first span's free list, whole, when the take wants all of
         * it: the chain is that list as it is, with no object read under
         * the lock.  Its objects were freed a while ago, by any thread,
         * and are seldom in this CPU's cache: popped one by one here, each
         * was a cache miss in a row of dependent loads, with every other
         * thread that wants the class waiting for the lock (a stress test
         * of threads that free each other's blocks made 64 times
         * mimalloc's futex calls); the thread's mallocs read them later
         * instead, each prefetching the next.  Its length is what the span
         * has carved less what it has out (ms_central_is_valid checks
         * it).  Objects taken after it go ahead of it. */
        if (!chain && s->freelist) {
            uint32_t nfree = s->used / s->size - s->allocated;
            if (nfree <= want) {
                chain = s->freelist;
                s->freelist = NULL;
                s->seg_n = 0;
                n = nfree;
                s->allocated += nfree;
            }
        }
        /* else segment by segment ("Segments"): each whole while the
         * list has room for it, else object by object */
        while (n < want && s->freelist) {
            uint32_t k = s->seg_n;
            void *first = s->freelist, *last = first;
            if (n + k <= room) {
                last = s->seg_tail;
                s->seg_n = 0;
            } else {
                k = 1;
                s->seg_n--;
            }
            s->freelist = *(void **)last;
            *(void **)last = chain;
            chain = first;
            n += k;
            s->allocated += k;
            if (s->seg_n == 0) seg_next(s);
        }
        if (n < want && s->start + s->used < s->limit) {
            /* the never-used tail: a run of consecutive objects, linked
             * in ascending order ahead of the chain, so the thread pops
             * them in address order (a list built from successive mallocs
             * is then walked forward through memory, which the hardware
             * prefetcher follows; linked the other way, bench/run.sh's
             * small-nodes took 0.94 s instead of 0.61 s) */
            uintptr_t first = s->start + s->used;
            uint32_t m = (uint32_t)((s->limit - first) / size), k = want - n;
            /* a list's spare (tcache.c, "Batches"), a whole list of
             * objects, comes from this tail too, run on from the list's
             * part, if nothing freed waits in the class (no slot, this
             * span the only one listed and its free list drained) and
             * the tail holds both: these are the pages the next refill
             * would take.  Linked as one run and cut after the list's
             * part: two runs cost a second call and a second raise of
             * free's check on the same page (110 instructions a refill,
             * small_nodes).  None if not: fresh memory does not go ahead
             * of freed objects. */
            if (spare && m >= k + want && !ct->nslots && s->next == &ct->nonempty) {
                link_run(first, k + want, size, NULL);
                ((void **)(first + (uintptr_t)(k - 1) * size))[0] = chain;
                chain = (void *)first;
                *spare = (void *)(first + (uintptr_t)k * size);
                spare = NULL; /* taken */
                s->used += (k + want) * (uint32_t)size;
                s->allocated += k + want;
                m = k;
            } else {
                if (m > k) m = k;
                chain = link_run(first, m, size, chain);
                s->used += m * (uint32_t)size;
                s->allocated += m;
            }
            ms_span_check_grow(s, (uint32_t)(first - s->start)); /* before any of them leaves the lock */
            n += m;
        }
        if (!s->freelist && s->start + s->used >= s->limit) {
            ne_remove(s);
            /* a take of more than a batch (tcache.c, "Batches") ends with
             * a span it used up, so that the next one starts where this
             * left off and no take hands out the start of one span's tail
             * ahead of the end of another's: every take of a stream of
             * mallocs then walks memory upwards (small-nodes' walk and
             * free phases were 30-40% slower with takes across spans, by
             * hand) */
            if (n >= batch) break;
        }
    }
    ms_unlock(LOCK(ct));
    *head = chain;
    return n;
}

uint32_t ms_central_take(uint8_t cls, uint32_t want, uint32_t room, void **head, void **spare) {
    central_t *ct = &central[cls];
    ms_lock_t *lock = &locks[cls].m; /* by the class: LOCK(ct) divides by sizeof(central_t) */
    ms_lock(lock);
    if (ms_unlikely(!ct->nonempty.next)) first_take(ct, cls);
    ct->ops++;
    /* the chain given last, if it fits (a list still growing may not take
     * the whole spare of a list at its limit: it takes from the spans) */
    uint32_t k = ct->nslots;
    if (k > 0 && slots[cls].n[k - 1] <= room) {
        uint32_t n = slots[cls].n[--k];
        ct->nslots = k;
        ct->slot_objs -= n;
        *head = slots[cls].chain[k];
        ms_unlock(lock);
        return n;
    }
    return take_spans_locked(ct, cls, want, room, head, spare);
}

/* ms_central_next_chain: a hint, read without the lock (tcache.c:
 * ms_tcache_refill) */
uint32_t ms_central_next_chain(uint8_t cls) {
    central_t *ct = &central[cls];
    uint32_t n = __atomic_load_n(&ct->nslots, __ATOMIC_RELAXED);
    return n ? __atomic_load_n(&SLOT_N(ct)[n - 1], __ATOMIC_RELAXED) : 0;
}

/* stride_up: from c, the last object up to end (at least eight objects
 * of `size` past c) that c reaches by links that each step up by size;
 * stride_run's common case, apart so that its registers are its own
 * (inlined in return_to_spans_locked, the loop spilled the multiples of
 * size and stepped seven pointers a turn).  Eight links a turn, each
 * compared with the address after it, both formed by addressing modes
 * from c and the multiples kept in registers (the barriers: else the
 * compiler steps a pointer per object): a lea, a compare with memory and
 * a branch an object, 3.7 instructions with the turn's own and the
 * call's, where four a turn inlined took 4.5 (callgrind on small_nodes,
 * by hand).  A turn that finds a
 * link out of step leaves it to stride_run's loop, from its first
 * object; fewer than eight left at the end take one more turn over
 * objects partly checked already. */
__attribute__((noinline)) static uintptr_t stride_up(uintptr_t c, uintptr_t end, uintptr_t size) {
    uintptr_t last8 = end - 8 * size; /* a turn from c checks c's link up to c + 8 * size's */
    uintptr_t s = size, s3 = 3 * size, s5 = 5 * size, s7 = 7 * size;
    __asm__("" : "+r"(s), "+r"(s3), "+r"(s5), "+r"(s7));
    for (;;) {
        __asm__("" : "+r"(c));
        if (*(const uintptr_t *)c != c + s || *(const uintptr_t *)(c + s) != c + s * 2 ||
            *(const uintptr_t *)(c + s * 2) != c + s3 || *(const uintptr_t *)(c + s3) != c + s * 4 ||
            *(const uintptr_t *)(c + s * 4) != c + s5 || *(const uintptr_t *)(c + s5) != c + s3 * 2 ||
            *(const uintptr_t *)(c + s3 * 2) != c + s7 || *(const uintptr_t *)(c + s7) != c + s * 8)
            return c;
        c += s * 8;
        if (c <= last8) continue;
        if (c == end) return c;
        c = last8;
    }
}

/* stride_run: the run of return_to_spans_locked that starts at `first`
 * in span s, whose link p is first's neighbour in memory (first + size or
 * first - size), goes on while each object links to the next neighbour the
 * same way, within s and `*left` objects; sets *last to the run's last
 * object so far, lowers *left by what joined, and returns last's link.
 * A chain the thread's list took as it was freed in address order
 * (bench/small_nodes.c frees its nodes from the highest address down, so
 * each chain ascends) is such a run, and the walk by links is a chain of
 * dependent loads, one L1 latency an object: here each object's address is
 * known before its link is read, so the loads are independent and only
 * compared (stride_up, eight a turn, when it ascends).
 * bench/small_nodes.c's frees of 10M nodes: 27.4 -> 20.6 ms of CPU
 * (medians of 9 runs, profiler off; mimalloc 17.2), for 0.8 instructions
 * an object more (callgrind); chains in no order (st_churn,
 * mixed_realloc) pay a compare or two a run, within 0.1% of their
 * instructions (by hand). */
static void *stride_run(const span_t *s, size_t size, uintptr_t first, uintptr_t p, void **last, uint32_t *left) {
    uintptr_t d = p - first; /* size, or -size */
    /* bytes from p to the edge of s's objects in the direction d, and so
     * the objects from p on there (a division by size: s->div's multiply,
     * exact for 32-bit dividends) */
    uintptr_t room = d == size ? (p < s->limit ? s->limit - p : 0) : p - s->start + size;
    uint32_t k = (uint32_t)(((unsigned __int128)room * s->div) >> 64);
    if (k > *left) k = (uint32_t)*left;
    if (k == 0) return (void *)p;
    /* p joins; then p + d, ..., up to end, each while its predecessor's
     * link is it */
    uintptr_t c = p, end = p + (uintptr_t)(k - 1) * d;
    if (d == size && end - p >= 8 * size) c = stride_up(c, end, size);
    while (c != end && ((uintptr_t *)c)[0] == c + d) c += d;
    uint32_t joined = (uint32_t)(((unsigned __int128)(d == size ? c - first : first - c) * s->div) >> 64);
    *left -= joined;
    *last = (void *)c;
    return *(void **)c;
}

/* return_to_spans_locked: puts the first n objects of the chain at *head
 * (all of it if n is UINT32_MAX: it ends in NULL) back into their spans, and
 * leaves the rest of the chain in *head; returns the spans that became empty
 * (linked through next, after `empty`) for the caller to hand to the page
 * heap once the lock is dropped.  hint: the objects the chain holds as its
 * giver counted them (UINT32_MAX: not known), which only bounds how far a
 * stride run looks (stride_run): a chain of neighbours then ends its run
 * at its last object, in an unrolled turn, not on the NULL link after it,
 * in the loop that finishes a turn one object at a time.  A count that is
 * wrong costs a run cut short, never an object: the walk goes on by the
 * links. */
static span_t *return_to_spans_locked(central_t *ct, uint8_t cls, void **head, uint32_t n, uint32_t hint, span_t *empty) {
    void *p = *head;
    uint32_t cap = seg_cap(cls);
    while (n && p) {
        /* neighbours in a batch usually share a span: the run of them that
         * does is already linked, and goes onto the span's free list whole */
        span_t *s = ms_pagemap_lookup(p);
        ms_assert_internal(s && s->state == SPAN_INUSE && s->cls == cls);
        uintptr_t start = s->start, bytes = (size_t)s->npages << MS_PAGE_SHIFT;
        void *first = p, *last = p;
        p = *(void **)p;
        /* objects after `last` that may still join the run (UINT32_MAX - 1
         * stands for all: the chain's NULL ends the run first) */
        uint32_t left = n - 1;
        size_t size = s->size;
        if (((uintptr_t)p == (uintptr_t)first + size || (uintptr_t)p == (uintptr_t)first - size) && left > 0) {
            uint32_t most = left < hint - 1 ? left : hint - 1, was = most; /* hint 0: no bound */
            p = stride_run(s, size, (uintptr_t)first, (uintptr_t)p, &last, &most);
            left -= was - most;
        }
        uintptr_t neg = -start; /* p + neg < bytes: p lies in s (NULL wraps to far above) */
        __asm__("" : "+r"(neg)); /* kept as an add (one lea), not folded into p - start (a copy and a sub) */
        /* (a chain that steps through memory has been taken above, by
         * stride_run, as far as it steps) four objects a turn, each tested
         * before it is followed (a lea,
         * a compare and a branch: p + neg needs no copy of p), and one test
         * of the count for the four: the objects of a thread's full list
         * come back this way, 4.9 instructions each where two a turn took
         * 6.5 and one at a time 9 (callgrind on small_nodes) */
        while (left >= 4) {
            if ((uintptr_t)p + neg >= bytes) goto run_end;
            void *q1 = *(void **)p;
            if ((uintptr_t)q1 + neg >= bytes) {
                last = p, p = q1, left--;
                goto run_end;
            }
            void *q2 = *(void **)q1;
            if ((uintptr_t)q2 + neg >= bytes) {
                last = q1, p = q2, left -= 2;
                goto run_end;
            }
            void *q3 = *(void **)q2;
            if ((uintptr_t)q3 + neg >= bytes) {
                last = q2, p = q3, left -= 3;
                goto run_end;
            }
            last = q3, p = *(void **)q3, left -= 4;
        }
        while (left > 0 && (uintptr_t)p + neg < bytes) last = p, p = *(void **)p, left--;
    run_end:;
        uint32_t k = n - left;
        n = left;
        hint = hint > k ? hint - k : 0;
        seg_push(s, cap, last, k);
        *(void **)last = s->freelist;
        s->freelist = first;
        ms_assert_internal(s->allocated >= k);
        s->allocated -= k;
        /* a span that was full gets objects back: it is the fullest one
         * with room, and goes first, so that takes fill it and emptier
         * spans get time to drain back to the page heap; put last,
         * mixed_realloc's peak RSS was 0.8 MiB higher (interleaved runs,
         * by hand) */
        if (!s->in_list) ne_insert(&ct->nonempty, s);
        if (s->allocated == 0 && (size > MS_TC_MID_ABOVE || !(ct->nonempty.next == s && s->next == &ct->nonempty))) {
            ne_remove(s);
            s->next = empty;
            empty = s;
        }
    }
    *head = p;
    return empty;
}

/* free_empty: hands empty spans to the page heap, idle since idle_since_ms
 * (0: now). */
static void free_empty(span_t *empty, uint64_t idle_since_ms) {
    while (empty) {
        span_t *s = empty;
        empty = s->next;
        s->next = NULL;
        if (s->prof) ms_prof_hooks.span_done(s);
        ms_heap_free_idle_since(s, idle_since_ms);
    }
}

void (*ms_central_on_park)(void);

void ms_central_give(uint8_t cls, void *head, uint32_t n) {
    central_t *ct = &central[cls];
    ms_lock(LOCK(ct));
    ct->ops++;
    /* at least half a batch: the spare of a list of the largest classes
     * is one block (tcache.c: class_cap); a chain much shorter would make
     * a refill that takes it come back at once */
    if (2 * n >= ms_class_batch[cls] && ct->nslots < MS_SLOT_MAX && ct->slot_objs + n <= ct->max_slot_objs) {
        bool first = ct->nslots == 0;
        SLOTS(ct)[ct->nslots] = head;
        SLOT_N(ct)[ct->nslots++] = n;
        ct->slot_objs += n;
        ms_unlock(LOCK(ct));
        if (first && ms_central_on_park) ms_central_on_park();
        return;
    }
    span_t *empty = return_to_spans_locked(ct, cls, &head, UINT32_MAX, n, NULL);
    ms_unlock(LOCK(ct));
    free_empty(empty, 0);
}

void ms_central_give_idle(uint8_t cls, void *head, uint64_t idle_since_ms) {
    central_t *ct = &central[cls];
    ms_lock(LOCK(ct));
    span_t *empty = return_to_spans_locked(ct, cls, &head, UINT32_MAX, UINT32_MAX, NULL);
    ms_unlock(LOCK(ct));
    free_empty(empty, idle_since_ms);
}

/* flush_class: with ct locked, every slot goes back into its spans and the
 * kept empty span is let go; returns the spans that became empty. */
static span_t *flush_class_locked(central_t *ct, uint8_t cls) {
    span_t *empty = NULL;
    while (ct->nslots > 0) {
        uint32_t i = --ct->nslots;
        empty = return_to_spans_locked(ct, cls, &SLOTS(ct)[i], UINT32_MAX, SLOT_N(ct)[i], empty);
    }
    ct->slot_objs = 0;
    span_t *last = ct->nonempty.next; /* the one empty span give() keeps */
    if (last && last != &ct->nonempty && last->allocated == 0) {
        ne_remove(last);
        last->next = empty;
        empty = last;
    }
    return empty;
}

/* ms_central_flush_slots: every class returns its slots to their spans and
 * its idle spans to the page heap; used by memscope_free_os_memory so that
 * nothing idle hides in a central list. */
void ms_central_flush_slots(void) {
    for (int c = 1; c < MS_NUM_CLASSES; c++) {
        central_t *ct = &central[c];
        ms_lock(LOCK(ct));
        span_t *empty = flush_class_locked(ct, (uint8_t)c);
        ms_unlock(LOCK(ct));
        free_empty(empty, 0);
    }
}

/* ms_central_flush_idle: the scavenger's look, at time now_ms.  A class
 * untouched since quiet_since_ms, at least delay_ms ago, is flushed; the
 * spans it frees count as idle since then.  Returns true while some class
 * still parks objects (the scavenger should look again). */
bool ms_central_flush_idle(uint64_t now_ms, uint64_t delay_ms) {
    bool parked = false;
    for (int c = 1; c < MS_NUM_CLASSES; c++) {
        central_t *ct = &central[c];
        span_t *empty = NULL;
        uint64_t since = 0;
        ms_lock(LOCK(ct));
        if (ct->ops != ct->ops_seen) {
            ct->ops_seen = ct->ops;
            ct->quiet_since_ms = now_ms;
        } else if (now_ms - ct->quiet_since_ms >= delay_ms) {
            empty = flush_class_locked(ct, (uint8_t)c);
            since = ct->quiet_since_ms;
        }
        parked |= ct->nslots > 0;
        ms_unlock(LOCK(ct));
        free_empty(empty, since);
    }
    return parked;
}

bool ms_central_is_valid(uint8_t cls) {
    central_t *ct = &central[cls];
    ms_lock(LOCK(ct));
    bool ok = true;
    size_t size = ms_class_size[cls];
    for (span_t *s = ct->nonempty.next; s && s != &ct->nonempty && ok; s = s->next) {
        size_t nfree = 0;
        /* the segments: the first as the span says, each other as its
         * first object's word says, together the whole list */
        uint32_t seg_left = s->seg_n;
        void *seg_last = s->seg_tail;
        ok = (seg_left == 0) == (s->freelist == NULL);
        for (void *p = s->freelist; p && ok; p = *(void **)p) {
            ok = (uintptr_t)p >= s->start && (uintptr_t)p < s->start + s->used && ((uintptr_t)p - s->start) % size == 0;
            nfree++;
            if (ok && seg_left == 0) { /* p starts a segment below the first */
                uint64_t d = size >= SEG_MIN_SIZE ? ((const uint64_t *)p)[2] : 0;
                ok = (d & SEG_MARK) && (d & 0xffff) != 0;
                seg_left = (uint32_t)(d & 0xffff);
                seg_last = (void *)(s->start + (uintptr_t)((d & ~SEG_MARK) >> 16));
            }
            ok = ok && seg_left-- > 0 && (seg_left > 0 || p == seg_last);
        }
        ok = ok && seg_left == 0;
        ok = ok && s->state == SPAN_INUSE && s->cls == cls && s->in_list &&
             s->used / size == s->allocated + nfree;
    }
    ms_unlock(LOCK(ct));
    return ok;
}

void ms_central_fork_prepare(void) {
    for (int c = 1; c < MS_NUM_CLASSES; c++) ms_lock(&locks[c].m);
}
void ms_central_fork_parent(void) {
    for (int c = MS_NUM_CLASSES - 1; c >= 1; c--) ms_unlock(&locks[c].m);
}
void ms_central_fork_child(void) {
    for (int c = 1; c < MS_NUM_CLASSES; c++) ms_lock_init(&locks[c].m);
}
