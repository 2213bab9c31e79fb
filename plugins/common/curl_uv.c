/*
 * curl_uv.c - libcurl multi_socket_action on a libuv loop; see curl_uv.h.
 *
 * The recipe (shared/notes/integration.md, section 2): curl tells us
 * which sockets to watch through the socket callback and when to wake it
 * through the timer callback; we never call libcurl from inside either.
 * uv_poll events and timer expiries call curl_multi_socket_action(),
 * after which finished transfers are read with curl_multi_info_read().
 * Socket contexts and the driver are freed only in uv close callbacks.
 */
#include "curl_uv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vigil/plugin.h>

/* A socket curl asked us to watch. */
struct curl_uv_sock {
    uv_poll_t poll;
    curl_socket_t fd;
    int events; /* what the poll handle watches now */
    struct curl_uv *cu;
    struct curl_uv_sock *prev, *next;
};

struct curl_uv {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    struct curl_uv_sock *socks; /* open poll handles */
    struct curl_uv_xfer *xfers; /* running transfers */
    unsigned handles;           /* uv handles not yet closed */
    int closing;
};

/* Successful curl_global_init() calls of this plugin module. */
static unsigned curl_uv_inits;

int curl_uv_global_init(void)
{
    if (curl_uv_inits == 0 && curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        return VIGIL_EIO;
    }
    curl_uv_inits++;
    return 0;
}

void curl_uv_global_cleanup(void)
{
    if (curl_uv_inits > 0 && --curl_uv_inits == 0) {
        curl_global_cleanup();
    }
}

/* A uv handle of cu is closed; the last one frees cu. */
static void curl_uv_release(struct curl_uv *cu)
{
    if (--cu->handles == 0 && cu->closing) {
        free(cu);
    }
}

static void curl_uv_sock_closed(uv_handle_t *h)
{
    struct curl_uv_sock *s = h->data;
    struct curl_uv *cu = s->cu;

    free(s);
    curl_uv_release(cu);
}

static void curl_uv_timer_closed(uv_handle_t *h)
{
    curl_uv_release(h->data);
}

/* Stop watching s and close it; freed in its close callback. */
static void curl_uv_sock_close(struct curl_uv *cu, struct curl_uv_sock *s)
{
    if (s->prev != NULL) {
        s->prev->next = s->next;
    } else {
        cu->socks = s->next;
    }
    if (s->next != NULL) {
        s->next->prev = s->prev;
    }
    s->prev = s->next = NULL;
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, curl_uv_sock_closed);
}

static void curl_uv_unlink(struct curl_uv_xfer *x)
{
    struct curl_uv *cu = x->cu;

    if (x->prev != NULL) {
        x->prev->next = x->next;
    } else {
        cu->xfers = x->next;
    }
    if (x->next != NULL) {
        x->next->prev = x->prev;
    }
    x->prev = x->next = NULL;
    x->active = 0;
}

static int64_t curl_uv_time(CURL *e, CURLINFO what)
{
    curl_off_t v = 0;

    if (curl_easy_getinfo(e, what, &v) != CURLE_OK) {
        return 0;
    }
    return (int64_t)v;
}

/* Hand every finished transfer to its callback. */
static void curl_uv_drain(struct curl_uv *cu)
{
    CURLMsg *msg;
    int left;

    while (!cu->closing && (msg = curl_multi_info_read(cu->multi, &left))) {
        struct curl_uv_xfer *x = NULL;
        struct curl_uv_times t = {0};
        CURL *e = msg->easy_handle;
        CURLcode result;

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        result = msg->data.result; /* msg is invalid after remove */
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
        t.namelookup_us = curl_uv_time(e, CURLINFO_NAMELOOKUP_TIME_T);
        t.connect_us = curl_uv_time(e, CURLINFO_CONNECT_TIME_T);
        t.appconnect_us = curl_uv_time(e, CURLINFO_APPCONNECT_TIME_T);
        t.pretransfer_us = curl_uv_time(e, CURLINFO_PRETRANSFER_TIME_T);
        t.starttransfer_us = curl_uv_time(e, CURLINFO_STARTTRANSFER_TIME_T);
        t.total_us = curl_uv_time(e, CURLINFO_TOTAL_TIME_T);
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &t.http_status);
        curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &t.num_connects);
        curl_multi_remove_handle(cu->multi, e);
        if (x == NULL) {
            continue; /* not ours: cannot happen */
        }
        curl_uv_unlink(x);
        x->done_cb(x, result, &t);
    }
}

