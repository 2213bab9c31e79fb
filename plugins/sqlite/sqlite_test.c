/*
 * sqlite_test.c - the sqlite plugin's parts against real database files:
 * the `query` lines parser, the read guard, timed runs (rows, full-scan
 * steps, busy, timeout, cancel), plans with their hints, and that the
 * plugin's connection never writes (the file is byte-identical after it,
 * and a writer commits while it is open).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "sqlite.h"

static char tmpdir[64];
static atomic_int no_cancel;

/* ------------------------------------------------------------------------
 * Fixtures.
 */

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *err = NULL;

    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fail_msg("%s: %s", sql, err);
    }
}

/* A database of orders (20000 rows, indexed by symbol, not by status) in
 * the journal mode given; returns its path (static). */
static const char *make_db(const char *name, const char *mode)
{
    static char path[128];
    sqlite3 *db;
    char sql[128];

    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    unlink(path);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    snprintf(sql, sizeof(sql), "PRAGMA journal_mode=%s", mode);
    exec_ok(db, sql);
    exec_ok(db, "CREATE TABLE orders(id INTEGER PRIMARY KEY, symbol TEXT, "
                "status TEXT, qty INT, ts INT);"
                "CREATE INDEX orders_symbol ON orders(symbol);"
                "CREATE TABLE fills(id INTEGER PRIMARY KEY, order_id INT, "
                "px REAL);"
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM "
                "n WHERE i < 20000) INSERT INTO orders(symbol, status, qty, "
                "ts) SELECT 'S' || (i % 100), CASE WHEN i % 10 = 0 THEN "
                "'open' ELSE 'done' END, i % 7, i FROM n;"
                "INSERT INTO fills(order_id, px) SELECT id, 1.5 FROM orders "
                "WHERE id <= 100;");
    sqlite3_close(db);
    return path;
}

static void open_ro(struct sq_conn *c, const char *path, int64_t busy_ms)
{
    char msg[SQ_MSG_MAX] = "";

    if (sq_conn_open(c, path, &no_cancel, busy_ms, msg, sizeof(msg)) != SQ_OK) {
        fail_msg("open %s: %s", path, msg);
    }
}

/* Prepare and run sql once; returns the status, fills r. */
static int run_once(struct sq_conn *c, const char *sql, int64_t timeout_ms,
                    struct sq_run *r, char *msg, size_t size)
{
    sqlite3_stmt *st = NULL;
    int rc = sq_conn_prepare(c, sql, 0, &st, msg, size);

    if (rc == SQ_OK) {
        rc = sq_conn_run(c, st, timeout_ms, r, msg, size);
    }
    sqlite3_finalize(st);
    return rc;
}

/* ------------------------------------------------------------------------
 * The `query` lines.
 */

static void parse_lines(const char *const *v, size_t n, struct sq_query **q,
                        size_t *nq, int want_rc, const char *want_err)
{
    struct vigil_list l = {n, v};
    char err[SQ_MSG_MAX] = "";
    int rc = sq_queries_parse(&l, q, nq, err, sizeof(err));

    assert_int_equal(rc, want_rc);
    if (want_err != NULL && strstr(err, want_err) == NULL) {
        fail_msg("error '%s' does not say '%s'", err, want_err);
    }
}

static void test_queries_parse(void **state)
{
    static const char *const good[] = {
        "open_orders: SELECT count(*) FROM orders WHERE status = 'open'",
        "recent.fills-1:",
        "SELECT symbol, sum(qty) FROM orders",
        "   WHERE ts > 5 GROUP BY symbol",
        "size: PRAGMA page_count",
    };
    struct sq_query *q;
    size_t n;

    (void)state;
    parse_lines(good, 5, &q, &n, 0, NULL);
    assert_int_equal(n, 3);
    assert_string_equal(q[0].name, "open_orders");
    assert_string_equal(q[0].sql,
                        "SELECT count(*) FROM orders WHERE status = 'open'");
    assert_string_equal(q[1].name, "recent.fills-1");
    assert_string_equal(q[1].sql, "SELECT symbol, sum(qty) FROM orders\n"
                                  "WHERE ts > 5 GROUP BY symbol");
    assert_string_equal(q[2].sql, "PRAGMA page_count");
    sq_queries_free(q, n);

    parse_lines(NULL, 0, &q, &n, 0, NULL);
    assert_int_equal(n, 0);
    assert_null(q);
}

