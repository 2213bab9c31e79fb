/*
 * http.c - the http probe plugin: one HTTP(S) request per interval to a
 * configured URL, timed phase by phase, and the diagnostic http.measure.
 *
 * Every instance (`[plugin http NAME]`) owns one easy handle; all
 * instances of the module share one libcurl multi handle driven by the
 * core's libuv loop (plugins/common/curl_uv.c), so nothing blocks the
 * loop and no thread is added (Debian's libcurl resolves names on its
 * own resolver thread). collect() starts the request and returns
 * VIGIL_PENDING; when it ends the sample is published and
 * host->collect_done() sets http.up and http.collect_ms.
 *
 * Requests reuse their connection, as a pooled client (the guide's
 * aiohttp session) does; keep_alive = no opens a fresh one with no DNS
 * cache each time, so that the DNS, connect and TLS phases are measured
 * every time (at about twice the CPU: bench/probes_http.sh). Redirects are not
 * followed: the status seen is the first response's.
 *
 * Published per request (labels: instance):
 *   http.request.total_ms       start to last byte
 *   http.request.dns_ms         name lookup
 *   http.request.connect_ms     TCP connect
 *   http.request.tls_ms         TLS handshake (0 for http://)
 *   http.request.ttfb_ms        request sent to first response byte
 *   http.response.status        HTTP status (0 when none arrived)
 *   http.response.body_bytes    body bytes received
 *   http.request.errors_total   failed requests since start, per class:
 *                               dns|connect|timeout|tls|status|match|other
 * The timings are published only when a response arrived.
 *
 * The diagnostic http.measure runs `count` requests one after another
 * (a uv_timer of interval_ms between them) with the instance's method,
 * headers, body and TLS settings, and replies with the latency
 * statistics (JSON through jansson).
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <vigil/plugin.h>

#include "measure.h"

#include "curl_uv.h"

#define HTTP_URL_SHOWN_MAX 256
#define HTTP_MEASURE_COUNT_MAX 100000
#define HTTP_MEASURE_INTERVAL_MAX_MS (3600 * 1000L)
#define HTTP_TIMEOUT_MAX_MS (24 * 3600 * 1000LL)
#define HTTP_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(6))

struct http_config {
    const char *url;
    const char *method;
    struct vigil_list headers;
    const char *body;
    int64_t timeout_ms;
    int64_t expect_status;
    const char *match;
    int tls_verify;
    const char *ca_file;
    int keep_alive;
};

static const struct vigil_option http_options[] = {
    {.key = "url",
     .type = VIGIL_OPT_STRING,
     .offset = offsetof(struct http_config, url),
     .help = "the URL to request, http:// or https://",
     .flags = VIGIL_OPT_REQUIRED},
    {.key = "method",
     .type = VIGIL_OPT_STRING,
     .def = "GET",
     .offset = offsetof(struct http_config, method),
     .help = "HTTP method (GET, HEAD, POST, ...)"},
    {.key = "headers",
     .type = VIGIL_OPT_LIST,
     .offset = offsetof(struct http_config, headers),
     .help = "extra request headers, one 'Name: value' per line"},
    {.key = "body",
     .type = VIGIL_OPT_STRING,
     .offset = offsetof(struct http_config, body),
     .help = "request body (sent with the method given)"},
    {.key = "timeout",
     .type = VIGIL_OPT_DURATION,
     .def = "5s",
     .offset = offsetof(struct http_config, timeout_ms),
     .help = "give up on a request after this long (DNS and connect "
             "included)"},
    {.key = "expect_status",
     .type = VIGIL_OPT_INT,
     .def = "200",
     .offset = offsetof(struct http_config, expect_status),
     .help = "the HTTP status a good response has"},
    {.key = "match",
     .type = VIGIL_OPT_STRING,
     .offset = offsetof(struct http_config, match),
     .help = "text the response body must contain"},
    {.key = "tls_verify",
     .type = VIGIL_OPT_BOOL,
     .def = "yes",
     .offset = offsetof(struct http_config, tls_verify),
     .help = "check the server's TLS certificate and name"},
    {.key = "ca_file",
     .type = VIGIL_OPT_STRING,
     .offset = offsetof(struct http_config, ca_file),
     .help = "CA certificates (PEM) to check the server with, instead of "
             "the system's"},
    {.key = "keep_alive",
     .type = VIGIL_OPT_BOOL,
     .def = "yes",
     .offset = offsetof(struct http_config, keep_alive),
     .help = "reuse the connection between requests, as a client with a "
             "connection pool does (dns_ms, connect_ms and tls_ms are then "
             "0 on a reused connection); no: a fresh connection for every "
             "request, so that those phases are measured every time"},
    {.key = NULL},
};

/* Error classes, the values of errors_total's `class` label. */
enum {
    HTTP_ERR_NONE = -1,
    HTTP_ERR_DNS,
    HTTP_ERR_CONNECT,
    HTTP_ERR_TIMEOUT,
    HTTP_ERR_TLS,
    HTTP_ERR_STATUS,
    HTTP_ERR_MATCH,
    HTTP_ERR_OTHER,
    HTTP_NERR
};

