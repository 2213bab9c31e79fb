/*
 * rule - compiled threshold rules and their state machine.
 *
 * Layout: the set keeps an array of rule pointers in insertion order; the
 * rules themselves come from slabs, packed. A rule's first instance lives
 * inside it; more (one per matching series, created by the bus' series
 * callback) move to a growable array with an open-addressing map from
 * series id to instance index, so that the sample callback finds its
 * instance without scanning. Flap detection, when enabled, uses a
 * parallel array of transition times, flap_max + 1 per instance.
 *
 * Per-sample path (rule_sample_cb, or rule_sample_win_cb with a window):
 * find the instance, compute the statistic (window 0: the sample itself).
 * An instance that is ok and stays ok needs one range check and one cache
 * line of the rule. Otherwise: the raw level from thresholds compiled per
 * state when the rule was added, two "crossed at" times, one per boundary
 * (warning, critical), and, when the raw level differs from the state,
 * rule_step() for hold / clear_hold. No allocation, no formatting unless a
 * transition is emitted.
 *
 * Each instance has a machine state (what the hold/clear/nodata rules say)
 * and a shown state (what events and rule_instance_info report). They are
 * equal except while flapping, when the shown state is held.
 *
 * Reentrancy: the event callback may add and remove rules, publish, intern
 * and feed. Removal while any of our callbacks runs only unsubscribes and
 * marks the rule dead; it is freed when the outermost one returns. Code
 * that emits an event does it last, or re-reads its pointers afterwards:
 * instance arrays move when a callback interns a matching series.
 *
 * Semantics where rule.h leaves room:
 *  - Evaluation happens at each sample (at its ts) and at each tick (at
 *    `now`, with the newest value); events carry that time. A level has
 *    held for hold_ns when the evaluation time is hold_ns or more after the
 *    first sample at that level (a sample exactly hold_ns later enters).
 *    A tick and a sample at the same instant can disagree; drivers publish
 *    first, then tick (`vigil test` should too).
 *  - Critical clears to warning after clear_hold_ns under the critical
 *    level, and straight to ok only if it has also been under the warning
 *    level that long. Escalation may skip warning (ok -> critical).
 *  - Nodata is entered by rule_set_tick() only, once now - newest sample
 *    >= nodata_ns (event value NaN); a series that never published starts
 *    that clock at the first tick. Entering nodata forgets the hold timers.
 *    Leaving it: the first sample at ok goes to ok at once; a worse level
 *    waits for its hold, in nodata meanwhile.
 *  - A statistic that cannot be computed yet (too few samples) or is NaN
 *    changes nothing but still counts as data for nodata. A sample older
 *    than the newest one an instance has seen is ignored by the rule.
 *  - In a band, while in warning both edges use their clear levels (the ok
 *    range narrows to clear_below..clear_above), since a level alone does
 *    not say which edge was crossed.
 *  - Flapping counts the machine's transitions (nodata ones too). The one
 *    that makes flap_max + 1 within flap_window_ns is not shown: instead
 *    one event with flapping = 1 and from = to = the shown state. While
 *    flapping the machine runs on unseen (including nodata). It ends when
 *    the machine has not moved for flap_window_ns, checked at samples and
 *    ticks: one event with flapping = -1, from the held state to the
 *    machine's (equal or not).
 *  - Windows: when a rule with window_ns > 0 gets a series, the ring is
 *    reserved for one sample per second over the span (at most
 *    RULE_RESERVE_FIRST slots; the bus caps at window_max). A sample that
 *    finds the ring full with its oldest sample still inside the span
 *    flags it, and the next rule_set_tick() grows it from the observed
 *    spacing (span / spacing + 2, plus a quarter), so that nothing on the
 *    sample path allocates.
 */
#include "rule.h"

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RULE_NONE INT64_MIN
#define RULE_NS_PER_S 1000000000ll

/* Windows are first reserved for one sample per second over the span, at
 * most this many slots; rule_set_tick() grows them further from the
 * observed sample spacing when a ring turns out too short. */
#define RULE_RESERVE_FIRST 1024u

/* Rules per slab (see rule_alloc). */
#define RULE_SLAB 32u

/* Thresholds for one machine state, with unset levels as infinities so
 * that the level is four comparisons: above a (warn, crit) is worse, below
 * b (warn, crit) is worse. */
struct rule_lv {
    double aw, ac, bw, bc;
};

struct rule_inst {
    /* The first 32 bytes are what a sample in a steady state touches. */
    vigil_series_id series;
    uint8_t state; /* machine state, enum rule_state */
    uint8_t shown; /* reported state; held while flapping */
    uint8_t raw;   /* level of the newest evaluated value */
    uint8_t have;  /* raw and cross[] are valid (reset by nodata) */
    uint8_t flapping;
    uint8_t sampled; /* last_ts is a sample's, not a start time */
    uint8_t grow;    /* the ring dropped samples inside the span */
    uint8_t capped;  /* the ring cannot grow any more */
    uint8_t flap_n;  /* transition times held, <= flap_max + 1 */
    uint8_t flap_head;
    double value;     /* newest statistic */
    int64_t last_ts;  /* newest sample, else when the nodata clock started;
                       * RULE_NONE before either */
    int64_t cross[2]; /* when raw last crossed warning / critical */
    int64_t since;    /* last shown transition */
    int64_t changed;  /* last machine transition */
    const struct win *win;
};

/*
 * A sample for a rule over one series that is ok and stays ok reads and
 * writes the first 64 bytes only: the counters, the ok range and the hot
 * half of the first instance, which lives here for good (instances 1..
 * go to `more`). With thousands of rules every further cache line is a
 * miss per sample; the 3 KB def is out of line altogether.
 */
struct rule {
    /* Line 0. Rules come from 128-byte aligned slabs (rule_alloc). */
    _Alignas(128) uint32_t ninst;
    uint32_t map_shift; /* map has 1 << (32 - map_shift) slots */
    uint64_t evals;
    double ok_lo, ok_hi; /* in ok, a value in [ok_lo, ok_hi] stays ok */
    struct rule_inst inst0;
    /* Less often. */
    struct rule_inst *more; /* instances 1 .. ninst - 1 */
    uint32_t more_cap;
    int dead;
    int oom; /* an instance could not be allocated */
    int64_t window_ns;
    struct rule_set *rs;
    struct rule_lv lv[4]; /* by machine state; nodata's are ok's */
    uint32_t *map;        /* instance index + 1; 0 marks an empty slot */
    int64_t *flap;        /* (1 + more_cap) * (flap_max + 1), or NULL */
    struct bus_sub *sub;
    struct rule_def *def;   /* out of line: 3 KB, mostly the selector */
    struct rule *next_free; /* in rule_set.free_rules */
};

_Static_assert(offsetof(struct rule, inst0) +
                       offsetof(struct rule_inst, last_ts) + 8 <=
                   64,
               "a steady sample should touch one cache line of its rule");

