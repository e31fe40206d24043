/* pprofread.c: reads a pprof profile (profile.proto, gzipped or not) into
 * the arrays of pprofread.h.  See pprofread.h for what a caller may assume.
 *
 * The input is untrusted: any file a user points the CLI at, including a
 * truncated download or the wrong file altogether.  So the reader is built
 * around one rule: no byte is read before the cursor has been checked against
 * the end of its slice, and no count is trusted before the bytes behind it
 * have been seen.  Concretely:
 *   - a varint is at most 10 bytes and must end inside its slice;
 *   - a length-delimited field must fit in what is left of its slice, and the
 *     nested message is then parsed inside exactly that sub-slice, so a
 *     nested length can never reach past its parent;
 *   - nesting is fixed by the schema (at most Profile > Location > Line), so
 *     recursion depth is bounded by the code, not by the input;
 *   - every array grows one element per field actually present, so memory is
 *     bounded by a small multiple of the input size, and the input size is
 *     capped (MS_PPROF_MAX_BYTES, before and after gunzip: a gzip bomb stops
 *     at the cap instead of filling memory);
 *   - ids and string indices are resolved in a second pass, after the whole
 *     message has been read, because protobuf allows fields in any order
 *     (Go writes string_table last).
 * Parsing follows the wire format, not the field order: repeated scalars are
 * accepted packed or unpacked, unknown fields are skipped by wire type, and a
 * known field with the wrong wire type is an error rather than a guess.
 * Groups (wire types 3 and 4) are not used by profile.proto and are refused.
 *
 * Errors are static strings naming the first problem found; the reader stops
 * there and frees everything, so callers see either a whole profile or none.
 */
#include "pprofread.h"

#include <sys/stat.h>

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* ------------------------------------------------------------------------
 * Growable arrays
 * ---------------------------------------------------------------------- */

/* grow makes room for one more element in *arr (n used, *cap allocated).
 * Returns false on out-of-memory (the array is left as it was). */
static bool grow(void **arr, size_t *cap, size_t n, size_t elsize)
{
    if (n < *cap)
        return true;
    size_t ncap = *cap ? 2 * *cap : 4;
    if (ncap > SIZE_MAX / elsize)
        return false;
    void *p = realloc(*arr, ncap * elsize);
    if (!p)
        return false;
    *arr = p;
    *cap = ncap;
    return true;
}

#define PUSH(arr, n, cap, val)                                       \
    (grow((void **)&(arr), &(cap), (n), sizeof *(arr))               \
         ? ((arr)[(n)++] = (val), (const char *)NULL)                \
         : "out of memory")

typedef struct { uint64_t *v; size_t n, cap; } u64vec_t;

/* ------------------------------------------------------------------------
 * Wire format
 * ---------------------------------------------------------------------- */

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

/* A slice of the input being parsed: p moves towards end, never past it. */
typedef struct { const unsigned char *p, *end; } pb_t;

static const char *pb_varint(pb_t *b, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (b->p >= b->end)
            return "truncated varint";
        unsigned char c = *b->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *out = v;
            return NULL;
        }
    }
    return "varint longer than 10 bytes";
}

/* pb_key reads a field key; field 0 is invalid in protobuf. */
static const char *pb_key(pb_t *b, uint32_t *field, int *wt)
{
    uint64_t k;
    const char *e = pb_varint(b, &k);
    if (e)
        return e;
    if ((k >> 3) == 0 || (k >> 3) > 0x1fffffff)
        return "bad field number";
    *field = (uint32_t)(k >> 3);
    *wt = (int)(k & 7);
    return NULL;
}

/* pb_len reads a length prefix and returns the sub-slice it covers. */
static const char *pb_len(pb_t *b, pb_t *sub)
{
    uint64_t n;
    const char *e = pb_varint(b, &n);
    if (e)
        return e;
    if (n > (uint64_t)(b->end - b->p))
        return "field length past the end of its message";
    sub->p = b->p;
    sub->end = b->p + n;
    b->p += n;
    return NULL;
}

