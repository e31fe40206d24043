/* options.c: the MEMSCOPE environment variable.
 *
 * MEMSCOPE is a comma-separated key=value list, like GODEBUG:
 *     MEMSCOPE=trace=1,scavenge_delay_ms=500
 * Every key is declared once in MS_OPTIONS below: name, kind, default,
 * range, help.  That list generates the parser and the warnings (an
 * unknown key is answered with the list of known ones); the README's table
 * of keys is kept by hand and tests/test_options.sh checks every key of
 * this list against it.  A bad item never stops the program: it gets one
 * line on stderr naming the key, what was given and what is accepted, and
 * the default stays.  The variable is read with secure_getenv (ignored in
 * set-uid programs) once, at load time, before the program's main.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

const char ms_env_name[] __attribute__((section("memscope_rodata"))) = "MEMSCOPE"; /* internal.h: MS_ENV */

/* X(name, kind, default, min, max, help).  OPT_STRING keys take any text
 * up to max bytes (default ""); OPT_CHOICE keys take one of the words in
 * help's leading "a|b|c:" list and store its index. */
#define MS_OPTIONS(X)                                                                                      \
    X(trace, OPT_BOOL, 0, 0, 1, "print one line per heap cycle and per scavenge to stderr")               \
    X(stats, OPT_BOOL, 0, 0, 1, "print a summary of the heap statistics to stderr at exit")               \
    X(scavenge_delay_ms, OPT_DURATION, 1000, 0, 3600000,                                                   \
      "return idle heap pages to the OS once idle this long (ms; or with a unit: 500ms, 2s)")             \
    X(profile_rate, OPT_BYTES, 524288, 0, (int64_t)1 << 40,                                                \
      "heap profile: sample one allocation per this many bytes on average (1: all, 0: off)")              \
    X(heapprofile, OPT_STRING, 0, 0, MS_OPT_PATH_MAX - 1,                                                  \
      "write a heap profile (pprof) to this path at exit; %p becomes the pid")                             \
    X(leaks, OPT_CHOICE, 0, 0, 3,                                                                          \
      "0|1|exit|reachable: at exit, list what is still allocated by stack; exit: and exit with status 23 " \
      "if any; reachable: report blocks nothing references (LeakSanitizer-style, status 23 if any)")      \
    X(leaks_mmap, OPT_CHOICE, 0, 0, 2,                                                                     \
      "0|1|shared: leak checks also read the memory the program mapped itself (mmap) for pointers to "    \
      "blocks; 1: private mappings, shared: shared ones too")                                             \
    X(http, OPT_STRING, 0, 0, MS_OPT_HTTP_MAX - 1,                                                        \
      "serve /debug/pprof, /metrics and a live page on PORT or ADDR:PORT (127.0.0.1 by default)")         \
    X(log, OPT_STRING, 0, 0, MS_OPT_PATH_MAX - 1,                                                          \
      "write memscope's lines to this file instead of stderr (appended); %p becomes the pid")             \
    X(hugepages, OPT_BOOL, 1, 0, 1,                                                                        \
      "back dense, fully resident 2 MiB regions of the heap with huge pages (MADV_COLLAPSE)")

enum { OPT_BOOL, OPT_DURATION, OPT_BYTES, OPT_STRING, OPT_CHOICE };

options_t ms_opt = {
#define X(name, kind, def, min, max, help) .name = OPT_INIT_##kind(def),
    MS_OPTIONS(X)
#undef X
};

typedef struct optdesc_s {
    const char *name;
    int kind;
    int64_t def, min, max;
    size_t offset;
    const char *help;
} optdesc_t;

static const optdesc_t table[] = {
#define X(name, kind, def, min, max, help) {#name, kind, def, min, max, offsetof(options_t, name), help},
    MS_OPTIONS(X)
#undef X
};
#define NOPTS (sizeof table / sizeof table[0])

static void store(options_t *o, const optdesc_t *d, int64_t v, const char *text, size_t n) {
    char *field = (char *)o + d->offset;
    if (d->kind == OPT_BOOL) *(bool *)field = v != 0;
    else if (d->kind == OPT_STRING) memcpy(field, text, n), field[n] = 0;
    else *(int64_t *)field = v;
}

