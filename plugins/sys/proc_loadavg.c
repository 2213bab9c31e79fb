/*
 * proc_loadavg.c - /proc/loadavg:
 *
 *   0.02 0.08 0.04 1/83 4007
 *
 * load averages over 1, 5 and 15 minutes, runnable/existing tasks, and the
 * last PID handed out.
 */
#include <vigil/plugin.h>

#include "sys_proc.h"

/*
 * Parse /proc/loadavg; see sys_proc.h.
 */
int sys_loadavg_read(struct sys_file *f, struct sys_loadavg *out)
{
    const char *p;
    char *line;

    line = sys_file_line(f);
    if (line == NULL) {
        return f->err != 0 ? f->err
                           : sys_file_fail(f, VIGIL_EPARSE, "empty file");
    }
    p = line;
    if (sys_scan_dec(&p, &out->avg1) != 0 ||
        sys_scan_dec(&p, &out->avg5) != 0 ||
        sys_scan_dec(&p, &out->avg15) != 0 ||
        sys_scan_u64(&p, &out->running) != 0 || *p++ != '/' ||
        sys_scan_u64(&p, &out->total) != 0) {
        return sys_file_fail(f, VIGIL_EPARSE, "bad loadavg line");
    }
    return 0;
}
