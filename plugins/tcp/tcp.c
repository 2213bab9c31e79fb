/*
 * tcp.c - the tcp probe plugin: TCP connect time to host:port (the
 * guide's "Network RTT"), and the diagnostic tcp.measure.
 *
 * An attempt resolves the host with uv_getaddrinfo (on libuv's thread
 * pool), connects to the first address with uv_tcp_connect, and closes
 * the connection; a uv_timer bounds the whole attempt by `timeout`.
 * Nothing blocks the loop. The connect time is measured from the
 * connect call to its callback (uv_hrtime), DNS excluded.
 *
 * Published per attempt (labels: instance):
 *   tcp.connect.time_ms     connect time (only when it connected)
 *   tcp.connect.errors_total failed attempts since start, per class:
 *                           dns|refused|timeout|other
 * host->collect_done() sets tcp.up and tcp.collect_ms.
 *
 * tcp.measure runs `count` attempts one after another (interval_ms
 * apart) and replies with mean, stdev, min, max, p50, p95, p99.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <uv.h>
#include <vigil/plugin.h>

#include "measure.h"

#define TCP_HOST_MAX 256
#define TCP_MEASURE_COUNT_MAX 100000
#define TCP_MS_MAX (3600 * 1000L)
#define TCP_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(6))

struct tcp_config {
    const char *host;
    int64_t port;
    int64_t timeout_ms;
};

static const struct vigil_option tcp_options[] = {
    {.key = "host",
     .type = VIGIL_OPT_STRING,
     .offset = offsetof(struct tcp_config, host),
     .help = "the host name or address to connect to",
     .flags = VIGIL_OPT_REQUIRED},
    {.key = "port",
     .type = VIGIL_OPT_INT,
     .offset = offsetof(struct tcp_config, port),
     .help = "the TCP port",
     .flags = VIGIL_OPT_REQUIRED},
    {.key = "timeout",
     .type = VIGIL_OPT_DURATION,
     .def = "3s",
     .offset = offsetof(struct tcp_config, timeout_ms),
     .help = "give up on an attempt (DNS and connect) after this long"},
    {.key = NULL},
};

enum {
    TCP_ERR_NONE = -1,
    TCP_ERR_DNS,
    TCP_ERR_REFUSED,
    TCP_ERR_TIMEOUT,
    TCP_ERR_OTHER,
    TCP_NERR
};

static const char *const tcp_err_names[TCP_NERR] = {"dns", "refused", "timeout",
                                                    "other"};

struct tcp_attempt;
/* The end of an attempt: err_class TCP_ERR_NONE and the connect time, or
 * an error class and the libuv error. */
typedef void (*tcp_attempt_cb)(struct tcp_attempt *a, int err_class, double ms,
                               int uv_err);

/* One attempt at a time; reused. Handles: timer (open from init to
 * close), tcp (open during a connect). */
struct tcp_attempt {
    uv_loop_t *loop;
    char host[TCP_HOST_MAX];
    char port[8];
    uint64_t timeout_ms;
    tcp_attempt_cb cb;
    void (*closed_cb)(struct tcp_attempt *a); /* after tcp_attempt_close */
    void *data;

    uv_getaddrinfo_t gai;
    uv_connect_t conn;
    uv_tcp_t tcp;
    uv_timer_t timer;
    int resolving, tcp_open, timer_open;
    int running, timed_out, closing;
    uint64_t t0;
    int err_class, uv_err;
    double ms;
};

static void tcp_attempt_maybe_closed(struct tcp_attempt *a)
{
    if (a->closing && !a->resolving && !a->tcp_open && !a->timer_open &&
        a->closed_cb != NULL) {
        a->closed_cb(a);
    }
}

/* The attempt is over once its connection is closed. */
static void tcp_attempt_deliver(struct tcp_attempt *a)
{
    a->running = 0;
    uv_timer_stop(&a->timer);
    if (a->closing) {
        tcp_attempt_maybe_closed(a);
        return;
    }
    a->cb(a, a->err_class, a->ms, a->uv_err);
}

static void tcp_on_tcp_closed(uv_handle_t *h)
{
    struct tcp_attempt *a = h->data;

    a->tcp_open = 0;
    tcp_attempt_deliver(a);
}

static int tcp_uv_class(int err)
{
    switch (err) {
    case UV_ECONNREFUSED:
        return TCP_ERR_REFUSED;
    case UV_ETIMEDOUT:
        return TCP_ERR_TIMEOUT;
    default:
        return TCP_ERR_OTHER;
    }
}

