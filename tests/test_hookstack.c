/* test_hookstack.c: the sampling hook leaves no copy of the block it
 * samples in the program's dead stack.
 *
 * At profile_rate=1 every allocation goes through the profiler, which
 * unwinds the stack (several KiB deep, with copies of registers) and
 * records the block.  Whatever it leaves below the caller's frame becomes
 * part of later frames, and a leak check scans stacks conservatively: a
 * copy of a block's address there keeps a lost block "reachable"
 * (tests/leak/exitlost.c is the end-to-end case).  Every allocator leaves
 * a copy in its entry frames (glibc's malloc too, about 150 bytes down,
 * as does memscope's sampling point); what must hold is that nothing
 * deeper keeps one: not the unwinder's frames, several KiB deep with
 * copies of every register, nor the record's.  Here each malloc and
 * calloc, small and large, runs 1 KiB below the search's frame, and the
 * stack from 192 bytes below the allocator's entry down to 32 KiB is
 * searched for the block's address: there must be none (a build that
 * does not clear the record's frames leaves copies 170-440 bytes down).
 * The address sits in a global while the search runs, so the search's
 * own frame holds no copy of it.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testhelper.h"

#define SCAN_WORDS (32768 / sizeof(uintptr_t))
#define PAD 1024                  /* deep()'s frame */
#define ENTRY_SLACK (16 + 192)    /* deep()'s return address and alignment, the entry frames */

static volatile uintptr_t target;

/* copies_below: the words equal to target in the stack below this frame */
static __attribute__((noinline)) size_t copies_below(void) {
    volatile uintptr_t *fp = (volatile uintptr_t *)__builtin_frame_address(0);
    size_t n = 0;
    for (size_t i = (PAD + ENTRY_SLACK) / sizeof(uintptr_t); i < SCAN_WORDS; i++)
        if (fp[-(ptrdiff_t)i] == target) n++;
    return n;
}

typedef void *(*alloc_fn)(size_t);

/* deep: f(size) called PAD bytes further down, below anything the
 * search's frame covers */
static __attribute__((noinline)) void *deep(alloc_fn f, size_t size) {
    volatile char pad[PAD];
    pad[0] = 0;
    void *p = f(size);
    pad[1] = 0; /* the frame stays until f returns: not a tail call */
    __asm__ volatile("" : : "r"(pad) : "memory");
    return p;
}
static void *do_malloc(size_t n) { return malloc(n); }
static void *do_calloc(size_t n) { return calloc(1, n); }

/* copies: after each of `rounds` allocations by f, the copies of the new
 * block's address found below the caller (f is called through a pointer,
 * so its frame and the allocator's are all below this one) */
static size_t copies(alloc_fn f, int rounds) {
    size_t total = 0;
    for (int i = 0; i < rounds; i++) {
        size_t size = 16 + (size_t)(i * 40) % 3000 + (i % 7 == 0 ? 70000 : 0); /* small and large */
        void *p = deep(f, size);
        if (!p) return SIZE_MAX;
        target = (uintptr_t)p;
        total += copies_below();
        target = 0;
        free(p);
    }
    return total;
}

int main(int argc, char **argv) {
    (void)argc;
    /* this program's own functions bound at load: the loader's lazy
     * binding of one (fwrite, in the first check's "ok") saved the
     * registers 2.4 KiB down, one of them still holding the last block
     * of the malloc check, and calloc handed that address out again
     * (the Makefile binds libmemscope.so at load for the same reason) */
    if (!getenv("LD_BIND_NOW")) {
        setenv("LD_BIND_NOW", "1", 1);
        execv("/proc/self/exe", argv);
    }
    th_run_with("profile_rate=1", argv);
    copies(do_malloc, 50); /* the unwinder's caches warm, as in a long-running program */
    CHECK("sampled malloc leaves no copy of the block below its caller", copies(do_malloc, 500) == 0);
    CHECK("sampled calloc leaves no copy of the block below its caller", copies(do_calloc, 500) == 0);
    return print_test_summary();
}
