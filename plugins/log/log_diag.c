/*
 * log_diag.c - the diagnostic log.recent: the latest lines that matched a
 * pattern, with the lines before and after each, newest first, from one
 * log instance or from all of them (what "review recent error logs for
 * exceptions" needs).
 *
 * The rings belong to whichever work of their instance is in flight, so a
 * request reads them in a work of its own, queued on the instance
 * (lf_kick alternates it with polls). A request over several instances
 * visits them one after another; each step adds that instance's matches
 * to the request, and the last step sorts, cuts to `limit` and writes the
 * JSON, all on the thread pool. Only the reply is on the loop.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "log.h"

#define LF_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(6))
#define LF_LIMIT_DEF 10
#define LF_LIMIT_MAX 1000

/* One match taken from a ring, with what sorts it. */
struct lf_hit {
    int64_t ts_ns;
    uint64_t seq;
    size_t order; /* the instance's place in targets: ties newest-last */
    json_t *obj;
};

struct lf_req {
    struct lf *owner;    /* the instance that registered log.recent */
    vigil_request *req;  /* NULL once replied to or canceled */
    struct lf_req *next; /* in the queue of targets[idx] */
    struct lf **targets;
    size_t ntargets, idx;
    char pattern[LF_NAME_MAX + 1]; /* "" for all */
    long limit;
    int64_t since_ns; /* wall clock; 0: no bound */
    /* Filled by the steps (pool threads, one after another). */
    struct lf_hit *hits;
    size_t nhits, caphits;
    json_t *files;
    int status;
    char *json;
};

/* ------------------------------------------------------------------------
 * Steps (thread pool): only the request and the instance being read.
 */

/* A JSON string for bytes that may not be UTF-8: invalid bytes and NULs
 * become '?'. */
static json_t *lf_json_text(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    char *copy;
    size_t i;

    if (j != NULL) {
        return j;
    }
    copy = malloc(n + 1);
    if (copy == NULL) {
        return json_null();
    }
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        copy[i] = c >= 0x80 || c == 0 ? '?' : (char)c;
    }
    j = json_stringn(copy, n);
    free(copy);
    return j != NULL ? j : json_null();
}

static void lf_set(json_t *o, const char *key, json_t *v)
{
    json_object_set_new(o, key, v != NULL ? v : json_null());
}

static json_t *lf_time(int64_t ts_ns)
{
    time_t sec = (time_t)(ts_ns / 1000000000LL);
    struct tm tm;
    char buf[48];

    gmtime_r(&sec, &tm);
    snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (int)((ts_ns / 1000000) % 1000));
    return json_string(buf);
}

/* Slots [from, from + n) of entry e as an array of strings. */
static json_t *lf_lines(const struct lf_scan *sc, const struct lf_pattern *p,
                        size_t e, size_t from, size_t n, int *cut_any)
{
    json_t *a = json_array();
    size_t j;

    for (j = 0; a != NULL && j < n; j++) {
        size_t len;
        int cut;
        const char *t = lf_entry_line(sc, p, e, from + j, &len, &cut);

        *cut_any |= cut;
        json_array_append_new(a, lf_json_text(t, len));
    }
    return a;
}

static json_t *lf_entry_json(const struct lf *s, const struct lf_pattern *p,
                             size_t e)
{
    const struct lf_scan *sc = &s->sc;
    const struct lf_entry *en = &p->ring[e];
    json_t *o = json_object();
    size_t len;
    int cut = 0, ctx_cut = 0;
    const char *line = lf_entry_line(sc, p, e, sc->cfg.before, &len, &cut);

    if (o == NULL) {
        return NULL;
    }
    lf_set(o, "instance", json_string(s->host->instance_name(s->inst)));
    lf_set(o, "file", json_string(s->cfg->file));
    lf_set(o, "pattern", json_string(p->name));
    lf_set(o, "time", lf_time(en->ts_ns));
    lf_set(o, "ts_ms", json_integer(en->ts_ns / 1000000));
    lf_set(o, "seq", json_integer((json_int_t)en->seq));
    lf_set(o, "line", lf_json_text(line, len));
    lf_set(o, "truncated", json_boolean(cut));
    lf_set(o, "before",
           lf_lines(sc, p, e, sc->cfg.before - en->nbefore, en->nbefore,
                    &ctx_cut));
    lf_set(o, "after",
           lf_lines(sc, p, e, sc->cfg.before + 1, en->nafter, &ctx_cut));
    lf_set(o, "after_pending", json_boolean(p->open == (long)e));
    lf_set(o, "context_truncated", json_boolean(ctx_cut));
    return o;
}

