/* ws_conn - one kept-alive, measured WebSocket client connection. */
#include "ws_conn.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/x509.h>

#include <vigil/plugin.h>

#include "ws_backoff.h"
#include "ws_lws.h"

const char *const ws_err_names[WS_NERR] = {
    [WS_ERR_DNS] = "dns",
    [WS_ERR_REFUSED] = "refused",
    [WS_ERR_TIMEOUT] = "timeout",
    [WS_ERR_TLS] = "tls",
    [WS_ERR_HANDSHAKE] = "handshake",
    [WS_ERR_PONG_TIMEOUT] = "pong_timeout",
    [WS_ERR_CLOSED] = "closed",
    [WS_ERR_OTHER] = "other",
};

enum {
    WS_S_IDLE,       /* not started, or given up (no reconnection) */
    WS_S_RESOLVING,  /* uv_getaddrinfo running */
    WS_S_CONNECTING, /* lws connecting: TCP, TLS, upgrade */
    WS_S_OPEN,       /* the WebSocket is up */
    WS_S_WAITING,    /* backing off before the next attempt */
};

#define WS_PING_LEN 16 /* sequence number + uv_hrtime() at sending */

static void ws_conn_attempt(struct ws_conn *c);
static void ws_conn_connect(struct ws_conn *c);

/* After ws_conn_close(): once the timers are closed and no lookup runs,
 * hand c back to its owner. */
static void ws_conn_maybe_closed(struct ws_conn *c)
{
    if (!c->closing || c->handles > 0 || c->resolving) {
        return;
    }
    free(c->sub_buf);
    c->sub_buf = NULL;
    if (c->closed_cb != NULL) {
        c->closed_cb(c);
    }
}

/* Forget wsi: later lws callbacks for it find no connection. kill asks lws
 * to close it; not when lws is already closing it (in its callbacks). */
static void ws_conn_detach(struct ws_conn *c, struct lws *wsi, int kill)
{
    if (wsi != NULL) {
        lws_set_opaque_user_data(wsi, NULL);
        if (kill) {
            lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        }
    }
    c->wsi = NULL;
}

static void ws_conn_on_step(uv_timer_t *t);
static void ws_conn_on_deadline(uv_timer_t *t);

/* The attempt or the connection failed: report it, then back off and try
 * again, unless this connection does not reconnect. */
static void ws_conn_fail(struct ws_conn *c, struct lws *wsi, int kill,
                         int err_class, const char *fmt, ...)
    VIGIL_PRINTF(5, 6);

static void ws_conn_fail(struct ws_conn *c, struct lws *wsi, int kill,
                         int err_class, const char *fmt, ...)
{
    int64_t delay = 0;
    va_list ap;

    c->fails++;
    ws_conn_detach(c, wsi, kill);
    /* Another address of the same name may answer (localhost is ::1 and
     * 127.0.0.1): try it on the next loop turn (not from inside lws's
     * callback), within the same attempt and deadline. */
    if (c->state == WS_S_CONNECTING && err_class == WS_ERR_REFUSED &&
        c->iaddr + 1 < c->naddrs) {
        c->iaddr++;
        uv_timer_start(&c->step, ws_conn_on_step, 0, 0);
        return;
    }
    uv_timer_stop(&c->step);
    uv_timer_stop(&c->deadline);
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof(c->why), fmt, ap);
    va_end(ap);
    c->open = 0;
    c->ping_out = c->want_ping = c->want_sub = 0;
    c->state = c->p.reconnect_min_ms > 0 ? WS_S_WAITING : WS_S_IDLE;
    if (c->state == WS_S_WAITING) {
        delay = ws_backoff_ms(c->failures, c->p.reconnect_min_ms,
                              c->p.reconnect_max_ms, ws_backoff_rand(&c->rnd));
        c->failures++;
    }
    if (c->on_down != NULL) {
        c->on_down(c, err_class);
    }
    if (!c->closing && c->state == WS_S_WAITING) {
        uv_timer_start(&c->step, ws_conn_on_step, (uint64_t)delay, 0);
    }
}

/* Sort a failed connection into our classes. lws 4.1 gives only a
 * sentence ("closed before established" for a refused connect), so the
 * socket's own error comes first, then lws's wording. */
