/* memscope.c: the `memscope` command-line tool.
 *
 *   memscope run [--trace] [--stats] [--profile-rate N] [--heapprofile PATH] [--log PATH]
 *                [--leaks[=reachable|=allocated|=exit]] [--http ADDR:PORT] [--env K=V]... [--] CMD [ARGS...]
 *   memscope report PROFILE [...] | memscope report --diff BASE NEW [...]
 *   memscope top [--once] URL      (tools/top.c)
 *   memscope version
 *   memscope --help
 *
 * `run` is the no-rebuild way in: it is exactly the by-hand recipe
 *
 *   MEMSCOPE=trace=1,stats=1 LD_PRELOAD=/abs/path/libmemscope.so CMD ARGS
 *
 * done for the user.  The tool never links or loads the allocator itself; it
 * only finds libmemscope.so, edits two environment variables and execs the
 * command, so the process the user started *is* the command (same pid, same
 * signals, same exit status: there is nothing to pass through by hand).
 *
 * Finding the library.  Candidates, first readable one wins:
 *   1. DIR/libmemscope.so         DIR = directory of /proc/self/exe (build tree:
 *                                  build/memscope next to build/libmemscope.so)
 *   2. DIR/../lib/libmemscope.so  install layout PREFIX/bin + PREFIX/lib
 *   3. MEMSCOPE_LIBDIR/libmemscope.so, if that macro is defined at compile time
 * /proc/self/exe is already symlink-free, so a symlink to the installed binary
 * still finds the install's library.  The path put in LD_PRELOAD is absolute
 * (realpath), because the command may chdir and the dynamic loader resolves a
 * bare name through the library search path, not through our directory.
 *
 * Environment edits.
 *   LD_PRELOAD  the library is prepended to any existing value ("lib:old"), so
 *               the allocator interposes first and the user's preloads stay.
 *   MEMSCOPE    existing entries, then the options given on the command line
 *               (--trace -> trace=1, --stats -> stats=1, --profile-rate N
 *               -> profile_rate=N, --heapprofile P -> heapprofile=P, --log P -> log=P,
 *               --leaks and --leaks=reachable -> leaks=reachable (issue 11: "memscope run
 *               --leaks turns it on"), --leaks=allocated -> leaks=1, --leaks=exit -> leaks=exit,
 *               --env MEMSCOPE=k=v,... -> k=v,...), comma-separated.  A key
 *               set on the command line replaces the same key from the
 *               environment (and a later flag an earlier one), so the result
 *               has each key once and never depends on how the library's
 *               parser treats duplicates.
 *   --env K=V   sets any other variable K for the command (LD_PRELOAD given
 *               this way is the "existing" value the library is prepended to).
 *
 * `report` reads pprof profiles and prints pprof's -top table; it lives in
 * report.c (and pprofread.c), this file only dispatches to it.
 *
 * Command line.  Options stop at "--" or at the first word that does not
 * start with '-'; everything after belongs to the command, verbatim.  Usage
 * errors print one line and exit 2.  If the command cannot be executed the
 * exit status follows the shell convention: 127 "command not found" when it
 * does not exist, 126 when it exists but cannot be executed; one line each.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "report.h"

#ifndef MEMSCOPE_VERSION_STR
#define MEMSCOPE_VERSION_STR "unknown"
#endif

#define LIBNAME "libmemscope.so"

enum {
    EXIT_USAGE = 2,      /* bad command line */
    EXIT_NOEXEC = 126,   /* command found but not executable */
    EXIT_NOTFOUND = 127, /* command not found */
};

static const char usage_text[] =
    "usage: memscope run [options] [--] COMMAND [ARGS...]\n";