struct rule_set {
    struct bus *bus;
    rule_event_cb cb;
    void *arg;
    struct rule **rules;
    uint32_t nrules, rules_cap;
    unsigned depth;      /* our callbacks in progress */
    unsigned ndead;      /* rules removed while depth > 0 */
    uint64_t evals_gone; /* evaluations of freed rules */
    /* Rules live in slabs of RULE_SLAB so that thousands of them pack
     * into few pages: allocated one by one, each would sit between its
     * def and its bus subscription, a TLB miss per sample. */
    struct rule **slabs;
    uint32_t nslabs, slabs_cap;
    struct rule *free_rules;
};

static int rule_isset(double v)
{
    return !isnan(v);
}

/* ---------------------------------------------------------------- levels */

/* The thresholds that apply in `state`: in warning or critical the clear
 * levels replace the warning levels, and in critical the critical clear
 * levels replace the critical ones, so that leaving a state takes a better
 * value than entering it. */
static void rule_lv_compile(const struct rule_def *d, int state,
                            struct rule_lv *lv)
{
    int inw = state == RULE_WARNING || state == RULE_CRITICAL;
    int inc = state == RULE_CRITICAL;

    lv->aw = !rule_isset(d->warn_above)          ? INFINITY
             : inw && rule_isset(d->clear_above) ? d->clear_above
                                                 : d->warn_above;
    lv->ac = !rule_isset(d->crit_above)               ? INFINITY
             : inc && rule_isset(d->crit_clear_above) ? d->crit_clear_above
                                                      : d->crit_above;
    lv->bw = !rule_isset(d->warn_below)          ? -INFINITY
             : inw && rule_isset(d->clear_below) ? d->clear_below
                                                 : d->warn_below;
    lv->bc = !rule_isset(d->crit_below)               ? -INFINITY
             : inc && rule_isset(d->crit_clear_below) ? d->crit_clear_below
                                                      : d->crit_below;
}

/* Strict comparisons; NaN compares false everywhere and is ok. */
static inline int rule_lv_level(const struct rule_lv *lv, double v)
{
    if (v > lv->ac || v < lv->bc) {
        return RULE_CRITICAL;
    }
    if (v > lv->aw || v < lv->bw) {
        return RULE_WARNING;
    }
    return RULE_OK;
}

/* The level of v for an instance in `state` (nodata counts as ok, with no
 * hysteresis). A NaN value is ok: it is above and below nothing. Does not
 * fail. */
int rule_level(const struct rule_def *def, int state, double v)
{
    struct rule_lv lv;

    rule_lv_compile(def, state, &lv);
    return rule_lv_level(&lv, v);
}

/* "ok", "warning", "critical", "nodata"; "?" for anything else. */
const char *rule_state_name(int state)
{
    switch (state) {
    case RULE_OK:
        return "ok";
    case RULE_WARNING:
        return "warning";
    case RULE_CRITICAL:
        return "critical";
    case RULE_NODATA:
        return "nodata";
    default:
        return "?";
    }
}

/* ------------------------------------------------------------ definitions */

/* Levels unset (NaN), everything else zero. Does not fail. */
void rule_def_init(struct rule_def *def)
{
    memset(def, 0, sizeof(*def));
    def->warn_above = NAN;
    def->crit_above = NAN;
    def->warn_below = NAN;
    def->crit_below = NAN;
    def->clear_above = NAN;
    def->clear_below = NAN;
    def->crit_clear_above = NAN;
    def->crit_clear_below = NAN;
}

struct rule_named {
    const char *name;
    double v;
};

/* A level and its clear level must be in order: the clear level of an
 * upper level (sign 1) lies under it, that of a lower level above it. */
static int rule_check_clear(const struct rule_def *d, struct rule_named lvl,
                            struct rule_named clr, int sign,
                            struct vigil_err *err)
{
    if (!rule_isset(clr.v)) {
        return 0;
    }
    if (!rule_isset(lvl.v)) {
        return err_set(err, VIGIL_EINVAL, "rule '%s': %s is set but %s is not",
                       d->name, clr.name, lvl.name);
    }
    if (sign > 0 && !(clr.v < lvl.v)) {
        return err_set(err, VIGIL_EINVAL,
                       "rule '%s': %s (%g) must be lower than %s (%g): it is "
                       "the level a value falls back under to leave",
                       d->name, clr.name, clr.v, lvl.name, lvl.v);
    }
    if (sign < 0 && !(clr.v > lvl.v)) {
        return err_set(err, VIGIL_EINVAL,
                       "rule '%s': %s (%g) must be higher than %s (%g): it is "
                       "the level a value climbs back over to leave",
                       d->name, clr.name, clr.v, lvl.name, lvl.v);
    }
    return 0;
}

/* The first set one of a and b (a when both are), or an unset one. */
static struct rule_named rule_pick(struct rule_named a, struct rule_named b)
{
    return rule_isset(a.v) ? a : b;
}

/* A lower level must be under an upper one, or the range between them,
 * which is where a value is better, would be empty; `why` says what that
 * would break. */
static int rule_check_band(const struct rule_def *d, struct rule_named lo,
                           struct rule_named hi, const char *why,
                           struct vigil_err *err)
{
    if (rule_isset(lo.v) && rule_isset(hi.v) && !(lo.v < hi.v)) {
        return err_set(err, VIGIL_EINVAL,
                       "rule '%s': %s (%g) must be lower than %s (%g): %s",
                       d->name, lo.name, lo.v, hi.name, hi.v, why);
    }
    return 0;
}

/* Every level of lo[] under every level of hi[]. */
static int rule_check_bands(const struct rule_def *d,
                            const struct rule_named lo[2],
                            const struct rule_named hi[2], const char *why,
                            struct vigil_err *err)
{
    for (int i = 0; i < 2; i++) {
        for (int j = 0; j < 2; j++) {
            int rc = rule_check_band(d, lo[i], hi[j], why, err);

            if (rc != 0) {
                return rc;
            }
        }
    }
    return 0;
}

