/* testhelper.h: a tiny named-check harness for memscope's test programs.
 *
 * Modelled on mimalloc's test/testhelper.h so every test reads the same way:
 *
 *     CHECK("malloc-aligned", ((uintptr_t)malloc(8) % 16) == 0);
 *     CHECK_BODY("calloc-zero") {
 *         char *p = calloc(1, 100);
 *         result = (p != NULL && p[0] == 0);
 *         free(p);
 *     }
 *     return print_test_summary();
 *
 * Inside CHECK_BODY the body sets `result` (true = pass); CHECK_TRUE(expr)
 * inside a body records the first failing expression with file:line so the
 * report says which line failed, not just which check.  print_test_summary()
 * prints "N passed, N failed" for this binary and returns the number of
 * failures, so it can be the exit code.  Output goes to stderr unbuffered so
 * a crash mid-check still shows which check was running.
 */
#ifndef MEMSCOPE_TESTHELPER_H
#define MEMSCOPE_TESTHELPER_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

static int th_ok = 0;     /* checks passed */
static int th_failed = 0; /* checks failed */
static const char *th_fail_file = NULL; /* first failing CHECK_TRUE of the current body */
static int th_fail_line = 0;
static const char *th_fail_expr = NULL;

static inline bool th_check_start(const char *name)
{
    fprintf(stderr, "test: %s...  ", name);
    fflush(stderr);
    th_fail_file = NULL;
    th_fail_line = 0;
    th_fail_expr = NULL;
    return true;
}

static inline void th_check_end(const char *name, bool result, const char *file,
                                int line, const char *expr)
{
    if (result && th_fail_file == NULL) {
        th_ok++;
        fprintf(stderr, "ok.\n");
    } else {
        th_failed++;
        if (th_fail_file != NULL)
            fprintf(stderr, "\n  FAILED: %s: %s:%d: %s\n", name, th_fail_file, th_fail_line,
                    th_fail_expr);
        else
            fprintf(stderr, "\n  FAILED: %s: %s:%d: %s\n", name, file, line, expr);
    }
    fflush(stderr);
}

/* CHECK_BODY(name) { ... result = <bool>; }  The body runs exactly once. */
#define CHECK_BODY(name)                                                                 \
    for (bool th_done_ = !th_check_start(name), result = true; !th_done_;                \
         th_check_end(name, result, __FILE__, __LINE__, "result"), th_done_ = true)

/* CHECK(name, expr): a one-expression check. */
#define CHECK(name, expr) CHECK_BODY(name) { result = CHECK_TRUE(expr); }

/* CHECK_TRUE(expr): inside a CHECK_BODY; records the first failing expression
 * with its own file:line and marks the check failed; evaluates to expr. */
#define CHECK_TRUE(expr) th_check_true_((expr) ? true : false, __FILE__, __LINE__, #expr)

static inline bool th_check_true_(bool ok, const char *file, int line, const char *expr)
{
    if (!ok && th_fail_file == NULL) {
        th_fail_file = file;
        th_fail_line = line;
        th_fail_expr = expr;
    }
    return ok;
}

/* print_test_summary prints this binary's tally and returns the failure count
 * (capped at 125 so it stays a valid, non-signal exit status). */
static inline int print_test_summary(void)
{
    fprintf(stderr, "\n%d passed, %d failed\n", th_ok, th_failed);
    fflush(stderr);
    return th_failed > 125 ? 125 : th_failed;
}

#ifdef MEMSCOPE_H
#include <string.h>
/* th_heap_objects: memscope_read_stats' heap_objects (live blocks), or
 * UINT64_MAX if the read fails; for tests that include memscope.h first. */
static inline uint64_t th_heap_objects(void)
{
    struct memscope_stats st;
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    if (memscope_read_stats(&st) != 0) return UINT64_MAX;
    return st.heap_objects;
}
#endif

/* th_run_with: re-executes this program with MEMSCOPE=settings unless
 * MEMSCOPE already holds them (memscope reads MEMSCOPE once, at start).
 * Returns only in the re-executed program, or if exec failed (then exits 1). */
#include <string.h>
#include <unistd.h>
static inline void th_run_with(const char *settings, char **argv) {
    const char *ms = getenv("MEMSCOPE");
    if (ms && strstr(ms, settings)) return;
    setenv("MEMSCOPE", settings, 1);
    execv("/proc/self/exe", argv);
    perror("execv");
    exit(1);
}

#endif /* MEMSCOPE_TESTHELPER_H */
