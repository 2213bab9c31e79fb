/*
 * pg_diag.c - the pg plugin's diagnostics and actions:
 *
 *   pg.slow_queries     pg_stat_statements slower than min_mean_ms on
 *                       average, slowest first (the troubleshooting
 *                       guide's query, with database and user)
 *   pg.running_queries  sessions not idle, longest-running first, with
 *                       what they wait for (the guide's second query)
 *   pg.blocking         sessions waiting on a lock, who holds it
 *                       (pg_blocking_pids), and the root blockers
 *   pg.index_hints      the guide's pg_stats heuristic (many distinct
 *                       values, little correlation, no index leading with
 *                       the column), and tables read mostly by sequential
 *                       scans
 *   pg.statements       the top statements of the last collection, with
 *                       their normalised text (no query: from memory)
 *   pg.cancel           action: pg_cancel_backend() of one pid, or of the
 *                       client queries running longer than min_age
 *   pg.terminate        action: pg_terminate_backend(), the same way
 *
 * Every instance registers them; the core runs a request on the instance
 * its {"instance": NAME} names, else on the first. Requests run one after
 * another on the instance's
 * diagnostics connection, never on the collection's, so a slow catalog
 * query or a queue of requests never delays a collection (see
 * docs/pg.md). Each request is one or two queries; rows become JSON
 * objects by column name and type, so the SQL's aliases are the reply's
 * keys. A request the core gives up on is abandoned: the server is asked
 * to cancel its query, and no reply is sent.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "pg.h"

#define PG_REQS_MAX 16
#define PG_PARAMS_MAX 4
#define PG_PARAM_MAX 256 /* an int[] of vigil's backends, a schema name */
#define PG_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(10))
#define PG_LIMIT_MAX 1000
#define PG_SIGNAL_MAX 100 /* backends one action may signal */

/* Where pg_stat_statements is installed in the connected database. */
static const char pg_sql_pgss[] =
    "SELECT current_database() AS db, (SELECT quote_ident(n.nspname)"
    " FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
    " WHERE e.extname = 'pg_stat_statements') AS schema";

/* %s: pg_stat_statements' schema. */
#define PG_SQL_SLOW_FMT                                                        \
    "SELECT s.queryid::text AS queryid, d.datname AS db,"                      \
    " u.rolname AS \"user\", s.calls, s.mean_exec_time AS mean_ms,"            \
    " s.total_exec_time AS total_ms, s.min_exec_time AS min_ms,"               \
    " s.max_exec_time AS max_ms, s.stddev_exec_time AS stddev_ms, s.rows,"     \
    " round(100.0 * s.shared_blks_hit"                                         \
    "  / nullif(s.shared_blks_hit + s.shared_blks_read, 0), 2) AS hit_pct,"    \
    " left(s.query, 1024) AS query"                                            \
    " FROM %s.pg_stat_statements s"                                            \
    " LEFT JOIN pg_database d ON d.oid = s.dbid"                               \
    " LEFT JOIN pg_roles u ON u.oid = s.userid"                                \
    " WHERE s.mean_exec_time > $1::float8"                                     \
    " ORDER BY s.mean_exec_time DESC LIMIT $2::int"

/* $1 min_age_s, $2 limit, $3 vigil's other backends. */
static const char pg_sql_running[] =
    "SELECT pid, usename AS \"user\", datname AS db,"
    " application_name AS application, client_addr::text AS client,"
    " backend_type, state, wait_event_type, wait_event,"
    " extract(epoch FROM now() - query_start)::float8 AS duration_s,"
    " extract(epoch FROM now() - xact_start)::float8 AS xact_age_s,"
    " query_id::text AS query_id, left(query, 1024) AS query"
    " FROM pg_stat_activity"
    " WHERE state <> 'idle' AND pid <> pg_backend_pid()"
    " AND pid <> ALL ($3::int[])"
    " AND query_start <= now() - make_interval(secs => $1::float8)"
    " ORDER BY query_start LIMIT $2::int";

/* $1 limit. pg_blocking_pids() only for sessions waiting on a lock: it
 * takes the lock manager's locks. */
static const char pg_sql_blocking[] =
    "SELECT w.pid, w.usename AS \"user\", w.datname AS db,"
    " w.wait_event_type, w.wait_event,"
    " extract(epoch FROM now() - w.query_start)::float8 AS duration_s,"
    " left(w.query, 1024) AS query, bp.pids AS blocking_pids,"
    " (SELECT json_agg(json_build_object("
    "   'pid', b.pid, 'user', b.usename, 'db', b.datname,"
    "   'state', b.state, 'backend_type', b.backend_type,"
    "   'xact_age_s', extract(epoch FROM now() - b.xact_start)::float8,"
    "   'state_age_s', extract(epoch FROM now() - b.state_change)::float8,"
    "   'query', left(b.query, 1024)) ORDER BY b.pid)"
    "  FROM pg_stat_activity b WHERE b.pid = ANY (bp.pids)) AS blocked_by"
    " FROM pg_stat_activity w"
    " CROSS JOIN LATERAL (SELECT pg_blocking_pids(w.pid) AS pids) bp"
    " WHERE w.wait_event_type = 'Lock' AND cardinality(bp.pids) > 0"
    " ORDER BY w.query_start LIMIT $1::int";

/* The guide's heuristic, with two corrections: a negative n_distinct is a
 * fraction of the rows (-1: unique), so the estimate is -n_distinct *
 * reltuples (the guide's `n_distinct > 100` misses unique columns); and
 * a correlation near -1 is as ordered as one near 1. A column that leads
 * an index is left out. $1 min_distinct, $2 max_correlation, $3 limit,
 * $4 a schema ('' for every user schema). */
