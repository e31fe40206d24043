/* leak.h: the leak checker (layer 6), as seen by the rest of memscope.
 *
 * The checker finds blocks that nothing references any more, the way
 * LeakSanitizer and the Boehm collector do: a conservative mark from the
 * roots (writable segments of loaded objects, every thread's stack,
 * registers and static TLS), over memscope's own blocks only.  It asks the
 * core two things (internal.h): the spans in use, and whether an address is
 * a block allocated now; everything else lives in this folder:
 *
 *   roots.c   stopping the threads with a signal, copying their registers,
 *             stacks and TLS and the writable segments while they wait
 *   mark.c    the snapshot of the heap, the mark, the classification
 *   report.c  grouping by allocation stack; LSan-style text, pprof, JSON
 *
 * A check runs in the calling thread and never allocates from the heap it
 * inspects: all its memory comes from ms_os_alloc and is returned before it
 * ends (the result, too, lives in mapped pages until ms_leak_result_free).
 * One check runs at a time; a second caller waits for the first.
 */
#ifndef MS_LEAK_H
#define MS_LEAK_H

#include "../internal.h"

/* ------------------------------------------------------------------------
 * roots.c
 * ---------------------------------------------------------------------- */
/* Threads beyond this many are not stopped (the report says incomplete). */
#define MS_LEAK_MAX_THREADS 4096
/* Thread ids listed individually in a report as not stopped. */
#define MS_LEAK_LIST_TIDS 8

typedef struct ms_leak_roots_s {
    uintptr_t *words;       /* every root word, copied while the threads were stopped */
    size_t nwords;
    size_t map_bytes;       /* mapping of words */
    uint64_t pause_ns;      /* how long the other threads were stopped, all stops of a check together */
    uint64_t pause_max_ns;  /* the longest of those stops */
    uint32_t nstops;        /* how many times they were stopped (a check may look again, mark.c) */
    bool held;              /* they stayed stopped until the mark had followed the roots (mark.c, held) */
    uint64_t held_ns;       /* of the pause, how long that mark took (whether it finished or not) */
    uint64_t held_max_ns;   /* the longest such mark of all stops of a check (its deadline bounds it) */
    uint64_t held_max_cpu_ns; /* the most CPU time the checking thread spent on one (its budget bounds it) */
    uint64_t seg_bytes, stack_bytes, tls_bytes, reg_bytes; /* what the words came from */
    uint32_t nsegments;     /* writable PT_LOAD segments scanned */
    uint32_t nthreads;      /* threads seen (the caller included) */
    uint32_t nstopped;      /* threads that answered (the caller included) */
    uint32_t nunstopped;    /* threads that did not answer in time or could not be signalled */
    int unstopped_tids[MS_LEAK_LIST_TIDS];
    uint32_t nstack_only;   /* of those, threads whose stack was still read (blocked in a system call) */
    uintptr_t loader_lo, loader_hi; /* the dynamic loader's code (mark.c: its blocks are roots) */
    /* leaks_mmap: the program's own memory mappings, read by the mark with
     * the program running (ms_leak_roots_scan_mmaps), not copied in the stop */
    uintptr_t (*mmaps)[2];
    size_t nmmaps, mmaps_map;
    uint64_t mmap_bytes;    /* resident bytes of them read */
    bool mmap_unsure;       /* memscope's own mappings could not all be told apart: none read */
} ms_leak_roots_t;

/* ms_leak_pause_add: the stops of b counted into a's */
static inline void ms_leak_pause_add(ms_leak_roots_t *a, const ms_leak_roots_t *b) {
    a->pause_ns += b->pause_ns;
    if (a->pause_max_ns < b->pause_max_ns) a->pause_max_ns = b->pause_max_ns;
    if (a->held_max_ns < b->held_max_ns) a->held_max_ns = b->held_max_ns;
    if (a->held_max_cpu_ns < b->held_max_cpu_ns) a->held_max_cpu_ns = b->held_max_cpu_ns;
    a->nstops += b->nstops;
}

/* The calling thread as the program left it, captured at the API's entry:
 * the program's frames lie above lo, and regs hold its callee-saved
 * registers.  The frames of the check itself are not scanned: their
 * uninitialized slots hold whatever the program's dead frames left there
 * (a pointer to a block it just dropped would hide that leak). */
typedef struct ms_leak_self_s {
    uintptr_t lo;
    uintptr_t regs[8];
    long arg;               /* the entry point's argument, kept in memory (below) */
} ms_leak_self_t;
/* MS_LEAK_SELF(s): first thing in a small noinline entry point that keeps
 * its argument and s in thread-local memory (report.c): the program's
 * frames begin just above the entry's saved frame pointer and return
 * address, and the entry has no reason to save a callee-saved register
 * before the spill, so the spill sees the caller's values. */
void ms_leak_spill_regs(uintptr_t regs[8]);
#define MS_LEAK_SELF(s)                                                                   \
    do {                                                                                  \
        (s).lo = (uintptr_t)__builtin_frame_address(0) + 2 * sizeof(uintptr_t);           \
        ms_leak_spill_regs((s).regs);                                                     \
    } while (0)

