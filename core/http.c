/* http - libwebsockets on the daemon's loop: routing, responses, feed. */
#include "http.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
/* uv.h (from http.h) comes first: libwebsockets then knows the loop. */
#include <libwebsockets.h>

#include "api.h"
#include "bus.h"
#include "clock.h"
#include "dbuf.h"
#include "feed.h"
#include "incident.h"
#include "log.h"
#include "paths.h"
#include "plug.h"
#include "promtext.h"
#include "rule.h"
#include "runbook.h"
#include "schedule.h"

#define HTTP_CHUNK (16 * 1024) /* body bytes per WRITEABLE */
#define HTTP_PATH_MAX 512
#define HTTP_ARG_MAX 1024
#define HTTP_JOBS_MAX 32 /* store jobs queued at once */
#define HTTP_DIAG_TIMEOUT_NS (120 * 1000000000LL)
#define HTTP_RULE_INSTANCES_MAX 10000
#define HTTP_PROTO_HTTP "http"
#define HTTP_PROTO_FEED "vigil-feed"

/* ---------------------------------------------------------------- config */

#define HOFF(f) offsetof(struct http_conf, f)
static const struct vigil_option http_options[] = {
    {"enabled", VIGIL_OPT_BOOL, "yes", HOFF(enabled),
     "serve /metrics, the API and the dashboard (a section turns it on)", 0,
     NULL},
    {"listen", VIGIL_OPT_STRING, "127.0.0.1", HOFF(listen),
     "address to listen on (a loopback address unless a token is set)", 0,
     NULL},
    {"port", VIGIL_OPT_INT, "9470", HOFF(port),
     "TCP port; 0 picks a free one (logged at start)", 0, NULL},
    {"token", VIGIL_OPT_STRING, NULL, HOFF(token),
     "bearer token for requests that change state (and for every request "
     "from a non-loopback peer)",
     VIGIL_OPT_SECRET, NULL},
    {"web_dir", VIGIL_OPT_STRING, NULL, HOFF(web_dir),
     "dashboard files (default: the shipped web/)", 0, NULL},
    {"body_max", VIGIL_OPT_BYTES, "64KiB", HOFF(body_max),
     "largest request body accepted", 0, NULL},
    {"response_max", VIGIL_OPT_BYTES, "64MiB", HOFF(response_max),
     "largest response built in memory", 0, NULL},
    {"clients_max", VIGIL_OPT_INT, "128", HOFF(clients_max),
     "connections served at once (HTTP and WebSocket)", 0, NULL},
    {"feed_queue", VIGIL_OPT_BYTES, "1MiB", HOFF(feed_queue),
     "bytes queued for one live-feed client before it is dropped", 0, NULL},
    {"feed_subscriptions", VIGIL_OPT_INT, "32", HOFF(feed_subscriptions_max),
     "series patterns one live-feed client may subscribe to", 0, NULL},
    {NULL, 0, NULL, 0, NULL, 0, NULL},
};
#undef HOFF

/* Is text an IPv4 or IPv6 loopback address? */
static int addr_is_loopback(const char *text)
{
    struct in_addr a4;
    struct in6_addr a6;

    if (inet_pton(AF_INET, text, &a4) == 1) {
        return (ntohl(a4.s_addr) >> 24) == 127;
    }
    if (inet_pton(AF_INET6, text, &a6) == 1) {
        return IN6_IS_ADDR_LOOPBACK(&a6) ||
               (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
    }
    return 0;
}

int http_conf_load(struct cfg *cfg, struct http_conf *c, struct cfg_diag *diag)
{
    struct cfg_section *sec = cfg_first(cfg, "http");
    unsigned before = diag->n;

    if (sec != NULL && (sec->name != NULL || cfg_next(sec, "http"))) {
        cfg_diag_add(diag,
                     "%s:%d: there is one [http] section and it takes "
                     "no name",
                     sec->file, sec->line);
    }
    cfg_apply(cfg, http_options, sec, NULL, c, diag);
    if (sec == NULL) {
        c->enabled = 0; /* no section: no server */
        return 0;
    }
    if (c->port < 0 || c->port > 65535) {
        const struct cfg_entry *e = cfg_get(sec, "port");
        cfg_diag_add(diag, "%s:%d: [http] port must be 0..65535", sec->file,
                     e ? e->line : sec->line);
    }
    if (c->token != NULL && c->token[0] != '\0' && strlen(c->token) < 16) {
        const struct cfg_entry *e = cfg_get(sec, "token");
        cfg_diag_add(diag,
                     "%s:%d: [http] token is too short: use at least 16 "
                     "characters (e.g. `openssl rand -hex 16`)",
                     sec->file, e ? e->line : sec->line);
    }
    if (c->enabled && !addr_is_loopback(c->listen) &&
        (c->token == NULL || c->token[0] == '\0')) {
        const struct cfg_entry *e = cfg_get(sec, "listen");
        cfg_diag_add(diag,
                     "%s:%d: [http] listen = %s is not a loopback address: "
                     "set a token, or listen on 127.0.0.1",
                     sec->file, e ? e->line : sec->line, c->listen);
    }
    if (c->clients_max < 1 || c->feed_subscriptions_max < 1 ||
        c->body_max < 1 || c->response_max < 4096 || c->feed_queue < 4096) {
        cfg_diag_add(diag,
                     "%s:%d: [http] clients_max and feed_subscriptions must "
                     "be at least 1, response_max and feed_queue at least "
                     "4KiB",
                     sec->file, sec->line);
    }
    return diag->n > before ? VIGIL_ECONFIG : 0;
}

/* ---------------------------------------------------------------- types */

struct http_req;

/* A body produced piece by piece (/metrics, series scans). */
typedef int (*http_fill_cb)(void *state, struct dbuf *out, size_t want);
typedef void (*http_free_cb)(void *state);

struct http_job {
    struct api_job j;
    struct http *h;
    struct http_req *req; /* NULL once the client went away */
    uv_work_t work;
    struct http_job *next;
};

struct http_diag {
    struct http *h;
    struct http_req *req; /* NULL once answered by a timeout or gone */
    char name[64];
    int64_t deadline;
    int replied;
    struct http_diag *next;
};

struct http_req {
    struct http *h;
    struct lws *wsi; /* NULL once the connection closed */
    int method;      /* LWSHUMETH_* */
    char path[HTTP_PATH_MAX];
    int loopback;   /* the peer is on this host */
    int authed;     /* a valid bearer token came with it */
    int auth_sent;  /* an Authorization header came with it */
    int local_host; /* the Host header names this host */
    int dispatched;
    /* Body. */
    struct dbuf body;
    int64_t body_expected;
    /* Response. */
    int ready;
    int status;
    const char *ctype;
    const char *extra; /* one more header line, or NULL */
    char *out;         /* fixed body (malloc'd) */
    size_t out_len, out_sent;
    http_fill_cb fill; /* or a produced one */
    void *fill_state;
    http_free_cb fill_free;
    struct dbuf chunk;
    int fill_done;
    int head_sent;
    int close_after; /* close the connection after the response */
    /* Waiting for. */
    struct http_job *job;
    struct http_diag *diag;
};

/* What lws keeps per connection, for both protocols. */
struct http_pss {
    struct http_req *req;   /* HTTP */
    struct feed_client *fc; /* WebSocket */
    struct dbuf rx;         /* WebSocket: a message being received */
    int rx_over;            /* ... that is too large */
};

struct http {
    struct http_conf conf;
    struct http_env env;
    struct api_ctx api;
    char web_dir[PATH_MAX];
    char url[128];
    struct lws_context *ctx;
    struct lws_protocols protocols[3];
    struct lws_protocol_vhost_options pvo_default, pvo;
    struct feed *feed;
    struct prom_index *prom_idx;
    struct api_store *store;
    struct http_job *jobs, *jobs_tail;
    unsigned njobs;
    int job_running;
    struct http_diag *diags;
    struct dbuf scratch; /* LWS_PRE + what one lws_write sends */
    uv_timer_t reaper;
    int reaper_open;
    struct sched_timer tick;
    int tick_open;
    int started, stopping;
    unsigned conns;
    uint64_t requests, errors, refused, metrics_skipped;
    vigil_series_id id_requests, id_errors, id_conns, id_clients, id_dropped,
        id_messages, id_refused, id_incidents;
};

/* ---------------------------------------------------------------- helpers */

static int token_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = (unsigned char)(la != lb);

    /* Constant time in the length of the given token. */
    for (size_t i = 0; i < la; i++) {
        diff |= (unsigned char)(a[i] ^ (i < lb ? b[i] : 0));
    }
    return diff == 0;
}

