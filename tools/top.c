/* top.c: `memscope top URL`, a live terminal view of a running program.
 *
 * It polls the program's endpoint (src/http) once a second:
 *   /debug/memscope/series        heap in use, live, idle, released, RSS
 *                                 and the cycle/scavenge counts, as JSON
 *                                 columns; drawn as sparklines
 *   /debug/memscope/top?by=K&n=N  top allocation sites (in use, allocated
 *                                 or at peak; i/a/p switch); shown if the
 *                                 program profiles, else a one-line note
 * and redraws one screen that fits 80x24 (wider terminals get wider
 * sparklines).  The HTTP client is tiny on purpose: IPv4/hostname, one GET
 * per connection ("Connection: close" is what the server does anyway), the
 * whole answer read into a fixed buffer.  JSON is read with a scanner that
 * knows exactly the shapes the server writes, nothing more.
 *
 * The terminal is put in the alternate screen, without echo and line
 * buffering, and restored on every way out: q, Ctrl-C/SIGTERM/SIGHUP, and
 * the program going away (three failed polls in a row: the last screen is
 * left and one line says why).  With --once (or when stdout is not a
 * terminal) one screen is printed plainly and the tool exits.
 */
#include <errno.h>
#include <langinfo.h>
#include <locale.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

int memscope_top_main(int argc, char **argv);

#define MAXPTS 1800
#define RESP_CAP (4 << 20)
#define FETCH_SECONDS 5

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static char host[256], port[16], hostport[300];
static char urlbuf[300];
static char *resp;          /* last answer, RESP_CAP bytes */
static struct termios saved_tio;
static int tio_saved, alt_screen;
static volatile sig_atomic_t got_signal;

/* ------------------------------------------------------------------------
 * HTTP
 * ---------------------------------------------------------------------- */

static int parse_url(const char *u) {
    if (strncmp(u, "http://", 7) == 0) u += 7;
    const char *slash = strchr(u, '/');
    size_t n = slash ? (size_t)(slash - u) : strlen(u);
    if (n == 0 || n >= 250) return -1;
    memcpy(urlbuf, u, n);
    urlbuf[n] = 0;
    char *colon = strrchr(urlbuf, ':');
    if (!colon) { /* a bare port, or a host without one */
        if (strspn(urlbuf, "0123456789") == n) snprintf(host, sizeof host, "127.0.0.1"), snprintf(port, sizeof port, "%.15s", urlbuf);
        else snprintf(host, sizeof host, "%.250s", urlbuf), snprintf(port, sizeof port, "6060");
    } else {
        *colon = 0;
        snprintf(host, sizeof host, "%.250s", urlbuf);
        snprintf(port, sizeof port, "%.15s", colon + 1);
        if (!host[0]) snprintf(host, sizeof host, "127.0.0.1");
    }
    /* a numeric port is 1..65535: getaddrinfo would take 83688 modulo 65536 */
    if (strspn(port, "0123456789") == strlen(port) && (!port[0] || strlen(port) > 5 || atoi(port) < 1 || atoi(port) > 65535))
        return -1;
    snprintf(hostport, sizeof hostport, "%.250s:%.15s", host, port);
    return 0;
}

/* fetch: GET path; returns the HTTP status (body at *body, NUL-ended), or
 * -1 if the program cannot be reached. */
