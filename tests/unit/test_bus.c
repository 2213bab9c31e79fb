/* Unit tests for core/bus.c: interning and canonical keys, validation,
 * limits, selectors, subscriptions (exact and pattern, before and after
 * series creation), unsubscribing (also from a callback), bus_stat and
 * bus_reserve. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"

#define L(k, v)                                                                \
    {                                                                          \
        (k), (v)                                                               \
    }
#define NL(a) (sizeof(a) / sizeof((a)[0]))

/* Series per chunk in bus.c (BUS_CHUNK): crossing it allocates. */
#define BUS_CHUNK_TEST 1024u

/* ---------------------------------------------------------------- helpers */

static struct bus *new_bus(uint32_t max_series, uint32_t win_default,
                           uint32_t win_max)
{
    struct bus_limits lim;
    struct bus *bus = NULL;

    bus_limits_default(&lim);
    if (max_series != 0) {
        lim.max_series = max_series;
        lim.window_default = win_default;
        lim.window_max = win_max;
    }
    assert_int_equal(bus_create(&lim, &bus), 0);
    assert_non_null(bus);
    return bus;
}

static vigil_series_id intern(struct bus *bus, const char *name,
                              const struct vigil_label *l, size_t n)
{
    struct vigil_err err = {0};
    vigil_series_id id = UINT32_MAX;
    int rc = bus_intern(bus, name, l, n, &id, &err);

    if (rc != 0) {
        fail_msg("intern %s: %d %s", name, rc, err.msg);
    }
    return id;
}

static void parse(const char *text, struct bus_selector *sel)
{
    struct vigil_err err = {0};

    if (bus_selector_parse(text, sel, &err) != 0) {
        fail_msg("parse '%s': %s", text, err.msg);
    }
}

/* What a subscriber saw. */
#define REC_MAX 64
struct rec {
    char tag;
    int nsamples;
    vigil_series_id ids[REC_MAX];
    int64_t ts[REC_MAX];
    double v[REC_MAX];
    int nseries;
    vigil_series_id series[REC_MAX];
    /* Optional actions from inside a callback. */
    struct bus *bus;
    struct bus_sub *self;
    struct bus_sub *victim;
};

/* Order in which subscribers were called, by tag. */
static char order[REC_MAX + 1];
static size_t norder;

static void rec_sample(void *arg, vigil_series_id id, int64_t ts, double v)
{
    struct rec *r = arg;

    assert_true(r->nsamples < REC_MAX);
    r->ids[r->nsamples] = id;
    r->ts[r->nsamples] = ts;
    r->v[r->nsamples] = v;
    r->nsamples++;
    if (norder < REC_MAX) {
        order[norder++] = r->tag;
        order[norder] = '\0';
    }
}

static void rec_series(void *arg, vigil_series_id id)
{
    struct rec *r = arg;

    assert_true(r->nseries < REC_MAX);
    r->series[r->nseries++] = id;
}

static void order_reset(void)
{
    norder = 0;
    order[0] = '\0';
}

static void subscribe(struct bus *bus, const char *text, struct rec *r,
                      struct bus_sub **sub)
{
    struct bus_selector sel;

    parse(text, &sel);
    assert_int_equal(bus_subscribe(bus, &sel, rec_sample, rec_series, r, sub),
                     0);
    assert_non_null(*sub);
}

/* ---------------------------------------------------------------- tests */

static void test_create_destroy(void **state)
{
    struct bus_limits lim;
    struct bus *bus = NULL;

    (void)state;
    assert_int_equal(bus_create(NULL, &bus), 0);
    assert_int_equal(bus_series_count(bus), 0);
    assert_int_equal(bus_samples_total(bus), 0);
    bus_destroy(bus);
    bus_destroy(NULL);

    bus_limits_default(&lim);
    assert_int_equal(lim.max_series, 100000);
    assert_int_equal(lim.window_default, 120);
    assert_int_equal(lim.window_max, 100000);
    lim.max_series = 0;
    assert_int_equal(bus_create(&lim, &bus), VIGIL_EINVAL);
    assert_null(bus);
    bus_limits_default(&lim);
    lim.window_default = 0;
    assert_int_equal(bus_create(&lim, &bus), VIGIL_EINVAL);
    bus_limits_default(&lim);
    lim.window_max = lim.window_default - 1;
    assert_int_equal(bus_create(&lim, &bus), VIGIL_EINVAL);
}

static void test_intern_canonical(void **state)
{
    struct bus *bus = new_bus(0, 0, 0);
    const struct vigil_label ab[] = {L("b", "2"), L("a", "1")};
    const struct vigil_label ba[] = {L("a", "1"), L("b", "2")};
    const struct vigil_label esc[] = {L("q", "x\"y\\z")};
    const struct vigil_label three[] = {L("zone", "eu"), L("a_b", "x"),
                                        L("_k", "=,{}")};
    const struct vigil_label *l;
    vigil_series_id id1, id2, id3, id4, id5;
    size_t n;

    (void)state;
    id1 = intern(bus, "m.x", ab, 2);
    id2 = intern(bus, "m.x", ba, 2);
    assert_int_equal(id1, 0);
    assert_int_equal(id2, id1);
    assert_string_equal(bus_series_key(bus, id1), "m.x{a=\"1\",b=\"2\"}");
    assert_string_equal(bus_series_name(bus, id1), "m.x");
    l = bus_series_labels(bus, id1, &n);
    assert_int_equal(n, 2);
    assert_string_equal(l[0].key, "a");
    assert_string_equal(l[0].value, "1");
    assert_string_equal(l[1].key, "b");
    assert_string_equal(l[1].value, "2");

    id3 = intern(bus, "m.x", NULL, 0);
    assert_int_equal(id3, 1);
    assert_string_equal(bus_series_key(bus, id3), "m.x");
    assert_string_equal(bus_series_name(bus, id3), "m.x");
    bus_series_labels(bus, id3, &n);
    assert_int_equal(n, 0);

    /* " and \ are escaped in the key, not in the label. */
    id4 = intern(bus, "m", esc, 1);
    assert_string_equal(bus_series_key(bus, id4), "m{q=\"x\\\"y\\\\z\"}");
    l = bus_series_labels(bus, id4, &n);
    assert_string_equal(l[0].value, "x\"y\\z");

    id5 = intern(bus, "m", three, 3);
    assert_string_equal(bus_series_key(bus, id5),
                        "m{_k=\"=,{}\",a_b=\"x\",zone=\"eu\"}");
    assert_int_equal(bus_series_count(bus), 4);

    /* Out-of-range ids give nothing rather than garbage. */
    assert_null(bus_series_key(bus, 4));
    assert_null(bus_series_name(bus, 4));
    assert_null(bus_window(bus, 4));
    assert_null(bus_series_labels(bus, 4, &n));
    assert_int_equal(n, 0);
    bus_destroy(bus);
}

