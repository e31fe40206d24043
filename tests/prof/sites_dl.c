/* sites_dl.c: an allocation site in a library the program dlopens at run
 * time (tests/test_profile.sh). */
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) void *dl_site(size_t n) {
    char *p = calloc(1, n);
    if (p) p[n - 1] = 1;
    return p;
}
