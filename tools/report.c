/* report.c: `memscope report`, what `go tool pprof -top` prints, from C.
 *
 *   memscope report PROFILE [--inuse|--alloc|--peak|--sample-index NAME]
 *                           [--top N] [--lines]
 *   memscope report --diff BASE NEW [same options]
 *
 * The point is that a memscope user can read a heap profile on a machine
 * with no Go toolchain, and get the same figures pprof would give.  So the
 * arithmetic follows pprof's report package (internal/report, internal/graph,
 * internal/measurement as vendored in Go 1.19) step for step, and only the
 * presentation differs where pprof's cannot fit a terminal:
 *
 *   nodes     one per function name (per name+file:line with --lines); a
 *             location with several lines (inlined calls) gives one node per
 *             line, innermost first.  pprof keys function nodes by name alone,
 *             and so do we, so two static functions of the same name merge.
 *   flat      a sample's value goes to the innermost line of its first
 *             (leaf) location; samples whose value is 0 are skipped.
 *   cum       a sample's value goes once to every node on its stack (a
 *             recursive function is counted once per sample: a stamp per
 *             node records the last sample that counted it).
 *   total     sum of |value| over all samples: the denominator of every %.
 *   dropping  nodes with |cum| < 0.5% of the flat sum are dropped, as pprof
 *             does by default (-nodefraction=0.005), and the header says so
 *             with pprof's own "Dropped N nodes (cum <= X)"; then --top N
 *             (default 20, 0 = no limit) keeps the first N rows and the
 *             header says "Showing top N nodes out of M".
 *   units     one unit for the whole table, chosen by pprof's rule
 *             (selectOutputUnit): the unit of the smallest non-zero row,
 *             raised when that is 100 times smaller than the total; values
 *             print as "%.2f" with ".00" trimmed, 1024-based, kB/MB/GB.
 *
 * Where memscope differs from pprof, on purpose:
 *   - rows sort by |flat| desc, then |cum| desc, then name (pprof puts the
 *     name before cum: equal-flat rows may come in another order);
 *   - every row ends with the node's file:line (file base name; for a
 *     function, its start_line if the profile has one, else the smallest
 *     line seen), and every line is cut to 80 columns with a trailing "..."
 *     on the name (a leading one on the file), so the table fits a terminal;
 *   - a node with no function is named by its address, 0x..., and its file
 *     column is the mapping's file;
 *   - a name is Function.name, or Function.system_name if that is empty:
 *     memscope's profiles put the demangled name in name;
 *   - no "(inline)" labels.
 * --diff subtracts per node, NEW minus BASE, flat and cum; rows with no
 * change are left out, rows sort by |flat change| (growth before shrinkage
 * on a tie), values are signed, and percentages are of BASE's total.
 *
 * Invariants: the reader (pprofread.c) hands over a profile whose indices
 * are all valid, so nothing here re-checks them; every output line is built
 * in a buffer and cut to LINE_MAX_COLS before it is printed.  Column width
 * is counted in bytes, which never undercounts UTF-8, and cuts back off to
 * a character boundary.
 */
#include "report.h"

#include "pprofread.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LINE_MAX_COLS 80
#define NODE_FRACTION 0.005   /* pprof's -nodefraction default */
#define DEFAULT_TOP 20

enum { EXIT_BAD = 1, EXIT_USAGE = 2 };

const char ms_report_usage[] =
    "       memscope report PROFILE [--inuse|--alloc|--peak|--sample-index NAME]\n"
    "                               [--top N] [--lines]\n"
    "       memscope report --diff BASE NEW [same options]\n";

static const char report_help[] =
    "usage: memscope report PROFILE [--inuse|--alloc|--peak|--sample-index NAME]\n"
    "                               [--top N] [--lines]\n"
    "       memscope report --diff BASE NEW [same options]\n"
    "\n"
    "Prints what `go tool pprof -top` prints for a pprof profile (gzipped or not),\n"
    "one row per function, with the function's file:line as a last column.\n"
    "\n"
    "  --inuse, --alloc, --peak   sample type inuse_space, alloc_space, peak_space\n"
    "  --sample-index NAME        any sample type by name (or by number)\n"
    "                             default: the profile's default type, else its last\n"
    "  --top N                    show the first N rows (default 20; 0 = all)\n"
    "  --lines                    one row per function and line, not per function\n"
    "  --all                      keep small functions (pprof -nodefraction=0)\n"
    "  --diff BASE NEW            NEW minus BASE per function, biggest change first\n"
    "\n"
    "Like pprof, functions whose cum is under 0.5% of the total are dropped\n"
    "unless --all is given.\n"
    "Exit status: 0 ok, 1 unreadable or invalid profile, 2 usage error.\n";

