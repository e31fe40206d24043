/* test_contexts.c: allocations on stacks no unwinder can walk to the end,
 * with every allocation sampled (profile_rate=1), through the shared
 * library as a program uses it.
 *
 *   - a function run by makecontext: below it lies __start_context, and
 *     past it whatever the context's stack held; libunwind goes on by rbp
 *     there.  With rbp holding a small integer (what getcontext found) a
 *     new thread's first sample read address 1 and killed the program with
 *     SIGSEGV (the check of pages known readable took an empty slot of its
 *     memory for page 0);
 *   - a signal handler that allocates, interrupting the main thread's
 *     allocations (the stack goes through the kernel's signal frame).
 * Each must allocate, free and return, and the profile must hold their
 * samples.
 */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include "memscope.h"
#include "testhelper.h"

static ucontext_t ctx_main, ctx_fn;
static char ctx_stack[1 << 16];
static volatile int in_context_ok;

static void in_context(void) {
    void *p = malloc(32);
    printf("in a context: %d\n", p != NULL);
    free(p);
    for (int i = 0; i < 1000; i++) {
        char *volatile q = malloc(32 + (size_t)i % 200);
        if (!q) return;
        q[0] = 1;
        free(q);
    }
    in_context_ok = 1;
}

/* context_thread: a new thread's first allocations run in a context (its
 * memory of pages known readable is empty) */
static void *context_thread(void *arg) {
    (void)arg;
    getcontext(&ctx_fn);
    /* rbp as getcontext found it: optimized code keeps its own values
     * there, here the small integer that made libunwind read address 1 */
    ctx_fn.uc_mcontext.gregs[REG_RBP] = 1;
    ctx_fn.uc_stack.ss_sp = ctx_stack;
    ctx_fn.uc_stack.ss_size = sizeof ctx_stack;
    ctx_fn.uc_link = &ctx_main;
    makecontext(&ctx_fn, in_context, 0);
    swapcontext(&ctx_main, &ctx_fn);
    return NULL;
}

static volatile sig_atomic_t handled;
static void on_alarm(int sig) {
    (void)sig;
    void *volatile p = malloc(64); /* not async-signal-safe in general; memscope's must cope */
    free(p);
    handled++;
}

int main(int argc, char **argv) {
    (void)argc;
    th_run_with("profile_rate=1", argv);

    pthread_t t;
    CHECK("sampled allocations on a makecontext stack, a new thread's first",
          pthread_create(&t, NULL, context_thread, NULL) == 0 && pthread_join(t, NULL) == 0 && in_context_ok == 1);

    signal(SIGALRM, on_alarm);
    for (int i = 0; i < 200; i++) {
        raise(SIGALRM);
        void *volatile p = malloc(48);
        free(p);
    }
    CHECK("sampled allocations in a signal handler", handled == 200);

    char path[] = "/tmp/memscope-contexts-XXXXXX";
    int fd = mkstemp(path);
    CHECK("the heap profile is written", fd >= 0 && memscope_write_heap_profile_fd(fd, 1) == 0);
    if (fd >= 0) {
        FILE *f = fdopen(fd, "r");
        char line[512];
        int samples = 0;
        rewind(f);
        while (f && fgets(line, sizeof line, f))
            if (strstr(line, "in_context") || strstr(line, "on_alarm")) samples++;
        CHECK("both places are in the profile", samples >= 2);
        if (f) fclose(f);
        unlink(path);
    }
    return print_test_summary();
}
