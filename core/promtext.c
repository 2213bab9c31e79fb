/* promtext - the bus, the rules and vigil in Prometheus' text format. */
#include "promtext.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "err.h"
#include "rule.h"
#include "runbook.h"

#define PROM_NAME_MAX 256
#define PROM_SEGS_MAX 32

/* ---------------------------------------------------------------- names */

struct prom_unit {
    const char *name;
    const char *base;
    double factor;
};

/* Abbreviations promtool refuses and units it wants as base units. The
 * first match wins; "min" is not here: it usually means minimum. */
static const struct prom_unit prom_units[] = {
    {"s", "seconds", 1},
    {"sec", "seconds", 1},
    {"secs", "seconds", 1},
    {"second", "seconds", 1},
    {"ms", "seconds", 1e-3},
    {"msec", "seconds", 1e-3},
    {"msecs", "seconds", 1e-3},
    {"millis", "seconds", 1e-3},
    {"us", "seconds", 1e-6},
    {"usec", "seconds", 1e-6},
    {"usecs", "seconds", 1e-6},
    {"ns", "seconds", 1e-9},
    {"nsec", "seconds", 1e-9},
    {"nsecs", "seconds", 1e-9},
    {"m", "seconds", 60},
    {"minute", "seconds", 60},
    {"minutes", "seconds", 60},
    {"h", "seconds", 3600},
    {"hour", "seconds", 3600},
    {"hours", "seconds", 3600},
    {"d", "seconds", 86400},
    {"day", "seconds", 86400},
    {"days", "seconds", 86400},
    {"weeks", "seconds", 604800},
    {"b", "bytes", 1},
    {"kb", "bytes", 1e3},
    {"mb", "bytes", 1e6},
    {"gb", "bytes", 1e9},
    {"tb", "bytes", 1e12},
    {"pb", "bytes", 1e15},
    {"kib", "bytes", 1024.0},
    {"mib", "bytes", 1048576.0},
    {"gib", "bytes", 1073741824.0},
    {"bits", "bytes", 0.125},
    {"inches", "meters", 0.0254},
    {"yards", "meters", 0.9144},
    {"miles", "meters", 1609.344},
    {"calories", "joules", 4.184},
    {"pounds", "grams", 453.59237},
    {"ounces", "grams", 28.349523125},
};

/* SI and binary prefixes in front of a base unit ("milliseconds"). */
static const struct {
    const char *p;
    double f;
} prom_prefixes[] = {
    {"pico", 1e-12},  {"nano", 1e-9},         {"micro", 1e-6},
    {"milli", 1e-3},  {"centi", 1e-2},        {"deci", 1e-1},
    {"deca", 1e1},    {"hecto", 1e2},         {"kilo", 1e3},
    {"kibi", 1024.0}, {"mega", 1e6},          {"mibi", 1048576.0},
    {"giga", 1e9},    {"gibi", 1073741824.0}, {"tera", 1e12},
    {"tebi", 0x1p40}, {"peta", 1e15},         {"pebi", 0x1p50},
};

static const char *const prom_bases[] = {
    "seconds", "bytes",   "meters", "metres",  "grams",
    "volts",   "amperes", "joules", "celsius", "kelvin",
};

/* The base unit and factor of a segment, or NULL when it is none. */
static const char *prom_unit_of(const char *seg, double *factor)
{
    for (size_t i = 0; i < sizeof(prom_units) / sizeof(prom_units[0]); i++) {
        if (strcmp(seg, prom_units[i].name) == 0) {
            *factor = prom_units[i].factor;
            return prom_units[i].base;
        }
    }
    for (size_t i = 0; i < sizeof(prom_prefixes) / sizeof(prom_prefixes[0]);
         i++) {
        size_t n = strlen(prom_prefixes[i].p);
        if (strncmp(seg, prom_prefixes[i].p, n) != 0) {
            continue;
        }
        for (size_t j = 0; j < sizeof(prom_bases) / sizeof(prom_bases[0]);
             j++) {
            if (strcmp(seg + n, prom_bases[j]) == 0) {
                *factor = prom_prefixes[i].f;
                return prom_bases[j];
            }
        }
    }
    return NULL;
}

