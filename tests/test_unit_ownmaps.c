/* test_unit_ownmaps: memscope's list of its own mappings (os.c), which a
 * leak check with leaks_mmap=1 leaves out of the program's mappings it
 * reads.  Every range ms_os_alloc and ms_os_reserve return must be listed
 * until it is unmapped, and a partial unmap (a head, a tail, a middle:
 * ms_heap_alloc_direct trims its mapping, a reservation gives back its
 * tail) must leave exactly the rest listed.  A range missing from the
 * list would be read as the program's (the profiler's table of block
 * addresses would then hide every leak); one left listed after its unmap
 * would hide a program mapping made there later.
 */
#include <string.h>

#include "internal.h"
#include "testhelper.h"

#define CAP 20000
static uintptr_t ranges[CAP][2];

/* listed: every page of [lo, hi) is in a listed range; unlisted: none is */
static bool listed(uintptr_t lo, uintptr_t hi) {
    bool complete;
    size_t n = ms_os_own_ranges(ranges, CAP, true, &complete);
    if (!complete) return false;
    for (uintptr_t a = lo; a < hi; a += 4096) {
        bool in = false;
        for (size_t i = 0; i < n && !in; i++) in = a >= ranges[i][0] && a < ranges[i][1];
        if (!in) return false;
    }
    return true;
}
static bool unlisted(uintptr_t lo, uintptr_t hi) {
    bool complete;
    size_t n = ms_os_own_ranges(ranges, CAP, true, &complete);
    for (size_t i = 0; i < n; i++)
        if (ranges[i][0] < hi && ranges[i][1] > lo) return false;
    return complete;
}

int main(void) {
    size_t page = 4096;
    char *a = ms_os_alloc(16 * page);
    CHECK("alloc-listed", a && listed((uintptr_t)a, (uintptr_t)a + 16 * page));
    /* an odd size is listed to the end of its last page, as mapped */
    char *b = ms_os_alloc(100);
    CHECK("odd-size-listed-whole-page", b && listed((uintptr_t)b, (uintptr_t)b + page));

    ms_os_free(a, 2 * page); /* head */
    CHECK("head-unlisted", unlisted((uintptr_t)a, (uintptr_t)a + 2 * page));
    CHECK("head-rest-listed", listed((uintptr_t)a + 2 * page, (uintptr_t)a + 16 * page));
    ms_os_free(a + 14 * page, 2 * page); /* tail */
    CHECK("tail-unlisted", unlisted((uintptr_t)a + 14 * page, (uintptr_t)a + 16 * page));
    CHECK("tail-rest-listed", listed((uintptr_t)a + 2 * page, (uintptr_t)a + 14 * page));
    ms_os_free(a + 6 * page, 3 * page); /* middle: a split */
    CHECK("middle-unlisted", unlisted((uintptr_t)a + 6 * page, (uintptr_t)a + 9 * page));
    CHECK("middle-below-listed", listed((uintptr_t)a + 2 * page, (uintptr_t)a + 6 * page));
    CHECK("middle-above-listed", listed((uintptr_t)a + 9 * page, (uintptr_t)a + 14 * page));
    ms_os_free(a + 2 * page, 4 * page);
    ms_os_free(a + 9 * page, 5 * page);
    CHECK("all-unlisted", unlisted((uintptr_t)a, (uintptr_t)a + 16 * page));
    ms_os_free(b, 100);
    CHECK("odd-size-unlisted", unlisted((uintptr_t)b, (uintptr_t)b + page));

    void *r = ms_os_reserve((size_t)1 << 30);
    CHECK("reservation-listed", r && listed((uintptr_t)r, (uintptr_t)r + ((size_t)1 << 30)));
    ms_os_free(r, (size_t)1 << 30);
    CHECK("reservation-unlisted", unlisted((uintptr_t)r, (uintptr_t)r + ((size_t)1 << 30)));

    /* many at once, freed in another order: every slot freed is reused */
    enum { N = 3000 };
    static char *many[N];
    bool all = true;
    for (int i = 0; i < N; i++) all &= (many[i] = ms_os_alloc(page)) != NULL;
    for (int i = 0; i < N; i += 7) all &= listed((uintptr_t)many[i], (uintptr_t)many[i] + page);
    CHECK("many-listed", all);
    for (int i = 0; i < N; i += 2) ms_os_free(many[i], page);
    for (int i = 1; i < N; i += 2) ms_os_free(many[i], page);
    all = true;
    for (int i = 0; i < N; i += 7) all &= unlisted((uintptr_t)many[i], (uintptr_t)many[i] + page);
    CHECK("many-unlisted", all);
    for (int round = 0; round < 4; round++) { /* the freed slots come back: no overflow */
        for (int i = 0; i < N; i++) many[i] = ms_os_alloc(page);
        for (int i = 0; i < N; i++) ms_os_free(many[i], page);
    }
    bool complete;
    ms_os_own_ranges(ranges, CAP, true, &complete);
    CHECK("slots-reused", complete);
    return print_test_summary();
}
