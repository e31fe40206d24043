/* tcache.c: per-thread caches.  See malloc.c for the overview.
 *
 * Each thread owns a tcache_t: one singly linked list of free objects per
 * size class (Go's mcache, tcmalloc's ThreadCache).  The owner is the only
 * thread that ever touches the lists, so the fast paths in malloc.c take no
 * lock and execute no atomic read-modify-write.  A free from any thread goes
 * to the freeing thread's own cache: cross-thread frees cost the same as
 * local ones and never serialize threads; the objects drift back to their
 * spans through the central lists in batches.
 *
 * List lengths: a list starts allowed nothing and each refill (an
 * underflow) raises the limit by a batch, or to the length of the chain it
 * takes from a slot ("Batches"), up to 64 KiB or 128 objects per class
 * (128 KiB above 8 KiB; and its spare as many again, below), so a thread that uses a
 * class heavily keeps more of it while a thread
 * that touched a class once keeps little.  The first refill of a class up
 * to 32 KiB takes at most 4 KiB of objects from the spans (one kernel
 * page, or one object): a refill writes a link into every object it
 * carves there, and a whole
 * batch of a class of 4 KiB is 64 KiB of pages made resident for a thread
 * that may want one block (one fopen's buffer).  At 8 KiB, a program that
 * mallocs once or twice in each of 30 classes (64 mallocs of 16 to 520
 * bytes) had 180 KiB of heap and page map resident, at 4 KiB 112 KiB
 * (glibc's heap: 20 KiB; by hand).  Classes above 32 KiB keep four
 * blocks and four spare (those above 64 KiB: below).
 *
 * Blocks above 64 KiB.  Those 16 classes hold two blocks a span, and a
 * block left in a cache keeps its span, up to twice its size, from the
 * page heap's other blocks.  With a block and a spare block a class, and
 * the central lists keeping a chain or two in slots and an empty span in
 * each class, bench/large.c (blocks of 64 KiB to 8 MiB, none live at the
 * end) ended with 4.8 MB of heap in use (tests/test_midsize.c).  So these
 * lists keep max at 0 and hold -room objects: free's fast path always
 * finds no room, and every free of such a block reaches
 * ms_tcache_free_mid, which puts it on its list while all of the
 * thread's lists above 64 KiB hold at most MS_TC_MID_BYTES (512 KiB);
 * else the lists of other classes go back first, then the block itself.
 * A malloc still pops the list on the fast path, and a refill takes one
 * block.  What leaves goes straight to the spans (ms_central_give_idle,
 * idle from now), their central lists keep no slots (central.c:
 * first_take), and an empty span goes back to the page heap.  Why 512 KiB:
 * any two blocks fit, and a loop that mallocs and frees blocks of 100 to
 * 106 KiB, 4 live, which straddle two classes, needs three: at 256 KiB
 * nearly every step went through the central list and the page heap (9.7
 * -> 100 ns a step with no sampling, by hand); at 512 KiB none does, and
 * the step costs the slow path of its free (9.7 -> 14.8 ns, 165 -> 243
 * instructions; the page heap instead of these classes: 150 ns).
 * bench/large.c ended with 0.5-1.8 MB of heap in use with caps of 256
 * KiB to 1 MiB, and took less heap from the OS than before with each
 * (means of 10 seeds, by hand).
 *
 * Churning lists.  Between two refills, a list's objects plus the thread's
 * live objects of the class are a constant, so a thread that frees and
 * allocates a class in turn, with a live count going up and down around
 * a level, runs its list dry only when that count reaches a new high; a
 * refill of a whole batch then raised the constant by a batch for each
 * such high and grew the limit with it, so the list never filled up again
 * to give anything back.  Its cached objects settled at the highest live
 * count seen plus up to a batch, less the live count now: in
 * bench/many_threads.c (32 threads, each churning 2,000 objects of 16 to
 * 1024 bytes) 25 to 40 objects a list, 13.3 MiB in all, next to 33.6 MiB
 * live.  So a refill that comes after the thread freed into the list more
 * than a quarter as many objects as the last refill brought
 * (tcache_t.churn_at: the class's malloc count from which that holds) is
 * a churning one: it takes a quarter of a batch and leaves the limit as
 * it is.  A stream of mallocs still takes batches and grows.
 * many_threads' caches: 10.5 MiB, peak RSS 50.9 -> 48.9 MiB (medians of 7
 * interleaved runs; glibc 42), for 15% more takes from the central lists
 * and 0.5% fewer instructions in all; st_churn, larson, prodcons,
 * mixed_realloc, small_nodes and tl_remote within 0.5% of their
 * instructions (callgrind) and their run-to-run spread of peak RSS (by
 * hand).
 *
 * Batches: chains move whole, as magazines do (Bonwick's magazine layer,
 * tcmalloc's pre-linked batches).  Each list has a spare chain
 * (tclist_t.spare): a free that finds the list at its limit hands the old
 * spare, if any, to the central list and makes the full list the spare;
 * a malloc that finds the list empty takes the spare as the list.  Both
 * are two pointer moves, and a thread whose count of live objects swings
 * by less than a list's length never reaches the central list.  (A list
 * of 16- or 32-byte objects at its limit may also take its spare with a
 * refill, from fresh memory of the span it refilled from:
 * ms_tcache_refill.)  What
 * does reach it is a whole chain of max objects, which it keeps as it is
 * in a slot and hands as it is to the next empty list it fits (central.c);
 * only chains that find the slots full are walked, back into their
 * spans.  Before, a full list sent half of itself back, at most 8 KiB,
 * cut into batches by walking them, and a refill took a batch from a
 * slot: on an sh6bench-like run (1000 blocks of one size allocated, then
 * freed in reverse, over 8 sizes) that exchange cost 11 instructions a
 * malloc and free, 2.5 so (callgrind, 173 -> 157 M in all; mimalloc 143
 * M).  An empty list with no spare takes a slot's chain, or a batch or up
 * to 2 KiB of objects where that is more (classes below 64 bytes; 4 KiB
 * for a list at its class's limit, ms_tcache_refill) from the spans,
 * within its limit.  Every exchange with the central list costs
 * a few hundred instructions besides its objects' (the slow paths' entry,
 * the lock, the refill's bookkeeping).  The refill's bulk from the spans
 * is small because it is what costs memory: refills of up to 8 KiB
 * (classes below 256 bytes) made mixed_realloc's peak RSS 0.6 MiB higher,
 * 4 KiB 0.5 MiB, 2 KiB nothing measurable (by hand, 3-4 runs each).
 *
 * Memory a thread frees but never allocated.  Until a thread's first malloc
 * of a class, its list for the class allows nothing (max 0), so its frees
 * of that class take the slow path, which gathers them apart from the list
 * (tclist_t.foreign) and hands them to the central list a batch at a time.
 * They are other threads' objects: cached on the list, the thread's first
 * mallocs would hand them back to it, and a thread that is given one block
 * by another and then allocates its own would keep writing a cache line the
 * other thread writes too (Hoard's passive false sharing, bench/
 * false_sharing.c: 2.8x the fastest peer's time before this).  The first
 * malloc of the class refills the list, then returns what was gathered to
 * its spans (after, so that the refill cannot take it straight back), and
 * the list is an ordinary one from then on; a pure consumer (frees, never
 * allocates) keeps passing its frees back in batches, as its full list did
 * before.  (Not above 64 KiB, where every free goes to ms_tcache_free_mid:
 * a block there is far larger than a cache line, and the thread's budget
 * bounds what it keeps.)
 *
 * Per-class malloc counts live next to the list heads (same cache line),
 * as the class's sampling countdown (tclist_t.left: mbase - left, with
 * mbase apart, written when the countdown is drawn again), written only
 * by the owner and read by memscope_read_stats from other threads
 * (mallocs_of).  Frees are not counted one by
 * one: every object on a list came in by a free or a refill and leaves by a
 * malloc or a hand-back to the central lists, so frees = len + mallocs +
 * (handed back - refilled), and only the slow paths count (tclist_t.nnet).
 * The free fast path thus writes nothing but the list.
 *
 * Quiet threads.  A thread that stops allocating keeps what its lists hold,
 * and every object there pins its span: after a free in random order, a
 * sleeping thread's cache can keep megabytes from the OS (the seed's
 * shuffled demo).  The scavenger therefore parks the cache of a thread that
 * has neither allocated nor freed for the scavenge delay and sits in a
 * system call: it returns what the lists hold to their spans for the
 * owner, while the owner cannot touch them, with nothing added to the
 * fast paths.
 * The protocol, on tcache_t.park (OWNED, TAKING, PARKED, DEAD):
 *   1. the scavenger moves OWNED to TAKING, counts the thread's context
 *      switches, reads that it is blocked in a system call, not inside one
 *      of malloc's slow paths (ms_tc_busy: they may wait on a lock or in
 *      mmap with the cache half updated), and not in a signal handler that
 *      interrupted memscope's code (interrupted_in_memscope: the fast
 *      paths mark nothing, the signal frame holds the interrupted pc);
 *   2. it points the owner's ms_tc at ms_tc_empty, then looks again: still
 *      blocked at the same stack pointer and pc, and not switched out
 *      since (1).  The thread has not run between the looks, so no malloc
 *      of it holds the old pointer, and when it runs it finds the empty
 *      cache.  If it did run, ms_tc goes back and the state to OWNED
 *      (a malloc or free of it may have run its fast path on the empty
 *      cache meanwhile and find its own cache back in its slow path: the
 *      slow path takes the class from the list the fast path used,
 *      ms_tcache_list_owner, and takes from the thread's own list when
 *      that holds objects, malloc.c: alloc_small_slow);
 *   3. it flushes the lists as ms_tcache_flush does at exit, but straight
 *      to the spans and with the pages this frees counted idle since the
 *      thread went quiet (the scavenger releases them at once), and
 *      stores PARKED.
 * The owner's next malloc or free finds the empty cache, takes the slow
 * path to ms_tcache_create, waits while the state is TAKING and takes its
 * cache back, counts kept: as if the thread had just started.  Only the
 * owner leaves PARKED, only the scavenger enters TAKING (and only from
 * OWNED), and the owner's thread exit waits out TAKING before DEAD, so the
 * cache cannot be retired while the scavenger works on it.  Where /proc or
 * process_vm_readv are refused nothing is parked; linked statically,
 * memscope's code is the program's, so a thread in any signal handler is
 * left alone.
 *
 * Memory.  A cache is 7.5 KiB, of which a thread writes the fields it is
 * made with and the line of each class it uses: everything per class that
 * the fast paths and free's slow path touch is on the class's line
 * (tclist_t), set up by its first use (a refill or a free:
 * ms_tcache_list_setup), and the exit's flush writes only lines that
 * were; the refills' word of each class (churn_at, 4 bytes) follows the
 * fields the cache is made with, a line for 16 classes, and the word
 * that turns the class's sampling countdown into its malloc count
 * (mbase, 8 bytes, written when a countdown is drawn) follows that, a
 * line for 8 classes.  Written whole when made, with the per-class counts in
 * arrays of their own, every cache had its 8.3 KiB resident, three pages
 * in a thread of one class (bench/false_sharing.c's three threads: 28 ->
 * 16 KiB of caches resident; many_threads' 33: 232 -> 156 KiB; pagemap,
 * by hand).
 *
 * Lifetime: a thread gets its cache on its first allocation (until then
 * ms_tc points at ms_tc_empty, whose empty lists send the fast path to the
 * slow path, so the fast path needs no NULL test; free's takes room on such
 * a list before it finds none, so it does write there, racing with other
 * threads without a cache: tclist_t says why that is safe).  A pthread key destructor
 * returns every cached object at thread exit and folds the counters into the
 * totals of exited threads.  After that, the thread's last allocations (other
 * destructors) go straight to the central lists.  In a fork child only the
 * forking thread exists: every other cache is flushed into the central lists
 * so its memory is usable again and its counts are kept.  A cache that
 * retires (either way) also gives up the profiler's capture buffer of its
 * thread (tcache_t.stack_own), mapped at the thread's first sample: it
 * goes to the next thread's cache (spare_own, below).  A thread that never
 * samples maps none, though it may be handed a retired one.
 */