static int peer_is_loopback(struct lws *wsi)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int fd = lws_get_socket_fd(wsi);

    if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &len) != 0) {
        return 0;
    }
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
        return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
               (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) &&
                in6->sin6_addr.s6_addr[12] == 127);
    }
    return 0;
}

/* Does a Host (or Origin's host) name this machine in a way a web page on
 * another site cannot borrow (DNS rebinding): localhost, a loopback
 * address, or the address vigil listens on. */
static int host_is_local(const struct http *h, const char *host)
{
    char name[256];
    const char *end;
    size_t n;

    if (host[0] == '[') { /* [::1]:port */
        end = strchr(host, ']');
        if (end == NULL) {
            return 0;
        }
        host++;
    } else {
        end = strrchr(host, ':');
        if (end == NULL || strchr(host, ':') != end) {
            end = host + strlen(host);
        }
    }
    n = (size_t)(end - host);
    if (n == 0 || n >= sizeof(name)) {
        return 0;
    }
    memcpy(name, host, n);
    name[n] = '\0';
    return !strcasecmp(name, "localhost") || addr_is_loopback(name) ||
           !strcmp(name, h->conf.listen);
}

static int hdr_copy(struct lws *wsi, enum lws_token_indexes t, char *buf,
                    int size)
{
    int n = lws_hdr_total_length(wsi, t);

    if (n <= 0 || n >= size) {
        buf[0] = '\0';
        return n > 0 ? -1 : 0;
    }
    return lws_hdr_copy(wsi, buf, size, t);
}

/* Authorization: Bearer TOKEN, or ?token= for WebSockets from browsers.
 * Returns 1 valid, 0 absent, -1 wrong. */
static int check_token(const struct http *h, struct lws *wsi, int allow_arg)
{
    char auth[512], arg[256];
    const char *tok = NULL;

    if (hdr_copy(wsi, WSI_TOKEN_HTTP_AUTHORIZATION, auth, sizeof(auth)) > 0) {
        tok = !strncasecmp(auth, "Bearer ", 7) ? auth + 7 : "";
    } else if (allow_arg && (tok = lws_get_urlarg_by_name(
                                 wsi, "token=", arg, sizeof(arg))) == NULL) {
        return 0;
    } else if (!allow_arg) {
        return 0;
    }
    if (h->conf.token == NULL || h->conf.token[0] == '\0') {
        return -1;
    }
    return token_equal(tok, h->conf.token) ? 1 : -1;
}

/* ---------------------------------------------------------------- reqs */

static void req_free(struct http_req *r)
{
    if (r == NULL) {
        return;
    }
    if (r->fill_free != NULL) {
        r->fill_free(r->fill_state);
    }
    dbuf_fini(&r->body);
    dbuf_fini(&r->chunk);
    free(r->out);
    free(r);
}

/* The response is ready: write it when the socket is writable. */
static void req_ready(struct http_req *r)
{
    struct http *h = r->h;

    r->ready = 1;
    h->requests++;
    h->errors += r->status >= 400;
    if (r->wsi != NULL) {
        lws_callback_on_writable(r->wsi);
    }
}

/* A fixed body; takes ownership of body (malloc'd, may be NULL). */
static void req_reply(struct http_req *r, int status, const char *ctype,
                      char *body, size_t len)
{
    if (r->ready) {
        free(body);
        return;
    }
    r->status = status;
    r->ctype = ctype;
    r->out = body;
    r->out_len = body ? len : 0;
    req_ready(r);
}

static void req_json(struct http_req *r, int status, json_t *o)
{
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    size_t len = text ? strlen(text) : 0;

    json_decref(o);
    if (text == NULL) {
        text = api_error_body(500, "out of memory");
        status = 500;
        len = text ? strlen(text) : 0;
    } else if (len > r->h->conf.response_max) {
        free(text);
        text = api_error_body(413, "the response is larger than [http] "
                                   "response_max: narrow the request");
        status = 500;
        len = text ? strlen(text) : 0;
    }
    req_reply(r, status, "application/json", text, len);
}

