/*
 * statsd_agg.c - the StatsD aggregation table (see statsd_agg.h).
 *
 * Layout: the slots themselves form an open-addressing hash table with
 * linear probing, kept at most half full: it starts small and doubles as
 * keys are added (an allocation only when a key is created), up to twice
 * max_series. Finding a line's key therefore reads one cache line, the
 * first of its slot, where the hash, the length and (for keys up to 39
 * bytes) the key itself are. Removal (expiry) shifts the following slots
 * of the cluster back, which keeps probing correct without tombstones.
 *
 * Flush epochs: every slot carries the number of the interval its
 * accumulator belongs to. statsd_agg_flush_begin() starts a new interval;
 * the steps then publish and reset every slot still in the old one. A
 * line for a slot the steps have not reached yet flushes that slot first,
 * so no value crosses into the wrong interval however long the steps
 * take, and the caller can spread them over loop turns.
 */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "statsd_agg.h"

/* Published series per key: timers have the most. */
#define STATSD_OUT_MAX (5 + STATSD_PCT_MAX)
/* A timer's reservoir and a set's table start this small and double. */
#define STATSD_BUF_MIN 16u
/* How often the "set too large" warning may repeat. */
#define STATSD_SET_WARN_NS (600 * INT64_C(1000000000))

/* Keys up to this long (with their zero padding) live in the slot. */
#define STATSD_IKEY 40
/* Slots the table starts with. */
#define STATSD_TABLE_MIN 64u

/*
 * One key. Laid out for the per-line path: a lookup reads the first cache
 * line only (hash, length, kind, epoch and the usual short key itself);
 * adding a value reads the second. Slots move when the table grows or a
 * key expires, so nothing points into them.
 */
struct statsd_slot {
    _Alignas(64) uint64_t hash;
    uint32_t klen;     /* 0: the slot is free */
    uint16_t name_len; /* the name part of the key */
    uint8_t kind;      /* enum statsd_kind */
    uint8_t refused;   /* the core refused a series: values are dropped */
    uint64_t epoch;    /* the interval the accumulator belongs to */
    union {
        char in[STATSD_IKEY]; /* klen < STATSD_IKEY */
        char *out;            /* longer keys */
    } k; /* the canonical key, followed by zero bytes (statsd_key_words) */

    /* The accumulator of the current interval. */
    double count; /* counter: sum of value/rate; timer: sum of 1/rate */
    double sum;   /* timer */
    double min;
    double max;
    double gauge; /* gauge: the value, kept across intervals */
    uint64_t n;   /* values received this interval */
    uint32_t cap; /* timer: reservoir size; set: table size */
    uint32_t fill;
    void *buf;       /* timer: double[cap]; set: uint64_t[cap] (0 = empty) */
    int64_t last_ns; /* start of the last interval that had data */
    uint8_t capped;  /* a set overflowed in this interval */

    vigil_series_id ids[STATSD_OUT_MAX];
};

static const char *statsd_slot_key(const struct statsd_slot *s)
{
    return s->klen < STATSD_IKEY ? s->k.in : s->k.out;
}

struct statsd_agg {
    struct statsd_agg_config cfg;
    const struct vigil_host *host;
    vigil_instance *inst;
    size_t prefix_len;
    size_t name_max[STATSD_NKINDS];

    struct statsd_slot *slots; /* the table: mask + 1 slots */
    size_t mask;
    size_t cap_max; /* the table's largest size */
    uint32_t nslots;

    uint64_t epoch;
    int64_t flush_ts;       /* time of the flush in progress */
    int64_t interval_start; /* wall ns the current interval started */
    int64_t flushed_start;  /* ... and the one being flushed */
    double elapsed_s;       /* length of the interval being flushed */
    size_t cursor;          /* next slot the flush steps look at */
    int64_t now_ns;         /* time for gauges of this batch; 0: unread */
    uint64_t rng;
    uint32_t capped_sets; /* sets that overflowed in this flush */
    int64_t set_warned_ns;

