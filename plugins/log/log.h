/*
 * log.h - the log plugin's parts and what they share (prefix lf_, "log
 * follower", since the core's own logging owns log_):
 *
 *   log.c         the plugin on the loop: options, the directory watch
 *                 (uv_fs_event), scheduling one work at a time, publishing;
 *   log_scan.c    the line engine: bytes in, lines out (partial lines wait
 *                 for their newline, long lines are cut), patterns matched,
 *                 counters, and the recent matches with their context in
 *                 fixed rings; pure C, unit-tested and fuzzed;
 *   log_follow.c  following one path on the thread pool: open, read what
 *                 is new, notice rotation (a new file took the name) and
 *                 truncation (copytruncate), wait for a missing file;
 *   log_diag.c    the diagnostic log.recent.
 *
 * Ownership and threads: the loop owns struct lf, except that while a
 * work is in flight (s->busy) that work owns s->sc, s->cur, s->old and
 * s->buf, and the loop touches none of them until its completion runs.
 * Only one work per instance is ever in flight, so the scanner needs no
 * lock, and log.recent reads the rings in a work of its own.
 *
 * Memory: every buffer (rings, partial lines, the read buffer) is
 * allocated in init() from the options; reading, splitting and matching
 * lines allocates nothing.
 */
#ifndef VIGIL_LF_H
#define VIGIL_LF_H

#include <limits.h>
#include <regex.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>
#include <vigil/plugin.h>

#define LF_NAME_MAX 64             /* a pattern's name: the label value */
#define LF_PATTERNS_MAX 32         /* per instance */
#define LF_READ_BUF (64 * 1024)    /* one pread */
#define LF_POLL_BUDGET (8u << 20)  /* bytes one work reads before yielding */
#define LF_SIG_LEN 64              /* bytes kept to recognise a rewrite */
#define LF_TRUNC_BIT (1u << 31)    /* in a stored line's length */
#define LF_MEMORY_MAX (256u << 20) /* rings of one instance */

/* ------------------------------------------------------------------------
 * Patterns and the line engine (log_scan.c).
 */

enum lf_kind {
    LF_LITERAL, /* no metacharacter: memmem */
    LF_PREFIX,  /* ^ and a literal: memcmp */
    LF_REGEX,   /* POSIX extended, regexec with REG_STARTEND */
};

/* One recent match: its line, the lines before it and those after it, in
 * line slots of its pattern's ring. */
struct lf_entry {
    int64_t ts_ns; /* when vigil read the line */
    uint64_t seq;  /* the line's number among all lines read (from 1) */
    uint32_t nbefore, nafter;
};

struct lf_pattern {
    char name[LF_NAME_MAX + 1];
    const char *text; /* as configured, borrowed */
    int kind;         /* enum lf_kind */
    char lit[256];    /* LF_LITERAL, LF_PREFIX: the bytes to find */
    size_t litlen;
    regex_t re;
    int re_ok;
    uint64_t matched;
    /* The ring: keep entries of (before + 1 + after) line slots. */
    struct lf_entry *ring;
    char *lines;    /* slot i at lines + i * max_line */
    uint32_t *lens; /* slot lengths, LF_TRUNC_BIT when the line was cut */
    size_t head;    /* the next entry to write */
    size_t count;   /* entries stored */
    long open;      /* entry still taking after-lines, or -1 */
};

/* A line not ended yet: one per file, since two files (the current one
 * and one just rotated away) can be read alternately. */
struct lf_partial {
    char *buf;          /* max_line + 1 bytes */
    size_t len;         /* stored, at most max_line + 1 */
    uint64_t raw;       /* bytes of the line so far */
    unsigned char last; /* its last byte */
    int skip;           /* the rest of a line begun before we started */
};

struct lf_scan_config {
    size_t max_line; /* bytes of a line kept and matched */
    size_t before, after, keep;
};

struct lf_scan {
    struct lf_scan_config cfg;
    struct lf_pattern *pat;
    size_t npat;
    uint64_t lines_total, truncated_total;
    /* A NUL-terminated copy of the line for regexec (max_line + 1):
     * REG_STARTEND bounds it, but sanitizers' regexec interceptors read
     * up to a NUL. Only used when a pattern is a regex. */
    char *line;
    int any_regex;
    /* The last `before` lines, for the context of the next match. */
    char *bring;
    uint32_t *blens;
    size_t bhead, bcount;
};

/* Parse the `pattern` option's lines (`NAME: REGEX` each) and compile
 * them into sc, sized by cfg. Returns 0, or VIGIL_ECONFIG / VIGIL_ENOMEM
 * after writing why into err. sc is then fini'd by the caller either way.
 */
int lf_scan_init(struct lf_scan *sc, const struct lf_scan_config *cfg,
                 const struct vigil_list *patterns, char *err, size_t size);

/* Free what init allocated. Accepts a zeroed or half-built sc. */
void lf_scan_fini(struct lf_scan *sc);

/* The kind of a pattern text and, for the fast paths, its literal bytes
 * (backslash escapes of metacharacters undone). Does not fail. */
int lf_pattern_kind(const char *text, char *lit, size_t size, size_t *len);

/* Refuse a regex that glibc's regcomp would expand without bound:
 * stacked repetitions (x++), bounds above 255, groups nested deeper than
 * 32, over 10000 copies in all. Returns 0, or -1 after writing why. */
