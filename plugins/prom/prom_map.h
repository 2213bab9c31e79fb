/*
 * prom_map - turns parsed Prometheus samples into vigil series for one
 * plugin instance: names and labels made valid for vigil, series interned
 * once and found again by a hash of their name and sorted labels, the
 * samples of a scrape staged until the scrape is known to be good, and
 * estimated quantiles (.p50 .p90 .p95 .p99) of every histogram computed
 * from the bucket increments since the previous good scrape.
 *
 * Uses prom_parse (the sample struct), prom_hist (the estimate) and the
 * vigil host table (series, publish, log). Owns its tables; the host and
 * instance are borrowed for its lifetime. Allocates only when a series or
 * a histogram is seen for the first time: staging and publishing a known
 * series allocates nothing.
 *
 * Mapping (see docs/prom.md):
 *   - the metric name is kept as written (a Prometheus name is a valid
 *     vigil name) except ':' which becomes '_'; `prefix` is put in front,
 *     joined with '.' unless it already ends in '.' or '_';
 *   - label names: characters outside [A-Za-z0-9_] become '_', longer
 *     than VIGIL_LABEL_KEY_MAX - 1 are cut; `instance` becomes
 *     `exported_instance` (vigil's own `instance` label names the config
 *     section); `le` and `quantile` are kept;
 *   - label values: control characters (a `\n` escape gives one) are
 *     written `\n`, `\t`, `\r` or `\xNN`, since vigil refuses them;
 *   - a series vigil refuses (name or a value too long, too many labels)
 *     is logged once and skipped from then on;
 *   - at most max_series vigil series per instance (quantile series
 *     included); new ones past it are dropped, counted per scrape and
 *     logged whenever the number dropped changes.
 */
#ifndef PROM_MAP_H
#define PROM_MAP_H

#include <stddef.h>
#include <stdint.h>

#include <vigil/plugin.h>

#include "prom_parse.h"

/* Buckets per histogram label set used for quantiles; a histogram with
 * more still publishes its buckets, without quantiles. */
#define PROM_BUCKETS_MAX 256
/* Series refusals logged per scrape. */
#define PROM_REFUSALS_LOGGED 3

/* The quantiles estimated for every histogram, and their suffixes. */
#define PROM_NQUANTILES 4

struct prom_map;

/* What one scrape did. */
struct prom_map_stats {
    unsigned staged;    /* samples staged on a vigil series */
    unsigned dropped;   /* samples whose series is over max_series or
                           refused by vigil */
    unsigned published; /* samples published by the commit, quantiles
                           included */
    unsigned quantiles; /* of which estimated quantiles */
};

/* What prom_map_stage() did with a sample. */
enum prom_map_result {
    PROM_MAP_STAGED = 0,
    PROM_MAP_DROPPED = 1,    /* series limit, or vigil refused the series */
    PROM_MAP_DUPLICATE = -1, /* the series already has a sample in this
                                scrape (first one kept): a bad line */
};

/*
 * Create the map. prefix (may be NULL) is copied and must be a valid
 * vigil name or empty; max_series >= 1. Returns 0, VIGIL_EINVAL or
 * VIGIL_ENOMEM; *out is NULL on failure.
 */
int prom_map_create(const struct vigil_host *host, vigil_instance *inst,
                    const char *prefix, size_t max_series,
                    struct prom_map **out);

/* Free the map (NULL is fine). */
void prom_map_destroy(struct prom_map *m);

/* Start staging a new scrape; forgets what the last one staged if it was
 * neither committed nor aborted. Does not fail. */
void prom_map_begin(struct prom_map *m);

/*
 * Stage one sample of the scrape (line is its line number, for
 * messages). Returns a enum prom_map_result; on PROM_MAP_DUPLICATE,
 * *first_line is the line of the sample kept.
 */
int prom_map_stage(struct prom_map *m, const struct prom_sample *s,
                   unsigned line, unsigned *first_line);

/*
 * The scrape was good: publish every staged sample at ts_ns, and the
 * quantiles of every histogram whose buckets were all seen in this scrape
 * and in the previous good one, from the increase in between (a counter
 * reset uses the counts since the reset; no quantile when nothing was
 * observed). Fills *st when not NULL. Does not fail.
 */
void prom_map_commit(struct prom_map *m, int64_t ts_ns,
                     struct prom_map_stats *st);

/* The scrape failed: publish nothing from it; histograms keep the counts
 * of the last good scrape. Fills *st when not NULL. Does not fail. */
void prom_map_abort(struct prom_map *m, struct prom_map_stats *st);

/* Vigil series this map has created or refused (its share of
 * max_series). */
size_t prom_map_series(const struct prom_map *m);

#endif /* PROM_MAP_H */
