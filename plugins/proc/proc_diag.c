/*
 * proc_diag.c - the proc plugin's diagnostics:
 *
 *   proc.top       every process of the host, like top: CPU over a short
 *                  sample, memory, threads, user, command line; sorted by
 *                  CPU or memory
 *   proc.snapshot  one process (or the group's): threads, fds by type,
 *                  TCP connections, limits, smaps_rollup, status, I/O -
 *                  what ps, lsof and netstat would show
 *
 * Both are registered once per vigil process, by the first proc instance;
 * a snapshot of another instance's group names it ({"instance": "x"}).
 *
 * A request runs in up to three steps: a first /proc scan on the thread
 * pool (CPU ticks), a uv_timer of sample_ms on the loop, and the full
 * scan on the thread pool, which also builds the JSON reply (jansson).
 * Then host->reply() is called exactly once on the loop: with the result,
 * with an error, or with VIGIL_ECANCELED when the instance stops first.
 * A request the core cancels is never replied to; its memory goes when
 * its work returns or its timer has closed.
 *
 * Unlike a collection, a request allocates what it needs (its buffers,
 * the list of all processes): diagnostics are rare and not on the
 * per-sample path.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "proc.h"

#define PROC_TOP_LIMIT_DEF 20
#define PROC_TOP_LIMIT_MAX 1000
#define PROC_SAMPLE_DEF_MS 250
#define PROC_SAMPLE_MAX_MS 10000
#define PROC_SCAN_MAX (1u << 22)   /* processes or threads in one list */
#define PROC_CMDLINE_TOP 256       /* command-line bytes shown by proc.top */
#define PROC_CMDLINE_SNAPSHOT 4096 /* ... and by proc.snapshot */
#define PROC_SNAP_PROCS_DEF 20
#define PROC_SNAP_FILES_DEF 20
#define PROC_SNAP_CONNS_DEF 100
#define PROC_SNAP_THREADS_DEF 200
#define PROC_NAMECACHE 32

/* Compact, and reals to 6 significant digits ("76.1557", not
 * "76.155719129404929"). */
#define PROC_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(6))

enum { PROC_DIAG_TOP, PROC_DIAG_SNAPSHOT };
enum { PROC_RQ_WORK1, PROC_RQ_TIMER, PROC_RQ_WORK2 };

/* CPU ticks of one process or thread at the first sample. */
struct proc_tick {
    int id; /* pid, or tid */
    uint64_t start;
    uint64_t ticks;        /* utime + stime */
    uint64_t utime, stime; /* proc.top only */
};

struct proc_namecache {
    uint32_t uid;
    char name[64];
};

struct proc_req {
    struct proc *s;        /* the instance that registered the diagnostic */
    vigil_request *req;    /* NULL once replied to or canceled */
    struct proc_req *next; /* in s->reqs */
    int kind;
    int phase;
    uv_timer_t timer;
    int timer_open;

    /* Arguments. */
    int by_mem;
    long limit;
    long sample_ms;
    long max_procs, max_files, max_conns, max_threads;
    int *pids; /* snapshot targets */
    size_t npids;
    char instance[VIGIL_LABEL_VALUE_MAX];

    /* Copied from the instance: the work reads nothing else of it. */
    const char *proc_root;
    int root_fd;
    long clk_tck, page_size;

    /* First sample. */
    struct proc_tick *t1;
    size_t n1;
    int64_t t1_ns;

    /* Scratch buffers of the work. */
    char *rbuf, *dbuf, *lbuf;
    struct proc_namecache users[PROC_NAMECACHE];
    size_t nusers;

    /* Result. */
    int status;
    char *json;
};

/* ------------------------------------------------------------------------
 * Small helpers (work side).
 */

static int proc_tick_cmp(const void *a, const void *b)
{
    const struct proc_tick *x = a, *y = b;

    return (x->id > y->id) - (x->id < y->id);
}

static const struct proc_tick *proc_tick_find(const struct proc_req *rq, int id)
{
    struct proc_tick key = {.id = id};

    if (rq->n1 == 0) {
        return NULL;
    }
    return bsearch(&key, rq->t1, rq->n1, sizeof(*rq->t1), proc_tick_cmp);
}

/* CPU % of one core between the first sample and now (t2_ns). An entity
 * the first sample did not see (or saw as another process) started
 * within the interval, so all its ticks belong to it. */
static double proc_cpu_pct(const struct proc_req *rq, int id, uint64_t start,
                           uint64_t ticks, int64_t t2_ns)
{
    const struct proc_tick *t = proc_tick_find(rq, id);
    uint64_t before = 0;
    double pct;

    if (t != NULL && t->start == start) {
        before = t->ticks;
    }
    if (!proc_rate(before, ticks, t2_ns - rq->t1_ns,
                   100.0 / (double)rq->clk_tck, &pct)) {
        return 0.0;
    }
    return pct;
}

/* The user name of uid, or its number as text. */
static const char *proc_user_name(struct proc_req *rq, uint32_t uid)
{
    struct passwd pw, *res = NULL;
    struct proc_namecache *c;
    char buf[2048];
    size_t i;

    for (i = 0; i < rq->nusers; i++) {
        if (rq->users[i].uid == uid) {
            return rq->users[i].name;
        }
    }
    c = &rq->users[rq->nusers < PROC_NAMECACHE ? rq->nusers++
                                               : PROC_NAMECACHE - 1];
    c->uid = uid;
    if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) == 0 && res != NULL) {
        snprintf(c->name, sizeof(c->name), "%s", res->pw_name);
    } else {
        snprintf(c->name, sizeof(c->name), "%u", uid);
    }
    return c->name;
}

static json_t *proc_json_u64(uint64_t v)
{
    return json_integer(v > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)v);
}

/* A limit: null for unlimited. */
static json_t *proc_json_limit(uint64_t v)
{
    return v == PROC_UNLIMITED ? json_null() : proc_json_u64(v);
}

/* A string that jansson accepts: invalid UTF-8 bytes become '?'. */
static json_t *proc_json_str(const char *text)
{
    json_t *j = json_string(text);
    char *copy;
    size_t i;

    if (j != NULL) {
        return j;
    }
    copy = strdup(text);
    if (copy == NULL) {
        return json_null();
    }
    for (i = 0; copy[i] != '\0'; i++) {
        if ((unsigned char)copy[i] >= 0x80) {
            copy[i] = '?';
        }
    }
    j = json_string(copy);
    free(copy);
    return j != NULL ? j : json_null();
}

/* strerror for the pool threads (strerror itself is not thread-safe). */
static json_t *proc_json_errno(int err)
{
    char buf[128];

    return proc_json_str(strerror_r(err, buf, sizeof(buf)));
}

static void proc_set(json_t *obj, const char *key, json_t *v)
{
    json_object_set_new(obj, key, v != NULL ? v : json_null());
}