static const char *pb_skip(pb_t *b, int wt)
{
    uint64_t v;
    pb_t sub;
    size_t need;
    switch (wt) {
    case WT_VARINT: return pb_varint(b, &v);
    case WT_LEN:    return pb_len(b, &sub);
    case WT_I64:    need = 8; break;
    case WT_I32:    need = 4; break;
    default:        return "unsupported wire type (group or invalid)";
    }
    if ((size_t)(b->end - b->p) < need)
        return "truncated fixed-size field";
    b->p += need;
    return NULL;
}

/* pb_scalar reads one varint field that must have varint wire type. */
static const char *pb_scalar(pb_t *b, int wt, uint64_t *v)
{
    if (wt != WT_VARINT)
        return "integer field with a non-varint wire type";
    return pb_varint(b, v);
}

/* pb_repeated appends a repeated varint field, packed (one length-delimited
 * run of varints) or unpacked (one varint per key). */
static const char *pb_repeated(pb_t *b, int wt, u64vec_t *vec)
{
    uint64_t v;
    const char *e;
    if (wt == WT_VARINT) {
        if ((e = pb_varint(b, &v)) || (e = PUSH(vec->v, vec->n, vec->cap, v)))
            return e;
        return NULL;
    }
    if (wt != WT_LEN)
        return "repeated integer field with a bad wire type";
    pb_t sub;
    if ((e = pb_len(b, &sub)))
        return e;
    while (sub.p < sub.end)
        if ((e = pb_varint(&sub, &v)) || (e = PUSH(vec->v, vec->n, vec->cap, v)))
            return e;
    return NULL;
}

/* ------------------------------------------------------------------------
 * First pass: the message as written (ids and string indices unresolved)
 * ---------------------------------------------------------------------- */

typedef struct { uint64_t type, unit; } raw_vt_t;
typedef struct { u64vec_t locs, vals; } raw_sample_t;
typedef struct { uint64_t id, start, limit, file, build_id; } raw_mapping_t;
typedef struct { uint64_t function, line; } raw_line_t;
typedef struct {
    uint64_t id, mapping, address;
    raw_line_t *lines;
    size_t nlines, cap;
} raw_location_t;
typedef struct { uint64_t id, name, system_name, filename, start_line; } raw_function_t;
typedef struct { const unsigned char *p; size_t len; } raw_str_t;

typedef struct {
    raw_vt_t *st; size_t nst, cst;
    raw_sample_t *sm; size_t nsm, csm;
    raw_mapping_t *mp; size_t nmp, cmp;
    raw_location_t *lc; size_t nlc, clc;
    raw_function_t *fn; size_t nfn, cfn;
    raw_str_t *str; size_t nstr, cstr;
    u64vec_t comments;
    raw_vt_t period_type;
    uint64_t period, time_nanos, duration_nanos, default_sample_type;
} raw_t;

static void raw_free(raw_t *r)
{
    for (size_t i = 0; i < r->nsm; i++) {
        free(r->sm[i].locs.v);
        free(r->sm[i].vals.v);
    }
    for (size_t i = 0; i < r->nlc; i++)
        free(r->lc[i].lines);
    free(r->st); free(r->sm); free(r->mp); free(r->lc); free(r->fn); free(r->str);
    free(r->comments.v);
}

static const char *parse_valuetype(pb_t b, raw_vt_t *vt)
{
    uint32_t f;
    int wt;
    const char *e;
    while (b.p < b.end) {
        if ((e = pb_key(&b, &f, &wt)))
            return e;
        if (f == 1)      e = pb_scalar(&b, wt, &vt->type);
        else if (f == 2) e = pb_scalar(&b, wt, &vt->unit);
        else             e = pb_skip(&b, wt);
        if (e)
            return e;
    }
    return NULL;
}

static const char *parse_sample(pb_t b, raw_sample_t *s)
{
    uint32_t f;
    int wt;
    const char *e;
    while (b.p < b.end) {
        if ((e = pb_key(&b, &f, &wt)))
            return e;
        if (f == 1)      e = pb_repeated(&b, wt, &s->locs);
        else if (f == 2) e = pb_repeated(&b, wt, &s->vals);
        else             e = pb_skip(&b, wt);   /* 3: labels, not used */
        if (e)
            return e;
    }
    return NULL;
}

