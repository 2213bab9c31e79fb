/*
 * proc_meminfo.c - /proc/meminfo:
 *
 *   MemTotal:       24731708 kB
 *   MemAvailable:   24395084 kB
 *
 * Only the keys below are looked at; values are kB (KiB) and become bytes.
 */
#include <string.h>

#include <vigil/plugin.h>

#include "sys_proc.h"

/*
 * Parse /proc/meminfo; see sys_proc.h.
 */
int sys_meminfo_read(struct sys_file *f, struct sys_meminfo *out)
{
    enum { TOTAL, FREE, AVAILABLE, BUFFERS, CACHED, SWAP_TOTAL, SWAP_FREE };
    const struct {
        const char *key;
        uint64_t *dst;
    } keys[] = {
        [TOTAL] = {"MemTotal", &out->total},
        [FREE] = {"MemFree", &out->free},
        [AVAILABLE] = {"MemAvailable", &out->available},
        [BUFFERS] = {"Buffers", &out->buffers},
        [CACHED] = {"Cached", &out->cached},
        [SWAP_TOTAL] = {"SwapTotal", &out->swap_total},
        [SWAP_FREE] = {"SwapFree", &out->swap_free},
    };
    const size_t nkeys = sizeof(keys) / sizeof(keys[0]);
    unsigned seen = 0;
    char *line;

    memset(out, 0, sizeof(*out));
    while ((line = sys_file_line(f)) != NULL) {
        const char *colon = strchr(line, ':');
        const char *p;
        uint64_t v;
        size_t i;

        if (colon == NULL) {
            return sys_file_fail(f, VIGIL_EPARSE, "line without ':'");
        }
        for (i = 0; i < nkeys; i++) {
            size_t len = strlen(keys[i].key);

            if ((size_t)(colon - line) == len &&
                memcmp(line, keys[i].key, len) == 0) {
                break;
            }
        }
        if (i == nkeys) {
            continue;
        }
        p = colon + 1;
        if (sys_scan_u64(&p, &v) != 0) {
            return sys_file_fail(f, VIGIL_EPARSE, "bad number");
        }
        while (*p == ' ') {
            p++;
        }
        if (strcmp(p, "kB") == 0) {
            if (v > UINT64_MAX / 1024) {
                return sys_file_fail(f, VIGIL_EPARSE, "value too large");
            }
            v *= 1024;
        } else if (*p != '\0') {
            return sys_file_fail(f, VIGIL_EPARSE, "unknown unit");
        }
        *keys[i].dst = v;
        seen |= 1u << i;
    }
    if (f->err != 0) {
        return f->err;
    }
    if (!(seen & (1u << TOTAL))) {
        return sys_file_fail(f, VIGIL_EPARSE, "no MemTotal");
    }
    if (!(seen & (1u << AVAILABLE))) {
        /* Linux < 3.14: the usual estimate of what could be reclaimed. */
        out->available = out->free + out->buffers + out->cached;
        if (out->available > out->total) {
            out->available = out->total;
        }
    }
    return 0;
}

/*
 * Derived memory figures; see sys_proc.h.
 */
void sys_mem_usage(const struct sys_meminfo *m, struct sys_mem_usage *out)
{
    uint64_t used = m->available < m->total ? m->total - m->available : 0;
    uint64_t swap_used =
        m->swap_free < m->swap_total ? m->swap_total - m->swap_free : 0;

    out->used_bytes = (double)used;
    out->used_pct =
        m->total > 0 ? (double)used * 100.0 / (double)m->total : 0.0;
    out->swap_used_bytes = (double)swap_used;
    out->swap_used_pct = m->swap_total > 0
                             ? (double)swap_used * 100.0 / (double)m->swap_total
                             : 0.0;
}
