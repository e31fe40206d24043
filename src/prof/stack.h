/* stack.h: the stack capture, inline, for the sampling hook (stack.c has
 * the design).  Returns -1 when a fork is in progress: the sample is
 * dropped rather than the fork delayed. */
#ifndef MS_STACK_H
#define MS_STACK_H

#include <sched.h>

#include "prof.h"

/* Captures in progress, counted in one slot per group of threads: a single
 * counter was a cache line every sampling thread wrote twice per sample
 * (at profile_rate=1 it bounced between CPUs on each malloc).  A thread's
 * slot comes from the address of its TLS block.  A fork sums the slots. */
#define MS_STACK_SLOTS 16
typedef struct stack_slot_s {
    _Alignas(64) _Atomic int n;
} stack_slot_t;
extern stack_slot_t ms_stack_capturing[MS_STACK_SLOTS];
extern _Atomic bool ms_stack_forking;

/* ms_stack_read: the word at addr if its page is readable (stack.c: a
 * page proven readable by process_vm_readv, four remembered per thread).
 * Pages are counted in the smallest size: a page known readable is known
 * to that size. */
#define MS_OS_PAGE 4096
bool ms_stack_read(uintptr_t addr, uintptr_t *val);
/* ms_stack_run: a walk that starts on page lo may read [lo, the returned
 * end) as it is (stack.c: the thread's run of pages proven readable).
 * ms_stack_run_hi: that end now, if lo is still in the run, else 0. */
#define ms_stack_run_lo (ms_tls.stack_run_lo) /* the run (stack.c), words of ms_tls (internal.h) */
#define ms_stack_run_hi_ (ms_tls.stack_run_hi)
uintptr_t ms_stack_run_slow(uintptr_t lo);
ms_inline uintptr_t ms_stack_run(uintptr_t lo) {
    if (ms_likely(lo >= ms_stack_run_lo && lo < ms_stack_run_hi_)) return ms_stack_run_hi_;
    return ms_stack_run_slow(lo);
}
uintptr_t ms_stack_run_hi(uintptr_t lo);
/* ms_stack_run_to: the run's end, once it is grown (if it can be) to reach
 * `to`, for a walk that starts on page lo; 0 if lo is not in the run.
 * Pages read through ms_stack_read's four remembered ones do not grow the
 * run, and a frame of more than a page leaves pages a walk never reads. */
uintptr_t ms_stack_run_to(uintptr_t lo, uintptr_t to);

/* ms_stack_guard_enter: counts the calling thread as inside the part of a
 * capture that a fork must not cut in two (stack.c: libunwind and its
 * cache, dl_iterate_phdr, the recipe table emptied); false, and not
 * counted, when a fork is in progress.  ms_stack_guard_leave ends it.
 * Only what takes a lock or updates shared state goes in there: a warm
 * walk, which reads the thread's stack and the recipe table and writes
 * only its own buffer, needs no guard, and the two locked instructions
 * were a good part of a capture's time at profile_rate=1. */
ms_inline bool ms_stack_guard_enter(void) {
    _Atomic int *busy = &ms_stack_capturing[(uint64_t)(uintptr_t)&ms_no_sample * 0x9E3779B97F4A7C15ull >> 60].n;
    atomic_fetch_add(busy, 1);
    if (atomic_load(&ms_stack_forking)) {
        atomic_fetch_sub(busy, 1);
        return false;
    }
    return true;
}
ms_inline void ms_stack_guard_leave(void) {
    atomic_fetch_sub(&ms_stack_capturing[(uint64_t)(uintptr_t)&ms_no_sample * 0x9E3779B97F4A7C15ull >> 60].n, 1);
}

/* unwind.c: the walker for plain frames; MS_UNWIND_REFUSED where libunwind
 * must walk, MS_UNWIND_FORK when it needed the guard (a recipe to find,
 * the unloads to count) while a fork is in progress.
 * A replay record (optional) remembers where a walk read each word whose
 * value counts: the next walk into the same buffer from the same place
 * only reads them again, and if all are unchanged, it is the same stack
 * (hit). */
