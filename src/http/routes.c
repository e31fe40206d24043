/* routes.c: what each path of the live endpoint answers.
 *
 *   /                         the live page (page.c)
 *   /debug/pprof/             index of the profiles, as Go's net/http/pprof
 *   /debug/pprof/heap         in-use profile: gzipped profile.proto, or Go's
 *                             debug=1 text with ?debug=1; ?gc=1 returns idle
 *                             memory first; ?seconds=N the delta over N s
 *   /debug/pprof/allocs       the same samples, alloc_space by default
 *   /debug/pprof/peak         the in-use profile at the high-water mark
 *   /debug/pprof/leaks        a leak check now (src/leak/): blocks nothing
 *                             references, by stack, as profile.proto with
 *                             leaked_* and indirect_* sample types; ?debug=1
 *                             LSan-style text, ?debug=2 the page's JSON
 *   /debug/vars               expvar JSON: "cmdline" and "memstats" with
 *                             Go's MemStats field names
 *   /metrics                  Prometheus text exposition (format 0.0.4)
 *   /debug/memscope/series    the ring of samples behind the page (series.c)
 *   /debug/memscope/profile   stacks and top sites as JSON, for the page
 *   /debug/memscope/top       top allocation sites as JSON (memscope top)
 * Anything else is 404.  The profile routes answer 503 with one line when
 * profiling is off (MEMSCOPE=profile_rate=0).
 *
 * Every route runs on the server thread and writes its body into a memfd
 * through ms_out (a fixed buffer); the profile JSON works in memory mapped
 * for the request (ms_os_alloc) and unmapped after.  Snapshots of the
 * profile are taken with the profiler's own copy-then-release discipline
 * (prof.h), so no allocating thread waits on us for longer than a copy.
 */
#include "http.h"
#include "../leak/leak.h"
#include "../prof/prof.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

_Atomic uint64_t ms_http_requests;

static int path_is(const ms_http_req_t *r, const char *p) {
    return r->path.n == strlen(p) && memcmp(r->path.p, p, r->path.n) == 0;
}

#define CT_TEXT "text/plain; charset=utf-8"
#define CT_HTML "text/html; charset=utf-8"
#define CT_JSON "application/json"

/* ------------------------------------------------------------------------
 * /debug/pprof/...
 * ---------------------------------------------------------------------- */

/* State of a ?seconds=N profile between its two snapshots.  At most one per
 * connection slot, from a static pool (the server thread only). */
typedef struct wait_s {
    bool used;
    prof_snap_t *base;
    int kind, debug;
} wait_t;
static wait_t waits[16];

static const char *const prof_off = "profiling is off (MEMSCOPE=profile_rate=0): no profile to serve\n";

static int profile_route(const ms_http_req_t *req, int kind, int fd, int *status, const char **ctype,
                         void **wait_state) {
    if (!ms_prof_enabled()) {
        ms_write_fd(fd, prof_off, strlen(prof_off));
        *status = 503;
        return 0;
    }
    int debug = (int)ms_http_query_int(req->query, "debug", 0, 2);
    long secs = ms_http_query_int(req->query, "seconds", 0, 60); /* bounded: a slot is held meanwhile */
    if (secs > 0 && debug && kind != PROF_PEAK) {
        /* a delta's counts go below zero, which Go's text format cannot
         * carry: refused as Go's net/http/pprof refuses it */
        static const char msg[] = "seconds and debug params are incompatible\n";
        ms_write_fd(fd, msg, sizeof msg - 1);
        *status = 400;
        *ctype = CT_TEXT;
        return 0;
    }
    if (ms_http_query_int(req->query, "gc", 0, 1)) memscope_free_os_memory();
    *ctype = debug ? CT_TEXT : "application/octet-stream";
    if (secs > 0 && kind != PROF_PEAK) {
        wait_t *w = NULL;
        for (size_t i = 0; i < sizeof waits / sizeof waits[0]; i++)
            if (!waits[i].used) {
                w = &waits[i];
                break;
            }
        prof_snap_t *base = w ? ms_prof_snap_take() : NULL;
        if (!base) {
            static const char msg[] = "cannot take a profile snapshot now\n";
            ms_write_fd(fd, msg, sizeof msg - 1);
            *status = 503;
            *ctype = CT_TEXT;
            return 0;
        }
        *w = (wait_t){true, base, kind, debug};
        *wait_state = w;
        return (int)secs;
    }
    if (ms_prof_write(fd, kind, debug) != 0) {
        static const char msg[] = "writing the profile failed\n";
        if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0) *status = 500;
        ms_write_fd(fd, msg, sizeof msg - 1);
        *status = 500;
        *ctype = CT_TEXT;
        return 0;
    }
    *status = 200;
    return 0;
}

