/* internal.h: declarations shared by the files of libmemscope.
 *
 * The layers, bottom to top (a file only calls into layers below it):
 *   os.c, log.c       kernel memory calls, /proc readers; allocation-free output
 *   lock.c            a one-word mutex for short holds
 *   meta.c            fixed-size pools for the allocator's own structures
 *   pagemap.c         page number -> span (XOR-encoded, no NULLs), free's check per page, released-page bitmap
 *   pageheap.c        spans of pages: in use, idle, released; coalescing
 *   central.c         per-class span lists and transfer slots
 *   tcache.c          per-thread caches, thread registry, fork
 *   malloc.c          the malloc family (design essay at its top)
 *   scavenger.c       background release of old idle pages
 *   stats.c, cycle.c  memscope_read_stats, heap cycles and the trace
 *   options.c, init.c MEMSCOPE parsing, process init, exit reports
 * Names: ms_<module>_<verb> for cross-file functions (hidden visibility);
 * memscope_* only for the public API in include/memscope.h.
 */
#ifndef MS_INTERNAL_H
#define MS_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <signal.h>

#include "memscope.h"
#include "sizeclasses.h"

/* MS_ENV: the variable memscope reads its options from, named from
 * memscope_rodata (options.c), not from .rodata (mk/text.ld says why). */
extern const char ms_env_name[] __attribute__((visibility("hidden")));
#define MS_ENV ms_env_name

/* ------------------------------------------------------------------------
 * Compiler helpers and assertions
 * ---------------------------------------------------------------------- */

#define ms_likely(x) __builtin_expect(!!(x), 1)
#define ms_unlikely(x) __builtin_expect(!!(x), 0)
#define ms_cold __attribute__((cold, noinline))
#define ms_noreturn __attribute__((noreturn))
#define ms_inline static inline __attribute__((always_inline))
#define MS_CACHE_LINE 64

#ifndef MEMSCOPE_DEBUG
#define MEMSCOPE_DEBUG 0
#endif

/* Three tiers, as in mimalloc: ms_assert for cheap checks of callers' input
 * (debug level >= 1), ms_assert_internal for our own invariants (>= 2),
 * ms_assert_expensive for whole-structure validators run after each
 * operation (>= 3, the unit-test build). */
#define ms_assert(x) ((MEMSCOPE_DEBUG >= 1 && !(x)) ? ms_assert_fail(#x, __FILE__, __LINE__) : (void)0)
#define ms_assert_internal(x) ((MEMSCOPE_DEBUG >= 2 && !(x)) ? ms_assert_fail(#x, __FILE__, __LINE__) : (void)0)
#define ms_assert_expensive(x) ((MEMSCOPE_DEBUG >= 3 && !(x)) ? ms_assert_fail(#x, __FILE__, __LINE__) : (void)0)

/* ------------------------------------------------------------------------
 * Pages and spans
 * ---------------------------------------------------------------------- */

#define MS_PAGE_SHIFT 13
#define MS_PAGE_SIZE ((size_t)1 << MS_PAGE_SHIFT)
#define MS_PAGE_MASK (MS_PAGE_SIZE - 1)
/* The largest request the heap will try: beyond it malloc fails with ENOMEM
 * at once, touching nothing.  8 TiB keeps a span's page count (and the page
 * count plus alignment slack of memalign) well inside its 32 bits; below
 * it, the kernel's overcommit policy decides, as for glibc's mmap. */
#define MS_MAX_ALLOC ((size_t)1 << 43)

enum { SPAN_DEAD = 0, SPAN_INUSE = 1, SPAN_FREE = 2, SPAN_BUSY = 3 };

/* A span is a run of pages.  In use it holds either one large object
 * (cls == 0) or objects of one size class; free it sits in the page heap.
 * Two cache lines (span_t is aligned to them): the first holds what the
 * checks of free's slow path, realloc and malloc_usable_size read (free's
 * fast path reads the page map's copy of what it needs: pagemap.c, "Free's
 * check"), written only when the span changes hands or
 * grows its used part; the second what the central list and the page heap
 * write on every batch of objects they move.  On one line, every thread
 * freeing an object of a span missed in its cache each time a batch went
 * back to that span. */
typedef struct span_s {
    /* first cache line: the checks' */
    uintptr_t start;        /* address of the first page */
    uint32_t npages;        /* length in pages */
    uint8_t cls;            /* size class, 0 for a large object or a free span */
    uint8_t state;          /* SPAN_*; FREE/BUSY only under the heap lock */
    uint8_t in_list;        /* small spans: on the central nonempty list */
    uint8_t direct;         /* a very large block in a mapping of its own (pageheap.c) */
    /* fast_off | sampled << 16 | blocks << 32 | pages << 48, changed
     * together by compare-and-swap.  fast_off (the low 16 bits) is the byte
     * offset of the span's class list in a tcache_t (cls << MS_TCLIST_SHIFT)
     * while the span is in use with no sampled block, else 0.  sampled (16
     * bits: a span holds at most 1024 objects) counts the span's live
     * blocks recorded by the heap profiler; blocks has bit (i % 16) set if
     * block i may be one of them, so a free of an unsampled block in a span
     * with sampled ones is settled without asking the profiler in 15 cases
     * out of 16; pages has bit (k % 16) set if a block starting on the
     * span's page k may be one of them.  Free may take its fast path for
     * a block on page k, which it reads as copied into the page map
     * (ms_pagemap_check), while fast_off is set or, with sampled blocks,
     * while k's bit is clear: a sampled block closes its page, not the
     * span, so that spans of many pages cost no more slow frees than one
     * page would.  The masks are cleared with the last sampled block, so
     * the word of a fast span is fast_off. */
    _Atomic uint64_t mark;
    uint64_t div;           /* small: UINT64_MAX / size + 1: off % size == 0 iff off * div < div */
    uint32_t used;          /* small: bytes from start ever handed out; the never-used tail follows (central lock) */
    uint32_t size;          /* small: object size (ms_class_size[cls]) */
    union {
        uintptr_t limit;      /* small: end of the last whole object */
        struct span_s *tright; /* free, of MS_TREE_MIN pages or more: the page heap's tree (pageheap.c) */
    };
    /* small, in use: the heap profiler's records of the span's sampled
     * blocks (src/prof/sample.c).  The core only tests it when the span
     * leaves use, and then hands it back (ms_prof_hooks.span_done): in
     * leak-check mode the records stay for the span's whole use. */
    void *prof;
    /* the fork generation (ms_pm_gen) of the thread whose sync opens the
     * span's pages (MS_MARK_SYNC in mark: pagemap.c, "Free's check"),
     * written before its compare-and-swap sets the bit: a sync left half
     * done by a thread a fork did not copy is taken over in the child */
    _Atomic uint32_t sync_gen;
    /* second line: the central list's and the page heap's */
    struct span_s *next, *prev; /* central nonempty list or page-heap free list */
    union {
        void *freelist;        /* small: freed objects back in the span (central lock) */
        struct span_s *tleft;  /* free, in the page heap's tree: lower addresses */
    };
    uint32_t allocated;     /* small: objects handed out of the span (central lock) */
    uint32_t released;      /* free: pages of the span already returned to the OS */
    union {
        uint64_t free_since_ms; /* free: when its pages became idle (weighted on merge) */
        void *seg_tail;         /* small: the last object of freelist's first seg_n (central.c, "Segments") */
    };
    union {
        uint32_t scan_from; /* free: the pages before this one are all released (scavenger's start) */
        uint32_t seg_n;     /* small: objects at freelist's head whose last is seg_tail (0: freelist empty) */
    };
    uint32_t tmax;          /* free, in the page heap's tree: the most pages of a span in its subtree */
    struct span_s *unext, *uprev; /* free with unreleased pages: the scavenger's list, in order freed */
} __attribute__((aligned(MS_CACHE_LINE))) span_t;
_Static_assert(sizeof(span_t) == 2 * MS_CACHE_LINE, "span_t: two cache lines");

#define MS_TCLIST_SHIFT 6        /* sizeof(tclist_t) == 1 << MS_TCLIST_SHIFT */
#define MS_MARK_FAST_MASK 0xffffu /* fast_off (with MS_MARK_SYNC) */
/* MS_MARK_SYNC: set with fast_off by the free of the span's last sampled
 * block, which opens the pages its sampled blocks closed, and cleared
 * when it has written them; no other change of the mark is made while it
 * is set (pagemap.c, "Free's check").  fast_off's low bits are 0 (a list
 * offset, cls << MS_TCLIST_SHIFT). */
#define MS_MARK_SYNC ((uint64_t)1)
#define MS_MARK_SAMPLED_SHIFT 16
#define MS_MARK_SAMPLED_MAX 0xffffu
#define MS_MARK_BLOCK_BIT(i) ((uint64_t)1 << (32 + ((i) & 15)))
#define MS_MARK_PAGE_BIT(k) ((uint64_t)1 << (48 + ((k) & 15)))
#define MS_MARK_PAGES ((uint64_t)0xffff << 48)
#define MS_MARK_MASKS ((uint64_t)0xffffffff << 32)

/* ms_span_mark: the mark word; its low 16 bits are nonzero exactly when
 * the span is in use with nothing sampled, and then the whole word is the
 * offset of the class's list in a tcache_t, MS_MARK_SYNC aside while the
 * pages are opened (pagemap.c). */
ms_inline uint64_t ms_span_mark(const span_t *s) {
    return atomic_load_explicit(&s->mark, memory_order_relaxed);
}
ms_inline uint32_t ms_span_sampled(const span_t *s) {
    return (uint32_t)(ms_span_mark(s) >> MS_MARK_SAMPLED_SHIFT) & MS_MARK_SAMPLED_MAX;
}
/* ms_span_mark_fast: the mark of a span of class cls with nothing sampled
 * (cls 0: not fast) */
