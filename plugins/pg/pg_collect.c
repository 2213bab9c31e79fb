/*
 * pg_collect.c - the pg plugin's collection.
 *
 * One round trip per interval on the instance's persistent connection: a
 * batch of three statements sent as one simple query (pg_conn_query with
 * no parameters), which the server runs in one implicit transaction, so
 * now() and the statistics snapshot are the same for all three:
 *
 *   1. pg_stat_activity: client connections by state, the longest running
 *      query, the longest idle transaction, sessions waiting on a lock;
 *   2. pg_stat_database: per database, the counters rates come from;
 *   3. pg_extension: whether pg_stat_statements is installed, and where.
 *
 * When it is, a second query reads its top `top` statements by total
 * execution time through pg_stat_statements(false): without the query
 * texts, which pg_stat_statements keeps in a file that the view reads
 * whole on every call. The texts are fetched by a third query, only for
 * the queryids that just entered the top. A failure there (the library
 * not preloaded, no privilege) sets pg.statements.available to 0, says
 * why once in the log, and fails nothing else.
 *
 * Rates are differences between two readings divided by the wall time
 * between the collections; a counter that went back (stats reset, a
 * crash restart, an evicted pg_stat_statements entry) skips that interval
 * instead of publishing a wrong rate. Series are interned once: the fixed
 * ones at init, a database's or a statement's the first time it is seen,
 * so publishing never allocates.
 */
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg.h"

/* Connections by state, the longest query and idle transaction, lock
 * waits. Client backends only: autovacuum, walsenders and the like are
 * not connections an application holds. vigil's own collection query is
 * left out of `active` and of the longest query (it is always running
 * while this runs), but it holds a slot, so it is in the total. */
#define PG_SQL_ACTIVITY                                                        \
    "SELECT current_setting('max_connections')::int,"                          \
    " count(*),"                                                               \
    " count(*) FILTER (WHERE state = 'active'"                                 \
    "  AND pid <> pg_backend_pid()),"                                          \
    " count(*) FILTER (WHERE state = 'idle'),"                                 \
    " count(*) FILTER (WHERE state = 'idle in transaction'),"                  \
    " count(*) FILTER (WHERE state = 'idle in transaction (aborted)'),"        \
    " count(*) FILTER (WHERE state = 'fastpath function call'),"               \
    " count(*) FILTER (WHERE state = 'disabled'),"                             \
    " coalesce(max(extract(epoch FROM now() - query_start))"                   \
    "  FILTER (WHERE state = 'active' AND pid <> pg_backend_pid()), 0),"       \
    " coalesce(max(extract(epoch FROM now() - state_change))"                  \
    "  FILTER (WHERE state LIKE 'idle in transaction%'), 0),"                  \
    " count(*) FILTER (WHERE wait_event_type = 'Lock')"                        \
    " FROM pg_stat_activity WHERE backend_type = 'client backend'"

/* The NULL datname row is shared objects, not a database. */
#define PG_SQL_DATABASES                                                       \
    "SELECT datname, numbackends, xact_commit, xact_rollback, deadlocks,"      \
    " temp_bytes, blks_hit, blks_read"                                         \
    " FROM pg_stat_database WHERE datname IS NOT NULL ORDER BY datname"

/* Where pg_stat_statements is installed in this database (NULL: not). */
#define PG_SQL_PGSS_SCHEMA                                                     \
    "SELECT current_database(), (SELECT quote_ident(n.nspname)"                \
    " FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"       \
    " WHERE e.extname = 'pg_stat_statements')"

static const char pg_sql_batch[] =
    PG_SQL_ACTIVITY ";\n" PG_SQL_DATABASES ";\n" PG_SQL_PGSS_SCHEMA;

/* One row per queryid, summed over users and databases; %s is the
 * extension's schema, %d the top. */
#define PG_SQL_STMTS_FMT                                                       \
    "SELECT queryid, sum(calls), sum(total_exec_time), max(max_exec_time)"     \
    " FROM %s.pg_stat_statements(false) WHERE queryid IS NOT NULL"             \
    " GROUP BY queryid ORDER BY 3 DESC LIMIT %d"

