/* libFuzzer target: the statsd plugin's line parser, number parser, key
 * builder and aggregation table (plugins/statsd/statsd_parse.c,
 * statsd_agg.c), with a real bus behind a small host table.
 *
 * The input is a datagram: lines separated by '\n'. A line starting with
 * byte 0x01 begins a flush (its second byte says how many keys each step
 * flushes), 0x02 starts a new batch. Besides not crashing, leaking or
 * invoking undefined behaviour, it checks that:
 *   - every number the parser accepts equals strtod's reading of it;
 *   - every key of a parsed line is well formed;
 *   - the bus accepts every series the table interns (the plugin never
 *     produces a name or label that the core would refuse as invalid);
 *   - nothing non-finite is published. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "statsd_agg.h"
#include "statsd_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct bus *fz_bus;
static int64_t fz_now;
static struct statsd_line fz_line;
static char fz_key[STATSD_KEY_MAX + 16];

static int fz_series(vigil_instance *inst, const char *name,
                     const struct vigil_label *labels, size_t n,
                     vigil_series_id *out)
{
    struct vigil_err err = {0};
    int rc;

    (void)inst;
    rc = bus_intern(fz_bus, name, labels, n, out, &err);
    if (rc == VIGIL_EINVAL) {
        fprintf(stderr, "the bus refused a series: %s\n", err.msg);
        abort();
    }
    return rc;
}

static void fz_publish(vigil_instance *inst, vigil_series_id id, int64_t ts,
                       double v)
{
    (void)inst;
    if (!isfinite(v)) {
        fprintf(stderr, "non-finite sample %g\n", v);
        abort();
    }
    bus_publish(fz_bus, id, ts, v);
}

static void fz_log(vigil_instance *inst, int level, const char *fmt, ...)
{
    (void)inst;
    (void)level;
    (void)fmt;
}

static int64_t fz_now_ns(vigil_instance *inst)
{
    (void)inst;
    return fz_now;
}

static const struct vigil_host fz_host = {
    .abi_version = VIGIL_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct vigil_host),
    .series = fz_series,
    .publish = fz_publish,
    .log = fz_log,
    .now_ns = fz_now_ns,
};

static uint64_t fz_problems;

static void fz_problem(void *arg, int result, const char *line, size_t len,
                       const char *why)
{
    (void)arg;
    (void)line;
    (void)len;
    if ((result != STATSD_BAD && result != STATSD_DROPPED) ||
        (result == STATSD_BAD && why == NULL)) {
        abort();
    }
    fz_problems++;
}

static int fz_name_ok(const char *p, size_t n)
{
    if (n == 0 || !((p[0] >= 'A' && p[0] <= 'Z') ||
                    (p[0] >= 'a' && p[0] <= 'z') || p[0] == '_')) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char c = p[i];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '.')) {
            return 0;
        }
    }
    return 1;
}

/* The parser and key builder alone, with a differential check of the
 * number parser against strtod. */
static void fz_parse(const char *p, size_t n)
{
    const char *why = NULL;
    size_t len;
    size_t nlen;
    double d;

    if (statsd_parse_number(p, n, &d) == 0) {
        char buf[STATSD_NUMBER_MAX + 1];
        double ref;

        if (n > STATSD_NUMBER_MAX) {
            /* Accepted by the fast path only: check a prefix-free copy. */
            char *big = malloc(n + 1);

            if (big == NULL) {
                return;
            }
            memcpy(big, p, n);
            big[n] = '\0';
            ref = strtod(big, NULL);
            free(big);
        } else {
            memcpy(buf, p, n);
            buf[n] = '\0';
            ref = strtod(buf, NULL);
        }
        if (memcmp(&ref, &d, sizeof(d)) != 0) {
            fprintf(stderr, "number %.*s: %.17g, strtod %.17g\n", (int)n, p, d,
                    ref);
            abort();
        }
    }
    if (statsd_parse_line(p, n, 7, &fz_line, &why) != 0) {
        if (why == NULL && n > 0 && !(n == 1 && p[0] == '\r')) {
            abort(); /* a parse error always says why */
        }
        return;
    }
    if (statsd_key(&fz_line, 100, fz_key, sizeof(fz_key), &len, &nlen, &why) !=
        0) {
        return;
    }
    if (!fz_name_ok(fz_key, nlen) || nlen > 100 || strlen(fz_key) != len) {
        abort();
    }
    if (fz_line.name_hash != statsd_hash(fz_line.name, fz_line.name_len, 7)) {
        abort(); /* the one-pass scan must agree with statsd_hash */
    }
    /* A key is a fixed point: the line "name:1|c|#tags" written from it
     * gives it back. The table relies on this to find lines sent in the
     * canonical form without building their key. */
    {
        static char line[STATSD_KEY_MAX + 16];
        static char again[STATSD_KEY_MAX + 16];
        size_t n2 = 0;
        size_t len2;
        size_t nlen2;

        memcpy(line, fz_key, nlen);
        n2 = nlen;
        memcpy(line + n2, ":1|c", 4);
        n2 += 4;
        if (len > nlen) {
            memcpy(line + n2, "|#", 2);
            n2 += 2;
            memcpy(line + n2, fz_key + nlen + 1, len - nlen - 1);
            n2 += len - nlen - 1;
        }
        if (statsd_parse_line(line, n2, 7, &fz_line, &why) != 0 ||
            statsd_key(&fz_line, 100, again, sizeof(again), &len2, &nlen2,
                       &why) != 0 ||
            len2 != len || nlen2 != nlen || memcmp(again, fz_key, len) != 0) {
            fprintf(stderr, "key %s is not a fixed point\n", fz_key);
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct statsd_agg_config base = {
        .max_series = 16,
        .reservoir = 8,
        .npct = 3,
        .pct_milli = {50000, 99000, 99900},
        .pct_suffix = {".p50", ".p99", ".p99_9"},
        .prefix = "app.",
        .expire_ns = 3,
        .seed = 7,
    };
    const char *p = (const char *)data;
    const char *end = p + size;
    struct statsd_agg *agg = NULL;
    struct bus_limits lim;

    bus_limits_default(&lim);
    lim.max_series = 64; /* so that the core's refusals are exercised */
    lim.window_default = 4;
    if (bus_create(&lim, &fz_bus) != 0) {
        return 0;
    }
    fz_now = 1;
    if (statsd_agg_create(&base, &fz_host, NULL, &agg) != 0) {
        bus_destroy(fz_bus);
        return 0;
    }
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl != NULL ? nl : end) - p);
        const char *why = NULL;

        if (n >= 1 && p[0] == 1) {
            uint32_t step = n >= 2 ? (unsigned char)p[1] % 5 + 1 : 1;

            fz_now += 2;
            statsd_agg_flush_begin(agg, fz_now, 2);
            statsd_agg_flush_step(agg, step);
        } else if (n >= 1 && p[0] == 2) {
            fz_now++;
            statsd_agg_new_batch(agg);
        } else {
            fz_parse(p, n);
            int r = statsd_agg_line(agg, p, n, &why);
            if (r == STATSD_BAD && why == NULL) {
                abort();
            }
        }
        p += n + 1;
    }
    fz_now += 2;
    statsd_agg_flush_begin(agg, fz_now, 2);
    while (!statsd_agg_flush_step(agg, 4)) {
    }
    /* The whole input as one datagram, through the per-datagram loop. */
    fz_problems = 0;
    if (statsd_agg_lines(agg, (const char *)data, size, fz_problem, NULL) <
        fz_problems) {
        abort();
    }
    statsd_agg_destroy(agg);
    bus_destroy(fz_bus);
    return 0;
}
