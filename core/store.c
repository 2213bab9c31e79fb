/*
 * store - the SQLite back end of store.h.
 *
 * Threads and ownership. The loop thread owns the queue side: the sample
 * buffer being filled, the record queue, the series waiting to be
 * catalogued, the stats. The writer side (the writer connection, its
 * statements, the bus id -> database id map, the roll-up mark) belongs to
 * whoever runs the flush job: the thread pool while a job is in flight,
 * the loop thread otherwise (at open, at close, and for every call in tool
 * mode). There is at most one job, so the writer side needs no lock:
 * uv_queue_work() and the after-work callback order the hand-overs.
 *
 * A flush tick swaps the sample buffer and the pending series (each double
 * buffered) and moves the record queue into the job. The job writes all of
 * it in one transaction, rolls completed minutes up, trims old rows in
 * bounded chunks now and then, and checkpoints the WAL every few flushes;
 * the after-work callback counts, logs and calls the action callbacks.
 *
 * Bus keys, names and labels are read by the writer thread through
 * pointers taken on the loop when the series was announced: the bus never
 * moves or changes them while it lives.
 *
 * Daemon mode has a second connection, read-only in practice, for the
 * synchronous reads on the loop thread, so that they never share the
 * writer's connection with a job in flight.
 */
#include "store.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "clock.h"
#include "log.h"

#define STORE_NS_PER_S 1000000000ll
#define STORE_NS_PER_MIN (60 * STORE_NS_PER_S)
#define STORE_NS_PER_DAY (86400 * STORE_NS_PER_S)

#define STORE_RAW_RETENTION_DEFAULT (2 * STORE_NS_PER_DAY)
#define STORE_ROLLUP_RETENTION_DEFAULT (90 * STORE_NS_PER_DAY)
#define STORE_FLUSH_MS_DEFAULT 1000
#define STORE_SAMPLE_BUFFER_DEFAULT 65536u
#define STORE_SAMPLE_BUFFER_MAX (1u << 24) /* 2 x 384 MiB */

/* Records waiting to be written (and kept for a retry while the disk
 * fails): a bound on memory, so that a dead disk cannot eat the host. */
#define STORE_RECORDS_MAX 100000u
#define STORE_RECORD_BYTES_MAX ((size_t)64 << 20)

/* Housekeeping: rows deleted per table and job; minutes rolled up per
 * step and steps per job, so that catching up after a long stop is spread
 * over several flushes instead of one long transaction. */
#define STORE_TRIM_CHUNK 10000
#define STORE_ROLLUP_SPAN (10 * STORE_NS_PER_MIN)
#define STORE_ROLLUP_STEPS 8
#define STORE_HOUSE_INTERVAL_NS (60 * STORE_NS_PER_S)

/* A passive checkpoint every so many flushes, or sooner once the WAL has
 * grown past this many pages (4 KiB each). */
#define STORE_CHECKPOINT_FLUSHES 16
#define STORE_CHECKPOINT_PAGES 8192

#define STORE_BUSY_TIMEOUT_MS 5000
#define STORE_LOG_INTERVAL_NS (60 * STORE_NS_PER_S)
#define STORE_SUBS_MAX 16
#define STORE_HOST_MAX 256
#define STORE_FINAL_ROUNDS 4

#define STORE_INTERRUPTED_REASON                                               \
    "vigil stopped while the action ran or waited for approval"

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

#define STORE_SCHEMA_VERSION                                                   \
    ((int)(sizeof(store_migrations) / sizeof(store_migrations[0])))

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

/* The minute that holds ts (floor, also for negative times). */
#define STORE_MINUTE_SQL(ts)                                                   \
    "(" ts " - ((" ts " % 60000000000) + 60000000000) % 60000000000)"

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

/* Column lists shared by the reads and their row decoders. */
#define STORE_INCIDENT_COLS                                                    \
    "id, rule, series, title, runbook, state, open, opened_ts,"                \
    " resolved_ts, acknowledged, labels"
#define STORE_TRANSITION_COLS                                                  \
    "incident_id, ts, from_state, to_state, value,"                            \
    " reason"
#define STORE_EVIDENCE_COLS                                                    \
    "incident_id, step, name, phase, status, started_ts, ended_ts, output"
#define STORE_ACTION_COLS                                                      \
    "id, incident_id, name, kind, mode, command, result, reason,"              \
    " intent_ts, started_ts, ended_ts, exit_code, output"

/* -------------------------------------------------------------- types */

enum store_rec_kind {
    STORE_REC_INCIDENT,
    STORE_REC_TRANSITION,
    STORE_REC_EVIDENCE,
    STORE_REC_ACTION,
};

/* A queued record: one allocation, the strings copied after it. */
struct store_rec {
    struct store_rec *next;
    int kind;
    int status;       /* set by the job: 0, or VIGIL_EINVAL if refused */
    size_t size;      /* bytes, for the queue's bound */
    store_done_cb cb; /* actions; NULL once called */
    void *arg;
    union {
        struct store_incident inc;
        struct store_transition tr;
        struct store_evidence ev;
        struct store_action act;
    } u;
};

struct store_recq {
    struct store_rec *head, *tail;
    uint32_t n;
    size_t bytes;
};

struct store_sample {
    int64_t ts;
    double v;
    vigil_series_id id;
};

/* A series announced by the bus, on its way to the writer. */
struct store_sref {
    vigil_series_id id;
    uint32_t nlabels;
    const char *key, *name;
    const struct vigil_label *labels;
};