static const char *const http_err_names[HTTP_NERR] = {
    "dns", "connect", "timeout", "tls", "status", "match", "other",
};

enum {
    HTTP_S_TOTAL,
    HTTP_S_DNS,
    HTTP_S_CONNECT,
    HTTP_S_TLS,
    HTTP_S_TTFB,
    HTTP_S_STATUS,
    HTTP_S_BODY,
    HTTP_NS
};

static const char *const http_series_names[HTTP_NS] = {
    [HTTP_S_TOTAL] = "http.request.total_ms",
    [HTTP_S_DNS] = "http.request.dns_ms",
    [HTTP_S_CONNECT] = "http.request.connect_ms",
    [HTTP_S_TLS] = "http.request.tls_ms",
    [HTTP_S_TTFB] = "http.request.ttfb_ms",
    [HTTP_S_STATUS] = "http.response.status",
    [HTTP_S_BODY] = "http.response.body_bytes",
};

struct http;

/* One transfer: the instance's, or a measurement's. */
struct http_xfer {
    struct http *s;
    CURL *easy;
    struct curl_uv_xfer x;
    char err[CURL_ERROR_SIZE];
    uint64_t body_bytes;
    int matched;
    /* Body match across pieces: the last mlen - 1 bytes seen, and room
     * for them plus as much of the next piece (both 2 * mlen). */
    char *carry, *scratch;
    size_t ncarry;
};

/* The outcome of one transfer. */
struct http_result {
    int err_class; /* HTTP_ERR_NONE when good */
    int got_response;
    long status;
    double total_ms, dns_ms, connect_ms, tls_ms, ttfb_ms;
};

struct http_req; /* an http.measure in flight */

struct http {
    const struct vigil_host *host;
    vigil_instance *inst;
    const struct http_config *cfg; /* borrowed from the core */
    char url[HTTP_URL_SHOWN_MAX];  /* for messages: no user or password */
    size_t mlen;                   /* strlen(match), 0 without one */
    int curl_inited;
    int started;
    struct curl_slist *headers;
    struct http_xfer xf;
    int64_t start_ns;
    vigil_series_id series[HTTP_NS];
    vigil_series_id err_series[HTTP_NERR];
    uint64_t errors[HTTP_NERR];
    struct http_req *reqs;
};

/* The multi handle all instances share, from the first start() to the
 * last stop(). */
static struct curl_uv *http_cu;
static unsigned http_cu_users;

/* ------------------------------------------------------------------------
 * Transfers.
 */

