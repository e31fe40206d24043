/* server.c: the live endpoint's listener, inside someone else's program.
 *
 * One thread, started on request (MEMSCOPE=http=..., memscope_http_start, or
 * `memscope run --http`), serves every connection with poll(): at most
 * MS_HTTP_MAX_CONNS at once, each in a fixed slot of a static array, so a
 * flood of clients costs a bounded amount of memory and never a thread.
 * A connection goes READ -> (WAIT) -> WRITE -> LINGER -> closed:
 *   READ    the request head is read into the slot's 8 KiB buffer and parsed
 *           (parse.c) after every read; it must arrive within
 *           MS_HTTP_READ_TIMEOUT_MS of the accept, however slowly it
 *           dribbles (a slowloris client is cut off at that deadline).
 *   WAIT    a ?seconds=N profile: the slot waits, polled for the client
 *           going away (then the first snapshot is dropped and the slot
 *           freed), while every other connection is served meanwhile.
 *   WRITE   the answer: a small head from the slot, then the body from a
 *           memfd with sendfile, non-blocking; a client that stops reading
 *           for MS_HTTP_WRITE_TIMEOUT_MS is dropped.
 *   LINGER  after the answer, the write side is shut and unread input is
 *           drained for a moment, so that a client still sending (a 1 MiB
 *           header answered by 431) reads its answer instead of a reset.
 * When every slot is busy and a new client connects, the slot that has been
 * reading its head the longest is closed for it: a normal request is
 * answered at once even while dozens of slow clients hold connections.
 *
 * Bodies are built into an anonymous memfd, so every answer carries a
 * Content-Length (pprof and Prometheus both like one) and a large profile
 * costs page cache, not heap.  Every answer says "Connection: close".
 *
 * The server's own code never calls malloc: buffers are static, bodies live
 * in memfds.  The thread is marked internal to the profiler so that what
 * libc may allocate for it (thread start, sendfile does not) is not sampled,
 * and it blocks every signal, so the host's handlers never run on it.
 * It samples the heap once a second for the live page (series.c).
 *
 * fork(): the child has no server thread.  init.c's fork handler, which owns
 * fork for every layer, calls ms_http_fork_child there: it closes the
 * inherited sockets and marks the server stopped; the child serves again
 * only if it calls memscope_http_start itself.
 */
#include "http.h"
#include "../leak/leak.h"
#include "../prof/prof.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* Why these values: 16 connections is far more than a browser tab, a
 * Prometheus scraper and a `memscope top` need together; 5 s to send a
 * request head is ample on any network that can reach the port; a profile
 * of 100,000 stacks is a few MB, which a reader that reads at all takes in
 * well under the 10 s allowed without progress. */
#define MS_HTTP_MAX_CONNS 16
#define MS_HTTP_READ_TIMEOUT_MS 5000
#define MS_HTTP_WRITE_TIMEOUT_MS 10000
#define MS_HTTP_LINGER_MS 1000
#define MS_HTTP_SAMPLE_MS 1000

enum { C_FREE = 0, C_READ, C_WAIT, C_WRITE, C_LINGER };

typedef struct conn_s {
    int fd;
    int state;
    uint64_t deadline_ms;  /* READ/WRITE/LINGER: give up at; WAIT: finish at */
    uint64_t accepted;      /* accept order: which connection is oldest (a ms clock ties a burst) */
    size_t inlen;          /* bytes of in[] filled */
    size_t headlen, headoff; /* answer head in head[], bytes sent */
    int body_fd;           /* memfd of the body, -1 if none (or HEAD) */
    off_t body_off, body_len;
    void *wait;            /* WAIT: the route's state */
    int wait_head;         /* WAIT: the request was HEAD */
    char in[MS_HTTP_MAX_REQUEST];
    char head[512];
} conn_t;

static conn_t conns[MS_HTTP_MAX_CONNS];
static int listen_fd = -1;
static ino_t listen_ino;  /* the socket's, to tell whether the descriptor is still it */

/* high_fd: fd moved to a descriptor number of 512 or more (closing fd), so
 * that the server's sockets leave the low numbers to the program: one that
 * expects its next open to give 3, or dup2s a file onto 3 (a shell's exec
 * 3>file), found the listening socket there (a helper session's sweep: the
 * server then spun on poll over the program's file, and answered the
 * program's own clients with 408).  fd as it is if the limit is lower. */
#define HIGH_FD 512
static int high_fd(int fd) {
    if (fd < 0 || fd >= HIGH_FD) return fd;
    int saved = errno;
    int h = fcntl(fd, F_DUPFD_CLOEXEC, HIGH_FD);
    if (h >= 0) {
        close(fd);
        fd = h;
    }
    errno = saved;
    return fd;
}

