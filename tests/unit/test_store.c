/* Tests for store: tool-mode round trips of every record and read, the
 * daemon path on a real loop and bus (history, roll-ups and retention,
 * action callbacks after the commit, failing flushes, a full buffer),
 * interrupted actions, migrations and refusals, rows of two hosts in one
 * database.
 *
 * Both back ends run the same tests: SQLite always, PostgreSQL when
 * VIGIL_TEST_PG holds a server's URI (ctest's unit_test_store_pg starts a
 * server for it, tests/pg/start.sh). Each PostgreSQL test gets a database
 * of its own, created from that URI and dropped afterwards.
 *
 * The test opens its own connection to look at the database from the
 * outside (schema version, labels, injected failures): it tests the
 * store, so it may know the schema. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <sys/wait.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>
#include <uv.h>

#include "bus.h"
#include "clock.h"
#include "store.h"

#define S_NS 1000000000ll
#define MIN_NS (60 * S_NS)
#define WAIT_NS (20 * S_NS)

/* The PostgreSQL server (VIGIL_TEST_PG), or NULL: SQLite. */
static const char *pg_base;

struct fx {
    char dir[64];
    char path[512];
    char pgdb[64]; /* this test's database */
    uv_loop_t loop;
    struct bus *bus;
    struct store *st;
    uv_timer_t poll;
    int (*pred)(struct fx *);
    int64_t deadline;
    int timed_out;
    int loop_live;
    void *data;
};

/* Run one command on the server's administration database. */
static void pg_admin(const char *sql)
{
    ExecStatusType st;
    PGconn *c = PQconnectdb(pg_base);
    PGresult *r;

    if (PQstatus(c) != CONNECTION_OK) {
        fail_msg("%s: %s", pg_base, PQerrorMessage(c));
    }
    r = PQexec(c, sql);
    st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    }
    PQclear(r);
    PQfinish(c);
}

/* pg_base with another database: postgresql://user@host:port/DB?... */
static void pg_uri(char *out, size_t size, const char *db)
{
    const char *p = strstr(pg_base, "://");
    const char *slash, *query;

    assert_non_null(p);
    slash = strchr(p + 3, '/');
    query = strchr(p + 3, '?');
    if (slash == NULL || (query != NULL && query < slash)) {
        slash = query != NULL ? query : pg_base + strlen(pg_base);
    }
    snprintf(out, size, "%.*s/%s%s", (int)(slash - pg_base), pg_base, db,
             query != NULL ? query : "");
}