/* ------------------------------------------------------------------------
 * Messages
 * ---------------------------------------------------------------------- */

static int complain(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int complain(int code, const char *fmt, ...)
{
    va_list ap;
    fputs("memscope: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        complain(EXIT_BAD, "out of memory");
        exit(EXIT_BAD);
    }
    return p;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = xcalloc(n, 1);
    memcpy(d, s, n);
    return d;
}

/* ------------------------------------------------------------------------
 * Nodes: one per function (or function+line), shared by BASE and NEW so
 * that a diff lines up by key
 * ---------------------------------------------------------------------- */

typedef struct node_s {
    char *key;          /* name, or name \n file \n line with --lines */
    char *name;         /* what the row shows */
    char *file;         /* full path, "" if unknown */
    int64_t line;       /* shown line, 0 if unknown */
    bool line_fixed;    /* line is the function's start_line: keep it */
    int64_t flat[2], cum[2];
    uint64_t stamp;     /* last sample whose value went into cum */
    int64_t vflat, vcum; /* the figures shown: flat[0] or a difference */
} node_t;

typedef struct {
    node_t *v;
    size_t n, cap;
    size_t *slot;       /* open addressing: node index + 1, 0 = empty */
    size_t nslots;      /* power of two, kept at least 2n */
} nodes_t;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 14695981039346656037ull;   /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void nodes_rehash(nodes_t *t)
{
    size_t ns = t->nslots ? 2 * t->nslots : 256;
    free(t->slot);
    t->slot = xcalloc(ns, sizeof *t->slot);
    t->nslots = ns;
    for (size_t i = 0; i < t->n; i++) {
        size_t h = (size_t)hash_str(t->v[i].key) & (ns - 1);
        while (t->slot[h])
            h = (h + 1) & (ns - 1);
        t->slot[h] = i + 1;
    }
}

/* nodes_get returns the index of the node for key, creating it (with name
 * and file copied) on first use. */
static size_t nodes_get(nodes_t *t, const char *key, const char *name, const char *file)
{
    if (2 * (t->n + 1) > t->nslots)
        nodes_rehash(t);
    size_t h = (size_t)hash_str(key) & (t->nslots - 1);
    while (t->slot[h]) {
        if (strcmp(t->v[t->slot[h] - 1].key, key) == 0)
            return t->slot[h] - 1;
        h = (h + 1) & (t->nslots - 1);
    }
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 64;
        node_t *nv = realloc(t->v, t->cap * sizeof *nv);
        if (!nv) {
            complain(EXIT_BAD, "out of memory");
            exit(EXIT_BAD);
        }
        t->v = nv;
    }
    node_t *n = &t->v[t->n];
    memset(n, 0, sizeof *n);
    n->key = xstrdup(key);
    n->name = xstrdup(name);
    n->file = xstrdup(file);
    t->slot[h] = ++t->n;
    return t->n - 1;
}

static void nodes_free(nodes_t *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->v[i].key);
        free(t->v[i].name);
        free(t->v[i].file);
    }
    free(t->v);
    free(t->slot);
}

/* The nodes of each location of one profile: loc i has nodes
 * idx[off[i] .. off[i+1]), innermost line first. */
typedef struct {
    size_t *off, *idx;
} locnodes_t;

