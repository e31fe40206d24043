/* stack.h: the stack capture, inline, for the sampling hook (stack.c has
 * the design).  Returns -1 when a fork is in progress: the sample is
 * dropped rather than the fork delayed. */
#ifndef MS_STACK_H
#define MS_STACK_H

#define UNW_LOCAL_ONLY
#include <libunwind.h>
#include <sched.h>

#include "prof.h"

extern _Atomic int ms_stack_capturing;
extern _Atomic bool ms_stack_forking;

ms_inline int ms_stack_capture_inline(uintptr_t *pcs, int max, int skip) {
    void *raw[MS_PROF_MAX_DEPTH + 32];
    int cap = max + skip + 16;
    if (cap > (int)(sizeof raw / sizeof raw[0])) cap = (int)(sizeof raw / sizeof raw[0]);
    atomic_fetch_add(&ms_stack_capturing, 1);
    if (atomic_load(&ms_stack_forking)) {
        atomic_fetch_sub(&ms_stack_capturing, 1);
        return -1;
    }
    ms_no_sample++;
    int n = unw_backtrace(raw, cap);
    ms_no_sample--;
    atomic_fetch_sub(&ms_stack_capturing, 1);
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
