/* cases.c: programs with known leaks, one case per argument, for
 * tests/test_leaks.sh.  Built plainly (no memscope at link time) so the
 * same binary runs under memscope (LD_PRELOAD, MEMSCOPE=leaks=reachable)
 * and under LeakSanitizer (LD_PRELOAD=liblsan.so.0).  Each case leaves a
 * known number of directly and indirectly lost blocks, and blocks that are
 * referenced from exactly one kind of root; the check runs at exit, so
 * whatever the roots fail to cover shows up as an extra lost block.
 *
 *   lost      a pointer dropped                          direct 1
 *   cycle     head -> a <-> b, and c <-> d alone          direct 1, indirect 4
 *   stack     a block only another thread's stack holds   none
 *   reg       a block only a register holds (a thread spinning in asm)  none
 *   tls       a block only a __thread variable holds      none
 *   dl        a block only a dlopen'd library's data holds   none
 *   interior  a 1 MiB block held only by a pointer into its middle   none
 *   xor       a pointer hidden by xor                      direct 1
 *   tail      a block whose address is left only past the requested
 *             bytes of a live block (a freed block's words) direct 1 (not
 *             in `all`: memscope clears such tails in leak-check mode
 *             only, and the run-time checks below run sampled)
 *   smalltail the same with a block of 512 bytes, 489 asked for: the
 *             tail malloc clears with stores of its own, not memset
 *             (direct 1, not in `all`, as tail)
 *   unwritten the same in the requested bytes of a 1 MiB block the
 *             program never writes (the freed block's pages) direct 1
 *             (not in `all`, as tail)
 *   respan    the same in a small block the program never writes, on
 *             pages a freed large block left to a span of a new class
 *             direct 1 (not in `all`, as tail)
 *   grown     a 100-byte block grown in place by realloc to 104 bytes, a
 *             block's address stored in the 4 bytes grown and the 4 before
 *             them: none (memscope reads a small block's request only, and
 *             realloc in place changes it: internal.h, "Records in the
 *             blocks' tails").  Not in `all`, as tail.
 *   shrunk    the same the other way: a 104-byte block, the address at byte
 *             96, shrunk in place to 60 bytes: direct 1.  Not in `all`.
 *   moved     as smalltail in a block of 96 bytes (a class of 112 in
 *             leak-check mode, the address in its bytes 96 to 103), which
 *             realloc then moves to a block of 200: the move copies the
 *             request, not the slot's past into the new block's request:
 *             direct 1.  Not in `all`.
 *   usable    a 100-byte block whose malloc_usable_size the program asked,
 *             and the address stored past the request within it: none
 *             under memscope (the program may use what that call gives);
 *             LeakSanitizer's call gives the request, so the store is past
 *             its block and unread: direct 1 (docs/LEAKS.md).  Not in `all`.
 *   blocked   a block only the stack of a thread that blocks every signal
 *             holds (it sleeps in a system call): none, and memscope's
 *             report says the thread did not stop
 *   joined    four threads that allocate, exit and are joined: none (glibc
 *             keeps each one's stack for reuse, with its DTV, a block the
 *             dynamic loader calloc'd and only that cached stack refers to)
 *   mmap      three blocks held only from memory the program mapped itself:
 *             a private anonymous mapping, a shared anonymous one and a
 *             shared mapping of a file; and 16 GiB of read-write address
 *             space never touched (MAP_NORESERVE) beside them.  direct 3,
 *             as under LSan, which scans no such memory; with
 *             MEMSCOPE=leaks_mmap=1 direct 2 (private memory only), with
 *             leaks_mmap=shared direct 1 (the file's: only memory is read,
 *             and of it only the resident pages).  Not in `all`.
 *   ustack    a thread whose stack the program gave it (pthread_attr_
 *             setstack) in the lower half of one mapping, and two blocks
 *             held only from the upper half, above the stack: direct 2 as
 *             under LSan; with leaks_mmap=1 none (the mapping is a stack
 *             up to the stack's top only).  Not in `all`.
 *   all       every case at once                           direct 3, indirect 4
 * Environment: CASES_CHECK_NOW=1 runs memscope_check_leaks(2) before exit
 * and prints "lost N"; CASES_FORK=1 runs it in a fork child instead ("child
 * lost N"); CASES_SLEEP=S prints "ready" once every leak is made and then
 * sleeps S seconds before exit (for the HTTP test, which waits for the line:
 * the endpoint is up from process start, long before the leaks exist).
 * Compiled with -O2; the stack is scrubbed after allocating so that no dead
 * copy of a pointer survives where the scan would see it.
 */
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_int ready;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static volatile int stop_spin;

