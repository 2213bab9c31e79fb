/*
 * Unit tests for core/config.c: every kind of bad input must name the
 * file:line exactly, and the happy paths must give the values a module
 * expects. Most tests parse strings; one group uses real files.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

/* Big (32 KiB), so static rather than on the stack. */
static struct cfg_diag diag;

static int load(const char *text, struct cfg **out)
{
    cfg_diag_init(&diag);
    return cfg_load_string("t.ini", text, out, &diag);
}

static void dump_diag(void)
{
    unsigned i;

    for (i = 0; i < diag.n && i < CFG_DIAG_MAX; i++) {
        print_message("  diag[%u]: %s\n", i, diag.msg[i]);
    }
}

/* Fail unless diag holds exactly this message. */
static void expect_msg(const char *msg)
{
    unsigned i;

    for (i = 0; i < diag.n && i < CFG_DIAG_MAX; i++) {
        if (strcmp(diag.msg[i], msg) == 0) {
            return;
        }
    }
    print_message("missing message: %s\n", msg);
    dump_diag();
    fail();
}

static void expect_count(unsigned n)
{
    if (diag.n != n) {
        print_message("expected %u messages, got %u\n", n, diag.n);
        dump_diag();
    }
    assert_int_equal(diag.n, n);
}

static struct cfg *load_ok(const char *text)
{
    struct cfg *cfg = NULL;
    int rc = load(text, &cfg);

    if (rc != 0) {
        dump_diag();
    }
    assert_int_equal(rc, 0);
    expect_count(0);
    assert_non_null(cfg);
    return cfg;
}

/* Load text that must fail with VIGIL_ECONFIG and exactly nmsg messages. */
static struct cfg *load_bad(const char *text, unsigned nmsg)
{
    struct cfg *cfg = NULL;

    assert_int_equal(load(text, &cfg), VIGIL_ECONFIG);
    assert_non_null(cfg);
    expect_count(nmsg);
    return cfg;
}

static struct cfg_section *find(struct cfg *cfg, const char *type,
                                const char *name)
{
    struct cfg_section *s;

    for (s = cfg_first(cfg, type); s != NULL; s = cfg_next(s, type)) {
        if ((name == NULL && s->name == NULL) ||
            (name != NULL && s->name != NULL && strcmp(s->name, name) == 0)) {
            return s;
        }
    }
    return NULL;
}

/* A destination struct with one field of every option type. */
struct all {
    const char *s;
    int64_t i;
    double d;
    int b;
    int64_t dur;
    uint64_t bytes;
    int e;
    struct vigil_list l;
    const char *password;
    const char *nodef;
};

/* clang-format would turn these one-liners into brace blocks. */
/* clang-format off */
#define OPT(k, t, def, field, flags, choices) \
    {k, t, def, offsetof(struct all, field), "help", flags, choices}
#define OPT_END {NULL, 0, NULL, 0, NULL, 0, NULL}
/* clang-format on */

static const struct vigil_option all_opts[] = {
    OPT("s", VIGIL_OPT_STRING, "dflt", s, 0, NULL),
    OPT("i", VIGIL_OPT_INT, "-3", i, 0, NULL),
    OPT("d", VIGIL_OPT_DOUBLE, "0.25", d, 0, NULL),
    OPT("b", VIGIL_OPT_BOOL, "yes", b, 0, NULL),
    OPT("dur", VIGIL_OPT_DURATION, "10s", dur, 0, NULL),
    OPT("bytes", VIGIL_OPT_BYTES, "64KiB", bytes, 0, NULL),
    OPT("e", VIGIL_OPT_ENUM, "normal", e, 0, "quiet|normal|verbose"),
    OPT("l", VIGIL_OPT_LIST, "x\ny", l, 0, NULL),
    OPT("password", VIGIL_OPT_STRING, NULL, password, VIGIL_OPT_SECRET, NULL),
    OPT("nodef", VIGIL_OPT_STRING, NULL, nodef, 0, NULL),
    OPT_END,
};

/* ------------------------------------------------------------------ */
/* Parsers */

static void test_parse_duration(void **state)
{
    static const struct {
        const char *text;
        int64_t ms;
    } good[] = {
        {"250ms", 250},
        {"10s", 10000},
        {"5m", 300000},
        {"1h", 3600000},
        {"1d", 86400000},
        {"1.5s", 1500},
        {"10", 10000},
        {"0.25", 250},
        {"0", 0},
        {"2 m", 120000},
        {"0.5m", 30000},
        {"007s", 7000},
        {"9223372036854775807ms", INT64_MAX},
        {"1m30s", 90000},
        {"2h15m", 8100000},
        {"1m500ms", 60500},
    };
    static const char *const bad[] = {
        "",
        "-5s",
        "+5s",
        "5x",
        "s",
        "1.s",
        ".5s",
        "5S",
        " 5s",
        "5s ",
        "0.5ms",
        "1.0001s",
        "9223372036854775808ms",
        "106751991167301d",
        "99999999999999999999",
        "1e3s",
        "5 5s",
        "1..5s",
        "1m30",
        "m30s",
        "1m-30s",
        "1m 30s",
    };
    size_t i;
    int64_t ms;

    (void)state;
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        ms = -1;
        if (cfg_parse_duration_ms(good[i].text, &ms) != 0) {
            fail_msg("rejected '%s'", good[i].text);
        }
        assert_int_equal(ms, good[i].ms);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (cfg_parse_duration_ms(bad[i], &ms) != VIGIL_EINVAL) {
            fail_msg("accepted '%s'", bad[i]);
        }
    }
    assert_int_equal(cfg_parse_duration_ms(NULL, &ms), VIGIL_EINVAL);
}

static void test_parse_bytes(void **state)
{
    static const struct {
        const char *text;
        uint64_t v;
    } good[] = {
        {"512", 512},
        {"512B", 512},
        {"1k", 1000},
        {"1K", 1000},
        {"1KB", 1000},
        {"1kb", 1000},
        {"1KiB", 1024},
        {"1kib", 1024},
        {"64KiB", 65536},
        {"10MB", 10000000},
        {"1MiB", 1048576},
        {"1GB", 1000000000},
        {"1GiB", 1073741824},
        {"2TB", 2000000000000ULL},
        {"1TiB", 1099511627776ULL},
        {"1.5KiB", 1536},
        {"1.5GB", 1500000000},
        {"10 MB", 10000000},
        {"18446744073709551615", UINT64_MAX},
    };
    static const char *const bad[] = {
        "",
        "-1",
        "1KiBs",
        "1PB",
        "KB",
        "1.1B",
        "1.0001KiB",
        "1 1",
        "0x10",
        "1e3",
        "18446744073709551616",
        "16777216TiB",
        " 1",
    };
    size_t i;
    uint64_t v;

    (void)state;
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        v = 0;
        if (cfg_parse_bytes(good[i].text, &v) != 0) {
            fail_msg("rejected '%s'", good[i].text);
        }
        assert_int_equal(v, good[i].v);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (cfg_parse_bytes(bad[i], &v) != VIGIL_EINVAL) {
            fail_msg("accepted '%s'", bad[i]);
        }
    }
}