    struct statsd_line line;
    size_t klen;
    char key[STATSD_KEY_MAX + 16];
    char lbuf[STATSD_KEY_MAX + 16]; /* labels of a new key */
};

static const char *const statsd_counter_sfx[] = {".count", ".rate_per_s"};
static const char *const statsd_gauge_sfx[] = {""};
static const char *const statsd_timer_sfx[] = {".count", ".sum", ".min", ".max",
                                               ".mean"};
static const char *const statsd_set_sfx[] = {".unique"};
#define STATSD_NSFX(a) (sizeof(a) / sizeof((a)[0]))

/* Messages for a line whose type differs from its key's first one. */
static const char *const statsd_mismatch[STATSD_NKINDS] = {
    [STATSD_COUNTER] = "this name and tags were first sent as a counter",
    [STATSD_GAUGE] = "this name and tags were first sent as a gauge",
    [STATSD_TIMER] = "this name and tags were first sent as a timer",
    [STATSD_SET] = "this name and tags were first sent as a set",
};

/* ------------------------------------------------------------------------
 * Random numbers.
 */

/* xorshift64*: reservoir sampling and quickselect pivots. */
static uint64_t statsd_rand(struct statsd_agg *a)
{
    a->rng ^= a->rng >> 12;
    a->rng ^= a->rng << 25;
    a->rng ^= a->rng >> 27;
    return a->rng * UINT64_C(0x2545f4914f6cdd1d);
}

/* Uniform in [0, n), n > 0. */
static uint64_t statsd_rand_below(struct statsd_agg *a, uint64_t n)
{
    uint64_t r = statsd_rand(a);

    if (n <= UINT32_MAX) {
        return ((r >> 32) * n) >> 32;
    }
    return r % n;
}

/* ------------------------------------------------------------------------
 * Percentiles: quickselect with random pivots and three-way partitioning
 * (expected linear time whatever the values, duplicates included).
 */

static void statsd_swap(double *v, size_t i, size_t j)
{
    double t = v[i];

    v[i] = v[j];
    v[j] = t;
}

/* Reorder v[lo..hi) so that v[k] is the value of rank k and everything
 * after k is >= v[k]; return v[k]. */
static double statsd_select(struct statsd_agg *a, double *v, size_t lo,
                            size_t hi, size_t k)
{
    while (hi - lo > 16) {
        double p = v[lo + statsd_rand_below(a, hi - lo)];
        size_t lt = lo;
        size_t i = lo;
        size_t gt = hi;

        while (i < gt) {
            if (v[i] < p) {
                statsd_swap(v, lt++, i++);
            } else if (v[i] > p) {
                statsd_swap(v, i, --gt);
            } else {
                i++;
            }
        }
        if (k < lt) {
            hi = lt;
        } else if (k >= gt) {
            lo = gt;
        } else {
            return p;
        }
    }
    for (size_t i = lo + 1; i < hi; i++) {
        double x = v[i];
        size_t j = i;

        for (; j > lo && v[j - 1] > x; j--) {
            v[j] = v[j - 1];
        }
        v[j] = x;
    }
    return v[k];
}

/* ------------------------------------------------------------------------
 * The index.
 */

/* Keys are stored followed by zero bytes up to a multiple of 8 (at least
 * one), so that they are C strings and can be copied by words. */
static size_t statsd_key_words(size_t klen)
{
    return klen / 8 + 1;
}

/* Does the stored key equal key[0..klen)? Words, then the tail. */
static int statsd_key_equal(const char *stored, const char *key, size_t klen)
{
    size_t i = 0;

    for (; i + 8 <= klen; i += 8) {
        uint64_t x;
        uint64_t y;

        memcpy(&x, stored + i, 8);
        memcpy(&y, key + i, 8);
        if (x != y) {
            return 0;
        }
    }
    for (; i < klen; i++) {
        if (stored[i] != key[i]) {
            return 0;
        }
    }
    return 1;
}