/* scrub: overwrites the dead stack below the caller with zeros. */
static __attribute__((noinline)) void scrub(void) {
    volatile char buf[16384];
    memset((char *)buf, 0, sizeof buf);
    __asm__ volatile("" ::"r"(buf) : "memory");
}

static __attribute__((noinline)) void *touch(size_t n) {
    char *p = malloc(n);
    memset(p, 0x5a, n);
    return p;
}

static __attribute__((noinline)) void case_lost(void) { (void)touch(40); }

struct node { struct node *next; char pad[24]; };
static __attribute__((noinline)) void case_cycle(void) {
    struct node *head = touch(sizeof *head), *a = touch(sizeof *a), *b = touch(sizeof *b);
    head->next = a, a->next = b, b->next = a;
    struct node *c = touch(sizeof *c), *d = touch(sizeof *d);
    c->next = d, d->next = c;
}

static void *stack_thread(void *arg) {
    (void)arg;
    void *volatile p = touch(72); /* on this thread's stack only */
    pthread_mutex_lock(&mu);
    atomic_store(&ready, atomic_load(&ready) + 1);
    pthread_cond_broadcast(&cv);
    for (;;) pthread_cond_wait(&cv, &mu); /* until the process exits */
    (void)p;
    return NULL;
}

static void *reg_thread(void *arg) {
    (void)arg;
    void *p = touch(88);
    scrub();
#if defined(__x86_64__)
    /* the only copy of p stays in r12; the dead stack below is zeroed first */
    register void *r12 __asm__("r12") = p;
    p = NULL;
    __asm__ volatile("lea -8192(%%rsp), %%rdi\n\t"
                     "mov $1008, %%ecx\n\t"
                     "xor %%eax, %%eax\n\t"
                     "rep stosq\n\t"
                     "lock incl %1\n\t"
                     "1: pause\n\t"
                     "cmpl $0, %2\n\t"
                     "je 1b\n\t"
                     : "+r"(r12), "+m"(ready)
                     : "m"(stop_spin)
                     : "rax", "rcx", "rdi", "memory", "cc");
#else
    atomic_fetch_add(&ready, 1);
    while (!stop_spin) __asm__ volatile("" ::"r"(p));
#endif
    return NULL;
}

static void *blocked_thread(void *arg) {
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, NULL);
    void *volatile p = touch(136);
    atomic_fetch_add(&ready, 1);
    for (;;) sleep(100);
    (void)p;
    return NULL;
}

static __thread void *volatile tls_ptr; /* volatile: a never-read static store would be dropped */
static __attribute__((noinline)) void case_tls(void) { tls_ptr = touch(104); }

static __attribute__((noinline)) void case_dl(const char *lib) {
    void *h = dlopen(lib, RTLD_NOW);
    if (!h) {
        fprintf(stderr, "cases: dlopen %s: %s\n", lib, dlerror());
        exit(2);
    }
    void (*set)(void *) = (void (*)(void *))dlsym(h, "leak_lib_set");
    set(touch(120));
}

static char *volatile interior;
static __attribute__((noinline)) void case_interior(void) { interior = (char *)touch(1 << 20) + 500000; }

static volatile uintptr_t hidden;
static __attribute__((noinline)) void case_xor(void) { hidden = (uintptr_t)touch(56) ^ 0x5555aaaa5555aaaaull; }

