/*
 * statsd.c - the statsd probe plugin: a StatsD / DogStatsD server on the
 * loop, aggregating what applications send per flush interval before it
 * reaches the bus. docs/statsd.md is the user's documentation.
 *
 * Input: UDP datagrams (uv_udp with recvmmsg batches into one preallocated
 * buffer) and, unless `tcp = no`, newline-framed TCP on the same address,
 * each connection with one bounded line buffer. Both listen on 127.0.0.1
 * unless `listen` says otherwise. Under heavy UDP load (more than 2000
 * datagrams a second) reading pauses for `read_pause` each time the socket
 * is empty, so that the loop wakes up for full batches rather than for
 * every few datagrams; under light load it never waits.
 *
 * Output: for a key (name + tags) the series statsd_agg.c publishes at
 * each flush (`<name>.count`, `.rate_per_s`, `.p99`...), gauges also the
 * moment they arrive; and the plugin's own counters, published at the end
 * of each flush:
 *
 *   statsd.packets_total    UDP datagrams received
 *   statsd.lines_total      non-empty lines received (UDP and TCP)
 *   statsd.bad_lines_total  lines not understood (logged, rate-limited)
 *   statsd.dropped_total    lines dropped: a new key beyond max_series,
 *                           or a key whose series the core refused
 *   statsd.series           keys in the aggregation table
 *   statsd.connections      open TCP connections
 *
 * The flush is collect(): it starts a new interval and publishes the old
 * one in slices of at most STATSD_SLICE_NS of loop time, on an idle
 * handle, returning VIGIL_PENDING until the last slice is done, so that
 * ten thousand keys never block the loop for long (statsd_agg.h tells how
 * a line for a key not yet published is handled meanwhile).
 *
 * Memory: init allocates the table (statsd_agg_create), the UDP buffer and
 * nothing else; a TCP connection allocates its line buffer when accepted.
 * The per-line path allocates only for a new key (statsd_agg.h).
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <uv.h>

#include <vigil/plugin.h>

#include "statsd_agg.h"
#include "statsd_parse.h"

/* libuv hands recvmmsg one 64 KiB chunk per datagram, up to 20 a call. */
#define STATSD_DGRAM_MAX (64 * 1024)
#define STATSD_DGRAMS 20
/* Loop time one flush slice may take, and keys per step within it. */
#define STATSD_SLICE_NS 500000
#define STATSD_SLICE_KEYS 256
/* Bad lines logged per minute before they are only counted. */
#define STATSD_BAD_BURST 5
#define STATSD_MINUTE_MS 60000
/* Bytes of a bad line quoted in the log. */
#define STATSD_QUOTE_MAX 80
/* Heavy UDP load, when read_pause applies: this many datagrams in a
 * window of STATSD_LOAD_WINDOW_MS (2000 a second). Below, waking up for
 * each datagram costs little (under 2 % of a core). */
#define STATSD_LOAD_WINDOW_MS 100
#define STATSD_LOAD_HEAVY 200

struct statsd_config {
    const char *listen;
    int tcp;
    int64_t max_series;
    struct vigil_list percentiles;
    const char *prefix;
    int64_t reservoir;
    int64_t expire_ms;
    int64_t max_connections;
    uint64_t max_line;
    uint64_t recv_buffer;
    int64_t read_pause_ms;
};

#define O(f) offsetof(struct statsd_config, f)
static const struct vigil_option statsd_options[] = {
    {.key = "listen",
     .type = VIGIL_OPT_STRING,
     .def = "127.0.0.1:8125",
     .offset = O(listen),
     .help = "IP:PORT ([v6]:PORT) for UDP, and TCP with tcp = yes"},
    {.key = "tcp",
     .type = VIGIL_OPT_BOOL,
     .def = "yes",
     .offset = O(tcp),
     .help = "also accept newline-framed StatsD over TCP on the same port"},
    {.key = "max_series",
     .type = VIGIL_OPT_INT,
     .def = "10000",
     .offset = O(max_series),
     .help = "distinct keys (name + tags) kept; lines for new ones beyond "
             "are dropped and counted in statsd.dropped_total"},
    {.key = "percentiles",
     .type = VIGIL_OPT_LIST,
     .def = "50 90 95 99",
     .offset = O(percentiles),
     .help = "percentiles published for timers (<name>.p50...), in (0, 100]"},
    {.key = "prefix",
     .type = VIGIL_OPT_STRING,
     .def = NULL,
     .offset = O(prefix),
     .help = "namespace put in front of every application metric name"},
    {.key = "reservoir",
     .type = VIGIL_OPT_INT,
     .def = "2048",
     .offset = O(reservoir),
     .help = "timer values kept per key and interval for percentiles; "
             "beyond, a uniform sample of that size"},
    {.key = "expire",
     .type = VIGIL_OPT_DURATION,
     .def = "10m",
     .offset = O(expire_ms),
     .help = "forget a key that sent nothing for this long (0: never)"},
    {.key = "max_connections",
     .type = VIGIL_OPT_INT,
     .def = "64",
     .offset = O(max_connections),
     .help = "TCP connections open at once; more are closed at once"},
    {.key = "max_line",
     .type = VIGIL_OPT_BYTES,
     .def = "64KiB",
     .offset = O(max_line),
     .help = "longest TCP line; a longer one is counted bad and skipped"},
    {.key = "recv_buffer",
     .type = VIGIL_OPT_BYTES,
     .def = "32MiB",
     .offset = O(recv_buffer),
     .help = "UDP socket receive buffer: what arrives while the loop is "
             "busy or descheduled waits there; 0: system default"},
    {.key = "read_pause",
     .type = VIGIL_OPT_DURATION,
     .def = "1ms",
     .offset = O(read_pause_ms),
     .help = "under heavy UDP load, wait this long after emptying the "
             "socket before reading again (fewer, fuller reads); 0: never"},
    {.key = NULL},
};
#undef O

