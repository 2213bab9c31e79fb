/*
 * store_pg - the PostgreSQL back end of the store (see store_be.h), for a
 * fleet of agents sharing one database.
 *
 * The schema is SQLite's translated (BIGINT, DOUBLE PRECISION, TEXT;
 * series ids from an identity column), and every row carries its host
 * (samples and roll-ups through their series), so agents only ever read
 * and write their own rows. Migrations run in one transaction under an
 * advisory lock, so that agents starting together do not race.
 *
 * libpq is used in its blocking form: the flush runs on the thread pool
 * (the loop never waits for the server), the reads and tool-mode calls on
 * the caller's thread, as with SQLite. Each flush is one transaction:
 * samples go in a few multi-row statements (unnest() of three arrays,
 * upserting like SQLite), records one statement each behind a savepoint,
 * so that a record the server refuses for its values is dropped alone.
 *
 * The server going away is a failed flush like a failed disk: the job
 * fails, store.c counts its samples lost and keeps its records, and the
 * next job reconnects (PQreset) before it writes. Connections get a
 * connect timeout and TCP keepalives by default (the URI may override
 * them), so that a dead server costs a job seconds, not the kernel's
 * retransmission timeout. Messages name the database by a URI rebuilt
 * without password or options (store_be_ops.describe); PQerrorMessage
 * never holds the password.
 */
#include "store_be.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dlfcn.h>
#include <libpq-fe.h>

#include "clock.h"
#include "log.h"

/*
 * libpq is loaded when a PostgreSQL store is opened, not linked: with its
 * dependencies (GnuTLS through LDAP, Kerberos, p11-kit) it costs a few
 * megabytes of resident memory that an agent on its SQLite store should
 * not pay. Every libpq function used here goes through a pointer of the
 * same type, filled by pq_load(); the names below make the code read as
 * plain libpq.
 */
// clang-format off
#define PQ_FUNCS(X) \
    X(PQclear) \
    X(PQntuples) \
    X(PQstatus) \
    X(PQgetvalue) \
    X(PQgetisnull) \
    X(PQexecParams) \
    X(PQreset) \
    X(PQfinish) \
    X(PQerrorMessage) \
    X(PQtransactionStatus) \
    X(PQsetNoticeProcessor) \
    X(PQresultStatus) \
    X(PQresultErrorField) \
    X(PQprepare) \
    X(PQfreemem) \
    X(PQexecPrepared) \
    X(PQexec) \
    X(PQconninfoParse) \
    X(PQconninfoFree) \
    X(PQconnectdbParams) \
    X(PQcmdTuples)
// clang-format on
#define PQ_DECLARE(f) static __typeof__(f) *pq_##f;
PQ_FUNCS(PQ_DECLARE)
#undef PQ_DECLARE
#define PQ_RENAME(f) pq_##f
#define PQclear PQ_RENAME(PQclear)
#define PQntuples PQ_RENAME(PQntuples)
#define PQstatus PQ_RENAME(PQstatus)
#define PQgetvalue PQ_RENAME(PQgetvalue)
#define PQgetisnull PQ_RENAME(PQgetisnull)
#define PQexecParams PQ_RENAME(PQexecParams)
#define PQreset PQ_RENAME(PQreset)
#define PQfinish PQ_RENAME(PQfinish)
#define PQerrorMessage PQ_RENAME(PQerrorMessage)
#define PQtransactionStatus PQ_RENAME(PQtransactionStatus)
#define PQsetNoticeProcessor PQ_RENAME(PQsetNoticeProcessor)
#define PQresultStatus PQ_RENAME(PQresultStatus)
#define PQresultErrorField PQ_RENAME(PQresultErrorField)
#define PQprepare PQ_RENAME(PQprepare)
#define PQfreemem PQ_RENAME(PQfreemem)
#define PQexecPrepared PQ_RENAME(PQexecPrepared)
#define PQexec PQ_RENAME(PQexec)
#define PQconninfoParse PQ_RENAME(PQconninfoParse)
#define PQconninfoFree PQ_RENAME(PQconninfoFree)
#define PQconnectdbParams PQ_RENAME(PQconnectdbParams)
#define PQcmdTuples PQ_RENAME(PQcmdTuples)

