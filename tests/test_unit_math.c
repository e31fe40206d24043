/* test_unit_math: memscope's own log and exp (src/fmath.c) against libm.
 *
 * The sampler draws its gaps with ms_log and the profile weighs samples
 * with ms_exp; both replace libm so that preloading memscope does not load
 * it.  Checked over the ranges they are used on and well beyond: every
 * u = (k + 0.5) 2^-53 scale the sampler can draw (2^-54 .. 1), powers of
 * two and random values over the whole normal range, subnormals, and
 * exp over [-745, 709]; the relative error must stay below 1e-12.  Also
 * the edges: log of 1 is 0, log of 0 or a negative number is a huge
 * negative value rather than NaN, exp underflows to 0 and overflows to a
 * huge finite value.  Linked against the debug archive, with libm for the
 * reference.
 */
#include <math.h>

#include "internal.h"
#include "testhelper.h"

static double rel(double got, double want) {
    if (want == 0) return fabs(got);
    return fabs(got - want) / fabs(want);
}

int main(void) {
    CHECK_BODY("log-matches-libm") {
        double worst = 0, at = 0;
        uint64_t x = 0x9E3779B97F4A7C15ull;
        for (int i = 0; i < 2000000; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            /* the sampler's u, and values over the whole normal range */
            double u = i & 1 ? ((double)(x >> 11) + 0.5) * 0x1p-53 : ldexp((double)(x >> 11) * 0x1p-53 + 0.5, (int)(x % 2000) - 1000);
            double e = rel(ms_log(u), log(u));
            if (fabs(log(u)) < 1e-3) e = fabs(ms_log(u) - log(u)); /* near 1: absolute */
            if (e > worst) worst = e, at = u;
        }
        for (int k = -1074; k <= 1023; k++) {
            double u = ldexp(1, k), e = fabs(ms_log(u) - log(u)) / (k ? fabs(log(u)) : 1);
            if (e > worst) worst = e, at = u;
        }
        printf("[worst %.3g at %.17g] ", worst, at);
        result = CHECK_TRUE(worst < 1e-12) && CHECK_TRUE(ms_log(1.0) == 0) && CHECK_TRUE(ms_log(0) < -1e300) &&
                 CHECK_TRUE(ms_log(-1) < -1e300);
    }
    CHECK_BODY("exp-matches-libm") {
        double worst = 0, at = 0;
        for (double v = -745; v <= 709; v += 0.0137) {
            double want = exp(v);
            if (want < 0x1p-1022) continue; /* subnormal results: absolute below */
            double e = rel(ms_exp(v), want);
            if (e > worst) worst = e, at = v;
        }
        printf("[worst %.3g at %.6g] ", worst, at);
        result = CHECK_TRUE(worst < 1e-12) && CHECK_TRUE(ms_exp(0) == 1) && CHECK_TRUE(ms_exp(-800) == 0) &&
                 CHECK_TRUE(ms_exp(800) > 1e300) && CHECK_TRUE(fabs(ms_exp(-744) - exp(-744)) < 1e-320);
    }
    return print_test_summary();
}