#define PG_SQL_TEXT_FMT                                                        \
    "SELECT queryid, left(min(query), %d) FROM %s.pg_stat_statements(true)"    \
    " WHERE queryid = ANY($1::bigint[]) GROUP BY queryid"

/* How long after a failure pg_stat_statements is read again. */
#define PG_PGSS_RETRY_NS (300 * 1000000000LL)

static const char *const pg_state_names[] = {
    "active",
    "idle",
    "idle_in_transaction",
    "idle_in_transaction_aborted",
    "fastpath",
    "disabled",
};

/* ------------------------------------------------------------------------
 * Helpers.
 */

/* A numeric cell; NAN when NULL or not a number. */
static double pg_val(const PGresult *r, int row, int col)
{
    char *end;
    double v;

    if (PQgetisnull(r, row, col)) {
        return NAN;
    }
    v = strtod(PQgetvalue(r, row, col), &end);
    return *end == '\0' ? v : NAN;
}

static void pg_pub(struct pg *s, vigil_series_id id, double v)
{
    if (!isnan(v)) {
        s->host->publish(s->inst, id, 0, v);
    }
}

/* Finish the collection, once. */
static void pg_finish(struct pg *s, int status, const char *msg)
{
    if (!s->collecting) {
        return;
    }
    s->collecting = 0;
    s->waiting_conn = 0;
    if (s->stopping) {
        return; /* no pg.up = 0 because vigil stops */
    }
    if (status != 0) {
        s->host->error(s->inst, "%s: %s", s->dsn.shown, msg);
    }
    s->host->collect_done(s->inst, status);
}

/* ------------------------------------------------------------------------
 * Activity and databases.
 */

static void pg_activity(struct pg *s, const PGresult *r)
{
    double max, total;

    if (PQntuples(r) != 1 || PQnfields(r) != 11) {
        return;
    }
    max = pg_val(r, 0, 0);
    total = pg_val(r, 0, 1);
    for (int i = 0; i <= PG_S_CONN_DISABLED; i++) {
        pg_pub(s, s->s[PG_S_CONN_ACTIVE + i], pg_val(r, 0, 2 + i));
    }
    pg_pub(s, s->s[PG_S_CONN_TOTAL], total);
    pg_pub(s, s->s[PG_S_CONN_MAX], max);
    if (max > 0) {
        pg_pub(s, s->s[PG_S_CONN_USED_PCT], 100.0 * total / max);
    }
    /* now() is the batch's start: a query that began after it is 0 s. */
    pg_pub(s, s->s[PG_S_QUERY_LONGEST], fmax(pg_val(r, 0, 8), 0.0));
    pg_pub(s, s->s[PG_S_IDLE_TX_LONGEST], fmax(pg_val(r, 0, 9), 0.0));
    pg_pub(s, s->s[PG_S_LOCKS_WAITING], pg_val(r, 0, 10));
    pg_pub(s, s->s[PG_S_RECONNECTS], (double)pg_conn_reconnects(s->col));
}

static int pg_db_wanted(const struct pg *s, const char *name)
{
    const struct vigil_list *l = &s->cfg->databases;

    if (l->n == 0) {
        return strcmp(name, "template0") != 0 && strcmp(name, "template1") != 0;
    }
    for (size_t i = 0; i < l->n; i++) {
        if (fnmatch(l->v[i], name, 0) == 0) {
            return 1;
        }
    }
    return 0;
}

static const char *const pg_db_series[PG_DB_NS] = {
    [PG_DB_S_CONNECTIONS] = "pg.db.connections",
    [PG_DB_S_COMMITS] = "pg.db.commits_per_s",
    [PG_DB_S_ROLLBACKS] = "pg.db.rollbacks_per_s",
    [PG_DB_S_DEADLOCKS] = "pg.db.deadlocks_per_s",
    [PG_DB_S_TEMP_BYTES] = "pg.db.temp_bytes_per_s",
    [PG_DB_S_HIT_PCT] = "pg.db.cache_hit_pct",
};

/* The slot of database name, created with its series on first sight;
 * NULL when there is no room (said once). */
static struct pg_db *pg_db_slot(struct pg *s, const char *name)
{
    struct vigil_label l = {.key = "db", .value = name};
    struct pg_db *d;

