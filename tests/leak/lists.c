/* lists.c: threads move nodes between global linked lists while the
 * program exits, under MEMSCOPE=leaks=reachable.
 *
 * 16 lists of 5,000 nodes hang from a global array; each thread pops the
 * head of one list and pushes it on another, under the two lists' locks,
 * without pause, while main sleeps and then exits.  Nothing is ever lost.
 * A node in flight sits only in a register, and each move takes a node out
 * of a chain the mark may not have followed yet and puts it where it may
 * already have been: a mark that runs while the threads do misses whole
 * chains, often at several looks in a row (5 of 10 runs exited 23 when
 * only the copy of the roots stopped the threads).  The check at exit keeps
 * them stopped through the mark from the roots, as LeakSanitizer does, and
 * must report nothing (exit status 0).
 * Usage: lists [threads]   (run with libmemscope preloaded) */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#define NLISTS 16
#define NODES 5000

typedef struct node { struct node *next; long pad[3]; } node;
static node *head[NLISTS];
static pthread_mutex_t mu[NLISTS];

static void *mover(void *arg) {
    uint64_t x = 0x9E3779B97F4A7C15ull * ((uintptr_t)arg + 1);
    for (;;) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        unsigned a = x % NLISTS, b = (x >> 8) % NLISTS;
        if (a == b) continue;
        unsigned lo = a < b ? a : b, hi = a < b ? b : a; /* one lock order */
        pthread_mutex_lock(&mu[lo]);
        pthread_mutex_lock(&mu[hi]);
        node *n = head[a];
        if (n) head[a] = n->next, n->next = head[b], head[b] = n;
        pthread_mutex_unlock(&mu[hi]);
        pthread_mutex_unlock(&mu[lo]);
    }
    return NULL;
}

int main(int argc, char **argv) {
    int nt = argc > 1 ? atoi(argv[1]) : 3;
    for (int i = 0; i < NLISTS; i++) pthread_mutex_init(&mu[i], NULL);
    for (int i = 0; i < NLISTS * NODES; i++) {
        node *n = calloc(1, sizeof *n);
        if (!n) return 1;
        n->next = head[i % NLISTS], head[i % NLISTS] = n;
    }
    pthread_t t;
    for (uintptr_t i = 0; i < (uintptr_t)nt; i++) {
        pthread_create(&t, NULL, mover, (void *)i);
        pthread_detach(t);
    }
    struct timespec ts = {0, 200000000L};
    nanosleep(&ts, NULL);
    return 0;
}