static int setup(void **state)
{
    static int n;
    struct fx *f = calloc(1, sizeof(*f));
    char sql[128];

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/vigil-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/vigil.db", f->dir);
    if (pg_base != NULL) {
        snprintf(f->pgdb, sizeof(f->pgdb), "vigil_test_%d_%d", (int)getpid(),
                 ++n);
        snprintf(sql, sizeof(sql), "CREATE DATABASE %s", f->pgdb);
        pg_admin(sql);
        pg_uri(f->path, sizeof(f->path), f->pgdb);
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    DIR *d = opendir(f->dir);
    struct dirent *e;
    char p[512];

    while (d != NULL && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            snprintf(p, sizeof(p), "%s/%s", f->dir, e->d_name);
            unlink(p);
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    rmdir(f->dir);
    if (f->pgdb[0] != '\0') {
        char sql[128];

        snprintf(sql, sizeof(sql), "DROP DATABASE %s WITH (FORCE)", f->pgdb);
        pg_admin(sql);
    }
    free(f);
    return 0;
}

/* ------------------------------------------------- looking from outside */

/* A query on this test's PostgreSQL database; the caller clears. */
static PGresult *pg_query(struct fx *f, const char *sql, ExecStatusType want)
{
    PGconn *c = PQconnectdb(f->path);
    PGresult *r;

    if (PQstatus(c) != CONNECTION_OK) {
        fail_msg("%s: %s", f->pgdb, PQerrorMessage(c));
    }
    r = PQexec(c, sql);
    if (PQresultStatus(r) != want) {
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    }
    PQfinish(c);
    return r;
}

static void sql_exec(struct fx *f, const char *sql)
{
    sqlite3 *db;

    if (pg_base != NULL) {
        PQclear(pg_query(f, sql, PGRES_COMMAND_OK));
        return;
    }
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    }
    sqlite3_close(db);
}

static void sql_text(struct fx *f, const char *sql, char *out, size_t size)
{
    sqlite3 *db;
    sqlite3_stmt *st;

    out[0] = '\0';
    if (pg_base != NULL) {
        PGresult *r = pg_query(f, sql, PGRES_TUPLES_OK);

        if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0)) {
            snprintf(out, size, "%s", PQgetvalue(r, 0, 0));
        }
        PQclear(r);
        return;
    }
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0)) {
        snprintf(out, size, "%s", (const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static int64_t sql_int(struct fx *f, const char *sql)
{
    char text[64];

    sql_text(f, sql, text, sizeof(text));
    return text[0] != '\0' ? strtoll(text, NULL, 10) : -1;
}

/* One statement or the other, by back end. */
static const char *by_be(const char *sqlite, const char *pg)
{
    return pg_base != NULL ? pg : sqlite;
}

/* ----------------------------------------------------------- the loop */

static void on_poll(uv_timer_t *t)
{
    struct fx *f = t->data;

    if (f->pred(f)) {
        uv_timer_stop(t);
        uv_stop(&f->loop);
    } else if (clock_mono_ns() > f->deadline) {
        f->timed_out = 1;
        uv_timer_stop(t);
        uv_stop(&f->loop);
    }
}

/* Open a daemon-mode store on a fresh loop and bus. */
static void daemon_open(struct fx *f, struct store_opts *o)
{
    struct vigil_err err = {0};
    struct bus_limits lim;

    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->loop_live = 1;
    bus_limits_default(&lim);
    assert_int_equal(bus_create(&lim, &f->bus), 0);
    o->path = f->path;
    o->host = "testhost";
    if (store_open(o, &f->loop, &f->st, &err) != 0) {
        fail_msg("store_open: %s", err.msg);
    }
    assert_int_equal(store_attach_bus(f->st, f->bus, NULL, &err), 0);
    uv_timer_init(&f->loop, &f->poll);
    f->poll.data = f;
}

/* Run the loop until pred holds (checked every 2 ms), at most 20 s. */
static void await(struct fx *f, int (*pred)(struct fx *))
{
    f->pred = pred;
    f->deadline = clock_mono_ns() + WAIT_NS;
    f->timed_out = 0;
    uv_timer_start(&f->poll, on_poll, 2, 2);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_false(f->timed_out);
}

/* Close the store as the daemon does, then everything else; the loop
 * must end with nothing left on it. */
static void daemon_close(struct fx *f)
{
    store_close(f->st);
    f->st = NULL;
    uv_close((uv_handle_t *)&f->poll, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    bus_destroy(f->bus);
    f->bus = NULL;
    assert_int_equal(uv_loop_close(&f->loop), 0);
    f->loop_live = 0;
}

static struct store *tool_open(struct fx *f)
{
    struct store_opts o = {.path = f->path, .host = "testhost"};
    struct vigil_err err = {0};
    struct store *st = NULL;

    if (store_open(&o, NULL, &st, &err) != 0) {
        fail_msg("store_open: %s", err.msg);
    }
    return st;
}

static vigil_series_id intern(struct fx *f, const char *name, const char *k,
                              const char *v)
{
    struct vigil_label l = {k, v};
    struct vigil_err err = {0};
    vigil_series_id id;

    assert_int_equal(bus_intern(f->bus, name, &l, k ? 1 : 0, &id, &err), 0);
    return id;
}

/* -------------------------------------------------------- collectors */

struct seen {
    int n_inc, n_tr, n_ev, n_act, n_samples, n_rollups;
    int64_t inc_ids[16];
    char titles[16][64];
    struct store_incident inc;
    char inc_runbook[64];
    int inc_runbook_null, inc_labels_null;
    int64_t tr_ts[16];
    char tr_reason[16][64];
    int ev_step[16];
    char ev_status[16][32];
    int ev_output_null[16];
    int64_t act_id[16];
    int act_result[16];
    char act_reason[16][64];
    char act_command[16][64];
    int64_t act_ended[16];
    int64_t sample_ts[512];
    double sample_v[512];
    int64_t ru_ts[64];
    double ru_min[64], ru_avg[64], ru_max[64];
    uint64_t ru_count[64];
};

static void on_inc(void *arg, const struct store_incident *x)
{
    struct seen *s = arg;

    if (s->n_inc < 16) {
        s->inc_ids[s->n_inc] = x->id;
        snprintf(s->titles[s->n_inc], 64, "%s", x->title);
    }
    s->inc = *x;
    s->inc_runbook_null = x->runbook == NULL;
    s->inc_labels_null = x->labels_json == NULL;
    snprintf(s->inc_runbook, sizeof(s->inc_runbook), "%s",
             x->runbook ? x->runbook : "");
    s->inc.rule = s->inc.series = s->inc.title = NULL; /* not kept */
    s->inc.runbook = s->inc.labels_json = NULL;
    s->n_inc++;
}

static void on_tr(void *arg, const struct store_transition *x)
{
    struct seen *s = arg;

    s->tr_ts[s->n_tr] = x->ts;
    snprintf(s->tr_reason[s->n_tr], 64, "%s", x->reason ? x->reason : "-");
    s->n_tr++;
}

static void on_ev(void *arg, const struct store_evidence *x)
{
    struct seen *s = arg;

    s->ev_step[s->n_ev] = x->step;
    snprintf(s->ev_status[s->n_ev], 32, "%s", x->status);
    s->ev_output_null[s->n_ev] = x->output == NULL;
    s->n_ev++;
}

static void on_act(void *arg, const struct store_action *x)
{
    struct seen *s = arg;

    s->act_id[s->n_act] = x->id;
    s->act_result[s->n_act] = x->result;
    snprintf(s->act_reason[s->n_act], 64, "%s", x->reason ? x->reason : "-");
    snprintf(s->act_command[s->n_act], 64, "%s", x->command);
    s->act_ended[s->n_act] = x->ended_ts;
    s->n_act++;
}

static void on_sample(void *arg, int64_t ts, double v)
{
    struct seen *s = arg;

    if (s->n_samples < 512) {
        s->sample_ts[s->n_samples] = ts;
        s->sample_v[s->n_samples] = v;
    }
    s->n_samples++;
}

static void on_rollup(void *arg, int64_t ts, double min, double avg, double max,
                      uint64_t count)
{
    struct seen *s = arg;

    if (s->n_rollups < 64) {
        s->ru_ts[s->n_rollups] = ts;
        s->ru_min[s->n_rollups] = min;
        s->ru_avg[s->n_rollups] = avg;
        s->ru_max[s->n_rollups] = max;
        s->ru_count[s->n_rollups] = count;
    }
    s->n_rollups++;
}

struct done {
    int n;
    int status[16];
    int64_t tag[16];
};

static void on_done(void *arg, int status)
{
    struct done *d = arg;

    d->status[d->n] = status;
    d->n++;
}

/* ------------------------------------------------------ tool mode */

static void test_tool_round_trip(void **state)
{
    struct fx *f = *state;
    struct store *st = tool_open(f);
    struct seen *s = calloc(1, sizeof(*s));
    struct done d = {0};
    int64_t now = clock_wall_ns();
    int64_t id1, id2, a1;

    assert_non_null(s);
    id1 = store_next_incident_id(st);
    id2 = store_next_incident_id(st);
    assert_int_equal(id1, 1);
    assert_int_equal(id2, 2);
    struct store_incident inc = {
        .id = id1,
        .rule = "cpu_high",
        .series = "sys.cpu.busy_pct",
        .title = "CPU high",
        .runbook = "cpu.lua",
        .state = 2,
        .open = 1,
        .opened_ts = now,
        .labels_json = "{\"host\":\"a\"}",
    };
    assert_int_equal(store_put_incident(st, &inc), 0);
    inc.id = id2;
    inc.title = "Disk \"slow\"";
    inc.runbook = NULL;
    inc.labels_json = NULL;
    inc.open = 0;
    inc.resolved_ts = now + 5;
    assert_int_equal(store_put_incident(st, &inc), 0);
    /* An upsert: the first incident escalates and is acknowledged. */
    inc.id = id1;
    inc.title = "CPU very high";
    inc.runbook = "cpu.lua";
    inc.labels_json = "{\"host\":\"a\"}";
    inc.state = 3;
    inc.open = 1;
    inc.resolved_ts = 0;
    inc.acknowledged = 1;
    assert_int_equal(store_put_incident(st, &inc), 0);

    struct store_transition t = {id1, now + 2, 0, 2, 75.5, "over 70"};
    assert_int_equal(store_add_transition(st, &t), 0);
    t.ts = now + 1;
    t.to = 1;
    t.value = NAN;
    t.reason = NULL;
    assert_int_equal(store_add_transition(st, &t), 0);

    struct store_evidence e = {id1,       2,   "proc.top", "immediate",
                               "running", now, 0,          NULL};
    assert_int_equal(store_put_evidence(st, &e), 0);
    e.step = 1;
    e.name = "snapshot";
    e.status = "ok";
    e.output = "{\"avg\":71}";
    assert_int_equal(store_put_evidence(st, &e), 0);
    e.step = 2;
    e.name = "proc.top";
    e.status = "ok";
    e.output = "{\"top\":[]}";
    assert_int_equal(store_put_evidence(st, &e), 0);

    a1 = store_next_action_id(st);
    struct store_action a = {
        .id = a1,
        .incident_id = id1,
        .name = "restart",
        .kind = "exec",
        .mode = "on",
        .command = "[\"systemctl\",\"restart\",\"app\"]",
        .result = STORE_ACT_PENDING,
        .intent_ts = now,
    };
    assert_int_equal(store_put_action(st, &a, on_done, &d), 0);
    assert_int_equal(d.n, 1); /* tool mode: called before returning */
    assert_int_equal(d.status[0], 0);
    a.result = STORE_ACT_OK;
    a.started_ts = now + 1;
    a.ended_ts = now + 2;
    a.output = "restarted";
    assert_int_equal(store_put_action(st, &a, NULL, NULL), 0);
    a.id = store_next_action_id(st);
    a.name = "page";
    a.result = STORE_ACT_SKIPPED;
    a.reason = "cooldown";
    a.output = NULL;
    assert_int_equal(store_put_action(st, &a, NULL, NULL), 0);

    /* Reads. */
    assert_int_equal(store_list_incidents(st, 0, 0, on_inc, s), 0);
    assert_int_equal(s->n_inc, 2);
    assert_int_equal(s->inc_ids[0], id2); /* newest first */
    assert_int_equal(s->inc_ids[1], id1);
    assert_string_equal(s->titles[0], "Disk \"slow\"");
    assert_string_equal(s->titles[1], "CPU very high");
    memset(s, 0, sizeof(*s));
    assert_int_equal(store_list_incidents(st, 1, 0, on_inc, s), 0);
    assert_int_equal(s->n_inc, 1);
    assert_int_equal(s->inc_ids[0], id1);
    memset(s, 0, sizeof(*s));
    assert_int_equal(store_list_incidents(st, 0, 1, on_inc, s), 0);
    assert_int_equal(s->n_inc, 1);

    memset(s, 0, sizeof(*s));
    assert_int_equal(
        store_get_incident(st, id1, on_inc, on_tr, on_ev, on_act, s), 0);
    assert_int_equal(s->n_inc, 1);
    assert_int_equal(s->inc.state, 3);
    assert_int_equal(s->inc.acknowledged, 1);
    assert_int_equal(s->inc.opened_ts, now);
    assert_string_equal(s->inc_runbook, "cpu.lua");
    assert_int_equal(s->n_tr, 2);
    assert_int_equal(s->tr_ts[0], now + 1); /* by time */
    assert_string_equal(s->tr_reason[0], "-");
    assert_string_equal(s->tr_reason[1], "over 70");
    assert_int_equal(s->n_ev, 2);
    assert_int_equal(s->ev_step[0], 1);
    assert_int_equal(s->ev_step[1], 2);
    assert_string_equal(s->ev_status[1], "ok"); /* upserted */
    assert_int_equal(s->n_act, 2);
    assert_int_equal(s->act_id[0], a1);
    assert_int_equal(s->act_result[0], STORE_ACT_OK);
    assert_string_equal(s->act_command[0],
                        "[\"systemctl\",\"restart\",\"app\"]");
    assert_int_equal(s->act_result[1], STORE_ACT_SKIPPED);
    assert_string_equal(s->act_reason[1], "cooldown");

    memset(s, 0, sizeof(*s));
    assert_int_equal(store_get_incident(st, id2, on_inc, NULL, NULL, NULL, s),
                     0);
    assert_int_equal(s->inc_runbook_null, 1);
    assert_int_equal(s->inc_labels_null, 1);
    assert_int_equal(s->inc.open, 0);
    assert_int_equal(s->inc.resolved_ts, now + 5);
    assert_int_equal(store_get_incident(st, 99, on_inc, NULL, NULL, NULL, s),
                     VIGIL_ENOENT);
    assert_int_equal(store_history(st, "nope", 0, on_sample, on_rollup, s),
                     VIGIL_ENOENT);
    store_close(st);

    /* Ids continue from what is stored; a tool does not touch actions. */
    st = tool_open(f);
    assert_int_equal(store_next_incident_id(st), id2 + 1);
    assert_int_equal(store_next_action_id(st), a.id + 1);
    store_close(st);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM incidents WHERE host = "
                                "'testhost'"),
                     2);
    free(s);
}

/* A record the database refuses is dropped alone, with a status. */
static void test_tool_refused_record(void **state)
{
    struct fx *f = *state;
    struct store *st = tool_open(f);
    struct store_evidence e = {1, 13, "exec", "immediate", "ok", 1, 2, NULL};
    struct seen s = {0};

    store_close(st);
    sql_exec(f, by_be("CREATE TRIGGER no13 BEFORE INSERT ON evidence "
                      "WHEN NEW.step = 13 BEGIN SELECT RAISE(ABORT, 'no "
                      "thirteen'); END",
                      "CREATE FUNCTION no13() RETURNS trigger AS $$ BEGIN"
                      " IF NEW.step = 13 THEN RAISE EXCEPTION 'no thirteen'"
                      " USING ERRCODE = 'check_violation'; END IF;"
                      " RETURN NEW; END $$ LANGUAGE plpgsql;"
                      "CREATE TRIGGER no13 BEFORE INSERT ON evidence"
                      " FOR EACH ROW EXECUTE FUNCTION no13()"));
    st = tool_open(f);
    struct store_incident inc = {
        .id = 1, .rule = "r", .series = "", .title = "t", .open = 1};
    assert_int_equal(store_put_incident(st, &inc), 0);
    assert_int_equal(store_put_evidence(st, &e), VIGIL_EINVAL);
    e.step = 14;
    assert_int_equal(store_put_evidence(st, &e), 0);
    assert_int_equal(store_get_incident(st, 1, NULL, NULL, on_ev, NULL, &s), 0);
    assert_int_equal(s.n_ev, 1);
    assert_int_equal(s.ev_step[0], 14);
    store_close(st);
}

/* ---------------------------------------------------- daemon mode */

struct flush_wait {
    uint64_t samples;
    uint64_t records;
    uint64_t flushes;
};

static struct flush_wait want;

static int flushed(struct fx *f)
{
    struct store_stats s;

    store_get_stats(f->st, &s);
    return s.samples_written >= want.samples &&
           s.records_written >= want.records && s.flushes >= want.flushes;
}

static void test_daemon_history(void **state)
{
    struct fx *f = *state;
    struct store_opts o = {.flush_interval_ms = 10};
    struct seen *s = calloc(1, sizeof(*s));
    struct store_stats stats;
    vigil_series_id a, b;
    int64_t base = clock_wall_ns() - 30 * S_NS;
    char key[256], labels[256];

    assert_non_null(s);
    daemon_open(f, &o);
    a = intern(f, "t.lat_ms", "k", "x\"y");
    b = intern(f, "t.other", NULL, NULL);
    snprintf(key, sizeof(key), "%s", bus_series_key(f->bus, a));
    for (int i = 0; i < 100; i++) {
        bus_publish(f->bus, a, base + i * (S_NS / 10), i);
        bus_publish(f->bus, b, base + i * (S_NS / 10), -i);
    }
    bus_publish(f->bus, a, base + 100 * (S_NS / 10), NAN);
    want = (struct flush_wait){201, 0, 1};
    await(f, flushed);

    /* Read while the daemon runs: the reader connection. */
    assert_int_equal(store_history(f->st, key, base, on_sample, on_rollup, s),
                     0);
    assert_int_equal(s->n_samples, 101);
    assert_int_equal(s->n_rollups, 0);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(s->sample_ts[i], base + i * (S_NS / 10));
        assert_true(s->sample_v[i] == i);
    }
    assert_true(isnan(s->sample_v[100]));
    memset(s, 0, sizeof(*s));
    assert_int_equal(
        store_history(f->st, key, base + 50 * (S_NS / 10), on_sample, NULL, s),
        0);
    assert_int_equal(s->n_samples, 51);
    store_get_stats(f->st, &stats);
    assert_int_equal(stats.samples_written, 201);
    assert_int_equal(stats.samples_dropped, 0);
    assert_int_equal(stats.errors, 0);
    assert_true(stats.flushes >= 1);
    daemon_close(f);

    /* And from a tool, after the daemon has gone. */
    struct store *st = tool_open(f);
    memset(s, 0, sizeof(*s));
    assert_int_equal(store_history(st, "t.other", 0, on_sample, NULL, s), 0);
    assert_int_equal(s->n_samples, 100);
    assert_true(s->sample_v[99] == -99);
    store_close(st);
    sql_text(f, "SELECT labels FROM series WHERE name = 't.lat_ms'", labels,
             sizeof(labels));
    assert_string_equal(labels, "{\"k\":\"x\\\"y\"}");
    if (pg_base == NULL) {
        sql_text(f, "PRAGMA journal_mode", labels, sizeof(labels));
        assert_string_equal(labels, "wal");
    }
    free(s);
}

static void test_rollup_retention(void **state)
{
    struct fx *f = *state;
    struct store_opts o = {
        .flush_interval_ms = 10,
        .raw_retention_ns = 3600 * S_NS,
        .rollup_retention_ns = 10 * 86400 * S_NS,
    };
    struct seen *s = calloc(1, sizeof(*s));
    int64_t now = clock_wall_ns();
    /* Minute-aligned old times, so that their samples share a minute. */
    int64_t m3d = (now - 3 * 86400 * S_NS) / MIN_NS * MIN_NS;
    int64_t m2h = (now - 2 * 3600 * S_NS) / MIN_NS * MIN_NS;
    int64_t m20d = (now - 20 * 86400 * S_NS) / MIN_NS * MIN_NS;
    vigil_series_id id;
    const char *key = "t.cpu_pct";

    assert_non_null(s);
    daemon_open(f, &o);
    id = intern(f, key, NULL, NULL);
    bus_publish(f->bus, id, m20d + S_NS, 5);
    bus_publish(f->bus, id, m3d + 1 * S_NS, 1);
    bus_publish(f->bus, id, m3d + 2 * S_NS, 2);
    bus_publish(f->bus, id, m3d + 3 * S_NS, 3);
    bus_publish(f->bus, id, m3d + 4 * S_NS, NAN); /* not rolled up */
    bus_publish(f->bus, id, m2h + 10 * S_NS, 10);
    bus_publish(f->bus, id, m2h + 20 * S_NS, 20);
    bus_publish(f->bus, id, now - 10 * S_NS, 100);
    bus_publish(f->bus, id, now - 5 * S_NS, 101);
    want = (struct flush_wait){9, 0, 1};
    await(f, flushed);

    assert_int_equal(store_history(f->st, key, now - 30LL * 86400 * S_NS,
                                   on_sample, on_rollup, s),
                     0);
    assert_int_equal(s->n_rollups, 2); /* the 20-day-old one is gone */
    assert_int_equal(s->ru_ts[0], m3d);
    assert_true(s->ru_min[0] == 1 && s->ru_max[0] == 3);
    assert_true(s->ru_avg[0] == 2);
    assert_int_equal(s->ru_count[0], 3);
    assert_int_equal(s->ru_ts[1], m2h);
    assert_true(s->ru_avg[1] == 15 && s->ru_count[1] == 2);
    assert_int_equal(s->n_samples, 2); /* older raw samples trimmed */
    assert_true(s->sample_v[0] == 100 && s->sample_v[1] == 101);

    /* A late sample for a minute already rolled up joins its roll-up. */
    bus_publish(f->bus, id, m3d + 30 * S_NS, 7);
    want = (struct flush_wait){10, 0, 0};
    await(f, flushed);
    daemon_close(f);

    /* The next daemon start trims the late raw sample. */
    daemon_open(f, &o);
    want = (struct flush_wait){0, 0, 1};
    await(f, flushed);
    memset(s, 0, sizeof(*s));
    assert_int_equal(store_history(f->st, key, m3d, on_sample, on_rollup, s),
                     0);
    assert_int_equal(s->n_rollups, 2);
    assert_true(s->ru_min[0] == 1 && s->ru_max[0] == 7);
    assert_int_equal(s->ru_count[0], 4);
    assert_true(fabs(s->ru_avg[0] - 3.25) < 1e-9);
    assert_int_equal(s->n_samples, 2);
    /* Since a time in the raw part: no roll-ups. */
    memset(s, 0, sizeof(*s));
    assert_int_equal(
        store_history(f->st, key, now - 7 * S_NS, on_sample, on_rollup, s), 0);
    assert_int_equal(s->n_rollups, 0);
    assert_int_equal(s->n_samples, 1);
    daemon_close(f);
    free(s);
}

/* The action callback: the row must be readable from another connection
 * (a tool) by now. */
struct commit_check {
    struct fx *f;
    int calls;
    int64_t ids[4];
    int seen_rows[4];
    int status[4];
};

static struct commit_check cc;

static void on_committed(void *arg, int status)
{
    struct commit_check *c = &cc;
    int64_t id = (int64_t)(intptr_t)arg;
    struct store *tool = tool_open(c->f);
    struct seen *s = calloc(1, sizeof(*s));

    assert_non_null(s);
    assert_int_equal(store_get_incident(tool, 1, NULL, NULL, NULL, on_act, s),
                     0);
    for (int i = 0; i < s->n_act; i++) {
        if (s->act_id[i] == id && s->act_result[i] == STORE_ACT_PENDING) {
            c->seen_rows[c->calls] = 1;
        }
    }
    store_close(tool);
    c->ids[c->calls] = id;
    c->status[c->calls] = status;
    c->calls++;
    free(s);
}

static int three_done(struct fx *f)
{
    (void)f;
    return cc.calls == 3;
}

static void test_action_committed_before_cb(void **state)
{
    struct fx *f = *state;
    struct store_opts o = {.flush_interval_ms = 5};
    struct store_incident inc = {
        .id = 1, .rule = "r", .series = "s", .title = "t", .open = 1};

    memset(&cc, 0, sizeof(cc));
    cc.f = f;
    daemon_open(f, &o);
    assert_int_equal(store_next_incident_id(f->st), 1);
    assert_int_equal(store_put_incident(f->st, &inc), 0);
    for (int i = 0; i < 3; i++) {
        struct store_action a = {
            .id = store_next_action_id(f->st),
            .incident_id = 1,
            .name = "fix",
            .kind = "exec",
            .mode = "on",
            .command = "[\"true\"]",
            .intent_ts = clock_wall_ns(),
        };

        assert_int_equal(
            store_put_action(f->st, &a, on_committed, (void *)(intptr_t)a.id),
            0);
    }
    assert_int_equal(cc.calls, 0); /* written on the thread pool */
    await(f, three_done);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(cc.ids[i], i + 1); /* in order */
        assert_int_equal(cc.status[i], 0);
        assert_int_equal(cc.seen_rows[i], 1);
    }
    daemon_close(f);
}