static void locnodes_build(const pp_profile_t *p, bool lines, nodes_t *t, locnodes_t *ln)
{
    size_t total = 0;
    for (size_t i = 0; i < p->nlocations; i++)
        total += p->locations[i].nlines ? p->locations[i].nlines : 1;
    ln->off = xcalloc(p->nlocations + 1, sizeof *ln->off);
    ln->idx = xcalloc(total, sizeof *ln->idx);
    size_t k = 0;
    for (size_t i = 0; i < p->nlocations; i++) {
        const pp_location_t *l = &p->locations[i];
        ln->off[i] = k;
        char addr[32];
        snprintf(addr, sizeof addr, "0x%" PRIx64, l->address);
        if (l->nlines == 0) {
            const char *mfile = l->mapping >= 0 ? p->mappings[l->mapping].file : "";
            ln->idx[k++] = nodes_get(t, addr, addr, mfile);
            continue;
        }
        for (size_t j = 0; j < l->nlines; j++) {
            const pp_function_t *f = l->lines[j].function >= 0 ? &p->functions[l->lines[j].function] : NULL;
            const char *name = f && f->name[0] ? f->name : f && f->system_name[0] ? f->system_name : addr;
            const char *file = f ? f->filename : "";
            int64_t line = l->lines[j].line;
            size_t ni;
            if (lines) {
                size_t klen = strlen(name) + strlen(file) + 32;
                char *key = xcalloc(klen, 1);
                snprintf(key, klen, "%s\n%s\n%" PRId64, name, file, line);
                ni = nodes_get(t, key, name, file);
                free(key);
                t->v[ni].line = line;
            } else {
                ni = nodes_get(t, name, name, file);
                node_t *n = &t->v[ni];
                if (f && f->start_line > 0 && !n->line_fixed) {
                    n->line = f->start_line;
                    n->line_fixed = true;
                } else if (!n->line_fixed && line > 0 && (n->line == 0 || line < n->line)) {
                    n->line = line;
                }
            }
            ln->idx[k++] = ni;
        }
    }
    ln->off[p->nlocations] = k;
}

/* Totals of one profile for one sample type. */
typedef struct {
    int64_t total;      /* sum of |value| over all samples (pprof's rpt.total) */
    int64_t flat_sum;   /* sum of value over samples with a stack */
} totals_t;

/* accumulate adds profile p's sample type vi into flat[k]/cum[k]. */
static totals_t accumulate(const pp_profile_t *p, size_t vi, const locnodes_t *ln, nodes_t *t,
                           int k, uint64_t *stamp)
{
    totals_t tot = {0, 0};
    for (size_t s = 0; s < p->nsamples; s++) {
        const pp_sample_t *sm = &p->samples[s];
        int64_t v = sm->values[vi];
        if (v == 0)
            continue;
        tot.total += v < 0 ? -v : v;
        if (sm->nlocs == 0)
            continue;
        ++*stamp;
        for (size_t j = 0; j < sm->nlocs; j++)
            for (size_t q = ln->off[sm->locs[j]]; q < ln->off[sm->locs[j] + 1]; q++) {
                node_t *n = &t->v[ln->idx[q]];
                if (n->stamp != *stamp) {
                    n->stamp = *stamp;
                    n->cum[k] += v;
                }
            }
        t->v[ln->idx[ln->off[sm->locs[0]]]].flat[k] += v;
        tot.flat_sum += v;
    }
    return tot;
}

/* ------------------------------------------------------------------------
 * Formatting (pprof's measurement package)
 * ---------------------------------------------------------------------- */

static const struct { const char *name; double factor; } mem_units[] = {
    {"B", 1}, {"kB", 1024.0}, {"MB", 1048576.0}, {"GB", 1073741824.0},
    {"TB", 1099511627776.0}, {"PB", 1125899906842624.0},
};
#define NMEM_UNITS (sizeof mem_units / sizeof mem_units[0])

/* Value formatting for one table: is the sample unit bytes (or a multiple),
 * and which unit the table prints in. */
typedef struct {
    bool memory;
    double from;        /* bytes per sample unit */
    int unit;           /* index into mem_units */
    bool sign;          /* diff: "+" on positive values */
} fmt_t;

/* unit_factor: bytes per unit for pprof's memory unit names, 0 if not one. */
static double unit_factor(const char *unit)
{
    char u[32];
    size_t n = strlen(unit);
    if (n >= sizeof u)
        return 0;
    for (size_t i = 0; i <= n; i++)
        u[i] = (char)tolower((unsigned char)unit[i]);
    if (n > 2 && u[n - 1] == 's')
        u[n - 1] = '\0';
    static const char *alias[][3] = {
        {"b", "byte", ""}, {"kb", "kbyte", "kilobyte"}, {"mb", "mbyte", "megabyte"},
        {"gb", "gbyte", "gigabyte"}, {"tb", "tbyte", "terabyte"}, {"pb", "pbyte", "petabyte"},
    };
    for (size_t i = 0; i < NMEM_UNITS; i++)
        for (int j = 0; j < 3; j++)
            if (alias[i][j][0] && strcmp(u, alias[i][j]) == 0)
                return mem_units[i].factor;
    return 0;
}

/* auto_unit: pprof's autoScale: the largest unit the value is >= 1 of. */
static int auto_unit(double bytes)
{
    int u = 0;
    for (size_t i = 0; i < NMEM_UNITS; i++)
        if (bytes / mem_units[i].factor >= 1.0)
            u = (int)i;
    return u;
}

