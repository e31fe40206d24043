/* meta.c: memory for the allocator's own structures.
 *
 * Spans, thread caches and tables must never come from malloc (that would
 * recurse into the heap being described), so they come from here: pages
 * mapped straight from the OS, carved into fixed-size objects by a fixalloc
 * (Go's fixalloc: a free list plus a bump chunk).  Freed objects are reused,
 * never returned to the OS; metadata is a few per mille of the heap.  Whole
 * tables can go back (ms_meta_free): per-thread ones, that would otherwise
 * outlive their threads.  A fixalloc has no lock of its own: each one is
 * owned by the structure whose lock its caller holds (spans by the heap
 * lock, caches by the registry lock).  ms_meta_sys and ms_meta_inuse feed
 * the metadata fields of the stats.
 */
#include "internal.h"

#include <string.h>

#define MS_META_CHUNK ((size_t)64 << 10)

_Atomic uint64_t ms_meta_sys;
_Atomic uint64_t ms_meta_inuse;

void *ms_meta_alloc(size_t bytes) {
    bytes = (bytes + MS_PAGE_MASK) & ~MS_PAGE_MASK;
    void *p = ms_os_alloc(bytes);
    if (p) {
        atomic_fetch_add_explicit(&ms_meta_sys, bytes, memory_order_relaxed);
        atomic_fetch_add_explicit(&ms_meta_inuse, bytes, memory_order_relaxed);
    }
    return p;
}

/* ms_meta_free: a table from ms_meta_alloc that is no longer needed goes
 * back to the OS (the profiler's per-thread capture buffers, unmapped when
 * their thread's cache retires). */
void ms_meta_free(void *p, size_t bytes) {
    bytes = (bytes + MS_PAGE_MASK) & ~MS_PAGE_MASK;
    ms_os_free(p, bytes);
    atomic_fetch_sub_explicit(&ms_meta_sys, bytes, memory_order_relaxed);
    atomic_fetch_sub_explicit(&ms_meta_inuse, bytes, memory_order_relaxed);
}

/* ms_meta_sparse: a table whose pages become resident only as they are
 * touched (a page-map leaf, the leak checker's thread slots) counts as
 * metadata mapped but not as metadata in use, which would overstate what
 * memscope itself holds by megabytes. */
void *ms_meta_sparse(size_t bytes) {
    void *p = ms_meta_alloc(bytes);
    if (p) atomic_fetch_sub_explicit(&ms_meta_inuse, (bytes + MS_PAGE_MASK) & ~MS_PAGE_MASK, memory_order_relaxed);
    return p;
}

/* ms_meta_use: bytes of a sparse table that its owner fills from the front
 * (the profiler's stacks and frames) are now in use. */
void ms_meta_use(size_t bytes) { atomic_fetch_add_explicit(&ms_meta_inuse, bytes, memory_order_relaxed); }

void *ms_fixalloc_alloc(fixalloc_t *fa) {
    void *p = fa->free;
    if (p) {
        fa->free = *(void **)p;
        memset(p, 0, fa->size);
    } else {
        if (fa->left < fa->size) {
            char *c = ms_os_alloc(MS_META_CHUNK);
            if (!c) return NULL;
            atomic_fetch_add_explicit(&ms_meta_sys, MS_META_CHUNK, memory_order_relaxed);
            fa->chunk = c;
            fa->left = MS_META_CHUNK;
        }
        p = fa->chunk; /* fresh pages are zero */
        fa->chunk += fa->size;
        fa->left -= fa->size;
    }
    fa->inuse++;
    atomic_fetch_add_explicit(&ms_meta_inuse, fa->size, memory_order_relaxed);
    return p;
}

void ms_fixalloc_free(fixalloc_t *fa, void *p) {
    *(void **)p = fa->free;
    fa->free = p;
    fa->inuse--;
    atomic_fetch_sub_explicit(&ms_meta_inuse, fa->size, memory_order_relaxed);
}
