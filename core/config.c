/*
 * config - the INI configuration: inih does the tokenising, this file does
 * everything inih cannot: line numbers, empty sections, long lines, every
 * error instead of the first, ${ENV} substitution and option tables.
 *
 * How the pieces fit: ini_parse_stream() pulls lines through reader(),
 * which reads one physical line, counts it and classifies it the same way
 * inih will (blank, comment, section, key = value, continuation). Lines
 * inih would reject, or mangle, are reported here and handed to inih as a
 * blank line, so inih never sees an error and its own line count stays in
 * step with ours. Section headers are handled entirely in the reader
 * because inih neither reports empty sections nor passes section names
 * longer than 49 characters intact. on_value() then only ever sees lines
 * the reader accepted, and p->kind says which kind it is.
 *
 * All memory lives in an arena owned by struct cfg, freed by cfg_destroy().
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

/* Physical lines kept per read; anything past inih's limit is an error
 * anyway, so only the length of the rest is counted. */
#define RAW_MAX 256
/* A config of more lines than this is a mistake (or not a config). */
#define LINES_MAX 100000
#define CHUNK_SIZE 4096
/* The whole tree, values and lists included; a real config needs a tiny
 * fraction of this. */
#define ARENA_MAX (64u << 20)
/* Keys longer than this get no "did you mean" suggestion. */
#define KEY_CMP_MAX 64
/* Environment variable names are short; longer ones are rejected. */
#define ENV_NAME_MAX 128
/* At most this much of a bad value is quoted back in a message. */
#define SHOW_MAX 80

/* ------------------------------------------------------------------ */
/* Arena */

struct chunk {
    struct chunk *next;
    size_t size;
    size_t used;
    max_align_t data[];
};

/* The public structs are the first members, so a struct cfg_entry * from
 * the tree converts back to its struct entry (C11 6.7.2.1p15). */
struct entry {
    struct cfg_entry pub;
    size_t len;    /* strlen(pub.value) */
    int nlines;    /* physical lines joined into value */
    int cont_line; /* first continuation line, 0 if none */
    int bad;       /* substitution failed: reported, not to be applied */
};

struct section {
    struct cfg_section pub;
    struct cfg_entry **tail;
};

struct cfg {
    const char *path;
    const char *base; /* directory for relative paths; "" is the root */
    struct cfg_section *sections;
    struct cfg_section **tail;
    struct chunk *chunks;
    size_t total;  /* bytes in chunks, at most ARENA_MAX */
    int too_large; /* an allocation failed because of ARENA_MAX */
};

static void *arena_alloc(struct cfg *cfg, size_t size)
{
    const size_t align = alignof(max_align_t);
    struct chunk *c = cfg->chunks;
    size_t need;
    void *ptr;

    if (size > SIZE_MAX / 2) {
        return NULL;
    }
    need = (size + align - 1) / align * align;
    if (need == 0) {
        need = align;
    }
    if (c == NULL || c->size - c->used < need) {
        size_t cap = need > CHUNK_SIZE ? need : CHUNK_SIZE;

        if (cap > ARENA_MAX - cfg->total) {
            cfg->too_large = 1;
            return NULL;
        }
        c = malloc(sizeof(*c) + cap);
        if (c == NULL) {
            return NULL;
        }
        c->size = cap;
        c->used = 0;
        c->next = cfg->chunks;
        cfg->chunks = c;
        cfg->total += cap;
    }
    ptr = (char *)c->data + c->used;
    c->used += need;
    return ptr;
}

