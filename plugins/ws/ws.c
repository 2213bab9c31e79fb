/*
 * ws.c - the ws probe plugin: one WebSocket client connection per
 * instance (`[plugin ws NAME]`), kept open with libwebsockets on the
 * core's loop, pinged with a timestamp and timed, its messages counted,
 * reconnected with a capped, jittered backoff when it drops; and the
 * diagnostic ws.measure (ws_measure.c).
 *
 * The connection lives on its own (ws_conn.c) from start() to stop();
 * collect() only publishes what it has seen, so a feed that goes silent
 * shows as a growing ws.messages.last_age_ms at every tick. All
 * instances share one lws context (ws_lws.c).
 *
 * Published (labels: instance):
 *   ws.ping.rtt_ms                  per pong: ping sent to pong received
 *   ws.connect.time_ms              per connection: connect call to the
 *                                   end of the WebSocket handshake
 *   ws.connection.state             1 connected, 0 not; on every change
 *                                   and every collect
 *   ws.connection.reconnects_total  connection attempts after the first
 *   ws.connection.errors_total      failed attempts and lost connections,
 *                                   per class (ws_err_names)
 *   ws.messages.received_total      complete messages received
 *   ws.messages.received_per_s      messages per second since the
 *                                   previous collect
 *   ws.messages.received_bytes_total payload bytes received
 *   ws.messages.last_age_ms         time since the last message (since
 *                                   start when none came yet)
 * collect() returns 0 while connected, so ws.up is the connection's
 * state at each tick.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws.h"
#include "ws_lws.h"

#define WS_MS_MIN 10
#define WS_MS_MAX (3600 * 1000LL)

static const struct vigil_option ws_options[] = {
    {.key = "url",
     .type = VIGIL_OPT_STRING,
     .offset = offsetof(struct ws_config, url),
     .help = "the WebSocket to watch, ws:// or wss://",
     .flags = VIGIL_OPT_REQUIRED},
    {.key = "subscribe",
     .type = VIGIL_OPT_STRING,
     .offset = offsetof(struct ws_config, subscribe),
     .help = "a text message sent after every (re)connect, e.g. a "
             "stream subscription"},
    {.key = "subprotocol",
     .type = VIGIL_OPT_STRING,
     .offset = offsetof(struct ws_config, subprotocol),
     .help = "WebSocket subprotocol(s) to ask for (Sec-WebSocket-Protocol)"},
    {.key = "ping_interval",
     .type = VIGIL_OPT_DURATION,
     .def = "5s",
     .offset = offsetof(struct ws_config, ping_interval_ms),
     .help = "time from a pong to the next ping"},
    {.key = "pong_timeout",
     .type = VIGIL_OPT_DURATION,
     .def = "3s",
     .offset = offsetof(struct ws_config, pong_timeout_ms),
     .help = "a ping unanswered this long closes the connection"},
    {.key = "connect_timeout",
     .type = VIGIL_OPT_DURATION,
     .def = "5s",
     .offset = offsetof(struct ws_config, connect_timeout_ms),
     .help = "give up on a connection attempt (DNS, TCP, TLS, upgrade) "
             "after this long"},
    {.key = "reconnect_min",
     .type = VIGIL_OPT_DURATION,
     .def = "500ms",
     .offset = offsetof(struct ws_config, reconnect_min_ms),
     .help = "first delay before reconnecting; doubles per failure"},
    {.key = "reconnect_max",
     .type = VIGIL_OPT_DURATION,
     .def = "30s",
     .offset = offsetof(struct ws_config, reconnect_max_ms),
     .help = "longest delay before reconnecting"},
    {.key = "tls_verify",
     .type = VIGIL_OPT_BOOL,
     .def = "yes",
     .offset = offsetof(struct ws_config, tls_verify),
     .help = "check the server's TLS certificate and name"},
    {.key = "ca_file",
     .type = VIGIL_OPT_STRING,
     .offset = offsetof(struct ws_config, ca_file),
     .help = "CA certificates (PEM) to check the server with, instead of "
             "the system's"},
    {.key = NULL},
};

static const char *const ws_series_names[WS_NSER] = {
    [WS_SER_RTT] = "ws.ping.rtt_ms",
    [WS_SER_CONNECT] = "ws.connect.time_ms",
    [WS_SER_STATE] = "ws.connection.state",
    [WS_SER_RECONNECTS] = "ws.connection.reconnects_total",
    [WS_SER_MSGS] = "ws.messages.received_total",
    [WS_SER_RATE] = "ws.messages.received_per_s",
    [WS_SER_BYTES] = "ws.messages.received_bytes_total",
    [WS_SER_AGE] = "ws.messages.last_age_ms",
};

void ws_params(const struct ws *s, const struct ws_url *url,
               struct ws_conn_params *p)
{
    const struct ws_config *cfg = s->cfg;

    memset(p, 0, sizeof(*p));
    p->url = *url;
    p->tls_verify = cfg->tls_verify;
    p->vhost = s->vhost;
    p->subprotocol = cfg->subprotocol;
    p->connect_timeout_ms = cfg->connect_timeout_ms;
    p->ping_interval_ms = cfg->ping_interval_ms;
    p->pong_timeout_ms = cfg->pong_timeout_ms;
    p->reconnect_min_ms = cfg->reconnect_min_ms;
    p->reconnect_max_ms = cfg->reconnect_max_ms;
}

/* ------------------------------------------------------------------------
 * The connection's events.
 */

