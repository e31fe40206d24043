/* ownsig.c: a program with its own handler on SIGRTMAX-1, for
 * tests/test_leaks.sh.  A live leak check must leave it in place (the
 * first check once replaced it for good with the one that stops threads):
 * after memscope_check_leaks, raise() must still reach the program's
 * handler, and a second check must work as well.  Prints "handled N
 * checks A B"; N must be 2.
 *
 * ownsig all: the program ignores every real-time signal, so no thread can
 * be stopped: each check must fail with -1 and one line, and the program
 * go on (a failed check once unmapped its tables twice: SIGSEGV).  Prints
 * "all checks A B". */
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>

static volatile sig_atomic_t handled;
static void on_sig(int sig) { (void)sig; handled++; }

int main(int argc, char **argv) {
    long (*check)(int) = (long (*)(int))dlsym(RTLD_DEFAULT, "memscope_check_leaks");
    if (argc > 1 && strcmp(argv[1], "all") == 0) {
        for (int s = SIGRTMIN; s <= SIGRTMAX; s++) signal(s, SIG_IGN);
        void *keep = malloc(100);
        long a = check ? check(2) : -2, b = check ? check(2) : -2;
        printf("all checks %ld %ld\n", a, b);
        free(keep);
        return 0;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sig;
    sigaction(SIGRTMAX - 1, &sa, NULL);
    raise(SIGRTMAX - 1);
    int null = open("/dev/null", O_WRONLY);
    long a = check ? check(null) : -2;
    raise(SIGRTMAX - 1);
    long b = check ? check(null) : -2;
    printf("handled %d checks %ld %ld\n", (int)handled, a, b);
    return 0;
}
