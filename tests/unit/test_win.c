/* Unit tests for core/win.c: every statistic against a naive computation
 * on random series, ring wrap-around and resize, counter resets, quantiles,
 * edge cases, and the stat names. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "win.h"

#define EPOCH_NS 1700000000000000000ll
#define S_NS 1000000000ll

/* ---------------------------------------------------------------- helpers */

/* splitmix64: a seeded PRNG so that a failure reproduces. */
static uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t n)
{
    return rng_next() % n;
}

static double rng_unit(void)
{
    return (double)(rng_next() >> 11) / 9007199254740992.0;
}

static void assert_close(double got, double want, double tol, const char *what)
{
    if (isnan(want) && isnan(got)) {
        return;
    }
    if (!(fabs(got - want) <= tol)) {
        fail_msg("%s: got %.17g, want %.17g (tolerance %g)", what, got, want,
                 tol);
    }
}

static double stat_of(const struct win *w, int kind, double q, int64_t now,
                      int64_t span, double *scratch, int *rc)
{
    struct win_stat st = {kind, q};
    double out = -12345.0;

    *rc = win_stat(w, st, now, span, scratch, &out);
    return out;
}

/* Expect VIGIL_ENOENT for a statistic. */
static void assert_enoent(const struct win *w, int kind, double q, int64_t now,
                          int64_t span, double *scratch)
{
    int rc;

    stat_of(w, kind, q, now, span, scratch, &rc);
    assert_int_equal(rc, VIGIL_ENOENT);
}

