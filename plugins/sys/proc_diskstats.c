/*
 * proc_diskstats.c - /proc/diskstats and disk rates.
 *
 *   254 0 vda 26875 5090 2117162 5252 5113 5538 429016 3728 0 3360 9154 ...
 *
 * After major, minor and name: reads, reads merged, sectors read, ms
 * reading, writes, writes merged, sectors written, ms writing, I/Os in
 * flight, ms doing I/O, weighted ms (14 fields in all); Linux 4.18 adds
 * four discard fields (18) and 5.5 two flush fields (20). A sector is
 * always 512 bytes here, whatever the device's real sector size.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <vigil/plugin.h>

#include "sys_proc.h"

#define SYS_SECTOR_BYTES 512.0

/*
 * The next device line; see sys_proc.h.
 */
int sys_diskstats_next(struct sys_file *f, struct sys_disk *out)
{
    char *line;

    while ((line = sys_file_line(f)) != NULL) {
        uint64_t v[11], major, minor;
        const char *p = line, *name;
        size_t len, n;

        if (sys_scan_u64(&p, &major) != 0 || sys_scan_u64(&p, &minor) != 0 ||
            major > UINT32_MAX || minor > UINT32_MAX) {
            return sys_file_fail(f, VIGIL_EPARSE, "bad device number");
        }
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        name = p;
        len = strcspn(name, " \t");
        if (len == 0 || len >= sizeof(out->name)) {
            return sys_file_fail(f, VIGIL_EPARSE, "bad device name");
        }
        p = name + len;
        for (n = 0; n < 11; n++) {
            if (sys_scan_u64(&p, &v[n]) != 0) {
                break;
            }
        }
        if (n < 11) {
            while (*p == ' ' || *p == '\t') {
                p++;
            }
            if (*p != '\0') {
                return sys_file_fail(f, VIGIL_EPARSE, "bad counter");
            }
            /* 2.6 kernels print partitions with 4 counters: skip them. */
            continue;
        }
        out->major = (unsigned)major;
        out->minor = (unsigned)minor;
        memcpy(out->name, name, len);
        out->name[len] = '\0';
        out->c.reads = v[0];
        out->c.read_sectors = v[2];
        out->c.read_ms = v[3];
        out->c.writes = v[4];
        out->c.write_sectors = v[6];
        out->c.write_ms = v[7];
        out->c.io_ms = v[9];
        return 1;
    }
    return f->err;
}

/*
 * Devices never reported; see sys_proc.h.
 */
int sys_disk_ignored(const char *name)
{
    return strncmp(name, "loop", 4) == 0 || strncmp(name, "ram", 3) == 0 ||
           strncmp(name, "zram", 4) == 0;
}

/*
 * Whole disk or partition; see sys_proc.h.
 */
int sys_disk_is_whole(const char *sys_root, const char *name)
{
    char path[512];
    int n;
    char *p;

    n = snprintf(path, sizeof(path), "%s/block/%s", sys_root, name);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        return 0;
    }
    /* sysfs spells "cciss/c0d0" as "cciss!c0d0". */
    for (p = path + (size_t)n - strlen(name); *p != '\0'; p++) {
        if (*p == '/') {
            *p = '!';
        }
    }
    return access(path, F_OK) == 0;
}

/*
 * Disk rates between two readings; see sys_proc.h.
 */
int sys_disk_rates(const struct sys_disk_ctr *prev,
                   const struct sys_disk_ctr *cur, int64_t dt_ns,
                   struct sys_disk_rates *out)
{
    uint64_t reads, rsect, rms, writes, wsect, wms, io_ms;
    double ns;

    /* Any counter going back means the device was reset or a 32-bit
     * counter wrapped: nothing in this interval can be trusted. */
    if (dt_ns <= 0 || !sys_delta(prev->reads, cur->reads, &reads) ||
        !sys_delta(prev->read_sectors, cur->read_sectors, &rsect) ||
        !sys_delta(prev->read_ms, cur->read_ms, &rms) ||
        !sys_delta(prev->writes, cur->writes, &writes) ||
        !sys_delta(prev->write_sectors, cur->write_sectors, &wsect) ||
        !sys_delta(prev->write_ms, cur->write_ms, &wms) ||
        !sys_delta(prev->io_ms, cur->io_ms, &io_ms)) {
        return 0;
    }
    /* Multiply first and divide once by the interval in ns: whole
     * numbers stay exact. */
    ns = (double)dt_ns;
    out->reads_per_s = (double)reads * 1e9 / ns;
    out->writes_per_s = (double)writes * 1e9 / ns;
    out->read_bytes_per_s = (double)rsect * SYS_SECTOR_BYTES * 1e9 / ns;
    out->write_bytes_per_s = (double)wsect * SYS_SECTOR_BYTES * 1e9 / ns;
    /* io_ms is sampled at request boundaries, so it can run slightly
     * ahead of the wall clock; a device cannot be more than fully busy.
     * ms * 1e6 / ns * 100 = ms * 1e8 / ns. */
    out->util_pct = (double)io_ms * 1e8 / ns;
    if (out->util_pct > 100.0) {
        out->util_pct = 100.0;
    }
    out->await_ms = reads + writes > 0
                        ? (double)(rms + wms) / (double)(reads + writes)
                        : 0.0;
    return 1;
}
