/* sample.c: what the heap profiler keeps, and the hooks that keep it.
 *
 * The allocator core draws which allocations are sampled (malloc.c: a
 * per-thread countdown with exponential gaps of mean profile_rate bytes,
 * Go's Poisson process) and calls ms_prof_hooks.  Here a sampled block
 * becomes a record: its stack is captured (stack.c), found or added in the
 * table of distinct stacks, and the block gets a record of its stack, so
 * that free can tell in O(1) whether this very block was sampled and which
 * stack to credit.  A small block's record is a word in an array hung on its
 * span (span->prof, one word per object), found through the page map; a
 * large block's is an entry in a hash map by address.  The core only asks
 * when the block's span holds a sampled block at all (span->mark), so an
 * unsampled free never gets here.
 *
 * Counts.  Each stack keeps raw counts (the samples themselves, what Go's
 * debug=1 text prints) and weighted ones: a sample of S bytes at rate R
 * stands for 1/(1-exp(-S/R)) allocations, the inverse of the chance that a
 * block of S bytes is drawn at all, so sums of weights are unbiased
 * estimates of the program's true totals (Go applies the same factor when it
 * writes a profile; applying it per sample keeps stacks of mixed sizes
 * unbiased too).  At rate 1 every weight is exactly 1.
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
 * read from the coarse clock (a few ms of resolution, a few ns a read).
 *
 * Memory.  Stacks, their frames, the hash index, the spans' record arrays
 * and the map of large blocks live in pages mapped for them (ms_meta_alloc,
 * ms_fixalloc_alloc, ms_os_alloc), never in the heap
 * being profiled, and count as metadata in the stats.  Stacks and frames are
 * never freed, so snapshots point at frames without copying them.  The table
 * holds at most MS_PROF_MAX_STACKS stacks; past that, samples go to one
 * "(stack table full)" record and one warning is printed.
 *
 * Locking.  One mutex covers the table and the records.  A hook captures the
 * stack (inline, stack.h) before taking it, and holds it only for a hash lookup and a few
 * adds; a snapshot holds it for the copy of 1024 stacks at a time.  Nothing here takes
 * an allocator lock while holding it, and nothing that holds an allocator
 * lock calls here.
 */
#include "prof.h"
#include "stack.h"

#include <math.h>
#include <string.h>

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
 * (8 KiB spans of 16-byte objects need 2056 bytes, the most of any class). */
typedef struct srecs_s {
    uint32_t live;       /* entries not 0; the array goes with the last */
    uint32_t nobj;       /* objects of the span */
    uint32_t id[];
} srecs_t;
#define SRECS_POOLS 7    /* 64 B .. 4 KiB */

static pthread_mutex_t prof_lock = PTHREAD_MUTEX_INITIALIZER;
static bool enabled;
static double rate_d;

/* stacks: an array of chunk pointers (lock; readers of a snapshot use ids < n) */
static pstack_t *chunks[MS_PROF_MAX_STACKS / CHUNK_STACKS];
static uint32_t nstacks;
static uint32_t full_id = UINT32_MAX; /* the "(stack table full)" record */
static uint32_t *index_tab;           /* hash -> stack id + 1; 0 empty */
static size_t index_cap;
static uintptr_t *frames;             /* current frame chunk */
static size_t frames_left;

static block_t *blocks;                 /* large blocks (prof_lock) */
static size_t blocks_cap, nblocks;
static fixalloc_t srecs_pool[SRECS_POOLS] = {{.size = 64}, {.size = 128}, {.size = 256}, {.size = 512},
                                             {.size = 1024}, {.size = 2048}, {.size = 4096}};

/* The leak checker's list of blocks recorded while a check runs (see
 * ms_prof_log_start); NULL when no check runs. */
static uintptr_t *log_buf;
static size_t log_cap, log_n;
static bool log_over;

static double inuse_w, peak_w;        /* estimated in-use bytes now, and at the peak */
static uint32_t gen;                  /* bumped at each new peak */
static uint64_t peak_time_ns;

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