static double stat_ok(const struct win *w, int kind, double q, int64_t now,
                      int64_t span, double *scratch)
{
    int rc;
    double v = stat_of(w, kind, q, now, span, scratch, &rc);

    assert_int_equal(rc, 0);
    return v;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* numpy.quantile(x, q) with the default linear method, on sorted x. */
static double naive_quantile(const double *sorted, size_t n, double q)
{
    double h = (double)(n - 1) * q;
    size_t lo = (size_t)floor(h);
    size_t hi = lo + 1 < n ? lo + 1 : lo;

    return sorted[lo] + (h - (double)lo) * (sorted[hi] - sorted[lo]);
}

/* ------------------------------------------------ naive reference checks */

/*
 * Compare every statistic of w with a direct computation over sel[0..n),
 * the samples expected in the span (oldest first).
 */
static void check_all(const struct win *w, const struct win_sample *sel,
                      size_t n, int64_t now, int64_t span, double *scratch)
{
    double sum = 0.0, mn = INFINITY, mx = -INFINITY, scale = 1.0;
    double *sorted;
    int rc;

    for (size_t i = 0; i < n; i++) {
        sum += sel[i].v;
        mn = sel[i].v < mn ? sel[i].v : mn;
        mx = sel[i].v > mx ? sel[i].v : mx;
        scale = fmax(scale, fabs(sel[i].v));
    }
    assert_close(stat_ok(w, WIN_COUNT, 0, now, span, scratch), (double)n, 0,
                 "count");
    assert_close(stat_ok(w, WIN_SUM, 0, now, span, scratch), sum,
                 1e-12 * scale * (double)(n + 1), "sum");
    if (n == 0) {
        for (int k = WIN_LAST; k <= WIN_QUANTILE; k++) {
            if (k != WIN_COUNT && k != WIN_SUM) {
                assert_enoent(w, k, 0.5, now, span, scratch);
            }
        }
        return;
    }
    assert_close(stat_ok(w, WIN_LAST, 0, now, span, scratch), sel[n - 1].v, 0,
                 "last");
    assert_close(stat_ok(w, WIN_AVG, 0, now, span, scratch), sum / (double)n,
                 1e-12 * scale, "avg");
    assert_close(stat_ok(w, WIN_MIN, 0, now, span, scratch), mn, 0, "min");
    assert_close(stat_ok(w, WIN_MAX, 0, now, span, scratch), mx, 0, "max");

    /* delta, rate, slope need two distinct times */
    if (sel[n - 1].ts == sel[0].ts) {
        assert_enoent(w, WIN_DELTA, 0, now, span, scratch);
        assert_enoent(w, WIN_RATE, 0, now, span, scratch);
        assert_enoent(w, WIN_SLOPE, 0, now, span, scratch);
    } else {
        double dt = (double)(sel[n - 1].ts - sel[0].ts) / 1e9;
        double inc = sel[n - 1].v - sel[0].v;
        long double sx = 0, sy = 0, sxy = 0, sxx = 0, slope;

        assert_close(stat_ok(w, WIN_DELTA, 0, now, span, scratch),
                     sel[n - 1].v - sel[0].v, 1e-12 * scale, "delta");
        /* Prometheus' form: last - first, plus the value before each
         * reset. */
        for (size_t i = 1; i < n; i++) {
            if (sel[i].v < sel[i - 1].v) {
                inc += sel[i - 1].v;
            }
        }
        assert_close(stat_ok(w, WIN_RATE, 0, now, span, scratch), inc / dt,
                     1e-9 * scale * (double)n / dt, "rate");
        /* Textbook least squares in long double, x relative to the first
         * sample (exact), no centring. */
        for (size_t i = 0; i < n; i++) {
            long double x = (long double)(sel[i].ts - sel[0].ts) / 1e9L;

            sx += x;
            sy += sel[i].v;
            sxy += x * sel[i].v;
            sxx += x * x;
        }
        slope =
            ((long double)n * sxy - sx * sy) / ((long double)n * sxx - sx * sx);
        assert_close(stat_ok(w, WIN_SLOPE, 0, now, span, scratch),
                     (double)slope, 1e-7 * scale * (double)n / dt, "slope");
    }

    sorted = malloc(n * sizeof(*sorted));
    assert_non_null(sorted);
    for (size_t i = 0; i < n; i++) {
        sorted[i] = sel[i].v;
    }
    qsort(sorted, n, sizeof(*sorted), cmp_double);
    {
        const double qs[] = {0.0,  0.01, 0.25, 0.5,        0.9,
                             0.95, 0.99, 1.0,  rng_unit(), rng_unit()};

        for (size_t k = 0; k < sizeof(qs) / sizeof(qs[0]); k++) {
            double got =
                stat_of(w, WIN_QUANTILE, qs[k], now, span, scratch, &rc);

            assert_int_equal(rc, 0);
            assert_close(got, naive_quantile(sorted, n, qs[k]), 1e-12 * scale,
                         "quantile");
        }
    }
    free(sorted);
}

/*
 * Random series: for many capacities and lengths, push samples with random
 * gaps (some equal timestamps) near the epoch, then compare every
 * statistic for many spans and evaluation times. kind selects the values:
 * 0 noise, 1 few distinct values (quantile ties), 2 a counter with resets,
 * 3 a large offset plus a trend.
 */
static void random_case(uint32_t cap, size_t pushes, int kind)
{
    struct win w;
    struct win_sample *hist = malloc((pushes + 1) * sizeof(*hist));
    double *scratch = malloc(cap * sizeof(*scratch));
    int64_t ts = EPOCH_NS + (int64_t)rng_below(S_NS);
    double counter = 0;
    size_t held, first;

    assert_non_null(hist);
    assert_non_null(scratch);
    assert_int_equal(win_init(&w, cap), 0);
    for (size_t i = 0; i < pushes; i++) {
        double v;

        ts += rng_below(10) == 0 ? 0 : (int64_t)rng_below(2 * S_NS) + 1;
        switch (kind) {
        case 0:
            v = (rng_unit() - 0.5) * 2000.0;
            break;
        case 1:
            v = (double)rng_below(4);
            break;
        case 2:
            counter = rng_below(20) == 0 ? (double)rng_below(5)
                                         : counter + (double)rng_below(100);
            v = counter;
            break;
        default:
            v = 1e6 + 3.5 * (double)(ts - EPOCH_NS) / 1e9 + rng_unit();
            break;
        }
        hist[i].ts = ts;
        hist[i].v = v;
        win_push(&w, ts, v);
    }
    held = pushes < cap ? pushes : cap;
    first = pushes - held;
    assert_int_equal(w.len, held);

    for (int trial = 0; trial < 12; trial++) {
        int64_t span, now, lo;
        size_t a = first, b = first + held;

        switch (trial) {
        case 0:
            span = 0;
            break;
        case 1:
            span = -1;
            break;
        case 2:
            span = INT64_MAX; /* everything, and no overflow at now - span */
            break;
        case 3:
            span = 1;
            break;
        default:
            span = (int64_t)rng_below((uint64_t)(held + 2) * 2 * S_NS) + 1;
            break;
        }
        now = pushes > 0 ? hist[pushes - 1].ts : ts;
        if (trial >= 6 && pushes > 0) {
            /* Evaluate in the past or the future. */
            now = trial % 2 ? now + (int64_t)rng_below(3 * S_NS)
                            : now - (int64_t)rng_below(4 * S_NS);
        }
        if (span > 0) {
            lo = now < INT64_MIN + span ? INT64_MIN : now - span;
            while (a < b && hist[a].ts < lo) {
                a++;
            }
            while (b > a && hist[b - 1].ts > now) {
                b--;
            }
        }
        check_all(&w, hist + a, b - a, now, span, scratch);
    }
    win_fini(&w);
    free(hist);
    free(scratch);
}

static void test_random_series(void **state)
{
    const uint32_t caps[] = {1, 2, 3, 4, 7, 16, 61, 100, 1000};

    (void)state;
    rng_state = 20261126;
    for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
        uint32_t cap = caps[c];
        const size_t lens[] = {
            0,   1,       2,           cap - 1,
            cap, cap + 1, 2 * cap + 3, rng_below(3 * cap + 1)};

        for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
            for (int kind = 0; kind < 4; kind++) {
                random_case(cap, lens[l], kind);
            }
        }
    }
}

