/*
 * store_sqlite - the SQLite back end of the store (see store_be.h).
 *
 * WAL with synchronous=NORMAL; the writer's statements are prepared once,
 * with the host bound at prepare time; checkpoints run in the flush job,
 * never on the loop. Daemon mode has a second connection, read-only in
 * practice, for the synchronous reads on the loop thread, so that they
 * never share the writer's connection with a job in flight; in tool mode
 * both are the same connection.
 */
#include "store_be.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "clock.h"
#include "log.h"

/* A passive checkpoint every so many flushes, or sooner once the WAL has
 * grown past this many pages (4 KiB each). */
#define STORE_CHECKPOINT_FLUSHES 16
#define STORE_CHECKPOINT_PAGES 8192

#define STORE_BUSY_TIMEOUT_MS 5000

/* ------------------------------------------------------------- schema */

/* ------------------------------------------------------------- schema */

/* Migrations, applied in order in one transaction; schema_version in meta
 * is the number applied. Append only: a released migration never
 * changes. */
static const char *const store_migrations[] = {
    /* 1: the first schema. Samples and roll-ups belong to a series, which
     * carries the host; everything else carries it itself. */
    "CREATE TABLE meta (\n"
    "    key TEXT PRIMARY KEY,\n"
    "    value\n"
    ");\n"
    "CREATE TABLE series (\n"
    "    id INTEGER PRIMARY KEY,\n"
    "    host TEXT NOT NULL,\n"
    "    key TEXT NOT NULL,\n"
    "    name TEXT NOT NULL,\n"
    "    labels TEXT NOT NULL,\n"
    "    UNIQUE (host, key)\n"
    ");\n"
    "CREATE TABLE samples (\n"
    "    series_id INTEGER NOT NULL,\n"
    "    ts INTEGER NOT NULL,\n"
    "    value REAL,\n" /* NULL holds a NaN */
    "    PRIMARY KEY (series_id, ts)\n"
    ") WITHOUT ROWID;\n"
    "CREATE TABLE rollup_1m (\n"
    "    series_id INTEGER NOT NULL,\n"
    "    ts_minute INTEGER NOT NULL,\n"
    "    min REAL NOT NULL,\n"
    "    avg REAL NOT NULL,\n"
    "    max REAL NOT NULL,\n"
    "    count INTEGER NOT NULL,\n"
    "    PRIMARY KEY (series_id, ts_minute)\n"
    ") WITHOUT ROWID;\n"
    "CREATE TABLE incidents (\n"
    "    host TEXT NOT NULL,\n"
    "    id INTEGER NOT NULL,\n"
    "    rule TEXT,\n"
    "    series TEXT,\n"
    "    title TEXT,\n"
    "    runbook TEXT,\n"
    "    state INTEGER NOT NULL,\n"
    "    open INTEGER NOT NULL,\n"
    "    opened_ts INTEGER NOT NULL,\n"
    "    resolved_ts INTEGER NOT NULL,\n"
    "    acknowledged INTEGER NOT NULL,\n"
    "    labels TEXT,\n"
    "    PRIMARY KEY (host, id)\n"
    ");\n"
    "CREATE INDEX incidents_open ON incidents (host, open, id);\n"
    "CREATE TABLE transitions (\n"
    "    host TEXT NOT NULL,\n"
    "    incident_id INTEGER NOT NULL,\n"
    "    ts INTEGER NOT NULL,\n"
    "    from_state INTEGER NOT NULL,\n"
    "    to_state INTEGER NOT NULL,\n"
    "    value REAL,\n"
    "    reason TEXT\n"
    ");\n"
    "CREATE INDEX transitions_incident ON transitions (host, incident_id, "
    "ts);\n"
    "CREATE TABLE evidence (\n"
    "    host TEXT NOT NULL,\n"
    "    incident_id INTEGER NOT NULL,\n"
    "    step INTEGER NOT NULL,\n"
    "    name TEXT,\n"
    "    phase TEXT,\n"
    "    status TEXT,\n"
    "    started_ts INTEGER NOT NULL,\n"
    "    ended_ts INTEGER NOT NULL,\n"
    "    output TEXT,\n"
    "    UNIQUE (host, incident_id, step)\n"
    ");\n"
    "CREATE TABLE actions (\n"
    "    host TEXT NOT NULL,\n"
    "    id INTEGER NOT NULL,\n"
    "    incident_id INTEGER NOT NULL,\n"
    "    name TEXT,\n"
    "    kind TEXT,\n"
    "    mode TEXT,\n"
    "    command TEXT,\n"
    "    result INTEGER NOT NULL,\n"
    "    reason TEXT,\n"
    "    intent_ts INTEGER NOT NULL,\n"
    "    started_ts INTEGER NOT NULL,\n"
    "    ended_ts INTEGER NOT NULL,\n"
    "    exit_code INTEGER NOT NULL,\n"
    "    output TEXT,\n"
    "    PRIMARY KEY (host, id)\n"
    ");\n"
    "CREATE INDEX actions_incident ON actions (host, incident_id, id);\n"
    /* Only the rows the open-time sweep looks for. */
    "CREATE INDEX actions_pending ON actions (host) WHERE result = 0;\n",
    /* 2: approvals. `vigil incidents approve` sets approved_ts on an action
     * that waits; the daemon's writer finds it and the action runs. */
    "ALTER TABLE actions ADD COLUMN approved_by TEXT;\n"
    "ALTER TABLE actions ADD COLUMN approved_ts INTEGER NOT NULL DEFAULT 0;\n"
    "CREATE INDEX actions_awaiting ON actions (host) WHERE result = 6;\n",
};

_Static_assert(sizeof(store_migrations) / sizeof(store_migrations[0]) ==
                   STORE_SCHEMA_VERSION,
               "store_pg.c and store_sqlite.c migrate in step");

/* ---------------------------------------------------------- statements */

/* The writer's statements, prepared once (SQLITE_PREPARE_PERSISTENT).
 * :host is bound once, at prepare time. */
