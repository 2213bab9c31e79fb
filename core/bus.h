/*
 * bus - the in-process metrics bus: series registry, windows, subscriptions.
 *
 * A series is a metric name plus labels sorted by key, interned once to a
 * small integer id (ids are dense, starting at 0, never reused while the bus
 * lives). Each series owns a ring window (win.h). A sample is
 * (id, wall-clock ns, value); bus_publish() stores it in the series' window
 * and calls the series' subscribers in subscription order.
 *
 * Subscriptions take a selector (a name glob plus label matchers). Patterns
 * are resolved when a subscription is made (against existing series) and
 * when a series is created (against existing subscriptions), so publishing
 * never pattern-matches. Subscribers receive the sample during the callback
 * only; they must not publish to the same series from inside it.
 *
 * The bus is single-threaded: it belongs to the loop thread. No function on
 * the per-sample path (bus_publish, bus_stat, bus_window) allocates.
 */
#ifndef VIGIL_BUS_H
#define VIGIL_BUS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "win.h"

struct bus;
struct bus_sub;

struct bus_limits {
    uint32_t max_series;     /* intern fails with VIGIL_ELIMIT beyond it */
    uint32_t window_default; /* ring slots given to every new series */
    uint32_t window_max;     /* upper bound for bus_reserve() */
};

/* Defaults: 100000 series, 120 slots, 100000 slots. */
void bus_limits_default(struct bus_limits *lim);

/* A selector: `name{key=glob,key!=glob}`. The name and the values are
 * shell globs (fnmatch: `*`, `?`, `[...]`). An absent label matches as the
 * empty string, so `{cpu=}` selects series without a cpu label. */
#define BUS_MATCHERS_MAX 8
struct bus_selector {
    char name[VIGIL_NAME_MAX];
    unsigned n;
    struct {
        char key[VIGIL_LABEL_KEY_MAX];
        char value[VIGIL_LABEL_VALUE_MAX];
        int negate;
    } m[BUS_MATCHERS_MAX];
};

/* Parse a selector. Errors name the offending character position.
 * Returns 0 or VIGIL_EINVAL. */
int bus_selector_parse(const char *text, struct bus_selector *sel,
                       struct vigil_err *err);

/* Called for each sample of a matching series; data valid during the call
 * only. */
typedef void (*bus_sample_cb)(void *arg, vigil_series_id id, int64_t ts,
                              double v);
/* Called once when a series starts matching the subscription (for existing
 * series during bus_subscribe, for new ones on creation). Optional. */
typedef void (*bus_series_cb)(void *arg, vigil_series_id id);

int bus_create(const struct bus_limits *lim, struct bus **out);
void bus_destroy(struct bus *bus); /* accepts NULL */

/* Intern name + labels (any order; copied). Names match
 * [A-Za-z_][A-Za-z0-9_.]*, label keys [A-Za-z_][A-Za-z0-9_]*, values any
 * printable text; lengths bounded by VIGIL_*_MAX; no duplicate keys.
 * Existing series: no allocation. Returns 0, VIGIL_EINVAL, VIGIL_ELIMIT or
 * VIGIL_ENOMEM, with a message in err. */
int bus_intern(struct bus *bus, const char *name,
               const struct vigil_label *labels, size_t n, vigil_series_id *out,
               struct vigil_err *err);

/* Look a series up by name + labels without creating it.
 * Returns 0 or VIGIL_ENOENT. */
int bus_find(const struct bus *bus, const char *name,
             const struct vigil_label *labels, size_t n, vigil_series_id *out);

/* Publish one sample; unknown ids are ignored. Does not fail. */
void bus_publish(struct bus *bus, vigil_series_id id, int64_t ts, double v);

/* Series introspection; id must be valid (< bus_series_count). */
uint32_t bus_series_count(const struct bus *bus);
const char *bus_series_name(const struct bus *bus, vigil_series_id id);
/* Labels sorted by key; *n set to their number. */
const struct vigil_label *bus_series_labels(const struct bus *bus,
                                            vigil_series_id id, size_t *n);
/* Canonical text: `name{a="x",b="y"}` (no braces without labels), with
 * `"` and `\` escaped. Stable for the life of the bus. */
const char *bus_series_key(const struct bus *bus, vigil_series_id id);
const struct win *bus_window(const struct bus *bus, vigil_series_id id);

/* Grow a series' window to at least cap slots (capped at window_max).
 * Returns 0 or VIGIL_ENOMEM. */
int bus_reserve(struct bus *bus, vigil_series_id id, uint32_t cap);

/* A statistic of one series (see win_stat); uses the bus' scratch. */
int bus_stat(struct bus *bus, vigil_series_id id, struct win_stat st,
             int64_t now, int64_t span_ns, double *out);

/* Does the series match the selector? */
int bus_match(const struct bus *bus, vigil_series_id id,
              const struct bus_selector *sel);

/* Subscribe (selector copied). series_cb may be NULL. *out identifies the
 * subscription for bus_unsubscribe. Returns 0 or VIGIL_ENOMEM. */
int bus_subscribe(struct bus *bus, const struct bus_selector *sel,
                  bus_sample_cb sample_cb, bus_series_cb series_cb, void *arg,
                  struct bus_sub **out);
/* Remove a subscription; accepts NULL. Does not fail. */
void bus_unsubscribe(struct bus *bus, struct bus_sub *sub);

/* Samples published since creation. */
uint64_t bus_samples_total(const struct bus *bus);

#endif