static int fetch(const char *path, char **body, char *err, size_t errcap) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errcap, "%s: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0);
        if (fd < 0) continue;
        struct timeval tv = {2, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            snprintf(err, errcap, "%s: %s", hostport, strerror(errno));
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0) return -1;
    char req[512];
    int rn = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, hostport);
    if (send(fd, req, (size_t)rn, MSG_NOSIGNAL) != rn) {
        snprintf(err, errcap, "%s: send: %s", hostport, strerror(errno));
        close(fd);
        return -1;
    }
    /* the whole answer within FETCH_SECONDS: the receive timeout bounds
     * each wait, and a server that drips a byte at a time must not hold
     * the view (and its q and Ctrl-C) for ever */
    size_t len = 0;
    double t0 = now_s();
    for (;;) {
        ssize_t r = recv(fd, resp + len, RESP_CAP - 1 - len, 0);
        if (r < 0 && errno == EINTR && !got_signal) continue;
        if (got_signal) { /* Ctrl-C during a slow answer quits now, not after FETCH_SECONDS */
            snprintf(err, errcap, "interrupted");
            close(fd);
            return -1;
        }
        if (r <= 0) break;
        len += (size_t)r;
        if (len >= RESP_CAP - 1) break;
        if (now_s() - t0 > FETCH_SECONDS) {
            snprintf(err, errcap, "%s: no complete answer within %d s", hostport, FETCH_SECONDS);
            close(fd);
            return -1;
        }
    }
    close(fd);
    resp[len] = 0;
    int status;
    char *hdr_end = strstr(resp, "\r\n\r\n");
    if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1 || !hdr_end) {
        snprintf(err, errcap, "%s: no HTTP answer", hostport);
        return -1;
    }
    *body = hdr_end + 4;
    return status;
}

/* ------------------------------------------------------------------------
 * The server's JSON shapes
 * ---------------------------------------------------------------------- */

/* column: the numbers of "key":[...] into out; returns the count. */
static int column(const char *json, const char *key, double *out, int cap) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":[", key);
    const char *p = strstr(json, pat);
    if (!p) return 0;
    p += strlen(pat);
    int n = 0;
    while (*p && *p != ']' && n < cap) {
        char *end;
        double v = strtod(p, &end);
        if (end == p) break;
        out[n++] = v;
        p = end;
        if (*p == ',') p++;
    }
    return n;
}

static double num_field(const char *obj, const char *end, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(obj, pat);
    if (!p || p > end) return 0;
    return strtod(p + strlen(pat), NULL);
}

static void str_field(const char *obj, const char *end, const char *key, char *out, size_t cap) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    const char *p = strstr(obj, pat);
    out[0] = 0;
    if (!p || p > end) return;
    p += strlen(pat);
    size_t k = 0;
    for (; *p && *p != '"' && k + 1 < cap; p++) {
        if (*p == '\\' && p[1]) p++;
        out[k++] = *p;
    }
    out[k] = 0;
}

/* ------------------------------------------------------------------------
 * Terminal
 * ---------------------------------------------------------------------- */

static void restore_terminal(void) {
    if (alt_screen) {
        fputs("\033[?25h\033[?1049l", stdout);
        fflush(stdout);
        alt_screen = 0;
    }
    if (tio_saved) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tio);
        tio_saved = 0;
    }
}

static void on_signal(int sig) { got_signal = sig; }

static void setup_terminal(void) {
    if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved_tio) == 0) {
        struct termios t = saved_tio;
        t.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
        t.c_cc[VMIN] = 0;
        t.c_cc[VTIME] = 0;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &t);
        tio_saved = 1;
    }
    fputs("\033[?1049h\033[?25l\033[H\033[2J", stdout);
    alt_screen = 1;
    atexit(restore_terminal);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

static void term_size(int *cols, int *rows) {
    struct winsize ws;
    *cols = 80, *rows = 24;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 40 && ws.ws_row >= 12)
        *cols = ws.ws_col, *rows = ws.ws_row;
}

static const char *fmt_bytes(double b, char *buf) {
    static const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (b >= 1024 && i < 4) b /= 1024, i++;
    if (i == 0) snprintf(buf, 16, "%.0f B", b);
    else snprintf(buf, 16, "%.1f %s", b, u[i]);
    return buf;
}

/* ------------------------------------------------------------------------
 * One screen
 * ---------------------------------------------------------------------- */

static double col_t[MAXPTS], col[5][MAXPTS], col_gc[MAXPTS], col_scv[MAXPTS];
static const char *const series_keys[5] = {"heap_inuse", "heap_alloc", "heap_idle", "heap_released", "rss"};
static const char *const series_names[5] = {"heap in use", "live objects", "heap idle", "heap released", "RSS"};