static void test_parse_bool(void **state)
{
    static const char *const yes[] = {"yes", "true", "on", "1", "YES", "True"};
    static const char *const no[] = {"no", "false", "off", "0", "OFF"};
    static const char *const bad[] = {"", "2", "y", "enable", "yes "};
    size_t i;
    int b;

    (void)state;
    for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        b = -1;
        assert_int_equal(cfg_parse_bool(yes[i], &b), 0);
        assert_int_equal(b, 1);
    }
    for (i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        b = -1;
        assert_int_equal(cfg_parse_bool(no[i], &b), 0);
        assert_int_equal(b, 0);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(cfg_parse_bool(bad[i], &b), VIGIL_EINVAL);
    }
}

static void test_parse_int_double(void **state)
{
    int64_t v;
    double d;

    (void)state;
    assert_int_equal(cfg_parse_int("42", &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(cfg_parse_int("-7", &v), 0);
    assert_int_equal(v, -7);
    assert_int_equal(cfg_parse_int("010", &v), 0);
    assert_int_equal(v, 10);
    assert_int_equal(cfg_parse_int("9223372036854775807", &v), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(cfg_parse_int("-9223372036854775808", &v), 0);
    assert_true(v == INT64_MIN);
    assert_int_equal(cfg_parse_int("9223372036854775808", &v), VIGIL_EINVAL);
    assert_int_equal(cfg_parse_int("", &v), VIGIL_EINVAL);
    assert_int_equal(cfg_parse_int(" 1", &v), VIGIL_EINVAL);
    assert_int_equal(cfg_parse_int("1 ", &v), VIGIL_EINVAL);
    assert_int_equal(cfg_parse_int("12abc", &v), VIGIL_EINVAL);
    assert_int_equal(cfg_parse_int("0x10", &v), VIGIL_EINVAL);

    assert_int_equal(cfg_parse_double("0.5", &d), 0);
    assert_true(d == 0.5);
    assert_int_equal(cfg_parse_double("-1e3", &d), 0);
    assert_true(d == -1000.0);
    assert_int_equal(cfg_parse_double("nan", &d), VIGIL_EINVAL);
    assert_int_equal(cfg_parse_double("inf", &d), VIGIL_EINVAL);
    assert_int_equal(cfg_parse_double("1e999", &d), VIGIL_EINVAL);
    assert_int_equal(cfg_parse_double("1.5x", &d), VIGIL_EINVAL);
    assert_int_equal(cfg_parse_double("", &d), VIGIL_EINVAL);
    assert_int_equal(cfg_parse_double(" 1", &d), VIGIL_EINVAL);
}

/* ------------------------------------------------------------------ */
/* Parsing: happy paths */

static void test_tree(void **state)
{
    struct cfg *cfg;
    struct cfg_section *s;
    const struct cfg_entry *e;

    (void)state;
    cfg = load_ok("# leading comment\n"               /* 1 */
                  "; another comment\n"               /* 2 */
                  "[vigil]\n"                         /* 3 */
                  "log_level = info ; inline\n"       /* 4 */
                  "a = x;y\n"                         /* 5 */
                  "url = http://h/p#frag\n"           /* 6 */
                  "colon: value\n"                    /* 7 */
                  "\n"                                /* 8 */
                  "[plugin sys]\n"                    /* 9 */
                  "[plugin http api] ; three words\n" /* 10 */
                  "  url = http://x\n"                /* 11 */
                  "[ store  sqlite ]\n"               /* 12 */
                  "quoted = \"a b\"\n"                /* 13 */
                  "single = 'c'\n"                    /* 14 */
                  "inner = say \"hi\" now\n"          /* 15 */
                  "both = \"a\" and \"b\"\n"          /* 16 */
                  "empty =\n");                       /* 17 */
    assert_string_equal(cfg_path(cfg), "t.ini");

    s = cfg_first(cfg, "vigil");
    assert_non_null(s);
    assert_true(s->claimed);
    assert_null(s->name);
    assert_null(s->instance);
    assert_int_equal(s->line, 3);
    assert_string_equal(s->file, "t.ini");
    e = cfg_get(s, "log_level");
    assert_non_null(e);
    assert_string_equal(e->value, "info");
    assert_int_equal(e->line, 4);
    assert_string_equal(cfg_get(s, "a")->value, "x;y");
    assert_string_equal(cfg_get(s, "url")->value, "http://h/p#frag");
    assert_string_equal(cfg_get(s, "colon")->value, "value");
    assert_int_equal(cfg_get(s, "colon")->line, 7);
    assert_null(cfg_get(s, "nope"));
    assert_null(cfg_get(s, "LOG_LEVEL"));
    assert_null(cfg_next(s, "vigil"));

    /* The empty section exists, with its line. */
    s = find(cfg, "plugin", "sys");
    assert_non_null(s);
    assert_int_equal(s->line, 9);
    assert_null(s->entries);
    assert_null(s->instance);

    s = find(cfg, "plugin", "http");
    assert_non_null(s);
    assert_string_equal(s->type, "plugin");
    assert_string_equal(s->instance, "api");
    assert_int_equal(s->line, 10);
    /* An indented first key is a key, not a continuation. */
    assert_string_equal(cfg_get(s, "url")->value, "http://x");
    assert_int_equal(cfg_get(s, "url")->line, 11);

    s = find(cfg, "store", "sqlite");
    assert_non_null(s);
    assert_int_equal(s->line, 12);
    assert_string_equal(cfg_get(s, "quoted")->value, "a b");
    assert_string_equal(cfg_get(s, "single")->value, "c");
    assert_string_equal(cfg_get(s, "inner")->value, "say \"hi\" now");
    assert_string_equal(cfg_get(s, "both")->value, "\"a\" and \"b\"");
    assert_string_equal(cfg_get(s, "empty")->value, "");

    /* Iteration over all types, in file order. */
    s = cfg_first(cfg, NULL);
    assert_string_equal(s->type, "vigil");
    s = cfg_next(s, NULL);
    assert_int_equal(s->line, 9);
    s = cfg_next(s, NULL);
    assert_int_equal(s->line, 10);
    s = cfg_next(s, NULL);
    assert_int_equal(s->line, 12);
    assert_null(cfg_next(s, NULL));
    assert_int_equal(cfg_check_unclaimed(cfg, "vigil", &diag), 0);
    cfg_destroy(cfg);
}

/* inih passes at most 49 characters of a section name, and of the key
 * name on continuation lines; the tree must not depend on either. */
static void test_long_names(void **state)
{
    char text[1024];
    char sec[80];
    char key[80];
    struct cfg *cfg;
    struct cfg_section *s;

    (void)state;
    memset(sec, 's', 70);
    sec[70] = '\0';
    memset(key, 'k', 70);
    key[70] = '\0';
    snprintf(text, sizeof(text),
             "[plugin %s]\n"
             "%s = a\n"
             "  b\n"
             "[plugin %.49s]\n",
             sec, key, sec);
    cfg = load_ok(text);
    s = cfg_first(cfg, "plugin");
    assert_string_equal(s->name, sec);
    assert_string_equal(cfg_get(s, key)->value, "a\nb");
    s = cfg_next(s, "plugin");
    assert_non_null(s);
    assert_int_equal(strlen(s->name), 49);
    cfg_destroy(cfg);
}

static void test_bom_and_crlf(void **state)
{
    struct cfg *cfg;
    struct cfg_section *s;

    (void)state;
    cfg = load_ok("\xEF\xBB\xBF[vigil]\r\n"
                  "a = 1\r\n"
                  "list = x\r\n"
                  "  y\r\n"
                  "b = 2");
    s = cfg_first(cfg, "vigil");
    assert_non_null(s);
    assert_int_equal(s->line, 1);
    assert_string_equal(cfg_get(s, "a")->value, "1");
    assert_string_equal(cfg_get(s, "list")->value, "x\ny");
    assert_string_equal(cfg_get(s, "b")->value, "2");
    assert_int_equal(cfg_get(s, "b")->line, 5);
    cfg_destroy(cfg);
}

static void test_env(void **state)
{
    struct cfg *cfg;
    struct cfg_section *s;

    (void)state;
    setenv("VIGIL_TEST_HOST", "db.example", 1);
    setenv("VIGIL_TEST_EMPTY", "", 1);
    setenv("VIGIL_TEST_SEMI", "a ; b", 1);
    unsetenv("VIGIL_TEST_UNSET");
    cfg = load_ok("[vigil]\n"
                  "host = ${VIGIL_TEST_HOST}:5432\n"
                  "dflt = ${VIGIL_TEST_UNSET:-localhost}\n"
                  "emptydflt = ${VIGIL_TEST_EMPTY:-fallback}\n"
                  "empty = <${VIGIL_TEST_EMPTY}>\n"
                  "nodflt = <${VIGIL_TEST_UNSET:-}>\n"
                  "dollar = $$5 and $${X}\n"
                  "semi = ${VIGIL_TEST_SEMI}\n"
                  "quoted = \"${VIGIL_TEST_HOST}\"\n"
                  "list = ${VIGIL_TEST_HOST}\n"
                  "  ${VIGIL_TEST_UNSET:-other}\n");
    s = cfg_first(cfg, "vigil");
    assert_string_equal(cfg_get(s, "host")->value, "db.example:5432");
    assert_string_equal(cfg_get(s, "dflt")->value, "localhost");
    assert_string_equal(cfg_get(s, "emptydflt")->value, "fallback");
    assert_string_equal(cfg_get(s, "empty")->value, "<>");
    assert_string_equal(cfg_get(s, "nodflt")->value, "<>");
    assert_string_equal(cfg_get(s, "dollar")->value, "$5 and ${X}");
    /* Substitution happens after comments are stripped. */
    assert_string_equal(cfg_get(s, "semi")->value, "a ; b");
    assert_string_equal(cfg_get(s, "quoted")->value, "db.example");
    assert_string_equal(cfg_get(s, "list")->value, "db.example\nother");
    cfg_destroy(cfg);
}

/* ------------------------------------------------------------------ */
/* Parsing: errors, each with its exact file:line */

static void test_syntax_errors(void **state)
{
    struct cfg *cfg;
    struct cfg_section *s;

    (void)state;
    cfg = load_bad("[vigil]\n"       /* 1 */
                   "this is wrong\n" /* 2 */
                   "ok = 1\n"        /* 3 */
                   "also wrong\n"    /* 4 */
                   "k ; = 3\n"       /* 5: ' ;' starts a comment */
                   "= value\n"       /* 6 */
                   "  : value\n"     /* 7 */
                   "last = 2\n",     /* 8 */
                   4);
    expect_msg("t.ini:2: expected 'key = value' or a [section] header");
    expect_msg("t.ini:4: expected 'key = value' or a [section] header");
    expect_msg("t.ini:5: expected 'key = value' or a [section] header");
    expect_msg("t.ini:6: missing key before '='");
    /* inih takes line 7 as a continuation (indented after a key), but
     * it follows a rejected line, so it is dropped with it. */
    s = cfg_first(cfg, "vigil");
    assert_string_equal(cfg_get(s, "ok")->value, "1");
    assert_int_equal(cfg_get(s, "last")->line, 8);
    cfg_destroy(cfg);

    cfg = load_bad("a = 1\n"
                   "[vigil]\n"
                   "b = 2\n",
                   1);
    expect_msg("t.ini:1: key 'a' is outside of any section");
    cfg_destroy(cfg);

    cfg = load_bad("[vigil]\n"
                   "a = \"open ; comment\"\n"
                   "b = 'x\n",
                   2);
    expect_msg("t.ini:2: unterminated quote in the value of 'a' (note that "
               "' ;' starts a comment, even inside quotes)");
    expect_msg("t.ini:3: unterminated quote in the value of 'b' (note that "
               "' ;' starts a comment, even inside quotes)");
    cfg_destroy(cfg);
}

static void test_unterminated_section(void **state)
{
    struct cfg *cfg;
    struct cfg_section *s;

    (void)state;
    cfg = load_bad("[vigil]\n"          /* 1 */
                   "a = 1\n"            /* 2 */
                   "[plugin sys\n"      /* 3 */
                   "interval = 5s\n"    /* 4 */
                   "[plugin cpu ; x]\n" /* 5 */
                   "[plugin cpu]\n"     /* 6 */
                   "b = 2\n",           /* 7 */
                   2);
    expect_msg("t.ini:3: unterminated section header (missing ']')");
    expect_msg("t.ini:5: unterminated section header (missing ']')");
    /* inih would have put interval in [vigil]; it is dropped instead. */
    s = cfg_first(cfg, "vigil");
    assert_null(cfg_get(s, "interval"));
    assert_null(s->entries->next);
    s = find(cfg, "plugin", "cpu");
    assert_non_null(s);
    assert_int_equal(s->line, 6);
    assert_int_equal(cfg_get(s, "b")->line, 7);
    assert_null(find(cfg, "plugin", "sys"));
    cfg_destroy(cfg);
}

static void test_bad_headers(void **state)
{
    struct cfg *cfg;

    (void)state;
    cfg = load_bad("[]\n"                    /* 1 */
                   "a = 1\n"                 /* 2: dropped silently */
                   "[a b c d]\n"             /* 3 */
                   "[plugin s!s]\n"          /* 4 */
                   "[plugin sys] trailing\n" /* 5 */
                   "[plugin sys];x\n"        /* 6 */
                   "[   ]\n"                 /* 7 */
                   "[plugin\x01sys]\n"       /* 8 */
                   "[ok]\n"                  /* 9 */
                   "b = 2\n",                /* 10 */
                   7);
    expect_msg("t.ini:1: empty section header []");
    expect_msg("t.ini:3: section header [a b c d] has 4 words; expected "
               "[type], [type name] or [type name instance]");
    expect_msg("t.ini:4: bad character '!' in section header [plugin s!s]; "
               "use letters, digits, '_', '.' and '-'");
    expect_msg("t.ini:5: unexpected text after ']' (an inline comment "
               "starts with ' ;')");
    expect_msg("t.ini:6: unexpected text after ']' (an inline comment "
               "starts with ' ;')");
    expect_msg("t.ini:7: empty section header []");
    expect_msg("t.ini:8: bad byte 0x01 in section header; use letters, "
               "digits, '_', '.' and '-'");
    assert_non_null(cfg_first(cfg, "ok"));
    assert_null(cfg_next(cfg_first(cfg, NULL), NULL));
    cfg_destroy(cfg);
}

static void test_duplicate_section(void **state)
{
    struct cfg *cfg;
    struct cfg_section *s;

    (void)state;
    cfg = load_bad("[plugin sys]\n"       /* 1 */
                   "a = 1\n"              /* 2 */
                   "[plugin sys other]\n" /* 3: different instance */
                   "[plugin sys]\n"       /* 4 */
                   "b = 2\n"              /* 5: dropped */
                   "[vigil]\n"            /* 6 */
                   "[vigil]\n",           /* 7 */
                   2);
    expect_msg("t.ini:4: duplicate section [plugin sys] (first at line 1)");
    expect_msg("t.ini:7: duplicate section [vigil] (first at line 6)");
    s = find(cfg, "plugin", "sys");
    assert_null(cfg_get(s, "b"));
    cfg_destroy(cfg);
}

/* n characters of 'x' after prefix, as one line with "\n". */
static void make_line(char *buf, size_t size, const char *prefix, size_t n)
{
    size_t len = strlen(prefix);

    assert_true(len + n + 2 <= size);
    memcpy(buf, prefix, len);
    memset(buf + len, 'x', n);
    buf[len + n] = '\n';
    buf[len + n + 1] = '\0';
}

static void test_long_line(void **state)
{
    char l199[256];
    char l200[256];
    char huge[2100];
    char crlf[256];
    char text[4096];
    struct cfg *cfg;
    struct cfg_section *s;

    (void)state;
    make_line(l199, sizeof(l199), "ok = ", 199 - 5);
    make_line(l200, sizeof(l200), "cut = ", 200 - 6);
    make_line(huge, sizeof(huge), "huge = ", 2000);
    make_line(crlf, sizeof(crlf), "crlf = ", 199 - 7);
    /* "\r\n" does not count against the limit. */
    memcpy(crlf + strlen(crlf) - 1, "\r\n", 3);
    snprintf(text, sizeof(text),
             "[vigil]\n"   /* 1 */
             "%s"          /* 2: 199 characters, fine */
             "%s"          /* 3: 200 characters */
             "bad line\n"  /* 4 */
             "%s"          /* 5: 2007 characters */
             "after = 1\n" /* 6 */
             "%s"          /* 7 */
             "last = 2\n"  /* 8 */
             "list = a\n"  /* 9 */
             "%s"          /* 10: too long */
             "  b\n",      /* 11: continued line 10, dropped with it */
             l199, l200, huge, crlf, l200);
    cfg = load_bad(text, 4);
    expect_msg("t.ini:3: line too long (at most 199 characters)");
    expect_msg("t.ini:4: expected 'key = value' or a [section] header");
    expect_msg("t.ini:5: line too long (at most 199 characters)");
    expect_msg("t.ini:10: line too long (at most 199 characters)");
    s = cfg_first(cfg, "vigil");
    assert_string_equal(cfg_get(s, "list")->value, "a");
    assert_int_equal(strlen(cfg_get(s, "ok")->value), 199 - 5);
    assert_null(cfg_get(s, "cut"));
    assert_null(cfg_get(s, "huge"));
    assert_int_equal(cfg_get(s, "after")->line, 6);
    assert_int_equal(strlen(cfg_get(s, "crlf")->value), 199 - 7);
    assert_int_equal(cfg_get(s, "last")->line, 8);
    cfg_destroy(cfg);
}

static void test_env_errors(void **state)
{
    struct cfg *cfg;
    char *big;

    (void)state;
    unsetenv("VIGIL_TEST_UNSET");
    unsetenv("VIGIL_TEST_UNSET2");
    cfg = load_bad("[vigil]\n"                                      /* 1 */
                   "a = ${VIGIL_TEST_UNSET}\n"                      /* 2 */
                   "b = ${VIGIL_TEST_UNSET} ${VIGIL_TEST_UNSET2}\n" /* 3 */
                   "c = $HOME\n"                                    /* 4 */
                   "d = ${1BAD}\n"                                  /* 5 */
                   "e = ${A:default}\n"                             /* 6 */
                   "f = ${OPEN\n"                                   /* 7 */
                   "g = x\n"                                        /* 8 */
                   "  ${VIGIL_TEST_UNSET}\n"                        /* 9 */
                   "h = ends with $\n",                             /* 10 */
                   9);
    expect_msg("t.ini:2: environment variable VIGIL_TEST_UNSET is not set");
    expect_msg("t.ini:3: environment variable VIGIL_TEST_UNSET is not set");
    expect_msg("t.ini:3: environment variable VIGIL_TEST_UNSET2 is not set");
    expect_msg("t.ini:4: '$' in the value of 'c' must start ${NAME} (write "
               "$$ for a literal $)");
    expect_msg("t.ini:5: bad variable reference '${1BAD}' in the value of "
               "'d'; expected ${NAME} or ${NAME:-default}");
    expect_msg("t.ini:6: bad variable reference '${A:...}' in the value "
               "of 'e'; expected ${NAME} or ${NAME:-default}");
    expect_msg("t.ini:7: unterminated '${' in the value of 'f'");
    expect_msg("t.ini:9: environment variable VIGIL_TEST_UNSET is not set");
    expect_msg("t.ini:10: '$' in the value of 'h' must start ${NAME} (write "
               "$$ for a literal $)");
    cfg_destroy(cfg);

    /* Values are bounded after substitution. */
    big = malloc(CFG_VALUE_MAX + 2);
    assert_non_null(big);
    memset(big, 'v', CFG_VALUE_MAX + 1);
    big[CFG_VALUE_MAX + 1] = '\0';
    setenv("VIGIL_TEST_BIG", big, 1);
    big[CFG_VALUE_MAX] = '\0';
    setenv("VIGIL_TEST_FITS", big, 1);
    free(big);
    cfg = load_bad("[vigil]\n"
                   "fits = ${VIGIL_TEST_FITS}\n"
                   "big = ${VIGIL_TEST_BIG}\n",
                   1);
    expect_msg("t.ini:3: the value of 'big' is too long (at most 4096 "
               "characters)");
    assert_int_equal(strlen(cfg_get(cfg_first(cfg, "vigil"), "fits")->value),
                     CFG_VALUE_MAX);
    cfg_destroy(cfg);
    unsetenv("VIGIL_TEST_BIG");
    unsetenv("VIGIL_TEST_FITS");
}

static void test_join_too_long(void **state)
{
    char text[8192];
    char line[256];
    struct cfg *cfg;
    size_t len;
    int i;

    (void)state;
    /* Each continuation adds "\n" and 190 characters: 21 of them make
     * 4011 characters, the 22nd would make 4202. */
    len = (size_t)snprintf(text, sizeof(text), "[vigil]\nlist =\n");
    for (i = 0; i < 23; i++) {
        make_line(line, sizeof(line), "  ", 190);
        len += (size_t)snprintf(text + len, sizeof(text) - len, "%s", line);
    }
    cfg = load_bad(text, 1);
    /* Continuations start on line 3, so the 22nd is line 24; the 23rd
     * is not reported again. */
    expect_msg("t.ini:24: the value of 'list' is too long (at most 4096 "
               "characters)");
    cfg_destroy(cfg);
}

/* The tree has a size limit too: 20000 values of 4 KiB exceed 64 MiB. */
static void test_too_large(void **state)
{
    const size_t nlines = 20000;
    char *big;
    char *text;
    size_t len;
    size_t i;
    struct cfg *cfg = NULL;

    (void)state;
    big = malloc(CFG_VALUE_MAX + 1);
    text = malloc(nlines * 32);
    assert_non_null(big);
    assert_non_null(text);
    memset(big, 'v', CFG_VALUE_MAX);
    big[CFG_VALUE_MAX] = '\0';
    setenv("VIGIL_TEST_BIG", big, 1);
    free(big);
    len = (size_t)snprintf(text, 32, "[vigil]\n");
    for (i = 0; i < nlines; i++) {
        len += (size_t)snprintf(text + len, 32, "k = ${VIGIL_TEST_BIG}\n");
    }
    cfg_diag_init(&diag);
    assert_int_equal(cfg_load_string("t.ini", text, &cfg, &diag),
                     VIGIL_ECONFIG);
    free(text);
    unsetenv("VIGIL_TEST_BIG");
    assert_non_null(cfg);
    expect_count(1);
    expect_msg("t.ini: configuration too large (over 64 MiB)");
    cfg_destroy(cfg);
}

static void test_diag_bound(void **state)
{
    char text[8192];
    struct cfg *cfg;
    size_t len;
    int i;

    (void)state;
    len = (size_t)snprintf(text, sizeof(text), "[vigil]\n");
    for (i = 0; i < 100; i++) {
        len += (size_t)snprintf(text + len, sizeof(text) - len, "junk\n");
    }
    cfg = load_bad(text, 100);
    assert_string_equal(diag.msg[CFG_DIAG_MAX - 1],
                        "t.ini:65: expected 'key = value' or a [section] "
                        "header");
    cfg_destroy(cfg);
    cfg_diag_add(NULL, "ignored %d", 1);
}

/* ------------------------------------------------------------------ */
/* cfg_apply */

static void test_apply_defaults(void **state)
{
    struct cfg *cfg;
    struct all a;

    (void)state;
    cfg = load_ok("");
    memset(&a, 0x5a, sizeof(a));
    assert_int_equal(cfg_apply(cfg, all_opts, NULL, NULL, &a, &diag), 0);
    expect_count(0);
    assert_string_equal(a.s, "dflt");
    assert_int_equal(a.i, -3);
    assert_true(a.d == 0.25);
    assert_int_equal(a.b, 1);
    assert_int_equal(a.dur, 10000);
    assert_int_equal(a.bytes, 65536);
    assert_int_equal(a.e, 1);
    assert_int_equal(a.l.n, 2);
    assert_string_equal(a.l.v[0], "x");
    assert_string_equal(a.l.v[1], "y");
    assert_null(a.password);
    assert_null(a.nodef);
    cfg_destroy(cfg);
}

static void test_apply_all_types(void **state)
{
    static const char *const extra[] = {"handled", NULL};
    struct cfg *cfg;
    struct cfg_section *s;
    struct cfg_entry *e;
    struct all a;

    (void)state;
    setenv("VIGIL_TEST_PW", "s3cret", 1);
    cfg = load_ok("[plugin all]\n"
                  "s = hello world\n"
                  "i = -42\n"
                  "d = 1.5e2\n"
                  "b = off\n"
                  "dur = 1.5s\n"
                  "bytes = 10MB\n"
                  "e = verbose\n"
                  "l = one\n"
                  "l = two ; comment\n"
                  "l =\n"
                  "    three\n"
                  "\n"
                  "    four\n"
                  "    ; a comment inside the list\n"
                  "l = five\n"
                  "password = ${VIGIL_TEST_PW}\n"
                  "handled = by the caller\n");
    s = cfg_first(cfg, "plugin");
    memset(&a, 0, sizeof(a));
    assert_int_equal(cfg_apply(cfg, all_opts, s, extra, &a, &diag), 0);
    expect_count(0);
    assert_string_equal(a.s, "hello world");
    assert_int_equal(a.i, -42);
    assert_true(a.d == 150.0);
    assert_int_equal(a.b, 0);
    assert_int_equal(a.dur, 1500);
    assert_int_equal(a.bytes, 10000000);
    assert_int_equal(a.e, 2);
    assert_int_equal(a.l.n, 5);
    assert_string_equal(a.l.v[0], "one");
    assert_string_equal(a.l.v[1], "two");
    assert_string_equal(a.l.v[2], "three");
    assert_string_equal(a.l.v[3], "four");
    assert_string_equal(a.l.v[4], "five");
    assert_string_equal(a.password, "s3cret");
    assert_null(a.nodef);
    for (e = s->entries; e != NULL; e = e->next) {
        assert_true(e->used);
    }
    assert_int_equal(cfg_check_unclaimed(cfg, "plugin", &diag), 0);
    cfg_destroy(cfg);
    unsetenv("VIGIL_TEST_PW");
}

/* The list is empty when the key is given with no lines. */
static void test_apply_empty_list(void **state)
{
    struct cfg *cfg;
    struct all a;

    (void)state;
    cfg = load_ok("[x]\nl =\n");
    assert_int_equal(
        cfg_apply(cfg, all_opts, cfg_first(cfg, "x"), NULL, &a, &diag), 0);
    assert_int_equal(a.l.n, 0);
    assert_null(a.l.v);
    cfg_destroy(cfg);
}

static void test_apply_unknown_key(void **state)
{
    static const struct vigil_option opts[] = {
        {"interval", VIGIL_OPT_DURATION, "10s", offsetof(struct all, dur), "h",
         0, NULL},
        {"warning", VIGIL_OPT_DOUBLE, "80", offsetof(struct all, d), "h", 0,
         NULL},
        {"critical", VIGIL_OPT_INT, "90", offsetof(struct all, i), "h", 0,
         NULL},
        OPT_END,
    };
    static const char *const extra[] = {"labels", NULL};
    static const char *const extra2[] = {"url", NULL};
    struct cfg *cfg;
    struct cfg_section *s;
    struct all a;

    (void)state;
    cfg = load_ok("[plugin sys]\n"  /* 1 */
                  "crtical = 95\n"  /* 2 */
                  "zzz = 1\n"       /* 3 */
                  "INTERVAL = 5s\n" /* 4 */
                  "lables = a\n"    /* 5 */
                  "warnign = 1\n"   /* 6 */
                  "url = 1\n");     /* 7 */
    s = cfg_first(cfg, "plugin");
    assert_int_equal(cfg_apply(cfg, opts, s, extra, &a, &diag), VIGIL_ECONFIG);
    expect_count(6);
    expect_msg("t.ini:2: unknown key 'crtical' in [plugin sys]; did you "
               "mean 'critical'?");
    expect_msg("t.ini:3: unknown key 'zzz' in [plugin sys]; valid keys: "
               "interval, warning, critical, labels");
    expect_msg("t.ini:4: unknown key 'INTERVAL' in [plugin sys]; did you "
               "mean 'interval'?");
    expect_msg("t.ini:5: unknown key 'lables' in [plugin sys]; did you "
               "mean 'labels'?");
    expect_msg("t.ini:6: unknown key 'warnign' in [plugin sys]; did you "
               "mean 'warning'?");
    expect_msg("t.ini:7: unknown key 'url' in [plugin sys]; valid keys: "
               "interval, warning, critical, labels");
    /* The valid defaults are still applied. */
    assert_int_equal(a.i, 90);
    assert_int_equal(cfg_get(s, "crtical")->used, 0);
    cfg_destroy(cfg);

    cfg = load_ok("[vigil]\nx = 1\n");
    assert_int_equal(
        cfg_apply(cfg, NULL, cfg_first(cfg, "vigil"), NULL, NULL, &diag),
        VIGIL_ECONFIG);
    expect_msg("t.ini:2: unknown key 'x' in [vigil]; it takes no keys");
    cfg_destroy(cfg);

    /* Short keys only get a suggestion one edit away. */
    cfg = load_ok("[vigil]\nuxx = 1\nulr = 2\n");
    assert_int_equal(
        cfg_apply(cfg, NULL, cfg_first(cfg, "vigil"), extra2, NULL, &diag),
        VIGIL_ECONFIG);
    expect_count(2);
    expect_msg("t.ini:2: unknown key 'uxx' in [vigil]; valid keys: url");
    expect_msg("t.ini:3: unknown key 'ulr' in [vigil]; did you mean 'url'?");
    cfg_destroy(cfg);
}

static void test_apply_bad_values(void **state)
{
    struct cfg *cfg;
    struct all a;

    (void)state;
    cfg = load_ok("[plugin all x]\n"   /* 1 */
                  "i = 12abc\n"        /* 2 */
                  "d = fast\n"         /* 3 */
                  "b = maybe\n"        /* 4 */
                  "dur = 10 parsecs\n" /* 5 */
                  "bytes = 3 lots\n"   /* 6 */
                  "e = loud\n"         /* 7 */
                  "password = \"x\"\n" /* 8: fine, a string */
                  "s = ok\n");         /* 9 */
    memset(&a, 0, sizeof(a));
    assert_int_equal(
        cfg_apply(cfg, all_opts, cfg_first(cfg, "plugin"), NULL, &a, &diag),
        VIGIL_ECONFIG);
    expect_count(6);
    expect_msg("t.ini:2: bad value '12abc' for 'i': expected a whole number "
               "such as 42 or -7");
    expect_msg("t.ini:3: bad value 'fast' for 'd': expected a number such "
               "as 0.5, 12 or 1e3");
    expect_msg("t.ini:4: bad value 'maybe' for 'b': expected yes/no, "
               "true/false, on/off or 1/0");
    expect_msg("t.ini:5: bad value '10 parsecs' for 'dur': expected a "
               "duration such as 500ms, 10s, 5m");
    expect_msg("t.ini:6: bad value '3 lots' for 'bytes': expected a size "
               "such as 512, 64KiB, 10MB, 1GiB");
    expect_msg("t.ini:7: bad value 'loud' for 'e': expected one of: quiet, "
               "normal, verbose");
    /* Bad values leave the defaults in place. */
    assert_int_equal(a.i, -3);
    assert_int_equal(a.e, 1);
    assert_string_equal(a.s, "ok");
    cfg_destroy(cfg);
}

static void test_apply_secret(void **state)
{
    static const struct vigil_option opts[] = {
        {"pin", VIGIL_OPT_INT, NULL, offsetof(struct all, i), "h",
         VIGIL_OPT_SECRET, NULL},
        {"code", VIGIL_OPT_INT, "hunter2", offsetof(struct all, dur), "h",
         VIGIL_OPT_SECRET, NULL},
        OPT_END,
    };
    struct cfg *cfg;
    struct all a;
    unsigned i;

    (void)state;
    cfg = load_ok("[vigil]\npin = hunter2\n");
    assert_int_equal(
        cfg_apply(cfg, opts, cfg_first(cfg, "vigil"), NULL, &a, &diag),
        VIGIL_ECONFIG);
    expect_count(2);
    expect_msg("t.ini:1: bad default for 'code' in the option table: "
               "expected a whole number such as 42 or -7");
    expect_msg("t.ini:2: bad value for 'pin': expected a whole number such "
               "as 42 or -7");
    for (i = 0; i < diag.n; i++) {
        assert_null(strstr(diag.msg[i], "hunter2"));
    }
    cfg_destroy(cfg);
}

static void test_apply_bad_defaults(void **state)
{
    static const struct vigil_option opts[] = {
        {"n", VIGIL_OPT_INT, "abc", offsetof(struct all, i), "h", 0, NULL},
        {"e", VIGIL_OPT_ENUM, "a", offsetof(struct all, e), "h", 0, NULL},
        {"t", 99, NULL, offsetof(struct all, b), "h", 0, NULL},
        {"f", VIGIL_OPT_ENUM, "c", offsetof(struct all, e), "h", 0, "a|b"},
        OPT_END,
    };
    struct cfg *cfg;
    struct all a;

    (void)state;
    cfg = load_ok("");
    assert_int_equal(cfg_apply(cfg, opts, NULL, NULL, &a, &diag),
                     VIGIL_ECONFIG);
    expect_count(4);
    expect_msg("t.ini: bad default 'abc' for 'n' in the option table: "
               "expected a whole number such as 42 or -7");
    expect_msg("t.ini: enum option 'e' has no choices");
    expect_msg("t.ini: option 't' has an unknown type 99");
    expect_msg("t.ini: bad default 'c' for 'f' in the option table: "
               "expected one of: a, b");
    cfg_destroy(cfg);
}

static void test_apply_duplicates_and_lines(void **state)
{
    struct cfg *cfg;
    struct all a;

    (void)state;
    cfg = load_ok("[vigil]\n"  /* 1 */
                  "i = 1\n"    /* 2 */
                  "s = a\n"    /* 3 */
                  "i = 2\n"    /* 4 */
                  "i = 3\n"    /* 5 */
                  "s = b\n"    /* 6 */
                  "  c\n"      /* 7 */
                  "dur = 5s\n" /* 8 */
                  "  6s\n"     /* 9 */
                  "  7s\n");   /* 10 */
    memset(&a, 0, sizeof(a));
    assert_int_equal(
        cfg_apply(cfg, all_opts, cfg_first(cfg, "vigil"), NULL, &a, &diag),
        VIGIL_ECONFIG);
    expect_count(4);
    expect_msg("t.ini:4: duplicate key 'i' (first at line 2)");
    expect_msg("t.ini:5: duplicate key 'i' (first at line 2)");
    expect_msg("t.ini:6: duplicate key 's' (first at line 3)");
    expect_msg("t.ini:9: indented line continues 'dur', but only list "
               "options take several lines");
    /* The first occurrence wins. */
    assert_int_equal(a.i, 1);
    assert_string_equal(a.s, "a");
    assert_int_equal(a.dur, 10000);
    cfg_destroy(cfg);
}

static void test_apply_required(void **state)
{
    struct opts {
        const char *url;
        struct vigil_list hdr;
    } o;
    static const struct vigil_option opts[] = {
        {"url", VIGIL_OPT_STRING, NULL, offsetof(struct opts, url), "h",
         VIGIL_OPT_REQUIRED, NULL},
        {"hdr", VIGIL_OPT_LIST, NULL, offsetof(struct opts, hdr), "h",
         VIGIL_OPT_REQUIRED, NULL},
        OPT_END,
    };
    struct cfg *cfg;

    (void)state;
    unsetenv("VIGIL_TEST_UNSET");
    cfg = load_ok("[vigil]\n"           /* 1 */
                  "\n"                  /* 2 */
                  "[plugin http api]\n" /* 3 */
                  "hdr = a\n"           /* 4 */
                  "[plugin http web]\n" /* 5 */
                  "url = ${VIGIL_TEST_UNSET:-http://x}\n");
    assert_int_equal(
        cfg_apply(cfg, opts, find(cfg, "plugin", "http"), NULL, &o, &diag),
        VIGIL_ECONFIG);
    expect_count(1);
    expect_msg("t.ini:3: [plugin http api] needs 'url'");

    cfg_diag_init(&diag);
    assert_int_equal(cfg_apply(cfg, opts,
                               cfg_next(find(cfg, "plugin", "http"), "plugin"),
                               NULL, &o, &diag),
                     VIGIL_ECONFIG);
    expect_count(1);
    expect_msg("t.ini:5: [plugin http web] needs 'hdr'");
    assert_string_equal(o.url, "http://x");

    cfg_diag_init(&diag);
    assert_int_equal(cfg_apply(cfg, opts, NULL, NULL, &o, &diag),
                     VIGIL_ECONFIG);
    expect_msg("t.ini: required option 'url' is not set (no section)");
    cfg_destroy(cfg);
}

/* An entry whose substitution failed is neither applied nor "missing". */
static void test_apply_after_env_error(void **state)
{
    static const struct vigil_option opts[] = {
        {"s", VIGIL_OPT_STRING, "dflt", offsetof(struct all, s), "h",
         VIGIL_OPT_REQUIRED, NULL},
        OPT_END,
    };
    struct cfg *cfg;
    struct all a;

    (void)state;
    unsetenv("VIGIL_TEST_UNSET");
    cfg = load_bad("[vigil]\ns = ${VIGIL_TEST_UNSET}\n", 1);
    cfg_diag_init(&diag);
    assert_int_equal(
        cfg_apply(cfg, opts, cfg_first(cfg, "vigil"), NULL, &a, &diag), 0);
    expect_count(0);
    assert_string_equal(a.s, "dflt");
    cfg_destroy(cfg);
}

static void test_unclaimed(void **state)
{
    struct cfg *cfg;

    (void)state;
    cfg = load_ok("[vigil]\n"        /* 1 */
                  "[plugin sys]\n"   /* 2 */
                  "\n"               /* 3 */
                  "[bogus]\n"        /* 4 */
                  "[plugin sys x]\n" /* 5 */
                  "[stor e]\n");     /* 6 */
    assert_non_null(cfg_first(cfg, "vigil"));
    assert_non_null(cfg_first(cfg, "plugin"));
    assert_int_equal(cfg_check_unclaimed(cfg, "vigil, plugin, store", &diag),
                     3);
    expect_count(3);
    expect_msg("t.ini:4: unknown section [bogus]; expected one of: vigil, "
               "plugin, store");
    expect_msg("t.ini:5: unknown section [plugin sys x]; expected one of: "
               "vigil, plugin, store");
    expect_msg("t.ini:6: unknown section [stor e]; expected one of: vigil, "
               "plugin, store");
    cfg_diag_init(&diag);
    assert_int_equal(cfg_check_unclaimed(cfg, NULL, &diag), 3);
    expect_msg("t.ini:4: unknown section [bogus]");
    cfg_destroy(cfg);
    cfg_destroy(NULL);
}

/* ------------------------------------------------------------------ */
/* Real files */

struct tmp {
    char dir[64];
    char path[128];
};

static int tmp_setup(void **state)
{
    struct tmp *t = calloc(1, sizeof(*t));

    if (t == NULL) {
        return -1;
    }
    snprintf(t->dir, sizeof(t->dir), "/tmp/vigil-cfg-XXXXXX");
    if (mkdtemp(t->dir) == NULL) {
        free(t);
        return -1;
    }
    snprintf(t->path, sizeof(t->path), "%s/vigil.ini", t->dir);
    *state = t;
    return 0;
}

static int tmp_teardown(void **state)
{
    struct tmp *t = *state;

    unlink(t->path);
    rmdir(t->dir);
    free(t);
    return 0;
}

static void write_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void test_file(void **state)
{
    static const char text[] = "[vigil]\n"
                               "db = data/vigil.db\n"
                               "bad line\n"
                               "nul = a\0b\n"
                               "after = 1\n";
    struct tmp *t = *state;
    char want[PATH_MAX + 64];
    char cwd[PATH_MAX];
    struct cfg *cfg = NULL;
    struct cfg_section *s;

    write_file(t->path, text, sizeof(text) - 1);
    cfg_diag_init(&diag);
    assert_int_equal(cfg_load(t->path, &cfg, &diag), VIGIL_ECONFIG);
    assert_non_null(cfg);
    expect_count(2);
    snprintf(want, sizeof(want),
             "%s:3: expected 'key = value' or a [section] header", t->path);
    expect_msg(want);
    snprintf(want, sizeof(want), "%s:4: NUL byte in line", t->path);
    expect_msg(want);
    assert_string_equal(cfg_path(cfg), t->path);
    s = cfg_first(cfg, "vigil");
    assert_string_equal(s->file, t->path);
    assert_int_equal(cfg_get(s, "after")->line, 5);

    snprintf(want, sizeof(want), "%s/data/vigil.db", t->dir);
    assert_string_equal(cfg_resolve_path(cfg, cfg_get(s, "db")->value), want);
    snprintf(want, sizeof(want), "%s/x", t->dir);
    assert_string_equal(cfg_resolve_path(cfg, "./x"), want);
    assert_string_equal(cfg_resolve_path(cfg, "/abs/x"), "/abs/x");
    assert_string_equal(cfg_resolve_path(cfg, "./"), t->dir);
    cfg_destroy(cfg);

    /* A relative config path still resolves from its own directory. */
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir("/tmp"), 0);
    cfg_diag_init(&diag);
    assert_int_equal(cfg_load(t->path + strlen("/tmp/"), &cfg, &diag),
                     VIGIL_ECONFIG);
    snprintf(want, sizeof(want), "%s/y", t->dir);
    assert_string_equal(cfg_resolve_path(cfg, "y"), want);
    cfg_destroy(cfg);
    assert_int_equal(chdir(cwd), 0);

    /* cfg_load_string resolves from the working directory. */
    cfg = load_ok("");
    snprintf(want, sizeof(want), "%s/z", strcmp(cwd, "/") ? cwd : "");
    assert_string_equal(cfg_resolve_path(cfg, "z"), want);
    cfg_destroy(cfg);
}

static void test_file_missing(void **state)
{
    struct tmp *t = *state;
    char path[256];
    char want[512];
    struct cfg *cfg = (struct cfg *)1;

    snprintf(path, sizeof(path), "%s/missing.ini", t->dir);
    cfg_diag_init(&diag);
    assert_int_equal(cfg_load(path, &cfg, &diag), VIGIL_ENOENT);
    assert_null(cfg);
    expect_count(1);
    snprintf(want, sizeof(want), "%s: cannot open: %s", path, strerror(ENOENT));
    expect_msg(want);

    cfg = (struct cfg *)1;
    cfg_diag_init(&diag);
    assert_int_equal(cfg_load(t->dir, &cfg, &diag), VIGIL_ENOENT);
    assert_null(cfg);
    expect_count(1);
}

static void test_diag_sort(void **state)
{
    struct cfg_diag d;

    (void)state;
    cfg_diag_init(&d);
    cfg_diag_add(&d, "t.ini:12: c");
    cfg_diag_add(&d, "t.ini:3: a");
    cfg_diag_add(&d, "t.ini:12: d");
    cfg_diag_add(&d, "t.ini:5: b");
    cfg_diag_sort(&d);
    assert_string_equal(d.msg[0], "t.ini:3: a");
    assert_string_equal(d.msg[1], "t.ini:5: b");
    assert_string_equal(d.msg[2], "t.ini:12: c");
    assert_string_equal(d.msg[3], "t.ini:12: d");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_bytes),
        cmocka_unit_test(test_parse_bool),
        cmocka_unit_test(test_parse_int_double),
        cmocka_unit_test(test_tree),
        cmocka_unit_test(test_long_names),
        cmocka_unit_test(test_bom_and_crlf),
        cmocka_unit_test(test_env),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_unterminated_section),
        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_duplicate_section),
        cmocka_unit_test(test_long_line),
        cmocka_unit_test(test_env_errors),
        cmocka_unit_test(test_join_too_long),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_diag_bound),
        cmocka_unit_test(test_apply_defaults),
        cmocka_unit_test(test_apply_all_types),
        cmocka_unit_test(test_apply_empty_list),
        cmocka_unit_test(test_apply_unknown_key),
        cmocka_unit_test(test_apply_bad_values),
        cmocka_unit_test(test_apply_secret),
        cmocka_unit_test(test_apply_bad_defaults),
        cmocka_unit_test(test_apply_duplicates_and_lines),
        cmocka_unit_test(test_apply_required),
        cmocka_unit_test(test_apply_after_env_error),
        cmocka_unit_test(test_unclaimed),
        cmocka_unit_test(test_diag_sort),
        cmocka_unit_test_setup_teardown(test_file, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_file_missing, tmp_setup,
                                        tmp_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
