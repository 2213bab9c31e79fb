/*
 * prom_parse.c - the Prometheus text exposition format 0.0.4 parser.
 * See prom_parse.h for what it accepts.
 */
#include "prom_parse.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest number text accepted for a value, a le or a quantile. */
#define PROM_NUM_MAX 128

static const char *const prom_type_names[] = {
    [PROM_UNTYPED] = "untyped", [PROM_COUNTER] = "counter",
    [PROM_GAUGE] = "gauge",     [PROM_HISTOGRAM] = "histogram",
    [PROM_SUMMARY] = "summary",
};

const char *prom_type_name(enum prom_type t)
{
    if ((size_t)t < sizeof(prom_type_names) / sizeof(prom_type_names[0])) {
        return prom_type_names[t];
    }
    return "unknown";
}

static int prom_is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static int prom_is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int prom_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int prom_is_name_start(char c)
{
    return prom_is_alpha(c) || c == ':';
}

static int prom_is_name_char(char c)
{
    return prom_is_alpha(c) || prom_is_digit(c) || c == ':';
}

/* Label names: [A-Za-z_][A-Za-z0-9_]* in the format; '.', '-' and ':'
 * are tolerated after the first character (see prom_parse.h). */
static int prom_is_label_char(char c)
{
    return prom_is_alpha(c) || prom_is_digit(c) || c == '.' || c == '-' ||
           c == ':';
}

static int prom_fail(struct prom_parser *p, size_t col, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Set p->err to "column N: ..." (col counts from 0 here, from 1 in the
 * text) and return PROM_LINE_ERROR. */
static int prom_fail(struct prom_parser *p, size_t col, const char *fmt, ...)
{
    va_list ap;
    int n;

    n = snprintf(p->err, sizeof(p->err), "column %zu: ", col + 1);
    if (n < 0 || (size_t)n >= sizeof(p->err)) {
        n = 0;
    }
    va_start(ap, fmt);
    vsnprintf(p->err + n, sizeof(p->err) - (size_t)n, fmt, ap);
    va_end(ap);
    return PROM_LINE_ERROR;
}

/* Does [s, s+n) equal the NUL-terminated word w, ignoring ASCII case? */
static int prom_word_eq(const char *s, size_t n, const char *w)
{
    size_t i;

    for (i = 0; i < n; i++) {
        char c = s[i];

        if (c >= 'A' && c <= 'Z') {
            c = (char)(c - 'A' + 'a');
        }
        if (w[i] == '\0' || c != w[i]) {
            return 0;
        }
    }
    return w[n] == '\0';
}

static int prom_str_eq(const char *s, size_t n, const char *w)
{
    return strlen(w) == n && memcmp(s, w, n) == 0;
}

int prom_parse_float(const char *s, size_t n, double *out)
{
    char buf[PROM_NUM_MAX];
    size_t i = 0, digits = 0;
    const char *body = s;
    size_t blen = n;
    int neg = 0;
    char *end;
    double v;

    if (n == 0) {
        return -1;
    }
    if (s[0] == '+' || s[0] == '-') {
        neg = s[0] == '-';
        body = s + 1;
        blen = n - 1;
    }
    if (prom_word_eq(body, blen, "inf") ||
        prom_word_eq(body, blen, "infinity")) {
        *out = neg ? -INFINITY : INFINITY;
        return 0;
    }
    if (prom_word_eq(s, n, "nan")) {
        *out = NAN;
        return 0;
    }
    /* Decimal only: [+-] digits [. digits] [e [+-] digits], with digits
     * on at least one side of the point. strtod would also take hex,
     * "nan(...)" and leading blanks, which Go's parser does not. */
    if (n >= sizeof(buf)) {
        return -1;
    }
    if (s[i] == '+' || s[i] == '-') {
        i++;
    }
    while (i < n && prom_is_digit(s[i])) {
        i++;
        digits++;
    }
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && prom_is_digit(s[i])) {
            i++;
            digits++;
        }
    }
    if (digits == 0) {
        return -1;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t exp_digits = 0;

        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) {
            i++;
        }
        while (i < n && prom_is_digit(s[i])) {
            i++;
            exp_digits++;
        }
        if (exp_digits == 0) {
            return -1;
        }
    }
    if (i != n) {
        return -1;
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    /* vigil never calls setlocale(), so strtod reads '.' as the point. */
    errno = 0;
    v = strtod(buf, &end);
    if (end != buf + n || isinf(v)) {
        return -1; /* overflow: Go's ParseFloat refuses it too */
    }
    *out = v;
    return 0;
}

