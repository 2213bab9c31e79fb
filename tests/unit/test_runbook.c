/* Tests for runbook: reload keeps unchanged rules (same object, same
 * state), replaces changed ones (thresholds and edited predicates), drops
 * deleted ones, and rejects a broken file whole. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus.h"
#include "config.h"
#include "runbook.h"

#define SEC 1000000000LL

struct fx {
    char dir[64];
    char path[128];
    struct bus *bus;
    struct rb_engine *e;
    struct cfg_diag diag;
    int events;
};

static void write_rb(struct fx *f, const char *text)
{
    FILE *out = fopen(f->path, "w");

    assert_non_null(out);
    fputs(text, out);
    fclose(out);
}

static void on_event(void *arg, const struct rule_event *ev, const char *file)
{
    struct fx *f = arg;

    (void)ev;
    (void)file;
    f->events++;
}

static int load(struct fx *f)
{
    cfg_diag_init(&f->diag);
    return rb_engine_load(f->e, &f->diag);
}

static void setup(struct fx *f, const char *text)
{
    struct bus_limits lim;

    memset(f, 0, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/vigil-rb-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/a.lua", f->dir);
    write_rb(f, text);
    bus_limits_default(&lim);
    assert_int_equal(bus_create(&lim, &f->bus), 0);
    struct rb_env env = {.bus = f->bus, .rules_dir = f->dir};
    assert_int_equal(rb_engine_create(&env, &f->e), 0);
    rb_engine_observe(f->e, on_event, f);
    assert_int_equal(load(f), 1);
    assert_int_equal(f->diag.n, 0);
}

static void teardown(struct fx *f)
{
    rb_engine_destroy(f->e);
    bus_destroy(f->bus);
    unlink(f->path);
    rmdir(f->dir);
}

static const char V1[] =
    "local vigil = require 'vigil'\n"
    "vigil.threshold 'hot' { metric = 'm', crit = 10, nodata = false }\n"
    "vigil.threshold 'cold' { metric = 'm', direction = 'below',\n"
    "                         crit = -10, nodata = false }\n"
    "vigil.condition 'odd' { every = '10s',\n"
    "  when = function() return false end }\n";

static void test_reload_keeps_and_replaces(void **state)
{
    struct fx f;
    struct rule_set *rs;
    vigil_series_id id;
    struct rule *hot, *cold, *odd;

    (void)state;
    setup(&f, V1);
    rs = rb_engine_rules(f.e);
    assert_int_equal(bus_intern(f.bus, "m", NULL, 0, &id, NULL), 0);
    bus_publish(f.bus, id, 1 * SEC, 50);
    rb_engine_tick(f.e, 1 * SEC);
    assert_int_equal(f.events, 1); /* hot: ok -> critical */
    hot = rule_find(rs, "hot");
    cold = rule_find(rs, "cold");
    odd = rule_find(rs, "odd");
    assert_non_null(hot);

    /* Same text: every rule is the same object, hot is still critical. */
    assert_int_equal(load(&f), 1);
    assert_ptr_equal(rule_find(rs, "hot"), hot);
    assert_ptr_equal(rule_find(rs, "cold"), cold);
    assert_ptr_equal(rule_find(rs, "odd"), odd);
    bus_publish(f.bus, id, 2 * SEC, 50);
    assert_int_equal(f.events, 1);

    /* hot changes its level, odd its predicate only: both start fresh;
     * cold is untouched. */
    char v2[1024];
    snprintf(v2, sizeof(v2), "%s", V1);
    memcpy(strstr(v2, "crit = 10"), "crit = 20", 9);
    memcpy(strstr(v2, "return false"), "return nil  ", 12);
    write_rb(&f, v2);
    assert_int_equal(load(&f), 1);
    assert_ptr_not_equal(rule_find(rs, "hot"), hot);
    assert_ptr_not_equal(rule_find(rs, "odd"), odd);
    assert_ptr_equal(rule_find(rs, "cold"), cold);
    bus_publish(f.bus, id, 3 * SEC, 50);
    assert_int_equal(f.events, 2); /* the fresh hot goes critical again */

    /* A broken edit keeps everything as it was. */
    write_rb(&f, "local vigil = require 'vigil'\nvigil.threshold 'x' {\n");
    hot = rule_find(rs, "hot");
    assert_int_equal(load(&f), 1);
    assert_int_equal(f.diag.n, 1);
    assert_non_null(strstr(f.diag.msg[0], "a.lua:"));
    assert_ptr_equal(rule_find(rs, "hot"), hot);

    /* The file is deleted: its rules go. */
    unlink(f.path);
    assert_int_equal(load(&f), 0);
    assert_null(rule_find(rs, "hot"));
    assert_null(rule_find(rs, "odd"));
    teardown(&f);
}

static void test_names_across_files(void **state)
{
    struct fx f;
    char other[160];
    FILE *o;

    (void)state;
    setup(&f, V1);
    snprintf(other, sizeof(other), "%s/b.lua", f.dir);
    o = fopen(other, "w");
    assert_non_null(o);
    fputs("local vigil = require 'vigil'\n"
          "vigil.threshold 'hot' { metric = 'n', crit = 1 }\n",
          o);
    fclose(o);
    assert_int_equal(load(&f), 1);
    assert_int_equal(f.diag.n, 1);
    assert_non_null(strstr(f.diag.msg[0], "b.lua:2: rule 'hot' is already "
                                          "declared in"));
    unlink(other);
    teardown(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reload_keeps_and_replaces),
        cmocka_unit_test(test_names_across_files),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