/* A log line that may repeat: at most `burst` a minute, then a count. */
struct statsd_limit {
    uint64_t start_ms;
    uint32_t logged;
    uint64_t suppressed;
};

struct statsd_conn {
    uv_tcp_t h;
    struct statsd *s;
    struct statsd_conn *next;
    struct statsd_conn **pprev;
    size_t len;   /* bytes waiting in buf */
    int skipping; /* inside a line longer than max_line */
    char peer[64];
    char buf[]; /* max_line + 1 */
};

enum {
    STATSD_SELF_PACKETS,
    STATSD_SELF_LINES,
    STATSD_SELF_BAD,
    STATSD_SELF_DROPPED,
    STATSD_SELF_SERIES,
    STATSD_SELF_CONNS,
    STATSD_NSELF
};

static const char *const statsd_self_names[STATSD_NSELF] = {
    [STATSD_SELF_PACKETS] = "statsd.packets_total",
    [STATSD_SELF_LINES] = "statsd.lines_total",
    [STATSD_SELF_BAD] = "statsd.bad_lines_total",
    [STATSD_SELF_DROPPED] = "statsd.dropped_total",
    [STATSD_SELF_SERIES] = "statsd.series",
    [STATSD_SELF_CONNS] = "statsd.connections",
};

struct statsd {
    const struct vigil_host *host;
    vigil_instance *inst;
    const struct statsd_config *cfg; /* borrowed from the core */
    struct statsd_agg *agg;
    uv_loop_t *loop;

    struct sockaddr_storage addr;
    char addr_text[64];
    char prefix[VIGIL_NAME_MAX];
    size_t conn_buf; /* max_line + 1 */

    uv_udp_t udp;
    uv_tcp_t tcp;
    uv_idle_t idle;
    uv_timer_t pause;
    int udp_open, tcp_open, idle_open, pause_open;
    int paused;          /* UDP reading stopped until the pause timer */
    uint64_t load_start; /* uv_now() of the current load window */
    uint64_t load_count; /* datagrams in it */
    int heavy;           /* the last window was heavy */
    char *udp_buf;
    struct statsd_conn *conns;
    uint32_t nconns;

    uint64_t last_flush_ns; /* uv_hrtime() of the previous flush */
    int64_t flush_ts;

    uint64_t count[STATSD_NSELF];
    vigil_series_id self[STATSD_NSELF];
    int self_ok;

    struct statsd_limit bad_limit;
    struct statsd_limit drop_limit;
    struct statsd_limit conn_limit;
};

/* ------------------------------------------------------------------------
 * Logging that may repeat.
 */

/* Close the minute if it is over, saying how many were not logged. */
static void statsd_limit_roll(struct statsd *s, struct statsd_limit *l,
                              const char *what)
{
    uint64_t now = uv_now(s->loop);

    if (now - l->start_ms < STATSD_MINUTE_MS) {
        return;
    }
    if (l->suppressed > 0) {
        s->host->log(s->inst, VIGIL_LOG_WARN,
                     "%llu more %s in the last minute were not logged",
                     (unsigned long long)l->suppressed, what);
    }
    l->start_ms = now;
    l->logged = 0;
    l->suppressed = 0;
}

