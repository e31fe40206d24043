/* mark.c: the snapshot of the heap, the conservative mark, the classes.
 *
 * A check, in order:
 *   1. The profiler starts listing the blocks it records (every block at
 *      profile_rate=1, sampled ones otherwise): blocks new since now.
 *   2. Snapshot, with the program running: the core lists the spans in use
 *      (ms_heap_for_each_inuse, one walk of the page map, taking the
 *      heap lock a bounded number of pages at a time); for each, the part handed out (below s->used), the
 *      object size, and one bit per slot saying whether it is allocated
 *      (no free cookie in its second word: the same test as ms_block_find,
 *      done span by span).  Every page of every span, large ones included,
 *      goes into a private two-level index from page to span, so an
 *      interior pointer anywhere in a large block resolves in two loads.
 *   3. Roots (roots.c): the threads stop, the roots are copied, step 4
 *      starts on them (held, below), and the threads go on.
 *   4. Mark from the copied roots: a word is a pointer if it falls in a
 *      snapshot span, below its used mark, in a slot whose bit says allocated.
 *      Marked blocks go on an explicit stack and are scanned in turn, live
 *      (their memory may change meanwhile; the heap's mappings are pinned
 *      for the check, ms_heap_pin_mappings, so reading them is safe even
 *      after a block is freed).  Then every block the profiler listed as
 *      new is marked too, with what it reaches: blocks allocated during the
 *      check count as reachable.  A block is read whole, but one whose
 *      record is in its tail (leak-check mode, classes up to 1 KiB) only as
 *      far as its request (ms_block_scan_bytes), as LeakSanitizer reads a
 *      chunk's requested bytes: malloc leaves what lies past it as the
 *      slot's past, uncleared.
 *      Where the time goes (bench/run_leaks.sh, 1 GiB of 10M blocks): the
 *      snapshot reads a word of every block, the mark reads every reached
 *      block and, per candidate word, two random cache lines (index entry,
 *      bitmap word).  Hence the prefetching below: ahead of the snapshot's
 *      sequential read, on each block popped from the stack, and on both
 *      lookups of every candidate (PIPE).  Once those were prefetched, the
 *      mark's time went mostly to instructions and to branches taken at
 *      random (a word is a pointer or not, a slot reached or not): the
 *      scan and the flagging are written without those branches (scan_words,
 *      step), with the loop's state in registers (pipe_t), and what runs
 *      per slot after the mark goes a word of the bitmap at a time
 *      (next_unreached, reached_in).
 *   5. Indirect, as LeakSanitizer does: each unmarked block is scanned, and
 *      the unmarked blocks it points to (itself excepted) are "indirectly
 *      lost", with everything they reach.  A lost cycle with nothing
 *      pointing into it is therefore all indirect, as under LSan.
 *   6. Classes: unmarked and not indirect is definitely lost.  A lost block
 *      is kept only if it is still allocated now (ms_block_find) and was not
 *      listed as new: anything allocated or freed during the check is left
 *      out (counted in changed_objs).
 *   The invariant under 4-6: a block is lost only if it was allocated, and
 *   unreached, at one instant with every thread stopped.  So the stop in
 *   which the mark finishes (held, or a rescan's) also settles it: every
 *   block still unreached whose slot is free at that instant is dropped
 *   from the snapshot there and then (Settling at the stop, above held).
 *   Step 6's two tests cannot stand in for that: they look at two moments
 *   after the stop, and a malloc makes its block look allocated before the
 *   profiler lists it, so a block allocated after the stop in the slot of
 *   one freed before it passed both while its malloc was under way, and
 *   was reported lost (tests/leak/shuffle.c).
 *
 * The mark stack holds at most one entry per allocated block (a block is
 * flagged before it is pushed, and each phase pushes a block once; a block
 * scanned in chunks keeps one entry for its rest, CHUNK_BYTES), so it is
 * sized to the snapshot's block count up front: bounded, no recursion and
 * no growth while marking.  All the memory (span table, three bitmaps, the
 * index, the stack) comes from ms_os_alloc and its peak is reported.
 *
 * What the concurrent mark cannot see: a program that, during the mark,
 * moves the only pointer to a block from a place not yet scanned to one
 * already scanned (or into a register) hides that block, which then shows as
 * lost.  The stop-the-world checkers (LSan) do not have this race; the
 * price here is a pause of one copy of the roots instead of the whole mark.
 * So step 4's mark from the roots starts before the threads go on (held):
 * the check at exit, where a longer pause costs the program nothing, keeps
 * them stopped until it is done; a live check for HOLD_NS of its CPU time
 * at most (HOLD_TRACKED_NS where the kernel tracks writes; hold), and if that was not
 * enough, the mark goes on with the program running.  If it then leaves
 * blocks unreached, the check rescans the pages the program wrote meanwhile
 * and settles in a second stop (Rescans, below); where it cannot, it looks
 * again (More looks, ms_leak_check).  docs/LEAKS.md discusses it.
 */
#include "leak.h"
#include "../prof/prof.h"

#include <string.h>

#define PAGES(n) ((size_t)(n) << MS_PAGE_SHIFT)
/* How far ahead of its read the snapshot prefetches: on the 1 GiB heap of
 * bench/run_leaks.sh prefetching shortened the snapshot's CPU time, and
 * 1024 bytes ahead measured within noise of 2048 (by hand, not a script). */
#define SNAP_AHEAD 2048
#define IDX_LEAF_BITS 20
#define IDX_ROOT_BITS 15
/* Blocks the profiler may list as new during one check; past it the result
 * says so.  8 MiB of address space, touched only as it fills. */
#define LOG_CAP ((size_t)1 << 20)
/* Blocks counted in the threads' batches but not yet logged, read while
 * they are stopped (held): a batch holds 64 events, so this covers 1024
 * threads' full batches; 512 KiB of address space, touched as it fills. */
#define PEND_CAP ((size_t)1 << 16)

typedef struct lspan_s {
    uintptr_t start, end;   /* end: past the last slot handed out at the snapshot */
    uintptr_t span_end;     /* past the span's last page */
    uint64_t bit0;          /* first slot's bit in the bitmaps */
    uint64_t osize;         /* bytes per slot (large: the whole span) */
    uint32_t nobj;
    uint8_t cls;            /* 0: large */
} lspan_t;

/* A page-index entry, 64 bits, all scan() needs for a small span without
 * touching the span table (whose cache misses were the mark's main cost):
 *   bits 0-35  the span's first bit (small), or its index (large)
 *   bits 36-42 size class, 0 for a large span
 *   bits 43-48 which page of the span this is (small spans have <= 32)
 *   bit  63    entry present
 * Each small span owns capacity + 1 bits: slots past the used mark are
 * never flagged allocated, and the extra bit absorbs a pointer into the
 * tail that no whole object covers, so no bound check is needed. */
#define ENT_LOW ((1ull << 36) - 1)
#define ENT_PRESENT (1ull << 63)
#define ADDR_MASK ((1ull << 56) - 1) /* stack entries: block address | class << 56 */

/* A candidate word costs two dependent cache misses, its page-index entry
 * then its slot's bitmap word, both at random on a large heap; one after
 * the other they cost one memory latency each (the mark's main cost on a
 * 1 GiB heap of 10M blocks).  In the reach phase a candidate therefore
 * waits PIPE candidates in a ring while its index entry is prefetched,
 * then PIPE more while its bitmap word is, and is tested and flagged only
 * then: up to 2 * PIPE misses overlap (step).  The order in which blocks
 * are flagged changes, not the set (the mark is a fixpoint). */
#define PIPE 16
/* The reach phase scans a block CHUNK_BYTES at a time: the rest goes
 * back on the stack as one entry of class REST (no size class has that
 * number), under what the chunk pushes.  Scanned whole, a large array of
 * pointers (a hash table, a vector of nodes) put every block it names on
 * the stack at once: 80 MB of stack touched and faulted in for 10M blocks,
 * and every block it named fell out of cache before its turn came.  A
 * block still has at most one entry on the stack, so its bound holds. */
#define CHUNK_BYTES ((size_t)16 << 10)
#define REST 127u
_Static_assert(REST >= MS_NUM_CLASSES && REST <= 255, "REST: a stack entry's class byte no size class uses");

/* A place of the reach phase's ring (step) */
typedef struct pslot_s {
    uintptr_t v;            /* a word that entered the ring */
    const uint64_t *entp;   /* and its page-index entry's address */
    uint64_t b, e;          /* the slot the word before it resolved to: its bit, its stack entry */
} pslot_t;

typedef struct mark_s {
    lspan_t *spans;
    size_t nspans, cap_spans, spans_bytes;
    uint64_t nbits;
    uint64_t *ar, *ind;     /* allocated/reached pairs; indirectly lost */
    size_t ar_bytes, bits_bytes;
    uint64_t **root;        /* page index: page -> entry (above) */
    size_t root_bytes, nleaves;
    uintptr_t lo, hi;       /* lowest and highest span address */
    uint64_t *stack;
    size_t sp, stack_bytes;
    uintptr_t *log;
    size_t log_bytes;
    size_t log_seen;     /* entries of the log already marked from */
    bool oom;
    /* held (below): the mark with the threads stopped */
    uint64_t hold_ns;    /* how long it may take; UINT64_MAX: as long as it needs */
    uint64_t deadline;   /* when it must give way at the latest (0: never), set as it starts (hold) */
    uint64_t cpu_deadline; /* and the checking thread's CPU time it may use until then */
    uint64_t soft;         /* the wall time before which that cannot be spent (past) */
    bool over;           /* it ran out of time: the rest is marked with the program running */
    size_t roots_at;     /* root words marked from so far */
    uintptr_t *pend;     /* blocks in the threads' batches of counts at the stop */
    size_t pend_bytes;
    bool exact;          /* it finished, knowing every block allocated since the snapshot */
    /* rescans (below): the pages written since the last take, and how far
     * they have been rescanned */
    const uintptr_t (*wr)[2];
    size_t nwr, wr_at;
    uintptr_t wr_pos;
    bool wr_ok;
    uint64_t wr_pages;   /* kernel pages rescanned, all rounds */
    uint64_t stop_pages; /* pages the last stop that ran out of time had rescanned (0: none ran out) */
    uint64_t stop_left;  /* and the pages it had taken but not reached */
    uint64_t stop_ns;    /* the next rescan stop's budget (rescan) */
    uint64_t settled, settled_bytes; /* unreached blocks found free at a stop (settle) */
    uint64_t *cand;      /* unreached blocks before the stop: bit, address | 1 if large (settle) */
    size_t ncand, cand_bytes;
    uint64_t *candpg;    /* rescans: a bit per heap page [lo, hi) that holds an unreached block (NULL: none) */
    size_t candpg_bytes;
    /* the reach phase's ring (see PIPE, step); empty places hold
     * sentinels (pipe_reset) */
    pslot_t q[PIPE];
    unsigned qi;
    uint64_t nil;           /* stage 2's sentinel: a bit of m->ar past every span's */
    uint8_t pf_last[128];   /* per stack entry class: the offset of the last byte flood prefetches */
} mark_t;

