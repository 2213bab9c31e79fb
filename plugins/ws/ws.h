/*
 * ws.h - what the ws plugin's files share: the instance (ws.c) and the
 * ws.measure diagnostic (ws_measure.c). Private to the plugin.
 */
#ifndef WS_H
#define WS_H

#include <stdint.h>

#include <vigil/plugin.h>

#include "ws_conn.h"
#include "ws_url.h"

struct ws_config {
    const char *url;
    const char *subscribe;
    const char *subprotocol;
    int64_t ping_interval_ms;
    int64_t pong_timeout_ms;
    int64_t connect_timeout_ms;
    int64_t reconnect_min_ms;
    int64_t reconnect_max_ms;
    int tls_verify;
    const char *ca_file;
};

/* Series published by an instance, besides errors_total per class. */
enum {
    WS_SER_RTT,        /* ws.ping.rtt_ms, per pong */
    WS_SER_CONNECT,    /* ws.connect.time_ms, per connection */
    WS_SER_STATE,      /* ws.connection.state, on change and per collect */
    WS_SER_RECONNECTS, /* ws.connection.reconnects_total */
    WS_SER_MSGS,       /* ws.messages.received_total */
    WS_SER_RATE,       /* ws.messages.received_per_s */
    WS_SER_BYTES,      /* ws.messages.received_bytes_total */
    WS_SER_AGE,        /* ws.messages.last_age_ms */
    WS_NSER
};

struct ws_req; /* a ws.measure in flight */

struct ws {
    const struct vigil_host *host;
    vigil_instance *inst;
    const struct ws_config *cfg; /* borrowed from the core */
    struct ws_url url;
    struct lws_vhost *vhost; /* from start() */
    struct ws_conn conn;
    int acquired, conn_inited, started;
    uint64_t start_hr;                /* uv_hrtime() at start */
    uint64_t tick_hr, tick_msgs;      /* the previous collect */
    unsigned reported, reported_mark; /* host->error calls */
    uint64_t errors[WS_NERR];
    vigil_series_id series[WS_NSER];
    vigil_series_id err_series[WS_NERR];
    struct ws_req *reqs;
};

/* Connection parameters from the instance's options, for url. Does not
 * fail. */
void ws_params(const struct ws *s, const struct ws_url *url,
               struct ws_conn_params *p);

/* ws.measure, registered by ws.c. */
extern const struct vigil_diag ws_diag_measure;

/* End every ws.measure of s (at stop): reply VIGIL_ECANCELED, close. */
void ws_measure_stop_all(struct ws *s);

#endif
