/* writes.c: which heap pages the program wrote while a check marked.
 *
 * The mark runs with the program going on (mark.c), so a pointer moved
 * into a block the mark has already scanned hides the block it points at.
 * Looking again from scratch settles it, at the price of a second whole
 * mark (half of a check's time on a large heap).  A collector that marks
 * while its program runs (Boehm's "mostly parallel" one) asks instead
 * which pages were written since it began, and rescans only those, from
 * the roots, with the threads stopped.  Linux answers that question with
 * the asynchronous write-protect of userfaultfd (5.19 for the mode, 6.7 for
 * PAGEMAP_SCAN, which reads and re-arms it in one walk of the page tables):
 *
 *   - start: every heap mapping (reservations and direct spans,
 *     ms_heap_mappings) is registered for write-protect on one
 *     userfaultfd, asynchronous, user faults only (which an unprivileged
 *     process may ask for), and PAGEMAP_SCAN protects every page in it;
 *   - the program's first write to a protected page costs it a minor fault
 *     (the kernel clears the page's flag and goes on; no thread of ours
 *     takes part), and the page reads as written from then on;
 *   - take: PAGEMAP_SCAN lists the pages written since the last take (or
 *     the start) and protects them again, in the same walk;
 *   - stop: the mappings are unregistered, a chunk at a time, which lifts
 *     every page's protection, so nothing of the check outlives it.
 * Pages mapped after the start (the heap grew: a new mapping over its
 * reservation, or a new direct span) are registered at the next take, and
 * read as written there, as do pages returned to the kernel and faulted
 * in again: a page's flag lives in its page-table entry, and a fresh entry
 * has none.  A page never counts as unwritten when it was written, which
 * is the one thing the mark relies on; a written page may be listed that
 * the program did not change, which costs a rescan.
 *
 * Where the kernel refuses (an older kernel, a seccomp filter on
 * userfaultfd, too many mappings), take and start say false and mark.c
 * looks again the old way.  The two descriptors (the userfaultfd and
 * /proc/self/pagemap) are opened at the start and closed at the stop:
 * memscope keeps none of the program's descriptor numbers between calls
 * (tests/test_fds.c), and a fork child must not use the parent's
 * userfaultfd, which names the parent's address space.  All of it runs
 * under the checker's lock, one check at a time, and nothing here
 * allocates from the heap: the buffers come from ms_os_alloc and go at
 * the stop.
 */
#include "leak.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Linux 6.7's PAGEMAP_SCAN (linux/fs.h), which older headers lack */
typedef struct pm_region_s { uint64_t start, end, categories; } pm_region_t;
typedef struct pm_scan_s {
    uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
    uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
} pm_scan_t;
#define PM_SCAN _IOWR('f', 16, pm_scan_t)
#define PM_SCAN_WP_MATCHING (1ull << 0)
#define PM_SCAN_CHECK_WPASYNC (1ull << 1)
#define PAGE_IS_WRITTEN (1ull << 1)
#define FEATURE_WP_ASYNC (1ull << 15)   /* UFFD_FEATURE_WP_ASYNC, Linux 6.7 */
#define USER_MODE_ONLY 1                /* UFFD_USER_MODE_ONLY, Linux 5.11 */

/* Bytes unregistered per call at the stop: the call holds the address
 * space's lock for writing, which makes another thread's page fault, mmap
 * or munmap in the heap wait; 1 GiB of protected pages at once held it
 * about 35 ms on the 2-CPU machine (by hand).  Lifting the protection
 * first (UFFDIO_WRITEPROTECT, under the lock for reading) and then
 * unregistering took the 10M-block check's stop from about 60 to 250 ms. */
#define UNREGISTER_CHUNK ((uintptr_t)32 << 20)
#define VEC_LEN 4096

static int ufd = -1, pmfd = -1;
static bool refused;     /* the kernel said no to the userfaultfd once: it will again */
static bool active;      /* between a start that worked and the stop */
static uintptr_t (*maps)[2];
static size_t nmaps, maps_cap, maps_bytes;
static uint64_t maps_gen;   /* the heap's count of changes to them when listed */
static pm_region_t *vec;
static size_t vec_bytes;
static uintptr_t (*got)[2];
static size_t ngot, got_cap, got_bytes;

static bool open_fds(void) {
    if (refused) return false;
    int saved = errno;
    int u = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | USER_MODE_ONLY);
    struct uffdio_api api = {.api = UFFD_API, .features = FEATURE_WP_ASYNC};
    if (u >= 0 && ioctl(u, UFFDIO_API, &api) == 0 && (api.features & FEATURE_WP_ASYNC)) {
        int p = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
        if (p >= 0) {
            ufd = u, pmfd = p;
            errno = saved;
            return true;
        }
    }
    if (u >= 0) close(u);
    refused = true;
    errno = saved;
    return false;
}

static void close_fds(void) {
    if (ufd >= 0) close(ufd), close(pmfd);
    ufd = pmfd = -1;
}

/* list: the heap's mappings now, into maps */
static bool list(void) {
    for (;;) {
        size_t n = ms_heap_mappings(maps, maps_cap, &maps_gen);
        if (n == SIZE_MAX) return false;
        if (n <= maps_cap) {
            nmaps = n;
            return true;
        }
        size_t nb = ((2 * n * sizeof maps[0]) + MS_PAGE_MASK) & ~MS_PAGE_MASK;
        void *p = ms_os_alloc(nb);
        if (!p) return false;
        ms_os_free(maps, maps_bytes);
        maps = p, maps_bytes = nb, maps_cap = nb / sizeof maps[0];
    }
}