static void req_error(struct http_req *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void req_error(struct http_req *r, int status, const char *fmt, ...)
{
    char msg[VIGIL_ERR_MAX];
    char *body;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    body = api_error_body(status, msg);
    req_reply(r, status, "application/json", body, body ? strlen(body) : 0);
}

/* A produced body; state is freed with free_cb when the request ends. */
static void req_stream(struct http_req *r, const char *ctype, http_fill_cb fill,
                       void *state, http_free_cb free_cb)
{
    r->status = 200;
    r->ctype = ctype;
    r->fill = fill;
    r->fill_state = state;
    r->fill_free = free_cb;
    dbuf_init(&r->chunk, r->h->conf.response_max);
    req_ready(r);
}

/* lws_write from the scratch buffer (LWS_PRE bytes of headroom). */
static int http_write(struct http *h, struct lws *wsi, const void *data,
                      size_t len, enum lws_write_protocol proto)
{
    static const char pre[LWS_PRE];

    dbuf_reset(&h->scratch);
    if (dbuf_add(&h->scratch, pre, LWS_PRE) != 0 ||
        dbuf_add(&h->scratch, data, len) != 0) {
        return -1;
    }
    return lws_write(wsi, (unsigned char *)h->scratch.p + LWS_PRE, len, proto);
}

/* The status line and headers. */
static int write_head(struct http_req *r)
{
    unsigned char buf[LWS_PRE + 1024];
    unsigned char *start = buf + LWS_PRE, *p = start, *end = buf + sizeof(buf);
    lws_filepos_t len = r->fill ? LWS_ILLEGAL_HTTP_CONTENT_LEN : r->out_len;

    if (lws_add_http_common_headers(r->wsi, (unsigned)r->status, r->ctype, len,
                                    &p, end) ||
        lws_add_http_header_by_name(
            r->wsi, (const unsigned char *)"cache-control:",
            (const unsigned char *)"no-store", 8, &p, end) ||
        lws_add_http_header_by_name(
            r->wsi, (const unsigned char *)"x-content-type-options:",
            (const unsigned char *)"nosniff", 7, &p, end)) {
        return -1;
    }
    if (r->fill != NULL &&
        lws_add_http_header_by_name(
            r->wsi, (const unsigned char *)"transfer-encoding:",
            (const unsigned char *)"chunked", 7, &p, end)) {
        return -1;
    }
    if (r->status == 401 &&
        lws_add_http_header_by_name(
            r->wsi, (const unsigned char *)"www-authenticate:",
            (const unsigned char *)"Bearer realm=\"vigil\"", 20, &p, end)) {
        return -1;
    }
    if (r->extra != NULL) {
        const char *colon = strchr(r->extra, ' ');
        if (colon != NULL &&
            lws_add_http_header_by_name(
                r->wsi, (const unsigned char *)r->extra, /* "name: value" */
                (const unsigned char *)colon + 1, (int)strlen(colon + 1), &p,
                end)) {
            return -1;
        }
    }
    if (r->close_after && lws_add_http_header_by_name(
                              r->wsi, (const unsigned char *)"connection:",
                              (const unsigned char *)"close", 5, &p, end)) {
        return -1;
    }
    return lws_finalize_write_http_header(r->wsi, start, &p, end) ? -1 : 0;
}

/* One step of the response. Returns 0 to go on, 1 when done, -1 to close. */
static int req_write(struct http_req *r)
{
    struct http *h = r->h;

    if (!r->head_sent) {
        if (write_head(r) != 0) {
            return -1;
        }
        r->head_sent = 1;
        if (r->method == LWSHUMETH_HEAD ||
            (r->fill == NULL && r->out_len == 0)) {
            return 1;
        }
        lws_callback_on_writable(r->wsi);
        return 0;
    }
    if (r->fill == NULL) {
        size_t n = r->out_len - r->out_sent;
        int last = n <= HTTP_CHUNK;
        if (!last) {
            n = HTTP_CHUNK;
        }
        if (http_write(h, r->wsi, r->out + r->out_sent, n,
                       last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) < 0) {
            return -1;
        }
        r->out_sent += n;
        if (last) {
            return 1;
        }
        lws_callback_on_writable(r->wsi);
        return 0;
    }
    /* Chunked: "<hex>\r\n<data>\r\n", then "0\r\n\r\n". */
    char head[24];
    int rc = 0;
    dbuf_reset(&r->chunk);
    while (!r->fill_done && r->chunk.len < HTTP_CHUNK && rc == 0) {
        rc = r->fill(r->fill_state, &r->chunk, HTTP_CHUNK - r->chunk.len);
        if (rc == 1) {
            r->fill_done = 1;
            rc = 0;
        }
    }
    if (rc < 0) {
        /* Headers are gone: all we can do is cut the response short, which
         * the client sees as an incomplete chunked body. */
        log_error("http", "%s: cannot produce the response: %s", r->path,
                  vigil_strerror(rc));
        return -1;
    }
    int n = snprintf(head, sizeof(head), "%zx\r\n", r->chunk.len);
    if (r->chunk.len == 0) {
        n = 0;
    }
    if ((n > 0 && (dbuf_add(&r->chunk, "\r\n", 2) != 0)) ||
        (r->fill_done && dbuf_add(&r->chunk, "0\r\n\r\n", 5) != 0)) {
        return -1;
    }
    /* Prepend the size line. */
    struct dbuf all;
    dbuf_init(&all, r->chunk.len + sizeof(head));
    if (dbuf_add(&all, head, (size_t)n) != 0 ||
        dbuf_add(&all, r->chunk.p, r->chunk.len) != 0) {
        dbuf_fini(&all);
        return -1;
    }
    rc = http_write(h, r->wsi, all.p, all.len,
                    r->fill_done ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP);
    dbuf_fini(&all);
    if (rc < 0) {
        return -1;
    }
    if (r->fill_done) {
        return 1;
    }
    lws_callback_on_writable(r->wsi);
    return 0;
}

/* ---------------------------------------------------------------- jobs */

static void job_start_next(struct http *h);

static void on_job_work(uv_work_t *w)
{
    struct http_job *job = w->data;

    api_job_run(job->h->store, &job->j);
}

static void on_job_done(uv_work_t *w, int status)
{
    struct http_job *job = w->data;
    struct http *h = job->h;

    (void)status;
    h->job_running = 0;
    if (job->req != NULL) {
        job->req->job = NULL;
        req_reply(job->req, job->j.status, job->j.ctype, job->j.body,
                  job->j.len);
        job->j.body = NULL;
    }
    api_job_fini(&job->j);
    free(job);
    job_start_next(h);
}

static void job_start_next(struct http *h)
{
    struct http_job *job = h->jobs;

    if (h->job_running || job == NULL || h->stopping) {
        return;
    }
    h->jobs = job->next;
    if (h->jobs == NULL) {
        h->jobs_tail = NULL;
    }
    h->njobs--;
    job->work.data = job;
    if (uv_queue_work(h->env.loop, &job->work, on_job_work, on_job_done) != 0) {
        if (job->req != NULL) {
            job->req->job = NULL;
            req_error(job->req, 500, "cannot queue the store job");
        }
        api_job_fini(&job->j);
        free(job);
        return;
    }
    h->job_running = 1;
}

/* Queue a store job for r; on failure r gets its error. */
static void req_job(struct http_req *r, struct api_job *j)
{
    struct http *h = r->h;
    struct http_job *job;

    if (h->store == NULL) {
        api_job_fini(j);
        req_error(r, 503,
                  "vigil runs without a store: no incidents or "
                  "history to read");
        return;
    }
    if (h->njobs >= HTTP_JOBS_MAX) {
        api_job_fini(j);
        req_error(r, 503, "too many store requests waiting; try again");
        return;
    }
    job = calloc(1, sizeof(*job));
    if (job == NULL) {
        api_job_fini(j);
        req_error(r, 500, "out of memory");
        return;
    }
    job->j = *j;
    job->h = h;
    job->req = r;
    r->job = job;
    if (h->jobs_tail != NULL) {
        h->jobs_tail->next = job;
    } else {
        h->jobs = job;
    }
    h->jobs_tail = job;
    h->njobs++;
    job_start_next(h);
}

/* ---------------------------------------------------------------- params */

static const char *arg(struct http_req *r, const char *name, char *buf,
                       int size)
{
    char key[64];

    snprintf(key, sizeof(key), "%s=", name);
    return lws_get_urlarg_by_name(r->wsi, key, buf, size);
}

/* An integer argument in [lo, hi], def when absent. Returns 0 or -1 after
 * answering 400. */
static int arg_int(struct http_req *r, const char *name, int64_t def,
                   int64_t lo, int64_t hi, int64_t *out)
{
    char buf[HTTP_ARG_MAX];
    const char *v = arg(r, name, buf, sizeof(buf));

    *out = def;
    if (v == NULL) {
        return 0;
    }
    if (cfg_parse_int(v, out) != 0 || *out < lo || *out > hi) {
        req_error(r, 400, "%s: expected an integer from %lld to %lld", name,
                  (long long)lo, (long long)hi);
        return -1;
    }
    return 0;
}

static int arg_duration(struct http_req *r, const char *name, int64_t def_ms,
                        int64_t max_ms, int64_t *out_ns)
{
    char buf[HTTP_ARG_MAX];
    const char *v = arg(r, name, buf, sizeof(buf));
    int64_t ms = def_ms;

    if (v != NULL &&
        (cfg_parse_duration_ms(v, &ms) != 0 || ms <= 0 || ms > max_ms)) {
        req_error(r, 400,
                  "%s: expected a duration such as 90s, 15m or 6h (at most "
                  "%lld s)",
                  name, (long long)(max_ms / 1000));
        return -1;
    }
    *out_ns = ms * 1000000;
    return 0;
}

/* ---------------------------------------------------------------- GET */

static int scan_fill(void *state, struct dbuf *out, size_t want)
{
    return api_scan_fill(state, out, want);
}

static void scan_free(void *state)
{
    api_scan_destroy(state);
}

static int prom_fill(void *state, struct dbuf *out, size_t want)
{
    return prom_scrape_fill(state, out, want);
}

static void prom_free(void *state)
{
    prom_scrape_destroy(state);
}

static void get_metrics(struct http_req *r)
{
    struct http *h = r->h;
    struct prom_scrape *s;

    if (prom_index_update(&h->prom_idx, h->env.bus) != 0 ||
        prom_scrape_create(h->env.bus, h->prom_idx, h->env.rules, &s) != 0) {
        req_error(r, 500, "out of memory");
        return;
    }
    req_stream(r, "text/plain; version=0.0.4; charset=utf-8", prom_fill, s,
               prom_free);
}

static void get_series(struct http_req *r, int query)
{
    char sel[HTTP_ARG_MAX], stat[64];
    const char *m = arg(r, "match", sel, sizeof(sel));
    const char *st = arg(r, "stat", stat, sizeof(stat));
    struct vigil_err err = {0};
    struct api_scan *s;
    int64_t limit, window;

    if (query && st == NULL) {
        req_error(r, 400,
                  "stat: required (last, avg, min, max, sum, count, "
                  "delta, rate, slope or pNN)");
        return;
    }
    if (arg_int(r, "limit", 1000, 1, 100000, &limit) != 0 ||
        arg_duration(r, "window", 60000, 90LL * 86400 * 1000, &window) != 0) {
        return;
    }
    if (api_scan_create(&r->h->api, m ? m : "*", query ? st : NULL, window,
                        (unsigned)limit, &s, &err) != 0) {
        req_error(r, 400, "%s", err.msg[0] ? err.msg : "bad request");
        return;
    }
    req_stream(r, "application/json", scan_fill, s, scan_free);
}

static void get_samples(struct http_req *r)
{
    struct http *h = r->h;
    char sel[HTTP_ARG_MAX];
    const char *m = arg(r, "series", sel, sizeof(sel));
    struct vigil_err err = {0};
    int64_t window, points, max;
    int covered;
    json_t *o;

    if (m == NULL) {
        req_error(r, 400, "series: required (a series key or selector)");
        return;
    }
    if (arg_duration(r, "window", 15 * 60000, 90LL * 86400 * 1000, &window) ||
        arg_int(r, "points", 300, 2, 5000, &points) ||
        arg_int(r, "max", 8, 1, API_JOB_KEYS_MAX, &max)) {
        return;
    }
    if (api_samples(&h->api, m, window, (unsigned)points, (unsigned)max, &o,
                    &covered, &err) != 0) {
        req_error(r, 400, "%s", err.msg);
        return;
    }
    if (covered || h->store == NULL) {
        req_json(r, 200, o);
        return;
    }
    json_decref(o);
    /* Older than the windows: the store has it. */
    struct api_job j = {.kind = API_JOB_HISTORY,
                        .since_ns = clock_wall_ns() - window,
                        .points = (unsigned)points};
    int n = api_series_keys(&h->api, m, j.keys, (unsigned)max, &err);
    j.nkeys = n > 0 ? (unsigned)n : 0;
    req_job(r, &j);
}

static void get_incidents(struct http_req *r, const char *rest)
{
    struct api_job j = {0};
    char buf[64];
    int64_t limit;

    if (rest[0] == '\0') {
        const char *open = arg(r, "open", buf, sizeof(buf));
        if (arg_int(r, "limit", 100, 1, 1000, &limit) != 0) {
            return;
        }
        j.kind = API_JOB_INCIDENTS;
        j.open_only = open != NULL && strcmp(open, "0") != 0 &&
                      strcmp(open, "false") != 0;
        j.limit = (unsigned)limit;
    } else {
        const char *fmt = arg(r, "format", buf, sizeof(buf));
        char *end;
        long long id = strtoll(rest + 1, &end, 10);
        if (rest[0] != '/' || end == rest + 1 || *end != '\0' || id < 0) {
            req_error(r, 404,
                      "no such resource: expected "
                      "/api/v1/incidents/ID");
            return;
        }
        if (fmt != NULL && strcmp(fmt, "md") != 0 && strcmp(fmt, "json")) {
            req_error(r, 400, "format: expected json or md");
            return;
        }
        j.kind = API_JOB_INCIDENT;
        j.id = id;
        j.markdown = fmt != NULL && strcmp(fmt, "md") == 0;
    }
    req_job(r, &j);
}

static void get_index(struct http_req *r)
{
    static const char *const paths[] = {
        "GET /metrics",
        "GET /api/v1/status",
        "GET /api/v1/series?match=SELECTOR&limit=N",
        "GET /api/v1/query?match=SELECTOR&stat=STAT&window=DURATION",
        "GET /api/v1/samples?series=SELECTOR&window=DURATION&points=N",
        "GET /api/v1/rules",
        "GET /api/v1/incidents?open=1&limit=N",
        "GET /api/v1/incidents/ID?format=json|md",
        "GET /api/v1/actions?limit=N",
        "GET /api/v1/plugins",
        "GET /api/v1/diagnostics",
        "POST /api/v1/actions/ID/approve (token)",
        "POST /api/v1/incidents/ID/acknowledge (token)",
        "POST /api/v1/diagnostics/NAME (token; body: JSON arguments)",
        "POST /api/v1/reload (token)",
        "WebSocket /api/v1/feed (protocol vigil-feed)",
    };
    json_t *arr = json_array();

    for (size_t i = 0; arr && i < sizeof(paths) / sizeof(paths[0]); i++) {
        json_array_append_new(arr, json_string(paths[i]));
    }
    req_json(
        r, 200,
        json_pack("{s:s,s:o}", "version", VIGIL_VERSION, "endpoints", arr));
}

static void route_api_get(struct http_req *r, const char *p)
{
    struct http *h = r->h;

    if (!strcmp(p, "") || !strcmp(p, "/")) {
        get_index(r);
    } else if (!strcmp(p, "/status")) {
        req_json(r, 200, api_status(&h->api));
    } else if (!strcmp(p, "/series")) {
        get_series(r, 0);
    } else if (!strcmp(p, "/query")) {
        get_series(r, 1);
    } else if (!strcmp(p, "/samples")) {
        get_samples(r);
    } else if (!strcmp(p, "/rules")) {
        req_json(r, 200, api_rules(&h->api, HTTP_RULE_INSTANCES_MAX));
    } else if (!strncmp(p, "/incidents", 10) &&
               (p[10] == '\0' || p[10] == '/')) {
        get_incidents(r, p + 10);
    } else if (!strcmp(p, "/actions")) {
        struct api_job j = {.kind = API_JOB_ACTIONS};
        int64_t limit;
        if (arg_int(r, "limit", 50, 1, 1000, &limit) == 0) {
            j.limit = (unsigned)limit;
            req_job(r, &j);
        }
    } else if (!strcmp(p, "/plugins")) {
        req_json(r, 200, api_plugins(&h->api));
    } else if (!strcmp(p, "/diagnostics")) {
        req_json(r, 200, api_diagnostics(&h->api));
    } else if (!strcmp(p, "/feed")) {
        req_error(r, 426, "the feed is a WebSocket (protocol vigil-feed)");
    } else {
        req_error(r, 404, "no such resource: %s (GET /api/v1/ lists them)",
                  r->path);
    }
}

static const char *mime_of(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".json", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".map", "application/json"},
    };
    const char *dot = strrchr(path, '.');

    for (size_t i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++) {
        if (strcmp(dot, types[i].ext) == 0) {
            return types[i].type;
        }
    }
    return NULL;
}