/* Load libpq once (never unloaded); 0, or VIGIL_EIO with the reason. */
static int pq_load(struct vigil_err *err)
{
    static void *lib;
    void *h;

    if (lib != NULL) {
        return 0;
    }
    h = dlopen("libpq.so.5", RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        return err_set(err, VIGIL_EIO,
                       "store: a PostgreSQL store needs libpq (Debian: "
                       "libpq5): %s",
                       dlerror());
    }
#define PQ_LOAD(f)                                                             \
    if ((pq_##f = (__typeof__(pq_##f))dlsym(h, #f)) == NULL) {                 \
        return err_set(err, VIGIL_EIO, "store: libpq has no %s", #f);          \
    }
    PQ_FUNCS(PQ_LOAD)
#undef PQ_LOAD
    lib = h;
    return 0;
}

/* Samples per INSERT: three text arrays of this many elements. */
#define PG_ROWS 4096
#define PG_ID_CHARS 21 /* "-9223372036854775808," */
#define PG_V_CHARS 26  /* "%.17g" of a double, and a comma */

/* pg_advisory_xact_lock() key for migrations: "vigi". */
#define PG_MIGRATE_LOCK "1986618217"

/* Defaults put before the URI's own parameters, which override them. */
static const char *const pg_conn_keys[] = {
    "connect_timeout",           "keepalives",       "keepalives_idle",
    "keepalives_interval",       "keepalives_count", "tcp_user_timeout",
    "fallback_application_name", "dbname",           NULL,
};
#define PG_CONN_URI 7 /* index of dbname, expanded from the URI */
static const char *const pg_conn_defaults[] = {
    "10", "1", "30", "10", "3", "30000", "vigil", NULL, NULL,
};

/* ------------------------------------------------------------- schema */

/* Migrations, in step with store_sqlite.c: the same tables at the same
 * version. Append only. */
static const char *const pg_migrations[] = {
    /* 1: the first schema. */
    "CREATE TABLE meta (\n"
    "    key TEXT PRIMARY KEY,\n"
    "    value BIGINT\n"
    ");\n"
    "CREATE TABLE series (\n"
    "    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,\n"
    "    host TEXT NOT NULL,\n"
    "    key TEXT NOT NULL,\n"
    "    name TEXT NOT NULL,\n"
    "    labels TEXT NOT NULL,\n"
    "    UNIQUE (host, key)\n"
    ");\n"
    "CREATE TABLE samples (\n"
    "    series_id BIGINT NOT NULL,\n"
    "    ts BIGINT NOT NULL,\n"
    "    value DOUBLE PRECISION,\n" /* NULL holds a NaN */
    "    PRIMARY KEY (series_id, ts)\n"
    ");\n"
    "CREATE TABLE rollup_1m (\n"
    "    series_id BIGINT NOT NULL,\n"
    "    ts_minute BIGINT NOT NULL,\n"
    "    min DOUBLE PRECISION NOT NULL,\n"
    "    avg DOUBLE PRECISION NOT NULL,\n"
    "    max DOUBLE PRECISION NOT NULL,\n"
    "    count BIGINT NOT NULL,\n"
    "    PRIMARY KEY (series_id, ts_minute)\n"
    ");\n"
    "CREATE TABLE incidents (\n"
    "    host TEXT NOT NULL,\n"
    "    id BIGINT NOT NULL,\n"
    "    rule TEXT,\n"
    "    series TEXT,\n"
    "    title TEXT,\n"
    "    runbook TEXT,\n"
    "    state INTEGER NOT NULL,\n"
    "    open INTEGER NOT NULL,\n"
    "    opened_ts BIGINT NOT NULL,\n"
    "    resolved_ts BIGINT NOT NULL,\n"
    "    acknowledged INTEGER NOT NULL,\n"
    "    labels TEXT,\n"
    "    PRIMARY KEY (host, id)\n"
    ");\n"
    "CREATE INDEX incidents_open ON incidents (host, open, id);\n"
    /* seq keeps the order of insertion, SQLite's rowid. */
    "CREATE TABLE transitions (\n"
    "    seq BIGINT GENERATED ALWAYS AS IDENTITY,\n"
    "    host TEXT NOT NULL,\n"
    "    incident_id BIGINT NOT NULL,\n"
    "    ts BIGINT NOT NULL,\n"
    "    from_state INTEGER NOT NULL,\n"
    "    to_state INTEGER NOT NULL,\n"
    "    value DOUBLE PRECISION,\n"
    "    reason TEXT\n"
    ");\n"
    "CREATE INDEX transitions_incident ON transitions (host, incident_id, "
    "ts);\n"
    "CREATE TABLE evidence (\n"
    "    host TEXT NOT NULL,\n"
    "    incident_id BIGINT NOT NULL,\n"
    "    step INTEGER NOT NULL,\n"
    "    name TEXT,\n"
    "    phase TEXT,\n"
    "    status TEXT,\n"
    "    started_ts BIGINT NOT NULL,\n"
    "    ended_ts BIGINT NOT NULL,\n"
    "    output TEXT,\n"
    "    UNIQUE (host, incident_id, step)\n"
    ");\n"
    "CREATE TABLE actions (\n"
    "    host TEXT NOT NULL,\n"
    "    id BIGINT NOT NULL,\n"
    "    incident_id BIGINT NOT NULL,\n"
    "    name TEXT,\n"
    "    kind TEXT,\n"
    "    mode TEXT,\n"
    "    command TEXT,\n"
    "    result INTEGER NOT NULL,\n"
    "    reason TEXT,\n"
    "    intent_ts BIGINT NOT NULL,\n"
    "    started_ts BIGINT NOT NULL,\n"
    "    ended_ts BIGINT NOT NULL,\n"
    "    exit_code INTEGER NOT NULL,\n"
    "    output TEXT,\n"
    "    PRIMARY KEY (host, id)\n"
    ");\n"
    "CREATE INDEX actions_incident ON actions (host, incident_id, id);\n"
    "CREATE INDEX actions_pending ON actions (host) WHERE result = 0;\n",
    /* 2: approvals. */
    "ALTER TABLE actions ADD COLUMN approved_by TEXT;\n"
    "ALTER TABLE actions ADD COLUMN approved_ts BIGINT NOT NULL DEFAULT 0;\n"
    "CREATE INDEX actions_awaiting ON actions (host) WHERE result = 6;\n",
};

_Static_assert(sizeof(pg_migrations) / sizeof(pg_migrations[0]) ==
                   STORE_SCHEMA_VERSION,
               "store_pg.c and store_sqlite.c migrate in step");

/* ---------------------------------------------------------- statements */

/* The writer's statements, prepared on every (re)connection; $1 is the
 * host wherever there is one. */
enum pg_stmt {
    PG_ST_SERIES,
    PG_ST_SAMPLES,
    PG_ST_FOLD,
    PG_ST_NEXT_RAW,
    PG_ST_ROLLUP,
    PG_ST_MARK,
    PG_ST_TRIM_RAW,
    PG_ST_TRIM_ROLLUP,
    PG_ST_INCIDENT,
    PG_ST_TRANSITION,
    PG_ST_EVIDENCE,
    PG_ST_ACTION,
    PG_ST_APPROVED,
    PG_ST_COUNT
};

/* Merge a roll-up row into an existing one (count-weighted average). */
#define PG_ROLLUP_MERGE                                                        \
    " ON CONFLICT (series_id, ts_minute) DO UPDATE SET"                        \
    " min = LEAST(rollup_1m.min, excluded.min),"                               \
    " max = GREATEST(rollup_1m.max, excluded.max),"                            \
    " avg = (rollup_1m.avg * rollup_1m.count"                                  \
    " + excluded.avg * excluded.count)"                                        \
    " / (rollup_1m.count + excluded.count),"                                   \
    " count = rollup_1m.count + excluded.count"

static const char *const pg_sql[PG_ST_COUNT] = {
    /* The id, whether the row is new or not (the second SELECT sees the
     * row only when the INSERT did nothing). */
    [PG_ST_SERIES] =
        "WITH ins AS (INSERT INTO series (host, key, name, labels)"
        " VALUES ($1::text, $2::text, $3, $4)"
        " ON CONFLICT (host, key) DO NOTHING RETURNING id)"
        " SELECT id FROM ins UNION ALL"
        " SELECT id FROM series WHERE host = $1::text AND key = $2::text",
    [PG_ST_SAMPLES] =
        "INSERT INTO samples (series_id, ts, value)"
        " SELECT * FROM unnest($1::bigint[], $2::bigint[],"
        " $3::double precision[])"
        " ON CONFLICT (series_id, ts) DO UPDATE SET value = excluded.value",
    [PG_ST_FOLD] =
        "INSERT INTO rollup_1m"
        " (series_id, ts_minute, min, avg, max, count)"
        " VALUES ($1, $2, $3::double precision, $3, $3, 1)" PG_ROLLUP_MERGE,
    [PG_ST_NEXT_RAW] = "SELECT min(m) FROM (SELECT (SELECT min(ts) FROM samples"
                       " WHERE series_id = se.id AND ts >= $2::bigint) AS m"
                       " FROM series se WHERE se.host = $1::text) x",
    [PG_ST_ROLLUP] =
        "INSERT INTO rollup_1m (series_id, ts_minute, min, avg, max, count)"
        " SELECT sa.series_id, " STORE_MINUTE_SQL(
            "sa.ts") " AS m, min(sa.value), avg(sa.value), max(sa.value),"
                     " count(*)"
                     " FROM series se JOIN samples sa ON sa.series_id = se.id"
                     " WHERE se.host = $1::text AND sa.ts >= $2::bigint"
                     " AND sa.ts < $3::bigint AND sa.value IS NOT NULL"
                     " GROUP BY sa.series_id, m" PG_ROLLUP_MERGE,
    [PG_ST_MARK] = "INSERT INTO meta (key, value)"
                   " VALUES ('rollup_mark/' || $1::text, $2::bigint)"
                   " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    [PG_ST_TRIM_RAW] =
        "DELETE FROM samples WHERE (series_id, ts) IN"
        " (SELECT sa.series_id, sa.ts FROM series se"
        " JOIN samples sa ON sa.series_id = se.id"
        " WHERE se.host = $1::text AND sa.ts < $2::bigint LIMIT $3::bigint)",
    [PG_ST_TRIM_ROLLUP] =
        "DELETE FROM rollup_1m WHERE (series_id, ts_minute) IN"
        " (SELECT r.series_id, r.ts_minute FROM series se"
        " JOIN rollup_1m r ON r.series_id = se.id"
        " WHERE se.host = $1::text AND r.ts_minute < $2::bigint"
        " LIMIT $3::bigint)",
    [PG_ST_INCIDENT] =
        "INSERT INTO incidents (host, id, rule, series, title, runbook, state,"
        " open, opened_ts, resolved_ts, acknowledged, labels)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        " ON CONFLICT (host, id) DO UPDATE SET rule = excluded.rule,"
        " series = excluded.series, title = excluded.title,"
        " runbook = excluded.runbook, state = excluded.state,"
        " open = excluded.open, opened_ts = excluded.opened_ts,"
        " resolved_ts = excluded.resolved_ts,"
        " acknowledged = excluded.acknowledged, labels = excluded.labels",
    [PG_ST_TRANSITION] =
        "INSERT INTO transitions (host, incident_id, ts, from_state,"
        " to_state, value, reason)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
    [PG_ST_EVIDENCE] =
        "INSERT INTO evidence (host, incident_id, step, name, phase, status,"
        " started_ts, ended_ts, output)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " ON CONFLICT (host, incident_id, step) DO UPDATE SET"
        " name = excluded.name, phase = excluded.phase,"
        " status = excluded.status, started_ts = excluded.started_ts,"
        " ended_ts = excluded.ended_ts, output = excluded.output",
    [PG_ST_ACTION] =
        "INSERT INTO actions (host, id, incident_id, name, kind, mode,"
        " command, result, reason, intent_ts, started_ts, ended_ts,"
        " exit_code, output)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,"
        " $14)"
        " ON CONFLICT (host, id) DO UPDATE SET"
        " incident_id = excluded.incident_id, name = excluded.name,"
        " kind = excluded.kind, mode = excluded.mode,"
        " command = excluded.command, result = excluded.result,"
        " reason = excluded.reason, intent_ts = excluded.intent_ts,"
        " started_ts = excluded.started_ts, ended_ts = excluded.ended_ts,"
        " exit_code = excluded.exit_code, output = excluded.output",
    [PG_ST_APPROVED] = "SELECT id FROM actions WHERE host = $1::text AND"
                       " result = 6 AND approved_ts > 0 ORDER BY id"
                       " LIMIT 64",
};

_Static_assert(STORE_APPROVED_MAX == 64, "PG_ST_APPROVED's LIMIT");

struct store_be {
    char *uri;
    PGconn *w;    /* the writer */
    int prepared; /* the writer's statements exist on this connection */
    PGconn *r;    /* reads; == w in tool mode */
    /* The writer's sample arrays, as text: allocated at the first
     * samples, then reused. */
    char *ids, *tss, *vals;
};

/* ------------------------------------------------------------ helpers */

/* Text parameters of one statement: numbers formatted into buf. */
struct pg_params {
    const char *v[16];
    char buf[16][32];
    int n;
};

static void pg_p_text(struct pg_params *p, const char *text)
{
    p->v[p->n++] = text; /* NULL is SQL NULL */
}

static void pg_p_int(struct pg_params *p, int64_t x)
{
    snprintf(p->buf[p->n], sizeof(p->buf[p->n]), "%lld", (long long)x);
    p->v[p->n] = p->buf[p->n];
    p->n++;
}

/* NaN has no place in a roll-up: stored as NULL, as SQLite does. */
static void pg_p_double(struct pg_params *p, double x)
{
    if (isnan(x)) {
        p->v[p->n++] = NULL;
        return;
    }
    snprintf(p->buf[p->n], sizeof(p->buf[p->n]), "%.17g", x);
    p->v[p->n] = p->buf[p->n];
    p->n++;
}

/* A libpq message on one line: runs of white space (the "\n\t" libpq
 * puts between its sentences) become one space, and the end is
 * trimmed. */
static void pg_oneline(char *out, size_t size, const char *msg)
{
    size_t n = 0;
    int space = 0;

    for (const char *c = msg != NULL ? msg : ""; *c && n + 1 < size; c++) {
        if (*c == ' ' || *c == '\n' || *c == '\t' || *c == '\r') {
            space = n > 0;
            continue;
        }
        if (space && n + 2 < size) {
            out[n++] = ' ';
        }
        space = 0;
        out[n++] = *c;
    }
    out[n] = '\0';
}

/* Why a connection or its last command failed, on one line. */
static void pg_conn_msg(PGconn *c, char *out, size_t size)
{
    pg_oneline(out, size,
               c != NULL ? PQerrorMessage(c) : "out of memory (libpq)");
}

/* Map a failed result to our code. Data and integrity errors belong to
 * the values of one statement (VIGIL_EINVAL); a lost connection, or
 * anything else, to the database. */
static int pg_code(PGconn *c, const PGresult *r)
{
    const char *state =
        r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;

    if (c == NULL || PQstatus(c) != CONNECTION_OK || state == NULL) {
        return VIGIL_EIO;
    }
    if (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0) {
        return VIGIL_EINVAL;
    }
    if (strncmp(state, "40", 2) == 0 || strcmp(state, "55P03") == 0) {
        return VIGIL_EBUSY;
    }
    if (strcmp(state, "53200") == 0) {
        return VIGIL_ENOMEM;
    }
    return VIGIL_EIO;
}

static int pg_ok(const PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);

    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

/* Run one command without parameters. Returns 0 or our code; *msg (may
 * be NULL) gets the server's message. */
static int pg_cmd(PGconn *c, const char *sql, char *msg, size_t size)
{
    PGresult *r = PQexec(c, sql);
    int status = 0;

    if (!pg_ok(r)) {
        status = pg_code(c, r);
        if (msg != NULL) {
            pg_conn_msg(c, msg, size);
        }
    }
    PQclear(r);
    return status;
}

static int64_t pg_i64(const PGresult *r, int row, int col)
{
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static int pg_int(const PGresult *r, int row, int col)
{
    return (int)strtol(PQgetvalue(r, row, col), NULL, 10);
}

static double pg_double(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NAN
                                    : strtod(PQgetvalue(r, row, col), NULL);
}

/* Text columns that the header allows to be NULL come back NULL. */
static const char *pg_text(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

/* The others come back "" (libpq's value for NULL). */
static const char *pg_str(const PGresult *r, int row, int col)
{
    return PQgetvalue(r, row, col);
}

/* Rows a command changed. */
static long pg_changes(PGresult *r)
{
    return strtol(PQcmdTuples(r), NULL, 10);
}

/* NOTICEs ("relation exists, skipping"...) go to the debug log, not to
 * stderr. */
static void pg_on_notice(void *arg, const char *message)
{
    char line[VIGIL_ERR_MAX];

    (void)arg;
    pg_oneline(line, sizeof(line), message);
    log_debug("store", "postgresql: %s", line);
}

/* Connect (blocking) with our defaults under the URI's parameters.
 * Returns the connection, which the caller finishes even when it is
 * bad; NULL only when out of memory. */
static PGconn *pg_connect(const char *uri)
{
    const char *vals[sizeof(pg_conn_defaults) / sizeof(pg_conn_defaults[0])];
    PGconn *c;

    memcpy(vals, pg_conn_defaults, sizeof(vals));
    vals[PG_CONN_URI] = uri;
    c = PQconnectdbParams(pg_conn_keys, vals, 1);
    if (c != NULL) {
        PQsetNoticeProcessor(c, pg_on_notice, NULL);
    }
    return c;
}

/* Make sure a connection is up: reset a broken one. Returns 0 or
 * VIGIL_EIO with the reason in msg. *reset (may be NULL) is set when the
 * connection is new. */
static int pg_ensure(PGconn *c, int *reset, char *msg, size_t size)
{
    if (PQstatus(c) == CONNECTION_OK) {
        return 0;
    }
    PQreset(c);
    if (PQstatus(c) != CONNECTION_OK) {
        pg_conn_msg(c, msg, size);
        return VIGIL_EIO;
    }
    if (reset != NULL) {
        *reset = 1;
    }
    return 0;
}

/* ---------------------------------------------------------- the writer */

/* Run a prepared statement of the writer. Returns the result, which the
 * caller clears. */
static PGresult *pg_run(struct store *s, int which, const struct pg_params *p)
{
    char name[16];

    snprintf(name, sizeof(name), "vigil_%d", which);
    return PQexecPrepared(s->be->w, name, p->n, p->v, NULL, NULL, 0);
}

/* Run one and keep only its status: 0, or our code with the message in
 * j->msg. */
static int pg_step(struct store *s, struct store_job *j, int which,
                   const struct pg_params *p)
{
    PGresult *r = pg_run(s, which, p);
    int status = 0;

    if (!pg_ok(r)) {
        status = pg_code(s->be->w, r);
        snprintf(j->msg, sizeof(j->msg), "%s: ", s->name);
        pg_conn_msg(s->be->w, j->msg + strlen(j->msg),
                    sizeof(j->msg) - strlen(j->msg));
    }
    PQclear(r);
    return status;
}

/* Prepare the writer's statements on a new connection. */
static int pg_prepare(struct store *s, char *msg, size_t size)
{
    for (int i = 0; i < PG_ST_COUNT; i++) {
        char name[16];
        PGresult *r;
        int status = 0;

        snprintf(name, sizeof(name), "vigil_%d", i);
        r = PQprepare(s->be->w, name, pg_sql[i], 0, NULL);
        if (!pg_ok(r)) {
            status = pg_code(s->be->w, r);
            pg_conn_msg(s->be->w, msg, size);
        }
        PQclear(r);
        if (status != 0) {
            return status;
        }
    }
    s->be->prepared = 1;
    return 0;
}

/* BEGIN on a live writer. A connection that died while idle is only
 * found out here, before anything of the job was sent: reconnect and try
 * once more. */
static int pg_begin(struct store *s, struct store_job *j)
{
    struct store_be *be = s->be;
    char why[VIGIL_ERR_MAX] = "";
    int status = 0;

    for (int attempt = 0; attempt < 2; attempt++) {
        int reset = 0;

        status = pg_ensure(be->w, &reset, why, sizeof(why));
        if (status == 0 && (reset || !be->prepared)) {
            be->prepared = 0;
            status = pg_prepare(s, why, sizeof(why));
        }
        if (status == 0) {
            status = pg_cmd(be->w, "BEGIN", why, sizeof(why));
        }
        if (status == 0 || PQstatus(be->w) == CONNECTION_OK) {
            break;
        }
    }
    if (status != 0) {
        snprintf(j->msg, sizeof(j->msg), "%s: %s", s->name, why);
    }
    return status;
}

/* The database id of a bus series, catalogued on first sight; 0 if the
 * writer never heard of the series. Returns 0 or our code. */
static int pg_resolve(struct store *s, struct store_job *j, vigil_series_id id,
                      int64_t *dbid)
{
    struct store_wser *w;
    struct pg_params p = {.n = 0};
    const char *labels;
    PGresult *r;
    int status = 0;

    *dbid = 0;
    if (id >= s->nwser || s->wser[id].key == NULL) {
        return 0;
    }
    w = &s->wser[id];
    if (w->dbid != 0) {
        *dbid = w->dbid;
        return 0;
    }
    labels = store_labels_json(s, w);
    if (labels == NULL) {
        snprintf(j->msg, sizeof(j->msg), "%s: out of memory", s->name);
        return VIGIL_ENOMEM;
    }
    pg_p_text(&p, s->host);
    pg_p_text(&p, w->key);
    pg_p_text(&p, w->name);
    pg_p_text(&p, labels);
    r = pg_run(s, PG_ST_SERIES, &p);
    if (pg_ok(r) && PQntuples(r) == 1) {
        w->dbid = pg_i64(r, 0, 0);
        *dbid = w->dbid;
    } else {
        status = pg_ok(r) ? VIGIL_EIO : pg_code(s->be->w, r);
        snprintf(j->msg, sizeof(j->msg), "%s: ", s->name);
        pg_conn_msg(s->be->w, j->msg + strlen(j->msg),
                    sizeof(j->msg) - strlen(j->msg));
    }
    PQclear(r);
    return status;
}

/* Append a decimal integer and a comma. */
static char *pg_put_int(char *p, int64_t x)
{
    char tmp[24];
    int n = 0;
    uint64_t u = x < 0 ? (uint64_t)0 - (uint64_t)x : (uint64_t)x;

    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (x < 0) {
        *p++ = '-';
    }
    while (n > 0) {
        *p++ = tmp[--n];
    }
    *p++ = ',';
    return p;
}

/* The arrays being built for one INSERT. */
struct pg_batch {
    char *id, *ts, *v; /* write positions */
    uint32_t n;
    vigil_series_id last;
    int64_t last_ts;
};

static void pg_batch_reset(struct store_be *be, struct pg_batch *b)
{
    be->ids[0] = be->tss[0] = be->vals[0] = '{';
    b->id = be->ids + 1;
    b->ts = be->tss + 1;
    b->v = be->vals + 1;
    b->n = 0;
}

/* Send the batch: close the arrays (the last comma becomes '}'). */
static int pg_batch_send(struct store *s, struct store_job *j,
                         struct pg_batch *b)
{
    struct pg_params p = {.n = 0};
    int status;

    if (b->n == 0) {
        return 0;
    }
    b->id[-1] = b->ts[-1] = b->v[-1] = '}';
    *b->id = *b->ts = *b->v = '\0';
    pg_p_text(&p, s->be->ids);
    pg_p_text(&p, s->be->tss);
    pg_p_text(&p, s->be->vals);
    status = pg_step(s, j, PG_ST_SAMPLES, &p);
    if (status == 0) {
        j->samples_written += b->n;
    }
    pg_batch_reset(s->be, b);
    return status;
}

/* Samples in statements of up to PG_ROWS rows. One INSERT ... ON
 * CONFLICT DO UPDATE may not touch a row twice, so a sample that is not
 * after the previous one of its series (a repeated or older time) starts
 * a new statement: in sorted batches that is rare. */
static int pg_write_samples(struct store *s, struct store_job *j)
{
    struct store_be *be = s->be;
    const struct store_sample *sorted;
    struct pg_batch b;
    int status;

    for (uint32_t i = 0; i < j->nseries; i++) {
        int64_t dbid;

        status = pg_resolve(s, j, j->series[i].id, &dbid);
        if (status != 0) {
            return status;
        }
    }
    if (j->nsamples == 0) {
        return 0;
    }
    if (be->ids == NULL) {
        be->ids = malloc((size_t)PG_ROWS * PG_ID_CHARS + 2);
        be->tss = malloc((size_t)PG_ROWS * PG_ID_CHARS + 2);
        be->vals = malloc((size_t)PG_ROWS * PG_V_CHARS + 2);
        if (be->ids == NULL || be->tss == NULL || be->vals == NULL) {
            free(be->ids);
            free(be->tss);
            free(be->vals);
            be->ids = be->tss = be->vals = NULL;
            snprintf(j->msg, sizeof(j->msg), "%s: out of memory", s->name);
            return VIGIL_ENOMEM;
        }
    }
    sorted = store_sort(s, j);
    pg_batch_reset(be, &b);
    for (uint32_t i = 0; i < j->nsamples; i++) {
        const struct store_sample *p = &sorted[i];
        int64_t dbid;

        if (p->id < s->nwser && s->wser[p->id].dbid != 0) {
            dbid = s->wser[p->id].dbid;
        } else {
            status = pg_resolve(s, j, p->id, &dbid);
            if (status != 0) {
                return status;
            }
            if (dbid == 0) {
                continue; /* never announced: cannot happen */
            }
        }
        /* Late: its minute is already rolled up, so add it there now. */
        if (p->ts < s->wmark && !isnan(p->v)) {
            struct pg_params fp = {.n = 0};

            pg_p_int(&fp, dbid);
            pg_p_int(&fp, store_minute(p->ts));
            pg_p_double(&fp, p->v);
            status = pg_step(s, j, PG_ST_FOLD, &fp);
            if (status != 0) {
                return status;
            }
        }
        if (b.n == PG_ROWS ||
            (b.n > 0 &&
             (p->id < b.last || (p->id == b.last && p->ts <= b.last_ts)))) {
            status = pg_batch_send(s, j, &b);
            if (status != 0) {
                return status;
            }
        }
        b.id = pg_put_int(b.id, dbid);
        b.ts = pg_put_int(b.ts, p->ts);
        if (isnan(p->v)) {
            memcpy(b.v, "NULL,", 5);
            b.v += 5;
        } else {
            b.v += snprintf(b.v, PG_V_CHARS, "%.17g,", p->v);
        }
        b.last = p->id;
        b.last_ts = p->ts;
        b.n++;
    }
    return pg_batch_send(s, j, &b);
}

/* One record, parameters bound in the statement's order. */
static int pg_rec_write(struct store *s, struct store_job *j,
                        const struct store_rec *r)
{
    struct pg_params p = {.n = 0};
    int which;

    pg_p_text(&p, s->host);
    switch (r->kind) {
    case STORE_REC_INCIDENT: {
        const struct store_incident *x = &r->u.inc;

        which = PG_ST_INCIDENT;
        pg_p_int(&p, x->id);
        pg_p_text(&p, x->rule);
        pg_p_text(&p, x->series);
        pg_p_text(&p, x->title);
        pg_p_text(&p, x->runbook);
        pg_p_int(&p, x->state);
        pg_p_int(&p, x->open);
        pg_p_int(&p, x->opened_ts);
        pg_p_int(&p, x->resolved_ts);
        pg_p_int(&p, x->acknowledged);
        pg_p_text(&p, x->labels_json);
        break;
    }
    case STORE_REC_TRANSITION: {
        const struct store_transition *x = &r->u.tr;

        which = PG_ST_TRANSITION;
        pg_p_int(&p, x->incident_id);
        pg_p_int(&p, x->ts);
        pg_p_int(&p, x->from);
        pg_p_int(&p, x->to);
        pg_p_double(&p, x->value);
        pg_p_text(&p, x->reason);
        break;
    }
    case STORE_REC_EVIDENCE: {
        const struct store_evidence *x = &r->u.ev;

        which = PG_ST_EVIDENCE;
        pg_p_int(&p, x->incident_id);
        pg_p_int(&p, x->step);
        pg_p_text(&p, x->name);
        pg_p_text(&p, x->phase);
        pg_p_text(&p, x->status);
        pg_p_int(&p, x->started_ts);
        pg_p_int(&p, x->ended_ts);
        pg_p_text(&p, x->output);
        break;
    }
    default: {
        const struct store_action *x = &r->u.act;

        which = PG_ST_ACTION;
        pg_p_int(&p, x->id);
        pg_p_int(&p, x->incident_id);
        pg_p_text(&p, x->name);
        pg_p_text(&p, x->kind);
        pg_p_text(&p, x->mode);
        pg_p_text(&p, x->command);
        pg_p_int(&p, x->result);
        pg_p_text(&p, x->reason);
        pg_p_int(&p, x->intent_ts);
        pg_p_int(&p, x->started_ts);
        pg_p_int(&p, x->ended_ts);
        pg_p_int(&p, x->exit_code);
        pg_p_text(&p, x->output);
        break;
    }
    }
    return pg_step(s, j, which, &p);
}

/* Records in queue order, each behind a savepoint: a failed statement
 * would otherwise abort the whole transaction. A record whose values the
 * server refuses is dropped alone; anything else fails the job. */
static int pg_write_records(struct store *s, struct store_job *j)
{
    struct store_rec *r = j->recs.head;

    for (uint32_t i = 0; i < j->recs.n; i++, r = r->next) {
        int status = pg_cmd(s->be->w, "SAVEPOINT rec", NULL, 0);

        if (status == 0) {
            status = pg_rec_write(s, j, r);
        }
        r->status = 0;
        if (status == 0) {
            status = pg_cmd(s->be->w, "RELEASE SAVEPOINT rec", NULL, 0);
            j->records_written++;
        } else if (status == VIGIL_EINVAL) {
            r->status = VIGIL_EINVAL;
            if (j->records_refused++ == 0) {
                snprintf(j->refused_msg, sizeof(j->refused_msg), "%s", j->msg);
            }
            j->msg[0] = '\0';
            status = pg_cmd(s->be->w, "ROLLBACK TO SAVEPOINT rec", NULL, 0);
        }
        if (status != 0) {
            if (j->msg[0] == '\0') {
                snprintf(j->msg, sizeof(j->msg), "%s: ", s->name);
                pg_conn_msg(s->be->w, j->msg + strlen(j->msg),
                            sizeof(j->msg) - strlen(j->msg));
            }
            return status;
        }
    }
    return 0;
}

/* Roll the completed minutes since the mark up, a span at a time,
 * skipping stretches without samples (as store_sqlite.c does). */
static int pg_rollup(struct store *s, struct store_job *j)
{
    int64_t cur = store_minute(j->now), mark = s->wmark;
    int status;

    for (int step = 0; mark < cur && step < STORE_ROLLUP_STEPS; step++) {
        struct pg_params p = {.n = 0};
        int64_t next = cur, end;
        PGresult *r;

        pg_p_text(&p, s->host);
        pg_p_int(&p, mark);
        r = pg_run(s, PG_ST_NEXT_RAW, &p);
        if (!pg_ok(r)) {
            status = pg_code(s->be->w, r);
            snprintf(j->msg, sizeof(j->msg), "%s: ", s->name);
            pg_conn_msg(s->be->w, j->msg + strlen(j->msg),
                        sizeof(j->msg) - strlen(j->msg));
            PQclear(r);
            return status;
        }
        if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0)) {
            next = pg_i64(r, 0, 0);
        }
        PQclear(r);
        if (store_minute(next) >= cur) {
            mark = cur;
            break;
        }
        mark = store_minute(next) > mark ? store_minute(next) : mark;
        end = cur - mark > STORE_ROLLUP_SPAN ? mark + STORE_ROLLUP_SPAN : cur;
        p.n = 0;
        pg_p_text(&p, s->host);
        pg_p_int(&p, mark);
        pg_p_int(&p, end);
        status = pg_step(s, j, PG_ST_ROLLUP, &p);
        if (status != 0) {
            return status;
        }
        mark = end;
    }
    if (mark != s->wmark) {
        struct pg_params p = {.n = 0};

        pg_p_text(&p, s->host);
        pg_p_int(&p, mark);
        status = pg_step(s, j, PG_ST_MARK, &p);
        if (status != 0) {
            return status;
        }
        s->wmark = mark;
    }
    if (mark < cur) {
        j->backlog = 1;
    }
    return 0;
}

/* Delete at most STORE_TRIM_CHUNK rows older than cut from one table. */
static int pg_trim(struct store *s, struct store_job *j, int which, int64_t cut)
{
    struct pg_params p = {.n = 0};
    PGresult *r;
    int status = 0;

    pg_p_text(&p, s->host);
    pg_p_int(&p, cut);
    pg_p_int(&p, STORE_TRIM_CHUNK);
    r = pg_run(s, which, &p);
    if (!pg_ok(r)) {
        status = pg_code(s->be->w, r);
        snprintf(j->msg, sizeof(j->msg), "%s: ", s->name);
        pg_conn_msg(s->be->w, j->msg + strlen(j->msg),
                    sizeof(j->msg) - strlen(j->msg));
    } else if (pg_changes(r) >= STORE_TRIM_CHUNK) {
        j->backlog = 1;
    }
    PQclear(r);
    return status;
}

/* As store_sqlite.c: raw samples go in whole minutes once older than
 * their retention and rolled up; roll-ups after theirs. */
static int pg_housekeep(struct store *s, struct store_job *j)
{
    int64_t cut = j->now - s->raw_retention_ns;
    int status;

    if (cut > s->wmark) {
        cut = s->wmark;
    }
    status = pg_trim(s, j, PG_ST_TRIM_RAW, store_minute(cut));
    if (status == 0) {
        status =
            pg_trim(s, j, PG_ST_TRIM_ROLLUP, j->now - s->rollup_retention_ns);
    }
    return status;
}

/* The approved actions, after the commit. A failure here only delays
 * them to the next flush. */
static void pg_approved(struct store *s, struct store_job *j)
{
    struct pg_params p = {.n = 0};
    PGresult *r;

    pg_p_text(&p, s->host);
    r = pg_run(s, PG_ST_APPROVED, &p);
    if (pg_ok(r)) {
        for (int i = 0; i < PQntuples(r) && j->napproved < STORE_APPROVED_MAX;
             i++) {
            j->approved[j->napproved++] = pg_i64(r, i, 0);
        }
    }
    PQclear(r);
}

/* See store_be.h. */
static int pg_flush(struct store *s, struct store_job *j)
{
    int status = pg_begin(s, j);

    if (status == 0) {
        status = pg_write_samples(s, j);
    }
    if (status == 0) {
        status = pg_write_records(s, j);
    }
    if (status == 0 && j->daemon) {
        status = pg_rollup(s, j);
    }
    if (status == 0 && j->house) {
        status = pg_housekeep(s, j);
    }
    if (status == 0) {
        status = pg_cmd(s->be->w, "COMMIT", NULL, 0);
        if (status != 0) {
            snprintf(j->msg, sizeof(j->msg), "%s: ", s->name);
            pg_conn_msg(s->be->w, j->msg + strlen(j->msg),
                        sizeof(j->msg) - strlen(j->msg));
        }
    }
    if (status != 0) {
        if (PQstatus(s->be->w) == CONNECTION_OK &&
            PQtransactionStatus(s->be->w) != PQTRANS_IDLE) {
            pg_cmd(s->be->w, "ROLLBACK", NULL, 0);
        }
        return status;
    }
    if (j->daemon && s->approval_cb != NULL) {
        pg_approved(s, j);
    }
    return 0;
}

/* ------------------------------------------------------- open, close */

/* One value of the first row of a query with text parameters, or found
 * = 0 for no row or NULL. Returns 0 or our code with err set. */
static int pg_query_i64(struct store *s, PGconn *c, const char *sql, int n,
                        const char *const *vals, int64_t *out, int *found,
                        struct vigil_err *err)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, vals, NULL, NULL, 0);
    int status = 0;

    *found = 0;
    if (!pg_ok(r)) {
        char msg[VIGIL_ERR_MAX];

        status = pg_code(c, r);
        pg_conn_msg(c, msg, sizeof(msg));
        err_set(err, status, "%s: %s", s->name, msg);
    } else if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0)) {
        *out = pg_i64(r, 0, 0);
        *found = 1;
    }
    PQclear(r);
    return status;
}