/* May one more be logged this minute? */
static int statsd_limit_allow(struct statsd *s, struct statsd_limit *l,
                              uint32_t burst, const char *what)
{
    statsd_limit_roll(s, l, what);
    if (l->logged < burst) {
        l->logged++;
        return 1;
    }
    l->suppressed++;
    return 0;
}

/* Quote up to STATSD_QUOTE_MAX bytes of text for a log line. */
static void statsd_quote(const char *p, size_t n, char *out, size_t size)
{
    size_t o = 0;
    size_t i;

    for (i = 0; i < n && i < STATSD_QUOTE_MAX && o + 5 < size; i++) {
        unsigned char c = (unsigned char)p[i];

        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
            o += (size_t)snprintf(out + o, size - o, "\\x%02x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    if (i < n && o + 4 < size) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

/* "1.2.3.4:5" or "[::1]:5". */
static void statsd_peer_text(const struct sockaddr *sa, char *out, size_t size)
{
    char ip[INET6_ADDRSTRLEN] = "?";

    if (sa == NULL) {
        snprintf(out, size, "?");
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)sa;

        uv_ip6_name(a6, ip, sizeof(ip));
        snprintf(out, size, "[%s]:%u", ip, ntohs(a6->sin6_port));
    } else {
        const struct sockaddr_in *a4 = (const struct sockaddr_in *)sa;

        uv_ip4_name(a4, ip, sizeof(ip));
        snprintf(out, size, "%s:%u", ip, ntohs(a4->sin_port));
    }
}

/* ------------------------------------------------------------------------
 * Lines.
 */

static void statsd_bad(struct statsd *s, const char *line, size_t len,
                       const char *why, const struct sockaddr *sa,
                       const char *peer)
{
    char quoted[STATSD_QUOTE_MAX * 4 + 8];
    char ptext[80];

    s->count[STATSD_SELF_BAD]++;
    if (!statsd_limit_allow(s, &s->bad_limit, STATSD_BAD_BURST, "bad lines")) {
        return;
    }
    if (peer == NULL) {
        statsd_peer_text(sa, ptext, sizeof(ptext));
        peer = ptext;
    }
    statsd_quote(line, len, quoted, sizeof(quoted));
    s->host->log(s->inst, VIGIL_LOG_WARN, "bad line from %s: %s: \"%s\"", peer,
                 why, quoted);
}

static void statsd_dropped(struct statsd *s)
{
    char quoted[STATSD_QUOTE_MAX * 4 + 8];
    const char *key;
    size_t len;

    s->count[STATSD_SELF_DROPPED]++;
    if (statsd_agg_series(s->agg) < (uint32_t)s->cfg->max_series) {
        return; /* the core refused the series, and said so */
    }
    if (!statsd_limit_allow(s, &s->drop_limit, 1, "dropped lines")) {
        return;
    }
    key = statsd_agg_last_key(s->agg, &len);
    statsd_quote(key, len, quoted, sizeof(quoted));
    s->host->log(s->inst, VIGIL_LOG_WARN,
                 "max_series (%lld) reached: lines for new keys such as "
                 "\"%s\" are dropped and counted in statsd.dropped_total",
                 (long long)s->cfg->max_series, quoted);
}

/* Where lines come from, for messages about them. */
struct statsd_from {
    struct statsd *s;
    const struct sockaddr *sa; /* UDP */
    const char *peer;          /* TCP: the connection's peer text */
};

static void statsd_problem(void *arg, int result, const char *line, size_t len,
                           const char *why)
{
    const struct statsd_from *f = arg;

    if (result == STATSD_BAD) {
        statsd_bad(f->s, line, len, why, f->sa, f->peer);
    } else {
        statsd_dropped(f->s);
    }
}

/* Every line of buf; a bad one does not stop the others. */
static void statsd_ingest(struct statsd *s, const char *buf, size_t n,
                          const struct sockaddr *sa, const char *peer)
{
    struct statsd_from from = {s, sa, peer};

    s->count[STATSD_SELF_LINES] +=
        statsd_agg_lines(s->agg, buf, n, statsd_problem, &from);
}

/* ------------------------------------------------------------------------
 * UDP.
 */

static void statsd_udp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct statsd *s = h->data;

    (void)suggested;
    /* One buffer for every call: libuv cuts it into 64 KiB chunks, one
     * per datagram, and we are done with them when the callback returns. */
    buf->base = s->udp_buf;
    buf->len = (size_t)STATSD_DGRAM_MAX * STATSD_DGRAMS;
}

static void statsd_udp_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                            const struct sockaddr *sa, unsigned flags);

static void statsd_pause_done(uv_timer_t *t)
{
    struct statsd *s = t->data;

    s->paused = 0;
    uv_udp_recv_start(&s->udp, statsd_udp_alloc, statsd_udp_recv);
}