/*
 * Out-of-order timestamps, also across the point where the ring wraps:
 * the samples seen must be exactly those of the documented walk, done
 * here on a plain array of the held samples, oldest first.
 */
static void test_out_of_order_random(void **state)
{
    struct win_sample held[32];
    double scratch[32];

    (void)state;
    rng_state = 99;
    for (int iter = 0; iter < 20000; iter++) {
        uint32_t cap = (uint32_t)rng_below(12) + 1;
        size_t pushes = rng_below(3 * cap + 1), len, a, b;
        int64_t now = (int64_t)rng_below(40), span, lo;
        struct win w;

        assert_int_equal(win_init(&w, cap), 0);
        for (size_t i = 0; i < pushes; i++) {
            int64_t ts = (int64_t)rng_below(40);
            double v = (double)rng_below(1000);

            win_push(&w, ts, v);
            /* Keep the newest cap samples, oldest first. */
            if (i >= cap) {
                memmove(held, held + 1, (cap - 1) * sizeof(held[0]));
            }
            held[i < cap ? i : cap - 1] = (struct win_sample){ts, v};
        }
        len = pushes < cap ? pushes : cap;
        span = (int64_t)rng_below(30) + 1;
        lo = now - span;
        b = len;
        while (b > 0 && held[b - 1].ts > now) {
            b--;
        }
        a = b;
        while (a > 0 && held[a - 1].ts >= lo && held[a - 1].ts <= now) {
            a--;
        }
        assert_true(stat_ok(&w, WIN_COUNT, 0, now, span, scratch) ==
                    (double)(b - a));
        if (b > a) {
            double sum = 0, mn = INFINITY;

            for (size_t i = a; i < b; i++) {
                sum += held[i].v;
                mn = held[i].v < mn ? held[i].v : mn;
            }
            assert_true(stat_ok(&w, WIN_SUM, 0, now, span, scratch) == sum);
            assert_true(stat_ok(&w, WIN_MIN, 0, now, span, scratch) == mn);
            assert_true(stat_ok(&w, WIN_LAST, 0, now, span, scratch) ==
                        held[b - 1].v);
            if (held[b - 1].ts != held[a].ts) {
                assert_true(stat_ok(&w, WIN_DELTA, 0, now, span, scratch) ==
                            held[b - 1].v - held[a].v);
            }
        }
        win_fini(&w);
    }
}

/* -------------------------------------------------------- fixed examples */