static void test_interrupted_after_reopen(void **state)
{
    struct fx *f = *state;
    struct store *st = tool_open(f);
    struct seen s = {0};
    struct store_opts o = {.flush_interval_ms = 5};
    int64_t before = clock_wall_ns();
    struct store_action a = {
        .id = store_next_action_id(st),
        .incident_id = 7,
        .name = "restart",
        .kind = "exec",
        .mode = "on",
        .command = "[\"x\"]",
        .result = STORE_ACT_PENDING,
        .intent_ts = before,
    };

    assert_int_equal(store_put_action(st, &a, NULL, NULL), 0);
    a.id = store_next_action_id(st);
    a.result = STORE_ACT_OK;
    assert_int_equal(store_put_action(st, &a, NULL, NULL), 0);
    struct store_incident inc = {
        .id = 7, .rule = "r", .series = "", .title = "t", .open = 1};
    assert_int_equal(store_put_incident(st, &inc), 0);
    store_close(st);

    /* A tool leaves it alone: the daemon may be running it. */
    st = tool_open(f);
    assert_int_equal(store_get_incident(st, 7, NULL, NULL, NULL, on_act, &s),
                     0);
    assert_int_equal(s.act_result[0], STORE_ACT_PENDING);
    store_close(st);

    /* The daemon starting again: vigil died while it ran. */
    daemon_open(f, &o);
    assert_int_equal(store_next_action_id(f->st), 3);
    daemon_close(f);
    st = tool_open(f);
    memset(&s, 0, sizeof(s));
    assert_int_equal(store_get_incident(st, 7, NULL, NULL, NULL, on_act, &s),
                     0);
    assert_int_equal(s.n_act, 2);
    assert_int_equal(s.act_result[0], STORE_ACT_INTERRUPTED);
    assert_string_equal(
        s.act_reason[0],
        "vigil stopped while the action ran or waited for approval");
    assert_true(s.act_ended[0] >= before);
    assert_int_equal(s.act_result[1], STORE_ACT_OK);
    store_close(st);
}