static char *arena_strndup(struct cfg *cfg, const char *s, size_t n)
{
    char *d = arena_alloc(cfg, n + 1);

    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static char *arena_strdup(struct cfg *cfg, const char *s)
{
    return arena_strndup(cfg, s, strlen(s));
}

/* ------------------------------------------------------------------ */
/* Diagnostics */

/*
 * Start an empty list of problems. Does not fail.
 */
void cfg_diag_init(struct cfg_diag *d)
{
    if (d != NULL) {
        d->n = 0;
        d->msg[0][0] = '\0';
    }
}

/*
 * Append one "file:line: message". Past CFG_DIAG_MAX messages only the
 * count grows, so a broken file cannot use unbounded memory. d may be
 * NULL (nothing is kept). Does not fail.
 */
void cfg_diag_add(struct cfg_diag *d, const char *fmt, ...)
{
    va_list ap;

    if (d == NULL) {
        return;
    }
    if (d->n < CFG_DIAG_MAX) {
        va_start(ap, fmt);
        vsnprintf(d->msg[d->n], sizeof(d->msg[d->n]), fmt, ap);
        va_end(ap);
    }
    if (d->n < UINT_MAX) {
        d->n++;
    }
}

/* The line number after the first ':' of "file:line: ...", or 0. */
static long diag_line(const char *msg)
{
    const char *colon = strchr(msg, ':');

    return colon ? strtol(colon + 1, NULL, 10) : 0;
}

/*
 * Order the kept messages by line, keeping discovery order for equal lines
 * (insertion sort: at most CFG_DIAG_MAX short entries). People read a
 * config top to bottom. Does not fail.
 */
void cfg_diag_sort(struct cfg_diag *d)
{
    unsigned n = d->n < CFG_DIAG_MAX ? d->n : CFG_DIAG_MAX;
    char tmp[VIGIL_ERR_MAX];

    for (unsigned i = 1; i < n; i++) {
        long li = diag_line(d->msg[i]);
        unsigned j = i;
        while (j > 0 && diag_line(d->msg[j - 1]) > li) {
            j--;
        }
        if (j == i) {
            continue;
        }
        memcpy(tmp, d->msg[i], sizeof(tmp));
        memmove(d->msg[j + 1], d->msg[j], (size_t)(i - j) * sizeof(tmp));
        memcpy(d->msg[j], tmp, sizeof(tmp));
    }
}

/* ------------------------------------------------------------------ */
/* Small text helpers */

static const char *skip_space(const char *s)
{
    while (*s != '\0' && isspace((unsigned char)*s)) {
        s++;
    }
    return s;
}

/* Length of s[0..n) without trailing white space. */
static size_t trim_end(const char *s, size_t n)
{
    while (n > 0 && isspace((unsigned char)s[n - 1])) {
        n--;
    }
    return n;
}

/*
 * The first of `chars` in s, or the start of an inline comment (';' after
 * white space), or the terminating NUL. This is inih's own rule
 * (ini_find_chars_or_comment), repeated here so that the reader predicts
 * exactly what inih will do with a line.
 */
static const char *find_sep(const char *s, const char *chars)
{
    int was_space = 0;

    while (*s != '\0' && strchr(chars, *s) == NULL &&
           !(was_space && *s == ';')) {
        was_space = isspace((unsigned char)*s);
        s++;
    }
    return s;
}

static int is_word_char(int c)
{
    return isalnum(c) || c == '_' || c == '.' || c == '-';
}

/* "[type name instance]" for messages. */
static void section_label(const struct cfg_section *s, char *buf, size_t n)
{
    snprintf(buf, n, "[%s%s%s%s%s]", s->type, s->name ? " " : "",
             s->name ? s->name : "", s->instance ? " " : "",
             s->instance ? s->instance : "");
}

/* ------------------------------------------------------------------ */
/* Value parsers */

/*
 * Parse "123" or "12.5" at s: all digits as one integer in *digits and the
 * number of digits after the point in *frac. Returns the end, or NULL when
 * there is no number or it does not fit.
 */
static const char *parse_decimal(const char *s, uint64_t *digits,
                                 unsigned *frac)
{
    uint64_t v = 0;
    unsigned nfrac = 0;
    unsigned d;
    int seen = 0;
    int point = 0;

    for (;; s++) {
        if (*s == '.' && !point && seen) {
            point = 1;
            if (!isdigit((unsigned char)s[1])) {
                return NULL;
            }
            continue;
        }
        if (!isdigit((unsigned char)*s)) {
            break;
        }
        d = (unsigned)(*s - '0');
        if (v > UINT64_MAX / 10 ||
            (v == UINT64_MAX / 10 && d > UINT64_MAX % 10) || nfrac >= 18) {
            return NULL;
        }
        v = v * 10 + d;
        seen = 1;
        if (point) {
            nfrac++;
        }
    }
    if (!seen) {
        return NULL;
    }
    *digits = v;
    *frac = nfrac;
    return s;
}

/*
 * digits / 10^frac * mult, exactly: fractions must come out as a whole
 * number of units ("0.5ms" is refused rather than rounded to 0).
 */
static int scale_exact(uint64_t digits, unsigned frac, uint64_t mult,
                       uint64_t *out)
{
    uint64_t div = 1;
    uint64_t prod;

    while (frac-- > 0) {
        div *= 10;
    }
    if (mult != 0 && digits > UINT64_MAX / mult) {
        return VIGIL_EINVAL;
    }
    prod = digits * mult;
    if (prod % div != 0) {
        return VIGIL_EINVAL;
    }
    *out = prod / div;
    return 0;
}

struct unit {
    const char *name;
    uint64_t mult;
};

/* Number, optional spaces, unit from the table ("" for a bare number). */
static int parse_with_unit(const char *text, const struct unit *units,
                           size_t nunits, int nocase, uint64_t *out)
{
    uint64_t digits;
    unsigned frac;
    const char *s;
    size_t i;

    if (text == NULL) {
        return VIGIL_EINVAL;
    }
    s = parse_decimal(text, &digits, &frac);
    if (s == NULL) {
        return VIGIL_EINVAL;
    }
    while (*s == ' ') {
        s++;
    }
    for (i = 0; i < nunits; i++) {
        int same = nocase ? strcasecmp(s, units[i].name) == 0
                          : strcmp(s, units[i].name) == 0;

        if (same) {
            return scale_exact(digits, frac, units[i].mult, out);
        }
    }
    return VIGIL_EINVAL;
}

/*
 * "250ms", "10s", "5m", "1h", "1d", "1.5s"; a bare number is seconds.
 * No sign: a negative duration is an error. Returns 0 or VIGIL_EINVAL.
 */
int cfg_parse_duration_ms(const char *text, int64_t *ms)
{
    static const struct unit units[] = {
        {"ms", 1},      {"s", 1000},     {"m", 60 * 1000},
        {"h", 3600000}, {"d", 86400000}, {"", 1000},
    };
    const size_t nunits = sizeof(units) / sizeof(units[0]);
    uint64_t v, total = 0;
    const char *p = text;
    char part[32];
    int parts = 0;

    if (parse_with_unit(text, units, nunits, 0, &v) == 0) {
        if (v > INT64_MAX) {
            return VIGIL_EINVAL;
        }
        *ms = (int64_t)v;
        return 0;
    }
    /* Compound forms such as "1m30s" or "2h15m": each part has a unit. */
    while (text != NULL && *p != '\0') {
        size_t num = strspn(p, "0123456789.");
        size_t unit = strspn(p + num, "msdh");
        if (num == 0 || unit == 0 || num + unit >= sizeof(part)) {
            return VIGIL_EINVAL;
        }
        memcpy(part, p, num + unit);
        part[num + unit] = '\0';
        if (parse_with_unit(part, units, nunits - 1, 0, &v) != 0 ||
            v > INT64_MAX - total) {
            return VIGIL_EINVAL;
        }
        total += v;
        p += num + unit;
        parts++;
    }
    if (parts < 2) {
        return VIGIL_EINVAL;
    }
    *ms = (int64_t)total;
    return 0;
}

/*
 * A size: "512", "512B", k/K/KB = 1000, KiB = 1024, and so on up to TB and
 * TiB. Suffixes match without regard to case, but "MB" always means 10^6
 * and "MiB" 2^20. Returns 0 or VIGIL_EINVAL.
 */
int cfg_parse_bytes(const char *text, uint64_t *bytes)
{
    static const struct unit units[] = {
        {"", 1},
        {"b", 1},
        {"k", 1000ULL},
        {"kb", 1000ULL},
        {"kib", 1ULL << 10},
        {"m", 1000000ULL},
        {"mb", 1000000ULL},
        {"mib", 1ULL << 20},
        {"g", 1000000000ULL},
        {"gb", 1000000000ULL},
        {"gib", 1ULL << 30},
        {"t", 1000000000000ULL},
        {"tb", 1000000000000ULL},
        {"tib", 1ULL << 40},
    };

    return parse_with_unit(text, units, sizeof(units) / sizeof(units[0]), 1,
                           bytes);
}

/*
 * yes/no, true/false, on/off, 1/0 in any case. Returns 0 or VIGIL_EINVAL.
 */
int cfg_parse_bool(const char *text, int *b)
{
    static const char *const yes[] = {"yes", "true", "on", "1"};
    static const char *const no[] = {"no", "false", "off", "0"};
    size_t i;

    if (text == NULL) {
        return VIGIL_EINVAL;
    }
    for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *b = 1;
            return 0;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *b = 0;
            return 0;
        }
    }
    return VIGIL_EINVAL;
}

/*
 * A decimal int64_t; the whole text must be the number (base 10 only, so
 * that "010" is ten, not eight). Returns 0 or VIGIL_EINVAL.
 */
int cfg_parse_int(const char *text, int64_t *v)
{
    char *end;
    long long r;

    if (text == NULL || *text == '\0' || isspace((unsigned char)*text)) {
        return VIGIL_EINVAL;
    }
    errno = 0;
    r = strtoll(text, &end, 10);
    if (*end != '\0' || errno == ERANGE) {
        return VIGIL_EINVAL;
    }
    *v = (int64_t)r;
    return 0;
}

/*
 * A finite double; the whole text must be the number. Returns 0 or
 * VIGIL_EINVAL.
 */
