/* test_profmeta.c: the heap profiler's records of small blocks cost memory
 * in proportion to what they hold, not to how many of its locks they
 * spread over.
 *
 * A small span with sampled blocks carries an array of their records, from
 * 64 bytes to 8 KiB by the span's object count (src/prof/sample.c), and
 * those arrays are looked up under 16 locks striped by span address.  Each
 * stripe once carved its arrays from a 64 KiB chunk of its own per array
 * size: a program with sampled blocks in a few dozen spans mapped a chunk
 * for each pair used and made a page of each resident (34 chunks, 136 KiB
 * of RSS, in bench/prodcons.c).  Here, at profile_rate=1 (every block
 * recorded), seven classes whose spans need the seven array sizes get
 * 64 spans each, spread over every stripe: the metadata mapped for their
 * arrays must stay within 2 MiB: their records need 1012 KiB in all here,
 * with spans of up to 1024 objects, whose arrays are 8 KiB (832-1100 KiB
 * mapped, as arrays of the first spans are reused; the bound was 1 MiB
 * when spans held at most 512 objects and the arrays took 256 KiB, and a
 * chunk per stripe and size took 6.1 MiB then).
 *
 * A sampling thread's capture buffer (7 KiB, src/prof/stack.h) is mapped
 * at its first sample and must go with the thread: 64 threads that sample
 * and exit one after another leave at most 128 KiB more metadata mapped
 * (512 KiB if the buffers stayed).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include "memscope.h"
#include "testhelper.h"

#define SPANS 64

static struct memscope_stats stats(void) {
    struct memscope_stats st = {.size = sizeof st};
    memscope_read_stats(&st);
    return st;
}

static void *sampler(void *arg) {
    (void)arg;
    for (int i = 0; i < 100; i++) {
        void *volatile p = malloc(48); /* volatile: the compiler may drop a malloc freed at once */
        free(p);
    }
    return NULL;
}

int main(int argc, char **argv) {
    th_run_with("profile_rate=1", argv);
    /* object sizes whose spans (tools/mksizeclasses.c: 16 KiB for 16 and
     * 2048 bytes, 32 KiB for the others) hold 1024, 512, ... 32 and 8
     * objects: seven array sizes */
    static const size_t sizes[] = {16, 64, 128, 256, 512, 1024, 2048};
    static const size_t span_bytes[] = {16384, 32768, 32768, 32768, 32768, 32768, 16384};
    enum { NSIZES = sizeof sizes / sizeof sizes[0] };
    static void *blocks[NSIZES][SPANS * 1024];
    /* the profiler's own tables (stacks, batches of counts) and the page
     * map are made by the first blocks recorded: two spans of each size
     * come and go first */
    size_t n[NSIZES];
    for (int k = 0; k < NSIZES; k++) {
        n[k] = 2 * (span_bytes[k] / sizes[k]);
        for (size_t i = 0; i < n[k]; i++)
            if (!(blocks[k][i] = malloc(sizes[k]))) abort();
    }
    for (int k = 0; k < NSIZES; k++)
        for (size_t i = 0; i < n[k]; i++) free(blocks[k][i]);
    struct memscope_stats a = stats();
    for (int k = 0; k < NSIZES; k++) {
        n[k] = SPANS * (span_bytes[k] / sizes[k]);
        for (size_t i = 0; i < n[k]; i++)
            if (!(blocks[k][i] = malloc(sizes[k]))) abort();
    }
    struct memscope_stats b = stats();
    CHECK_BODY("record-arrays-share-chunks") {
        unsigned long long grew = (unsigned long long)(b.metadata_sys - a.metadata_sys);
        fprintf(stderr, "[metadata_sys +%llu KiB] ", grew >> 10);
        result = grew <= (2u << 20);
    }
    for (int k = 0; k < NSIZES; k++)
        for (size_t i = 0; i < n[k]; i++) free(blocks[k][i]);
    /* one thread first: its cache and buffer make the chunks later ones reuse */
    pthread_t t;
    if (pthread_create(&t, NULL, sampler, NULL) != 0 || pthread_join(t, NULL) != 0) abort();
    struct memscope_stats c = stats();
    for (int i = 0; i < 64; i++)
        if (pthread_create(&t, NULL, sampler, NULL) != 0 || pthread_join(t, NULL) != 0) abort();
    struct memscope_stats d = stats();
    CHECK_BODY("capture-buffers-go-with-their-threads") {
        long long grew = (long long)d.metadata_sys - (long long)c.metadata_sys;
        fprintf(stderr, "[metadata_sys %+lld KiB after 64 threads] ", grew / 1024);
        result = grew <= (128 << 10);
    }
    return print_test_summary();
}