static void lf_hit_add(struct lf_req *rq, const struct lf_entry *en,
                       json_t *obj)
{
    if (obj == NULL) {
        return;
    }
    if (rq->nhits == rq->caphits) {
        size_t cap = rq->caphits ? rq->caphits * 2 : 64;
        struct lf_hit *h = realloc(rq->hits, cap * sizeof(*h));

        if (h == NULL) {
            json_decref(obj);
            return;
        }
        rq->hits = h;
        rq->caphits = cap;
    }
    rq->hits[rq->nhits].ts_ns = en->ts_ns;
    rq->hits[rq->nhits].seq = en->seq;
    rq->hits[rq->nhits].order = rq->idx;
    rq->hits[rq->nhits].obj = obj;
    rq->nhits++;
}

/* This instance's matches (up to limit per pattern, newest first) and a
 * summary of its file. */
static void lf_step_collect(struct lf_req *rq, const struct lf *s)
{
    const struct lf_scan *sc = &s->sc;
    json_t *f = json_object(), *counts = json_object();
    size_t i, k;

    for (i = 0; i < sc->npat; i++) {
        const struct lf_pattern *p = &sc->pat[i];
        long taken = 0;

        json_object_set_new(counts, p->name,
                            json_integer((json_int_t)p->matched));
        if (rq->pattern[0] != '\0' && strcmp(rq->pattern, p->name) != 0) {
            continue;
        }
        for (k = 0; k < p->count && taken < rq->limit; k++) {
            size_t e = (p->head + sc->cfg.keep - 1 - k) % sc->cfg.keep;

            if (p->ring[e].ts_ns < rq->since_ns) {
                break; /* older ones are older still */
            }
            lf_hit_add(rq, &p->ring[e], lf_entry_json(s, p, e));
            taken++;
        }
    }
    lf_set(f, "instance", json_string(s->host->instance_name(s->inst)));
    lf_set(f, "file", json_string(s->cfg->file));
    lf_set(f, "present", json_boolean(s->fw.present));
    lf_set(f, "lines_total", json_integer((json_int_t)sc->lines_total));
    lf_set(f, "matched_total", counts);
    json_array_append_new(rq->files, f);
}

static int lf_hit_cmp(const void *a, const void *b)
{
    const struct lf_hit *x = a, *y = b;

    if (x->ts_ns != y->ts_ns) {
        return x->ts_ns < y->ts_ns ? 1 : -1;
    }
    if (x->order != y->order) {
        return x->order < y->order ? -1 : 1;
    }
    return (x->seq < y->seq) - (x->seq > y->seq);
}

/* The last step: newest first, cut to limit, dumped. */
static void lf_step_finish(struct lf_req *rq)
{
    json_t *root = json_object(), *list = json_array();
    size_t i;

    qsort(rq->hits, rq->nhits, sizeof(*rq->hits), lf_hit_cmp);
    for (i = 0; i < rq->nhits; i++) {
        if (list != NULL && i < (size_t)rq->limit) {
            json_array_append(list, rq->hits[i].obj);
        }
    }
    lf_set(root, "pattern",
           rq->pattern[0] ? json_string(rq->pattern) : json_null());
    lf_set(root, "limit", json_integer(rq->limit));
    lf_set(root, "kept", json_integer((json_int_t)rq->nhits));
    lf_set(root, "matches", list);
    json_object_set(root, "files", rq->files);
    rq->json = json_dumps(root, LF_JSON_FLAGS);
    rq->status = rq->json != NULL ? 0 : VIGIL_ENOMEM;
    json_decref(root);
}