/* ... then the report lines (report.c: ms_report_usage), then: */
static const char usage_rest[] =
    "       memscope top [--once] URL     live view of a program run with --http\n"
    "       memscope version\n"
    "       memscope --help\n"
    "\n"
    "run executes COMMAND with libmemscope.so preloaded (LD_PRELOAD) and the\n"
    "MEMSCOPE variable set from the options; nothing needs to be rebuilt.\n"
    "\n"
    "options of run:\n"
    "  --trace        one trace line per heap cycle and scavenge   (trace=1)\n"
    "  --stats        print a statistics summary at exit           (stats=1)\n"
    "  --profile-rate N  sample one allocation per N bytes (1: all, 0: off)\n"
    "                 for the heap profile                         (profile_rate=N)\n"
    "  --heapprofile PATH  write the heap profile (pprof) to PATH at exit;\n"
    "                 %p in PATH becomes the pid                   (heapprofile=PATH)\n"
    "  --log PATH     write memscope's lines to PATH, not stderr;\n"
    "                 %p in PATH becomes the pid                   (log=PATH)\n"
    "  --leaks, --leaks=reachable\n"
    "                 at exit, report the blocks nothing references (LeakSanitizer-style;\n"
    "                 every allocation keeps its stack; exit status 23 if any)\n"
    "                                                              (leaks=reachable)\n"
    "  --leaks=allocated  list what is still allocated at exit, by stack,\n"
    "                 referenced or not                            (leaks=1)\n"
    "  --leaks=exit   the same, and exit with status 23 if anything is listed\n"
    "  --http ADDR:PORT  serve /debug/pprof, /metrics and a live page (http=...)\n"
    "  --env K=V      set variable K for the command; --env MEMSCOPE=k=v,...\n"
    "                 adds any MEMSCOPE key (profile_rate, leaks, heapprofile, ...)\n"
    "  --             end of options (optional before a COMMAND not starting with -)\n"
    "\n"
    "Options are merged into an existing MEMSCOPE value (the command line wins for\n"
    "a key given twice) and the library is prepended to an existing LD_PRELOAD.\n"
    "The exit status is COMMAND's; 127 if it is not found, 126 if it cannot be\n"
    "executed, 2 for a usage error.\n"
    "\n"
    "report prints what `go tool pprof -top` prints for a heap profile, with\n"
    "file:line per function; see 'memscope report --help'.\n";

/* ------------------------------------------------------------------------
 * Messages
 * ---------------------------------------------------------------------- */

/* die prints "memscope: MSG" as one line on stderr and exits with code. */
static void die(int code, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));

static void die(int code, const char *fmt, ...)
{
    va_list ap;
    fputs("memscope: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(code);
}

static void print_usage(void)
{
    fputs(usage_text, stdout);
    fputs(ms_report_usage, stdout);
    fputs(usage_rest, stdout);
}

#define usage_error(...) die(EXIT_USAGE, __VA_ARGS__)
#define HELP_HINT " (try 'memscope --help')"

/* xasprintf returns a malloc'd formatted string; exits on OOM. */
static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        die(1, "formatting failed");
    char *s = malloc((size_t)n + 1);
    if (!s)
        die(1, "out of memory");
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* ------------------------------------------------------------------------
 * Finding libmemscope.so
 * ---------------------------------------------------------------------- */

/* try_lib returns the realpath of DIR/REL if it is a readable regular file
 * (malloc'd), else NULL. */
static char *try_lib(const char *dir, const char *rel)
{
    char *cand = xasprintf("%s/%s", dir, rel);
    char *abs = realpath(cand, NULL);
    free(cand);
    if (!abs)
        return NULL;
    struct stat st;
    if (stat(abs, &st) != 0 || !S_ISREG(st.st_mode) || access(abs, R_OK) != 0) {
        free(abs);
        return NULL;
    }
    return abs;
}

/* find_library returns the absolute path of the library to preload
 * (malloc'd), or NULL after filling tried[] with a description of where it
 * looked. */
static char *find_library(char *tried, size_t tried_len)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *lib = NULL;
    tried[0] = '\0';
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            const char *dir = exe[0] ? exe : "/";
            if ((lib = try_lib(dir, LIBNAME)) || (lib = try_lib(dir, "../lib/" LIBNAME)))
                return lib;
            snprintf(tried, tried_len, "%s/%s, %s/../lib/%s", dir, LIBNAME, dir, LIBNAME);
        }
    }
#ifdef MEMSCOPE_LIBDIR
    if ((lib = try_lib(MEMSCOPE_LIBDIR, LIBNAME)))
        return lib;
    size_t used = strlen(tried);
    snprintf(tried + used, tried_len - used, "%s%s/%s", used ? ", " : "", MEMSCOPE_LIBDIR, LIBNAME);