static pthread_mutex_t check_lock = PTHREAD_MUTEX_INITIALIZER;

static inline bool bit_get(const uint64_t *b, uint64_t i) { return (b[i >> 6] >> (i & 63)) & 1; }
static inline void bit_set(uint64_t *b, uint64_t i) { b[i >> 6] |= 1ull << (i & 63); }
/* The allocated and reached bits of a slot sit side by side (bits 2i and
 * 2i+1 of m->ar): the mark tests both for every candidate pointer, and one
 * cache miss is half of two. */
static inline bool is_alloc(const mark_t *m, uint64_t i) { return (m->ar[i >> 5] >> ((i & 31) * 2)) & 1; }
static inline bool is_reach(const mark_t *m, uint64_t i) { return (m->ar[i >> 5] >> ((i & 31) * 2 + 1)) & 1; }
static inline void set_alloc(mark_t *m, uint64_t i) { m->ar[i >> 5] |= 1ull << ((i & 31) * 2); }
static inline void set_reach(mark_t *m, uint64_t i) { m->ar[i >> 5] |= 2ull << ((i & 31) * 2); }

/* ------------------------------------------------------------------------
 * Snapshot
 * ---------------------------------------------------------------------- */

static void on_span(const span_t *s, void *arg) {
    mark_t *m = arg;
    if (m->oom) return;
    if (m->nspans == m->cap_spans) {
        size_t nb = m->spans_bytes ? m->spans_bytes * 2 : 1 << 20;
        lspan_t *n = ms_os_alloc(nb);
        if (!n) {
            m->oom = true;
            return;
        }
        if (m->nspans) memcpy(n, m->spans, m->nspans * sizeof *n);
        ms_os_free(m->spans, m->spans_bytes);
        m->spans = n, m->spans_bytes = nb, m->cap_spans = nb / sizeof *n;
    }
    lspan_t *l = &m->spans[m->nspans++];
    l->start = s->start;
    l->span_end = s->start + PAGES(s->npages);
    l->cls = s->cls;
    if (s->cls) {
        l->osize = ms_class_size[s->cls];
        l->end = s->start + *(const volatile uint32_t *)&s->used;
        if (l->end < l->start || l->end > l->span_end) l->end = l->start;
        l->nobj = (uint32_t)((l->end - l->start) / l->osize);
        l->end = l->start + l->nobj * l->osize;
    } else {
        l->osize = PAGES(s->npages);
        l->end = l->span_end;
        l->nobj = 1;
    }
}

static bool index_span(mark_t *m, size_t k) {
    const lspan_t *l = &m->spans[k];
    for (uintptr_t pn = l->start >> MS_PAGE_SHIFT; pn < l->span_end >> MS_PAGE_SHIFT; pn++) {
        uint64_t **slot = &m->root[pn >> IDX_LEAF_BITS];
        if (!*slot) {
            *slot = ms_os_alloc(sizeof(uint64_t) << IDX_LEAF_BITS);
            if (!*slot) return false;
            m->nleaves++;
        }
        uint64_t pg = pn - (l->start >> MS_PAGE_SHIFT);
        (*slot)[pn & ((1u << IDX_LEAF_BITS) - 1)] =
            l->cls ? ENT_PRESENT | l->bit0 | (uint64_t)l->cls << 36 | pg << 43 : ENT_PRESENT | (uint64_t)k;
    }
    return true;
}

static void pipe_reset(mark_t *m);

/* snapshot: steps 2 of the top comment; counts allocated blocks and bytes. */
static bool snapshot(mark_t *m, uint64_t *nblocks, uint64_t *bytes) {
    ms_heap_for_each_inuse(on_span, m);
    if (m->oom || m->nspans >= UINT32_MAX) return false;
    uint64_t nbits = 0;
    for (size_t k = 0; k < m->nspans; k++) {
        lspan_t *l = &m->spans[k];
        l->bit0 = nbits;
        nbits += l->cls ? (l->span_end - l->start) / l->osize + 1 : 1;
    }
    if (nbits > ENT_LOW) return false;
    m->nbits = nbits;
    m->bits_bytes = ((nbits + 63) / 64 * 8 + MS_PAGE_MASK) & ~MS_PAGE_MASK;
    if (!m->bits_bytes) m->bits_bytes = MS_PAGE_SIZE;
    /* and one word more, for the pipeline's sentinel (m->nil) */
    m->ar_bytes = (((nbits + 31) / 32 + 1) * 8 + MS_PAGE_MASK) & ~MS_PAGE_MASK;
    m->nil = (nbits + 31) / 32 * 32;
    m->ar = ms_os_alloc(m->ar_bytes);
    m->ind = ms_os_alloc(m->bits_bytes);
    m->root_bytes = sizeof(uint64_t *) << IDX_ROOT_BITS;
    m->root = ms_os_alloc(m->root_bytes);
    if (!m->ar || !m->ind || !m->root) return false;
    pipe_reset(m);
    /* up to 4 lines of a small block (a longer one's sequential read is
     * left to the hardware's stream prefetch); one of a large block's
     * and of a rest's */
    for (unsigned c = 1; c < MS_NUM_CLASSES; c++) m->pf_last[c] = (uint8_t)((ms_class_size[c] < 193 ? ms_class_size[c] : 193) - 1);
    uint64_t n = 0, b = 0;
    m->lo = UINTPTR_MAX, m->hi = 0;
    for (size_t k = 0; k < m->nspans; k++) {
        const lspan_t *l = &m->spans[k];
        if (!index_span(m, k)) return false;
        if (l->start < m->lo) m->lo = l->start;
        if (l->span_end > m->hi) m->hi = l->span_end;
        if (!l->cls) {
            set_alloc(m, l->bit0);
            n++, b += l->osize;
            continue;
        }
        uintptr_t p = l->start;
        uint64_t c = 0, bit = l->bit0, acc = 0;
        for (uint32_t i = 0; i < l->nobj; i++, p += l->osize, bit++) {
            /* this loop reads a word of every block, the heap in address
             * order (spans come in address order); the hardware's stream
             * prefetch alone leaves it a third slower (1 GiB heap).  The
             * bits of a word of m->ar are gathered here and stored once. */
            __builtin_prefetch((const char *)p + SNAP_AHEAD);
            uint64_t a = ((void *const volatile *)p)[1] != (void *)ms_free_cookie((void *)p);
            acc |= a << ((bit & 31) * 2);
            c += a;
            if ((bit & 31) == 31) m->ar[bit >> 5] |= acc, acc = 0;
        }
        if (acc) m->ar[(bit - 1) >> 5] |= acc;
        n += c, b += c * l->osize;
    }
    /* no span: an empty range (lo above hi would let -1 through, v - lo
     * wrapping to 0, and index past the root) */
    if (m->lo > m->hi) m->lo = m->hi = 0;
    *nblocks = n, *bytes = b;
    m->stack_bytes = ((n + 1) * sizeof(uint64_t) + MS_PAGE_MASK) & ~MS_PAGE_MASK;
    m->stack = ms_os_alloc(m->stack_bytes);
    return m->stack != NULL;
}

/* ------------------------------------------------------------------------
 * Mark
 * ---------------------------------------------------------------------- */

/* scan: each word of [w, w+n) that points into an allocated snapshot block
 * not yet flagged gets it flagged (reach, or ind when indirect) and pushed.
 * self: the block being scanned in the indirect phase (a block's pointer
 * to itself does not make it indirect). */
static void scan(mark_t *m, const uintptr_t *w, size_t n, bool indirect, uint64_t self) {
    const uintptr_t lo = m->lo, range = m->hi - m->lo;
    uint64_t **root = m->root;
    for (size_t i = 0; i < n; i++) {
        uintptr_t v = w[i];
        if (v - lo >= range) continue;
        const uint64_t *leaf = root[v >> (MS_PAGE_SHIFT + IDX_LEAF_BITS)];
        if (!leaf) continue;
        uint64_t ent = leaf[(v >> MS_PAGE_SHIFT) & ((1u << IDX_LEAF_BITS) - 1)];
        if (!ent) continue;
        unsigned cls = (unsigned)(ent >> 36) & 127;
        uint64_t b;
        uintptr_t start;
        if (cls) {
            start = (v & ~(uintptr_t)MS_PAGE_MASK) - (((ent >> 43) & 63) << MS_PAGE_SHIFT);
            uint64_t slot = ((v - start) * ms_class_magic[cls]) >> MS_MAGIC_SHIFT;
            b = (ent & ENT_LOW) + slot;
            start += slot * ms_class_size[cls];
        } else {
            const lspan_t *l = &m->spans[ent & ENT_LOW];
            b = l->bit0, start = l->start;
        }
        uint64_t pair = (m->ar[b >> 5] >> ((b & 31) * 2)) & 3;
        if (pair != 1) continue; /* not allocated, or already reached */
        if (indirect) {
            if (b == self || bit_get(m->ind, b)) continue;
            bit_set(m->ind, b);
        } else {
            set_reach(m, b);
        }
        m->stack[m->sp++] = start | (uint64_t)cls << 56;
    }
}

