/*
 * proc_diag_test.c - the built proc plugin (proc.so, path in argv[1]),
 * dlopened as the core would, with a host table of this test's own on a
 * real libuv loop and thread pool. The test process watches itself: it
 * runs known threads (one of them burning CPU on demand), holds known
 * files, a pipe and TCP sockets (a listener and a connection to it), and
 * checks the plugin's series, then proc.top and proc.snapshot end to end
 * with their JSON parsed by jansson, and the cancel and stop paths (every
 * request replied to exactly once, or never once canceled; no handle
 * left: uv_loop_close() == 0).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <uv.h>

#include <vigil/plugin.h>

#define WORKERS 3      /* idle threads, besides the burner */
#define POOL_THREADS 4 /* UV_THREADPOOL_SIZE, set before the loop starts */
#define FILES 3

static const char *plugin_path;
static void *dl;
static const struct vigil_plugin *plugin;

/* ------------------------------------------------------------------------
 * The host.
 */

#define SERIES_MAX 1024

static struct host {
    uv_loop_t loop;
    struct {
        char key[256];
        double last;
        unsigned count;
    } s[SERIES_MAX];
    size_t n;
    int done, done_status;
    int errors;
    char error[1024];
    const struct vigil_diag *diags[8];
    int ndiags, register_calls;
    int replies, reply_status;
    char *reply_json;
} h;

static int inst_tag[2];
#define INST(i) ((vigil_instance *)&inst_tag[i])
static int req_tag[4];
#define REQ(i) ((vigil_request *)&req_tag[i])
static int reply_from[4];

static int label_cmp(const void *a, const void *b)
{
    const struct vigil_label *x = a, *y = b;

    return strcmp(x->key, y->key);
}

static int h_series(vigil_instance *inst, const char *name,
                    const struct vigil_label *labels, size_t n,
                    vigil_series_id *out)
{
    struct vigil_label sorted[VIGIL_LABELS_MAX];
    char key[256];
    size_t i, len;

    (void)inst;
    assert_true(n <= VIGIL_LABELS_MAX);
    if (n > 0) {
        memcpy(sorted, labels, n * sizeof(*labels));
        qsort(sorted, n, sizeof(*sorted), label_cmp);
    }
    len = (size_t)snprintf(key, sizeof(key), "%s", name);
    for (i = 0; i < n; i++) {
        len += (size_t)snprintf(key + len, sizeof(key) - len, "%s%s=\"%s\"",
                                i == 0 ? "{" : ",", sorted[i].key,
                                sorted[i].value);
    }
    if (n > 0) {
        snprintf(key + len, sizeof(key) - len, "}");
    }
    for (i = 0; i < h.n; i++) {
        if (strcmp(h.s[i].key, key) == 0) {
            *out = (vigil_series_id)i;
            return 0;
        }
    }
    assert_true(h.n < SERIES_MAX);
    snprintf(h.s[h.n].key, sizeof(h.s[h.n].key), "%s", key);
    *out = (vigil_series_id)h.n++;
    return 0;
}

static void h_publish(vigil_instance *inst, vigil_series_id id, int64_t ts,
                      double v)
{
    (void)inst;
    (void)ts;
    assert_true(id < h.n);
    h.s[id].last = v;
    h.s[id].count++;
}

static void h_log(vigil_instance *inst, int level, const char *fmt, ...)
    VIGIL_PRINTF(3, 4);
