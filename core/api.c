/* api - the JSON documents of /api/v1/. */
#include "api.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "clock.h"
#include "incident.h"
#include "plug.h"
#include "report.h"
#include "rule.h"
#include "runbook.h"
#include "store.h"
#include "win.h"

#define API_SCAN_STEP 2048 /* series looked at per fill, at most */

/* A number, or null for NaN and infinities (JSON has neither). */
static json_t *api_num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *api_labels(const struct bus *bus, vigil_series_id id)
{
    size_t n;
    const struct vigil_label *l = bus_series_labels(bus, id, &n);
    json_t *o = json_object();

    for (size_t i = 0; o != NULL && i < n; i++) {
        json_object_set_new(o, l[i].key, json_string(l[i].value));
    }
    return o;
}

char *api_error_body(int status, const char *msg)
{
    json_t *o =
        json_pack("{s:s,s:i}", "error", msg ? msg : "", "status", status);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;

    json_decref(o);
    return text;
}

/* ---------------------------------------------------------------- rules */

struct rule_count {
    unsigned rules, instances, by_state[4];
};

static void count_rule(void *arg, const struct rule *r, const char *path,
                       int line)
{
    struct rule_count *c = arg;
    struct rule_inst_info in;

    (void)path;
    (void)line;
    c->rules++;
    for (unsigned i = 0; rule_instance_info(r, i, &in) == 0; i++) {
        c->instances++;
        if (in.state >= 0 && in.state < 4) {
            c->by_state[in.state]++;
        }
    }
}

json_t *api_status(const struct api_ctx *c)
{
    int64_t now = clock_wall_ns();
    struct rule_count rc = {0};
    unsigned files = 0, nrules = 0, quarantined = 0, running = 0, failed = 0;
    json_t *o;

    if (c->rules != NULL) {
        rb_engine_foreach_rule(c->rules, count_rule, &rc);
        rb_engine_counts(c->rules, &files, &nrules, &quarantined);
    }
    if (c->plugs != NULL) {
        plug_set_counts(c->plugs, &running, &failed);
    }
    o = json_pack(
        "{s:s,s:f,s:I,s:I,s:I,s:I,s:{s:i,s:i,s:i,s:i,s:i,s:i},s:i,s:i,"
        "s:i,s:{s:i,s:i},s:b}",
        "version", VIGIL_VERSION, "uptime_s",
        (double)(now - c->started_ns) / 1e9, "started_ms",
        (json_int_t)(c->started_ns / 1000000), "now_ms",
        (json_int_t)(now / 1000000), "series",
        (json_int_t)bus_series_count(c->bus), "samples_total",
        (json_int_t)bus_samples_total(c->bus), "rules", "rules", (int)rc.rules,
        "instances", (int)rc.instances, "ok", (int)rc.by_state[RULE_OK],
        "warning", (int)rc.by_state[RULE_WARNING], "critical",
        (int)rc.by_state[RULE_CRITICAL], "nodata",
        (int)rc.by_state[RULE_NODATA], "runbook_files", (int)files,
        "quarantined", (int)quarantined, "incidents_open",
        c->incidents ? (int)inc_open_count(c->incidents) : 0, "plugins",
        "running", (int)running, "failed", (int)failed, "store", c->have_store);
    if (o != NULL && c->listen_url != NULL) {
        json_object_set_new(o, "dashboard", json_string(c->listen_url));
    }
    return o;
}

/* name{k=v,k!=v} as it was written. */
static json_t *selector_text(const struct bus_selector *sel)
{
    char buf[VIGIL_NAME_MAX + BUS_MATCHERS_MAX * (VIGIL_LABEL_KEY_MAX +
                                                  VIGIL_LABEL_VALUE_MAX + 3)];
    size_t n = (size_t)snprintf(buf, sizeof(buf), "%s", sel->name);

    for (unsigned i = 0; i < sel->n && n < sizeof(buf); i++) {
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s%s=%s",
                              i ? "," : "{", sel->m[i].key,
                              sel->m[i].negate ? "!" : "", sel->m[i].value);
    }
    if (sel->n > 0 && n < sizeof(buf)) {
        snprintf(buf + n, sizeof(buf) - n, "}");
    }
    return json_string(buf);
}

