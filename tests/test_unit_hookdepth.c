/* test_unit_hookdepth.c: how deep the profiler's record of a block goes
 * on the stack, and that malloc leaves no copy of the block there.
 *
 * In leak-check mode every malloc hands its block to the profiler's hook
 * (internal.h: prof_hooks_t.sampled, and .every for small blocks), whose frames below the core's may
 * keep copies of the block's address; the core zeroes MS_HOOK_SHALLOW
 * bytes of that stack when the hook says it kept to its common path, and
 * MS_HOOK_DEEP otherwise (malloc.c: scrub_shallow); the every hook ends
 * the malloc itself, through the core's ms_every_done where its frames
 * may hold a copy.  A copy left below
 * would make a block the program lost look reachable to a leak check,
 * whose scan of a thread's stack is conservative.
 *   depth    the hook, wrapped here, runs over stack filled with a
 *            pattern: every call of the sampled hook that says it stayed
 *            shallow wrote nothing
 *            deeper than MS_HOOK_SHALLOW below the wrapper's stack pointer,
 *            and every other call nothing deeper than MS_HOOK_DEEP; a
 *            call of the every hook leaves no word that points into the
 *            block anywhere below the wrapper's stack pointer (see
 *            wrapped_every).  The sampled hook, which here records the
 *            large blocks only, goes deep for each (their map), and so
 *            those paths are met.  Blocks
 *            of many classes and large ones, from four threads freeing
 *            each other's blocks (drains, contended locks).
 *   nocopy   with the profiler's own hook in place, after malloc returns
 *            p, no word of the 16 KiB of dead stack below the caller
 *            holds p (2,000 small and large blocks, none at an address
 *            freed before: free's frames hold copies of what they free).
 * Linked with the release archive (the depths are those of the optimized
 * build users run) and run with MEMSCOPE=profile_rate=1: the test execs
 * itself with it; then, passed, again with profile_rate=4096 (sampled
 * mode, where every record takes the sampled hook: depth alone, and most
 * calls must be shallow there too, as a sample's clear of 4 KiB, where
 * 384 bytes did, was most of a sample's instructions).  nocopy is not
 * checked in sampled mode: there the refills' frames below malloc keep
 * copies of unsampled blocks (malloc.c: alloc_small_slow clears them in
 * leak-check mode only).  tests/test_ubsan.sh also builds it against the debug
 * archive (MEMSCOPE_DEBUG, -O1), where depth is checked the same way but
 * nocopy is not: at -O1 malloc's slow path makes no tail calls, so its own
 * frames keep the block (malloc.c: sample_point says why the optimized
 * build's do not); it prints that instead of counting a check.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "testhelper.h"

/* CHECK_MSG: CHECK_TRUE, saying why when it fails */
#define CHECK_MSG(cond, ...) \
    do { \
        if (!CHECK_TRUE(cond)) fprintf(stderr, "  " __VA_ARGS__), fputc('\n', stderr); \
    } while (0)

#define PATTERN 0x5a17c0de5a17c0deull
/* the second run's rate: most of churn's blocks of 2 KiB drawn, its
 * larger ones nearly all (the large blocks' map: deep) */
#define SAMPLED_RATE 4096
#define SAMPLED_ENV "profile_rate=4096"

#define PROBE_WORDS (MS_HOOK_DEEP / 8 + 256)

static bool (*real_sampled)(void *p, size_t size, uint32_t id);
static _Atomic uint64_t n_leaf, n_shallow, n_deep, bad_leaf, bad_shallow, bad_deep;
static _Atomic size_t max_leaf, max_shallow, max_deep;
static _Atomic uint64_t n_every, bad_every;
static _Atomic size_t max_every;

/* probe: fill (mode 0) or measure (mode 1) the stack below the caller.
 * Called twice from the same frame, its buffer lies at the same place
 * both times; the depth is counted from the caller's stack pointer. */
static __attribute__((noinline)) size_t probe(int mode, uintptr_t lo, uintptr_t hi) {
    uint64_t space[PROBE_WORDS];
    volatile uint64_t *buf = space;
    __asm__ volatile("" : "+r"(buf) : : "memory"); /* what lies there is the point, not a bug */
    uintptr_t caller_sp = (uintptr_t)__builtin_frame_address(0) + 16;
    if (mode == 0) {
        for (size_t i = 0; i < PROBE_WORDS; i++) buf[i] = PATTERN;
        return 0;
    }
    if (mode == 2) { /* the depth of the deepest word pointing into [lo, hi) */
        size_t deepest = 0;
        for (size_t i = 0; i < PROBE_WORDS; i++)
            if (buf[i] >= lo && buf[i] < hi && caller_sp - (uintptr_t)&buf[i] > deepest)
                deepest = caller_sp - (uintptr_t)&buf[i];
        return deepest;
    }
    size_t i = 0;
    while (i < PROBE_WORDS && buf[i] == PATTERN) i++;
    return i == PROBE_WORDS ? 0 : caller_sp - (uintptr_t)&buf[i];
}

