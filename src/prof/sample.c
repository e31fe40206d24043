/* sample.c: what the heap profiler keeps, and the hooks that keep it.
 *
 * The allocator core draws which allocations are sampled (malloc.c: a
 * per-thread countdown with exponential gaps of mean profile_rate bytes,
 * Go's Poisson process) and calls ms_prof_hooks.  Here a sampled block
 * becomes a record: its stack is captured (stack.c), found or added in the
 * table of distinct stacks, and the block gets a record of its stack, so
 * that free can tell in O(1) whether this very block was sampled and which
 * stack to credit.  A small block's record is a word in an array hung on its
 * span (span->prof, one word per object), found through the page map, or,
 * the span's only record in sampled mode, span->prof itself (RECS_INLINE);
 * a large block's is an entry in a hash map by address.  The core only asks
 * when the block's span holds a sampled block at all (span->mark), so an
 * unsampled free never gets here.
 *
 * Records in the tail.  In leak-check mode (profile_rate=1), where every
 * block is recorded, a block of a class of up to 1024 bytes keeps its
 * record in its own last 8 bytes instead (internal.h, "Records in the
 * blocks' tails": those classes are taken 8 bytes wider for each request,
 * and malloc_usable_size and the profile's byte counts leave the 8 out).
 * An array put the records of 16 neighbouring blocks on one line, which
 * no access of the program's brought in and which two threads' mallocs
 * and frees of neighbours passed back and forth: perf on bench/larson.c
 * put most of the free hook's samples on its load, and a good part of the
 * every hook's on its store.  A block's last line is its own, and malloc
 * has just written it (sample_small writes the request there, which the
 * record shares the word with: internal.h).  Every span of
 * those classes is then a tail span, closed from its start, so the every
 * hook's common case no longer looks the block's span up at all; the
 * mode is taken only if no span of those classes is in use when the
 * profiler sets its hooks (tail_before: so in a debug build, which loads
 * libunwind first, it is not), else every record goes in arrays, as the
 * larger classes' still do.  By hand, callgrind at profile_rate=1:
 * instructions st_churn -5.7%, larson -5.2%, prodcons -3.9%; first-level
 * data cache misses on st_churn -22% (cachegrind); CPU time st_churn -3
 * to -4%, larson and prodcons within their noise on the shared machine.
 *
 * Counts.  Each stack keeps raw counts (the samples themselves, what Go's
 * debug=1 text prints) and weighted ones: a sample of S bytes at rate R
 * stands for 1/(1-exp(-S/R)) allocations, the inverse of the chance that a
 * block of S bytes is drawn at all, so sums of weights are unbiased
 * estimates of the program's true totals (Go applies the same factor when it
 * writes a profile; applying it per sample keeps stacks of mixed sizes
 * unbiased too).  At rate 1 every weight is exactly 1, so there only the
 * raw counts are kept and a snapshot copies them into the weighted ones
 * (account_exact: half the work of each count in leak-check mode).
 *
 * The peak profile.  The estimated in-use bytes (sum of the weights of live
 * samples times their sizes) has a high-water mark; the peak profile is
 * every stack's counts at that moment.  Copying all stacks at each new high
 * would cost O(stacks) per allocation while the heap grows, so the copy is
 * lazy: a new high bumps a generation number, and a stack's counts are
 * saved into its peak copy the first time the stack changes after a bump.
 * A stack whose saved generation is the current one has its peak in the
 * copy; any other stack has not changed since the peak, so its current
 * counts are its peak counts.  O(1) per sample, exact for the estimate.
 * While the heap grows every malloc is a new peak, so the peak's time is
 * kept in ticks (ms_os_ticks: the TSC, one instruction, where it is
 * invariant) and made a wall time when a snapshot reads it; the coarse
 * clock it was read from before cost a call into the vDSO per malloc.
 *
 * Memory.  Stacks, their frames, the hash index, the spans' record arrays
 * and the map of large blocks live in pages mapped for them (ms_meta_alloc,
 * ms_fixalloc_alloc, ms_os_alloc), never in the heap
 * being profiled, and count as metadata in the stats: the chunks of stacks
 * and frames (1.6 MiB mapped at the first sample) as they fill, since their
 * pages become resident only then, so that a program's metadata in use is
 * not megabytes it never touched.  Stacks and frames are
 * never freed, so snapshots point at frames without copying them.  The table
 * holds at most MS_PROF_MAX_STACKS stacks; past that, samples go to one
 * "(stack table full)" record and one warning is printed.
 *
 * Locking.  No lock is global to the hot path any more: at profile_rate=1
 * (leak-check mode) every malloc and free of a multi-threaded program comes
 * here, and one mutex over everything had threads queueing in futex waits
 * (perf showed larson's threads waiting there in leak-check mode).  Four kinds:
 *   - stacks are looked up without a lock: a stack's identity is written
 *     once, before a release store publishes its index slot, and the index
 *     never moves (growth publishes a copy and keeps the old table); only
 *     adding a stack takes intern_lock;
 *   - a small block's record is under the spin lock of its span's record
 *     array (rec_lock), or in leak-check mode a plain atomic word of a
 *     sticky array (below), or a span's only record, inline in span->prof,
 *     put and taken by compare-and-swap; a large block's under big_lock;
 *     the arrays' free lists under 16 locks striped by span address, and
 *     new arrays under pool_lock;
 *   - the counts, the in-use estimate, the peak generation and the leak
 *     checker's log are under tally.lock, held for a few adds: the peak logic
 *     needs one order of all changes to the in-use total, and this lock is
 *     that order (in leak-check mode, threads bring their counts to it in
 *     batches, appended with no lock where membarrier exists, else under
 *     the batch's own lock: see Batches below);
 *   - a snapshot holds tally.lock for the copy of 1024 stacks at a time.
 * All are lock.c's one-word mutex but the record arrays' spin locks.  A
 * hook captures the stack (inline, stack.h) before taking any lock, and
 * holds at most a batch's lock and then tally.lock (only a fork takes them
 * all).
 * Nothing here takes an allocator lock while holding one, and nothing that
 * holds an allocator lock calls here.
 */
#include "prof.h"
#include "stack.h"

#include <errno.h>
#include <linux/membarrier.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CHUNK_STACKS 4096u
#define SNAP_CHUNK 1024u /* stacks copied per hold of the lock by a snapshot */
#define FRAME_CHUNK ((size_t)1 << 20) /* bytes of frames per chunk */

typedef struct pstack_s {
    uint64_t hash;
    uintptr_t *pcs;
    uint32_t npcs;
    bool truncated;
    uint32_t peak_gen;   /* generation whose peak is saved in .peak */
    prof_counts_t now, peak;
} pstack_t;

/* A sampled large block (the hash map below): 16 bytes.  Sizes up to 2 GiB
 * are kept in bytes, larger ones in 8 KiB pages (memscope hands out such
 * blocks in whole pages) with the top bit set. */
typedef struct block_s {
    uintptr_t addr;      /* 0: empty slot */
    uint32_t stack;
    uint32_t size;
} block_t;

#define BIG_SIZE 0x80000000u
static inline uint32_t size_pack(uint64_t size) {
    return size < BIG_SIZE ? (uint32_t)size : BIG_SIZE | (uint32_t)(size >> MS_PAGE_SHIFT);
}
static inline uint64_t size_unpack(uint32_t v) {
    return v & BIG_SIZE ? (uint64_t)(v & ~BIG_SIZE) << MS_PAGE_SHIFT : v;
}

/* The sampled blocks of one small span: a word per object, the stack id
 * plus one (0: not sampled), hung on the span (span->prof).  Its size is the
 * class's, so it needs no field.  Arrays come in powers of two from 64 bytes
 * (the spans of 1024 objects, of the 16- and 32-byte classes, need 4120
 * bytes, the most of any class: tools/mksizeclasses.c).
 *
 * Two kinds.  A counted array (sampled mode: a span's second record makes
 * one of it and the first, inline till then, RECS_INLINE) goes with its
 * last record, so that a heap with a few hundred samples keeps a few
 * hundred arrays at most; its words change under its lock.  A sticky array (hung while profile_rate is
 * 1, leak-check mode, where every block of the span is recorded anyway,
 * for a class above 1024 bytes, whose blocks keep no record in the tail)
 * stays until the span leaves use (on_span_done, called by the core),
 * and its words change with plain atomic stores, no lock: a block's word is
 * written by its malloc and cleared by its free, never by two threads at
 * once, and the array cannot go while a block of the span is out.  Counted,
 * a producer-consumer program freed and rebuilt the array of every span
 * it drained, and its records took the array's lock on both CPUs: 35% of
 * prodcons' time in leak-check mode (perf). */
typedef struct srecs_s {
    _Atomic int lock;    /* spin lock (counted arrays); kept through reuse (see rec_lock) */
    uint32_t live;       /* counted: entries not 0; the array goes with the last */
    uint32_t nobj;       /* objects of the span */
    uint16_t pool;       /* index of its size in srecs_size */
    bool sticky;         /* set before the array is hung, never changed until it is freed */
    struct srecs_s *next; /* on its stripe's free list */
    uint32_t id[];
} srecs_t;
#define SRECS_POOLS 8    /* 64 B .. 8 KiB: a span holds up to 1024 objects (tools/mksizeclasses.c) */

/* The locks (see Locking above), none ever held with another (but by a
 * fork, which takes them all). */
static ms_lock_t intern_lock; /* adding stacks */
static ms_lock_t big_lock;                  /* the map of large blocks */
/* The free lists of small blocks' record arrays, in 16 stripes by span
 * address (a new array comes from another stripe's list when its own has
 * none of the size: srecs_new).  Arrays freed go on the stripe's free
 * lists, never back to the fixalloc, whose reuse would clear their lock
 * words (see rec_lock).  A
 * free list is pushed without the lock (a compare-and-swap) and popped
 * under it, so pops never race each other (no ABA): a span leaving use in
 * a fork child's flush of the caches, before this file's child handler has
 * released the stripes' locks, hands its array back (on_span_done). */
#define STRIPES 16
typedef struct stripe_s {
    _Alignas(64) ms_lock_t lock;
    _Atomic(srecs_t *) free[SRECS_POOLS];
} stripe_t;
static stripe_t stripes[STRIPES];
/* New arrays, when a stripe's free list has none of the size, come from
 * one fixalloc per size for all stripes, under pool_lock (taken only
 * while the number of arrays grows).  A fixalloc per
 * stripe and size took a 64 KiB chunk for each pair used and made its
 * first page resident: a small program with a few dozen samples held 34
 * such chunks, 136 KiB of RSS for records that fit in a few pages. */
static ms_lock_t pool_lock;
static fixalloc_t pools[SRECS_POOLS];
static bool enabled;
static double rate_d;
/* exact: profile_rate is 1 (leak-check mode): every weight is 1, so a
 * stack's weighted counts are its raw ones, which a snapshot copies into
 * them; the counting itself keeps only the raw ones (account) */
static bool exact;

/* Stacks: an array of chunk pointers.  A stack's identity (hash, frames) is
 * written once, before it is published by the index slot and by nstacks
 * (release stores), and never changes: readers use it with no lock. */
static pstack_t *chunks[MS_PROF_MAX_STACKS / CHUNK_STACKS];
static _Atomic uint32_t nstacks;
static uint32_t full_id = UINT32_MAX; /* the "(stack table full)" record */
/* The hash index (hash -> stack id + 1; 0 empty).  Growth copies it into a
 * table twice the size and publishes that; the old table is kept, never
 * freed or written again, since a lookup without the lock may still be
 * reading it (it misses only the stacks added since, and then takes the
 * lock).  The tables kept sum to less than the current one. */
typedef struct index_s {
    size_t cap;
    _Atomic uint32_t slot[];
} index_t;
static _Atomic(index_t *) index_cur;
static uintptr_t *frames;             /* current frame chunk (intern_lock) */
static size_t frames_left;

static block_t *blocks;                 /* large blocks (big_lock) */
static size_t blocks_cap;
static _Atomic size_t nblocks;          /* read without the lock: none, skip the map */
static const uint32_t srecs_size[SRECS_POOLS] = {64, 128, 256, 512, 1024, 2048, 4096, 8192};

/* What tally.lock covers, with the lock in one cache line: the lock's line
 * moves between CPUs with every sample and every free, and should be the
 * only one that does besides the stack's counts. */