/* A flush that fails: samples lost and counted, the action's callback
 * told, its record written by the next flush, monitoring goes on. */
static struct done fail_done;

static int fail_seen(struct fx *f)
{
    struct store_stats s;

    store_get_stats(f->st, &s);
    return s.errors >= 1 && fail_done.n == 1;
}

static void test_failing_flush(void **state)
{
    struct fx *f = *state;
    struct store_opts o = {.flush_interval_ms = 5};
    struct store_stats stats;
    struct seen s = {0};
    vigil_series_id id;
    struct store *st = tool_open(f);

    store_close(st);
    sql_exec(f, by_be("CREATE TRIGGER full BEFORE INSERT ON samples "
                      "BEGIN SELECT RAISE(FAIL, 'database or disk is full'); "
                      "END",
                      "CREATE FUNCTION no_space() RETURNS trigger AS $$ BEGIN"
                      " RAISE EXCEPTION 'could not extend file: No space"
                      " left on device' USING ERRCODE = 'disk_full'; END $$"
                      " LANGUAGE plpgsql; CREATE TRIGGER no_space BEFORE INSERT"
                      " ON samples FOR EACH ROW EXECUTE FUNCTION no_space()"));
    memset(&fail_done, 0, sizeof(fail_done));
    daemon_open(f, &o);
    id = intern(f, "t.x", NULL, NULL);
    for (int i = 0; i < 10; i++) {
        bus_publish(f->bus, id, clock_wall_ns() - 10 * S_NS + i, i);
    }
    struct store_incident inc = {
        .id = 1, .rule = "r", .series = "t.x", .title = "t", .open = 1};
    struct store_action a = {.id = 1,
                             .incident_id = 1,
                             .name = "n",
                             .kind = "exec",
                             .mode = "on",
                             .command = "[]"};
    assert_int_equal(store_put_incident(f->st, &inc), 0);
    assert_int_equal(store_put_action(f->st, &a, on_done, &fail_done), 0);
    await(f, fail_seen);
    assert_int_not_equal(fail_done.status[0], 0);
    store_get_stats(f->st, &stats);
    assert_int_equal(stats.samples_written, 0);
    assert_int_equal(stats.samples_lost, 10);
    /* Kept for the next flush, which may already have run (the samples
     * that the trigger refuses were lost with the failed one). */
    assert_int_equal(stats.records_pending + stats.records_written, 2);

    /* The disk is back. */
    sql_exec(f, by_be("DROP TRIGGER full", "DROP TRIGGER no_space ON samples"));
    for (int i = 0; i < 5; i++) {
        bus_publish(f->bus, id, clock_wall_ns() - 5 * S_NS + i, 100 + i);
    }
    want = (struct flush_wait){5, 2, 0};
    await(f, flushed);
    assert_int_equal(fail_done.n, 1); /* not called twice */
    store_get_stats(f->st, &stats);
    assert_int_equal(stats.records_pending, 0);
    assert_int_equal(store_get_incident(f->st, 1, NULL, NULL, NULL, on_act, &s),
                     0);
    assert_int_equal(s.n_act, 1);
    assert_int_equal(store_history(f->st, "t.x", 0, on_sample, NULL, &s), 0);
    assert_int_equal(s.n_samples, 5);
    assert_true(s.sample_v[0] == 100);
    daemon_close(f);
}

