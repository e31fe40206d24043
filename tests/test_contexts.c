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
 *     allocations (the stack goes through the kernel's signal frame);
 *   - an itimer's handler that mallocs, frees blocks the program allocated
 *     (all recorded) and reallocs a large one, every 100 us of CPU time,
 *     while the thread allocates: it interrupts the profiler holding its
 *     locks, and the run hung for good (the handler waited for a lock its
 *     own thread held) before a thread inside the profiler stopped
 *     sampling and kept such frees for when it leaves; a watchdog alarm
 *     fails the test if it hangs.
 * Each must allocate, free and return, and the profile must hold their
 * samples.
 */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>
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

#define HANDED 4096
static void *handed[HANDED]; /* allocated by the program, freed by the handler */
static volatile int handed_next;
static void *grown;          /* reallocated by the handler only */
static volatile long prof_hits;
static void on_prof(int sig) {
    (void)sig;
    void *volatile p = malloc(24 + (size_t)(prof_hits % 300));
    free(p);
    if (handed_next < HANDED) free(handed[handed_next++]);
    void *g = realloc(grown, (size_t)(70000 + (prof_hits % 7) * 40000));
    if (g) grown = g;
    prof_hits++;
}

static void watchdog(int sig) {
    (void)sig;
    static const char msg[] = "test_contexts: hung (an allocation in a signal handler never returned)\n";
    if (write(2, msg, sizeof msg - 1)) {}
    _exit(2);
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

    for (int i = 0; i < HANDED; i++) handed[i] = malloc(16 + (size_t)i % 500);
    grown = malloc(70000);
    signal(SIGALRM, watchdog);
    alarm(60);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_prof;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGPROF, &sa, NULL);
    struct itimerval every = {{0, 100}, {0, 100}}, off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_PROF, &every, NULL);
    long sum = 0;
    /* ITIMER_PROF fires per tick of CPU time (4 ms at HZ=250), so the
     * count of handler runs follows how long the loop takes: it goes on
     * past 3M steps until the handler ran 40 times (at most 60M steps;
     * the watchdog above bounds the time), so that a faster malloc does
     * not leave the check below without the interruptions it is about */
    for (long i = 0; i < 3000000 || (prof_hits < 40 && i < 60000000); i++) {
        char *volatile p = malloc(16 + (size_t)i % 700);
        p[0] = (char)i;
        sum += p[0];
        free(p);
    }
    setitimer(ITIMER_PROF, &off, NULL);
    alarm(0);
    fprintf(stderr, "[%ld handler runs, %d handed blocks freed there] ", (long)prof_hits, (int)handed_next);
    CHECK("an itimer's handler that allocates while the thread allocates", prof_hits > 10 && sum != 1);
    free(grown);
    for (int i = handed_next; i < HANDED; i++) free(handed[i]);

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
