/*
 * prom_map.c - Prometheus samples to vigil series; see prom_map.h.
 *
 * Series and histogram label sets ("groups") live in two growable arrays
 * and are found through one open-addressing hash table of their keys. A
 * series key is the metric name followed by the labels sorted by name;
 * a group key is a marker byte, the family name and the labels without
 * `le`. Keys are built into a scratch buffer for every sample, so finding
 * a known series costs a copy of the line's name and labels and a hash,
 * and no allocation.
 */
#include "prom_map.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prom_hist.h"

/* Key bytes: the name, then per label a NUL, the name, a NUL, a 4-byte
 * length and the value; all of it comes from one line. */
#define PROM_KEY_MAX (PROM_LINE_MAX + PROM_LABELS_MAX * 6 + 8)
#define PROM_GROUP_MARK '\x01'
#define PROM_SLOT_GROUP 0x80000000u
#define PROM_TABLE_MIN 1024

static const double prom_quantiles[PROM_NQUANTILES] = {0.5, 0.9, 0.95, 0.99};
static const char *const prom_quantile_suffix[PROM_NQUANTILES] = {
    ".p50", ".p90", ".p95", ".p99"};

struct prom_series {
    char *key;
    uint32_t keylen;
    uint32_t hash;
    vigil_series_id id;
    int refused;       /* vigil refused it: skipped from now on */
    uint32_t group;    /* histogram buckets: index + 1 of the group, else 0 */
    uint64_t gen;      /* scrape that staged it last */
    unsigned line;     /* its line in that scrape */
    double value;      /* staged value */
    double le;         /* buckets: upper bound */
    double prev;       /* buckets: count at the last good scrape... */
    uint64_t prev_gen; /* ...which was this one */
};

/* One label set of a histogram. */
struct prom_group {
    char *key;
    uint32_t keylen;
    uint32_t hash;
    int has_quantiles;
    vigil_series_id qid[PROM_NQUANTILES];
    uint32_t *buckets; /* series indexes */
    uint32_t nbuckets, cap;
    int full_logged;
    uint64_t gen;            /* last scrape that staged a bucket */
    uint64_t incomplete_gen; /* a scrape that had to drop a bucket */
    uint64_t last_gen;       /* last good scrape that saw it whole */
    uint32_t last_n;         /* buckets it had then */
};

struct prom_map {
    const struct vigil_host *host;
    vigil_instance *inst;
    char prefix[VIGIL_NAME_MAX + 1]; /* with its joining '.', if any */
    size_t prefix_len;
    size_t max_series;
    size_t nvigil; /* vigil series created or refused */

    struct prom_series *series;
    size_t nseries, cap_series;
    struct prom_group *groups;
    size_t ngroups, cap_groups;
    uint32_t *slots; /* 0: empty; index + 1, | PROM_SLOT_GROUP */
    size_t nslots;   /* a power of two */
    size_t used;

    /* The scrape being staged. */
    uint64_t gen;
    uint32_t *staged; /* series indexes, capacity cap_series */
    size_t nstaged;
    uint32_t *touched; /* group indexes, capacity cap_groups */
    size_t ntouched;
    unsigned dropped;       /* samples dropped */
    unsigned limit_dropped; /* new series over max_series */
    unsigned refusals;      /* series refused (logged up to a limit) */
    char dropped_name[96];  /* the first series over max_series */
    unsigned last_limit_dropped;
    int oom_logged;

    /* Scratch. */
    char key[PROM_KEY_MAX];
    char gkey[PROM_KEY_MAX];
    unsigned char order[PROM_LABELS_MAX];
    char name[VIGIL_NAME_MAX];
    char keys[PROM_LABELS_MAX][VIGIL_LABEL_KEY_MAX];
    char vals[PROM_LABELS_MAX][VIGIL_LABEL_VALUE_MAX];
    struct vigil_label labels[PROM_LABELS_MAX];
    struct prom_bucket buckets[PROM_BUCKETS_MAX];
};

