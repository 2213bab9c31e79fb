/*
 * webhook - POST a JSON document to a URL, for runbooks' webhook actions, with
 * libcurl on the loop (plugins/common/curl_uv.c): never blocks, retries
 * transport errors and 5xx answers with backoff (1 s, 2 s, 4 s...), and
 * reports once, after the last try. TLS is verified.
 */
#ifndef VIGIL_WEBHOOK_H
#define VIGIL_WEBHOOK_H

#include <stdint.h>
#include <uv.h>

struct hook_mgr;

struct hook_result {
    int ok;           /* a 2xx answer */
    long http_status; /* last answer's status, 0 if none */
    unsigned attempts;
    const char *error; /* the last failure, for people; NULL when ok */
    const char *body;  /* the answer, capped; "" if none */
};

typedef void (*hook_done_cb)(void *arg, const struct hook_result *r);

/* Returns 0, or VIGIL_EIO when libcurl cannot start. */
int hook_create(uv_loop_t *loop, struct hook_mgr **out);

/* Cancel what runs (callbacks report the cancel) and close; the loop must
 * run afterwards for the close callbacks. Accepts NULL. */
void hook_close(struct hook_mgr *h);

/* POST body (copied) to url with Content-Type: application/json and the
 * given extra headers (NULL-terminated "Name: value" strings; may be
 * NULL). retries: tries after the first. cb runs exactly once. Returns 0
 * or VIGIL_ENOMEM / VIGIL_ESTATE (then cb is not called). */
int hook_post(struct hook_mgr *h, const char *url, const char *body,
              const char *const *headers, int64_t timeout_ms, unsigned retries,
              hook_done_cb cb, void *arg);

#endif
