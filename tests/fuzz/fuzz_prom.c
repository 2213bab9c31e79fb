/* libFuzzer target: the Prometheus text parser (plugins/prom/prom_parse.c)
 * and the mapping of its samples to vigil series (prom_map.c, with the
 * histogram quantile estimate), with a stub host. The input is fed in
 * chunks whose size comes from its first byte, then fed again whole as a
 * second scrape so that histogram increases and quantiles are computed.
 * Any input must give samples or line errors, never a crash, a leak or
 * undefined behaviour. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <vigil/plugin.h>

#include "prom_map.h"
#include "prom_parse.h"

/* The stub core: hands out ids up to a limit and checks what the map
 * gives it against the ABI's rules. */
#define FZ_SERIES_MAX 512

static size_t fz_series;
static vigil_series_id fz_next;

static int fz_series_cb(vigil_instance *inst, const char *name,
                        const struct vigil_label *labels, size_t n,
                        vigil_series_id *out)
{
    (void)inst;
    if (strlen(name) >= VIGIL_NAME_MAX || n > VIGIL_LABELS_MAX) {
        return VIGIL_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (strlen(labels[i].key) >= VIGIL_LABEL_KEY_MAX ||
            strlen(labels[i].value) >= VIGIL_LABEL_VALUE_MAX) {
            abort(); /* the map must have caught it */
        }
        for (const char *v = labels[i].value; *v; v++) {
            if ((unsigned char)*v < 0x20 || *v == 0x7f) {
                abort(); /* control characters must be escaped */
            }
        }
    }
    if (fz_series >= FZ_SERIES_MAX) {
        return VIGIL_ELIMIT;
    }
    fz_series++;
    *out = fz_next++;
    return 0;
}

static void fz_publish(vigil_instance *inst, vigil_series_id id, int64_t ts,
                       double v)
{
    (void)inst;
    (void)ts;
    (void)v;
    if (id >= fz_next) {
        abort();
    }
}

static void fz_log(vigil_instance *inst, int level, const char *fmt, ...)
{
    (void)inst;
    (void)level;
    (void)fmt;
}

static const struct vigil_host fz_host = {
    .abi_version = VIGIL_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct vigil_host),
    .series = fz_series_cb,
    .publish = fz_publish,
    .log = fz_log,
};

static void fz_line(void *arg, int kind, const struct prom_sample *s,
                    unsigned lineno, const char *err)
{
    unsigned first;

    if (kind == PROM_LINE_ERROR) {
        if (err == NULL || s != NULL || lineno == 0) {
            abort();
        }
        return;
    }
    if (s == NULL || s->name.n == 0 || s->nlabels > PROM_LABELS_MAX) {
        abort();
    }
    prom_map_stage(arg, s, lineno, &first);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct prom_parser *p;
    struct prom_map *m = NULL;
    size_t chunk, off;

    if (p == NULL && (p = malloc(sizeof(*p))) == NULL) {
        return 0;
    }
    if (size == 0) {
        return 0;
    }
    chunk = (size_t)data[0] + 1;
    data++;
    size--;
    fz_series = 0;
    fz_next = 0;
    if (prom_map_create(&fz_host, NULL, "fz", 256, &m) != 0) {
        return 0;
    }
    /* Scrape 1: in chunks; committed. */
    prom_parser_init(p);
    prom_map_begin(m);
    for (off = 0; off < size; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;

        prom_parse_feed(p, (const char *)data + off, n, fz_line, m);
    }
    prom_parse_finish(p, fz_line, m);
    prom_map_commit(m, 1, NULL);
    /* Scrape 2: whole; committed, so histograms give quantiles. */
    prom_parser_init(p);
    prom_map_begin(m);
    prom_parse_feed(p, (const char *)data, size, fz_line, m);
    prom_parse_finish(p, fz_line, m);
    prom_map_commit(m, 2, NULL);
    /* Scrape 3: aborted. */
    prom_parser_init(p);
    prom_map_begin(m);
    prom_parse_feed(p, (const char *)data, size, fz_line, m);
    prom_map_abort(m, NULL);
    prom_map_destroy(m);
    return 0;
}