/* The messages whose fields memscope reads are all scalars (Mapping,
 * Line, Function): one loop reads them, from a table of where each field
 * number goes in the struct; fields not listed are skipped. */
typedef struct { uint32_t field; size_t off; } scalar_field_t;

static const char *parse_scalars(pb_t b, void *obj, const scalar_field_t *fs, size_t n)
{
    uint32_t f;
    int wt;
    const char *e;
    while (b.p < b.end) {
        if ((e = pb_key(&b, &f, &wt)))
            return e;
        size_t i = 0;
        while (i < n && fs[i].field != f)
            i++;
        e = i < n ? pb_scalar(&b, wt, (uint64_t *)((char *)obj + fs[i].off)) : pb_skip(&b, wt);
        if (e)
            return e;
    }
    return NULL;
}

#define FIELDS(a) (a), sizeof(a) / sizeof((a)[0])
static const scalar_field_t mapping_fields[] = {
    {1, offsetof(raw_mapping_t, id)},   {2, offsetof(raw_mapping_t, start)},
    {3, offsetof(raw_mapping_t, limit)}, {5, offsetof(raw_mapping_t, file)},
    {6, offsetof(raw_mapping_t, build_id)},
};
static const scalar_field_t line_fields[] = {
    {1, offsetof(raw_line_t, function)}, {2, offsetof(raw_line_t, line)},
};
static const scalar_field_t function_fields[] = {
    {1, offsetof(raw_function_t, id)},       {2, offsetof(raw_function_t, name)},
    {3, offsetof(raw_function_t, system_name)}, {4, offsetof(raw_function_t, filename)},
    {5, offsetof(raw_function_t, start_line)},
};

static const char *parse_location(pb_t b, raw_location_t *l)
{
    uint32_t f;
    int wt;
    const char *e;
    pb_t sub;
    while (b.p < b.end) {
        if ((e = pb_key(&b, &f, &wt)))
            return e;
        switch (f) {
        case 1: e = pb_scalar(&b, wt, &l->id); break;
        case 2: e = pb_scalar(&b, wt, &l->mapping); break;
        case 3: e = pb_scalar(&b, wt, &l->address); break;
        case 4: {
            raw_line_t ln = {0, 0};
            if (wt != WT_LEN)
                return "Location.line is not a message";
            if ((e = pb_len(&b, &sub)) || (e = parse_scalars(sub, &ln, FIELDS(line_fields))))
                return e;
            e = PUSH(l->lines, l->nlines, l->cap, ln);
            break;
        }
        default: e = pb_skip(&b, wt); break;
        }
        if (e)
            return e;
    }
    return NULL;
}

/* parse_profile reads the top-level Profile message.  Each nested message
 * is appended to its array before it is parsed, so whatever it allocated is
 * freed by raw_free even when it fails half-way. */
