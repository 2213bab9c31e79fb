/* Tests for ruletest: the promtool series notation, and a test file run
 * end to end that must report its failures with file:line. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ruletest.h"

static void expect_series(const char *text, const double *want, int n)
{
    double v[64];
    char err[128] = "";
    int got = rtest_parse_series(text, v, 64, err, sizeof(err));

    if (got != n) {
        fail_msg("'%s': %d values, want %d (%s)", text, got, n, err);
    }
    for (int i = 0; i < n; i++) {
        if (isnan(want[i])) {
            assert_true(isnan(v[i]));
        } else {
            assert_true(v[i] == want[i]);
        }
    }
}

static void test_notation(void **state)
{
    (void)state;
    expect_series("1 2 3", (double[]){1, 2, 3}, 3);
    expect_series("5x3", (double[]){5, 5, 5, 5}, 4);
    expect_series("1+2x3", (double[]){1, 3, 5, 7}, 4);
    expect_series("10-1.5x2", (double[]){10, 8.5, 7}, 3);
    expect_series("-3", (double[]){-3}, 1);
    expect_series("1 _ 2", (double[]){1, NAN, 2}, 3);
    expect_series("_x2 7", (double[]){NAN, NAN, 7}, 3);
    expect_series("  4\t 5 ", (double[]){4, 5}, 2);
    expect_series("", NULL, 0);
}

static void test_notation_errors(void **state)
{
    static const char *const bad[] = {"abc", "1x", "1xq", "1+x3", "1*2", "x3"};
    double v[8];
    char err[128];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (rtest_parse_series(bad[i], v, 8, err, sizeof(err)) != -1) {
            fail_msg("accepted '%s'", bad[i]);
        }
        assert_true(err[0] != '\0');
    }
    /* More samples than room: refused, not truncated. */
    assert_int_equal(rtest_parse_series("1x20", v, 8, err, sizeof(err)), -1);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_run_reports(void **state)
{
    char dir[] = "/tmp/vigil-rtest-XXXXXX";
    char rb[256], tf[256], out[4096] = "";
    FILE *o = tmpfile();

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(rb, sizeof(rb), "%s/r.lua", dir);
    snprintf(tf, sizeof(tf), "%s/r_test.lua", dir);
    write_file(rb, "local vigil = require 'vigil'\n"
                   "vigil.threshold 'hot' { metric = 'm', crit = 10 }\n");
    write_file(tf, "local test = require 'vigil.test'\n"
                   "test.runbooks { 'r.lua' }\n"
                   "test.case 'passes' {\n"
                   "  input = { m = '1 20' },\n"
                   "  expect = { { at = '10s', rule = 'hot', "
                   "state = 'critical' } },\n"
                   "}\n"
                   "test.case 'fails' {\n"
                   "  input = { m = '1 2' },\n"
                   "  expect = { { at = '10s', rule = 'hot', "
                   "state = 'critical' } },\n"
                   "}\n");
    const char *paths[] = {dir};
    assert_int_equal(rtest_run(paths, 1, NULL, o), 1);
    rewind(o);
    size_t n = fread(out, 1, sizeof(out) - 1, o);
    out[n] = '\0';
    fclose(o);
    assert_non_null(strstr(out, "r_test.lua:7: case 'fails': expect[1] at "
                                "10s: rule 'hot' is ok, expected critical"));
    assert_null(strstr(out, "case 'passes'"));
    assert_non_null(strstr(out, "1 passed, 1 failed\n"));
    unlink(rb);
    unlink(tf);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_notation),
        cmocka_unit_test(test_notation_errors),
        cmocka_unit_test(test_run_reports),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