/* Find key[0..klen) with hash h; *pos gets its slot or the free slot
 * where it would go. */
static struct statsd_slot *statsd_find(struct statsd_agg *a, uint64_t h,
                                       const char *key, size_t klen,
                                       size_t *pos)
{
    size_t i = (size_t)h & a->mask;

    for (;;) {
        struct statsd_slot *s = &a->slots[i];

        if (s->klen == 0) {
            *pos = i;
            return NULL;
        }
        if (s->hash == h && s->klen == klen &&
            statsd_key_equal(statsd_slot_key(s), key, klen)) {
            *pos = i;
            return s;
        }
        i = (i + 1) & a->mask;
    }
}

/* Free slot i and shift back the later slots of its cluster whose home is
 * not between the hole and themselves. */
static void statsd_remove(struct statsd_agg *a, size_t i)
{
    struct statsd_slot *s = &a->slots[i];
    size_t j;

    if (s->klen >= STATSD_IKEY) {
        free(s->k.out);
    }
    free(s->buf);
    for (j = (i + 1) & a->mask; a->slots[j].klen != 0; j = (j + 1) & a->mask) {
        size_t home = (size_t)a->slots[j].hash & a->mask;
        int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);

        if (!stays) {
            a->slots[i] = a->slots[j];
            i = j;
        }
    }
    memset(&a->slots[i], 0, sizeof(a->slots[i]));
    a->nslots--;
}

/* ------------------------------------------------------------------------
 * Slots.
 */

static const char *const *statsd_suffixes(int kind, size_t *n)
{
    switch (kind) {
    case STATSD_COUNTER:
        *n = STATSD_NSFX(statsd_counter_sfx);
        return statsd_counter_sfx;
    case STATSD_GAUGE:
        *n = STATSD_NSFX(statsd_gauge_sfx);
        return statsd_gauge_sfx;
    case STATSD_TIMER:
        *n = STATSD_NSFX(statsd_timer_sfx);
        return statsd_timer_sfx;
    default:
        *n = STATSD_NSFX(statsd_set_sfx);
        return statsd_set_sfx;
    }
}

/* Intern the series of a new slot: the name with each suffix, the tags as
 * labels. A refusal (the core's series limit) is logged by the core; the
 * slot then drops its values until it expires. */
static void statsd_intern(struct statsd_agg *a, struct statsd_slot *s)
{
    struct vigil_label labels[STATSD_TAGS_MAX];
    char name[VIGIL_NAME_MAX];
    const char *const *sfx;
    size_t nsfx;
    size_t nl = 0;
    char *p;

    /* The key is "name|k:v,k:v": cut it into NUL-terminated labels (keys
     * hold no ':', values no ','). */
    memcpy(a->lbuf, statsd_slot_key(s), s->klen + 1);
    p = a->lbuf + s->name_len;
    if (*p == '|') {
        *p++ = '\0';
        while (*p != '\0') {
            char *colon = strchr(p, ':');
            char *comma;

            *colon = '\0';
            labels[nl].key = p;
            labels[nl].value = colon + 1;
            nl++;
            comma = strchr(colon + 1, ',');
            if (comma == NULL) {
                break;
            }
            *comma = '\0';
            p = comma + 1;
        }
    }

    sfx = statsd_suffixes(s->kind, &nsfx);
    for (size_t i = 0; i < nsfx + (s->kind == STATSD_TIMER ? a->cfg.npct : 0);
         i++) {
        const char *x = i < nsfx ? sfx[i] : a->cfg.pct_suffix[i - nsfx];

        size_t xl = strlen(x);

        /* statsd_key() bounded the name so that this fits. */
        assert(a->prefix_len + s->name_len + xl < sizeof(name));
        memcpy(name, a->cfg.prefix, a->prefix_len);
        memcpy(name + a->prefix_len, a->lbuf, s->name_len);
        memcpy(name + a->prefix_len + s->name_len, x, xl + 1);
        if (a->host->series(a->inst, name, labels, nl, &s->ids[i]) != 0) {
            s->refused = 1;
            return;
        }
    }
}

