/* ownsig.c: a program with its own handler on SIGRTMAX-1, for
 * tests/test_leaks.sh.  A live leak check must leave it in place (the
 * first check once replaced it for good with the one that stops threads):
 * after memscope_check_leaks, raise() must still reach the program's
 * handler, and a second check must work as well.  Prints "handled N
 * checks A B"; N must be 2. */
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>

static volatile sig_atomic_t handled;
static void on_sig(int sig) { (void)sig; handled++; }

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sig;
    sigaction(SIGRTMAX - 1, &sa, NULL);
    raise(SIGRTMAX - 1);
    long (*check)(int) = (long (*)(int))dlsym(RTLD_DEFAULT, "memscope_check_leaks");
    int null = open("/dev/null", O_WRONLY);
    long a = check ? check(null) : -2;
    raise(SIGRTMAX - 1);
    long b = check ? check(null) : -2;
    printf("handled %d checks %ld %ld\n", (int)handled, a, b);
    return 0;
}