#endif
    if (!tried[0])
        snprintf(tried, tried_len, "nowhere: /proc/self/exe is unreadable");
    return NULL;
}

/* ------------------------------------------------------------------------
 * MEMSCOPE merging
 * ---------------------------------------------------------------------- */

/* A list of "key=value" (or bare "key") entries; each string is malloc'd. */
struct optlist {
    char **v;
    size_t n, cap;
};

static void optlist_push(struct optlist *l, const char *s, size_t len)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 8;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        if (!l->v)
            die(1, "out of memory");
    }
    char *e = malloc(len + 1);
    if (!e)
        die(1, "out of memory");
    memcpy(e, s, len);
    e[len] = '\0';
    l->v[l->n++] = e;
}

/* optlist_add_csv appends every non-empty comma-separated entry of csv. */
static void optlist_add_csv(struct optlist *l, const char *csv)
{
    while (*csv) {
        size_t len = strcspn(csv, ",");
        if (len)
            optlist_push(l, csv, len);
        csv += len;
        if (*csv == ',')
            csv++;
    }
}

/* keylen returns the length of the key part of a "key=value" entry. */
static size_t keylen(const char *e) { return strcspn(e, "="); }

static int same_key(const char *a, const char *b)
{
    size_t la = keylen(a);
    return la == keylen(b) && memcmp(a, b, la) == 0;
}

/* key_in reports whether entries v[from..n) set the key of e. */
static int key_in(const struct optlist *l, size_t from, const char *e)
{
    for (size_t i = from; i < l->n; i++)
        if (same_key(l->v[i], e))
            return 1;
    return 0;
}

/* merge_memscope returns the new MEMSCOPE value (malloc'd): entries of the
 * existing value whose key the command line does not set, then the command
 * line's entries, keeping only the last of each key. */
static char *merge_memscope(const char *existing, const struct optlist *cli)
{
    struct optlist old = {0};
    if (existing)
        optlist_add_csv(&old, existing);
    size_t total = 1;
    for (size_t i = 0; i < old.n; i++)
        total += strlen(old.v[i]) + 1;
    for (size_t i = 0; i < cli->n; i++)
        total += strlen(cli->v[i]) + 1;
    char *out = malloc(total);
    if (!out)
        die(1, "out of memory");
    out[0] = '\0';
    for (size_t i = 0; i < old.n; i++) {
        if (key_in(cli, 0, old.v[i]))
            continue;
        if (out[0])
            strcat(out, ",");
        strcat(out, old.v[i]);
    }
    for (size_t i = 0; i < cli->n; i++) {
        if (key_in(cli, i + 1, cli->v[i]))
            continue;
        if (out[0])
            strcat(out, ",");
        strcat(out, cli->v[i]);
    }
    for (size_t i = 0; i < old.n; i++)
        free(old.v[i]);
    free(old.v);
    return out;
}

/* ------------------------------------------------------------------------
 * memscope run
 * ---------------------------------------------------------------------- */

/* opt_value returns the value of option NAME at argv[*i], either "NAME=V" or
 * "NAME V" (advancing *i), or NULL if argv[*i] is not NAME. */
static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
    size_t n = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, n) != 0)
        return NULL;
    if (a[n] == '=')
        return a + n + 1;
    if (a[n] != '\0')
        return NULL;
    if (*i + 1 >= argc)
        usage_error("option %s needs an argument" HELP_HINT, name);
    return argv[++*i];
}

/* add_path: key=path added to the MEMSCOPE list; MEMSCOPE is split at
 * commas, so a path with one cannot be passed */
static void add_path(struct optlist *cli, const char *key, const char *path)
{
    if (!path[0] || strchr(path, ','))
        usage_error("--%s wants a path without commas, not '%s'", key, path);
    char *kv = xasprintf("%s=%s", key, path);
    optlist_add_csv(cli, kv);
    free(kv);
}

/* resolve: the file execvp would run for cmd, in buf; false if none */
static bool resolve(const char *cmd, char *buf, size_t cap)
{
    if (strchr(cmd, '/')) return snprintf(buf, cap, "%s", cmd) < (int)cap;
    const char *path = getenv("PATH");
    for (const char *p = path ? path : "/usr/local/bin:/usr/bin:/bin"; ; ) {
        size_t n = strcspn(p, ":");
        if (snprintf(buf, cap, "%.*s%s%s", (int)n, p, n ? "/" : "", cmd) < (int)cap && access(buf, X_OK) == 0)
            return true;
        if (!p[n]) return false;
        p += n + 1;
    }
}

