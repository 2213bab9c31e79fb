/* measure - statistics of a one-shot measurement. */
#include "measure.h"

#include <math.h>
#include <stdlib.h>

static int measure_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* p in [0, 1] of sorted v[0..n-1], n > 0. */
static double measure_pct(const double *v, size_t n, double p)
{
    double pos = p * (double)(n - 1);
    size_t lo = (size_t)pos;

    if (lo + 1 >= n) {
        return v[n - 1];
    }
    return v[lo] + (v[lo + 1] - v[lo]) * (pos - (double)lo);
}

void measure_stats_set(json_t *o, double *v, size_t n)
{
    static const char *const keys[] = {"mean_ms", "stdev_ms", "min_ms",
                                       "max_ms",  "p50_ms",   "p95_ms",
                                       "p99_ms"};
    double sum = 0.0, var = 0.0, mean;
    size_t i;

    if (n == 0) {
        for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
            json_object_set_new(o, keys[i], json_null());
        }
        return;
    }
    qsort(v, n, sizeof(*v), measure_cmp);
    for (i = 0; i < n; i++) {
        sum += v[i];
    }
    mean = sum / (double)n;
    for (i = 0; i < n; i++) {
        var += (v[i] - mean) * (v[i] - mean);
    }
    var = n > 1 ? var / (double)(n - 1) : 0.0;
    json_object_set_new(o, "mean_ms", json_real(mean));
    json_object_set_new(o, "stdev_ms", json_real(sqrt(var)));
    json_object_set_new(o, "min_ms", json_real(v[0]));
    json_object_set_new(o, "max_ms", json_real(v[n - 1]));
    json_object_set_new(o, "p50_ms", json_real(measure_pct(v, n, 0.50)));
    json_object_set_new(o, "p95_ms", json_real(measure_pct(v, n, 0.95)));
    json_object_set_new(o, "p99_ms", json_real(measure_pct(v, n, 0.99)));
}