/* snake_case of [A-Za-z0-9_] text: other characters become '_', an
 * upper-case letter after a lower-case one or a digit gets a '_' before
 * it, and everything is lower case. Returns the length, or size when it
 * does not fit. */
static size_t prom_snake(const char *in, char *out, size_t size)
{
    size_t n = 0;

    for (const char *p = in; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if (isupper(c) && p > in &&
            (islower((unsigned char)p[-1]) || isdigit((unsigned char)p[-1]))) {
            if (n + 1 >= size) {
                return size;
            }
            out[n++] = '_';
        }
        if (n + 1 >= size) {
            return size;
        }
        out[n++] = isalnum(c) && c < 128 ? (char)tolower(c) : '_';
    }
    out[n] = '\0';
    return n;
}

int prom_name(const char *name, char *buf, size_t size, double *factor,
              int *counter)
{
    char tmp[PROM_NAME_MAX];
    char *segs[PROM_SEGS_MAX];
    size_t nseg = 0, n = 0;
    double f = 1;
    int per = 0;

    if (prom_snake(name, tmp, sizeof(tmp)) >= sizeof(tmp) || tmp[0] == '\0') {
        return VIGIL_EINVAL;
    }
    for (char *p = tmp, *save = NULL; nseg < PROM_SEGS_MAX; p = NULL) {
        char *s = strtok_r(p, "_", &save);
        if (s == NULL) {
            break;
        }
        segs[nseg++] = s;
    }
    /* Units are spelled in the measure, the last dotted part
     * (`<plugin>.<object>.<measure>_<unit>`): a segment before it ("b" in
     * b.lat_ms) is a name, not a unit. */
    const char *dot = strrchr(name, '.');
    size_t first = 0;
    if (dot != NULL) {
        char raw[PROM_NAME_MAX], pre[PROM_NAME_MAX];
        snprintf(raw, sizeof(raw), "%.*s", (int)(dot - name), name);
        if (prom_snake(raw, pre, sizeof(pre)) < sizeof(pre)) {
            for (char *p = pre, *save = NULL; strtok_r(p, "_", &save);
                 p = NULL) {
                first++;
            }
        }
    } else if (nseg > 1) {
        first = 1;
    }
    *counter = nseg > 1 && strcmp(segs[nseg - 1], "total") == 0;
    /* Reserved histogram and summary suffixes, on a gauge. */
    if (!*counter && nseg > 1 && strcmp(segs[nseg - 1], "count") == 0) {
        nseg--;
    }
    buf[0] = '\0';
    for (size_t i = 0; i < nseg; i++) {
        double uf = 1;
        const char *base = i >= first ? prom_unit_of(segs[i], &uf) : NULL;
        char word[64];
        const char *w = segs[i];

        if (base != NULL) {
            if (per) { /* a divisor: per_second, per_byte */
                size_t bl = strlen(base);
                snprintf(word, sizeof(word), "%.*s",
                         (int)(bl - (base[bl - 1] == 's')), base);
                f /= uf;
            } else {
                snprintf(word, sizeof(word), "%s", base);
                f *= uf;
            }
            w = word;
        }
        per = strcmp(segs[i], "per") == 0;
        n += (size_t)snprintf(buf + (n < size ? n : size),
                              n < size ? size - n : 0, "%s%s", i ? "_" : "", w);
    }
    if (!*counter && nseg > 0 &&
        (strcmp(segs[nseg - 1], "sum") == 0 ||
         strcmp(segs[nseg - 1], "bucket") == 0)) {
        n += (size_t)snprintf(buf + (n < size ? n : size),
                              n < size ? size - n : 0, "_value");
    }
    if (n == 0 || n >= size) {
        return VIGIL_EINVAL;
    }
    if (isdigit((unsigned char)buf[0])) {
        if (n + 1 >= size) {
            return VIGIL_EINVAL;
        }
        memmove(buf + 1, buf, n + 1);
        buf[0] = '_';
    }
    *factor = f;
    return 0;
}

