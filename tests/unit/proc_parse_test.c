/*
 * proc_parse_test.c - the proc plugin: its /proc parsers and counter
 * arithmetic fed with fixture files and texts, then the whole plugin
 * driven through its descriptor with a synchronous mock host against a
 * copy of the fixture /proc (tests/fixtures/proc_pid; see the README
 * there for the figures), including the diagnostics on fixture data.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <uv.h>

#include <vigil/plugin.h>

#include "proc_pid.h"

#ifndef PROC_FIXTURES
#error "PROC_FIXTURES must name tests/fixtures/proc_pid"
#endif

#define FIX PROC_FIXTURES
#define DT_NS INT64_C(2000000000)

extern const struct vigil_plugin vigil_plugin;

#define assert_near(got, want)                                                 \
    do {                                                                       \
        double g_ = (got), w_ = (want);                                        \
        if (!(fabs(g_ - w_) <= 1e-9 * fmax(1.0, fabs(w_)))) {                  \
            fail_msg("%s = %.17g, expected %.17g", #got, g_, w_);              \
        }                                                                      \
    } while (0)

static char buf[65536];

static void read_fixture(const char *rel)
{
    char path[512];
    ssize_t n;

    snprintf(path, sizeof(path), "%s/%s", FIX, rel);
    n = proc_read_at(AT_FDCWD, path, buf, sizeof(buf), NULL);
    if (n < 0) {
        fail_msg("cannot read %s: %zd", path, n);
    }
}

/* ------------------------------------------------------------------------
 * Parsers.
 */

static void test_stat(void **state)
{
    struct proc_stat st;

    (void)state;
    read_fixture("10200/stat");
    assert_int_equal(proc_stat_parse(buf, &st), 0);
    assert_string_equal(st.comm, "my (weird) app)");
    assert_int_equal(st.state, 'R');
    assert_int_equal(st.ppid, 1);
    assert_int_equal(st.utime, 50);
    assert_int_equal(st.stime, 50);
    assert_int_equal(st.num_threads, 1);
    assert_int_equal(st.starttime, 6000);
    assert_int_equal(st.vsize, 10240000);
    assert_int_equal(st.rss_pages, 512);
    assert_false(st.flags & PROC_PF_KTHREAD);

    read_fixture("10400/stat");
    assert_int_equal(proc_stat_parse(buf, &st), 0);
    assert_true(st.flags & PROC_PF_KTHREAD);
    assert_int_equal(st.ppid, 2);

    /* A real line from Linux 6.x, with a negative field (tpgid -1). */
    assert_int_equal(
        proc_stat_parse("23604 (head) R 23561 23561 15411 0 -1 4194304 103 0 "
                        "0 0 7 3 0 0 20 0 1 0 360072 2998272 395 "
                        "18446744073709551615 94145675522048 0 0 0 0 0 0 0",
                        &st),
        0);
    assert_int_equal(st.utime, 7);
    assert_int_equal(st.stime, 3);
    assert_int_equal(st.starttime, 360072);
    assert_int_equal(st.rss_pages, 395);

    assert_int_equal(proc_stat_parse("", &st), -1);
    assert_int_equal(proc_stat_parse("12 (x", &st), -1);
    assert_int_equal(proc_stat_parse("12 (x) S 1 2", &st), -1);
    assert_int_equal(proc_stat_parse("12 (x) S 1 2 3 4 5 6 7 8 9 10 11 x", &st),
                     -1);
    /* A comm as long as the kernel allows for workers, cut to fit. */
    {
        char line[256];

        snprintf(line, sizeof(line),
                 "1 (%0100d) S 1 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 6 7", 0);
        assert_int_equal(proc_stat_parse(line, &st), 0);
        assert_int_equal(strlen(st.comm), PROC_COMM_MAX - 1);
        assert_int_equal(st.rss_pages, 7);
    }
}

static void test_status(void **state)
{
    struct proc_status st;

    (void)state;
    read_fixture("10100/status");
    assert_int_equal(proc_status_parse(buf, &st), 0);
    assert_int_equal(st.uid, 1000);
    assert_int_equal(st.euid, 1000);
    assert_int_equal(st.rss, 80000 * 1024ull);
    assert_int_equal(st.vms, 488281 * 1024ull);
    assert_int_equal(st.swap, 1024 * 1024ull);
    assert_int_equal(st.threads, 3);
    assert_int_equal(st.vcsw, 10);
    assert_int_equal(st.ivcsw, 5);
    assert_int_equal(st.have, PROC_ST_UID | PROC_ST_RSS | PROC_ST_VMS |
                                  PROC_ST_SWAP | PROC_ST_THREADS |
                                  PROC_ST_VCSW | PROC_ST_IVCSW);

    /* A zombie has no Vm* lines. */
    read_fixture("10300/status");
    assert_int_equal(proc_status_parse(buf, &st), 0);
    assert_false(st.have & PROC_ST_RSS);
    assert_int_equal(st.rss, 0);

    strcpy(buf, "nothing: here\n");
    assert_int_equal(proc_status_parse(buf, &st), -1);
    strcpy(buf, "Uid:\t5\t7\t5\t5\nVmRSS:\t12 kB");
    assert_int_equal(proc_status_parse(buf, &st), 0);
    assert_int_equal(st.uid, 5);
    assert_int_equal(st.euid, 7);
    assert_int_equal(st.rss, 12288);
}

static void test_io(void **state)
{
    struct proc_io io;

    (void)state;
    read_fixture("10100/io");
    assert_int_equal(proc_io_parse(buf, &io), 0);
    assert_int_equal(io.rchar, 1000000);
    assert_int_equal(io.wchar, 500000);
    assert_int_equal(io.read_bytes, 40960);
    assert_int_equal(io.write_bytes, 8192);
    strcpy(buf, "rchar: 1\nwchar: 2\nread_bytes: 3\n");
    assert_int_equal(proc_io_parse(buf, &io), -1);
}

