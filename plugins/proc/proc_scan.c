/*
 * proc_scan.c - one collection's work, on the thread pool: select the
 * group's processes, read each one's /proc files into its slot of the
 * process table, and count its TCP sockets by state.
 *
 * Runs while s->pending is set, so it owns the process table, the socket
 * table, the work buffers and the scan results (see proc.h); it calls no
 * host function. It allocates nothing: files and directories are read
 * through the instance's buffers, sorting is an in-place heapsort (glibc's
 * qsort may malloc), and the only allocation left is inside glibc's
 * regexec() when cmdline selectors are configured.
 *
 * Selection: a process is in the group when any selector matches it
 * (name, cmdline, pidfile, cgroup) and, with `user`, it runs as one of
 * those users (effective uid). Zombies are never members. vigil never
 * selects itself by name or cmdline (its own command line names the
 * config, which could match); a pidfile or cgroup can still name it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proc.h"

#define PROC_CG_BUF 4096 /* getdents64 buffer per cgroup level */

/* ------------------------------------------------------------------------
 * In-place heapsorts (no allocation, O(n log n) worst case).
 */

static void proc_sift_int(int *v, size_t root, size_t n)
{
    for (;;) {
        size_t child = 2 * root + 1;
        int t;

        if (child >= n) {
            return;
        }
        if (child + 1 < n && v[child + 1] > v[child]) {
            child++;
        }
        if (v[root] >= v[child]) {
            return;
        }
        t = v[root];
        v[root] = v[child];
        v[child] = t;
        root = child;
    }
}

static void proc_sort_int(int *v, size_t n)
{
    size_t i;

    if (n < 2) {
        return;
    }
    for (i = n / 2; i-- > 0;) {
        proc_sift_int(v, i, n);
    }
    for (i = n - 1; i > 0; i--) {
        int t = v[0];

        v[0] = v[i];
        v[i] = t;
        proc_sift_int(v, 0, i);
    }
}

static int proc_sock_less(const struct proc_sock *a, const struct proc_sock *b)
{
    return a->inode < b->inode || (a->inode == b->inode && a->slot < b->slot);
}

static void proc_sift_sock(struct proc_sock *v, size_t root, size_t n)
{
    for (;;) {
        size_t child = 2 * root + 1;
        struct proc_sock t;

        if (child >= n) {
            return;
        }
        if (child + 1 < n && proc_sock_less(&v[child], &v[child + 1])) {
            child++;
        }
        if (!proc_sock_less(&v[root], &v[child])) {
            return;
        }
        t = v[root];
        v[root] = v[child];
        v[child] = t;
        root = child;
    }
}

static void proc_sort_socks(struct proc_sock *v, size_t n)
{
    size_t i;

    if (n < 2) {
        return;
    }
    for (i = n / 2; i-- > 0;) {
        proc_sift_sock(v, i, n);
    }
    for (i = n - 1; i > 0; i--) {
        struct proc_sock t = v[0];

        v[0] = v[i];
        v[i] = t;
        proc_sift_sock(v, 0, i);
    }
}

/* ------------------------------------------------------------------------
 * Selection.
 */

static void proc_cand_add(struct proc *s, int pid)
{
    /* The candidate array holds twice the table (a process matched by
     * several selectors is listed more than once until deduplicated). */
    if (s->ncand < 2 * s->cap) {
        s->cand[s->ncand++] = pid;
    } else {
        s->cand_lost++;
    }
}

static void proc_errtext(int err, char *buf, size_t size)
{
    char ebuf[128];
    const char *t = strerror_r(err, ebuf, sizeof(ebuf));

    snprintf(buf, size, "%s", t);
}

