/* memscope.h: the whole public API of memscope.
 *
 * memscope is a thread-caching malloc for Linux that keeps exact accounting
 * of its heap and reports it the way Go's runtime does: a trace line per heap
 * cycle and per scavenge (MEMSCOPE=trace=1), runtime.MemStats-style numbers
 * (memscope_read_stats), and idle memory handed back to the OS by a
 * background scavenger.  Linking with -lmemscope (or loading libmemscope.so
 * with LD_PRELOAD) replaces the whole malloc family; the functions below are
 * the extra C API.  Every function here is safe to call from any thread.
 */
#ifndef MEMSCOPE_H
#define MEMSCOPE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MEMSCOPE_VERSION 100 /* 0.1.0: major*10000 + minor*100 + patch */

#if defined(__GNUC__)
#define MEMSCOPE_API __attribute__((visibility("default")))
#else
#define MEMSCOPE_API
#endif

/* ------------------------------------------------------------------------
 * Version
 * ---------------------------------------------------------------------- */

/* memscope_version returns MEMSCOPE_VERSION of the library actually loaded. */
MEMSCOPE_API int memscope_version(void);

/* ------------------------------------------------------------------------
 * Returning memory to the OS
 * ---------------------------------------------------------------------- */

/* memscope_free_os_memory returns every idle heap page to the OS now (Go's
 * debug.FreeOSMemory), after flushing the calling thread's cache and the
 * central caches; it counts as a forced heap cycle in the trace.  Returns the
 * number of bytes released by this call.  malloc_trim() calls it. */
MEMSCOPE_API size_t memscope_free_os_memory(void);

/* ------------------------------------------------------------------------
 * Statistics (runtime.MemStats for a malloc heap)
 *
 * All byte counts are bytes; all counts are objects.  Relations that hold in
 * every snapshot:
 *   heap_sys      = heap_inuse + heap_idle
 *   heap_released <= heap_idle
 *   heap_objects  = mallocs - frees
 *   heap_alloc    = alloc <= heap_inuse
 * Counters are read without stopping other threads, so a snapshot taken while
 * other threads allocate mixes instants a few nanoseconds apart; in a single
 * thread (or with the others quiet) every identity is exact.
 * ---------------------------------------------------------------------- */

#define MEMSCOPE_BY_SIZE_LEN 100 /* entries in by_size; unused tail entries have size 0 */

struct memscope_stats {
    uint32_t size;    /* sizeof(struct memscope_stats) of the caller; set before the call */
    uint32_t version; /* MEMSCOPE_VERSION of the library that filled it in */

    /* General. */
    uint64_t alloc;       /* bytes of allocated heap objects (= heap_alloc); size-class rounded */
    uint64_t total_alloc; /* cumulative bytes allocated, never decreases */
    uint64_t sys;         /* bytes obtained from the OS: heap_sys + metadata_sys */
    uint64_t mallocs;     /* cumulative count of objects allocated */
    uint64_t frees;       /* cumulative count of objects freed */

    /* Heap.  Page runs (spans) are in use (holding objects, or free slots of
     * a size class), idle (free, still backed by memory) or released (idle and
     * returned to the OS: counted in heap_idle and heap_released). */
    uint64_t heap_alloc;    /* bytes of allocated objects; same as alloc */
    uint64_t heap_sys;      /* bytes of heap address space obtained from the OS */
    uint64_t heap_idle;     /* bytes in free page runs, released or not */
    uint64_t heap_inuse;    /* bytes in spans in use; heap_inuse - heap_alloc is fragmentation */
    uint64_t heap_released; /* bytes of idle pages returned to the OS */
    uint64_t heap_objects;  /* live objects: mallocs - frees */

    /* Allocator metadata (spans, thread caches, page map, profiler tables). */
    uint64_t metadata_inuse; /* bytes of metadata in use */
    uint64_t metadata_sys;   /* bytes of metadata obtained from the OS */

    /* Heap cycles: a cycle ends when the live heap crosses next_gc (twice the
     * live heap at the end of the previous cycle, at least 4 MiB, like GOGC=100)
     * or at memscope_free_os_memory (forced). */
    uint64_t next_gc;       /* heap goal in bytes for the current cycle */
    uint64_t last_gc;       /* end of the last cycle, ns since the Unix epoch; 0 if none */
    uint32_t num_gc;        /* completed cycles */
    uint32_t num_forced_gc; /* cycles forced by memscope_free_os_memory or malloc_trim */

    /* Scavenger. */
    uint64_t num_scavenge;      /* scavenger passes that released memory */
    uint64_t released_total;    /* cumulative bytes returned to the OS */
    uint64_t scavenge_delay_ms; /* idle age after which pages are returned */

