/* stackcost.c: what one heap-profile sample costs, in ns.
 *
 * Linked against the static release archive build/libmemscope.a (so it can
 * call the profiler's internal ms_stack_capture; hidden visibility does not
 * stop static linking) and built with -O2 -fomit-frame-pointer -rdynamic, so
 * the unwinder has to use the DWARF CFI, as for a Debian binary.  The
 * program's malloc is memscope's, and MEMSCOPE=profile_rate=... applies.
 *
 * usage: stackcost capture DEPTH ITERS   ms_stack_capture(pcs, 64, 0) called
 *                                        ITERS times from a recursion DEPTH deep
 *        stackcost alloc DEPTH ITERS     malloc(32) + free ITERS times from a
 *                                        recursion DEPTH deep (run it with
 *                                        profile_rate=1 and =0; the difference
 *                                        is the full cost of a sample)
 * Prints: RESULT mode=... depth=D iters=N ns_per_op=X frames=F rec_frames=R
 *   frames: pcs returned by one capture at the bottom (capture mode; 0 else);
 *   rec_frames: how many of them dladdr() names "rec" (must equal DEPTH, or
 *   the stack is wrong).  Exit status 3 if rec_frames != DEPTH.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "prof/prof.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int mode_alloc;
static long iters;
static double elapsed;
static int frames, rec_frames;
static volatile uintptr_t sink;

static int count_rec(const uintptr_t *pcs, int n)
{
    int r = 0;
    for (int i = 0; i < n; i++) {
        Dl_info di;
        if (dladdr((void *)(pcs[i] - 1), &di) && di.dli_sname && strcmp(di.dli_sname, "rec") == 0) r++;
    }
    return r;
}

static void bottom(void)
{
    uintptr_t pcs[64];
    if (mode_alloc) {
        double t0 = now_s();
        for (long i = 0; i < iters; i++) {
            void *volatile p = malloc(32);
            sink += (uintptr_t)p;
            free(p);
        }
        elapsed = now_s() - t0;
    } else {
        frames = ms_stack_capture(pcs, 64, 0);
        rec_frames = count_rec(pcs, frames);
        double t0 = now_s();
        for (long i = 0; i < iters; i++) sink += (uintptr_t)ms_stack_capture(pcs, 64, 0);
        elapsed = now_s() - t0;
    }
}

/* The recursion: noinline, with work after the call and a local array, so
 * neither a tail call nor a loop replaces it and every frame has CFI. */
__attribute__((noinline)) int rec(int d)
{
    volatile char pad[24];
    pad[d % 24] = (char)d;
    if (d <= 1) bottom();
    else rec(d - 1);
    return pad[d % 24] + 1;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: stackcost capture|alloc DEPTH ITERS\n");
        return 2;
    }
    mode_alloc = strcmp(argv[1], "alloc") == 0;
    int depth = atoi(argv[2]);
    iters = atol(argv[3]);
    if (mode_alloc) { /* warm up: first-use costs (unwinder caches, tables) */
        long n = iters;
        iters = 1000;
        rec(depth);
        iters = n;
    }
    rec(depth);
    printf("RESULT mode=%s depth=%d iters=%ld ns_per_op=%.1f frames=%d rec_frames=%d\n", argv[1], depth, iters,
           elapsed * 1e9 / (double)iters, frames, rec_frames);
    return (!mode_alloc && rec_frames != depth) ? 3 : 0;
}