static void lf_step_work(void *arg)
{
    struct lf_req *rq = arg;

    lf_step_collect(rq, rq->targets[rq->idx]);
    if (rq->idx + 1 == rq->ntargets) {
        lf_step_finish(rq);
    }
}

/* ------------------------------------------------------------------------
 * Requests (loop).
 */

static void lf_req_free(struct lf_req *rq)
{
    size_t i;

    for (i = 0; i < rq->nhits; i++) {
        json_decref(rq->hits[i].obj);
    }
    free(rq->hits);
    json_decref(rq->files);
    free(rq->targets);
    free(rq->json);
    free(rq);
}

static void lf_reply_error(const struct vigil_host *h, vigil_request *req,
                           int status, const char *msg)
{
    json_t *o = json_pack("{s:s}", "error", msg);
    char *text = o != NULL ? json_dumps(o, LF_JSON_FLAGS) : NULL;

    h->reply(req, status, text);
    free(text);
    json_decref(o);
}

/* Queue rq at the tail of s's queue and let s run it when it can. */
static void lf_enqueue(struct lf *s, struct lf_req *rq)
{
    struct lf_req **pp = &s->queue;

    while (*pp != NULL) {
        pp = &(*pp)->next;
    }
    rq->next = NULL;
    *pp = rq;
    lf_kick(s);
}

static void lf_step_after(void *arg, int status)
{
    struct lf_req *rq = arg;
    struct lf *s = rq->targets[rq->idx];
    const struct vigil_host *h = rq->owner->host;

    s->busy = 0;
    s->inflight = NULL;
    if (rq->req == NULL) {
        lf_req_free(rq); /* canceled meanwhile */
    } else if (status != 0) {
        lf_reply_error(h, rq->req, status, "the diagnostic was canceled");
        lf_req_free(rq);
    } else if (rq->idx + 1 < rq->ntargets) {
        struct lf *next = rq->targets[++rq->idx];

        if (next->stopped) {
            lf_reply_error(h, rq->req, VIGIL_ECANCELED, "vigil is stopping");
            lf_req_free(rq);
        } else {
            lf_enqueue(next, rq);
        }
    } else if (rq->json == NULL) {
        lf_reply_error(h, rq->req, rq->status, vigil_error_text(rq->status));
        lf_req_free(rq);
    } else {
        h->reply(rq->req, 0, rq->json);
        lf_req_free(rq);
    }
    if (!s->stopped) {
        lf_kick(s);
    }
}

/* Start the step of the request at the head of s's queue; see log.h. */
int lf_diag_next(struct lf *s)
{
    struct lf_req *rq = s->queue;
    int rc;

    if (rq == NULL) {
        return 0;
    }
    s->queue = rq->next;
    rq->next = NULL;
    s->inflight = rq;
    s->busy = 1;
    s->last_was_poll = 0;
    rc = s->host->work(s->inst, lf_step_work, lf_step_after, rq);
    if (rc != 0) {
        s->busy = 0;
        s->inflight = NULL;
        if (rq->req != NULL) {
            lf_reply_error(rq->owner->host, rq->req, rc,
                           "cannot queue the work");
        }
        lf_req_free(rq);
        return 0;
    }
    return 1;
}

