/* dlstress.c: dlopen, dlclose and fork racing the heap profiler at
 * profile_rate=1 (tests/test_profile.sh).  Threads allocate constantly,
 * so every allocation captures a stack, while one thread loads and unloads
 * a library (the loader's own mallocs are sampled while it holds its
 * locks) and calls into it, and another forks children that allocate and
 * exit.  A deadlock shows as a timeout in the test; a bad stack or record
 * as a crash. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static atomic_int stop;

static void *churn(void *arg) {
    (void)arg;
    void *keep[64] = {0};
    for (unsigned i = 0; !atomic_load(&stop); i++) {
        free(keep[i % 64]);
        keep[i % 64] = malloc(16 + i % 3000);
    }
    for (int i = 0; i < 64; i++) free(keep[i]);
    return NULL;
}

static void *loader(void *arg) {
    for (int i = 0; i < 200; i++) {
        void *h = dlopen((const char *)arg, RTLD_NOW | RTLD_LOCAL);
        if (!h) abort();
        void *(*f)(size_t) = (void *(*)(size_t))dlsym(h, "dl_site");
        free(f(100 + i));
        dlclose(h);
    }
    return NULL;
}

static void *forker(void *arg) {
    (void)arg;
    for (int i = 0; i < 20; i++) {
        pid_t p = fork();
        if (p == 0) {
            for (int k = 0; k < 1000; k++) free(malloc(64 + k));
            _exit(0);
        }
        int st;
        if (p < 0 || waitpid(p, &st, 0) != p || !WIFEXITED(st) || WEXITSTATUS(st) != 0) abort();
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    pthread_t c[3], l, f;
    for (int i = 0; i < 3; i++) pthread_create(&c[i], NULL, churn, NULL);
    pthread_create(&l, NULL, loader, argv[1]);
    pthread_create(&f, NULL, forker, NULL);
    pthread_join(l, NULL);
    pthread_join(f, NULL);
    atomic_store(&stop, 1);
    for (int i = 0; i < 3; i++) pthread_join(c[i], NULL);
    if (write(1, "dlstress: done\n", 15) != 15) return 1;
    return 0;
}