/* The writer's view of a series, indexed by bus id. */
struct store_wser {
    int64_t dbid; /* 0 until resolved (again, after a rollback) */
    const char *key, *name;
    const struct vigil_label *labels;
    uint32_t nlabels;
};

struct store_job {
    uv_work_t req;
    struct store *s;
    /* In, handed over by the loop. */
    struct store_sample *samples;
    uint32_t nsamples;
    struct store_sref *series;
    uint32_t nseries;
    struct store_recq recs;
    int64_t now; /* wall clock when the job was made */
    int daemon;  /* a flush: roll up and checkpoint as needed */
    int house;   /* trim old rows too */
    /* Out, for the loop. */
    int status; /* 0 or VIGIL_E*: nothing of the batch was written */
    char msg[VIGIL_ERR_MAX];
    uint64_t samples_written, records_written;
    uint32_t records_refused;
    char refused_msg[VIGIL_ERR_MAX];
    int backlog; /* roll-up or trimming not caught up */
    double ms;
    int64_t approved[64]; /* actions approved and still waiting */
    uint32_t napproved;
};

struct store {
    char *path;
    char *host;
    int64_t raw_retention_ns, rollup_retention_ns;
    uv_loop_t *loop; /* NULL in tool mode */

    /* Writer side (see the top of the file). */
    sqlite3 *wdb;
    sqlite3_stmt *st[STORE_ST_COUNT];
    struct store_wser *wser;
    uint32_t nwser;
    int64_t wmark;                /* samples before it are rolled up */
    struct store_sample *wsorted; /* a batch sorted by series */
    uint32_t *wcount;             /* per bus id, for the sort */
    uint32_t wcount_cap;
    char *labels_buf; /* the JSON of one series' labels */
    size_t labels_cap;
    int wal_pages; /* from the WAL hook */
    uint32_t wflushes;

    /* Loop side. */
    sqlite3 *rdb; /* reads; == wdb in tool mode */
    struct bus *bus;
    struct bus_sub *subs[STORE_SUBS_MAX];
    unsigned nsubs;
    uint8_t *seen; /* by bus id: announced to the writer */
    uint32_t seen_cap;
    struct store_sample *buf[2];
    uint32_t buf_cap, nbuf, cur;
    struct store_sref *pend[2];
    uint32_t pend_cap[2], npend, pcur;
    struct store_recq q;
    int64_t next_incident, next_action;
    uv_timer_t timer;
    int timer_live;    /* initialised and not yet closed */
    int running;       /* the job is in flight */
    int backlog;       /* the last job left housekeeping to do */
    int64_t house_due; /* monotonic */
    int closing, finished;
    struct store_job job;
    struct store_stats stats;
    store_approval_cb approval_cb;
    void *approval_arg;
    uint32_t failing; /* failed flushes in a row */
    int64_t log_next; /* monotonic: next error line allowed */
    uint64_t log_suppressed;
};

/* ------------------------------------------------------------ helpers */

static int64_t store_minute(int64_t ts)
{
    int64_t r = ts % STORE_NS_PER_MIN;

    return r < 0 ? ts - r - STORE_NS_PER_MIN : ts - r;
}

static char *store_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);

    if (p != NULL) {
        memcpy(p, s, n);
    }
    return p;
}

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
                   "%s: %s", s->path, msg);
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

/* Log a failure of the writer, at most once a minute (with the number of
 * lines held back meanwhile); `force` for the last words at close. */