static void test_empty_and_single(void **state)
{
    struct win w;
    double scratch[4];

    (void)state;
    assert_int_equal(win_init(&w, 4), 0);
    assert_null(win_last(&w));
    for (int k = WIN_LAST; k <= WIN_QUANTILE; k++) {
        if (k == WIN_COUNT || k == WIN_SUM) {
            assert_true(stat_ok(&w, k, 0, 100, 0, scratch) == 0.0);
        } else {
            assert_enoent(&w, k, 0.5, 100, 0, scratch);
            assert_enoent(&w, k, 0.5, 100, 10, scratch);
        }
    }

    win_push(&w, 100, 7.25);
    assert_non_null(win_last(&w));
    assert_int_equal(win_last(&w)->ts, 100);
    assert_true(win_last(&w)->v == 7.25);
    for (int k = WIN_LAST; k <= WIN_MAX; k++) {
        assert_true(stat_ok(&w, k, 0, 100, 0, scratch) == 7.25);
    }
    assert_true(stat_ok(&w, WIN_SUM, 0, 100, 0, scratch) == 7.25);
    assert_true(stat_ok(&w, WIN_COUNT, 0, 100, 0, scratch) == 1.0);
    assert_true(stat_ok(&w, WIN_QUANTILE, 0.0, 100, 0, scratch) == 7.25);
    assert_true(stat_ok(&w, WIN_QUANTILE, 0.95, 100, 0, scratch) == 7.25);
    assert_true(stat_ok(&w, WIN_QUANTILE, 1.0, 100, 0, scratch) == 7.25);
    assert_enoent(&w, WIN_DELTA, 0, 100, 0, scratch);
    assert_enoent(&w, WIN_RATE, 0, 100, 0, scratch);
    assert_enoent(&w, WIN_SLOPE, 0, 100, 0, scratch);

    /* A second sample at the same time: still no duration. */
    win_push(&w, 100, 8.25);
    assert_true(stat_ok(&w, WIN_AVG, 0, 100, 0, scratch) == 7.75);
    assert_enoent(&w, WIN_DELTA, 0, 100, 0, scratch);
    assert_enoent(&w, WIN_RATE, 0, 100, 0, scratch);
    assert_enoent(&w, WIN_SLOPE, 0, 100, 0, scratch);

    /* A span that holds nothing. */
    assert_true(stat_ok(&w, WIN_COUNT, 0, 1000, 10, scratch) == 0.0);
    assert_true(stat_ok(&w, WIN_SUM, 0, 1000, 10, scratch) == 0.0);
    assert_enoent(&w, WIN_AVG, 0, 1000, 10, scratch);
    assert_enoent(&w, WIN_LAST, 0, 50, 10, scratch);
    win_fini(&w);
    win_fini(&w); /* twice is fine: fini leaves a zeroed struct */
}

static void test_span_bounds(void **state)
{
    struct win w;
    double scratch[8];

    (void)state;
    assert_int_equal(win_init(&w, 8), 0);
    for (int i = 1; i <= 5; i++) {
        win_push(&w, i * 10, i);
    }
    /* [20, 40]: both ends inclusive, 50 is after now. */
    assert_true(stat_ok(&w, WIN_COUNT, 0, 40, 20, scratch) == 3.0);
    assert_true(stat_ok(&w, WIN_SUM, 0, 40, 20, scratch) == 9.0);
    assert_true(stat_ok(&w, WIN_LAST, 0, 40, 20, scratch) == 4.0);
    /* [21, 40] */
    assert_true(stat_ok(&w, WIN_COUNT, 0, 40, 19, scratch) == 2.0);
    /* Whole ring ignores now. */
    assert_true(stat_ok(&w, WIN_COUNT, 0, 0, 0, scratch) == 5.0);

    /* An out-of-order sample only shortens what is seen: the walk from the
     * newest stops at 5, before reaching 40. */
    win_push(&w, 5, 100);
    win_push(&w, 60, 6);
    assert_true(stat_ok(&w, WIN_COUNT, 0, 60, 20, scratch) == 1.0);
    assert_true(stat_ok(&w, WIN_COUNT, 0, 60, 55, scratch) == 7.0);
    /* Evaluated at 55, the newest (60) is skipped but 5 still stops the
     * walk; at 7, only 5 is seen: 50 after it is later than now. */
    assert_true(stat_ok(&w, WIN_COUNT, 0, 55, 20, scratch) == 0.0);
    assert_true(stat_ok(&w, WIN_COUNT, 0, 7, 100, scratch) == 1.0);
    assert_true(stat_ok(&w, WIN_LAST, 0, 7, 100, scratch) == 100.0);
    win_fini(&w);
}