#define MS_STACK_RAW (MS_PROF_MAX_DEPTH + 32) /* room for memscope's own frames */
#define MS_REPLAY_READS (2 * MS_STACK_RAW)
#define MS_UNWIND_REFUSED (-1)
#define MS_UNWIND_FORK (-2)
typedef struct replay_s {
    uintptr_t pc0, sp0, rbp0; /* where the walk started (sp0 0: nothing to replay, unwind.c: finish) */
    int n, cap;               /* frames it gave (0: no record), of at most cap */
    int nreads;               /* words whose value counts: at/not[MS_REPLAY_READS - nreads ..] */
    bool uses_rbp0;           /* a frame's CFA came from rbp0 (else rbp0 need not match) */
    bool hit;                 /* the last walk was this one again */
    int spliced;              /* the last walk ended with the one before's frames from this
                                 one of its own on (-1: it did not; unwind.c) */
    int skip;                 /* the capture's count of memscope's own frames at the top */
    uint32_t id;              /* the profiler's id for the stack (UINT32_MAX: none yet) */
    uint32_t gen;             /* unwind.c's recipe generation it was walked with */
    uintptr_t rd_lo, rd_hi;   /* every word the walk read lies in [rd_lo, rd_hi) */
    uintptr_t at[MS_REPLAY_READS];  /* where each word that counts was read */
    uintptr_t not[MS_REPLAY_READS]; /* ~ the value read: never a heap address, for the
                                       leak checker, which scans this TLS as a root */
    /* Frame j of the n at index MS_STACK_RAW - n + j (at the end, so that
     * the next walk writes its own from 0 while it looks among these):
     * its pc and sp, ~ its rbp, whether the walk from it on used that rbp,
     * the words that count from it on (the last frest of at/not) and the
     * lowest address read from it on (the highest is rd_hi, near enough:
     * the walk reads upwards, and tests/test_build.sh holds memscope's TLS
     * to 8 KiB a thread). */
    uintptr_t fpc[MS_STACK_RAW], fsp[MS_STACK_RAW], frbp[MS_STACK_RAW], flo[MS_STACK_RAW];
    uint16_t frest[MS_STACK_RAW];
    bool frbp_counts[MS_STACK_RAW];
} replay_t;
extern bool ms_unwind_enabled;
extern _Atomic uint32_t ms_unwind_gen;         /* unwind.c: the recipes' generation */
#define ms_unwind_fresh_skip (ms_tls.unwind_fresh_skip) /* unwind.c: walks before the next look for unloads (ms_tls) */
bool ms_unwind_fresh_now(void);                /* unwind.c: that look, when the count is out */
void ms_unwind_init(void);
/* ms_libunwind_backtrace: libunwind's unw_backtrace, for the stacks the
 * walker refuses; libunwind is loaded by the first call (stack.c).  0
 * frames when it cannot be loaded, or while another capture loads it.
 * The caller holds the guard. */
int ms_libunwind_backtrace(void **raw, int cap);
/* ms_unwind_refused_at_signal: the calling thread's last walk the walker
 * refused stopped at a signal frame (unwind.c) */
bool ms_unwind_refused_at_signal(void);
int ms_unwind(void **out, int cap, replay_t *rp);
int ms_unwind_from(void **out, int cap, replay_t *rp, const uintptr_t *fp);
#if MEMSCOPE_DEBUG
void ms_unwind_check(void *const *raw, int n, int cap);
#endif

/* stack_unwind: up to cap return addresses into raw, the innermost first
 * (memscope's own frames included); -1 when a fork is in progress.  fp:
 * the frame to start from (ms_unwind_from), NULL for the caller's. */
ms_inline int stack_unwind(void **raw, int cap, replay_t *rp, const uintptr_t *fp) {
    ms_no_sample++;
    int n = !ms_unwind_enabled ? MS_UNWIND_REFUSED : fp ? ms_unwind_from(raw, cap, rp, fp) : ms_unwind(raw, cap, rp);
#if MEMSCOPE_DEBUG
    if (n >= 0 && ms_stack_guard_enter()) {
        ms_unwind_check(raw, n, cap);
        ms_stack_guard_leave();
    }
#endif
    if (n == MS_UNWIND_REFUSED) {
        if (ms_stack_guard_enter()) {
            n = ms_libunwind_backtrace(raw, cap);
            ms_stack_guard_leave();
        } else {
            n = MS_UNWIND_FORK;
        }
    }
    ms_no_sample--;
    if (n == MS_UNWIND_FORK) return -1;
    return n > 0 ? n : 0;
}

ms_inline int ms_stack_capture_inline(uintptr_t *pcs, int max, int skip) {
    void *raw[MS_STACK_RAW];
    int cap = max + skip + 16;
    if (cap > MS_STACK_RAW) cap = MS_STACK_RAW;
    int n = stack_unwind(raw, cap, NULL, NULL);
    if (n < 0) return -1;
    /* What the buffer held before is whatever earlier calls left at this
     * depth of the stack, heap pointers among them; the leak checker scans
     * the stacks of threads it stops (often in here, waiting for the
     * profiler's lock), so stale pointers would keep lost blocks
     * "reachable".  Clear what the walk did not write. */
    __builtin_memset(raw + n, 0, sizeof raw - (size_t)n * sizeof raw[0]);
    int i = 0;
    while (i < n && ms_in_memscope_text((uintptr_t)raw[i])) i++;
    i += skip;
    int k = 0;
    for (; i < n && k < max; i++) pcs[k++] = (uintptr_t)raw[i];
    return k;
}

/* The thread's own capture buffer, for the sampling hook.  It holds return
 * addresses, stack addresses and complemented words (replay_t), never a
 * heap address, so it needs no clearing for the leak checker (which does
 * not scan it): a buffer on the stack had to be cleared on every sample
 * (two memsets of 500-800 bytes, a large share of a sample's cost at
 * profile_rate=1).  It hangs off the thread's cache (tcache_t.stack_own),
 * mapped at the thread's first sample, or handed on, cleared, when the
 * cache is made from one that retired (the thread's exit, or a fork
 * child's flush of the other threads' caches; tcache.c: spare_own): in
 * TLS, 7 KiB of it was resident in every thread, the scavenger's and
 * those that never sample among them, because the C library zeroes a
 * thread's static TLS when it starts it. */