    for (size_t i = 0; i < s->ndbs; i++) {
        if (strcmp(s->dbs[i].name, name) == 0) {
            return &s->dbs[i];
        }
    }
    if (s->ndbs == PG_DB_MAX || strlen(name) >= PG_NAME_MAX) {
        if (!s->dbs_full_logged) {
            s->dbs_full_logged = 1;
            s->host->log(s->inst, VIGIL_LOG_WARN,
                         "more than %d databases: '%s' and later ones have "
                         "no pg.db.* series (use `databases` to choose)",
                         PG_DB_MAX, name);
        }
        return NULL;
    }
    d = &s->dbs[s->ndbs];
    memset(d, 0, sizeof(*d));
    snprintf(d->name, sizeof(d->name), "%s", name);
    for (int i = 0; i < PG_DB_NS; i++) {
        if (s->host->series(s->inst, pg_db_series[i], &l, 1, &d->id[i]) != 0) {
            return NULL;
        }
    }
    s->ndbs++;
    return d;
}

/* Publish one database's row: connections now, rates since last time. */
static void pg_db_row(struct pg *s, struct pg_db *d, const PGresult *r, int row)
{
    double cur[PG_DB_NC], delta[PG_DB_NC], dt;
    int ok = d->prev_ns > 0 && s->ts_ns > d->prev_ns;

    pg_pub(s, d->id[PG_DB_S_CONNECTIONS], pg_val(r, row, 1));
    for (int i = 0; i < PG_DB_NC; i++) {
        cur[i] = pg_val(r, row, 2 + i);
        delta[i] = cur[i] - d->prev[i];
        ok = ok && !isnan(cur[i]) && delta[i] >= 0;
    }
    if (ok) {
        dt = (double)(s->ts_ns - d->prev_ns) / 1e9;
        pg_pub(s, d->id[PG_DB_S_COMMITS], delta[PG_DB_C_COMMIT] / dt);
        pg_pub(s, d->id[PG_DB_S_ROLLBACKS], delta[PG_DB_C_ROLLBACK] / dt);
        pg_pub(s, d->id[PG_DB_S_DEADLOCKS], delta[PG_DB_C_DEADLOCKS] / dt);
        pg_pub(s, d->id[PG_DB_S_TEMP_BYTES], delta[PG_DB_C_TEMP_BYTES] / dt);
        /* Only when blocks were read at all: an idle database has no
         * hit ratio, rather than 0 % or 100 %. */
        if (delta[PG_DB_C_HIT] + delta[PG_DB_C_READ] > 0) {
            pg_pub(s, d->id[PG_DB_S_HIT_PCT],
                   100.0 * delta[PG_DB_C_HIT] /
                       (delta[PG_DB_C_HIT] + delta[PG_DB_C_READ]));
        }
    }
    memcpy(d->prev, cur, sizeof(cur));
    d->prev_ns = s->ts_ns;
}

static void pg_databases(struct pg *s, const PGresult *r)
{
    if (PQnfields(r) != 2 + PG_DB_NC) {
        return;
    }
    for (int row = 0; row < PQntuples(r); row++) {
        const char *name = PQgetvalue(r, row, 0);
        struct pg_db *d;

        if (pg_db_wanted(s, name) && (d = pg_db_slot(s, name)) != NULL) {
            pg_db_row(s, d, r, row);
        }
    }
}

/* ------------------------------------------------------------------------
 * pg_stat_statements.
 */

/* Say it once, when the state changes. */
static void pg_pgss_state(struct pg *s, int state, const char *db,
                          const char *why)
{
    const struct vigil_host *h = s->host;

    if (state == s->pgss) {
        return;
    }
    s->pgss = state;
    if (state == PGSS_ABSENT) {
        h->log(s->inst, VIGIL_LOG_WARN,
               "pg_stat_statements is not installed in database '%s': no "
               "pg.statement.* series (pg.statements.available is 0); "
               "install it there with CREATE EXTENSION pg_stat_statements, "
               "the server needing shared_preload_libraries = "
               "'pg_stat_statements'",
               db);
    } else if (state == PGSS_FAILED) {
        h->log(s->inst, VIGIL_LOG_WARN,
               "pg_stat_statements cannot be read: %s; no pg.statement.* "
               "series (pg.statements.available is 0)",
               why);
    } else {
        h->log(s->inst, VIGIL_LOG_INFO,
               "pg_stat_statements is available: the top %lld statements "
               "by total execution time are published",
               (long long)s->cfg->top);
    }
}

