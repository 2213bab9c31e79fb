/*
 * proc_pid - the Linux side of the proc plugin: readers and parsers for
 * /proc/PID/{stat,status,io,limits,cmdline}, /proc/PID/fd links,
 * /proc/PID/net/tcp{,6} lines, pidfiles and cgroup.procs, and the counter
 * arithmetic that turns two readings into rates.
 *
 * Private to plugins/proc/. Nothing here allocates or keeps state between
 * calls: files are read with open/read into buffers the caller owns (the
 * plugin instance's work buffers, or a diagnostic request's), directories
 * are listed with getdents64 into a caller's buffer rather than opendir()
 * (which allocates), and parsers work on NUL-terminated text so that tests
 * feed them fixture files or strings alike.
 *
 * Facts these parsers rely on (checked on Linux 6.x, docs/proc.md):
 * - stat: comm lies between the first '(' and the LAST ')' (it may hold
 *   spaces and parentheses); fields after it are numbered from 3 (state);
 * - status: sizes in kB; Threads; voluntary_ctxt_switches and
 *   nonvoluntary_ctxt_switches count the one task the file belongs to;
 * - limits: "Max open files  <soft> <hard> files", either may be
 *   "unlimited";
 * - net/tcp: "sl local rem st tx:rx tr:when retrnsmt uid timeout inode",
 *   addresses in hex of the kernel's in-memory (network order) bytes read
 *   as host-order 32-bit words.
 */
#ifndef VIGIL_PROC_PID_H
#define VIGIL_PROC_PID_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Longest comm kept, NUL included: TASK_COMM_LEN is 16, but kernel worker
 * threads show "kworker/u4:1-events_unbound" and the like. */
#define PROC_COMM_MAX 64

/* A limit the kernel prints as "unlimited". */
#define PROC_UNLIMITED UINT64_MAX

/* ------------------------------------------------------------------------
 * Reading files and directories.
 */

/* Read the whole file `name` relative to dirfd (AT_FDCWD for a path) into
 * buf (cap bytes, at least 2), NUL-terminated. A file longer than cap - 1
 * is cut there; *truncated says so when not NULL. Returns the length, or
 * -errno (-ENOENT, -EACCES, -ESRCH for a process that is gone...). */
ssize_t proc_read_at(int dirfd, const char *name, char *buf, size_t cap,
                     int *truncated);

/* Open a directory relative to dirfd for proc_dir_next(). Returns the fd
 * or -errno. */
int proc_dir_open(int dirfd, const char *name);

/* Directory listing through getdents64 into a caller's buffer. */
struct proc_dir {
    int fd;    /* from proc_dir_open(); closed by the caller */
    char *buf; /* borrowed; at least 1 KiB */
    size_t cap;
    size_t len, pos;
    int err; /* 0 or -errno of a failed read */
};

/* Start listing fd (borrowed) through buf. Does not fail. */
void proc_dir_init(struct proc_dir *d, int fd, char *buf, size_t cap);

/* The next entry's name, "." and ".." skipped; NULL at the end or on an
 * error (d->err). Valid until the next call. *type (when not NULL) gets
 * the entry's d_type (DT_DIR, DT_LNK...). */
const char *proc_dir_next(struct proc_dir *d, unsigned char *type);

/* A decimal name such as a /proc entry or a task id: 1 and *out, or 0. */
int proc_name_pid(const char *name, int *out);

/* Line reader over a file of any length through a fixed buffer, for
 * /proc/PID/net/tcp, whose size grows with the sockets of the namespace.
 * Lines longer than the buffer are skipped. */
struct proc_lines {
    int fd; /* owned: closed by proc_lines_close() */
    char *buf;
    size_t cap, len, pos;
    int eof, skipping, err;
};

/* Open name relative to dirfd. Returns 0 or -errno. */
int proc_lines_open(struct proc_lines *l, int dirfd, const char *name,
                    char *buf, size_t cap);

