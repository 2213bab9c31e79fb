/*
 * proc_read.c - reading /proc files and directories into caller-owned
 * buffers, and the number scanner and counter arithmetic shared by the
 * parsers. See proc_pid.h.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proc_pid.h"

/*
 * CLOCK_MONOTONIC in ns. Does not fail.
 */
int64_t proc_mono_ns(void)
{
    struct timespec ts;

    /* CLOCK_MONOTONIC cannot fail with a valid pointer. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t (*proc_clock)(void) = proc_mono_ns;

static int proc_open_at(int dirfd, const char *name, int flags)
{
    int fd;

    do {
        fd = openat(dirfd, name, flags | O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    return fd < 0 ? -errno : fd;
}

/*
 * Read a whole small file; see proc_pid.h.
 */
ssize_t proc_read_at(int dirfd, const char *name, char *buf, size_t cap,
                     int *truncated)
{
    size_t len = 0;
    int fd, err = 0;

    if (truncated != NULL) {
        *truncated = 0;
    }
    if (cap < 2) {
        return -EINVAL;
    }
    fd = proc_open_at(dirfd, name, 0);
    if (fd < 0) {
        return fd;
    }
    /* procfs files are generated per read() call; keep reading until the
     * end, as a short read does not mean the end. */
    while (len < cap - 1) {
        ssize_t r = read(fd, buf + len, cap - 1 - len);

        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            err = -errno;
            break;
        }
        if (r == 0) {
            break;
        }
        len += (size_t)r;
    }
    if (err == 0 && len == cap - 1 && truncated != NULL) {
        char c;
        ssize_t r;

        do {
            r = read(fd, &c, 1);
        } while (r < 0 && errno == EINTR);
        *truncated = r > 0;
    }
    close(fd);
    if (err != 0) {
        return err;
    }
    buf[len] = '\0';
    return (ssize_t)len;
}

/*
 * Open a directory; see proc_pid.h.
 */
int proc_dir_open(int dirfd, const char *name)
{
    return proc_open_at(dirfd, name, O_DIRECTORY);
}

/*
 * Start a listing; see proc_pid.h.
 */
void proc_dir_init(struct proc_dir *d, int fd, char *buf, size_t cap)
{
    memset(d, 0, sizeof(*d));
    d->fd = fd;
    d->buf = buf;
    d->cap = cap;
}

/*
 * The next entry; see proc_pid.h.
 */
const char *proc_dir_next(struct proc_dir *d, unsigned char *type)
{
    for (;;) {
        struct dirent64 *e;
        ssize_t r;

        if (d->pos < d->len) {
            e = (struct dirent64 *)(void *)(d->buf + d->pos);
            d->pos += e->d_reclen;
            if (e->d_name[0] == '.' &&
                (e->d_name[1] == '\0' ||
                 (e->d_name[1] == '.' && e->d_name[2] == '\0'))) {
                continue;
            }
            if (type != NULL) {
                *type = e->d_type;
            }
            return e->d_name;
        }
        if (d->fd < 0 || d->err != 0) {
            return NULL;
        }
        do {
            r = getdents64(d->fd, d->buf, d->cap);
        } while (r < 0 && errno == EINTR);
        if (r < 0) {
            /* A directory of a process that exited meanwhile reads as
             * ENOENT: the listing simply ends. */
            d->err = errno == ENOENT ? 0 : -errno;
            d->fd = -1;
            return NULL;
        }
        if (r == 0) {
            d->fd = -1;
            return NULL;
        }
        d->len = (size_t)r;
        d->pos = 0;
    }
}

/*
 * A decimal entry name; see proc_pid.h.
 */
int proc_name_pid(const char *name, int *out)
{
    long v = 0;

    if (*name < '1' || *name > '9') {
        return 0;
    }
    for (; *name != '\0'; name++) {
        if (*name < '0' || *name > '9' || v > 100000000L) {
            return 0;
        }
        v = v * 10 + (*name - '0');
    }
    *out = (int)v;
    return 1;
}

/*
 * Open a line reader; see proc_pid.h.
 */
int proc_lines_open(struct proc_lines *l, int dirfd, const char *name,
                    char *buf, size_t cap)
{
    memset(l, 0, sizeof(*l));
    l->buf = buf;
    l->cap = cap;
    l->fd = proc_open_at(dirfd, name, 0);
    if (l->fd < 0) {
        l->err = l->fd;
        l->fd = -1;
        return l->err;
    }
    return 0;
}

static int proc_lines_fill(struct proc_lines *l)
{
    ssize_t r;

    if (l->pos > 0) {
        memmove(l->buf, l->buf + l->pos, l->len - l->pos);
        l->len -= l->pos;
        l->pos = 0;
    }
    if (l->len == l->cap - 1) {
        /* One line fills the buffer: drop it up to its newline. */
        l->skipping = 1;
        l->len = 0;
    }
    do {
        r = read(l->fd, l->buf + l->len, l->cap - 1 - l->len);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        l->err = -errno;
        return l->err;
    }
    if (r == 0) {
        l->eof = 1;
    }
    l->len += (size_t)r;
    return 0;
}

/*
 * The next line; see proc_pid.h.
 */
char *proc_lines_next(struct proc_lines *l)
{
    for (;;) {
        char *start = l->buf + l->pos;
        char *nl;

        if (l->err != 0 || l->fd < 0) {
            return NULL;
        }
        nl = memchr(start, '\n', l->len - l->pos);
        if (nl != NULL) {
            *nl = '\0';
            l->pos = (size_t)(nl - l->buf) + 1;
            if (l->skipping) {
                l->skipping = 0;
                continue;
            }
            return start;
        }
        if (l->eof) {
            if (l->pos < l->len && !l->skipping) {
                l->buf[l->len] = '\0';
                l->pos = l->len;
                return start;
            }
            return NULL;
        }
        if (proc_lines_fill(l) != 0) {
            return NULL;
        }
    }
}

/*
 * Close a line reader; see proc_pid.h.
 */
void proc_lines_close(struct proc_lines *l)
{
    if (l->fd >= 0) {
        close(l->fd);
        l->fd = -1;
    }
}

/*
 * Cut a line out of a text; see proc_pid.h.
 */
char *proc_text_line(char **p)
{
    char *start = *p, *nl;

    if (*start == '\0') {
        return NULL;
    }
    nl = strchr(start, '\n');
    if (nl != NULL) {
        *nl = '\0';
        *p = nl + 1;
    } else {
        *p = start + strlen(start);
    }
    return start;
}

static int proc_is_alnum(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z');
}

/*
 * Parse an unsigned decimal; see proc_pid.h.
 */
int proc_scan_u64(const char **p, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;

    while (*s == ' ' || *s == '\t') {
        s++;
    }
    if (*s < '0' || *s > '9') {
        return -1;
    }
    for (; *s >= '0' && *s <= '9'; s++) {
        unsigned d = (unsigned)(*s - '0');

        if (v > (UINT64_MAX - d) / 10) {
            return -1;
        }
        v = v * 10 + d;
    }
    if (proc_is_alnum(*s)) {
        return -1;
    }
    *out = v;
    *p = s;
    return 0;
}

/*
 * A counter's rate; see proc_pid.h.
 */
int proc_rate(uint64_t prev, uint64_t cur, int64_t dt_ns, double scale,
              double *out)
{
    if (cur < prev || dt_ns <= 0) {
        return 0;
    }
    *out = (double)(cur - prev) * scale * 1e9 / (double)dt_ns;
    return 1;
}