static void test_wrap_and_resize(void **state)
{
    struct win w;
    double scratch[16];

    (void)state;
    assert_int_equal(win_init(&w, 0), VIGIL_EINVAL);
    assert_int_equal(win_init(&w, 4), 0);
    for (int i = 1; i <= 10; i++) {
        win_push(&w, i, i);
    }
    assert_int_equal(w.len, 4);
    assert_true(stat_ok(&w, WIN_COUNT, 0, 10, 0, scratch) == 4.0);
    assert_true(stat_ok(&w, WIN_MIN, 0, 10, 0, scratch) == 7.0);
    assert_true(stat_ok(&w, WIN_MAX, 0, 10, 0, scratch) == 10.0);
    assert_true(stat_ok(&w, WIN_SUM, 0, 10, 0, scratch) == 34.0);
    assert_true(stat_ok(&w, WIN_DELTA, 0, 10, 0, scratch) == 3.0);
    assert_true(win_last(&w)->v == 10.0);

    /* Grow: everything kept, in order, and new samples append. */
    assert_int_equal(win_resize(&w, 8), 0);
    assert_int_equal(w.cap, 8);
    assert_int_equal(w.len, 4);
    assert_true(stat_ok(&w, WIN_MIN, 0, 10, 0, scratch) == 7.0);
    assert_true(win_last(&w)->v == 10.0);
    for (int i = 11; i <= 15; i++) {
        win_push(&w, i, i);
    }
    assert_int_equal(w.len, 8);
    assert_true(stat_ok(&w, WIN_MIN, 0, 15, 0, scratch) == 8.0);
    assert_true(stat_ok(&w, WIN_DELTA, 0, 15, 0, scratch) == 7.0);

    /* Shrink: the newest survive. */
    assert_int_equal(win_resize(&w, 3), 0);
    assert_int_equal(w.len, 3);
    assert_true(stat_ok(&w, WIN_MIN, 0, 15, 0, scratch) == 13.0);
    assert_true(stat_ok(&w, WIN_SUM, 0, 15, 0, scratch) == 42.0);
    win_push(&w, 16, 16);
    assert_true(stat_ok(&w, WIN_SUM, 0, 16, 0, scratch) == 45.0);
    assert_true(win_last(&w)->v == 16.0);
    assert_int_equal(win_resize(&w, 0), VIGIL_EINVAL);
    assert_int_equal(w.cap, 3);
    win_fini(&w);
}

/* Random pushes and resizes against a plain array of everything pushed. */
static void test_resize_random(void **state)
{
    struct win w;
    double scratch[64];
    double hist[4000];
    size_t n = 0, held = 0;

    (void)state;
    rng_state = 7;
    assert_int_equal(win_init(&w, 5), 0);
    for (int op = 0; op < 4000; op++) {
        if (rng_below(8) == 0) {
            uint32_t cap = (uint32_t)rng_below(64) + 1;

            assert_int_equal(win_resize(&w, cap), 0);
            held = held < cap ? held : cap;
        } else {
            hist[n] = (double)n;
            win_push(&w, (int64_t)n, hist[n]);
            n++;
            held = held < w.cap ? held + 1 : held;
        }
        assert_int_equal(w.len, held);
        if (held > 0) {
            /* Exactly the newest `held` pushes, in order. */
            assert_true(win_last(&w)->v == hist[n - 1]);
            assert_true(stat_ok(&w, WIN_MIN, 0, 0, 0, scratch) ==
                        hist[n - held]);
            if (held > 1) {
                assert_true(stat_ok(&w, WIN_DELTA, 0, 0, 0, scratch) ==
                            hist[n - 1] - hist[n - held]);
            }
            assert_true(stat_ok(&w, WIN_SUM, 0, 0, 0, scratch) ==
                        (double)held * (hist[n - held] + hist[n - 1]) / 2);
        }
    }
    win_fini(&w);
}

static void test_rate_counter_reset(void **state)
{
    struct win w;
    const double v[] = {0, 10, 20, 5, 15};
    double scratch[8];

    (void)state;
    assert_int_equal(win_init(&w, 8), 0);
    for (int i = 0; i < 5; i++) {
        win_push(&w, EPOCH_NS + i * S_NS, v[i]);
    }
    /* 10 + 10 + 5 (the reset counts from zero) + 10 over 4 s */
    assert_close(stat_ok(&w, WIN_RATE, 0, EPOCH_NS + 4 * S_NS, 0, scratch),
                 8.75, 1e-12, "rate");
    assert_close(stat_ok(&w, WIN_DELTA, 0, EPOCH_NS + 4 * S_NS, 0, scratch),
                 15.0, 0, "delta");
    /* Over the last 1 s only: 5 -> 15 */
    assert_close(stat_ok(&w, WIN_RATE, 0, EPOCH_NS + 4 * S_NS, S_NS, scratch),
                 10.0, 1e-12, "rate 1s");
    /* Over the last 2 s: 20 -> 5 (reset) -> 15 = 5 + 10 over 2 s */
    assert_close(
        stat_ok(&w, WIN_RATE, 0, EPOCH_NS + 4 * S_NS, 2 * S_NS, scratch), 7.5,
        1e-12, "rate 2s");
    win_fini(&w);
}