#include "internal.h"

#include <link.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* A list and its spare hold at most 128 KiB (256 KiB above 8 KiB, below)
 * and 256 objects.  The object cap is
 * what keeps a quiet thread from stranding memory: every cached object pins
 * its span, and after a free in random order the cached objects lie in as
 * many different spans.  With 4096 32-byte objects allowed, 38 MiB of the
 * shuffled small-objects demo stayed resident after the scavenger ran; with
 * 256, 9 MiB (tests/test_strand.c).  Measured with callgrind, the cap did
 * not change the instructions of st_churn, small_nodes, larson or prodcons
 * by more than 0.2%. */
#define MS_TC_CLASS_BYTES ((size_t)128 << 10)
#define MS_TC_CLASS_OBJECTS 256
/* Of which the list proper (max) holds half and its spare the other half
 * ("Batches"). */
#define MS_TC_LIST_BYTES (MS_TC_CLASS_BYTES / 2)
#define MS_TC_LIST_OBJECTS (MS_TC_CLASS_OBJECTS / 2)
/* Above 8 KiB a list holds 128 KiB, twice that.  64 KiB is one to seven
 * objects there, and a thread's count of free objects of a class wanders
 * up and down with its mallocs and frees: a list and its spare of M
 * objects each meet the central list about once per M * M of those steps.
 * On bench/mixed_realloc.c (16 B to 64 KiB, a third of them above 8 KiB)
 * the classes from 36 KiB up, one object a list, went to the central list
 * on 0.65 of their mallocs, and all the classes above 8 KiB 162,000 times
 * (the slow paths, the class's lock: some 400 instructions each); tcmalloc,
 * whose lists grow with use up to its thread's total, 17,000 times on the
 * same run (callgrind's call counts).  At 128 KiB, 54,000 (counted in the
 * code, by hand), and the run's
 * peak RSS stays as it was with spans of 4 objects from 8 to 32 KiB
 * (tools/mksizeclasses.c; with spans of 8 it rose by 1.1 MiB).  The
 * classes from 36 KiB up, two or three blocks a list at 128 KiB, still
 * made 45,000 of the run's 62,600 exchanges, 19,600 of them the 64 KiB
 * class's alone (every buffer that outgrows 32 KiB ends there, and every
 * restart frees one), and each takes its blocks from the spans' free
 * lists, a cache miss on every block's link.  So those lists hold four
 * blocks (and their spares four): 37,600 exchanges, 5% fewer instructions
 * of memscope's own (callgrind, 1M steps), CPU time 0.494 -> 0.481 s
 * (medians of 7 interleaved runs), peak RSS 48.5 -> 48.8 MiB, within its
 * run-to-run spread of about 0.9 (by hand).  Blocks above 64 KiB keep one
 * object a list (bench/large.c's RSS, below). */
#define MS_TC_BIG_LIST_BYTES ((size_t)128 << 10)
#define MS_TC_BIG_LIST_FROM 8192u
/* And all lists of a thread together hold at most 12 MiB, or one object
 * per list in use if that is more: the per-class limits alone add up to
 * 15.4 MiB.  The sum of the limits (max_bytes) is what is bounded, so the
 * fast paths count nothing: a list that must grow past it takes the room
 * from the longest other list (shrink_for).  Why not tcmalloc's 4 MiB: at
 * 4 MiB mixed_realloc's lists (16 B to 64 KiB) kept shrinking and growing
 * back, their objects went through the central lists to other spans, and
 * its peak RSS rose by 1.8 MiB (3.5%, by hand).  Its limits add up to
 * 10.7 MiB: at 8 MiB, with the lists above 8 KiB at 128 KiB, shrink_for
 * lowered a list 56,000 times in a run and the lists it lowered grew back,
 * 149,000 exchanges with the central lists where 12 MiB left 54,000 and
 * lowered none (by hand, counted in the code).  A quiet thread's
 * cache is not bounded by this but parked (below). */