/* The slot of a queryid, with its series on first sight; NULL when
 * max_statements queryids have series already (said once). */
static struct pg_stmt *pg_stmt_slot(struct pg *s, int64_t qid, const char *text)
{
    static const char *const names[3] = {"pg.statement.calls_per_s",
                                         "pg.statement.mean_ms",
                                         "pg.statement.max_ms"};
    struct vigil_label l = {.key = "queryid", .value = text};
    struct pg_stmt *st;

    for (size_t i = 0; i < s->nstmts; i++) {
        if (s->stmts[i].queryid == qid) {
            return &s->stmts[i];
        }
    }
    if (s->nstmts == (size_t)s->cfg->max_statements) {
        if (!s->stmts_full_logged) {
            s->stmts_full_logged = 1;
            s->host->log(s->inst, VIGIL_LOG_WARN,
                         "%lld queryids have had series: queryid %s and "
                         "later newcomers to the top are not published "
                         "(raise max_statements)",
                         (long long)s->cfg->max_statements, text);
        }
        return NULL;
    }
    st = &s->stmts[s->nstmts];
    memset(st, 0, sizeof(*st));
    st->queryid = qid;
    for (int i = 0; i < 3; i++) {
        if (s->host->series(s->inst, names[i], &l, 1, &st->id[i]) != 0) {
            return NULL;
        }
    }
    s->nstmts++;
    return st;
}

/* One row of the top: calls per second and the mean time of the calls
 * since the last reading (0 when there were none: a slow statement that
 * stops running no longer holds a rule on it critical); the maximum since
 * the statistics' reset. */
static void pg_stmt_row(struct pg *s, struct pg_stmt *st, const PGresult *r,
                        int row)
{
    double calls = pg_val(r, row, 1), total = pg_val(r, row, 2);
    double dc = calls - st->calls, dtot = total - st->total_ms;

    st->rate = st->mean_ms = NAN;
    st->max_ms = pg_val(r, row, 3);
    if (st->prev_ns > 0 && s->ts_ns > st->prev_ns && dc >= 0 && dtot >= 0) {
        st->rate = dc / ((double)(s->ts_ns - st->prev_ns) / 1e9);
        st->mean_ms = dc > 0 ? dtot / dc : 0.0;
    }
    pg_pub(s, st->id[0], st->rate);
    pg_pub(s, st->id[1], st->mean_ms);
    pg_pub(s, st->id[2], st->max_ms);
    st->calls = calls;
    st->total_ms = total;
    st->prev_ns = s->ts_ns;
}

static void pg_stmts_result(void *arg, const PGresult *r)
{
    struct pg *s = arg;

    s->ntop = 0;
    if (PQnfields(r) != 4) {
        return;
    }
    for (int row = 0; row < PQntuples(r) && s->ntop < (size_t)s->cfg->top;
         row++) {
        const char *text = PQgetvalue(r, row, 0);
        struct pg_stmt *st = pg_stmt_slot(s, strtoll(text, NULL, 10), text);

        if (st != NULL) {
            pg_stmt_row(s, st, r, row);
            s->top[s->ntop++] = (size_t)(st - s->stmts);
        }
    }
}

static void pg_text_result(void *arg, const PGresult *r)
{
    struct pg *s = arg;

    for (int row = 0; PQnfields(r) == 2 && row < PQntuples(r); row++) {
        int64_t qid = strtoll(PQgetvalue(r, row, 0), NULL, 10);

        for (size_t i = 0; i < s->ntop; i++) {
            struct pg_stmt *st = &s->stmts[s->top[i]];

            if (st->queryid == qid && st->query == NULL) {
                st->query = strndup(PQgetvalue(r, row, 1), PG_QUERY_TEXT_MAX);
            }
        }
    }
}