static void test_intern_idempotent(void **state)
{
    struct bus *bus = new_bus(0, 0, 0);
    const struct vigil_label a[] = {L("host", "h1"), L("cpu", "0")};
    const struct vigil_label other[] = {L("host", "h1"), L("cpu", "1")};
    const struct vigil_label empty[] = {L("host", "h1"), L("cpu", "")};
    const struct vigil_label host[] = {L("host", "h1")};
    vigil_series_id id, again, found;

    (void)state;
    id = intern(bus, "sys.cpu.user_pct", a, 2);
    for (int i = 0; i < 5; i++) {
        again = intern(bus, "sys.cpu.user_pct", a, 2);
        assert_int_equal(again, id);
    }
    assert_int_equal(bus_series_count(bus), 1);
    assert_int_equal(intern(bus, "sys.cpu.user_pct", other, 2), 1);
    assert_int_equal(bus_series_count(bus), 2);

    assert_int_equal(bus_find(bus, "sys.cpu.user_pct", a, 2, &found), 0);
    assert_int_equal(found, id);
    assert_int_equal(bus_find(bus, "sys.cpu.user_pct", NULL, 0, &found),
                     VIGIL_ENOENT);
    assert_int_equal(bus_find(bus, "nope", NULL, 0, &found), VIGIL_ENOENT);
    assert_int_equal(bus_find(bus, "bad name", NULL, 0, &found), VIGIL_ENOENT);
    assert_int_equal(bus_series_count(bus), 2);

    /* An empty value is the same as no label: selectors cannot tell. */
    id = intern(bus, "sys.cpu.user_pct", empty, 2);
    assert_int_equal(id, intern(bus, "sys.cpu.user_pct", host, 1));
    assert_string_equal(bus_series_key(bus, id),
                        "sys.cpu.user_pct{host=\"h1\"}");
    bus_destroy(bus);
}

