/* win - a bounded ring of samples and the windowed statistics over it. */
#include "win.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_PER_S 1e9

/* The samples a statistic looks at, in time order: seg[0][0..len[0]) then
 * seg[1][0..len[1]), n in all. Two pieces because the ring wraps; each is
 * contiguous, so the loops over them need no index arithmetic. */
struct win_run {
    const struct win_sample *seg[2];
    uint32_t len[2];
    uint32_t n;
};

/* Allocate the ring. Returns 0, VIGIL_EINVAL for cap 0 (a window must at
 * least hold the newest sample) or VIGIL_ENOMEM. */
int win_init(struct win *w, uint32_t cap)
{
    memset(w, 0, sizeof(*w));
    if (cap == 0) {
        return VIGIL_EINVAL;
    }
    w->buf = malloc((size_t)cap * sizeof(*w->buf));
    if (w->buf == NULL) {
        return VIGIL_ENOMEM;
    }
    w->cap = cap;
    return 0;
}

/* Free the ring and zero the struct, so that a second call is harmless.
 * Does not fail. */
void win_fini(struct win *w)
{
    free(w->buf);
    memset(w, 0, sizeof(*w));
}

/* Index of the oldest held sample. */
static uint32_t win_oldest(const struct win *w)
{
    return w->head >= w->len ? w->head - w->len : w->head + w->cap - w->len;
}

/* Copy the newest min(len, cap) samples, oldest first, into a new buffer.
 * Returns 0, VIGIL_EINVAL for cap 0, or VIGIL_ENOMEM with w unchanged. */
int win_resize(struct win *w, uint32_t cap)
{
    struct win_sample *buf;
    uint32_t keep, from, first;

    if (cap == 0) {
        return VIGIL_EINVAL;
    }
    if (cap == w->cap) {
        return 0;
    }
    buf = malloc((size_t)cap * sizeof(*buf));
    if (buf == NULL) {
        return VIGIL_ENOMEM;
    }
    /* Unroll the ring into the new buffer, oldest first, dropping the
     * oldest samples that no longer fit. */
    keep = w->len < cap ? w->len : cap;
    from = win_oldest(w) + (w->len - keep);
    if (from >= w->cap) {
        from -= w->cap;
    }
    first = w->cap - from < keep ? w->cap - from : keep;
    if (keep > 0) {
        memcpy(buf, w->buf + from, (size_t)first * sizeof(*buf));
        memcpy(buf + first, w->buf, (size_t)(keep - first) * sizeof(*buf));
    }
    free(w->buf);
    w->buf = buf;
    w->cap = cap;
    w->len = keep;
    w->head = keep == cap ? 0 : keep;
    return 0;
}

/* Borrowed until the next win_push() or win_resize(). Does not fail. */
const struct win_sample *win_last(const struct win *w)
{
    if (w->len == 0) {
        return NULL;
    }
    return &w->buf[w->head == 0 ? w->cap - 1 : w->head - 1];
}

/* The window's samples in time order as two contiguous pieces (the ring
 * unrolled): seg[0] then seg[1]. */
static struct win_run win_all(const struct win *w)
{
    struct win_run run;
    uint32_t o = win_oldest(w);

    run.seg[0] = w->buf + o;
    run.seg[1] = w->buf;
    run.len[0] = w->cap - o < w->len ? w->cap - o : w->len;
    run.len[1] = w->len - run.len[0];
    run.n = w->len;
    return run;
}

struct win_walk {
    int64_t lo, now;
    int skipping; /* still passing samples later than now */
    int stopped;  /* met a sample out of range */
};

/* One piece of the backward walk of win_find(): returns where the samples
 * taken from p[0..*n) start and sets *n to their number. */
static const struct win_sample *
win_walk_back(struct win_walk *wk, const struct win_sample *p, uint32_t *n)
{
    uint32_t k = *n, end;

    if (wk->skipping) {
        while (k > 0 && p[k - 1].ts > wk->now) {
            k--;
        }
        if (k == 0) {
            *n = 0;
            return p;
        }
        wk->skipping = 0;
    }
    end = k;
    while (k > 0 && p[k - 1].ts >= wk->lo && p[k - 1].ts <= wk->now) {
        k--;
    }
    wk->stopped = k > 0;
    *n = end - k;
    return p + k;
}