static void fmt_value(char *buf, size_t len, const fmt_t *f, int64_t v)
{
    char num[64];
    const char *sign = f->sign && v > 0 ? "+" : "";
    if (!f->memory) {
        snprintf(buf, len, "%s%" PRId64, sign, v);
        return;
    }
    snprintf(num, sizeof num, "%.2f", (double)v * f->from / mem_units[f->unit].factor);
    size_t n = strlen(num);
    if (n > 3 && strcmp(num + n - 3, ".00") == 0)
        num[n - 3] = '\0';
    if (strcmp(num, "0") == 0 || strcmp(num, "-0") == 0)
        snprintf(buf, len, "0");
    else
        snprintf(buf, len, "%s%s%s", sign, num, mem_units[f->unit].name);
}

/* fmt_auto formats v in its own best unit (for lines outside the table). */
static void fmt_auto(char *buf, size_t len, const fmt_t *base, int64_t v, bool sign)
{
    fmt_t f = *base;
    f.sign = sign;
    if (f.memory)
        f.unit = auto_unit(fabs((double)v * f.from));
    fmt_value(buf, len, &f, v);
}

/* fmt_pick: pprof's selectOutputUnit. */
static void fmt_pick(fmt_t *f, int64_t min_value, int64_t max_value)
{
    if (!f->memory)
        return;
    if (min_value == 0)
        min_value = max_value;
    double mn = (double)min_value * f->from, mx = (double)max_value * f->from;
    int umin = auto_unit(mn), umax = auto_unit(mx);
    f->unit = umin;
    if (umin != umax && mn * 100 < mx)
        f->unit = auto_unit(100 * mn);
}

/* pct: pprof's Percentage, 6 columns ("  100%", "50.01%", "0.035%"); the
 * cap only matters for a diff against a much smaller base. */
static void pct(char *buf, size_t len, int64_t value, int64_t total)
{
    double r = total ? fabs((double)value / (double)total) * 100 : 0;
    if (r >= 99.95 && r <= 100.05)
        snprintf(buf, len, "  100%%");
    else if (r >= 9999.5)
        snprintf(buf, len, ">9999%%");
    else if (r >= 1.0)
        snprintf(buf, len, "%5.2f%%", r);
    else
        snprintf(buf, len, "%5.2g%%", r);
}

/* cut shortens s in place to at most width bytes: "..." at the end, or at
 * the start if from_left, never splitting a UTF-8 sequence. */
static void cut(char *s, size_t width, bool from_left)
{
    size_t n = strlen(s);
    if (n <= width)
        return;
    if (width < 4) {
        s[width] = '\0';
        return;
    }
    if (from_left) {
        size_t start = n - (width - 3);
        while (start < n && ((unsigned char)s[start] & 0xc0) == 0x80)
            start++;
        memmove(s + 3, s + start, n - start + 1);
        memcpy(s, "...", 3);
    } else {
        size_t end = width - 3;
        while (end > 0 && ((unsigned char)s[end] & 0xc0) == 0x80)
            end--;
        memcpy(s + end, "...", 4);
    }
}

/* say prints one header line, cut to the line limit. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    cut(buf, LINE_MAX_COLS, false);
    puts(buf);
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s && s[1] ? s + 1 : path;
}

/* go_duration prints d the way Go's time.Duration.String does (1m30s, 1.5s,
 * 250ms), for the Duration: header line. */
static void go_duration(char *buf, size_t len, int64_t ns)
{
    const char *sign = ns < 0 ? "-" : "";
    uint64_t u = ns < 0 ? -(uint64_t)ns : (uint64_t)ns;
    if (u < 1000000000ull) {
        const char *unit = "ns";
        double v = (double)u;
        if (u >= 1000000) { v /= 1e6; unit = "ms"; }
        else if (u >= 1000) { v /= 1e3; unit = "\xc2\xb5s"; }
        snprintf(buf, len, "%s%.9g%s", sign, v, unit);
        return;
    }
    uint64_t h = u / 3600000000000ull, m = u / 60000000000ull % 60;
    double s = (double)(u % 60000000000ull) / 1e9;
    if (h)
        snprintf(buf, len, "%s%" PRIu64 "h%" PRIu64 "m%.9gs", sign, h, m, s);
    else if (m)
        snprintf(buf, len, "%s%" PRIu64 "m%.9gs", sign, m, s);
    else
        snprintf(buf, len, "%s%.9gs", sign, s);
}