static struct {
    _Alignas(64) ms_lock_t lock;
    uint32_t gen;              /* bumped at each new peak */
    double inuse_w, peak_w;    /* estimated in-use bytes now, and at the peak */
    uint64_t peak_ticks;       /* when the peak was reached (ms_os_ticks) */
    /* The leak checker's list of blocks recorded while a check runs (see
     * ms_prof_log_start); log_buf NULL when no check runs. */
    uintptr_t *log_buf;
    size_t log_cap, log_n;
    bool log_over;
} tally;

static inline pstack_t *stack_at(uint32_t id) { return &chunks[id / CHUNK_STACKS][id % CHUNK_STACKS]; }

static uint64_t hash_pcs(const uintptr_t *pcs, int n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)n;
    for (int i = 0; i < n; i++) {
        h ^= pcs[i];
        h *= 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    return h ? h : 1;
}

static inline size_t hash_addr(uintptr_t a) { return (size_t)((a >> 4) * 0x9E3779B97F4A7C15ull >> 20); }

static inline stripe_t *stripe_of(const span_t *s) {
    return &stripes[(uint64_t)(uintptr_t)s * 0x9E3779B97F4A7C15ull >> 60];
}

/* ------------------------------------------------------------------------
 * The table of stacks (intern_lock to add; lookups need none)
 * ---------------------------------------------------------------------- */

static bool index_grow(void) {
    index_t *old = atomic_load_explicit(&index_cur, memory_order_relaxed);
    /* the first table, 512 slots, fits one page with its header: a
     * process that samples a few stacks hashes them anywhere in it (at
     * 4,096 slots, two or more pages of 4 were resident for a handful) */
    size_t ocap = old ? old->cap : 0, cap = ocap ? ocap * 2 : 512;
    size_t bytes = sizeof(index_t) + cap * sizeof(uint32_t);
    index_t *t = ms_os_alloc(bytes);
    if (!t) return false;
    t->cap = cap;
    for (size_t i = 0; i < ocap; i++) {
        uint32_t id = atomic_load_explicit(&old->slot[i], memory_order_relaxed);
        if (!id) continue;
        size_t j = stack_at(id - 1)->hash & (cap - 1);
        while (atomic_load_explicit(&t->slot[j], memory_order_relaxed)) j = (j + 1) & (cap - 1);
        atomic_store_explicit(&t->slot[j], id, memory_order_relaxed);
    }
    atomic_fetch_add(&ms_meta_sys, bytes);
    atomic_fetch_add(&ms_meta_inuse, bytes);
    atomic_store_explicit(&index_cur, t, memory_order_release);
    return true;
}

/* index_find: the id of stack pcs[0..n) of hash h in t, or UINT32_MAX with
 * *at the empty slot that ends the probe.  Safe without the lock: a slot
 * once set never changes, and its stack was written before it was set. */
static uint32_t index_find(const index_t *t, const uintptr_t *pcs, int n, uint64_t h, size_t *at) {
    size_t j = h & (t->cap - 1);
    for (uint32_t id; (id = atomic_load_explicit(&t->slot[j], memory_order_acquire)) != 0; j = (j + 1) & (t->cap - 1)) {
        const pstack_t *s = stack_at(id - 1);
        if (s->hash == h && s->npcs == (uint32_t)n && memcmp(s->pcs, pcs, (size_t)n * sizeof *pcs) == 0)
            return id - 1;
    }
    *at = j;
    return UINT32_MAX;
}

/* new_stack: appends a stack (frames copied); UINT32_MAX when out of room.
 * intern_lock held; published in nstacks here, in the index by the caller. */
static uint32_t new_stack(const uintptr_t *pcs, int n, bool truncated, uint64_t h) {
    uint32_t id = atomic_load_explicit(&nstacks, memory_order_relaxed);
    if (id >= MS_PROF_MAX_STACKS) return UINT32_MAX;
    if (id % CHUNK_STACKS == 0 && !chunks[id / CHUNK_STACKS]) {
        chunks[id / CHUNK_STACKS] = ms_meta_sparse(CHUNK_STACKS * sizeof(pstack_t));
        if (!chunks[id / CHUNK_STACKS]) return UINT32_MAX;
    }
    if (frames_left < (size_t)n) {
        frames = ms_meta_sparse(FRAME_CHUNK);
        if (!frames) return frames_left = 0, UINT32_MAX;
        frames_left = FRAME_CHUNK / sizeof *frames;
    }
    pstack_t *s = stack_at(id);
    memset(s, 0, sizeof *s);
    s->hash = h;
    s->pcs = frames;
    s->npcs = (uint32_t)n;
    s->truncated = truncated;
    memcpy(frames, pcs, (size_t)n * sizeof *pcs);
    frames += n;
    frames_left -= (size_t)n;
    ms_meta_use(sizeof *s + (size_t)n * sizeof *pcs);
    atomic_store_explicit(&nstacks, id + 1, memory_order_release);
    return id;
}

/* stack_intern: the id of stack pcs[0..n), added if new; UINT32_MAX when
 * memory for it is refused.  A stack seen before (nearly every sample) is
 * found in the index with no lock taken. */
static uint32_t stack_intern(const uintptr_t *pcs, int n, bool truncated) {
    uint64_t h = hash_pcs(pcs, n);
    size_t j;
    index_t *t = atomic_load_explicit(&index_cur, memory_order_acquire);
    uint32_t id = t ? index_find(t, pcs, n, h, &j) : UINT32_MAX;
    if (id != UINT32_MAX) return id;
    ms_lock(&intern_lock);
    uint32_t ns = atomic_load_explicit(&nstacks, memory_order_relaxed);
    t = atomic_load_explicit(&index_cur, memory_order_relaxed);
    if ((!t || (ns + 1) * 2 > t->cap) && !index_grow()) goto out;
    t = atomic_load_explicit(&index_cur, memory_order_relaxed);
    if ((id = index_find(t, pcs, n, h, &j)) != UINT32_MAX) goto out; /* added meanwhile */
    id = new_stack(pcs, n, truncated, h);
    if (id == UINT32_MAX) {
        /* Out of memory for a chunk of stacks or frames, not out of room:
         * drop this sample (the caller does) and leave the table as it is.
         * Taking the "table full" path here once rewound nstacks below a
         * small count and then set it to the maximum, so later stacks were
         * written into chunks never mapped (a SIGSEGV under mmap failure). */
        if (ns < MS_PROF_MAX_STACKS) goto out;
        if (full_id == UINT32_MAX) {
            ms_warn("memscope: heap profile: more than %u distinct stacks; further new stacks are counted as "
                    "\"(stack table full)\"", MS_PROF_MAX_STACKS);
            /* the one overflow record, kept in the last slot */
            atomic_store_explicit(&nstacks, MS_PROF_MAX_STACKS - 1, memory_order_relaxed);
            full_id = new_stack(pcs, 0, false, 0);
        }
        id = full_id;
        goto out;
    }
    atomic_store_explicit(&t->slot[j], id + 1, memory_order_release);
out:
    ms_unlock(&intern_lock);
    return id;
}

/* ------------------------------------------------------------------------
 * Sampled blocks: open addressing, linear probing, backward-shift deletion
 * ---------------------------------------------------------------------- */

static bool blocks_grow(void) {
    size_t cap = blocks_cap ? blocks_cap * 2 : 8192;
    block_t *t = ms_os_alloc(cap * sizeof *t);
    if (!t) return false;
    for (size_t i = 0; i < blocks_cap; i++) {
        if (!blocks[i].addr) continue;
        size_t j = hash_addr(blocks[i].addr) & (cap - 1);
        while (t[j].addr) j = (j + 1) & (cap - 1);
        t[j] = blocks[i];
    }
    ms_os_free(blocks, blocks_cap * sizeof *blocks);
    atomic_fetch_add(&ms_meta_sys, (cap - blocks_cap) * sizeof *t);
    atomic_fetch_add(&ms_meta_inuse, (cap - blocks_cap) * sizeof *t);
    blocks = t;
    blocks_cap = cap;
    return true;
}

static block_t *block_find(uintptr_t a) {
    if (!blocks_cap) return NULL;
    for (size_t j = hash_addr(a) & (blocks_cap - 1);; j = (j + 1) & (blocks_cap - 1)) {
        if (blocks[j].addr == a) return &blocks[j];
        if (!blocks[j].addr) return NULL;
    }
}

static void block_remove(block_t *b) {
    size_t mask = blocks_cap - 1, i = (size_t)(b - blocks), j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!blocks[j].addr) break;
        size_t home = hash_addr(blocks[j].addr) & mask;
        /* move j back into the hole at i unless its home lies in (i, j] */
        if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
            blocks[i] = blocks[j];
            i = j;
        }
    }
    blocks[i].addr = 0;
    nblocks--;
}

static bool block_insert(uintptr_t a, uint32_t stack, uint64_t size) {
    if ((nblocks + 1) * 10 > blocks_cap * 7 && !blocks_grow()) return false; /* load <= 0.7 */
    size_t j = hash_addr(a) & (blocks_cap - 1);
    while (blocks[j].addr) j = (j + 1) & (blocks_cap - 1);
    blocks[j] = (block_t){.addr = a, .stack = stack, .size = size_pack(size)};
    nblocks++;
    return true;
}

/* ------------------------------------------------------------------------
 * Records of sampled blocks (their array's lock or big_lock).  Small blocks are found through
 * their span, so the records of neighbouring blocks share cache lines and
 * a sample costs no probe into a table the size of the heap (at
 * profile_rate=1 a map of every live block was most of the cost: a cache
 * miss on each malloc and each free).  Large blocks, one per span and never
 * many, keep the hash map, which also follows them when realloc moves
 * their pages to another span.
 * ---------------------------------------------------------------------- */

/* small_span: the small span in use that holds a, or NULL. */
ms_inline span_t *small_span(uintptr_t a) {
    span_t *s = ms_pagemap_lookup((const void *)a);
    return s && s->cls && s->state == SPAN_INUSE && a - s->start < s->limit - s->start ? s : NULL;
}

static inline uint32_t obj_of(const span_t *s, uintptr_t a) {
    return (uint32_t)(((a - s->start) * ms_class_magic[s->cls]) >> MS_MAGIC_SHIFT);
}

/* A small span's record array has a spin lock of its own, in the line
 * that holds the span's first records: one line moves between CPUs per
 * record, where a lock apart from the data (a stripe's) cost a second miss,
 * and at profile_rate=1 with frees from other threads it missed nearly
 * every time.  An array's memory stays an array for good (its stripe's free
 * lists), so a thread that read span->prof just before the array was freed
 * and reused locks a valid lock, sees span->prof changed, and retries.
 * span->prof changes only from NULL (compare-and-swap, the array already
 * holding its first record) and to NULL (under the array's lock). */
/* A held lock word holds the process's fork generation (rec_gen), a free
 * one 0.  A fork child starts a new generation, and a word left holding an
 * older one was held by a thread the child does not have: it counts as
 * free.  So the child need not find every array (a walk of the whole page
 * map cost 9 ms per fork, in every child of a forking program). */
static _Atomic int rec_gen = 1;

static inline void rec_lock(srecs_t *r) {
    int g = atomic_load_explicit(&rec_gen, memory_order_relaxed);
    for (unsigned spins = 0;;) {
        int v = atomic_load_explicit(&r->lock, memory_order_relaxed);
        if (v != g && atomic_compare_exchange_weak_explicit(&r->lock, &v, g, memory_order_acquire, memory_order_relaxed))
            return;
        if (v != g) continue; /* the compare-and-swap lost a race or failed spuriously */
        if (++spins % 64 == 0) sched_yield(); /* its holder may be preempted */
        else ms_spin_pause();
    }
}
static inline void rec_unlock(srecs_t *r) { atomic_store_explicit(&r->lock, 0, memory_order_release); }

/* A sticky array is hung with bit 0 of span->prof set, so that a record
 * of leak-check mode is found from the span's first line (which free has
 * read already) and the line of its word, never the array's header: the
 * header's line was a cache miss on most mallocs and frees (callgrind's
 * cache simulation, st_churn), read only to learn the array sticky. */
#define RECS_STICKY ((uintptr_t)1)
/* A span's only record, in sampled mode, is kept in span->prof itself,
 * with bit 1 set: its block's number (bits 2 to 31) and its stack id plus
 * one (the high half).  At the default rate a sampled block is nearly
 * always the only one of its span (bench/alloc_test.c: 4-15 KiB blocks,
 * spans of a few of them), and an array for it cost each sample a
 * stripe's lock, a pop, a clear of the array's words, a compare-and-swap
 * to hang it, and the free the array's spin lock and a push back: 230
 * instructions of the 1,600 a sample and its free cost there (callgrind,
 * by hand).  Inline, the record is put by one compare-and-swap from 0
 * and taken by one back to 0; a second record in the span makes an array
 * of both (rec_put_slow), which then stays until its last record goes, as
 * before.  The value names the block and the stack, so a compare-and-swap
 * that succeeds saw the state it meant to change: the block's record can
 * only be taken by its free, and put again only by its next malloc. */