/* ------------------------------------------------------------------------
 * The table of stacks (prof_lock)
 * ---------------------------------------------------------------------- */

static bool index_grow(void) {
    size_t cap = index_cap ? index_cap * 2 : 4096;
    uint32_t *t = ms_os_alloc(cap * sizeof *t);
    if (!t) return false;
    for (size_t i = 0; i < index_cap; i++) {
        uint32_t id = index_tab[i];
        if (!id) continue;
        size_t j = stack_at(id - 1)->hash & (cap - 1);
        while (t[j]) j = (j + 1) & (cap - 1);
        t[j] = id;
    }
    ms_os_free(index_tab, index_cap * sizeof *index_tab);
    atomic_fetch_add(&ms_meta_sys, (cap - index_cap) * sizeof *t);
    atomic_fetch_add(&ms_meta_inuse, (cap - index_cap) * sizeof *t);
    index_tab = t;
    index_cap = cap;
    return true;
}

/* new_stack: appends a stack (frames copied); UINT32_MAX when out of room. */
static uint32_t new_stack(const uintptr_t *pcs, int n, bool truncated, uint64_t h) {
    if (nstacks >= MS_PROF_MAX_STACKS) return UINT32_MAX;
    if (nstacks % CHUNK_STACKS == 0 && !chunks[nstacks / CHUNK_STACKS]) {
        chunks[nstacks / CHUNK_STACKS] = ms_meta_alloc(CHUNK_STACKS * sizeof(pstack_t));
        if (!chunks[nstacks / CHUNK_STACKS]) return UINT32_MAX;
    }
    if (frames_left < (size_t)n) {
        frames = ms_meta_alloc(FRAME_CHUNK);
        if (!frames) return frames_left = 0, UINT32_MAX;
        frames_left = FRAME_CHUNK / sizeof *frames;
    }
    uint32_t id = nstacks;
    pstack_t *s = stack_at(id);
    memset(s, 0, sizeof *s);
    s->hash = h;
    s->pcs = frames;
    s->npcs = (uint32_t)n;
    s->truncated = truncated;
    memcpy(frames, pcs, (size_t)n * sizeof *pcs);
    frames += n;
    frames_left -= (size_t)n;
    nstacks++;
    return id;
}

