/*
 * log_scan.c - the line engine: bytes in, lines out, patterns matched,
 * recent matches kept with their context.
 *
 * A line is the bytes before a '\n', without a trailing '\r'. Only its
 * first max_line bytes are kept and matched; a longer line is counted as
 * cut (log.lines.truncated_total) and the rest skipped. A line split
 * across reads waits in its file's lf_partial for the newline; however
 * the bytes arrive, the lines are the same (the fuzzer checks this).
 *
 * Patterns are POSIX extended regexes. Those that are plain text (after
 * undoing backslash escapes of metacharacters) are found with memmem, and
 * `^text` with memcmp; the rest go to regexec with REG_STARTEND, so a NUL
 * byte in a line is just a byte. regexec with REG_NOSUB allocates nothing
 * (glibc), so no line allocates.
 *
 * Each pattern keeps its last `keep` matches in a ring of fixed slots:
 * up to `before` lines before the match (from a ring of the last lines
 * read), the match, and the `after` lines that follow it, grep -B/-A
 * style. A match stays "open" until its after-lines are in; a new match
 * of the same pattern closes the previous one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* ------------------------------------------------------------------------
 * Patterns.
 */

static int lf_meta(int c)
{
    return strchr(".[]()*+?{}|^$\\", c) != NULL;
}

/* Literal, prefix or regex; see log.h. Does not fail. */
int lf_pattern_kind(const char *text, char *lit, size_t size, size_t *len)
{
    const char *p = text;
    int kind = LF_LITERAL;
    size_t n = 0;

    if (*p == '^') {
        kind = LF_PREFIX;
        p++;
    }
    for (; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;

        /* Bytes above 0x7f: leave them to regexec, whose idea of a
         * character may differ from a byte's. */
        if (c >= 0x80 || n + 1 >= size) {
            return LF_REGEX;
        }
        if (c == '\\') {
            if (p[1] == '\0' || !lf_meta((unsigned char)p[1])) {
                return LF_REGEX; /* \w, \b, \1...: GNU extensions */
            }
            c = (unsigned char)*++p;
        } else if (lf_meta(c)) {
            return LF_REGEX;
        }
        lit[n++] = (char)c;
    }
    if (n == 0) {
        return LF_REGEX; /* "" and "^" match every line: let regexec */
    }
    lit[n] = '\0';
    *len = n;
    return kind;
}

/* Does the line match? See log.h. */
int lf_pattern_match(const struct lf_pattern *p, const char *line, size_t n)
{
    regmatch_t m;

    switch (p->kind) {
    case LF_LITERAL:
        return memmem(line, n, p->lit, p->litlen) != NULL;
    case LF_PREFIX:
        return n >= p->litlen && memcmp(line, p->lit, p->litlen) == 0;
    default:
        m.rm_so = 0;
        m.rm_eo = (regoff_t)n;
        /* REG_STARTEND: a NUL in the line is a byte like another, and
         * nothing past n is matched (lf_line still passes a NUL-ended
         * copy, for sanitizers' regexec interceptors). */
        return regexec(&p->re, n > 0 ? line : "", 1, &m, REG_STARTEND) == 0;
    }
}

/* ------------------------------------------------------------------------
 * What glibc's regcomp would make of a regex. It compiles a repetition by
 * copying the repeated expression (x{1,n} costs memory quadratic in n:
 * x{1,32767} takes 8 GB), and stacked repetitions (x++++) multiply the
 * copies. A typo in a config must not take the daemon's memory, so such
 * regexes are refused before regcomp sees them.
 */

#define LF_RE_DEPTH_MAX 32      /* nested groups */
#define LF_RE_BOUND_MAX 255     /* _POSIX_RE_DUP_MAX: portable bounds */
#define LF_RE_COPIES_MAX 10000. /* atoms after expansion, estimated */

struct lf_re_walk {
    const char *p;
    const char *why; /* set when refused */
};

