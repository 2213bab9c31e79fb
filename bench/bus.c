/*
 * bench_bus - cost of bus_publish() and bus_stat().
 *
 * For 1, 1,000 and 100,000 series, with no subscriber and with one
 * subscriber (a pattern subscription matching every series, whose callback
 * sums the values so that it cannot be optimised away), publish samples
 * round-robin across the series and report ns per publish and samples per
 * second; then time bus_stat() for the average and the p95 over the newest
 * 60 samples of each series, again round-robin.
 *
 * Usage: bench_bus [publishes-per-row]   (default 20000000)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bus.h"

#define NS_PER_S 1000000000ll
#define EPOCH_NS 1700000000000000000ll
#define STAT_CALLS 2000000u
#define STAT_SAMPLES 60

struct sink {
    double sum;
    uint64_t n;
};

static void sink_sample(void *arg, vigil_series_id id, int64_t ts, double v)
{
    struct sink *s = arg;

    (void)id;
    (void)ts;
    s->sum += v;
    s->n++;
}

static int64_t mono_ns(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * NS_PER_S + t.tv_nsec;
}

struct row {
    uint32_t series;
    int subs;
    double ns_publish;
    double ns_avg;
    double ns_p95;
    double seen; /* samples in the statistic's span */
};

/* Time bus_stat() round-robin over all series; returns ns per call. */
static double time_stat(struct bus *bus, uint32_t nseries, struct win_stat st,
                        int64_t now, double *sink)
{
    const int64_t span = STAT_SAMPLES * NS_PER_S - 1;
    vigil_series_id id = 0;
    int64_t t0 = mono_ns();
    double acc = 0.0, out;

    for (uint32_t i = 0; i < STAT_CALLS; i++) {
        if (bus_stat(bus, id, st, now, span, &out) == 0) {
            acc += out;
        }
        if (++id == nseries) {
            id = 0;
        }
    }
    *sink += acc;
    return (double)(mono_ns() - t0) / STAT_CALLS;
}

/* One row of the table. Returns 0, or a VIGIL_E* code after printing
 * why. */
static int run_row(struct row *row, uint64_t publishes, double *sink)
{
    struct bus_limits lim;
    struct bus *bus = NULL;
    struct bus_selector sel;
    struct bus_sub *sub = NULL;
    struct sink acc = {0, 0};
    struct vigil_err err = {0};
    struct win_stat avg = {WIN_AVG, 0}, p95 = {WIN_QUANTILE, 0.95};
    struct win_stat count = {WIN_COUNT, 0};
    vigil_series_id id;
    uint64_t rounds;
    int64_t ts = EPOCH_NS, t0, t1;
    char val[16];
    int rc;

    bus_limits_default(&lim);
    rc = bus_create(&lim, &bus);
    if (rc != 0) {
        fprintf(stderr, "bench_bus: bus_create: %s\n", vigil_strerror(rc));
        goto out;
    }
    for (uint32_t i = 0; i < row->series; i++) {
        struct vigil_label l = {"i", val};

        snprintf(val, sizeof(val), "%u", i);
        rc = bus_intern(bus, "bench.value", &l, 1, &id, &err);
        if (rc != 0) {
            fprintf(stderr, "bench_bus: %s\n", err.msg);
            goto out;
        }
    }
    if (row->subs) {
        rc = bus_selector_parse("bench.*", &sel, &err);
        if (rc == 0) {
            rc = bus_subscribe(bus, &sel, sink_sample, NULL, &acc, &sub);
        }
        if (rc != 0) {
            fprintf(stderr, "bench_bus: subscribe: %s %s\n", vigil_strerror(rc),
                    err.msg);
            goto out;
        }
    }
    /* Fill every window first so that the timed part runs with full rings
     * (the steady state), one second apart per series. */
    for (uint32_t r = 0; r < lim.window_default; r++, ts += NS_PER_S) {
        for (id = 0; id < row->series; id++) {
            bus_publish(bus, id, ts, (double)r);
        }
    }

    acc.sum = 0.0;
    acc.n = 0;
    rounds = publishes / row->series;
    t0 = mono_ns();
    for (uint64_t r = 0; r < rounds; r++, ts += NS_PER_S) {
        for (id = 0; id < row->series; id++) {
            bus_publish(bus, id, ts, (double)(r & 1023));
        }
    }
    t1 = mono_ns();
    row->ns_publish = (double)(t1 - t0) / (double)(rounds * row->series);
    if (row->subs && acc.n != rounds * row->series) {
        fprintf(stderr,
                "bench_bus: subscriber saw %llu samples, expected %llu\n",
                (unsigned long long)acc.n,
                (unsigned long long)(rounds * row->series));
        rc = VIGIL_ESTATE;
        goto out;
    }
    *sink += acc.sum;

    ts -= NS_PER_S; /* the newest sample */
    bus_stat(bus, 0, count, ts, STAT_SAMPLES * NS_PER_S - 1, &row->seen);
    row->ns_avg = time_stat(bus, row->series, avg, ts, sink);
    row->ns_p95 = time_stat(bus, row->series, p95, ts, sink);
    rc = 0;
out:
    bus_destroy(bus);
    return rc;
}

/* Parse the optional count without atoi: digits only, at least 1000. */
static int parse_count(const char *text, uint64_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < 1000 ||
        text[0] == '-') {
        return VIGIL_EINVAL;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    const uint32_t sizes[] = {1, 1000, 100000};
    uint64_t publishes = 20000000;
    double sink = 0.0;

    if (argc > 2 || (argc == 2 && parse_count(argv[1], &publishes) != 0)) {
        fprintf(stderr, "usage: bench_bus [publishes-per-row >= 1000]\n");
        return 2;
    }
    printf(
        "bus_publish: %llu publishes per row, round-robin, window 120 (full)\n",
        (unsigned long long)publishes);
    printf("bus_stat: %u calls round-robin, span %d s at 1 sample/s\n\n",
           STAT_CALLS, STAT_SAMPLES);
    printf("%8s %5s %12s %12s %12s %12s\n", "series", "subs", "ns/publish",
           "Msamples/s", "ns/stat avg", "ns/stat p95");
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        for (int subs = 0; subs <= 1; subs++) {
            struct row row = {.series = sizes[i], .subs = subs};

            if (run_row(&row, publishes, &sink) != 0) {
                return 1;
            }
            printf("%8u %5d %12.2f %12.1f %12.1f %12.1f\n", row.series,
                   row.subs, row.ns_publish, 1e3 / row.ns_publish, row.ns_avg,
                   row.ns_p95);
            fflush(stdout);
            if (row.seen != STAT_SAMPLES) {
                fprintf(stderr, "bench_bus: span held %.0f samples, not %d\n",
                        row.seen, STAT_SAMPLES);
                return 1;
            }
        }
    }
    /* Print the sink so that no result is dead code. */
    printf("\n(checksum %g)\n", sink);
    return 0;
}
