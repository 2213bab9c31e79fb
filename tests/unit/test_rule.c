/* Unit tests for core/rule.c on a real bus and a virtual clock: levels in
 * every direction with strict comparisons, hold and clear_hold, escalation
 * and de-escalation, hysteresis, nodata, holds completed by ticks,
 * flapping, per-series instances, window statistics and window growth,
 * condition rules, definition checks and comparison, removal (also from
 * inside a callback), and the reasons given in events. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "rule.h"

#define EPOCH_NS 1700000000000000000ll
#define S(x) ((int64_t)(x)*1000000000ll)
#define T(x) (EPOCH_NS + S(x))
#define MS(x) ((int64_t)(x)*1000000ll)

/* ---------------------------------------------------------------- helpers */

#define EV_MAX 64

struct ev {
    char rule[RULE_NAME_MAX];
    vigil_series_id series;
    int64_t ts;
    int from, to, flapping;
    double value;
    char reason[256];
    void *user;
};

struct fx {
    struct bus *bus;
    struct rule_set *rs;
    int n;
    struct ev ev[EV_MAX];
    /* Actions taken from inside the event callback: on event i, remove
     * remove_at[i]. */
    struct rule *remove_at[EV_MAX];
    const char *intern_on_event;
};

static void fx_intern_labels(struct fx *fx, const char *name, const char *k,
                             const char *v, vigil_series_id *id)
{
    struct vigil_err err = {0};
    struct vigil_label l = {k, v};

    if (bus_intern(fx->bus, name, k != NULL ? &l : NULL, k != NULL ? 1 : 0, id,
                   &err) != 0) {
        fail_msg("intern %s: %s", name, err.msg);
    }
}

static void on_event(void *arg, const struct rule_event *e)
{
    struct fx *fx = arg;
    struct ev *ev;

    if (fx->n == EV_MAX) {
        fail_msg("more than %d events", EV_MAX);
    }
    ev = &fx->ev[fx->n++];
    snprintf(ev->rule, sizeof(ev->rule), "%s", e->def->name);
    ev->series = e->series;
    ev->ts = e->ts;
    ev->from = e->from;
    ev->to = e->to;
    ev->flapping = e->flapping;
    ev->value = e->value;
    snprintf(ev->reason, sizeof(ev->reason), "%s", e->reason);
    ev->user = e->def->user;
    if (fx->remove_at[fx->n - 1] != NULL) {
        rule_remove(fx->rs, fx->remove_at[fx->n - 1]);
    }
    if (fx->intern_on_event != NULL) {
        vigil_series_id id;
        const char *v = fx->intern_on_event;

        fx->intern_on_event = NULL;
        fx_intern_labels(fx, "proc.cpu", "name", v, &id);
    }
}

static int fx_setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));

    assert_non_null(fx);
    assert_int_equal(bus_create(NULL, &fx->bus), 0);
    assert_int_equal(rule_set_create(fx->bus, on_event, fx, &fx->rs), 0);
    *state = fx;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *fx = *state;

    rule_set_destroy(fx->rs);
    bus_destroy(fx->bus);
    free(fx);
    return 0;
}

static vigil_series_id fx_series(struct fx *fx, const char *name)
{
    vigil_series_id id;

    fx_intern_labels(fx, name, NULL, NULL, &id);
    return id;
}

/* A threshold def on selector text, stat last, window 0. */
static void def_threshold(struct rule_def *d, const char *name,
                          const char *selector)
{
    struct vigil_err err = {0};

    rule_def_init(d);
    snprintf(d->name, sizeof(d->name), "%s", name);
    d->kind = RULE_THRESHOLD;
    if (bus_selector_parse(selector, &d->sel, &err) != 0) {
        fail_msg("selector %s: %s", selector, err.msg);
    }
}

static struct rule *fx_add(struct fx *fx, const struct rule_def *d)
{
    struct vigil_err err = {0};
    struct rule *r = NULL;
    int rc = rule_add(fx->rs, d, &r, &err);

    if (rc != 0) {
        fail_msg("rule_add %s: %d %s", d->name, rc, err.msg);
    }
    assert_non_null(r);
    return r;
}

static void pub(struct fx *fx, vigil_series_id id, int64_t ts, double v)
{
    bus_publish(fx->bus, id, ts, v);
}

/* Event i is from -> to at ts, not a flapping event. */
static void assert_ev(const struct fx *fx, int i, int64_t ts, int from, int to)
{
    if (i >= fx->n) {
        fail_msg("event %d missing (%d events)", i, fx->n);
    }
    if (fx->ev[i].ts != ts || fx->ev[i].from != from || fx->ev[i].to != to ||
        fx->ev[i].flapping != 0) {
        fail_msg("event %d: got %s -> %s at %+llds flapping %d (%s), want "
                 "%s -> %s at %+llds",
                 i, rule_state_name(fx->ev[i].from),
                 rule_state_name(fx->ev[i].to),
                 (long long)((fx->ev[i].ts - EPOCH_NS) / S(1)),
                 fx->ev[i].flapping, fx->ev[i].reason, rule_state_name(from),
                 rule_state_name(to), (long long)((ts - EPOCH_NS) / S(1)));
    }
}

static void assert_state(const struct rule *r, unsigned i, int state)
{
    struct rule_inst_info info;

    assert_int_equal(rule_instance_info(r, i, &info), 0);
    if (info.state != state) {
        fail_msg("instance %u: state %s, want %s", i,
                 rule_state_name(info.state), rule_state_name(state));
    }
}

/* ----------------------------------------------------------------- levels */

static void test_state_names(void **state)
{
    (void)state;
    assert_string_equal(rule_state_name(RULE_OK), "ok");
    assert_string_equal(rule_state_name(RULE_WARNING), "warning");
    assert_string_equal(rule_state_name(RULE_CRITICAL), "critical");
    assert_string_equal(rule_state_name(RULE_NODATA), "nodata");
    assert_string_equal(rule_state_name(17), "?");
}

static void test_level_above(void **state)
{
    struct rule_def d;

    (void)state;
    rule_def_init(&d);
    d.warn_above = 50;
    d.crit_above = 80;
    assert_int_equal(rule_level(&d, RULE_OK, 10), RULE_OK);
    assert_int_equal(rule_level(&d, RULE_OK, 50), RULE_OK); /* strict */
    assert_int_equal(rule_level(&d, RULE_OK, 50.1), RULE_WARNING);
    assert_int_equal(rule_level(&d, RULE_OK, 80), RULE_WARNING);
    assert_int_equal(rule_level(&d, RULE_OK, 80.001), RULE_CRITICAL);
    assert_int_equal(rule_level(&d, RULE_OK, -1e9), RULE_OK);
    assert_int_equal(rule_level(&d, RULE_CRITICAL, NAN), RULE_OK);
    assert_int_equal(rule_level(&d, RULE_NODATA, 60), RULE_WARNING);
}

static void test_level_below(void **state)
{
    struct rule_def d;

    (void)state;
    rule_def_init(&d);
    d.warn_below = 90; /* cache hit rate */
    d.crit_below = 70;
    assert_int_equal(rule_level(&d, RULE_OK, 95), RULE_OK);
    assert_int_equal(rule_level(&d, RULE_OK, 90), RULE_OK);
    assert_int_equal(rule_level(&d, RULE_OK, 89.9), RULE_WARNING);
    assert_int_equal(rule_level(&d, RULE_OK, 70), RULE_WARNING);
    assert_int_equal(rule_level(&d, RULE_OK, 69.9), RULE_CRITICAL);
    assert_int_equal(rule_level(&d, RULE_OK, 1e9), RULE_OK);
}

static void test_level_band(void **state)
{
    struct rule_def d;

    (void)state;
    rule_def_init(&d); /* normal is 100-200 orders/s */
    d.warn_below = 100;
    d.warn_above = 200;
    d.crit_below = 50;
    d.crit_above = 400;
    assert_int_equal(rule_level(&d, RULE_OK, 150), RULE_OK);
    assert_int_equal(rule_level(&d, RULE_OK, 100), RULE_OK);
    assert_int_equal(rule_level(&d, RULE_OK, 200), RULE_OK);
    assert_int_equal(rule_level(&d, RULE_OK, 99), RULE_WARNING);
    assert_int_equal(rule_level(&d, RULE_OK, 201), RULE_WARNING);
    assert_int_equal(rule_level(&d, RULE_OK, 49), RULE_CRITICAL);
    assert_int_equal(rule_level(&d, RULE_OK, 401), RULE_CRITICAL);
    assert_int_equal(rule_level(&d, RULE_OK, 50), RULE_WARNING);
}

