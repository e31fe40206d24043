/* api.c: the heap profiler's public functions and its exit-time work.
 *
 * memscope_write_heap_profile and friends write a profile of the moment
 * they are called; MEMSCOPE=heapprofile=PATH writes one at exit, and
 * MEMSCOPE=leaks prints what is still allocated at exit.  A PATH may hold
 * "%p", replaced by the process id, so that the children of a forking
 * program each write their own file instead of overwriting the parent's.
 * Files are written to a temporary name in the same directory and renamed
 * into place, so a reader never sees half a profile.
 */
#include "prof.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ms_prof_write(int fd, int kind, int debug) {
    ms_held_t old;
    ms_hold(&old);
    prof_snap_t *snap = ms_prof_snap_take();
    int rc = -1;
    if (snap) {
        rc = debug ? ms_prof_write_text(fd, snap, kind) : ms_prof_write_pprof(fd, snap, kind);
        ms_prof_snap_free(snap);
    }
    ms_release(&old);
    return rc;
}

static int write_path(const char *path, int kind) {
    int saved = errno;
    char final[MS_OPT_PATH_MAX + 32], tmp[MS_OPT_PATH_MAX + 64];
    if (!path || !ms_path_expand(path, final, sizeof final)) {
        ms_warn("memscope: heap profile: no usable path given");
        return -1;
    }
    if (!ms_prof_enabled()) {
        ms_warn("memscope: heap profile: profiling is off (MEMSCOPE=profile_rate=0); %s not written", final);
        return -1;
    }
    /* A path that is not a regular file (a device such as /dev/stdout, a
     * FIFO, a symbolic link) is written through, as `> path` would: the
     * rename below would put a file in its place (it once replaced
     * /dev/null).  A FIFO with no reader is refused, not waited for. */
    struct stat st;
    if (lstat(final, &st) == 0 && !S_ISREG(st.st_mode)) {
        int fd = open(final, O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd < 0) {
            ms_warn("memscope: heap profile: cannot open %s: %s", final,
                    errno == ENXIO ? "a FIFO with no reader" : ms_errstr(errno));
            errno = saved;
            return -1;
        }
        struct stat to; /* a link to a regular file: that file, rewritten */
        bool ok = fstat(fd, &to) == 0 && (!S_ISREG(to.st_mode) || ftruncate(fd, 0) == 0);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        int rc = ok ? ms_prof_write(fd, kind, 0) : -1;
        if (close(fd) != 0) rc = -1;
        if (rc != 0) ms_warn("memscope: heap profile: writing %s failed", final);
        errno = saved;
        return rc;
    }
    ms_snprintf(tmp, sizeof tmp, "%s.%d.tmp", final, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        ms_warn("memscope: heap profile: cannot write %s: %s (creating %s)", final, ms_errstr(errno), tmp);
        errno = saved;
        return -1;
    }
    int rc = ms_prof_write(fd, kind, 0);
    if (close(fd) != 0) rc = -1;
    if (rc == 0 && rename(tmp, final) != 0) rc = -1;
    if (rc != 0) {
        ms_warn("memscope: heap profile: writing %s failed", final);
        unlink(tmp);
    }
    errno = saved;
    return rc;
}

MEMSCOPE_API int memscope_write_heap_profile(const char *path) {
    ms_ensure_init();
    return write_path(path ? path : ms_opt.heapprofile, PROF_HEAP);
}

MEMSCOPE_API int memscope_write_peak_profile(const char *path) {
    ms_ensure_init();
    return write_path(path, PROF_PEAK);
}

MEMSCOPE_API int memscope_write_heap_profile_fd(int fd, int debug) {
    ms_ensure_init();
    if (fd < 0 || debug < 0 || !ms_prof_enabled()) return -1;
    return ms_prof_write(fd, PROF_HEAP, debug);
}

MEMSCOPE_API int64_t memscope_profile_rate(void) {
    return atomic_load_explicit(&ms_sample_rate, memory_order_relaxed);
}

/* ms_prof_exit: the exit-time profile and leak report; true if leaks=exit
 * found something (the caller ends the process with status 23). */
bool ms_prof_exit(int report_fd) {
    if (!ms_prof_enabled()) return false;
    if (ms_opt.heapprofile[0]) write_path(ms_opt.heapprofile, PROF_HEAP);
    if (ms_opt.leaks != LEAKS_ON && ms_opt.leaks != LEAKS_EXIT) return false; /* reachable: src/leak/ */
    int stacks = ms_prof_report_leaks(report_fd, 20);
    /* the stacks are the sampled blocks'; the counts are exact for all */
    struct memscope_stats st = {.size = sizeof st};
    memscope_read_stats(&st);
    if (stacks == 0 && st.heap_objects == 0) {
        ms_printf_fd(report_fd, "memscope: no blocks still allocated at exit\n");
    } else if (atomic_load(&ms_sample_rate) != 1) {
        ms_printf_fd(report_fd,
                     "memscope: %llu block(s), %llu bytes, still allocated at exit (exact)%s; every block's stack "
                     "with MEMSCOPE=profile_rate=1\n",
                     (unsigned long long)st.heap_objects, (unsigned long long)st.heap_alloc,
                     stacks == 0 ? ", none of them sampled" : "");
    }
    return (stacks > 0 || st.heap_objects > 0) && ms_opt.leaks == LEAKS_EXIT;
}
