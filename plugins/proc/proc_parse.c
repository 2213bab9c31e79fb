/*
 * proc_parse.c - parsers for /proc/PID/{stat,status,io,limits,cmdline},
 * fd links, net/tcp lines and pidfiles. See proc_pid.h.
 */
#include <stdio.h>
#include <string.h>

#include "proc_pid.h"

static const char *proc_skip_blanks(const char *p)
{
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    return p;
}

/* Skip one blank-separated field. Returns 0, or -1 at the end. */
static int proc_skip_field(const char **p)
{
    const char *s = proc_skip_blanks(*p);

    if (*s == '\0' || *s == '\n') {
        return -1;
    }
    while (*s != '\0' && *s != ' ' && *s != '\t' && *s != '\n') {
        s++;
    }
    *p = s;
    return 0;
}

/* A possibly negative decimal (ppid is 0 for init; some fields are -1). */
static int proc_scan_i64(const char **p, int64_t *out)
{
    const char *s = proc_skip_blanks(*p);
    uint64_t v;
    int neg = 0;

    if (*s == '-') {
        neg = 1;
        s++;
    }
    if (proc_scan_u64(&s, &v) != 0 || v > (uint64_t)INT64_MAX) {
        return -1;
    }
    *out = neg ? -(int64_t)v : (int64_t)v;
    *p = s;
    return 0;
}

/*
 * Parse /proc/PID/stat; see proc_pid.h.
 */
int proc_stat_parse(const char *text, struct proc_stat *out)
{
    const char *open = strchr(text, '(');
    const char *close = strrchr(text, ')');
    const char *p;
    size_t n;
    int field;

    memset(out, 0, sizeof(*out));
    if (open == NULL || close == NULL || close < open) {
        return -1;
    }
    n = (size_t)(close - open - 1);
    if (n >= sizeof(out->comm)) {
        n = sizeof(out->comm) - 1;
    }
    memcpy(out->comm, open + 1, n);
    out->comm[n] = '\0';

    p = proc_skip_blanks(close + 1);
    if (*p == '\0' || *p == '\n') {
        return -1;
    }
    out->state = *p++;
    /* Fields 4 (ppid) to 24 (rss); the ones not kept are skipped. */
    for (field = 4; field <= 24; field++) {
        int64_t v;

        switch (field) {
        case 4:
        case 9:
        case 14:
        case 15:
        case 20:
        case 22:
        case 23:
        case 24:
            if (proc_scan_i64(&p, &v) != 0) {
                return -1;
            }
            break;
        default:
            if (proc_skip_field(&p) != 0) {
                return -1;
            }
            continue;
        }
        switch (field) {
        case 4:
            out->ppid = (int)v;
            break;
        case 9:
            out->flags = (unsigned)v;
            break;
        case 14:
            out->utime = (uint64_t)v;
            break;
        case 15:
            out->stime = (uint64_t)v;
            break;
        case 20:
            out->num_threads = (uint64_t)v;
            break;
        case 22:
            out->starttime = (uint64_t)v;
            break;
        case 23:
            out->vsize = (uint64_t)v;
            break;
        default: /* 24 */
            out->rss_pages = v < 0 ? 0 : (uint64_t)v;
            break;
        }
    }
    return 0;
}

/* "Key:\t<value>" lines: the value after the key, or NULL. */
static const char *proc_key(const char *line, const char *key)
{
    size_t n = strlen(key);

    if (strncmp(line, key, n) != 0 || line[n] != ':') {
        return NULL;
    }
    return line + n + 1;
}

/* A "<N> kB" value in bytes. */
static int proc_scan_kb(const char *v, uint64_t *out)
{
    uint64_t kb;

    if (proc_scan_u64(&v, &kb) != 0 || kb > UINT64_MAX / 1024) {
        return -1;
    }
    *out = kb * 1024;
    return 0;
}

/*
 * Parse /proc/PID/status; see proc_pid.h.
 */