/* Skip a bracket expression at w->p ('['). */
static void lf_re_bracket(struct lf_re_walk *w)
{
    const char *p = w->p + 1;

    p += *p == '^';
    p += *p == ']'; /* a first ']' is a member */
    while (*p != '\0' && *p != ']') {
        if (*p == '[' && (p[1] == ':' || p[1] == '.' || p[1] == '=')) {
            char kind = p[1];

            for (p += 2; *p != '\0' && !(p[0] == kind && p[1] == ']'); p++) {
            }
            p += *p != '\0' ? 2 : 0;
            continue;
        }
        p++;
    }
    w->p = *p == ']' ? p + 1 : p;
}

/* An interval {m}, {m,} or {m,n} at p: its length, and how many copies
 * it makes; 0 when p is no interval. */
static size_t lf_re_interval(const char *p, double *copies)
{
    unsigned long m = 0, n;
    const char *q = p + 1;
    char *end;

    if (*q < '0' || *q > '9') {
        return 0;
    }
    m = strtoul(q, &end, 10);
    n = m;
    q = end;
    if (*q == ',') {
        q++;
        n = *q >= '0' && *q <= '9' ? strtoul(q, &end, 10) : m + 1;
        q = *q >= '0' && *q <= '9' ? end : q;
    }
    if (*q != '}') {
        return 0;
    }
    *copies = (double)(m > n ? m : n);
    return (size_t)(q + 1 - p);
}

/* The repetitions after an atom: its copies multiplied, or 0 after
 * setting w->why. */
static double lf_re_repeat(struct lf_re_walk *w, double atom)
{
    int seen = 0;

    for (;;) {
        double copies = 1.0;
        size_t len = 1;

        if (*w->p == '+') {
            copies = 2.0; /* x+ is xx* */
        } else if (*w->p == '{') {
            len = lf_re_interval(w->p, &copies);
            if (len == 0) {
                return atom;
            }
            if (copies > LF_RE_BOUND_MAX) {
                w->why = "a repetition bound above 255";
                return 0;
            }
        } else if (*w->p != '*' && *w->p != '?') {
            return atom;
        }
        if (seen++) {
            w->why = "two repetition operators in a row (POSIX leaves "
                     "that undefined)";
            return 0;
        }
        atom *= copies > 1.0 ? copies : 1.0;
        w->p += len;
    }
}

/* The estimated atoms of a sequence of branches, up to ')' or the end;
 * 0 after setting w->why. */
static double lf_re_branches(struct lf_re_walk *w, int depth)
{
    double total = 0.0, atom;

    if (depth > LF_RE_DEPTH_MAX) {
        w->why = "groups nested more than 32 deep";
        return 0;
    }
    while (*w->p != '\0' && *w->p != ')' && w->why == NULL) {
        if (*w->p == '|') {
            w->p++;
            continue;
        }
        if (*w->p == '(') {
            w->p++;
            atom = lf_re_branches(w, depth + 1) + 1.0;
            w->p += *w->p == ')';
        } else if (*w->p == '[') {
            lf_re_bracket(w);
            atom = 1.0;
        } else {
            w->p += w->p[0] == '\\' && w->p[1] != '\0' ? 2 : 1;
            atom = 1.0;
        }
        total += lf_re_repeat(w, atom);
    }
    return w->why != NULL ? 0 : total;
}

/* Refuse what regcomp would expand without bound; see log.h. */
int lf_regex_check(const char *text, char *why, size_t size)
{
    struct lf_re_walk w = {.p = text};
    double copies = 0.0;

    while (*w.p != '\0' && w.why == NULL) {
        copies += lf_re_branches(&w, 0);
        w.p += *w.p == ')'; /* unbalanced: regcomp says so */
    }
    if (w.why == NULL && copies > LF_RE_COPIES_MAX) {
        w.why = "repetitions that expand it to over 10000 copies";
    }
    if (w.why != NULL) {
        snprintf(why, size, "%s", w.why);
        return -1;
    }
    return 0;
}

static int lf_name_char(int c, int first)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9') || c == '_') {
        return 1;
    }
    return !first && (c == '.' || c == '-');
}

