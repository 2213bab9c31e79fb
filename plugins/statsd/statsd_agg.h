/*
 * statsd_agg - the StatsD aggregation table: one slot per series key
 * (sanitized name + sorted tags), holding that key's accumulator for the
 * current flush interval and the ids of the bus series it publishes.
 *
 * Provides statsd_agg_line(), which parses one line (statsd_parse.h),
 * finds or creates the key's slot and adds the line's values to it; and
 * a flush split into statsd_agg_flush_begin() and steps, so that the
 * caller can spread the publication of many series over several loop
 * turns. A slot touched by a line after the flush began and before the
 * step reached it is flushed first, on the spot, so each interval's values
 * are published with that interval whatever the order.
 *
 * Uses the host table (plugin.h) to intern series and publish samples, on
 * the loop thread only. Memory: the table of keys doubles when a new key
 * would make it more than half full (bounded by max_series); a long key
 * allocates its text; a timer's reservoir or a set's member table grows
 * (bounded) while it warms up and is kept across intervals. Nothing else
 * on the per-line path allocates. The table owns all of it;
 * statsd_agg_destroy() frees it.
 */
#ifndef STATSD_AGG_H
#define STATSD_AGG_H

#include <stddef.h>
#include <stdint.h>

#include <vigil/plugin.h>

#include "statsd_parse.h"

/* Percentiles a timer may publish. */
#define STATSD_PCT_MAX 16
/* Members a set counts in one interval; beyond, its count is a floor. */
#define STATSD_SET_MEMBERS_MAX 65536u
/* Upper bound of the reservoir option. */
#define STATSD_RESERVOIR_MAX 1048576u

struct statsd_agg_config {
    uint32_t max_series; /* keys in the table */
    uint32_t reservoir;  /* timer values kept per interval for percentiles */
    size_t npct;
    uint32_t pct_milli[STATSD_PCT_MAX];  /* percentiles x 1000, ascending */
    char pct_suffix[STATSD_PCT_MAX][16]; /* ".p99_9" */
    const char *prefix; /* "" or "<prefix>." prepended to names */
    int64_t expire_ns;  /* forget keys without data this long; 0: never */
    uint64_t seed;      /* hash seed */
};

/* What statsd_agg_line() did with a line. */
enum statsd_result {
    STATSD_OK = 0,  /* aggregated */
    STATSD_EMPTY,   /* an empty line: skipped, not counted */
    STATSD_BAD,     /* not understood; *why says why */
    STATSD_DROPPED, /* a new key beyond max_series, or a key whose series
                       the core refused */
};

struct statsd_agg;

/* Create a table. cfg is copied (prefix borrowed: it must outlive the
 * table); host and inst are borrowed. Returns 0 or VIGIL_ENOMEM. */
int statsd_agg_create(const struct statsd_agg_config *cfg,
                      const struct vigil_host *host, vigil_instance *inst,
                      struct statsd_agg **out);

/* Free the table and everything it allocated. Accepts NULL. */
void statsd_agg_destroy(struct statsd_agg *a);

/*
 * Parse one line (without '\n') and aggregate it. A gauge is published at
 * once as well. Returns an enum statsd_result; for STATSD_BAD *why is a
 * static sentence. Allocates only for a key seen for the first time.
 */
int statsd_agg_line(struct statsd_agg *a, const char *line, size_t len,
                    const char **why);

/* Told about a line statsd_agg_lines() did not aggregate: result is
 * STATSD_BAD (why says why) or STATSD_DROPPED (statsd_agg_last_key()
 * names the key). line is borrowed for the call. */
typedef void (*statsd_problem_cb)(void *arg, int result, const char *line,
                                  size_t len, const char *why);

/*
 * Aggregate every line of buf (lines separated by '\n'; the last one needs
 * none); a bad line does not stop the others. problem_cb (may be NULL) is
 * called for each line that is bad or dropped. Returns the number of
 * non-empty lines. The per-datagram form of statsd_agg_line().
 */
uint64_t statsd_agg_lines(struct statsd_agg *a, const char *buf, size_t len,
                          statsd_problem_cb problem_cb, void *arg);

/* The canonical key of the last line given to statsd_agg_line() (valid
 * until the next call), for messages about dropped keys. */
const char *statsd_agg_last_key(const struct statsd_agg *a, size_t *len);

/* New input arrived: the next gauge published at once reads the clock
 * again (within one batch, they share one time). Does not fail. */
void statsd_agg_new_batch(struct statsd_agg *a);

/* Begin a flush: the interval that ends now is published with time ts_ns
 * (wall clock); elapsed_ns is its length, for rates. Does not fail. */
void statsd_agg_flush_begin(struct statsd_agg *a, int64_t ts_ns,
                            int64_t elapsed_ns);

/* Flush up to max_slots more keys. Returns 1 when the flush is complete,
 * 0 when keys remain. Does not fail. */
int statsd_agg_flush_step(struct statsd_agg *a, uint32_t max_slots);

/* Keys in the table. */
uint32_t statsd_agg_series(const struct statsd_agg *a);

#endif