/* leaks_route: runs a check on the server thread (the threads of the
 * program pause for the root copy only; the server is one of memscope's own
 * threads and is never stopped). */
static int leaks_route(const ms_http_req_t *req, int fd, int *status, const char **ctype) {
    int debug = (int)ms_http_query_int(req->query, "debug", 0, 2);
    ms_leak_result_t *r = ms_leak_check(NULL, false); /* the server thread: no program frames */
    if (!r) {
        ms_printf_fd(fd, "leak check: %s\n", ms_leak_why());
        *status = 503;
        *ctype = CT_TEXT;
        return 0;
    }
    int rc;
    if (debug == 1) *ctype = CT_TEXT, rc = ms_leak_write_text(fd, r, 200);
    else if (debug == 2) *ctype = CT_JSON, rc = ms_leak_write_json(fd, r, 50);
    else *ctype = "application/octet-stream", rc = ms_leak_write_pprof(fd, r);
    ms_leak_result_free(r);
    *status = rc == 0 ? 200 : 500;
    return 0;
}

void ms_http_route_finish(void *wait_state, int fd, int *status, const char **ctype, int abandon) {
    wait_t *w = wait_state;
    if (!abandon) {
        prof_snap_t *snap = ms_prof_snap_take();
        int rc = -1;
        if (snap) {
            ms_prof_snap_sub(snap, w->base);
            rc = w->debug ? ms_prof_write_text(fd, snap, w->kind) : ms_prof_write_pprof(fd, snap, w->kind);
            ms_prof_snap_free(snap);
        }
        *status = rc == 0 ? 200 : 500;
        *ctype = rc == 0 ? (w->debug ? CT_TEXT : "application/octet-stream") : CT_TEXT;
        if (rc != 0) {
            static const char msg[] = "writing the profile failed\n";
            ms_write_fd(fd, msg, sizeof msg - 1);
        }
    }
    ms_prof_snap_free(w->base);
    w->used = false;
}

static void pprof_index(ms_out_t *o) {
    ms_out_puts(o,
                "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>/debug/pprof/</title>"
                "<style>body{font-family:sans-serif;margin:2em}td{padding:2px 12px}</style></head><body>\n"
                "<h1>/debug/pprof/</h1>\n<p>memscope heap profiles of this process, in Go's formats.</p>\n<table>\n"
                "<tr><td><a href=\"heap?debug=1\">heap</a></td><td>live objects, by allocating stack "
                "(add ?gc=1 to return idle memory first, ?seconds=N for a delta)</td></tr>\n"
                "<tr><td><a href=\"allocs?debug=1\">allocs</a></td><td>all allocations since start, by stack</td></tr>\n"
                "<tr><td><a href=\"peak?debug=1\">peak</a></td><td>live objects at the heap's high-water mark</td></tr>\n"
                "<tr><td><a href=\"leaks?debug=1\">leaks</a></td><td>a leak check now: blocks nothing references, "
                "by allocating stack</td></tr>\n"
                "</table>\n<p>Without ?debug=1 each is a gzipped profile.proto for "
                "<code>go tool pprof</code> or <code>memscope report</code>.</p>\n"
                "<p>Also: <a href=\"/\">the live page</a>, <a href=\"/metrics\">/metrics</a>, "
                "<a href=\"/debug/vars\">/debug/vars</a>.</p>\n</body></html>\n");
}

