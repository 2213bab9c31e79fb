/*
 * pg_conn.c - one asynchronous libpq connection on the core's loop. See
 * pg_conn.h for the contract; the recipe is the one verified in
 * shared/notes/integration.md (libpq 15 on libuv).
 */
#include "pg_conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

enum pgc_state {
    PGC_IDLE,       /* no connection, nothing under way */
    PGC_RESOLVING,  /* host names on the thread pool */
    PGC_CONNECTING, /* PQconnectPoll */
    PGC_SETUP,      /* the setup SQL is running */
    PGC_READY,
    PGC_BACKOFF, /* persistent: waiting to try again */
    PGC_CLOSED,  /* pg_conn_close() was called */
};

/* What the one timer is counting down. */
enum { PGC_T_NONE, PGC_T_CONNECT, PGC_T_QUERY, PGC_T_RETRY, PGC_T_IDLE };

struct pgc_poll {
    uv_poll_t h;
    struct pg_conn *c;
};

struct pg_conn {
    const struct vigil_host *host;
    vigil_instance *inst;
    struct pg_conn_opts o;
    pg_conn_state_cb state_cb;
    void *arg;
    int state;
    PGconn *conn;
    struct pgc_poll *poll; /* NULL when not watching */
    int poll_fd;
    uv_timer_t timer;
    int timer_mode;
    /* What keeps the struct alive: the timer, open poll handles, thread
     * pool jobs and callbacks under way. Freed at 0 once destroyed. */
    unsigned refs;
    int destroyed;
    unsigned gen; /* bumped by every attempt and drop: stale jobs see it */
    struct pg_conn_query *cur; /* in flight */
    struct pg_conn_query *head, *tail;
    struct pg_conn_query setup;   /* the session's setup SQL */
    struct pg_conn_query dropped; /* stands for an abandoned query */
    int status;                   /* of cur: its first error */
    char qerr[PG_CONN_ERR_MAX];
    char err[PG_CONN_ERR_MAX];    /* last connection error */
    char notice[PG_CONN_ERR_MAX]; /* last notice: a FATAL before a close */
    int64_t backoff_ms;
    uint64_t connects;
    int pid;
    char version[32];
};

/* A DNS lookup on the thread pool; touches nothing but itself. */
struct pgc_resolve {
    struct pg_conn *c;
    unsigned gen;
    char hosts[PG_DSN_LIST_MAX], ports[PG_DSN_LIST_MAX];
    struct pg_dsn_hosts out;
    int rc;
    char err[256];
};

/* A PQcancel on the thread pool. */
struct pgc_cancel {
    struct pg_conn *c;
    PGcancel *pc;
    int ok;
    char err[256];
};

static void pgc_attempt(struct pg_conn *c);
static void pgc_send_next(struct pg_conn *c);

/* ------------------------------------------------------------------------
 * Life: references, handles.
 */

static void pgc_unref(struct pg_conn *c)
{
    if (--c->refs == 0 && c->destroyed) {
        free(c);
    }
}

static void pgc_poll_closed(uv_handle_t *h)
{
    struct pgc_poll *p = h->data;
    struct pg_conn *c = p->c;

    free(p);
    pgc_unref(c);
}

static void pgc_poll_close(struct pg_conn *c)
{
    if (c->poll != NULL) {
        uv_close((uv_handle_t *)&c->poll->h, pgc_poll_closed);
        c->poll = NULL;
    }
}

static void pgc_on_poll(uv_poll_t *h, int status, int events);

/* Watch the connection's socket for events, re-creating the handle when
 * libpq changed sockets (another address, an SSL retry). 0 or -1. */