/* "NAME: REGEX" into p (name, text, kind, compiled regex). */
static int lf_pattern_parse(struct lf_pattern *p, const char *item, char *err,
                            size_t size)
{
    size_t n = 0;
    int rc;

    while (lf_name_char((unsigned char)item[n], n == 0)) {
        n++;
    }
    if (n == 0 || item[n] != ':' ||
        (item[n + 1] != ' ' && item[n + 1] != '\t')) {
        snprintf(err, size,
                 "pattern '%.40s': expected 'NAME: REGEX' (a name for the "
                 "pattern label, a colon, a blank, then the regex)",
                 item);
        return VIGIL_ECONFIG;
    }
    if (n > LF_NAME_MAX) {
        snprintf(err, size, "pattern name '%.16s...' is longer than %d", item,
                 LF_NAME_MAX);
        return VIGIL_ECONFIG;
    }
    memcpy(p->name, item, n);
    p->name[n] = '\0';
    p->text = item + n + 1 + strspn(item + n + 1, " \t");
    if (p->text[0] == '\0') {
        snprintf(err, size, "pattern '%s': no regex after '%s:'", p->name,
                 p->name);
        return VIGIL_ECONFIG;
    }
    {
        char why[128];

        if (lf_regex_check(p->text, why, sizeof(why)) != 0) {
            snprintf(err, size,
                     "pattern '%s': refused: %s would make glibc's "
                     "regcomp use memory without bound",
                     p->name, why);
            return VIGIL_ECONFIG;
        }
    }
    /* Compiled whatever its kind: a bad regex is an error even when it
     * would have been found with memmem. */
    rc = regcomp(&p->re, p->text, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        char why[128];

        regerror(rc, &p->re, why, sizeof(why));
        snprintf(err, size, "pattern '%s': not a POSIX extended regex: %s",
                 p->name, why);
        return VIGIL_ECONFIG;
    }
    p->re_ok = 1;
    p->kind = lf_pattern_kind(p->text, p->lit, sizeof(p->lit), &p->litlen);
    return 0;
}

/* ------------------------------------------------------------------------
 * Set-up.
 */

static size_t lf_per_entry(const struct lf_scan *sc)
{
    return sc->cfg.before + 1 + sc->cfg.after;
}

static int lf_pattern_alloc(struct lf_scan *sc, struct lf_pattern *p)
{
    size_t slots = sc->cfg.keep * lf_per_entry(sc);

    p->ring = calloc(sc->cfg.keep, sizeof(*p->ring));
    p->lines = malloc(slots * sc->cfg.max_line);
    p->lens = calloc(slots, sizeof(*p->lens));
    p->open = -1;
    return p->ring != NULL && p->lines != NULL && p->lens != NULL
               ? 0
               : VIGIL_ENOMEM;
}

/* Parse and compile the patterns, allocate the rings; see log.h. */
int lf_scan_init(struct lf_scan *sc, const struct lf_scan_config *cfg,
                 const struct vigil_list *patterns, char *err, size_t size)
{
    size_t i, j;
    int rc = 0;

    memset(sc, 0, sizeof(*sc));
    sc->cfg = *cfg;
    if (patterns->n > LF_PATTERNS_MAX) {
        snprintf(err, size, "more than %d patterns", LF_PATTERNS_MAX);
        return VIGIL_ECONFIG;
    }
    sc->pat = calloc(patterns->n + 1, sizeof(*sc->pat));
    sc->line = malloc(cfg->max_line + 1);
    sc->bring = malloc((cfg->before + 1) * cfg->max_line);
    sc->blens = calloc(cfg->before + 1, sizeof(*sc->blens));
    if (sc->pat == NULL || sc->line == NULL || sc->bring == NULL ||
        sc->blens == NULL) {
        snprintf(err, size, "out of memory");
        return VIGIL_ENOMEM;
    }
    for (i = 0; i < patterns->n && rc == 0; i++) {
        struct lf_pattern *p = &sc->pat[i];

        sc->npat++;
        rc = lf_pattern_parse(p, patterns->v[i], err, size);
        for (j = 0; rc == 0 && j < i; j++) {
            if (strcmp(sc->pat[j].name, p->name) == 0) {
                snprintf(err, size, "pattern '%s' is defined twice", p->name);
                rc = VIGIL_ECONFIG;
            }
        }
        sc->any_regex |= rc == 0 && p->kind == LF_REGEX;
        if (rc == 0 && lf_pattern_alloc(sc, p) != 0) {
            snprintf(err, size, "out of memory");
            rc = VIGIL_ENOMEM;
        }
    }
    return rc;
}