static void test_level_hysteresis(void **state)
{
    struct rule_def d;

    (void)state;
    rule_def_init(&d);
    d.warn_above = 70;
    d.clear_above = 60;
    d.crit_above = 90;
    d.crit_clear_above = 85;
    /* The clear levels apply only while in the state. */
    assert_int_equal(rule_level(&d, RULE_OK, 65), RULE_OK);
    assert_int_equal(rule_level(&d, RULE_WARNING, 65), RULE_WARNING);
    assert_int_equal(rule_level(&d, RULE_WARNING, 60), RULE_OK);
    assert_int_equal(rule_level(&d, RULE_NODATA, 65), RULE_OK);
    assert_int_equal(rule_level(&d, RULE_WARNING, 87), RULE_WARNING);
    assert_int_equal(rule_level(&d, RULE_CRITICAL, 87), RULE_CRITICAL);
    assert_int_equal(rule_level(&d, RULE_CRITICAL, 85), RULE_WARNING);
    assert_int_equal(rule_level(&d, RULE_CRITICAL, 65), RULE_WARNING);
    assert_int_equal(rule_level(&d, RULE_CRITICAL, 59), RULE_OK);
}

/* -------------------------------------------------------------- machine */

static void test_above_strict(void **state)
{
    struct fx *fx = *state;
    struct rule_def d;
    struct rule *r;
    vigil_series_id id = fx_series(fx, "lat");

    def_threshold(&d, "lat", "lat");
    d.warn_above = 50;
    d.crit_above = 200;
    r = fx_add(fx, &d);
    assert_int_equal(rule_instances(r), 1);
    pub(fx, id, T(0), 50); /* at the level: still ok */
    assert_int_equal(fx->n, 0);
    pub(fx, id, T(1), 50.5);
    assert_ev(fx, 0, T(1), RULE_OK, RULE_WARNING);
    assert_string_equal(fx->ev[0].reason, "last = 50.5 > warn 50");
    assert_string_equal(fx->ev[0].rule, "lat");
    assert_int_equal(fx->ev[0].series, id);
    assert_true(fx->ev[0].value == 50.5);
    pub(fx, id, T(2), 200);
    assert_int_equal(fx->n, 1);
    pub(fx, id, T(3), 212);
    assert_ev(fx, 1, T(3), RULE_WARNING, RULE_CRITICAL);
    assert_string_equal(fx->ev[1].reason, "last = 212 > crit 200");
    pub(fx, id, T(4), 10);
    assert_ev(fx, 2, T(4), RULE_CRITICAL, RULE_OK);
    assert_string_equal(fx->ev[2].reason, "last = 10 <= warn 50");
    assert_state(r, 0, RULE_OK);
}

static void test_below(void **state)
{
    struct fx *fx = *state;
    struct rule_def d;
    vigil_series_id id = fx_series(fx, "cache.hit_pct");

    def_threshold(&d, "cache", "cache.hit_pct");
    d.warn_below = 70;
    d.crit_below = 40;
    d.window_ns = S(300);
    d.stat.kind = WIN_AVG;
    fx_add(fx, &d);
    pub(fx, id, T(0), 80);
    pub(fx, id, T(60), 70); /* avg 75 */
    assert_int_equal(fx->n, 0);
    pub(fx, id, T(120), 45); /* avg 65 */
    assert_ev(fx, 0, T(120), RULE_OK, RULE_WARNING);
    assert_string_equal(fx->ev[0].reason,
                        "avg over 5m = 65 < warn 70 (lower is worse)");
    pub(fx, id, T(180), 40);   /* avg 58.75 */
    pub(fx, id, T(240), -200); /* avg 7 */
    assert_ev(fx, 1, T(240), RULE_WARNING, RULE_CRITICAL);
    assert_string_equal(fx->ev[1].reason,
                        "avg over 5m = 7 < crit 40 (lower is worse)");
    pub(fx, id, T(300), 100); /* avg 22.5: the 80 at 0 s still counts */
    assert_int_equal(fx->n, 2);
    /* The window slides: [60s, 360s] holds 70 45 40 -200 100 1000. */
    pub(fx, id, T(360), 1000);
    assert_ev(fx, 2, T(360), RULE_CRITICAL, RULE_OK);
    assert_string_equal(fx->ev[2].reason,
                        "avg over 5m = 175.833 >= warn 70 (lower is worse)");
}

static void test_band(void **state)
{
    struct fx *fx = *state;
    struct rule_def d;
    struct rule *r;
    vigil_series_id id = fx_series(fx, "orders.rate");

    def_threshold(&d, "orders", "orders.rate");
    d.warn_below = 100;
    d.warn_above = 200;
    d.crit_below = 20;
    r = fx_add(fx, &d);
    pub(fx, id, T(0), 150);
    pub(fx, id, T(1), 100);
    pub(fx, id, T(2), 200);
    assert_int_equal(fx->n, 0);
    pub(fx, id, T(3), 250);
    assert_ev(fx, 0, T(3), RULE_OK, RULE_WARNING);
    assert_string_equal(fx->ev[0].reason, "last = 250 > warn 200");
    pub(fx, id, T(4), 150);
    assert_ev(fx, 1, T(4), RULE_WARNING, RULE_OK);
    assert_string_equal(fx->ev[1].reason, "last = 150 within 100..200");
    pub(fx, id, T(5), 90);
    assert_ev(fx, 2, T(5), RULE_OK, RULE_WARNING);
    assert_string_equal(fx->ev[2].reason, "last = 90 < warn 100");
    pub(fx, id, T(6), 19);
    assert_ev(fx, 3, T(6), RULE_WARNING, RULE_CRITICAL);
    assert_string_equal(fx->ev[3].reason, "last = 19 < crit 20");
    assert_state(r, 0, RULE_CRITICAL);
}

/* Only critical levels: ok reaches up (and down) to them. */
static void test_crit_only(void **state)
{
    struct fx *fx = *state;
    struct rule_def d;
    vigil_series_id hi = fx_series(fx, "hi"), lo = fx_series(fx, "lo");

    def_threshold(&d, "hi", "hi");
    d.crit_above = 80;
    fx_add(fx, &d);
    def_threshold(&d, "lo", "lo");
    d.crit_below = 20;
    fx_add(fx, &d);
    pub(fx, hi, T(0), 10);
    pub(fx, hi, T(1), 80);
    pub(fx, lo, T(0), 30);
    pub(fx, lo, T(1), 20);
    assert_int_equal(fx->n, 0);
    pub(fx, hi, T(2), 90);
    assert_ev(fx, 0, T(2), RULE_OK, RULE_CRITICAL);
    assert_string_equal(fx->ev[0].reason, "last = 90 > crit 80");
    pub(fx, lo, T(2), 5);
    assert_ev(fx, 1, T(2), RULE_OK, RULE_CRITICAL);
    assert_string_equal(fx->ev[1].reason,
                        "last = 5 < crit 20 (lower is worse)");
    pub(fx, hi, T(3), 80);
    assert_ev(fx, 2, T(3), RULE_CRITICAL, RULE_OK);
    assert_string_equal(fx->ev[2].reason, "last = 80 <= crit 80");
}

static void test_hold(void **state)
{
    struct fx *fx = *state;
    struct rule_def d;
    vigil_series_id id = fx_series(fx, "lat");

    def_threshold(&d, "lat", "lat");
    d.warn_above = 50;
    d.hold_ns = S(30);
    fx_add(fx, &d);
    pub(fx, id, T(0), 60);
    pub(fx, id, T(10), 60);
    pub(fx, id, T(20), 60);
    pub(fx, id, T(25), 40); /* a dip restarts the hold */
    pub(fx, id, T(30), 60);
    pub(fx, id, T(50), 60);
    assert_int_equal(fx->n, 0);
    pub(fx, id, T(59), 60);
    assert_int_equal(fx->n, 0); /* 29 s held */
    pub(fx, id, T(60), 61);
    assert_ev(fx, 0, T(60), RULE_OK, RULE_WARNING);
    assert_string_equal(fx->ev[0].reason, "last = 61 > warn 50 for 30s");
    /* Without clear_hold, leaving is immediate. */
    pub(fx, id, T(61), 1);
    assert_ev(fx, 1, T(61), RULE_WARNING, RULE_OK);
}