static int pgc_watch(struct pg_conn *c, int events)
{
    int fd = PQsocket(c->conn);
    struct pgc_poll *p;

    if (fd < 0) {
        return -1;
    }
    if (c->poll != NULL && c->poll_fd != fd) {
        pgc_poll_close(c);
    }
    if (c->poll == NULL) {
        p = calloc(1, sizeof(*p));
        if (p == NULL) {
            return -1;
        }
        if (uv_poll_init(c->host->loop(c->inst), &p->h, fd) != 0) {
            free(p);
            return -1;
        }
        p->h.data = p;
        p->c = c;
        c->refs++;
        c->poll = p;
        c->poll_fd = fd;
    }
    return uv_poll_start(&c->poll->h, events, pgc_on_poll) == 0 ? 0 : -1;
}

static void pgc_on_timer(uv_timer_t *t);

static void pgc_timer_start(struct pg_conn *c, int mode, int64_t ms)
{
    c->timer_mode = mode;
    uv_timer_start(&c->timer, pgc_on_timer, (uint64_t)(ms > 0 ? ms : 0), 0);
}

/* Close the socket and free libpq's side; queries are not touched. */
static void pgc_drop(struct pg_conn *c)
{
    c->gen++;
    pgc_poll_close(c); /* before PQfinish closes the fd */
    if (c->conn != NULL) {
        PQfinish(c->conn);
        c->conn = NULL;
    }
    c->pid = 0;
    c->version[0] = '\0';
    uv_timer_stop(&c->timer);
    c->timer_mode = PGC_T_NONE;
}

/* Complete the running and queued queries with status. The list is taken
 * first: a callback may queue a new query. */
static void pgc_fail_all(struct pg_conn *c, int status, const char *msg)
{
    struct pg_conn_query *q = c->cur, *list = c->head;

    c->cur = NULL;
    c->head = c->tail = NULL;
    if (q != NULL && q != &c->setup && q != &c->dropped) {
        q->done_cb(q->arg, status, msg);
    }
    while (list != NULL) {
        q = list;
        list = q->next;
        q->done_cb(q->arg, status, msg);
    }
}

static void pgc_notice(void *arg, const char *msg)
{
    struct pg_conn *c = arg;

    /* Notices would go to stderr; keep the last for the next message. */
    pg_oneline(c->notice, sizeof(c->notice), msg);
}

/* ------------------------------------------------------------------------
 * Failure and retry.
 */

/* The connection failed (an attempt, or one in use): drop it, fail every
 * query, tell the owner, and retry later when persistent. */
static void pgc_down(struct pg_conn *c, int status, const char *msg)
{
    char why[PG_CONN_ERR_MAX];

    if (c->notice[0] != '\0' && strstr(msg, c->notice) == NULL) {
        /* "server closed the connection" says less than the FATAL the
         * server sent before closing it. */
        snprintf(why, sizeof(why), "%.300s (%.200s)", msg, c->notice);
    } else {
        snprintf(why, sizeof(why), "%s", msg);
    }
    memcpy(c->err, why, sizeof(c->err));
    c->notice[0] = '\0';
    pgc_drop(c);
    if (c->o.persistent) {
        c->state = PGC_BACKOFF;
        pgc_timer_start(c, PGC_T_RETRY, c->backoff_ms);
        c->backoff_ms = c->backoff_ms * 2 < c->o.backoff_max_ms
                            ? c->backoff_ms * 2
                            : c->o.backoff_max_ms;
    } else {
        c->state = PGC_IDLE;
    }
    pgc_fail_all(c, status, why);
    if (c->state != PGC_CLOSED && c->state_cb != NULL) {
        c->state_cb(c->arg, 0, why);
    }
}

/* libpq's message for the connection, on one line. */
static void pgc_down_conn(struct pg_conn *c, const char *what)
{
    char line[PG_CONN_ERR_MAX - 64], msg[PG_CONN_ERR_MAX];

    pg_oneline(line, sizeof(line),
               c->conn != NULL ? PQerrorMessage(c->conn) : "");
    snprintf(msg, sizeof(msg), "%s%s%s", what, line[0] ? ": " : "", line);
    pgc_down(c, VIGIL_EIO, msg);
}

