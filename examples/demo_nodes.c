/* demo_nodes.c: the seed's question with small objects.
 *
 * f() builds a linked list of 10,000,000 nodes of 32 bytes (320 MB of
 * objects) and frees every node before it returns; then the program prints
 * a statistics line every 0.5 s ("tick", same format as demo2) with the RSS
 * from /proc/self/statm.
 *   - glibc: 32-byte blocks are carved from the main heap and freed into its
 *     bins; nothing is returned to the OS, RSS stays at the peak (~470 MB
 *     here: glibc spends 48 bytes per 32-byte node) until exit.
 *   - memscope: the pages become idle, and about scavenge_delay_ms (1 s by
 *     default) after the free the scavenger returns them: RSS falls to a
 *     few MB.  With MEMSCOPE=trace=1 the "scvg" lines show it.
 *
 * usage: demo_nodes [SECONDS [TICK_MS [NODES]]]
 *   SECONDS  how long to tick after the free (default 10), then exit
 *   TICK_MS  interval of the tick lines (default 500)
 *   NODES    number of nodes (default 10000000)
 *
 *   build/memscope run --trace -- build/examples/demo_nodes
 */
#include "demo_util.h"

struct node {
    struct node *next;
    int64_t value[3];
};
_Static_assert(sizeof(struct node) == 32, "node is 32 bytes");

static int64_t f(long n) {
    struct node *head = NULL;
    logf_go("> build %ld nodes.", n);
    for (long i = 0; i < n; i++) {
        struct node *x = malloc(sizeof *x);
        if (!x) abort();
        x->next = head;
        x->value[0] = i;
        head = x;
    }
    memstats_line("built");
    int64_t sum = 0;
    while (head) { /* free front to back */
        struct node *next = head->next;
        sum += head->value[0];
        free(head);
        head = next;
    }
    logf_go("< freed.");
    return sum;
}

int main(int argc, char **argv) {
    elapsed_s();
    double seconds = argc > 1 ? atof(argv[1]) : 10;
    double tick = (argc > 2 ? atof(argv[2]) : 500) / 1000.0;
    long n = argc > 3 ? atol(argv[3]) : 10 * 1000 * 1000;
    if (tick <= 0) tick = 0.5;
    logf_go("start.");
    say_who(argv[0]);
    memstats_line("start");
    int64_t sum = f(n);
    logf_go("done. (checksum %lld)", (long long)sum);
    memstats_line("freed");
    double t_free = elapsed_s();
    for (int k = 1; t_free + k * tick <= t_free + seconds + 1e-9; k++) {
        sleep_s(t_free + k * tick - elapsed_s());
        memstats_line("tick");
    }
    return 0;
}