/* Read pid's command line (up to max bytes) as one line into rq->rbuf. */
static const char *proc_read_cmdline(struct proc_req *rq, int pfd, size_t max)
{
    ssize_t n = proc_read_at(
        pfd, "cmdline", rq->rbuf,
        max + 1 < PROC_RBUF_SIZE ? max + 1 : PROC_RBUF_SIZE - 1, NULL);

    if (n <= 0) {
        return "";
    }
    proc_cmdline_text(rq->rbuf, (size_t)n);
    if (strlen(rq->rbuf) > max) {
        rq->rbuf[max] = '\0';
    }
    return rq->rbuf;
}

static const char *proc_state_name(char state)
{
    switch (state) {
    case 'R':
        return "running";
    case 'S':
        return "sleeping";
    case 'D':
        return "disk sleep";
    case 'Z':
        return "zombie";
    case 'T':
        return "stopped";
    case 't':
        return "tracing stop";
    case 'X':
        return "dead";
    case 'I':
        return "idle";
    case 'P':
        return "parked";
    default:
        return "unknown";
    }
}

/* MemTotal in bytes, or 0. */
static uint64_t proc_mem_total(struct proc_req *rq)
{
    const char *p;
    uint64_t kb;

    if (proc_read_at(rq->root_fd, "meminfo", rq->rbuf, PROC_RBUF_SIZE, NULL) <
        0) {
        return 0;
    }
    p = strstr(rq->rbuf, "MemTotal:");
    if (p == NULL) {
        return 0;
    }
    p += strlen("MemTotal:");
    return proc_scan_u64(&p, &kb) == 0 ? kb * 1024 : 0;
}

/* Boot time (unix seconds), or 0. */
static uint64_t proc_btime(struct proc_req *rq)
{
    const char *p;
    uint64_t v;

    if (proc_read_at(rq->root_fd, "stat", rq->rbuf, PROC_RBUF_SIZE, NULL) < 0) {
        return 0;
    }
    p = strstr(rq->rbuf, "\nbtime ");
    if (p == NULL) {
        return 0;
    }
    p += strlen("\nbtime ");
    return proc_scan_u64(&p, &v) == 0 ? v : 0;
}

static int proc_err_json(struct proc_req *rq, int status, const char *fmt, ...)
    VIGIL_PRINTF(3, 4);
static int proc_err_json(struct proc_req *rq, int status, const char *fmt, ...)
{
    char msg[512];
    json_t *o;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    o = json_object();
    if (o != NULL) {
        proc_set(o, "error", proc_json_str(msg));
        free(rq->json);
        rq->json = json_dumps(o, PROC_JSON_FLAGS);
        json_decref(o);
    }
    rq->status = status;
    return status;
}

/* Dump root into rq->json (consumes root). */
static void proc_finish_json(struct proc_req *rq, json_t *root)
{
    if (root == NULL) {
        rq->status = VIGIL_ENOMEM;
        return;
    }
    rq->json = json_dumps(root, PROC_JSON_FLAGS);
    json_decref(root);
    rq->status = rq->json != NULL ? 0 : VIGIL_ENOMEM;
}

/* ------------------------------------------------------------------------
 * proc.top
 */

struct proc_top_row {
    int pid, ppid;
    uint64_t start;
    char name[PROC_COMM_MAX];
    char state;
    uint32_t uid;
    int have_uid;
    double cpu, user_pct, sys_pct;
    uint64_t rss, vms, threads;
};

/* The pids of every process, in a growing array (*out, to free). Returns
 * 0 or -errno. */
static int proc_list_pids(struct proc_req *rq, int **out, size_t *n)
{
    struct proc_dir d;
    const char *ent;
    size_t cap = 0;
    int fd = proc_dir_open(rq->root_fd, ".");

    *out = NULL;
    *n = 0;
    if (fd < 0) {
        return fd;
    }
    proc_dir_init(&d, fd, rq->dbuf, PROC_DBUF_SIZE);
    while ((ent = proc_dir_next(&d, NULL)) != NULL) {
        int pid;

        if (!proc_name_pid(ent, &pid)) {
            continue;
        }
        if (*n == cap) {
            int *p;

            if (cap >= PROC_SCAN_MAX) {
                break;
            }
            cap = cap ? cap * 2 : 512;
            p = realloc(*out, cap * sizeof(*p));
            if (p == NULL) {
                close(fd);
                return -ENOMEM;
            }
            *out = p;
        }
        (*out)[(*n)++] = pid;
    }
    close(fd);
    return 0;
}

/* Read pid's stat. Returns 0 or -1. */
static int proc_read_stat(struct proc_req *rq, int dirfd, const char *path,
                          struct proc_stat *st)
{
    if (proc_read_at(dirfd, path, rq->rbuf, PROC_RBUF_SIZE, NULL) < 0) {
        return -1;
    }
    return proc_stat_parse(rq->rbuf, st);
}

static void proc_top_sample1(struct proc_req *rq)
{
    int *pids = NULL;
    size_t n = 0, i;

    rq->t1_ns = proc_clock();
    if (proc_list_pids(rq, &pids, &n) != 0 || n == 0) {
        free(pids);
        return;
    }
    rq->t1 = calloc(n, sizeof(*rq->t1));
    if (rq->t1 == NULL) {
        free(pids);
        return;
    }
    for (i = 0; i < n; i++) {
        struct proc_stat st;
        char path[32];

        snprintf(path, sizeof(path), "%d/stat", pids[i]);
        if (proc_read_stat(rq, rq->root_fd, path, &st) == 0) {
            struct proc_tick *t = &rq->t1[rq->n1++];

            t->id = pids[i];
            t->start = st.starttime;
            t->ticks = st.utime + st.stime;
            t->utime = st.utime;
            t->stime = st.stime;
        }
    }
    free(pids);
    qsort(rq->t1, rq->n1, sizeof(*rq->t1), proc_tick_cmp);
}

static int proc_top_by_cpu(const void *a, const void *b)
{
    const struct proc_top_row *x = a, *y = b;

    if (x->cpu != y->cpu) {
        return x->cpu < y->cpu ? 1 : -1;
    }
    if (x->rss != y->rss) {
        return x->rss < y->rss ? 1 : -1;
    }
    return (x->pid > y->pid) - (x->pid < y->pid);
}

static int proc_top_by_mem(const void *a, const void *b)
{
    const struct proc_top_row *x = a, *y = b;

    if (x->rss != y->rss) {
        return x->rss < y->rss ? 1 : -1;
    }
    if (x->cpu != y->cpu) {
        return x->cpu < y->cpu ? 1 : -1;
    }
    return (x->pid > y->pid) - (x->pid < y->pid);
}

