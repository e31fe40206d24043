/* init.c: process start, exit, and the version.
 *
 * The library initializes itself on the first allocation (which can come
 * from the dynamic loader or another library's constructor, before ours)
 * and again harmlessly from its constructor.  Initialization must not
 * allocate: it sets the cookie key, the central lists, the thread-cache key
 * and fork handlers, reads MEMSCOPE, and arms the heap cycles.  A thread
 * that allocates while it is initializing (glibc's pthread functions may)
 * is let through: everything the allocation needs is set up first.
 * The constructor also starts the HTTP endpoint when MEMSCOPE=http=... asks.
 * At exit, MEMSCOPE=stats=1 prints the summary (not after _exit(), which
 * runs no destructor).
 */
#include "internal.h"
#include "http/http.h"

#include <fcntl.h>

_Atomic int ms_inited; /* 0 no, 1 in progress, 2 done */
/* With stats=1, a private copy of stderr taken at load time: programs such
 * as coreutils close fd 2 in an atexit handler, before our destructor. */
static int stats_fd = 2;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static __thread bool in_init __attribute__((tls_model("initial-exec")));

/* fork(): the allocator's locks are all taken around it (tcache.c).  In
 * the child only the forking thread exists, so every lock is re-created and
 * the scavenger is marked not running; only then are the caches of the
 * threads left behind flushed (which frees spans and would otherwise kick a
 * scavenger that is not there), and the scavenger may start again on demand
 * after the handler returns. */
static void fork_child(void) {
    ms_tcache_fork_child_locks();
    ms_scavenger_fork_child();
    ms_cycle_fork_child();
    ms_stats_fork_child();
    ms_tcache_fork_child_flush();
    ms_scavenger_fork_done();
}

void ms_init_slow(void) {
    if (in_init) return;
    pthread_mutex_lock(&init_lock);
    if (atomic_load(&ms_inited) == 0) {
        in_init = true;
        atomic_store(&ms_inited, 1);
        ms_cookie_key = ms_os_random();
        ms_heap_init();
        ms_central_init();
        ms_tcache_init_process();
        ms_scavenger_init();
        pthread_atfork(ms_tcache_fork_prepare, ms_tcache_fork_parent, fork_child);
        ms_options_init();
        if (ms_opt.stats) {
            int fd = fcntl(2, F_DUPFD_CLOEXEC, 10);
            if (fd >= 0) stats_fd = fd;
        }
        ms_cycle_init();
        atomic_store_explicit(&ms_inited, 2, memory_order_release);
        in_init = false;
    }
    pthread_mutex_unlock(&init_lock);
}

/* The constructor runs before main, outside any malloc call: the place to
 * start the HTTP server's thread (MEMSCOPE=http=...), which pthread_create
 * and glibc may allocate for.  Never from ms_init_slow, which can run
 * inside the program's first malloc. */
__attribute__((constructor)) static void ms_ctor(void) {
    ms_ensure_init();
    ms_http_start_from_env();
}

__attribute__((destructor)) static void ms_dtor(void) {
    if (ms_opt.stats) memscope_print_stats(stats_fd);
}

MEMSCOPE_API int memscope_version(void) { return MEMSCOPE_VERSION; }