    /* Resident memory as the kernel counts it (/proc/self/statm), and its
     * decomposition.  rss_heap_live + rss_heap_frag + rss_heap_idle +
     * rss_metadata + rss_other = rss.  The heap parts are the allocator's own
     * accounting of committed bytes (pages never touched by the program are
     * counted as if resident); rss_other is the rest: code, stacks, libc's
     * own data, other mappings, clamped at 0. */
    uint64_t rss;           /* resident set size, bytes */
    uint64_t max_rss;       /* peak resident set size (VmHWM), bytes */
    uint64_t rss_heap_live; /* live objects (alloc) */
    uint64_t rss_heap_frag; /* free space inside spans in use (heap_inuse - heap_alloc) */
    uint64_t rss_heap_idle; /* idle pages not yet returned (heap_idle - heap_released) */
    uint64_t rss_metadata;  /* allocator metadata (metadata_inuse) */
    uint64_t rss_other;     /* everything that is not heap: rss minus the four above */
    uint64_t rss_file;      /* of rss, pages backed by files: code, libraries, mapped files
                             * (the kernel's RssFile + RssShmem); part of rss_other */

    uint32_t num_threads;  /* threads with a live thread cache */
    uint32_t num_classes;  /* entries of by_size in use */

    /* Per size class, like MemStats.BySize: size is the largest object in the
     * class, mallocs/frees are cumulative counts.  Objects above the largest
     * class are counted in the last used entry with size 0 ("large"). */
    struct {
        uint32_t size;
        uint64_t mallocs;
        uint64_t frees;
    } by_size[MEMSCOPE_BY_SIZE_LEN];

    /* Stalls.  The longest time any thread held the page heap's lock (the
     * lock an allocating thread may wait for when it needs pages) since the
     * previous memscope_read_stats call, in ns. */
    uint64_t heap_lock_max_ns;
};

/* memscope_read_stats fills *st (st->size must be set to sizeof(*st); a
 * smaller size from an older caller gets a prefix).  Cheap: no thread is
 * stopped, one read of /proc/self/statm.  Returns 0, or -1 if st is NULL or
 * st->size is too small to hold the general fields. */
MEMSCOPE_API int memscope_read_stats(struct memscope_stats *st);

/* memscope_print_stats writes a human-readable summary of the stats to the
 * file descriptor fd (the same text as MEMSCOPE=stats=1 prints at exit). */
MEMSCOPE_API void memscope_print_stats(int fd);

/* ------------------------------------------------------------------------
 * Heap profile (Go's runtime/pprof heap profile, for malloc)
 *
 * With MEMSCOPE=profile_rate=BYTES (default 524288; 1 records every
 * allocation; 0 turns profiling off) one allocation per BYTES on average is
 * sampled with its call stack.  Profiles are gzipped pprof protobuf, read by
 * `memscope report` or `go tool pprof`; estimates are unbiased.
 * ---------------------------------------------------------------------- */

/* memscope_write_heap_profile writes the heap profile now to path ("%p" is
 * replaced by the pid; NULL: the MEMSCOPE heapprofile path).  0 or -1. */
MEMSCOPE_API int memscope_write_heap_profile(const char *path);

/* memscope_write_heap_profile_fd writes it to an open descriptor: pprof
 * protobuf (debug 0) or Go's debug=1 text with a MemStats trailer (any
 * positive debug, as in Go).  0, or -1 (a negative fd or debug, profiling
 * off, a failed write). */
MEMSCOPE_API int memscope_write_heap_profile_fd(int fd, int debug);

/* memscope_write_peak_profile writes the profile of the moment the heap
 * held the most (default sample type peak_space) to path.  0 or -1. */
MEMSCOPE_API int memscope_write_peak_profile(const char *path);

/* memscope_profile_rate returns the sampling rate in effect (0: off). */
MEMSCOPE_API int64_t memscope_profile_rate(void);

/* memscope_check_leaks finds the blocks nothing references any more (by
 * reachability, as LeakSanitizer does, but now and with the program
 * running), writes a LeakSanitizer-style report to fd (none if fd < 0), and
 * returns how many blocks are lost (direct and indirect), or -1. */
MEMSCOPE_API long memscope_check_leaks(int fd);

/* ------------------------------------------------------------------------
 * Live endpoint
 * ---------------------------------------------------------------------- */

/* memscope_http_start serves /debug/pprof/, /metrics, /debug/vars and a live
 * page on "PORT" or "IPV4:PORT" (127.0.0.1 unless given; NULL or "" is
 * 127.0.0.1:6060) from a background thread, as MEMSCOPE=http=... does.
 * Returns 0, or -1 (one warning on stderr; after 32 warnings in a process,
 * memscope says once that it prints no more). */
MEMSCOPE_API int memscope_http_start(const char *addr_port);

#ifdef __cplusplus
}
#endif
#endif /* MEMSCOPE_H */
