/*
 * win - a bounded ring of samples and the windowed statistics over it.
 *
 * A window holds the newest `cap` samples of one series in insertion order.
 * Statistics look back over a time span ending at `now`: every sample with
 * now - span <= ts <= now counts, found by walking from the newest sample
 * backwards and stopping at the first older one (samples are expected in
 * time order; an out-of-order sample only shortens what is seen).
 *
 * Nothing here allocates except win_init() and win_resize(); win_push() and
 * win_stat() are on the per-sample path. The caller owns the struct and
 * calls win_fini().
 */
#ifndef VIGIL_WIN_H
#define VIGIL_WIN_H

#include <stdint.h>

#include "err.h"

struct win_sample {
    int64_t ts; /* wall-clock ns */
    double v;
};

struct win {
    struct win_sample *buf;
    uint32_t cap;  /* slots in buf */
    uint32_t len;  /* samples held, <= cap */
    uint32_t head; /* index of the next write */
};

/*
 * Statistics. Definitions (documented for runbook authors in docs/):
 *   LAST   newest sample in the span
 *   AVG MIN MAX SUM COUNT   over the samples in the span
 *   DELTA  newest minus oldest (gauges)
 *   RATE   per-second increase of a counter: a decrease is taken as a
 *          counter reset, as Prometheus' rate() does; divided by the time
 *          between the oldest and newest sample
 *   SLOPE  least-squares slope in units per second
 *   QUANTILE  q in [0,1], linear interpolation between closest ranks
 *          (numpy's default); "p95" is q = 0.95
 * DELTA, RATE and SLOPE need two samples at distinct times.
 */
enum win_stat_kind {
    WIN_LAST = 1,
    WIN_AVG,
    WIN_MIN,
    WIN_MAX,
    WIN_SUM,
    WIN_COUNT,
    WIN_DELTA,
    WIN_RATE,
    WIN_SLOPE,
    WIN_QUANTILE,
};

struct win_stat {
    int kind; /* enum win_stat_kind */
    double q; /* WIN_QUANTILE only */
};

/* Allocate a ring of cap >= 1 slots. Returns 0 or VIGIL_ENOMEM. */
int win_init(struct win *w, uint32_t cap);

/* Free the ring; accepts a zeroed or finished struct. Does not fail. */
void win_fini(struct win *w);

/* Change capacity, keeping the newest min(len, cap) samples. Returns 0 or
 * VIGIL_ENOMEM (the window is then unchanged). */
int win_resize(struct win *w, uint32_t cap);

/* Append a sample, overwriting the oldest when full. Does not fail. */
static inline void win_push(struct win *w, int64_t ts, double v)
{
    w->buf[w->head].ts = ts;
    w->buf[w->head].v = v;
    w->head = (w->head + 1 == w->cap) ? 0 : w->head + 1;
    if (w->len < w->cap) {
        w->len++;
    }
}

/* The newest sample, or NULL when empty. */
const struct win_sample *win_last(const struct win *w);

/* Compute a statistic over [now - span_ns, now]. span_ns <= 0 means the
 * whole ring. QUANTILE needs scratch with room for w->len doubles.
 * Returns 0 with *out set, or VIGIL_ENOENT when the span holds too few
 * samples for the statistic (COUNT and SUM of nothing are 0, not an
 * error). */
int win_stat(const struct win *w, struct win_stat st, int64_t now,
             int64_t span_ns, double *scratch, double *out);

/* Parse "last|avg|min|max|sum|count|delta|rate|slope|pNN" (NN may have
 * decimals: p99.9; "median" is p50). Returns 0 or VIGIL_EINVAL. */
int win_stat_parse(const char *text, struct win_stat *st);

/* Name of a statistic ("p95" for a quantile) into buf. Does not fail. */
const char *win_stat_name(struct win_stat st, char *buf, unsigned size);

#endif