/* ------------------------------------------------------------------------
 * Keys and the hash table.
 */

static uint32_t prom_hash(const char *p, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    size_t i;

    for (i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 16777619u;
    }
    return h;
}

static int prom_str_is(const struct prom_str *s, const char *w)
{
    return strlen(w) == s->n && memcmp(s->p, w, s->n) == 0;
}

/* Sort the sample's labels by name into m->order. */
static void prom_sort_labels(struct prom_map *m, const struct prom_sample *s)
{
    size_t i, j;

    for (i = 0; i < s->nlabels; i++) {
        const struct prom_str *k = &s->labels[i].key;

        for (j = i; j > 0; j--) {
            const struct prom_str *o = &s->labels[m->order[j - 1]].key;
            size_t n = o->n < k->n ? o->n : k->n;
            int c = memcmp(o->p, k->p, n);

            if (c < 0 || (c == 0 && o->n <= k->n)) {
                break;
            }
            m->order[j] = m->order[j - 1];
        }
        m->order[j] = (unsigned char)i;
    }
}

/* Build a key into buf: mark (if not 0), name, sorted labels (without
 * `le` when skip_le). Returns its length. */
static size_t prom_key(const struct prom_map *m, char *buf, char mark,
                       const struct prom_str *name, const struct prom_sample *s,
                       int skip_le)
{
    size_t len = 0, i;

    if (mark != 0) {
        buf[len++] = mark;
    }
    memcpy(buf + len, name->p, name->n);
    len += name->n;
    for (i = 0; i < s->nlabels; i++) {
        const struct prom_label *l = &s->labels[m->order[i]];
        uint32_t vn = (uint32_t)l->value.n;

        if (skip_le && prom_str_is(&l->key, "le")) {
            continue;
        }
        buf[len++] = '\0';
        memcpy(buf + len, l->key.p, l->key.n);
        len += l->key.n;
        buf[len++] = '\0';
        memcpy(buf + len, &vn, sizeof(vn));
        len += sizeof(vn);
        memcpy(buf + len, l->value.p, l->value.n);
        len += l->value.n;
    }
    return len;
}

/* The slot holding key, or the empty slot where it would go. */
static size_t prom_slot(const struct prom_map *m, const char *key, size_t len,
                        uint32_t hash, int group)
{
    size_t mask = m->nslots - 1, i = hash & mask;

    for (;; i = (i + 1) & mask) {
        uint32_t v = m->slots[i];
        uint32_t idx = (v & ~PROM_SLOT_GROUP) - 1;

        if (v == 0) {
            return i;
        }
        if (((v & PROM_SLOT_GROUP) != 0) != (group != 0)) {
            continue;
        }
        if (group) {
            const struct prom_group *g = &m->groups[idx];

            if (g->hash == hash && g->keylen == len &&
                memcmp(g->key, key, len) == 0) {
                return i;
            }
        } else {
            const struct prom_series *e = &m->series[idx];

            if (e->hash == hash && e->keylen == len &&
                memcmp(e->key, key, len) == 0) {
                return i;
            }
        }
    }
}

/* Make room for one more entry in the table (load at most 1/2). */
static int prom_table_reserve(struct prom_map *m)
{
    uint32_t *old = m->slots;
    size_t oldn = m->nslots, i, n;

    if ((m->used + 1) * 2 <= m->nslots) {
        return 0;
    }
    n = m->nslots * 2;
    m->slots = calloc(n, sizeof(*m->slots));
    if (m->slots == NULL) {
        m->slots = old;
        return VIGIL_ENOMEM;
    }
    m->nslots = n;
    for (i = 0; i < oldn; i++) {
        uint32_t v = old[i], idx, h;
        size_t k;

        if (v == 0) {
            continue;
        }
        idx = (v & ~PROM_SLOT_GROUP) - 1;
        h = (v & PROM_SLOT_GROUP) ? m->groups[idx].hash : m->series[idx].hash;
        for (k = h & (n - 1); m->slots[k] != 0; k = (k + 1) & (n - 1)) {
        }
        m->slots[k] = v;
    }
    free(old);
    return 0;
}