static void test_limits(void **state)
{
    struct proc_limit lim;
    uint64_t soft, hard;
    char *p;
    int n = 0, saw_nofile = 0, saw_nice = 0;

    (void)state;
    read_fixture("10100/limits");
    assert_int_equal(proc_limits_nofile(buf, &soft, &hard), 0);
    assert_int_equal(soft, 1024);
    assert_int_equal(hard, 4096);
    p = buf;
    while (proc_limits_next(&p, &lim) == 1) {
        n++;
        if (strcmp(lim.name, "Max open files") == 0) {
            saw_nofile = 1;
            assert_int_equal(lim.soft, 1024);
            assert_string_equal(lim.units, "files");
        }
        if (strcmp(lim.name, "Max cpu time") == 0) {
            assert_true(lim.soft == PROC_UNLIMITED);
            assert_string_equal(lim.units, "seconds");
        }
        if (strcmp(lim.name, "Max nice priority") == 0) {
            saw_nice = 1;
            assert_string_equal(lim.units, "");
        }
    }
    assert_int_equal(n, 5);
    assert_true(saw_nofile && saw_nice);

    read_fixture("10200/limits");
    assert_int_equal(proc_limits_nofile(buf, &soft, &hard), 0);
    assert_true(soft == PROC_UNLIMITED && hard == PROC_UNLIMITED);
    assert_int_equal(
        proc_limits_nofile("Max open filez 1 2 files\n", &soft, &hard), -1);
    assert_int_equal(
        proc_limits_nofile("xMax open files 1 2 files\n", &soft, &hard), -1);
}

static void test_cmdline_pidfile(void **state)
{
    char cmd[64];
    int pid = 0;
    ssize_t n;

    (void)state;
    n = proc_read_at(AT_FDCWD, FIX "/10100/cmdline", cmd, sizeof(cmd) - 1,
                     NULL);
    assert_true(n > 0);
    assert_int_equal(proc_cmdline_text(cmd, (size_t)n),
                     strlen("python3 -m genesis.app --port 8080"));
    assert_string_equal(cmd, "python3 -m genesis.app --port 8080");
    memcpy(cmd, "a\0\0\0", 4);
    assert_int_equal(proc_cmdline_text(cmd, 4), 1);
    assert_string_equal(cmd, "a");
    assert_int_equal(proc_cmdline_text(cmd, 0), 0);

    assert_int_equal(proc_pidfile_parse("123\n", &pid), 0);
    assert_int_equal(pid, 123);
    assert_int_equal(proc_pidfile_parse("  42 \r\n\n", &pid), 0);
    assert_int_equal(pid, 42);
    assert_int_equal(proc_pidfile_parse("", &pid), -1);
    assert_int_equal(proc_pidfile_parse("0\n", &pid), -1);
    assert_int_equal(proc_pidfile_parse("12 13\n", &pid), -1);
    assert_int_equal(proc_pidfile_parse("12abc", &pid), -1);
    assert_int_equal(proc_pidfile_parse("-5", &pid), -1);
    assert_int_equal(proc_pidfile_parse("99999999999999999999999", &pid), -1);
}

static void test_fd_links(void **state)
{
    uint64_t ino;

    (void)state;
    assert_int_equal(proc_fd_classify("/var/log/x", &ino), PROC_FD_FILE);
    assert_int_equal(proc_fd_classify("/dev/pts/0", &ino), PROC_FD_FILE);
    assert_int_equal(proc_fd_classify("socket:[12345]", &ino), PROC_FD_SOCKET);
    assert_int_equal(ino, 12345);
    assert_int_equal(proc_fd_classify("pipe:[7]", &ino), PROC_FD_PIPE);
    assert_int_equal(proc_fd_classify("anon_inode:[eventfd]", &ino),
                     PROC_FD_ANON);
    assert_int_equal(proc_fd_classify("anon_inode:bpf-map", &ino),
                     PROC_FD_ANON);
    assert_int_equal(proc_fd_classify("net:[4026531840]", &ino), PROC_FD_OTHER);
    assert_int_equal(proc_fd_classify("socket:[12x]", &ino), PROC_FD_OTHER);
    assert_int_equal(proc_link_inode("net:[4026531840]", "net", &ino), 0);
    assert_int_equal(ino, 4026531840ull);
    assert_int_equal(proc_link_inode("net:[4026531840", "net", &ino), -1);
    assert_int_equal(proc_link_inode("mnt:[1]", "net", &ino), -1);
}

static void test_tcp(void **state)
{
    struct proc_tcp t;
    char ep[64];

    (void)state;
    assert_int_equal(proc_tcp_parse("  sl  local_address rem_address   st "
                                    "tx_queue rx_queue tr",
                                    0, &t),
                     0);
    assert_int_equal(
        proc_tcp_parse("   1: 0100007F:1F90 0100007F:9C40 01 00000010:0000000C "
                       "00:00000000 00000000  1000        0 5002 1 "
                       "0000000000000000 100 0 0 10 0",
                       0, &t),
        1);
    assert_int_equal(t.state, PROC_TCP_ESTABLISHED);
    assert_int_equal(t.lport, 8080);
    assert_int_equal(t.rport, 40000);
    assert_int_equal(t.tx_queue, 16);
    assert_int_equal(t.rx_queue, 12);
    assert_int_equal(t.uid, 1000);
    assert_int_equal(t.inode, 5002);
    proc_tcp_endpoint(t.local, 0, t.lport, ep, sizeof(ep));
    assert_string_equal(ep, "127.0.0.1:8080");

    assert_int_equal(
        proc_tcp_parse("   0: 00000000000000000000000001000000:1F91 "
                       "00000000000000000000000001000000:C350 0A "
                       "00000000:00000000 00:00000000 00000000     0        0 "
                       "6001 1 0000000000000000 100 0 0 10 0",
                       1, &t),
        1);
    assert_int_equal(t.state, PROC_TCP_LISTEN);
    assert_int_equal(t.inode, 6001);
    proc_tcp_endpoint(t.local, 1, t.lport, ep, sizeof(ep));
    assert_string_equal(ep, "[::1]:8081");

    /* ::ffff:10.1.2.3 as the kernel prints it (words in host order). */
    assert_int_equal(
        proc_tcp_parse("   0: 0000000000000000FFFF00000302010A:0050 "
                       "00000000000000000000000000000000:0000 0A "
                       "00000000:00000000 00:00000000 00000000     0        0 "
                       "9 1 0000000000000000 100 0 0 10 0",
                       1, &t),
        1);
    proc_tcp_endpoint(t.local, 1, t.lport, ep, sizeof(ep));
    assert_string_equal(ep, "[::ffff:10.1.2.3]:80");
    proc_tcp_endpoint(t.remote, 1, t.rport, ep, sizeof(ep));
    assert_string_equal(ep, "[::]:0");

    {
        /* 2001:db8::1 and fe80::1:0:0:1 (the first run of zeros wins on
         * a tie? no: the longest; here 2 vs 2, the first). */
        uint8_t a[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0,
                         0,    0,    0,    0,    0, 0, 0, 1};
        uint8_t b[16] = {0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1};

        proc_tcp_endpoint(a, 1, 443, ep, sizeof(ep));
        assert_string_equal(ep, "[2001:db8::1]:443");
        proc_tcp_endpoint(b, 1, 1, ep, sizeof(ep));
        assert_string_equal(ep, "[fe80::1:0:0:1]:1");
    }

    assert_int_equal(proc_tcp_parse("   0: 0100007F:1F90", 0, &t), -1);
    assert_int_equal(proc_tcp_parse("   0: 0100007G:1F90 0100007F:9C40 01 "
                                    "00000000:00000000 00:00000000 00000000 "
                                    "0 0 1",
                                    0, &t),
                     -1);
    assert_string_equal(proc_tcp_state_name(PROC_TCP_TIME_WAIT), "time_wait");
    assert_string_equal(proc_tcp_state_name(PROC_TCP_CLOSE_WAIT), "close_wait");
    assert_null(proc_tcp_state_name(0));
    assert_null(proc_tcp_state_name(PROC_TCP_NSTATES));
}