static uint32_t stack_intern(const uintptr_t *pcs, int n, bool truncated) {
    uint64_t h = hash_pcs(pcs, n);
    if ((nstacks + 1) * 2 > index_cap && !index_grow()) return UINT32_MAX;
    size_t j = h & (index_cap - 1);
    for (uint32_t id; (id = index_tab[j]) != 0; j = (j + 1) & (index_cap - 1)) {
        pstack_t *s = stack_at(id - 1);
        if (s->hash == h && s->npcs == (uint32_t)n && memcmp(s->pcs, pcs, (size_t)n * sizeof *pcs) == 0)
            return id - 1;
    }
    uint32_t id = new_stack(pcs, n, truncated, h);
    if (id == UINT32_MAX) {
        /* Out of memory for a chunk of stacks or frames, not out of room:
         * drop this sample (the caller does) and leave the table as it is.
         * Taking the "table full" path here once rewound nstacks below a
         * small count and then set it to the maximum, so later stacks were
         * written into chunks never mapped (a SIGSEGV under mmap failure). */
        if (nstacks < MS_PROF_MAX_STACKS) return UINT32_MAX;
        if (full_id == UINT32_MAX) {
            ms_warn("memscope: heap profile: more than %u distinct stacks; further new stacks are counted as "
                    "\"(stack table full)\"", MS_PROF_MAX_STACKS);
            nstacks--; /* room for the one overflow record, kept in the last slot */
            full_id = new_stack(pcs, 0, false, 0);
            nstacks = MS_PROF_MAX_STACKS;
        }
        return full_id;
    }
    index_tab[j] = id + 1;
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
 * Records of sampled blocks (prof_lock).  Small blocks are found through
 * their span, so the records of neighbouring blocks share cache lines and
 * a sample costs no probe into a table the size of the heap (at
 * profile_rate=1 a map of every live block was most of the cost: a cache
 * miss on each malloc and each free).  Large blocks, one per span and never
 * many, keep the hash map, which also follows them when realloc moves
 * their pages to another span.
 * ---------------------------------------------------------------------- */

/* small_span: the small span in use that holds a, or NULL. */
static span_t *small_span(uintptr_t a) {
    span_t *s = ms_pagemap_lookup((const void *)a);
    return s && s->cls && s->state == SPAN_INUSE && a - s->start < s->limit - s->start ? s : NULL;
}

static inline uint32_t obj_of(const span_t *s, uintptr_t a) {
    return (uint32_t)(((a - s->start) * ms_class_magic[s->cls]) >> MS_MAGIC_SHIFT);
}

static bool rec_put(uintptr_t a, uint32_t stack, uint64_t size) {
    span_t *s = small_span(a);
    if (!s) return block_insert(a, stack, size);
    srecs_t *r = s->prof;
    if (!r) {
        uint32_t nobj = (uint32_t)((s->limit - s->start) / s->size);
        unsigned k = 0;
        while (k < SRECS_POOLS && srecs_pool[k].size < sizeof(srecs_t) + (size_t)nobj * sizeof(uint32_t)) k++;
        if (k == SRECS_POOLS || !(r = ms_fixalloc_alloc(&srecs_pool[k]))) return false;
        r->nobj = nobj;
        s->prof = r;
    }
    uint32_t i = obj_of(s, a);
    ms_assert_internal(i < r->nobj && r->id[i] == 0);
    r->id[i] = stack + 1;
    r->live++;
    return true;
}

/* rec_find: the record of block a: its stack and size; NULL if none.  A
 * large block starts a page: the map is asked first for such an address,
 * since after realloc moved a large block's pages its old address may
 * already lie in a small span. */
typedef struct recref_s {
    block_t *big;        /* a large block's slot, or */
    span_t *span;        /* the small span and the object's index */
    uint32_t idx;
} recref_t;

static bool rec_find(uintptr_t a, recref_t *ref, uint32_t *stack, uint64_t *size) {
    if ((a & MS_PAGE_MASK) == 0 && nblocks) {
        block_t *b = block_find(a);
        if (b) {
            *ref = (recref_t){.big = b};
            *stack = b->stack, *size = size_unpack(b->size);
            return true;
        }
    }
    span_t *s = small_span(a);
    if (!s || !s->prof) return false;
    srecs_t *r = s->prof;
    uint32_t i = obj_of(s, a);
    if (i >= r->nobj || r->id[i] == 0) return false;
    *ref = (recref_t){.span = s, .idx = i};
    *stack = r->id[i] - 1, *size = s->size;
    return true;
}

static void rec_remove(const recref_t *ref) {
    if (ref->big) {
        block_remove(ref->big);
        return;
    }
    srecs_t *r = ref->span->prof;
    r->id[ref->idx] = 0;
    if (--r->live == 0) {
        unsigned k = 0;
        while (srecs_pool[k].size < sizeof(srecs_t) + (size_t)r->nobj * sizeof(uint32_t)) k++;
        ms_fixalloc_free(&srecs_pool[k], r);
        ref->span->prof = NULL;
    }
}

static void log_add(uintptr_t a) {
    if (log_n < log_cap) log_buf[log_n++] = a;
    else log_over = true;
}

/* ------------------------------------------------------------------------
 * Accounting (prof_lock)
 * ---------------------------------------------------------------------- */

static double weight(uint64_t size) {
    if (rate_d <= 1) return 1;
    return 1 / (1 - exp(-(double)size / rate_d));
}

/* touch: s is about to change; keep its counts at the last peak first. */
static void touch(pstack_t *s) {
    if (s->peak_gen != gen) {
        s->peak = s->now;
        s->peak_gen = gen;
    }
}

static void account(uint32_t id, uint64_t size, bool alloc) {
    pstack_t *s = stack_at(id);
    touch(s);
    double w = weight(size);
    prof_counts_t *c = &s->now;
    if (alloc) {
        c->alloc_objs++, c->alloc_bytes += size, c->alloc_objs_w += w, c->alloc_bytes_w += w * (double)size;
        inuse_w += w * (double)size;
        if (inuse_w > peak_w) {
            peak_w = inuse_w;
            gen++;
        }
    } else {
        c->free_objs++, c->free_bytes += size, c->free_objs_w += w, c->free_bytes_w += w * (double)size;
        inuse_w -= w * (double)size;
    }
}

/* ------------------------------------------------------------------------
 * Hooks
 * ---------------------------------------------------------------------- */

MS_TEXT static bool on_sampled(void *p, size_t size) {
    uintptr_t pcs[MS_PROF_MAX_DEPTH + 1];
    int n = ms_stack_capture_inline(pcs, MS_PROF_MAX_DEPTH + 1, 0);
    if (n < 0) return false; /* a fork is under way */
    __builtin_memset(pcs + n, 0, sizeof pcs - (size_t)n * sizeof pcs[0]); /* stale words: see stack.h */
    bool truncated = n > MS_PROF_MAX_DEPTH;
    if (truncated) n = MS_PROF_MAX_DEPTH;
    bool ok = false;
    pthread_mutex_lock(&prof_lock);
    uint32_t id = stack_intern(pcs, n, truncated);
    if (id != UINT32_MAX && rec_put((uintptr_t)p, id, size)) {
        if (log_buf) log_add((uintptr_t)p);
        uint32_t g = gen;
        account(id, size, true);
        if (gen != g) peak_time_ns = ms_os_wall_coarse_ns(); /* a new peak may come with every malloc */
        ok = true;
    }
    pthread_mutex_unlock(&prof_lock);
    if (ok) ms_malloc_sampled(p);
    return ok;
}

static bool on_freed(void *p) {
    recref_t ref;
    uint32_t id;
    uint64_t size;
    pthread_mutex_lock(&prof_lock);
    bool found = rec_find((uintptr_t)p, &ref, &id, &size);
    if (found) {
        account(id, size, false);
        rec_remove(&ref);
    }
    pthread_mutex_unlock(&prof_lock);
    return found;
}

static void on_moved(void *p, void *q, size_t size) {
    recref_t ref;
    uint32_t id;
    uint64_t old;
    pthread_mutex_lock(&prof_lock);
    if (rec_find((uintptr_t)p, &ref, &id, &old)) {
        account(id, old, false);
        rec_remove(&ref);
        if (rec_put((uintptr_t)q, id, size)) account(id, size, true);
        if (log_buf) log_add((uintptr_t)q);
    }
    pthread_mutex_unlock(&prof_lock);
}

/* ------------------------------------------------------------------------
 * Setup, fork, snapshots
 * ---------------------------------------------------------------------- */

static void fork_prepare(void) {
    ms_stack_fork_prepare();
    pthread_mutex_lock(&prof_lock);
}
static void fork_parent(void) {
    pthread_mutex_unlock(&prof_lock);
    ms_stack_fork_parent();
}
static void fork_child(void) {
    pthread_mutex_init(&prof_lock, NULL);
    ms_stack_fork_child();
}

void ms_prof_init(void) {
    int64_t rate = ms_opt.profile_rate;
    if (rate <= 0 || enabled) return;
    ms_stack_init();
    rate_d = (double)rate;
    pthread_atfork(fork_prepare, fork_parent, fork_child);
    ms_prof_hooks = (prof_hooks_t){.sampled = on_sampled, .freed = on_freed, .moved = on_moved};
    enabled = true;
    atomic_store(&ms_sample_rate, rate);
    ms_malloc_rearm();
}

bool ms_prof_enabled(void) { return enabled; }

void ms_prof_thread_internal(void) { ms_no_sample = 1; }

prof_snap_t *ms_prof_snap_take(void) {
    if (!enabled) return NULL;
    /* size the copy without the lock (stacks only grow), allocate, then copy */
    pthread_mutex_lock(&prof_lock);
    uint32_t n = nstacks;
    pthread_mutex_unlock(&prof_lock);
    n += 1024;
    if (n > MS_PROF_MAX_STACKS) n = MS_PROF_MAX_STACKS;
    size_t bytes = (sizeof(prof_snap_t) + (size_t)n * sizeof(prof_rec_t) + MS_PAGE_MASK) & ~MS_PAGE_MASK;
    prof_snap_t *snap = ms_os_alloc(bytes);
    if (!snap) return NULL;
    snap->recs = (prof_rec_t *)(snap + 1);
    snap->map_bytes = bytes;
    snap->rate = (int64_t)rate_d;
    snap->time_ns = ms_os_wall_ns();
    /* Copied in chunks, the lock dropped between them, so that a profile of
     * a million stacks never stops a sampling thread for longer than one
     * chunk's copy (about 100 us).  Each stack's counts are consistent; two
     * stacks may be read a few microseconds apart, as Go's profile is. */
    pthread_mutex_lock(&prof_lock);
    if (n > nstacks) n = nstacks;
    snap->peak_bytes = (uint64_t)(peak_w + 0.5);
    snap->peak_time_ns = peak_time_ns;
    for (uint32_t i = 0; i < n; i++) {
        if (i % SNAP_CHUNK == 0 && i) {
            pthread_mutex_unlock(&prof_lock);
            pthread_mutex_lock(&prof_lock);
        }
        const pstack_t *s = stack_at(i);
        prof_rec_t *r = &snap->recs[i];
        r->pcs = s->pcs;
        r->npcs = s->npcs;
        r->truncated = s->truncated;
        r->now = s->now;
        r->peak = s->peak_gen == gen ? s->peak : s->now;
    }
    snap->nrecs = n;
    pthread_mutex_unlock(&prof_lock);
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
    pthread_mutex_lock(&prof_lock);
    log_buf = buf, log_cap = cap, log_n = 0, log_over = false;
    pthread_mutex_unlock(&prof_lock);
}

size_t ms_prof_log_count(void) {
    pthread_mutex_lock(&prof_lock);
    size_t n = log_n;
    pthread_mutex_unlock(&prof_lock);
    return n;
}

size_t ms_prof_log_stop(bool *overflow) {
    pthread_mutex_lock(&prof_lock);
    size_t n = log_n;
    *overflow = log_over;
    log_buf = NULL, log_cap = 0, log_n = 0, log_over = false;
    pthread_mutex_unlock(&prof_lock);
    return n;
}

void ms_prof_block_stacks(const uintptr_t *addrs, uint32_t *ids, size_t n) {
    /* in batches, so allocating threads never wait long for the lock */
    for (size_t i = 0; i < n;) {
        size_t end = i + 4096 < n ? i + 4096 : n;
        pthread_mutex_lock(&prof_lock);
        for (; i < end; i++) {
            recref_t ref;
            uint64_t size;
            if (!rec_find(addrs[i], &ref, &ids[i], &size)) ids[i] = UINT32_MAX;
        }
        pthread_mutex_unlock(&prof_lock);
    }
}

bool ms_prof_stack_get(uint32_t id, const uintptr_t **pcs, uint32_t *npcs, bool *truncated) {
    pthread_mutex_lock(&prof_lock);
    bool ok = id < nstacks;
    if (ok) {
        const pstack_t *s = stack_at(id);
        *pcs = s->pcs, *npcs = s->npcs, *truncated = s->truncated;
    }
    pthread_mutex_unlock(&prof_lock);
    return ok;
}