/*
 * The socket is empty. Under heavy load, waking up for every few
 * datagrams costs more than reading them (each wake-up is an epoll_wait,
 * a recvmmsg that finds nothing and a context switch): pause reading for
 * read_pause so that the next reads find full batches in the socket's
 * buffer. Under light load there is no pause, so that a gauge is
 * published the moment it arrives.
 */
static void statsd_udp_drained(struct statsd *s)
{
    uint64_t now = uv_now(s->loop);

    if (now - s->load_start >= STATSD_LOAD_WINDOW_MS) {
        s->heavy = s->load_count >= STATSD_LOAD_HEAVY;
        s->load_start = now;
        s->load_count = 0;
    }
    if (s->heavy && s->cfg->read_pause_ms > 0 && !s->paused && s->pause_open) {
        /* Safe here: libuv has no datagram of this read left to give. */
        uv_udp_recv_stop(&s->udp);
        uv_timer_start(&s->pause, statsd_pause_done,
                       (uint64_t)s->cfg->read_pause_ms, 0);
        s->paused = 1;
    }
}

static void statsd_udp_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                            const struct sockaddr *sa, unsigned flags)
{
    struct statsd *s = h->data;

    if (flags & UV_UDP_MMSG_FREE) {
        return; /* the end of a recvmmsg batch; the buffer is ours */
    }
    if (nread < 0) {
        s->host->error(s->inst, "udp %s: receive: %s", s->addr_text,
                       uv_strerror((int)nread));
        return;
    }
    if (sa == NULL) {
        statsd_udp_drained(s);
        return;
    }
    s->count[STATSD_SELF_PACKETS]++;
    s->load_count++;
    statsd_agg_new_batch(s->agg);
    if (flags & UV_UDP_PARTIAL) {
        /* Cannot happen with 64 KiB chunks; if it does, the cut line is
         * bad and the complete ones before it are still read. */
        const char *last = NULL;

        for (ssize_t i = nread; i > 0; i--) {
            if (buf->base[i - 1] == '\n') {
                last = buf->base + i - 1;
                break;
            }
        }
        if (last != NULL) {
            statsd_ingest(s, buf->base, (size_t)(last - buf->base), sa, NULL);
        }
        s->count[STATSD_SELF_LINES]++;
        statsd_bad(s, last != NULL ? last + 1 : buf->base,
                   (size_t)(buf->base + nread - (last ? last + 1 : buf->base)),
                   "datagram truncated", sa, NULL);
        return;
    }
    statsd_ingest(s, buf->base, (size_t)nread, sa, NULL);
}

/* Ask for a large receive buffer: above net.core.rmem_max only a process
 * with CAP_NET_ADMIN gets it (SO_RCVBUFFORCE). Says what it got. */
static void statsd_udp_rcvbuf(struct statsd *s)
{
    uv_os_fd_t fd;
    int want;
    int got = 0;
    socklen_t len = sizeof(got);

    if (s->cfg->recv_buffer == 0 || uv_fileno((uv_handle_t *)&s->udp, &fd)) {
        return;
    }
    want = s->cfg->recv_buffer > INT32_MAX / 2 ? INT32_MAX / 2
                                               : (int)s->cfg->recv_buffer;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof(want)) != 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof(want));
    }
    /* Linux reports twice the size it was given (bookkeeping included). */
    if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &len) == 0 &&
        got / 2 < want) {
        s->host->log(s->inst, VIGIL_LOG_WARN,
                     "udp %s: receive buffer is %d bytes, not the %d asked "
                     "(raise net.core.rmem_max): bursts may be lost",
                     s->addr_text, got / 2, want);
    }
}

/* ------------------------------------------------------------------------
 * TCP.
 */

static void statsd_conn_closed(uv_handle_t *h)
{
    free(h->data);
}

static void statsd_conn_close(struct statsd_conn *c)
{
    if (c->pprev != NULL) {
        *c->pprev = c->next;
        if (c->next != NULL) {
            c->next->pprev = c->pprev;
        }
        c->pprev = NULL;
        c->s->nconns--;
    }
    uv_close((uv_handle_t *)&c->h, statsd_conn_closed);
}

static void statsd_conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct statsd_conn *c = h->data;

    (void)suggested;
    /* Read straight after the partial line already buffered; the read
     * callback never leaves the buffer full. */
    buf->base = c->buf + c->len;
    buf->len = c->s->conn_buf - c->len;
}