int cfg_parse_double(const char *text, double *v)
{
    char *end;
    double r;

    if (text == NULL || *text == '\0' || isspace((unsigned char)*text)) {
        return VIGIL_EINVAL;
    }
    errno = 0;
    r = strtod(text, &end);
    if (*end != '\0' || errno == ERANGE || !isfinite(r)) {
        return VIGIL_EINVAL;
    }
    *v = r;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Loading */

enum line_kind {
    LINE_OTHER, /* inih calls no handler for it */
    LINE_ENTRY, /* key = value */
    LINE_CONT,  /* indented continuation of the previous key */
};

struct parse {
    struct cfg *cfg;
    struct cfg_diag *diag;
    unsigned errors;
    FILE *f;       /* source: a file ... */
    const char *s; /* ... or a string */
    int line;
    int kind;    /* enum line_kind of the line inih is working on */
    int cont_ok; /* inih has a previous key: indented lines continue */
    int skip;    /* under a rejected header: drop entries silently */
    struct section *cur;
    struct entry *last; /* what a continuation line appends to */
    int oom;
    int eof;
};

static void report(struct parse *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A problem at the current line: "file:line: " is added here. */
static void report(struct parse *p, const char *fmt, ...)
{
    char msg[VIGIL_ERR_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cfg_diag_add(p->diag, "%s:%d: %s", p->cfg->path, p->line, msg);
    p->errors++;
}

static int src_getc(struct parse *p)
{
    if (p->f != NULL) {
        return getc(p->f);
    }
    if (*p->s == '\0') {
        return EOF;
    }
    return (unsigned char)*p->s++;
}

/*
 * Read one physical line. Keeps at most rawsz - 1 bytes in raw but counts
 * the whole line in *len (without "\n" or "\r\n"), so a long line is
 * consumed completely and the next read starts on the next line. Returns
 * 0 at end of input.
 */
static int read_line(struct parse *p, char *raw, size_t rawsz, size_t *len,
                     int *has_nul)
{
    size_t n = 0;
    size_t kept = 0;
    int any = 0;
    int prev = 0;
    int c;

    *has_nul = 0;
    while ((c = src_getc(p)) != EOF) {
        any = 1;
        if (c == '\n') {
            break;
        }
        if (c == '\0') {
            *has_nul = 1;
        }
        if (kept < rawsz - 1) {
            raw[kept++] = (char)c;
        }
        n++;
        prev = c;
    }
    if (!any) {
        return 0;
    }
    if (prev == '\r') {
        n--;
        if (kept > n) {
            kept = n;
        }
    }
    raw[kept] = '\0';
    *len = n;
    return 1;
}

/* Has a section with these words been seen? */
static const struct cfg_section *find_section(struct cfg *cfg,
                                              const char *const w[3])
{
    const struct cfg_section *s;

    for (s = cfg->sections; s != NULL; s = s->next) {
        const char *have[3] = {s->type, s->name, s->instance};
        int i;
        int same = 1;

        for (i = 0; i < 3 && same; i++) {
            if ((have[i] == NULL) != (w[i] == NULL) ||
                (have[i] != NULL && strcmp(have[i], w[i]) != 0)) {
                same = 0;
            }
        }
        if (same) {
            return s;
        }
    }
    return NULL;
}

/*
 * Split the text between '[' and ']' into one to three words, check them
 * and add the section. Every problem is reported; entries under a rejected
 * header are dropped (p->skip) so that one bad header gives one message.
 */
static void section_header(struct parse *p, const char *text, size_t n)
{
    char buf[RAW_MAX];
    char *w[4] = {NULL, NULL, NULL, NULL};
    const struct cfg_section *dup;
    struct section *sec;
    int nwords = 0;
    size_t i;

    p->skip = 1;
    p->cur = NULL;
    memcpy(buf, text, n);
    buf[n] = '\0';
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)buf[i];

        if (c == ' ' || c == '\t') {
            continue;
        }
        if (!is_word_char(c)) {
            if (isprint(c)) {
                report(p,
                       "bad character '%c' in section header [%s]; use "
                       "letters, digits, '_', '.' and '-'",
                       c, buf);
            } else {
                report(p,
                       "bad byte 0x%02x in section header; use letters, "
                       "digits, '_', '.' and '-'",
                       c);
            }
            return;
        }
    }
    for (i = 0; i < n; i++) {
        if (buf[i] == ' ' || buf[i] == '\t') {
            buf[i] = '\0';
        } else if (i == 0 || buf[i - 1] == '\0') {
            if (nwords < 4) {
                w[nwords] = &buf[i];
            }
            nwords++;
        }
    }
    if (nwords == 0) {
        report(p, "empty section header []");
        return;
    }
    if (nwords > 3) {
        /* The words were cut apart above; show the header as written. */
        report(p,
               "section header [%.*s] has %d words; expected [type], "
               "[type name] or [type name instance]",
               (int)n, text, nwords);
        return;
    }
    dup = find_section(p->cfg, (const char *const *)w);
    if (dup != NULL) {
        char label[RAW_MAX + 8];

        section_label(dup, label, sizeof(label));
        report(p, "duplicate section %s (first at line %d)", label, dup->line);
        return;
    }
    sec = arena_alloc(p->cfg, sizeof(*sec));
    if (sec == NULL) {
        p->oom = 1;
        return;
    }
    memset(sec, 0, sizeof(*sec));
    sec->pub.type = arena_strdup(p->cfg, w[0]);
    sec->pub.name = w[1] ? arena_strdup(p->cfg, w[1]) : NULL;
    sec->pub.instance = w[2] ? arena_strdup(p->cfg, w[2]) : NULL;
    if (sec->pub.type == NULL || (w[1] && sec->pub.name == NULL) ||
        (w[2] && sec->pub.instance == NULL)) {
        p->oom = 1;
        return;
    }
    sec->pub.file = p->cfg->path;
    sec->pub.line = p->line;
    sec->tail = &sec->pub.entries;
    *p->cfg->tail = &sec->pub;
    p->cfg->tail = &sec->pub.next;
    p->cur = sec;
    p->skip = 0;
}

/*
 * Decide what inih will make of this line, report what it would reject,
 * and return 1 to hand the line to inih or 0 to hand it a blank line.
 */
static int classify(struct parse *p, const char *raw)
{
    const char *start = skip_space(raw);
    const char *end;
    size_t n;

    if (*start == '\0' || *start == ';' || *start == '#') {
        /* Blank lines and comments keep inih's previous key, so an
         * indented line after them still continues it. */
        return 1;
    }
    if (p->cont_ok && start > raw) {
        p->kind = LINE_CONT;
        return 1;
    }
    p->last = NULL;
    if (*start == '[') {
        end = find_sep(start + 1, "]");
        if (*end != ']') {
            /* inih would leave the following keys in the previous
             * section; drop them instead. */
            report(p, "unterminated section header (missing ']')");
            p->skip = 1;
            p->cur = NULL;
            return 0;
        }
        /* inih accepts this header and forgets its previous key. */
        p->cont_ok = 0;
        n = (size_t)(end - (start + 1));
        end = skip_space(end + 1);
        if (*end != '\0' && !(*end == ';' && isspace((unsigned char)end[-1]))) {
            report(p, "unexpected text after ']' (an inline comment "
                      "starts with ' ;')");
            p->skip = 1;
            p->cur = NULL;
            return 1;
        }
        section_header(p, start + 1, n);
        return 1;
    }
    end = find_sep(start, "=:");
    if (*end != '=' && *end != ':') {
        report(p, "expected 'key = value' or a [section] header");
        return 0;
    }
    n = trim_end(start, (size_t)(end - start));
    if (n == 0) {
        report(p, "missing key before '%c'", *end);
        return 0;
    }
    if (!p->skip && p->cur == NULL) {
        report(p, "key '%.*s' is outside of any section", (int)n, start);
        return 0;
    }
    p->kind = LINE_ENTRY;
    p->cont_ok = 1;
    return 1;
}

/*
 * The ini_reader: one physical line per call, so that inih's line count
 * and ours agree. Long lines, lines with NUL bytes and lines inih would
 * reject become blank lines after they have been reported.
 */
static char *reader(char *buf, int size, void *stream)
{
    struct parse *p = stream;
    char raw[RAW_MAX];
    size_t len;
    size_t max;
    int nul;

    if (p->eof || p->oom || size < 2) {
        return NULL;
    }
    if (!read_line(p, raw, sizeof(raw), &len, &nul)) {
        p->eof = 1;
        return NULL;
    }
    p->line++;
    p->kind = LINE_OTHER;
    buf[0] = '\0';
    if (p->line > LINES_MAX) {
        report(p, "too many lines (at most %d)", LINES_MAX);
        p->eof = 1;
        return NULL;
    }
    if (p->line == 1 && len >= 3 && memcmp(raw, "\xEF\xBB\xBF", 3) == 0) {
        /* Strip the BOM here: inih would count it against the line. */
        size_t kept = len < sizeof(raw) - 1 ? len : sizeof(raw) - 1;

        memmove(raw, raw + 3, kept - 3 + 1);
        len -= 3;
    }
    max = (size_t)size - 1;
    if (max > sizeof(raw) - 1) {
        max = sizeof(raw) - 1;
    }
    if (len > max) {
        /* inih would cut the value and parse the rest as a new line. */
        report(p, "line too long (at most %zu characters)", max);
        p->last = NULL;
        return buf;
    }
    if (nul) {
        report(p, "NUL byte in line");
        p->last = NULL;
        return buf;
    }
    if (classify(p, raw)) {
        memcpy(buf, raw, len + 1);
    }
    return buf;
}

/*
 * Remove one pair of matching quotes around a whole value: inih keeps
 * them, but `password = "x"` surely means x. A value that opens a quote
 * and never closes it was most likely cut by a ' ;' comment, which no
 * quoting protects from; say so. Returns 0 or -1 (reported).
 */
static int unquote(struct parse *p, const char *key, const char **v, size_t *n)
{
    const char *s = *v;
    char q;

    if (*n == 0 || (s[0] != '"' && s[0] != '\'')) {
        return 0;
    }
    q = s[0];
    if (*n >= 2 && s[*n - 1] == q && memchr(s + 1, q, *n - 2) == NULL) {
        *v = s + 1;
        *n -= 2;
        return 0;
    }
    if (memchr(s + 1, q, *n - 1) == NULL) {
        report(p,
               "unterminated quote in the value of '%s' (note that ' ;' "
               "starts a comment, even inside quotes)",
               key);
        return -1;
    }
    return 0;
}

/* Append n bytes to out (capacity CFG_VALUE_MAX + 1); -1 when full. */
static int put(char *out, size_t *len, const char *s, size_t n)
{
    if (n > CFG_VALUE_MAX - *len) {
        return -1;
    }
    memcpy(out + *len, s, n);
    *len += n;
    out[*len] = '\0';
    return 0;
}

/*
 * Copy value to out, replacing ${NAME}, ${NAME:-default} and $$. A default
 * is taken literally up to the first '}' and, as in the shell, also
 * replaces an empty variable. A '$' followed by anything else is an error
 * rather than a literal so that `$HOME` does not silently stay as written.
 * Every problem in the value is reported. Returns 0 or -1.
 */
static int expand(struct parse *p, const char *key, const char *value,
                  char *out, size_t *outlen)
{
    size_t n = strlen(value);
    size_t i = 0;
    int rc = 0;

    *outlen = 0;
    out[0] = '\0';
    if (unquote(p, key, &value, &n) != 0) {
        return -1;
    }
    while (i < n) {
        const char *start;
        const char *close;
        const char *colon;
        const char *sub = NULL;
        size_t sublen = 0;
        size_t namelen;
        char name[ENV_NAME_MAX];
        size_t j;

        if (value[i] != '$') {
            start = value + i;
            close = memchr(start, '$', n - i);
            sublen = close ? (size_t)(close - start) : n - i;
            if (put(out, outlen, start, sublen) != 0) {
                goto too_long;
            }
            i += sublen;
            continue;
        }
        if (i + 1 < n && value[i + 1] == '$') {
            if (put(out, outlen, "$", 1) != 0) {
                goto too_long;
            }
            i += 2;
            continue;
        }
        if (i + 1 >= n || value[i + 1] != '{') {
            report(p,
                   "'$' in the value of '%s' must start ${NAME} "
                   "(write $$ for a literal $)",
                   key);
            rc = -1;
            i++;
            continue;
        }
        start = value + i + 2;
        close = memchr(start, '}', n - i - 2);
        if (close == NULL) {
            report(p, "unterminated '${' in the value of '%s'", key);
            return -1;
        }
        colon = memchr(start, ':', (size_t)(close - start));
        namelen = (size_t)((colon ? colon : close) - start);
        i = (size_t)(close - value) + 1;
        for (j = 0; j < namelen; j++) {
            unsigned char c = (unsigned char)start[j];

            if (!(c == '_' || isalpha(c) || (j > 0 && isdigit(c)))) {
                break;
            }
        }
        if (namelen == 0 || j < namelen || namelen >= sizeof(name) ||
            (colon != NULL && colon[1] != '-')) {
            /* Only the name is shown: what follows ':' may be meant as
             * a default, and the key may be a secret. */
            report(p,
                   "bad variable reference '${%.*s%s}' in the value of "
                   "'%s'; expected ${NAME} or ${NAME:-default}",
                   (int)namelen, start, colon ? ":..." : "", key);
            rc = -1;
            continue;
        }
        memcpy(name, start, namelen);
        name[namelen] = '\0';
        sub = getenv(name);
        if (colon != NULL && (sub == NULL || *sub == '\0')) {
            sub = colon + 2;
            sublen = (size_t)(close - sub);
        } else if (sub == NULL) {
            report(p, "environment variable %s is not set", name);
            rc = -1;
            continue;
        } else {
            sublen = strlen(sub);
        }
        if (put(out, outlen, sub, sublen) != 0) {
            goto too_long;
        }
    }
    return rc;

too_long:
    report(p, "the value of '%s' is too long (at most %d characters)", key,
           CFG_VALUE_MAX);
    return -1;
}

static void add_entry(struct parse *p, const char *key, const char *value)
{
    char buf[CFG_VALUE_MAX + 1];
    struct entry *e;
    size_t len;

    e = arena_alloc(p->cfg, sizeof(*e));
    if (e == NULL) {
        p->oom = 1;
        return;
    }
    memset(e, 0, sizeof(*e));
    e->pub.key = arena_strdup(p->cfg, key);
    e->pub.line = p->line;
    e->nlines = 1;
    if (expand(p, key, value, buf, &len) != 0) {
        /* Keep the entry, so that it is neither "missing" nor "unknown"
         * later, but never apply it: its error is already reported. */
        e->bad = 1;
        e->pub.value = arena_strdup(p->cfg, value);
        e->len = strlen(value);
    } else {
        e->pub.value = arena_strndup(p->cfg, buf, len);
        e->len = len;
    }
    if (e->pub.key == NULL || e->pub.value == NULL) {
        p->oom = 1;
        return;
    }
    *p->cur->tail = &e->pub;
    p->cur->tail = &e->pub.next;
    p->last = e;
}

static void continue_entry(struct parse *p, const char *value)
{
    char buf[CFG_VALUE_MAX + 1];
    struct entry *e = p->last;
    size_t len;
    char *joined;

    if (expand(p, e->pub.key, value, buf, &len) != 0) {
        e->bad = 1;
        return;
    }
    if (e->cont_line == 0) {
        e->cont_line = p->line;
    }
    e->nlines++;
    if (e->bad) {
        return;
    }
    if (e->len + 1 + len > CFG_VALUE_MAX) {
        report(p, "the value of '%s' is too long (at most %d characters)",
               e->pub.key, CFG_VALUE_MAX);
        e->bad = 1;
        return;
    }
    joined = arena_alloc(p->cfg, e->len + 1 + len + 1);
    if (joined == NULL) {
        p->oom = 1;
        return;
    }
    memcpy(joined, e->pub.value, e->len);
    joined[e->len] = '\n';
    memcpy(joined + e->len + 1, buf, len + 1);
    e->pub.value = joined;
    e->len += 1 + len;
}

/* The ini_handler. inih's section argument is ignored: the reader tracks
 * sections itself (see the top of this file). */
static int on_value(void *user, const char *section, const char *name,
                    const char *value)
{
    struct parse *p = user;

    (void)section;
    if (p->oom || p->skip) {
        return 1;
    }
    if (p->kind == LINE_ENTRY && p->cur != NULL) {
        add_entry(p, name, value);
    } else if (p->kind == LINE_CONT && p->last != NULL) {
        continue_entry(p, value);
    }
    return 1;
}

/* Directory of path, absolute when the working directory is known, so
 * that a later chdir() does not move relative paths. */
static const char *base_dir(struct cfg *cfg, const char *path)
{
    char cwd[PATH_MAX];
    const char *slash = path ? strrchr(path, '/') : NULL;
    size_t dirlen = slash ? (size_t)(slash - path) : 0;
    size_t cwdlen;
    char *base;

    if (path != NULL && path[0] == '/') {
        return arena_strndup(cfg, path, dirlen);
    }
    if (getcwd(cwd, sizeof(cwd)) == NULL) {
        return arena_strndup(cfg, slash ? path : ".", slash ? dirlen : 1);
    }
    cwdlen = strlen(cwd);
    while (cwdlen > 0 && cwd[cwdlen - 1] == '/') {
        cwdlen--;
    }
    base = arena_alloc(cfg, cwdlen + 1 + dirlen + 1);
    if (base != NULL) {
        memcpy(base, cwd, cwdlen);
        base[cwdlen] = '\0';
        if (dirlen > 0) {
            base[cwdlen] = '/';
            memcpy(base + cwdlen + 1, path, dirlen);
            base[cwdlen + 1 + dirlen] = '\0';
        }
    }
    return base;
}

/* Parse from f or text into a new cfg; path names it in messages. */
static int load(const char *path, FILE *f, const char *text, struct cfg **out,
                struct cfg_diag *diag)
{
    struct parse p;
    struct cfg *cfg;
    int rc;

    *out = NULL;
    cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL) {
        cfg_diag_add(diag, "%s: out of memory", path);
        return VIGIL_ENOMEM;
    }
    cfg->tail = &cfg->sections;
    cfg->path = arena_strdup(cfg, path);
    cfg->base = base_dir(cfg, f != NULL ? path : NULL);
    if (cfg->path == NULL || cfg->base == NULL) {
        cfg_diag_add(diag, "%s: out of memory", path);
        rc = VIGIL_ENOMEM;
        goto out;
    }

    memset(&p, 0, sizeof(p));
    p.cfg = cfg;
    p.diag = diag;
    p.f = f;
    p.s = text;
    rc = ini_parse_stream(reader, &p, on_value, &p);
    if (cfg->too_large) {
        /* Not out of memory: the input is unreasonable. Keep what was
         * parsed, as for any other config error. */
        cfg_diag_add(diag, "%s: configuration too large (over %u MiB)", path,
                     ARENA_MAX >> 20);
        p.errors++;
    } else if (p.oom || rc == -2) {
        cfg_diag_add(diag, "%s: out of memory", path);
        rc = VIGIL_ENOMEM;
        goto out;
    }
    if (rc != 0 && p.errors == 0) {
        /* The reader hands inih nothing it rejects, so this means inih
         * and the reader disagree; still never let it pass. */
        p.line = rc;
        report(&p, "syntax error");
    }
    if (f != NULL && ferror(f)) {
        cfg_diag_add(diag, "%s: read error: %s", path, strerror(errno));
        p.errors++;
    }
    rc = p.errors > 0 ? VIGIL_ECONFIG : 0;
    *out = cfg;
    cfg = NULL;

out:
    cfg_destroy(cfg);
    return rc;
}