/* fill: every word of p is v (stores the compiler must not drop as dead
 * before the free that follows) */
static __attribute__((noinline)) void fill(uintptr_t *p, size_t n, uintptr_t v) {
    for (size_t i = 0; i < n / sizeof *p; i++) p[i] = v;
    __asm__ volatile("" ::"r"(p) : "memory");
}

/* reuse: a block of old_n bytes, every word the address of a block then
 * lost, is freed, and a block of new_n bytes (written, or not) kept: the
 * freed block's words must not make the lost block reachable.  The three
 * cases that use it run alone, one per process. */
static void *volatile reuse_keep;
static __attribute__((noinline)) void reuse(size_t old_n, size_t new_n, bool written) {
    uintptr_t lost = (uintptr_t)touch(40);
    uintptr_t *old = malloc(old_n);
    fill(old, old_n, lost);
    free(old);
    reuse_keep = written ? touch(new_n) : malloc(new_n);
}

/* tail: the next block of the class asks for less, all of it written;
 * the words past the request are the freed block's */
static __attribute__((noinline)) void case_tail(void) { reuse(40960, 40000, true); }

/* smalltail: as tail, in a class whose tails malloc clears inline (the
 * 16 bytes that hold the request's end on) */
static __attribute__((noinline)) void case_smalltail(void) { reuse(512, 489, true); }

/* unwritten: a large block on the same pages, never written */
static __attribute__((noinline)) void case_unwritten(void) { reuse((size_t)1 << 20, (size_t)1 << 20, false); }

/* respan: the freed large block's pages go back to the page heap, and the
 * first span of a class not used before takes them (the first fit in
 * address order, as the block was the last thing the heap handed out):
 * the words of the unwritten small block are the large block's */
static __attribute__((noinline)) void case_respan(void) { reuse(300000, 6000, false); }

/* moved: see the top */
static __attribute__((noinline)) void case_moved(void) {
    reuse(104, 96, true);
    void *q = realloc(reuse_keep, 200);
    if (!q) exit(2);
    memset((char *)q + 104, 0, 96); /* the program's new bytes, but for the 8 a copy of the slot's past would fill */
    reuse_keep = q;
}

/* grown, shrunk, usable: a kept block of the class of 112 bytes (where a
 * request of 97 to 104 bytes goes in leak-check mode) holds the only
 * pointer to another block, at byte 96 */
static void *volatile resized_keep;
static __attribute__((noinline)) void case_grown(void) {
    char *p = malloc(100);
    memset(p, 0, 100);
    char *q = realloc(p, 104);
    if (!q) exit(2);
    *(void **)(void *)(q + 96) = touch(40);
    resized_keep = q;
}
static __attribute__((noinline)) void case_shrunk(void) {
    char *p = malloc(104);
    memset(p, 0, 104);
    *(void **)(void *)(p + 96) = touch(40);
    char *q = realloc(p, 60);
    if (!q) exit(2);
    resized_keep = q;
}
static size_t volatile usable_req = 100; /* volatile: the store past it is the test, not an error to warn of */
static __attribute__((noinline)) void case_usable(void) {
    char *p = malloc(usable_req);
    memset(p, 0, usable_req);
    (void)malloc_usable_size(p); /* 104 under memscope, 100 under LSan */
    *(void **)(void *)(p + 96) = touch(40);
    resized_keep = p;
}