/*
 * Find the samples in [now - span_ns, now]: skip the newest samples that are
 * later than now (a replay evaluating the past), then extend backwards while
 * samples stay in range. Stopping at the first sample out of range is what
 * makes the walk O(span) rather than O(ring); with samples in time order it
 * is exact, and an out-of-order sample only shortens the run.
 */
static struct win_run win_find(const struct win *w, int64_t now,
                               int64_t span_ns)
{
    struct win_run run = win_all(w);
    struct win_walk wk = {0, now, 1, 0};

    if (span_ns <= 0) {
        return run;
    }
    /* now - span_ns without signed overflow for timestamps near INT64_MIN. */
    wk.lo = now < INT64_MIN + span_ns ? INT64_MIN : now - span_ns;
    run.seg[1] = win_walk_back(&wk, run.seg[1], &run.len[1]);
    if (wk.stopped) {
        run.len[0] = 0;
    } else {
        run.seg[0] = win_walk_back(&wk, run.seg[0], &run.len[0]);
    }
    run.n = run.len[0] + run.len[1];
    return run;
}

static const struct win_sample *win_first_of(const struct win_run *run)
{
    return run->len[0] > 0 ? run->seg[0] : run->seg[1];
}

static const struct win_sample *win_last_of(const struct win_run *run)
{
    return run->len[1] > 0 ? &run->seg[1][run->len[1] - 1]
                           : &run->seg[0][run->len[0] - 1];
}

/* Sum with four accumulators: a single one makes the loop wait on the
 * latency of every addition in turn. */
static double win_sum(const struct win_run *run)
{
    double a[4] = {0.0, 0.0, 0.0, 0.0}, rest = 0.0;

    for (int s = 0; s < 2; s++) {
        const struct win_sample *p = run->seg[s];
        uint32_t n = run->len[s], k = 0;

        for (; k + 4 <= n; k += 4) {
            a[0] += p[k].v;
            a[1] += p[k + 1].v;
            a[2] += p[k + 2].v;
            a[3] += p[k + 3].v;
        }
        for (; k < n; k++) {
            rest += p[k].v;
        }
    }
    return (a[0] + a[1]) + (a[2] + a[3]) + rest;
}

/* Minimum (sign 1) or maximum (sign -1). A NaN sample makes the result
 * NaN, as it does for the sum; comparisons alone would let a NaN through
 * only when it happens to come first. */
static double win_extreme(const struct win_run *run, int sign)
{
    double m = win_first_of(run)->v;
    int nan = 0;

    for (int s = 0; s < 2; s++) {
        const struct win_sample *p = run->seg[s];

        for (uint32_t k = 0; k < run->len[s]; k++) {
            double v = p[k].v;

            m = (sign > 0 ? v < m : v > m) ? v : m;
            nan |= isnan(v);
        }
    }
    return nan ? NAN : m;
}

/* Increase of a counter over the run: a decrease means the counter restarted
 * from zero, so the new value is all increase (Prometheus' rate()). */
static double win_increase(const struct win_run *run)
{
    double prev = win_first_of(run)->v, inc = 0.0;

    for (int s = 0; s < 2; s++) {
        const struct win_sample *p = run->seg[s];

        for (uint32_t k = 0; k < run->len[s]; k++) {
            double v = p[k].v;

            inc += v < prev ? v : v - prev;
            prev = v;
        }
    }
    return inc;
}

/* Least-squares slope per second. Times are taken relative to the oldest
 * sample (exact in int64) and then centred on their mean, so that epoch
 * nanoseconds (~1.8e18) never meet the squares and lose every digit. */