static void test_rate(void **state)
{
    double r;

    (void)state;
    assert_int_equal(proc_rate(100, 300, DT_NS, 1.0, &r), 1);
    assert_near(r, 100.0);
    /* Ticks to % of one core at 100 Hz. */
    assert_int_equal(proc_rate(1000, 1100, DT_NS, 1.0, &r), 1);
    assert_near(r * 1.0, 50.0);
    assert_int_equal(proc_rate(300, 100, DT_NS, 1.0, &r), 0);
    assert_int_equal(proc_rate(1, 2, 0, 1.0, &r), 0);
    assert_int_equal(proc_rate(UINT64_MAX - 1, UINT64_MAX, 1000000000, 1.0, &r),
                     1);
    assert_near(r, 1.0);
}

static void test_dir_and_lines(void **state)
{
    char dbuf[2048], lbuf[64];
    struct proc_dir d;
    struct proc_lines l;
    const char *ent;
    char *line;
    int fd, n = 0, trunc = 0;
    char tmp[] = "/tmp/proc_lines_XXXXXX";
    FILE *f;

    (void)state;
    fd = proc_dir_open(AT_FDCWD, FIX "/10100/fd");
    assert_true(fd >= 0);
    proc_dir_init(&d, fd, dbuf, sizeof(dbuf));
    while ((ent = proc_dir_next(&d, NULL)) != NULL) {
        assert_true(strcmp(ent, ".") != 0 && strcmp(ent, "..") != 0);
        n++;
    }
    assert_int_equal(d.err, 0);
    assert_int_equal(n, 9);
    close(fd);
    assert_int_equal(proc_dir_open(AT_FDCWD, FIX "/no/such"), -ENOENT);

    /* A line longer than the reader's buffer is skipped, not cut. */
    fd = mkstemp(tmp);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    fprintf(f, "first\n%0200d\nlast", 7);
    fclose(f);
    assert_int_equal(proc_lines_open(&l, AT_FDCWD, tmp, lbuf, sizeof(lbuf)), 0);
    line = proc_lines_next(&l);
    assert_string_equal(line, "first");
    line = proc_lines_next(&l);
    assert_string_equal(line, "last");
    assert_null(proc_lines_next(&l));
    assert_int_equal(l.err, 0);
    proc_lines_close(&l);

    /* A whole-file read that does not fit says so. */
    assert_int_equal(proc_read_at(AT_FDCWD, tmp, lbuf, 8, &trunc), 7);
    assert_int_equal(trunc, 1);
    assert_string_equal(lbuf, "first\n0");
    unlink(tmp);

    assert_int_equal(proc_name_pid("123", &n), 1);
    assert_int_equal(n, 123);
    assert_int_equal(proc_name_pid("0", &n), 0);
    assert_int_equal(proc_name_pid("12a", &n), 0);
    assert_int_equal(proc_name_pid("self", &n), 0);
}

/* ------------------------------------------------------------------------
 * The plugin through its descriptor, with a synchronous mock host.
 */

#define MOCK_SERIES_MAX 1024
#define MOCK_INSTS 4

static struct mock {
    struct {
        char key[256];
        double last;
        unsigned round;
        unsigned count;
    } s[MOCK_SERIES_MAX];
    size_t n;
    unsigned round;
    unsigned errors, warns, infos, logerrs;
    char error[2048];
    char warn[1024];
    char info[1024];
    int done_status, done_count;
    const struct vigil_diag *diags[8];
    int ndiags, register_calls;
    int replies, reply_status;
    char *reply_json;
    uv_loop_t loop;
} mock;

static int mock_tags[MOCK_INSTS];
static const char *mock_names[MOCK_INSTS] = {"web", "db", "c", "d"};
#define MOCK_INST(i) ((vigil_instance *)&mock_tags[i])

static int64_t fake_now;
static int64_t fake_clock(void)
{
    return fake_now;
}

static const char *mock_instance_name(vigil_instance *inst);

static int label_cmp(const void *a, const void *b)
{
    const struct vigil_label *x = a, *y = b;

    return strcmp(x->key, y->key);
}

static void mock_key(char *out, size_t size, const char *name,
                     const struct vigil_label *labels, size_t n)
{
    struct vigil_label sorted[VIGIL_LABELS_MAX];
    size_t i, len;

    assert_true(n <= VIGIL_LABELS_MAX);
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
    struct vigil_label all[VIGIL_LABELS_MAX + 1];
    char key[256];
    size_t i;

    assert_true(strncmp(name, "proc.", 5) == 0);
    assert_true(nlabels < VIGIL_LABELS_MAX);
    for (i = 0; i < nlabels; i++) {
        const char *v = labels[i].value;

        assert_non_null(v);
        for (; *v; v++) {
            assert_true((unsigned char)*v >= 0x20);
        }
    }
    /* As the core does for named instances. */
    if (nlabels > 0) {
        memcpy(all, labels, nlabels * sizeof(*labels));
    }
    all[nlabels].key = "instance";
    all[nlabels].value = mock_instance_name(inst);
    mock_key(key, sizeof(key), name, all, nlabels + 1);
    for (i = 0; i < mock.n; i++) {
        if (strcmp(mock.s[i].key, key) == 0) {
            *out = (vigil_series_id)i;
            return 0;
        }
    }
    assert_true(mock.n < MOCK_SERIES_MAX);
    snprintf(mock.s[mock.n].key, sizeof(mock.s[mock.n].key), "%s", key);
    *out = (vigil_series_id)mock.n++;
    return 0;
}

