/* test_unit_churn: a list whose thread frees into it between refills takes
 * a quarter of a batch at a refill, and does not grow (tcache.c, "Churning
 * lists"); a stream of mallocs still takes whole batches and grows.
 *
 * One class of 512 bytes, in this thread's cache: a stream of three batches
 * grows the list; then 400 rounds each free ten live blocks at random and
 * allocate eleven, so that the live count keeps making new highs and the
 * list keeps running dry after many frees.  From the 100th round on, the
 * list and its spare must never hold more than what a quarter batch leaves
 * (a whole batch each time left up to 31 blocks cached).  Then a stream of
 * 32-byte blocks, whose refills at the list's limit also take a spare
 * chain: every refill must bring a whole chain, and a spare must come
 * with refill after refill (a spare swapped in, counted as frees, made
 * every other refill of such a stream a churning one: a quarter batch and
 * no spare).  Runs in the debug build.
 */
#include "internal.h"
#include "testhelper.h"

static void *live[8192];

/* in_cache: the blocks list l and its spare hold */
static uint32_t in_cache(const tclist_t *l) {
    uint32_t n = l->max - (uint32_t)l->room;
    for (void *p = l->spare; p; p = *(void **)p) n++;
    return n;
}

int main(void) {
    int c = ms_size_class(512);
    size_t size = ms_class_size[c];
    uint32_t b = ms_class_batch[c], nlive = 0;
    for (uint32_t i = 0; i < 3 * b; i++) live[nlive++] = malloc(size);
    tcache_t *tc = ms_tc;
    tclist_t *l = &tc->lists[c];
    CHECK("thread-has-a-cache", !tc->is_dummy);
    CHECK("stream-grows-the-list", l->max >= 2 * b);
    uint32_t max_before = l->max, most = 0;
    uint64_t rng = 88172645463325252ull;
    for (int r = 0; r < 400; r++) {
        for (int k = 0; k < 10; k++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            uint32_t i = (uint32_t)(rng % nlive);
            free(live[i]);
            live[i] = live[--nlive];
        }
        for (int k = 0; k < 11; k++) live[nlive++] = malloc(size);
        uint32_t n = in_cache(l);
        if (r >= 100 && n > most) most = n;
    }
    fprintf(stderr, "[churn: at most %u of 512 bytes cached, batch %u, limit %u -> %u] ", most, b, max_before, l->max);
    CHECK("churn-takes-a-quarter-batch", most <= (b + 3) / 4);
    CHECK("churn-does-not-grow", l->max == max_before);
    for (uint32_t i = 0; i < nlive; i++) free(live[i]);

    /* a stream of 32-byte blocks: every refill brings a whole chain, and
     * spares keep coming with them */
    int c32 = ms_size_class(32);
    tclist_t *l32 = &tc->lists[c32];
    uint32_t b32 = ms_class_batch[c32], len = 0, small = 0;
    int spares = 0;
    bool had = false;
    for (int i = 0; i < 8192; i++) {
        live[i] = malloc(32);
        uint32_t now = l32->max - (uint32_t)l32->room;
        if (now > len && now + 1 < b32) small++;
        len = now;
        bool has = l32->spare != NULL;
        if (has && !had) spares++;
        had = has;
    }
    fprintf(stderr, "[stream: %u short refills, %d spares over 8192 mallocs of 32 bytes] ", small, spares);
    CHECK("stream-refills-take-whole-chains", small == 0);
    CHECK("stream-refills-take-spares", spares >= 8);
    for (int i = 0; i < 8192; i++) free(live[i]);
    return print_test_summary();
}