/* warn_unpreloadable: one line when the loader will not preload the library
 * into cmd, which then runs without any of what was asked: a statically
 * linked program has no loader, and one that changes user or group on exec
 * runs in secure-execution mode, where the loader ignores LD_PRELOAD and
 * glibc drops MEMSCOPE.  The program still runs: its exit status is the
 * command's, as always. */
static void warn_unpreloadable(const char *cmd)
{
    char path[PATH_MAX];
    struct stat st;
    if (!resolve(cmd, path, sizeof path) || stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return;
    if (((st.st_mode & S_ISUID) && st.st_uid != geteuid()) || ((st.st_mode & S_ISGID) && st.st_gid != getegid())) {
        fprintf(stderr, "memscope: %s is set-user-ID or set-group-ID: the loader ignores LD_PRELOAD for it, "
                        "so it runs without memscope\n", cmd);
        return;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    Elf64_Ehdr eh;
    bool interp = true; /* unless the headers say otherwise (not ELF, 32-bit: the loader speaks) */
    if (pread(fd, &eh, sizeof eh, 0) == (ssize_t)sizeof eh && memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 &&
        eh.e_ident[EI_CLASS] == ELFCLASS64 && eh.e_phentsize == sizeof(Elf64_Phdr) && eh.e_phnum < 4096) {
        interp = false;
        for (unsigned i = 0; i < eh.e_phnum && !interp; i++) {
            Elf64_Phdr ph;
            if (pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + (uint64_t)i * sizeof ph)) != (ssize_t)sizeof ph) {
                interp = true; /* unreadable: say nothing */
                break;
            }
            interp = ph.p_type == PT_INTERP;
        }
    }
    close(fd);
    if (!interp)
        fprintf(stderr, "memscope: %s is statically linked: nothing can be preloaded into it, "
                        "so it runs without memscope\n", cmd);
}