int prom_label_name(const char *name, char *buf, size_t size)
{
    size_t n = prom_snake(name, buf, size);

    if (n == 0 || n >= size) {
        return VIGIL_EINVAL;
    }
    if (isdigit((unsigned char)buf[0])) {
        if (n + 1 >= size) {
            return VIGIL_EINVAL;
        }
        memmove(buf + 1, buf, n + 1);
        buf[0] = '_';
    }
    return 0;
}

/* ---------------------------------------------------------------- text */

static int prom_escape(struct dbuf *b, const char *v, int quote)
{
    size_t start = b->len;

    for (const char *p = v; *p != '\0'; p++) {
        int rc;
        if (*p == '\\') {
            rc = dbuf_add(b, "\\\\", 2);
        } else if (*p == '\n') {
            rc = dbuf_add(b, "\\n", 2);
        } else if (*p == '"' && quote) {
            rc = dbuf_add(b, "\\\"", 2);
        } else {
            rc = dbuf_add(b, p, 1);
        }
        if (rc != 0) {
            b->len = start;
            if (b->p != NULL) {
                b->p[start] = '\0';
            }
            return rc;
        }
    }
    return 0;
}

int prom_add_label_value(struct dbuf *b, const char *v)
{
    return prom_escape(b, v, 1);
}

int prom_add_help(struct dbuf *b, const char *v)
{
    return prom_escape(b, v, 0);
}

int prom_add_value(struct dbuf *b, double v)
{
    char text[40];

    if (isnan(v)) {
        return dbuf_addstr(b, "NaN");
    }
    if (isinf(v)) {
        return dbuf_addstr(b, v > 0 ? "+Inf" : "-Inf");
    }
    /* The shortest form that reads back exactly. */
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(text, sizeof(text), "%.*g", prec, v);
        if (strtod(text, NULL) == v) {
            break;
        }
    }
    return dbuf_addstr(b, text);
}

/* ---------------------------------------------------------------- index */

struct prom_index {
    unsigned refs;
    uint32_t n;
    uint32_t ids[];
};

/* qsort has no context argument: the bus being sorted is kept here, on
 * the loop thread only. */
static const struct bus *prom_sort_bus;

static int prom_cmp_ids(const void *a, const void *b)
{
    vigil_series_id x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    int c = strcmp(bus_series_name(prom_sort_bus, x),
                   bus_series_name(prom_sort_bus, y));

    return c != 0 ? c
                  : strcmp(bus_series_key(prom_sort_bus, x),
                           bus_series_key(prom_sort_bus, y));
}

int prom_index_update(struct prom_index **idx, const struct bus *bus)
{
    struct prom_index *old = *idx, *nw;
    uint32_t have = old ? old->n : 0, count = bus_series_count(bus);
    uint32_t *fresh, i = 0, j = 0, k = 0;

    if (have == count) {
        return 0;
    }
    nw = malloc(sizeof(*nw) + (size_t)count * sizeof(uint32_t));
    fresh = malloc((size_t)(count - have) * sizeof(uint32_t));
    if (nw == NULL || fresh == NULL) {
        free(nw);
        free(fresh);
        return VIGIL_ENOMEM;
    }
    for (uint32_t id = have; id < count; id++) {
        fresh[id - have] = id;
    }
    prom_sort_bus = bus;
    qsort(fresh, count - have, sizeof(uint32_t), prom_cmp_ids);
    /* Merge the sorted old order with the sorted new ids. */
    while (i < have || j < count - have) {
        if (j == count - have ||
            (i < have && prom_cmp_ids(&old->ids[i], &fresh[j]) <= 0)) {
            nw->ids[k++] = old->ids[i++];
        } else {
            nw->ids[k++] = fresh[j++];
        }
    }
    prom_sort_bus = NULL;
    free(fresh);
    nw->refs = 1;
    nw->n = count;
    prom_index_release(old);
    *idx = nw;
    return 0;
}

void prom_index_release(struct prom_index *idx)
{
    if (idx != NULL && --idx->refs == 0) {
        free(idx);
    }
}

/* ---------------------------------------------------------------- scrape */

