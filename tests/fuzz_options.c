/* fuzz_options.c: libFuzzer target on the MEMSCOPE parser (src/options.c),
 * built with src/log.c and run by tests/test_fuzz.sh under ASan and UBSan.
 *
 * The input, NUL-terminated, is parsed as a MEMSCOPE value exactly as the
 * library parses the environment at load time.  The sanitizers catch reads
 * past the text and undefined arithmetic (value units, ranges); the target
 * checks the parser's contract on top:
 *   - the return value is the number of warn() calls, every warning is one
 *     line (no newline, at most 511 bytes, printable ASCII only: the
 *     parser must escape what it quotes) that starts "memscope: MEMSCOPE";
 *   - every field ends in its documented range and the string fields stay
 *     NUL-terminated inside their arrays;
 *   - round trip: the parsed options written back as key=value text parse
 *     with no warning to the same options (so an accepted value means what
 *     it says: a unit that overflowed into a small number would fail here);
 *   - parsing is deterministic: the same text twice gives the same options.
 * Why a round trip and not a second parser: the table in options.c is the
 * only specification, and the round trip needs nothing but it.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int nwarn;

static void warn(const char *msg) {
    size_t n = strnlen(msg, 512);
    if (n >= 512) abort(); /* not terminated within the message buffer */
    if (strncmp(msg, "memscope: MEMSCOPE", 18) != 0) abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)msg[i] < 0x20 || (unsigned char)msg[i] >= 0x7f) abort();
    nwarn++;
}

static void check_ranges(const options_t *o) {
    if (o->scavenge_delay_ms < 0 || o->scavenge_delay_ms > 3600000) abort();
    if (o->profile_rate < 0 || o->profile_rate > ((int64_t)1 << 40)) abort();
    if (o->leaks < 0 || o->leaks > LEAKS_REACHABLE) abort();
    if (strnlen(o->heapprofile, sizeof o->heapprofile) >= sizeof o->heapprofile) abort();
    if (strnlen(o->http, sizeof o->http) >= sizeof o->http) abort();
}

/* field by field: memcmp would compare padding */
static int same(const options_t *x, const options_t *y) {
    return x->trace == y->trace && x->stats == y->stats && x->scavenge_delay_ms == y->scavenge_delay_ms &&
           x->profile_rate == y->profile_rate && strcmp(x->heapprofile, y->heapprofile) == 0 &&
           x->leaks == y->leaks && strcmp(x->http, y->http) == 0;
}

static const options_t defaults = {.scavenge_delay_ms = 1000, .profile_rate = 524288};

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;

    options_t a = defaults, b = defaults;
    nwarn = 0;
    int r = ms_options_parse(text, &a, warn);
    if (r != nwarn || r < 0) abort();
    check_ranges(&a);
    nwarn = 0;
    if (ms_options_parse(text, &b, warn) != r || !same(&a, &b)) abort();

    /* round trip: commas cannot occur in a parsed string value (they end
     * the item), so the written text has exactly one item per key */
    static const char *const leaks[] = {"0", "1", "exit", "reachable"}; /* LEAKS_* order */
    size_t cap = 2 * sizeof a + 256;
    char *back = malloc(cap);
    if (!back) abort();
    int n = snprintf(back, cap, "trace=%d,stats=%d,scavenge_delay_ms=%lld,profile_rate=%lld,heapprofile=%s,leaks=%s,http=%s",
                     a.trace, a.stats, (long long)a.scavenge_delay_ms, (long long)a.profile_rate, a.heapprofile,
                     leaks[a.leaks], a.http);
    if (n < 0 || (size_t)n >= cap) abort();
    options_t c = {.scavenge_delay_ms = 7, .profile_rate = 7, .leaks = 1};
    nwarn = 0;
    if (ms_options_parse(back, &c, warn) != 0 || !same(&a, &c)) {
        fprintf(stderr, "round trip failed: \"%s\" -> \"%s\"\n", text, back);
        abort();
    }
    free(back);
    free(text);
    return 0;
}