static const char *parse_profile(pb_t b, raw_t *r)
{
    uint32_t f;
    int wt;
    const char *e;
    pb_t sub;
    while (b.p < b.end) {
        if ((e = pb_key(&b, &f, &wt)))
            return e;
        bool msg = f == 1 || f == 2 || f == 3 || f == 4 || f == 5 || f == 6 || f == 11;
        if (msg) {
            if (wt != WT_LEN)
                return "message field with a non-length wire type";
            if ((e = pb_len(&b, &sub)))
                return e;
        }
        switch (f) {
        case 1: {
            raw_vt_t vt = {0, 0};
            if ((e = parse_valuetype(sub, &vt)))
                return e;
            e = PUSH(r->st, r->nst, r->cst, vt);
            break;
        }
        case 2: {
            raw_sample_t s;
            memset(&s, 0, sizeof s);
            if ((e = PUSH(r->sm, r->nsm, r->csm, s)))
                return e;
            e = parse_sample(sub, &r->sm[r->nsm - 1]);
            break;
        }
        case 3: {
            raw_mapping_t m;
            memset(&m, 0, sizeof m);
            if ((e = parse_scalars(sub, &m, FIELDS(mapping_fields))))
                return e;
            e = PUSH(r->mp, r->nmp, r->cmp, m);
            break;
        }
        case 4: {
            raw_location_t l;
            memset(&l, 0, sizeof l);
            if ((e = PUSH(r->lc, r->nlc, r->clc, l)))
                return e;
            e = parse_location(sub, &r->lc[r->nlc - 1]);
            break;
        }
        case 5: {
            raw_function_t fn;
            memset(&fn, 0, sizeof fn);
            if ((e = parse_scalars(sub, &fn, FIELDS(function_fields))))
                return e;
            e = PUSH(r->fn, r->nfn, r->cfn, fn);
            break;
        }
        case 6: {
            raw_str_t s = {sub.p, (size_t)(sub.end - sub.p)};
            e = PUSH(r->str, r->nstr, r->cstr, s);
            break;
        }
        case 9:  e = pb_scalar(&b, wt, &r->time_nanos); break;
        case 10: e = pb_scalar(&b, wt, &r->duration_nanos); break;
        case 11: e = parse_valuetype(sub, &r->period_type); break;
        case 12: e = pb_scalar(&b, wt, &r->period); break;
        case 13: e = pb_repeated(&b, wt, &r->comments); break;
        case 14: e = pb_scalar(&b, wt, &r->default_sample_type); break;
        default: e = pb_skip(&b, wt); break;  /* 7, 8: drop/keep_frames; unknown */
        }
        if (e)
            return e;
    }
    return NULL;
}

/* ------------------------------------------------------------------------
 * Second pass: resolve ids and string indices
 * ---------------------------------------------------------------------- */

/* An id -> array index table, sorted by id for bsearch. */
typedef struct { uint64_t id; size_t idx; } idmap_t;

static int idmap_cmp(const void *a, const void *b)
{
    uint64_t x = ((const idmap_t *)a)->id, y = ((const idmap_t *)b)->id;
    return x < y ? -1 : x > y;
}

/* idmap_build: ids[i] sits at stride bytes apart from base; rejects id 0 and
 * duplicate ids (pprof's own CheckValid does the same). */
static const char *idmap_build(idmap_t **out, const void *base, size_t n, size_t stride,
                               const char *zero_msg, const char *dup_msg)
{
    *out = NULL;
    if (n == 0)
        return NULL;
    idmap_t *m = malloc(n * sizeof *m);
    if (!m)
        return "out of memory";
    for (size_t i = 0; i < n; i++) {
        memcpy(&m[i].id, (const char *)base + i * stride, sizeof(uint64_t));
        m[i].idx = i;
        if (m[i].id == 0) {
            free(m);
            return zero_msg;
        }
    }
    qsort(m, n, sizeof *m, idmap_cmp);
    for (size_t i = 1; i < n; i++)
        if (m[i].id == m[i - 1].id) {
            free(m);
            return dup_msg;
        }
    *out = m;
    return NULL;
}

static long idmap_find(const idmap_t *m, size_t n, uint64_t id)
{
    if (!m)
        return -1;
    idmap_t key = {id, 0};
    const idmap_t *hit = bsearch(&key, m, n, sizeof *m, idmap_cmp);
    return hit ? (long)hit->idx : -1;
}

/* str_at resolves a string index, failing on one past the table. */
static const char *str_at(const pp_profile_t *p, uint64_t idx, const char **out)
{
    if (idx >= p->nstrings)
        return "string index past the end of the string table";
    *out = p->strings[idx];
    return NULL;
}