static void tcp_on_connect(uv_connect_t *req, int status)
{
    struct tcp_attempt *a = req->data;

    if (status == 0) {
        a->err_class = TCP_ERR_NONE;
        a->ms = (double)(uv_hrtime() - a->t0) / 1e6;
    } else if (a->timed_out) {
        a->err_class = TCP_ERR_TIMEOUT;
        a->uv_err = UV_ETIMEDOUT;
    } else {
        a->err_class = tcp_uv_class(status);
        a->uv_err = status;
    }
    if (!uv_is_closing((uv_handle_t *)&a->tcp)) {
        uv_close((uv_handle_t *)&a->tcp, tcp_on_tcp_closed);
    }
}

static void tcp_on_resolved(uv_getaddrinfo_t *req, int status,
                            struct addrinfo *res)
{
    struct tcp_attempt *a = req->data;
    int rc;

    a->resolving = 0;
    if (a->closing || status != 0) {
        uv_freeaddrinfo(res);
        if (a->timed_out || status == UV_EAI_CANCELED) {
            a->err_class = TCP_ERR_TIMEOUT;
            a->uv_err = UV_ETIMEDOUT;
        } else {
            a->err_class = TCP_ERR_DNS;
            a->uv_err = status;
        }
        tcp_attempt_deliver(a);
        return;
    }
    uv_tcp_init(a->loop, &a->tcp);
    a->tcp.data = a;
    a->tcp_open = 1;
    a->conn.data = a;
    a->t0 = uv_hrtime();
    rc = uv_tcp_connect(&a->conn, &a->tcp, res->ai_addr, tcp_on_connect);
    uv_freeaddrinfo(res);
    if (rc != 0) {
        a->err_class = tcp_uv_class(rc);
        a->uv_err = rc;
        uv_close((uv_handle_t *)&a->tcp, tcp_on_tcp_closed);
    }
}

static void tcp_on_timeout(uv_timer_t *t)
{
    struct tcp_attempt *a = t->data;

    a->timed_out = 1;
    if (a->resolving) {
        /* Fails when the lookup already runs: its callback ends it. */
        uv_cancel((uv_req_t *)&a->gai);
    } else if (a->tcp_open && !uv_is_closing((uv_handle_t *)&a->tcp)) {
        /* The connect callback runs with UV_ECANCELED. */
        uv_close((uv_handle_t *)&a->tcp, tcp_on_tcp_closed);
        a->err_class = TCP_ERR_TIMEOUT;
        a->uv_err = UV_ETIMEDOUT;
    }
}

static void tcp_attempt_init(struct tcp_attempt *a, uv_loop_t *loop,
                             const char *host, int port, uint64_t timeout_ms,
                             tcp_attempt_cb cb, void *data)
{
    a->loop = loop;
    snprintf(a->host, sizeof(a->host), "%s", host);
    snprintf(a->port, sizeof(a->port), "%d", port);
    a->timeout_ms = timeout_ms;
    a->cb = cb;
    a->data = data;
    uv_timer_init(loop, &a->timer);
    a->timer.data = a;
    a->timer_open = 1;
}

