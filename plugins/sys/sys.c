/*
 * sys.c - the sys probe plugin: CPU, load, memory, disks, network and
 * pressure stall information of the local Linux machine, read from /proc.
 *
 * Published on every collect (labels in braces):
 *
 *   sys.cpu.{user,nice,system,iowait,irq,steal,idle,busy}_pct {cpu}
 *       cpu="total" and, with per_cpu, cpu="0", "1", ...; irq includes
 *       softirq, busy = 100 - idle - iowait; guest time is part of user
 *   sys.load.avg1 avg5 avg15, sys.procs.running total
 *   sys.mem.{total,available,used,cached}_bytes, sys.mem.used_pct
 *   sys.swap.{total,used}_bytes, sys.swap.used_pct (0 without swap)
 *   sys.disk.{reads,writes,read_bytes,write_bytes}_per_s {device}
 *   sys.disk.util_pct, sys.disk.await_ms {device}
 *   sys.net.{rx,tx}_{bytes,packets,errors,drops}_per_s {device}
 *   sys.pressure.<cpu|memory|io>_<some|full>_pct (avg10) and
 *   sys.pressure.<cpu|memory|io>_<some|full>_stall_ms_per_s (when the
 *       kernel has PSI; cpu "full" only where the kernel prints it)
 *
 * Percentages of CPU time and all rates come from the difference between
 * two collections, so the first collection only primes them; an interval
 * in which a counter went back (CPU hotplug, device reset, a 32-bit
 * counter that wrapped) is skipped. Rates divide by the CLOCK_MONOTONIC
 * time between the two reads of the file.
 *
 * collect() runs on the loop thread: reading these few files takes
 * microseconds, so the thread pool would cost more than it saves.
 *
 * Memory: everything is allocated in init(); collect() reads into a stack
 * buffer and keeps per-CPU and per-device counters in bounded tables.
 * Series are interned on their first publication and their ids cached in
 * the tables, so that in steady state a collection allocates nothing and
 * asks the core for nothing but publish().
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vigil/plugin.h>

#include "sys_proc.h"

#define SYS_BUF_SIZE 4096 /* stack buffer that files are read through */
#define SYS_DEV_MAX 256   /* disks tracked, and interfaces tracked */
#define SYS_CPU_MAX 4096  /* CPUs tracked */
#define SYS_PATH_MAX 512

struct sys_config {
    int per_cpu;
    int disk_partitions;
    int net_skip_lo;
    const char *proc_root;
    const char *sys_root;
};

static const struct vigil_option sys_options[] = {
    {.key = "per_cpu",
     .type = VIGIL_OPT_BOOL,
     .def = "yes",
     .offset = offsetof(struct sys_config, per_cpu),
     .help = "publish sys.cpu.* for each CPU as well as the total"},
    {.key = "disk_partitions",
     .type = VIGIL_OPT_BOOL,
     .def = "no",
     .offset = offsetof(struct sys_config, disk_partitions),
     .help = "publish sys.disk.* for partitions, not only whole disks"},
    {.key = "net_skip_lo",
     .type = VIGIL_OPT_BOOL,
     .def = "yes",
     .offset = offsetof(struct sys_config, net_skip_lo),
     .help = "leave the loopback interface out of sys.net.*"},
    {.key = "proc_root",
     .type = VIGIL_OPT_STRING,
     .def = "/proc",
     .offset = offsetof(struct sys_config, proc_root),
     .help = "where procfs is mounted (tests point it at fixtures)"},
    {.key = "sys_root",
     .type = VIGIL_OPT_STRING,
     .def = "/sys",
     .offset = offsetof(struct sys_config, sys_root),
     .help = "where sysfs is mounted (tells disks from partitions)"},
    {.key = NULL},
};

/* A series, interned when it is first published. */
struct sys_sid {
    vigil_series_id id;
    int ok;
};

enum {
    SYS_CPU_USER,
    SYS_CPU_NICE,
    SYS_CPU_SYSTEM,
    SYS_CPU_IOWAIT,
    SYS_CPU_IRQ,
    SYS_CPU_STEAL,
    SYS_CPU_IDLE,
    SYS_CPU_BUSY,
    SYS_CPU_NMETRICS
};