enum store_stmt {
    STORE_ST_BEGIN,
    STORE_ST_COMMIT,
    STORE_ST_ROLLBACK,
    STORE_ST_SERIES_ADD,
    STORE_ST_SERIES_ID,
    STORE_ST_SAMPLE,
    STORE_ST_SAMPLES,
    STORE_ST_FOLD,
    STORE_ST_NEXT_RAW,
    STORE_ST_ROLLUP,
    STORE_ST_MARK,
    STORE_ST_TRIM_RAW,
    STORE_ST_TRIM_ROLLUP,
    STORE_ST_INCIDENT,
    STORE_ST_TRANSITION,
    STORE_ST_EVIDENCE,
    STORE_ST_ACTION,
    STORE_ST_APPROVED,
    STORE_ST_COUNT
};

/* Merge a roll-up row into an existing one (count-weighted average). */
#define STORE_ROLLUP_MERGE                                                     \
    " ON CONFLICT (series_id, ts_minute) DO UPDATE SET"                        \
    " min = min(min, excluded.min), max = max(max, excluded.max),"             \
    " avg = (avg * count + excluded.avg * excluded.count)"                     \
    " / (count + excluded.count),"                                             \
    " count = count + excluded.count"

/* Samples go in STORE_ROWS at a time: one statement per row would cost
 * more in statement overhead (bind, step, reset, cursors) than in the
 * B-tree. */
#define STORE_ROWS 32
#define STORE_ROWS4 "(?,?,?),(?,?,?),(?,?,?),(?,?,?)"
#define STORE_ROWS16 STORE_ROWS4 "," STORE_ROWS4 "," STORE_ROWS4 "," STORE_ROWS4
#define STORE_ROWS32 STORE_ROWS16 "," STORE_ROWS16
#define STORE_SAMPLE_UPSERT                                                    \
    " ON CONFLICT (series_id, ts) DO UPDATE SET value = excluded.value"

static const char *const store_sql[STORE_ST_COUNT] = {
    [STORE_ST_BEGIN] = "BEGIN IMMEDIATE",
    [STORE_ST_COMMIT] = "COMMIT",
    [STORE_ST_ROLLBACK] = "ROLLBACK",
    [STORE_ST_SERIES_ADD] = "INSERT INTO series (host, key, name, labels)"
                            " VALUES (:host, ?2, ?3, ?4)"
                            " ON CONFLICT (host, key) DO NOTHING",
    [STORE_ST_SERIES_ID] =
        "SELECT id FROM series WHERE host = :host AND key = ?2",
    [STORE_ST_SAMPLE] = "INSERT INTO samples (series_id, ts, value)"
                        " VALUES (?,?,?)" STORE_SAMPLE_UPSERT,
    [STORE_ST_SAMPLES] = "INSERT INTO samples (series_id, ts, value)"
                         " VALUES " STORE_ROWS32 STORE_SAMPLE_UPSERT,
    /* A sample older than the roll-up mark goes into its minute at once. */
    [STORE_ST_FOLD] = "INSERT INTO rollup_1m"
                      " (series_id, ts_minute, min, avg, max, count)"
                      " VALUES (?1, ?2, ?3, ?3, ?3, 1)" STORE_ROLLUP_MERGE,
    /* The oldest raw time at or after ?2: one index seek per series. */
    [STORE_ST_NEXT_RAW] = "SELECT min((SELECT min(ts) FROM samples"
                          " WHERE series_id = se.id AND ts >= ?2))"
                          " FROM series se WHERE se.host = :host",
    [STORE_ST_ROLLUP] =
        "INSERT INTO rollup_1m (series_id, ts_minute, min, avg, max, count)"
        " SELECT sa.series_id, " STORE_MINUTE_SQL(
            "sa.ts") " AS m, min(sa.value), avg(sa.value), max(sa.value),"
                     " count(*)"
                     " FROM series se JOIN samples sa ON sa.series_id = se.id"
                     " WHERE se.host = :host AND sa.ts >= ?2 AND sa.ts < ?3"
                     " AND sa.value IS NOT NULL"
                     " GROUP BY sa.series_id, m" STORE_ROLLUP_MERGE,
    [STORE_ST_MARK] = "INSERT OR REPLACE INTO meta (key, value)"
                      " VALUES ('rollup_mark/' || :host, ?2)",
    [STORE_ST_TRIM_RAW] = "DELETE FROM samples WHERE (series_id, ts) IN"
                          " (SELECT sa.series_id, sa.ts FROM series se"
                          " JOIN samples sa ON sa.series_id = se.id"
                          " WHERE se.host = :host AND sa.ts < ?2 LIMIT ?3)",
    [STORE_ST_TRIM_ROLLUP] =
        "DELETE FROM rollup_1m WHERE (series_id, ts_minute) IN"
        " (SELECT r.series_id, r.ts_minute FROM series se"
        " JOIN rollup_1m r ON r.series_id = se.id"
        " WHERE se.host = :host AND r.ts_minute < ?2 LIMIT ?3)",
    [STORE_ST_INCIDENT] =
        "INSERT INTO incidents (host, id, rule, series, title, runbook, state,"
        " open, opened_ts, resolved_ts, acknowledged, labels)"
        " VALUES (:host, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
        " ON CONFLICT (host, id) DO UPDATE SET rule = excluded.rule,"
        " series = excluded.series, title = excluded.title,"
        " runbook = excluded.runbook, state = excluded.state,"
        " open = excluded.open, opened_ts = excluded.opened_ts,"
        " resolved_ts = excluded.resolved_ts,"
        " acknowledged = excluded.acknowledged, labels = excluded.labels",
    [STORE_ST_TRANSITION] =
        "INSERT INTO transitions (host, incident_id, ts, from_state,"
        " to_state, value, reason)"
        " VALUES (:host, ?2, ?3, ?4, ?5, ?6, ?7)",
    [STORE_ST_EVIDENCE] =
        "INSERT INTO evidence (host, incident_id, step, name, phase, status,"
        " started_ts, ended_ts, output)"
        " VALUES (:host, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        " ON CONFLICT (host, incident_id, step) DO UPDATE SET"
        " name = excluded.name, phase = excluded.phase,"
        " status = excluded.status, started_ts = excluded.started_ts,"
        " ended_ts = excluded.ended_ts, output = excluded.output",
    [STORE_ST_APPROVED] = "SELECT id FROM actions WHERE host = :host AND"
                          " result = 6 AND approved_ts > 0 ORDER BY id"
                          " LIMIT 64",
    [STORE_ST_ACTION] =
        "INSERT INTO actions (host, id, incident_id, name, kind, mode,"
        " command, result, reason, intent_ts, started_ts, ended_ts,"
        " exit_code, output)"
        " VALUES (:host, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13,"
        " ?14)"
        " ON CONFLICT (host, id) DO UPDATE SET"
        " incident_id = excluded.incident_id, name = excluded.name,"
        " kind = excluded.kind, mode = excluded.mode,"
        " command = excluded.command, result = excluded.result,"
        " reason = excluded.reason, intent_ts = excluded.intent_ts,"
        " started_ts = excluded.started_ts, ended_ts = excluded.ended_ts,"
        " exit_code = excluded.exit_code, output = excluded.output",
};