/* An empty table of cap slots, aligned to cache lines; NULL when memory
 * is short. */
static struct statsd_slot *statsd_table_alloc(size_t cap)
{
    struct statsd_slot *t = aligned_alloc(64, cap * sizeof(*t));

    if (t != NULL) {
        memset(t, 0, cap * sizeof(*t));
    }
    return t;
}

/*
 * Keep the table at most half full: double it (moving every slot to its
 * place in the new one) when one more key would pass that. An allocation
 * only when a key is added. Returns 0 when the table can take one more
 * key.
 */
static int statsd_table_reserve(struct statsd_agg *a)
{
    size_t cap = a->mask + 1;
    struct statsd_slot *old = a->slots;
    struct statsd_slot *t;

    if ((a->nslots + 1) * 2 <= cap) {
        return 0;
    }
    t = cap < a->cap_max ? statsd_table_alloc(cap * 2) : NULL;
    if (t == NULL) {
        /* Still correct up to three quarters full, only slower. */
        return (a->nslots + 1) * 4 <= cap * 3 ? 0 : VIGIL_ENOMEM;
    }
    a->slots = t;
    a->mask = cap * 2 - 1;
    for (size_t i = 0; i < cap; i++) {
        if (old[i].klen != 0) {
            size_t k = (size_t)old[i].hash & a->mask;

            while (t[k].klen != 0) {
                k = (k + 1) & a->mask;
            }
            t[k] = old[i];
        }
    }
    free(old);
    /* Slots moved: a flush in progress looks at them all again (those
     * already published are skipped by their epoch). */
    a->cursor = 0;
    return 0;
}

/* A slot for the key in a->key, at the free slot pos found by the lookup.
 * NULL when the table is full (or memory is short). */
static struct statsd_slot *statsd_create(struct statsd_agg *a, uint64_t h,
                                         size_t pos, int kind, size_t nlen)
{
    struct statsd_slot *s;
    size_t words = statsd_key_words(a->klen);

    if (a->nslots >= a->cfg.max_series) {
        return NULL;
    }
    if ((a->nslots + 1) * 2 > a->mask + 1) {
        if (statsd_table_reserve(a) != 0) {
            return NULL;
        }
        /* The table may have moved: find the free slot again. */
        for (pos = (size_t)h & a->mask; a->slots[pos].klen != 0;
             pos = (pos + 1) & a->mask) {
        }
    }
    s = &a->slots[pos];
    if (a->klen >= STATSD_IKEY) {
        s->k.out = malloc(words * 8);
        if (s->k.out == NULL) {
            return NULL;
        }
        memcpy(s->k.out, a->key, words * 8);
    } else {
        memcpy(s->k.in, a->key, words * 8);
    }
    s->hash = h;
    s->klen = (uint32_t)a->klen;
    s->name_len = (uint16_t)nlen;
    s->kind = (uint8_t)kind;
    s->epoch = a->epoch;
    s->last_ns = a->interval_start;
    a->nslots++;
    statsd_intern(a, s);
    return s;
}

/* Publish an aggregate of the interval being flushed. A sum that
 * overflowed a double (inf, or NaN from inf - inf) is not published: a
 * rule cannot compare it, and the next interval starts afresh. */
static void statsd_publish(struct statsd_agg *a, const struct statsd_slot *s,
                           size_t i, double v)
{
    if (isfinite(v)) {
        a->host->publish(a->inst, s->ids[i], a->flush_ts, v);
    }
}