#define RECS_INLINE ((uintptr_t)2)
static inline uintptr_t rec_inline(uint32_t i, uint32_t stack) {
    return (uintptr_t)(stack + 1) << 32 | (uintptr_t)i << 2 | RECS_INLINE;
}
static inline uint32_t inline_obj(uintptr_t v) { return (uint32_t)v >> 2; }
static inline uint32_t inline_id(uintptr_t v) { return (uint32_t)(v >> 32); } /* stack id plus one */
static inline uintptr_t span_prof(span_t *s) { return __atomic_load_n((uintptr_t *)&s->prof, __ATOMIC_ACQUIRE); }
/* span_recs: s's array, or NULL: none, or an inline record */
static inline srecs_t *span_recs(span_t *s) {
    uintptr_t v = span_prof(s);
    return v & RECS_INLINE ? NULL : (srecs_t *)(v & ~RECS_STICKY);
}
/* span_sticky: s's array if it is sticky, else NULL.  A sticky array stays
 * until s leaves use, so a caller that holds a block of s may use it. */
static inline srecs_t *span_sticky(span_t *s) {
    uintptr_t v = __atomic_load_n((uintptr_t *)&s->prof, __ATOMIC_ACQUIRE);
    return v & RECS_STICKY ? (srecs_t *)(v & ~RECS_STICKY) : NULL;
}

/* hook_deep: the sampled hook (record) left its common path: see record */
static __thread bool hook_deep __attribute__((tls_model("initial-exec")));

/* srecs_new: an empty array for span s of nobj objects; NULL if memory is
 * refused. */
__attribute__((noinline)) static srecs_t *srecs_pop(stripe_t *st, unsigned k) {
    ms_lock(&st->lock);
    srecs_t *r = atomic_load_explicit(&st->free[k], memory_order_acquire);
    while (r && !atomic_compare_exchange_weak_explicit(&st->free[k], &r, r->next, memory_order_acquire,
                                                       memory_order_acquire))
        ;
    ms_unlock(&st->lock);
    return r;
}

__attribute__((noinline)) static srecs_t *srecs_new(stripe_t *st, uint32_t nobj, bool sticky) {
    /* deeper frames than record's common path, whichever way the array
     * comes (srecs_pop's own frame and lock, or the fixalloc): rare in
     * sampled mode, where a span's only record is inline (rec_put_slow),
     * and once a span in leak-check mode */
    hook_deep = true;
    unsigned k = 0;
    while (k < SRECS_POOLS && srecs_size[k] < sizeof(srecs_t) + (size_t)nobj * sizeof(uint32_t)) k++;
    if (k == SRECS_POOLS) return NULL;
    /* the stripe's own free list first, then the others' (one lock at a
     * time), before a new array: spans come and go over all stripes, and
     * with each stripe keeping what was freed on it, a program whose few
     * live samples moved from span to span had every stripe grow its own
     * arrays (st_churn: 60 KiB of arrays resident for about ten live
     * samples, by hand) */
    srecs_t *r = srecs_pop(st, k);
    for (unsigned i = 1; !r && i < STRIPES; i++) {
        stripe_t *o = &stripes[(unsigned)(st - stripes + i) % STRIPES];
        if (atomic_load_explicit(&o->free[k], memory_order_relaxed)) r = srecs_pop(o, k);
    }
    if (r) {
        atomic_fetch_add_explicit(&ms_meta_inuse, srecs_size[k], memory_order_relaxed);
        memset(r->id, 0, (size_t)nobj * sizeof(uint32_t));
    } else {
        /* a new array is zero already (fresh pages: ms_fixalloc_alloc),
         * and left untouched past the header it becomes resident only
         * where records are written: cleared here, every sample in a span
         * of 1024 objects made two pages resident (its 4120 bytes come
         * from the 8 KiB pool), where the header's page and the record's
         * are one in all but the last 6 of its 1024 slots.  small_nodes
         * (10M nodes, about 610 samples): 1200 page faults and 4.7 MiB of
         * peak RSS for its arrays, about half that now.
         * A sticky array (leak-check mode, one per span in use) is
         * left so too: the library is bound at load (Makefile: -z now),
         * so no first call through its memset entry, here or in calloc,
         * saves registers deep in the stack. */
        ms_lock(&pool_lock);
        r = ms_fixalloc_alloc(&pools[k]);
        ms_unlock(&pool_lock);
        if (!r) return NULL;
    }
    r->live = 0, r->nobj = nobj, r->pool = (uint16_t)k, r->sticky = sticky, r->next = NULL;
    return r;
}

static void srecs_free(stripe_t *st, srecs_t *r) {
    _Atomic(srecs_t *) *head = &st->free[r->pool];
    atomic_fetch_sub_explicit(&ms_meta_inuse, srecs_size[r->pool], memory_order_relaxed);
    srecs_t *old = atomic_load_explicit(head, memory_order_relaxed);
    do r->next = old;
    while (!atomic_compare_exchange_weak_explicit(head, &old, r, memory_order_release, memory_order_relaxed));
}

static inline uint32_t rec_word(const srecs_t *r, uint32_t i) { return __atomic_load_n(&r->id[i], __ATOMIC_RELAXED); }
static inline void rec_word_set(srecs_t *r, uint32_t i, uint32_t v) { __atomic_store_n(&r->id[i], v, __ATOMIC_RELAXED); }

/* Records in the tail (leak-check mode; internal.h, ms_span_tail): the
 * last word of block a of `size` bytes, its stack id plus one in the low
 * half, 0 if the block was not recorded, and the request in the high half
 * (malloc writes it first, with no record: sample_small; the record is
 * stored into the low half, tail_mark).  A word read from a block the
 * reader does not own (the leak checker's), or one a program overran, may
 * hold anything: tail_id takes it only if it names a stack. */
static inline uint64_t tail_get(uintptr_t a, uint64_t size) {
    return __atomic_load_n(ms_tail_word(a, size), __ATOMIC_RELAXED);
}
static inline void tail_set(uintptr_t a, uint64_t size, uint64_t v) { __atomic_store_n(ms_tail_word(a, size), v, __ATOMIC_RELAXED); }
/* tail_mark: the record rec (stack id plus one) into the low half of
 * block a's tail, which malloc left 0 under the request: a store of that
 * half alone (may_alias: the word is read whole elsewhere), where the
 * every hook read the word back and or'ed the record in, 5 instructions a
 * malloc more with the registers it held (callgrind, bench/larson.c, by
 * hand).  A reader of the whole word (the leak checker's, another
 * thread's) sees the record or not, as with the whole word's store. */
typedef uint32_t __attribute__((may_alias)) tail_half_t;
static inline void tail_mark(uintptr_t a, uint64_t size, uint32_t rec) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    __atomic_store_n((tail_half_t *)(void *)ms_tail_word(a, size), rec, __ATOMIC_RELAXED);
#else
    tail_set(a, size, tail_get(a, size) | rec);
#endif
}
static inline bool tail_id(uint64_t v, uint32_t *stack) {
    uint32_t id = (uint32_t)v - 1; /* the request's half left out */
    if (id >= atomic_load_explicit(&nstacks, memory_order_acquire)) return false; /* 0: not recorded */
    *stack = id;
    return true;
}


/* tail_put: rec_put of a record in the tail (s: a tail span), apart:
 * rec_put_slow's code runs in sampled mode too */
__attribute__((noinline)) static bool tail_put(uintptr_t a, span_t *s, uint32_t stack) {
    uint64_t v = tail_get(a, s->size); /* the request, from malloc */
    ms_assert_internal((uint32_t)v == 0);
    tail_set(a, s->size, v | ((uint64_t)stack + 1));
    return true;
}

/* rec_put: records block a (stack, size); false if memory for the record
 * is refused.  Takes a's array's lock (counted) or the large blocks' lock.
 * *span: a's small span (NULL: a large block), for the caller's use.
 * Inline, a word stored in a sticky array (every record of leak-check mode
 * but a span's first); rec_put_slow for the rest.  One function, it saved
 * and restored six registers for the slow path's sake on every record. */
static bool rec_put_slow(uintptr_t a, uint32_t stack, uint64_t size, span_t *s);
ms_inline bool rec_put(uintptr_t a, uint32_t stack, uint64_t size, span_t **span) {
    span_t *s = *span = small_span(a);
    srecs_t *k;
    if (ms_likely(s != NULL && (k = span_sticky(s)) != NULL)) {
        uint32_t i = obj_of(s, a);
        ms_assert_internal(i < k->nobj && rec_word(k, i) == 0);
        rec_word_set(k, i, stack + 1);
        return true;
    }
    return rec_put_slow(a, stack, size, s);
}
static bool rec_put_slow(uintptr_t a, uint32_t stack, uint64_t size, span_t *s) {
    if (!s) {
        hook_deep = true;
        ms_lock(&big_lock);
        bool ok = block_insert(a, stack, size);
        ms_unlock(&big_lock);
        return ok;
    }
    if (ms_span_tail(s)) return tail_put(a, s, stack);
    /* a small block's record stays shallow (record) unless it needs an
     * array (srecs_new): every sample of sampled mode comes here, and
     * called deep, each cleared 4 KiB of stack */
    uint32_t i = obj_of(s, a);
    bool sticky = atomic_load_explicit(&ms_sample_rate, memory_order_relaxed) == 1;
    for (;;) {
        uintptr_t v = span_prof(s);
        if (v == 0 && !sticky) { /* the span's only record: inline (RECS_INLINE) */
            if (__atomic_compare_exchange_n((uintptr_t *)&s->prof, &v, rec_inline(i, stack), false, __ATOMIC_RELEASE,
                                            __ATOMIC_RELAXED))
                return true;
            continue;
        }
        srecs_t *r = v & RECS_INLINE ? NULL : (srecs_t *)(v & ~RECS_STICKY);
        if (!r) { /* none (sticky), or an inline record: an array with it */
            stripe_t *st = stripe_of(s);
            if (!(r = srecs_new(st, (uint32_t)((s->limit - s->start) / s->size), sticky))) return false;
            r->id[i] = stack + 1;
            r->live = 1;
            if (v & RECS_INLINE) {
                ms_assert_internal(inline_obj(v) != i && inline_obj(v) < r->nobj);
                r->id[inline_obj(v)] = inline_id(v);
                r->live = 2;
            }
            uintptr_t hung = (uintptr_t)r | (sticky ? RECS_STICKY : 0);
            if (__atomic_compare_exchange_n((uintptr_t *)&s->prof, &v, hung, false, __ATOMIC_RELEASE, __ATOMIC_RELAXED))
                return true;
            srecs_free(st, r); /* another thread changed it first */
            continue;
        }
        /* r may be a counted array freed and hung again since it was read;
         * if s holds it now, it is s's, and a sticky one stays */
        if (r->sticky && span_recs(s) == r) {
            ms_assert_internal(i < r->nobj && rec_word(r, i) == 0);
            rec_word_set(r, i, stack + 1);
            return true;
        }
        rec_lock(r);
        if (span_recs(s) != r || r->sticky) { /* freed meanwhile, or sticky since */
            rec_unlock(r);
            continue;
        }
        ms_assert_internal(i < r->nobj && r->id[i] == 0);
        r->id[i] = stack + 1;
        r->live++;
        rec_unlock(r);
        return true;
    }
}

/* tail_take: rec_take of a record in the tail (s: a tail span), apart:
 * rec_take's code runs in sampled mode too.  tail: a's last word as the
 * caller read it, before the block went on a free list (free), or NULL:
 * read here. */
__attribute__((noinline)) static bool tail_take(uintptr_t a, span_t *s, uint32_t *stack, uint64_t *size,
                                                const uint64_t *tail) {
    if (!tail_id(tail ? *tail : tail_get(a, s->size), stack)) return false;
    *size = s->size - MS_TAIL; /* the usable bytes, as counted */
    return true;
}