/* The reach phase's pipeline (PIPE above), one ring of PIPE places: a
 * word enters a place with its index entry's address (stage 1), is
 * resolved to its slot's bit and stack entry when the ring comes round
 * (stage 2, in the same place), and is tested and flagged when it comes
 * round again.  An empty place holds sentinels rather than NULL, so that
 * a step tests nothing: the entry address &nil_ent (no span), the bit
 * m->nil (in a word of m->ar past every span's, never flagged
 * allocated).  The code that feeds it works on a pipe_t, the bitmap, the
 * stack and the ring's position in locals, written back to m when it
 * returns: kept in m, they were reloaded after every store to the stack
 * or the ring, and the feeding was most of the mark's instructions. */
static const uint64_t nil_ent = 0;

typedef struct pipe_s {
    mark_t *m;
    pslot_t *q;
    uint64_t *ar, *stack;
    uint64_t *const *root;
    uintptr_t lo, range;
    uint64_t nil;
    size_t sp;
    unsigned i;
} pipe_t;

static inline pipe_t pipe_open(mark_t *m) {
    return (pipe_t){.m = m, .q = m->q, .ar = m->ar, .stack = m->stack, .root = m->root, .lo = m->lo,
                    .range = m->hi - m->lo, .nil = m->nil, .sp = m->sp, .i = m->qi};
}

static inline void pipe_close(const pipe_t *p) { p->m->sp = p->sp, p->m->qi = p->i; }

/* step: word v, whose index entry is at entp, into the ring; what the
 * place held moves on.  The flagging is without a branch, which would go
 * either way at random (the stack has room for one entry more than its
 * bound): a slot allocated and not reached yet gets its reached bit, and
 * its entry pushed. */
static inline __attribute__((always_inline)) void step(pipe_t *p, uintptr_t v, const uint64_t *entp) {
    pslot_t *s = &p->q[p->i++ & (PIPE - 1)];
    uint64_t *w = &p->ar[s->b >> 5], x = *w;
    unsigned sh = (unsigned)(s->b & 31) * 2;
    uint64_t hit = ((x >> sh) & 3) == 1;
    *w = x | hit << (sh + 1);
    p->stack[p->sp] = s->e;
    p->sp += hit;
    /* stage 2: the word that entered PIPE steps ago, to its slot */
    uint64_t ent = *s->entp, b, e;
    uintptr_t ov = s->v;
    unsigned cls = (unsigned)(ent >> 36) & 127;
    if (__builtin_expect(cls != 0, 1)) {
        uintptr_t start = (ov & ~(uintptr_t)MS_PAGE_MASK) - (((ent >> 43) & 63) << MS_PAGE_SHIFT);
        uint64_t slot = ((ov - start) * ms_class_magic[cls]) >> MS_MAGIC_SHIFT;
        b = (ent & ENT_LOW) + slot, e = (start + slot * ms_class_size[cls]) | (uint64_t)cls << 56;
    } else if (ent) {
        const lspan_t *l = &p->m->spans[ent & ENT_LOW];
        b = l->bit0, e = l->start;
    } else {
        b = p->nil, e = 0;
    }
    __builtin_prefetch(&p->ar[b >> 5], 1);
    s->b = b, s->e = e;
    __builtin_prefetch(entp);
    s->v = v, s->entp = entp;
}

/* pipe_reset: the ring empty (sentinels), once the bitmap exists */
static void pipe_reset(mark_t *m) {
    for (unsigned k = 0; k < PIPE; k++) m->q[k] = (pslot_t){.v = 0, .entp = &nil_ent, .b = m->nil, .e = 0};
}

/* drain: everything in the ring is flagged (and pushed) now: two rounds
 * of sentinels move it all out, and leave it empty. */
static inline void drain(pipe_t *p) {
    for (unsigned k = 0; k < 2 * PIPE; k++) step(p, 0, &nil_ent);
}

/* scan_words: scan(m, w, n, false, -) through the pipeline.  The words
 * that fall in the heap's range are first copied out, SCAN_BUF at a time,
 * without a branch (a branch per word, taken at random, cost more than
 * the rest of the mark), and then go on to the pipeline.  Inlined in the
 * loops that call it, so that the pipe_t stays in registers. */
#define SCAN_BUF 64
static inline __attribute__((always_inline)) void scan_words(pipe_t *p, const uintptr_t *w, size_t n) {
    const uintptr_t lo = p->lo, range = p->range;
    uintptr_t buf[SCAN_BUF];
    for (size_t i = 0; i < n; i += SCAN_BUF) {
        const uintptr_t *x = w + i;
        size_t e = n - i < SCAN_BUF ? n - i : SCAN_BUF, j = 0, k = 0;
        for (; j + 2 <= e; j += 2) {
            uintptr_t v0 = x[j], v1 = x[j + 1];
            buf[k] = v0;
            k += v0 - lo < range;
            buf[k] = v1;
            k += v1 - lo < range;
        }
        if (j < e) buf[k] = x[j], k += x[j] - lo < range;
        for (j = 0; j < k; j++) {
            uintptr_t v = buf[j];
            const uint64_t *leaf = p->root[v >> (MS_PAGE_SHIFT + IDX_LEAF_BITS)];
            if (leaf) step(p, v, &leaf[(v >> MS_PAGE_SHIFT) & ((1u << IDX_LEAF_BITS) - 1)]);
        }
    }
}

/* scan_cand: scan_words for the rescans: only a word into a page with an
 * unreached block can matter (cand_pages) */
static inline __attribute__((always_inline)) void scan_cand(pipe_t *p, const uintptr_t *w, size_t n) {
    const uint64_t *pg = p->m->candpg;
    for (size_t i = 0; i < n; i++) {
        uintptr_t v = w[i], d = v - p->lo;
        if (d >= p->range || !((pg[d >> (MS_PAGE_SHIFT + 6)] >> ((d >> MS_PAGE_SHIFT) & 63)) & 1)) continue;
        const uint64_t *leaf = p->root[v >> (MS_PAGE_SHIFT + IDX_LEAF_BITS)];
        if (leaf) step(p, v, &leaf[(v >> MS_PAGE_SHIFT) & ((1u << IDX_LEAF_BITS) - 1)]);
    }
}

/* drain_m: drain, on m (out of the loops that keep a pipe_t) */
static __attribute__((noinline)) void drain_m(mark_t *m) {
    pipe_t p = pipe_open(m);
    drain(&p);
    pipe_close(&p);
}

/* scan_reach: the words of [w, w+n) through the pipeline: the words that
 * fall in an indexed page enter it; the rest are dropped after a compare
 * (range) and one load from the root (hot: a heap spans few leaves). */
static __attribute__((noinline)) void scan_reach(mark_t *m, const uintptr_t *w, size_t n) {
    pipe_t p = pipe_open(m);
    if (m->candpg) scan_cand(&p, w, n);
    else scan_words(&p, w, n);
    pipe_close(&p);
}
static inline uint64_t entry_at(const mark_t *m, uintptr_t p) {
    return m->root[p >> (MS_PAGE_SHIFT + IDX_LEAF_BITS)][(p >> MS_PAGE_SHIFT) & ((1u << IDX_LEAF_BITS) - 1)];
}

/* large_at: the large span holding p, an address in a snapshot block (every
 * page of a large span is indexed). */
static inline const lspan_t *large_at(const mark_t *m, uintptr_t p) { return &m->spans[entry_at(m, p) & ENT_LOW]; }

/* block_of: the bit and byte size of the snapshot block starting at p. */
static uint64_t block_of(const mark_t *m, uintptr_t p, unsigned cls, uint64_t *size) {
    if (!cls) {
        const lspan_t *l = large_at(m, p);
        *size = l->osize;
        return l->bit0;
    }
    uint64_t ent = entry_at(m, p);
    uintptr_t start = (p & ~(uintptr_t)MS_PAGE_MASK) - (((ent >> 43) & 63) << MS_PAGE_SHIFT);
    *size = ms_class_size[cls];
    return (ent & ENT_LOW) + (((p - start) * ms_class_magic[cls]) >> MS_MAGIC_SHIFT);
}

/* rest_of: the end of the snapshot block holding p (p inside it, not at
 * its start: the rest of a block scanned in chunks). */
static uintptr_t rest_of(const mark_t *m, uintptr_t p) {
    uint64_t ent = entry_at(m, p);
    unsigned cls = (unsigned)(ent >> 36) & 127;
    if (!cls) return m->spans[ent & ENT_LOW].start + m->spans[ent & ENT_LOW].osize;
    uintptr_t start = (p & ~(uintptr_t)MS_PAGE_MASK) - (((ent >> 43) & 63) << MS_PAGE_SHIFT);
    return start + ((((p - start) * ms_class_magic[cls]) >> MS_MAGIC_SHIFT) + 1) * ms_class_size[cls];
}

/* Blocks popped from the mark stack wait this many steps in a ring, their
 * first cache line prefetched, before they are scanned: the mark visits
 * blocks in pointer order, all over the heap, and without overlapping those
 * misses it runs at one memory latency per block (about 3x slower on a
 * 1 GiB heap of 10M blocks).  32 rather than 16 once the scan's own
 * instructions got fewer: 2-3% less CPU time on that heap, and 64 no
 * better (by hand). */
#define PREFETCH_RING 32

/* A stop's budget (hold): ns of the checking thread's CPU time, and at most
 * HOLD_WALL times that of wall time.  The threads are stopped, so on an
 * idle machine the two run together; on a loaded one the checking thread
 * waits for a CPU too, and a budget of wall time alone ended stops that had
 * done a third of their work (a rescan stop at a load of 5: 3.3 ms of CPU
 * in 19 ms), which left small heaps' checks to look again, racing with
 * the program (tests/leak/lists.c live: 2 of 20 checks counted a moved
 * chain of 984 nodes lost, at profile_rate=1, in a full test run).  The
 * pause is the wall time, whatever the budget: the report gives it. */
#define HOLD_WALL 8
static void hold(mark_t *m, uint64_t ns) {
    uint64_t now = ms_os_now_ns();
    m->deadline = now + HOLD_WALL * ns, m->soft = now + ns;
    m->cpu_deadline = ms_os_thread_cpu_ns() + ns;
}
/* past: a thread's CPU time grows no faster than the wall clock, so the
 * CPU clock (a system call; the wall clock is the vDSO's) is read only
 * once the budget could have been spent */