static void h_log(vigil_instance *inst, int level, const char *fmt, ...)
{
    va_list ap;

    (void)inst;
    fprintf(stderr, "plugin log %d: ", level);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void h_error(vigil_instance *inst, const char *fmt, ...)
    VIGIL_PRINTF(2, 3);
static void h_error(vigil_instance *inst, const char *fmt, ...)
{
    va_list ap;

    (void)inst;
    h.errors++;
    va_start(ap, fmt);
    vsnprintf(h.error, sizeof(h.error), fmt, ap);
    va_end(ap);
}

static struct uv_loop_s *h_loop(vigil_instance *inst)
{
    (void)inst;
    return &h.loop;
}

static int64_t h_now(vigil_instance *inst)
{
    struct timespec ts;

    (void)inst;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct h_work {
    uv_work_t req;
    vigil_work_cb work_cb;
    vigil_after_work_cb after_cb;
    void *arg;
};

static void h_work_run(uv_work_t *req)
{
    struct h_work *w = req->data;

    w->work_cb(w->arg);
}

static void h_work_after(uv_work_t *req, int status)
{
    struct h_work *w = req->data;

    w->after_cb(w->arg, status == UV_ECANCELED ? VIGIL_ECANCELED : 0);
    free(w);
}

static int h_work(vigil_instance *inst, vigil_work_cb work_cb,
                  vigil_after_work_cb after_cb, void *arg)
{
    struct h_work *w = calloc(1, sizeof(*w));

    (void)inst;
    assert_non_null(w);
    w->req.data = w;
    w->work_cb = work_cb;
    w->after_cb = after_cb;
    w->arg = arg;
    assert_int_equal(uv_queue_work(&h.loop, &w->req, h_work_run, h_work_after),
                     0);
    return 0;
}

static void h_collect_done(vigil_instance *inst, int status)
{
    (void)inst;
    h.done++;
    h.done_status = status;
}

static int h_register_diag(vigil_instance *inst, const struct vigil_diag *d)
{
    int i;

    (void)inst;
    h.register_calls++;
    for (i = 0; i < h.ndiags; i++) {
        if (strcmp(h.diags[i]->name, d->name) == 0) {
            return VIGIL_EEXIST;
        }
    }
    h.diags[h.ndiags++] = d;
    return 0;
}

static void h_reply(vigil_request *req, int status, const char *json)
{
    int i;

    for (i = 0; i < 4; i++) {
        if (req == REQ(i)) {
            reply_from[i]++;
        }
    }
    h.replies++;
    h.reply_status = status;
    free(h.reply_json);
    h.reply_json = json != NULL ? strdup(json) : NULL;
}

static const char *h_instance_name(vigil_instance *inst)
{
    return inst == INST(0) ? "self" : "other";
}

static const struct vigil_host host = {
    .abi_version = VIGIL_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct vigil_host),
    .series = h_series,
    .publish = h_publish,
    .log = h_log,
    .error = h_error,
    .loop = h_loop,
    .now_ns = h_now,
    .work = h_work,
    .collect_done = h_collect_done,
    .register_diag = h_register_diag,
    .reply = h_reply,
    .instance_name = h_instance_name,
};

static double series_value(const char *key)
{
    size_t i;

    for (i = 0; i < h.n; i++) {
        if (strcmp(h.s[i].key, key) == 0 && h.s[i].count > 0) {
            return h.s[i].last;
        }
    }
    for (i = 0; i < h.n; i++) {
        print_message("  have %s\n", h.s[i].key);
    }
    fail_msg("no series %s", key);
    return NAN;
}

/* ------------------------------------------------------------------------
 * What the test process holds.
 */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int quit;
static volatile int burn;
static pthread_t workers[WORKERS], burner;
static int files[FILES], pipefd[2], lsock = -1, csock = -1, asock = -1;
static char tmpdir[64], pidfile[128], filepath[FILES][128];

static void *worker_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&mu);
    while (!quit) {
        pthread_cond_wait(&cv, &mu);
    }
    pthread_mutex_unlock(&mu);
    return NULL;
}

static void *burner_main(void *arg)
{
    volatile uint64_t x = 0;

    (void)arg;
    for (;;) {
        pthread_mutex_lock(&mu);
        while (!quit && !burn) {
            pthread_cond_wait(&cv, &mu);
        }
        if (quit) {
            pthread_mutex_unlock(&mu);
            return NULL;
        }
        pthread_mutex_unlock(&mu);
        while (burn && !quit) {
            x = x + 1;
        }
    }
}

static void set_burn(int on)
{
    pthread_mutex_lock(&mu);
    burn = on;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static int count_dir(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        n += e->d_name[0] != '.';
    }
    closedir(d);
    return n;
}

/* This process's comm: proc_diag_test, or valgrind's name under it. */
static const char *self_comm(void)
{
    static char comm[64];
    FILE *f = fopen("/proc/self/comm", "r");

    assert_non_null(f);
    assert_non_null(fgets(comm, sizeof(comm), f));
    fclose(f);
    comm[strcspn(comm, "\n")] = '\0';
    return comm;
}