/* Look for the match in one more piece of the body. */
static void http_match_feed(struct http_xfer *xf, size_t mlen,
                            const char *match, const char *data, size_t n)
{
    size_t keep = mlen - 1, k = n < keep ? n : keep, tot;

    if (xf->matched || mlen == 0) {
        return;
    }
    /* Across the boundary with the previous piece. */
    memcpy(xf->scratch, xf->carry, xf->ncarry);
    memcpy(xf->scratch + xf->ncarry, data, k);
    tot = xf->ncarry + k;
    if (memmem(xf->scratch, tot, match, mlen) != NULL ||
        memmem(data, n, match, mlen) != NULL) {
        xf->matched = 1;
        return;
    }
    if (n >= keep) {
        memcpy(xf->carry, data + n - keep, keep);
        xf->ncarry = keep;
    } else { /* scratch holds carry + the whole piece */
        size_t from = tot > keep ? tot - keep : 0;

        memcpy(xf->carry, xf->scratch + from, tot - from);
        xf->ncarry = tot - from;
    }
}

/* CURLOPT_WRITEFUNCTION: count the body, look for the match. */
static size_t http_on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct http_xfer *xf = arg;
    size_t n = size * nmemb;

    xf->body_bytes += n;
    http_match_feed(xf, xf->s->mlen, xf->s->cfg->match, data, n);
    return n;
}

static int http_curl_class(CURLcode result)
{
    switch (result) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return HTTP_ERR_DNS;
    case CURLE_COULDNT_CONNECT:
        return HTTP_ERR_CONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        return HTTP_ERR_TIMEOUT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_SHUTDOWN_FAILED:
        return HTTP_ERR_TLS;
    default:
        return HTTP_ERR_OTHER;
    }
}

static double http_ms(int64_t us)
{
    return us > 0 ? (double)us / 1000.0 : 0.0;
}

static double http_diff_ms(int64_t later_us, int64_t earlier_us)
{
    return later_us > earlier_us ? (double)(later_us - earlier_us) / 1000.0
                                 : 0.0;
}

/* Judge a finished transfer. */
static void http_judge(const struct http_xfer *xf, CURLcode result,
                       const struct curl_uv_times *t, struct http_result *r)
{
    const struct http *s = xf->s;

    memset(r, 0, sizeof(*r));
    r->err_class = HTTP_ERR_NONE;
    r->status = t->http_status;
    if (result != CURLE_OK) {
        r->err_class = http_curl_class(result);
    } else if (t->http_status != (long)s->cfg->expect_status) {
        r->err_class = HTTP_ERR_STATUS;
    } else if (s->mlen > 0 && !xf->matched) {
        r->err_class = HTTP_ERR_MATCH;
    }
    r->got_response = result == CURLE_OK;
    r->total_ms = http_ms(t->total_us);
    r->dns_ms = http_ms(t->namelookup_us);
    r->connect_ms = http_diff_ms(t->connect_us, t->namelookup_us);
    r->tls_ms = t->appconnect_us > 0
                    ? http_diff_ms(t->appconnect_us, t->connect_us)
                    : 0.0;
    r->ttfb_ms = http_diff_ms(t->starttransfer_us, t->pretransfer_us);
}

/* Ready xf for another request. */
static int http_xfer_begin(struct http_xfer *xf)
{
    xf->err[0] = '\0';
    xf->body_bytes = 0;
    xf->matched = 0;
    xf->ncarry = 0;
    return curl_uv_start(http_cu, &xf->x);
}

static void http_xfer_fini(struct http_xfer *xf)
{
    if (xf->easy != NULL) {
        curl_easy_cleanup(xf->easy);
        xf->easy = NULL;
    }
    free(xf->carry);
    free(xf->scratch);
    xf->carry = xf->scratch = NULL;
}