/* A command without parameters, its failure into err. */
static int pg_cmd_err(struct store *s, PGconn *c, const char *sql,
                      struct vigil_err *err)
{
    char msg[VIGIL_ERR_MAX];
    int status = pg_cmd(c, sql, msg, sizeof(msg));

    if (status != 0) {
        err_set(err, status, "%s: %s", s->name, msg);
    }
    return status;
}

/* Bring the schema up to date, or refuse a database from a newer vigil
 * or one where vigil's table names belong to something else. Under an
 * advisory lock, in one transaction: agents starting together migrate
 * once. */
static int pg_migrate(struct store *s, struct vigil_err *err)
{
    PGconn *c = s->be->w;
    int64_t version = 0, v;
    int found, status;

    status = pg_cmd_err(s, c, "BEGIN", err);
    if (status != 0) {
        return status;
    }
    status = pg_cmd_err(
        s, c, "SELECT pg_advisory_xact_lock(" PG_MIGRATE_LOCK ")", err);
    /* 10 if meta exists, + 1 if any other table of ours does. */
    if (status == 0) {
        status =
            pg_query_i64(s, c,
                         "SELECT (to_regclass('meta') IS NOT NULL)::int * 10"
                         " + (to_regclass('series') IS NOT NULL"
                         " OR to_regclass('samples') IS NOT NULL"
                         " OR to_regclass('incidents') IS NOT NULL"
                         " OR to_regclass('actions') IS NOT NULL)::int",
                         0, NULL, &v, &found, err);
    }
    if (status == 0 && v >= 10) {
        status = pg_query_i64(
            s, c, "SELECT value FROM meta WHERE key = 'schema_version'", 0,
            NULL, &version, &found, err);
        if (status == 0 && !found) {
            version = -1;
        }
    }
    if (status == 0 && (version < 0 || v == 1)) {
        status = err_set(err, VIGIL_EINVAL,
                         "%s: not a vigil database (it has tables named as "
                         "vigil's but no schema version)",
                         s->name);
    }
    if (status == 0 && version > STORE_SCHEMA_VERSION) {
        status = err_set(err, VIGIL_ESTATE,
                         "%s: schema version %lld is newer than this vigil "
                         "supports (%d); use a newer vigil or another "
                         "database",
                         s->name, (long long)version, STORE_SCHEMA_VERSION);
    }
    for (int64_t m = version; status == 0 && m < STORE_SCHEMA_VERSION; m++) {
        status = pg_cmd_err(s, c, pg_migrations[m], err);
    }
    if (status == 0 && version < STORE_SCHEMA_VERSION) {
        char sql[160];

        snprintf(sql, sizeof(sql),
                 "INSERT INTO meta (key, value) VALUES ('schema_version', %d)"
                 " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                 STORE_SCHEMA_VERSION);
        status = pg_cmd_err(s, c, sql, err);
        if (status == 0 && version > 0) {
            log_info("store", "%s: schema migrated from version %lld to %d",
                     s->name, (long long)version, STORE_SCHEMA_VERSION);
        }
    }
    if (status == 0) {
        return pg_cmd_err(s, c, "COMMIT", err);
    }
    pg_cmd(c, "ROLLBACK", NULL, 0);
    return status;
}

/* Actions that were running when vigil died: interrupted. */
static int pg_sweep_actions(struct store *s, struct vigil_err *err)
{
    struct pg_params p = {.n = 0};
    PGresult *r;
    int status = 0;

    pg_p_text(&p, s->host);
    pg_p_int(&p, STORE_ACT_INTERRUPTED);
    pg_p_int(&p, clock_wall_ns());
    pg_p_text(&p, STORE_INTERRUPTED_REASON);
    r = PQexecParams(s->be->w,
                     "UPDATE actions SET result = $2, ended_ts = $3,"
                     " reason = $4 WHERE host = $1 AND result IN (0, 6)",
                     p.n, NULL, p.v, NULL, NULL, 0);
    if (!pg_ok(r)) {
        char msg[VIGIL_ERR_MAX];

        status = pg_code(s->be->w, r);
        pg_conn_msg(s->be->w, msg, sizeof(msg));
        err_set(err, status, "%s: %s", s->name, msg);
    } else if (pg_changes(r) > 0) {
        log_warn("store",
                 "%s: actions running when vigil stopped, now marked "
                 "interrupted: %ld",
                 s->name, pg_changes(r));
    }
    PQclear(r);
    return status;
}

/* Ids and roll-up mark. */
static int pg_load(struct store *s, struct vigil_err *err)
{
    const char *host[1] = {s->host};
    int64_t v;
    int found, status;

    status = pg_query_i64(s, s->be->w,
                          "SELECT max(id) FROM incidents WHERE host = $1", 1,
                          host, &v, &found, err);
    s->next_incident = found ? v + 1 : 1;
    if (status == 0) {
        status = pg_query_i64(s, s->be->w,
                              "SELECT max(id) FROM actions WHERE host = $1", 1,
                              host, &v, &found, err);
        s->next_action = found ? v + 1 : 1;
    }
    if (status == 0) {
        status = pg_query_i64(s, s->be->w,
                              "SELECT value FROM meta WHERE key ="
                              " 'rollup_mark/' || $1::text",
                              1, host, &v, &found, err);
        s->wmark = found ? v : 0;
    }
    return status;
}

/* See store_be.h: postgresql://user@host:port/dbname, rebuilt from the
 * parsed URI so that neither a password nor options can slip in. */
static char *pg_describe(const char *path, struct vigil_err *err)
{
    char *msg = NULL, *name;
    const char *user = NULL, *host = NULL, *addr = NULL, *port = NULL;
    const char *db = NULL;
    PQconninfoOption *opts;
    size_t size;

    if (pq_load(err) != 0) {
        return NULL;
    }
    opts = PQconninfoParse(path, &msg);

    if (opts == NULL) {
        char line[VIGIL_ERR_MAX];

        pg_oneline(line, sizeof(line), msg != NULL ? msg : "out of memory");
        err_set(err, msg != NULL ? VIGIL_EINVAL : VIGIL_ENOMEM,
                "store: not a usable PostgreSQL URI: %s", line);
        PQfreemem(msg);
        return NULL;
    }
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (o->val == NULL || o->val[0] == '\0') {
            continue;
        }
        if (strcmp(o->keyword, "user") == 0) {
            user = o->val;
        } else if (strcmp(o->keyword, "host") == 0) {
            host = o->val;
        } else if (strcmp(o->keyword, "hostaddr") == 0) {
            addr = o->val;
        } else if (strcmp(o->keyword, "port") == 0) {
            port = o->val;
        } else if (strcmp(o->keyword, "dbname") == 0) {
            db = o->val;
        }
    }
    if (host == NULL) {
        host = addr != NULL ? addr : "";
    }
    size = 32 + strlen(host) + (user ? strlen(user) : 0) +
           (port ? strlen(port) : 0) + (db ? strlen(db) : 0);
    name = malloc(size);
    if (name == NULL) {
        err_set(err, VIGIL_ENOMEM, "store: out of memory");
    } else {
        snprintf(name, size, "postgresql://%s%s%s%s%s/%s", user ? user : "",
                 user ? "@" : "", host, port ? ":" : "", port ? port : "",
                 db ? db : "");
    }
    PQconninfoFree(opts);
    return name;
}