/* still_ours: the listening descriptor is still the server's socket (the
 * program may have closed it, or put a file of its own there) */
static bool still_ours(void) {
    struct stat st;
    int saved = errno;
    bool ok = listen_fd >= 0 && fstat(listen_fd, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_ino == listen_ino;
    errno = saved;
    return ok;
}
static pthread_t server_thread;
static _Atomic int running;             /* a server thread exists in this process */
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
static char url[96];

/* ------------------------------------------------------------------------
 * Answers
 * ---------------------------------------------------------------------- */

static const char *reason(int status) {
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

static void close_conn(conn_t *c) {
    if (c->wait) {
        int st;
        const char *ct;
        ms_http_route_finish(c->wait, -1, &st, &ct, 1);
        c->wait = NULL;
    }
    if (c->body_fd >= 0) close(c->body_fd);
    if (c->fd >= 0) close(c->fd);
    c->fd = c->body_fd = -1;
    c->state = C_FREE;
}

/* start_write: the answer's head (and, for a body_fd, its length), then
 * the WRITE state. */
static void start_write(conn_t *c, int status, const char *ctype, int body_fd, int head_only, uint64_t now) {
    off_t len = 0;
    if (body_fd >= 0) {
        struct stat sb;
        len = fstat(body_fd, &sb) == 0 ? sb.st_size : 0;
    }
    c->headlen = ms_snprintf(c->head, sizeof c->head,
                             "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %lld\r\n"
                             "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
                             "Connection: close\r\n%s\r\n",
                             status, reason(status), ctype, (long long)len,
                             status == 405 ? "Allow: GET, HEAD\r\n" : "");
    if (c->headlen >= sizeof c->head) c->headlen = sizeof c->head - 1;
    c->headoff = 0;
    if (head_only && body_fd >= 0) close(body_fd), body_fd = -1;
    c->body_fd = body_fd;
    c->body_off = 0;
    c->body_len = body_fd >= 0 ? len : 0;
    c->state = C_WRITE;
    c->deadline_ms = now + MS_HTTP_WRITE_TIMEOUT_MS;
    atomic_fetch_add(&ms_http_requests, 1);
}

static int new_body(void) { return memfd_create("memscope-http", MFD_CLOEXEC); }

/* error_answer: a one-line text body for status. */
static void error_answer(conn_t *c, int status, const char *line, int head_only, uint64_t now) {
    int fd = new_body();
    if (fd >= 0) ms_write_fd(fd, line, strlen(line));
    start_write(c, status, "text/plain; charset=utf-8", fd, head_only, now);
}

static void handle_request(conn_t *c, uint64_t now) {
    ms_http_req_t req;
    int n = ms_http_parse(c->in, c->inlen, &req);
    if (n == 0) return; /* need more */
    if (n < 0) {
        int st = -n;
        error_answer(c, st,
                     st == 431   ? "request head too large or too many headers\n"
                     : st == 405 ? "only GET and HEAD are served\n"
                                 : "bad request\n",
                     0, now);
        return;
    }
    int fd = new_body();
    if (fd < 0) {
        error_answer(c, 503, "no memory for the answer\n", req.head, now);
        return;
    }
    int status = 500;
    const char *ctype = "text/plain; charset=utf-8";
    void *wait = NULL;
    int secs = ms_http_route(&req, fd, &status, &ctype, &wait);
    if (secs > 0 && wait) {
        close(fd);
        c->wait = wait;
        c->wait_head = req.head;
        c->state = C_WAIT;
        c->deadline_ms = now + (uint64_t)secs * 1000;
        return;
    }
    start_write(c, status, ctype, fd, req.head, now);
}

/* ------------------------------------------------------------------------
 * The loop
 * ---------------------------------------------------------------------- */

static void on_readable(conn_t *c, uint64_t now) {
    if (c->state == C_READ) {
        ssize_t r = recv(c->fd, c->in + c->inlen, sizeof c->in - c->inlen, 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) return close_conn(c);
        if (r > 0) {
            c->inlen += (size_t)r;
            handle_request(c, now);
        }
        return;
    }
    /* WAIT or LINGER: input is drained and dropped; EOF ends the connection
     * (a WAIT client that went away abandons its profile). */
    char junk[4096];
    ssize_t r = recv(c->fd, junk, sizeof junk, 0);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) close_conn(c);
}

static void on_writable(conn_t *c, uint64_t now) {
    while (c->headoff < c->headlen) {
        ssize_t w = send(c->fd, c->head + c->headoff, c->headlen - c->headoff, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR) return;
            return close_conn(c);
        }
        c->headoff += (size_t)w;
        c->deadline_ms = now + MS_HTTP_WRITE_TIMEOUT_MS;
    }
    while (c->body_fd >= 0 && c->body_off < c->body_len) {
        ssize_t w = sendfile(c->fd, c->body_fd, &c->body_off, (size_t)(c->body_len - c->body_off));
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR) return;
            return close_conn(c);
        }
        if (w == 0) break;
        c->deadline_ms = now + MS_HTTP_WRITE_TIMEOUT_MS;
    }
    if (c->body_fd >= 0) close(c->body_fd), c->body_fd = -1;
    shutdown(c->fd, SHUT_WR);
    c->state = C_LINGER;
    c->deadline_ms = now + MS_HTTP_LINGER_MS;
}

