/*
 * prom_test.c - unit tests of the prom plugin's parser (prom_parse), its
 * histogram quantile estimate (prom_hist) and its mapping to vigil series
 * (prom_map, driven with a mock host).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <vigil/plugin.h>

#include "prom_hist.h"
#include "prom_map.h"
#include "prom_parse.h"

/* ------------------------------------------------------------------------
 * Parser: lines fed through prom_parse_feed() are recorded as text.
 */

#define REC_MAX 64

static struct rec {
    int kind;
    unsigned line;
    char text[512]; /* sample: name|family|type|role|k=v,...|value|ts */
} recs[REC_MAX];
static size_t nrecs;

static void fmt_sample(char *out, size_t size, const struct prom_sample *s)
{
    size_t len, i;

    len = (size_t)snprintf(out, size, "%.*s|%.*s|%s|%d|", (int)s->name.n,
                           s->name.p, (int)s->family.n, s->family.p,
                           prom_type_name(s->type), (int)s->role);
    for (i = 0; i < s->nlabels && len < size; i++) {
        len +=
            (size_t)snprintf(out + len, size - len, "%s%.*s=%.*s", i ? "," : "",
                             (int)s->labels[i].key.n, s->labels[i].key.p,
                             (int)s->labels[i].value.n, s->labels[i].value.p);
    }
    if (len < size) {
        /* The shortest text that reads back as the same double. */
        int prec = 15;

        do {
            snprintf(out + len, size - len, "|%.*g", prec, s->value);
        } while (prec++ < 17 && !isnan(s->value) &&
                 strtod(out + len + 1, NULL) != s->value);
        len += strlen(out + len);
    }
    if (len < size && s->has_timestamp) {
        snprintf(out + len, size - len, "|%lld", (long long)s->timestamp_ms);
    }
}

static void rec_cb(void *arg, int kind, const struct prom_sample *s,
                   unsigned lineno, const char *err)
{
    struct rec *r;

    (void)arg;
    assert_true(nrecs < REC_MAX);
    r = &recs[nrecs++];
    r->kind = kind;
    r->line = lineno;
    if (kind == PROM_LINE_SAMPLE) {
        assert_non_null(s);
        assert_null(err);
        fmt_sample(r->text, sizeof(r->text), s);
    } else {
        assert_null(s);
        assert_non_null(err);
        snprintf(r->text, sizeof(r->text), "%s", err);
    }
}

static struct prom_parser *parser;

/* |a - b| <= eps (this cmocka has no assert_double_equal). */
#define assert_near(a, b, eps) assert_true(fabs((a) - (b)) <= (eps))

/* Feed text in chunks of `chunk` bytes (0: all at once). */
static void parse_text(const char *text, size_t chunk)
{
    size_t len = strlen(text), off = 0;

    nrecs = 0;
    prom_parser_init(parser);
    if (chunk == 0) {
        chunk = len ? len : 1;
    }
    while (off < len) {
        size_t n = len - off < chunk ? len - off : chunk;

        prom_parse_feed(parser, text + off, n, rec_cb, NULL);
        off += n;
    }
    prom_parse_finish(parser, rec_cb, NULL);
}

static void expect_sample(size_t i, unsigned line, const char *text)
{
    assert_true(i < nrecs);
    assert_int_equal(recs[i].kind, PROM_LINE_SAMPLE);
    assert_int_equal(recs[i].line, line);
    assert_string_equal(recs[i].text, text);
}

static void expect_error(size_t i, unsigned line, const char *part)
{
    assert_true(i < nrecs);
    assert_int_equal(recs[i].kind, PROM_LINE_ERROR);
    assert_int_equal(recs[i].line, line);
    if (strstr(recs[i].text, part) == NULL) {
        fail_msg("line %u: error '%s' does not say '%s'", line, recs[i].text,
                 part);
    }
}

static const char basic_text[] =
    "# HELP orders_total Orders placed.\n"
    "# TYPE orders_total counter\n"
    "orders_total{side=\"buy\"} 3\n"
    "orders_total{side=\"sell\"} 1.5e3 1700000000123\n"
    "\n"
    "# a comment\n"
    "# TYPE queue_depth gauge\r\n"
    "queue_depth{q=\"a\\\"b\\\\c\\nd\"} -2.5\r\n"
    "  queue_depth {q=\"x\" , } \t NaN\n"
    "up +Inf\n"
    "down -Inf\n"
    "caps{a=\"1\",b=\"\"} inf\n"
    "ns:rule:rate5m 0x1\n"
    "ts_neg 1 -5\n";