static const char *resolve(const raw_t *r, pp_profile_t *p)
{
    const char *e;
    /* strings: one block, each NUL-terminated */
    if (r->nstr == 0)
        return "no string table";
    if (r->str[0].len != 0)
        return "string_table[0] is not empty";
    size_t total = 0;
    for (size_t i = 0; i < r->nstr; i++)
        total += r->str[i].len + 1;   /* bounded: the strings sit in the input */
    if (!(p->string_data = malloc(total)) || !(p->strings = malloc(r->nstr * sizeof *p->strings)))
        return "out of memory";
    p->nstrings = r->nstr;
    char *d = p->string_data;
    for (size_t i = 0; i < r->nstr; i++) {
        memcpy(d, r->str[i].p, r->str[i].len);
        d[r->str[i].len] = '\0';
        p->strings[i] = d;
        d += r->str[i].len + 1;
    }

    /* sample types */
    if (r->nst == 0)
        return "no sample types";
    if (!(p->sample_types = calloc(r->nst, sizeof *p->sample_types)))
        return "out of memory";
    p->nsample_types = r->nst;
    for (size_t i = 0; i < r->nst; i++)
        if ((e = str_at(p, r->st[i].type, &p->sample_types[i].type)) ||
            (e = str_at(p, r->st[i].unit, &p->sample_types[i].unit)))
            return e;
    if ((e = str_at(p, r->period_type.type, &p->period_type.type)) ||
        (e = str_at(p, r->period_type.unit, &p->period_type.unit)))
        return e;
    p->default_sample_type = -1;
    if (r->default_sample_type) {
        const char *name;
        if ((e = str_at(p, r->default_sample_type, &name)))
            return e;
        for (size_t i = 0; i < p->nsample_types; i++)
            if (strcmp(p->sample_types[i].type, name) == 0) {
                p->default_sample_type = (long)i;
                break;
            }
    }
    p->period = (int64_t)r->period;
    p->time_nanos = (int64_t)r->time_nanos;
    p->duration_nanos = (int64_t)r->duration_nanos;
    if (r->comments.n) {
        if (!(p->comments = calloc(r->comments.n, sizeof *p->comments)))
            return "out of memory";
        p->ncomments = r->comments.n;
        for (size_t i = 0; i < r->comments.n; i++)
            if ((e = str_at(p, r->comments.v[i], &p->comments[i])))
                return e;
    }

    /* mappings, functions: copied with strings resolved */
    idmap_t *mmap_ = NULL, *fmap = NULL, *lmap = NULL;
    if ((e = idmap_build(&mmap_, r->mp, r->nmp, sizeof *r->mp, "mapping with id 0",
                         "two mappings with the same id")))
        goto out;
    if ((e = idmap_build(&fmap, r->fn, r->nfn, sizeof *r->fn, "function with id 0",
                         "two functions with the same id")))
        goto out;
    if ((e = idmap_build(&lmap, r->lc, r->nlc, sizeof *r->lc, "location with id 0",
                         "two locations with the same id")))
        goto out;
    e = "out of memory";
    if ((r->nmp && !(p->mappings = calloc(r->nmp, sizeof *p->mappings))) ||
        (r->nfn && !(p->functions = calloc(r->nfn, sizeof *p->functions))) ||
        (r->nlc && !(p->locations = calloc(r->nlc, sizeof *p->locations))) ||
        (r->nsm && !(p->samples = calloc(r->nsm, sizeof *p->samples))))
        goto out;
    e = NULL;
    p->nmappings = r->nmp;
    for (size_t i = 0; i < r->nmp && !e; i++) {
        pp_mapping_t *m = &p->mappings[i];
        m->id = r->mp[i].id;
        m->start = r->mp[i].start;
        m->limit = r->mp[i].limit;
        if (!(e = str_at(p, r->mp[i].file, &m->file)))
            e = str_at(p, r->mp[i].build_id, &m->build_id);
    }
    p->nfunctions = r->nfn;
    for (size_t i = 0; i < r->nfn && !e; i++) {
        pp_function_t *f = &p->functions[i];
        f->id = r->fn[i].id;
        f->start_line = (int64_t)r->fn[i].start_line;
        if (!(e = str_at(p, r->fn[i].name, &f->name)) &&
            !(e = str_at(p, r->fn[i].system_name, &f->system_name)))
            e = str_at(p, r->fn[i].filename, &f->filename);
    }
    if (e)
        goto out;

    /* locations: mapping and function ids -> indices */
    p->nlocations = r->nlc;
    for (size_t i = 0; i < r->nlc; i++) {
        const raw_location_t *rl = &r->lc[i];
        pp_location_t *l = &p->locations[i];
        l->id = rl->id;
        l->address = rl->address;
        l->mapping = -1;
        if (rl->mapping && (l->mapping = idmap_find(mmap_, r->nmp, rl->mapping)) < 0) {
            e = "location refers to a missing mapping";
            goto out;
        }
        if (rl->nlines) {
            if (!(l->lines = calloc(rl->nlines, sizeof *l->lines))) {
                e = "out of memory";
                goto out;
            }
            l->nlines = rl->nlines;
        }
        for (size_t j = 0; j < rl->nlines; j++) {
            l->lines[j].line = (int64_t)rl->lines[j].line;
            l->lines[j].function = -1;
            if (rl->lines[j].function &&
                (l->lines[j].function = idmap_find(fmap, r->nfn, rl->lines[j].function)) < 0) {
                e = "line refers to a missing function";
                goto out;
            }
        }
    }

    /* samples: location ids -> indices, one value per sample type */
    p->nsamples = r->nsm;
    for (size_t i = 0; i < r->nsm; i++) {
        const raw_sample_t *rs = &r->sm[i];
        pp_sample_t *s = &p->samples[i];
        if (rs->vals.n != p->nsample_types) {
            e = "a sample's value count differs from the number of sample types";
            goto out;
        }
        e = "out of memory";
        if (!(s->values = malloc(rs->vals.n * sizeof *s->values)))
            goto out;
        if (rs->locs.n && !(s->locs = malloc(rs->locs.n * sizeof *s->locs)))
            goto out;
        e = NULL;
        for (size_t j = 0; j < rs->vals.n; j++)
            s->values[j] = (int64_t)rs->vals.v[j];
        s->nlocs = rs->locs.n;
        for (size_t j = 0; j < rs->locs.n; j++) {
            long li = idmap_find(lmap, r->nlc, rs->locs.v[j]);
            if (li < 0) {
                e = "sample refers to a missing location";
                goto out;
            }
            s->locs[j] = (size_t)li;
        }
    }
out:
    free(mmap_);
    free(fmap);
    free(lmap);
    return e;
}

