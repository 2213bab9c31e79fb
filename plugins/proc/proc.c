/*
 * proc.c - the proc probe plugin: CPU, memory, threads, fds, context
 * switches, I/O and TCP connections of a group of processes, chosen by
 * name, command-line regex, pidfile or cgroup, summed per group and, for
 * up to max_processes of them, published per process.
 *
 * Published on every collection (series labelled pid and name are the
 * per-process ones; the group's carry only the core's instance label):
 *
 *   proc.cpu.{user,system,total}_pct      % of one core
 *   proc.mem.{rss,vms,swap}_bytes
 *   proc.threads.count
 *   proc.fd.open, proc.fd.limit, proc.fd.usage_pct
 *   proc.ctxsw.{voluntary,involuntary}_per_s
 *   proc.io.{read,write}_bytes_per_s      storage (read_bytes, write_bytes)
 *   proc.io.logical_{read,write}_bytes_per_s   read()/write() (rchar, wchar)
 *   proc.tcp.connections {state}
 *   proc.group.processes, proc.group.restarts_total   group only
 *
 * For the group, fd.limit is the lowest soft limit and fd.usage_pct the
 * highest usage among its processes (the one nearest its limit); every
 * other figure is a sum. Rates come from two readings of the same
 * process (same pid and start time) over the real time between them, so a
 * new process only primes them; a counter that went back skips the
 * interval.
 *
 * collect() queues proc_scan_work() (proc_scan.c) on the thread pool and
 * returns VIGIL_PENDING; proc_scan_after() publishes on the loop and calls
 * host->collect_done(): VIGIL_ENOENT, with host->error() naming the
 * selectors that matched nothing, when the group is empty, so that the
 * core's proc.up is 0.
 *
 * Memory: tables are sized in init() (see proc.h); series are interned on
 * their first publication and their ids kept, so that in steady state a
 * collection allocates nothing and asks the core for nothing but
 * publish().
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proc.h"

static const struct vigil_option proc_options[] = {
    {.key = "name",
     .type = VIGIL_OPT_LIST,
     .offset = offsetof(struct proc_config, name),
     .help = "select processes whose comm (as in ps -o comm) is exactly "
             "this; repeat for several"},
    {.key = "cmdline",
     .type = VIGIL_OPT_LIST,
     .offset = offsetof(struct proc_config, cmdline),
     .help = "select processes whose command line (arguments joined by "
             "spaces) matches this POSIX extended regex; repeat for several"},
    {.key = "pidfile",
     .type = VIGIL_OPT_STRING,
     .offset = offsetof(struct proc_config, pidfile),
     .help = "select the process whose pid this file holds (absolute "
             "path, read on every collection)"},
    {.key = "cgroup",
     .type = VIGIL_OPT_STRING,
     .offset = offsetof(struct proc_config, cgroup),
     .help = "select the processes of this cgroup and its sub-cgroups: a "
             "cgroup v2 path such as /system.slice/x.service, or a "
             "directory under /sys/fs/cgroup (v1 or v2)"},
    {.key = "user",
     .type = VIGIL_OPT_LIST,
     .offset = offsetof(struct proc_config, user),
     .help = "keep only processes running as these users (names or "
             "uids; effective uid)"},
    {.key = "per_process",
     .type = VIGIL_OPT_BOOL,
     .def = "yes",
     .offset = offsetof(struct proc_config, per_process),
     .help = "also publish each process's series, labelled pid and name"},
    {.key = "max_processes",
     .type = VIGIL_OPT_INT,
     .def = "50",
     .offset = offsetof(struct proc_config, max_processes),
     .help = "at most this many processes get per-process series"},
    {.key = "max_tracked",
     .type = VIGIL_OPT_INT,
     .def = "1024",
     .offset = offsetof(struct proc_config, max_tracked),
     .help = "processes measured per collection; more are only counted"},
    {.key = "max_sockets",
     .type = VIGIL_OPT_INT,
     .def = "16384",
     .offset = offsetof(struct proc_config, max_sockets),
     .help = "sockets of the group mapped to TCP states per collection"},
    {.key = "tcp",
     .type = VIGIL_OPT_BOOL,
     .def = "yes",
     .offset = offsetof(struct proc_config, tcp),
     .help = "count TCP connections by state (reads every fd link and "
             "net/tcp, net/tcp6)"},
    {.key = "proc_root",
     .type = VIGIL_OPT_STRING,
     .def = "/proc",
     .offset = offsetof(struct proc_config, proc_root),
     .help = "where procfs is mounted (tests point it at fixtures)"},
    {.key = NULL},
};

const char *const proc_metric_names[PROC_NMETRICS] = {
    [PROC_M_CPU_USER] = "proc.cpu.user_pct",
    [PROC_M_CPU_SYSTEM] = "proc.cpu.system_pct",
    [PROC_M_CPU_TOTAL] = "proc.cpu.total_pct",
    [PROC_M_RSS] = "proc.mem.rss_bytes",
    [PROC_M_VMS] = "proc.mem.vms_bytes",
    [PROC_M_SWAP] = "proc.mem.swap_bytes",
    [PROC_M_THREADS] = "proc.threads.count",
    [PROC_M_FD_OPEN] = "proc.fd.open",
    [PROC_M_FD_LIMIT] = "proc.fd.limit",
    [PROC_M_FD_USAGE] = "proc.fd.usage_pct",
    [PROC_M_CTXSW_VOL] = "proc.ctxsw.voluntary_per_s",
    [PROC_M_CTXSW_INVOL] = "proc.ctxsw.involuntary_per_s",
    [PROC_M_IO_READ] = "proc.io.read_bytes_per_s",
    [PROC_M_IO_WRITE] = "proc.io.write_bytes_per_s",
    [PROC_M_IO_LREAD] = "proc.io.logical_read_bytes_per_s",
    [PROC_M_IO_LWRITE] = "proc.io.logical_write_bytes_per_s",
};

#define PROC_TCP_SERIES "proc.tcp.connections"

/* TCP states published even before they are first seen. */
#define PROC_TCP_ALWAYS ((1u << PROC_TCP_ESTABLISHED) | (1u << PROC_TCP_LISTEN))

