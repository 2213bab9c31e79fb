/* incident - incidents, investigation steps and guarded actions. */
#include "incident.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "exec.h"
#include "log.h"

#define INC_OUTPUT_DEFAULT (64 * 1024)
#define INC_KEY_MAX 640
#define INC_RUNS_MAX 64 /* per action, for max_per_hour */
#define INC_HOUR_NS (3600 * 1000000000LL)
#define INC_RECONCILE_MS 2000
/* The shape of a webhook's body, for receivers to check. */
#define VIGIL_WEBHOOK_SCHEMA "vigil.incident.v1"

static const char *const phase_names[RB_PHASES] = {"immediate", "short_term",
                                                   "deep"};

struct inc;

/* One step or action in flight. Freed when nothing refers to it: the
 * timer's close callback and, for plugin calls, the plugin's reply. */
struct inc_call {
    struct inc_mgr *m;
    struct inc *inc; /* NULL once abandoned (timed out, stopped) */
    int is_action;
    size_t index; /* step or action index in the runbook */
    int phase;    /* steps */
    char name[64];
    int64_t started;   /* wall ns */
    int64_t action_id; /* actions */
    char command[1024];
    char *args; /* actions: arguments a `when` chose, or NULL */
    uv_timer_t timer;
    int timer_open;
    int refs;
    struct exec_job *job;
    struct inc_call *next; /* in the manager's list */
};

struct inc {
    struct inc_mgr *m;
    int64_t id;
    char key[INC_KEY_MAX];
    char rule[RULE_NAME_MAX];
    char runbook[RULE_NAME_MAX];
    char title[128];
    char series[512];
    vigil_series_id sid;
    int has_series;
    int state, worst, open;
    double value;
    int64_t opened, resolved;
    json_t *evidence;  /* step name -> output */
    size_t step;       /* next step */
    size_t action;     /* next action of the current pass */
    int remediating;   /* a pass over the actions is under way */
    int again;         /* escalated during a pass: one more pass after */
    int busy;          /* a call is in flight */
    unsigned attempts; /* actions run (or dry-run) for this incident */
    int recommended;   /* the runbook's recommend ran */
    int acknowledged;  /* a person said they are on it */
    char *labels_json; /* adopted incidents: the stored labels */
    /* `vigil investigate`: steps only, then resolved and reported. */
    inc_done_cb done_cb;
    void *done_arg;
    struct inc *next;
};

/* Guardrail memory per action: last run per instance key, recent runs. */
struct inc_guard {
    char action[RULE_NAME_MAX + 64]; /* runbook/action */
    char key[INC_KEY_MAX];           /* rule instance */
    int64_t last_run;
    struct inc_guard *next;
};

struct inc_rate {
    char action[RULE_NAME_MAX + 64];
    int64_t runs[INC_RUNS_MAX];
    unsigned n, head;
    struct inc_rate *next;
};

/* An action waiting for `vigil incidents approve`. */
struct inc_await {
    struct inc_mgr *m;
    char name[64];
    int64_t action_id;
    int64_t incident_id;
    char runbook[RULE_NAME_MAX];
    size_t index;
    char *args; /* chosen by `when`, or NULL */
    struct inc_await *next;
};

struct inc_mgr {
    struct inc_env env;
    struct inc_await *awaits;
    struct inc *incs;
    struct inc_call *calls;
    struct inc_guard *guards;
    struct inc_rate *rates;
    inc_notify_cb notify;
    void *notify_arg;
    uv_timer_t reconcile;
    int timer_open;
    int stopping;
    int64_t vnow;    /* without a loop (vigil test): the latest event's time */
    int64_t next_id; /* without a store */
};

/* The wall clock, or the virtual one under `vigil test`. */
static int64_t inc_now(const struct inc_mgr *m)
{
    return m->env.loop != NULL ? clock_wall_ns() : m->vnow;
}

static void inc_advance(struct inc *inc);

int inc_mode_parse(const char *text, int *mode)
{
    if (strcmp(text, "off") == 0) {
        *mode = INC_MODE_OFF;
    } else if (strcmp(text, "dry-run") == 0) {
        *mode = INC_MODE_DRY_RUN;
    } else if (strcmp(text, "on") == 0) {
        *mode = INC_MODE_ON;
    } else {
        return VIGIL_EINVAL;
    }
    return 0;
}