/*
 * Parse the file at path into a new tree (see config.h). On VIGIL_ENOENT
 * diag also says why the file could not be opened.
 */
int cfg_load(const char *path, struct cfg **out, struct cfg_diag *diag)
{
    struct stat st;
    FILE *f;
    int rc;

    *out = NULL;
    f = fopen(path, "re");
    if (f == NULL) {
        cfg_diag_add(diag, "%s: cannot open: %s", path, strerror(errno));
        return VIGIL_ENOENT;
    }
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        cfg_diag_add(diag, "%s: cannot open: %s", path, strerror(EISDIR));
        fclose(f);
        return VIGIL_ENOENT;
    }
    rc = load(path, f, NULL, out, diag);
    fclose(f);
    return rc;
}

/*
 * Parse text (borrowed for the call) into a new tree; relative paths then
 * resolve against the working directory.
 */
int cfg_load_string(const char *name, const char *text, struct cfg **out,
                    struct cfg_diag *diag)
{
    return load(name, NULL, text, out, diag);
}

/*
 * Free the tree and everything cfg_apply() stored. Accepts NULL.
 */
void cfg_destroy(struct cfg *cfg)
{
    struct chunk *c;
    struct chunk *next;

    if (cfg == NULL) {
        return;
    }
    for (c = cfg->chunks; c != NULL; c = next) {
        next = c->next;
        free(c);
    }
    free(cfg);
}

