/*
 * http - vigil's HTTP and WebSocket server: `/metrics`, the JSON API under
 * `/api/v1/`, the live feed and the dashboard, on the daemon's libuv loop.
 *
 * libwebsockets runs on the loop the daemon owns ("foreign loop"): one
 * context, one vhost, one listening socket serving plain HTTP and the
 * `vigil-feed` WebSocket protocol (marked the vhost's default, so that a
 * browser's upgrade without a subprotocol reaches it). Only this module
 * touches the libwebsockets context.
 *
 * Requests are routed here (http.c), answered by api.c (JSON), promtext.c
 * (Prometheus text) and feed.c (WebSocket), or served from the dashboard
 * directory. Nothing a client sends can block the loop or grow memory
 * without bound: request bodies and headers have a maximum, responses are
 * written in chunks when the socket is writable (large ones are produced
 * chunk by chunk as they are sent), store reads run on the thread pool one
 * at a time, and a feed client that does not keep up is dropped.
 *
 * Authorization: anything that changes state needs `Authorization: Bearer
 * <token>` with the [http] token; reads are open to loopback peers (other
 * peers need the token for everything). docs/api.md has the details.
 *
 * The server borrows the loop, bus, runbook engine, incident manager and
 * plugin set; it owns its context, its clients and a store connection of
 * its own (tool mode, used only on the thread pool).
 */
#ifndef VIGIL_HTTP_H
#define VIGIL_HTTP_H

#include <stdint.h>
#include <uv.h>

#include "config.h"

struct bus;
struct rb_engine;
struct inc_mgr;
struct plug_set;
struct http;

/* The [http] section (docs/config.md). */
struct http_conf {
    int enabled;
    const char *listen;
    int64_t port;
    const char *token; /* NULL or "": state changes are refused */
    const char *web_dir;
    uint64_t body_max;
    uint64_t response_max;
    int64_t clients_max;
    uint64_t feed_queue;
    int64_t feed_subscriptions_max;
};

/* Claim the [http] section of cfg and fill c (defaults when there is no
 * section). Problems go to diag with file:line. Returns 0 or
 * VIGIL_ECONFIG. Strings in c belong to cfg. */
int http_conf_load(struct cfg *cfg, struct http_conf *c, struct cfg_diag *diag);

/* What the server borrows from the daemon. */
struct http_env {
    uv_loop_t *loop;
    struct bus *bus;
    struct rb_engine *rules;   /* may be NULL */
    struct inc_mgr *incidents; /* may be NULL */
    struct plug_set *plugs;    /* may be NULL */
    const char *store_path;    /* the daemon's store; NULL: none */
    int64_t interval_ms;       /* period of vigil.http.* metrics */
    const char *config_path;   /* for messages */
    /* POST /api/v1/reload: what SIGHUP does. */
    void (*reload)(void *arg);
    void *reload_arg;
};

/* Create the server (nothing listens yet). c and env are copied; the
 * strings they point to must outlive the server. Returns 0 or
 * VIGIL_ENOMEM. */
int http_create(const struct http_conf *c, const struct http_env *env,
                struct http **out);

/* Listen and serve. Logs the dashboard's address. When the address cannot
 * be bound (in use, not local), logs why and returns VIGIL_EIO: the
 * daemon goes on without HTTP. */
int http_start(struct http *h);

/* Close every connection and the listening socket, and stop the
 * timers. The loop must then run until the close callbacks are done
 * (this takes a few loop turns: libwebsockets' own handles close first).
 * Accepts NULL. */
void http_stop(struct http *h);

/* Free what is left, once the loop has run after http_stop. Accepts
 * NULL. */
void http_destroy(struct http *h);

#endif