static int ws_conn_classify(struct lws *wsi, const char *in, int *so_error)
{
    socklen_t len = sizeof(*so_error);
    int fd = lws_get_socket_fd(wsi);

    *so_error = 0;
    if (fd >= 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, so_error, &len) != 0) {
        *so_error = 0;
    }
    switch (*so_error) {
    case 0:
        break;
    case ECONNREFUSED:
        return WS_ERR_REFUSED;
    case ETIMEDOUT:
        return WS_ERR_TIMEOUT;
    default:
        return WS_ERR_OTHER;
    }
    if (in == NULL) {
        return WS_ERR_OTHER;
    }
    if (strcasestr(in, "ssl") != NULL || strcasestr(in, "tls") != NULL) {
        return WS_ERR_TLS;
    }
    if (strncmp(in, "HS:", 3) == 0) {
        return WS_ERR_HANDSHAKE;
    }
    if (strcasestr(in, "timeout") != NULL ||
        strcasestr(in, "timed out") != NULL) {
        return WS_ERR_TIMEOUT;
    }
    return WS_ERR_OTHER;
}

/* CLIENT_CONNECTION_ERROR: say why in the best words we have. */
static void ws_conn_on_error(struct ws_conn *c, struct lws *wsi, const char *in)
{
    int so_error, cls = ws_conn_classify(wsi, in, &so_error);
    const char *why = in != NULL ? in : "failed";

    if (so_error != 0) {
        why = strerror(so_error);
    } else if (cls == WS_ERR_TLS && c->tls_err[0] != '\0') {
        why = c->tls_err; /* lws's own words are "SSL err 1" */
    }
    ws_conn_fail(c, wsi, 0, cls, "cannot connect to %s port %d: %s",
                 c->addrs[c->iaddr], c->p.url.port, why);
}

/* The certificate check failed (preverify_ok is 0): keep OpenSSL's first
 * reason for the connection error that follows (OpenSSL may call again
 * for the same chain with nothing new to say). */
static void ws_conn_on_verify(struct ws_conn *c, void *x509_ctx,
                              size_t preverify_ok)
{
    int err = X509_STORE_CTX_get_error((X509_STORE_CTX *)x509_ctx);

    if (preverify_ok || err == X509_V_OK || c->tls_err[0] != '\0') {
        return;
    }
    snprintf(c->tls_err, sizeof(c->tls_err), "TLS certificate: %s",
             X509_verify_cert_error_string(err));
}

static void ws_conn_request_ping(struct ws_conn *c)
{
    c->want_ping = 1;
    c->ping_out = 1;
    c->ping_seq++;
    /* From the request, not the write: a peer that stopped reading can
     * keep the socket from becoming writable, and that is late too. */
    uv_timer_start(&c->deadline, ws_conn_on_deadline,
                   (uint64_t)c->p.pong_timeout_ms, 0);
    lws_callback_on_writable(c->wsi);
}

/* `deadline`: give up on the current thing. */
static void ws_conn_on_deadline(uv_timer_t *t)
{
    struct ws_conn *c = t->data;

    if (c->state == WS_S_OPEN) {
        ws_conn_fail(c, c->wsi, 1, WS_ERR_PONG_TIMEOUT,
                     "no pong within %lld ms", (long long)c->p.pong_timeout_ms);
        return;
    }
    if (c->state == WS_S_RESOLVING) {
        /* Its callback ignores it, unless the next attempt has begun
         * by then: that one takes its answer. */
        uv_cancel((uv_req_t *)&c->gai);
    }
    ws_conn_fail(c, c->wsi, 1, WS_ERR_TIMEOUT, "not connected within %lld ms",
                 (long long)c->p.connect_timeout_ms);
}

/* `step`: the next thing to do, by state. */
static void ws_conn_on_step(uv_timer_t *t)
{
    struct ws_conn *c = t->data;

    switch (c->state) {
    case WS_S_OPEN:
        ws_conn_request_ping(c);
        break;
    case WS_S_CONNECTING: /* the next address */
        ws_conn_connect(c);
        break;
    case WS_S_WAITING:
        c->reconnects++;
        ws_conn_attempt(c);
        break;
    default:
        break;
    }
}