static void test_slope_precision(void **state)
{
    struct win w;
    double scratch[1];

    (void)state;
    /* v = 2 t + 1e6 with t in seconds, 1 ms apart, at epoch nanoseconds:
     * uncentred sums of squares would lose every digit here. */
    assert_int_equal(win_init(&w, 1000), 0);
    for (int i = 0; i < 1000; i++) {
        win_push(&w, EPOCH_NS + i * 1000000ll, 1e6 + 2.0 * i / 1000.0);
    }
    assert_close(stat_ok(&w, WIN_SLOPE, 0, EPOCH_NS + S_NS, 0, scratch), 2.0,
                 1e-6, "slope");
    /* Decreasing, over a span */
    win_fini(&w);
    assert_int_equal(win_init(&w, 10), 0);
    for (int i = 0; i < 10; i++) {
        win_push(&w, EPOCH_NS + i * S_NS, 50.0 - 0.5 * i);
    }
    assert_close(
        stat_ok(&w, WIN_SLOPE, 0, EPOCH_NS + 9 * S_NS, 3 * S_NS, scratch), -0.5,
        1e-12, "slope span");
    win_fini(&w);
}

static void test_quantile_known(void **state)
{
    struct win w;
    double scratch[16];
    struct win_stat st = {WIN_QUANTILE, 0.5};
    double out;

    (void)state;
    assert_int_equal(win_init(&w, 16), 0);
    /* numpy.quantile(range(1, 11), 0.95) == 9.55, pushed shuffled */
    {
        const double v[] = {7, 3, 10, 1, 9, 2, 8, 4, 6, 5};

        for (int i = 0; i < 10; i++) {
            win_push(&w, i, v[i]);
        }
    }
    assert_close(stat_ok(&w, WIN_QUANTILE, 0.95, 9, 0, scratch), 9.55, 1e-12,
                 "p95");
    assert_close(stat_ok(&w, WIN_QUANTILE, 0.5, 9, 0, scratch), 5.5, 1e-12,
                 "p50");
    assert_close(stat_ok(&w, WIN_QUANTILE, 0.25, 9, 0, scratch), 3.25, 1e-12,
                 "p25");
    assert_close(stat_ok(&w, WIN_QUANTILE, 0.0, 9, 0, scratch), 1.0, 0, "p0");
    assert_close(stat_ok(&w, WIN_QUANTILE, 1.0, 9, 0, scratch), 10.0, 0,
                 "p100");
    /* The statistic does not reorder the window. */
    assert_true(win_last(&w)->v == 5.0);
    assert_true(stat_ok(&w, WIN_LAST, 0, 9, 0, scratch) == 5.0);

    /* Bad q or missing scratch */
    st.q = 1.5;
    assert_int_equal(win_stat(&w, st, 9, 0, scratch, &out), VIGIL_EINVAL);
    st.q = -0.1;
    assert_int_equal(win_stat(&w, st, 9, 0, scratch, &out), VIGIL_EINVAL);
    st.q = NAN;
    assert_int_equal(win_stat(&w, st, 9, 0, scratch, &out), VIGIL_EINVAL);
    st.q = 0.5;
    assert_int_equal(win_stat(&w, st, 9, 0, NULL, &out), VIGIL_EINVAL);
    st.kind = 0;
    assert_int_equal(win_stat(&w, st, 9, 0, scratch, &out), VIGIL_EINVAL);
    st.kind = WIN_QUANTILE + 1;
    assert_int_equal(win_stat(&w, st, 9, 0, scratch, &out), VIGIL_EINVAL);

    /* NaN makes the statistics NaN rather than a value that depends on
     * where the NaN sits. */
    win_push(&w, 10, NAN);
    win_push(&w, 11, 1.0);
    assert_true(isnan(stat_ok(&w, WIN_QUANTILE, 0.5, 11, 0, scratch)));
    assert_true(isnan(stat_ok(&w, WIN_AVG, 0, 11, 0, scratch)));
    assert_true(isnan(stat_ok(&w, WIN_MIN, 0, 11, 0, scratch)));
    assert_true(isnan(stat_ok(&w, WIN_MAX, 0, 11, 0, scratch)));
    win_fini(&w);
}