#define MS_TC_TOTAL_BYTES ((uint64_t)12 << 20)
/* Many threads at once share 48 MiB, each at least 64 KiB: 200 threads
 * that each allocate and free a burst of 64 objects in 16 classes and then
 * wait held 70 MB of heap in use beyond their live blocks, 54 MB with a
 * budget of 32 MiB (by hand; glibc, whose arenas threads share, peaked at
 * 12 MB of RSS in all).  Why not 32 MiB (tcmalloc's overall budget): a
 * share must hold a batch and its spare in every class a thread churns,
 * or its lists keep lowering each other (shrink_for) and growing back,
 * and every such exchange hands the thread's objects to other threads
 * through the central lists and gives it theirs.  bench/many_threads.c's
 * 32 threads churn 32 classes of 16 to 1024 bytes, which takes 1.06 MiB;
 * at 32 MiB each had 0.97, and by the end of a run a thread's 2,000 live
 * objects lay on 700 pages of 4 KiB (one thread alone: 390; mimalloc,
 * whose pages belong to a thread: 380), its central takes were 19,000
 * and shrink_for's gives 9,000.  At 48 MiB: 450 pages, 10,800 takes and
 * 210 gives, 5-12% less CPU time at 200,000 steps a thread (two sets of
 * 9 interleaved runs; RSS 52 -> 54 MB), while the 200 threads' burst hit 79
 * MB of RSS instead of 61, at 40 MiB 62 (with 520 pages; jemalloc 87,
 * tcmalloc 116, mimalloc 237; medians of 7-9 runs, by hand).  A thread's
 * share is taken when one of its lists must grow, so threads that started
 * alone keep what they hold until then. */
#define MS_TC_OVERALL_BYTES ((uint64_t)48 << 20)
#define MS_TC_MIN_BYTES ((uint64_t)64 << 10)

/* ms_tls (internal.h): ms_tc, ms_tc_mine (even while parked), ms_tc_busy
 * and the other layers' hot words */
__thread ms_tls_t ms_tls __attribute__((tls_model("initial-exec"))) = {.tc = &ms_tc_empty};
static __thread bool tc_exited __attribute__((tls_model("initial-exec")));
enum { TC_OWNED, TC_TAKING, TC_PARKED, TC_DEAD };
/* held by the scavenger while it parks, and by fork (first) */
static pthread_mutex_t park_lock = PTHREAD_MUTEX_INITIALIZER;
void (*ms_tcache_on_unpark)(void);
void (*ms_tcache_on_exit)(void);
_Atomic uint64_t ms_tcache_parks;
tcache_t ms_tc_empty = {.is_dummy = true, .sample_left = INT64_MAX};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
/* the sentinel, linked to itself by ms_tcache_init_process: in .data, its
 * 6 KiB of lists nobody reads made two more pages of the library's file
 * resident in every process */
static tcache_t registry;
static fixalloc_t tc_pool = {.size = MS_TCACHE_BYTES};
static pthread_key_t tc_key;
/* The profiler's capture buffers of retired caches (reg_lock), on a
 * pool's free list (meta.c: cleared when taken, counted as metadata in
 * use only then), handed to the caches of new threads
 * (ms_tcache_create).  Unmapped at retirement, a buffer cost a program
 * that starts and ends threads an mmap at each thread's first sample and
 * an munmap at its exit, and the munmap stopped the threads running on
 * the other CPUs (the kernel flushes their TLBs): on bench/larson.c's
 * long run, 160 generations of 2 threads, the threads of a generation
 * ended 0.05-0.14 s apart in all, against 0.01-0.02 s with the buffers
 * kept, and the run took 0.44-0.46 s against 0.39-0.40 (by hand, three
 * interleaved runs each).  At most SPARE_OWN_MAX wait; the rest go back
 * to the OS as before, so the pool never holds more than 64 threads'
 * worth (512 KiB). */
#define SPARE_OWN_MAX 64
static fixalloc_t spare_own; /* its free list only: the buffers come from ms_meta_alloc; .size set by the first kept */
static uint32_t nspare_own;
/* counts of exited threads (reg_lock) */
static class_counts_t dead[MS_NUM_CLASSES];
static uint64_t dead_large_alloc, dead_large_free;
static _Atomic uint32_t nthreads; /* written under reg_lock; read anywhere */

/* len_of: the objects on list l and its spare, read from any thread: room
 * and max in one load, so a slow path changing both is seen before or
 * after, never half way (a free that took its room but is still in the
 * slow path counts already).  The spare (max objects when set) is read
 * before and after: a chain moving between the list and the spare is off
 * the one before it is on the other, but the list's word read after the
 * spare could see the chain on the list (a refill from the spare) while
 * the spare read before still held it; the second read of the spare then
 * differs, and the whole is read again. */
static inline uint32_t len_of(const tclist_t *l) {
    for (int tries = 0;; tries++) {
        void *s = __atomic_load_n(&l->spare, __ATOMIC_ACQUIRE);
        uint64_t w = __atomic_load_n(&l->room_max, __ATOMIC_ACQUIRE);
        if (__atomic_load_n(&l->spare, __ATOMIC_RELAXED) == s || tries == 16) {
            uint32_t max = (uint32_t)(w >> 32);
            return max - (uint32_t)w + (s && max ? max : 0);
        }
    }
}

/* mallocs_of: the objects of class c allocated by tc's thread, mbase -
 * left (tclist_t.left), read from any thread.  The owner changes the two
 * apart only when it draws the class's countdown again
 * (ms_tcache_set_left: left first, then mbase, between a raise and a
 * drop of rearming): a read that saw rearming raised, or mbase move, is
 * made again, since mbase read before such a change and left after it
 * count too few (only two draws between the reads, in sampled mode
 * microseconds apart, could leave mbase as it was); after 1000 tries,
 * an owner stopped there (a debugger), it takes what it read.  Taken alone, left
 * only falls, one a malloc, after the malloc's block has left the list
 * (malloc.c: list_pop), the order frees_of relies on. */
__attribute__((noinline)) static uint64_t mallocs_of(const tcache_t *tc, int c) {
    for (int tries = 0;; tries++) {
        uint32_t busy = __atomic_load_n(&tc->rearming, __ATOMIC_ACQUIRE);
        uint64_t m = atomic_load_explicit(&tc->mbase[c], memory_order_acquire);
        int64_t left = __atomic_load_n(&tc->lists[c].left, __ATOMIC_ACQUIRE);
        atomic_thread_fence(memory_order_acquire);
        if (tries == 1000 || (busy == 0 && __atomic_load_n(&tc->rearming, __ATOMIC_RELAXED) == 0 &&
                              atomic_load_explicit(&tc->mbase[c], memory_order_relaxed) == m))
            return m - (uint64_t)left;
        /* the owner, preempted between its two adds, runs again only
         * once this thread gives way: with 16 quick tries and no yield,
         * reads on a loaded machine took the half-done count, tens of
         * mallocs short (tests/test_unit_countdown.c) */
        sched_yield();
    }
}

/* ms_tcache_set_left (internal.h): called when a countdown is drawn, rarely */
void ms_tcache_set_left(tcache_t *tc, uint8_t c, int64_t left) {
    uint64_t d = (uint64_t)left - (uint64_t)tc->lists[c].left;
    ms_count_own32(&tc->rearming, 1);
    atomic_signal_fence(memory_order_seq_cst);
    ms_count_own((_Atomic uint64_t *)(void *)&tc->lists[c].left, d);
    atomic_signal_fence(memory_order_seq_cst);
    ms_count_own(&tc->mbase[c], d);
    atomic_signal_fence(memory_order_seq_cst);
    ms_count_own32(&tc->rearming, (uint32_t)-1);
}

/* frees_of: the objects of class c freed by tc's thread (see tclist_t.nnet),
 * read from any thread while the owner (or the scavenger parking its cache)
 * moves objects between the three terms.  A read that counts an object
 * twice is published for good (stats.c), so: the mallocs and nnet are read
 * before len, which no move from len to them (malloc, overflow, flush:
 * len drops first) can then count twice; and again after it, so that a
 * refill (nnet drops first, then len rises) read across is read again.
 * Read as len + mallocs + nnet, in that order, a move from len to nnet
 * that fell between the loads was counted in both. */
__attribute__((noinline)) static uint64_t frees_of(tcache_t *tc, int c) {
    const tclist_t *l = &tc->lists[c];
    for (int tries = 0;; tries++) {
        uint64_t nm = mallocs_of(tc, c);
        uint64_t nn = atomic_load_explicit(&l->nnet, memory_order_acquire);
        uint32_t len = len_of(l);
        atomic_thread_fence(memory_order_acquire);
        /* 16 quick tries, no yield: an owner that mallocs the class
         * without pause moves nm between two reads often, and the
         * scavenger reads every class of every cache at each look
         * (ops_of); with a yield a try and 1000 of them, one busy thread
         * could hold a look for milliseconds.  After them the last read
         * is taken as it is: exact unless one of the owner's slow paths
         * was under way across it */
        if (tries == 16 || (mallocs_of(tc, c) == nm &&
                            atomic_load_explicit(&l->nnet, memory_order_relaxed) == nn))
            return (uint64_t)len + nm + nn;
    }
}

