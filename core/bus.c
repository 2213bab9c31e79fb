/*
 * bus - series registry, per-series windows and subscriptions.
 *
 * Layout: series are 64-byte structs in fixed chunks of 1024, indexed by id;
 * an open-addressing table (linear probing, at most half full, no deletion
 * since ids are never reused) maps the canonical key to the id. A series
 * owns one allocation for its strings, its ring, and an array of pointers to
 * the subscriptions that match it; a subscription keeps the ids of those
 * series, so that unsubscribing touches only them.
 *
 * Patterns are resolved in bus_subscribe() (against existing series) and in
 * bus_intern() (a new series against the live subscriptions), which leaves
 * bus_publish() with a bounds check, win_push(), a counter and one indirect
 * call per subscriber.
 *
 * Callbacks may intern, publish to other series, subscribe and unsubscribe.
 * While any callback runs (bus.depth > 0) a subscription that is removed is
 * silenced and parked; it leaves the series' arrays, which the dispatch
 * loops index, when the outermost callback returns (bus_leave()).
 */
#include "bus.h"

#include <assert.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Series live in fixed-size chunks that never move, so ids stay dense, a
 * struct win * from bus_window() stays valid, and the chunk table (a few
 * hundred pointers at most) stays in cache on the publish path. */
#define BUS_CHUNK_SHIFT 10
#define BUS_CHUNK (1u << BUS_CHUNK_SHIFT)

/* Upper bound for max_series: keeps the hash table size in 32 bits. */
#define BUS_SERIES_LIMIT (1u << 30)
#define BUS_TABLE_MIN 64
#define BUS_NONE UINT32_MAX

/* The longest canonical key: name{k="v",...} with every value byte
 * escaped, plus the NUL. Validation guarantees that keys fit. */
#define BUS_KEY_SIZE                                                           \
    (VIGIL_NAME_MAX + 2 +                                                      \
     VIGIL_LABELS_MAX * (VIGIL_LABEL_KEY_MAX + 4 + 2 * VIGIL_LABEL_VALUE_MAX))

/* Subscribers per series: a few live inside the series, so that one or two
 * subscribers cost no extra cache miss on publish; past that a heap array
 * takes over, up to BUS_SUBS_MAX. */
#define BUS_SUBS_INLINE 2
#define BUS_SUBS_MAX UINT16_MAX

struct bus_sub {
    /* What bus_publish() reads first, away from the 2.7 KB selector. */
    bus_sample_cb sample_cb;
    void *arg;
    bus_series_cb series_cb;
    /* Live subscriptions in subscription order; next also links the
     * subscriptions waiting to be freed (bus.dead). */
    struct bus_sub *prev, *next;
    /* The series whose lists hold this subscription, so that
     * unsubscribing does not scan every series. At most max_series. */
    vigil_series_id *ids;
    uint32_t nids, ids_cap;
    int dead;
    struct bus_selector sel;
};

/* 64 bytes in 64-byte aligned chunks: everything bus_publish() touches,
 * up to BUS_SUBS_INLINE subscribers included, is in one cache line. */
struct bus_series {
    struct win win;
    uint16_t nsubs;
    uint16_t subs_cap;
    uint16_t nlabels;
    uint16_t key_off;      /* the key is at (char *)labels + key_off */
    struct bus_sub **subs; /* inl, or a heap array once that is full */
    struct bus_sub *inl[BUS_SUBS_INLINE];
    /* One allocation: labels[nlabels], then the name, the key and the
     * label strings. */
    struct vigil_label *labels;
};
_Static_assert(sizeof(void *) != 8 || sizeof(struct bus_series) == 64,
               "struct bus_series should fill one cache line");

struct bus_slot {
    uint32_t hash;
    uint32_t id1; /* id + 1; 0 marks an empty slot */
};

struct bus {
    /* Publish path. */
    struct bus_series **chunks;
    uint32_t nseries;
    unsigned depth;       /* callbacks in progress */
    struct bus_sub *dead; /* unsubscribed while depth > 0 */
    uint64_t samples_total;
    /* Registry. */
    struct bus_slot *table;
    size_t table_mask; /* slots - 1; slots a power of two */
    struct bus_sub *subs_head, *subs_tail;
    double *scratch;
    uint32_t scratch_cap; /* >= every window's capacity */
    struct bus_limits lim;
};

/* The defaults of bus.h. Does not fail. */
void bus_limits_default(struct bus_limits *lim)
{
    lim->max_series = 100000;
    lim->window_default = 120;
    lim->window_max = 100000;
}

static inline struct bus_series *bus_series_at(const struct bus *bus,
                                               vigil_series_id id)
{
    return &bus->chunks[id >> BUS_CHUNK_SHIFT][id & (BUS_CHUNK - 1)];
}

/* ------------------------------------------------------------ validation */

