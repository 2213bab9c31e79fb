/* Tests for exec: output, exit codes, a missing program, the timeout and
 * its kill, the output cap and the clean environment. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "exec.h"

struct got {
    int calls;
    struct exec_result r;
    char out[4096];
    char error[128];
};

static void on_done(void *arg, const struct exec_result *r)
{
    struct got *g = arg;

    g->calls++;
    g->r = *r;
    snprintf(g->out, sizeof(g->out), "%s", r->output);
    snprintf(g->error, sizeof(g->error), "%s", r->error ? r->error : "");
}

static void run(const char *const *argv, const char *const *env,
                int64_t timeout_ms, size_t cap, struct got *g)
{
    uv_loop_t loop;

    memset(g, 0, sizeof(*g));
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(exec_start(&loop, argv, env, timeout_ms * 1000000, cap,
                                on_done, g, NULL),
                     0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(g->calls, 1);
}

static void test_output_and_exit(void **state)
{
    const char *echo[] = {"echo", "hello", NULL};
    const char *three[] = {"/bin/sh", "-c", "echo out; echo err >&2; exit 3",
                           NULL};
    struct got g;

    (void)state;
    run(echo, NULL, 5000, 1024, &g);
    assert_true(g.r.spawned);
    assert_int_equal(g.r.exit_code, 0);
    assert_string_equal(g.out, "hello\n");
    run(three, NULL, 5000, 1024, &g);
    assert_int_equal(g.r.exit_code, 3);
    assert_non_null(strstr(g.out, "out\n"));
    assert_non_null(strstr(g.out, "err\n"));
}

static void test_missing_program(void **state)
{
    const char *argv[] = {"/nonexistent/vigil-no-such-program", NULL};
    struct got g;

    (void)state;
    run(argv, NULL, 1000, 64, &g);
    assert_false(g.r.spawned);
    assert_non_null(strstr(g.error, "/nonexistent/vigil-no-such-program"));
    assert_non_null(strstr(g.error, "no such file"));
}

static void test_timeout_kills(void **state)
{
    /* The shell ignores SIGTERM, so the kill after the grace is needed. */
    const char *argv[] = {"/bin/sh", "-c", "trap '' TERM; sleep 30", NULL};
    struct got g;

    (void)state;
    run(argv, NULL, 100, 64, &g);
    assert_true(g.r.timed_out);
    assert_int_equal(g.r.term_signal, SIGKILL);
    assert_true(g.r.duration_ns < 20 * 1000000000LL); /* not the 30 s */
}

static void test_output_cap(void **state)
{
    const char *argv[] = {"/bin/sh", "-c",
                          "head -c 100000 /dev/zero | tr "
                          "'\\0' x",
                          NULL};
    struct got g;

    (void)state;
    run(argv, NULL, 5000, 1000, &g);
    assert_int_equal(g.r.output_len, 1000);
    assert_int_equal(g.r.output_dropped, 99000);
}

static void test_clean_env(void **state)
{
    const char *argv[] = {"env", NULL};
    const char *env[] = {"VIGIL_INCIDENT=42", NULL};
    struct got g;

    (void)state;
    setenv("VIGIL_SECRET_FROM_PARENT", "x", 1);
    run(argv, env, 5000, 4096, &g);
    assert_non_null(strstr(g.out, "VIGIL_INCIDENT=42\n"));
    assert_non_null(strstr(g.out, "PATH=/usr/local/sbin"));
    assert_null(strstr(g.out, "VIGIL_SECRET_FROM_PARENT"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_output_and_exit),
        cmocka_unit_test(test_missing_program),
        cmocka_unit_test(test_timeout_kills),
        cmocka_unit_test(test_output_cap),
        cmocka_unit_test(test_clean_env),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