static void note_max(_Atomic size_t *m, size_t v) {
    size_t cur = atomic_load(m);
    while (v > cur && !atomic_compare_exchange_weak(m, &cur, v)) {
    }
}

static void note_depth(int level, size_t d) {
    if (level == MS_HOOK_TO_LEAF) {
        atomic_fetch_add(&n_leaf, 1);
        note_max(&max_leaf, d);
        if (d > MS_HOOK_LEAF) atomic_fetch_add(&bad_leaf, 1);
    } else if (level == MS_HOOK_TO_SHALLOW) {
        atomic_fetch_add(&n_shallow, 1);
        note_max(&max_shallow, d);
        if (d > MS_HOOK_SHALLOW) atomic_fetch_add(&bad_shallow, 1);
    } else {
        atomic_fetch_add(&n_deep, 1);
        note_max(&max_deep, d);
        if (d > MS_HOOK_DEEP) atomic_fetch_add(&bad_deep, 1);
    }
}

static bool wrapped(void *p, size_t size, uint32_t id) {
    probe(0, 0, 0);
    bool shallow = real_sampled(p, size, id);
    note_depth(shallow ? MS_HOOK_TO_SHALLOW : MS_HOOK_TO_DEEP, probe(1, 0, 0));
    return shallow;
}

/* The record of a small block in leak-check mode (prof_hooks_t.every)
 * captures the block's stack first, before it reads the block: the walk's
 * frames go deep (1.7 KiB) and hold no copy of it.  So here what is
 * measured is the deepest word that points into the block (at or inside
 * it, as the leak checker's scan takes it), and there must be none: the
 * hook returns the block, its malloc ended (ms_every_done clears what its
 * frames may have kept; its common case keeps none).  Called here from
 * this frame, not by the core's tail call: its stack starts in this
 * function. */
static void *(*real_every)(tcache_t *tc, size_t size);
static void *wrapped_every(tcache_t *tc, size_t size) {
    probe(0, 0, 0);
    void *p = real_every(tc, size);
    uintptr_t a = (uintptr_t)p;
    size_t d = probe(2, a, a + size);
    atomic_fetch_add(&n_every, 1);
    note_max(&max_every, d);
    if (d > 0) atomic_fetch_add(&bad_every, 1);
    return p;
}

typedef struct shared_s {
    _Atomic(void *) slot[4096];
} shared_t;
static shared_t shared;

static void *churn(void *arg) {
    uint64_t x = (uint64_t)(uintptr_t)arg * 0x9E3779B97F4A7C15ull + 1;
    for (int i = 0; i < 60000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t n = (x >> 20) % 64 == 0 ? 40000 + (x >> 40) % 300000 : 8 + (x >> 30) % 2000;
        void *p = malloc(n);
        if (!p) return (void *)1;
        memset(p, 1, n < 64 ? n : 64);
        void *old = atomic_exchange(&shared.slot[(x >> 8) % 4096], p);
        free(old);
    }
    return NULL;
}

/* below: malloc(n) from a frame of its own, then a look at the dead stack
 * under that frame for a word equal to the block's address */
static __attribute__((noinline)) void *alloc_here(size_t n) {
    void *p = malloc(n);
    __asm__ volatile("" : : "r"(p) : "memory");
    return p;
}
static __attribute__((noinline)) int copies_below(uintptr_t p) {
    uintptr_t space[2048]; /* not written: it is the dead stack, read */
    volatile uintptr_t *buf = space;
    __asm__ volatile("" : "+r"(buf) : : "memory");
    int found = 0;
    for (size_t i = 0; i < 2048; i++) found += buf[i] == p;
    return found;
}