static void test_parse_basic(void **state)
{
    size_t chunk;

    (void)state;
    /* Every chunk size gives the same result: lines split anywhere, CR
     * and LF in different pieces. */
    for (chunk = 0; chunk <= sizeof(basic_text); chunk++) {
        parse_text(basic_text, chunk);
        assert_int_equal(nrecs, 9);
        expect_sample(0, 3, "orders_total|orders_total|counter|0|side=buy|3");
        expect_sample(
            1, 4,
            "orders_total|orders_total|counter|0|side=sell|1500|1700000000123");
        expect_sample(2, 8,
                      "queue_depth|queue_depth|gauge|0|q=a\"b\\c\nd|-2.5");
        expect_sample(3, 9, "queue_depth|queue_depth|gauge|0|q=x|nan");
        expect_sample(4, 10, "up|up|untyped|0||inf");
        expect_sample(5, 11, "down|down|untyped|0||-inf");
        expect_sample(6, 12, "caps|caps|untyped|0|a=1,b=|inf");
        expect_error(7, 13, "column 16: value '0x1' is not a number");
        expect_sample(8, 14, "ts_neg|ts_neg|untyped|0||1|-5");
    }
}

static const char hist_text[] =
    "# TYPE lat_seconds histogram\n"
    "lat_seconds_bucket{le=\"0.1\",stage=\"risk\"} 1\n"
    "lat_seconds_bucket{stage=\"risk\",le=\"+Inf\"} 4\n"
    "lat_seconds_sum{stage=\"risk\"} 2.5\n"
    "lat_seconds_count{stage=\"risk\"} 4\n"
    "# TYPE rpc_seconds summary\n"
    "rpc_seconds{quantile=\"0.99\"} 0.2\n"
    "rpc_seconds_sum 10\n"
    "rpc_seconds_count 7\n"
    "lat_seconds_bucket{le=\"1\"} 3\n"
    "# TYPE lat2 histogram\n"
    "lat2 5\n"
    "lat2_bucket{x=\"1\"} 5\n"
    "lat2_bucket{le=\"abc\"} 5\n"
    "# TYPE s2 summary\n"
    "s2{x=\"1\"} 1\n"
    "s2_count{quantile=\"0.5\"} 3\n";

static void test_parse_histogram_summary(void **state)
{
    (void)state;
    parse_text(hist_text, 0);
    assert_int_equal(nrecs, 13);
    expect_sample(
        0, 2,
        "lat_seconds_bucket|lat_seconds|histogram|1|le=0.1,stage=risk|"
        "1");
    assert_int_equal(recs[0].kind, PROM_LINE_SAMPLE);
    expect_sample(1, 3,
                  "lat_seconds_bucket|lat_seconds|histogram|1|stage=risk,le=+"
                  "Inf|4");
    expect_sample(2, 4,
                  "lat_seconds_sum|lat_seconds|histogram|2|stage=risk|2.5");
    expect_sample(3, 5,
                  "lat_seconds_count|lat_seconds|histogram|3|stage=risk|4");
    expect_sample(4, 7, "rpc_seconds|rpc_seconds|summary|4|quantile=0.99|0.2");
    expect_sample(5, 8, "rpc_seconds_sum|rpc_seconds|summary|2||10");
    expect_sample(6, 9, "rpc_seconds_count|rpc_seconds|summary|3||7");
    /* Another family in between: untyped from then on. */
    expect_sample(7, 10,
                  "lat_seconds_bucket|lat_seconds_bucket|untyped|0|le=1|3");
    expect_error(8, 12, "without _bucket, _sum or _count");
    expect_error(9, 13, "without an 'le' label");
    expect_error(10, 14, "le \"abc\" is not a number");
    expect_error(11, 16, "without a 'quantile' label");
    expect_sample(12, 17, "s2_count|s2|summary|3|quantile=0.5|3");

    /* The le and quantile values themselves. */
    prom_parser_init(parser);
    assert_int_equal(
        prom_parse_line(parser, "# TYPE h histogram", 18, &parser->sample),
        PROM_LINE_SKIP);
    assert_int_equal(prom_parse_line(parser, "h_bucket{le=\"2.5e-1\"} 1", 23,
                                     &parser->sample),
                     PROM_LINE_SAMPLE);
    assert_true(parser->sample.le == 0.25);
    assert_int_equal(
        prom_parse_line(parser, "h_bucket{le=\"+Inf\"} 1", 21, &parser->sample),
        PROM_LINE_SAMPLE);
    assert_true(isinf(parser->sample.le) && parser->sample.le > 0);
}

static const char bad_text[] = "good_a 1\n"
                               "1bad 2\n"
                               "m{a=\"x\" 3\n"
                               "m{a=\"x\\t\"} 3\n"
                               "m{a=\"x\",a=\"y\"} 3\n"
                               "m{a \"x\"} 3\n"
                               "m{a=x} 3\n"
                               "m{a=\"x\"\n"
                               "m\n"
                               "m 1 2 3\n"
                               "m 1 1.5\n"
                               "m 1e400\n"
                               "m-x 1\n"
                               "# TYPE\n"
                               "# TYPE m frequency\n"
                               "# TYPE m gauge extra\n"
                               "m{=\"x\"} 1\n"
                               "m 99999999999999999999\n"
                               "m 1 99999999999999999999\n"
                               "good_b 2\n";

