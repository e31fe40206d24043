/* test_stats.c: memscope_read_stats tells the truth.
 *
 * Checks, in one thread (so every identity in memscope.h must be exact):
 *   - the identities of the header: heap_inuse + heap_idle == heap_sys,
 *     heap_released <= heap_idle, heap_objects == mallocs - frees,
 *     alloc == heap_alloc <= heap_inuse, sys >= heap_sys + metadata_sys;
 *   - alloc, total_alloc, mallocs and frees move by exactly what the test
 *     allocated: the size-class rounded size, i.e. malloc_usable_size();
 *   - by_size agrees with mallocs/frees and with the class of each block;
 *   - the RSS decomposition adds up to rss;
 *   - memscope_free_os_memory() after freeing a 200 MiB block that was
 *     touched page by page gives most of it back, as /proc/self/statm sees
 *     it, and counts a forced cycle;
 *   - bad arguments: NULL and a too-small st->size give -1; a smaller size
 *     (an older caller) gets a prefix and nothing past it is written.
 * Linked with -lmemscope (the Makefile does it for every tests/test_*.c).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <malloc.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "memscope.h"
#include "testhelper.h"

/* escape: makes the compiler assume p's memory is used, so that a malloc,
 * the writes to it and its free are not optimized away (clang does). */
static inline void escape(void *p) { __asm__ volatile("" : : "g"(p) : "memory"); }

static struct memscope_stats snap(void) {
    struct memscope_stats st;
    memset(&st, 0xAB, sizeof st);
    st.size = sizeof st;
    if (memscope_read_stats(&st) != 0) {
        fprintf(stderr, "memscope_read_stats failed\n");
        exit(2);
    }
    return st;
}

static uint64_t statm_rss(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long a = 0, b = 0;
    if (!f) return 0;
    if (fscanf(f, "%llu %llu", &a, &b) != 2) b = 0;
    fclose(f);
    return (uint64_t)b * (uint64_t)sysconf(_SC_PAGESIZE);
}

static bool identities(const struct memscope_stats *st) {
    bool ok = true;
    ok &= CHECK_TRUE(st->heap_inuse + st->heap_idle == st->heap_sys);
    ok &= CHECK_TRUE(st->heap_released <= st->heap_idle);
    ok &= CHECK_TRUE(st->mallocs - st->frees == st->heap_objects);
    ok &= CHECK_TRUE(st->alloc == st->heap_alloc);
    ok &= CHECK_TRUE(st->heap_alloc <= st->heap_inuse);
    ok &= CHECK_TRUE(st->sys >= st->heap_sys);
    ok &= CHECK_TRUE(st->sys >= st->heap_sys + st->metadata_sys);
    ok &= CHECK_TRUE(st->metadata_inuse <= st->metadata_sys);
    ok &= CHECK_TRUE(st->total_alloc >= st->alloc);
    ok &= CHECK_TRUE(st->frees <= st->mallocs);
    ok &= CHECK_TRUE(st->num_forced_gc <= st->num_gc);
    ok &= CHECK_TRUE(st->next_gc >= ((uint64_t)4 << 20));
    ok &= CHECK_TRUE(st->version == MEMSCOPE_VERSION);
    ok &= CHECK_TRUE(st->size == sizeof *st);
    return ok;
}