/* ------------------------------------------------------------------------
 * Rows
 * ---------------------------------------------------------------------- */

static int64_t abs64(int64_t v) { return v < 0 ? -v : v; }

static int row_cmp(const void *a, const void *b)
{
    const node_t *x = *(node_t *const *)a, *y = *(node_t *const *)b;
    if (abs64(x->vflat) != abs64(y->vflat))
        return abs64(x->vflat) > abs64(y->vflat) ? -1 : 1;
    if ((x->vflat > 0) != (y->vflat > 0))          /* diff: growth first */
        return x->vflat > 0 ? -1 : 1;
    if (abs64(x->vcum) != abs64(y->vcum))
        return abs64(x->vcum) > abs64(y->vcum) ? -1 : 1;
    if ((x->vcum > 0) != (y->vcum > 0))
        return x->vcum > 0 ? -1 : 1;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    return strcmp(x->key, y->key);
}

/* loc_of writes a row's last column: base name of the file, ":line" if known. */
static void loc_of(char *buf, size_t len, const node_t *r)
{
    if (r->file[0] && r->line > 0)
        snprintf(buf, len, "%s:%" PRId64, base_name(r->file), r->line);
    else
        snprintf(buf, len, "%s", r->file[0] ? base_name(r->file) : "");
}

/* drop_params removes a C++ parameter list and what follows it ("f(int)
 * const" -> "f"), as pprof's default simplified names do: in 80 columns the
 * qualified name says more than the argument types.  An operator's own
 * characters are part of its name ("F::operator()(int)" -> "F::operator()",
 * "operator<<(...)" -> "operator<<"), not brackets. */
static void drop_params(char *name)
{
    size_t n = strlen(name);
    if (n == 0 || (name[n - 1] != ')' && !strstr(name, ") const")))
        return;
    int depth = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(name + i, "operator", 8) == 0) {
            size_t j = i + 8;
            if (name[j] == '(' && name[j + 1] == ')')
                j += 2;
            else
                while (name[j] && strchr("<>=!+-*/%^&|~[],", name[j]))
                    j++;
            i = j - 1;
        } else if (name[i] == '<')
            depth++;
        else if (name[i] == '>' && depth > 0)
            depth--;
        else if (name[i] == '(' && strncmp(name + i, "(anonymous namespace)", 21) == 0)
            i += 20;
        else if (name[i] == '(' && depth == 0 && i > 0) {
            name[i] = '\0';
            return;
        }
    }
}

/* print_rows prints the column header and one line per row.
 *
 * Layout of the last two columns within the LINE_MAX_COLS budget: the
 * file:line column starts after the longest name where that fits next to
 * the (capped) longest location, so the usual table is aligned; a longer name
 * pushes its own row's location right, and only when name and location
 * cannot share the room is anything cut: the location down to LOC_KEEP
 * (keeping its end, the line number), then the name (keeping its start). */