/* Connect one connection; its failure into err, naming the server. */
static int pg_open_conn(struct store *s, PGconn **out, struct vigil_err *err)
{
    char msg[VIGIL_ERR_MAX];

    *out = pg_connect(s->be->uri);
    if (*out != NULL && PQstatus(*out) == CONNECTION_OK) {
        return 0;
    }
    pg_conn_msg(*out, msg, sizeof(msg));
    return err_set(err, VIGIL_EIO, "%s: cannot connect: %s", s->name, msg);
}

/* See store_be.h. An unreachable server fails the open: the next ids
 * come from the rows already stored, and without them this agent could
 * only guess (the daemon goes on without a store, and says so). */
static int pg_open(struct store *s, const char *path, struct vigil_err *err)
{
    int status;

    if (pq_load(err) != 0) {
        return VIGIL_EIO;
    }

    s->be = calloc(1, sizeof(*s->be));
    if (s->be == NULL || (s->be->uri = store_strdup(path)) == NULL) {
        return err_set(err, VIGIL_ENOMEM, "store: out of memory");
    }
    status = pg_open_conn(s, &s->be->w, err);
    if (status == 0) {
        status = pg_migrate(s, err);
    }
    if (status == 0 && s->loop != NULL) {
        status = pg_sweep_actions(s, err);
    }
    if (status == 0) {
        status = pg_load(s, err);
    }
    if (status == 0) {
        char msg[VIGIL_ERR_MAX];

        status = pg_prepare(s, msg, sizeof(msg));
        if (status != 0) {
            err_set(err, status, "%s: %s", s->name, msg);
        }
    }
    if (status == 0 && s->loop == NULL) {
        s->be->r = s->be->w;
    } else if (status == 0) {
        status = pg_open_conn(s, &s->be->r, err);
    }
    return status;
}

