/* pagemap.c: from an address to its span in two loads, and which pages are
 * released.  See malloc.c for the overview.
 *
 * A two-level radix tree over 48-bit addresses: the root (in BSS, 2 MiB of
 * virtual space of which only touched entries become resident) points to
 * leaves covering 1 GiB each.  Pointers are stored XOR a sentinel's address
 * (internal.h), so an untouched zero entry reads as the sentinel and free()
 * follows the tree with three loads and no NULL test.  A leaf is mapped once, lazily, under the heap
 * lock and never freed, so readers (free, malloc_usable_size) need no lock:
 * they either see NULL (not our memory) or a leaf that stays valid forever.
 * Each leaf also holds one bit per page saying whether the page has been
 * returned to the OS (and so reads as zero).  The bits are what keep
 * heap_released exact when free spans of different histories coalesce and
 * split, and what lets calloc skip zeroing pages that came back from the OS.
 * The bits are only touched under the heap lock.
 */
#include "internal.h"

pagemap_t ms_pm; /* BSS: the nil leaf (1 MiB, only ever read) and the root */

#define LEAF_MASK ((1u << MS_PM_LEAF_BITS) - 1)
#define NIL_LEAF ((uintptr_t)&ms_pm)
#define NIL_SPAN ((uintptr_t)&ms_pm)

/* leaf_of: only for pages inside the heap, whose leaf exists */
static inline pm_leaf_t *leaf_of(uintptr_t pn) { return (pm_leaf_t *)(ms_pm.root[pn >> MS_PM_LEAF_BITS] ^ NIL_LEAF); }

bool ms_pagemap_ensure(uintptr_t start, size_t npages) {
    uintptr_t first = start >> MS_PAGE_SHIFT, last = first + npages - 1;
    if (last >> (MS_PM_LEAF_BITS + MS_PM_ROOT_BITS)) return false;
    for (uintptr_t i = first >> MS_PM_LEAF_BITS; i <= last >> MS_PM_LEAF_BITS; i++) {
        if (ms_pm.root[i]) continue;
        pm_leaf_t *leaf = ms_meta_sparse(sizeof(pm_leaf_t)); /* ~1 MiB, resident as touched */
        if (!leaf) return false;
        atomic_store_explicit((_Atomic uintptr_t *)&ms_pm.root[i], (uintptr_t)leaf ^ NIL_LEAF, memory_order_release);
        ms_pm.has_leaf[i / 64] |= (uint64_t)1 << (i % 64);
    }
    return true;
}

uintptr_t ms_pagemap_next_leaf(uintptr_t i) {
    const uintptr_t n = (uintptr_t)1 << MS_PM_ROOT_BITS;
    if (i >= n) return n;
    uint64_t w = ms_pm.has_leaf[i / 64] & (~(uint64_t)0 << (i % 64));
    for (uintptr_t k = i / 64;;) {
        if (w) return k * 64 + (uintptr_t)__builtin_ctzll(w);
        if (++k == n / 64) return n;
        w = ms_pm.has_leaf[k];
    }
}

void ms_pagemap_set(uintptr_t page_addr, span_t *s) {
    uintptr_t pn = page_addr >> MS_PAGE_SHIFT;
    leaf_of(pn)->span[pn & LEAF_MASK] = (s ? (uintptr_t)s : NIL_SPAN) ^ NIL_SPAN;
}

void ms_pagemap_set_range(uintptr_t start, size_t npages, span_t *s) {
    uintptr_t pn = start >> MS_PAGE_SHIFT, v = (s ? (uintptr_t)s : NIL_SPAN) ^ NIL_SPAN;
    for (size_t i = 0; i < npages; i++, pn++) leaf_of(pn)->span[pn & LEAF_MASK] = v;
}

size_t ms_pagemap_count_released(uintptr_t start, size_t npages) {
    uintptr_t pn = start >> MS_PAGE_SHIFT, end = pn + npages;
    size_t n = 0;
    while (pn < end) {
        uint64_t *w = &leaf_of(pn)->released[(pn & LEAF_MASK) >> 6];
        unsigned bit = pn & 63;
        size_t take = 64 - bit;
        if (take > end - pn) take = end - pn;
        uint64_t mask = (take == 64 ? ~0ull : ((1ull << take) - 1)) << bit;
        n += (size_t)__builtin_popcountll(*w & mask);
        pn += take;
    }
    return n;
}

static uint64_t release_seq; /* calls that marked pages released (heap lock) */

