/*
 * log.c - the log probe plugin: follows an application's log file without
 * polling it, counts its lines and the lines matching named patterns, and
 * keeps the recent matches with their context for log.recent.
 *
 * Events: one uv_fs_event (inotify) on the file's directory. It reports
 * writes to the file, its rename and truncation, and the creation of a
 * file at its name, so one watch covers a file that does not exist yet,
 * rotation and copytruncate. Any such event asks for a poll; a poll is a
 * work on the thread pool (log_follow.c, log_scan.c) that reads the new
 * bytes and matches their lines, so the loop never reads or matches. One
 * work per instance is in flight at a time: events that come meanwhile
 * ask for one more poll, not one each. While a rotated file is still
 * read (rotate_wait), an event about any file of the directory polls.
 *
 * Each collection (`interval`) polls too, which catches what inotify
 * cannot see (a directory that did not exist, a network file system), and
 * publishes (labels: pattern, and instance for named sections):
 *
 *   log.lines_total, log.lines_per_s          complete lines read
 *   log.lines.matched_total{pattern},
 *   log.lines.matched_per_s{pattern}          lines matching it
 *   log.lines.truncated_total                 lines longer than max_line
 *   log.file.present                          1 when the file exists
 *   log.file.bytes_total                      bytes read
 *   log.file.rotations_total                  new files at the path
 *   log.file.truncations_total                truncations seen
 *
 * Rates are over the real time between two collections (the first one
 * only primes them). A file that does not exist is waited for (said once
 * in the log, log.file.present 0, log.up 1); a file that cannot be read
 * (permissions) is an error (log.up 0).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "log.h"

static const struct vigil_option lf_options[] = {
    {.key = "file",
     .type = VIGIL_OPT_STRING,
     .offset = offsetof(struct lf_config, file),
     .help = "the log file to follow (absolute path; it may not exist yet)",
     .flags = VIGIL_OPT_REQUIRED},
    {.key = "pattern",
     .type = VIGIL_OPT_LIST,
     .offset = offsetof(struct lf_config, pattern),
     .help = "NAME: REGEX - count lines matching this POSIX extended regex "
             "as pattern=NAME; repeat for several"},
    {.key = "context_before",
     .type = VIGIL_OPT_INT,
     .def = "2",
     .offset = offsetof(struct lf_config, before),
     .help = "lines kept before each recent match (0 to 100)"},
    {.key = "context_after",
     .type = VIGIL_OPT_INT,
     .def = "5",
     .offset = offsetof(struct lf_config, after),
     .help = "lines kept after each recent match, e.g. a traceback's "
             "(0 to 1000)"},
    {.key = "keep",
     .type = VIGIL_OPT_INT,
     .def = "10",
     .offset = offsetof(struct lf_config, keep),
     .help = "recent matches kept per pattern for log.recent (1 to 10000)"},
    {.key = "max_line",
     .type = VIGIL_OPT_BYTES,
     .def = "2KiB",
     .offset = offsetof(struct lf_config, max_line),
     .help = "bytes of a line kept and matched; longer lines are cut "
             "(64 to 1MiB)"},
    {.key = "start_at",
     .type = VIGIL_OPT_ENUM,
     .def = "end",
     .offset = offsetof(struct lf_config, start_at),
     .help = "where to start in a file that exists when vigil starts; a "
             "file that appears later is read from its beginning",
     .choices = "end|beginning"},
    {.key = "rotate_wait",
     .type = VIGIL_OPT_DURATION,
     .def = "5s",
     .offset = offsetof(struct lf_config, rotate_wait_ms),
     .help = "how long a rotated file is still read, for what the "
             "application writes to it before it reopens its log"},
    {.key = NULL},
};

static struct lf *lf_all;

/* The live instances; see log.h. */
struct lf *lf_instances(void)
{
    return lf_all;
}

/* The instance named name; see log.h. */
struct lf *lf_instance_find(const char *name)
{
    struct lf *s;