static int tcp_attempt_start(struct tcp_attempt *a)
{
    struct addrinfo hints;
    int rc;

    if (a->running || a->closing) {
        return VIGIL_EBUSY;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    a->timed_out = 0;
    a->err_class = TCP_ERR_NONE;
    a->uv_err = 0;
    a->ms = 0;
    a->gai.data = a;
    rc = uv_getaddrinfo(a->loop, &a->gai, tcp_on_resolved, a->host, a->port,
                        &hints);
    if (rc != 0) {
        return VIGIL_EIO;
    }
    a->resolving = 1;
    a->running = 1;
    uv_timer_start(&a->timer, tcp_on_timeout, a->timeout_ms, 0);
    return 0;
}

static void tcp_on_timer_closed(uv_handle_t *h)
{
    struct tcp_attempt *a = h->data;

    a->timer_open = 0;
    tcp_attempt_maybe_closed(a);
}

/* Stop the attempt without its callback, close the handles, then call
 * closed_cb (perhaps at once). */
static void tcp_attempt_close(struct tcp_attempt *a,
                              void (*closed_cb)(struct tcp_attempt *a))
{
    a->closing = 1;
    a->closed_cb = closed_cb;
    if (a->resolving) {
        uv_cancel((uv_req_t *)&a->gai);
    }
    if (a->tcp_open && !uv_is_closing((uv_handle_t *)&a->tcp)) {
        uv_close((uv_handle_t *)&a->tcp, tcp_on_tcp_closed);
    }
    if (a->timer_open && !uv_is_closing((uv_handle_t *)&a->timer)) {
        uv_close((uv_handle_t *)&a->timer, tcp_on_timer_closed);
    }
    tcp_attempt_maybe_closed(a);
}

/* ------------------------------------------------------------------------
 * The instance.
 */

struct tcp_req;

struct tcp {
    const struct vigil_host *host;
    vigil_instance *inst;
    const struct tcp_config *cfg;
    struct tcp_attempt at;
    int started, closed;
    int64_t start_ns;
    vigil_series_id time_series;
    vigil_series_id err_series[TCP_NERR];
    uint64_t errors[TCP_NERR];
    struct tcp_req *reqs;
};

static void tcp_on_attempt(struct tcp_attempt *a, int err_class, double ms,
                           int uv_err)
{
    struct tcp *s = a->data;
    const struct vigil_host *h = s->host;
    int rc = 0;
    size_t i;

    if (err_class == TCP_ERR_NONE) {
        h->publish(s->inst, s->time_series, s->start_ns, ms);
    } else {
        s->errors[err_class]++;
        h->error(s->inst, "%s:%s: %s: %s", a->host, a->port,
                 tcp_err_names[err_class], uv_strerror(uv_err));
        rc = err_class == TCP_ERR_TIMEOUT ? VIGIL_ETIMEDOUT : VIGIL_EIO;
    }
    for (i = 0; i < TCP_NERR; i++) {
        h->publish(s->inst, s->err_series[i], s->start_ns,
                   (double)s->errors[i]);
    }
    h->collect_done(s->inst, rc);
}

static int tcp_collect(void *state)
{
    struct tcp *s = state;
    int rc;

    if (!s->started) {
        return VIGIL_ESTATE;
    }
    s->start_ns = s->host->now_ns(s->inst);
    rc = tcp_attempt_start(&s->at);
    if (rc != 0) {
        s->host->error(s->inst, "%s:%s: cannot start: %s", s->at.host,
                       s->at.port, vigil_error_text(rc));
        return rc;
    }
    return VIGIL_PENDING;
}

/* ------------------------------------------------------------------------
 * tcp.measure, with the statistics of the guide's measure_latency.py.
 */

struct tcp_req {
    struct tcp *s;
    vigil_request *req;
    struct tcp_req *next;
    struct tcp_attempt at;
    uv_timer_t gap;
    int gap_open, at_open;
    long count, interval_ms, done, ok, errors;
    long class_errors[TCP_NERR];
    double *ms;
};

static void tcp_req_maybe_free(struct tcp_req *rq)
{
    if (!rq->gap_open && !rq->at_open) {
        free(rq->ms);
        free(rq);
    }
}

static void tcp_req_gap_closed(uv_handle_t *h)
{
    struct tcp_req *rq = h->data;

    rq->gap_open = 0;
    tcp_req_maybe_free(rq);
}

static void tcp_req_at_closed(struct tcp_attempt *a)
{
    struct tcp_req *rq = a->data;

    rq->at_open = 0;
    tcp_req_maybe_free(rq);
}

static void tcp_req_end(struct tcp_req *rq)
{
    struct tcp_req **pp;

    for (pp = &rq->s->reqs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == rq) {
            *pp = rq->next;
            break;
        }
    }
    uv_close((uv_handle_t *)&rq->gap, tcp_req_gap_closed);
    tcp_attempt_close(&rq->at, tcp_req_at_closed);
}

static void tcp_req_reply(struct tcp_req *rq, int status, const char *json)
{
    if (rq->req != NULL) {
        rq->s->host->reply(rq->req, status, json);
        rq->req = NULL;
    }
}

