/* sigalloc.c: a 1 kHz timer whose handler frees and allocates, while the
 * program's main thread asks memscope for leak checks, heap profiles,
 * stats and memory back, for tests/test_leaks.sh.  Not async-signal-safe,
 * but real programs do it, and memscope must neither hang nor abort: each
 * of those calls holds memscope's locks on the program's thread, and the
 * handler's malloc once waited on them for ever (leak checks, 5 times out
 * of 5) or saw a profile snapshot half taken (a false "double free" abort).
 * Prints "sigalloc ok N" with N the timer ticks that ran. */
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

static void *slot[64];
static volatile unsigned ticks;

static void on_alarm(int sig) {
    (void)sig;
    unsigned i = ticks++ % 64;
    free(slot[i]);
    slot[i] = malloc(1 + (ticks * 37) % 5000);
}

int main(void) {
    long (*check)(int) = (long (*)(int))dlsym(RTLD_DEFAULT, "memscope_check_leaks");
    int (*profile)(int, int) = (int (*)(int, int))dlsym(RTLD_DEFAULT, "memscope_write_heap_profile_fd");
    size_t (*give_back)(void) = (size_t(*)(void))dlsym(RTLD_DEFAULT, "memscope_free_os_memory");
    void (*print_stats)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, "memscope_print_stats");
    if (!check || !profile || !give_back || !print_stats) {
        printf("sigalloc: memscope's API not found\n");
        return 1;
    }
    static void *keep[20000];
    for (int i = 0; i < 20000; i++) keep[i] = malloc(32 + i % 500);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 1000}, {0, 1000}};
    setitimer(ITIMER_REAL, &it, NULL);
    int null = open("/dev/null", O_WRONLY);
    for (int round = 0; round < 20; round++) {
        if (check(null) < 0) {
            printf("sigalloc: check failed\n");
            return 1;
        }
        profile(null, round & 1);
        give_back();
        print_stats(null);
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    for (int i = 0; i < 20000; i++) free(keep[i]);
    printf("sigalloc ok %u\n", ticks > 0 ? 1u : 0u);
    return 0;
}