    for (s = lf_all; s != NULL; s = s->next) {
        if (strcmp(s->host->instance_name(s->inst), name) == 0) {
            return s;
        }
    }
    return NULL;
}

static int64_t lf_wall_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ------------------------------------------------------------------------
 * The directory watch (loop).
 */

static void lf_watch_closed(uv_handle_t *h)
{
    free(h);
}

static void lf_watch_close(struct lf *s)
{
    if (s->dirw != NULL) {
        uv_close((uv_handle_t *)s->dirw, lf_watch_closed);
        s->dirw = NULL;
    }
}

static void lf_kick_or_fail(struct lf *s);

static void lf_on_dir_event(uv_fs_event_t *h, const char *filename, int events,
                            int status)
{
    struct lf *s = h->data;

    (void)events;
    if (status < 0) {
        if (!s->said_watch) {
            s->said_watch = 1;
            s->host->log(s->inst, VIGIL_LOG_WARN,
                         "watching %s failed: %s; reading every interval",
                         s->dir, uv_strerror(status));
        }
        return;
    }
    /* The rotated file has another name: while it is read, any file. */
    if (filename == NULL || strcmp(filename, s->base) == 0 || s->old_open) {
        s->poll_wanted = 1;
        lf_kick_or_fail(s);
    }
}

/* Watch the directory the last poll found (a new one if it was made
 * again), or stop watching one that is gone. */
static void lf_watch_update(struct lf *s)
{
    int rc;

    if (s->fw.dir_ino == 0) {
        lf_watch_close(s);
        if (!s->said_nodir) {
            s->said_nodir = 1;
            s->host->log(s->inst, VIGIL_LOG_INFO,
                         "directory %s does not exist: looking again every "
                         "interval",
                         s->dir);
        }
        return;
    }
    s->said_nodir = 0;
    if (s->dirw != NULL && s->dirw_dev == s->fw.dir_dev &&
        s->dirw_ino == s->fw.dir_ino) {
        return;
    }
    lf_watch_close(s);
    s->dirw = malloc(sizeof(*s->dirw));
    if (s->dirw == NULL) {
        return;
    }
    uv_fs_event_init(s->host->loop(s->inst), s->dirw);
    s->dirw->data = s;
    rc = uv_fs_event_start(s->dirw, lf_on_dir_event, s->dir, 0);
    if (rc != 0) {
        lf_watch_close(s);
        if (!s->said_watch) {
            s->said_watch = 1;
            s->host->log(s->inst, VIGIL_LOG_WARN,
                         "cannot watch %s: %s; reading every interval "
                         "instead",
                         s->dir, uv_strerror(rc));
        }
        return;
    }
    s->dirw_dev = s->fw.dir_dev;
    s->dirw_ino = s->fw.dir_ino;
    /* What was written before the watch began is read now. */
    s->poll_wanted = 1;
}

/* ------------------------------------------------------------------------
 * Publishing (loop).
 */

static void lf_publish(struct lf *s)
{
    const struct vigil_host *h = s->host;
    const struct lf_follow *fw = &s->fw;
    int64_t now = h->now_ns(s->inst);
    double dt = s->have_prev ? (double)(now - s->prev_ns) / 1e9 : 0.0;
    size_t i;

    h->publish(s->inst, s->s_lines, 0, (double)s->sc.lines_total);
    h->publish(s->inst, s->s_trunc, 0, (double)s->sc.truncated_total);
    h->publish(s->inst, s->s_present, 0, fw->present ? 1.0 : 0.0);
    h->publish(s->inst, s->s_bytes, 0, (double)fw->bytes);
    h->publish(s->inst, s->s_rot, 0, (double)fw->rotations);
    h->publish(s->inst, s->s_truncs, 0, (double)fw->truncations);
    if (dt > 0.0) {
        h->publish(s->inst, s->s_lines_rate, 0,
                   (double)(s->sc.lines_total - s->prev_lines) / dt);
    }
    for (i = 0; i < s->sc.npat; i++) {
        uint64_t m = s->sc.pat[i].matched;

        h->publish(s->inst, s->s_matched[i], 0, (double)m);
        if (dt > 0.0) {
            h->publish(s->inst, s->s_matched_rate[i], 0,
                       (double)(m - s->prev_matched[i]) / dt);
        }
        s->prev_matched[i] = m;
    }
    s->prev_lines = s->sc.lines_total;
    s->prev_ns = now;
    s->have_prev = 1;
}

