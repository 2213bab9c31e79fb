/* webhook - JSON POSTs with retries, on the loop. */
#include "webhook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "curl_uv.h"
#include <vigil/plugin.h>

#define HOOK_BODY_MAX 4096
#define HOOK_HEADERS_MAX 16

struct hook_req {
    struct hook_mgr *h;
    struct curl_uv_xfer x;
    struct curl_slist *headers;
    char *url, *body;
    int64_t timeout_ms;
    unsigned tries_left, attempts;
    uv_timer_t retry;
    int retry_open;
    char answer[HOOK_BODY_MAX + 1];
    size_t answer_len;
    char error[256];
    long status;
    hook_done_cb cb;
    void *arg;
    struct hook_req *next;
};

struct hook_mgr {
    struct curl_uv *cu;
    uv_loop_t *loop;
    struct hook_req *reqs;
    int closing, global;
};

static size_t on_answer(char *p, size_t size, size_t n, void *arg)
{
    struct hook_req *r = arg;
    size_t len = size * n, room = HOOK_BODY_MAX - r->answer_len;

    memcpy(r->answer + r->answer_len, p, len < room ? len : room);
    r->answer_len += len < room ? len : room;
    return len; /* the rest is dropped, not refused */
}

static void req_free(uv_handle_t *h)
{
    struct hook_req *r = h->data;

    curl_easy_cleanup(r->x.easy);
    curl_slist_free_all(r->headers);
    free(r->url);
    free(r->body);
    free(r);
}

/* Report and forget the request. */
static void req_finish(struct hook_req *r, int ok)
{
    struct hook_mgr *h = r->h;
    struct hook_result res = {.ok = ok,
                              .http_status = r->status,
                              .attempts = r->attempts,
                              .error = ok ? NULL : r->error,
                              .body = r->answer};

    for (struct hook_req **p = &h->reqs; *p != NULL; p = &(*p)->next) {
        if (*p == r) {
            *p = r->next;
            break;
        }
    }
    r->answer[r->answer_len] = '\0';
    r->cb(r->arg, &res);
    uv_close((uv_handle_t *)&r->retry, req_free);
}

static int req_send(struct hook_req *r);

static void on_retry(uv_timer_t *t)
{
    struct hook_req *r = t->data;

    if (req_send(r) != 0) {
        req_finish(r, 0);
    }
}

static void on_done(struct curl_uv_xfer *x, CURLcode rc,
                    const struct curl_uv_times *t)
{
    struct hook_req *r = x->data;
    int retryable;

    r->status = t->http_status;
    if (rc != CURLE_OK) {
        snprintf(r->error, sizeof(r->error), "%s: %s", r->url,
                 curl_easy_strerror(rc));
        retryable = 1;
    } else if (r->status < 200 || r->status >= 300) {
        snprintf(r->error, sizeof(r->error), "%s: HTTP %ld", r->url, r->status);
        retryable = r->status >= 500;
    } else {
        req_finish(r, 1);
        return;
    }
    if (!retryable || r->tries_left == 0 || r->h->closing) {
        req_finish(r, 0);
        return;
    }
    /* 1 s, 2 s, 4 s...: give a restarting receiver time. */
    uint64_t delay = 1000ULL << (r->attempts - 1 < 6 ? r->attempts - 1 : 6);
    r->tries_left--;
    uv_timer_start(&r->retry, on_retry, delay, 0);
}

static int req_send(struct hook_req *r)
{
    r->attempts++;
    r->answer_len = 0;
    r->status = 0;
    return curl_uv_start(r->h->cu, &r->x);
}

int hook_post(struct hook_mgr *h, const char *url, const char *body,
              const char *const *headers, int64_t timeout_ms, unsigned retries,
              hook_done_cb cb, void *arg)
{
    struct hook_req *r;

    if (h->closing) {
        return VIGIL_ESTATE;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL || (r->url = strdup(url)) == NULL ||
        (r->body = strdup(body)) == NULL ||
        (r->x.easy = curl_easy_init()) == NULL) {
        goto fail;
    }
    r->headers = curl_slist_append(NULL, "Content-Type: application/json");
    for (int i = 0; headers != NULL && headers[i] && i < HOOK_HEADERS_MAX;
         i++) {
        struct curl_slist *l = curl_slist_append(r->headers, headers[i]);
        if (l == NULL) {
            goto fail;
        }
        r->headers = l;
    }
    CURL *e = r->x.easy;
    if (curl_uv_easy_defaults(e, r->url, timeout_ms, 1, NULL) != CURLE_OK) {
        goto fail;
    }
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_answer);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "vigil");
    r->x.done_cb = on_done;
    r->x.data = r;
    r->h = h;
    r->cb = cb;
    r->arg = arg;
    r->tries_left = retries;
    uv_timer_init(h->loop, &r->retry);
    r->retry.data = r;
    r->next = h->reqs;
    h->reqs = r;
    if (req_send(r) != 0) {
        snprintf(r->error, sizeof(r->error), "%s: curl refused the request",
                 url);
        req_finish(r, 0);
    }
    return 0;
fail:
    if (r != NULL) {
        curl_easy_cleanup(r->x.easy);
        curl_slist_free_all(r->headers);
        free(r->url);
        free(r->body);
        free(r);
    }
    return VIGIL_ENOMEM;
}

int hook_create(uv_loop_t *loop, struct hook_mgr **out)
{
    struct hook_mgr *h = calloc(1, sizeof(*h));

    *out = NULL;
    if (h == NULL) {
        return VIGIL_ENOMEM;
    }
    h->loop = loop;
    if (curl_uv_global_init() != 0) {
        free(h);
        return VIGIL_EIO;
    }
    h->global = 1;
    if (curl_uv_create(loop, &h->cu) != 0) {
        curl_uv_global_cleanup();
        free(h);
        return VIGIL_EIO;
    }
    *out = h;
    return 0;
}

void hook_close(struct hook_mgr *h)
{
    if (h == NULL || h->closing) {
        return;
    }
    h->closing = 1;
    while (h->reqs != NULL) {
        struct hook_req *r = h->reqs;
        curl_uv_cancel(&r->x);
        uv_timer_stop(&r->retry);
        snprintf(r->error, sizeof(r->error), "%s: vigil is stopping", r->url);
        req_finish(r, 0); /* unlinks r */
    }
    curl_uv_close(h->cu);
    /* The easy handles go in the close callbacks; libcurl's global state
     * stays until the process ends (cheap, and safe against late frees). */
    free(h);
}