static void curl_uv_on_poll(uv_poll_t *h, int status, int events)
{
    struct curl_uv_sock *s = h->data;
    struct curl_uv *cu = s->cu;
    int flags = 0, running;

    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        flags |= (events & UV_READABLE) ? CURL_CSELECT_IN : 0;
        flags |= (events & UV_WRITABLE) ? CURL_CSELECT_OUT : 0;
    }
    /* s may be closed inside (CURL_POLL_REMOVE); it is freed only in its
     * close callback, so reading fd first is all the care needed. */
    curl_multi_socket_action(cu->multi, s->fd, flags, &running);
    curl_uv_drain(cu);
}

static void curl_uv_on_timeout(uv_timer_t *t)
{
    struct curl_uv *cu = t->data;
    int running;

    curl_multi_socket_action(cu->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    curl_uv_drain(cu);
}

/* CURLMOPT_TIMERFUNCTION: arm or stop our timer; never calls libcurl. */
static int curl_uv_timer_cb(CURLM *multi, long ms, void *userp)
{
    struct curl_uv *cu = userp;

    (void)multi;
    if (cu->closing) {
        return 0;
    }
    if (ms < 0) {
        uv_timer_stop(&cu->timer);
    } else {
        uv_timer_start(&cu->timer, curl_uv_on_timeout, (uint64_t)ms, 0);
    }
    return 0;
}

/* CURLMOPT_SOCKETFUNCTION: watch s for what curl wants. */
static int curl_uv_sock_cb(CURL *e, curl_socket_t fd, int what, void *userp,
                           void *socketp)
{
    struct curl_uv *cu = userp;
    struct curl_uv_sock *s = socketp;
    int events = 0;

    (void)e;
    if (cu->closing) {
        return 0; /* every poll handle is already closed */
    }
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            curl_uv_sock_close(cu, s);
            curl_multi_assign(cu->multi, fd, NULL);
        }
        return 0;
    }
    if (s == NULL) {
        s = calloc(1, sizeof(*s));
        if (s == NULL) {
            return -1;
        }
        /* Fails with UV_EEXIST if some other poll handle watches fd. */
        if (uv_poll_init_socket(cu->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->fd = fd;
        s->cu = cu;
        s->poll.data = s;
        s->next = cu->socks;
        if (cu->socks != NULL) {
            cu->socks->prev = s;
        }
        cu->socks = s;
        cu->handles++;
        curl_multi_assign(cu->multi, fd, s);
    }
    events |= (what & CURL_POLL_IN) ? UV_READABLE : 0;
    events |= (what & CURL_POLL_OUT) ? UV_WRITABLE : 0;
    /* curl repeats its interest often; an unchanged one needs no
     * epoll_ctl. uv_poll_start re-arms for a changed one. */
    if (events == s->events) {
        return 0;
    }
    if (uv_poll_start(&s->poll, events, curl_uv_on_poll) != 0) {
        return -1;
    }
    s->events = events;
    return 0;
}

int curl_uv_create(uv_loop_t *loop, struct curl_uv **out)
{
    struct curl_uv *cu;

    *out = NULL;
    cu = calloc(1, sizeof(*cu));
    if (cu == NULL) {
        return VIGIL_ENOMEM;
    }
    cu->loop = loop;
    cu->multi = curl_multi_init();
    if (cu->multi == NULL) {
        free(cu);
        return VIGIL_ENOMEM;
    }
    if (uv_timer_init(loop, &cu->timer) != 0) {
        curl_multi_cleanup(cu->multi);
        free(cu);
        return VIGIL_EIO;
    }
    cu->timer.data = cu;
    cu->handles = 1;
    curl_multi_setopt(cu->multi, CURLMOPT_SOCKETFUNCTION, curl_uv_sock_cb);
    curl_multi_setopt(cu->multi, CURLMOPT_SOCKETDATA, cu);
    curl_multi_setopt(cu->multi, CURLMOPT_TIMERFUNCTION, curl_uv_timer_cb);
    curl_multi_setopt(cu->multi, CURLMOPT_TIMERDATA, cu);
    *out = cu;
    return 0;
}

int curl_uv_start(struct curl_uv *cu, struct curl_uv_xfer *x)
{
    if (x->active) {
        return VIGIL_EBUSY;
    }
    if (cu->closing) {
        return VIGIL_ESTATE;
    }
    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, (void *)x);
    curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075700 /* 7.87.0 */
    curl_easy_setopt(x->easy, CURLOPT_QUICK_EXIT, 1L);
#endif
    x->cu = cu;
    /* Calls the timer callback (timeout 0): the transfer starts on the
     * next loop iteration, never inside this call. */
    if (curl_multi_add_handle(cu->multi, x->easy) != CURLM_OK) {
        return VIGIL_EIO;
    }
    x->active = 1;
    x->prev = NULL;
    x->next = cu->xfers;
    if (cu->xfers != NULL) {
        cu->xfers->prev = x;
    }
    cu->xfers = x;
    return 0;
}

