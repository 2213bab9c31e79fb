/* report - incidents and history from the store, as text, Markdown, JSON. */
#include "report.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rule.h"

static const char *const action_results[] = {
    "pending",           "ok",         "failed",
    "timeout",           "dry-run",    "skipped",
    "awaiting approval", "interrupted"};

static const char *result_name(int r)
{
    return r >= 0 && r <= STORE_ACT_INTERRUPTED ? action_results[r] : "?";
}

/* "2026-11-26 13:10:20Z" */
static const char *fmt_ts(int64_t ns, char *buf, size_t size)
{
    time_t t = (time_t)(ns / 1000000000);
    struct tm tm;

    if (ns <= 0) {
        snprintf(buf, size, "-");
        return buf;
    }
    gmtime_r(&t, &tm);
    strftime(buf, size, "%Y-%m-%d %H:%M:%SZ", &tm);
    return buf;
}

static json_t *incident_obj(const struct store_incident *i)
{
    json_t *o = json_pack(
        "{s:I,s:s,s:s,s:s,s:s,s:b,s:I,s:I}", "id", (json_int_t)i->id, "rule",
        i->rule, "series", i->series ? i->series : "", "title",
        i->title ? i->title : "", "state", rule_state_name(i->state), "open",
        i->open, "opened_ns", (json_int_t)i->opened_ts, "resolved_ns",
        (json_int_t)i->resolved_ts);

    if (o != NULL && i->runbook != NULL) {
        json_object_set_new(o, "runbook", json_string(i->runbook));
    }
    if (o != NULL) {
        json_object_set_new(o, "acknowledged", json_boolean(i->acknowledged));
    }
    if (o != NULL && i->labels_json != NULL) {
        json_t *l = json_loads(i->labels_json, 0, NULL);
        if (l != NULL) {
            json_object_set_new(o, "labels", l);
        }
    }
    return o;
}

struct list_ctx {
    int format;
    FILE *out;
    json_t *arr;
    unsigned n;
};

static void on_list_row(void *arg, const struct store_incident *i)
{
    struct list_ctx *c = arg;
    char t1[32];

    c->n++;
    if (c->format == REPORT_JSON) {
        json_array_append_new(c->arr, incident_obj(i));
        return;
    }
    fprintf(c->out, "%6lld  %-8s  %-8s  %s  %s %s\n", (long long)i->id,
            i->open ? "open" : "resolved", rule_state_name(i->state),
            fmt_ts(i->opened_ts, t1, sizeof(t1)), i->rule,
            i->series ? i->series : "");
}

int report_list(struct store *s, int open_only, int format, FILE *out)
{
    struct list_ctx c = {.format = format, .out = out};
    int rc;

    if (format == REPORT_JSON) {
        c.arr = json_array();
    } else {
        fprintf(out, "%6s  %-8s  %-8s  %-20s  %s\n", "ID", "STATUS", "STATE",
                "OPENED", "RULE SERIES");
    }
    rc = store_list_incidents(s, open_only, 1000, on_list_row, &c);
    if (format == REPORT_JSON) {
        json_dumpf(c.arr, out, JSON_INDENT(2));
        fputc('\n', out);
        json_decref(c.arr);
    } else if (c.n == 0) {
        fprintf(out, "(no %sincidents)\n", open_only ? "open " : "");
    }
    return rc;
}

struct show_ctx {
    json_t *inc, *transitions, *evidence, *actions;
};

static void on_show_inc(void *arg, const struct store_incident *i)
{
    struct show_ctx *c = arg;

    c->inc = incident_obj(i);
}

static void on_show_tr(void *arg, const struct store_transition *t)
{
    struct show_ctx *c = arg;

    json_array_append_new(
        c->transitions,
        json_pack("{s:I,s:s,s:s,s:f,s:s}", "ts_ns", (json_int_t)t->ts, "from",
                  rule_state_name(t->from), "to", rule_state_name(t->to),
                  "value", t->value == t->value ? t->value : 0.0, "reason",
                  t->reason ? t->reason : ""));
}