/* rec_take: the record of block a, its stack and size, removed if `remove`;
 * false if none.  A large block starts a page: the map is asked first for
 * such an address, since after realloc moved a large block's pages its old
 * address may already lie in a small span.  Without `remove` the caller
 * (the leak checker) need not own the block: a sticky array read as its
 * span leaves use gives a stale word, which the caller's block was not.
 * hint: a's span in use, checked by the caller (free), or NULL: a small
 * one spares a second walk of the page map.  A record in the tail is read
 * from the block (tail_take), and left in place when removed: no one reads
 * a free block's, and its next malloc clears it.  big_take: the first
 * step, the large blocks' map.
 * on_freed takes a word of a sticky array (a free in leak-check mode)
 * itself, inline. */
ms_inline bool big_take(uintptr_t a, uint32_t *stack, uint64_t *size, bool remove) {
    if ((a & MS_PAGE_MASK) == 0 && atomic_load_explicit(&nblocks, memory_order_relaxed)) {
        ms_lock(&big_lock);
        block_t *b = block_find(a);
        if (b) {
            *stack = b->stack, *size = size_unpack(b->size);
            if (remove) block_remove(b);
        }
        ms_unlock(&big_lock);
        if (b) return true;
    }
    return false;
}
static bool rec_take(uintptr_t a, uint32_t *stack, uint64_t *size, bool remove, span_t *hint) {
    if (big_take(a, stack, size, remove)) return true;
    span_t *s = hint && hint->cls ? hint : small_span(a);
    if (!s) return false;
    if (ms_span_tail(s)) return tail_take(a, s, stack, size, NULL);
    uint32_t i = obj_of(s, a);
    srecs_t *k;
    if (remove && (k = span_sticky(s)) != NULL) { /* the caller's block: s stays in use */
        uint32_t v = rec_word(k, i);
        if (v == 0) return false;
        *stack = v - 1, *size = s->size;
        rec_word_set(k, i, 0);
        return true;
    }
    for (;;) {
        uintptr_t w = span_prof(s);
        if (w & RECS_INLINE) { /* the span's only record */
            if (inline_obj(w) != i) return false;
            *stack = inline_id(w) - 1, *size = s->size;
            if (remove && !__atomic_compare_exchange_n((uintptr_t *)&s->prof, &w, 0, false, __ATOMIC_RELEASE,
                                                       __ATOMIC_RELAXED))
                continue; /* an array made of it meanwhile */
            return true;
        }
        srecs_t *r = (srecs_t *)(w & ~RECS_STICKY);
        if (!r) return false;
        if (r->sticky && span_recs(s) == r) {
            uint32_t v = i < r->nobj ? rec_word(r, i) : 0;
            if (v == 0) return false;
            *stack = v - 1, *size = s->size;
            if (remove) rec_word_set(r, i, 0);
            return true;
        }
        rec_lock(r);
        if (span_recs(s) != r || r->sticky) {
            rec_unlock(r);
            continue;
        }
        if (i >= r->nobj || r->id[i] == 0) {
            rec_unlock(r);
            return false;
        }
        *stack = r->id[i] - 1, *size = s->size;
        if (remove) {
            r->id[i] = 0;
            if (--r->live == 0) {
                __atomic_store_n((srecs_t **)&s->prof, NULL, __ATOMIC_RELEASE);
                rec_unlock(r);
                srecs_free(stripe_of(s), r);
                return true;
            }
        }
        rec_unlock(r);
        return true;
    }
}

/* on_span_done (the span_done hook): small span s, every object back in
 * it, leaves use: its array goes, sticky (the only kind left on an empty
 * span: a counted one goes with its last record). */
static void on_span_done(span_t *s) {
    srecs_t *r = span_recs(s);
    if (!r) {
        ms_assert_internal(span_prof(s) == 0); /* an inline record goes with its block */
        __atomic_store_n((uintptr_t *)&s->prof, 0, __ATOMIC_RELEASE);
        return;
    }
    ms_assert_internal(r->sticky);
    __atomic_store_n((srecs_t **)&s->prof, NULL, __ATOMIC_RELEASE);
    srecs_free(stripe_of(s), r);
}

/* tally_lock: the thread counts as inside the profiler while it holds
 * the lock, so that a signal handler's malloc or free on it does not wait
 * for it (malloc.c: defer_free) */
static inline void tally_lock(void) {
    ms_prof_busy++;
    ms_lock(&tally.lock);
}
static inline void tally_unlock(void) {
    ms_unlock(&tally.lock);
    ms_prof_leave();
}

static void log_add(uintptr_t a) {
    if (tally.log_n < tally.log_cap) tally.log_buf[tally.log_n++] = a;
    else tally.log_over = true;
}

/* ------------------------------------------------------------------------
 * Accounting (tally.lock)
 * ---------------------------------------------------------------------- */

/* weight: a sample's weight, 1 / (1 - exp(-size / rate)), each sampled
 * malloc's and free's.  The last one computed for a size is kept in a
 * slot chosen by a hash of the size (tally.lock, which every caller holds;
 * the rate never changes once set): samples come in a few dozen sizes,
 * the classes', and the multiplier gives the 96 class sizes 96 different
 * slots.  The exponential was 150 instructions of the profiler's 3,000 a
 * sample on mixed_realloc, twice over (callgrind, by hand), all of them
 * under the lock.  One page, aligned, so that the few slots a program
 * uses make one page resident, not two.  The hit inline, the miss
 * (weight_miss) not, so that count_now, in the hot text
 * (tests/test_build.sh), does not grow by it: called, the hit was 22
 * instructions a sampled malloc and as many a free (callgrind,
 * bench/alloc_test.c, by hand). */
#define WEIGHT_SLOTS 256
static _Alignas(4096) struct {
    uint64_t size; /* 0: empty (no block has fewer than 16 bytes) */
    double w;
} wcache[WEIGHT_SLOTS];

static __attribute__((noinline)) double weight_miss(uint64_t size, unsigned i) {
    if (rate_d <= 1) return 1;
    /* (a size is below MS_MAX_ALLOC, so signed: no conversion of the top bit) */
    double w = 1 / (1 - ms_exp(-(double)(int64_t)size / rate_d));
    wcache[i].size = size, wcache[i].w = w;
    return w;
}
ms_inline double weight(uint64_t size) {
    unsigned i = (unsigned)((size * 0x094433587ebaa919ull) >> 56);
    if (ms_likely(wcache[i].size == size)) return wcache[i].w; /* (never filled at rate 1) */
    return weight_miss(size, i);
}

/* counts_fill_w: at rate 1 the weighted counts are the raw ones */
static void counts_fill_w(prof_counts_t *c) {
    c->alloc_objs_w = (double)c->alloc_objs, c->alloc_bytes_w = (double)c->alloc_bytes;
    c->free_objs_w = (double)c->free_objs, c->free_bytes_w = (double)c->free_bytes;
}

/* touch: s is about to change; keep its counts at the last peak first. */
static void touch(pstack_t *s) {
    if (s->peak_gen != tally.gen) {
        s->peak = s->now;
        s->peak_gen = tally.gen;
    }
}

/* inuse_up: the estimated in-use bytes grow by b; a new peak bumps the
 * generation ("The peak profile" above) */
ms_inline void inuse_up(double b) {
    tally.inuse_w += b;
    if (tally.inuse_w > tally.peak_w) {
        tally.peak_w = tally.inuse_w;
        tally.gen++;
    }
}

/* counts_add: exact counts (every weight 1) added to stack id's, which the
 * stack saves first if a new peak came since it last changed (touch) */
ms_inline void counts_add(uint32_t id, uint64_t aobjs, uint64_t abytes, uint64_t fobjs, uint64_t fbytes) {
    pstack_t *s = stack_at(id);
    touch(s);
    prof_counts_t *c = &s->now;
    c->alloc_objs += aobjs, c->alloc_bytes += abytes;
    c->free_objs += fobjs, c->free_bytes += fbytes;
}

/* account_exact: account at rate 1, where every weight is 1: every malloc
 * and free of the program, and half the work */
ms_inline void account_exact(uint32_t id, uint64_t size, bool alloc) {
    if (alloc) {
        counts_add(id, 1, size, 0, 0);
        inuse_up((double)size);
    } else {
        counts_add(id, 0, 0, 1, size);
        tally.inuse_w -= (double)size;
    }
}

ms_inline void account(uint32_t id, uint64_t size, bool alloc) {
    if (exact) {
        account_exact(id, size, alloc);
        return;
    }
    pstack_t *s = stack_at(id);
    touch(s);
    prof_counts_t *c = &s->now;
    double w = weight(size);
    if (alloc) {
        c->alloc_objs++, c->alloc_bytes += size, c->alloc_objs_w += w, c->alloc_bytes_w += w * (double)size;
        inuse_up(w * (double)size);
    } else {
        c->free_objs++, c->free_bytes += size, c->free_objs_w += w, c->free_bytes_w += w * (double)size;
        tally.inuse_w -= w * (double)size;
    }
}

/* ------------------------------------------------------------------------
 * Batches of counts (leak-check mode)
 *
 * At profile_rate=1 every malloc and free of every thread is counted, and
 * one lock over the counts had the threads of a multi-threaded program
 * pass its line back and forth on every operation: with the record arrays
 * sticky, a third of larson's time in leak-check mode was that lock (perf).
 * So there each thread gathers its counts in a batch of its own (its lock
 * is uncontended but for a drain) and adds them under tally.lock every 64
 * allocations while a check logs them, or as soon as they would move the in-use total by more than
 * BATCH_BYTES either way, or at the first free after a new peak (below).  Whoever reads the counts (a snapshot, the leak
 * checker's log, a fork, the thread's exit) drains every batch first, so
 * what it reads is every count made before it began.  The price is the
 * peak: the counts reach the tally in batch order, not in the order the
 * threads made them, so with n threads the peak found may differ from the
 * true one by up to n x BATCH_BYTES, and the stacks' counts at the peak
 * are those at the batch that made it.  One thread's peak stays exact.
 * In sampled mode each sample is counted at once, as the weights of even
 * a small sample exceed BATCH_BYTES.
 *
 * No lock per count.  A batch's lock, taken and released for each count,
 * was two lock-prefixed instructions per malloc and two per free (the
 * tally's, for a lone thread, as many), tens of cycles each, for a lock
 * nobody else wanted.  So where the kernel offers membarrier's private
 * expedited command (Linux 4.14; `lockfree`), the thread appends with
 * plain stores, between setting its batch's `busy` and clearing it, and
 * looks at `want` in between; whoever drains other threads' batches (a
 * snapshot, the leak checker, a fork) takes their locks, sets their
 * `want`, makes every running thread of the process execute a full
 * barrier (membarrier: one system call per drain, not per count), and
 * waits until each `busy` is clear.  Either the thread's `busy` was
 * visible to the drainer after the barrier, or the thread sees `want`
 * after it; a thread that sees `want` takes its lock as before (the
 * asymmetric Dekker of userspace RCU and of Folly's asymmetric barrier).
 * A lone thread appends to its batch too (with the lock, it counted at
 * once: the batch's work cost it 11% more instructions than the tally's
 * lock, and nothing contended).  Without membarrier (an older kernel, a
 * seccomp filter) every count takes the batch's lock, or the tally's
 * while only one thread has counted (nowned < 2).
 *
 * Sums, not events.  A batch keeps, per stack, the sums of its counts
 * (direct-mapped by stack id, BATCH_STACKS of them; a stack whose place
 * another holds goes to a short list of single counts), and the addresses
 * of the blocks allocated since its last drain, which the leak checker's
 * log takes (drain_locked) and a stopped check reads (ms_prof_pending_stopped).
 * A list of every count, each added to its stack at the drain, was about
 * 45 instructions a count, 90 of leak-check mode's 840 per free and malloc
 * of st_churn (callgrind); a sum is a few adds, and the drain's work is
 * per stack, not per count.
 *
 * The peak, with sums.  The order of a batch's counts is lost in its sums,
 * and the peak needs the stacks' counts at the moment the in-use bytes
 * were highest.  A thread that counts alone knows that moment as it comes:
 * its batch keeps `room`, what the in-use bytes could still grow by before
 * a new peak when it was last drained (peak minus in-use then, exact while
 * no other thread counts), and an allocation that takes the batch's sum of
 * bytes (delta) past it sets `at_peak`; every allocation after it only
 * adds to the peak, and the first free after it drains the batch before
 * it is counted, so the sums drained are the counts at the peak, which
 * drain_locked then records as the tally's new high.  One thread's peak
 * stays exact, as it was per event (memscope's own threads may hold
 * batches too, so "one thread" is not nowned < 2: the test is the same
 * for all).  With more threads counting, room is as old as the last drain
 * and the peak stays what it was: found in batch order, up to n x
 * BATCH_BYTES from the true one; a thread then drains at each of its own
 * new highs (at the free after one), which in a steady heap are rare.
 *
 * Order of the locks: reg_lock, a batch's lock, tally.lock.
 * ---------------------------------------------------------------------- */