static void test_hold_exact(void **state)
{
    struct fx *fx = *state;
    struct rule_def d;
    vigil_series_id id = fx_series(fx, "lat");

    def_threshold(&d, "lat", "lat");
    d.warn_above = 50;
    d.hold_ns = S(30);
    fx_add(fx, &d);
    pub(fx, id, T(0), 60);
    pub(fx, id, T(30), 60); /* held exactly hold_ns: enters */
    assert_int_equal(fx->n, 1);
    assert_ev(fx, 0, T(30), RULE_OK, RULE_WARNING);
}

static void test_escalate_and_clear_hold(void **state)
{
    struct fx *fx = *state;
    struct rule_def d;
    struct rule *r;
    vigil_series_id id = fx_series(fx, "lat");

    def_threshold(&d, "lat", "lat");
    d.warn_above = 50;
    d.crit_above = 80;
    d.clear_hold_ns = S(20);
    r = fx_add(fx, &d);
    pub(fx, id, T(0), 60);
    assert_ev(fx, 0, T(0), RULE_OK, RULE_WARNING);
    pub(fx, id, T(10), 90);
    assert_ev(fx, 1, T(10), RULE_WARNING, RULE_CRITICAL);
    pub(fx, id, T(20), 60);
    pub(fx, id, T(30), 60);
    pub(fx, id, T(35), 81); /* back over: the clear hold restarts */
    pub(fx, id, T(40), 60);
    pub(fx, id, T(50), 60);
    assert_int_equal(fx->n, 2);
    pub(fx, id, T(60), 60);
    assert_ev(fx, 2, T(60), RULE_CRITICAL, RULE_WARNING);
    assert_string_equal(fx->ev[2].reason, "last = 60 <= crit 80 for 20s");
    pub(fx, id, T(70), 10);
    pub(fx, id, T(80), 10);
    assert_int_equal(fx->n, 3);
    pub(fx, id, T(90), 10);
    assert_ev(fx, 3, T(90), RULE_WARNING, RULE_OK);
    assert_string_equal(fx->ev[3].reason, "last = 10 <= warn 50 for 20s");
    /* Critical leaves for warning, not ok, when the value has not been
     * under warning for clear_hold yet. */
    pub(fx, id, T(91), 100);
    assert_ev(fx, 4, T(91), RULE_OK, RULE_CRITICAL);
    pub(fx, id, T(92), 60);
    pub(fx, id, T(107), 10);
    pub(fx, id, T(112), 10);
    assert_ev(fx, 5, T(112), RULE_CRITICAL, RULE_WARNING);
    pub(fx, id, T(126), 10);
    assert_int_equal(fx->n, 6);
    pub(fx, id, T(127), 10);
    assert_ev(fx, 6, T(127), RULE_WARNING, RULE_OK);
    /* Critical straight to ok once both levels have cleared long enough. */
    pub(fx, id, T(200), 100);
    assert_ev(fx, 7, T(200), RULE_OK, RULE_CRITICAL);
    pub(fx, id, T(210), 10);
    pub(fx, id, T(230), 10);
    assert_ev(fx, 8, T(230), RULE_CRITICAL, RULE_OK);
    assert_int_equal(fx->n, 9);
    assert_state(r, 0, RULE_OK);
}

static void test_hold_warning_then_critical(void **state)
{
    struct fx *fx = *state;
    struct rule_def d;
    vigil_series_id id = fx_series(fx, "lat");

    def_threshold(&d, "lat", "lat");
    d.warn_above = 50;
    d.crit_above = 80;
    d.hold_ns = S(30);
    fx_add(fx, &d);
    pub(fx, id, T(0), 60);
    pub(fx, id, T(20), 90); /* over crit since 20, over warn since 0 */
    pub(fx, id, T(30), 90);
    assert_ev(fx, 0, T(30), RULE_OK, RULE_WARNING);
    pub(fx, id, T(49), 90);
    assert_int_equal(fx->n, 1);
    pub(fx, id, T(50), 90);
    assert_ev(fx, 1, T(50), RULE_WARNING, RULE_CRITICAL);
    assert_string_equal(fx->ev[1].reason, "last = 90 > crit 80 for 30s");
}

static void test_hysteresis(void **state)
{
    struct fx *fx = *state;
    struct rule_def d;
    vigil_series_id id = fx_series(fx, "cpu");

    def_threshold(&d, "cpu", "cpu");
    d.warn_above = 70;
    d.clear_above = 60;
    d.crit_above = 90;
    d.crit_clear_above = 85;
    fx_add(fx, &d);
    pub(fx, id, T(0), 71);
    assert_ev(fx, 0, T(0), RULE_OK, RULE_WARNING);
    /* Hovering between clear and warn stays in warning. */
    pub(fx, id, T(1), 65);
    pub(fx, id, T(2), 69.9);
    pub(fx, id, T(3), 60.5);
    pub(fx, id, T(4), 70.2);
    assert_int_equal(fx->n, 1);
    pub(fx, id, T(5), 60); /* strict: 60 is not above clear 60 */
    assert_ev(fx, 1, T(5), RULE_WARNING, RULE_OK);
    assert_string_equal(fx->ev[1].reason, "last = 60 <= clear 60");
    pub(fx, id, T(6), 65); /* in ok the warn level applies */
    pub(fx, id, T(7), 70);
    assert_int_equal(fx->n, 2);
    pub(fx, id, T(8), 91);
    assert_ev(fx, 2, T(8), RULE_OK, RULE_CRITICAL);
    pub(fx, id, T(9), 86);
    pub(fx, id, T(10), 89);
    assert_int_equal(fx->n, 3);
    pub(fx, id, T(11), 85);
    assert_ev(fx, 3, T(11), RULE_CRITICAL, RULE_WARNING);
    assert_string_equal(fx->ev[3].reason, "last = 85 <= crit_clear 85");
    pub(fx, id, T(12), 62); /* warning's clear level applies */
    assert_int_equal(fx->n, 4);
}

static void test_nan_and_out_of_order(void **state)
{
    struct fx *fx = *state;
    struct rule_def d;
    struct rule *r;
    struct rule_inst_info info;
    vigil_series_id id = fx_series(fx, "lat");

    def_threshold(&d, "lat", "lat");
    d.warn_above = 50;
    d.hold_ns = S(10);
    r = fx_add(fx, &d);
    pub(fx, id, T(0), 60);
    pub(fx, id, T(5), NAN); /* no evidence: the hold goes on */
    pub(fx, id, T(10), 60);
    assert_ev(fx, 0, T(10), RULE_OK, RULE_WARNING);
    pub(fx, id, T(8), 1); /* older than the state: ignored */
    assert_int_equal(fx->n, 1);
    assert_int_equal(rule_instance_info(r, 0, &info), 0);
    assert_int_equal(info.state, RULE_WARNING);
    assert_true(info.value == 60);
    assert_int_equal(info.since, T(10));
    assert_int_equal(info.series, id);
    assert_int_equal(info.flapping, 0);
    assert_int_equal(rule_instance_info(r, 1, &info), VIGIL_ENOENT);
}

static void test_nodata(void **state)
{
    struct fx *fx = *state;
    struct rule_def d;
    struct rule *r;
    struct rule_inst_info info;
    vigil_series_id id = fx_series(fx, "lat");

    def_threshold(&d, "lat", "lat");
    d.warn_above = 50;
    d.nodata_ns = S(120);
    r = fx_add(fx, &d);
    pub(fx, id, T(0), 10);
    rule_set_tick(fx->rs, T(60));
    rule_set_tick(fx->rs, T(119));
    assert_int_equal(fx->n, 0);
    rule_set_tick(fx->rs, T(120));
    assert_ev(fx, 0, T(120), RULE_OK, RULE_NODATA);
    assert_true(isnan(fx->ev[0].value));
    assert_string_equal(fx->ev[0].reason, "no data for 2m");
    assert_int_equal(rule_instance_info(r, 0, &info), 0);
    assert_int_equal(info.state, RULE_NODATA);
    assert_true(isnan(info.value));
    rule_set_tick(fx->rs, T(200));
    assert_int_equal(fx->n, 1); /* entered once */
    pub(fx, id, T(210), 10);
    assert_ev(fx, 1, T(210), RULE_NODATA, RULE_OK);
    assert_string_equal(fx->ev[1].reason, "data again: last = 10 <= warn 50");
    assert_state(r, 0, RULE_OK);
    rule_set_tick(fx->rs, T(300));
    assert_int_equal(fx->n, 1 + 1);
    rule_set_tick(fx->rs, T(330));
    assert_ev(fx, 2, T(330), RULE_OK, RULE_NODATA);
}