static void tcp_req_finish(struct tcp_req *rq)
{
    json_t *o = json_object(), *cl = json_object();
    char host[TCP_HOST_MAX + 8];
    char *text = NULL;
    size_t i;

    if (o != NULL && cl != NULL) {
        snprintf(host, sizeof(host), "%s", rq->at.host);
        json_object_set_new(o, "host", json_string(host));
        json_object_set_new(o, "port", json_integer(atoi(rq->at.port)));
        json_object_set_new(o, "count", json_integer(rq->count));
        json_object_set_new(o, "ok", json_integer(rq->ok));
        json_object_set_new(o, "errors", json_integer(rq->errors));
        measure_stats_set(o, rq->ms, (size_t)rq->ok);
        for (i = 0; i < TCP_NERR; i++) {
            if (rq->class_errors[i] > 0) {
                json_object_set_new(cl, tcp_err_names[i],
                                    json_integer(rq->class_errors[i]));
            }
        }
        json_object_set_new(o, "error_classes", cl);
        cl = NULL;
        text = json_dumps(o, TCP_JSON_FLAGS);
    }
    tcp_req_reply(rq, text != NULL ? 0 : VIGIL_ENOMEM, text);
    free(text);
    json_decref(o);
    json_decref(cl);
    tcp_req_end(rq);
}

static void tcp_req_next(struct tcp_req *rq)
{
    int rc = tcp_attempt_start(&rq->at);

    if (rc != 0) {
        tcp_req_reply(rq, rc, NULL);
        tcp_req_end(rq);
    }
}

static void tcp_req_on_gap(uv_timer_t *t)
{
    tcp_req_next(t->data);
}

static void tcp_req_on_attempt(struct tcp_attempt *a, int err_class, double ms,
                               int uv_err)
{
    struct tcp_req *rq = a->data;

    (void)uv_err;
    rq->done++;
    if (err_class == TCP_ERR_NONE) {
        rq->ms[rq->ok++] = ms;
    } else {
        rq->errors++;
        rq->class_errors[err_class]++;
    }
    vigil_progress(rq->s->host, rq->req, (unsigned)rq->done,
                   (unsigned)rq->count);
    if (rq->done >= rq->count) {
        tcp_req_finish(rq);
    } else {
        uv_timer_start(&rq->gap, tcp_req_on_gap, (uint64_t)rq->interval_ms, 0);
    }
}

static int tcp_arg_long(json_t *a, const char *key, long lo, long hi, long *out)
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

static int tcp_measure_run(void *state, const char *args_json,
                           vigil_request *req)
{
    struct tcp *s = state;
    const char *host = s->cfg->host;
    long port = (long)s->cfg->port, timeout_ms = (long)s->cfg->timeout_ms;
    json_t *a, *h;
    struct tcp_req *rq;
    const char *msg = NULL;
    char *text;

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
    a = json_loads(args_json != NULL ? args_json : "{}", JSON_DECODE_ANY, NULL);
    h = json_object_get(a, "host");
    if (!json_is_object(a)) {
        msg = "arguments must be a JSON object";
    } else if (h != NULL && (!json_is_string(h) || json_string_length(h) == 0 ||
                             json_string_length(h) >= TCP_HOST_MAX)) {
        msg = "host: a host name or address";
    } else if (tcp_arg_long(a, "port", 1, 65535, &port) != 0 ||
               tcp_arg_long(a, "count", 1, TCP_MEASURE_COUNT_MAX, &rq->count) !=
                   0 ||
               tcp_arg_long(a, "interval_ms", 0, TCP_MS_MAX,
                            &rq->interval_ms) != 0 ||
               tcp_arg_long(a, "timeout_ms", 1, TCP_MS_MAX, &timeout_ms) != 0) {
        msg = "port (1..65535), count (1..100000), interval_ms and "
              "timeout_ms (up to 1h) are integers";
    }
    if (msg == NULL) {
        if (h != NULL) {
            host = json_string_value(h);
        }
        rq->ms = calloc((size_t)rq->count, sizeof(*rq->ms));
        if (rq->ms == NULL) {
            json_decref(a);
            free(rq);
            return VIGIL_ENOMEM;
        }
        tcp_attempt_init(&rq->at, s->host->loop(s->inst), host, (int)port,
                         (uint64_t)timeout_ms, tcp_req_on_attempt, rq);
    }
    json_decref(a);
    if (msg != NULL) {
        json_t *o = json_pack("{s:s}", "error", msg);

        text = o != NULL ? json_dumps(o, TCP_JSON_FLAGS) : NULL;
        s->host->reply(req, VIGIL_EINVAL, text);
        free(text);
        json_decref(o);
        free(rq);
        return 0;
    }
    rq->at_open = 1;
    uv_timer_init(s->host->loop(s->inst), &rq->gap);
    rq->gap.data = rq;
    rq->gap_open = 1;
    rq->next = s->reqs;
    s->reqs = rq;
    tcp_req_next(rq);
    return 0;
}