#define BATCH_EVENTS 64   /* allocations per batch while a check logs: their addresses */
#define BATCH_STACKS 16   /* stacks summed per batch, direct-mapped by id */
#define BATCH_OTHER 32    /* single counts of stacks whose place another holds */
#define BATCH_BYTES ((int64_t)64 << 10)

/* A stack's counts in a batch (its id in the batch's sid).  32 bytes, so
 * that a slot is found with a shift; the counts of a malloc (aobjs, abytes)
 * and of a free lie apart, each two adds (side by side, gcc made a
 * malloc's two adds seven vector instructions). */
typedef struct bsum_s {
    uint64_t aobjs, fobjs, abytes, fbytes;
} bsum_t;
/* One count of a stack whose place in sum was taken: its id, its size
 * packed as in block_t, allocation or free */
typedef struct event_s {
    uint32_t id;
    uint32_t size;
    bool alloc;
} event_t;

typedef struct batch_s {
    _Alignas(64) ms_lock_t lock;
    uint32_t n;            /* allocations since the last drain: addresses in addr */
    _Atomic bool busy;     /* lockfree: its thread is appending without the lock */
    _Atomic bool want;     /* lockfree: a drainer holds the lock, or waits for busy to clear */
    bool unowned;          /* its thread exited: free to reuse (reg_lock) */
    bool at_peak;          /* lone thread: the sums are the counts at a new peak */
    uint32_t used;         /* bit i: sum[i] holds a stack */
    uint32_t nother;       /* counts in other */
    int64_t delta;         /* what the counts add to the in-use bytes */
    int64_t room;          /* the peak minus the in-use bytes at the last drain (INT64_MIN: unknown) */
    struct batch_s *next;  /* registry (reg_lock); never unlinked */
    uint32_t sid[BATCH_STACKS]; /* the stack summed in sum[i], its id plus one (0: none) */
    bsum_t sum[BATCH_STACKS];
    uintptr_t addr[BATCH_EVENTS];
    event_t other[BATCH_OTHER];
} batch_t;

static ms_lock_t reg_lock;
static batch_t *batches;
static _Atomic uint32_t nowned; /* batches with a thread (reg_lock to change) */
static fixalloc_t batch_pool;  /* reg_lock */
static pthread_key_t batch_key;
#define BATCH_NONE ((batch_t *)1) /* exited, or refused memory: counts go straight to the tally */
#define my_batch (ms_tls.batch) /* the thread's batch: a word of ms_tls (internal.h) */
static bool lockfree; /* membarrier works: counts are appended without a lock */
/* logging: a check's log is open (ms_prof_log_start to ms_prof_log_stop),
 * and only then does a batch keep the addresses of what it counts: the
 * rest of the time nothing reads them, and their store and count were
 * six instructions of every malloc of leak-check mode, with a drain every
 * BATCH_EVENTS mallocs (callgrind, st_churn).  Set before the drain that
 * opens the log: an append that began before that drain's barrier (its
 * heavy_barrier, or the batch's lock) may miss it, and the drain counts
 * it as made before the check, as it was; any later one sees it. */
static _Atomic bool logging;

static bool heavy_barrier(void) {
    return syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
}

/* claim: b (locked by the caller) is left to the caller: its thread
 * appends no more without the lock.  claim_wait: and has finished
 * appending.  In between, heavy_barrier() (one for any number of
 * batches). */
static inline void claim(batch_t *b) { atomic_store_explicit(&b->want, true, memory_order_relaxed); }
static void claim_wait(batch_t *b) {
    for (unsigned spins = 0; atomic_load_explicit(&b->busy, memory_order_acquire);)
        if (++spins % 64 == 0) sched_yield(); /* the thread may be preempted mid-append */
        else ms_spin_pause();
}
static inline void unclaim(batch_t *b) { atomic_store_explicit(&b->want, false, memory_order_release); }

/* drain_locked: b's events into the counts (b's lock held, and ms_prof_busy).
 * Only leak-check mode makes events (batch_add), so they are counted as
 * exact ones, and a check's log, when one runs, takes its addresses in a
 * pass of its own: the loop of every drain tested both, per event. */
static inline bool batch_empty(const batch_t *b) { return (b->n | b->used | b->nother) == 0; }
/* room_now: the peak minus the in-use bytes (tally.lock held); both are
 * whole numbers of bytes at rate 1, so the difference is exact */
static inline int64_t room_now(void) { return (int64_t)(tally.peak_w - tally.inuse_w); }
static void drain_locked(batch_t *b) {
    if (batch_empty(b)) return;
    ms_assert_internal(exact);
    ms_lock(&tally.lock);
    uint32_t g = tally.gen;
    if (tally.log_buf)
        for (uint32_t i = 0; i < b->n; i++) log_add(b->addr[i]);
    for (uint32_t u = b->used; u; u &= u - 1) {
        unsigned i = (unsigned)__builtin_ctz(u);
        bsum_t *m = &b->sum[i];
        counts_add(b->sid[i] - 1, m->aobjs, m->abytes, m->fobjs, m->fbytes);
        *m = (bsum_t){0};
        b->sid[i] = 0;
    }
    for (uint32_t i = 0; i < b->nother; i++) {
        const event_t *e = &b->other[i];
        uint64_t size = size_unpack(e->size);
        if (e->alloc) counts_add(e->id, 1, size, 0, 0);
        else counts_add(e->id, 0, 0, 1, size);
    }
    /* the sums' bytes at once: at_peak or not, the batch ends at its
     * highest point above the peak if it rose above it (see above) */
    inuse_up((double)b->delta);
    if (tally.gen != g) tally.peak_ticks = ms_os_ticks();
    b->room = room_now();
    ms_unlock(&tally.lock);
    b->n = 0, b->used = 0, b->nother = 0;
    b->delta = 0;
    b->at_peak = false;
}

/* drain_all: every thread's batch into the counts */
static void drain_all(void) {
    ms_prof_busy++;
    ms_lock(&reg_lock);
    if (lockfree) {
        for (batch_t *b = batches; b; b = b->next) {
            ms_lock(&b->lock);
            claim(b);
        }
        heavy_barrier(); /* it worked at ms_prof_init and in fork_child: it does */
    }
    for (batch_t *b = batches; b; b = b->next) {
        if (lockfree) claim_wait(b);
        else ms_lock(&b->lock);
        drain_locked(b);
        unclaim(b);
        ms_unlock(&b->lock);
    }
    ms_unlock(&reg_lock);
    ms_prof_leave();
}

/* batch_detach (the key's destructor): the exiting thread's counts go in,
 * and its batch to the next thread */
static void batch_detach(void *v) {
    batch_t *b = v;
    ms_prof_busy++;
    ms_lock(&b->lock);
    drain_locked(b);
    ms_unlock(&b->lock);
    my_batch = BATCH_NONE; /* what it frees after this is counted at once */
    ms_lock(&reg_lock);
    b->unowned = true;
    nowned--;
    ms_unlock(&reg_lock);
    ms_prof_leave();
}

ms_cold static batch_t *batch_attach(void) {
    ms_lock(&reg_lock);
    batch_t *b = batches;
    while (b && !b->unowned) b = b->next;
    if (b) {
        b->unowned = false;
    } else if ((b = ms_fixalloc_alloc(&batch_pool))) {
        b->next = batches;
        batches = b;
    }
    if (b) b->room = INT64_MIN; /* unknown until its first drain: the first allocation is taken as a peak */
    if (b) nowned++;
    ms_unlock(&reg_lock);
    if (!b || pthread_setspecific(batch_key, b) != 0) {
        if (b) batch_detach(b);
        my_batch = BATCH_NONE;
        return NULL;
    }
    return my_batch = b;
}

/* batch_full: b's lock held, and ms_prof_busy: drained, released */
ms_cold __attribute__((noinline)) static void batch_full(batch_t *b) {
    drain_locked(b);
    ms_unlock(&b->lock);
    ms_prof_leave();
}

/* over_batch: a batch whose in-use change d is this far off is drained */
ms_inline bool over_batch(int64_t d) {
    return d > BATCH_BYTES || d < -BATCH_BYTES;
}

/* append: the count into b (its lock held, or its thread's busy set with
 * no drainer wanting it); true if b must be drained now.  A free after a
 * peak is for the caller to drain b first (at_peak: see "The peak, with
 * sums" above). */
static inline bool append(batch_t *b, uintptr_t a, uint32_t id, uint64_t size, bool alloc) {
    unsigned slot = id % BATCH_STACKS;
    bsum_t *m = &b->sum[slot];
    bool full = false;
    if (ms_likely(b->sid[slot] == id + 1)) {
    add:
        if (alloc) m->aobjs++, m->abytes += size;
        else m->fobjs++, m->fbytes += size;
    } else if (b->sid[slot] == 0) {
        b->sid[slot] = id + 1;
        b->used |= 1u << slot;
        goto add;
    } else {
        uint32_t k = b->nother;
        b->other[k] = (event_t){id, size_pack(size), alloc};
        b->nother = k + 1;
        full = k + 1 == BATCH_OTHER;
    }
    int64_t d = b->delta + (alloc ? (int64_t)size : -(int64_t)size);
    b->delta = d;
    if (alloc) {
        if (atomic_load_explicit(&logging, memory_order_relaxed)) {
            uint32_t n = b->n;
            b->addr[n] = a;
            b->n = n + 1;
            full |= n + 1 == BATCH_EVENTS;
        }
        if (d > b->room) {
            b->at_peak = true; /* a new peak: from here the sums only rise until a free */
            b->room = d;
        }
    }
    return full || over_batch(d);
}

/* batch_enter: the thread's busy set on its batch b before it appends (a
 * drainer's heavy_barrier orders the two); false, busy cleared again, if a
 * drainer wants b (want clear: a drain's n = 0 seen, and no drainer while
 * busy).  The hooks, its only callers, hold ms_prof_busy: a signal
 * handler's malloc meanwhile is not counted, its free waits.  batch_leave
 * ends what batch_enter began. */
ms_inline void batch_leave(batch_t *b) {
    atomic_store_explicit(&b->busy, false, memory_order_release);
}
ms_inline bool batch_enter(batch_t *b) {
    ms_assert_internal(ms_prof_busy);
    atomic_store_explicit(&b->busy, true, memory_order_relaxed);
    atomic_signal_fence(memory_order_seq_cst);
    if (ms_likely(!atomic_load_explicit(&b->want, memory_order_acquire))) return true;
    batch_leave(b);
    return false;
}

/* batch_add: counts the allocation (or free) of block a later, in the
 * thread's batch; false if the caller must count it now: in sampled mode,
 * and without `lockfree` while no other thread has counted anything (a
 * lone thread's lock is never contended, and counting at once costs it
 * less than the batch). */
static bool batch_add_slow(uintptr_t a, uint32_t id, uint64_t size, bool alloc);
/* batch_try: batch_add's common case where `lockfree`, inline, with no
 * call but a full batch's drain: 1 if the count went in so, 2 if a drain
 * followed; 0 if nothing was done (the caller calls batch_add).  A free
 * after a new peak is batch_add_slow's, with the batch's lock (the counts
 * at the peak go in first). */
ms_inline int batch_try(uintptr_t a, uint32_t id, uint64_t size, bool alloc) {
    batch_t *b = my_batch;
    if (!lockfree || ms_unlikely(b == NULL || b == BATCH_NONE)) return 0;
    if (ms_unlikely(!batch_enter(b))) return 0;
    if (ms_unlikely(!alloc && b->at_peak)) {
        batch_leave(b);
        return 0;
    }
    int r = 1;
    if (ms_unlikely(append(b, a, id, size, alloc))) drain_locked(b), r = 2;
    batch_leave(b);
    return r;
}

