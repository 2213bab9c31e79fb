/*
 * sqlite_db.c - a read-only connection to an application's database, used
 * on the thread pool (never on the loop: opening, preparing and stepping
 * can wait for locks and for the disk).
 *
 * Why each guard:
 *   - SQLITE_OPEN_READONLY: the connection can never take a write lock,
 *     create a journal or write a page; in WAL mode it only maps the -shm
 *     index as every reader does.
 *   - PRAGMA query_only and the authorizer: a statement stays a read even
 *     where sqlite3_stmt_readonly() says yes to things that are not one
 *     (`PRAGMA query_only=0`, ATTACH, BEGIN). The authorizer admits SELECT,
 *     reads, functions, recursive CTEs and pragmas that only read.
 *   - A busy handler of our own instead of busy_timeout: it waits at most
 *     busy_timeout_ms and gives up at once when vigil stops. In rollback
 *     journal mode an application that commits or holds an EXCLUSIVE lock
 *     makes readers wait; the caller counts SQLITE_BUSY and retries next
 *     tick, so a busy database is a figure, not an error storm.
 *   - A progress handler: the query's timeout and vigil's stop interrupt
 *     a statement that runs too long (sqlite3_interrupt from the loop
 *     would race with the connection's close).
 *   - Statements are reset as soon as they are done: a reader that keeps
 *     its snapshot keeps a rollback-mode writer from committing and a
 *     WAL checkpoint from finishing.
 *   - DEFENSIVE and no trusted schema: views and triggers of a database
 *     we do not own cannot call functions with side effects.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "sqlite.h"

/* VM instructions between two calls of the progress handler: a few
 * microseconds of work, so a timeout is noticed within that. */
#define SQ_PROGRESS_OPS 1000

static int64_t sq_mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t sq_file_size(const char *path)
{
    struct stat st;

    if (stat(path, &st) != 0) {
        return 0;
    }
    return (int64_t)st.st_size;
}

static int sq_canceled(const struct sq_conn *c)
{
    return c->cancel != NULL && atomic_load(c->cancel) != 0;
}

/* Wait for a lock at most busy_timeout_ms, in growing naps. */
static int sq_busy_cb(void *arg, int count)
{
    struct sq_conn *c = arg;
    int64_t now = sq_mono_ns(), left;
    struct timespec nap;
    int64_t ms;

    if (count == 0) {
        c->busy_start_ns = now;
    }
    left = c->busy_timeout_ms * 1000000LL - (now - c->busy_start_ns);
    if (sq_canceled(c) || left <= 0) {
        return 0;
    }
    ms = count < 5 ? 1LL << count : 20; /* 1, 2, 4, 8, 16, 20... */
    if (ms * 1000000LL > left) {
        ms = (left + 999999) / 1000000;
    }
    nap.tv_sec = 0;
    nap.tv_nsec = (long)(ms * 1000000LL);
    nanosleep(&nap, NULL);
    return 1;
}

static int sq_progress_cb(void *arg)
{
    struct sq_conn *c = arg;

    if (sq_canceled(c)) {
        return 1;
    }
    if (c->deadline_ns != 0 && sq_mono_ns() > c->deadline_ns) {
        c->timed_out = 1;
        return 1;
    }
    return 0;
}

