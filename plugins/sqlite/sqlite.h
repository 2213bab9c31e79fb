/*
 * sqlite.h - the sqlite plugin's parts and what they share:
 *
 *   sqlite.c        the plugin on the loop: options, life cycle, collect(),
 *                   publishing the results of a collection;
 *   sqlite_conf.c   the `query = NAME: SQL` lines into named queries (pure
 *                   C, unit-tested);
 *   sqlite_db.c     the application's database, on the thread pool: a
 *                   read-only connection with guards (authorizer, busy
 *                   and progress handlers), timed runs of a statement;
 *   sqlite_plan.c   EXPLAIN QUERY PLAN read into rows, full scans flagged,
 *                   and index hints checked against a copy of the schema;
 *   sqlite_diag.c   the diagnostics sqlite.plan and sqlite.measure.
 *
 * Ownership and threads: the loop owns struct sq, except that while a
 * collection is pending (s->pending) the collection work owns s->conn,
 * every query's statement and its `run` result; the loop reads them only
 * in the work's completion. Diagnostics open their own connection per
 * request, so they never share one with the collection. The only state
 * both threads touch at once is a cancel flag (atomic).
 *
 * Nothing here ever writes to the application's database: connections are
 * opened with SQLITE_OPEN_READONLY and `PRAGMA query_only`, and every
 * statement a user gives must be a single read (sq_conn_prepare).
 */
#ifndef VIGIL_SQ_H
#define VIGIL_SQ_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>
#include <sqlite3.h>
#include <vigil/plugin.h>

#define SQ_NAME_MAX 64    /* a query's name: the `query` label */
#define SQ_QUERIES_MAX 64 /* per instance */
#define SQ_SQL_MAX 16384  /* one query's text */
#define SQ_MSG_MAX 512    /* one error message */
#define SQ_READS_MAX 256  /* (table, column) pairs a plan considers */
#define SQ_PLAN_ROWS 256  /* EXPLAIN QUERY PLAN rows kept */
#define SQ_HINT_CANDIDATES 32

/* The outcome of a prepare or a run. */
enum sq_status {
    SQ_OK = 0,
    SQ_BUSY,     /* the application holds a lock: counted, retried */
    SQ_ERROR,    /* anything else SQLite refused */
    SQ_TIMEOUT,  /* interrupted after the query's timeout */
    SQ_CANCELED, /* interrupted because vigil stops */
    SQ_REFUSED,  /* not a single read: never run */
};

/* One configured query (sqlite_conf.c). */
struct sq_query {
    char name[SQ_NAME_MAX + 1];
    char *sql; /* owned */
};

/* Parse the `query` option's lines (see docs/sqlite.md) into *out (an
 * array of *n queries, freed with sq_queries_free). Returns 0, or
 * VIGIL_ECONFIG / VIGIL_ENOMEM after writing why into err. */
int sq_queries_parse(const struct vigil_list *lines, struct sq_query **out,
                     size_t *n, char *err, size_t size);

/* Free what sq_queries_parse made. Accepts NULL. */
void sq_queries_free(struct sq_query *q, size_t n);

/* The first keyword of sql (comments and blanks skipped), upper-cased into
 * word; "" when there is none. Does not fail. */
void sq_first_keyword(const char *sql, char *word, size_t size);

/* A (table, column) pair the authorizer saw a statement read. */
struct sq_read {
    char table[SQ_NAME_MAX * 2];
    char column[SQ_NAME_MAX * 2];
};

/*
 * A read-only connection to the application's database (sqlite_db.c).
 * Used by one thread at a time. `cancel` is read by the busy and progress
 * handlers, so a query can be stopped from the loop.
 */
struct sq_conn {
    sqlite3 *db;
    dev_t dev;
    ino_t ino;
    const atomic_int *cancel; /* borrowed; nonzero: give up now */
    int64_t busy_timeout_ms;
    int64_t deadline_ns; /* monotonic; 0: none */
    int64_t busy_start_ns;
    int timed_out;
    int internal; /* our own statements: the authorizer lets them pass */
    char denied[96];
    /* Filled by the authorizer while `want_reads`. */
    int want_reads;
    struct sq_read reads[SQ_READS_MAX];
    size_t nreads;
};

/* Open path read-only. cancel is borrowed until sq_conn_close. Returns
 * SQ_OK, SQ_BUSY or SQ_ERROR (then msg says why). */
int sq_conn_open(struct sq_conn *c, const char *path, const atomic_int *cancel,
                 int64_t busy_timeout_ms, char *msg, size_t size);

/* Does path still name the file c was opened on? 0 when it was replaced,
 * removed or cannot be checked. */
int sq_conn_same_file(const struct sq_conn *c, const char *path);

/* Close. Accepts a connection that was never opened. Statements must be
 * finalized first. Does not fail. */
void sq_conn_close(struct sq_conn *c);

/* Prepare sql, which must be exactly one read: SQ_REFUSED (msg says why)
 * for anything that writes, changes the connection, attaches, opens a
 * transaction or is followed by another statement. persistent: the
 * statement is kept across collections. */
int sq_conn_prepare(struct sq_conn *c, const char *sql, int persistent,
                    sqlite3_stmt **out, char *msg, size_t size);