static void set_level(json_t *o, const char *key, double v)
{
    if (!isnan(v)) {
        json_object_set_new(o, key, json_real(v));
    }
}

struct rules_ctx {
    const struct api_ctx *c;
    json_t *arr;
    size_t left;
    int truncated;
};

static void rule_json(void *arg, const struct rule *r, const char *path,
                      int line)
{
    struct rules_ctx *x = arg;
    const struct rule_def *d = rule_get_def(r);
    const char *runbook = rb_rule_runbook(d);
    struct rule_inst_info in;
    char stat[32];
    json_t *o = json_pack(
        "{s:s,s:s,s:s,s:s,s:i,s:f,s:f}", "name", d->name, "kind",
        d->kind == RULE_THRESHOLD ? "threshold" : "condition", "title",
        rb_rule_title(d), "file", path, "line", line, "hold_s",
        (double)d->hold_ns / 1e9, "window_s", (double)d->window_ns / 1e9);
    json_t *levels = json_object(), *insts = json_array();

    if (o == NULL || levels == NULL || insts == NULL) {
        json_decref(o);
        json_decref(levels);
        json_decref(insts);
        return;
    }
    if (runbook != NULL) {
        json_object_set_new(o, "runbook", json_string(runbook));
    }
    if (d->kind == RULE_THRESHOLD) {
        json_object_set_new(o, "selector", selector_text(&d->sel));
        json_object_set_new(
            o, "stat", json_string(win_stat_name(d->stat, stat, sizeof(stat))));
    }
    set_level(levels, "warn_above", d->warn_above);
    set_level(levels, "crit_above", d->crit_above);
    set_level(levels, "warn_below", d->warn_below);
    set_level(levels, "crit_below", d->crit_below);
    set_level(levels, "clear_above", d->clear_above);
    set_level(levels, "clear_below", d->clear_below);
    set_level(levels, "crit_clear_above", d->crit_clear_above);
    set_level(levels, "crit_clear_below", d->crit_clear_below);
    json_object_set_new(o, "levels", levels);
    for (unsigned i = 0; rule_instance_info(r, i, &in) == 0; i++) {
        json_t *io;
        if (x->left == 0) {
            x->truncated = 1;
            break;
        }
        x->left--;
        io = json_pack(
            "{s:s,s:o,s:b,s:I,s:b}", "state", rule_state_name(in.state),
            "value", in.evaluated ? api_num(in.value) : json_null(), "flapping",
            in.flapping, "since_ms", (json_int_t)(in.since / 1000000),
            "evaluated", in.evaluated);
        if (io != NULL && in.series != RULE_NO_SERIES) {
            json_object_set_new(
                io, "series",
                json_string(bus_series_key(x->c->bus, in.series)));
            json_object_set_new(
                io, "metric",
                json_string(bus_series_name(x->c->bus, in.series)));
            json_object_set_new(io, "labels", api_labels(x->c->bus, in.series));
        }
        json_array_append_new(insts, io);
    }
    json_object_set_new(o, "instances", insts);
    json_array_append_new(x->arr, o);
}

json_t *api_rules(const struct api_ctx *c, size_t max_instances)
{
    struct rules_ctx x = {.c = c, .arr = json_array(), .left = max_instances};
    json_t *o;

    if (x.arr == NULL) {
        return NULL;
    }
    if (c->rules != NULL) {
        rb_engine_foreach_rule(c->rules, rule_json, &x);
    }
    o = json_pack("{s:o,s:b}", "rules", x.arr, "truncated", x.truncated);
    return o;
}

/* ---------------------------------------------------------------- plugins */

static double last_of(const struct bus *bus, const char *name,
                      const struct vigil_label *l, size_t n, int64_t *ts)
{
    vigil_series_id id;
    const struct win_sample *s;

    if (bus_find(bus, name, l, n, &id) != 0 ||
        (s = win_last(bus_window(bus, id))) == NULL) {
        return NAN;
    }
    if (ts != NULL) {
        *ts = s->ts;
    }
    return s->v;
}

