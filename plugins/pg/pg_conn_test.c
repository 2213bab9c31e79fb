/*
 * pg_conn_test.c - the pg plugin's asynchronous connection (pg_conn.c) on
 * a real libuv loop against the real server of the "pg" CTest fixture
 * ($VIGIL_TEST_PG, tests/pg/run.sh), with a host table of the test's own:
 * queries in order, a server error, a query abandoned while it runs
 * (PQcancel on the thread pool: the server stops it), the client-side
 * deadline, a connection refused, close with queries queued, and every
 * handle closed at the end (uv_loop_close() == 0). It also measures how
 * long the loop was busy in one iteration while queries run back to
 * back: the "never block the loop" promise, in numbers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <uv.h>

#include "pg_conn.h"

static uv_loop_t loop;
static struct pg_dsn dsn;

static int64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ------------------------------------------------------------------------
 * The host: what pg_conn uses (loop, log, work).
 */

static struct uv_loop_s *h_loop(vigil_instance *inst)
{
    (void)inst;
    return &loop;
}

static void h_log(vigil_instance *inst, int level, const char *fmt, ...)
{
    va_list ap;

    (void)inst;
    va_start(ap, fmt);
    fprintf(stderr, "log %d: ", level);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

struct h_work {
    uv_work_t req;
    vigil_work_cb work;
    vigil_after_work_cb after;
    void *arg;
};

static void h_work_run(uv_work_t *req)
{
    struct h_work *w = req->data;

    w->work(w->arg);
}

static void h_work_after(uv_work_t *req, int status)
{
    struct h_work *w = req->data;

    w->after(w->arg, status == UV_ECANCELED ? VIGIL_ECANCELED : 0);
    free(w);
}

static int h_work(vigil_instance *inst, vigil_work_cb work,
                  vigil_after_work_cb after, void *arg)
{
    struct h_work *w = calloc(1, sizeof(*w));

    (void)inst;
    if (w == NULL) {
        return VIGIL_ENOMEM;
    }
    w->req.data = w;
    w->work = work;
    w->after = after;
    w->arg = arg;
    return uv_queue_work(&loop, &w->req, h_work_run, h_work_after) == 0
               ? 0
               : VIGIL_EIO;
}

static const struct vigil_host host = {
    .abi_version = VIGIL_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct vigil_host),
    .log = h_log,
    .loop = h_loop,
    .work = h_work,
};

/* ------------------------------------------------------------------------
 * Queries and their outcome.
 */

struct q {
    struct pg_conn_query q;
    int done, status, rows;
    char first[64], msg[PG_CONN_ERR_MAX];
    int64_t done_ns;
    int *order, *norder, id;
};

static void q_result(void *arg, const PGresult *r)
{
    struct q *q = arg;

    if (q->rows == 0 && PQntuples(r) > 0) {
        snprintf(q->first, sizeof(q->first), "%s", PQgetvalue(r, 0, 0));
    }
    q->rows += PQntuples(r);
}

static void q_done(void *arg, int status, const char *msg)
{
    struct q *q = arg;

    q->done++;
    q->status = status;
    q->done_ns = mono_ns();
    snprintf(q->msg, sizeof(q->msg), "%s", msg);
    if (q->order != NULL) {
        q->order[(*q->norder)++] = q->id;
    }
}

static void q_init(struct q *q, const char *sql)
{
    memset(q, 0, sizeof(*q));
    q->q.sql = sql;
    q->q.result_cb = q_result;
    q->q.done_cb = q_done;
    q->q.arg = q;
}

/* Run the loop until *flag is set or ms pass; 1 when it was set. */
static int run_until(const int *flag, int64_t ms)
{
    int64_t end = mono_ns() + ms * 1000000;

    while (!*flag && mono_ns() < end) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    return *flag != 0;
}

static struct pg_conn *conn_new(int persistent, int64_t query_timeout_ms,
                                const char *setup)
{
    struct pg_conn_opts o = {
        .dsn = &dsn,
        .setup_sql = setup,
        .connect_timeout_ms = 5000,
        .query_timeout_ms = query_timeout_ms,
        .persistent = persistent,
        .backoff_min_ms = 100,
        .backoff_max_ms = 1000,
        .idle_close_ms = 60000,
        .what = "test",
    };
    struct pg_conn *c = NULL;

    assert_int_equal(pg_conn_create(&host, NULL, &o, NULL, NULL, &c), 0);
    return c;
}

/* Close, destroy and let the loop finish every handle and job. */
static void conn_end(struct pg_conn *c)
{
    pg_conn_close(c);
    pg_conn_destroy(c);
    uv_run(&loop, UV_RUN_DEFAULT);
}

/* ------------------------------------------------------------------------
 * Tests.
 */

