/* log.c: formatted output that never allocates.
 *
 * Everything memscope prints (warnings, fatal errors, trace lines, reports)
 * is formatted here into a caller's buffer and written with one write(2), so
 * a line never interleaves mid-way with the host program's output and no
 * path can recurse into malloc.  libc's printf family may allocate (locale,
 * wide strings, large precisions) and takes stdio locks the host may hold,
 * so it is not used anywhere inside the library.  The formatter knows what
 * memscope prints: %d %i %u %x %s %c %p %% with the l/ll/z length modifiers,
 * width and precision (also as *), '-' and '0' flags, and %.Nf for
 * fixed-point doubles.
 *
 * Where it goes: the program's stderr as it was when memscope started.
 * A program may close descriptor 2 and open a file of its own there (a
 * daemon, or one that closes every descriptor), and a line written to "2"
 * would then land in its data.  So the first look records which file
 * descriptor 2 is (device and inode), memscope keeps a copy of it at a high
 * number when it will print anyway (trace, stats, leak reports), and every
 * line goes to the copy, or to descriptor 2, only while that is still the
 * same file; otherwise it is dropped.  The copy sits at 1000 or above (half
 * the descriptor limit when that is lower), away from the numbers programs
 * pick for themselves: at 10, a shell's `exec 10>file` met it.  Fatal
 * errors, the process ending anyway, go to descriptor 2 as glibc's do.  A
 * fork child closes the copy, if that descriptor is still memscope's (the
 * same file, close-on-exec: a program's dup2 there clears the flag):
 * a daemon points its descriptors at /dev/null and lives on, and a copy of
 * its parent's stderr kept open in it held the pipe of a shell's $(...)
 * open until the daemon exited (a helper session's redis-server
 * --daemonize under trace=1: 602 s).  The child's lines go to its
 * descriptor 2 while that is still the parent's stderr.
 *
 * MEMSCOPE=log=PATH sends them to a file instead (appended, created 0644,
 * "%p" the pid), for programs whose stderr is data: a build tool that
 * stores a child's stderr as its output met memscope's lines there.  The
 * file is opened once, at the same high number as the copy above, and
 * checked the same way (device and inode) before each line.  A fork child
 * keeps it if the path has no "%p" (O_APPEND: each line is one write, so
 * lines never interleave mid-way), and otherwise opens its own at its first
 * line.  A path that cannot be opened gets one line on stderr, where the
 * lines then go.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int out_copy = -1;       /* memscope's copy of the program's stderr */
static dev_t out_dev;
static ino_t out_ino;
static _Atomic int out_known;   /* 0 not looked, 1 recorded, 2 stderr was closed, 3 log file to open, 4 opening */
static char log_path[MS_OPT_PATH_MAX]; /* MEMSCOPE=log, "" none */

/* fd_stat: fstat by its own system call.  The C library's fstat is
 * fstatat(fd, "", AT_EMPTY_PATH), and the kernel's read of that "", a byte
 * of the library's .rodata, made 64 KiB of it resident (the kernel maps
 * the pages around a fault) in every process, at ms_log_init (by hand:
 * `true` preloaded). */
static int fd_stat(int fd, struct stat *st) { return (int)syscall(SYS_fstat, fd, st); }

static bool is_stderr_file(int fd) {
    struct stat st;
    int saved = errno;
    bool same = fd >= 0 && fd_stat(fd, &st) == 0 && st.st_dev == out_dev && st.st_ino == out_ino;
    errno = saved;
    return same;
}

/* ms_path_expand: path with each %p replaced by the pid and %% by %;
 * false if too long or empty */
