/* text.c: the heap profile as text for people: Go's debug=1 format, and
 * the report of what is still allocated at exit (MEMSCOPE=leaks).
 *
 * debug=1 is Go's legacy heap profile text (runtime/pprof, debug=1), which
 * `go tool pprof` also parses:
 *
 *   heap profile: 2: 512 [33: 1500234240] @ heap/1048576
 *   1: 416 [1: 416] @ 0x443388 0x44363e
 *   #	0x443387	runtime.malg+0x27	/usr/lib/go/src/runtime/proc.go:4076
 *
 * The header is the totals, in-use objects: bytes [allocated objects:
 * bytes], and heap/ twice the sampling rate (Go's own convention, which
 * pprof's parser expects); each record is one stack with its raw sampled
 * counts, largest in-use bytes first, then one '#' line per frame (address
 * minus one, demangled function+offset, file:line).  The counts are the
 * samples themselves, unscaled, as in Go: pprof scales them when it reads
 * the text.  The text ends with Go's "# runtime.MemStats" block filled from
 * memscope_read_stats; fields with no meaning for a malloc heap (Stack,
 * MSpan, MCache, BuckHashSys, GCSys, PauseNs...) are left out rather than
 * printed as zeros, and memscope's own (RSS, metadata, releases) follow.
 * Last comes "MAPPED_LIBRARIES:" and /proc/self/maps, as in gperftools'
 * heap profiles, so that pprof can name the functions of a C program whose
 * code is spread over many files.
 *
 * Output goes through a fixed buffer to the descriptor, never through
 * stdio or the heap.
 */
#include "prof.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

void ms_text_flush(textout_t *o) {
    if (o->fd >= 0 && o->len && !ms_write_fd(o->fd, o->buf, o->len)) o->failed = true;
    o->len = 0;
}

void ms_text_put(textout_t *o, const char *fmt, ...) {
    char line[1024];
    __builtin_va_list ap;
    __builtin_va_start(ap, fmt);
    size_t n = ms_vsnprintf(line, sizeof line, fmt, ap);
    __builtin_va_end(ap);
    if (n >= sizeof line) n = sizeof line - 1;
    if (o->len + n > sizeof o->buf) ms_text_flush(o);
    memcpy(o->buf + o->len, line, n);
    o->len += n;
}
#define put ms_text_put
#define flush ms_text_flush

/* order: indexes of the records sorted by key descending (heapsort: no
 * allocation, O(n log n)); returns the mapped array of n entries. */
static uint32_t *order(const prof_snap_t *snap, double (*key)(const prof_rec_t *), size_t *bytes) {
    size_t n = snap->nrecs;
    *bytes = (n * sizeof(uint32_t) + MS_PAGE_MASK + 1) & ~MS_PAGE_MASK;
    uint32_t *ix = ms_os_alloc(*bytes);
    if (!ix) return NULL;
    for (size_t i = 0; i < n; i++) ix[i] = (uint32_t)i;
#define K(i) key(&snap->recs[ix[i]])
    /* min-heap on key, so that popping to the end leaves the array descending */
    for (size_t start = n / 2; start-- > 0;) {
        for (size_t r = start;;) {
            size_t c = 2 * r + 1;
            if (c >= n) break;
            if (c + 1 < n && K(c + 1) < K(c)) c++;
            if (K(r) <= K(c)) break;
            uint32_t t = ix[r]; ix[r] = ix[c]; ix[c] = t;
            r = c;
        }
    }
    for (size_t end = n; end-- > 1;) {
        uint32_t t = ix[0]; ix[0] = ix[end]; ix[end] = t;
        for (size_t r = 0;;) {
            size_t c = 2 * r + 1;
            if (c >= end) break;
            if (c + 1 < end && K(c + 1) < K(c)) c++;
            if (K(r) <= K(c)) break;
            t = ix[r]; ix[r] = ix[c]; ix[c] = t;
            r = c;
        }
    }
#undef K
    return ix;
}

static double raw_inuse_bytes(const prof_rec_t *r) { return (double)(r->now.alloc_bytes - r->now.free_bytes); }
static double raw_peak_bytes(const prof_rec_t *r) { return (double)(r->peak.alloc_bytes - r->peak.free_bytes); }
static double est_inuse_bytes(const prof_rec_t *r) { return r->now.alloc_bytes_w - r->now.free_bytes_w; }

/* ms_text_frames: one line per frame, inlined frames included, of the
 * stack pcs[0..n) (return addresses).  Go's debug=1 style names function
 * and offset ("#\t0x4011d9\tmain.f+0x25\tfile:line"); LeakSanitizer's
 * numbers the frames and, without a source line, names the object and the
 * pc's offset in it ("#2 0x55d1c2a0b1c9 in f (/usr/bin/prog+0x11c9)"), the
 * form addr2line -e takes. */