/* A timestamp: an optional sign and digits, fitting in int64. */
static int prom_parse_int64(const char *s, size_t n, int64_t *out)
{
    uint64_t v = 0, limit;
    size_t i = 0;
    int neg = 0;

    if (n > 0 && (s[0] == '+' || s[0] == '-')) {
        neg = s[0] == '-';
        i++;
    }
    if (i == n) {
        return -1;
    }
    limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < n; i++) {
        unsigned d;

        if (!prom_is_digit(s[i])) {
            return -1;
        }
        d = (unsigned)(s[i] - '0');
        if (v > (limit - d) / 10) {
            return -1;
        }
        v = v * 10 + d;
    }
    if (neg) {
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    } else {
        *out = (int64_t)v;
    }
    return 0;
}

static size_t prom_skip_blanks(const char *line, size_t len, size_t i)
{
    while (i < len && prom_is_blank(line[i])) {
        i++;
    }
    return i;
}

/* The end of the token starting at i: the next blank or the end. */
static size_t prom_token_end(const char *line, size_t len, size_t i)
{
    while (i < len && !prom_is_blank(line[i])) {
        i++;
    }
    return i;
}

/* `# TYPE name type`, `# HELP name text` or a comment. */
static int prom_parse_comment(struct prom_parser *p, const char *line,
                              size_t len, size_t i)
{
    size_t w, name, name_end, t, t_end;
    static const struct {
        const char *word;
        enum prom_type type;
    } types[] = {
        {"counter", PROM_COUNTER},     {"gauge", PROM_GAUGE},
        {"histogram", PROM_HISTOGRAM}, {"summary", PROM_SUMMARY},
        {"untyped", PROM_UNTYPED},
    };
    size_t k;
    int is_type;

    i = prom_skip_blanks(line, len, i + 1);
    w = prom_token_end(line, len, i);
    is_type = prom_str_eq(line + i, w - i, "TYPE");
    if (!is_type && !prom_str_eq(line + i, w - i, "HELP")) {
        return PROM_LINE_SKIP; /* a comment */
    }
    name = prom_skip_blanks(line, len, w);
    if (name == len || !prom_is_name_start(line[name])) {
        return prom_fail(p, name, "expected a metric name after # %s",
                         is_type ? "TYPE" : "HELP");
    }
    for (name_end = name + 1;
         name_end < len && prom_is_name_char(line[name_end]); name_end++) {
    }
    if (name_end < len && !prom_is_blank(line[name_end])) {
        return prom_fail(p, name_end, "invalid character in metric name");
    }
    if (!is_type) {
        return PROM_LINE_SKIP; /* the help text is not kept */
    }
    t = prom_skip_blanks(line, len, name_end);
    t_end = prom_token_end(line, len, t);
    if (t == t_end) {
        return prom_fail(p, t, "expected a type after # TYPE %.*s",
                         (int)(name_end - name), line + name);
    }
    if (prom_skip_blanks(line, len, t_end) != len) {
        return prom_fail(p, t_end, "unexpected text after the type");
    }
    for (k = 0; k < sizeof(types) / sizeof(types[0]); k++) {
        if (prom_str_eq(line + t, t_end - t, types[k].word)) {
            break;
        }
    }
    if (k == sizeof(types) / sizeof(types[0])) {
        return prom_fail(p, t,
                         "unknown type '%.*s' (expected counter, gauge, "
                         "histogram, summary or untyped)",
                         (int)(t_end - t > 32 ? 32 : t_end - t), line + t);
    }
    if (name_end - name >= sizeof(p->family)) {
        return prom_fail(p, name, "metric name longer than %zu bytes",
                         sizeof(p->family) - 1);
    }
    memcpy(p->family, line + name, name_end - name);
    p->family_len = name_end - name;
    p->family_type = types[k].type;
    return PROM_LINE_SKIP;
}

