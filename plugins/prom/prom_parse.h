/*
 * prom_parse - a parser for the Prometheus text exposition format 0.0.4.
 *
 * Provides: prom_parse_line() for one line, and prom_parse_feed() /
 * prom_parse_finish() that split a body arriving in chunks of any size
 * into lines and hand each sample or malformed line to a callback, with
 * its line number.
 *
 * Uses nothing but the C library. It never allocates: the parser is one
 * struct that the caller allocates (it holds the line carried over
 * between chunks, so it is large: keep it off the stack), and a parsed
 * sample points into the line and into the parser. Everything a callback
 * sees is borrowed until the callback returns.
 *
 * What is accepted (the grammar of
 * https://prometheus.io/docs/instrumenting/exposition_formats/):
 *   - `# HELP name text` (skipped), `# TYPE name counter|gauge|histogram|
 *     summary|untyped`, any other `#` line is a comment; blank lines;
 *   - `name{label="value",...} value [timestamp]`, with blanks or tabs
 *     between the parts, a trailing comma in the braces, `\\`, `\"` and
 *     `\n` escapes in label values;
 *   - values as Go's strconv.ParseFloat reads them in decimal: `1`,
 *     `-2.5e-3`, `NaN`, `+Inf`, `-Inf`, `Inf` (any case); timestamps as
 *     whole milliseconds;
 *   - lines ended by LF or CRLF; the last line may lack its LF.
 * Leniency: a label name may also contain `.`, `-` and `:` after its
 * first character (some exporters write OpenTelemetry attribute names);
 * the caller decides what to do with such names. A TYPE line applies to
 * the samples that follow it until a sample of another metric family
 * appears, as in the format's grammar; repeated TYPE lines are not
 * errors.
 */
#ifndef PROM_PARSE_H
#define PROM_PARSE_H

#include <stddef.h>
#include <stdint.h>

/* Longest line accepted, LF excluded. A longer comment line is skipped; a
 * longer sample line is an error. */
#define PROM_LINE_MAX 32768
/* Most labels on one sample. */
#define PROM_LABELS_MAX 32
/* Longest metric name in a TYPE line. */
#define PROM_NAME_MAX 256
/* Size of the error text buffer. */
#define PROM_ERR_MAX 160

enum prom_type {
    PROM_UNTYPED = 0,
    PROM_COUNTER,
    PROM_GAUGE,
    PROM_HISTOGRAM,
    PROM_SUMMARY,
};

/* What a sample is within its family. */
enum prom_role {
    PROM_ROLE_VALUE = 0, /* counter, gauge or untyped sample */
    PROM_ROLE_BUCKET,    /* histogram <name>_bucket{le=...} */
    PROM_ROLE_SUM,       /* histogram or summary <name>_sum */
    PROM_ROLE_COUNT,     /* histogram or summary <name>_count */
    PROM_ROLE_QUANTILE,  /* summary <name>{quantile=...} */
};

/* A piece of text, not NUL-terminated. */
struct prom_str {
    const char *p;
    size_t n;
};

struct prom_label {
    struct prom_str key;   /* as written */
    struct prom_str value; /* unescaped */
};

struct prom_sample {
    struct prom_str name;   /* as written: lat_seconds_bucket */
    struct prom_str family; /* the family: lat_seconds */
    enum prom_type type;    /* of the family */
    enum prom_role role;
    struct prom_label labels[PROM_LABELS_MAX]; /* in the order written */
    size_t nlabels;
    double value;
    int has_timestamp;
    int64_t timestamp_ms;
    double le;       /* PROM_ROLE_BUCKET: the bucket's upper bound */
    double quantile; /* PROM_ROLE_QUANTILE */
};

/* What one line was. */
enum prom_line {
    PROM_LINE_ERROR = -1, /* malformed: the parser's err says why */
    PROM_LINE_SKIP = 0,   /* blank, comment, HELP or TYPE */
    PROM_LINE_SAMPLE = 1, /* a sample */
};

/* Called by prom_parse_feed() for every sample (kind PROM_LINE_SAMPLE, s
 * set, err NULL) and every malformed line (PROM_LINE_ERROR, s NULL, err
 * says why, starting with the column when known). lineno counts from 1.
 * Everything is borrowed until the callback returns. */
typedef void (*prom_line_cb)(void *arg, int kind, const struct prom_sample *s,
                             unsigned lineno, const char *err);

struct prom_parser {
    unsigned lineno; /* lines seen so far */
    /* The family of the last TYPE line. */
    char family[PROM_NAME_MAX];
    size_t family_len;
    enum prom_type family_type;
    /* A line split across chunks. */
    char line[PROM_LINE_MAX];
    size_t line_len;
    int overlong; /* the carried line passed PROM_LINE_MAX */
    /* Unescaped label values of the current line. */
    char values[PROM_LINE_MAX];
    struct prom_sample sample;
    char err[PROM_ERR_MAX];
};

/* Make p ready for a new body. Does not fail. */
void prom_parser_init(struct prom_parser *p);

/*
 * Parse one line (without its LF; a trailing CR is ignored) into *s.
 * Returns a enum prom_line value; on PROM_LINE_ERROR p->err says why. A
 * TYPE line updates the parser's family. Does not count lines. s may be
 * &p->sample; it points into line and p until the next call.
 */
int prom_parse_line(struct prom_parser *p, const char *line, size_t len,
                    struct prom_sample *s);

/* Feed the next len bytes of the body: complete lines go to cb, the rest
 * waits for the next call. data is borrowed for the call. */
void prom_parse_feed(struct prom_parser *p, const char *data, size_t len,
                     prom_line_cb cb, void *arg);

/* End of the body: a last line without LF goes to cb. */
void prom_parse_finish(struct prom_parser *p, prom_line_cb cb, void *arg);

/*
 * Parse a float as the format writes it (see above) from s[0..n). Returns
 * 0 and sets *out, or -1 when the text is not a number or overflows.
 */
int prom_parse_float(const char *s, size_t n, double *out);

/* The name of a type, for messages: "counter"... Does not fail. */
const char *prom_type_name(enum prom_type t);

#endif /* PROM_PARSE_H */