static const char *const sys_cpu_names[SYS_CPU_NMETRICS] = {
    [SYS_CPU_USER] = "sys.cpu.user_pct",
    [SYS_CPU_NICE] = "sys.cpu.nice_pct",
    [SYS_CPU_SYSTEM] = "sys.cpu.system_pct",
    [SYS_CPU_IOWAIT] = "sys.cpu.iowait_pct",
    [SYS_CPU_IRQ] = "sys.cpu.irq_pct",
    [SYS_CPU_STEAL] = "sys.cpu.steal_pct",
    [SYS_CPU_IDLE] = "sys.cpu.idle_pct",
    [SYS_CPU_BUSY] = "sys.cpu.busy_pct",
};

enum {
    SYS_DISK_READS,
    SYS_DISK_WRITES,
    SYS_DISK_READ_BYTES,
    SYS_DISK_WRITE_BYTES,
    SYS_DISK_UTIL,
    SYS_DISK_AWAIT,
    SYS_DISK_NMETRICS
};

static const char *const sys_disk_names[SYS_DISK_NMETRICS] = {
    [SYS_DISK_READS] = "sys.disk.reads_per_s",
    [SYS_DISK_WRITES] = "sys.disk.writes_per_s",
    [SYS_DISK_READ_BYTES] = "sys.disk.read_bytes_per_s",
    [SYS_DISK_WRITE_BYTES] = "sys.disk.write_bytes_per_s",
    [SYS_DISK_UTIL] = "sys.disk.util_pct",
    [SYS_DISK_AWAIT] = "sys.disk.await_ms",
};

enum {
    SYS_NET_RX_BYTES,
    SYS_NET_TX_BYTES,
    SYS_NET_RX_PACKETS,
    SYS_NET_TX_PACKETS,
    SYS_NET_RX_ERRORS,
    SYS_NET_TX_ERRORS,
    SYS_NET_RX_DROPS,
    SYS_NET_TX_DROPS,
    SYS_NET_NMETRICS
};

static const char *const sys_net_names[SYS_NET_NMETRICS] = {
    [SYS_NET_RX_BYTES] = "sys.net.rx_bytes_per_s",
    [SYS_NET_TX_BYTES] = "sys.net.tx_bytes_per_s",
    [SYS_NET_RX_PACKETS] = "sys.net.rx_packets_per_s",
    [SYS_NET_TX_PACKETS] = "sys.net.tx_packets_per_s",
    [SYS_NET_RX_ERRORS] = "sys.net.rx_errors_per_s",
    [SYS_NET_TX_ERRORS] = "sys.net.tx_errors_per_s",
    [SYS_NET_RX_DROPS] = "sys.net.rx_drops_per_s",
    [SYS_NET_TX_DROPS] = "sys.net.tx_drops_per_s",
};

enum { SYS_RES_CPU, SYS_RES_MEMORY, SYS_RES_IO, SYS_NRES };

static const char *const sys_psi_files[SYS_NRES] = {"cpu", "memory", "io"};

/* [resource][some/full][0: avg10 percentage, 1: stall rate] */
static const char *const sys_psi_names[SYS_NRES][SYS_PSI_KINDS][2] = {
    {{"sys.pressure.cpu_some_pct", "sys.pressure.cpu_some_stall_ms_per_s"},
     {"sys.pressure.cpu_full_pct", "sys.pressure.cpu_full_stall_ms_per_s"}},
    {{"sys.pressure.memory_some_pct",
      "sys.pressure.memory_some_stall_ms_per_s"},
     {"sys.pressure.memory_full_pct",
      "sys.pressure.memory_full_stall_ms_per_s"}},
    {{"sys.pressure.io_some_pct", "sys.pressure.io_some_stall_ms_per_s"},
     {"sys.pressure.io_full_pct", "sys.pressure.io_full_stall_ms_per_s"}},
};

/*
 * Previous readings carry the collection number (`gen`) they were taken
 * in: a difference is only computed against the reading of the collection
 * just before, so the first collection primes, and a CPU that was offline
 * for a while starts afresh.
 */
