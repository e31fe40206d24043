/* test_unit_holes.c: regression tests for holes that let a program's bad
 * free, or an impossible size, corrupt memscope's heap (each failed on the
 * code before its fix).
 *
 *   1. a free of the slot past a small span's last whole object, and of a
 *      slot the span never handed out, must abort with a report (they were
 *      accepted, and the block later handed out twice);
 *   2. malloc of every size from 2^43 (memscope's limit) up to SIZE_MAX, and
 *      of sizes the kernel refuses, fails with ENOMEM and leaves heap_sys,
 *      metadata_sys and RSS as they were (2^45 used to leave 32 TiB of
 *      heap_sys, 33 GiB of metadata and a write before the span);
 *   3. a double free of a large block right after its free, when that free
 *      is the one that starts the scavenger thread, is reported (the thread's
 *      start used to allocate from the pages just freed);
 *   4. a fork while the scavenger releases pages leaves no span stranded
 *      off the lists in the child (the validator counts every free page);
 *   5. (src/tcache.c) ms_tc is set before pthread_setspecific: creating a
 *      cache with more than 32 keys in use must not recurse.
 * Aborting cases run in a forked child; the parent checks for SIGABRT and
 * the one-line report.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "testhelper.h"

static void *volatile sink;
static volatile size_t v_size_max = SIZE_MAX; /* hidden from the compiler's size checks */

/* child_aborts: runs fn in a child; true if it died of SIGABRT and its
 * stderr has `want`. */
static bool child_aborts(void (*fn)(void), const char *want) {
    int pfd[2];
    if (pipe(pfd) != 0) return false;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 2);
        close(pfd[0]);
        fn();
        _exit(0); /* not aborted */
    }
    close(pfd[1]);
    char buf[1024] = {0};
    size_t n = 0;
    ssize_t r;
    while (n < sizeof buf - 1 && (r = read(pfd[0], buf + n, sizeof buf - 1 - n)) > 0) n += (size_t)r;
    close(pfd[0]);
    int st;
    waitpid(pid, &st, 0);
    bool ok = WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT && strstr(buf, want) != NULL;
    if (!ok) fprintf(stderr, "[child: status %d, stderr: %s] ", st, buf);
    return ok;
}

/* a class whose span ends with a tail shorter than one object */
static uint8_t tail_class(void) {
    for (uint8_t c = 1; c < MS_NUM_CLASSES; c++)
        if ((((size_t)ms_class_pages[c] << MS_PAGE_SHIFT) % ms_class_size[c]) != 0 && ms_class_size[c] >= 48) return c;
    return 0;
}

static void free_past_last(void) {
    uint8_t c = tail_class();
    sink = malloc(ms_class_size[c]);
    span_t *s = ms_pagemap_lookup(sink);
    free((void *)s->limit); /* the slot past the last whole object */
}

static void free_never_used(void) {
    /* a fresh span: one object handed out to this thread's cache batch at most */
    size_t size = 30000;
    sink = malloc(size);
    span_t *s = ms_pagemap_lookup(sink);
    uintptr_t slot = s->start + s->used < s->limit ? s->start + s->used : 0;
    if (!slot) _exit(9);
    free((void *)slot);
}

static void large_double_free(void) {
    sink = malloc(4 << 20);
    memset(sink, 1, 4 << 20); /* resident: idle after the free, so the scavenger starts */
    free(sink);              /* (through the volatile sink: the compiler may not fold the pair) */
    free(sink);
}

static void *churn_large(void *arg) {
    (void)arg;
    for (int i = 0; i < 4000; i++) {
        char *p = malloc((size_t)(1 + i % 8) << 20);
        memset(p, 1, 4096);
        free(p);
    }
    return NULL;
}

static pthread_key_t keys[40];

static void *new_thread_cache(void *arg) {
    (void)arg;
    sink = malloc(100); /* creates the cache: pthread_setspecific on key > 32 */
    free(sink);
    return NULL;
}

