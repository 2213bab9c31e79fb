/*
 * proc.h - the proc plugin's instance, shared by its three parts:
 *
 *   proc.c       the plugin on the loop: options, life cycle, collect(),
 *                turning readings into rates and publishing them;
 *   proc_scan.c  the collection's work on the thread pool: selecting the
 *                group's processes and reading their /proc files into the
 *                instance's process table;
 *   proc_diag.c  the diagnostics proc.top and proc.snapshot.
 *
 * Ownership and threads: everything in struct proc belongs to the loop,
 * except while a collection is pending (s->pending): then proc_scan_work()
 * on a pool thread owns the process table, the socket table, the work
 * buffers and the scan results, and the loop touches none of them until
 * proc_scan_after() runs. Diagnostics never use those; they allocate
 * their own buffers per request (they are not on the per-sample path).
 *
 * Memory: the process table, socket table and work buffers are allocated
 * in init() with fixed capacities (options max_tracked and max_sockets),
 * so that in steady state a collection allocates nothing; what does not
 * fit is counted, not measured, and said once in the log.
 */
#ifndef VIGIL_PROC_H
#define VIGIL_PROC_H

#include <limits.h>
#include <regex.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <vigil/plugin.h>

#include "proc_pid.h"

#define PROC_RBUF_SIZE (64 * 1024) /* one file: cmdline, status, limits */
#define PROC_DBUF_SIZE (32 * 1024) /* one getdents64 batch */
#define PROC_LBUF_SIZE (16 * 1024) /* net/tcp line reader */
#define PROC_NETNS_MAX 16          /* network namespaces read per scan */
#define PROC_LISTEN_MAX 256        /* listening sockets kept per scan */
#define PROC_CGROUP_DEPTH                                                      \
    8 /* nested cgroups walked below the one                                   \
         named */
#define PROC_MSG_MAX (3 * PATH_MAX + 1024)

struct proc_config {
    struct vigil_list name;    /* comm, exactly */
    struct vigil_list cmdline; /* POSIX extended regexes */
    const char *pidfile;
    const char *cgroup;
    struct vigil_list user; /* user names or uids */
    int per_process;
    int64_t max_processes; /* with per-process series */
    int64_t max_tracked;   /* process table capacity */
    int64_t max_sockets;   /* socket table capacity */
    int tcp;
    const char *proc_root;
};

/* Per-process and group metrics, in publication order. */
enum {
    PROC_M_CPU_USER,
    PROC_M_CPU_SYSTEM,
    PROC_M_CPU_TOTAL,
    PROC_M_RSS,
    PROC_M_VMS,
    PROC_M_SWAP,
    PROC_M_THREADS,
    PROC_M_FD_OPEN,
    PROC_M_FD_LIMIT,
    PROC_M_FD_USAGE,
    PROC_M_CTXSW_VOL,
    PROC_M_CTXSW_INVOL,
    PROC_M_IO_READ,
    PROC_M_IO_WRITE,
    PROC_M_IO_LREAD,
    PROC_M_IO_LWRITE,
    PROC_NMETRICS
};

extern const char *const proc_metric_names[PROC_NMETRICS];

/* What one collection read of one process. */
struct proc_reading {
    int64_t ts_ns; /* proc_clock() just before stat was read */
    char state;
    uint64_t utime, stime; /* clock ticks */
    uint64_t rss, vms, swap;
    uint64_t threads;
    int ctxsw_ok; /* every task's status was read */
    uint64_t vcsw, ivcsw;
    int io_ok;
    struct proc_io io;
    int fd_ok;
    uint64_t fds;
    uint64_t fd_limit; /* PROC_UNLIMITED, or 0 when unknown */
    int tcp_ok;        /* the fd table was read, so tcp[] is complete */
    uint32_t tcp[PROC_TCP_NSTATES];
};

/* A series, interned when it is first published. */
struct proc_sid {
    vigil_series_id id;
    int ok;
};

/* The series of one process (labels pid and name). */
struct proc_series {
    int used;
    struct proc_sid m[PROC_NMETRICS];
    struct proc_sid tcp[PROC_TCP_NSTATES];
};