/* ------------------------------------------------------------------------
 * Entry points
 * ---------------------------------------------------------------------- */

void ms_pprof_free(pp_profile_t *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nsamples; i++) {
        free(p->samples[i].locs);
        free(p->samples[i].values);
    }
    for (size_t i = 0; i < p->nlocations; i++)
        free(p->locations[i].lines);
    free(p->samples); free(p->locations); free(p->functions); free(p->mappings);
    free(p->sample_types); free(p->comments); free(p->strings); free(p->string_data);
    free(p);
}

pp_profile_t *ms_pprof_parse(const unsigned char *buf, size_t len, char *err, size_t errlen)
{
    raw_t r;
    memset(&r, 0, sizeof r);
    pp_profile_t *p = calloc(1, sizeof *p);
    const char *e = p ? NULL : "out of memory";
    if (!e && len == 0)
        e = "empty file";
    if (!e)
        e = parse_profile((pb_t){buf, buf + len}, &r);
    if (!e)
        e = resolve(&r, p);
    raw_free(&r);
    if (e) {
        ms_pprof_free(p);
        if (strcmp(e, "out of memory") == 0)
            snprintf(err, errlen, "out of memory");
        else
            snprintf(err, errlen, "not a pprof profile (%s)", e);
        return NULL;
    }
    return p;
}

/* gunzip inflates in[0..inlen) (one or more concatenated gzip members) into
 * a malloc'd buffer of at most MS_PPROF_MAX_BYTES. */