void ms_text_frames(textout_t *o, symtab_t *st, const uintptr_t *pcs, uint32_t npcs, bool go_style) {
    unsigned idx = 0; /* frame number in the leak report: inlined frames count too */
    for (uint32_t k = ms_sym_first_frame(st, pcs, npcs); k < npcs; k++) {
        uintptr_t pc = pcs[k] - 1;
        sym_frame_t fr[8];
        int n = st ? ms_sym_lookup(st, pc, fr, 8) : 0;
        const sym_map_t *m = st && n > 0 ? ms_sym_map(st, fr[0].map) : NULL;
        if (n <= 0) {
            if (go_style) put(o, "#\t0x%lx\n", (unsigned long)pc);
            else put(o, "    #%u 0x%lx\n", idx++, (unsigned long)pc);
            continue;
        }
        for (int i = 0; i < n; i++) {
            const sym_frame_t *f = &fr[i];
            const char *name = f->pretty ? f->pretty : f->name ? f->name : NULL;
            if (go_style) {
                if (f->file) put(o, "#\t0x%lx\t%s+0x%lx\t%s:%d\n", (unsigned long)pc, name ? name : "?", (unsigned long)f->offset, f->file, f->line);
                else put(o, "#\t0x%lx\t%s+0x%lx\t%s\n", (unsigned long)pc, name ? name : "?", (unsigned long)f->offset, m ? m->path : "?");
            } else if (f->file) {
                put(o, "    #%u 0x%lx in %s %s:%d\n", idx++, (unsigned long)pc, name ? name : "?", f->file, f->line);
            } else {
                put(o, "    #%u 0x%lx", idx++, (unsigned long)pc);
                if (name) put(o, " in %s", name);
                if (m) put(o, " (%s+0x%lx)", m->path, (unsigned long)(pc - m->bias)); /* addr2line's address */
                put(o, "\n");
            }
        }
    }
}

static void memstats(textout_t *o) {
    struct memscope_stats s = {.size = sizeof s};
    memscope_read_stats(&s);
    put(o, "\n# runtime.MemStats\n");
    put(o, "# Alloc = %llu\n# TotalAlloc = %llu\n# Sys = %llu\n# Lookups = 0\n# Mallocs = %llu\n# Frees = %llu\n",
        (unsigned long long)s.alloc, (unsigned long long)s.total_alloc, (unsigned long long)s.sys,
        (unsigned long long)s.mallocs, (unsigned long long)s.frees);
    put(o, "# HeapAlloc = %llu\n# HeapSys = %llu\n# HeapIdle = %llu\n# HeapInuse = %llu\n# HeapReleased = %llu\n"
           "# HeapObjects = %llu\n",
        (unsigned long long)s.heap_alloc, (unsigned long long)s.heap_sys, (unsigned long long)s.heap_idle,
        (unsigned long long)s.heap_inuse, (unsigned long long)s.heap_released, (unsigned long long)s.heap_objects);
    put(o, "# MetadataInuse = %llu\n# MetadataSys = %llu\n", (unsigned long long)s.metadata_inuse,
        (unsigned long long)s.metadata_sys);
    put(o, "# NextGC = %llu\n# LastGC = %llu\n# NumGC = %u\n# NumForcedGC = %u\n", (unsigned long long)s.next_gc,
        (unsigned long long)s.last_gc, s.num_gc, s.num_forced_gc);
    put(o, "# NumScavenge = %llu\n# ReleasedTotal = %llu\n# RSS = %llu\n# MaxRSS = %llu\n",
        (unsigned long long)s.num_scavenge, (unsigned long long)s.released_total, (unsigned long long)s.rss,
        (unsigned long long)s.max_rss);
}