/* The dashboard's files. Returns 1 when lws now serves the file (r is
 * then freed by the caller), 0 when r got an answer, -1 to close. */
static int get_static(struct http_req *r)
{
    struct http *h = r->h;
    const char *rel = strcmp(r->path, "/") == 0 ? "/index.html" : r->path;
    const char *mime = mime_of(rel);
    char file[PATH_MAX + HTTP_PATH_MAX];
    struct stat st;
    int n;

    for (const char *p = rel; *p != '\0'; p++) {
        if (!(isalnum((unsigned char)*p) || strchr("/._-", *p) != NULL)) {
            mime = NULL;
        }
    }
    if (strstr(rel, "/.") != NULL || mime == NULL || h->web_dir[0] == '\0') {
        req_error(r, 404, "no such resource: %s", r->path);
        return 0;
    }
    snprintf(file, sizeof(file), "%s%s", h->web_dir, rel);
    if (stat(file, &st) != 0 || !S_ISREG(st.st_mode)) {
        req_error(r, 404, "no such resource: %s", r->path);
        return 0;
    }
    h->requests++;
    n = lws_serve_http_file(r->wsi, file, mime,
                            "cache-control: no-cache\x0d\x0a", 25);
    if (n < 0) {
        return -1;
    }
    if (n > 0 && lws_http_transaction_completed(r->wsi)) {
        return -1;
    }
    return 1;
}