/* What one run of a statement gave. */
struct sq_run {
    double ms;              /* first step to the last row */
    int64_t rows;           /* rows returned */
    int64_t fullscan_steps; /* SQLITE_STMTSTATUS_FULLSCAN_STEP */
    int64_t sorts;          /* SQLITE_STMTSTATUS_SORT */
};

/* Run st to the end, timed, and reset it (which releases its read lock).
 * timeout_ms > 0 interrupts it after that long. Returns an sq_status; msg
 * says why when not SQ_OK. */
int sq_conn_run(struct sq_conn *c, sqlite3_stmt *st, int64_t timeout_ms,
                struct sq_run *r, char *msg, size_t size);

/* Size of a file in bytes, 0 when it does not exist. */
int64_t sq_file_size(const char *path);

/* ------------------------------------------------------------------------
 * Plans (sqlite_plan.c).
 */

enum sq_plan_kind {
    SQ_PLAN_OTHER,      /* CO-ROUTINE, COMPOUND QUERY, LIST SUBQUERY... */
    SQ_PLAN_FULL_SCAN,  /* SCAN t: every row of a table */
    SQ_PLAN_INDEX_SCAN, /* SCAN t USING [COVERING] INDEX i: all of i */
    SQ_PLAN_SCAN_OTHER, /* SCAN of a subquery, CTE, constant or vtab */
    SQ_PLAN_SEARCH,     /* SEARCH t USING INDEX / PRIMARY KEY */
    SQ_PLAN_AUTO_INDEX, /* SEARCH t USING AUTOMATIC ... INDEX (c=?) */
    SQ_PLAN_TEMP_BTREE, /* USE TEMP B-TREE FOR ORDER BY, GROUP BY... */
};

/* What one EXPLAIN QUERY PLAN detail says. */
struct sq_plan_detail {
    int kind;                      /* enum sq_plan_kind */
    char name[SQ_NAME_MAX * 2];    /* table or alias after SCAN/SEARCH */
    char index[SQ_NAME_MAX * 2];   /* the index named, if any */
    char columns[SQ_NAME_MAX * 2]; /* AUTO_INDEX: "c1,c2" from (c1=? AND..)*/
};

/* Read one detail text (SQLite 3.36+ and the older "SCAN TABLE t" form).
 * Does not fail: what it does not know is SQ_PLAN_OTHER. */
void sq_plan_classify(const char *detail, struct sq_plan_detail *d);

/* The table that name (from a SCAN or SEARCH row) stands for in sql,
 * given the tables the statement reads: name itself when it is one of
 * them, else the table it is an alias of (`orders o`, `orders AS o`).
 * Returns 1 and fills table, or 0 when it is neither (a subquery or CTE).
 */
int sq_plan_resolve(const char *sql, const struct sq_read *reads, size_t nreads,
                    const char *name, char *table, size_t size);

/* Set "plan", "full_scans" and "hints" on the object out for sql. The
 * statement is prepared on c with the read guard, EXPLAIN QUERY PLAN runs
 * on c, and index hints are checked on an in-memory copy of the schema.
 * Returns an sq_status; msg says why when not SQ_OK. */
int sq_plan_json(struct sq_conn *c, const char *sql, json_t *out, char *msg,
                 size_t size);

/* ------------------------------------------------------------------------
 * The instance (sqlite.c) and its diagnostics (sqlite_diag.c).
 */

struct sq_config {
    const char *file;
    struct vigil_list query;
    int64_t timeout_ms;
    int64_t busy_timeout_ms;
};

/* A configured query's statement, last result and series. */
struct sq_qstate {
    const struct sq_query *q; /* in s->queries */
    /* Owned by the collection work while it is pending. */
    sqlite3_stmt *stmt;
    int status; /* enum sq_status of the last collection */
    int refused;
    struct sq_run run;
    char msg[SQ_MSG_MAX];
    /* Loop side. */
    int refused_said;
    uint64_t busy_streak;
    uint64_t busy_total, errors_total;
    vigil_series_id s_ms, s_rows, s_fullscan, s_busy, s_errors;
};

struct sq_req;

struct sq {
    const struct vigil_host *host;
    vigil_instance *inst;
    const struct sq_config *cfg; /* borrowed from the core */
    struct sq_query *queries;
    size_t nq;
    struct sq_qstate *qs;
    atomic_int cancel; /* set by stop(): running statements give up */

    /* Owned by the collection work while pending. */
    struct sq_conn conn;
    int open_status;
    char open_msg[SQ_MSG_MAX];
    char wal_path[4096];
    int64_t size_bytes, wal_bytes;

    /* Loop side. */
    int pending, stopped;
    vigil_series_id s_size, s_wal;
    struct sq_req *reqs; /* diagnostics reading this instance's file */
    int diag_owner;
    struct sq *next; /* every live instance */
};

/* The live instances; the one named name, or NULL. Loop thread only. */
struct sq *sq_instances(void);
struct sq *sq_instance_find(const char *name);

/* Register sqlite.plan and sqlite.measure unless another instance did.
 * Returns 0 or a VIGIL_E* code from the host. */
int sq_diag_register(struct sq *s);

/* Reply VIGIL_ECANCELED to the requests reading s's file and tell their
 * statements to give up; called from stop(). Does not fail. */
void sq_diag_stop(struct sq *s);

#endif