void curl_uv_cancel(struct curl_uv_xfer *x)
{
    if (!x->active) {
        return;
    }
    /* May call the socket callback with CURL_POLL_REMOVE. */
    curl_multi_remove_handle(x->cu->multi, x->easy);
    curl_uv_unlink(x);
}

int curl_uv_active(const struct curl_uv_xfer *x)
{
    return x->active;
}

void curl_uv_close(struct curl_uv *cu)
{
    if (cu == NULL) {
        return;
    }
    while (cu->xfers != NULL) {
        curl_uv_cancel(cu->xfers);
    }
    /* Stop watching every socket before curl closes them. */
    while (cu->socks != NULL) {
        curl_uv_sock_close(cu, cu->socks);
    }
    cu->closing = 1;
    uv_timer_stop(&cu->timer);
    uv_close((uv_handle_t *)&cu->timer, curl_uv_timer_closed);
    /* Closes the cached connections; the callbacks see `closing`. */
    curl_multi_cleanup(cu->multi);
    cu->multi = NULL;
}

CURLcode curl_uv_easy_defaults(CURL *e, const char *url, int64_t timeout_ms,
                               int tls_verify, const char *ca_file)
{
    CURLcode c = curl_easy_setopt(e, CURLOPT_URL, url);

    if (c == CURLE_OK) {
        c = curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    }
    if (c == CURLE_OK) {
        c = curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    }
    if (c == CURLE_OK) {
        c = curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
    }
    if (c == CURLE_OK) {
        c = curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    }
    if (c == CURLE_OK) {
        c = curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, tls_verify ? 1L : 0L);
    }
    if (c == CURLE_OK) {
        c = curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, tls_verify ? 2L : 0L);
    }
    if (c == CURLE_OK && ca_file != NULL) {
        c = curl_easy_setopt(e, CURLOPT_CAINFO, ca_file);
    }
    return c;
}

int curl_uv_url_shown(const struct vigil_host *host, vigil_instance *inst,
                      const char *url, const char *what, char *shown,
                      size_t size)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *text = NULL;
    CURLUcode uc;
    int rc = VIGIL_ECONFIG;

    if (u == NULL) {
        host->log(inst, VIGIL_LOG_ERROR, "out of memory");
        return VIGIL_ENOMEM;
    }
    uc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (uc != CURLUE_OK) {
        /* The core's log redacts a password in the URL. */
        host->log(inst, VIGIL_LOG_ERROR, "url '%s': %s", url,
                  curl_url_strerror(uc));
        goto out;
    }
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
        host->log(inst, VIGIL_LOG_ERROR,
                  "url: only http:// and https:// can be %s", what);
        goto out;
    }
    curl_url_set(u, CURLUPART_USER, NULL, 0);
    curl_url_set(u, CURLUPART_PASSWORD, NULL, 0);
    if (curl_url_get(u, CURLUPART_URL, &text, 0) != CURLUE_OK) {
        host->log(inst, VIGIL_LOG_ERROR, "url: cannot be read back");
        goto out;
    }
    snprintf(shown, size, "%s", text);
    rc = 0;
out:
    curl_free(scheme);
    curl_free(text);
    curl_url_cleanup(u);
    return rc;
}
