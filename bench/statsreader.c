/* statsreader.c — preloadable helper that polls memscope_read_stats.
 *
 * Measures the cost of *reading* memscope's statistics while a program runs:
 * the "diagnostics" variant of bench/run_diag.sh preloads this object next to
 * memscope (LD_PRELOAD="libmemscope.so statsreader.so").  Its constructor
 * starts one detached thread that calls memscope_read_stats every
 * STATSREADER_MS milliseconds (default 10), as a monitoring agent or an
 * exporter would.  The function is looked up with dlsym(RTLD_DEFAULT, ...),
 * so nothing is linked against memscope.  Why: memscope_read_stats walks
 * shared counters and reads /proc/self/statm; if that took locks the
 * allocating threads need, or cost much, a program that exports its heap
 * stats would pay for it in its malloc fast path.
 *
 * At exit it prints one machine-readable line to stderr:
 *   STATSREADER calls=<n> mean_us=<wall us per call> max_us=<worst call> interval_ms=<ms>
 * If memscope is not loaded, it prints STATSREADER calls=0 missing=1 and does
 * nothing else.  It never asserts and never changes the program's output.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../include/memscope.h"

typedef int (*read_fn)(struct memscope_stats *);

static _Atomic unsigned long sr_calls;
static _Atomic unsigned long long sr_ns_total, sr_ns_max;
static _Atomic int sr_missing;
static long sr_interval_ms = 10;

static unsigned long long mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

static void *reader(void *arg)
{
    (void)arg;
    read_fn fn = NULL;
    static struct memscope_stats st; /* one thread only: static keeps the stack small */
    struct timespec iv = {sr_interval_ms / 1000, (sr_interval_ms % 1000) * 1000000L};
    for (;;) {
        nanosleep(&iv, NULL);
        if (!fn) {
            fn = (read_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "memscope_read_stats");
            if (!fn) { atomic_store(&sr_missing, 1); return NULL; }
        }
        memset(&st, 0, sizeof st);
        st.size = sizeof st;
        unsigned long long t0 = mono_ns();
        fn(&st);
        unsigned long long d = mono_ns() - t0;
        atomic_fetch_add(&sr_calls, 1);
        atomic_fetch_add(&sr_ns_total, d);
        if (d > atomic_load(&sr_ns_max)) atomic_store(&sr_ns_max, d);
    }
    return NULL;
}

__attribute__((constructor)) static void sr_start(void)
{
    const char *e = getenv("STATSREADER_MS");
    if (e && atol(e) > 0) sr_interval_ms = atol(e);
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    pthread_create(&t, &a, reader, NULL);
    pthread_attr_destroy(&a);
}

__attribute__((destructor)) static void sr_report(void)
{
    char buf[200];
    unsigned long n = atomic_load(&sr_calls);
    int len = snprintf(buf, sizeof buf,
                       "STATSREADER calls=%lu mean_us=%.2f max_us=%.1f interval_ms=%ld missing=%d\n", n,
                       n ? (double)atomic_load(&sr_ns_total) / n / 1000.0 : 0.0,
                       (double)atomic_load(&sr_ns_max) / 1000.0, sr_interval_ms, atomic_load(&sr_missing));
    if (len > 0) { ssize_t w = write(2, buf, (size_t)len); (void)w; }
}
