/*
 * proc_file.c - the line reader and number scanners shared by the /proc
 * parsers. See sys_proc.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <vigil/plugin.h>

#include "sys_proc.h"

static int64_t sys_mono_ns(void)
{
    struct timespec ts;

    /* CLOCK_MONOTONIC cannot fail with a valid pointer. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sys_file_reset(struct sys_file *f, const char *path, char *buf,
                           size_t cap)
{
    memset(f, 0, sizeof(*f));
    f->path = path;
    f->fd = -1;
    f->buf = buf;
    f->cap = cap;
}

/*
 * Open a file for sys_file_line(); see sys_proc.h.
 */
int sys_file_open(struct sys_file *f, const char *path, char *buf, size_t cap)
{
    sys_file_reset(f, path, buf, cap);
    if (cap < 2) {
        f->err = VIGIL_EINVAL;
        f->why = "read buffer too small";
        return f->err;
    }
    do {
        f->fd = open(path, O_RDONLY | O_CLOEXEC);
    } while (f->fd < 0 && errno == EINTR);
    if (f->fd < 0) {
        f->sys_errno = errno;
        switch (errno) {
        case ENOENT:
        case ENOTDIR:
            f->err = VIGIL_ENOENT;
            break;
        case EOPNOTSUPP:
            f->err = VIGIL_EUNAVAIL;
            break;
        default:
            f->err = VIGIL_EIO;
            break;
        }
        return f->err;
    }
    /* Taken before the first read: the counters describe this moment
     * within the few microseconds that reading the file takes. */
    f->ts_ns = sys_mono_ns();
    return 0;
}

/*
 * Read lines from an in-memory text; see sys_proc.h.
 */
void sys_file_text(struct sys_file *f, char *text)
{
    size_t n = strlen(text);

    sys_file_reset(f, "(text)", text, n + 1);
    f->len = n;
    f->eof = 1;
}

/* Read more data after what is buffered. Returns 0 or VIGIL_EIO. */
static int sys_file_fill(struct sys_file *f)
{
    ssize_t r;

    if (f->pos > 0) {
        memmove(f->buf, f->buf + f->pos, f->len - f->pos);
        f->len -= f->pos;
        f->pos = 0;
    }
    if (f->len == f->cap - 1) {
        /* A line fills the whole buffer: drop it up to its newline. One
         * byte stays free so the last line can always be terminated. */
        f->skipping = 1;
        f->len = 0;
    }
    do {
        r = read(f->fd, f->buf + f->len, f->cap - 1 - f->len);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        f->sys_errno = errno;
        f->err = VIGIL_EIO;
        return f->err;
    }
    if (r == 0) {
        f->eof = 1;
    }
    f->len += (size_t)r;
    return 0;
}

/*
 * The next line; see sys_proc.h.
 */
char *sys_file_line(struct sys_file *f)
{
    for (;;) {
        char *start = f->buf + f->pos;
        char *nl;

        if (f->err != 0) {
            return NULL;
        }
        nl = memchr(start, '\n', f->len - f->pos);
        if (nl != NULL) {
            *nl = '\0';
            f->pos = (size_t)(nl - f->buf) + 1;
            f->lineno++;
            if (f->skipping) {
                f->skipping = 0;
                continue;
            }
            return start;
        }
        if (f->eof || f->fd < 0) {
            if (f->pos < f->len && !f->skipping) {
                /* A last line without a newline; len < cap always. */
                f->buf[f->len] = '\0';
                f->pos = f->len;
                f->lineno++;
                return start;
            }
            return NULL;
        }
        if (sys_file_fill(f) != 0) {
            return NULL;
        }
    }
}

/*
 * Record a parse error; see sys_proc.h.
 */
int sys_file_fail(struct sys_file *f, int code, const char *why)
{
    if (f->err == 0) {
        f->err = code;
        f->why = why;
        f->sys_errno = 0;
    }
    return f->err;
}

/*
 * Close the reader; see sys_proc.h.
 */
void sys_file_close(struct sys_file *f)
{
    if (f->fd >= 0) {
        close(f->fd);
        f->fd = -1;
    }
}

static const char *sys_skip_blanks(const char *p)
{
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    return p;
}

static int sys_is_alnum(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z');
}

/*
 * Parse an unsigned decimal; see sys_proc.h.
 */
int sys_scan_u64(const char **p, uint64_t *out)
{
    const char *s = sys_skip_blanks(*p);
    uint64_t v = 0;

    if (*s < '0' || *s > '9') {
        return VIGIL_EPARSE;
    }
    while (*s >= '0' && *s <= '9') {
        unsigned d = (unsigned)(*s - '0');

        if (v > (UINT64_MAX - d) / 10) {
            return VIGIL_EPARSE;
        }
        v = v * 10 + d;
        s++;
    }
    if (sys_is_alnum(*s)) {
        return VIGIL_EPARSE;
    }
    *out = v;
    *p = s;
    return 0;
}

/*
 * Parse a decimal fraction; see sys_proc.h.
 */
int sys_scan_dec(const char **p, double *out)
{
    /* 10^0 .. 10^15, all exact in a double. */
    static const double pow10[] = {1e0,  1e1,  1e2,  1e3, 1e4,  1e5,
                                   1e6,  1e7,  1e8,  1e9, 1e10, 1e11,
                                   1e12, 1e13, 1e14, 1e15};
    const char *s = sys_skip_blanks(*p);
    uint64_t mant = 0;
    unsigned ndigits = 0, nfrac = 0;
    int dot = 0;

    /* The digits form one integer divided by a power of ten: when both
     * are exact (below 2^53 and 10^15 here), the division rounds
     * correctly and gives what strtod would, without its locale. */
    for (;; s++) {
        if (*s == '.' && !dot) {
            dot = 1;
            continue;
        }
        if (*s < '0' || *s > '9') {
            break;
        }
        if (ndigits == 15) {
            return VIGIL_EPARSE;
        }
        mant = mant * 10 + (uint64_t)(*s - '0');
        ndigits++;
        nfrac += (unsigned)dot;
    }
    if (ndigits == 0 || sys_is_alnum(*s) || *s == '.') {
        return VIGIL_EPARSE;
    }
    *out = (double)mant / pow10[nfrac];
    *p = s;
    return 0;
}

/*
 * Delta of one counter; see sys_proc.h.
 */
int sys_delta(uint64_t prev, uint64_t cur, uint64_t *d)
{
    if (cur < prev) {
        return 0;
    }
    *d = cur - prev;
    return 1;
}

/*
 * Rate of one counter; see sys_proc.h.
 */
int sys_rate(uint64_t prev, uint64_t cur, int64_t dt_ns, double scale,
             double *out)
{
    uint64_t d;

    if (dt_ns <= 0 || !sys_delta(prev, cur, &d)) {
        return 0;
    }
    *out = (double)d * scale * 1e9 / (double)dt_ns;
    return 1;
}