json_t *api_plugins(const struct api_ctx *c)
{
    json_t *arr = json_array();
    uint32_t count = bus_series_count(c->bus);
    unsigned running = 0, failed = 0;

    if (arr == NULL) {
        return NULL;
    }
    for (vigil_series_id id = 0; id < count; id++) {
        const char *name = bus_series_name(c->bus, id);
        const char *dot = strchr(name, '.');
        char plugin[VIGIL_NAME_MAX], other[VIGIL_NAME_MAX + 16];
        size_t n;
        const struct vigil_label *l;
        int64_t ts = 0;
        json_t *o;

        if (dot == NULL || strcmp(dot, ".up") != 0 ||
            strncmp(name, "vigil.", 6) == 0) {
            continue;
        }
        snprintf(plugin, sizeof(plugin), "%.*s", (int)(dot - name), name);
        l = bus_series_labels(c->bus, id, &n);
        double up = last_of(c->bus, name, l, n, &ts);
        o = json_pack("{s:s,s:o,s:I}", "plugin", plugin, "up", api_num(up),
                      "last_ms", (json_int_t)(ts / 1000000));
        if (o == NULL) {
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            if (strcmp(l[i].key, "instance") == 0) {
                json_object_set_new(o, "instance", json_string(l[i].value));
            }
        }
        snprintf(other, sizeof(other), "%s.collect_ms", plugin);
        json_object_set_new(o, "collect_ms",
                            api_num(last_of(c->bus, other, l, n, NULL)));
        snprintf(other, sizeof(other), "%s.errors_total", plugin);
        json_object_set_new(o, "errors_total",
                            api_num(last_of(c->bus, other, l, n, NULL)));
        json_object_set_new(o, "health",
                            json_string(isnan(up)  ? "unknown"
                                        : up > 0.5 ? "up"
                                                   : "down"));
        json_array_append_new(arr, o);
    }
    if (c->plugs != NULL) {
        plug_set_counts(c->plugs, &running, &failed);
    }
    return json_pack("{s:o,s:i,s:i}", "plugins", arr, "running", (int)running,
                     "failed", (int)failed);
}

static void diag_json(void *arg, const char *instance,
                      const struct vigil_diag *d)
{
    json_t *o = json_pack("{s:s,s:s,s:s,s:b}", "name", d->name, "instance",
                          instance ? instance : "", "help",
                          d->help ? d->help : "", "is_action", d->is_action);

    if (o != NULL && d->args != NULL) {
        json_object_set_new(o, "args", json_string(d->args));
    }
    json_array_append_new(arg, o);
}

json_t *api_diagnostics(const struct api_ctx *c)
{
    json_t *arr = json_array();

    if (arr != NULL && c->plugs != NULL) {
        plug_foreach_diag(c->plugs, diag_json, arr);
    }
    return json_pack("{s:o}", "diagnostics", arr);
}

/* ---------------------------------------------------------------- samples */

/* Average points into at most `points` buckets of [t0, t1]; each bucket
 * gives [ms of its newest sample, mean]. */
struct bucketer {
    json_t *arr;
    int64_t t0, width;
    int64_t cur, cur_ts;
    double sum;
    unsigned n;
};

static void bk_flush(struct bucketer *b)
{
    if (b->n > 0) {
        json_array_append_new(
            b->arr, json_pack("[I,o]", (json_int_t)(b->cur_ts / 1000000),
                              api_num(b->sum / b->n)));
    }
    b->n = 0;
    b->sum = 0;
}

static void bk_add(struct bucketer *b, int64_t ts, double v)
{
    int64_t k = b->width > 0 ? (ts - b->t0) / b->width : ts;

    if (isnan(v)) {
        return;
    }
    if (b->n > 0 && k != b->cur) {
        bk_flush(b);
    }
    b->cur = k;
    b->cur_ts = ts;
    b->sum += v;
    b->n++;
}

