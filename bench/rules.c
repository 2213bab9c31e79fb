/*
 * bench_rules - what threshold evaluation adds to each published sample.
 *
 * For 10, 1,000 and 10,000 rule instances: N series, published round-robin
 * one sample per series per (virtual) second, with windows already full.
 * Each row times the same publishing loop with no rules (the baseline, the
 * raw cost of bus_publish) and with rules, and reports
 *
 *     (time with rules - time without) / samples
 *
 * in ns. Variants:
 *   bus subs N bare subscriptions whose callback counts: what any
 *            subscriber costs the bus (reference, not rules);
 *   last     N rules, each over one series (exact selector), stat last,
 *            window 0: the per-sample fast path;
 *   avg60    the same with avg over a 60-sample window (bus_stat cost);
 *   1xN      one rule whose selector matches all N series (one instance
 *            per series, found through the rule's series map).
 * Levels are never crossed, so this is the steady state: statistic, level,
 * no transition. Each run is timed in chunks of ~100,000 samples and
 * summarised by its median chunk; each figure is the best of REPS runs.
 *
 * Usage: bench_rules [samples-per-run >= 10000000]   (default 10000000)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bus.h"
#include "rule.h"

#define NS_PER_S 1000000000ll
#define EPOCH_NS 1700000000000000000ll
#define REPS 3
#define MIN_SAMPLES 10000000ull
#define CHUNK 100000u
#define MAX_CHUNKS 4096

enum variant { V_SUBS, V_LAST, V_AVG60, V_ONE_RULE };

static const char *const variant_names[] = {"bus subs", "last", "avg60",
                                            "1xN last"};

static int64_t mono_ns(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * NS_PER_S + t.tv_nsec;
}

struct bench {
    struct bus *bus;
    uint32_t n;
    int64_t ts; /* next virtual second */
    uint64_t events;
    uint64_t calls; /* V_SUBS callbacks */
    struct bus_sub **subs;
};

/* The reference subscriber: what any subscriber costs the bus. */
static void on_sample(void *arg, vigil_series_id id, int64_t ts, double v)
{
    struct bench *b = arg;

    (void)id;
    (void)ts;
    (void)v;
    b->calls++;
}

