/*
 * log_follow.c - following one log path on the thread pool, as tail -F
 * does, with the cases logrotate makes:
 *
 *   - new bytes: read from where the last poll stopped (pread), up to a
 *     budget per poll so that one work never reads for long;
 *   - rotation (rename, then a new file at the path, `create` mode): the
 *     file read so far is read to its end, then kept open as `old` for
 *     rotate_wait, since the application writes to it until it reopens
 *     its log (often only on SIGHUP, after the new file exists); the new
 *     file is read from its beginning;
 *   - truncation (copytruncate): the size falls below the offset, or the
 *     bytes just before the offset are no longer those read (the file was
 *     truncated and written past that offset between two polls): read
 *     again from 0, and the partial line is forgotten;
 *   - a missing file (or directory) is waited for: every poll looks again,
 *     and a file that appears after the first look is new, so it is read
 *     from its beginning. A file that exists at the first look is read
 *     from its end (start_at_end), as an operator expects from a monitor
 *     started on a busy log, minus the line it is in the middle of.
 *
 * Everything here runs in a work owned by one instance; nothing is shared.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* strerror for pool threads (GNU strerror_r; strerror is not
 * thread-safe). */
static const char *lf_strerror(int err, char *buf, size_t size)
{
    return strerror_r(err, buf, size);
}

static void lf_file_reset(struct lf_file *f)
{
    f->fd = -1;
    f->dev = 0;
    f->ino = 0;
    f->off = 0;
    f->siglen = 0;
}

/* Set up following path; 0 or VIGIL_ENOMEM. See log.h. */
int lf_follow_init(struct lf_follow *f, const char *path, int start_at_end,
                   int64_t rotate_wait_ns, size_t max_line)
{
    memset(f, 0, sizeof(*f));
    f->path = path;
    f->start_at_end = start_at_end;
    f->rotate_wait_ns = rotate_wait_ns;
    lf_file_reset(&f->cur);
    lf_file_reset(&f->old);
    if (lf_partial_init(&f->cur.part, max_line) != 0 ||
        lf_partial_init(&f->old.part, max_line) != 0) {
        return VIGIL_ENOMEM;
    }
    return 0;
}

static void lf_file_close(struct lf_file *f)
{
    if (f->fd >= 0) {
        close(f->fd);
    }
    lf_file_reset(f);
    lf_partial_drop(&f->part);
}

/* Close the files and free the buffers. Does not fail. */
void lf_follow_fini(struct lf_follow *f)
{
    lf_file_close(&f->cur);
    lf_file_close(&f->old);
    lf_partial_fini(&f->cur.part);
    lf_partial_fini(&f->old.part);
}

/* Remember the last bytes read, to recognise them at the next poll. */
static void lf_sig_add(struct lf_file *f, const char *b, size_t n)
{
    if (n >= LF_SIG_LEN) {
        memcpy(f->sig, b + n - LF_SIG_LEN, LF_SIG_LEN);
        f->siglen = LF_SIG_LEN;
        return;
    }
    if (f->siglen + n > LF_SIG_LEN) {
        size_t drop = f->siglen + n - LF_SIG_LEN;

        memmove(f->sig, f->sig + drop, f->siglen - drop);
        f->siglen -= drop;
    }
    memcpy(f->sig + f->siglen, b, n);
    f->siglen += n;
}

/* Were the bytes before the offset rewritten since they were read? */
static int lf_rewritten(const struct lf_file *f, char *buf)
{
    ssize_t n;

    if (f->siglen == 0 || f->off < f->siglen) {
        return 0;
    }
    n = pread(f->fd, buf, f->siglen, (off_t)(f->off - f->siglen));
    return n != (ssize_t)f->siglen || memcmp(buf, f->sig, f->siglen) != 0;
}

/* Read what is new in one open file. Returns the bytes still allowed. */
static size_t lf_drain(struct lf_follow *fw, struct lf_file *f,
                       struct lf_scan *sc, char *buf, size_t size,
                       size_t budget, int64_t now_ns)
{
    struct stat st;
    ssize_t n;

    if (fstat(f->fd, &st) != 0) {
        return budget;
    }
    if ((uint64_t)st.st_size < f->off || lf_rewritten(f, buf)) {
        fw->truncations++;
        f->off = 0;
        f->siglen = 0;
        lf_partial_drop(&f->part);
    }
    while (budget > 0) {
        size_t want = size < budget ? size : budget;

        n = pread(f->fd, buf, want, (off_t)f->off);
        if (n <= 0) {
            return budget; /* the end, or an error seen at the next poll */
        }
        lf_scan_feed(sc, &f->part, buf, (size_t)n, now_ns);
        lf_sig_add(f, buf, (size_t)n);
        f->off += (uint64_t)n;
        fw->bytes += (uint64_t)n;
        budget -= (size_t)n;
    }
    fw->more = 1;
    return 0;
}