static const char pg_sql_hint_columns[] =
    "SELECT s.schemaname AS schema, s.tablename AS \"table\","
    " s.attname AS \"column\", s.n_distinct::float8 AS n_distinct,"
    " d.est::float8 AS distinct_est, s.correlation::float8 AS correlation,"
    " c.reltuples::float8 AS rows_est,"
    " format('CREATE INDEX ON %I.%I (%I)', s.schemaname, s.tablename,"
    "  s.attname) AS suggestion"
    " FROM pg_stats s"
    " JOIN pg_namespace n ON n.nspname = s.schemaname"
    " JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = s.tablename"
    " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = s.attname"
    " CROSS JOIN LATERAL (SELECT CASE WHEN s.n_distinct < 0"
    "  THEN -s.n_distinct * c.reltuples ELSE s.n_distinct END AS est) d"
    " WHERE c.relkind IN ('r', 'm') AND NOT s.inherited"
    " AND ($4 = '' AND s.schemaname NOT IN ('pg_catalog',"
    "  'information_schema') AND s.schemaname NOT LIKE 'pg\\_toast%'"
    "  AND s.schemaname NOT LIKE 'pg\\_temp%' OR s.schemaname = $4)"
    " AND d.est > $1::float8"
    " AND abs(coalesce(s.correlation, 0)) < $2::float8"
    " AND NOT EXISTS (SELECT 1 FROM pg_index i"
    "  WHERE i.indrelid = c.oid AND i.indkey[0] = a.attnum)"
    " ORDER BY d.est DESC LIMIT $3::int";

/* Tables scanned sequentially more often than through an index. The size
 * is relpages (as of the last VACUUM or ANALYZE): pg_relation_size()
 * would wait for a lock someone holds on the table. $1 min_seq_scans,
 * $2 min_rows, $3 limit. */
static const char pg_sql_hint_tables[] =
    "SELECT t.schemaname AS schema, t.relname AS \"table\", t.seq_scan,"
    " t.seq_tup_read, coalesce(t.idx_scan, 0) AS idx_scan,"
    " t.n_live_tup AS live_rows,"
    " c.relpages::bigint * current_setting('block_size')::bigint"
    "  AS size_bytes,"
    " t.seq_tup_read / greatest(t.seq_scan, 1) AS rows_per_seq_scan,"
    " (SELECT count(*) FROM pg_index i WHERE i.indrelid = t.relid)"
    "  AS indexes"
    " FROM pg_stat_user_tables t JOIN pg_class c ON c.oid = t.relid"
    " WHERE ($4 = '' OR t.schemaname = $4)"
    " AND t.seq_scan >= $1::bigint AND t.n_live_tup >= $2::bigint"
    " AND t.seq_scan > coalesce(t.idx_scan, 0)"
    " ORDER BY t.seq_tup_read DESC LIMIT $3::int";

/* Signal only a client backend that is not vigil's: the CASE keeps the
 * function from being called otherwise, and the row says why. $1 pid,
 * $2 vigil's other backends. */
#define PG_SQL_SIGNAL(fn)                                                      \
    "SELECT a.pid, a.backend_type, a.usename AS \"user\", a.datname AS db,"    \
    " a.application_name AS application, a.state,"                             \
    " extract(epoch FROM now() - a.query_start)::float8 AS query_age_s,"       \
    " left(a.query, 1024) AS query,"                                           \
    " CASE WHEN a.backend_type = 'client backend'"                             \
    "  AND a.pid <> pg_backend_pid() AND a.pid <> ALL ($2::int[])"             \
    "  THEN " fn "(a.pid) END AS signalled"                                    \
    " FROM pg_stat_activity a WHERE a.pid = $1::int"

static const char pg_sql_cancel[] = PG_SQL_SIGNAL("pg_cancel_backend");
static const char pg_sql_terminate[] = PG_SQL_SIGNAL("pg_terminate_backend");

/* The `limit` oldest queries of client backends (not vigil's) running for
 * min_age or more: what a runbook, whose arguments are fixed, can name.
 * MATERIALIZED: the function runs for the rows chosen, never for rows a
 * LIMIT would drop. $1 min_age_s, $2 vigil's other backends, $3 limit. */
#define PG_SQL_SIGNAL_OLD(fn)                                                  \
    "WITH v AS MATERIALIZED (SELECT a.pid, a.backend_type,"                    \
    " a.usename AS \"user\", a.datname AS db,"                                 \
    " a.application_name AS application, a.state,"                             \
    " extract(epoch FROM now() - a.query_start)::float8 AS query_age_s,"       \
    " left(a.query, 1024) AS query"                                            \
    " FROM pg_stat_activity a"                                                 \
    " WHERE a.backend_type = 'client backend' AND a.state = 'active'"          \
    " AND a.pid <> pg_backend_pid() AND a.pid <> ALL ($2::int[])"              \
    " AND a.query_start <= now() - make_interval(secs => $1::float8)"          \
    " ORDER BY a.query_start LIMIT $3::int)"                                   \
    " SELECT v.*, " fn "(v.pid) AS signalled FROM v"

static const char pg_sql_cancel_old[] = PG_SQL_SIGNAL_OLD("pg_cancel_backend");
static const char pg_sql_terminate_old[] =
    PG_SQL_SIGNAL_OLD("pg_terminate_backend");

