/* exitlost.c: a block lost just before exit, for tests/test_leaks.sh.
 * Built with -O0 and without the scrub cases.c does: the exit handlers'
 * frames (atexit, _dl_fini, memscope's own destructor) lie over the dead
 * frames of the program's last malloc, so every copy of the block's
 * address that malloc left there is scanned as a root by the check at
 * exit.  At profile_rate=1 memscope's sampling hook runs 3 KiB deep and
 * used to leave such copies; LeakSanitizer reports the block, and so must
 * memscope: direct 1. */
#include <stdio.h>
#include <stdlib.h>

static void bye(void) { printf("atexit-ran\n"); }

int main(void) {
    atexit(bye);
    void *p = malloc(100);
    p = 0;
    printf("partial");
    return p != 0;
}