static void on_event(void *arg, const struct rule_event *ev)
{
    struct bench *b = arg;

    (void)ev;
    b->events++;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/*
 * Publish `rounds` rounds over every series; returns ns per sample. The
 * run is timed in chunks of about CHUNK samples, shorter than a scheduler
 * time slice, and the median chunk is what counts: on a shared machine a
 * whole run is rarely left alone, but most chunks are.
 */
static double run_publish(struct bench *b, uint64_t rounds)
{
    static double chunk_ns[MAX_CHUNKS];
    uint64_t per = CHUNK / b->n > 0 ? CHUNK / b->n : 1, nchunks = 0;

    for (uint64_t done = 0; done < rounds; nchunks++) {
        uint64_t todo = rounds - done < per ? rounds - done : per;
        int64_t t0 = mono_ns();

        for (uint64_t r = 0; r < todo; r++, b->ts += NS_PER_S) {
            double v = (double)((done + r) & 1023);

            for (vigil_series_id id = 0; id < b->n; id++) {
                bus_publish(b->bus, id, b->ts, v);
            }
        }
        if (nchunks < MAX_CHUNKS) {
            chunk_ns[nchunks] =
                (double)(mono_ns() - t0) / (double)(todo * b->n);
        }
        done += todo;
    }
    if (nchunks > MAX_CHUNKS) {
        nchunks = MAX_CHUNKS;
    }
    qsort(chunk_ns, nchunks, sizeof(chunk_ns[0]), cmp_double);
    return chunk_ns[nchunks / 2];
}

/* Rules for one variant (bare subscriptions for V_SUBS). Returns 0 or a
 * VIGIL_E* code after printing why. */
static int add_rules(struct bench *b, struct rule_set *rs, enum variant v)
{
    struct rule_def d;
    struct vigil_err err = {0};
    int rc;

    for (uint32_t i = 0; i < b->n; i++) {
        char sel[64];

        if (v == V_SUBS) {
            snprintf(sel, sizeof(sel), "bench.v%u", i);
            rc = bus_selector_parse(sel, &d.sel, &err);
            if (rc == 0) {
                rc = bus_subscribe(b->bus, &d.sel, on_sample, NULL, b,
                                   &b->subs[i]);
            }
            if (rc != 0) {
                fprintf(stderr, "bench_rules: subscribe: %s\n",
                        vigil_strerror(rc));
                return rc;
            }
            continue;
        }
        rule_def_init(&d);
        d.kind = RULE_THRESHOLD;
        d.warn_above = 1e12;
        d.crit_above = 2e12;
        d.hold_ns = 30 * NS_PER_S;
        d.nodata_ns = 120 * NS_PER_S;
        if (v == V_AVG60) {
            d.stat.kind = WIN_AVG;
            d.window_ns = 60 * NS_PER_S - 1; /* 60 samples at 1/s */
        }
        snprintf(d.name, sizeof(d.name), "r%u", i);
        if (v == V_ONE_RULE) {
            snprintf(sel, sizeof(sel), "bench.*");
        } else {
            snprintf(sel, sizeof(sel), "bench.v%u", i);
        }
        rc = bus_selector_parse(sel, &d.sel, &err);
        if (rc == 0) {
            rc = rule_add(rs, &d, NULL, &err);
        }
        if (rc != 0) {
            fprintf(stderr, "bench_rules: %s\n", err.msg);
            return rc;
        }
        if (v == V_ONE_RULE) {
            break;
        }
    }
    return 0;
}

struct row {
    double base;  /* ns per publish, no rules */
    double with;  /* ns per publish, with rules */
    double setup; /* s to add the rules */
};

/* Best of REPS runs without rules, then best of REPS with them. */
static int run_row(struct bench *b, enum variant v, uint64_t samples,
                   struct row *row)
{
    struct rule_set *rs = NULL;
    uint64_t rounds = (samples + b->n - 1) / b->n;
    int64_t t0;
    int rc;

    row->base = row->with = 1e300;
    for (int rep = 0; rep < REPS; rep++) {
        double ns = run_publish(b, rounds);

        row->base = ns < row->base ? ns : row->base;
    }
    rc = rule_set_create(b->bus, on_event, b, &rs);
    if (rc != 0) {
        fprintf(stderr, "bench_rules: %s\n", vigil_strerror(rc));
        return rc;
    }
    t0 = mono_ns();
    rc = add_rules(b, rs, v);
    row->setup = (double)(mono_ns() - t0) / NS_PER_S;
    if (rc != 0) {
        goto out;
    }
    for (int rep = 0; rep < REPS; rep++) {
        double ns = run_publish(b, rounds);

        row->with = ns < row->with ? ns : row->with;
    }
    /* Every sample must have been evaluated, or the figure means
     * nothing. */
    if ((v == V_SUBS ? b->calls : rule_set_evals(rs)) != REPS * rounds * b->n) {
        fprintf(
            stderr, "bench_rules: %llu evaluations, expected %llu\n",
            (unsigned long long)(v == V_SUBS ? b->calls : rule_set_evals(rs)),
            (unsigned long long)(REPS * rounds * b->n));
        rc = VIGIL_ESTATE;
        goto out;
    }
    rc = 0;
out:
    if (v == V_SUBS) {
        for (uint32_t i = 0; i < b->n; i++) {
            bus_unsubscribe(b->bus, b->subs[i]);
            b->subs[i] = NULL;
        }
    }
    rule_set_destroy(rs);
    return rc;
}

static int parse_count(const char *text, uint64_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' ||
        v < MIN_SAMPLES) {
        return VIGIL_EINVAL;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    const uint32_t sizes[] = {10, 1000, 10000};
    uint64_t samples = MIN_SAMPLES;
    int rc = 1;

    if (argc > 2 || (argc == 2 && parse_count(argv[1], &samples) != 0)) {
        fprintf(stderr, "usage: bench_rules [samples-per-run >= %llu]\n",
                MIN_SAMPLES);
        return 2;
    }
    printf("threshold evaluation per sample: %llu samples per run (median "
           "of %u-sample chunks),\nbest of %d runs, round-robin at 1 "
           "sample/s per series, windows full\n\n",
           (unsigned long long)samples, CHUNK, REPS);
    printf("%9s %-9s %11s %11s %11s %9s\n", "instances", "variant",
           "publish ns", "+rules ns", "added ns", "setup s");
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        struct bench b = {NULL, sizes[i], EPOCH_NS, 0, 0, NULL};
        struct bus_limits lim;
        struct vigil_err err = {0};

        bus_limits_default(&lim);
        b.subs = calloc(b.n, sizeof(*b.subs));
        if (b.subs == NULL || bus_create(&lim, &b.bus) != 0) {
            fprintf(stderr, "bench_rules: out of memory\n");
            free(b.subs);
            return 1;
        }
        for (uint32_t k = 0; k < b.n; k++) {
            char name[32];
            vigil_series_id id;

            snprintf(name, sizeof(name), "bench.v%u", k);
            if (bus_intern(b.bus, name, NULL, 0, &id, &err) != 0) {
                fprintf(stderr, "bench_rules: %s\n", err.msg);
                goto out;
            }
        }
        run_publish(&b, lim.window_default); /* fill every ring */
        for (int v = V_SUBS; v <= V_ONE_RULE; v++) {
            struct row row;

            if (run_row(&b, (enum variant)v, samples, &row) != 0) {
                goto out;
            }
            printf("%9u %-9s %11.2f %11.2f %11.2f %9.2f\n", b.n,
                   variant_names[v], row.base, row.with, row.with - row.base,
                   row.setup);
            fflush(stdout);
        }
        if (b.events != 0) {
            fprintf(stderr, "bench_rules: %llu unexpected events\n",
                    (unsigned long long)b.events);
            goto out;
        }
        bus_destroy(b.bus);
        free(b.subs);
        continue;
    out:
        bus_destroy(b.bus);
        free(b.subs);
        return rc;
    }
    return 0;
}