int proc_status_parse(char *text, struct proc_status *out)
{
    char *p = text, *line;
    int lines = 0;

    memset(out, 0, sizeof(*out));
    while ((line = proc_text_line(&p)) != NULL) {
        const char *v;
        uint64_t u;

        if (line[0] == 'N' && strncmp(line, "Name:", 5) == 0) {
            lines++;
        } else if ((v = proc_key(line, "Uid")) != NULL) {
            uint64_t e;

            if (proc_scan_u64(&v, &u) == 0 && u <= UINT32_MAX &&
                proc_scan_u64(&v, &e) == 0 && e <= UINT32_MAX) {
                out->uid = (uint32_t)u;
                out->euid = (uint32_t)e;
                out->have |= PROC_ST_UID;
            }
        } else if ((v = proc_key(line, "VmRSS")) != NULL) {
            if (proc_scan_kb(v, &out->rss) == 0) {
                out->have |= PROC_ST_RSS;
            }
        } else if ((v = proc_key(line, "VmSize")) != NULL) {
            if (proc_scan_kb(v, &out->vms) == 0) {
                out->have |= PROC_ST_VMS;
            }
        } else if ((v = proc_key(line, "VmSwap")) != NULL) {
            if (proc_scan_kb(v, &out->swap) == 0) {
                out->have |= PROC_ST_SWAP;
            }
        } else if ((v = proc_key(line, "Threads")) != NULL) {
            if (proc_scan_u64(&v, &out->threads) == 0) {
                out->have |= PROC_ST_THREADS;
            }
        } else if ((v = proc_key(line, "voluntary_ctxt_switches")) != NULL) {
            if (proc_scan_u64(&v, &out->vcsw) == 0) {
                out->have |= PROC_ST_VCSW;
            }
        } else if ((v = proc_key(line, "nonvoluntary_ctxt_switches")) != NULL) {
            if (proc_scan_u64(&v, &out->ivcsw) == 0) {
                out->have |= PROC_ST_IVCSW;
            }
        }
    }
    return out->have != 0 || lines > 0 ? 0 : -1;
}

/*
 * Parse /proc/PID/io; see proc_pid.h.
 */
int proc_io_parse(char *text, struct proc_io *out)
{
    char *p = text, *line;
    unsigned have = 0;

    memset(out, 0, sizeof(*out));
    while ((line = proc_text_line(&p)) != NULL) {
        static const char *const keys[4] = {"rchar", "wchar", "read_bytes",
                                            "write_bytes"};
        uint64_t *const dst[4] = {&out->rchar, &out->wchar, &out->read_bytes,
                                  &out->write_bytes};
        unsigned i;

        for (i = 0; i < 4; i++) {
            const char *v = proc_key(line, keys[i]);

            if (v != NULL && proc_scan_u64(&v, dst[i]) == 0) {
                have |= 1u << i;
                break;
            }
        }
    }
    return have == 0xf ? 0 : -1;
}

/* A limit value: a decimal or "unlimited". */
static int proc_scan_limit(const char **p, uint64_t *out)
{
    const char *s = proc_skip_blanks(*p);

    if (strncmp(s, "unlimited", 9) == 0) {
        *out = PROC_UNLIMITED;
        *p = s + 9;
        return 0;
    }
    return proc_scan_u64(p, out);
}

/*
 * The next line of the limits table; see proc_pid.h.
 *
 * The table is laid out in columns: a name padded to 26 characters, then
 * soft, hard and units separated by blanks. Names contain single spaces
 * ("Max open files"), so the name ends where a run of two blanks begins.
 */
int proc_limits_next(char **p, struct proc_limit *out)
{
    char *line;

    while ((line = proc_text_line(p)) != NULL) {
        const char *v;
        char *gap = strstr(line, "  ");
        size_t n;

        if (strncmp(line, "Limit ", 6) == 0 || gap == NULL) {
            continue;
        }
        memset(out, 0, sizeof(*out));
        n = (size_t)(gap - line);
        if (n >= sizeof(out->name)) {
            n = sizeof(out->name) - 1;
        }
        memcpy(out->name, line, n);
        v = gap;
        if (proc_scan_limit(&v, &out->soft) != 0 ||
            proc_scan_limit(&v, &out->hard) != 0) {
            continue;
        }
        v = proc_skip_blanks(v);
        n = strcspn(v, " \t");
        if (n >= sizeof(out->units)) {
            n = sizeof(out->units) - 1;
        }
        memcpy(out->units, v, n);
        return 1;
    }
    return 0;
}

/*
 * The open-files limit; see proc_pid.h.
 */
int proc_limits_nofile(const char *text, uint64_t *soft, uint64_t *hard)
{
    const char *line = strstr(text, "Max open files ");
    const char *v;

    if (line == NULL || (line != text && line[-1] != '\n')) {
        return -1;
    }
    v = line + strlen("Max open files ");
    if (proc_scan_limit(&v, soft) != 0 || proc_scan_limit(&v, hard) != 0) {
        return -1;
    }
    return 0;
}

