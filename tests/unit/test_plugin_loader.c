/* Tests for plug: loading, refusing broken plugins, instances, free
 * metrics, diagnostics, and a clean loop at the end. The broken plugins
 * live in tests/plugins/ and are built into $VIGIL_TEST_PLUGINS. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "bus.h"
#include "config.h"
#include "plug.h"

static const char *dir(void)
{
    const char *d = getenv("VIGIL_TEST_PLUGINS");

    assert_non_null(d);
    return d;
}

/* Open name and expect code with every fragment in the message. */
static void expect_refused(const char *name, int code, const char *frag1,
                           const char *frag2)
{
    struct plug_mod *m = (struct plug_mod *)1;
    struct vigil_err err = {0};

    assert_int_equal(plug_open(dir(), name, &m, &err), code);
    assert_null(m);
    assert_int_equal(err.code, code);
    assert_non_null(strstr(err.msg, frag1));
    if (frag2 != NULL) {
        assert_non_null(strstr(err.msg, frag2));
    }
}

static void test_open_good(void **state)
{
    struct plug_mod *m;
    struct vigil_err err = {0};

    (void)state;
    assert_int_equal(plug_open(dir(), "good", &m, &err), 0);
    assert_string_equal(plug_desc(m)->name, "good");
    assert_non_null(strstr(plug_path(m), "/good.so"));
    plug_close(m);
}

static void test_refuse_broken(void **state)
{
    (void)state;
    expect_refused("wrong_abi", VIGIL_EABI, "wrong_abi.so", "ABI version 999");
    expect_refused("small_struct", VIGIL_EABI, "small_struct.so", "16 bytes");
    expect_refused("no_symbol", VIGIL_EABI, "no_symbol.so",
                   "no 'vigil_plugin' symbol");
    expect_refused("bad_name", VIGIL_EINVAL, "bad_name.so",
                   "names plugin 'sys'");
    expect_refused("undefined_sym", VIGIL_EIO, "undefined_sym.so",
                   "bus_publish_directly");
    expect_refused("missing", VIGIL_ENOENT, "missing.so", "no such plugin");
    expect_refused("../etc", VIGIL_EINVAL, "bad plugin name", NULL);
}

static int diag_has(const struct cfg_diag *d, const char *a, const char *b)
{
    for (unsigned i = 0; i < d->n && i < CFG_DIAG_MAX; i++) {
        if (strstr(d->msg[i], a) && (b == NULL || strstr(d->msg[i], b))) {
            return 1;
        }
    }
    return 0;
}

struct fixture {
    uv_loop_t loop;
    struct bus *bus;
    struct cfg *cfg;
    struct plug_set *ps;
    struct cfg_diag diag;
};

/* clang-format off */
static const char conf_text[] =
    "[plugin good a]\n"         /* 1 */
    "target = alpha\n"          /* 2 */
    "interval = 20ms\n"         /* 3 */
    "[plugin good b]\n"         /* 4 */
    "target = beta\n"           /* 5 */
    "count = 7\n"               /* 6 */
    "interval = 20ms\n"         /* 7 */
    "[plugin init_fails]\n"     /* 8 */
    "[plugin wrong_abi]\n"      /* 9 */
    "[plugin good c]\n"         /* 10 */
    "target = gamma\n"          /* 11 */
    "count = many\n"            /* 12 */
    "[plugin good d]\n"         /* 13 */
    "[plugin good e]\n"         /* 14 */
    "target = eps\n"            /* 15 */
    "fail = yes\n"              /* 16 */
    "interval = 20ms\n"         /* 17 */
    "[plugin good f]\n"         /* 18 */
    "target = phi\n"            /* 19 */
    "interval = soon\n";        /* 20 */
/* clang-format on */

static void fixture_setup(struct fixture *f, int check_only)
{
    struct bus_limits lim;

    memset(f, 0, sizeof(*f));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    bus_limits_default(&lim);
    assert_int_equal(bus_create(&lim, &f->bus), 0);
    cfg_diag_init(&f->diag);
    assert_int_equal(cfg_load_string("t.ini", conf_text, &f->cfg, &f->diag), 0);
    struct plug_env env = {.loop = &f->loop,
                           .bus = f->bus,
                           .plugin_dir = dir(),
                           .default_interval_ms = 1000};
    assert_int_equal(plug_set_create(&env, &f->ps), 0);
    /* a, b and e are ready; c (bad count), d (no target), f (bad interval),
     * init_fails and wrong_abi are reported and skipped. A check runs no
     * init, so it cannot know init_fails will fail. */
    assert_int_equal(plug_set_configure(f->ps, f->cfg, check_only, &f->diag),
                     check_only ? 4 : 3);
}

