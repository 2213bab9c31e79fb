/*
 * statsd_parse - the StatsD line parser and the series key it builds.
 *
 * Provides statsd_parse_line(), which splits one line of the StatsD /
 * DogStatsD protocol into its name, values, type, sample rate and tag
 * text, and statsd_key(), which turns a parsed line into the canonical key
 * of its series: the sanitized name, then '|' and the sanitized tags
 * sorted by key, "name|k1:v1,k2:v2". Both are pure: no allocation, no global
 * state, no I/O. Everything they return points into the caller's line or the
 * caller's buffer, so a parsed line is valid as long as the text it was parsed
 * from.
 *
 * The grammar (docs/statsd.md has the user's version):
 *
 *   line   = name ":" value *(":" value) "|" type *("|" field)
 *   type   = "c" | "g" | "ms" | "h" | "d" | "s"
 *   field  = "@" rate | "#" tag *("," tag) | "c:" container | "T" ts
 *   tag    = key [":" value]
 *
 * Several values in one line (DogStatsD 1.1 "packed" values) share the
 * type, rate and tags. Container ids and timestamps are accepted and
 * ignored. Used by statsd_agg.c; fuzzed by tests/fuzz/fuzz_statsd.c.
 */
#ifndef STATSD_PARSE_H
#define STATSD_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include <vigil/plugin.h>

/* What a line measures; ms, h and d are all timers. */
enum statsd_kind {
    STATSD_COUNTER = 0,
    STATSD_GAUGE,
    STATSD_TIMER,
    STATSD_SET,
    STATSD_NKINDS
};

/* Values in one line, tags in one line: more makes the line bad. Tags
 * leave room for the `instance` label the core adds. */
#define STATSD_VALUES_MAX 64
#define STATSD_TAGS_MAX (VIGIL_LABELS_MAX - 1)

/* A number longer than this is refused (no real client sends one). */
#define STATSD_NUMBER_MAX 64

/* The longest canonical key: a name and the tags with their separators. */
#define STATSD_KEY_MAX                                                         \
    (VIGIL_NAME_MAX + 1 +                                                      \
     STATSD_TAGS_MAX * (VIGIL_LABEL_KEY_MAX + VIGIL_LABEL_VALUE_MAX + 2))

struct statsd_value {
    double num;      /* the number; 0 for sets */
    const char *str; /* the text as sent (the member of a set) */
    uint32_t len;
    int sign; /* the text starts with '+' or '-': a gauge delta */
};

struct statsd_tag {
    const char *key; /* as sent, not sanitized */
    uint32_t klen;
    const char *val; /* NULL for a tag without ':' */
    uint32_t vlen;
};

struct statsd_line {
    const char *name; /* as sent, not sanitized */
    uint32_t name_len;
    /* statsd_hash() of the name as sent: for a line without tags whose
     * name needs no sanitizing, the hash of its canonical key. */
    uint64_t name_hash;
    int kind;    /* enum statsd_kind */
    double rate; /* sample rate in (0, 1]; 1 when absent */
    /* The text of the "#..." field without the '#', as sent; NULL when
     * the line has none. statsd_parse_tags() splits it. */
    const char *tags;
    uint32_t tags_len;
    uint32_t nvalues;
    struct statsd_value values[STATSD_VALUES_MAX];
};

/*
 * Parse one line (without its '\n'; a trailing '\r' is ignored) into *out.
 * seed seeds name_hash (see statsd_hash). Returns 0, or VIGIL_EPARSE with
 * *why set to a static sentence that says what is wrong. An empty line is
 * VIGIL_ENOENT (callers skip it). Values are checked for their type:
 * numbers must be finite. Does not allocate.
 */
int statsd_parse_line(const char *line, size_t len, uint64_t seed,
                      struct statsd_line *out, const char **why);

/*
 * The 64-bit hash of n bytes under a seed: eight bytes at a time (little
 * endian), the last partial word zero-padded, then the length. The parser
 * computes the same hash of a name while it looks for the ':', so that a
 * simple name is hashed without being copied. Does not fail.
 */
uint64_t statsd_hash(const char *p, size_t n, uint64_t seed);

/*
 * Split the tag text of a parsed line into tags[] (room for
 * STATSD_TAGS_MAX); *ntags gets their number. Empty elements (",,") are
 * skipped. Returns 0, or VIGIL_EPARSE with *why (too many tags, an empty
 * key). Does not allocate.
 */
int statsd_parse_tags(const struct statsd_line *l, struct statsd_tag *tags,
                      uint32_t *ntags, const char **why);

/*
 * Parse a decimal number: [+-] digits [. digits] [(e|E) [+-] digits], at
 * least one digit before the exponent, correctly rounded (as strtod in the
 * C locale), finite. No hex, no inf/nan, no spaces. Returns 0 or
 * VIGIL_EPARSE.
 */
int statsd_parse_number(const char *s, size_t len, double *out);

/*
 * Build the canonical key of a parsed line into buf (cap bytes, at least
 * STATSD_KEY_MAX + 8): the sanitized name, then, when there are tags, '|'
 * and key ':' value for each, sorted by sanitized key, separated by ','.
 * Tag keys and values never hold ',' or '|', keys never ':' and names
 * never '|', ':' or ',', so the key is unambiguous; a line whose name and
 * tags are already in this form ("name|a:1,b:2") gives itself back, which
 * lets the table find such lines without building their key. Sanitizing: name
 * bytes outside [A-Za-z0-9_.] become '_' and a name that then starts with a
 * digit or '.' gets a '_' in front; tag keys likewise with [A-Za-z0-9_]; the
 * key `instance` (the core's label) becomes `exported_instance`; control
 * characters in values become '_'; a tag without ':' gets the value "true";
 * a tag with an empty value is left out (the bus drops empty labels); when
 * a key repeats, the last value wins. name_max bounds the sanitized name's
 * length (the room left by the prefix and the longest suffix).
 *
 * *name_len receives the length of the name part. Eight zero bytes follow
 * the key in buf (for word-wise hashing). Returns 0 and the key's length
 * in *len, or VIGIL_EPARSE with *why.
 */
int statsd_key(const struct statsd_line *l, size_t name_max, char *buf,
               size_t cap, size_t *len, size_t *name_len, const char **why);

/* The name of a kind for messages: "counter", "gauge", "timer", "set". */
const char *statsd_kind_name(int kind);

#endif