/* MID_BIT: class c's bit in tcache_t.mid, counted from the last class
 * (those above 64 KiB are the last 16) */
#define MID_BIT(c) ((uint32_t)1 << (MS_NUM_CLASSES - 1 - (c)))

#define REFILL_BULK_BYTES 2048u         /* see "Batches" */
#define FIRST_REFILL_BYTES 4096u        /* see "List lengths" */
#define FIRST_REFILL_MAX_CLASS 32768u

/* bulk_of: a batch of class cls, or as many objects as fit in `bytes` if
 * that is more (see "Batches") */
static inline uint32_t bulk_of(uint8_t cls, uint32_t bytes) {
    uint32_t b = ms_class_batch[cls], n = bytes / ms_class_size[cls];
    return n > b ? n : b;
}

/* class_cap: the most a list of cls may allow (max); its spare holds as
 * many again */
static uint32_t class_cap(uint8_t cls) {
    size_t bytes = ms_class_size[cls] > MS_TC_BIG_LIST_FROM ? MS_TC_BIG_LIST_BYTES : MS_TC_LIST_BYTES;
    uint32_t cap = (uint32_t)(bytes / ms_class_size[cls]);
    if (cap > MS_TC_LIST_OBJECTS) cap = MS_TC_LIST_OBJECTS;
    /* at least a batch, so that the list and its spare hold two and one
     * can go back while one stays; above 32 KiB four blocks each
     * (MS_TC_BIG_LIST_BYTES says why; above 64 KiB no list comes here:
     * "Blocks above 64 KiB") */
    uint32_t b = ms_class_batch[cls], min = ms_class_size[cls] > 32768 ? 4 : b;
    return cap < min ? min : cap;
}

/* held_bytes: what a list of cls allowing max objects may hold with its
 * spare, as the thread's total (max_bytes) counts it */
static inline uint64_t held_bytes(uint8_t cls, uint32_t max) { return 2 * (uint64_t)max * ms_class_size[cls]; }

static void fold_counts_locked(tcache_t *tc) {
    for (int c = 1; c < MS_NUM_CLASSES; c++) {
        dead[c].mallocs += mallocs_of(tc, c);
        dead[c].frees += frees_of(tc, c);
    }
    dead[0].mallocs += atomic_load_explicit(&tc->large_mallocs, memory_order_relaxed);
    dead[0].frees += atomic_load_explicit(&tc->large_frees, memory_order_relaxed);
    dead_large_alloc += atomic_load_explicit(&tc->large_malloc_bytes, memory_order_relaxed);
    dead_large_free += atomic_load_explicit(&tc->large_free_bytes, memory_order_relaxed);
}

/* keep_own_locked: retiring cache tc's capture buffer waits for the next
 * thread (spare_own), or goes back to the OS past SPARE_OWN_MAX.  Apart
 * and cold: it runs once a thread. */
ms_cold static void keep_own_locked(tcache_t *tc) {
    void *own = tc->stack_own;
    tc->stack_own = NULL;
    if (nspare_own >= SPARE_OWN_MAX) {
        ms_meta_free(own, tc->stack_own_bytes);
        return;
    }
    ms_assert(spare_own.size == 0 || spare_own.size == tc->stack_own_bytes);
    spare_own.size = tc->stack_own_bytes;
    ms_fixalloc_free(&spare_own, own); /* mapped, no longer in use */
    nspare_own++;
}

/* retire_locked: a flushed cache leaves the registry; its counts live on in
 * the totals of exited threads. */
static void retire_locked(tcache_t *tc) {
    fold_counts_locked(tc);
    if (tc->stack_own) keep_own_locked(tc);
    tc->prev->next = tc->next;
    tc->next->prev = tc->prev;
    nthreads--;
    ms_fixalloc_free(&tc_pool, tc);
}

/* tc_destructor: the thread's exit (its key's destructor).  The cache is
 * the thread's own ms_tc_mine, not arg: a program that calls
 * pthread_setspecific on a key it never created (a zeroed pthread_key_t)
 * writes memscope's key when memscope made the process's first, and the
 * destructor then got the program's value (glibc refuses such a call with
 * EINVAL; a helper session's program crashed at thread exit). */
static void tc_destructor(void *arg) {
    (void)arg;
    tcache_t *tc = ms_tc_mine;
    if (!tc || tc->is_dummy) return;
    /* the scavenger may be parking the cache: wait, then keep it out */
    for (uint32_t st;;) {
        st = atomic_load_explicit(&tc->park, memory_order_acquire);
        if (st == TC_TAKING) sched_yield();
        else if (atomic_compare_exchange_weak(&tc->park, &st, TC_DEAD)) break;
    }
    ms_tc = &ms_tc_empty;
    ms_tc_mine = NULL;
    tc_exited = true;
    ms_tcache_flush(tc);
    ms_mutex_take(&reg_lock);
    retire_locked(tc);
    ms_mutex_give(&reg_lock);
    if (ms_tcache_on_exit) ms_tcache_on_exit();
}

/* unpark: the thread's own cache, parked or being parked, is its again. */
static tcache_t *unpark(tcache_t *tc) {
    uint32_t st;
    while ((st = atomic_load_explicit(&tc->park, memory_order_acquire)) == TC_TAKING) sched_yield();
    ms_tc = tc;
    if (st == TC_PARKED) {
        atomic_store_explicit(&tc->park, TC_OWNED, memory_order_release);
        if (ms_tcache_on_unpark) ms_tcache_on_unpark(); /* the scavenger watches it again */
    }
    return tc;
}

/* ms_tcache_hide / ms_tcache_unhide: while hidden, the calling thread
 * allocates and frees as a thread without a cache does (one object at a
 * time to and from the central lists), and its cache is left as it is.
 * For code that the allocator itself runs in the middle of a slow path and
 * that may call malloc: the scavenger's thread is started from whatever
 * free first leaves a span idle (scavenger.c: before_idle), which can be
 * inside shrink_for, an overflow or a flush of this very cache, and
 * pthread_create allocates the new thread's DTV with calloc on the calling
 * thread.  Through the cache, that calloc popped or refilled a list the
 * slow path below it was changing, and the slow path then stored counts
 * read before it (shrink_for: room_max from a stale len, max_bytes less a
 * limit the nested refill had already taken off): a list counted longer
 * than it was, and pop_chain walked off its end.  Nothing else writes
 * ms_tc meanwhile: it is only used where no scavenger runs yet. */
static __thread uint32_t tc_hidden __attribute__((tls_model("initial-exec")));
tcache_t *ms_tcache_hide(void) {
    tcache_t *tc = ms_tc;
    ms_tc = &ms_tc_empty;
    tc_hidden++;
    ms_tc_busy++; /* and never parked meanwhile: the scavenger just started may look at it */
    return tc;
}
void ms_tcache_unhide(tcache_t *tc) {
    ms_tc_busy--;
    if (--tc_hidden == 0) ms_tc = tc;
}

/* ms_tcache_list_owner: the cache list l is in.  ms_tc only ever points at
 * the shared empty cache or at the thread's own, so it is one of those. */
tcache_t *ms_tcache_list_owner(const tclist_t *l) {
    if ((uintptr_t)l - (uintptr_t)ms_tc_empty.lists < sizeof ms_tc_empty.lists || !ms_tc_mine) return &ms_tc_empty;
    ms_assert_internal((uintptr_t)l - (uintptr_t)ms_tc_mine->lists < sizeof ms_tc_mine->lists);
    return ms_tc_mine;
}

/* take_spare_own_locked: new cache tc takes a retired one's capture
 * buffer (spare_own), cleared, as the kernel would map it for the
 * thread's first sample.  Apart and cold: it runs once a thread. */
ms_cold static void take_spare_own_locked(tcache_t *tc) {
    tc->stack_own = ms_fixalloc_alloc(&spare_own); /* from its free list: cleared, in use */
    tc->stack_own_bytes = spare_own.size;
    nspare_own--;
}