enum {
    PG_K_SLOW,
    PG_K_RUNNING,
    PG_K_BLOCKING,
    PG_K_HINTS,
    PG_K_STATEMENTS,
    PG_K_CANCEL,
    PG_K_TERMINATE,
    PG_NK
};

struct pg_req {
    struct pg *s;       /* the instance it runs on */
    vigil_request *req; /* NULL once replied to */
    struct pg_req *next;
    int kind, step;
    struct pg_conn_query q;
    const char *params[PG_PARAMS_MAX];
    char pbuf[PG_PARAMS_MAX][PG_PARAM_MAX];
    char sql[2 * PG_SQL_MAX]; /* a statement built for this request */
    json_t *out;              /* the reply under construction */
    json_t *rows;             /* the current query's rows */
    /* Arguments */
    double min_mean_ms, min_age_s, min_distinct, max_correlation;
    long long limit, min_seq_scans, min_rows, pid;
    int by_age; /* an action naming queries by age, not a pid */
    char schema[PG_NAME_MAX];
};

/* ------------------------------------------------------------------------
 * Rows as JSON.
 */

/* "{1,2,3}" (int4[]) as a JSON array. */
static json_t *pg_int_array(const char *v)
{
    json_t *a = json_array();
    char *end;

    for (v += *v == '{'; a != NULL && *v != '\0' && *v != '}'; v = end) {
        long long n = strtoll(v, &end, 10);

        if (end == v) {
            break;
        }
        json_array_append_new(a, json_integer(n));
        end += *end == ',';
    }
    return a;
}

/* One cell, typed by its column's type OID (pg_type.h's values). */
static json_t *pg_cell(const PGresult *r, int row, int col)
{
    const char *v = PQgetvalue(r, row, col);
    json_t *j;
    double d;

    if (PQgetisnull(r, row, col)) {
        return json_null();
    }
    switch (PQftype(r, col)) {
    case 16: /* bool */
        return json_boolean(v[0] == 't');
    case 20: /* int8 */
    case 21: /* int2 */
    case 23: /* int4 */
    case 26: /* oid */
        return json_integer(strtoll(v, NULL, 10));
    case 700:  /* float4 */
    case 701:  /* float8 */
    case 1700: /* numeric */
        d = strtod(v, NULL);
        return isfinite(d) ? json_real(d) : json_null();
    case 114:  /* json */
    case 3802: /* jsonb */
        j = json_loads(v, JSON_DECODE_ANY, NULL);
        return j != NULL ? j : json_null();
    case 1007: /* int4[] */
        return pg_int_array(v);
    default:
        /* Text: UTF-8, as the session's client_encoding is; anything
         * else (a DSN that sets another encoding) is left out. */
        j = json_string(v);
        return j != NULL ? j : json_null();
    }
}

/* Append r's rows to rows as objects keyed by column name. */
static void pg_rows_append(json_t *rows, const PGresult *r)
{
    for (int row = 0; row < PQntuples(r); row++) {
        json_t *o = json_object();

        for (int col = 0; o != NULL && col < PQnfields(r); col++) {
            json_object_set_new(o, PQfname(r, col), pg_cell(r, row, col));
        }
        json_array_append_new(rows, o);
    }
}

/* ------------------------------------------------------------------------
 * Requests: reply, steps.
 */

static void pg_req_free(struct pg_req *rq)
{
    struct pg_req **pp;

    for (pp = &rq->s->reqs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == rq) {
            *pp = rq->next;
            rq->s->nreqs--;
            break;
        }
    }
    json_decref(rq->out);
    json_decref(rq->rows);
    free(rq);
}

/* Reply o (taken; NULL: out of memory) and end the request. */
static void pg_req_reply(struct pg_req *rq, int status, json_t *o)
{
    char *text = o != NULL ? json_dumps(o, PG_JSON_FLAGS) : NULL;

    if (rq->req != NULL) {
        rq->s->host->reply(rq->req, text != NULL ? status : VIGIL_ENOMEM, text);
        rq->req = NULL;
    }
    free(text);
    json_decref(o);
    pg_req_free(rq);
}

static void pg_req_fail(struct pg_req *rq, int status, const char *msg)
{
    pg_req_reply(rq, status, json_pack("{s:s}", "error", msg));
}

static void pg_params(struct pg_req *rq, int n, const char *const *v)
{
    for (int i = 0; i < n; i++) {
        snprintf(rq->pbuf[i], sizeof(rq->pbuf[i]), "%s", v[i]);
        rq->params[i] = rq->pbuf[i];
    }
    rq->q.nparams = n;
    rq->q.params = rq->params;
}

/* vigil's backends: every pg instance's two connections (several may
 * watch one server). Diagnostics leave them out; actions refuse them. */
static int pg_own_pid(long long pid)
{
    for (const struct pg *p = pg_instances(); p != NULL; p = p->next) {
        if (pid == pg_conn_backend_pid(p->col) ||
            pid == pg_conn_backend_pid(p->dg)) {
            return 1;
        }
    }
    return 0;
}

/* The same as an int[] parameter, "{pid,...}"; the statements add their
 * own session (pg_backend_pid()). */
static void pg_own_pids(char *out, size_t size)
{
    size_t len = (size_t)snprintf(out, size, "{0");

    for (const struct pg *p = pg_instances(); p != NULL; p = p->next) {
        int pids[2] = {pg_conn_backend_pid(p->col), pg_conn_backend_pid(p->dg)};

        for (int i = 0; i < 2 && len + 13 < size; i++) {
            if (pids[i] > 0) {
                len += (size_t)snprintf(out + len, size - len, ",%d", pids[i]);
            }
        }
    }
    snprintf(out + len, size - len, "}");
}

