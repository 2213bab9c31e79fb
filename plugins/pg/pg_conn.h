/*
 * pg_conn - one libpq connection, fully asynchronous on the core's libuv
 * loop, with a FIFO of queries.
 *
 * Connecting: host names are resolved on the thread pool first (see
 * pg_dsn.h), then PQconnectStartParams and PQconnectPoll driven by a
 * uv_poll on PQsocket() (re-created when the socket changes between
 * steps), under a uv_timer deadline since the asynchronous path ignores
 * connect_timeout. Once connected the socket is nonblocking and always
 * watched for reading, so a server that goes away is noticed at once;
 * then the session's setup SQL runs (statement_timeout...) before the
 * first query.
 *
 * Queries: one in flight at a time (PQsendQuery for a multi-statement
 * batch without parameters, PQsendQueryParams otherwise), flushed as the
 * socket allows, each PGresult handed to the query's result_cb, and
 * done_cb called exactly once when the query is complete, failed or
 * dropped. Every query has a client-side deadline (the server's
 * statement_timeout normally fires first; this one catches a server or a
 * network that stopped answering): when it passes the connection is
 * dropped.
 *
 * A connection is either persistent (the collection's: reconnects after
 * a loss or a failed attempt, with a doubling backoff up to a cap) or on
 * demand (the diagnostics': connects when a query is submitted, closes
 * after being idle a while, never retries on its own). When it is lost,
 * or an attempt fails, the query in flight and the queued ones complete
 * with an error.
 *
 * A query the caller gives up on (pg_conn_abandon) gets no more callbacks;
 * if it was already running, the server is asked to cancel it with
 * PQcancel on the thread pool (PQcancel blocks: it opens a connection).
 *
 * Ownership: the caller owns every struct pg_conn_query (it must stay
 * valid, with its sql and params, until done_cb or pg_conn_abandon). The
 * connection is freed by pg_conn_destroy() once its handles are closed
 * and no thread-pool job refers to it; nothing here blocks the loop.
 */
#ifndef VIGIL_PG_CONN_H
#define VIGIL_PG_CONN_H

#include <stdint.h>

#include <libpq-fe.h>
#include <vigil/plugin.h>

#include "pg_dsn.h"

#define PG_CONN_ERR_MAX 512

struct pg_conn;

struct pg_conn_query {
    const char *sql; /* borrowed until done */
    int nparams;
    const char *const *params; /* text parameters, borrowed until done */
    /* Each result (PGRES_TUPLES_OK or COMMAND_OK) in order; optional.
     * r is valid during the call only. */
    void (*result_cb)(void *arg, const PGresult *r);
    /* Once: status 0, or VIGIL_EIO (the server refused the query, or the
     * connection failed), VIGIL_ETIMEDOUT, VIGIL_ECANCELED (stopping);
     * msg says why ("" when status is 0). May submit new queries. */
    void (*done_cb)(void *arg, int status, const char *msg);
    void *arg;
    /* pg_conn's own */
    struct pg_conn_query *next;
};

struct pg_conn_opts {
    const struct pg_dsn *dsn; /* borrowed for the connection's life */
    const char *setup_sql;    /* run after each connect; borrowed */
    int64_t connect_timeout_ms;
    int64_t query_timeout_ms; /* client-side deadline of one query */
    int persistent;
    int64_t backoff_min_ms, backoff_max_ms; /* persistent */
    int64_t idle_close_ms;                  /* on demand */
    const char *what;                       /* "collection", for logs */
};

/* Told when the connection becomes usable (up = 1) and when it is lost or
 * an attempt failed (up = 0, msg says why). */
typedef void (*pg_conn_state_cb)(void *arg, int up, const char *msg);

/* Create (no I/O yet). Returns 0 or VIGIL_ENOMEM. */
int pg_conn_create(const struct vigil_host *host, vigil_instance *inst,
                   const struct pg_conn_opts *opts, pg_conn_state_cb state_cb,
                   void *arg, struct pg_conn **out);

/* Start connecting (persistent connections; an on-demand one connects on
 * its first query). Does not fail: failures are reported to state_cb. */
void pg_conn_start(struct pg_conn *c);

/* Queue q. It runs once the connection is ready; an on-demand connection
 * is opened for it. Returns 0, or VIGIL_ESTATE when the connection is
 * closed for good (stopping) or down between retries (persistent: the
 * caller should not wait for it). After 0, q's done_cb may already have
 * been called (a connection that could not even start): the caller must
 * not touch what the callback may have freed. */
int pg_conn_submit(struct pg_conn *c, struct pg_conn_query *q);

/* The caller gives q up: no callback will come. Does not fail. */
void pg_conn_abandon(struct pg_conn *c, struct pg_conn_query *q);

/* 1 when a query would be sent at once or after a connect already under
 * way; 0 when the connection is down and waiting to retry. */
int pg_conn_usable(const struct pg_conn *c);

/* 1 when connected and set up. */
int pg_conn_ready(const struct pg_conn *c);

/* The server's pid for this session, 0 when not connected. */
int pg_conn_backend_pid(const struct pg_conn *c);

/* The server's version string ("15.20"), "" when not connected. */
const char *pg_conn_server_version(const struct pg_conn *c);

/* The last connection error, "" when none. */
const char *pg_conn_error(const struct pg_conn *c);

/* Successful connects after the first. */
uint64_t pg_conn_reconnects(const struct pg_conn *c);

/* Close: queued and running queries complete with VIGIL_ECANCELED, the
 * handles are closed. Call from the plugin's stop(). */
void pg_conn_close(struct pg_conn *c);

/* Free once everything is closed (now or later). Accepts NULL. */
void pg_conn_destroy(struct pg_conn *c);

#endif