#define LOC_KEEP 12
static void print_rows(node_t **rows, size_t n, const fmt_t *f, int64_t total)
{
    printf("%10s %5s%% %5s%% %10s %5s%%\n", "flat", "flat", "sum", "cum", "cum");
    char loc[512];
    size_t locw = 0, namew = 0;
    for (size_t i = 0; i < n; i++) {
        loc_of(loc, sizeof loc, rows[i]);
        if (strlen(loc) > locw)
            locw = strlen(loc);
        char nm[512];
        snprintf(nm, sizeof nm, "%s", rows[i]->name);
        drop_params(nm);
        if (strlen(nm) > namew)
            namew = strlen(nm);
    }
    const size_t room0 = LINE_MAX_COLS - 44;   /* after "%10s %6s %6s %10s %6s  " */
    if (locw > LOC_KEEP)
        locw = LOC_KEEP;
    if (locw && namew + 2 + locw > room0)
        namew = room0 - 2 - locw;

    int64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        const node_t *r = rows[i];
        char fv[80], cv[80], fp[16], sp[16], cp[16], line[2048], name[512];
        sum += r->vflat;
        fmt_value(fv, sizeof fv, f, r->vflat);
        fmt_value(cv, sizeof cv, f, r->vcum);
        pct(fp, sizeof fp, r->vflat, total);
        pct(sp, sizeof sp, sum, total);
        pct(cp, sizeof cp, r->vcum, total);
        int pw = snprintf(line, sizeof line, "%10s %s %s %10s %s  ", fv, fp, sp, cv, cp);
        size_t used = pw > 0 ? (size_t)pw : 0;
        size_t room = used < LINE_MAX_COLS ? LINE_MAX_COLS - used : 0;
        loc_of(loc, sizeof loc, r);
        snprintf(name, sizeof name, "%s", r->name);
        drop_params(name);
        size_t ll = strlen(loc), nl = strlen(name);
        if (!ll) {
            cut(name, room, false);
            snprintf(line + used, sizeof line - used, "%s", name);
        } else {
            if (nl + 2 + ll > room) {
                size_t keep = nl + 2 < room ? room - 2 - nl : 0;
                if (keep < LOC_KEEP)
                    keep = ll < LOC_KEEP ? ll : LOC_KEEP;
                if (room < 8)
                    keep = 0;
                else if (keep > room - 8)   /* leave the name a few columns */
                    keep = room - 8;
                cut(loc, keep, true);
                ll = strlen(loc);
                cut(name, room > ll + 2 ? room - ll - 2 : 0, false);
                nl = strlen(name);
            }
            size_t padw = namew > nl ? namew : nl;
            if (padw + 2 + ll > room)
                padw = nl;
            snprintf(line + used, sizeof line - used, "%-*s  %s", (int)padw, name, loc);
        }
        cut(line, LINE_MAX_COLS, false);
        size_t end = strlen(line);      /* no trailing blanks */
        while (end > 0 && line[end - 1] == ' ')
            line[--end] = '\0';
        puts(line);
    }
}

/* ------------------------------------------------------------------------
 * Command line
 * ---------------------------------------------------------------------- */

typedef struct {
    const char *paths[2];
    int npaths;
    bool diff, lines, all;
    const char *sample_type;   /* NULL: the profile's default */
    const char *type_flag;     /* the option that set sample_type */
    long top;
} ropts_t;

/* pick_type resolves the sample type name (or number) in p; -1 with a
 * one-line message if p has no such type. */
static long pick_type(const pp_profile_t *p, const char *path, const char *want)
{
    if (!want)
        return p->default_sample_type >= 0 ? p->default_sample_type : (long)p->nsample_types - 1;
    for (size_t i = 0; i < p->nsample_types; i++)
        if (strcmp(p->sample_types[i].type, want) == 0)
            return (long)i;
    char *end;
    errno = 0;
    long idx = strtol(want, &end, 10);
    if (want[0] && !*end && !errno && idx >= 0 && (size_t)idx < p->nsample_types && isdigit((unsigned char)want[0]))
        return idx;
    char have[512] = "";
    size_t used = 0;
    for (size_t i = 0; i < p->nsample_types && used < sizeof have; i++) {
        int w = snprintf(have + used, sizeof have - used, "%s%s", i ? ", " : "", p->sample_types[i].type);
        used += w > 0 ? (size_t)w : 0;
    }
    complain(EXIT_BAD, "%s: no sample type '%s' (the profile has %s)", path, want, have);
    return -1;
}

static int parse_args(int argc, char **argv, ropts_t *o)
{
    memset(o, 0, sizeof *o);
    o->top = DEFAULT_TOP;
    bool opts_done = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *type = NULL, *val = NULL;
        if (opts_done || a[0] != '-' || strcmp(a, "-") == 0) {
            if (o->npaths == 2)
                return complain(EXIT_USAGE, "report: too many files (try 'memscope report --help')");
            o->paths[o->npaths++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            opts_done = true;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(report_help, stdout);
            return -1;
        }
        if (strcmp(a, "--inuse") == 0)
            type = "inuse_space";
        else if (strcmp(a, "--alloc") == 0)
            type = "alloc_space";
        else if (strcmp(a, "--peak") == 0)
            type = "peak_space";
        else if (strcmp(a, "--lines") == 0)
            o->lines = true;
        else if (strcmp(a, "--all") == 0)
            o->all = true;
        else if (strcmp(a, "--diff") == 0)
            o->diff = true;
        else {
            const char *names[] = {"--sample-index", "--top"};
            int which = -1;
            for (int k = 0; k < 2; k++) {
                size_t n = strlen(names[k]);
                if (strncmp(a, names[k], n) == 0 && (a[n] == '=' || a[n] == '\0')) {
                    which = k;
                    if (a[n] == '=')
                        val = a + n + 1;
                    else if (i + 1 < argc)
                        val = argv[++i];
                    else
                        return complain(EXIT_USAGE, "report: option %s needs an argument", names[k]);
                }
            }
            if (which < 0)
                return complain(EXIT_USAGE, "report: unknown option '%s' (try 'memscope report --help')", a);
            if (which == 0) {
                if (!val[0])
                    return complain(EXIT_USAGE, "report: --sample-index needs a name");
                type = val;
            } else {
                char *end;
                errno = 0;
                long n = strtol(val, &end, 10);
                if (!val[0] || *end || errno || n < 0)
                    return complain(EXIT_USAGE, "report: --top wants a count >= 0, not '%s'", val);
                o->top = n;
            }
        }
        if (type) {
            if (o->sample_type && strcmp(o->sample_type, type) != 0)
                return complain(EXIT_USAGE, "report: %s conflicts with %s: give one sample type", a, o->type_flag);
            o->sample_type = type;
            o->type_flag = a;
        }
    }
    int want = o->diff ? 2 : 1;
    if (o->npaths != want)
        return complain(EXIT_USAGE, o->diff ? "report --diff needs two files, BASE and NEW"
                                            : "report needs one profile file (try 'memscope report --help')");
    return 0;
}

