/* parse.c: the HTTP/1.x request parser of the live endpoint.
 *
 * The server answers only GET and HEAD for a handful of fixed paths, so the
 * parser needs the request line, a count of headers and nothing else; what
 * it must get right is refusing everything else without ever reading past
 * the bytes it was given.  It follows mongoose's two phases (see STYLE.md):
 * first find the end of the head (the blank line) inside [buf, buf+len),
 * rejecting NUL and other control bytes as it goes, then parse only inside
 * that head, every cursor move checked against its end.  Results are views
 * into the caller's buffer; nothing is allocated, no libc state is touched
 * (no locale, no errno), which is what lets tests/fuzz_http.c run it alone
 * under libFuzzer.
 *
 * Refusals, and why:
 *   - bytes < 0x20 other than CR/LF/TAB, and 0x7f: smuggling and log
 *     injection vectors, never needed by a GET (400);
 *   - a bare CR, or a line not ending in CRLF/LF: ambiguous framing (400);
 *   - Content-Length other than 0, or any Transfer-Encoding: the routes take
 *     no body, and reading one would hold a connection slot (400);
 *   - "..", "//" or a backslash in the path: only fixed routes exist, but a
 *     traversal attempt is answered plainly as a bad request (400);
 *   - more than MS_HTTP_MAX_HEADERS headers, or a head that does not end
 *     within MS_HTTP_MAX_REQUEST bytes (431);
 *   - a method other than GET/HEAD, checked after the head is known to be
 *     well formed, so that a malformed request is 400 whatever its method,
 *     and a well-formed POST with a body is 405 (405).
 */
#define MS_HTTP_PARSER_ONLY
#include "http.h"

static int str_eq(ms_str_t s, const char *lit) {
    size_t i = 0;
    for (; i < s.n; i++)
        if (lit[i] == 0 || lit[i] != s.p[i]) return 0;
    return lit[i] == 0;
}

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

static int str_ieq(ms_str_t s, const char *lit) {
    size_t i = 0;
    for (; i < s.n; i++)
        if (lit[i] == 0 || lower((unsigned char)lit[i]) != lower((unsigned char)s.p[i])) return 0;
    return lit[i] == 0;
}

static int is_tchar(int c) { /* RFC 9110 token characters */
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
    for (const char *t = "!#$%&'*+-.^_`|~"; *t; t++)
        if (*t == c) return 1;
    return 0;
}

/* head_len: length of the head including its blank line, 0 if not found in
 * [0, len), -400 on a forbidden byte. */
static long head_len(const char *buf, size_t len) {
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c == '\n') {
            /* "\n\n" or "\n\r\n" ends the head */
            if (i + 1 < len && buf[i + 1] == '\n') return (long)(i + 2);
            if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n') return (long)(i + 3);
        } else if (c == '\r') {
            if (i + 1 < len && buf[i + 1] != '\n') return -400; /* bare CR */
        } else if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return -400;
        }
    }
    return 0;
}

/* next_line: the line at *pos (without CR LF), advancing *pos past it. */
static ms_str_t next_line(const char *buf, size_t end, size_t *pos) {
    size_t s = *pos, i = s;
    while (i < end && buf[i] != '\n') i++;
    size_t e = i;
    if (e > s && buf[e - 1] == '\r') e--;
    *pos = i < end ? i + 1 : end;
    return (ms_str_t){buf + s, e - s};
}

static ms_str_t trim(ms_str_t s) {
    while (s.n && (s.p[0] == ' ' || s.p[0] == '\t')) s.p++, s.n--;
    while (s.n && (s.p[s.n - 1] == ' ' || s.p[s.n - 1] == '\t')) s.n--;
    return s;
}

static int path_ok(ms_str_t p) {
    if (p.n == 0 || p.p[0] != '/') return 0;
    for (size_t i = 0; i < p.n; i++) {
        char c = p.p[i];
        if (c == '\\' || (unsigned char)c > 0x7e || c == ' ') return 0;
        if (c == '.' && i + 1 < p.n && p.p[i + 1] == '.') return 0;
        if (c == '/' && i + 1 < p.n && p.p[i + 1] == '/') return 0;
        if (c == '%') return 0; /* no route has an escaped byte; %2e%2e and friends end here */
    }
    return 1;
}