/* Set the query of the current step. */
static void pg_req_prepare(struct pg_req *rq)
{
    char a[4][PG_PARAM_MAX];
    const char *v[4] = {a[0], a[1], a[2], a[3]};

    rq->q.nparams = 0;
    switch (rq->kind * 2 + rq->step) {
    case PG_K_SLOW * 2:
        rq->q.sql = pg_sql_pgss;
        break;
    case PG_K_SLOW * 2 + 1:
        snprintf(a[0], sizeof(a[0]), "%.17g", rq->min_mean_ms);
        snprintf(a[1], sizeof(a[1]), "%lld", rq->limit);
        pg_params(rq, 2, v);
        rq->q.sql = rq->sql; /* built for the schema found in step 0 */
        break;
    case PG_K_RUNNING * 2:
        snprintf(a[0], sizeof(a[0]), "%.17g", rq->min_age_s);
        snprintf(a[1], sizeof(a[1]), "%lld", rq->limit);
        pg_own_pids(a[2], sizeof(a[2]));
        pg_params(rq, 3, v);
        rq->q.sql = pg_sql_running;
        break;
    case PG_K_BLOCKING * 2:
        snprintf(a[0], sizeof(a[0]), "%lld", rq->limit);
        pg_params(rq, 1, v);
        rq->q.sql = pg_sql_blocking;
        break;
    case PG_K_HINTS * 2:
    case PG_K_HINTS * 2 + 1:
        if (rq->step == 0) {
            snprintf(a[0], sizeof(a[0]), "%.17g", rq->min_distinct);
            snprintf(a[1], sizeof(a[1]), "%.17g", rq->max_correlation);
        } else {
            snprintf(a[0], sizeof(a[0]), "%lld", rq->min_seq_scans);
            snprintf(a[1], sizeof(a[1]), "%lld", rq->min_rows);
        }
        snprintf(a[2], sizeof(a[2]), "%lld", rq->limit);
        snprintf(a[3], sizeof(a[3]), "%s", rq->schema);
        pg_params(rq, 4, v);
        rq->q.sql = rq->step == 0 ? pg_sql_hint_columns : pg_sql_hint_tables;
        break;
    default: /* PG_K_CANCEL, PG_K_TERMINATE */
        pg_own_pids(a[1], sizeof(a[1]));
        if (rq->by_age) {
            snprintf(a[0], sizeof(a[0]), "%.17g", rq->min_age_s);
            snprintf(a[2], sizeof(a[2]), "%lld", rq->limit);
            pg_params(rq, 3, v);
            rq->q.sql = rq->kind == PG_K_CANCEL ? pg_sql_cancel_old
                                                : pg_sql_terminate_old;
            break;
        }
        snprintf(a[0], sizeof(a[0]), "%lld", rq->pid);
        pg_params(rq, 2, v);
        rq->q.sql = rq->kind == PG_K_CANCEL ? pg_sql_cancel : pg_sql_terminate;
        break;
    }
}

/* Send the current step's query. rq may be gone when this returns: the
 * reply can come at once (a connection that cannot even start). */
static void pg_req_submit(struct pg_req *rq)
{
    int rc;

    json_decref(rq->rows);
    rq->rows = json_array();
    if (rq->rows == NULL) {
        pg_req_reply(rq, VIGIL_ENOMEM, NULL);
        return;
    }
    pg_req_prepare(rq);
    rc = pg_conn_submit(rq->s->dg, &rq->q);
    if (rc != 0) {
        pg_req_fail(rq, rc, "the instance is stopping");
    }
}

static void pg_req_result(void *arg, const PGresult *r)
{
    struct pg_req *rq = arg;

    pg_rows_append(rq->rows, r);
}

/* Reply with the rows under key, and their count. */
static void pg_list_reply(struct pg_req *rq, const char *key)
{
    json_object_set_new(rq->out, "count",
                        json_integer((json_int_t)json_array_size(rq->rows)));
    json_object_set(rq->out, key, rq->rows);
    pg_req_reply(rq, 0, json_incref(rq->out));
}

static void pg_slow_step(struct pg_req *rq)
{
    json_t *row = json_array_get(rq->rows, 0);
    const char *schema = json_string_value(json_object_get(row, "schema"));
    char msg[300];

    if (rq->step == 1) {
        pg_list_reply(rq, "queries");
        return;
    }
    if (schema == NULL) {
        snprintf(msg, sizeof(msg),
                 "pg_stat_statements is not installed in database '%s': "
                 "CREATE EXTENSION pg_stat_statements there (the server "
                 "needs shared_preload_libraries = 'pg_stat_statements')",
                 json_string_value(json_object_get(row, "db")));
        pg_req_fail(rq, VIGIL_EUNAVAIL, msg);
        return;
    }
    snprintf(rq->sql, sizeof(rq->sql), PG_SQL_SLOW_FMT, schema);
    rq->step = 1;
    pg_req_submit(rq);
}

/* The sessions that block others without waiting themselves: where to
 * act first. */
static json_t *pg_root_blockers(json_t *waits)
{
    json_t *roots = json_array(), *w, *p;
    size_t i, k, m;

    json_array_foreach(waits, i, w)
    {
        json_array_foreach(json_object_get(w, "blocking_pids"), k, p)
        {
            int seen = 0;
            json_t *x;

            json_array_foreach(waits, m, x)
            {
                seen |= json_equal(json_object_get(x, "pid"), p);
            }
            json_array_foreach(roots, m, x)
            {
                seen |= json_equal(x, p);
            }
            if (!seen) {
                json_array_append(roots, p);
            }
        }
    }
    return roots;
}