static void test_queries_parse_errors(void **state)
{
    static const char *const noname[] = {"SELECT 1"};
    static const char *const colon[] = {"a:b SELECT 1"};
    static const char *const dup[] = {"a: SELECT 1", "a: SELECT 2"};
    static const char *const del[] = {"purge: DELETE FROM orders"};
    static const char *const comment[] = {"x: /* hi */ -- no\n",
                                          "  DROP TABLE orders"};
    static const char *const empty[] = {"a:", "b: SELECT 1"};
    char longname[SQ_NAME_MAX + 16];
    const char *const toolong[] = {longname};
    struct sq_query *q = NULL;
    size_t n = 0;

    (void)state;
    parse_lines(noname, 1, &q, &n, VIGIL_ECONFIG, "expected 'NAME: SELECT");
    parse_lines(colon, 1, &q, &n, VIGIL_ECONFIG, "expected 'NAME:");
    parse_lines(dup, 2, &q, &n, VIGIL_ECONFIG, "query 'a' is defined twice");
    parse_lines(del, 1, &q, &n, VIGIL_ECONFIG,
                "query 'purge': only reads are run");
    parse_lines(comment, 2, &q, &n, VIGIL_ECONFIG, "not 'DROP'");
    parse_lines(empty, 2, &q, &n, VIGIL_ECONFIG, "query 'a': no SQL");
    memset(longname, 'x', SQ_NAME_MAX + 1);
    snprintf(longname + SQ_NAME_MAX + 1, 8, ": S");
    parse_lines(toolong, 1, &q, &n, VIGIL_ECONFIG, "longer than 64");
    assert_null(q);
}

/* ------------------------------------------------------------------------
 * Plan details.
 */

static void test_plan_classify(void **state)
{
    static const struct {
        const char *detail;
        int kind;
        const char *name, *index, *columns;
    } cases[] = {
        {"SCAN orders", SQ_PLAN_FULL_SCAN, "orders", "", ""},
        {"SCAN TABLE orders", SQ_PLAN_FULL_SCAN, "orders", "", ""},
        {"SCAN TABLE orders AS o", SQ_PLAN_FULL_SCAN, "o", "", ""},
        {"SCAN o", SQ_PLAN_FULL_SCAN, "o", "", ""},
        {"SCAN orders USING COVERING INDEX orders_symbol", SQ_PLAN_INDEX_SCAN,
         "orders", "orders_symbol", ""},
        {"SEARCH orders USING INDEX orders_symbol (symbol=?)", SQ_PLAN_SEARCH,
         "orders", "orders_symbol", ""},
        {"SEARCH orders USING INTEGER PRIMARY KEY (rowid=?)", SQ_PLAN_SEARCH,
         "orders", "", ""},
        {"SEARCH f USING AUTOMATIC COVERING INDEX (order_id=? AND px>?)",
         SQ_PLAN_AUTO_INDEX, "f", "", "order_id,px"},
        {"SCAN CONSTANT ROW", SQ_PLAN_SCAN_OTHER, "", "", ""},
        {"SCAN (subquery-1)", SQ_PLAN_SCAN_OTHER, "", "", ""},
        {"SCAN pragma_table_info VIRTUAL TABLE INDEX 0:", SQ_PLAN_SCAN_OTHER,
         "pragma_table_info", "", ""},
        {"USE TEMP B-TREE FOR ORDER BY", SQ_PLAN_TEMP_BTREE, "", "", ""},
        {"CO-ROUTINE (subquery-1)", SQ_PLAN_OTHER, "", "", ""},
        {"SCAN \"odd name\"", SQ_PLAN_FULL_SCAN, "odd name", "", ""},
        {"", SQ_PLAN_OTHER, "", "", ""},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sq_plan_detail d;

        sq_plan_classify(cases[i].detail, &d);
        if (d.kind != cases[i].kind || strcmp(d.name, cases[i].name) ||
            strcmp(d.index, cases[i].index) ||
            strcmp(d.columns, cases[i].columns)) {
            fail_msg("'%s': kind %d name '%s' index '%s' columns '%s'",
                     cases[i].detail, d.kind, d.name, d.index, d.columns);
        }
    }
}