static void queries_in_order(void **state)
{
    struct pg_conn *c = conn_new(0, 5000, "SET statement_timeout = 5000");
    struct q a, b, e, last;
    int order[4], n = 0;

    (void)state;
    q_init(&a, "SELECT 41 + 1");
    q_init(&b, "SELECT g FROM generate_series(1, 1000) g");
    q_init(&e, "SELECT * FROM no_such_table");
    q_init(&last, "SELECT current_setting('statement_timeout')");
    a.order = b.order = e.order = last.order = order;
    a.norder = b.norder = e.norder = last.norder = &n;
    a.id = 1, b.id = 2, e.id = 3, last.id = 4;
    assert_int_equal(pg_conn_submit(c, &a.q), 0);
    assert_int_equal(pg_conn_submit(c, &b.q), 0);
    assert_int_equal(pg_conn_submit(c, &e.q), 0);
    assert_int_equal(pg_conn_submit(c, &last.q), 0);
    assert_true(run_until(&last.done, 10000));
    assert_int_equal(a.status, 0);
    assert_string_equal(a.first, "42");
    assert_int_equal(b.rows, 1000);
    assert_int_equal(e.status, VIGIL_EIO);
    assert_non_null(strstr(e.msg, "42P01")); /* undefined_table */
    assert_int_equal(last.status, 0);        /* still usable */
    assert_string_equal(last.first, "5s");   /* the setup SQL ran */
    assert_int_equal(n, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(order[i], i + 1);
    }
    assert_true(pg_conn_ready(c));
    assert_true(pg_conn_backend_pid(c) > 0);
    conn_end(c);
}

/* Wait until the server runs `sql` on c's session (seen from another). */
static void wait_running(struct pg_conn *c, const char *sql)
{
    struct pg_conn *watch = conn_new(0, 5000, "SELECT 1");
    char pid[16];
    const char *params[2] = {pid, sql};
    struct q q;

    while (pg_conn_backend_pid(c) == 0) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    snprintf(pid, sizeof(pid), "%d", pg_conn_backend_pid(c));
    do {
        q_init(&q, "SELECT 1 FROM pg_stat_activity WHERE pid = $1::int"
                   " AND state = 'active' AND query = $2");
        q.q.nparams = 2;
        q.q.params = params;
        assert_int_equal(pg_conn_submit(watch, &q.q), 0);
        assert_true(run_until(&q.done, 10000));
        assert_int_equal(q.status, 0);
    } while (q.rows == 0);
    /* Its handles close as the loop goes on: c's must not be waited for
     * here. */
    pg_conn_close(watch);
    pg_conn_destroy(watch);
}

/* Abandoned while it runs: no callback, and the server stops it (the
 * next query does not wait the 30 s out). */
static void abandon_cancels_on_server(void **state)
{
    struct pg_conn *c = conn_new(0, 60000, "SET statement_timeout = 0");
    struct q slow, next;
    int64_t t0;

    (void)state;
    q_init(&slow, "SELECT pg_sleep(30)");
    q_init(&next, "SELECT 1");
    assert_int_equal(pg_conn_submit(c, &slow.q), 0);
    wait_running(c, "SELECT pg_sleep(30)");
    pg_conn_abandon(c, &slow.q);
    t0 = mono_ns();
    assert_int_equal(pg_conn_submit(c, &next.q), 0);
    assert_true(run_until(&next.done, 10000));
    assert_int_equal(next.status, 0);
    assert_true(mono_ns() - t0 < 5000 * 1000000LL);
    assert_int_equal(slow.done, 0);
    conn_end(c);
}

/* A server that keeps quiet past the client's deadline: the query fails
 * with VIGIL_ETIMEDOUT, the connection is dropped, and the next query
 * gets a new one. */
static void client_deadline(void **state)
{
    struct pg_conn *c = conn_new(0, 300, "SET statement_timeout = 0");
    struct q slow, next;
    int64_t t0 = mono_ns();
    int pid;

    (void)state;
    q_init(&slow, "SELECT pg_sleep(5)");
    q_init(&next, "SELECT pg_backend_pid()");
    assert_int_equal(pg_conn_submit(c, &slow.q), 0);
    assert_true(run_until(&slow.done, 10000));
    assert_int_equal(slow.status, VIGIL_ETIMEDOUT);
    assert_true(slow.done_ns - t0 < 3000 * 1000000LL);
    assert_non_null(strstr(slow.msg, "within 300 ms"));
    assert_false(pg_conn_ready(c));
    pid = pg_conn_backend_pid(c);
    assert_int_equal(pid, 0);
    assert_int_equal(pg_conn_submit(c, &next.q), 0);
    assert_true(run_until(&next.done, 10000));
    assert_int_equal(next.status, 0);
    conn_end(c);
}

