/*
 * proc_pressure.c - pressure stall information, /proc/pressure/<res>:
 *
 *   some avg10=1.33 avg60=0.37 avg300=0.23 total=1718562
 *   full avg10=0.00 avg60=0.00 avg300=0.00 total=0
 *
 * avgN are percentages of wall time over the last N seconds; total is the
 * stall time since boot in microseconds. Unknown key=value pairs are
 * ignored so that kernels may add some.
 */
#include <string.h>

#include <vigil/plugin.h>

#include "sys_proc.h"

/* Parse the key=value pairs after "some" or "full". */
static int sys_pressure_line(struct sys_file *f, const char *p,
                             struct sys_psi *out, int kind)
{
    int have_avg10 = 0, have_total = 0;

    for (;;) {
        const char *key, *eq;
        size_t len;

        p += strspn(p, " \t");
        if (*p == '\0') {
            break;
        }
        key = p;
        eq = strchr(key, '=');
        if (eq == NULL) {
            return sys_file_fail(f, VIGIL_EPARSE, "expected key=value");
        }
        len = (size_t)(eq - key);
        p = eq + 1;
        if (len == 5 && memcmp(key, "avg10", 5) == 0) {
            if (sys_scan_dec(&p, &out->avg10[kind]) != 0) {
                return sys_file_fail(f, VIGIL_EPARSE, "bad avg10");
            }
            have_avg10 = 1;
        } else if (len == 5 && memcmp(key, "total", 5) == 0) {
            if (sys_scan_u64(&p, &out->total_us[kind]) != 0) {
                return sys_file_fail(f, VIGIL_EPARSE, "bad total");
            }
            have_total = 1;
        } else {
            p += strcspn(p, " \t");
        }
    }
    if (!have_avg10 || !have_total) {
        return sys_file_fail(f, VIGIL_EPARSE, "avg10 or total missing");
    }
    out->have[kind] = 1;
    return 0;
}

/*
 * Parse one pressure file; see sys_proc.h.
 */
int sys_pressure_read(struct sys_file *f, struct sys_psi *out)
{
    char *line;

    memset(out, 0, sizeof(*out));
    while ((line = sys_file_line(f)) != NULL) {
        int kind, rc;

        if (strncmp(line, "some ", 5) == 0) {
            kind = SYS_PSI_SOME;
        } else if (strncmp(line, "full ", 5) == 0) {
            kind = SYS_PSI_FULL;
        } else {
            continue;
        }
        rc = sys_pressure_line(f, line + 5, out, kind);
        if (rc != 0) {
            return rc;
        }
    }
    if (f->err != 0) {
        return f->err;
    }
    if (!out->have[SYS_PSI_SOME]) {
        return sys_file_fail(f, VIGIL_EPARSE, "no \"some\" line");
    }
    return 0;
}
