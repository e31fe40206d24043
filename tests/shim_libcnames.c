/* shim_libcnames.c: the classic malloc-counting interposer, for
 * tests/test_preload.sh.  It defines malloc, free, calloc and realloc as
 * calls of glibc's own names (__libc_malloc and the rest) and counts them,
 * the way such shims are written everywhere.  Preloaded ahead of memscope,
 * those names must reach memscope's allocator and never come back here.
 * It prints its counts at exit, with write(), as "shim: mallocs N frees N". */
#include <stddef.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);

static unsigned long nmalloc, nfree;

#define EXPORT __attribute__((visibility("default"))) /* shims are built hidden */
EXPORT void *malloc(size_t n) {
    nmalloc++;
    return __libc_malloc(n);
}
EXPORT void free(void *p) {
    if (p) nfree++;
    __libc_free(p);
}
EXPORT void *calloc(size_t a, size_t b) {
    nmalloc++;
    return __libc_calloc(a, b);
}
EXPORT void *realloc(void *p, size_t n) { return __libc_realloc(p, n); }

static int put_num(char *b, unsigned long x) {
    char t[24];
    int m = 0, k = 0;
    do t[m++] = (char)('0' + x % 10);
    while (x /= 10);
    while (m) b[k++] = t[--m];
    return k;
}

__attribute__((destructor)) static void report(void) {
    char b[96] = "shim: mallocs ";
    int k = 14;
    k += put_num(b + k, nmalloc);
    for (const char *s = " frees "; *s; s++) b[k++] = *s;
    k += put_num(b + k, nfree);
    b[k++] = '\n';
    if (write(2, b, (size_t)k) < 0) return;
}