static void proc_top_sample2(struct proc_req *rq)
{
    struct proc_top_row *rows = NULL;
    int *pids = NULL;
    size_t n = 0, nrows = 0, i;
    int64_t t2;
    uint64_t mem_total;
    json_t *root, *list;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int rc;

    rc = proc_list_pids(rq, &pids, &n);
    if (rc != 0) {
        char buf[128];

        proc_err_json(rq, VIGIL_EIO, "listing %s: %s", rq->proc_root,
                      strerror_r(-rc, buf, sizeof(buf)));
        return;
    }
    rows = calloc(n ? n : 1, sizeof(*rows));
    if (rows == NULL) {
        free(pids);
        rq->status = VIGIL_ENOMEM;
        return;
    }
    for (i = 0; i < n; i++) {
        struct proc_top_row *r = &rows[nrows];
        struct proc_status status;
        struct proc_stat st;
        char name[16];
        int pfd;

        snprintf(name, sizeof(name), "%d", pids[i]);
        pfd = proc_dir_open(rq->root_fd, name);
        if (pfd < 0) {
            continue;
        }
        t2 = proc_clock();
        if (proc_read_stat(rq, pfd, "stat", &st) != 0) {
            close(pfd);
            continue;
        }
        memset(r, 0, sizeof(*r));
        r->pid = pids[i];
        r->ppid = st.ppid;
        r->start = st.starttime;
        snprintf(r->name, sizeof(r->name), "%s", st.comm);
        r->state = st.state;
        r->threads = st.num_threads;
        r->vms = st.vsize;
        r->rss = st.rss_pages * (uint64_t)rq->page_size;
        {
            const struct proc_tick *t = proc_tick_find(rq, r->pid);
            int same = t != NULL && t->start == st.starttime;
            double tick_pct = 100.0 / (double)rq->clk_tck;
            int64_t dt = t2 - rq->t1_ns;

            /* A process the first sample did not see started since: all
             * its ticks are in the interval. */
            if (!proc_rate(same ? t->utime : 0, st.utime, dt, tick_pct,
                           &r->user_pct)) {
                r->user_pct = 0.0;
            }
            if (!proc_rate(same ? t->stime : 0, st.stime, dt, tick_pct,
                           &r->sys_pct)) {
                r->sys_pct = 0.0;
            }
            r->cpu = r->user_pct + r->sys_pct;
        }
        if (proc_read_at(pfd, "status", rq->rbuf, PROC_RBUF_SIZE, NULL) >= 0 &&
            proc_status_parse(rq->rbuf, &status) == 0) {
            if (status.have & PROC_ST_UID) {
                r->uid = status.uid;
                r->have_uid = 1;
            }
            if (status.have & PROC_ST_RSS) {
                r->rss = status.rss;
            }
        }
        close(pfd);
        nrows++;
    }
    free(pids);
    qsort(rows, nrows, sizeof(*rows),
          rq->by_mem ? proc_top_by_mem : proc_top_by_cpu);

    mem_total = proc_mem_total(rq);
    root = json_object();
    list = json_array();
    if (root == NULL || list == NULL) {
        json_decref(root);
        json_decref(list);
        free(rows);
        rq->status = VIGIL_ENOMEM;
        return;
    }
    proc_set(root, "by", json_string(rq->by_mem ? "memory" : "cpu"));
    proc_set(root, "sample_ms", json_integer(rq->sample_ms));
    proc_set(root, "cpus", json_integer(ncpu > 0 ? ncpu : 1));
    proc_set(root, "mem_total_bytes", proc_json_u64(mem_total));
    proc_set(root, "processes_total", json_integer((json_int_t)nrows));
    for (i = 0; i < nrows && i < (size_t)rq->limit; i++) {
        const struct proc_top_row *r = &rows[i];
        json_t *o = json_object();
        char name[16], st[2] = {r->state, '\0'};
        const char *cmd = "";
        int pfd;

        if (o == NULL) {
            continue;
        }
        snprintf(name, sizeof(name), "%d", r->pid);
        pfd = proc_dir_open(rq->root_fd, name);
        if (pfd >= 0) {
            cmd = proc_read_cmdline(rq, pfd, PROC_CMDLINE_TOP);
        }
        proc_set(o, "pid", json_integer(r->pid));
        proc_set(o, "ppid", json_integer(r->ppid));
        proc_set(o, "name", proc_json_str(r->name));
        proc_set(o, "user",
                 r->have_uid ? proc_json_str(proc_user_name(rq, r->uid))
                             : json_null());
        proc_set(o, "state", json_string(st));
        proc_set(o, "cpu_pct", json_real(r->cpu));
        proc_set(o, "user_pct", json_real(r->user_pct));
        proc_set(o, "system_pct", json_real(r->sys_pct));
        proc_set(o, "rss_bytes", proc_json_u64(r->rss));
        proc_set(o, "mem_pct",
                 mem_total > 0
                     ? json_real(100.0 * (double)r->rss / (double)mem_total)
                     : json_null());
        proc_set(o, "vms_bytes", proc_json_u64(r->vms));
        proc_set(o, "threads", proc_json_u64(r->threads));
        proc_set(o, "cmdline", proc_json_str(cmd));
        if (pfd >= 0) {
            close(pfd);
        }
        json_array_append_new(list, o);
    }
    free(rows);
    proc_set(root, "processes", list);
    proc_finish_json(rq, root);
}

/* ------------------------------------------------------------------------
 * proc.snapshot
 */

/* Threads' ticks of every target process (the first sample). */
static void proc_snap_sample1(struct proc_req *rq)
{
    size_t i, cap = 0;

    rq->t1_ns = proc_clock();
    for (i = 0; i < rq->npids; i++) {
        struct proc_dir d;
        const char *ent;
        char path[32];
        int tfd;

        snprintf(path, sizeof(path), "%d/task", rq->pids[i]);
        tfd = proc_dir_open(rq->root_fd, path);
        if (tfd < 0) {
            continue;
        }
        proc_dir_init(&d, tfd, rq->dbuf, PROC_DBUF_SIZE);
        while ((ent = proc_dir_next(&d, NULL)) != NULL) {
            struct proc_stat st;
            char tpath[48];
            int tid;

            if (!proc_name_pid(ent, &tid)) {
                continue;
            }
            snprintf(tpath, sizeof(tpath), "%s/stat", ent);
            if (proc_read_stat(rq, tfd, tpath, &st) != 0) {
                continue;
            }
            if (rq->n1 == cap) {
                struct proc_tick *p;

                if (cap >= PROC_SCAN_MAX) {
                    break;
                }
                cap = cap ? cap * 2 : 64;
                p = realloc(rq->t1, cap * sizeof(*p));
                if (p == NULL) {
                    break;
                }
                rq->t1 = p;
            }
            rq->t1[rq->n1].id = tid;
            rq->t1[rq->n1].start = st.starttime;
            rq->t1[rq->n1].ticks = st.utime + st.stime;
            rq->n1++;
        }
        close(tfd);
    }
    if (rq->n1 > 0) {
        qsort(rq->t1, rq->n1, sizeof(*rq->t1), proc_tick_cmp);
    }
}

