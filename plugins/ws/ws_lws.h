/*
 * ws_lws - the one libwebsockets context of the ws plugin, shared by all
 * its instances and ws.measure requests, on the core's own libuv loop
 * (lws "foreign loop" mode: lws adds its handles to the loop and never
 * runs it).
 *
 * The context is created by the first ws_lws_acquire() and destroyed after
 * the last ws_lws_release(). Destroying an lws 4.1 context on a foreign
 * loop takes two lws_context_destroy() calls with the loop running in
 * between (docs: /work/shared/notes/integration.md section 1): the first
 * closes the connections and starts closing lws's own uv handles, the
 * second frees the context once those handles' close callbacks have run.
 * A uv_timer here (the "reaper") keeps the loop alive and checks for them,
 * so the core's shutdown (stop, then run the loop until no handle is left)
 * needs nothing special and uv_loop_close() returns 0.
 *
 * Client TLS settings live on an lws vhost, so there is one client-only
 * vhost per distinct ca_file (NULL: the system's CA store), created on
 * demand and kept until the context goes. The system's store is the
 * hashed CA directory (/etc/ssl/certs), read lazily, not the bundle that
 * lws would parse whole on the loop.
 *
 * Uses libwebsockets and libuv; all calls on the loop thread.
 */
#ifndef WS_LWS_H
#define WS_LWS_H

#include <stddef.h>

#include <uv.h>

#include <libwebsockets.h>

/* Take a reference on the module's context, creating it on loop when
 * there is none. protocols (ended by an entry with a NULL name) is used
 * when creating it and must outlive it. Returns 0, or VIGIL_EIO with a
 * reason in err. */
int ws_lws_acquire(uv_loop_t *loop, const struct lws_protocols *protocols,
                   char *err, size_t size);

/* Drop a reference; the last one starts the two-phase destroy, which
 * finishes on the loop. Connections must have been closed (or detached
 * with a kill) before. Does not fail. */
void ws_lws_release(void);

/* The current context, NULL when none is acquired. */
struct lws_context *ws_lws_context(void);

/* The client vhost for ca_file (NULL: the system's CA store), created on
 * first use; borrowed until the last release. Returns 0, or VIGIL_EIO
 * with a reason in err. */
int ws_lws_vhost(const char *ca_file, struct lws_vhost **out, char *err,
                 size_t size);

/* Check that path can be read and holds a PEM certificate, so that a
 * wrong ca_file is a config error rather than failed handshakes later.
 * Reads the file (small, at init). Returns 0, or VIGIL_ECONFIG with the
 * reason in err. */
int ws_lws_ca_check(const char *path, char *err, size_t size);

/* LWS_CALLBACK_OPENSSL_LOAD_EXTRA_CLIENT_VERIFY_CERTS, which lws sends
 * while ws_lws_vhost() creates a vhost: without ca_file, trust the
 * system's CA directory, looked up lazily (ssl_ctx is the vhost's
 * SSL_CTX). Does not fail: a missing directory shows as certificate
 * errors. */
void ws_lws_verify_certs(void *ssl_ctx);

#endif