static void ws_on_open(struct ws_conn *c, double connect_ms)
{
    struct ws *s = c->data;

    s->host->publish(s->inst, s->series[WS_SER_CONNECT], 0, connect_ms);
    s->host->publish(s->inst, s->series[WS_SER_STATE], 0, 1.0);
    s->host->log(s->inst, VIGIL_LOG_INFO, "%s: connected in %.1f ms",
                 s->cfg->url, connect_ms);
}

static void ws_on_pong(struct ws_conn *c, double rtt_ms)
{
    struct ws *s = c->data;

    s->host->publish(s->inst, s->series[WS_SER_RTT], 0, rtt_ms);
}

static void ws_on_down(struct ws_conn *c, int err_class)
{
    struct ws *s = c->data;

    s->errors[err_class]++;
    s->reported++;
    s->host->publish(s->inst, s->series[WS_SER_STATE], 0, 0.0);
    s->host->publish(s->inst, s->err_series[err_class], 0,
                     (double)s->errors[err_class]);
    s->host->error(s->inst, "%s: %s: %s", s->cfg->url, ws_err_names[err_class],
                   c->why);
}

/* ------------------------------------------------------------------------
 * Collection: publish what the connection has seen.
 */

static int ws_collect(void *state)
{
    struct ws *s = state;
    const struct vigil_host *h = s->host;
    const struct ws_conn *c = &s->conn;
    uint64_t now = uv_hrtime();
    uint64_t last = c->last_msg_ns != 0 ? c->last_msg_ns : s->start_hr;
    double secs = (double)(now - s->tick_hr) / 1e9;
    size_t i;

    if (!s->started) {
        return VIGIL_ESTATE;
    }
    h->publish(s->inst, s->series[WS_SER_STATE], 0, c->open ? 1.0 : 0.0);
    h->publish(s->inst, s->series[WS_SER_RECONNECTS], 0, (double)c->reconnects);
    h->publish(s->inst, s->series[WS_SER_MSGS], 0, (double)c->messages);
    h->publish(s->inst, s->series[WS_SER_BYTES], 0, (double)c->bytes);
    h->publish(s->inst, s->series[WS_SER_RATE], 0,
               secs > 0 ? (double)(c->messages - s->tick_msgs) / secs : 0.0);
    h->publish(s->inst, s->series[WS_SER_AGE], 0, (double)(now - last) / 1e6);
    for (i = 0; i < WS_NERR; i++) {
        h->publish(s->inst, s->err_series[i], 0, (double)s->errors[i]);
    }
    s->tick_hr = now;
    s->tick_msgs = c->messages;
    if (c->open) {
        s->reported_mark = s->reported;
        return 0;
    }
    /* Say why once per tick when the failure itself was not reported
     * since the last one (a long backoff). */
    if (s->reported == s->reported_mark) {
        h->error(s->inst, "%s: not connected (%s)", s->cfg->url,
                 c->why[0] != '\0' ? c->why : "connecting");
    }
    s->reported_mark = s->reported;
    return VIGIL_EIO;
}

/* ------------------------------------------------------------------------
 * Life cycle.
 */

static int ws_start(void *state)
{
    struct ws *s = state;
    struct ws_conn_params p;
    char err[200];
    int rc;

    rc = ws_lws_acquire(s->host->loop(s->inst), ws_conn_protocols, err,
                        sizeof(err));
    if (rc == 0) {
        s->acquired = 1; /* released by stop(), which runs anyway */
        rc = ws_lws_vhost(s->cfg->ca_file, &s->vhost, err, sizeof(err));
    }
    if (rc != 0) {
        s->host->log(s->inst, VIGIL_LOG_ERROR, "%s", err);
        return rc;
    }
    ws_params(s, &s->url, &p);
    p.subscribe = s->cfg->subscribe;
    rc = ws_conn_init(&s->conn, s->host->loop(s->inst), &p);
    if (rc != 0) {
        s->host->log(s->inst, VIGIL_LOG_ERROR, "out of memory");
        return rc;
    }
    s->conn_inited = 1;
    s->conn.data = s;
    s->conn.on_open = ws_on_open;
    s->conn.on_pong = ws_on_pong;
    s->conn.on_down = ws_on_down;
    s->start_hr = s->tick_hr = uv_hrtime();
    s->started = 1;
    return ws_conn_start(&s->conn);
}

static void ws_stop(void *state)
{
    struct ws *s = state;

    ws_measure_stop_all(s);
    s->started = 0;
    if (s->conn_inited) {
        ws_conn_close(&s->conn, NULL);
    }
    /* The connections are detached and killed; the context's destroy
     * closes them for good. */
    if (s->acquired) {
        s->acquired = 0;
        ws_lws_release();
    }
}