static void statsd_conn_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf)
{
    struct statsd_conn *c = h->data;
    struct statsd *s = c->s;
    char *p = c->buf;
    char *end;
    char *last;
    size_t rest;

    (void)buf;
    if (nread < 0) {
        /* A last line without '\n' before the end is still a line. */
        if (c->len > 0 && !c->skipping) {
            statsd_agg_new_batch(s->agg);
            statsd_ingest(s, c->buf, c->len, NULL, c->peer);
        }
        if (nread != UV_EOF) {
            s->host->log(s->inst, VIGIL_LOG_DEBUG, "tcp %s: %s", c->peer,
                         uv_strerror((int)nread));
        }
        statsd_conn_close(c);
        return;
    }
    if (nread == 0) {
        return;
    }
    statsd_agg_new_batch(s->agg);
    end = c->buf + c->len + nread;
    if (c->skipping) {
        /* The rest of an over-long line, up to its '\n'. */
        char *nl = memchr(c->buf + c->len, '\n', (size_t)nread);

        if (nl == NULL) {
            c->len = 0;
            return;
        }
        c->skipping = 0;
        p = nl + 1;
    }
    /* Every complete line at once; the partial one waits for more. */
    last = memrchr(p, '\n', (size_t)(end - p));
    if (last != NULL) {
        statsd_ingest(s, p, (size_t)(last - p), NULL, c->peer);
        p = last + 1;
    }
    rest = (size_t)(end - p);
    if (rest == s->conn_buf) {
        s->count[STATSD_SELF_LINES]++;
        statsd_bad(s, p, rest, "line longer than max_line", NULL, c->peer);
        c->skipping = 1;
        rest = 0;
    }
    memmove(c->buf, p, rest);
    c->len = rest;
}

static void statsd_on_connection(uv_stream_t *server, int status)
{
    struct statsd *s = server->data;
    struct statsd_conn *c;
    int full = s->nconns >= (uint32_t)s->cfg->max_connections;
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);

    if (status < 0) {
        s->host->error(s->inst, "tcp %s: accept: %s", s->addr_text,
                       uv_strerror(status));
        return;
    }
    /* A refused connection is accepted only to be closed: it needs no
     * line buffer. */
    c = calloc(1, sizeof(*c) + (full ? 0 : s->conn_buf));
    if (c == NULL) {
        s->host->error(s->inst, "tcp %s: out of memory", s->addr_text);
        return;
    }
    c->s = s;
    c->h.data = c;
    uv_tcp_init(s->loop, &c->h);
    if (uv_accept(server, (uv_stream_t *)&c->h) != 0) {
        uv_close((uv_handle_t *)&c->h, statsd_conn_closed);
        return;
    }
    if (uv_tcp_getpeername(&c->h, (struct sockaddr *)&ss, &sslen) == 0) {
        statsd_peer_text((struct sockaddr *)&ss, c->peer, sizeof(c->peer));
    } else {
        snprintf(c->peer, sizeof(c->peer), "?");
    }
    if (full) {
        if (statsd_limit_allow(s, &s->conn_limit, 1, "refused connections")) {
            s->host->log(s->inst, VIGIL_LOG_WARN,
                         "tcp: connection from %s closed: max_connections "
                         "(%lld) are open",
                         c->peer, (long long)s->cfg->max_connections);
        }
        uv_close((uv_handle_t *)&c->h, statsd_conn_closed);
        return;
    }
    c->next = s->conns;
    if (c->next != NULL) {
        c->next->pprev = &c->next;
    }
    c->pprev = &s->conns;
    s->conns = c;
    s->nconns++;
    uv_read_start((uv_stream_t *)&c->h, statsd_conn_alloc, statsd_conn_read);
}

/* ------------------------------------------------------------------------
 * Flush.
 */

static void statsd_publish_self(struct statsd *s)
{
    if (!s->self_ok) {
        return;
    }
    s->count[STATSD_SELF_SERIES] = statsd_agg_series(s->agg);
    s->count[STATSD_SELF_CONNS] = s->nconns;
    for (int i = 0; i < STATSD_NSELF; i++) {
        s->host->publish(s->inst, s->self[i], s->flush_ts, (double)s->count[i]);
    }
}

/* One slice of the flush; 1 when it is complete. */
static int statsd_flush_slice(struct statsd *s)
{
    uint64_t t0 = uv_hrtime();

    do {
        if (statsd_agg_flush_step(s->agg, STATSD_SLICE_KEYS)) {
            statsd_publish_self(s);
            statsd_limit_roll(s, &s->bad_limit, "bad lines");
            statsd_limit_roll(s, &s->drop_limit, "dropped lines");
            statsd_limit_roll(s, &s->conn_limit, "refused connections");
            return 1;
        }
    } while (uv_hrtime() - t0 < STATSD_SLICE_NS);
    return 0;
}