static void pgc_on_timer(uv_timer_t *t)
{
    struct pg_conn *c = t->data;
    char msg[128];
    int mode = c->timer_mode;

    c->timer_mode = PGC_T_NONE;
    c->refs++;
    switch (mode) {
    case PGC_T_CONNECT:
        snprintf(msg, sizeof(msg), "no connection within %lld ms",
                 (long long)c->o.connect_timeout_ms);
        pgc_down(c, VIGIL_ETIMEDOUT, msg);
        break;
    case PGC_T_QUERY:
        snprintf(msg, sizeof(msg),
                 "no answer from the server within %lld ms: connection "
                 "dropped",
                 (long long)c->o.query_timeout_ms);
        pgc_down(c, VIGIL_ETIMEDOUT, msg);
        break;
    case PGC_T_RETRY:
        pgc_attempt(c);
        break;
    case PGC_T_IDLE:
        if (c->state == PGC_READY && c->cur == NULL && c->head == NULL) {
            pgc_drop(c); /* quietly: nobody needs it now */
            c->state = PGC_IDLE;
        }
        break;
    default:
        break;
    }
    pgc_unref(c);
}

/* ------------------------------------------------------------------------
 * Queries.
 */

/* Write what libpq has buffered; watch for writability while some is
 * left. 0, or -1 after the connection was declared down. */
static int pgc_flush(struct pg_conn *c)
{
    int r = PQflush(c->conn);

    if (r < 0 ||
        pgc_watch(c, r == 1 ? UV_READABLE | UV_WRITABLE : UV_READABLE) != 0) {
        pgc_down_conn(c, "cannot send the query");
        return -1;
    }
    return 0;
}

static void pgc_send(struct pg_conn *c)
{
    struct pg_conn_query *q = c->cur;
    int ok;

    c->status = 0;
    c->qerr[0] = '\0';
    c->notice[0] = '\0';
    ok = q->nparams > 0 ? PQsendQueryParams(c->conn, q->sql, q->nparams, NULL,
                                            q->params, NULL, NULL, 0)
                        : PQsendQuery(c->conn, q->sql);
    if (!ok) {
        pgc_down_conn(c, "cannot send the query");
        return;
    }
    pgc_timer_start(c, PGC_T_QUERY, c->o.query_timeout_ms);
    pgc_flush(c);
}

static void pgc_send_next(struct pg_conn *c)
{
    if (c->state != PGC_READY || c->cur != NULL) {
        return;
    }
    if (c->head == NULL) {
        if (!c->o.persistent) {
            pgc_timer_start(c, PGC_T_IDLE, c->o.idle_close_ms);
        }
        return;
    }
    c->cur = c->head;
    c->head = c->head->next;
    if (c->head == NULL) {
        c->tail = NULL;
    }
    c->cur->next = NULL;
    pgc_send(c);
}

/* "ERROR 42P01: relation "x" does not exist" */
static void pgc_result_error(struct pg_conn *c, const PGresult *r)
{
    const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY);
    const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *prim = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    char line[PG_CONN_ERR_MAX - 32];

    pg_oneline(line, sizeof(line),
               prim != NULL ? prim : PQresultErrorMessage(r));
    snprintf(c->qerr, sizeof(c->qerr), "%s%s%s: %s", sev ? sev : "ERROR",
             code ? " " : "", code ? code : "", line);
    c->status = VIGIL_EIO;
}

static void pgc_ready(struct pg_conn *c)
{
    c->state = PGC_READY;
    c->connects++;
    c->backoff_ms = c->o.backoff_min_ms;
    c->err[0] = '\0';
    if (c->state_cb != NULL) {
        c->state_cb(c->arg, 1, "");
    }
    pgc_send_next(c);
}

