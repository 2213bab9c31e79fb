/* Unit tests for core/promtext.c and core/dbuf.c: Prometheus names and
 * unit conversions, escaping, values, and a scrape of a small bus produced
 * in small pieces (families grouped, collisions written once), and the
 * bounded buffer. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "dbuf.h"
#include "promtext.h"

static void name_is(const char *in, const char *want, double factor,
                    int counter)
{
    char buf[256];
    double f = 0;
    int c = -1;

    assert_int_equal(prom_name(in, buf, sizeof(buf), &f, &c), 0);
    assert_string_equal(buf, want);
    assert_true(fabs(f - factor) <= 1e-12 * fabs(factor));
    assert_int_equal(c, counter);
}

static void test_names(void **state)
{
    (void)state;
    name_is("sys.cpu.busy_pct", "sys_cpu_busy_pct", 1, 0);
    name_is("sys.disk.await_ms", "sys_disk_await_seconds", 1e-3, 0);
    name_is("sys.disk.reads_per_s", "sys_disk_reads_per_second", 1, 0);
    name_is("sys.pressure.io_some_stall_ms_per_s",
            "sys_pressure_io_some_stall_seconds_per_second", 1e-3, 0);
    name_is("vigil.bus.samples_total", "vigil_bus_samples_total", 1, 1);
    name_is("app.gc.pause_ms_total", "app_gc_pause_seconds_total", 1e-3, 1);
    name_is("app.fooBar.latencyMs", "app_foo_bar_latency_seconds", 1e-3, 0);
    name_is("app.cache.size_kb", "app_cache_size_bytes", 1e3, 0);
    name_is("app.x.nanoseconds", "app_x_seconds", 1e-9, 0);
    name_is("app.x.per_ms", "app_x_per_second", 1e3, 0);
    name_is("proc.threads.count", "proc_threads", 1, 0);
    name_is("app.hist.sum", "app_hist_sum_value", 1, 0);
    name_is("app.x_bucket", "app_x_bucket_value", 1, 0);
    name_is("app.minimum.min", "app_minimum_min", 1, 0);
    name_is("9lives", "_9lives", 1, 0);
    name_is("b.lat_ms", "b_lat_seconds", 1e-3, 0); /* b: a name, no unit */
    name_is("app.m.wait_ms", "app_m_wait_seconds", 1e-3, 0);
}

