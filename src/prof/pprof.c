/* pprof.c: the heap profile in pprof's format (profile.proto, gzipped).
 *
 * The format is github.com/google/pprof's profile.proto, the one that
 * `go tool pprof`, Parca, Grafana Pyroscope and speedscope read.  A
 * memscope heap profile has Go's four sample types, alloc_objects/count,
 * alloc_space/bytes, inuse_objects/count and inuse_space/bytes, plus two
 * of its own, peak_objects/count and peak_space/bytes: what each stack held
 * when the heap's in-use estimate was at its high-water mark.  The period
 * type is space/bytes and the period is profile_rate, as in Go.  Values are
 * the unbiased estimates of sample.c (each sample weighted by
 * 1/(1-exp(-size/rate))), rounded; each sample carries Go's numeric label
 * "bytes", the average block size of its stack.  The three profiles that
 * memscope serves differ only in default_sample_type: inuse_space (heap),
 * alloc_space (allocs), peak_space (peak).
 *
 * Symbols are resolved here, in the process, so a profile reads on any
 * machine: every location carries its function (the linkage name as
 * system_name, the demangled one as name), file and line, with inlined
 * callers as extra lines; mappings carry the file's build ID so pprof can
 * also symbolize by itself.  A location's address is the return address
 * minus one, inside the call instruction, as Go writes it.
 *
 * Encoding is by hand, into buffers mapped for the purpose: the encoder
 * runs inside the profiled process, so it must not allocate from the heap it
 * describes.  For the same reason zlib gets allocation functions that map
 * pages.  Varints, length-delimited submessages and packed repeated fields
 * are all this needs.
 */
#include "prof.h"

#include <dlfcn.h>
#include <pthread.h>
#include <string.h>
#include <zlib.h>

/* ------------------------------------------------------------------------
 * Growable buffers in mapped pages
 * ---------------------------------------------------------------------- */

typedef struct pbuf_s {
    uint8_t *p;
    size_t len, cap;
    bool oom;
} pbuf_t;

/* grow: makes room for `need` more bytes; false (and b->oom) if refused. */
static bool grow(pbuf_t *b, size_t need) {
    if (b->len + need <= b->cap) return true;
    if (b->oom) return false;
    size_t cap = b->cap ? b->cap * 2 : 64 << 10;
    while (cap < b->len + need) cap *= 2;
    uint8_t *p = ms_os_alloc(cap);
    if (!p) return b->oom = true, false;
    if (b->len) memcpy(p, b->p, b->len);
    ms_os_free(b->p, b->cap);
    b->p = p, b->cap = cap;
    return true;
}

static void pb_free(pbuf_t *b) {
    ms_os_free(b->p, b->cap);
    *b = (pbuf_t){0};
}