static void pg_hints_step(struct pg_req *rq)
{
    if (rq->step == 0) {
        json_object_set(rq->out, "columns", rq->rows);
        rq->step = 1;
        pg_req_submit(rq);
        return;
    }
    json_object_set(rq->out, "tables", rq->rows);
    pg_req_reply(rq, 0, json_incref(rq->out));
}

/* pg.cancel or pg.terminate by age: the backends chosen and what was
 * done to each. Finding none is not a failure: there was nothing to do. */
static void pg_signal_many_reply(struct pg_req *rq)
{
    const char *what = rq->kind == PG_K_CANCEL ? "cancel" : "terminate";
    size_t i, n = 0, len;
    json_t *row;
    char msg[400];

    len = (size_t)snprintf(msg, sizeof(msg), "%s sent to:", what);
    json_array_foreach(rq->rows, i, row)
    {
        long long pid = json_integer_value(json_object_get(row, "pid"));
        int sig = json_is_true(json_object_get(row, "signalled"));

        n += sig;
        if (len < sizeof(msg)) {
            len += (size_t)snprintf(msg + len, sizeof(msg) - len, " %lld%s",
                                    pid, sig ? "" : " (not signalled)");
        }
    }
    if (json_array_size(rq->rows) == 0) {
        snprintf(msg, sizeof(msg),
                 "nothing to %s: no client query has run %.10g s or more", what,
                 rq->min_age_s);
    }
    json_object_set_new(rq->out, "action", json_string(what));
    json_object_set_new(rq->out, "done", json_boolean(n > 0));
    json_object_set_new(rq->out, "count", json_integer((json_int_t)n));
    json_object_set_new(rq->out, "message", json_string(msg));
    json_object_set(rq->out, "backends", rq->rows);
    pg_req_reply(rq, 0, json_incref(rq->out));
}

/* What pg.cancel or pg.terminate did, in words and as the row. */
static void pg_signal_reply(struct pg_req *rq)
{
    json_t *row = json_array_get(rq->rows, 0), *sig;
    const char *type, *what = rq->kind == PG_K_CANCEL ? "cancel" : "terminate";
    char msg[400];
    int status = 0;

    if (row == NULL) {
        snprintf(msg, sizeof(msg), "no server process has pid %lld", rq->pid);
        status = VIGIL_ENOENT;
    } else if (json_is_null(sig = json_object_get(row, "signalled"))) {
        type = json_string_value(json_object_get(row, "backend_type"));
        if (type == NULL) {
            snprintf(msg, sizeof(msg),
                     "refused: what pid %lld is cannot be seen (the role "
                     "needs pg_monitor)",
                     rq->pid);
        } else if (strcmp(type, "client backend") != 0) {
            snprintf(msg, sizeof(msg),
                     "refused: pid %lld is a %s, not a client backend", rq->pid,
                     type);
        } else {
            snprintf(msg, sizeof(msg),
                     "refused: pid %lld is vigil's own connection", rq->pid);
        }
        status = VIGIL_EINVAL;
    } else if (!json_is_true(sig)) {
        snprintf(msg, sizeof(msg),
                 "the server did not signal pid %lld (it may have exited)",
                 rq->pid);
        status = VIGIL_EIO;
    } else {
        snprintf(msg, sizeof(msg), "%s sent to pid %lld (%s)",
                 rq->kind == PG_K_CANCEL ? "cancel request"
                                         : "terminate signal",
                 rq->pid,
                 json_string_value(json_object_get(row, "query"))
                     ? json_string_value(json_object_get(row, "query"))
                     : "");
    }
    json_object_set_new(rq->out, "action", json_string(what));
    json_object_set_new(rq->out, "done", json_boolean(status == 0));
    json_object_set_new(rq->out, status == 0 ? "message" : "error",
                        json_string(msg));
    if (row != NULL) {
        json_object_del(row, "signalled");
        json_object_set(rq->out, "backend", row);
    }
    pg_req_reply(rq, status, json_incref(rq->out));
}

static void pg_req_done(void *arg, int status, const char *msg)
{
    struct pg_req *rq = arg;

    if (status != 0) {
        pg_req_fail(rq, status, msg);
        return;
    }
    switch (rq->kind) {
    case PG_K_SLOW:
        pg_slow_step(rq);
        break;
    case PG_K_RUNNING:
        pg_list_reply(rq, "queries");
        break;
    case PG_K_BLOCKING:
        json_object_set_new(rq->out, "root_blockers",
                            pg_root_blockers(rq->rows));
        pg_list_reply(rq, "waits");
        break;
    case PG_K_HINTS:
        pg_hints_step(rq);
        break;
    default:
        if (rq->by_age) {
            pg_signal_many_reply(rq);
        } else {
            pg_signal_reply(rq);
        }
        break;
    }
}

/* ------------------------------------------------------------------------
 * Arguments.
 */

/* A number in [lo, hi] under key: *out unchanged when absent; -1 when it
 * is not such a number. */
static int pg_arg_num(json_t *a, const char *key, double lo, double hi,
                      double *out)
{
    json_t *v = json_object_get(a, key);

    if (v == NULL) {
        return 0;
    }
    if (!json_is_number(v) || json_number_value(v) < lo ||
        json_number_value(v) > hi) {
        return -1;
    }
    *out = json_number_value(v);
    return 0;
}

