/* small_nodes.c — 10 million 32-byte linked-list nodes.
 *
 * Measures per-object space overhead and bulk allocation/free speed: the
 * program builds a singly linked list of `n` 32-byte nodes (8-byte next
 * pointer + 24 bytes payload), walks it once, then frees it front to back.
 * Peak RSS divided by n is the allocator's real cost of a 32-byte object
 * (header, size-class rounding, metadata); rss_end_kib shows how much of the
 * ~320 MiB payload is still resident right after everything was freed —
 * the "why does top still show the memory" question memscope exists to
 * answer.
 *
 * usage: small_nodes [n=10000000] [reps=1]
 */
#include "bench.h"

int main(int argc, char **argv)
{
    unsigned long long n = arg_ull(argc, argv, 1, 10000000ull);
    unsigned reps = (unsigned)arg_ull(argc, argv, 2, 1);
    unsigned long long sum = 0, built = 0;
    double t0 = now_s();

    for (unsigned rep = 0; rep < reps; rep++) {
        unsigned long long made;
        node *head = build_list(n, &made);
        built += made;
        for (node *x = head; x; x = x->next) sum += x->payload[0];
        while (head) {
            node *nx = head->next;
            free(head);
            head = nx;
        }
    }
    double secs = now_s() - t0;
    printf("RESULT workload=small-nodes n=%llu reps=%u built=%llu", n, reps, built);
    result_end(secs, sum);
    return 0;
}