static void test_nodata_then_hold(void **state)
{
    struct fx *fx = *state;
    struct rule_def d;
    vigil_series_id id = fx_series(fx, "lat");

    def_threshold(&d, "lat", "lat");
    d.warn_above = 50;
    d.hold_ns = S(30);
    d.nodata_ns = S(120);
    fx_add(fx, &d);
    pub(fx, id, T(0), 60);
    pub(fx, id, T(30), 60);
    assert_ev(fx, 0, T(30), RULE_OK, RULE_WARNING);
    rule_set_tick(fx->rs, T(200));
    assert_ev(fx, 1, T(200), RULE_WARNING, RULE_NODATA);
    /* After nodata the instance starts afresh: a worse level waits for
     * its hold again, and the state stays nodata meanwhile. */
    pub(fx, id, T(300), 60);
    rule_set_tick(fx->rs, T(310));
    pub(fx, id, T(320), 60);
    assert_int_equal(fx->n, 2);
    pub(fx, id, T(330), 60);
    assert_ev(fx, 2, T(330), RULE_NODATA, RULE_WARNING);
    assert_string_equal(fx->ev[2].reason,
                        "data again: last = 60 > warn 50 for 30s");
}

static void test_nodata_never_sampled(void **state)
{
    struct fx *fx = *state;
    struct rule_def d;

    fx_series(fx, "lat");
    def_threshold(&d, "lat", "lat");
    d.warn_above = 50;
    d.nodata_ns = S(60);
    fx_add(fx, &d);
    /* No sample yet: the clock starts at the first tick. */
    rule_set_tick(fx->rs, T(0));
    rule_set_tick(fx->rs, T(59));
    assert_int_equal(fx->n, 0);
    rule_set_tick(fx->rs, T(60));
    assert_ev(fx, 0, T(60), RULE_OK, RULE_NODATA);
}

/* The nodata clock of a series that already has samples starts at its
 * newest one; a sample stamped before the tick that started the clock of
 * a silent series still counts. */
static void test_nodata_clock_start(void **state)
{
    struct fx *fx = *state;
    struct rule_def d;
    vigil_series_id old = fx_series(fx, "old"), quiet = fx_series(fx, "quiet");

    pub(fx, old, T(0), 1);
    def_threshold(&d, "old", "old");
    d.warn_above = 50;
    d.nodata_ns = S(60);
    fx_add(fx, &d);
    def_threshold(&d, "quiet", "quiet");
    d.warn_above = 50;
    fx_add(fx, &d);
    rule_set_tick(fx->rs, T(59));
    assert_int_equal(fx->n, 0);
    rule_set_tick(fx->rs, T(60));
    assert_ev(fx, 0, T(60), RULE_OK, RULE_NODATA);
    assert_string_equal(fx->ev[0].rule, "old");
    /* Collected at 55 s, published after the tick at 60 s. */
    pub(fx, quiet, T(55), 70);
    assert_ev(fx, 1, T(55), RULE_OK, RULE_WARNING);
    assert_string_equal(fx->ev[1].rule, "quiet");
}

static void test_hold_completes_on_tick(void **state)
{
    struct fx *fx = *state;
    struct rule_def d;
    vigil_series_id id = fx_series(fx, "slow");

    def_threshold(&d, "slow", "slow");
    d.warn_above = 50;
    d.hold_ns = S(30);
    d.clear_hold_ns = S(60);
    fx_add(fx, &d);
    pub(fx, id, T(0), 60); /* one sample a minute */
    rule_set_tick(fx->rs, T(29));
    assert_int_equal(fx->n, 0);
    rule_set_tick(fx->rs, T(30));
    assert_ev(fx, 0, T(30), RULE_OK, RULE_WARNING);
    assert_true(fx->ev[0].value == 60);
    pub(fx, id, T(40), 10);
    rule_set_tick(fx->rs, T(99));
    assert_int_equal(fx->n, 1);
    rule_set_tick(fx->rs, T(100));
    assert_ev(fx, 1, T(100), RULE_WARNING, RULE_OK);
    rule_set_tick(fx->rs, T(200));
    assert_int_equal(fx->n, 2);
}

static void test_flapping(void **state)
{
    struct fx *fx = *state;
    struct rule_def d;
    struct rule *r;
    struct rule_inst_info info;
    vigil_series_id id = fx_series(fx, "lat");

    def_threshold(&d, "lat", "lat");
    d.warn_above = 50;
    d.flap_max = 3;
    d.flap_window_ns = S(600);
    r = fx_add(fx, &d);
    pub(fx, id, T(0), 60);
    pub(fx, id, T(10), 40);
    pub(fx, id, T(20), 60);
    assert_int_equal(fx->n, 3);
    pub(fx, id, T(30), 40); /* the fourth change within 10m */
    assert_int_equal(fx->n, 4);
    assert_int_equal(fx->ev[3].flapping, 1);
    assert_int_equal(fx->ev[3].from, RULE_WARNING);
    assert_int_equal(fx->ev[3].to, RULE_WARNING);
    assert_int_equal(fx->ev[3].ts, T(30));
    assert_string_equal(fx->ev[3].reason,
                        "flapping: 4 state changes within 10m, holding "
                        "warning");
    assert_int_equal(rule_instance_info(r, 0, &info), 0);
    assert_int_equal(info.flapping, 1);
    assert_int_equal(info.state, RULE_WARNING);
    /* Suppressed while the raw state keeps moving. */
    pub(fx, id, T(40), 60);
    pub(fx, id, T(50), 40);
    pub(fx, id, T(60), 60);
    pub(fx, id, T(70), 40);
    rule_set_tick(fx->rs, T(669));
    assert_int_equal(fx->n, 4);
    assert_state(r, 0, RULE_WARNING);
    /* Stable for the window: one event, to where the instance is. */
    rule_set_tick(fx->rs, T(670));
    assert_int_equal(fx->n, 5);
    assert_int_equal(fx->ev[4].flapping, -1);
    assert_int_equal(fx->ev[4].from, RULE_WARNING);
    assert_int_equal(fx->ev[4].to, RULE_OK);
    assert_int_equal(fx->ev[4].ts, T(670));
    assert_string_equal(fx->ev[4].reason,
                        "flapping ended: stable for 10m, now ok");
    assert_int_equal(rule_instance_info(r, 0, &info), 0);
    assert_int_equal(info.flapping, 0);
    assert_int_equal(info.state, RULE_OK);
    /* Normal service resumes. */
    pub(fx, id, T(680), 60);
    assert_ev(fx, 5, T(680), RULE_OK, RULE_WARNING);
}

static void test_flapping_ends_on_sample(void **state)
{
    struct fx *fx = *state;
    struct rule_def d;
    vigil_series_id id = fx_series(fx, "lat");

    def_threshold(&d, "lat", "lat");
    d.warn_above = 50;
    d.flap_max = 2;
    d.flap_window_ns = S(60);
    fx_add(fx, &d);
    pub(fx, id, T(0), 60);
    pub(fx, id, T(10), 40);
    pub(fx, id, T(20), 60); /* third change: flapping, holding ok */
    assert_int_equal(fx->n, 3);
    assert_int_equal(fx->ev[2].flapping, 1);
    assert_int_equal(fx->ev[2].to, RULE_OK);
    pub(fx, id, T(30), 40);
    pub(fx, id, T(89), 40);
    assert_int_equal(fx->n, 3);
    pub(fx, id, T(90), 40); /* unchanged since 30 */
    assert_int_equal(fx->n, 4);
    assert_int_equal(fx->ev[3].flapping, -1);
    assert_int_equal(fx->ev[3].from, RULE_OK);
    assert_int_equal(fx->ev[3].to, RULE_OK);
    assert_string_equal(fx->ev[3].reason, "flapping ended: stable for 1m");
    /* Changes spread wider than the window do not flap. */
    pub(fx, id, T(100), 60);
    pub(fx, id, T(140), 40);
    pub(fx, id, T(180), 60);
    assert_int_equal(fx->n, 7);
    assert_ev(fx, 6, T(180), RULE_OK, RULE_WARNING);
}