struct proc_slot {
    int pid;        /* 0: free */
    uint64_t start; /* starttime: with pid, the process's identity */
    uint64_t gen;   /* the scan that last saw it */
    int fresh;      /* a new process since proc_scan_after() last ran */
    int have_prev;
    char name[PROC_COMM_MAX];
    struct proc_reading cur, prev;
    int series;        /* 1 + index in s->series, or 0 */
    uint32_t tcp_seen; /* states published for it so far (bit per state) */
};

struct proc_pidslot {
    int pid;
    int slot;
};

struct proc_sock {
    uint64_t inode;
    int slot;
};

struct proc_req;

struct proc {
    const struct vigil_host *host;
    vigil_instance *inst;
    const struct proc_config *cfg; /* borrowed from the core */
    const char *proc_root;
    int root_fd;
    long clk_tck;
    long page_size;
    regex_t *re;
    size_t nre;
    uid_t *uids;
    size_t nuids;
    char cgroup_dir[PATH_MAX]; /* resolved; "" without a cgroup */

    /* Process table (owned by the work while pending). */
    struct proc_slot *slots;
    size_t cap;
    int *free_slots; /* stack of free slot indexes */
    size_t nfree;
    struct proc_pidslot *index, *index_next; /* members sorted by pid */
    size_t nindex, nindex_next;
    int *cand; /* candidate pids of one scan */
    size_t ncand;
    struct proc_sock *socks;
    size_t socks_cap, nsocks;
    uint64_t gen;
    char *rbuf, *dbuf, *dbuf2, *lbuf;
    char *cgbuf; /* PROC_CGROUP_DEPTH getdents buffers */

    /* Results of the last scan, for proc_scan_after(). */
    size_t members;    /* processes in the group */
    size_t untracked;  /* members beyond the table */
    size_t cand_lost;  /* matches beyond the candidate array */
    size_t candidates; /* before the user filter and zombies */
    size_t sock_lost;  /* sockets beyond the socket table */
    size_t netns_lost; /* namespaces beyond PROC_NETNS_MAX */
    int io_denied_pid; /* a process whose io was EACCES, or 0 */
    int fd_denied_pid; /* a process whose fd/ was EACCES, or 0 */
    uint32_t group_tcp[PROC_TCP_NSTATES];
    int group_tcp_ok;
    unsigned *name_hits, *re_hits;
    int pidfile_hit, cgroup_hit;
    char pidfile_msg[PATH_MAX + 256], cgroup_msg[PATH_MAX + 256];
    char scan_msg[PATH_MAX + 256];

    /* Loop side. */
    int pending, stopped, scanned_once;
    uint64_t restarts;
    struct proc_series *series;
    size_t nseries, series_used;
    struct proc_sid g[PROC_NMETRICS], gtcp[PROC_TCP_NSTATES];
    struct proc_sid g_procs, g_restarts;
    uint32_t g_tcp_seen;
    int logged_io, logged_fd, logged_untracked, logged_socks, logged_netns,
        logged_series, logged_noseries;
    int *last_pids; /* members of the last collection, for proc.snapshot */
    size_t nlast;

    /* Diagnostics. */
    int diag_owner; /* registered proc.top and proc.snapshot */
    struct proc_req *reqs;
    struct proc *next; /* every live instance of the plugin */
};

/* The collection work (thread pool) and its completion (loop): see
 * proc_scan.c. work_cb touches only s's table, buffers and results. */
void proc_scan_work(void *arg);

/* Register the diagnostics unless another instance already did. Returns
 * 0 or a VIGIL_E* code from the host. */
int proc_diag_register(struct proc *s);

/* Reply VIGIL_ECANCELED to the requests in flight and close their timers;
 * called from stop(). Does not fail. */
void proc_diag_stop(struct proc *s);

/* The live instances, and the one named name (NULL if none). */
struct proc *proc_instances(void);
struct proc *proc_instance_find(const char *name);

#endif