static int win_slope(const struct win_run *run, double *out)
{
    int64_t t0 = win_first_of(run)->ts;
    double tm = 0.0, vm = 0.0, sxy = 0.0, sxx = 0.0;

    for (int s = 0; s < 2; s++) {
        for (uint32_t k = 0; k < run->len[s]; k++) {
            tm += (double)(run->seg[s][k].ts - t0);
            vm += run->seg[s][k].v;
        }
    }
    tm /= run->n;
    vm /= run->n;
    for (int s = 0; s < 2; s++) {
        for (uint32_t k = 0; k < run->len[s]; k++) {
            double dt = (double)(run->seg[s][k].ts - t0) - tm;

            sxy += dt * (run->seg[s][k].v - vm);
            sxx += dt * dt;
        }
    }
    if (sxx == 0.0) {
        return VIGIL_ENOENT;
    }
    *out = sxy / sxx * NS_PER_S;
    return 0;
}

static int win_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static void win_swap(double *a, int64_t i, int64_t j)
{
    double t = a[i];

    a[i] = a[j];
    a[j] = t;
}

/*
 * Put the k-th smallest of a[0..n) at a[k], smaller ones before it and
 * larger ones after it (quickselect, Hoare partition, median of three).
 * No NaN in a. A bounded number of rounds guards against inputs built to
 * defeat the median of three; past it the rest is sorted instead.
 */
static void win_select(double *a, int64_t n, int64_t k)
{
    int64_t lo = 0, hi = n - 1;
    int rounds = 0;

    while (hi > lo) {
        int64_t mid = lo + (hi - lo) / 2, i = lo, j = hi;
        double pivot;

        if (++rounds > 64) {
            qsort(a + lo, (size_t)(hi - lo + 1), sizeof(*a), win_cmp_double);
            return;
        }
        if (a[mid] < a[lo]) {
            win_swap(a, mid, lo);
        }
        if (a[hi] < a[lo]) {
            win_swap(a, hi, lo);
        }
        if (a[hi] < a[mid]) {
            win_swap(a, hi, mid);
        }
        pivot = a[mid];
        while (i <= j) {
            while (a[i] < pivot) {
                i++;
            }
            while (a[j] > pivot) {
                j--;
            }
            if (i <= j) {
                win_swap(a, i, j);
                i++;
                j--;
            }
        }
        /* Now a[lo..j] <= pivot <= a[i..hi], and anything between equals
         * the pivot and is in its final place. */
        if (k <= j) {
            hi = j;
        } else if (k >= i) {
            lo = i;
        } else {
            return;
        }
    }
}

/* numpy's lerp: exact at both ends and monotonic in t. */
static double win_lerp(double a, double b, double t)
{
    double d = b - a;

    if (a == b) {
        return a; /* also keeps inf - inf out */
    }
    return t >= 0.5 ? b - d * (1.0 - t) : a + d * t;
}

static int win_quantile(const struct win_run *run, double q, double *scratch,
                        double *out)
{
    uint32_t lo, n = 0;
    int nan = 0;
    double h, next;

    if (scratch == NULL || !(q >= 0.0 && q <= 1.0)) {
        return VIGIL_EINVAL;
    }
    for (int s = 0; s < 2; s++) {
        for (uint32_t k = 0; k < run->len[s]; k++) {
            scratch[n] = run->seg[s][k].v;
            nan |= isnan(scratch[n]);
            n++;
        }
    }
    if (nan) {
        *out = NAN; /* as numpy: no order, no quantile */
        return 0;
    }
    /* Virtual index (n - 1) q; interpolate between the order statistics on
     * either side of it. */
    h = (double)(n - 1) * q;
    lo = (uint32_t)h;
    if (lo >= n - 1) {
        lo = n - 1;
    }
    win_select(scratch, n, lo);
    if (lo == n - 1 || h == (double)lo) {
        *out = scratch[lo];
        return 0;
    }
    /* The next order statistic is the smallest of what select left above
     * position lo. */
    next = scratch[lo + 1];
    for (uint32_t k = lo + 2; k < n; k++) {
        next = scratch[k] < next ? scratch[k] : next;
    }
    *out = win_lerp(scratch[lo], next, h - (double)lo);
    return 0;
}

/* Returns 0, VIGIL_ENOENT (too few samples in the span), or VIGIL_EINVAL
 * for an unknown kind, q outside [0, 1] or a quantile without scratch. */
