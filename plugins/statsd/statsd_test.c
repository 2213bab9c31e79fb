/*
 * statsd_test.c - the statsd plugin's parser, key builder and aggregation
 * table, with exact expected values, through a mock host that records
 * every series and sample.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <cmocka.h>

#include <vigil/plugin.h>

#include "statsd_agg.h"
#include "statsd_parse.h"

#define NS INT64_C(1000000000)

/* ------------------------------------------------------------------------
 * Parser.
 */

static struct statsd_line L;
static struct statsd_tag T[STATSD_TAGS_MAX];
static uint32_t NT;

/* Split the tags of L into T / NT; fails the test on an error. */
static void split_tags(void)
{
    const char *why = NULL;

    if (statsd_parse_tags(&L, T, &NT, &why) != 0) {
        fail_msg("tags: %s", why);
    }
}

static int parse(const char *text, const char **why)
{
    *why = NULL;
    return statsd_parse_line(text, strlen(text), 0, &L, why);
}

static void expect_bad(const char *text, const char *why_part)
{
    const char *why;
    int rc = parse(text, &why);

    if (rc != VIGIL_EPARSE) {
        fail_msg("'%s': expected a parse error, got %d", text, rc);
    }
    assert_non_null(why);
    if (strstr(why, why_part) == NULL) {
        fail_msg("'%s': reason '%s' lacks '%s'", text, why, why_part);
    }
}

static void test_parse_types(void **st)
{
    const char *why;

    (void)st;
    assert_int_equal(parse("a.b:1|c", &why), 0);
    assert_int_equal(L.kind, STATSD_COUNTER);
    assert_int_equal(L.name_len, 3);
    assert_memory_equal(L.name, "a.b", 3);
    assert_int_equal(L.nvalues, 1);
    assert_true(L.values[0].num == 1.0);
    assert_true(L.rate == 1.0);
    assert_null(L.tags);

    assert_int_equal(parse("g:-4.5|g", &why), 0);
    assert_int_equal(L.kind, STATSD_GAUGE);
    assert_true(L.values[0].num == -4.5);
    assert_int_equal(L.values[0].sign, 1);
    assert_int_equal(parse("g:4.5|g", &why), 0);
    assert_int_equal(L.values[0].sign, 0);

    assert_int_equal(parse("t:12|ms", &why), 0);
    assert_int_equal(L.kind, STATSD_TIMER);
    assert_int_equal(parse("t:12|h", &why), 0);
    assert_int_equal(L.kind, STATSD_TIMER);
    assert_int_equal(parse("t:12|d", &why), 0);
    assert_int_equal(L.kind, STATSD_TIMER);

    assert_int_equal(parse("u:alice|s", &why), 0);
    assert_int_equal(L.kind, STATSD_SET);
    assert_int_equal(L.values[0].len, 5);
    assert_memory_equal(L.values[0].str, "alice", 5);

    /* A set member may be anything but ':' and '|', numbers included. */
    assert_int_equal(parse("u:-1e9x|s", &why), 0);
    assert_int_equal(L.values[0].len, 5);
}

static void test_parse_fields(void **st)
{
    const char *why;

    (void)st;
    assert_int_equal(parse("a:2|c|@0.1", &why), 0);
    assert_true(L.rate == 0.1);
    assert_int_equal(parse("a:2|c|#env:prod,host:x|@0.5", &why), 0);
    assert_true(L.rate == 0.5);
    assert_int_equal(L.tags_len, 15);
    split_tags();
    assert_int_equal(NT, 2);
    assert_int_equal(T[0].klen, 3);
    assert_memory_equal(T[0].key, "env", 3);
    assert_int_equal(T[0].vlen, 4);
    assert_memory_equal(T[0].val, "prod", 4);
    assert_int_equal(parse("a:2|c|#flag,url:http://x:80/", &why), 0);
    split_tags();
    assert_int_equal(NT, 2);
    assert_null(T[0].val);
    assert_int_equal(T[1].vlen, 12); /* the value keeps its ':' */
    /* Packed values share type, rate and tags. */
    assert_int_equal(parse("t:1:2:3.5|ms|@0.5|#a:b", &why), 0);
    assert_int_equal(L.nvalues, 3);
    assert_true(L.values[2].num == 3.5);
    split_tags();
    assert_int_equal(NT, 1);
    /* DogStatsD container id and timestamp: accepted, ignored. */
    assert_int_equal(parse("a:1|c|c:abc123|T1656581400|#x:y", &why), 0);
    split_tags();
    assert_int_equal(NT, 1);
    /* CR before LF, empty fields and tags. */
    assert_int_equal(parse("a:1|c\r", &why), 0);
    assert_int_equal(L.nvalues, 1);
    assert_int_equal(parse("a:1|c||#,x:1,,", &why), 0);
    split_tags();
    assert_int_equal(NT, 1);
    /* Empty. */
    assert_int_equal(parse("", &why), VIGIL_ENOENT);
    assert_int_equal(parse("\r", &why), VIGIL_ENOENT);
}