static __attribute__((noinline)) void case_mmap(void) {
    int prot = PROT_READ | PROT_WRITE;
    void **anon = mmap(NULL, 1 << 20, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    void **shared = mmap(NULL, 1 << 16, prot, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    void *vast = mmap(NULL, (size_t)16 << 30, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    FILE *f = tmpfile();
    void **file = MAP_FAILED;
    if (f && ftruncate(fileno(f), 1 << 16) == 0) file = mmap(NULL, 1 << 16, prot, MAP_SHARED, fileno(f), 0);
    if (anon == MAP_FAILED || shared == MAP_FAILED || vast == MAP_FAILED || file == MAP_FAILED) {
        fprintf(stderr, "cases: mmap failed\n");
        exit(2);
    }
    anon[(1 << 19) / sizeof(void *)] = touch(72);
    shared[100] = touch(80);
    file[200] = touch(88);
}

static void *volatile *ustack_arena;
static void *ustack_thread(void *arg) {
    (void)arg;
    pthread_mutex_lock(&mu);
    atomic_store(&ready, atomic_load(&ready) + 1);
    pthread_cond_broadcast(&cv);
    for (;;) pthread_cond_wait(&cv, &mu); /* until the process exits */
    return NULL;
}

static __attribute__((noinline)) void case_ustack(int *want) {
    size_t half = (size_t)1 << 20;
    char *m = mmap(NULL, 2 * half, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        fprintf(stderr, "cases: mmap failed\n");
        exit(2);
    }
    ustack_arena = (void *volatile *)(m + half);
    ustack_arena[10] = touch(152);
    ustack_arena[5000] = touch(168);
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setstack(&at, m, half);
    pthread_t t;
    pthread_create(&t, &at, ustack_thread, NULL);
    pthread_detach(t);
    (*want)++;
}

static void *joined_thread(void *arg) {
    free(touch(24));
    return arg;
}

static __attribute__((noinline)) void case_joined(void) {
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, joined_thread, NULL);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
}

static void start(void *(*fn)(void *), int *want) {
    pthread_t t;
    pthread_create(&t, NULL, fn, NULL);
    pthread_detach(t);
    (*want)++;
}

int main(int argc, char **argv) {
    const char *c = argc > 1 ? argv[1] : "all";
    const char *lib = argc > 2 ? argv[2] : "./libleakdl.so";
    bool all = strcmp(c, "all") == 0;
    int want = 0;
    if (all || !strcmp(c, "lost")) case_lost();
    if (all || !strcmp(c, "cycle")) case_cycle();
    if (all || !strcmp(c, "stack")) start(stack_thread, &want);
    if (all || !strcmp(c, "reg")) start(reg_thread, &want);
    if (all || !strcmp(c, "tls")) case_tls();
    if (all || !strcmp(c, "dl")) case_dl(lib);
    if (all || !strcmp(c, "interior")) case_interior();
    if (all || !strcmp(c, "xor")) case_xor();
    if (all || !strcmp(c, "joined")) case_joined();
    if (!strcmp(c, "tail")) case_tail();
    if (!strcmp(c, "smalltail")) case_smalltail();
    if (!strcmp(c, "unwritten")) case_unwritten();
    if (!strcmp(c, "respan")) case_respan();
    if (!strcmp(c, "moved")) case_moved();
    if (!strcmp(c, "grown")) case_grown();
    if (!strcmp(c, "shrunk")) case_shrunk();
    if (!strcmp(c, "usable")) case_usable();
    if (!strcmp(c, "blocked")) start(blocked_thread, &want);
    if (!strcmp(c, "mmap")) case_mmap();
    if (!strcmp(c, "ustack")) case_ustack(&want);
    while (atomic_load(&ready) < want) usleep(1000);
    scrub();
    /* memscope's live check, when preloaded */
    long (*check)(int) = (long (*)(int))dlsym(RTLD_DEFAULT, "memscope_check_leaks");
    if (getenv("CASES_CHECK_NOW") && check) printf("lost %ld\n", check(2));
    if (getenv("CASES_FORK") && check) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            printf("child lost %ld\n", check(2));
            fflush(stdout);
            _exit(0);
        }
        waitpid(pid, NULL, 0);
    }
    /* a live check's signal cuts sleep() short (EINTR, as any signal with a
     * handler does): sleep until the deadline */
    if (getenv("CASES_SLEEP")) {
        printf("ready\n");
        fflush(stdout);
    }
    if (getenv("CASES_SLEEP"))
        for (time_t end = time(NULL) + atoi(getenv("CASES_SLEEP")); time(NULL) < end;) sleep(1);
    return 0;
}