/* The next line without its newline, or NULL at the end (l->err is 0) or
 * on a read error (l->err is -errno). */
char *proc_lines_next(struct proc_lines *l);

/* Close; accepts a reader that failed to open. Does not fail. */
void proc_lines_close(struct proc_lines *l);

/* Cut the next line out of a NUL-terminated text: returns it (its newline
 * replaced by NUL) and advances *p, or NULL at the end. */
char *proc_text_line(char **p);

/* Skip blanks, then parse an unsigned decimal that must not run into a
 * letter or digit beyond 64 bits. Advances *p. Returns 0 or -1. */
int proc_scan_u64(const char **p, uint64_t *out);

/* ------------------------------------------------------------------------
 * /proc/PID/stat.
 */
struct proc_stat {
    char comm[PROC_COMM_MAX];
    char state;           /* R, S, D, Z, T, t, X, I... */
    int ppid;             /* field 4 */
    unsigned flags;       /* field 9: PF_* (PF_KTHREAD = 0x00200000) */
    uint64_t utime;       /* field 14, clock ticks */
    uint64_t stime;       /* field 15 */
    uint64_t num_threads; /* field 20 */
    uint64_t starttime;   /* field 22, clock ticks after boot */
    uint64_t vsize;       /* field 23, bytes */
    uint64_t rss_pages;   /* field 24 */
};

#define PROC_PF_KTHREAD 0x00200000u

/* Parse the one line of /proc/PID/stat (or /proc/PID/task/TID/stat).
 * Returns 0 or -1 when it is not such a line. */
int proc_stat_parse(const char *text, struct proc_stat *out);

/* ------------------------------------------------------------------------
 * /proc/PID/status.
 */
enum {
    PROC_ST_UID = 1u << 0,
    PROC_ST_RSS = 1u << 1,
    PROC_ST_VMS = 1u << 2,
    PROC_ST_SWAP = 1u << 3,
    PROC_ST_THREADS = 1u << 4,
    PROC_ST_VCSW = 1u << 5,
    PROC_ST_IVCSW = 1u << 6,
};

struct proc_status {
    unsigned have;           /* PROC_ST_* of the fields found */
    uint32_t uid;            /* real uid */
    uint32_t euid;           /* effective uid */
    uint64_t rss, vms, swap; /* bytes (VmRSS, VmSize, VmSwap) */
    uint64_t threads;
    uint64_t vcsw, ivcsw; /* of this one task */
};

/* Parse /proc/PID/status; text is modified (cut into lines). Fields
 * absent from the file (a zombie has no Vm* lines) stay 0 and their bit
 * unset. Returns 0, or -1 when no line at all was recognised. */
int proc_status_parse(char *text, struct proc_status *out);

/* ------------------------------------------------------------------------
 * /proc/PID/io.
 */
struct proc_io {
    uint64_t rchar, wchar;            /* bytes through read/write calls */
    uint64_t read_bytes, write_bytes; /* bytes to and from storage */
};

/* Parse /proc/PID/io (text modified). Returns 0, or -1 when a field is
 * missing. */
int proc_io_parse(char *text, struct proc_io *out);

/* ------------------------------------------------------------------------
 * /proc/PID/limits.
 */

/* Find the "Max open files" line: soft and hard limits, PROC_UNLIMITED
 * for "unlimited". Returns 0, or -1 when the line is missing. */
int proc_limits_nofile(const char *text, uint64_t *soft, uint64_t *hard);

/* One line of the limits table, for diagnostics. */
struct proc_limit {
    char name[32]; /* "Max open files" */
    uint64_t soft, hard;
    char units[16]; /* "files", "bytes", "" */
};

/* Parse the next limits line from *p (the header line is skipped).
 * Returns 1 with *out, or 0 at the end. */
int proc_limits_next(char **p, struct proc_limit *out);

/* ------------------------------------------------------------------------
 * /proc/PID/cmdline and pidfiles.
 */

