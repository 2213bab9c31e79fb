/*
 * log_fuzz.c - libFuzzer target for the log plugin's line engine
 * (log_scan.c), against a reference reading of the same bytes.
 *
 * Input: byte 0 sets max_line (8 to 71) and the lines kept before a match
 * (0 to 3); byte 1 the lines after (0 to 7) and the matches kept (1 to 4);
 * byte 2 seeds the read sizes; then a pattern of the fuzzer's own up to
 * the first newline (used when the plugin's guard, lf_regex_check, and
 * regcomp accept it: so the guard is fuzzed too, libFuzzer's memory
 * limit catching a regex it lets through that glibc expands without
 * bound), then the log's bytes.
 *
 * The engine is fed twice: the whole log at once, and in reads of 1 to 17
 * bytes. Besides not crashing, leaking or invoking undefined behaviour:
 *   - both runs agree on every count and on every kept line, byte for
 *     byte (how the bytes arrive never changes the lines);
 *   - the counts equal the reference's: lines split at '\n', a final '\r'
 *     dropped, cut to max_line, each matched with regexec on the same
 *     bytes, so the memmem and memcmp fast paths agree with regexec;
 *   - flushing the last, unended line counts it as the reference does.
 */
#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_FIXED 8

static const char *const fz_fixed[FZ_FIXED] = {
    "lit: ERROR", "pre: ^Trace",   "esc: a\\.b",   "re: x+y",
    "empty: ^$",  "num: [0-9]{3}", "par: \\(c\\)", "any: ."};

static char fz_line[128]; /* max_line is at most 71 */

struct fz_ref {
    uint64_t lines, cut;
    uint64_t matched[FZ_FIXED + 1];
};

static void fz_ref_line(const struct lf_scan *sc, struct fz_ref *r,
                        const char *b, size_t n)
{
    size_t i;

    if (n > 0 && b[n - 1] == '\r') {
        n--;
    }
    r->lines++;
    if (n > sc->cfg.max_line) {
        r->cut++;
        n = sc->cfg.max_line;
    }
    /* A NUL-ended copy: the sanitizers' regexec reads up to a NUL. */
    memcpy(fz_line, b, n);
    fz_line[n] = '\0';
    for (i = 0; i < sc->npat; i++) {
        regmatch_t m = {.rm_so = 0, .rm_eo = (regoff_t)n};

        r->matched[i] +=
            regexec(&sc->pat[i].re, fz_line, 1, &m, REG_STARTEND) == 0;
    }
}

/* The reference: returns the bytes of the unended last line. */
static size_t fz_reference(const struct lf_scan *sc, struct fz_ref *r,
                           const char *log, size_t n)
{
    const char *b = log, *end = log + n, *nl;

    memset(r, 0, sizeof(*r));
    while ((nl = memchr(b, '\n', (size_t)(end - b))) != NULL) {
        fz_ref_line(sc, r, b, (size_t)(nl - b));
        b = nl + 1;
    }
    return (size_t)(end - b);
}

static void fz_same(const struct lf_scan *a, const struct lf_scan *b)
{
    size_t i, e, j, per = a->cfg.before + 1 + a->cfg.after;

    if (a->lines_total != b->lines_total ||
        a->truncated_total != b->truncated_total) {
        abort();
    }
    for (i = 0; i < a->npat; i++) {
        const struct lf_pattern *p = &a->pat[i], *q = &b->pat[i];

        if (p->matched != q->matched || p->count != q->count ||
            p->head != q->head || p->open != q->open) {
            abort();
        }
        for (e = 0; e < p->count; e++) {
            const struct lf_entry *x = &p->ring[e], *y = &q->ring[e];

            if (x->seq != y->seq || x->nbefore != y->nbefore ||
                x->nafter != y->nafter) {
                abort();
            }
            for (j = 0; j < per; j++) {
                size_t la, lb;
                int ca, cb;
                const char *ta = lf_entry_line(a, p, e, j, &la, &ca);
                const char *tb = lf_entry_line(b, q, e, j, &lb, &cb);
                int used = (j >= a->cfg.before - x->nbefore &&
                            j <= a->cfg.before + x->nafter);

                if (used && (la != lb || ca != cb || memcmp(ta, tb, la))) {
                    abort();
                }
            }
        }
    }
}