static bool word_eq(const char *s, size_t n, const char *w) { return strlen(w) == n && strncasecmp(s, w, n) == 0; }

/* choice: the index of [s, s+n) in d's "a|b|c:" word list, or -1. */
static int choice(const optdesc_t *d, const char *s, size_t n) {
    const char *w = d->help;
    for (int i = 0;; i++) {
        size_t len = strcspn(w, "|:");
        if (len == n && strncasecmp(w, s, n) == 0) return i;
        if (w[len] != '|') return -1;
        w += len + 1;
    }
}

/* scaled: x << shift, or INT64_MAX (out of every range) if that would not
 * fit: "17592186044417m" used to shift into the sign bit (undefined) and
 * wrap to 1 MiB, accepted (found by tests/fuzz_options.c). */
static int64_t scaled(uint64_t x, unsigned shift) {
    return x > ((uint64_t)1 << 50) >> shift ? INT64_MAX : (int64_t)(x << shift);
}

/* parse_value: true and *v set if [s, s+n) is a valid value of kind d. */
static bool parse_value(const optdesc_t *d, const char *s, size_t n, int64_t *v) {
    if (d->kind == OPT_BOOL) {
        if (word_eq(s, n, "1") || word_eq(s, n, "true") || word_eq(s, n, "yes") || word_eq(s, n, "on")) *v = 1;
        else if (word_eq(s, n, "0") || word_eq(s, n, "false") || word_eq(s, n, "no") || word_eq(s, n, "off")) *v = 0;
        else return false;
        return true;
    }
    if (d->kind == OPT_STRING) {
        *v = (int64_t)n;
        return memchr(s, 0, n) == NULL;
    }
    if (d->kind == OPT_CHOICE) {
        int i = choice(d, s, n);
        *v = i;
        return i >= 0;
    }
    size_t i = 0;
    uint64_t x = 0;
    if (n == 0) return false;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        x = x * 10 + (uint64_t)(s[i] - '0');
        if (x > ((uint64_t)1 << 50)) return false; /* overflow guard, far above any max */
    }
    if (i == 0) return false;
    if (i == n) *v = (int64_t)x;
    else if (d->kind == OPT_DURATION && word_eq(s + i, n - i, "ms")) *v = (int64_t)x;
    else if (d->kind == OPT_DURATION && word_eq(s + i, n - i, "s")) *v = (int64_t)x * 1000;
    else if (d->kind == OPT_BYTES && (word_eq(s + i, n - i, "k") || word_eq(s + i, n - i, "KiB"))) *v = scaled(x, 10);
    else if (d->kind == OPT_BYTES && (word_eq(s + i, n - i, "m") || word_eq(s + i, n - i, "MiB"))) *v = scaled(x, 20);
    else return false;
    return true;
}

static const char *accepted(const optdesc_t *d, char *buf, size_t cap) {
    switch (d->kind) {
    case OPT_BOOL: return "1/0, true/false, yes/no or on/off";
    case OPT_DURATION: return "a number of ms, or with a unit: 500ms, 2s";
    case OPT_BYTES: return "a number of bytes, or with a unit: 512k, 1m";
    case OPT_STRING: return "text without NUL bytes";
    default: ms_snprintf(buf, cap, "one of %.*s", (int)strcspn(d->help, ":"), d->help); return buf;
    }
}

/* shown: [s, s+n) made safe for a one-line message: at most 64 bytes,
 * control and non-ASCII bytes as \xHH, "..." if cut. */
static const char *shown(const char *s, size_t n, char *out, size_t cap) {
    static const char hex[] = "0123456789abcdef";
    size_t k = 0, i = 0;
    for (; i < n && i < 64 && k + 8 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
            out[k++] = '\\', out[k++] = 'x', out[k++] = hex[c >> 4], out[k++] = hex[c & 15];
        } else {
            out[k++] = (char)c;
        }
    }
    if (i < n && k + 4 < cap) out[k++] = '.', out[k++] = '.', out[k++] = '.';
    out[k] = 0;
    return out;
}