static void test_parse_errors(void **state)
{
    (void)state;
    parse_text(bad_text, 0);
    assert_int_equal(nrecs, 20);
    expect_sample(0, 1, "good_a|good_a|untyped|0||1");
    expect_error(1, 2, "column 1: expected a metric name");
    expect_error(2, 3, "expected ',' or '}'");
    expect_error(3, 4, "invalid escape '\\t'");
    expect_error(4, 5, "duplicate label 'a'");
    expect_error(5, 6, "expected '=' after label 'a'");
    expect_error(6, 7, "expected '\"' to open the value of 'a'");
    expect_error(7, 8, "missing '}'");
    expect_error(8, 9, "expected a value");
    expect_error(9, 10, "unexpected text after the timestamp");
    expect_error(10, 11, "timestamp '1.5' is not a whole number");
    expect_error(11, 12, "value '1e400' is not a number");
    expect_error(12, 13, "invalid character in metric name");
    expect_error(13, 14, "expected a metric name after # TYPE");
    expect_error(14, 15, "unknown type 'frequency'");
    expect_error(15, 16, "unexpected text after the type");
    expect_error(16, 17, "expected a label name or '}'");
    /* Too many digits for a double's exactness is still a number. */
    expect_sample(17, 18, "m|m|untyped|0||1e+20");
    expect_error(18, 19, "timestamp '99999999999999999999'");
    expect_sample(19, 20, "good_b|good_b|untyped|0||2");
}

static void test_parse_long_lines(void **state)
{
    size_t n = PROM_LINE_MAX + 100, chunk;
    char *text = malloc(3 * n);
    size_t len = 0;

    (void)state;
    assert_non_null(text);
    /* A long comment (skipped), a long sample (error), a good line, and
     * a label set that fills the line exactly. */
    text[len++] = '#';
    memset(text + len, 'h', n);
    len += n;
    text[len++] = '\n';
    memcpy(text + len, "m{a=\"", 5);
    len += 5;
    memset(text + len, 'v', n);
    len += n;
    memcpy(text + len, "\"} 1\nok 7\n", 10);
    len += 10;
    text[len] = '\0';
    for (chunk = 0; chunk < 5000; chunk += 997) {
        parse_text(text, chunk);
        assert_int_equal(nrecs, 2);
        expect_error(0, 2, "line longer than 32768 bytes");
        expect_sample(1, 3, "ok|ok|untyped|0||7");
    }
    /* No newline at the end, and a lone CR. */
    parse_text("a 1\nb 2\r", 3);
    assert_int_equal(nrecs, 2);
    expect_sample(1, 2, "b|b|untyped|0||2");
    free(text);
}

static void test_parse_float(void **state)
{
    static const struct {
        const char *text;
        int ok;
        double v;
    } cases[] = {
        {"0", 1, 0},         {"-0.5", 1, -0.5}, {"+3", 1, 3},
        {"1e3", 1, 1000},    {"1E-3", 1, 1e-3}, {".5", 1, 0.5},
        {"5.", 1, 5},        {"1e", 0, 0},      {"e1", 0, 0},
        {".", 0, 0},         {"", 0, 0},        {"1.2.3", 0, 0},
        {"0x10", 0, 0},      {" 1", 0, 0},      {"1 ", 0, 0},
        {"nan(1)", 0, 0},    {"+nan", 0, 0},    {"infinite", 0, 0},
        {"1e308", 1, 1e308}, {"-1e309", 0, 0},  {"1e-400", 1, 0},
    };
    double v;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = prom_parse_float(cases[i].text, strlen(cases[i].text), &v);

        if (rc != (cases[i].ok ? 0 : -1)) {
            fail_msg("'%s': rc %d", cases[i].text, rc);
        }
        if (cases[i].ok && v != cases[i].v) {
            fail_msg("'%s': %g", cases[i].text, v);
        }
    }
    assert_int_equal(prom_parse_float("NaN", 3, &v), 0);
    assert_true(isnan(v));
    assert_int_equal(prom_parse_float("nan", 3, &v), 0);
    assert_true(isnan(v));
    assert_int_equal(prom_parse_float("-Inf", 4, &v), 0);
    assert_true(isinf(v) && v < 0);
    assert_int_equal(prom_parse_float("+Infinity", 9, &v), 0);
    assert_true(isinf(v) && v > 0);
    assert_int_equal(prom_parse_float("INF", 3, &v), 0);
    assert_true(isinf(v) && v > 0);
}

/* ------------------------------------------------------------------------
 * Quantile estimate: exact values, worked out by hand and as PromQL's
 * histogram_quantile gives them (promql/testdata/histograms.test).
 */