static void mock_publish(vigil_instance *inst, vigil_series_id id,
                         int64_t ts_ns, double value)
{
    (void)inst;
    assert_true(id < mock.n);
    assert_true(ts_ns == 0);
    assert_true(isfinite(value));
    assert_true(mock.s[id].round != mock.round || mock.s[id].count == 0);
    mock.s[id].last = value;
    mock.s[id].round = mock.round;
    mock.s[id].count++;
}

static void mock_log(vigil_instance *inst, int level, const char *fmt, ...)
    VIGIL_PRINTF(3, 4);
static void mock_log(vigil_instance *inst, int level, const char *fmt, ...)
{
    char *dst = NULL;
    size_t size = 0;
    va_list ap;

    (void)inst;
    if (level == VIGIL_LOG_ERROR) {
        mock.logerrs++;
        dst = mock.error;
        size = sizeof(mock.error);
    } else if (level == VIGIL_LOG_WARN) {
        mock.warns++;
        dst = mock.warn;
        size = sizeof(mock.warn);
    } else if (level == VIGIL_LOG_INFO) {
        mock.infos++;
        dst = mock.info;
        size = sizeof(mock.info);
    }
    if (dst != NULL) {
        va_start(ap, fmt);
        vsnprintf(dst, size, fmt, ap);
        va_end(ap);
    }
}

static void mock_error(vigil_instance *inst, const char *fmt, ...)
    VIGIL_PRINTF(2, 3);
static void mock_error(vigil_instance *inst, const char *fmt, ...)
{
    va_list ap;

    (void)inst;
    mock.errors++;
    va_start(ap, fmt);
    vsnprintf(mock.error, sizeof(mock.error), fmt, ap);
    va_end(ap);
}

static struct uv_loop_s *mock_loop(vigil_instance *inst)
{
    (void)inst;
    return &mock.loop;
}

static int64_t mock_now(vigil_instance *inst)
{
    (void)inst;
    return 1234567890;
}

/* Synchronous: the work and its completion run before work() returns. */
static int mock_work(vigil_instance *inst, vigil_work_cb work_cb,
                     vigil_after_work_cb after_cb, void *arg)
{
    (void)inst;
    work_cb(arg);
    after_cb(arg, 0);
    return 0;
}

static void mock_collect_done(vigil_instance *inst, int status)
{
    (void)inst;
    mock.done_status = status;
    mock.done_count++;
}

static int mock_register_diag(vigil_instance *inst, const struct vigil_diag *d)
{
    int i;

    (void)inst;
    mock.register_calls++;
    for (i = 0; i < mock.ndiags; i++) {
        if (strcmp(mock.diags[i]->name, d->name) == 0) {
            return VIGIL_EEXIST;
        }
    }
    assert_true(mock.ndiags < 8);
    mock.diags[mock.ndiags++] = d;
    return 0;
}

static int mock_req_tag;

static void mock_reply(vigil_request *req, int status, const char *json)
{
    assert_ptr_equal(req, (vigil_request *)&mock_req_tag);
    mock.replies++;
    mock.reply_status = status;
    free(mock.reply_json);
    mock.reply_json = json != NULL ? strdup(json) : NULL;
}

static const char *mock_instance_name(vigil_instance *inst)
{
    int i;

    for (i = 0; i < MOCK_INSTS; i++) {
        if (inst == MOCK_INST(i)) {
            return mock_names[i];
        }
    }
    return "?";
}

static const struct vigil_host mock_host = {
    .abi_version = VIGIL_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct vigil_host),
    .series = mock_series,
    .publish = mock_publish,
    .log = mock_log,
    .error = mock_error,
    .loop = mock_loop,
    .now_ns = mock_now,
    .work = mock_work,
    .collect_done = mock_collect_done,
    .register_diag = mock_register_diag,
    .reply = mock_reply,
    .instance_name = mock_instance_name,
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

static int published(const char *key)
{
    int i = find_series(key);

    return i >= 0 && mock.s[i].count > 0 && mock.s[i].round == mock.round;
}

static double value(const char *key)
{
    if (!published(key)) {
        size_t i;

        for (i = 0; i < mock.n; i++) {
            if (mock.s[i].round == mock.round) {
                print_message("  published: %s = %g\n", mock.s[i].key,
                              mock.s[i].last);
            }
        }
        fail_msg("%s was not published", key);
    }
    return mock.s[find_series(key)].last;
}

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

/* A scratch copy of the fixture /proc and cgroup tree. */
static char tmpdir[64];
static char procdir[128];
static char pidfile[128];

static void run(const char *fmt, ...) VIGIL_PRINTF(1, 2);
static void run(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    if (system(cmd) != 0) {
        fail_msg("failed: %s", cmd);
    }
}

static void scratch_setup(void)
{
    FILE *f;
    char path[256];

    snprintf(tmpdir, sizeof(tmpdir), "/tmp/proc_fix_XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    snprintf(procdir, sizeof(procdir), "%s/proc", tmpdir);
    snprintf(pidfile, sizeof(pidfile), "%s/app.pid", tmpdir);
    run("mkdir -p %s && cd %s && cp -a 10100 10200 10300 10400 stat meminfo "
        "self %s/ && cp -a cgroup %s/",
        procdir, FIX, procdir, tmpdir);
    snprintf(path, sizeof(path), "%s/self/mountinfo", procdir);
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
            "30 27 0:26 / %s/cgroup rw,nosuid - cgroup2 cgroup2 rw\n",
            tmpdir);
    fclose(f);
    f = fopen(pidfile, "w");
    assert_non_null(f);
    fprintf(f, "10200\n");
    fclose(f);
}

static void scratch_next(void)
{
    run("cp -a %s/next/. %s/", FIX, procdir);
}

static void scratch_teardown(void)
{
    run("rm -rf %s", tmpdir);
}

/* A plugin instance with its config built from the options table, as the
 * core does: defaults, then key=value overrides; a list key may repeat. */
#define INST_LIST_MAX 8
struct inst {
    _Alignas(16) char config[512];
    void *state;
    const char *lists[16][INST_LIST_MAX];
    vigil_instance *handle;
};

static void apply_option(struct inst *in, int idx, const struct vigil_option *o,
                         const char *value)
{
    char *field = in->config + o->offset;

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
    case VIGIL_OPT_INT: {
        int64_t v = strtoll(value, NULL, 10);

        memcpy(field, &v, sizeof(v));
        break;
    }
    case VIGIL_OPT_LIST: {
        struct vigil_list l;

        memcpy(&l, field, sizeof(l));
        assert_true(l.n < INST_LIST_MAX);
        in->lists[idx][l.n] = value;
        l.n++;
        l.v = in->lists[idx];
        memcpy(field, &l, sizeof(l));
        break;
    }
    default:
        fail_msg("option %s: type %d not handled by the test", o->key, o->type);
    }
}