/* status fields that are hexadecimal masks (Cpus_allowed "3", SigCgt,
 * CapEff...): kept as text, never read as decimal numbers. */
static int proc_kv_is_mask(const char *key)
{
    return strncmp(key, "Cpus_allowed", 12) == 0 ||
           strncmp(key, "Mems_allowed", 12) == 0 ||
           strncmp(key, "Sig", 3) == 0 || strncmp(key, "Shd", 3) == 0 ||
           strncmp(key, "Cap", 3) == 0;
}

/* "Key:\tvalue" files (status, smaps_rollup, io) as an object: "N kB"
 * becomes bytes, a plain integer a number, anything else a string. */
static json_t *proc_kv_json(char *text, int skip_header)
{
    json_t *o = json_object();
    char *p = text, *line;

    if (o == NULL) {
        return NULL;
    }
    while ((line = proc_text_line(&p)) != NULL) {
        char *colon = strchr(line, ':');
        const char *v;
        uint64_t num;
        size_t n;

        if (colon == NULL || (skip_header && strchr(line, ' ') != NULL &&
                              strchr(line, ' ') < colon)) {
            continue;
        }
        *colon = '\0';
        v = colon + 1;
        while (*v == ' ' || *v == '\t') {
            v++;
        }
        n = strlen(v);
        while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t')) {
            n--;
        }
        ((char *)v)[n] = '\0';
        {
            const char *q = v;

            if (!proc_kv_is_mask(line) && proc_scan_u64(&q, &num) == 0) {
                if (strcmp(q, " kB") == 0) {
                    proc_set(o, line, proc_json_u64(num * 1024));
                    continue;
                }
                /* "0022" (Umask) is octal: kept as text. */
                if (*q == '\0' && (v[0] != '0' || v[1] == '\0')) {
                    proc_set(o, line, proc_json_u64(num));
                    continue;
                }
            }
        }
        {
            char *t;

            for (t = (char *)v; *t != '\0'; t++) {
                if (*t == '\t') {
                    *t = ' ';
                }
            }
        }
        proc_set(o, line, proc_json_str(v));
    }
    return o;
}

static json_t *proc_snap_limits(struct proc_req *rq, int pfd)
{
    struct proc_limit lim;
    json_t *o;
    char *p;

    if (proc_read_at(pfd, "limits", rq->rbuf, PROC_RBUF_SIZE, NULL) < 0) {
        return json_null();
    }
    o = json_object();
    if (o == NULL) {
        return NULL;
    }
    p = rq->rbuf;
    while (proc_limits_next(&p, &lim) == 1) {
        char key[sizeof(lim.name)];
        size_t i;
        json_t *l = json_object();

        if (l == NULL) {
            continue;
        }
        for (i = 0; lim.name[i] != '\0'; i++) {
            char c = lim.name[i];

            key[i] = c == ' ' ? '_' : (c >= 'A' && c <= 'Z') ? c + 32 : c;
        }
        key[i] = '\0';
        proc_set(l, "soft", proc_json_limit(lim.soft));
        proc_set(l, "hard", proc_json_limit(lim.hard));
        proc_set(l, "units", json_string(lim.units));
        proc_set(o, key, l);
    }
    return o;
}

static int proc_u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return (x > y) - (x < y);
}

/* fds by type, the first files, and the socket inodes (into *socks). */
static json_t *proc_snap_fds(struct proc_req *rq, int pfd, uint64_t **socks,
                             size_t *nsocks)
{
    static const char *const kinds[PROC_FD_NKINDS] = {
        [PROC_FD_FILE] = "file",   [PROC_FD_SOCKET] = "socket",
        [PROC_FD_PIPE] = "pipe",   [PROC_FD_ANON] = "anon_inode",
        [PROC_FD_OTHER] = "other",
    };
    uint64_t count[PROC_FD_NKINDS] = {0}, total = 0;
    size_t cap = 0;
    struct proc_dir d;
    const char *ent;
    json_t *o, *files;
    int ffd, k;

    *socks = NULL;
    *nsocks = 0;
    o = json_object();
    if (o == NULL) {
        return NULL;
    }
    ffd = proc_dir_open(pfd, "fd");
    if (ffd < 0) {
        proc_set(o, "error", proc_json_errno(-ffd));
        return o;
    }
    files = json_array();
    proc_dir_init(&d, ffd, rq->dbuf, PROC_DBUF_SIZE);
    while ((ent = proc_dir_next(&d, NULL)) != NULL) {
        char link[PATH_MAX];
        enum proc_fd_kind kind;
        uint64_t ino;
        ssize_t n = readlinkat(ffd, ent, link, sizeof(link) - 1);

        if (n < 0) {
            continue; /* closed meanwhile */
        }
        link[n] = '\0';
        total++;
        kind = proc_fd_classify(link, &ino);
        count[kind]++;
        if (kind == PROC_FD_FILE && files != NULL &&
            json_array_size(files) < (size_t)rq->max_files) {
            json_t *f = json_object();
            int fdn;

            if (f != NULL && proc_name_pid(ent, &fdn)) {
                proc_set(f, "fd", json_integer(fdn));
            } else if (f != NULL) {
                proc_set(f, "fd", json_integer(0));
            }
            if (f != NULL) {
                proc_set(f, "path", proc_json_str(link));
                json_array_append_new(files, f);
            }
        }
        if (kind == PROC_FD_SOCKET) {
            if (*nsocks == cap && cap < PROC_SCAN_MAX) {
                uint64_t *p;

                cap = cap ? cap * 2 : 64;
                p = realloc(*socks, cap * sizeof(*p));
                if (p != NULL) {
                    *socks = p;
                } else {
                    cap = *nsocks;
                }
            }
            if (*nsocks < cap) {
                (*socks)[(*nsocks)++] = ino;
            }
        }
    }
    if (d.err != 0) {
        proc_set(o, "error", proc_json_errno(-d.err));
    }
    close(ffd);
    proc_set(o, "total", proc_json_u64(total));
    for (k = 0; k < PROC_FD_NKINDS; k++) {
        proc_set(o, kinds[k], proc_json_u64(count[k]));
    }
    proc_set(o, "files", files);
    if (*nsocks > 1) {
        qsort(*socks, *nsocks, sizeof(**socks), proc_u64_cmp);
    }
    return o;
}