/* See store_be.h. */
static void pg_close(struct store *s)
{
    struct store_be *be = s->be;

    if (be == NULL) {
        return;
    }
    if (be->r != be->w) {
        PQfinish(be->r);
    }
    PQfinish(be->w);
    free(be->ids);
    free(be->tss);
    free(be->vals);
    free(be->uri);
    free(be);
    s->be = NULL;
}

/* -------------------------------------------------------------- reads */

/* A read on the reader connection. A connection lost since
 * the last read is reconnected, and the read tried once more. Returns
 * the result (the caller clears it) or NULL with the error logged and
 * *status set. */
static PGresult *pg_read(struct store *s, const char *sql, struct pg_params *p,
                         int *status)
{
    PGconn *c = s->be->r;
    char msg[VIGIL_ERR_MAX];
    PGresult *r = NULL;

    for (int attempt = 0; attempt < 2; attempt++) {
        int reset = 0;

        *status = pg_ensure(c, &reset, msg, sizeof(msg));
        if (*status != 0) {
            log_error("store", "%s: cannot connect: %s", s->name, msg);
            return NULL;
        }
        /* A tool's connection is also the writer's: its statements are
         * prepared again (pg_begin) after a reset. */
        if (reset && c == s->be->w) {
            s->be->prepared = 0;
        }
        r = PQexecParams(c, sql, p->n, NULL, p->v, NULL, NULL, 0);
        if (pg_ok(r)) {
            *status = 0;
            return r;
        }
        *status = pg_code(c, r);
        pg_conn_msg(c, msg, sizeof(msg));
        PQclear(r);
        r = NULL;
        if (PQstatus(c) == CONNECTION_OK) {
            break;
        }
    }
    log_error("store", "%s: %s", s->name, msg);
    return NULL;
}

