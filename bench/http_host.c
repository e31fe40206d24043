/* http_host.c: the program bench/run_http.sh measures the endpoint in.
 *
 *   http_host stacks N SECONDS   builds N distinct call stacks (a binary
 *                                tree of two call sites, depth 17), one
 *                                live 64-byte block at each leaf, then
 *                                runs the pause probe for SECONDS
 *   http_host idle SECONDS       sleeps (the /metrics polling cost)
 *
 * The pause probe: one thread allocates and frees a 64-byte block in a
 * loop and records the longest gap between two iterations (ns); printed
 * at the end as "max_gap_ns N iterations M".  Run with profile_rate=1 so
 * every leaf block is a sampled stack.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *volatile sink;
static long leaves_left;

__attribute__((noinline)) static void grow(int depth, unsigned path);
__attribute__((noinline)) static void left(int depth, unsigned path) { grow(depth - 1, path << 1); __asm__ volatile(""); }
__attribute__((noinline)) static void right(int depth, unsigned path) { grow(depth - 1, path << 1 | 1); __asm__ volatile(""); }
__attribute__((noinline)) static void grow(int depth, unsigned path) {
    if (leaves_left <= 0) return;
    if (depth == 0) {
        sink = malloc(64); /* kept: one live sampled stack per leaf */
        leaves_left--;
        return;
    }
    left(depth, path);
    right(depth, path);
    __asm__ volatile("");
}

static atomic_bool stop;
static uint64_t max_gap, iters;
static void *probe(void *arg) {
    (void)arg;
    uint64_t last = now_ns();
    while (!atomic_load(&stop)) {
        void *p = malloc(64);
        *(volatile char *)p = 1;
        free(p);
        uint64_t t = now_ns();
        if (t - last > max_gap) max_gap = t - last;
        last = t;
        iters++;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int secs = atoi(argv[argc - 1]);
    if (strcmp(argv[1], "stacks") == 0) {
        leaves_left = atol(argv[2]);
        grow(17, 0);
        printf("built\n");
        fflush(stdout);
        pthread_t t;
        pthread_create(&t, NULL, probe, NULL);
        sleep((unsigned)secs);
        atomic_store(&stop, true);
        pthread_join(t, NULL);
        printf("max_gap_ns %llu iterations %llu\n", (unsigned long long)max_gap, (unsigned long long)iters);
    } else {
        printf("built\n");
        fflush(stdout);
        sleep((unsigned)secs);
    }
    return 0;
}