/* Walk /proc once for the name and cmdline selectors. */
static void proc_select_scan(struct proc *s)
{
    struct proc_dir d;
    const char *ent;
    int self = (int)getpid();
    int fd;

    fd = proc_dir_open(s->root_fd, ".");
    if (fd < 0) {
        char e[128];

        proc_errtext(-fd, e, sizeof(e));
        snprintf(s->scan_msg, sizeof(s->scan_msg), "%s: %s", s->proc_root, e);
        return;
    }
    proc_dir_init(&d, fd, s->dbuf, PROC_DBUF_SIZE);
    while ((ent = proc_dir_next(&d, NULL)) != NULL) {
        struct proc_stat st;
        char path[48];
        int pid, matched = 0;
        size_t i;
        ssize_t n;

        if (!proc_name_pid(ent, &pid) || pid == self) {
            continue;
        }
        snprintf(path, sizeof(path), "%d/stat", pid);
        n = proc_read_at(s->root_fd, path, s->rbuf, PROC_RBUF_SIZE, NULL);
        if (n < 0 || proc_stat_parse(s->rbuf, &st) != 0 || st.state == 'Z' ||
            st.state == 'X') {
            continue;
        }
        for (i = 0; i < s->cfg->name.n; i++) {
            if (strcmp(st.comm, s->cfg->name.v[i]) == 0) {
                s->name_hits[i]++;
                matched = 1;
                break;
            }
        }
        if (!matched && s->nre > 0 && !(st.flags & PROC_PF_KTHREAD)) {
            snprintf(path, sizeof(path), "%d/cmdline", pid);
            /* One byte spare for proc_cmdline_text()'s terminator; a
             * longer command line is matched on its first 64 KiB. */
            n = proc_read_at(s->root_fd, path, s->rbuf, PROC_RBUF_SIZE - 1,
                             NULL);
            if (n > 0 && proc_cmdline_text(s->rbuf, (size_t)n) > 0) {
                for (i = 0; i < s->nre; i++) {
                    if (regexec(&s->re[i], s->rbuf, 0, NULL, 0) == 0) {
                        s->re_hits[i]++;
                        matched = 1;
                        break;
                    }
                }
            }
        }
        if (matched) {
            proc_cand_add(s, pid);
        }
    }
    if (d.err != 0) {
        char e[128];

        proc_errtext(-d.err, e, sizeof(e));
        snprintf(s->scan_msg, sizeof(s->scan_msg), "listing %s: %s",
                 s->proc_root, e);
    }
    close(fd);
}

static void proc_select_pidfile(struct proc *s)
{
    const char *path = s->cfg->pidfile;
    char e[128], name[32];
    ssize_t n;
    int pid;

    /* A pidfile holds a few bytes; the scratch buffer is plenty. */
    n = proc_read_at(AT_FDCWD, path, s->rbuf, 256, NULL);
    if (n < 0) {
        proc_errtext((int)-n, e, sizeof(e));
        snprintf(s->pidfile_msg, sizeof(s->pidfile_msg), "pidfile %s: %s", path,
                 e);
        return;
    }
    if (proc_pidfile_parse(s->rbuf, &pid) != 0) {
        snprintf(s->pidfile_msg, sizeof(s->pidfile_msg),
                 "pidfile %s: no pid in it", path);
        return;
    }
    snprintf(name, sizeof(name), "%d", pid);
    if (faccessat(s->root_fd, name, F_OK, 0) != 0) {
        snprintf(s->pidfile_msg, sizeof(s->pidfile_msg),
                 "pidfile %s: process %d is not running", path, pid);
        return;
    }
    s->pidfile_hit = 1;
    proc_cand_add(s, pid);
}

