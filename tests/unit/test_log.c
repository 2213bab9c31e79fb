/* Tests for log: secrets never reach the log, levels parse. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "log.h"

static void redacted(const char *in, const char *want)
{
    char buf[256];

    snprintf(buf, sizeof(buf), "%s", in);
    log_redact(buf);
    assert_string_equal(buf, want);
}

static void test_redact(void **state)
{
    (void)state;
    redacted("host=db password=hunter2 port=5432",
             "host=db password=*** port=5432");
    redacted("postgresql://app:s3cret@db:5432/x",
             "postgresql://app:***@db:5432/x");
    redacted("Authorization token: abc.def", "Authorization token: ***");
    redacted("api_key=K1&x=2", "api_key=***&x=2");
    redacted("PASSWORD='x y' next", "PASSWORD='***' next");
    /* Not secrets: a word that only contains a key, a URL without one. */
    redacted("tokens_total=5", "tokens_total=5");
    redacted("http://host:8080/path", "http://host:8080/path");
    redacted("nothing here", "nothing here");
}

static void test_levels(void **state)
{
    int l = -1;

    (void)state;
    assert_int_equal(log_level_parse("debug", &l), 0);
    assert_int_equal(l, VIGIL_LOG_DEBUG);
    assert_int_equal(log_level_parse("WARNING", &l), 0);
    assert_int_equal(l, VIGIL_LOG_WARN);
    assert_int_equal(log_level_parse("loud", &l), VIGIL_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redact),
        cmocka_unit_test(test_levels),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
