/* test_unit_sizeclass: the generated size-class table keeps its promises.
 *
 * Checked over every size and every offset, not sampled: classes are
 * multiples of 16 and increasing; every size maps to the smallest class that
 * holds it; above 128 bytes rounding wastes less than 12.5%; a span's tail
 * wastes at most 12.5% and holds at least 8 objects (4 from 8 to 32 KiB,
 * 2 above), and above 8 KiB not twice as many; malloc's table by the
 * byte (which ms_size_class reads too) gives the smallest class, and in
 * leak-check mode a request gets one 8 bytes larger; the magic reciprocal
 * gives the exact object index for every byte offset of every span (free()
 * relies on it to reject interior pointers); aligned lookups give aligned
 * classes.  Linked against the debug archive (internal symbols).
 */
#include "internal.h"
#include "testhelper.h"

int main(void) {
    CHECK_BODY("classes-multiple-of-16-increasing") {
        for (int c = 1; c < MS_NUM_CLASSES; c++) {
            CHECK_TRUE(ms_class_size[c] % 16 == 0);
            if (c > 1) CHECK_TRUE(ms_class_size[c] > ms_class_size[c - 1]);
        }
        result = ms_class_size[MS_NUM_CLASSES - 1] == MS_MAX_SMALL;
    }
    CHECK_BODY("size-to-class-minimal") {
        for (size_t s = 0; s <= MS_MAX_SMALL; s++) {
            uint8_t c = ms_size_class(s);
            CHECK_TRUE(c >= 1 && c < MS_NUM_CLASSES);
            CHECK_TRUE(ms_class_size[c] >= s);
            if (c > 1) CHECK_TRUE(ms_class_size[c - 1] < s);
        }
    }
    /* malloc's own table, by the byte (ms_size_to_list, which
     * ms_size_class reads up to 1024 too), through the 8 entries past 1024
     * that leak-check mode reads: the list of the smallest class that
     * holds the request */
    CHECK_BODY("size-to-list-smallest-class") {
        for (size_t s = 0; s <= 1024 + MS_TAIL; s++) {
            unsigned c = ms_size_to_list[s] >> MS_SIZE_TO_LIST_SHIFT;
            CHECK_TRUE(c >= 1 && c < MS_NUM_CLASSES && ms_class_size[c] >= s);
            if (c > 1) CHECK_TRUE(ms_class_size[c - 1] < s);
        }
    }
    CHECK_BODY("rounding-waste-below-12.5%-above-128") {
        for (int c = 2; c < MS_NUM_CLASSES; c++) {
            uint32_t prev = ms_class_size[c - 1], size = ms_class_size[c];
            if (size <= 128) CHECK_TRUE(size - prev == 16);
            else CHECK_TRUE((double)(size - prev - 1) / size < 0.125);
        }
    }
    CHECK_BODY("span-tail-waste-and-objects") {
        for (int c = 1; c < MS_NUM_CLASSES; c++) {
            size_t span = (size_t)ms_class_pages[c] << MS_PAGE_SHIFT, size = ms_class_size[c];
            /* tools/mksizeclasses.c: 4 from 8 to 32 KiB, 2 above */
            CHECK_TRUE(span / size >= (size <= 8192 ? 8u : size <= 32768 ? 4u : 2u));
            /* and no more than needed above 8 KiB: each object more is
             * a free slot that the span keeps resident while in use */
            if (size > 8192) CHECK_TRUE(span / size < (size <= 32768 ? 8u : 4u));
            CHECK_TRUE(span % size <= span / 8);
            CHECK_TRUE(ms_class_batch[c] >= 2 && ms_class_batch[c] <= 32);
        }
    }
    CHECK_BODY("magic-division-exact-every-offset") {
        for (int c = 1; c < MS_NUM_CLASSES; c++) {
            size_t span = (size_t)ms_class_pages[c] << MS_PAGE_SHIFT, size = ms_class_size[c];
            for (size_t off = 0; off < span; off++)
                if (((off * ms_class_magic[c]) >> MS_MAGIC_SHIFT) != off / size) {
                    CHECK_TRUE(!"magic index differs from division");
                    break;
                }
        }
    }
    CHECK_BODY("aligned-class") {
        for (size_t align = 16; align <= MS_PAGE_SIZE; align *= 2)
            for (size_t s = 0; s <= MS_MAX_SMALL; s += 7) {
                uint8_t c = ms_class_for_aligned(s, align), want = 0;
                for (int k = ms_size_class(s); k < MS_NUM_CLASSES && !want; k++) /* the smallest that fits */
                    if (ms_class_size[k] % align == 0 && ms_class_size[k] >= s) want = (uint8_t)k;
                CHECK_TRUE(c == want);
                if (c) CHECK_TRUE(ms_class_size[c] % align == 0 && ms_class_size[c] >= s);
                else CHECK_TRUE(s > MS_MAX_SMALL - align); /* only near the top can no class fit */
            }
    }
    /* last, as it widens the classes for good: leak-check mode's, where
     * a request up to 1024 bytes gets a class at least MS_TAIL bytes
     * larger (sizeclass.c), read from malloc's table */
    ms_size_classes_tail();
    CHECK_BODY("tail-classes-size-to-list-as-size-to-class") {
        for (size_t s = 0; s <= 1024; s++) {
            uint8_t c = ms_size_class(s);
            CHECK_TRUE(ms_class_size[c] >= s + MS_TAIL);
            if (c > 1) CHECK_TRUE(ms_class_size[c - 1] < s + MS_TAIL);
            CHECK_TRUE(ms_size_list == ms_size_to_list + MS_TAIL); /* what malloc reads */
        }
    }
    return print_test_summary();
}