ms_cold bool ms_path_expand(const char *path, char *out, size_t cap) {
    size_t k = 0;
    for (const char *s = path; *s; s++) {
        char tmp[24];
        if (s[0] == '%' && s[1] == 'p') ms_snprintf(tmp, sizeof tmp, "%d", (int)getpid()), s++;
        else if (s[0] == '%' && s[1] == '%') tmp[0] = '%', tmp[1] = 0, s++;
        else tmp[0] = *s, tmp[1] = 0;
        size_t n = strlen(tmp);
        if (k + n >= cap) return false;
        memcpy(out + k, tmp, n);
        k += n;
    }
    out[k] = 0;
    return k > 0;
}

/* high_dup: a close-on-exec copy of fd at memscope's number (above), or
 * -1 */
ms_cold static int high_dup(int fd) {
    struct rlimit lim;
    int base = 1000;
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur <= (rlim_t)base)
        base = lim.rlim_cur / 2 > 10 ? (int)(lim.rlim_cur / 2) : 10;
    return fcntl(fd, F_DUPFD_CLOEXEC, base);
}

/* open_log: the log file opened and recorded as where lines go; false,
 * errno set, if it could not be.  Cold, as all of the log file's code: out
 * of the text every process runs (mk/hot.ld). */
ms_cold __attribute__((noinline)) static bool open_log(void) {
    char path[MS_OPT_PATH_MAX + 64];
    struct stat st;
    if (!ms_path_expand(log_path, path, sizeof path)) {
        errno = ENAMETOOLONG;
        return false;
    }
    int low = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0644);
    if (low < 0) return false;
    int fd = high_dup(low);
    close(low);
    if (fd < 0 || fd_stat(fd, &st) != 0) {
        if (fd >= 0) close(fd);
        return false;
    }
    out_dev = st.st_dev, out_ino = st.st_ino, out_copy = fd;
    atomic_store(&out_known, 1);
    return true;
}

/* log_init: MEMSCOPE=log's file opened; false, with a line on stderr, if
 * it could not be */
ms_cold __attribute__((noinline)) static bool log_init(const char *path) {
    ms_snprintf(log_path, sizeof log_path, "%s", path);
    if (open_log()) return true;
    int e = errno;
    log_path[0] = 0;
    ms_printf_fd(2, "memscope: MEMSCOPE log=\"%s\" cannot be opened (%s); memscope's lines go to stderr\n", path,
                 ms_errstr(e));
    return false;
}

void ms_log_init(bool keep_copy, const char *path) {
    if (atomic_load(&out_known)) return;
    struct stat st;
    int saved = errno;
    if (path && path[0]) {
        if (log_init(path)) {
            errno = saved;
            return;
        }
        keep_copy = true;
    }
    if (fd_stat(2, &st) != 0) {
        atomic_store(&out_known, 2);
        errno = saved;
        return;
    }
    out_dev = st.st_dev, out_ino = st.st_ino;
    if (keep_copy) out_copy = high_dup(2);
    errno = saved;
    atomic_store(&out_known, 1);
}

void ms_log_fork_child(void) {
    if (out_copy < 0) return;
    int saved = errno;
    if (log_path[0]) {
        /* the parent's file, kept, or the child's own at its first line */
        if (strstr(log_path, "%p") && is_stderr_file(out_copy)) {
            close(out_copy);
            out_copy = -1;
            atomic_store(&out_known, 3);
        }
        errno = saved;
        return;
    }
    if (is_stderr_file(out_copy) && fcntl(out_copy, F_GETFD) == FD_CLOEXEC) close(out_copy);
    out_copy = -1;
    errno = saved;
}

/* child_log: a fork child's own log file (ms_log_fork_child), opened by
 * its first line's thread; false while another thread opens it, or if it
 * could not be */
ms_cold static bool child_log(void) {
    int expect = 3, saved = errno;
    if (atomic_compare_exchange_strong(&out_known, &expect, 4) && !open_log()) atomic_store(&out_known, 2);
    errno = saved;
    return atomic_load(&out_known) == 1;
}

