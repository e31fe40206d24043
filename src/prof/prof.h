/* prof.h: the heap profiler, as seen by the files that read it.
 *
 * The profiler sits above the allocator core (the .c files of src/) and reads the heap
 * from outside: the core keeps only the countdown to the next sampled
 * allocation and calls three narrow hooks (malloc.c: ms_prof_hooks); what is
 * done with a sample -- unwinding, the table of stacks, symbolizing,
 * encoding -- lives in the files of this folder:
 *
 *   sample.c     the hooks: the table of stacks and the map of sampled blocks
 *   stack.c      stack capture (guarded against recursion and fork)
 *   unwind.c     the walker for plain frames (.eh_frame recipes); libunwind
 *                walks whatever it refuses
 *   symbolize.c  pc -> function, file:line, mapping (ELF symbols, libdw)
 *   pprof.c      the profile.proto encoder and gzip (zlib)
 *   text.c       Go's debug=1 heap text, and the leaks-at-exit report
 *   api.c        memscope_write_*_profile, MEMSCOPE=heapprofile, exit reports
 *
 * Every writer works from a snapshot: a copy of the table taken under the
 * profiler's lock in one pass and then read with no lock held, so writing a
 * profile never holds a lock that allocating threads need for longer than a
 * copy.  Snapshots live in memory mapped for them (ms_os_alloc), never in
 * the profiled heap.
 */
#ifndef MS_PROF_H
#define MS_PROF_H

#include "../internal.h"

/* Deepest stack recorded (frames beyond are dropped; the record is marked
 * truncated).  Documented in the README. */
#define MS_PROF_MAX_DEPTH 64
/* Most distinct stacks kept; past it new stacks are counted in one
 * "(stack table full)" record and one warning is printed. */
#define MS_PROF_MAX_STACKS (1u << 20)

/* ------------------------------------------------------------------------
 * sample.c
 * ---------------------------------------------------------------------- */
void ms_prof_init(void);            /* installs the hooks if profile_rate > 0 */
void ms_stack_init(void);
/* ms_prof_fork_prepare, _parent, _child: the profiler's part of fork, called
 * by init.c's handlers only (nothing when the profiler is off). */
void ms_prof_fork_prepare(void);
void ms_prof_fork_parent(void);
void ms_prof_fork_child(void);
void ms_stack_fork_prepare(void);
void ms_stack_fork_parent(void);
void ms_stack_fork_child(void);
bool ms_prof_enabled(void);

/* One stack's counts.  Raw counts are the sampled allocations themselves
 * (what Go's debug=1 text prints); the _w figures are unbiased estimates of
 * the program's totals, each sample weighted by 1/(1-exp(-size/rate)). */
typedef struct prof_counts_s {
    uint64_t alloc_objs, alloc_bytes, free_objs, free_bytes;  /* raw */
    double alloc_objs_w, alloc_bytes_w, free_objs_w, free_bytes_w;
} prof_counts_t;

typedef struct prof_rec_s {
    const uintptr_t *pcs;   /* return addresses, innermost first (the caller of malloc) */
    uint32_t npcs;
    bool truncated;         /* deeper than MS_PROF_MAX_DEPTH */
    prof_counts_t now;      /* cumulative since start (inuse = alloc - free) */
    prof_counts_t peak;     /* the same counts at the in-use high-water mark */
} prof_rec_t;

typedef struct prof_snap_s {
    prof_rec_t *recs;
    size_t nrecs;
    int64_t rate;           /* profile_rate when taken */
    uint64_t time_ns;       /* wall clock when taken */
    uint64_t peak_bytes;    /* estimated in-use bytes at the peak */
    uint64_t peak_time_ns;  /* when the peak was reached (wall clock) */
    size_t map_bytes;       /* mapping size, for ms_prof_snap_free */
} prof_snap_t;

/* ms_prof_snap_take: a copy of every stack's counts; NULL if profiling is
 * off or memory for the copy is refused.  Free with ms_prof_snap_free. */
prof_snap_t *ms_prof_snap_take(void);
void ms_prof_snap_free(prof_snap_t *s);
/* ms_prof_snap_sub: snap minus base (a snapshot taken earlier), every count
 * (Go's ?seconds=N: allocations in the interval, change of in-use).  Raw
 * counts are then differences modulo 2^64: read in-use as alloc - free. */
void ms_prof_snap_sub(prof_snap_t *snap, const prof_snap_t *base);

/* For the leak checker.  While a log is set, every block the profiler
 * records (allocated, or moved by realloc) has its address appended to
 * buf (cap entries; beyond, the overflow flag is set): the blocks that are
 * new since the check began.  Stop returns the count; buf stays the
 * caller's.  ms_prof_block_stacks: the stack id of each recorded block,
 * UINT32_MAX for one not recorded.  ms_prof_stack_get: a stack's frames
 * (they live as long as the process). */
void ms_prof_log_start(uintptr_t *buf, size_t cap);
size_t ms_prof_log_count(void);
/* ms_prof_log_count_stopped: how many are listed, read without the lock
 * (a stopped thread may hold it), for the leak checker while every thread
 * that allocates is stopped; what a thread's batch holds is not counted. */
size_t ms_prof_log_count_stopped(void);
/* ms_prof_pending_stopped: likewise, the blocks allocated and counted in a
 * thread's batch but not yet in the log (at most cap into out; all false if
 * there were more). */
size_t ms_prof_pending_stopped(uintptr_t *out, size_t cap, bool *all);
size_t ms_prof_log_stop(bool *overflow);
void ms_prof_block_stacks(const uintptr_t *addrs, uint32_t *ids, size_t n);
bool ms_prof_stack_get(uint32_t id, const uintptr_t **pcs, uint32_t *npcs, bool *truncated);