static int pg_arg_int(json_t *a, const char *key, long long lo, long long hi,
                      long long *out)
{
    json_t *v = json_object_get(a, key);

    if (v == NULL) {
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo ||
        json_integer_value(v) > hi) {
        return -1;
    }
    *out = json_integer_value(v);
    return 0;
}

/* A duration: seconds as a number, or "250ms", "5s", "2m", "1h". */
static int pg_arg_duration(json_t *a, const char *key, double *out_s)
{
    static const struct {
        const char *unit;
        double s;
    } units[] = {{"ms", 0.001}, {"s", 1}, {"m", 60}, {"h", 3600}};
    json_t *v = json_object_get(a, key);
    const char *t;
    char *end;
    double n;

    if (v == NULL || json_is_number(v)) {
        return pg_arg_num(a, key, 0, 1e9, out_s);
    }
    t = json_string_value(v);
    n = t != NULL ? strtod(t, &end) : -1;
    if (t == NULL || end == t || n < 0) {
        return -1;
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(end, units[i].unit) == 0) {
            *out_s = n * units[i].s;
            return 0;
        }
    }
    return -1;
}

/* Keys each kind accepts, besides "instance". */
static const char *const pg_keys[PG_NK] = {
    [PG_K_SLOW] = "min_mean_ms limit",
    [PG_K_RUNNING] = "min_age limit",
    [PG_K_BLOCKING] = "limit",
    [PG_K_HINTS] = "schema min_distinct max_correlation min_seq_scans "
                   "min_rows limit",
    [PG_K_STATEMENTS] = "",
    [PG_K_CANCEL] = "pid min_age limit",
    [PG_K_TERMINATE] = "pid min_age limit",
};

static int pg_args_unknown(int kind, json_t *a, char *err, size_t size)
{
    const char *key;
    json_t *v;

    json_object_foreach(a, key, v)
    {
        const char *p = strstr(pg_keys[kind], key);
        size_t n = strlen(key);

        if (strcmp(key, "instance") != 0 &&
            (p == NULL || (p != pg_keys[kind] && p[-1] != ' ') ||
             (p[n] != ' ' && p[n] != '\0'))) {
            snprintf(err, size, "unknown argument \"%s\" (known: %s%sinstance)",
                     key, pg_keys[kind], pg_keys[kind][0] ? " " : "");
            return -1;
        }
    }
    return 0;
}