/* Every live instance, for proc.snapshot's "instance" argument and for
 * registering the diagnostics once. Loop thread only. */
static struct proc *proc_all;

/*
 * The live instances; see proc.h.
 */
struct proc *proc_instances(void)
{
    return proc_all;
}

/*
 * The instance named name; see proc.h.
 */
struct proc *proc_instance_find(const char *name)
{
    struct proc *p;

    for (p = proc_all; p != NULL; p = p->next) {
        if (strcmp(p->host->instance_name(p->inst), name) == 0) {
            return p;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------------
 * Publishing.
 */

/* Publish v on the series, interning it the first time. A series the core
 * refuses (limit reached, a label it rejects) is tried again next time
 * and logged once. */
static void proc_emit(struct proc *s, struct proc_sid *sid, const char *name,
                      const struct vigil_label *labels, size_t nlabels,
                      double v)
{
    if (!sid->ok) {
        int rc = s->host->series(s->inst, name, labels, nlabels, &sid->id);

        if (rc != 0) {
            if (!s->logged_series) {
                s->logged_series = 1;
                s->host->log(
                    s->inst, VIGIL_LOG_WARN,
                    "cannot create series %s%s%s%s%s: %s; it and "
                    "any others refused are not published",
                    name, nlabels > 0 ? "{" : "",
                    nlabels > 0 ? labels[0].key : "", nlabels > 0 ? "=" : "",
                    nlabels > 0 ? labels[0].value : "", vigil_error_text(rc));
            }
            return;
        }
        sid->ok = 1;
    }
    /* 0: the core stamps the sample. Published from the work's
     * completion, after collect() returned, so that is "now" unless the
     * core stamps a pending collection's samples with its boundary. */
    s->host->publish(s->inst, sid->id, 0, v);
}

/* The figures of one process for this collection; have[i] says which of
 * v[i] exist. */
struct proc_values {
    double v[PROC_NMETRICS];
    int have[PROC_NMETRICS];
};

static void proc_values_of(const struct proc *s, const struct proc_slot *p,
                           struct proc_values *out)
{
    const struct proc_reading *c = &p->cur, *o = &p->prev;
    double tick_pct = 100.0 / (double)s->clk_tck;
    int64_t dt = c->ts_ns - o->ts_ns;
    double u, y;

    memset(out, 0, sizeof(*out));
#define PROC_SET(i, x)                                                         \
    do {                                                                       \
        out->v[i] = (x);                                                       \
        out->have[i] = 1;                                                      \
    } while (0)
    PROC_SET(PROC_M_RSS, (double)c->rss);
    PROC_SET(PROC_M_VMS, (double)c->vms);
    PROC_SET(PROC_M_SWAP, (double)c->swap);
    PROC_SET(PROC_M_THREADS, (double)c->threads);
    if (c->fd_ok) {
        PROC_SET(PROC_M_FD_OPEN, (double)c->fds);
    }
    if (c->fd_limit != 0 && c->fd_limit != PROC_UNLIMITED) {
        PROC_SET(PROC_M_FD_LIMIT, (double)c->fd_limit);
        if (c->fd_ok) {
            PROC_SET(PROC_M_FD_USAGE,
                     100.0 * (double)c->fds / (double)c->fd_limit);
        }
    }
    if (!p->have_prev) {
        return;
    }
    if (proc_rate(o->utime, c->utime, dt, tick_pct, &u) &&
        proc_rate(o->stime, c->stime, dt, tick_pct, &y)) {
        PROC_SET(PROC_M_CPU_USER, u);
        PROC_SET(PROC_M_CPU_SYSTEM, y);
        PROC_SET(PROC_M_CPU_TOTAL, u + y);
    }
    if (c->ctxsw_ok && o->ctxsw_ok) {
        if (proc_rate(o->vcsw, c->vcsw, dt, 1.0, &u)) {
            PROC_SET(PROC_M_CTXSW_VOL, u);
        }
        if (proc_rate(o->ivcsw, c->ivcsw, dt, 1.0, &u)) {
            PROC_SET(PROC_M_CTXSW_INVOL, u);
        }
    }
    if (c->io_ok && o->io_ok) {
        if (proc_rate(o->io.read_bytes, c->io.read_bytes, dt, 1.0, &u)) {
            PROC_SET(PROC_M_IO_READ, u);
        }
        if (proc_rate(o->io.write_bytes, c->io.write_bytes, dt, 1.0, &u)) {
            PROC_SET(PROC_M_IO_WRITE, u);
        }
        if (proc_rate(o->io.rchar, c->io.rchar, dt, 1.0, &u)) {
            PROC_SET(PROC_M_IO_LREAD, u);
        }
        if (proc_rate(o->io.wchar, c->io.wchar, dt, 1.0, &u)) {
            PROC_SET(PROC_M_IO_LWRITE, u);
        }
    }
#undef PROC_SET
}

/* Add one process's figures to the group's. */
static void proc_values_add(struct proc_values *g, const struct proc_values *v)
{
    int i;

    for (i = 0; i < PROC_NMETRICS; i++) {
        if (!v->have[i]) {
            continue;
        }
        if (!g->have[i]) {
            g->v[i] = v->v[i];
        } else if (i == PROC_M_FD_LIMIT) {
            g->v[i] = v->v[i] < g->v[i] ? v->v[i] : g->v[i];
        } else if (i == PROC_M_FD_USAGE) {
            g->v[i] = v->v[i] > g->v[i] ? v->v[i] : g->v[i];
        } else {
            g->v[i] += v->v[i];
        }
        g->have[i] = 1;
    }
}

/* Replace control characters, which the core refuses in label values. */
static void proc_label_clean(char *out, size_t size, const char *in)
{
    size_t i;

    for (i = 0; i + 1 < size && in[i] != '\0'; i++) {
        unsigned char c = (unsigned char)in[i];

        out[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    out[i] = '\0';
    if (i == 0 && size > 1) {
        snprintf(out, size, "?");
    }
}

static void proc_publish_process(struct proc *s, struct proc_slot *p,
                                 const struct proc_values *v)
{
    struct proc_series *ser = &s->series[p->series - 1];
    char pid[16], name[PROC_COMM_MAX];
    struct vigil_label labels[3] = {{"pid", pid}, {"name", name}};
    int i;

    snprintf(pid, sizeof(pid), "%d", p->pid);
    proc_label_clean(name, sizeof(name), p->name);
    for (i = 0; i < PROC_NMETRICS; i++) {
        if (v->have[i]) {
            proc_emit(s, &ser->m[i], proc_metric_names[i], labels, 2, v->v[i]);
        }
    }
    if (!p->cur.tcp_ok) {
        return;
    }
    labels[2].key = "state";
    for (i = 1; i < PROC_TCP_NSTATES; i++) {
        if (p->cur.tcp[i] > 0) {
            p->tcp_seen |= 1u << i;
        }
        if ((p->tcp_seen | PROC_TCP_ALWAYS) & (1u << i)) {
            labels[2].value = proc_tcp_state_name(i);
            proc_emit(s, &ser->tcp[i], PROC_TCP_SERIES, labels, 3,
                      (double)p->cur.tcp[i]);
        }
    }
}

static void proc_publish_group(struct proc *s, const struct proc_values *g)
{
    struct vigil_label state = {"state", NULL};
    int i;

    for (i = 0; i < PROC_NMETRICS; i++) {
        /* An empty group uses nothing: its sums are 0. Its fd limit and
         * usage are unknown. */
        int zero =
            s->members == 0 && i != PROC_M_FD_LIMIT && i != PROC_M_FD_USAGE;

        if (g->have[i] || zero) {
            proc_emit(s, &s->g[i], proc_metric_names[i], NULL, 0,
                      g->have[i] ? g->v[i] : 0.0);
        }
    }
    proc_emit(s, &s->g_procs, "proc.group.processes", NULL, 0,
              (double)s->members);
    proc_emit(s, &s->g_restarts, "proc.group.restarts_total", NULL, 0,
              (double)s->restarts);
    if (!s->group_tcp_ok) {
        return;
    }
    for (i = 1; i < PROC_TCP_NSTATES; i++) {
        if (s->group_tcp[i] > 0) {
            s->g_tcp_seen |= 1u << i;
        }
        if ((s->g_tcp_seen | PROC_TCP_ALWAYS) & (1u << i)) {
            state.value = proc_tcp_state_name(i);
            proc_emit(s, &s->gtcp[i], PROC_TCP_SERIES, &state, 1,
                      (double)s->group_tcp[i]);
        }
    }
}

/* A per-process series block for a process, if any is left. */
static int proc_series_take(struct proc *s)
{
    size_t i;

    for (i = 0; s->series_used < s->nseries && i < s->nseries; i++) {
        if (!s->series[i].used) {
            memset(&s->series[i], 0, sizeof(s->series[i]));
            s->series[i].used = 1;
            s->series_used++;
            return (int)i + 1;
        }
    }
    if (s->nseries > 0 && !s->logged_noseries) {
        s->logged_noseries = 1;
        s->host->log(s->inst, VIGIL_LOG_INFO,
                     "more than max_processes (%zu) processes: the others "
                     "are only in the group's sums",
                     s->nseries);
    }
    return 0;
}

static void proc_series_release(struct proc *s, struct proc_slot *p)
{
    if (p->series > 0) {
        s->series[p->series - 1].used = 0;
        s->series_used--;
        p->series = 0;
    }
}

/* Append to msg (size PROC_MSG_MAX) with a "; " separator. */
static void proc_msg_add(char *msg, const char *fmt, ...) VIGIL_PRINTF(2, 3);
static void proc_msg_add(char *msg, const char *fmt, ...)
{
    size_t len = strlen(msg);
    va_list ap;

    if (len > 0 && len + 2 < PROC_MSG_MAX) {
        memcpy(msg + len, "; ", 3);
        len += 2;
    }
    va_start(ap, fmt);
    vsnprintf(msg + len, PROC_MSG_MAX - len, fmt, ap);
    va_end(ap);
}

/* Why the group is empty, naming each selector that matched nothing. */
static void proc_report_empty(struct proc *s)
{
    char msg[PROC_MSG_MAX] = "";
    size_t i;

    if (s->scan_msg[0] != '\0') {
        proc_msg_add(msg, "%s", s->scan_msg);
    }
    for (i = 0; i < s->cfg->name.n; i++) {
        if (s->name_hits[i] == 0) {
            proc_msg_add(msg, "name '%s' matched nothing", s->cfg->name.v[i]);
        }
    }
    for (i = 0; i < s->nre; i++) {
        if (s->re_hits[i] == 0) {
            proc_msg_add(msg, "cmdline '%s' matched nothing",
                         s->cfg->cmdline.v[i]);
        }
    }
    if (s->pidfile_msg[0] != '\0') {
        proc_msg_add(msg, "%s", s->pidfile_msg);
    }
    if (s->cgroup_msg[0] != '\0') {
        proc_msg_add(msg, "%s", s->cgroup_msg);
    }
    if (s->candidates > 0) {
        proc_msg_add(msg,
                     "%zu processes matched, but none is running%s (zombies "
                     "and processes that exited are left out)",
                     s->candidates,
                     s->nuids > 0 ? " as the configured user" : "");
    }
    s->host->error(s->inst, "no process matched: %s", msg);
}

/* Things said once per instance. */
static void proc_log_once(struct proc *s)
{
    if (s->io_denied_pid != 0 && !s->logged_io) {
        s->logged_io = 1;
        s->host->log(s->inst, VIGIL_LOG_WARN,
                     "%s/%d/io: permission denied (a process of another "
                     "user: vigil needs root or CAP_SYS_PTRACE); proc.io.* "
                     "leaves such processes out",
                     s->proc_root, s->io_denied_pid);
    }
    if (s->fd_denied_pid != 0 && !s->logged_fd) {
        s->logged_fd = 1;
        s->host->log(s->inst, VIGIL_LOG_WARN,
                     "%s/%d/fd: permission denied (a process of another "
                     "user: vigil needs root or CAP_SYS_PTRACE); proc.fd.open, "
                     "proc.fd.usage_pct and proc.tcp.* leave such processes "
                     "out",
                     s->proc_root, s->fd_denied_pid);
    }
    if (s->untracked > 0 && !s->logged_untracked) {
        s->logged_untracked = 1;
        s->host->log(s->inst, VIGIL_LOG_WARN,
                     "%zu processes beyond max_tracked (%zu) are counted in "
                     "proc.group.processes but not measured",
                     s->untracked, s->cap);
    }
    if (s->sock_lost > 0 && !s->logged_socks) {
        s->logged_socks = 1;
        s->host->log(s->inst, VIGIL_LOG_WARN,
                     "the group holds more than max_sockets (%zu) sockets; "
                     "proc.tcp.connections misses %zu of them",
                     s->socks_cap, s->sock_lost);
    }
    if (s->netns_lost > 0 && !s->logged_netns) {
        s->logged_netns = 1;
        s->host->log(s->inst, VIGIL_LOG_WARN,
                     "the group spans more than %d network namespaces; "
                     "proc.tcp.connections only covers the first %d",
                     PROC_NETNS_MAX, PROC_NETNS_MAX);
    }
}

/* The collection's completion, on the loop. */
static void proc_scan_after(void *arg, int status)
{
    struct proc *s = arg;
    struct proc_values g, v;
    int tcp_any;
    size_t i;

    s->pending = 0;
    if (status != 0) {
        s->host->collect_done(s->inst, status);
        return;
    }
    memset(&g, 0, sizeof(g));
    s->nlast = 0;
    /* The group's TCP counts mean something only if some member's fd
     * table could be read (or there is no member: then 0 is right). */
    tcp_any = 0;
    for (i = 0; i < s->cap; i++) {
        struct proc_slot *p = &s->slots[i];

        if (p->pid == 0) {
            continue;
        }
        if (p->gen != s->gen) {
            /* Gone: its series stay in the core, unpublished. */
            proc_series_release(s, p);
            p->pid = 0;
            s->free_slots[s->nfree++] = (int)i;
            continue;
        }
        if (p->fresh) {
            p->fresh = 0;
            if (s->scanned_once) {
                s->restarts++;
            }
            proc_series_release(s, p);
        }
        /* A process that found no series block when it started gets one
         * when another process exits. */
        if (p->series == 0 && s->nseries > 0) {
            p->series = proc_series_take(s);
        }
        proc_values_of(s, p, &v);
        proc_values_add(&g, &v);
        tcp_any |= p->cur.tcp_ok;
        if (p->series > 0) {
            proc_publish_process(s, p, &v);
        }
        p->prev = p->cur;
        p->have_prev = 1;
        s->last_pids[s->nlast++] = p->pid;
    }
    s->group_tcp_ok = s->cfg->tcp && (tcp_any || s->members == 0);
    proc_publish_group(s, &g);
    proc_log_once(s);
    s->scanned_once = 1;
    if (s->members == 0) {
        proc_report_empty(s);
        s->host->collect_done(s->inst, VIGIL_ENOENT);
        return;
    }
    s->host->collect_done(s->inst, 0);
}

static int proc_collect(void *state)
{
    struct proc *s = state;
    int rc;

    if (s->pending || s->stopped) {
        return VIGIL_EBUSY;
    }
    /* Set first: a host may run the work and its completion before
     * work() returns. */
    s->pending = 1;
    rc = s->host->work(s->inst, proc_scan_work, proc_scan_after, s);
    if (rc != 0) {
        s->pending = 0;
        s->host->error(s->inst, "cannot queue the /proc scan: %s",
                       vigil_error_text(rc));
        return rc;
    }
    return VIGIL_PENDING;
}

/* ------------------------------------------------------------------------
 * Life cycle.
 */

static void proc_stop(void *state)
{
    struct proc *s = state;

    s->stopped = 1;
    proc_diag_stop(s);
}

static void proc_destroy(void *state)
{
    struct proc *s = state;
    struct proc **pp;
    size_t i;

    if (s == NULL) {
        return;
    }
    for (pp = &proc_all; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    for (i = 0; i < s->nre; i++) {
        regfree(&s->re[i]);
    }
    free(s->re);
    free(s->uids);
    free(s->name_hits);
    free(s->re_hits);
    free(s->slots);
    free(s->free_slots);
    free(s->index);
    free(s->index_next);
    free(s->cand);
    free(s->socks);
    free(s->series);
    free(s->last_pids);
    free(s->rbuf);
    free(s->dbuf);
    free(s->lbuf);
    free(s->cgbuf);
    if (s->root_fd >= 0) {
        close(s->root_fd);
    }
    free(s);
}

static int proc_init_regex(struct proc *s)
{
    size_t i;

    s->nre = 0;
    if (s->cfg->cmdline.n == 0) {
        return 0;
    }
    s->re = calloc(s->cfg->cmdline.n, sizeof(*s->re));
    if (s->re == NULL) {
        return VIGIL_ENOMEM;
    }
    for (i = 0; i < s->cfg->cmdline.n; i++) {
        int rc =
            regcomp(&s->re[i], s->cfg->cmdline.v[i], REG_EXTENDED | REG_NOSUB);

        if (rc != 0) {
            char why[256];

            regerror(rc, &s->re[i], why, sizeof(why));
            s->host->log(s->inst, VIGIL_LOG_ERROR,
                         "cmdline '%s': not a POSIX extended regex: %s",
                         s->cfg->cmdline.v[i], why);
            return VIGIL_ECONFIG;
        }
        s->nre++;
    }
    return 0;
}

static int proc_init_users(struct proc *s)
{
    size_t i;

    if (s->cfg->user.n == 0) {
        return 0;
    }
    s->uids = calloc(s->cfg->user.n, sizeof(*s->uids));
    if (s->uids == NULL) {
        return VIGIL_ENOMEM;
    }
    for (i = 0; i < s->cfg->user.n; i++) {
        const char *u = s->cfg->user.v[i];
        const char *p = u;
        uint64_t id;

        if (proc_scan_u64(&p, &id) == 0 && *p == '\0' && id < UINT32_MAX) {
            s->uids[s->nuids++] = (uid_t)id;
        } else {
            struct passwd pw, *res = NULL;
            char buf[4096];

            if (getpwnam_r(u, &pw, buf, sizeof(buf), &res) != 0 ||
                res == NULL) {
                s->host->log(s->inst, VIGIL_LOG_ERROR,
                             "user '%s': no such user", u);
                return VIGIL_ECONFIG;
            }
            s->uids[s->nuids++] = res->pw_uid;
        }
    }
    return 0;
}

/* Does path begin with the directory dir (as a whole component)? */
static int proc_path_under(const char *path, const char *dir)
{
    size_t n = strlen(dir);

    while (n > 1 && dir[n - 1] == '/') {
        n--;
    }
    return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

/* Resolve the cgroup option: a directory under a mounted cgroup file
 * system is used as it is (v1 or v2); any other path is a cgroup v2 path
 * (as /proc/PID/cgroup shows it) below the cgroup2 mount point. */
static int proc_init_cgroup(struct proc *s)
{
    const char *cg = s->cfg->cgroup;
    char path[PATH_MAX], cg2[PATH_MAX] = "";
    struct proc_lines l;
    char *line;
    int absolute = 0, n;

    if (cg == NULL) {
        return 0;
    }
    if (cg[0] != '/') {
        s->host->log(s->inst, VIGIL_LOG_ERROR,
                     "cgroup '%s': expected an absolute path, such as "
                     "/system.slice/genesis.service",
                     cg);
        return VIGIL_ECONFIG;
    }
    snprintf(path, sizeof(path), "%s/self/mountinfo", s->proc_root);
    if (proc_lines_open(&l, AT_FDCWD, path, s->lbuf, PROC_LBUF_SIZE) == 0) {
        while ((line = proc_lines_next(&l)) != NULL) {
            /* id parent major:minor root mountpoint opts... - fstype ... */
            char mnt[PATH_MAX], fstype[32];
            const char *dash = strstr(line, " - ");

            if (dash == NULL ||
                sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1 ||
                sscanf(dash + 3, "%31s", fstype) != 1) {
                continue;
            }
            if (strcmp(fstype, "cgroup2") == 0 && cg2[0] == '\0') {
                snprintf(cg2, sizeof(cg2), "%s", mnt);
            }
            if ((strcmp(fstype, "cgroup") == 0 ||
                 strcmp(fstype, "cgroup2") == 0) &&
                proc_path_under(cg, mnt)) {
                absolute = 1;
            }
        }
    }
    proc_lines_close(&l);
    if (absolute || proc_path_under(cg, "/sys/fs/cgroup")) {
        n = snprintf(s->cgroup_dir, sizeof(s->cgroup_dir), "%s", cg);
    } else if (cg2[0] != '\0') {
        n = snprintf(s->cgroup_dir, sizeof(s->cgroup_dir), "%s%s",
                     strcmp(cg2, "/") == 0 ? "" : cg2, cg);
    } else {
        s->host->log(s->inst, VIGIL_LOG_ERROR,
                     "cgroup '%s': no cgroup2 file system is mounted; for "
                     "cgroup v1 give the directory, such as "
                     "/sys/fs/cgroup/memory/genesis",
                     cg);
        return VIGIL_ECONFIG;
    }
    if (n < 0 || (size_t)n >= sizeof(s->cgroup_dir)) {
        s->host->log(s->inst, VIGIL_LOG_ERROR, "cgroup '%s': path too long",
                     cg);
        return VIGIL_ECONFIG;
    }
    return 0;
}

static int proc_init_tables(struct proc *s)
{
    const struct proc_config *c = s->cfg;
    size_t i;

    s->cap = (size_t)c->max_tracked;
    s->socks_cap = c->tcp ? (size_t)c->max_sockets : 0;
    s->nseries = c->per_process ? (size_t)c->max_processes : 0;
    if (s->nseries > s->cap) {
        s->nseries = s->cap;
    }
    s->slots = calloc(s->cap, sizeof(*s->slots));
    s->free_slots = calloc(s->cap, sizeof(*s->free_slots));
    s->index = calloc(s->cap, sizeof(*s->index));
    s->index_next = calloc(s->cap, sizeof(*s->index_next));
    s->cand = calloc(2 * s->cap, sizeof(*s->cand));
    s->last_pids = calloc(s->cap, sizeof(*s->last_pids));
    s->socks = calloc(s->socks_cap ? s->socks_cap : 1, sizeof(*s->socks));
    s->series = calloc(s->nseries ? s->nseries : 1, sizeof(*s->series));
    s->name_hits = calloc(c->name.n + 1, sizeof(*s->name_hits));
    s->re_hits = calloc(c->cmdline.n + 1, sizeof(*s->re_hits));
    s->rbuf = malloc(PROC_RBUF_SIZE);
    s->dbuf = malloc(PROC_DBUF_SIZE);
    s->lbuf = malloc(PROC_LBUF_SIZE);
    s->cgbuf = malloc((PROC_CGROUP_DEPTH + 1) * (size_t)4096);
    if (s->slots == NULL || s->free_slots == NULL || s->index == NULL ||
        s->index_next == NULL || s->cand == NULL || s->last_pids == NULL ||
        s->socks == NULL || s->series == NULL || s->name_hits == NULL ||
        s->re_hits == NULL || s->rbuf == NULL || s->dbuf == NULL ||
        s->lbuf == NULL || s->cgbuf == NULL) {
        return VIGIL_ENOMEM;
    }
    /* Slots are taken from the top of the stack: lowest index first. */
    for (i = 0; i < s->cap; i++) {
        s->free_slots[i] = (int)(s->cap - 1 - i);
    }
    s->nfree = s->cap;
    return 0;
}

static int proc_check_config(struct proc *s)
{
    const struct proc_config *c = s->cfg;

    if (c->name.n == 0 && c->cmdline.n == 0 && c->pidfile == NULL &&
        c->cgroup == NULL) {
        s->host->log(s->inst, VIGIL_LOG_ERROR,
                     "no processes selected: set at least one of name, "
                     "cmdline, pidfile or cgroup");
        return VIGIL_ECONFIG;
    }
    for (size_t i = 0; i < c->name.n; i++) {
        if (strlen(c->name.v[i]) > 15) {
            /* Not an error: a program may set a longer comm for a kernel
             * worker, but a process's comm is cut at 15 bytes. */
            s->host->log(s->inst, VIGIL_LOG_WARN,
                         "name '%s' is longer than a process name can be "
                         "(15 bytes); it will only match kernel threads: "
                         "use cmdline to match a longer name",
                         c->name.v[i]);
        }
    }
    if (c->pidfile != NULL && c->pidfile[0] != '/') {
        s->host->log(s->inst, VIGIL_LOG_ERROR,
                     "pidfile '%s': expected an absolute path", c->pidfile);
        return VIGIL_ECONFIG;
    }
    if (c->max_processes < 0 || c->max_processes > 100000) {
        s->host->log(s->inst, VIGIL_LOG_ERROR,
                     "max_processes %lld: expected 0 to 100000",
                     (long long)c->max_processes);
        return VIGIL_ECONFIG;
    }
    if (c->max_tracked < 1 || c->max_tracked > 1000000) {
        s->host->log(s->inst, VIGIL_LOG_ERROR,
                     "max_tracked %lld: expected 1 to 1000000",
                     (long long)c->max_tracked);
        return VIGIL_ECONFIG;
    }
    if (c->max_sockets < 0 || c->max_sockets > 10000000) {
        s->host->log(s->inst, VIGIL_LOG_ERROR,
                     "max_sockets %lld: expected 0 to 10000000",
                     (long long)c->max_sockets);
        return VIGIL_ECONFIG;
    }
    return 0;
}

static int proc_init(const struct vigil_host *host, vigil_instance *inst,
                     const void *config, void **state)
{
    struct proc *s;
    int rc;

    /* Every service up to instance_name is used. */
    if (host->struct_size < offsetof(struct vigil_host, instance_name) +
                                sizeof(host->instance_name)) {
        return VIGIL_EABI;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        host->log(inst, VIGIL_LOG_ERROR, "out of memory");
        return VIGIL_ENOMEM;
    }
    s->host = host;
    s->inst = inst;
    s->cfg = config;
    s->root_fd = -1;
    s->proc_root = s->cfg->proc_root != NULL ? s->cfg->proc_root : "/proc";
    s->clk_tck = sysconf(_SC_CLK_TCK);
    s->page_size = sysconf(_SC_PAGESIZE);
    if (s->clk_tck <= 0) {
        s->clk_tck = 100;
    }
    if (s->page_size <= 0) {
        s->page_size = 4096;
    }

    rc = proc_check_config(s);
    if (rc == 0) {
        rc = proc_init_tables(s);
        if (rc == VIGIL_ENOMEM) {
            host->log(inst, VIGIL_LOG_ERROR, "out of memory");
        }
    }
    if (rc == 0) {
        rc = proc_init_regex(s);
    }
    if (rc == 0) {
        rc = proc_init_users(s);
    }
    if (rc == 0) {
        rc = proc_init_cgroup(s);
    }
    if (rc == 0) {
        s->root_fd = proc_dir_open(AT_FDCWD, s->proc_root);
        if (s->root_fd < 0) {
            host->log(inst, VIGIL_LOG_ERROR, "%s: %s", s->proc_root,
                      strerror(-s->root_fd));
            rc = VIGIL_EUNAVAIL;
        }
    }
    if (rc != 0) {
        proc_destroy(s);
        return rc;
    }
    s->next = proc_all;
    proc_all = s;
    rc = proc_diag_register(s);
    if (rc != 0) {
        /* The metrics work without the diagnostics. */
        host->log(inst, VIGIL_LOG_WARN,
                  "cannot register proc.top and proc.snapshot: %s",
                  vigil_error_text(rc));
    }
    *state = s;
    return 0;
}

VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {
    .abi_version = VIGIL_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct vigil_plugin),
    .name = "proc",
    .version = "0.1.0",
    .description = "CPU, memory, threads, fds, context switches, I/O and TCP "
                   "connections of processes chosen by name, command line, "
                   "pidfile or cgroup; diagnostics proc.top and "
                   "proc.snapshot",
    .options = proc_options,
    .config_size = sizeof(struct proc_config),
    .init = proc_init,
    .collect = proc_collect,
    .stop = proc_stop,
    .destroy = proc_destroy,
};
