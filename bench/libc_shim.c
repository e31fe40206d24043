/* libc_shim.c — preloadable glibc malloc, for programs linked to another one.
 *
 * Debian's redis-server is linked against libjemalloc.so.2, so without a
 * preload it runs on jemalloc, not on glibc.  Preloading this shim puts
 * glibc's own malloc (the __libc_* entry points) in front of jemalloc, which
 * is what bench/run_apps.sh calls "glibc" for redis.  Build:
 *   cc -O2 -shared -fPIC -o build/bench/libc_shim.so bench/libc_shim.c
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

/* glibc exports no __libc_ name for this one: look it up in libc itself
 * (RTLD_NEXT would find jemalloc's, which must not see glibc's blocks). */
size_t malloc_usable_size(void *p)
{
    static size_t (*fn)(void *);
    if (!fn) {
        void *h = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
        if (h) fn = (size_t (*)(void *))dlsym(h, "malloc_usable_size");
        if (!fn) return 0;
    }
    return fn(p);
}

void *malloc(size_t n) { return __libc_malloc(n); }
void free(void *p) { __libc_free(p); }
void *calloc(size_t a, size_t b) { return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { return __libc_realloc(p, n); }
void *memalign(size_t al, size_t n) { return __libc_memalign(al, n); }
void *aligned_alloc(size_t al, size_t n) { return __libc_memalign(al, n); }
void *valloc(size_t n) { return __libc_memalign(4096, n); }
int posix_memalign(void **out, size_t al, size_t n)
{
    if (al < sizeof(void *) || (al & (al - 1))) return EINVAL;
    void *p = __libc_memalign(al, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