int main(void) {
    free(malloc(1));

    CHECK("free-past-last-whole-object", tail_class() && child_aborts(free_past_last, "invalid pointer"));
    CHECK("free-of-never-used-slot", child_aborts(free_never_used, "invalid pointer"));
    CHECK("double-free-large-as-scavenger-starts", child_aborts(large_double_free, "double free"));

    CHECK_BODY("impossible-sizes-leave-no-trace") {
        /* the loop's few real blocks (and fopen's) must not be the
         * profiler's first sample, whose tables (1.7 MiB of metadata) once
         * made this check fail */
        ms_no_sample++;
        struct memscope_stats a = {.size = sizeof a}, b = {.size = sizeof b};
        memscope_read_stats(&a);
        int bad = 0;
        for (int k = 43; k < 64; k++) {
            size_t sizes[3] = {(size_t)1 << k, ((size_t)1 << k) + 1, ((size_t)1 << k) - 4096};
            for (int j = 0; j < 3; j++) {
                if (k == 43 && j == 2) continue; /* just below the limit: the kernel decides */
                errno = 0;
                void *p = malloc(sizes[j]);
                if (p || errno != ENOMEM) bad++, free(p);
                p = calloc(1, sizes[j]);
                if (p || errno != ENOMEM) bad++, free(p);
                void *q = malloc(16), *r = realloc(q, sizes[j]);
                if (r != NULL || errno != ENOMEM) bad++;
                free(r ? r : q);
                if (posix_memalign(&p, 4096, sizes[j]) != ENOMEM) bad++;
            }
        }
        errno = 0;
        if (malloc(v_size_max) || errno != ENOMEM) bad++;
        /* refused by the kernel (default overcommit policy): 64 TiB... 1 TiB
         * is more than this machine has, but not more than memscope allows */
        FILE *f = fopen("/proc/sys/vm/overcommit_memory", "r");
        int mode = f && fscanf(f, "%d", &mode) == 1 ? mode : -1;
        if (f) fclose(f);
        if (mode == 0 || mode == 2) {
            errno = 0;
            void *p = malloc((size_t)4 << 40);
            if (p || errno != ENOMEM) bad++, free(p);
        }
        memscope_read_stats(&b);
        fprintf(stderr, "[heap_sys %llu -> %llu, metadata_sys %llu -> %llu, rss %llu -> %llu, %d bad] ",
                (unsigned long long)a.heap_sys, (unsigned long long)b.heap_sys, (unsigned long long)a.metadata_sys,
                (unsigned long long)b.metadata_sys, (unsigned long long)a.rss, (unsigned long long)b.rss, bad);
        CHECK_TRUE(bad == 0);
        CHECK_TRUE(b.heap_sys <= a.heap_sys + (1 << 20));
        CHECK_TRUE(b.metadata_sys <= a.metadata_sys + (1 << 20));
        CHECK_TRUE(b.rss <= a.rss + (4 << 20));
        CHECK_TRUE(ms_heap_is_valid());
        ms_no_sample--;
        result = true;
    }

    CHECK_BODY("fork-during-scavenge-strands-nothing") {
        /* the scavenger releases at once (delay 0) while a thread frees
         * large blocks; each child checks every free page is on a list */
        ms_opt.scavenge_delay_ms = 0;
        pthread_t t;
        pthread_create(&t, NULL, churn_large, NULL);
        int bad = 0;
        for (int i = 0; i < 200; i++) {
            pid_t pid = fork();
            if (pid == 0) {
                heap_counters_t c;
                ms_heap_counters(&c);
                _exit(c.busy_batches == 0 && ms_heap_is_valid() ? 0 : 1);
            }
            int st;
            waitpid(pid, &st, 0);
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) bad++;
        }
        pthread_join(t, NULL);
        fprintf(stderr, "[%d of 200 children found a stranded span] ", bad);
        result = bad == 0;
    }

    CHECK_BODY("cache-creation-with-many-keys") {
        for (int i = 0; i < 40; i++) pthread_key_create(&keys[i], NULL);
        pthread_t t;
        result = pthread_create(&t, NULL, new_thread_cache, NULL) == 0 && pthread_join(t, NULL) == 0;
    }
    return print_test_summary();
}
