/*
 * sqlite.c - the sqlite probe plugin: an application's SQLite database,
 * opened read-only, and the time its configured queries take.
 *
 * Every `interval` the collection runs on the thread pool (it can wait for
 * the disk and for the application's locks): it (re)opens the file if it
 * was replaced, runs each query to its last row, timed, and resets it at
 * once so that no read lock outlives the query. The completion publishes,
 * on the loop (labels: query, and instance for named sections):
 *
 *   sqlite.query.time_ms         first step to last row
 *   sqlite.query.rows            rows returned
 *   sqlite.query.fullscan_steps  rows stepped through by full table scans
 *                                (SQLITE_STMTSTATUS_FULLSCAN_STEP)
 *   sqlite.query.busy_total      runs that met a lock past busy_timeout
 *   sqlite.query.errors_total    runs that failed (error, timeout)
 *   sqlite.db.size_bytes         the database file
 *   sqlite.db.wal_bytes          its -wal file (0 without one)
 *
 * A query that meets SQLITE_BUSY (the application commits in rollback
 * mode, or holds an EXCLUSIVE lock) is counted, said once per streak, and
 * run again next tick: a busy database is a figure, not an error storm.
 * sqlite.up is 0 when the file cannot be opened or every query failed.
 *
 * Diagnostics (sqlite_diag.c): sqlite.plan and sqlite.measure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sqlite.h"

static const struct vigil_option sq_options[] = {
    {.key = "file",
     .type = VIGIL_OPT_STRING,
     .offset = offsetof(struct sq_config, file),
     .help = "the application's database file (opened read-only)",
     .flags = VIGIL_OPT_REQUIRED},
    {.key = "query",
     .type = VIGIL_OPT_LIST,
     .offset = offsetof(struct sq_config, query),
     .help = "NAME: SELECT ... - a read to time every interval, labelled "
             "query=NAME; repeat for several; indented lines continue it"},
    {.key = "timeout",
     .type = VIGIL_OPT_DURATION,
     .def = "5s",
     .offset = offsetof(struct sq_config, timeout_ms),
     .help = "interrupt a query that runs longer (counted as an error)"},
    {.key = "busy_timeout",
     .type = VIGIL_OPT_DURATION,
     .def = "100ms",
     .offset = offsetof(struct sq_config, busy_timeout_ms),
     .help = "wait this long for the application's lock before counting "
             "the query busy and trying again next interval"},
    {.key = NULL},
};

static struct sq *sq_all;

/* The live instances; see sqlite.h. */
struct sq *sq_instances(void)
{
    return sq_all;
}

/* The instance named name; see sqlite.h. */
struct sq *sq_instance_find(const char *name)
{
    struct sq *s;