static void test_parse_bad(void **st)
{
    char many[2048];
    size_t n = 0;

    (void)st;
    expect_bad("abc", "no ':'");
    expect_bad(":1|c", "empty metric name");
    expect_bad("a:1", "no '|'");
    expect_bad("a:1|", "unknown type");
    expect_bad("a:1|x", "unknown type");
    expect_bad("a:1|msx", "unknown type");
    expect_bad("a:1|c:2|c", "unknown type"); /* etsy multi-type form */
    expect_bad("a:|c", "empty value");
    expect_bad("a:1:|c", "empty value");
    expect_bad("a:x|c", "not a finite decimal");
    expect_bad("a:nan|g", "not a finite decimal");
    expect_bad("a:inf|ms", "not a finite decimal");
    expect_bad("a:1e999|ms", "not a finite decimal");
    expect_bad("a:0x10|c", "not a finite decimal");
    expect_bad("a: 1|c", "not a finite decimal");
    expect_bad("a:1|c|@0", "sample rate");
    expect_bad("a:1|c|@1.5", "sample rate");
    expect_bad("a:1|c|@-1", "sample rate");
    expect_bad("a:1|c|@x", "sample rate");
    expect_bad("a:1|c|@", "sample rate");
    expect_bad("a:1|c|@0.5|@0.5", "two sample rates");
    expect_bad("a:1|c|#a|#b", "two tag fields");
    expect_bad("a:1|c|x", "unknown field");
    expect_bad("_e{5,4}:title|text", "events");
    expect_bad("_sc|name|0", "service checks");
    n += (size_t)snprintf(many, sizeof(many), "a:1");
    for (int i = 0; i < STATSD_VALUES_MAX; i++) {
        n += (size_t)snprintf(many + n, sizeof(many) - n, ":1");
    }
    snprintf(many + n, sizeof(many) - n, "|c");
    expect_bad(many, "more than 64 values");
}

static void check_number(const char *text, double want)
{
    double got = -12345.0;

    if (statsd_parse_number(text, strlen(text), &got) != 0) {
        fail_msg("'%s' was refused", text);
    }
    if (memcmp(&got, &want, sizeof(got)) != 0) {
        fail_msg("'%s' gave %.17g, expected %.17g", text, got, want);
    }
}

static void test_parse_number(void **st)
{
    static const char *const refused[] = {
        "",   "+",  "-",   ".",   "e5",  "1e",  "1e+",  "1.2.3", "--1",
        "1 ", " 1", "0x1", "nan", "inf", "1,5", "1e5x", "\t1",   "١",
    };
    char buf[64];
    double d;
    uint64_t x = 88172645463325252ull;

    (void)st;
    check_number("0", 0.0);
    check_number("-0", -0.0);
    check_number("1", 1.0);
    check_number("+2", 2.0);
    check_number("12.5", 12.5);
    check_number(".5", 0.5);
    check_number("5.", 5.0);
    check_number("0.1", 0.1);
    check_number("1e3", 1000.0);
    check_number("1E-3", 0.001);
    check_number("123456789012345678901234567890", 1.2345678901234568e29);
    check_number("9007199254740993", 9007199254740992.0); /* 2^53 + 1 */
    check_number("4.9e-324", 4.9e-324);
    check_number("00000000000000000000000000001.5", 1.5);
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        if (statsd_parse_number(refused[i], strlen(refused[i]), &d) == 0) {
            fail_msg("'%s' was accepted", refused[i]);
        }
    }
    /* Correctly rounded, as strtod: random decimals of every shape. */
    for (int i = 0; i < 200000; i++) {
        uint64_t m;
        int e;
        int kind;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        m = x >> (x & 63);
        e = (int)((x >> 20) % 60) - 30;
        kind = (int)((x >> 40) % 3);
        if (kind == 0) {
            snprintf(buf, sizeof(buf), "%llu", (unsigned long long)m);
        } else if (kind == 1) {
            snprintf(buf, sizeof(buf), "%llue%d", (unsigned long long)m, e);
        } else {
            snprintf(buf, sizeof(buf), "%llu.%llu", (unsigned long long)m,
                     (unsigned long long)(x % 100000));
        }
        check_number(buf, strtod(buf, NULL));
    }
}

