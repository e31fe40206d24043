/* prodcons.c — cross-thread producer/consumer.
 *
 * Measures the cost of freeing memory on a different thread than the one
 * that allocated it, in steady state: the main thread mallocs `items`
 * objects of random size 16..512 bytes, writes a tag into each, and pushes
 * the pointer through a bounded single-producer/single-consumer ring
 * (`qcap` entries); a consumer thread pops, reads the tag, and frees.  Every
 * free is therefore a remote free; allocators that funnel these through a
 * global lock, or that never return the memory to the producer's cache,
 * show it here as time or as RSS growth.
 *
 * The ring uses C11 acquire/release atomics; a side that finds the ring
 * full/empty spins briefly and then sched_yield()s, so the benchmark stays
 * fair on a 2-core machine.
 *
 * usage: prodcons [items=10000000] [qcap=4096] [seed=1]
 */
#include "bench.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

typedef struct {
    void **buf;
    size_t cap;                       /* power of two */
    _Alignas(64) atomic_size_t head;  /* next slot the consumer reads */
    _Alignas(64) atomic_size_t tail;  /* next slot the producer writes */
    _Alignas(64) unsigned long long items;
    unsigned long long sum;
} ring_t;

static void backoff(unsigned *spins)
{
    if (++*spins > 64) { sched_yield(); *spins = 0; }
}

static void *consumer(void *arg)
{
    ring_t *q = arg;
    unsigned long long sum = 0;
    size_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
    for (unsigned long long k = 0; k < q->items; k++) {
        unsigned spins = 0;
        while (atomic_load_explicit(&q->tail, memory_order_acquire) == h)
            backoff(&spins);
        unsigned char *p = q->buf[h & (q->cap - 1)];
        h++;
        atomic_store_explicit(&q->head, h, memory_order_release);
        if (p) { sum += p[0]; free(p); }
    }
    q->sum = sum;
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned long long items = arg_ull(argc, argv, 1, 10000000ull);
    size_t want = (size_t)arg_ull(argc, argv, 2, 4096);
    rng_t r;
    rng_seed(&r, arg_ull(argc, argv, 3, 1));

    ring_t q;
    memset(&q, 0, sizeof q);
    q.cap = 2;
    while (q.cap < want) q.cap <<= 1;
    q.buf = calloc(q.cap, sizeof *q.buf);
    q.items = items;
    atomic_init(&q.head, 0);
    atomic_init(&q.tail, 0);

    double t0 = now_s();
    pthread_t tid;
    int threaded = pthread_create(&tid, NULL, consumer, &q) == 0;
    if (!threaded) { printf("RESULT workload=prodcons error=pthread_create\n"); return 0; }

    size_t t = 0;
    for (unsigned long long k = 0; k < items; k++) {
        size_t n = rng_range(&r, 16, 512);
        unsigned char *p = malloc(n);
        if (p) { p[0] = (unsigned char)k; p[n - 1] = 0; }
        unsigned spins = 0;
        while (t - atomic_load_explicit(&q.head, memory_order_acquire) >= q.cap)
            backoff(&spins);
        q.buf[t & (q.cap - 1)] = p;
        t++;
        atomic_store_explicit(&q.tail, t, memory_order_release);
    }
    pthread_join(tid, NULL);
    double secs = now_s() - t0;
    free(q.buf);

    printf("RESULT workload=prodcons items=%llu qcap=%zu", items, q.cap);
    result_end(secs, q.sum);
    return 0;
}