/* A full buffer drops and counts; store_close() writes the rest. */
static void test_buffer_full_and_close_flush(void **state)
{
    struct fx *f = *state;
    struct store_opts o = {.flush_interval_ms = 60000, .sample_buffer = 16};
    struct store_stats stats;
    struct seen s = {0};
    struct done d = {0};
    vigil_series_id id;
    int64_t t0 = clock_wall_ns() - 60 * S_NS;

    daemon_open(f, &o);
    id = intern(f, "t.full", NULL, NULL);
    for (int i = 0; i < 20; i++) {
        bus_publish(f->bus, id, t0 + i, i);
    }
    store_get_stats(f->st, &stats);
    assert_int_equal(stats.samples_dropped, 4);
    struct store_action a = {.id = 1,
                             .incident_id = 1,
                             .name = "n",
                             .kind = "exec",
                             .mode = "on",
                             .command = "[]"};
    assert_int_equal(store_put_action(f->st, &a, on_done, &d), 0);
    /* The action's callback asks for a flush at once; close writes what
     * is left, in that job's end or synchronously. */
    store_close(f->st);
    f->st = NULL;
    uv_close((uv_handle_t *)&f->poll, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.status[0], 0);
    bus_destroy(f->bus);
    assert_int_equal(uv_loop_close(&f->loop), 0);

    struct store *st = tool_open(f);
    assert_int_equal(store_history(st, "t.full", 0, on_sample, NULL, &s), 0);
    assert_int_equal(s.n_samples, 16);
    store_close(st);
}