typedef struct stack_own_s {
    volatile bool busy;  /* in use; a signal handler's sample then takes the stack path */
    uintptr_t raw[MS_STACK_RAW];
    replay_t replay;     /* how raw was walked (a loop's mallocs walk the same stack) */
} stack_own_t;
/* ms_stack_own_cap: the frames a capture of up to max frames walks into
 * the thread's own buffer: room for memscope's own on top */
ms_inline int ms_stack_own_cap(int max) { return max + 16 < MS_STACK_RAW ? max + 16 : MS_STACK_RAW; }
/* ms_stack_own_map: the calling thread's buffer, mapped now; NULL when it
 * has no cache (before its first allocation, after its exit) or the
 * kernel refuses the mapping: its samples then take the stack path. */
stack_own_t *ms_stack_own_map(void);

/* ms_stack_capture_own: as ms_stack_capture_inline with no skip, into the
 * thread's own buffer (*own): *pcs points at up to max frames, valid until
 * ms_stack_own_release.  -1 during a fork; -2 when the buffer is in use (a
 * malloc in a signal handler that interrupted a sample) or the thread has
 * none: the caller then uses ms_stack_capture_inline. */
ms_inline int ms_stack_capture_own_from(tcache_t *tc, const uintptr_t *fp, int max, const uintptr_t **pcs,
                                        stack_own_t **own) {
    stack_own_t *o = tc ? (stack_own_t *)tc->stack_own : NULL;
    if (ms_unlikely(!o) && !(o = ms_stack_own_map())) return -2;
    if (o->busy) return -2;
    o->busy = true;
    atomic_signal_fence(memory_order_seq_cst);
    int cap = ms_stack_own_cap(max);
    /* the walkers store void pointers; the buffer is read as uintptr_t,
     * the same size, written by another object file */
    int n = stack_unwind((void **)o->raw, cap, &o->replay, fp);
    if (n < 0) {
        o->busy = false;
        return -1;
    }
    /* a replay gives the frames of the last walk, whose count of memscope's
     * frames is known */
    int i = 0;
    if (o->replay.hit) {
        i = o->replay.skip;
    } else {
        while (i < n && ms_in_memscope_text(o->raw[i])) i++;
        o->replay.skip = i;
    }
    *pcs = &o->raw[i];
    *own = o;
    return n - i < max ? n - i : max;
}
/* ms_stack_replay_hit: true if the thread's last capture into o, walked
 * from the frame fp with room for cap frames, is the walk that would start
 * at fp now (unwind.c, "Replays"): ms_unwind_from's replay, inline, for
 * leak-check mode's every malloc, which then has its stack's id (o's
 * replay.id) without a call.  False sends the caller to the whole capture
 * (ms_stack_capture_own_from), which also looks for unloaded objects when
 * that is due (a caller may look itself first: ms_unwind_fresh_now, and
 * ask again), grows the thread's run of readable pages, or walks. */
ms_inline bool ms_stack_replay_hit(stack_own_t *o, int cap, const uintptr_t *fp) {
    replay_t *rp = &o->replay;
    uintptr_t sp = (uintptr_t)(fp + 2), lo = sp & ~(uintptr_t)(MS_OS_PAGE - 1);
    if (ms_unlikely(ms_unwind_fresh_skip == 0) || o->busy || rp->cap != cap || rp->pc0 != fp[1] ||
        rp->sp0 != sp || (rp->uses_rbp0 && rp->rbp0 != fp[0]) ||
        rp->gen != atomic_load_explicit(&ms_unwind_gen, memory_order_relaxed) ||
        lo < ms_stack_run_lo || rp->rd_hi > ms_stack_run_hi_)
        return false;
    /* every word read lies in the thread's run of readable pages, from
     * the page the walk starts on (unwind.c: replay; a record that read
     * below that page, or has no frame, has no start, sp0 0: finish) */
    const uintptr_t *at = rp->at + MS_REPLAY_READS, *not = rp->not + MS_REPLAY_READS;
    for (intptr_t i = -(intptr_t)rp->nreads; i < 0; i++) /* counted up to 0: no bound to compute */
        if (*(const uintptr_t *)at[i] != ~not[i]) return false;
    ms_unwind_fresh_skip--; /* (rp->hit is for a capture's readers: none here) */
    return true;
}

ms_inline int ms_stack_capture_own(int max, const uintptr_t **pcs, stack_own_t **own) {
    return ms_stack_capture_own_from(ms_tcache_mine(), NULL, max, pcs, own);
}
ms_inline void ms_stack_own_release(stack_own_t *o) {
    atomic_signal_fence(memory_order_seq_cst);
    o->busy = false;
}

#endif /* MS_STACK_H */