/* "since": seconds as a number, or a duration text ("90s", "5m"). */
static int lf_parse_since(json_t *v, int64_t *ms)
{
    const char *t = json_string_value(v);
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"ms", 1},      {"s", 1000},     {"m", 60000},
                 {"h", 3600000}, {"d", 86400000}, {"", 1000}};
    char *end;
    double x;
    size_t i;

    if (json_is_number(v)) {
        x = json_number_value(v);
        *ms = (int64_t)(x * 1000.0);
        return x >= 0 && x < 1e9 ? 0 : -1;
    }
    if (t == NULL) {
        return -1;
    }
    errno = 0;
    x = strtod(t, &end);
    if (end == t || errno != 0 || x < 0 || x >= 1e9) {
        return -1;
    }
    for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(end, units[i].unit) == 0) {
            *ms = (int64_t)(x * (double)units[i].ms);
            return 0;
        }
    }
    return -1;
}

/* The instances a request reads, oldest first. Returns 0, or a code
 * after writing why into err. */
static int lf_req_targets(struct lf_req *rq, const char *instance, char *err,
                          size_t size)
{
    struct lf *p;
    size_t n = 0, i;
    int has_pattern = rq->pattern[0] == '\0';

    for (p = lf_instances(); p != NULL; p = p->next) {
        n++;
    }
    rq->targets = calloc(n + 1, sizeof(*rq->targets));
    if (rq->targets == NULL) {
        snprintf(err, size, "out of memory");
        return VIGIL_ENOMEM;
    }
    /* The list is newest first: oldest first reads like the config. */
    for (p = lf_instances(); p != NULL; p = p->next) {
        if (!p->stopped &&
            (instance == NULL ||
             strcmp(p->host->instance_name(p->inst), instance) == 0)) {
            rq->targets[rq->ntargets++] = p;
        }
    }
    for (i = 0; i < rq->ntargets / 2; i++) {
        struct lf *t = rq->targets[i];

        rq->targets[i] = rq->targets[rq->ntargets - 1 - i];
        rq->targets[rq->ntargets - 1 - i] = t;
    }
    for (i = 0; i < rq->ntargets && !has_pattern; i++) {
        size_t k;

        for (k = 0; k < rq->targets[i]->sc.npat; k++) {
            has_pattern |=
                strcmp(rq->targets[i]->sc.pat[k].name, rq->pattern) == 0;
        }
    }
    if (rq->ntargets == 0) {
        snprintf(err, size, "\"instance\": no log instance %s",
                 instance != NULL ? instance : "is running");
        return VIGIL_EINVAL;
    }
    if (!has_pattern) {
        snprintf(err, size, "\"pattern\": no pattern %s in %s", rq->pattern,
                 instance != NULL ? instance : "any log instance");
        return VIGIL_EINVAL;
    }
    return 0;
}

static int lf_req_args(struct lf_req *rq, const char *args, int64_t now_ns,
                       char *err, size_t size)
{
    json_t *a = json_loads(args != NULL && args[0] ? args : "{}",
                           JSON_DECODE_ANY, NULL);
    const char *key, *instance = NULL;
    json_t *v;
    int64_t ms;
    int rc = VIGIL_EINVAL;

    if (!json_is_object(a)) {
        snprintf(err, size, "arguments must be a JSON object");
        goto out;
    }
    json_object_foreach(a, key, v)
    {
        if (strcmp(key, "pattern") && strcmp(key, "limit") &&
            strcmp(key, "since") && strcmp(key, "instance")) {
            snprintf(err, size, "unknown argument \"%s\"", key);
            goto out;
        }
    }
    v = json_object_get(a, "pattern");
    if (v != NULL &&
        (json_string_value(v) == NULL || json_string_length(v) > LF_NAME_MAX)) {
        snprintf(err, size, "\"pattern\": a pattern's name");
        goto out;
    }
    snprintf(rq->pattern, sizeof(rq->pattern), "%s",
             v != NULL ? json_string_value(v) : "");
    v = json_object_get(a, "limit");
    if (v != NULL && (!json_is_integer(v) || json_integer_value(v) < 1 ||
                      json_integer_value(v) > LF_LIMIT_MAX)) {
        snprintf(err, size, "\"limit\": 1 to %d", LF_LIMIT_MAX);
        goto out;
    }
    rq->limit = v != NULL ? (long)json_integer_value(v) : LF_LIMIT_DEF;
    v = json_object_get(a, "since");
    if (v != NULL && lf_parse_since(v, &ms) != 0) {
        snprintf(err, size,
                 "\"since\": seconds, or a duration such as \"90s\", "
                 "\"5m\" or \"1h\"");
        goto out;
    }
    rq->since_ns = v != NULL ? now_ns - ms * 1000000LL : 0;
    v = json_object_get(a, "instance");
    if (v != NULL && (instance = json_string_value(v)) == NULL) {
        snprintf(err, size, "\"instance\": a name");
        goto out;
    }
    rc = lf_req_targets(rq, instance, err, size);
out:
    json_decref(a);
    return rc;
}