/* cgroup.procs of dirfd, then its sub-cgroups down to PROC_CGROUP_DEPTH. */
static void proc_cgroup_walk(struct proc *s, int dirfd, int depth)
{
    struct proc_lines l;
    struct proc_dir d;
    const char *ent;
    unsigned char type;
    char *line;

    if (proc_lines_open(&l, dirfd, "cgroup.procs", s->lbuf, PROC_LBUF_SIZE) ==
        0) {
        while ((line = proc_lines_next(&l)) != NULL) {
            int pid;

            if (proc_name_pid(line, &pid)) {
                s->cgroup_hit = 1;
                proc_cand_add(s, pid);
            }
        }
    } else if (depth == 0) {
        char e[128];

        proc_errtext(-l.err, e, sizeof(e));
        snprintf(s->cgroup_msg, sizeof(s->cgroup_msg),
                 "cgroup %s: cgroup.procs: %s", s->cgroup_dir, e);
    }
    proc_lines_close(&l);
    if (depth >= PROC_CGROUP_DEPTH) {
        return;
    }
    proc_dir_init(&d, dirfd, s->cgbuf + (size_t)depth * PROC_CG_BUF,
                  PROC_CG_BUF);
    while ((ent = proc_dir_next(&d, &type)) != NULL) {
        int sub;

        if (type == DT_UNKNOWN) {
            struct stat sb;

            /* Some file systems do not fill d_type. */
            if (fstatat(dirfd, ent, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
                S_ISDIR(sb.st_mode)) {
                type = DT_DIR;
            }
        }
        if (type != DT_DIR) {
            continue;
        }
        sub = proc_dir_open(dirfd, ent);
        if (sub >= 0) {
            proc_cgroup_walk(s, sub, depth + 1);
            close(sub);
        }
    }
}

static void proc_select_cgroup(struct proc *s)
{
    int fd = proc_dir_open(AT_FDCWD, s->cgroup_dir);

    if (fd < 0) {
        char e[128];

        if (fd == -ENOENT) {
            snprintf(e, sizeof(e), "no such cgroup");
        } else {
            proc_errtext(-fd, e, sizeof(e));
        }
        snprintf(s->cgroup_msg, sizeof(s->cgroup_msg), "cgroup %s: %s",
                 s->cgroup_dir, e);
        return;
    }
    proc_cgroup_walk(s, fd, 0);
    if (!s->cgroup_hit && s->cgroup_msg[0] == '\0') {
        snprintf(s->cgroup_msg, sizeof(s->cgroup_msg),
                 "cgroup %s: no process in it", s->cgroup_dir);
    }
    close(fd);
}

/* Fill s->cand with the candidates' pids, sorted and unique. */
static void proc_select(struct proc *s)
{
    size_t i, n;

    if (s->cfg->name.n > 0 || s->nre > 0) {
        proc_select_scan(s);
    }
    if (s->cfg->pidfile != NULL) {
        proc_select_pidfile(s);
    }
    if (s->cgroup_dir[0] != '\0') {
        proc_select_cgroup(s);
    }
    proc_sort_int(s->cand, s->ncand);
    for (i = 0, n = 0; i < s->ncand; i++) {
        if (n == 0 || s->cand[n - 1] != s->cand[i]) {
            s->cand[n++] = s->cand[i];
        }
    }
    s->ncand = n;
    s->candidates = n;
}

/* ------------------------------------------------------------------------
 * Measurement.
 */

static int proc_user_ok(const struct proc *s, const struct proc_status *st)
{
    size_t i;

    if (s->nuids == 0) {
        return 1;
    }
    if (!(st->have & PROC_ST_UID)) {
        return 0;
    }
    for (i = 0; i < s->nuids; i++) {
        if (s->uids[i] == (uid_t)st->euid) {
            return 1;
        }
    }
    return 0;
}

/* The slot of pid: the one it had (found by walking the previous index,
 * sorted like the candidates, with *cursor), or a free one. -1 when the
 * table is full. */
static int proc_slot_for(struct proc *s, int pid, uint64_t start,
                         const char *comm, size_t *cursor)
{
    struct proc_slot *slot;
    int k = -1;

    while (*cursor < s->nindex && s->index[*cursor].pid < pid) {
        (*cursor)++;
    }
    if (*cursor < s->nindex && s->index[*cursor].pid == pid) {
        k = s->index[*cursor].slot;
        slot = &s->slots[k];
        if (slot->start == start) {
            return k;
        }
        /* The pid was reused by another process. */
    } else {
        if (s->nfree == 0) {
            return -1;
        }
        k = s->free_slots[--s->nfree];
        slot = &s->slots[k];
        slot->pid = pid;
        slot->series = 0;
    }
    slot->tcp_seen = 0;
    slot->start = start;
    slot->fresh = 1;
    slot->have_prev = 0;
    snprintf(slot->name, sizeof(slot->name), "%s", comm);
    return k;
}

/* Sum the context switches of every task of a multi-threaded process. */
static void proc_read_ctxsw(struct proc *s, int pfd, struct proc_reading *r)
{
    struct proc_dir d;
    const char *ent;
    int tfd = proc_dir_open(pfd, "task");

    r->ctxsw_ok = 0;
    if (tfd < 0) {
        return;
    }
    r->vcsw = r->ivcsw = 0;
    proc_dir_init(&d, tfd, s->dbuf, PROC_DBUF_SIZE);
    while ((ent = proc_dir_next(&d, NULL)) != NULL) {
        struct proc_status ts;
        char path[48];

        snprintf(path, sizeof(path), "%s/status", ent);
        /* A task that exits meanwhile is left out; its switches then
         * seem to go back, which proc_rate() skips. */
        if (proc_read_at(tfd, path, s->rbuf, PROC_RBUF_SIZE, NULL) > 0 &&
            proc_status_parse(s->rbuf, &ts) == 0) {
            r->vcsw += ts.vcsw;
            r->ivcsw += ts.ivcsw;
        }
    }
    r->ctxsw_ok = d.err == 0;
    close(tfd);
}

/* Count the open fds, and note the sockets among them. Returns the number
 * of sockets noted. */
static size_t proc_read_fds(struct proc *s, int pfd, int k,
                            struct proc_reading *r, int pid)
{
    struct proc_dir d;
    const char *ent;
    size_t socks = 0;
    int ffd = proc_dir_open(pfd, "fd");

    if (ffd < 0) {
        if (ffd == -EACCES || ffd == -EPERM) {
            if (s->fd_denied_pid == 0) {
                s->fd_denied_pid = pid;
            }
        }
        return 0;
    }
    r->fds = 0;
    proc_dir_init(&d, ffd, s->dbuf, PROC_DBUF_SIZE);
    while ((ent = proc_dir_next(&d, NULL)) != NULL) {
        r->fds++;
        if (s->cfg->tcp) {
            char link[64];
            uint64_t ino;
            ssize_t n = readlinkat(ffd, ent, link, sizeof(link) - 1);

            if (n <= 0) {
                continue;
            }
            link[n] = '\0';
            if (proc_fd_classify(link, &ino) != PROC_FD_SOCKET) {
                continue;
            }
            if (s->nsocks < s->socks_cap) {
                s->socks[s->nsocks].inode = ino;
                s->socks[s->nsocks].slot = k;
                s->nsocks++;
                socks++;
            } else {
                s->sock_lost++;
            }
        }
    }
    if (d.err == -EACCES || d.err == -EPERM) {
        if (s->fd_denied_pid == 0) {
            s->fd_denied_pid = pid;
        }
    } else if (d.err == 0) {
        r->fd_ok = 1;
        r->tcp_ok = s->cfg->tcp;
    }
    close(ffd);
    return socks;
}

struct proc_netns {
    uint64_t ns;
    int pid;
};

struct proc_scan_ctx {
    struct proc_netns netns[PROC_NETNS_MAX];
    size_t nnetns;
};

static void proc_note_netns(struct proc *s, struct proc_scan_ctx *c, int pfd,
                            int pid)
{
    char link[64];
    uint64_t ns;
    size_t i;
    ssize_t n = readlinkat(pfd, "ns/net", link, sizeof(link) - 1);

    if (n <= 0) {
        /* Without namespaces the process's own view is all there is. */
        ns = 0;
    } else {
        link[n] = '\0';
        if (proc_link_inode(link, "net", &ns) != 0) {
            ns = 0;
        }
    }
    for (i = 0; i < c->nnetns; i++) {
        if (c->netns[i].ns == ns) {
            return;
        }
    }
    if (c->nnetns == PROC_NETNS_MAX) {
        s->netns_lost++;
        return;
    }
    c->netns[c->nnetns].ns = ns;
    c->netns[c->nnetns].pid = pid;
    c->nnetns++;
}

/* Read one candidate into its slot; skip it when it is gone, a zombie or
 * run by another user. */
static void proc_measure(struct proc *s, struct proc_scan_ctx *c, int pid,
                         size_t *cursor)
{
    struct proc_status status;
    struct proc_reading *r;
    struct proc_stat st;
    struct proc_slot *slot;
    char name[32];
    int pfd, k;
    int64_t ts;
    uint64_t soft, hard;
    ssize_t n;

    snprintf(name, sizeof(name), "%d", pid);
    pfd = proc_dir_open(s->root_fd, name);
    if (pfd < 0) {
        return;
    }
    ts = proc_clock();
    if (proc_read_at(pfd, "stat", s->rbuf, PROC_RBUF_SIZE, NULL) < 0 ||
        proc_stat_parse(s->rbuf, &st) != 0 || st.state == 'Z' ||
        st.state == 'X') {
        goto out;
    }
    n = proc_read_at(pfd, "status", s->rbuf, PROC_RBUF_SIZE, NULL);
    if (n < 0 || proc_status_parse(s->rbuf, &status) != 0) {
        memset(&status, 0, sizeof(status));
    }
    if (!proc_user_ok(s, &status)) {
        goto out;
    }
    s->members++;
    k = proc_slot_for(s, pid, st.starttime, st.comm, cursor);
    if (k < 0) {
        s->untracked++;
        goto out;
    }
    slot = &s->slots[k];
    slot->gen = s->gen;
    s->index_next[s->nindex_next].pid = pid;
    s->index_next[s->nindex_next].slot = k;
    s->nindex_next++;

    r = &slot->cur;
    memset(r, 0, sizeof(*r));
    r->ts_ns = ts;
    r->state = st.state;
    r->utime = st.utime;
    r->stime = st.stime;
    r->threads = st.num_threads;
    r->vms = (status.have & PROC_ST_VMS) ? status.vms : st.vsize;
    r->rss = (status.have & PROC_ST_RSS)
                 ? status.rss
                 : st.rss_pages * (uint64_t)s->page_size;
    r->swap = status.swap;
    if (st.num_threads <= 1) {
        r->vcsw = status.vcsw;
        r->ivcsw = status.ivcsw;
        r->ctxsw_ok = (status.have & (PROC_ST_VCSW | PROC_ST_IVCSW)) ==
                      (PROC_ST_VCSW | PROC_ST_IVCSW);
    } else {
        proc_read_ctxsw(s, pfd, r);
    }

    n = proc_read_at(pfd, "io", s->rbuf, PROC_RBUF_SIZE, NULL);
    if (n >= 0) {
        r->io_ok = proc_io_parse(s->rbuf, &r->io) == 0;
    } else if ((n == -EACCES || n == -EPERM) && s->io_denied_pid == 0) {
        s->io_denied_pid = pid;
    }
    if (proc_read_at(pfd, "limits", s->rbuf, PROC_RBUF_SIZE, NULL) >= 0 &&
        proc_limits_nofile(s->rbuf, &soft, &hard) == 0) {
        r->fd_limit = soft;
    }
    if (proc_read_fds(s, pfd, k, r, pid) > 0) {
        proc_note_netns(s, c, pfd, pid);
    }
out:
    close(pfd);
}

/* ------------------------------------------------------------------------
 * TCP sockets by state.
 */

struct proc_listen {
    uint16_t port;
    int slot;
};

struct proc_tcp_pass {
    struct proc_listen listen[PROC_LISTEN_MAX];
    size_t nlisten;
};

/* The first entry of s->socks with this inode, or s->nsocks. */
static size_t proc_sock_find(const struct proc *s, uint64_t inode)
{
    size_t lo = 0, hi = s->nsocks;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (s->socks[mid].inode < inode) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < s->nsocks && s->socks[lo].inode == inode ? lo : s->nsocks;
}

static void proc_tcp_line(struct proc *s, struct proc_tcp_pass *p,
                          const struct proc_tcp *t)
{
    size_t i;
    int last = -1, any = 0;

    if (t->state <= 0 || t->state >= PROC_TCP_NSTATES) {
        return;
    }
    if (t->inode != 0) {
        i = proc_sock_find(s, t->inode);
        for (; i < s->nsocks && s->socks[i].inode == t->inode; i++) {
            int k = s->socks[i].slot;

            if (k == last) {
                continue; /* the same socket on two fds of one process */
            }
            last = k;
            any = 1;
            s->slots[k].cur.tcp[t->state]++;
            if (t->state == PROC_TCP_LISTEN && p->nlisten < PROC_LISTEN_MAX) {
                p->listen[p->nlisten].port = t->lport;
                p->listen[p->nlisten].slot = k;
                p->nlisten++;
            }
        }
    } else if (t->state != PROC_TCP_LISTEN) {
        /* No process holds it any more (TIME_WAIT, an orphaned FIN_WAIT,
         * a half-open connection not yet accepted): it belongs to the
         * server listening on its local port, if that is in the group.
         * The kernel lists listening sockets first, so they are known. */
        for (i = 0; i < p->nlisten; i++) {
            if (p->listen[i].port == t->lport && p->listen[i].slot != last) {
                last = p->listen[i].slot;
                any = 1;
                s->slots[last].cur.tcp[t->state]++;
            }
        }
    }
    if (any) {
        s->group_tcp[t->state]++;
    }
}

static void proc_tcp_file(struct proc *s, struct proc_tcp_pass *p, int pid,
                          int v6)
{
    struct proc_lines l;
    char path[48];
    char *line;

    snprintf(path, sizeof(path), "%d/net/%s", pid, v6 ? "tcp6" : "tcp");
    if (proc_lines_open(&l, s->root_fd, path, s->lbuf, PROC_LBUF_SIZE) == 0) {
        while ((line = proc_lines_next(&l)) != NULL) {
            struct proc_tcp t;

            if (proc_tcp_parse(line, v6, &t) == 1) {
                proc_tcp_line(s, p, &t);
            }
        }
    }
    proc_lines_close(&l);
}

static void proc_tcp_count(struct proc *s, struct proc_scan_ctx *c)
{
    struct proc_tcp_pass pass;
    size_t i;

    proc_sort_socks(s->socks, s->nsocks);
    for (i = 0; i < c->nnetns; i++) {
        pass.nlisten = 0;
        proc_tcp_file(s, &pass, c->netns[i].pid, 0);
        proc_tcp_file(s, &pass, c->netns[i].pid, 1);
    }
}

/*
 * The collection's work; see proc.h.
 */
void proc_scan_work(void *arg)
{
    struct proc *s = arg;
    struct proc_scan_ctx c;
    size_t i, cursor = 0;
    struct proc_pidslot *t;

    s->gen++;
    s->ncand = 0;
    s->cand_lost = 0;
    s->members = s->untracked = s->candidates = 0;
    s->sock_lost = s->netns_lost = 0;
    s->nsocks = 0;
    s->io_denied_pid = s->fd_denied_pid = 0;
    s->pidfile_hit = s->cgroup_hit = 0;
    s->pidfile_msg[0] = s->cgroup_msg[0] = s->scan_msg[0] = '\0';
    memset(s->name_hits, 0, s->cfg->name.n * sizeof(*s->name_hits));
    memset(s->re_hits, 0, s->nre * sizeof(*s->re_hits));
    memset(s->group_tcp, 0, sizeof(s->group_tcp));
    c.nnetns = 0;

    proc_select(s);
    s->nindex_next = 0;
    for (i = 0; i < s->ncand; i++) {
        proc_measure(s, &c, s->cand[i], &cursor);
    }
    /* The new index replaces the old; slots the old one listed but this
     * scan did not see keep their old gen and are freed on the loop. */
    t = s->index;
    s->index = s->index_next;
    s->index_next = t;
    s->nindex = s->nindex_next;
    /* Matches beyond the candidate array: members, but not measured (a
     * process matched twice may be counted twice here). */
    s->members += s->cand_lost;
    s->untracked += s->cand_lost;
    if (s->cfg->tcp && s->nsocks > 0) {
        proc_tcp_count(s, &c);
    }
}