static uint64_t accepts; /* connections accepted so far (the server thread's) */

/* free_slot: a free slot, or NULL and in *oldest the longest-held one that
 * may be evicted: still reading its request, or lingering after its answer */
static conn_t *free_slot(conn_t **oldest) {
    *oldest = NULL;
    for (int i = 0; i < MS_HTTP_MAX_CONNS; i++) {
        if (conns[i].state == C_FREE) return &conns[i];
        if ((conns[i].state == C_READ || conns[i].state == C_LINGER) &&
            (!*oldest || conns[i].accepted < (*oldest)->accepted))
            *oldest = &conns[i];
    }
    return NULL;
}

static void accept_all(uint64_t now) {
    for (int k = 0; k < 64; k++) {
        int fd = high_fd(accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (fd < 0) return;
        conn_t *oldest, *slot = free_slot(&oldest);
        if (!slot) {
            /* Every slot is taken.  Read first what the connections still
             * reading have received: a complete request is then answered,
             * not evicted (a burst of 17 complete requests reset the first
             * one's connection), and only a slow or idle client is left to
             * evict. */
            for (int i = 0; i < MS_HTTP_MAX_CONNS; i++)
                if (conns[i].state == C_READ) on_readable(&conns[i], now);
            slot = free_slot(&oldest);
        }
        bool evicted = false;
        if (!slot && oldest) close_conn(oldest), slot = oldest, evicted = true;
        if (!slot) { /* every slot is answering or waiting: a 503 saying so, then the client retries */
            static const char body[] = "memscope: every connection is busy answering; retry soon\n";
            char busy[256];
            size_t n = ms_snprintf(busy, sizeof busy,
                                   "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                                   "Content-Length: %zu\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s",
                                   sizeof body - 1, body);
            char drain[1024]; /* what the client sent already: unread, closing would reset the 503 */
            while (recv(fd, drain, sizeof drain, MSG_DONTWAIT) > 0) {}
            if (send(fd, busy, n < sizeof busy ? n : sizeof busy - 1, MSG_DONTWAIT | MSG_NOSIGNAL) > 0)
                shutdown(fd, SHUT_WR);
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        slot->fd = fd;
        slot->body_fd = -1;
        slot->wait = NULL;
        slot->inlen = 0;
        slot->state = C_READ;
        slot->accepted = ++accepts;
        slot->deadline_ms = now + MS_HTTP_READ_TIMEOUT_MS;
        /* One eviction per round: the rest of the backlog waits until the
         * connections just accepted have had their request read.  Accepting
         * a whole burst of clients into full slots let a later one evict an
         * earlier one of the same burst, a normal request among them, before
         * its request was even read (a reset, seen under load). */
        if (evicted) return;
    }
}

static void on_deadline(conn_t *c, uint64_t now) {
    if (c->state == C_WAIT) {
        int st = 500;
        const char *ct = "text/plain; charset=utf-8";
        int fd = new_body();
        void *w = c->wait;
        c->wait = NULL;
        ms_http_route_finish(w, fd, &st, &ct, fd < 0);
        if (fd < 0) return error_answer(c, 503, "no memory for the answer\n", c->wait_head, now);
        start_write(c, st, ct, fd, c->wait_head, now);
        return;
    }
    if (c->state == C_READ && c->inlen > 0) return error_answer(c, 408, "request head not received in time\n", 0, now);
    close_conn(c);
}

static void *server_main(void *arg) {
    (void)arg;
    struct pollfd pfd[MS_HTTP_MAX_CONNS + 1];
    conn_t *who[MS_HTTP_MAX_CONNS + 1];
    /* The first sample (a read of /proc/.../statm, which takes the lowest
     * free descriptor for a moment) waits an interval: taken at once, it
     * met the program's first open, which got 4 instead of 3, now that
     * ms_os_thread returns only once this thread runs. */
    uint64_t next_sample = ms_os_now_ms() + MS_HTTP_SAMPLE_MS;
    for (;;) {
        uint64_t now = ms_os_now_ms();
        if (now >= next_sample) {
            /* every thread of the program has exited: leave, so that the
             * process ends (os.c: ms_os_thread); the sockets go with it */
            if (ms_os_program_gone()) return NULL;
            if (!still_ours()) { /* not ours to close any more */
                ms_warn("memscope: http: the program closed or replaced the server's socket (descriptor %d); "
                        "no longer serving", listen_fd);
                /* The connections' descriptors are left as they are: they
                 * may be the program's now too (a later start resets the
                 * slots).  memscope_http_start may serve again: it once
                 * said "already serving". */
                pthread_mutex_lock(&start_lock);
                listen_fd = -1;
                atomic_store(&running, 0);
                pthread_mutex_unlock(&start_lock);
                return NULL;
            }
            ms_series_sample();
            next_sample += MS_HTTP_SAMPLE_MS;
            if (next_sample <= now) next_sample = now + MS_HTTP_SAMPLE_MS;
        }
        uint64_t wake = next_sample;
        int n = 0;
        pfd[n] = (struct pollfd){.fd = listen_fd, .events = POLLIN};
        who[n++] = NULL;
        for (int i = 0; i < MS_HTTP_MAX_CONNS; i++) {
            conn_t *c = &conns[i];
            if (c->state == C_FREE) continue;
            if (c->deadline_ms < wake) wake = c->deadline_ms;
            pfd[n] = (struct pollfd){.fd = c->fd, .events = c->state == C_WRITE ? POLLOUT : POLLIN};
            who[n++] = c;
        }
        int timeout = wake > now ? (int)(wake - now) : 0;
        int r = poll(pfd, (nfds_t)n, timeout);
        now = ms_os_now_ms();
        if (r < 0 && errno != EINTR) {
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
            continue;
        }
        for (int k = 1; r > 0 && k < n; k++) {
            conn_t *c = who[k];
            if (c->state == C_FREE || !pfd[k].revents) continue;
            if (pfd[k].revents & POLLNVAL) close_conn(c);
            else if (c->state == C_WRITE) on_writable(c, now);
            else on_readable(c, now);
        }
        if (r > 0 && (pfd[0].revents & POLLIN)) accept_all(now);
        for (int i = 0; i < MS_HTTP_MAX_CONNS; i++)
            if (conns[i].state != C_FREE && conns[i].deadline_ms <= now) on_deadline(&conns[i], now);
    }
    return NULL;
}

/* ------------------------------------------------------------------------
 * Start, fork
 * ---------------------------------------------------------------------- */

/* The child of a fork has no server thread: drop the inherited sockets
 * (the parent still serves on them) and allow a new start.  Only close()
 * and a mutex's re-creation: safe in the child of a fork from a signal
 * handler too, which is why init.c calls it even for a bare fork. */
void ms_http_fork_child(void) {
    if (!atomic_load(&running)) return;
    for (int i = 0; i < MS_HTTP_MAX_CONNS; i++) {
        if (conns[i].state == C_FREE) continue;
        if (conns[i].fd >= 0) close(conns[i].fd);
        if (conns[i].body_fd >= 0) close(conns[i].body_fd);
        conns[i].wait = NULL; /* its snapshot memory is the parent's business; the child's copy is dropped */
        conns[i].state = C_FREE;
    }
    if (listen_fd >= 0) close(listen_fd);
    listen_fd = -1;
    pthread_mutex_init(&start_lock, NULL);
    atomic_store(&running, 0);
}

/* parse_addr: "PORT", ":PORT", "ADDR:PORT" or "localhost:PORT" into sa. */
static bool parse_addr(const char *s, struct sockaddr_in *sa) {
    char host[64] = "127.0.0.1";
    const char *colon = strrchr(s, ':'), *port = s;
    if (colon) {
        size_t hn = (size_t)(colon - s);
        if (hn >= sizeof host) return false;
        if (hn) {
            memcpy(host, s, hn);
            host[hn] = 0;
        }
        port = colon + 1;
    }
    if (strcmp(host, "localhost") == 0) strcpy(host, "127.0.0.1");
    if (!*port) return false;
    unsigned long p = 0;
    for (const char *q = port; *q; q++) {
        if (*q < '0' || *q > '9') return false;
        p = p * 10 + (unsigned long)(*q - '0');
        if (p > 65535) return false;
    }
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)p);
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1;
}

