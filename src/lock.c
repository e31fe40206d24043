/* lock.c: memscope's own mutex, for locks held for a few hundred
 * instructions and taken on the allocator's slow paths and in the profiler.
 *
 * A word: 0 free, 1 held, 2 held with sleepers (Drepper, "Futexes are
 * tricky", mutex 3).  Taking it uncontended is one compare-and-swap and
 * releasing it one exchange.  A glibc pthread mutex costs several times
 * that (its type, owner and robust-list bookkeeping: about 55 instructions
 * a lock and unlock pair in a bulk malloc-free run, callgrind), and the
 * central lists take their class's lock twice per batch of objects that a
 * thread cache refills or gives back.  A waiter spins briefly first, since
 * holds are shorter than a futex round trip, then sleeps in the kernel, so
 * a holder that is preempted costs its waiters no CPU.  It never allocates
 * and has no owner: no recursion, and no check that the thread unlocking it
 * is the one that took it.
 * A fork child reinitializes it by storing 0.  errno stays the program's:
 * a futex wait that finds the word already changed fails with EAGAIN, and
 * free, which may wait here, must leave errno as it found it (POSIX 2024;
 * glibc's free does).
 *
 * The heap lock stays a pthread mutex: it is held across system calls
 * (mmap, madvise), where a waiter spinning first gains nothing.
 */
#include "internal.h"

#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

__thread uint32_t ms_locks_held __attribute__((tls_model("initial-exec")));

void ms_lock_wait(ms_lock_t *l) {
    for (int i = 0; i < 16; i++) {
        ms_spin_pause();
        int z = 0;
        if (atomic_load_explicit(&l->v, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_weak_explicit(&l->v, &z, 1, memory_order_acquire, memory_order_relaxed))
            return;
    }
    int saved = errno; /* a wait that finds the word changed fails with EAGAIN: not the program's */
    while (atomic_exchange_explicit(&l->v, 2, memory_order_acquire) != 0)
        syscall(SYS_futex, &l->v, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
    errno = saved;
}

void ms_lock_wake(ms_lock_t *l) {
    int saved = errno;
    syscall(SYS_futex, &l->v, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    errno = saved;
}
