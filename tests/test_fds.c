/* test_fds.c: memscope holds no file descriptor of the program's and never
 * reads or writes one.
 *
 * libunwind, which the heap profiler uses, proves memory readable by
 * writing it into a pipe it opens when it starts: that pipe took
 * descriptors 3 and 4, the program's first open() returned 5 instead of 3,
 * and a program that closed them and opened its own files there had
 * libunwind read a byte of its input and write bytes into its output (a
 * daemon; a shell's "exec 3<file").  memscope now reads memory for
 * libunwind itself and closes that pipe (prof/stack.c).  libunwind is
 * loaded by the first stack memscope's own walker refuses, late in a run:
 * here a malloc called from code in an anonymous mapping (no unwind
 * tables, as a JIT's), after the program's files are open; not by a
 * malloc in a signal handler, whose walk stops at the signal frame
 * (stack.c: lu_load).
 *
 * Run with profile_rate=1 (the program re-executes itself with it), so
 * that every allocation takes a stack, on new threads' fresh stack pages,
 * and trace=1, so that memscope keeps a copy of stderr (log.c).
 *   - the first open() returns 3, as without memscope;
 *   - files on descriptors 3 and 4, read and written around thousands of
 *     sampled allocations in 16 threads, keep exactly their data;
 *   - libunwind, loaded then, is in the process and leaves no descriptor
 *     open: the next open() returns 5;
 *   - nor does a leak check with a thread running (it opens the kernel's
 *     write tracking for its length);
 *   - memscope's copy of stderr sits at 1000 or above, and a file the
 *     program puts on that number itself (dup2) is the program's: a fork
 *     child writes to it (the child once closed it as memscope's copy).
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "memscope.h"
#include "testhelper.h"

static __attribute__((noinline)) int deep(int n) {
    volatile char pad[512];
    pad[0] = (char)n;
    if (n == 0) {
        void *p = malloc(100 + (size_t)(rand() % 5000));
        free(p);
        return pad[0];
    }
    return deep(n - 1) + pad[0];
}

/* a signal frame: memscope's walker gives such stacks to libunwind */
static volatile sig_atomic_t in_handler;
static void *volatile kept; /* or gcc drops the malloc and free as a pair */
static void on_usr1(int sig) {
    (void)sig;
    in_handler++;
    kept = malloc(48);
    free(kept);
}

/* jit_call: fn called from a few instructions in an anonymous executable
 * mapping, which no object's unwind tables cover; false if there is none */
static bool jit_call(void (*fn)(void)) {
#if defined(__x86_64__)
    static const unsigned char code[] = {
        0x48, 0x83, 0xec, 0x08,             /* sub $8, %rsp: the call below on a 16-byte boundary */
        0x48, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, /* movabs $fn, %rax */
        0xff, 0xd0,                         /* call *%rax */
        0x48, 0x83, 0xc4, 0x08,             /* add $8, %rsp */
        0xc3};                              /* ret */
    unsigned char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return false;
    memcpy(m, code, sizeof code);
    memcpy(m + 6, &fn, sizeof fn);
    if (mprotect(m, 4096, PROT_READ | PROT_EXEC) != 0) return false;
    ((void (*)(void))(void *)m)();
    munmap(m, 4096);
    return true;
#else
    (void)fn;
    return false;
#endif
}
static void jit_malloc(void) {
    kept = malloc(48);
    free(kept);
}

static volatile int stop_spin;
static void *spin(void *arg) {
    (void)arg;
    void *volatile p = malloc(32); /* a heap page written while the check runs */
    while (!stop_spin) ((volatile char *)p)[0]++;
    free(p);
    return NULL;
}

static bool libunwind_mapped(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    bool found = false;
    while (f && fgets(line, sizeof line, f)) found |= strstr(line, "/libunwind.so") != NULL;
    if (f) fclose(f);
    return found;
}

static void *thr(void *a) {
    for (int i = 0; i < 40; i++) deep(i * 3);
    return a;
}