static const char *gunzip(const unsigned char *in, size_t inlen, unsigned char **out, size_t *outlen)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
        return "cannot start zlib";
    size_t cap = inlen < (1u << 16) ? (1u << 18) : 4 * inlen, n = 0;
    if (cap > MS_PPROF_MAX_BYTES)
        cap = MS_PPROF_MAX_BYTES;
    unsigned char *buf = malloc(cap);
    const char *e = buf ? NULL : "out of memory";
    zs.next_in = (unsigned char *)in;   /* zlib's API is not const-clean */
    zs.avail_in = (uInt)inlen;          /* inlen <= MS_PPROF_MAX_BYTES < 4 GiB */
    while (!e) {
        if (n == cap) {
            if (cap >= MS_PPROF_MAX_BYTES) {
                e = "profile too large (1 GiB or more uncompressed)";
                break;
            }
            size_t ncap = 2 * cap > MS_PPROF_MAX_BYTES ? MS_PPROF_MAX_BYTES : 2 * cap;
            unsigned char *nb = realloc(buf, ncap);
            if (!nb) {
                e = "out of memory";
                break;
            }
            buf = nb;
            cap = ncap;
        }
        zs.next_out = buf + n;
        zs.avail_out = (uInt)(cap - n);
        int rc = inflate(&zs, Z_NO_FLUSH);
        n = cap - zs.avail_out;
        if (rc == Z_STREAM_END) {
            if (zs.avail_in == 0)
                break;
            /* another gzip member may follow (what `cat a.gz b.gz` makes) */
            if (zs.avail_in < 2 || zs.next_in[0] != 0x1f || zs.next_in[1] != 0x8b) {
                e = "trailing bytes after the gzip data";
                break;
            }
            if (inflateReset(&zs) != Z_OK)
                e = "cannot restart zlib";
        } else if (rc == Z_OK) {
            continue;
        } else if (rc == Z_BUF_ERROR) {
            if (zs.avail_out != 0)   /* no progress with room to spare: input ran out */
                e = "truncated gzip data";
        } else if (rc == Z_MEM_ERROR) {
            e = "out of memory";
        } else {
            e = "corrupt gzip data";
        }
    }
    inflateEnd(&zs);
    if (e) {
        free(buf);
        return e;
    }
    *out = buf;
    *outlen = n;
    return NULL;
}

/* read_file reads all of path (at most MS_PPROF_MAX_BYTES).  On failure
 * returns an errno message or a size complaint. */
static const char *read_file(const char *path, unsigned char **out, size_t *outlen)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return strerror(errno);
    struct stat st; /* a file known too large is refused before 1 GiB is read */
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size >= MS_PPROF_MAX_BYTES) {
        fclose(f);
        return "profile too large (1 GiB or more)";
    }
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    const char *e = buf ? NULL : "out of memory";
    while (!e) {
        if (n == cap) {
            if (cap >= MS_PPROF_MAX_BYTES) {
                e = "profile too large (1 GiB or more)";
                break;
            }
            unsigned char *nb = realloc(buf, 2 * cap);
            if (!nb) {
                e = "out of memory";
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f))
                e = strerror(errno ? errno : EIO);
            break;
        }
    }
    fclose(f);
    if (e) {
        free(buf);
        return e;
    }
    *out = buf;
    *outlen = n;
    return NULL;
}

pp_profile_t *ms_pprof_read(const char *path, char *err, size_t errlen)
{
    unsigned char *raw = NULL, *plain = NULL;
    size_t rawlen = 0, plainlen = 0;
    const char *e = read_file(path, &raw, &rawlen);
    if (e) {
        snprintf(err, errlen, "%s", e);
        return NULL;
    }
    if (rawlen >= 2 && raw[0] == 0x1f && raw[1] == 0x8b) {
        if ((e = gunzip(raw, rawlen, &plain, &plainlen))) {
            free(raw);
            if (strcmp(e, "out of memory") == 0 || strncmp(e, "profile too large", 17) == 0)
                snprintf(err, errlen, "%s", e);
            else
                snprintf(err, errlen, "not a pprof profile (%s)", e);
            return NULL;
        }
        free(raw);
    } else {
        plain = raw;
        plainlen = rawlen;
    }
    pp_profile_t *p = ms_pprof_parse(plain, plainlen, err, errlen);
    free(plain);
    return p;
}