/* The label set `{...}` starting at line[i] == '{'; returns the index
 * after '}' in *next, or PROM_LINE_ERROR. */
static int prom_parse_labels(struct prom_parser *p, const char *line,
                             size_t len, size_t i, struct prom_sample *s,
                             size_t *next)
{
    size_t vpos = 0;

    i++; /* '{' */
    for (;;) {
        struct prom_label *l;
        size_t k, start;

        i = prom_skip_blanks(line, len, i);
        if (i == len) {
            return prom_fail(p, i, "missing '}'");
        }
        if (line[i] == '}') {
            break;
        }
        if (!prom_is_alpha(line[i])) {
            return prom_fail(p, i, "expected a label name or '}'");
        }
        if (s->nlabels == PROM_LABELS_MAX) {
            return prom_fail(p, i, "more than %d labels", PROM_LABELS_MAX);
        }
        l = &s->labels[s->nlabels];
        start = i;
        while (i < len && prom_is_label_char(line[i])) {
            i++;
        }
        l->key.p = line + start;
        l->key.n = i - start;
        for (k = 0; k < s->nlabels; k++) {
            if (s->labels[k].key.n == l->key.n &&
                memcmp(s->labels[k].key.p, l->key.p, l->key.n) == 0) {
                return prom_fail(p, start, "duplicate label '%.*s'",
                                 (int)(l->key.n > 64 ? 64 : l->key.n),
                                 l->key.p);
            }
        }
        i = prom_skip_blanks(line, len, i);
        if (i == len || line[i] != '=') {
            return prom_fail(p, i, "expected '=' after label '%.*s'",
                             (int)(l->key.n > 64 ? 64 : l->key.n), l->key.p);
        }
        i = prom_skip_blanks(line, len, i + 1);
        if (i == len || line[i] != '"') {
            return prom_fail(p, i, "expected '\"' to open the value of '%.*s'",
                             (int)(l->key.n > 64 ? 64 : l->key.n), l->key.p);
        }
        i++;
        l->value.p = p->values + vpos;
        for (;;) {
            char c;

            if (i == len) {
                return prom_fail(p, i, "unterminated label value");
            }
            c = line[i++];
            if (c == '"') {
                break;
            }
            if (c == '\\') {
                if (i == len) {
                    return prom_fail(p, i, "unterminated label value");
                }
                c = line[i++];
                if (c == 'n') {
                    c = '\n';
                } else if (c != '\\' && c != '"') {
                    return prom_fail(p, i - 2,
                                     "invalid escape '\\%c' in label value "
                                     "(expected \\\\, \\\" or \\n)",
                                     (c >= 0x20 && c < 0x7f) ? c : '?');
                }
            }
            /* Unescaped text is never longer than the line, and the
             * line is at most PROM_LINE_MAX bytes. */
            p->values[vpos++] = c;
        }
        l->value.n = (size_t)(p->values + vpos - l->value.p);
        s->nlabels++;
        i = prom_skip_blanks(line, len, i);
        if (i < len && line[i] == ',') {
            i++;
            continue;
        }
        if (i < len && line[i] == '}') {
            break;
        }
        if (i == len) {
            return prom_fail(p, i, "missing '}'");
        }
        return prom_fail(p, i, "expected ',' or '}' after a label value");
    }
    *next = i + 1;
    return PROM_LINE_SAMPLE;
}

/* The label named key, or NULL. */
static const struct prom_label *prom_find_label(const struct prom_sample *s,
                                                const char *key)
{
    size_t i;

    for (i = 0; i < s->nlabels; i++) {
        if (prom_str_eq(s->labels[i].key.p, s->labels[i].key.n, key)) {
            return &s->labels[i];
        }
    }
    return NULL;
}

/* Is name the family followed by suffix? */
static int prom_is_member(const struct prom_parser *p, const struct prom_str *n,
                          const char *suffix)
{
    size_t sl = strlen(suffix);

    return n->n == p->family_len + sl &&
           memcmp(n->p, p->family, p->family_len) == 0 &&
           memcmp(n->p + p->family_len, suffix, sl) == 0;
}