/* The process's TCP sockets, from its network namespace's net/tcp{,6}. */
static json_t *proc_snap_tcp(struct proc_req *rq, int pid,
                             const uint64_t *socks, size_t nsocks)
{
    uint64_t by_state[PROC_TCP_NSTATES] = {0}, total = 0;
    json_t *o = json_object(), *list = json_array(), *states = json_object();
    int v6, i;

    if (o == NULL || list == NULL || states == NULL) {
        json_decref(o);
        json_decref(list);
        json_decref(states);
        return NULL;
    }
    for (v6 = 0; v6 < 2 && nsocks > 0; v6++) {
        struct proc_lines l;
        char path[48];
        char *line;

        snprintf(path, sizeof(path), "%d/net/%s", pid, v6 ? "tcp6" : "tcp");
        if (proc_lines_open(&l, rq->root_fd, path, rq->lbuf, PROC_LBUF_SIZE) !=
            0) {
            continue;
        }
        while ((line = proc_lines_next(&l)) != NULL) {
            struct proc_tcp t;
            char local[64], remote[64];
            json_t *c;

            if (proc_tcp_parse(line, v6, &t) != 1 || t.inode == 0 ||
                bsearch(&t.inode, socks, nsocks, sizeof(*socks),
                        proc_u64_cmp) == NULL) {
                continue;
            }
            total++;
            if (t.state > 0 && t.state < PROC_TCP_NSTATES) {
                by_state[t.state]++;
            }
            if (json_array_size(list) >= (size_t)rq->max_conns) {
                continue;
            }
            c = json_object();
            if (c == NULL) {
                continue;
            }
            proc_tcp_endpoint(t.local, v6, t.lport, local, sizeof(local));
            proc_tcp_endpoint(t.remote, v6, t.rport, remote, sizeof(remote));
            proc_set(c, "local", json_string(local));
            proc_set(c, "remote", json_string(remote));
            proc_set(c, "state",
                     json_string(proc_tcp_state_name(t.state)
                                     ? proc_tcp_state_name(t.state)
                                     : "unknown"));
            proc_set(c, "tx_queue", proc_json_u64(t.tx_queue));
            proc_set(c, "rx_queue", proc_json_u64(t.rx_queue));
            proc_set(c, "inode", proc_json_u64(t.inode));
            json_array_append_new(list, c);
        }
        proc_lines_close(&l);
    }
    for (i = 1; i < PROC_TCP_NSTATES; i++) {
        if (by_state[i] > 0) {
            proc_set(states, proc_tcp_state_name(i),
                     proc_json_u64(by_state[i]));
        }
    }
    proc_set(o, "total", proc_json_u64(total));
    proc_set(o, "by_state", states);
    proc_set(o, "connections", list);
    return o;
}

struct proc_thread_row {
    int tid;
    char name[PROC_COMM_MAX];
    char state;
    uint64_t utime, stime;
    double cpu;
};

static int proc_thread_by_cpu(const void *a, const void *b)
{
    const struct proc_thread_row *x = a, *y = b;

    if (x->cpu != y->cpu) {
        return x->cpu < y->cpu ? 1 : -1;
    }
    return (x->tid > y->tid) - (x->tid < y->tid);
}

static json_t *proc_snap_threads(struct proc_req *rq, int pfd, double *proc_cpu)
{
    struct proc_thread_row *rows = NULL;
    size_t n = 0, cap = 0, i;
    struct proc_dir d;
    const char *ent;
    json_t *o, *list;
    int tfd = proc_dir_open(pfd, "task");

    *proc_cpu = 0.0;
    if (tfd < 0) {
        return json_null();
    }
    proc_dir_init(&d, tfd, rq->dbuf, PROC_DBUF_SIZE);
    while ((ent = proc_dir_next(&d, NULL)) != NULL) {
        struct proc_stat st;
        char path[48];
        int tid;
        int64_t t2;

        if (!proc_name_pid(ent, &tid)) {
            continue;
        }
        snprintf(path, sizeof(path), "%s/stat", ent);
        t2 = proc_clock();
        if (proc_read_stat(rq, tfd, path, &st) != 0) {
            continue;
        }
        if (n == cap) {
            struct proc_thread_row *p;

            if (cap >= PROC_SCAN_MAX) {
                break;
            }
            cap = cap ? cap * 2 : 64;
            p = realloc(rows, cap * sizeof(*p));
            if (p == NULL) {
                break;
            }
            rows = p;
        }
        rows[n].tid = tid;
        snprintf(rows[n].name, sizeof(rows[n].name), "%s", st.comm);
        rows[n].state = st.state;
        rows[n].utime = st.utime;
        rows[n].stime = st.stime;
        rows[n].cpu = rq->sample_ms > 0 ? proc_cpu_pct(rq, tid, st.starttime,
                                                       st.utime + st.stime, t2)
                                        : 0.0;
        *proc_cpu += rows[n].cpu;
        n++;
    }
    close(tfd);
    if (rq->sample_ms > 0 && n > 1) {
        qsort(rows, n, sizeof(*rows), proc_thread_by_cpu);
    }
    o = json_object();
    list = json_array();
    if (o == NULL || list == NULL) {
        free(rows);
        json_decref(o);
        json_decref(list);
        return NULL;
    }
    for (i = 0; i < n && i < (size_t)rq->max_threads; i++) {
        json_t *t = json_object();
        char st[2] = {rows[i].state, '\0'};

        if (t == NULL) {
            continue;
        }
        proc_set(t, "tid", json_integer(rows[i].tid));
        proc_set(t, "name", proc_json_str(rows[i].name));
        proc_set(t, "state", json_string(st));
        proc_set(t, "cpu_pct",
                 rq->sample_ms > 0 ? json_real(rows[i].cpu) : json_null());
        proc_set(t, "user_s",
                 json_real((double)rows[i].utime / (double)rq->clk_tck));
        proc_set(t, "system_s",
                 json_real((double)rows[i].stime / (double)rq->clk_tck));
        json_array_append_new(list, t);
    }
    proc_set(o, "count", json_integer((json_int_t)n));
    proc_set(o, "truncated", json_boolean(n > (size_t)rq->max_threads));
    proc_set(o, "list", list);
    free(rows);
    return o;
}

/* A link's target ("exe", "cwd") or null. */
static json_t *proc_snap_link(int pfd, const char *name)
{
    char link[PATH_MAX];
    ssize_t n = readlinkat(pfd, name, link, sizeof(link) - 1);

    if (n < 0) {
        return json_null();
    }
    link[n] = '\0';
    return proc_json_str(link);
}