tcache_t *ms_tcache_create(void) {
    if (tc_exited || tc_hidden) return NULL;
    if (ms_tc_mine) return unpark(ms_tc_mine);
    ms_mutex_take(&reg_lock);
    tcache_t *tc = ms_fixalloc_alloc(&tc_pool);
    if (tc) { /* lists: all 0 (max, room, and div: see ms_tcache_refill) */
        tc->sample_left = INT64_MAX;
        tc->tid = (int)syscall(SYS_gettid);
        tc->slot = &ms_tc;
        tc->busy = &ms_tc_busy;
        tc->tp = ms_thread_pointer();
        if (spare_own.free) take_spare_own_locked(tc);
        tc->next = registry.next;
        tc->prev = &registry;
        registry.next->prev = tc;
        registry.next = tc;
        nthreads++;
    }
    ms_mutex_give(&reg_lock);
    if (!tc) return NULL;
    /* ms_tc first: glibc may allocate inside pthread_setspecific (keys past
     * the first 32 get a second-level array), and that allocation must find
     * this cache instead of creating another one, forever */
    ms_tc = tc;
    ms_tc_mine = tc;
    pthread_setspecific(tc_key, tc);
    return tc;
}

/* ms_tcache_give_foreign: what the thread gathered of class cls (see
 * ms_tcache_free_foreign) goes to the central list. */
void ms_tcache_give_foreign(tcache_t *tc, int cls) {
    void *head = tc->lists[cls].foreign;
    uint32_t n = tc->lists[cls].nforeign;
    if (!head) return;
    /* off the cache before they are given, as pop_chain's chains are: a
     * fork while this thread is inside ms_central_give (waiting for the heap
     * lock in free_empty, or for the scavenger's lock in wake, after the
     * objects went back to their spans or into a slot) would otherwise
     * leave them on foreign in the child, whose ms_tcache_fork_child_flush
     * gives them a second time (the same objects handed out twice there) */
    tc->lists[cls].foreign = NULL;
    tc->lists[cls].nforeign = 0;
    ms_central_give((uint8_t)cls, head, n);
}

/* pop_chain: detaches the first n objects of a list as a NULL-terminated chain. */
static void *pop_chain(tclist_t *l, uint32_t n) {
    void *head = l->head, *p = head;
    for (uint32_t i = 1; i < n; i++) p = *(void **)p;
    l->head = *(void **)p;
    *(void **)p = NULL;
    l->room += (int32_t)n;
    return head;
}

/* total_cap: what a thread's lists may hold together now: its share of
 * MS_TC_OVERALL_BYTES, within [MS_TC_MIN_BYTES, MS_TC_TOTAL_BYTES]. */
static uint64_t total_cap(void) {
    uint32_t n = atomic_load_explicit(&nthreads, memory_order_relaxed);
    uint64_t share = n ? MS_TC_OVERALL_BYTES / n : MS_TC_TOTAL_BYTES;
    return share > MS_TC_TOTAL_BYTES ? MS_TC_TOTAL_BYTES : share < MS_TC_MIN_BYTES ? MS_TC_MIN_BYTES : share;
}

/* give_spare: list l's spare, if it has one, goes to the central list
 * (off the list first, then counted: see ms_tcache_flush). */
static void give_spare(tclist_t *l, uint8_t cls) {
    void *s = l->spare;
    if (!s) return;
    uint32_t n = l->max;
    __atomic_store_n(&l->spare, NULL, __ATOMIC_RELEASE);
    ms_count_own(&l->nnet, n);
    ms_central_give(cls, s, n);
}

/* set_grown: the bit of class c in tc->grown, set exactly while the
 * list's limit is above one object (refill sets it, shrink_for and flush
 * clear it): the lists shrink_for may lower, which in a thread are the
 * few classes it uses, not all 96. */
_Static_assert(MS_NUM_CLASSES <= 128, "tcache_t.grown holds a bit per class");
static inline void set_grown(tcache_t *tc, int c, bool on) {
    uint64_t bit = (uint64_t)1 << (c & 63);
    if (on) tc->grown[c >> 6] |= bit;
    else tc->grown[c >> 6] &= ~bit;
}

/* shrink_for: lowers other lists' limits, a batch at a time from the one
 * whose limit holds the most bytes, until `need` more bytes fit under the
 * thread's total (total_cap); a limit never drops below one object (0
 * would mean "never allocated", see ms_tcache_free_foreign).  Objects above
 * a lowered limit go to the central list.  false if they cannot all fit.
 * It looks only at the lists in tc->grown: scanning all 96 classes for
 * each batch it lowered cost many_threads (32 threads of 32 classes each
 * in a share of 1 MiB, so nearly every refill that grows a list lowers
 * another) 1,180 instructions a call, 3.4% of its run; 390 so (callgrind,
 * shrink_for's own, 24.5 -> 7.6 M). */
static bool shrink_for(tcache_t *tc, uint8_t cls, uint64_t need) {
    uint64_t cap = total_cap();
    while (tc->max_bytes + need > cap) {
        int big = 0;
        uint64_t most = 0;
        for (int w = 0; w < 2; w++)
            for (uint64_t m = tc->grown[w]; m; m &= m - 1) {
                int c = w * 64 + __builtin_ctzll(m);
                uint64_t b = (uint64_t)tc->lists[c].max * ms_class_size[c];
                if (c != cls && b > most) most = b, big = c;
            }
        if (!big) return false;
        tclist_t *l = &tc->lists[big];
        /* its spare first: it holds the old limit's count */
        give_spare(l, (uint8_t)big);
        uint32_t max = l->max > ms_class_batch[big] ? l->max - ms_class_batch[big] : 1;
        uint32_t len = l->max - (uint32_t)l->room;
        void *chain = NULL;
        uint32_t over = len > max ? len - max : 0;
        if (over) chain = pop_chain(l, over);
        /* the list and the total are settled before anything leaves
         * tcache.c, so that nothing the give runs can see them half done */
        tc->max_bytes -= held_bytes((uint8_t)big, l->max - max);
        l->room_max = (uint64_t)max << 32 | (max - (len - over));
        if (max == 1) set_grown(tc, big, false);
        if (over) {
            ms_count_own(&tc->lists[big].nnet, over); /* after: see ms_tcache_flush */
            ms_central_give((uint8_t)big, chain, over);
        }
    }
    return true;
}

/* ms_tcache_refill: the list of cls is empty (room == max).  Its spare,
 * if it has one, becomes the list (max objects, nothing else moves).  Else
 * the list may grow by a batch, within its class's limit and the total,
 * and takes from the central list a chain that another list gave back
 * whole, if one fits, or a batch (or as many as its limit allows) from the
 * class's spans. */