static void test_plan_resolve(void **state)
{
    static const struct sq_read reads[] = {{"orders", "status"},
                                           {"fills", "px"}};
    char t[64];

    (void)state;
    assert_true(sq_plan_resolve("select 1", reads, 2, "orders", t, 64));
    assert_string_equal(t, "orders");
    assert_true(sq_plan_resolve("SELECT * FROM Orders o JOIN fills AS f", reads,
                                2, "f", t, 64));
    assert_string_equal(t, "fills");
    assert_true(
        sq_plan_resolve("select * from \"orders\"\n\tx", reads, 2, "x", t, 64));
    assert_string_equal(t, "orders");
    /* A CTE or a subquery's name is no table. */
    assert_false(sq_plan_resolve("WITH x AS (SELECT * FROM orders) SELECT * "
                                 "FROM x",
                                 reads, 2, "x", t, 64));
    /* "myorders o" is not "orders o". */
    assert_false(
        sq_plan_resolve("select * from myorders o", reads, 2, "o", t, 64));
}

/* ------------------------------------------------------------------------
 * The read guard.
 */

static void test_guard(void **state)
{
    static const char *const refused[] = {
        "DELETE FROM orders",
        "WITH x AS (SELECT 1) DELETE FROM orders WHERE id IN x",
        "UPDATE orders SET qty = 0",
        "BEGIN",
        "ATTACH 'other.db' AS o",
        "PRAGMA query_only = 0",
        "PRAGMA journal_mode = DELETE",
        "PRAGMA journal_mode",
        "CREATE TEMP TABLE t(a)",
        "SELECT 1; DELETE FROM orders",
        "SELECT 1; SELECT 2",
        "  -- only a comment",
        "SAVEPOINT a",
    };
    static const char *const accepted[] = {
        "SELECT count(*) FROM orders",
        "WITH o AS (SELECT * FROM orders) SELECT count(*) FROM o;",
        "VALUES (1)",
        "PRAGMA page_count",
        "PRAGMA table_info(orders)",
        "SELECT * FROM pragma_table_info('orders')",
        "SELECT 1; -- a trailing comment",
    };
    const char *path = make_db("guard.db", "delete");
    struct sq_conn c;
    char msg[SQ_MSG_MAX];
    struct sq_run r;
    size_t i;

    (void)state;
    open_ro(&c, path, 100);
    for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        msg[0] = '\0';
        if (run_once(&c, refused[i], 1000, &r, msg, sizeof(msg)) !=
            SQ_REFUSED) {
            fail_msg("'%s' was not refused (%s)", refused[i], msg);
        }
        assert_non_null(strstr(msg, "refused"));
    }
    for (i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
        msg[0] = '\0';
        if (run_once(&c, accepted[i], 1000, &r, msg, sizeof(msg)) != SQ_OK) {
            fail_msg("'%s' was refused: %s", accepted[i], msg);
        }
    }
    /* query_only still holds after all that. */
    assert_int_equal(
        run_once(&c, "PRAGMA query_only", 1000, &r, msg, sizeof(msg)), SQ_OK);
    sq_conn_close(&c);
}

/* ------------------------------------------------------------------------
 * Runs.
 */

static void test_run_rows_and_scans(void **state)
{
    const char *path = make_db("runs.db", "delete");
    struct sq_conn c;
    char msg[SQ_MSG_MAX];
    struct sq_run r;

    (void)state;
    open_ro(&c, path, 100);
    assert_int_equal(run_once(&c, "SELECT id FROM orders WHERE status = 'open'",
                              5000, &r, msg, sizeof(msg)),
                     SQ_OK);
    assert_int_equal(r.rows, 2000);
    assert_true(r.fullscan_steps >= 19999);
    assert_true(r.ms > 0.0);
    assert_int_equal(run_once(&c, "SELECT id FROM orders WHERE symbol = 'S7'",
                              5000, &r, msg, sizeof(msg)),
                     SQ_OK);
    assert_int_equal(r.rows, 200);
    assert_int_equal(r.fullscan_steps, 0);
    sq_conn_close(&c);
}

static void test_run_timeout_and_cancel(void **state)
{
    static const char *const endless =
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n) "
        "SELECT count(*) FROM n";
    const char *path = make_db("slow.db", "delete");
    atomic_int cancel;
    struct sq_conn c;
    char msg[SQ_MSG_MAX];
    struct sq_run r;

    (void)state;
    open_ro(&c, path, 100);
    assert_int_equal(run_once(&c, endless, 50, &r, msg, sizeof(msg)),
                     SQ_TIMEOUT);
    assert_true(r.ms >= 50.0 && r.ms < 1000.0);
    assert_non_null(strstr(msg, "after 50 ms"));
    /* Canceled before it starts: it stops at once. */
    atomic_init(&cancel, 1);
    c.cancel = &cancel;
    assert_int_equal(run_once(&c, endless, 0, &r, msg, sizeof(msg)),
                     SQ_CANCELED);
    sq_conn_close(&c);
}

