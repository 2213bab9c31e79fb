/*
 * sqlite_diag.c - the sqlite plugin's diagnostics:
 *
 *   sqlite.plan     EXPLAIN QUERY PLAN of a configured query (by name) or
 *                   of any read (its text): the plan rows, the tables read
 *                   by full scans, and hints checked on a copy of the
 *                   schema (see sqlite_plan.c)
 *   sqlite.measure  the same, plus the query run `count` times back to
 *                   back and timed: mean, stdev, min, max, p50, p95, p99
 *                   (what `vigil probe sqlite FILE QUERY` shows)
 *
 * Registered once per vigil process, by the first sqlite instance. A
 * request reads the file of the instance named by "instance", else of
 * the instance that has a query of that name, else of the registering
 * instance. It opens its own read-only connection on the thread pool
 * (never the collection's, which a pending collection owns), builds its
 * JSON reply there, and is answered on the loop exactly once. A request
 * canceled by the core or stopped with vigil is told to give up through
 * its own cancel flag, which its busy and progress handlers read.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "measure.h"
#include "sqlite.h"

#define SQ_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(6))
#define SQ_COUNT_DEF 5
#define SQ_COUNT_MAX 1000

struct sq_req {
    struct sq *s;        /* the instance whose file it reads */
    vigil_request *req;  /* NULL once replied to or canceled */
    struct sq_req *next; /* in s->reqs */
    int measure;         /* sqlite.measure */
    long count;
    char name[SQ_NAME_MAX + 1]; /* "" when given as text */
    char *sql;
    char *path; /* copies: the work reads nothing of s */
    int64_t timeout_ms, busy_timeout_ms;
    atomic_int cancel;
    /* Result (work). */
    int status;
    char *json;
};

/* ------------------------------------------------------------------------
 * The work (thread pool): everything it touches is rq's.
 */

static void sq_set_error(json_t *root, int *status, int code, const char *msg)
{
    json_object_set_new(root, "error", json_string(msg));
    *status = code;
}

static int sq_vigil_code(int st)
{
    switch (st) {
    case SQ_OK:
        return 0;
    case SQ_BUSY:
        return VIGIL_EBUSY;
    case SQ_REFUSED:
        return VIGIL_EINVAL;
    case SQ_TIMEOUT:
        return VIGIL_ETIMEDOUT;
    case SQ_CANCELED:
        return VIGIL_ECANCELED;
    default:
        return VIGIL_EIO;
    }
}

/* Run the statement count times; set the figures on root. */
static void sq_measure_runs(struct sq_req *rq, struct sq_conn *c, json_t *root)
{
    char msg[SQ_MSG_MAX] = "";
    sqlite3_stmt *st = NULL;
    double *ms = calloc((size_t)rq->count, sizeof(*ms));
    long i, ok = 0, busy = 0, errors = 0;
    struct sq_run last = {0}, r;
    json_t *timing = json_object();
    int rc = sq_conn_prepare(c, rq->sql, 0, &st, msg, sizeof(msg));

    for (i = 0; rc == SQ_OK && ms != NULL && i < rq->count; i++) {
        int one = sq_conn_run(c, st, rq->timeout_ms, &r, msg, sizeof(msg));

        if (one == SQ_OK) {
            ms[ok++] = r.ms;
            last = r;
        } else if (one == SQ_BUSY) {
            busy++;
        } else if (one == SQ_CANCELED) {
            break;
        } else {
            errors++;
        }
    }
    sqlite3_finalize(st);
    if (rc != SQ_OK) {
        errors = rq->count;
    }
    json_object_set_new(root, "count", json_integer(rq->count));
    json_object_set_new(root, "ok", json_integer(ok));
    json_object_set_new(root, "busy", json_integer(busy));
    json_object_set_new(root, "errors", json_integer(errors));
    json_object_set_new(root, "rows", json_integer(last.rows));
    json_object_set_new(root, "fullscan_steps",
                        json_integer(last.fullscan_steps));
    json_object_set_new(root, "sorts", json_integer(last.sorts));
    if (ms != NULL && timing != NULL) {
        measure_stats_set(timing, ms, (size_t)ok);
    }
    json_object_set_new(root, "timing", timing);
    if (msg[0] != '\0' && ok < rq->count) {
        json_object_set_new(root, "last_error", json_string(msg));
    }
    free(ms);
}

