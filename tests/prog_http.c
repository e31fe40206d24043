/* prog_http.c: the host program of the HTTP endpoint tests (tests/test_http*.sh).
 *
 * Usage: prog_http SECONDS [ADDR:PORT]
 * Keeps 48 MiB live from keep_big() (1 MiB blocks), churns small blocks
 * from churn_small() (freed at once: allocated, not in use), and peaks at
 * 96 MiB from peak_burst() once, early, then frees it.  It prints "tick N"
 * every 100 ms on stdout: the tests check that this output is exactly
 * 0..10*SECONDS-1 whatever clients do to the endpoint.  With ADDR:PORT it
 * starts the endpoint with memscope_http_start instead of MEMSCOPE=http.
 * With a third argument "fork", it forks once the endpoint runs; the child
 * (which inherits no server) starts its own on 127.0.0.1:0, prints nothing
 * on stdout, lives SECONDS and exits; the parent waits for it at the end.
 */
#include <sys/wait.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "memscope.h"

static void *keep[48];

__attribute__((noinline)) static void keep_big(void) {
    for (int i = 0; i < 48; i++) {
        keep[i] = malloc(1 << 20);
        memset(keep[i], 1, 1 << 20);
    }
}

__attribute__((noinline)) static void churn_small(int n) {
    for (int i = 0; i < n; i++) {
        char *volatile p = malloc(64 + (i % 512));
        p[0] = 1;
        free(p);
    }
}

__attribute__((noinline)) static void peak_burst(void) {
    void *b[96];
    for (int i = 0; i < 96; i++) {
        b[i] = malloc(1 << 20);
        memset(b[i], 2, 4096);
    }
    for (int i = 0; i < 96; i++) free(b[i]);
}

int main(int argc, char **argv) {
    int secs = argc > 1 ? atoi(argv[1]) : 10;
    if (argc > 2 && memscope_http_start(argv[2]) != 0) return 3;
    setvbuf(stdout, NULL, _IOLBF, 0);
    pid_t child = -1;
    if (argc > 3 && strcmp(argv[3], "fork") == 0) {
        child = fork();
        if (child == 0) {
            int rc = memscope_http_start("127.0.0.1:0");
            sleep((unsigned)secs);
            _exit(rc == 0 ? 0 : 4);
        }
    }
    peak_burst();
    keep_big();
    for (int t = 0; t < secs * 10; t++) {
        churn_small(2000);
        printf("tick %d\n", t);
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < 48; i++) free(keep[i]);
    int status = 0;
    if (child > 0 && (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)) return 5;
    return 0;
}
