/*
 * prom_hist - quantiles estimated from histogram buckets, computed as
 * Prometheus' histogram_quantile() does (promql/quantile.go,
 * bucketQuantile, before native histograms): buckets sorted by upper
 * bound, buckets with the same bound merged, counts made monotonic, then
 * linear interpolation inside the bucket that holds the rank; the first
 * bucket starts at 0 (or is its own bound when that is <= 0); a rank in
 * the +Inf bucket gives the highest finite bound.
 *
 * Pure: no allocation, no state. Buckets are the caller's.
 */
#ifndef PROM_HIST_H
#define PROM_HIST_H

#include <stddef.h>

struct prom_bucket {
    double le;    /* upper bound; +Inf for the last */
    double count; /* cumulative count of observations <= le */
};

/*
 * Sort b[0..n) by le, merge equal bounds (adding their counts, as
 * Prometheus does for buckets that differ only in how le was written) and
 * make the counts non-decreasing. Returns the number of buckets left.
 * Does not fail.
 */
size_t prom_hist_prepare(struct prom_bucket *b, size_t n);

/*
 * The q-quantile (0 <= q <= 1) of prepared buckets: NaN when it is not
 * defined (no +Inf bucket, fewer than two buckets, no observations, a
 * count or bound that is NaN or a count that is infinite), -Inf for
 * q < 0 and +Inf for q > 1, as in PromQL. Does not fail.
 */
double prom_hist_quantile(double q, const struct prom_bucket *b, size_t n);

#endif /* PROM_HIST_H */