static void ws_conn_connect(struct ws_conn *c)
{
    struct lws_client_connect_info ci;
    struct lws *wsi;
    unsigned fails;

    memset(&ci, 0, sizeof(ci));
    ci.context = ws_lws_context();
    ci.vhost = c->p.vhost;
    ci.address = c->addrs[c->iaddr];
    ci.port = c->p.url.port;
    ci.path = c->p.url.path;
    ci.host = c->host_header; /* also the TLS name (SNI, certificate) */
    ci.protocol = c->p.subprotocol;
    ci.local_protocol_name = ws_conn_protocols[0].name;
    ci.opaque_user_data = c;
    if (c->p.url.tls) {
        ci.ssl_connection = LCCSCF_USE_SSL;
        if (!c->p.tls_verify) {
            ci.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED |
                                 LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                                 LCCSCF_ALLOW_EXPIRED | LCCSCF_ALLOW_INSECURE;
        }
        /* WebSocket over HTTP/2 is rare on servers: ask for 1.1. */
        ci.alpn = "http/1.1";
    }
    c->state = WS_S_CONNECTING;
    c->tls_err[0] = '\0';
    c->t_connect = uv_hrtime();
    fails = c->fails;
    wsi = lws_client_connect_via_info(&ci);
    /* lws may already have failed the attempt inside that call, through
     * CLIENT_CONNECTION_ERROR, and ws_conn_fail() took it from there. */
    if (c->fails != fails || c->closing) {
        return;
    }
    if (wsi == NULL) {
        ws_conn_fail(c, NULL, 0, WS_ERR_OTHER,
                     "libwebsockets cannot start a connection to %s",
                     ci.address);
        return;
    }
    c->wsi = wsi;
}

static void ws_conn_resolve(struct ws_conn *c);

/* Keep the addresses of res (up to WS_CONN_ADDRS_MAX) as text, the form
 * lws takes them in. */
static void ws_conn_keep_addrs(struct ws_conn *c, const struct addrinfo *res)
{
    const struct addrinfo *ai;

    c->naddrs = 0;
    c->iaddr = 0;
    for (ai = res; ai != NULL && c->naddrs < WS_CONN_ADDRS_MAX;
         ai = ai->ai_next) {
        char *a = c->addrs[c->naddrs];

        if (ai->ai_family == AF_INET &&
            uv_ip4_name((struct sockaddr_in *)ai->ai_addr, a, 48) == 0) {
            c->naddrs++;
        } else if (ai->ai_family == AF_INET6 &&
                   uv_ip6_name((struct sockaddr_in6 *)ai->ai_addr, a, 48) ==
                       0) {
            c->naddrs++;
        }
    }
}

static void ws_conn_on_resolved(uv_getaddrinfo_t *req, int status,
                                struct addrinfo *res)
{
    struct ws_conn *c = req->data;

    c->resolving = 0;
    if (c->closing || c->state != WS_S_RESOLVING) {
        /* Given up on (timeout) and no new attempt waits for it. */
        uv_freeaddrinfo(res);
        ws_conn_maybe_closed(c);
        return;
    }
    if (status == UV_EAI_CANCELED) {
        /* The lookup of an attempt that timed out, canceled after the
         * next attempt began waiting for it: look up again. */
        ws_conn_resolve(c);
        return;
    }
    if (status != 0) {
        ws_conn_fail(c, NULL, 0, WS_ERR_DNS, "cannot resolve %s: %s",
                     c->p.url.host, uv_strerror(status));
        return;
    }
    ws_conn_keep_addrs(c, res);
    uv_freeaddrinfo(res);
    if (c->naddrs == 0) {
        ws_conn_fail(c, NULL, 0, WS_ERR_DNS, "%s has no address",
                     c->p.url.host);
        return;
    }
    ws_conn_connect(c);
}

static void ws_conn_resolve(struct ws_conn *c)
{
    struct addrinfo hints;
    char port[8];
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof(port), "%d", c->p.url.port);
    rc = uv_getaddrinfo(c->loop, &c->gai, ws_conn_on_resolved, c->p.url.host,
                        port, &hints);
    if (rc != 0) {
        ws_conn_fail(c, NULL, 0, WS_ERR_DNS, "cannot resolve %s: %s",
                     c->p.url.host, uv_strerror(rc));
        return;
    }
    c->resolving = 1;
}