/* Finish the pending collection after a poll. */
static void lf_collect_finish(struct lf *s)
{
    const struct lf_follow *fw = &s->fw;

    s->collect_pending = 0;
    lf_publish(s);
    if (fw->err != 0) {
        s->host->error(s->inst, "%s", fw->errmsg);
        s->host->collect_done(s->inst, VIGIL_EIO);
        return;
    }
    if (!fw->present && !s->said_waiting) {
        s->said_waiting = 1;
        s->host->log(s->inst, VIGIL_LOG_INFO,
                     "%s does not exist yet: waiting for it", s->cfg->file);
    } else if (fw->present && s->said_waiting) {
        s->said_waiting = 0;
        s->host->log(s->inst, VIGIL_LOG_INFO, "%s appeared: following it",
                     s->cfg->file);
    }
    s->host->collect_done(s->inst, 0);
}

/* ------------------------------------------------------------------------
 * Polls (thread pool) and their scheduling (loop).
 */

static void lf_poll_work(void *arg)
{
    struct lf *s = arg;

    lf_follow_poll(&s->fw, &s->sc, s->buf, LF_READ_BUF, LF_POLL_BUDGET,
                   lf_wall_ns());
}

static void lf_poll_after(void *arg, int status)
{
    struct lf *s = arg;

    s->busy = 0;
    s->last_was_poll = 1;
    if (s->stopped) {
        return;
    }
    s->old_open = s->fw.old.fd >= 0;
    if (status == 0) {
        s->poll_wanted |= s->fw.more;
        lf_watch_update(s);
        if (s->collect_pending) {
            lf_collect_finish(s);
        }
    } else if (s->collect_pending) {
        s->collect_pending = 0;
        s->host->collect_done(s->inst, status);
    }
    lf_kick_or_fail(s);
}

/* Start the next work when none is in flight; see log.h. */
int lf_kick(struct lf *s)
{
    int rc;

    if (s->busy || s->stopped || !s->started) {
        return 0;
    }
    /* log.recent waits for at most one poll, and a busy log cannot keep
     * it waiting: polls and requests take turns. */
    if (s->queue != NULL && (s->last_was_poll || !s->poll_wanted) &&
        lf_diag_next(s)) {
        return 0;
    }
    if (!s->poll_wanted && !s->collect_pending) {
        return 0;
    }
    s->poll_wanted = 0;
    s->busy = 1;
    rc = s->host->work(s->inst, lf_poll_work, lf_poll_after, s);
    if (rc != 0) {
        s->busy = 0;
        s->poll_wanted = 1;
    }
    return rc;
}

/* Kick from an event or a completion: a collection waiting for a poll
 * that cannot be queued fails now rather than never. */
static void lf_kick_or_fail(struct lf *s)
{
    int rc = lf_kick(s);

    if (rc != 0 && s->collect_pending) {
        s->collect_pending = 0;
        s->host->error(s->inst, "cannot queue the read: %s",
                       vigil_error_text(rc));
        s->host->collect_done(s->inst, rc);
    }
}

static int lf_collect(void *state)
{
    struct lf *s = state;
    int rc;

    if (s->stopped || !s->started) {
        return VIGIL_ESTATE;
    }
    if (s->collect_pending) {
        return VIGIL_EBUSY;
    }
    s->collect_pending = 1;
    rc = lf_kick(s);
    if (rc != 0) {
        s->collect_pending = 0;
        s->host->error(s->inst, "cannot queue the read: %s",
                       vigil_error_text(rc));
        return rc;
    }
    return VIGIL_PENDING;
}