/* Check a and fill rq's arguments; -1 with err set when a is wrong. */
static int pg_args(struct pg_req *rq, json_t *a, char *err, size_t size)
{
    json_t *schema = json_object_get(a, "schema");
    int bad = 0;

    if (pg_args_unknown(rq->kind, a, err, size) != 0) {
        return -1;
    }
    int action = rq->kind == PG_K_CANCEL || rq->kind == PG_K_TERMINATE;

    rq->min_mean_ms = 50; /* the guide's */
    rq->limit = action                                            ? 1
                : rq->kind == PG_K_SLOW || rq->kind == PG_K_HINTS ? 20
                                                                  : 50;
    rq->min_distinct = 100;
    rq->max_correlation = 0.1;
    rq->min_seq_scans = 10;
    rq->min_rows = 1000;
    rq->pid = -1;
    bad |= pg_arg_num(a, "min_mean_ms", 0, 1e12, &rq->min_mean_ms);
    bad |= pg_arg_int(a, "limit", 1, PG_LIMIT_MAX, &rq->limit);
    bad |= pg_arg_duration(a, "min_age", &rq->min_age_s);
    bad |= pg_arg_num(a, "min_distinct", 0, 1e15, &rq->min_distinct);
    bad |= pg_arg_num(a, "max_correlation", 0, 1, &rq->max_correlation);
    bad |= pg_arg_int(a, "min_seq_scans", 0, 1LL << 60, &rq->min_seq_scans);
    bad |= pg_arg_int(a, "min_rows", 0, 1LL << 60, &rq->min_rows);
    bad |= pg_arg_int(a, "pid", 1, 0x7fffffff, &rq->pid);
    if (schema != NULL && (!json_is_string(schema) ||
                           json_string_length(schema) >= PG_NAME_MAX)) {
        bad = -1;
    }
    if (bad) {
        snprintf(err, size,
                 "bad argument: min_mean_ms, min_distinct are numbers >= 0; "
                 "limit 1 to %d; min_age a duration (\"5s\" or seconds); "
                 "max_correlation 0 to 1; min_seq_scans, min_rows integers "
                 ">= 0; pid a positive integer; schema a name",
                 PG_LIMIT_MAX);
        return -1;
    }
    snprintf(rq->schema, sizeof(rq->schema), "%s",
             schema ? json_string_value(schema) : "");
    rq->by_age = json_object_get(a, "min_age") != NULL;
    if (action && (rq->pid < 0) == !rq->by_age) {
        snprintf(err, size,
                 "give \"pid\" (the backend to signal) or \"min_age\" (the "
                 "oldest queries running that long, \"limit\" of them), not "
                 "both");
        return -1;
    }
    if (action && (json_object_get(a, "limit") != NULL && !rq->by_age)) {
        snprintf(err, size, "\"limit\" goes with \"min_age\"");
        return -1;
    }
    if (action && rq->limit > PG_SIGNAL_MAX) {
        snprintf(err, size, "\"limit\": at most %d backends at once",
                 PG_SIGNAL_MAX);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Running a request.
 */

/* The instance the arguments name, or s (the first one configured). */
static struct pg *pg_route(struct pg *s, json_t *a, char *err, size_t size)
{
    json_t *v = json_object_get(a, "instance");
    size_t len;

    if (v == NULL) {
        return s;
    }
    for (struct pg *p = pg_instances(); json_is_string(v) && p != NULL;
         p = p->next) {
        if (strcmp(p->host->instance_name(p->inst), json_string_value(v)) ==
            0) {
            return p;
        }
    }
    len = (size_t)snprintf(err, size,
                           "\"instance\": no pg instance %s%s%s "
                           "(configured:",
                           json_is_string(v) ? "'" : "",
                           json_is_string(v) ? json_string_value(v) : "given",
                           json_is_string(v) ? "'" : "");
    for (struct pg *p = pg_instances(); p != NULL && len < size; p = p->next) {
        len += (size_t)snprintf(err + len, size - len, " %s",
                                p->host->instance_name(p->inst));
    }
    if (len < size) {
        snprintf(err + len, size - len, ")");
    }
    return NULL;
}

static json_t *pg_opt_real(double v)
{
    return isnan(v) ? json_null() : json_real(v);
}

/* pg.statements: the last collection's top, from memory. */
static json_t *pg_statements_json(const struct pg *s)
{
    json_t *o = json_object(), *list = json_array();
    char qid[24];

    for (size_t i = 0; list != NULL && i < s->ntop; i++) {
        const struct pg_stmt *st = &s->stmts[s->top[i]];

        snprintf(qid, sizeof(qid), "%lld", (long long)st->queryid);
        json_array_append_new(
            list, json_pack("{s:s,s:o,s:o,s:o,s:o?}", "queryid", qid,
                            "calls_per_s", pg_opt_real(st->rate), "mean_ms",
                            pg_opt_real(st->mean_ms), "max_ms",
                            pg_opt_real(st->max_ms), "query",
                            st->query ? json_string(st->query) : json_null()));
    }
    json_object_set_new(o, "instance",
                        json_string(s->host->instance_name(s->inst)));
    json_object_set_new(o, "available", json_boolean(s->pgss == PGSS_OK));
    json_object_set_new(o, "count", json_integer((json_int_t)s->ntop));
    json_object_set_new(o, "statements", list);
    return o;
}

/* The reply's head: the instance and the arguments in effect. */
static json_t *pg_out_init(const struct pg_req *rq)
{
    json_t *o = json_object();

    json_object_set_new(o, "instance",
                        json_string(rq->s->host->instance_name(rq->s->inst)));
    switch (rq->kind) {
    case PG_K_SLOW:
        json_object_set_new(o, "min_mean_ms", json_real(rq->min_mean_ms));
        break;
    case PG_K_RUNNING:
        json_object_set_new(o, "min_age_s", json_real(rq->min_age_s));
        break;
    case PG_K_HINTS:
        json_object_set_new(
            o, "schema", rq->schema[0] ? json_string(rq->schema) : json_null());
        json_object_set_new(o, "min_distinct", json_real(rq->min_distinct));
        json_object_set_new(o, "max_correlation",
                            json_real(rq->max_correlation));
        break;
    case PG_K_CANCEL:
    case PG_K_TERMINATE:
        if (rq->by_age) {
            json_object_set_new(o, "min_age_s", json_real(rq->min_age_s));
            json_object_set_new(o, "limit", json_integer(rq->limit));
        } else {
            json_object_set_new(o, "pid", json_integer(rq->pid));
        }
        break;
    default:
        break;
    }
    return o;
}

/* Start rq (arguments checked): refuse vigil's own backends, queue. */
static void pg_req_start(struct pg_req *rq)
{
    struct pg *s = rq->s;

    rq->out = pg_out_init(rq);
    rq->q = (struct pg_conn_query){
        .result_cb = pg_req_result, .done_cb = pg_req_done, .arg = rq};
    rq->next = s->reqs;
    s->reqs = rq;
    s->nreqs++;
    if ((rq->kind == PG_K_CANCEL || rq->kind == PG_K_TERMINATE) &&
        !rq->by_age && pg_own_pid(rq->pid)) {
        json_object_set_new(
            rq->out, "action",
            json_string(rq->kind == PG_K_CANCEL ? "cancel" : "terminate"));
        json_object_set_new(rq->out, "done", json_false());
        json_object_set_new(
            rq->out, "error",
            json_string("refused: that pid is vigil's own connection"));
        pg_req_reply(rq, VIGIL_EINVAL, json_incref(rq->out));
        return;
    }
    pg_req_submit(rq);
}

/* Reply o (taken) to req directly: no request was made. */
static void pg_reply_json(const struct pg *s, vigil_request *req, int status,
                          json_t *o)
{
    char *text = o != NULL ? json_dumps(o, PG_JSON_FLAGS) : NULL;

    s->host->reply(req, text != NULL ? status : VIGIL_ENOMEM, text);
    free(text);
    json_decref(o);
}

/* Parse the arguments into a new request; NULL with err set (or with
 * *status VIGIL_ENOMEM). */
static struct pg_req *pg_req_create(struct pg *s, int kind,
                                    const char *args_json, char *err,
                                    size_t size, int *status)
{
    json_t *a = json_loads(args_json ? args_json : "{}", JSON_DECODE_ANY, NULL);
    struct pg_req *rq = NULL;
    struct pg *target;

    *status = VIGIL_EINVAL;
    if (!json_is_object(a)) {
        snprintf(err, size, "arguments must be a JSON object");
    } else if ((target = pg_route(s, a, err, size)) != NULL) {
        rq = calloc(1, sizeof(*rq));
        if (rq == NULL) {
            snprintf(err, size, "out of memory");
            *status = VIGIL_ENOMEM;
        } else {
            rq->s = target;
            rq->kind = kind;
            if (pg_args(rq, a, err, size) != 0) {
                free(rq);
                rq = NULL;
            }
        }
    }
    json_decref(a);
    return rq;
}

static int pg_run(int kind, void *state, const char *args_json,
                  vigil_request *req)
{
    struct pg *s = state;
    struct pg_req *rq;
    char err[400];
    int status;

    rq = pg_req_create(s, kind, args_json, err, sizeof(err), &status);
    if (rq == NULL) {
        pg_reply_json(s, req, status, json_pack("{s:s}", "error", err));
        return 0;
    }
    s = rq->s;
    if (!s->started || s->stopping) {
        free(rq);
        return VIGIL_ESTATE;
    }
    if (kind == PG_K_STATEMENTS) {
        free(rq);
        pg_reply_json(s, req, 0, pg_statements_json(s));
        return 0;
    }
    if (s->nreqs >= PG_REQS_MAX) {
        free(rq);
        snprintf(err, sizeof(err), "%d requests are queued already",
                 PG_REQS_MAX);
        pg_reply_json(s, req, VIGIL_EBUSY, json_pack("{s:s}", "error", err));
        return 0;
    }
    rq->req = req;
    pg_req_start(rq); /* may reply at once */
    return 0;
}

/* The core gave up on req: no reply; the server stops the query. */
static void pg_cancel_req(void *state, vigil_request *req)
{
    (void)state; /* the request may run on another instance */
    for (struct pg *p = pg_instances(); p != NULL; p = p->next) {
        for (struct pg_req *rq = p->reqs; rq != NULL; rq = rq->next) {
            if (rq->req == req) {
                rq->req = NULL;
                pg_conn_abandon(p->dg, &rq->q);
                pg_req_free(rq);
                return;
            }
        }
    }
}

void pg_diag_stop(struct pg *s)
{
    while (s->reqs != NULL) {
        pg_conn_abandon(s->dg, &s->reqs->q);
        pg_req_fail(s->reqs, VIGIL_ECANCELED, "vigil is stopping");
    }
}

#define PG_RUN(fn, kind)                                                       \
    static int fn(void *state, const char *args, vigil_request *req)           \
    {                                                                          \
        return pg_run(kind, state, args, req);                                 \
    }
PG_RUN(pg_run_slow, PG_K_SLOW)
PG_RUN(pg_run_running, PG_K_RUNNING)
PG_RUN(pg_run_blocking, PG_K_BLOCKING)
PG_RUN(pg_run_hints, PG_K_HINTS)
PG_RUN(pg_run_statements, PG_K_STATEMENTS)
PG_RUN(pg_run_cancel, PG_K_CANCEL)
PG_RUN(pg_run_terminate, PG_K_TERMINATE)

static const struct vigil_diag pg_diags[] = {
    {.name = "pg.slow_queries",
     .help = "pg_stat_statements' statements slower than min_mean_ms on "
             "average, slowest first",
     .args = "{\"min_mean_ms\": 50, \"limit\": 20, \"instance\": NAME}",
     .run = pg_run_slow,
     .cancel = pg_cancel_req},
    {.name = "pg.running_queries",
     .help = "sessions not idle for at least min_age, longest-running "
             "first, with their wait events",
     .args = "{\"min_age\": \"5s\" (or seconds), \"limit\": 50, "
             "\"instance\": NAME}",
     .run = pg_run_running,
     .cancel = pg_cancel_req},
    {.name = "pg.blocking",
     .help = "sessions waiting on a lock, the sessions blocking them, and "
             "the root blockers",
     .args = "{\"limit\": 50, \"instance\": NAME}",
     .run = pg_run_blocking,
     .cancel = pg_cancel_req},
    {.name = "pg.index_hints",
     .help = "columns with many distinct values and no index (pg_stats), "
             "tables read mostly by sequential scans",
     .args = "{\"schema\": NAME, \"min_distinct\": 100, "
             "\"max_correlation\": 0.1, \"min_seq_scans\": 10, "
             "\"min_rows\": 1000, \"limit\": 20, \"instance\": NAME}",
     .run = pg_run_hints,
     .cancel = pg_cancel_req},
    {.name = "pg.statements",
     .help = "the top statements of the last collection, with their "
             "normalised text",
     .args = "{\"instance\": NAME}",
     .run = pg_run_statements},
    {.name = "pg.cancel",
     .help = "cancel the running query of a client backend, or of the "
             "oldest ones (pg_cancel_backend)",
     .args = "{\"pid\": N} or {\"min_age\": \"60s\", \"limit\": 1}, "
             "\"instance\": NAME",
     .is_action = 1,
     .run = pg_run_cancel,
     .cancel = pg_cancel_req},
    {.name = "pg.terminate",
     .help = "end the session of a client backend, or of the ones with "
             "the oldest queries (pg_terminate_backend)",
     .args = "{\"pid\": N} or {\"min_age\": \"60s\", \"limit\": 1}, "
             "\"instance\": NAME",
     .is_action = 1,
     .run = pg_run_terminate,
     .cancel = pg_cancel_req},
};

int pg_diag_register(struct pg *s)
{
    for (size_t i = 0; i < sizeof(pg_diags) / sizeof(pg_diags[0]); i++) {
        int rc = s->host->register_diag(s->inst, &pg_diags[i]);

        if (rc != 0 && rc != VIGIL_EEXIST) {
            s->host->log(s->inst, VIGIL_LOG_ERROR, "cannot register %s: %s",
                         pg_diags[i].name, vigil_error_text(rc));
            return rc;
        }
    }
    return 0;
}