static int rule_check_levels(const struct rule_def *d, struct vigil_err *err)
{
    const struct rule_named all[] = {
        {"warn_above", d->warn_above},
        {"crit_above", d->crit_above},
        {"warn_below", d->warn_below},
        {"crit_below", d->crit_below},
        {"clear_above", d->clear_above},
        {"clear_below", d->clear_below},
        {"crit_clear_above", d->crit_clear_above},
        {"crit_clear_below", d->crit_clear_below},
    };
    const struct rule_named *wa = &all[0], *ca = &all[1], *wb = &all[2],
                            *cb = &all[3], *cla = &all[4], *clb = &all[5],
                            *ccla = &all[6], *cclb = &all[7];
    int rc;

    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        if (isinf(all[i].v)) {
            return err_set(err, VIGIL_EINVAL,
                           "rule '%s': %s is infinite; leave it unset instead",
                           d->name, all[i].name);
        }
    }
    if (!rule_isset(wa->v) && !rule_isset(ca->v) && !rule_isset(wb->v) &&
        !rule_isset(cb->v)) {
        return err_set(err, VIGIL_EINVAL,
                       "rule '%s': no level set (warn_above, crit_above, "
                       "warn_below or crit_below)",
                       d->name);
    }
    if (rule_isset(wa->v) && rule_isset(ca->v) && !(ca->v > wa->v)) {
        return err_set(err, VIGIL_EINVAL,
                       "rule '%s': crit_above (%g) must be higher than "
                       "warn_above (%g)",
                       d->name, ca->v, wa->v);
    }
    if (rule_isset(wb->v) && rule_isset(cb->v) && !(cb->v < wb->v)) {
        return err_set(err, VIGIL_EINVAL,
                       "rule '%s': crit_below (%g) must be lower than "
                       "warn_below (%g)",
                       d->name, cb->v, wb->v);
    }
    /* A band: every lower level under every upper level. */
    {
        const struct rule_named lo[2] = {*cb, *wb}, hi[2] = {*wa, *ca};

        rc = rule_check_bands(d, lo, hi, "the band would be empty", err);
        if (rc != 0) {
            return rc;
        }
    }
    if ((rc = rule_check_clear(d, *wa, *cla, 1, err)) != 0 ||
        (rc = rule_check_clear(d, *ca, *ccla, 1, err)) != 0 ||
        (rc = rule_check_clear(d, *wb, *clb, -1, err)) != 0 ||
        (rc = rule_check_clear(d, *cb, *cclb, -1, err)) != 0) {
        return rc;
    }
    /* Clear levels move the edges inwards while in a state; the range
     * that leaves it must stay non-empty: ok from warning (the clear
     * levels against every level of the other side), and warning from
     * critical. */
    {
        const struct rule_named lo[2] = {rule_pick(*clb, *wb), *cb},
                                hi[2] = {rule_pick(*cla, *wa), *ca};
        const struct rule_named clo[2] = {rule_pick(*cclb, *cb), {"", NAN}},
                                chi[2] = {rule_pick(*ccla, *ca), {"", NAN}};

        rc = rule_check_bands(d, lo, hi, "warning could never clear", err);
        if (rc == 0) {
            rc = rule_check_bands(d, clo, chi, "critical could never clear",
                                  err);
        }
    }
    return rc;
}

static int rule_check_stat(const struct rule_def *d, struct vigil_err *err)
{
    char name[32];

    if (d->window_ns == 0) {
        if (d->stat.kind != 0 && d->stat.kind != WIN_LAST) {
            return err_set(err, VIGIL_EINVAL,
                           "rule '%s': statistic %s needs a window (window 0 "
                           "means the last sample)",
                           d->name, win_stat_name(d->stat, name, sizeof(name)));
        }
        return 0;
    }
    if (d->stat.kind < WIN_LAST || d->stat.kind > WIN_QUANTILE) {
        return err_set(err, VIGIL_EINVAL,
                       "rule '%s': unknown statistic (kind %d) for the window",
                       d->name, d->stat.kind);
    }
    if (d->stat.kind == WIN_QUANTILE &&
        !(d->stat.q >= 0.0 && d->stat.q <= 1.0)) {
        return err_set(err, VIGIL_EINVAL,
                       "rule '%s': quantile %g is outside [0, 1]", d->name,
                       d->stat.q);
    }
    return 0;
}

static int rule_check_selector(const struct rule_def *d, struct vigil_err *err)
{
    const struct bus_selector *s = &d->sel;

    if (memchr(s->name, '\0', sizeof(s->name)) == NULL) {
        return err_set(err, VIGIL_EINVAL,
                       "rule '%s': selector name is not terminated", d->name);
    }
    if (s->name[0] == '\0') {
        return err_set(err, VIGIL_EINVAL,
                       "rule '%s': no metric selector (a threshold rule needs "
                       "one)",
                       d->name);
    }
    if (s->n > BUS_MATCHERS_MAX) {
        return err_set(err, VIGIL_EINVAL,
                       "rule '%s': selector has %u label matchers, at most %d",
                       d->name, s->n, BUS_MATCHERS_MAX);
    }
    for (unsigned i = 0; i < s->n; i++) {
        if (memchr(s->m[i].key, '\0', sizeof(s->m[i].key)) == NULL ||
            memchr(s->m[i].value, '\0', sizeof(s->m[i].value)) == NULL) {
            return err_set(err, VIGIL_EINVAL,
                           "rule '%s': selector matcher %u is not terminated",
                           d->name, i + 1);
        }
    }
    return 0;
}

/* Check everything rule_add() relies on; the first problem found is
 * reported in err, prefixed "rule 'NAME': ". Levels are required and
 * checked for threshold rules only: a condition's owner computes the
 * level. Returns 0 or VIGIL_EINVAL. */
int rule_def_check(const struct rule_def *def, struct vigil_err *err)
{
    const struct {
        const char *name;
        int64_t v;
    } durs[] = {
        {"window", def->window_ns},           {"hold", def->hold_ns},
        {"clear_hold", def->clear_hold_ns},   {"nodata", def->nodata_ns},
        {"flap_window", def->flap_window_ns},
    };
    int rc;

    if (memchr(def->name, '\0', sizeof(def->name)) == NULL) {
        return err_set(err, VIGIL_EINVAL,
                       "rule name '%.40s...' is longer than %d bytes",
                       def->name, RULE_NAME_MAX - 1);
    }
    if (def->name[0] == '\0') {
        return err_set(err, VIGIL_EINVAL, "rule name is empty");
    }
    if (def->kind != RULE_THRESHOLD && def->kind != RULE_CONDITION) {
        return err_set(err, VIGIL_EINVAL,
                       "rule '%s': kind %d is neither threshold nor condition",
                       def->name, def->kind);
    }
    for (size_t i = 0; i < sizeof(durs) / sizeof(durs[0]); i++) {
        if (durs[i].v < 0) {
            return err_set(err, VIGIL_EINVAL,
                           "rule '%s': %s (%lld ns) is negative", def->name,
                           durs[i].name, (long long)durs[i].v);
        }
    }
    if (def->flap_max > RULE_FLAP_MAX) {
        return err_set(err, VIGIL_EINVAL,
                       "rule '%s': flap_max (%u) is more than %d", def->name,
                       def->flap_max, RULE_FLAP_MAX);
    }
    if (def->flap_max > 0 && def->flap_window_ns == 0) {
        return err_set(err, VIGIL_EINVAL,
                       "rule '%s': flap_max is set but flap_window is not",
                       def->name);
    }
    if (def->kind == RULE_CONDITION) {
        return 0;
    }
    if ((rc = rule_check_selector(def, err)) != 0 ||
        (rc = rule_check_stat(def, err)) != 0) {
        return rc;
    }
    return rule_check_levels(def, err);
}

/* NaN equals NaN here: both unset. */
static int rule_same_num(double a, double b)
{
    return (isnan(a) && isnan(b)) || a == b;
}