/* Orders that defeat a naive pivot choice: sorted, reversed, all equal,
 * organ pipe. Selection must still match a sort. */
static void test_quantile_patterns(void **state)
{
    enum { N = 1001 };
    struct win w;
    double *scratch = malloc(N * sizeof(*scratch));
    double sorted[N];

    (void)state;
    assert_non_null(scratch);
    for (int pattern = 0; pattern < 5; pattern++) {
        assert_int_equal(win_init(&w, N), 0);
        for (int i = 0; i < N; i++) {
            double v;

            switch (pattern) {
            case 0:
                v = i;
                break;
            case 1:
                v = N - i;
                break;
            case 2:
                v = 42;
                break;
            case 3:
                v = i < N / 2 ? i : N - i;
                break;
            default:
                v = i % 2 ? -i : i;
                break;
            }
            sorted[i] = v;
            win_push(&w, i, v);
        }
        qsort(sorted, N, sizeof(double), cmp_double);
        for (int p = 0; p <= 100; p += 5) {
            assert_close(stat_ok(&w, WIN_QUANTILE, p / 100.0, N, 0, scratch),
                         naive_quantile(sorted, N, p / 100.0), 1e-9,
                         "pattern quantile");
        }
        win_fini(&w);
    }
    free(scratch);
}

static void test_stat_parse_and_name(void **state)
{
    const struct {
        const char *text;
        int kind;
        double q;
        const char *name;
    } ok[] = {
        {"last", WIN_LAST, 0, "last"},
        {"avg", WIN_AVG, 0, "avg"},
        {"min", WIN_MIN, 0, "min"},
        {"max", WIN_MAX, 0, "max"},
        {"sum", WIN_SUM, 0, "sum"},
        {"count", WIN_COUNT, 0, "count"},
        {"delta", WIN_DELTA, 0, "delta"},
        {"rate", WIN_RATE, 0, "rate"},
        {"slope", WIN_SLOPE, 0, "slope"},
        {"p95", WIN_QUANTILE, 0.95, "p95"},
        {"p99.9", WIN_QUANTILE, 0.999, "p99.9"},
        {"p0", WIN_QUANTILE, 0.0, "p0"},
        {"p100", WIN_QUANTILE, 1.0, "p100"},
        {"p50", WIN_QUANTILE, 0.5, "p50"},
        {"median", WIN_QUANTILE, 0.5, "p50"},
        {"p05", WIN_QUANTILE, 0.05, "p5"},
    };
    const char *bad[] = {"",     "p",   "p.5",  "p5.",    "p101",    "p-1",
                         "p 5",  "P95", "avgx", "p1e1",   "pinf",    "AVG",
                         " avg", "p9x", "p+5",  "p100.1", "quantile"};
    struct win_stat st;
    char buf[32];

    (void)state;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        struct win_stat back;

        assert_int_equal(win_stat_parse(ok[i].text, &st), 0);
        assert_int_equal(st.kind, ok[i].kind);
        if (ok[i].kind == WIN_QUANTILE) {
            assert_close(st.q, ok[i].q, 1e-15, ok[i].text);
        }
        assert_string_equal(win_stat_name(st, buf, sizeof(buf)), ok[i].name);
        assert_int_equal(win_stat_parse(buf, &back), 0);
        assert_int_equal(back.kind, st.kind);
        assert_close(back.q, st.q, 1e-15, "round trip");
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (win_stat_parse(bad[i], &st) != VIGIL_EINVAL) {
            fail_msg("'%s' parsed", bad[i]);
        }
    }
    st.kind = WIN_QUANTILE;
    st.q = 0.95;
    assert_string_equal(win_stat_name(st, buf, 3), "p9");
    assert_string_equal(win_stat_name(st, buf, 0), "");
    st.kind = 99;
    assert_string_equal(win_stat_name(st, buf, sizeof(buf)), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_series),
        cmocka_unit_test(test_out_of_order_random),
        cmocka_unit_test(test_empty_and_single),
        cmocka_unit_test(test_span_bounds),
        cmocka_unit_test(test_wrap_and_resize),
        cmocka_unit_test(test_resize_random),
        cmocka_unit_test(test_rate_counter_reset),
        cmocka_unit_test(test_slope_precision),
        cmocka_unit_test(test_quantile_known),
        cmocka_unit_test(test_quantile_patterns),
        cmocka_unit_test(test_stat_parse_and_name),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