ms_inline bool batch_add(uintptr_t a, uint32_t id, uint64_t size, bool alloc) {
    if (!exact) return false;
    if (lockfree) return batch_try(a, id, size, alloc) || batch_add_slow(a, id, size, alloc);
    batch_t *b = my_batch;
    /* a lone thread with nothing left in its batch, the commonest case,
     * decided inline */
    if (b != NULL && b != BATCH_NONE && atomic_load_explicit(&nowned, memory_order_relaxed) < 2 && batch_empty(b))
        return false;
    return batch_add_slow(a, id, size, alloc);
}
static bool batch_add_slow(uintptr_t a, uint32_t id, uint64_t size, bool alloc) {
    batch_t *b = my_batch;
    if (ms_unlikely(b == NULL)) {
        hook_deep = true; /* the thread's first count: pthread_setspecific and more */
        b = batch_attach();
    }
    if (b == NULL || b == BATCH_NONE) return false;
    /* where lockfree: a drainer wanted the batch, or a free follows a
     * new peak (batch_try): with the lock */
    if (!lockfree && atomic_load_explicit(&nowned, memory_order_relaxed) < 2) {
        if (ms_unlikely(!batch_empty(b))) { /* left from when other threads counted: first */
            ms_prof_busy++;
            ms_lock(&b->lock);
            drain_locked(b);
            ms_unlock(&b->lock);
            ms_prof_leave();
        }
        return false;
    }
    ms_prof_busy++;
    ms_lock(&b->lock);
    if (ms_unlikely(!alloc && b->at_peak)) drain_locked(b); /* the counts at the peak first */
    if (ms_unlikely(append(b, a, id, size, alloc))) {
        batch_full(b);
        return true;
    }
    ms_unlock(&b->lock);
    ms_prof_leave();
    return true;
}

/* ------------------------------------------------------------------------
 * Hooks
 * ---------------------------------------------------------------------- */

/* record (the sampled hook): block p of stack id is recorded and counted.
 * True if it kept to its common path, whose frames lie within
 * MS_HOOK_SHALLOW bytes below its caller's (a sticky array's word, a batch
 * the thread already has, a drain: 248 bytes with gcc 12 -O2; in sampled
 * mode the span's inline record or a counted array's word, and the count
 * under tally.lock); false if it went further (a record array made for
 * the span, from a stripe's free list or the fixalloc, a large block's entry made, the
 * thread's batch attached, memory for the record refused; id UINT32_MAX: no stack,
 * for want of memory or during a fork), so that the core clears the deeper
 * stack it may have left copies of p in (malloc.c: scrub_shallow).
 * tests/test_unit_hookdepth.c holds record to that. */
/* count_now: the allocation (alloc) or free of block p (stack id, size
 * bytes) counted at once, for want of a batch.  One function for both, so
 * that account() is inlined once: the hooks' code must fit the first 64
 * KiB of text with the allocator's (tests/test_build.sh). */
static void count_now(uintptr_t p, uint32_t id, uint64_t size, bool alloc) {
    tally_lock();
    if (alloc && tally.log_buf) log_add(p);
    uint32_t g = tally.gen;
    account(id, size, alloc);
    if (tally.gen != g) tally.peak_ticks = ms_os_ticks(); /* a new peak may come with every malloc */
    tally_unlock();
}

/* count_exact: record's count in leak-check mode, into the thread's batch
 * or at once; apart, so that sampled mode's record, in the hot text
 * (tests/test_build.sh), does not carry the batch's code, which it never
 * runs (leak-check mode's common malloc is on_every's) */
__attribute__((noinline)) static void count_exact(uintptr_t a, uint32_t id, uint64_t size) {
    if (!batch_add(a, id, size, true)) count_now(a, id, size, true);
}

static bool record(void *p, size_t size, uint32_t id) {
    span_t *s;
    hook_deep = false;
    if (id == UINT32_MAX || !rec_put((uintptr_t)p, id, size, &s)) return false;
    if (s) size = ms_class_usable(s->cls); /* counted: the usable bytes (a tail's record left out) */
    if (ms_unlikely(exact)) count_exact((uintptr_t)p, id, size);
    else count_now((uintptr_t)p, id, size, true);
    ms_malloc_sampled_small(p, s); /* s: a small span or NULL (rec_put) */
    return !hook_deep;
}

/* stack_nested: a sample taken while the thread's capture buffer is in
 * use (a signal handler's malloc): the stack goes through a buffer on this
 * frame instead. */
MS_TEXT __attribute__((noinline)) static uint32_t stack_nested(void) {
    uintptr_t pcs[MS_PROF_MAX_DEPTH + 1];
    int n = ms_stack_capture_inline(pcs, MS_PROF_MAX_DEPTH + 1, 0);
    if (n < 0) return UINT32_MAX; /* a fork is under way */
    __builtin_memset(pcs + n, 0, sizeof pcs - (size_t)n * sizeof pcs[0]); /* stale words: see stack.h */
    bool truncated = n > MS_PROF_MAX_DEPTH;
    return stack_intern(pcs, truncated ? MS_PROF_MAX_DEPTH : n, truncated);
}

/* captured_id: the id of the stack a capture into the thread's buffer
 * returned (n frames at pcs, or -2: the buffer was in use, or below:
 * a fork is under way); the buffer is released */
ms_inline uint32_t captured_id(int n, const uintptr_t *pcs, stack_own_t *own) {
    if (n == -2) return stack_nested();
    if (n < 0) return UINT32_MAX; /* a fork is under way */
    replay_t *rp = &own->replay;
    uint32_t id = rp->id;
    if (!rp->hit || id == UINT32_MAX) { /* not the stack of the thread's last sample */
        bool truncated = n > MS_PROF_MAX_DEPTH;
        id = rp->id = stack_intern(pcs, truncated ? MS_PROF_MAX_DEPTH : n, truncated);
    }
    ms_stack_own_release(own); /* a new stack's frames were copied */
    return id;
}

/* replayed_id: the id of the thread's last stack if the walk from fp
 * replays it (stack.h: ms_stack_replay_hit), else UINT32_MAX (none, or
 * that stack has no id): both hooks' common case, inline */
ms_inline uint32_t replayed_id(stack_own_t *o, const uintptr_t *fp) {
    if (ms_unlikely(o == NULL) || !ms_stack_replay_hit(o, ms_stack_own_cap(MS_PROF_MAX_DEPTH + 1), fp))
        return UINT32_MAX;
    return o->replay.id;
}

/* on_stack: the id of the sampled allocation's stack.  The unwinder's
 * frames are the deepest memscope puts on the program's stack (3 KiB and
 * more, with copies of every register); the block's address is in none of
 * them, as the core calls this before it hands the block over.  The walk
 * starts at the core's frame fp (sample_point's, usually reached by tail
 * calls from malloc, so its return address is the program's), as
 * leak-check mode's does: memscope's own frames above it need no recipe,
 * so a process that samples never reads memscope's .eh_frame_hdr and
 * .eh_frame (36 KiB of the library resident, by hand, in
 * bench/false_sharing.c). */
MS_TEXT static uint32_t on_stack(const uintptr_t *fp) {
    tcache_t *tc = ms_tcache_mine();
    stack_own_t *o = tc ? (stack_own_t *)tc->stack_own : NULL;
    /* The thread's last stack again (a loop's mallocs, most samples), with
     * its id: known from the replay alone, inline, as leak-check mode's
     * every hook knows it (stack.h: ms_stack_replay_hit), without the
     * capture's call into the walker, its replay and the id's lookup:
     * 160 instructions of a sample's 1,300 on bench/alloc_test.c
     * (callgrind, by hand).  The caller holds ms_prof_busy, so no signal
     * handler's sample writes the record meanwhile. */
    uint32_t id = ms_likely(ms_unwind_enabled) ? replayed_id(o, fp) : UINT32_MAX;
    if (id != UINT32_MAX) return id;
    const uintptr_t *pcs;
    stack_own_t *own;
    int n = ms_stack_capture_own_from(tc, fp, MS_PROF_MAX_DEPTH + 1, &pcs, &own);
    return captured_id(n, pcs, own);
}

/* every_stack: the id of the stack that starts at the hook's frame fp,
 * when it is not the thread's last one replayed (on_every): the whole
 * capture, as on_stack's */
MS_TEXT __attribute__((noinline)) static uint32_t every_stack(tcache_t *tc, const uintptr_t *fp) {
    ms_forget_scratch(); /* the core's and on_every's, for the walk's sake */
    const uintptr_t *pcs;
    stack_own_t *own;
    int n = ms_stack_capture_own_from(tc, fp, MS_PROF_MAX_DEPTH + 1, &pcs, &own);
    return captured_id(n, pcs, own);
}

/* on_every (the every hook, leak-check mode) and every_full, which does
 * all of it where on_every's common case (below) does not hold: on_stack
 * and record in one call, for a small block, with what the two did apart
 * done once.  The
 * stack starts at the hook's frame fp (the core tail-calls the hook, and
 * on_every tail-calls every_full, whose frame is then the same: each
 * takes __builtin_frame_address(0), whose return address and saved rbp
 * are the program's), and the thread's last one,
 * replayed, gives its id inline (stack.h); the block, read from the cache
 * only then (see on_stack), is one malloc has just taken from the
 * thread's list, so its span is in use, small, and found in the page map
 * without small_span's checks; its page's check (mark_sampled) is looked
 * at inline.  The counts go to the thread's batch as record's do.
 * Apart, the layers cost st_churn 430 instructions a malloc, each saving
 * its registers and looking up the span or the thread again (callgrind).
 * every_full's id: the stack's, when on_every's replay found it, else
 * UINT32_MAX (the stack is captured here).  every_full_in returns how deep
 * its frames may hold the block (MS_HOOK_TO_SHALLOW or _DEEP). */
MS_TEXT __attribute__((noinline)) static int every_full_in(tcache_t *tc, size_t size, const uintptr_t *fp,
                                                           uint32_t id) {
    if (id == UINT32_MAX) id = every_stack(tc, fp);
    if (ms_unlikely(id == UINT32_MAX)) return MS_HOOK_TO_DEEP;
    void *p = tc->hook_block;
    uintptr_t a = (uintptr_t)p;
    const uint64_t *check;
    span_t *s = ms_pagemap_block_span(p, &check);
    srecs_t *k = span_sticky(s);
    /* shallow unless what follows goes deeper (record's paths set
     * hook_deep): every_full's frame may hold the block anyway (its
     * comment), so this says no leaf */
    hook_deep = false;
    if (ms_likely(k != NULL)) {
        uint32_t i = obj_of(s, a);
        ms_assert_internal(i < k->nobj && rec_word(k, i) == 0);
        rec_word_set(k, i, id + 1);
    } else if (!rec_put_slow(a, id, size, s)) {
        return MS_HOOK_TO_DEEP;
    }
    size = ms_class_usable(s->cls); /* counted: the usable bytes (a tail's record left out) */
    int r = batch_try(a, id, size, true);
    if (ms_unlikely(r == 0) && !batch_add_slow(a, id, size, true)) count_now(a, id, size, true);
    /* the block's page closed (ms_malloc_sampled_small), tested inline */
    if (ms_unlikely(ms_span_mark(s) != MS_MARK_ALL || !ms_span_check_word_closed(check))) ms_malloc_sampled(p, s);
    return hook_deep ? MS_HOOK_TO_DEEP : MS_HOOK_TO_SHALLOW;
}

/* every_full: every_full_in, errno as it was (the every hook's promise:
 * the unwinder's system calls, the locks' futex waits and new mappings
 * are not the program's), and the malloc ended (ms_every_done).  Reached
 * by a tail call from on_every, so that its frame is on_every's was: fp,
 * where the stack starts, is the same.  Never leaf (every_full_in): on_every
 * may have held the block in a register this frame saved, and
 * ms_every_done's frame, in its place, saves what this one restored. */
MS_TEXT __attribute__((noinline)) static void *every_full(tcache_t *tc, size_t size, uint32_t id) {
    const uintptr_t *fp = __builtin_frame_address(0);
    int saved = errno;
    int r = every_full_in(tc, size, fp, id);
    errno = saved;
    return ms_every_done(tc, r);
}

/* every_drain: on_every's common case whose count filled the thread's
 * batch b (its busy set): drained (errno kept, as every_full keeps it),
 * and the malloc ended: a tail call of on_every, so that it needs no
 * register of its own */
__attribute__((noinline)) static void *every_drain(batch_t *b, tcache_t *tc) {
    int saved = errno;
    drain_locked(b);
    batch_leave(b);
    errno = saved;
    return ms_every_done(tc, MS_HOOK_TO_SHALLOW);
}

/* every_fresh: on_every where the thread's look for unloaded objects is
 * due (ms_unwind_fresh_skip out): looked at (errno kept), and on_every
 * again, a tail call, so that its frame is where it was; every_full if
 * the look could not be made (a fork is under way) */
static void *on_every(tcache_t *tc, size_t size);
MS_TEXT __attribute__((noinline)) static void *every_fresh(tcache_t *tc, size_t size) {
    int saved = errno;
    bool ok = ms_unwind_fresh_now() && ms_unwind_fresh_skip != 0;
    errno = saved;
    if (!ok) return every_full(tc, size, UINT32_MAX);
    return on_every(tc, size);
}