/* Family names written so far: an open-addressed set. */
struct prom_set {
    char **slot;
    size_t cap, n;
};

static uint64_t prom_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;

    for (; *s != '\0'; s++) {
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    }
    return h;
}

/* Add name; returns 1 when added, 0 when present, <0 on error. */
static int prom_set_add(struct prom_set *set, const char *name)
{
    if (set->n * 2 >= set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 64;
        char **slot = calloc(cap, sizeof(*slot));
        if (slot == NULL) {
            return VIGIL_ENOMEM;
        }
        for (size_t i = 0; i < set->cap; i++) {
            if (set->slot[i] != NULL) {
                size_t h = (size_t)prom_hash(set->slot[i]) & (cap - 1);
                while (slot[h] != NULL) {
                    h = (h + 1) & (cap - 1);
                }
                slot[h] = set->slot[i];
            }
        }
        free(set->slot);
        set->slot = slot;
        set->cap = cap;
    }
    size_t h = (size_t)prom_hash(name) & (set->cap - 1);
    while (set->slot[h] != NULL) {
        if (strcmp(set->slot[h], name) == 0) {
            return 0;
        }
        h = (h + 1) & (set->cap - 1);
    }
    set->slot[h] = strdup(name);
    if (set->slot[h] == NULL) {
        return VIGIL_ENOMEM;
    }
    set->n++;
    return 1;
}

static void prom_set_free(struct prom_set *set)
{
    for (size_t i = 0; i < set->cap; i++) {
        free(set->slot[i]);
    }
    free(set->slot);
}

enum { PROM_SERIES = 0, PROM_RULES, PROM_DONE };

struct prom_scrape {
    struct bus *bus;
    struct prom_index *idx;
    struct rb_engine *rules;
    uint32_t pos;
    int phase;
    struct prom_set families;
    /* The family of the previous series. */
    const char *raw;         /* its bus name, NULL at the start */
    char fam[PROM_NAME_MAX]; /* its Prometheus name */
    double factor;
    int counter;
    int fam_state;  /* 0 unknown, 1 written, -1 skipped */
    int fam_headed; /* HELP and TYPE written */
    unsigned skipped;
};

int prom_scrape_create(struct bus *bus, struct prom_index *idx,
                       struct rb_engine *rules, struct prom_scrape **out)
{
    struct prom_scrape *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        return VIGIL_ENOMEM;
    }
    s->bus = bus;
    s->idx = idx;
    if (idx != NULL) {
        idx->refs++;
    }
    s->rules = rules;
    *out = s;
    return 0;
}

void prom_scrape_destroy(struct prom_scrape *s)
{
    if (s == NULL) {
        return;
    }
    prom_index_release(s->idx);
    prom_set_free(&s->families);
    free(s);
}

unsigned prom_scrape_skipped(const struct prom_scrape *s)
{
    return s->skipped;
}

/* `name{k="v",...} value\n` for one series. */
static int prom_series_line(struct prom_scrape *s, struct dbuf *out,
                            vigil_series_id id, double v)
{
    size_t n, start = out->len;
    const struct vigil_label *l = bus_series_labels(s->bus, id, &n);
    char keys[VIGIL_LABELS_MAX][VIGIL_LABEL_KEY_MAX + 2];
    unsigned nk = 0;
    int rc = dbuf_addstr(out, s->fam);

    for (size_t i = 0; rc == 0 && i < n && i < VIGIL_LABELS_MAX; i++) {
        int dup = 0;
        if (prom_label_name(l[i].key, keys[nk], sizeof(keys[nk])) != 0) {
            continue;
        }
        for (unsigned j = 0; j < nk; j++) {
            dup |= strcmp(keys[j], keys[nk]) == 0;
        }
        if (dup) {
            continue; /* fooBar and foo_bar: the first one wins */
        }
        rc = dbuf_printf(out, "%s%s=\"", nk ? "," : "{", keys[nk]);
        rc = rc ? rc : prom_add_label_value(out, l[i].value);
        rc = rc ? rc : dbuf_addstr(out, "\"");
        nk++;
    }
    rc = rc ? rc : dbuf_addstr(out, nk ? "} " : " ");
    rc = rc ? rc : prom_add_value(out, v * s->factor);
    rc = rc ? rc : dbuf_addstr(out, "\n");
    if (rc != 0 && out->p != NULL) {
        out->len = start;
        out->p[start] = '\0';
    }
    return rc;
}

