/*
 * ws_test.c - unit tests of the ws plugin's URL parser (ws_url) and
 * reconnection backoff (ws_backoff).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <vigil/plugin.h>

#include "ws_backoff.h"
#include "ws_url.h"

static void test_url_good(void **state)
{
    static const struct {
        const char *text;
        int tls, port;
        const char *host, *path, *host_header;
    } cases[] = {
        {"ws://example.com", 0, 80, "example.com", "/", "example.com"},
        {"wss://stream.exchange.io:9443/ws/btcusdt@trade", 1, 9443,
         "stream.exchange.io", "/ws/btcusdt@trade", "stream.exchange.io:9443"},
        {"ws://127.0.0.1:8765/feed?x=1&y=2#frag", 0, 8765, "127.0.0.1",
         "/feed?x=1&y=2", "127.0.0.1:8765"},
        {"ws://h?x=1", 0, 80, "h", "/?x=1", "h"},
        {"wss://[::1]:443/", 1, 443, "::1", "/", "[::1]"},
        {"ws://[fe80::1]:81", 0, 81, "fe80::1", "/", "[fe80::1]:81"},
        {"ws://h:65535#only-a-fragment/x", 0, 65535, "h", "/", "h:65535"},
    };
    struct ws_url u;
    const char *why = NULL;
    char hh[300];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(ws_url_parse(cases[i].text, &u, &why), 0);
        assert_int_equal(u.tls, cases[i].tls);
        assert_int_equal(u.port, cases[i].port);
        assert_string_equal(u.host, cases[i].host);
        assert_string_equal(u.path, cases[i].path);
        ws_url_host_header(&u, hh, sizeof(hh));
        assert_string_equal(hh, cases[i].host_header);
    }
}

static void test_url_bad(void **state)
{
    static const struct {
        const char *text, *why_has;
    } cases[] = {
        {"http://example.com/", "only ws:// and wss://"},
        {"example.com", "only ws:// and wss://"},
        {"ws://", "no host"},
        {"ws:///path", "no host"},
        {"ws://:80/", "no host"},
        {"ws://user:pw@host/", "user names"},
        {"ws://host:0/", "port"},
        {"ws://host:65536/", "port"},
        {"ws://host:99999999999999999999/", "port"},
        {"ws://host:/", "port"},
        {"ws://host:8o/", "port"},
        {"ws://ho st/", "space"},
        {"ws://host/a\tb", "space"},
        {"ws://[::1/", "closing"},
        {"ws://[::1]x/", "only ':PORT'"},
        {"ws://[]/", "IPv6"},
        {"ws://[zz]/", "IPv6"},
        {"ws://ho%73t/", "character"},
    };
    struct ws_url u;
    const char *why;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        why = NULL;
        assert_int_equal(ws_url_parse(cases[i].text, &u, &why), VIGIL_EINVAL);
        assert_non_null(why);
        if (strstr(why, cases[i].why_has) == NULL) {
            fail_msg("'%s': '%s' does not say '%s'", cases[i].text, why,
                     cases[i].why_has);
        }
    }
}

static void test_url_lengths(void **state)
{
    char text[WS_URL_HOST_MAX + WS_URL_PATH_MAX + 64];
    struct ws_url u;
    const char *why;

    (void)state;
    /* The longest host that fits, then one more byte. */
    memset(text, 0, sizeof(text));
    memcpy(text, "ws://", 5);
    memset(text + 5, 'a', WS_URL_HOST_MAX - 1);
    assert_int_equal(ws_url_parse(text, &u, &why), 0);
    text[5 + WS_URL_HOST_MAX - 1] = 'a';
    assert_int_equal(ws_url_parse(text, &u, &why), VIGIL_EINVAL);
    assert_non_null(strstr(why, "too long"));
    /* The longest path that fits, then one more byte. */
    memset(text, 0, sizeof(text));
    memcpy(text, "ws://h/", 7);
    memset(text + 7, 'p', WS_URL_PATH_MAX - 2);
    assert_int_equal(ws_url_parse(text, &u, &why), 0);
    assert_int_equal(strlen(u.path), WS_URL_PATH_MAX - 1);
    text[7 + WS_URL_PATH_MAX - 2] = 'p';
    assert_int_equal(ws_url_parse(text, &u, &why), VIGIL_EINVAL);
}

static void test_backoff(void **state)
{
    uint64_t rnd = 42;

    (void)state;
    /* rnd 0 takes nothing off: the capped doubling itself. */
    assert_int_equal(ws_backoff_ms(0, 500, 30000, 0), 500);
    assert_int_equal(ws_backoff_ms(1, 500, 30000, 0), 1000);
    assert_int_equal(ws_backoff_ms(5, 500, 30000, 0), 16000);
    assert_int_equal(ws_backoff_ms(6, 500, 30000, 0), 30000);
    assert_int_equal(ws_backoff_ms(4000000000u, 500, 30000, 0), 30000);
    /* The most jitter takes off half. */
    assert_int_equal(ws_backoff_ms(0, 500, 30000, 250), 250);
    assert_int_equal(ws_backoff_ms(0, 500, 30000, 251), 500);
    assert_int_equal(ws_backoff_ms(0, 10, 10, 5), 5);
    /* Always within [d/2, d], and not always the same. */
    int64_t lo = INT64_MAX, hi = 0;
    for (int i = 0; i < 10000; i++) {
        int64_t d = ws_backoff_ms(3, 500, 30000, ws_backoff_rand(&rnd));
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    assert_true(lo >= 2000 && hi <= 4000);
    assert_true(hi - lo > 1500);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_good),
        cmocka_unit_test(test_url_bad),
        cmocka_unit_test(test_url_lengths),
        cmocka_unit_test(test_backoff),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