/* One attempt: resolve (on the thread pool), then connect; the deadline
 * covers both. */
static void ws_conn_attempt(struct ws_conn *c)
{
    c->state = WS_S_RESOLVING;
    uv_timer_start(&c->deadline, ws_conn_on_deadline,
                   (uint64_t)c->p.connect_timeout_ms, 0);
    /* A lookup that outlived its attempt's deadline (a slow resolver) is
     * still running in the pool: this attempt takes its answer rather
     * than reuse the request under it. */
    if (!c->resolving) {
        ws_conn_resolve(c);
    }
}

/* ------------------------------------------------------------------------
 * lws callbacks.
 */

static void ws_conn_on_open(struct ws_conn *c, struct lws *wsi)
{
    double ms = (double)(uv_hrtime() - c->t_connect) / 1e6;

    c->wsi = wsi;
    c->state = WS_S_OPEN;
    c->open = 1;
    uv_timer_stop(&c->deadline);
    c->want_sub = c->p.subscribe != NULL;
    /* The first ping at once: an RTT as soon as we are connected. */
    ws_conn_request_ping(c);
    if (c->on_open != NULL) {
        c->on_open(c, ms);
    }
}

static void ws_conn_on_pong(struct ws_conn *c, const void *in, size_t len)
{
    uint64_t seq, t0;
    double ms;

    /* Unsolicited pongs (some servers send them as heartbeats) and late
     * answers to a ping already given up on are not ours to time. */
    if (!c->ping_out || len != WS_PING_LEN) {
        return;
    }
    memcpy(&seq, in, sizeof(seq));
    memcpy(&t0, (const char *)in + 8, sizeof(t0));
    if (seq != c->ping_seq) {
        return;
    }
    ms = (double)(uv_hrtime() - t0) / 1e6;
    c->ping_out = 0;
    c->failures = 0; /* the server is serving: back off from scratch */
    uv_timer_stop(&c->deadline);
    uv_timer_start(&c->step, ws_conn_on_step, (uint64_t)c->p.ping_interval_ms,
                   0);
    if (c->on_pong != NULL) {
        c->on_pong(c, ms);
    }
}

/* One lws_write() per writeable callback, as lws requires. */
static int ws_conn_on_writeable(struct ws_conn *c, struct lws *wsi)
{
    unsigned char *p;
    int n;

    if (c->want_sub) {
        c->want_sub = 0;
        /* lws masks the payload in place: copy it in every time. */
        p = c->sub_buf + LWS_PRE;
        memcpy(p, c->p.subscribe, c->sub_len);
        n = lws_write(wsi, p, c->sub_len, LWS_WRITE_TEXT);
        if (n < (int)c->sub_len) {
            ws_conn_fail(c, wsi, 0, WS_ERR_OTHER,
                         "cannot send the subscription");
            return -1;
        }
    } else if (c->want_ping) {
        uint64_t now = uv_hrtime();

        c->want_ping = 0;
        p = c->ping_buf + LWS_PRE;
        memcpy(p, &c->ping_seq, 8);
        memcpy(p + 8, &now, 8);
        n = lws_write(wsi, p, WS_PING_LEN, LWS_WRITE_PING);
        if (n < WS_PING_LEN) {
            ws_conn_fail(c, wsi, 0, WS_ERR_OTHER, "cannot send a ping");
            return -1;
        }
    }
    if (c->want_sub || c->want_ping) {
        lws_callback_on_writable(wsi);
    }
    return 0;
}

static void ws_conn_on_receive(struct ws_conn *c, struct lws *wsi, size_t len)
{
    c->bytes += len;
    /* A message may come in several fragments, and a fragment in several
     * callbacks: count it at its very end. */
    if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
        c->messages++;
        c->last_msg_ns = uv_hrtime();
        c->failures = 0;
    }
}

/* The server's close frame: its code and reason, kept for the message
 * that CLIENT_CLOSED will give. */
