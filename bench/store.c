/*
 * bench_store - samples written into SQLite through the daemon path, and
 * the loop lag the store adds.
 *
 * Throughput: SERIES series on a real bus, a daemon-mode store subscribed
 * to all of them, and a 1 ms timer on the loop that publishes round-robin
 * as much as the store's buffer can take without dropping (what has been
 * published but not yet written stays within one buffer), stamped with the
 * present time as a daemon's samples are (so that each minute is rolled up
 * once, as in production). The store flushes every BENCH_FLUSH_MS ms on
 * the thread pool. Reports samples/s from the first publish to the last
 * commit, the batch sizes, and the loop-side cost per sample
 * (bus_publish() with the store subscribed, against the bare bus).
 *
 * Lag: the same loop at 10,000 samples/s (100 samples every 10 ms over
 * SERIES series), with the store's defaults (1 s flushes), measured as
 * vigil.loop.lag_ms is: a repeating timer compares when it fires with when
 * it was due. Run without the store, then with it.
 *
 * PostgreSQL: with VIGIL_BENCH_PG set to a connection URI, the same two
 * runs go to that server too, under a host of their own ("bench-PID"),
 * whose rows are deleted at the end. A throwaway server for it:
 *
 *     tests/pg/start.sh /tmp/bench-pg       # prints where it listens
 *     VIGIL_BENCH_PG=$(cat /tmp/bench-pg/uri) build/bench_store
 *     tests/pg/stop.sh /tmp/bench-pg
 *
 * (start.sh leaves fsync on unless VIGIL_PG_OPTS="-c fsync=off" says
 * otherwise: the figures are those of a durable server.)
 *
 * Usage: bench_store [series [samples-per-series [lag-seconds [dir]]]]
 *        (default 1000 2000 5, a temporary directory under $TMPDIR or
 *        /tmp; the database is deleted at the end)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <uv.h>

#include "bus.h"
#include "clock.h"
#include "store.h"

#define NS_PER_MS 1000000ll
#define NS_PER_S 1000000000ll
#define BENCH_BUFFER (1u << 18)
#define BENCH_FLUSH_MS 10
#define LAG_INTERVAL_MS 10
#define LAG_RATE 10000 /* samples/s */
#define LAG_TICK_MS 10
#define LAG_KEEP 100000 /* lag measurements kept for the percentiles */

struct bench {
    uv_loop_t loop;
    struct bus *bus;
    struct store *st;
    uint32_t nseries;
    uint64_t total; /* samples to publish */
    uint64_t published;
    int64_t ts;      /* sample time, advanced per round */
    int64_t ts_step; /* by so much */
    vigil_series_id next;
    int64_t t_first, t_last; /* monotonic */
    int64_t publish_ns;      /* time spent in bus_publish() loops */
    uv_timer_t pub, lag;
    int with_store;
    /* Lag. */
    int64_t lag_due;
    double lag_max_ms, lag_sum_ms;
    double *lags;
    uint64_t lag_n;
    int64_t lag_end;
};

/* Publish n samples round-robin; returns the time it took. */
static int64_t publish(struct bench *b, uint64_t n)
{
    int64_t t0 = clock_mono_ns();

    for (uint64_t i = 0; i < n; i++) {
        bus_publish(b->bus, b->next, b->ts, (double)(b->published & 1023));
        b->published++;
        if (++b->next == b->nseries) {
            b->next = 0;
            b->ts += b->ts_step;
        }
    }
    return clock_mono_ns() - t0;
}

static void on_pub(uv_timer_t *t)
{
    struct bench *b = t->data;
    struct store_stats s;
    uint64_t done, room, n;

    store_get_stats(b->st, &s);
    done = s.samples_written + s.samples_dropped + s.samples_lost;
    if (done >= b->total) {
        b->t_last = clock_mono_ns();
        uv_timer_stop(t);
        uv_stop(&b->loop);
        return;
    }
    room = BENCH_BUFFER - (b->published - done);
    n = b->total - b->published < room ? b->total - b->published : room;
    if (n > 0) {
        int64_t now = clock_wall_ns();

        if (b->t_first == 0) {
            b->t_first = clock_mono_ns();
        }
        /* Samples of the present, as a daemon publishes them. */
        if (b->ts < now) {
            b->ts = now;
        }
        b->publish_ns += publish(b, n);
    }
}