static void sq_diag_work(void *arg)
{
    struct sq_req *rq = arg;
    char msg[SQ_MSG_MAX] = "";
    struct sq_conn c;
    json_t *root = json_object();
    int st;

    if (root == NULL) {
        rq->status = VIGIL_ENOMEM;
        return;
    }
    json_object_set_new(root, "file", json_string(rq->path));
    json_object_set_new(root, "query",
                        rq->name[0] ? json_string(rq->name) : json_null());
    json_object_set_new(root, "sql", json_string(rq->sql));
    st = sq_conn_open(&c, rq->path, &rq->cancel, rq->busy_timeout_ms, msg,
                      sizeof(msg));
    if (st == SQ_OK) {
        st = sq_plan_json(&c, rq->sql, root, msg, sizeof(msg));
    }
    if (st == SQ_OK && rq->measure) {
        sq_measure_runs(rq, &c, root);
    }
    sq_conn_close(&c);
    rq->status = 0;
    if (st != SQ_OK) {
        sq_set_error(root, &rq->status, sq_vigil_code(st), msg);
    }
    rq->json = json_dumps(root, SQ_JSON_FLAGS);
    json_decref(root);
    if (rq->json == NULL) {
        rq->status = VIGIL_ENOMEM;
    }
}

/* ------------------------------------------------------------------------
 * Requests (loop).
 */

static void sq_req_free(struct sq_req *rq)
{
    free(rq->sql);
    free(rq->path);
    free(rq->json);
    free(rq);
}

static void sq_req_unlink(struct sq_req *rq)
{
    struct sq_req **pp;

    for (pp = &rq->s->reqs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == rq) {
            *pp = rq->next;
            return;
        }
    }
}

/* Reply {"error": msg} once. */
static void sq_reply_error(const struct vigil_host *h, vigil_request *req,
                           int status, const char *msg)
{
    json_t *o = json_pack("{s:s}", "error", msg);
    char *text = o != NULL ? json_dumps(o, SQ_JSON_FLAGS) : NULL;

    h->reply(req, status, text);
    free(text);
    json_decref(o);
}

static void sq_diag_after(void *arg, int status)
{
    struct sq_req *rq = arg;
    const struct vigil_host *h = rq->s->host;

    sq_req_unlink(rq);
    if (rq->req != NULL) {
        if (status != 0) {
            sq_reply_error(h, rq->req, status, "the diagnostic was canceled");
        } else if (rq->json == NULL) {
            sq_reply_error(h, rq->req, rq->status,
                           vigil_error_text(rq->status));
        } else {
            h->reply(rq->req, rq->status, rq->json);
        }
    }
    sq_req_free(rq);
}

/* The instance and SQL a request is about; see the file comment. */
static int sq_req_target(struct sq *self, struct sq_req *rq, const char *query,
                         const char *instance, char *err, size_t size)
{
    struct sq *s = NULL, *p;
    size_t i;

    if (instance != NULL) {
        s = sq_instance_find(instance);
        if (s == NULL) {
            snprintf(err, size, "\"instance\": no sqlite instance %s",
                     instance);
            return VIGIL_EINVAL;
        }
    }
    for (p = s != NULL ? s : sq_instances(); p != NULL && rq->sql == NULL;
         p = s != NULL ? NULL : p->next) {
        for (i = 0; i < p->nq; i++) {
            if (strcmp(p->queries[i].name, query) == 0) {
                snprintf(rq->name, sizeof(rq->name), "%s", query);
                rq->sql = strdup(p->queries[i].sql);
                s = p;
                break;
            }
        }
    }
    rq->s = s != NULL ? s : self;
    if (rq->sql == NULL) {
        rq->sql = strdup(query);
    }
    rq->path = strdup(rq->s->cfg->file);
    rq->timeout_ms = rq->s->cfg->timeout_ms;
    rq->busy_timeout_ms = rq->s->cfg->busy_timeout_ms;
    if (rq->sql == NULL || rq->path == NULL) {
        snprintf(err, size, "out of memory");
        return VIGIL_ENOMEM;
    }
    return 0;
}

/* Arguments into rq. Returns 0, or a code after writing why into err. */
static int sq_req_args(struct sq *self, struct sq_req *rq, const char *args,
                       char *err, size_t size)
{
    json_t *a = json_loads(args != NULL && args[0] ? args : "{}",
                           JSON_DECODE_ANY, NULL);
    const char *key, *query, *instance = NULL;
    json_t *v;
    int rc = VIGIL_EINVAL;

    if (!json_is_object(a)) {
        snprintf(err, size, "arguments must be a JSON object");
        goto out;
    }
    json_object_foreach(a, key, v)
    {
        if (strcmp(key, "query") && strcmp(key, "instance") &&
            strcmp(key, "count") && strcmp(key, "timeout_ms")) {
            snprintf(err, size, "unknown argument \"%s\"", key);
            goto out;
        }
    }
    query = json_string_value(json_object_get(a, "query"));
    if (query == NULL || query[0] == '\0' || strlen(query) >= SQ_SQL_MAX) {
        snprintf(err, size,
                 "\"query\": the name of a configured query or the text "
                 "of a read (SELECT ...)");
        goto out;
    }
    v = json_object_get(a, "instance");
    if (v != NULL && (instance = json_string_value(v)) == NULL) {
        snprintf(err, size, "\"instance\": a name");
        goto out;
    }
    v = json_object_get(a, "count");
    if (v != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > SQ_COUNT_MAX) {
            snprintf(err, size, "\"count\": 1 to %d", SQ_COUNT_MAX);
            goto out;
        }
        rq->count = (long)json_integer_value(v);
    }
    rc = sq_req_target(self, rq, query, instance, err, size);
    v = json_object_get(a, "timeout_ms");
    if (rc == 0 && v != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 1) {
            snprintf(err, size, "\"timeout_ms\": a positive integer");
            rc = VIGIL_EINVAL;
        } else {
            rq->timeout_ms = json_integer_value(v);
        }
    }
