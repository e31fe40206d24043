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
 * At exit, MEMSCOPE=heapprofile, leaks and stats do their work (not after
 * _exit(), which runs no destructor).
 */
#include "internal.h"
#include "http/http.h"
#include "leak/leak.h"
#include "prof/prof.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Atomic int ms_inited; /* 0 no, 1 in progress, 2 done */
/* With stats or leaks, a private copy of stderr taken at load time: programs
 * such as coreutils close fd 2 in an atexit handler, before our destructor. */
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static __thread bool in_init __attribute__((tls_model("initial-exec")));

/* fork(): one handler owns the protocol, for the core and for the layers
 * above it.  Every allocator lock is taken around the fork, outermost
 * first: the profiler's (ms_prof_fork_prepare: it allocates from the core
 * with its locks held), then the thread registry, the central lists, the
 * heap; the parent releases them in the reverse order (free's check has no
 * lock: a child finishes an opening that a thread left behind half done,
 * by the fork generation pagemap.c's child handler bumps).
 * In the child only the forking thread exists, so every lock is re-created
 * and the scavenger is marked not running; only then are the caches of the
 * threads left behind flushed (which frees spans and would otherwise kick a
 * scavenger that is not there), and the scavenger may start again on demand
 * after the handler returns; the profiler and the leak checker then forget
 * what the lost threads were doing, and the HTTP server's sockets, whose
 * thread stayed in the parent, are closed.
 * A fork from a signal handler that interrupted memscope would wait for
 * ever for a lock its own thread holds: 1 ms alarms whose handler forks
 * hung about one run in 300 of tests/test_lifecycle.sh's forkalarm on a
 * loaded machine (by hand), the handler waiting for the heap lock that the
 * malloc it interrupted held.  So a fork whose thread holds one of those
 * locks (ms_locks_held) or is inside the profiler (ms_prof_busy: a batch it
 * may be appending to, which the profiler's prepare would wait for) is left
 * bare, as glibc leaves a single-threaded process's: nothing is taken, and
 * the child, which POSIX allows only async-signal-safe calls until it
 * execs, keeps the state as it was (its thread goes on with the interrupted
 * call if the handler returns, and finishes it).  The decision is taken
 * once, here, for every layer; the prepare's own locks are the fork's, so
 * the count goes back to 0 when they are taken. */
static __thread bool fork_bare __attribute__((tls_model("initial-exec")));

static void fork_prepare(void) {
    fork_bare = ms_locks_held || ms_prof_busy;
    if (fork_bare) return;
    ms_prof_fork_prepare();
    ms_tcache_fork_prepare();
    ms_central_fork_prepare();
    ms_heap_fork_prepare();
    ms_locks_held = 0;
}

static void fork_parent(void) {
    if (fork_bare) {
        fork_bare = false;
        return;
    }
    ms_heap_fork_parent();
    ms_central_fork_parent();
    ms_tcache_fork_parent();
    ms_prof_fork_parent();
    ms_locks_held = 0;
}

static void fork_child(void) {
    if (!fork_bare) {
        ms_locks_held = 0;
        ms_os_fork_child();
        ms_log_fork_child();
        ms_pagemap_fork_child();
        ms_heap_fork_child();
        ms_central_fork_child();
        ms_tcache_fork_child_locks();
        ms_scavenger_fork_child();
        ms_cycle_fork_child();
        ms_stats_fork_child();
        ms_tcache_fork_child_flush();
        ms_scavenger_fork_done();
        ms_prof_fork_child();
        ms_leak_fork_child();
    }
    fork_bare = false;
    ms_http_fork_child(); /* takes no lock: a bare fork's child drops the sockets too */
}

void ms_init_slow(void) {
    if (in_init) return;
    pthread_mutex_lock(&init_lock);
    if (atomic_load(&ms_inited) == 0) {
        in_init = true;
        atomic_store(&ms_inited, 1);
        ms_heap_init();
        ms_cookie_key = ms_os_random();
        ms_os_ticks_init();
        ms_tcache_init_process();
        ms_scavenger_init();
        pthread_atfork(fork_prepare, fork_parent, fork_child);
        ms_options_init(); /* and where memscope's lines go (log.c) */
        ms_cycle_init();
        ms_prof_init();
        atomic_store_explicit(&ms_inited, 2, memory_order_release);
        in_init = false;
    }
    pthread_mutex_unlock(&init_lock);
}