/* Grow an array of n used elements of size sz to hold one more; the
 * companion array (may be NULL) of uint32 grows with it. */
static int prom_grow(void **arr, size_t *cap, size_t n, size_t sz,
                     uint32_t **comp)
{
    size_t ncap;
    void *p;

    if (n < *cap) {
        return 0;
    }
    ncap = *cap ? *cap * 2 : 64;
    p = realloc(*arr, ncap * sz);
    if (p == NULL) {
        return VIGIL_ENOMEM;
    }
    *arr = p;
    if (comp != NULL) {
        uint32_t *c = realloc(*comp, ncap * sizeof(**comp));

        if (c == NULL) {
            return VIGIL_ENOMEM; /* arr is bigger: harmless */
        }
        *comp = c;
    }
    *cap = ncap;
    return 0;
}

/* ------------------------------------------------------------------------
 * Names and labels for vigil.
 */

/* prefix + name (':' -> '_') + suffix into m->name; -1 if too long. */
static int prom_vigil_name(struct prom_map *m, const struct prom_str *name,
                           const char *suffix)
{
    size_t sl = strlen(suffix), i, len = m->prefix_len;

    if (len + name->n + sl >= sizeof(m->name)) {
        return -1;
    }
    memcpy(m->name, m->prefix, len);
    for (i = 0; i < name->n; i++) {
        char c = name->p[i];

        m->name[len++] = c == ':' ? '_' : c;
    }
    memcpy(m->name + len, suffix, sl + 1);
    return 0;
}

/* A label value with control characters written out; -1 if too long. */
static int prom_vigil_value(char *dst, const struct prom_str *v)
{
    static const char hex[] = "0123456789abcdef";
    size_t i, n = 0;

    for (i = 0; i < v->n; i++) {
        unsigned char c = (unsigned char)v->p[i];
        char esc[4];
        size_t k = 0;

        if (c == '\n' || c == '\t' || c == '\r') {
            esc[k++] = '\\';
            esc[k++] = c == '\n' ? 'n' : c == '\t' ? 't' : 'r';
        } else if (c < 0x20 || c == 0x7f) {
            esc[k++] = '\\';
            esc[k++] = 'x';
            esc[k++] = hex[c >> 4];
            esc[k++] = hex[c & 15];
        } else {
            esc[k++] = (char)c;
        }
        if (n + k >= VIGIL_LABEL_VALUE_MAX) {
            return -1;
        }
        memcpy(dst + n, esc, k);
        n += k;
    }
    dst[n] = '\0';
    return 0;
}

/* The sample's labels (without `le` when skip_le) as vigil labels in
 * m->labels; returns how many, or -1 with *why set. */
static int prom_vigil_labels(struct prom_map *m, const struct prom_sample *s,
                             int skip_le, const char **why)
{
    size_t i, n = 0;

    for (i = 0; i < s->nlabels; i++) {
        const struct prom_label *l = &s->labels[i];
        char *k = m->keys[n];
        size_t j, kn;

        if (skip_le && prom_str_is(&l->key, "le")) {
            continue;
        }
        if (prom_str_is(&l->key, "instance")) {
            memcpy(k, "exported_instance", sizeof("exported_instance"));
        } else {
            kn = l->key.n < VIGIL_LABEL_KEY_MAX - 1 ? l->key.n
                                                    : VIGIL_LABEL_KEY_MAX - 1;
            for (j = 0; j < kn; j++) {
                char c = l->key.p[j];

                k[j] = (c == '.' || c == '-' || c == ':') ? '_' : c;
            }
            k[kn] = '\0';
        }
        if (prom_vigil_value(m->vals[n], &l->value) != 0) {
            *why = "a label value is longer than vigil allows";
            return -1;
        }
        m->labels[n].key = k;
        m->labels[n].value = m->vals[n];
        n++;
    }
    if (n > VIGIL_LABELS_MAX) {
        *why = "more labels than vigil allows";
        return -1;
    }
    return (int)n;
}

