/*
 * statsd_parse.c - the StatsD line parser and canonical series keys (see
 * statsd_parse.h). Pure functions: they read the caller's text and write
 * the caller's structs and buffers, nothing else.
 *
 * Speed matters here (millions of lines a second), so the common line -
 * a plain name, one number, a one- or two-letter type - is read in one
 * pass: the name eight bytes at a time, finding the ':' and hashing the
 * name in the same loop; the value parsed as a number on the way to the
 * '|'. The table looks a line without tags up by that hash first (a name
 * that needs no sanitizing is its own key); canonical keys are built only
 * when that fails.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "statsd_parse.h"

/* Byte classes: what may appear in a series name, in a label key. The
 * range designators are a GNU C extension (gcc and clang, CMake builds
 * with -std=gnu11); they keep the table readable. */
#define STATSD_C_NAME 1u /* [A-Za-z0-9_.] */
#define STATSD_C_KEY 2u  /* [A-Za-z0-9_] */
static const unsigned char statsd_class[256] = {
    ['0' ... '9'] = STATSD_C_NAME | STATSD_C_KEY,
    ['A' ... 'Z'] = STATSD_C_NAME | STATSD_C_KEY,
    ['a' ... 'z'] = STATSD_C_NAME | STATSD_C_KEY,
    ['_'] = STATSD_C_NAME | STATSD_C_KEY,
    ['.'] = STATSD_C_NAME,
};

/* Decimal powers that are exact in a double (10^22 is the last one). */
static const double statsd_pow10[] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

#define STATSD_ONES UINT64_C(0x0101010101010101)
#define STATSD_HIGHS UINT64_C(0x8080808080808080)

static int statsd_is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* The first c in [p, end), or NULL. A byte loop: the fields of a StatsD
 * line are a few bytes long, shorter than a call to memchr costs. */