static void statsd_on_idle(uv_idle_t *h)
{
    struct statsd *s = h->data;

    if (statsd_flush_slice(s)) {
        uv_idle_stop(h);
        s->host->collect_done(s->inst, 0);
    }
}

static int statsd_collect(void *state)
{
    struct statsd *s = state;
    uint64_t now = uv_hrtime();

    s->flush_ts = s->host->now_ns(s->inst);
    statsd_agg_flush_begin(s->agg, s->flush_ts,
                           (int64_t)(now - s->last_flush_ns));
    s->last_flush_ns = now;
    if (statsd_flush_slice(s)) {
        return 0;
    }
    uv_idle_start(&s->idle, statsd_on_idle);
    return VIGIL_PENDING;
}

/* ------------------------------------------------------------------------
 * Options.
 */

/* "IP:PORT", "[IPv6]:PORT" or "PORT" (on 127.0.0.1). */
static int statsd_parse_listen(const char *text, struct sockaddr_storage *ss)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *port;
    char *stop;
    long p;
    size_t hl;

    if (text[0] == '[') {
        const char *close = strchr(text, ']');

        if (close == NULL || close[1] != ':') {
            return VIGIL_EINVAL;
        }
        hl = (size_t)(close - text - 1);
        if (hl >= sizeof(host)) {
            return VIGIL_EINVAL;
        }
        memcpy(host, text + 1, hl);
        port = close + 2;
    } else {
        const char *colon = strrchr(text, ':');

        if (colon == NULL) {
            snprintf(host, sizeof(host), "127.0.0.1");
            port = text;
        } else {
            hl = (size_t)(colon - text);
            if (hl >= sizeof(host)) {
                return VIGIL_EINVAL;
            }
            memcpy(host, text, hl);
            host[hl] = '\0';
            port = colon + 1;
        }
        hl = strlen(host);
    }
    host[hl] = '\0';
    p = strtol(port, &stop, 10);
    if (port[0] == '\0' || *stop != '\0' || p < 0 || p > 65535) {
        return VIGIL_EINVAL;
    }
    if (uv_ip4_addr(host, (int)p, (struct sockaddr_in *)ss) != 0 &&
        uv_ip6_addr(host, (int)p, (struct sockaddr_in6 *)ss) != 0) {
        return VIGIL_EINVAL;
    }
    return 0;
}

/* One percentile: "99", "99.9", up to three decimals, in (0, 100]. */
static int statsd_parse_pct(const char *p, size_t n, uint32_t *milli,
                            char *suffix, size_t size)
{
    uint32_t ip = 0;
    uint32_t frac = 0;
    size_t i = 0;
    size_t fd = 0;
    size_t id = 0;
    char fdig[4] = "";

    for (; i < n && p[i] >= '0' && p[i] <= '9' && id < 4; i++, id++) {
        ip = ip * 10 + (uint32_t)(p[i] - '0');
    }
    if (i < n && p[i] == '.') {
        for (i++; i < n && p[i] >= '0' && p[i] <= '9' && fd < 3; i++) {
            fdig[fd++] = p[i];
            frac = frac * 10 + (uint32_t)(p[i] - '0');
        }
    }
    if (i != n || id == 0) {
        return VIGIL_EINVAL;
    }
    for (size_t k = fd; k < 3; k++) {
        frac *= 10;
    }
    *milli = ip * 1000 + frac;
    if (*milli == 0 || *milli > 100000) {
        return VIGIL_EINVAL;
    }
    while (fd > 0 && fdig[fd - 1] == '0') {
        fdig[--fd] = '\0';
    }
    if (fd > 0) {
        snprintf(suffix, size, ".p%u_%s", ip, fdig);
    } else {
        snprintf(suffix, size, ".p%u", ip);
    }
    return 0;
}

/* The percentiles option: each element may hold several, separated by
 * spaces or commas. Sorted, duplicates removed. */
