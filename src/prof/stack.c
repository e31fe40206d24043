/* stack.c: stack capture for the heap profiler.
 *
 * Distribution binaries are built without frame pointers, so walking rbp
 * would give short or wrong stacks; the unwinder has to read the DWARF call
 * frame information (.eh_frame) that every x86-64 object carries.  Two
 * well-kept unwinders do that, and they were measured here on the same
 * program (-O2 -fomit-frame-pointer, 100,000 captures each):
 *
 *     depth   libgcc _Unwind_Backtrace   libunwind unw_backtrace
 *      16        14,500 ns                   146 ns
 *      56        59,900 ns                   594 ns
 *
 * libunwind wins by two orders of magnitude because unw_backtrace keeps a
 * per-thread cache of each return address's frame recipe and, once warm,
 * unwinds without parsing any DWARF; libgcc parses the FDE afresh on each
 * frame.  So memscope uses libunwind (as gperftools does), with local-only
 * unwinding and per-thread caching.
 *
 * Guards.  libunwind keeps its cache in memory it maps itself and finds
 * unwind tables with dl_iterate_phdr; it does not call malloc on this path,
 * but if it ever did, the allocation would not be sampled: the caller holds
 * ms_no_sample while capturing, so the profiler never re-enters itself.
 * Captures run with no memscope lock held.  A fork waits until no capture
 * is in progress (counters striped over the threads, and a flag that makes
 * captures started during the fork give up), so a child never inherits an
 * unwinder stopped half-way through its cache update.  The capture itself
 * is inline (stack.h) in the sampling hook: every frame unwound costs about
 * a hundred instructions, and memscope's own frames are thrown away.  The
 * hook unwinds into a buffer in the thread's TLS, which holds nothing but
 * return addresses, so it never needs clearing for the leak checker.
 *
 * The capture starts at this function; every frame inside memscope (the
 * malloc family's entry points, the sampling hook, this file: all placed in
 * the memscope_text section) is dropped, so a stack begins at the
 * program's call to malloc, calloc, realloc or memalign.
 */
#include "stack.h"

stack_slot_t ms_stack_capturing[MS_STACK_SLOTS];
_Atomic bool ms_stack_forking;
__thread stack_own_t ms_stack_own __attribute__((tls_model("initial-exec")));

void ms_stack_init(void) { unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD); }

void ms_stack_fork_prepare(void) {
    atomic_store(&ms_stack_forking, true);
    /* both sides are sequentially consistent: a capture that missed the
     * flag has its count visible here */
    for (int i = 0; i < MS_STACK_SLOTS; i++)
        while (atomic_load(&ms_stack_capturing[i].n) > 0) sched_yield();
}
void ms_stack_fork_parent(void) { atomic_store(&ms_stack_forking, false); }
void ms_stack_fork_child(void) {
    for (int i = 0; i < MS_STACK_SLOTS; i++) atomic_store(&ms_stack_capturing[i].n, 0);
    atomic_store(&ms_stack_forking, false);
}

MS_TEXT int ms_stack_capture(uintptr_t *pcs, int max, int skip) { return ms_stack_capture_inline(pcs, max, skip); }