/* The soft open-files limit in /proc/self/limits. */
static uint64_t self_nofile(void)
{
    char line[256];
    FILE *f = fopen("/proc/self/limits", "r");
    unsigned long long soft = 0;

    assert_non_null(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "Max open files %llu", &soft) == 1) {
            break;
        }
    }
    fclose(f);
    assert_true(soft > 0);
    return soft;
}

/* utime + stime of this process, in ticks. */
static uint64_t self_ticks(void)
{
    char line[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    unsigned long long ut = 0, st = 0;
    char *p;

    assert_non_null(f);
    assert_non_null(fgets(line, sizeof(line), f));
    fclose(f);
    p = strrchr(line, ')');
    assert_non_null(p);
    assert_int_equal(sscanf(p + 2,
                            "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
                            "%llu %llu",
                            &ut, &st),
                     2);
    return ut + st;
}

static double mono_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t self_vmrss(void)
{
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    unsigned long long kb = 0;

    assert_non_null(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "VmRSS: %llu kB", &kb) == 1) {
            break;
        }
    }
    fclose(f);
    return kb * 1024;
}

static int setup(void **state)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t alen = sizeof(a);
    FILE *f;
    int i;

    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/proc_diag_XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    snprintf(pidfile, sizeof(pidfile), "%s/self.pid", tmpdir);
    f = fopen(pidfile, "w");
    assert_non_null(f);
    fprintf(f, "%d\n", (int)getpid());
    fclose(f);
    for (i = 0; i < FILES; i++) {
        snprintf(filepath[i], sizeof(filepath[i]), "%s/held-%d", tmpdir, i);
        files[i] = open(filepath[i], O_CREAT | O_RDWR | O_CLOEXEC, 0600);
        assert_true(files[i] >= 0);
    }
    assert_int_equal(pipe(pipefd), 0);

    /* A listener on 127.0.0.1 and one connection to it: LISTEN 1,
     * ESTABLISHED 2, all in this process. */
    lsock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(lsock >= 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lsock, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(lsock, 4), 0);
    assert_int_equal(getsockname(lsock, (struct sockaddr *)&a, &alen), 0);
    csock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(csock, (struct sockaddr *)&a, sizeof(a)), 0);
    asock = accept4(lsock, NULL, NULL, SOCK_CLOEXEC);
    assert_true(asock >= 0);

    for (i = 0; i < WORKERS; i++) {
        char name[16];

        assert_int_equal(pthread_create(&workers[i], NULL, worker_main, NULL),
                         0);
        snprintf(name, sizeof(name), "vt-worker-%d", i + 1);
        pthread_setname_np(workers[i], name);
    }
    assert_int_equal(pthread_create(&burner, NULL, burner_main, NULL), 0);
    pthread_setname_np(burner, "vt-burn");

    memset(&h, 0, sizeof(h));
    assert_int_equal(uv_loop_init(&h.loop), 0);
    dl = dlopen(plugin_path, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL) {
        fail_msg("dlopen %s: %s", plugin_path, dlerror());
    }
    plugin = dlsym(dl, VIGIL_PLUGIN_SYMBOL);
    assert_non_null(plugin);
    assert_int_equal(plugin->abi_version, VIGIL_PLUGIN_ABI_VERSION);
    assert_string_equal(plugin->name, "proc");
    return 0;
}