static int rule_same_sel(const struct bus_selector *a,
                         const struct bus_selector *b)
{
    if (strcmp(a->name, b->name) != 0 || a->n != b->n) {
        return 0;
    }
    for (unsigned i = 0; i < a->n && i < BUS_MATCHERS_MAX; i++) {
        if (strcmp(a->m[i].key, b->m[i].key) != 0 ||
            strcmp(a->m[i].value, b->m[i].value) != 0 ||
            !a->m[i].negate != !b->m[i].negate) {
            return 0;
        }
    }
    return 1;
}

/* 1 when a and b describe the same rule: every field but `user`, strings
 * compared as strings, unset levels equal to each other, q only for
 * quantiles, and the selector and statistic only for threshold rules (a
 * condition does not use them). Both defs must be checked. Does not
 * fail. */
int rule_def_same(const struct rule_def *a, const struct rule_def *b)
{
    if (strcmp(a->name, b->name) != 0 || a->kind != b->kind ||
        !rule_same_num(a->warn_above, b->warn_above) ||
        !rule_same_num(a->crit_above, b->crit_above) ||
        !rule_same_num(a->warn_below, b->warn_below) ||
        !rule_same_num(a->crit_below, b->crit_below) ||
        !rule_same_num(a->clear_above, b->clear_above) ||
        !rule_same_num(a->clear_below, b->clear_below) ||
        !rule_same_num(a->crit_clear_above, b->crit_clear_above) ||
        !rule_same_num(a->crit_clear_below, b->crit_clear_below) ||
        a->hold_ns != b->hold_ns || a->clear_hold_ns != b->clear_hold_ns ||
        a->nodata_ns != b->nodata_ns || a->flap_max != b->flap_max ||
        a->flap_window_ns != b->flap_window_ns ||
        a->fingerprint != b->fingerprint) {
        return 0;
    }
    if (a->kind != RULE_THRESHOLD) {
        return 1;
    }
    return rule_same_sel(&a->sel, &b->sel) && a->window_ns == b->window_ns &&
           a->stat.kind == b->stat.kind &&
           (a->stat.kind != WIN_QUANTILE || a->stat.q == b->stat.q);
}

/* ------------------------------------------------------------- reasons */

/* A duration for people: "1h30m", "2m", "45s", "500ms", "1.5s". */
static void rule_dur(int64_t ns, char *buf, size_t size)
{
    if (ns % RULE_NS_PER_S == 0) {
        long long s = ns / RULE_NS_PER_S, h = s / 3600, m = s / 60 % 60;
        int n = 0;

        s %= 60;
        if (h > 0) {
            n += snprintf(buf + n, size - (size_t)n, "%lldh", h);
        }
        if (m > 0) {
            n += snprintf(buf + n, size - (size_t)n, "%lldm", m);
        }
        if (s > 0 || n == 0) {
            snprintf(buf + n, size - (size_t)n, "%llds", s);
        }
    } else if (ns < RULE_NS_PER_S && ns % 1000000 == 0) {
        snprintf(buf, size, "%lldms", (long long)(ns / 1000000));
    } else {
        snprintf(buf, size, "%gs", (double)ns / RULE_NS_PER_S);
    }
}