static void test_hist_quantile(void **state)
{
    /* Cumulative 50, 70, 110, 120 at le 0.1, 0.2, 1, +Inf. */
    struct prom_bucket b[] = {{1, 110}, {INFINITY, 120}, {0.1, 50}, {0.2, 70}};
    size_t n;

    (void)state;
    n = prom_hist_prepare(b, 4);
    assert_int_equal(n, 4);
    assert_true(b[0].le == 0.1 && b[3].le == INFINITY);
    /* rank 60 in (0.1, 0.2]: 0.1 + 0.1 * (60 - 50) / 20 */
    assert_true(prom_hist_quantile(0.5, b, n) == 0.1 + (0.2 - 0.1) * 0.5);
    assert_near(prom_hist_quantile(0.5, b, n), 0.15, 1e-15);
    /* rank 36 in the first bucket, which starts at 0 */
    assert_true(prom_hist_quantile(0.3, b, n) == 0.1 * (36.0 / 50.0));
    /* rank 96 in (0.2, 1]: 0.2 + 0.8 * 26 / 40 */
    assert_true(prom_hist_quantile(0.8, b, n) ==
                0.2 + (1 - 0.2) * ((0.8 * 120 - 70) / 40));
    assert_near(prom_hist_quantile(0.8, b, n), 0.72, 1e-15);
    /* rank 118.8 falls in +Inf: the highest finite bound */
    assert_true(prom_hist_quantile(0.99, b, n) == 1.0);
    assert_true(prom_hist_quantile(0, b, n) == 0);
    assert_true(prom_hist_quantile(1, b, n) == 1.0);
    assert_true(isinf(prom_hist_quantile(-0.1, b, n)));
    assert_true(prom_hist_quantile(-0.1, b, n) < 0);
    assert_true(prom_hist_quantile(1.1, b, n) > 0);
    assert_true(isnan(prom_hist_quantile(NAN, b, n)));

    /* Equal bounds merge; counts made monotonic. */
    {
        struct prom_bucket c[] = {
            {1, 2}, {1, 3}, {2, 4}, {3, 3}, {INFINITY, 10}};

        n = prom_hist_prepare(c, 5);
        assert_int_equal(n, 4);
        assert_true(c[0].le == 1 && c[0].count == 5);
        assert_true(c[1].count == 5 && c[2].count == 5);
        /* rank 5 reached by the first bucket: 0 + 1 * 5 / 5 */
        assert_true(prom_hist_quantile(0.5, c, n) == 1.0);
        /* rank 9 is in +Inf: 3 */
        assert_true(prom_hist_quantile(0.9, c, n) == 3.0);
    }
    /* A first bucket at or below zero is its own bound. */
    {
        struct prom_bucket d[] = {{-1, 5}, {0, 8}, {INFINITY, 10}};

        n = prom_hist_prepare(d, 3);
        assert_true(prom_hist_quantile(0.2, d, n) == -1);
        /* rank 7 in (-1, 0]: -1 + 1 * (7 - 5) / 3 */
        assert_true(prom_hist_quantile(0.7, d, n) == -1 + 1 * (2.0 / 3.0));
    }
    /* Undefined: no +Inf bucket, one bucket, no observations, NaN. */
    {
        struct prom_bucket e[] = {{1, 1}, {2, 2}};
        struct prom_bucket f[] = {{INFINITY, 3}};
        struct prom_bucket g[] = {{1, 0}, {INFINITY, 0}};
        struct prom_bucket h[] = {{1, NAN}, {INFINITY, 2}};

        assert_true(isnan(prom_hist_quantile(0.5, e, prom_hist_prepare(e, 2))));
        assert_true(isnan(prom_hist_quantile(0.5, f, prom_hist_prepare(f, 1))));
        assert_true(isnan(prom_hist_quantile(0.5, g, prom_hist_prepare(g, 2))));
        assert_true(isnan(prom_hist_quantile(0.5, h, 2)));
    }
}

/* ------------------------------------------------------------------------
 * Mapping, with a mock host.
 */

#define MOCK_SERIES_MAX 256

static struct mock {
    struct {
        char key[640];
        double last;
        int64_t ts;
        unsigned round; /* commit that last published it */
    } s[MOCK_SERIES_MAX];
    size_t n;
    size_t limit;
    unsigned round;
    unsigned published; /* this round */
    unsigned warns, infos, errors;
    char warn[512];     /* the last warning */
    char warnlog[4096]; /* all of them */
} mock;

static int mock_inst_tag;
#define MOCK_INST ((vigil_instance *)&mock_inst_tag)

static int label_cmp(const void *a, const void *b)
{
    const struct vigil_label *x = a, *y = b;

    return strcmp(x->key, y->key);
}

