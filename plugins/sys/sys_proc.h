/*
 * sys_proc - the Linux side of the sys plugin: readers for /proc/stat,
 * /proc/loadavg, /proc/meminfo, /proc/diskstats, /proc/net/dev and
 * /proc/pressure/{cpu,memory,io}, and the arithmetic that turns two
 * readings of their counters into percentages and rates.
 *
 * Private to plugins/sys/: sys.c is the only user besides the unit test.
 * Nothing here allocates or keeps state between calls. A file is read with
 * open/read into a buffer the caller owns (normally on its stack), one line
 * at a time, so that a file of any length is parsed in a buffer of fixed
 * size; lines longer than the buffer are skipped. Parsers take the
 * struct sys_file, so tests feed them either a fixture path or a text.
 *
 * Counter arithmetic is wrap-safe: deltas are unsigned 64-bit, and a counter
 * that went down (a 32-bit counter that wrapped, a device that was
 * re-created, a CPU that went offline) makes the whole interval invalid
 * rather than producing a negative or enormous rate.
 */
#ifndef VIGIL_SYS_PROC_H
#define VIGIL_SYS_PROC_H

#include <stddef.h>
#include <stdint.h>

/* Longest device or interface name kept, NUL included. The kernel limits
 * disk names to 32 bytes and interface names to 16, so a longer name means
 * the line is not what we think it is. */
#define SYS_NAME_MAX 64

/* ------------------------------------------------------------------------
 * Line reader.
 */
struct sys_file {
    const char *path; /* for messages: the path, or "(text)" */
    int fd;           /* -1 in text mode and once closed */
    char *buf;        /* borrowed from the caller */
    size_t cap;       /* bytes in buf */
    size_t len;       /* bytes of buf holding data */
    size_t pos;       /* start of the unread data */
    unsigned lineno;  /* number of the line last returned */
    int eof;
    int skipping;    /* discarding the rest of an over-long line */
    int err;         /* 0 or the first VIGIL_E* code */
    int sys_errno;   /* errno behind err; 0 for a parse error */
    const char *why; /* static text for a parse error, else NULL */
    int64_t ts_ns;   /* CLOCK_MONOTONIC when the file was opened */
};

/* Open path for reading lines into buf (cap bytes, at least 2; both
 * borrowed until sys_file_close). Records the monotonic time of the read
 * in f->ts_ns. Returns 0, or VIGIL_ENOENT (no such file), VIGIL_EUNAVAIL
 * (the kernel refuses the file, e.g. PSI disabled) or VIGIL_EIO, with
 * f->err and f->sys_errno set; f can be closed either way. */
int sys_file_open(struct sys_file *f, const char *path, char *buf, size_t cap);

/* Read lines from text instead of a file: a NUL-terminated string that
 * the reader modifies in place (borrowed). ts_ns is 0. Does not fail. */
void sys_file_text(struct sys_file *f, char *text);

/* The next line without its newline, NUL-terminated, in f's buffer and
 * valid until the next call; NULL at the end of the file or on a read
 * error (f->err says which). Lines longer than the buffer are skipped. */
char *sys_file_line(struct sys_file *f);

/* Record a parse error at the current line (the first error wins) and
 * return f->err. why must be a static string. */
int sys_file_fail(struct sys_file *f, int code, const char *why);

/* Close the file; accepts a closed or text-mode reader. Does not fail. */
void sys_file_close(struct sys_file *f);

/* Skip spaces and tabs, then parse an unsigned decimal that must not run
 * into a letter or digit beyond 64 bits. Advances *p past it. Returns 0
 * or VIGIL_EPARSE (and leaves *p alone). */
int sys_scan_u64(const char **p, uint64_t *out);

/* The same for a non-negative decimal fraction such as "12.34", parsed
 * without the C locale's help. */
int sys_scan_dec(const char **p, double *out);

/* The increase of a counter: 1 with *d = cur - prev, or 0 when it went
 * back (a reset, or a 32-bit counter that wrapped), which invalidates the
 * interval. Does not fail. */
int sys_delta(uint64_t prev, uint64_t cur, uint64_t *d);

/* Per-second rate of a counter: (cur - prev) * scale / seconds(dt_ns).
 * Returns 1 with *out set, or 0 when the interval must be skipped (cur <
 * prev, dt_ns <= 0). Does not fail. */
int sys_rate(uint64_t prev, uint64_t cur, int64_t dt_ns, double scale,
             double *out);

/* ------------------------------------------------------------------------
 * /proc/stat: the cpu lines, in USER_HZ ticks.
 */
struct sys_cpu_times {
    int cpu; /* -1 for the "cpu" total line, else the N of "cpuN" */
    uint64_t user, nice, system, idle, iowait, irq, softirq, steal;
    uint64_t guest, guest_nice; /* already included in user and nice */
};

struct sys_cpu_pct {
    double user, nice, system, iowait, irq, steal, idle, busy;
};

/* The next cpu line of /proc/stat. Returns 1 with *out filled, 0 at the
 * first line that is not a cpu line (the rest of the file is of no
 * interest), or a negative VIGIL_E* code. Kernels before 2.6.33 print
 * fewer than 10 fields; missing ones read as 0. */