int main(int argc, char **argv) {
    (void)argc;
    th_run_with("profile_rate=1,trace=1", argv);
    free(malloc(64)); /* the profiler (and libunwind) started */
    char in_path[] = "/tmp/memscope-fds-in.XXXXXX", out_path[] = "/tmp/memscope-fds-out.XXXXXX";
    int tin = mkstemp(in_path), tout = mkstemp(out_path);
    CHECK("first-descriptor-is-3", tin == 3);
    const char *data = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    if (write(tin, data, strlen(data)) != (ssize_t)strlen(data)) return 1;
    close(tin);
    close(tout);
    /* the program's own files on 3 and 4, whatever was there */
    int in = open(in_path, O_RDONLY), out = open(out_path, O_WRONLY | O_TRUNC);
    if (in != 3) dup2(in, 3), close(in), in = 3;
    if (out != 4) dup2(out, 4), close(out), out = 4;
    if (write(out, "HEADER\n", 7) != 7) return 1;
    for (int k = 0; k < 16; k++) {
        pthread_t t;
        pthread_create(&t, NULL, thr, NULL);
        pthread_join(t, NULL);
    }
    signal(SIGUSR1, on_usr1);
    for (int k = 0; k < 8; k++) raise(SIGUSR1);
    CHECK("libunwind-not-loaded-in-a-signal-handler", in_handler == 8 && !libunwind_mapped());
    CHECK("libunwind-loaded-by-code-without-unwind-tables", jit_call(jit_malloc) && libunwind_mapped());
    int next = open("/dev/null", O_RDONLY);
    CHECK("no-descriptor-left-by-libunwind", next == 5);
    close(next);
    /* a live check with another thread running opens the kernel's write
     * tracking and /proc files for its length (src/leak/writes.c) */
    pthread_t busy;
    pthread_create(&busy, NULL, spin, NULL);
    long lost = memscope_check_leaks(-1);
    stop_spin = 1;
    pthread_join(busy, NULL);
    next = open("/dev/null", O_RDONLY);
    CHECK("no-descriptor-left-by-a-leak-check", lost >= 0 && next == 5);
    close(next);
    char buf[64] = {0};
    ssize_t n = read(in, buf, sizeof buf - 1);
    if (write(out, "FOOTER\n", 7) != 7) return 1;
    close(in);
    close(out);
    CHECK("input-read-whole", n == (ssize_t)strlen(data) && strcmp(buf, data) == 0);
    char got[64] = {0};
    int fd = open(out_path, O_RDONLY);
    ssize_t m = read(fd, got, sizeof got - 1);
    close(fd);
    CHECK("output-exactly-written", m == 14 && strcmp(got, "HEADER\nFOOTER\n") == 0);
    unlink(in_path);
    unlink(out_path);

    /* memscope's copy: a descriptor on stderr's file, close-on-exec */
    struct stat e, st;
    int copy = -1;
    fstat(2, &e);
    for (int d = 3; d < 1100 && copy < 0; d++)
        if (fstat(d, &st) == 0 && st.st_dev == e.st_dev && st.st_ino == e.st_ino && fcntl(d, F_GETFD) == FD_CLOEXEC)
            copy = d;
    CHECK("stderr-copy-kept-high", copy >= 1000);
    char own_path[] = "/tmp/memscope-fds-own.XXXXXX";
    int own = mkstemp(own_path);
    if (copy < 0) copy = 1000;
    dup2(own, copy);
    close(own);
    pid_t pid = fork();
    if (pid == 0) _exit(write(copy, "child\n", 6) == 6 ? 0 : 1);
    int status = -1;
    waitpid(pid, &status, 0);
    char mine[16] = {0};
    ssize_t k = pread(copy, mine, sizeof mine - 1, 0);
    CHECK("program-file-on-that-number-kept-in-child", status == 0 && k == 6 && strcmp(mine, "child\n") == 0);
    close(copy);
    unlink(own_path);
    return print_test_summary();
}