/*
 * The name the tree was loaded from; owned by cfg.
 */
const char *cfg_path(const struct cfg *cfg)
{
    return cfg->path;
}

static int type_matches(const struct cfg_section *s, const char *type)
{
    return type == NULL || strcmp(s->type, type) == 0;
}

/*
 * First section of type (any type when NULL), marked claimed; NULL when
 * there is none.
 */
struct cfg_section *cfg_first(struct cfg *cfg, const char *type)
{
    struct cfg_section *s;

    if (cfg == NULL) {
        return NULL;
    }
    for (s = cfg->sections; s != NULL; s = s->next) {
        if (type_matches(s, type)) {
            s->claimed = 1;
            return s;
        }
    }
    return NULL;
}

/*
 * The section of type after sec, marked claimed; NULL at the end.
 */
struct cfg_section *cfg_next(struct cfg_section *sec, const char *type)
{
    struct cfg_section *s;

    if (sec == NULL) {
        return NULL;
    }
    for (s = sec->next; s != NULL; s = s->next) {
        if (type_matches(s, type)) {
            s->claimed = 1;
            return s;
        }
    }
    return NULL;
}

/*
 * The first entry for key in sec (the one cfg_apply uses for scalars), or
 * NULL. Borrowed from the cfg.
 */
const struct cfg_entry *cfg_get(const struct cfg_section *sec, const char *key)
{
    const struct cfg_entry *e;

    if (sec == NULL) {
        return NULL;
    }
    for (e = sec->entries; e != NULL; e = e->next) {
        if (strcmp(e->key, key) == 0) {
            return e;
        }
    }
    return NULL;
}

