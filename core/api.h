/*
 * api - the JSON documents of the HTTP API (`/api/v1/...`, docs/api.md),
 * built with jansson from the bus, the runbook engine, the incident
 * manager, the plugin set and the store.
 *
 * Three kinds of answer:
 *
 *   immediate  built on the loop from memory (status, rules, plugins,
 *              diagnostics, samples from the series' windows): bounded
 *              by the number of rules and instances shown;
 *   scans      over the bus (series, query), produced piece by piece
 *              (api_scan_fill) so that 100,000 series never block the
 *              loop;
 *   store jobs incidents, the action audit, approvals and history beyond
 *              the windows: run on the thread pool (api_job_run) on a
 *              store connection of the API's own, opened in tool mode, so
 *              the loop never waits for the database. Incidents are the
 *              JSON of core/report.c (`vigil incidents ... --json`).
 *
 * Everything but api_job_run() runs on the loop thread. The API borrows
 * what struct api_ctx points to.
 */
#ifndef VIGIL_API_H
#define VIGIL_API_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "dbuf.h"
#include "err.h"

struct bus;
struct rb_engine;
struct inc_mgr;
struct plug_set;

struct api_ctx {
    struct bus *bus;
    struct rb_engine *rules;   /* may be NULL */
    struct inc_mgr *incidents; /* may be NULL */
    struct plug_set *plugs;    /* may be NULL */
    int64_t started_ns;        /* wall clock at start */
    int have_store;
    const char *listen_url; /* "http://127.0.0.1:9101/" */
};

/* GET /api/v1/status: version, uptime, counts, rules by state, plugins.
 * Returns a new reference, or NULL when out of memory. */
json_t *api_status(const struct api_ctx *c);

/* GET /api/v1/rules: every rule with its levels, and its instances with
 * state and value (at most max_instances in all; "truncated" says when
 * more exist). NULL when out of memory. */
json_t *api_rules(const struct api_ctx *c, size_t max_instances);

/* GET /api/v1/plugins: every plugin instance seen on the bus (its
 * <name>.up series) with up, collect time and errors. */
json_t *api_plugins(const struct api_ctx *c);

/* GET /api/v1/diagnostics: what plugins registered. */
json_t *api_diagnostics(const struct api_ctx *c);

/* GET /api/v1/samples from the series' windows: the series matching
 * selector (at most max_series), each with its samples over the last
 * window_ns averaged into at most `points` buckets. Returns 0, or
 * VIGIL_EINVAL with err. *covered is 1 when every matched window reaches
 * back over window_ns (so the store is not needed). */
int api_samples(const struct api_ctx *c, const char *selector,
                int64_t window_ns, unsigned points, unsigned max_series,
                json_t **out, int *covered, struct vigil_err *err);

/* The keys of the series matching selector, at most max (for a store
 * job). Returns the number, or VIGIL_EINVAL with err. */
int api_series_keys(const struct api_ctx *c, const char *selector, char **keys,
                    unsigned max, struct vigil_err *err);

/* ---------------------------------------------------------------- scans */

struct api_scan;

/* GET /api/v1/series (stat NULL) and GET /api/v1/query (a window
 * statistic of each series, e.g. "p95" over window_ns). At most limit
 * series. Returns 0, VIGIL_EINVAL (bad selector or statistic, in err) or
 * VIGIL_ENOMEM. */
int api_scan_create(const struct api_ctx *c, const char *selector,
                    const char *stat, int64_t window_ns, unsigned limit,
                    struct api_scan **out, struct vigil_err *err);

/* Append about `want` bytes of the document to out. Returns 1 when it
 * is complete, 0 when there is more, or a negative code. */
int api_scan_fill(struct api_scan *s, struct dbuf *out, size_t want);
void api_scan_destroy(struct api_scan *s); /* accepts NULL */

/* ---------------------------------------------------------------- store */

enum api_job_kind {
    API_JOB_INCIDENTS = 1, /* list: open_only, limit */
    API_JOB_INCIDENT,      /* one: id, markdown */
    API_JOB_ACTIONS,       /* the audit: limit (incidents looked at) */
    API_JOB_APPROVE,       /* id, who */
    API_JOB_HISTORY,       /* keys, since, points */
};

#define API_JOB_KEYS_MAX 8

/* A store job: filled on the loop, run on the thread pool, answered on
 * the loop. */
struct api_job {
    int kind;
    int64_t id;
    int open_only;
    int markdown;
    unsigned limit;
    int64_t since_ns;
    unsigned points;
    char *keys[API_JOB_KEYS_MAX];
    unsigned nkeys;
    char who[64];
    /* The answer. */
    int status;        /* HTTP status */
    const char *ctype; /* content type */
    char *body;        /* malloc'd */
    size_t len;
};

struct api_store;

/* The API's own store connection to path, opened by the first job.
 * Returns 0 or VIGIL_ENOMEM. */
int api_store_create(const char *path, struct api_store **out);
/* Close it; call when no job runs. Accepts NULL. */
void api_store_destroy(struct api_store *st);

/* Run a job (thread pool). Always sets status, ctype and body (a JSON
 * error for failures). */
void api_job_run(struct api_store *st, struct api_job *j);

/* Free a job's keys and body (not the job). Accepts NULL. */
void api_job_fini(struct api_job *j);

/* {"error": msg} with the text of a status, as a new string for a
 * response body. NULL when out of memory. */
char *api_error_body(int status, const char *msg);

#endif
