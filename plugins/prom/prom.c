/*
 * prom.c - the prom probe plugin: scrapes an application's Prometheus
 * text-format endpoint (exposition format 0.0.4) every interval and
 * publishes what it exposes on vigil's bus.
 *
 * One instance per `[plugin prom NAME]` section scrapes one URL. collect()
 * starts an HTTP GET through libcurl's multi interface on vigil's loop
 * (plugins/common/curl_uv.c) and returns VIGIL_PENDING; the body is
 * parsed as it arrives (prom_parse.c), each sample staged on its vigil
 * series (prom_map.c), and when the transfer ends the scrape is judged:
 * an HTTP status other than 200, a transport error, a timeout or a body
 * over max_bytes fails it, and nothing it staged is published; otherwise
 * everything is published with the time the scrape started, plus the
 * estimated quantiles of the histograms. host->collect_done() then sets
 * prom.up and prom.collect_ms.
 *
 * Published per scrape besides the target's series (labels: instance):
 *   prom.scrape_ms          the HTTP request, start to last byte (curl)
 *   prom.samples            sample lines read (0 when the scrape failed)
 *   prom.series_dropped     samples not published because their series
 *                           is over max_series or refused by vigil (0
 *                           when the scrape failed)
 *   prom.bad_lines_total    malformed lines since start
 *
 * A malformed line is reported with its line number through host->error
 * (the first PROM_BAD_LINES_LOGGED of a scrape, then a count) and
 * skipped; the rest of the scrape is kept. Timestamps on samples are
 * parsed and ignored: every sample of a scrape carries the scrape's time,
 * so that windows and rules see one consistent point in time.
 *
 * Memory: the parser (with its line buffer) and the series tables are
 * allocated in init() and when a series is first seen; a scrape of known
 * series allocates nothing in this plugin (libcurl keeps its own
 * buffers).
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vigil/plugin.h>

#include "curl_uv.h"
#include "prom_map.h"
#include "prom_parse.h"

/* Malformed lines logged per scrape before they are only counted. */
#define PROM_BAD_LINES_LOGGED 3
#define PROM_URL_SHOWN_MAX 256
#define PROM_MAX_SERIES_LIMIT 10000000

struct prom_config {
    const char *url;
    int64_t timeout_ms;
    struct vigil_list headers;
    const char *bearer_token;
    int tls_verify;
    const char *ca_file;
    uint64_t max_bytes;
    const char *prefix;
    int64_t max_series;
};

static const struct vigil_option prom_options[] = {
    {.key = "url",
     .type = VIGIL_OPT_STRING,
     .offset = offsetof(struct prom_config, url),
     .help = "the endpoint to scrape, http:// or https://",
     .flags = VIGIL_OPT_REQUIRED},
    {.key = "timeout",
     .type = VIGIL_OPT_DURATION,
     .def = "5s",
     .offset = offsetof(struct prom_config, timeout_ms),
     .help = "give up on a scrape after this long (connect included)"},
    {.key = "headers",
     .type = VIGIL_OPT_LIST,
     .offset = offsetof(struct prom_config, headers),
     .help = "extra request headers, one 'Name: value' per line"},
    {.key = "bearer_token",
     .type = VIGIL_OPT_STRING,
     .offset = offsetof(struct prom_config, bearer_token),
     .help = "sent as 'Authorization: Bearer TOKEN'; use ${ENV_VAR}",
     .flags = VIGIL_OPT_SECRET},
    {.key = "tls_verify",
     .type = VIGIL_OPT_BOOL,
     .def = "yes",
     .offset = offsetof(struct prom_config, tls_verify),
     .help = "check the server's TLS certificate and name"},
    {.key = "ca_file",
     .type = VIGIL_OPT_STRING,
     .offset = offsetof(struct prom_config, ca_file),
     .help = "CA certificates (PEM) to check the server with, instead of "
             "the system's"},
    {.key = "max_bytes",
     .type = VIGIL_OPT_BYTES,
     .def = "16MiB",
     .offset = offsetof(struct prom_config, max_bytes),
     .help = "refuse a scrape whose body (decompressed) is larger"},
    {.key = "prefix",
     .type = VIGIL_OPT_STRING,
     .offset = offsetof(struct prom_config, prefix),
     .help = "put in front of every scraped name, joined with '.'"},
    {.key = "max_series",
     .type = VIGIL_OPT_INT,
     .def = "10000",
     .offset = offsetof(struct prom_config, max_series),
     .help = "most series this instance creates; new ones past it are "
             "dropped"},
    {.key = NULL},
};