static void notify(struct inc_mgr *m, const char *what, int64_t id,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void notify(struct inc_mgr *m, const char *what, int64_t id,
                   const char *fmt, ...)
{
    char detail[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    log_info("incident", "#%lld %s: %s", (long long)id, what, detail);
    if (m->notify != NULL) {
        m->notify(m->notify_arg, what, id, detail);
    }
}

/* ---------------------------------------------------------------- store */

static void save_incident(struct inc *inc)
{
    char *labels = NULL;

    if (inc->m->env.store == NULL) {
        return;
    }
    if (inc->has_series) {
        size_t n;
        const struct vigil_label *l =
            bus_series_labels(inc->m->env.bus, inc->sid, &n);
        json_t *o = json_object();
        for (size_t i = 0; o != NULL && i < n; i++) {
            json_object_set_new(o, l[i].key, json_string(l[i].value));
        }
        labels = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_decref(o);
    } else if (inc->labels_json != NULL) {
        labels = strdup(inc->labels_json);
    }
    struct store_incident row = {
        .id = inc->id,
        .rule = inc->rule,
        .series = inc->series,
        .title = inc->title,
        .runbook = inc->runbook[0] ? inc->runbook : NULL,
        .state = inc->worst,
        .open = inc->open,
        .opened_ts = inc->opened,
        .resolved_ts = inc->resolved,
        .acknowledged = inc->acknowledged,
        .labels_json = labels,
    };
    store_put_incident(inc->m->env.store, &row);
    free(labels);
}

static void save_transition(struct inc *inc, const struct rule_event *ev)
{
    if (inc->m->env.store == NULL) {
        return;
    }
    struct store_transition t = {.incident_id = inc->id,
                                 .ts = ev->ts,
                                 .from = ev->from,
                                 .to = ev->to,
                                 .value = ev->value,
                                 .reason = ev->reason ? ev->reason : ""};
    store_add_transition(inc->m->env.store, &t);
}

static void save_evidence(struct inc *inc, size_t step, const char *name,
                          int phase, const char *status, int64_t started,
                          int64_t ended, const char *output)
{
    if (inc->m->env.store == NULL) {
        return;
    }
    struct store_evidence e = {.incident_id = inc->id,
                               .step = (int)step,
                               .name = name,
                               .phase = phase_names[phase],
                               .status = status,
                               .started_ts = started,
                               .ended_ts = ended,
                               .output = output};
    store_put_evidence(inc->m->env.store, &e);
}

/* ---------------------------------------------------------------- calls */

/* A call holds one reference for the incident waiting on it, one for its
 * timer while open, and one for each callback still due (a command's exit,
 * a plugin's reply). */
static struct inc_call *call_new(struct inc *inc, int is_action, size_t index,
                                 const char *name)
{
    struct inc_mgr *m = inc->m;
    struct inc_call *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        return NULL;
    }
    c->m = m;
    c->inc = inc;
    c->is_action = is_action;
    c->index = index;
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->started = inc_now(m);
    c->refs = 1;
    c->next = m->calls;
    m->calls = c;
    inc->busy = 1;
    return c;
}

static void call_unref(struct inc_call *c)
{
    if (--c->refs > 0) {
        return;
    }
    for (struct inc_call **p = &c->m->calls; *p != NULL; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    free(c->args);
    free(c);
}

static void on_call_timer_closed(uv_handle_t *h)
{
    call_unref(h->data);
}

/* Start the call's time budget; on_expire runs if it passes. */
static void call_timer(struct inc_call *c, int64_t timeout_ns,
                       uv_timer_cb on_expire)
{
    uv_timer_init(c->m->env.loop, &c->timer);
    c->timer.data = c;
    c->timer_open = 1;
    c->refs++;
    uv_timer_start(&c->timer, on_expire,
                   (uint64_t)((timeout_ns + 999999) / 1000000), 0);
}

/* The call is over for its incident: close its timer, drop the incident's
 * reference and move the incident on. Later callbacks find c->inc NULL. */
static void call_done(struct inc_call *c)
{
    struct inc *inc = c->inc;

    c->inc = NULL;
    if (c->timer_open) {
        c->timer_open = 0;
        uv_close((uv_handle_t *)&c->timer, on_call_timer_closed);
    }
    call_unref(c);
    if (inc != NULL) {
        inc->busy = 0;
        inc_advance(inc);
    }
}

/* ---------------------------------------------------------------- env */

/* VIGIL_* variables describing the incident, for commands. Strings live
 * in buf. */
static void incident_env(const struct inc *inc, const char *action,
                         const char *mode, char *buf, size_t size,
                         const char **env, size_t max)
{
    const char *names[] = {"VIGIL_INCIDENT_ID", "VIGIL_RULE",   "VIGIL_SERIES",
                           "VIGIL_STATE",       "VIGIL_VALUE",  "VIGIL_RUNBOOK",
                           "VIGIL_TITLE",       "VIGIL_ACTION", "VIGIL_MODE"};
    char vals[9][128];
    size_t off = 0, n = 0;

    snprintf(vals[0], sizeof(vals[0]), "%lld", (long long)inc->id);
    snprintf(vals[1], sizeof(vals[1]), "%s", inc->rule);
    snprintf(vals[2], sizeof(vals[2]), "%.127s", inc->series);
    snprintf(vals[3], sizeof(vals[3]), "%s", rule_state_name(inc->state));
    snprintf(vals[4], sizeof(vals[4]), "%.17g", inc->value);
    snprintf(vals[5], sizeof(vals[5]), "%s", inc->runbook);
    snprintf(vals[6], sizeof(vals[6]), "%.127s", inc->title);
    snprintf(vals[7], sizeof(vals[7]), "%s", action ? action : "");
    snprintf(vals[8], sizeof(vals[8]), "%s", mode ? mode : "");
    for (size_t i = 0; i < 9 && n + 1 < max; i++) {
        int w = snprintf(buf + off, size - off, "%s=%s", names[i], vals[i]);
        if (w < 0 || (size_t)w >= size - off) {
            break;
        }
        env[n++] = buf + off;
        off += (size_t)w + 1;
    }
    env[n] = NULL;
}

/* argv from {"argv":[...]}: pointers into the JSON, which must live as
 * long as argv is used. Returns the count, or -1. */
static int json_argv(const json_t *args, const char **argv, size_t max)
{
    const json_t *list = json_object_get(args, "argv");
    size_t i;
    json_t *v;

    if (!json_is_array(list) || json_array_size(list) == 0 ||
        json_array_size(list) >= max) {
        return -1;
    }
    json_array_foreach(list, i, v)
    {
        if (!json_is_string(v)) {
            return -1;
        }
        argv[i] = json_string_value(v);
    }
    argv[json_array_size(list)] = NULL;
    return (int)json_array_size(list);
}

/* The incident as JSON, for `when` predicates. Caller frees. */
static char *incident_json(const struct inc *inc)
{
    json_t *o = json_pack("{s:I,s:s,s:s,s:s,s:s,s:f,s:f,s:O}", "id",
                          (json_int_t)inc->id, "rule", inc->rule, "series",
                          inc->series, "state", rule_state_name(inc->state),
                          "worst", rule_state_name(inc->worst), "value",
                          isfinite(inc->value) ? inc->value : 0.0, "opened",
                          (double)inc->opened / 1e9, "evidence", inc->evidence);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;

    json_decref(o);
    return text;
}

/* ---------------------------------------------------------------- steps */

/* Record a finished step and move on. output is JSON or plain text. */
static void step_finish(struct inc_call *c, const char *status,
                        const char *output)
{
    struct inc *inc = c->inc;

    if (inc == NULL) {
        return; /* abandoned: its outcome was already recorded */
    }
    save_evidence(inc, c->index, c->name, c->phase, status, c->started,
                  inc_now(inc->m), output);
    json_t *v = output ? json_loads(output, JSON_DECODE_ANY, NULL) : NULL;
    if (v == NULL) {
        v = json_string(output ? output : "");
    }
    char key[80];
    snprintf(key, sizeof(key), "%s", c->name);
    for (int i = 2; json_object_get(inc->evidence, key) != NULL; i++) {
        snprintf(key, sizeof(key), "%s#%d", c->name, i);
    }
    json_object_set_new(inc->evidence, key, v);
    notify(inc->m, "step", inc->id, "%s %s", c->name, status);
    inc->step++;
    call_done(c);
}

static void step_snapshot(struct inc_call *c, const json_t *args)
{
    struct bus *bus = c->m->env.bus;
    static const char *const stats[] = {"last", "min", "avg", "max", "p95"};
    const json_t *sel = json_object_get(args, "series");
    const char *wtext = json_string_value(json_object_get(args, "window"));
    int64_t window_ms = 5 * 60 * 1000;
    json_t *out = json_object();
    char *text;
    size_t i;
    json_t *v;

    if (wtext != NULL && cfg_parse_duration_ms(wtext, &window_ms) != 0) {
        json_decref(out);
        step_finish(c, "failed", "window: expected a duration such as 5m");
        return;
    }
    json_t *list = json_is_string(sel) ? json_pack("[O]", sel)
                                       : json_incref((json_t *)sel);
    json_array_foreach(list, i, v)
    {
        struct bus_selector bs;
        if (!json_is_string(v) ||
            bus_selector_parse(json_string_value(v), &bs, NULL) != 0) {
            continue;
        }
        for (uint32_t id = 0; id < bus_series_count(bus); id++) {
            if (!bus_match(bus, id, &bs)) {
                continue;
            }
            json_t *row = json_object();
            for (size_t k = 0; k < 5; k++) {
                struct win_stat st;
                double x;
                win_stat_parse(stats[k], &st);
                if (bus_stat(bus, id, st, inc_now(c->m), window_ms * 1000000,
                             &x) == 0 &&
                    isfinite(x)) {
                    json_object_set_new(row, stats[k], json_real(x));
                }
            }
            json_object_set_new(out, bus_series_key(bus, id), row);
        }
    }
    json_decref(list);
    text = json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(out);
    step_finish(c, "ok", text);
    free(text);
}

/* A command's result as evidence or action output. */
static char *exec_json(const struct exec_result *r)
{
    json_t *o = json_pack(
        "{s:b,s:i,s:i,s:b,s:s,s:I,s:f}", "spawned", r->spawned, "exit_code",
        r->exit_code, "signal", r->term_signal, "timed_out", r->timed_out,
        "output", r->output, "dropped_bytes", (json_int_t)r->output_dropped,
        "seconds", (double)r->duration_ns / 1e9);
    char *text;

    if (o != NULL && r->error != NULL) {
        json_object_set_new(o, "error", json_string(r->error));
    }
    text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return text;
}

static const char *exec_status(const struct exec_result *r)
{
    if (r->timed_out) {
        return "timeout";
    }
    return r->spawned && r->exit_code == 0 ? "ok" : "failed";
}

static void on_step_exec(void *arg, const struct exec_result *r)
{
    struct inc_call *c = arg;
    char *text = exec_json(r);

    c->job = NULL;
    step_finish(c, exec_status(r), text);
    free(text);
    call_unref(c); /* the exit callback's reference */
}

static void on_step_reply(void *arg, int status, const char *json)
{
    struct inc_call *c = arg;

    if (status == 0) {
        step_finish(c, "ok", json);
    } else {
        char msg[256];
        snprintf(msg, sizeof(msg), "%s%s%s", vigil_strerror(status),
                 json ? ": " : "", json ? json : "");
        step_finish(c, "failed", msg);
    }
    call_unref(c); /* the reply's reference */
}

static void on_step_timeout(uv_timer_t *t)
{
    struct inc_call *c = t->data;
    char msg[64];

    snprintf(msg, sizeof(msg), "no result within its time budget");
    exec_cancel(c->job);
    step_finish(c, "timeout", msg);
}

static void run_step(struct inc *inc, const struct rb_step *st, size_t index)
{
    struct inc_mgr *m = inc->m;
    struct inc_call *c = call_new(inc, 0, index, st->name);
    json_t *args;

    if (c == NULL) {
        inc->step++;
        return;
    }
    c->phase = st->phase;
    save_evidence(inc, index, st->name, st->phase, "running", c->started, 0,
                  NULL);
    args = json_loads(st->args_json, 0, NULL);
    if (strcmp(st->name, "snapshot") == 0) {
        step_snapshot(c, args);
    } else if (m->env.loop == NULL) {
        step_finish(c, "skipped",
                    "commands and diagnostics do not run "
                    "under vigil test");
    } else if (strcmp(st->name, "exec") == 0) {
        const char *argv[64], *env[16];
        char envbuf[2048];
        incident_env(inc, NULL, NULL, envbuf, sizeof(envbuf), env, 16);
        c->refs++;
        if (json_argv(args, argv, 64) < 0 ||
            exec_start(m->env.loop, argv, env, st->timeout_ns,
                       m->env.output_max, on_step_exec, c, &c->job) != 0) {
            c->refs--;
            step_finish(c, "failed", "argv must be a list of strings");
        }
    } else if (m->env.plugs == NULL ||
               plug_find_diag(m->env.plugs, st->name) == NULL) {
        char msg[160];
        snprintf(msg, sizeof(msg), "no plugin provides the diagnostic '%s'",
                 st->name);
        step_finish(c, "failed", msg);
    } else {
        call_timer(c, st->timeout_ns, on_step_timeout);
        c->refs++;
        plug_diag_run(m->env.plugs, st->name, st->args_json, on_step_reply, c);
    }
    json_decref(args);
}

/* ---------------------------------------------------------------- actions */

/* Write an action row; the result is final unless PENDING. */
static int64_t save_action(struct inc *inc, const struct rb_action *a,
                           int64_t id, const char *mode, int result,
                           const char *reason, const char *output,
                           int exit_code, int64_t started, int64_t ended,
                           store_done_cb cb, void *arg)
{
    struct store *st = inc->m->env.store;

    if (st == NULL) {
        if (cb != NULL) {
            cb(arg, 0);
        }
        return id;
    }
    if (id == 0) {
        id = store_next_action_id(st);
    }
    struct store_action row = {.id = id,
                               .incident_id = inc->id,
                               .name = a->name,
                               .kind = a->kind,
                               .mode = mode,
                               .command = a->args_json,
                               .result = result,
                               .reason = reason,
                               .intent_ts = started ? started : inc_now(inc->m),
                               .started_ts = started,
                               .ended_ts = ended,
                               .exit_code = exit_code,
                               .output = output};
    int rc = store_put_action(st, &row, cb, arg);
    if (rc != 0) {
        log_error("incident", "#%lld: action '%s' not recorded: %s",
                  (long long)inc->id, a->name, vigil_strerror(rc));
        if (cb != NULL) {
            cb(arg, rc); /* the store will not call it */
        }
    }
    return id;
}

static struct inc_guard *guard_get(struct inc_mgr *m, const char *action,
                                   const char *key)
{
    struct inc_guard *g;

    for (g = m->guards; g != NULL; g = g->next) {
        if (strcmp(g->action, action) == 0 && strcmp(g->key, key) == 0) {
            return g;
        }
    }
    g = calloc(1, sizeof(*g));
    if (g != NULL) {
        snprintf(g->action, sizeof(g->action), "%s", action);
        snprintf(g->key, sizeof(g->key), "%s", key);
        g->next = m->guards;
        m->guards = g;
    }
    return g;
}

static struct inc_rate *rate_get(struct inc_mgr *m, const char *action)
{
    struct inc_rate *r;

    for (r = m->rates; r != NULL; r = r->next) {
        if (strcmp(r->action, action) == 0) {
            return r;
        }
    }
    r = calloc(1, sizeof(*r));
    if (r != NULL) {
        snprintf(r->action, sizeof(r->action), "%s", action);
        r->next = m->rates;
        m->rates = r;
    }
    return r;
}

static unsigned rate_count(const struct inc_rate *r, int64_t now)
{
    unsigned n = 0;

    for (unsigned i = 0; i < r->n; i++) {
        n += now - r->runs[i] < INC_HOUR_NS;
    }
    return n;
}

static void rate_add(struct inc_rate *r, int64_t now)
{
    r->runs[r->head] = now;
    r->head = (r->head + 1) % INC_RUNS_MAX;
    if (r->n < INC_RUNS_MAX) {
        r->n++;
    }
}

/* Why the action must not run now, into why; 0 when it may. */
static int guardrails(struct inc *inc, const struct rb_runbook *rb,
                      const struct rb_action *a, int64_t now, char *why,
                      size_t size)
{
    char name[RULE_NAME_MAX + 64];
    struct inc_guard *g;
    struct inc_rate *r;

    snprintf(name, sizeof(name), "%s/%s", rb->name, a->name);
    g = guard_get(inc->m, name, inc->key);
    r = rate_get(inc->m, name);
    if (g == NULL || r == NULL) {
        snprintf(why, size, "out of memory");
        return 1;
    }
    if (a->breaker > 0 && inc->attempts >= a->breaker) {
        snprintf(why, size,
                 "circuit breaker open: %u attempts did not "
                 "resolve the incident",
                 inc->attempts);
        return 1;
    }
    if (a->cooldown_ns > 0 && g->last_run != 0 &&
        now - g->last_run < a->cooldown_ns) {
        snprintf(why, size, "cooldown: ran %.0f s ago, cooldown is %.0f s",
                 (double)(now - g->last_run) / 1e9,
                 (double)a->cooldown_ns / 1e9);
        return 1;
    }
    if (a->max_per_hour > 0 && rate_count(r, now) >= a->max_per_hour) {
        snprintf(why, size, "rate limit: %u runs in the last hour",
                 a->max_per_hour);
        return 1;
    }
    return 0;
}

static void guard_note_run(struct inc *inc, const struct rb_runbook *rb,
                           const struct rb_action *a, int64_t now)
{
    char name[RULE_NAME_MAX + 64];
    struct inc_guard *g;
    struct inc_rate *r;

    snprintf(name, sizeof(name), "%s/%s", rb->name, a->name);
    if ((g = guard_get(inc->m, name, inc->key)) != NULL) {
        g->last_run = now;
    }
    if ((r = rate_get(inc->m, name)) != NULL) {
        rate_add(r, now);
    }
    inc->attempts++;
}

static void action_finish(struct inc_call *c, int result, const char *reason,
                          const char *output, int exit_code)
{
    struct inc *inc = c->inc;
    static const char *const results[] = {
        "pending",           "ok",         "failed",
        "timeout",           "dry-run",    "skipped",
        "awaiting approval", "interrupted"};

    if (inc == NULL) {
        return;
    }
    const struct rb_runbook *rb =
        rb_engine_runbook(inc->m->env.rules, inc->runbook);
    if (rb != NULL && c->index < rb->nactions) {
        save_action(inc, &rb->actions[c->index], c->action_id, "on", result,
                    reason, output, exit_code, c->started, inc_now(inc->m),
                    NULL, NULL);
    }
    notify(inc->m, "action", inc->id, "%s %s%s%s", c->name, results[result],
           reason ? ": " : "", reason ? reason : "");
    call_done(c);
}

static void on_action_exec(void *arg, const struct exec_result *r)
{
    struct inc_call *c = arg;
    char *text = exec_json(r);
    int result = r->timed_out                      ? STORE_ACT_TIMEOUT
                 : r->spawned && r->exit_code == 0 ? STORE_ACT_OK
                                                   : STORE_ACT_FAILED;

    c->job = NULL;
    action_finish(c, result, r->error, text, r->exit_code);
    free(text);
    call_unref(c);
}

static void on_action_reply(void *arg, int status, const char *json)
{
    struct inc_call *c = arg;
    json_t *o = json ? json_loads(json, 0, NULL) : NULL;
    const char *error = json_string_value(json_object_get(o, "error"));
    json_t *attempts = json_object_get(o, "attempts");
    char why[320];

    /* A plugin says why in its reply; fall back on the code. */
    if (error != NULL && json_is_integer(attempts)) {
        snprintf(why, sizeof(why), "%s (%lld attempts)", error,
                 (long long)json_integer_value(attempts));
    } else {
        snprintf(why, sizeof(why), "%s",
                 error ? error : vigil_strerror(status));
    }
    action_finish(c, status == 0 ? STORE_ACT_OK : STORE_ACT_FAILED,
                  status == 0 ? NULL : why, json, status);
    json_decref(o);
    call_unref(c);
}

/* The webhook plugin's arguments: the action's url, headers and retries,
 * and the incident as the body. Caller frees. */
static char *webhook_args(const struct inc *inc, const struct rb_action *a,
                          const char *args_json)
{
    json_t *args = json_loads(args_json, 0, NULL);
    char *ij = incident_json(inc);
    json_t *body =
        json_pack("{s:s,s:s,s:o?}", "vigil", VIGIL_WEBHOOK_SCHEMA, "action",
                  a->name, "incident", ij ? json_loads(ij, 0, NULL) : NULL);
    char *text = NULL;

    if (args != NULL && body != NULL &&
        json_object_set_new(args, "body", body) == 0) {
        body = NULL;
        text = json_dumps(args, JSON_COMPACT);
    }
    json_decref(body);
    json_decref(args);
    free(ij);
    return text;
}

static void on_action_timeout(uv_timer_t *t)
{
    struct inc_call *c = t->data;

    action_finish(c, STORE_ACT_TIMEOUT, "no result within its timeout", NULL,
                  -1);
}

/* The intent is on disk: run the action now. */
static void on_intent_saved(void *arg, int status)
{
    struct inc_call *c = arg;
    struct inc *inc = c->inc;
    const struct rb_runbook *rb;
    const struct rb_action *a;

    call_unref(c); /* the store callback's reference */
    if (inc == NULL) {
        return;
    }
    rb = rb_engine_runbook(inc->m->env.rules, inc->runbook);
    if (status != 0 || rb == NULL || c->index >= rb->nactions) {
        action_finish(c, STORE_ACT_FAILED,
                      status ? "its intent could not be recorded; not run"
                             : "the runbook went away",
                      NULL, -1);
        return;
    }
    a = &rb->actions[c->index];
    const char *args_json = c->args != NULL ? c->args : a->args_json;
    c->started = inc_now(inc->m);
    if (strcmp(a->kind, "exec") == 0) {
        const char *argv[64], *env[16];
        char envbuf[2048];
        json_t *args = json_loads(args_json, 0, NULL);
        incident_env(inc, a->name, "on", envbuf, sizeof(envbuf), env, 16);
        c->refs++;
        if (json_argv(args, argv, 64) < 0 ||
            exec_start(inc->m->env.loop, argv, env, a->timeout_ns,
                       inc->m->env.output_max, on_action_exec, c,
                       &c->job) != 0) {
            c->refs--;
            action_finish(c, STORE_ACT_FAILED, "bad argv", NULL, -1);
        } else if (c->job != NULL) {
            notify(inc->m, "action", inc->id, "%s started", a->name);
        }
        json_decref(args);
        return;
    }
    /* A webhook is the webhook plugin's action, with the incident as its
     * body: the core itself loads no HTTP library. */
    int hook = strcmp(a->kind, "webhook") == 0;
    const char *name = hook ? "webhook.post" : a->kind;
    if (inc->m->env.plugs == NULL ||
        plug_find_diag(inc->m->env.plugs, name) == NULL) {
        action_finish(c, STORE_ACT_FAILED,
                      hook ? "webhooks need [plugin webhook] in the config"
                           : "no plugin provides this action",
                      NULL, -1);
        return;
    }
    char *args = hook ? webhook_args(inc, a, args_json) : NULL;
    call_timer(c, a->timeout_ns, on_action_timeout);
    c->refs++;
    plug_diag_run(inc->m->env.plugs, name, hook ? args : args_json,
                  on_action_reply, c);
    free(args);
}

/* The waiting row is committed: now `vigil incidents approve` finds it,
 * so now is when people are told. */
static void on_await_saved(void *arg, int status)
{
    struct inc_await *w = arg;

    if (status == 0) {
        notify(w->m, "action", w->incident_id,
               "%s awaiting approval: vigil incidents approve %lld", w->name,
               (long long)w->action_id);
    }
}

/* Record an action in approve mode as waiting and remember it. */
static void request_approval(struct inc *inc, const struct rb_runbook *rb,
                             size_t index, char *args)
{
    const struct rb_action *a = &rb->actions[index];
    struct inc_await *w = calloc(1, sizeof(*w));

    if (w == NULL || inc->m->env.store == NULL) {
        /* Without a store (vigil test) nobody can approve: say it waits. */
        free(w);
        free(args);
        notify(inc->m, "action", inc->id, "%s awaiting approval", a->name);
        return;
    }
    w->m = inc->m;
    w->action_id = store_next_action_id(inc->m->env.store);
    w->incident_id = inc->id;
    w->index = index;
    w->args = args;
    snprintf(w->runbook, sizeof(w->runbook), "%s", rb->name);
    snprintf(w->name, sizeof(w->name), "%s", a->name);
    w->next = inc->m->awaits;
    inc->m->awaits = w;
    save_action(inc, a, w->action_id, "approve", STORE_ACT_AWAITING,
                "waiting for approval", NULL, 0, 0, 0, on_await_saved, w);
}

/* Run an action: write its intent (a new row, or the approved one), then
 * start it once the intent is committed. Returns 1 (the incident waits). */
static int start_action(struct inc *inc, const struct rb_runbook *rb,
                        size_t index, int64_t action_id, int64_t now,
                        char *args)
{
    const struct rb_action *a = &rb->actions[index];
    struct inc_call *c = call_new(inc, 1, index, a->name);

    if (c == NULL) {
        free(args);
        return 0;
    }
    c->args = args; /* the call owns them now */
    guard_note_run(inc, rb, a, now);
    c->refs++; /* for on_intent_saved */
    c->action_id = save_action(inc, a, action_id, "on", STORE_ACT_PENDING,
                               action_id ? "approved" : "started", NULL, 0, 0,
                               0, on_intent_saved, c);
    return 1;
}

/* Decide about one action. Returns 1 when a run was started (the
 * incident waits for it), 0 when the decision is already recorded. */
static int consider_action(struct inc *inc, const struct rb_runbook *rb,
                           size_t index)
{
    const struct rb_action *a = &rb->actions[index];
    int global = inc->m->env.mode;
    int64_t now = inc_now(inc->m);
    char why[512];
    int rc;

    if (inc->state < a->on_state || inc->state == RULE_NODATA) {
        return 0; /* not for this state: nothing to record */
    }
    if (strcmp(a->mode, "off") == 0 || global == INC_MODE_OFF) {
        snprintf(why, sizeof(why), "mode is off%s",
                 global == INC_MODE_OFF ? " ([actions] mode)" : "");
        save_action(inc, a, 0, "off", STORE_ACT_SKIPPED, why, NULL, 0, 0, 0,
                    NULL, NULL);
        notify(inc->m, "action", inc->id, "%s skipped: %s", a->name, why);
        return 0;
    }
    if (guardrails(inc, rb, a, now, why, sizeof(why))) {
        save_action(inc, a, 0, a->mode, STORE_ACT_SKIPPED, why, NULL, 0, 0, 0,
                    NULL, NULL);
        notify(inc->m, "action", inc->id, "%s skipped: %s", a->name, why);
        return 0;
    }
    char *ij = incident_json(inc), *args = NULL;
    rc = rb_action_when(inc->m->env.rules, rb, a, ij, &args);
    free(ij);
    if (rc <= 0) {
        snprintf(why, sizeof(why), "%s",
                 rc == 0 ? "its when predicate said no"
                         : "its when predicate failed (see the log)");
        save_action(inc, a, 0, a->mode,
                    rc == 0 ? STORE_ACT_SKIPPED : STORE_ACT_FAILED, why, NULL,
                    0, 0, 0, NULL, NULL);
        notify(inc->m, "action", inc->id, "%s skipped: %s", a->name, why);
        return 0;
    }
    if (strcmp(a->mode, "dry-run") == 0 || global == INC_MODE_DRY_RUN) {
        snprintf(why, sizeof(why), "dry-run%s: would run %s %.180s",
                 global == INC_MODE_DRY_RUN ? " ([actions] mode)" : "", a->kind,
                 args != NULL ? args : a->args_json);
        free(args);
        guard_note_run(inc, rb, a, now);
        save_action(inc, a, 0, "dry-run", STORE_ACT_DRY_RUN, why, NULL, 0, now,
                    now, NULL, NULL);
        notify(inc->m, "action", inc->id, "%s %s", a->name, why);
        return 0;
    }
    if (strcmp(a->mode, "approve") == 0) {
        request_approval(inc, rb, index, args);
        return 0;
    }
    return start_action(inc, rb, index, 0, now, args);
}

/* ---------------------------------------------------------------- flow */

/* Run what is next: steps in order, then a pass over the actions. Each
 * call that completes moves the incident on again through call_done. */
/* The evidence is in: the runbook's recommendations join it, for the
 * report and for the actions' `when`. */
static void recommend(struct inc *inc, const struct rb_runbook *rb)
{
    char *ij, *out = NULL;
    int64_t now = inc_now(inc->m);
    json_t *list;

    if (rb->recommend_ref < 0) {
        return;
    }
    ij = incident_json(inc);
    if (ij != NULL && rb_runbook_recommend(rb, ij, &out) == 0 && out != NULL &&
        (list = json_loads(out, 0, NULL)) != NULL) {
        json_object_set_new(inc->evidence, "recommendations", list);
        save_evidence(inc, rb->nsteps, "recommendations", RB_PHASES - 1, "ok",
                      now, now, out);
        notify(inc->m, "step", inc->id, "recommendations: %zu",
               json_array_size(list));
    }
    free(out);
    free(ij);
}

/* An investigation's steps are done: it is resolved at once. */
static void investigation_done(struct inc *inc)
{
    inc_done_cb cb = inc->done_cb;

    inc->open = 0;
    inc->resolved = inc_now(inc->m);
    save_incident(inc);
    notify(inc->m, "resolved", inc->id, "%s %s", inc->rule, inc->runbook);
    inc->done_cb = NULL;
    cb(inc->done_arg, inc->id);
}

static void inc_advance(struct inc *inc)
{
    struct inc_mgr *m = inc->m;

    while (!inc->busy && !m->stopping) {
        const struct rb_runbook *rb =
            inc->runbook[0] ? rb_engine_runbook(m->env.rules, inc->runbook)
                            : NULL;
        if (rb == NULL) {
            return;
        }
        if (inc->step < rb->nsteps) {
            run_step(inc, &rb->steps[inc->step], inc->step);
            continue;
        }
        if (!inc->recommended) {
            inc->recommended = 1;
            recommend(inc, rb);
        }
        if (inc->remediating && inc->action < rb->nactions) {
            size_t i = inc->action++;
            consider_action(inc, rb, i);
            continue;
        }
        if (inc->remediating && inc->again) {
            inc->again = 0;
            inc->action = 0;
            continue;
        }
        inc->remediating = 0;
        if (inc->done_cb != NULL && inc->open) {
            investigation_done(inc);
        }
        return;
    }
}

static void instance_key(const struct rule_event *ev, struct bus *bus,
                         char *key, size_t size)
{
    snprintf(key, size, "%s\x1f%s", ev->def->name,
             ev->def->kind == RULE_THRESHOLD ? bus_series_key(bus, ev->series)
                                             : "");
}

static struct inc *find_open(struct inc_mgr *m, const char *key)
{
    for (struct inc *i = m->incs; i != NULL; i = i->next) {
        if (i->open && strcmp(i->key, key) == 0) {
            return i;
        }
    }
    return NULL;
}

static struct inc *inc_open(struct inc_mgr *m, const struct rule_event *ev,
                            const char *key)
{
    struct inc *inc = calloc(1, sizeof(*inc));
    const char *rb = rb_rule_runbook(ev->def);

    if (inc == NULL || (inc->evidence = json_object()) == NULL) {
        free(inc);
        return NULL;
    }
    inc->m = m;
    inc->id =
        m->env.store ? store_next_incident_id(m->env.store) : ++m->next_id;
    snprintf(inc->key, sizeof(inc->key), "%s", key);
    snprintf(inc->rule, sizeof(inc->rule), "%s", ev->def->name);
    snprintf(inc->runbook, sizeof(inc->runbook), "%s", rb ? rb : "");
    snprintf(inc->title, sizeof(inc->title), "%s", rb_rule_title(ev->def));
    if (ev->def->kind == RULE_THRESHOLD) {
        inc->has_series = 1;
        inc->sid = ev->series;
        snprintf(inc->series, sizeof(inc->series), "%s",
                 bus_series_key(m->env.bus, ev->series));
    }
    inc->open = 1;
    inc->opened = ev->ts;
    inc->remediating = 1; /* after the investigation */
    inc->next = m->incs;
    m->incs = inc;
    return inc;
}

/* Resolved incidents are dropped from memory once nothing refers to them;
 * the store keeps them. */
static void inc_free(struct inc *inc)
{
    json_decref(inc->evidence);
    free(inc->labels_json);
    free(inc);
}

static void reap_resolved(struct inc_mgr *m)
{
    for (struct inc **p = &m->incs; *p != NULL;) {
        struct inc *i = *p;
        if (!i->open && !i->busy) {
            *p = i->next;
            inc_free(i);
        } else {
            p = &i->next;
        }
    }
}

void inc_on_event(void *arg, const struct rule_event *ev, const char *file)
{
    struct inc_mgr *m = arg;
    char key[INC_KEY_MAX];
    struct inc *inc;

    (void)file;
    if (m->stopping || (ev->flapping != 0 && ev->from == ev->to)) {
        return; /* stopping, or a flapping marker, not a change of state */
    }
    m->vnow = ev->ts;
    reap_resolved(m);
    instance_key(ev, m->env.bus, key, sizeof(key));
    inc = find_open(m, key);
    if (inc == NULL) {
        if (ev->to != RULE_WARNING && ev->to != RULE_CRITICAL) {
            return;
        }
        inc = inc_open(m, ev, key);
        if (inc == NULL) {
            log_error("incident", "out of memory opening an incident for %s",
                      ev->def->name);
            return;
        }
        inc->state = inc->worst = ev->to;
        inc->value = ev->value;
        save_incident(inc);
        save_transition(inc, ev);
        notify(m, "opened", inc->id, "%s %s %s: %s", inc->rule, inc->series,
               rule_state_name(ev->to), ev->reason ? ev->reason : "");
        inc_advance(inc);
        return;
    }
    inc->state = ev->to;
    inc->value = ev->value;
    save_transition(inc, ev);
    if (ev->to == RULE_OK) {
        inc->open = 0;
        inc->resolved = ev->ts;
        save_incident(inc);
        notify(m, "resolved", inc->id, "%s %s", inc->rule, inc->series);
        return;
    }
    if (ev->to != RULE_NODATA && ev->to > inc->worst) {
        inc->worst = ev->to;
        save_incident(inc);
        notify(m, "escalated", inc->id, "%s %s", inc->rule,
               rule_state_name(ev->to));
        if (inc->remediating) {
            inc->again = 1;
        } else {
            inc->remediating = 1;
            inc->action = 0;
            inc_advance(inc);
        }
    }
}

int inc_investigate(struct inc_mgr *m, const char *runbook, inc_done_cb cb,
                    void *arg)
{
    const struct rb_runbook *rb = rb_engine_runbook(m->env.rules, runbook);
    struct inc *inc = NULL;

    if (rb == NULL) {
        return VIGIL_ENOENT;
    }
    if (strlen(runbook) >= RULE_NAME_MAX ||
        (inc = calloc(1, sizeof(*inc))) == NULL ||
        (inc->evidence = json_object()) == NULL) {
        free(inc);
        return VIGIL_ENOMEM;
    }
    inc->m = m;
    inc->id =
        m->env.store ? store_next_incident_id(m->env.store) : ++m->next_id;
    /* Its own key: never merged with a rule's incident. */
    snprintf(inc->key, sizeof(inc->key), "investigate\x1f%lld",
             (long long)inc->id);
    snprintf(inc->rule, sizeof(inc->rule), "investigate");
    snprintf(inc->runbook, sizeof(inc->runbook), "%s", runbook);
    snprintf(inc->title, sizeof(inc->title), "%s",
             rb->title[0] ? rb->title : runbook);
    inc->state = inc->worst = RULE_OK;
    inc->value = NAN;
    inc->open = 1;
    inc->opened = inc_now(m);
    inc->done_cb = cb;
    inc->done_arg = arg;
    inc->next = m->incs;
    m->incs = inc;
    save_incident(inc);
    notify(m, "opened", inc->id, "investigate %s", runbook);
    inc_advance(inc);
    return 0;
}

int inc_acknowledge(struct inc_mgr *m, int64_t id, const char *who)
{
    for (struct inc *i = m->incs; i != NULL; i = i->next) {
        if (i->id == id && i->open) {
            if (!i->acknowledged) {
                i->acknowledged = 1;
                save_incident(i);
                notify(m, "acknowledged", id, "%s %s by %s", i->rule, i->series,
                       who);
            }
            return 0;
        }
    }
    return VIGIL_ENOENT;
}

/* ---------------------------------------------------------------- approvals */

static struct inc *find_by_id(struct inc_mgr *m, int64_t id)
{
    for (struct inc *i = m->incs; i != NULL; i = i->next) {
        if (i->id == id) {
            return i;
        }
    }
    return NULL;
}

/* The store found an approval: run the action now, if its incident is
 * still open and not busy; otherwise record why not. */
static void on_approved(void *arg, int64_t action_id)
{
    struct inc_mgr *m = arg;
    struct inc_await **p = &m->awaits, *w;
    struct inc *inc;
    const struct rb_runbook *rb;

    while (*p != NULL && (*p)->action_id != action_id) {
        p = &(*p)->next;
    }
    if ((w = *p) == NULL || m->stopping) {
        return;
    }
    inc = find_by_id(m, w->incident_id);
    rb = rb_engine_runbook(m->env.rules, w->runbook);
    if (inc != NULL && inc->busy) {
        return; /* asked again at the next flush */
    }
    *p = w->next;
    if (inc == NULL || rb == NULL || w->index >= rb->nactions) {
        log_warn("incident",
                 "approved action %lld: its incident or runbook "
                 "is gone",
                 (long long)action_id);
    } else if (!inc->open) {
        save_action(inc, &rb->actions[w->index], action_id, "approve",
                    STORE_ACT_SKIPPED,
                    "approved after the incident was resolved", NULL, 0, 0, 0,
                    NULL, NULL);
    } else {
        notify(m, "action", inc->id, "%s approved", rb->actions[w->index].name);
        start_action(inc, rb, w->index, action_id, inc_now(m), w->args);
        w->args = NULL;
    }
    free(w->args);
    free(w);
}

/* ---------------------------------------------------------------- restarts */

/* Incidents still open in the store (vigil stopped, or was killed, while
 * they were open) are taken up again: a transition of the same rule
 * instance continues them instead of opening a new one. Their
 * investigation already ran. */
static void on_stored_open(void *arg, const struct store_incident *row)
{
    struct inc_mgr *m = arg;
    struct inc *inc = calloc(1, sizeof(*inc));

    if (inc == NULL || (inc->evidence = json_object()) == NULL) {
        free(inc);
        return;
    }
    inc->m = m;
    inc->id = row->id;
    snprintf(inc->key, sizeof(inc->key), "%s\x1f%s", row->rule,
             row->series ? row->series : "");
    snprintf(inc->rule, sizeof(inc->rule), "%s", row->rule);
    snprintf(inc->runbook, sizeof(inc->runbook), "%s",
             row->runbook ? row->runbook : "");
    snprintf(inc->title, sizeof(inc->title), "%s",
             row->title ? row->title : row->rule);
    snprintf(inc->series, sizeof(inc->series), "%s",
             row->series ? row->series : "");
    inc->labels_json = row->labels_json ? strdup(row->labels_json) : NULL;
    inc->state = inc->worst = row->state;
    inc->value = NAN;
    inc->open = 1;
    inc->opened = row->opened_ts;
    inc->step = (size_t)-1; /* investigated before the restart */
    inc->next = m->incs;
    m->incs = inc;
}

/* Is the incident's rule instance known to be ok now? A rule that was
 * removed counts as ok; an instance that has not judged a value yet does
 * not. */
static int instance_ok(struct inc_mgr *m, const struct inc *inc,
                       const char **why)
{
    struct rule *r = rule_find(rb_engine_rules(m->env.rules), inc->rule);
    struct rule_inst_info info;

    if (r == NULL) {
        *why = "its rule was removed";
        return 1;
    }
    for (unsigned i = 0; i < rule_instances(r); i++) {
        if (rule_instance_info(r, i, &info) != 0 || !info.evaluated) {
            continue;
        }
        const char *key = rule_get_def(r)->kind == RULE_THRESHOLD
                              ? bus_series_key(m->env.bus, info.series)
                              : "";
        if (strcmp(key, inc->series) == 0) {
            *why = "its rule instance is ok (checked after a restart or "
                   "reload)";
            return info.state == RULE_OK;
        }
    }
    return 0;
}

/* Resolve open incidents whose instance is ok although no transition said
 * so: after a restart, or a reload that removed or replaced the rule. */
static void on_reconcile(uv_timer_t *t)
{
    struct inc_mgr *m = t->data;
    const char *why = NULL;

    for (struct inc *inc = m->incs; inc != NULL; inc = inc->next) {
        if (inc->open && instance_ok(m, inc, &why)) {
            inc->open = 0;
            inc->state = RULE_OK;
            inc->resolved = inc_now(m);
            save_incident(inc);
            notify(m, "resolved", inc->id, "%s %s: %s", inc->rule, inc->series,
                   why);
        }
    }
    reap_resolved(m);
}

/* ---------------------------------------------------------------- manager */

int inc_create(const struct inc_env *env, struct inc_mgr **out)
{
    struct inc_mgr *m = calloc(1, sizeof(*m));

    *out = NULL;
    if (m == NULL) {
        return VIGIL_ENOMEM;
    }
    m->env = *env;
    if (m->env.output_max == 0) {
        m->env.output_max = INC_OUTPUT_DEFAULT;
    }
    if (m->env.store != NULL) {
        store_list_incidents(m->env.store, 1, 10000, on_stored_open, m);
        store_on_approval(m->env.store, on_approved, m);
    }
    if (m->env.loop != NULL) {
        uv_timer_init(m->env.loop, &m->reconcile);
        m->reconcile.data = m;
        m->timer_open = 1;
        uv_timer_start(&m->reconcile, on_reconcile, INC_RECONCILE_MS,
                       INC_RECONCILE_MS);
    }
    *out = m;
    return 0;
}

void inc_observe(struct inc_mgr *m, inc_notify_cb cb, void *arg)
{
    m->notify = cb;
    m->notify_arg = arg;
}

unsigned inc_open_count(const struct inc_mgr *m)
{
    unsigned n = 0;

    for (const struct inc *i = m->incs; i != NULL; i = i->next) {
        n += i->open;
    }
    return n;
}

void inc_stop(struct inc_mgr *m)
{
    if (m == NULL || m->stopping) {
        return;
    }
    m->stopping = 1;
    if (m->timer_open) {
        m->timer_open = 0;
        uv_close((uv_handle_t *)&m->reconcile, NULL);
    }
    for (struct inc_call *c = m->calls; c != NULL; c = c->next) {
        exec_cancel(c->job);
        if (c->timer_open) {
            c->timer_open = 0;
            uv_close((uv_handle_t *)&c->timer, on_call_timer_closed);
        }
    }
}

void inc_destroy(struct inc_mgr *m)
{
    if (m == NULL) {
        return;
    }
    /* Calls still listed wait for a reply that can no longer come (the
     * plugins are gone): free them. */
    while (m->calls != NULL) {
        struct inc_call *c = m->calls;
        m->calls = c->next;
        free(c);
    }
    while (m->incs != NULL) {
        struct inc *i = m->incs;
        m->incs = i->next;
        inc_free(i);
    }
    while (m->awaits != NULL) {
        struct inc_await *w = m->awaits;
        m->awaits = w->next;
        free(w->args);
        free(w);
    }
    while (m->guards != NULL) {
        struct inc_guard *g = m->guards;
        m->guards = g->next;
        free(g);
    }
    while (m->rates != NULL) {
        struct inc_rate *r = m->rates;
        m->rates = r->next;
        free(r);
    }
    free(m);
}