/* store_close() while the flush job is in flight (here: from an action
 * callback, which runs in the job's after-work callback): the last flush
 * happens when the job is done. */
static struct fx *close_fx;
static struct done close_done;

static void close_from_cb(void *arg, int status)
{
    on_done(arg, status);
    if (close_done.n == 1) {
        vigil_series_id id = bus_series_count(close_fx->bus) - 1;

        /* Queued after close: written by the final flush. */
        bus_publish(close_fx->bus, id, clock_wall_ns(), 42);
        struct store_action a = {.id = 2,
                                 .incident_id = 1,
                                 .name = "n",
                                 .kind = "exec",
                                 .mode = "on",
                                 .command = "[]",
                                 .result = STORE_ACT_OK};
        assert_int_equal(
            store_put_action(close_fx->st, &a, close_from_cb, &close_done), 0);
        store_close(close_fx->st);
        close_fx->st = NULL;
        uv_close((uv_handle_t *)&close_fx->poll, NULL);
    }
}

static void test_close_during_job(void **state)
{
    struct fx *f = *state;
    struct store_opts o = {.flush_interval_ms = 5};
    struct seen s = {0};
    vigil_series_id id;

    close_fx = f;
    memset(&close_done, 0, sizeof(close_done));
    daemon_open(f, &o);
    id = intern(f, "t.close", NULL, NULL);
    bus_publish(f->bus, id, clock_wall_ns() - S_NS, 1);
    struct store_action a = {.id = 1,
                             .incident_id = 1,
                             .name = "n",
                             .kind = "exec",
                             .mode = "on",
                             .command = "[]"};
    assert_int_equal(store_put_action(f->st, &a, close_from_cb, &close_done),
                     0);
    uv_run(&f->loop, UV_RUN_DEFAULT); /* ends once the store is closed */
    assert_int_equal(close_done.n, 2);
    assert_int_equal(close_done.status[1], 0);
    bus_destroy(f->bus);
    assert_int_equal(uv_loop_close(&f->loop), 0);

    struct store *st = tool_open(f);
    assert_int_equal(store_history(st, "t.close", 0, on_sample, NULL, &s), 0);
    assert_int_equal(s.n_samples, 2);
    assert_int_equal(store_get_incident(st, 1, NULL, NULL, NULL, on_act, &s),
                     VIGIL_ENOENT); /* actions without their incident */
    assert_int_equal(sql_int(f, "SELECT result FROM actions WHERE id = 2"),
                     STORE_ACT_OK);
    store_close(st);
}

static void test_approve(void **state)
{
    struct fx *f = *state;
    struct store *st = tool_open(f);
    struct vigil_err err = {0};
    struct store_action a = {
        .id = store_next_action_id(st),
        .incident_id = 3,
        .name = "restart",
        .kind = "exec",
        .mode = "approve",
        .command = "[\"x\"]",
        .result = STORE_ACT_AWAITING,
        .intent_ts = clock_wall_ns(),
    };

    assert_int_equal(store_put_action(st, &a, NULL, NULL), 0);
    assert_int_equal(store_approve_action(st, a.id, "ops", &err), 0);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM actions WHERE "
                                "approved_by = 'ops' AND "
                                "approved_ts > 0"),
                     1);
    /* Twice, or an action that does not wait: a clear refusal. */
    assert_int_equal(store_approve_action(st, a.id, "ops", &err), VIGIL_ENOENT);
    assert_non_null(strstr(err.msg, "is waiting for approval"));
    err_clear(&err);
    assert_int_equal(store_approve_action(st, 424242, "ops", &err),
                     VIGIL_ENOENT);
    store_close(st);
}

/* ---------------------------------------------------- schema, errors */

/* Two tools open a new PostgreSQL database at the same moment: one
 * migrates, the other waits for it (the advisory lock) and finds the
 * schema up to date. Returns how many failed. */
static int open_together(struct fx *f)
{
    int failed = 0;
    pid_t kids[2];

    for (int i = 0; i < 2; i++) {
        kids[i] = fork();
        assert_true(kids[i] >= 0);
        if (kids[i] == 0) {
            struct store_opts o = {.path = f->path, .host = "h"};
            struct vigil_err err = {0};
            struct store *st = NULL;
            int rc = store_open(&o, NULL, &st, &err);

            if (rc != 0) {
                fprintf(stderr, "store_open: %s\n", err.msg);
            }
            store_close(st);
            _exit(rc != 0);
        }
    }
    for (int i = 0; i < 2; i++) {
        int ws = 0;

        assert_int_equal(waitpid(kids[i], &ws, 0), kids[i]);
        failed += !WIFEXITED(ws) || WEXITSTATUS(ws) != 0;
    }
    return failed;
}

static void test_migrations_pg(struct fx *f)
{
    struct store_opts o = {.path = f->path, .host = "h"};
    struct vigil_err err = {0};
    struct store *st = NULL;

    st = tool_open(f);
    store_close(st);
    assert_int_equal(
        sql_int(f, "SELECT value FROM meta WHERE key = 'schema_version'"), 2);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM information_schema."
                                "columns WHERE table_name = 'actions' AND "
                                "column_name = 'approved_ts'"),
                     1);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM information_schema."
                                "tables WHERE table_schema = current_schema()"
                                " AND table_name IN ('series', 'samples',"
                                " 'rollup_1m', 'incidents', 'transitions',"
                                " 'evidence', 'actions')"),
                     7);
    st = tool_open(f);
    store_close(st);

    /* A newer vigil wrote this one. */
    sql_exec(f, "UPDATE meta SET value = 99 WHERE key = 'schema_version'");
    assert_int_equal(store_open(&o, NULL, &st, &err), VIGIL_ESTATE);
    assert_null(st);
    assert_non_null(strstr(err.msg, f->pgdb));
    assert_non_null(strstr(err.msg, "schema version 99 is newer"));

    /* Agents starting together, a few times over. */
    for (int i = 0; i < 5; i++) {
        sql_exec(f, "DROP TABLE meta, series, samples, rollup_1m, incidents,"
                    " transitions, evidence, actions");
        assert_int_equal(open_together(f), 0);
        assert_int_equal(
            sql_int(f, "SELECT value FROM meta WHERE key = 'schema_version'"),
            2);
    }

    /* Another program's tables under vigil's names. */
    sql_exec(f, "DROP TABLE meta, series, samples, rollup_1m, incidents,"
                " transitions, evidence, actions;"
                " CREATE TABLE series (id INTEGER)");
    err_clear(&err);
    assert_int_equal(store_open(&o, NULL, &st, &err), VIGIL_EINVAL);
    assert_non_null(strstr(err.msg, "not a vigil database"));
}