enum {
    PROM_SELF_SCRAPE_MS,
    PROM_SELF_SAMPLES,
    PROM_SELF_DROPPED,
    PROM_SELF_BAD_LINES,
    PROM_NSELF
};

static const char *const prom_self_names[PROM_NSELF] = {
    [PROM_SELF_SCRAPE_MS] = "prom.scrape_ms",
    [PROM_SELF_SAMPLES] = "prom.samples",
    [PROM_SELF_DROPPED] = "prom.series_dropped",
    [PROM_SELF_BAD_LINES] = "prom.bad_lines_total",
};

struct prom {
    const struct vigil_host *host;
    vigil_instance *inst;
    const struct prom_config *cfg; /* borrowed from the core */
    char url[PROM_URL_SHOWN_MAX];  /* for messages: no user or password */
    int curl_inited;

    CURL *easy;
    struct curl_slist *headers;
    struct curl_uv *cu; /* from start() to stop() */
    struct curl_uv_xfer xfer;
    char curl_err[CURL_ERROR_SIZE];

    struct prom_parser *parser;
    struct prom_map *map;
    vigil_series_id self[PROM_NSELF];

    /* The scrape in flight. */
    int64_t start_ns;
    uint64_t body_bytes;
    long bad_status; /* a non-200 status seen in the body callback */
    int oversize;
    unsigned samples;
    unsigned bad_lines;     /* in this scrape */
    unsigned last_bad_line; /* its line number */
    uint64_t bad_lines_total;
};

/* ------------------------------------------------------------------------
 * Receiving and parsing.
 */

static void prom_bad_line(struct prom *s, unsigned lineno, const char *why)
{
    s->bad_lines++;
    s->bad_lines_total++;
    s->last_bad_line = lineno;
    if (s->bad_lines <= PROM_BAD_LINES_LOGGED) {
        s->host->error(s->inst, "%s: line %u: %s; line skipped", s->url, lineno,
                       why);
    }
}

/* prom_line_cb: stage a sample, report a malformed line. */
static void prom_on_line(void *arg, int kind, const struct prom_sample *sm,
                         unsigned lineno, const char *err)
{
    struct prom *s = arg;
    unsigned first = 0;
    char why[64];

    if (kind == PROM_LINE_ERROR) {
        prom_bad_line(s, lineno, err);
        return;
    }
    if (prom_map_stage(s->map, sm, lineno, &first) == PROM_MAP_DUPLICATE) {
        snprintf(why, sizeof(why), "series already has a sample at line %u",
                 first);
        prom_bad_line(s, lineno, why);
        return;
    }
    s->samples++;
}

/* CURLOPT_WRITEFUNCTION: the body, in pieces. Returning less than n
 * aborts the transfer (CURLE_WRITE_ERROR). */
static size_t prom_on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct prom *s = arg;
    size_t n = size * nmemb;
    long status = 0;

    curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 300 && status < 400) {
        return n; /* a redirect's body, if curl passes it: not ours */
    }
    if (status != 200) {
        s->bad_status = status; /* do not download an error page */
        return 0;
    }
    if (n > s->cfg->max_bytes - s->body_bytes) {
        s->oversize = 1;
        return 0;
    }
    s->body_bytes += n;
    prom_parse_feed(s->parser, data, n, prom_on_line, s);
    return n;
}

