/* stack.h: the stack capture, inline, for the sampling hook (stack.c has
 * the design).  Returns -1 when a fork is in progress: the sample is
 * dropped rather than the fork delayed. */
#ifndef MS_STACK_H
#define MS_STACK_H

#define UNW_LOCAL_ONLY
#include <libunwind.h>
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

ms_inline int ms_stack_capture_inline(uintptr_t *pcs, int max, int skip) {
    void *raw[MS_PROF_MAX_DEPTH + 32];
    int cap = max + skip + 16;
    if (cap > (int)(sizeof raw / sizeof raw[0])) cap = (int)(sizeof raw / sizeof raw[0]);
    _Atomic int *busy = &ms_stack_capturing[(uint64_t)(uintptr_t)&ms_no_sample * 0x9E3779B97F4A7C15ull >> 60].n;
    atomic_fetch_add(busy, 1);
    if (atomic_load(&ms_stack_forking)) {
        atomic_fetch_sub(busy, 1);
        return -1;
    }
    ms_no_sample++;
    int n = unw_backtrace(raw, cap);
    ms_no_sample--;
    atomic_fetch_sub(busy, 1);
    /* What the buffer held before is whatever earlier calls left at this
     * depth of the stack, heap pointers among them; the leak checker scans
     * the stacks of threads it stops (often in here, waiting for the
     * profiler's lock), so stale pointers would keep lost blocks
     * "reachable".  Clear what unw_backtrace did not write. */
    __builtin_memset(raw + (n > 0 ? n : 0), 0, sizeof raw - (size_t)(n > 0 ? n : 0) * sizeof raw[0]);
    int i = 0;
    while (i < n && ms_in_memscope_text((uintptr_t)raw[i])) i++;
    i += skip;
    int k = 0;
    for (; i < n && k < max; i++) pcs[k++] = (uintptr_t)raw[i];
    return k;
}

#endif /* MS_STACK_H */