/* Pragmas that take an argument and still only read. */
static int sq_pragma_reads(const char *name)
{
    static const char *const ok[] = {"table_info",
                                     "table_xinfo",
                                     "index_list",
                                     "index_info",
                                     "index_xinfo",
                                     "foreign_key_list",
                                     "foreign_key_check",
                                     "integrity_check",
                                     "quick_check",
                                     "table_list",
                                     NULL};
    size_t i;

    for (i = 0; ok[i] != NULL; i++) {
        if (strcmp(name, ok[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

static void sq_note_read(struct sq_conn *c, const char *table,
                         const char *column, const char *db)
{
    struct sq_read *r;
    size_t i;

    if (!c->want_reads || table == NULL || (db != NULL && strcmp(db, "main"))) {
        return;
    }
    column = column != NULL ? column : "";
    for (i = 0; i < c->nreads; i++) {
        if (strcmp(c->reads[i].table, table) == 0 &&
            strcmp(c->reads[i].column, column) == 0) {
            return;
        }
    }
    if (c->nreads == SQ_READS_MAX) {
        return;
    }
    r = &c->reads[c->nreads++];
    snprintf(r->table, sizeof(r->table), "%s", table);
    snprintf(r->column, sizeof(r->column), "%s", column);
}

/* The authorizer's action codes, as the statements that cause them. */
static const char *sq_action_name(int action)
{
    static const char *const names[] = {
        [SQLITE_CREATE_INDEX] = "CREATE INDEX",
        [SQLITE_CREATE_TABLE] = "CREATE TABLE",
        [SQLITE_CREATE_TEMP_INDEX] = "CREATE TEMP INDEX",
        [SQLITE_CREATE_TEMP_TABLE] = "CREATE TEMP TABLE",
        [SQLITE_CREATE_TEMP_TRIGGER] = "CREATE TEMP TRIGGER",
        [SQLITE_CREATE_TEMP_VIEW] = "CREATE TEMP VIEW",
        [SQLITE_CREATE_TRIGGER] = "CREATE TRIGGER",
        [SQLITE_CREATE_VIEW] = "CREATE VIEW",
        [SQLITE_DELETE] = "DELETE",
        [SQLITE_DROP_INDEX] = "DROP INDEX",
        [SQLITE_DROP_TABLE] = "DROP TABLE",
        [SQLITE_DROP_TEMP_INDEX] = "DROP TEMP INDEX",
        [SQLITE_DROP_TEMP_TABLE] = "DROP TEMP TABLE",
        [SQLITE_DROP_TEMP_TRIGGER] = "DROP TEMP TRIGGER",
        [SQLITE_DROP_TEMP_VIEW] = "DROP TEMP VIEW",
        [SQLITE_DROP_TRIGGER] = "DROP TRIGGER",
        [SQLITE_DROP_VIEW] = "DROP VIEW",
        [SQLITE_INSERT] = "INSERT",
        [SQLITE_UPDATE] = "UPDATE",
        [SQLITE_ATTACH] = "ATTACH",
        [SQLITE_DETACH] = "DETACH",
        [SQLITE_ALTER_TABLE] = "ALTER TABLE",
        [SQLITE_REINDEX] = "REINDEX",
        [SQLITE_ANALYZE] = "ANALYZE",
        [SQLITE_CREATE_VTABLE] = "CREATE VIRTUAL TABLE",
        [SQLITE_DROP_VTABLE] = "DROP VIRTUAL TABLE",
        [SQLITE_SAVEPOINT] = "SAVEPOINT",
    };

    if (action > 0 && (size_t)action < sizeof(names) / sizeof(names[0]) &&
        names[action] != NULL) {
        return names[action];
    }
    return "a statement";
}

static int sq_auth_cb(void *arg, int action, const char *a1, const char *a2,
                      const char *db, const char *via)
{
    struct sq_conn *c = arg;

    (void)via;
    if (c->internal) {
        return SQLITE_OK;
    }
    switch (action) {
    case SQLITE_SELECT:
    case SQLITE_FUNCTION:
    case SQLITE_RECURSIVE:
        return SQLITE_OK;
    case SQLITE_READ:
        sq_note_read(c, a1, a2, db);
        return SQLITE_OK;
    case SQLITE_UPDATE:
        /* A table-valued pragma (pragma_table_info('t')) asks for
         * UPDATE on sqlite_schema's columns while SQLite sets it up; it
         * writes nothing (the statement is still checked with
         * sqlite3_stmt_readonly, and the connection cannot write). */
        if (a1 != NULL && (strcmp(a1, "sqlite_master") == 0 ||
                           strcmp(a1, "sqlite_schema") == 0)) {
            return SQLITE_OK;
        }
        break;
    case SQLITE_PRAGMA:
        /* `PRAGMA x` reads x; `PRAGMA x = v` sets it, except for the
         * pragmas whose argument names a table or an index. */
        if (a2 == NULL || sq_pragma_reads(a1)) {
            return SQLITE_OK;
        }
        if (c->denied[0] == '\0') {
            snprintf(c->denied, sizeof(c->denied), "PRAGMA %s = %s", a1, a2);
        }
        return SQLITE_DENY;
    case SQLITE_TRANSACTION:
        if (c->denied[0] == '\0') {
            snprintf(c->denied, sizeof(c->denied), "%s (a transaction)",
                     a1 != NULL ? a1 : "BEGIN");
        }
        return SQLITE_DENY;
    default:
        break;
    }
    /* The first refusal says what the statement does; later ones are
     * its consequences (CREATE TEMP TABLE also inserts into the temp
     * schema). */
    if (c->denied[0] == '\0') {
        int on_table =
            action == SQLITE_INSERT || action == SQLITE_UPDATE ||
            action == SQLITE_DELETE ||
            (action >= SQLITE_CREATE_INDEX && action <= SQLITE_DROP_VIEW);

        snprintf(c->denied, sizeof(c->denied), "%s%s%s", sq_action_name(action),
                 on_table && a1 ? " on " : "", on_table && a1 ? a1 : "");
    }
    return SQLITE_DENY;
}

/* Run one of our own statements. */
static int sq_exec_internal(struct sq_conn *c, const char *sql)
{
    int rc;

    c->internal = 1;
    rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
    c->internal = 0;
    return rc;
}

static int sq_code_status(int rc)
{
    return (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED
               ? SQ_BUSY
               : SQ_ERROR;
}

/* Open read-only with the guards above; see sqlite.h. */
int sq_conn_open(struct sq_conn *c, const char *path, const atomic_int *cancel,
                 int64_t busy_timeout_ms, char *msg, size_t size)
{
    struct stat st;
    int rc;

    memset(c, 0, sizeof(*c));
    c->cancel = cancel;
    c->busy_timeout_ms = busy_timeout_ms;
    /* stat first: SQLite says "unable to open database file" for every
     * reason, and a missing file is the common one. */
    if (stat(path, &st) != 0) {
        char why[128];

        /* strerror_r: this runs on pool threads. */
        snprintf(msg, size, "%s: %s", path,
                 strerror_r(errno, why, sizeof(why)));
        return SQ_ERROR;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(msg, size, "%s: not a regular file", path);
        return SQ_ERROR;
    }
    c->dev = st.st_dev;
    c->ino = st.st_ino;
    /* NOMUTEX: one thread at a time uses a connection (the pool thread
     * of the work that owns it). */
    rc = sqlite3_open_v2(path, &c->db,
                         SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX |
                             SQLITE_OPEN_EXRESCODE,
                         NULL);
    if (rc != SQLITE_OK) {
        snprintf(msg, size, "%s: %s", path,
                 c->db != NULL ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        sq_conn_close(c);
        return SQ_ERROR;
    }
    sqlite3_db_config(c->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
    sqlite3_db_config(c->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
    sqlite3_busy_handler(c->db, sq_busy_cb, c);
    sqlite3_progress_handler(c->db, SQ_PROGRESS_OPS, sq_progress_cb, c);
    sqlite3_set_authorizer(c->db, sq_auth_cb, c);
    rc = sq_exec_internal(c, "PRAGMA query_only = 1");
    if (rc != SQLITE_OK) {
        snprintf(msg, size, "%s: %s", path, sqlite3_errmsg(c->db));
        sq_conn_close(c);
        return SQ_ERROR;
    }
    return SQ_OK;
}

/* Is path still the file opened? See sqlite.h. */
int sq_conn_same_file(const struct sq_conn *c, const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 && st.st_dev == c->dev && st.st_ino == c->ino;
}

/* Close; accepts a connection never opened. Does not fail. */
void sq_conn_close(struct sq_conn *c)
{
    if (c->db != NULL) {
        sqlite3_close_v2(c->db);
        c->db = NULL;
    }
}

/* Does the rest of a statement hold another one? Comments and blanks
 * alone give no statement. */
static int sq_has_more(struct sq_conn *c, const char *tail)
{
    sqlite3_stmt *more = NULL;
    int rc;

    tail += strspn(tail, " \t\r\n;");
    if (*tail == '\0') {
        return 0;
    }
    c->internal = 1; /* only to see whether there is one: never run */
    rc = sqlite3_prepare_v2(c->db, tail, -1, &more, NULL);
    c->internal = 0;
    sqlite3_finalize(more);
    return rc != SQLITE_OK || more != NULL;
}

/* Prepare exactly one read, or refuse it; see sqlite.h. */
int sq_conn_prepare(struct sq_conn *c, const char *sql, int persistent,
                    sqlite3_stmt **out, char *msg, size_t size)
{
    const char *tail = NULL;
    sqlite3_stmt *st = NULL;
    int rc;

    *out = NULL;
    c->denied[0] = '\0';
    c->nreads = 0;
    rc = sqlite3_prepare_v3(
        c->db, sql, -1, persistent ? SQLITE_PREPARE_PERSISTENT : 0, &st, &tail);
    if (rc != SQLITE_OK) {
        if (c->denied[0] != '\0') {
            snprintf(msg, size, "refused: %s is not a read", c->denied);
            return SQ_REFUSED;
        }
        snprintf(msg, size, "%s", sqlite3_errmsg(c->db));
        return sq_code_status(rc);
    }
    if (st == NULL) {
        snprintf(msg, size, "refused: no statement (only blanks or comments)");
        return SQ_REFUSED;
    }
    if (!sqlite3_stmt_readonly(st)) {
        sqlite3_finalize(st);
        snprintf(msg, size,
                 "refused: not a read (it would write or change "
                 "the database)");
        return SQ_REFUSED;
    }
    if (sq_has_more(c, tail)) {
        sqlite3_finalize(st);
        snprintf(msg, size, "refused: more than one statement; give one");
        return SQ_REFUSED;
    }
    *out = st;
    return SQ_OK;
}

/* Run a statement to its end, timed, then reset it; see sqlite.h. */
int sq_conn_run(struct sq_conn *c, sqlite3_stmt *st, int64_t timeout_ms,
                struct sq_run *r, char *msg, size_t size)
{
    int64_t t0;
    int rc;

    memset(r, 0, sizeof(*r));
    c->timed_out = 0;
    t0 = sq_mono_ns();
    c->deadline_ns = timeout_ms > 0 ? t0 + timeout_ms * 1000000LL : 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        r->rows++;
    }
    r->ms = (double)(sq_mono_ns() - t0) / 1e6;
    c->deadline_ns = 0;
    r->fullscan_steps =
        sqlite3_stmt_status(st, SQLITE_STMTSTATUS_FULLSCAN_STEP, 1);
    r->sorts = sqlite3_stmt_status(st, SQLITE_STMTSTATUS_SORT, 1);
    sqlite3_stmt_status(st, SQLITE_STMTSTATUS_VM_STEP, 1);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(st);
        return SQ_OK;
    }
    snprintf(msg, size, "%s", sqlite3_errmsg(c->db));
    sqlite3_reset(st);
    if ((rc & 0xff) == SQLITE_INTERRUPT) {
        if (c->timed_out) {
            snprintf(msg, size, "interrupted after %lld ms (timeout)",
                     (long long)timeout_ms);
            return SQ_TIMEOUT;
        }
        snprintf(msg, size, "interrupted: vigil is stopping");
        return SQ_CANCELED;
    }
    return sq_code_status(rc);
}