static void tcp_measure_cancel(void *state, vigil_request *req)
{
    struct tcp *s = state;
    struct tcp_req *rq;

    for (rq = s->reqs; rq != NULL; rq = rq->next) {
        if (rq->req == req) {
            rq->req = NULL;
            tcp_req_end(rq);
            return;
        }
    }
}

static const struct vigil_diag tcp_diag_measure = {
    .name = "tcp.measure",
    .help = "time `count` TCP connects one after another: mean, stdev, "
            "min, max, p50, p95, p99",
    .args = "{\"host\": NAME, \"port\": N (default: this instance's), "
            "\"count\": 10, \"interval_ms\": 100, \"timeout_ms\": the "
            "instance's timeout}",
    .is_action = 0,
    .run = tcp_measure_run,
    .cancel = tcp_measure_cancel,
};

/* ------------------------------------------------------------------------
 * Life cycle.
 */

static int tcp_start(void *state)
{
    struct tcp *s = state;

    tcp_attempt_init(&s->at, s->host->loop(s->inst), s->cfg->host,
                     (int)s->cfg->port, (uint64_t)s->cfg->timeout_ms,
                     tcp_on_attempt, s);
    s->started = 1;
    return 0;
}

static void tcp_on_closed(struct tcp_attempt *a)
{
    struct tcp *s = a->data;

    s->closed = 1;
}

static void tcp_stop(void *state)
{
    struct tcp *s = state;

    while (s->reqs != NULL) {
        tcp_req_reply(s->reqs, VIGIL_ECANCELED, NULL);
        tcp_req_end(s->reqs);
    }
    if (s->started) {
        s->started = 0;
        tcp_attempt_close(&s->at, tcp_on_closed);
    }
}

static void tcp_destroy(void *state)
{
    free(state);
}

static int tcp_init(const struct vigil_host *host, vigil_instance *inst,
                    const void *config, void **state)
{
    const struct tcp_config *cfg = config;
    struct tcp *s;
    int rc = 0;

    if (host->struct_size < offsetof(struct vigil_host, instance_name) +
                                sizeof(host->instance_name)) {
        return VIGIL_EABI;
    }
    if (cfg->port < 1 || cfg->port > 65535) {
        host->log(inst, VIGIL_LOG_ERROR, "port must be between 1 and 65535");
        return VIGIL_ECONFIG;
    }
    if (cfg->host[0] == '\0' || strlen(cfg->host) >= TCP_HOST_MAX) {
        host->log(inst, VIGIL_LOG_ERROR,
                  "host must be a name or address of under %d bytes",
                  TCP_HOST_MAX);
        return VIGIL_ECONFIG;
    }
    if (cfg->timeout_ms < 1 || cfg->timeout_ms > TCP_MS_MAX) {
        host->log(inst, VIGIL_LOG_ERROR, "timeout must be between 1ms and 1h");
        return VIGIL_ECONFIG;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        host->log(inst, VIGIL_LOG_ERROR, "out of memory");
        return VIGIL_ENOMEM;
    }
    s->host = host;
    s->inst = inst;
    s->cfg = cfg;
    rc = host->series(inst, "tcp.connect.time_ms", NULL, 0, &s->time_series);
    if (rc == 0) {
        rc = vigil_series_by_label(host, inst, "tcp.connect.errors_total",
                                   "class", tcp_err_names, TCP_NERR,
                                   s->err_series);
    }
    if (rc != 0) {
        host->log(inst, VIGIL_LOG_ERROR, "cannot create series: %s",
                  vigil_error_text(rc));
        goto out;
    }
    rc = host->register_diag(inst, &tcp_diag_measure);
    if (rc == VIGIL_EEXIST) {
        rc = 0; /* another instance provides it */
    } else if (rc != 0) {
        host->log(inst, VIGIL_LOG_ERROR, "cannot register tcp.measure: %s",
                  vigil_error_text(rc));
    }
out:
    if (rc != 0) {
        free(s);
        return rc;
    }
    *state = s;
    return 0;
}

VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {
    .abi_version = VIGIL_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct vigil_plugin),
    .name = "tcp",
    .version = "0.1.0",
    .description = "TCP connect time to host:port (DNS resolved "
                   "asynchronously); diagnostic tcp.measure",
    .options = tcp_options,
    .config_size = sizeof(struct tcp_config),
    .init = tcp_init,
    .start = tcp_start,
    .collect = tcp_collect,
    .stop = tcp_stop,
    .destroy = tcp_destroy,
};