/* on_every: the common case, a replayed stack, a sticky array, the
 * page's check closed and the thread's batch there to append to with no
 * lock: tested first, before anything is written, so that every other
 * case goes to every_full and a full batch to every_drain, each a tail
 * call.  With no call but those, it saves no register: its frame, with
 * its calls on the slow paths, saved and restored six on every malloc
 * (st_churn, callgrind).  Its frame pointer is fp, where the stack
 * starts. */
MS_TEXT static void *on_every(tcache_t *tc, size_t size) {
    const uintptr_t *fp = __builtin_frame_address(0);
    stack_own_t *o = tc->stack_own;
    batch_t *b = my_batch;
    if (ms_unlikely(ms_unwind_fresh_skip == 0)) return every_fresh(tc, size);
    uint32_t id = replayed_id(o, fp);
    if (ms_unlikely(id == UINT32_MAX || !lockfree || b == NULL || b == BATCH_NONE))
        return every_full(tc, size, id);
    uintptr_t a = (uintptr_t)tc->hook_block;
    if (ms_likely(ms_tail_recs && size <= MS_TAIL_MAX_SIZE)) {
        /* a tail span (ms_span_tail: every span of such a class in this
         * mode), closed from its start (internal.h): the block's span is
         * not looked at */
#if MEMSCOPE_DEBUG
        const uint64_t *check;
        span_t *s = ms_pagemap_block_span((void *)a, &check);
        ms_assert_internal(ms_span_tail(s) && ms_span_mark(s) == MS_MARK_ALL && ms_span_check_word_closed(check));
#endif
        if (ms_unlikely(!batch_enter(b))) return every_full(tc, size, id);
        ms_assert_internal((uint32_t)tail_get(a, size) == 0); /* the request alone, from malloc */
        tail_mark(a, size, id + 1);
        size -= MS_TAIL; /* what is counted: the usable bytes (malloc_usable_size) */
    } else {
        /* a sticky array's word; the page's check, closed now, stays so
         * while a block of the span is out (ms_malloc_sampled's test,
         * made before the record) */
        const uint64_t *check;
        span_t *s = ms_pagemap_block_span((void *)a, &check);
        srecs_t *k = span_sticky(s);
        if (ms_unlikely(k == NULL || ms_span_mark(s) != MS_MARK_ALL || !ms_span_check_word_closed(check)))
            return every_full(tc, size, id);
        if (ms_unlikely(!batch_enter(b))) return every_full(tc, size, id);
        uint32_t i = obj_of(s, a);
        ms_assert_internal(i < k->nobj && rec_word(k, i) == 0);
        rec_word_set(k, i, id + 1);
    }
    if (ms_unlikely(append(b, a, id, size, true))) return every_drain(b, tc);
    batch_leave(b);
    /* no call since the block was read: it is in no frame (MS_HOOK_TO_LEAF) */
    if (ms_unlikely(ms_prof_deferred != NULL)) return ms_every_done(tc, MS_HOOK_TO_LEAF);
    return ms_every_end(tc, (void *)a);
}

/* count_free_slow: the free of block a counted where batch_try could not
 * (on_freed: apart, so that its common case saves no register) */
__attribute__((noinline)) static bool count_free_slow(uintptr_t a, uint32_t id, uint64_t size) {
    if (!batch_add(a, id, size, false)) count_now(a, id, size, false);
    return true;
}

/* on_freed_slow: on_freed of all but a word of a sticky array */
__attribute__((noinline)) static bool on_freed_slow(void *p, span_t *s) {
    uint32_t id;
    uint64_t size;
    if (!rec_take((uintptr_t)p, &id, &size, true, s)) return false;
    if (!batch_add((uintptr_t)p, id, size, false)) count_now((uintptr_t)p, id, size, false);
    return true;
}

/* freed_tail: on_freed of a block of a tail span, apart (on_freed runs in
 * sampled mode too): the large blocks' map first for an address that
 * starts a page, as rec_take does */
__attribute__((noinline)) static bool freed_tail(void *p, span_t *s) {
    uintptr_t a = (uintptr_t)p;
    if (ms_unlikely((a & MS_PAGE_MASK) == 0 && atomic_load_explicit(&nblocks, memory_order_relaxed) != 0))
        return on_freed_slow(p, s);
    uint32_t id;
    if (!tail_id(tail_get(a, s->size), &id)) return false;
    uint64_t size = s->size - MS_TAIL; /* the usable bytes, as counted */
    if (ms_likely(batch_try(a, id, size, false))) return true;
    return count_free_slow(a, id, size);
}

/* on_freed (the freed hook).  Leak-check mode's every free, a word of a
 * sticky array, is taken here inline (what rec_take would do for it:
 * the large blocks' map first for an address that starts a page), with
 * no record's fields passed back through memory.  A record in the tail
 * (the block is not on a list yet: its tail is as its malloc left it) is
 * freed_tail's: the common free of a pure consumer thread in leak-check
 * mode (bench/prodcons.c), kept out of this hook's code, which sampled
 * mode runs. */
static bool on_freed(void *p, span_t *s) {
    uintptr_t a = (uintptr_t)p;
    if (s != NULL && ms_span_tail(s)) return freed_tail(p, s);
    if (ms_likely(s != NULL && s->cls &&
                  ((a & MS_PAGE_MASK) != 0 || atomic_load_explicit(&nblocks, memory_order_relaxed) == 0))) {
        uintptr_t w = span_prof(s);
        uint32_t i = obj_of(s, a);
        if (w & RECS_INLINE) {
            /* sampled mode's common free, its span's only record
             * (RECS_INLINE): taken here, what rec_take would do for it */
            if (inline_obj(w) != i) return false;
            if (__atomic_compare_exchange_n((uintptr_t *)&s->prof, &w, 0, false, __ATOMIC_RELEASE, __ATOMIC_RELAXED)) {
                count_now(a, inline_id(w) - 1, s->size, false); /* (sampled mode: no batch) */
                return true;
            }
            /* an array made of it meanwhile: rec_take's */
        } else if (w & RECS_STICKY) {
            srecs_t *k = (srecs_t *)(w & ~RECS_STICKY);
            uint32_t v = rec_word(k, i);
            if (v == 0) return false;
            rec_word_set(k, i, 0);
            if (ms_likely(batch_try(a, v - 1, s->size, false))) return true;
            return count_free_slow(a, v - 1, s->size);
        }
    }
    return on_freed_slow(p, s);
}

/* freed_every_rest: on_freed_every's every case but the common one (a
 * record in the tail or in a sticky array, counted into the thread's batch
 * with no lock): what on_freed does, then the hook's end.  A tail is
 * taken from the core's read (tail), p's own may hold the cookie now. */
__attribute__((noinline)) static void freed_every_rest(void *p, span_t *s, uint64_t tail) {
    uintptr_t a = (uintptr_t)p;
    srecs_t *k = span_sticky(s);
    uint32_t id;
    uint64_t size;
    if (ms_span_tail(s)) {
        if (big_take(a, &id, &size, true) || tail_take(a, s, &id, &size, &tail)) count_free_slow(a, id, size);
    } else if (ms_likely(k != NULL && ((a & MS_PAGE_MASK) != 0 || atomic_load_explicit(&nblocks, memory_order_relaxed) == 0))) {
        uint32_t i = obj_of(s, a), v = rec_word(k, i);
        if (ms_likely(v != 0)) {
            rec_word_set(k, i, 0);
            if (ms_unlikely(!batch_try(a, v - 1, s->size, false))) count_free_slow(a, v - 1, s->size);
        }
    } else {
        on_freed_slow(p, s);
    }
    ms_freed_every_end();
}

/* freed_every_drain: on_freed_every's common case whose count filled the
 * thread's batch b (its busy set): drained, and the hook ended */
__attribute__((noinline)) static void freed_every_drain(batch_t *b) {
    drain_locked(b);
    batch_leave(b);
    ms_freed_every_end();
}

/* on_freed_every (the freed_every hook): on_freed for leak-check mode's
 * common free, which the core makes last, p on its list already and
 * ms_prof_busy and ms_tc_busy raised for the hook (internal.h), so that the leave is
 * the hook's: the core's call of freed, between them, cost its free a
 * frame (callgrind, st_churn).  s is small, in use and all recorded; i
 * is p's number in it, from the core's check (its multiply by the class's
 * reciprocal here cost every free 5 instructions more, callgrind).
 * As on_every: the common case (a sticky array's word, the thread's batch
 * there to append to with no lock, no peak to drain first) is tested
 * before anything is written, and every other case goes to
 * freed_every_rest, a full batch to freed_every_drain, each a tail call,
 * so that this function has no frame; and only a stack summed in the
 * batch already is counted here (append's first case).  With batch_try's
 * drain and the slow paths called from it, and append's other cases
 * inline, it saved and restored two registers and moved its stack pointer
 * on every free: 71 instructions a free, 56 so (st_churn, callgrind). */
/* freed_plain: the common case of both free hooks: no large block may
 * start at a (a page-aligned address is asked of the block map while there
 * are any), and the thread's batch takes a free without a lock */
ms_inline bool freed_plain(uintptr_t a, const batch_t *b) {
    return !(((a & MS_PAGE_MASK) == 0 && atomic_load_explicit(&nblocks, memory_order_relaxed) != 0) ||
             !lockfree || b == NULL || b == BATCH_NONE);
}

/* freed_summed: a free of block p, whose record names stack v - 1 (v's
 * low half: a tail's high half is the request), of
 * its class's bytes less `less` (what the malloc counted), counted as
 * append counts a stack summed in the batch already; anything else goes
 * to freed_every_rest (tail: the core's read of p's last word, passed
 * on).  k: the sticky array whose word i is the
 * record, cleared once the free is counted; NULL for a record in the
 * tail, which the block's next malloc writes over.  Inline in both hooks,
 * so that neither has a frame. */
ms_inline void freed_summed(batch_t *b, void *p, span_t *s, uint64_t tail, uint64_t v, uint32_t less,
                            srecs_t *k, uint32_t i) {
    unsigned slot = (uint32_t)(v - 1) % BATCH_STACKS;
    if (ms_unlikely(!batch_enter(b))) {
        freed_every_rest(p, s, tail);
        return;
    }
    if (ms_unlikely((uint32_t)v == 0 || b->at_peak || b->sid[slot] != (uint32_t)v)) {
        batch_leave(b);
        freed_every_rest(p, s, tail);
        return;
    }
    if (k) rec_word_set(k, i, 0);
    bsum_t *m = &b->sum[slot];
    uint64_t size = s->size - less;
    m->fobjs++, m->fbytes += size;
    int64_t d = b->delta - (int64_t)size;
    b->delta = d;
    if (ms_unlikely(over_batch(d))) {
        freed_every_drain(b);
        return;
    }
    batch_leave(b);
    ms_freed_every_end();
}

/* freed_every_sticky: on_freed_every for a span whose records are in a
 * sticky array (i: p's number in s), apart so that each has no frame */
__attribute__((noinline)) static void freed_every_sticky(void *p, span_t *s, uint32_t i, uint64_t tail) {
    srecs_t *k = span_sticky(s);
    batch_t *b = my_batch;
    if (ms_unlikely(k == NULL || !freed_plain((uintptr_t)p, b))) {
        freed_every_rest(p, s, tail);
        return;
    }
    ms_assert_internal(i == obj_of(s, (uintptr_t)p));
    freed_summed(b, p, s, tail, rec_word(k, i), 0, k, i);
}

/* on_freed_every: the common case first, a record in the tail (the word
 * the core read, tail); a span with a sticky array is
 * freed_every_sticky's.  The tail is taken as it is: one that names no
 * stack matches none summed in the batch, and goes to freed_every_rest,
 * which checks it. */
static void on_freed_every(void *p, span_t *s, uint32_t i, uint64_t tail) {
    batch_t *b = my_batch;
    if (ms_unlikely(!ms_span_tail(s))) {
        freed_every_sticky(p, s, i, tail);
        return;
    }
    if (ms_unlikely(!freed_plain((uintptr_t)p, b))) {
        freed_every_rest(p, s, tail);
        return;
    }
    /* the usable bytes: what the malloc counted */
    freed_summed(b, p, s, tail, tail, MS_TAIL, NULL, 0);
}