static void store_log_error(struct store *s, int force, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void store_log_error(struct store *s, int force, const char *fmt, ...)
{
    int64_t now = clock_mono_ns();
    char line[2 * VIGIL_ERR_MAX];
    va_list ap;

    if (!force && now < s->log_next) {
        s->log_suppressed++;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (s->log_suppressed > 0) {
        log_error("store", "%s (%llu similar errors not logged)", line,
                  (unsigned long long)s->log_suppressed);
    } else {
        log_error("store", "%s", line);
    }
    s->log_suppressed = 0;
    s->log_next = now + STORE_LOG_INTERVAL_NS;
}

/* ------------------------------------------------------------ records */

/* Pointers to the string fields of a record, for copying. */
static unsigned store_rec_strings(struct store_rec *r, const char **f[8])
{
    switch (r->kind) {
    case STORE_REC_INCIDENT:
        f[0] = &r->u.inc.rule;
        f[1] = &r->u.inc.series;
        f[2] = &r->u.inc.title;
        f[3] = &r->u.inc.runbook;
        f[4] = &r->u.inc.labels_json;
        return 5;
    case STORE_REC_TRANSITION:
        f[0] = &r->u.tr.reason;
        return 1;
    case STORE_REC_EVIDENCE:
        f[0] = &r->u.ev.name;
        f[1] = &r->u.ev.phase;
        f[2] = &r->u.ev.status;
        f[3] = &r->u.ev.output;
        return 4;
    default:
        f[0] = &r->u.act.name;
        f[1] = &r->u.act.kind;
        f[2] = &r->u.act.mode;
        f[3] = &r->u.act.command;
        f[4] = &r->u.act.reason;
        f[5] = &r->u.act.output;
        return 6;
    }
}

/* Copy a record and its strings into one allocation. Returns NULL when
 * out of memory. */
static struct store_rec *store_rec_create(int kind, const void *src,
                                          size_t srcsize)
{
    struct store_rec tmp, *r;
    const char **f[8];
    unsigned n;
    size_t size = sizeof(tmp);
    char *p;

    memset(&tmp, 0, sizeof(tmp));
    tmp.kind = kind;
    memcpy(&tmp.u, src, srcsize);
    n = store_rec_strings(&tmp, f);
    for (unsigned i = 0; i < n; i++) {
        if (*f[i] != NULL) {
            size += strlen(*f[i]) + 1;
        }
    }
    r = malloc(size);
    if (r == NULL) {
        return NULL;
    }
    *r = tmp;
    r->size = size;
    p = (char *)(r + 1);
    store_rec_strings(r, f);
    for (unsigned i = 0; i < n; i++) {
        if (*f[i] != NULL) {
            size_t len = strlen(*f[i]) + 1;

            memcpy(p, *f[i], len);
            *f[i] = p;
            p += len;
        }
    }
    return r;
}

static void store_recq_free(struct store_recq *q)
{
    struct store_rec *r = q->head, *next;

    for (uint32_t i = 0; i < q->n && r != NULL; i++) {
        next = r->next;
        free(r);
        r = next;
    }
    memset(q, 0, sizeof(*q));
}

/* Write one record. Returns the SQLite code. */
static int store_rec_write(struct store *s, const struct store_rec *r)
{
    sqlite3_stmt *st;

    switch (r->kind) {
    case STORE_REC_INCIDENT: {
        const struct store_incident *x = &r->u.inc;

        st = s->st[STORE_ST_INCIDENT];
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

        st = s->st[STORE_ST_TRANSITION];
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

        st = s->st[STORE_ST_EVIDENCE];
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

        st = s->st[STORE_ST_ACTION];
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

/* --------------------------------------------------------- the writer */

/* Append s to the JSON being built in the writer's buffer, escaped.
 * The buffer is sized for the longest labels the bus accepts. */
static char *store_json_str(char *p, const char *str)
{
    static const char hex[] = "0123456789abcdef";

    *p++ = '"';
    for (const unsigned char *c = (const unsigned char *)str; *c; c++) {
        if (*c == '"' || *c == '\\') {
            *p++ = '\\';
            *p++ = (char)*c;
        } else if (*c < 0x20) {
            memcpy(p, "\\u00", 4);
            p[4] = hex[*c >> 4];
            p[5] = hex[*c & 15];
            p += 6;
        } else {
            *p++ = (char)*c;
        }
    }
    *p++ = '"';
    return p;
}

/* {"k":"v",...} for a series' labels (sorted by key, as the bus keeps
 * them). Returns the writer's buffer or NULL if it cannot hold them. */
static const char *store_labels_json(struct store *s,
                                     const struct store_wser *w)
{
    size_t need = 3;
    char *p;

    for (uint32_t i = 0; i < w->nlabels; i++) {
        need += 6 * (strlen(w->labels[i].key) + strlen(w->labels[i].value));
        need += 6;
    }
    if (need > s->labels_cap) {
        char *b = realloc(s->labels_buf, need);

        if (b == NULL) {
            return NULL;
        }
        s->labels_buf = b;
        s->labels_cap = need;
    }
    p = s->labels_buf;
    *p++ = '{';
    for (uint32_t i = 0; i < w->nlabels; i++) {
        if (i > 0) {
            *p++ = ',';
        }
        p = store_json_str(p, w->labels[i].key);
        *p++ = ':';
        p = store_json_str(p, w->labels[i].value);
    }
    *p++ = '}';
    *p = '\0';
    return s->labels_buf;
}

/* Record the series a job brings in the writer's table (the writer
 * owns it, so it may grow here). Returns 0 or VIGIL_ENOMEM. */
static int store_adopt_series(struct store *s, struct store_job *j)
{
    for (uint32_t i = 0; i < j->nseries; i++) {
        const struct store_sref *r = &j->series[i];
        struct store_wser *w;

        if (r->id >= s->nwser) {
            uint32_t cap = s->nwser ? s->nwser : 1024;
            struct store_wser *n;

            while (cap <= r->id) {
                cap *= 2;
            }
            n = realloc(s->wser, (size_t)cap * sizeof(*n));
            if (n == NULL) {
                return VIGIL_ENOMEM;
            }
            memset(n + s->nwser, 0, (size_t)(cap - s->nwser) * sizeof(*n));
            s->wser = n;
            s->nwser = cap;
        }
        w = &s->wser[r->id];
        w->key = r->key;
        w->name = r->name;
        w->labels = r->labels;
        w->nlabels = r->nlabels;
    }
    return 0;
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
    st = s->st[STORE_ST_SERIES_ADD];
    sqlite3_bind_text(st, 2, w->key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, w->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, labels, -1, SQLITE_STATIC);
    rc = store_step(st);
    if (rc != SQLITE_DONE) {
        return rc;
    }
    st = s->st[STORE_ST_SERIES_ID];
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

/* A rolled-back transaction takes the new catalogue rows with it: forget
 * every id, they are looked up again when needed. */
static void store_forget_ids(struct store *s)
{
    for (uint32_t i = 0; i < s->nwser; i++) {
        s->wser[i].dbid = 0;
    }
}

/* Sort a batch by series, keeping each series' samples in publish order
 * (a counting sort: linear, stable). Writing series by series touches
 * each B-tree leaf once per flush instead of once per sample, which is
 * what keeps many interleaved series fast. Returns the sorted samples, or
 * the batch as it is if the counts cannot be allocated. */
static const struct store_sample *store_sort(struct store *s,
                                             const struct store_job *j)
{
    uint32_t nb = s->nwser + 1, sum = 0; /* the last bucket: unknown ids */

    if (s->wsorted == NULL || j->nsamples < 2) {
        return j->samples;
    }
    if (nb > s->wcount_cap) {
        uint32_t *c = realloc(s->wcount, (size_t)nb * sizeof(*c));

        if (c == NULL) {
            return j->samples;
        }
        s->wcount = c;
        s->wcount_cap = nb;
    }
    memset(s->wcount, 0, (size_t)nb * sizeof(*s->wcount));
    for (uint32_t i = 0; i < j->nsamples; i++) {
        vigil_series_id id = j->samples[i].id;

        s->wcount[id < s->nwser ? id : s->nwser]++;
    }
    for (uint32_t b = 0; b < nb; b++) {
        uint32_t c = s->wcount[b];

        s->wcount[b] = sum;
        sum += c;
    }
    for (uint32_t i = 0; i < j->nsamples; i++) {
        vigil_series_id id = j->samples[i].id;

        s->wsorted[s->wcount[id < s->nwser ? id : s->nwser]++] = j->samples[i];
    }
    return s->wsorted;
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
    sqlite3_stmt *one = s->st[STORE_ST_SAMPLE];
    sqlite3_stmt *many = s->st[STORE_ST_SAMPLES];
    sqlite3_stmt *fold = s->st[STORE_ST_FOLD];
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
                         s->path, sqlite3_errmsg(s->wdb));
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
        sqlite3_stmt *st = s->st[STORE_ST_NEXT_RAW];
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
        st = s->st[STORE_ST_ROLLUP];
        sqlite3_bind_int64(st, 2, mark);
        sqlite3_bind_int64(st, 3, end);
        rc = store_step(st);
        if (rc != SQLITE_DONE) {
            return rc;
        }
        mark = end;
    }
    if (mark != s->wmark) {
        sqlite3_stmt *st = s->st[STORE_ST_MARK];

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
    sqlite3_stmt *st = s->st[which];
    int rc;

    sqlite3_bind_int64(st, 2, cut);
    sqlite3_bind_int(st, 3, STORE_TRIM_CHUNK);
    rc = store_step(st);
    if (rc == SQLITE_DONE && sqlite3_changes(s->wdb) >= STORE_TRIM_CHUNK) {
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
    s->wal_pages = pages;
    return SQLITE_OK;
}

/* Run a job on the writer: everything in one transaction, or nothing. */
static void store_job_run(struct store *s, struct store_job *j)
{
    int64_t t0 = clock_mono_ns(), mark0 = s->wmark;
    int rc;

    j->status = 0;
    j->msg[0] = '\0';
    j->samples_written = j->records_written = 0;
    j->records_refused = 0;
    j->backlog = 0;
    if (store_adopt_series(s, j) != 0) {
        j->status = VIGIL_ENOMEM;
        snprintf(j->msg, sizeof(j->msg), "%s: out of memory", s->path);
        goto out;
    }
    rc = store_step(s->st[STORE_ST_BEGIN]);
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
        rc = store_step(s->st[STORE_ST_COMMIT]);
    }
    j->napproved = 0;
    if (rc == SQLITE_DONE && j->daemon && s->approval_cb != NULL) {
        sqlite3_stmt *st = s->st[STORE_ST_APPROVED];
        while (sqlite3_step(st) == SQLITE_ROW && j->napproved < 64) {
            j->approved[j->napproved++] = sqlite3_column_int64(st, 0);
        }
        sqlite3_reset(st);
    }
    if (rc != SQLITE_DONE) {
        j->status = store_code(rc) != 0 ? store_code(rc) : VIGIL_EIO;
        snprintf(j->msg, sizeof(j->msg), "%s: %s", s->path,
                 sqlite3_errmsg(s->wdb));
        if (!sqlite3_get_autocommit(s->wdb)) {
            store_step(s->st[STORE_ST_ROLLBACK]);
        }
        s->wmark = mark0;
        store_forget_ids(s);
        j->samples_written = j->records_written = 0;
        goto out;
    }
    /* Checkpoints are the only fsyncs with WAL + synchronous=NORMAL; they
     * run here, never on the loop. PASSIVE never waits for readers; a
     * busy or failed one is simply tried again later. */
    if (j->daemon && (++s->wflushes % STORE_CHECKPOINT_FLUSHES == 0 ||
                      s->wal_pages >= STORE_CHECKPOINT_PAGES)) {
        sqlite3_wal_checkpoint_v2(s->wdb, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL,
                                  NULL);
        s->wal_pages = 0;
    }
out:
    j->ms = (double)(clock_mono_ns() - t0) / 1e6;
}

static void store_work(uv_work_t *req)
{
    struct store_job *j = req->data;

    store_job_run(j->s, j);
}

/* ------------------------------------------------------ the loop side */

static int store_has_work(const struct store *s)
{
    return s->nbuf > 0 || s->npend > 0 || s->q.n > 0;
}

/* Hand what is queued to the job (the writer must be idle). */
static void store_job_fill(struct store *s, struct store_job *j, int daemon,
                           int house)
{
    j->s = s;
    j->samples = s->buf[s->cur];
    j->nsamples = s->nbuf;
    s->cur ^= 1;
    s->nbuf = 0;
    j->series = s->pend[s->pcur];
    j->nseries = s->npend;
    s->pcur ^= 1;
    s->npend = 0;
    j->recs = s->q;
    memset(&s->q, 0, sizeof(s->q));
    j->now = clock_wall_ns();
    j->daemon = daemon;
    j->house = house;
}

/* The loop's half of a finished job: counters, log, callbacks in queue
 * order. A failed job's records go back to the front of the queue, ahead
 * of anything newer, to be written by the next flush; their callbacks
 * are called now, with the error, and not again. */
static void store_job_done(struct store *s, struct store_job *j)
{
    struct store_rec *r = j->recs.head, *next;
    uint32_t n = j->recs.n;

    s->stats.flushes++;
    s->stats.last_flush_ms = j->ms;
    s->stats.samples_written += j->samples_written;
    s->stats.records_written += j->records_written;
    s->backlog = j->backlog;
    if (j->status != 0) {
        s->stats.errors++;
        s->stats.samples_lost += j->nsamples;
        s->failing++;
        store_log_error(s, 0,
                        "%s; %u samples lost, %u records kept for the next "
                        "flush",
                        j->msg, j->nsamples, n);
        if (n > 0) {
            j->recs.tail->next = s->q.head;
            if (s->q.head == NULL) {
                s->q.tail = j->recs.tail;
            }
            s->q.head = j->recs.head;
            s->q.n += n;
            s->q.bytes += j->recs.bytes;
        }
        memset(&j->recs, 0, sizeof(j->recs));
        /* Counted, not followed to the end: a callback that queues a
         * record appends it behind these. */
        for (uint32_t i = 0; i < n; i++, r = r->next) {
            store_done_cb cb = r->cb;

            r->cb = NULL;
            if (cb != NULL) {
                cb(r->arg, j->status);
            }
        }
        return;
    }
    if (s->failing > 0) {
        log_info("store", "%s: writing again after %u failed flushes", s->path,
                 s->failing);
        s->failing = 0;
    }
    if (j->records_refused > 0) {
        s->stats.errors++;
        store_log_error(s, 0, "%s; %u records refused and dropped",
                        j->refused_msg, j->records_refused);
    }
    memset(&j->recs, 0, sizeof(j->recs));
    for (uint32_t i = 0; i < n; i++, r = next) {
        next = r->next;
        if (r->cb != NULL) {
            r->cb(r->arg, r->status);
        }
        free(r);
    }
    for (uint32_t i = 0; i < j->napproved && s->approval_cb != NULL; i++) {
        s->approval_cb(s->approval_arg, j->approved[i]);
    }
}

static void store_free(struct store *s);
static void store_finish(struct store *s);

static void store_after_work(uv_work_t *req, int status)
{
    struct store_job *j = req->data;
    struct store *s = j->s;

    (void)status; /* the job is never canceled */
    store_job_done(s, j);
    s->running = 0;
    if (s->closing) {
        store_finish(s);
    }
}

static void store_start_job(struct store *s)
{
    int64_t mono = clock_mono_ns();
    int house = s->backlog || mono >= s->house_due;

    /* Watching approvals means looking every flush, work or not. */
    if (!store_has_work(s) && !house && s->approval_cb == NULL) {
        return;
    }
    if (house) {
        s->house_due = mono + STORE_HOUSE_INTERVAL_NS;
    }
    store_job_fill(s, &s->job, 1, house);
    s->job.req.data = &s->job;
    s->running = 1;
    if (uv_queue_work(s->loop, &s->job.req, store_work, store_after_work) !=
        0) {
        /* Only for invalid arguments; do the work here rather than lose
         * it. */
        store_work(&s->job.req);
        store_after_work(&s->job.req, 0);
    }
}

static void store_on_timer(uv_timer_t *t)
{
    struct store *s = t->data;

    /* A job still running: keep filling the other buffer. */
    if (!s->running && !s->closing) {
        store_start_job(s);
    }
}

static void store_on_timer_close(uv_handle_t *h)
{
    struct store *s = h->data;

    s->timer_live = 0;
    if (s->finished) {
        store_free(s);
    }
}

/* The bus' sample callback: the per-sample path. No allocation, no lock;
 * a full buffer counts the sample as dropped. */
static void store_on_sample(void *arg, vigil_series_id id, int64_t ts, double v)
{
    struct store *s = arg;
    struct store_sample *p;

    if (s->nbuf == s->buf_cap) {
        s->stats.samples_dropped++;
        return;
    }
    p = &s->buf[s->cur][s->nbuf++];
    p->ts = ts;
    p->v = v;
    p->id = id;
}

/* A series starts matching: announce it to the writer with the next job.
 * Allocation is allowed here (once per series). */
static void store_on_series(void *arg, vigil_series_id id)
{
    struct store *s = arg;
    struct store_sref *r;
    size_t n;

    if (id >= s->seen_cap) {
        uint32_t cap = s->seen_cap ? s->seen_cap : 1024;
        uint8_t *seen;

        while (cap <= id) {
            cap *= 2;
        }
        seen = realloc(s->seen, cap);
        if (seen == NULL) {
            goto nomem;
        }
        memset(seen + s->seen_cap, 0, cap - s->seen_cap);
        s->seen = seen;
        s->seen_cap = cap;
    }
    if (s->seen[id]) {
        return; /* a second subscription matching the same series */
    }
    if (s->npend == s->pend_cap[s->pcur]) {
        uint32_t cap = s->npend ? 2 * s->npend : 256;

        r = realloc(s->pend[s->pcur], (size_t)cap * sizeof(*r));
        if (r == NULL) {
            goto nomem;
        }
        s->pend[s->pcur] = r;
        s->pend_cap[s->pcur] = cap;
    }
    r = &s->pend[s->pcur][s->npend++];
    r->id = id;
    r->key = bus_series_key(s->bus, id);
    r->name = bus_series_name(s->bus, id);
    r->labels = bus_series_labels(s->bus, id, &n);
    r->nlabels = (uint32_t)n;
    s->seen[id] = 1;
    return;
nomem:
    store_log_error(s, 0, "%s: out of memory: series %s will not be kept",
                    s->path, bus_series_key(s->bus, id));
}

/* ------------------------------------------------------- open, close */

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
    rc = sqlite3_open_v2(s->path, &db, flags, NULL);
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
        /* Checkpoints run in the flush job (store_job_run). */
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
    sqlite3 *db = s->wdb;
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
                            s->path);
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
                             s->path, (long long)version, STORE_SCHEMA_VERSION);
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
                     s->path, (long long)version, STORE_SCHEMA_VERSION);
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
        s->wdb,
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
    if (rc == SQLITE_DONE && sqlite3_changes(s->wdb) > 0) {
        log_warn("store",
                 "%s: actions running when vigil stopped, now marked "
                 "interrupted: %d",
                 s->path, sqlite3_changes(s->wdb));
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        return store_fail(s, s->wdb, rc, err);
    }
    return 0;
}

/* Ids, roll-up mark, statements. */
static int store_load(struct store *s, struct vigil_err *err)
{
    int64_t v;
    int found, rc;

    rc =
        store_query_int(s->wdb, "SELECT max(id) FROM incidents WHERE host = ?1",
                        s->host, &v, &found);
    s->next_incident = found ? v + 1 : 1;
    if (rc == SQLITE_OK) {
        rc = store_query_int(s->wdb,
                             "SELECT max(id) FROM actions WHERE host = ?1",
                             s->host, &v, &found);
        s->next_action = found ? v + 1 : 1;
    }
    if (rc == SQLITE_OK) {
        rc = store_query_int(s->wdb,
                             "SELECT value FROM meta WHERE key = "
                             "'rollup_mark/' || ?1",
                             s->host, &v, &found);
        s->wmark = found ? v : 0;
    }
    for (int i = 0; rc == SQLITE_OK && i < STORE_ST_COUNT; i++) {
        rc = sqlite3_prepare_v3(s->wdb, store_sql[i], -1,
                                SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL);
        if (rc == SQLITE_OK) {
            int h = sqlite3_bind_parameter_index(s->st[i], ":host");

            if (h > 0) {
                sqlite3_bind_text(s->st[i], h, s->host, -1, SQLITE_STATIC);
            }
        }
    }
    if (rc != SQLITE_OK) {
        return store_fail(s, s->wdb, rc, err);
    }
    return 0;
}

static void store_free(struct store *s)
{
    for (int i = 0; i < STORE_ST_COUNT; i++) {
        sqlite3_finalize(s->st[i]);
    }
    if (s->rdb != s->wdb) {
        sqlite3_close(s->rdb);
    }
    sqlite3_close(s->wdb);
    store_recq_free(&s->q);
    store_recq_free(&s->job.recs);
    free(s->buf[0]);
    free(s->buf[1]);
    free(s->pend[0]);
    free(s->pend[1]);
    free(s->seen);
    free(s->wser);
    free(s->wsorted);
    free(s->wcount);
    free(s->labels_buf);
    free(s->path);
    free(s->host);
    free(s);
}

/* Is path a PostgreSQL URL? */
static int store_is_pg(const char *path)
{
    return strncmp(path, "postgresql://", 13) == 0 ||
           strncmp(path, "postgres://", 11) == 0;
}

/* See store.h. */
int store_open(const struct store_opts *opts, uv_loop_t *loop,
               struct store **out, struct vigil_err *err)
{
    struct vigil_err local;
    struct store *s;
    char host[STORE_HOST_MAX];
    int rc;

    *out = NULL;
    if (err == NULL) {
        err = &local;
    }
    err_clear(&local);
    if (opts == NULL || opts->path == NULL || opts->path[0] == '\0') {
        return err_set(err, VIGIL_EINVAL, "store: no database path");
    }
    if (store_is_pg(opts->path)) {
        return err_set(err, VIGIL_EUNAVAIL,
                       "%s: the PostgreSQL store is not built yet; use an "
                       "SQLite file path",
                       opts->path);
    }
    if (opts->sample_buffer > STORE_SAMPLE_BUFFER_MAX) {
        return err_set(
            err, VIGIL_EINVAL, "%s: sample_buffer %u is above the maximum %u",
            opts->path, opts->sample_buffer, STORE_SAMPLE_BUFFER_MAX);
    }
    if (opts->raw_retention_ns < 0 || opts->rollup_retention_ns < 0 ||
        opts->flush_interval_ms < 0) {
        return err_set(err, VIGIL_EINVAL,
                       "%s: negative retention or flush interval", opts->path);
    }
    if (opts->host != NULL) {
        snprintf(host, sizeof(host), "%s", opts->host);
    } else if (gethostname(host, sizeof(host)) != 0) {
        return err_set(err, VIGIL_EIO, "store: gethostname: %s",
                       strerror(errno));
    }
    host[sizeof(host) - 1] = '\0';
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return err_set(err, VIGIL_ENOMEM, "store: out of memory");
    }
    s->loop = loop;
    s->path = store_strdup(opts->path);
    s->host = store_strdup(host);
    s->raw_retention_ns = opts->raw_retention_ns > 0
                              ? opts->raw_retention_ns
                              : STORE_RAW_RETENTION_DEFAULT;
    s->rollup_retention_ns = opts->rollup_retention_ns > 0
                                 ? opts->rollup_retention_ns
                                 : STORE_ROLLUP_RETENTION_DEFAULT;
    if (s->path == NULL || s->host == NULL) {
        rc = err_set(err, VIGIL_ENOMEM, "store: out of memory");
        goto fail;
    }
    rc = store_connect(s, 1, &s->wdb, err);
    if (rc == 0) {
        rc = store_migrate(s, err);
    }
    /* Only the daemon sweeps: a tool opening the database while the
     * daemon runs must not mark its running actions. */
    if (rc == 0 && loop != NULL) {
        rc = store_sweep_actions(s, err);
    }
    if (rc == 0) {
        rc = store_load(s, err);
    }
    if (rc != 0) {
        goto fail;
    }
    if (loop == NULL) {
        s->rdb = s->wdb;
        *out = s;
        return 0;
    }
    rc = store_connect(s, 0, &s->rdb, err);
    if (rc != 0) {
        goto fail;
    }
    s->buf_cap =
        opts->sample_buffer ? opts->sample_buffer : STORE_SAMPLE_BUFFER_DEFAULT;
    s->buf[0] = malloc((size_t)s->buf_cap * sizeof(struct store_sample));
    s->buf[1] = malloc((size_t)s->buf_cap * sizeof(struct store_sample));
    s->wsorted = malloc((size_t)s->buf_cap * sizeof(struct store_sample));
    if (s->buf[0] == NULL || s->buf[1] == NULL || s->wsorted == NULL) {
        rc = err_set(err, VIGIL_ENOMEM, "store: out of memory");
        goto fail;
    }
    s->house_due = clock_mono_ns();
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    s->timer_live = 1;
    {
        uint64_t ms = opts->flush_interval_ms > 0
                          ? (uint64_t)opts->flush_interval_ms
                          : STORE_FLUSH_MS_DEFAULT;

        uv_timer_start(&s->timer, store_on_timer, ms, ms);
    }
    *out = s;
    return 0;
fail:
    store_free(s);
    return rc;
}