/* Work out the sample's family and role from the last TYPE line. */
static int prom_classify(struct prom_parser *p, struct prom_sample *s)
{
    enum prom_type t = p->family_type;
    const struct prom_label *l;

    s->type = PROM_UNTYPED;
    s->role = PROM_ROLE_VALUE;
    s->family = s->name;
    if (p->family_len == 0) {
        return PROM_LINE_SAMPLE;
    }
    if (prom_is_member(p, &s->name, "")) {
        if (t == PROM_HISTOGRAM) {
            return prom_fail(p, 0,
                             "histogram '%.*s' has a sample without "
                             "_bucket, _sum or _count",
                             (int)p->family_len, p->family);
        }
        s->type = t;
        if (t == PROM_SUMMARY) {
            l = prom_find_label(s, "quantile");
            if (l == NULL) {
                return prom_fail(p, 0,
                                 "summary sample without a 'quantile' label");
            }
            if (prom_parse_float(l->value.p, l->value.n, &s->quantile) != 0) {
                return prom_fail(p, 0, "quantile \"%.*s\" is not a number",
                                 (int)(l->value.n > 32 ? 32 : l->value.n),
                                 l->value.p);
            }
            s->role = PROM_ROLE_QUANTILE;
        }
    } else if (t == PROM_HISTOGRAM && prom_is_member(p, &s->name, "_bucket")) {
        l = prom_find_label(s, "le");
        if (l == NULL) {
            return prom_fail(p, 0, "histogram bucket without an 'le' label");
        }
        if (prom_parse_float(l->value.p, l->value.n, &s->le) != 0 ||
            isnan(s->le)) {
            return prom_fail(p, 0, "le \"%.*s\" is not a number",
                             (int)(l->value.n > 32 ? 32 : l->value.n),
                             l->value.p);
        }
        s->type = t;
        s->role = PROM_ROLE_BUCKET;
    } else if ((t == PROM_HISTOGRAM || t == PROM_SUMMARY) &&
               prom_is_member(p, &s->name, "_sum")) {
        s->type = t;
        s->role = PROM_ROLE_SUM;
    } else if ((t == PROM_HISTOGRAM || t == PROM_SUMMARY) &&
               prom_is_member(p, &s->name, "_count")) {
        s->type = t;
        s->role = PROM_ROLE_COUNT;
    } else {
        /* Another family without a TYPE line: untyped from here on. */
        p->family_len = 0;
        p->family_type = PROM_UNTYPED;
        return PROM_LINE_SAMPLE;
    }
    s->family.p = p->family;
    s->family.n = p->family_len;
    return PROM_LINE_SAMPLE;
}

static int prom_parse_sample(struct prom_parser *p, const char *line,
                             size_t len, size_t i, struct prom_sample *s)
{
    size_t start = i, end;
    int rc;

    s->nlabels = 0;
    s->has_timestamp = 0;
    s->timestamp_ms = 0;
    s->le = 0.0;
    s->quantile = 0.0;
    if (!prom_is_name_start(line[i])) {
        return prom_fail(p, i, "expected a metric name, '#' or a blank line");
    }
    while (i < len && prom_is_name_char(line[i])) {
        i++;
    }
    s->name.p = line + start;
    s->name.n = i - start;
    if (i < len && !prom_is_blank(line[i]) && line[i] != '{') {
        return prom_fail(p, i, "invalid character in metric name");
    }
    i = prom_skip_blanks(line, len, i);
    if (i < len && line[i] == '{') {
        rc = prom_parse_labels(p, line, len, i, s, &i);
        if (rc != PROM_LINE_SAMPLE) {
            return rc;
        }
        i = prom_skip_blanks(line, len, i);
    }
    end = prom_token_end(line, len, i);
    if (i == end) {
        return prom_fail(p, i, "expected a value");
    }
    if (prom_parse_float(line + i, end - i, &s->value) != 0) {
        return prom_fail(p, i, "value '%.*s' is not a number",
                         (int)(end - i > 32 ? 32 : end - i), line + i);
    }
    i = prom_skip_blanks(line, len, end);
    if (i < len) {
        end = prom_token_end(line, len, i);
        if (prom_parse_int64(line + i, end - i, &s->timestamp_ms) != 0) {
            return prom_fail(p, i,
                             "timestamp '%.*s' is not a whole number of "
                             "milliseconds",
                             (int)(end - i > 32 ? 32 : end - i), line + i);
        }
        s->has_timestamp = 1;
        i = prom_skip_blanks(line, len, end);
        if (i < len) {
            return prom_fail(p, i, "unexpected text after the timestamp");
        }
    }
    return prom_classify(p, s);
}

