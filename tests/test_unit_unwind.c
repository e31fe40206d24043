/* test_unit_unwind.c: the profiler's own stack walker (src/prof/unwind.c)
 * against libunwind's, on the frame shapes that matter.
 *
 * Each case walks the stack with both from the same function and compares
 * the callers (the first return address differs: two call sites).  The
 * walker may refuse a stack (-1: libunwind then walks it), but what it
 * gives must be libunwind's, frame for frame:
 *   - deep recursion (frames whose CFA is rsp plus a constant);
 *   - recursion through variable-length arrays (the CFA is rbp plus 16,
 *     and rbp is restored from each frame's save slot);
 *   - a comparison callback called by the C library's qsort;
 *   - a thread's stack, which ends in the C library's thread start;
 *   - a frame that realigns the stack (rbp-based), and one that does it as
 *     GCC's -O2 does in main (the CFA saved below rbp and described as the
 *     word at rbp - 8, rbp saved at rbp: its call frame information is
 *     written out here, as GCC writes it);
 *   - a signal handler (the stack goes through the kernel's signal frame):
 *     refused;
 *   - a walk replayed (the same stack as the buffer's last walk: only the
 *     words it read are read again), and one through other callers with
 *     the same frame sizes, which must not pass for a replay;
 *   - walks that end with the last walk's frames (a splice, unwind.c),
 *     and one that must not splice where a return address above differs;
 *   - after a dlclose and a dlopen of another object at the same address
 *     (the recipe table is emptied when objects go), when the C library's
 *     libm is available to load.
 * Every case but the refused ones must be walked by this walker, not
 * handed to libunwind, or the fast path would go untested.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include "prof/stack.h"
#include "testhelper.h"

#define CAP 80

typedef struct result_s {
    int own;     /* frames this walker gave, -1 refused */
    bool same;   /* ... and they are libunwind's */
} result_t;

/* compare_with: both walks from this one frame; the walker's into a, with
 * replay record rp (or none) */
static __attribute__((noinline)) result_t compare_with(void **a, replay_t *rp) {
    void *b[CAP];
    int n = ms_unwind(a, CAP, rp);
    int m = unw_backtrace(b, CAP);
    result_t r = {n, false};
    if (n < 2) return r;
    int j = 0;
    while (j < m && b[j] != a[1]) j++;
    if (j == m) return r;
    if (n - 1 != m - j) return r;
    for (int i = 1; i < n; i++)
        if (a[i] != b[j + i - 1]) return r;
    r.same = true;
    return r;
}

static __attribute__((noinline)) result_t compare_here(void) {
    void *a[CAP];
    return compare_with(a, NULL);
}

static volatile int sink;

/* Replays: a walk from the same place into the same buffer, through the
 * same callers, only rereads what the last one read; one through other
 * callers of the same frame sizes (via_f1, via_f2) must not pass for it. */
static void *replay_buf[CAP];
static replay_t replay_rec;
static __attribute__((noinline)) result_t via_g(void) {
    result_t r = compare_with(replay_buf, &replay_rec);
    sink++;
    return r;
}
static __attribute__((noinline)) result_t via_f1(void) {
    result_t r = via_g();
    sink++;
    return r;
}
static __attribute__((noinline)) result_t via_f2(void) {
    result_t r = via_g();
    sink += 2;
    return r;
}

/* Splices: leaf1 and leaf2 walk from different places (no replay) through
 * via_h's one call site; via_h is called from via_k1 or via_k2 (the same
 * frame sizes), and they from one call site of splice_from. */
static __attribute__((noinline)) result_t leaf1(void) {
    result_t r = compare_with(replay_buf, &replay_rec);
    sink++;
    return r;
}
static __attribute__((noinline)) result_t leaf2(void) {
    result_t r = compare_with(replay_buf, &replay_rec);
    sink += 3;
    return r;
}
static __attribute__((noinline)) result_t via_h(result_t (*leaf)(void)) {
    result_t (*volatile f)(void) = leaf;
    result_t r = f();
    sink++;
    return r;
}
static __attribute__((noinline)) result_t via_k1(result_t (*leaf)(void)) {
    result_t r = via_h(leaf);
    sink++;
    return r;
}
static __attribute__((noinline)) result_t via_k2(result_t (*leaf)(void)) {
    result_t r = via_h(leaf);
    sink += 2;
    return r;
}
static __attribute__((noinline)) result_t splice_from(int i, result_t (*leaf)(void), int *spliced) {
    result_t (*volatile via)(result_t (*)(void)) = i ? via_k2 : via_k1;
    result_t r = via(leaf);
    *spliced = replay_rec.spliced;
    sink++;
    return r;
}

static __attribute__((noinline)) void run_splices(int *sp, bool *ok) {
    result_t (*const leaves[2])(void) = {leaf1, leaf2};
    int k[3 + 64], l[3 + 64];
    k[0] = 0, l[0] = 0, k[1] = 0, l[1] = 1, k[2] = 1, l[2] = 0;
    for (int i = 3; i < 3 + 64; i++) k[i] = i & 1, l[i] = (i >> 1) & 1;
    result_t (*volatile from)(int, result_t (*)(void), int *) = splice_from;
    for (int i = 0; i < 3 + 64; i++) {
        result_t t = from(k[i], leaves[l[i]], &sp[i]); /* the one call site */
        ok[i] = t.own > 0 && t.same;
    }
}

static __attribute__((noinline)) result_t recurse(int d) {
    if (d == 0) return compare_here();
    result_t r = recurse(d - 1);
    sink += d; /* not a tail call */
    return r;
}

static __attribute__((noinline)) result_t recurse_vla(int d) {
    volatile char buf[16 + d * 8];
    buf[0] = (char)d;
    if (d == 0) return compare_here();
    result_t r = recurse_vla(d - 1);
    sink += buf[0];
    return r;
}