    for (s = sq_all; s != NULL; s = s->next) {
        if (strcmp(s->host->instance_name(s->inst), name) == 0) {
            return s;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------------
 * Collection (thread pool).
 */

static void sq_finalize_all(struct sq *s)
{
    size_t i;

    for (i = 0; i < s->nq; i++) {
        sqlite3_finalize(s->qs[i].stmt);
        s->qs[i].stmt = NULL;
    }
}

static void sq_run_query(struct sq *s, struct sq_qstate *qs)
{
    const struct sq_config *cfg = s->cfg;

    qs->msg[0] = '\0';
    if (qs->refused) {
        qs->status = SQ_REFUSED;
        return;
    }
    if (qs->stmt == NULL) {
        qs->status = sq_conn_prepare(&s->conn, qs->q->sql, 1, &qs->stmt,
                                     qs->msg, sizeof(qs->msg));
        qs->refused = qs->status == SQ_REFUSED;
        if (qs->status != SQ_OK) {
            return;
        }
    }
    qs->status = sq_conn_run(&s->conn, qs->stmt, cfg->timeout_ms, &qs->run,
                             qs->msg, sizeof(qs->msg));
}

static void sq_collect_work(void *arg)
{
    struct sq *s = arg;
    size_t i;

    /* A file replaced under the same name (the application recreated it,
     * a restore) is a new database: read that one. */
    if (s->conn.db != NULL && !sq_conn_same_file(&s->conn, s->cfg->file)) {
        sq_finalize_all(s);
        sq_conn_close(&s->conn);
    }
    s->open_status = SQ_OK;
    if (s->conn.db == NULL) {
        s->open_status = sq_conn_open(&s->conn, s->cfg->file, &s->cancel,
                                      s->cfg->busy_timeout_ms, s->open_msg,
                                      sizeof(s->open_msg));
    }
    for (i = 0; i < s->nq; i++) {
        s->qs[i].status = SQ_CANCELED;
        if (s->open_status == SQ_OK && !atomic_load(&s->cancel)) {
            sq_run_query(s, &s->qs[i]);
        }
    }
    s->size_bytes = sq_file_size(s->cfg->file);
    s->wal_bytes = sq_file_size(s->wal_path);
}

/* ------------------------------------------------------------------------
 * Publishing (loop).
 */

/* Publish one query's result. Returns 1 when it ran, -1 when it failed,
 * 0 when it did not count either way (busy, refused, canceled). */
static int sq_publish_query(struct sq *s, struct sq_qstate *qs)
{
    const struct vigil_host *h = s->host;
    const char *name = qs->q->name;
    int ran = 0;

    switch (qs->status) {
    case SQ_OK:
        h->publish(s->inst, qs->s_ms, 0, qs->run.ms);
        h->publish(s->inst, qs->s_rows, 0, (double)qs->run.rows);
        h->publish(s->inst, qs->s_fullscan, 0, (double)qs->run.fullscan_steps);
        if (qs->busy_streak > 0) {
            h->log(s->inst, VIGIL_LOG_INFO,
                   "query %s: measured again after %llu busy intervals", name,
                   (unsigned long long)qs->busy_streak);
        }
        qs->busy_streak = 0;
        ran = 1;
        break;
    case SQ_BUSY:
        qs->busy_total++;
        if (qs->busy_streak++ == 0) {
            h->log(s->inst, VIGIL_LOG_WARN,
                   "query %s: the database stayed locked for busy_timeout "
                   "(%s); counted in sqlite.query.busy_total and tried "
                   "again every interval",
                   name, qs->msg);
        }
        break;
    case SQ_REFUSED:
        if (!qs->refused_said) {
            qs->refused_said = 1;
            qs->errors_total++;
            h->error(s->inst, "query %s: %s; it is never run", name, qs->msg);
        }
        break;
    case SQ_CANCELED:
        break;
    default: /* SQ_ERROR, SQ_TIMEOUT */
        qs->errors_total++;
        h->error(s->inst, "query %s: %s", name, qs->msg);
        ran = -1;
        break;
    }
    h->publish(s->inst, qs->s_busy, 0, (double)qs->busy_total);
    h->publish(s->inst, qs->s_errors, 0, (double)qs->errors_total);
    return ran;
}

static void sq_collect_after(void *arg, int status)
{
    struct sq *s = arg;
    int ok = 0, failed = 0;
    size_t i;

    s->pending = 0;
    if (status != 0) {
        s->host->collect_done(s->inst, status);
        return;
    }
    if (s->open_status != SQ_OK) {
        s->host->error(s->inst, "cannot open the database: %s", s->open_msg);
        s->host->collect_done(s->inst, VIGIL_EIO);
        return;
    }
    s->host->publish(s->inst, s->s_size, 0, (double)s->size_bytes);
    s->host->publish(s->inst, s->s_wal, 0, (double)s->wal_bytes);
    for (i = 0; i < s->nq; i++) {
        int r = sq_publish_query(s, &s->qs[i]);

        ok += r > 0;
        failed += r < 0;
    }
    s->host->collect_done(s->inst, failed > 0 && ok == 0 ? VIGIL_EIO : 0);
}

static int sq_collect(void *state)
{
    struct sq *s = state;
    int rc;

    if (s->pending || s->stopped) {
        return VIGIL_EBUSY;
    }
    /* Set first: a host may run the work and its completion before
     * work() returns. */
    s->pending = 1;
    rc = s->host->work(s->inst, sq_collect_work, sq_collect_after, s);
    if (rc != 0) {
        s->pending = 0;
        s->host->error(s->inst, "cannot queue the queries: %s",
                       vigil_error_text(rc));
        return rc;
    }
    return VIGIL_PENDING;
}

/* ------------------------------------------------------------------------
 * Life cycle.
 */

static void sq_stop(void *state)
{
    struct sq *s = state;

    s->stopped = 1;
    atomic_store(&s->cancel, 1);
    sq_diag_stop(s);
}

static void sq_destroy(void *state)
{
    struct sq *s = state;
    struct sq **pp;

    if (s == NULL) {
        return;
    }
    for (pp = &sq_all; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    if (s->qs != NULL) {
        sq_finalize_all(s);
    }
    sq_conn_close(&s->conn);
    free(s->qs);
    sq_queries_free(s->queries, s->nq);
    free(s);
}

static int sq_series_create(struct sq *s)
{
    const struct vigil_host *h = s->host;
    size_t i;
    int rc;

    rc = h->series(s->inst, "sqlite.db.size_bytes", NULL, 0, &s->s_size);
    if (rc == 0) {
        rc = h->series(s->inst, "sqlite.db.wal_bytes", NULL, 0, &s->s_wal);
    }
    for (i = 0; rc == 0 && i < s->nq; i++) {
        struct sq_qstate *qs = &s->qs[i];
        struct vigil_label l = {.key = "query", .value = qs->q->name};

        rc = h->series(s->inst, "sqlite.query.time_ms", &l, 1, &qs->s_ms);
        if (rc == 0) {
            rc = h->series(s->inst, "sqlite.query.rows", &l, 1, &qs->s_rows);
        }
        if (rc == 0) {
            rc = h->series(s->inst, "sqlite.query.fullscan_steps", &l, 1,
                           &qs->s_fullscan);
        }
        if (rc == 0) {
            rc = h->series(s->inst, "sqlite.query.busy_total", &l, 1,
                           &qs->s_busy);
        }
        if (rc == 0) {
            rc = h->series(s->inst, "sqlite.query.errors_total", &l, 1,
                           &qs->s_errors);
        }
    }
    if (rc != 0) {
        h->log(s->inst, VIGIL_LOG_ERROR, "cannot create series: %s",
               vigil_error_text(rc));
    }
    return rc;
}

static int sq_config_check(struct sq *s)
{
    const struct sq_config *c = s->cfg;
    char err[SQ_MSG_MAX];
    int n, rc;

    if (c->file[0] == '\0') {
        s->host->log(s->inst, VIGIL_LOG_ERROR, "file must not be empty");
        return VIGIL_ECONFIG;
    }
    n = snprintf(s->wal_path, sizeof(s->wal_path), "%s-wal", c->file);
    if (n < 0 || (size_t)n >= sizeof(s->wal_path)) {
        s->host->log(s->inst, VIGIL_LOG_ERROR, "file: path too long");
        return VIGIL_ECONFIG;
    }
    if (c->timeout_ms < 1) {
        s->host->log(s->inst, VIGIL_LOG_ERROR, "timeout: at least 1ms");
        return VIGIL_ECONFIG;
    }
    if (c->busy_timeout_ms < 0 || c->busy_timeout_ms > 60000) {
        s->host->log(s->inst, VIGIL_LOG_ERROR,
                     "busy_timeout %lld ms: expected 0 to 60s",
                     (long long)c->busy_timeout_ms);
        return VIGIL_ECONFIG;
    }
    rc = sq_queries_parse(&c->query, &s->queries, &s->nq, err, sizeof(err));
    if (rc != 0) {
        s->host->log(s->inst, VIGIL_LOG_ERROR, "%s", err);
    }
    return rc;
}

static int sq_init(const struct vigil_host *host, vigil_instance *inst,
                   const void *config, void **state)
{
    struct sq *s;
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
    s->cfg = config;
    atomic_init(&s->cancel, 0);
    rc = sq_config_check(s);
    if (rc == 0) {
        s->qs = calloc(s->nq > 0 ? s->nq : 1, sizeof(*s->qs));
        rc = s->qs != NULL ? 0 : VIGIL_ENOMEM;
    }
    for (i = 0; rc == 0 && i < s->nq; i++) {
        s->qs[i].q = &s->queries[i];
    }
    if (rc == 0) {
        rc = sq_series_create(s);
    }
    if (rc != 0) {
        sq_destroy(s);
        return rc;
    }
    s->next = sq_all;
    sq_all = s;
    rc = sq_diag_register(s);
    if (rc != 0) {
        /* The metrics work without the diagnostics. */
        host->log(inst, VIGIL_LOG_WARN,
                  "cannot register sqlite.plan and sqlite.measure: %s",
                  vigil_error_text(rc));
    }
    *state = s;
    return 0;
}

VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {
    .abi_version = VIGIL_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct vigil_plugin),
    .name = "sqlite",
    .version = "0.1.0",
    .description = "an application's SQLite database, read-only: time, rows "
                   "and full-scan steps of configured queries, busy counts, "
                   "file and WAL size; diagnostics sqlite.plan and "
                   "sqlite.measure",
    .options = sq_options,
    .config_size = sizeof(struct sq_config),
    .init = sq_init,
    .collect = sq_collect,
    .stop = sq_stop,
    .destroy = sq_destroy,
};