/* An application holding locks: rollback mode blocks readers only under
 * an EXCLUSIVE lock (busy, within busy_timeout); WAL mode never does. */
static void test_busy(void **state)
{
    const char *modes[2] = {"delete", "wal"};
    int m;

    (void)state;
    for (m = 0; m < 2; m++) {
        char name[32];
        const char *path;
        sqlite3 *app;
        struct sq_conn c;
        char msg[SQ_MSG_MAX];
        struct sq_run r;
        int rc;

        snprintf(name, sizeof(name), "busy-%s.db", modes[m]);
        path = make_db(name, modes[m]);
        assert_int_equal(sqlite3_open(path, &app), SQLITE_OK);
        open_ro(&c, path, 30);
        exec_ok(app, "BEGIN IMMEDIATE; INSERT INTO fills(order_id) "
                     "VALUES (1)");
        assert_int_equal(run_once(&c, "SELECT count(*) FROM fills", 5000, &r,
                                  msg, sizeof(msg)),
                         SQ_OK);
        exec_ok(app, "COMMIT; BEGIN EXCLUSIVE; INSERT INTO fills(order_id) "
                     "VALUES (2)");
        rc = run_once(&c, "SELECT count(*) FROM fills", 5000, &r, msg,
                      sizeof(msg));
        assert_int_equal(rc, m == 0 ? SQ_BUSY : SQ_OK);
        exec_ok(app, "COMMIT");
        assert_int_equal(run_once(&c, "SELECT count(*) FROM fills", 5000, &r,
                                  msg, sizeof(msg)),
                         SQ_OK);
        /* Between runs the reader holds nothing: the writer commits
         * without waiting at all. */
        sqlite3_busy_timeout(app, 0);
        exec_ok(app, "BEGIN EXCLUSIVE; INSERT INTO fills(order_id) VALUES "
                     "(3); COMMIT");
        sq_conn_close(&c);
        sqlite3_close(app);
    }
}

static uint64_t file_hash(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint64_t h = 1469598103934665603ULL;
    int ch;

    assert_non_null(f);
    while ((ch = fgetc(f)) != EOF) {
        h = (h ^ (uint64_t)ch) * 1099511628211ULL;
    }
    fclose(f);
    return h;
}

static void test_never_writes(void **state)
{
    const char *path = make_db("ro.db", "delete");
    char journal[160];
    uint64_t before = file_hash(path);
    struct sq_conn c;
    char msg[SQ_MSG_MAX];
    json_t *o = json_object();
    struct sq_run r;
    int i;

    (void)state;
    open_ro(&c, path, 100);
    for (i = 0; i < 3; i++) {
        assert_int_equal(run_once(&c, "SELECT * FROM orders ORDER BY qty", 5000,
                                  &r, msg, sizeof(msg)),
                         SQ_OK);
    }
    assert_int_equal(sq_plan_json(&c, "SELECT * FROM orders WHERE qty = 3", o,
                                  msg, sizeof(msg)),
                     SQ_OK);
    sq_conn_close(&c);
    json_decref(o);
    snprintf(journal, sizeof(journal), "%s-journal", path);
    assert_int_equal(access(journal, F_OK), -1);
    assert_true(file_hash(path) == before);
}

/* ------------------------------------------------------------------------
 * Plans.
 */

static json_t *plan_of(struct sq_conn *c, const char *sql)
{
    char msg[SQ_MSG_MAX] = "";
    json_t *o = json_object();

    if (sq_plan_json(c, sql, o, msg, sizeof(msg)) != SQ_OK) {
        fail_msg("plan of '%s': %s", sql, msg);
    }
    return o;
}

static void assert_scans(json_t *o, const char *want)
{
    char *got = json_dumps(json_object_get(o, "full_scans"), JSON_COMPACT);

    if (strcmp(got, want) != 0) {
        char *all = json_dumps(o, JSON_COMPACT);

        fail_msg("full_scans %s, expected %s in %s", got, want, all);
    }
    free(got);
}

static const char *hint(json_t *o, size_t i)
{
    return json_string_value(json_array_get(json_object_get(o, "hints"), i));
}