struct sys_cpu {
    uint64_t gen;
    struct sys_cpu_times prev;
    char label[24]; /* "total" or the CPU number */
    struct sys_sid sid[SYS_CPU_NMETRICS];
};

/* A disk or an interface. Its slot is freed when a collection no longer
 * lists it, so one that comes back starts afresh (its counters may have
 * been reset meanwhile); its series stay in the core and are found again.
 * A slot found in the table therefore always holds the previous reading. */
struct sys_dev {
    char name[SYS_NAME_MAX]; /* "" when the slot is free */
    uint64_t gen;            /* last collection that listed it */
    int64_t ts_ns;           /* monotonic time of the previous reading */
    union {
        struct sys_disk_ctr disk;
        struct sys_net_ctr net;
    } prev;
    struct sys_sid sid[SYS_NET_NMETRICS]; /* the larger of the two sets */
};

struct sys_devtab {
    const char *what; /* "disks", "network interfaces": for the log */
    struct sys_dev *v;
    size_t cap;
    size_t hint; /* where the next lookup starts: files keep their order */
    int full_logged;
};

/* A pressure file. Its totals count from boot, so the previous reading
 * stays valid however old it is. */
struct sys_res {
    char path[SYS_PATH_MAX];
    int64_t ts_ns;
    struct sys_psi prev;
    struct sys_sid sid[SYS_PSI_KINDS][2];
};

struct sys {
    const struct vigil_host *host;
    vigil_instance *inst;
    const struct sys_config *cfg; /* borrowed from the core */
    const char *proc_root;
    const char *sys_root;
    uint64_t gen; /* collections so far, plus one */

    char stat_path[SYS_PATH_MAX];
    char loadavg_path[SYS_PATH_MAX];
    char meminfo_path[SYS_PATH_MAX];
    char diskstats_path[SYS_PATH_MAX];
    char netdev_path[SYS_PATH_MAX];

    struct sys_cpu total;
    struct sys_cpu *cpus; /* indexed by CPU number; NULL without per_cpu */
    size_t ncpus;
    int cpu_limit_logged;

    struct sys_devtab disks;
    struct sys_devtab nets;
    int sysfs_ok; /* <sys_root>/block exists */

    int psi; /* the kernel has PSI */
    struct sys_res res[SYS_NRES];

    struct sys_sid load[5];
    struct sys_sid mem[5];
    struct sys_sid swap[3];
    int series_logged;
};

/* What went wrong with a file, as text in ebuf or a static string. */
static const char *sys_why(const struct sys_file *f, char *ebuf, size_t size)
{
    if (f->sys_errno != 0) {
        return strerror_r(f->sys_errno, ebuf, size);
    }
    return f->why != NULL ? f->why : vigil_error_text(f->err);
}

/* Tell the core what went wrong with a file, naming it (and the line, for
 * what it could not parse); returns the file's error code. */
static int sys_report(struct sys *s, const struct sys_file *f)
{
    char ebuf[128];

    if (f->sys_errno != 0) {
        s->host->error(s->inst, "%s: %s", f->path,
                       sys_why(f, ebuf, sizeof(ebuf)));
    } else {
        s->host->error(s->inst, "%s:%u: %s", f->path, f->lineno,
                       sys_why(f, ebuf, sizeof(ebuf)));
    }
    return f->err;
}

/* Publish v on the series, interning it the first time. A series the core
 * refuses (limit reached, a label it rejects) is tried again next time,
 * which is one failed lookup, and logged once. */
static void sys_emit(struct sys *s, struct sys_sid *sid, const char *name,
                     const struct vigil_label *label, double v)
{
    if (!sid->ok) {
        int rc = s->host->series(s->inst, name, label, label != NULL ? 1 : 0,
                                 &sid->id);

        if (rc != 0) {
            if (!s->series_logged) {
                /* Once: the usual cause, the core's series limit, would
                 * otherwise repeat for every series on every collection. */
                s->series_logged = 1;
                if (label != NULL) {
                    s->host->log(s->inst, VIGIL_LOG_WARN,
                                 "cannot create series %s{%s=\"%s\"}: %s; "
                                 "it and any others refused are not "
                                 "published",
                                 name, label->key, label->value,
                                 vigil_error_text(rc));
                } else {
                    s->host->log(s->inst, VIGIL_LOG_WARN,
                                 "cannot create series %s: %s; it and any "
                                 "others refused are not published",
                                 name, vigil_error_text(rc));
                }
            }
            return;
        }
        sid->ok = 1;
    }
    s->host->publish(s->inst, sid->id, 0, v);
}