static bool by_size_consistent(const struct memscope_stats *st) {
    bool ok = true;
    uint64_t m = 0, f = 0;
    ok &= CHECK_TRUE(st->num_classes > 1 && st->num_classes <= MEMSCOPE_BY_SIZE_LEN);
    unsigned n = st->num_classes <= MEMSCOPE_BY_SIZE_LEN ? st->num_classes : MEMSCOPE_BY_SIZE_LEN;
    uint64_t alloc = 0;
    for (unsigned i = 0; i < n; i++) {
        m += st->by_size[i].mallocs;
        f += st->by_size[i].frees;
        ok &= CHECK_TRUE(st->by_size[i].frees <= st->by_size[i].mallocs);
        if (i + 1 < n) {
            ok &= CHECK_TRUE(st->by_size[i].size > 0);
            if (i > 0) ok &= CHECK_TRUE(st->by_size[i].size > st->by_size[i - 1].size); /* ascending */
            alloc += (st->by_size[i].mallocs - st->by_size[i].frees) * st->by_size[i].size;
        } else {
            ok &= CHECK_TRUE(st->by_size[i].size == 0); /* the "large" entry */
        }
    }
    for (unsigned i = n; i < MEMSCOPE_BY_SIZE_LEN; i++)
        ok &= CHECK_TRUE(st->by_size[i].size == 0 && st->by_size[i].mallocs == 0);
    ok &= CHECK_TRUE(m == st->mallocs);
    ok &= CHECK_TRUE(f == st->frees);
    ok &= CHECK_TRUE(alloc <= st->alloc); /* the rest is large objects */
    return ok;
}

/* class_index: the by_size entry that holds an object of usable size u. */
static int class_index(const struct memscope_stats *st, size_t u) {
    for (unsigned i = 0; i + 1 < st->num_classes; i++)
        if (st->by_size[i].size == u) return (int)i;
    return (int)st->num_classes - 1; /* large */
}