static void pg_text_done(void *arg, int status, const char *msg)
{
    struct pg *s = arg;

    if (status != 0) {
        s->host->log(s->inst, VIGIL_LOG_DEBUG, "statement texts not read: %s",
                     msg);
    }
    pg_finish(s, 0, "");
}

/* Fetch the texts of the statements that entered the top; 1 when a query
 * was sent. */
static int pg_text_fetch(struct pg *s)
{
    size_t n = 0, len = 1;

    s->text_param[0] = '{';
    for (size_t i = 0; i < s->ntop; i++) {
        const struct pg_stmt *st = &s->stmts[s->top[i]];

        if (st->query == NULL && len + 24 < sizeof(s->text_param)) {
            len += (size_t)snprintf(s->text_param + len,
                                    sizeof(s->text_param) - len, "%s%lld",
                                    n++ ? "," : "", (long long)st->queryid);
        }
    }
    snprintf(s->text_param + len, sizeof(s->text_param) - len, "}");
    return n > 0 && pg_conn_submit(s->col, &s->q_text) == 0;
}

static void pg_stmts_done(void *arg, int status, const char *msg)
{
    struct pg *s = arg;

    if (status != 0 && !pg_conn_ready(s->col)) {
        pg_finish(s, status, msg); /* the connection went, not the view */
        return;
    }
    s->host->publish(s->inst, s->s[PG_S_STMTS_AVAILABLE], 0,
                     status == 0 ? 1.0 : 0.0);
    if (status != 0) {
        pg_pgss_state(s, PGSS_FAILED, "", msg);
        s->pgss_retry_ns = s->ts_ns + PG_PGSS_RETRY_NS;
        s->ntop = 0;
        pg_finish(s, 0, "");
        return;
    }
    pg_pgss_state(s, PGSS_OK, "", "");
    if (!pg_text_fetch(s)) {
        pg_finish(s, 0, "");
    }
}

/* The third statement of the batch: the database, pg_stat_statements'
 * schema or NULL. Prepares the statements' queries for that schema. */
static void pg_pgss_where(struct pg *s, const PGresult *r)
{
    const char *db, *schema;

    if (PQntuples(r) != 1 || PQnfields(r) != 2) {
        return;
    }
    db = PQgetvalue(r, 0, 0);
    if (PQgetisnull(r, 0, 1)) {
        s->pgss_schema[0] = '\0';
        pg_pgss_state(s, PGSS_ABSENT, db, "");
        return;
    }
    schema = PQgetvalue(r, 0, 1);
    if (strcmp(schema, s->pgss_schema) != 0 &&
        strlen(schema) < sizeof(s->pgss_schema)) {
        snprintf(s->pgss_schema, sizeof(s->pgss_schema), "%s", schema);
        snprintf(s->stmts_sql, sizeof(s->stmts_sql), PG_SQL_STMTS_FMT, schema,
                 (int)s->cfg->top);
        snprintf(s->text_sql, sizeof(s->text_sql), PG_SQL_TEXT_FMT,
                 PG_QUERY_TEXT_MAX, schema);
    }
}

/* ------------------------------------------------------------------------
 * The batch.
 */

static void pg_batch_result(void *arg, const PGresult *r)
{
    struct pg *s = arg;

    switch (s->nres++) {
    case 0:
        pg_activity(s, r);
        break;
    case 1:
        pg_databases(s, r);
        break;
    case 2:
        pg_pgss_where(s, r);
        break;
    default:
        break;
    }
}

static void pg_batch_done(void *arg, int status, const char *msg)
{
    struct pg *s = arg;

    if (status != 0) {
        pg_finish(s, status, msg);
        return;
    }
    /* After a failure, the view is tried again only every few minutes:
     * each try is an ERROR in the server's log. */
    if (s->pgss_schema[0] == '\0' ||
        (s->pgss == PGSS_FAILED && s->ts_ns < s->pgss_retry_ns)) {
        s->host->publish(s->inst, s->s[PG_S_STMTS_AVAILABLE], 0, 0.0);
        pg_finish(s, 0, "");
        return;
    }
    if (pg_conn_submit(s->col, &s->q_stmts) != 0) {
        pg_finish(s, VIGIL_EIO, "connection lost");
    }
}