static void ws_destroy(void *state)
{
    struct ws *s = state;

    if (s != NULL) {
        /* Freed by the connection's close already, unless its handles
         * were never closed through it (a forced shutdown). */
        free(s->conn.sub_buf);
        free(s);
    }
}

/* Check the options that the core cannot. */
static int ws_config_check(struct ws *s, const struct ws_config *cfg)
{
    const struct {
        const char *key;
        int64_t v, lo;
    } d[] = {
        {"ping_interval", cfg->ping_interval_ms, WS_MS_MIN},
        {"pong_timeout", cfg->pong_timeout_ms, WS_MS_MIN},
        {"connect_timeout", cfg->connect_timeout_ms, WS_MS_MIN},
        {"reconnect_min", cfg->reconnect_min_ms, WS_MS_MIN},
        {"reconnect_max", cfg->reconnect_max_ms, WS_MS_MIN},
    };
    const char *why;
    char err[128];

    if (ws_url_parse(cfg->url, &s->url, &why) != 0) {
        s->host->log(s->inst, VIGIL_LOG_ERROR, "url '%s': %s", cfg->url, why);
        return VIGIL_ECONFIG;
    }
    for (size_t i = 0; i < sizeof(d) / sizeof(d[0]); i++) {
        if (d[i].v < d[i].lo || d[i].v > WS_MS_MAX) {
            s->host->log(s->inst, VIGIL_LOG_ERROR,
                         "%s must be between %lldms and 1h", d[i].key,
                         (long long)d[i].lo);
            return VIGIL_ECONFIG;
        }
    }
    if (cfg->reconnect_max_ms < cfg->reconnect_min_ms) {
        s->host->log(s->inst, VIGIL_LOG_ERROR,
                     "reconnect_max must not be below reconnect_min");
        return VIGIL_ECONFIG;
    }
    if (cfg->subscribe != NULL &&
        (cfg->subscribe[0] == '\0' ||
         strlen(cfg->subscribe) > WS_CONN_SUBSCRIBE_MAX)) {
        s->host->log(s->inst, VIGIL_LOG_ERROR,
                     "subscribe must be a message of 1 to %d bytes",
                     WS_CONN_SUBSCRIBE_MAX);
        return VIGIL_ECONFIG;
    }
    if (cfg->subprotocol != NULL &&
        (cfg->subprotocol[0] == '\0' ||
         strpbrk(cfg->subprotocol, "\r\n") != NULL)) {
        s->host->log(s->inst, VIGIL_LOG_ERROR,
                     "subprotocol must be a token such as 'v1.stream'");
        return VIGIL_ECONFIG;
    }
    /* Found now rather than at every TLS handshake. */
    if (cfg->ca_file != NULL &&
        ws_lws_ca_check(cfg->ca_file, err, sizeof(err)) != 0) {
        s->host->log(s->inst, VIGIL_LOG_ERROR, "ca_file '%s': %s", cfg->ca_file,
                     err);
        return VIGIL_ECONFIG;
    }
    return 0;
}

static int ws_series_create(struct ws *s)
{
    int rc = vigil_series_names(s->host, s->inst, ws_series_names, WS_NSER,
                                s->series);

    if (rc == 0) {
        rc = vigil_series_by_label(s->host, s->inst,
                                   "ws.connection.errors_total", "class",
                                   ws_err_names, WS_NERR, s->err_series);
    }
    if (rc != 0) {
        s->host->log(s->inst, VIGIL_LOG_ERROR, "cannot create series: %s",
                     vigil_error_text(rc));
    }
    return rc;
}

static int ws_init(const struct vigil_host *host, vigil_instance *inst,
                   const void *config, void **state)
{
    const struct ws_config *cfg = config;
    struct ws *s;
    int rc;

    if (host->struct_size < offsetof(struct vigil_host, instance_name) +
                                sizeof(host->instance_name)) {
        return VIGIL_EABI;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        host->log(inst, VIGIL_LOG_ERROR, "out of memory");
        return VIGIL_ENOMEM;
    }
    s->host = host;
    s->inst = inst;
    s->cfg = cfg;
    rc = ws_config_check(s, cfg);
    if (rc == 0) {
        rc = ws_series_create(s);
    }
    if (rc == 0) {
        rc = host->register_diag(inst, &ws_diag_measure);
        if (rc == VIGIL_EEXIST) {
            rc = 0; /* another instance provides it */
        } else if (rc != 0) {
            host->log(inst, VIGIL_LOG_ERROR, "cannot register ws.measure: %s",
                      vigil_error_text(rc));
        }
    }
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
    .name = "ws",
    .version = "0.1.0",
    .description = "WebSocket feed probe: ping/pong RTT, connect time, "
                   "message rate and age, reconnects; diagnostic "
                   "ws.measure",
    .options = ws_options,
    .config_size = sizeof(struct ws_config),
    .init = ws_init,
    .start = ws_start,
    .collect = ws_collect,
    .stop = ws_stop,
    .destroy = ws_destroy,
};