/* Set up xf for s's requests to url, giving up after timeout_ms. */
static int http_xfer_init(struct http *s, struct http_xfer *xf, const char *url,
                          int64_t timeout_ms, curl_uv_done_cb done_cb,
                          void *data)
{
    const struct http_config *cfg = s->cfg;
    CURLcode c = CURLE_OK;
    CURL *e;

    memset(xf, 0, sizeof(*xf));
    xf->s = s;
    xf->x.done_cb = done_cb;
    xf->x.data = data;
    if (s->mlen > 0) {
        xf->carry = malloc(2 * s->mlen);
        xf->scratch = malloc(2 * s->mlen);
        if (xf->carry == NULL || xf->scratch == NULL) {
            return VIGIL_ENOMEM;
        }
    }
    e = xf->easy = curl_easy_init();
    if (e == NULL) {
        return VIGIL_ENOMEM;
    }
    xf->x.easy = e;

#define HTTP_SETOPT(opt, val)                                                  \
    do {                                                                       \
        if (c == CURLE_OK) {                                                   \
            c = curl_easy_setopt(e, opt, val);                                 \
        }                                                                      \
    } while (0)
    c = curl_uv_easy_defaults(e, url, timeout_ms, cfg->tls_verify,
                              cfg->ca_file);
    if (!cfg->keep_alive) {
        /* Measure DNS and connect on every request. */
        HTTP_SETOPT(CURLOPT_FRESH_CONNECT, 1L);
        HTTP_SETOPT(CURLOPT_FORBID_REUSE, 1L);
        HTTP_SETOPT(CURLOPT_DNS_CACHE_TIMEOUT, 0L);
    }
    HTTP_SETOPT(CURLOPT_HTTPHEADER, s->headers);
    HTTP_SETOPT(CURLOPT_USERAGENT, "vigil-http/0.1.0");
    HTTP_SETOPT(CURLOPT_WRITEFUNCTION, http_on_body);
    HTTP_SETOPT(CURLOPT_WRITEDATA, (void *)xf);
    HTTP_SETOPT(CURLOPT_ERRORBUFFER, xf->err);
    if (strcmp(cfg->method, "HEAD") == 0) {
        HTTP_SETOPT(CURLOPT_NOBODY, 1L);
    } else if (strcmp(cfg->method, "GET") != 0 || cfg->body != NULL) {
        HTTP_SETOPT(CURLOPT_CUSTOMREQUEST, cfg->method);
    }
    if (cfg->body != NULL) {
        HTTP_SETOPT(CURLOPT_POSTFIELDS, cfg->body);
        HTTP_SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(cfg->body));
    }