static bool past(const mark_t *m) {
    uint64_t now = ms_os_now_ns();
    if (now > m->deadline) return true;
    return now >= m->soft && ms_os_thread_cpu_ns() > m->cpu_deadline;
}


/* flood_reach: flood(m, false), with the pipeline's state in locals (pipe_t) */
static void flood_reach(mark_t *m) {
    uint64_t ring[PREFETCH_RING];
    unsigned head = 0, n = 0, steps = 0;
    pipe_t p = pipe_open(m);
    for (;;) {
        /* every 64 blocks: each may be a 16 KiB chunk (CHUNK_BYTES), and
         * every 1024 let a stop run 5 ms past its deadline (by hand) */
        if (m->deadline && !(++steps & 63) && past(m)) {
            for (; n; n--, head = (head + 1) % PREFETCH_RING) p.stack[p.sp++] = ring[head];
            m->over = true;
            break;
        }
        while (n < PREFETCH_RING && p.sp) {
            uint64_t e = p.stack[--p.sp];
            const char *b = (const char *)(uintptr_t)(e & ADDR_MASK);
            /* every line of a small block: words past the first line are
             * read as soon as the first is (pf_last) */
            const char *q = (const char *)((uintptr_t)b & ~(uintptr_t)63), *last = b + m->pf_last[e >> 56];
            __builtin_prefetch(q);
            __builtin_prefetch(q + 64 < last ? q + 64 : last);
            __builtin_prefetch(q + 128 < last ? q + 128 : last);
            __builtin_prefetch(last);
            ring[(head + n++) % PREFETCH_RING] = e;
        }
        if (!n) {
            pipe_close(&p);
            drain_m(m);
            p = pipe_open(m);
            if (!p.sp) break;
            continue;
        }
        uint64_t e = ring[head];
        head = (head + 1) % PREFETCH_RING, n--;
        uintptr_t a = (uintptr_t)(e & ADDR_MASK);
        unsigned cls = (unsigned)(e >> 56);
        uint64_t size;
        if (cls == REST) {
            size = rest_of(m, a) - a;
        } else if (cls) {
            /* freed since the snapshot: what it holds now is a free-list
             * link, which would keep some other block "reachable" */
            if (((void *const volatile *)a)[1] == (void *)ms_free_cookie((void *)a)) continue;
            size = ms_block_scan_bytes(a, (uint8_t)cls); /* a record in the tail: the request */
        } else {
            size = large_at(m, a)->osize;
        }
        uint64_t want = size < CHUNK_BYTES ? size : CHUNK_BYTES;
        /* pushed before the chunk's own finds, so they are followed first */
        if (size > want) p.stack[p.sp++] = (a + want) | (uint64_t)REST << 56;
        if (m->candpg) {
            pipe_close(&p);
            scan_reach(m, (const uintptr_t *)a, want / sizeof(uintptr_t));
            p = pipe_open(m);
        } else {
            scan_words(&p, (const uintptr_t *)a, want / sizeof(uintptr_t));
        }
    }
    pipe_close(&p);
}

/* flood: scans every block on the stack, and what they push, until empty,
 * or until its stop's budget is spent (hold, past; m->over: what it had
 * popped goes back on the stack, where the next flood finds it). */
static void flood(mark_t *m, bool indirect) {
    if (!indirect) {
        flood_reach(m);
        return;
    }
    while (m->sp) {
        uint64_t e = m->stack[--m->sp];
        uintptr_t p = (uintptr_t)(e & ADDR_MASK);
        unsigned cls = (unsigned)(e >> 56);
        uint64_t size, self = UINT64_MAX;
        if (cls == REST) {
            size = rest_of(m, p) - p;
        } else {
            if (cls && ((void *const volatile *)p)[1] == (void *)ms_free_cookie((void *)p)) continue;
            self = block_of(m, p, cls, &size);
            if (cls) size = ms_block_scan_bytes(p, (uint8_t)cls);
        }
        scan(m, (const uintptr_t *)p, size / sizeof(uintptr_t), true, self);
    }
}

/* mark_addrs: each listed block (a new one) is reachable, with what it
 * reaches.  A new block is not in the snapshot, so marking its address
 * reaches nothing: its words are read as roots.  A program that moves its
 * only pointers to old blocks into a block it has just allocated (CPython
 * growing a list: realloc to a new array, the old one freed) showed those
 * old blocks lost when only the addresses were marked (a helper session:
 * 8,078 false indirect leaks in one of four live checks). */
static void mark_addrs(mark_t *m, const uintptr_t *a, size_t n) {
    scan_reach(m, a, n);
    for (size_t i = 0; i < n; i++) {
        uintptr_t start;
        size_t size;
        /* the mappings are pinned: a block freed since still reads */
        if (ms_block_find(a[i], &start, &size) && start == a[i]) {
            const span_t *s = ms_pagemap_lookup((const void *)start);
            if (s && s->cls) size = ms_block_scan_bytes(start, s->cls); /* a record in the tail: the request */
            scan_reach(m, (const uintptr_t *)start, size / sizeof(uintptr_t));
        }
    }
    flood(m, false);
}

/* unreached: allocated blocks the mark has not reached (yet). */
static uint64_t unreached(const mark_t *m) {
    uint64_t n = 0;
    for (uint64_t w = 0; w < (m->nbits + 31) / 32; w++)
        n += (uint64_t)__builtin_popcountll(m->ar[w] & ~(m->ar[w] >> 1) & 0x5555555555555555ull);
    return n;
}

/* next_unreached: the first slot of span l from i on that holds an
 * allocated block not reached, or l->nobj; a word of the bitmap (32 slots)
 * with none is passed at once. */
static inline uint32_t next_unreached(const mark_t *m, const lspan_t *l, uint32_t i) {
    for (; i < l->nobj; i++) {
        uint64_t b = l->bit0 + i, w = m->ar[b >> 5];
        if (!(w & ~(w >> 1) & 0x5555555555555555ull)) { /* none of this word's slots: past them */
            i += 31 - (uint32_t)(b & 31);
            continue;
        }
        if (is_alloc(m, b) && !is_reach(m, b)) return i;
    }
    return l->nobj;
}

/* reached_in: how many of the slots whose bits are [b, e) are reached
 * (a reached slot is allocated: the mark flags only those), a word of
 * the bitmap (32 slots) at a time */
static uint64_t reached_in(const mark_t *m, uint64_t b, uint64_t e) {
    uint64_t n = 0;
    while (b < e) {
        unsigned k = 32 - (unsigned)(b & 31);
        if (e - b < k) k = (unsigned)(e - b);
        uint64_t w = (m->ar[b >> 5] >> ((b & 31) * 2 + 1)) & 0x5555555555555555ull;
        if (k < 32) w &= (1ull << (2 * k)) - 1;
        n += (uint64_t)__builtin_popcountll(w);
        b += k;
    }
    return n;
}

/* mark_loader_blocks: blocks the dynamic loader allocated are roots, as
 * under LeakSanitizer (its use_ld_allocations).  glibc keeps a joined
 * thread's stack for the next thread, and with it the thread's DTV, which
 * the loader calloc'd and which only that cached stack refers to; glibc
 * lists such stacks nowhere a checker may read, so they are not scanned,
 * and every thread the program ever joined would show one lost block.  A
 * block is the loader's if its allocation stack starts there, so this
 * knows only blocks with a stack (all of them at profile_rate=1).  Returns
 * the bytes it mapped, 0 if none were needed or memory was refused (*ok
 * false then). */
static size_t mark_loader_blocks(mark_t *m, uintptr_t lo, uintptr_t hi, bool *ok) {
    uint64_t n = lo < hi ? unreached(m) : 0;
    if (!n) return 0;
    size_t bytes = ((size_t)n * (sizeof(uintptr_t) + sizeof(uint32_t)) + MS_PAGE_MASK) & ~MS_PAGE_MASK;
    uintptr_t *a = ms_os_alloc(bytes);
    if (!a) {
        *ok = false;
        return 0;
    }
    uint32_t *ids = (uint32_t *)(a + n);
    size_t k = 0;
    for (size_t s = 0; s < m->nspans && k < n; s++) {
        const lspan_t *l = &m->spans[s];
        for (uint32_t i = next_unreached(m, l, 0); i < l->nobj && k < n; i = next_unreached(m, l, i + 1))
            a[k++] = l->start + i * l->osize;
    }
    ms_prof_block_stacks(a, ids, k);
    size_t j = 0;
    for (size_t i = 0; i < k; i++) {
        const uintptr_t *pcs;
        uint32_t npcs;
        bool trunc;
        if (ids[i] != UINT32_MAX && ms_prof_stack_get(ids[i], &pcs, &npcs, &trunc) && npcs > 0 &&
            pcs[0] - 1 - lo < hi - lo)
            a[j++] = a[i];
    }
    mark_addrs(m, a, j);
    ms_os_free(a, bytes);
    return bytes;
}

/* ------------------------------------------------------------------------
 * Classes
 * ---------------------------------------------------------------------- */

typedef struct lost_s { uintptr_t addr; uint64_t size; uint32_t kind; } lost_t;

/* lost_at: the index of the lost block holding address w, or n (lost[] is
 * in address order). */
static size_t lost_at(const lost_t *lost, size_t n, uintptr_t w) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (lost[mid].addr <= w) lo = mid + 1;
        else hi = mid;
    }
    return lo > 0 && w - lost[lo - 1].addr < lost[lo - 1].size ? lo - 1 : n;
}

/* confirm_lost: at a sampled rate only the sampled blocks allocated during
 * the check are listed as new.  An unsampled one that took the address of
 * a block freed after the snapshot, its pointer stored where the roots had
 * already been copied, looked lost: a program replacing the blocks of a
 * global table reported a hundred such blocks per check.  So the roots are
 * copied a second time (a second, equally short pause): a lost block a
 * root points at now, and whatever lost block it points at, is dropped, as
 * changed during the check, and so is one freed since.  What is left is
 * lost at both copies.  (A new
 * block hung only from an older heap block is not caught this way; at
 * profile_rate=1 every new block is listed and none of this is needed.)
 * Returns the bytes it mapped; flags dropped blocks with kind UINT32_MAX. */