/* ---------------------------------------------------------------- POST */

static void on_diag_reply(void *arg, int status, const char *json)
{
    struct http_diag *d = arg;
    struct http_req *r = d->req;

    d->replied = 1;
    if (r == NULL) {
        return; /* timed out or the client left; freed at the end */
    }
    r->diag = NULL;
    d->req = NULL;
    json_t *v = json ? json_loads(json, JSON_DECODE_ANY, NULL) : NULL;
    if (v == NULL && json != NULL) {
        v = json_string(json);
    }
    if (status != 0) {
        json_t *o = json_pack("{s:s,s:s,s:i}", "diagnostic", d->name, "error",
                              vigil_strerror(status), "status", 502);
        if (o != NULL && v != NULL) {
            json_object_set_new(o, "result", v);
            v = NULL;
        }
        json_decref(v);
        req_json(r, 502, o);
        return;
    }
    req_json(r, 200,
             json_pack("{s:s,s:o}", "diagnostic", d->name, "result",
                       v ? v : json_null()));
}

static void post_diagnostic(struct http_req *r, const char *name)
{
    struct http *h = r->h;
    const struct vigil_diag *vd;
    struct http_diag *d;
    json_t *args;
    char *text;

    if (h->env.plugs == NULL ||
        (vd = plug_find_diag(h->env.plugs, name)) == NULL) {
        req_error(r, 404,
                  "no configured plugin provides the diagnostic '%s' "
                  "(GET /api/v1/diagnostics lists them)",
                  name);
        return;
    }
    if (vd->is_action) {
        req_error(r, 403,
                  "'%s' is an action: actions run from runbooks, with "
                  "their guardrails and audit",
                  name);
        return;
    }
    args = r->body.len ? json_loadb(r->body.p, r->body.len, 0, NULL)
                       : json_object();
    if (!json_is_object(args)) {
        json_decref(args);
        req_error(r, 400,
                  "the body must be a JSON object (the diagnostic's "
                  "arguments)");
        return;
    }
    text = json_dumps(args, JSON_COMPACT);
    json_decref(args);
    d = calloc(1, sizeof(*d));
    if (d == NULL || text == NULL) {
        free(d);
        free(text);
        req_error(r, 500, "out of memory");
        return;
    }
    d->h = h;
    d->req = r;
    snprintf(d->name, sizeof(d->name), "%s", name);
    d->deadline = clock_mono_ns() + HTTP_DIAG_TIMEOUT_NS;
    d->next = h->diags;
    h->diags = d;
    r->diag = d;
    plug_diag_run(h->env.plugs, name, text, on_diag_reply, d);
    free(text);
}

static void route_post(struct http_req *r)
{
    struct http *h = r->h;
    const char *p = r->path;

    if (strncmp(p, "/api/v1/", 8) != 0) {
        req_error(r, 405, "%s takes GET only", p);
        return;
    }
    p += 7;
    if (!strncmp(p, "/actions/", 9)) {
        char *end;
        long long id = strtoll(p + 9, &end, 10);
        if (end == p + 9 || strcmp(end, "/approve") != 0) {
            req_error(r, 404, "expected POST /api/v1/actions/ID/approve");
            return;
        }
        struct api_job j = {.kind = API_JOB_APPROVE, .id = id};
        snprintf(j.who, sizeof(j.who), "http");
        req_job(r, &j);
    } else if (!strncmp(p, "/incidents/", 11)) {
        char *end;
        long long id = strtoll(p + 11, &end, 10);
        if (end == p + 11 || strcmp(end, "/acknowledge") != 0) {
            req_error(r, 404, "expected POST /api/v1/incidents/ID/acknowledge");
            return;
        }
        if (h->env.incidents == NULL ||
            inc_acknowledge(h->env.incidents, id, "http") != 0) {
            req_error(r, 404, "no open incident %lld", id);
            return;
        }
        req_json(
            r, 200,
            json_pack("{s:I,s:b}", "id", (json_int_t)id, "acknowledged", 1));
    } else if (!strncmp(p, "/diagnostics/", 13) && p[13] != '\0') {
        post_diagnostic(r, p + 13);
    } else if (!strcmp(p, "/reload")) {
        if (h->env.reload == NULL) {
            req_error(r, 503, "reload is not available");
            return;
        }
        h->env.reload(h->env.reload_arg);
        unsigned files = 0, rules = 0, q = 0;
        if (h->env.rules != NULL) {
            rb_engine_counts(h->env.rules, &files, &rules, &q);
        }
        req_json(r, 200,
                 json_pack("{s:b,s:i,s:i,s:i}", "reloaded", 1, "runbook_files",
                           (int)files, "rules", (int)rules, "quarantined",
                           (int)q));
    } else {
        req_error(r, 404, "no such resource: POST %s", r->path);
    }
}