static void test_name_scan(void **st)
{
    static const char alphabet[] = "abzAZ09_.:-|x\xc3";
    char line[64];
    const char *why;
    uint64_t x = 12345;

    (void)st;
    /* Every length around the word size, with and without characters to
     * sanitize: the one-pass scan agrees with statsd_hash, and a name that
     * needs no sanitizing is its own key. */
    for (int i = 0; i < 20000; i++) {
        size_t n = (size_t)(i % 40) + 1;
        int simple = 1;
        size_t len;
        size_t nlen;
        char key[STATSD_KEY_MAX + 16];

        for (size_t j = 0; j < n; j++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            line[j] = (i & 1) ? "abcdefgh_.0"[x % 11]
                              : alphabet[x % (sizeof(alphabet) - 1)];
            if (line[j] == ':') {
                line[j] = 'q';
            }
            if (!((line[j] >= 'a' && line[j] <= 'z') ||
                  (line[j] >= 'A' && line[j] <= 'Z') ||
                  (line[j] >= '0' && line[j] <= '9') || line[j] == '_' ||
                  line[j] == '.')) {
                simple = 0;
            }
        }
        if ((line[0] >= '0' && line[0] <= '9') || line[0] == '.') {
            simple = 0;
        }
        if (line[0] == '_' && n >= 3 && line[1] == 'e' && line[2] == '{') {
            continue;
        }
        memcpy(line + n, ":1|c", 5);
        assert_int_equal(statsd_parse_line(line, n + 4, 99, &L, &why), 0);
        assert_int_equal(L.name_len, n);
        assert_true(L.name_hash == statsd_hash(line, n, 99));
        /* The canonical key of a simple name is the name itself. */
        assert_int_equal(
            statsd_key(&L, 100, key, sizeof(key), &len, &nlen, &why), 0);
        if (simple) {
            assert_int_equal(len, n);
            assert_memory_equal(key, line, n);
        } else {
            assert_true(len != n || memcmp(key, line, n) != 0);
        }
    }
}

static const char *key_of(const char *text, size_t name_max, const char **why)
{
    static char buf[STATSD_KEY_MAX + 16];
    size_t len;
    size_t nlen;

    if (parse(text, why) != 0) {
        fail_msg("'%s' does not parse: %s", text, *why);
    }
    if (statsd_key(&L, name_max, buf, sizeof(buf), &len, &nlen, why) != 0) {
        return NULL;
    }
    assert_int_equal(strlen(buf), len);
    return buf;
}

static void test_key(void **st)
{
    const char *why;
    char text[1024];

    (void)st;
    /* Tag errors show when the tags are split, for the key. */
    assert_null(key_of("a:1|c|#:v", 100, &why));
    assert_string_equal(why, "a tag has an empty key");
    assert_null(key_of("a:1|c|#a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p", 100, &why));
    assert_string_equal(why, "more than 15 tags");
    assert_non_null(key_of("a:1|c|#a,b,c,d,e,f,g,h,i,j,k,l,m,n,o", 100, &why));
    assert_string_equal(key_of("a.b_c:1|c", 100, &why), "a.b_c");
    assert_string_equal(key_of("my-app/req ms:1|c", 100, &why),
                        "my_app_req_ms");
    assert_string_equal(key_of("9lives:1|c", 100, &why), "_9lives");
    assert_string_equal(key_of(".x:1|c", 100, &why), "_.x");
    /* Tags: sorted, sanitized, the last repeat wins, a bare tag is "true",
     * an empty value is no tag, instance is renamed. */
    assert_string_equal(key_of("a:1|c|#z:1,b-x:2,m", 100, &why),
                        "a|b_x:2,m:true,z:1");
    assert_string_equal(key_of("a:1|c|#k:1,k:2", 100, &why), "a|k:2");
    assert_string_equal(key_of("a:1|c|#k:2,k:1", 100, &why), "a|k:1");
    assert_string_equal(key_of("a:1|c|#e:", 100, &why), "a");
    assert_string_equal(key_of("a:1|c|#e:,f:1", 100, &why), "a|f:1");
    assert_string_equal(key_of("a:1|c|#instance:web1,1x:y", 100, &why),
                        "a|_1x:y,exported_instance:web1");
    assert_string_equal(key_of("a:1|c|#k:a\tb", 100, &why), "a|k:a_b");
    assert_string_equal(key_of("a:1|c|#u:http://x:8/", 100, &why),
                        "a|u:http://x:8/");
    /* The same series whatever the tag order. */
    assert_string_equal(key_of("a:1|c|#b:2,a:1", 100, &why), "a|a:1,b:2");
    assert_string_equal(key_of("a:1|c|#a:1,b:2", 100, &why), "a|a:1,b:2");
    /* Limits. */
    assert_non_null(key_of("abcde:1|c", 5, &why));
    assert_null(key_of("abcdef:1|c", 5, &why));
    assert_string_equal(why, "the metric name is too long");
    assert_null(key_of("1bcde:1|c", 5, &why)); /* with its '_' */
    memset(text, 0, sizeof(text));
    memcpy(text, "a:1|c|#", 7);
    memset(text + 7, 'k', 64);
    assert_null(key_of(text, 100, &why));
    assert_string_equal(why, "a tag key is longer than 63 bytes");
    text[7 + 63] = '\0';
    assert_non_null(key_of(text, 100, &why));
    memset(text, 0, sizeof(text));
    memcpy(text, "a:1|c|#k:", 9);
    memset(text + 9, 'v', 256);
    assert_null(key_of(text, 100, &why));
    assert_string_equal(why, "a tag value is longer than 255 bytes");
    text[9 + 255] = '\0';
    assert_non_null(key_of(text, 100, &why));
}

