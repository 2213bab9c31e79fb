/*
 * ws_measure.c - the diagnostic ws.measure: a fresh connection to the
 * instance's URL (or another), its connect time, then `count` pings one
 * after another (interval_ms from a pong to the next ping), replied as
 * the statistics of their RTT, in the JSON shape of http.measure and
 * tcp.measure so that `vigil probe` prints them alike.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "measure.h"
#include "ws.h"

#define WS_MEASURE_COUNT_MAX 100000
#define WS_MEASURE_MS_MAX (3600 * 1000L)
#define WS_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(6))

struct ws_req {
    struct ws *s;
    vigil_request *req;  /* NULL once replied to or canceled */
    struct ws_req *next; /* in s->reqs */
    struct ws_conn conn;
    char url[WS_URL_MAX];
    long count, interval_ms, ok;
    double connect_ms; /* < 0 until connected */
    int err_class;     /* -1: none */
    double *rtt;       /* ok entries of count */
};

static void ws_req_closed(struct ws_conn *c)
{
    struct ws_req *rq = c->data;

    free(rq->rtt);
    free(rq);
}

/* Unlink rq and close its connection; freed once closed. */
static void ws_req_end(struct ws_req *rq)
{
    struct ws_req **pp;

    for (pp = &rq->s->reqs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == rq) {
            *pp = rq->next;
            break;
        }
    }
    ws_conn_close(&rq->conn, ws_req_closed);
}

static void ws_req_reply(struct ws_req *rq, int status, const char *json)
{
    if (rq->req != NULL) {
        rq->s->host->reply(rq->req, status, json);
        rq->req = NULL;
    }
}

static void ws_req_finish(struct ws_req *rq)
{
    json_t *o = json_object(), *cl = json_object(), *ph = json_object();
    char *text = NULL;

    if (o != NULL && cl != NULL && ph != NULL) {
        json_object_set_new(o, "url", json_string(rq->url));
        json_object_set_new(o, "count", json_integer(rq->count));
        json_object_set_new(o, "ok", json_integer(rq->ok));
        json_object_set_new(o, "errors", json_integer(rq->count - rq->ok));
        measure_stats_set(o, rq->rtt, (size_t)rq->ok);
        json_object_set_new(o, "connect_ms",
                            rq->connect_ms >= 0 ? json_real(rq->connect_ms)
                                                : json_null());
        if (rq->connect_ms >= 0) {
            json_object_set_new(ph, "connect", json_real(rq->connect_ms));
        }
        json_object_set_new(o, "phases", ph);
        ph = NULL;
        if (rq->err_class >= 0) {
            json_object_set_new(cl, ws_err_names[rq->err_class],
                                json_integer(1));
            json_object_set_new(o, "error", json_string(rq->conn.why));
        }
        json_object_set_new(o, "error_classes", cl);
        cl = NULL;
        text = json_dumps(o, WS_JSON_FLAGS);
    }
    ws_req_reply(rq, text != NULL ? 0 : VIGIL_ENOMEM, text);
    free(text);
    json_decref(o);
    json_decref(cl);
    json_decref(ph);
    ws_req_end(rq);
}

static void ws_req_on_open(struct ws_conn *c, double connect_ms)
{
    struct ws_req *rq = c->data;

    rq->connect_ms = connect_ms;
}

static void ws_req_on_pong(struct ws_conn *c, double rtt_ms)
{
    struct ws_req *rq = c->data;

    rq->rtt[rq->ok++] = rtt_ms;
    vigil_progress(rq->s->host, rq->req, (unsigned)rq->ok, (unsigned)rq->count);
    if (rq->ok >= rq->count) {
        ws_req_finish(rq);
    }
}

/* The connection failed or dropped: the pings not answered are the
 * errors, and the reply says why. */
static void ws_req_on_down(struct ws_conn *c, int err_class)
{
    struct ws_req *rq = c->data;

    rq->err_class = err_class;
    rq->s->host->log(rq->s->inst, VIGIL_LOG_WARN, "ws.measure %s: %s: %s",
                     rq->url, ws_err_names[err_class], c->why);
    ws_req_finish(rq);
}

/* An integer argument: *out unchanged when absent; -1 when not an integer
 * in [lo, hi]. */
static int ws_arg_long(json_t *a, const char *key, long lo, long hi, long *out)
{
    json_t *v = json_object_get(a, key);

    if (v == NULL) {
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo ||
        json_integer_value(v) > hi) {
        return -1;
    }
    *out = (long)json_integer_value(v);
    return 0;
}