/* Is the request allowed? Answers and returns 0 when it is not. */
static int req_allowed(struct http_req *r, int changes_state)
{
    struct http *h = r->h;

    if (changes_state || !r->loopback) {
        if (h->conf.token == NULL || h->conf.token[0] == '\0') {
            req_error(r, 403,
                      changes_state ? "state changes are disabled: set "
                                      "[http] token in the config"
                                    : "only loopback clients are served");
            return 0;
        }
        if (!r->auth_sent) {
            req_error(r, 401, "this needs Authorization: Bearer <token>");
            return 0;
        }
        if (!r->authed) {
            req_error(r, 403, "wrong token");
            return 0;
        }
        return 1;
    }
    if (!r->authed && !r->local_host) {
        req_error(r, 403,
                  "the Host header does not name this machine; use "
                  "localhost or 127.0.0.1, or send the token");
        return 0;
    }
    return 1;
}

/* ---------------------------------------------------------------- lws */

static struct http *http_of(struct lws *wsi)
{
    return lws_context_user(lws_get_context(wsi));
}

static void req_closed(struct http_pss *pss);

/* The request line and headers are in: route it. Returns what the lws
 * callback returns. */
static int on_http(struct lws *wsi, struct http_pss *pss, const char *uri,
                   size_t len)
{
    struct http *h = http_of(wsi);
    struct http_req *r = calloc(1, sizeof(*r));
    char host[256], *uri_ptr = NULL;
    int uri_len = 0, tok;

    if (r == NULL) {
        return -1;
    }
    req_closed(pss); /* a keep-alive connection's previous request */
    pss->req = r;
    r->h = h;
    r->wsi = wsi;
    dbuf_init(&r->body, h->conf.body_max);
    r->method = lws_http_get_uri_and_method(wsi, &uri_ptr, &uri_len);
    snprintf(r->path, sizeof(r->path), "%.*s", (int)len, uri);
    r->loopback = peer_is_loopback(wsi);
    tok = check_token(h, wsi, 0);
    r->auth_sent = tok != 0;
    r->authed = tok == 1;
    r->local_host = hdr_copy(wsi, WSI_TOKEN_HOST, host, sizeof(host)) > 0 &&
                    host_is_local(h, host);
    if (len >= HTTP_PATH_MAX) {
        req_error(r, 414, "the path is too long");
        return 0;
    }
    if (h->stopping) {
        r->close_after = 1;
        req_error(r, 503, "vigil is stopping");
        return 0;
    }
    if (r->method == LWSHUMETH_POST) {
        char cl[32];
        int64_t n = -1;
        if (!req_allowed(r, 1)) {
            r->close_after = 1; /* the body may still come: do not read it */
            return 0;
        }
        if (hdr_copy(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, cl, sizeof(cl)) > 0 &&
            (cfg_parse_int(cl, &n) != 0 || n < 0)) {
            r->close_after = 1;
            req_error(r, 400, "bad Content-Length");
            return 0;
        }
        if (n > (int64_t)h->conf.body_max) {
            r->close_after = 1;
            req_error(r, 413,
                      "the body is larger than [http] body_max (%llu "
                      "bytes)",
                      (unsigned long long)h->conf.body_max);
            return 0;
        }
        if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0) {
            r->close_after = 1;
            req_error(r, 411, "send the body with a Content-Length");
            return 0;
        }
        r->body_expected = n;
        if (n <= 0) { /* no body follows */
            r->dispatched = 1;
            route_post(r);
        }
        return 0;
    }
    if (r->method != LWSHUMETH_GET && r->method != LWSHUMETH_HEAD) {
        r->close_after = 1;
        r->extra = "allow: GET, HEAD, POST";
        req_error(r, 405, "method not allowed");
        return 0;
    }
    if (!req_allowed(r, 0)) {
        return 0;
    }
    if (!strcmp(r->path, "/metrics")) {
        get_metrics(r);
    } else if (!strncmp(r->path, "/api/v1", 7) &&
               (r->path[7] == '\0' || r->path[7] == '/')) {
        route_api_get(r, r->path + 7);
    } else {
        int rc = get_static(r);
        if (rc != 0) {
            pss->req = NULL;
            req_free(r);
            return rc < 0 ? -1 : 0;
        }
    }
    return 0;
}

/* The request is over: free it and wait for the next one. */
static int req_done(struct lws *wsi, struct http_pss *pss)
{
    struct http_req *r = pss->req;
    int close = r->close_after;

    pss->req = NULL;
    req_free(r);
    if (close) {
        return -1;
    }
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* The connection closed: detach what still waits for it. */
static void req_closed(struct http_pss *pss)
{
    struct http_req *r = pss->req;

    if (r == NULL) {
        return;
    }
    pss->req = NULL;
    if (r->job != NULL) {
        r->job->req = NULL;
    }
    if (r->diag != NULL) {
        r->diag->req = NULL;
    }
    req_free(r);
}

static int cb_http(struct lws *wsi, enum lws_callback_reasons reason,
                   void *user, void *in, size_t len)
{
    struct http_pss *pss = user;
    struct http *h;
    struct http_req *r;

    switch (reason) {
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
        h = http_of(wsi);
        if (h->stopping || h->conns >= (unsigned)h->conf.clients_max) {
            h->refused++;
            return 1;
        }
        return 0;
    case LWS_CALLBACK_WSI_CREATE:
        http_of(wsi)->conns++;
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        h = http_of(wsi);
        if (h->conns > 0) {
            h->conns--;
        }
        return 0;
    case LWS_CALLBACK_HTTP:
        return on_http(wsi, pss, in, len);
    case LWS_CALLBACK_HTTP_BODY:
        r = pss->req;
        if (r == NULL || r->dispatched || r->ready) {
            return 0;
        }
        if (dbuf_add(&r->body, in, len) != 0) {
            r->dispatched = 1;
            r->close_after = 1;
            req_error(r, 413,
                      "the body is larger than [http] body_max (%llu "
                      "bytes)",
                      (unsigned long long)r->h->conf.body_max);
        }
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        r = pss->req;
        if (r != NULL && !r->dispatched && !r->ready) {
            r->dispatched = 1;
            route_post(r);
        }
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE: {
        int rc;
        r = pss->req;
        if (r == NULL || !r->ready) {
            return 0;
        }
        rc = req_write(r);
        return rc < 0 ? -1 : rc == 1 ? req_done(wsi, pss) : 0;
    }
    case LWS_CALLBACK_HTTP_FILE_COMPLETION:
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    case LWS_CALLBACK_CLOSED_HTTP:
        req_closed(pss);
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* ---------------------------------------------------------------- feed */

static void feed_wake(void *user)
{
    lws_callback_on_writable(user);
}

static int cb_feed(struct lws *wsi, enum lws_callback_reasons reason,
                   void *user, void *in, size_t len)
{
    struct http_pss *pss = user;
    struct http *h = http_of(wsi);
    const char *frame;
    size_t flen;
    int rc;

    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        char origin[256];
        int tok = check_token(h, wsi, 1);
        if (h->stopping || tok < 0 || (!peer_is_loopback(wsi) && tok != 1)) {
            return 1;
        }
        /* A page from another site may not read the feed (cross-site
         * WebSocket hijacking): its Origin must name this machine. */
        if (tok != 1 &&
            hdr_copy(wsi, WSI_TOKEN_ORIGIN, origin, sizeof(origin)) > 0) {
            const char *o = strstr(origin, "://");
            if (o == NULL || !host_is_local(h, o + 3)) {
                return 1;
            }
        }
        return 0;
    }
    case LWS_CALLBACK_ESTABLISHED:
        dbuf_init(&pss->rx, 8192);
        if (feed_client_create(h->feed, feed_wake, wsi, &pss->fc) != 0) {
            return -1;
        }
        return 0;
    case LWS_CALLBACK_RECEIVE:
        if (pss->fc == NULL) {
            return -1;
        }
        if (!pss->rx_over && dbuf_add(&pss->rx, in, len) != 0) {
            pss->rx_over = 1; /* read the rest, then close */
            dbuf_reset(&pss->rx);
        }
        if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
            if (pss->rx_over) {
                feed_client_drop(pss->fc, "message too large (8 KiB at most)");
            } else {
                feed_client_receive(pss->fc, pss->rx.p, pss->rx.len);
            }
            dbuf_reset(&pss->rx);
        }
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (pss->fc == NULL) {
            return -1;
        }
        rc = feed_client_next(pss->fc, &frame, &flen);
        if (rc < 0) {
            /* lws 4.1 sends no close frame when a callback returns -1,
             * lws_close_reason() or not: write one (unmasked, as a
             * server's) with the reason, then hang up. */
            unsigned char close[4 + 123];
            size_t n = flen > 120 ? 120 : flen;
            close[0] = 0x88; /* FIN, opcode close */
            close[1] = (unsigned char)(n + 2);
            close[2] = (unsigned char)(LWS_CLOSE_STATUS_POLICY_VIOLATION >> 8);
            close[3] =
                (unsigned char)(LWS_CLOSE_STATUS_POLICY_VIOLATION & 0xff);
            memcpy(close + 4, frame, n);
            http_write(h, wsi, close, n + 4, LWS_WRITE_RAW);
            return -1;
        }
        if (rc == 1) {
            if (http_write(h, wsi, frame, flen, LWS_WRITE_TEXT) < 0) {
                return -1;
            }
            lws_callback_on_writable(wsi);
        }
        return 0;
    case LWS_CALLBACK_CLOSED:
        feed_client_destroy(pss->fc);
        pss->fc = NULL;
        dbuf_fini(&pss->rx);
        return 0;
    default:
        break;
    }
    return 0;
}