/* Publish the timer's statistics; percentiles reorder the reservoir. */
static void statsd_flush_timer(struct statsd_agg *a, struct statsd_slot *s)
{
    double *v = s->buf;
    size_t from = 0;

    statsd_publish(a, s, 0, s->count);
    if (s->n == 0) {
        return; /* no values: nothing else is defined */
    }
    statsd_publish(a, s, 1, s->sum);
    statsd_publish(a, s, 2, s->min);
    statsd_publish(a, s, 3, s->max);
    statsd_publish(a, s, 4, s->sum / (double)s->n);
    for (size_t i = 0; i < a->cfg.npct; i++) {
        /* Nearest rank: the smallest value with at least p% of the values
         * at or below it, in integers (p is in thousandths). */
        uint64_t rank =
            ((uint64_t)a->cfg.pct_milli[i] * s->fill + 99999) / 100000;
        size_t k = rank > 0 ? (size_t)rank - 1 : 0;

        statsd_publish(a, s, 5 + i, statsd_select(a, v, from, s->fill, k));
        from = k;
    }
}

/* Publish the slot's interval and reset its accumulator. */
static void statsd_flush_slot(struct statsd_agg *a, struct statsd_slot *s)
{
    if (!s->refused) {
        switch (s->kind) {
        case STATSD_COUNTER:
            statsd_publish(a, s, 0, s->count);
            statsd_publish(a, s, 1,
                           a->elapsed_s > 0 ? s->count / a->elapsed_s : 0.0);
            break;
        case STATSD_GAUGE:
            statsd_publish(a, s, 0, s->gauge);
            break;
        case STATSD_TIMER:
            statsd_flush_timer(a, s);
            break;
        case STATSD_SET:
            statsd_publish(a, s, 0, (double)s->fill);
            break;
        default:
            break;
        }
    }
    if (s->kind == STATSD_SET && s->fill > 0) {
        memset(s->buf, 0, (size_t)s->cap * sizeof(uint64_t));
    }
    if (s->capped) {
        a->capped_sets++;
    }
    if (s->n > 0) {
        s->last_ns = a->flushed_start; /* read by expiry, not per line */
    }
    s->capped = 0;
    s->count = 0.0;
    s->sum = 0.0;
    s->n = 0;
    s->fill = 0;
    s->epoch = a->epoch;
}

/* ------------------------------------------------------------------------
 * Values.
 */

/* Grow a timer's reservoir (doubling, up to the option). 0 when it is
 * already at the bound or memory is short. */
static int statsd_grow_reservoir(struct statsd_agg *a, struct statsd_slot *s)
{
    uint32_t cap = s->cap > 0 ? s->cap * 2 : STATSD_BUF_MIN;
    double *p;

    if (s->cap >= a->cfg.reservoir) {
        return 0;
    }
    if (cap > a->cfg.reservoir) {
        cap = a->cfg.reservoir;
    }
    p = realloc(s->buf, (size_t)cap * sizeof(*p));
    if (p == NULL) {
        return 0;
    }
    s->buf = p;
    s->cap = cap;
    return 1;
}

static void statsd_timer_add(struct statsd_agg *a, struct statsd_slot *s,
                             double v, double inv_rate)
{
    double *res;

    s->count += inv_rate;
    s->sum += v;
    if (s->n == 0 || v < s->min) {
        s->min = v;
    }
    if (s->n == 0 || v > s->max) {
        s->max = v;
    }
    s->n++;
    if (s->fill < s->cap || statsd_grow_reservoir(a, s)) {
        res = s->buf;
        res[s->fill++] = v;
    } else if (s->cap > 0) {
        /* Full: keep a uniform sample of the interval (algorithm R). */
        uint64_t j = statsd_rand_below(a, s->n);

        if (j < s->cap) {
            res = s->buf;
            res[j] = v;
        }
    }
}

/* Double a set's table (at most half full). 0 at the bound or when memory
 * is short. */
static int statsd_grow_set(struct statsd_slot *s)
{
    uint32_t cap = s->cap > 0 ? s->cap * 2 : STATSD_BUF_MIN;
    uint64_t *old = s->buf;
    uint64_t *p;

    if (cap > 2 * STATSD_SET_MEMBERS_MAX) {
        return 0;
    }
    p = calloc(cap, sizeof(*p));
    if (p == NULL) {
        return 0;
    }
    for (uint32_t i = 0; i < s->cap; i++) {
        if (old[i] != 0) {
            uint32_t k = (uint32_t)old[i] & (cap - 1);

            while (p[k] != 0) {
                k = (k + 1) & (cap - 1);
            }
            p[k] = old[i];
        }
    }
    free(old);
    s->buf = p;
    s->cap = cap;
    return 1;
}