int ms_http_start(const char *addr_port) {
    ms_ensure_init();
    if (!addr_port || !*addr_port) addr_port = "6060";
    struct sockaddr_in sa;
    if (!parse_addr(addr_port, &sa)) {
        ms_warn("memscope: http address \"%.64s\" is not valid (want PORT or IPV4:PORT, e.g. 6060 or "
                "0.0.0.0:6060); not serving", addr_port);
        return -1;
    }
    pthread_mutex_lock(&start_lock);
    if (atomic_load(&running)) {
        pthread_mutex_unlock(&start_lock);
        ms_warn("memscope: http: already serving %s; not starting another server", url);
        return -1;
    }
    int saved = errno;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 64) != 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        pthread_mutex_unlock(&start_lock);
        ms_warn("memscope: http: cannot listen on %.64s: %s; the program goes on without the endpoint", addr_port,
                ms_errstr(e));
        errno = saved;
        return -1;
    }
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    char host[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &sa.sin_addr, host, sizeof host);
    ms_snprintf(url, sizeof url, "http://%s:%u/", host, (unsigned)ntohs(sa.sin_port));
    for (int i = 0; i < MS_HTTP_MAX_CONNS; i++) conns[i] = (conn_t){.fd = -1, .body_fd = -1};
    fd = high_fd(fd);
    struct stat lst;
    listen_ino = fstat(fd, &lst) == 0 ? lst.st_ino : 0;
    listen_fd = fd;
    int rc = ms_os_thread(server_main, 0, "memscope-http", &server_thread);
    if (rc != 0) {
        close(fd);
        listen_fd = -1;
        pthread_mutex_unlock(&start_lock);
        ms_warn("memscope: http: cannot start the server thread: %s", ms_errstr(rc));
        errno = saved;
        return -1;
    }
    atomic_store(&running, 1);
    pthread_mutex_unlock(&start_lock);
    if ((ntohl(sa.sin_addr.s_addr) >> 24) != 127)
        ms_warn("memscope: warning: http listens on %s, beyond loopback: anyone who can reach it reads heap "
                "profiles, which reveal addresses and code names", url);
    ms_printf_fd(ms_log_fd(), "memscope: serving %s (pprof at %sdebug/pprof/, metrics at %smetrics)\n", url, url, url);
    errno = saved;
    return 0;
}