static void test_plan(void **state)
{
    const char *path = make_db("plan.db", "wal");
    struct sq_conn c;
    char msg[SQ_MSG_MAX];
    json_t *o;

    (void)state;
    open_ro(&c, path, 100);
    o = plan_of(&c, "SELECT id FROM orders WHERE status = 'open'");
    assert_scans(o, "[\"orders\"]");
    assert_non_null(hint(o, 0));
    assert_non_null(strstr(hint(o, 0), "CREATE INDEX orders_status ON "
                                       "orders(status)"));
    assert_true(json_is_true(json_object_get(
        json_array_get(json_object_get(o, "plan"), 0), "full_scan")));
    json_decref(o);

    o = plan_of(&c, "SELECT id FROM orders WHERE symbol = 'S1'");
    assert_scans(o, "[]");
    assert_int_equal(json_array_size(json_object_get(o, "hints")), 0);
    json_decref(o);

    /* An alias still names the table. */
    o = plan_of(&c, "SELECT o.id FROM orders AS o WHERE o.qty = 3");
    assert_scans(o, "[\"orders\"]");
    assert_non_null(strstr(hint(o, 0), "orders_qty ON orders(qty)"));
    json_decref(o);

    /* Every row is wanted: no index would help, and the hint says so. */
    o = plan_of(&c, "SELECT sum(qty) FROM orders");
    assert_scans(o, "[\"orders\"]");
    assert_non_null(strstr(hint(o, 0), "no index on one of the columns"));
    json_decref(o);

    /* A scan of a subquery's rows is no table scan (the inner one is). */
    o = plan_of(&c, "SELECT * FROM (SELECT status, count(*) c FROM orders "
                    "GROUP BY status) WHERE c > 1");
    assert_scans(o, "[\"orders\"]");
    json_decref(o);

    /* A sort is noted. */
    o = plan_of(&c, "SELECT id FROM orders WHERE symbol = 'S1' ORDER BY qty");
    assert_scans(o, "[]");
    assert_non_null(strstr(hint(o, 0), "USE TEMP B-TREE FOR ORDER BY"));
    json_decref(o);

    /* Refused statements get no plan. */
    o = json_object();
    assert_int_equal(
        sq_plan_json(&c, "DELETE FROM orders", o, msg, sizeof(msg)),
        SQ_REFUSED);
    assert_null(json_object_get(o, "plan"));
    json_decref(o);
    sq_conn_close(&c);
}

static void test_open_errors(void **state)
{
    char path[128], msg[SQ_MSG_MAX];
    struct sq_conn c;

    (void)state;
    snprintf(path, sizeof(path), "%s/missing.db", tmpdir);
    assert_int_equal(sq_conn_open(&c, path, &no_cancel, 10, msg, sizeof(msg)),
                     SQ_ERROR);
    assert_non_null(strstr(msg, "No such file or directory"));
    assert_int_equal(sq_conn_open(&c, tmpdir, &no_cancel, 10, msg, sizeof(msg)),
                     SQ_ERROR);
    assert_non_null(strstr(msg, "not a regular file"));
    /* Not a database: opens (SQLite reads lazily), fails on first use. */
    snprintf(path, sizeof(path), "%s/junk.db", tmpdir);
    {
        FILE *f = fopen(path, "w");
        struct sq_run r;

        assert_non_null(f);
        fputs("this is not a database, just text that is long enough to "
              "fill a header of one hundred bytes or so.............",
              f);
        fclose(f);
        assert_int_equal(
            sq_conn_open(&c, path, &no_cancel, 10, msg, sizeof(msg)), SQ_OK);
        assert_int_equal(run_once(&c, "SELECT 1 FROM sqlite_schema", 1000, &r,
                                  msg, sizeof(msg)),
                         SQ_ERROR);
        assert_non_null(strstr(msg, "not a database"));
        sq_conn_close(&c);
    }
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/vigil-sqlite-XXXXXX");
    atomic_init(&no_cancel, 0);
    return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queries_parse),
        cmocka_unit_test(test_queries_parse_errors),
        cmocka_unit_test(test_plan_classify),
        cmocka_unit_test(test_plan_resolve),
        cmocka_unit_test(test_guard),
        cmocka_unit_test(test_run_rows_and_scans),
        cmocka_unit_test(test_run_timeout_and_cancel),
        cmocka_unit_test(test_busy),
        cmocka_unit_test(test_never_writes),
        cmocka_unit_test(test_plan),
        cmocka_unit_test(test_open_errors),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