static void statsd_set_add(struct statsd_agg *a, struct statsd_slot *s,
                           const char *str, uint32_t len)
{
    uint64_t h = statsd_hash(str, len, ~a->cfg.seed);
    int full = 0;
    uint64_t *tab;
    uint32_t k;

    h = h != 0 ? h : 1;
    s->n++;
    if ((s->fill + 1) * 2 > s->cap && !statsd_grow_set(s)) {
        full = 1;
        if (s->cap == 0) {
            s->capped = 1;
            return;
        }
    }
    tab = s->buf;
    for (k = (uint32_t)h & (s->cap - 1); tab[k] != 0;
         k = (k + 1) & (s->cap - 1)) {
        if (tab[k] == h) {
            return;
        }
    }
    if (full) {
        s->capped = 1;
        return;
    }
    tab[k] = h;
    s->fill++;
}

/* Add the values of a->line to slot s. */
static void statsd_apply(struct statsd_agg *a, struct statsd_slot *s)
{
    const struct statsd_line *l = &a->line;

    switch (s->kind) {
    case STATSD_COUNTER:
        for (uint32_t i = 0; i < l->nvalues; i++) {
            /* No division for the usual rate of 1 (same result). */
            s->count +=
                l->rate == 1.0 ? l->values[i].num : l->values[i].num / l->rate;
        }
        s->n += l->nvalues;
        break;
    case STATSD_GAUGE:
        for (uint32_t i = 0; i < l->nvalues; i++) {
            const struct statsd_value *v = &l->values[i];

            s->gauge = v->sign ? s->gauge + v->num : v->num;
        }
        s->n += l->nvalues;
        /* Published the moment it arrives, so that rules on a gauge react
         * without waiting for the flush; all gauges of one batch of input
         * share one time. */
        if (a->now_ns == 0) {
            a->now_ns = a->host->now_ns(a->inst);
        }
        if (isfinite(s->gauge)) {
            a->host->publish(a->inst, s->ids[0], a->now_ns, s->gauge);
        }
        break;
    case STATSD_TIMER: {
        double inv = l->rate == 1.0 ? 1.0 : 1.0 / l->rate;

        for (uint32_t i = 0; i < l->nvalues; i++) {
            statsd_timer_add(a, s, l->values[i].num, inv);
        }
        break;
    }
    case STATSD_SET:
        for (uint32_t i = 0; i < l->nvalues; i++) {
            statsd_set_add(a, s, l->values[i].str, l->values[i].len);
        }
        break;
    default:
        break;
    }
}

/* Put the key of the current line in a->key (with its zero padding), for
 * a new slot or a message. */
static void statsd_key_to_buf(struct statsd_agg *a, const char *key,
                              size_t klen)
{
    if (key != a->key) {
        memcpy(a->key, key, klen);
        memset(a->key + klen, 0, 8);
    }
    a->klen = klen;
}