static void test_intern_invalid(void **state)
{
    char longname[VIGIL_NAME_MAX + 1], longkey[VIGIL_LABEL_KEY_MAX + 1];
    char longval[VIGIL_LABEL_VALUE_MAX + 1];
    struct vigil_label many[VIGIL_LABELS_MAX + 1];
    char keys[VIGIL_LABELS_MAX + 1][16];
    struct bus *bus = new_bus(0, 0, 0);
    struct vigil_err err;
    vigil_series_id id;

    (void)state;
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    memset(longkey, 'k', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = '\0';
    memset(longval, 'v', sizeof(longval) - 1);
    longval[sizeof(longval) - 1] = '\0';
    for (int i = 0; i <= VIGIL_LABELS_MAX; i++) {
        snprintf(keys[i], sizeof(keys[i]), "k%d", i);
        many[i].key = keys[i];
        many[i].value = "v";
    }

    const struct {
        const char *name;
        struct vigil_label l[3];
        size_t n;
        const char *msg;
    } bad[] = {
        {"", {{0}}, 0, "series name is empty"},
        {NULL, {{0}}, 0, "series name is empty"},
        {"1abc", {{0}}, 0, "series name '1abc': '1' at position 1"},
        {"a-b", {{0}}, 0, "series name 'a-b': '-' at position 2"},
        {"a b", {{0}}, 0, "series name 'a b': ' ' at position 2"},
        {".a", {{0}}, 0, "series name '.a'"},
        {longname, {{0}}, 0, "is longer than 127 bytes"},
        {"m.bad", {L("", "x")}, 1, "series 'm.bad': label key is empty"},
        {"m.bad", {L(NULL, "x")}, 1, "series 'm.bad': label key is empty"},
        {"m.bad", {L("1a", "x")}, 1, "series 'm.bad': label key '1a'"},
        {"m.bad", {L("a.b", "x")}, 1, "label key 'a.b': '.' at position 2"},
        {"m.bad", {L(longkey, "x")}, 1, "longer than 63 bytes"},
        {"m.bad",
         {L("k", "x\ny")},
         1,
         "series 'm.bad': label 'k' value has byte 0x0a at position 2"},
        {"m.bad", {L("k", longval)}, 1, "value is longer than 255 bytes"},
        {"m.bad", {L("k", NULL)}, 1, "series 'm.bad': label 'k' has no value"},
        {"m.bad",
         {L("a", "1"), L("b", "2"), L("a", "3")},
         3,
         "series 'm.bad': duplicate label key 'a'"},
        {"m.bad", {L("a", ""), L("a", "3")}, 2, "duplicate label key 'a'"},
    };

    for (size_t i = 0; i < NL(bad); i++) {
        err_clear(&err);
        assert_int_equal(
            bus_intern(bus, bad[i].name, bad[i].l, bad[i].n, &id, &err),
            VIGIL_EINVAL);
        assert_int_equal(err.code, VIGIL_EINVAL);
        if (strstr(err.msg, bad[i].msg) == NULL) {
            fail_msg("case %zu: message '%s' lacks '%s'", i, err.msg,
                     bad[i].msg);
        }
    }
    err_clear(&err);
    assert_int_equal(
        bus_intern(bus, "m.bad", many, VIGIL_LABELS_MAX + 1, &id, &err),
        VIGIL_EINVAL);
    assert_non_null(strstr(err.msg, "series 'm.bad': 17 labels, at most 16"));
    err_clear(&err);
    assert_int_equal(bus_intern(bus, "m.bad", NULL, 1, &id, &err),
                     VIGIL_EINVAL);
    assert_non_null(strstr(err.msg, "labels missing"));
    assert_int_equal(bus_series_count(bus), 0);

    /* The limits themselves are fine. */
    longname[VIGIL_NAME_MAX - 1] = '\0';
    longkey[VIGIL_LABEL_KEY_MAX - 1] = '\0';
    longval[VIGIL_LABEL_VALUE_MAX - 1] = '\0';
    {
        const struct vigil_label edge[] = {L(longkey, longval)};

        intern(bus, longname, edge, 1);
        intern(bus, "m", many, VIGIL_LABELS_MAX);
        intern(bus, "_a9.b_.c", NULL, 0);
    }
    assert_int_equal(bus_series_count(bus), 3);
    bus_destroy(bus);
}

static void test_series_limit(void **state)
{
    struct bus *bus = new_bus(3, 4, 8);
    const struct vigil_label l[] = {L("k", "v")};
    struct vigil_err err = {0};
    vigil_series_id id = 77;

    (void)state;
    assert_int_equal(intern(bus, "a", NULL, 0), 0);
    assert_int_equal(intern(bus, "b", NULL, 0), 1);
    assert_int_equal(intern(bus, "c", l, 1), 2);
    assert_int_equal(bus_intern(bus, "d", l, 1, &id, &err), VIGIL_ELIMIT);
    assert_int_equal(err.code, VIGIL_ELIMIT);
    assert_int_equal(id, 77);
    assert_non_null(strstr(err.msg, "series limit reached"));
    assert_non_null(strstr(err.msg, "max_series = 3"));
    assert_non_null(strstr(err.msg, "d{k=\"v\"}"));
    /* Existing series are still found. */
    assert_int_equal(intern(bus, "c", l, 1), 2);
    assert_int_equal(bus_series_count(bus), 3);
    bus_destroy(bus);
}

/* Enough series to grow the hash table many times and cross chunks. */
static void test_many_series(void **state)
{
    enum { N = 5000 };
    struct bus *bus = new_bus(N, 2, 2);
    struct vigil_err err = {0};
    char val[16], key[64];
    vigil_series_id id;

    (void)state;
    for (uint32_t i = 0; i < N; i++) {
        const struct vigil_label l[] = {L("i", val)};

        snprintf(val, sizeof(val), "%u", i);
        assert_int_equal(intern(bus, "s", l, 1), i);
        bus_publish(bus, i, 1, (double)i);
    }
    for (uint32_t i = 0; i < N; i++) {
        const struct vigil_label l[] = {L("i", val)};

        snprintf(val, sizeof(val), "%u", i);
        assert_int_equal(bus_find(bus, "s", l, 1, &id), 0);
        assert_int_equal(id, i);
        snprintf(key, sizeof(key), "s{i=\"%u\"}", i);
        assert_string_equal(bus_series_key(bus, i), key);
        assert_true(win_last(bus_window(bus, i))->v == (double)i);
    }
    assert_int_equal(bus_intern(bus, "t", NULL, 0, &id, &err), VIGIL_ELIMIT);
    assert_int_equal(bus_samples_total(bus), N);
    bus_destroy(bus);
}

static void test_selector_parse_valid(void **state)
{
    struct bus_selector sel;

    (void)state;
    parse("cpu", &sel);
    assert_string_equal(sel.name, "cpu");
    assert_int_equal(sel.n, 0);

    parse("  sys.cpu.*  ", &sel);
    assert_string_equal(sel.name, "sys.cpu.*");
    assert_int_equal(sel.n, 0);

    parse("x{}", &sel);
    assert_string_equal(sel.name, "x");
    assert_int_equal(sel.n, 0);

    parse("x{a=b}", &sel);
    assert_int_equal(sel.n, 1);
    assert_string_equal(sel.m[0].key, "a");
    assert_string_equal(sel.m[0].value, "b");
    assert_int_equal(sel.m[0].negate, 0);

    parse("x{a!=b*,c=}", &sel);
    assert_int_equal(sel.n, 2);
    assert_string_equal(sel.m[0].key, "a");
    assert_string_equal(sel.m[0].value, "b*");
    assert_int_equal(sel.m[0].negate, 1);
    assert_string_equal(sel.m[1].key, "c");
    assert_string_equal(sel.m[1].value, "");
    assert_int_equal(sel.m[1].negate, 0);

    /* Quotes: \" and \\ unescape, other backslashes stay for fnmatch. */
    parse("x { a = \"q\\\"uo,te\" , b != \"\\\\d\\*\" , c=\"\" }", &sel);
    assert_string_equal(sel.name, "x");
    assert_int_equal(sel.n, 3);
    assert_string_equal(sel.m[0].value, "q\"uo,te");
    assert_string_equal(sel.m[1].key, "b");
    assert_string_equal(sel.m[1].value, "\\d\\*");
    assert_int_equal(sel.m[1].negate, 1);
    assert_string_equal(sel.m[2].value, "");

    parse("x{a=b,}", &sel);
    assert_int_equal(sel.n, 1);

    parse("[!a]*{x=[0-9]*,y=a=b}", &sel);
    assert_string_equal(sel.name, "[!a]*");
    assert_string_equal(sel.m[0].value, "[0-9]*");
    assert_string_equal(sel.m[1].value, "a=b");

    parse("x{a=1,b=2,c=3,d=4,e=5,f=6,g=7,h=8}", &sel);
    assert_int_equal(sel.n, BUS_MATCHERS_MAX);
    assert_string_equal(sel.m[7].key, "h");
    assert_string_equal(sel.m[7].value, "8");
}

static void test_selector_parse_errors(void **state)
{
    char longname[VIGIL_NAME_MAX + 8], longkey[VIGIL_LABEL_KEY_MAX + 16];
    char longval[VIGIL_LABEL_VALUE_MAX + 16];
    const struct {
        const char *text;
        const char *msg;
    } exact[] = {
        {"x{", "selector 'x{': expected '}' at column 3"},
        {"", "selector '': expected a metric name at column 1"},
        {"{a=b}", "selector '{a=b}': expected a metric name at column 1"},
        {"x{a}", "selector 'x{a}': expected '=' or '!=' at column 4"},
        {"x{a!b}", "selector 'x{a!b}': expected '=' or '!=' at column 4"},
        {"x{a=\"b}",
         "selector 'x{a=\"b}': unterminated quoted value at column 5"},
        {"x{a=\"b\\",
         "selector 'x{a=\"b\\': unterminated quoted value at column 5"},
        {"x{1a=b}", "selector 'x{1a=b}': expected a label key at column 3"},
        {"x{a=b}y", "selector 'x{a=b}y': unexpected 'y' at column 7"},
        {"x{a=b}}", "selector 'x{a=b}}': unexpected '}' at column 7"},
        {"x{a=b c=d}",
         "selector 'x{a=b c=d}': expected ',' or '}' at column 7"},
        {"x y", "selector 'x y': unexpected 'y' at column 3"},
        {"x{a=b", "selector 'x{a=b': expected ',' or '}' at column 6"},
        {"x{a=b,", "selector 'x{a=b,': expected '}' at column 7"},
        {"x{a=\"b\nc\"}",
         "selector 'x{a=\"b\nc\"}': control character in value at column 7"},
        {"x\t\x01", "selector 'x\t\x01': unexpected byte 0x01 at column 3"},
        {"x{a=1,b=2,c=3,d=4,e=5,f=6,g=7,h=8,i=9}",
         "selector 'x{a=1,b=2,c=3,d=4,e=5,f=6,g=7,h=8,i=9}': more than 8 label "
         "matchers at column 35"},
    };
    struct bus_selector sel;
    struct vigil_err err;

    (void)state;
    for (size_t i = 0; i < NL(exact); i++) {
        err_clear(&err);
        assert_int_equal(bus_selector_parse(exact[i].text, &sel, &err),
                         VIGIL_EINVAL);
        assert_int_equal(err.code, VIGIL_EINVAL);
        assert_string_equal(err.msg, exact[i].msg);
        /* Nothing half-parsed is left behind. */
        assert_string_equal(sel.name, "");
        assert_int_equal(sel.n, 0);
    }

    memset(longname, 'n', VIGIL_NAME_MAX);
    longname[VIGIL_NAME_MAX] = '\0';
    err_clear(&err);
    assert_int_equal(bus_selector_parse(longname, &sel, &err), VIGIL_EINVAL);
    assert_non_null(
        strstr(err.msg, "metric name longer than 127 bytes at column 1"));

    longkey[0] = 'x';
    longkey[1] = '{';
    memset(longkey + 2, 'k', VIGIL_LABEL_KEY_MAX);
    snprintf(longkey + 2 + VIGIL_LABEL_KEY_MAX, 8, "=v}");
    err_clear(&err);
    assert_int_equal(bus_selector_parse(longkey, &sel, &err), VIGIL_EINVAL);
    assert_non_null(
        strstr(err.msg, "label key longer than 63 bytes at column 3"));

    snprintf(longval, sizeof(longval), "x{a=");
    memset(longval + 4, 'v', VIGIL_LABEL_VALUE_MAX);
    snprintf(longval + 4 + VIGIL_LABEL_VALUE_MAX, 4, "}");
    err_clear(&err);
    assert_int_equal(bus_selector_parse(longval, &sel, &err), VIGIL_EINVAL);
    assert_non_null(
        strstr(err.msg, "value longer than 255 bytes at column 260"));
}

static void test_match(void **state)
{
    struct bus *bus = new_bus(0, 0, 0);
    const struct vigil_label cl[] = {L("host", "ab"), L("cpu", "0")};
    const struct vigil_label ml[] = {L("host", "a")};
    const struct {
        const char *sel;
        int cpu, mem;
    } cases[] = {
        {"cpu.user", 1, 0},
        {"cpu.*", 1, 0},
        {"*", 1, 1},
        {"cpu.*{host=a*}", 1, 0},
        {"cpu.*{host!=a*}", 0, 0},
        {"*{cpu=}", 0, 1},
        {"*{cpu!=}", 1, 0},
        {"mem{zone=}", 0, 1},
        {"mem{zone=*}", 0, 1},
        {"mem{zone=?*}", 0, 0},
        {"*{host=a,cpu=}", 0, 1},
        {"*{host=?b,cpu=[0-3]}", 1, 0},
        {"*{host=\"a\"}", 0, 1},
        {"cpu", 0, 0},
        {"*{host=a*,host!=ab}", 0, 1},
    };
    struct bus_selector sel;
    vigil_series_id cpu, mem;

    (void)state;
    cpu = intern(bus, "cpu.user", cl, 2);
    mem = intern(bus, "mem", ml, 1);
    for (size_t i = 0; i < NL(cases); i++) {
        parse(cases[i].sel, &sel);
        if (bus_match(bus, cpu, &sel) != cases[i].cpu ||
            bus_match(bus, mem, &sel) != cases[i].mem) {
            fail_msg("selector '%s': got cpu=%d mem=%d", cases[i].sel,
                     bus_match(bus, cpu, &sel), bus_match(bus, mem, &sel));
        }
    }
    parse("*", &sel);
    assert_int_equal(bus_match(bus, 2, &sel), 0);
    bus_destroy(bus);
}

static void test_subscribe_exact(void **state)
{
    struct bus *bus = new_bus(0, 0, 0);
    struct rec r = {.tag = 'A'};
    struct bus_sub *sub;
    vigil_series_id m, other;

    (void)state;
    m = intern(bus, "m", NULL, 0);
    other = intern(bus, "m2", NULL, 0);
    subscribe(bus, "m", &r, &sub);
    assert_int_equal(r.nseries, 1);
    assert_int_equal(r.series[0], m);

    bus_publish(bus, m, 100, 1.5);
    bus_publish(bus, other, 101, 9.0);
    bus_publish(bus, m, 102, -2.5);
    bus_publish(bus, m, 103, 4.0);
    assert_int_equal(r.nsamples, 3);
    assert_int_equal(r.ids[0], m);
    assert_int_equal(r.ts[0], 100);
    assert_true(r.v[0] == 1.5);
    assert_int_equal(r.ts[1], 102);
    assert_true(r.v[1] == -2.5);
    assert_int_equal(r.ts[2], 103);
    assert_true(r.v[2] == 4.0);
    assert_int_equal(bus_samples_total(bus), 4);
    /* The window got the sample before the subscriber ran. */
    assert_int_equal(bus_window(bus, m)->len, 3);

    /* Unknown ids are ignored and not counted. */
    bus_publish(bus, 2, 104, 1.0);
    bus_publish(bus, UINT32_MAX, 104, 1.0);
    assert_int_equal(bus_samples_total(bus), 4);
    assert_int_equal(r.nsamples, 3);
    assert_int_equal(r.nseries, 1);
    bus_destroy(bus);
}

static void test_subscribe_patterns(void **state)
{
    struct bus *bus = new_bus(0, 0, 0);
    struct rec a = {.tag = 'A'}, b = {.tag = 'B'};
    const struct vigil_label hab[] = {L("host", "ab")};
    const struct vigil_label hb[] = {L("host", "b")};
    const struct vigil_label ha[] = {L("host", "a")};
    const struct vigil_label ha1[] = {L("host", "a1")};
    struct bus_sub *sa, *sb;
    vigil_series_id user, sys, mem, idle;

    (void)state;
    /* A subscribes before any series exists. */
    subscribe(bus, "cpu.*{host=a*}", &a, &sa);
    assert_int_equal(a.nseries, 0);

    user = intern(bus, "cpu.user", hab, 1);
    assert_int_equal(a.nseries, 1);
    assert_int_equal(a.series[0], user);
    sys = intern(bus, "cpu.sys", hb, 1);
    mem = intern(bus, "mem", ha, 1);
    assert_int_equal(a.nseries, 1);

    /* B subscribes after: told about the existing match only. */
    subscribe(bus, "cpu.*{host=a*}", &b, &sb);
    assert_int_equal(b.nseries, 1);
    assert_int_equal(b.series[0], user);

    /* A new match is announced to both, once. */
    idle = intern(bus, "cpu.idle", ha1, 1);
    assert_int_equal(a.nseries, 2);
    assert_int_equal(a.series[1], idle);
    assert_int_equal(b.nseries, 2);
    assert_int_equal(b.series[1], idle);
    intern(bus, "cpu.user", hab, 1);
    intern(bus, "cpu.idle", ha1, 1);
    assert_int_equal(a.nseries, 2);
    assert_int_equal(b.nseries, 2);

    order_reset();
    bus_publish(bus, user, 1, 1.0);
    bus_publish(bus, sys, 2, 2.0);
    bus_publish(bus, mem, 3, 3.0);
    bus_publish(bus, idle, 4, 4.0);
    /* Subscription order, and nothing from sys or mem. */
    assert_string_equal(order, "ABAB");
    assert_int_equal(a.nsamples, 2);
    assert_int_equal(a.ids[0], user);
    assert_true(a.v[0] == 1.0);
    assert_int_equal(a.ids[1], idle);
    assert_true(a.v[1] == 4.0);
    assert_int_equal(b.nsamples, 2);
    assert_int_equal(b.ids[0], user);
    assert_int_equal(b.ids[1], idle);
    assert_int_equal(bus_samples_total(bus), 4);
    bus_destroy(bus); /* frees the subscriptions too */
}

static void test_unsubscribe(void **state)
{
    struct bus *bus = new_bus(0, 0, 0);
    struct rec a = {.tag = 'A'}, b = {.tag = 'B'}, p = {.tag = 'P'};
    struct bus_sub *sa, *sb, *sp;
    vigil_series_id m, px;

    (void)state;
    m = intern(bus, "m", NULL, 0);
    subscribe(bus, "m", &a, &sa);
    subscribe(bus, "m", &b, &sb);
    subscribe(bus, "p.*", &p, &sp);

    order_reset();
    bus_publish(bus, m, 1, 1.0);
    assert_string_equal(order, "AB");

    bus_unsubscribe(bus, sa);
    order_reset();
    bus_publish(bus, m, 2, 2.0);
    assert_string_equal(order, "B");
    assert_int_equal(a.nsamples, 1);
    assert_int_equal(b.nsamples, 2);

    bus_unsubscribe(bus, sb);
    bus_unsubscribe(bus, NULL);
    order_reset();
    bus_publish(bus, m, 3, 3.0);
    assert_string_equal(order, "");

    /* More subscribers than fit inside the series: order kept, and a
     * removal from the middle closes the gap. */
    {
        struct rec r[5];
        struct bus_sub *sr[5];

        memset(r, 0, sizeof(r));
        for (int i = 0; i < 5; i++) {
            r[i].tag = (char)('1' + i);
            subscribe(bus, "m", &r[i], &sr[i]);
        }
        order_reset();
        bus_publish(bus, m, 10, 10.0);
        assert_string_equal(order, "12345");
        bus_unsubscribe(bus, sr[1]);
        bus_unsubscribe(bus, sr[3]);
        order_reset();
        bus_publish(bus, m, 11, 11.0);
        assert_string_equal(order, "135");
        for (int i = 0; i < 5; i += 2) {
            bus_unsubscribe(bus, sr[i]);
        }
        order_reset();
        bus_publish(bus, m, 12, 12.0);
        assert_string_equal(order, "");
    }

    /* A removed pattern matches no new series. */
    px = intern(bus, "p.x", NULL, 0);
    assert_int_equal(p.nseries, 1);
    bus_unsubscribe(bus, sp);
    intern(bus, "p.y", NULL, 0);
    bus_publish(bus, px, 4, 4.0);
    assert_int_equal(p.nseries, 1);
    assert_int_equal(p.nsamples, 0);
    assert_int_equal(bus_samples_total(bus), 7);
    bus_destroy(bus);
}

/* Unsubscribes itself, or its victim, from inside the sample callback. */
static void unsub_sample(void *arg, vigil_series_id id, int64_t ts, double v)
{
    struct rec *r = arg;

    rec_sample(arg, id, ts, v);
    if (r->victim != NULL) {
        bus_unsubscribe(r->bus, r->victim);
        r->victim = NULL;
    }
}

/* Unsubscribes itself when told about its first series. */
static void unsub_series(void *arg, vigil_series_id id)
{
    struct rec *r = arg;

    rec_series(arg, id);
    bus_unsubscribe(r->bus, r->self);
}

static void test_unsubscribe_in_callback(void **state)
{
    struct bus *bus = new_bus(0, 0, 0);
    struct rec a = {.tag = 'A'}, b = {.tag = 'B'}, c = {.tag = 'C'};
    struct bus_selector sel;
    struct bus_sub *sa, *sb, *sc;
    vigil_series_id m;

    (void)state;
    m = intern(bus, "m", NULL, 0);
    parse("m", &sel);
    /* A removes itself; B removes C, which comes after it. */
    assert_int_equal(bus_subscribe(bus, &sel, unsub_sample, NULL, &a, &sa), 0);
    assert_int_equal(bus_subscribe(bus, &sel, unsub_sample, NULL, &b, &sb), 0);
    assert_int_equal(bus_subscribe(bus, &sel, unsub_sample, NULL, &c, &sc), 0);
    a.bus = b.bus = bus;
    a.victim = sa;
    b.victim = sc;

    order_reset();
    bus_publish(bus, m, 1, 1.0);
    assert_string_equal(order, "AB");
    bus_publish(bus, m, 2, 2.0);
    assert_string_equal(order, "ABB");
    assert_int_equal(a.nsamples, 1);
    assert_int_equal(b.nsamples, 2);
    assert_int_equal(c.nsamples, 0);
    bus_unsubscribe(bus, sb);
    bus_publish(bus, m, 3, 3.0);
    assert_string_equal(order, "ABB");

    /* Told about the first of three existing series, D leaves: no more
     * series and no samples. */
    {
        struct rec d = {.tag = 'D', .bus = bus};

        intern(bus, "m2", NULL, 0);
        intern(bus, "m3", NULL, 0);
        parse("m*", &sel);
        assert_int_equal(
            bus_subscribe(bus, &sel, rec_sample, unsub_series, &d, &d.self), 0);
        assert_int_equal(d.nseries, 1);
        assert_int_equal(d.series[0], m);
        intern(bus, "m4", NULL, 0);
        bus_publish(bus, m, 4, 4.0);
        assert_int_equal(d.nseries, 1);
        assert_int_equal(d.nsamples, 0);
    }
    bus_destroy(bus);
}

/* A derived metric: each sample of "in" is doubled into "out", a series
 * created from inside a callback. */
struct derive {
    struct bus *bus;
    vigil_series_id out;
    int have_out;
};

static void derive_sample(void *arg, vigil_series_id id, int64_t ts, double v)
{
    struct derive *d = arg;
    struct vigil_err err = {0};

    (void)id;
    if (!d->have_out) {
        assert_int_equal(bus_intern(d->bus, "out", NULL, 0, &d->out, &err), 0);
        d->have_out = 1;
    }
    bus_publish(d->bus, d->out, ts, 2 * v);
}

static void test_callback_reentry(void **state)
{
    struct bus *bus = new_bus(0, 0, 0);
    struct derive d = {.bus = bus};
    struct rec r = {.tag = 'R'};
    struct bus_selector sel;
    struct bus_sub *sd, *sr;
    vigil_series_id in;

    (void)state;
    in = intern(bus, "in", NULL, 0);
    parse("in", &sel);
    assert_int_equal(bus_subscribe(bus, &sel, derive_sample, NULL, &d, &sd), 0);
    subscribe(bus, "out", &r, &sr);
    bus_publish(bus, in, 10, 1.5);
    bus_publish(bus, in, 20, 4.0);
    assert_int_equal(r.nseries, 1);
    assert_int_equal(r.series[0], d.out);
    assert_int_equal(r.nsamples, 2);
    assert_true(r.v[0] == 3.0);
    assert_true(r.v[1] == 8.0);
    assert_int_equal(r.ts[1], 20);
    assert_int_equal(bus_samples_total(bus), 4);
    bus_destroy(bus);
}

static void test_subscribe_without_callbacks(void **state)
{
    struct bus *bus = new_bus(0, 0, 0);
    struct rec r = {.tag = 'S'};
    struct bus_selector sel;
    struct bus_sub *sub;
    vigil_series_id m;

    (void)state;
    m = intern(bus, "m", NULL, 0);
    parse("*", &sel);
    /* Only interested in new series. */
    assert_int_equal(bus_subscribe(bus, &sel, NULL, rec_series, &r, &sub), 0);
    assert_int_equal(r.nseries, 1);
    bus_publish(bus, m, 1, 1.0);
    intern(bus, "n", NULL, 0);
    assert_int_equal(r.nseries, 2);
    assert_int_equal(r.nsamples, 0);

    /* A hand-made selector with a bad count is refused. */
    sel.n = BUS_MATCHERS_MAX + 1;
    assert_int_equal(bus_subscribe(bus, &sel, NULL, NULL, NULL, &sub),
                     VIGIL_EINVAL);
    assert_null(sub);
    bus_destroy(bus);
}

static void test_stat_and_reserve(void **state)
{
    struct bus *bus = new_bus(10, 8, 64);
    struct win_stat avg = {WIN_AVG, 0}, p50 = {WIN_QUANTILE, 0.5};
    struct win_stat p95 = {WIN_QUANTILE, 0.95};
    vigil_series_id m, n;
    double out;

    (void)state;
    m = intern(bus, "m", NULL, 0);
    n = intern(bus, "n", NULL, 0);
    assert_int_equal(bus_window(bus, m)->cap, 8);
    for (int i = 1; i <= 20; i++) {
        bus_publish(bus, m, i, i);
    }
    assert_int_equal(bus_window(bus, m)->len, 8);
    assert_int_equal(bus_stat(bus, m, avg, 20, 0, &out), 0);
    assert_true(out == 16.5); /* 13..20 */
    assert_int_equal(bus_stat(bus, m, avg, 20, 4, &out), 0);
    assert_true(out == 18.0); /* 16..20 */
    assert_int_equal(bus_stat(bus, n, avg, 20, 0, &out), VIGIL_ENOENT);

    /* Grow beyond window_max: capped; the newest samples stay. */
    assert_int_equal(bus_reserve(bus, m, 1000), 0);
    assert_int_equal(bus_window(bus, m)->cap, 64);
    assert_int_equal(bus_window(bus, m)->len, 8);
    assert_int_equal(bus_stat(bus, m, avg, 20, 0, &out), 0);
    assert_true(out == 16.5);
    /* Shrinking is not what reserve does. */
    assert_int_equal(bus_reserve(bus, m, 4), 0);
    assert_int_equal(bus_window(bus, m)->cap, 64);

    /* The quantile scratch covers the grown window (ASan would see an
     * overflow otherwise). */
    for (int i = 21; i <= 200; i++) {
        bus_publish(bus, m, i, 201 - i);
    }
    assert_int_equal(bus_window(bus, m)->len, 64);
    assert_int_equal(bus_stat(bus, m, p50, 200, 0, &out), 0);
    assert_true(out == 32.5); /* values 1..64 */
    assert_int_equal(bus_stat(bus, m, p95, 200, 0, &out), 0);
    assert_true(fabs(out - 60.85) < 1e-9);

    assert_int_equal(bus_reserve(bus, 2, 16), VIGIL_ENOENT);
    assert_int_equal(bus_stat(bus, 2, avg, 0, 0, &out), VIGIL_ENOENT);
    bus_destroy(bus);
}

/* ------------------------------------------------------ allocation faults */

/*
 * Fail the Nth allocation: this executable's malloc family forwards to
 * glibc's (valgrind still sees every block) unless the countdown reaches
 * zero. Not under AddressSanitizer, whose own allocator must see every
 * malloc and free; the sanitizer run skips these tests.
 */
#if defined(__SANITIZE_ADDRESS__)
#define FAULTS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FAULTS 0
#endif
#endif
#ifndef FAULTS
#define FAULTS 1
#endif

static long fault_countdown = -1; /* < 0: never fail */
static long fault_calls;          /* allocations while armed */

#if FAULTS
void *__libc_malloc(size_t size);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t size);
void *__libc_memalign(size_t align, size_t size);
void __libc_free(void *p);