#undef HTTP_SETOPT
    if (c != CURLE_OK) {
        s->host->log(s->inst, VIGIL_LOG_ERROR, "libcurl: %s",
                     curl_easy_strerror(c));
        return VIGIL_ECONFIG;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Collection.
 */

static void http_on_done(struct curl_uv_xfer *x, CURLcode result,
                         const struct curl_uv_times *t)
{
    struct http *s = x->data;
    const struct vigil_host *h = s->host;
    struct http_result r;
    int64_t ts = s->start_ns;
    int rc = 0;
    size_t i;

    http_judge(&s->xf, result, t, &r);
    if (r.got_response) {
        h->publish(s->inst, s->series[HTTP_S_TOTAL], ts, r.total_ms);
        h->publish(s->inst, s->series[HTTP_S_DNS], ts, r.dns_ms);
        h->publish(s->inst, s->series[HTTP_S_CONNECT], ts, r.connect_ms);
        h->publish(s->inst, s->series[HTTP_S_TLS], ts, r.tls_ms);
        h->publish(s->inst, s->series[HTTP_S_TTFB], ts, r.ttfb_ms);
    }
    h->publish(s->inst, s->series[HTTP_S_STATUS], ts, (double)r.status);
    h->publish(s->inst, s->series[HTTP_S_BODY], ts, (double)s->xf.body_bytes);
    if (r.err_class != HTTP_ERR_NONE) {
        s->errors[r.err_class]++;
    }
    for (i = 0; i < HTTP_NERR; i++) {
        h->publish(s->inst, s->err_series[i], ts, (double)s->errors[i]);
    }

    switch (r.err_class) {
    case HTTP_ERR_NONE:
        break;
    case HTTP_ERR_STATUS:
        h->error(s->inst, "%s: HTTP status %ld, expected %lld", s->url,
                 r.status, (long long)s->cfg->expect_status);
        rc = VIGIL_EIO;
        break;
    case HTTP_ERR_MATCH:
        h->error(s->inst, "%s: the body does not contain the match text",
                 s->url);
        rc = VIGIL_EIO;
        break;
    case HTTP_ERR_TIMEOUT:
        h->error(s->inst, "%s: timed out after %lld ms", s->url,
                 (long long)s->cfg->timeout_ms);
        rc = VIGIL_ETIMEDOUT;
        break;
    default:
        h->error(s->inst, "%s: %s error: %s", s->url,
                 http_err_names[r.err_class],
                 s->xf.err[0] != '\0' ? s->xf.err : curl_easy_strerror(result));
        rc = VIGIL_EIO;
        break;
    }
    h->collect_done(s->inst, rc);
}

static int http_collect(void *state)
{
    struct http *s = state;
    int rc;

    if (!s->started) {
        return VIGIL_ESTATE;
    }
    if (curl_uv_active(&s->xf.x)) {
        return VIGIL_EBUSY;
    }
    s->start_ns = s->host->now_ns(s->inst);
    rc = http_xfer_begin(&s->xf);
    if (rc != 0) {
        s->host->error(s->inst, "%s: cannot start the request: %s", s->url,
                       vigil_error_text(rc));
        return rc;
    }
    return VIGIL_PENDING;
}

/* ------------------------------------------------------------------------
 * http.measure.
 */

struct http_req {
    struct http *s;
    vigil_request *req;    /* NULL once replied to or canceled */
    struct http_req *next; /* in s->reqs */
    struct http_xfer xf;
    uv_timer_t timer;
    char url[HTTP_URL_SHOWN_MAX * 4];
    long count, interval_ms, timeout_ms;
    long done, ok, errors;
    long class_errors[HTTP_NERR];
    double *total; /* ok entries */
    double sum_dns, sum_connect, sum_tls, sum_ttfb;
};

static void http_req_closed(uv_handle_t *h)
{
    struct http_req *rq = h->data;

    http_xfer_fini(&rq->xf);
    free(rq->total);
    free(rq);
}

/* Unlink rq, stop what it runs and free it once its timer is closed. */
static void http_req_end(struct http_req *rq)
{
    struct http_req **pp;

    for (pp = &rq->s->reqs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == rq) {
            *pp = rq->next;
            break;
        }
    }
    curl_uv_cancel(&rq->xf.x);
    uv_close((uv_handle_t *)&rq->timer, http_req_closed);
}

static void http_req_reply(struct http_req *rq, int status, const char *json)
{
    if (rq->req != NULL) {
        rq->s->host->reply(rq->req, status, json);
        rq->req = NULL;
    }
}

static void http_reply_error(struct http *s, vigil_request *req, int status,
                             const char *msg)
{
    json_t *o = json_pack("{s:s}", "error", msg);
    char *text = o != NULL ? json_dumps(o, HTTP_JSON_FLAGS) : NULL;

    s->host->reply(req, status, text);
    free(text);
    json_decref(o);
}

static void http_req_finish(struct http_req *rq)
{
    json_t *o = json_object(), *ph = json_object(), *cl = json_object();
    double n = rq->ok > 0 ? (double)rq->ok : 1.0;
    char *text = NULL;
    size_t i;

    if (o != NULL && ph != NULL && cl != NULL) {
        json_object_set_new(o, "url", json_string(rq->url));
        json_object_set_new(o, "count", json_integer(rq->count));
        json_object_set_new(o, "ok", json_integer(rq->ok));
        json_object_set_new(o, "errors", json_integer(rq->errors));
        measure_stats_set(o, rq->total, (size_t)rq->ok);
        json_object_set_new(ph, "dns", json_real(rq->sum_dns / n));
        json_object_set_new(ph, "connect", json_real(rq->sum_connect / n));
        json_object_set_new(ph, "tls", json_real(rq->sum_tls / n));
        json_object_set_new(ph, "ttfb", json_real(rq->sum_ttfb / n));
        json_object_set_new(o, "phases", ph);
        ph = NULL;
        for (i = 0; i < HTTP_NERR; i++) {
            if (rq->class_errors[i] > 0) {
                json_object_set_new(cl, http_err_names[i],
                                    json_integer(rq->class_errors[i]));
            }
        }
        json_object_set_new(o, "error_classes", cl);
        cl = NULL;
        text = json_dumps(o, HTTP_JSON_FLAGS);
    }
    if (text != NULL) {
        http_req_reply(rq, 0, text);
    } else {
        http_req_reply(rq, VIGIL_ENOMEM, NULL);
    }
    free(text);
    json_decref(o);
    json_decref(ph);
    json_decref(cl);
    http_req_end(rq);
}

