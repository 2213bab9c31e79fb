/*
 * pg.h - the pg plugin's instance state, shared by its files:
 *
 *   pg.c          descriptor, options, life cycle, connection events
 *   pg_collect.c  the collection: one batch of catalog queries per
 *                 interval on the instance's persistent connection, then
 *                 pg_stat_statements when it is installed
 *   pg_diag.c     diagnostics and actions, on a second connection opened
 *                 on demand (see docs/pg.md for why)
 *   pg_conn.c     an asynchronous libpq connection on the loop
 *   pg_dsn.c      the connection string
 *
 * Everything runs on the loop thread; only pg_conn's DNS lookups and
 * cancel requests run on the thread pool, with their own copies.
 */
#ifndef VIGIL_PG_H
#define VIGIL_PG_H

#include <stddef.h>
#include <stdint.h>

#include <vigil/plugin.h>

#include "pg_conn.h"
#include "pg_dsn.h"

#define PG_DB_MAX 64           /* databases with series */
#define PG_NAME_MAX 64         /* NAMEDATALEN, with the NUL */
#define PG_QUERY_TEXT_MAX 1024 /* statement text kept per queryid */
#define PG_TOP_MAX 100
#define PG_SQL_MAX 1024

struct pg_config {
    const char *dsn;
    int64_t statement_timeout_ms;
    int64_t diag_timeout_ms;
    int64_t connect_timeout_ms;
    int64_t reconnect_max_ms;
    int64_t top;
    int64_t max_statements;
    struct vigil_list databases;
};

/* Series published every collection, interned at init. */
enum {
    PG_S_CONN_ACTIVE,
    PG_S_CONN_IDLE,
    PG_S_CONN_IDLE_TX,
    PG_S_CONN_IDLE_TX_ABORTED,
    PG_S_CONN_FASTPATH,
    PG_S_CONN_DISABLED,
    PG_S_CONN_TOTAL,
    PG_S_CONN_MAX,
    PG_S_CONN_USED_PCT,
    PG_S_QUERY_LONGEST,
    PG_S_IDLE_TX_LONGEST,
    PG_S_LOCKS_WAITING,
    PG_S_STMTS_AVAILABLE,
    PG_S_RECONNECTS,
    PG_NS
};

/* Per-database series and the counters their rates come from. */
enum {
    PG_DB_S_CONNECTIONS,
    PG_DB_S_COMMITS,
    PG_DB_S_ROLLBACKS,
    PG_DB_S_DEADLOCKS,
    PG_DB_S_TEMP_BYTES,
    PG_DB_S_HIT_PCT,
    PG_DB_NS
};
enum {
    PG_DB_C_COMMIT,
    PG_DB_C_ROLLBACK,
    PG_DB_C_DEADLOCKS,
    PG_DB_C_TEMP_BYTES,
    PG_DB_C_HIT,
    PG_DB_C_READ,
    PG_DB_NC
};

struct pg_db {
    char name[PG_NAME_MAX];
    vigil_series_id id[PG_DB_NS];
    double prev[PG_DB_NC];
    int64_t prev_ns; /* 0 until a first reading */
};

/* A statement (queryid) that has been in the top N: its series exist
 * from then on, so at most max_statements of them ever get series. */
struct pg_stmt {
    int64_t queryid;
    vigil_series_id id[3];        /* calls_per_s, mean_ms, max_ms */
    double calls, total_ms;       /* cumulative, at the last reading */
    int64_t prev_ns;              /* 0 until a first reading */
    double rate, mean_ms, max_ms; /* last published; NAN when none */
    char *query;                  /* normalised text, NULL until fetched */
};

enum { PGSS_UNKNOWN, PGSS_ABSENT, PGSS_FAILED, PGSS_OK };

struct pg_req;

struct pg {
    const struct vigil_host *host;
    vigil_instance *inst;
    const struct pg_config *cfg; /* borrowed from the core */
    struct pg_dsn dsn;
    struct pg_conn *col; /* collection: persistent */
    struct pg_conn *dg;  /* diagnostics and actions: on demand */
    char col_setup[192], dg_setup[192];
    int started, stopping;
    struct pg *next; /* every instance of the module */

    /* Connection events, for the log. */
    int down;        /* the last attempt or the connection failed */
    int64_t down_ns; /* since when */
    int ever_up;

    /* The collection in progress. */
    int collecting;   /* collect() returned VIGIL_PENDING */
    int waiting_conn; /* ... and waits for the connection to come up */
    int64_t ts_ns;    /* when it started: rates divide by these */
    int nres;         /* results of the batch seen so far */
    struct pg_conn_query q_batch, q_stmts, q_text;
    vigil_series_id s[PG_NS];
    struct pg_db dbs[PG_DB_MAX];
    size_t ndbs;
    int dbs_full_logged;

    /* pg_stat_statements */
    int pgss;              /* PGSS_* */
    int64_t pgss_retry_ns; /* PGSS_FAILED: not read again before */
    char pgss_schema[2 * PG_NAME_MAX + 3]; /* quote_ident()ed */
    char stmts_sql[PG_SQL_MAX], text_sql[PG_SQL_MAX];
    char text_param[PG_TOP_MAX * 22 + 3]; /* {id,id,...} */
    const char *text_params[1];
    struct pg_stmt *stmts; /* max_statements slots */
    size_t nstmts;
    size_t *top; /* slots of the last reading's top N, in order */
    size_t ntop;
    int stmts_full_logged;

    /* Diagnostics queued or running on this instance. */
    struct pg_req *reqs;
    size_t nreqs;
};

/* pg_collect.c */

/* Intern the fixed series and allocate the statement slots; 0, or a
 * negative code after logging why. */
int pg_collect_init(struct pg *s);
/* Free what pg_collect_init() and the collections allocated. Does not
 * fail. */
void pg_collect_fini(struct pg *s);
/* The plugin's collect(): VIGIL_PENDING, then host->collect_done() when
 * the batch (and pg_stat_statements) is read; VIGIL_EIO at once while the
 * connection is down between attempts. */
int pg_collect(void *state);
/* The collection connection came up: a collection waiting for it starts
 * its batch. Does not fail. */
void pg_collect_conn_up(struct pg *s);
/* ... or an attempt failed: a collection waiting for it fails with msg.
 * Does not fail. */
void pg_collect_conn_down(struct pg *s, const char *msg);

/* pg_diag.c */

/* Register the diagnostics and actions for instance s; 0, or a negative
 * code after logging why. */
int pg_diag_register(struct pg *s);
/* Abandon this instance's requests and reply VIGIL_ECANCELED to them
 * (stop). Does not fail. */
void pg_diag_stop(struct pg *s);

/* pg.c: the module's instances in config order, for the diagnostics'
 * {"instance": NAME}. Borrowed; valid on the loop thread. */
struct pg *pg_instances(void);

#endif