/* ------------------------------------------------------------------------
 * The mock host.
 */

#define MOCK_SERIES 2048

static struct mock {
    struct {
        char key[512];
        double last;
        int64_t ts;
        unsigned count; /* samples so far */
    } s[MOCK_SERIES];
    size_t n;
    size_t limit; /* series refused beyond */
    int64_t now;
    unsigned warns;
    char warn[512];
} mock;

static int mock_inst_tag;
#define MOCK_INST ((vigil_instance *)&mock_inst_tag)

static int label_cmp(const void *a, const void *b)
{
    return strcmp(((const struct vigil_label *)a)->key,
                  ((const struct vigil_label *)b)->key);
}

static int mock_series(vigil_instance *inst, const char *name,
                       const struct vigil_label *labels, size_t n,
                       vigil_series_id *out)
{
    struct vigil_label sorted[VIGIL_LABELS_MAX];
    char key[512];
    size_t o;

    assert_ptr_equal(inst, MOCK_INST);
    assert_true(n <= VIGIL_LABELS_MAX);
    assert_true(strlen(name) < VIGIL_NAME_MAX);
    memcpy(sorted, labels, n * sizeof(*labels));
    qsort(sorted, n, sizeof(*sorted), label_cmp);
    o = (size_t)snprintf(key, sizeof(key), "%s", name);
    for (size_t i = 0; i < n; i++) {
        o += (size_t)snprintf(key + o, sizeof(key) - o, "%s%s=\"%s\"",
                              i == 0 ? "{" : ",", sorted[i].key,
                              sorted[i].value);
    }
    if (n > 0) {
        snprintf(key + o, sizeof(key) - o, "}");
    }
    for (size_t i = 0; i < mock.n; i++) {
        if (strcmp(mock.s[i].key, key) == 0) {
            *out = (vigil_series_id)i;
            return 0;
        }
    }
    if (mock.n >= mock.limit) {
        return VIGIL_ELIMIT;
    }
    snprintf(mock.s[mock.n].key, sizeof(mock.s[0].key), "%s", key);
    mock.s[mock.n].count = 0;
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
    mock.s[id].count++;
}

static void mock_log(vigil_instance *inst, int level, const char *fmt, ...)
    VIGIL_PRINTF(3, 4);
static void mock_log(vigil_instance *inst, int level, const char *fmt, ...)
{
    va_list ap;

    (void)inst;
    if (level <= VIGIL_LOG_WARN) {
        mock.warns++;
        va_start(ap, fmt);
        vsnprintf(mock.warn, sizeof(mock.warn), fmt, ap);
        va_end(ap);
    }
}

static int64_t mock_now(vigil_instance *inst)
{
    (void)inst;
    return mock.now;
}

static const struct vigil_host mock_host = {
    .abi_version = VIGIL_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct vigil_host),
    .series = mock_series,
    .publish = mock_publish,
    .log = mock_log,
    .now_ns = mock_now,
};

