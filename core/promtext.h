/*
 * promtext - the Prometheus text exposition format (version 0.0.4) of
 * the bus, the rules and vigil itself, for `GET /metrics`.
 *
 * Names: a bus name `sys.disk.await_ms` becomes `sys_disk_await_seconds`
 * and its values are converted: Prometheus wants base units and
 * `promtool check metrics` refuses abbreviated ones (`_ms`, `_s`, `_kb`),
 * so time is in seconds, sizes in bytes, `_per_s` is `_per_second`;
 * camelCase becomes snake_case; a name ending in `_total` is a counter,
 * any other a gauge (a gauge's trailing `_count` is dropped, `_sum` and
 * `_bucket` get `_value`: those suffixes are reserved for histograms).
 * Each family has HELP (naming the vigil series) and TYPE lines, and its
 * samples are written together; a family that two different bus names
 * map to is written once, for the first name in sort order, and the other
 * series are counted in vigil_http_metrics_skipped. Label values are escaped
 * (\\, \", \n).
 *
 * A scrape is produced piece by piece (prom_scrape_fill) so that a bus of
 * 100,000 series never blocks the loop: series are visited in an order
 * sorted by name and labels that is kept between scrapes and only merged
 * with the series created since the last one.
 */
#ifndef VIGIL_PROMTEXT_H
#define VIGIL_PROMTEXT_H

#include <stddef.h>
#include <stdint.h>

#include "dbuf.h"

struct bus;
struct rb_engine;
struct prom_index;
struct prom_scrape;

/* The Prometheus name of a vigil metric name, into buf (at most size
 * bytes with the NUL), and the factor its values are multiplied by.
 * counter: the name ends in _total. Returns 0, or VIGIL_EINVAL when the
 * result is empty or does not fit. */
int prom_name(const char *name, char *buf, size_t size, double *factor,
              int *counter);

/* Same for a label name (snake_case, only [a-zA-Z0-9_], not starting
 * with a digit). Returns 0 or VIGIL_EINVAL. */
int prom_label_name(const char *name, char *buf, size_t size);

/* Append a label value / HELP text escaped as the format wants, and a
 * sample value (NaN, +Inf, -Inf, or the shortest exact decimal). Return
 * 0 or a dbuf error. */
int prom_add_label_value(struct dbuf *b, const char *v);
int prom_add_help(struct dbuf *b, const char *v);
int prom_add_value(struct dbuf *b, double v);

/* The sorted series order, kept by the caller between scrapes. Returns 0
 * or VIGIL_ENOMEM. Free with prom_index_release. */
int prom_index_update(struct prom_index **idx, const struct bus *bus);
void prom_index_release(struct prom_index *idx); /* accepts NULL */

/* A scrape: the bus series (in idx order, taking a reference), then the
 * rule families (rules may be NULL), then the scrape's own counters.
 * Returns 0 or VIGIL_ENOMEM. */
int prom_scrape_create(struct bus *bus, struct prom_index *idx,
                       struct rb_engine *rules, struct prom_scrape **out);

/* Append about `want` bytes of text to out. Returns 1 when the scrape is
 * complete, 0 when there is more, or a negative code (VIGIL_ENOMEM).
 * The bus and rules must still exist; rules may be reloaded between
 * calls (rule families are written in one call). */
int prom_scrape_fill(struct prom_scrape *s, struct dbuf *out, size_t want);

/* Families skipped because another bus name took their Prometheus name. */
unsigned prom_scrape_skipped(const struct prom_scrape *s);

void prom_scrape_destroy(struct prom_scrape *s); /* accepts NULL */

#endif