/* ------------------------------------------------------------------------
 * Device tables.
 */

static int sys_devtab_init(struct sys_devtab *t, const char *what)
{
    t->what = what;
    t->cap = SYS_DEV_MAX;
    t->v = calloc(t->cap, sizeof(*t->v));
    return t->v != NULL ? 0 : VIGIL_ENOMEM;
}

static struct sys_dev *sys_dev_find(struct sys_devtab *t, const char *name)
{
    size_t i;

    for (i = 0; i < t->cap; i++) {
        size_t k = (t->hint + i) % t->cap;
        struct sys_dev *d = &t->v[k];

        if (d->name[0] != '\0' && strcmp(d->name, name) == 0) {
            t->hint = (k + 1) % t->cap;
            return d;
        }
    }
    return NULL;
}

static struct sys_dev *sys_dev_add(struct sys *s, struct sys_devtab *t,
                                   const char *name)
{
    size_t i;

    for (i = 0; i < t->cap; i++) {
        struct sys_dev *d = &t->v[i];

        if (d->name[0] == '\0') {
            memset(d, 0, sizeof(*d));
            /* Both names are SYS_NAME_MAX arrays from the parser. */
            memcpy(d->name, name, strlen(name) + 1);
            t->hint = (i + 1) % t->cap;
            return d;
        }
    }
    if (!t->full_logged) {
        t->full_logged = 1;
        s->host->log(s->inst, VIGIL_LOG_WARN,
                     "more than %zu %s: %s and any others beyond the limit "
                     "are not reported",
                     t->cap, t->what, name);
    }
    return NULL;
}

/* Free the slots of devices the last collection did not list. */
static void sys_dev_sweep(struct sys_devtab *t, uint64_t gen)
{
    size_t i;

    for (i = 0; i < t->cap; i++) {
        if (t->v[i].name[0] != '\0' && t->v[i].gen != gen) {
            t->v[i].name[0] = '\0';
        }
    }
}

/* ------------------------------------------------------------------------
 * Collection, one function per file.
 */

static void sys_cpu_update(struct sys *s, struct sys_cpu *c,
                           const struct sys_cpu_times *t)
{
    struct sys_cpu_pct p;

    if (c->gen + 1 == s->gen && sys_cpu_pct(&c->prev, t, &p)) {
        const struct vigil_label label = {"cpu", c->label};
        const double v[SYS_CPU_NMETRICS] = {
            [SYS_CPU_USER] = p.user,     [SYS_CPU_NICE] = p.nice,
            [SYS_CPU_SYSTEM] = p.system, [SYS_CPU_IOWAIT] = p.iowait,
            [SYS_CPU_IRQ] = p.irq,       [SYS_CPU_STEAL] = p.steal,
            [SYS_CPU_IDLE] = p.idle,     [SYS_CPU_BUSY] = p.busy,
        };
        size_t i;

        for (i = 0; i < SYS_CPU_NMETRICS; i++) {
            sys_emit(s, &c->sid[i], sys_cpu_names[i], &label, v[i]);
        }
    }
    c->prev = *t;
    c->gen = s->gen;
}