static int fault_now(void)
{
    if (fault_countdown < 0) {
        return 0;
    }
    fault_calls++;
    return fault_countdown-- == 0;
}

void *malloc(size_t size)
{
    return fault_now() ? NULL : __libc_malloc(size);
}

void *calloc(size_t n, size_t size)
{
    return fault_now() ? NULL : __libc_calloc(n, size);
}

void *realloc(void *p, size_t size)
{
    return fault_now() ? NULL : __libc_realloc(p, size);
}

void *aligned_alloc(size_t align, size_t size)
{
    return fault_now() ? NULL : __libc_memalign(align, size);
}

void free(void *p)
{
    __libc_free(p);
}
#endif

/* Arm: the allocation after n successful ones fails. */
static void fault_arm(long n)
{
    fault_calls = 0;
    fault_countdown = n;
}

static void fault_disarm(void)
{
    fault_countdown = -1;
}

/* Skip unless failing the first allocation really fails: valgrind, for
 * one, replaces this malloc with its own unless told
 * --soname-synonyms=somalloc=nouserintercepts. */
static void fault_require(void)
{
    struct bus *bus = NULL;
    int rc;

    if (!FAULTS) {
        skip();
    }
    fault_arm(0);
    rc = bus_create(NULL, &bus);
    fault_disarm();
    if (rc == 0) {
        bus_destroy(bus);
        skip();
    }
}