MEMSCOPE_API int memscope_http_start(const char *addr_port) { return ms_http_start(addr_port); }

/* ------------------------------------------------------------------------
 * ms_out: buffered output to a file descriptor
 * ---------------------------------------------------------------------- */

void ms_out_init(ms_out_t *o, int fd) {
    o->fd = fd;
    o->len = 0;
    o->err = fd < 0;
}

static void out_drain(ms_out_t *o) {
    if (!o->err && o->len) {
        size_t off = 0;
        while (off < o->len) {
            ssize_t w = write(o->fd, o->buf + off, o->len - off);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                o->err = 1;
                break;
            }
            off += (size_t)w;
        }
    }
    o->len = 0;
}

void ms_out_write(ms_out_t *o, const char *s, size_t n) {
    while (n) {
        if (o->len == sizeof o->buf) out_drain(o);
        size_t k = sizeof o->buf - o->len;
        if (k > n) k = n;
        memcpy(o->buf + o->len, s, k);
        o->len += k, s += k, n -= k;
    }
}

void ms_out_puts(ms_out_t *o, const char *s) { ms_out_write(o, s, strlen(s)); }

void ms_out_printf(ms_out_t *o, const char *fmt, ...) {
    /* One formatted item is at most a line: format into the free tail, or
     * drain first and format again if it did not fit. */
    for (int attempt = 0; attempt < 2; attempt++) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = sizeof o->buf - o->len;
        size_t n = ms_vsnprintf(o->buf + o->len, room, fmt, ap);
        va_end(ap);
        if (n < room) {
            o->len += n;
            return;
        }
        out_drain(o);
        if (attempt == 1) { /* longer than the whole buffer: keep what fit */
            o->len = sizeof o->buf - 1;
            return;
        }
    }
}

void ms_out_json_str(ms_out_t *o, const char *s) {
    static const char hex[] = "0123456789abcdef";
    if (!s) return ms_out_puts(o, "null");
    ms_out_write(o, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            ms_out_write(o, e, 2);
        } else if (c < 0x20 || c == 0x7f) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            ms_out_write(o, e, 6);
        } else {
            ms_out_write(o, (const char *)&c, 1);
        }
    }
    ms_out_write(o, "\"", 1);
}

int ms_out_flush(ms_out_t *o) {
    out_drain(o);
    return o->err ? -1 : 0;
}