/* ---------------------------------------------------------------- events */

static void on_transition(void *arg, const struct rule_event *ev,
                          const char *file)
{
    struct http *h = arg;
    json_t *o;
    char *text;

    (void)file;
    if (h->stopping || feed_client_count(h->feed) == 0) {
        return;
    }
    o = json_pack("{s:s,s:s,s:s,s:s,s:I,s:s,s:b}", "type", "transition", "rule",
                  ev->def->name, "from", rule_state_name(ev->from), "to",
                  rule_state_name(ev->to), "ts_ms",
                  (json_int_t)(ev->ts / 1000000), "reason",
                  ev->reason ? ev->reason : "", "flapping", ev->flapping > 0);
    if (o == NULL) {
        return;
    }
    json_object_set_new(
        o, "value", isfinite(ev->value) ? json_real(ev->value) : json_null());
    if (ev->def->kind == RULE_THRESHOLD) {
        json_object_set_new(
            o, "series", json_string(bus_series_key(h->env.bus, ev->series)));
    }
    text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (text != NULL) {
        feed_event(h->feed, FEED_TRANSITION, text);
    }
    free(text);
}

static void on_incident(void *arg, const char *what, int64_t id,
                        const char *detail)
{
    struct http *h = arg;
    int is_action = strcmp(what, "action") == 0;
    json_t *o;
    char *text;

    if (h->stopping || feed_client_count(h->feed) == 0) {
        return;
    }
    o = json_pack("{s:s,s:s,s:I,s:s,s:I}", "type",
                  is_action ? "action" : "incident", "event", what, "incident",
                  (json_int_t)id, "detail", detail ? detail : "", "ts_ms",
                  (json_int_t)(clock_wall_ns() / 1000000));
    text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (text != NULL) {
        feed_event(h->feed, is_action ? FEED_ACTION : FEED_INCIDENT, text);
    }
    free(text);
}

/* ---------------------------------------------------------------- tick */

static void on_tick(struct sched_timer *t, int64_t boundary_ns)
{
    struct http *h = t->data;
    struct bus *bus = h->env.bus;
    int64_t now = clock_mono_ns();

    bus_publish(bus, h->id_requests, boundary_ns, (double)h->requests);
    bus_publish(bus, h->id_errors, boundary_ns, (double)h->errors);
    bus_publish(bus, h->id_refused, boundary_ns, (double)h->refused);
    bus_publish(bus, h->id_conns, boundary_ns, h->conns);
    bus_publish(bus, h->id_clients, boundary_ns, feed_client_count(h->feed));
    bus_publish(bus, h->id_dropped, boundary_ns,
                (double)feed_dropped_total(h->feed));
    bus_publish(bus, h->id_messages, boundary_ns,
                (double)feed_messages_total(h->feed));
    if (h->env.incidents != NULL) {
        bus_publish(bus, h->id_incidents, boundary_ns,
                    inc_open_count(h->env.incidents));
    }
    /* Diagnostics that never answered, and those done with. */
    for (struct http_diag **p = &h->diags, *d; (d = *p) != NULL;) {
        if (d->req == NULL && d->replied) {
            *p = d->next;
            free(d);
            continue;
        }
        p = &d->next;
        if (d->req != NULL && now > d->deadline) {
            struct http_req *r = d->req;
            d->req = NULL;
            r->diag = NULL;
            req_error(r, 504, "the diagnostic '%s' did not answer in %lld s",
                      d->name, (long long)(HTTP_DIAG_TIMEOUT_NS / 1000000000));
        }
    }
}