static void pg_row_incident(const PGresult *r, int i, struct store_incident *x)
{
    x->id = pg_i64(r, i, 0);
    x->rule = pg_str(r, i, 1);
    x->series = pg_str(r, i, 2);
    x->title = pg_str(r, i, 3);
    x->runbook = pg_text(r, i, 4);
    x->state = pg_int(r, i, 5);
    x->open = pg_int(r, i, 6);
    x->opened_ts = pg_i64(r, i, 7);
    x->resolved_ts = pg_i64(r, i, 8);
    x->acknowledged = pg_int(r, i, 9);
    x->labels_json = pg_text(r, i, 10);
}

/* See store.h. */
static int pg_list_incidents(struct store *s, int open_only, unsigned limit,
                             store_incident_cb cb, void *arg)
{
    struct pg_params p = {.n = 0};
    PGresult *r;
    int status;

    pg_p_text(&p, s->host);
    pg_p_int(&p, open_only != 0);
    if (limit > 0) {
        pg_p_int(&p, limit);
    } else {
        pg_p_text(&p, NULL); /* LIMIT NULL: all */
    }
    r = pg_read(s,
                "SELECT " STORE_INCIDENT_COLS " FROM incidents"
                " WHERE host = $1 AND ($2::int = 0 OR open = 1)"
                " ORDER BY id DESC LIMIT $3::bigint",
                &p, &status);
    if (r == NULL) {
        return status;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        struct store_incident x;

        pg_row_incident(r, i, &x);
        cb(arg, &x);
    }
    PQclear(r);
    return 0;
}

