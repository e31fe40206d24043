/* test_unit_prof.c: the heap profiler's sampling statistics and encoder.
 *
 * Links the debug archive, so it sees the core's countdown and can put its
 * own recorder in place of the profiler's hook.
 *   - gaps: at rate R, with 16-byte blocks, the number K of allocations from
 *     one sampled allocation to the next must follow the law the countdown
 *     promises: P(K <= k) = 1 - exp(-16k/R) (exponential gaps in bytes).
 *     20,000 gaps are held against it with a Kolmogorov-Smirnov test at the
 *     0.1% level, their mean against 1/(1-exp(-16/R)) within 4 standard
 *     errors, and successive gaps must be uncorrelated (|r| < 4/sqrt(n));
 *   - rate 1 samples every allocation, rate 0 none;
 *   - the pprof encoder's bytes for a fixed snapshot equal the golden file
 *     tests/data/golden_profile.pb (MEMSCOPE_GOLDEN_UPDATE=1 rewrites it;
 *     tests/test_profile.sh has go tool pprof read that file).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "prof/prof.h"
#include "testhelper.h"

static uint64_t allocs_seen;
static uint64_t *sample_at;
static size_t nsample, cap_sample;

static uint32_t no_stack(const uintptr_t *fp) { (void)fp; return 0; }

static bool recorder(void *p, size_t size, uint32_t id) {
    (void)p, (void)size, (void)id;
    if (nsample < cap_sample) sample_at[nsample++] = allocs_seen;
    return false; /* recorded here only: the span stays unmarked */
}

/* run: n allocations of 16 bytes at rate r, recording which were sampled */
static void run(int64_t r, uint64_t n) {
    atomic_store(&ms_sample_rate, r);
    ms_malloc_rearm();
    nsample = 0;
    for (allocs_seen = 1; allocs_seen <= n; allocs_seen++) {
        void *volatile p = malloc(16); /* volatile: the pair must not be optimized away */
        free(p);
    }
}

int main(void) {
    free(malloc(1)); /* init */
    sample_at = calloc(1 << 20, sizeof *sample_at);
    cap_sample = 1 << 20;
    prof_hooks_t saved = ms_prof_hooks;
    ms_prof_hooks.sampled = recorder;
    ms_prof_hooks.stack = no_stack;

    CHECK_BODY("gaps-exponential") {
        const double R = 1024;
        run((int64_t)R, 1400000);
        size_t n = nsample - 1;
        double *k = calloc(n, sizeof *k), mean = 0;
        for (size_t i = 0; i < n; i++) k[i] = (double)(sample_at[i + 1] - sample_at[i]), mean += k[i];
        mean /= (double)n;
        /* KS against the discrete law, evaluated at the jumps */
        double kmax = 0;
        for (size_t i = 0; i < n; i++) kmax = k[i] > kmax ? k[i] : kmax;
        size_t *count = calloc((size_t)kmax + 2, sizeof *count);
        for (size_t i = 0; i < n; i++) count[(size_t)k[i]]++;
        double d = 0, cum = 0;
        for (size_t v = 1; v <= (size_t)kmax; v++) {
            double f_lo = 1 - exp(-16.0 * (double)(v - 1) / R), f_hi = 1 - exp(-16.0 * (double)v / R);
            double e_lo = cum / (double)n;
            cum += (double)count[v];
            double e_hi = cum / (double)n;
            d = fmax(d, fmax(fabs(e_hi - f_hi), fabs(e_lo - f_lo)));
        }
        double want = 1 / (1 - exp(-16.0 / R)), sd = sqrt(exp(-16.0 / R)) * want; /* geometric */
        double se = sd / sqrt((double)n);
        double sxy = 0, sxx = 0;
        for (size_t i = 0; i + 1 < n; i++) sxy += (k[i] - mean) * (k[i + 1] - mean);
        for (size_t i = 0; i < n; i++) sxx += (k[i] - mean) * (k[i] - mean);
        double r = sxy / sxx;
        fprintf(stderr, "[%zu gaps: KS D %.4f (limit %.4f), mean %.2f (want %.2f +- %.2f), lag-1 r %.4f] ", n, d,
                1.95 / sqrt((double)n), mean, want, 4 * se, r);
        CHECK_TRUE(n >= 20000);
        CHECK_TRUE(d < 1.95 / sqrt((double)n));
        CHECK_TRUE(fabs(mean - want) < 4 * se);
        CHECK_TRUE(fabs(r) < 4 / sqrt((double)n));
        free(count), free(k);
        result = true;
    }

    CHECK_BODY("rate-1-every-allocation") {
        run(1, 1000);
        result = nsample == 1000;
    }

    CHECK_BODY("rate-0-none") {
        run(0, 100000);
        result = nsample == 0;
    }
    ms_prof_hooks = saved;
    atomic_store(&ms_sample_rate, 524288);
    ms_malloc_rearm();

    CHECK_BODY("pprof-golden-bytes") {
        static uintptr_t s1[] = {0x401001, 0x402001, 0x403001}, s2[] = {0x401001, 0x404001};
        prof_rec_t recs[2] = {
            {.pcs = s1, .npcs = 3,
             .now = {.alloc_objs = 10, .alloc_bytes = 10240, .free_objs = 4, .free_bytes = 4096,
                     .alloc_objs_w = 10, .alloc_bytes_w = 10240, .free_objs_w = 4, .free_bytes_w = 4096},
             .peak = {.alloc_objs = 8, .alloc_bytes = 8192, .alloc_objs_w = 8, .alloc_bytes_w = 8192}},
            {.pcs = s2, .npcs = 2,
             .now = {.alloc_objs = 3, .alloc_bytes = 3 << 20, .alloc_objs_w = 3.5, .alloc_bytes_w = 3.5 * (1 << 20)},
             .peak = {0}},
        };
        prof_snap_t snap = {.recs = recs, .nrecs = 2, .rate = 524288, .time_ns = 1795623491589439041ull,
                            .peak_bytes = 8192};
        char path[] = "/tmp/memscope-golden-XXXXXX";
        int fd = mkstemp(path);
        CHECK_TRUE(fd >= 0 && ms_prof_encode(fd, &snap, PROF_HEAP, NULL, false) == 0);
        off_t n = lseek(fd, 0, SEEK_END);
        unsigned char got[4096], want[4096];
        CHECK_TRUE(n > 0 && n < (off_t)sizeof got && pread(fd, got, (size_t)n, 0) == n);
        close(fd);
        unlink(path);
        const char *golden = "tests/data/golden_profile.pb";
        if (getenv("MEMSCOPE_GOLDEN_UPDATE")) {
            FILE *f = fopen(golden, "wb");
            fwrite(got, 1, (size_t)n, f);
            fclose(f);
        }
        FILE *f = fopen(golden, "rb");
        size_t m = f ? fread(want, 1, sizeof want, f) : 0;
        if (f) fclose(f);
        CHECK_TRUE(m == (size_t)n && memcmp(got, want, m) == 0);
        result = true;
    }
    return print_test_summary();
}