static json_t *proc_snap_one(struct proc_req *rq, int pid, uint64_t btime)
{
    struct proc_status status;
    struct proc_stat st;
    uint64_t *socks = NULL;
    size_t nsocks = 0;
    double cpu = 0.0;
    char name[16], state[32];
    json_t *o, *c;
    int pfd;

    snprintf(name, sizeof(name), "%d", pid);
    pfd = proc_dir_open(rq->root_fd, name);
    if (pfd < 0) {
        return NULL;
    }
    if (proc_read_stat(rq, pfd, "stat", &st) != 0) {
        close(pfd);
        return NULL;
    }
    o = json_object();
    if (o == NULL) {
        close(pfd);
        return NULL;
    }
    proc_set(o, "pid", json_integer(pid));
    proc_set(o, "ppid", json_integer(st.ppid));
    proc_set(o, "name", proc_json_str(st.comm));
    snprintf(state, sizeof(state), "%c (%s)", st.state,
             proc_state_name(st.state));
    proc_set(o, "state", json_string(state));
    proc_set(o, "start_time",
             btime > 0
                 ? json_integer((json_int_t)(btime + st.starttime /
                                                         (uint64_t)rq->clk_tck))
                 : json_null());
    proc_set(o, "cmdline",
             proc_json_str(proc_read_cmdline(rq, pfd, PROC_CMDLINE_SNAPSHOT)));
    proc_set(o, "exe", proc_snap_link(pfd, "exe"));
    proc_set(o, "cwd", proc_snap_link(pfd, "cwd"));

    proc_set(o, "threads", proc_snap_threads(rq, pfd, &cpu));
    c = json_object();
    if (c != NULL) {
        proc_set(c, "user_s",
                 json_real((double)st.utime / (double)rq->clk_tck));
        proc_set(c, "system_s",
                 json_real((double)st.stime / (double)rq->clk_tck));
        proc_set(c, "pct", rq->sample_ms > 0 ? json_real(cpu) : json_null());
    }
    proc_set(o, "cpu", c);

    if (proc_read_at(pfd, "status", rq->rbuf, PROC_RBUF_SIZE, NULL) >= 0) {
        char copy[PROC_RBUF_SIZE > 8192 ? 8192 : PROC_RBUF_SIZE];

        snprintf(copy, sizeof(copy), "%s", rq->rbuf);
        if (proc_status_parse(copy, &status) == 0 &&
            (status.have & PROC_ST_UID)) {
            proc_set(o, "uid", json_integer(status.uid));
            proc_set(o, "user", proc_json_str(proc_user_name(rq, status.uid)));
        }
        proc_set(o, "status", proc_kv_json(rq->rbuf, 0));
    } else {
        proc_set(o, "status", json_null());
    }
    proc_set(o, "fds", proc_snap_fds(rq, pfd, &socks, &nsocks));
    proc_set(o, "tcp", proc_snap_tcp(rq, pid, socks, nsocks));
    free(socks);
    proc_set(o, "limits", proc_snap_limits(rq, pfd));
    if (proc_read_at(pfd, "smaps_rollup", rq->rbuf, PROC_RBUF_SIZE, NULL) >=
        0) {
        proc_set(o, "smaps_rollup", proc_kv_json(rq->rbuf, 1));
    } else {
        proc_set(o, "smaps_rollup", json_null());
    }
    if (proc_read_at(pfd, "io", rq->rbuf, PROC_RBUF_SIZE, NULL) >= 0) {
        proc_set(o, "io", proc_kv_json(rq->rbuf, 0));
    } else {
        proc_set(o, "io", json_null());
    }
    close(pfd);
    return o;
}

static void proc_snap_sample2(struct proc_req *rq)
{
    json_t *root = json_object(), *list = json_array(), *missing = json_array();
    uint64_t btime = proc_btime(rq);
    size_t i;

    if (root == NULL || list == NULL || missing == NULL) {
        json_decref(root);
        json_decref(list);
        json_decref(missing);
        rq->status = VIGIL_ENOMEM;
        return;
    }
    proc_set(root, "instance",
             rq->instance[0] != '\0' ? proc_json_str(rq->instance)
                                     : json_null());
    proc_set(root, "sample_ms", json_integer(rq->sample_ms));
    for (i = 0; i < rq->npids; i++) {
        json_t *p = proc_snap_one(rq, rq->pids[i], btime);

        if (p != NULL) {
            json_array_append_new(list, p);
        } else {
            json_array_append_new(missing, json_integer(rq->pids[i]));
        }
    }
    proc_set(root, "processes", list);
    proc_set(root, "missing", missing);
    if (json_array_size(list) == 0) {
        json_decref(root);
        if (rq->npids == 1) {
            proc_err_json(rq, VIGIL_ENOENT, "no process %d", rq->pids[0]);
        } else {
            proc_err_json(rq, VIGIL_ENOENT,
                          "none of the group's %zu processes is running now",
                          rq->npids);
        }
        return;
    }
    proc_finish_json(rq, root);
}

/* ------------------------------------------------------------------------
 * Request life cycle (loop side).
 */

static void proc_req_free_mem(struct proc_req *rq)
{
    free(rq->pids);
    free(rq->t1);
    free(rq->rbuf);
    free(rq->dbuf);
    free(rq->lbuf);
    free(rq->json);
    free(rq);
}

static void proc_req_closed(uv_handle_t *h)
{
    proc_req_free_mem(h->data);
}

/* Unlink and free, after the timer (if any) has closed. */
static void proc_req_free(struct proc_req *rq)
{
    struct proc_req **pp;

    for (pp = &rq->s->reqs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == rq) {
            *pp = rq->next;
            break;
        }
    }
    if (rq->timer_open) {
        rq->timer_open = 0;
        uv_close((uv_handle_t *)&rq->timer, proc_req_closed);
        return;
    }
    proc_req_free_mem(rq);
}

/* Reply once, with rq->json when given. */
static void proc_req_reply(struct proc_req *rq, int status, const char *json)
{
    if (rq->req == NULL) {
        return;
    }
    rq->s->host->reply(rq->req, status, json);
    rq->req = NULL;
}

static void proc_req_fail(struct proc_req *rq, int status, const char *msg)
{
    json_t *o = json_object();
    char *text = NULL;

    if (o != NULL) {
        proc_set(o, "error", proc_json_str(msg));
        text = json_dumps(o, PROC_JSON_FLAGS);
        json_decref(o);
    }
    proc_req_reply(rq, status, text);
    free(text);
}

static void proc_work1(void *arg)
{
    struct proc_req *rq = arg;

    if (rq->kind == PROC_DIAG_TOP) {
        proc_top_sample1(rq);
    } else {
        proc_snap_sample1(rq);
    }
}

static void proc_work2(void *arg)
{
    struct proc_req *rq = arg;

    if (rq->kind == PROC_DIAG_TOP) {
        proc_top_sample2(rq);
    } else {
        proc_snap_sample2(rq);
    }
}

static void proc_after2(void *arg, int status)
{
    struct proc_req *rq = arg;

    if (status != 0) {
        proc_req_fail(rq, status, "the diagnostic was canceled");
    } else if (rq->status != 0 && rq->json == NULL) {
        proc_req_fail(rq, rq->status, vigil_error_text(rq->status));
    } else {
        proc_req_reply(rq, rq->status, rq->json);
    }
    proc_req_free(rq);
}

static int proc_start_work2(struct proc_req *rq)
{
    int rc;

    rq->phase = PROC_RQ_WORK2;
    rc = rq->s->host->work(rq->s->inst, proc_work2, proc_after2, rq);
    return rc;
}

