/*
 * curl_uv - libcurl's multi interface driven by a libuv loop, for plugins
 * that make HTTP requests without ever blocking vigil's loop.
 *
 * Provides a driver (struct curl_uv): one CURLM, one uv_timer for the
 * timeout curl asks for (CURLMOPT_TIMERFUNCTION) and one uv_poll per
 * socket curl wants watched (CURLMOPT_SOCKETFUNCTION), which together
 * call curl_multi_socket_action(). Transfers are easy handles the caller
 * owns and configures; curl_uv_start() adds one, and its callback runs on
 * the loop when it is done, with the CURLcode and the timings. Name
 * resolution uses curl's default resolver, which in Debian's build is
 * the threaded one, so it does not block the loop either.
 *
 * Uses libcurl and libuv. This file is compiled into each plugin that
 * uses it (a plugin links nothing from the core or other plugins); like
 * every plugin symbol its functions are hidden. All calls are made on
 * the loop's thread.
 *
 * Ownership: the driver owns its CURLM, its timer and a small context per
 * socket; the caller owns each easy handle and the struct curl_uv_xfer
 * that carries it, which must stay valid while the transfer runs.
 * curl_uv_close() cancels what runs, closes every uv handle and frees the
 * driver in the last close callback, so the loop must run once more
 * after it (vigil runs it until all close callbacks are done before it
 * calls a plugin's destroy()).
 *
 * libcurl's global state: curl_uv_global_init() before the first driver
 * or easy handle (in a plugin's init(): vigil calls it on the loop thread
 * before other threads use libcurl), curl_uv_global_cleanup() once per
 * successful init, after the last easy handle is gone.
 */
#ifndef CURL_UV_H
#define CURL_UV_H

#include <stdint.h>

#include <curl/curl.h>
#include <uv.h>
#include <vigil/plugin.h>

struct curl_uv;
struct curl_uv_xfer;

/* Timings of a finished transfer, in microseconds, each cumulative from
 * the start as curl reports them (CURLINFO_*_TIME_T): the DNS phase is
 * namelookup, TCP connect - namelookup, TLS appconnect - connect (0 for
 * plain HTTP), the server starttransfer - pretransfer, the download
 * total - starttransfer. */
struct curl_uv_times {
    int64_t namelookup_us;
    int64_t connect_us;
    int64_t appconnect_us;
    int64_t pretransfer_us;
    int64_t starttransfer_us;
    int64_t total_us;
    long http_status;  /* last response's status, 0 if none */
    long num_connects; /* new connections made (0: one was reused) */
};

/* Called on the loop when a transfer ends: result is curl's code
 * (CURLE_OK when the transfer itself worked, whatever the HTTP status).
 * The easy handle is no longer in the driver: the callback may start it
 * again, or another. It must not call curl_uv_close(). */
typedef void (*curl_uv_done_cb)(struct curl_uv_xfer *x, CURLcode result,
                                const struct curl_uv_times *t);

/* One transfer. The caller sets easy, done_cb and data; the rest is the
 * driver's. */
struct curl_uv_xfer {
    CURL *easy;              /* borrowed; configured by the caller */
    curl_uv_done_cb done_cb; /* required */
    void *data;              /* the caller's */
    /* Private to the driver. */
    struct curl_uv *cu;
    int active;
    struct curl_uv_xfer *prev, *next;
};

/* Initialise libcurl's global state once per plugin module (counted).
 * Returns 0, or a negative VIGIL_E* code. */
int curl_uv_global_init(void);

/* Undo one successful curl_uv_global_init(). Does not fail. */
void curl_uv_global_cleanup(void);

/* The options every vigil HTTP client sets the same way: the URL, only
 * http and https, the timeout for the whole transfer and its connect, no
 * signals, TLS verification (on unless tls_verify is 0) and an optional CA
 * file. Returns the first CURLcode that is not CURLE_OK. */
CURLcode curl_uv_easy_defaults(CURL *e, const char *url, int64_t timeout_ms,
                               int tls_verify, const char *ca_file);

/* Create a driver on loop. Returns 0 and sets *out, or VIGIL_ENOMEM /
 * VIGIL_EIO (*out NULL). */
int curl_uv_create(uv_loop_t *loop, struct curl_uv **out);

/* Start x. Sets CURLOPT_PRIVATE (to x), CURLOPT_NOSIGNAL and, where
 * libcurl has it, CURLOPT_QUICK_EXIT (so that giving up on a transfer
 * whose name is still resolving never waits for the resolver thread) on
 * x->easy. Returns 0, VIGIL_EBUSY if x is running, VIGIL_ESTATE if the
 * driver is closing, VIGIL_EIO if curl refused it. */
int curl_uv_start(struct curl_uv *cu, struct curl_uv_xfer *x);

/* Stop x if it runs, without calling its callback. Does not fail. */
void curl_uv_cancel(struct curl_uv_xfer *x);

/* Is x running? */
int curl_uv_active(const struct curl_uv_xfer *x);

/* Cancel every transfer (no callbacks), close every uv handle and free
 * the driver once their close callbacks have run. NULL is fine. */
void curl_uv_close(struct curl_uv *cu);

/* Check that url is an http:// or https:// URL and write it without
 * user and password into shown (for messages); 0, VIGIL_ECONFIG after
 * logging why ("cannot be <what>" names the plugin's use of it), or
 * VIGIL_ENOMEM. */
int curl_uv_url_shown(const struct vigil_host *host, vigil_instance *inst,
                      const char *url, const char *what, char *shown,
                      size_t size);

#endif /* CURL_UV_H */