/* ------------------------------------------------------------------------
 * /debug/vars and /metrics
 * ---------------------------------------------------------------------- */

static void write_cmdline(ms_out_t *o) {
    static char buf[4096];
    ms_out_puts(o, "\"cmdline\":[");
    int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0) close(fd);
    if (n > 0) {
        buf[n] = 0;
        bool first = true;
        for (char *p = buf; p < buf + n; p += strlen(p) + 1) {
            if (!first) ms_out_puts(o, ",");
            ms_out_json_str(o, p);
            first = false;
        }
    }
    ms_out_puts(o, "]");
}

static void debug_vars(ms_out_t *o) {
    struct memscope_stats st = {.size = sizeof st};
    memscope_read_stats(&st);
    ms_out_puts(o, "{\n");
    write_cmdline(o);
#define U(k, v) ms_out_printf(o, "\"" k "\":%llu,", (unsigned long long)(v))
    ms_out_puts(o, ",\n\"memstats\":{");
    U("Alloc", st.alloc);
    U("TotalAlloc", st.total_alloc);
    U("Sys", st.sys);
    U("Lookups", 0);
    U("Mallocs", st.mallocs);
    U("Frees", st.frees);
    U("HeapAlloc", st.heap_alloc);
    U("HeapSys", st.heap_sys);
    U("HeapIdle", st.heap_idle);
    U("HeapInuse", st.heap_inuse);
    U("HeapReleased", st.heap_released);
    U("HeapObjects", st.heap_objects);
    U("StackInuse", 0);
    U("StackSys", 0);
    U("MSpanInuse", 0);
    U("MSpanSys", 0);
    U("MCacheInuse", 0);
    U("MCacheSys", 0);
    U("BuckHashSys", 0);
    U("GCSys", 0);
    U("OtherSys", st.metadata_sys); /* allocator metadata: keeps Sys = HeapSys + ... + OtherSys */
    U("NextGC", st.next_gc);
    U("LastGC", st.last_gc);
    U("PauseTotalNs", 0);
    ms_out_puts(o, "\"PauseNs\":[");
    for (int i = 0; i < 256; i++) ms_out_puts(o, i ? ",0" : "0");
    ms_out_puts(o, "],\"PauseEnd\":[");
    for (int i = 0; i < 256; i++) ms_out_puts(o, i ? ",0" : "0");
    ms_out_puts(o, "],");
    U("NumGC", st.num_gc);
    U("NumForcedGC", st.num_forced_gc);
    ms_out_puts(o, "\"GCCPUFraction\":0,\"EnableGC\":true,\"DebugGC\":false,\"BySize\":[");
    for (unsigned i = 0; i < st.num_classes && i < MEMSCOPE_BY_SIZE_LEN; i++)
        ms_out_printf(o, "%s{\"Size\":%u,\"Mallocs\":%llu,\"Frees\":%llu}", i ? "," : "", st.by_size[i].size,
                      (unsigned long long)st.by_size[i].mallocs, (unsigned long long)st.by_size[i].frees);
    ms_out_puts(o, "]},\n\"memscope\":{");
    U("rss", st.rss);
    U("max_rss", st.max_rss);
    U("rss_heap_live", st.rss_heap_live);
    U("rss_heap_frag", st.rss_heap_frag);
    U("rss_heap_idle", st.rss_heap_idle);
    U("rss_metadata", st.rss_metadata);
    U("rss_other", st.rss_other);
    U("rss_file", st.rss_file);
    U("num_scavenge", st.num_scavenge);
    U("released_total", st.released_total);
    U("scavenge_delay_ms", st.scavenge_delay_ms);
    ms_out_printf(o, "\"num_threads\":%u,\"profile_rate\":%lld}\n}\n", st.num_threads,
                  (long long)(ms_prof_enabled() ? 1 : 0));
#undef U
}