/* Turn the NUL-separated argv of len bytes in buf into one line: NULs
 * become spaces, trailing NULs and spaces are dropped, and the result is
 * NUL-terminated (buf must have room for len + 1 bytes). Returns its
 * length. Does not fail. */
size_t proc_cmdline_text(char *buf, size_t len);

/* The pid in a pidfile's text: a positive decimal, optionally surrounded
 * by blanks and newlines, and nothing else. Returns 0 or -1. */
int proc_pidfile_parse(const char *text, int *pid);

/* ------------------------------------------------------------------------
 * /proc/PID/fd links.
 */
enum proc_fd_kind {
    PROC_FD_FILE,
    PROC_FD_SOCKET,
    PROC_FD_PIPE,
    PROC_FD_ANON,
    PROC_FD_OTHER,
    PROC_FD_NKINDS
};

/* What an fd link's target is ("/var/log/x", "socket:[123]",
 * "pipe:[45]", "anon_inode:[eventfd]", "anon_inode:bpf-map", "/dev/pts/0",
 * "net:[4026531840]"...). Character devices count as files, as lsof
 * does. For a socket, *inode is its inode number. Does not fail. */
enum proc_fd_kind proc_fd_classify(const char *link, uint64_t *inode);

/* The N of a "<prefix>:[N]" link (e.g. "net:[4026531840]" with prefix
 * "net"). Returns 0, or -1 when the text is not of that form. */
int proc_link_inode(const char *link, const char *prefix, uint64_t *out);

/* ------------------------------------------------------------------------
 * /proc/PID/net/tcp and tcp6.
 */

/* TCP states as the kernel numbers them (include/net/tcp_states.h). */
enum proc_tcp_state {
    PROC_TCP_ESTABLISHED = 1,
    PROC_TCP_SYN_SENT,
    PROC_TCP_SYN_RECV,
    PROC_TCP_FIN_WAIT1,
    PROC_TCP_FIN_WAIT2,
    PROC_TCP_TIME_WAIT,
    PROC_TCP_CLOSE,
    PROC_TCP_CLOSE_WAIT,
    PROC_TCP_LAST_ACK,
    PROC_TCP_LISTEN,
    PROC_TCP_CLOSING,
    PROC_TCP_NEW_SYN_RECV,
    PROC_TCP_NSTATES /* 13: index 0 unused */
};

/* "established", "listen", "time_wait"...; NULL for 0 and unknown. */
const char *proc_tcp_state_name(int state);

struct proc_tcp {
    int v6;
    uint8_t local[16], remote[16]; /* network order; v4 in the first 4 */
    uint16_t lport, rport;
    int state;
    uint64_t tx_queue, rx_queue;
    uint32_t uid;
    uint64_t inode; /* 0 for sockets no process holds (TIME_WAIT...) */
};

/* Parse one line of net/tcp (v6 = 0) or net/tcp6 (v6 = 1). Returns 1
 * with *out, 0 for the header line, -1 for a line that does not parse. */
int proc_tcp_parse(const char *line, int v6, struct proc_tcp *out);

/* "127.0.0.1:8080" or "[::1]:8080" into buf. Does not fail. */
void proc_tcp_endpoint(const uint8_t *addr, int v6, uint16_t port, char *buf,
                       size_t size);

/* ------------------------------------------------------------------------
 * Counter arithmetic.
 */

/* Per-second rate of a counter between two readings dt_ns apart, times
 * scale: 1 with *out, or 0 when the interval must be skipped (the counter
 * went back: a reset, a task that exited; or dt_ns <= 0). Does not
 * fail. */
int proc_rate(uint64_t prev, uint64_t cur, int64_t dt_ns, double scale,
              double *out);

/* CLOCK_MONOTONIC in ns. The unit test may point proc_clock at its own
 * clock so that rates over fixtures come out round. */
extern int64_t (*proc_clock)(void);
int64_t proc_mono_ns(void);

#endif