static int mock_series(vigil_instance *inst, const char *name,
                       const struct vigil_label *labels, size_t nlabels,
                       vigil_series_id *out)
{
    struct vigil_label sorted[VIGIL_LABELS_MAX];
    char key[640];
    size_t i, len;

    assert_ptr_equal(inst, MOCK_INST);
    if (nlabels > VIGIL_LABELS_MAX || strlen(name) >= VIGIL_NAME_MAX) {
        return VIGIL_EINVAL;
    }
    if (nlabels > 0) {
        memcpy(sorted, labels, nlabels * sizeof(*labels));
        qsort(sorted, nlabels, sizeof(*sorted), label_cmp);
    }
    len = (size_t)snprintf(key, sizeof(key), "%s", name);
    for (i = 0; i < nlabels; i++) {
        assert_true(strlen(sorted[i].key) < VIGIL_LABEL_KEY_MAX);
        assert_true(strlen(sorted[i].value) < VIGIL_LABEL_VALUE_MAX);
        for (const char *v = sorted[i].value; *v; v++) {
            assert_true((unsigned char)*v >= 0x20 && *v != 0x7f);
        }
        if (i > 0 && strcmp(sorted[i - 1].key, sorted[i].key) == 0) {
            return VIGIL_EINVAL;
        }
        len += (size_t)snprintf(key + len, sizeof(key) - len, "%s%s=\"%s\"",
                                i == 0 ? "{" : ",", sorted[i].key,
                                sorted[i].value);
    }
    if (nlabels > 0) {
        snprintf(key + len, sizeof(key) - len, "}");
    }
    for (i = 0; i < mock.n; i++) {
        if (strcmp(mock.s[i].key, key) == 0) {
            *out = (vigil_series_id)i;
            return 0;
        }
    }
    if (mock.n >= mock.limit) {
        return VIGIL_ELIMIT;
    }
    snprintf(mock.s[mock.n].key, sizeof(mock.s[mock.n].key), "%s", key);
    *out = (vigil_series_id)mock.n++;
    return 0;
}

static void mock_publish(vigil_instance *inst, vigil_series_id id,
                         int64_t ts_ns, double value)
{
    assert_ptr_equal(inst, MOCK_INST);
    assert_true(id < mock.n);
    mock.s[id].last = value;
    mock.s[id].ts = ts_ns;
    mock.s[id].round = mock.round;
    mock.published++;
}

static void mock_log(vigil_instance *inst, int level, const char *fmt, ...)
    VIGIL_PRINTF(3, 4);
static void mock_log(vigil_instance *inst, int level, const char *fmt, ...)
{
    va_list ap;

    assert_ptr_equal(inst, MOCK_INST);
    if (level == VIGIL_LOG_WARN) {
        mock.warns++;
        va_start(ap, fmt);
        vsnprintf(mock.warn, sizeof(mock.warn), fmt, ap);
        va_end(ap);
        {
            size_t len = strlen(mock.warnlog);

            snprintf(mock.warnlog + len, sizeof(mock.warnlog) - len, "%s\n",
                     mock.warn);
        }
    } else if (level == VIGIL_LOG_INFO) {
        mock.infos++;
    } else {
        mock.errors++;
    }
}

static const struct vigil_host mock_host = {
    .abi_version = VIGIL_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct vigil_host),
    .series = mock_series,
    .publish = mock_publish,
    .log = mock_log,
};

static void mock_reset(size_t limit)
{
    memset(&mock, 0, sizeof(mock));
    mock.limit = limit;
}

