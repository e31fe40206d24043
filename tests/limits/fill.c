/* fill.c: mallocs blocks of the size given until malloc returns NULL,
 * writing each, and prints the megabytes it got.  Built plainly, so that
 * tests/test_limits.sh runs the same binary under glibc's malloc and under
 * memscope (LD_PRELOAD) with the same ulimit -v.
 * Usage: fill BYTES */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    size_t size = argc > 1 ? strtoull(argv[1], NULL, 10) : 0;
    if (size < sizeof(void *)) {
        fprintf(stderr, "usage: fill BYTES (at least %zu)\n", sizeof(void *));
        return 2;
    }
    void *prev = NULL;
    size_t total = 0;
    for (void **p; (p = malloc(size)) != NULL; prev = p, total += size) {
        memset(p, 1, size);
        *p = prev; /* every block stays reachable */
    }
    printf("%zu\n", total >> 20);
    return 0;
}
