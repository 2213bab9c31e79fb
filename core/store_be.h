/*
 * store_be - what the store's two back ends share with store.c; private
 * to core/store*.c.
 *
 * store.c is the back-end-independent part: the loop side (the sample
 * buffers fed by the bus, the record queue, the flush timer, the single
 * flush job on the thread pool), the public functions of store.h, and the
 * writer's bookkeeping that does not depend on the database (the bus id ->
 * database id table, the batch sort, the labels' JSON). A back end
 * (store_sqlite.c, store_pg.c) owns its connections, its SQL and its
 * schema, and provides the operations in struct store_be_ops: open, close,
 * one flush (a job's samples and records in one transaction, roll-ups and
 * trimming), and the reads. Only store_sqlite.c includes sqlite3.h and
 * only store_pg.c includes libpq-fe.h.
 *
 * Threads: a back end's flush runs on the thread pool while a job is in
 * flight, and on the loop (or tool) thread otherwise; its reads always
 * run on the loop (or tool) thread. It must keep the writer's connection
 * and the reader's apart in daemon mode (see store.h).
 */
#ifndef VIGIL_STORE_BE_H
#define VIGIL_STORE_BE_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define STORE_NS_PER_S 1000000000ll
#define STORE_NS_PER_MIN (60 * STORE_NS_PER_S)
#define STORE_NS_PER_DAY (86400 * STORE_NS_PER_S)

/* Housekeeping: rows deleted per table and job; minutes rolled up per
 * step and steps per job, so that catching up after a long stop is spread
 * over several flushes instead of one long transaction. */
#define STORE_TRIM_CHUNK 10000
#define STORE_ROLLUP_SPAN (10 * STORE_NS_PER_MIN)
#define STORE_ROLLUP_STEPS 8

/* Actions approved and still waiting, reported per flush. */
#define STORE_APPROVED_MAX 64

#define STORE_INTERRUPTED_REASON                                               \
    "vigil stopped while the action ran or waited for approval"

#define STORE_SUBS_MAX 16

/* The schema version both back ends are at: the number of migrations.
 * Their migrations are kept in step, so that a version means the same
 * tables on both. */
#define STORE_SCHEMA_VERSION 2

/* Column lists shared by the reads of both back ends. */
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

/* The minute that holds ts, in SQL (floor, also for negative times). */
#define STORE_MINUTE_SQL(ts)                                                   \
    "(" ts " - ((" ts " % 60000000000) + 60000000000) % 60000000000)"

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
    int64_t approved[STORE_APPROVED_MAX]; /* approved and still waiting */
    uint32_t napproved;
};

struct store_be; /* a back end's connections and statements */

/* A back end. Every operation gets the store; the back end keeps its own
 * state in s->be. */
struct store_be_ops {
    /* A name for the database that is safe to log (no password), into a
     * new string (the caller frees it); NULL with err set when path is not
     * usable at all. */
    char *(*describe)(const char *path, struct vigil_err *err);
    /* Connect, bring the schema up to date (or refuse the database), in
     * daemon mode (s->loop set) mark interrupted actions and open the
     * reader; then set s->next_incident, s->next_action and s->wmark.
     * Returns 0 or a VIGIL_E* code with err set ("name: what"). What it
     * built is left in s->be for close. */
    int (*open)(struct store *s, const char *path, struct vigil_err *err);
    /* Close the connections and free s->be; s->be is NULL afterwards.
     * Accepts a NULL or half-built s->be. */
    void (*close)(struct store *s);
    /* Write a job in one transaction: the series it brings (resolved
     * through the writer's table s->wser), its samples, its records (a
     * record the database refuses for its values alone gets status
     * VIGIL_EINVAL, counted in records_refused with refused_msg, and the
     * rest is written); if j->daemon, the roll-ups since s->wmark (moving
     * it); if j->house, trimming; after the commit, if j->daemon and an
     * approval callback is set, the approved actions. Sets
     * samples_written, records_written, backlog. Returns 0, or a VIGIL_E*
     * code with j->msg set and nothing written (store.c then restores the
     * roll-up mark and forgets the database ids). */
    int (*flush)(struct store *s, struct store_job *j);
    int (*list_incidents)(struct store *s, int open_only, unsigned limit,
                          store_incident_cb cb, void *arg);
    int (*get_incident)(struct store *s, int64_t id, store_incident_cb icb,
                        store_transition_cb tcb, store_evidence_cb ecb,
                        store_action_cb acb, void *arg);
    int (*history)(struct store *s, const char *series_key, int64_t since,
                   store_sample_cb cb, store_rollup_cb rcb, void *arg);
    int (*approve)(struct store *s, int64_t id, const char *who,
                   struct vigil_err *err);
};

extern const struct store_be_ops store_sqlite_ops;
extern const struct store_be_ops store_pg_ops;

struct store {
    const struct store_be_ops *ops;
    struct store_be *be;
    char *name; /* for messages: the file, or the URI without secrets */
    char *host;
    int64_t raw_retention_ns, rollup_retention_ns;
    uv_loop_t *loop; /* NULL in tool mode */

    /* Writer side: whoever runs the flush (see store.c). */
    struct store_wser *wser;
    uint32_t nwser;
    int64_t wmark;                /* samples before it are rolled up */
    struct store_sample *wsorted; /* a batch sorted by series */
    uint32_t *wcount;             /* per bus id, for the sort */
    uint32_t wcount_cap;
    char *labels_buf; /* the JSON of one series' labels */
    size_t labels_cap;

    /* Loop side. */
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
    int urgent;        /* a record waits for its commit: flush now */
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

/* The minute that holds ts (floor, also for negative times). */
static inline int64_t store_minute(int64_t ts)
{
    int64_t r = ts % STORE_NS_PER_MIN;

    return r < 0 ? ts - r - STORE_NS_PER_MIN : ts - r;
}

/* A copy of text, or NULL when out of memory. */
char *store_strdup(const char *text);

/* {"k":"v",...} for a series' labels, in the writer's buffer (valid until
 * the next call). Returns NULL when out of memory. Writer side only. */
const char *store_labels_json(struct store *s, const struct store_wser *w);

/* The job's samples sorted by series, each series' samples in publish
 * order; the batch as it is when the sort cannot be done. Writer side
 * only. Does not fail. */
const struct store_sample *store_sort(struct store *s,
                                      const struct store_job *j);

#endif