void *ms_tcache_refill(tcache_t *tc, uint8_t cls) {
    tclist_t *l = &tc->lists[cls];
    ms_assert_internal(l->head == NULL);
    uint32_t want = 1, max = l->max, grow = 0; /* a thread with no cache (exiting): one at a time */
    if (l->spare) { /* only a cache of the thread's own has one (malloc.c swaps it in first) */
        void **p = ms_tcache_spare_in(l);
        l->head = p[0];
        l->room++;
        return p;
    }
    bool churn = false;
    uint32_t nm = 0;
    /* a list above 64 KiB stays at max 0 and takes one block at a time
     * ("Blocks above 64 KiB") */
    if (!(tc->is_dummy | ms_tc_mid(cls))) {
        uint32_t cap = class_cap(cls), b = ms_class_batch[cls];
        /* a churning list ("Churning lists") neither grows nor takes a
         * batch: a quarter of one, within its limit */
        nm = (uint32_t)(tc->mbase[cls] - (uint64_t)l->left); /* the owner's own: mallocs_of's care not needed */
        churn = max >= b && (int32_t)(nm - tc->churn_at[cls]) >= 0;
        if (churn) want = (b + 3) / 4;
        else if (max < cap) {
            grow = cap - max < b ? cap - max : b;
            if (max == 0 && ms_class_size[cls] <= FIRST_REFILL_MAX_CLASS && grow > FIRST_REFILL_BYTES / ms_class_size[cls])
                grow = ms_class_size[cls] < FIRST_REFILL_BYTES ? FIRST_REFILL_BYTES / ms_class_size[cls] : 1;
            /* a chain waiting in a slot that is longer than the list may
             * grow: the list grows to take it, its first refill too (the
             * chain's pages are resident already).  Else the slots filled
             * with the spares of lists at their limit (and of threads that
             * exited) while lists still growing, every new thread's among
             * them, took from the spans: larson's heap in use grew by 1.3
             * MiB over its 40 generations, and its peak RSS was 21% higher
             * (9.8 -> 11.9 MiB; 11.1 with the first refill left out).
             * Read without the lock: if the chain is gone by the take, the
             * list has grown early, as it would have anyway. */
            uint32_t top = ms_central_next_chain(cls);
            if (top > max + grow && top <= cap && shrink_for(tc, cls, held_bytes(cls, top - max)))
                grow = top - max;
            /* a list's first object is let in even when nothing could
             * make room: a list needs one */
            else if (!shrink_for(tc, cls, held_bytes(cls, grow))) grow = max ? 0 : 1;
        }
        /* a list at its class's limit takes twice the bulk: its thread
         * runs through the class steadily (a list is only at its limit
         * after many refills), and every refill from the spans costs some
         * 350 instructions besides its objects' (small_nodes, a stream of
         * 10M mallocs of 32 bytes: 1,012 -> 981 M instructions in all,
         * callgrind; peak RSS of mixed_realloc, st_churn, larson and
         * many_threads within their run-to-run spread, 3-8 runs each, by
         * hand) */
        if (!churn) want = bulk_of(cls, max + grow == class_cap(cls) ? 2 * REFILL_BULK_BYTES : REFILL_BULK_BYTES);
        if (want > max + grow) want = max + grow;
    }
    /* A list's line is written first by its first use (here, or a free
     * of the class: malloc.c, free_small_slow_in), not when the cache is
     * made: 97 lines (6 KiB) written up front made two pages of every
     * thread's cache resident, whatever classes it used.  Until then div
     * is 0, which sends every free of the class to the slow path (as in
     * the shared empty cache), and an empty list every malloc: neither
     * fast path reads size or div of a list that never held an object. */
    if (!tc->is_dummy && l->div == 0) ms_tcache_list_setup(l, cls);
    /* A list at its limit whose bulk is the whole list (classes of up to
     * 32 bytes: 128 objects in 4 KiB) also asks for its spare from the
     * span the take came from, when nothing freed waits in the class and
     * that span's fresh tail still holds a list's worth (central.c:
     * take_spans_locked): a stream of mallocs then finds every other
     * empty list refilled by the spare (alloc_list_empty, a few dozen
     * instructions), not by a refill (some 450 besides its objects: the
     * slow paths, the central lock, free's check raised on the pages;
     * small_nodes, callgrind).  These are the pages the next refill
     * would take.  Lists of larger objects keep their bulk (the RSS of
     * mixed_realloc, above): with the classes above 32 KiB, whose list
     * was one block then, taking a spare block too made mixed_realloc's
     * peak RSS 0.7% higher (by hand). */
    void *head, *spare = NULL;
    bool with_spare = !tc->is_dummy && !churn && want == max + grow && max + grow == class_cap(cls) &&
                      (size_t)want * ms_class_size[cls] <= 2 * REFILL_BULK_BYTES;
    uint32_t n = ms_central_take(cls, want, max + grow, &head, with_spare ? &spare : NULL);
    /* the first malloc of the class: what the thread gathered goes back
     * after its refill, so that the refill cannot hand it straight back */
    if (!tc->is_dummy && l->max == 0) ms_tcache_give_foreign(tc, cls);
    if (n == 0) return NULL;
    void *p = head;
    if (!tc->is_dummy) {
        max += grow;
        tc->max_bytes += held_bytes(cls, grow);
        if (max > 1) set_grown(tc, cls, true);
        /* first: see ms_tcache_flush (the spare's objects too) */
        ms_count_own(&tc->lists[cls].nnet, -(uint64_t)(n + (spare ? max : 0)));
        l->head = *(void **)p;
        l->room_max = (uint64_t)max << 32 | (max - (n - 1)); /* one store: see len_of */
        /* the next refill churns if by then the thread has freed more
         * than a quarter as many objects of the class as this one
         * brought: the mallocs it will have made are this one's, the n -
         * 1 left on the list, the spare's, and one for each free */
        uint32_t got = n + (spare ? max : 0);
        tc->churn_at[cls] = nm + got + got / 4 + 1;
        /* holds max objects (want == max), and shows after the list, as
         * ms_tcache_spare_out orders it */
        if (spare) __atomic_store_n(&l->spare, spare, __ATOMIC_RELEASE);
    }
    return p;
}

/* mid_give: list c (above 64 KiB) goes whole to the central list, off
 * the list before it is counted and given (see ms_tcache_flush) */
static void mid_give(tcache_t *tc, int c) {
    tclist_t *l = &tc->lists[c];
    void *h = l->head;
    uint32_t n = (uint32_t)-l->room;
    l->head = NULL;
    l->room = 0;
    tc->mid &= ~MID_BIT(c);
    if (!n) return;
    ms_count_own(&l->nnet, n);
    ms_central_give_idle((uint8_t)c, h, 0); /* to the spans: idle from now */
}

/* mid_bytes: the bytes list c above 64 KiB holds: -room objects (its
 * max is 0).  mid_class: the class of the lowest bit of mask m, a set of
 * MID_BIT. */
static inline uint64_t mid_bytes(const tcache_t *tc, int c) {
    return (uint64_t)(uint32_t)-tc->lists[c].room * ms_class_size[c];
}
static inline int mid_class(uint32_t m) {
    return MS_NUM_CLASSES - 1 - __builtin_ctz(m);
}

/* mid_held: the bytes that tc's lists above 64 KiB hold */
static inline uint64_t mid_held(const tcache_t *tc) {
    uint64_t held = 0;
    for (uint32_t m = tc->mid; m; m &= m - 1) held += mid_bytes(tc, mid_class(m));
    return held;
}

/* mid_room: makes room for block p of class cls within MS_TC_MID_BYTES:
 * the lists of other classes go first, the one holding the most bytes
 * first (the class just freed is the one the thread uses now).  false if
 * that is not enough: p has gone to its span. */
__attribute__((noinline)) static bool mid_room(tcache_t *tc, uint8_t cls, void **p) {
    for (;;) {
        uint64_t most = 0;
        int big = 0;
        for (uint32_t m = tc->mid; m; m &= m - 1) {
            int c = mid_class(m);
            uint64_t b = mid_bytes(tc, c);
            if (c != cls && b >= most) most = b, big = c;
        }
        if (!big) {
            p[0] = NULL;
            ms_count_own(&tc->lists[cls].nnet, 1);
            ms_central_give_idle(cls, p, 0);
            return false;
        }
        mid_give(tc, big);
        if (mid_held(tc) + ms_class_size[cls] <= MS_TC_MID_BYTES) return true;
    }
}

/* ms_tcache_free_mid: see internal.h and "Blocks above 64 KiB" (called
 * from free_small_slow, a slow path: ms_tc_busy) */
void ms_tcache_free_mid(tcache_t *tc, uint8_t cls, void **p, const tcache_t *took) {
    tclist_t *l = &tc->lists[cls];
    ms_assert_internal(MS_NUM_CLASSES - 1 - cls < 32 && ms_tc_busy);
    if (took) l->room++; /* p is not on the list yet */
    if (!l->div) ms_tcache_list_setup(l, cls); /* its first use (free_slow) */
    if (mid_held(tc) + ms_class_size[cls] <= MS_TC_MID_BYTES || mid_room(tc, cls, p)) {
        p[0] = l->head;
        l->head = p;
        l->room--;
        tc->mid |= MID_BIT(cls);
    }
}

/* ms_tcache_overflow: list cls is full (max objects, and a free under way
 * took room for one more).  The old spare goes to the central list, and
 * the list becomes the spare: two pointer moves and no walk ("Batches"). */
void ms_tcache_overflow(tcache_t *tc, uint8_t cls) {
    tclist_t *l = &tc->lists[cls];
    /* objects on the list: a free that took room (room -1) has not put its
     * object there yet */
    uint32_t len = l->max - (uint32_t)(l->room > 0 ? l->room : 0);
    ms_assert_internal(len == l->max && l->max > 0);
    void *old = l->spare, *full = l->head;
    if (old) __atomic_store_n(&l->spare, NULL, __ATOMIC_RELEASE);
    /* the list leaves (len drops), then the spare holds it (len rises):
     * see len_of; the list and spare are settled before anything leaves
     * tcache.c, as in shrink_for */
    l->head = NULL;
    l->room += (int32_t)len;
    __atomic_store_n(&l->spare, full, __ATOMIC_RELEASE);
    if (old) {
        ms_count_own(&tc->lists[cls].nnet, len); /* after: see ms_tcache_flush */
        ms_central_give(cls, old, len);
    }
}