ms_inline uint64_t ms_span_mark_fast(uint8_t cls) { return (uint64_t)cls << MS_TCLIST_SHIFT; }
/* MS_MARK_ALL: a small span's mark in leak-check mode, where every block
 * is recorded (malloc.c: mark_sampled) */
#define MS_MARK_ALL ((uint64_t)0xffffffffu << 32 | (uint64_t)MS_MARK_SAMPLED_MAX << MS_MARK_SAMPLED_SHIFT)

/* Records in the blocks' tails (leak-check mode).  While ms_tail_recs is
 * set, which the profiler does once, before the first block is recorded
 * (src/prof/sample.c, "Records in the tail"), a small block of a class of
 * at most MS_TAIL_MAX_CLASS (1024 bytes) keeps its record, its stack id
 * plus one, in its last MS_TAIL bytes, and a request of up to 1024 bytes
 * is given a class MS_TAIL bytes larger than it (ms_size_classes_tail), so
 * those bytes are never the program's: malloc_usable_size, realloc and
 * the profile count them out (ms_class_usable).  The mode is set only if no span of those classes is in
 * use yet (none has blocks whose last bytes are the program's), so every
 * small span of those classes is a tail span (ms_span_tail).  In that
 * mode a span enters use with every block counted as recorded
 * (MS_MARK_ALL, its pages' checks closed), so that no block of it is ever
 * freed or resized past the profiler, recorded or not (a block malloc
 * took while the thread was inside the profiler), and the every hook need
 * not close its page. */
#define MS_TAIL 8
#define MS_TAIL_MAX_CLASS 32
#define MS_TAIL_MAX_SIZE 1024 /* ms_class_size[MS_TAIL_MAX_CLASS] (sizeclass.c checks) */
extern bool ms_tail_recs;
/* ms_class_tail: blocks of class cls keep their records in their tails */
ms_inline bool ms_class_tail(uint8_t cls) { return ms_tail_recs && cls - 1u < MS_TAIL_MAX_CLASS; }
ms_inline bool ms_span_tail(const span_t *s) { return ms_class_tail(s->cls); }
/* The tail's word: the stack id plus one in its low half (0: no record),
 * the bytes the program asked for in its high half.  malloc writes the
 * request first (with no record: malloc.c, sample_small), the profiler
 * then the record; realloc in place and malloc_usable_size widen the
 * request (malloc.c: tail_widen).  The leak checker reads a block's
 * request and no further (ms_block_scan_bytes), as LeakSanitizer does, so
 * malloc need not clear the bytes past it: what they held before is never
 * read as a pointer.  The word is read without owning the block (a check
 * runs while the program does): a request is taken at most as the
 * usable bytes. */
#define MS_TAIL_REQ_SHIFT 32
ms_inline uint64_t *ms_tail_word(uintptr_t a, size_t size) { return (uint64_t *)(a + size - MS_TAIL); }
ms_inline size_t ms_tail_req(uint64_t v, size_t size) {
    size_t req = (size_t)(v >> MS_TAIL_REQ_SHIFT);
    return req < size - MS_TAIL ? req : size - MS_TAIL;
}
/* ms_span_set_fast: a span enters (cls) or leaves (0) use; nothing sampled
 * in it (with the tails' records, ms_pagemap_check_open then marks it all
 * recorded: above) */
ms_inline void ms_span_set_fast(span_t *s, uint8_t cls) {
    atomic_store_explicit(&s->mark, ms_span_mark_fast(cls), memory_order_relaxed);
}

/* ------------------------------------------------------------------------
 * os.c
 * ---------------------------------------------------------------------- */
void *ms_os_reserve(size_t bytes);            /* PROT_NONE address space, or NULL */
bool ms_os_commit(void *addr, size_t bytes);  /* make reserved pages usable (charged to the commit limit) */
void ms_os_decommit(void *addr, size_t bytes); /* back to reserved: no memory, no charge */
void *ms_os_alloc(size_t bytes);              /* fresh zeroed RW pages, or NULL */
size_t ms_os_as_limit(void);                 /* RLIMIT_AS in bytes, 0 if none */
void ms_os_free(void *addr, size_t bytes);    /* unmap what ms_os_alloc gave */
/* ms_os_own_ranges: up to cap of the ranges ms_os_reserve and ms_os_alloc
 * returned that are still mapped (and memscope's threads' stacks), in no
 * order; complete is false if some were not listed (the table overflowed,
 * or cap was too small, or with settled, a mapping under way did not
 * settle).  settled: wait for mappings under way in other threads. */
size_t ms_os_own_ranges(uintptr_t (*out)[2], size_t cap, bool settled, bool *complete);
bool ms_os_release(void *addr, size_t bytes); /* return pages, keep the range usable (zero on reuse) */
int ms_os_move(void *from, void *to, size_t bytes); /* mremap; 0 failed (copy instead), 1 moved (from stays mapped, reads as zero) */
/* ms_os_collapse: makes the 2 MiB-aligned range one huge page
 * (MADV_COLLAPSE) if every page of it is resident, so RSS never grows */
enum { MS_COLLAPSE_DONE, MS_COLLAPSE_NOT_RESIDENT, MS_COLLAPSE_FAILED, MS_COLLAPSE_REFUSED };
int ms_os_collapse(void *addr, size_t bytes);
uint64_t ms_os_now_ms(void);                  /* monotonic, coarse */
uint64_t ms_os_now_ns(void);                  /* monotonic */
uint64_t ms_os_thread_cpu_ns(void);           /* the calling thread's CPU time (a system call, not the vDSO) */
void ms_os_ticks_init(void);                  /* at process init, before any tick is taken */
uint64_t ms_os_ticks(void);                   /* for short intervals (the TSC, or ns) */
uint64_t ms_os_ticks_ns(uint64_t ticks);      /* a difference of ticks, in ns */
uint64_t ms_os_wall_ns(void);                 /* realtime, ns since epoch */
uint64_t ms_os_wall_coarse_ns(void);          /* the same to a clock tick (a few ms), for a few ns */
bool ms_os_rss(uint64_t *rss, uint64_t *file, uint64_t *max_rss); /* /proc/self/statm + VmHWM */
int ms_os_open_proc_mm(const char *name);     /* /proc/thread-self/NAME (maps, statm), or /proc/self's; -1 */
uint64_t ms_os_random(void);
bool ms_os_thread_syscall(int tid, uintptr_t *sp, uintptr_t *pc); /* blocked in a system call? */
uint64_t ms_os_thread_switches(int tid);      /* times switched out; UINT64_MAX if unknown */
size_t ms_os_read_self(uintptr_t addr, void *buf, size_t len); /* fault-free copy; bytes copied */
/* ms_os_pages_readable: how many of the n pages of `page` bytes from lo, in
 * order, can be read: a byte of each, one system call (at most 64 pages) */
size_t ms_os_pages_readable(uintptr_t lo, size_t page, size_t n);
/* fmath.c: log and exp for the sampler and the profile's weights, without
 * libm (its pages cost every process more than memscope's own) */
double ms_log(double x);
double ms_exp(double x);
/* ms_os_thread: a detached thread of memscope's own, all signals blocked;
 * it returns once ms_os_program_gone (every thread of the program has
 * exited, so that the process ends as it would without memscope). */
int ms_os_thread(void *(*fn)(void *), size_t stack, const char *name, pthread_t *out);
/* memscope's own threads, listed by ms_os_thread before it returns: slot i
 * (0 .. MS_OWN_MAX-1) holds a thread id and its thread pointer, or 0 */
#define MS_OWN_MAX 8
int ms_os_own_tid(int i);
uintptr_t ms_os_own_tp(int i);
/* ms_thread_pointer: the calling thread's TCB (its TLS lies below it) */
static inline uintptr_t ms_thread_pointer(void) {
#if defined(__x86_64__)
    uintptr_t tp;
    __asm__("mov %%fs:0, %0" : "=r"(tp));
    return tp;
#else
    return (uintptr_t)__builtin_thread_pointer();
#endif
}
bool ms_os_program_gone(void);
void ms_os_fork_child(void);

/* ------------------------------------------------------------------------
 * lock.c: a mutex of one word (see there)
 * ---------------------------------------------------------------------- */
typedef struct ms_lock_s {
    _Atomic int v;
} ms_lock_t;
void ms_lock_wait(ms_lock_t *l);
void ms_lock_wake(ms_lock_t *l);
/* ms_locks_held: the locks the calling thread holds that a fork's prepare
 * handlers take (every ms_lock_t, the heap's, the thread registry's).  A
 * fork from a signal handler that interrupted one of them must not take
 * them again (init.c, "Fork"). */
extern __thread uint32_t ms_locks_held;
ms_inline void ms_lock(ms_lock_t *l) {
    int z = 0;
    if (!atomic_compare_exchange_strong_explicit(&l->v, &z, 1, memory_order_acquire, memory_order_relaxed))
        ms_lock_wait(l);
    ms_locks_held++;
}
ms_inline void ms_unlock(ms_lock_t *l) {
    ms_locks_held--;
    if (atomic_exchange_explicit(&l->v, 0, memory_order_release) == 2) ms_lock_wake(l);
}
/* ms_mutex_take, ms_mutex_give: a pthread mutex that fork's prepare takes
 * (the heap's, the thread registry's), counted as ms_lock counts its own */
ms_inline void ms_mutex_take(pthread_mutex_t *m) {
    pthread_mutex_lock(m);
    ms_locks_held++;
}
ms_inline void ms_mutex_give(pthread_mutex_t *m) {
    ms_locks_held--;
    pthread_mutex_unlock(m);
}
ms_inline void ms_lock_init(ms_lock_t *l) { atomic_store_explicit(&l->v, 0, memory_order_relaxed); }
ms_inline void ms_spin_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* ------------------------------------------------------------------------
 * log.c: formatted output that never allocates
 * ---------------------------------------------------------------------- */