int ms_log_fd(void) {
    int k = atomic_load(&out_known);
    if (k == 0) return 2; /* before initialization: nothing to compare with */
    if (k == 2) return -1;
    if (k >= 3 && !child_log()) return -1;
    if (is_stderr_file(out_copy)) return out_copy;
    if (is_stderr_file(2)) return 2;
    return -1;
}

typedef struct out_s {
    char *buf;
    size_t cap, len;
} out_t;

static void put(out_t *o, char c) {
    if (o->len + 1 < o->cap) o->buf[o->len] = c;
    o->len++;
}

static void put_padded(out_t *o, const char *s, size_t n, int width, bool left, char pad) {
    int fill = width > (int)n ? width - (int)n : 0;
    if (!left)
        for (int i = 0; i < fill; i++) put(o, pad);
    for (size_t i = 0; i < n; i++) put(o, s[i]);
    if (left)
        for (int i = 0; i < fill; i++) put(o, ' ');
}

static size_t utoa(char *tmp, unsigned long long v, unsigned base) {
    size_t n = 0;
    do {
        unsigned d = (unsigned)(v % base);
        tmp[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v /= base;
    } while (v);
    for (size_t i = 0; i < n / 2; i++) {
        char c = tmp[i];
        tmp[i] = tmp[n - 1 - i];
        tmp[n - 1 - i] = c;
    }
    return n;
}

size_t ms_vsnprintf(char *buf, size_t cap, const char *fmt, va_list ap) {
    out_t o = {buf, cap, 0};
    for (const char *f = fmt; *f; f++) {
        if (*f != '%') {
            put(&o, *f);
            continue;
        }
        f++;
        bool left = false;
        char pad = ' ';
        for (; *f == '-' || *f == '0'; f++) {
            if (*f == '-') left = true;
            else pad = '0';
        }
        int width = 0, prec = -1;
        if (*f == '*') {
            width = va_arg(ap, int);
            f++;
        }
        while (*f >= '0' && *f <= '9') width = width * 10 + (*f++ - '0');
        if (*f == '.') {
            prec = 0;
            if (f[1] == '*') {
                prec = va_arg(ap, int);
                f += 2;
            } else {
                for (f++; *f >= '0' && *f <= '9'; f++) prec = prec * 10 + (*f - '0');
            }
            if (prec < 0) prec = -1;
        }
        int lng = 0;
        while (*f == 'l' || *f == 'z') {
            lng = *f == 'z' ? 2 : lng + 1;
            f++;
        }
        char tmp[72];
        size_t n;
        switch (*f) {
        case 'd':
        case 'i': {
            long long v = lng >= 2 ? va_arg(ap, long long) : lng == 1 ? va_arg(ap, long) : va_arg(ap, int);
            unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
            n = 0;
            if (v < 0) tmp[n++] = '-';
            n += utoa(tmp + n, u, 10);
            put_padded(&o, tmp, n, width, left, pad);
            break;
        }
        case 'u':
        case 'x': {
            unsigned long long v = lng >= 2 ? va_arg(ap, unsigned long long)
                                 : lng == 1 ? va_arg(ap, unsigned long)
                                            : va_arg(ap, unsigned);
            n = utoa(tmp, v, *f == 'x' ? 16 : 10);
            put_padded(&o, tmp, n, width, left, pad);
            break;
        }
        case 'p': {
            tmp[0] = '0';
            tmp[1] = 'x';
            n = 2 + utoa(tmp + 2, (uintptr_t)va_arg(ap, void *), 16);
            put_padded(&o, tmp, n, width, left, ' ');
            break;
        }
        case 'f': {
            double v = va_arg(ap, double);
            if (prec < 0) prec = 6;
            if (prec > 9) prec = 9;
            n = 0;
            if (v < 0) {
                tmp[n++] = '-';
                v = -v;
            }
            if (v > 1e18) v = 1e18;
            unsigned long long scale = 1;
            for (int i = 0; i < prec; i++) scale *= 10;
            unsigned long long fixed = (unsigned long long)(v * (double)scale + 0.5);
            n += utoa(tmp + n, fixed / scale, 10);
            if (prec > 0) {
                tmp[n++] = '.';
                char frac[16];
                size_t fl = utoa(frac, fixed % scale, 10);
                for (size_t i = fl; i < (size_t)prec; i++) tmp[n++] = '0';
                memcpy(tmp + n, frac, fl);
                n += fl;
            }
            put_padded(&o, tmp, n, width, left, pad);
            break;
        }
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (!s) s = "(null)";
            size_t sl = strlen(s);
            if (prec >= 0 && (size_t)prec < sl) sl = (size_t)prec;
            put_padded(&o, s, sl, width, left, ' ');
            break;
        }
        case 'c':
            tmp[0] = (char)va_arg(ap, int);
            put_padded(&o, tmp, 1, width, left, ' ');
            break;
        case '%':
            put(&o, '%');
            break;
        default: /* unknown conversion: print it as is */
            put(&o, '%');
            if (*f) put(&o, *f);
            else f--;
            break;
        }
    }
    if (cap) buf[o.len < cap ? o.len : cap - 1] = 0;
    return o.len;
}