/* ms_tcache_flush: every cached object goes to the central lists.  Walks
 * by pointer, not by len: in a fork child a list may have been caught
 * mid-update by a thread that no longer exists.
 *
 * Order of the counts, here and wherever objects join or leave a list in a
 * slow path: another thread's stats read frees as len + mallocs + nnet
 * while this may be under way (the scavenger flushes a parked cache, the
 * owner overflows), and a read that counts an object twice is published
 * for good (stats.c keeps frees from ever going down), while one that
 * misses it is not.  So an object leaves len before nnet counts it, and
 * nnet uncounts a refill before len shows it. */
static void flush(tcache_t *tc, uint64_t idle_since_ms);
void ms_tcache_flush(tcache_t *tc) { flush(tc, 0); }

/* give: a chain back to the central list, or for a parked cache (idle
 * since a time) to its spans */
static void give(uint8_t cls, void *head, uint32_t n, uint64_t idle_since_ms) {
    if (idle_since_ms) ms_central_give_idle(cls, head, idle_since_ms);
    else ms_central_give(cls, head, n);
}

/* chain_len: the objects of a NULL-terminated chain, counted by walking
 * it (flush trusts no count kept beside a chain: see above) */
static uint32_t chain_len(void *p) {
    uint32_t n = 0;
    for (; p; p = *(void **)p) n++;
    return n;
}

static void flush(tcache_t *tc, uint64_t idle_since_ms) {
    for (int c = 1; c < MS_NUM_CLASSES; c++) {
        tclist_t *l = &tc->lists[c];
        uint32_t b = ms_class_batch[c];
        while (l->head) {
            void *h = l->head, *p = h, *last;
            uint32_t n = 0;
            do {
                last = p;
                p = *(void **)p;
                n++;
            } while (p && n < b);
            *(void **)last = NULL;
            l->head = p;
            l->room += (int32_t)n;
            ms_count_own(&tc->lists[c].nnet, n);
            give((uint8_t)c, h, n, idle_since_ms);
        }
        /* the spare, counted by walking too, before room_max (by whose
         * max len_of counts it) goes */
        void *sp = l->spare;
        if (sp) {
            uint32_t n = chain_len(sp);
            __atomic_store_n(&l->spare, NULL, __ATOMIC_RELEASE);
            ms_count_own(&tc->lists[c].nnet, n);
            give((uint8_t)c, sp, n, idle_since_ms);
        }
        /* the lines and words of classes the thread never used are not
         * written: a cache's pages stay untouched where they were */
        if (l->room_max) l->room_max = 0;
        /* counted by walking, for the same reason; off the cache before
         * they are given (see ms_tcache_give_foreign: a thread flushing at
         * exit may be inside give when another forks) */
        void *f = tc->lists[c].foreign;
        if (!f) continue;
        uint32_t n = chain_len(f);
        tc->lists[c].foreign = NULL;
        tc->lists[c].nforeign = 0;
        give((uint8_t)c, f, n, idle_since_ms);
    }
    tc->max_bytes = 0;
    tc->grown[0] = tc->grown[1] = 0;
    /* (tc->mid may keep bits of lists now empty: ms_tcache_free_mid
     * clears them as it goes) */
}

/* Fork (the order of every layer is init.c's): the registry's and the
 * parking protocol's locks are taken first and released last; the child
 * re-creates them, and once the diagnostics are reset too hands back the
 * caches of the threads that did not survive the fork. */
void ms_tcache_fork_prepare(void) {
    pthread_mutex_lock(&park_lock);
    pthread_mutex_lock(&reg_lock);
}

void ms_tcache_fork_parent(void) {
    pthread_mutex_unlock(&reg_lock);
    pthread_mutex_unlock(&park_lock);
}

void ms_tcache_fork_child_locks(void) {
    pthread_mutex_init(&reg_lock, NULL);
    pthread_mutex_init(&park_lock, NULL);
}

void ms_tcache_fork_child_flush(void) {
    tcache_t *self = ms_tc_mine; /* parked or not: ms_tc may be the empty cache */
    /* the child's thread has an id of its own: under the parent's, which
     * /proc of the child does not list, its cache was never parked */
    if (self) self->tid = (int)syscall(SYS_gettid);
    for (tcache_t *tc = registry.next, *next; tc != &registry; tc = next) {
        next = tc->next;
        if (tc == self) continue;
        ms_tcache_flush(tc);
        retire_locked(tc);
    }
}

/* ------------------------------------------------------------------------
 * Parking the caches of quiet threads (the protocol is at the top)
 * ---------------------------------------------------------------------- */

/* ops_of: a count that every malloc and free of tc's thread raises, the
 * scavenger's sign of activity; cached_of: the bytes its lists hold.
 * mallocs + frees is 2 * mallocs + len + nnet (frees_of), and that sum
 * rises by one with each malloc (mallocs +1, len -1) and each free to a
 * list (len +1), and stays as it is when objects move between a list and
 * the central list (len and nnet change by opposite amounts).  So the
 * terms are read once each, without frees_of's retries: a read torn by a
 * slow path under way can only show a change where there was none, which
 * delays a park by one look. */
static uint64_t ops_of(tcache_t *tc) {
    uint64_t n = atomic_load_explicit(&tc->large_mallocs, memory_order_relaxed) +
                 atomic_load_explicit(&tc->large_frees, memory_order_relaxed);
    for (int c = 1; c < MS_NUM_CLASSES; c++) {
        const tclist_t *l = &tc->lists[c];
        uint64_t m = atomic_load_explicit(&tc->mbase[c], memory_order_relaxed) -
                     (uint64_t)__atomic_load_n(&l->left, __ATOMIC_RELAXED);
        n += 2 * m + len_of(l) + atomic_load_explicit(&l->nnet, memory_order_relaxed);
    }
    return n;
}
static uint64_t cached_of(tcache_t *tc) {
    uint64_t b = 0;
    for (int c = 1; c < MS_NUM_CLASSES; c++)
        b += ((uint64_t)len_of(&tc->lists[c]) + *(volatile uint32_t *)&tc->lists[c].nforeign) * ms_class_size[c];
    return b;
}

/* memscope's code (linked into the program: the program's too), and a
 * buffer for a copy of a thread's live stack; set once, by the
 * scavenger's thread before it first takes park_lock */
static uintptr_t text_lo, text_hi;
static bool text_known;
static uintptr_t *stack_buf;
#define STACK_SCAN_BYTES ((size_t)64 << 10)

/* find_text: the executable segments of the object memscope's code is in,
 * from its own ELF header (the linker's __ehdr_start), with no call to the
 * loader.  dl_iterate_phdr, used here before, takes the loader's lock, and
 * a fork while the scavenger held it gave the child a lock held for good:
 * the child's first stack walk waited on it (prog_forktorture 3 6 2 under
 * scavenge_delay_ms=0, by hand: a child hung in about 1 run in 50, its
 * dl_iterate_phdr waiting on the loader's write lock). */
extern const char __ehdr_start[] __attribute__((visibility("hidden"))); /* (no size: UBSan) */
static void find_text(void) {
    const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)(const void *)__ehdr_start;
    const ElfW(Phdr) *ph = (const ElfW(Phdr) *)(const void *)((const char *)eh + eh->e_phoff);
    uintptr_t me = (uintptr_t)&ms_tcache_park_idle, bias = 0, lo = UINTPTR_MAX, hi = 0;
    bool based = false, mine = false;
    for (int i = 0; i < eh->e_phnum && !based; i++)
        if (ph[i].p_type == PT_LOAD && ph[i].p_offset == 0) bias = (uintptr_t)eh - ph[i].p_vaddr, based = true;
    if (!based) return;
    for (int i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type != PT_LOAD || !(ph[i].p_flags & PF_X)) continue;
        uintptr_t a = bias + ph[i].p_vaddr;
        if (me >= a && me < a + ph[i].p_memsz) mine = true;
        if (a < lo) lo = a;
        if (a + ph[i].p_memsz > hi) hi = a + ph[i].p_memsz;
    }
    if (mine) text_lo = lo, text_hi = hi;
}