static size_t confirm_lost(lost_t *lost, size_t n, const ms_leak_self_t *self, ms_leak_result_t *res) {
    size_t sb = ((n + 1) * sizeof(size_t) + MS_PAGE_MASK) & ~MS_PAGE_MASK;
    size_t *stack = ms_os_alloc(sb);
    ms_leak_roots_t again;
    if (!stack || !ms_leak_roots_capture(&again, self, NULL, NULL)) {
        ms_os_free(stack, sb);
        return 0;
    }
    ms_leak_pause_add(&res->roots, &again);
    size_t sp = 0, mapped = sb + again.map_bytes;
    for (size_t k = 0; k < again.nwords; k++) {
        size_t i = lost_at(lost, n, again.words[k]);
        if (i < n && lost[i].kind != UINT32_MAX) lost[i].kind = UINT32_MAX, stack[sp++] = i;
    }
    ms_leak_roots_free(&again);
    while (sp) { /* the heap's mappings are pinned: a block freed meanwhile still reads */
        const lost_t *b = &lost[stack[--sp]];
        const uintptr_t *w = (const uintptr_t *)b->addr;
        for (size_t k = 0; k < b->size / sizeof(uintptr_t); k++) {
            size_t i = lost_at(lost, n, ((const volatile uintptr_t *)w)[k]);
            if (i < n && lost[i].kind != UINT32_MAX) lost[i].kind = UINT32_MAX, stack[sp++] = i;
        }
    }
    ms_os_free(stack, sb);
    /* and a block freed since the classes were drawn was no leak */
    for (size_t i = 0; i < n; i++) {
        uintptr_t start;
        size_t size;
        if (lost[i].kind != UINT32_MAX && (!ms_block_find(lost[i].addr, &start, &size) || start != lost[i].addr))
            lost[i].kind = UINT32_MAX;
    }
    return mapped;
}

/* group: lost blocks by (kind, stack) into r->groups, largest first. */
static bool group(ms_leak_result_t *r, const lost_t *lost, const uint32_t *ids, size_t n, size_t *mapped);

/* mark_free: returns what the mark mapped, and forgets it: a failed
 * check reaches it twice (it once unmapped the tables a second time and
 * read a freed root, SIGSEGV, when no thread could be stopped) */
static void mark_free(mark_t *m) {
    ms_os_free(m->spans, m->spans_bytes);
    ms_os_free(m->ar, m->ar_bytes);
    ms_os_free(m->ind, m->bits_bytes);
    if (m->root)
        for (size_t i = 0; i < ((size_t)1 << IDX_ROOT_BITS); i++)
            if (m->root[i]) ms_os_free(m->root[i], sizeof(uint64_t) << IDX_LEAF_BITS);
    ms_os_free(m->root, m->root_bytes);
    ms_os_free(m->stack, m->stack_bytes);
    ms_os_free(m->log, m->log_bytes);
    ms_os_free(m->pend, m->pend_bytes);
    ms_os_free(m->cand, m->cand_bytes);
    ms_os_free(m->candpg, m->candpg_bytes);
    *m = (mark_t){0};
}

static size_t mark_mapped(const mark_t *m) {
    return m->spans_bytes + m->ar_bytes + m->bits_bytes + m->root_bytes + m->nleaves * (sizeof(uint64_t) << IDX_LEAF_BITS) +
           m->stack_bytes + m->log_bytes + m->pend_bytes + m->cand_bytes + m->candpg_bytes;
}

/* More looks.  The mark runs while the program does, so a block whose
 * only pointer moves from a place not yet scanned to one already scanned
 * looks lost (see the top of this file).  At exit that flipped the status
 * to 23: two threads updating a std::map while main exited had a string's
 * buffer reported lost in 14 runs of 20, where LeakSanitizer, which keeps
 * the world stopped for its whole check, reported nothing (a helper's
 * sweep).  Stopping every thread for the whole mark would have them hold
 * whatever allocator and profiler locks they held, which the mark needs.
 * So a check that finds blocks lost while other threads ran looks again,
 * at once, and keeps only the blocks lost at every look (by address: a
 * block that moved has settled by the next look; one allocated at a lost
 * block's address in between is lost itself, or it would be reachable).
 * It looks again while a look drops a candidate, up to MAX_LOOKS: a
 * program that moves pointers without pause (tests/leak/shuffle.c, under
 * load) has 3-5% of its blocks in flight at each look, and some of them
 * in flight at two.  Real leaks are lost at every look, so a check that
 * finds only those looks twice.  A check with one thread, or that finds
 * nothing, looks once.  Nor does one whose mark from the roots finished
 * with the threads stopped and every new block known (exact, see held): a
 * program whose threads move whole chains between linked lists
 * (tests/leak/lists.c) defeated four looks in 5 runs of 10 at exit and in
 * 5-13 live checks of 20 before the threads were held. */
#define MAX_LOOKS 4
typedef struct looks_s {
    const uintptr_t *prev;   /* the candidates so far (lost at every earlier look), in address order */
    size_t nprev;
    uintptr_t *lost;         /* out: this look's lost blocks (ms_os_alloc, lost_bytes) */
    size_t nlost, lost_bytes;
    bool at_exit;            /* held may take as long as it needs */
} looks_t;

static bool in_prev(const looks_t *lk, uintptr_t a) {
    size_t lo = 0, hi = lk->nprev;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (lk->prev[mid] < a) lo = mid + 1;
        else hi = mid;
    }
    return lo < lk->nprev && lk->prev[lo] == a;
}

static ms_leak_result_t *check_look(const ms_leak_self_t *self, looks_t *lk);

/* mark_roots: n root words at w, and all they reach; in chunks, for the
 * reason given at CHUNK_BYTES */
static void mark_roots(const uintptr_t *w, size_t n, void *arg) {
    mark_t *m = arg;
    for (size_t i = 0; i < n; i += CHUNK_BYTES / sizeof(uintptr_t)) {
        size_t k = n - i;
        scan_reach(m, w + i, k < CHUNK_BYTES / sizeof(uintptr_t) ? k : CHUNK_BYTES / sizeof(uintptr_t));
        flood(m, false);
    }
}

/* mark_root_words: the copied roots, from where the last call stopped
 * (m->over), and all they reach. */
static void mark_root_words(mark_t *m, const ms_leak_roots_t *r) {
    while (m->roots_at < r->nwords && !m->over) {
        size_t k = r->nwords - m->roots_at;
        if (k > CHUNK_BYTES / sizeof(uintptr_t)) k = CHUNK_BYTES / sizeof(uintptr_t);
        mark_roots(r->words + m->roots_at, k, m); /* one chunk */
        m->roots_at += k;
    }
}

/* Settling at the stop.  A block of the snapshot that the mark from a
 * stop leaves unreached is lost only if it was allocated at that stop; if
 * its slot was free then (freed between the snapshot and the stop), it is
 * no leak, and whatever occupies the slot later was allocated after the
 * stop, which is reachable by the rule of step 4.  The classes cannot tell
 * that later: "allocated now" (ms_block_find) and "listed as new" (the
 * profiler's log) are two looks at two instants, and a malloc makes its
 * block look allocated (the free cookie cleared, malloc.c) before the
 * profiler lists it (after capturing its stack, in the thread's batch).
 * A block handed out in the slot of one freed before the stop, whose
 * malloc was under way while the classes were drawn and the log stopped,
 * was allocated to the first look and new to neither: it was reported
 * definitely lost (tests/leak/shuffle.c at exit, about one run in 250
 * under load, with and without its stack recorded).  So every stop that
 * settles the mark drops, with the threads still stopped, the unreached
 * blocks whose slot is free at that instant (settle_one): held, when it
 * finished the mark (settle_unreached), and the rescan's stop (settle).
 * A thread stopped inside malloc between taking the slot and clearing its
 * cookie holds the slot's address in a register or on its stack, so the
 * slot was reached if the snapshot knew it, and dropped as free if not;
 * one stopped inside free after writing the cookie frees a block that was
 * not lost. */
static inline void settle_one(mark_t *m, uint64_t b, uintptr_t p) {
    uintptr_t st;
    size_t sz;
    if (ms_block_find(p, &st, &sz) && st == p) return; /* allocated at this instant */
    uint64_t ent = entry_at(m, p);
    unsigned cls = (unsigned)(ent >> 36) & 127;
    m->ar[b >> 5] &= ~(1ull << ((b & 31) * 2));
    m->settled++, m->settled_bytes += cls ? ms_class_size[cls] : m->spans[ent & ENT_LOW].osize;
}

/* settle_unreached: settle_one for every unreached block, found from the
 * bitmap (no list made beforehand, as the rescans' is); false if the
 * stop's time ran out first. */
static bool settle_unreached(mark_t *m) {
    for (size_t k = 0; k < m->nspans; k++) {
        if (m->deadline && !(k & 63) && past(m)) return false;
        const lspan_t *l = &m->spans[k];
        for (uint32_t i = next_unreached(m, l, 0); i < l->nobj; i = next_unreached(m, l, i + 1))
            settle_one(m, l->bit0 + i, l->start + (uintptr_t)i * l->osize);
    }
    return true;
}

/* held: the mark from the copied roots, and from every block allocated
 * since the snapshot (the log so far, and what the threads' batches of
 * counts still hold), while the other threads are still stopped.  No
 * pointer can move meanwhile, so if it finishes, nothing reachable at the
 * stop is missed, as under LeakSanitizer, which keeps the world stopped
 * for its whole check, and the check need not look again (exact; at
 * profile_rate=1, without leaks_mmap's mappings, which are read after,
 * and with every thread stopped).  Everything here reads memory the check
 * owns or the pinned heap (ms_block_find and the profiler's _stopped
 * readers take no lock), so a stopped thread's lock cannot stall it.  It
 * pauses the program for as long as it runs: at exit that costs nothing
 * and it runs to the end; a live check gives it HOLD_NS, enough for about
 * a hundred thousand small blocks (80,000 took 1.7-2.5 ms on the 2-CPU
 * machine at load 7, by hand), and marks the rest with the program running
 * (then rescans, or looks again, if it finds anything: see the top). */
