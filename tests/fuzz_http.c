/* fuzz_http.c: libFuzzer target on the request parser (src/http/parse.c),
 * built and run by tests/test_http_fuzz.sh with ASan and UBSan.
 *
 * Beyond "no crash, no read outside the input" (the sanitizers' part), it
 * checks the parser's contract: the result is 0, a refusal (-400, -405,
 * -431) or a head length within the input; every view of a parsed request
 * lies inside the input; and the query helpers stay in their bounds. */
#define MS_HTTP_PARSER_ONLY
#include "http.h"

#include <stdlib.h>

static void inside(ms_str_t s, const char *buf, size_t len) {
    if (s.n && (s.p < buf || s.p + s.n > buf + len)) abort();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    const char *buf = (const char *)data;
    ms_http_req_t r;
    int n = ms_http_parse(buf, size, &r);
    if (n > 0) {
        if ((size_t)n > size || n > MS_HTTP_MAX_REQUEST) abort();
        inside(r.method, buf, size), inside(r.target, buf, size), inside(r.path, buf, size);
        inside(r.query, buf, size), inside(r.version, buf, size);
        if (r.nheaders > MS_HTTP_MAX_HEADERS || r.path.n == 0 || r.path.p[0] != '/') abort();
        for (size_t i = 0; i + 1 < r.path.n; i++)
            if (r.path.p[i] == '.' && r.path.p[i + 1] == '.') abort(); /* traversal must never parse */
        long v = ms_http_query_int(r.query, "seconds", 7, 60);
        if (v < 0 || v > 60) abort();
        (void)ms_http_query_eq(r.query, "by", "peak");
    } else if (n != 0 && n != -400 && n != -405 && n != -431) {
        abort();
    }
    ms_http_parse(NULL, 0, &r);
    return 0;
}