/* ------------------------------------------------------------------------
 * The report
 * ---------------------------------------------------------------------- */

/* main_mapping: pprof's guess of the main binary, the first mapping with a
 * file that is neither a shared library nor a [pseudo] mapping. */
static const pp_mapping_t *main_mapping(const pp_profile_t *p)
{
    for (size_t i = 0; i < p->nmappings; i++) {
        const char *f = p->mappings[i].file;
        while (*f == ' ')
            f++;
        if (!*f || *f == '[')
            continue;
        const char *so = strstr(f, ".so");
        bool lib = false;
        for (; so; so = strstr(so + 1, ".so"))
            if (so[3] == '\0' || ((so[3] == '.' || so[3] == '_') && isdigit((unsigned char)so[4])))
                lib = true;
        if (!lib)
            return &p->mappings[i];
    }
    return NULL;
}

static void print_profile_labels(const pp_profile_t *p, const char *type, int64_t total, const fmt_t *f)
{
    const pp_mapping_t *m = main_mapping(p);
    if (m && m->file[0])
        say("File: %s", base_name(m->file));
    if (m && m->build_id[0])
        say("Build ID: %s", m->build_id);
    for (size_t i = 0; i < p->ncomments; i++)
        if (p->comments[i][0] != '#')
            say("%s", p->comments[i]);
    say("Type: %s", type);
    if (p->time_nanos) {
        time_t t = (time_t)(p->time_nanos / 1000000000);
        struct tm tm;
        char day[64], zone[64];
        if (localtime_r(&t, &tm)) {
            strftime(day, sizeof day, "%b %-d, %Y", &tm);
            strftime(zone, sizeof zone, "%Z", &tm);
            int h = tm.tm_hour % 12 ? tm.tm_hour % 12 : 12;
            say("Time: %s at %d:%02d%s (%s)", day, h, tm.tm_min, tm.tm_hour < 12 ? "am" : "pm", zone);
        }
    }
    if (p->duration_nanos) {
        char d[64], tv[80];
        go_duration(d, sizeof d, p->duration_nanos);
        fmt_value(tv, sizeof tv, f, total);
        say("Duration: %s, Total samples = %s", d, tv);
    }
}