int ms_options_parse(const char *text, options_t *o, void (*warn)(const char *msg)) {
    int nwarn = 0;
    char msg[512], sh[300];
    const char *p = text;
    while (p && *p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        if (len == 0) {
            /* empty item, as in "trace=1,,stats=1": nothing to do */
        } else if (!eq) {
            ms_snprintf(msg, sizeof msg, "memscope: MEMSCOPE item \"%s\" has no value (write key=value); ignored",
                        shown(p, len, sh, sizeof sh));
            warn(msg), nwarn++;
        } else {
            size_t klen = (size_t)(eq - p), vlen = len - klen - 1;
            const optdesc_t *d = NULL;
            for (size_t i = 0; i < NOPTS; i++)
                if (strlen(table[i].name) == klen && strncmp(table[i].name, p, klen) == 0) d = &table[i];
            int64_t v;
            if (!d) {
                char known[256];
                size_t k = 0;
                for (size_t i = 0; i < NOPTS; i++)
                    k += ms_snprintf(known + k, sizeof known - k, "%s%s", i ? ", " : "", table[i].name);
                ms_snprintf(msg, sizeof msg, "memscope: MEMSCOPE key \"%s\" is unknown (known keys: %s); ignored",
                            shown(p, klen, sh, sizeof sh), known);
                warn(msg), nwarn++;
            } else if (!parse_value(d, eq + 1, vlen, &v)) {
                char acc[96], def[64];
                if (d->kind == OPT_STRING) ms_snprintf(def, sizeof def, "ignored");
                else if (d->kind == OPT_CHOICE) ms_snprintf(def, sizeof def, "using the default %.*s",
                                                            (int)strcspn(d->help, "|:"), d->help);
                else ms_snprintf(def, sizeof def, "using the default %lld", (long long)d->def);
                ms_snprintf(msg, sizeof msg, "memscope: MEMSCOPE %s=\"%s\" is not valid (want %s); %s", d->name,
                            shown(eq + 1, vlen, sh, sizeof sh), accepted(d, acc, sizeof acc), def);
                warn(msg), nwarn++;
                if (d->kind != OPT_STRING) store(o, d, d->def, NULL, 0); /* as said, also after an earlier good value */
            } else if (d->kind == OPT_STRING ? v > d->max : (v < d->min || v > d->max)) {
                if (d->kind == OPT_STRING)
                    ms_snprintf(msg, sizeof msg, "memscope: MEMSCOPE %s is too long (at most %lld bytes); ignored",
                                d->name, (long long)d->max);
                else
                    ms_snprintf(msg, sizeof msg,
                                "memscope: MEMSCOPE %s=%s is out of range (must be between %lld and %lld); using the "
                                "default %lld",
                                d->name, shown(eq + 1, vlen, sh, sizeof sh), (long long)d->min, (long long)d->max,
                                (long long)d->def);
                warn(msg), nwarn++;
                if (d->kind != OPT_STRING) store(o, d, d->def, NULL, 0);
            } else {
                store(o, d, v, eq + 1, vlen);
            }
        }
        p = end ? end + 1 : NULL;
    }
    return nwarn;
}

static void warn_stderr(const char *msg) { ms_warn("%s", msg); }
static void warn_none(const char *msg) { (void)msg; }

/* log_first: where memscope's lines go (log.c), set up before MEMSCOPE's
 * warnings are written: a first, silent pass finds the log file, which
 * may be named after a bad item.  Cold: only a process with MEMSCOPE set
 * runs it. */
ms_cold static void log_first(const char *env) {
    options_t first = ms_opt;
    ms_options_parse(env, &first, warn_none);
    ms_log_init(first.stats || first.leaks || first.trace, first.log);
}

void ms_options_init(void) {
    const char *env = secure_getenv(MS_ENV);
    if (!env) {
        ms_log_init(false, NULL);
        return;
    }
    log_first(env);
    ms_options_parse(env, &ms_opt, warn_stderr);
    /* leak-check mode: every block keeps its allocation stack, unless a
     * rate was asked for (the cost is in the README) */
    if (ms_opt.leaks == LEAKS_REACHABLE && !strstr(env, "profile_rate=")) ms_opt.profile_rate = 1;
}