static int prom_family_head(struct dbuf *out, const char *fam, const char *help,
                            const char *type)
{
    size_t start = out->len;
    int rc = dbuf_printf(out, "# HELP %s ", fam);

    rc = rc ? rc : prom_add_help(out, help);
    rc = rc ? rc : dbuf_printf(out, "\n# TYPE %s %s\n", fam, type);
    if (rc != 0 && out->p != NULL) {
        out->len = start;
        out->p[start] = '\0';
    }
    return rc;
}

/* One bus series; the family's header before its first sample. */
static int prom_one(struct prom_scrape *s, struct dbuf *out, vigil_series_id id)
{
    const char *raw = bus_series_name(s->bus, id);
    const struct win_sample *last = win_last(bus_window(s->bus, id));
    int rc;

    if (s->raw == NULL || strcmp(raw, s->raw) != 0) {
        s->raw = raw;
        s->fam_headed = 0;
        if (prom_name(raw, s->fam, sizeof(s->fam), &s->factor, &s->counter) !=
            0) {
            s->fam_state = -1;
        } else {
            rc = prom_set_add(&s->families, s->fam);
            if (rc < 0) {
                return rc;
            }
            s->fam_state = rc == 1 ? 1 : -1;
        }
        s->skipped += s->fam_state < 0;
    }
    if (s->fam_state < 0 || last == NULL) {
        return 0;
    }
    if (!s->fam_headed) {
        char help[PROM_NAME_MAX + 96];
        snprintf(help, sizeof(help), "vigil series %s%s", raw,
                 s->factor != 1 ? " (converted to base units)" : "");
        rc = prom_family_head(out, s->fam, help,
                              s->counter ? "counter" : "gauge");
        if (rc != 0) {
            return rc;
        }
        s->fam_headed = 1;
    }
    return prom_series_line(s, out, id, last->v);
}

/* The labels of a rule instance: rule, metric and the series' own. */
static int prom_rule_labels(struct dbuf *out, struct bus *bus,
                            const struct rule_def *def, vigil_series_id sid)
{
    int rc = dbuf_addstr(out, "{rule=\"");

    rc = rc ? rc : prom_add_label_value(out, def->name);
    rc = rc ? rc : dbuf_addstr(out, "\"");
    if (rc == 0 && sid != RULE_NO_SERIES) {
        size_t n;
        const struct vigil_label *l = bus_series_labels(bus, sid, &n);
        char key[VIGIL_LABEL_KEY_MAX + 2];

        rc = dbuf_addstr(out, ",metric=\"");
        rc = rc ? rc : prom_add_label_value(out, bus_series_name(bus, sid));
        rc = rc ? rc : dbuf_addstr(out, "\"");
        for (size_t i = 0; rc == 0 && i < n; i++) {
            if (prom_label_name(l[i].key, key, sizeof(key)) != 0 ||
                !strcmp(key, "rule") || !strcmp(key, "metric") ||
                !strcmp(key, "level")) {
                continue;
            }
            rc = dbuf_printf(out, ",%s=\"", key);
            rc = rc ? rc : prom_add_label_value(out, l[i].value);
            rc = rc ? rc : dbuf_addstr(out, "\"");
        }
    }
    return rc ? rc : dbuf_addstr(out, "}");
}

struct prom_rules_ctx {
    struct prom_scrape *s;
    struct dbuf *out;
    int what; /* 0 state, 1 value, 2 thresholds */
    int rc;
};