static int find(const char *key)
{
    for (size_t i = 0; i < mock.n; i++) {
        if (strcmp(mock.s[i].key, key) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* The last value of a series; fails when it was never published. */
static double last(const char *key)
{
    int i = find(key);

    if (i < 0 || mock.s[i].count == 0) {
        fail_msg("series %s was not published", key);
    }
    return mock.s[i].last;
}

static unsigned count(const char *key)
{
    int i = find(key);

    return i < 0 ? 0 : mock.s[i].count;
}

#define assert_last(key, want)                                                 \
    do {                                                                       \
        double g_ = last(key), w_ = (want);                                    \
        if (g_ != w_) {                                                        \
            fail_msg("%s = %.17g, expected %.17g", key, g_, w_);               \
        }                                                                      \
    } while (0)

static struct statsd_agg_config cfg;
static struct statsd_agg *agg;

static void agg_open(uint32_t max_series, uint32_t reservoir,
                     const char *prefix)
{
    static const uint32_t pct[] = {50000, 90000, 95000, 99000, 99900};
    static const char *const sfx[] = {".p50", ".p90", ".p95", ".p99", ".p99_9"};

    memset(&mock, 0, sizeof(mock));
    mock.limit = MOCK_SERIES;
    mock.now = 1000 * NS;
    memset(&cfg, 0, sizeof(cfg));
    cfg.max_series = max_series;
    cfg.reservoir = reservoir;
    cfg.npct = 5;
    for (size_t i = 0; i < cfg.npct; i++) {
        cfg.pct_milli[i] = pct[i];
        snprintf(cfg.pct_suffix[i], sizeof(cfg.pct_suffix[i]), "%s", sfx[i]);
    }
    cfg.prefix = prefix;
    cfg.seed = 42;
    assert_int_equal(statsd_agg_create(&cfg, &mock_host, MOCK_INST, &agg), 0);
}

static int feed(const char *line)
{
    const char *why = NULL;

    return statsd_agg_line(agg, line, strlen(line), &why);
}

static void feed_ok(const char *line)
{
    const char *why = NULL;
    int rc = statsd_agg_line(agg, line, strlen(line), &why);

    if (rc != STATSD_OK) {
        fail_msg("'%s': result %d (%s)", line, rc, why ? why : "");
    }
}

/* A complete flush at mock.now + dt_s, dt_s after the previous one. */
static void flush(double dt_s)
{
    int64_t dt = (int64_t)(dt_s * 1e9);

    mock.now += dt;
    statsd_agg_flush_begin(agg, mock.now, dt);
    while (!statsd_agg_flush_step(agg, 3)) {
    }
}

static int agg_teardown(void **st)
{
    (void)st;
    statsd_agg_destroy(agg);
    agg = NULL;
    return 0;
}

/* ------------------------------------------------------------------------
 * Aggregates.
 */

static void test_counter(void **st)
{
    double want = 0.0;

    (void)st;
    agg_open(100, 64, "");
    feed_ok("hits:1|c");
    feed_ok("hits:2|c");
    feed_ok("hits:3|c|@0.1");
    feed_ok("hits:0.5|c|@0.25");
    feed_ok("hits:1:1|c|@0.5"); /* packed: 2 + 2 */
    flush(2.0);
    /* In the order they were added, as doubles. */
    want += 1.0;
    want += 2.0;
    want += 3.0 / 0.1;
    want += 0.5 / 0.25;
    want += 1.0 / 0.5;
    want += 1.0 / 0.5;
    assert_last("hits.count", want);
    assert_last("hits.rate_per_s", want / 2.0);
    assert_int_equal(mock.s[find("hits.count")].ts, 1002 * NS);
    /* A quiet interval publishes zeros. */
    flush(1.0);
    assert_last("hits.count", 0.0);
    assert_last("hits.rate_per_s", 0.0);
    assert_int_equal(count("hits.count"), 2);
    /* Negative increments are allowed. */
    feed_ok("hits:-5|c");
    flush(0.5);
    assert_last("hits.rate_per_s", -10.0);
    assert_int_equal(statsd_agg_series(agg), 1);
}

static void test_timer(void **st)
{
    char line[64];
    unsigned order[100];

    (void)st;
    agg_open(100, 4096, "");
    /* 1..100 in a scrambled order: percentiles by nearest rank. */
    for (unsigned i = 0; i < 100; i++) {
        order[i] = (i * 37) % 100 + 1;
    }
    for (unsigned i = 0; i < 100; i++) {
        snprintf(line, sizeof(line), "lat:%u|ms", order[i]);
        feed_ok(line);
    }
    flush(1.0);
    assert_last("lat.count", 100.0);
    assert_last("lat.sum", 5050.0);
    assert_last("lat.min", 1.0);
    assert_last("lat.max", 100.0);
    assert_last("lat.mean", 50.5);
    assert_last("lat.p50", 50.0);
    assert_last("lat.p90", 90.0);
    assert_last("lat.p95", 95.0);
    assert_last("lat.p99", 99.0);
    assert_last("lat.p99_9", 100.0);

    /* A quiet interval: only the count, 0. */
    flush(1.0);
    assert_last("lat.count", 0.0);
    assert_int_equal(count("lat.count"), 2);
    assert_int_equal(count("lat.p99"), 1);

    /* One value, a sample rate, packed values, h and d. */
    feed_ok("lat:7.25|h|@0.5");
    flush(1.0);
    assert_last("lat.count", 2.0);
    assert_last("lat.sum", 7.25);
    assert_last("lat.mean", 7.25);
    assert_last("lat.p50", 7.25);
    assert_last("lat.p99_9", 7.25);
    feed_ok("lat:3:1:2|d");
    feed_ok("lat:-1|ms");
    flush(1.0);
    assert_last("lat.count", 4.0);
    assert_last("lat.min", -1.0);
    assert_last("lat.max", 3.0);
    assert_last("lat.mean", 1.25);
    assert_last("lat.p50", 1.0);
    assert_last("lat.p90", 3.0);

    /* 1000 values: p99.9 is the 999th. */
    for (unsigned i = 1000; i >= 1; i--) {
        snprintf(line, sizeof(line), "big:%u|ms", i);
        feed_ok(line);
    }
    flush(1.0);
    assert_last("big.p50", 500.0);
    assert_last("big.p99", 990.0);
    assert_last("big.p99_9", 999.0);
}

static void test_timer_duplicates(void **st)
{
    char line[64];

    (void)st;
    agg_open(100, 4096, "");
    /* Many equal values around a few others (three-way partitioning). */
    for (unsigned i = 0; i < 3000; i++) {
        snprintf(line, sizeof(line), "d:%u|ms", i % 50 == 0 ? 9 : 5);
        feed_ok(line);
    }
    flush(1.0);
    assert_last("d.p50", 5.0);
    assert_last("d.p95", 5.0);
    assert_last("d.p99", 9.0);
    assert_last("d.max", 9.0);
}

static void test_timer_reservoir(void **st)
{
    char line[64];
    double sum = 0.0;

    (void)st;
    agg_open(100, 16, "");
    for (unsigned i = 1; i <= 1000; i++) {
        snprintf(line, sizeof(line), "r:%u|ms", i);
        feed_ok(line);
        sum += i;
    }
    flush(1.0);
    /* Count, sum, min, max and mean stay exact past the reservoir; the
     * percentiles come from a sample of 16 of the values. */
    assert_last("r.count", 1000.0);
    assert_last("r.sum", sum);
    assert_last("r.min", 1.0);
    assert_last("r.max", 1000.0);
    assert_last("r.mean", sum / 1000.0);
    assert_true(last("r.p50") >= 1.0 && last("r.p50") <= 1000.0);
    assert_true(last("r.p50") <= last("r.p90"));
    assert_true(last("r.p90") <= last("r.p99"));
    assert_true(last("r.p50") == floor(last("r.p50")));
    /* The next interval starts afresh. */
    feed_ok("r:5|ms");
    flush(1.0);
    assert_last("r.p50", 5.0);
    assert_last("r.count", 1.0);
}

static void test_gauge(void **st)
{
    (void)st;
    agg_open(100, 64, "");
    /* Published the moment it arrives, at the batch's time. */
    mock.now = 5000 * NS;
    statsd_agg_new_batch(agg);
    feed_ok("q:10|g");
    assert_int_equal(count("q"), 1);
    assert_last("q", 10.0);
    assert_int_equal(mock.s[find("q")].ts, 5000 * NS);
    mock.now += NS; /* same batch: same time */
    feed_ok("q:+5|g");
    assert_last("q", 15.0);
    assert_int_equal(mock.s[find("q")].ts, 5000 * NS);
    statsd_agg_new_batch(agg);
    feed_ok("q:-20|g");
    assert_last("q", -5.0);
    assert_int_equal(mock.s[find("q")].ts, 5001 * NS);
    feed_ok("q:3|g");
    assert_int_equal(count("q"), 4);
    /* The flush publishes the last value, and again when quiet. */
    flush(1.0);
    assert_int_equal(count("q"), 5);
    assert_last("q", 3.0);
    flush(1.0);
    assert_int_equal(count("q"), 6);
    assert_last("q", 3.0);
    /* A delta on a new gauge starts from 0; packed values apply in order. */
    feed_ok("fresh:+2.5|g");
    assert_last("fresh", 2.5);
    feed_ok("fresh:1:+1:-0.5|g");
    assert_last("fresh", 1.5);
    /* Rates do not apply to gauges. */
    feed_ok("fresh:8|g|@0.1");
    assert_last("fresh", 8.0);
}

static void test_set(void **st)
{
    (void)st;
    agg_open(100, 64, "");
    feed_ok("users:alice|s");
    feed_ok("users:bob|s");
    feed_ok("users:alice|s");
    feed_ok("users:carol:bob:dave|s");
    feed_ok("users:42|s");
    flush(1.0);
    assert_last("users.unique", 5.0);
    flush(1.0);
    assert_last("users.unique", 0.0);
    feed_ok("users:alice|s");
    flush(1.0);
    assert_last("users.unique", 1.0);
}

static void test_set_large(void **st)
{
    char line[64];

    (void)st;
    agg_open(100, 64, "");
    for (unsigned i = 0; i < 3 * STATSD_SET_MEMBERS_MAX / 2; i++) {
        snprintf(line, sizeof(line), "big:m%u|s", i % 50000);
        feed_ok(line);
    }
    flush(1.0);
    assert_last("big.unique", 50000.0);
    assert_int_equal(mock.warns, 0);
    for (unsigned i = 0; i < STATSD_SET_MEMBERS_MAX + 10; i++) {
        snprintf(line, sizeof(line), "big:n%u|s", i);
        feed_ok(line);
    }
    flush(1.0);
    assert_last("big.unique", (double)STATSD_SET_MEMBERS_MAX);
    assert_int_equal(mock.warns, 1);
    assert_non_null(strstr(mock.warn, "floors"));
}

static void test_tags_and_prefix(void **st)
{
    (void)st;
    agg_open(100, 64, "app.");
    feed_ok("genesis.order.stage_ms:4|ms|#stage:risk,venue:x");
    feed_ok("genesis.order.stage_ms:6|ms|#venue:x,stage:risk");
    feed_ok("genesis.order.stage_ms:1|ms|#stage:validate,venue:x");
    feed_ok("hits:1|c|#instance:a");
    flush(1.0);
    assert_last("app.genesis.order.stage_ms.count{stage=\"risk\",venue=\"x\"}",
                2.0);
    assert_last("app.genesis.order.stage_ms.mean{stage=\"risk\",venue=\"x\"}",
                5.0);
    assert_last(
        "app.genesis.order.stage_ms.count{stage=\"validate\",venue=\"x\"}",
        1.0);
    assert_last("app.hits.count{exported_instance=\"a\"}", 1.0);
    assert_int_equal(statsd_agg_series(agg), 3);
    /* A plain name takes the fast path, the same name with an empty tag
     * or a character to sanitize the general one: the same key. */
    feed_ok("plain.name_1:1|c");
    feed_ok("plain.name_1:1|c|#empty:");
    feed_ok("plain-name_1:1|c");
    feed_ok("plain.name_1:1|c|#,");
    assert_int_equal(statsd_agg_series(agg), 5);
    /* Tags sent in the canonical order find their key without building
     * it; any other spelling of the same tags finds the same key. */
    feed_ok("t:1|c|#a:1,b:2");
    feed_ok("t:1|c|#a:1,b:2");
    feed_ok("t:1|c|#b:2,a:1");
    feed_ok("t:1|c|#b:2,a:1,");
    feed_ok("t:1|c|#a:1,b:2,a:1");
    feed_ok("t:1|c|#,a:1,,b:2|@1");
    assert_int_equal(statsd_agg_series(agg), 6);
    /* A raw name holding '|' or ',' never passes for a key; both
     * sanitize to t_a. */
    feed_ok("t|a:1|c");
    feed_ok("t|a:1|c|#b:2");
    feed_ok("t,a:1|c|#b:2");
    assert_int_equal(statsd_agg_series(agg), 8);
    flush(1.0);
    assert_last("app.plain.name_1.count", 3.0);
    assert_last("app.plain_name_1.count", 1.0);
    assert_last("app.t.count{a=\"1\",b=\"2\"}", 6.0);
    assert_last("app.t_a.count", 1.0);
    assert_last("app.t_a.count{b=\"2\"}", 2.0);
}

static void test_mismatch_and_bad(void **st)
{
    const char *why = NULL;

    (void)st;
    agg_open(100, 64, "");
    feed_ok("x:1|c");
    assert_int_equal(statsd_agg_line(agg, "x:1|ms", 6, &why), STATSD_BAD);
    assert_string_equal(why, "this name and tags were first sent as a counter");
    /* The same name with other tags is another key. */
    feed_ok("x:1|ms|#k:v");
    assert_int_equal(feed("x:1|q"), STATSD_BAD);
    assert_int_equal(feed(""), STATSD_EMPTY);
    flush(1.0);
    assert_last("x.count", 1.0);
    assert_last("x.count{k=\"v\"}", 1.0);
}

static void test_max_series(void **st)
{
    const char *key;
    size_t len;

    (void)st;
    agg_open(3, 64, "");
    feed_ok("a:1|c");
    feed_ok("b:1|c");
    feed_ok("c:1|c");
    assert_int_equal(feed("d:1|c|#k:v"), STATSD_DROPPED);
    key = statsd_agg_last_key(agg, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(key, "d|k:v", 5);
    feed_ok("a:1|c"); /* existing keys go on */
    assert_int_equal(statsd_agg_series(agg), 3);
    flush(1.0);
    assert_last("a.count", 2.0);
    assert_int_equal(find("d.count{k=\"v\"}"), -1);
}

static void test_refused(void **st)
{
    (void)st;
    agg_open(10, 64, "");
    mock.limit = 1; /* the core takes one series: a counter needs two */
    assert_int_equal(feed("a:1|c"), STATSD_DROPPED);
    assert_int_equal(feed("a:1|c"), STATSD_DROPPED);
    mock.limit = MOCK_SERIES;
    assert_int_equal(feed("a:1|c"), STATSD_DROPPED); /* not retried yet */
    flush(1.0);
    assert_int_equal(count("a.count"), 0);
}

static void test_expire(void **st)
{
    (void)st;
    agg_open(2, 64, "");
    statsd_agg_destroy(agg);
    cfg.expire_ns = 10 * NS;
    assert_int_equal(statsd_agg_create(&cfg, &mock_host, MOCK_INST, &agg), 0);
    mock.limit = 2;
    feed_ok("old:1|c");
    flush(1.0);
    for (int i = 0; i < 8; i++) {
        flush(1.0);
        assert_int_equal(statsd_agg_series(agg), 1);
    }
    /* Ten seconds since the interval that had data: forgotten, and
     * nothing more is published. */
    flush(1.0);
    assert_int_equal(statsd_agg_series(agg), 0);
    assert_int_equal(count("old.count"), 9);
    flush(1.0);
    assert_int_equal(count("old.count"), 9);
    /* It comes back with the same series. */
    feed_ok("old:4|c");
    flush(1.0);
    assert_last("old.count", 4.0);
    assert_int_equal(mock.n, 2);
    mock.limit = MOCK_SERIES;
    /* Removal keeps the index consistent: fill, expire, refill. */
    feed_ok("b:1|g");
    flush(20.0);
    flush(20.0);
    assert_int_equal(statsd_agg_series(agg), 0);
    feed_ok("old:1|c");
    feed_ok("b:2|g");
    assert_int_equal(statsd_agg_series(agg), 2);
    assert_int_equal(feed("c:1|c"), STATSD_DROPPED);
}

static void test_index_churn(void **st)
{
    char line[64];

    (void)st;
    /* Many keys through a small table with expiry: every lookup after the
     * backward-shift removals must still find its key. */
    agg_open(128, 16, "");
    statsd_agg_destroy(agg);
    cfg.expire_ns = 1;
    assert_int_equal(statsd_agg_create(&cfg, &mock_host, MOCK_INST, &agg), 0);
    mock.limit = MOCK_SERIES;
    for (unsigned round = 0; round < 20; round++) {
        for (unsigned i = 0; i < 64; i++) {
            snprintf(line, sizeof(line), "k%u:1|g", (i * 7 + round * 13) % 100);
            if (i % 2 == 0 || round % 3 == 0) {
                feed_ok(line);
                feed_ok(line);
            }
        }
        flush(1.0);
    }
    assert_true(statsd_agg_series(agg) <= 100);
}

static void test_grow_during_flush(void **st)
{
    char line[64];
    char key[64];

    (void)st;
    agg_open(1000, 16, "");
    for (unsigned i = 0; i < 50; i++) {
        snprintf(line, sizeof(line), "a%u:%u|c", i, i + 1);
        feed_ok(line);
    }
    /* A flush begins; while it is in progress 300 new keys make the table
     * grow several times (slots move). Every old key must still be
     * published once, with its value; the new ones not yet. */
    mock.now += NS;
    statsd_agg_flush_begin(agg, mock.now, NS);
    assert_int_equal(statsd_agg_flush_step(agg, 7), 0);
    for (unsigned i = 0; i < 300; i++) {
        snprintf(line, sizeof(line), "b%u:1|c", i);
        feed_ok(line);
        if (i % 50 == 0) {
            statsd_agg_flush_step(agg, 3);
        }
    }
    while (!statsd_agg_flush_step(agg, 5)) {
    }
    for (unsigned i = 0; i < 50; i++) {
        snprintf(key, sizeof(key), "a%u.count", i);
        assert_int_equal(count(key), 1);
        assert_last(key, (double)(i + 1));
    }
    assert_int_equal(count("b0.count"), 0);
    flush(1.0);
    assert_int_equal(count("a0.count"), 2);
    assert_last("a0.count", 0.0);
    assert_last("b299.count", 1.0);
    assert_int_equal(statsd_agg_series(agg), 350);
}

static void test_flush_on_touch(void **st)
{
    (void)st;
    agg_open(100, 64, "");
    feed_ok("c:1|c");
    feed_ok("t:5|ms");
    feed_ok("s:a|s");
    /* The flush begins; before its steps reach the keys, new lines come:
     * they belong to the new interval, the old one is published first. */
    mock.now += NS;
    statsd_agg_flush_begin(agg, mock.now, NS);
    feed_ok("c:10|c");
    feed_ok("t:7|ms");
    feed_ok("s:b|s");
    feed_ok("s:c|s");
    assert_last("c.count", 1.0);
    assert_last("t.max", 5.0);
    assert_last("s.unique", 1.0);
    assert_int_equal(mock.s[find("c.count")].ts, mock.now);
    while (!statsd_agg_flush_step(agg, 1)) {
    }
    assert_int_equal(count("c.count"), 1); /* not twice */
    flush(1.0);
    assert_last("c.count", 10.0);
    assert_last("t.max", 7.0);
    assert_last("s.unique", 2.0);
    /* A flush begun while the previous one is unfinished completes it. */
    feed_ok("c:2|c");
    statsd_agg_flush_begin(agg, mock.now + NS, NS);
    statsd_agg_flush_begin(agg, mock.now + 2 * NS, NS);
    while (!statsd_agg_flush_step(agg, 1)) {
    }
    assert_int_equal(count("c.count"), 4);
    assert_last("c.count", 0.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_types),
        cmocka_unit_test(test_parse_fields),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_parse_number),
        cmocka_unit_test(test_key),
        cmocka_unit_test(test_name_scan),
        cmocka_unit_test_teardown(test_counter, agg_teardown),
        cmocka_unit_test_teardown(test_timer, agg_teardown),
        cmocka_unit_test_teardown(test_timer_duplicates, agg_teardown),
        cmocka_unit_test_teardown(test_timer_reservoir, agg_teardown),
        cmocka_unit_test_teardown(test_gauge, agg_teardown),
        cmocka_unit_test_teardown(test_set, agg_teardown),
        cmocka_unit_test_teardown(test_set_large, agg_teardown),
        cmocka_unit_test_teardown(test_tags_and_prefix, agg_teardown),
        cmocka_unit_test_teardown(test_mismatch_and_bad, agg_teardown),
        cmocka_unit_test_teardown(test_max_series, agg_teardown),
        cmocka_unit_test_teardown(test_refused, agg_teardown),
        cmocka_unit_test_teardown(test_expire, agg_teardown),
        cmocka_unit_test_teardown(test_index_churn, agg_teardown),
        cmocka_unit_test_teardown(test_flush_on_touch, agg_teardown),
        cmocka_unit_test_teardown(test_grow_during_flush, agg_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