static void test_migrations(void **state)
{
    struct fx *f = *state;
    struct store_opts o = {.path = f->path, .host = "h"};
    struct vigil_err err = {0};
    struct store *st = NULL;
    FILE *fp;

    if (pg_base != NULL) {
        test_migrations_pg(f);
        return;
    }
    fp = fopen(f->path, "w");

    /* An empty file is a new database. */
    assert_non_null(fp);
    fclose(fp);
    st = tool_open(f);
    store_close(st);
    assert_int_equal(
        sql_int(f, "SELECT value FROM meta WHERE key = 'schema_version'"), 2);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM "
                                "pragma_table_info('actions') WHERE "
                                "name = 'approved_ts'"),
                     1);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM sqlite_master "
                                "WHERE type = 'table' AND name IN "
                                "('series', 'samples', 'rollup_1m', "
                                "'incidents', 'transitions', "
                                "'evidence', 'actions')"),
                     7);
    /* Opening again changes nothing. */
    st = tool_open(f);
    store_close(st);

    /* A newer vigil wrote this one. */
    sql_exec(f, "UPDATE meta SET value = 99 WHERE key = 'schema_version'");
    assert_int_equal(store_open(&o, NULL, &st, &err), VIGIL_ESTATE);
    assert_null(st);
    assert_non_null(strstr(err.msg, f->path));
    assert_non_null(strstr(err.msg, "schema version 99 is newer"));

    /* Another program's database. */
    unlink(f->path);
    sql_exec(f, "CREATE TABLE accounts (id INTEGER)");
    err_clear(&err);
    assert_int_equal(store_open(&o, NULL, &st, &err), VIGIL_EINVAL);
    assert_non_null(strstr(err.msg, "not a vigil database"));

    /* Not a database at all. */
    unlink(f->path);
    fp = fopen(f->path, "w");
    assert_non_null(fp);
    fputs("this is not an SQLite database, just some text\n", fp);
    fclose(fp);
    err_clear(&err);
    assert_int_not_equal(store_open(&o, NULL, &st, &err), 0);
    assert_non_null(strstr(err.msg, f->path));
    assert_non_null(strstr(err.msg, "file is not a database"));
}

static void test_bad_paths(void **state)
{
    struct fx *f = *state;
    struct store_opts o = {.host = "h"};
    struct vigil_err err = {0};
    struct store *st = NULL;
    char path[256], want_msg[300];
    FILE *fp;
    uv_loop_t loop;

    /* A path under a regular file cannot be created, even by root. */
    snprintf(path, sizeof(path), "%s/file", f->dir);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fclose(fp);
    snprintf(path, sizeof(path), "%s/file/vigil.db", f->dir);
    o.path = path;
    assert_int_not_equal(store_open(&o, NULL, &st, &err), 0);
    assert_null(st);
    snprintf(want_msg, sizeof(want_msg), "%s: unable to open database file",
             path);
    assert_string_equal(err.msg, want_msg);

    /* The same in daemon mode, with nothing left on the loop. */
    assert_int_equal(uv_loop_init(&loop), 0);
    err_clear(&err);
    assert_int_not_equal(store_open(&o, &loop, &st, &err), 0);
    assert_string_equal(err.msg, want_msg);
    assert_int_equal(uv_loop_close(&loop), 0);

    /* A server that cannot be reached fails the open (the daemon goes on
     * without a store); the message names the server, never the
     * password. */
    o.path = "postgresql://vigil:s3cret@127.0.0.1:1/vigil";
    err_clear(&err);
    assert_int_equal(store_open(&o, NULL, &st, &err), VIGIL_EIO);
    assert_null(st);
    assert_non_null(strstr(
        err.msg, "postgresql://vigil@127.0.0.1:1/vigil: cannot connect"));
    assert_null(strstr(err.msg, "s3cret"));
    /* Daemon mode, behind the config's directory as the daemon resolves
     * it, the password in a parameter: the same, nothing on the loop. */
    o.path = "/etc/vigil/postgres://vigil@127.0.0.1:1/vigil?password=s3cret";
    assert_int_equal(uv_loop_init(&loop), 0);
    err_clear(&err);
    assert_int_equal(store_open(&o, &loop, &st, &err), VIGIL_EIO);
    assert_non_null(strstr(err.msg, "127.0.0.1"));
    assert_null(strstr(err.msg, "s3cret"));
    assert_int_equal(uv_loop_close(&loop), 0);
    /* Not a URI libpq accepts. */
    o.path = "postgresql://vigil@db/vigil?no_such_option=1";
    err_clear(&err);
    assert_int_equal(store_open(&o, NULL, &st, &err), VIGIL_EINVAL);
    assert_non_null(strstr(err.msg, "not a usable PostgreSQL URI"));
    o.path = NULL;
    err_clear(&err);
    assert_int_equal(store_open(&o, NULL, &st, &err), VIGIL_EINVAL);
    store_close(NULL);
}

static void test_attach_errors(void **state)
{
    struct fx *f = *state;
    struct store *st = tool_open(f);
    struct store_opts o = {.flush_interval_ms = 5};
    struct vigil_err err = {0};
    struct bus *other;
    struct bus_limits lim;

    bus_limits_default(&lim);
    assert_int_equal(bus_create(&lim, &other), 0);
    assert_int_equal(store_attach_bus(st, other, NULL, &err), VIGIL_ESTATE);
    store_close(st);
    daemon_open(f, &o);
    err_clear(&err);
    assert_int_equal(store_attach_bus(f->st, f->bus, "t.{", &err),
                     VIGIL_EINVAL);
    err_clear(&err);
    assert_int_equal(store_attach_bus(f->st, other, NULL, &err), VIGIL_EINVAL);
    /* A second, overlapping selector keeps one copy of each sample. */
    err_clear(&err);
    assert_int_equal(store_attach_bus(f->st, f->bus, "t.*", &err), 0);
    vigil_series_id id = intern(f, "t.dup", NULL, NULL);
    bus_publish(f->bus, id, clock_wall_ns(), 1);
    want = (struct flush_wait){2, 0, 1};
    await(f, flushed);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM samples"), 1);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM series"), 1);
    daemon_close(f);
    bus_destroy(other);
}

/* ------------------------------------------------- hosts, PostgreSQL */

static void on_title(void *arg, const struct store_incident *x)
{
    snprintf(arg, 64, "%s", x->title);
}

/* Two agents in one database: each sees its own rows only, and its ids
 * go on from its own. */