static result_t in_qsort;
static int cmp(const void *x, const void *y) {
    if (in_qsort.own == 0) in_qsort = compare_here();
    return *(const int *)x - *(const int *)y;
}

static void *thread_main(void *arg) {
    *(result_t *)arg = recurse(3);
    return NULL;
}

static __attribute__((noinline)) result_t realigned(void) {
    _Alignas(128) volatile char buf[128];
    buf[0] = 1;
    result_t r = compare_here();
    sink += buf[0];
    return r;
}

/* drap_call: calls f on a stack realigned to 64 bytes the way GCC's -O2
 * main does it (the CFA kept in r10, then saved below rbp) */
result_t drap_call(result_t (*f)(void));
__asm__(".text\n"
        ".globl drap_call\n"
        ".type drap_call, @function\n"
        "drap_call:\n"
        ".cfi_startproc\n"
        "  lea 0x8(%rsp), %r10\n"
        ".cfi_def_cfa %r10, 0\n"
        "  and $-64, %rsp\n"
        "  pushq -0x8(%r10)\n"
        "  push %rbp\n"
        ".cfi_escape 0x10, 0x06, 0x02, 0x76, 0x00\n"       /* rbp: saved at rbp + 0 */
        "  mov %rsp, %rbp\n"
        "  push %r10\n"
        ".cfi_escape 0x0f, 0x03, 0x76, 0x78, 0x06\n"       /* CFA: the word at rbp - 8 */
        "  sub $8, %rsp\n"
        "  call *%rdi\n"
        "  add $8, %rsp\n"
        "  pop %r10\n"
        ".cfi_def_cfa %r10, 0\n"
        "  pop %rbp\n"
        ".cfi_restore %rbp\n"
        "  lea -0x8(%r10), %rsp\n"
        ".cfi_def_cfa %rsp, 8\n"
        "  ret\n"
        ".cfi_endproc\n"
        ".size drap_call, .-drap_call\n");
static result_t drap_inner(void) { return recurse(3); }

static result_t in_handler;
static void on_signal(int sig) {
    (void)sig;
    in_handler = recurse(2);
}

static bool good(result_t r) { return r.own > 0 && r.same; }

int main(void) {
    free(malloc(1)); /* the profiler, and with it the walker, starts */
    CHECK("the walker is on", ms_unwind_enabled);

    result_t r = recurse(40);
    CHECK("deep recursion: libunwind's frames", good(r) && r.own > 40);
    r = recurse_vla(20);
    CHECK("frames with variable-length arrays (CFA = rbp + 16): libunwind's frames", good(r) && r.own > 20);

    int v[64];
    for (int i = 0; i < 64; i++) v[i] = (i * 37) % 64;
    qsort(v, 64, sizeof v[0], cmp);
    CHECK("inside a qsort callback: libunwind's frames", good(in_qsort));

    pthread_t t;
    result_t tr = {0, false};
    CHECK("a thread's stack: libunwind's frames",
          pthread_create(&t, NULL, thread_main, &tr) == 0 && pthread_join(t, NULL) == 0 && good(tr));

    /* one call site: the stacks differ only below via_f1 and via_f2 */
    result_t rr[4];
    bool hit[4];
    for (int i = 0; i < 4; i++) {
        result_t (*volatile via)(void) = i < 2 ? via_f1 : via_f2;
        rr[i] = via();
        hit[i] = replay_rec.hit;
    }
    CHECK("replay: the same stack twice is a hit, with libunwind's frames",
          good(rr[0]) && !hit[0] && good(rr[1]) && hit[1]);
    CHECK("replay: another caller of the same frame sizes is not (libunwind's frames), then is",
          good(rr[2]) && !hit[2] && good(rr[3]) && hit[3]);

    /* leaf1 then leaf2 under via_k1: the second walk reaches via_h's frame
     * (2: compare_with's is 0, the leaf's 1) where the first stood, and
     * takes the first's frames from there; then leaf1 under via_k2: via_h's
     * frame stands where it did, but its return address differs, and so
     * does via_k2's pc, so the splice comes further out, at splice_from's
     * frame (4); then 64 walks alternating leaves and callers, each held
     * against libunwind.  All from one call site (run_splices). */
    int sp[3 + 64];
    bool ok[3 + 64];
    run_splices(sp, ok);
    bool all = true;
    for (int i = 3; i < 3 + 64; i++) all &= ok[i];
    CHECK("splice: another leaf under the same callers ends with the last walk's frames (libunwind's)",
          ok[0] && ok[1] && sp[1] == 2);
    CHECK("splice: not where a word above differs, but further out (libunwind's frames)", ok[2] && sp[2] == 4);
    CHECK("splice: alternating leaves and callers, libunwind's frames every time", all);

    r = drap_call(drap_inner);
    CHECK("through a frame whose CFA is the word at rbp - 8 (GCC's main): libunwind's frames", good(r));
    r = realigned();
    CHECK("a realigned frame (CFA saved below rbp): libunwind's frames", good(r));

    signal(SIGUSR1, on_signal);
    raise(SIGUSR1);
    CHECK("a signal handler's stack: refused", in_handler.own == -1);

    /* warm, then unload and load: no stale recipe walks the new object */
    void *h = dlopen("libm.so.6", RTLD_NOW | RTLD_LOCAL);
    if (h) {
        dlclose(h);
        h = dlopen("libm.so.6", RTLD_NOW | RTLD_LOCAL);
        r = recurse(5);
        CHECK("after dlclose and dlopen: libunwind's frames", good(r));
        if (h) dlclose(h);
    }
    return print_test_summary();
}