/* kv: "key", "value", ..., NULL. Returns init's code. */
static int inst_init(struct inst *in, int which, ...)
{
    const struct vigil_option *o;
    const char *k;
    va_list ap;
    int i;

    memset(in, 0, sizeof(*in));
    assert_true(vigil_plugin.config_size <= sizeof(in->config));
    for (o = vigil_plugin.options, i = 0; o->key != NULL; o++, i++) {
        if (o->def != NULL) {
            apply_option(in, i, o, o->def);
        }
    }
    va_start(ap, which);
    while ((k = va_arg(ap, const char *)) != NULL) {
        const char *v = va_arg(ap, const char *);

        for (o = vigil_plugin.options, i = 0; o->key != NULL; o++, i++) {
            if (strcmp(o->key, k) == 0) {
                break;
            }
        }
        assert_non_null(o->key);
        apply_option(in, i, o, v);
    }
    va_end(ap);
    in->handle = MOCK_INST(which);
    return vigil_plugin.init(&mock_host, in->handle, in->config, &in->state);
}

static void inst_destroy(struct inst *in)
{
    if (in->state != NULL) {
        vigil_plugin.stop(in->state);
        vigil_plugin.destroy(in->state);
        in->state = NULL;
    }
}

static void collect(struct inst *in, int64_t now)
{
    int rc;

    mock.round++;
    fake_now = now;
    mock.done_count = 0;
    rc = vigil_plugin.collect(in->state);
    assert_int_equal(rc, VIGIL_PENDING);
    assert_int_equal(mock.done_count, 1);
}

static int mock_setup(void **state)
{
    (void)state;
    free(mock.reply_json);
    memset(&mock, 0, sizeof(mock));
    assert_int_equal(uv_loop_init(&mock.loop), 0);
    proc_clock = fake_clock;
    scratch_setup();
    return 0;
}

static int mock_teardown(void **state)
{
    (void)state;
    scratch_teardown();
    free(mock.reply_json);
    mock.reply_json = NULL;
    assert_int_equal(uv_loop_close(&mock.loop), 0);
    proc_clock = proc_mono_ns;
    return 0;
}

#define G(name) "proc." name "{instance=\"web\"}"

static void test_init_errors(void **state)
{
    struct inst in;

    (void)state;
    assert_int_equal(inst_init(&in, 0, "proc_root", procdir, NULL),
                     VIGIL_ECONFIG);
    assert_non_null(strstr(mock.error, "name, cmdline, pidfile or cgroup"));
    assert_int_equal(
        inst_init(&in, 0, "proc_root", procdir, "cmdline", "a(b", NULL),
        VIGIL_ECONFIG);
    assert_non_null(strstr(mock.error, "cmdline 'a(b'"));
    assert_int_equal(
        inst_init(&in, 0, "proc_root", procdir, "pidfile", "x.pid", NULL),
        VIGIL_ECONFIG);
    assert_non_null(strstr(mock.error, "absolute"));
    assert_int_equal(inst_init(&in, 0, "proc_root", procdir, "name", "x",
                               "user", "no-such-user-vigil", NULL),
                     VIGIL_ECONFIG);
    assert_non_null(strstr(mock.error, "no-such-user-vigil"));
    assert_int_equal(
        inst_init(&in, 0, "proc_root", procdir, "cgroup", "app", NULL),
        VIGIL_ECONFIG);
    assert_int_equal(inst_init(&in, 0, "proc_root", procdir, "name", "x",
                               "max_tracked", "0", NULL),
                     VIGIL_ECONFIG);
    assert_int_equal(
        inst_init(&in, 0, "proc_root", "/no/such/proc", "name", "x", NULL),
        VIGIL_EUNAVAIL);
    assert_int_equal(mock.register_calls, 0);
    /* A name longer than a comm can be: started, with a warning. */
    mock.warns = 0;
    assert_int_equal(inst_init(&in, 0, "proc_root", procdir, "name",
                               "genesis-trading-engine", NULL),
                     0);
    assert_int_equal(mock.warns, 1);
    assert_non_null(strstr(mock.warn, "use cmdline"));
    inst_destroy(&in);
}