static int lf_recent_run(void *state, const char *args, vigil_request *req)
{
    struct lf *s = state;
    struct lf_req *rq;
    char err[256] = "";
    int rc;

    if (s->stopped) {
        return VIGIL_ESTATE;
    }
    rq = calloc(1, sizeof(*rq));
    if (rq == NULL) {
        return VIGIL_ENOMEM;
    }
    rq->owner = s;
    rq->req = req;
    rq->files = json_array();
    rc = rq->files != NULL
             ? lf_req_args(rq, args, s->host->now_ns(s->inst), err, sizeof(err))
             : VIGIL_ENOMEM;
    if (rc != 0) {
        /* Replied here rather than returned: the caller learns why. */
        lf_reply_error(s->host, req, rc, err[0] ? err : "out of memory");
        lf_req_free(rq);
        return 0;
    }
    lf_enqueue(rq->targets[0], rq);
    return 0;
}

static void lf_recent_cancel(void *state, vigil_request *req)
{
    struct lf *s;
    struct lf_req **pp;

    (void)state;
    for (s = lf_instances(); s != NULL; s = s->next) {
        if (s->inflight != NULL && s->inflight->req == req) {
            s->inflight->req = NULL; /* lf_step_after frees it */
            return;
        }
        for (pp = &s->queue; *pp != NULL; pp = &(*pp)->next) {
            if ((*pp)->req == req) {
                struct lf_req *rq = *pp;

                *pp = rq->next;
                lf_req_free(rq);
                return;
            }
        }
    }
}

static const struct vigil_diag lf_diag_recent = {
    .name = "log.recent",
    .help = "the latest log lines that matched a pattern, with the lines "
            "before and after each (a traceback), newest first",
    .args = "{\"pattern\": NAME (default: all), \"limit\": 10 (1 to 1000), "
            "\"since\": seconds or \"5m\" (default: all kept), "
            "\"instance\": NAME (default: every log instance)}",
    .is_action = 0,
    .run = lf_recent_run,
    .cancel = lf_recent_cancel,
};

/* Register log.recent once per process; see log.h. */
int lf_diag_register(struct lf *s)
{
    struct lf *p;
    int rc;

    for (p = lf_instances(); p != NULL; p = p->next) {
        if (p != s && p->diag_owner) {
            return 0;
        }
    }
    rc = s->host->register_diag(s->inst, &lf_diag_recent);
    if (rc == VIGIL_EEXIST) {
        return 0; /* registered by an instance of an earlier config */
    }
    if (rc == 0) {
        s->diag_owner = 1;
    }
    return rc;
}

/* Cancel the requests waiting for s; see log.h. Does not fail. */
void lf_diag_stop(struct lf *s)
{
    struct lf_req *rq = s->inflight;

    if (rq != NULL && rq->req != NULL) {
        lf_reply_error(rq->owner->host, rq->req, VIGIL_ECANCELED,
                       "vigil is stopping");
        rq->req = NULL; /* freed when its step returns */
    }

    while ((rq = s->queue) != NULL) {
        s->queue = rq->next;
        if (rq->req != NULL) {
            lf_reply_error(rq->owner->host, rq->req, VIGIL_ECANCELED,
                           "vigil is stopping");
        }
        lf_req_free(rq);
    }
}