static int teardown(void **state)
{
    int i;
    char cmd[128];

    (void)state;
    pthread_mutex_lock(&mu);
    quit = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    for (i = 0; i < WORKERS; i++) {
        pthread_join(workers[i], NULL);
    }
    pthread_join(burner, NULL);
    for (i = 0; i < FILES; i++) {
        close(files[i]);
    }
    close(pipefd[0]);
    close(pipefd[1]);
    close(lsock);
    close(csock);
    close(asock);
    free(h.reply_json);
    h.reply_json = NULL;
    assert_int_equal(uv_loop_close(&h.loop), 0);
    dlclose(dl);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

/* ------------------------------------------------------------------------
 * Driving the plugin.
 */

struct inst {
    _Alignas(16) char config[512];
    void *state;
};

/* The config from the options table: defaults, then pidfile. */
static void inst_init(struct inst *in, int which)
{
    const struct vigil_option *o;

    memset(in, 0, sizeof(*in));
    assert_true(plugin->config_size <= sizeof(in->config));
    for (o = plugin->options; o->key != NULL; o++) {
        char *field = in->config + o->offset;
        const char *v = o->def;

        if (strcmp(o->key, "pidfile") == 0) {
            v = pidfile;
        }
        if (v == NULL) {
            continue; /* zero: NULL string, empty list */
        }
        switch (o->type) {
        case VIGIL_OPT_STRING:
            memcpy(field, &v, sizeof(v));
            break;
        case VIGIL_OPT_BOOL: {
            int b = strcmp(v, "yes") == 0;

            memcpy(field, &b, sizeof(b));
            break;
        }
        case VIGIL_OPT_INT: {
            int64_t x = strtoll(v, NULL, 10);

            memcpy(field, &x, sizeof(x));
            break;
        }
        default:
            fail_msg("option %s: default of type %d not handled", o->key,
                     o->type);
        }
    }
    assert_int_equal(plugin->init(&host, INST(which), in->config, &in->state),
                     0);
}

static void collect(struct inst *in)
{
    int i;

    h.done = 0;
    assert_int_equal(plugin->collect(in->state), VIGIL_PENDING);
    for (i = 0; h.done == 0; i++) {
        assert_true(i < 100000);
        uv_run(&h.loop, UV_RUN_ONCE);
    }
    assert_int_equal(h.done, 1);
}

static const struct vigil_diag *find_diag(const char *name)
{
    int i;

    for (i = 0; i < h.ndiags; i++) {
        if (strcmp(h.diags[i]->name, name) == 0) {
            return h.diags[i];
        }
    }
    fail_msg("diagnostic %s not registered", name);
    return NULL;
}

/* Run a diagnostic; wait for its one reply; return the parsed JSON. */
static json_t *call(struct inst *in, const char *name, const char *args,
                    int want)
{
    const struct vigil_diag *d = find_diag(name);
    json_error_t je;
    json_t *j;
    int i;

    h.replies = 0;
    memset(reply_from, 0, sizeof(reply_from));
    assert_int_equal(d->run(in->state, args, REQ(0)), 0);
    for (i = 0; h.replies == 0; i++) {
        assert_true(i < 100000);
        uv_run(&h.loop, UV_RUN_ONCE);
    }
    assert_int_equal(reply_from[0], 1);
    if (h.reply_status != want) {
        fail_msg("%s %s: status %d: %s", name, args, h.reply_status,
                 h.reply_json ? h.reply_json : "(null)");
    }
    j = json_loads(h.reply_json, 0, &je);
    if (j == NULL) {
        fail_msg("%s: not JSON: %s", name, h.reply_json);
    }
    if (getenv("PROC_DIAG_PRINT") != NULL) {
        /* For the examples in docs/proc.md. */
        char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER |
                                       JSON_REAL_PRECISION(6));

        fprintf(stderr, "%s %s ->\n%s\n", name, args, text);
        free(text);
    }
    return j;
}

/* Run the loop until no work is queued: a diagnostic with a long
 * sample_ms then waits for its timer. */