/* Each instance counts its own changes: b's recent ones must not make
 * a's old ones look recent. */
static void test_flapping_per_instance(void **state)
{
    struct fx *fx = *state;
    struct rule_def d;
    vigil_series_id a, b;

    fx_intern_labels(fx, "proc.cpu", "name", "a", &a);
    fx_intern_labels(fx, "proc.cpu", "name", "b", &b);
    def_threshold(&d, "cpu", "proc.cpu");
    d.warn_above = 50;
    d.flap_max = 2;
    d.flap_window_ns = S(100);
    fx_add(fx, &d);
    pub(fx, a, T(0), 60);
    pub(fx, a, T(10), 40);
    pub(fx, b, T(200), 60);
    pub(fx, b, T(210), 40);
    pub(fx, a, T(220), 60); /* a's third change, its first 220 s ago */
    pub(fx, a, T(230), 40);
    assert_int_equal(fx->n, 6);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(fx->ev[i].flapping, 0);
    }
    pub(fx, a, T(240), 60); /* three of a's changes within 20 s */
    assert_int_equal(fx->n, 7);
    assert_int_equal(fx->ev[6].flapping, 1);
    assert_int_equal(fx->ev[6].series, a);
}

/* ------------------------------------------------------------- instances */

static void test_per_series(void **state)
{
    struct fx *fx = *state;
    struct rule_def d;
    struct rule *r;
    struct rule_inst_info info;
    vigil_series_id a, b, c, other;

    fx_intern_labels(fx, "proc.cpu", "name", "a", &a);
    fx_intern_labels(fx, "proc.cpu", "name", "b", &b);
    fx_intern_labels(fx, "proc.mem", "name", "a", &other);
    def_threshold(&d, "cpu", "proc.cpu{name=*}");
    d.warn_above = 70;
    r = fx_add(fx, &d);
    assert_int_equal(rule_instances(r), 2);
    pub(fx, a, T(0), 80);
    pub(fx, b, T(0), 10);
    pub(fx, other, T(0), 99);
    assert_int_equal(fx->n, 1);
    assert_ev(fx, 0, T(0), RULE_OK, RULE_WARNING);
    assert_int_equal(fx->ev[0].series, a);
    assert_int_equal(rule_instance_info(r, 0, &info), 0);
    assert_int_equal(info.series, a);
    assert_int_equal(info.state, RULE_WARNING);
    assert_int_equal(rule_instance_info(r, 1, &info), 0);
    assert_int_equal(info.series, b);
    assert_int_equal(info.state, RULE_OK);
    assert_int_equal(info.since, T(0)); /* ok since its first sample */
    assert_true(info.value == 10);
    /* A series that appears later gets its own instance. */
    fx_intern_labels(fx, "proc.cpu", "name", "c", &c);
    assert_int_equal(rule_instances(r), 3);
    pub(fx, c, T(1), 90);
    assert_int_equal(fx->n, 2);
    assert_int_equal(fx->ev[1].series, c);
    pub(fx, a, T(2), 10);
    assert_ev(fx, 2, T(2), RULE_WARNING, RULE_OK);
    assert_int_equal(fx->ev[2].series, a);
    assert_state(r, 2, RULE_WARNING);
    assert_state(r, 1, RULE_OK);
}

static void test_many_series(void **state)
{
    struct fx *fx = *state;
    struct rule_def d;
    struct rule *r;
    vigil_series_id ids[300];
    char v[16];

    def_threshold(&d, "cpu", "proc.cpu");
    d.warn_above = 70;
    r = fx_add(fx, &d);
    for (unsigned i = 0; i < 300; i++) {
        snprintf(v, sizeof(v), "p%u", i);
        fx_intern_labels(fx, "proc.cpu", "name", v, &ids[i]);
    }
    assert_int_equal(rule_instances(r), 300);
    for (unsigned i = 0; i < 300; i++) {
        pub(fx, ids[i], T(1), i % 7 == 0 ? 80 : 10);
    }
    for (unsigned i = 0; i < 300; i++) {
        assert_state(r, i, i % 7 == 0 ? RULE_WARNING : RULE_OK);
    }
    assert_int_equal(fx->n, 43);
    assert_int_equal(rule_set_evals(fx->rs), 300);
}

/* -------------------------------------------------------------- windows */

static void test_window_p95(void **state)
{
    struct fx *fx = *state;
    struct rule_def d;
    vigil_series_id id = fx_series(fx, "db.query_ms");
    struct vigil_err err = {0};

    def_threshold(&d, "db", "db.query_ms");
    assert_int_equal(win_stat_parse("p95", &d.stat), 0);
    d.window_ns = S(60);
    d.warn_above = 150;
    d.crit_above = 200;
    d.hold_ns = S(10);
    assert_int_equal(rule_def_check(&d, &err), 0);
    fx_add(fx, &d);
    for (int t = 0; t <= 50; t += 10) {
        pub(fx, id, T(t), 100);
    }
    pub(fx, id, T(60), 300); /* p95 of six 100s and a 300: 240 */
    assert_int_equal(fx->n, 0);
    pub(fx, id, T(70), 100); /* still 240: the 300 is in the span */
    assert_ev(fx, 0, T(70), RULE_OK, RULE_CRITICAL);
    assert_float_equal(fx->ev[0].value, 240, 1e-9);
    assert_string_equal(fx->ev[0].reason,
                        "p95 over 1m = 240 > crit 200 for 10s");
}

static void test_window_avg(void **state)
{
    struct fx *fx = *state;
    struct rule_def d;
    vigil_series_id id = fx_series(fx, "lat");

    def_threshold(&d, "lat", "lat");
    d.stat.kind = WIN_AVG;
    d.window_ns = S(60);
    d.warn_above = 100;
    fx_add(fx, &d);
    for (int t = 0; t <= 50; t += 10) {
        pub(fx, id, T(t), 50);
    }
    pub(fx, id, T(60), 200); /* (6 * 50 + 200) / 7 */
    pub(fx, id, T(70), 200); /* (5 * 50 + 400) / 7 */
    assert_int_equal(fx->n, 0);
    pub(fx, id, T(80), 200); /* (4 * 50 + 600) / 7 = 114.3 */
    assert_ev(fx, 0, T(80), RULE_OK, RULE_WARNING);
    assert_float_equal(fx->ev[0].value, 800.0 / 7, 1e-9);
    assert_string_equal(fx->ev[0].reason, "avg over 1m = 114.286 > warn 100");
}

/* A statistic that cannot be computed yet (a rate needs two samples)
 * changes nothing; it is not a zero. */
static void test_window_rate(void **state)
{
    struct fx *fx = *state;
    struct rule_def d;
    vigil_series_id id = fx_series(fx, "http.requests");

    def_threshold(&d, "traffic", "http.requests");
    d.stat.kind = WIN_RATE;
    d.window_ns = S(60);
    d.warn_below = 1; /* requests per second */
    fx_add(fx, &d);
    pub(fx, id, T(0), 100);
    pub(fx, id, T(10), 200);
    pub(fx, id, T(20), 205);
    assert_int_equal(fx->n, 0);
    pub(fx, id, T(80), 205); /* [20 s, 80 s]: no increase */
    assert_ev(fx, 0, T(80), RULE_OK, RULE_WARNING);
    assert_string_equal(fx->ev[0].reason,
                        "rate over 1m = 0 < warn 1 (lower is worse)");
}

/* A ring shorter than the span is grown on the next tick from the
 * spacing it observed; a long window is reserved at once. */