static void http_req_next(struct http_req *rq)
{
    int rc = http_xfer_begin(&rq->xf);

    if (rc != 0) {
        http_req_reply(rq, rc, NULL);
        http_req_end(rq);
    }
}

static void http_req_on_timer(uv_timer_t *t)
{
    http_req_next(t->data);
}

static void http_req_on_done(struct curl_uv_xfer *x, CURLcode result,
                             const struct curl_uv_times *t)
{
    struct http_req *rq = x->data;
    struct http_result r;

    http_judge(&rq->xf, result, t, &r);
    rq->done++;
    if (r.err_class == HTTP_ERR_NONE) {
        rq->total[rq->ok++] = r.total_ms;
        rq->sum_dns += r.dns_ms;
        rq->sum_connect += r.connect_ms;
        rq->sum_tls += r.tls_ms;
        rq->sum_ttfb += r.ttfb_ms;
    } else {
        rq->errors++;
        rq->class_errors[r.err_class]++;
    }
    vigil_progress(rq->s->host, rq->req, (unsigned)rq->done,
                   (unsigned)rq->count);
    if (rq->done >= rq->count) {
        http_req_finish(rq);
    } else {
        uv_timer_start(&rq->timer, http_req_on_timer, (uint64_t)rq->interval_ms,
                       0);
    }
}

/* An integer argument: *out unchanged when absent; -1 when not an integer
 * in [lo, hi]. */
static int http_arg_long(json_t *a, const char *key, long lo, long hi,
                         long *out)
{
    json_t *v = json_object_get(a, key);

    if (v == NULL) {
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo ||
        json_integer_value(v) > hi) {
        return -1;
    }
    *out = (long)json_integer_value(v);
    return 0;
}

static int http_measure_run(void *state, const char *args_json,
                            vigil_request *req)
{
    struct http *s = state;
    json_t *a = NULL, *u;
    struct http_req *rq = NULL;
    char msg[200];
    int rc;

    if (!s->started || http_cu == NULL) {
        return VIGIL_ESTATE;
    }
    rq = calloc(1, sizeof(*rq));
    if (rq == NULL) {
        return VIGIL_ENOMEM;
    }
    rq->s = s;
    rq->req = req;
    rq->count = 10;
    rq->interval_ms = 100;
    rq->timeout_ms = 5000;
    snprintf(rq->url, sizeof(rq->url), "%s", s->cfg->url);
    a = json_loads(args_json != NULL ? args_json : "{}", JSON_DECODE_ANY, NULL);
    if (!json_is_object(a)) {
        snprintf(msg, sizeof(msg), "arguments must be a JSON object");
        goto bad;
    }
    u = json_object_get(a, "url");
    if (u != NULL) {
        if (!json_is_string(u) || json_string_length(u) >= sizeof(rq->url) ||
            (strncmp(json_string_value(u), "http://", 7) != 0 &&
             strncmp(json_string_value(u), "https://", 8) != 0)) {
            snprintf(msg, sizeof(msg), "url: an http:// or https:// URL");
            goto bad;
        }
        snprintf(rq->url, sizeof(rq->url), "%s", json_string_value(u));
    }
    if (http_arg_long(a, "count", 1, HTTP_MEASURE_COUNT_MAX, &rq->count) != 0 ||
        http_arg_long(a, "interval_ms", 0, HTTP_MEASURE_INTERVAL_MAX_MS,
                      &rq->interval_ms) != 0 ||
        http_arg_long(a, "timeout_ms", 1, HTTP_MEASURE_INTERVAL_MAX_MS,
                      &rq->timeout_ms) != 0) {
        snprintf(msg, sizeof(msg),
                 "count (1..%d), interval_ms (0..%ld) and timeout_ms "
                 "(1..%ld) are integers",
                 HTTP_MEASURE_COUNT_MAX, HTTP_MEASURE_INTERVAL_MAX_MS,
                 HTTP_MEASURE_INTERVAL_MAX_MS);
        goto bad;
    }
    json_decref(a);
    a = NULL;
    rq->total = calloc((size_t)rq->count, sizeof(*rq->total));
    if (rq->total == NULL) {
        free(rq);
        return VIGIL_ENOMEM;
    }
    rc = http_xfer_init(s, &rq->xf, rq->url, rq->timeout_ms, http_req_on_done,
                        rq);
    if (rc != 0) {
        http_xfer_fini(&rq->xf);
        free(rq->total);
        free(rq);
        return rc;
    }
    uv_timer_init(s->host->loop(s->inst), &rq->timer);
    rq->timer.data = rq;
    rq->next = s->reqs;
    s->reqs = rq;
    http_req_next(rq);
    return 0;

bad:
    json_decref(a);
    free(rq);
    http_reply_error(s, req, VIGIL_EINVAL, msg);
    return 0;
}