/* The rows of one incident's table, in order. */
static PGresult *pg_read_of(struct store *s, const char *sql, int64_t id,
                            int *status)
{
    struct pg_params p = {.n = 0};

    pg_p_text(&p, s->host);
    pg_p_int(&p, id);
    return pg_read(s, sql, &p, status);
}

static int pg_read_transitions(struct store *s, int64_t id,
                               store_transition_cb cb, void *arg)
{
    int status;
    PGresult *r = pg_read_of(s,
                             "SELECT " STORE_TRANSITION_COLS
                             " FROM transitions WHERE host = $1 AND"
                             " incident_id = $2 ORDER BY ts, seq",
                             id, &status);

    for (int i = 0; r != NULL && i < PQntuples(r); i++) {
        struct store_transition x = {
            .incident_id = pg_i64(r, i, 0),
            .ts = pg_i64(r, i, 1),
            .from = pg_int(r, i, 2),
            .to = pg_int(r, i, 3),
            .value = pg_double(r, i, 4),
            .reason = pg_text(r, i, 5),
        };

        cb(arg, &x);
    }
    PQclear(r);
    return status;
}

static int pg_read_evidence(struct store *s, int64_t id, store_evidence_cb cb,
                            void *arg)
{
    int status;
    PGresult *r = pg_read_of(s,
                             "SELECT " STORE_EVIDENCE_COLS
                             " FROM evidence WHERE host = $1 AND"
                             " incident_id = $2 ORDER BY step",
                             id, &status);

    for (int i = 0; r != NULL && i < PQntuples(r); i++) {
        struct store_evidence x = {
            .incident_id = pg_i64(r, i, 0),
            .step = pg_int(r, i, 1),
            .name = pg_str(r, i, 2),
            .phase = pg_str(r, i, 3),
            .status = pg_str(r, i, 4),
            .started_ts = pg_i64(r, i, 5),
            .ended_ts = pg_i64(r, i, 6),
            .output = pg_text(r, i, 7),
        };

        cb(arg, &x);
    }
    PQclear(r);
    return status;
}

