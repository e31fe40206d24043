/* test_seccomp: a process confined with seccomp to calls that do not
 * include membarrier still allocates, with the heap profiler sampling.
 *
 * A program may confine itself (or a child it forks) with a seccomp filter
 * that lists the calls it allows and kills the process on any other, as
 * sshd's pre-authentication child does.  memscope must make no call there
 * that the program did not: in sampled mode the heap profiler counts under
 * its tally's lock and never calls membarrier (only leak-check mode's
 * batches use it, registered when the profiler starts).  A version whose
 * first counting thread registered for membarrier at its first count had
 * both children here killed by SIGSYS.  Each child installs a filter that
 * kills on membarrier and nothing else, then mallocs and frees blocks the
 * profiler samples (profile_rate=256: nearly all of 5000 bytes), its own
 * and one from before the fork; it must exit normally.  Children forked
 * before and after the parent's own first samples.  A kernel without
 * seccomp filters fails the test: it cannot show what it checks.
 */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "memscope.h"
#include "testhelper.h"

#ifndef SECCOMP_RET_KILL_PROCESS
#define SECCOMP_RET_KILL_PROCESS SECCOMP_RET_KILL
#endif

static bool confine(void) {
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_membarrier, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 && syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0;
}

/* child: exit status 0, 77 if it could not confine itself, or killed */
static int child(void *inherited) {
    pid_t pid = fork();
    if (pid == 0) {
        if (!confine()) _exit(77);
        free(inherited);
        for (int i = 0; i < 1000; i++) {
            void *volatile p = malloc(5000);
            free(p);
        }
        _exit(0);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid) return -1;
    if (WIFSIGNALED(st)) fprintf(stderr, "  child killed by signal %d\n", WTERMSIG(st));
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int main(int argc, char **argv) {
    (void)argc;
    th_run_with("profile_rate=256", argv);
    int first = child(NULL);
    CHECK("seccomp-filter-installed", first != 77);
    CHECK("confined-child-before-parent-samples", first == 0);
    void *keep[100];
    for (int i = 0; i < 100; i++) keep[i] = malloc(5000);
    CHECK("confined-child-after-parent-samples", child(keep[0]) == 0);
    for (int i = 0; i < 100; i++) free(keep[i]);
    return print_test_summary();
}
