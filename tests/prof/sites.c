/* sites.c: a program whose allocation sites and totals are known, for the
 * heap profiler's tests (tests/test_profile.sh builds it as a PIE without
 * frame pointers, -O2 -fomit-frame-pointer, as Debian builds programs).
 *
 *   sites TRUTHFILE              four sites with known totals; the truth
 *                                (per site: alloc objects, alloc bytes,
 *                                in-use objects, in-use bytes, with usable
 *                                sizes) goes to TRUTHFILE
 *   sites peak                   peak_site holds 48 MiB then frees it all;
 *                                end_site then holds 16 MiB to the end
 *   sites fork                   the child allocates from child_site
 *   sites leak | noleak          leak_site leaks 3 blocks, or frees them
 *   sites deep                   a block allocated 100 calls deep
 * Output goes through write(2): stdio would leave its buffer allocated.
 */
#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

void *lib_site(size_t n);

typedef struct { unsigned long long ao, ab, io, ib; } truth_t;

/* held: where blocks meant to stay live are kept, so the compiler cannot
 * drop an allocation whose result is otherwise unused */
static void *volatile held[64];

static void note(truth_t *t, void *p, int live) {
    size_t u = malloc_usable_size(p);
    t->ao++, t->ab += u;
    if (live) t->io++, t->ib += u;
}

/* static functions, each with its own body so the compiler cannot fold them */
__attribute__((noinline)) static void *keep_site(size_t n) {
    char *p = malloc(n);
    p[0] = 1;
    return p;
}

__attribute__((noinline)) static void *churn_site(size_t n) {
    char *p = malloc(n);
    p[n - 1] = 2;
    return p;
}

__attribute__((noinline)) static void *peak_site(size_t n) {
    char *p = malloc(n);
    memset(p, 3, n);
    return p;
}

__attribute__((noinline)) static void *end_site(size_t n) {
    char *p = malloc(n);
    memset(p, 4, n);
    return p;
}

__attribute__((noinline)) static void *child_site(size_t n) {
    char *p = malloc(n);
    memset(p, 5, 16);
    return p;
}

__attribute__((noinline)) static void *leak_site(size_t n) {
    char *p = malloc(n);
    memset(p, 6, n);
    return p;
}

/* deep_site: recursion, so the stack is deeper than the profiler keeps */
__attribute__((noinline)) static void *deep_site(int depth) {
    if (depth == 0) return malloc(777);
    void *p = deep_site(depth - 1);
    held[depth % 64] = p; /* work after the call: no tail call */
    return p;
}

static void say(const char *s) {
    if (write(1, s, strlen(s)) < 0) _exit(3);
}

static int sites(const char *truthfile) {
    truth_t t[4] = {{0}};
    static void *keep[16384], *dl[200000];
    for (int i = 0; i < 16384; i++) note(&t[0], keep[i] = keep_site(4000), 1);
    for (int i = 0; i < 400000; i++) {
        void *p = churn_site(100);
        note(&t[1], p, 0);
        free(p);
    }
    for (int i = 0; i < 48; i++) note(&t[2], lib_site(1 << 20), 1);
    void *h = dlopen(DL_PATH, RTLD_NOW);
    if (!h) {
        say("sites: dlopen failed\n");
        return 1;
    }
    void *(*dls)(size_t) = (void *(*)(size_t))dlsym(h, "dl_site");
    for (int i = 0; i < 200000; i++) note(&t[3], dl[i] = dls(300), i % 2);
    for (int i = 0; i < 200000; i += 2) free(dl[i]);
    FILE *f = fopen(truthfile, "w");
    if (!f) return 1;
    const char *names[4] = {"keep_site", "churn_site", "lib_site", "dl_site"};
    for (int i = 0; i < 4; i++) fprintf(f, "%s %llu %llu %llu %llu\n", names[i], t[i].ao, t[i].ab, t[i].io, t[i].ib);
    fclose(f);
    const char *text = getenv("SITES_TEXT"); /* also Go's debug=1 text, through the API */
    int (*write_fd)(int, int) = (int (*)(int, int))dlsym(RTLD_DEFAULT, "memscope_write_heap_profile_fd");
    if (text && write_fd) {
        FILE *t = fopen(text, "w");
        if (!t || write_fd(fileno(t), 1) != 0) return 1;
        fclose(t);
    }
    say("sites: done\n");
    return 0; /* everything still live stays live: the profile is written at exit */
}

static int peak(void) {
    static void *big[48];
    for (int i = 0; i < 48; i++) big[i] = peak_site(1 << 20);
    for (int i = 0; i < 48; i++) free(big[i]);
    for (int i = 0; i < 16; i++) held[i] = end_site(1 << 20);
    say("peak: done\n");
    return 0;
}

static int forked(void) {
    pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid == 0) {
        for (int i = 0; i < 64; i++) held[i] = child_site(1 << 20);
        say("fork: child done\n");
        exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    say("fork: parent done\n");
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

static int leak(int keep_them) {
    void *p[3];
    for (int i = 0; i < 3; i++) p[i] = leak_site(1000 + i);
    if (!keep_them)
        for (int i = 0; i < 3; i++) free(p[i]);
    say("leak: done\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    if (!strcmp(argv[1], "peak")) return peak();
    if (!strcmp(argv[1], "fork")) return forked();
    if (!strcmp(argv[1], "leak")) return leak(1);
    if (!strcmp(argv[1], "noleak")) return leak(0);
    if (!strcmp(argv[1], "deep")) return deep_site(100) ? (say("deep: done\n"), 0) : 1;
    return sites(argv[1]);
}