static void pg_batch_start(struct pg *s)
{
    s->waiting_conn = 0;
    s->nres = 0;
    if (pg_conn_submit(s->col, &s->q_batch) != 0) {
        pg_finish(s, VIGIL_EIO, pg_conn_error(s->col));
    }
}

int pg_collect(void *state)
{
    struct pg *s = state;

    if (!s->started || s->stopping) {
        return VIGIL_ESTATE;
    }
    if (s->collecting) {
        return VIGIL_EBUSY;
    }
    s->ts_ns = s->host->now_ns(s->inst);
    if (!pg_conn_usable(s->col)) {
        s->host->error(s->inst, "%s: not connected: %s", s->dsn.shown,
                       pg_conn_error(s->col));
        return VIGIL_EIO;
    }
    s->collecting = 1;
    if (pg_conn_ready(s->col)) {
        pg_batch_start(s); /* may finish at once when it cannot start */
    } else {
        s->waiting_conn = 1; /* a connect is under way: wait for it */
    }
    return VIGIL_PENDING;
}

void pg_collect_conn_up(struct pg *s)
{
    if (s->collecting && s->waiting_conn) {
        pg_batch_start(s);
    }
}

void pg_collect_conn_down(struct pg *s, const char *msg)
{
    if (s->collecting && s->waiting_conn) {
        pg_finish(s, VIGIL_EIO, msg);
    }
}

static const char *const pg_fixed_series[PG_NS] = {
    [PG_S_CONN_TOTAL] = "pg.connections.total",
    [PG_S_CONN_MAX] = "pg.connections.max",
    [PG_S_CONN_USED_PCT] = "pg.connections.used_pct",
    [PG_S_QUERY_LONGEST] = "pg.query.longest_s",
    [PG_S_IDLE_TX_LONGEST] = "pg.transaction.longest_idle_s",
    [PG_S_LOCKS_WAITING] = "pg.locks.waiting",
    [PG_S_STMTS_AVAILABLE] = "pg.statements.available",
    [PG_S_RECONNECTS] = "pg.connection.reconnects_total",
};

int pg_collect_init(struct pg *s)
{
    int rc = 0;

    for (int i = 0; rc == 0 && i < PG_NS; i++) {
        struct vigil_label l = {.key = "state"};

        if (i <= PG_S_CONN_DISABLED) {
            l.value = pg_state_names[i];
            rc = s->host->series(s->inst, "pg.connections.count", &l, 1,
                                 &s->s[i]);
        } else {
            rc =
                s->host->series(s->inst, pg_fixed_series[i], NULL, 0, &s->s[i]);
        }
    }
    if (rc != 0) {
        s->host->log(s->inst, VIGIL_LOG_ERROR, "cannot create series: %s",
                     vigil_error_text(rc));
        return rc;
    }
    s->stmts = calloc((size_t)s->cfg->max_statements, sizeof(*s->stmts));
    s->top = calloc((size_t)s->cfg->top, sizeof(*s->top));
    if (s->stmts == NULL || s->top == NULL) {
        s->host->log(s->inst, VIGIL_LOG_ERROR, "out of memory");
        return VIGIL_ENOMEM;
    }
    s->q_batch = (struct pg_conn_query){.sql = pg_sql_batch,
                                        .result_cb = pg_batch_result,
                                        .done_cb = pg_batch_done,
                                        .arg = s};
    s->q_stmts = (struct pg_conn_query){.sql = s->stmts_sql,
                                        .result_cb = pg_stmts_result,
                                        .done_cb = pg_stmts_done,
                                        .arg = s};
    s->text_params[0] = s->text_param;
    s->q_text = (struct pg_conn_query){.sql = s->text_sql,
                                       .nparams = 1,
                                       .params = s->text_params,
                                       .result_cb = pg_text_result,
                                       .done_cb = pg_text_done,
                                       .arg = s};
    return 0;
}

void pg_collect_fini(struct pg *s)
{
    for (size_t i = 0; s->stmts != NULL && i < s->nstmts; i++) {
        free(s->stmts[i].query);
    }
    free(s->stmts);
    free(s->top);
    s->stmts = NULL;
    s->top = NULL;
}