static void on_show_ev(void *arg, const struct store_evidence *e)
{
    struct show_ctx *c = arg;
    json_t *o = json_pack("{s:i,s:s,s:s,s:s,s:I,s:I}", "step", e->step, "name",
                          e->name, "phase", e->phase, "status", e->status,
                          "started_ns", (json_int_t)e->started_ts, "ended_ns",
                          (json_int_t)e->ended_ts);
    json_t *out =
        e->output ? json_loads(e->output, JSON_DECODE_ANY, NULL) : NULL;

    if (out == NULL && e->output != NULL) {
        out = json_string(e->output);
    }
    if (out != NULL) {
        json_object_set_new(o, "output", out);
    }
    json_array_append_new(c->evidence, o);
}

static void on_show_act(void *arg, const struct store_action *a)
{
    struct show_ctx *c = arg;
    json_t *o = json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:i}", "id",
                          (json_int_t)a->id, "name", a->name, "kind", a->kind,
                          "mode", a->mode, "result", result_name(a->result),
                          "reason", a->reason ? a->reason : "", "intent_ns",
                          (json_int_t)a->intent_ts, "started_ns",
                          (json_int_t)a->started_ts, "ended_ns",
                          (json_int_t)a->ended_ts, "exit_code", a->exit_code);

    if (a->command != NULL) {
        json_t *cmd = json_loads(a->command, 0, NULL);
        json_object_set_new(o, "command", cmd ? cmd : json_string(a->command));
    }
    if (a->output != NULL) {
        json_t *out = json_loads(a->output, JSON_DECODE_ANY, NULL);
        json_object_set_new(o, "output", out ? out : json_string(a->output));
    }
    json_array_append_new(c->actions, o);
}

/* The runbook's recommendations (evidence "recommendations", a list of
 * texts) as a list of their own, before the evidence they came from. */
static void report_recommendations(const json_t *r, FILE *out)
{
    size_t i, k;
    json_t *v, *x;

    json_array_foreach(json_object_get(r, "evidence"), i, v)
    {
        const json_t *list = json_object_get(v, "output");
        const char *name = json_string_value(json_object_get(v, "name"));
        if (name == NULL || strcmp(name, "recommendations") != 0 ||
            !json_is_array(list)) {
            continue;
        }
        fprintf(out, "\n## Recommendations\n\n");
        json_array_foreach((json_t *)list, k, x)
        {
            char *text = json_is_string(x) ? NULL : json_dumps(x, JSON_COMPACT);
            fprintf(out, "- %s\n", text ? text : json_string_value(x));
            free(text);
        }
    }
}

static void markdown(FILE *out, const json_t *r)
{
    const json_t *inc = json_object_get(r, "incident");
    char t1[32], t2[32];
    size_t i;
    json_t *v;

    fprintf(out, "# Incident %lld: %s\n\n",
            (long long)json_integer_value(json_object_get(inc, "id")),
            json_string_value(json_object_get(inc, "title")));
    fprintf(out, "- **State**: %s, %s%s\n",
            json_string_value(json_object_get(inc, "state")),
            json_is_true(json_object_get(inc, "open")) ? "open" : "resolved",
            json_is_true(json_object_get(inc, "acknowledged"))
                ? ", acknowledged"
                : "");
    const char *series = json_string_value(json_object_get(inc, "series"));
    if (series != NULL && series[0] != '\0') {
        fprintf(out, "- **Rule**: %s on `%s`\n",
                json_string_value(json_object_get(inc, "rule")), series);
    } else { /* a condition, or `vigil investigate` */
        fprintf(out, "- **Rule**: %s\n",
                json_string_value(json_object_get(inc, "rule")));
    }
    if (json_object_get(inc, "runbook") != NULL) {
        fprintf(out, "- **Runbook**: %s\n",
                json_string_value(json_object_get(inc, "runbook")));
    }
    fprintf(out, "- **Opened**: %s\n- **Resolved**: %s\n\n",
            fmt_ts(json_integer_value(json_object_get(inc, "opened_ns")), t1,
                   sizeof(t1)),
            fmt_ts(json_integer_value(json_object_get(inc, "resolved_ns")), t2,
                   sizeof(t2)));
    if (json_array_size(json_object_get(r, "transitions")) > 0) {
        fprintf(out, "## Timeline\n\n| time | from | to | value | reason "
                     "|\n|---|---|---|---|---|\n");
    }
    json_array_foreach(json_object_get(r, "transitions"), i, v)
    {
        fprintf(out, "| %s | %s | %s | %g | %s |\n",
                fmt_ts(json_integer_value(json_object_get(v, "ts_ns")), t1,
                       sizeof(t1)),
                json_string_value(json_object_get(v, "from")),
                json_string_value(json_object_get(v, "to")),
                json_number_value(json_object_get(v, "value")),
                json_string_value(json_object_get(v, "reason")));
    }
    report_recommendations(r, out);
    fprintf(out, "\n## Evidence\n\n");
    json_array_foreach(json_object_get(r, "evidence"), i, v)
    {
        char *text = json_dumps(json_object_get(v, "output"),
                                JSON_INDENT(2) | JSON_ENCODE_ANY);
        fprintf(out, "### %zu. %s (%s): %s\n\n```json\n%s\n```\n\n", i + 1,
                json_string_value(json_object_get(v, "name")),
                json_string_value(json_object_get(v, "phase")),
                json_string_value(json_object_get(v, "status")),
                text ? text : "null");
        free(text);
    }
    fprintf(out, "## Actions\n\n| id | time | action | mode | result | why |\n"
                 "|---|---|---|---|---|---|\n");
    json_array_foreach(json_object_get(r, "actions"), i, v)
    {
        fprintf(out, "| %lld | %s | %s (%s) | %s | %s | %s |\n",
                (long long)json_integer_value(json_object_get(v, "id")),
                fmt_ts(json_integer_value(json_object_get(v, "intent_ns")), t1,
                       sizeof(t1)),
                json_string_value(json_object_get(v, "name")),
                json_string_value(json_object_get(v, "kind")),
                json_string_value(json_object_get(v, "mode")),
                json_string_value(json_object_get(v, "result")),
                json_string_value(json_object_get(v, "reason")));
    }
}

