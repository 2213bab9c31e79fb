/*
 * pg.c - the pg probe plugin: PostgreSQL's activity, databases and
 * statements, with libpq fully asynchronous on the core's loop, and the
 * diagnostics and actions a runbook needs when queries get slow.
 *
 * Each instance (`[plugin pg NAME]`, one server) holds two connections:
 * the collection's, opened at start and reopened with a capped backoff
 * whenever it fails, and one for diagnostics and actions, opened when a
 * request comes and closed after a minute without one. Both set their
 * own statement_timeout and lock_timeout, so that neither a slow catalog
 * nor a lock held by someone else can make vigil wait long, and both have
 * a client-side deadline above that for a server that stops answering.
 *
 * This file holds the options, the life cycle and the connection events
 * (logged once per outage, not once per retry); pg_collect.c and
 * pg_diag.c do the work. See docs/pg.md.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg.h"

/* The first retry waits this long, then twice as long... up to
 * reconnect_max. */
#define PG_BACKOFF_MIN_MS 100
/* Beyond the server's statement_timeout, how long the client waits for
 * an answer before it drops the connection. */
#define PG_DEADLINE_GRACE_MS 2000
/* The diagnostics' connection closes after this long unused. */
#define PG_DIAG_IDLE_MS 60000

static const struct vigil_option pg_options[] = {
    {.key = "dsn",
     .type = VIGIL_OPT_STRING,
     .offset = offsetof(struct pg_config, dsn),
     .help = "libpq connection string or URI (postgresql://user@host/db); "
             "the role needs pg_monitor, and pg_signal_backend for the "
             "actions",
     .flags = VIGIL_OPT_REQUIRED | VIGIL_OPT_SECRET},
    {.key = "statement_timeout",
     .type = VIGIL_OPT_DURATION,
     .def = "5s",
     .offset = offsetof(struct pg_config, statement_timeout_ms),
     .help = "statement_timeout and lock_timeout of the collection's "
             "session"},
    {.key = "diag_timeout",
     .type = VIGIL_OPT_DURATION,
     .def = "30s",
     .offset = offsetof(struct pg_config, diag_timeout_ms),
     .help = "statement_timeout and lock_timeout of the diagnostics' "
             "session"},
    {.key = "connect_timeout",
     .type = VIGIL_OPT_DURATION,
     .def = "5s",
     .offset = offsetof(struct pg_config, connect_timeout_ms),
     .help = "give up on a connection attempt after this long (name "
             "lookup included)"},
    {.key = "reconnect_max",
     .type = VIGIL_OPT_DURATION,
     .def = "2s",
     .offset = offsetof(struct pg_config, reconnect_max_ms),
     .help = "the longest wait between two connection attempts (from "
             "100ms, doubling)"},
    {.key = "top",
     .type = VIGIL_OPT_INT,
     .def = "10",
     .offset = offsetof(struct pg_config, top),
     .help = "statements of pg_stat_statements published, by total "
             "execution time (1 to 100)"},
    {.key = "max_statements",
     .type = VIGIL_OPT_INT,
     .def = "200",
     .offset = offsetof(struct pg_config, max_statements),
     .help = "queryids that may ever get series (they stay on the bus); "
             "later newcomers to the top are not published"},
    {.key = "databases",
     .type = VIGIL_OPT_LIST,
     .offset = offsetof(struct pg_config, databases),
     .help = "databases with per-database series (shell globs); default: "
             "all but template0 and template1"},
    {.key = NULL},
};

static struct pg *pg_all;

struct pg *pg_instances(void)
{
    return pg_all;
}

/* ------------------------------------------------------------------------
 * Connection events.
 */

static double pg_secs_since(const struct pg *s, int64_t ns)
{
    return (double)(s->host->now_ns(s->inst) - ns) / 1e9;
}

static void pg_col_state(void *arg, int up, const char *msg)
{
    struct pg *s = arg;
    const struct vigil_host *h = s->host;

    if (up) {
        if (s->down && s->ever_up) {
            h->log(s->inst, VIGIL_LOG_INFO,
                   "reconnected to %s after %.1f s (backend pid %d)",
                   s->dsn.shown, pg_secs_since(s, s->down_ns),
                   pg_conn_backend_pid(s->col));
        } else {
            h->log(s->inst, VIGIL_LOG_INFO,
                   "connected to %s (PostgreSQL %s, backend pid %d)",
                   s->dsn.shown, pg_conn_server_version(s->col),
                   pg_conn_backend_pid(s->col));
        }
        s->down = 0;
        s->ever_up = 1;
        pg_collect_conn_up(s);
        return;
    }
    if (!s->down && !s->stopping) {
        /* Once per outage: the retries are counted in pg.errors_total. */
        h->log(s->inst, VIGIL_LOG_WARN,
               "%s: %s; retrying, at most %lld ms apart", s->dsn.shown, msg,
               (long long)s->cfg->reconnect_max_ms);
        s->down = 1;
        s->down_ns = h->now_ns(s->inst);
    }
    pg_collect_conn_down(s, msg);
}

/* ------------------------------------------------------------------------
 * Life cycle.
 */

static int pg_start(void *state)
{
    struct pg *s = state;

    s->started = 1;
    pg_conn_start(s->col);
    return 0;
}

static void pg_stop(void *state)
{
    struct pg *s = state;

    s->stopping = 1;
    pg_diag_stop(s);
    pg_conn_close(s->dg);
    pg_conn_close(s->col);
}