/* ------------------------------------------------------------------------
 * Life cycle.
 */

static int lf_start(void *state)
{
    struct lf *s = state;

    s->started = 1;
    s->poll_wanted = 1; /* open the file (at its end) and watch */
    lf_kick(s);         /* failing, it is tried at the first collection */
    return 0;
}

static void lf_stop(void *state)
{
    struct lf *s = state;

    s->stopped = 1;
    lf_watch_close(s);
    lf_diag_stop(s);
}

static void lf_destroy(void *state)
{
    struct lf *s = state;
    struct lf **pp;

    if (s == NULL) {
        return;
    }
    for (pp = &lf_all; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    lf_scan_fini(&s->sc);
    lf_follow_fini(&s->fw);
    free(s->buf);
    free(s->prev_matched);
    free(s->s_matched);
    free(s->s_matched_rate);
    free(s);
}

static int lf_series_create(struct lf *s)
{
    static const struct {
        size_t off;
        const char *name;
    } fixed[] = {
        {offsetof(struct lf, s_lines), "log.lines_total"},
        {offsetof(struct lf, s_lines_rate), "log.lines_per_s"},
        {offsetof(struct lf, s_trunc), "log.lines.truncated_total"},
        {offsetof(struct lf, s_present), "log.file.present"},
        {offsetof(struct lf, s_bytes), "log.file.bytes_total"},
        {offsetof(struct lf, s_rot), "log.file.rotations_total"},
        {offsetof(struct lf, s_truncs), "log.file.truncations_total"},
    };
    const struct vigil_host *h = s->host;
    size_t i;
    int rc = 0;

    for (i = 0; rc == 0 && i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        rc = h->series(s->inst, fixed[i].name, NULL, 0,
                       (vigil_series_id *)((char *)s + fixed[i].off));
    }
    for (i = 0; rc == 0 && i < s->sc.npat; i++) {
        struct vigil_label l = {.key = "pattern", .value = s->sc.pat[i].name};

        rc = h->series(s->inst, "log.lines.matched_total", &l, 1,
                       &s->s_matched[i]);
        if (rc == 0) {
            rc = h->series(s->inst, "log.lines.matched_per_s", &l, 1,
                           &s->s_matched_rate[i]);
        }
    }
    if (rc != 0) {
        h->log(s->inst, VIGIL_LOG_ERROR, "cannot create series: %s",
               vigil_error_text(rc));
    }
    return rc;
}

static int lf_range(struct lf *s, const char *key, int64_t v, int64_t lo,
                    int64_t hi)
{
    if (v >= lo && v <= hi) {
        return 0;
    }
    s->host->log(s->inst, VIGIL_LOG_ERROR, "%s %lld: expected %lld to %lld",
                 key, (long long)v, (long long)lo, (long long)hi);
    return VIGIL_ECONFIG;
}

/* Options the core cannot check; dir and base from file. */
static int lf_config_check(struct lf *s)
{
    const struct lf_config *c = s->cfg;
    const char *slash = strrchr(c->file, '/');
    double mem;

    if (c->file[0] != '/' || slash[1] == '\0' ||
        strlen(c->file) >= sizeof(s->dir) ||
        strlen(slash + 1) >= sizeof(s->base)) {
        s->host->log(s->inst, VIGIL_LOG_ERROR,
                     "file '%s': expected an absolute path to a file", c->file);
        return VIGIL_ECONFIG;
    }
    snprintf(s->dir, sizeof(s->dir), "%.*s",
             slash == c->file ? 1 : (int)(slash - c->file), c->file);
    snprintf(s->base, sizeof(s->base), "%s", slash + 1);
    if (lf_range(s, "context_before", c->before, 0, 100) != 0 ||
        lf_range(s, "context_after", c->after, 0, 1000) != 0 ||
        lf_range(s, "keep", c->keep, 1, 10000) != 0 ||
        lf_range(s, "max_line", (int64_t)c->max_line, 64, 1 << 20) != 0 ||
        lf_range(s, "rotate_wait (ms)", c->rotate_wait_ms, 0, 3600 * 1000) !=
            0) {
        return VIGIL_ECONFIG;
    }
    mem = (double)c->pattern.n * (double)c->keep *
          (double)(c->before + 1 + c->after) * (double)c->max_line;
    if (mem > LF_MEMORY_MAX) {
        s->host->log(s->inst, VIGIL_LOG_ERROR,
                     "patterns x keep x (context_before + 1 + context_after) "
                     "x max_line is %.0f MiB, more than %u MiB: keep fewer "
                     "matches or less context",
                     mem / (1 << 20), LF_MEMORY_MAX >> 20);
        return VIGIL_ECONFIG;
    }
    return 0;
}

static int lf_init_state(struct lf *s)
{
    const struct lf_config *c = s->cfg;
    struct lf_scan_config sc = {
        .max_line = (size_t)c->max_line,
        .before = (size_t)c->before,
        .after = (size_t)c->after,
        .keep = (size_t)c->keep,
    };
    char err[512];
    int rc = lf_scan_init(&s->sc, &sc, &c->pattern, err, sizeof(err));

    if (rc != 0) {
        s->host->log(s->inst, VIGIL_LOG_ERROR, "%s", err);
        return rc;
    }
    s->buf = malloc(LF_READ_BUF);
    s->prev_matched = calloc(s->sc.npat + 1, sizeof(*s->prev_matched));
    s->s_matched = calloc(s->sc.npat + 1, sizeof(*s->s_matched));
    s->s_matched_rate = calloc(s->sc.npat + 1, sizeof(*s->s_matched_rate));
    if (s->buf == NULL || s->prev_matched == NULL || s->s_matched == NULL ||
        s->s_matched_rate == NULL ||
        lf_follow_init(&s->fw, c->file, c->start_at == 0,
                       c->rotate_wait_ms * 1000000LL,
                       (size_t)c->max_line) != 0) {
        s->host->log(s->inst, VIGIL_LOG_ERROR, "out of memory");
        return VIGIL_ENOMEM;
    }
    return lf_series_create(s);
}

static int lf_init(const struct vigil_host *host, vigil_instance *inst,
                   const void *config, void **state)
{
    struct lf *s;
    int rc;

    if (host->struct_size < offsetof(struct vigil_host, instance_name) +
                                sizeof(host->instance_name)) {
        return VIGIL_EABI;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        host->log(inst, VIGIL_LOG_ERROR, "out of memory");
        return VIGIL_ENOMEM;
    }
    s->host = host;
    s->inst = inst;
    s->cfg = config;
    s->fw.cur.fd = s->fw.old.fd = -1; /* for lf_destroy on failure */
    rc = lf_config_check(s);
    if (rc == 0) {
        rc = lf_init_state(s);
    }
    if (rc != 0) {
        lf_destroy(s);
        return rc;
    }
    s->next = lf_all;
    lf_all = s;
    rc = lf_diag_register(s);
    if (rc != 0) {
        host->log(inst, VIGIL_LOG_WARN, "cannot register log.recent: %s",
                  vigil_error_text(rc));
    }
    *state = s;
    return 0;
}

VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {
    .abi_version = VIGIL_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct vigil_plugin),
    .name = "log",
    .version = "0.1.0",
    .description = "follows a log file through rotation and truncation: "
                   "lines and lines matching named patterns, as counters "
                   "and rates; diagnostic log.recent (matches with context)",
    .options = lf_options,
    .config_size = sizeof(struct lf_config),
    .init = lf_init,
    .collect = lf_collect,
    .start = lf_start,
    .stop = lf_stop,
    .destroy = lf_destroy,
};
