/*
 * sys_parse_test.c - the sys plugin: its /proc parsers and counter
 * arithmetic fed with fixture files and texts, then the whole plugin
 * driven through its descriptor with a mock host against fixture roots.
 *
 * Fixtures live in tests/fixtures/proc (see the README there); their
 * location comes from SYS_FIXTURES at build time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <vigil/plugin.h>

#include "sys_proc.h"

#ifndef SYS_FIXTURES
#error "SYS_FIXTURES must name tests/fixtures/proc"
#endif

#define FIX SYS_FIXTURES
#define NEXT SYS_FIXTURES "/next"
#define SYSFS SYS_FIXTURES "/sysfs"

/* The fixtures' two readings are taken as 2 s apart. */
#define DT_NS INT64_C(2000000000)

extern const struct vigil_plugin vigil_plugin;

/* got within a relative 1e-9 of want (absolute near 0). */
#define assert_near(got, want)                                                 \
    do {                                                                       \
        double g_ = (got), w_ = (want);                                        \
        if (!(fabs(g_ - w_) <= 1e-9 * fmax(1.0, fabs(w_)))) {                  \
            fail_msg("%s = %.17g, expected %.17g", #got, g_, w_);              \
        }                                                                      \
    } while (0)

/* ------------------------------------------------------------------------
 * Helpers for the parser tests.
 */

static char filebuf[4096];

static void open_fixture(struct sys_file *f, const char *path)
{
    int rc = sys_file_open(f, path, filebuf, sizeof(filebuf));

    if (rc != 0) {
        fail_msg("cannot open %s: %d", path, rc);
    }
}

static void read_cpus(const char *path, struct sys_cpu_times *cpus, size_t max,
                      size_t *n)
{
    struct sys_file f;
    int rc;

    *n = 0;
    open_fixture(&f, path);
    while ((rc = sys_stat_next(&f, &cpus[*n])) == 1) {
        (*n)++;
        assert_true(*n < max);
    }
    assert_int_equal(rc, 0);
    sys_file_close(&f);
}

static void find_disk(const char *path, const char *name, struct sys_disk *out)
{
    struct sys_file f;
    int rc;

    open_fixture(&f, path);
    while ((rc = sys_diskstats_next(&f, out)) == 1) {
        if (strcmp(out->name, name) == 0) {
            sys_file_close(&f);
            return;
        }
    }
    sys_file_close(&f);
    fail_msg("%s: no disk %s (rc %d)", path, name, rc);
}

static void find_netdev(const char *path, const char *name,
                        struct sys_netdev *out)
{
    struct sys_file f;
    int rc;

    open_fixture(&f, path);
    while ((rc = sys_netdev_next(&f, out)) == 1) {
        if (strcmp(out->name, name) == 0) {
            sys_file_close(&f);
            return;
        }
    }
    sys_file_close(&f);
    fail_msg("%s: no interface %s (rc %d)", path, name, rc);
}

static void read_psi(const char *path, struct sys_psi *out)
{
    struct sys_file f;

    open_fixture(&f, path);
    assert_int_equal(sys_pressure_read(&f, out), 0);
    sys_file_close(&f);
}

/* ------------------------------------------------------------------------
 * Reader and scanners.
 */

static void test_reader_small_buffer(void **state)
{
    /* 64 bytes hold the cpu lines (46 characters) but not the intr line,
     * which must be skipped whole, and the reader must refill across
     * line boundaries. */
    static const char *const want[] = {
        "cpu  10000 200 3000 80000 1000 100 200 50 500 0",
        "cpu0 5000 100 1500 40000 500 50 100 25 250 0",
        "cpu1 5000 100 1500 40000 500 50 100 25 250 0",
        "ctxt 228376",
        "btime 1764162000",
        "processes 4010",
        "procs_running 3",
        "procs_blocked 0",
        "softirq 52071 0 8133 2 1532 5019 0 12 19810 0 17563",
    };
    char small[64];
    struct sys_file f;
    const char *line;
    size_t i = 0;

    (void)state;
    assert_int_equal(sys_file_open(&f, FIX "/stat", small, sizeof(small)), 0);
    assert_true(f.ts_ns > 0);
    while ((line = sys_file_line(&f)) != NULL) {
        assert_true(i < sizeof(want) / sizeof(want[0]));
        assert_string_equal(line, want[i]);
        i++;
    }
    assert_int_equal(f.err, 0);
    assert_int_equal(i, sizeof(want) / sizeof(want[0]));
    sys_file_close(&f);
    sys_file_close(&f); /* twice is harmless */
}

static void test_reader_text_and_errors(void **state)
{
    char text[] = "one\n\nthree";
    struct sys_file f;

    (void)state;
    sys_file_text(&f, text);
    assert_string_equal(sys_file_line(&f), "one");
    assert_string_equal(sys_file_line(&f), "");
    assert_string_equal(sys_file_line(&f), "three"); /* no newline */
    assert_null(sys_file_line(&f));
    assert_int_equal(f.lineno, 3);
    sys_file_close(&f);

    assert_int_equal(
        sys_file_open(&f, FIX "/no-such-file", filebuf, sizeof(filebuf)),
        VIGIL_ENOENT);
    assert_int_equal(f.err, VIGIL_ENOENT);
    assert_true(f.sys_errno != 0);
    assert_null(sys_file_line(&f));
    sys_file_close(&f);

    /* The first error wins. */
    sys_file_text(&f, text);
    assert_int_equal(sys_file_fail(&f, VIGIL_EPARSE, "first"), VIGIL_EPARSE);
    assert_int_equal(sys_file_fail(&f, VIGIL_EIO, "second"), VIGIL_EPARSE);
    assert_string_equal(f.why, "first");
}

static void test_scan_numbers(void **state)
{
    const char *p;
    uint64_t u;
    double d;

    (void)state;
    p = "  42/7";
    assert_int_equal(sys_scan_u64(&p, &u), 0);
    assert_true(u == 42);
    assert_string_equal(p, "/7");

    p = "18446744073709551615";
    assert_int_equal(sys_scan_u64(&p, &u), 0);
    assert_true(u == UINT64_MAX);
    p = "18446744073709551616";
    assert_int_equal(sys_scan_u64(&p, &u), VIGIL_EPARSE);
    p = "12abc";
    assert_int_equal(sys_scan_u64(&p, &u), VIGIL_EPARSE);
    assert_string_equal(p, "12abc"); /* left alone on failure */
    p = "-1";
    assert_int_equal(sys_scan_u64(&p, &u), VIGIL_EPARSE);
    p = "";
    assert_int_equal(sys_scan_u64(&p, &u), VIGIL_EPARSE);

    p = " 1.33 x";
    assert_int_equal(sys_scan_dec(&p, &d), 0);
    assert_true(d == 1.33); /* correctly rounded, like strtod */
    assert_string_equal(p, " x");
    p = "12.34";
    assert_int_equal(sys_scan_dec(&p, &d), 0);
    assert_true(d == 12.34);
    p = "7";
    assert_int_equal(sys_scan_dec(&p, &d), 0);
    assert_true(d == 7.0);
    p = "0.00";
    assert_int_equal(sys_scan_dec(&p, &d), 0);
    assert_true(d == 0.0);
    p = "1.2.3";
    assert_int_equal(sys_scan_dec(&p, &d), VIGIL_EPARSE);
    p = "nan";
    assert_int_equal(sys_scan_dec(&p, &d), VIGIL_EPARSE);
    p = "1234567890123456"; /* more digits than we keep exact */
    assert_int_equal(sys_scan_dec(&p, &d), VIGIL_EPARSE);
}

static void test_delta_and_rate_wrap(void **state)
{
    uint64_t d;
    double r;

    (void)state;
    assert_int_equal(sys_delta(10, 25, &d), 1);
    assert_true(d == 15);
    /* Near the top of 64 bits the unsigned difference is still exact. */
    assert_int_equal(sys_delta(UINT64_MAX - 10, UINT64_MAX, &d), 1);
    assert_true(d == 10);
    /* A decrease is a reset or a 32-bit wrap: never a huge delta. */
    assert_int_equal(sys_delta(UINT32_MAX - 5, 3, &d), 0);
    assert_int_equal(sys_delta(UINT64_MAX, 0, &d), 0);

    assert_int_equal(sys_rate(100, 300, DT_NS, 1, &r), 1);
    assert_near(r, 100.0);
    assert_int_equal(sys_rate(100, 100, DT_NS, 1, &r), 1);
    assert_near(r, 0.0);
    assert_int_equal(sys_rate(1000, 3000, DT_NS, 1e-3, &r), 1);
    assert_near(r, 1.0);
    assert_int_equal(sys_rate(300, 100, DT_NS, 1, &r), 0);
    assert_int_equal(sys_rate(100, 300, 0, 1, &r), 0);
    assert_int_equal(sys_rate(100, 300, -5, 1, &r), 0);
}

/* ------------------------------------------------------------------------
 * /proc/stat.
 */

static void test_stat_parse(void **state)
{
    struct sys_cpu_times c[8];
    size_t n;

    (void)state;
    read_cpus(FIX "/stat", c, 8, &n);
    assert_int_equal(n, 3);
    assert_int_equal(c[0].cpu, -1);
    assert_int_equal(c[1].cpu, 0);
    assert_int_equal(c[2].cpu, 1);
    assert_true(c[0].user == 10000 && c[0].nice == 200 && c[0].system == 3000 &&
                c[0].idle == 80000 && c[0].iowait == 1000 && c[0].irq == 100 &&
                c[0].softirq == 200 && c[0].steal == 50 && c[0].guest == 500 &&
                c[0].guest_nice == 0);
    assert_true(c[1].user == 5000 && c[1].guest == 250);
}

static void test_stat_formats(void **state)
{
    char old[] = "cpu  1 2 3 4\ncpu0 1 2 3 4\nintr 5\n";
    char short_line[] = "cpu  1 2 3\n";
    char bad[] = "cpu  1 2 3 4 x 6\n";
    char badnum[] = "cpux 1 2 3 4\n";
    char empty[] = "";
    struct sys_cpu_times t;
    struct sys_file f;

    (void)state;
    /* Before 2.6.11 only four fields: the others read as 0. */
    sys_file_text(&f, old);
    assert_int_equal(sys_stat_next(&f, &t), 1);
    assert_int_equal(t.cpu, -1);
    assert_true(t.idle == 4 && t.iowait == 0 && t.steal == 0);
    assert_int_equal(sys_stat_next(&f, &t), 1);
    assert_int_equal(t.cpu, 0);
    assert_int_equal(sys_stat_next(&f, &t), 0); /* intr: cpu lines done */

    sys_file_text(&f, short_line);
    assert_int_equal(sys_stat_next(&f, &t), VIGIL_EPARSE);
    assert_int_equal(f.lineno, 1);
    assert_non_null(f.why);

    sys_file_text(&f, bad);
    assert_int_equal(sys_stat_next(&f, &t), VIGIL_EPARSE);
    sys_file_text(&f, badnum);
    assert_int_equal(sys_stat_next(&f, &t), VIGIL_EPARSE);
    sys_file_text(&f, empty);
    assert_int_equal(sys_stat_next(&f, &t), 0);
}

static void test_cpu_pct(void **state)
{
    struct sys_cpu_times a[8], b[8];
    struct sys_cpu_pct p;
    size_t na, nb;

    (void)state;
    read_cpus(FIX "/stat", a, 8, &na);
    read_cpus(NEXT "/stat", b, 8, &nb);
    assert_int_equal(na, 3);
    assert_int_equal(nb, 3);

    /* Total: 2000 ticks; guest (100) is inside user, not added. */
    assert_int_equal(sys_cpu_pct(&a[0], &b[0], &p), 1);
    assert_near(p.user, 20.0);
    assert_near(p.nice, 1.0);
    assert_near(p.system, 7.5);
    assert_near(p.idle, 62.5);
    assert_near(p.iowait, 5.0);
    assert_near(p.irq, 2.5);
    assert_near(p.steal, 1.5);
    assert_near(p.busy, 32.5);

    assert_int_equal(sys_cpu_pct(&a[1], &b[1], &p), 1);
    assert_near(p.user, 30.0);
    assert_near(p.nice, 2.0);
    assert_near(p.system, 10.0);
    assert_near(p.idle, 45.0);
    assert_near(p.iowait, 8.0);
    assert_near(p.irq, 3.0);
    assert_near(p.steal, 2.0);
    assert_near(p.busy, 47.0);

    assert_int_equal(sys_cpu_pct(&a[2], &b[2], &p), 1);
    assert_near(p.user, 10.0);
    assert_near(p.nice, 0.0);
    assert_near(p.system, 5.0);
    assert_near(p.idle, 80.0);
    assert_near(p.iowait, 2.0);
    assert_near(p.irq, 2.0);
    assert_near(p.steal, 1.0);
    assert_near(p.busy, 18.0);
}

static void test_cpu_pct_skips(void **state)
{
    struct sys_cpu_times a[8], b[8];
    struct sys_cpu_pct p;
    size_t na, nb;

    (void)state;
    read_cpus(FIX "/stat", a, 8, &na);
    read_cpus(NEXT "/stat", b, 8, &nb);
    /* Backwards in time: every counter decreased. */
    assert_int_equal(sys_cpu_pct(&b[0], &a[0], &p), 0);
    /* Hotplug: one counter restarted from a lower value. */
    b[1].iowait = a[1].iowait - 1;
    assert_int_equal(sys_cpu_pct(&a[1], &b[1], &p), 0);
    /* No tick accounted: nothing to divide by. */
    assert_int_equal(sys_cpu_pct(&a[2], &a[2], &p), 0);
}

/* ------------------------------------------------------------------------
 * loadavg, meminfo.
 */

static void test_loadavg(void **state)
{
    char bad[] = "0.52 0.58 x 3/467 12345\n";
    char empty[] = "";
    struct sys_loadavg la;
    struct sys_file f;

    (void)state;
    open_fixture(&f, FIX "/loadavg");
    assert_int_equal(sys_loadavg_read(&f, &la), 0);
    sys_file_close(&f);
    assert_true(la.avg1 == 0.52 && la.avg5 == 0.58 && la.avg15 == 0.59);
    assert_true(la.running == 3 && la.total == 467);

    sys_file_text(&f, bad);
    assert_int_equal(sys_loadavg_read(&f, &la), VIGIL_EPARSE);
    sys_file_text(&f, empty);
    assert_int_equal(sys_loadavg_read(&f, &la), VIGIL_EPARSE);
}

static void test_meminfo(void **state)
{
    char noswap[] = "MemTotal: 1000 kB\nMemAvailable: 250 kB\n"
                    "SwapTotal: 0 kB\nSwapFree: 0 kB\n";
    char old[] = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\n"
                 "Cached: 200 kB\n";
    char nototal[] = "MemFree: 100 kB\n";
    char badunit[] = "MemTotal: 1000 MB\n";
    char huge[] = "MemTotal: 18446744073709551 kB\n";
    struct sys_meminfo m;
    struct sys_mem_usage u;
    struct sys_file f;

    (void)state;
    open_fixture(&f, FIX "/meminfo");
    assert_int_equal(sys_meminfo_read(&f, &m), 0);
    sys_file_close(&f);
    assert_true(m.total == UINT64_C(16000000) * 1024);
    assert_true(m.available == UINT64_C(12800000) * 1024);
    assert_true(m.cached == UINT64_C(3500000) * 1024);
    assert_true(m.swap_total == UINT64_C(2097152) * 1024);
    sys_mem_usage(&m, &u);
    assert_near(u.used_bytes, 3200000.0 * 1024);
    assert_near(u.used_pct, 20.0);
    assert_near(u.swap_used_bytes, 524288.0 * 1024);
    assert_near(u.swap_used_pct, 25.0);

    sys_file_text(&f, noswap);
    assert_int_equal(sys_meminfo_read(&f, &m), 0);
    sys_mem_usage(&m, &u);
    assert_near(u.used_pct, 75.0);
    assert_near(u.swap_used_bytes, 0.0);
    assert_near(u.swap_used_pct, 0.0); /* not NaN */

    /* Before 3.14: MemAvailable estimated. */
    sys_file_text(&f, old);
    assert_int_equal(sys_meminfo_read(&f, &m), 0);
    assert_true(m.available == 350 * 1024);

    sys_file_text(&f, nototal);
    assert_int_equal(sys_meminfo_read(&f, &m), VIGIL_EPARSE);
    sys_file_text(&f, badunit);
    assert_int_equal(sys_meminfo_read(&f, &m), VIGIL_EPARSE);
    sys_file_text(&f, huge);
    assert_int_equal(sys_meminfo_read(&f, &m), VIGIL_EPARSE);
}

/* ------------------------------------------------------------------------
 * diskstats.
 */

static void test_diskstats_parse(void **state)
{
    static const char *const names[] = {"loop0", "ram0",    "sda",
                                        "sda1",  "nvme0n1", "vdb"};
    struct sys_disk d;
    struct sys_file f;
    size_t i = 0;
    int rc;

    (void)state;
    open_fixture(&f, FIX "/diskstats");
    while ((rc = sys_diskstats_next(&f, &d)) == 1) {
        assert_true(i < 6);
        assert_string_equal(d.name, names[i]);
        i++;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(i, 6);
    sys_file_close(&f);

    /* 20 fields. */
    find_disk(FIX "/diskstats", "sda", &d);
    assert_int_equal(d.major, 8);
    assert_int_equal(d.minor, 0);
    assert_true(d.c.reads == 120345 && d.c.read_sectors == 9876540 &&
                d.c.read_ms == 60123 && d.c.writes == 230456 &&
                d.c.write_sectors == 18765432 && d.c.write_ms == 400321 &&
                d.c.io_ms == 312345);
    /* 18 fields. */
    find_disk(FIX "/diskstats", "nvme0n1", &d);
    assert_true(d.c.reads == UINT64_C(4294967000) && d.c.io_ms == 100000);
    /* 14 fields. */
    find_disk(FIX "/diskstats", "vdb", &d);
    assert_int_equal(d.major, 254);
    assert_int_equal(d.minor, 16);
    assert_true(d.c.reads == 5000 && d.c.write_ms == 2000 && d.c.io_ms == 4000);
}

static void test_diskstats_formats(void **state)
{
    /* 2.6 kernels: partitions with 4 counters, skipped. */
    char old[] = "   8    1 sda1 100 200 300 400\n"
                 "   8    0 sda 1 2 3 4 5 6 7 8 9 10 11\n";
    char bad[] = "   8    0 sda 1 2 3 x 5 6 7 8 9 10 11\n";
    char noname[] = "   8    0\n";
    struct sys_disk d;
    struct sys_file f;

    (void)state;
    sys_file_text(&f, old);
    assert_int_equal(sys_diskstats_next(&f, &d), 1);
    assert_string_equal(d.name, "sda");
    assert_true(d.c.io_ms == 10);
    assert_int_equal(sys_diskstats_next(&f, &d), 0);

    sys_file_text(&f, bad);
    assert_int_equal(sys_diskstats_next(&f, &d), VIGIL_EPARSE);
    sys_file_text(&f, noname);
    assert_int_equal(sys_diskstats_next(&f, &d), VIGIL_EPARSE);
}

static void test_disk_filters(void **state)
{
    (void)state;
    assert_true(sys_disk_ignored("loop0"));
    assert_true(sys_disk_ignored("ram15"));
    assert_true(sys_disk_ignored("zram0"));
    assert_false(sys_disk_ignored("sda"));
    assert_false(sys_disk_ignored("nvme0n1"));
    assert_false(sys_disk_ignored("dm-0"));

    assert_true(sys_disk_is_whole(SYSFS, "sda"));
    assert_true(sys_disk_is_whole(SYSFS, "nvme0n1"));
    assert_false(sys_disk_is_whole(SYSFS, "sda1"));
    assert_false(sys_disk_is_whole(SYSFS, "cciss/c0d0"));
    assert_false(sys_disk_is_whole(FIX "/no-such-dir", "sda"));
}

static void test_disk_rates(void **state)
{
    struct sys_disk a, b;
    struct sys_disk_rates r;

    (void)state;
    find_disk(FIX "/diskstats", "sda", &a);
    find_disk(NEXT "/diskstats", "sda", &b);
    assert_int_equal(sys_disk_rates(&a.c, &b.c, DT_NS, &r), 1);
    assert_near(r.reads_per_s, 200.0);
    assert_near(r.writes_per_s, 300.0);
    assert_near(r.read_bytes_per_s, 51200.0 * 512 / 2);
    assert_near(r.write_bytes_per_s, 20480.0 * 512 / 2);
    assert_near(r.util_pct, 45.0);
    assert_near(r.await_ms, 3.0);

    /* Over 0.5 s the same 900 ms busy would be 180 %: capped. */
    assert_int_equal(sys_disk_rates(&a.c, &b.c, DT_NS / 4, &r), 1);
    assert_near(r.util_pct, 100.0);

    /* No I/O: await is 0, not NaN. */
    find_disk(FIX "/diskstats", "vdb", &a);
    find_disk(NEXT "/diskstats", "vdb", &b);
    assert_int_equal(sys_disk_rates(&a.c, &b.c, DT_NS, &r), 1);
    assert_near(r.reads_per_s, 0.0);
    assert_near(r.util_pct, 0.0);
    assert_near(r.await_ms, 0.0);

    /* The read counter wrapped at 32 bits: skip the interval. */
    find_disk(FIX "/diskstats", "nvme0n1", &a);
    find_disk(NEXT "/diskstats", "nvme0n1", &b);
    assert_int_equal(sys_disk_rates(&a.c, &b.c, DT_NS, &r), 0);

    assert_int_equal(sys_disk_rates(&a.c, &a.c, 0, &r), 0);
}

/* ------------------------------------------------------------------------
 * net/dev.
 */

static void test_netdev_parse(void **state)
{
    static const char *const names[] = {"lo", "eth0", "wlan0"};
    /* Old kernels glue wide numbers to the colon. */
    char old[] = "Inter-|   Receive |  Transmit\n"
                 " face |bytes packets|bytes packets\n"
                 "  eth0:4294967295 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n";
    char shortl[] = "  eth0: 1 2 3 4 5 6 7 8 9 10 11 12\n";
    char nocolon[] = "  eth0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n";
    struct sys_netdev n;
    struct sys_file f;
    size_t i = 0;
    int rc;

    (void)state;
    open_fixture(&f, FIX "/net/dev");
    while ((rc = sys_netdev_next(&f, &n)) == 1) {
        assert_true(i < 3);
        assert_string_equal(n.name, names[i]);
        i++;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(i, 3);
    sys_file_close(&f);

    find_netdev(FIX "/net/dev", "eth0", &n);
    assert_true(n.c.rx_bytes == 987654321 && n.c.rx_packets == 765432 &&
                n.c.rx_errors == 3 && n.c.rx_drops == 7 &&
                n.c.tx_bytes == 123456789 && n.c.tx_packets == 234567 &&
                n.c.tx_errors == 1 && n.c.tx_drops == 2);

    sys_file_text(&f, old);
    assert_int_equal(sys_netdev_next(&f, &n), 1);
    assert_string_equal(n.name, "eth0");
    assert_true(n.c.rx_bytes == UINT32_MAX && n.c.rx_drops == 4 &&
                n.c.tx_bytes == 9 && n.c.tx_drops == 12);
    assert_int_equal(sys_netdev_next(&f, &n), 0);

    sys_file_text(&f, shortl);
    assert_int_equal(sys_netdev_next(&f, &n), VIGIL_EPARSE);
    sys_file_text(&f, nocolon);
    assert_int_equal(sys_netdev_next(&f, &n), VIGIL_EPARSE);
}

static void test_net_rates(void **state)
{
    struct sys_netdev a, b;
    struct sys_net_rates r;

    (void)state;
    find_netdev(FIX "/net/dev", "eth0", &a);
    find_netdev(NEXT "/net/dev", "eth0", &b);
    assert_int_equal(sys_net_rates(&a.c, &b.c, DT_NS, &r), 1);
    assert_near(r.rx_bytes, 1000000.0);
    assert_near(r.rx_packets, 1000.0);
    assert_near(r.rx_errors, 1.0);
    assert_near(r.rx_drops, 2.0);
    assert_near(r.tx_bytes, 200000.0);
    assert_near(r.tx_packets, 500.0);
    assert_near(r.tx_errors, 0.0);
    assert_near(r.tx_drops, 1.0);

    /* rx_bytes wrapped at 32 bits: the whole interval is dropped. */
    find_netdev(FIX "/net/dev", "wlan0", &a);
    find_netdev(NEXT "/net/dev", "wlan0", &b);
    assert_int_equal(sys_net_rates(&a.c, &b.c, DT_NS, &r), 0);
}

/* ------------------------------------------------------------------------
 * pressure.
 */

static void test_pressure(void **state)
{
    char nofull[] = "some avg10=0.50 avg60=0.10 avg300=0.00 total=42\n";
    char extra[] = "some avg10=1.00 avg5=3.00 total=7 future=x\n";
    char bad[] = "some avg10=abc avg60=0.10 avg300=0.00 total=42\n";
    char nototal[] = "some avg10=1.00 avg60=0.10 avg300=0.00\n";
    char onlyfull[] = "full avg10=1.00 avg60=0.10 avg300=0.00 total=1\n";
    struct sys_psi p;
    struct sys_file f;

    (void)state;
    read_psi(FIX "/pressure/cpu", &p);
    assert_true(p.have[SYS_PSI_SOME] && p.have[SYS_PSI_FULL]);
    assert_true(p.avg10[SYS_PSI_SOME] == 1.50);
    assert_true(p.total_us[SYS_PSI_SOME] == 123456789);
    assert_true(p.avg10[SYS_PSI_FULL] == 0.0);
    read_psi(FIX "/pressure/io", &p);
    assert_true(p.avg10[SYS_PSI_SOME] == 12.34);
    assert_true(p.avg10[SYS_PSI_FULL] == 10.0);
    assert_true(p.total_us[SYS_PSI_FULL] == 800000000);

    /* cpu before 5.13: no full line. */
    sys_file_text(&f, nofull);
    assert_int_equal(sys_pressure_read(&f, &p), 0);
    assert_true(p.have[SYS_PSI_SOME] && !p.have[SYS_PSI_FULL]);
    assert_true(p.avg10[SYS_PSI_SOME] == 0.5 && p.total_us[0] == 42);

    sys_file_text(&f, extra);
    assert_int_equal(sys_pressure_read(&f, &p), 0);
    assert_true(p.avg10[SYS_PSI_SOME] == 1.0 && p.total_us[0] == 7);

    sys_file_text(&f, bad);
    assert_int_equal(sys_pressure_read(&f, &p), VIGIL_EPARSE);
    sys_file_text(&f, nototal);
    assert_int_equal(sys_pressure_read(&f, &p), VIGIL_EPARSE);
    sys_file_text(&f, onlyfull);
    assert_int_equal(sys_pressure_read(&f, &p), VIGIL_EPARSE);
}

static void test_pressure_stall_rate(void **state)
{
    struct sys_psi a, b;
    double r;

    (void)state;
    read_psi(FIX "/pressure/io", &a);
    read_psi(NEXT "/pressure/io", &b);
    /* us over 2 s, as ms per s. */
    assert_int_equal(sys_rate(a.total_us[SYS_PSI_SOME],
                              b.total_us[SYS_PSI_SOME], DT_NS, 1e-3, &r),
                     1);
    assert_near(r, 500.0);
    assert_int_equal(sys_rate(a.total_us[SYS_PSI_FULL],
                              b.total_us[SYS_PSI_FULL], DT_NS, 1e-3, &r),
                     1);
    assert_near(r, 300.0);
}

/* ------------------------------------------------------------------------
 * The plugin through its descriptor, with a mock host.
 */

#define MOCK_SERIES_MAX 4096

static struct mock {
    struct {
        char key[192];
        double last;
        unsigned round; /* collection that last published it */
        unsigned count;
    } s[MOCK_SERIES_MAX];
    size_t n;
    size_t limit; /* refuse new series beyond it, like the core */
    unsigned round;
    unsigned errors, warns, infos;
    char error[512];
    char info[512];
} mock;

static int mock_inst_tag;
#define MOCK_INST ((vigil_instance *)&mock_inst_tag)

static int label_cmp(const void *a, const void *b)
{
    const struct vigil_label *x = a, *y = b;

    return strcmp(x->key, y->key);
}

/* The core's canonical key: name{a="x",b="y"}, labels sorted by key. */
static void mock_key(char *out, size_t size, const char *name,
                     const struct vigil_label *labels, size_t n)
{
    struct vigil_label sorted[VIGIL_LABELS_MAX];
    size_t i, len;

    assert_true(n <= VIGIL_LABELS_MAX);
    assert_true(n == 0 || labels != NULL);
    if (n > 0) {
        memcpy(sorted, labels, n * sizeof(*labels));
        qsort(sorted, n, sizeof(*sorted), label_cmp);
    }
    len = (size_t)snprintf(out, size, "%s", name);
    for (i = 0; i < n; i++) {
        len += (size_t)snprintf(out + len, size - len, "%s%s=\"%s\"",
                                i == 0 ? "{" : ",", sorted[i].key,
                                sorted[i].value);
    }
    if (n > 0) {
        snprintf(out + len, size - len, "}");
    }
}

static int mock_series(vigil_instance *inst, const char *name,
                       const struct vigil_label *labels, size_t nlabels,
                       vigil_series_id *out)
{
    char key[192];
    size_t i;

    assert_ptr_equal(inst, MOCK_INST);
    assert_true(strlen(name) < VIGIL_NAME_MAX);
    assert_true(strncmp(name, "sys.", 4) == 0);
    mock_key(key, sizeof(key), name, labels, nlabels);
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
    assert_true(ts_ns == 0);
    assert_true(isfinite(value));
    /* Once per collection and series. */
    assert_true(mock.s[id].round != mock.round || mock.s[id].count == 0);
    mock.s[id].last = value;
    mock.s[id].round = mock.round;
    mock.s[id].count++;
}

static void mock_log(vigil_instance *inst, int level, const char *fmt, ...)
    VIGIL_PRINTF(3, 4);
static void mock_log(vigil_instance *inst, int level, const char *fmt, ...)
{
    va_list ap;

    assert_ptr_equal(inst, MOCK_INST);
    if (level == VIGIL_LOG_WARN) {
        mock.warns++;
    } else if (level == VIGIL_LOG_INFO) {
        mock.infos++;
        va_start(ap, fmt);
        vsnprintf(mock.info, sizeof(mock.info), fmt, ap);
        va_end(ap);
    }
}

static void mock_error(vigil_instance *inst, const char *fmt, ...)
    VIGIL_PRINTF(2, 3);
static void mock_error(vigil_instance *inst, const char *fmt, ...)
{
    va_list ap;

    assert_ptr_equal(inst, MOCK_INST);
    mock.errors++;
    va_start(ap, fmt);
    vsnprintf(mock.error, sizeof(mock.error), fmt, ap);
    va_end(ap);
}

static const struct vigil_host mock_host = {
    .abi_version = VIGIL_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct vigil_host),
    .series = mock_series,
    .publish = mock_publish,
    .log = mock_log,
    .error = mock_error,
};

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

/* Was key published by the last collection? */
static int published(const char *key)
{
    int i = find_series(key);

    return i >= 0 && mock.s[i].count > 0 && mock.s[i].round == mock.round;
}

/* Its value in the last collection. */
static double value(const char *key)
{
    if (!published(key)) {
        fail_msg("%s was not published", key);
    }
    return mock.s[find_series(key)].last;
}

/* How many series starting with prefix the last collection published. */
static unsigned count_published(const char *prefix)
{
    unsigned n = 0;
    size_t i;

    for (i = 0; i < mock.n; i++) {
        if (strncmp(mock.s[i].key, prefix, strlen(prefix)) == 0 &&
            mock.s[i].count > 0 && mock.s[i].round == mock.round) {
            n++;
        }
    }
    return n;
}

/* A plugin instance with its config built from the options table, as the
 * core does: defaults, then the given key=value overrides. */
struct inst {
    void *config;
    void *state;
    char tmp[64];  /* scratch directory */
    char root[96]; /* tmp/proc: a symlink to a fixture root */
};

static void apply_option(void *config, const struct vigil_option *o,
                         const char *value)
{
    char *field = (char *)config + o->offset;

    switch (o->type) {
    case VIGIL_OPT_BOOL: {
        int b = strcmp(value, "yes") == 0;

        assert_true(b || strcmp(value, "no") == 0);
        memcpy(field, &b, sizeof(b));
        break;
    }
    case VIGIL_OPT_STRING:
        memcpy(field, &value, sizeof(value));
        break;
    default:
        fail_msg("option %s: unexpected type %d", o->key, o->type);
    }
}

static int inst_start(struct inst *in, const char *proc_root,
                      const char *const *overrides)
{
    const struct vigil_option *o;
    size_t i;

    assert_int_equal(vigil_plugin.abi_version, VIGIL_PLUGIN_ABI_VERSION);
    assert_int_equal(vigil_plugin.struct_size, sizeof(struct vigil_plugin));
    assert_string_equal(vigil_plugin.name, "sys");
    in->config = calloc(1, vigil_plugin.config_size);
    assert_non_null(in->config);
    for (o = vigil_plugin.options; o->key != NULL; o++) {
        const char *v = o->def;

        assert_string_not_equal(o->key, "interval");
        assert_true(o->offset < vigil_plugin.config_size);
        assert_non_null(o->help);
        if (strcmp(o->key, "proc_root") == 0) {
            v = proc_root;
        } else if (strcmp(o->key, "sys_root") == 0) {
            v = SYSFS;
        }
        for (i = 0; overrides != NULL && overrides[i] != NULL; i += 2) {
            if (strcmp(overrides[i], o->key) == 0) {
                v = overrides[i + 1];
            }
        }
        apply_option(in->config, o, v);
    }
    in->state = NULL;
    return vigil_plugin.init(&mock_host, MOCK_INST, in->config, &in->state);
}

static void inst_stop(struct inst *in)
{
    vigil_plugin.destroy(in->state);
    free(in->config);
    in->state = NULL;
    in->config = NULL;
}

static int inst_collect(struct inst *in)
{
    mock.round++;
    return vigil_plugin.collect(in->state);
}

/* Point tmp/proc at target. */
static void inst_point(struct inst *in, const char *target)
{
    unlink(in->root);
    assert_int_equal(symlink(target, in->root), 0);
}

static int setup_plugin(void **state)
{
    static struct inst in;

    memset(&mock, 0, sizeof(mock));
    mock.limit = MOCK_SERIES_MAX;
    memset(&in, 0, sizeof(in));
    snprintf(in.tmp, sizeof(in.tmp), "/tmp/sys_parse_test.XXXXXX");
    if (mkdtemp(in.tmp) == NULL) {
        return -1;
    }
    snprintf(in.root, sizeof(in.root), "%s/proc", in.tmp);
    *state = &in;
    return 0;
}

static void rm_tree(const char *dir, const char *const *names)
{
    char path[256];
    size_t i;

    for (i = 0; names[i] != NULL; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
        rmdir(path);
    }
}

static int teardown_plugin(void **state)
{
    static const char *const names[] = {
        "proc",          "own/stat",    "own/loadavg", "own/meminfo",
        "own/diskstats", "own/net/dev", "own/net",     "own/pressure/cpu",
        "own/pressure",  "own",         NULL};
    struct inst *in = *state;

    if (in->state != NULL) {
        inst_stop(in);
    }
    rm_tree(in->tmp, names);
    return rmdir(in->tmp);
}

static void test_plugin_collect(void **state)
{
    struct inst *in = *state;

    inst_point(in, FIX);
    assert_int_equal(inst_start(in, in->root, NULL), 0);

    /* First collection: gauges, but no rates or CPU shares yet. */
    assert_int_equal(inst_collect(in), 0);
    assert_int_equal(mock.errors, 0);
    assert_near(value("sys.load.avg1"), 0.52);
    assert_near(value("sys.load.avg5"), 0.58);
    assert_near(value("sys.load.avg15"), 0.59);
    assert_near(value("sys.procs.running"), 3);
    assert_near(value("sys.procs.count"), 467);
    assert_near(value("sys.mem.total_bytes"), 16384000000.0);
    assert_near(value("sys.mem.available_bytes"), 13107200000.0);
    assert_near(value("sys.mem.used_bytes"), 3276800000.0);
    assert_near(value("sys.mem.used_pct"), 20.0);
    assert_near(value("sys.mem.cached_bytes"), 3584000000.0);
    assert_near(value("sys.swap.total_bytes"), 2147483648.0);
    assert_near(value("sys.swap.used_bytes"), 536870912.0);
    assert_near(value("sys.swap.used_pct"), 25.0);
    assert_near(value("sys.pressure.cpu_some_pct"), 1.5);
    assert_near(value("sys.pressure.io_full_pct"), 10.0);
    assert_int_equal(count_published("sys.cpu."), 0);
    assert_int_equal(count_published("sys.disk."), 0);
    assert_int_equal(count_published("sys.net."), 0);
    assert_int_equal(count_published("sys.pressure."), 6);

    /* Second collection, from the second reading. */
    inst_point(in, NEXT);
    assert_int_equal(inst_collect(in), 0);
    assert_int_equal(mock.errors, 0);
    assert_near(value("sys.cpu.user_pct{cpu=\"total\"}"), 20.0);
    assert_near(value("sys.cpu.nice_pct{cpu=\"total\"}"), 1.0);
    assert_near(value("sys.cpu.system_pct{cpu=\"total\"}"), 7.5);
    assert_near(value("sys.cpu.iowait_pct{cpu=\"total\"}"), 5.0);
    assert_near(value("sys.cpu.irq_pct{cpu=\"total\"}"), 2.5);
    assert_near(value("sys.cpu.steal_pct{cpu=\"total\"}"), 1.5);
    assert_near(value("sys.cpu.idle_pct{cpu=\"total\"}"), 62.5);
    assert_near(value("sys.cpu.busy_pct{cpu=\"total\"}"), 32.5);
    assert_near(value("sys.cpu.busy_pct{cpu=\"0\"}"), 47.0);
    assert_near(value("sys.cpu.irq_pct{cpu=\"0\"}"), 3.0);
    assert_near(value("sys.cpu.busy_pct{cpu=\"1\"}"), 18.0);
    assert_near(value("sys.cpu.idle_pct{cpu=\"1\"}"), 80.0);
    assert_int_equal(count_published("sys.cpu."), 3 * 8);
    assert_near(value("sys.load.avg1"), 1.25);
    assert_near(value("sys.mem.used_pct"), 25.0);

    /* Disks: sda and vdb. Not loop0 or ram0 (ignored), sda1 (a
     * partition), nvme0n1 (its counter wrapped). The interval is real
     * time between two collections, so check what does not depend on
     * it: util is capped, await and bytes per read are exact. */
    assert_int_equal(count_published("sys.disk."), 2 * 6);
    assert_near(value("sys.disk.await_ms{device=\"sda\"}"), 3.0);
    assert_near(value("sys.disk.read_bytes_per_s{device=\"sda\"}") /
                    value("sys.disk.reads_per_s{device=\"sda\"}"),
                51200.0 * 512 / 400);
    assert_near(value("sys.disk.write_bytes_per_s{device=\"sda\"}") /
                    value("sys.disk.writes_per_s{device=\"sda\"}"),
                20480.0 * 512 / 600);
    assert_in_range(value("sys.disk.util_pct{device=\"sda\"}"), 0, 100);
    assert_near(value("sys.disk.reads_per_s{device=\"vdb\"}"), 0.0);
    assert_near(value("sys.disk.await_ms{device=\"vdb\"}"), 0.0);
    assert_near(value("sys.disk.util_pct{device=\"vdb\"}"), 0.0);
    assert_int_equal(find_series("sys.disk.reads_per_s{device=\"sda1\"}"), -1);
    assert_int_equal(find_series("sys.disk.reads_per_s{device=\"nvme0n1\"}"),
                     -1);
    assert_int_equal(find_series("sys.disk.reads_per_s{device=\"loop0\"}"), -1);

    /* Network: eth0 only (lo skipped, wlan0 wrapped). */
    assert_int_equal(count_published("sys.net."), 8);
    assert_near(value("sys.net.rx_bytes_per_s{device=\"eth0\"}") /
                    value("sys.net.rx_packets_per_s{device=\"eth0\"}"),
                1000.0);
    assert_near(value("sys.net.tx_bytes_per_s{device=\"eth0\"}") /
                    value("sys.net.tx_packets_per_s{device=\"eth0\"}"),
                400.0);
    assert_near(value("sys.net.tx_errors_per_s{device=\"eth0\"}"), 0.0);
    assert_near(value("sys.net.rx_drops_per_s{device=\"eth0\"}") /
                    value("sys.net.rx_errors_per_s{device=\"eth0\"}"),
                2.0);

    /* Pressure: 6 percentages and 6 stall rates (cpu full total stayed
     * 0, memory did not move: rate 0). */
    assert_int_equal(count_published("sys.pressure."), 12);
    assert_near(value("sys.pressure.io_some_pct"), 25.0);
    assert_near(value("sys.pressure.cpu_full_stall_ms_per_s"), 0.0);
    assert_near(value("sys.pressure.memory_some_stall_ms_per_s"), 0.0);
    assert_near(value("sys.pressure.io_some_stall_ms_per_s") /
                    value("sys.pressure.io_full_stall_ms_per_s"),
                1000.0 / 600.0);

    /* Third collection of the same reading: nothing moved, so every rate
     * is 0, and the wrapped devices now have a valid previous reading. */
    assert_int_equal(inst_collect(in), 0);
    assert_int_equal(count_published("sys.cpu."), 0); /* no tick passed */
    assert_near(value("sys.disk.reads_per_s{device=\"sda\"}"), 0.0);
    assert_near(value("sys.disk.reads_per_s{device=\"nvme0n1\"}"), 0.0);
    assert_near(value("sys.net.rx_bytes_per_s{device=\"wlan0\"}"), 0.0);
    assert_near(value("sys.pressure.io_some_stall_ms_per_s"), 0.0);
    assert_int_equal(mock.warns, 0);
    assert_int_equal(mock.errors, 0);
}

static void test_plugin_options(void **state)
{
    static const char *const opts[] = {
        "per_cpu", "no", "disk_partitions", "yes", "net_skip_lo", "no", NULL};
    struct inst *in = *state;

    inst_point(in, FIX);
    assert_int_equal(inst_start(in, in->root, opts), 0);
    assert_int_equal(inst_collect(in), 0);
    inst_point(in, NEXT);
    assert_int_equal(inst_collect(in), 0);
    /* Only the total CPU. */
    assert_int_equal(count_published("sys.cpu."), 8);
    assert_near(value("sys.cpu.busy_pct{cpu=\"total\"}"), 32.5);
    /* The partition too. */
    assert_int_equal(count_published("sys.disk."), 3 * 6);
    assert_near(value("sys.disk.await_ms{device=\"sda1\"}"), 3.0);
    /* And loopback. */
    assert_int_equal(count_published("sys.net."), 2 * 8);
    assert_true(published("sys.net.rx_bytes_per_s{device=\"lo\"}"));
}

static void test_plugin_no_sysfs(void **state)
{
    static const char *const opts[] = {"sys_root", FIX "/no-such-dir", NULL};
    struct inst *in = *state;

    /* Without sysfs a partition cannot be recognised: said once, and
     * every device is reported rather than none. */
    inst_point(in, FIX);
    assert_int_equal(inst_start(in, in->root, opts), 0);
    assert_int_equal(mock.infos, 1);
    assert_non_null(strstr(mock.info, "no-such-dir/block"));
    assert_int_equal(inst_collect(in), 0);
    inst_point(in, NEXT);
    assert_int_equal(inst_collect(in), 0);
    assert_int_equal(count_published("sys.disk."), 3 * 6);
    assert_true(published("sys.disk.await_ms{device=\"sda1\"}"));
    assert_int_equal(mock.infos, 1);
}

static void test_plugin_missing_file(void **state)
{
    struct inst *in = *state;

    inst_point(in, FIX);
    assert_int_equal(inst_start(in, in->root, NULL), 0);
    assert_int_equal(inst_collect(in), 0);

    /* Everything vanished: each file is reported, naming it, and the
     * first error is returned. */
    inst_point(in, FIX "/no-such-dir");
    assert_int_equal(inst_collect(in), VIGIL_ENOENT);
    assert_int_equal(mock.errors, 5);
    assert_non_null(strstr(mock.error, "/proc/net/dev: "));
    assert_int_equal(count_published("sys."), 0);

    /* Back: the devices and CPUs start afresh (no rates against counters
     * two collections old); gauges come back at once. */
    inst_point(in, NEXT);
    assert_int_equal(inst_collect(in), 0);
    assert_int_equal(mock.errors, 5);
    assert_true(published("sys.mem.total_bytes"));
    assert_int_equal(count_published("sys.disk."), 0);
    assert_int_equal(count_published("sys.net."), 0);
    assert_int_equal(count_published("sys.cpu."), 0);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[256];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fp = fopen(path, "w");
    assert_non_null(fp);
    assert_true(fputs(text, fp) >= 0);
    assert_int_equal(fclose(fp), 0);
}

/* tmp/own: a root of our own making, stat, loadavg and meminfo from the
 * fixture and the given net/dev and pressure/cpu (NULL: no such file) and
 * diskstats. */
static void make_own_root(struct inst *in, const char *diskstats,
                          const char *netdev, const char *psi_cpu)
{
    static const char *const copies[] = {"stat", "loadavg", "meminfo"};
    char dir[128], path[256], from[256];
    size_t i;

    snprintf(dir, sizeof(dir), "%s/own", in->tmp);
    mkdir(dir, 0700);
    snprintf(path, sizeof(path), "%s/net", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/pressure", dir);
    mkdir(path, 0700);
    for (i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, copies[i]);
        snprintf(from, sizeof(from), "%s/%s", FIX, copies[i]);
        unlink(path);
        assert_int_equal(symlink(from, path), 0);
    }
    write_file(dir, "diskstats", diskstats);
    snprintf(path, sizeof(path), "%s/net/dev", dir);
    unlink(path);
    if (netdev != NULL) {
        write_file(dir, "net/dev", netdev);
    }
    snprintf(path, sizeof(path), "%s/pressure/cpu", dir);
    unlink(path);
    if (psi_cpu != NULL) {
        write_file(dir, "pressure/cpu", psi_cpu);
    }
    inst_point(in, dir);
}

static void test_plugin_parse_error(void **state)
{
    struct inst *in = *state;

    /* A file that does not parse: one error naming file and line; the
     * other files are still read and published. */
    make_own_root(in, "   8 0 sda 1 2 3 4 5 6 7 8 9 10 11\n8 x\n", "",
                  "some avg10=0.00 total=0\n");
    assert_int_equal(inst_start(in, in->root, NULL), 0);
    assert_int_equal(inst_collect(in), VIGIL_EPARSE);
    assert_int_equal(mock.errors, 1);
    assert_non_null(strstr(mock.error, "/proc/diskstats:2: "));
    assert_true(published("sys.mem.total_bytes"));
    assert_true(published("sys.pressure.cpu_some_pct"));

    /* Every file is read and reported; the first error is returned. */
    make_own_root(in, "8 x\n", NULL, "some avg10=0.00 total=0\n");
    assert_int_equal(inst_collect(in), VIGIL_EPARSE);
    assert_int_equal(mock.errors, 3);
    assert_non_null(strstr(mock.error, "/proc/net/dev: "));
    mock.errors = 1;

    /* A broken pressure file is an error too; a missing one is not. */
    make_own_root(in, "", "", "some avg10=x total=0\n");
    assert_int_equal(inst_collect(in), VIGIL_EPARSE);
    assert_int_equal(mock.errors, 2);
    assert_non_null(strstr(mock.error, "/proc/pressure/cpu:1: "));
    make_own_root(in, "", "", NULL);
    assert_int_equal(inst_collect(in), 0);
    assert_int_equal(mock.errors, 2);
}

static void test_plugin_no_psi(void **state)
{
    struct inst *in = *state;

    make_own_root(in, "", "", NULL);
    assert_int_equal(inst_start(in, in->root, NULL), 0);
    /* Said once, at init. */
    assert_int_equal(mock.infos, 1);
    assert_non_null(strstr(mock.info, "pressure/cpu"));
    assert_int_equal(inst_collect(in), 0);
    assert_int_equal(inst_collect(in), 0);
    assert_int_equal(mock.errors, 0);
    assert_int_equal(mock.infos, 1);
    assert_int_equal(count_published("sys.pressure."), 0);
    assert_true(published("sys.mem.total_bytes"));
}

static void test_plugin_devices_come_and_go(void **state)
{
    static const char *const opts[] = {"disk_partitions", "yes", NULL};
    struct inst *in = *state;
    char disks[64 * 300];
    char nets[256];
    size_t i, len;
    int round;

    /* 300 disks: 256 are tracked and the limit is logged once. */
    for (round = 0; round < 3; round++) {
        len = 0;
        for (i = 0; i < 300; i++) {
            len += (size_t)snprintf(disks + len, sizeof(disks) - len,
                                    "8 %zu sd%zu %d 0 0 0 0 0 0 0 0 0 0\n", i,
                                    i, round);
        }
        snprintf(nets, sizeof(nets),
                 "Inter-|\n face |\n"
                 "  eth%d: %d 0 0 0 0 0 0 0 %d 0 0 0 0 0 0 0\n",
                 round == 1 ? 1 : 0, round, round);
        make_own_root(in, disks, nets, "some avg10=0.00 total=0\n");
        if (round == 0) {
            assert_int_equal(inst_start(in, in->root, opts), 0);
        }
        assert_int_equal(inst_collect(in), 0);
        if (round == 1) {
            assert_int_equal(count_published("sys.disk.reads_per_s"), 256);
            assert_int_equal(mock.warns, 1);
            /* eth0 vanished, eth1 appeared: nothing to compare yet. */
            assert_int_equal(count_published("sys.net."), 0);
        }
    }
    /* eth0 came back after a gap: primed again, not compared with the
     * reading from before it vanished. */
    assert_int_equal(count_published("sys.net."), 0);
    assert_int_equal(count_published("sys.disk.reads_per_s"), 256);

    /* Slots of vanished disks are reused: 300 new names, 256 tracked
     * again. The first reading of them still finds the table full (slots
     * are freed after a reading), the second primes, the third counts. */
    for (round = 0; round < 3; round++) {
        len = 0;
        for (i = 0; i < 300; i++) {
            len += (size_t)snprintf(disks + len, sizeof(disks) - len,
                                    "8 %zu vd%zu %d 0 0 0 0 0 0 0 0 0 0\n", i,
                                    i, round);
        }
        make_own_root(in, disks, nets, "some avg10=0.00 total=0\n");
        assert_int_equal(inst_collect(in), 0);
    }
    assert_int_equal(count_published("sys.disk.reads_per_s"), 256);
    assert_true(published("sys.disk.reads_per_s{device=\"vd0\"}"));

    /* A name listed twice in one reading is compared once, against the
     * previous reading, and published once (the mock checks). */
    make_own_root(in,
                  "8 0 vd0 5 0 0 0 0 0 0 0 0 0 0\n"
                  "8 0 vd0 6 0 0 0 0 0 0 0 0 0 0\n",
                  nets, "some avg10=0.00 total=0\n");
    assert_int_equal(inst_collect(in), 0);
    assert_true(value("sys.disk.reads_per_s{device=\"vd0\"}") > 0);
    assert_int_equal(count_published("sys.disk.reads_per_s"), 1);
    assert_int_equal(mock.warns, 1);
    assert_int_equal(mock.errors, 0);
}

static void test_plugin_series_refused(void **state)
{
    struct inst *in = *state;

    /* The core refuses new series: logged once, nothing published, and
     * the collection itself still succeeds. */
    mock.limit = 3;
    inst_point(in, FIX);
    assert_int_equal(inst_start(in, in->root, NULL), 0);
    assert_int_equal(inst_collect(in), 0);
    inst_point(in, NEXT);
    assert_int_equal(inst_collect(in), 0);
    assert_int_equal(mock.n, 3);
    assert_int_equal(mock.warns, 1);
    assert_int_equal(count_published("sys."), 3);
}

static void test_plugin_init_fails(void **state)
{
    struct inst *in = *state;
    char long_root[600];

    inst_point(in, FIX "/no-such-dir");
    assert_int_equal(inst_start(in, in->root, NULL), VIGIL_ENOENT);
    assert_null(in->state);
    free(in->config);
    in->config = NULL;

    memset(long_root, 'x', sizeof(long_root) - 1);
    long_root[0] = '/';
    long_root[sizeof(long_root) - 1] = '\0';
    assert_int_equal(inst_start(in, long_root, NULL), VIGIL_ECONFIG);
    assert_null(in->state);
    free(in->config);
    in->config = NULL;

    /* destroy accepts NULL. */
    vigil_plugin.destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reader_small_buffer),
        cmocka_unit_test(test_reader_text_and_errors),
        cmocka_unit_test(test_scan_numbers),
        cmocka_unit_test(test_delta_and_rate_wrap),
        cmocka_unit_test(test_stat_parse),
        cmocka_unit_test(test_stat_formats),
        cmocka_unit_test(test_cpu_pct),
        cmocka_unit_test(test_cpu_pct_skips),
        cmocka_unit_test(test_loadavg),
        cmocka_unit_test(test_meminfo),
        cmocka_unit_test(test_diskstats_parse),
        cmocka_unit_test(test_diskstats_formats),
        cmocka_unit_test(test_disk_filters),
        cmocka_unit_test(test_disk_rates),
        cmocka_unit_test(test_netdev_parse),
        cmocka_unit_test(test_net_rates),
        cmocka_unit_test(test_pressure),
        cmocka_unit_test(test_pressure_stall_rate),
        cmocka_unit_test_setup_teardown(test_plugin_collect, setup_plugin,
                                        teardown_plugin),
        cmocka_unit_test_setup_teardown(test_plugin_options, setup_plugin,
                                        teardown_plugin),
        cmocka_unit_test_setup_teardown(test_plugin_no_sysfs, setup_plugin,
                                        teardown_plugin),
        cmocka_unit_test_setup_teardown(test_plugin_missing_file, setup_plugin,
                                        teardown_plugin),
        cmocka_unit_test_setup_teardown(test_plugin_parse_error, setup_plugin,
                                        teardown_plugin),
        cmocka_unit_test_setup_teardown(test_plugin_no_psi, setup_plugin,
                                        teardown_plugin),
        cmocka_unit_test_setup_teardown(test_plugin_devices_come_and_go,
                                        setup_plugin, teardown_plugin),
        cmocka_unit_test_setup_teardown(test_plugin_series_refused,
                                        setup_plugin, teardown_plugin),
        cmocka_unit_test_setup_teardown(test_plugin_init_fails, setup_plugin,
                                        teardown_plugin),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
