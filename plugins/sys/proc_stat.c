/*
 * proc_stat.c - the cpu lines of /proc/stat and CPU percentages.
 *
 *   cpu  2033 0 842 47251 291 0 37 2 0 0
 *   cpu0 1089 0 461 23411 240 0 15 1 0 0
 *
 * Fields: user nice system idle iowait irq softirq steal guest guest_nice,
 * in USER_HZ ticks. guest and guest_nice are already counted in user and
 * nice, so the time a CPU accounted is the sum of the first eight.
 */
#include <string.h>

#include <vigil/plugin.h>

#include "sys_proc.h"

/*
 * The next cpu line; see sys_proc.h.
 */
int sys_stat_next(struct sys_file *f, struct sys_cpu_times *out)
{
    uint64_t *fields[] = {
        &out->user, &out->nice,    &out->system, &out->idle,  &out->iowait,
        &out->irq,  &out->softirq, &out->steal,  &out->guest, &out->guest_nice};
    const size_t nfields = sizeof(fields) / sizeof(fields[0]);
    const char *p;
    char *line;
    size_t i;

    line = sys_file_line(f);
    if (line == NULL) {
        return f->err;
    }
    if (strncmp(line, "cpu", 3) != 0) {
        return 0;
    }
    memset(out, 0, sizeof(*out));
    p = line + 3;
    if (*p == ' ') {
        out->cpu = -1;
    } else {
        uint64_t n;

        if (sys_scan_u64(&p, &n) != 0 || n > 1000000) {
            return sys_file_fail(f, VIGIL_EPARSE, "bad cpu number");
        }
        out->cpu = (int)n;
    }
    for (i = 0; i < nfields; i++) {
        if (sys_scan_u64(&p, fields[i]) != 0) {
            break;
        }
    }
    /* user nice system idle exist in every kernel; a field that is there
     * but does not parse is an error, not a missing field. */
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    if (i < 4 || (i < nfields && *p != '\0')) {
        return sys_file_fail(f, VIGIL_EPARSE, "bad cpu line");
    }
    return 1;
}

/*
 * CPU percentages between two readings; see sys_proc.h.
 */
int sys_cpu_pct(const struct sys_cpu_times *prev,
                const struct sys_cpu_times *cur, struct sys_cpu_pct *out)
{
    uint64_t user, nice, system, idle, iowait, irq, softirq, steal, total;
    double scale;

    if (!sys_delta(prev->user, cur->user, &user) ||
        !sys_delta(prev->nice, cur->nice, &nice) ||
        !sys_delta(prev->system, cur->system, &system) ||
        !sys_delta(prev->idle, cur->idle, &idle) ||
        !sys_delta(prev->iowait, cur->iowait, &iowait) ||
        !sys_delta(prev->irq, cur->irq, &irq) ||
        !sys_delta(prev->softirq, cur->softirq, &softirq) ||
        !sys_delta(prev->steal, cur->steal, &steal)) {
        return 0;
    }
    /* Ticks are small numbers: the sum cannot overflow in practice, and
     * every term is at most the sum, so each share is within [0, 100]. */
    total = user + nice + system + idle + iowait + irq + softirq + steal;
    if (total == 0) {
        return 0;
    }
    scale = 100.0 / (double)total;
    out->user = (double)user * scale;
    out->nice = (double)nice * scale;
    out->system = (double)system * scale;
    out->iowait = (double)iowait * scale;
    out->irq = (double)(irq + softirq) * scale;
    out->steal = (double)steal * scale;
    out->idle = (double)idle * scale;
    out->busy = (double)(total - idle - iowait) * scale;
    return 1;
}