int report_show(struct store *s, int64_t id, int format, FILE *out)
{
    struct show_ctx c = {.transitions = json_array(),
                         .evidence = json_array(),
                         .actions = json_array()};
    int rc = store_get_incident(s, id, on_show_inc, on_show_tr, on_show_ev,
                                on_show_act, &c);
    json_t *r = NULL;

    if (rc == 0 && c.inc == NULL) {
        rc = VIGIL_ENOENT;
    }
    if (rc == 0) {
        r = json_pack("{s:o,s:o,s:o,s:o}", "incident", c.inc, "transitions",
                      c.transitions, "evidence", c.evidence, "actions",
                      c.actions);
        c.inc = c.transitions = c.evidence = c.actions = NULL;
        if (format == REPORT_JSON) {
            json_dumpf(r, out, JSON_INDENT(2));
            fputc('\n', out);
        } else {
            markdown(out, r);
        }
    }
    json_decref(r);
    json_decref(c.inc);
    json_decref(c.transitions);
    json_decref(c.evidence);
    json_decref(c.actions);
    return rc;
}

struct hist_ctx {
    int format;
    FILE *out;
    json_t *arr;
};

static void on_hist_sample(void *arg, int64_t ts, double v)
{
    struct hist_ctx *c = arg;

    if (c->format == REPORT_JSON) {
        json_array_append_new(c->arr, json_pack("{s:I,s:f}", "ts_ms",
                                                (json_int_t)(ts / 1000000),
                                                "value", v));
    } else {
        fprintf(c->out, "%lld %.17g\n", (long long)(ts / 1000000), v);
    }
}

static void on_hist_rollup(void *arg, int64_t ts, double min, double avg,
                           double max, uint64_t count)
{
    struct hist_ctx *c = arg;

    if (c->format == REPORT_JSON) {
        json_array_append_new(
            c->arr, json_pack("{s:I,s:f,s:f,s:f,s:I}", "ts_ms",
                              (json_int_t)(ts / 1000000), "min", min, "avg",
                              avg, "max", max, "count", (json_int_t)count));
    } else {
        fprintf(c->out, "%lld min=%.17g avg=%.17g max=%.17g count=%llu\n",
                (long long)(ts / 1000000), min, avg, max,
                (unsigned long long)count);
    }
}

int report_history(struct store *s, const char *series, int64_t since,
                   int format, FILE *out)
{
    struct hist_ctx c = {.format = format, .out = out};
    int rc;

    if (format == REPORT_JSON) {
        c.arr = json_array();
    }
    rc = store_history(s, series, since, on_hist_sample, on_hist_rollup, &c);
    if (format == REPORT_JSON) {
        json_dumpf(c.arr, out, JSON_INDENT(2));
        fputc('\n', out);
        json_decref(c.arr);
    }
    return rc;
}
