/*
 * store - what vigil keeps: sample history with roll-ups and retention, and
 * incidents with their transitions, evidence and actions.
 *
 * Two back ends with the same schema and behaviour (store_be.h): SQLite,
 * the embedded default (WAL, prepared statements, one transaction per
 * flush), and PostgreSQL for fleets, chosen by a `postgresql://` or
 * `postgres://` URI as the path: every row is tagged with its host, so
 * several agents share one database (docs/store.md).
 *
 * Two ways to use it:
 *
 *   daemon  store_open(opts, loop): writes are queued in memory and
 *           committed on the libuv thread pool by one writer at a time, on
 *           the store's own connection, so the loop never waits for the
 *           disk. Samples come from a bus subscription (store_attach_bus)
 *           into a fixed buffer: no allocation per sample; when the buffer
 *           is full, samples are counted as dropped, never block.
 *   tools   store_open(opts, NULL): `vigil incidents`, `vigil history`;
 *           every call runs synchronously on the caller's thread.
 *
 * Records (incidents, transitions, evidence, actions) are copied when
 * queued and written in the order they were queued. store_put_action()
 * calls back once its row is committed, so an action's intent is on disk
 * before the action runs. When the daemon opens the store, actions with an
 * intent and no result (vigil died while they ran) are marked
 * "interrupted".
 *
 * The schema is versioned; store_open() applies missing migrations in one
 * transaction. Times are wall-clock ns; text is UTF-8.
 *
 * When the disk or the server fails (full, unwritable, locked; server
 * down, connection lost), the daemon goes on: the failed flush is rolled
 * back and logged (at most a line a minute), its samples are lost
 * (counted in samples_lost), its records stay queued, in their order and
 * ahead of newer ones, and are written by the next flush that succeeds
 * (the PostgreSQL back end reconnects first). Action callbacks run once:
 * with the error if their flush failed (the row is still written later);
 * the caller should then put the action's outcome (say SKIPPED, "store
 * unavailable") rather than run it. Records the database refuses for
 * their values alone are dropped, their callback gets VIGIL_EINVAL, and
 * the rest of the flush is written. The record queue is bounded (100,000
 * records, 64 MiB): beyond it, puts return VIGIL_ELIMIT.
 *
 * Threads: every function is called on the loop thread (daemon) or the
 * caller's thread (tools). Daemon mode uses two connections: the writer,
 * used by one flush job at a time on the thread pool, and a reader for the
 * synchronous reads, which see what is committed.
 */
#ifndef VIGIL_STORE_H
#define VIGIL_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "bus.h"
#include "err.h"

struct store;

struct store_opts {
    const char *path;            /* SQLite file, or "postgresql://..." */
    const char *host;            /* tag for every row; NULL = gethostname */
    int64_t raw_retention_ns;    /* raw samples kept; 0 = 2 days */
    int64_t rollup_retention_ns; /* 1-minute min/avg/max kept; 0 = 90 d */
    int64_t flush_interval_ms;   /* 0 = 1000 */
    uint32_t sample_buffer;      /* samples held between flushes; 0 = 65536 */
};

/* Open (creating the file and schema as needed). loop NULL: synchronous
 * mode for tools. Errors say what and where ("vigil.db: unable to open
 * database file"); a database from a newer vigil (VIGIL_ESTATE) or from
 * another program (VIGIL_EINVAL) is refused. A PostgreSQL server that
 * cannot be reached fails the open too (VIGIL_EIO, naming the server,
 * never the password): the next ids come from the stored rows. Messages
 * name a PostgreSQL database as postgresql://user@host:port/db.
 *
 * In daemon mode, actions left PENDING are marked INTERRUPTED here (never
 * in tool mode: a tool may open the database while the daemon runs
 * actions). Zero options take the defaults; sample_buffer is at most
 * 16,777,216 and two such buffers are allocated (24 bytes a sample).
 * Returns 0 or a VIGIL_E* code. */