out:
    json_decref(a);
    return rc;
}

static int sq_diag_start(void *state, const char *args, vigil_request *req,
                         int measure)
{
    struct sq *self = state;
    struct sq_req *rq;
    char err[SQ_MSG_MAX] = "";
    int rc;

    if (self->stopped) {
        return VIGIL_ESTATE;
    }
    rq = calloc(1, sizeof(*rq));
    if (rq == NULL) {
        return VIGIL_ENOMEM;
    }
    rq->req = req;
    rq->measure = measure;
    rq->count = SQ_COUNT_DEF;
    atomic_init(&rq->cancel, 0);
    rc = sq_req_args(self, rq, args, err, sizeof(err));
    if (rc == 0 && rq->s->stopped) {
        snprintf(err, sizeof(err), "that instance is stopping");
        rc = VIGIL_ESTATE;
    }
    if (rc == 0) {
        /* Listed first: a host may complete it before work() returns. */
        rq->next = rq->s->reqs;
        rq->s->reqs = rq;
        rc = self->host->work(self->inst, sq_diag_work, sq_diag_after, rq);
        if (rc == 0) {
            return 0;
        }
        sq_req_unlink(rq);
        snprintf(err, sizeof(err), "cannot queue the work: %s",
                 vigil_error_text(rc));
    }
    /* Replied here rather than returned, so that the caller learns why. */
    sq_reply_error(self->host, req, rc, err);
    sq_req_free(rq);
    return 0;
}

static int sq_plan_run(void *state, const char *args, vigil_request *req)
{
    return sq_diag_start(state, args, req, 0);
}

static int sq_measure_run(void *state, const char *args, vigil_request *req)
{
    return sq_diag_start(state, args, req, 1);
}

static void sq_diag_cancel(void *state, vigil_request *req)
{
    struct sq *s;
    struct sq_req *rq;

    (void)state;
    for (s = sq_instances(); s != NULL; s = s->next) {
        for (rq = s->reqs; rq != NULL; rq = rq->next) {
            if (rq->req == req) {
                /* Its work is running: it gives up at the next handler
                 * call, and sq_diag_after frees it. */
                rq->req = NULL;
                atomic_store(&rq->cancel, 1);
                return;
            }
        }
    }
}

static const struct vigil_diag sq_diag_plan = {
    .name = "sqlite.plan",
    .help = "EXPLAIN QUERY PLAN of a query: full table scans flagged, with "
            "index hints checked on a copy of the schema",
    .args = "{\"query\": NAME of a configured query or the SQL of a read, "
            "\"instance\": NAME (default: the one with that query)}",
    .is_action = 0,
    .run = sq_plan_run,
    .cancel = sq_diag_cancel,
};

static const struct vigil_diag sq_diag_measure = {
    .name = "sqlite.measure",
    .help = "run a query `count` times, timed (mean, stdev, min, max, p50, "
            "p95, p99), with its plan",
    .args = "{\"query\": NAME or SQL, \"instance\": NAME, \"count\": 5 (1 "
            "to 1000), \"timeout_ms\": per run (the instance's timeout)}",
    .is_action = 0,
    .run = sq_measure_run,
    .cancel = sq_diag_cancel,
};

/* Register the diagnostics once per process; see sqlite.h. */
int sq_diag_register(struct sq *s)
{
    struct sq *p;
    int rc;

    for (p = sq_instances(); p != NULL; p = p->next) {
        if (p != s && p->diag_owner) {
            return 0;
        }
    }
    rc = s->host->register_diag(s->inst, &sq_diag_plan);
    if (rc == VIGIL_EEXIST) {
        return 0; /* registered by an instance of an earlier config */
    }
    if (rc != 0) {
        return rc;
    }
    rc = s->host->register_diag(s->inst, &sq_diag_measure);
    if (rc != 0 && rc != VIGIL_EEXIST) {
        return rc;
    }
    s->diag_owner = 1;
    return 0;
}

/* Cancel the requests reading s's file; see sqlite.h. Does not fail. */
void sq_diag_stop(struct sq *s)
{
    struct sq_req *rq;

    for (rq = s->reqs; rq != NULL; rq = rq->next) {
        atomic_store(&rq->cancel, 1);
        if (rq->req != NULL) {
            sq_reply_error(s->host, rq->req, VIGIL_ECANCELED,
                           "vigil is stopping");
            rq->req = NULL;
        }
    }
}