static int self_series(struct http *h)
{
    static const struct {
        const char *name;
        size_t off;
    } s[] = {
        {"vigil.http.requests_total", offsetof(struct http, id_requests)},
        {"vigil.http.errors_total", offsetof(struct http, id_errors)},
        {"vigil.http.refused_total", offsetof(struct http, id_refused)},
        {"vigil.http.connections", offsetof(struct http, id_conns)},
        {"vigil.http.feed_clients", offsetof(struct http, id_clients)},
        {"vigil.http.feed_dropped_total", offsetof(struct http, id_dropped)},
        {"vigil.http.feed_messages_total", offsetof(struct http, id_messages)},
        {"vigil.incidents.open", offsetof(struct http, id_incidents)},
    };
    struct vigil_err err = {0};

    for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
        vigil_series_id *id = (vigil_series_id *)((char *)h + s[i].off);
        if (bus_intern(h->env.bus, s[i].name, NULL, 0, id, &err) != 0) {
            log_error("http", "%s", err.msg);
            return err.code;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- life */

int http_create(const struct http_conf *c, const struct http_env *env,
                struct http **out)
{
    struct http *h = calloc(1, sizeof(*h));
    struct feed_limits lim = {.queue_max = (size_t)c->feed_queue,
                              .frame_max = 64 * 1024,
                              .subs_max = (unsigned)c->feed_subscriptions_max,
                              .message_max = 8192};
    char buf[PATH_MAX];

    *out = NULL;
    if (h == NULL) {
        return VIGIL_ENOMEM;
    }
    h->conf = *c;
    h->env = *env;
    dbuf_init(&h->scratch, LWS_PRE + c->response_max + 64);
    if (feed_create(env->bus, &lim, &h->feed) != 0 || self_series(h) != 0 ||
        (env->store_path != NULL &&
         api_store_create(env->store_path, &h->store) != 0)) {
        http_destroy(h);
        return VIGIL_ENOMEM;
    }
    /* The dashboard: [http] web_dir, else next to the binary (build
     * tree: <build>/web, where CMake copies web/ with uPlot), else
     * <prefix>/share/vigil/web once installed. */
    if (c->web_dir != NULL) {
        snprintf(buf, sizeof(buf), "%s", c->web_dir);
    } else {
        snprintf(buf, sizeof(buf), "%s/web", paths_exe_dir());
        if (access(buf, F_OK) != 0) {
            snprintf(buf, sizeof(buf), "%s/../share/vigil/web",
                     paths_exe_dir());
        }
    }
    if (realpath(buf, h->web_dir) == NULL) {
        snprintf(h->web_dir, sizeof(h->web_dir), "%s", buf);
    }
    h->api = (struct api_ctx){.bus = env->bus,
                              .rules = env->rules,
                              .incidents = env->incidents,
                              .plugs = env->plugs,
                              .started_ns = clock_wall_ns(),
                              .have_store = env->store_path != NULL,
                              .listen_url = h->url};
    if (env->rules != NULL) {
        rb_engine_observe(env->rules, on_transition, h);
    }
    if (env->incidents != NULL) {
        inc_observe(env->incidents, on_incident, h);
    }
    *out = h;
    return 0;
}

static void lws_log(int level, const char *line)
{
    char text[512];
    size_t n;

    snprintf(text, sizeof(text), "%s", line);
    n = strlen(text);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r')) {
        text[--n] = '\0';
    }
    if (level & LLL_ERR) {
        log_warn("http", "libwebsockets: %s", text);
    } else {
        log_debug("http", "libwebsockets: %s", text);
    }
}

/* Count libwebsockets' own handles: their data is the context. */
static void count_lws(uv_handle_t *hd, void *arg)
{
    void **x = arg;

    if (hd->data == x[0]) {
        (*(int *)x[1])++;
    }
}

static void on_reaper_closed(uv_handle_t *hd)
{
    struct http *h = hd->data;

    h->reaper_open = 0;
}

/* The second half of destroying a context on a foreign loop: once
 * libwebsockets' handles are closed (docs: integration notes). */
static void on_reaper(uv_timer_t *t)
{
    struct http *h = t->data;
    int n = 0;
    void *x[2] = {h->ctx, &n};

    if (h->ctx != NULL) {
        uv_walk(h->env.loop, count_lws, x);
        if (n > 0) {
            return;
        }
        lws_context_destroy(h->ctx);
        h->ctx = NULL;
    }
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, on_reaper_closed);
}

/* Phase 1 (unless lws already did it: a failed create), then the
 * reaper for the rest. */
static void begin_destroy(struct http *h, int phase1)
{
    if (phase1) {
        lws_context_destroy(h->ctx); /* closes the connections */
    }
    uv_timer_init(h->env.loop, &h->reaper);
    h->reaper.data = h;
    h->reaper_open = 1;
    uv_timer_start(&h->reaper, on_reaper, 1, 1);
}

int http_start(struct http *h)
{
    struct lws_context_creation_info info;
    void *loops[1] = {h->env.loop};
    struct lws_vhost *vh;
    int port;

    memset(&info, 0, sizeof(info));
    h->protocols[0] = (struct lws_protocols){
        .name = HTTP_PROTO_HTTP,
        .callback = cb_http,
        .per_session_data_size = sizeof(struct http_pss),
    };
    h->protocols[1] = (struct lws_protocols){
        .name = HTTP_PROTO_FEED,
        .callback = cb_feed,
        .per_session_data_size = sizeof(struct http_pss),
        .rx_buffer_size = 4096,
    };
    /* Browsers send no Sec-WebSocket-Protocol: make the feed the
     * default, or their upgrades would reach the HTTP handler. */
    h->pvo_default =
        (struct lws_protocol_vhost_options){NULL, NULL, "default", "1"};
    h->pvo = (struct lws_protocol_vhost_options){NULL, &h->pvo_default,
                                                 HTTP_PROTO_FEED, ""};
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_DISABLE_IPV6 *
                                                 !strchr(h->conf.listen, ':');
    info.foreign_loops = loops;
    info.pcontext = &h->ctx;
    info.port = (int)h->conf.port;
    info.iface = h->conf.listen;
    info.protocols = h->protocols;
    info.pvo = &h->pvo;
    info.vhost_name = "default";
    info.user = h;
    info.server_string = "vigil";
    info.max_http_header_data = 4096;
    info.max_http_header_pool = 32;
    info.timeout_secs = 10;
    info.keepalive_timeout = 30;
    info.fd_limit_per_thread = 1024 + (unsigned)h->conf.clients_max;
    h->ctx = lws_create_context(&info);
    if (h->ctx == NULL) {
        log_error("http", "cannot start the HTTP server (libwebsockets; is "
                          "libwebsockets-evlib-uv installed?); no dashboard");
        return VIGIL_EIO;
    }
    vh = lws_get_vhost_by_name(h->ctx, "default");
    if (vh == NULL) {
        /* A failed vhost (address in use) on a foreign loop still gives a
         * context, already half destroyed. */
        log_error("http",
                  "cannot listen on %s port %lld (in use, or not an "
                  "address of this host); no dashboard",
                  h->conf.listen, (long long)h->conf.port);
        begin_destroy(h, 0);
        return VIGIL_EIO;
    }
    port = lws_get_vhost_listen_port(vh);
    snprintf(h->url, sizeof(h->url), "http://%s%s%s:%d/",
             strchr(h->conf.listen, ':') ? "[" : "", h->conf.listen,
             strchr(h->conf.listen, ':') ? "]" : "", port);
    sched_init(h->env.loop, &h->tick, h->env.interval_ms, 0, on_tick);
    h->tick.data = h;
    sched_start(&h->tick);
    h->tick_open = 1;
    h->started = 1;
    log_info("http", "dashboard at %s (Prometheus: %smetrics, API: %sapi/v1/)",
             h->url, h->url, h->url);
    return 0;
}

void http_stop(struct http *h)
{
    if (h == NULL || h->stopping) {
        return;
    }
    h->stopping = 1;
    /* Jobs not started yet: their clients are about to go. */
    while (h->jobs != NULL) {
        struct http_job *j = h->jobs;
        h->jobs = j->next;
        api_job_fini(&j->j);
        free(j);
    }
    h->jobs_tail = NULL;
    h->njobs = 0;
    if (h->tick_open) {
        sched_close(&h->tick, NULL);
        h->tick_open = 0;
    }
    if (h->started) {
        h->started = 0;
        begin_destroy(h, 1);
    }
}

void http_destroy(struct http *h)
{
    if (h == NULL) {
        return;
    }
    while (h->diags != NULL) {
        struct http_diag *d = h->diags;
        h->diags = d->next;
        free(d);
    }
    api_store_destroy(h->store);
    prom_index_release(h->prom_idx);
    feed_destroy(h->feed);
    dbuf_fini(&h->scratch);
    free(h);
}