int store_open(const struct store_opts *opts, uv_loop_t *loop,
               struct store **out, struct vigil_err *err);

/* Whether path names a PostgreSQL database (a postgresql:// or
 * postgres:// URI, also behind a directory that a config resolved it
 * against: "/etc/vigil/postgresql://...") rather than an SQLite file, so
 * that callers do not treat it as a file. Does not fail. */
int store_is_remote(const char *path);

/* Flush what is queued (synchronously: only at shutdown, after the loop's
 * work is done), stop timers, close. Accepts NULL. In daemon mode the
 * caller runs the loop afterwards for the close callbacks:
 *
 *     store_close(st);          unsubscribes, closes the flush timer
 *     uv_run(loop, ...);        until the store's handles and job are done
 *
 * If no flush job is running, the last flush (samples, records, action
 * callbacks) happens inside store_close() on the loop thread; if one is,
 * it happens in that job's after-work callback, during the uv_run(). The
 * store's memory is released once both the timer is closed and the last
 * flush is done; no store function may be called after store_close(). The
 * bus given to store_attach_bus() must still exist when store_close() is
 * called. Records that cannot be written even then are logged, and their
 * callbacks get VIGIL_ECANCELED. */
void store_close(struct store *s);

/* Keep the history of every series matching selector (NULL = all).
 * Daemon mode only; may be called again with other selectors on the same
 * bus (a series matched twice is kept once). Returns 0 or a VIGIL_E*
 * code. */
int store_attach_bus(struct store *s, struct bus *bus, const char *selector,
                     struct vigil_err *err);

/* ---------------------------------------------------------------- records */

enum store_action_result {
    STORE_ACT_PENDING = 0, /* intent written, not finished */
    STORE_ACT_OK,
    STORE_ACT_FAILED,
    STORE_ACT_TIMEOUT,
    STORE_ACT_DRY_RUN,     /* recorded what would have run */
    STORE_ACT_SKIPPED,     /* guardrail: cooldown, rate, breaker, off */
    STORE_ACT_AWAITING,    /* waiting for approval */
    STORE_ACT_INTERRUPTED, /* vigil stopped while it ran */
};

struct store_incident {
    int64_t id; /* per host; from store_next_incident_id */
    const char *rule;
    const char *series; /* series key, or "" for conditions */
    const char *title;
    const char *runbook;            /* may be NULL */
    int state;                      /* enum rule_state: the worst reached */
    int open;                       /* 1 open, 0 resolved */
    int64_t opened_ts, resolved_ts; /* resolved_ts 0 while open */
    int acknowledged;
    const char *labels_json; /* {"k":"v"} or NULL */
};

struct store_transition {
    int64_t incident_id;
    int64_t ts;
    int from, to;
    double value;
    const char *reason;
};

struct store_evidence {
    int64_t incident_id;
    int step;           /* order within the incident's investigation */
    const char *name;   /* "proc.top", "exec", "snapshot"... */
    const char *phase;  /* "immediate", "short_term", "deep" */
    const char *status; /* "running", "ok", "failed", "timeout" */
    int64_t started_ts, ended_ts;
    const char *output; /* JSON text or plain text; NULL = none */
};

struct store_action {
    int64_t id; /* from store_next_action_id */
    int64_t incident_id;
    const char *name;    /* the runbook's action name */
    const char *kind;    /* "exec", "webhook", or a plugin action */
    const char *mode;    /* "off", "dry-run", "on", "approve" */
    const char *command; /* argv as a JSON array, URL, or args JSON */
    int result;          /* enum store_action_result */
    const char *reason;  /* why skipped/failed, for people */
    int64_t intent_ts, started_ts, ended_ts;
    int exit_code;
    const char *output; /* captured, capped */
};

/* Ids are allocated in memory from the largest stored id of this host.
 * Do not fail. */
int64_t store_next_incident_id(struct store *s);
int64_t store_next_action_id(struct store *s);