static bool register_all(void) {
    for (size_t i = 0; i < nmaps; i++) {
        struct uffdio_register r = {.range = {.start = maps[i][0], .len = maps[i][1] - maps[i][0]},
                                    .mode = UFFDIO_REGISTER_MODE_WP};
        if (ioctl(ufd, UFFDIO_REGISTER, &r) != 0) return false;
    }
    return true;
}

static bool got_add(uint64_t lo, uint64_t hi) {
    if (ngot && got[ngot - 1][1] == lo) { /* the next call's walk goes on where the last stopped */
        got[ngot - 1][1] = hi;
        return true;
    }
    if (ngot == got_cap) {
        size_t nb = got_bytes ? 2 * got_bytes : (size_t)64 << 10;
        uintptr_t (*n)[2] = ms_os_alloc(nb);
        if (!n) return false;
        if (ngot) memcpy(n, got, ngot * sizeof got[0]);
        ms_os_free(got, got_bytes);
        got = n, got_bytes = nb, got_cap = nb / sizeof got[0];
    }
    got[ngot][0] = lo, got[ngot][1] = hi, ngot++;
    return true;
}

/* scan_all: one walk of every mapping: the written pages protected again,
 * and listed in got if keep */
static bool scan_all(bool keep) {
    if (!vec && !(vec = ms_os_alloc(vec_bytes = VEC_LEN * sizeof *vec))) return false;
    ngot = 0;
    for (size_t i = 0; i < nmaps; i++) {
        for (uint64_t lo = maps[i][0]; lo < maps[i][1];) {
            pm_scan_t a = {.size = sizeof a, .flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
                           .start = lo, .end = maps[i][1], .vec = (uintptr_t)vec, .vec_len = VEC_LEN,
                           .category_mask = PAGE_IS_WRITTEN, .return_mask = PAGE_IS_WRITTEN};
            long n = ioctl(pmfd, PM_SCAN, &a);
            if (n < 0) return false;
            for (long k = 0; keep && k < n; k++)
                if (!got_add(vec[k].start, vec[k].end)) return false;
            if (a.walk_end <= lo) return false; /* no progress: never loop for ever */
            lo = a.walk_end;
        }
    }
    return true;
}

/* arm: the mappings listed again and registered, then scanned; a mapping
 * made between the two makes the scan refuse (CHECK_WPASYNC): then once more */
static bool arm(bool keep) {
    for (int tries = 0; tries < 3; tries++) {
        if (!list() || !register_all()) continue;
        if (scan_all(keep)) return true;
    }
    return false;
}

bool ms_leak_writes_start(void) {
    int saved = errno;
    active = open_fds() && arm(false);
    if (!active) ms_leak_writes_stop();
    errno = saved;
    return active;
}

int ms_leak_writes_take(const uintptr_t (**out)[2], size_t *n, bool stopped) {
    int saved = errno, r = -1;
    *out = (const uintptr_t (*)[2])got, *n = 0;
    if (!active) return -1;
    if (!stopped) {
        r = arm(true) ? 1 : -1;
    } else if (ms_heap_mappings_gen() != maps_gen) {
        /* listing them takes the heap's lock, which a stopped thread may
         * hold; they changed since the last list: this stop cannot tell,
         * and what was written waits, still flagged, for the next take */
        r = 0;
    } else {
        /* the same mappings, all registered (a thread stopped in the
         * middle of mapping a new one has handed out no block from it) */
        r = scan_all(true) ? 1 : -1;
    }
    if (r < 0) active = false; /* a walk cut short re-armed pages no one will read */
    errno = saved;
    *out = (const uintptr_t (*)[2])got, *n = r > 0 ? ngot : 0;
    return r;
}

void ms_leak_writes_stop(void) {
    if (ufd < 0) return;
    int saved = errno;
    active = false;
    /* in chunks (UNREGISTER_CHUNK); a part never registered is passed over */
    if (list())
        for (size_t i = 0; i < nmaps; i++) {
            for (uintptr_t lo = maps[i][0]; lo < maps[i][1]; lo += UNREGISTER_CHUNK) {
                uintptr_t hi = maps[i][1] - lo > UNREGISTER_CHUNK ? lo + UNREGISTER_CHUNK : maps[i][1];
                struct uffdio_range r = {.start = lo, .len = hi - lo};
                (void)ioctl(ufd, UFFDIO_UNREGISTER, &r);
            }
        }
    /* and whatever that missed (a mapping it could not name): closing the
     * descriptor unregisters every range still registered, at once */
    close_fds();
    /* and the buffers go, as the rest of the check's memory does */
    ms_os_free(maps, maps_bytes), ms_os_free(vec, vec_bytes), ms_os_free(got, got_bytes);
    maps = NULL, vec = NULL, got = NULL;
    nmaps = maps_cap = maps_bytes = vec_bytes = ngot = got_cap = got_bytes = 0;
    errno = saved;
}

void ms_leak_writes_fork_child(void) {
    /* a check the fork cut in two: its descriptors are the parent's; closing
     * the child's copies touches nothing of the parent's */
    close_fds();
    active = false;
}