/* The query in flight has returned its last result. */
static void pgc_complete(struct pg_conn *c)
{
    struct pg_conn_query *q = c->cur;
    char msg[PG_CONN_ERR_MAX + 32];

    c->cur = NULL;
    uv_timer_stop(&c->timer);
    c->timer_mode = PGC_T_NONE;
    if (q == &c->setup) {
        if (c->status != 0) {
            snprintf(msg, sizeof(msg), "setting up the session: %s", c->qerr);
            pgc_down(c, VIGIL_EIO, msg);
        } else {
            pgc_ready(c);
        }
        return;
    }
    if (q != &c->dropped) {
        q->done_cb(q->arg, c->status, c->qerr);
    }
    pgc_send_next(c);
}

static void pgc_result(struct pg_conn *c, const PGresult *r)
{
    switch (PQresultStatus(r)) {
    case PGRES_TUPLES_OK:
    case PGRES_COMMAND_OK:
        if (c->status == 0 && c->cur->result_cb != NULL) {
            c->cur->result_cb(c->cur->arg, r);
        }
        break;
    default:
        if (c->status == 0) {
            pgc_result_error(c, r);
        }
        break;
    }
}

/* Read what arrived and hand over every complete result. */
static void pgc_input(struct pg_conn *c)
{
    PGnotify *n;

    if (!PQconsumeInput(c->conn)) {
        pgc_down_conn(c, "connection lost");
        return;
    }
    while (c->conn != NULL && c->cur != NULL && !PQisBusy(c->conn)) {
        PGresult *r = PQgetResult(c->conn);

        if (r == NULL) {
            pgc_complete(c); /* may send the next query, or go down */
            continue;
        }
        pgc_result(c, r);
        PQclear(r);
    }
    if (c->conn == NULL) {
        return;
    }
    while ((n = PQnotifies(c->conn)) != NULL) {
        PQfreemem(n);
    }
    if (PQstatus(c->conn) == CONNECTION_BAD) {
        pgc_down_conn(c, "connection lost");
    }
}

/* ------------------------------------------------------------------------
 * Connecting.
 */

static void pgc_connect_step(struct pg_conn *c)
{
    switch (PQconnectPoll(c->conn)) {
    case PGRES_POLLING_READING:
        if (pgc_watch(c, UV_READABLE) != 0) {
            pgc_down_conn(c, "cannot watch the socket");
        }
        break;
    case PGRES_POLLING_WRITING:
        if (pgc_watch(c, UV_WRITABLE) != 0) {
            pgc_down_conn(c, "cannot watch the socket");
        }
        break;
    case PGRES_POLLING_OK:
        if (PQsetnonblocking(c->conn, 1) != 0) {
            pgc_down_conn(c, "cannot make the connection nonblocking");
            break;
        }
        c->pid = PQbackendPID(c->conn);
        snprintf(c->version, sizeof(c->version), "%s",
                 PQparameterStatus(c->conn, "server_version")
                     ? PQparameterStatus(c->conn, "server_version")
                     : "");
        c->state = PGC_SETUP;
        c->cur = &c->setup;
        pgc_send(c);
        break;
    default:
        pgc_down_conn(c, "cannot connect");
        break;
    }
}

static void pgc_on_poll(uv_poll_t *h, int status, int events)
{
    struct pgc_poll *p = h->data;
    struct pg_conn *c = p->c;

    (void)status; /* libpq finds the error itself when it reads */
    if (p != c->poll || c->conn == NULL) {
        return;
    }
    c->refs++;
    if (c->state == PGC_CONNECTING) {
        pgc_connect_step(c);
    } else if (c->state == PGC_SETUP || c->state == PGC_READY) {
        if ((events & UV_WRITABLE) && c->cur != NULL && pgc_flush(c) != 0) {
            pgc_unref(c);
            return;
        }
        pgc_input(c);
    }
    pgc_unref(c);
}

