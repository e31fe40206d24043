/* sizeclass.c: lookups over the generated table in sizeclasses.h.  See
 * malloc.c for the overview and tools/mksizeclasses.c for how the classes
 * are chosen.  Every class size is a multiple of 16 and every span starts on
 * an 8 KiB page, so object k of a class of size S sits at a multiple of the
 * largest power of two dividing S: that is what lets aligned requests up to
 * a page be served from a size class instead of a whole span.
 */
#include "internal.h"

/* ms_class_for_aligned: the smallest class holding size bytes whose objects
 * are all aligned to align (a power of two <= MS_PAGE_SIZE), or 0. */
uint8_t ms_class_for_aligned(size_t size, size_t align) {
    if (size > MS_MAX_SMALL) return 0;
    for (uint8_t c = ms_size_class(size); c < MS_NUM_CLASSES; c++)
        if (ms_class_size[c] % align == 0) return c;
    return 0;
}