static void fz_check_ref(const struct lf_scan *sc, const struct fz_ref *r)
{
    size_t i;

    if (sc->lines_total != r->lines || sc->truncated_total != r->cut) {
        fprintf(stderr, "lines %llu/%llu cut %llu/%llu\n",
                (unsigned long long)sc->lines_total,
                (unsigned long long)r->lines,
                (unsigned long long)sc->truncated_total,
                (unsigned long long)r->cut);
        abort();
    }
    for (i = 0; i < sc->npat; i++) {
        if (sc->pat[i].matched != r->matched[i]) {
            fprintf(stderr, "pattern %s (kind %d): %llu, regexec %llu\n",
                    sc->pat[i].name, sc->pat[i].kind,
                    (unsigned long long)sc->pat[i].matched,
                    (unsigned long long)r->matched[i]);
            abort();
        }
    }
}

/* The pattern list: the fixed ones, and the input's if it compiles. */
static size_t fz_patterns(const char **pats, char *own, size_t ownsize,
                          const char *p, size_t n)
{
    size_t k = 0;
    regex_t re;

    char why[128];

    memcpy(pats, fz_fixed, sizeof(fz_fixed));
    while (n > 0 && (*p == ' ' || *p == '\t')) {
        p++; /* as the plugin reads "NAME: REGEX" */
        n--;
    }
    if (n == 0 || n > 64 || n + 5 >= ownsize || memchr(p, '\0', n) != NULL) {
        return FZ_FIXED;
    }
    memcpy(own, "own: ", 5);
    memcpy(own + 5, p, n);
    own[5 + n] = '\0';
    /* The plugin's guard decides, as for a config's pattern: what it
     * lets through must compile in bounded memory (-rss_limit_mb). */
    if (lf_regex_check(own + 5, why, sizeof(why)) != 0 ||
        regcomp(&re, own + 5, REG_EXTENDED | REG_NOSUB) != 0) {
        return FZ_FIXED;
    }
    regfree(&re);
    pats[FZ_FIXED] = own;
    k = FZ_FIXED + 1;
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *pats[FZ_FIXED + 1];
    char own[256], err[256];
    struct lf_scan_config c;
    struct lf_scan a, b;
    struct lf_partial pa, pb;
    struct vigil_list l;
    struct fz_ref ref;
    const char *log, *nl;
    size_t n, off, tail;
    uint32_t seed;

    if (size < 3) {
        return 0;
    }
    c.max_line = 8 + (data[0] & 63);
    c.before = data[0] >> 6;
    c.after = data[1] & 7;
    c.keep = 1 + ((data[1] >> 3) & 3);
    seed = data[2] | 1u;
    log = (const char *)data + 3;
    n = size - 3;
    nl = memchr(log, '\n', n);
    l.v = pats;
    l.n = fz_patterns(pats, own, sizeof(own), log,
                      nl != NULL ? (size_t)(nl - log) : 0);
    if (nl != NULL) {
        n -= (size_t)(nl + 1 - log);
        log = nl + 1;
    }
    if (lf_scan_init(&a, &c, &l, err, sizeof(err)) != 0 ||
        lf_scan_init(&b, &c, &l, err, sizeof(err)) != 0 ||
        lf_partial_init(&pa, c.max_line) != 0 ||
        lf_partial_init(&pb, c.max_line) != 0) {
        abort(); /* every pattern given compiles */
    }
    lf_scan_feed(&a, &pa, log, n, 1);
    for (off = 0; off < n;) {
        size_t k;

        seed = seed * 1103515245u + 12345u;
        k = 1 + (seed >> 16) % 17;
        k = k < n - off ? k : n - off;
        lf_scan_feed(&b, &pb, log + off, k, 1);
        off += k;
    }
    fz_same(&a, &b);
    tail = fz_reference(&a, &ref, log, n);
    fz_check_ref(&a, &ref);
    /* The unended line, once flushed, is one more line. */
    lf_scan_flush(&a, &pa, 1);
    lf_scan_flush(&b, &pb, 1);
    if (tail > 0) {
        fz_ref_line(&a, &ref, log + n - tail, tail);
    }
    fz_same(&a, &b);
    fz_check_ref(&a, &ref);
    lf_partial_fini(&pa);
    lf_partial_fini(&pb);
    lf_scan_fini(&a);
    lf_scan_fini(&b);
    return 0;
}
