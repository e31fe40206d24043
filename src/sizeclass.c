/* sizeclass.c: lookups over the generated table in sizeclasses.h.  See
 * malloc.c for the overview and tools/mksizeclasses.c for how the classes
 * are chosen.  Every class size is a multiple of 16 and every span starts on
 * an 8 KiB page, so object k of a class of size S sits at a multiple of the
 * largest power of two dividing S: that is what lets aligned requests up to
 * a page be served from a size class instead of a whole span.  The
 * tables themselves are defined here, once (sizeclasses.h), in section
 * memscope_rodata, which mk/text.ld puts in the library's first segment,
 * the table of requests up to 1024 bytes too: leak-check mode reads it
 * further on (ms_size_list, below), a pointer in .data.
 */
#define MS_CLASS_TABLES_HERE
#include "internal.h"

/* ms_class_for_aligned: the smallest class holding size bytes whose objects
 * are all aligned to align (a power of two <= MS_PAGE_SIZE), or 0.  From a
 * table per alignment, built on first use (C++'s aligned new calls this on
 * every allocation: the search over the classes was 4% of such a
 * program's perf samples; the table saves about 6 instructions a call,
 * callgrind).  Builders racing write the same bytes. */
#define ALIGN_MIN_SHIFT 5 /* 16 and less: every class */
#define ALIGN_ROWS (MS_PAGE_SHIFT - ALIGN_MIN_SHIFT + 1)
static uint8_t aligned_from[ALIGN_ROWS][MS_NUM_CLASSES]; /* [align][c]: first class >= c aligned so */
static _Atomic bool aligned_ready;

static void build_aligned(void) {
    for (int r = 0; r < ALIGN_ROWS; r++) {
        size_t align = (size_t)1 << (ALIGN_MIN_SHIFT + r);
        uint8_t next = 0;
        for (int c = MS_NUM_CLASSES - 1; c >= 1; c--) {
            if (ms_class_size[c] % align == 0) next = (uint8_t)c;
            aligned_from[r][c] = next;
        }
    }
    atomic_store_explicit(&aligned_ready, true, memory_order_release);
}

uint8_t ms_class_for_aligned(size_t size, size_t align) {
    if (size > MS_MAX_SMALL) return 0;
    uint8_t c = ms_size_class(size);
    if (align < ((size_t)1 << ALIGN_MIN_SHIFT)) return c; /* every class is a multiple of 16 */
    if (ms_unlikely(!atomic_load_explicit(&aligned_ready, memory_order_acquire))) build_aligned();
    return aligned_from[__builtin_ctzll(align) - ALIGN_MIN_SHIFT][c];
}

/* Leak-check mode's records in the blocks' tails (internal.h).  A request
 * of s bytes up to 1024 takes the class of s + MS_TAIL: the table by the
 * byte (ms_size_to_list, read-only, which malloc and ms_size_class read)
 * is read MS_TAIL entries on, through ms_size_list: a load of the table's
 * address where malloc had the address itself, no instruction more.
 * Set once, by the profiler's setup, while no other thread allocates
 * (init.c holds them back). */
const uint16_t *ms_size_list = ms_size_to_list;
bool ms_tail_recs;
uint8_t ms_class_tail_bytes[MS_NUM_CLASSES];

void ms_size_classes_tail(void) {
    _Static_assert(MS_TAIL == 8, "ms_size_to_list has 8 entries past 1024");
    _Static_assert(MS_TAIL_MAX_CLASS + 1 < MS_NUM_CLASSES, "a class follows the tail's");
    ms_assert_internal(ms_class_size[MS_TAIL_MAX_CLASS] == MS_TAIL_MAX_SIZE);
    ms_size_list = ms_size_to_list + MS_TAIL;
    for (unsigned k = 1; k <= MS_TAIL_MAX_CLASS; k++) ms_class_tail_bytes[k] = MS_TAIL;
}