/* statsd_agg_line(), inlined into the loop of statsd_agg_lines(). */
static inline int statsd_line(struct statsd_agg *a, const char *line,
                              size_t len, const char **why)
{
    const struct statsd_line *l = &a->line;
    struct statsd_slot *s;
    size_t klen;
    size_t nlen;
    size_t pos;
    uint64_t h;
    int rc;

    a->klen = 0;
    rc = statsd_parse_line(line, len, a->cfg.seed, &a->line, why);
    if (rc != 0) {
        return rc == VIGIL_ENOENT ? STATSD_EMPTY : STATSD_BAD;
    }
    s = NULL;
    if (l->tags == NULL) {
        /* The common case: a name that needs no sanitizing is its own
         * key, already hashed by the parser. Only such a name can equal a
         * stored key (those are sanitized; with tags they hold a ':'), so
         * a hit is the right slot. */
        s = statsd_find(a, l->name_hash, l->name, l->name_len, &pos);
    } else if (l->name_len + 1 + l->tags_len <= STATSD_KEY_MAX) {
        /* With tags: clients send the same text each time, usually in the
         * canonical form already ("name|a:1,b:2" once put together). Try
         * that before building the key; equal bytes can only be a key
         * whose name and tags needed no work. */
        memcpy(a->key, l->name, l->name_len);
        a->key[l->name_len] = '|';
        memcpy(a->key + l->name_len + 1, l->tags, l->tags_len);
        klen = l->name_len + 1 + l->tags_len;
        memset(a->key + klen, 0, 8);
        s = statsd_find(a, statsd_hash(a->key, klen, a->cfg.seed), a->key, klen,
                        &pos);
    }
    if (s == NULL) {
        if (statsd_key(l, a->name_max[l->kind], a->key, sizeof(a->key), &klen,
                       &nlen, why) != 0) {
            return STATSD_BAD;
        }
        h = statsd_hash(a->key, klen, a->cfg.seed);
        s = statsd_find(a, h, a->key, klen, &pos);
        if (s == NULL) {
            a->klen = klen;
            s = statsd_create(a, h, pos, l->kind, nlen);
            if (s == NULL) {
                return STATSD_DROPPED;
            }
        }
    }
    if (s->kind != l->kind) {
        *why = statsd_mismatch[s->kind];
        return STATSD_BAD;
    }
    if (s->epoch != a->epoch) {
        statsd_flush_slot(a, s);
    }
    if (s->refused) {
        statsd_key_to_buf(a, statsd_slot_key(s), s->klen);
        return STATSD_DROPPED;
    }
    statsd_apply(a, s);
    return STATSD_OK;
}

/* One line (see statsd_agg.h); an enum statsd_result. */
int statsd_agg_line(struct statsd_agg *a, const char *line, size_t len,
                    const char **why)
{
    return statsd_line(a, line, len, why);
}

/* Every line of a datagram or a TCP read (see statsd_agg.h); returns the
 * non-empty lines. */
uint64_t statsd_agg_lines(struct statsd_agg *a, const char *buf, size_t len,
                          statsd_problem_cb problem_cb, void *arg)
{
    const char *p = buf;
    const char *end = buf + len;
    uint64_t lines = 0;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl != NULL ? nl : end) - p);
        const char *why = "?";
        int r = statsd_line(a, p, n, &why);

        if (r != STATSD_EMPTY) {
            lines++;
            if (r != STATSD_OK && problem_cb != NULL) {
                problem_cb(arg, r, p, n, why);
            }
        }
        p += n + 1;
    }
    return lines;
}

/* ------------------------------------------------------------------------
 * The table.
 */

/* A table with no key (see statsd_agg.h); 0 or VIGIL_ENOMEM. */
int statsd_agg_create(const struct statsd_agg_config *cfg,
                      const struct vigil_host *host, vigil_instance *inst,
                      struct statsd_agg **out)
{
    struct statsd_agg *a = calloc(1, sizeof(*a));
    size_t pct_len = 0;

