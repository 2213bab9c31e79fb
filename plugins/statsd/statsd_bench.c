/*
 * statsd_bench.c - microbenchmark of the statsd plugin's per-line path,
 * run by bench/ingest.sh: the parser alone, parser + key, and the whole
 * per-line aggregation (statsd_agg_lines, 50 lines at a time as in a
 * datagram) with a host that publishes nowhere, over ~1,000 distinct
 * names of every type. Prints one
 * `name value` pair per line.
 *
 * It also counts heap allocations (malloc, calloc and realloc are wrapped
 * at link time) during the measured passes, after a warm-up pass: the
 * plugin's promise is zero per line once its keys exist.
 *
 * Usage: statsd_bench_parse [LINES_PER_PASS_MILLIONS]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <vigil/plugin.h>

#include "statsd_agg.h"
#include "statsd_parse.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);

static uint64_t bench_allocs;

void *__wrap_malloc(size_t n)
{
    bench_allocs++;
    return __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
    bench_allocs++;
    return __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
    bench_allocs++;
    return __real_realloc(p, n);
}

#define BENCH_NAMES 1000
#define BENCH_LINES 100000   /* distinct lines in the corpus */
#define BENCH_DGRAM_LINES 50 /* lines per datagram: ~1400 bytes */

static uint64_t bench_published;

static int bench_series(vigil_instance *inst, const char *name,
                        const struct vigil_label *labels, size_t n,
                        vigil_series_id *out)
{
    static vigil_series_id next;

    (void)inst;
    (void)name;
    (void)labels;
    (void)n;
    *out = next++;
    return 0;
}

static void bench_publish(vigil_instance *inst, vigil_series_id id,
                          int64_t ts_ns, double value)
{
    (void)inst;
    (void)id;
    (void)ts_ns;
    (void)value;
    bench_published++;
}

static void bench_log(vigil_instance *inst, int level, const char *fmt, ...)
{
    (void)inst;
    (void)level;
    (void)fmt;
}

static int64_t bench_now(vigil_instance *inst)
{
    struct timespec ts;

    (void)inst;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static const struct vigil_host bench_host = {
    .abi_version = VIGIL_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct vigil_host),
    .series = bench_series,
    .publish = bench_publish,
    .log = bench_log,
    .now_ns = bench_now,
};

