/* sites_lib.c: an allocation site in a shared library linked at build time
 * (tests/test_profile.sh).  Blocks are kept live. */
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) void *lib_site(size_t n) {
    void *p = malloc(n);
    if (p) memset(p, 0x5a, 64);
    return p;
}