static void prom_rule_fam(void *arg, const struct rule *r, const char *path,
                          int line)
{
    struct prom_rules_ctx *c = arg;
    const struct rule_def *def = rule_get_def(r);
    struct rule_inst_info in;

    (void)path;
    (void)line;
    if (c->rc != 0) {
        return;
    }
    if (c->what == 2) {
        static const char *const names[] = {"warn_above", "crit_above",
                                            "warn_below", "crit_below"};
        const double lv[] = {def->warn_above, def->crit_above, def->warn_below,
                             def->crit_below};
        for (int i = 0; i < 4 && c->rc == 0; i++) {
            if (isnan(lv[i])) {
                continue;
            }
            c->rc = dbuf_addstr(c->out, "vigil_rule_threshold{rule=\"");
            c->rc = c->rc ? c->rc : prom_add_label_value(c->out, def->name);
            c->rc = c->rc ? c->rc
                          : dbuf_printf(c->out, "\",level=\"%s\"} ", names[i]);
            c->rc = c->rc ? c->rc : prom_add_value(c->out, lv[i]);
            c->rc = c->rc ? c->rc : dbuf_addstr(c->out, "\n");
        }
        return;
    }
    for (unsigned i = 0; c->rc == 0 && rule_instance_info(r, i, &in) == 0;
         i++) {
        if (c->what == 1 && (!in.evaluated || isnan(in.value))) {
            continue;
        }
        c->rc = dbuf_addstr(c->out, c->what == 0 ? "vigil_rule_state"
                                                 : "vigil_rule_value");
        c->rc =
            c->rc ? c->rc : prom_rule_labels(c->out, c->s->bus, def, in.series);
        c->rc = c->rc ? c->rc : dbuf_addstr(c->out, " ");
        c->rc =
            c->rc ? c->rc
                  : prom_add_value(c->out, c->what == 0 ? in.state : in.value);
        c->rc = c->rc ? c->rc : dbuf_addstr(c->out, "\n");
    }
}

/* The rule families and vigil's build info, all at once: rules may be
 * reloaded between two fills. */
static int prom_rules(struct prom_scrape *s, struct dbuf *out)
{
    static const struct {
        const char *name, *help;
    } fams[] = {
        {"vigil_rule_state",
         "state of each rule instance: 0 ok, 1 warning, 2 critical, 3 nodata"},
        {"vigil_rule_value",
         "the value each rule instance last judged, in its series' own unit"},
        {"vigil_rule_threshold", "levels of each rule, in its series' unit"},
    };
    struct prom_rules_ctx c = {.s = s, .out = out};
    int rc;

    for (int i = 0; s->rules != NULL && i < 3; i++) {
        rc = prom_set_add(&s->families, fams[i].name);
        if (rc < 0) {
            return rc;
        }
        if (rc == 0) {
            s->skipped++;
            continue;
        }
        rc = prom_family_head(out, fams[i].name, fams[i].help, "gauge");
        if (rc != 0) {
            return rc;
        }
        c.what = i;
        rb_engine_foreach_rule(s->rules, prom_rule_fam, &c);
        if (c.rc != 0) {
            return c.rc;
        }
    }
    rc = prom_set_add(&s->families, "vigil_build_info");
    if (rc == 1) {
        rc = prom_family_head(out, "vigil_build_info",
                              "vigil's version, always 1", "gauge");
        rc = rc ? rc
                : dbuf_printf(out, "vigil_build_info{version=\"%s\"} 1\n",
                              VIGIL_VERSION);
    }
    return rc < 0 ? rc : 0;
}

int prom_scrape_fill(struct prom_scrape *s, struct dbuf *out, size_t want)
{
    size_t goal = out->len + want;
    int rc;

    while (s->phase == PROM_SERIES && out->len < goal) {
        if (s->idx == NULL || s->pos >= s->idx->n) {
            s->phase = PROM_RULES;
            break;
        }
        size_t before = out->len;
        rc = prom_one(s, out, s->idx->ids[s->pos]);
        if (rc == VIGIL_ELIMIT && before > 0) {
            return 0; /* out is full: the rest in the next fill */
        }
        if (rc != 0) {
            return rc;
        }
        s->pos++;
    }
    if (s->phase == PROM_RULES && out->len < goal) {
        rc = prom_rules(s, out);
        if (rc != 0) {
            return rc;
        }
        s->phase = PROM_DONE;
    }
    return s->phase == PROM_DONE;
}