/* The end, with the writer idle: write what is left on this thread (a few
 * rounds, for records that callbacks queue), report what could not be
 * written, close the connections. The memory goes once the timer is
 * closed too. */
static void store_finish(struct store *s)
{
    struct store_rec *r;
    uint32_t lost;

    for (int i = 0; i < STORE_FINAL_ROUNDS && store_has_work(s); i++) {
        store_job_fill(s, &s->job, 0, 0);
        store_job_run(s, &s->job);
        store_job_done(s, &s->job);
        if (s->job.status != 0) {
            break;
        }
    }
    lost = s->q.n;
    if (lost > 0 || s->nbuf > 0) {
        store_log_error(s, 1,
                        "%s: closing with %u records and %u samples that "
                        "could not be written",
                        s->path, lost, s->nbuf);
    }
    r = s->q.head;
    for (uint32_t i = 0; i < lost; i++, r = r->next) {
        store_done_cb cb = r->cb;

        r->cb = NULL;
        if (cb != NULL) {
            cb(r->arg, VIGIL_ECANCELED);
        }
    }
    store_recq_free(&s->q);
    for (int i = 0; i < STORE_ST_COUNT; i++) {
        sqlite3_finalize(s->st[i]);
        s->st[i] = NULL;
    }
    sqlite3_close(s->rdb);
    s->rdb = NULL;
    /* The last connection to close checkpoints the WAL: at shutdown, on
     * the loop thread, which is acceptable then. */
    sqlite3_close(s->wdb);
    s->wdb = NULL;
    s->finished = 1;
    if (!s->timer_live) {
        store_free(s);
    }
}