static int pg_read_actions(struct store *s, int64_t id, store_action_cb cb,
                           void *arg)
{
    int status;
    PGresult *r = pg_read_of(s,
                             "SELECT " STORE_ACTION_COLS
                             " FROM actions WHERE host = $1 AND"
                             " incident_id = $2 ORDER BY id",
                             id, &status);

    for (int i = 0; r != NULL && i < PQntuples(r); i++) {
        struct store_action x = {
            .id = pg_i64(r, i, 0),
            .incident_id = pg_i64(r, i, 1),
            .name = pg_str(r, i, 2),
            .kind = pg_str(r, i, 3),
            .mode = pg_str(r, i, 4),
            .command = pg_str(r, i, 5),
            .result = pg_int(r, i, 6),
            .reason = pg_text(r, i, 7),
            .intent_ts = pg_i64(r, i, 8),
            .started_ts = pg_i64(r, i, 9),
            .ended_ts = pg_i64(r, i, 10),
            .exit_code = pg_int(r, i, 11),
            .output = pg_text(r, i, 12),
        };

        cb(arg, &x);
    }
    PQclear(r);
    return status;
}

/* See store.h. */
static int pg_get_incident(struct store *s, int64_t id, store_incident_cb icb,
                           store_transition_cb tcb, store_evidence_cb ecb,
                           store_action_cb acb, void *arg)
{
    int status;
    PGresult *r = pg_read_of(s,
                             "SELECT " STORE_INCIDENT_COLS
                             " FROM incidents WHERE host = $1 AND id = $2",
                             id, &status);

    if (r == NULL) {
        return status;
    }
    if (PQntuples(r) == 0) {
        status = VIGIL_ENOENT;
    } else if (icb != NULL) {
        struct store_incident x;

        pg_row_incident(r, 0, &x);
        icb(arg, &x);
    }
    PQclear(r);
    if (status == 0 && tcb != NULL) {
        status = pg_read_transitions(s, id, tcb, arg);
    }
    if (status == 0 && ecb != NULL) {
        status = pg_read_evidence(s, id, ecb, arg);
    }
    if (status == 0 && acb != NULL) {
        status = pg_read_actions(s, id, acb, arg);
    }
    return status;
}

/* See store.h. */
static int pg_history(struct store *s, const char *series_key, int64_t since,
                      store_sample_cb cb, store_rollup_cb rcb, void *arg)
{
    struct pg_params p = {.n = 0};
    int64_t sid, oldest = INT64_MAX;
    PGresult *r;
    int status;

    pg_p_text(&p, s->host);
    pg_p_text(&p, series_key);
    r = pg_read(s,
                "SELECT se.id, (SELECT min(ts) FROM samples"
                " WHERE series_id = se.id)"
                " FROM series se WHERE se.host = $1 AND se.key = $2",
                &p, &status);
    if (r == NULL) {
        return status;
    }
    if (PQntuples(r) == 0) {
        PQclear(r);
        return VIGIL_ENOENT;
    }
    sid = pg_i64(r, 0, 0);
    if (!PQgetisnull(r, 0, 1)) {
        oldest = pg_i64(r, 0, 1);
    }
    PQclear(r);
    /* The minutes older than the oldest raw sample's, from the one that
     * holds `since` on. */
    if (rcb != NULL && since < oldest) {
        int64_t from = since > INT64_MIN + STORE_NS_PER_MIN
                           ? store_minute(since)
                           : INT64_MIN;
        int64_t to = oldest == INT64_MAX ? INT64_MAX : store_minute(oldest);

        p.n = 0;
        pg_p_int(&p, sid);
        pg_p_int(&p, from);
        pg_p_int(&p, to);
        r = pg_read(s,
                    "SELECT ts_minute, min, avg, max, count FROM rollup_1m"
                    " WHERE series_id = $1 AND ts_minute >= $2"
                    " AND ts_minute < $3 ORDER BY ts_minute",
                    &p, &status);
        if (r == NULL) {
            return status;
        }
        for (int i = 0; i < PQntuples(r); i++) {
            rcb(arg, pg_i64(r, i, 0), pg_double(r, i, 1), pg_double(r, i, 2),
                pg_double(r, i, 3), (uint64_t)pg_i64(r, i, 4));
        }
        PQclear(r);
    }
    if (cb != NULL && oldest != INT64_MAX) {
        p.n = 0;
        pg_p_int(&p, sid);
        pg_p_int(&p, since);
        r = pg_read(s,
                    "SELECT ts, value FROM samples"
                    " WHERE series_id = $1 AND ts >= $2 ORDER BY ts",
                    &p, &status);
        if (r == NULL) {
            return status;
        }
        for (int i = 0; i < PQntuples(r); i++) {
            cb(arg, pg_i64(r, i, 0), pg_double(r, i, 1));
        }
        PQclear(r);
    }
    return 0;
}

/* See store.h (tool mode). */
static int pg_approve(struct store *s, int64_t id, const char *who,
                      struct vigil_err *err)
{
    struct pg_params p = {.n = 0};
    PGresult *r;
    int status;

    pg_p_text(&p, s->host);
    pg_p_int(&p, id);
    pg_p_text(&p, who);
    pg_p_int(&p, clock_wall_ns());
    r = pg_read(s,
                "UPDATE actions SET approved_by = $3, approved_ts = $4"
                " WHERE host = $1 AND id = $2 AND result = 6"
                " AND approved_ts = 0",
                &p, &status);
    if (r == NULL) {
        return err_set(err, status, "%s: approving action %lld failed", s->name,
                       (long long)id);
    }
    status = pg_changes(r) == 0 ? VIGIL_ENOENT : 0;
    PQclear(r);
    if (status != 0) {
        return err_set(err, status,
                       "%s: no action %lld is waiting for approval", s->name,
                       (long long)id);
    }
    return 0;
}

const struct store_be_ops store_pg_ops = {
    .describe = pg_describe,
    .open = pg_open,
    .close = pg_close,
    .flush = pg_flush,
    .list_incidents = pg_list_incidents,
    .get_incident = pg_get_incident,
    .history = pg_history,
    .approve = pg_approve,
};