static int sys_collect_cpu(struct sys *s, char *buf, size_t cap)
{
    struct sys_cpu_times t;
    struct sys_file f;
    int rc, have_total = 0;

    rc = sys_file_open(&f, s->stat_path, buf, cap);
    while (rc == 0 && (rc = sys_stat_next(&f, &t)) == 1) {
        rc = 0;
        if (t.cpu < 0) {
            sys_cpu_update(s, &s->total, &t);
            have_total = 1;
        } else if ((size_t)t.cpu < s->ncpus) {
            sys_cpu_update(s, &s->cpus[t.cpu], &t);
        } else if (s->cpus != NULL && !s->cpu_limit_logged) {
            s->cpu_limit_logged = 1;
            s->host->log(s->inst, VIGIL_LOG_WARN,
                         "cpu%d is beyond the %zu CPUs tracked; it is only "
                         "counted in cpu=\"total\"",
                         t.cpu, s->ncpus);
        }
    }
    if (rc == 0 && !have_total) {
        rc = sys_file_fail(&f, VIGIL_EPARSE, "no \"cpu\" line");
    }
    if (rc < 0) {
        sys_report(s, &f);
    }
    sys_file_close(&f);
    return rc;
}

static int sys_collect_load(struct sys *s, char *buf, size_t cap)
{
    struct sys_loadavg la;
    struct sys_file f;
    int rc;

    rc = sys_file_open(&f, s->loadavg_path, buf, cap);
    if (rc == 0) {
        rc = sys_loadavg_read(&f, &la);
    }
    if (rc == 0) {
        sys_emit(s, &s->load[0], "sys.load.avg1", NULL, la.avg1);
        sys_emit(s, &s->load[1], "sys.load.avg5", NULL, la.avg5);
        sys_emit(s, &s->load[2], "sys.load.avg15", NULL, la.avg15);
        sys_emit(s, &s->load[3], "sys.procs.running", NULL, (double)la.running);
        sys_emit(s, &s->load[4], "sys.procs.count", NULL, (double)la.total);
    } else {
        sys_report(s, &f);
    }
    sys_file_close(&f);
    return rc;
}

static int sys_collect_mem(struct sys *s, char *buf, size_t cap)
{
    struct sys_meminfo m;
    struct sys_mem_usage u;
    struct sys_file f;
    int rc;

    rc = sys_file_open(&f, s->meminfo_path, buf, cap);
    if (rc == 0) {
        rc = sys_meminfo_read(&f, &m);
    }
    if (rc == 0) {
        sys_mem_usage(&m, &u);
        sys_emit(s, &s->mem[0], "sys.mem.total_bytes", NULL, (double)m.total);
        sys_emit(s, &s->mem[1], "sys.mem.available_bytes", NULL,
                 (double)m.available);
        sys_emit(s, &s->mem[2], "sys.mem.used_bytes", NULL, u.used_bytes);
        sys_emit(s, &s->mem[3], "sys.mem.used_pct", NULL, u.used_pct);
        sys_emit(s, &s->mem[4], "sys.mem.cached_bytes", NULL, (double)m.cached);
        sys_emit(s, &s->swap[0], "sys.swap.total_bytes", NULL,
                 (double)m.swap_total);
        sys_emit(s, &s->swap[1], "sys.swap.used_bytes", NULL,
                 u.swap_used_bytes);
        sys_emit(s, &s->swap[2], "sys.swap.used_pct", NULL, u.swap_used_pct);
    } else {
        sys_report(s, &f);
    }
    sys_file_close(&f);
    return rc;
}

static void sys_disk_update(struct sys *s, const struct sys_disk *d,
                            int64_t ts_ns)
{
    struct sys_disk_rates r;
    struct sys_dev *dev;

    if (sys_disk_ignored(d->name)) {
        return;
    }
    /* A name listed twice in one reading finds itself with the same
     * timestamp, and a zero interval is never compared. */
    dev = sys_dev_find(&s->disks, d->name);
    if (dev == NULL) {
        /* Without sysfs there is no telling partitions from disks; then
         * every device is reported rather than none. */
        if (!s->cfg->disk_partitions && s->sysfs_ok &&
            !sys_disk_is_whole(s->sys_root, d->name)) {
            return;
        }
        dev = sys_dev_add(s, &s->disks, d->name);
        if (dev == NULL) {
            return;
        }
    } else if (sys_disk_rates(&dev->prev.disk, &d->c, ts_ns - dev->ts_ns, &r)) {
        const struct vigil_label label = {"device", dev->name};
        const double v[SYS_DISK_NMETRICS] = {
            [SYS_DISK_READS] = r.reads_per_s,
            [SYS_DISK_WRITES] = r.writes_per_s,
            [SYS_DISK_READ_BYTES] = r.read_bytes_per_s,
            [SYS_DISK_WRITE_BYTES] = r.write_bytes_per_s,
            [SYS_DISK_UTIL] = r.util_pct,
            [SYS_DISK_AWAIT] = r.await_ms,
        };
        size_t i;

        for (i = 0; i < SYS_DISK_NMETRICS; i++) {
            sys_emit(s, &dev->sid[i], sys_disk_names[i], &label, v[i]);
        }
    }
    dev->prev.disk = d->c;
    dev->ts_ns = ts_ns;
    dev->gen = s->gen;
}