/* interrupted_in_memscope: whether a signal handler runs on the thread
 * (blocked at stack pointer sp) after interrupting memscope's code, say in
 * the middle of malloc's fast path, which marks nothing.  The kernel puts
 * a signal frame on the stack the handler runs on: the handler's return
 * address (the sa_restorer of the handler's sigaction), then the
 * ucontext, whose saved pc is 22 words further.  Every installed handler's
 * restorer is read afresh (the raw system call: glibc's sigaction refuses
 * its own signals), and the live stack above sp (64 KiB, or to the end of
 * its mapping) is searched for one.  A stale frame left by a handler
 * that returned can only make this say yes.  Unknown counts as yes.
 * How far: a handler that uses more stack than the first read before it
 * blocks (a buffer on its frame) has its signal frame further up, and
 * taken for "no frame" the cache of a thread whose handler had
 * interrupted malloc's or free's fast path was parked under it: the fast
 * path then finished on flushed lists (a block handed out twice, a list
 * through freed objects).  So the search goes on to the top of the
 * thread's stack, which for a thread the C library started ends just below
 * its thread pointer (tp, recorded when the cache was made); where sp is
 * not below tp (the main thread, an alternate signal stack) it goes on
 * while the memory reads, to at most STACK_SCAN_MAX, and a stack still
 * going on there is unknown.  The reads overlap by the 23 words a frame's
 * test spans. */
#define STACK_SCAN_MAX ((size_t)1 << 20)
#define STACK_TP_MAX ((uintptr_t)64 << 20) /* sp within this below tp: on the thread's own stack */
static bool interrupted_in_memscope(uintptr_t sp, uintptr_t tp) {
    struct { uintptr_t handler, flags, restorer, mask; } ka;
    uintptr_t rest[8];
    int nr = 0;
    for (int sig = 1; sig <= 64; sig++) {
        if (syscall(SYS_rt_sigaction, sig, NULL, &ka, 8) != 0 || ka.handler <= 1 || !ka.restorer) continue;
        int k = 0;
        while (k < nr && rest[k] != ka.restorer) k++;
        if (k < nr) continue;
        if (nr == 8) return true;
        rest[nr++] = ka.restorer;
    }
    if (nr == 0) return false; /* no handler, no signal frame */
    if (!text_hi || !stack_buf) return true;
    bool own = tp > sp && tp - sp <= STACK_TP_MAX;
    uintptr_t end = own ? tp : sp + STACK_SCAN_MAX;
    enum { OVERLAP = 23 };
    for (uintptr_t at = sp;;) {
        size_t want = end - at < STACK_SCAN_BYTES ? (size_t)(end - at) & ~(sizeof(uintptr_t) - 1) : STACK_SCAN_BYTES;
        size_t got = ms_os_read_self(at, stack_buf, want), n = got / sizeof(uintptr_t);
        if (n == 0) return at == sp; /* sp unreadable: unknown; past the mapping's end: no frame */
        bool last = got < want || at + got >= end; /* no more to read after this */
        for (size_t i = 0; i < n; i++) {
            for (int k = 0; k < nr; k++) {
                if (stack_buf[i] != rest[k]) continue;
                if (i + 22 >= n) {
                    if (last) return true; /* cut off: unknown */
                    continue;              /* the next read, which overlaps, sees it whole */
                }
                if (stack_buf[i + 22] - text_lo < text_hi - text_lo) return true;
            }
        }
        if (got < want || (own && at + got >= end)) return false; /* read to the mapping's or the stack's end */
        if (at + got >= end) return true; /* deeper than STACK_SCAN_MAX: unknown */
        at += got - OVERLAP * sizeof(uintptr_t);
    }
}

/* try_park: tc is TAKING (this thread moved it there); parks it, or gives
 * it back OWNED if its thread may be inside memscope or ran meanwhile. */
static bool try_park(tcache_t *tc) {
    uintptr_t sp, pc, sp2, pc2;
    uint64_t sw = ms_os_thread_switches(tc->tid);
    if (sw == UINT64_MAX || !ms_os_thread_syscall(tc->tid, &sp, &pc) || *(volatile const uint32_t *)tc->busy ||
        interrupted_in_memscope(sp, tc->tp))
        goto back;
    __atomic_store_n(tc->slot, &ms_tc_empty, __ATOMIC_RELAXED);
    atomic_thread_fence(memory_order_seq_cst);
    if (!ms_os_thread_syscall(tc->tid, &sp2, &pc2) || sp2 != sp || pc2 != pc || ms_os_thread_switches(tc->tid) != sw) {
        __atomic_store_n(tc->slot, tc, __ATOMIC_RELAXED);
        goto back;
    }
    flush(tc, tc->quiet_since_ms);
    atomic_store_explicit(&tc->park, TC_PARKED, memory_order_release);
    atomic_fetch_add_explicit(&ms_tcache_parks, 1, memory_order_relaxed);
    return true;
back:
    atomic_store_explicit(&tc->park, TC_OWNED, memory_order_release);
    return false;
}

bool ms_tcache_park_idle(uint64_t now_ms, uint64_t delay_ms) {
    /* Before park_lock: the buffer's mapping is a system call.  Only the
     * scavenger's thread comes here. */
    if (!text_known) {
        text_known = true;
        find_text();
        stack_buf = ms_os_alloc(STACK_SCAN_BYTES);
        if (stack_buf) {
            atomic_fetch_add(&ms_meta_sys, STACK_SCAN_BYTES);
            atomic_fetch_add(&ms_meta_inuse, STACK_SCAN_BYTES);
        }
    }
    pthread_mutex_lock(&park_lock);
    static uint64_t round;
    round++;
    bool again = false;
    for (bool more = true; more;) {
        /* one cache at a time, the registry's lock dropped while /proc is
         * read (TAKING keeps the cache from being retired meanwhile), and
         * at most 64 caches looked at per hold: a thousand threads must
         * not hold up thread creation and exit, or a stats read, for a
         * millisecond */
        tcache_t *cand = NULL;
        unsigned looked = 0;
        more = false;
        pthread_mutex_lock(&reg_lock);
        for (tcache_t *tc = registry.next; tc != &registry; tc = tc->next) {
            if (tc->look_round == round || atomic_load(&tc->park) != TC_OWNED) continue;
            if (++looked > 64) {
                more = true;
                break;
            }
            tc->look_round = round;
            if (cached_of(tc) == 0) continue;
            again = true;
            uint64_t ops = ops_of(tc);
            if (ops != tc->seen_ops || !tc->quiet_since_ms) {
                tc->seen_ops = ops, tc->quiet_since_ms = now_ms;
                continue;
            }
            if (now_ms - tc->quiet_since_ms < delay_ms || tc == ms_tc_mine) continue;
            uint32_t owned = TC_OWNED;
            if (atomic_compare_exchange_strong(&tc->park, &owned, TC_TAKING)) {
                cand = tc;
                break;
            }
        }
        pthread_mutex_unlock(&reg_lock);
        if (!cand) continue;
        more = true;
        if (!try_park(cand)) cand->quiet_since_ms = now_ms; /* not before another delay */
    }
    pthread_mutex_unlock(&park_lock);
    return again;
}

void ms_tcache_init_process(void) {
    registry.next = registry.prev = &registry;
    pthread_key_create(&tc_key, tc_destructor);
}

void ms_tcache_totals(class_counts_t by_class[MS_NUM_CLASSES], uint64_t *large_bytes_alloc,
                      uint64_t *large_bytes_free, uint64_t *cached_bytes, uint32_t *nthr) {
    ms_mutex_take(&reg_lock);
    memcpy(by_class, dead, sizeof dead);
    uint64_t la = dead_large_alloc, lf = dead_large_free, cached = 0;
    for (tcache_t *tc = registry.next; tc != &registry; tc = tc->next) {
        for (int c = 1; c < MS_NUM_CLASSES; c++) {
            by_class[c].mallocs += mallocs_of(tc, c);
            by_class[c].frees += frees_of(tc, c);
            cached += (uint64_t)len_of(&tc->lists[c]) * ms_class_size[c];
        }
        by_class[0].mallocs += atomic_load_explicit(&tc->large_mallocs, memory_order_relaxed);
        by_class[0].frees += atomic_load_explicit(&tc->large_frees, memory_order_relaxed);
        la += atomic_load_explicit(&tc->large_malloc_bytes, memory_order_relaxed);
        lf += atomic_load_explicit(&tc->large_free_bytes, memory_order_relaxed);
    }
    *nthr = nthreads;
    ms_mutex_give(&reg_lock);
    *large_bytes_alloc = la;
    *large_bytes_free = lf;
    *cached_bytes = cached;
}