size_t ms_vsnprintf(char *buf, size_t cap, const char *fmt, __builtin_va_list ap);
size_t ms_snprintf(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
bool ms_write_fd(int fd, const char *buf, size_t len); /* whole buffer, retrying short writes; false if it failed */
/* ms_log_init: records which file the program's stderr is (and keeps a
 * copy of it if keep_copy), or opens the log file at path (MEMSCOPE=log,
 * NULL or "" for none); ms_log_fd: where memscope's lines go now, -1 if
 * the program has put another file on descriptor 2 (log.c). */
void ms_log_init(bool keep_copy, const char *path);
void ms_log_fork_child(void); /* a fork child keeps no copy of stderr (log.c) */
/* ms_path_expand: path with each %p replaced by the pid and %% by %;
 * false if too long or empty */
bool ms_path_expand(const char *path, char *out, size_t cap);
int ms_log_fd(void);
void ms_printf_fd(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ms_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* ms_errstr: errno's description ("No such file or directory"), from a
 * table in the C library: no allocation, no locale */
const char *ms_errstr(int e);
ms_noreturn ms_cold void ms_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
ms_noreturn ms_cold void ms_assert_fail(const char *expr, const char *file, int line);

/* ------------------------------------------------------------------------
 * meta.c: pools for internal structures, never from malloc
 * ---------------------------------------------------------------------- */
typedef struct fixalloc_s {
    size_t size;           /* bytes per object */
    void *free;            /* freed objects */
    char *chunk;           /* current chunk */
    size_t left;           /* bytes left in chunk */
    uint64_t inuse;        /* objects handed out */
} fixalloc_t;
void *ms_fixalloc_alloc(fixalloc_t *fa);   /* zeroed object, or NULL; caller holds the owning lock */
void ms_fixalloc_free(fixalloc_t *fa, void *p);
void *ms_meta_alloc(size_t bytes);         /* zeroed pages for a long-lived table */
void ms_meta_free(void *p, size_t bytes);  /* such a table, given back */
void *ms_meta_sparse(size_t bytes);        /* the same, for a table touched only in part: not counted in use */
void ms_meta_use(size_t bytes);            /* ... of which bytes, filled from the front, are now in use */
extern _Atomic uint64_t ms_meta_sys;       /* bytes of metadata mapped */
extern _Atomic uint64_t ms_meta_inuse;     /* bytes of metadata in use */

/* ------------------------------------------------------------------------
 * pagemap.c: page number -> span, and one "released" bit per page
 * ---------------------------------------------------------------------- */
/* 13 + 17 + 17 = 47-bit addresses: the user half of x86-64's address
 * space, where Linux maps everything unless asked for more (with 5-level
 * paging, mmap goes above 2^47 only given a hint there; memscope never
 * gives one, and the page map refuses pages beyond it).  A pointer above
 * wraps to a lower root entry: no span found contains it, and free's
 * check compares it with an absolute limit below 2^47.  The split keeps
 * the fixed address space small, which a program under an address-space
 * limit (ulimit -v) needs: 1 MiB of root and a 2 MiB nil leaf in BSS, and
 * 2 MiB per leaf (1 GiB of heap); 20 leaf bits took 16 MiB before the first
 * malloc returned, and programs glibc runs under a 20 MB limit failed.  A
 * root of 18 bits (48-bit addresses) with free's checks in the leaves took
 * 1 MiB more than before them, and tests/test_limits.sh's sort under 16 MB
 * failed 9 times in 12 (its scavenger found no room for its stack).  The
 * nil leaf grew from 1 MiB (free's checks alone) to 2 MiB when the span's
 * word joined each check (pm_page_t): sort -n of 100,000 numbers then ran
 * under a limit of 10 MB and failed under 9.5, where it had run under 9
 * (by hand; tests/test_limits.sh runs it under 13 and 16 MB). */
#define MS_PM_LEAF_BITS 17
#define MS_PM_ROOT_BITS 17
/* Entries are stored XOR the address of ms_pm (its nil leaf), so that the
 * zero of untouched memory reads as that address: a root entry never
 * written gives the nil leaf, a leaf entry never written gives the "nil
 * span", which is the nil leaf's first bytes read as a span_t (all zero:
 * mark 0, so never fast; used 0, so no object starts in it).  free's lookup
 * then needs no NULL test.  The nil leaf is BSS that is only ever read:
 * the zero page, no RSS.  It holds the pages' words (pm_leaf_t's first
 * array, free's checks and the spans side by side), so that neither
 * free's check nor a lookup of a span tests for it; its other arrays
 * would lie over the root and are never read (pagemap.c, leaf_if). */
/* Free's check of a page (pagemap.c, "Free's check"): while the page's
 * small span is in use with no sampled block starting on the page, the end
 * of the part the span has handed out (its limit; on a page wholly below
 * it, possibly an older one, at or past the page's end) << 16 | the offset
 * of the span's class list in a tcache_t; else 0.  Free reads only this
 * word of the span. */
#define MS_CHECK_SHIFT 16
/* The kernel's huge page (x86-64's PMD), which the scavenger asks for on
 * dense parts of the heap (scavenger.c) */
#define MS_HUGE_SHIFT 21
#define MS_HUGE_SIZE ((size_t)1 << MS_HUGE_SHIFT)
#define MS_HUGE_PAGES ((size_t)1 << (MS_HUGE_SHIFT - MS_PAGE_SHIFT)) /* heap pages in one */
/* A page's two words side by side, free's check and the span: free reads
 * the check, and every path that goes on from there to the span (free's
 * and realloc's slow paths, a sampled malloc, the central list's return
 * of a chain to its spans) then finds the span's word on the line the
 * check brought in.  Apart, in two arrays of a leaf, the span's word was a
 * line of its own, 1 MiB from the check's and read by nothing hot: on
 * bench/mixed_realloc.c a miss in each of those paths (perf: 29% of
 * realloc_slow's samples and of return_to_spans_locked's, 95% of
 * sample_point's, on that load). */
typedef struct pm_page_s {
    uint64_t check; /* free's check (below) */
    uintptr_t span; /* the page's span ^ &ms_pm */
} pm_page_t;
_Static_assert(sizeof(pm_page_t) == 16, "a page's words: 16 bytes, an index shifted by 4");
/* pm_page_off: the byte offset of the words of the page holding p in its
 * leaf: one shift and one mask, as an index scaled by 8 took */
ms_inline uintptr_t pm_page_off(uintptr_t p) {
    return (p >> (MS_PAGE_SHIFT - 4)) & ((uintptr_t)((1u << MS_PM_LEAF_BITS) - 1) << 4);
}
typedef struct pm_leaf_s {
    pm_page_t page[1u << MS_PM_LEAF_BITS]; /* first: free addresses it with no displacement */
    uint64_t released[(1u << MS_PM_LEAF_BITS) / 64];
    uint64_t huge[(1u << MS_PM_LEAF_BITS) / MS_HUGE_PAGES / 64]; /* per 2 MiB: collapsed, nothing released since */
    uint64_t seen[(1u << MS_PM_LEAF_BITS) / MS_HUGE_PAGES / 64]; /* per 2 MiB: dense at the scavenger's last look */
} pm_leaf_t;
typedef struct pagemap_s {
    pm_page_t nil[1u << MS_PM_LEAF_BITS];     /* the nil leaf's pages; never written */
    uintptr_t root[1u << MS_PM_ROOT_BITS];    /* leaf ^ &ms_pm */
    uint64_t has_leaf[(1u << MS_PM_ROOT_BITS) / 64]; /* root entries set (heap lock) */
    uint64_t nil_tail[2 * (1u << MS_PM_LEAF_BITS) / MS_HUGE_PAGES / 64]; /* the nil leaf's huge and seen: a guard */
} __attribute__((aligned(MS_CACHE_LINE))) pagemap_t; /* the nil span is a span_t, aligned as one */
/* the nil leaf, read as a pm_leaf_t, ends inside ms_pm: a stray write to it
 * reaches none of memscope's other state */
_Static_assert(sizeof(pagemap_t) >= sizeof(pm_leaf_t), "the nil leaf overlays ms_pm whole");
extern pagemap_t ms_pm;
#define MS_SPAN_NIL ((span_t *)(void *)&ms_pm)
/* ms_pagemap_next_leaf: the first root index from i on that has a leaf, or
 * 1 << MS_PM_ROOT_BITS (heap lock held).  A walk of the heap reads 32 KiB
 * of bits instead of the 2 MiB root: a leak check of a small program
 * faulted the whole root in, 512 pages, for a heap of one leaf. */
uintptr_t ms_pagemap_next_leaf(uintptr_t i);

/* ms_pagemap_span: the span recorded for the page holding p, or
 * MS_SPAN_NIL; any address is fine (above 47 bits the root index wraps,
 * and the span found does not contain p).  Three loads: the nil leaf holds
 * a span word for every page, zero. */
ms_inline span_t *ms_pagemap_span(const void *p) {
    uintptr_t pn = (uintptr_t)p >> MS_PAGE_SHIFT, base = (uintptr_t)&ms_pm;
    const pm_leaf_t *leaf = (const pm_leaf_t *)(ms_pm.root[(pn >> MS_PM_LEAF_BITS) & ((1u << MS_PM_ROOT_BITS) - 1)] ^ base);
    return (span_t *)(((const pm_page_t *)(const void *)((const char *)leaf->page + pm_page_off((uintptr_t)p)))->span ^ base);
}

/* ms_pagemap_check: free's check of the page holding p (any address, as
 * for ms_pagemap_span: a page memscope never handed out reads 0). */
ms_inline uint64_t ms_pagemap_check(const void *p) {
    uintptr_t pn = (uintptr_t)p >> MS_PAGE_SHIFT, base = (uintptr_t)&ms_pm;
    const pm_leaf_t *leaf =
        (const pm_leaf_t *)(ms_pm.root[(pn >> MS_PM_LEAF_BITS) & ((1u << MS_PM_ROOT_BITS) - 1)] ^ base);
    return ((const pm_page_t *)(const void *)((const char *)leaf->page + pm_page_off((uintptr_t)p)))->check;
}
/* ms_pagemap_check_open: small span s, fast and with nothing handed out,
 * enters use (its pages admit nothing yet; in leak-check mode with records
 * in the tails, s is marked all recorded and its pages stay closed:
 * "Records in the blocks' tails"); ms_pagemap_check_close: it
 * leaves use, its pages' checks back to 0.  ms_span_check_grow: s handed
 * out more (used grew, central lock held), its open checks follow. */
void ms_pagemap_check_open(span_t *s);
void ms_pagemap_check_close(span_t *s);
void ms_span_check_grow(span_t *s, uint32_t from); /* from: used before the take */
/* Changes of the pages' words with the mark (pagemap.c, "Free's check",
 * says why these orders are enough; none takes a lock).
 * ms_span_close_pages: the words of the pages whose bit (page number
 * modulo 16) is set in bits go to 0: by a sampler after its
 * compare-and-swap counted its block on such a page, before the block
 * reaches the program.  ms_span_open_pages: by the thread whose
 * compare-and-swap took the span's last sampled block out and set
 * MS_MARK_SYNC: the pages of bits open again, and the bit is cleared.
 * ms_span_sync_wait: a thread that found MS_MARK_SYNC set waits until it
 * is clear (a sync left by a thread a fork did not copy is finished
 * here), and returns the mark then.  ms_span_mark_all: leak-check mode's
 * first record in s marks it all recorded and closes all of its pages.
 * ms_span_sync_check: the pages of s that its mark names closed (all of
 * them if it is all recorded), as a sampler of each would close them. */
extern uint32_t ms_pm_gen; /* the process's fork generation (pagemap.c) */
void ms_span_close_pages(span_t *s, uint32_t bits);
void ms_span_open_pages(span_t *s, uint32_t bits);
uint64_t ms_span_sync_wait(span_t *s);
void ms_span_mark_all(span_t *s);
void ms_span_sync_check(span_t *s);
/* ms_pagemap_block_span: the span of p, an address in a page of the heap
 * (whose leaf exists: a block handed out), and *check, the page's word of
 * free's check, from one walk of the page map */
ms_inline span_t *ms_pagemap_block_span(const void *p, const uint64_t **check) {
    uintptr_t pn = (uintptr_t)p >> MS_PAGE_SHIFT, base = (uintptr_t)&ms_pm;
    const pm_leaf_t *leaf = (const pm_leaf_t *)(ms_pm.root[pn >> MS_PM_LEAF_BITS] ^ base);
    const pm_page_t *pg = &leaf->page[pn & ((1u << MS_PM_LEAF_BITS) - 1)];
    *check = &pg->check;
    return (span_t *)(pg->span ^ base);
}
/* ms_span_check_word_closed: whether the page's word at check is closed,
 * for a caller that read its span's mark as MS_MARK_ALL (which stays until s
 * leaves use) before; inline: leak-check mode's every malloc asks, and
 * finds the page closed.  The fence makes that read of the mark an
 * acquire: the last opener's writes (made before it cleared
 * MS_MARK_SYNC, which the compare-and-swap that made the mark all
 * recorded read) are then visible, so a 0 read here is a closer's. */
ms_inline bool ms_span_check_word_closed(const uint64_t *check) {
    atomic_thread_fence(memory_order_acquire);
    return __atomic_load_n(check, __ATOMIC_RELAXED) == 0;
}
ms_inline bool ms_span_check_is_closed(uintptr_t page_addr) {
    const uint64_t *check;
    (void)ms_pagemap_block_span((const void *)page_addr, &check);
    return ms_span_check_word_closed(check);
}
/* ms_span_check_closed: s is all recorded (MS_MARK_ALL, read by the
 * caller): the page at page_addr reads closed when this returns */
ms_inline void ms_span_check_closed(span_t *s, uintptr_t page_addr) {
    if (!ms_span_check_is_closed(page_addr)) ms_span_sync_check(s);
}
bool ms_pagemap_check_is_clear(uintptr_t start, size_t npages); /* the validators' */
void ms_pagemap_fork_child(void);

/* ms_pagemap_lookup: the span recorded for the page holding p, or NULL.  Only
 * the first and last page of large and free spans are recorded; every page of
 * a small span is.  The result may be stale for wild pointers: callers check
 * that p lies inside the span they get. */
ms_inline span_t *ms_pagemap_lookup(const void *p) {
    if (ms_unlikely((uintptr_t)p >> (MS_PAGE_SHIFT + MS_PM_LEAF_BITS + MS_PM_ROOT_BITS))) return NULL;
    span_t *s = ms_pagemap_span(p);
    return s == MS_SPAN_NIL ? NULL : s;
}
bool ms_pagemap_ensure(uintptr_t start, size_t npages); /* leaves exist for the range */
void ms_pagemap_set(uintptr_t page_addr, span_t *s);
void ms_pagemap_set_range(uintptr_t start, size_t npages, span_t *s);
size_t ms_pagemap_count_released(uintptr_t start, size_t npages);
void ms_pagemap_mark_released(uintptr_t start, size_t npages, bool released);
/* ms_pagemap_next_run: finds in [*pos, end) the first run of pages whose
 * released bit is `released`; returns its length, at most max (0 if none),
 * and leaves its first page address in *pos.  Scans 64 pages a word. */
size_t ms_pagemap_next_run(uintptr_t *pos, uintptr_t end, bool released, size_t max);
/* Huge-page state of the 2 MiB region at `region` (aligned, inside the
 * heap; heap lock held).  ms_pagemap_mark_released(.., true) clears the
 * "huge" mark of every region it touches (a release splits a huge page) and
 * counts in ms_pagemap_release_seq. */
bool ms_pagemap_region_unreleased(uintptr_t region); /* no page released, not marked huge */
void ms_pagemap_set_huge(uintptr_t region);
bool ms_pagemap_seen(uintptr_t region, bool dense); /* was it dense at the last look; it is (not) now */
void ms_pagemap_clear_huge(uintptr_t start, size_t npages); /* pages replaced (mremap): not huge */
uint64_t ms_pagemap_release_seq(void);
void ms_pagemap_clear_huge_all(void); /* fork: every region is looked at again */

/* ------------------------------------------------------------------------
 * pageheap.c
 * ---------------------------------------------------------------------- */
typedef struct heap_counters_s {
    uint64_t sys_pages;      /* pages obtained from the OS for the heap */
    uint64_t inuse_pages;    /* pages in spans in use */
    uint64_t free_pages;     /* pages in free spans */
    uint64_t released_pages; /* of free_pages, returned to the OS */
    uint64_t large_allocs, large_frees;       /* large objects */
    uint64_t large_alloc_bytes, large_free_bytes;
    uint64_t released_bytes_total;            /* cumulative bytes returned to the OS */
    uint64_t scavenge_passes;                 /* passes that released something */
    uint64_t peak_inuse_pages;                /* most inuse_pages since ms_heap_reset_peak */
    uint32_t busy_batches;                    /* scavenger batches off the lists now */
} heap_counters_t;

extern pthread_mutex_t ms_heap_lock;
extern _Atomic uint64_t ms_heap_goal_bytes; /* in-use bytes that end a heap cycle */
extern void (*ms_heap_goal_hook)(void);     /* called (no lock held) once in-use bytes reach the goal */
void ms_heap_init(void); /* at process init, before any other ms_heap_ call */
void ms_heap_reset_peak(void);
void ms_heap_maybe_end_cycle(void); /* after accounting an allocation that took pages */
/* a call the scavenger could not make on a free's path, set with its
 * flag: the next allocation that reaches ms_heap_maybe_end_cycle makes it
 * (scavenger.c: start_here) */
extern _Atomic bool ms_heap_alloc_wanted;
extern void (*ms_heap_on_alloc)(void);
uint64_t ms_heap_oldest_idle_ms(uint64_t *idle_bytes);
/* ms_heap_alloc: a span of npages whose start is a multiple of align_pages
 * pages, state INUSE, class cls, pagemap set; *zeroed tells whether all its
 * pages are known to read as zero.  NULL when the OS refuses memory. */
span_t *ms_heap_alloc(size_t npages, size_t align_pages, uint8_t cls, bool *zeroed);
void ms_heap_free(span_t *s);
void ms_heap_free_idle_since(span_t *s, uint64_t idle_since_ms); /* 0: idle from now */
extern void (*ms_heap_on_idle)(void); /* called (no lock held) after a span becomes idle */
/* called (no lock held) before a span of `bytes` becomes idle: a thread that
 * memscope must start is started then, so its own allocations cannot take
 * the pages the program just freed (and a double free of them is caught) */
extern void (*ms_heap_before_idle)(size_t bytes);
/* ms_heap_try_resize: grows (taking the free pages right after the span, or
 * extending the heap if the span ends at its frontier) or shrinks a large
 * span in place; false if it cannot. */
bool ms_heap_try_resize(span_t *s, size_t new_npages);
/* ms_heap_move_pages: moves the pages of `from` into the first pages of `to`
 * with mremap and frees `from`; false (nothing changed) if the kernel says no. */
bool ms_heap_move_pages(span_t *from, span_t *to);
void ms_heap_counters(heap_counters_t *out);
/* ms_heap_take_max_hold_ns: the longest hold of the heap lock since this
 * reader (0: stats, 1: trace) last asked, in ns. */
uint64_t ms_heap_take_max_hold_ns(int reader);
/* Blocks of this many pages or more get a mapping of their own, returned to
 * the OS at free (pageheap.c says why). */
#ifndef MS_DIRECT_MIN_BYTES /* settable at build time for bench/run_direct.sh */
#define MS_DIRECT_MIN_BYTES ((size_t)1 << 30)
#endif
#define MS_DIRECT_MIN_PAGES (MS_DIRECT_MIN_BYTES >> MS_PAGE_SHIFT)
#ifndef MS_DIRECT_ADAPTIVE
#define MS_DIRECT_ADAPTIVE 1
#endif
/* ms_heap_wants_direct: whether a block of npages gets its own mapping (the
 * threshold starts at MS_DIRECT_MIN_PAGES and rises as pageheap.c says) */
bool ms_heap_wants_direct(size_t npages);
/* ms_heap_alloc_direct: a span of npages in its own mapping, zeroed; NULL
 * when the kernel refuses.  ms_heap_free returns it to the OS at once. */
span_t *ms_heap_alloc_direct(size_t npages);
/* While pinned, every page of every span stays mapped: a direct block freed
 * is unmapped at the last unpin, and realloc does not move pages (it
 * copies).  For readers of the heap from outside (the leak checker). */
void ms_heap_pin_mappings(void);
void ms_heap_unpin_mappings(void);
/* ms_heap_scavenge: returns to the OS the free pages idle since
 * older_than_ms or before (UINT64_MAX: all of them), stopping once max_bytes
 * are released.  Returns the bytes released. */
size_t ms_heap_scavenge(uint64_t older_than_ms, size_t max_bytes);
bool ms_heap_is_valid(void); /* expensive validator, takes the lock */
/* Huge pages (scavenger.c).  ms_heap_huge_candidates: looks at up to
 * `looks` 2 MiB-aligned regions of the heap's committed memory from *cur
 * on (wrapping), and returns in out up to max of them whose pages are all
 * in spans in use, none released, not collapsed already, and were so at
 * the previous look too (ms_pagemap_seen); *seq is for
 * ms_heap_huge_done, which marks a region collapsed unless a page of the
 * heap was released since the look. */
typedef struct ms_huge_cursor_s {
    uint32_t range;
    uintptr_t at;
} ms_huge_cursor_t;
size_t ms_heap_huge_candidates(ms_huge_cursor_t *cur, uintptr_t *out, size_t max, size_t looks, uint64_t *seq,
                               size_t *first_seen); /* dense for the first time: not returned yet */
void ms_heap_huge_done(uintptr_t region, uint64_t seq);
extern void (*ms_heap_on_grow)(uint64_t sys_bytes); /* called (no lock held) after an allocation grew the heap to sys_bytes */
/* called (no lock held) after an allocation took pages that were not
 * resident while more idle pages were resident than the page heap's goal
 * allows: bytes of them may go back now (pageheap.c, "Pages taken in") */
extern void (*ms_heap_on_over_goal)(size_t bytes);
void ms_heap_fork_prepare(void);
void ms_heap_fork_parent(void);
void ms_heap_fork_child(void);

/* ------------------------------------------------------------------------
 * central.c
 * ---------------------------------------------------------------------- */
/* ms_central_take: objects of class cls linked through their first word:
 * a whole chain that a thread gave back, if one of at most `room` objects
 * waits in a slot, else up to `want` (at most room) from the spans; returns
 * the count (0 only when the OS refuses memory) and the chain in *head.
 * spare (NULL: not asked for, else set to NULL first by the caller): a
 * take of all `want` from the spans may add a second chain of exactly
 * `want` from the never-used tail its last objects came from (central.c:
 * take_spans_locked). */
uint32_t ms_central_take(uint8_t cls, uint32_t want, uint32_t room, void **head, void **spare);
/* ms_central_next_chain: the length of the chain the next take from a
 * slot would hand out, 0 if none; read without the lock, a hint */
uint32_t ms_central_next_chain(uint8_t cls);
/* ms_central_give: returns a NULL-terminated chain of n objects of class
 * cls: kept whole in a slot while the class's slots have room for it, else
 * walked back into its spans. */
void ms_central_give(uint8_t cls, void *head, uint32_t n);
/* ms_central_give_idle: the same for objects idle since idle_since_ms (a
 * parked thread cache's; 0: from now, the thread caches' blocks above 64
 * KiB): straight to their spans, not into a slot, and spans left empty are
 * free pages idle since then; not the class's activity. */
void ms_central_give_idle(uint8_t cls, void *head, uint64_t idle_since_ms);
void ms_central_flush_slots(void); /* empty every transfer slot into its spans */
bool ms_central_flush_idle(uint64_t now_ms, uint64_t delay_ms);
extern void (*ms_central_on_park)(void); /* called (no lock held) when a class starts parking a batch */
void ms_central_fork_prepare(void);
void ms_central_fork_parent(void);
void ms_central_fork_child(void);
bool ms_central_is_valid(uint8_t cls);

/* ------------------------------------------------------------------------
 * tcache.c
 * ---------------------------------------------------------------------- */
/* ms_cancel_off: turns the calling thread's cancellation off, for memscope's
 * work on the program's thread that reaches a cancellation point (a wait
 * on a condition, a sleep, open, read, write, close): malloc and free are
 * no cancellation points, and a thread cancelled there left memscope's lock
 * held for ever (a thread cancelled in the free that started the
 * scavenger, whose start sleeps holding the scavenger's lock: the next
 * thread's exit hung) or a block taken and never handed out.  Costs no
 * system call.  ms_cancel_restore puts back what ms_cancel_off returned. */
ms_inline int ms_cancel_off(void) {
    int old;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
    return old;
}
ms_inline void ms_cancel_restore(int old) {
    if (old != PTHREAD_CANCEL_DISABLE) pthread_setcancelstate(old, &old);
}

/* ms_hold: blocks every signal in the calling thread, and turns its
 * cancellation off, for a stretch of memscope's own work done on the
 * program's thread (a leak check, a profile, stats, returning memory, the
 * reports at exit), which holds memscope's locks: a handler that allocates
 * meanwhile would wait on a lock its own thread holds (a 1 kHz timer whose
 * handler mallocs hung memscope_check_leaks 5 times out of 5), or find a
 * profiler snapshot half taken.  A signal sent to the thread waits until
 * the stretch ends; one sent to the process goes to another thread that
 * takes it, or waits too.  ms_release ends the stretch. */
typedef struct ms_held_s {
    sigset_t sigs;
    int cancel;
} ms_held_t;
ms_inline void ms_hold(ms_held_t *h) {
    sigset_t all;
    sigfillset(&all);
    h->cancel = ms_cancel_off();
    pthread_sigmask(SIG_BLOCK, &all, &h->sigs);
}
ms_inline void ms_release(const ms_held_t *h) {
    pthread_sigmask(SIG_SETMASK, &h->sigs, NULL);
    ms_cancel_restore(h->cancel);
}

/* ms_count_own: adds n to a counter that only the calling thread writes
 * and other threads read (relaxed).  On x86-64 one add to memory: the
 * owner's read and write need not be one atomic step, as no other thread
 * writes, and a reader sees the aligned 8-byte store whole, before or after;
 * the C11 relaxed load and store would cost three instructions and a
 * register on malloc's fast path. */
ms_inline void ms_count_own(_Atomic uint64_t *c, uint64_t n) {
#if defined(__x86_64__)
    __asm__("addq %1, %0" : "+m"(*(uint64_t *)c) : "er"(n));
#else
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
#endif
}

/* ms_count_own32: ms_count_own of a 32-bit word */
ms_inline void ms_count_own32(uint32_t *c, uint32_t n) {
#if defined(__x86_64__)
    __asm__("addl %1, %0" : "+m"(*c) : "er"(n));
#else
    __atomic_store_n(c, *c + n, __ATOMIC_RELAXED);
#endif
}

/* One list per class; malloc and free touch one 64-byte entry, a line. */
typedef struct tclist_s {
    void *head;               /* objects linked through their first word */
    /* room: objects the list takes before a batch goes to central, so that
     * free's fast path is one decrement and a sign test, malloc's one
     * increment; the list holds max - room objects.  Signed: the shared
     * empty cache's lists (threads with no cache of their own) stay at 0 or
     * below whatever threads race on them, so every free there goes to the
     * slow path.  The lists above 64 KiB keep max at 0 and hold -room
     * objects (tcache.c, "Blocks above 64 KiB").  room and max share one
     * 64-bit word, read at once by the stats (tcache.c: len_of). */
    union {
        struct {
            int32_t room;
            uint32_t max;     /* length above which a batch goes to central */
        };
        uint64_t room_max;
    };
    /* The class's sampling countdown: mallocs of it by the thread that
     * pass unsampled before the next sampled one.  malloc takes one off
     * and samples below 0 (malloc.c, "Sampling"), and the same word
     * counts the thread's mallocs of the class: they are
     * tcache_t.mbase[class] - left, modulo 2^64, and a new draw adds the
     * same to both (ms_tcache_set_left).  0 in a list never used, whose
     * first malloc draws (tcache_t.armed). */
    int64_t left;
    uint32_t size;            /* the class's object size (realloc, and the sampler's draws) */
    /* While the thread has never allocated from the class (max is 0, in
     * the classes up to 64 KiB): how many objects foreign (below) holds */
    uint32_t nforeign;
    /* UINT64_MAX / size + 1: free's test that an offset is a multiple of
     * size (malloc.c: object_start), on the line free writes anyway; 0 in
     * the shared empty cache and in a list never used (size too: both
     * are set by the list's first use, tcache.c), whose frees all take the
     * slow path */
    uint64_t div;
    /* Objects given to the central lists minus objects taken from them,
     * modulo 2^64.  The thread's frees are not counted one by one: they
     * are len + mallocs + nnet, since every object on a list came from a
     * refill or a free and left by a malloc or a hand-back.  Only the slow
     * paths write it. */
    _Atomic uint64_t nnet;
    /* While the thread has never allocated from the class (max is 0): the
     * objects it freed, on their way back to the central list in batches
     * (tcache.c: ms_tcache_free_foreign).  Here, not in arrays of their
     * own, so that a class the thread uses is one line of its cache. */
    void *foreign;
    /* The list's second chain (tcache.c, "Batches"): NULL, or exactly max
     * objects, the whole list as it was when it last filled up.  Only the
     * slow paths touch it. */
    void *spare;
} __attribute__((aligned(MS_CACHE_LINE))) tclist_t;
_Static_assert(sizeof(tclist_t) == 1u << MS_TCLIST_SHIFT, "the mark word holds list offsets");
_Static_assert(MS_SIZE_TO_LIST_SHIFT == MS_TCLIST_SHIFT, "ms_size_to_list holds list offsets");
_Static_assert((uint64_t)(MS_NUM_CLASSES - 1) << MS_TCLIST_SHIFT < (1u << MS_CHECK_SHIFT), "fast_off fits free's check");

typedef struct tcache_s {
    tclist_t lists[MS_NUM_CLASSES]; /* hot: the fast paths use only these ... */
    int64_t sample_left;            /* bytes until the next sampled large allocation (above 256 KiB) */
    uint64_t rng;                   /* xorshift state for the sampling gaps */
    /* Bit c of armed: class c's countdown has been drawn (malloc.c:
     * class_due).  rearming lets another thread read a class's mallocs
     * (mbase - left, below) whole while the owner draws again
     * (ms_tcache_set_left, tcache.c: mallocs_of). */
    uint64_t armed[2];
    uint32_t rearming;
    void *hook_block;               /* the block being sampled (malloc.c: sample_point) */
    _Atomic uint64_t large_mallocs, large_frees;         /* large objects, counts */
    _Atomic uint64_t large_malloc_bytes, large_free_bytes;
    uint64_t max_bytes;             /* sum over the lists of max x object size (tcache.c: total cap) */
    uint64_t grown[2];              /* bit c: lists[c].max > 1, shrink_for's candidates (tcache.c) */
    uint32_t mid;                   /* lists above 64 KiB that may hold objects (tcache.c: MID_BIT) */
    struct tcache_s *next, *prev;   /* registry (reg_lock in tcache.c) */
    bool is_dummy;                  /* the shared empty cache of threads without one */
    /* Parking a quiet thread's cache (tcache.c): the state, written by
     * the owner and the scavenger as tcache.c says; the owner's thread id
     * and its ms_tc; what the scavenger saw (park_lock) */
    _Atomic uint32_t park;
    int tid;
    struct tcache_s **slot;
    const uint32_t *busy;           /* the owner's ms_tc_busy */
    uintptr_t tp;                   /* the owner's thread pointer: its stack ends below it (tcache.c) */
    uint64_t seen_ops, quiet_since_ms, look_round;
    /* The profiler's capture buffer for this thread (prof/stack.h), mapped
     * at its first sample, or a retired cache's handed on when the cache
     * is made, and kept for the next thread when it retires (tcache.c:
     * spare_own): in TLS it was 7 KiB that the C library zeroes, and so
     * makes resident, in every thread, sampling or not.  Set only by the
     * owner thread, and under reg_lock before it runs. */
    void *stack_own;
    size_t stack_own_bytes;
    /* Per class, the class's malloc count (mbase - left, mod 2^32) from which
     * the list's next refill counts as one of a churning list (tcache.c:
     * "Churning lists"); written by the list's refills, apart from the
     * lists' lines, which are full */
    uint32_t churn_at[MS_NUM_CLASSES];
    /* Per class, the thread's mallocs of it plus its countdown
     * (tclist_t.left), written when the countdown is drawn.  Last, and
     * no part of sizeof(tcache_t): the shared empty cache (tcache.c),
     * which counts nothing, has none, and .data stays two pages
     * (tests/test_build.sh); a thread's cache is made with it
     * (MS_TCACHE_BYTES). */
    _Atomic uint64_t mbase[];
} tcache_t;
/* (in whole lines: the pool's caches follow each other, and each needs
 * its lists aligned) */
#define MS_TCACHE_BYTES ((sizeof(tcache_t) + MS_NUM_CLASSES * sizeof(uint64_t) + MS_CACHE_LINE - 1) & ~(size_t)(MS_CACHE_LINE - 1))

/* ms_tls: the thread's words that the hot paths of both modes touch, in
 * one TLS block.  A shared library reaches each initial-exec TLS variable
 * through a GOT load of its offset, one per variable and function; with
 * the words side by side a function loads one offset for all of them
 * (leak-check mode's every hook read seven of them, its malloc and free
 * some fifteen loads of offsets in all).  The profiler's own (its batch,
 * the stack's run, the walks before a look for unloads) are here too, for
 * that reason only: the core never reads them.  Each word keeps its name
 * (the macros below) and its owner's comment; tc starts at the empty
 * cache (tcache.c). */
typedef struct ms_tls_s {
    struct tcache_s *tc;              /* ms_tc (tcache.c) */
    struct tcache_s *tc_mine;         /* ms_tc_mine (tcache.c) */
    void *prof_deferred;              /* ms_prof_deferred (malloc.c) */
    struct batch_s *batch;            /* prof/sample.c: the thread's batch of counts */
    uintptr_t stack_run_lo, stack_run_hi; /* prof/stack.c: the thread's run of readable pages */
    /* tc_busy and prof_busy not side by side: hooks that lower both
     * (ms_every_end, ms_freed_every_end) became vector code, and seven
     * instructions more a free.  Where both are raised, prof_busy goes
     * first and comes down last (a compiler barrier between: as words of
     * one object gcc reordered them), so that a signal handler never finds
     * the cache busy outside the profiler (alloc_small's and free's
     * assertion: no slow path of the cache under way below) */
    uint32_t tc_busy;                 /* ms_tc_busy (below) */
    int no_sample;                    /* ms_no_sample (os.c) */
    uint32_t prof_busy;               /* ms_prof_busy (malloc.c) */
    uint8_t unwind_fresh_skip;        /* prof/unwind.c: walks before the next look for unloads */
} __attribute__((aligned(64))) ms_tls_t;
extern __thread ms_tls_t ms_tls __attribute__((tls_model("initial-exec")));
#define ms_tc (ms_tls.tc)
#define ms_tc_mine (ms_tls.tc_mine)
#define ms_tc_busy (ms_tls.tc_busy)
#define ms_prof_busy (ms_tls.prof_busy)
#define ms_prof_deferred (ms_tls.prof_deferred)
#define ms_no_sample (ms_tls.no_sample)
/* ms_tcache_mine: the calling thread's own cache, parked or not; NULL
 * before its first allocation and once its exit has retired it.  Inline:
 * every capture of leak-check mode asks (stack.h). */
ms_inline tcache_t *ms_tcache_mine(void) { return ms_tc_mine; }
/* ms_tc_busy: the thread is inside one of malloc.c's slow paths with its
 * cache, where it may block on a lock or in mmap (tcache.c: a cache is
 * never parked then). */
extern tcache_t ms_tc_empty;
tcache_t *ms_tcache_create(void);   /* for the calling thread; NULL on OOM */
tcache_t *ms_tcache_list_owner(const tclist_t *l); /* the empty cache or the caller's own, whichever holds l */
/* ms_debug_slow_entry (debug builds): called first on entering malloc's or
 * free's slow path from the fast path, where the scavenger's step back
 * (tcache.c, "Quiet threads", 2) may land between the two;
 * tests/test_unit_parkwake.c plays it there. */
#if MEMSCOPE_DEBUG
extern void (*ms_debug_slow_entry)(void);
#define MS_DEBUG_SLOW_ENTRY() (ms_debug_slow_entry ? ms_debug_slow_entry() : (void)0)
#else
#define MS_DEBUG_SLOW_ENTRY() ((void)0)
#endif
tcache_t *ms_tcache_hide(void);     /* the thread's cache out of use (see tcache.c) ... */
void ms_tcache_unhide(tcache_t *tc); /* ... and back */
void *ms_tcache_refill(tcache_t *tc, uint8_t cls);  /* one object, rest cached */
void ms_tcache_overflow(tcache_t *tc, uint8_t cls); /* list full: it becomes the spare, the old spare goes to central */
void ms_tcache_flush(tcache_t *tc);                 /* every list to central */
void ms_tcache_give_foreign(tcache_t *tc, int cls);
/* Classes above 64 KiB hold two objects a span.  A thread's lists of them
 * allow nothing (max 0): every free of such a block comes to
 * ms_tcache_free_mid, which keeps it on its list only while the thread's
 * lists of these classes hold at most MS_TC_MID_BYTES, and their central
 * lists keep no block in slots and no empty span (tcache.c, "Blocks above
 * 64 KiB").  took: as free_small_slow's (malloc.c), not NULL if free's
 * fast path took room for p (room one lower). */
#define MS_TC_MID_ABOVE 65536u
#define MS_TC_MID_BYTES ((uint64_t)512 << 10)
/* the first of those classes, as a constant: a compare of the class, not
 * a load of its size, on the slow paths that ask (tests/test_unit_tcache.c
 * checks it against src/sizeclasses.h) */
#define MS_TC_MID_FIRST 81
ms_inline bool ms_tc_mid(uint8_t cls) { return cls >= MS_TC_MID_FIRST; }
void ms_tcache_free_mid(tcache_t *tc, uint8_t cls, void **p, const tcache_t *took);
/* ms_tcache_set_left: the owner sets the sampling countdown of class c of
 * its cache tc to left, with the class's malloc count (mbase - left)
 * unchanged: the same difference is added to both, each add one
 * instruction, so that a signal handler's malloc between them counts
 * whole, and another thread's read that overlaps the two sees rearming
 * raised or mbase moved, and reads again (tcache.c: mallocs_of). */
void ms_tcache_set_left(tcache_t *tc, uint8_t c, int64_t left);
/* ms_tcache_list_setup: list l of class cls gets its size and div, at its
 * first use (a refill, or a free of the class: tcache.c, "Memory") */
ms_inline void ms_tcache_list_setup(tclist_t *l, uint8_t cls) {
    l->size = ms_class_size[cls];
    l->div = UINT64_MAX / ms_class_size[cls] + 1;
}
/* ms_tcache_free_foreign: object p (its cookie set) is freed into list cls
 * of tc, which the thread has never allocated from (max 0): gathered apart
 * and counted as handed back at once, so the stats' frees (len + mallocs +
 * nnet) see it; a batch goes to the central list. */
ms_inline void ms_tcache_free_foreign(tcache_t *tc, uint8_t cls, void *p) {
    tclist_t *l = &tc->lists[cls];
    *(void **)p = l->foreign;
    l->foreign = p;
    ms_count_own(&l->nnet, 1);
    if (++l->nforeign == ms_class_batch[cls]) ms_tcache_give_foreign(tc, cls);
}
/* ms_tcache_spare_in: list l of the thread's own cache is empty and has a
 * spare (tcache.c, "Batches"), which becomes the list, full; returns its
 * head.  ms_tcache_spare_out: list l of the thread's own cache is full and
 * free's fast path took room for p (room -1); with no spare, the list
 * becomes the spare and p the list.  Either way the objects leave one
 * (the spare, or the list's word) before the other shows them, the order
 * tcache.c's len_of relies on. */
ms_inline void **ms_tcache_spare_in(tclist_t *l) {
    void **p = l->spare;
    __atomic_store_n(&l->spare, NULL, __ATOMIC_RELEASE);
    l->head = p;
    l->room_max = (uint64_t)l->max << 32;
    return p;
}
ms_inline void ms_tcache_spare_out(tclist_t *l, void **p) {
    void *full = l->head;
    p[0] = NULL;
    l->head = p;
    l->room_max = (uint64_t)l->max << 32 | (l->max - 1);
    __atomic_store_n(&l->spare, full, __ATOMIC_RELEASE);
}
/* ms_tcache_park_idle: the scavenger's look at the thread caches: the
 * cache of a thread that has neither allocated nor freed for delay_ms and
 * sits in a system call goes back to its spans, and pages it leaves free
 * count as idle since the thread went quiet.  True while some cache still
 * holds objects (look again). */
bool ms_tcache_park_idle(uint64_t now_ms, uint64_t delay_ms);
extern void (*ms_tcache_on_unpark)(void); /* a parked cache is in use again */
extern void (*ms_tcache_on_exit)(void);   /* a thread with a cache is exiting */
extern _Atomic uint64_t ms_tcache_parks;      /* caches parked so far */
void ms_tcache_init_process(void);
void ms_tcache_fork_prepare(void);
void ms_tcache_fork_parent(void);
void ms_tcache_fork_child_locks(void);
void ms_tcache_fork_child_flush(void);
/* Totals over live and exited threads; by_class may be NULL. */
typedef struct class_counts_s { uint64_t mallocs, frees; } class_counts_t;
void ms_tcache_totals(class_counts_t by_class[MS_NUM_CLASSES], uint64_t *large_bytes_alloc,
                      uint64_t *large_bytes_free, uint64_t *cached_bytes, uint32_t *nthreads);

/* ------------------------------------------------------------------------
 * sizeclass.c
 * ---------------------------------------------------------------------- */
/* ms_size_classes_tail: requests of up to 1024 bytes get a class at least
 * MS_TAIL bytes larger from now on (leak-check mode, before any block is
 * recorded: "Records in the blocks' tails" above) */
void ms_size_classes_tail(void);
/* ms_class_usable: the bytes of a block of class cls that are the
 * program's: the class's, less the record's in a tail class (above:
 * ms_class_tail_bytes is MS_TAIL for those, 0 for every class until then) */
extern uint8_t ms_class_tail_bytes[MS_NUM_CLASSES];
ms_inline uint32_t ms_class_usable(uint8_t cls) { return ms_class_size[cls] - ms_class_tail_bytes[cls]; }
/* ms_block_scan_bytes: the bytes of small block a of class cls (allocated
 * at the leak checker's snapshot) that the leak checker reads: the request
 * in a class of records in the tail, else the whole block */
ms_inline size_t ms_block_scan_bytes(uintptr_t a, uint8_t cls) {
    size_t size = ms_class_size[cls];
    if (!ms_class_tail(cls)) return size;
    return ms_tail_req(__atomic_load_n(ms_tail_word(a, size), __ATOMIC_RELAXED), size);
}
ms_inline uint8_t ms_size_class(size_t size) {
    if (ms_likely(size <= 1024)) return (uint8_t)(ms_size_list[size] >> MS_SIZE_TO_LIST_SHIFT); /* malloc's table */
    return ms_size_to_class128[(size + 127) >> 7];
}
extern uint64_t ms_cookie_key;
/* A freed small object carries ms_free_cookie(p) in its second word; malloc
 * clears it.  Finding it at free means the object is already free.  Its
 * address plus the key, not xor: as good a value no program stores by
 * chance, and linear in p, so that the cookies of a run of objects a span
 * carves step by the object size (central.c: link_run, two instructions
 * an object instead of five). */
ms_inline uintptr_t ms_free_cookie(const void *p) { return (uintptr_t)p + ms_cookie_key; }
uint8_t ms_class_for_aligned(size_t size, size_t align); /* 0 if no class fits */

/* ------------------------------------------------------------------------
 * scavenger.c, cycle.c, options.c, init.c, stats.c
 * ---------------------------------------------------------------------- */
void ms_scavenger_kick(void);        /* start lazily / wake the background thread */
void ms_scavenger_init(void);
void ms_scavenger_fork_child(void);  /* reset; no thread starts until ms_scavenger_fork_done */
void ms_scavenger_fork_done(void);

void ms_cycle_init(void);
void ms_cycle_fork_child(void);
void ms_cycle_forced(void);          /* a forced cycle: memscope_free_os_memory */
void ms_cycle_info(uint64_t *next_gc, uint64_t *last_gc_ns, uint32_t *num_gc, uint32_t *num_forced);
void ms_trace_scavenge(size_t released_bytes, bool forced);

/* Fields are named after the MEMSCOPE keys (options.c holds the table). */
#define MS_OPT_PATH_MAX 256
enum { LEAKS_OFF = 0, LEAKS_ON = 1, LEAKS_EXIT = 2, LEAKS_REACHABLE = 3 };
enum { LEAKS_MMAP_OFF = 0, LEAKS_MMAP_PRIVATE = 1, LEAKS_MMAP_SHARED = 2 };
#define MS_OPT_HTTP_MAX 64 /* bytes of the http option, with its NUL */
typedef struct options_s {
    bool trace;
    bool stats;
    int64_t scavenge_delay_ms;
    int64_t profile_rate;                /* bytes; 0 off */
    char heapprofile[MS_OPT_PATH_MAX];   /* "" none */
    char log[MS_OPT_PATH_MAX];           /* "" stderr */
    int64_t leaks;                       /* LEAKS_* */
    int64_t leaks_mmap;                  /* LEAKS_MMAP_*: leak checks read the program's own mappings too */
    char http[MS_OPT_HTTP_MAX];          /* "" (off), "PORT" or "ADDR:PORT" */
    bool hugepages;                      /* the scavenger collapses dense heap regions into huge pages */
} options_t;
#define OPT_INIT_OPT_BOOL(def) (def)
#define OPT_INIT_OPT_DURATION(def) (def)
#define OPT_INIT_OPT_BYTES(def) (def)
#define OPT_INIT_OPT_CHOICE(def) (def)
#define OPT_INIT_OPT_STRING(def) {0}
extern options_t ms_opt;
void ms_options_init(void);
/* ms_options_parse: parses a MEMSCOPE value into *o (valid items overwrite it),
 * warning through warn() for each bad item; returns the number of warnings. */
int ms_options_parse(const char *text, options_t *o, void (*warn)(const char *msg));

/* ------------------------------------------------------------------------
 * malloc.c: the heap profiler's hooks.  The core decides which allocations
 * are sampled (a per-thread countdown of bytes, exponentially distributed
 * gaps of mean ms_sample_rate) and keeps, per span, the count of live
 * sampled blocks; everything else is the profiler's (src/prof/), which
 * installs these before setting ms_sample_rate.  Hooks run with no
 * allocator lock held and may allocate (the recursion is not sampled).
 * ---------------------------------------------------------------------- */
#define MS_HOOK_LEAF 0
#define MS_HOOK_SHALLOW 384
#define MS_HOOK_DEEP 4096
/* what the every hook says of the stack it may have left copies of its
 * block in: below its caller's stack pointer, none (MS_HOOK_LEAF: it held
 * the block's address in registers only, making no call once it had read
 * it; tests/test_unit_hookdepth.c holds the compiled code to that), at
 * most MS_HOOK_SHALLOW or MS_HOOK_DEEP bytes */
enum { MS_HOOK_TO_LEAF, MS_HOOK_TO_SHALLOW, MS_HOOK_TO_DEEP };
typedef struct prof_hooks_s {
    /* stack: the allocation being sampled: the id of its stack
     * (UINT32_MAX: none).  Called with no copy of the block's address in
     * any register (malloc.c: sample_point), so the unwinder's deep frames
     * hold none either.  fp: sample_point's frame, where the walk starts. */
    uint32_t (*stack)(const uintptr_t *fp);
    /* sampled: block p of `size` usable bytes, allocated at stack `id`, was
     * just drawn for the profile; the profiler calls ms_malloc_sampled(p)
     * if it keeps a record.  True if its frames and its callees' stayed
     * within MS_HOOK_SHALLOW bytes below the caller's stack pointer (the
     * core then clears only those of copies of p), false if they may have
     * gone as deep as MS_HOOK_DEEP. */
    bool (*sampled)(void *p, size_t size, uint32_t id);
    /* freed: p, a block in a span with recorded blocks, is being freed (or
     * is leaving its address); true if p was recorded (the record is gone).
     * s: p's span in use, as the caller found it in the page map, or NULL
     * (the profiler looks it up). */
    bool (*freed)(void *p, span_t *s);
    /* moved: recorded block p now lives at q with `size` usable bytes. */
    void (*moved)(void *p, void *q, size_t size);
    /* span_done: small span s, whose prof is set, leaves use (every object
     * is back in it; central.c, before the page heap takes it). */
    void (*span_done)(span_t *s);
    /* every: leak-check mode's record of a small block, stack and all, in
     * one call, the last of the core's malloc (malloc.c: sample_small), a
     * tail call, so that the hook's own frame's return address and saved
     * rbp are the program's, where the stack starts: the block waits in
     * tc->hook_block (read only once the stack is captured, as for
     * `stack`), `size` its class's bytes, with ms_prof_busy and ms_tc_busy
     * raised for it.  The hook ends the malloc: it returns what
     * ms_every_done returns (its last call, a tail call, saying how deep
     * its frames may have kept copies of the block, MS_HOOK_TO_*, as
     * `sampled` does with one more depth), or, where it made no call
     * once it had read the block, ms_every_end's.  It leaves errno as it
     * found it: the common case makes no system call, and the others
     * save it themselves.  NULL in sampled mode. */
    void *(*every)(tcache_t *tc, size_t size);
    /* freed_every: leak-check mode's free of small block p of span s (in
     * use, marked MS_MARK_ALL), made by the core's free last, as a tail
     * call: p is checked and on the thread's list already, and the core
     * raised ms_prof_busy before it put it there (a signal handler's
     * malloc then takes p unrecorded, as inside any hook); the hook takes
     * p's record and counts the free as freed does, then calls
     * ms_freed_every_end.  i is p's number in s, which the core's check
     * that p starts a block computed with it (malloc.c: object_start_at);
     * tail is p's last word as it was before the core put p on its list
     * (its record, in a tail span: ms_span_tail).  NULL in sampled mode. */
    void (*freed_every)(void *p, span_t *s, uint32_t i, uint64_t tail);
} prof_hooks_t;
extern prof_hooks_t ms_prof_hooks;
/* ms_prof_busy: the thread is inside the profiler (a hook, or one of its
 * entry points that take its locks): a signal handler's malloc is not
 * sampled, and its free of a block the profiler may hold waits (malloc.c:
 * defer_free) until ms_prof_leave brings the count back to 0. */
void ms_prof_leave_slow(void);
ms_inline void ms_prof_leave(void) {
    if (--ms_prof_busy == 0 && ms_unlikely(ms_prof_deferred != NULL)) ms_prof_leave_slow();
}
/* ms_forget_scratch: the caller-saved registers hold nothing from here
 * on.  The unwinder (libunwind's, which gets the registers' context
 * first) saves every register of the frame it starts from, and one of
 * them may still hold the block being sampled (malloc.c: sample_point;
 * the every hook calls it before it walks). */
ms_inline void ms_forget_scratch(void) {
#if defined(__x86_64__)
    __asm__ volatile("xor %%eax, %%eax\n\txor %%ecx, %%ecx\n\txor %%edx, %%edx\n\t"
                     "xor %%esi, %%esi\n\txor %%edi, %%edi\n\txor %%r8d, %%r8d\n\t"
                     "xor %%r9d, %%r9d\n\txor %%r10d, %%r10d\n\txor %%r11d, %%r11d"
                     ::: "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "cc");
#endif
}
/* ms_every_done: the end of a malloc that the every hook took: the
 * profiler left (ms_prof_leave), the cache no longer busy, the stack below
 * the caller cleared as depth says (MS_HOOK_TO_SHALLOW: MS_HOOK_SHALLOW
 * bytes; MS_HOOK_TO_DEEP: MS_HOOK_DEEP), and the block taken from
 * tc->hook_block and returned.  ms_every_end: the same, inline, for a
 * hook that left no copy of the block below its caller (MS_HOOK_TO_LEAF)
 * and has no deferred free to make (ms_prof_deferred NULL): it returns
 * the block, p, from the hook's register. */
void *ms_every_done(tcache_t *tc, int depth);
ms_inline void *ms_every_end(tcache_t *tc, void *p) {
    ms_tc_busy--; /* first, as ms_freed_every_end (internal.h: ms_tls) */
    atomic_signal_fence(memory_order_seq_cst);
    ms_prof_busy--;
    tc->hook_block = NULL;
    return p;
}
/* ms_freed_every_end: the freed_every hook's last step.  The core raised
 * ms_tc_busy with ms_prof_busy before it put the block on the thread's
 * list: the hook may wait on a lock (a batch's, the tally's) with the
 * block listed and its record not yet counted, and a thread waiting there
 * must not have its cache parked and flushed under it (tcache.c: quiet
 * threads), as in any slow path. */
ms_inline void ms_freed_every_end(void) {
    ms_tc_busy--;
    atomic_signal_fence(memory_order_seq_cst); /* first (internal.h: ms_tls) */
    ms_prof_leave();
}
/* ms_malloc_sampled: the profiler keeps a record of block p (just allocated,
 * not yet returned to the program): free must now ask it.  s: p's span, if
 * the caller has it (else NULL). */
void ms_malloc_sampled(void *p, span_t *s);
/* ms_malloc_sampled_small: ms_malloc_sampled for block p of small span s
 * (or NULL), inline where s is all recorded already (leak-check mode's
 * every malloc but a span's first): only the check of p's page is closed */
ms_inline void ms_malloc_sampled_small(void *p, span_t *s) {
    if (ms_likely(s != NULL && ms_span_mark(s) == MS_MARK_ALL))
        ms_span_check_closed(s, (uintptr_t)p & ~(uintptr_t)MS_PAGE_MASK);
    else
        ms_malloc_sampled(p, s);
}
/* ms_hook_block: the block the calling thread's malloc is handing out
 * while the profiler records its stack, or NULL.  It waits in the thread's
 * cache then, in no register and on no stack (sample_point), so the leak
 * checker's stop handler takes it as one of the thread's registers: a
 * thread preempted there across a whole check had its new block reported
 * lost, without a stack.  Async-signal-safe. */
void *ms_hook_block(void);
/* ms_no_sample: while nonzero the thread's allocations are never sampled:
 * memscope's own threads (for their whole life, from their start in
 * os.c: ms_os_thread), and the profiler while it captures a stack. */
extern _Atomic int64_t ms_sample_rate; /* mean bytes between samples; 0: off */
/* ms_every_block_recorded: leak-check mode (profile_rate=1), where a check
 * must be exact.  A conservative scan reads every byte of a block, and
 * what a slot or page held before (a freed block's words, another layout's
 * free-list links, to slots that may hold lost blocks since) survived in
 * the unused tail: with 8 threads leaking and churning, 20-30 lost blocks a
 * check were kept "reachable" so (tests/leak/mt.c).  LeakSanitizer, whose
 * free lists live outside the blocks, scans only the requested size.  So
 * in this mode a small block leaves malloc with its free-list link
 * cleared, and the leak checker reads only the request of a block whose
 * record is in its tail (the record keeps the request: "Records in the
 * blocks' tails" above, ms_block_scan_bytes); the other small blocks
 * leave malloc with the bytes past the request cleared, a span taking a
 * size class has its pages cleared, and a large block is cleared whole,
 * unless the pages are fresh from the kernel.  What remains of the past is
 * what the program itself wrote in the requested bytes of the slot's last
 * block of the same class, as under LeakSanitizer.  Clearing small blocks
 * whole cost a memset of the block per malloc that wrote lines the program
 * never touched: leak-check mode on st_churn missed the first-level cache
 * on 3.9 writes per malloc that way, 1.1 with the tail alone (cachegrind);
 * and clearing the tails past the request, in the classes of records in
 * the tail, cost larson a tenth of its time in this mode (by hand, the
 * clear left out: 0.77 -> 0.69 CPU seconds, medians of 11 interleaved
 * runs). */
ms_inline bool ms_every_block_recorded(void) {
    return atomic_load_explicit(&ms_sample_rate, memory_order_relaxed) == 1;
}
/* ms_malloc_rearm: the calling thread draws its next sampling gap now (after
 * ms_sample_rate changed). */
void ms_malloc_rearm(void);
/* ms_in_memscope_text: pc lies in the allocator's entry points or the
 * profiler's capture path (section memscope_text); stacks start below them. */
bool ms_in_memscope_text(uintptr_t pc);
#define MS_TEXT __attribute__((section("memscope_text")))

void ms_init_slow(void);
extern _Atomic int ms_inited;
ms_inline void ms_ensure_init(void) {
    if (ms_unlikely(atomic_load_explicit(&ms_inited, memory_order_acquire) != 2)) ms_init_slow();
}
void ms_stats_read(struct memscope_stats *st);
void ms_stats_fork_child(void);
/* malloc.c: adds the counts of threads past exit into by_class; large bytes allocated and freed */
void ms_malloc_orphan_counts(class_counts_t by_class[MS_NUM_CLASSES], uint64_t large_bytes[2]);

/* ------------------------------------------------------------------------
 * What the leak checker (src/leak/) may ask the core; nothing else.
 * ---------------------------------------------------------------------- */
/* pageheap.c: fn(s, arg) for each span in use, in address order, under the
 * heap lock (fn must not allocate); returns how many. */
size_t ms_heap_for_each_inuse(void (*fn)(const span_t *s, void *arg), void *arg);
/* pageheap.c: every mapping that holds heap pages (reservations, up to
 * the last page ever mapped in them, and direct spans), up to cap of them into
 * out as [lo, hi); returns how many there are (more than cap: call again
 * with room), SIZE_MAX if the heap cannot name them all.  *gen: a number
 * that changes with the list; ms_heap_mappings_gen reads it without a lock
 * (for a reader that has stopped the other threads: it takes none). */
size_t ms_heap_mappings(uintptr_t (*out)[2], size_t cap, uint64_t *gen);
uint64_t ms_heap_mappings_gen(void);
/* malloc.c: true if addr is at or in a block allocated now (see there for
 * the middle pages of large blocks); its start and usable size. */
bool ms_block_find(uintptr_t addr, uintptr_t *start, size_t *size);

#endif /* MS_INTERNAL_H */