int lf_regex_check(const char *text, char *why, size_t size);

/* Does the line (n bytes, any bytes) match p? */
int lf_pattern_match(const struct lf_pattern *p, const char *line, size_t n);

int lf_partial_init(struct lf_partial *p, size_t max_line);
void lf_partial_fini(struct lf_partial *p);

/* Forget the line in progress (its file was truncated). */
void lf_partial_drop(struct lf_partial *p);

/* Bytes up to the next newline end a line that began before vigil
 * started reading: they are not a line of their own. */
void lf_partial_skip(struct lf_partial *p);

/* Split n bytes into lines, with p holding the line in progress; every
 * complete line is counted, matched and kept as context. ts_ns stamps
 * matches. Does not fail and does not allocate. */
void lf_scan_feed(struct lf_scan *sc, struct lf_partial *p, const char *buf,
                  size_t n, int64_t ts_ns);

/* The line in progress is complete without a newline (its file was
 * rotated away and read to its end). Does not fail. */
void lf_scan_flush(struct lf_scan *sc, struct lf_partial *p, int64_t ts_ns);

/* Line slot j of entry e of p, and its length and cut flag. */
const char *lf_entry_line(const struct lf_scan *sc, const struct lf_pattern *p,
                          size_t e, size_t j, size_t *len, int *cut);

/* ------------------------------------------------------------------------
 * Following a path (log_follow.c).
 */

struct lf_file {
    int fd; /* -1: none */
    dev_t dev;
    ino_t ino;
    uint64_t off;
    unsigned char sig[LF_SIG_LEN]; /* the bytes just before off */
    size_t siglen;
    struct lf_partial part;
};

struct lf_follow {
    const char *path; /* borrowed */
    int start_at_end; /* for a file that exists at the first look */
    int64_t rotate_wait_ns;
    struct lf_file cur;
    struct lf_file old; /* rotated away, still read until old_until */
    int64_t old_until_ns;
    int looked; /* the path was looked at once: files after are new */
    /* What the last poll found. */
    int present; /* the path names a regular file */
    int err;     /* errno of a failure other than "does not exist" */
    char errmsg[PATH_MAX + 128];
    int more; /* stopped at the budget: poll again */
    dev_t dir_dev;
    ino_t dir_ino; /* the directory, 0 when it does not exist */
    /* Counters. */
    uint64_t rotations, truncations, bytes;
};

int lf_follow_init(struct lf_follow *f, const char *path, int start_at_end,
                   int64_t rotate_wait_ns, size_t max_line);
void lf_follow_fini(struct lf_follow *f);

/* Read what is new at path into sc, at most budget bytes, with buf (size
 * bytes) as the read buffer; see log_follow.c. now_ns: wall-clock time
 * for the matches and the rotation grace. Does not fail: f says what it
 * found. */
void lf_follow_poll(struct lf_follow *f, struct lf_scan *sc, char *buf,
                    size_t size, size_t budget, int64_t now_ns);

/* ------------------------------------------------------------------------
 * The instance (log.c) and log.recent (log_diag.c).
 */

struct lf_config {
    const char *file;
    struct vigil_list pattern;
    int64_t before, after, keep;
    uint64_t max_line;
    int start_at; /* 0: end, 1: beginning */
    int64_t rotate_wait_ms;
};

struct lf_req;

struct lf {
    const struct vigil_host *host;
    vigil_instance *inst;
    const struct lf_config *cfg; /* borrowed from the core */
    char dir[PATH_MAX];
    char base[NAME_MAX + 1];

    /* Owned by the work in flight (busy). */
    struct lf_scan sc;
    struct lf_follow fw;
    char *buf;

    /* Loop side. */
    int busy;        /* a work is in flight */
    int poll_wanted; /* the file may have changed */
    int collect_pending;
    int last_was_poll;
    int old_open; /* a rotated file is still read (mirror of fw.old) */
    int stopped, started;
    struct lf_req *queue;    /* log.recent steps waiting for this instance */
    struct lf_req *inflight; /* the one its work runs, or NULL */
    uv_fs_event_t *dirw;     /* NULL when not watching */
    dev_t dirw_dev;
    ino_t dirw_ino;
    int said_waiting, said_nodir, said_watch;
    int have_prev;
    int64_t prev_ns;
    uint64_t prev_lines;
    uint64_t *prev_matched;
    vigil_series_id s_lines, s_lines_rate, s_trunc, s_present, s_bytes, s_rot,
        s_truncs;
    vigil_series_id *s_matched, *s_matched_rate;
    int diag_owner;
    struct lf *next; /* every live instance */
};

/* The live instances; the one named name, or NULL. Loop thread only. */
struct lf *lf_instances(void);
struct lf *lf_instance_find(const char *name);

/* Start the next work if none is in flight: a poll when the file may
 * have changed or a collection waits, else the next log.recent step.
 * Returns 0, or the host's code when a poll could not be queued (it is
 * asked for again at the next event or collection). */
int lf_kick(struct lf *s);

/* log.recent (log_diag.c). The work that reads this instance's rings for
 * the request at the head of s->queue: starts it and returns 1, or 0 when
 * the queue is empty. */
int lf_diag_next(struct lf *s);

/* Register log.recent unless another instance did. */
int lf_diag_register(struct lf *s);

/* Reply VIGIL_ECANCELED to the requests waiting for s. */
void lf_diag_stop(struct lf *s);

#endif