/* Intern prefix+name+suffix with the sample's labels. Returns 0, or
 * -1 with *why set. */
static int prom_intern(struct prom_map *m, const struct prom_str *name,
                       const char *suffix, const struct prom_sample *s,
                       int skip_le, vigil_series_id *id, const char **why)
{
    int n, rc;

    if (prom_vigil_name(m, name, suffix) != 0) {
        *why = "the name is longer than vigil allows";
        return -1;
    }
    n = prom_vigil_labels(m, s, skip_le, why);
    if (n < 0) {
        return -1;
    }
    rc = m->host->series(m->inst, m->name, n > 0 ? m->labels : NULL, (size_t)n,
                         id);
    if (rc != 0) {
        *why = vigil_error_text(rc);
        return -1;
    }
    return 0;
}

static void prom_log_oom(struct prom_map *m)
{
    if (!m->oom_logged) {
        m->oom_logged = 1;
        m->host->log(m->inst, VIGIL_LOG_ERROR,
                     "out of memory: new series are not published");
    }
}

/* ------------------------------------------------------------------------
 * Histogram groups.
 */

static struct prom_group *
prom_group_find(struct prom_map *m, const struct prom_sample *s, int create)
{
    size_t len = prom_key(m, m->gkey, PROM_GROUP_MARK, &s->family, s, 1);
    uint32_t h = prom_hash(m->gkey, len);
    size_t slot = prom_slot(m, m->gkey, len, h, 1);
    struct prom_group *g;
    const char *why = NULL;
    size_t q;

    if (m->slots[slot] != 0) {
        return &m->groups[(m->slots[slot] & ~PROM_SLOT_GROUP) - 1];
    }
    if (!create) {
        return NULL;
    }
    if (prom_table_reserve(m) != 0 ||
        prom_grow((void **)&m->groups, &m->cap_groups, m->ngroups,
                  sizeof(*m->groups), &m->touched) != 0) {
        prom_log_oom(m);
        return NULL;
    }
    g = &m->groups[m->ngroups];
    memset(g, 0, sizeof(*g));
    g->key = malloc(len);
    if (g->key == NULL) {
        prom_log_oom(m);
        return NULL;
    }
    memcpy(g->key, m->gkey, len);
    g->keylen = (uint32_t)len;
    g->hash = h;
    if (m->nvigil + PROM_NQUANTILES > m->max_series) {
        m->host->log(m->inst, VIGIL_LOG_WARN,
                     "max_series (%zu) reached: no quantiles for histogram "
                     "%.*s",
                     m->max_series, (int)s->family.n, s->family.p);
    } else {
        g->has_quantiles = 1;
        m->nvigil += PROM_NQUANTILES;
        for (q = 0; q < PROM_NQUANTILES && g->has_quantiles; q++) {
            if (prom_intern(m, &s->family, prom_quantile_suffix[q], s, 1,
                            &g->qid[q], &why) != 0) {
                g->has_quantiles = 0;
                m->host->log(m->inst, VIGIL_LOG_WARN,
                             "no quantiles for histogram %.*s: %s",
                             (int)s->family.n, s->family.p, why);
            }
        }
    }
    /* Re-probe: the table may have grown. */
    slot = prom_slot(m, m->gkey, len, h, 1);
    m->slots[slot] = (uint32_t)(m->ngroups + 1) | PROM_SLOT_GROUP;
    m->used++;
    m->ngroups++;
    return g;
}

