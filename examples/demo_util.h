/* demo_util.h: helpers shared by the examples (not a public header).
 *
 * The examples are plain C programs built WITHOUT -lmemscope, so the same
 * binary runs on glibc's malloc and, under `memscope run --` or
 * LD_PRELOAD=libmemscope.so, on memscope.  memscope's C API is declared weak
 * here: when the library is loaded the dynamic linker binds the symbols and
 * the pointers are non-NULL; on plain glibc they stay NULL and the examples
 * print what glibc offers instead (mallinfo2 and the RSS from /proc).
 *
 *   logf_go(fmt, ...)   one line on stderr in Go's log format
 *                       "2026/11/25 16:17:05 msg", written with one write()
 *                       so memscope's trace lines never split it
 *   rss_bytes()         resident set size from /proc/self/statm
 *   elapsed_s()         seconds since the program started
 *   memstats_line(tag)  a demo2-style line: runtime.MemStats names filled
 *                       from memscope_read_stats, or glibc's mallinfo2 numbers
 */
#ifndef MEMSCOPE_DEMO_UTIL_H
#define MEMSCOPE_DEMO_UTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <malloc.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "memscope.h"

/* Re-declared weak: resolved only when libmemscope.so is loaded. */
extern int memscope_read_stats(struct memscope_stats *st) __attribute__((weak));
extern size_t memscope_free_os_memory(void) __attribute__((weak));
extern void memscope_print_stats(int fd) __attribute__((weak));

static inline int memscope_loaded(void) { return memscope_read_stats != NULL; }

static double demo_t0 = -1;

static inline double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* elapsed_s: seconds since the first call (main calls it first thing). */
static inline double elapsed_s(void) {
    if (demo_t0 < 0) demo_t0 = mono_s();
    return mono_s() - demo_t0;
}

static inline void sleep_s(double s) {
    if (s <= 0) return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static inline uint64_t rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%llu %llu", &size, &res) != 2) res = 0;
        fclose(f);
    }
    return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* logf_go: Go's log.Printf, to stderr, one write() per line. */
__attribute__((format(printf, 1, 2))) static inline void logf_go(const char *fmt, ...) {
    char buf[1024];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    size_t n = strftime(buf, sizeof buf, "%Y/%m/%d %H:%M:%S ", &tm);
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + n, sizeof buf - n - 1, fmt, ap);
    va_end(ap);
    if (k < 0) k = 0;
    n += (size_t)k < sizeof buf - n - 1 ? (size_t)k : sizeof buf - n - 2;
    buf[n++] = '\n';
    ssize_t w = write(2, buf, n);
    (void)w;
}

/* memstats_line: demo2's traceMemStats.  Under memscope the runtime.MemStats
 * names are filled from memscope_read_stats (PauseTotalNs has no analogue and
 * is left out; RSS is added).  Under glibc: mallinfo2 and RSS. */
static inline void memstats_line(const char *tag) {
    double t = elapsed_s();
    if (memscope_loaded()) {
        struct memscope_stats st;
        memset(&st, 0, sizeof st);
        st.size = sizeof st;
        if (memscope_read_stats(&st) == 0) {
            logf_go("%-9s t=%7.3fs Alloc:%llu(bytes) HeapIdle:%llu(bytes) HeapReleased:%llu(bytes) | "
                    "HeapInuse:%llu HeapSys:%llu Sys:%llu TotalAlloc:%llu Mallocs:%llu Frees:%llu "
                    "HeapObjects:%llu NumGC:%u NumForcedGC:%u NextGC:%llu RSS:%llu",
                    tag, t, (unsigned long long)st.alloc, (unsigned long long)st.heap_idle,
                    (unsigned long long)st.heap_released, (unsigned long long)st.heap_inuse,
                    (unsigned long long)st.heap_sys, (unsigned long long)st.sys,
                    (unsigned long long)st.total_alloc, (unsigned long long)st.mallocs,
                    (unsigned long long)st.frees, (unsigned long long)st.heap_objects, st.num_gc,
                    st.num_forced_gc, (unsigned long long)st.next_gc, (unsigned long long)st.rss);
            return;
        }
    }
    struct mallinfo2 mi = mallinfo2();
    logf_go("%-9s t=%7.3fs glibc mallinfo2: arena:%zu uordblks:%zu fordblks:%zu hblkhd:%zu keepcost:%zu RSS:%llu", tag,
            t, mi.arena, mi.uordblks, mi.fordblks, mi.hblkhd, mi.keepcost, (unsigned long long)rss_bytes());
}

/* say_who: one log line saying which malloc this run measures. */
static inline void say_who(const char *argv0) {
    if (memscope_loaded())
        logf_go("memscope loaded: stats from memscope_read_stats()");
    else
        logf_go("memscope not loaded: glibc malloc; stats from mallinfo2() and /proc/self/statm "
                "(for memscope: build/memscope run -- %s)",
                argv0);
}

#endif /* MEMSCOPE_DEMO_UTIL_H */