static int make_series(struct bench *b)
{
    struct vigil_err err = {0};
    char val[16];

    for (uint32_t i = 0; i < b->nseries; i++) {
        struct vigil_label l[2] = {{"host", "bench"}, {"i", val}};
        vigil_series_id id;

        snprintf(val, sizeof(val), "%u", i);
        if (bus_intern(b->bus, "bench.value_ms", l, 2, &id, &err) != 0) {
            fprintf(stderr, "bench_store: %s\n", err.msg);
            return -1;
        }
    }
    return 0;
}

static int open_all(struct bench *b, const struct store_opts *o)
{
    struct bus_limits lim;
    struct vigil_err err = {0};

    uv_loop_init(&b->loop);
    bus_limits_default(&lim);
    if (bus_create(&lim, &b->bus) != 0 || make_series(b) != 0) {
        return -1;
    }
    if (o == NULL) {
        return 0;
    }
    if (store_open(o, &b->loop, &b->st, &err) != 0 ||
        store_attach_bus(b->st, b->bus, NULL, &err) != 0) {
        fprintf(stderr, "bench_store: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int close_all(struct bench *b)
{
    store_close(b->st);
    b->st = NULL;
    uv_run(&b->loop, UV_RUN_DEFAULT);
    bus_destroy(b->bus);
    return uv_loop_close(&b->loop);
}

static void remove_db(const char *path)
{
    char p[600];

    unlink(path);
    snprintf(p, sizeof(p), "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", path);
    unlink(p);
}

/* Bare bus_publish() cost over the same series, for comparison. */
static double bare_publish_ns(struct bench *b)
{
    struct bench bare = {.nseries = b->nseries, .ts = b->ts, .ts_step = 1000};
    int64_t ns;

    if (open_all(&bare, NULL) != 0) {
        return -1;
    }
    ns = publish(&bare, b->total);
    close_all(&bare);
    return (double)ns / (double)b->total;
}

static int run_throughput(const char *path, const char *host, uint32_t nseries,
                          uint64_t per_series)
{
    struct store_opts o = {
        .path = path,
        .host = host,
        .flush_interval_ms = BENCH_FLUSH_MS,
        .sample_buffer = BENCH_BUFFER,
    };
    struct bench b = {
        .nseries = nseries, .total = nseries * per_series, .ts_step = 1000};
    struct store_stats s;
    double secs, bare;

    if (open_all(&b, &o) != 0) {
        return -1;
    }
    uv_timer_init(&b.loop, &b.pub);
    b.pub.data = &b;
    uv_timer_start(&b.pub, on_pub, 1, 1);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    store_get_stats(b.st, &s);
    uv_close((uv_handle_t *)&b.pub, NULL);
    if (close_all(&b) != 0) {
        fprintf(stderr, "bench_store: handles left on the loop\n");
        return -1;
    }
    bare = bare_publish_ns(&b);
    secs = (double)(b.t_last - b.t_first) / 1e9;
    printf("throughput: %u series x %llu samples = %llu samples, buffer %u, "
           "flush every %d ms\n",
           nseries, (unsigned long long)per_series, (unsigned long long)b.total,
           BENCH_BUFFER, BENCH_FLUSH_MS);
    printf("  written            %llu in %.2f s = %.0f samples/s\n",
           (unsigned long long)s.samples_written, secs,
           (double)s.samples_written / secs);
    printf("  dropped/lost       %llu / %llu, errors %llu\n",
           (unsigned long long)s.samples_dropped,
           (unsigned long long)s.samples_lost, (unsigned long long)s.errors);
    printf("  flushes            %llu, %.0f samples per flush\n",
           (unsigned long long)s.flushes,
           (double)s.samples_written / (double)s.flushes);
    printf("  loop, per sample   %.1f ns bus_publish() with the store "
           "subscribed, %.1f ns bare: store %.1f ns\n",
           (double)b.publish_ns / (double)b.total, bare,
           (double)b.publish_ns / (double)b.total - bare);
    return s.samples_written == b.total ? 0 : -1;
}

/* ---------------------------------------------------------------- lag */

static void on_lag(uv_timer_t *t)
{
    struct bench *b = t->data;
    int64_t now = clock_mono_ns();
    double lag = (double)(now - b->lag_due) / 1e6;

    if (lag < 0) {
        lag = 0; /* libuv rounds timers to whole milliseconds */
    }
    b->lag_sum_ms += lag;
    if (b->lag_n < LAG_KEEP) {
        b->lags[b->lag_n] = lag;
    }
    b->lag_n++;
    if (lag > b->lag_max_ms) {
        b->lag_max_ms = lag;
    }
    b->lag_due = now + LAG_INTERVAL_MS * NS_PER_MS;
    if (now >= b->lag_end) {
        uv_timer_stop(&b->lag);
        uv_timer_stop(&b->pub);
        uv_stop(&b->loop);
    }
}

static void on_lag_pub(uv_timer_t *t)
{
    struct bench *b = t->data;

    b->ts = clock_wall_ns();
    publish(b, LAG_RATE * LAG_TICK_MS / 1000);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* The q-quantile of the kept lags (sorted first). */
static double lag_quantile(const struct bench *b, double q)
{
    uint64_t n = b->lag_n < LAG_KEEP ? b->lag_n : LAG_KEEP;

    return n == 0 ? 0.0 : b->lags[(uint64_t)(q * (double)(n - 1))];
}

static int run_lag(const char *path, const char *host, uint32_t nseries,
                   int seconds, int with_store)
{
    struct store_opts o = {.path = path, .host = host};
    struct bench b = {
        .nseries = nseries, .with_store = with_store, .ts_step = 1000};
    struct store_stats s = {0};

    b.lags = malloc(LAG_KEEP * sizeof(*b.lags));
    if (b.lags == NULL || open_all(&b, with_store ? &o : NULL) != 0) {
        free(b.lags);
        return -1;
    }
    uv_timer_init(&b.loop, &b.pub);
    uv_timer_init(&b.loop, &b.lag);
    b.pub.data = b.lag.data = &b;
    b.lag_end = clock_mono_ns() + seconds * NS_PER_S;
    b.lag_due = clock_mono_ns() + LAG_INTERVAL_MS * NS_PER_MS;
    uv_timer_start(&b.pub, on_lag_pub, LAG_TICK_MS, LAG_TICK_MS);
    uv_timer_start(&b.lag, on_lag, LAG_INTERVAL_MS, LAG_INTERVAL_MS);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    if (b.st != NULL) {
        store_get_stats(b.st, &s);
    }
    uv_close((uv_handle_t *)&b.pub, NULL);
    uv_close((uv_handle_t *)&b.lag, NULL);
    if (close_all(&b) != 0) {
        fprintf(stderr, "bench_store: handles left on the loop\n");
        free(b.lags);
        return -1;
    }
    qsort(b.lags, b.lag_n < LAG_KEEP ? b.lag_n : LAG_KEEP, sizeof(*b.lags),
          cmp_double);
    printf("  %-10s %8.3f %8.3f %8.3f %8.3f %10llu %9llu %9.1f\n",
           with_store ? "store" : "bus only", b.lag_sum_ms / (double)b.lag_n,
           lag_quantile(&b, 0.5), lag_quantile(&b, 0.99), b.lag_max_ms,
           (unsigned long long)b.published,
           (unsigned long long)s.samples_written, s.last_flush_ms);
    free(b.lags);
    return 0;
}

/* Delete what the PostgreSQL runs wrote (their host's rows). */
static void pg_cleanup(const char *uri, const char *host)
{
    static const char *const sql[] = {
        "DELETE FROM samples WHERE series_id IN"
        " (SELECT id FROM series WHERE host = $1)",
        "DELETE FROM rollup_1m WHERE series_id IN"
        " (SELECT id FROM series WHERE host = $1)",
        "DELETE FROM series WHERE host = $1",
        "DELETE FROM meta WHERE key = 'rollup_mark/' || $1::text",
    };
    PGconn *c = PQconnectdb(uri);

    for (size_t i = 0;
         PQstatus(c) == CONNECTION_OK && i < sizeof(sql) / sizeof(sql[0]);
         i++) {
        const char *v[1] = {host};

        PQclear(PQexecParams(c, sql[i], 1, NULL, v, NULL, NULL, 0));
    }
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "bench_store: cleaning up: %s", PQerrorMessage(c));
    }
    PQfinish(c);
}

/* The same runs on PostgreSQL. */
static int run_pg(const char *uri, uint32_t nseries, uint64_t per,
                  unsigned long long secs)
{
    char host[64];
    int rc = 0;

    snprintf(host, sizeof(host), "bench-%ld", (long)getpid());
    printf("\nPostgreSQL (VIGIL_BENCH_PG), host %s:\n", host);
    if (run_throughput(uri, host, nseries, per) != 0) {
        rc = 1;
    }
    pg_cleanup(uri, host);
    printf("\nloop lag at %d samples/s over %u series, %llu s, PostgreSQL, "
           "store defaults (flush every 1 s):\n",
           LAG_RATE, nseries, secs);
    printf("  %-10s %8s %8s %8s %8s %10s %9s %9s\n", "", "mean ms", "p50 ms",
           "p99 ms", "max ms", "published", "written", "flush ms");
    if (run_lag(uri, host, nseries, (int)secs, 1) != 0) {
        rc = 1;
    }
    pg_cleanup(uri, host);
    return rc;
}

static int parse_u(const char *text, unsigned long long min,
                   unsigned long long *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < min ||
        text[0] == '-') {
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    unsigned long long nseries = 1000, per = 2000, secs = 5;
    char dir[512], path[600];
    const char *tmp = getenv("TMPDIR");
    const char *pg = getenv("VIGIL_BENCH_PG");
    int rc = 0;

    if (argc > 5 || (argc > 1 && parse_u(argv[1], 1, &nseries) != 0) ||
        (argc > 2 && parse_u(argv[2], 1, &per) != 0) ||
        (argc > 3 && parse_u(argv[3], 1, &secs) != 0) || nseries > 100000) {
        fprintf(stderr, "usage: bench_store [series [samples-per-series "
                        "[lag-seconds [dir]]]]\n");
        return 2;
    }
    if (argc > 4) {
        snprintf(dir, sizeof(dir), "%s", argv[4]);
    } else {
        snprintf(dir, sizeof(dir), "%s/bench-store-XXXXXX",
                 tmp != NULL ? tmp : "/tmp");
        if (mkdtemp(dir) == NULL) {
            fprintf(stderr, "bench_store: mkdtemp %s: %s\n", dir,
                    strerror(errno));
            return 1;
        }
    }
    snprintf(path, sizeof(path), "%s/bench.db", dir);
    remove_db(path);
    printf("database: %s (WAL, synchronous=NORMAL)\n", path);
    if (run_throughput(path, "bench", (uint32_t)nseries, per) != 0) {
        rc = 1;
    }
    remove_db(path);
    printf("\nloop lag at %d samples/s over %llu series, %llu s, lag timer "
           "every %d ms, store defaults (flush every 1 s):\n",
           LAG_RATE, nseries, secs, LAG_INTERVAL_MS);
    printf("  %-10s %8s %8s %8s %8s %10s %9s %9s\n", "", "mean ms", "p50 ms",
           "p99 ms", "max ms", "published", "written", "flush ms");
    if (run_lag(path, "bench", (uint32_t)nseries, (int)secs, 0) != 0 ||
        run_lag(path, "bench", (uint32_t)nseries, (int)secs, 1) != 0) {
        rc = 1;
    }
    remove_db(path);
    if (argc <= 4) {
        rmdir(dir);
    }
    if (pg != NULL && pg[0] != '\0' &&
        run_pg(pg, (uint32_t)nseries, per, secs) != 0) {
        rc = 1;
    }
    return rc;
}