static void test_alloc_fail_create(void **state)
{
    struct bus *bus;
    long n;
    int rc;

    (void)state;
    fault_require();
    for (n = 0;; n++) {
        bus = (struct bus *)&n; /* anything but NULL */
        fault_arm(n);
        rc = bus_create(NULL, &bus);
        fault_disarm();
        if (rc == 0) {
            break;
        }
        assert_int_equal(rc, VIGIL_ENOMEM);
        assert_null(bus);
    }
    assert_true(n >= 3); /* bus, chunk table, hash table, scratch */
    bus_destroy(bus);
}

/*
 * Intern a series that three subscriptions match, failing each
 * allocation in turn: the call must report ENOMEM with a message and leave
 * nothing behind, and the retry must be announced and delivered exactly
 * once per subscriber.
 */
static void test_alloc_fail_intern(void **state)
{
    const struct vigil_label l[] = {L("host", "a")};
    long n;

    (void)state;
    fault_require();
    for (n = 0;; n++) {
        struct bus *bus = new_bus(2 * BUS_CHUNK_TEST, 4, 8);
        struct rec a = {.tag = 'A'}, b = {.tag = 'B'}, c = {.tag = 'C'};
        struct bus_sub *sa, *sb, *sc;
        struct vigil_err err = {0};
        vigil_series_id id = 99;
        int rc;

        subscribe(bus, "cpu.*", &a, &sa);
        subscribe(bus, "*{host=a}", &b, &sb);
        subscribe(bus, "cpu.user", &c, &sc);
        /* Fill the first chunk and the table so that this intern must
         * grow both. */
        for (uint32_t i = 0; i < BUS_CHUNK_TEST; i++) {
            char v[16];
            const struct vigil_label li[] = {L("i", v)};

            snprintf(v, sizeof(v), "%u", i);
            intern(bus, "fill", li, 1);
        }
        fault_arm(n);
        rc = bus_intern(bus, "cpu.user", l, 1, &id, &err);
        fault_disarm();
        if (rc != 0) {
            assert_int_equal(rc, VIGIL_ENOMEM);
            assert_non_null(strstr(err.msg, "cpu.user{host=\"a\"}"));
            assert_int_equal(id, 99);
            assert_int_equal(bus_series_count(bus), BUS_CHUNK_TEST);
            assert_int_equal(bus_find(bus, "cpu.user", l, 1, &id),
                             VIGIL_ENOENT);
            assert_int_equal(a.nseries, 0);
            assert_int_equal(b.nseries, 0);
            assert_int_equal(c.nseries, 0);
            id = intern(bus, "cpu.user", l, 1);
        }
        assert_int_equal(id, BUS_CHUNK_TEST);
        assert_int_equal(a.nseries, 1);
        assert_int_equal(b.nseries, 1);
        assert_int_equal(c.nseries, 1);
        order_reset();
        bus_publish(bus, id, 1, 1.0);
        assert_string_equal(order, "ABC");
        /* The subscriptions' id lists are intact: unsubscribing detaches
         * from exactly this series. */
        bus_unsubscribe(bus, sa);
        bus_publish(bus, id, 2, 2.0);
        assert_string_equal(order, "ABCBC");
        bus_destroy(bus);
        if (rc == 0) {
            break;
        }
    }
    /* table, chunk, strings, ring, three id lists, and the series' list
     * once the inline slots are full */
    assert_int_equal(n, 8);
}