static void bk_init(struct bucketer *b, int64_t t0, int64_t t1, unsigned points,
                    size_t nsamples)
{
    memset(b, 0, sizeof(*b));
    b->arr = json_array();
    b->t0 = t0;
    /* Few enough samples: all of them, one bucket each. */
    b->width = nsamples <= points || points == 0 ? 0 : (t1 - t0) / points + 1;
}

int api_samples(const struct api_ctx *c, const char *selector,
                int64_t window_ns, unsigned points, unsigned max_series,
                json_t **out, int *covered, struct vigil_err *err)
{
    struct bus_selector sel;
    uint32_t count = bus_series_count(c->bus);
    int64_t now = clock_wall_ns(), t0 = now - window_ns;
    json_t *arr;
    unsigned found = 0;

    *covered = 1;
    if (bus_selector_parse(selector, &sel, err) != 0) {
        return VIGIL_EINVAL;
    }
    arr = json_array();
    for (vigil_series_id id = 0;
         arr != NULL && id < count && found < max_series; id++) {
        const struct win *w;
        struct bucketer b;
        uint32_t first, inwin = 0;

        if (!bus_match(c->bus, id, &sel)) {
            continue;
        }
        found++;
        w = bus_window(c->bus, id);
        first = (w->head + w->cap - w->len) % w->cap;
        if (w->len == 0 || w->buf[first].ts > t0) {
            *covered = 0;
        }
        for (uint32_t i = 0; i < w->len; i++) {
            inwin += w->buf[(first + i) % w->cap].ts >= t0;
        }
        bk_init(&b, t0, now, points, inwin);
        for (uint32_t i = 0; b.arr != NULL && i < w->len; i++) {
            const struct win_sample *s = &w->buf[(first + i) % w->cap];
            if (s->ts >= t0) {
                bk_add(&b, s->ts, s->v);
            }
        }
        bk_flush(&b);
        json_array_append_new(
            arr, json_pack("{s:s,s:o,s:s}", "series",
                           bus_series_key(c->bus, id), "points",
                           b.arr ? b.arr : json_array(), "source", "memory"));
    }
    *out = json_pack("{s:o,s:I}", "series", arr, "window_s",
                     (json_int_t)(window_ns / 1000000000));
    return *out != NULL ? 0 : VIGIL_ENOMEM;
}

int api_series_keys(const struct api_ctx *c, const char *selector, char **keys,
                    unsigned max, struct vigil_err *err)
{
    struct bus_selector sel;
    uint32_t count = bus_series_count(c->bus);
    unsigned n = 0;

    if (bus_selector_parse(selector, &sel, err) != 0) {
        return VIGIL_EINVAL;
    }
    for (vigil_series_id id = 0; id < count && n < max; id++) {
        if (bus_match(c->bus, id, &sel)) {
            keys[n] = strdup(bus_series_key(c->bus, id));
            if (keys[n] == NULL) {
                break;
            }
            n++;
        }
    }
    return (int)n;
}

/* ---------------------------------------------------------------- scans */

struct api_scan {
    const struct api_ctx *c;
    struct bus_selector sel;
    int has_stat;
    struct win_stat stat;
    int64_t window_ns;
    unsigned limit, n;
    vigil_series_id pos;
    int truncated;
    int state; /* 0 header, 1 items, 2 done */
};

int api_scan_create(const struct api_ctx *c, const char *selector,
                    const char *stat, int64_t window_ns, unsigned limit,
                    struct api_scan **out, struct vigil_err *err)
{
    struct api_scan *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        return VIGIL_ENOMEM;
    }
    s->c = c;
    s->limit = limit;
    s->window_ns = window_ns;
    if (bus_selector_parse(selector, &s->sel, err) != 0) {
        free(s);
        return VIGIL_EINVAL;
    }
    if (stat != NULL) {
        s->has_stat = 1;
        if (win_stat_parse(stat, &s->stat) != 0) {
            free(s);
            return err_set(err, VIGIL_EINVAL,
                           "stat '%s': expected last, avg, min, max, sum, "
                           "count, delta, rate, slope or pNN",
                           stat);
        }
    }
    *out = s;
    return 0;
}

void api_scan_destroy(struct api_scan *s)
{
    free(s);
}