static int statsd_parse_pcts(struct statsd *s, struct statsd_agg_config *ac)
{
    const struct vigil_list *l = &s->cfg->percentiles;

    ac->npct = 0;
    for (size_t e = 0; e < l->n; e++) {
        const char *p = l->v[e];

        while (*p != '\0') {
            size_t n = strcspn(p, " \t,");
            uint32_t milli;
            char sfx[16];
            size_t j;

            if (n == 0) {
                p++;
                continue;
            }
            if (statsd_parse_pct(p, n, &milli, sfx, sizeof(sfx)) != 0) {
                s->host->log(s->inst, VIGIL_LOG_ERROR,
                             "percentiles: '%.*s' is not a percentile in "
                             "(0, 100] with at most 3 decimals",
                             (int)n, p);
                return VIGIL_ECONFIG;
            }
            for (j = 0; j < ac->npct && ac->pct_milli[j] < milli; j++) {
            }
            if (j == ac->npct || ac->pct_milli[j] != milli) {
                if (ac->npct == STATSD_PCT_MAX) {
                    s->host->log(s->inst, VIGIL_LOG_ERROR,
                                 "percentiles: at most %d", STATSD_PCT_MAX);
                    return VIGIL_ECONFIG;
                }
                memmove(&ac->pct_milli[j + 1], &ac->pct_milli[j],
                        (ac->npct - j) * sizeof(ac->pct_milli[0]));
                memmove(ac->pct_suffix[j + 1], ac->pct_suffix[j],
                        (ac->npct - j) * sizeof(ac->pct_suffix[0]));
                ac->pct_milli[j] = milli;
                memcpy(ac->pct_suffix[j], sfx, sizeof(sfx));
                ac->npct++;
            }
            p += n;
        }
    }
    return 0;
}

/* prefix: a name ([A-Za-z_][A-Za-z0-9_.]*, at most 63 bytes); stored
 * with a '.' after it unless it ends in '.' or '_' (as the prom plugin
 * does). */
static int statsd_parse_prefix(struct statsd *s)
{
    const char *p = s->cfg->prefix;
    size_t n;

    s->prefix[0] = '\0';
    if (p == NULL || p[0] == '\0') {
        return 0;
    }
    n = strlen(p);
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (i > 0 && ((c >= '0' && c <= '9') || c == '.'));

        if (!ok || n > 63) {
            s->host->log(s->inst, VIGIL_LOG_ERROR,
                         "prefix '%s': expected [A-Za-z_][A-Za-z0-9_.]*, "
                         "at most 63 bytes",
                         p);
            return VIGIL_ECONFIG;
        }
    }
    snprintf(s->prefix, sizeof(s->prefix), "%s%s", p,
             p[n - 1] == '.' || p[n - 1] == '_' ? "" : ".");
    return 0;
}