    *out = NULL;
    if (a == NULL) {
        return VIGIL_ENOMEM;
    }
    a->cfg = *cfg;
    a->host = host;
    a->inst = inst;
    a->prefix_len = strlen(cfg->prefix);
    for (size_t i = 0; i < cfg->npct; i++) {
        size_t n = strlen(cfg->pct_suffix[i]);

        pct_len = n > pct_len ? n : pct_len;
    }
    /* Room for the name: VIGIL_NAME_MAX less the NUL, the prefix and the
     * longest suffix its kind adds. */
    for (int k = 0; k < STATSD_NKINDS; k++) {
        size_t nsfx;
        const char *const *sfx = statsd_suffixes(k, &nsfx);
        size_t longest = k == STATSD_TIMER ? pct_len : 0;

        for (size_t i = 0; i < nsfx; i++) {
            longest = strlen(sfx[i]) > longest ? strlen(sfx[i]) : longest;
        }
        a->name_max[k] = VIGIL_NAME_MAX - 1 - a->prefix_len - longest;
    }
    /* The table grows to twice max_series, rounded up to a power of 2. */
    for (a->cap_max = STATSD_TABLE_MIN;
         a->cap_max < 2 * (size_t)cfg->max_series; a->cap_max *= 2) {
    }
    a->mask = STATSD_TABLE_MIN - 1;
    a->slots = statsd_table_alloc(STATSD_TABLE_MIN);
    if (a->slots == NULL) {
        statsd_agg_destroy(a);
        return VIGIL_ENOMEM;
    }
    a->rng = cfg->seed | 1;
    a->interval_start = host->now_ns(inst);
    *out = a;
    return 0;
}

/* Free the table, its keys and their buffers. Accepts NULL. */
void statsd_agg_destroy(struct statsd_agg *a)
{
    if (a == NULL) {
        return;
    }
    if (a->slots != NULL) {
        for (size_t i = 0; i <= a->mask; i++) {
            if (a->slots[i].klen >= STATSD_IKEY) {
                free(a->slots[i].k.out);
            }
            free(a->slots[i].buf);
        }
    }
    free(a->slots);
    free(a);
}

/* Borrowed until the next line. Does not fail. */
const char *statsd_agg_last_key(const struct statsd_agg *a, size_t *len)
{
    *len = a->klen;
    return a->key;
}

/* Does not fail. */
void statsd_agg_new_batch(struct statsd_agg *a)
{
    a->now_ns = 0;
}

/* Start the flush of the interval ending now. Does not fail. */
void statsd_agg_flush_begin(struct statsd_agg *a, int64_t ts_ns,
                            int64_t elapsed_ns)
{
    /* A flush still in progress finishes first, with its own time. */
    statsd_agg_flush_step(a, UINT32_MAX);
    a->epoch++;
    a->flush_ts = ts_ns;
    a->flushed_start = a->interval_start;
    a->interval_start = ts_ns;
    a->elapsed_s = (double)elapsed_ns / 1e9;
    a->cursor = 0;
    a->capped_sets = 0;
}

/* Publish up to max_slots keys; 1 when the flush is done. */
int statsd_agg_flush_step(struct statsd_agg *a, uint32_t max_slots)
{
    while (a->cursor <= a->mask && max_slots > 0) {
        struct statsd_slot *s = &a->slots[a->cursor];

        if (s->klen == 0 || s->epoch == a->epoch) {
            a->cursor++; /* free, or flushed when a line touched it */
            continue;
        }
        max_slots--;
        if (a->cfg.expire_ns > 0 && s->n == 0 &&
            a->flush_ts - s->last_ns >= a->cfg.expire_ns) {
            /* The slots shifted back into its place are looked at next:
             * the cursor stays. */
            statsd_remove(a, a->cursor);
            continue;
        }
        statsd_flush_slot(a, s);
        a->cursor++;
    }
    if (a->cursor <= a->mask) {
        return 0;
    }
    if (a->capped_sets > 0 &&
        (a->set_warned_ns == 0 ||
         a->flush_ts - a->set_warned_ns >= STATSD_SET_WARN_NS)) {
        a->host->log(a->inst, VIGIL_LOG_WARN,
                     "%u set(s) had more than %u members in one interval; "
                     "their .unique counts are floors",
                     a->capped_sets, STATSD_SET_MEMBERS_MAX);
        a->set_warned_ns = a->flush_ts;
        a->capped_sets = 0;
    }
    return 1;
}

/* Keys in the table. Does not fail. */
uint32_t statsd_agg_series(const struct statsd_agg *a)
{
    return a->nslots;
}