static void ws_conn_on_peer_close(struct ws_conn *c, const unsigned char *in,
                                  size_t len)
{
    unsigned code = len >= 2 ? (unsigned)(in[0] << 8 | in[1]) : 0;

    snprintf(c->why, sizeof(c->why), "closed by the server (code %u%s%.*s)",
             code, len > 2 ? ": " : "", len > 2 ? (int)(len - 2) : 0,
             len > 2 ? (const char *)in + 2 : "");
}

static int ws_conn_cb(struct lws *wsi, enum lws_callback_reasons reason,
                      void *user, void *in, size_t len)
{
    struct ws_conn *c = wsi != NULL ? lws_get_opaque_user_data(wsi) : NULL;

    if (reason == LWS_CALLBACK_OPENSSL_LOAD_EXTRA_CLIENT_VERIFY_CERTS) {
        ws_lws_verify_certs(user); /* a vhost, not a connection */
        return 0;
    }
    if (c == NULL || c->closing) {
        return 0;
    }
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        ws_conn_on_error(c, wsi, in);
        break;
    case LWS_CALLBACK_OPENSSL_PERFORM_SERVER_CERT_VERIFICATION:
        ws_conn_on_verify(c, user, len); /* user: the X509_STORE_CTX */
        break;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        ws_conn_on_open(c, wsi);
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        ws_conn_on_receive(c, wsi, len);
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE_PONG:
        ws_conn_on_pong(c, in, len);
        break;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return ws_conn_on_writeable(c, wsi);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        ws_conn_on_peer_close(c, in, len);
        break;
    case LWS_CALLBACK_CLIENT_CLOSED:
        ws_conn_fail(c, wsi, 0, WS_ERR_CLOSED, "%s",
                     strncmp(c->why, "closed by", 9) == 0
                         ? c->why
                         : "connection closed");
        break;
    case LWS_CALLBACK_WSI_DESTROY:
        /* Not expected without one of the above; never keep a freed
         * wsi. */
        ws_conn_fail(c, wsi, 0, WS_ERR_OTHER, "connection lost");
        break;
    default:
        break;
    }
    return 0;
}

const struct lws_protocols ws_conn_protocols[] = {
    {"vigil-ws-probe", ws_conn_cb, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* ------------------------------------------------------------------------
 * Life cycle.
 */

int ws_conn_init(struct ws_conn *c, uv_loop_t *loop,
                 const struct ws_conn_params *p)
{
    c->p = *p;
    c->loop = loop;
    c->state = WS_S_IDLE;
    c->gai.data = c;
    c->rnd = uv_hrtime() ^ (uint64_t)(uintptr_t)c;
    if (c->rnd == 0) {
        c->rnd = 1;
    }
    ws_url_host_header(&c->p.url, c->host_header, sizeof(c->host_header));
    if (p->subscribe != NULL) {
        c->sub_len = strlen(p->subscribe);
        c->sub_buf = malloc(LWS_PRE + c->sub_len);
        if (c->sub_buf == NULL) {
            return VIGIL_ENOMEM;
        }
    }
    uv_timer_init(loop, &c->step);
    uv_timer_init(loop, &c->deadline);
    c->step.data = c->deadline.data = c;
    c->handles = 2;
    return 0;
}

int ws_conn_start(struct ws_conn *c)
{
    if (c->closing || c->state != WS_S_IDLE) {
        return VIGIL_ESTATE;
    }
    ws_conn_attempt(c);
    return 0;
}

static void ws_conn_on_closed(uv_handle_t *h)
{
    struct ws_conn *c = h->data;

    c->handles--;
    ws_conn_maybe_closed(c);
}

void ws_conn_close(struct ws_conn *c, ws_conn_closed_cb closed_cb)
{
    if (c->closing) {
        return;
    }
    c->closing = 1;
    c->closed_cb = closed_cb;
    c->open = 0;
    ws_conn_detach(c, c->wsi, 1);
    if (c->resolving) {
        /* Fails when the lookup already runs: its callback comes later
         * and finishes the close. */
        uv_cancel((uv_req_t *)&c->gai);
    }
    uv_close((uv_handle_t *)&c->step, ws_conn_on_closed);
    uv_close((uv_handle_t *)&c->deadline, ws_conn_on_closed);
}