int ms_http_parse(const char *buf, size_t len, ms_http_req_t *req) {
    ms_http_req_t r = {0};
    if (!buf) return len ? -400 : 0;
    size_t scan = len < MS_HTTP_MAX_REQUEST ? len : MS_HTTP_MAX_REQUEST;
    long hl = head_len(buf, scan);
    if (hl < 0) return (int)hl;
    if (hl == 0) return len >= MS_HTTP_MAX_REQUEST ? -431 : 0;
    size_t end = (size_t)hl, pos = 0;

    /* Request line: METHOD SP TARGET SP HTTP/1.x, single spaces. */
    ms_str_t line = next_line(buf, end, &pos);
    size_t i = 0;
    while (i < line.n && is_tchar((unsigned char)line.p[i])) i++;
    if (i == 0 || i >= line.n || line.p[i] != ' ') return -400;
    r.method = (ms_str_t){line.p, i};
    size_t t0 = ++i;
    while (i < line.n && line.p[i] != ' ') i++;
    if (i == t0 || i >= line.n) return -400;
    r.target = (ms_str_t){line.p + t0, i - t0};
    r.version = (ms_str_t){line.p + i + 1, line.n - i - 1};
    if (!str_eq(r.version, "HTTP/1.1") && !str_eq(r.version, "HTTP/1.0")) return -400;
    size_t q = 0;
    while (q < r.target.n && r.target.p[q] != '?' && r.target.p[q] != '#') q++;
    r.path = (ms_str_t){r.target.p, q};
    if (q < r.target.n && r.target.p[q] == '?') {
        size_t qe = q + 1;
        while (qe < r.target.n && r.target.p[qe] != '#') qe++;
        r.query = (ms_str_t){r.target.p + q + 1, qe - q - 1};
    }
    /* a well-formed request for another method is told which ones are
     * served (405), whatever its target ("OPTIONS *" has no path) */
    bool other = !str_eq(r.method, "GET") && !str_eq(r.method, "HEAD");
    if (!other && !path_ok(r.path)) return -400;

    /* Headers: NAME ":" VALUE, until the blank line. */
    int body = 0;
    for (;;) {
        ms_str_t h = next_line(buf, end, &pos);
        if (h.n == 0) break;
        if (++r.nheaders > MS_HTTP_MAX_HEADERS) return -431;
        size_t k = 0;
        while (k < h.n && is_tchar((unsigned char)h.p[k])) k++;
        if (k == 0 || k >= h.n || h.p[k] != ':') return -400; /* also rejects obsolete line folding */
        ms_str_t name = {h.p, k}, val = trim((ms_str_t){h.p + k + 1, h.n - k - 1});
        if (str_ieq(name, "transfer-encoding")) body = 1;
        if (str_ieq(name, "content-length") && !str_eq(val, "0")) body = 1;
    }
    if (str_eq(r.method, "GET")) r.head = 0;
    else if (str_eq(r.method, "HEAD")) r.head = 1;
    else return -405; /* a POST with its body is still 405: the connection is closed after the answer */
    if (body) return -400;
    *req = r;
    return (int)end;
}

/* query_find: the value of key in a query string, or n = ~0 if absent. */
static ms_str_t query_find(ms_str_t q, const char *key) {
    size_t i = 0;
    while (i < q.n) {
        size_t s = i;
        while (i < q.n && q.p[i] != '&') i++;
        ms_str_t item = {q.p + s, i - s};
        size_t eq = 0;
        while (eq < item.n && item.p[eq] != '=') eq++;
        if (str_eq((ms_str_t){item.p, eq}, key))
            return eq < item.n ? (ms_str_t){item.p + eq + 1, item.n - eq - 1} : (ms_str_t){item.p + eq, 0};
        i++;
    }
    return (ms_str_t){0, (size_t)-1};
}

long ms_http_query_int(ms_str_t query, const char *key, long def, long max) {
    ms_str_t v = query_find(query, key);
    if (v.n == (size_t)-1 || v.n == 0) return def;
    long x = 0;
    for (size_t i = 0; i < v.n; i++) {
        if (v.p[i] < '0' || v.p[i] > '9') return def;
        if (x <= max) x = x * 10 + (v.p[i] - '0');
    }
    return x > max ? max : x;
}

bool ms_http_query_valid(ms_str_t query, const char *key, long max) {
    ms_str_t v = query_find(query, key);
    if (v.n == (size_t)-1) return true;
    if (v.n == 0 || v.n > 9) return false;
    long x = 0;
    for (size_t i = 0; i < v.n; i++) {
        if (v.p[i] < '0' || v.p[i] > '9') return false;
        x = x * 10 + (v.p[i] - '0');
    }
    return x <= max;
}

int ms_http_query_eq(ms_str_t query, const char *key, const char *val) {
    ms_str_t v = query_find(query, key);
    return v.n != (size_t)-1 && str_eq(v, val);
}