/* ------------------------------------------------------------------------
 * Collection.
 */

/* Why the transfer failed, as a VIGIL_E* code after host->error();
 * 0 when the scrape is good. */
static int prom_judge(struct prom *s, CURLcode result,
                      const struct curl_uv_times *t)
{
    if (s->oversize || result == CURLE_FILESIZE_EXCEEDED) {
        s->host->error(s->inst,
                       "%s: body larger than max_bytes (%llu bytes): "
                       "scrape refused",
                       s->url, (unsigned long long)s->cfg->max_bytes);
        return VIGIL_ELIMIT;
    }
    if (s->bad_status != 0) {
        s->host->error(s->inst, "%s: HTTP status %ld", s->url, s->bad_status);
        return VIGIL_EIO;
    }
    if (result == CURLE_OPERATION_TIMEDOUT) {
        s->host->error(s->inst, "%s: timed out after %lld ms (%s)", s->url,
                       (long long)s->cfg->timeout_ms,
                       s->curl_err[0] != '\0' ? s->curl_err
                                              : curl_easy_strerror(result));
        return VIGIL_ETIMEDOUT;
    }
    if (result != CURLE_OK) {
        s->host->error(s->inst, "%s: %s", s->url,
                       s->curl_err[0] != '\0' ? s->curl_err
                                              : curl_easy_strerror(result));
        return VIGIL_EIO;
    }
    if (t->http_status != 200) {
        s->host->error(s->inst, "%s: HTTP status %ld", s->url, t->http_status);
        return VIGIL_EIO;
    }
    return 0;
}

/* curl_uv_done_cb: the scrape's transfer is over. */
static void prom_on_done(struct curl_uv_xfer *x, CURLcode result,
                         const struct curl_uv_times *t)
{
    struct prom *s = x->data;
    struct prom_map_stats st;
    int64_t now = s->host->now_ns(s->inst);
    int rc;

    rc = prom_judge(s, result, t);
    if (rc == 0) {
        prom_parse_finish(s->parser, prom_on_line, s);
        prom_map_commit(s->map, s->start_ns, &st);
    } else {
        /* Nothing of it is published: no samples, none dropped. */
        prom_map_abort(s->map, &st);
        s->samples = 0;
        st.dropped = 0;
    }
    if (s->bad_lines > PROM_BAD_LINES_LOGGED) {
        s->host->error(s->inst,
                       "%s: %u more malformed lines in this scrape, the last "
                       "at line %u",
                       s->url, s->bad_lines - PROM_BAD_LINES_LOGGED,
                       s->last_bad_line);
    }
    s->host->publish(s->inst, s->self[PROM_SELF_SCRAPE_MS], now,
                     (double)t->total_us / 1000.0);
    s->host->publish(s->inst, s->self[PROM_SELF_SAMPLES], now,
                     (double)s->samples);
    s->host->publish(s->inst, s->self[PROM_SELF_DROPPED], now,
                     (double)st.dropped);
    s->host->publish(s->inst, s->self[PROM_SELF_BAD_LINES], now,
                     (double)s->bad_lines_total);
    s->host->collect_done(s->inst, rc);
}

static int prom_collect(void *state)
{
    struct prom *s = state;
    int rc;

    if (s->cu == NULL) {
        return VIGIL_ESTATE;
    }
    if (curl_uv_active(&s->xfer)) {
        return VIGIL_EBUSY; /* the core waits for collect_done: no */
    }
    prom_parser_init(s->parser);
    prom_map_begin(s->map);
    s->start_ns = s->host->now_ns(s->inst);
    s->body_bytes = 0;
    s->bad_status = 0;
    s->oversize = 0;
    s->samples = 0;
    s->bad_lines = 0;
    s->last_bad_line = 0;
    s->curl_err[0] = '\0';
    rc = curl_uv_start(s->cu, &s->xfer);
    if (rc != 0) {
        s->host->error(s->inst, "%s: cannot start the request: %s", s->url,
                       vigil_error_text(rc));
        prom_map_abort(s->map, NULL);
        return rc;
    }
    return VIGIL_PENDING;
}