/* Name, cmdline, pidfile: the group is 10100 and 10200. */
static void test_collect(void **state)
{
    struct inst in;
    const char *p1 = "{instance=\"web\",name=\"python3\",pid=\"10100\"}";
    char key[256];

    (void)state;
    assert_int_equal(inst_init(&in, 0, "proc_root", procdir, "name", "python3",
                               "cmdline", "genesis\\.app", "cmdline",
                               "never-matches", "pidfile", pidfile, NULL),
                     0);
    assert_int_equal(mock.ndiags, 2);

    /* First reading: gauges only. */
    collect(&in, 0);
    assert_int_equal(mock.done_status, 0);
    assert_near(value(G("group.processes")), 2);
    assert_near(value(G("group.restarts_total")), 0);
    assert_near(value(G("threads.count")), 4);
    assert_near(value(G("mem.rss_bytes")), (80000 + 2048) * 1024.0);
    assert_near(value(G("mem.vms_bytes")), (488281 + 10000) * 1024.0);
    assert_near(value(G("mem.swap_bytes")), 1024 * 1024.0);
    assert_near(value(G("fd.open")), 12);
    assert_near(value(G("fd.limit")), 1024);
    assert_near(value(G("fd.usage_pct")), 100.0 * 9 / 1024);
    assert_false(published(G("cpu.total_pct")));
    assert_false(published(G("ctxsw.voluntary_per_s")));
    assert_false(published(G("io.read_bytes_per_s")));
    assert_near(value("proc.tcp.connections{instance=\"web\",state="
                      "\"listen\"}"),
                1);
    assert_near(value("proc.tcp.connections{instance=\"web\",state="
                      "\"established\"}"),
                2);
    assert_near(value("proc.tcp.connections{instance=\"web\",state="
                      "\"time_wait\"}"),
                1);
    assert_false(published("proc.tcp.connections{instance=\"web\",state="
                           "\"close_wait\"}"));

    snprintf(key, sizeof(key), "proc.threads.count%s", p1);
    assert_near(value(key), 3);
    snprintf(key, sizeof(key), "proc.fd.open%s", p1);
    assert_near(value(key), 9);
    snprintf(key, sizeof(key),
             "proc.tcp.connections{instance=\"web\","
             "name=\"python3\",pid=\"10100\",state="
             "\"established\"}");
    assert_near(value(key), 2);
    /* The weird comm is a label as it is. */
    assert_near(value("proc.threads.count{instance=\"web\",name=\"my (weird) "
                      "app)\",pid=\"10200\"}"),
                1);
    /* An unlimited fd limit: no limit, no usage for that process. */
    assert_false(published("proc.fd.limit{instance=\"web\",name=\"my (weird) "
                           "app)\",pid=\"10200\"}"));
    /* Neither the zombie nor the kernel thread. */
    assert_int_equal(count_published("proc.threads.count{instance=\"web\","
                                     "name=\"python3\",pid=\"10300\""),
                     0);

    /* Second reading 2 s later: rates. */
    scratch_next();
    collect(&in, DT_NS);
    assert_int_equal(mock.done_status, 0);
    snprintf(key, sizeof(key), "proc.cpu.user_pct%s", p1);
    assert_near(value(key), 50);
    snprintf(key, sizeof(key), "proc.cpu.system_pct%s", p1);
    assert_near(value(key), 10);
    snprintf(key, sizeof(key), "proc.cpu.total_pct%s", p1);
    assert_near(value(key), 60);
    snprintf(key, sizeof(key), "proc.ctxsw.voluntary_per_s%s", p1);
    assert_near(value(key), 100);
    snprintf(key, sizeof(key), "proc.ctxsw.involuntary_per_s%s", p1);
    assert_near(value(key), 2);
    snprintf(key, sizeof(key), "proc.io.read_bytes_per_s%s", p1);
    assert_near(value(key), 204800);
    snprintf(key, sizeof(key), "proc.io.write_bytes_per_s%s", p1);
    assert_near(value(key), 40960);
    snprintf(key, sizeof(key), "proc.io.logical_read_bytes_per_s%s", p1);
    assert_near(value(key), 1000000);
    snprintf(key, sizeof(key), "proc.io.logical_write_bytes_per_s%s", p1);
    assert_near(value(key), 500000);
    assert_near(value(G("cpu.user_pct")), 55);
    assert_near(value(G("cpu.system_pct")), 20);
    assert_near(value(G("cpu.total_pct")), 75);
    assert_near(value(G("ctxsw.voluntary_per_s")), 105);
    assert_near(value(G("ctxsw.involuntary_per_s")), 2);
    assert_near(value(G("io.read_bytes_per_s")), 204800);
    assert_near(value(G("group.restarts_total")), 0);

    /* 10200 exits, a new python3 (10500) starts: one restart; the pidfile
     * now names a dead process, which is no error while others match. */
    run("rm -rf %s/10200 && cp -a %s/10100 %s/10500", procdir, procdir,
        procdir);
    collect(&in, 2 * DT_NS);
    assert_int_equal(mock.done_status, 0);
    assert_near(value(G("group.processes")), 2);
    assert_near(value(G("group.restarts_total")), 1);
    assert_true(published("proc.threads.count{instance=\"web\",name="
                          "\"python3\",pid=\"10500\"}"));
    assert_false(published("proc.threads.count{instance=\"web\",name=\"my "
                           "(weird) app)\",pid=\"10200\"}"));
    /* The new process primes: no rate yet. */
    assert_false(published("proc.cpu.total_pct{instance=\"web\",name="
                           "\"python3\",pid=\"10500\"}"));
    /* pid 10100 reused by another process (new start time): a restart. */
    run("sed -i 's/ 5000 500000000 / 5001 500000000 /' %s/10100/stat", procdir);
    collect(&in, 3 * DT_NS);
    assert_near(value(G("group.restarts_total")), 2);
    assert_false(published("proc.cpu.total_pct{instance=\"web\",name="
                           "\"python3\",pid=\"10100\"}"));

    /* Nothing left: proc.up 0 through the status, and the error names
     * every selector. */
    run("rm -rf %s/10100 %s/10500", procdir, procdir);
    mock.errors = 0;
    collect(&in, 4 * DT_NS);
    assert_int_equal(mock.done_status, VIGIL_ENOENT);
    assert_int_equal(mock.errors, 1);
    assert_non_null(strstr(mock.error, "name 'python3' matched nothing"));
    assert_non_null(strstr(mock.error, "cmdline 'genesis\\.app' matched "
                                       "nothing"));
    assert_non_null(strstr(mock.error, "cmdline 'never-matches' matched "
                                       "nothing"));
    assert_non_null(strstr(mock.error, "process 10200 is not running"));
    assert_near(value(G("group.processes")), 0);
    assert_near(value(G("group.restarts_total")), 2);
    assert_near(value(G("cpu.total_pct")), 0);
    assert_false(published(G("fd.limit")));
    inst_destroy(&in);
}

static void test_cgroup(void **state)
{
    struct inst in;

    (void)state;
    /* A v2 path below the cgroup2 mount of (the fixture's) mountinfo,
     * walked into its sub-cgroup. */
    assert_int_equal(
        inst_init(&in, 0, "proc_root", procdir, "cgroup", "/app", NULL), 0);
    collect(&in, 0);
    assert_int_equal(mock.done_status, 0);
    assert_near(value(G("group.processes")), 2);
    inst_destroy(&in);

    assert_int_equal(
        inst_init(&in, 0, "proc_root", procdir, "cgroup", "/empty", NULL), 0);
    collect(&in, 0);
    assert_int_equal(mock.done_status, VIGIL_ENOENT);
    assert_non_null(strstr(mock.error, "/cgroup/empty: no process in it"));
    inst_destroy(&in);

    assert_int_equal(
        inst_init(&in, 0, "proc_root", procdir, "cgroup", "/gone", NULL), 0);
    collect(&in, 0);
    assert_int_equal(mock.done_status, VIGIL_ENOENT);
    assert_non_null(strstr(mock.error, "/cgroup/gone: no such cgroup"));
    inst_destroy(&in);
}