#define HOLD_NS 4000000ull
/* With the kernel tracking writes, what the first stop does not mark is
 * settled by the rescan's stop (below), so the first stop needs to hold
 * only long enough to finish a small heap's mark (80,000 blocks in
 * 1.7-2.5 ms at load 7), and a large heap's first pause is a quarter of
 * what it was. */
#define HOLD_TRACKED_NS 1000000ull
/* Even on a heap the hold cannot finish, the part it marks has no race:
 * live checks of 800,000 nodes moving between lists (tests/leak/lists.c's
 * program, larger) counted false leaks in 17 of 20 checks without it, 2-4
 * with 2 ms, none in 40 with 4 ms (by hand); the price is up to 4 ms more
 * pause on such a heap. */
static bool held(ms_leak_roots_t *r, void *arg) {
    mark_t *m = arg;
    if (m->hold_ns != UINT64_MAX) hold(m, m->hold_ns);
    else m->deadline = 0;
    mark_root_words(m, r);
    size_t nlog = m->log && !m->over ? ms_prof_log_count_stopped() : 0, npend = 0;
    bool all = false;
    if (nlog) mark_addrs(m, m->log, nlog);
    if (m->pend && !m->over) npend = ms_prof_pending_stopped(m->pend, m->pend_bytes / sizeof(uintptr_t), &all);
    if (npend) mark_addrs(m, m->pend, npend);
    bool done = !m->over && settle_unreached(m); /* Settling at the stop, above */
    m->deadline = 0, m->over = false; /* the rest, if any, with the program running */
    m->exact = done && m->log && nlog < LOG_CAP && all;
    return done;
}

/* ------------------------------------------------------------------------
 * Rescans of written pages
 * ---------------------------------------------------------------------- */

/* A check whose mark ran with the program going on, and found blocks it
 * did not reach, asks writes.c which pages the program wrote since the
 * snapshot (their protection was armed before it) and rescans those, then
 * stops the threads, copies the roots again and rescans the pages written
 * meanwhile, with them stopped (HOLD_NS of CPU time, as held; twice that
 * after a stop that ran out while following what it reached).  A block reachable at
 * that stop is reached: a pointer to it lies in a root (copied now), in a
 * block the mark scanned and whose page has not been written since (so the
 * pointer was there when it was scanned), or in a written page (rescanned
 * now).  If the rescan finishes inside the stop, the check saw the program
 * at that instant, exactly, at any profile_rate, and looks only once: the
 * second whole look it would take otherwise was half of a check's time on
 * a large heap (bench/run_leaks.sh).  If it does not, it goes on with the
 * program running and tries again, up to MAX_RESCANS stops, and after that
 * the check looks again as before (More looks, below).
 *
 * What a written page holds is judged block by block: a block the mark
 * reached is scanned again (the part on the page), a block allocated
 * since the snapshot is read as a root (it is new, so reachable by the
 * rule of step 4), a block not reached is left alone (the candidates:
 * reaching one later scans it whole), and a free slot is skipped.  A page
 * that cannot be told (the middle of a large block allocated since the
 * snapshot, whose pages the page map does not name) is read as roots:
 * that can only keep a block counted reachable, never report one lost. */
#define MAX_RESCANS 3
#define PRE_PASSES 3
#define PRE_ENOUGH_PAGES 1024

static inline bool slot_free_now(uintptr_t obj) {
    return ((void *const volatile *)obj)[1] == (void *)ms_free_cookie((void *)obj);
}

static inline void rescan_words(mark_t *m, uintptr_t lo, uintptr_t hi) {
    if (hi > lo) scan_reach(m, (const uintptr_t *)lo, (hi - lo) / sizeof(uintptr_t));
}

/* rescan_page: [lo, hi), inside heap page pg, was written */
static void rescan_page(mark_t *m, uintptr_t pg, uintptr_t lo, uintptr_t hi) {
    uint64_t ent = 0;
    if (pg - m->lo < m->hi - m->lo) {
        const uint64_t *leaf = m->root[pg >> (MS_PAGE_SHIFT + IDX_LEAF_BITS)];
        if (leaf) ent = leaf[(pg >> MS_PAGE_SHIFT) & ((1u << IDX_LEAF_BITS) - 1)];
    }
    const span_t *s = ms_pagemap_lookup((const void *)pg);
    bool small = s && s->state == SPAN_INUSE && s->cls && pg >= s->start && pg < s->start + PAGES(s->npages);
    unsigned cls = (unsigned)(ent >> 36) & 127;
    uint64_t bit0 = UINT64_MAX; /* the span's first bit, if the snapshot knows the span as it is now */
    if (ent && cls) {
        uintptr_t start = pg - (((ent >> 43) & 63) << MS_PAGE_SHIFT);
        if (small && s->start == start && s->cls == cls) bit0 = ent & ENT_LOW;
    } else if (ent) {
        const lspan_t *l = &m->spans[ent & ENT_LOW];
        uintptr_t st;
        size_t sz;
        if (ms_block_find(l->start, &st, &sz) && st == l->start && sz == l->osize) { /* that block still */
            if (is_reach(m, l->bit0)) rescan_words(m, lo, hi);
            return;
        }
    }
    if (!small) { /* a large block's middle, or nothing the page map names */
        rescan_words(m, lo, hi);
        return;
    }
    size_t osz = ms_class_size[s->cls];
    uintptr_t used_end = s->start + *(const volatile uint32_t *)&s->used, span_end = s->start + PAGES(s->npages);
    uint64_t i = ((lo - s->start) * ms_class_magic[s->cls]) >> MS_MAGIC_SHIFT;
    for (uintptr_t obj = s->start + i * osz; obj < hi && obj + osz <= span_end; obj += osz, i++) {
        uintptr_t end = obj + ms_block_scan_bytes(obj, s->cls); /* a record in the tail: the request */
        uintptr_t a = obj > lo ? obj : lo, e = end < hi ? end : hi;
        if (bit0 != UINT64_MAX && is_alloc(m, bit0 + i)) {
            if (is_reach(m, bit0 + i)) rescan_words(m, a, e);
        } else if (obj < used_end && !slot_free_now(obj)) {
            rescan_words(m, a, e);
        }
    }
}

/* rescan_written: the pages of the last take, from where the last call
 * stopped (m->over).  In a stop the clock is read every 16 pages, across
 * ranges, as well as in flood: flood reads it only among the blocks it
 * pops, and a page that points at nothing new pushes none, so a CPython
 * whose threads wrote 18,000 pages during a pass was held 25 ms past a
 * 4 ms deadline (by hand), and tests/leak/writers.c, whose written pages
 * come in ranges of a few, 13 ms even with the clock read every 16 pages
 * of a range. */
static void rescan_written(mark_t *m) {
    unsigned k = 0;
    while (m->wr_at < m->nwr && !m->over) {
        uintptr_t hi = m->wr[m->wr_at][1], p = m->wr_pos ? m->wr_pos : m->wr[m->wr_at][0];
        while (p < hi && !m->over) {
            uintptr_t pg = p & ~(uintptr_t)MS_PAGE_MASK, e = pg + MS_PAGE_SIZE < hi ? pg + MS_PAGE_SIZE : hi;
            rescan_page(m, pg, p, e);
            m->wr_pages += (e - p + 4095) / 4096;
            p = e;
            if ((++k & 15) == 0) {
                flood(m, false);
                if (m->deadline && !m->over && past(m)) m->over = true;
            }
        }
        flood(m, false);
        if (p >= hi && !m->over) m->wr_at++, p = 0;
        m->wr_pos = p;
    }
}

/* wr_total: the kernel pages of the last take */
static uint64_t wr_total(const mark_t *m) {
    uint64_t pages = 0;
    for (size_t i = 0; i < m->nwr; i++) pages += (m->wr[i][1] - m->wr[i][0]) >> 12;
    return pages;
}

static int take_written(mark_t *m, bool stopped) {
    int r = ms_leak_writes_take(&m->wr, &m->nwr, stopped);
    m->wr_ok = r >= 0;
    m->wr_at = 0, m->wr_pos = 0;
    return r;
}

/* cand_pages: m->candpg for the rescans.  Once the look's mark is done,
 * the only words a rescan must follow are those into a block still
 * unreached (a candidate): a word into a reached block, a free slot or a
 * block allocated since the snapshot changes nothing, and a block the
 * rescan reaches is scanned by flood, through the same filter.  So every
 * word is first held to a bit per heap page, set where a candidate lies
 * (every page of a large one: interior pointers count), a bitmap of 16 KiB
 * for a 1 GiB heap that the cache keeps, and only the few that hit go on
 * to the page index and the slot's bits.  The rescan of a written page
 * was 1.4 us for CPython's heap, most of it in that index for words that
 * point at reached objects, and a stop can rescan only what its 4 ms
 * allow.  Bits are never cleared (a candidate reached later leaves its
 * page's bit set: a few words more go the long way).  Skipped (NULL) if
 * the heap's range would need more than 16 MiB of bits. */
static void cand_pages(mark_t *m) {
    uint64_t npg = (m->hi - m->lo) >> MS_PAGE_SHIFT;
    if (m->candpg || !npg || npg > ((uint64_t)16 << 23)) return;
    size_t nb = ((npg + 63) / 64 * 8 + MS_PAGE_MASK) & ~(size_t)MS_PAGE_MASK;
    uint64_t *pg = ms_os_alloc(nb);
    if (!pg) return;
    for (size_t k = 0; k < m->nspans; k++) {
        const lspan_t *l = &m->spans[k];
        for (uint32_t i = next_unreached(m, l, 0); i < l->nobj; i = next_unreached(m, l, i + 1)) {
            uintptr_t a = l->start + (uintptr_t)i * l->osize, e = a + l->osize - 1;
            for (uint64_t p = (a - m->lo) >> MS_PAGE_SHIFT; p <= (e - m->lo) >> MS_PAGE_SHIFT && p < npg; p++)
                pg[p >> 6] |= 1ull << (p & 63);
        }
    }
    m->candpg = pg, m->candpg_bytes = nb;
}

/* list_unreached: the blocks not reached yet, for settle, listed with the
 * program running (walking every span's bits in the stop took longer than
 * the stop may: 4 ms for 10M blocks, by hand); the list only shrinks */
