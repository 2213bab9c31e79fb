/*
 * ws_conn - one WebSocket client connection of the ws plugin, kept alive
 * and measured: resolve the host with uv_getaddrinfo (libwebsockets 4.1 as
 * built by Debian would call getaddrinfo() on the loop), connect through
 * the shared lws context (ws_lws.h), send an optional subscription text
 * after every connect, ping with a timestamp in the payload, time the
 * pong, count messages, and when the connection fails or a pong is late,
 * drop it and (when asked) reconnect after a capped, jittered backoff.
 *
 * Two uv timers per connection: `step` says when to do the next thing
 * (the next ping, the next address, the next reconnect) and `deadline`
 * when to give up on the current one (the connect timeout, the pong
 * timeout). One ping is outstanding at most; the next is sent
 * ping_interval after the pong.
 *
 * Nothing on the per-message path allocates: messages are counted, not
 * kept, and the ping and subscription frames are written from buffers
 * made once in ws_conn_init().
 *
 * The owner (an instance or a ws.measure request) embeds the struct and
 * must call ws_conn_close() and wait for its callback before freeing it.
 * A connection given up on is "detached" from lws (its opaque pointer
 * cleared, then killed), so lws callbacks that come later for it reach
 * nothing.
 */
#ifndef WS_CONN_H
#define WS_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include <libwebsockets.h>

#include "ws_url.h"

/* Why a connection attempt failed or a connection was lost: the values
 * of errors_total's `class` label. */
enum {
    WS_ERR_DNS,
    WS_ERR_REFUSED,
    WS_ERR_TIMEOUT,
    WS_ERR_TLS,
    WS_ERR_HANDSHAKE,
    WS_ERR_PONG_TIMEOUT,
    WS_ERR_CLOSED,
    WS_ERR_OTHER,
    WS_NERR
};

extern const char *const ws_err_names[WS_NERR];

/* The protocol table to create the lws context and vhosts with. */
extern const struct lws_protocols ws_conn_protocols[];

#define WS_CONN_ADDRS_MAX 4
#define WS_CONN_WHY_MAX 160
#define WS_CONN_SUBSCRIBE_MAX (64 * 1024)

struct ws_conn;

/* Connected, after connect_ms (the connect call to the end of the
 * WebSocket handshake, DNS excluded). */
typedef void (*ws_conn_open_cb)(struct ws_conn *c, double connect_ms);
/* A pong answered our ping after rtt_ms. */
typedef void (*ws_conn_pong_cb)(struct ws_conn *c, double rtt_ms);
/* An attempt failed or the connection was lost (err_class WS_ERR_*,
 * c->why says how). The owner may call ws_conn_close() from here. */
typedef void (*ws_conn_down_cb)(struct ws_conn *c, int err_class);
/* Everything is closed: the owner may free c. */
typedef void (*ws_conn_closed_cb)(struct ws_conn *c);

struct ws_conn_params {
    struct ws_url url;          /* copied */
    int tls_verify;             /* 0: accept any certificate */
    struct lws_vhost *vhost;    /* from ws_lws_vhost(); borrowed */
    const char *subprotocol;    /* NULL: none; borrowed */
    const char *subscribe;      /* NULL: none; borrowed */
    int64_t connect_timeout_ms; /* resolve + connect + TLS + upgrade */
    int64_t ping_interval_ms;   /* from a pong to the next ping; >= 0 */
    int64_t pong_timeout_ms;    /* from a ping to its pong */
    int64_t reconnect_min_ms;   /* 0: never reconnect */
    int64_t reconnect_max_ms;
};

struct ws_conn {
    /* Set by the owner before ws_conn_start(); any may be NULL. */
    ws_conn_open_cb on_open;
    ws_conn_pong_cb on_pong;
    ws_conn_down_cb on_down;
    void *data;

    /* Read by the owner. */
    int open;                  /* the WebSocket is up */
    uint64_t messages;         /* complete messages received, all connections */
    uint64_t bytes;            /* payload bytes received */
    uint64_t last_msg_ns;      /* uv_hrtime() of the last message; 0: none */
    uint64_t reconnects;       /* attempts after the first */
    char why[WS_CONN_WHY_MAX]; /* the last failure, for messages */

    /* Private. */
    struct ws_conn_params p;
    uv_loop_t *loop;
    struct lws *wsi;
    int state;
    int closing, resolving, handles;
    ws_conn_closed_cb closed_cb;
    uv_getaddrinfo_t gai;
    uv_timer_t step, deadline;
    char host_header[WS_URL_HOST_MAX + 8];
    char tls_err[96]; /* why the certificate was refused */
    char addrs[WS_CONN_ADDRS_MAX][48];
    unsigned naddrs, iaddr;
    uint64_t t_connect; /* uv_hrtime() at the connect call */
    unsigned failures;  /* in a row, for the backoff */
    unsigned fails;     /* ws_conn_fail() calls, to notice one */
    uint64_t rnd;       /* jitter state */
    int want_ping, want_sub, ping_out;
    uint64_t ping_seq;
    unsigned char *sub_buf; /* LWS_PRE + subscription */
    size_t sub_len;
    unsigned char ping_buf[LWS_PRE + 16];
};

/* Set c up on loop with the parameters p (copied; the strings in it are
 * borrowed until the close callback). Creates the timers. Returns 0 or
 * VIGIL_ENOMEM; on failure nothing needs closing. */
int ws_conn_init(struct ws_conn *c, uv_loop_t *loop,
                 const struct ws_conn_params *p);

/* Start connecting (once; reconnections are its own business). Returns 0
 * or VIGIL_ESTATE when closing. */
int ws_conn_start(struct ws_conn *c);

/* Drop the connection, stop everything and close the handles; closed_cb
 * (may be NULL) runs when c can be freed, perhaps before this returns.
 * No other callback runs after this. Idempotent. */
void ws_conn_close(struct ws_conn *c, ws_conn_closed_cb closed_cb);

#endif