static int sys_collect_disks(struct sys *s, char *buf, size_t cap)
{
    struct sys_disk d;
    struct sys_file f;
    int rc;

    rc = sys_file_open(&f, s->diskstats_path, buf, cap);
    while (rc == 0 && (rc = sys_diskstats_next(&f, &d)) == 1) {
        rc = 0;
        sys_disk_update(s, &d, f.ts_ns);
    }
    if (rc < 0) {
        sys_report(s, &f);
    }
    sys_file_close(&f);
    sys_dev_sweep(&s->disks, s->gen);
    return rc;
}

static void sys_net_update(struct sys *s, const struct sys_netdev *n,
                           int64_t ts_ns)
{
    struct sys_net_rates r;
    struct sys_dev *dev;

    if (s->cfg->net_skip_lo && strcmp(n->name, "lo") == 0) {
        return;
    }
    dev = sys_dev_find(&s->nets, n->name);
    if (dev == NULL) {
        dev = sys_dev_add(s, &s->nets, n->name);
        if (dev == NULL) {
            return;
        }
    } else if (sys_net_rates(&dev->prev.net, &n->c, ts_ns - dev->ts_ns, &r)) {
        const struct vigil_label label = {"device", dev->name};
        const double v[SYS_NET_NMETRICS] = {
            [SYS_NET_RX_BYTES] = r.rx_bytes,
            [SYS_NET_TX_BYTES] = r.tx_bytes,
            [SYS_NET_RX_PACKETS] = r.rx_packets,
            [SYS_NET_TX_PACKETS] = r.tx_packets,
            [SYS_NET_RX_ERRORS] = r.rx_errors,
            [SYS_NET_TX_ERRORS] = r.tx_errors,
            [SYS_NET_RX_DROPS] = r.rx_drops,
            [SYS_NET_TX_DROPS] = r.tx_drops,
        };
        size_t i;

        for (i = 0; i < SYS_NET_NMETRICS; i++) {
            sys_emit(s, &dev->sid[i], sys_net_names[i], &label, v[i]);
        }
    }
    dev->prev.net = n->c;
    dev->ts_ns = ts_ns;
    dev->gen = s->gen;
}

static int sys_collect_net(struct sys *s, char *buf, size_t cap)
{
    struct sys_netdev n;
    struct sys_file f;
    int rc;

    rc = sys_file_open(&f, s->netdev_path, buf, cap);
    while (rc == 0 && (rc = sys_netdev_next(&f, &n)) == 1) {
        rc = 0;
        sys_net_update(s, &n, f.ts_ns);
    }
    if (rc < 0) {
        sys_report(s, &f);
    }
    sys_file_close(&f);
    sys_dev_sweep(&s->nets, s->gen);
    return rc;
}

static int sys_collect_res(struct sys *s, size_t i, char *buf, size_t cap)
{
    struct sys_res *res = &s->res[i];
    struct sys_file f;
    struct sys_psi p;
    int rc, k;

    /* A pressure file that cannot be opened is not an error: PSI can be
     * switched off at boot (psi=0), and then open() fails. */
    if (sys_file_open(&f, res->path, buf, cap) != 0) {
        sys_file_close(&f);
        return 0;
    }
    rc = sys_pressure_read(&f, &p);
    if (rc != 0) {
        sys_report(s, &f);
        sys_file_close(&f);
        return rc;
    }
    for (k = 0; k < SYS_PSI_KINDS; k++) {
        double stall;

        if (!p.have[k]) {
            continue;
        }
        sys_emit(s, &res->sid[k][0], sys_psi_names[i][k][0], NULL, p.avg10[k]);
        /* total is in us: us/s * 1e-3 = ms/s. */
        if (res->prev.have[k] && sys_rate(res->prev.total_us[k], p.total_us[k],
                                          f.ts_ns - res->ts_ns, 1e-3, &stall)) {
            sys_emit(s, &res->sid[k][1], sys_psi_names[i][k][1], NULL, stall);
        }
    }
    res->prev = p;
    res->ts_ns = f.ts_ns;
    sys_file_close(&f);
    return 0;
}