/* Add series idx to its group's buckets. */
static void prom_group_add(struct prom_map *m, struct prom_group *g,
                           uint32_t idx, const struct prom_sample *s)
{
    if (g->nbuckets == PROM_BUCKETS_MAX) {
        if (!g->full_logged) {
            g->full_logged = 1;
            m->host->log(m->inst, VIGIL_LOG_WARN,
                         "histogram %.*s has more than %d buckets: no "
                         "quantiles for it",
                         (int)s->family.n, s->family.p, PROM_BUCKETS_MAX);
        }
        g->has_quantiles = 0;
        return;
    }
    if (g->nbuckets == g->cap) {
        uint32_t ncap = g->cap ? g->cap * 2 : 16;
        uint32_t *b = realloc(g->buckets, ncap * sizeof(*b));

        if (b == NULL) {
            prom_log_oom(m);
            g->has_quantiles = 0;
            return;
        }
        g->buckets = b;
        g->cap = ncap;
    }
    g->buckets[g->nbuckets++] = idx;
}

/* ------------------------------------------------------------------------
 * Staging.
 */

/* Remember a series dropped for the limit, for the end-of-scrape log. */
static void prom_note_limit(struct prom_map *m, const struct prom_sample *s)
{
    if (m->limit_dropped++ == 0) {
        snprintf(m->dropped_name, sizeof(m->dropped_name), "%.*s",
                 (int)s->name.n, s->name.p);
    }
}

/* Create the series of m->key (len, hash h) for sample s; returns its
 * index, or -1 when it is dropped. */
static long prom_series_create(struct prom_map *m, const struct prom_sample *s,
                               size_t len, uint32_t h, unsigned line)
{
    struct prom_series *e;
    struct prom_group *g = NULL;
    const char *why = NULL;
    size_t idx, slot;

    if (m->nvigil >= m->max_series) {
        prom_note_limit(m, s);
        return -1;
    }
    if (prom_table_reserve(m) != 0 ||
        prom_grow((void **)&m->series, &m->cap_series, m->nseries,
                  sizeof(*m->series), &m->staged) != 0) {
        prom_log_oom(m);
        return -1;
    }
    e = &m->series[m->nseries];
    memset(e, 0, sizeof(*e));
    e->key = malloc(len);
    if (e->key == NULL) {
        prom_log_oom(m);
        return -1;
    }
    memcpy(e->key, m->key, len);
    e->keylen = (uint32_t)len;
    e->hash = h;
    e->le = s->le;
    m->nvigil++;
    if (prom_intern(m, &s->name, "", s, 0, &e->id, &why) != 0) {
        e->refused = 1;
        if (m->refusals++ < PROM_REFUSALS_LOGGED) {
            m->host->log(m->inst, VIGIL_LOG_WARN,
                         "line %u: series %.*s not published: %s; it is "
                         "skipped from now on",
                         line, (int)(s->name.n > 96 ? 96 : s->name.n),
                         s->name.p, why);
        }
    }
    idx = m->nseries;
    if (s->role == PROM_ROLE_BUCKET) {
        /* After the series: interning the group's quantiles uses the
         * scratch name and labels. */
        g = prom_group_find(m, s, 1);
        if (g != NULL) {
            e = &m->series[idx];
            e->group = (uint32_t)(g - m->groups) + 1;
            if (!e->refused) {
                prom_group_add(m, g, (uint32_t)idx, s);
            }
        }
    }
    /* The group may have grown the table: probe again. */
    slot = prom_slot(m, m->key, len, h, 0);
    m->slots[slot] = (uint32_t)idx + 1;
    m->used++;
    m->nseries++;
    return (long)idx;
}

/* A bucket of g could not be staged: no quantiles from this scrape. */
static void prom_group_incomplete(struct prom_map *m, struct prom_group *g)
{
    g->incomplete_gen = m->gen;
}