/* Subscribe to many existing series, failing each allocation in turn:
 * nobody is called, nothing is attached, and the retry works. */
static void test_alloc_fail_subscribe(void **state)
{
    enum { N = 40 };
    long n;

    (void)state;
    fault_require();
    for (n = 0;; n++) {
        struct bus *bus = new_bus(N, 4, 8);
        struct rec a = {.tag = 'A'}, b = {.tag = 'B'};
        struct bus_selector sel;
        struct bus_sub *sa, *sb = (struct bus_sub *)&n; /* not NULL */
        int rc;

        for (uint32_t i = 0; i < N; i++) {
            char v[16];
            const struct vigil_label li[] = {L("i", v)};

            snprintf(v, sizeof(v), "%u", i);
            intern(bus, "m", li, 1);
        }
        subscribe(bus, "m{i=1*}", &a, &sa);
        parse("m", &sel);
        fault_arm(n);
        rc = bus_subscribe(bus, &sel, rec_sample, rec_series, &b, &sb);
        fault_disarm();
        if (rc != 0) {
            assert_int_equal(rc, VIGIL_ENOMEM);
            assert_null(sb);
            assert_int_equal(b.nseries, 0);
            for (uint32_t i = 0; i < N; i++) {
                bus_publish(bus, i, 1, 1.0);
            }
            assert_int_equal(b.nsamples, 0);
            assert_int_equal(a.nsamples, 11); /* 1, 10..19 */
            subscribe(bus, "m", &b, &sb);
        }
        assert_int_equal(b.nseries, N);
        bus_publish(bus, 5, 2, 2.0);
        assert_int_equal(b.nsamples, 1);
        assert_int_equal(b.ids[b.nsamples - 1], 5);
        bus_destroy(bus);
        if (rc == 0) {
            break;
        }
    }
    assert_true(n >= 2);
}