void ms_pagemap_clear_huge(uintptr_t start, size_t npages) {
    uintptr_t pn = start >> MS_PAGE_SHIFT, end = pn + npages;
    for (uintptr_t r = pn / MS_HUGE_PAGES; npages && r <= (end - 1) / MS_HUGE_PAGES; r++) {
        uintptr_t i = (r * MS_HUGE_PAGES) & LEAF_MASK; /* the region's first page in its leaf */
        pm_leaf_t *leaf = leaf_of(r * MS_HUGE_PAGES);
        uint64_t *w = &leaf->huge[i / MS_HUGE_PAGES / 64], *v = &leaf->seen[i / MS_HUGE_PAGES / 64];
        uint64_t m = (uint64_t)1 << (i / MS_HUGE_PAGES % 64);
        if (*w & m) *w &= ~m; /* only ever written where set: never in the nil leaf */
        if (*v & m) *v &= ~m;
    }
}

void ms_pagemap_mark_released(uintptr_t start, size_t npages, bool released) {
    uintptr_t pn = start >> MS_PAGE_SHIFT, end = pn + npages;
    if (released && npages) {
        release_seq++;
        ms_pagemap_clear_huge(start, npages);
    }
    while (pn < end) {
        uint64_t *w = &leaf_of(pn)->released[(pn & LEAF_MASK) >> 6];
        unsigned bit = pn & 63;
        size_t take = 64 - bit;
        if (take > end - pn) take = end - pn;
        uint64_t mask = (take == 64 ? ~0ull : ((1ull << take) - 1)) << bit;
        if (released) *w |= mask;
        else *w &= ~mask;
        pn += take;
    }
}

/* find_bit: the first page in [pn, epn) whose released bit is `want`, or
 * epn; a word (64 pages) at a time. */
static uintptr_t find_bit(uintptr_t pn, uintptr_t epn, bool want) {
    while (pn < epn) {
        uint64_t w = leaf_of(pn)->released[(pn & LEAF_MASK) >> 6];
        if (!want) w = ~w;
        w &= ~0ull << (pn & 63);
        if (w) {
            uintptr_t r = (pn & ~(uintptr_t)63) + (uintptr_t)__builtin_ctzll(w);
            return r < epn ? r : epn;
        }
        pn = (pn | 63) + 1;
    }
    return epn;
}

size_t ms_pagemap_next_run(uintptr_t *pos, uintptr_t end, bool released, size_t max) {
    uintptr_t epn = end >> MS_PAGE_SHIFT;
    uintptr_t first = find_bit(*pos >> MS_PAGE_SHIFT, epn, released);
    if (first >= epn) return 0;
    uintptr_t limit = epn - first > max ? first + max : epn;
    uintptr_t stop = find_bit(first, limit, !released);
    *pos = first << MS_PAGE_SHIFT;
    return stop - first;
}

/* Huge pages (scavenger.c).  A region's "huge" bit says the scavenger
 * collapsed it and no page of it has been released since, so it is not
 * asked again; its "seen" bit that it was dense at the scavenger's last
 * look, as it must be at two looks before it is collapsed. */
bool ms_pagemap_region_unreleased(uintptr_t region) {
    uintptr_t pn = region >> MS_PAGE_SHIFT, i = pn & LEAF_MASK;
    const pm_leaf_t *leaf = leaf_of(pn);
    if ((leaf->huge[i / MS_HUGE_PAGES / 64] >> (i / MS_HUGE_PAGES % 64)) & 1) return false;
    for (size_t k = 0; k < MS_HUGE_PAGES / 64; k++)
        if (leaf->released[i / 64 + k]) return false;
    return true;
}

void ms_pagemap_set_huge(uintptr_t region) {
    uintptr_t pn = region >> MS_PAGE_SHIFT, i = pn & LEAF_MASK;
    leaf_of(pn)->huge[i / MS_HUGE_PAGES / 64] |= (uint64_t)1 << (i / MS_HUGE_PAGES % 64);
}

bool ms_pagemap_seen(uintptr_t region, bool dense) {
    uintptr_t pn = region >> MS_PAGE_SHIFT, i = pn & LEAF_MASK;
    uint64_t *v = &leaf_of(pn)->seen[i / MS_HUGE_PAGES / 64], m = (uint64_t)1 << (i / MS_HUGE_PAGES % 64);
    bool was = (*v & m) != 0;
    if (was != dense) *v ^= m;
    return was;
}

uint64_t ms_pagemap_release_seq(void) { return release_seq; }

/* after fork: a write to a huge page shared with the other process splits
 * it, so every region is to be looked at again (the look skips pages still
 * shared: os.c, all_resident_own) */
void ms_pagemap_clear_huge_all(void) {
    for (uintptr_t i = ms_pagemap_next_leaf(0); i < ((uintptr_t)1 << MS_PM_ROOT_BITS); i = ms_pagemap_next_leaf(i + 1)) {
        pm_leaf_t *leaf = (pm_leaf_t *)(ms_pm.root[i] ^ NIL_LEAF);
        for (size_t k = 0; k < sizeof leaf->huge / sizeof leaf->huge[0]; k++) {
            if (leaf->huge[k]) leaf->huge[k] = 0; /* a page of the leaf written only if it had marks */
            if (leaf->seen[k]) leaf->seen[k] = 0;
        }
    }
}