static void fixture_teardown(struct fixture *f)
{
    plug_set_stop(f->ps);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    plug_set_destroy(f->ps);
    cfg_destroy(f->cfg);
    bus_destroy(f->bus);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

static void test_configure_reports(void **state)
{
    struct fixture f;

    (void)state;
    fixture_setup(&f, 0);
    assert_true(diag_has(&f.diag, "t.ini:8:", "init failed"));
    assert_true(diag_has(&f.diag, "t.ini:9:", "ABI version 999"));
    assert_true(diag_has(&f.diag, "t.ini:12:", "count"));
    assert_true(diag_has(&f.diag, "t.ini:13:", "target"));
    assert_true(diag_has(&f.diag, "t.ini:20:", "interval"));
    assert_int_equal(f.diag.n, 5);
    unsigned running, failed;
    plug_set_counts(f.ps, &running, &failed);
    assert_int_equal(running, 0);
    assert_int_equal(failed, 5);
    fixture_teardown(&f);
}

static void test_check_only_runs_no_init(void **state)
{
    struct fixture f;

    (void)state;
    fixture_setup(&f, 1);
    /* Without init, init_fails is not caught, and no series exist. */
    assert_false(diag_has(&f.diag, "t.ini:8:", NULL));
    assert_int_equal(f.diag.n, 4);
    assert_int_equal(bus_series_count(f.bus), 0);
    fixture_teardown(&f);
}

struct waiter {
    struct fixture *f;
    int seen_a, seen_b, seen_e_down;
};

static void on_sample(void *arg, vigil_series_id id, int64_t ts, double v)
{
    struct waiter *w = arg;
    const char *key = bus_series_key(w->f->bus, id);

    (void)ts;
    if (strcmp(key, "good.value{instance=\"a\",target=\"alpha\"}") == 0) {
        assert_true(v == 3.0);
        w->seen_a++;
    } else if (strcmp(key, "good.value{instance=\"b\",target=\"beta\"}") == 0) {
        assert_true(v == 7.0);
        w->seen_b++;
    } else if (strcmp(key, "good.up{instance=\"e\"}") == 0) {
        assert_true(v == 0.0);
        w->seen_e_down++;
    }
    if (w->seen_a >= 2 && w->seen_b >= 2 && w->seen_e_down >= 2) {
        uv_stop(&w->f->loop);
    }
}

static void test_collect_and_free_metrics(void **state)
{
    struct fixture f;
    struct bus_selector sel;
    struct bus_sub *sub;
    struct waiter w = {.f = &f};
    vigil_series_id id;
    struct vigil_label inst_a = {"instance", "a"};
    struct vigil_label inst_e = {"instance", "e"};

    (void)state;
    fixture_setup(&f, 0);
    assert_int_equal(bus_selector_parse("good.*", &sel, NULL), 0);
    assert_int_equal(bus_subscribe(f.bus, &sel, on_sample, NULL, &w, &sub), 0);
    plug_set_start(f.ps);
    uv_run(&f.loop, UV_RUN_DEFAULT); /* until on_sample stops it */
    assert_true(w.seen_a >= 2 && w.seen_b >= 2 && w.seen_e_down >= 2);

    assert_int_equal(bus_find(f.bus, "good.up", &inst_a, 1, &id), 0);
    assert_true(win_last(bus_window(f.bus, id))->v == 1.0);
    assert_int_equal(bus_find(f.bus, "good.collect_ms", &inst_a, 1, &id), 0);
    assert_true(win_last(bus_window(f.bus, id))->v >= 0.0);
    /* e fails every collect and says so through host->error. */
    assert_int_equal(bus_find(f.bus, "good.errors_total", &inst_e, 1, &id), 0);
    assert_true(win_last(bus_window(f.bus, id))->v >= 2.0);
    bus_unsubscribe(f.bus, sub);
    fixture_teardown(&f);
}

static void on_reply(void *arg, int status, const char *json)
{
    char *out = arg;

    assert_int_equal(status, 0);
    snprintf(out, 64, "%s", json);
}

static void test_diagnostics(void **state)
{
    struct fixture f;
    char out[64] = "";

    (void)state;
    fixture_setup(&f, 0);
    assert_non_null(plug_find_diag(f.ps, "good.echo"));
    assert_null(plug_find_diag(f.ps, "good.nothing"));
    assert_int_equal(
        plug_diag_run(f.ps, "good.echo", "{\"x\":1}", on_reply, out), 0);
    assert_string_equal(out, "{\"x\":1}");
    assert_int_equal(plug_diag_run(f.ps, "nope", NULL, on_reply, out),
                     VIGIL_ENOENT);
    fixture_teardown(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_good),
        cmocka_unit_test(test_refuse_broken),
        cmocka_unit_test(test_configure_reports),
        cmocka_unit_test(test_check_only_runs_no_init),
        cmocka_unit_test(test_collect_and_free_metrics),
        cmocka_unit_test(test_diagnostics),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