/*
 * Report sections no module claimed; returns how many.
 */
unsigned cfg_check_unclaimed(struct cfg *cfg, const char *known,
                             struct cfg_diag *diag)
{
    const struct cfg_section *s;
    char label[RAW_MAX + 8];
    unsigned n = 0;

    if (cfg == NULL) {
        return 0;
    }
    for (s = cfg->sections; s != NULL; s = s->next) {
        if (s->claimed) {
            continue;
        }
        section_label(s, label, sizeof(label));
        if (known != NULL && *known != '\0') {
            cfg_diag_add(diag, "%s:%d: unknown section %s; expected one of: %s",
                         s->file, s->line, label, known);
        } else {
            cfg_diag_add(diag, "%s:%d: unknown section %s", s->file, s->line,
                         label);
        }
        n++;
    }
    return n;
}

/*
 * path relative to the config file's directory (absolute paths unchanged),
 * copied into the cfg. NULL only when out of memory.
 */
const char *cfg_resolve_path(struct cfg *cfg, const char *path)
{
    size_t blen;
    size_t plen;
    char *r;

    if (path == NULL) {
        return NULL;
    }
    if (path[0] == '/') {
        return arena_strdup(cfg, path);
    }
    while (path[0] == '.' && path[1] == '/') {
        path += 2;
        while (path[0] == '/') {
            path++;
        }
    }
    blen = strlen(cfg->base);
    plen = strlen(path);
    if (plen == 0) {
        return blen > 0 ? arena_strdup(cfg, cfg->base) : arena_strdup(cfg, "/");
    }
    r = arena_alloc(cfg, blen + 1 + plen + 1);
    if (r != NULL) {
        memcpy(r, cfg->base, blen);
        r[blen] = '/';
        memcpy(r + blen + 1, path, plen + 1);
    }
    return r;
}

/* ------------------------------------------------------------------ */
/* Applying option tables */

struct apply {
    struct cfg *cfg;
    struct cfg_diag *diag;
    const struct cfg_section *sec;
    char label[RAW_MAX + 8];
    unsigned errors;
    int oom;
};