int main(int argc, char **argv) {
    (void)argc;
    const char *env = getenv("MEMSCOPE");
    bool sampled = env && strcmp(env, SAMPLED_ENV) == 0;
    if (!env || (!sampled && strcmp(env, "profile_rate=1") != 0)) {
        setenv("MEMSCOPE", "profile_rate=1", 1);
        execv("/proc/self/exe", argv);
        perror("execv");
        return 1;
    }
    free(malloc(1));
    if (atomic_load(&ms_sample_rate) != (sampled ? SAMPLED_RATE : 1) || !ms_prof_hooks.sampled) {
        fprintf(stderr, "%s is not in effect\n", env);
        return 1;
    }
    if (sampled) printf("  sampled mode (%s): depth only\n", env);

#if MEMSCOPE_DEBUG
    fprintf(stderr, "nocopy: not checked in a debug build (no tail calls at -O1: malloc's own frames keep the block)\n");
    if (0)
#endif
    if (!sampled)
    CHECK_BODY("nocopy") {
        /* every block is kept until the end: a free leaves copies of its
         * block in its own frames, and a block at a freed one's address
         * would find them */
        int left = 0;
        static void *kept[2000];
        for (int i = 0; i < 2000; i++) {
            size_t n = i % 10 == 9 ? 300000 : 16 + (size_t)(i * 37) % 3000;
            kept[i] = alloc_here(n);
            left += copies_below((uintptr_t)kept[i]);
        }
        for (int i = 0; i < 2000; i++) free(kept[i]);
        CHECK_MSG(left == 0, "%d copies of blocks left on the dead stack below malloc's caller", left);
    }

    real_sampled = ms_prof_hooks.sampled;
    ms_prof_hooks.sampled = wrapped;
    real_every = ms_prof_hooks.every;
    if (real_every) ms_prof_hooks.every = wrapped_every;
    CHECK_BODY("depth") {
        pthread_t t[4];
        for (uintptr_t i = 0; i < 4; i++) pthread_create(&t[i], NULL, churn, (void *)(i + 1));
        bool ok = true;
        for (int i = 0; i < 4; i++) {
            void *r;
            pthread_join(t[i], &r);
            ok = ok && r == NULL;
        }
        for (size_t i = 0; i < 4096; i++) free(atomic_exchange(&shared.slot[i], NULL));
        uint64_t f = atomic_load(&n_leaf), s = atomic_load(&n_shallow) + f, d = atomic_load(&n_deep);
        uint64_t e = atomic_load(&n_every);
        printf("  every %llu (deepest copy %zu B, limit 0), shallow %llu (deepest %zu B, limit %d), deep %llu "
               "(deepest %zu B, limit %d)\n",
               (unsigned long long)e, atomic_load(&max_every), (unsigned long long)(s - f),
               atomic_load(&max_shallow), MS_HOOK_SHALLOW, (unsigned long long)d, atomic_load(&max_deep),
               MS_HOOK_DEEP);
        CHECK_MSG(ok, "a thread's malloc failed");
        CHECK_MSG(atomic_load(&bad_leaf) == 0, "%llu calls said leaf and left a copy deeper than %d bytes",
                  (unsigned long long)atomic_load(&bad_leaf), MS_HOOK_LEAF);
        CHECK_MSG(atomic_load(&bad_every) == 0, "%llu calls of the every hook left a copy of the block below",
                  (unsigned long long)atomic_load(&bad_every));
        CHECK_MSG(!real_every || e > 100000, "only %llu calls of the every hook", (unsigned long long)e);
        CHECK_MSG(atomic_load(&bad_shallow) == 0, "%llu calls said shallow and went deeper than %d bytes",
                  (unsigned long long)atomic_load(&bad_shallow), MS_HOOK_SHALLOW);
        CHECK_MSG(atomic_load(&bad_deep) == 0, "%llu calls went deeper than %d bytes",
                  (unsigned long long)atomic_load(&bad_deep), MS_HOOK_DEEP);
        CHECK_MSG(real_every || s > 9 * (s + d) / 10, "only %llu of %llu calls were shallow", (unsigned long long)s,
                  (unsigned long long)(s + d));
        CHECK_MSG(d >= 4, "only %llu deep calls: the uncommon paths were not met", (unsigned long long)d);
    }
    ms_prof_hooks.sampled = real_sampled;
    ms_prof_hooks.every = real_every;
    int failed = print_test_summary();
    if (!sampled && failed == 0) {
        fflush(stdout); /* what this run printed: execv drops the buffer */
        setenv("MEMSCOPE", SAMPLED_ENV, 1);
        execv("/proc/self/exe", argv);
        perror("execv");
        return 1;
    }
    return failed;
}