static inline const char *statsd_find(const char *p, const char *end, char c)
{
    for (; p < end; p++) {
        if (*p == c) {
            return p;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------------
 * Hashing, a word at a time.
 */

/* Eight bytes as a little-endian word, whatever the machine. */
static inline uint64_t statsd_le64(const char *p)
{
    uint64_t w;

    memcpy(&w, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

static inline uint64_t statsd_hash_mix(uint64_t h, uint64_t w)
{
    h = (h ^ w) * UINT64_C(0xbf58476d1ce4e5b9);
    return h ^ (h >> 31);
}

static inline uint64_t statsd_hash_final(uint64_t h, size_t n)
{
    h ^= (uint64_t)n * UINT64_C(0x9e3779b97f4a7c15);
    h ^= h >> 33;
    h *= UINT64_C(0xff51afd7ed558ccd);
    h ^= h >> 33;
    h *= UINT64_C(0xc4ceb9fe1a85ec53);
    h ^= h >> 33;
    return h;
}

/* See statsd_parse.h. Does not fail. */
uint64_t statsd_hash(const char *p, size_t n, uint64_t seed)
{
    uint64_t h = seed;
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        h = statsd_hash_mix(h, statsd_le64(p + i));
    }
    if (i < n) {
        uint64_t w = 0;

        for (size_t b = 0; i + b < n; b++) {
            w |= (uint64_t)(unsigned char)p[i + b] << (8 * b);
        }
        h = statsd_hash_mix(h, w);
    }
    return statsd_hash_final(h, n);
}

/*
 * The name: find the first ':' in [p, end), and on the way hash the bytes
 * before it (statsd_hash). Returns the ':' or NULL.
 */
static const char *statsd_scan_name(const char *p, const char *end,
                                    uint64_t seed, uint64_t *hash)
{
    const char *start = p;
    uint64_t h = seed;
    uint64_t w = 0;
    unsigned b = 0;

    for (; end - p >= 8; p += 8) {
        uint64_t x;
        uint64_t t;

        w = statsd_le64(p);
        x = w ^ (STATSD_ONES * ':');
        /* The classic test for a zero byte; its lowest set bit is exact
         * (false positives only sit above a true zero byte). */
        t = (x - STATSD_ONES) & ~x & STATSD_HIGHS;
        if (t != 0) {
            unsigned k = (unsigned)__builtin_ctzll(t) >> 3;

            if (k > 0) {
                h = statsd_hash_mix(h, w & ((UINT64_C(1) << (8 * k)) - 1));
            }
            *hash = statsd_hash_final(h, (size_t)(p + k - start));
            return p + k;
        }
        h = statsd_hash_mix(h, w);
    }
    /* Fewer than eight bytes left. */
    w = 0;
    for (; p < end && *p != ':'; p++, b++) {
        w |= (uint64_t)(unsigned char)*p << (8 * b);
    }
    if (p == end) {
        return NULL;
    }
    if (b > 0) {
        h = statsd_hash_mix(h, w);
    }
    *hash = statsd_hash_final(h, (size_t)(p - start));
    return p;
}

/* ------------------------------------------------------------------------
 * Numbers.
 */

/* Longer mantissas than this never take the exact fast path. */
#define STATSD_MANTISSA_MAX UINT64_C(100000000000000000) /* 1e17 */

/* The general case of statsd_number(): strtod on a copy of [s, p), whose
 * grammar was checked. Kept out of line so that the common case needs no
 * buffer on the stack. */
static __attribute__((noinline)) int
statsd_number_slow(const char *s, const char *p, double *out)
{
    char buf[STATSD_NUMBER_MAX];
    char *stop;
    double v;

    if (p - s >= (long)sizeof(buf)) {
        return VIGIL_EPARSE;
    }
    memcpy(buf, s, (size_t)(p - s));
    buf[p - s] = '\0';
    v = strtod(buf, &stop);
    if (stop != buf + (p - s) || !isfinite(v)) {
        return VIGIL_EPARSE;
    }
    *out = v;
    return 0;
}

/* Parse the number at the start of [s, end): *stop gets where it ends.
 * Returns 0, or VIGIL_EPARSE when there is no number there or it is not
 * finite. */
static inline __attribute__((always_inline)) int
statsd_number(const char *s, const char *end, const char **stop, double *out)
{
    const char *p = s;
    uint64_t m = 0;
    int neg = 0;
    int digits = 0; /* digits seen in the mantissa */
    int frac = 0;   /* digits of m after the decimal point */
    int inexact = 0;
    long e = 0;
    double v;

    if (p < end && (*p == '+' || *p == '-')) {
        neg = *p == '-';
        p++;
    }
    for (; p < end && statsd_is_digit((unsigned char)*p); p++, digits++) {
        if (m < STATSD_MANTISSA_MAX) {
            m = m * 10 + (uint64_t)(*p - '0');
        } else {
            inexact = 1;
        }
    }
    if (p < end && *p == '.') {
        for (p++; p < end && statsd_is_digit((unsigned char)*p);
             p++, digits++) {
            if (m < STATSD_MANTISSA_MAX) {
                m = m * 10 + (uint64_t)(*p - '0');
                frac++;
            } else if (*p != '0') {
                inexact = 1;
            }
        }
    }
    if (digits == 0) {
        return VIGIL_EPARSE;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        const char *q = p + 1;
        int eneg = 0;
        int edigits = 0;
        long x = 0;

        if (q < end && (*q == '+' || *q == '-')) {
            eneg = *q == '-';
            q++;
        }
        for (; q < end && statsd_is_digit((unsigned char)*q); q++) {
            if (x < 100000) {
                x = x * 10 + (*q - '0');
            }
            edigits++;
        }
        if (edigits > 0) { /* else the number ends before the 'e' */
            e = eneg ? -x : x;
            p = q;
        }
    }
    *stop = p;
    e -= frac;
    /* Clinger's fast path: an integer mantissa below 2^53 and a power of
     * ten that is exact give a correctly rounded result in one operation.
     * It covers what clients send ("1", "12.5", "0.25"). */
    if (!inexact && m <= (UINT64_C(1) << 53) && e >= -22 && e <= 22) {
        v = (double)m;
        if (e < 0) {
            v /= statsd_pow10[-e];
        } else if (e > 0) {
            v *= statsd_pow10[e];
        }
        *out = neg ? -v : v;
        return 0;
    }
    return statsd_number_slow(s, p, out);
}

/* A whole text as one number; 0 or VIGIL_EPARSE. */
int statsd_parse_number(const char *s, size_t len, double *out)
{
    const char *stop;

    if (statsd_number(s, s + len, &stop, out) != 0 || stop != s + len) {
        return VIGIL_EPARSE;
    }
    return 0;
}

/* A static string. Does not fail. */
const char *statsd_kind_name(int kind)
{
    switch (kind) {
    case STATSD_COUNTER:
        return "counter";
    case STATSD_GAUGE:
        return "gauge";
    case STATSD_TIMER:
        return "timer";
    case STATSD_SET:
        return "set";
    default:
        return "unknown";
    }
}

/* ------------------------------------------------------------------------
 * Lines.
 */

/* Split the "#..." text of a parsed line (see statsd_parse.h); tags point
 * into the line. */
int statsd_parse_tags(const struct statsd_line *l, struct statsd_tag *tags,
                      uint32_t *ntags, const char **why)
{
    const char *p = l->tags;
    const char *end;

    *ntags = 0;
    if (p == NULL) {
        return 0;
    }
    end = p + l->tags_len;
    while (p < end) {
        const char *comma = statsd_find(p, end, ',');
        const char *stop = comma != NULL ? comma : end;
        const char *colon;
        struct statsd_tag *t;

        if (stop == p) { /* an empty element: ",," or a trailing ',' */
            p = stop + 1;
            continue;
        }
        if (*ntags == STATSD_TAGS_MAX) {
            *why = "more than 15 tags";
            return VIGIL_EPARSE;
        }
        t = &tags[(*ntags)++];
        colon = statsd_find(p, stop, ':');
        if (colon == p) {
            *why = "a tag has an empty key";
            return VIGIL_EPARSE;
        }
        t->key = p;
        if (colon != NULL) {
            t->klen = (uint32_t)(colon - p);
            t->val = colon + 1;
            t->vlen = (uint32_t)(stop - colon - 1);
        } else {
            t->klen = (uint32_t)(stop - p);
            t->val = NULL;
            t->vlen = 0;
        }
        p = stop + 1;
    }
    return 0;
}

/* The fields after the type: "@rate", "#tags", "c:id", "Tts". */
static int statsd_parse_fields(const char *p, const char *end,
                               struct statsd_line *out, const char **why)
{
    int have_rate = 0;
    int have_tags = 0;

    while (p < end) {
        const char *bar = statsd_find(p, end, '|');
        const char *stop = bar != NULL ? bar : end;

        if (stop == p) {
            /* An empty field ("a:1|c|"): nothing to read. */
        } else if (*p == '@') {
            double rate;

            if (have_rate) {
                *why = "two sample rates";
                return VIGIL_EPARSE;
            }
            have_rate = 1;
            if (statsd_parse_number(p + 1, (size_t)(stop - p - 1), &rate) !=
                    0 ||
                !(rate > 0.0 && rate <= 1.0)) {
                *why = "the sample rate is not a number in (0, 1]";
                return VIGIL_EPARSE;
            }
            out->rate = rate;
        } else if (*p == '#') {
            if (have_tags) {
                *why = "two tag fields";
                return VIGIL_EPARSE;
            }
            have_tags = 1;
            out->tags = p + 1;
            out->tags_len = (uint32_t)(stop - p - 1);
        } else if (*p == 'T' || (*p == 'c' && stop - p >= 2 && p[1] == ':')) {
            /* DogStatsD timestamp and container id: accepted, ignored
             * (samples are stamped when they are flushed). */
        } else {
            *why = "unknown field after the type (expected @rate or #tags)";
            return VIGIL_EPARSE;
        }
        p = stop + 1;
    }
    return 0;
}

/* The values "v1:v2:...|": each parsed as a number on the way (what
 * numeric kinds need), or, once one is not a number, only delimited (a
 * set's members). Stops at the '|', returned in *bar. *numeric says
 * whether every value is a number. */
static int statsd_parse_values(const char *p, const char *end,
                               struct statsd_line *out, const char **bar,
                               int *numeric, const char **why)
{
    *numeric = 1;
    for (;;) {
        struct statsd_value *v;
        const char *stop = p;

        if (out->nvalues == STATSD_VALUES_MAX) {
            *why = "more than 64 values in one line";
            return VIGIL_EPARSE;
        }
        v = &out->values[out->nvalues];
        v->num = 0.0;
        if (!*numeric || statsd_number(p, end, &stop, &v->num) != 0 ||
            (stop < end && *stop != ':' && *stop != '|')) {
            *numeric = 0;
            while (stop < end && *stop != ':' && *stop != '|') {
                stop++;
            }
        }
        if (stop == end) {
            *why = "no '|' and type after the value";
            return VIGIL_EPARSE;
        }
        if (stop == p) {
            *why = "empty value";
            return VIGIL_EPARSE;
        }
        v->str = p;
        v->len = (uint32_t)(stop - p);
        v->sign = *p == '+' || *p == '-';
        out->nvalues++;
        if (*stop == '|') {
            *bar = stop;
            return 0;
        }
        p = stop + 1;
    }
}

/* The type after the '|': "c", "g", "ms", "h", "d" or "s", ending at the
 * end or at a '|'. Returns the kind and its end in *tend, or -1. */
static int statsd_parse_type(const char *t, const char *end, const char **tend)
{
    int kind;

    if (t >= end) {
        return -1;
    }
    *tend = t + 1;
    switch (*t) {
    case 'c':
        kind = STATSD_COUNTER;
        break;
    case 'g':
        kind = STATSD_GAUGE;
        break;
    case 'h':
    case 'd':
        kind = STATSD_TIMER;
        break;
    case 's':
        kind = STATSD_SET;
        break;
    case 'm':
        if (t + 1 >= end || t[1] != 's') {
            return -1;
        }
        *tend = t + 2;
        kind = STATSD_TIMER;
        break;
    default:
        return -1;
    }
    return *tend == end || **tend == '|' ? kind : -1;
}

/* One line into *out, pointing into the line (see statsd_parse.h). */
int statsd_parse_line(const char *line, size_t len, uint64_t seed,
                      struct statsd_line *out, const char **why)
{
    const char *end = line + len;
    const char *colon;
    const char *bar;
    const char *tend;
    int numeric;

    if (len > 0 && end[-1] == '\r') {
        end--;
    }
    if (end == line) {
        return VIGIL_ENOENT;
    }
    if (len > UINT32_MAX) {
        *why = "line too long";
        return VIGIL_EPARSE;
    }
    out->nvalues = 0;
    out->tags = NULL;
    out->tags_len = 0;
    out->rate = 1.0;
    colon = statsd_scan_name(line, end, seed, &out->name_hash);
    if (colon == NULL) {
        if (end - line >= 4 && memcmp(line, "_sc|", 4) == 0) {
            *why = "DogStatsD service checks are not supported";
        } else {
            *why = "no ':' after the metric name";
        }
        return VIGIL_EPARSE;
    }
    if (colon == line) {
        *why = "empty metric name";
        return VIGIL_EPARSE;
    }
    if (line[0] == '_' && end - line >= 3 && memcmp(line, "_e{", 3) == 0) {
        *why = "DogStatsD events are not supported";
        return VIGIL_EPARSE;
    }
    out->name = line;
    out->name_len = (uint32_t)(colon - line);
    if (statsd_parse_values(colon + 1, end, out, &bar, &numeric, why) != 0) {
        return VIGIL_EPARSE;
    }
    out->kind = statsd_parse_type(bar + 1, end, &tend);
    if (out->kind < 0) {
        *why = "unknown type (expected c, g, ms, h, d or s)";
        return VIGIL_EPARSE;
    }
    if (!numeric && out->kind != STATSD_SET) {
        *why = "the value is not a finite decimal number";
        return VIGIL_EPARSE;
    }
    if (tend < end && statsd_parse_fields(tend + 1, end, out, why) != 0) {
        return VIGIL_EPARSE;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Canonical keys.
 */

/* A sanitized tag in the scratch area of statsd_key(). */
struct statsd_ktag {
    const char *key;
    const char *val;
    uint32_t klen;
    uint32_t vlen;
};

/* Sanitize a tag key into dst (room for VIGIL_LABEL_KEY_MAX bytes);
 * returns its length or 0 when it is too long. */
static size_t statsd_tag_key(const struct statsd_tag *t, char *dst)
{
    static const char exported[] = "exported_instance";
    size_t n = 0;

    if (statsd_is_digit((unsigned char)t->key[0])) {
        dst[n++] = '_';
    }
    if (t->klen + n >= VIGIL_LABEL_KEY_MAX) {
        return 0;
    }
    for (uint32_t i = 0; i < t->klen; i++) {
        unsigned char c = (unsigned char)t->key[i];

        dst[n++] = (statsd_class[c] & STATSD_C_KEY) ? (char)c : '_';
    }
    if (n == 8 && memcmp(dst, "instance", 8) == 0) {
        memcpy(dst, exported, sizeof(exported) - 1);
        n = sizeof(exported) - 1;
    }
    return n;
}

static int statsd_ktag_cmp(const struct statsd_ktag *a,
                           const struct statsd_ktag *b)
{
    size_t n = a->klen < b->klen ? a->klen : b->klen;
    int c = memcmp(a->key, b->key, n);

    if (c != 0) {
        return c;
    }
    return a->klen < b->klen ? -1 : a->klen > b->klen;
}

/* The canonical key of a parsed line into buf (see statsd_parse.h). */
int statsd_key(const struct statsd_line *l, size_t name_max, char *buf,
               size_t cap, size_t *len, size_t *name_len, const char **why)
{
    /* Sanitized tag keys and values, in arrival order. */
    char scratch[STATSD_TAGS_MAX *
                 (VIGIL_LABEL_KEY_MAX + VIGIL_LABEL_VALUE_MAX)];
    struct statsd_ktag kt[STATSD_TAGS_MAX];
    struct statsd_tag tags[STATSD_TAGS_MAX];
    uint32_t ntags;
    size_t nkt = 0;
    size_t used = 0;
    size_t n = 0;
    unsigned char c0 = (unsigned char)l->name[0];

    if (cap < STATSD_KEY_MAX + 8) {
        *why = "key buffer too small";
        return VIGIL_EINVAL;
    }
    /* The name: it must start with a letter or '_' on the bus. */
    if (statsd_is_digit(c0) || c0 == '.') {
        buf[n++] = '_';
    }
    if (l->name_len + n > name_max) {
        *why = "the metric name is too long";
        return VIGIL_EPARSE;
    }
    {
        /* Locals: stores through buf could alias *l otherwise. */
        const unsigned char *src = (const unsigned char *)l->name;
        char *dst = buf + n;
        uint32_t nl = l->name_len;

        for (uint32_t i = 0; i < nl; i++) {
            dst[i] =
                (statsd_class[src[i]] & STATSD_C_NAME) ? (char)src[i] : '_';
        }
        n += nl;
    }
    *name_len = n;

    /* Tags: sanitize into the scratch area, then insertion-sort (stable,
     * so that among equal keys the last one sent stays last). */
    if (statsd_parse_tags(l, tags, &ntags, why) != 0) {
        return VIGIL_EPARSE;
    }
    for (uint32_t i = 0; i < ntags; i++) {
        const struct statsd_tag *t = &tags[i];
        struct statsd_ktag k;
        size_t j;

        if (t->val != NULL && t->vlen == 0) {
            continue; /* "key:" - an empty value is no label */
        }
        k.key = scratch + used;
        k.klen = (uint32_t)statsd_tag_key(t, scratch + used);
        if (k.klen == 0) {
            *why = "a tag key is longer than 63 bytes";
            return VIGIL_EPARSE;
        }
        used += k.klen;
        if (t->val == NULL) {
            k.val = "true";
            k.vlen = 4;
        } else {
            char *v = scratch + used;

            if (t->vlen >= VIGIL_LABEL_VALUE_MAX) {
                *why = "a tag value is longer than 255 bytes";
                return VIGIL_EPARSE;
            }
            for (uint32_t b = 0; b < t->vlen; b++) {
                unsigned char c = (unsigned char)t->val[b];

                v[b] = (c < 0x20 || c == 0x7f) ? '_' : (char)c;
            }
            k.val = v;
            k.vlen = t->vlen;
            used += t->vlen;
        }
        for (j = nkt; j > 0 && statsd_ktag_cmp(&kt[j - 1], &k) > 0; j--) {
            kt[j] = kt[j - 1];
        }
        kt[j] = k;
        nkt++;
    }
    for (size_t i = 0; i < nkt; i++) {
        char sep = n == *name_len ? '|' : ',';

        if (i + 1 < nkt && statsd_ktag_cmp(&kt[i], &kt[i + 1]) == 0) {
            continue; /* the same key again later: the last one wins */
        }
        buf[n++] = sep;
        memcpy(buf + n, kt[i].key, kt[i].klen);
        n += kt[i].klen;
        buf[n++] = ':';
        memcpy(buf + n, kt[i].val, kt[i].vlen);
        n += kt[i].vlen;
    }
    memset(buf + n, 0, 8);
    *len = n;
    return 0;
}