/* See store.h. */
void store_close(struct store *s)
{
    if (s == NULL || s->closing) {
        return;
    }
    s->closing = 1;
    for (unsigned i = 0; i < s->nsubs; i++) {
        bus_unsubscribe(s->bus, s->subs[i]);
    }
    s->nsubs = 0;
    if (s->loop == NULL) {
        store_free(s);
        return;
    }
    if (s->timer_live) {
        uv_close((uv_handle_t *)&s->timer, store_on_timer_close);
    }
    if (!s->running) {
        store_finish(s);
    }
}

/* See store.h. */
int store_attach_bus(struct store *s, struct bus *bus, const char *selector,
                     struct vigil_err *err)
{
    struct bus_selector sel;
    int rc;

    if (s->loop == NULL || s->closing) {
        return err_set(err, VIGIL_ESTATE,
                       "%s: only an open daemon-mode store keeps history",
                       s->path);
    }
    if (s->bus != NULL && s->bus != bus) {
        return err_set(err, VIGIL_EINVAL,
                       "%s: the store is already attached to another bus",
                       s->path);
    }
    if (s->nsubs == STORE_SUBS_MAX) {
        return err_set(err, VIGIL_ELIMIT, "%s: more than %d selectors", s->path,
                       STORE_SUBS_MAX);
    }
    rc = bus_selector_parse(selector != NULL ? selector : "*", &sel, err);
    if (rc != 0) {
        return rc;
    }
    s->bus = bus;
    rc = bus_subscribe(bus, &sel, store_on_sample, store_on_series, s,
                       &s->subs[s->nsubs]);
    if (rc != 0) {
        return err_set(err, rc, "%s: subscribing to the bus: %s", s->path,
                       vigil_strerror(rc));
    }
    s->nsubs++;
    return 0;
}