static void pg_destroy(void *state)
{
    struct pg *s = state;
    struct pg **pp;

    if (s == NULL) {
        return;
    }
    for (pp = &pg_all; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    pg_conn_destroy(s->col);
    pg_conn_destroy(s->dg);
    pg_collect_fini(s);
    pg_dsn_fini(&s->dsn);
    free(s);
}

/* The checks the options table cannot express. */
static int pg_config_check(struct pg *s, const struct pg_config *cfg)
{
    static const struct {
        const char *key;
        size_t off;
        int64_t lo, hi;
    } ranges[] = {
        {"statement_timeout", offsetof(struct pg_config, statement_timeout_ms),
         10, 3600 * 1000},
        {"diag_timeout", offsetof(struct pg_config, diag_timeout_ms), 10,
         3600 * 1000},
        {"connect_timeout", offsetof(struct pg_config, connect_timeout_ms), 100,
         300 * 1000},
        {"reconnect_max", offsetof(struct pg_config, reconnect_max_ms),
         PG_BACKOFF_MIN_MS, 3600 * 1000},
    };

    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
        int64_t v = *(const int64_t *)((const char *)cfg + ranges[i].off);

        if (v < ranges[i].lo || v > ranges[i].hi) {
            s->host->log(s->inst, VIGIL_LOG_ERROR,
                         "%s must be between %lldms and %llds", ranges[i].key,
                         (long long)ranges[i].lo,
                         (long long)(ranges[i].hi / 1000));
            return VIGIL_ECONFIG;
        }
    }
    if (cfg->top < 1 || cfg->top > PG_TOP_MAX) {
        s->host->log(s->inst, VIGIL_LOG_ERROR, "top must be between 1 and %d",
                     PG_TOP_MAX);
        return VIGIL_ECONFIG;
    }
    if (cfg->max_statements < cfg->top || cfg->max_statements > 10000) {
        s->host->log(s->inst, VIGIL_LOG_ERROR,
                     "max_statements must be between top (%lld) and 10000",
                     (long long)cfg->top);
        return VIGIL_ECONFIG;
    }
    for (size_t i = 0; i < cfg->databases.n; i++) {
        const char *d = cfg->databases.v[i];

        if (d[0] == '\0' || strlen(d) >= PG_NAME_MAX) {
            s->host->log(s->inst, VIGIL_LOG_ERROR,
                         "databases: '%s' is not a database name or pattern",
                         d);
            return VIGIL_ECONFIG;
        }
    }
    return 0;
}

static int pg_conns_create(struct pg *s)
{
    const struct pg_config *cfg = s->cfg;
    struct pg_conn_opts o = {
        .dsn = &s->dsn,
        .setup_sql = s->col_setup,
        .connect_timeout_ms = cfg->connect_timeout_ms,
        .query_timeout_ms = cfg->statement_timeout_ms + PG_DEADLINE_GRACE_MS,
        .persistent = 1,
        .backoff_min_ms = PG_BACKOFF_MIN_MS,
        .backoff_max_ms = cfg->reconnect_max_ms,
        .what = "collection",
    };
    int rc;

    /* jit off: compiling a monitoring query costs more than running it. */
    snprintf(s->col_setup, sizeof(s->col_setup),
             "SET statement_timeout = %lld; SET lock_timeout = %lld; "
             "SET jit = off",
             (long long)cfg->statement_timeout_ms,
             (long long)cfg->statement_timeout_ms);
    snprintf(s->dg_setup, sizeof(s->dg_setup),
             "SET statement_timeout = %lld; SET lock_timeout = %lld; "
             "SET jit = off",
             (long long)cfg->diag_timeout_ms, (long long)cfg->diag_timeout_ms);
    rc = pg_conn_create(s->host, s->inst, &o, pg_col_state, s, &s->col);
    if (rc == 0) {
        o.setup_sql = s->dg_setup;
        o.query_timeout_ms = cfg->diag_timeout_ms + PG_DEADLINE_GRACE_MS;
        o.persistent = 0;
        o.idle_close_ms = PG_DIAG_IDLE_MS;
        o.what = "diagnostics";
        rc = pg_conn_create(s->host, s->inst, &o, NULL, s, &s->dg);
    }
    return rc;
}

static int pg_init(const struct vigil_host *host, vigil_instance *inst,
                   const void *config, void **state)
{
    const struct pg_config *cfg = config;
    char err[512];
    struct pg *s;
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
    rc = pg_config_check(s, cfg);
    if (rc == 0) {
        rc = pg_dsn_parse(&s->dsn, cfg->dsn, err, sizeof(err));
        if (rc != 0) {
            host->log(inst, VIGIL_LOG_ERROR, "%s", err);
        }
    }
    if (rc == 0) {
        rc = pg_conns_create(s);
    }
    if (rc == 0) {
        rc = pg_collect_init(s);
    }
    if (rc == 0) {
        rc = pg_diag_register(s); /* the core sends each its requests */
    }
    if (rc != 0) {
        pg_destroy(s);
        return rc;
    }
    /* Appended, in the config's order, for requests that name an
     * instance the core did not find (pg_diag.c says which exist). */
    struct pg **tail = &pg_all;
    while (*tail != NULL) {
        tail = &(*tail)->next;
    }
    *tail = s;
    *state = s;
    return 0;
}

VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {
    .abi_version = VIGIL_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct vigil_plugin),
    .name = "pg",
    .version = "0.1.0",
    .description = "PostgreSQL: connections, long queries, locks, databases "
                   "and pg_stat_statements' top statements; diagnostics "
                   "pg.slow_queries, pg.running_queries, pg.blocking, "
                   "pg.index_hints, pg.statements; actions pg.cancel, "
                   "pg.terminate",
    .options = pg_options,
    .config_size = sizeof(struct pg_config),
    .init = pg_init,
    .start = pg_start,
    .collect = pg_collect,
    .stop = pg_stop,
    .destroy = pg_destroy,
};