static void spark(char *out, size_t cap, const double *v, int n, int width, double vmax, int utf8) {
    static const char *blocks[] = {"\u2581", "\u2582", "\u2583", "\u2584", "\u2585", "\u2586", "\u2587", "\u2588"};
    static const char ascii[] = "_.-:=+*#";
    size_t k = 0;
    int start = n > width ? n - width : 0;
    for (int i = start; i < n && k + 4 < cap; i++) {
        int lvl = vmax > 0 ? (int)(v[i] / vmax * 7.999) : 0;
        if (lvl < 0) lvl = 0;
        if (lvl > 7) lvl = 7;
        if (utf8) {
            size_t bl = strlen(blocks[lvl]);
            memcpy(out + k, blocks[lvl], bl);
            k += bl;
        } else {
            out[k++] = ascii[lvl];
        }
    }
    out[k] = 0;
}

static const char *by_names[3] = {"inuse", "alloc", "peak"};
static const char *by_titles[3] = {"in-use bytes", "allocated bytes", "bytes at peak"};

/* draw: fetches and writes one screen into scr; returns 0, or -1 if the
 * program could not be reached (err says why). */
static int draw(char *scr, size_t cap, int by, int utf8, char *err, size_t errcap) {
    int cols, rows;
    term_size(&cols, &rows);
    char *body;
    int st = fetch("/debug/memscope/series", &body, err, errcap);
    if (st < 0) return -1;
    if (st != 200) {
        snprintf(err, errcap, "%s answered %d to /debug/memscope/series", hostport, st);
        return -1;
    }
    if (!strstr(body, "\"t_ms\"")) { /* a server that answers 200 but is not memscope's */
        snprintf(err, errcap, "%s: /debug/memscope/series is not memscope's series (is this a memscope endpoint?)",
                 hostport);
        return -1;
    }
    int n = column(body, "t_ms", col_t, MAXPTS);
    for (int s = 0; s < 5; s++) column(body, series_keys[s], col[s], MAXPTS);
    column(body, "num_gc", col_gc, MAXPTS);
    column(body, "num_scavenge", col_scv, MAXPTS);

    size_t k = 0;
#define LINE(...) do { if (k < cap) k += (size_t)snprintf(scr + k, cap - k, __VA_ARGS__); if (k < cap) k += (size_t)snprintf(scr + k, cap - k, "\033[K\n"); } while (0)
    time_t now = time(NULL);
    char tbuf[16];
    strftime(tbuf, sizeof tbuf, "%H:%M:%S", localtime(&now));
    LINE("\033[1mmemscope top\033[0m  %-28.28s %s   q quit, i/a/p sort", hostport, tbuf);
    int width = cols - 30;
    if (width > MAXPTS) width = MAXPTS;
    double vmax = 0;
    for (int s = 0; s < 5; s++)
        for (int i = n > width ? n - width : 0; i < n; i++)
            if (col[s][i] > vmax) vmax = col[s][i];
    char b1[16], b2[16];
    LINE("%-14s %12s  last %d s, scale 0..%s", "", "now", n < width ? n : width, fmt_bytes(vmax, b2));
    for (int s = 0; s < 5; s++) {
        char sp[MAXPTS * 4];
        spark(sp, sizeof sp, col[s], n, width, vmax, utf8);
        LINE("%-14s %12s  %s", series_names[s], n ? fmt_bytes(col[s][n - 1], b1) : "-", sp);
    }
    int gc = n ? (int)col_gc[n - 1] : 0, scv = n ? (int)col_scv[n - 1] : 0;
    int gc_recent = n > width ? gc - (int)col_gc[n - width] : (n ? gc - (int)col_gc[0] : 0);
    LINE("heap cycles %d (%d in view), scavenges %d", gc, gc_recent, scv);
    LINE("%s", "");

    char path[64];
    int nsites = rows - 12;
    if (nsites < 1) nsites = 1;
    snprintf(path, sizeof path, "/debug/memscope/top?by=%s&n=%d", by_names[by], nsites);
    st = fetch(path, &body, err, errcap);
    if (st < 0) return -1;
    LINE("\033[1mtop sites by %s\033[0m", by_titles[by]);
    if (st != 200) {
        char *nl = strchr(body, '\n');
        if (nl) *nl = 0;
        LINE("  (%.*s)", cols - 6, body);
    } else {
        LINE("%10s %9s %10s  %-*s", "in use", "objects", "allocated", cols - 35, "function  file:line");
        const char *p = body;
        for (int i = 0; i < nsites; i++) {
            p = strstr(p, "{\"func\":");
            if (!p) break;
            const char *end = strchr(p, '}');
            if (!end) break;
            char fn[256], file[256], where[600], b3[16];
            str_field(p, end, "func", fn, sizeof fn);
            str_field(p, end, "file", file, sizeof file);
            int line = (int)num_field(p, end, "line");
            const char *base = strrchr(file, '/');
            if (file[0]) snprintf(where, sizeof where, "%s  %s:%d", fn, base ? base + 1 : file, line);
            else snprintf(where, sizeof where, "%s", fn);
            LINE("%10s %9.0f %10s  %.*s", fmt_bytes(num_field(p, end, "inuse_bytes"), b1),
                 num_field(p, end, "inuse_objects"), fmt_bytes(num_field(p, end, "alloc_bytes"), b3), cols - 35,
                 where);
            p = end;
        }
    }
#undef LINE
    return 0;
}