size_t ms_snprintf(char *buf, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    size_t n = ms_vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    return n;
}

/* ms_write_fd: a reader that went away (a pipe to a program that exited)
 * must not kill the host with SIGPIPE for a line of memscope's: the
 * signal is blocked in this thread around the write, and one the write
 * raised is taken back unless one was pending already (a helper session's
 * program that never wrote to stderr died of SIGPIPE under trace=1). */
bool ms_write_fd(int fd, const char *buf, size_t len) {
    int saved = errno;
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    int cancel = ms_cancel_off(); /* write and sigtimedwait are cancellation points */
    bool was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
    bool broken = false;
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EPIPE) broken = true;
        if (w <= 0) break;
        buf += w;
        len -= (size_t)w;
    }
    if (broken && !was_pending) {
        struct timespec zero = {0, 0};
        sigtimedwait(&pipe_set, NULL, &zero);
    }
    ms_cancel_restore(cancel);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = saved;
    return len == 0; /* a full disk or a file-size limit: the caller decides */
}

const char *ms_errstr(int e) {
    const char *s = strerrordesc_np(e);
    return s ? s : "unknown error";
}

void ms_printf_fd(int fd, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    size_t n = ms_vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    ms_write_fd(fd, buf, n < sizeof buf ? n : sizeof buf - 1);
}

/* Warnings are capped so a program that misconfigures memscope in a loop
 * (or a fuzzer) cannot flood its own stderr. */
#define MS_MAX_WARNINGS 32
static _Atomic int warnings;

void ms_warn(const char *fmt, ...) {
    int k = atomic_fetch_add(&warnings, 1);
    if (k > MS_MAX_WARNINGS) return;
    char buf[512];
    size_t n;
    if (k == MS_MAX_WARNINGS) {
        n = ms_snprintf(buf, sizeof buf, "memscope: %d warnings printed; further ones are not\n", MS_MAX_WARNINGS);
    } else {
        va_list ap;
        va_start(ap, fmt);
        n = ms_vsnprintf(buf, sizeof buf - 1, fmt, ap);
        va_end(ap);
        if (n > sizeof buf - 2) n = sizeof buf - 2;
        buf[n++] = '\n';
    }
    int fd = ms_log_fd();
    if (fd >= 0) ms_write_fd(fd, buf, n < sizeof buf ? n : sizeof buf - 1);
}

void ms_fatal(const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    size_t n = ms_vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n > sizeof buf - 2) n = sizeof buf - 2;
    buf[n++] = '\n';
    ms_write_fd(2, buf, n);
    abort();
}

void ms_assert_fail(const char *expr, const char *file, int line) {
    ms_fatal("memscope: internal assertion failed: %s (%s:%d)", expr, file, line);
}