static void pb_bytes(pbuf_t *b, const void *src, size_t n) {
    if (n == 0 || !grow(b, n)) return; /* memcpy from NULL is undefined even for 0 bytes (UBSan) */
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void pb_varint(pbuf_t *b, uint64_t v) {
    if (!grow(b, 10)) return;
    while (v >= 0x80) b->p[b->len++] = (uint8_t)(v | 0x80), v >>= 7;
    b->p[b->len++] = (uint8_t)v;
}

static void pb_key(pbuf_t *b, int field, int wire) { pb_varint(b, (uint64_t)field << 3 | (uint64_t)wire); }
static void pb_uint(pbuf_t *b, int field, uint64_t v) {
    if (v) pb_key(b, field, 0), pb_varint(b, v);
}
static void pb_bool(pbuf_t *b, int field, bool v) { pb_uint(b, field, v); }
static void pb_lenprefixed(pbuf_t *b, int field, const void *p, size_t n) {
    pb_key(b, field, 2);
    pb_varint(b, n);
    pb_bytes(b, p, n);
}
static void pb_msg(pbuf_t *b, int field, pbuf_t *sub) {
    pb_lenprefixed(b, field, sub->p, sub->len);
    sub->len = 0;
}

/* ------------------------------------------------------------------------
 * Tables: strings, functions, locations (open addressing on mapped pages)
 * ---------------------------------------------------------------------- */

typedef struct strent_s { const char *s; uint32_t len; uint32_t idx; } strent_t;
typedef struct funcent_s { uint32_t name, sys, file, id; } funcent_t;
typedef struct locent_s { uintptr_t pc; uint32_t id; } locent_t;

typedef struct enc_s {
    pbuf_t out, sub, sub2, sub3, locs, funcs, strs;
    strent_t *strtab; size_t strcap, nstr;
    funcent_t *ftab; size_t fcap, nfunc;
    locent_t *ltab; size_t lcap, nloc;
    bool *map_named;
    symtab_t *sym;
} enc_t;

static uint64_t hash_mem(const void *p, size_t n, uint64_t h) {
    const uint8_t *c = p;
    for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * 0x100000001b3ull;
    return h;
}

/* table_grow: doubles an open-addressing table whose entries start with a
 * nonzero key word at offset `keyoff`; rehash by `hashf`. */
static bool table_grow(void **tab, size_t *cap, size_t elem, uint64_t (*hashf)(const void *)) {
    size_t nc = *cap ? *cap * 2 : 1024;
    uint8_t *t = ms_os_alloc(nc * elem);
    if (!t) return false;
    for (size_t i = 0; i < *cap; i++) {
        const uint8_t *e = (const uint8_t *)*tab + i * elem;
        if (!*(const uintptr_t *)e) continue;
        size_t j = hashf(e) & (nc - 1);
        while (*(uintptr_t *)(t + j * elem)) j = (j + 1) & (nc - 1);
        memcpy(t + j * elem, e, elem);
    }
    ms_os_free(*tab, *cap * elem);
    *tab = t, *cap = nc;
    return true;
}

static uint64_t str_hash(const void *e) {
    const strent_t *s = e;
    return hash_mem(s->s, s->len, 0xcbf29ce484222325ull);
}
static uint64_t func_hash(const void *e) {
    const funcent_t *f = e;
    return hash_mem(&f->name, 3 * sizeof(uint32_t), 0xcbf29ce484222325ull);
}
static uint64_t loc_hash(const void *e) { return ((const locent_t *)e)->pc * 0x9E3779B97F4A7C15ull >> 17; }

/* str: the string table index of s (added if new); "" is index 0. */
static uint32_t str(enc_t *e, const char *s) {
    if (!s || !*s) return 0;
    if ((e->nstr + 1) * 2 > e->strcap &&
        !table_grow((void **)&e->strtab, &e->strcap, sizeof(strent_t), str_hash))
        return 0;
    strent_t key = {s, (uint32_t)strlen(s), 0};
    size_t j = str_hash(&key) & (e->strcap - 1);
    for (; e->strtab[j].s; j = (j + 1) & (e->strcap - 1))
        if (e->strtab[j].len == key.len && memcmp(e->strtab[j].s, s, key.len) == 0) return e->strtab[j].idx;
    key.idx = (uint32_t)++e->nstr;
    e->strtab[j] = key;
    pb_lenprefixed(&e->strs, 6, s, key.len);
    return key.idx;
}

static uint32_t func(enc_t *e, const sym_frame_t *f) {
    funcent_t key = {str(e, f->pretty ? f->pretty : f->name), str(e, f->name), str(e, f->file), 0};
    if ((e->nfunc + 1) * 2 > e->fcap && !table_grow((void **)&e->ftab, &e->fcap, sizeof(funcent_t), func_hash))
        return 0;
    /* the key word may be 0 (no name): store name+1 in the first slot so 0 means empty */
    key.name++;
    size_t j = func_hash(&key) & (e->fcap - 1);
    for (; e->ftab[j].name; j = (j + 1) & (e->fcap - 1))
        if (e->ftab[j].name == key.name && e->ftab[j].sys == key.sys && e->ftab[j].file == key.file)
            return e->ftab[j].id;
    key.id = (uint32_t)++e->nfunc;
    e->ftab[j] = key;
    pbuf_t *m = &e->sub2;
    pb_uint(m, 1, key.id);
    pb_uint(m, 2, key.name - 1);
    pb_uint(m, 3, key.sys);
    pb_uint(m, 4, key.file);
    pb_msg(&e->funcs, 5, m);
    return key.id;
}

/* loc: the location id for return address pc, symbolized on first sight. */
static uint32_t loc(enc_t *e, uintptr_t pc) {
    if ((e->nloc + 1) * 2 > e->lcap && !table_grow((void **)&e->ltab, &e->lcap, sizeof(locent_t), loc_hash))
        return 0;
    locent_t key = {pc, 0};
    size_t j = loc_hash(&key) & (e->lcap - 1);
    for (; e->ltab[j].pc; j = (j + 1) & (e->lcap - 1))
        if (e->ltab[j].pc == pc) return e->ltab[j].id;
    key.id = (uint32_t)++e->nloc;
    e->ltab[j] = key;

    sym_frame_t fr[8];
    int n = e->sym ? ms_sym_lookup(e->sym, pc - 1, fr, 8) : 0;
    int map = n > 0 ? fr[n - 1].map : -1;
    pbuf_t *m = &e->sub;
    pb_uint(m, 1, key.id);
    if (map >= 0) pb_uint(m, 2, (uint64_t)map + 1);
    pb_uint(m, 3, pc - 1);
    for (int i = 0; i < n; i++) {
        if (!fr[i].name && !fr[i].file) continue;
        pbuf_t *l = &e->sub2;
        pb_uint(l, 1, func(e, &fr[i]));
        pb_uint(l, 2, (uint64_t)(fr[i].line > 0 ? fr[i].line : 0));
        pb_msg(m, 4, l);
        if (map >= 0 && e->map_named) e->map_named[map] = true;
    }
    pb_msg(&e->locs, 4, m);
    return key.id;
}

/* ------------------------------------------------------------------------
 * The profile
 * ---------------------------------------------------------------------- */

static int64_t est(double v) { return v > 0 ? (int64_t)(v + 0.5) : 0; } /* no libm: fmath.c */

/* values: the six sample values of r, in sample-type order. */
static void values(const prof_rec_t *r, int64_t v[6]) {
    const prof_counts_t *c = &r->now, *p = &r->peak;
    v[0] = est(c->alloc_objs_w);
    v[1] = est(c->alloc_bytes_w);
    v[2] = est(c->alloc_objs_w - c->free_objs_w);
    v[3] = est(c->alloc_bytes_w - c->free_bytes_w);
    v[4] = est(p->alloc_objs_w - p->free_objs_w);
    v[5] = est(p->alloc_bytes_w - p->free_bytes_w);
}

static void value_type(enc_t *e, int field, const char *type, const char *unit) {
    pbuf_t *m = &e->sub;
    pb_uint(m, 1, str(e, type));
    pb_uint(m, 2, str(e, unit));
    pb_msg(&e->out, field, m);
}

/* mappings_and_tables: every mapping of the symtab (the ones whose
 * locations were named marked as symbolized), then the locations and
 * functions collected while the samples were written. */
static void mappings_and_tables(enc_t *e) {
    int nmaps = e->sym ? ms_sym_nmaps(e->sym) : 0;
    for (int i = 0; i < nmaps; i++) {
        const sym_map_t *mp = ms_sym_map(e->sym, i);
        pbuf_t *m = &e->sub;
        pb_uint(m, 1, (uint64_t)i + 1);
        pb_uint(m, 2, mp->start);
        pb_uint(m, 3, mp->limit);
        pb_uint(m, 4, mp->offset);
        pb_uint(m, 5, str(e, mp->path));
        pb_uint(m, 6, str(e, mp->build_id));
        bool named = e->map_named && e->map_named[i];
        pb_bool(m, 7, named);
        pb_bool(m, 8, named);
        pb_bool(m, 9, named);
        pb_bool(m, 10, named);
        pb_msg(&e->out, 3, m);
    }
    pb_bytes(&e->out, e->locs.p, e->locs.len);
    pb_bytes(&e->out, e->funcs.p, e->funcs.len);
}

/* encode: the uncompressed profile of snap into e->out. */
static void encode(enc_t *e, const prof_snap_t *snap, int kind) {
    static const char *const types[6][2] = {{"alloc_objects", "count"}, {"alloc_space", "bytes"},
                                            {"inuse_objects", "count"}, {"inuse_space", "bytes"},
                                            {"peak_objects", "count"},  {"peak_space", "bytes"}};
    for (int i = 0; i < 6; i++) value_type(e, 1, types[i][0], types[i][1]);
    uint32_t bytes_key = str(e, "bytes");

    for (size_t i = 0; i < snap->nrecs; i++) {
        const prof_rec_t *r = &snap->recs[i];
        int64_t v[6];
        values(r, v);
        if (!(v[0] | v[1] | v[2] | v[3] | v[4] | v[5])) continue;
        uint64_t ids[MS_PROF_MAX_DEPTH];
        uint32_t n = 0;
        for (uint32_t k = ms_sym_first_frame(e->sym, r->pcs, r->npcs); k < r->npcs; k++) ids[n++] = loc(e, r->pcs[k]);
        pbuf_t *m = &e->sub, *p = &e->sub2;
        for (uint32_t k = 0; k < n; k++) pb_varint(p, ids[k]);
        pb_msg(m, 1, p);
        for (int k = 0; k < 6; k++) pb_varint(p, (uint64_t)v[k]);
        pb_msg(m, 2, p);
        if (r->now.alloc_objs) { /* label bytes = average block size, as Go writes */
            pbuf_t *lab = &e->sub3;
            pb_uint(lab, 1, bytes_key);
            pb_uint(lab, 3, r->now.alloc_bytes / r->now.alloc_objs);
            pb_msg(m, 3, lab);
        }
        pb_msg(&e->out, 2, m);
    }

    mappings_and_tables(e);

    char comment[160];
    ms_snprintf(comment, sizeof comment, "memscope heap profile; peak in-use estimate %llu bytes",
                (unsigned long long)snap->peak_bytes);
    uint32_t ci = str(e, comment);
    uint32_t space = str(e, "space"), pbytes = str(e, "bytes");
    uint32_t def = str(e, kind == PROF_ALLOCS ? "alloc_space" : kind == PROF_PEAK ? "peak_space" : "inuse_space");
    pb_key(&e->out, 6, 2), pb_varint(&e->out, 0); /* string_table[0] = "" */
    pb_bytes(&e->out, e->strs.p, e->strs.len);
    pb_uint(&e->out, 9, snap->time_ns);
    pbuf_t *m = &e->sub;
    pb_uint(m, 1, space);
    pb_uint(m, 2, pbytes);
    pb_msg(&e->out, 11, m);
    pb_uint(&e->out, 12, (uint64_t)snap->rate);
    pb_key(&e->out, 13, 0), pb_varint(&e->out, ci);
    pb_uint(&e->out, 14, def);
}

/* encode_custom: a profile of caller-given samples and sample types (the
 * leak checker's /debug/pprof/leaks), same tables and mappings as encode. */
static void encode_custom(enc_t *e, const prof_custom_t *c) {
    for (int i = 0; i < c->ntypes; i++) value_type(e, 1, c->types[i][0], c->types[i][1]);
    for (size_t i = 0; i < c->n; i++) {
        const prof_csample_t *r = &c->samples[i];
        uint64_t ids[MS_PROF_MAX_DEPTH];
        uint32_t n = 0;
        for (uint32_t k = r->npcs ? ms_sym_first_frame(e->sym, r->pcs, r->npcs) : 0; k < r->npcs; k++)
            ids[n++] = loc(e, r->pcs[k]);
        pbuf_t *m = &e->sub, *p = &e->sub2;
        for (uint32_t k = 0; k < n; k++) pb_varint(p, ids[k]);
        pb_msg(m, 1, p);
        for (int k = 0; k < c->ntypes; k++) pb_varint(p, (uint64_t)r->v[k]);
        pb_msg(m, 2, p);
        pb_msg(&e->out, 2, m);
    }
    mappings_and_tables(e);
    uint32_t ci = str(e, c->comment);
    uint32_t pt = str(e, c->period_type[0]), pu = str(e, c->period_type[1]);
    uint32_t def = str(e, c->default_type);
    pb_key(&e->out, 6, 2), pb_varint(&e->out, 0); /* string_table[0] = "" */
    pb_bytes(&e->out, e->strs.p, e->strs.len);
    pb_uint(&e->out, 9, c->time_ns);
    pbuf_t *m = &e->sub;
    pb_uint(m, 1, pt);
    pb_uint(m, 2, pu);
    pb_msg(&e->out, 11, m);
    pb_uint(&e->out, 12, (uint64_t)c->period);
    pb_key(&e->out, 13, 0), pb_varint(&e->out, ci);
    pb_uint(&e->out, 14, def);
}

/* ------------------------------------------------------------------------
 * gzip
 * ---------------------------------------------------------------------- */

static voidpf z_alloc(voidpf opaque, uInt items, uInt size) {
    (void)opaque;
    size_t n = (size_t)items * size + 16;
    size_t *p = ms_os_alloc(n);
    if (!p) return Z_NULL;
    p[0] = n;
    return p + 2;
}

static void z_free(voidpf opaque, voidpf addr) {
    (void)opaque;
    size_t *p = (size_t *)addr - 2;
    ms_os_free(p, p[0]);
}

/* zlib is loaded on the first profile written, not with memscope: most
 * programs never write one, and a library loaded at start costs every
 * process its relocated pages (84 KiB of RSS here).  Its soname is part of
 * its ABI, as for libdw in symbolize.c. */
static struct {
    int (*init2)(z_streamp, int, int, int, int, int, const char *, int);
    int (*deflate)(z_streamp, int);
    int (*end)(z_streamp);
} zl;
static pthread_once_t zl_once = PTHREAD_ONCE_INIT;

/* zl_load: the zlib to deflate with.  All three functions must come from
 * one zlib, and so must the calls they make to each other: node exports a
 * zlib of its own (deflateReset, ...), and libz.so.1's deflateInit2_,
 * loaded here beside it, reached node's deflateReset through the program's
 * symbol scope, with another layout of the state: every gzipped profile of
 * node crashed it (a helper session).  So a zlib the program's scope
 * already has (its own, or a libz.so.1 it loaded) is used as it is;
 * otherwise libz.so.1 is loaded with its calls bound inside it
 * (RTLD_DEEPBIND; it allocates through z_alloc here, never through
 * malloc, so nothing else changes).  A libz.so.1 loaded already (libdw
 * loads one, RTLD_LOCAL) keeps the binding it has: if the program's scope
 * has any function the deflate path calls by name, it is not used, and
 * neither is a zlib that cannot be loaded; profiles are then written as
 * gzip's stored blocks (stored_write), valid and uncompressed. */
static const char *const zl_inner[] = {"deflateReset", "deflateResetKeep", "deflateSetHeader", "crc32", "adler32"};

static void zl_load(void) {
    void *h = RTLD_DEFAULT;
    if (!dlsym(h, "deflateInit2_") || !dlsym(h, "deflate") || !dlsym(h, "deflateEnd")) {
        if (dlopen("libz.so.1", RTLD_NOW | RTLD_NOLOAD))
            for (size_t i = 0; i < sizeof zl_inner / sizeof zl_inner[0]; i++)
                if (dlsym(RTLD_DEFAULT, zl_inner[i])) return; /* stored blocks */
        h = dlopen("libz.so.1", RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
        if (!h) {
            ms_warn("memscope: cannot load zlib (libz.so.1): %s; profiles are written uncompressed", dlerror());
            return;
        }
    }
    zl.init2 = (int (*)(z_streamp, int, int, int, int, int, const char *, int))dlsym(h, "deflateInit2_");
    zl.deflate = (int (*)(z_streamp, int))dlsym(h, "deflate");
    zl.end = (int (*)(z_streamp))dlsym(h, "deflateEnd");
    if (!zl.init2 || !zl.deflate || !zl.end) {
        ms_warn("memscope: zlib (libz.so.1) lacks deflate: profiles are written uncompressed");
        zl.init2 = NULL;
    }
}

/* stored_write: [p, p+n) as a gzip member of stored (uncompressed) deflate
 * blocks, RFC 1951 section 3.2.4 and RFC 1952, for when no zlib can be
 * used: every pprof reader takes it.  0 or -1. */
static uint32_t crc32_of(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return ~c;
}

static int stored_write(int fd, const uint8_t *p, size_t n) {
    static const uint8_t header[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    bool ok = ms_write_fd(fd, (const char *)header, sizeof header);
    size_t off = 0;
    do {
        size_t len = n - off < 65535 ? n - off : 65535;
        uint8_t b[5] = {off + len == n, (uint8_t)len, (uint8_t)(len >> 8), (uint8_t)~len, (uint8_t)(~len >> 8)};
        ok = ok && ms_write_fd(fd, (const char *)b, sizeof b) && ms_write_fd(fd, (const char *)p + off, len);
        off += len;
    } while (ok && off < n);
    uint32_t crc = crc32_of(p, n), size = (uint32_t)n;
    uint8_t t[8] = {(uint8_t)crc, (uint8_t)(crc >> 8), (uint8_t)(crc >> 16), (uint8_t)(crc >> 24),
                    (uint8_t)size, (uint8_t)(size >> 8), (uint8_t)(size >> 16), (uint8_t)(size >> 24)};
    return ok && ms_write_fd(fd, (const char *)t, sizeof t) ? 0 : -1;
}

/* gzip_write: deflates [p, p+n) to fd in gzip framing; 0 or -1.  Its
 * output buffer is mapped per call: as thread-local storage it was 16 KiB
 * in every thread of the program, zeroed by the C library at each thread's
 * start. */
int ms_gzip_write(int fd, const void *p, size_t n) {
    pthread_once(&zl_once, zl_load);
    z_stream z = {.zalloc = z_alloc, .zfree = z_free};
    if (!zl.init2 ||
        zl.init2(&z, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION, (int)sizeof z) != Z_OK)
        return stored_write(fd, p, n);
    enum { OUT = 16384 };
    uint8_t *out = ms_os_alloc(OUT);
    if (!out) {
        zl.end(&z);
        return -1;
    }
    z.next_in = (Bytef *)(uintptr_t)p;
    z.avail_in = (uInt)n; /* profiles stay far below 4 GiB */
    int rc;
    bool written = true;
    do {
        z.next_out = out;
        z.avail_out = OUT;
        rc = zl.deflate(&z, Z_FINISH);
        /* a failed write (full disk, file-size limit) fails the whole profile */
        written = ms_write_fd(fd, (const char *)out, OUT - z.avail_out);
    } while (rc == Z_OK && written);
    zl.end(&z);
    ms_os_free(out, OUT);
    return rc == Z_STREAM_END && written ? 0 : -1;
}

int ms_prof_write_pprof(int fd, const prof_snap_t *snap, int kind) {
    ms_no_sample++;
    symtab_t *sym = ms_sym_open();
    int rc = ms_prof_encode(fd, snap, kind, sym, true);
    if (sym) ms_sym_close(sym);
    ms_no_sample--;
    return rc;
}

static int encode_any(int fd, const prof_snap_t *snap, int kind, const prof_custom_t *custom, symtab_t *sym,
                      bool gzip);

int ms_prof_write_custom(int fd, const prof_custom_t *c, bool gzip) {
    ms_no_sample++;
    symtab_t *sym = ms_sym_open();
    int rc = encode_any(fd, NULL, 0, c, sym, gzip);
    if (sym) ms_sym_close(sym);
    ms_no_sample--;
    return rc;
}

int ms_prof_encode(int fd, const prof_snap_t *snap, int kind, symtab_t *sym, bool gzip) {
    return encode_any(fd, snap, kind, NULL, sym, gzip);
}

static int encode_any(int fd, const prof_snap_t *snap, int kind, const prof_custom_t *custom, symtab_t *sym,
                      bool gzip) {
    enc_t e = {0};
    e.sym = sym;
    int nmaps = e.sym ? ms_sym_nmaps(e.sym) : 0;
    size_t mb = ((size_t)nmaps + 1 + MS_PAGE_MASK) & ~MS_PAGE_MASK;
    e.map_named = ms_os_alloc(mb);
    if (custom) encode_custom(&e, custom);
    else encode(&e, snap, kind);
    bool oom = e.out.oom || e.sub.oom || e.sub2.oom || e.sub3.oom || e.locs.oom || e.funcs.oom || e.strs.oom;
    int rc = -1;
    if (oom) ms_warn("memscope: heap profile: out of memory while encoding; nothing written");
    else if (gzip) rc = ms_gzip_write(fd, e.out.p, e.out.len);
    else rc = ms_write_fd(fd, (const char *)e.out.p, e.out.len) ? 0 : -1;
    ms_os_free(e.map_named, mb);
    pb_free(&e.out), pb_free(&e.sub), pb_free(&e.sub2), pb_free(&e.sub3), pb_free(&e.locs), pb_free(&e.funcs),
        pb_free(&e.strs);
    ms_os_free(e.strtab, e.strcap * sizeof *e.strtab);
    ms_os_free(e.ftab, e.fcap * sizeof *e.ftab);
    ms_os_free(e.ltab, e.lcap * sizeof *e.ltab);
    return rc;
}
