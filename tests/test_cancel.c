/* test_cancel.c: malloc, free and malloc_trim are no cancellation points.
 *
 * POSIX lists the functions that are cancellation points, and the malloc
 * family is not among them: a thread with a cancellation request pending
 * (deferred, the default) must go through any number of them and be
 * cancelled at its own next cancellation point.  memscope's slow paths wait
 * on conditions, sleep and do I/O (starting the scavenger, a trace line at
 * the end of a cycle, the first malloc's random seed), and a thread once
 * was cancelled there: inside the free that started the scavenger, holding
 * its lock, so that the next thread's exit hung for ever; inside its first
 * malloc, with a large block taken and never handed out.  Run with
 * trace=1 (the program re-executes itself with it), so that cycles end
 * with their I/O.  Each worker has its request pending before it starts:
 *   - free:   200,000 frees, which start the scavenger;
 *   - malloc: a new thread's first mallocs, large and small;
 *   - trim:   malloc_trim, which ends a cycle and returns memory;
 * each must do all of its work and be cancelled only at pthread_testcancel,
 * and a thread created afterwards must start and exit as usual.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <malloc.h>
#include <time.h>

#include "testhelper.h"

#define N 200000
static void *blocks[N];
static atomic_int go;
static atomic_long done;

/* A job: prepare (before it starts, may be NULL), n steps, finish (may
 * be NULL), then the thread's own cancellation point. */
typedef struct job_s {
    void (*prepare)(void);
    void (*step)(int i);
    void (*finish)(void);
    long n;
} job_t;

static void *worker(void *arg) {
    const job_t *j = arg;
    if (j->prepare) j->prepare();
    while (!atomic_load(&go)) {
    }
    for (long i = 0; i < j->n; i++) {
        j->step((int)i);
        atomic_fetch_add(&done, 1);
    }
    if (j->finish) j->finish();
    for (;;) pthread_testcancel();
    return NULL;
}

/* free: 200,000 frees, which start the scavenger */
static void alloc_all(void) {
    for (int i = 0; i < N; i++) blocks[i] = malloc(64);
}
static void free_one(int i) { free(blocks[i]); }

/* malloc: a new thread's first mallocs, large and small */
static void malloc_one(int i) { blocks[i] = malloc(i % 10 == 0 ? (size_t)1 << 20 : 100); }
static void free_first_thousand(void) {
    for (int i = 0; i < 1000; i++) free(blocks[i]);
}

/* trim: malloc_trim, which ends a cycle and returns memory */
static void trim_one(int i) {
    void *volatile p = malloc((size_t)(i % 8 + 1) << 16);
    free(p);
    malloc_trim(0);
}

static void *plain(void *arg) {
    for (int i = 0; i < 20000; i++) blocks[i] = malloc(100);
    for (int i = 0; i < 20000; i++) free(blocks[i]);
    return arg;
}

/* run: job j in a thread with its cancellation already requested; true if
 * it was cancelled (joined within 20 s) after all its steps */
static bool run(const job_t *j) {
    atomic_store(&go, 0);
    atomic_store(&done, 0);
    pthread_t t;
    if (pthread_create(&t, NULL, worker, (void *)j) != 0) return false;
    pthread_cancel(t);
    atomic_store(&go, 1);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 20;
    void *ret = NULL;
    int r = pthread_timedjoin_np(t, &ret, &ts);
    long got = atomic_load(&done);
    if (r != 0 || got != j->n || ret != PTHREAD_CANCELED)
        fprintf(stderr, "[join %s, %ld of %ld steps] ", r ? "timed out" : "ok", got, j->n);
    return r == 0 && got == j->n && ret == PTHREAD_CANCELED;
}

static bool plain_thread(void) {
    pthread_t t;
    if (pthread_create(&t, NULL, plain, blocks) != 0) return false;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 20;
    void *ret = NULL;
    return pthread_timedjoin_np(t, &ret, &ts) == 0 && ret == blocks;
}

int main(int argc, char **argv) {
    (void)argc;
    th_run_with("trace=1", argv);
    static const job_t frees = {alloc_all, free_one, NULL, N}, mallocs = {NULL, malloc_one, free_first_thousand, 1000},
                       trims = {NULL, trim_one, NULL, 40};
    CHECK("free-is-no-cancellation-point", run(&frees));
    CHECK("a-thread-after-it-runs", plain_thread());
    CHECK("malloc-is-no-cancellation-point", run(&mallocs));
    CHECK("malloc_trim-is-no-cancellation-point", run(&trims));
    malloc_trim(0);
    CHECK("a-thread-after-them-runs", plain_thread());
    return print_test_summary();
}