/* Keep the first error, but read every file. */
static void sys_first_error(int *rc, int r)
{
    if (*rc == 0 && r < 0) {
        *rc = r;
    }
}

static int sys_collect(void *state)
{
    struct sys *s = state;
    char buf[SYS_BUF_SIZE];
    int rc = 0;
    size_t i;

    s->gen++;
    sys_first_error(&rc, sys_collect_cpu(s, buf, sizeof(buf)));
    sys_first_error(&rc, sys_collect_load(s, buf, sizeof(buf)));
    sys_first_error(&rc, sys_collect_mem(s, buf, sizeof(buf)));
    sys_first_error(&rc, sys_collect_disks(s, buf, sizeof(buf)));
    sys_first_error(&rc, sys_collect_net(s, buf, sizeof(buf)));
    for (i = 0; s->psi && i < SYS_NRES; i++) {
        sys_first_error(&rc, sys_collect_res(s, i, buf, sizeof(buf)));
    }
    return rc;
}

/* ------------------------------------------------------------------------
 * Life cycle.
 */

static void sys_destroy(void *state)
{
    struct sys *s = state;

    if (s == NULL) {
        return;
    }
    free(s->cpus);
    free(s->disks.v);
    free(s->nets.v);
    free(s);
}

static int sys_path(struct sys *s, char *dst, const char *root,
                    const char *file)
{
    int n = snprintf(dst, SYS_PATH_MAX, "%s/%s", root, file);

    if (n < 0 || n >= SYS_PATH_MAX) {
        s->host->log(s->inst, VIGIL_LOG_ERROR,
                     "path %s/%s is longer than %d bytes", root, file,
                     SYS_PATH_MAX - 1);
        return VIGIL_ECONFIG;
    }
    return 0;
}

/* Size the per-CPU table: the CPUs /proc/stat lists now, or the ones the
 * system has configured if more (offline CPUs can come online). */
static int sys_cpus_init(struct sys *s)
{
    char buf[SYS_BUF_SIZE];
    struct sys_cpu_times t;
    struct sys_file f;
    long conf;
    size_t n = 0, i;
    int rc;

    memcpy(s->total.label, "total", sizeof("total"));
    rc = sys_file_open(&f, s->stat_path, buf, sizeof(buf));
    while (rc == 0 && (rc = sys_stat_next(&f, &t)) == 1) {
        rc = 0;
        if (t.cpu >= 0 && (size_t)t.cpu >= n) {
            n = (size_t)t.cpu + 1;
        }
    }
    if (rc < 0) {
        char ebuf[128];

        s->host->log(s->inst, VIGIL_LOG_ERROR, "%s: %s", f.path,
                     sys_why(&f, ebuf, sizeof(ebuf)));
        sys_file_close(&f);
        return rc;
    }
    sys_file_close(&f);
    if (!s->cfg->per_cpu) {
        return 0;
    }
    conf = sysconf(_SC_NPROCESSORS_CONF);
    if (conf > 0 && (size_t)conf > n) {
        n = (size_t)conf;
    }
    if (n > SYS_CPU_MAX) {
        s->host->log(s->inst, VIGIL_LOG_WARN,
                     "%zu CPUs: per-CPU series only for the first %d", n,
                     SYS_CPU_MAX);
        n = SYS_CPU_MAX;
    }
    s->cpus = calloc(n > 0 ? n : 1, sizeof(*s->cpus));
    if (s->cpus == NULL) {
        s->host->log(s->inst, VIGIL_LOG_ERROR, "out of memory");
        return VIGIL_ENOMEM;
    }
    s->ncpus = n;
    for (i = 0; i < n; i++) {
        snprintf(s->cpus[i].label, sizeof(s->cpus[i].label), "%zu", i);
    }
    return 0;
}