static void test_two_hosts(void **state)
{
    struct fx *f = *state;
    struct store_opts oa = {.path = f->path, .host = "agent-a"};
    struct store_opts ob = {.path = f->path, .host = "agent-b"};
    struct store_opts od = {.flush_interval_ms = 5};
    struct vigil_err err = {0};
    struct store *a = NULL, *b = NULL, *other = NULL;
    struct seen *s = calloc(1, sizeof(*s));
    char title[64] = "";
    vigil_series_id id;

    assert_non_null(s);
    assert_int_equal(store_open(&oa, NULL, &a, &err), 0);
    assert_int_equal(store_open(&ob, NULL, &b, &err), 0);
    struct store_incident inc = {.id = store_next_incident_id(a),
                                 .rule = "r",
                                 .series = "",
                                 .title = "on a",
                                 .open = 1};
    assert_int_equal(store_put_incident(a, &inc), 0);
    inc.id = store_next_incident_id(b);
    inc.title = "on b";
    assert_int_equal(store_put_incident(b, &inc), 0);
    assert_int_equal(inc.id, 1); /* the same id, another host */
    assert_int_equal(store_list_incidents(a, 0, 0, on_inc, s), 0);
    assert_int_equal(s->n_inc, 1);
    assert_string_equal(s->titles[0], "on a");
    assert_int_equal(
        store_get_incident(b, 1, on_title, NULL, NULL, NULL, title), 0);
    assert_string_equal(title, "on b");
    store_close(a);
    store_close(b);

    /* Two daemons keep the same series, each under its host. */
    daemon_open(f, &od);
    od.path = f->path;
    od.host = "agent-b";
    assert_int_equal(store_open(&od, &f->loop, &other, &err), 0);
    assert_int_equal(store_attach_bus(other, f->bus, NULL, &err), 0);
    id = intern(f, "t.shared", NULL, NULL);
    for (int i = 0; i < 5; i++) {
        bus_publish(f->bus, id, clock_wall_ns() - S_NS + i, i);
    }
    want = (struct flush_wait){5, 0, 1};
    await(f, flushed);
    store_close(other);
    daemon_close(f);
    assert_int_equal(
        sql_int(f, "SELECT count(*) FROM series WHERE key = 't.shared'"), 2);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM samples"), 10);
    assert_int_equal(store_open(&ob, NULL, &b, &err), 0);
    memset(s, 0, sizeof(*s));
    assert_int_equal(store_history(b, "t.shared", 0, on_sample, NULL, s), 0);
    assert_int_equal(s->n_samples, 5);
    assert_int_equal(store_next_incident_id(b), 2);
    store_close(b);
    free(s);
}

/* Every other session on this test's database: the store's own. */
static void pg_kick(struct fx *f)
{
    char sql[256];

    snprintf(sql, sizeof(sql),
             "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
             " WHERE datname = '%s' AND pid <> pg_backend_pid()",
             f->pgdb);
    pg_admin(sql);
}

/* The server closes the store's connections between two flushes (a
 * restart, an administrator): the next flush reconnects and writes,
 * reads reconnect too, nothing is lost. */
static void test_pg_reconnect(void **state)
{
    struct fx *f = *state;
    struct store_opts o = {.flush_interval_ms = 5};
    struct store_stats stats;
    struct seen s = {0};
    struct done d = {0};
    vigil_series_id id;

    if (pg_base == NULL) {
        skip();
    }
    daemon_open(f, &o);
    id = intern(f, "t.re", NULL, NULL);
    for (int i = 0; i < 10; i++) {
        bus_publish(f->bus, id, clock_wall_ns() - 10 * S_NS + i, i);
    }
    want = (struct flush_wait){10, 0, 1};
    await(f, flushed);
    pg_kick(f);
    for (int i = 0; i < 10; i++) {
        bus_publish(f->bus, id, clock_wall_ns() - 5 * S_NS + i, 10 + i);
    }
    struct store_action a = {.id = 1,
                             .incident_id = 1,
                             .name = "n",
                             .kind = "exec",
                             .mode = "on",
                             .command = "[]"};
    assert_int_equal(store_put_action(f->st, &a, on_done, &d), 0);
    want = (struct flush_wait){20, 1, 0};
    await(f, flushed);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.status[0], 0);
    store_get_stats(f->st, &stats);
    assert_int_equal(stats.errors, 0);
    assert_int_equal(stats.samples_lost, 0);
    assert_int_equal(store_history(f->st, "t.re", 0, on_sample, NULL, &s), 0);
    assert_int_equal(s.n_samples, 20);
    daemon_close(f);
}

/* The server refuses connections for a while: flushes fail like a failed
 * disk (samples lost and counted, records kept, callbacks told), and
 * once it is back the next flush writes the records. */
static struct done down_done;

static int down_seen(struct fx *f)
{
    struct store_stats s;

    store_get_stats(f->st, &s);
    return s.errors >= 2 && down_done.n == 1;
}

static void test_pg_server_down(void **state)
{
    struct fx *f = *state;
    struct store_opts o = {.flush_interval_ms = 5};
    struct store_stats stats;
    struct seen s = {0};
    vigil_series_id id;
    char sql[128];

    if (pg_base == NULL) {
        skip();
    }
    memset(&down_done, 0, sizeof(down_done));
    daemon_open(f, &o);
    id = intern(f, "t.down", NULL, NULL);
    for (int i = 0; i < 5; i++) {
        bus_publish(f->bus, id, clock_wall_ns() - 10 * S_NS + i, i);
    }
    want = (struct flush_wait){5, 0, 1};
    await(f, flushed);
    snprintf(sql, sizeof(sql), "ALTER DATABASE %s ALLOW_CONNECTIONS false",
             f->pgdb);
    pg_admin(sql);
    pg_kick(f);
    for (int i = 0; i < 10; i++) {
        bus_publish(f->bus, id, clock_wall_ns() - 8 * S_NS + i, 100 + i);
    }
    struct store_action a = {.id = 1,
                             .incident_id = 1,
                             .name = "n",
                             .kind = "exec",
                             .mode = "on",
                             .command = "[]"};
    assert_int_equal(store_put_action(f->st, &a, on_done, &down_done), 0);
    await(f, down_seen);
    assert_int_equal(down_done.status[0], VIGIL_EIO);
    store_get_stats(f->st, &stats);
    assert_int_equal(stats.samples_written, 5);
    assert_int_equal(stats.samples_lost, 10);
    assert_int_equal(stats.records_pending, 1);
    /* Reads fail cleanly meanwhile. */
    assert_int_equal(store_history(f->st, "t.down", 0, on_sample, NULL, &s),
                     VIGIL_EIO);

    snprintf(sql, sizeof(sql), "ALTER DATABASE %s ALLOW_CONNECTIONS true",
             f->pgdb);
    pg_admin(sql);
    for (int i = 0; i < 5; i++) {
        bus_publish(f->bus, id, clock_wall_ns() - 5 * S_NS + i, 200 + i);
    }
    want = (struct flush_wait){10, 1, 0};
    await(f, flushed);
    assert_int_equal(down_done.n, 1); /* not called twice */
    memset(&s, 0, sizeof(s));
    assert_int_equal(store_history(f->st, "t.down", 0, on_sample, NULL, &s), 0);
    assert_int_equal(s.n_samples, 10);
    assert_true(s.sample_v[5] == 200);
    daemon_close(f);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM actions"), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tool_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tool_refused_record, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_daemon_history, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollup_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_action_committed_before_cb, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_interrupted_after_reopen, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_failing_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_buffer_full_and_close_flush, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_close_during_job, setup, teardown),
        cmocka_unit_test_setup_teardown(test_approve, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attach_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_hosts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_server_down, setup, teardown),
    };

    pg_base = getenv("VIGIL_TEST_PG");
    if (pg_base != NULL && pg_base[0] == '\0') {
        pg_base = NULL;
    }
    printf("store back end: %s\n",
           pg_base != NULL ? "PostgreSQL (VIGIL_TEST_PG)" : "SQLite");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