static void wait_for_timer(void)
{
    int i;

    for (i = 0; h.loop.active_reqs.count > 0; i++) {
        assert_true(i < 100000);
        uv_run(&h.loop, UV_RUN_ONCE);
    }
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

static void test_self(void **state)
{
    struct inst in, other;
    char key[256], lbl[96];
    const int threads = 1 + WORKERS + 1 + POOL_THREADS;
    double rss, v, own, wall0;
    uint64_t own0;
    uint64_t vmrss;
    int fds_now, i;
    uint64_t nofile;
    json_t *j, *p, *o;
    size_t k;

    (void)state;
    inst_init(&in, 0);
    assert_int_equal(h.ndiags, 2);
    /* A second instance registers nothing (quietly). */
    inst_init(&other, 1);
    assert_int_equal(h.register_calls, 2);

    /* First collection: starts the pool's threads too. */
    collect(&in);
    assert_int_equal(h.done_status, 0);
    set_burn(1);
    collect(&in);
    /* Burn between two collections; the test measures the same second
     * (give or take the scans) from its own ticks, so that a busy
     * machine does not fail it. */
    own0 = self_ticks();
    wall0 = mono_s();
    {
        struct timespec ts = {1, 0};

        nanosleep(&ts, NULL);
    }
    collect(&in);
    own = 100.0 * (double)(self_ticks() - own0) / (double)sysconf(_SC_CLK_TCK) /
          (mono_s() - wall0);
    set_burn(0);
    assert_int_equal(h.done_status, 0);
    assert_int_equal(count_dir("/proc/self/task"), threads);

    /* The core would add instance="self"; this host adds nothing. */
    snprintf(lbl, sizeof(lbl), "name=\"%s\",pid=\"%d\"", self_comm(),
             (int)getpid());
    snprintf(key, sizeof(key), "proc.threads.count{%s}", lbl);
    assert_int_equal((int)series_value(key), threads);
    assert_int_equal((int)series_value("proc.threads.count"), threads);
    assert_int_equal((int)series_value("proc.group.processes"), 1);
    snprintf(key, sizeof(key), "proc.tcp.connections{%s,state=\"listen\"}",
             lbl);
    assert_int_equal((int)series_value(key), 1);
    snprintf(key, sizeof(key), "proc.tcp.connections{%s,state=\"established\"}",
             lbl);
    assert_int_equal((int)series_value(key), 2);
    /* The fds counted while the scan held two of its own open (the
     * process's directory and its fd directory); count_dir holds one. */
    fds_now = count_dir("/proc/self/fd") - 1;
    snprintf(key, sizeof(key), "proc.fd.open{%s}", lbl);
    assert_int_equal((int)series_value(key), fds_now + 2);
    /* As the kernel says (valgrind shows its client a lower limit). */
    nofile = self_nofile();
    snprintf(key, sizeof(key), "proc.fd.limit{%s}", lbl);
    assert_int_equal((uint64_t)series_value(key), nofile);
    snprintf(key, sizeof(key), "proc.mem.rss_bytes{%s}", lbl);
    rss = series_value(key);
    vmrss = self_vmrss();
    assert_true(fabs(rss - (double)vmrss) < 4 * 1048576.0);
    snprintf(key, sizeof(key), "proc.cpu.total_pct{%s}", lbl);
    v = series_value(key);
    /* The burner ran during the last interval. */
    if (!(v > 5.0 && fabs(v - own) < 20.0)) {
        fail_msg("proc.cpu.total_pct %.1f, the test measured %.1f", v, own);
    }

    /* proc.top by CPU while the burner burns: this process is in it,
     * with its threads. */
    set_burn(1);
    j = call(&in, "proc.top",
             "{\"by\":\"cpu\",\"limit\":1000,"
             "\"sample_ms\":500}",
             0);
    set_burn(0);
    p = find_pid(json_object_get(j, "processes"), (int)getpid());
    assert_non_null(p);
    assert_string_equal(json_string_value(json_object_get(p, "name")),
                        self_comm());
    assert_int_equal(json_integer_value(json_object_get(p, "threads")),
                     threads);
    assert_true(json_real_value(json_object_get(p, "cpu_pct")) > 5.0);
    assert_non_null(
        strstr(json_string_value(json_object_get(p, "cmdline")), "proc.so"));
    assert_true(json_integer_value(json_object_get(p, "rss_bytes")) > 0);
    /* Sorted by CPU. */
    {
        double prev = 1e9;

        json_array_foreach(json_object_get(j, "processes"), k, o)
        {
            double c = json_real_value(json_object_get(o, "cpu_pct"));

            assert_true(c <= prev);
            prev = c;
        }
    }
    json_decref(j);

    /* proc.snapshot of this pid, sampling threads' CPU. */
    set_burn(1);
    {
        char args[64];

        snprintf(args, sizeof(args), "{\"pid\":%d,\"sample_ms\":500}",
                 (int)getpid());
        j = call(&in, "proc.snapshot", args, 0);
    }
    set_burn(0);
    p = json_array_get(json_object_get(j, "processes"), 0);
    assert_non_null(p);
    o = json_object_get(p, "threads");
    assert_int_equal(json_integer_value(json_object_get(o, "count")), threads);
    /* The burner is the busiest thread, listed first. */
    assert_string_equal(
        json_string_value(json_object_get(
            json_array_get(json_object_get(o, "list"), 0), "name")),
        "vt-burn");
    {
        json_t *list = json_object_get(o, "list"), *t;
        int workers_seen = 0;

        json_array_foreach(list, k, t)
        {
            workers_seen +=
                strncmp(json_string_value(json_object_get(t, "name")),
                        "vt-worker-", 10) == 0;
        }
        assert_int_equal(workers_seen, WORKERS);
    }
    o = json_object_get(p, "fds");
    assert_int_equal(json_integer_value(json_object_get(o, "socket")), 3);
    assert_true(json_integer_value(json_object_get(o, "pipe")) >= 2);
    assert_true(json_integer_value(json_object_get(o, "file")) >= FILES);
    {
        json_t *list = json_object_get(o, "files"), *t;
        int held = 0;

        json_array_foreach(list, k, t)
        {
            for (i = 0; i < FILES; i++) {
                held += strcmp(json_string_value(json_object_get(t, "path")),
                               filepath[i]) == 0;
            }
        }
        assert_int_equal(held, FILES);
    }
    o = json_object_get(p, "tcp");
    assert_int_equal(json_integer_value(json_object_get(o, "total")), 3);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(o, "by_state"), "listen")),
                     1);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(o, "by_state"), "established")),
                     2);
    o = json_object_get(json_object_get(p, "limits"), "max_open_files");
    assert_int_equal((uint64_t)json_integer_value(json_object_get(o, "soft")),
                     nofile);
    assert_true(json_integer_value(json_object_get(
                    json_object_get(p, "smaps_rollup"), "Rss")) > 0);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(p, "status"), "Threads")),
                     threads);
    assert_true(json_real_value(
                    json_object_get(json_object_get(p, "cpu"), "pct")) > 5.0);
    json_decref(j);

    /* The group (the pidfile names this process). */
    j = call(&in, "proc.snapshot", "{\"sample_ms\":0}", 0);
    assert_string_equal(json_string_value(json_object_get(j, "instance")),
                        "self");
    assert_non_null(find_pid(json_object_get(j, "processes"), (int)getpid()));
    json_decref(j);
    /* Another instance's group, by name. */
    collect(&other);
    j = call(&in, "proc.snapshot", "{\"instance\":\"other\",\"sample_ms\":0}",
             0);
    assert_string_equal(json_string_value(json_object_get(j, "instance")),
                        "other");
    json_decref(j);

    /* Canceled while the timer runs: never replied to. */
    h.replies = 0;
    memset(reply_from, 0, sizeof(reply_from));
    assert_int_equal(
        find_diag("proc.top")->run(in.state, "{\"sample_ms\":5000}", REQ(1)),
        0);
    wait_for_timer();
    find_diag("proc.top")->cancel(in.state, REQ(1));
    /* Canceled while its work runs on the pool. */
    assert_int_equal(
        find_diag("proc.snapshot")->run(in.state, "{\"sample_ms\":0}", REQ(2)),
        0);
    find_diag("proc.snapshot")->cancel(in.state, REQ(2));
    /* Stopped with a request waiting for its timer: replied once,
     * canceled. */
    assert_int_equal(
        find_diag("proc.top")->run(in.state, "{\"sample_ms\":5000}", REQ(3)),
        0);
    wait_for_timer();
    assert_int_equal(reply_from[3], 0);
    plugin->stop(other.state);
    plugin->stop(in.state);
    assert_int_equal(reply_from[3], 1);
    assert_int_equal(h.reply_status, VIGIL_ECANCELED);
    /* The loop ends: no timer or work left. */
    assert_int_equal(uv_run(&h.loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(reply_from[1], 0);
    assert_int_equal(reply_from[2], 0);
    assert_int_equal(reply_from[3], 1);
    /* A stopped instance refuses new requests without replying. */
    assert_int_equal(find_diag("proc.top")->run(in.state, "{}", REQ(0)),
                     VIGIL_ESTATE);
    plugin->destroy(other.state);
    plugin->destroy(in.state);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_self, setup, teardown),
    };

    if (argc != 2) {
        fprintf(stderr, "usage: %s PATH/proc.so\n", argv[0]);
        return 2;
    }
    plugin_path = argv[1];
    /* Before the loop's first work: the thread count is checked. */
    setenv("UV_THREADPOOL_SIZE", "4", 1);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