static int scan_item(struct api_scan *s, struct dbuf *out, vigil_series_id id,
                     int64_t now)
{
    struct bus *bus = s->c->bus;
    const struct win_sample *last = win_last(bus_window(bus, id));
    json_t *o = json_pack(
        "{s:s,s:s,s:o,s:I}", "series", bus_series_key(bus, id), "name",
        bus_series_name(bus, id), "labels", api_labels(bus, id), "samples",
        (json_int_t)bus_window(bus, id)->len);
    char *text;
    int rc;

    if (o == NULL) {
        return VIGIL_ENOMEM;
    }
    if (last != NULL) {
        json_object_set_new(o, "last", api_num(last->v));
        json_object_set_new(o, "last_ms", json_integer(last->ts / 1000000));
    } else {
        json_object_set_new(o, "last", json_null());
    }
    if (s->has_stat) {
        double v;
        int r = bus_stat(bus, id, s->stat, now, s->window_ns, &v);
        json_object_set_new(o, "value", r == 0 ? api_num(v) : json_null());
    }
    text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (text == NULL) {
        return VIGIL_ENOMEM;
    }
    rc = dbuf_printf(out, "%s%s", s->n ? "," : "", text);
    free(text);
    return rc;
}

int api_scan_fill(struct api_scan *s, struct dbuf *out, size_t want)
{
    size_t goal = out->len + want;
    uint32_t count = bus_series_count(s->c->bus);
    int64_t now = clock_wall_ns();
    unsigned looked = 0;
    int rc;

    if (s->state == 0) {
        char stat[32];
        rc = s->has_stat
                 ? dbuf_printf(out,
                               "{\"stat\":\"%s\",\"window_s\":%.3f,"
                               "\"series\":[",
                               win_stat_name(s->stat, stat, sizeof(stat)),
                               (double)s->window_ns / 1e9)
                 : dbuf_addstr(out, "{\"series\":[");
        if (rc != 0) {
            return rc;
        }
        s->state = 1;
    }
    while (s->state == 1 && out->len < goal && looked < API_SCAN_STEP) {
        if (s->pos >= count) {
            s->state = 2;
            break;
        }
        looked++;
        if (!bus_match(s->c->bus, s->pos, &s->sel)) {
            s->pos++;
            continue;
        }
        if (s->n == s->limit) {
            s->truncated = 1;
            s->state = 2;
            break;
        }
        rc = scan_item(s, out, s->pos, now);
        if (rc != 0) {
            return rc;
        }
        s->n++;
        s->pos++;
    }
    if (s->state == 2) {
        rc = dbuf_printf(out, "],\"count\":%u,\"truncated\":%s}\n", s->n,
                         s->truncated ? "true" : "false");
        if (rc != 0) {
            return rc;
        }
        s->state = 3;
    }
    return s->state == 3;
}

/* ---------------------------------------------------------------- store */

struct api_store {
    char *path;
    struct store *s;
};

int api_store_create(const char *path, struct api_store **out)
{
    struct api_store *st = calloc(1, sizeof(*st));

    if (st == NULL || (st->path = strdup(path)) == NULL) {
        free(st);
        return VIGIL_ENOMEM;
    }
    *out = st;
    return 0;
}

void api_store_destroy(struct api_store *st)
{
    if (st == NULL) {
        return;
    }
    store_close(st->s);
    free(st->path);
    free(st);
}

void api_job_fini(struct api_job *j)
{
    if (j == NULL) {
        return;
    }
    for (unsigned i = 0; i < j->nkeys; i++) {
        free(j->keys[i]);
    }
    j->nkeys = 0;
    free(j->body);
    j->body = NULL;
}

static void job_error(struct api_job *j, int status, const char *msg)
{
    free(j->body);
    j->status = status;
    j->ctype = "application/json";
    j->body = api_error_body(status, msg);
    j->len = j->body ? strlen(j->body) : 0;
}

static void job_json(struct api_job *j, json_t *o)
{
    if (o == NULL) {
        job_error(j, 500, "out of memory");
        return;
    }
    free(j->body);
    j->body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (j->body == NULL) {
        job_error(j, 500, "out of memory");
        return;
    }
    j->status = 200;
    j->ctype = "application/json";
    j->len = strlen(j->body);
}