static void refused_and_closed(void **state)
{
    struct pg_dsn bad;
    char err[256];
    struct pg_conn_opts o = {.dsn = &bad,
                             .setup_sql = "SELECT 1",
                             .connect_timeout_ms = 5000,
                             .query_timeout_ms = 1000,
                             .idle_close_ms = 1000,
                             .what = "test"};
    struct pg_conn *c;
    struct q a, b;

    (void)state;
    /* Port 1 on loopback: nothing listens there. */
    assert_int_equal(
        pg_dsn_parse(&bad, "host=127.0.0.1 port=1 user=x", err, sizeof(err)),
        0);
    assert_int_equal(pg_conn_create(&host, NULL, &o, NULL, NULL, &c), 0);
    q_init(&a, "SELECT 1");
    q_init(&b, "SELECT 2");
    assert_int_equal(pg_conn_submit(c, &a.q), 0);
    assert_int_equal(pg_conn_submit(c, &b.q), 0);
    assert_true(run_until(&b.done, 10000));
    assert_int_equal(a.status, VIGIL_EIO);
    assert_int_equal(b.status, VIGIL_EIO);
    assert_non_null(strstr(a.msg, "cannot connect"));
    assert_non_null(strstr(pg_conn_error(c), "cannot connect"));
    conn_end(c);
    pg_dsn_fini(&bad);

    /* Closing with queries queued completes them, canceled. */
    c = conn_new(0, 5000, "SELECT 1");
    q_init(&a, "SELECT pg_sleep(1)");
    q_init(&b, "SELECT 2");
    assert_int_equal(pg_conn_submit(c, &a.q), 0);
    assert_int_equal(pg_conn_submit(c, &b.q), 0);
    pg_conn_close(c);
    assert_int_equal(a.status, VIGIL_ECANCELED);
    assert_int_equal(b.status, VIGIL_ECANCELED);
    assert_int_equal(pg_conn_submit(c, &a.q), VIGIL_ESTATE);
    pg_conn_destroy(c);
    uv_run(&loop, UV_RUN_DEFAULT);
}

/* Busy time of the loop's iterations while queries run back to back. */
static uint64_t busy_max_ns, iter_last_ns, idle_last_ns;

static void on_check(uv_check_t *h)
{
    uint64_t now = uv_hrtime(), idle = uv_metrics_idle_time(h->loop);

    if (iter_last_ns != 0) {
        uint64_t busy = (now - iter_last_ns) - (idle - idle_last_ns);

        busy_max_ns = busy > busy_max_ns ? busy : busy_max_ns;
    }
    iter_last_ns = now;
    idle_last_ns = idle;
}

struct chain {
    struct q q;
    struct pg_conn *c;
    int left, finished;
};

static void chain_done(void *arg, int status, const char *msg)
{
    struct chain *ch = arg;

    (void)msg;
    assert_int_equal(status, 0);
    if (--ch->left == 0) {
        ch->finished = 1;
        return;
    }
    assert_int_equal(pg_conn_submit(ch->c, &ch->q.q), 0);
}

static void loop_stays_free(void **state)
{
    struct pg_conn *c = conn_new(1, 5000, "SET statement_timeout = 5000");
    struct chain ch = {.c = c, .left = 2000};
    uv_check_t check;
    int64_t t0;

    (void)state;
    /* From the connect on: DNS-free, nonblocking, the setup SQL. */
    uv_check_init(&loop, &check);
    uv_check_start(&check, on_check);
    pg_conn_start(c);
    while (!pg_conn_ready(c)) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    fprintf(stderr, "connect: the loop's busiest iteration: %.3f ms\n",
            (double)busy_max_ns / 1e6);
    q_init(&ch.q, "SELECT $1::int + 1");
    {
        static const char *const one[] = {"1"};
        ch.q.q.nparams = 1;
        ch.q.q.params = one;
    }
    ch.q.q.done_cb = chain_done;
    ch.q.q.arg = &ch;
    t0 = mono_ns();
    assert_int_equal(pg_conn_submit(c, &ch.q.q), 0);
    assert_true(run_until(&ch.finished, 60000));
    /* A generous bound for a loaded machine or a sanitizer build; the
     * figure printed is the measure. */
    assert_true(busy_max_ns < 20 * 1000000ULL);
    fprintf(stderr,
            "2000 queries back to back: %.0f queries/s; the loop's busiest "
            "iteration: %.3f ms\n",
            2000.0 / ((double)(mono_ns() - t0) / 1e9),
            (double)busy_max_ns / 1e6);
    uv_close((uv_handle_t *)&check, NULL);
    assert_true(pg_conn_reconnects(c) == 0);
    conn_end(c);
}

static int setup(void **state)
{
    const char *uri = getenv("VIGIL_TEST_PG");
    char err[256];

    (void)state;
    if (uri == NULL) {
        fprintf(stderr, "VIGIL_TEST_PG is not set: run through ctest "
                        "(the \"pg\" fixture)\n");
        return -1;
    }
    if (pg_dsn_parse(&dsn, uri, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    uv_loop_init(&loop);
    uv_loop_configure(&loop, UV_METRICS_IDLE_TIME);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    pg_dsn_fini(&dsn);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(queries_in_order),
        cmocka_unit_test(abandon_cancels_on_server),
        cmocka_unit_test(client_deadline),
        cmocka_unit_test(refused_and_closed),
        cmocka_unit_test(loop_stays_free),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