static void apply_report(struct apply *a, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A problem at line (0: no line, e.g. defaults without a section). */
static void apply_report(struct apply *a, int line, const char *fmt, ...)
{
    char msg[VIGIL_ERR_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (line > 0) {
        cfg_diag_add(a->diag, "%s:%d: %s", a->cfg->path, line, msg);
    } else {
        cfg_diag_add(a->diag, "%s: %s", a->cfg->path, msg);
    }
    a->errors++;
}

/* What a value of this option looks like, for messages. */
static void expected(const struct vigil_option *o, char *buf, size_t n)
{
    size_t i;
    size_t len;

    switch (o->type) {
    case VIGIL_OPT_INT:
        snprintf(buf, n, "a whole number such as 42 or -7");
        break;
    case VIGIL_OPT_DOUBLE:
        snprintf(buf, n, "a number such as 0.5, 12 or 1e3");
        break;
    case VIGIL_OPT_BOOL:
        snprintf(buf, n, "yes/no, true/false, on/off or 1/0");
        break;
    case VIGIL_OPT_DURATION:
        snprintf(buf, n, "a duration such as 500ms, 10s, 5m");
        break;
    case VIGIL_OPT_BYTES:
        snprintf(buf, n, "a size such as 512, 64KiB, 10MB, 1GiB");
        break;
    case VIGIL_OPT_ENUM:
        snprintf(buf, n, "one of: %s", o->choices ? o->choices : "");
        /* "a|b|c" reads better as "a, b, c"; widen each '|' in place
         * while there is room in buf. */
        len = strlen(buf);
        for (i = 0; i < len; i++) {
            if (buf[i] == '|' && len + 1 < n) {
                memmove(buf + i + 2, buf + i + 1, len - i);
                buf[i] = ',';
                buf[i + 1] = ' ';
                len++;
            }
        }
        break;
    default:
        snprintf(buf, n, "a value");
        break;
    }
}

/* Index of text in "a|b|c", or -1. */
static int enum_index(const char *choices, const char *text)
{
    size_t tlen = strlen(text);
    const char *s = choices;
    int i = 0;

    if (choices == NULL) {
        return -1;
    }
    for (;;) {
        const char *bar = strchr(s, '|');
        size_t n = bar ? (size_t)(bar - s) : strlen(s);

        if (n == tlen && strncmp(s, text, n) == 0) {
            return i;
        }
        if (bar == NULL) {
            return -1;
        }
        s = bar + 1;
        i++;
    }
}

/* Count, or with v fill, the non-empty trimmed lines of text. */
static size_t list_lines(struct apply *a, const char *text, const char **v)
{
    size_t n = 0;

    while (*text != '\0') {
        const char *nl = strchr(text, '\n');
        size_t len = nl ? (size_t)(nl - text) : strlen(text);
        const char *s = text;

        while (len > 0 && isspace((unsigned char)*s)) {
            s++;
            len--;
        }
        len = trim_end(s, len);
        if (len > 0) {
            if (v != NULL) {
                v[n] = arena_strndup(a->cfg, s, len);
                if (v[n] == NULL) {
                    a->oom = 1;
                    return n;
                }
            }
            n++;
        }
        if (nl == NULL) {
            break;
        }
        text = nl + 1;
    }
    return n;
}

/* Store a list made of the lines of texts[0..ntexts) in field. */
static void store_list(struct apply *a, const char *const *texts, size_t ntexts,
                       void *field)
{
    struct vigil_list list = {0, NULL};
    const char **v;
    size_t total = 0;
    size_t i;

    for (i = 0; i < ntexts; i++) {
        total += list_lines(a, texts[i], NULL);
    }
    if (total > 0) {
        v = arena_alloc(a->cfg, total * sizeof(*v));
        if (v == NULL) {
            a->oom = 1;
            return;
        }
        for (i = 0; i < ntexts && !a->oom; i++) {
            list.n += list_lines(a, texts[i], v + list.n);
        }
        if (a->oom) {
            return;
        }
        list.v = v;
    }
    memcpy(field, &list, sizeof(list));
}

/*
 * Convert text for option o and store it in field. Strings are copied
 * into the cfg so that it owns everything it stores. Returns 0,
 * VIGIL_EINVAL (bad text) or VIGIL_ENOMEM.
 */
static int convert(struct apply *a, const struct vigil_option *o,
                   const char *text, void *field)
{
    int64_t i64;
    uint64_t u64;
    double d;
    int b;
    const char *s;

    switch (o->type) {
    case VIGIL_OPT_STRING:
        s = arena_strdup(a->cfg, text);
        if (s == NULL) {
            return VIGIL_ENOMEM;
        }
        memcpy(field, &s, sizeof(s));
        return 0;
    case VIGIL_OPT_INT:
        if (cfg_parse_int(text, &i64) != 0) {
            return VIGIL_EINVAL;
        }
        memcpy(field, &i64, sizeof(i64));
        return 0;
    case VIGIL_OPT_DOUBLE:
        if (cfg_parse_double(text, &d) != 0) {
            return VIGIL_EINVAL;
        }
        memcpy(field, &d, sizeof(d));
        return 0;
    case VIGIL_OPT_BOOL:
        if (cfg_parse_bool(text, &b) != 0) {
            return VIGIL_EINVAL;
        }
        memcpy(field, &b, sizeof(b));
        return 0;
    case VIGIL_OPT_DURATION:
        if (cfg_parse_duration_ms(text, &i64) != 0) {
            return VIGIL_EINVAL;
        }
        memcpy(field, &i64, sizeof(i64));
        return 0;
    case VIGIL_OPT_BYTES:
        if (cfg_parse_bytes(text, &u64) != 0) {
            return VIGIL_EINVAL;
        }
        memcpy(field, &u64, sizeof(u64));
        return 0;
    case VIGIL_OPT_ENUM:
        b = enum_index(o->choices, text);
        if (b < 0) {
            return VIGIL_EINVAL;
        }
        memcpy(field, &b, sizeof(b));
        return 0;
    case VIGIL_OPT_LIST:
        store_list(a, &text, 1, field);
        return a->oom ? VIGIL_ENOMEM : 0;
    default:
        return VIGIL_EINVAL;
    }
}

static int known_type(int type)
{
    return type >= VIGIL_OPT_STRING && type <= VIGIL_OPT_LIST;
}

/* The zero value of the option's type, for options without a default. */
static void set_zero(const struct vigil_option *o, void *field)
{
    static const struct vigil_list empty = {0, NULL};
    const char *null = NULL;
    int64_t i64 = 0;
    uint64_t u64 = 0;
    double d = 0.0;
    int i = 0;

    switch (o->type) {
    case VIGIL_OPT_STRING:
        memcpy(field, &null, sizeof(null));
        break;
    case VIGIL_OPT_INT:
    case VIGIL_OPT_DURATION:
        memcpy(field, &i64, sizeof(i64));
        break;
    case VIGIL_OPT_BYTES:
        memcpy(field, &u64, sizeof(u64));
        break;
    case VIGIL_OPT_DOUBLE:
        memcpy(field, &d, sizeof(d));
        break;
    case VIGIL_OPT_BOOL:
    case VIGIL_OPT_ENUM:
        memcpy(field, &i, sizeof(i));
        break;
    case VIGIL_OPT_LIST:
        memcpy(field, &empty, sizeof(empty));
        break;
    default:
        break;
    }
}

/* Defaults come from our own option tables, so a bad one is our bug; it
 * is reported like a config error so that it cannot go unnoticed. */
static void set_default(struct apply *a, const struct vigil_option *o,
                        void *dst)
{
    void *field = (char *)dst + o->offset;
    int line = a->sec ? a->sec->line : 0;
    char exp[VIGIL_ERR_MAX];
    int rc;

    if (!known_type(o->type)) {
        apply_report(a, line, "option '%s' has an unknown type %d", o->key,
                     o->type);
        return;
    }
    if (o->type == VIGIL_OPT_ENUM && (o->choices == NULL || !*o->choices)) {
        apply_report(a, line, "enum option '%s' has no choices", o->key);
        return;
    }
    if (o->def == NULL) {
        set_zero(o, field);
        return;
    }
    rc = convert(a, o, o->def, field);
    if (rc == VIGIL_ENOMEM) {
        a->oom = 1;
    } else if (rc != 0) {
        expected(o, exp, sizeof(exp));
        if (o->flags & VIGIL_OPT_SECRET) {
            apply_report(a, line,
                         "bad default for '%s' in the option table: "
                         "expected %s",
                         o->key, exp);
        } else {
            apply_report(a, line,
                         "bad default '%s' for '%s' in the option table: "
                         "expected %s",
                         o->def, o->key, exp);
        }
    }
}

static const struct vigil_option *find_option(const struct vigil_option *opts,
                                              const char *key)
{
    const struct vigil_option *o;

    for (o = opts; o != NULL && o->key != NULL; o++) {
        if (strcmp(o->key, key) == 0) {
            return o;
        }
    }
    return NULL;
}

static int in_extra(const char *const *extra, const char *key)
{
    for (; extra != NULL && *extra != NULL; extra++) {
        if (strcmp(*extra, key) == 0) {
            return 1;
        }
    }
    return 0;
}

/*
 * Optimal string alignment distance (Levenshtein plus swapping two
 * neighbours, the commonest typo), ignoring case so that "URL" finds
 * "url". UINT_MAX for keys too long to bother.
 */
static unsigned edit_distance(const char *a, const char *b)
{
    unsigned rows[3][KEY_CMP_MAX + 1];
    unsigned *pp;
    unsigned *prev;
    unsigned *cur;
    size_t la = strlen(a);
    size_t lb = strlen(b);
    size_t i;
    size_t j;

    if (la > KEY_CMP_MAX || lb > KEY_CMP_MAX) {
        return UINT_MAX;
    }
    pp = rows[0];
    prev = rows[1];
    cur = rows[2];
    for (j = 0; j <= lb; j++) {
        prev[j] = (unsigned)j;
    }
    for (i = 1; i <= la; i++) {
        unsigned *t;

        cur[0] = (unsigned)i;
        for (j = 1; j <= lb; j++) {
            int ca = tolower((unsigned char)a[i - 1]);
            int cb = tolower((unsigned char)b[j - 1]);
            unsigned cost = ca == cb ? 0 : 1;
            unsigned v = prev[j - 1] + cost;

            if (prev[j] + 1 < v) {
                v = prev[j] + 1;
            }
            if (cur[j - 1] + 1 < v) {
                v = cur[j - 1] + 1;
            }
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == cb && pp[j - 2] + 1 < v) {
                v = pp[j - 2] + 1;
            }
            cur[j] = v;
        }
        t = pp;
        pp = prev;
        prev = cur;
        cur = t;
    }
    return prev[lb];
}

/* Consider one candidate key for "did you mean". */
static void consider(const char *key, const char *cand, const char **best,
                     unsigned *bestd)
{
    unsigned d = edit_distance(key, cand);
    size_t len = strlen(cand);
    /* Close means at most one edit per three characters, one or two in
     * all; beyond that the suggestion is more confusing than a list. */
    unsigned limit = len < 6 ? 1 : 2;

    if (d <= limit && d < *bestd) {
        *best = cand;
        *bestd = d;
    }
}

/* Append key to the comma-separated list in buf; once the next key no
 * longer fits, end the list with "..." instead. */
static void list_key(char *buf, size_t n, const char *key)
{
    size_t len = strlen(buf);
    const char *sep = len > 0 ? ", " : "";

    /* Adding a key always leaves room for ", ..." after it. */
    if (len + strlen(sep) + strlen(key) + sizeof(", ...") > n) {
        if (len < 3 || strcmp(buf + len - 3, "...") != 0) {
            snprintf(buf + len, n - len, "%s...", sep);
        }
        return;
    }
    snprintf(buf + len, n - len, "%s%s", sep, key);
}

static void unknown_key(struct apply *a, const struct vigil_option *opts,
                        const char *const *extra, const struct cfg_entry *e)
{
    const struct vigil_option *o;
    const char *const *x;
    const char *best = NULL;
    unsigned bestd = UINT_MAX;
    char keys[VIGIL_ERR_MAX / 2];

    keys[0] = '\0';
    for (o = opts; o != NULL && o->key != NULL; o++) {
        consider(e->key, o->key, &best, &bestd);
        list_key(keys, sizeof(keys), o->key);
    }
    for (x = extra; x != NULL && *x != NULL; x++) {
        consider(e->key, *x, &best, &bestd);
        list_key(keys, sizeof(keys), *x);
    }
    if (best != NULL) {
        apply_report(a, e->line, "unknown key '%s' in %s; did you mean '%s'?",
                     e->key, a->label, best);
    } else if (keys[0] != '\0') {
        apply_report(a, e->line, "unknown key '%s' in %s; valid keys: %s",
                     e->key, a->label, keys);
    } else {
        apply_report(a, e->line, "unknown key '%s' in %s; it takes no keys",
                     e->key, a->label);
    }
}

/* Apply one entry whose key is option o (not a list). */
static void apply_scalar(struct apply *a, const struct vigil_option *o,
                         struct cfg_entry *e, void *dst)
{
    const struct entry *pe = (const struct entry *)e;
    const struct cfg_entry *first = cfg_get(a->sec, e->key);
    char exp[VIGIL_ERR_MAX];
    int rc;

    if (first != e) {
        apply_report(a, e->line, "duplicate key '%s' (first at line %d)",
                     e->key, first->line);
        return;
    }
    if (pe->bad) {
        return;
    }
    if (pe->nlines > 1) {
        apply_report(a, pe->cont_line,
                     "indented line continues '%s', but only list options "
                     "take several lines",
                     e->key);
        return;
    }
    rc = convert(a, o, e->value, (char *)dst + o->offset);
    if (rc == VIGIL_ENOMEM) {
        a->oom = 1;
    } else if (rc != 0) {
        expected(o, exp, sizeof(exp));
        if (o->flags & VIGIL_OPT_SECRET) {
            apply_report(a, e->line, "bad value for '%s': expected %s", e->key,
                         exp);
        } else {
            apply_report(a, e->line, "bad value '%.*s' for '%s': expected %s",
                         SHOW_MAX, e->value, e->key, exp);
        }
    }
}

/* Every occurrence of a list option, in order, replaces its default. */
static void apply_list(struct apply *a, const struct vigil_option *o, void *dst)
{
    const struct cfg_entry *e;
    const char **texts;
    size_t n = 0;

    for (e = a->sec->entries; e != NULL; e = e->next) {
        if (strcmp(e->key, o->key) == 0 && !((const struct entry *)e)->bad) {
            n++;
        }
    }
    if (n == 0) {
        return;
    }
    texts = arena_alloc(a->cfg, n * sizeof(*texts));
    if (texts == NULL) {
        a->oom = 1;
        return;
    }
    n = 0;
    for (e = a->sec->entries; e != NULL; e = e->next) {
        if (strcmp(e->key, o->key) == 0 && !((const struct entry *)e)->bad) {
            texts[n++] = e->value;
        }
    }
    store_list(a, texts, n, (char *)dst + o->offset);
}

/*
 * Fill dst from opts and sec (see config.h). Returns 0, VIGIL_ECONFIG, or
 * VIGIL_ENOMEM.
 */
int cfg_apply(struct cfg *cfg, const struct vigil_option *opts,
              const struct cfg_section *sec, const char *const *extra,
              void *dst, struct cfg_diag *diag)
{
    const struct vigil_option *o;
    struct cfg_entry *e;
    struct apply a;

    memset(&a, 0, sizeof(a));
    a.cfg = cfg;
    a.diag = diag;
    a.sec = sec;
    if (sec != NULL) {
        section_label(sec, a.label, sizeof(a.label));
    }

    for (o = opts; o != NULL && o->key != NULL && !a.oom; o++) {
        set_default(&a, o, dst);
    }
    for (e = sec ? sec->entries : NULL; e != NULL && !a.oom; e = e->next) {
        o = find_option(opts, e->key);
        if (o == NULL) {
            if (in_extra(extra, e->key)) {
                e->used = 1;
            } else {
                unknown_key(&a, opts, extra, e);
            }
            continue;
        }
        e->used = 1;
        if (known_type(o->type) && o->type != VIGIL_OPT_LIST) {
            apply_scalar(&a, o, e, dst);
        }
    }
    for (o = opts; o != NULL && o->key != NULL && !a.oom; o++) {
        if (o->type == VIGIL_OPT_LIST && sec != NULL) {
            apply_list(&a, o, dst);
        }
        if ((o->flags & VIGIL_OPT_REQUIRED) && cfg_get(sec, o->key) == NULL) {
            if (sec != NULL) {
                apply_report(&a, sec->line, "%s needs '%s'", a.label, o->key);
            } else {
                apply_report(&a, 0,
                             "required option '%s' is not set "
                             "(no section)",
                             o->key);
            }
        }
    }
    if (a.oom) {
        cfg_diag_add(diag, "%s: %s", cfg->path,
                     cfg->too_large ? "configuration too large"
                                    : "out of memory");
        return cfg->too_large ? VIGIL_ECONFIG : VIGIL_ENOMEM;
    }
    return a.errors > 0 ? VIGIL_ECONFIG : 0;
}
