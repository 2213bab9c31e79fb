/*
 * rule - compiled threshold rules: the state machine that runs on every
 * sample, in C, without Lua.
 *
 * A rule has a selector; every series it matches gets its own instance with
 * its own state (ok, warning, critical, nodata). Two kinds of rule share the
 * state machine:
 *
 *   threshold  the core computes a window statistic of the series on each
 *              sample (struct rule_def.stat over .window_ns) and compares it
 *              with the levels;
 *   condition  the owner (a Lua predicate run on a schedule) feeds a level
 *              and a value with rule_feed(); there is one instance.
 *
 * Levels: warn_above/crit_above ("higher is worse"), warn_below/crit_below
 * ("lower is worse", as for a cache hit rate), or both sides at once for a
 * band ("normal is 100-200 orders/s"). Unset levels are NaN. Comparisons
 * are strict: with warn_above = 50 a value of 50 is ok, 50.1 is warning.
 *
 * Time: a level must hold continuously for `hold_ns` before the instance
 * enters it (escalation), and the better level must hold for
 * `clear_hold_ns` before it leaves (de-escalation). Hysteresis: while in
 * warning (or critical) the condition to stay there uses the clear levels
 * (clear_above/clear_below, crit_clear_above/crit_clear_below) when set,
 * so a value hovering at the threshold does not flap.
 *
 * No data: an instance whose series has had no sample for `nodata_ns`
 * (0 = never) enters NODATA; the next sample re-evaluates it.
 *
 * Flapping: more than `flap_max` transitions within `flap_window_ns` marks
 * the instance flapping: transitions stop being emitted (the state is held)
 * until the raw state has been stable for flap_window_ns, then the instance
 * resumes with one transition to where it is.
 *
 * Clocks: sample timestamps drive evaluation, and rule_set_tick(now) runs
 * the time-based parts (hold expiry without new samples, nodata, flapping
 * end). The daemon calls it from a timer with the wall clock; `vigil test`
 * calls it with a virtual clock. Nothing reads the clock itself.
 *
 * The set owns rules and instances and borrows the bus. Events go to one
 * callback, valid during the call only.
 */
#ifndef VIGIL_RULE_H
#define VIGIL_RULE_H

#include <stdint.h>

#include "bus.h"
#include "err.h"
#include "win.h"

enum rule_state {
    RULE_OK = 0,
    RULE_WARNING = 1,
    RULE_CRITICAL = 2,
    RULE_NODATA = 3,
};

enum rule_kind {
    RULE_THRESHOLD = 1,
    RULE_CONDITION = 2,
};

#define RULE_NAME_MAX 128

/* Upper bound for rule_def.flap_max: each instance keeps that many
 * transition times (plus one) to detect flapping. */
#define RULE_FLAP_MAX 64

/* The series of a condition rule's single instance. */
#define RULE_NO_SERIES UINT32_MAX

struct rule_def {
    char name[RULE_NAME_MAX]; /* unique within a set */
    int kind;                 /* enum rule_kind */
    struct bus_selector sel;  /* RULE_THRESHOLD only */
    struct win_stat stat;     /* RULE_THRESHOLD only */
    int64_t window_ns;        /* span of the statistic; 0 = last sample */
    double warn_above, crit_above, warn_below, crit_below; /* NaN = unset */
    double clear_above, clear_below;           /* hysteresis of warning */
    double crit_clear_above, crit_clear_below; /* hysteresis of critical */
    int64_t hold_ns;
    int64_t clear_hold_ns;
    int64_t nodata_ns; /* 0 = no nodata state */
    unsigned flap_max; /* 0 = no flap detection */
    int64_t flap_window_ns;
    uint64_t fingerprint; /* the owner's hash of what else defines the
                             rule (a condition's predicate source) */
    void *user;           /* for the owner: passed back in events */
};

/* A def with every level unset (NaN) and everything else zero. */
void rule_def_init(struct rule_def *def);

/* Check a def: at least one level, levels in order (warn below crit for
 * "above", crit below warn for "below", a band's lower levels under its
 * upper ones), clear levels on the better side of their level, durations
 * not negative. Returns 0 or VIGIL_EINVAL with the reason in err. */
int rule_def_check(const struct rule_def *def, struct vigil_err *err);

/* Pure level function (exposed for tests and for conditions computed in
 * C): the level of value v for an instance currently in `state`. */
int rule_level(const struct rule_def *def, int state, double v);

struct rule_event {
    const struct rule_def *def;
    vigil_series_id series; /* RULE_THRESHOLD: the instance's series */
    int64_t ts;
    int from, to;       /* enum rule_state */
    double value;       /* the statistic (NaN for nodata) */
    int flapping;       /* 1 when flapping starts, -1 when it ends */
    const char *reason; /* e.g. "p95 over 1m = 212 > crit 200 for 30s" */
};

typedef void (*rule_event_cb)(void *arg, const struct rule_event *ev);

struct rule_set;
struct rule;

int rule_set_create(struct bus *bus, rule_event_cb cb, void *arg,
                    struct rule_set **out);
void rule_set_destroy(struct rule_set *rs); /* accepts NULL */

/* Add a rule (def copied after rule_def_check). Threshold rules subscribe
 * to the bus at once and grow matching series' windows (bus_reserve) so
 * that the window span fits. Returns 0, VIGIL_EINVAL, VIGIL_EEXIST (name
 * taken) or VIGIL_ENOMEM. */
int rule_add(struct rule_set *rs, const struct rule_def *def, struct rule **out,
             struct vigil_err *err);

/* Remove a rule and its instances. Accepts NULL. */
void rule_remove(struct rule_set *rs, struct rule *r);

struct rule *rule_find(const struct rule_set *rs, const char *name);
const struct rule_def *rule_get_def(const struct rule *r);

/* Feed a condition rule: the level it computed now and the value to show.
 * Runs the same hold/clear/flap machine. Does not fail. */
void rule_feed(struct rule_set *rs, struct rule *r, int64_t ts, int level,
               double value);

/* Advance time: hold expiry, nodata, flapping end. Does not fail. */
void rule_set_tick(struct rule_set *rs, int64_t now);

/* Do two defs describe the same rule (everything but `user`)? A reload
 * keeps a rule whose def is the same, with its instances, states and hold
 * timers, and only points it at the new owner data with rule_set_user. */
int rule_def_same(const struct rule_def *a, const struct rule_def *b);
void rule_set_user(struct rule *r, void *user);

/* Instances, for status and tests. */
struct rule_inst_info {
    vigil_series_id series;
    int state;
    int flapping;
    double value;
    int64_t since; /* ts of the last transition */
    int evaluated; /* a value has been judged since creation or nodata */
};
unsigned rule_instances(const struct rule *r);
int rule_instance_info(const struct rule *r, unsigned i,
                       struct rule_inst_info *out);

/* Evaluation counters (for bench and status). */
uint64_t rule_set_evals(const struct rule_set *rs);

const char *rule_state_name(int state);

#endif