static bool list_unreached(mark_t *m) {
    if (!m->cand) {
        m->cand_bytes = ((unreached(m) + 1) * 2 * sizeof(uint64_t) + MS_PAGE_MASK) & ~MS_PAGE_MASK;
        if (!(m->cand = ms_os_alloc(m->cand_bytes))) return false;
    }
    size_t n = 0, cap = m->cand_bytes / (2 * sizeof(uint64_t));
    for (size_t k = 0; k < m->nspans; k++) {
        const lspan_t *l = &m->spans[k];
        for (uint32_t i = next_unreached(m, l, 0); i < l->nobj && n < cap; i = next_unreached(m, l, i + 1))
            m->cand[2 * n] = l->bit0 + i, m->cand[2 * n + 1] = (l->start + (uintptr_t)i * l->osize) | !l->cls, n++;
    }
    m->ncand = n;
    return true;
}

/* settle: with the threads stopped and the rescan done, the blocks still
 * unreached are the ones lost at this instant, but for those freed during
 * the mark: their slots are free now, and a block allocated there after
 * the threads go on would be taken for the lost one (unlisted at a sampled
 * rate, and at any rate while its malloc is under way: see Settling at the
 * stop, above held).  So those are dropped from the snapshot now.  False
 * if the stop's time ran out first (the check is then not exact). */
static bool settle(mark_t *m) {
    for (size_t k = 0; k < m->ncand; k++) {
        if (!(k & 255) && past(m)) return false;
        uint64_t b = m->cand[2 * k];
        if (is_alloc(m, b) && !is_reach(m, b)) settle_one(m, b, m->cand[2 * k + 1] & ~(uintptr_t)1);
    }
    return true;
}

/* held_rescan: the rescan's stop (ms_leak_roots_capture's held) */
static bool held_rescan(ms_leak_roots_t *r, void *arg) {
    mark_t *m = arg;
    hold(m, m->stop_ns);
    int taken = take_written(m, true); /* no lock taken: the threads may hold any */
    uint64_t before = m->wr_pages, pages = wr_total(m);
    if (taken > 0) {
        mark_root_words(m, r);
        rescan_written(m);
    }
    if (m->over) {
        uint64_t done = m->wr_pages - before;
        m->stop_pages = done + 1, m->stop_left = pages > done ? pages - done : 0;
    }
    bool done = taken > 0 && !m->over && settle(m);
    m->deadline = 0, m->over = false;
    return done;
}

/* rescan: the rounds above; true if one finished inside its stop with
 * every thread stopped (the check is then exact); *stops gets the pauses */
static bool rescan(mark_t *m, const ms_leak_self_t *self, ms_leak_roots_t *stops, bool *ok) {
    cand_pages(m);
    for (int round = 0; round < MAX_RESCANS; round++) {
        /* with the program running, until what it writes during one pass
         * is little enough for the stop to rescan (the way a live
         * migration copies dirty pages before it stops the guest): a
         * CPython whose four threads churned dicts wrote 15,000-27,000
         * pages during a check, and one pass left the stop more than its
         * 4 ms in half the checks (by hand; up to three passes a round) */
        uint64_t pages = 0;
        for (int pass = 0; pass < PRE_PASSES; pass++) {
            if (take_written(m, false) < 0) return false;
            pages = wr_total(m);
            rescan_written(m);
            if (pages <= PRE_ENOUGH_PAGES) break;
        }
        /* a stop ran out of time on the pages themselves (thousands, more
         * than half of them not reached), and the program wrote more than
         * twice what it managed during the last pass: the next would run
         * out too, and every stop is a pause of the program's (CPython,
         * above, and tests/leak/writers.c took three stops of 4 ms and
         * more before the check looked again) */
        if (m->stop_pages && m->stop_left > m->stop_pages && m->stop_left > 4 * PRE_ENOUGH_PAGES &&
            pages > 2 * m->stop_pages)
            return false;
        /* otherwise the stop that ran out spent its time following what it
         * reached: lists big's chains moved meanwhile, thousands of misses
         * to follow, took a stop's 4 ms on a few hundred pages in a third
         * of its checks at a load of 5 (and such a check looks again,
         * which races with the threads); the next stop, given twice the
         * time, finished in 0.6-1.6 ms, the chains followed by then */
        m->stop_ns = m->stop_pages ? 2 * HOLD_NS : HOLD_NS;
        if (!list_unreached(m)) return false;
        ms_leak_roots_t again;
        m->roots_at = 0;
        if (!ms_leak_roots_capture(&again, self, held_rescan, m)) {
            *ok = false;
            return false;
        }
        ms_leak_pause_add(stops, &again);
        if (m->wr_ok) {
            mark_root_words(m, &again);
            rescan_written(m);
        }
        ms_leak_roots_free(&again);
        if (!m->wr_ok) return false;
        if (again.held && again.nunstopped == 0) return true;
    }
    return false;
}

ms_leak_result_t *ms_leak_check(const ms_leak_self_t *self, bool at_exit) {
    ms_ensure_init();
    pthread_mutex_lock(&check_lock);
    looks_t lk = {.at_exit = at_exit};
    ms_leak_result_t *r = check_look(self, &lk);
    uint64_t total = r ? r->total_ns : 0;
    ms_leak_roots_t stops = {0};
    if (r) ms_leak_pause_add(&stops, &r->roots);
    size_t most = r ? r->mark_bytes : 0;
    while (r && lk.nlost && r->roots.nthreads > 1 && !r->exact && r->looks < MAX_LOOKS) {
        looks_t next = {.prev = lk.lost, .nprev = lk.nlost, .at_exit = at_exit};
        ms_leak_result_t *r2 = check_look(self, &next);
        if (!r2) break;
        bool settled = next.nlost == lk.nlost; /* nothing dropped: every candidate lost again */
        r2->looks = r->looks + 1;
        ms_leak_pause_add(&stops, &r2->roots), total += r2->total_ns;
        if (most < r2->mark_bytes) most = r2->mark_bytes;
        ms_leak_result_free(r);
        ms_os_free(lk.lost, lk.lost_bytes);
        r = r2, lk = next;
        if (settled) break;
    }
    if (r) {
        r->roots.pause_ns = stops.pause_ns, r->roots.pause_max_ns = stops.pause_max_ns, r->roots.nstops = stops.nstops;
        r->roots.held_max_ns = stops.held_max_ns, r->roots.held_max_cpu_ns = stops.held_max_cpu_ns;
        r->total_ns = total, r->mark_bytes = most;
    }
    ms_os_free(lk.lost, lk.lost_bytes);
    pthread_mutex_unlock(&check_lock);
    return r;
}