/* ms_leak_roots_capture: stops every other thread, copies the roots into
 * r->words, calls held (if not NULL) while the threads are still stopped,
 * and lets them go; false if memory was refused.  held must take no lock
 * and make no call that may (a stopped thread may hold it); what it
 * returns goes to r->held.  self: the caller's frames and registers (NULL:
 * a memscope thread, none). */
bool ms_leak_roots_capture(ms_leak_roots_t *r, const ms_leak_self_t *self, bool (*held)(ms_leak_roots_t *r, void *arg),
                           void *held_arg);
void ms_leak_roots_free(ms_leak_roots_t *r);
/* ms_leak_roots_alone: the calling thread is the program's only one (the
 * others, if any, are memscope's own), as listed now.  Takes no lock. */
bool ms_leak_roots_alone(void);
/* ms_leak_roots_scan_mmaps: hands fn the words of the mappings listed in r
 * (leaks_mmap), a resident stretch at a time. */
void ms_leak_roots_scan_mmaps(ms_leak_roots_t *r, void (*fn)(const uintptr_t *w, size_t n, void *arg), void *arg);
/* ms_leak_fork_child: a check interrupted by fork is forgotten in the child. */
void ms_leak_fork_child(void);

/* ------------------------------------------------------------------------
 * mark.c and report.c
 * ---------------------------------------------------------------------- */
enum { MS_LEAK_DIRECT = 0, MS_LEAK_INDIRECT = 1, MS_LEAK_REACHABLE = 2 };

/* One (class, allocation stack) pair with its blocks.  stack is the heap
 * profiler's stack id, UINT32_MAX when the blocks were not sampled. */
typedef struct ms_leak_group_s {
    uint32_t stack;
    uint32_t kind;          /* MS_LEAK_* */
    uint64_t objs, bytes;
} ms_leak_group_t;

typedef struct ms_leak_result_s {
    ms_leak_group_t *groups; /* lost blocks (direct and indirect), largest bytes first */
    size_t ngroups;
    uint64_t objs[3], bytes[3];   /* per MS_LEAK_* class */
    uint64_t unsampled_objs;      /* lost blocks without a recorded stack */
    int64_t rate;                 /* profile_rate during the check (1: every block has its stack) */
    uint64_t nspans, nblocks;     /* the snapshot: spans in use, blocks allocated */
    uint64_t heap_bytes;          /* bytes of those blocks */
    uint64_t changed_objs;        /* blocks allocated or freed during the check: left out */
    uint64_t unconfirmed_objs;    /* of those, lost at the last look but not at every earlier one */
    int looks;                    /* how many times the check looked (mark.c, "More looks") */
    uint32_t rescans;             /* stops to rescan the pages written during the mark (mark.c, "Rescans") */
    uint64_t rescan_pages;        /* the written pages they rescanned, in 4 KiB pages */
    bool exact;                   /* the mark from the roots saw the program at one instant (mark.c, held) */
    bool log_overflow;            /* too many allocations during the check to list: some may show as lost */
    uint64_t total_ns, snapshot_ns, mark_ns;
    size_t mark_bytes;            /* memory the check mapped for itself, at its largest */
    ms_leak_roots_t roots;        /* words freed; the counts stay */
    uint64_t time_ns;             /* wall clock at the check */
    size_t map_bytes;             /* of this struct and groups */
} ms_leak_result_t;

/* writes.c: which heap pages the program wrote.  start arms it (false:
 * the kernel cannot tell); take lists, into *out, the pages written since
 * start or the last take, as [lo, hi) ranges valid until the next call,
 * and arms them again: 1, or 0 when called with the other threads stopped
 * (it takes no lock then) and the heap's mappings changed since the last
 * take (nothing taken: ask again once they run), or -1 when it can no
 * longer tell; stop disarms it. */
bool ms_leak_writes_start(void);
int ms_leak_writes_take(const uintptr_t (**out)[2], size_t *n, bool stopped);
void ms_leak_writes_stop(void);
void ms_leak_writes_fork_child(void);

/* ms_leak_check: a full check now; NULL if memory was refused or no signal
 * can stop the threads (ms_leak_why says which).  self as for
 * ms_leak_roots_capture.  at_exit: the check at exit, which keeps the
 * other threads stopped until the mark has followed the roots however long
 * that takes (as LeakSanitizer does); any other check keeps them stopped
 * for a few milliseconds of it at most (mark.c, held). */
ms_leak_result_t *ms_leak_check(const ms_leak_self_t *self, bool at_exit);
const char *ms_leak_why(void); /* why the last check gave NULL, for a one-line message */
void ms_leak_result_free(ms_leak_result_t *r);
void ms_leak_mark_fork_child(void); /* from ms_leak_fork_child */

/* report.c: the LSan-style text (at most max_groups groups), the pprof
 * profile (debug 0) or text, and the live page's JSON.  0 or -1. */
int ms_leak_write_text(int fd, const ms_leak_result_t *r, int max_groups);
int ms_leak_write_pprof(int fd, const ms_leak_result_t *r);
int ms_leak_write_json(int fd, const ms_leak_result_t *r, int max_groups);
/* ms_leak_exit: MEMSCOPE=leaks=reachable at exit; true if anything was
 * lost (the process then ends with status 23, as under LeakSanitizer). */
bool ms_leak_exit(int fd);

#endif /* MS_LEAK_H */