int memscope_top_main(int argc, char **argv) {
    const char *url = NULL;
    int once = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--once") == 0) once = 1;
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            puts("usage: memscope top [--once] URL   (URL: http://HOST:PORT, HOST:PORT or PORT)");
            return 0;
        } else if (!url) url = argv[i];
        else {
            fprintf(stderr, "memscope: top: unexpected argument '%s' (usage: memscope top [--once] URL)\n", argv[i]);
            return 2;
        }
    }
    if (!url || parse_url(url) != 0) {
        fprintf(stderr, "memscope: top: %s (usage: memscope top [--once] URL)\n", url ? "bad URL" : "no URL given");
        return 2;
    }
    resp = malloc(RESP_CAP);
    size_t scrcap = 256 * 1024;
    char *scr = malloc(scrcap);
    if (!resp || !scr) {
        fprintf(stderr, "memscope: top: out of memory\n");
        return 1;
    }
    setlocale(LC_CTYPE, "");
    int utf8 = strcmp(nl_langinfo(CODESET), "UTF-8") == 0;
    char err[400];
    if (once || !isatty(STDOUT_FILENO)) {
        if (draw(scr, scrcap, 0, utf8, err, sizeof err) != 0) {
            fprintf(stderr, "memscope: top: cannot read %s\n", err);
            return 1;
        }
        /* plain text: drop the clear-to-end-of-line codes and bold */
        for (char *r = scr, *w = scr;; r++) {
            if (*r == '\033') {
                while (*r && !((*r >= 'A' && *r <= 'Z') || (*r >= 'a' && *r <= 'z'))) r++;
                if (!*r) { *w = 0; break; }
                continue;
            }
            if (!(*w++ = *r)) break;
        }
        fputs(scr, stdout);
        return 0;
    }
    setup_terminal();
    int by = 0, failures = 0;
    for (;;) {
        if (draw(scr, scrcap, by, utf8, err, sizeof err) == 0) {
            failures = 0;
            fputs("\033[H", stdout);
            fputs(scr, stdout);
            fputs("\033[J", stdout);
            fflush(stdout);
        } else if (++failures >= 3) {
            restore_terminal();
            fprintf(stderr, "memscope: top: %s went away (%s)\n", hostport, err);
            return 1;
        }
        /* wait a second for a key, redrawing at once after i/a/p */
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (;;) {
            if (got_signal) {
                restore_terminal();
                return 128 + got_signal;
            }
            clock_gettime(CLOCK_MONOTONIC, &t1);
            long left = 1000 - ((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000);
            if (left <= 0) break;
            struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
            if (poll(&p, 1, (int)left) <= 0) continue;
            char c;
            if (read(STDIN_FILENO, &c, 1) != 1) {
                struct timespec ts = {0, 100 * 1000 * 1000};
                nanosleep(&ts, NULL);
                continue;
            }
            if (c == 'q' || c == 'Q') {
                restore_terminal();
                return 0;
            }
            if (c == 'i' || c == 'a' || c == 'p') {
                by = c == 'i' ? 0 : c == 'a' ? 1 : 2;
                break;
            }
        }
    }
}