/* Range checks the options table cannot express. */
static int statsd_check_ranges(struct statsd *s)
{
    const struct statsd_config *c = s->cfg;
    const char *bad = NULL;

    if (c->max_series < 1 || c->max_series > 1000000) {
        bad = "max_series must be in 1..1000000";
    } else if (c->reservoir < 1 || c->reservoir > STATSD_RESERVOIR_MAX) {
        bad = "reservoir must be in 1..1048576";
    } else if (c->expire_ms < 0) {
        bad = "expire must not be negative";
    } else if (c->read_pause_ms < 0 || c->read_pause_ms > 100) {
        bad = "read_pause must be in 0..100ms";
    } else if (c->max_connections < 1 || c->max_connections > 100000) {
        bad = "max_connections must be in 1..100000";
    } else if (c->max_line < 64 || c->max_line > 16u * 1024 * 1024) {
        bad = "max_line must be in 64..16MiB";
    }
    if (bad != NULL) {
        s->host->log(s->inst, VIGIL_LOG_ERROR, "%s", bad);
        return VIGIL_ECONFIG;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Life cycle.
 */

static void statsd_destroy(void *state)
{
    struct statsd *s = state;

    if (s == NULL) {
        return;
    }
    statsd_agg_destroy(s->agg);
    free(s->udp_buf);
    free(s);
}

static int statsd_init(const struct vigil_host *host, vigil_instance *inst,
                       const void *config, void **state)
{
    struct statsd *s = calloc(1, sizeof(*s));
    struct statsd_agg_config ac;
    int rc;

    *state = NULL;
    if (s == NULL) {
        host->log(inst, VIGIL_LOG_ERROR, "out of memory");
        return VIGIL_ENOMEM;
    }
    memset(&ac, 0, sizeof(ac));
    s->host = host;
    s->inst = inst;
    s->cfg = config;
    s->loop = host->loop(inst);
    rc = statsd_check_ranges(s);
    if (rc == 0) {
        rc = statsd_parse_pcts(s, &ac);
    }
    if (rc == 0) {
        rc = statsd_parse_prefix(s);
    }
    if (rc == 0 && statsd_parse_listen(s->cfg->listen, &s->addr) != 0) {
        host->log(inst, VIGIL_LOG_ERROR,
                  "listen '%s': expected IP:PORT or [IPv6]:PORT (an address, "
                  "not a host name)",
                  s->cfg->listen);
        rc = VIGIL_ECONFIG;
    }
    if (rc != 0) {
        goto fail;
    }
    statsd_peer_text((struct sockaddr *)&s->addr, s->addr_text,
                     sizeof(s->addr_text));
    s->conn_buf = (size_t)s->cfg->max_line + 1;
    ac.max_series = (uint32_t)s->cfg->max_series;
    ac.reservoir = (uint32_t)s->cfg->reservoir;
    ac.prefix = s->prefix;
    ac.expire_ns = s->cfg->expire_ms * INT64_C(1000000);
    ac.seed = uv_hrtime() ^ (uint64_t)(uintptr_t)s;
    rc = statsd_agg_create(&ac, host, inst, &s->agg);
    s->udp_buf = malloc((size_t)STATSD_DGRAM_MAX * STATSD_DGRAMS);
    if (rc != 0 || s->udp_buf == NULL) {
        host->log(inst, VIGIL_LOG_ERROR, "out of memory");
        rc = VIGIL_ENOMEM;
        goto fail;
    }
    s->self_ok = 1;
    for (int i = 0; i < STATSD_NSELF; i++) {
        if (host->series(inst, statsd_self_names[i], NULL, 0, &s->self[i]) !=
            0) {
            s->self_ok = 0;
        }
    }
    *state = s;
    return 0;
fail:
    statsd_destroy(s);
    return rc;
}

static int statsd_start(void *state)
{
    struct statsd *s = state;
    const struct sockaddr *sa = (const struct sockaddr *)&s->addr;
    int rc;

    s->last_flush_ns = uv_hrtime();
    uv_idle_init(s->loop, &s->idle);
    s->idle.data = s;
    s->idle_open = 1;
    uv_timer_init(s->loop, &s->pause);
    s->pause.data = s;
    s->pause_open = 1;
    s->load_start = uv_now(s->loop);

    rc = uv_udp_init_ex(s->loop, &s->udp, sa->sa_family | UV_UDP_RECVMMSG);
    if (rc != 0) {
        goto fail;
    }
    s->udp.data = s;
    s->udp_open = 1;
    rc = uv_udp_bind(&s->udp, sa, 0);
    if (rc == 0) {
        rc = uv_udp_recv_start(&s->udp, statsd_udp_alloc, statsd_udp_recv);
    }
    if (rc != 0) {
        goto fail;
    }
    statsd_udp_rcvbuf(s);
    if (s->cfg->tcp) {
        rc = uv_tcp_init(s->loop, &s->tcp);
        if (rc != 0) {
            goto fail;
        }
        s->tcp.data = s;
        s->tcp_open = 1;
        rc = uv_tcp_bind(&s->tcp, sa, 0);
        if (rc == 0) {
            rc = uv_listen((uv_stream_t *)&s->tcp, 128, statsd_on_connection);
        }
        if (rc != 0) {
            s->host->log(s->inst, VIGIL_LOG_ERROR, "tcp %s: %s", s->addr_text,
                         uv_strerror(rc));
            return VIGIL_EIO;
        }
    }
    s->host->log(s->inst, VIGIL_LOG_INFO,
                 "listening on udp %s%s%s (recvmmsg %s)", s->addr_text,
                 s->cfg->tcp ? " and tcp " : "",
                 s->cfg->tcp ? s->addr_text : "",
                 uv_udp_using_recvmmsg(&s->udp) ? "on" : "off");
    return 0;
fail:
    s->host->log(s->inst, VIGIL_LOG_ERROR, "udp %s: %s", s->addr_text,
                 uv_strerror(rc));
    return VIGIL_EIO;
}

static void statsd_stop(void *state)
{
    struct statsd *s = state;

    if (s->idle_open) {
        uv_close((uv_handle_t *)&s->idle, NULL);
        s->idle_open = 0;
    }
    if (s->pause_open) {
        uv_close((uv_handle_t *)&s->pause, NULL);
        s->pause_open = 0;
    }
    if (s->udp_open) {
        uv_close((uv_handle_t *)&s->udp, NULL);
        s->udp_open = 0;
    }
    if (s->tcp_open) {
        uv_close((uv_handle_t *)&s->tcp, NULL);
        s->tcp_open = 0;
    }
    while (s->conns != NULL) {
        statsd_conn_close(s->conns);
    }
}

VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {
    .abi_version = VIGIL_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct vigil_plugin),
    .name = "statsd",
    .version = "1.0",
    .description = "StatsD/DogStatsD server (UDP and TCP), aggregated per "
                   "flush interval",
    .options = statsd_options,
    .config_size = sizeof(struct statsd_config),
    .init = statsd_init,
    .start = statsd_start,
    .collect = statsd_collect,
    .stop = statsd_stop,
    .destroy = statsd_destroy,
};