/* Open the file now at the path as cur. Returns 0 or an errno. */
static int lf_open_cur(struct lf_follow *fw, char *buf)
{
    struct lf_file *f = &fw->cur;
    struct stat st;
    int fd;

    /* O_NONBLOCK: a FIFO put at the path must not hang the work. */
    fd = open(fw->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        return errno;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return EINVAL;
    }
    f->fd = fd;
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    f->off = 0;
    f->siglen = 0;
    lf_partial_drop(&f->part);
    if (!fw->looked && fw->start_at_end && st.st_size > 0) {
        /* Start at the end, without the line being written there. */
        size_t k = st.st_size < LF_SIG_LEN ? (size_t)st.st_size : LF_SIG_LEN;
        ssize_t n;

        f->off = (uint64_t)st.st_size;
        n = pread(fd, buf, k, (off_t)(f->off - k));
        if (n == (ssize_t)k) {
            lf_sig_add(f, buf, k);
            if (buf[k - 1] != '\n') {
                lf_partial_skip(&f->part);
            }
        }
    }
    return 0;
}

/* cur was replaced at the path: keep it as old for rotate_wait. */
static void lf_rotate(struct lf_follow *fw, struct lf_scan *sc, int64_t now)
{
    if (fw->old.fd >= 0) {
        lf_scan_flush(sc, &fw->old.part, now);
        lf_file_close(&fw->old);
    }
    /* Swap, so that each file keeps its partial line's buffer. */
    {
        struct lf_file t = fw->old;

        fw->old = fw->cur;
        fw->cur = t;
    }
    fw->old_until_ns = now + fw->rotate_wait_ns;
    fw->rotations++;
}

static void lf_look_dir(struct lf_follow *fw)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(fw->path, '/');
    struct stat st;

    if (slash == NULL) {
        snprintf(dir, sizeof(dir), ".");
    } else {
        snprintf(dir, sizeof(dir), "%.*s",
                 slash == fw->path ? 1 : (int)(slash - fw->path), fw->path);
    }
    if (stat(dir, &st) == 0) {
        fw->dir_dev = st.st_dev;
        fw->dir_ino = st.st_ino;
    } else {
        fw->dir_dev = 0;
        fw->dir_ino = 0;
    }
}

/* Note a failure other than "does not exist yet". */
static void lf_follow_fail(struct lf_follow *fw, int err)
{
    char why[128];

    fw->present = 0;
    fw->err = err;
    snprintf(fw->errmsg, sizeof(fw->errmsg), "%s: %s", fw->path,
             err == EINVAL ? "not a regular file"
                           : lf_strerror(err, why, sizeof(why)));
}

/* Look at the path: open the file there if it is not the one read (a
 * first file, or a rotation). Returns the budget left. */
static size_t lf_follow_look(struct lf_follow *fw, struct lf_scan *sc,
                             char *buf, size_t size, size_t budget,
                             int64_t now_ns)
{
    struct stat st;
    int err;

    if (stat(fw->path, &st) != 0) {
        /* Gone (renamed away, deleted) or not there yet: keep reading
         * the file we have, the application may still write to it. */
        err = errno;
        fw->present = 0;
        fw->looked = 1;
        if (err != ENOENT && err != ENOTDIR) {
            lf_follow_fail(fw, err);
        }
        return budget;
    }
    fw->present = S_ISREG(st.st_mode);
    if (fw->cur.fd >= 0 && st.st_dev == fw->cur.dev &&
        st.st_ino == fw->cur.ino) {
        return budget;
    }
    if (!fw->present) {
        fw->looked = 1;
        lf_follow_fail(fw, EINVAL);
        return budget;
    }
    if (budget == 0) {
        return 0; /* the next poll (fw->more) switches */
    }
    if (fw->cur.fd >= 0) {
        lf_rotate(fw, sc, now_ns);
    }
    err = lf_open_cur(fw, buf);
    fw->looked = 1;
    if (err != 0) {
        lf_follow_fail(fw, err);
        return budget;
    }
    return lf_drain(fw, &fw->cur, sc, buf, size, budget, now_ns);
}

/* Read what is new at the path; see the file comment. Does not fail. */
void lf_follow_poll(struct lf_follow *fw, struct lf_scan *sc, char *buf,
                    size_t size, size_t budget, int64_t now_ns)
{
    fw->more = 0;
    fw->err = 0;
    fw->errmsg[0] = '\0';
    lf_look_dir(fw);
    /* What is new in the files open first: a rotated file's last lines
     * come before the new file's first ones. */
    if (fw->old.fd >= 0) {
        budget = lf_drain(fw, &fw->old, sc, buf, size, budget, now_ns);
        if (now_ns >= fw->old_until_ns && budget > 0) {
            lf_scan_flush(sc, &fw->old.part, now_ns);
            lf_file_close(&fw->old);
        }
    }
    if (fw->cur.fd >= 0 && budget > 0) {
        budget = lf_drain(fw, &fw->cur, sc, buf, size, budget, now_ns);
    }
    lf_follow_look(fw, sc, buf, size, budget, now_ns);
}