/* What report.c prints to a FILE, as a string. */
struct memout {
    char *text;
    size_t len;
    FILE *f;
};

static int mem_open(struct memout *m)
{
    m->text = NULL;
    m->len = 0;
    m->f = open_memstream(&m->text, &m->len);
    return m->f != NULL ? 0 : VIGIL_ENOMEM;
}

static void mem_close(struct memout *m)
{
    if (m->f != NULL) {
        fclose(m->f);
        m->f = NULL;
    }
}

static void job_incidents(struct api_store *st, struct api_job *j)
{
    struct memout m;
    json_t *arr;

    if (mem_open(&m) != 0) {
        job_error(j, 500, "out of memory");
        return;
    }
    int rc = report_list(st->s, j->open_only, REPORT_JSON, m.f);
    mem_close(&m);
    arr = rc == 0 && m.text ? json_loads(m.text, 0, NULL) : NULL;
    free(m.text);
    if (!json_is_array(arr)) {
        json_decref(arr);
        job_error(j, 500, "the store could not list incidents (see the log)");
        return;
    }
    while (j->limit > 0 && json_array_size(arr) > j->limit) {
        json_array_remove(arr, json_array_size(arr) - 1);
    }
    job_json(j, json_pack("{s:o}", "incidents", arr));
}

static void job_incident(struct api_store *st, struct api_job *j)
{
    struct memout m;
    int rc;

    if (mem_open(&m) != 0) {
        job_error(j, 500, "out of memory");
        return;
    }
    rc = report_show(st->s, j->id, j->markdown ? REPORT_MARKDOWN : REPORT_JSON,
                     m.f);
    mem_close(&m);
    if (rc == VIGIL_ENOENT) {
        char msg[64];
        free(m.text);
        snprintf(msg, sizeof(msg), "no incident %lld", (long long)j->id);
        job_error(j, 404, msg);
        return;
    }
    if (rc != 0 || m.text == NULL) {
        free(m.text);
        job_error(j, 500,
                  "the store could not read the incident (see the log)");
        return;
    }
    j->status = 200;
    j->ctype =
        j->markdown ? "text/markdown; charset=utf-8" : "application/json";
    j->body = m.text;
    j->len = m.len;
}

struct id_list {
    int64_t ids[1000];
    unsigned n;
};

static void on_id(void *arg, const struct store_incident *i)
{
    struct id_list *l = arg;

    if (l->n < sizeof(l->ids) / sizeof(l->ids[0])) {
        l->ids[l->n++] = i->id;
    }
}

static int cmp_action_id(const void *a, const void *b)
{
    json_int_t x =
        json_integer_value(json_object_get(*(json_t *const *)a, "id"));
    json_int_t y =
        json_integer_value(json_object_get(*(json_t *const *)b, "id"));

    return x < y ? 1 : x > y ? -1 : 0;
}

/* The action audit: every action row of the newest incidents. */
static void job_actions(struct api_store *st, struct api_job *j)
{
    struct id_list *l = calloc(1, sizeof(*l));
    json_t *arr = json_array();
    unsigned limit = j->limit ? j->limit : 50;

    if (l == NULL || arr == NULL) {
        free(l);
        json_decref(arr);
        job_error(j, 500, "out of memory");
        return;
    }
    if (limit > 1000) {
        limit = 1000;
    }
    if (store_list_incidents(st->s, 0, limit, on_id, l) != 0) {
        free(l);
        json_decref(arr);
        job_error(j, 500, "the store could not list incidents (see the log)");
        return;
    }
    for (unsigned i = 0; i < l->n; i++) {
        struct memout m;
        json_t *doc, *acts, *a;
        size_t k;

        if (mem_open(&m) != 0) {
            break;
        }
        int rc = report_show(st->s, l->ids[i], REPORT_JSON, m.f);
        mem_close(&m);
        doc = rc == 0 && m.text ? json_loads(m.text, 0, NULL) : NULL;
        free(m.text);
        acts = json_object_get(doc, "actions");
        json_array_foreach(acts, k, a)
        {
            const json_t *inc = json_object_get(doc, "incident");
            json_object_set_new(a, "incident", json_integer(l->ids[i]));
            json_object_set(a, "rule", json_object_get(inc, "rule"));
            json_object_set(a, "series", json_object_get(inc, "series"));
            json_object_del(a, "output");
            json_array_append(arr, a);
        }
        json_decref(doc);
    }
    free(l);
    /* Newest first, as the incidents. */
    size_t n = json_array_size(arr);
    json_t **v = malloc((n ? n : 1) * sizeof(*v));
    json_t *sorted = json_array();
    if (v != NULL && sorted != NULL) {
        for (size_t i = 0; i < n; i++) {
            v[i] = json_array_get(arr, i);
        }
        qsort(v, n, sizeof(*v), cmp_action_id);
        for (size_t i = 0; i < n; i++) {
            json_array_append(sorted, v[i]);
        }
    }
    free(v);
    json_decref(arr);
    job_json(j, sorted ? json_pack("{s:o}", "actions", sorted) : NULL);
}

