/*
 * measure - the statistics of a one-shot measurement (http.measure,
 * tcp.measure), as the guide's measure_latency.py prints them: mean,
 * sample standard deviation, min, max, and P50/P95/P99 interpolated
 * between closest ranks. Compiled into each plugin that uses it.
 */
#ifndef MEASURE_H
#define MEASURE_H

#include <stddef.h>

#include <jansson.h>

/* Set mean_ms, stdev_ms, min_ms, max_ms, p50_ms, p95_ms and p99_ms on o
 * from the n values in v (sorted in place); all null when n is 0. Does
 * not fail. */
void measure_stats_set(json_t *o, double *v, size_t n);

#endif