static void metric(ms_out_t *o, const char *name, const char *type, const char *help, uint64_t v) {
    ms_out_printf(o, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name, (unsigned long long)v);
}

static void metrics(ms_out_t *o) {
    struct memscope_stats st = {.size = sizeof st};
    memscope_read_stats(&st);
    metric(o, "memscope_heap_alloc_bytes", "gauge", "Bytes of allocated heap objects (size-class rounded).",
           st.heap_alloc);
    metric(o, "memscope_heap_sys_bytes", "gauge", "Bytes of heap address space obtained from the OS.", st.heap_sys);
    metric(o, "memscope_heap_inuse_bytes", "gauge", "Bytes in spans in use.", st.heap_inuse);
    metric(o, "memscope_heap_idle_bytes", "gauge", "Bytes in free page runs, released or not.", st.heap_idle);
    metric(o, "memscope_heap_released_bytes", "gauge", "Bytes of idle pages returned to the OS.",
           st.heap_released);
    metric(o, "memscope_heap_objects", "gauge", "Live heap objects.", st.heap_objects);
    metric(o, "memscope_sys_bytes", "gauge", "Bytes obtained from the OS (heap and metadata).", st.sys);
    metric(o, "memscope_metadata_sys_bytes", "gauge", "Bytes of allocator metadata obtained from the OS.",
           st.metadata_sys);
    metric(o, "memscope_metadata_inuse_bytes", "gauge", "Bytes of allocator metadata in use.", st.metadata_inuse);
    metric(o, "memscope_next_gc_bytes", "gauge", "In-use heap bytes that end the current heap cycle.", st.next_gc);
    ms_out_printf(o,
                  "# HELP memscope_last_gc_time_seconds End of the last heap cycle, seconds since the epoch (0: "
                  "none).\n# TYPE memscope_last_gc_time_seconds gauge\nmemscope_last_gc_time_seconds %llu.%09llu\n",
                  (unsigned long long)(st.last_gc / 1000000000), (unsigned long long)(st.last_gc % 1000000000));
    metric(o, "memscope_alloc_bytes_total", "counter", "Cumulative bytes allocated.", st.total_alloc);
    metric(o, "memscope_mallocs_total", "counter", "Cumulative count of heap objects allocated.", st.mallocs);
    metric(o, "memscope_frees_total", "counter", "Cumulative count of heap objects freed.", st.frees);
    metric(o, "memscope_gc_cycles_total", "counter", "Completed heap cycles.", st.num_gc);
    metric(o, "memscope_gc_cycles_forced_total", "counter", "Heap cycles forced by memscope_free_os_memory.",
           st.num_forced_gc);
    metric(o, "memscope_scavenge_passes_total", "counter", "Scavenger passes that released memory.",
           st.num_scavenge);
    metric(o, "memscope_released_bytes_total", "counter", "Cumulative bytes returned to the OS.",
           st.released_total);
    ms_out_puts(o, "# HELP memscope_rss_bytes Resident memory by part: heap_live + heap_frag + heap_idle + "
                   "metadata + other = total.\n# TYPE memscope_rss_bytes gauge\n");
    static const char *parts[] = {"heap_live", "heap_frag", "heap_idle", "metadata", "other"};
    uint64_t pv[] = {st.rss_heap_live, st.rss_heap_frag, st.rss_heap_idle, st.rss_metadata, st.rss_other};
    for (int i = 0; i < 5; i++)
        ms_out_printf(o, "memscope_rss_bytes{part=\"%s\"} %llu\n", parts[i], (unsigned long long)pv[i]);
    metric(o, "memscope_max_rss_bytes", "gauge", "Peak resident set size (VmHWM).", st.max_rss);
    metric(o, "memscope_threads", "gauge", "Threads with a live thread cache.", st.num_threads);
    metric(o, "memscope_http_requests_total", "counter", "Requests answered by this endpoint.",
           atomic_load(&ms_http_requests));
    metric(o, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", st.rss);
}

/* ------------------------------------------------------------------------
 * /debug/memscope/profile and /debug/memscope/top: JSON from a snapshot
 * ---------------------------------------------------------------------- */

/* One allocation site: the innermost frame of a stack (the function that
 * called malloc, after inlining), with its stacks' estimated totals. */
typedef struct site_s {
    const char *name, *file;
    uintptr_t pc;         /* for a name-less frame */
    int line;
    double v[6];          /* inuse bytes, inuse objects, alloc bytes, alloc objects, peak bytes, peak objects */
    uint32_t hash;
    bool used, mark;
} site_t;

enum { V_IB, V_IO, V_AB, V_AO, V_PB, V_PO };

static void rec_values(const prof_rec_t *r, double v[6]) {
    v[V_IB] = r->now.alloc_bytes_w - r->now.free_bytes_w;
    v[V_IO] = r->now.alloc_objs_w - r->now.free_objs_w;
    v[V_AB] = r->now.alloc_bytes_w;
    v[V_AO] = r->now.alloc_objs_w;
    v[V_PB] = r->peak.alloc_bytes_w - r->peak.free_bytes_w;
    v[V_PO] = r->peak.alloc_objs_w - r->peak.free_objs_w;
    for (int i = 0; i < 6; i++)
        if (v[i] < 0) v[i] = 0;
}

static uint32_t hash_str(uint32_t h, const char *s) {
    for (; s && *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static bool streq0(const char *a, const char *b) { return a == b || (a && b && strcmp(a, b) == 0); }

/* Work memory for one request, mapped and unmapped around it. */
typedef struct work_s {
    site_t *sites;
    size_t nsites, cap;  /* cap: a power of two, open addressing */
    uint32_t *order;     /* indices, for sorting */
    size_t map_bytes;
    symtab_t *sym;
    prof_snap_t *snap;   /* what the sites are built from */
} work_t;

static void frame_of(work_t *w, uintptr_t pc, sym_frame_t *f) {
    sym_frame_t fr[8];
    int n = ms_sym_lookup(w->sym, pc ? pc - 1 : 0, fr, 8);
    if (n <= 0) *f = (sym_frame_t){.map = -1};
    else *f = fr[0]; /* the innermost (inlined) function at this pc */
}

static site_t *site_get(work_t *w, const sym_frame_t *f, uintptr_t pc) {
    const char *name = f->pretty ? f->pretty : f->name;
    uint32_t h = hash_str(hash_str(2166136261u, name), f->file) ^ (uint32_t)f->line * 2654435761u;
    if (!name) h ^= (uint32_t)(pc >> 4) * 2246822519u;
    for (size_t i = h & (w->cap - 1);; i = (i + 1) & (w->cap - 1)) {
        site_t *s = &w->sites[i];
        if (!s->used) {
            if (w->nsites + 1 >= w->cap / 2) return NULL; /* full: the rest is not listed */
            *s = (site_t){.name = name, .file = f->file, .line = f->line, .pc = name ? 0 : pc, .hash = h, .used = true};
            w->nsites++;
            return s;
        }
        if (s->hash == h && streq0(s->name, name) && streq0(s->file, f->file) && s->line == f->line &&
            (name || s->pc == pc))
            return s;
    }
}

/* sort_desc: heap sort of idx[0, n) by key, largest first (libc's qsort
 * may allocate). */
static void sort_desc(uint32_t *idx, size_t n, const site_t *s, int key) {
#define LESS(a, b) (s[idx[a]].v[key] < s[idx[b]].v[key]) /* a min-heap: popping to the end leaves descending order */
    for (size_t start = n / 2; start-- > 0;) {
        for (size_t r = start;;) {
            size_t c = 2 * r + 1;
            if (c >= n) break;
            if (c + 1 < n && LESS(c + 1, c)) c++;
            if (!LESS(c, r)) break;
            uint32_t t = idx[r]; idx[r] = idx[c]; idx[c] = t; r = c;
        }
    }
    for (size_t end = n; end-- > 1;) {
        uint32_t t = idx[0]; idx[0] = idx[end]; idx[end] = t;
        for (size_t r = 0;;) {
            size_t c = 2 * r + 1;
            if (c >= end) break;
            if (c + 1 < end && LESS(c + 1, c)) c++;
            if (!LESS(c, r)) break;
            t = idx[r]; idx[r] = idx[c]; idx[c] = t; r = c;
        }
    }
#undef LESS
}

static bool work_open(work_t *w, const prof_snap_t *snap) {
    memset(w, 0, sizeof *w);
    size_t cap = 1024;
    while (cap < snap->nrecs * 2 + 64 && cap < ((size_t)1 << 22)) cap <<= 1;
    size_t recs = snap->nrecs > cap ? snap->nrecs : cap;
    w->map_bytes = cap * sizeof(site_t) + recs * sizeof(uint32_t);
    w->map_bytes = (w->map_bytes + 4095) & ~(size_t)4095;
    char *m = ms_os_alloc(w->map_bytes);
    if (!m) return false;
    w->sites = (site_t *)m;
    w->cap = cap;
    w->order = (uint32_t *)(m + cap * sizeof(site_t));
    w->sym = ms_sym_open();
    return w->sym != NULL;
}

static void work_close(work_t *w) {
    if (w->sym) ms_sym_close(w->sym);
    if (w->sites) ms_os_free(w->sites, w->map_bytes);
}

static void build_sites(work_t *w, const prof_snap_t *snap) {
    for (size_t i = 0; i < snap->nrecs; i++) {
        const prof_rec_t *r = &snap->recs[i];
        sym_frame_t f;
        uintptr_t pc = r->npcs ? r->pcs[0] : 0;
        frame_of(w, pc, &f);
        site_t *s = site_get(w, &f, pc);
        if (!s) continue;
        double v[6];
        rec_values(r, v);
        for (int k = 0; k < 6; k++) s->v[k] += v[k];
    }
}

/* work_begin: a snapshot of the profile, with its sites built and symbolized;
 * NULL (nothing held) if profiling is off or memory is refused.  Every
 * work_begin that returns a snapshot is ended by work_end. */
static prof_snap_t *work_begin(work_t *w) {
    memset(w, 0, sizeof *w);
    prof_snap_t *snap = ms_prof_snap_take();
    if (!snap) return NULL;
    if (!work_open(w, snap)) {
        work_close(w);
        ms_prof_snap_free(snap);
        return NULL;
    }
    w->snap = snap;
    build_sites(w, snap);
    return snap;
}

static void work_end(work_t *w) {
    work_close(w);
    ms_prof_snap_free(w->snap);
}

static void site_json(ms_out_t *o, const site_t *s) {
    char hexname[32];
    ms_out_puts(o, "{\"func\":");
    if (s->name) ms_out_json_str(o, s->name);
    else {
        ms_snprintf(hexname, sizeof hexname, "%p", (void *)s->pc);
        ms_out_json_str(o, hexname);
    }
    ms_out_puts(o, ",\"file\":");
    ms_out_json_str(o, s->file ? s->file : "");
    ms_out_printf(o, ",\"line\":%d,\"inuse_bytes\":%.0f,\"inuse_objects\":%.0f,\"alloc_bytes\":%.0f,"
                     "\"alloc_objects\":%.0f,\"peak_bytes\":%.0f,\"peak_objects\":%.0f}",
                  s->line, s->v[V_IB], s->v[V_IO], s->v[V_AB], s->v[V_AO], s->v[V_PB], s->v[V_PO]);
}

static size_t used_sites(work_t *w) {
    size_t n = 0;
    for (size_t i = 0; i < w->cap; i++)
        if (w->sites[i].used) w->order[n++] = (uint32_t)i;
    return n;
}

/* /debug/memscope/top?by=inuse|alloc|peak&n=N */
static int top_json(const ms_http_req_t *req, ms_out_t *o) {
    work_t w;
    prof_snap_t *snap = work_begin(&w);
    if (!snap) return 503;
    int key = ms_http_query_eq(req->query, "by", "alloc") ? V_AB : ms_http_query_eq(req->query, "by", "peak") ? V_PB : V_IB;
    long n = ms_http_query_int(req->query, "n", 20, 1000);
    size_t m = used_sites(&w);
    sort_desc(w.order, m, w.sites, key);
    ms_out_printf(o, "{\"by\":\"%s\",\"rate\":%lld,\"peak_bytes\":%llu,\"sites\":[\n",
                  key == V_AB ? "alloc" : key == V_PB ? "peak" : "inuse", (long long)snap->rate,
                  (unsigned long long)snap->peak_bytes);
    for (size_t i = 0; i < m && (long)i < n; i++) {
        if (i) ms_out_puts(o, ",\n");
        site_json(o, &w.sites[w.order[i]]);
    }
    ms_out_puts(o, "\n]}\n");
    work_end(&w);
    return 200;
}

/* /debug/memscope/profile: the stacks with the most in-use bytes (for the
 * flame graph; MS_FLAME_STACKS at most, root last in "f"), and the sites in
 * the top 100 by any of in-use, allocated and peak (for the table). */
#define MS_FLAME_STACKS 3000
static int profile_json(ms_out_t *o) {
    work_t w;
    prof_snap_t *snap = work_begin(&w);
    if (!snap) return 503;
    size_t m = used_sites(&w);
    for (int key = V_IB; key <= V_PB; key += 2) {
        sort_desc(w.order, m, w.sites, key);
        for (size_t i = 0; i < m && i < 100; i++) w.sites[w.order[i]].mark = true;
    }
    ms_out_printf(o, "{\"rate\":%lld,\"time_ns\":%llu,\"peak_bytes\":%llu,\"peak_time_ns\":%llu,\"sites\":[\n",
                  (long long)snap->rate, (unsigned long long)snap->time_ns, (unsigned long long)snap->peak_bytes,
                  (unsigned long long)snap->peak_time_ns);
    bool first = true;
    for (size_t i = 0; i < m; i++) {
        if (!w.sites[w.order[i]].mark) continue;
        if (!first) ms_out_puts(o, ",\n");
        site_json(o, &w.sites[w.order[i]]);
        first = false;
    }
    /* The stacks: reuse the site table's sort by treating each record as a
     * pseudo-site keyed by in-use bytes (the table is rebuilt below). */
    size_t nr = snap->nrecs, keep = 0;
    for (size_t i = 0; i < nr && keep < w.cap; i++) {
        double v[6];
        rec_values(&snap->recs[i], v);
        if (v[V_IB] <= 0) continue;
        w.sites[keep] = (site_t){.v = {v[0], v[1], v[2], v[3], v[4], v[5]}, .pc = i, .used = true};
        w.order[keep] = (uint32_t)keep;
        keep++;
    }
    sort_desc(w.order, keep, w.sites, V_IB);
    ms_out_puts(o, "\n],\"stacks\":[\n");
    sym_frame_t fr[8];
    char hexname[32];
    for (size_t k = 0; k < keep && k < MS_FLAME_STACKS; k++) {
        const site_t *ps = &w.sites[w.order[k]];
        const prof_rec_t *r = &snap->recs[ps->pc];
        ms_out_printf(o, "%s{\"ib\":%.0f,\"io\":%.0f,\"f\":[", k ? ",\n" : "", ps->v[V_IB], ps->v[V_IO]);
        bool ff = true;
        for (uint32_t j = 0; j < r->npcs; j++) {
            int nf = ms_sym_lookup(w.sym, r->pcs[j] ? r->pcs[j] - 1 : 0, fr, 8);
            for (int q = 0; q < nf; q++) {
                const char *name = fr[q].pretty ? fr[q].pretty : fr[q].name;
                if (!ff) ms_out_puts(o, ",");
                ff = false;
                if (name) ms_out_json_str(o, name);
                else {
                    ms_snprintf(hexname, sizeof hexname, "%p", (void *)r->pcs[j]);
                    ms_out_json_str(o, hexname);
                }
            }
        }
        ms_out_puts(o, "]}");
    }
    ms_out_puts(o, "\n]}\n");
    work_end(&w);
    return 200;
}

/* ------------------------------------------------------------------------
 * The table of routes
 * ---------------------------------------------------------------------- */

/* bad_query: the parameter of the query whose value no route takes, or
 * NULL.  A value out of range was once read as the default (or clamped)
 * and answered 200, so a client's mistake went unnoticed. */
static const char *bad_query(const ms_http_req_t *req) {
    static const struct {
        const char *key;
        long max;
    } nums[] = {{"debug", 2}, {"seconds", 60}, {"gc", 1}, {"n", 100000}};
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++)
        if (!ms_http_query_valid(req->query, nums[i].key, nums[i].max)) return nums[i].key;
    if (!ms_http_query_valid(req->query, "by", 0) && !ms_http_query_eq(req->query, "by", "inuse") &&
        !ms_http_query_eq(req->query, "by", "alloc") && !ms_http_query_eq(req->query, "by", "peak"))
        return "by";
    return NULL;
}

int ms_http_route(const ms_http_req_t *req, int fd, int *status, const char **ctype, void **wait_state) {
    static ms_out_t out; /* the server thread only */
    ms_out_t *o = &out;
    ms_out_init(o, fd);
    *status = 200;
    *ctype = CT_TEXT;
    *wait_state = NULL;
    const char *bad = bad_query(req);
    if (bad) {
        *status = 400;
        ms_out_printf(o, "bad value for ?%s= (debug: 0-2, seconds: 0-60, gc: 0 or 1, n: a whole number, by: "
                         "inuse, alloc or peak)\n", bad);
    } else if (path_is(req, "/")) {
        *ctype = CT_HTML;
        ms_out_write(o, ms_http_page, ms_http_page_len);
    } else if (path_is(req, "/debug/pprof/") || path_is(req, "/debug/pprof")) {
        *ctype = CT_HTML;
        pprof_index(o);
    } else if (path_is(req, "/debug/pprof/heap")) {
        return profile_route(req, PROF_HEAP, fd, status, ctype, wait_state);
    } else if (path_is(req, "/debug/pprof/allocs")) {
        return profile_route(req, PROF_ALLOCS, fd, status, ctype, wait_state);
    } else if (path_is(req, "/debug/pprof/peak")) {
        return profile_route(req, PROF_PEAK, fd, status, ctype, wait_state);
    } else if (path_is(req, "/debug/pprof/leaks")) {
        return leaks_route(req, fd, status, ctype);
    } else if (path_is(req, "/debug/vars")) {
        *ctype = CT_JSON;
        debug_vars(o);
    } else if (path_is(req, "/metrics")) {
        *ctype = "text/plain; version=0.0.4; charset=utf-8";
        metrics(o);
    } else if (path_is(req, "/debug/memscope/series")) {
        *ctype = CT_JSON;
        ms_series_write_json(o, ms_http_query_int(req->query, "n", 0, MS_SERIES_LEN));
    } else if (path_is(req, "/debug/memscope/profile") || path_is(req, "/debug/memscope/top")) {
        int st = ms_prof_enabled() ? (path_is(req, "/debug/memscope/top") ? top_json(req, o) : profile_json(o)) : 503;
        if (st != 200) {
            ms_out_init(o, fd);
            if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0) fd = -1;
            *status = 503;
            ms_out_puts(o, ms_prof_enabled() ? "cannot take a profile snapshot now\n" : prof_off);
        } else {
            *ctype = CT_JSON;
        }
    } else {
        *status = 404;
        ms_out_puts(o, "404 page not found\n");
    }
    if (ms_out_flush(o) != 0) *status = 500;
    return 0;
}