/*
 * The command line as one line; see proc_pid.h.
 */
size_t proc_cmdline_text(char *buf, size_t len)
{
    size_t i;

    while (len > 0 && (buf[len - 1] == '\0' || buf[len - 1] == ' ')) {
        len--;
    }
    for (i = 0; i < len; i++) {
        if (buf[i] == '\0' || buf[i] == '\n') {
            buf[i] = ' ';
        }
    }
    buf[len] = '\0';
    return len;
}

/*
 * A pidfile's pid; see proc_pid.h.
 */
int proc_pidfile_parse(const char *text, int *pid)
{
    const char *p = text;
    uint64_t v;

    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
        p++;
    }
    if (proc_scan_u64(&p, &v) != 0 || v == 0 || v > 0x3fffffff) {
        return -1;
    }
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
        p++;
    }
    if (*p != '\0') {
        return -1;
    }
    *pid = (int)v;
    return 0;
}

/*
 * "<prefix>:[N]"; see proc_pid.h.
 */
int proc_link_inode(const char *link, const char *prefix, uint64_t *out)
{
    size_t n = strlen(prefix);
    const char *p;

    if (strncmp(link, prefix, n) != 0 || link[n] != ':' || link[n + 1] != '[') {
        return -1;
    }
    p = link + n + 2;
    if (proc_scan_u64(&p, out) != 0 || p[0] != ']' || p[1] != '\0') {
        return -1;
    }
    return 0;
}

/*
 * Classify an fd link; see proc_pid.h.
 */
enum proc_fd_kind proc_fd_classify(const char *link, uint64_t *inode)
{
    *inode = 0;
    if (link[0] == '/') {
        return PROC_FD_FILE;
    }
    if (proc_link_inode(link, "socket", inode) == 0) {
        return PROC_FD_SOCKET;
    }
    if (strncmp(link, "pipe:[", 6) == 0) {
        return PROC_FD_PIPE;
    }
    if (strncmp(link, "anon_inode:", 11) == 0) {
        return PROC_FD_ANON;
    }
    return PROC_FD_OTHER;
}

/*
 * TCP state names; see proc_pid.h.
 */
const char *proc_tcp_state_name(int state)
{
    static const char *const names[PROC_TCP_NSTATES] = {
        [PROC_TCP_ESTABLISHED] = "established",
        [PROC_TCP_SYN_SENT] = "syn_sent",
        [PROC_TCP_SYN_RECV] = "syn_recv",
        [PROC_TCP_FIN_WAIT1] = "fin_wait1",
        [PROC_TCP_FIN_WAIT2] = "fin_wait2",
        [PROC_TCP_TIME_WAIT] = "time_wait",
        [PROC_TCP_CLOSE] = "close",
        [PROC_TCP_CLOSE_WAIT] = "close_wait",
        [PROC_TCP_LAST_ACK] = "last_ack",
        [PROC_TCP_LISTEN] = "listen",
        [PROC_TCP_CLOSING] = "closing",
        [PROC_TCP_NEW_SYN_RECV] = "new_syn_recv",
    };

    if (state <= 0 || state >= PROC_TCP_NSTATES) {
        return NULL;
    }
    return names[state];
}

static int proc_hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