static int bus_is_alpha(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static int bus_is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static int bus_is_ctrl(int c)
{
    return (c >= 0 && c < 0x20) || c == 0x7f;
}

/* Describe a byte for a message: 'x' when printable, 0x0a otherwise. */
static const char *bus_byte_desc(unsigned char c, char *buf, size_t size)
{
    if (bus_is_ctrl(c) || c >= 0x80) {
        snprintf(buf, size, "byte 0x%02x", c);
    } else {
        snprintf(buf, size, "'%c'", c);
    }
    return buf;
}

/* Check an identifier: [A-Za-z_] then [A-Za-z0-9_] (and '.' when dots is
 * set), shorter than max. what names it in the message ("series name",
 * "series 'm': label key"). */
static int bus_check_ident(const char *s, size_t max, int dots,
                           const char *what, struct vigil_err *err)
{
    char desc[16];
    size_t len;

    if (s == NULL || s[0] == '\0') {
        return err_set(err, VIGIL_EINVAL, "%s is empty", what);
    }
    len = strnlen(s, max);
    if (len >= max) {
        return err_set(err, VIGIL_EINVAL,
                       "%s '%.40s...' is longer than %zu bytes", what, s,
                       max - 1);
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (bus_is_alpha(c) || (i > 0 && bus_is_digit(c)) ||
            (i > 0 && dots && c == '.')) {
            continue;
        }
        return err_set(
            err, VIGIL_EINVAL,
            "%s '%s': %s at position %zu is not allowed (expected %s)", what, s,
            bus_byte_desc(c, desc, sizeof(desc)), i + 1,
            dots ? "[A-Za-z_][A-Za-z0-9_.]*" : "[A-Za-z_][A-Za-z0-9_]*");
    }
    return 0;
}

static int bus_check_value(const char *name, const char *key, const char *v,
                           struct vigil_err *err)
{
    char desc[16];
    size_t len;

    if (v == NULL) {
        return err_set(err, VIGIL_EINVAL,
                       "series '%s': label '%s' has no value", name, key);
    }
    len = strnlen(v, VIGIL_LABEL_VALUE_MAX);
    if (len >= VIGIL_LABEL_VALUE_MAX) {
        return err_set(err, VIGIL_EINVAL,
                       "series '%s': label '%s' value is longer than %d bytes",
                       name, key, VIGIL_LABEL_VALUE_MAX - 1);
    }
    for (size_t i = 0; i < len; i++) {
        if (bus_is_ctrl((unsigned char)v[i])) {
            return err_set(
                err, VIGIL_EINVAL,
                "series '%s': label '%s' value has %s at position %zu", name,
                key, bus_byte_desc((unsigned char)v[i], desc, sizeof(desc)),
                i + 1);
        }
    }
    return 0;
}

/*
 * Validate name and labels and sort the labels by key into sorted[];
 * *n becomes the number kept. A label with an empty value is dropped: a
 * selector cannot tell it from an absent label (as in Prometheus), so
 * keeping it would make two series that nothing can tell apart.
 */
static int bus_check_series(const char *name, const struct vigil_label *labels,
                            size_t *n, const struct vigil_label **sorted,
                            struct vigil_err *err)
{
    char what[VIGIL_NAME_MAX + 32];
    size_t kept = 0;
    int rc;

    rc = bus_check_ident(name, VIGIL_NAME_MAX, 1, "series name", err);
    if (rc != 0) {
        return rc;
    }
    if (*n > VIGIL_LABELS_MAX) {
        return err_set(err, VIGIL_EINVAL,
                       "series '%s': %zu labels, at most %d allowed", name, *n,
                       VIGIL_LABELS_MAX);
    }
    if (*n > 0 && labels == NULL) {
        return err_set(err, VIGIL_EINVAL, "series '%s': labels missing", name);
    }
    snprintf(what, sizeof(what), "series '%s': label key", name);
    for (size_t i = 0; i < *n; i++) {
        size_t j;

        rc = bus_check_ident(labels[i].key, VIGIL_LABEL_KEY_MAX, 0, what, err);
        if (rc != 0) {
            return rc;
        }
        rc = bus_check_value(name, labels[i].key, labels[i].value, err);
        if (rc != 0) {
            return rc;
        }
        /* Insertion sort: at most VIGIL_LABELS_MAX entries. */
        for (j = i; j > 0 && strcmp(sorted[j - 1]->key, labels[i].key) > 0;
             j--) {
            sorted[j] = sorted[j - 1];
        }
        sorted[j] = &labels[i];
    }
    for (size_t i = 0; i < *n; i++) {
        if (i > 0 && strcmp(sorted[i - 1]->key, sorted[i]->key) == 0) {
            return err_set(err, VIGIL_EINVAL,
                           "series '%s': duplicate label key '%s'", name,
                           sorted[i]->key);
        }
    }
    for (size_t i = 0; i < *n; i++) {
        if (sorted[i]->value[0] != '\0') {
            sorted[kept++] = sorted[i];
        }
    }
    *n = kept;
    return 0;
}

/* Write the canonical key into buf (BUS_KEY_SIZE bytes); returns its
 * length. Inputs are validated, so it fits. */
static size_t bus_key_build(char *buf, const char *name,
                            const struct vigil_label *const *l, size_t n)
{
    size_t len = strlen(name);

    memcpy(buf, name, len);
    if (n > 0) {
        buf[len++] = '{';
        for (size_t i = 0; i < n; i++) {
            size_t klen = strlen(l[i]->key);

            if (i > 0) {
                buf[len++] = ',';
            }
            memcpy(buf + len, l[i]->key, klen);
            len += klen;
            buf[len++] = '=';
            buf[len++] = '"';
            for (const char *v = l[i]->value; *v != '\0'; v++) {
                if (*v == '"' || *v == '\\') {
                    buf[len++] = '\\';
                }
                buf[len++] = *v;
            }
            buf[len++] = '"';
        }
        buf[len++] = '}';
    }
    assert(len < BUS_KEY_SIZE);
    buf[len] = '\0';
    return len;
}

/* FNV-1a, folded to 32 bits. Keys are short and interning is rare. */
static uint32_t bus_hash(const char *s, size_t len)
{
    uint64_t h = 14695981039346656037ull;

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return (uint32_t)(h ^ (h >> 32));
}

/* ------------------------------------------------------------- registry */

static const char *bus_key_of(const struct bus_series *s)
{
    return (const char *)s->labels + s->key_off;
}

/* The id of key, or BUS_NONE; *slot gets the empty slot where key would
 * go. */
static uint32_t bus_lookup(const struct bus *bus, const char *key,
                           uint32_t hash, size_t *slot)
{
    size_t i = hash & bus->table_mask;

    for (;;) {
        const struct bus_slot *e = &bus->table[i];

        if (e->id1 == 0) {
            *slot = i;
            return BUS_NONE;
        }
        if (e->hash == hash &&
            strcmp(bus_key_of(bus_series_at(bus, e->id1 - 1)), key) == 0) {
            return e->id1 - 1;
        }
        i = (i + 1) & bus->table_mask;
    }
}

/* Keep the table at most half full for one more series. */
static int bus_table_reserve(struct bus *bus)
{
    size_t slots = bus->table_mask + 1, nslots = slots * 2;
    struct bus_slot *t;

    if (((size_t)bus->nseries + 1) * 2 <= slots) {
        return 0;
    }
    t = calloc(nslots, sizeof(*t));
    if (t == NULL) {
        return VIGIL_ENOMEM;
    }
    for (size_t i = 0; i < slots; i++) {
        size_t j;

        if (bus->table[i].id1 == 0) {
            continue;
        }
        j = bus->table[i].hash & (nslots - 1);
        while (t[j].id1 != 0) {
            j = (j + 1) & (nslots - 1);
        }
        t[j] = bus->table[i];
    }
    free(bus->table);
    bus->table = t;
    bus->table_mask = nslots - 1;
    return 0;
}

/* Make sure the chunk that will hold series id exists. */
static int bus_chunk_reserve(struct bus *bus, vigil_series_id id)
{
    struct bus_series **c = &bus->chunks[id >> BUS_CHUNK_SHIFT];
    size_t size = BUS_CHUNK * sizeof(**c);

    if (*c != NULL) {
        return 0;
    }
    *c = aligned_alloc(64, size);
    if (*c == NULL) {
        return VIGIL_ENOMEM;
    }
    memset(*c, 0, size);
    return 0;
}

/* Release what a series owns, leaving it zeroed; accepts a partly built
 * one. Does not fail. */
static void bus_series_fini(struct bus_series *s)
{
    win_fini(&s->win);
    if (s->subs != s->inl) {
        free(s->subs);
    }
    free(s->labels);
    memset(s, 0, sizeof(*s));
}

/* Copy len bytes of str and a NUL to p, which the caller sized; returns
 * the byte after the NUL. */
static char *bus_put(char *p, const char *str, size_t len)
{
    memcpy(p, str, len);
    p[len] = '\0';
    return p + len + 1;
}

/* Fill a zeroed series: the single allocation for its strings, then the
 * window. On failure the caller runs bus_series_fini(). */
static int bus_series_init(struct bus *bus, struct bus_series *s,
                           const char *name, const struct vigil_label *const *l,
                           size_t n, const char *key, size_t keylen)
{
    size_t size =
        n * sizeof(struct vigil_label) + strlen(name) + 1 + keylen + 1;
    char *p;

    for (size_t i = 0; i < n; i++) {
        size += strlen(l[i]->key) + strlen(l[i]->value) + 2;
    }
    s->labels = malloc(size);
    if (s->labels == NULL) {
        return VIGIL_ENOMEM;
    }
    s->nlabels = (uint16_t)n;
    p = bus_put((char *)(s->labels + n), name, strlen(name));
    s->key_off = (uint16_t)(p - (char *)s->labels);
    p = bus_put(p, key, keylen);
    for (size_t i = 0; i < n; i++) {
        s->labels[i].key = p;
        p = bus_put(p, l[i]->key, strlen(l[i]->key));
        s->labels[i].value = p;
        p = bus_put(p, l[i]->value, strlen(l[i]->value));
    }
    s->subs = s->inl; /* the series never moves: chunks are fixed */
    s->subs_cap = BUS_SUBS_INLINE;
    return win_init(&s->win, bus->lim.window_default);
}

/* Check the limits, then allocate the chunk table (sized for max_series),
 * a small hash table and the scratch for window_default samples. Returns 0,
 * VIGIL_EINVAL for inconsistent limits, or VIGIL_ENOMEM. */
int bus_create(const struct bus_limits *lim, struct bus **out)
{
    struct bus *bus;
    size_t nchunks;
    int rc = VIGIL_ENOMEM;

    *out = NULL;
    bus = calloc(1, sizeof(*bus));
    if (bus == NULL) {
        return VIGIL_ENOMEM;
    }
    if (lim != NULL) {
        bus->lim = *lim;
    } else {
        bus_limits_default(&bus->lim);
    }
    if (bus->lim.max_series == 0 || bus->lim.max_series > BUS_SERIES_LIMIT ||
        bus->lim.window_default == 0 ||
        bus->lim.window_max < bus->lim.window_default) {
        rc = VIGIL_EINVAL;
        goto out;
    }
    nchunks = (bus->lim.max_series + BUS_CHUNK - 1) >> BUS_CHUNK_SHIFT;
    bus->chunks = calloc(nchunks, sizeof(*bus->chunks));
    bus->table = calloc(BUS_TABLE_MIN, sizeof(*bus->table));
    bus->table_mask = BUS_TABLE_MIN - 1;
    bus->scratch = malloc(bus->lim.window_default * sizeof(*bus->scratch));
    bus->scratch_cap = bus->lim.window_default;
    if (bus->chunks == NULL || bus->table == NULL || bus->scratch == NULL) {
        goto out;
    }
    *out = bus;
    bus = NULL;
    rc = 0;
out:
    bus_destroy(bus);
    return rc;
}

static void bus_sub_free(struct bus_sub *sub)
{
    free(sub->ids);
    free(sub);
}

/* Free the subscriptions (live and parked), every series and the bus.
 * Accepts NULL and a half-built bus. Does not fail. */
void bus_destroy(struct bus *bus)
{
    struct bus_sub *sub, *next;

    if (bus == NULL) {
        return;
    }
    for (sub = bus->subs_head; sub != NULL; sub = next) {
        next = sub->next;
        bus_sub_free(sub);
    }
    for (sub = bus->dead; sub != NULL; sub = next) {
        next = sub->next;
        bus_sub_free(sub);
    }
    for (uint32_t id = 0; id < bus->nseries; id++) {
        bus_series_fini(bus_series_at(bus, id));
    }
    if (bus->chunks != NULL) {
        size_t nchunks =
            (bus->lim.max_series + BUS_CHUNK - 1) >> BUS_CHUNK_SHIFT;

        for (size_t i = 0; i < nchunks; i++) {
            free(bus->chunks[i]);
        }
    }
    free(bus->chunks);
    free(bus->table);
    free(bus->scratch);
    free(bus);
}

/* ---------------------------------------------------------- subscribers */

static const char *bus_label_value(const struct bus_series *s, const char *key)
{
    for (uint32_t i = 0; i < s->nlabels; i++) {
        int c = strcmp(s->labels[i].key, key);

        if (c == 0) {
            return s->labels[i].value;
        }
        if (c > 0) {
            break; /* sorted: it is not there */
        }
    }
    return "";
}

static int bus_series_matches(const struct bus_series *s,
                              const struct bus_selector *sel)
{
    const char *name = (const char *)(s->labels + s->nlabels);

    if (fnmatch(sel->name, name, 0) != 0) {
        return 0;
    }
    for (unsigned i = 0; i < sel->n; i++) {
        int hit =
            fnmatch(sel->m[i].value, bus_label_value(s, sel->m[i].key), 0) == 0;

        if (hit == !!sel->m[i].negate) {
            return 0;
        }
    }
    return 1;
}

/* Stands in for a missing sample_cb and for a subscription that was
 * removed while callbacks run, so that publishing never tests for it. */
static void bus_sample_nop(void *arg, vigil_series_id id, int64_t ts, double v)
{
    (void)arg;
    (void)id;
    (void)ts;
    (void)v;
}

/* Add sub to series id's list and id to sub's: both or neither. Returns
 * 0, VIGIL_ENOMEM or VIGIL_ELIMIT (BUS_SUBS_MAX subscribers already). */
static int bus_attach(struct bus *bus, struct bus_series *s,
                      struct bus_sub *sub, vigil_series_id id)
{
    if (s->nsubs == s->subs_cap) {
        uint32_t cap = s->subs_cap * 2u;
        struct bus_sub **p;

        if (s->subs_cap == BUS_SUBS_MAX) {
            return VIGIL_ELIMIT;
        }
        cap = cap > BUS_SUBS_MAX ? BUS_SUBS_MAX : cap;
        p = malloc(cap * sizeof(*p));
        if (p == NULL) {
            return VIGIL_ENOMEM;
        }
        memcpy(p, s->subs, s->nsubs * sizeof(*p));
        if (s->subs != s->inl) {
            free(s->subs);
        }
        s->subs = p;
        s->subs_cap = (uint16_t)cap;
    }
    if (sub->nids == sub->ids_cap) {
        uint32_t cap = sub->ids_cap ? sub->ids_cap * 2 : 8;
        vigil_series_id *p;

        if (cap > bus->lim.max_series) {
            cap = bus->lim.max_series;
        }
        p = realloc(sub->ids, cap * sizeof(*p));
        if (p == NULL) {
            return VIGIL_ENOMEM;
        }
        sub->ids = p;
        sub->ids_cap = cap;
    }
    s->subs[s->nsubs++] = sub;
    sub->ids[sub->nids++] = id;
    return 0;
}

/* Remove sub from the list of every series it is in. Only when no
 * callback runs: dispatch loops index those lists. */
static void bus_detach(struct bus *bus, struct bus_sub *sub)
{
    assert(bus->depth == 0);
    for (uint32_t k = 0; k < sub->nids; k++) {
        struct bus_series *s = bus_series_at(bus, sub->ids[k]);

        for (uint32_t i = 0; i < s->nsubs; i++) {
            if (s->subs[i] == sub) {
                memmove(&s->subs[i], &s->subs[i + 1],
                        (s->nsubs - i - 1) * sizeof(*s->subs));
                s->nsubs--;
                break;
            }
        }
    }
    sub->nids = 0;
}

/* Leave a callback section; the outermost one frees the subscriptions
 * removed meanwhile. */
static void bus_leave(struct bus *bus)
{
    if (--bus->depth > 0) {
        return;
    }
    while (bus->dead != NULL) {
        struct bus_sub *sub = bus->dead;

        bus->dead = sub->next;
        bus_detach(bus, sub);
        bus_sub_free(sub);
    }
}

/* Validate, build the key on the stack, look it up; only a new series
 * allocates. Its matching subscriptions are attached before it becomes
 * visible and told about it (series_cb) after. */
int bus_intern(struct bus *bus, const char *name,
               const struct vigil_label *labels, size_t n, vigil_series_id *out,
               struct vigil_err *err)
{
    const struct vigil_label *sorted[VIGIL_LABELS_MAX];
    char key[BUS_KEY_SIZE];
    struct bus_series *s;
    struct bus_sub *sub;
    size_t keylen, slot;
    uint32_t hash, id, nsubs;
    int rc;

    rc = bus_check_series(name, labels, &n, sorted, err);
    if (rc != 0) {
        return rc;
    }
    keylen = bus_key_build(key, name, sorted, n);
    hash = bus_hash(key, keylen);
    id = bus_lookup(bus, key, hash, &slot);
    if (id != BUS_NONE) {
        *out = id;
        return 0;
    }
    id = bus->nseries;
    if (id >= bus->lim.max_series) {
        return err_set(err, VIGIL_ELIMIT,
                       "series limit reached: %u series exist (max_series = "
                       "%u); cannot add %.200s",
                       id, bus->lim.max_series, key);
    }
    if (bus_table_reserve(bus) != 0 || bus_chunk_reserve(bus, id) != 0) {
        return err_set(err, VIGIL_ENOMEM, "out of memory adding series %.200s",
                       key);
    }
    bus_lookup(bus, key, hash, &slot); /* the table may have grown */
    s = bus_series_at(bus, id);
    rc = bus_series_init(bus, s, name, sorted, n, key, keylen);
    /* Resolve patterns now, so that publishing never has to. */
    for (sub = bus->subs_head; sub != NULL && rc == 0; sub = sub->next) {
        if (bus_series_matches(s, &sub->sel)) {
            rc = bus_attach(bus, s, sub, id);
        }
    }
    if (rc != 0) {
        /* Each sub in the list got id appended last; take it back. */
        for (uint32_t i = 0; i < s->nsubs; i++) {
            s->subs[i]->nids--;
        }
        bus_series_fini(s);
        if (rc == VIGIL_ELIMIT) {
            return err_set(err, rc, "more than %u subscriptions match %.200s",
                           BUS_SUBS_MAX, key);
        }
        return err_set(err, rc, "out of memory adding series %.200s", key);
    }
    bus->table[slot].hash = hash;
    bus->table[slot].id1 = id + 1;
    bus->nseries++;
    *out = id;

    /* The series is complete: callbacks may use it, intern more series or
     * (un)subscribe. Removals wait for bus_leave(), so indices hold. */
    nsubs = s->nsubs;
    bus->depth++;
    for (uint32_t i = 0; i < nsubs; i++) {
        sub = s->subs[i];
        if (sub->series_cb != NULL) { /* NULL once unsubscribed, too */
            sub->series_cb(sub->arg, id);
        }
    }
    bus_leave(bus);
    return 0;
}

/* Like bus_intern() without creating: 0 or VIGIL_ENOENT. */
int bus_find(const struct bus *bus, const char *name,
             const struct vigil_label *labels, size_t n, vigil_series_id *out)
{
    const struct vigil_label *sorted[VIGIL_LABELS_MAX];
    char key[BUS_KEY_SIZE];
    size_t keylen, slot;
    uint32_t id;

    /* What cannot be interned does not exist. */
    if (bus_check_series(name, labels, &n, sorted, NULL) != 0) {
        return VIGIL_ENOENT;
    }
    keylen = bus_key_build(key, name, sorted, n);
    id = bus_lookup(bus, key, bus_hash(key, keylen), &slot);
    if (id == BUS_NONE) {
        return VIGIL_ENOENT;
    }
    *out = id;
    return 0;
}

/* The per-sample path: no allocation, no matching. Does not fail. */
void bus_publish(struct bus *bus, vigil_series_id id, int64_t ts, double v)
{
    struct bus_series *s;
    uint32_t n;

    if (id >= bus->nseries) {
        return;
    }
    s = bus_series_at(bus, id);
    win_push(&s->win, ts, v);
    bus->samples_total++;
    n = s->nsubs;
    if (n == 0) {
        return;
    }
    /* s->subs is read afresh each time: a callback that subscribes may
     * move it. Subscribers added meanwhile wait for the next sample. */
    bus->depth++;
    for (uint32_t i = 0; i < n; i++) {
        struct bus_sub *sub = s->subs[i];

        sub->sample_cb(sub->arg, id, ts, v);
    }
    bus_leave(bus);
}

/* Number of series; ids are 0 .. count - 1. Does not fail. */
uint32_t bus_series_count(const struct bus *bus)
{
    return bus->nseries;
}

/* Borrowed for the life of the bus; NULL for an unknown id. */
const char *bus_series_name(const struct bus *bus, vigil_series_id id)
{
    const struct bus_series *s;

    if (id >= bus->nseries) {
        return NULL;
    }
    s = bus_series_at(bus, id);
    return (const char *)(s->labels + s->nlabels);
}

/* Borrowed for the life of the bus; NULL and *n = 0 for an unknown id. */
const struct vigil_label *bus_series_labels(const struct bus *bus,
                                            vigil_series_id id, size_t *n)
{
    const struct bus_series *s;

    if (id >= bus->nseries) {
        *n = 0;
        return NULL;
    }
    s = bus_series_at(bus, id);
    *n = s->nlabels;
    return s->labels;
}

/* Borrowed for the life of the bus; NULL for an unknown id. */
const char *bus_series_key(const struct bus *bus, vigil_series_id id)
{
    return id < bus->nseries ? bus_key_of(bus_series_at(bus, id)) : NULL;
}

/* The series' window (its address is stable; its buffer moves on
 * bus_reserve()). NULL for an unknown id. */
const struct win *bus_window(const struct bus *bus, vigil_series_id id)
{
    return id < bus->nseries ? &bus_series_at(bus, id)->win : NULL;
}

/* Returns 0, VIGIL_ENOENT for an unknown id, or VIGIL_ENOMEM with the
 * window unchanged. */
int bus_reserve(struct bus *bus, vigil_series_id id, uint32_t cap)
{
    struct win *w;

    if (id >= bus->nseries) {
        return VIGIL_ENOENT;
    }
    w = &bus_series_at(bus, id)->win;
    if (cap > bus->lim.window_max) {
        cap = bus->lim.window_max;
    }
    if (cap <= w->cap) {
        return 0;
    }
    /* Scratch first: it must cover every window before bus_stat() can
     * see this one, and a bigger scratch alone does no harm. */
    if (cap > bus->scratch_cap) {
        double *p = realloc(bus->scratch, cap * sizeof(*p));

        if (p == NULL) {
            return VIGIL_ENOMEM;
        }
        bus->scratch = p;
        bus->scratch_cap = cap;
    }
    return win_resize(w, cap);
}

/* win_stat() with the bus' scratch, which covers every window. Returns as
 * win_stat(), or VIGIL_ENOENT for an unknown id. */
int bus_stat(struct bus *bus, vigil_series_id id, struct win_stat st,
             int64_t now, int64_t span_ns, double *out)
{
    if (id >= bus->nseries) {
        return VIGIL_ENOENT;
    }
    return win_stat(&bus_series_at(bus, id)->win, st, now, span_ns,
                    bus->scratch, out);
}

/* 1 if the series matches, 0 if not or the id is unknown. */
int bus_match(const struct bus *bus, vigil_series_id id,
              const struct bus_selector *sel)
{
    if (id >= bus->nseries) {
        return 0;
    }
    return bus_series_matches(bus_series_at(bus, id), sel);
}

/* A selector filled by hand rather than by bus_selector_parse() must still
 * hold terminated strings and a sane count. */
static int bus_selector_ok(const struct bus_selector *sel)
{
    if (sel->n > BUS_MATCHERS_MAX ||
        memchr(sel->name, '\0', sizeof(sel->name)) == NULL) {
        return 0;
    }
    for (unsigned i = 0; i < sel->n; i++) {
        if (memchr(sel->m[i].key, '\0', sizeof(sel->m[i].key)) == NULL ||
            memchr(sel->m[i].value, '\0', sizeof(sel->m[i].value)) == NULL) {
            return 0;
        }
    }
    return 1;
}

/* Returns 0; VIGIL_ENOMEM, or VIGIL_ELIMIT if a series already has
 * BUS_SUBS_MAX subscribers (nothing subscribed, nobody called); or
 * VIGIL_EINVAL for a hand-made selector with unterminated strings or too
 * many matchers. A NULL sample_cb subscribes to series creation only. */
int bus_subscribe(struct bus *bus, const struct bus_selector *sel,
                  bus_sample_cb sample_cb, bus_series_cb series_cb, void *arg,
                  struct bus_sub **out)
{
    struct bus_sub *sub;
    uint32_t n;
    int rc;

    *out = NULL;
    if (!bus_selector_ok(sel)) {
        return VIGIL_EINVAL;
    }
    sub = calloc(1, sizeof(*sub));
    if (sub == NULL) {
        return VIGIL_ENOMEM;
    }
    sub->sel = *sel;
    sub->sample_cb = sample_cb != NULL ? sample_cb : bus_sample_nop;
    sub->series_cb = series_cb;
    sub->arg = arg;
    sub->prev = bus->subs_tail;
    if (bus->subs_tail != NULL) {
        bus->subs_tail->next = sub;
    } else {
        bus->subs_head = sub;
    }
    bus->subs_tail = sub;

    /* Attach to every matching series first, calling nobody, so that a
     * failure leaves no subscriber that has been told about series. */
    n = bus->nseries;
    for (uint32_t id = 0; id < n; id++) {
        struct bus_series *s = bus_series_at(bus, id);

        if (!bus_series_matches(s, &sub->sel)) {
            continue;
        }
        rc = bus_attach(bus, s, sub, id);
        if (rc != 0) {
            bus_unsubscribe(bus, sub);
            return rc;
        }
    }
    *out = sub;
    if (series_cb == NULL) {
        return 0;
    }
    /* Series interned by these callbacks are appended to sub->ids and
     * announced by bus_intern(); stop at the ones found here. */
    n = sub->nids;
    bus->depth++;
    for (uint32_t i = 0; i < n && !sub->dead; i++) {
        series_cb(arg, sub->ids[i]);
    }
    bus_leave(bus);
    return 0;
}

/* Stop both callbacks now; free at once, or when the outermost running
 * callback returns. Accepts NULL. Does not fail. */
void bus_unsubscribe(struct bus *bus, struct bus_sub *sub)
{
    if (sub == NULL || sub->dead) {
        return;
    }
    if (sub->prev != NULL) {
        sub->prev->next = sub->next;
    } else {
        bus->subs_head = sub->next;
    }
    if (sub->next != NULL) {
        sub->next->prev = sub->prev;
    } else {
        bus->subs_tail = sub->prev;
    }
    sub->prev = NULL;
    sub->next = NULL;
    if (bus->depth == 0) {
        bus_detach(bus, sub);
        bus_sub_free(sub);
        return;
    }
    /* A callback is running and may be walking a list that holds sub:
     * silence it now and free it when the outermost callback returns. */
    sub->dead = 1;
    sub->sample_cb = bus_sample_nop;
    sub->series_cb = NULL;
    sub->next = bus->dead;
    bus->dead = sub;
}

/* Samples stored (unknown ids are not counted). Does not fail. */
uint64_t bus_samples_total(const struct bus *bus)
{
    return bus->samples_total;
}

/* ------------------------------------------------------------ selectors */

struct bus_parse {
    const char *text;
    const char *p;
    struct vigil_err *err;
};

static int bus_parse_fail(struct bus_parse *ps, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Report a syntax error at the cursor: "selector 'x{': expected '}' at
 * column 3" (columns count bytes from 1). */
static int bus_parse_fail(struct bus_parse *ps, const char *fmt, ...)
{
    char what[160];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return err_set(ps->err, VIGIL_EINVAL, "selector '%.200s': %s at column %zu",
                   ps->text, what, (size_t)(ps->p - ps->text) + 1);
}

static void bus_parse_space(struct bus_parse *ps)
{
    while (*ps->p == ' ' || *ps->p == '\t') {
        ps->p++;
    }
}

/* Characters that end a bare glob (the metric name or an unquoted
 * value). */
static int bus_parse_stop(int c)
{
    return c == '\0' || c == '{' || c == '}' || c == ',' || c == '"' ||
           c == '=' || c == ' ' || c == '\t' || bus_is_ctrl(c);
}

/* A label value: "quoted" (\" and \\ stand for " and \; other
 * backslashes stay, so \* still escapes a glob character) or bare, which
 * may be empty. */
static int bus_parse_value(struct bus_parse *ps, char *out)
{
    const char *open = ps->p;
    size_t len = 0;

    if (*ps->p != '"') {
        while (!bus_parse_stop((unsigned char)*ps->p) || *ps->p == '=') {
            if (len == VIGIL_LABEL_VALUE_MAX - 1) {
                return bus_parse_fail(ps, "value longer than %d bytes",
                                      VIGIL_LABEL_VALUE_MAX - 1);
            }
            out[len++] = *ps->p++;
        }
        out[len] = '\0';
        return 0;
    }
    ps->p++;
    for (;;) {
        char c = *ps->p;

        if (c == '\0' || (c == '\\' && ps->p[1] == '\0')) {
            ps->p = open;
            return bus_parse_fail(ps, "unterminated quoted value");
        }
        if (c == '"') {
            ps->p++;
            break;
        }
        if (bus_is_ctrl((unsigned char)c)) {
            return bus_parse_fail(ps, "control character in value");
        }
        if (len == VIGIL_LABEL_VALUE_MAX - 1) {
            return bus_parse_fail(ps, "value longer than %d bytes",
                                  VIGIL_LABEL_VALUE_MAX - 1);
        }
        if (c == '\\' && (ps->p[1] == '"' || ps->p[1] == '\\')) {
            ps->p++;
            c = *ps->p;
        }
        out[len++] = c;
        ps->p++;
    }
    out[len] = '\0';
    return 0;
}

static int bus_parse_matcher(struct bus_parse *ps, struct bus_selector *sel)
{
    const char *start = ps->p;
    size_t len;

    if (!bus_is_alpha((unsigned char)*ps->p)) {
        return bus_parse_fail(ps, "expected a label key");
    }
    while (bus_is_alpha((unsigned char)*ps->p) ||
           bus_is_digit((unsigned char)*ps->p)) {
        ps->p++;
    }
    len = (size_t)(ps->p - start);
    if (len >= VIGIL_LABEL_KEY_MAX) {
        ps->p = start;
        return bus_parse_fail(ps, "label key longer than %d bytes",
                              VIGIL_LABEL_KEY_MAX - 1);
    }
    memcpy(sel->m[sel->n].key, start, len);
    sel->m[sel->n].key[len] = '\0';
    bus_parse_space(ps);
    if (ps->p[0] == '=') {
        ps->p++;
    } else if (ps->p[0] == '!' && ps->p[1] == '=') {
        sel->m[sel->n].negate = 1;
        ps->p += 2;
    } else {
        return bus_parse_fail(ps, "expected '=' or '!='");
    }
    bus_parse_space(ps);
    if (bus_parse_value(ps, sel->m[sel->n].value) != 0) {
        return VIGIL_EINVAL;
    }
    sel->n++;
    return 0;
}

/* Grammar: name-glob [ '{' [ matcher { ',' matcher } [ ',' ] ] '}' ],
 * matcher: key ( '=' | '!=' ) value; blanks allowed between tokens. */
int bus_selector_parse(const char *text, struct bus_selector *sel,
                       struct vigil_err *err)
{
    struct bus_parse ps = {text, text, err};
    const char *start;
    size_t len;
    int rc = VIGIL_EINVAL;

    memset(sel, 0, sizeof(*sel));
    bus_parse_space(&ps);
    start = ps.p;
    while (!bus_parse_stop((unsigned char)*ps.p)) {
        ps.p++;
    }
    len = (size_t)(ps.p - start);
    if (len == 0) {
        bus_parse_fail(&ps, "expected a metric name");
        goto out;
    }
    if (len >= VIGIL_NAME_MAX) {
        ps.p = start;
        bus_parse_fail(&ps, "metric name longer than %d bytes",
                       VIGIL_NAME_MAX - 1);
        goto out;
    }
    memcpy(sel->name, start, len);
    bus_parse_space(&ps);
    if (*ps.p == '{') {
        ps.p++;
        for (;;) {
            bus_parse_space(&ps);
            if (*ps.p == '}') {
                break;
            }
            if (*ps.p == '\0') {
                bus_parse_fail(&ps, "expected '}'");
                goto out;
            }
            if (sel->n == BUS_MATCHERS_MAX) {
                bus_parse_fail(&ps, "more than %d label matchers",
                               BUS_MATCHERS_MAX);
                goto out;
            }
            if (bus_parse_matcher(&ps, sel) != 0) {
                goto out;
            }
            bus_parse_space(&ps);
            if (*ps.p == ',') {
                ps.p++;
            } else if (*ps.p != '}') {
                bus_parse_fail(&ps, "expected ',' or '}'");
                goto out;
            }
        }
        ps.p++;
        bus_parse_space(&ps);
    }
    if (*ps.p != '\0') {
        char desc[16];

        bus_parse_fail(&ps, "unexpected %s",
                       bus_byte_desc((unsigned char)*ps.p, desc, sizeof(desc)));
        goto out;
    }
    rc = 0;
out:
    if (rc != 0) {
        memset(sel, 0, sizeof(*sel));
    }
    return rc;
}