int win_stat(const struct win *w, struct win_stat st, int64_t now,
             int64_t span_ns, double *scratch, double *out)
{
    struct win_run run = win_find(w, now, span_ns);
    const struct win_sample *first, *last;

    if (st.kind == WIN_COUNT) {
        *out = run.n;
        return 0;
    }
    if (st.kind == WIN_SUM && run.n == 0) {
        *out = 0.0;
        return 0;
    }
    if (run.n == 0) {
        return st.kind >= WIN_LAST && st.kind <= WIN_QUANTILE ? VIGIL_ENOENT
                                                              : VIGIL_EINVAL;
    }
    first = win_first_of(&run);
    last = win_last_of(&run);
    switch (st.kind) {
    case WIN_LAST:
        *out = last->v;
        return 0;
    case WIN_AVG:
        *out = win_sum(&run) / run.n;
        return 0;
    case WIN_SUM:
        *out = win_sum(&run);
        return 0;
    case WIN_MIN:
        *out = win_extreme(&run, 1);
        return 0;
    case WIN_MAX:
        *out = win_extreme(&run, -1);
        return 0;
    case WIN_DELTA:
        if (last->ts == first->ts) {
            return VIGIL_ENOENT;
        }
        *out = last->v - first->v;
        return 0;
    case WIN_RATE:
        /* Only out-of-order samples make the newest older than the
         * oldest; a negative duration has no rate. */
        if (last->ts <= first->ts) {
            return VIGIL_ENOENT;
        }
        *out = win_increase(&run) / ((double)(last->ts - first->ts) / NS_PER_S);
        return 0;
    case WIN_SLOPE:
        return win_slope(&run, out);
    case WIN_QUANTILE:
        return win_quantile(&run, st.q, scratch, out);
    default:
        return VIGIL_EINVAL;
    }
}

static const char *const win_names[] = {
    [WIN_LAST] = "last",   [WIN_AVG] = "avg",   [WIN_MIN] = "min",
    [WIN_MAX] = "max",     [WIN_SUM] = "sum",   [WIN_COUNT] = "count",
    [WIN_DELTA] = "delta", [WIN_RATE] = "rate", [WIN_SLOPE] = "slope",
};

/* Names are case-sensitive, as runbooks write them. */
int win_stat_parse(const char *text, struct win_stat *st)
{
    const char *p;
    double pct;

    for (int k = WIN_LAST; k < WIN_QUANTILE; k++) {
        if (strcmp(text, win_names[k]) == 0) {
            st->kind = k;
            st->q = 0.0;
            return 0;
        }
    }
    if (strcmp(text, "median") == 0) {
        st->kind = WIN_QUANTILE;
        st->q = 0.5;
        return 0;
    }
    /* pNN or pNN.N: check the shape by hand, since strtod would also take
     * " 9", "1e1", "inf" and hex. */
    if (text[0] != 'p') {
        return VIGIL_EINVAL;
    }
    p = text + 1;
    if (*p < '0' || *p > '9') {
        return VIGIL_EINVAL;
    }
    while (*p >= '0' && *p <= '9') {
        p++;
    }
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9') {
            return VIGIL_EINVAL;
        }
        while (*p >= '0' && *p <= '9') {
            p++;
        }
    }
    if (*p != '\0') {
        return VIGIL_EINVAL;
    }
    pct = strtod(text + 1, NULL);
    if (pct > 100.0) {
        return VIGIL_EINVAL;
    }
    st->kind = WIN_QUANTILE;
    st->q = pct / 100.0;
    return 0;
}

/* Returns buf ("" when size is 0); "?" for an unknown kind. */
const char *win_stat_name(struct win_stat st, char *buf, unsigned size)
{
    if (size == 0) {
        return "";
    }
    if (st.kind == WIN_QUANTILE) {
        /* %.10g turns 0.999 * 100 = 99.90000000000001 back into 99.9. */
        snprintf(buf, size, "p%.10g", st.q * 100.0);
    } else if (st.kind >= WIN_LAST && st.kind < WIN_QUANTILE) {
        snprintf(buf, size, "%s", win_names[st.kind]);
    } else {
        snprintf(buf, size, "?");
    }
    return buf;
}