static void http_measure_cancel(void *state, vigil_request *req)
{
    struct http *s = state;
    struct http_req *rq;

    for (rq = s->reqs; rq != NULL; rq = rq->next) {
        if (rq->req == req) {
            rq->req = NULL;
            http_req_end(rq);
            return;
        }
    }
}

static const struct vigil_diag http_diag_measure = {
    .name = "http.measure",
    .help = "time `count` requests one after another: mean, stdev, min, "
            "max, p50, p95, p99 and the phases",
    .args = "{\"url\": URL (default: this instance's), \"count\": 10, "
            "\"interval_ms\": 100, \"timeout_ms\": 5000}",
    .is_action = 0,
    .run = http_measure_run,
    .cancel = http_measure_cancel,
};

/* ------------------------------------------------------------------------
 * Life cycle.
 */

static int http_start(void *state)
{
    struct http *s = state;
    int rc;

    if (http_cu == NULL) {
        rc = curl_uv_create(s->host->loop(s->inst), &http_cu);
        if (rc != 0) {
            s->host->log(s->inst, VIGIL_LOG_ERROR,
                         "cannot set up libcurl on the loop: %s",
                         vigil_error_text(rc));
            return rc;
        }
    }
    http_cu_users++;
    s->started = 1;
    return 0;
}

static void http_stop(void *state)
{
    struct http *s = state;

    while (s->reqs != NULL) {
        http_req_reply(s->reqs, VIGIL_ECANCELED, NULL);
        http_req_end(s->reqs);
    }
    if (!s->started) {
        return;
    }
    s->started = 0;
    curl_uv_cancel(&s->xf.x);
    if (--http_cu_users == 0) {
        curl_uv_close(http_cu);
        http_cu = NULL;
    }
}

static void http_destroy(void *state)
{
    struct http *s = state;

    if (s == NULL) {
        return;
    }
    http_xfer_fini(&s->xf);
    curl_slist_free_all(s->headers);
    if (s->curl_inited) {
        curl_uv_global_cleanup();
    }
    free(s);
}