/* ------------------------------------------------------------------------
 * Life cycle.
 */

static int prom_start(void *state)
{
    struct prom *s = state;
    int rc = curl_uv_create(s->host->loop(s->inst), &s->cu);

    if (rc != 0) {
        s->host->log(s->inst, VIGIL_LOG_ERROR,
                     "cannot set up libcurl on the loop: %s",
                     vigil_error_text(rc));
    }
    return rc;
}

static void prom_stop(void *state)
{
    struct prom *s = state;

    /* A scrape in flight is dropped: the core is stopping. */
    curl_uv_close(s->cu);
    s->cu = NULL;
}

static void prom_destroy(void *state)
{
    struct prom *s = state;

    if (s == NULL) {
        return;
    }
    /* stop() has run if start() did; closing here would leak the
     * driver, since the loop no longer runs. */
    if (s->easy != NULL) {
        curl_easy_cleanup(s->easy);
    }
    curl_slist_free_all(s->headers);
    if (s->curl_inited) {
        curl_uv_global_cleanup();
    }
    prom_map_destroy(s->map);
    free(s->parser);
    free(s);
}

/* Check the options that the core cannot. */
static int prom_config_check(struct prom *s, const struct prom_config *cfg)
{
    size_t i;

    if (cfg->timeout_ms < 1 || cfg->timeout_ms > 24 * 3600 * 1000LL) {
        s->host->log(s->inst, VIGIL_LOG_ERROR,
                     "timeout must be between 1ms and 1d");
        return VIGIL_ECONFIG;
    }
    if (cfg->max_bytes < 1) {
        s->host->log(s->inst, VIGIL_LOG_ERROR, "max_bytes must be above 0");
        return VIGIL_ECONFIG;
    }
    if (cfg->max_series < 1 || cfg->max_series > PROM_MAX_SERIES_LIMIT) {
        s->host->log(s->inst, VIGIL_LOG_ERROR,
                     "max_series must be between 1 and %d",
                     PROM_MAX_SERIES_LIMIT);
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

/* Every option that stays the same from scrape to scrape. */
static int prom_easy_setup(struct prom *s, const struct prom_config *cfg)
{
    char accept[] = "Accept: text/plain;version=0.0.4;q=1,*/*;q=0.1";
    char scrape_timeout[80];
    struct curl_slist *l;
    CURL *e = s->easy;
    CURLcode c = CURLE_OK;
    size_t i;

    snprintf(scrape_timeout, sizeof(scrape_timeout),
             "X-Prometheus-Scrape-Timeout-Seconds: %.3f",
             (double)cfg->timeout_ms / 1000.0);
    l = curl_slist_append(NULL, accept);
    if (l != NULL) {
        s->headers = l;
        l = curl_slist_append(s->headers, scrape_timeout);
    }
    for (i = 0; l != NULL && i < cfg->headers.n; i++) {
        l = curl_slist_append(s->headers, cfg->headers.v[i]);
    }
    if (l == NULL) {
        s->host->log(s->inst, VIGIL_LOG_ERROR, "out of memory");
        return VIGIL_ENOMEM;
    }

#define PROM_SETOPT(opt, val)                                                  \
    do {                                                                       \
        if (c == CURLE_OK) {                                                   \
            c = curl_easy_setopt(e, opt, val);                                 \
        }                                                                      \
    } while (0)
    c = curl_uv_easy_defaults(e, cfg->url, cfg->timeout_ms, cfg->tls_verify,
                              cfg->ca_file);
    PROM_SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    PROM_SETOPT(CURLOPT_FOLLOWLOCATION, 1L);
    PROM_SETOPT(CURLOPT_MAXREDIRS, 5L);
    PROM_SETOPT(CURLOPT_HTTPHEADER, s->headers);
    PROM_SETOPT(CURLOPT_ACCEPT_ENCODING, "");
    PROM_SETOPT(CURLOPT_USERAGENT, "vigil-prom/0.1.0");
    PROM_SETOPT(CURLOPT_WRITEFUNCTION, prom_on_body);
    PROM_SETOPT(CURLOPT_WRITEDATA, (void *)s);
    PROM_SETOPT(CURLOPT_ERRORBUFFER, s->curl_err);
    PROM_SETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)cfg->max_bytes);
    if (cfg->bearer_token != NULL) {
        PROM_SETOPT(CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
        PROM_SETOPT(CURLOPT_XOAUTH2_BEARER, cfg->bearer_token);
    }
#undef PROM_SETOPT
    if (c != CURLE_OK) {
        s->host->log(s->inst, VIGIL_LOG_ERROR, "libcurl: %s",
                     curl_easy_strerror(c));
        return VIGIL_ECONFIG;
    }
    return 0;
}

static int prom_init(const struct vigil_host *host, vigil_instance *inst,
                     const void *config, void **state)
{
    const struct prom_config *cfg = config;
    struct prom *s;
    size_t i;
    int rc;

    /* Every service used here is in the first version of the table. */
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
    s->xfer.done_cb = prom_on_done;
    s->xfer.data = s;

    rc = prom_config_check(s, cfg);
    if (rc == 0) {
        rc = curl_uv_url_shown(s->host, s->inst, cfg->url, "scraped", s->url,
                               sizeof(s->url));
    }
    if (rc != 0) {
        goto out;
    }
    rc = prom_map_create(host, inst, cfg->prefix, (size_t)cfg->max_series,
                         &s->map);
    if (rc == VIGIL_EINVAL) {
        host->log(inst, VIGIL_LOG_ERROR,
                  "prefix '%s' is not a metric name: letters, digits, '_' "
                  "and '.', not starting with a digit or '.'",
                  cfg->prefix);
        rc = VIGIL_ECONFIG;
        goto out;
    }
    s->parser = malloc(sizeof(*s->parser));
    if (rc != 0 || s->parser == NULL) {
        host->log(inst, VIGIL_LOG_ERROR, "out of memory");
        rc = VIGIL_ENOMEM;
        goto out;
    }
    prom_parser_init(s->parser);
    for (i = 0; i < PROM_NSELF; i++) {
        rc = host->series(inst, prom_self_names[i], NULL, 0, &s->self[i]);
        if (rc != 0) {
            host->log(inst, VIGIL_LOG_ERROR, "cannot create %s: %s",
                      prom_self_names[i], vigil_error_text(rc));
            goto out;
        }
    }
    rc = curl_uv_global_init();
    if (rc != 0) {
        host->log(inst, VIGIL_LOG_ERROR, "libcurl global init failed");
        goto out;
    }
    s->curl_inited = 1;
    s->easy = curl_easy_init();
    if (s->easy == NULL) {
        host->log(inst, VIGIL_LOG_ERROR, "out of memory");
        rc = VIGIL_ENOMEM;
        goto out;
    }
    s->xfer.easy = s->easy;
    rc = prom_easy_setup(s, cfg);

out:
    if (rc != 0) {
        prom_destroy(s);
        return rc;
    }
    *state = s;
    return 0;
}

VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {
    .abi_version = VIGIL_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct vigil_plugin),
    .name = "prom",
    .version = "0.1.0",
    .description = "Scrapes a Prometheus text-format endpoint (counters, "
                   "gauges, histograms with estimated quantiles, summaries)",
    .options = prom_options,
    .config_size = sizeof(struct prom_config),
    .init = prom_init,
    .start = prom_start,
    .collect = prom_collect,
    .stop = prom_stop,
    .destroy = prom_destroy,
};
