/* runone.c — run one benchmark process and measure it from outside.
 *
 * Measures wall-clock time (CLOCK_MONOTONIC around fork..wait4) and peak
 * resident set size (ru_maxrss from wait4, i.e. the kernel's high-water mark
 * for that child alone) of one workload run under one allocator.  Doing it
 * here rather than with /usr/bin/time keeps the harness dependency-free and
 * lets us set LD_PRELOAD only in the child (the harness itself is never run
 * under the allocator being measured), enforce a timeout, and report a crash
 * by signal name instead of losing it.
 *
 * usage: runone [-p preload.so] [-t timeout_s] -- program [args...]
 *   -p ''  or no -p: LD_PRELOAD is removed (system glibc malloc).
 * After the child exits, prints one line to stdout:
 *   RUN wall_s=<s> maxrss_kib=<KiB> exit=<code|-1> signal=<num|0> timeout=<0|1>
 *       user_s=<s> sys_s=<s> minflt=<page faults without I/O>
 * The child's stdout/stderr are inherited.  runone's own exit status is 0
 * unless it could not run the child at all.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static volatile sig_atomic_t timed_out;
static void on_alarm(int sig) { (void)sig; timed_out = 1; }

int main(int argc, char **argv)
{
    const char *preload = NULL;
    unsigned timeout = 120;
    int i = 1;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) { i++; break; }
        if (strcmp(argv[i], "-p") == 0 && i + 1 < argc) preload = argv[++i];
        else if (strcmp(argv[i], "-t") == 0 && i + 1 < argc)
            timeout = (unsigned)strtoul(argv[++i], NULL, 10);
        else { fprintf(stderr, "runone: bad argument %s\n", argv[i]); return 2; }
    }
    if (i >= argc) {
        fprintf(stderr, "usage: runone [-p lib.so] [-t secs] -- prog [args]\n");
        return 2;
    }
    fflush(stdout);

    double t0 = now_s();
    pid_t pid = fork();
    if (pid < 0) { perror("runone: fork"); return 2; }
    if (pid == 0) {
        if (preload && preload[0]) setenv("LD_PRELOAD", preload, 1);
        else unsetenv("LD_PRELOAD");
        execv(argv[i], &argv[i]);
        fprintf(stderr, "runone: exec %s: %s\n", argv[i], strerror(errno));
        _exit(127);
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;           /* no SA_RESTART: wait4 gets EINTR */
    sigaction(SIGALRM, &sa, NULL);
    alarm(timeout);

    int status = 0, killed = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    for (;;) {
        pid_t w = wait4(pid, &status, 0, &ru);
        if (w == pid) break;
        if (w < 0 && errno == EINTR) {
            if (timed_out && !killed) { kill(pid, SIGKILL); killed = 1; }
            continue;
        }
        perror("runone: wait4");
        return 2;
    }
    double wall = now_s() - t0;
    alarm(0);

    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    fflush(stdout);
    printf("RUN wall_s=%.4f maxrss_kib=%ld exit=%d signal=%d timeout=%d user_s=%.3f sys_s=%.3f minflt=%ld\n",
           wall, ru.ru_maxrss, code, sig, killed,
           (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6,
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6, ru.ru_minflt);
    return 0;
}