/* Append to a reason; truncation is harmless. */
static void rule_cat(char *buf, size_t size, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void rule_cat(char *buf, size_t size, size_t *len, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (*len >= size) {
        return;
    }
    va_start(ap, fmt);
    n = vsnprintf(buf + *len, size - *len, fmt, ap);
    va_end(ap);
    if (n > 0) {
        *len += (size_t)n;
    }
}

/* Only levels of the "lower is worse" side: say so, as it reads
 * backwards otherwise. */
static int rule_below_only(const struct rule_def *d)
{
    return !rule_isset(d->warn_above) && !rule_isset(d->crit_above);
}

/* Why a threshold instance moved from machine state prev to `to` with the
 * value v, e.g. "p95 over 1m = 212 > crit 200 for 30s" or
 * "avg over 5m = 72 <= clear 75 for 1m". */
static void rule_reason_threshold(const struct rule *r, int prev, int to,
                                  double v, char *buf, size_t size)
{
    const struct rule_def *d = r->def;
    int ps = prev == RULE_NODATA ? RULE_OK : prev;
    const struct rule_lv *lv = &r->lv[ps];
    char stat[32], dur[32];
    size_t len = 0;

    if (prev == RULE_NODATA) {
        rule_cat(buf, size, &len, "data again: ");
    }
    if (d->window_ns > 0) {
        rule_dur(d->window_ns, dur, sizeof(dur));
        rule_cat(buf, size, &len, "%s over %s = %g",
                 win_stat_name(d->stat, stat, sizeof(stat)), dur, v);
    } else {
        rule_cat(buf, size, &len, "last = %g", v);
    }
    if (to > ps) {
        int crit = to == RULE_CRITICAL;
        double a = crit ? lv->ac : lv->aw, b = crit ? lv->bc : lv->bw;

        if (v > a) {
            rule_cat(buf, size, &len, " > %s %g", crit ? "crit" : "warn", a);
        } else {
            rule_cat(buf, size, &len, " < %s %g%s", crit ? "crit" : "warn", b,
                     rule_below_only(d) ? " (lower is worse)" : "");
        }
        if (d->hold_ns > 0) {
            rule_dur(d->hold_ns, dur, sizeof(dur));
            rule_cat(buf, size, &len, " for %s", dur);
        }
        return;
    }
    /* Leaving critical for warning, or anything for ok: name the level
     * that no longer holds, as it applied in the state left. Without
     * warning levels, ok is reached by leaving critical. */
    {
        int warn = to == RULE_OK &&
                   (rule_isset(d->warn_above) || rule_isset(d->warn_below));
        double a = warn ? lv->aw : lv->ac, b = warn ? lv->bw : lv->bc;
        const char *an, *bn;

        if (warn) {
            an = ps >= RULE_WARNING && rule_isset(d->clear_above) ? "clear"
                                                                  : "warn";
            bn = ps >= RULE_WARNING && rule_isset(d->clear_below) ? "clear"
                                                                  : "warn";
        } else {
            an = ps == RULE_CRITICAL && rule_isset(d->crit_clear_above)
                     ? "crit_clear"
                     : "crit";
            bn = ps == RULE_CRITICAL && rule_isset(d->crit_clear_below)
                     ? "crit_clear"
                     : "crit";
        }
        if (isfinite(a) && isfinite(b)) {
            rule_cat(buf, size, &len, " within %g..%g", b, a);
        } else if (isfinite(a)) {
            rule_cat(buf, size, &len, " <= %s %g", an, a);
        } else if (isfinite(b)) {
            rule_cat(buf, size, &len, " >= %s %g%s", bn, b,
                     rule_below_only(d) ? " (lower is worse)" : "");
        }
    }
    if (prev != RULE_NODATA && d->clear_hold_ns > 0) {
        rule_dur(d->clear_hold_ns, dur, sizeof(dur));
        rule_cat(buf, size, &len, " for %s", dur);
    }
}

/* The reason of a machine transition prev -> to. */
static void rule_reason(const struct rule *r, int prev, int to, double v,
                        char *buf, size_t size)
{
    const struct rule_def *d = r->def;
    char dur[32];
    size_t len = 0;
    int64_t held;

    if (to == RULE_NODATA) {
        rule_dur(d->nodata_ns, dur, sizeof(dur));
        rule_cat(buf, size, &len, "no data for %s", dur);
        return;
    }
    if (d->kind == RULE_THRESHOLD) {
        rule_reason_threshold(r, prev, to, v, buf, size);
        return;
    }
    rule_cat(buf, size, &len, "%scondition %s, value %g",
             prev == RULE_NODATA ? "data again: " : "", rule_state_name(to), v);
    held = prev == RULE_NODATA || to > prev ? d->hold_ns : d->clear_hold_ns;
    if (held > 0 && !(prev == RULE_NODATA && to == RULE_OK)) {
        rule_dur(held, dur, sizeof(dur));
        rule_cat(buf, size, &len, " for %s", dur);
    }
}

/* --------------------------------------------------------------- events */

/* A zeroed rule from the set's slabs, or NULL. */
static struct rule *rule_alloc(struct rule_set *rs)
{
    struct rule *r;

    if (rs->free_rules == NULL) {
        struct rule *slab;

        if (rs->nslabs == rs->slabs_cap) {
            uint32_t cap = rs->slabs_cap ? rs->slabs_cap * 2 : 8;
            struct rule **p = realloc(rs->slabs, cap * sizeof(*p));

            if (p == NULL) {
                return NULL;
            }
            rs->slabs = p;
            rs->slabs_cap = cap;
        }
        slab = aligned_alloc(_Alignof(struct rule), RULE_SLAB * sizeof(*slab));
        if (slab == NULL) {
            return NULL;
        }
        rs->slabs[rs->nslabs++] = slab;
        /* Backwards, so that rules are handed out in address order. */
        for (uint32_t i = RULE_SLAB; i-- > 0;) {
            slab[i].next_free = rs->free_rules;
            rs->free_rules = &slab[i];
        }
    }
    r = rs->free_rules;
    rs->free_rules = r->next_free;
    memset(r, 0, sizeof(*r));
    return r;
}

/* Free what a rule owns (not its subscription) and return it to the
 * slabs. Accepts NULL. */
static void rule_release(struct rule_set *rs, struct rule *r)
{
    if (r == NULL) {
        return;
    }
    free(r->more);
    free(r->map);
    free(r->flap);
    free(r->def);
    memset(r, 0, sizeof(*r));
    r->next_free = rs->free_rules;
    rs->free_rules = r;
}

/* Drop a rule from the set's array, keeping the order, and free it. */
static void rule_drop(struct rule_set *rs, uint32_t i)
{
    struct rule *r = rs->rules[i];

    rs->evals_gone += r->evals;
    memmove(&rs->rules[i], &rs->rules[i + 1],
            (rs->nrules - i - 1) * sizeof(*rs->rules));
    rs->nrules--;
    rule_release(rs, r);
}

/* Leave a callback section; the outermost one frees the rules removed
 * meanwhile. */
static void rule_leave(struct rule_set *rs)
{
    if (--rs->depth > 0 || rs->ndead == 0) {
        return;
    }
    for (uint32_t i = rs->nrules; i-- > 0;) {
        if (rs->rules[i]->dead) {
            rule_drop(rs, i);
        }
    }
    rs->ndead = 0;
}

struct rule_emit {
    int prev; /* machine state before, for the reason */
    int from, to;
    int flapping;
    double value;
};

/* Format and deliver one event. The callers' last act: once the callback
 * returns, r and in may be gone (removed, or the array moved). */
static void rule_emit(struct rule *r, struct rule_inst *in, int64_t ts,
                      const struct rule_emit *e)
{
    struct rule_set *rs = r->rs;
    struct rule_event ev;
    char reason[256], dur[32];

    if (rs->cb == NULL) {
        return;
    }
    if (e->flapping > 0) {
        rule_dur(r->def->flap_window_ns, dur, sizeof(dur));
        snprintf(reason, sizeof(reason),
                 "flapping: %u state changes within %s, holding %s",
                 r->def->flap_max + 1, dur, rule_state_name(e->from));
    } else if (e->flapping < 0) {
        rule_dur(r->def->flap_window_ns, dur, sizeof(dur));
        snprintf(reason, sizeof(reason), "flapping ended: stable for %s%s%s",
                 dur, e->from != e->to ? ", now " : "",
                 e->from != e->to ? rule_state_name(e->to) : "");
    } else {
        rule_reason(r, e->prev, e->to, e->value, reason, sizeof(reason));
    }
    ev.def = r->def;
    ev.series = in->series;
    ev.ts = ts;
    ev.from = e->from;
    ev.to = e->to;
    ev.value = e->value;
    ev.flapping = e->flapping;
    ev.reason = reason;
    rs->depth++;
    rs->cb(rs->arg, &ev);
    rule_leave(rs);
}

/* Record a machine transition at t in the flap ring; 1 when it is one
 * too many for the window. */
static int rule_flap_push(struct rule *r, struct rule_inst *in, int64_t t)
{
    uint32_t n = r->def->flap_max + 1;
    size_t k = in == &r->inst0 ? 0 : (size_t)(in - r->more) + 1;
    int64_t *ring = r->flap + k * n;
    uint32_t oldest;

    ring[in->flap_head] = t;
    in->flap_head = (uint8_t)(in->flap_head + 1u == n ? 0 : in->flap_head + 1u);
    if (in->flap_n < n) {
        in->flap_n++;
        if (in->flap_n < n) {
            return 0;
        }
    }
    oldest = in->flap_head; /* full: the next write goes over the oldest */
    return t - ring[oldest] <= r->def->flap_window_ns;
}

/* Move the machine to `to` at t and tell the owner, unless flapping holds
 * the shown state. Emits last. */
static void rule_transition(struct rule *r, struct rule_inst *in, int64_t t,
                            int to)
{
    struct rule_emit e = {in->state, in->shown, to, 0, in->value};

    in->state = (uint8_t)to;
    in->changed = t;
    if (to == RULE_NODATA) {
        e.value = NAN;
    }
    if (r->flap != NULL && rule_flap_push(r, in, t) && !in->flapping) {
        in->flapping = 1;
        e.to = e.from;
        e.flapping = 1;
        rule_emit(r, in, t, &e);
        return;
    }
    if (in->flapping) {
        return;
    }
    in->shown = (uint8_t)to;
    in->since = t;
    rule_emit(r, in, t, &e);
}

/* Flapping ends once the machine state has stood still for the flap
 * window: one event, to where the machine is. Emits last. */
static void rule_flap_end(struct rule *r, struct rule_inst *in, int64_t t)
{
    struct rule_emit e = {in->state, in->shown, in->state, -1, in->value};

    if (in->state == RULE_NODATA) {
        e.value = NAN;
    }
    in->flapping = 0;
    in->flap_n = 0;
    in->flap_head = 0;
    if (in->shown != in->state) {
        in->shown = in->state;
        in->since = t;
    }
    rule_emit(r, in, t, &e);
}

/* ------------------------------------------------------------- machine */

/*
 * Apply hold and clear_hold at time t with the current raw level; at most
 * one transition. cross[0] is when raw last crossed the warning boundary
 * (so raw >= warning, or raw < warning, has held since then), cross[1] the
 * same for critical. Leaving nodata for ok needs no clear_hold: there is
 * no incident to keep open. Emits last.
 */
static void rule_step(struct rule *r, struct rule_inst *in, int64_t t)
{
    int s = in->state, raw = in->raw, to = s;
    int64_t hw = t - in->cross[0], hc = t - in->cross[1];
    int64_t hold = r->def->hold_ns, clear = r->def->clear_hold_ns;

    if (s == RULE_NODATA) {
        if (raw == RULE_CRITICAL && hc >= hold) {
            to = RULE_CRITICAL;
        } else if (raw >= RULE_WARNING && hw >= hold) {
            to = RULE_WARNING;
        } else if (raw == RULE_OK) {
            to = RULE_OK;
        }
    } else if (raw > s) {
        if (raw == RULE_CRITICAL && hc >= hold) {
            to = RULE_CRITICAL;
        } else if (s == RULE_OK && hw >= hold) {
            to = RULE_WARNING;
        }
    } else if (raw < s) {
        if (s == RULE_CRITICAL && hc >= clear) {
            to = raw == RULE_OK && hw >= clear ? RULE_OK : RULE_WARNING;
        } else if (s == RULE_WARNING && hw >= clear) {
            to = RULE_OK;
        }
    }
    if (to != s) {
        rule_transition(r, in, t, to);
    } else if (in->flapping && t - in->changed >= r->def->flap_window_ns) {
        rule_flap_end(r, in, t);
    }
}

/* Evaluate level raw (value v) at t. Emits last. */
static inline void rule_eval(struct rule *r, struct rule_inst *in, int64_t t,
                             int raw, double v)
{
    in->value = v;
    if (!in->have) {
        in->have = 1;
        in->cross[0] = t;
        in->cross[1] = t;
        if (in->since == RULE_NONE) {
            in->since = t;
        }
    } else if (raw != in->raw) {
        if ((raw >= RULE_WARNING) != (in->raw >= RULE_WARNING)) {
            in->cross[0] = t;
        }
        if ((raw >= RULE_CRITICAL) != (in->raw >= RULE_CRITICAL)) {
            in->cross[1] = t;
        }
    }
    in->raw = (uint8_t)raw;
    if (raw == in->state && !in->flapping) {
        return; /* the common case: nothing to hold, nothing to clear */
    }
    rule_step(r, in, t);
}

/* ------------------------------------------------------------ instances */

static inline uint32_t rule_hash(vigil_series_id id, uint32_t shift)
{
    return (id * 2654435769u) >> shift; /* Fibonacci hashing */
}

/* Instance k, 0 <= k < ninst. */
static inline struct rule_inst *rule_inst_at(const struct rule *r, uint32_t k)
{
    return k == 0 ? (struct rule_inst *)&r->inst0 : &r->more[k - 1];
}

static inline struct rule_inst *rule_inst_of(const struct rule *r,
                                             vigil_series_id id)
{
    uint32_t mask, i;

    if (r->ninst <= 1) {
        return r->ninst == 1 && r->inst0.series == id
                   ? (struct rule_inst *)&r->inst0
                   : NULL;
    }
    mask = (UINT32_MAX >> r->map_shift);
    for (i = rule_hash(id, r->map_shift);; i = (i + 1) & mask) {
        uint32_t k = r->map[i];

        if (k == 0) {
            return NULL;
        }
        if (rule_inst_at(r, k - 1)->series == id) {
            return rule_inst_at(r, k - 1);
        }
    }
}

/* Rebuild the map with room for n instances, at most half full. */
static int rule_map_reserve(struct rule *r, uint32_t n)
{
    uint32_t bits = 4, shift, mask, *map;

    while (bits < 31 && (1u << bits) < 2 * (uint64_t)n) {
        bits++;
    }
    shift = 32 - bits;
    if (r->map != NULL && shift == r->map_shift) {
        return 0;
    }
    map = calloc((size_t)1 << bits, sizeof(*map));
    if (map == NULL) {
        return VIGIL_ENOMEM;
    }
    mask = UINT32_MAX >> shift;
    for (uint32_t k = 0; k < r->ninst; k++) {
        uint32_t i = rule_hash(rule_inst_at(r, k)->series, shift);

        while (map[i] != 0) {
            i = (i + 1) & mask;
        }
        map[i] = k + 1;
    }
    free(r->map);
    r->map = map;
    r->map_shift = shift;
    return 0;
}

/* Make room for one more instance: `more`, the flap rings and the map
 * (which a single instance does without). A failure leaves nothing that
 * matters changed: bigger arrays are harmless. */
static int rule_inst_reserve(struct rule *r)
{
    if (r->ninst == 0) {
        return 0; /* inst0, whose flap ring rule_add() allocated */
    }
    if (r->ninst - 1 == r->more_cap) {
        uint32_t cap = r->more_cap < 4 ? 4 : r->more_cap * 2;
        struct rule_inst *p;

        if (r->more_cap >= UINT32_MAX / 4) {
            return VIGIL_ELIMIT;
        }
        p = realloc(r->more, (size_t)cap * sizeof(*p));
        if (p == NULL) {
            return VIGIL_ENOMEM;
        }
        r->more = p;
        if (r->def->flap_max > 0) {
            size_t n = r->def->flap_max + 1u;
            int64_t *f = realloc(r->flap, (1 + (size_t)cap) * n * sizeof(*f));

            if (f == NULL) {
                return VIGIL_ENOMEM;
            }
            r->flap = f;
        }
        r->more_cap = cap;
    }
    return rule_map_reserve(r, r->ninst + 1);
}

/* Slots of a window that holds window_ns at one sample per second. */
static uint32_t rule_first_slots(int64_t window_ns)
{
    int64_t s = window_ns / RULE_NS_PER_S + 2;

    return s > RULE_RESERVE_FIRST ? RULE_RESERVE_FIRST : (uint32_t)s;
}

/* Create the instance of series id (RULE_NO_SERIES for a condition). The
 * nodata clock starts at the series' newest sample if it has one, else at
 * the first tick. Returns the instance or NULL (out of memory). */
static struct rule_inst *rule_inst_add(struct rule *r, vigil_series_id id)
{
    struct rule_inst *in;
    uint32_t mask, i;

    if (rule_inst_reserve(r) != 0) {
        r->oom = 1;
        return NULL;
    }
    in = r->ninst == 0 ? &r->inst0 : &r->more[r->ninst - 1];
    memset(in, 0, sizeof(*in));
    in->series = id;
    in->state = RULE_OK;
    in->shown = RULE_OK;
    in->last_ts = RULE_NONE;
    in->since = RULE_NONE;
    in->changed = RULE_NONE;
    if (r->def->kind == RULE_THRESHOLD) {
        const struct win_sample *last;

        in->win = bus_window(r->rs->bus, id);
        if (r->window_ns > 0) {
            /* Failure only means a shorter span until a tick grows it. */
            (void)bus_reserve(r->rs->bus, id, rule_first_slots(r->window_ns));
        }
        last = win_last(in->win);
        if (last != NULL) {
            in->last_ts = last->ts;
        }
    }
    if (r->map != NULL) {
        mask = UINT32_MAX >> r->map_shift;
        for (i = rule_hash(id, r->map_shift); r->map[i] != 0;
             i = (i + 1) & mask) {
        }
        r->map[i] = r->ninst + 1;
    }
    r->ninst++;
    return in;
}

/* Bus: a series starts matching the rule. */
static void rule_series_cb(void *arg, vigil_series_id id)
{
    struct rule *r = arg;

    if (rule_inst_of(r, id) == NULL) {
        (void)rule_inst_add(r, id);
    }
}

/* The instance of a sample, or NULL. Creating one here happens only when
 * allocating at series creation failed: this retries. */
static inline struct rule_inst *rule_inst_get(struct rule *r,
                                              vigil_series_id id)
{
    struct rule_inst *in;

    if (r->ninst == 1 && r->inst0.series == id) {
        return &r->inst0;
    }
    in = rule_inst_of(r, id);
    return in != NULL ? in : rule_inst_add(r, id);
}

/* Take a sample (or feed) at ts as the newest, unless it is older than
 * what the state already reflects. */
static inline int rule_accept(struct rule *r, struct rule_inst *in, int64_t ts)
{
    if (in->sampled && ts < in->last_ts) {
        return 0;
    }
    in->last_ts = ts;
    in->sampled = 1;
    r->evals++;
    return 1;
}

/* The level of the statistic v, then the state machine. Emits last. */
static inline void rule_take(struct rule *r, struct rule_inst *in, int64_t ts,
                             double v)
{
    /* Ok and staying ok: nothing to hold, clear or time. */
    if (in->state == RULE_OK && in->raw == RULE_OK && in->have &&
        !in->flapping && v >= r->ok_lo && v <= r->ok_hi) {
        in->value = v;
        return;
    }
    if (isnan(v)) {
        return; /* no evidence either way */
    }
    rule_eval(r, in, ts, rule_lv_level(&r->lv[in->state], v), v);
}

/* Bus: one sample of a series matched by a rule with window 0. The
 * per-sample path. */
static void rule_sample_cb(void *arg, vigil_series_id id, int64_t ts, double v)
{
    struct rule *r = arg;
    struct rule_inst *in = rule_inst_get(r, id);

    if (in != NULL && rule_accept(r, in, ts)) {
        rule_take(r, in, ts, v);
    }
}

/* Is the sample at ts the newest of a full ring whose oldest sample is
 * still inside the span, i.e. has the ring already dropped samples the
 * statistic needs? Reads the slot next to the newest: no extra miss. */
static inline int rule_ring_short(const struct win *w, int64_t ts, int64_t span)
{
    int64_t lo;

    if (w->len < w->cap || __builtin_sub_overflow(ts, span, &lo)) {
        return 0;
    }
    return w->buf[w->head].ts > lo;
}

/* Bus: one sample for a rule with a window: the statistic first. */
static void rule_sample_win_cb(void *arg, vigil_series_id id, int64_t ts,
                               double v)
{
    struct rule *r = arg;
    struct rule_inst *in = rule_inst_get(r, id);

    if (in == NULL || !rule_accept(r, in, ts)) {
        return;
    }
    if (!in->capped && rule_ring_short(in->win, ts, r->window_ns)) {
        in->grow = 1; /* rule_set_tick() reserves; no malloc here */
    }
    if (bus_stat(r->rs->bus, id, r->def->stat, ts, r->window_ns, &v) != 0) {
        return; /* too few samples for the statistic yet */
    }
    rule_take(r, in, ts, v);
}

/* Grow a ring that proved too short, from the spacing of the samples it
 * holds: the span over that spacing, plus a quarter. */
static void rule_grow(struct rule *r, struct rule_inst *in)
{
    const struct win *w = in->win;
    const struct win_sample *last = win_last(w);
    double need, spacing;
    uint32_t cap = w->cap;

    in->grow = 0;
    if (last == NULL || w->len < 2) {
        return;
    }
    spacing = (double)(last->ts - w->buf[w->head].ts) / (w->len - 1);
    need = spacing > 0 ? (double)r->window_ns / spacing + 2 : 2.0 * cap;
    need *= 1.25;
    if (need < 1.5 * cap) {
        need = 1.5 * cap; /* bursts: grow geometrically at least */
    }
    if (need > UINT32_MAX) {
        need = UINT32_MAX;
    }
    if (bus_reserve(r->rs->bus, in->series, (uint32_t)need) == 0 &&
        w->cap == cap) {
        in->capped = 1; /* at the bus' window_max */
    }
}

/* Time-based work for one instance at now. Emits last. */
static void rule_tick_inst(struct rule *r, struct rule_inst *in, int64_t now)
{
    if (in->grow) {
        rule_grow(r, in);
    }
    if (in->last_ts == RULE_NONE) {
        in->last_ts = now; /* never had data: start the nodata clock */
    }
    if (in->since == RULE_NONE) {
        in->since = now;
    }
    if (r->def->nodata_ns > 0 && now - in->last_ts >= r->def->nodata_ns) {
        /* Fresh timers: after nodata, holds count from the next sample. */
        in->have = 0;
        if (in->state != RULE_NODATA) {
            rule_transition(r, in, now, RULE_NODATA);
            return;
        }
    }
    if (in->have) {
        rule_step(r, in, now);
    } else if (in->flapping && now - in->changed >= r->def->flap_window_ns) {
        rule_flap_end(r, in, now);
    }
}

/* ------------------------------------------------------------------ set */

/* The set borrows bus (which must outlive it); cb (may be NULL) gets
 * every event. Returns 0 or VIGIL_ENOMEM. */
int rule_set_create(struct bus *bus, rule_event_cb cb, void *arg,
                    struct rule_set **out)
{
    struct rule_set *rs;

    *out = NULL;
    rs = calloc(1, sizeof(*rs));
    if (rs == NULL) {
        return VIGIL_ENOMEM;
    }
    rs->bus = bus;
    rs->cb = cb;
    rs->arg = arg;
    *out = rs;
    return 0;
}

/* Unsubscribe and free every rule, then the set. Not from inside an event
 * callback. Accepts NULL. Does not fail. */
void rule_set_destroy(struct rule_set *rs)
{
    if (rs == NULL) {
        return;
    }
    for (uint32_t i = 0; i < rs->nrules; i++) {
        bus_unsubscribe(rs->bus, rs->rules[i]->sub);
        rule_release(rs, rs->rules[i]);
    }
    for (uint32_t i = 0; i < rs->nslabs; i++) {
        free(rs->slabs[i]);
    }
    free(rs->slabs);
    free(rs->rules);
    free(rs);
}

/* The live rule called name, or NULL. Borrowed until rule_remove(). */
struct rule *rule_find(const struct rule_set *rs, const char *name)
{
    for (uint32_t i = 0; i < rs->nrules; i++) {
        if (!rs->rules[i]->dead && strcmp(rs->rules[i]->def->name, name) == 0) {
            return rs->rules[i];
        }
    }
    return NULL;
}

/* Check and copy def, compile its levels, subscribe (threshold) or create
 * the single instance (condition). Returns 0, VIGIL_EINVAL, VIGIL_EEXIST,
 * VIGIL_ELIMIT (bus subscriber limit) or VIGIL_ENOMEM, with a message in
 * err; on failure nothing is left behind. */
int rule_add(struct rule_set *rs, const struct rule_def *def, struct rule **out,
             struct vigil_err *err)
{
    struct rule *r = NULL;
    int rc;

    if (out != NULL) {
        *out = NULL;
    }
    rc = rule_def_check(def, err);
    if (rc != 0) {
        return rc;
    }
    if (rule_find(rs, def->name) != NULL) {
        return err_set(err, VIGIL_EEXIST, "rule '%s' already exists",
                       def->name);
    }
    if (rs->nrules == rs->rules_cap) {
        uint32_t cap = rs->rules_cap ? rs->rules_cap * 2 : 16;
        struct rule **p = realloc(rs->rules, cap * sizeof(*p));

        if (p == NULL) {
            return err_set(err, VIGIL_ENOMEM, "rule '%s': out of memory",
                           def->name);
        }
        rs->rules = p;
        rs->rules_cap = cap;
    }
    r = rule_alloc(rs);
    if (r == NULL) {
        return err_set(err, VIGIL_ENOMEM, "rule '%s': out of memory",
                       def->name);
    }
    r->rs = rs;
    r->def = malloc(sizeof(*r->def));
    if (r->def == NULL) {
        rc = err_set(err, VIGIL_ENOMEM, "rule '%s': out of memory", def->name);
        goto out;
    }
    *r->def = *def;
    r->window_ns = def->window_ns;
    for (int s = RULE_OK; s <= RULE_NODATA; s++) {
        rule_lv_compile(r->def, s, &r->lv[s]);
    }
    /* rule_lv_level() says ok exactly when no comparison holds. */
    r->ok_lo = fmax(r->lv[RULE_OK].bw, r->lv[RULE_OK].bc);
    r->ok_hi = fmin(r->lv[RULE_OK].aw, r->lv[RULE_OK].ac);
    if (def->flap_max > 0) {
        r->flap = malloc((def->flap_max + 1u) * sizeof(*r->flap));
        if (r->flap == NULL) {
            rc = err_set(err, VIGIL_ENOMEM, "rule '%s': out of memory",
                         def->name);
            goto out;
        }
    }
    if (def->kind == RULE_CONDITION) {
        if (rule_inst_add(r, RULE_NO_SERIES) == NULL) {
            rc = err_set(err, VIGIL_ENOMEM, "rule '%s': out of memory",
                         def->name);
            goto out;
        }
    } else {
        rc = bus_subscribe(rs->bus, &r->def->sel,
                           r->window_ns > 0 ? rule_sample_win_cb
                                            : rule_sample_cb,
                           rule_series_cb, r, &r->sub);
        if (rc == 0 && r->oom) {
            rc = VIGIL_ENOMEM;
        }
        if (rc != 0) {
            rc = err_set(err, rc, "rule '%s': subscribing to %s: %s", def->name,
                         def->sel.name, vigil_strerror(rc));
            goto out;
        }
    }
    rs->rules[rs->nrules++] = r;
    if (out != NULL) {
        *out = r;
    }
    r = NULL;
    rc = 0;
out:
    if (r != NULL) {
        bus_unsubscribe(rs->bus, r->sub);
        rule_release(rs, r);
    }
    return rc;
}

/* Unsubscribe at once; free now, or when the outermost event callback
 * returns if one is running. Accepts NULL. Does not fail. */
void rule_remove(struct rule_set *rs, struct rule *r)
{
    if (r == NULL || r->dead) {
        return;
    }
    bus_unsubscribe(rs->bus, r->sub);
    r->sub = NULL;
    for (uint32_t i = 0; i < rs->nrules; i++) {
        if (rs->rules[i] != r) {
            continue;
        }
        if (rs->depth > 0) {
            r->dead = 1;
            rs->ndead++;
        } else {
            rule_drop(rs, i);
        }
        return;
    }
}

/* Borrowed for the life of the rule. */
const struct rule_def *rule_get_def(const struct rule *r)
{
    return r->def;
}

/* Reload: keep the rule, point it at the new owner data. Does not fail. */
void rule_set_user(struct rule *r, void *user)
{
    r->def->user = user;
}

/* Feed a condition rule's single instance with the level its owner
 * computed and the value to show. A level outside ok..critical
 * (RULE_NODATA included) is not data: it is ignored, and the nodata
 * timeout runs on. So are feeds older than the newest one, feeds to a
 * threshold rule and NULL. Does not fail. */
void rule_feed(struct rule_set *rs, struct rule *r, int64_t ts, int level,
               double value)
{
    struct rule_inst *in;

    (void)rs;
    if (r == NULL || r->dead || r->def->kind != RULE_CONDITION ||
        r->ninst == 0 || level < RULE_OK || level > RULE_CRITICAL) {
        return;
    }
    in = &r->inst0;
    if (rule_accept(r, in, ts)) {
        rule_eval(r, in, ts, level, value);
    }
}

/* Visit every instance of every live rule. A callback may add or remove
 * rules and grow instance arrays, so both are re-read by index after each
 * instance, and removed rules wait for the end. */
void rule_set_tick(struct rule_set *rs, int64_t now)
{
    rs->depth++;
    for (uint32_t i = 0; i < rs->nrules; i++) {
        struct rule *r = rs->rules[i];

        for (uint32_t k = 0; k < r->ninst && !r->dead; k++) {
            rule_tick_inst(r, rule_inst_at(r, k), now);
        }
    }
    rule_leave(rs);
}

/* Number of instances. Does not fail. */
unsigned rule_instances(const struct rule *r)
{
    return r->ninst;
}

/* Instance i in creation order; the state is the shown one (held while
 * flapping). Returns 0 or VIGIL_ENOENT. */
int rule_instance_info(const struct rule *r, unsigned i,
                       struct rule_inst_info *out)
{
    const struct rule_inst *in;

    if (i >= r->ninst) {
        return VIGIL_ENOENT;
    }
    in = rule_inst_at(r, i);
    out->series = in->series;
    out->state = in->shown;
    out->flapping = in->flapping;
    out->value = in->state == RULE_NODATA ? NAN : in->value;
    out->since = in->since == RULE_NONE ? 0 : in->since;
    out->evaluated = in->have;
    return 0;
}

/* Samples and feeds evaluated since the set was created. Does not fail. */
uint64_t rule_set_evals(const struct rule_set *rs)
{
    uint64_t n = rs->evals_gone;

    for (uint32_t i = 0; i < rs->nrules; i++) {
        n += rs->rules[i]->evals;
    }
    return n;
}