void prom_parser_init(struct prom_parser *p)
{
    p->lineno = 0;
    p->family_len = 0;
    p->family_type = PROM_UNTYPED;
    p->line_len = 0;
    p->overlong = 0;
    p->err[0] = '\0';
}

int prom_parse_line(struct prom_parser *p, const char *line, size_t len,
                    struct prom_sample *s)
{
    size_t i;

    p->err[0] = '\0';
    if (len > 0 && line[len - 1] == '\r') {
        len--;
    }
    if (len > PROM_LINE_MAX) {
        return prom_fail(p, PROM_LINE_MAX, "line longer than %d bytes",
                         PROM_LINE_MAX);
    }
    i = prom_skip_blanks(line, len, 0);
    if (i == len) {
        return PROM_LINE_SKIP;
    }
    if (line[i] == '#') {
        return prom_parse_comment(p, line, len, i);
    }
    return prom_parse_sample(p, line, len, i, s);
}

/* One complete line: count it, parse it, tell cb. */
static void prom_line(struct prom_parser *p, const char *line, size_t len,
                      int overlong, prom_line_cb cb, void *arg)
{
    int rc;

    p->lineno++;
    if (overlong) {
        size_t i = prom_skip_blanks(line, len, 0);

        if (i < len && line[i] == '#') {
            return; /* a long HELP text or comment: nothing to keep */
        }
        snprintf(p->err, sizeof(p->err), "line longer than %d bytes",
                 PROM_LINE_MAX);
        cb(arg, PROM_LINE_ERROR, NULL, p->lineno, p->err);
        return;
    }
    rc = prom_parse_line(p, line, len, &p->sample);
    if (rc == PROM_LINE_SAMPLE) {
        cb(arg, PROM_LINE_SAMPLE, &p->sample, p->lineno, NULL);
    } else if (rc == PROM_LINE_ERROR) {
        cb(arg, PROM_LINE_ERROR, NULL, p->lineno, p->err);
    }
}

/* Append to the carried line; past PROM_LINE_MAX only remember that it
 * was too long (its start is kept to tell a comment). */
static void prom_carry(struct prom_parser *p, const char *data, size_t n)
{
    size_t room = sizeof(p->line) - p->line_len;

    if (n > room) {
        p->overlong = 1;
        n = room;
    }
    memcpy(p->line + p->line_len, data, n);
    p->line_len += n;
}

void prom_parse_feed(struct prom_parser *p, const char *data, size_t len,
                     prom_line_cb cb, void *arg)
{
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t take = nl != NULL ? (size_t)(nl - data) : len;

        if (nl == NULL) {
            prom_carry(p, data, take);
            return;
        }
        if (p->line_len == 0 && !p->overlong) {
            /* The whole line is in this chunk: parse it in place. A CR
             * before the LF is dropped by prom_parse_line; it counts
             * towards PROM_LINE_MAX, as it does in the carried line. */
            prom_line(p, data, take, take > PROM_LINE_MAX, cb, arg);
        } else {
            prom_carry(p, data, take);
            prom_line(p, p->line, p->line_len, p->overlong, cb, arg);
            p->line_len = 0;
            p->overlong = 0;
        }
        data += take + 1;
        len -= take + 1;
    }
}

void prom_parse_finish(struct prom_parser *p, prom_line_cb cb, void *arg)
{
    if (p->line_len > 0 || p->overlong) {
        prom_line(p, p->line, p->line_len, p->overlong, cb, arg);
    }
    p->line_len = 0;
    p->overlong = 0;
}
