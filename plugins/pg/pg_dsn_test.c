/*
 * pg_dsn_test.c - unit tests of the pg plugin's connection string: the
 * name shown in logs never holds a password or options, bad strings are
 * configuration errors with libpq's reason, the parameters given to libpq
 * put vigil's defaults first, and host names are resolved into
 * addresses (localhost, which needs no DNS server).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <vigil/plugin.h>

#include "pg_dsn.h"

/* The value libpq would use for key: the last one given. */
static const char *param(const char **keys, const char **vals, const char *key)
{
    const char *v = NULL;

    for (size_t i = 0; keys[i] != NULL; i++) {
        if (strcmp(keys[i], key) == 0) {
            v = vals[i];
        }
    }
    return v;
}

static void shown_has_no_secret(void **state)
{
    static const char *const dsns[] = {
        "postgresql://mon:s3cret@db.example:6432/app?options=-c%20x%3Dy",
        "host=127.0.0.1 port=5433 user=mon password=s3cret dbname=app "
        "options='-c x=y'",
    };
    struct pg_dsn d;
    char err[256];

    (void)state;
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(pg_dsn_parse(&d, dsns[i], err, sizeof(err)), 0);
        assert_null(strstr(d.shown, "s3cret"));
        assert_null(strstr(d.shown, "x=y"));
        assert_non_null(strstr(d.shown, "mon@"));
        assert_non_null(strstr(d.shown, "/app"));
        assert_string_equal(d.dbname, "app");
        pg_dsn_fini(&d);
    }
    assert_int_equal(pg_dsn_parse(&d, dsns[0], err, sizeof(err)), 0);
    assert_string_equal(d.shown, "postgresql://mon@db.example:6432/app");
    assert_true(d.need_resolve);
    pg_dsn_fini(&d);
}

static void bad_dsn_is_config_error(void **state)
{
    struct pg_dsn d;
    char err[256];

    (void)state;
    assert_int_equal(
        pg_dsn_parse(&d, "host=x password=s3cret bogus", err, sizeof(err)),
        VIGIL_ECONFIG);
    assert_non_null(strstr(err, "not a PostgreSQL connection string"));
    assert_null(strchr(err, '\n'));
    pg_dsn_fini(&d);
    assert_int_equal(pg_dsn_parse(&d, "nosuchoption=1", err, sizeof(err)),
                     VIGIL_ECONFIG);
    assert_non_null(strstr(err, "nosuchoption"));
    pg_dsn_fini(&d);
    pg_dsn_fini(NULL);
}

static void need_resolve_only_for_names(void **state)
{
    static const struct {
        const char *dsn;
        int need;
    } cases[] = {
        {"host=127.0.0.1", 0},
        {"host=::1", 0},
        {"host=/var/run/postgresql", 0},
        {"host=db.example hostaddr=10.0.0.1", 0},
        {"host=db.example", 1},
        {"host=127.0.0.1,db.example", 1},
        {"postgresql://localhost/x", 1},
    };
    struct pg_dsn d;
    char err[256];

    (void)state;
    unsetenv("PGHOST");
    unsetenv("PGHOSTADDR");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(pg_dsn_parse(&d, cases[i].dsn, err, sizeof(err)), 0);
        if (d.need_resolve != cases[i].need) {
            fail_msg("%s: need_resolve %d", cases[i].dsn, d.need_resolve);
        }
        pg_dsn_fini(&d);
    }
}

static void params_defaults_then_dsn(void **state)
{
    const char *keys[PG_DSN_PARAMS_MAX + 1], *vals[PG_DSN_PARAMS_MAX + 1];
    struct pg_dsn_hosts h;
    struct pg_dsn d;
    char err[256];

    (void)state;
    assert_int_equal(pg_dsn_parse(&d,
                                  "host=127.0.0.1 keepalives_idle=5 "
                                  "application_name=me password=pw",
                                  err, sizeof(err)),
                     0);
    pg_dsn_params(&d, NULL, keys, vals);
    assert_string_equal(param(keys, vals, "keepalives_idle"), "5");
    assert_string_equal(param(keys, vals, "keepalives"), "1");
    assert_string_equal(param(keys, vals, "fallback_application_name"),
                        "vigil");
    assert_string_equal(param(keys, vals, "client_encoding"), "UTF8");
    assert_string_equal(param(keys, vals, "application_name"), "me");
    assert_string_equal(param(keys, vals, "password"), "pw");
    assert_null(param(keys, vals, "hostaddr"));
    memset(&h, 0, sizeof(h));
    snprintf(h.host, sizeof(h.host), "a,a");
    snprintf(h.hostaddr, sizeof(h.hostaddr), "10.0.0.1,10.0.0.2");
    snprintf(h.port, sizeof(h.port), "5432,5432");
    pg_dsn_params(&d, &h, keys, vals);
    assert_string_equal(param(keys, vals, "host"), "a,a");
    assert_string_equal(param(keys, vals, "hostaddr"), "10.0.0.1,10.0.0.2");
    pg_dsn_fini(&d);
}

static void resolve_expands_names(void **state)
{
    struct pg_dsn_hosts h;
    char err[256];

    (void)state;
    assert_int_equal(pg_dsn_resolve("localhost", "5433", &h, err, sizeof(err)),
                     0);
    assert_non_null(strstr(h.hostaddr, "127.0.0.1"));
    assert_true(strncmp(h.host, "localhost", 9) == 0);
    assert_true(strncmp(h.port, "5433", 4) == 0);
    /* A socket directory and an address pass through as they are (no
     * hostaddr), the port list following each host. */
    assert_int_equal(
        pg_dsn_resolve("/tmp,10.1.2.3", "1,2", &h, err, sizeof(err)), 0);
    assert_string_equal(h.host, "/tmp,10.1.2.3");
    assert_string_equal(h.hostaddr, ","); /* no lookup needed */
    assert_string_equal(h.port, "1,2");
    /* .invalid never resolves (RFC 6761). */
    assert_int_equal(pg_dsn_resolve("nohost.invalid", "", &h, err, sizeof(err)),
                     VIGIL_EIO);
    assert_non_null(strstr(err, "nohost.invalid"));
}

static void oneline(void **state)
{
    char out[64];

    (void)state;
    pg_oneline(out, sizeof(out), "FATAL:  a\nDETAIL:  b\n");
    assert_string_equal(out, "FATAL: a; DETAIL: b");
    pg_oneline(out, sizeof(out), "server closed\n\tThis probably\n");
    assert_string_equal(out, "server closed; This probably");
    pg_oneline(out, 8, "0123456789");
    assert_string_equal(out, "0123456");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(shown_has_no_secret),
        cmocka_unit_test(bad_dsn_is_config_error),
        cmocka_unit_test(need_resolve_only_for_names),
        cmocka_unit_test(params_defaults_then_dsn),
        cmocka_unit_test(resolve_expands_names),
        cmocka_unit_test(oneline),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