int prom_map_stage(struct prom_map *m, const struct prom_sample *s,
                   unsigned line, unsigned *first_line)
{
    struct prom_series *e;
    size_t len, slot;
    uint32_t h;
    long idx;

    prom_sort_labels(m, s);
    len = prom_key(m, m->key, 0, &s->name, s, 0);
    h = prom_hash(m->key, len);
    slot = prom_slot(m, m->key, len, h, 0);
    if (m->slots[slot] != 0) {
        idx = (long)m->slots[slot] - 1;
    } else {
        idx = prom_series_create(m, s, len, h, line);
        if (idx < 0) {
            struct prom_group *g;

            if (s->role == PROM_ROLE_BUCKET &&
                (g = prom_group_find(m, s, 0)) != NULL) {
                prom_group_incomplete(m, g);
            }
            m->dropped++;
            return PROM_MAP_DROPPED;
        }
    }
    e = &m->series[idx];
    if (e->gen == m->gen) {
        *first_line = e->line;
        return PROM_MAP_DUPLICATE;
    }
    e->gen = m->gen;
    e->line = line;
    if (e->refused) {
        if (e->group != 0) {
            prom_group_incomplete(m, &m->groups[e->group - 1]);
        }
        m->dropped++;
        return PROM_MAP_DROPPED;
    }
    e->value = s->value;
    m->staged[m->nstaged++] = (uint32_t)idx;
    if (e->group != 0) {
        struct prom_group *g = &m->groups[e->group - 1];

        if (g->gen != m->gen) {
            g->gen = m->gen;
            m->touched[m->ntouched++] = e->group - 1;
        }
    }
    return PROM_MAP_STAGED;
}

/* ------------------------------------------------------------------------
 * Commit.
 */

/* Publish g's quantiles if its buckets were seen whole in this scrape
 * and in the previous good one; then make this scrape the reference. */
static unsigned prom_group_commit(struct prom_map *m, struct prom_group *g,
                                  int64_t ts_ns)
{
    int whole = g->incomplete_gen != m->gen;
    int valid = whole && g->last_gen != 0 && g->has_quantiles;
    unsigned published = 0;
    size_t n = 0, i;

    for (i = 0; i < g->nbuckets; i++) {
        const struct prom_series *e = &m->series[g->buckets[i]];
        double d;

        if (e->gen != m->gen) {
            continue;
        }
        if (e->prev_gen != g->last_gen) {
            valid = 0;
        }
        /* A count that went down was reset: its increase is what it
         * counted since, as PromQL's increase() takes it. */
        d = e->value - e->prev;
        m->buckets[n].le = e->le;
        m->buckets[n].count = d < 0 ? e->value : d;
        n++;
    }
    if (n != g->last_n) {
        valid = 0;
    }
    if (valid) {
        n = prom_hist_prepare(m->buckets, n);
        for (i = 0; i < PROM_NQUANTILES; i++) {
            double v = prom_hist_quantile(prom_quantiles[i], m->buckets, n);

            if (!isnan(v)) {
                m->host->publish(m->inst, g->qid[i], ts_ns, v);
                published++;
            }
        }
    }
    if (!whole) {
        g->last_gen = 0; /* prime again from the next good scrape */
        return published;
    }
    n = 0;
    for (i = 0; i < g->nbuckets; i++) {
        struct prom_series *e = &m->series[g->buckets[i]];

        if (e->gen == m->gen) {
            e->prev = e->value;
            e->prev_gen = m->gen;
            n++;
        }
    }
    g->last_gen = m->gen;
    g->last_n = (uint32_t)n;
    return published;
}