static void proc_timer_cb(uv_timer_t *t)
{
    struct proc_req *rq = t->data;
    int rc;

    if (rq->req == NULL) {
        /* Canceled or replied meanwhile (the timer is then closing). */
        return;
    }
    rc = proc_start_work2(rq);
    if (rc != 0) {
        proc_req_fail(rq, rc, "cannot queue the /proc scan");
        proc_req_free(rq);
    }
}

static void proc_after1(void *arg, int status)
{
    struct proc_req *rq = arg;
    int rc;

    if (rq->req == NULL) {
        proc_req_free(rq);
        return;
    }
    if (status != 0) {
        proc_req_fail(rq, status, "the diagnostic was canceled");
        proc_req_free(rq);
        return;
    }
    rq->phase = PROC_RQ_TIMER;
    rc = uv_timer_init(rq->s->host->loop(rq->s->inst), &rq->timer);
    if (rc == 0) {
        rq->timer_open = 1;
        rq->timer.data = rq;
        rc = uv_timer_start(&rq->timer, proc_timer_cb, (uint64_t)rq->sample_ms,
                            0);
    }
    if (rc != 0) {
        proc_req_fail(rq, VIGIL_EIO, "cannot start the sampling timer");
        proc_req_free(rq);
    }
}

/* Start a parsed request: sample, wait, sample; or straight to the full
 * scan when there is nothing to sample. */
