/*
 * bench/ingest.c - the StatsD load generator of bench/ingest.sh.
 *
 * Sends datagrams of many StatsD lines over ~1,000 distinct names (half
 * counters, some with a sample rate; timers, some with DogStatsD tags;
 * gauges; sets: the mix plugins/statsd/statsd_bench.c parses) to
 * 127.0.0.1:PORT at RATE lines per second for SECONDS, with sendmmsg, then
 * prints what it sent:
 *
 *   sent_lines N
 *   sent_datagrams N
 *   seconds S          (time spent sending)
 *
 * Usage: bench_ingest PORT RATE SECONDS [DATAGRAM_BYTES]
 * DATAGRAM_BYTES defaults to 1400 (what StatsD clients send to stay under
 * a 1500-byte MTU). Only loopback is ever used. Stands alone: it links
 * nothing of vigil's.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define INGEST_POOL 2048 /* distinct datagrams, sent round-robin */
#define INGEST_BATCH 32  /* datagrams per sendmmsg */
#define INGEST_NAMES 1000

static double ingest_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One line of the mix; returns its length (without '\n'). */
static int ingest_line(unsigned i, uint64_t *rng, char *out, size_t size)
{
    unsigned name = i % INGEST_NAMES;
    unsigned v;

    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    v = (unsigned)(*rng % 1000);
    if (name < 500) {
        return snprintf(out, size, "app.svc%u.requests:%u|c%s", name, v % 5,
                        name % 10 == 0 ? "|@0.5" : "");
    }
    if (name < 800) {
        return snprintf(out, size, "app.svc%u.latency_ms:%u.%u|ms%s", name, v,
                        v % 10,
                        name % 4 == 0 ? "|#env:prod,route:/api/orders" : "");
    }
    if (name < 950) {
        return snprintf(out, size, "app.queue%u.depth:%u|g", name, v);
    }
    return snprintf(out, size, "app.users%u:u%u|s", name, v);
}

int main(int argc, char **argv)
{
    char *pool;
    static struct iovec iov[INGEST_POOL];
    static unsigned lines[INGEST_POOL];
    struct mmsghdr msgs[INGEST_BATCH];
    struct sockaddr_in sin;
    uint64_t rng = 88172645463325252ull;
    unsigned next_line = 0;
    long port;
    double rate;
    double secs;
    long dgram;
    int fd;
    int sndbuf = 4 << 20;
    uint64_t sent_lines = 0;
    uint64_t sent_dgrams = 0;
    unsigned k = 0;
    double t0;
    double t;

    if (argc < 4) {
        fprintf(stderr, "usage: %s PORT RATE SECONDS [DATAGRAM_BYTES]\n",
                argv[0]);
        return 2;
    }
    port = strtol(argv[1], NULL, 10);
    rate = strtod(argv[2], NULL);
    secs = strtod(argv[3], NULL);
    dgram = argc > 4 ? strtol(argv[4], NULL, 10) : 1400;
    if (port <= 0 || port > 65535 || rate <= 0 || secs <= 0 || dgram < 64 ||
        dgram > 65000) {
        fprintf(stderr, "%s: bad arguments\n", argv[0]);
        return 2;
    }

    pool = malloc((size_t)INGEST_POOL * (size_t)dgram);
    if (pool == NULL) {
        perror("malloc");
        return 1;
    }
    /* Fill the pool: whole lines, '\n'-separated, up to dgram bytes. */
    for (unsigned d = 0; d < INGEST_POOL; d++) {
        char *buf = pool + (size_t)d * (size_t)dgram;
        size_t used = 0;
        char line[128];

        for (;;) {
            uint64_t save = rng;
            int n = ingest_line(next_line, &rng, line, sizeof(line));

            if (used + (size_t)n + (used > 0) > (size_t)dgram) {
                rng = save;
                break;
            }
            if (used > 0) {
                buf[used++] = '\n';
            }
            memcpy(buf + used, line, (size_t)n);
            used += (size_t)n;
            lines[d]++;
            next_line++;
        }
        iov[d].iov_base = buf;
        iov[d].iov_len = used;
    }

    fd = socket(AF_INET, SOCK_DGRAM, 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        perror("socket");
        return 1;
    }
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));

    t0 = ingest_now();
    while ((t = ingest_now() - t0) < secs) {
        double due = rate * t;
        int n;

        if ((double)sent_lines >= due) {
            struct timespec nap = {0, 20000};

            nanosleep(&nap, NULL);
            continue;
        }
        memset(msgs, 0, sizeof(msgs));
        for (int i = 0; i < INGEST_BATCH; i++) {
            msgs[i].msg_hdr.msg_iov = &iov[(k + (unsigned)i) % INGEST_POOL];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        /* Send what is due, in whole batches at most. */
        n = (int)((due - (double)sent_lines) / lines[k] + 1);
        n = n > INGEST_BATCH ? INGEST_BATCH : n;
        n = sendmmsg(fd, msgs, (unsigned)n, 0);
        if (n < 0) {
            if (errno == EINTR || errno == ENOBUFS || errno == EAGAIN) {
                continue;
            }
            perror("sendmmsg");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            sent_lines += lines[(k + (unsigned)i) % INGEST_POOL];
        }
        sent_dgrams += (uint64_t)n;
        k = (k + (unsigned)n) % INGEST_POOL;
    }
    printf("sent_lines %llu\nsent_datagrams %llu\nseconds %.3f\n",
           (unsigned long long)sent_lines, (unsigned long long)sent_dgrams,
           ingest_now() - t0);
    close(fd);
    free(pool);
    return 0;
}