/* End-of-scrape bookkeeping shared by commit and abort. */
static void prom_map_end(struct prom_map *m, struct prom_map_stats *st,
                         unsigned published, unsigned quantiles)
{
    if (m->limit_dropped != m->last_limit_dropped) {
        if (m->limit_dropped > 0) {
            m->host->log(m->inst, VIGIL_LOG_WARN,
                         "max_series (%zu) reached: %u new series dropped "
                         "in this scrape, the first %s; raise max_series or "
                         "expose fewer series",
                         m->max_series, m->limit_dropped, m->dropped_name);
        } else {
            m->host->log(m->inst, VIGIL_LOG_INFO,
                         "no series dropped for max_series any more");
        }
        m->last_limit_dropped = m->limit_dropped;
    }
    if (m->refusals > PROM_REFUSALS_LOGGED) {
        m->host->log(m->inst, VIGIL_LOG_WARN,
                     "%u more series not published in this scrape",
                     m->refusals - PROM_REFUSALS_LOGGED);
    }
    if (st != NULL) {
        st->staged = (unsigned)m->nstaged;
        st->dropped = m->dropped;
        st->published = published;
        st->quantiles = quantiles;
    }
    m->nstaged = 0;
    m->ntouched = 0;
}

void prom_map_commit(struct prom_map *m, int64_t ts_ns,
                     struct prom_map_stats *st)
{
    unsigned published = 0, quantiles = 0;
    size_t i;

    for (i = 0; i < m->nstaged; i++) {
        const struct prom_series *e = &m->series[m->staged[i]];

        m->host->publish(m->inst, e->id, ts_ns, e->value);
        published++;
    }
    for (i = 0; i < m->ntouched; i++) {
        quantiles += prom_group_commit(m, &m->groups[m->touched[i]], ts_ns);
    }
    prom_map_end(m, st, published + quantiles, quantiles);
}

void prom_map_abort(struct prom_map *m, struct prom_map_stats *st)
{
    prom_map_end(m, st, 0, 0);
}

void prom_map_begin(struct prom_map *m)
{
    m->gen++;
    m->nstaged = 0;
    m->ntouched = 0;
    m->dropped = 0;
    m->limit_dropped = 0;
    m->refusals = 0;
}

size_t prom_map_series(const struct prom_map *m)
{
    return m->nvigil;
}

/* ------------------------------------------------------------------------
 * Life cycle.
 */

void prom_map_destroy(struct prom_map *m)
{
    size_t i;

    if (m == NULL) {
        return;
    }
    for (i = 0; i < m->nseries; i++) {
        free(m->series[i].key);
    }
    for (i = 0; i < m->ngroups; i++) {
        free(m->groups[i].key);
        free(m->groups[i].buckets);
    }
    free(m->series);
    free(m->groups);
    free(m->slots);
    free(m->staged);
    free(m->touched);
    free(m);
}

/* A prefix must be a vigil name: [A-Za-z_][A-Za-z0-9_.]*. */
static int prom_prefix_ok(const char *p)
{
    size_t i;

    for (i = 0; p[i] != '\0'; i++) {
        char c = p[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (i > 0 && ((c >= '0' && c <= '9') || c == '.')))) {
            return 0;
        }
    }
    return 1;
}

int prom_map_create(const struct vigil_host *host, vigil_instance *inst,
                    const char *prefix, size_t max_series,
                    struct prom_map **out)
{
    struct prom_map *m;
    size_t n;

    *out = NULL;
    if (prefix == NULL) {
        prefix = "";
    }
    n = strlen(prefix);
    if (max_series < 1 || n >= VIGIL_NAME_MAX - 1 || !prom_prefix_ok(prefix)) {
        return VIGIL_EINVAL;
    }
    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return VIGIL_ENOMEM;
    }
    m->host = host;
    m->inst = inst;
    m->max_series = max_series;
    memcpy(m->prefix, prefix, n);
    if (n > 0 && prefix[n - 1] != '.' && prefix[n - 1] != '_') {
        m->prefix[n++] = '.';
    }
    m->prefix_len = n;
    m->nslots = PROM_TABLE_MIN;
    m->slots = calloc(m->nslots, sizeof(*m->slots));
    if (m->slots == NULL) {
        prom_map_destroy(m);
        return VIGIL_ENOMEM;
    }
    *out = m;
    return 0;
}