/* Free the engine; accepts a zeroed or half-built one. */
void lf_scan_fini(struct lf_scan *sc)
{
    size_t i;

    for (i = 0; sc->pat != NULL && i < sc->npat; i++) {
        if (sc->pat[i].re_ok) {
            regfree(&sc->pat[i].re);
        }
        free(sc->pat[i].ring);
        free(sc->pat[i].lines);
        free(sc->pat[i].lens);
    }
    free(sc->pat);
    free(sc->line);
    free(sc->bring);
    free(sc->blens);
    memset(sc, 0, sizeof(*sc));
}

/* A partial line buffer of max_line + 1 bytes; 0 or VIGIL_ENOMEM. */
int lf_partial_init(struct lf_partial *p, size_t max_line)
{
    memset(p, 0, sizeof(*p));
    p->buf = malloc(max_line + 1);
    return p->buf != NULL ? 0 : VIGIL_ENOMEM;
}

/* Free a partial line buffer. Does not fail. */
void lf_partial_fini(struct lf_partial *p)
{
    free(p->buf);
    memset(p, 0, sizeof(*p));
}

/* Forget the line in progress. Does not fail. */
void lf_partial_drop(struct lf_partial *p)
{
    p->len = 0;
    p->raw = 0;
    p->skip = 0;
}

/* Skip to the next newline, uncounted. Does not fail. */
void lf_partial_skip(struct lf_partial *p)
{
    lf_partial_drop(p);
    p->skip = 1;
}

/* ------------------------------------------------------------------------
 * Lines.
 */

static char *lf_slot(const struct lf_scan *sc, const struct lf_pattern *p,
                     size_t e, size_t j, uint32_t **len)
{
    size_t i = e * lf_per_entry(sc) + j;

    *len = &p->lens[i];
    return p->lines + i * sc->cfg.max_line;
}

/* A line slot of a kept match; see log.h. */
const char *lf_entry_line(const struct lf_scan *sc, const struct lf_pattern *p,
                          size_t e, size_t j, size_t *len, int *cut)
{
    uint32_t *l;
    const char *text = lf_slot(sc, p, e, j, &l);

    *len = *l & ~LF_TRUNC_BIT;
    *cut = (*l & LF_TRUNC_BIT) != 0;
    return text;
}

static void lf_store(char *slot, uint32_t *len, const char *line, size_t n,
                     int cut)
{
    memcpy(slot, line, n);
    *len = (uint32_t)n | (cut ? LF_TRUNC_BIT : 0);
}

/* Start entry for a match of p: the context before it and the line. */
static void lf_open_entry(struct lf_scan *sc, struct lf_pattern *p,
                          const char *line, size_t n, int cut, int64_t ts)
{
    size_t e = p->head, i, nb = sc->bcount;
    struct lf_entry *en = &p->ring[e];
    uint32_t *len;
    char *slot;

    for (i = 0; i < nb; i++) {
        /* Oldest first: bhead is the oldest once the ring is full. */
        size_t b = (sc->bhead + sc->cfg.before - nb + i) % sc->cfg.before;

        slot = lf_slot(sc, p, e, i, &len);
        memcpy(slot, sc->bring + b * sc->cfg.max_line,
               sc->blens[b] & ~LF_TRUNC_BIT);
        *len = sc->blens[b];
    }
    slot = lf_slot(sc, p, e, sc->cfg.before, &len);
    lf_store(slot, len, line, n, cut);
    en->ts_ns = ts;
    en->seq = sc->lines_total;
    en->nbefore = (uint32_t)nb;
    en->nafter = 0;
    p->head = (e + 1) % sc->cfg.keep;
    if (p->count < sc->cfg.keep) {
        p->count++;
    }
    p->open = sc->cfg.after > 0 ? (long)e : -1;
}

