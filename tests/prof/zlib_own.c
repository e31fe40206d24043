/* zlib_own.c: a program whose symbol scope has a deflateReset of its own,
 * as a program that links zlib statically and exports it does (node).
 * memscope's gzip must never reach it: libz.so.1's deflateInit2_ calls
 * deflateReset by name, and bound to the program's it crashed node.  Built
 * with -rdynamic; allocates a block, writes "done" and exits, so that
 * heapprofile=... writes a gzipped profile at exit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int deflateReset(void *strm);
int deflateReset(void *strm) {
    (void)strm;
    fputs("zlib_own: the program's deflateReset was called\n", stderr);
    return -2; /* Z_STREAM_ERROR */
}

static void *volatile kept;
static __attribute__((noinline)) void own_site(void) { kept = malloc(1 << 20); }

int main(void) {
    own_site();
    memset(kept, 1, 1 << 20);
    puts("done");
    return 0;
}