/* Check the options that the core cannot. */
static int http_config_check(struct http *s, const struct http_config *cfg)
{
    const char *m;
    size_t i;

    if (cfg->timeout_ms < 1 || cfg->timeout_ms > HTTP_TIMEOUT_MAX_MS) {
        s->host->log(s->inst, VIGIL_LOG_ERROR,
                     "timeout must be between 1ms and 1d");
        return VIGIL_ECONFIG;
    }
    if (cfg->expect_status < 100 || cfg->expect_status > 599) {
        s->host->log(s->inst, VIGIL_LOG_ERROR,
                     "expect_status must be between 100 and 599");
        return VIGIL_ECONFIG;
    }
    for (m = cfg->method; *m != '\0'; m++) {
        if (*m < 'A' || *m > 'Z') {
            break;
        }
    }
    if (*m != '\0' || m == cfg->method || m - cfg->method > 16) {
        s->host->log(s->inst, VIGIL_LOG_ERROR,
                     "method '%s' is not an HTTP method (GET, POST, ...)",
                     cfg->method);
        return VIGIL_ECONFIG;
    }
    if (cfg->match != NULL && cfg->match[0] == '\0') {
        s->host->log(s->inst, VIGIL_LOG_ERROR, "match must not be empty");
        return VIGIL_ECONFIG;
    }
    for (i = 0; i < cfg->headers.n; i++) {
        const char *h = cfg->headers.v[i];
        const char *colon = strchr(h, ':');

        if (colon == NULL || colon == h || strpbrk(h, "\r\n") != NULL) {
            s->host->log(s->inst, VIGIL_LOG_ERROR,
                         "headers: '%s' is not 'Name: value'", h);
            return VIGIL_ECONFIG;
        }
    }
    return 0;
}

static int http_series_create(struct http *s)
{
    int rc = vigil_series_names(s->host, s->inst, http_series_names, HTTP_NS,
                                s->series);

    if (rc == 0) {
        rc = vigil_series_by_label(s->host, s->inst,
                                   "http.request.errors_total", "class",
                                   http_err_names, HTTP_NERR, s->err_series);
    }
    if (rc != 0) {
        s->host->log(s->inst, VIGIL_LOG_ERROR, "cannot create series: %s",
                     vigil_error_text(rc));
    }
    return rc;
}

static int http_init(const struct vigil_host *host, vigil_instance *inst,
                     const void *config, void **state)
{
    const struct http_config *cfg = config;
    struct curl_slist *l = NULL;
    struct http *s;
    size_t i;
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
    s->mlen = cfg->match != NULL ? strlen(cfg->match) : 0;

    rc = http_config_check(s, cfg);
    if (rc == 0) {
        rc = curl_uv_url_shown(s->host, s->inst, cfg->url, "probed", s->url,
                               sizeof(s->url));
    }
    if (rc == 0) {
        rc = http_series_create(s);
    }
    if (rc != 0) {
        goto out;
    }
    rc = curl_uv_global_init();
    if (rc != 0) {
        host->log(inst, VIGIL_LOG_ERROR, "libcurl global init failed");
        goto out;
    }
    s->curl_inited = 1;
    for (i = 0; i < cfg->headers.n; i++) {
        l = curl_slist_append(s->headers, cfg->headers.v[i]);
        if (l == NULL) {
            host->log(inst, VIGIL_LOG_ERROR, "out of memory");
            rc = VIGIL_ENOMEM;
            goto out;
        }
        s->headers = l;
    }
    rc = http_xfer_init(s, &s->xf, cfg->url, cfg->timeout_ms, http_on_done, s);
    if (rc == VIGIL_ENOMEM) {
        host->log(inst, VIGIL_LOG_ERROR, "out of memory");
    }
    if (rc != 0) {
        goto out;
    }
    rc = host->register_diag(inst, &http_diag_measure);
    if (rc == VIGIL_EEXIST) {
        rc = 0; /* another instance provides it */
    } else if (rc != 0) {
        host->log(inst, VIGIL_LOG_ERROR, "cannot register http.measure: %s",
                  vigil_error_text(rc));
    }

out:
    if (rc != 0) {
        http_destroy(s);
        return rc;
    }
    *state = s;
    return 0;
}

VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {
    .abi_version = VIGIL_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct vigil_plugin),
    .name = "http",
    .version = "0.1.0",
    .description = "HTTP(S) probe: request timings by phase, status, body "
                   "match, error classes; diagnostic http.measure",
    .options = http_options,
    .config_size = sizeof(struct http_config),
    .init = http_init,
    .start = http_start,
    .collect = http_collect,
    .stop = http_stop,
    .destroy = http_destroy,
};