static void test_window_growth(void **state)
{
    struct fx *fx = *state;
    struct rule_def d;
    vigil_series_id fast = fx_series(fx, "fast"), slow = fx_series(fx, "slow");
    struct win_stat count = {WIN_COUNT, 0};
    const struct win *w = bus_window(fx->bus, fast);
    double n = 0;
    int64_t ts = T(0);

    def_threshold(&d, "slow", "slow");
    d.stat.kind = WIN_AVG;
    d.window_ns = S(600);
    d.warn_above = 100;
    fx_add(fx, &d);
    assert_int_equal(bus_window(fx->bus, slow)->cap, 602);

    def_threshold(&d, "fast", "fast");
    d.stat.kind = WIN_AVG;
    d.window_ns = S(60);
    d.warn_above = 100;
    fx_add(fx, &d);
    assert_int_equal(w->cap, 120); /* the default already holds 60 s at 1/s */
    for (int i = 0; i < 200; i++, ts += MS(100)) { /* 10 samples/s */
        pub(fx, fast, ts, 1);
    }
    assert_int_equal(w->cap, 120); /* never on the sample path */
    rule_set_tick(fx->rs, ts);
    assert_true(w->cap >= 602);
    for (int i = 0; i < 700; i++, ts += MS(100)) {
        pub(fx, fast, ts, 1);
    }
    ts -= MS(100);
    assert_int_equal(bus_stat(fx->bus, fast, count, ts, S(60), &n), 0);
    assert_float_equal(n, 601, 0);
    rule_set_tick(fx->rs, ts);
    assert_int_equal(fx->n, 0);
}

/* ----------------------------------------------------------- conditions */

static void test_condition(void **state)
{
    struct fx *fx = *state;
    struct rule_def d;
    struct rule *r;
    struct rule_inst_info info;

    rule_def_init(&d);
    snprintf(d.name, sizeof(d.name), "cpu_and_latency");
    d.kind = RULE_CONDITION;
    d.hold_ns = S(30);
    d.clear_hold_ns = S(10);
    d.nodata_ns = S(60);
    r = fx_add(fx, &d);
    assert_int_equal(rule_instances(r), 1);
    assert_int_equal(rule_instance_info(r, 0, &info), 0);
    assert_int_equal(info.series, RULE_NO_SERIES);
    rule_feed(fx->rs, r, T(0), RULE_CRITICAL, 212);
    rule_feed(fx->rs, r, T(20), RULE_CRITICAL, 213);
    assert_int_equal(fx->n, 0);
    rule_feed(fx->rs, r, T(30), RULE_CRITICAL, 215);
    assert_ev(fx, 0, T(30), RULE_OK, RULE_CRITICAL);
    assert_int_equal(fx->ev[0].series, RULE_NO_SERIES);
    assert_true(fx->ev[0].value == 215);
    assert_string_equal(fx->ev[0].reason,
                        "condition critical, value 215 for 30s");
    rule_feed(fx->rs, r, T(40), RULE_OK, 1);
    assert_int_equal(fx->n, 1);
    rule_feed(fx->rs, r, T(50), RULE_OK, 1);
    assert_ev(fx, 1, T(50), RULE_CRITICAL, RULE_OK);
    assert_string_equal(fx->ev[1].reason, "condition ok, value 1 for 10s");
    /* A level that is not one (nodata included) is not data. */
    rule_feed(fx->rs, r, T(55), RULE_NODATA, 0);
    rule_feed(fx->rs, r, T(56), 7, 0);
    rule_feed(fx->rs, r, T(57), -1, 0);
    assert_int_equal(fx->n, 2);
    rule_set_tick(fx->rs, T(109));
    assert_int_equal(fx->n, 2);
    rule_set_tick(fx->rs, T(110));
    assert_ev(fx, 2, T(110), RULE_OK, RULE_NODATA);
    rule_feed(fx->rs, r, T(120), RULE_OK, 0);
    assert_ev(fx, 3, T(120), RULE_NODATA, RULE_OK);
    assert_string_equal(fx->ev[3].reason, "data again: condition ok, value 0");
    /* Holds complete on ticks for conditions too. */
    rule_feed(fx->rs, r, T(130), RULE_WARNING, 5);
    rule_set_tick(fx->rs, T(159));
    assert_int_equal(fx->n, 4);
    rule_set_tick(fx->rs, T(160));
    assert_ev(fx, 4, T(160), RULE_OK, RULE_WARNING);
    assert_true(fx->ev[4].value == 5);
}

static void test_condition_flapping(void **state)
{
    struct fx *fx = *state;
    struct rule_def d;
    struct rule *r;

    rule_def_init(&d);
    snprintf(d.name, sizeof(d.name), "pred");
    d.kind = RULE_CONDITION;
    d.flap_max = 2;
    d.flap_window_ns = S(100);
    r = fx_add(fx, &d);
    rule_feed(fx->rs, r, T(0), RULE_WARNING, 1);
    rule_feed(fx->rs, r, T(1), RULE_OK, 0);
    rule_feed(fx->rs, r, T(2), RULE_WARNING, 1);
    rule_feed(fx->rs, r, T(3), RULE_OK, 0);
    assert_int_equal(fx->n, 3);
    assert_int_equal(fx->ev[2].flapping, 1);
    rule_set_tick(fx->rs, T(103));
    assert_int_equal(fx->n, 4);
    assert_int_equal(fx->ev[3].flapping, -1);
    assert_int_equal(fx->ev[3].to, RULE_OK);
}

static void test_feed_threshold_ignored(void **state)
{
    struct fx *fx = *state;
    struct rule_def d;
    struct rule *r;

    fx_series(fx, "lat");
    def_threshold(&d, "lat", "lat");
    d.warn_above = 50;
    r = fx_add(fx, &d);
    rule_feed(fx->rs, r, T(0), RULE_CRITICAL, 99);
    rule_feed(fx->rs, NULL, T(0), RULE_CRITICAL, 99);
    assert_int_equal(fx->n, 0);
    assert_state(r, 0, RULE_OK);
}

/* ----------------------------------------------------------- definitions */

struct check_case {
    const char *what;
    void (*edit)(struct rule_def *d);
    const char *msg; /* NULL: valid */
};

static void e_none(struct rule_def *d)
{
    (void)d;
}
static void e_name_empty(struct rule_def *d)
{
    d->name[0] = '\0';
}
static void e_name_long(struct rule_def *d)
{
    memset(d->name, 'x', sizeof(d->name));
}
static void e_kind(struct rule_def *d)
{
    d->kind = 0;
}
static void e_no_selector(struct rule_def *d)
{
    memset(&d->sel, 0, sizeof(d->sel));
}
static void e_matchers(struct rule_def *d)
{
    d->sel.n = BUS_MATCHERS_MAX + 1;
}
static void e_no_levels(struct rule_def *d)
{
    d->warn_above = NAN;
    d->crit_above = NAN;
}
static void e_above_order(struct rule_def *d)
{
    d->crit_above = 40;
}
static void e_above_equal(struct rule_def *d)
{
    d->crit_above = 70;
}
static void e_below_order(struct rule_def *d)
{
    e_no_levels(d);
    d->warn_below = 30;
    d->crit_below = 50;
}
static void e_band(struct rule_def *d)
{
    d->crit_above = NAN;
    d->warn_below = 250;
    d->warn_above = 200;
}
static void e_band_crit(struct rule_def *d)
{
    d->crit_below = 95; /* warn_above is 70 */
}
static void e_clear_above(struct rule_def *d)
{
    d->clear_above = 75;
}
static void e_clear_above_alone(struct rule_def *d)
{
    d->warn_above = NAN;
    d->clear_above = 60;
}
static void e_clear_below(struct rule_def *d)
{
    e_no_levels(d);
    d->warn_below = 30;
    d->clear_below = 25;
}
static void e_crit_clear_above(struct rule_def *d)
{
    d->crit_clear_above = 95;
}
static void e_crit_clear_below(struct rule_def *d)
{
    e_no_levels(d);
    d->crit_below = 10;
    d->crit_clear_below = 5;
}
static void e_band_clears(struct rule_def *d)
{
    d->crit_above = NAN;
    d->warn_below = 100;
    d->clear_below = 150;
    d->warn_above = 200;
    d->clear_above = 140;
}
static void e_clear_vs_crit(struct rule_def *d)
{
    d->warn_above = NAN;
    d->crit_above = 40;
    d->warn_below = 10;
    d->clear_below = 50;
}
static void e_crit_never_clears(struct rule_def *d)
{
    d->warn_above = NAN;
    d->crit_above = 90;
    d->crit_below = 10;
    d->crit_clear_below = 100;
}
static void e_inf(struct rule_def *d)
{
    d->warn_above = INFINITY;
}
static void e_hold(struct rule_def *d)
{
    d->hold_ns = -1;
}
static void e_clear_hold(struct rule_def *d)
{
    d->clear_hold_ns = -S(1);
}
static void e_nodata(struct rule_def *d)
{
    d->nodata_ns = -5;
}
static void e_window(struct rule_def *d)
{
    d->window_ns = -S(60);
}
static void e_flap_window(struct rule_def *d)
{
    d->flap_window_ns = -1;
}
static void e_flap_max(struct rule_def *d)
{
    d->flap_max = RULE_FLAP_MAX + 1;
    d->flap_window_ns = S(60);
}
static void e_flap_no_window(struct rule_def *d)
{
    d->flap_max = 3;
}
static void e_stat_no_window(struct rule_def *d)
{
    d->stat.kind = WIN_AVG;
}
static void e_window_no_stat(struct rule_def *d)
{
    d->window_ns = S(60);
}
static void e_quantile(struct rule_def *d)
{
    d->window_ns = S(60);
    d->stat.kind = WIN_QUANTILE;
    d->stat.q = 1.5;
}
static void e_condition(struct rule_def *d)
{
    e_no_levels(d);
    memset(&d->sel, 0, sizeof(d->sel));
    d->kind = RULE_CONDITION;
}
static void e_condition_flap(struct rule_def *d)
{
    e_condition(d);
    d->flap_max = 2;
}