/* ------------------------------------------------------------ records */

/* See store.h. Does not fail. */
int64_t store_next_incident_id(struct store *s)
{
    return s->next_incident++;
}

/* See store.h. Does not fail. */
int64_t store_next_action_id(struct store *s)
{
    return s->next_action++;
}

/* Tool mode: write one record now, in its own transaction. */
static int store_write_now(struct store *s, struct store_rec *r)
{
    struct store_job j;
    int status;

    memset(&j, 0, sizeof(j));
    j.s = s;
    j.recs.head = j.recs.tail = r;
    j.recs.n = 1;
    j.now = clock_wall_ns();
    store_job_run(s, &j);
    status = j.status != 0 ? j.status : r->status;
    if (j.status != 0) {
        log_error("store", "%s", j.msg);
    } else if (r->status != 0) {
        log_error("store", "%s", j.refused_msg);
    }
    if (r->cb != NULL) {
        r->cb(r->arg, status);
    }
    free(r);
    return status;
}

/* Copy and queue a record (daemon), or write it (tool). */
static int store_put(struct store *s, int kind, const void *src, size_t srcsize,
                     store_done_cb cb, void *arg)
{
    struct store_rec *r;

    if (s->finished) {
        return VIGIL_ESTATE;
    }
    if (s->loop != NULL &&
        (s->q.n >= STORE_RECORDS_MAX || s->q.bytes >= STORE_RECORD_BYTES_MAX)) {
        store_log_error(s, 0,
                        "%s: %u records waiting to be written; refusing more",
                        s->path, s->q.n);
        return VIGIL_ELIMIT;
    }
    r = store_rec_create(kind, src, srcsize);
    if (r == NULL) {
        return VIGIL_ENOMEM;
    }
    r->cb = cb;
    r->arg = arg;
    if (s->loop == NULL) {
        return store_write_now(s, r);
    }
    if (s->q.tail != NULL) {
        s->q.tail->next = r;
    } else {
        s->q.head = r;
    }
    s->q.tail = r;
    s->q.n++;
    s->q.bytes += r->size;
    return 0;
}

