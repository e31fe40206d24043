/* test_fork: the scavenger works again in a fork child.
 *
 * The parent has a running scavenger thread when it forks; the child has
 * none (only the forking thread survives fork).  The child frees 64 MB and,
 * with no call of its own, must see the pages released after the delay:
 * the scavenger was started again on demand.  The parent keeps working.
 * Runs itself with MEMSCOPE=scavenge_delay_ms=200.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "memscope.h"
#include "testhelper.h"

static void *volatile sink;

/* released_after_free: frees a touched block of mb MB, sleeps ms, and says
 * whether the heap released at least most of it meanwhile. */
static int released_after_free(size_t mb, long ms) {
    struct memscope_stats a = {.size = sizeof a}, b = {.size = sizeof b};
    char *p = malloc(mb << 20);
    if (!p) return 0;
    memset(p, 7, mb << 20);
    sink = p;
    memscope_read_stats(&a);
    free(p);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    memscope_read_stats(&b);
    return b.released_total - a.released_total >= ((mb - 4) << 20);
}

int main(int argc, char **argv) {
    th_run_with("scavenge_delay_ms=200", argv);
    (void)argc;
    CHECK("parent: scavenger releases after the delay", released_after_free(16, 800));
    pid_t pid = fork();
    if (pid == 0) {
        int ok = released_after_free(64, 1000);
        _exit(ok ? 0 : 1);
    }
    CHECK("parent: still allocates while the child runs", (sink = malloc(1000)) != NULL);
    free(sink);
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK("child: scavenger started again and released the freed 64 MB", WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK("parent: scavenger still works after the fork", released_after_free(16, 800));
    return print_test_summary();
}