/* Whether the kernel has PSI, said once in the log when it has not. */
static void sys_psi_init(struct sys *s)
{
    char buf[SYS_BUF_SIZE];
    struct sys_file f;
    struct sys_psi p;
    int rc;

    rc = sys_file_open(&f, s->res[SYS_RES_CPU].path, buf, sizeof(buf));
    if (rc == 0) {
        rc = sys_pressure_read(&f, &p);
    }
    s->psi = rc == 0;
    if (rc != 0) {
        char ebuf[128];

        s->host->log(s->inst, VIGIL_LOG_INFO,
                     "%s: %s; no pressure stall information "
                     "(sys.pressure.*) will be published",
                     f.path, sys_why(&f, ebuf, sizeof(ebuf)));
    }
    sys_file_close(&f);
}

static int sys_init(const struct vigil_host *host, vigil_instance *inst,
                    const void *config, void **state)
{
    const struct sys_config *cfg = config;
    char block[SYS_PATH_MAX];
    struct sys *s;
    size_t i;
    int rc;

    /* Every service used here is in the first version of the table. */
    if (host->struct_size <
        offsetof(struct vigil_host, error) + sizeof(host->error)) {
        return VIGIL_EABI;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        host->log(inst, VIGIL_LOG_ERROR, "out of memory");
        return VIGIL_ENOMEM;
    }
    s->host = host;
    s->inst = inst;
    s->cfg = cfg;
    s->proc_root = cfg->proc_root != NULL ? cfg->proc_root : "/proc";
    s->sys_root = cfg->sys_root != NULL ? cfg->sys_root : "/sys";
    /* Tables start at generation 0, so that 1 here means "nothing read
     * yet" and the first collection (2) only primes. */
    s->gen = 1;

    rc = sys_path(s, s->stat_path, s->proc_root, "stat");
    if (rc == 0) {
        rc = sys_path(s, s->loadavg_path, s->proc_root, "loadavg");
    }
    if (rc == 0) {
        rc = sys_path(s, s->meminfo_path, s->proc_root, "meminfo");
    }
    if (rc == 0) {
        rc = sys_path(s, s->diskstats_path, s->proc_root, "diskstats");
    }
    if (rc == 0) {
        rc = sys_path(s, s->netdev_path, s->proc_root, "net/dev");
    }
    for (i = 0; rc == 0 && i < SYS_NRES; i++) {
        char file[32];

        snprintf(file, sizeof(file), "pressure/%s", sys_psi_files[i]);
        rc = sys_path(s, s->res[i].path, s->proc_root, file);
    }
    if (rc == 0) {
        rc = sys_path(s, block, s->sys_root, "block");
    }
    if (rc != 0) {
        goto out;
    }

    rc = sys_cpus_init(s);
    if (rc != 0) {
        goto out;
    }
    if (sys_devtab_init(&s->disks, "disks") != 0 ||
        sys_devtab_init(&s->nets, "network interfaces") != 0) {
        host->log(inst, VIGIL_LOG_ERROR, "out of memory");
        rc = VIGIL_ENOMEM;
        goto out;
    }
    s->sysfs_ok = access(block, F_OK) == 0;
    if (!s->sysfs_ok && !cfg->disk_partitions) {
        host->log(inst, VIGIL_LOG_INFO,
                  "%s not found: partitions cannot be told from disks, so "
                  "sys.disk.* covers both",
                  block);
    }
    sys_psi_init(s);

out:
    if (rc != 0) {
        sys_destroy(s);
        return rc;
    }
    *state = s;
    return 0;
}

VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {
    .abi_version = VIGIL_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct vigil_plugin),
    .name = "sys",
    .version = "0.1.0",
    .description = "CPU, load, memory, disk, network and pressure (PSI) "
                   "metrics of the local Linux machine, from /proc",
    .options = sys_options,
    .config_size = sizeof(struct sys_config),
    .init = sys_init,
    .collect = sys_collect,
    .destroy = sys_destroy,
};