static void test_label_names(void **state)
{
    char buf[64];

    (void)state;
    assert_int_equal(prom_label_name("queryId", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "query_id");
    assert_int_equal(prom_label_name("1a", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "_1a");
    assert_int_not_equal(prom_label_name("", buf, sizeof(buf)), 0);
}

static void test_text(void **state)
{
    struct dbuf b;

    (void)state;
    dbuf_init(&b, 1024);
    assert_int_equal(prom_add_label_value(&b, "a\"b\\c\nd"), 0);
    assert_string_equal(b.p, "a\\\"b\\\\c\\nd");
    dbuf_reset(&b);
    assert_int_equal(prom_add_help(&b, "x\"y\\"), 0);
    assert_string_equal(b.p, "x\"y\\\\");
    dbuf_reset(&b);
    prom_add_value(&b, NAN);
    dbuf_addstr(&b, " ");
    prom_add_value(&b, INFINITY);
    dbuf_addstr(&b, " ");
    prom_add_value(&b, -INFINITY);
    dbuf_addstr(&b, " ");
    prom_add_value(&b, 0.1);
    dbuf_addstr(&b, " ");
    prom_add_value(&b, 1.0 / 3);
    assert_string_equal(b.p, "NaN +Inf -Inf 0.1 0.3333333333333333");
    dbuf_fini(&b);
}

static void test_dbuf_bounds(void **state)
{
    struct dbuf b;

    (void)state;
    dbuf_init(&b, 8);
    assert_int_equal(dbuf_addstr(&b, "12345"), 0);
    assert_int_equal(dbuf_addstr(&b, "6789"), VIGIL_ELIMIT);
    assert_string_equal(b.p, "12345"); /* unchanged by the failure */
    assert_int_equal(dbuf_printf(&b, "%d", 678), 0);
    assert_int_equal(b.len, 8);
    dbuf_consume(&b, 3);
    assert_string_equal(b.p, "45678");
    char *p = dbuf_take(&b);
    assert_string_equal(p, "45678");
    free(p);
    assert_null(b.p);
    dbuf_fini(&b);
}

/* A scrape of a bus whose series of one name were created apart, produced
 * 64 bytes at a time, equals the same scrape in one piece, groups each
 * family and writes a family two names map to once. */
static void test_scrape(void **state)
{
    struct bus_limits lim;
    struct bus *bus;
    struct prom_index *idx = NULL;
    vigil_series_id id;
    struct dbuf small, whole;
    struct vigil_label l1 = {"cpu", "1"}, l0 = {"cpu", "0"};
    struct prom_scrape *s;
    int rc;

    (void)state;
    bus_limits_default(&lim);
    assert_int_equal(bus_create(&lim, &bus), 0);
    bus_intern(bus, "b.lat_ms", &l1, 1, &id, NULL);
    bus_publish(bus, id, 1, 5);
    bus_intern(bus, "a.x_total", NULL, 0, &id, NULL);
    bus_publish(bus, id, 1, 7);
    bus_intern(bus, "b.lat_ms", &l0, 1, &id, NULL);
    bus_publish(bus, id, 1, 2500);
    bus_intern(bus, "b.lat_seconds", NULL, 0, &id, NULL); /* collides */
    bus_publish(bus, id, 1, 9);
    bus_intern(bus, "c.empty", NULL, 0, &id, NULL); /* no sample */
    assert_int_equal(prom_index_update(&idx, bus), 0);

    dbuf_init(&whole, 1 << 20);
    assert_int_equal(prom_scrape_create(bus, idx, NULL, &s), 0);
    assert_int_equal(prom_scrape_fill(s, &whole, 1 << 19), 1);
    assert_int_equal(prom_scrape_skipped(s), 1);
    prom_scrape_destroy(s);

    dbuf_init(&small, 1 << 20);
    assert_int_equal(prom_scrape_create(bus, idx, NULL, &s), 0);
    for (int i = 0; i < 1000 && (rc = prom_scrape_fill(s, &small, 64)) == 0;
         i++) {
    }
    assert_int_equal(rc, 1);
    prom_scrape_destroy(s);
    assert_string_equal(small.p, whole.p);
    assert_non_null(strstr(whole.p, "# TYPE a_x_total counter\n"
                                    "a_x_total 7\n"));
    assert_non_null(strstr(whole.p, "# TYPE b_lat_seconds gauge\n"
                                    "b_lat_seconds{cpu=\"0\"} 2.5\n"
                                    "b_lat_seconds{cpu=\"1\"} 0.005\n"));
    assert_null(strstr(whole.p, "b_lat_seconds 9"));
    assert_null(strstr(whole.p, "c_empty"));
    assert_non_null(strstr(whole.p, "vigil_build_info{version="));

    /* New series merge into the kept order. */
    bus_intern(bus, "a.a", NULL, 0, &id, NULL);
    bus_publish(bus, id, 1, 1);
    assert_int_equal(prom_index_update(&idx, bus), 0);
    dbuf_reset(&whole);
    assert_int_equal(prom_scrape_create(bus, idx, NULL, &s), 0);
    assert_int_equal(prom_scrape_fill(s, &whole, 1 << 19), 1);
    prom_scrape_destroy(s);
    assert_true(strstr(whole.p, "a_a 1") < strstr(whole.p, "a_x_total 7"));

    dbuf_fini(&small);
    dbuf_fini(&whole);
    prom_index_release(idx);
    bus_destroy(bus);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),  cmocka_unit_test(test_label_names),
        cmocka_unit_test(test_text),   cmocka_unit_test(test_dbuf_bounds),
        cmocka_unit_test(test_scrape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
