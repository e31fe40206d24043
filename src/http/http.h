/* http.h: the live HTTP endpoint (issue 7), as seen by its own files.
 *
 * The server sits in the front layer, above the allocator and the profiler:
 * it reads them only through memscope_read_stats and src/prof/prof.h, and
 * the core never calls into it.  Its files:
 *
 *   parse.c    the request parser: bounded, allocation-free, no libc state
 *              (so the libFuzzer target in tests/ links it alone)
 *   server.c   the listener thread: poll() over at most MS_HTTP_MAX_CONNS
 *              connections, limits, timeouts, fork, memscope_http_start
 *   routes.c   what each path answers: pprof, /metrics, /debug/vars, JSON
 *   series.c   the ring of once-a-second samples behind the live page
 *   page.c     the live page itself (HTML+JS+CSS, from page.html)
 *
 * Nothing here allocates through the heap it reports on: buffers are static
 * or mapped with ms_os_alloc, and the server thread, one of memscope's own
 * (ms_os_thread), is never sampled in case libc allocates on its behalf.
 */
#ifndef MS_HTTP_H
#define MS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits.  A request (request line and headers) must fit in
 * MS_HTTP_MAX_REQUEST bytes, like redis' PROTO_INLINE_MAX_SIZE bound: the
 * routes take no body, so 8 KiB is generous (browsers send ~1 KiB). */
#define MS_HTTP_MAX_REQUEST 8192
#define MS_HTTP_MAX_HEADERS 32   /* mongoose uses 30 */

/* A view into the request buffer, never owning (mongoose's mg_str). */
typedef struct ms_str_s {
    const char *p;
    size_t n;
} ms_str_t;

typedef struct ms_http_req_s {
    ms_str_t method, target, path, query, version;
    int nheaders;
    int head;             /* 1 if the method is HEAD (no body is sent) */
} ms_http_req_t;

/* ms_http_parse: parses one request from buf[0, len).
 * Returns the bytes of the request head (> 0) and fills *req; 0 if the head
 * is not complete yet (no blank line within len, and len is below the cap);
 * or a negative HTTP status for a request that must be refused:
 *   -400 malformed (control or NUL bytes, bad request line, header without a
 *        colon, a body announced, a path with "..", not HTTP/1.x)
 *   -431 head larger than MS_HTTP_MAX_REQUEST, or more than
 *        MS_HTTP_MAX_HEADERS headers
 *   -405 a well-formed request whose method is not GET or HEAD
 * It reads only buf[0, len) and writes only *req. */
int ms_http_parse(const char *buf, size_t len, ms_http_req_t *req);

/* ms_http_query_int: the value of key in a query string ("a=1&b=2") as a
 * number in [0, max] (clamped), or def if absent or not a number. */
long ms_http_query_int(ms_str_t query, const char *key, long def, long max);
/* ms_http_query_valid: false if key is present with anything but a whole
 * number from 0 to max. */
bool ms_http_query_valid(ms_str_t query, const char *key, long max);
/* ms_http_query_eq: true if key has exactly the value val. */
int ms_http_query_eq(ms_str_t query, const char *key, const char *val);

#ifndef MS_HTTP_PARSER_ONLY
#include "../internal.h"

/* ------------------------------------------------------------------------
 * Output: a buffered writer into a file descriptor (a memfd for a body)
 * ---------------------------------------------------------------------- */
typedef struct ms_out_s {
    int fd;
    size_t len;
    int err;            /* a write failed: later output is dropped */
    char buf[16384];
} ms_out_t;
void ms_out_init(ms_out_t *o, int fd);
void ms_out_write(ms_out_t *o, const char *s, size_t n);
void ms_out_puts(ms_out_t *o, const char *s);
void ms_out_printf(ms_out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ms_out_json_str(ms_out_t *o, const char *s); /* "s" with JSON escapes; null for NULL */
int ms_out_flush(ms_out_t *o);                    /* 0, or -1 if any write failed */

/* ------------------------------------------------------------------------
 * routes.c
 * ---------------------------------------------------------------------- */
/* ms_http_route: writes the body of the answer to req into body_fd (a
 * memfd), and sets *status and *ctype (a static string).  Runs on the
 * server thread.  Returns 0, or a positive number of seconds to wait
 * before calling ms_http_route_finish (the ?seconds=N delta profiles); then
 * *wait_state holds what the route needs to finish. */
int ms_http_route(const ms_http_req_t *req, int body_fd, int *status, const char **ctype, void **wait_state);
/* ms_http_route_finish: the second half of a waiting route (wait_state from
 * ms_http_route); abandon = 1 when the client went away (only frees). */
void ms_http_route_finish(void *wait_state, int body_fd, int *status, const char **ctype, int abandon);
extern _Atomic uint64_t ms_http_requests; /* answered, for /metrics */

/* ------------------------------------------------------------------------
 * series.c: the last MS_SERIES_LEN samples, one a second
 * ---------------------------------------------------------------------- */
#define MS_SERIES_LEN 1800 /* 30 minutes at one sample a second */
void ms_series_sample(void);               /* server thread, once a second */
void ms_series_write_json(ms_out_t *o, long max_points);

/* ------------------------------------------------------------------------
 * page.c
 * ---------------------------------------------------------------------- */
extern const char ms_http_page[];
extern const size_t ms_http_page_len;

/* ------------------------------------------------------------------------
 * server.c
 * ---------------------------------------------------------------------- */
int ms_http_start(const char *addr_port); /* 0 or -1 (one warning printed) */
/* ms_http_fork_child: init.c's fork handler, in the child: the server's
 * thread is the parent's; the child closes its copies of the sockets. */
void ms_http_fork_child(void);
#endif

#endif /* MS_HTTP_H */
