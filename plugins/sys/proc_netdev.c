/*
 * proc_netdev.c - /proc/net/dev and network rates.
 *
 *   Inter-|   Receive                                      |  Transmit
 *    face |bytes    packets errs drop fifo frame compressed multicast|...
 *     eth0: 19807655     852    0    0    0     0          0         0 ...
 *
 * Eight receive counters (bytes packets errs drop fifo frame compressed
 * multicast), then eight transmit ones (bytes packets errs drop fifo
 * colls carrier compressed). Old kernels print "eth0:123" without a
 * blank after the colon when the number is wide.
 */
#include <string.h>

#include <vigil/plugin.h>

#include "sys_proc.h"

#define SYS_NETDEV_FIELDS 16

/*
 * The next interface line; see sys_proc.h.
 */
int sys_netdev_next(struct sys_file *f, struct sys_netdev *out)
{
    char *line;

    while ((line = sys_file_line(f)) != NULL) {
        uint64_t v[SYS_NETDEV_FIELDS];
        const char *p, *name, *colon;
        size_t len, i;

        /* The two header lines are the only ones with a '|'. */
        if (strchr(line, '|') != NULL) {
            continue;
        }
        name = line + strspn(line, " \t");
        colon = strchr(name, ':');
        if (colon == NULL) {
            return sys_file_fail(f, VIGIL_EPARSE, "line without ':'");
        }
        len = (size_t)(colon - name);
        if (len == 0 || len >= sizeof(out->name)) {
            return sys_file_fail(f, VIGIL_EPARSE, "bad interface name");
        }
        p = colon + 1;
        for (i = 0; i < SYS_NETDEV_FIELDS; i++) {
            if (sys_scan_u64(&p, &v[i]) != 0) {
                return sys_file_fail(f, VIGIL_EPARSE, "bad counter");
            }
        }
        memcpy(out->name, name, len);
        out->name[len] = '\0';
        out->c.rx_bytes = v[0];
        out->c.rx_packets = v[1];
        out->c.rx_errors = v[2];
        out->c.rx_drops = v[3];
        out->c.tx_bytes = v[8];
        out->c.tx_packets = v[9];
        out->c.tx_errors = v[10];
        out->c.tx_drops = v[11];
        return 1;
    }
    return f->err;
}

/*
 * Network rates between two readings; see sys_proc.h.
 */
int sys_net_rates(const struct sys_net_ctr *prev, const struct sys_net_ctr *cur,
                  int64_t dt_ns, struct sys_net_rates *out)
{
    struct sys_net_rates r;

    /* On 32-bit kernels these counters wrap at 2^32; one going back
     * could equally be a reset, so the whole interval is dropped. */
    if (!sys_rate(prev->rx_bytes, cur->rx_bytes, dt_ns, 1, &r.rx_bytes) ||
        !sys_rate(prev->tx_bytes, cur->tx_bytes, dt_ns, 1, &r.tx_bytes) ||
        !sys_rate(prev->rx_packets, cur->rx_packets, dt_ns, 1, &r.rx_packets) ||
        !sys_rate(prev->tx_packets, cur->tx_packets, dt_ns, 1, &r.tx_packets) ||
        !sys_rate(prev->rx_errors, cur->rx_errors, dt_ns, 1, &r.rx_errors) ||
        !sys_rate(prev->tx_errors, cur->tx_errors, dt_ns, 1, &r.tx_errors) ||
        !sys_rate(prev->rx_drops, cur->rx_drops, dt_ns, 1, &r.rx_drops) ||
        !sys_rate(prev->tx_drops, cur->tx_drops, dt_ns, 1, &r.tx_drops)) {
        return 0;
    }
    *out = r;
    return 1;
}