int sys_stat_next(struct sys_file *f, struct sys_cpu_times *out);

/* Percentages of the time between two readings of one CPU. Returns 1 with
 * *out filled, or 0 when the interval must be skipped: a counter went back
 * (hotplug) or no time was accounted. Does not fail. */
int sys_cpu_pct(const struct sys_cpu_times *prev,
                const struct sys_cpu_times *cur, struct sys_cpu_pct *out);

/* ------------------------------------------------------------------------
 * /proc/loadavg.
 */
struct sys_loadavg {
    double avg1, avg5, avg15;
    uint64_t running, total; /* runnable and existing tasks */
};

/* Parse the one line of /proc/loadavg. Returns 0 or a VIGIL_E* code. */
int sys_loadavg_read(struct sys_file *f, struct sys_loadavg *out);

/* ------------------------------------------------------------------------
 * /proc/meminfo, converted from kB to bytes.
 */
struct sys_meminfo {
    uint64_t total, free, available, buffers, cached;
    uint64_t swap_total, swap_free;
};

struct sys_mem_usage {
    double used_bytes, used_pct;           /* total - available */
    double swap_used_bytes, swap_used_pct; /* 0 without swap */
};

/* Parse /proc/meminfo. MemTotal is required; without MemAvailable (before
 * Linux 3.14) available is estimated as MemFree + Buffers + Cached.
 * Returns 0 or a VIGIL_E* code. */
int sys_meminfo_read(struct sys_file *f, struct sys_meminfo *out);

/* Derived figures. Does not fail. */
void sys_mem_usage(const struct sys_meminfo *m, struct sys_mem_usage *out);

/* ------------------------------------------------------------------------
 * /proc/diskstats.
 */
struct sys_disk_ctr {
    uint64_t reads, read_sectors, read_ms;
    uint64_t writes, write_sectors, write_ms;
    uint64_t io_ms; /* time the device had I/O in flight */
};

struct sys_disk {
    unsigned major, minor;
    char name[SYS_NAME_MAX];
    struct sys_disk_ctr c;
};

struct sys_disk_rates {
    double reads_per_s, writes_per_s;
    double read_bytes_per_s, write_bytes_per_s;
    double util_pct; /* capped at 100 */
    double await_ms; /* per completed read or write; 0 without I/O */
};

/* The next device line. Lines of 14, 18 or 20 fields (or more) are
 * accepted; shorter ones (2.6 kernels' partition lines) are skipped.
 * Returns 1 with *out filled, 0 at the end, or a negative VIGIL_E* code. */
int sys_diskstats_next(struct sys_file *f, struct sys_disk *out);

/* Whether the device is never worth reporting: loop*, ram*, zram*. */
int sys_disk_ignored(const char *name);

/* Whether name is a whole disk rather than a partition: whole disks have a
 * directory <sys_root>/block/<name>, with '/' in the name written as '!'.
 * Returns 1 or 0. Does not fail. */
int sys_disk_is_whole(const char *sys_root, const char *name);

/* Rates between two readings dt_ns apart. Returns 1 with *out filled, or
 * 0 when the interval must be skipped (a counter went back, dt_ns <= 0).
 * Does not fail. */
int sys_disk_rates(const struct sys_disk_ctr *prev,
                   const struct sys_disk_ctr *cur, int64_t dt_ns,
                   struct sys_disk_rates *out);

/* ------------------------------------------------------------------------
 * /proc/net/dev.
 */
struct sys_net_ctr {
    uint64_t rx_bytes, rx_packets, rx_errors, rx_drops;
    uint64_t tx_bytes, tx_packets, tx_errors, tx_drops;
};

struct sys_netdev {
    char name[SYS_NAME_MAX];
    struct sys_net_ctr c;
};

struct sys_net_rates {
    double rx_bytes, tx_bytes, rx_packets, tx_packets;
    double rx_errors, tx_errors, rx_drops, tx_drops; /* all per second */
};

/* The next interface line (the two header lines are skipped). Returns 1
 * with *out filled, 0 at the end, or a negative VIGIL_E* code. */
int sys_netdev_next(struct sys_file *f, struct sys_netdev *out);

/* Rates between two readings dt_ns apart; 1, or 0 to skip, as for
 * sys_disk_rates. Does not fail. */
int sys_net_rates(const struct sys_net_ctr *prev, const struct sys_net_ctr *cur,
                  int64_t dt_ns, struct sys_net_rates *out);

/* ------------------------------------------------------------------------
 * /proc/pressure/{cpu,memory,io}.
 */
enum sys_psi_kind { SYS_PSI_SOME = 0, SYS_PSI_FULL = 1, SYS_PSI_KINDS };

struct sys_psi {
    int have[SYS_PSI_KINDS];          /* the line is present */
    double avg10[SYS_PSI_KINDS];      /* percent of the last 10 s */
    uint64_t total_us[SYS_PSI_KINDS]; /* stall time since boot */
};

/* Parse one pressure file. A "full" line is absent for cpu before Linux
 * 5.13. Returns 0 or a VIGIL_E* code. */
int sys_pressure_read(struct sys_file *f, struct sys_psi *out);

#endif