static void test_limits_and_options(void **state)
{
    struct inst in;

    (void)state;
    /* per_process = no: group series only. */
    assert_int_equal(inst_init(&in, 0, "proc_root", procdir, "name", "python3",
                               "pidfile", pidfile, "per_process", "no", NULL),
                     0);
    collect(&in, 0);
    assert_int_equal(count_published("proc.threads.count{instance=\"web\","
                                     "name="),
                     0);
    assert_near(value(G("threads.count")), 4);
    inst_destroy(&in);

    /* max_processes = 1: one process has its series, both are summed. */
    mock.infos = 0;
    assert_int_equal(inst_init(&in, 0, "proc_root", procdir, "name", "python3",
                               "pidfile", pidfile, "max_processes", "1", NULL),
                     0);
    collect(&in, 0);
    assert_int_equal(count_published("proc.threads.count{instance=\"web\","
                                     "name="),
                     1);
    assert_near(value(G("threads.count")), 4);
    assert_non_null(strstr(mock.info, "max_processes"));
    /* When the one with series exits, the other gets them. */
    assert_true(published("proc.threads.count{instance=\"web\",name="
                          "\"python3\",pid=\"10100\"}"));
    run("rm -rf %s/10100", procdir);
    collect(&in, DT_NS);
    assert_true(published("proc.threads.count{instance=\"web\",name=\"my "
                          "(weird) app)\",pid=\"10200\"}"));
    /* ...with rates at once: the process itself is not new. */
    assert_true(published("proc.cpu.total_pct{instance=\"web\",name=\"my "
                          "(weird) app)\",pid=\"10200\"}"));
    run("cp -a %s/10100 %s/", FIX, procdir);
    inst_destroy(&in);

    /* max_tracked = 1: the other process is counted, not measured. */
    mock.warns = 0;
    assert_int_equal(inst_init(&in, 0, "proc_root", procdir, "name", "python3",
                               "pidfile", pidfile, "max_tracked", "1", NULL),
                     0);
    collect(&in, 0);
    assert_near(value(G("group.processes")), 2);
    assert_near(value(G("threads.count")), 3);
    assert_int_equal(mock.warns, 1);
    assert_non_null(strstr(mock.warn, "max_tracked"));
    collect(&in, DT_NS);
    assert_int_equal(mock.warns, 1); /* said once */
    inst_destroy(&in);

    /* tcp = no: no connection series at all. */
    assert_int_equal(inst_init(&in, 0, "proc_root", procdir, "name", "python3",
                               "tcp", "no", NULL),
                     0);
    collect(&in, 0);
    assert_int_equal(count_published("proc.tcp."), 0);
    assert_near(value(G("fd.open")), 9);
    inst_destroy(&in);

    /* user: uid 0 keeps 10200 only. */
    assert_int_equal(inst_init(&in, 0, "proc_root", procdir, "name", "python3",
                               "pidfile", pidfile, "user", "0", NULL),
                     0);
    collect(&in, 0);
    assert_near(value(G("group.processes")), 1);
    assert_near(value(G("threads.count")), 1);
    inst_destroy(&in);
    assert_int_equal(inst_init(&in, 0, "proc_root", procdir, "name", "python3",
                               "user", "0", NULL),
                     0);
    collect(&in, 0);
    assert_int_equal(mock.done_status, VIGIL_ENOENT);
    assert_non_null(strstr(mock.error, "as the configured user"));
    inst_destroy(&in);
}

/* Two instances: the diagnostics are registered once. */
static void test_register_once(void **state)
{
    struct inst a, b;

    (void)state;
    assert_int_equal(
        inst_init(&a, 0, "proc_root", procdir, "name", "python3", NULL), 0);
    assert_int_equal(
        inst_init(&b, 1, "proc_root", procdir, "pidfile", pidfile, NULL), 0);
    assert_int_equal(mock.ndiags, 2);
    assert_int_equal(mock.register_calls, 2);
    assert_int_equal(mock.warns, 0);
    inst_destroy(&b);
    inst_destroy(&a);
}

/* Run diagnostic name with args on the loop until it replies; the
 * reply's JSON. */
static json_t *diag_on(void *st, const char *name, const char *args,
                       int want_status)
{
    const struct vigil_diag *d = NULL;
    json_error_t je;
    json_t *j;
    int i, rc;

    for (i = 0; i < mock.ndiags; i++) {
        if (strcmp(mock.diags[i]->name, name) == 0) {
            d = mock.diags[i];
        }
    }
    assert_non_null(d);
    mock.replies = 0;
    rc = d->run(st, args, (vigil_request *)&mock_req_tag);
    assert_int_equal(rc, 0);
    for (i = 0; mock.replies == 0; i++) {
        assert_true(i < 1000);
        uv_run(&mock.loop, UV_RUN_ONCE);
    }
    assert_int_equal(mock.replies, 1);
    if (mock.reply_status != want_status) {
        fail_msg("%s %s: status %d, expected %d: %s", name, args,
                 mock.reply_status, want_status,
                 mock.reply_json ? mock.reply_json : "(null)");
    }
    assert_non_null(mock.reply_json);
    j = json_loads(mock.reply_json, 0, &je);
    if (j == NULL) {
        fail_msg("%s: not JSON: %s", name, mock.reply_json);
    }
    return j;
}

static json_t *find_pid(json_t *list, int pid)
{
    size_t i;
    json_t *p;

    json_array_foreach(list, i, p)
    {
        if (json_integer_value(json_object_get(p, "pid")) == pid) {
            return p;
        }
    }
    return NULL;
}