/* The constructor runs before main, outside any malloc call: the place to
 * start the HTTP server's thread (MEMSCOPE=http=...), which pthread_create
 * and glibc may allocate for.  Never from ms_init_slow, which can run
 * inside the program's first malloc. */
/* own_malloc_note: a program that defines malloc itself (Chromium exports
 * one) never calls memscope's, and every diagnostic then sees an empty
 * heap: "peak in-use 0 bytes", "no leaks found".  When MEMSCOPE asked for
 * something, one line says so.  A malloc in the same object as this
 * function is memscope's (linked in, libmemscope.a).  A non-PIE executable
 * that takes malloc's address (python3.11) makes its PLT entry the address
 * dlsym gives, under an undefined symbol, and that entry calls whichever
 * malloc comes first: one block taken through it says whose, and goes back
 * through free's entry, which calls the same allocator.  A library loaded
 * before memscope with a malloc of its own (LD_PRELOAD="libjemalloc.so.2
 * libmemscope.so") was otherwise silent there. */
static void own_malloc_note(void) {
    const char *ms = getenv(MS_ENV);
    if (!ms || !ms[0]) return; /* before dlsym, whose "malloc" lies in .rodata */
    void *m = dlsym(RTLD_DEFAULT, "malloc");
    Dl_info theirs, mine;
    const ElfW(Sym) *sym = NULL;
    if (!m || !dladdr1(m, &theirs, (void **)&sym, RTLD_DL_SYMENT) ||
        !dladdr((void *)own_malloc_note, &mine) || theirs.dli_fbase == mine.dli_fbase || !sym)
        return;
    const char *who = theirs.dli_fname && theirs.dli_fname[0] ? theirs.dli_fname : "the program";
    if (sym->st_shndx == SHN_UNDEF) {
        void (*f)(void *) = (void (*)(void *))dlsym(RTLD_DEFAULT, "free");
        void *p = f ? ((void *(*)(size_t))m)(1) : NULL;
        bool ours = !p || ms_pagemap_lookup(p) != NULL;
        if (p) f(p);
        if (ours) return;
        who = "a library loaded before memscope";
    }
    ms_warn("memscope: %s has a malloc of its own: it never calls memscope's, whose statistics, profiles "
            "and leak checks see none of its blocks", who);
}

__attribute__((constructor)) static void ms_ctor(void) {
    ms_ensure_init();
    own_malloc_note();
    if (ms_opt.http[0]) ms_http_start(ms_opt.http);
}

/* At exit: the heap profile and the leak report (prof/api.c), then the
 * stats.  leaks=exit ends the process with status 23 when something is
 * reported, as LeakSanitizer does: the program's stdio buffers are flushed
 * first, so no output of the program is lost.  The reports take
 * memscope's locks and allocate (symbolizing, the leak check) for
 * milliseconds, so the program's signals wait until they are done: a handler that forks or allocates, legal
 * enough in practice under glibc, would otherwise find memscope inside
 * malloc every time (a helper session's 1 ms timer whose handler forked
 * hung at exit under leaks=reachable, 3 times out of 3). */
__attribute__((destructor)) static void ms_dtor(void) {
    ms_held_t old;
    ms_hold(&old);
    int report_fd = ms_log_fd(); /* -1: the program's stderr is gone; the exit status still says */
    bool fail = ms_prof_exit(report_fd);
    if (ms_opt.leaks == LEAKS_REACHABLE && ms_leak_exit(report_fd)) fail = true;
    if (ms_opt.stats && report_fd >= 0) memscope_print_stats(report_fd);
    if (fail) {
        fflush(NULL);
        _exit(23);
    }
    ms_release(&old);
}

MEMSCOPE_API int memscope_version(void) { return MEMSCOPE_VERSION; }