/* ------------------------------------------------------------------------
 * stack.c
 * ---------------------------------------------------------------------- */
/* ms_stack_capture: up to max return addresses of the calling thread,
 * skipping `skip` innermost frames; returns the count.  Never allocates
 * through the profiled heap and never recurses into the profiler. */
int ms_stack_capture(uintptr_t *pcs, int max, int skip);

/* ------------------------------------------------------------------------
 * symbolize.c
 * ---------------------------------------------------------------------- */
typedef struct sym_map_s {
    uintptr_t start, limit, offset; /* an executable mapping and its file offset */
    uintptr_t bias;                 /* run-time address minus link-time address: pc - bias is what
                                     * addr2line takes (0 for a non-PIE executable) */
    const char *path;               /* file, or a name such as [vdso] */
    const char *build_id;           /* hex GNU build ID, "" if none */
} sym_map_t;

typedef struct sym_frame_s {
    const char *name;    /* linkage (mangled) name, NULL if unknown */
    const char *pretty;  /* demangled name for people; == name for C */
    uintptr_t offset;    /* pc - start of the function */
    const char *file;    /* source file, NULL if no debug info */
    int line;            /* 0 if unknown */
    int map;             /* index of the mapping, -1 if none */
} sym_frame_t;

typedef struct symtab_s symtab_t;
/* ms_sym_open: reads /proc/self/maps now; modules are opened lazily. */
symtab_t *ms_sym_open(void);
int ms_sym_nmaps(const symtab_t *st);
const sym_map_t *ms_sym_map(const symtab_t *st, int i);
/* ms_sym_lookup: the frames at pc (a return address minus one): inlined
 * functions first, the real function last; returns the count (>= 1, the
 * last may have name NULL).  Strings live until ms_sym_close. */
int ms_sym_lookup(symtab_t *st, uintptr_t pc, sym_frame_t *out, int cap);
void ms_sym_close(symtab_t *st);
/* ms_sym_first_frame: index of the first frame that is not operator new. */
uint32_t ms_sym_first_frame(symtab_t *st, const uintptr_t *pcs, uint32_t n);
/* ms_sym_demangle: the demangled form of a C++ (_Z...) name in buf, cut to
 * cap-1 bytes; returns its full length, 0 if mangled is not a C++ name.
 * Never allocates (libiberty's callback demangler). */
size_t ms_sym_demangle(const char *mangled, char *buf, size_t cap);

/* ------------------------------------------------------------------------
 * Writers (pprof.c, text.c)
 * ---------------------------------------------------------------------- */
enum { PROF_HEAP = 0, PROF_ALLOCS = 1, PROF_PEAK = 2 };
/* ms_prof_write_pprof: gzipped profile.proto of snap to fd; kind picks the
 * default sample type (inuse_space, alloc_space, peak_space). 0 or -1. */
int ms_prof_write_pprof(int fd, const prof_snap_t *snap, int kind);
/* ms_prof_encode: the same with a given symtab (NULL: addresses only), gzip
 * or not; deterministic for a given snapshot and symtab (golden tests). */
int ms_prof_encode(int fd, const prof_snap_t *snap, int kind, symtab_t *sym, bool gzip);
/* A profile of other samples than the heap's (the leak checker's):
 * ntypes sample types {type, unit}, each sample its stack and ntypes values
 * (at most 8). */
typedef struct prof_csample_s {
    const uintptr_t *pcs;
    uint32_t npcs;
    int64_t v[8];
} prof_csample_t;
typedef struct prof_custom_s {
    const char *const (*types)[2];
    int ntypes;
    const char *default_type;
    const char *period_type[2];
    int64_t period;
    const prof_csample_t *samples;
    size_t n;
    const char *comment;
    uint64_t time_ns;
} prof_custom_t;
/* ms_prof_write_custom: symbolized profile.proto of c to fd; 0 or -1. */
int ms_prof_write_custom(int fd, const prof_custom_t *c, bool gzip);
/* ms_prof_write_text: Go's debug=1 heap text, with the MemStats trailer. */
int ms_prof_write_text(int fd, const prof_snap_t *snap, int kind);
/* textout_t: text for people, through a fixed buffer to a descriptor, never
 * through stdio or the heap (text.c); fd < 0 discards. */
typedef struct textout_s {
    int fd;
    bool failed; /* a write to fd failed: the writer reports -1 */
    size_t len;
    char buf[8192];
} textout_t;
void ms_text_put(textout_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ms_text_flush(textout_t *o);
/* ms_text_frames: the frames of a stack, in Go's debug=1 style or in
 * LeakSanitizer's (text.c). */
void ms_text_frames(textout_t *o, symtab_t *st, const uintptr_t *pcs, uint32_t npcs, bool go_style);

/* ms_prof_write: takes a snapshot and writes it (debug 0: pprof, else text). */
int ms_prof_write(int fd, int kind, int debug);
/* ms_prof_report_leaks: what is still allocated, by stack, largest first,
 * at most `top` stacks; returns the number of stacks with live blocks. */
int ms_prof_report_leaks(int fd, int top);
/* ms_gzip_write: [p, p+n) gzipped to fd; 0 or -1. */
int ms_gzip_write(int fd, const void *p, size_t n);
/* ms_prof_exit: heapprofile and leaks at exit; true if the process must
 * end with status 23 (leaks=exit found blocks). */
bool ms_prof_exit(int report_fd);

#endif /* MS_PROF_H */