/* Start libpq's connection, to h's addresses when names were resolved. */
static void pgc_start_libpq(struct pg_conn *c, const struct pg_dsn_hosts *h)
{
    const char *keys[PG_DSN_PARAMS_MAX + 1], *vals[PG_DSN_PARAMS_MAX + 1];

    pg_dsn_params(c->o.dsn, h, keys, vals);
    c->conn = PQconnectStartParams(keys, vals, 0);
    if (c->conn == NULL) {
        pgc_down(c, VIGIL_ENOMEM, "cannot connect: out of memory");
        return;
    }
    PQsetNoticeProcessor(c->conn, pgc_notice, c);
    if (PQstatus(c->conn) == CONNECTION_BAD) {
        pgc_down_conn(c, "cannot connect");
        return;
    }
    c->state = PGC_CONNECTING;
    /* As if PQconnectPoll had asked for writability (libpq's docs). */
    if (pgc_watch(c, UV_WRITABLE) != 0) {
        pgc_down_conn(c, "cannot watch the socket");
    }
}

static void pgc_resolve_work(void *arg)
{
    struct pgc_resolve *j = arg;

    j->rc = pg_dsn_resolve(j->hosts, j->ports, &j->out, j->err, sizeof(j->err));
}

static void pgc_resolve_after(void *arg, int status)
{
    struct pgc_resolve *j = arg;
    struct pg_conn *c = j->c;

    if (!c->destroyed && c->state == PGC_RESOLVING && j->gen == c->gen) {
        if (status != 0) {
            pgc_down(c, VIGIL_ECANCELED, "name lookup canceled");
        } else if (j->rc != 0) {
            pgc_down(c, VIGIL_EIO, j->err);
        } else {
            pgc_start_libpq(c, &j->out);
        }
    }
    free(j);
    pgc_unref(c);
}

static void pgc_attempt(struct pg_conn *c)
{
    struct pgc_resolve *j;

    c->gen++;
    pgc_timer_start(c, PGC_T_CONNECT, c->o.connect_timeout_ms);
    if (!c->o.dsn->need_resolve) {
        pgc_start_libpq(c, NULL);
        return;
    }
    j = calloc(1, sizeof(*j));
    if (j == NULL) {
        pgc_down(c, VIGIL_ENOMEM, "cannot connect: out of memory");
        return;
    }
    j->c = c;
    j->gen = c->gen;
    snprintf(j->hosts, sizeof(j->hosts), "%s", c->o.dsn->hosts);
    snprintf(j->ports, sizeof(j->ports), "%s", c->o.dsn->ports);
    c->state = PGC_RESOLVING;
    if (c->host->work(c->inst, pgc_resolve_work, pgc_resolve_after, j) != 0) {
        free(j);
        pgc_down(c, VIGIL_EIO, "cannot start the name lookup");
        return;
    }
    c->refs++;
}

/* ------------------------------------------------------------------------
 * Cancel on the thread pool.
 */

static void pgc_cancel_work(void *arg)
{
    struct pgc_cancel *j = arg;

    j->ok = PQcancel(j->pc, j->err, (int)sizeof(j->err));
}

static void pgc_cancel_after(void *arg, int status)
{
    struct pgc_cancel *j = arg;
    struct pg_conn *c = j->c;

    if (!c->destroyed && status == 0 && !j->ok) {
        char line[256];

        pg_oneline(line, sizeof(line), j->err);
        c->host->log(c->inst, VIGIL_LOG_WARN,
                     "%s connection: the cancel request failed: %s", c->o.what,
                     line);
    }
    PQfreeCancel(j->pc);
    free(j);
    pgc_unref(c);
}

/* Ask the server to stop the running query. PQgetCancel only copies the
 * connection's address and key; PQcancel connects, so it goes to the
 * pool. */
static void pgc_cancel_running(struct pg_conn *c)
{
    struct pgc_cancel *j = calloc(1, sizeof(*j));

    if (j == NULL || (j->pc = PQgetCancel(c->conn)) == NULL) {
        free(j);
        return; /* the client-side deadline still bounds it */
    }
    j->c = c;
    if (c->host->work(c->inst, pgc_cancel_work, pgc_cancel_after, j) != 0) {
        PQfreeCancel(j->pc);
        free(j);
        return;
    }
    c->refs++;
}

