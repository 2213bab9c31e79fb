/*
 * prom_hist.c - histogram_quantile() over bucket counts; see prom_hist.h.
 */
#include "prom_hist.h"

#include <math.h>

size_t prom_hist_prepare(struct prom_bucket *b, size_t n)
{
    size_t i, j, out;
    double max;

    /* Insertion sort: histograms have tens of buckets, and they usually
     * arrive sorted. */
    for (i = 1; i < n; i++) {
        struct prom_bucket x = b[i];

        for (j = i; j > 0 && b[j - 1].le > x.le; j--) {
            b[j] = b[j - 1];
        }
        b[j] = x;
    }
    out = 0;
    for (i = 0; i < n; i++) {
        if (out > 0 && b[out - 1].le == b[i].le) {
            b[out - 1].count += b[i].count;
        } else {
            b[out++] = b[i];
        }
    }
    max = -INFINITY;
    for (i = 0; i < out; i++) {
        if (b[i].count > max) {
            max = b[i].count;
        } else if (b[i].count < max) {
            b[i].count = max;
        }
    }
    return out;
}

double prom_hist_quantile(double q, const struct prom_bucket *b, size_t n)
{
    double rank, start, end, count, observations;
    size_t i;

    if (isnan(q)) {
        return NAN;
    }
    if (q < 0) {
        return -INFINITY;
    }
    if (q > 1) {
        return INFINITY;
    }
    if (n < 2 || !isinf(b[n - 1].le) || b[n - 1].le < 0) {
        return NAN;
    }
    for (i = 0; i < n; i++) {
        if (isnan(b[i].le) || !isfinite(b[i].count)) {
            return NAN;
        }
    }
    observations = b[n - 1].count;
    if (observations == 0) {
        return NAN;
    }
    rank = q * observations;
    /* The first bucket whose count reaches the rank, among all but the
     * +Inf bucket (Go: sort.Search(len(buckets)-1, ...)). */
    for (i = 0; i < n - 1 && b[i].count < rank; i++) {
    }
    if (i == n - 1) {
        return b[n - 2].le;
    }
    if (i == 0 && b[0].le <= 0) {
        return b[0].le;
    }
    start = 0;
    end = b[i].le;
    count = b[i].count;
    if (i > 0) {
        start = b[i - 1].le;
        count -= b[i - 1].count;
        rank -= b[i - 1].count;
    }
    return start + (end - start) * (rank / count);
}