static void test_alloc_fail_reserve(void **state)
{
    struct bus *bus;
    struct win_stat p50 = {WIN_QUANTILE, 0.5};
    vigil_series_id m, k;
    double out;
    long n;
    int rc;

    (void)state;
    fault_require();
    bus = new_bus(4, 4, 64);
    m = intern(bus, "m", NULL, 0);
    k = intern(bus, "k", NULL, 0);
    for (int i = 1; i <= 4; i++) {
        bus_publish(bus, m, i, i);
    }
    for (n = 0;; n++) {
        fault_arm(n);
        rc = bus_reserve(bus, m, 32);
        fault_disarm();
        if (rc == 0) {
            break;
        }
        assert_int_equal(rc, VIGIL_ENOMEM);
        assert_int_equal(bus_window(bus, m)->cap, 4);
        assert_int_equal(bus_window(bus, m)->len, 4);
    }
    assert_int_equal(n, 2); /* scratch, then the ring */
    assert_int_equal(bus_window(bus, m)->cap, 32);
    for (int i = 5; i <= 32; i++) {
        bus_publish(bus, m, i, i);
    }
    assert_int_equal(bus_stat(bus, m, p50, 32, 0, &out), 0);
    assert_true(out == 16.5);
    /* A second series grows within the scratch already there. */
    fault_arm(0);
    rc = bus_reserve(bus, k, 16);
    fault_disarm();
    assert_int_equal(rc, VIGIL_ENOMEM);
    assert_int_equal(bus_reserve(bus, k, 16), 0);
    bus_destroy(bus);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_destroy),
        cmocka_unit_test(test_intern_canonical),
        cmocka_unit_test(test_intern_idempotent),
        cmocka_unit_test(test_intern_invalid),
        cmocka_unit_test(test_series_limit),
        cmocka_unit_test(test_many_series),
        cmocka_unit_test(test_selector_parse_valid),
        cmocka_unit_test(test_selector_parse_errors),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_subscribe_exact),
        cmocka_unit_test(test_subscribe_patterns),
        cmocka_unit_test(test_unsubscribe),
        cmocka_unit_test(test_unsubscribe_in_callback),
        cmocka_unit_test(test_callback_reentry),
        cmocka_unit_test(test_subscribe_without_callbacks),
        cmocka_unit_test(test_stat_and_reserve),
        cmocka_unit_test(test_alloc_fail_create),
        cmocka_unit_test(test_alloc_fail_intern),
        cmocka_unit_test(test_alloc_fail_subscribe),
        cmocka_unit_test(test_alloc_fail_reserve),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