/* See store.h. */
int store_put_incident(struct store *s, const struct store_incident *inc)
{
    return store_put(s, STORE_REC_INCIDENT, inc, sizeof(*inc), NULL, NULL);
}

/* See store.h. */
int store_add_transition(struct store *s, const struct store_transition *t)
{
    return store_put(s, STORE_REC_TRANSITION, t, sizeof(*t), NULL, NULL);
}

/* See store.h. */
int store_put_evidence(struct store *s, const struct store_evidence *e)
{
    return store_put(s, STORE_REC_EVIDENCE, e, sizeof(*e), NULL, NULL);
}

/* See store.h. */
int store_put_action(struct store *s, const struct store_action *a,
                     store_done_cb cb, void *arg)
{
    return store_put(s, STORE_REC_ACTION, a, sizeof(*a), cb, arg);
}

/* -------------------------------------------------------------- reads */

/* Prepare a read on the reader connection, with the host as ?1. */
static int store_read_prepare(struct store *s, const char *sql,
                              sqlite3_stmt **st)
{
    int rc;

    if (s->rdb == NULL) {
        return VIGIL_ESTATE;
    }
    rc = sqlite3_prepare_v2(s->rdb, sql, -1, st, NULL);
    if (rc != SQLITE_OK) {
        log_error("store", "%s: %s", s->path, sqlite3_errmsg(s->rdb));
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
        log_error("store", "%s: %s", s->path, sqlite3_errmsg(s->rdb));
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
int store_list_incidents(struct store *s, int open_only, unsigned limit,
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
int store_get_incident(struct store *s, int64_t id, store_incident_cb icb,
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
int store_history(struct store *s, const char *series_key, int64_t since,
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

/* See store.h. Does not fail. */
void store_get_stats(const struct store *s, struct store_stats *st)
{
    *st = s->stats;
    st->records_pending = s->q.n + (s->running ? s->job.recs.n : 0);
}

void store_on_approval(struct store *s, store_approval_cb cb, void *arg)
{
    s->approval_cb = cb;
    s->approval_arg = arg;
}

int store_approve_action(struct store *s, int64_t id, const char *who,
                         struct vigil_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc;

    if (s->loop != NULL) {
        return err_set(err, VIGIL_ESTATE, "approvals are given by the tools");
    }
    rc = sqlite3_prepare_v2(s->wdb,
                            "UPDATE actions SET approved_by = ?3,"
                            " approved_ts = ?4 WHERE host = ?1 AND id = ?2"
                            " AND result = 6 AND approved_ts = 0",
                            -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, s->host, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, id);
        sqlite3_bind_text(st, 3, who ? who : "", -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 4, clock_wall_ns());
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        return store_fail(s, s->wdb, rc, err);
    }
    if (sqlite3_changes(s->wdb) == 0) {
        return err_set(err, VIGIL_ENOENT,
                       "%s: no action %lld is waiting for approval", s->path,
                       (long long)id);
    }
    return 0;
}
