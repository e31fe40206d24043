/* fmath.c: the natural logarithm and exponential that sampling needs.
 *
 * The sampler draws each gap between sampled bytes as -log(u) * rate
 * (malloc.c: next_gap), and the heap profiler weighs a sample of size S as
 * 1 / (1 - exp(-S / rate)) (prof/sample.c).  Those two calls were all
 * memscope took from libm, and loading libm cost every process it was
 * preloaded into the resident pages the kernel maps around its faults, in
 * a program that does not use libm itself (bench/run.sh's fs-active, which
 * allocates almost nothing, peaked at 3.2 MiB with it and 2.5 without).
 * Go's runtime keeps its own approximation for the same draw (fastlog2).
 * These are plain argument reductions with short series, accurate to about
 * 1e-13 relative (tests/test_unit_math.c checks them against libm), far
 * below what a sampling estimate can notice.  Both are pure functions of a
 * double: no state, no locks, safe anywhere.
 */
#include "internal.h"

#include <string.h>

#define LN2 0.6931471805599453094

/* ms_log: log(x) for x > 0 (finite); -HUGE for x <= 0. */
double ms_log(double x) {
    if (!(x > 0)) return -0x1p1023;
    uint64_t b;
    memcpy(&b, &x, sizeof b);
    int e = (int)((b >> 52) & 0x7ff);
    if (e == 0) { /* subnormal: scale into the normal range first */
        x *= 0x1p54;
        memcpy(&b, &x, sizeof b);
        e = (int)((b >> 52) & 0x7ff) - 54;
    }
    e -= 1023;
    b = (b & ((1ull << 52) - 1)) | (1023ull << 52); /* m in [1, 2) */
    double m;
    memcpy(&m, &b, sizeof m);
    if (m > 1.4142135623730951) m *= 0.5, e++; /* m in [0.707, 1.414] */
    /* log(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.1716 */
    double s = (m - 1) / (m + 1), s2 = s * s, t = 0;
    /* the series' coefficients 1/19 .. 1/3 from a table: computed in the
     * loop, they were nine divisions a call, most of the draw of each
     * sample's gap (100 instructions of ms_log's, callgrind, by hand; a
     * division's latency each, in a chain) */
    static const double inv[] = {1.0 / 19, 1.0 / 17, 1.0 / 15, 1.0 / 13, 1.0 / 11, 1.0 / 9, 1.0 / 7, 1.0 / 5, 1.0 / 3};
    for (unsigned k = 0; k < sizeof inv / sizeof inv[0]; k++) t = (t + inv[k]) * s2;
    return 2 * s * (1 + t) + e * LN2;
}

/* ms_exp: exp(x); 0 below -745, +HUGE above 709. */
double ms_exp(double x) {
    if (x < -745) return 0;
    if (x > 709) return 0x1p1023;
    double kf = x / LN2;
    int k = (int)(kf < 0 ? kf - 0.5 : kf + 0.5);
    double r = x - k * LN2, sum = 1, term = 1; /* |r| <= ln2 / 2 */
    for (int i = 1; i <= 13; i++) {
        term *= r / i;
        sum += term;
    }
    /* sum * 2^k, in two steps so that 2^k itself never leaves the range */
    int k1 = k / 2, k2 = k - k1;
    uint64_t b1 = (uint64_t)(k1 + 1023) << 52, b2 = (uint64_t)(k2 + 1023) << 52;
    double p1, p2;
    memcpy(&p1, &b1, sizeof p1);
    memcpy(&p2, &b2, sizeof p2);
    return sum * p1 * p2;
}