/* Exactly ndigits hex digits into *out; advances *p. */
static int proc_scan_hex(const char **p, unsigned ndigits, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    unsigned i;

    for (i = 0; i < ndigits; i++) {
        int d = proc_hexval(s[i]);

        if (d < 0) {
            return -1;
        }
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    *p = s + ndigits;
    return 0;
}

/* Hex digits up to a non-hex character (queues, uid-free fields). */
static int proc_scan_hex_var(const char **p, uint64_t *out)
{
    const char *s = proc_skip_blanks(*p);
    uint64_t v = 0;
    int n = 0;

    while (proc_hexval(*s) >= 0 && n < 16) {
        v = v << 4 | (uint64_t)proc_hexval(*s);
        s++;
        n++;
    }
    if (n == 0 || proc_hexval(*s) >= 0) {
        return -1;
    }
    *out = v;
    *p = s;
    return 0;
}

/* "AAAAAAAA:PPPP" (v4) or 32 hex digits and a port (v6). The kernel
 * prints each 32-bit word of the address as it sits in memory, read as a
 * host-order integer: on a little-endian machine the bytes come out
 * reversed within each word. */
static int proc_scan_endpoint(const char **p, int v6, uint8_t *addr,
                              uint16_t *port)
{
    const char *s = proc_skip_blanks(*p);
    unsigned words = v6 ? 4 : 1, w;
    uint64_t v;

    memset(addr, 0, 16);
    for (w = 0; w < words; w++) {
        uint32_t word;

        if (proc_scan_hex(&s, 8, &v) != 0) {
            return -1;
        }
        word = (uint32_t)v;
        memcpy(addr + 4 * w, &word, 4);
    }
    if (*s != ':') {
        return -1;
    }
    s++;
    if (proc_scan_hex(&s, 4, &v) != 0) {
        return -1;
    }
    *port = (uint16_t)v;
    *p = s;
    return 0;
}

/*
 * Parse a net/tcp line; see proc_pid.h.
 */
int proc_tcp_parse(const char *line, int v6, struct proc_tcp *out)
{
    const char *p = proc_skip_blanks(line);
    uint64_t v;

    memset(out, 0, sizeof(*out));
    out->v6 = v6;
    if (strncmp(p, "sl ", 3) == 0) {
        return 0;
    }
    /* "0:" the slot number. */
    if (proc_scan_u64(&p, &v) != 0 || *p != ':') {
        return -1;
    }
    p++;
    if (proc_scan_endpoint(&p, v6, out->local, &out->lport) != 0 ||
        proc_scan_endpoint(&p, v6, out->remote, &out->rport) != 0) {
        return -1;
    }
    p = proc_skip_blanks(p);
    if (proc_scan_hex(&p, 2, &v) != 0) {
        return -1;
    }
    out->state = (int)v;
    /* tx_queue:rx_queue */
    if (proc_scan_hex_var(&p, &out->tx_queue) != 0 || *p != ':') {
        return -1;
    }
    p++;
    if (proc_scan_hex_var(&p, &out->rx_queue) != 0) {
        return -1;
    }
    /* tr:tm->when, retrnsmt */
    if (proc_skip_field(&p) != 0 || proc_skip_field(&p) != 0) {
        return -1;
    }
    if (proc_scan_u64(&p, &v) != 0 || v > UINT32_MAX) {
        return -1;
    }
    out->uid = (uint32_t)v;
    /* timeout */
    if (proc_skip_field(&p) != 0) {
        return -1;
    }
    if (proc_scan_u64(&p, &out->inode) != 0) {
        return -1;
    }
    return 1;
}

/*
 * Format an endpoint; see proc_pid.h.
 */
void proc_tcp_endpoint(const uint8_t *addr, int v6, uint16_t port, char *buf,
                       size_t size)
{
    if (!v6) {
        snprintf(buf, size, "%u.%u.%u.%u:%u", addr[0], addr[1], addr[2],
                 addr[3], port);
        return;
    }
    /* An IPv4-mapped address (::ffff:a.b.c.d) reads best as such. */
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0,    0,
                                       0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(addr, mapped, 12) == 0) {
        snprintf(buf, size, "[::ffff:%u.%u.%u.%u]:%u", addr[12], addr[13],
                 addr[14], addr[15], port);
        return;
    }
    /* RFC 5952: the longest run of two or more zero groups becomes "::". */
    unsigned g[8], i;
    int best = -1, bestlen = 0;
    size_t len = 0;

    for (i = 0; i < 8; i++) {
        g[i] = (unsigned)addr[2 * i] << 8 | addr[2 * i + 1];
    }
    for (i = 0; i < 8;) {
        unsigned j = i;

        while (j < 8 && g[j] == 0) {
            j++;
        }
        if ((int)(j - i) > bestlen && j - i >= 2) {
            best = (int)i;
            bestlen = (int)(j - i);
        }
        i = j > i ? j : i + 1;
    }
    len += (size_t)snprintf(buf + len, size - len, "[");
    for (i = 0; i < 8 && len < size; i++) {
        if ((int)i == best) {
            len += (size_t)snprintf(buf + len, size - len, "::");
            i += (unsigned)bestlen - 1;
            continue;
        }
        len += (size_t)snprintf(buf + len, size - len, "%s%x",
                                (i == 0 || (int)i == best + bestlen) ? "" : ":",
                                g[i]);
    }
    if (len < size) {
        snprintf(buf + len, size - len, "]:%u", port);
    }
}