int ms_prof_write_text(int fd, const prof_snap_t *snap, int kind) {
    textout_t o = {.fd = fd};
    bool peak = kind == PROF_PEAK;
    size_t ob;
    uint32_t *ix = order(snap, peak ? raw_peak_bytes : raw_inuse_bytes, &ob);
    if (!ix) return -1;
    ms_no_sample++;
    uint64_t t[4] = {0};
    for (size_t i = 0; i < snap->nrecs; i++) {
        const prof_counts_t *c = peak ? &snap->recs[i].peak : &snap->recs[i].now;
        t[0] += c->alloc_objs - c->free_objs, t[1] += c->alloc_bytes - c->free_bytes;
        t[2] += c->alloc_objs, t[3] += c->alloc_bytes;
    }
    put(&o, "heap profile: %llu: %llu [%llu: %llu] @ heap/%lld\n", (unsigned long long)t[0], (unsigned long long)t[1],
        (unsigned long long)t[2], (unsigned long long)t[3], (long long)snap->rate * 2);
    symtab_t *st = ms_sym_open();
    for (size_t i = 0; i < snap->nrecs; i++) {
        const prof_rec_t *r = &snap->recs[ix[i]];
        const prof_counts_t *c = peak ? &r->peak : &r->now;
        if (!c->alloc_objs) continue;
        put(&o, "%llu: %llu [%llu: %llu] @", (unsigned long long)(c->alloc_objs - c->free_objs),
            (unsigned long long)(c->alloc_bytes - c->free_bytes), (unsigned long long)c->alloc_objs,
            (unsigned long long)c->alloc_bytes);
        for (uint32_t k = ms_sym_first_frame(st, r->pcs, r->npcs); k < r->npcs; k++) put(&o, " 0x%lx", (unsigned long)r->pcs[k]);
        put(&o, "\n");
        ms_text_frames(&o, st, r->pcs, r->npcs, true);
        put(&o, "\n");
    }
    memstats(&o);
    /* The mappings, as gperftools' heap profiles end: with them pprof finds
     * the binaries and libraries behind the addresses.  (A Go program is one
     * static binary that pprof is given, so Go's text has no such part.) */
    put(&o, "\nMAPPED_LIBRARIES:\n");
    flush(&o);
    int mfd = ms_os_open_proc_mm("maps");
    if (mfd >= 0) {
        ssize_t n;
        while ((n = read(mfd, o.buf, sizeof o.buf)) > 0)
            if (!ms_write_fd(fd, o.buf, (size_t)n)) o.failed = true;
        close(mfd);
    }
    if (st) ms_sym_close(st);
    ms_os_free(ix, ob);
    ms_no_sample--;
    return o.failed ? -1 : 0; /* as the pprof writer: -1 when the bytes did not all go out */
}

static void human(char *buf, size_t cap, double b) {
    if (b >= 1 << 30) ms_snprintf(buf, cap, "%.1f GiB", b / (1 << 30));
    else if (b >= 1 << 20) ms_snprintf(buf, cap, "%.1f MiB", b / (1 << 20));
    else if (b >= 1 << 10) ms_snprintf(buf, cap, "%.1f KiB", b / (1 << 10));
    else ms_snprintf(buf, cap, "%.0f bytes", b);
}

int ms_prof_report_leaks(int fd, int top) {
    prof_snap_t *snap = ms_prof_snap_take();
    if (!snap) return 0;
    size_t ob;
    uint32_t *ix = order(snap, est_inuse_bytes, &ob);
    if (!ix) {
        ms_prof_snap_free(snap);
        return 0;
    }
    ms_no_sample++;
    textout_t o = {.fd = fd};
    bool exact = snap->rate == 1;
    double objs = 0, bytes = 0;
    size_t stacks = 0;
    for (size_t i = 0; i < snap->nrecs; i++) {
        const prof_counts_t *c = &snap->recs[i].now;
        if (c->alloc_objs == c->free_objs) continue;
        objs += c->alloc_objs_w - c->free_objs_w, bytes += c->alloc_bytes_w - c->free_bytes_w, stacks++;
    }
    symtab_t *st = stacks ? ms_sym_open() : NULL;
    int shown = 0;
    char h[32];
    for (size_t i = 0; i < snap->nrecs && shown < top; i++) {
        const prof_rec_t *r = &snap->recs[ix[i]];
        const prof_counts_t *c = &r->now;
        if (c->alloc_objs == c->free_objs) continue;
        double n = c->alloc_objs_w - c->free_objs_w, b = c->alloc_bytes_w - c->free_bytes_w;
        human(h, sizeof h, b);
        put(&o, "memscope: %s%.0f bytes (%s) in %s%.0f block%s still allocated at exit, from:\n", exact ? "" : "~", b,
            h, exact ? "" : "~", n, n >= 0.5 && n < 1.5 ? "" : "s");
        ms_text_frames(&o, st, r->pcs, r->npcs, false);
        if (r->truncated) put(&o, "    ... (deeper frames not recorded)\n");
        shown++;
    }
    if (stacks) {
        human(h, sizeof h, bytes);
        put(&o, "memscope: SUMMARY: %s%.0f bytes (%s) in %s%.0f blocks still allocated at exit, from %zu stack%s "
                "(%zu shown)%s\n",
            exact ? "" : "~", bytes, h, exact ? "" : "~", objs, stacks, stacks == 1 ? "" : "s", (size_t)shown,
            exact ? "" : "; estimated from samples, exact with MEMSCOPE=profile_rate=1");
    }
    flush(&o);
    if (st) ms_sym_close(st);
    ms_os_free(ix, ob);
    ms_prof_snap_free(snap);
    ms_no_sample--;
    return (int)(stacks > INT32_MAX ? INT32_MAX : stacks);
}