struct store_be {
    char *path;
    sqlite3 *wdb; /* the writer */
    sqlite3_stmt *st[STORE_ST_COUNT];
    sqlite3 *rdb;  /* reads; == wdb in tool mode */
    int wal_pages; /* from the WAL hook */
    uint32_t wflushes;
};

/* ------------------------------------------------------------ helpers */

/* Map an SQLite result code to ours. */
static int store_code(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return 0;
    case SQLITE_NOMEM:
        return VIGIL_ENOMEM;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return VIGIL_EBUSY;
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_TOOBIG:
    case SQLITE_RANGE:
        return VIGIL_EINVAL;
    case SQLITE_CANTOPEN:
        return VIGIL_ENOENT;
    default:
        return VIGIL_EIO;
    }
}

/* Errors that belong to one record (its values), not to the database. */
static int store_record_error(int rc)
{
    return store_code(rc) == VIGIL_EINVAL;
}

/* "path: SQLite's message" into err; returns our code. */
static int store_fail(const struct store *s, sqlite3 *db, int rc,
                      struct vigil_err *err)
{
    const char *msg = db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc);

    return err_set(err, store_code(rc) != 0 ? store_code(rc) : VIGIL_EIO,
                   "%s: %s", s->name, msg);
}

/* Run one statement to its end, then reset it. Returns the SQLite
 * code. */
static int store_step(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    return rc == SQLITE_ROW ? SQLITE_DONE : rc;
}

static void store_bind_text(sqlite3_stmt *st, int i, const char *text)
{
    if (text == NULL) {
        sqlite3_bind_null(st, i);
    } else {
        sqlite3_bind_text(st, i, text, -1, SQLITE_STATIC);
    }
}

/* NaN has no SQL value: it is stored as NULL and read back as NaN. */
static void store_bind_double(sqlite3_stmt *st, int i, double v)
{
    if (isnan(v)) {
        sqlite3_bind_null(st, i);
    } else {
        sqlite3_bind_double(st, i, v);
    }
}

static double store_col_double(sqlite3_stmt *st, int i)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL
               ? NAN
               : sqlite3_column_double(st, i);
}