static void test_def_check(void **state)
{
    static const struct check_case cases[] = {
        {"valid", e_none, NULL},
        {"condition without levels", e_condition, NULL},
        {"empty name", e_name_empty, "rule name is empty"},
        {"long name", e_name_long, "is longer than 127 bytes"},
        {"kind", e_kind, "rule 'r': kind 0 is neither threshold nor condition"},
        {"selector", e_no_selector,
         "rule 'r': no metric selector (a threshold rule needs one)"},
        {"matchers", e_matchers,
         "rule 'r': selector has 9 label matchers, at most 8"},
        {"no levels", e_no_levels,
         "rule 'r': no level set (warn_above, crit_above, warn_below or "
         "crit_below)"},
        {"above order", e_above_order,
         "rule 'r': crit_above (40) must be higher than warn_above (70)"},
        {"above equal", e_above_equal,
         "rule 'r': crit_above (70) must be higher than warn_above (70)"},
        {"below order", e_below_order,
         "rule 'r': crit_below (50) must be lower than warn_below (30)"},
        {"band", e_band,
         "rule 'r': warn_below (250) must be lower than warn_above (200): "
         "the band would be empty"},
        {"band crit", e_band_crit,
         "rule 'r': crit_below (95) must be lower than warn_above (70): "
         "the band would be empty"},
        {"clear above", e_clear_above,
         "rule 'r': clear_above (75) must be lower than warn_above (70): it "
         "is the level a value falls back under to leave"},
        {"clear alone", e_clear_above_alone,
         "rule 'r': clear_above is set but warn_above is not"},
        {"clear below", e_clear_below,
         "rule 'r': clear_below (25) must be higher than warn_below (30): it "
         "is the level a value climbs back over to leave"},
        {"crit clear above", e_crit_clear_above,
         "rule 'r': crit_clear_above (95) must be lower than crit_above "
         "(90)"},
        {"crit clear below", e_crit_clear_below,
         "rule 'r': crit_clear_below (5) must be higher than crit_below "
         "(10)"},
        {"band clears", e_band_clears,
         "rule 'r': clear_below (150) must be lower than clear_above (140): "
         "warning could never clear"},
        {"clear vs crit", e_clear_vs_crit,
         "rule 'r': clear_below (50) must be lower than crit_above (40): "
         "warning could never clear"},
        {"crit never clears", e_crit_never_clears,
         "rule 'r': crit_clear_below (100) must be lower than crit_above "
         "(90): critical could never clear"},
        {"infinite", e_inf,
         "rule 'r': warn_above is infinite; leave it unset instead"},
        {"hold", e_hold, "rule 'r': hold (-1 ns) is negative"},
        {"clear_hold", e_clear_hold,
         "rule 'r': clear_hold (-1000000000 ns) is negative"},
        {"nodata", e_nodata, "rule 'r': nodata (-5 ns) is negative"},
        {"window", e_window, "rule 'r': window (-60000000000 ns) is negative"},
        {"flap_window", e_flap_window,
         "rule 'r': flap_window (-1 ns) is negative"},
        {"flap_max", e_flap_max, "rule 'r': flap_max (65) is more than 64"},
        {"flap no window", e_flap_no_window,
         "rule 'r': flap_max is set but flap_window is not"},
        {"condition flap", e_condition_flap,
         "rule 'r': flap_max is set but flap_window is not"},
        {"stat without window", e_stat_no_window,
         "rule 'r': statistic avg needs a window (window 0 means the last "
         "sample)"},
        {"window without stat", e_window_no_stat,
         "rule 'r': unknown statistic (kind 0) for the window"},
        {"quantile", e_quantile, "rule 'r': quantile 1.5 is outside [0, 1]"},
    };
    struct fx *fx = *state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct vigil_err err = {0}, err2 = {0};
        struct rule_def d;
        struct rule *r = (struct rule *)&d;
        int rc, rc2;

        def_threshold(&d, "r", "m");
        d.warn_above = 70;
        d.crit_above = 90;
        cases[i].edit(&d);
        rc = rule_def_check(&d, &err);
        if (cases[i].msg == NULL) {
            if (rc != 0) {
                fail_msg("%s: unexpected error %s", cases[i].what, err.msg);
            }
            continue;
        }
        if (rc != VIGIL_EINVAL || strstr(err.msg, cases[i].msg) == NULL) {
            fail_msg("%s: rc %d, message '%s', want '%s'", cases[i].what, rc,
                     err.msg, cases[i].msg);
        }
        /* rule_add refuses with the same message and leaves nothing. */
        rc2 = rule_add(fx->rs, &d, &r, &err2);
        assert_int_equal(rc2, VIGIL_EINVAL);
        assert_null(r);
        assert_string_equal(err2.msg, err.msg);
    }
    assert_null(rule_find(fx->rs, "r"));
}