static void test_diag_fixture(void **state)
{
    struct inst in;
    json_t *j, *p, *o, *list;
    size_t i;
    int seen_listen = 0, seen_v6 = 0;

    (void)state;
    assert_int_equal(inst_init(&in, 0, "proc_root", procdir, "name", "python3",
                               "pidfile", pidfile, NULL),
                     0);

    /* proc.top by memory: every process of the (fixture) host. */
    j = diag_on(in.state, "proc.top", "{\"by\":\"memory\",\"sample_ms\":5}", 0);
    assert_string_equal(json_string_value(json_object_get(j, "by")), "memory");
    assert_int_equal(json_integer_value(json_object_get(j, "processes_total")),
                     4);
    list = json_object_get(j, "processes");
    assert_int_equal(json_array_size(list), 4);
    p = json_array_get(list, 0);
    assert_int_equal(json_integer_value(json_object_get(p, "pid")), 10100);
    assert_string_equal(json_string_value(json_object_get(p, "cmdline")),
                        "python3 -m genesis.app --port 8080");
    assert_int_equal(json_integer_value(json_object_get(p, "rss_bytes")),
                     80000 * 1024);
    assert_int_equal(json_integer_value(json_object_get(p, "threads")), 3);
    assert_near(json_real_value(json_object_get(p, "mem_pct")), 1.0);
    assert_near(json_real_value(json_object_get(p, "cpu_pct")), 0.0);
    p = find_pid(list, 10200);
    assert_non_null(p);
    assert_string_equal(json_string_value(json_object_get(p, "name")),
                        "my (weird) app)");
    assert_string_equal(json_string_value(json_object_get(p, "user")), "root");
    json_decref(j);

    j = diag_on(in.state, "proc.top", "{\"limit\":1,\"sample_ms\":1}", 0);
    assert_int_equal(json_array_size(json_object_get(j, "processes")), 1);
    json_decref(j);

    /* proc.snapshot of one pid, no CPU sampling (so no timer). */
    j = diag_on(in.state, "proc.snapshot",
                "{\"pid\":10100,\"sample_ms\":0,\"max_files\":1}", 0);
    list = json_object_get(j, "processes");
    assert_int_equal(json_array_size(list), 1);
    p = json_array_get(list, 0);
    assert_string_equal(json_string_value(json_object_get(p, "name")),
                        "python3");
    assert_string_equal(json_string_value(json_object_get(p, "state")),
                        "S (sleeping)");
    assert_int_equal(json_integer_value(json_object_get(p, "start_time")),
                     1700000000 + 50);
    assert_string_equal(json_string_value(json_object_get(p, "exe")),
                        "/usr/bin/python3.11");
    o = json_object_get(p, "threads");
    assert_int_equal(json_integer_value(json_object_get(o, "count")), 3);
    assert_int_equal(json_array_size(json_object_get(o, "list")), 3);
    assert_true(json_is_null(json_object_get(
        json_array_get(json_object_get(o, "list"), 0), "cpu_pct")));
    o = json_object_get(p, "fds");
    assert_int_equal(json_integer_value(json_object_get(o, "total")), 9);
    assert_int_equal(json_integer_value(json_object_get(o, "file")), 2);
    assert_int_equal(json_integer_value(json_object_get(o, "socket")), 4);
    assert_int_equal(json_integer_value(json_object_get(o, "pipe")), 2);
    assert_int_equal(json_integer_value(json_object_get(o, "anon_inode")), 1);
    assert_int_equal(json_integer_value(json_object_get(o, "other")), 0);
    assert_int_equal(json_array_size(json_object_get(o, "files")), 1);
    o = json_object_get(p, "tcp");
    assert_int_equal(json_integer_value(json_object_get(o, "total")), 3);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(o, "by_state"), "established")),
                     2);
    json_array_foreach(json_object_get(o, "connections"), i, list)
    {
        const char *st = json_string_value(json_object_get(list, "state"));
        const char *lo = json_string_value(json_object_get(list, "local"));

        if (strcmp(st, "listen") == 0) {
            seen_listen = 1;
            assert_string_equal(lo, "0.0.0.0:8080");
        }
        if (strcmp(lo, "[::1]:8081") == 0) {
            seen_v6 = 1;
            assert_string_equal(
                json_string_value(json_object_get(list, "remote")),
                "[::1]:50000");
        }
    }
    assert_true(seen_listen && seen_v6);
    o = json_object_get(json_object_get(p, "limits"), "max_open_files");
    assert_int_equal(json_integer_value(json_object_get(o, "soft")), 1024);
    assert_int_equal(json_integer_value(json_object_get(o, "hard")), 4096);
    assert_true(json_is_null(json_object_get(
        json_object_get(json_object_get(p, "limits"), "max_cpu_time"),
        "soft")));
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(p, "smaps_rollup"), "Pss")),
                     70000 * 1024);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(p, "status"), "VmRSS")),
                     80000 * 1024);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(p, "status"), "State")),
                        "S (sleeping)");
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(p, "io"), "read_bytes")),
                     40960);
    assert_int_equal(json_integer_value(json_object_get(p, "uid")), 1000);
    json_decref(j);

    /* The group, before any collection: an error that says so. */
    j = diag_on(in.state, "proc.snapshot", "{}", VIGIL_ENOENT);
    assert_non_null(strstr(json_string_value(json_object_get(j, "error")),
                           "no process in the group"));
    json_decref(j);
    collect(&in, 0);
    j = diag_on(in.state, "proc.snapshot", "{\"sample_ms\":3}", 0);
    assert_string_equal(json_string_value(json_object_get(j, "instance")),
                        "web");
    assert_int_equal(json_array_size(json_object_get(j, "processes")), 2);
    p = find_pid(json_object_get(j, "processes"), 10100);
    assert_near(
        json_real_value(json_object_get(json_object_get(p, "cpu"), "pct")),
        0.0);
    json_decref(j);

    /* Bad arguments: an error reply that says which. */
    j = diag_on(in.state, "proc.top", "{\"by\":\"disk\"}", VIGIL_EINVAL);
    assert_non_null(
        strstr(json_string_value(json_object_get(j, "error")), "\"by\""));
    json_decref(j);
    j = diag_on(in.state, "proc.top", "{\"limit\":0}", VIGIL_EINVAL);
    json_decref(j);
    j = diag_on(in.state, "proc.top", "{\"bogus\":1}", VIGIL_EINVAL);
    assert_non_null(
        strstr(json_string_value(json_object_get(j, "error")), "bogus"));
    json_decref(j);
    j = diag_on(in.state, "proc.top", "[1]", VIGIL_EINVAL);
    json_decref(j);
    j = diag_on(in.state, "proc.top", "{not json", VIGIL_EINVAL);
    json_decref(j);
    j = diag_on(in.state, "proc.snapshot", "{\"pid\":10100,\"instance\":\"x\"}",
                VIGIL_EINVAL);
    json_decref(j);
    j = diag_on(in.state, "proc.snapshot", "{\"instance\":\"nope\"}",
                VIGIL_EINVAL);
    json_decref(j);
    j = diag_on(in.state, "proc.snapshot", "{\"pid\":99999999,\"sample_ms\":0}",
                VIGIL_ENOENT);
    json_decref(j);
    inst_destroy(&in);
    /* Every timer closed. */
    assert_int_equal(uv_run(&mock.loop, UV_RUN_DEFAULT), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stat),
        cmocka_unit_test(test_status),
        cmocka_unit_test(test_io),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_cmdline_pidfile),
        cmocka_unit_test(test_fd_links),
        cmocka_unit_test(test_tcp),
        cmocka_unit_test(test_rate),
        cmocka_unit_test(test_dir_and_lines),
        cmocka_unit_test_setup_teardown(test_init_errors, mock_setup,
                                        mock_teardown),
        cmocka_unit_test_setup_teardown(test_collect, mock_setup,
                                        mock_teardown),
        cmocka_unit_test_setup_teardown(test_cgroup, mock_setup, mock_teardown),
        cmocka_unit_test_setup_teardown(test_limits_and_options, mock_setup,
                                        mock_teardown),
        cmocka_unit_test_setup_teardown(test_register_once, mock_setup,
                                        mock_teardown),
        cmocka_unit_test_setup_teardown(test_diag_fixture, mock_setup,
                                        mock_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