/* ------------------------------------------------------------------------
 * The API.
 */

static void pgc_timer_closed(uv_handle_t *h)
{
    pgc_unref(h->data);
}

int pg_conn_create(const struct vigil_host *host, vigil_instance *inst,
                   const struct pg_conn_opts *opts, pg_conn_state_cb state_cb,
                   void *arg, struct pg_conn **out)
{
    struct pg_conn *c = calloc(1, sizeof(*c));

    *out = NULL;
    if (c == NULL) {
        return VIGIL_ENOMEM;
    }
    c->host = host;
    c->inst = inst;
    c->o = *opts;
    c->state_cb = state_cb;
    c->arg = arg;
    c->backoff_ms = opts->backoff_min_ms;
    c->setup.sql = opts->setup_sql;
    uv_timer_init(host->loop(inst), &c->timer);
    c->timer.data = c;
    c->refs = 1; /* the timer */
    *out = c;
    return 0;
}

void pg_conn_start(struct pg_conn *c)
{
    if (c->o.persistent && c->state == PGC_IDLE) {
        pgc_attempt(c);
    }
}

int pg_conn_submit(struct pg_conn *c, struct pg_conn_query *q)
{
    if (c->state == PGC_CLOSED || (c->o.persistent && !pg_conn_usable(c))) {
        return VIGIL_ESTATE;
    }
    q->next = NULL;
    if (c->tail != NULL) {
        c->tail->next = q;
    } else {
        c->head = q;
    }
    c->tail = q;
    if (c->state == PGC_READY && c->cur == NULL) {
        pgc_send_next(c);
    } else if (c->state == PGC_IDLE) {
        pgc_attempt(c);
    }
    return 0;
}

void pg_conn_abandon(struct pg_conn *c, struct pg_conn_query *q)
{
    struct pg_conn_query **pp;

    if (q == c->cur) {
        c->cur = &c->dropped; /* its results are read and discarded */
        pgc_cancel_running(c);
        return;
    }
    for (pp = &c->head; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == q) {
            *pp = q->next;
            if (c->tail == q) {
                c->tail = NULL;
                for (struct pg_conn_query *t = c->head; t; t = t->next) {
                    c->tail = t;
                }
            }
            return;
        }
    }
}

int pg_conn_usable(const struct pg_conn *c)
{
    switch (c->state) {
    case PGC_RESOLVING:
    case PGC_CONNECTING:
    case PGC_SETUP:
    case PGC_READY:
        return 1;
    case PGC_IDLE:
        return !c->o.persistent;
    default:
        return 0;
    }
}

int pg_conn_ready(const struct pg_conn *c)
{
    return c->state == PGC_READY;
}

int pg_conn_backend_pid(const struct pg_conn *c)
{
    return c->pid;
}

const char *pg_conn_server_version(const struct pg_conn *c)
{
    return c->version;
}

const char *pg_conn_error(const struct pg_conn *c)
{
    return c->err;
}

uint64_t pg_conn_reconnects(const struct pg_conn *c)
{
    return c->connects > 0 ? c->connects - 1 : 0;
}

void pg_conn_close(struct pg_conn *c)
{
    if (c == NULL || c->state == PGC_CLOSED) {
        return;
    }
    c->state = PGC_CLOSED;
    pgc_drop(c);
    c->refs++; /* the callbacks below may destroy c */
    pgc_fail_all(c, VIGIL_ECANCELED, "vigil is stopping");
    uv_close((uv_handle_t *)&c->timer, pgc_timer_closed);
    pgc_unref(c);
}

void pg_conn_destroy(struct pg_conn *c)
{
    if (c == NULL) {
        return;
    }
    pg_conn_close(c);
    c->destroyed = 1;
    c->refs++;
    pgc_unref(c);
}