/* Queue an upsert (by id / by (incident, step)); strings are copied.
 * Return 0, VIGIL_ENOMEM or VIGIL_ELIMIT (queue full). In tool mode the
 * record is written before returning, and the write's status is
 * returned. */
int store_put_incident(struct store *s, const struct store_incident *inc);
int store_add_transition(struct store *s, const struct store_transition *t);
int store_put_evidence(struct store *s, const struct store_evidence *e);

/* Queue an upsert of an action; cb (may be NULL) runs on the loop once the
 * row is committed, with 0 or the error that prevented it (see the top of
 * this file). In tool mode cb runs before store_put_action() returns.
 * If the put itself fails, cb is not called. */
typedef void (*store_done_cb)(void *arg, int status);
int store_put_action(struct store *s, const struct store_action *a,
                     store_done_cb cb, void *arg);

/* ---------------------------------------------------------------- approval */

/* Tool mode: approve an action that waits (result AWAITING). Returns 0,
 * VIGIL_ENOENT when no such action waits, or another code with err. */
int store_approve_action(struct store *s, int64_t id, const char *who,
                         struct vigil_err *err);

/* Daemon mode: cb runs on the loop, after a flush, for every waiting
 * action that has been approved; it is called again at every flush until
 * the action's row changes (the daemon runs it and writes its result). */
typedef void (*store_approval_cb)(void *arg, int64_t action_id);
void store_on_approval(struct store *s, store_approval_cb cb, void *arg);

/* ---------------------------------------------------------------- reads */

/* Synchronous reads (tools, and the daemon at start). Each row is passed
 * to cb, valid during the call only. Strings documented as "may be NULL"
 * or "NULL = none" come back NULL when absent, other strings "". Rows are
 * those of this store's host. Return 0 or a VIGIL_E* code (VIGIL_ENOENT:
 * no such incident or series), the details in the log. */
typedef void (*store_incident_cb)(void *arg, const struct store_incident *);
typedef void (*store_transition_cb)(void *arg, const struct store_transition *);
typedef void (*store_evidence_cb)(void *arg, const struct store_evidence *);
typedef void (*store_action_cb)(void *arg, const struct store_action *);
typedef void (*store_sample_cb)(void *arg, int64_t ts, double v);
typedef void (*store_rollup_cb)(void *arg, int64_t ts, double min, double avg,
                                double max, uint64_t count);

/* Newest (highest id) first; limit 0 = all. */
int store_list_incidents(struct store *s, int open_only, unsigned limit,
                         store_incident_cb cb, void *arg);
/* The incident, then its transitions by time, its evidence by step, its
 * actions by id. Any callback may be NULL. */
int store_get_incident(struct store *s, int64_t id, store_incident_cb icb,
                       store_transition_cb tcb, store_evidence_cb ecb,
                       store_action_cb acb, void *arg);

/* Samples of one series (by key, as bus_series_key) since a time, raw
 * where kept, then the roll-ups for older times (rcb may be NULL). In
 * time order: rcb first, for the 1-minute roll-ups from the minute that
 * holds `since` up to (not including) the minute of the oldest raw sample
 * kept, then cb for the raw samples at or after `since`. Raw samples are
 * only deleted in whole minutes once rolled up, so the two do not overlap.
 * A NaN sample reads back as NaN and is left out of roll-ups. */
int store_history(struct store *s, const char *series_key, int64_t since,
                  store_sample_cb cb, store_rollup_cb rcb, void *arg);

/* Counters for self-metrics. */
struct store_stats {
    uint64_t samples_written;
    uint64_t samples_dropped; /* buffer full */
    uint64_t records_written;
    uint64_t flushes;         /* flush jobs done, failed ones included */
    uint64_t errors;          /* failed flushes, flushes refusing records */
    double last_flush_ms;     /* the writer's time for the last flush */
    uint64_t samples_lost;    /* in a flush that failed */
    uint32_t records_pending; /* queued or being written */
};
void store_get_stats(const struct store *s, struct store_stats *st);

#endif