static void job_approve(struct api_store *st, struct api_job *j)
{
    struct vigil_err err = {0};
    int rc = store_approve_action(st->s, j->id, j->who, &err);

    if (rc == VIGIL_ENOENT) {
        job_error(j, 404, err.msg);
    } else if (rc != 0) {
        job_error(j, 500, err.msg);
    } else {
        job_json(j, json_pack("{s:I,s:s,s:s}", "approved", (json_int_t)j->id,
                              "by", j->who, "note",
                              "the daemon runs it after its next store flush"));
    }
}

struct hist_ctx {
    struct bucketer b;
    int64_t last_ts;
};

static void on_hist(void *arg, int64_t ts, double v)
{
    struct hist_ctx *h = arg;

    bk_add(&h->b, ts, v);
}

static void on_rollup(void *arg, int64_t ts, double min, double avg, double max,
                      uint64_t count)
{
    struct hist_ctx *h = arg;

    (void)min;
    (void)max;
    (void)count;
    /* A minute's mean stands at the minute's end. */
    bk_add(&h->b, ts + 59 * 1000000000LL, avg);
}

static void job_history(struct api_store *st, struct api_job *j)
{
    json_t *arr = json_array();
    int64_t now = clock_wall_ns();

    for (unsigned i = 0; arr != NULL && i < j->nkeys; i++) {
        struct hist_ctx h;
        int rc;

        bk_init(&h.b, j->since_ns, now, j->points, (size_t)-1);
        rc = store_history(st->s, j->keys[i], j->since_ns, on_hist, on_rollup,
                           &h);
        bk_flush(&h.b);
        if (rc != 0 && rc != VIGIL_ENOENT) {
            json_decref(h.b.arr);
            json_decref(arr);
            job_error(j, 500, "the store could not read history (see the log)");
            return;
        }
        json_array_append_new(arr, json_pack("{s:s,s:o,s:s}", "series",
                                             j->keys[i], "points",
                                             h.b.arr ? h.b.arr : json_array(),
                                             "source", "store"));
    }
    job_json(j, arr ? json_pack("{s:o,s:I}", "series", arr, "window_s",
                                (json_int_t)((now - j->since_ns) / 1000000000))
                    : NULL);
}

void api_job_run(struct api_store *st, struct api_job *j)
{
    if (st->s == NULL) {
        struct store_opts so = {.path = st->path};
        struct vigil_err err = {0};
        if (store_open(&so, NULL, &st->s, &err) != 0) {
            st->s = NULL;
            job_error(j, 503, err.msg);
            return;
        }
    }
    switch (j->kind) {
    case API_JOB_INCIDENTS:
        job_incidents(st, j);
        break;
    case API_JOB_INCIDENT:
        job_incident(st, j);
        break;
    case API_JOB_ACTIONS:
        job_actions(st, j);
        break;
    case API_JOB_APPROVE:
        job_approve(st, j);
        break;
    case API_JOB_HISTORY:
        job_history(st, j);
        break;
    default:
        job_error(j, 500, "unknown job");
    }
}