static void ws_reply_error(struct ws *s, vigil_request *req, const char *msg)
{
    json_t *o = json_pack("{s:s}", "error", msg);
    char *text = o != NULL ? json_dumps(o, WS_JSON_FLAGS) : NULL;

    s->host->reply(req, VIGIL_EINVAL, text);
    free(text);
    json_decref(o);
}

/* Read the arguments into rq and url; NULL, or what is wrong. */
static const char *ws_req_args(struct ws_req *rq, const char *args_json,
                               struct ws_url *url, char *msg, size_t size)
{
    json_t *a =
        json_loads(args_json != NULL ? args_json : "{}", JSON_DECODE_ANY, NULL);
    json_t *u = json_object_get(a, "url");
    const char *why = NULL;

    if (!json_is_object(a)) {
        why = "arguments must be a JSON object";
    } else if (u != NULL &&
               (!json_is_string(u) || json_string_length(u) >= WS_URL_MAX ||
                ws_url_parse(json_string_value(u), url, &why) != 0)) {
        snprintf(msg, size, "url: %s",
                 why != NULL ? why : "a ws:// or wss:// URL");
        why = msg;
    } else if (ws_arg_long(a, "count", 1, WS_MEASURE_COUNT_MAX, &rq->count) !=
                   0 ||
               ws_arg_long(a, "interval_ms", 0, WS_MEASURE_MS_MAX,
                           &rq->interval_ms) != 0) {
        why = "count (1..100000) and interval_ms (0..3600000) are integers";
    } else if (u != NULL) {
        snprintf(rq->url, sizeof(rq->url), "%s", json_string_value(u));
    }
    json_decref(a);
    return why;
}

static int ws_measure_run(void *state, const char *args_json,
                          vigil_request *req)
{
    struct ws *s = state;
    struct ws_conn_params p;
    struct ws_url url = s->url;
    struct ws_req *rq;
    const char *why;
    char msg[200];

    if (!s->started) {
        return VIGIL_ESTATE;
    }
    rq = calloc(1, sizeof(*rq));
    if (rq == NULL) {
        return VIGIL_ENOMEM;
    }
    rq->s = s;
    rq->req = req;
    rq->count = 10;
    rq->interval_ms = 100;
    rq->connect_ms = -1;
    rq->err_class = -1;
    snprintf(rq->url, sizeof(rq->url), "%s", s->cfg->url);
    why = ws_req_args(rq, args_json, &url, msg, sizeof(msg));
    if (why != NULL) {
        free(rq);
        ws_reply_error(s, req, why);
        return 0;
    }
    rq->rtt = calloc((size_t)rq->count, sizeof(*rq->rtt));
    ws_params(s, &url, &p);
    p.ping_interval_ms = rq->interval_ms;
    p.reconnect_min_ms = 0; /* one connection, measured as it is */
    if (rq->rtt == NULL ||
        ws_conn_init(&rq->conn, s->host->loop(s->inst), &p) != 0) {
        free(rq->rtt);
        free(rq);
        return VIGIL_ENOMEM;
    }
    rq->conn.data = rq;
    rq->conn.on_open = ws_req_on_open;
    rq->conn.on_pong = ws_req_on_pong;
    rq->conn.on_down = ws_req_on_down;
    rq->next = s->reqs;
    s->reqs = rq;
    /* A fresh connection always starts; a failure (even at once) comes
     * back through ws_req_on_down and the reply. */
    (void)ws_conn_start(&rq->conn);
    return 0;
}

static void ws_measure_cancel(void *state, vigil_request *req)
{
    struct ws *s = state;
    struct ws_req *rq;

    for (rq = s->reqs; rq != NULL; rq = rq->next) {
        if (rq->req == req) {
            rq->req = NULL;
            ws_req_end(rq);
            return;
        }
    }
}

void ws_measure_stop_all(struct ws *s)
{
    while (s->reqs != NULL) {
        ws_req_reply(s->reqs, VIGIL_ECANCELED, NULL);
        ws_req_end(s->reqs);
    }
}

const struct vigil_diag ws_diag_measure = {
    .name = "ws.measure",
    .help = "open a fresh connection and time `count` pings one after "
            "another: mean, stdev, min, max, p50, p95, p99, connect time",
    .args = "{\"url\": URL (default: this instance's), \"count\": 10, "
            "\"interval_ms\": 100}",
    .is_action = 0,
    .run = ws_measure_run,
    .cancel = ws_measure_cancel,
};