/* Text columns that the header allows to be NULL come back NULL. */
static const char *store_col_text(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

/* The others come back "" when they were stored as NULL. */
static const char *store_col_str(sqlite3_stmt *st, int i)
{
    const char *t = (const char *)sqlite3_column_text(st, i);

    return t != NULL ? t : "";
}

/* Execute SQL text (no results wanted). Returns the SQLite code. */
static int store_exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

/* One integer from a query with an optional text parameter ?1.
 * *found says whether there was a non-NULL value. */
static int store_query_int(sqlite3 *db, const char *sql, const char *p1,
                           int64_t *out, int *found)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

    *found = 0;
    if (rc != SQLITE_OK) {
        return rc;
    }
    if (p1 != NULL) {
        sqlite3_bind_text(st, 1, p1, -1, SQLITE_STATIC);
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if (sqlite3_column_type(st, 0) != SQLITE_NULL) {
            *out = sqlite3_column_int64(st, 0);
            *found = 1;
        }
        rc = SQLITE_DONE;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Write one record. Returns the SQLite code. */
static int store_rec_write(struct store *s, const struct store_rec *r)
{
    sqlite3_stmt *st;

    switch (r->kind) {
    case STORE_REC_INCIDENT: {
        const struct store_incident *x = &r->u.inc;

        st = s->be->st[STORE_ST_INCIDENT];
        sqlite3_bind_int64(st, 2, x->id);
        store_bind_text(st, 3, x->rule);
        store_bind_text(st, 4, x->series);
        store_bind_text(st, 5, x->title);
        store_bind_text(st, 6, x->runbook);
        sqlite3_bind_int(st, 7, x->state);
        sqlite3_bind_int(st, 8, x->open);
        sqlite3_bind_int64(st, 9, x->opened_ts);
        sqlite3_bind_int64(st, 10, x->resolved_ts);
        sqlite3_bind_int(st, 11, x->acknowledged);
        store_bind_text(st, 12, x->labels_json);
        break;
    }
    case STORE_REC_TRANSITION: {
        const struct store_transition *x = &r->u.tr;

        st = s->be->st[STORE_ST_TRANSITION];
        sqlite3_bind_int64(st, 2, x->incident_id);
        sqlite3_bind_int64(st, 3, x->ts);
        sqlite3_bind_int(st, 4, x->from);
        sqlite3_bind_int(st, 5, x->to);
        store_bind_double(st, 6, x->value);
        store_bind_text(st, 7, x->reason);
        break;
    }
    case STORE_REC_EVIDENCE: {
        const struct store_evidence *x = &r->u.ev;

        st = s->be->st[STORE_ST_EVIDENCE];
        sqlite3_bind_int64(st, 2, x->incident_id);
        sqlite3_bind_int(st, 3, x->step);
        store_bind_text(st, 4, x->name);
        store_bind_text(st, 5, x->phase);
        store_bind_text(st, 6, x->status);
        sqlite3_bind_int64(st, 7, x->started_ts);
        sqlite3_bind_int64(st, 8, x->ended_ts);
        store_bind_text(st, 9, x->output);
        break;
    }
    default: {
        const struct store_action *x = &r->u.act;

        st = s->be->st[STORE_ST_ACTION];
        sqlite3_bind_int64(st, 2, x->id);
        sqlite3_bind_int64(st, 3, x->incident_id);
        store_bind_text(st, 4, x->name);
        store_bind_text(st, 5, x->kind);
        store_bind_text(st, 6, x->mode);
        store_bind_text(st, 7, x->command);
        sqlite3_bind_int(st, 8, x->result);
        store_bind_text(st, 9, x->reason);
        sqlite3_bind_int64(st, 10, x->intent_ts);
        sqlite3_bind_int64(st, 11, x->started_ts);
        sqlite3_bind_int64(st, 12, x->ended_ts);
        sqlite3_bind_int(st, 13, x->exit_code);
        store_bind_text(st, 14, x->output);
        break;
    }
    }
    return store_step(st);
}

/* The database id of a bus series, catalogued on first sight. Returns
 * the SQLite code; *dbid 0 if the writer never heard of the series. */
static int store_resolve(struct store *s, vigil_series_id id, int64_t *dbid)
{
    struct store_wser *w;
    sqlite3_stmt *st;
    const char *labels;
    int rc;

    *dbid = 0;
    if (id >= s->nwser || s->wser[id].key == NULL) {
        return SQLITE_OK;
    }
    w = &s->wser[id];
    if (w->dbid != 0) {
        *dbid = w->dbid;
        return SQLITE_OK;
    }
    labels = store_labels_json(s, w);
    if (labels == NULL) {
        return SQLITE_NOMEM;
    }
    st = s->be->st[STORE_ST_SERIES_ADD];
    sqlite3_bind_text(st, 2, w->key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, w->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, labels, -1, SQLITE_STATIC);
    rc = store_step(st);
    if (rc != SQLITE_DONE) {
        return rc;
    }
    st = s->be->st[STORE_ST_SERIES_ID];
    sqlite3_bind_text(st, 2, w->key, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        w->dbid = sqlite3_column_int64(st, 0);
        *dbid = w->dbid;
        rc = SQLITE_OK;
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_ERROR : rc;
}

/* Bind one sample at row r (0-based) of a statement. */
static void store_bind_sample(sqlite3_stmt *st, int r, int64_t dbid,
                              const struct store_sample *p)
{
    sqlite3_bind_int64(st, 3 * r + 1, dbid);
    sqlite3_bind_int64(st, 3 * r + 2, p->ts);
    store_bind_double(st, 3 * r + 3, p->v);
}

static int store_write_samples(struct store *s, struct store_job *j)
{
    sqlite3_stmt *one = s->be->st[STORE_ST_SAMPLE];
    sqlite3_stmt *many = s->be->st[STORE_ST_SAMPLES];
    sqlite3_stmt *fold = s->be->st[STORE_ST_FOLD];
    const struct store_sample *sorted = store_sort(s, j);
    const struct store_sample *rest[STORE_ROWS];
    int64_t rest_id[STORE_ROWS];
    int rc, k = 0;

    for (uint32_t i = 0; i < j->nseries; i++) {
        int64_t dbid;

        rc = store_resolve(s, j->series[i].id, &dbid);
        if (rc != SQLITE_OK) {
            return rc;
        }
    }
    for (uint32_t i = 0; i < j->nsamples; i++) {
        const struct store_sample *p = &sorted[i];
        int64_t dbid;

        if (p->id < s->nwser && s->wser[p->id].dbid != 0) {
            dbid = s->wser[p->id].dbid;
        } else {
            rc = store_resolve(s, p->id, &dbid);
            if (rc != SQLITE_OK) {
                return rc;
            }
            if (dbid == 0) {
                continue; /* never announced: cannot happen */
            }
        }
        /* Late: its minute is already rolled up, so add it there now. */
        if (p->ts < s->wmark && !isnan(p->v)) {
            sqlite3_bind_int64(fold, 1, dbid);
            sqlite3_bind_int64(fold, 2, store_minute(p->ts));
            sqlite3_bind_double(fold, 3, p->v);
            rc = store_step(fold);
            if (rc != SQLITE_DONE) {
                return rc;
            }
        }
        store_bind_sample(many, k, dbid, p);
        rest[k] = p;
        rest_id[k] = dbid;
        if (++k == STORE_ROWS) {
            rc = store_step(many);
            if (rc != SQLITE_DONE) {
                return rc;
            }
            j->samples_written += STORE_ROWS;
            k = 0;
        }
    }
    for (int r = 0; r < k; r++) {
        store_bind_sample(one, 0, rest_id[r], rest[r]);
        rc = store_step(one);
        if (rc != SQLITE_DONE) {
            return rc;
        }
        j->samples_written++;
    }
    return SQLITE_OK;
}

/* Records in queue order. A record whose values the database refuses is
 * dropped alone (the statement's changes are undone, the transaction goes
 * on); anything else fails the job. */
static int store_write_records(struct store *s, struct store_job *j)
{
    struct store_rec *r = j->recs.head;

    for (uint32_t i = 0; i < j->recs.n; i++, r = r->next) {
        int rc = store_rec_write(s, r);

        r->status = 0;
        if (rc == SQLITE_DONE) {
            j->records_written++;
        } else if (store_record_error(rc)) {
            r->status = VIGIL_EINVAL;
            if (j->records_refused++ == 0) {
                snprintf(j->refused_msg, sizeof(j->refused_msg), "%s: %s",
                         s->name, sqlite3_errmsg(s->be->wdb));
            }
        } else {
            return rc;
        }
    }
    return SQLITE_OK;
}

/* Roll the completed minutes since the mark up, a span at a time,
 * skipping stretches without samples. */
static int store_rollup(struct store *s, struct store_job *j)
{
    int64_t cur = store_minute(j->now), mark = s->wmark;
    int rc = SQLITE_OK;

    for (int step = 0; mark < cur && step < STORE_ROLLUP_STEPS; step++) {
        sqlite3_stmt *st = s->be->st[STORE_ST_NEXT_RAW];
        int64_t next = cur, end;

        sqlite3_bind_int64(st, 2, mark);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
            next = sqlite3_column_int64(st, 0);
        }
        sqlite3_reset(st);
        if (rc != SQLITE_ROW) {
            return rc;
        }
        if (store_minute(next) >= cur) {
            mark = cur;
            break;
        }
        mark = store_minute(next) > mark ? store_minute(next) : mark;
        end = cur - mark > STORE_ROLLUP_SPAN ? mark + STORE_ROLLUP_SPAN : cur;
        st = s->be->st[STORE_ST_ROLLUP];
        sqlite3_bind_int64(st, 2, mark);
        sqlite3_bind_int64(st, 3, end);
        rc = store_step(st);
        if (rc != SQLITE_DONE) {
            return rc;
        }
        mark = end;
    }
    if (mark != s->wmark) {
        sqlite3_stmt *st = s->be->st[STORE_ST_MARK];

        sqlite3_bind_int64(st, 2, mark);
        rc = store_step(st);
        if (rc != SQLITE_DONE) {
            return rc;
        }
        s->wmark = mark;
    }
    if (mark < cur) {
        j->backlog = 1;
    }
    return SQLITE_OK;
}

/* Delete at most STORE_TRIM_CHUNK rows older than cut from one table. */
static int store_trim(struct store *s, struct store_job *j, int which,
                      int64_t cut)
{
    sqlite3_stmt *st = s->be->st[which];
    int rc;

    sqlite3_bind_int64(st, 2, cut);
    sqlite3_bind_int(st, 3, STORE_TRIM_CHUNK);
    rc = store_step(st);
    if (rc == SQLITE_DONE && sqlite3_changes(s->be->wdb) >= STORE_TRIM_CHUNK) {
        j->backlog = 1;
    }
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Raw samples go once they are older than their retention and rolled up
 * (whole minutes, so that history finds either raw samples or a roll-up
 * for a minute); roll-ups go after theirs. */
static int store_housekeep(struct store *s, struct store_job *j)
{
    int64_t cut = j->now - s->raw_retention_ns;
    int rc;

    if (cut > s->wmark) {
        cut = s->wmark;
    }
    rc = store_trim(s, j, STORE_ST_TRIM_RAW, store_minute(cut));
    if (rc == SQLITE_OK) {
        rc = store_trim(s, j, STORE_ST_TRIM_ROLLUP,
                        j->now - s->rollup_retention_ns);
    }
    return rc;
}

static int store_on_wal(void *arg, sqlite3 *db, const char *name, int pages)
{
    struct store *s = arg;

    (void)db;
    (void)name;
    s->be->wal_pages = pages;
    return SQLITE_OK;
}

/* See store_be.h: a job in one transaction, or nothing. */
static int sq_flush(struct store *s, struct store_job *j)
{
    int rc = store_step(s->be->st[STORE_ST_BEGIN]);
    int status;

    if (rc == SQLITE_DONE) {
        rc = store_write_samples(s, j);
    }
    if (rc == SQLITE_OK) {
        rc = store_write_records(s, j);
    }
    if (rc == SQLITE_OK && j->daemon) {
        rc = store_rollup(s, j);
    }
    if (rc == SQLITE_OK && j->house) {
        rc = store_housekeep(s, j);
    }
    if (rc == SQLITE_OK) {
        rc = store_step(s->be->st[STORE_ST_COMMIT]);
    }
    if (rc != SQLITE_DONE) {
        status = store_code(rc) != 0 ? store_code(rc) : VIGIL_EIO;
        snprintf(j->msg, sizeof(j->msg), "%s: %s", s->name,
                 sqlite3_errmsg(s->be->wdb));
        if (!sqlite3_get_autocommit(s->be->wdb)) {
            store_step(s->be->st[STORE_ST_ROLLBACK]);
        }
        return status;
    }
    if (j->daemon && s->approval_cb != NULL) {
        sqlite3_stmt *st = s->be->st[STORE_ST_APPROVED];

        while (j->napproved < STORE_APPROVED_MAX &&
               sqlite3_step(st) == SQLITE_ROW) {
            j->approved[j->napproved++] = sqlite3_column_int64(st, 0);
        }
        sqlite3_reset(st);
    }
    /* Checkpoints are the only fsyncs with WAL + synchronous=NORMAL; they
     * run here, never on the loop. PASSIVE never waits for readers; a
     * busy or failed one is simply tried again later. */
    if (j->daemon && (++s->be->wflushes % STORE_CHECKPOINT_FLUSHES == 0 ||
                      s->be->wal_pages >= STORE_CHECKPOINT_PAGES)) {
        sqlite3_wal_checkpoint_v2(s->be->wdb, NULL, SQLITE_CHECKPOINT_PASSIVE,
                                  NULL, NULL);
        s->be->wal_pages = 0;
    }
    return 0;
}

/* Open one connection and set it up as the recipe says. */
static int store_connect(struct store *s, int writer, sqlite3 **out,
                         struct vigil_err *err)
{
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
    sqlite3 *db = NULL;
    int rc;

    *out = NULL;
    if (writer) {
        flags |= SQLITE_OPEN_CREATE;
    }
    rc = sqlite3_open_v2(s->be->path, &db, flags, NULL);
    if (rc != SQLITE_OK) {
        rc = store_fail(s, db, rc, err);
        sqlite3_close(db);
        return rc;
    }
    sqlite3_busy_timeout(db, STORE_BUSY_TIMEOUT_MS);
    /* journal_mode is persistent, synchronous is not: set both on every
     * open. The first statement also finds out whether this is an SQLite
     * file at all. */
    rc = store_exec(db, "PRAGMA journal_mode=WAL");
    if (rc == SQLITE_OK) {
        rc = store_exec(db, "PRAGMA synchronous=NORMAL");
    }
    if (rc == SQLITE_OK && writer && s->loop != NULL) {
        /* Checkpoints run in the flush job (sq_flush). */
        rc = store_exec(db, "PRAGMA wal_autocheckpoint=0");
        sqlite3_wal_hook(db, store_on_wal, s);
    }
    if (rc == SQLITE_OK && !writer) {
        rc = store_exec(db, "PRAGMA query_only=1");
    }
    if (rc != SQLITE_OK) {
        rc = store_fail(s, db, rc, err);
        sqlite3_close(db);
        return rc;
    }
    *out = db;
    return 0;
}

/* Bring the schema up to date, or refuse a database from a newer vigil
 * or from another program. */
static int store_migrate(struct store *s, struct vigil_err *err)
{
    sqlite3 *db = s->be->wdb;
    int64_t version = 0, tables = 0;
    int found, rc, in_txn = 0, status = 0;

    for (int pass = 0; pass < 2; pass++) {
        /* Read without a transaction first: a database that is up to date
         * (the usual case, and every tool run) takes no write lock. */
        rc = store_query_int(db,
                             "SELECT count(*) FROM sqlite_master WHERE name = "
                             "'meta' AND type = 'table'",
                             NULL, &tables, &found);
        if (rc == SQLITE_OK && tables > 0) {
            rc = store_query_int(db,
                                 "SELECT value FROM meta WHERE key = "
                                 "'schema_version'",
                                 NULL, &version, &found);
        } else if (rc == SQLITE_OK) {
            rc = store_query_int(db,
                                 "SELECT count(*) FROM sqlite_master WHERE "
                                 "name NOT LIKE 'sqlite_%'",
                                 NULL, &tables, &found);
            if (rc == SQLITE_OK && tables > 0) {
                status =
                    err_set(err, VIGIL_EINVAL,
                            "%s: not a vigil database (it has tables but no "
                            "schema version)",
                            s->name);
                goto out;
            }
            version = 0;
        }
        if (rc != SQLITE_OK) {
            status = store_fail(s, db, rc, err);
            goto out;
        }
        if (version > STORE_SCHEMA_VERSION) {
            status = err_set(err, VIGIL_ESTATE,
                             "%s: schema version %lld is newer than this vigil "
                             "supports (%d); use a newer vigil or another path",
                             s->name, (long long)version, STORE_SCHEMA_VERSION);
            goto out;
        }
        if (version == STORE_SCHEMA_VERSION || in_txn) {
            break;
        }
        /* Again under the write lock: another process may have migrated
         * meanwhile. */
        rc = store_exec(db, "BEGIN IMMEDIATE");
        if (rc != SQLITE_OK) {
            status = store_fail(s, db, rc, err);
            goto out;
        }
        in_txn = 1;
    }
    if (in_txn && version < STORE_SCHEMA_VERSION) {
        char sql[128];

        for (int64_t v = version; v < STORE_SCHEMA_VERSION; v++) {
            rc = store_exec(db, store_migrations[v]);
            if (rc != SQLITE_OK) {
                status = store_fail(s, db, rc, err);
                goto out;
            }
        }
        snprintf(sql, sizeof(sql),
                 "INSERT OR REPLACE INTO meta (key, value) "
                 "VALUES ('schema_version', %d)",
                 STORE_SCHEMA_VERSION);
        rc = store_exec(db, sql);
        if (rc != SQLITE_OK) {
            status = store_fail(s, db, rc, err);
            goto out;
        }
        if (version > 0) {
            log_info("store", "%s: schema migrated from version %lld to %d",
                     s->name, (long long)version, STORE_SCHEMA_VERSION);
        }
    }
    if (in_txn) {
        rc = store_exec(db, "COMMIT");
        if (rc != SQLITE_OK) {
            status = store_fail(s, db, rc, err);
            goto out;
        }
        in_txn = 0;
    }
out:
    if (in_txn) {
        store_exec(db, "ROLLBACK");
    }
    return status;
}

/* Actions that were running when vigil died: interrupted. */
static int store_sweep_actions(struct store *s, struct vigil_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(
        s->be->wdb,
        "UPDATE actions SET result = ?2, ended_ts = ?3, reason = ?4"
        " WHERE host = ?1 AND result IN (0, 6)",
        -1, &st, NULL);

    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, s->host, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, STORE_ACT_INTERRUPTED);
        sqlite3_bind_int64(st, 3, clock_wall_ns());
        sqlite3_bind_text(st, 4, STORE_INTERRUPTED_REASON, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    if (rc == SQLITE_DONE && sqlite3_changes(s->be->wdb) > 0) {
        log_warn("store",
                 "%s: actions running when vigil stopped, now marked "
                 "interrupted: %d",
                 s->name, sqlite3_changes(s->be->wdb));
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        return store_fail(s, s->be->wdb, rc, err);
    }
    return 0;
}

/* Ids, roll-up mark, statements. */
static int store_load(struct store *s, struct vigil_err *err)
{
    int64_t v;
    int found, rc;

    rc = store_query_int(s->be->wdb,
                         "SELECT max(id) FROM incidents WHERE host = ?1",
                         s->host, &v, &found);
    s->next_incident = found ? v + 1 : 1;
    if (rc == SQLITE_OK) {
        rc = store_query_int(s->be->wdb,
                             "SELECT max(id) FROM actions WHERE host = ?1",
                             s->host, &v, &found);
        s->next_action = found ? v + 1 : 1;
    }
    if (rc == SQLITE_OK) {
        rc = store_query_int(s->be->wdb,
                             "SELECT value FROM meta WHERE key = "
                             "'rollup_mark/' || ?1",
                             s->host, &v, &found);
        s->wmark = found ? v : 0;
    }
    for (int i = 0; rc == SQLITE_OK && i < STORE_ST_COUNT; i++) {
        rc = sqlite3_prepare_v3(s->be->wdb, store_sql[i], -1,
                                SQLITE_PREPARE_PERSISTENT, &s->be->st[i], NULL);
        if (rc == SQLITE_OK) {
            int h = sqlite3_bind_parameter_index(s->be->st[i], ":host");

            if (h > 0) {
                sqlite3_bind_text(s->be->st[i], h, s->host, -1, SQLITE_STATIC);
            }
        }
    }
    if (rc != SQLITE_OK) {
        return store_fail(s, s->be->wdb, rc, err);
    }
    return 0;
}

/* See store_be.h: the file's path is its name. */
static char *sq_describe(const char *path, struct vigil_err *err)
{
    char *name = store_strdup(path);

    if (name == NULL) {
        err_set(err, VIGIL_ENOMEM, "store: out of memory");
    }
    return name;
}

/* See store_be.h. */
static int sq_open(struct store *s, const char *path, struct vigil_err *err)
{
    int rc;

    s->be = calloc(1, sizeof(*s->be));
    if (s->be == NULL || (s->be->path = store_strdup(path)) == NULL) {
        return err_set(err, VIGIL_ENOMEM, "store: out of memory");
    }
    rc = store_connect(s, 1, &s->be->wdb, err);
    if (rc == 0) {
        rc = store_migrate(s, err);
    }
    /* Only the daemon sweeps: a tool opening the database while the
     * daemon runs must not mark its running actions. */
    if (rc == 0 && s->loop != NULL) {
        rc = store_sweep_actions(s, err);
    }
    if (rc == 0) {
        rc = store_load(s, err);
    }
    if (rc == 0 && s->loop == NULL) {
        s->be->rdb = s->be->wdb;
    } else if (rc == 0) {
        rc = store_connect(s, 0, &s->be->rdb, err);
    }
    return rc;
}

/* See store_be.h. The last connection to close checkpoints the WAL: at
 * shutdown, on the loop thread, which is acceptable then. */
static void sq_close(struct store *s)
{
    struct store_be *be = s->be;

    if (be == NULL) {
        return;
    }
    for (int i = 0; i < STORE_ST_COUNT; i++) {
        sqlite3_finalize(be->st[i]);
    }
    if (be->rdb != be->wdb) {
        sqlite3_close(be->rdb);
    }
    sqlite3_close(be->wdb);
    free(be->path);
    free(be);
    s->be = NULL;
}

/* -------------------------------------------------------------- reads */

/* Prepare a read on the reader connection, with the host as ?1. */
static int store_read_prepare(struct store *s, const char *sql,
                              sqlite3_stmt **st)
{
    int rc;

    rc = sqlite3_prepare_v2(s->be->rdb, sql, -1, st, NULL);
    if (rc != SQLITE_OK) {
        log_error("store", "%s: %s", s->name, sqlite3_errmsg(s->be->rdb));
        return store_code(rc) ? store_code(rc) : VIGIL_EIO;
    }
    sqlite3_bind_text(*st, 1, s->host, -1, SQLITE_STATIC);
    return 0;
}

/* Finish a read: finalize, and turn a failed step into a logged error. */
static int store_read_end(struct store *s, sqlite3_stmt *st, int rc)
{
    int status = 0;

    if (rc != SQLITE_DONE) {
        log_error("store", "%s: %s", s->name, sqlite3_errmsg(s->be->rdb));
        status = store_code(rc) ? store_code(rc) : VIGIL_EIO;
    }
    sqlite3_finalize(st);
    return status;
}

static void store_row_incident(sqlite3_stmt *st, struct store_incident *x)
{
    x->id = sqlite3_column_int64(st, 0);
    x->rule = store_col_str(st, 1);
    x->series = store_col_str(st, 2);
    x->title = store_col_str(st, 3);
    x->runbook = store_col_text(st, 4);
    x->state = sqlite3_column_int(st, 5);
    x->open = sqlite3_column_int(st, 6);
    x->opened_ts = sqlite3_column_int64(st, 7);
    x->resolved_ts = sqlite3_column_int64(st, 8);
    x->acknowledged = sqlite3_column_int(st, 9);
    x->labels_json = store_col_text(st, 10);
}

/* See store.h. */
static int sq_list_incidents(struct store *s, int open_only, unsigned limit,
                             store_incident_cb cb, void *arg)
{
    sqlite3_stmt *st;
    int rc = store_read_prepare(
        s,
        "SELECT " STORE_INCIDENT_COLS " FROM incidents"
        " WHERE host = ?1 AND (?2 = 0 OR open = 1) ORDER BY id DESC LIMIT ?3",
        &st);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_int(st, 2, open_only != 0);
    sqlite3_bind_int64(st, 3, limit > 0 ? (int64_t)limit : -1);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_incident x;

        store_row_incident(st, &x);
        cb(arg, &x);
    }
    return store_read_end(s, st, rc);
}

static int store_read_transitions(struct store *s, int64_t id,
                                  store_transition_cb cb, void *arg)
{
    sqlite3_stmt *st;
    int rc = store_read_prepare(s,
                                "SELECT " STORE_TRANSITION_COLS
                                " FROM transitions WHERE host = ?1 AND"
                                " incident_id = ?2 ORDER BY ts, rowid",
                                &st);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_int64(st, 2, id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_transition x = {
            .incident_id = sqlite3_column_int64(st, 0),
            .ts = sqlite3_column_int64(st, 1),
            .from = sqlite3_column_int(st, 2),
            .to = sqlite3_column_int(st, 3),
            .value = store_col_double(st, 4),
            .reason = store_col_text(st, 5),
        };

        cb(arg, &x);
    }
    return store_read_end(s, st, rc);
}

static int store_read_evidence(struct store *s, int64_t id,
                               store_evidence_cb cb, void *arg)
{
    sqlite3_stmt *st;
    int rc = store_read_prepare(s,
                                "SELECT " STORE_EVIDENCE_COLS
                                " FROM evidence WHERE host = ?1 AND"
                                " incident_id = ?2 ORDER BY step",
                                &st);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_int64(st, 2, id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_evidence x = {
            .incident_id = sqlite3_column_int64(st, 0),
            .step = sqlite3_column_int(st, 1),
            .name = store_col_str(st, 2),
            .phase = store_col_str(st, 3),
            .status = store_col_str(st, 4),
            .started_ts = sqlite3_column_int64(st, 5),
            .ended_ts = sqlite3_column_int64(st, 6),
            .output = store_col_text(st, 7),
        };

        cb(arg, &x);
    }
    return store_read_end(s, st, rc);
}

static int store_read_actions(struct store *s, int64_t id, store_action_cb cb,
                              void *arg)
{
    sqlite3_stmt *st;
    int rc = store_read_prepare(s,
                                "SELECT " STORE_ACTION_COLS
                                " FROM actions WHERE host = ?1 AND"
                                " incident_id = ?2 ORDER BY id",
                                &st);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_int64(st, 2, id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_action x = {
            .id = sqlite3_column_int64(st, 0),
            .incident_id = sqlite3_column_int64(st, 1),
            .name = store_col_str(st, 2),
            .kind = store_col_str(st, 3),
            .mode = store_col_str(st, 4),
            .command = store_col_str(st, 5),
            .result = sqlite3_column_int(st, 6),
            .reason = store_col_text(st, 7),
            .intent_ts = sqlite3_column_int64(st, 8),
            .started_ts = sqlite3_column_int64(st, 9),
            .ended_ts = sqlite3_column_int64(st, 10),
            .exit_code = sqlite3_column_int(st, 11),
            .output = store_col_text(st, 12),
        };

        cb(arg, &x);
    }
    return store_read_end(s, st, rc);
}

/* See store.h. */
static int sq_get_incident(struct store *s, int64_t id, store_incident_cb icb,
                           store_transition_cb tcb, store_evidence_cb ecb,
                           store_action_cb acb, void *arg)
{
    sqlite3_stmt *st;
    int found = 0;
    int rc = store_read_prepare(s,
                                "SELECT " STORE_INCIDENT_COLS
                                " FROM incidents WHERE host = ?1 AND id = ?2",
                                &st);

    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_int64(st, 2, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        struct store_incident x;

        found = 1;
        store_row_incident(st, &x);
        if (icb != NULL) {
            icb(arg, &x);
        }
        rc = SQLITE_DONE;
    }
    rc = store_read_end(s, st, rc);
    if (rc == 0 && !found) {
        rc = VIGIL_ENOENT;
    }
    if (rc == 0 && tcb != NULL) {
        rc = store_read_transitions(s, id, tcb, arg);
    }
    if (rc == 0 && ecb != NULL) {
        rc = store_read_evidence(s, id, ecb, arg);
    }
    if (rc == 0 && acb != NULL) {
        rc = store_read_actions(s, id, acb, arg);
    }
    return rc;
}

/* See store.h. */
static int sq_history(struct store *s, const char *series_key, int64_t since,
                      store_sample_cb cb, store_rollup_cb rcb, void *arg)
{
    sqlite3_stmt *st;
    int64_t sid = 0, oldest = INT64_MAX;
    int found = 0, rc;

    rc = store_read_prepare(
        s,
        "SELECT se.id, (SELECT min(ts) FROM samples WHERE series_id = se.id)"
        " FROM series se WHERE se.host = ?1 AND se.key = ?2",
        &st);
    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_text(st, 2, series_key, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        found = 1;
        sid = sqlite3_column_int64(st, 0);
        if (sqlite3_column_type(st, 1) != SQLITE_NULL) {
            oldest = sqlite3_column_int64(st, 1);
        }
        rc = SQLITE_DONE;
    }
    rc = store_read_end(s, st, rc);
    if (rc == 0 && !found) {
        rc = VIGIL_ENOENT;
    }
    /* The minutes older than the oldest raw sample's, from the one that
     * holds `since` on. */
    if (rc == 0 && rcb != NULL && since < oldest) {
        int64_t from = since > INT64_MIN + STORE_NS_PER_MIN
                           ? store_minute(since)
                           : INT64_MIN;
        int64_t to = oldest == INT64_MAX ? INT64_MAX : store_minute(oldest);

        rc = store_read_prepare(
            s,
            "SELECT ts_minute, min, avg, max, count FROM rollup_1m"
            " WHERE series_id = ?2 AND ts_minute >= ?3 AND ts_minute < ?4"
            " ORDER BY ts_minute",
            &st);
        if (rc != 0) {
            return rc;
        }
        sqlite3_bind_int64(st, 2, sid);
        sqlite3_bind_int64(st, 3, from);
        sqlite3_bind_int64(st, 4, to);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            rcb(arg, sqlite3_column_int64(st, 0), sqlite3_column_double(st, 1),
                sqlite3_column_double(st, 2), sqlite3_column_double(st, 3),
                (uint64_t)sqlite3_column_int64(st, 4));
        }
        rc = store_read_end(s, st, rc);
    }
    if (rc == 0 && cb != NULL && oldest != INT64_MAX) {
        rc = store_read_prepare(s,
                                "SELECT ts, value FROM samples"
                                " WHERE series_id = ?2 AND ts >= ?3"
                                " ORDER BY ts",
                                &st);
        if (rc != 0) {
            return rc;
        }
        sqlite3_bind_int64(st, 2, sid);
        sqlite3_bind_int64(st, 3, since);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            cb(arg, sqlite3_column_int64(st, 0), store_col_double(st, 1));
        }
        rc = store_read_end(s, st, rc);
    }
    return rc;
}

/* See store.h. */
static int sq_approve(struct store *s, int64_t id, const char *who,
                      struct vigil_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc;

    rc = sqlite3_prepare_v2(s->be->wdb,
                            "UPDATE actions SET approved_by = ?3,"
                            " approved_ts = ?4 WHERE host = ?1 AND id = ?2"
                            " AND result = 6 AND approved_ts = 0",
                            -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, s->host, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, id);
        sqlite3_bind_text(st, 3, who, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 4, clock_wall_ns());
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        return store_fail(s, s->be->wdb, rc, err);
    }
    if (sqlite3_changes(s->be->wdb) == 0) {
        return err_set(err, VIGIL_ENOENT,
                       "%s: no action %lld is waiting for approval", s->name,
                       (long long)id);
    }
    return 0;
}

const struct store_be_ops store_sqlite_ops = {
    .describe = sq_describe,
    .open = sq_open,
    .close = sq_close,
    .flush = sq_flush,
    .list_incidents = sq_list_incidents,
    .get_incident = sq_get_incident,
    .history = sq_history,
    .approve = sq_approve,
};