static uint64_t bench_mono(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Line i of the corpus: the same mix as bench/ingest.c sends. */
static int bench_line(unsigned i, uint64_t *rng, char *out, size_t size)
{
    unsigned name = i % BENCH_NAMES;
    unsigned v;

    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    v = (unsigned)(*rng % 1000);
    if (name < 500) {
        return snprintf(out, size, "app.svc%u.requests:%u|c%s", name, v % 5,
                        name % 10 == 0 ? "|@0.5" : "");
    }
    if (name < 800) {
        return snprintf(out, size, "app.svc%u.latency_ms:%u.%u|ms%s", name, v,
                        v % 10,
                        name % 4 == 0 ? "|#env:prod,route:/api/orders" : "");
    }
    if (name < 950) {
        return snprintf(out, size, "app.queue%u.depth:%u|g", name, v);
    }
    return snprintf(out, size, "app.users%u:u%u|s", name, v);
}

int main(int argc, char **argv)
{
    static struct statsd_line line;
    static char key[STATSD_KEY_MAX + 16];
    struct statsd_agg_config cfg = {
        .max_series = 10000,
        .reservoir = 2048,
        .npct = 4,
        .pct_milli = {50000, 90000, 95000, 99000},
        .pct_suffix = {".p50", ".p90", ".p95", ".p99"},
        .prefix = "",
        .expire_ns = 0,
        .seed = 1,
    };
    double millions = argc > 1 ? atof(argv[1]) : 20.0;
    uint64_t passes;
    uint64_t rng = 88172645463325252ull;
    struct statsd_agg *agg;
    char *text;
    size_t *off;
    size_t used = 0;
    uint64_t t0;
    uint64_t t;
    uint64_t allocs;
    uint64_t ok = 0;
    size_t bytes = 0;
    const char *why;

    text = malloc((size_t)BENCH_LINES * 96);
    off = malloc(sizeof(*off) * (BENCH_LINES + 1));
    if (text == NULL || off == NULL) {
        return 1;
    }
    /* Lines separated by '\n'; line i is [off[i], off[i + 1] - 1). */
    for (unsigned i = 0; i < BENCH_LINES; i++) {
        off[i] = used;
        used += (size_t)bench_line(i, &rng, text + used, 96);
        text[used++] = '\n';
    }
    off[BENCH_LINES] = used;
    passes = (uint64_t)(millions * 1e6 / BENCH_LINES);
    passes = passes > 0 ? passes : 1;

    /* Parser alone. */
    t0 = bench_mono();
    for (uint64_t p = 0; p < passes; p++) {
        for (unsigned i = 0; i < BENCH_LINES; i++) {
            ok += statsd_parse_line(text + off[i], off[i + 1] - off[i] - 1, 1,
                                    &line, &why) == 0;
        }
    }
    t = bench_mono() - t0;
    printf("parse_ns_per_line %.1f\n",
           (double)t / (double)(passes * BENCH_LINES));

    /* Parser and canonical key. */
    t0 = bench_mono();
    for (uint64_t p = 0; p < passes; p++) {
        for (unsigned i = 0; i < BENCH_LINES; i++) {
            size_t len;
            size_t nlen;

            statsd_parse_line(text + off[i], off[i + 1] - off[i] - 1, 1, &line,
                              &why);
            statsd_key(&line, 100, key, sizeof(key), &len, &nlen, &why);
            bytes += len;
        }
    }
    t = bench_mono() - t0;
    printf("parse_key_ns_per_line %.1f\n",
           (double)t / (double)(passes * BENCH_LINES));

    /* The whole per-line path, a "datagram" of BENCH_DGRAM_LINES lines
     * at a time as the plugin hands them over, with a flush every 1M
     * lines (one second at 1M lines/s), after a warm-up interval that
     * creates the keys and grows the reservoirs and sets to their size. */
    if (statsd_agg_create(&cfg, &bench_host, NULL, &agg) != 0) {
        return 1;
    }
    for (unsigned p = 0; p < 10; p++) {
        for (unsigned i = 0; i < BENCH_LINES; i += BENCH_DGRAM_LINES) {
            statsd_agg_lines(agg, text + off[i],
                             off[i + BENCH_DGRAM_LINES] - off[i], NULL, NULL);
        }
    }
    statsd_agg_flush_begin(agg, bench_now(NULL), 1000000000);
    while (!statsd_agg_flush_step(agg, UINT32_MAX)) {
    }
    allocs = bench_allocs;
    t0 = bench_mono();
    for (uint64_t p = 0; p < passes; p++) {
        for (unsigned i = 0; i < BENCH_LINES; i += BENCH_DGRAM_LINES) {
            ok += statsd_agg_lines(agg, text + off[i],
                                   off[i + BENCH_DGRAM_LINES] - off[i], NULL,
                                   NULL);
        }
        if ((p + 1) % 10 == 0) {
            statsd_agg_flush_begin(agg, bench_now(NULL), 1000000000);
            while (!statsd_agg_flush_step(agg, UINT32_MAX)) {
            }
        }
    }
    t = bench_mono() - t0;
    printf("agg_ns_per_line %.1f\n",
           (double)t / (double)(passes * BENCH_LINES));
    printf("allocations_after_warmup %llu\n",
           (unsigned long long)(bench_allocs - allocs));
    printf("keys %u\n", statsd_agg_series(agg));
    printf("lines_measured %llu\n", (unsigned long long)(passes * BENCH_LINES));
    printf("mean_line_bytes %.1f\n", (double)used / BENCH_LINES - 1);
    statsd_agg_destroy(agg);
    free(text);
    free(off);
    return ok == 0 && bytes == 0;
}