static void test_def_same(void **state)
{
    struct rule_def a, b;
    int n = 0;

    (void)state;
    def_threshold(&a, "r", "proc.cpu{name=web*}");
    a.stat.kind = WIN_QUANTILE;
    a.stat.q = 0.95;
    a.window_ns = S(60);
    a.warn_above = 70;
    a.crit_above = 90;
    a.hold_ns = S(30);
    b = a;
    assert_true(rule_def_same(&a, &b));
    b.user = &n; /* the owner's pointer does not count */
    assert_true(rule_def_same(&a, &b));
    /* Bytes after a terminator do not count either. */
    b.name[5] = 'z';
    b.sel.name[20] = 'q';
    assert_true(rule_def_same(&a, &b));

#define DIFFERS(stmt)                                                          \
    do {                                                                       \
        b = a;                                                                 \
        stmt;                                                                  \
        if (rule_def_same(&a, &b)) {                                           \
            fail_msg("same despite %s", #stmt);                                \
        }                                                                      \
        n++;                                                                   \
    } while (0)
    DIFFERS(b.name[0] = 's');
    DIFFERS(b.kind = RULE_CONDITION);
    DIFFERS(b.sel.name[0] = 'x');
    DIFFERS(b.sel.m[0].value[0] = 'x');
    DIFFERS(b.sel.m[0].negate = 1);
    DIFFERS(b.sel.n = 0);
    DIFFERS(b.stat.kind = WIN_AVG);
    DIFFERS(b.stat.q = 0.99);
    DIFFERS(b.window_ns = S(61));
    DIFFERS(b.warn_above = 71);
    DIFFERS(b.crit_above = NAN);
    DIFFERS(b.warn_below = 1);
    DIFFERS(b.crit_below = 0);
    DIFFERS(b.clear_above = 60);
    DIFFERS(b.clear_below = 60);
    DIFFERS(b.crit_clear_above = 80);
    DIFFERS(b.crit_clear_below = 80);
    DIFFERS(b.hold_ns = 0);
    DIFFERS(b.clear_hold_ns = 1);
    DIFFERS(b.nodata_ns = 1);
    DIFFERS(b.flap_max = 1);
    DIFFERS(b.flap_window_ns = 1);
#undef DIFFERS
    assert_int_equal(n, 22);

    /* q only matters for quantiles; a condition has no selector. */
    a.stat.kind = WIN_AVG;
    b = a;
    b.stat.q = 0.5;
    assert_true(rule_def_same(&a, &b));
    a.kind = RULE_CONDITION;
    b = a;
    b.sel.name[0] = 'x';
    b.window_ns = 0;
    assert_true(rule_def_same(&a, &b));
}

/* ----------------------------------------------------------- set and life */

static void test_add_find_user(void **state)
{
    struct fx *fx = *state;
    struct rule_def d;
    struct rule *r;
    struct vigil_err err = {0};
    int owner1, owner2;
    vigil_series_id id = fx_series(fx, "lat");

    def_threshold(&d, "lat", "lat");
    d.warn_above = 50;
    d.user = &owner1;
    r = fx_add(fx, &d);
    assert_ptr_equal(rule_find(fx->rs, "lat"), r);
    assert_null(rule_find(fx->rs, "nope"));
    assert_ptr_equal(rule_get_def(r)->user, &owner1);
    assert_true(rule_def_same(rule_get_def(r), &d));
    assert_int_equal(rule_add(fx->rs, &d, NULL, &err), VIGIL_EEXIST);
    assert_string_equal(err.msg, "rule 'lat' already exists");
    pub(fx, id, T(0), 60);
    assert_ptr_equal(fx->ev[0].user, &owner1);
    /* A reload keeps the rule and its state, with the new owner data. */
    rule_set_user(r, &owner2);
    assert_state(r, 0, RULE_WARNING);
    pub(fx, id, T(1), 10);
    assert_int_equal(fx->n, 2);
    assert_ptr_equal(fx->ev[1].user, &owner2);
    assert_int_equal(rule_set_evals(fx->rs), 2);
}

static void test_remove(void **state)
{
    struct fx *fx = *state;
    struct rule_def d;
    struct rule *r, *keep;
    vigil_series_id id = fx_series(fx, "lat");

    def_threshold(&d, "lat", "lat");
    d.warn_above = 50;
    d.nodata_ns = S(10);
    r = fx_add(fx, &d);
    def_threshold(&d, "keep", "lat");
    d.warn_above = 500;
    keep = fx_add(fx, &d);
    pub(fx, id, T(0), 60);
    assert_int_equal(fx->n, 1);
    rule_remove(fx->rs, r);
    rule_remove(fx->rs, NULL);
    assert_null(rule_find(fx->rs, "lat"));
    assert_ptr_equal(rule_find(fx->rs, "keep"), keep);
    pub(fx, id, T(1), 10);
    pub(fx, id, T(2), 60);
    rule_set_tick(fx->rs, T(100)); /* no nodata from the removed rule */
    assert_int_equal(fx->n, 1);
    assert_int_equal(rule_set_evals(fx->rs), 2 + 2);
    /* The name is free again, and the new rule starts afresh. */
    def_threshold(&d, "lat", "lat");
    d.warn_above = 50;
    r = fx_add(fx, &d);
    assert_state(r, 0, RULE_OK);
    pub(fx, id, T(101), 60);
    assert_int_equal(fx->n, 2);
    assert_ev(fx, 1, T(101), RULE_OK, RULE_WARNING);
}

/* The event callback removes the rule that is speaking (from the sample
 * path and from a tick) and, during a tick, a rule not visited yet; the
 * rules after a removed one are still visited. */
static void test_remove_from_callback(void **state)
{
    struct fx *fx = *state;
    struct rule_def d;
    struct rule *r[4];
    const char *names[4] = {"a", "b", "c", "d"};
    vigil_series_id id = fx_series(fx, "lat");

    for (int i = 0; i < 4; i++) {
        def_threshold(&d, names[i], "lat");
        d.warn_above = 50;
        d.nodata_ns = S(10);
        r[i] = fx_add(fx, &d);
    }
    fx->remove_at[0] = r[0];
    pub(fx, id, T(0), 60); /* a speaks and goes; the others still hear */
    assert_int_equal(fx->n, 4);
    for (int i = 0; i < 4; i++) {
        assert_string_equal(fx->ev[i].rule, names[i]);
    }
    assert_null(rule_find(fx->rs, "a"));
    fx->remove_at[4] = r[1]; /* b, itself */
    fx->remove_at[5] = r[3]; /* c removes d before d is visited */
    rule_set_tick(fx->rs, T(20));
    assert_int_equal(fx->n, 6);
    assert_string_equal(fx->ev[4].rule, "b");
    assert_string_equal(fx->ev[5].rule, "c");
    assert_int_equal(fx->ev[5].to, RULE_NODATA);
    assert_null(rule_find(fx->rs, "b"));
    assert_null(rule_find(fx->rs, "d"));
    assert_ptr_equal(rule_find(fx->rs, "c"), r[2]);
    pub(fx, id, T(30), 60);
    assert_int_equal(fx->n, 7);
    assert_string_equal(fx->ev[6].rule, "c");
}

/* A callback that interns a matching series moves the instance array of
 * the rule that is running (the first instance lives in the rule, the
 * next four fill the array's first allocation). */
static void test_intern_from_callback(void **state)
{
    struct fx *fx = *state;
    struct rule_def d;
    struct rule *r;
    vigil_series_id ids[5];
    const char *names[5] = {"a", "b", "c", "d", "e"};

    for (int i = 0; i < 5; i++) {
        fx_intern_labels(fx, "proc.cpu", "name", names[i], &ids[i]);
    }
    def_threshold(&d, "cpu", "proc.cpu");
    d.warn_above = 50;
    r = fx_add(fx, &d);
    assert_int_equal(rule_instances(r), 5);
    fx->intern_on_event = "f";
    pub(fx, ids[4], T(0), 60);
    assert_int_equal(rule_instances(r), 6);
    assert_state(r, 4, RULE_WARNING);
    assert_state(r, 5, RULE_OK);
    pub(fx, ids[4], T(1), 10);
    assert_ev(fx, 1, T(1), RULE_WARNING, RULE_OK);
    assert_int_equal(fx->ev[1].series, ids[4]);
}

static void test_no_callback(void **state)
{
    struct fx *fx = *state;
    struct rule_set *rs = NULL;
    struct rule_def d;
    struct rule *r = NULL;
    struct vigil_err err = {0};
    vigil_series_id id = fx_series(fx, "lat");

    assert_int_equal(rule_set_create(fx->bus, NULL, NULL, &rs), 0);
    def_threshold(&d, "lat", "lat");
    d.warn_above = 50;
    assert_int_equal(rule_add(rs, &d, &r, &err), 0);
    pub(fx, id, T(0), 60);
    assert_state(r, 0, RULE_WARNING);
    rule_set_destroy(rs);
    rule_set_destroy(NULL);
    pub(fx, id, T(1), 10); /* unsubscribed: nothing left to call */
    assert_int_equal(fx->n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_names),
        cmocka_unit_test(test_level_above),
        cmocka_unit_test(test_level_below),
        cmocka_unit_test(test_level_band),
        cmocka_unit_test(test_level_hysteresis),
        cmocka_unit_test(test_def_same),
#define FX(t) cmocka_unit_test_setup_teardown(t, fx_setup, fx_teardown)
        FX(test_above_strict),
        FX(test_below),
        FX(test_band),
        FX(test_crit_only),
        FX(test_hold),
        FX(test_hold_exact),
        FX(test_escalate_and_clear_hold),
        FX(test_hold_warning_then_critical),
        FX(test_hysteresis),
        FX(test_nan_and_out_of_order),
        FX(test_nodata),
        FX(test_nodata_then_hold),
        FX(test_nodata_never_sampled),
        FX(test_nodata_clock_start),
        FX(test_hold_completes_on_tick),
        FX(test_flapping),
        FX(test_flapping_ends_on_sample),
        FX(test_flapping_per_instance),
        FX(test_per_series),
        FX(test_many_series),
        FX(test_window_p95),
        FX(test_window_avg),
        FX(test_window_rate),
        FX(test_window_growth),
        FX(test_condition),
        FX(test_condition_flapping),
        FX(test_feed_threshold_ignored),
        FX(test_def_check),
        FX(test_add_find_user),
        FX(test_remove),
        FX(test_remove_from_callback),
        FX(test_intern_from_callback),
        FX(test_no_callback),
#undef FX
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