static void on_moved(void *p, void *q, size_t size) {
    uint32_t id;
    uint64_t old;
    span_t *s;
    if (!rec_take((uintptr_t)p, &id, &old, true, NULL)) return;
    bool put = rec_put((uintptr_t)q, id, size, &s);
    /* the thread's counts still in its batch go first, so that the tally
     * sees its changes in order (a lone thread's peak stays exact); its
     * lock keeps drainers out, and it appends nothing meanwhile.  The
     * batch's room is then set anew, as the move changed the in-use bytes
     * without it. */
    batch_t *b = my_batch;
    bool held = exact && b != NULL && b != BATCH_NONE;
    if (held) {
        ms_lock(&b->lock);
        drain_locked(b);
    }
    tally_lock();
    account(id, old, false);
    if (put) account(id, size, true);
    if (tally.log_buf) log_add((uintptr_t)q);
    if (held) b->room = room_now();
    tally_unlock();
    if (held) ms_unlock(&b->lock);
}

/* ------------------------------------------------------------------------
 * Setup, fork, snapshots
 * ---------------------------------------------------------------------- */

/* fork: init.c's handlers call these, the prepare before the core's and
 * the parent's and the child's after the core's, and not at all for a fork left
 * bare (one from a signal handler that interrupted memscope: ms_prof_busy
 * covers a batch this thread may be appending to, which the prepare below
 * would wait for). */
void ms_prof_fork_prepare(void) {
    if (!enabled) return;
    ms_stack_fork_prepare();
    ms_lock(&intern_lock);
    ms_lock(&big_lock);
    for (int i = 0; i < STRIPES; i++) ms_lock(&stripes[i].lock);
    ms_lock(&pool_lock);
    /* every batch drained and held (and claimed: no thread appends without
     * its lock), so the child starts with none pending */
    ms_prof_busy++;
    ms_lock(&reg_lock);
    for (batch_t *b = batches; b; b = b->next) {
        ms_lock(&b->lock);
        if (lockfree) claim(b);
    }
    if (lockfree) heavy_barrier();
    for (batch_t *b = batches; b; b = b->next) {
        if (lockfree) claim_wait(b);
        drain_locked(b);
    }
    ms_lock(&tally.lock);
}
void ms_prof_fork_parent(void) {
    if (!enabled) return;
    ms_unlock(&tally.lock);
    for (batch_t *b = batches; b; b = b->next) {
        unclaim(b);
        ms_unlock(&b->lock);
    }
    ms_unlock(&reg_lock);
    ms_prof_leave();
    ms_unlock(&pool_lock);
    for (int i = STRIPES - 1; i >= 0; i--) ms_unlock(&stripes[i].lock);
    ms_unlock(&big_lock);
    ms_unlock(&intern_lock);
    ms_stack_fork_parent();
}
void ms_prof_fork_child(void) {
    if (!enabled) return;
    /* record arrays locked by threads the child does not have (their
     * malloc or free never finishes here), in use or on the free lists,
     * count as free from now on (rec_lock) */
    int g = atomic_load_explicit(&rec_gen, memory_order_relaxed) + 1;
    atomic_store_explicit(&rec_gen, g > 0 ? g : 1, memory_order_relaxed);
    ms_lock_init(&tally.lock);
    /* the other threads' batches (empty) are free for the child's threads */
    for (batch_t *b = batches; b; b = b->next) {
        ms_lock_init(&b->lock);
        atomic_store_explicit(&b->busy, false, memory_order_relaxed); /* clear: fork_prepare waited */
        unclaim(b);
        b->room = INT64_MIN; /* set anew at its next drain */
        b->unowned = b != my_batch;
    }
    /* the registration is the process's (the kernel's mm), and a kernel
     * may not carry it into the child: renewed, or the child counts with
     * the locks (no other thread is running to append meanwhile) */
    if (lockfree && syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) != 0) lockfree = false;
    atomic_store_explicit(&nowned, my_batch && my_batch != BATCH_NONE, memory_order_relaxed);
    ms_lock_init(&reg_lock);
    ms_prof_leave();
    ms_lock_init(&pool_lock);
    for (int i = 0; i < STRIPES; i++) ms_lock_init(&stripes[i].lock);
    ms_lock_init(&big_lock);
    ms_lock_init(&intern_lock);
    ms_stack_fork_child();
}

/* tail_before: a small span of a class that has tails, in use when
 * leak-check mode begins: its blocks taken so far (by the thread that
 * initializes memscope, while it does: a debug build's libunwind) have
 * the program's bytes where a tail would be, so the mode keeps every
 * record in arrays, as it did before records went into the tails (*none
 * false).  A release build in the programs met so far has none: memscope
 * initializes at the first malloc. */
static void tail_before(const span_t *s, void *none) {
    if (s->cls != 0 && s->cls <= MS_TAIL_MAX_CLASS) *(bool *)none = false;
}

void ms_prof_init(void) {
    int64_t rate = ms_opt.profile_rate;
    if (rate <= 0 || enabled) return;
    for (int i = 0; i < STRIPES; i++) ms_lock_init(&stripes[i].lock);
    ms_lock_init(&pool_lock);
    for (int k = 0; k < SRECS_POOLS; k++) pools[k].size = srecs_size[k];
    ms_stack_init();
    batch_pool.size = sizeof(batch_t);
    if (pthread_key_create(&batch_key, batch_detach) != 0) my_batch = BATCH_NONE; /* then the counts go straight in */
    rate_d = (double)rate;
    exact = rate == 1;
    /* only leak-check mode counts every malloc; registering makes the
     * kernel note the process in each of its context switches, for nothing
     * in sampled mode */
    lockfree = exact && syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 &&
               heavy_barrier();
    /* leak-check mode: records in the tails from now on, the hooks being
     * there for the frees of the spans that enter use marked all recorded
     * (ms_pagemap_check_open), and what was allocated above in view
     * (ms_stack_init: a debug build loads libunwind, whose blocks then
     * keep the mode off) */
    if (exact) {
        bool none = true;
        ms_heap_for_each_inuse(tail_before, &none);
        if (none) {
            ms_size_classes_tail();
            ms_tail_recs = true;
        }
    }
    ms_prof_hooks = (prof_hooks_t){.stack = on_stack, .sampled = record, .freed = on_freed, .moved = on_moved,
                                    .span_done = on_span_done, .every = exact ? on_every : NULL,
                                    .freed_every = exact ? on_freed_every : NULL};
    enabled = true;
    atomic_store(&ms_sample_rate, rate);
    ms_malloc_rearm();
}

bool ms_prof_enabled(void) { return enabled; }


prof_snap_t *ms_prof_snap_take(void) {
    if (!enabled) return NULL;
    /* size the copy (stacks only grow), allocate, then copy */
    uint32_t n = atomic_load_explicit(&nstacks, memory_order_acquire) + 1024;
    if (n > MS_PROF_MAX_STACKS) n = MS_PROF_MAX_STACKS;
    size_t bytes = (sizeof(prof_snap_t) + (size_t)n * sizeof(prof_rec_t) + MS_PAGE_MASK) & ~MS_PAGE_MASK;
    prof_snap_t *snap = ms_os_alloc(bytes);
    if (!snap) return NULL;
    drain_all();
    snap->recs = (prof_rec_t *)(snap + 1);
    snap->map_bytes = bytes;
    snap->rate = (int64_t)rate_d;
    snap->time_ns = ms_os_wall_ns();
    /* Copied in chunks, the lock dropped between them, so that a profile of
     * a million stacks never stops a sampling thread for longer than one
     * chunk's copy (about 100 us).  Each stack's counts are consistent; two
     * stacks may be read a few microseconds apart, as Go's profile is.  A
     * stack's counts only change under tally.lock, after it was published. */
    tally_lock();
    uint32_t ns = atomic_load_explicit(&nstacks, memory_order_acquire);
    if (n > ns) n = ns;
    snap->peak_bytes = (uint64_t)(tally.peak_w + 0.5);
    uint64_t ago = tally.peak_ticks ? ms_os_ticks_ns(ms_os_ticks() - tally.peak_ticks) : 0;
    snap->peak_time_ns = tally.peak_ticks && ago < snap->time_ns ? snap->time_ns - ago : 0;
    for (uint32_t i = 0; i < n; i++) {
        if (i % SNAP_CHUNK == 0 && i) {
            tally_unlock();
            tally_lock();
        }
        const pstack_t *s = stack_at(i);
        prof_rec_t *r = &snap->recs[i];
        r->pcs = s->pcs;
        r->npcs = s->npcs;
        r->truncated = s->truncated;
        r->now = s->now;
        r->peak = s->peak_gen == tally.gen ? s->peak : s->now;
        if (exact) {
            counts_fill_w(&r->now);
            counts_fill_w(&r->peak);
        }
    }
    snap->nrecs = n;
    tally_unlock();
    return snap;
}

void ms_prof_snap_free(prof_snap_t *s) {
    if (s) ms_os_free(s, s->map_bytes);
}

void ms_prof_snap_sub(prof_snap_t *snap, const prof_snap_t *base) {
    size_t n = base->nrecs < snap->nrecs ? base->nrecs : snap->nrecs;
    for (size_t i = 0; i < n; i++) { /* same id, same stack: ids are never reused */
        prof_counts_t *c = &snap->recs[i].now;
        const prof_counts_t *b = &base->recs[i].now;
        c->alloc_objs -= b->alloc_objs, c->alloc_bytes -= b->alloc_bytes;
        c->free_objs -= b->free_objs, c->free_bytes -= b->free_bytes;
        c->alloc_objs_w -= b->alloc_objs_w, c->alloc_bytes_w -= b->alloc_bytes_w;
        c->free_objs_w -= b->free_objs_w, c->free_bytes_w -= b->free_bytes_w;
    }
}

/* ------------------------------------------------------------------------
 * For the leak checker (src/leak/)
 * ---------------------------------------------------------------------- */

void ms_prof_log_start(uintptr_t *buf, size_t cap) {
    atomic_store(&logging, true); /* before the drain's barrier (see logging) */
    drain_all(); /* what was allocated before the check is not logged */
    tally_lock();
    tally.log_buf = buf, tally.log_cap = cap, tally.log_n = 0, tally.log_over = false;
    tally_unlock();
}

size_t ms_prof_log_count(void) {
    drain_all();
    tally_lock();
    size_t n = tally.log_n;
    tally_unlock();
    return n;
}

size_t ms_prof_log_count_stopped(void) {
    /* each entry is written before the count that covers it, by a thread
     * that has since answered the stop signal (an acquire on its side) */
    return __atomic_load_n(&tally.log_n, __ATOMIC_ACQUIRE);
}

size_t ms_prof_pending_stopped(uintptr_t *out, size_t cap, bool *all) {
    /* Read without the locks: every thread that writes a batch is stopped
     * (its writes happened before it answered the stop signal), a batch is
     * never unlinked, and a new one is linked at the head, so the list read
     * from its head is whole.  A thread stopped inside drain_locked has
     * events both here and in the log: listed twice, marked once. */
    size_t k = 0;
    *all = true;
    for (batch_t *b = __atomic_load_n(&batches, __ATOMIC_ACQUIRE); b; b = b->next) {
        uint32_t n = __atomic_load_n(&b->n, __ATOMIC_RELAXED);
        if (n > BATCH_EVENTS) n = BATCH_EVENTS;
        for (uint32_t i = 0; i < n; i++) {
            if (k == cap) {
                *all = false;
                return k;
            }
            out[k++] = b->addr[i];
        }
    }
    return k;
}

size_t ms_prof_log_stop(bool *overflow) {
    drain_all();
    tally_lock();
    size_t n = tally.log_n;
    *overflow = tally.log_over;
    tally.log_buf = NULL, tally.log_cap = 0, tally.log_n = 0, tally.log_over = false;
    tally_unlock();
    atomic_store(&logging, false); /* addresses still in batches are dropped at their drains */
    return n;
}

void ms_prof_block_stacks(const uintptr_t *addrs, uint32_t *ids, size_t n) {
    /* a lock per block, each held for one lookup: allocating threads never wait long */
    ms_prof_busy++;
    for (size_t i = 0; i < n; i++) {
        uint64_t size;
        if (!rec_take(addrs[i], &ids[i], &size, false, NULL)) ids[i] = UINT32_MAX;
    }
    ms_prof_leave();
}

bool ms_prof_stack_get(uint32_t id, const uintptr_t **pcs, uint32_t *npcs, bool *truncated) {
    if (id >= atomic_load_explicit(&nstacks, memory_order_acquire)) return false;
    const pstack_t *s = stack_at(id); /* written once, before nstacks counted it */
    *pcs = s->pcs, *npcs = s->npcs, *truncated = s->truncated;
    return true;
}