static int proc_req_start(struct proc_req *rq)
{
    int rc;

    rq->rbuf = malloc(PROC_RBUF_SIZE);
    rq->dbuf = malloc(PROC_DBUF_SIZE);
    rq->lbuf = malloc(PROC_LBUF_SIZE);
    if (rq->rbuf == NULL || rq->dbuf == NULL || rq->lbuf == NULL) {
        return VIGIL_ENOMEM;
    }
    /* Listed first: a host may complete (and free) it before work()
     * returns. */
    rq->next = rq->s->reqs;
    rq->s->reqs = rq;
    if (rq->sample_ms > 0) {
        rq->phase = PROC_RQ_WORK1;
        rc = rq->s->host->work(rq->s->inst, proc_work1, proc_after1, rq);
    } else {
        rc = proc_start_work2(rq);
    }
    if (rc != 0) {
        rq->s->reqs = rq->next;
        return rc;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Arguments.
 */

/* An integer argument within [min, max]; *out keeps its default when the
 * key is absent. Returns 0, or -1 after writing why into err. */
static int proc_arg_int(json_t *args, const char *key, long min, long max,
                        long *out, char *err, size_t size)
{
    json_t *v = json_object_get(args, key);

    if (v == NULL) {
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min ||
        json_integer_value(v) > max) {
        snprintf(err, size, "\"%s\": expected an integer from %ld to %ld", key,
                 min, max);
        return -1;
    }
    *out = (long)json_integer_value(v);
    return 0;
}

/* Refuse keys not in allowed (NULL-terminated). */
static int proc_arg_known(json_t *args, const char *const *allowed, char *err,
                          size_t size)
{
    const char *key;
    json_t *v;

    json_object_foreach(args, key, v)
    {
        size_t i;
        int ok = 0;

        (void)v;
        for (i = 0; allowed[i] != NULL; i++) {
            ok |= strcmp(key, allowed[i]) == 0;
        }
        if (!ok) {
            snprintf(err, size, "unknown argument \"%s\"", key);
            return -1;
        }
    }
    return 0;
}

/* Parse args_json into an object (an empty text or "null" is {}). */
static json_t *proc_args(const char *args_json, char *err, size_t size)
{
    json_error_t je;
    json_t *a;

    if (args_json == NULL || args_json[0] == '\0') {
        return json_object();
    }
    a = json_loads(args_json, JSON_DECODE_ANY, &je);
    if (a == NULL) {
        snprintf(err, size, "arguments are not JSON: %s (column %d)", je.text,
                 je.column);
        return NULL;
    }
    if (json_is_null(a)) {
        json_decref(a);
        return json_object();
    }
    if (!json_is_object(a)) {
        json_decref(a);
        snprintf(err, size, "arguments must be a JSON object");
        return NULL;
    }
    return a;
}

static struct proc_req *proc_req_new(struct proc *s, vigil_request *req,
                                     int kind)
{
    struct proc_req *rq = calloc(1, sizeof(*rq));

    if (rq == NULL) {
        return NULL;
    }
    rq->s = s;
    rq->req = req;
    rq->kind = kind;
    rq->proc_root = s->proc_root;
    rq->root_fd = s->root_fd;
    rq->clk_tck = s->clk_tck;
    rq->page_size = s->page_size;
    rq->sample_ms = PROC_SAMPLE_DEF_MS;
    rq->limit = PROC_TOP_LIMIT_DEF;
    rq->max_procs = PROC_SNAP_PROCS_DEF;
    rq->max_files = PROC_SNAP_FILES_DEF;
    rq->max_conns = PROC_SNAP_CONNS_DEF;
    rq->max_threads = PROC_SNAP_THREADS_DEF;
    return rq;
}

/* Reply with an error to a request that never started, and free it. The
 * ABI allows returning the code instead, but then the caller would not
 * learn why. */
static int proc_req_refuse(struct proc_req *rq, int status, const char *msg)
{
    proc_req_fail(rq, status, msg);
    proc_req_free_mem(rq);
    return 0;
}

static int proc_top_run(void *state, const char *args_json, vigil_request *req)
{
    static const char *const allowed[] = {"by", "limit", "sample_ms", NULL};
    struct proc *s = state;
    struct proc_req *rq;
    char err[512] = "";
    json_t *args, *by;
    int rc;

    if (s->stopped) {
        return VIGIL_ESTATE;
    }
    rq = proc_req_new(s, req, PROC_DIAG_TOP);
    if (rq == NULL) {
        return VIGIL_ENOMEM;
    }
    args = proc_args(args_json, err, sizeof(err));
    if (args == NULL || proc_arg_known(args, allowed, err, sizeof(err)) != 0 ||
        proc_arg_int(args, "limit", 1, PROC_TOP_LIMIT_MAX, &rq->limit, err,
                     sizeof(err)) != 0 ||
        proc_arg_int(args, "sample_ms", 1, PROC_SAMPLE_MAX_MS, &rq->sample_ms,
                     err, sizeof(err)) != 0) {
        json_decref(args);
        return proc_req_refuse(rq, VIGIL_EINVAL, err);
    }
    by = json_object_get(args, "by");
    if (by != NULL) {
        const char *b = json_string_value(by);

        if (b != NULL && strcmp(b, "cpu") == 0) {
            rq->by_mem = 0;
        } else if (b != NULL && strcmp(b, "memory") == 0) {
            rq->by_mem = 1;
        } else {
            json_decref(args);
            return proc_req_refuse(rq, VIGIL_EINVAL,
                                   "\"by\": expected \"cpu\" or \"memory\"");
        }
    }
    json_decref(args);
    rc = proc_req_start(rq);
    if (rc != 0) {
        return proc_req_refuse(rq, rc, "cannot start the /proc scan");
    }
    return 0;
}

/* The group's processes at the last collection of instance p. */
static int proc_snap_group(struct proc_req *rq, struct proc *p, char *err,
                           size_t size)
{
    size_t n = p->nlast;

    snprintf(rq->instance, sizeof(rq->instance), "%s",
             p->host->instance_name(p->inst));
    if (n == 0) {
        snprintf(err, size,
                 "instance %s: no process in the group at the last "
                 "collection",
                 rq->instance);
        return VIGIL_ENOENT;
    }
    if (n > (size_t)rq->max_procs) {
        n = (size_t)rq->max_procs;
    }
    rq->pids = malloc(n * sizeof(*rq->pids));
    if (rq->pids == NULL) {
        snprintf(err, size, "out of memory");
        return VIGIL_ENOMEM;
    }
    memcpy(rq->pids, p->last_pids, n * sizeof(*rq->pids));
    rq->npids = n;
    return 0;
}

static int proc_snapshot_run(void *state, const char *args_json,
                             vigil_request *req)
{
    static const char *const allowed[] = {
        "pid",       "instance",        "sample_ms",   "max_processes",
        "max_files", "max_connections", "max_threads", NULL};
    struct proc *s = state;
    struct proc_req *rq;
    char err[512] = "";
    json_t *args, *inst;
    long pid = 0;
    int rc;

    if (s->stopped) {
        return VIGIL_ESTATE;
    }
    rq = proc_req_new(s, req, PROC_DIAG_SNAPSHOT);
    if (rq == NULL) {
        return VIGIL_ENOMEM;
    }
    args = proc_args(args_json, err, sizeof(err));
    if (args == NULL || proc_arg_known(args, allowed, err, sizeof(err)) != 0 ||
        proc_arg_int(args, "pid", 1, INT32_MAX, &pid, err, sizeof(err)) != 0 ||
        proc_arg_int(args, "sample_ms", 0, PROC_SAMPLE_MAX_MS, &rq->sample_ms,
                     err, sizeof(err)) != 0 ||
        proc_arg_int(args, "max_processes", 1, 1000, &rq->max_procs, err,
                     sizeof(err)) != 0 ||
        proc_arg_int(args, "max_files", 0, 100000, &rq->max_files, err,
                     sizeof(err)) != 0 ||
        proc_arg_int(args, "max_connections", 0, 100000, &rq->max_conns, err,
                     sizeof(err)) != 0 ||
        proc_arg_int(args, "max_threads", 0, 100000, &rq->max_threads, err,
                     sizeof(err)) != 0) {
        json_decref(args);
        return proc_req_refuse(rq, VIGIL_EINVAL, err);
    }
    inst = json_object_get(args, "instance");
    if (pid > 0 && inst != NULL) {
        json_decref(args);
        return proc_req_refuse(rq, VIGIL_EINVAL,
                               "give \"pid\" or \"instance\", not both");
    }
    if (pid > 0) {
        rq->pids = malloc(sizeof(*rq->pids));
        if (rq->pids == NULL) {
            json_decref(args);
            return proc_req_refuse(rq, VIGIL_ENOMEM, "out of memory");
        }
        rq->pids[0] = (int)pid;
        rq->npids = 1;
    } else {
        struct proc *p = s;

        if (inst != NULL) {
            const char *name = json_string_value(inst);

            p = name != NULL ? proc_instance_find(name) : NULL;
            if (p == NULL) {
                snprintf(err, sizeof(err), "\"instance\": no proc instance %s",
                         name != NULL ? name : "(not a string)");
                json_decref(args);
                return proc_req_refuse(rq, VIGIL_EINVAL, err);
            }
        }
        rc = proc_snap_group(rq, p, err, sizeof(err));
        if (rc != 0) {
            json_decref(args);
            return proc_req_refuse(rq, rc, err);
        }
    }
    json_decref(args);
    rc = proc_req_start(rq);
    if (rc != 0) {
        return proc_req_refuse(rq, rc, "cannot start the /proc scan");
    }
    return 0;
}

static void proc_diag_cancel(void *state, vigil_request *req)
{
    struct proc *s = state;
    struct proc_req *rq;

    for (rq = s->reqs; rq != NULL; rq = rq->next) {
        if (rq->req == req) {
            rq->req = NULL;
            if (rq->phase == PROC_RQ_TIMER) {
                /* Nothing else will run for it. */
                uv_timer_stop(&rq->timer);
                proc_req_free(rq);
            }
            /* Otherwise its work is running; proc_after* frees it. */
            return;
        }
    }
}

static const struct vigil_diag proc_diag_top = {
    .name = "proc.top",
    .help = "the host's processes by CPU or memory, like top",
    .args = "{\"by\": \"cpu\"|\"memory\" (cpu), \"limit\": N (20, at most "
            "1000), \"sample_ms\": CPU sampling interval (250, 1 to 10000)}",
    .is_action = 0,
    .run = proc_top_run,
    .cancel = proc_diag_cancel,
};

static const struct vigil_diag proc_diag_snapshot = {
    .name = "proc.snapshot",
    .help = "threads, fds, TCP connections, limits, memory and status of a "
            "process or of a proc instance's group (ps, lsof, netstat)",
    .args = "{\"pid\": N | \"instance\": NAME (default: this instance's "
            "group), \"sample_ms\": thread CPU sampling (250; 0 = none), "
            "\"max_processes\": 20, \"max_files\": 20, "
            "\"max_connections\": 100, \"max_threads\": 200}",
    .is_action = 0,
    .run = proc_snapshot_run,
    .cancel = proc_diag_cancel,
};

/*
 * Register the diagnostics once per vigil process; see proc.h.
 */
int proc_diag_register(struct proc *s)
{
    struct proc *p;
    int rc;

    for (p = proc_instances(); p != NULL; p = p->next) {
        if (p != s && p->diag_owner) {
            return 0;
        }
    }
    rc = s->host->register_diag(s->inst, &proc_diag_top);
    if (rc == VIGIL_EEXIST) {
        /* Registered by an instance of an earlier configuration. */
        return 0;
    }
    if (rc != 0) {
        return rc;
    }
    rc = s->host->register_diag(s->inst, &proc_diag_snapshot);
    if (rc != 0 && rc != VIGIL_EEXIST) {
        return rc;
    }
    s->diag_owner = 1;
    return 0;
}

/*
 * Cancel the requests in flight; see proc.h.
 */
void proc_diag_stop(struct proc *s)
{
    struct proc_req *rq = s->reqs, *next;

    for (; rq != NULL; rq = next) {
        next = rq->next;
        proc_req_fail(rq, VIGIL_ECANCELED, "vigil is stopping");
        if (rq->phase == PROC_RQ_TIMER) {
            uv_timer_stop(&rq->timer);
            proc_req_free(rq);
        }
    }
}