/* One complete line: n bytes kept (at most max_line), cut when longer. */
static void lf_line(struct lf_scan *sc, const char *line, size_t n, int cut,
                    int64_t ts)
{
    const char *subject = line;
    size_t i;

    if (sc->any_regex) {
        memcpy(sc->line, line, n);
        sc->line[n] = '\0';
        subject = sc->line;
    }
    sc->lines_total++;
    sc->truncated_total += cut != 0;
    for (i = 0; i < sc->npat; i++) {
        struct lf_pattern *p = &sc->pat[i];

        if (p->open >= 0) {
            struct lf_entry *en = &p->ring[p->open];
            uint32_t *len;
            char *slot = lf_slot(sc, p, (size_t)p->open,
                                 sc->cfg.before + 1 + en->nafter, &len);

            lf_store(slot, len, line, n, cut);
            if (++en->nafter == sc->cfg.after) {
                p->open = -1;
            }
        }
        if (lf_pattern_match(p, subject, n)) {
            p->matched++;
            lf_open_entry(sc, p, line, n, cut, ts);
        }
    }
    if (sc->cfg.before > 0) {
        lf_store(sc->bring + sc->bhead * sc->cfg.max_line,
                 &sc->blens[sc->bhead], line, n, cut);
        sc->bhead = (sc->bhead + 1) % sc->cfg.before;
        if (sc->bcount < sc->cfg.before) {
            sc->bcount++;
        }
    }
}

/* A line ends: stored bytes at text (at most max_line + 1), raw bytes in
 * all, the last of which is last. Drops a final '\r', then cuts. */
static void lf_line_end(struct lf_scan *sc, const char *text, uint64_t raw,
                        unsigned char last, int64_t ts)
{
    uint64_t content = raw - (raw > 0 && last == '\r');
    int cut = content > sc->cfg.max_line;

    lf_line(sc, text, cut ? sc->cfg.max_line : (size_t)content, cut, ts);
}

/* Append n bytes of a line to the partial one (what fits is kept). */
static void lf_partial_add(struct lf_partial *p, size_t max_line, const char *b,
                           size_t n)
{
    size_t room = max_line + 1 - p->len;

    if (n == 0) {
        return;
    }
    memcpy(p->buf + p->len, b, n < room ? n : room);
    p->len += n < room ? n : room;
    p->raw += n;
    p->last = (unsigned char)b[n - 1];
}

/* Bytes in, lines out; see log.h. Does not fail or allocate. */
void lf_scan_feed(struct lf_scan *sc, struct lf_partial *p, const char *buf,
                  size_t n, int64_t ts_ns)
{
    const char *end = buf + n, *b = buf;

    while (b < end) {
        const char *nl = memchr(b, '\n', (size_t)(end - b));
        size_t seg = (size_t)((nl != NULL ? nl : end) - b);

        if (nl == NULL) {
            if (!p->skip) {
                lf_partial_add(p, sc->cfg.max_line, b, seg);
            }
            return;
        }
        if (p->skip) {
            p->skip = 0;
        } else if (p->raw == 0) {
            /* The whole line is in this read: no copy. */
            lf_line_end(sc, b, seg, seg > 0 ? (unsigned char)b[seg - 1] : 0,
                        ts_ns);
        } else {
            lf_partial_add(p, sc->cfg.max_line, b, seg);
            lf_line_end(sc, p->buf, p->raw, p->last, ts_ns);
            lf_partial_drop(p);
        }
        b = nl + 1;
    }
}

/* End the line in progress; see log.h. Does not fail. */
void lf_scan_flush(struct lf_scan *sc, struct lf_partial *p, int64_t ts_ns)
{
    if (p->raw > 0 && !p->skip) {
        lf_line_end(sc, p->buf, p->raw, p->last, ts_ns);
    }
    lf_partial_drop(p);
}