int main(void) {
    const bool quick = getenv("MEMSCOPE_TEST_QUICK") && strcmp(getenv("MEMSCOPE_TEST_QUICK"), "1") == 0;

    CHECK("read_stats(NULL) == -1", memscope_read_stats(NULL) == -1);
    CHECK_BODY("size too small == -1") {
        struct memscope_stats st;
        memset(&st, 0, sizeof st);
        st.size = 0;
        result = CHECK_TRUE(memscope_read_stats(&st) == -1);
        st.size = 8; /* size and version only */
        result &= CHECK_TRUE(memscope_read_stats(&st) == -1);
        st.size = offsetof(struct memscope_stats, alloc);
        result &= CHECK_TRUE(memscope_read_stats(&st) == -1);
        st.size = offsetof(struct memscope_stats, frees); /* the general fields but one */
        result &= CHECK_TRUE(memscope_read_stats(&st) == -1);
    }
    CHECK_BODY("older caller gets a prefix, nothing written past it") {
        /* down to the general fields alone, as the header promises (the
         * heap block was once required too) */
        const size_t sizes[] = {offsetof(struct memscope_stats, heap_alloc),
                                offsetof(struct memscope_stats, metadata_inuse)};
        result = true;
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            struct memscope_stats st;
            memset(&st, 0x5A, sizeof st);
            size_t n = sizes[k];
            st.size = (uint32_t)n;
            result &= CHECK_TRUE(memscope_read_stats(&st) == 0);
            result &= CHECK_TRUE(st.size == n && st.mallocs >= st.frees && st.alloc != 0x5A5A5A5A5A5A5A5Aull);
            if (n > offsetof(struct memscope_stats, heap_objects))
                result &= CHECK_TRUE(st.heap_inuse + st.heap_idle == st.heap_sys);
            const unsigned char *tail = (const unsigned char *)&st + n;
            bool untouched = true;
            for (size_t i = 0; i < sizeof st - n; i++) untouched &= tail[i] == 0x5A;
            result &= CHECK_TRUE(untouched);
        }
    }
    CHECK_BODY("larger caller: size clamped to the library's") {
        /* a caller built against a newer header with more fields */
        union {
            struct memscope_stats st;
            unsigned char bytes[sizeof(struct memscope_stats) + 64];
        } u;
        memset(&u, 0x5A, sizeof u);
        u.st.size = (uint32_t)sizeof u;
        result = CHECK_TRUE(memscope_read_stats(&u.st) == 0);
        result &= CHECK_TRUE(u.st.size == sizeof(struct memscope_stats));
        bool untouched = true;
        for (size_t i = sizeof(struct memscope_stats); i < sizeof u; i++) untouched &= u.bytes[i] == 0x5A;
        result &= CHECK_TRUE(untouched);
    }

    /* Warm-up: the first free that leaves 1 MiB idle starts the scavenger
     * thread, and glibc's pthread_create allocates its TLS vector (288
     * bytes) with malloc on the freeing thread.  Get that over with so the
     * exact-accounting checks below see only the test's own blocks. */
    {
        char *w = malloc(4 << 20);
        w[0] = 1;
        escape(w);
        free(w);
    }

    CHECK_BODY("identities at start") {
        struct memscope_stats st = snap();
        result = identities(&st);
    }

    /* Exact accounting of one batch of mixed sizes, small and large. */
    enum { NB = 2000 };
    static void *blocks[NB];
    static size_t usable[NB];
    CHECK_BODY("alloc/total_alloc/mallocs move by malloc_usable_size") {
        struct memscope_stats a = snap();
        uint64_t sum = 0;
        for (int i = 0; i < NB; i++) {
            size_t sz = (size_t)((i * 7919u) % 5000u) + 1;
            if (i % 100 == 0) sz = (size_t)(i + 1) * 4096 + 17; /* a few large ones, up to ~8 MB */
            blocks[i] = malloc(sz);
            escape(blocks[i]);
            usable[i] = malloc_usable_size(blocks[i]);
            sum += usable[i];
            if (!CHECK_TRUE(blocks[i] != NULL && usable[i] >= sz)) break;
        }
        struct memscope_stats b = snap();
        result &= identities(&b);
        result &= CHECK_TRUE(b.alloc - a.alloc == sum);
        result &= CHECK_TRUE(b.total_alloc - a.total_alloc == sum);
        result &= CHECK_TRUE(b.mallocs - a.mallocs == NB);
        result &= CHECK_TRUE(b.frees == a.frees);
        result &= CHECK_TRUE(b.heap_objects - a.heap_objects == NB);
        result &= CHECK_TRUE(b.heap_inuse >= b.alloc);
        result &= by_size_consistent(&b);
        if (!result)
            fprintf(stderr, "\n  alloc delta %llu, sum of malloc_usable_size %llu; mallocs delta %llu",
                    (unsigned long long)(b.alloc - a.alloc), (unsigned long long)sum,
                    (unsigned long long)(b.mallocs - a.mallocs));
    }
    CHECK_BODY("by_size counts each block in its class") {
        struct memscope_stats a = snap();
        /* one more of each distinct class we used, counted per entry */
        uint64_t want[MEMSCOPE_BY_SIZE_LEN] = {0};
        void *extra[64];
        int ne = 0;
        for (int i = 0; i < NB && ne < 64; i += 37) {
            extra[ne] = malloc(usable[i]);
            escape(extra[ne]);
            want[class_index(&a, malloc_usable_size(extra[ne]))]++;
            ne++;
        }
        struct memscope_stats b = snap();
        for (unsigned k = 0; k < a.num_classes; k++)
            result &= CHECK_TRUE(b.by_size[k].mallocs - a.by_size[k].mallocs == want[k]);
        for (int i = 0; i < ne; i++) free(extra[i]);
        struct memscope_stats c = snap();
        for (unsigned k = 0; k < a.num_classes; k++)
            result &= CHECK_TRUE(c.by_size[k].frees - b.by_size[k].frees == want[k]);
    }
    CHECK_BODY("free moves alloc and frees back exactly") {
        struct memscope_stats a = snap();
        uint64_t sum = 0;
        for (int i = 0; i < NB; i++) {
            sum += usable[i];
            free(blocks[i]);
        }
        struct memscope_stats b = snap();
        result &= identities(&b);
        result &= CHECK_TRUE(a.alloc - b.alloc == sum);
        result &= CHECK_TRUE(b.frees - a.frees == NB);
        result &= CHECK_TRUE(b.mallocs == a.mallocs);
        result &= CHECK_TRUE(b.total_alloc == a.total_alloc);
        result &= by_size_consistent(&b);
    }
    CHECK_BODY("calloc and realloc are counted") {
        struct memscope_stats a = snap();
        char *p = calloc(10, 10);
        escape(p);
        size_t u1 = malloc_usable_size(p);
        struct memscope_stats b = snap();
        result = CHECK_TRUE(b.mallocs - a.mallocs == 1 && b.alloc - a.alloc == u1);
        p = realloc(p, 100000);
        escape(p);
        size_t u2 = malloc_usable_size(p);
        struct memscope_stats c = snap();
        /* moved to a bigger class: the old block freed, the new one counted */
        result &= CHECK_TRUE(c.alloc - a.alloc == u2);
        result &= CHECK_TRUE(c.heap_objects - a.heap_objects == 1);
        free(p);
        struct memscope_stats d = snap();
        result &= CHECK_TRUE(d.alloc == a.alloc && d.heap_objects == a.heap_objects);
        result &= identities(&d);
    }

    CHECK_BODY("rss > 0 and its breakdown adds up") {
        void *keep = malloc(3 << 20);
        memset(keep, 1, 3 << 20);
        escape(keep);
        struct memscope_stats st = snap();
        result = CHECK_TRUE(st.rss > 0);
        result &= CHECK_TRUE(st.max_rss >= st.rss);
        result &= CHECK_TRUE(st.rss_heap_live == st.alloc);
        result &= CHECK_TRUE(st.rss_heap_frag == st.heap_inuse - st.alloc);
        result &= CHECK_TRUE(st.rss_heap_idle == st.heap_idle - st.heap_released);
        result &= CHECK_TRUE(st.rss_metadata == st.metadata_inuse);
        uint64_t parts = st.rss_heap_live + st.rss_heap_frag + st.rss_heap_idle + st.rss_metadata;
        if (st.rss_other > 0) result &= CHECK_TRUE(parts + st.rss_other == st.rss);
        else result &= CHECK_TRUE(parts >= st.rss);
        /* the 3 MB we touched are resident and are in the live part */
        result &= CHECK_TRUE(st.rss >= (3u << 20) && st.rss_heap_live >= (3u << 20));
        /* rss agrees with /proc/self/statm read right after, within 4 MB */
        uint64_t r = statm_rss();
        result &= CHECK_TRUE(r + (4u << 20) > st.rss && st.rss + (4u << 20) > r);
        /* the program's own code and libc are file-backed and resident */
        result &= CHECK_TRUE(st.rss_file > 0 && st.rss_file < st.rss);
        free(keep);
    }
    /* Metadata in use is what memscope has touched: the profiler maps 1.6
     * MiB of chunks for stacks and frames at its first sample, resident
     * only as they fill, and counted in use in full they made rss_metadata
     * four times the pages it held and rss_other 0 in small programs. */
    CHECK_BODY("metadata in use is what memscope touched, not what it mapped") {
        void *blk[64];
        for (int i = 0; i < 64; i++) escape(blk[i] = malloc(64 << 10)); /* 4 MiB: samples at the default rate */
        for (int i = 0; i < 64; i++) free(blk[i]);
        struct memscope_stats st = snap();
        fprintf(stderr, "[metadata: %llu KiB in use, %llu KiB mapped] ", (unsigned long long)st.metadata_inuse >> 10,
                (unsigned long long)st.metadata_sys >> 10);
        result = CHECK_TRUE(st.metadata_inuse < (1u << 20));
        if (!getenv("MEMSCOPE")) /* default profile rate: the chunks are mapped */
            result &= CHECK_TRUE(st.metadata_sys >= st.metadata_inuse + (1u << 20));
    }
    CHECK("scavenge_delay_ms is the default 1000 (MEMSCOPE unset)",
          getenv("MEMSCOPE") != NULL || snap().scavenge_delay_ms == 1000);

    /* A big block, touched page by page, then freed and released. */
    CHECK_BODY("free + memscope_free_os_memory gives RSS back") {
        size_t big = (size_t)(quick ? 64 : 200) << 20;
        struct memscope_stats a = snap();
        char *p = malloc(big);
        result = CHECK_TRUE(p != NULL);
        if (p) {
            long ps = sysconf(_SC_PAGESIZE);
            for (size_t i = 0; i < big; i += (size_t)ps) p[i] = (char)i;
            escape(p);
            uint64_t r_touched = statm_rss();
            struct memscope_stats b = snap();
            result &= CHECK_TRUE(b.heap_inuse - a.heap_inuse >= big);
            free(p);
            struct memscope_stats c = snap();
            result &= identities(&c);
            /* freed but not yet returned (the default delay is 1 s) */
            result &= CHECK_TRUE(c.heap_idle >= big);
            size_t got = memscope_free_os_memory();
            uint64_t r_after = statm_rss();
            struct memscope_stats d = snap();
            result &= identities(&d);
            /* (with a short MEMSCOPE scavenge delay the scavenger may have
             * released part of it first) */
            result &= CHECK_TRUE(got >= big || d.scavenge_delay_ms < 1000);
            result &= CHECK_TRUE(d.num_forced_gc == c.num_forced_gc + 1);
            result &= CHECK_TRUE(d.num_gc == c.num_gc + 1);
            result &= CHECK_TRUE(d.heap_released == d.heap_idle); /* everything idle was released */
            result &= CHECK_TRUE(d.released_total >= b.released_total + big);
            result &= CHECK_TRUE(d.last_gc > 0);
            result &= CHECK_TRUE(d.next_gc == ((uint64_t)4 << 20) || d.next_gc == 2 * d.heap_inuse);
            /* /proc agrees: at least 90% of the block left RSS */
            result &= CHECK_TRUE(r_touched > r_after && r_touched - r_after >= big / 10 * 9);
            result &= CHECK_TRUE(d.rss + big / 10 * 9 <= b.rss);
            if (!result)
                fprintf(stderr, "\n  rss touched %llu MB, after release %llu MB, released %zu bytes",
                        (unsigned long long)(r_touched >> 20), (unsigned long long)(r_after >> 20), got);
        }
    }
    CHECK_BODY("num_forced_gc counts every call, also with nothing to release") {
        struct memscope_stats a = snap();
        memscope_free_os_memory();
        memscope_free_os_memory();
        struct memscope_stats b = snap();
        result = CHECK_TRUE(b.num_forced_gc == a.num_forced_gc + 2);
        result &= CHECK_TRUE(b.num_gc == a.num_gc + 2);
    }
    CHECK_BODY("malloc_trim counts as a forced cycle") {
        struct memscope_stats a = snap();
        malloc_trim(0);
        struct memscope_stats b = snap();
        result = CHECK_TRUE(b.num_forced_gc == a.num_forced_gc + 1);
    }
    CHECK_BODY("small objects: frees give idle pages, release gives them back") {
        /* 40 MB of 48-byte objects */
        enum { NS = 40 * 1024 * 1024 / 48 };
        void **v = malloc(NS * sizeof *v);
        struct memscope_stats a = snap();
        for (int i = 0; i < NS; i++) {
            v[i] = malloc(48);
            memset(v[i], 7, 48);
            escape(v[i]);
        }
        struct memscope_stats b = snap();
        result = CHECK_TRUE(b.heap_objects - a.heap_objects == NS);
        result &= CHECK_TRUE(b.alloc - a.alloc == (uint64_t)NS * malloc_usable_size(v[0]));
        uint64_t r_full = statm_rss();
        for (int i = 0; i < NS; i++) free(v[i]);
        struct memscope_stats c = snap();
        result &= identities(&c);
        result &= CHECK_TRUE(c.alloc == a.alloc);
        size_t got = memscope_free_os_memory();
        struct memscope_stats d = snap();
        uint64_t r_after = statm_rss();
        result &= CHECK_TRUE(got >= (size_t)30 << 20 || d.scavenge_delay_ms < 1000);
        result &= CHECK_TRUE(r_full > r_after && r_full - r_after >= (uint64_t)30 << 20);
        result &= identities(&d);
        result &= by_size_consistent(&d);
        free(v);
    }
    return print_test_summary();
}