static int cmd_run(int argc, char **argv)
{
    struct optlist cli = {0};
    int i = 0;
    for (; i < argc; i++) {
        const char *a = argv[i], *v;
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (a[0] != '-')
            break; /* first word of the command */
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            print_usage();
            return 0;
        } else if (strcmp(a, "--trace") == 0) {
            optlist_add_csv(&cli, "trace=1");
        } else if (strcmp(a, "--stats") == 0) {
            optlist_add_csv(&cli, "stats=1");
        } else if ((v = opt_value(argc, argv, &i, "--http"))) {
            /* "--http -- cmd" would take "--" for the address */
            if (!v[0] || v[0] == '-' || strchr(v, ','))
                usage_error("--http wants PORT or IPV4:PORT (6060, 127.0.0.1:6060; port 0 picks a free one), not '%s'", v);
            char *item = xasprintf("http=%s", v);
            optlist_add_csv(&cli, item);
            free(item);
        } else if (strcmp(a, "--leaks") == 0) {
            optlist_add_csv(&cli, "leaks=reachable");
        } else if (strcmp(a, "--leaks=allocated") == 0) {
            optlist_add_csv(&cli, "leaks=1");
        } else if (strcmp(a, "--leaks=exit") == 0) {
            optlist_add_csv(&cli, "leaks=exit");
        } else if (strcmp(a, "--leaks=reachable") == 0) {
            optlist_add_csv(&cli, "leaks=reachable");
        } else if (strncmp(a, "--leaks=", 8) == 0) {
            usage_error("--leaks takes no value, =reachable, =allocated or =exit, not '%s'", a + 8);
        } else if ((v = opt_value(argc, argv, &i, "--profile-rate"))) {
            /* the library's range (src/options.c): 0 .. 2^40 bytes */
            if (!v[0] || strspn(v, "0123456789") != strlen(v) || strlen(v) > 13 || strtoull(v, NULL, 10) > (1ull << 40))
                usage_error("--profile-rate wants a number of bytes from 0 to 1099511627776, not '%s'", v);
            char *kv = xasprintf("profile_rate=%s", v);
            optlist_add_csv(&cli, kv);
            free(kv);
        } else if ((v = opt_value(argc, argv, &i, "--heapprofile"))) {
            add_path(&cli, "heapprofile", v);
        } else if ((v = opt_value(argc, argv, &i, "--log"))) {
            add_path(&cli, "log", v);
        } else if ((v = opt_value(argc, argv, &i, "--env"))) {
            const char *eq = strchr(v, '=');
            if (!eq || eq == v)
                usage_error("--env wants NAME=VALUE, not '%s'", v);
            size_t klen = (size_t)(eq - v);
            char *key = xasprintf("%.*s", (int)klen, v);
            if (strcmp(key, "MEMSCOPE") == 0)
                optlist_add_csv(&cli, eq + 1);
            else if (setenv(key, eq + 1, 1) != 0)
                usage_error("--env: cannot set '%s': %s", key, strerror(errno));
            free(key);
        } else {
            usage_error("run: unknown option '%s'" HELP_HINT, a);
        }
    }
    if (i >= argc)
        usage_error("run: no command given (usage: memscope run [options] -- COMMAND [ARGS...])");
    char **cmd = argv + i;

    char tried[3 * PATH_MAX];
    char *lib = find_library(tried, sizeof tried);
    if (!lib)
        die(1, "cannot find %s (looked in %s)", LIBNAME, tried);
    /* The loader splits LD_PRELOAD at spaces and colons: such a path cannot be
     * preloaded at all, and would silently preload something else. */
    if (strpbrk(lib, ": \t"))
        die(1, "cannot preload '%s': LD_PRELOAD paths may not contain ':' or spaces", lib);

    const char *old_preload = getenv("LD_PRELOAD");
    char *preload = (old_preload && old_preload[strspn(old_preload, ": \t")])
                        ? xasprintf("%s:%s", lib, old_preload)
                        : xasprintf("%s", lib);
    char *ms = merge_memscope(getenv("MEMSCOPE"), &cli);
    if (setenv("LD_PRELOAD", preload, 1) != 0)
        die(1, "cannot set LD_PRELOAD: %s", strerror(errno));
    if (ms[0] && setenv("MEMSCOPE", ms, 1) != 0)
        die(1, "cannot set MEMSCOPE: %s", strerror(errno));

    warn_unpreloadable(cmd[0]);
    fflush(NULL);
    execvp(cmd[0], cmd);
    int err = errno;

    /* Only reached on failure: pick the shell's status and a one-line reason. */
    if (err == ENOENT) {
        struct stat st;
        if (strchr(cmd[0], '/') && stat(cmd[0], &st) == 0)
            /* the file is there: its #! interpreter or ELF loader is not */
            die(EXIT_NOEXEC, "%s: cannot execute: interpreter or loader not found", cmd[0]);
        die(EXIT_NOTFOUND, "%s: command not found", cmd[0]);
    }
    die(EXIT_NOEXEC, "%s: cannot execute: %s", cmd[0], strerror(err));
}

/* ------------------------------------------------------------------------
 * main
 * ---------------------------------------------------------------------- */

int memscope_top_main(int argc, char **argv); /* tools/top.c */

static int cmd_version(void)
{
    char tried[3 * PATH_MAX];
    char *lib = find_library(tried, sizeof tried);
    printf("memscope %s\n", MEMSCOPE_VERSION_STR);
    printf("library: %s\n", lib ? lib : "not found");
    free(lib);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage_error("missing command (usage: memscope run [options] -- COMMAND [ARGS...]; try 'memscope --help')");
    const char *sub = argv[1];
    if (strcmp(sub, "run") == 0)
        return cmd_run(argc - 2, argv + 2);
    if (strcmp(sub, "top") == 0)
        return memscope_top_main(argc - 2, argv + 2);
    if (strcmp(sub, "report") == 0)
        return ms_report_main(argc - 2, argv + 2);
    if (strcmp(sub, "version") == 0 || strcmp(sub, "--version") == 0) {
        if (argc > 2)
            usage_error("version takes no arguments" HELP_HINT);
        return cmd_version();
    }
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
        print_usage();
        return 0;
    }
    if (sub[0] == '-')
        usage_error("unknown option '%s'" HELP_HINT, sub);
    usage_error("unknown command '%s'" HELP_HINT, sub);
}