static int find_series(const char *key)
{
    size_t i;

    for (i = 0; i < mock.n; i++) {
        if (strcmp(mock.s[i].key, key) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* Was key published by the last commit? */
static int published(const char *key)
{
    int i = find_series(key);

    return i >= 0 && mock.s[i].round == mock.round;
}

static double value(const char *key)
{
    if (!published(key)) {
        fail_msg("%s was not published", key);
    }
    return mock.s[find_series(key)].last;
}

static struct prom_map_stats stats;
static unsigned dups, dup_first;

static void map_cb(void *arg, int kind, const struct prom_sample *s,
                   unsigned lineno, const char *err)
{
    struct prom_map *m = arg;
    unsigned first = 0;

    if (kind != PROM_LINE_SAMPLE) {
        fail_msg("line %u: %s", lineno, err);
    }
    if (prom_map_stage(m, s, lineno, &first) == PROM_MAP_DUPLICATE) {
        dups++;
        dup_first = first;
    }
}

/* One scrape of text: staged, then committed at ts (or aborted). */
static void scrape(struct prom_map *m, const char *text, int commit)
{
    mock.round++;
    mock.published = 0;
    dups = 0;
    prom_parser_init(parser);
    prom_map_begin(m);
    prom_parse_feed(parser, text, strlen(text), map_cb, m);
    prom_parse_finish(parser, map_cb, m);
    /* Nothing is published before the commit. */
    assert_int_equal(mock.published, 0);
    if (commit) {
        prom_map_commit(m, 1000 + mock.round, &stats);
    } else {
        prom_map_abort(m, &stats);
    }
}

static void test_map_plain(void **state)
{
    struct prom_map *m;

    (void)state;
    mock_reset(MOCK_SERIES_MAX);
    assert_int_equal(prom_map_create(&mock_host, MOCK_INST, "app", 100, &m), 0);
    scrape(m,
           "# TYPE orders_total counter\n"
           "orders_total{side=\"buy\"} 3\n"
           "orders_total{side=\"buy\"} 4\n"
           "queue_depth{q=\"a\\\"b\\\\c\\nd\",instance=\"i1\"} -2.5\n"
           "odd{http.method=\"GET\",x-y=\"1\",c:d=\"\x01\t\"} NaN\n"
           "ns:rule 2 1700000000000\n",
           1);
    assert_int_equal(dups, 1);
    assert_int_equal(dup_first, 2);
    assert_int_equal(stats.staged, 4);
    assert_int_equal(stats.published, 4);
    assert_int_equal(stats.dropped, 0);
    /* The first sample of a series wins; all carry the commit time. */
    assert_true(value("app.orders_total{side=\"buy\"}") == 3);
    assert_int_equal(mock.s[find_series("app.orders_total{side=\"buy\"}")].ts,
                     1001);
    assert_true(value("app.queue_depth{exported_instance=\"i1\","
                      "q=\"a\"b\\c\\nd\"}") == -2.5);
    assert_true(isnan(value("app.odd{c_d=\"\\x01\\t\",http_method=\"GET\","
                            "x_y=\"1\"}")));
    assert_true(value("app.ns_rule") == 2);

    /* A failed scrape publishes nothing; the next good one does. */
    scrape(m, "orders_total{side=\"buy\"} 5\n", 0);
    assert_int_equal(mock.published, 0);
    assert_int_equal(stats.staged, 1);
    scrape(m, "orders_total{side=\"buy\"} 6\n", 1);
    assert_true(value("app.orders_total{side=\"buy\"}") == 6);
    assert_int_equal(mock.published, 1);
    assert_int_equal(prom_map_series(m), 4);
    prom_map_destroy(m);

    /* Prefixes: "x_" is used as is, "a.b." too; a bad one is refused. */
    assert_int_equal(prom_map_create(&mock_host, MOCK_INST, "x_", 100, &m), 0);
    scrape(m, "m 1\n", 1);
    assert_true(value("x_m") == 1);
    prom_map_destroy(m);
    assert_int_equal(prom_map_create(&mock_host, MOCK_INST, NULL, 100, &m), 0);
    scrape(m, "m 2\n", 1);
    assert_true(value("m") == 2);
    prom_map_destroy(m);
    assert_int_equal(prom_map_create(&mock_host, MOCK_INST, "1x", 100, &m),
                     VIGIL_EINVAL);
    assert_null(m);
    assert_int_equal(prom_map_create(&mock_host, MOCK_INST, "a-b", 100, &m),
                     VIGIL_EINVAL);
    assert_int_equal(prom_map_create(&mock_host, MOCK_INST, "", 0, &m),
                     VIGIL_EINVAL);
}

/* A histogram scrape: cumulative counts at le 0.1, 0.5, 1, +Inf. */
static void hist_scrape(struct prom_map *m, const double c[4], int commit)
{
    char text[1024];

    snprintf(text, sizeof(text),
             "# TYPE lat_seconds histogram\n"
             "lat_seconds_bucket{stage=\"risk\",le=\"0.1\"} %.17g\n"
             "lat_seconds_bucket{stage=\"risk\",le=\"0.5\"} %.17g\n"
             "lat_seconds_bucket{stage=\"risk\",le=\"1.0\"} %.17g\n"
             "lat_seconds_bucket{stage=\"risk\",le=\"+Inf\"} %.17g\n"
             "lat_seconds_sum{stage=\"risk\"} 1\n"
             "lat_seconds_count{stage=\"risk\"} %.17g\n",
             c[0], c[1], c[2], c[3], c[3]);
    scrape(m, text, commit);
}

#define P(q) "lat_seconds.p" q "{stage=\"risk\"}"

static void test_map_histogram(void **state)
{
    static const double s1[4] = {1, 2, 3, 4};
    /* +10 at <=0.1, +20 in (0.1,0.5], +10 in (0.5,1]: 40 more */
    static const double s2[4] = {11, 32, 43, 44};
    /* Reset: the process restarted and observed 2 and 2. */
    static const double s4[4] = {0, 2, 4, 4};
    struct prom_map *m;

    (void)state;
    mock_reset(MOCK_SERIES_MAX);
    assert_int_equal(prom_map_create(&mock_host, MOCK_INST, NULL, 100, &m), 0);

    /* The first scrape only primes: buckets, sum and count, no
     * quantiles. */
    hist_scrape(m, s1, 1);
    assert_int_equal(stats.published, 6);
    assert_int_equal(stats.quantiles, 0);
    assert_true(value("lat_seconds_bucket{le=\"0.1\",stage=\"risk\"}") == 1);
    assert_true(value("lat_seconds_bucket{le=\"+Inf\",stage=\"risk\"}") == 4);
    assert_true(value("lat_seconds_count{stage=\"risk\"}") == 4);
    assert_false(published(P("50")));
    /* 6 series and 4 quantile series */
    assert_int_equal(prom_map_series(m), 10);

    /* Increase 10, 30, 40, 40. */
    hist_scrape(m, s2, 1);
    assert_int_equal(stats.quantiles, 4);
    /* p50: rank 20 in (0.1, 0.5]: 0.1 + 0.4 * (20 - 10) / 20 */
    assert_true(value(P("50")) == 0.1 + (0.5 - 0.1) * (10.0 / 20.0));
    assert_near(value(P("50")), 0.3, 1e-15);
    /* p90: rank 36 in (0.5, 1]: 0.5 + 0.5 * 6 / 10 */
    assert_true(value(P("90")) == 0.5 + (1.0 - 0.5) * (6.0 / 10.0));
    assert_near(value(P("90")), 0.8, 1e-15);
    /* p95: rank 38 */
    assert_true(value(P("95")) == 0.5 + (1.0 - 0.5) * (8.0 / 10.0));
    /* p99: rank 39.6 */
    assert_true(value(P("99")) == 0.5 + (1.0 - 0.5) * ((0.99 * 40 - 30) / 10));
    assert_near(value(P("99")), 0.98, 1e-12);
    assert_int_equal(mock.s[find_series(P("99"))].ts, 1000 + mock.round);

    /* Nothing observed since: no quantiles. */
    hist_scrape(m, s2, 1);
    assert_int_equal(stats.quantiles, 0);
    assert_false(published(P("50")));

    /* A reset: each bucket that went down counts from zero again, so
     * the increase is 0, 2, 4, 4: p50 is rank 2 in (0.1, 0.5]. */
    hist_scrape(m, s4, 1);
    assert_int_equal(stats.quantiles, 4);
    assert_true(value(P("50")) == 0.1 + (0.5 - 0.1) * (2.0 / 2.0));
    assert_true(value(P("90")) == 0.5 + (1.0 - 0.5) * ((0.9 * 4 - 2) / 2));

    /* A failed scrape does not move the reference: the next good one
     * compares with s4. */
    hist_scrape(m, s1, 0);
    hist_scrape(m, (const double[4]){4, 4, 8, 8}, 1);
    /* increase 4, 2, 4, 4: p50 rank 2 in the first bucket */
    assert_true(value(P("50")) == 0.1 * (2.0 / 4.0));

    /* A scrape missing a bucket gives no quantiles and primes again. */
    scrape(m,
           "# TYPE lat_seconds histogram\n"
           "lat_seconds_bucket{stage=\"risk\",le=\"0.1\"} 5\n"
           "lat_seconds_bucket{stage=\"risk\",le=\"+Inf\"} 9\n",
           1);
    assert_int_equal(stats.quantiles, 0);
    hist_scrape(m, (const double[4]){5, 6, 9, 10}, 1);
    assert_int_equal(stats.quantiles, 0);
    hist_scrape(m, (const double[4]){6, 7, 10, 12}, 1);
    assert_int_equal(stats.quantiles, 4);
    /* increase 1, 1, 1, 2: p50 is rank 1, reached in the first bucket;
     * p90 (rank 1.8) lands in +Inf: the highest finite bound */
    assert_true(value(P("50")) == 0.1 * (1.0 / 1.0));
    assert_true(value(P("90")) == 1.0);
    /* Labels other than le separate histograms; no +Inf: no quantiles. */
    scrape(m,
           "# TYPE h histogram\n"
           "h_bucket{a=\"1\",le=\"1\"} 1\n"
           "h_bucket{a=\"2\",le=\"1\"} 1\n",
           1);
    scrape(m,
           "# TYPE h histogram\n"
           "h_bucket{a=\"1\",le=\"1\"} 2\n"
           "h_bucket{a=\"2\",le=\"1\"} 3\n",
           1);
    assert_int_equal(stats.quantiles, 0);
    assert_true(find_series("h.p50{a=\"1\"}") >= 0);
    assert_true(find_series("h.p50{a=\"2\"}") >= 0);
    prom_map_destroy(m);
}

static void test_map_limits(void **state)
{
    char text[8192], name[200];
    struct prom_map *m;
    size_t len = 0;
    int i;

    (void)state;
    mock_reset(MOCK_SERIES_MAX);
    assert_int_equal(prom_map_create(&mock_host, MOCK_INST, NULL, 5, &m), 0);
    for (i = 0; i < 8; i++) {
        len += (size_t)snprintf(text + len, sizeof(text) - len, "m%d 1\n", i);
    }
    scrape(m, text, 1);
    assert_int_equal(stats.staged, 5);
    assert_int_equal(stats.dropped, 3);
    assert_int_equal(mock.warns, 1);
    assert_non_null(strstr(mock.warn, "max_series (5) reached: 3 new series "
                                      "dropped in this scrape, the first m5"));
    assert_true(published("m4") && !published("m5"));
    /* Same again: counted, not logged again. */
    scrape(m, text, 1);
    assert_int_equal(stats.dropped, 3);
    assert_int_equal(mock.warns, 1);
    prom_map_destroy(m);

    /* A histogram needs room for its quantile series too. */
    mock_reset(MOCK_SERIES_MAX);
    assert_int_equal(prom_map_create(&mock_host, MOCK_INST, NULL, 3, &m), 0);
    hist_scrape(m, (const double[4]){1, 2, 3, 4}, 1);
    assert_non_null(strstr(mock.warnlog, "max_series (3) reached: no "
                                         "quantiles for histogram "
                                         "lat_seconds"));
    hist_scrape(m, (const double[4]){2, 3, 4, 5}, 1);
    assert_int_equal(stats.quantiles, 0);
    assert_int_equal(prom_map_series(m), 3);
    prom_map_destroy(m);

    /* Series vigil refuses: logged once, skipped from then on. */
    mock_reset(MOCK_SERIES_MAX);
    assert_int_equal(prom_map_create(&mock_host, MOCK_INST, NULL, 100, &m), 0);
    memset(name, 'n', 130);
    name[130] = '\0';
    snprintf(text, sizeof(text), "%s 1\nok 2\n", name);
    scrape(m, text, 1);
    assert_int_equal(stats.dropped, 1);
    assert_int_equal(mock.warns, 1);
    assert_non_null(strstr(mock.warn, "line 1: series nnn"));
    assert_non_null(strstr(mock.warn, "name is longer than vigil allows"));
    assert_true(value("ok") == 2);
    scrape(m, text, 1);
    assert_int_equal(stats.dropped, 1);
    assert_int_equal(mock.warns, 1);
    /* Too many labels; a value too long once escaped. */
    len = (size_t)snprintf(text, sizeof(text), "many{");
    for (i = 0; i < 17; i++) {
        len +=
            (size_t)snprintf(text + len, sizeof(text) - len, "l%d=\"v\",", i);
    }
    len += (size_t)snprintf(text + len, sizeof(text) - len, "} 1\nlong{v=\"");
    for (i = 0; i < 130; i++) {
        text[len++] = '\\';
        text[len++] = 'n';
    }
    snprintf(text + len, sizeof(text) - len, "\"} 1\n");
    scrape(m, text, 1);
    assert_int_equal(stats.dropped, 2);
    assert_non_null(strstr(mock.warn, "label value is longer"));
    prom_map_destroy(m);

    /* The core's own limit: refused, not retried. */
    mock_reset(1);
    assert_int_equal(prom_map_create(&mock_host, MOCK_INST, NULL, 100, &m), 0);
    scrape(m, "a 1\nb 2\n", 1);
    assert_true(value("a") == 1);
    assert_int_equal(stats.dropped, 1);
    prom_map_destroy(m);
}

/* Many series: the table grows and every series is found again. */
static void test_map_many(void **state)
{
    enum { N = 3000 };
    static char text[N * 40];
    struct prom_map *m;
    size_t len = 0;
    int i;

    (void)state;
    mock_reset(0);
    assert_int_equal(prom_map_create(&mock_host, MOCK_INST, NULL, N, &m), 0);
    for (i = 0; i < N; i++) {
        len += (size_t)snprintf(text + len, sizeof(text) - len,
                                "s{i=\"%d\",j=\"x\"} %d\n", i, i);
    }
    /* The mock keeps no series (limit 0): all are refused, and each is
     * looked up again in the second scrape. */
    scrape(m, text, 1);
    assert_int_equal(stats.dropped, N);
    scrape(m, text, 1);
    assert_int_equal(stats.dropped, N);
    assert_int_equal(dups, 0);
    assert_int_equal(prom_map_series(m), N);
    prom_map_destroy(m);
}

static int setup(void **state)
{
    (void)state;
    parser = malloc(sizeof(*parser));
    return parser == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    free(parser);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_basic),
        cmocka_unit_test(test_parse_histogram_summary),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_long_lines),
        cmocka_unit_test(test_parse_float),
        cmocka_unit_test(test_hist_quantile),
        cmocka_unit_test(test_map_plain),
        cmocka_unit_test(test_map_histogram),
        cmocka_unit_test(test_map_limits),
        cmocka_unit_test(test_map_many),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