int ms_report_main(int argc, char **argv)
{
    ropts_t o;
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc < 0 ? 0 : rc;

    pp_profile_t *prof[2] = {NULL, NULL};
    char err[256];
    for (int k = 0; k < o.npaths; k++) {
        if (!(prof[k] = ms_pprof_read(o.paths[k], err, sizeof err))) {
            complain(EXIT_BAD, "%s: %s", o.paths[k], err);
            ms_pprof_free(prof[0]);
            return EXIT_BAD;
        }
    }
    /* The sample type: given, or NEW's default; BASE must have it too. */
    const pp_profile_t *shown = prof[o.npaths - 1];
    long vi[2] = {-1, -1};
    vi[o.npaths - 1] = pick_type(shown, o.paths[o.npaths - 1], o.sample_type);
    if (vi[o.npaths - 1] >= 0 && o.diff)
        vi[0] = pick_type(prof[0], o.paths[0], shown->sample_types[vi[1]].type);
    if (vi[0] < 0 || (o.diff && vi[1] < 0)) {
        ms_pprof_free(prof[0]);
        ms_pprof_free(prof[1]);
        return EXIT_BAD;
    }
    const pp_valuetype_t *vt = &shown->sample_types[vi[o.npaths - 1]];

    nodes_t nodes;
    memset(&nodes, 0, sizeof nodes);
    locnodes_t ln[2];
    memset(ln, 0, sizeof ln);
    totals_t tot[2] = {{0, 0}, {0, 0}};
    uint64_t stamp = 0;
    for (int k = 0; k < o.npaths; k++) {
        locnodes_build(prof[k], o.lines, &nodes, &ln[k]);
        tot[k] = accumulate(prof[k], (size_t)vi[k], &ln[k], &nodes, k, &stamp);
    }

    fmt_t f = {false, 1, 0, o.diff};
    double factor = unit_factor(vt->unit);
    if (factor > 0) {
        f.memory = true;
        f.from = factor;
    }

    /* Rows: nodes with something to show, then pprof's cuts. */
    node_t **rows = xcalloc(nodes.n, sizeof *rows);
    size_t nrows = 0, dropped = 0;
    int64_t total, cutoff = 0;
    if (o.diff) {
        total = tot[0].total ? tot[0].total : tot[1].total;
        for (size_t i = 0; i < nodes.n; i++) {
            node_t *n = &nodes.v[i];
            n->vflat = n->flat[1] - n->flat[0];
            n->vcum = n->cum[1] - n->cum[0];
            if (n->vflat || n->vcum)
                rows[nrows++] = n;
        }
    } else {
        total = tot[0].total;
        if (!o.all)
            cutoff = abs64((int64_t)((double)tot[0].flat_sum * NODE_FRACTION));
        for (size_t i = 0; i < nodes.n; i++) {
            node_t *n = &nodes.v[i];
            n->vflat = n->flat[0];
            n->vcum = n->cum[0];
            if (!n->vflat && !n->vcum)
                continue;          /* not in any sample of this type */
            if (cutoff > 0 && abs64(n->vcum) < cutoff)
                dropped++;
            else
                rows[nrows++] = n;
        }
    }
    qsort(rows, nrows, sizeof *rows, row_cmp);
    size_t all_rows = nrows;
    if (o.top > 0 && (size_t)o.top < nrows)
        nrows = (size_t)o.top;

    int64_t min_value = 0, flat_shown = 0;
    for (size_t i = 0; i < nrows; i++) {
        int64_t v = abs64(rows[i]->vflat) ? abs64(rows[i]->vflat) : abs64(rows[i]->vcum);
        if (v > 0 && (min_value == 0 || v < min_value))
            min_value = v;
        flat_shown += rows[i]->vflat;
    }
    if (nrows)
        fmt_pick(&f, min_value, total);

    char a[80], b[80], c[80], pc[16];
    if (o.diff) {
        say("Type: %s", vt->type);
        say("Showing what grew between %s and %s", o.paths[0], o.paths[1]);
        fmt_auto(a, sizeof a, &f, tot[0].total, false);
        fmt_auto(b, sizeof b, &f, tot[1].total, false);
        fmt_auto(c, sizeof c, &f, tot[1].total - tot[0].total, true);
        say("Total %s -> %s (%s), %zu nodes changed", a, b, c, all_rows);
    } else {
        print_profile_labels(shown, vt->type, total, &f);
        fmt_value(a, sizeof a, &f, flat_shown);
        fmt_value(b, sizeof b, &f, total);
        pct(pc, sizeof pc, flat_shown, total);
        const char *pcs = pc;
        while (*pcs == ' ')
            pcs++;
        say("Showing nodes accounting for %s, %s of %s total", a, pcs, b);
        if (dropped && total) {
            fmt_value(c, sizeof c, &f, abs64((int64_t)((double)total * NODE_FRACTION)));
            say("Dropped %zu node%s (cum <= %s)", dropped, dropped > 1 ? "s" : "", c);
        }
    }
    if (nrows < all_rows)
        say("Showing top %zu nodes out of %zu", nrows, all_rows);
    print_rows(rows, nrows, &f, total);

    free(rows);
    for (int k = 0; k < o.npaths; k++) {
        free(ln[k].off);
        free(ln[k].idx);
        ms_pprof_free(prof[k]);
    }
    nodes_free(&nodes);
    if (fflush(stdout) != 0 || ferror(stdout))
        return complain(EXIT_BAD, "writing the report: %s", strerror(errno));
    return 0;
}