static ms_leak_result_t *check_look(const ms_leak_self_t *self, looks_t *lk) {
    ms_no_sample++;
    ms_heap_pin_mappings(); /* the mark reads blocks that may be freed meanwhile */
    uint64_t t0 = ms_os_now_ns();
    mark_t m = {0};
    bool tracked = false; /* writes.c armed (Rescans) */
    ms_leak_result_t *res = NULL;
    size_t res_bytes = (sizeof *res + MS_PAGE_MASK) & ~MS_PAGE_MASK;
    res = ms_os_alloc(res_bytes);
    if (!res) goto out;
    res->map_bytes = res_bytes;
    res->looks = 1;
    res->time_ns = ms_os_wall_ns();
    res->rate = atomic_load(&ms_sample_rate);

    bool prof = ms_prof_enabled();
    if (prof) {
        m.log_bytes = LOG_CAP * sizeof(uintptr_t);
        m.log = ms_os_alloc(m.log_bytes);
        if (m.log) ms_prof_log_start(m.log, LOG_CAP);
        else m.log_bytes = 0;
        m.pend_bytes = PEND_CAP * sizeof(uintptr_t);
        if (!(m.pend = ms_os_alloc(m.pend_bytes))) m.pend_bytes = 0;
    }
    m.hold_ns = lk->at_exit ? UINT64_MAX : HOLD_NS;
    /* armed before the snapshot: every write after it shows (rescans, above);
     * not at exit, where the mark holds the threads until it is done, nor
     * for a look after the first, nor when the calling thread is the
     * program's only one: no other can write meanwhile (a thread it does
     * not know of would only make the check look again, as the rescans'
     * condition below wants more than one), and arming and lifting the
     * protection of every heap page was an eighth of the time of a check
     * of 10M blocks (bench/leakscan.c, idle, by hand).  Alone, the threads
     * held are only the caller: the mark need not hold them longer than
     * when tracked. */
    bool alone = !lk->at_exit && !lk->prev && ms_leak_roots_alone();
    tracked = !lk->at_exit && !lk->prev && !alone && ms_leak_writes_start();
    if (tracked || alone) m.hold_ns = HOLD_TRACKED_NS;
    uint64_t nblocks = 0, heap_bytes = 0;
    bool ok = snapshot(&m, &nblocks, &heap_bytes);
    res->nspans = m.nspans, res->nblocks = nblocks, res->heap_bytes = heap_bytes;
    uint64_t t1 = ms_os_now_ns();
    res->snapshot_ns = t1 - t0;
    if (ok) ok = ms_leak_roots_capture(&res->roots, self, held, &m);
    uint64_t t2 = ms_os_now_ns();
    size_t peak = mark_mapped(&m) + res->roots.map_bytes;
    lost_t *lost = NULL;
    uint32_t *ids = NULL;
    size_t lost_bytes = 0, nlost = 0, ids_bytes = 0;
    if (ok) {
        mark_root_words(&m, &res->roots); /* what held left, if it ran out of time */
        res->exact = m.exact && res->rate == 1 && !ms_opt.leaks_mmap && res->roots.nunstopped == 0;
        ms_leak_roots_scan_mmaps(&res->roots, mark_roots, &m);
        ms_leak_roots_free(&res->roots);
        if (m.log) mark_addrs(&m, m.log, m.log_seen = ms_prof_log_count());
        if (prof) {
            size_t lb = mark_loader_blocks(&m, res->roots.loader_lo, res->roots.loader_hi, &ok);
            if (peak < mark_mapped(&m) + lb) peak = mark_mapped(&m) + lb;
        }
        if (ok && tracked && !res->exact && res->roots.nthreads > 1 && unreached(&m) > 0) {
            uint32_t before = res->roots.nstops;
            if (rescan(&m, self, &res->roots, &ok) && !ms_opt.leaks_mmap) res->exact = true;
            res->rescans = res->roots.nstops - before, res->rescan_pages = m.wr_pages;
            if (m.log) { /* new since: reachable, as at step 4 */
                size_t now_n = ms_prof_log_count();
                mark_addrs(&m, m.log + m.log_seen, now_n - m.log_seen);
                m.log_seen = now_n;
            }
        }
        if (tracked) ms_leak_writes_stop(), tracked = false;
        /* blocks settled at a stop (held's, the rescans'), counted as the
         * check counts every block that changed under it */
        res->changed_objs += m.settled;
        res->objs[MS_LEAK_REACHABLE] += m.settled, res->bytes[MS_LEAK_REACHABLE] += m.settled_bytes;
        /* indirect: from each unmarked block */
        for (size_t k = 0; ok && k < m.nspans; k++) {
            const lspan_t *l = &m.spans[k];
            for (uint32_t i = next_unreached(&m, l, 0); i < l->nobj; i = next_unreached(&m, l, i + 1)) {
                uint64_t b = l->bit0 + i;
                if (bit_get(m.ind, b)) continue;
                uintptr_t a = l->start + i * l->osize;
                size_t n = l->cls ? ms_block_scan_bytes(a, l->cls) : l->osize; /* a record in the tail: the request */
                scan(&m, (const uintptr_t *)a, n / sizeof(uintptr_t), true, b);
                flood(&m, true);
            }
        }
        /* blocks new since the first look at the log: their words too */
        if (m.log) {
            size_t seen = m.log_seen, now_n = ms_prof_log_count();
            if (now_n > seen) mark_addrs(&m, m.log + seen, now_n - seen);
        }
        /* classes; lost blocks listed for the report */
        uint64_t cand = unreached(&m);
        lost_bytes = ((cand + 1) * sizeof(lost_t) + MS_PAGE_MASK) & ~MS_PAGE_MASK;
        lost = ok ? ms_os_alloc(lost_bytes) : NULL;
        ok = lost != NULL;
        for (size_t k = 0; ok && k < m.nspans; k++) {
            const lspan_t *l = &m.spans[k];
            uint64_t r = reached_in(&m, l->bit0, l->bit0 + l->nobj);
            res->objs[MS_LEAK_REACHABLE] += r, res->bytes[MS_LEAK_REACHABLE] += r * l->osize;
            for (uint32_t i = next_unreached(&m, l, 0); i < l->nobj; i = next_unreached(&m, l, i + 1)) {
                uint64_t b = l->bit0 + i;
                uintptr_t p = l->start + i * l->osize, s;
                size_t sz;
                if (!ms_block_find(p, &s, &sz) || s != p) {
                    res->changed_objs++;
                    continue;
                }
                lost[nlost++] = (lost_t){p, l->osize, bit_get(m.ind, b) ? MS_LEAK_INDIRECT : MS_LEAK_DIRECT};
            }
        }
    }
    res->mark_ns = ms_os_now_ns() - t2;
    if (m.log) {
        size_t n = ms_prof_log_stop(&res->log_overflow);
        /* blocks new since the check began are not lost, whatever the mark
         * saw: each logged address is looked up in lost[], O(log n) apiece */
        for (size_t i = 0; i < n; i++) {
            size_t j = lost_at(lost, nlost, m.log[i]);
            if (j < nlost && lost[j].addr == m.log[i]) lost[j].kind = UINT32_MAX;
        }
    }
    if (ok && nlost && res->rate != 1 && !res->exact) {
        size_t cb = confirm_lost(lost, nlost, self, res);
        if (peak < mark_mapped(&m) + lost_bytes + cb) peak = mark_mapped(&m) + lost_bytes + cb;
    }
    if (ok) {
        size_t keep = 0;
        for (size_t i = 0; i < nlost; i++) {
            if (lk->prev && lost[i].kind != UINT32_MAX && !in_prev(lk, lost[i].addr)) {
                lost[i].kind = UINT32_MAX;
                res->unconfirmed_objs++;
            }
            if (lost[i].kind == UINT32_MAX) {
                res->changed_objs++;
                res->objs[MS_LEAK_REACHABLE]++, res->bytes[MS_LEAK_REACHABLE] += lost[i].size;
            } else {
                lost[keep++] = lost[i];
            }
        }
        nlost = keep;
        if (nlost) { /* for the next look (in address order, as lost[] is) */
            lk->lost_bytes = (nlost * sizeof(uintptr_t) + MS_PAGE_MASK) & ~MS_PAGE_MASK;
            if ((lk->lost = ms_os_alloc(lk->lost_bytes))) {
                for (size_t i = 0; i < nlost; i++) lk->lost[i] = lost[i].addr;
                lk->nlost = nlost;
            } else {
                lk->lost_bytes = 0; /* no next look: this one stands */
            }
        }
    }
    if (peak < mark_mapped(&m) + lost_bytes + lk->lost_bytes) peak = mark_mapped(&m) + lost_bytes + lk->lost_bytes;
    mark_free(&m);
    if (ok) {
        ids_bytes = ((nlost + 1) * sizeof(uint32_t) + (nlost + 1) * sizeof(uintptr_t) + MS_PAGE_MASK) & ~MS_PAGE_MASK;
        ids = ms_os_alloc(ids_bytes);
        ok = ids != NULL;
    }
    if (ok) {
        uintptr_t *addrs = (uintptr_t *)(ids + nlost + 1);
        addrs = (uintptr_t *)(((uintptr_t)addrs + 7) & ~(uintptr_t)7);
        for (size_t i = 0; i < nlost; i++) addrs[i] = lost[i].addr;
        if (prof) ms_prof_block_stacks(addrs, ids, nlost);
        else for (size_t i = 0; i < nlost; i++) ids[i] = UINT32_MAX;
        size_t gb = 0;
        ok = group(res, lost, ids, nlost, &gb);
        if (peak < lost_bytes + ids_bytes + gb) peak = lost_bytes + ids_bytes + gb;
    }
    ms_os_free(lost, lost_bytes);
    ms_os_free(ids, ids_bytes);
    res->mark_bytes = peak;
    res->total_ns = ms_os_now_ns() - t0;
    if (!ok) {
        ms_leak_roots_free(&res->roots);
        ms_leak_result_free(res);
        res = NULL;
    }
out:
    if (tracked) ms_leak_writes_stop();
    if (!res) mark_free(&m);
    ms_heap_unpin_mappings();
    ms_no_sample--;
    return res;
}

static bool group(ms_leak_result_t *r, const lost_t *lost, const uint32_t *ids, size_t n, size_t *mapped) {
    /* open addressing on (kind, stack); at most n groups */
    size_t cap = 16;
    while (cap < 2 * n + 2) cap *= 2;
    size_t tb = (cap * sizeof(ms_leak_group_t) + MS_PAGE_MASK) & ~MS_PAGE_MASK;
    ms_leak_group_t *t = ms_os_alloc(tb);
    if (!t) return false;
    for (size_t i = 0; i < cap; i++) t[i].kind = UINT32_MAX;
    size_t ng = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t key = (uint64_t)lost[i].kind << 32 | ids[i];
        size_t j = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1);
        while (t[j].kind != UINT32_MAX && ((uint64_t)t[j].kind << 32 | t[j].stack) != key) j = (j + 1) & (cap - 1);
        if (t[j].kind == UINT32_MAX) t[j] = (ms_leak_group_t){.stack = ids[i], .kind = lost[i].kind}, ng++;
        t[j].objs++, t[j].bytes += lost[i].size;
        r->objs[lost[i].kind]++, r->bytes[lost[i].kind] += lost[i].size;
        if (ids[i] == UINT32_MAX) r->unsampled_objs++;
    }
    /* the result: this struct's mapping is replaced by one with room for the groups */
    size_t gb = ((sizeof *r + ng * sizeof(ms_leak_group_t)) + MS_PAGE_MASK) & ~MS_PAGE_MASK;
    *mapped = tb + gb;
    ms_leak_group_t *g = ms_os_alloc(gb);
    if (!g) {
        ms_os_free(t, tb);
        return false;
    }
    size_t k = 0;
    for (size_t i = 0; i < cap; i++)
        if (t[i].kind != UINT32_MAX) g[k++] = t[i];
    ms_os_free(t, tb);
    /* largest bytes first (insertion sort would be O(n^2): heapsort) */
    for (size_t start = k / 2; start-- > 0;) {
        for (size_t x = start;;) {
            size_t c = 2 * x + 1;
            if (c >= k) break;
            if (c + 1 < k && g[c + 1].bytes < g[c].bytes) c++;
            if (g[x].bytes <= g[c].bytes) break;
            ms_leak_group_t tmp = g[x]; g[x] = g[c]; g[c] = tmp;
            x = c;
        }
    }
    for (size_t end = k; end-- > 1;) {
        ms_leak_group_t tmp = g[0]; g[0] = g[end]; g[end] = tmp;
        for (size_t x = 0;;) {
            size_t c = 2 * x + 1;
            if (c >= end) break;
            if (c + 1 < end && g[c + 1].bytes < g[c].bytes) c++;
            if (g[x].bytes <= g[c].bytes) break;
            ms_leak_group_t tmp2 = g[x]; g[x] = g[c]; g[c] = tmp2;
            x = c;
        }
    }
    r->groups = g;
    r->ngroups = k;
    return true;
}

void ms_leak_result_free(ms_leak_result_t *r) {
    if (!r) return;
    if (r->groups) {
        size_t gb = ((sizeof *r + r->ngroups * sizeof(ms_leak_group_t)) + MS_PAGE_MASK) & ~MS_PAGE_MASK;
        ms_os_free(r->groups, gb);
    }
    ms_os_free(r, (sizeof *r + MS_PAGE_MASK) & ~MS_PAGE_MASK);
}

void ms_leak_mark_fork_child(void) {
    pthread_mutex_init(&check_lock, NULL);
    ms_leak_writes_fork_child();
}
