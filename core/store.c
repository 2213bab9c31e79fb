/*
 * store - the back-end-independent part of store.h: the loop side, the
 * flush job, the public functions. The SQL lives in the back ends,
 * store_sqlite.c and store_pg.c, behind struct store_be_ops (store_be.h).
 *
 * Threads and ownership. The loop thread owns the queue side: the sample
 * buffer being filled, the record queue, the series waiting to be
 * catalogued, the stats. The writer side (the back end's writer
 * connection and statements, the bus id -> database id map, the roll-up
 * mark) belongs to whoever runs the flush job: the thread pool while a job
 * is in flight, the loop thread otherwise (at open, at close, and for
 * every call in tool mode). There is at most one job, so the writer side
 * needs no lock: uv_queue_work() and the after-work callback order the
 * hand-overs.
 *
 * A flush tick swaps the sample buffer and the pending series (each double
 * buffered) and moves the record queue into the job. The job has the back
 * end write all of it in one transaction, roll completed minutes up and
 * trim old rows in bounded chunks now and then; the after-work callback
 * counts, logs and calls the action callbacks.
 *
 * Bus keys, names and labels are read by the writer thread through
 * pointers taken on the loop when the series was announced: the bus never
 * moves or changes them while it lives.
 *
 * The reads are synchronous and go to the back end's reader connection
 * (daemon mode) so that they never share the writer's connection with a
 * job in flight.
 */
#include "store_be.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

#define STORE_RAW_RETENTION_DEFAULT (2 * STORE_NS_PER_DAY)
#define STORE_ROLLUP_RETENTION_DEFAULT (90 * STORE_NS_PER_DAY)
#define STORE_FLUSH_MS_DEFAULT 1000
#define STORE_SAMPLE_BUFFER_DEFAULT 65536u
#define STORE_SAMPLE_BUFFER_MAX (1u << 24) /* 2 x 384 MiB */

/* Records waiting to be written (and kept for a retry while the database
 * fails): a bound on memory, so that a dead disk or server cannot eat the
 * host. */
#define STORE_RECORDS_MAX 100000u
#define STORE_RECORD_BYTES_MAX ((size_t)64 << 20)

#define STORE_HOUSE_INTERVAL_NS (60 * STORE_NS_PER_S)
#define STORE_LOG_INTERVAL_NS (60 * STORE_NS_PER_S)
#define STORE_HOST_MAX 256
#define STORE_FINAL_ROUNDS 4

/* ------------------------------------------------------------ helpers */

/* See store_be.h. */
char *store_strdup(const char *text)
{
    size_t n = strlen(text) + 1;
    char *p = malloc(n);

    if (p != NULL) {
        memcpy(p, text, n);
    }
    return p;
}

/* Log a failure of the writer, at most once a minute (with the number of
 * lines held back meanwhile); `force` for the last words at close. */
static void store_log_error(struct store *s, int force, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void store_log_error(struct store *s, int force, const char *fmt, ...)
{
    int64_t now = clock_mono_ns();
    char line[2 * VIGIL_ERR_MAX];
    va_list ap;

    if (!force && now < s->log_next) {
        s->log_suppressed++;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (s->log_suppressed > 0) {
        log_error("store", "%s (%llu similar errors not logged)", line,
                  (unsigned long long)s->log_suppressed);
    } else {
        log_error("store", "%s", line);
    }
    s->log_suppressed = 0;
    s->log_next = now + STORE_LOG_INTERVAL_NS;
}

/* ------------------------------------------------------------ records */

/* Pointers to the string fields of a record, for copying. */
static unsigned store_rec_strings(struct store_rec *r, const char **f[8])
{
    switch (r->kind) {
    case STORE_REC_INCIDENT:
        f[0] = &r->u.inc.rule;
        f[1] = &r->u.inc.series;
        f[2] = &r->u.inc.title;
        f[3] = &r->u.inc.runbook;
        f[4] = &r->u.inc.labels_json;
        return 5;
    case STORE_REC_TRANSITION:
        f[0] = &r->u.tr.reason;
        return 1;
    case STORE_REC_EVIDENCE:
        f[0] = &r->u.ev.name;
        f[1] = &r->u.ev.phase;
        f[2] = &r->u.ev.status;
        f[3] = &r->u.ev.output;
        return 4;
    default:
        f[0] = &r->u.act.name;
        f[1] = &r->u.act.kind;
        f[2] = &r->u.act.mode;
        f[3] = &r->u.act.command;
        f[4] = &r->u.act.reason;
        f[5] = &r->u.act.output;
        return 6;
    }
}

/* Copy a record and its strings into one allocation. Returns NULL when
 * out of memory. */
static struct store_rec *store_rec_create(int kind, const void *src,
                                          size_t srcsize)
{
    struct store_rec tmp, *r;
    const char **f[8];
    unsigned n;
    size_t size = sizeof(tmp);
    char *p;

    memset(&tmp, 0, sizeof(tmp));
    tmp.kind = kind;
    memcpy(&tmp.u, src, srcsize);
    n = store_rec_strings(&tmp, f);
    for (unsigned i = 0; i < n; i++) {
        if (*f[i] != NULL) {
            size += strlen(*f[i]) + 1;
        }
    }
    r = malloc(size);
    if (r == NULL) {
        return NULL;
    }
    *r = tmp;
    r->size = size;
    p = (char *)(r + 1);
    store_rec_strings(r, f);
    for (unsigned i = 0; i < n; i++) {
        if (*f[i] != NULL) {
            size_t len = strlen(*f[i]) + 1;

            memcpy(p, *f[i], len);
            *f[i] = p;
            p += len;
        }
    }
    return r;
}

static void store_recq_free(struct store_recq *q)
{
    struct store_rec *r = q->head, *next;

    for (uint32_t i = 0; i < q->n && r != NULL; i++) {
        next = r->next;
        free(r);
        r = next;
    }
    memset(q, 0, sizeof(*q));
}

/* --------------------------------------------------------- the writer */

/* Append s to the JSON being built in the writer's buffer, escaped.
 * The buffer is sized for the longest labels the bus accepts. */
static char *store_json_str(char *p, const char *str)
{
    static const char hex[] = "0123456789abcdef";

    *p++ = '"';
    for (const unsigned char *c = (const unsigned char *)str; *c; c++) {
        if (*c == '"' || *c == '\\') {
            *p++ = '\\';
            *p++ = (char)*c;
        } else if (*c < 0x20) {
            memcpy(p, "\\u00", 4);
            p[4] = hex[*c >> 4];
            p[5] = hex[*c & 15];
            p += 6;
        } else {
            *p++ = (char)*c;
        }
    }
    *p++ = '"';
    return p;
}

/* {"k":"v",...} for a series' labels (sorted by key, as the bus keeps
 * them). Returns the writer's buffer or NULL if it cannot hold them. */
/* See store_be.h. */
const char *store_labels_json(struct store *s, const struct store_wser *w)
{
    size_t need = 3;
    char *p;

    for (uint32_t i = 0; i < w->nlabels; i++) {
        need += 6 * (strlen(w->labels[i].key) + strlen(w->labels[i].value));
        need += 6;
    }
    if (need > s->labels_cap) {
        char *b = realloc(s->labels_buf, need);

        if (b == NULL) {
            return NULL;
        }
        s->labels_buf = b;
        s->labels_cap = need;
    }
    p = s->labels_buf;
    *p++ = '{';
    for (uint32_t i = 0; i < w->nlabels; i++) {
        if (i > 0) {
            *p++ = ',';
        }
        p = store_json_str(p, w->labels[i].key);
        *p++ = ':';
        p = store_json_str(p, w->labels[i].value);
    }
    *p++ = '}';
    *p = '\0';
    return s->labels_buf;
}

/* Record the series a job brings in the writer's table (the writer
 * owns it, so it may grow here). Returns 0 or VIGIL_ENOMEM. */
static int store_adopt_series(struct store *s, struct store_job *j)
{
    for (uint32_t i = 0; i < j->nseries; i++) {
        const struct store_sref *r = &j->series[i];
        struct store_wser *w;

        if (r->id >= s->nwser) {
            uint32_t cap = s->nwser ? s->nwser : 1024;
            struct store_wser *n;

            while (cap <= r->id) {
                cap *= 2;
            }
            n = realloc(s->wser, (size_t)cap * sizeof(*n));
            if (n == NULL) {
                return VIGIL_ENOMEM;
            }
            memset(n + s->nwser, 0, (size_t)(cap - s->nwser) * sizeof(*n));
            s->wser = n;
            s->nwser = cap;
        }
        w = &s->wser[r->id];
        w->key = r->key;
        w->name = r->name;
        w->labels = r->labels;
        w->nlabels = r->nlabels;
    }
    return 0;
}

/* A rolled-back transaction takes the new catalogue rows with it: forget
 * every id, they are looked up again when needed. */
static void store_forget_ids(struct store *s)
{
    for (uint32_t i = 0; i < s->nwser; i++) {
        s->wser[i].dbid = 0;
    }
}

/* Sort a batch by series, keeping each series' samples in publish order
 * (a counting sort: linear, stable). Writing series by series touches
 * each B-tree leaf once per flush instead of once per sample, which is
 * what keeps many interleaved series fast. Returns the sorted samples, or
 * the batch as it is if the counts cannot be allocated. */
/* See store_be.h. */
const struct store_sample *store_sort(struct store *s,
                                      const struct store_job *j)
{
    uint32_t nb = s->nwser + 1, sum = 0; /* the last bucket: unknown ids */

    if (s->wsorted == NULL || j->nsamples < 2) {
        return j->samples;
    }
    if (nb > s->wcount_cap) {
        uint32_t *c = realloc(s->wcount, (size_t)nb * sizeof(*c));

        if (c == NULL) {
            return j->samples;
        }
        s->wcount = c;
        s->wcount_cap = nb;
    }
    memset(s->wcount, 0, (size_t)nb * sizeof(*s->wcount));
    for (uint32_t i = 0; i < j->nsamples; i++) {
        vigil_series_id id = j->samples[i].id;

        s->wcount[id < s->nwser ? id : s->nwser]++;
    }
    for (uint32_t b = 0; b < nb; b++) {
        uint32_t c = s->wcount[b];

        s->wcount[b] = sum;
        sum += c;
    }
    for (uint32_t i = 0; i < j->nsamples; i++) {
        vigil_series_id id = j->samples[i].id;

        s->wsorted[s->wcount[id < s->nwser ? id : s->nwser]++] = j->samples[i];
    }
    return s->wsorted;
}

/* Run a job on the writer: everything in one transaction, or nothing. */
static void store_job_run(struct store *s, struct store_job *j)
{
    int64_t t0 = clock_mono_ns(), mark0 = s->wmark;

    j->status = 0;
    j->msg[0] = '\0';
    j->samples_written = j->records_written = 0;
    j->records_refused = 0;
    j->backlog = 0;
    j->napproved = 0;
    if (store_adopt_series(s, j) != 0) {
        j->status = VIGIL_ENOMEM;
        snprintf(j->msg, sizeof(j->msg), "%s: out of memory", s->name);
    } else {
        j->status = s->ops->flush(s, j);
    }
    if (j->status != 0) {
        /* Rolled back: the roll-ups and the new catalogue rows with it. */
        if (j->msg[0] == '\0') {
            snprintf(j->msg, sizeof(j->msg), "%s: %s", s->name,
                     vigil_strerror(j->status));
        }
        s->wmark = mark0;
        store_forget_ids(s);
        j->samples_written = j->records_written = 0;
        j->napproved = 0;
    }
    j->ms = (double)(clock_mono_ns() - t0) / 1e6;
}

static void store_work(uv_work_t *req)
{
    struct store_job *j = req->data;

    store_job_run(j->s, j);
}

/* ------------------------------------------------------ the loop side */

static int store_has_work(const struct store *s)
{
    return s->nbuf > 0 || s->npend > 0 || s->q.n > 0;
}

/* Hand what is queued to the job (the writer must be idle). */
static void store_job_fill(struct store *s, struct store_job *j, int daemon,
                           int house)
{
    j->s = s;
    j->samples = s->buf[s->cur];
    j->nsamples = s->nbuf;
    s->cur ^= 1;
    s->nbuf = 0;
    j->series = s->pend[s->pcur];
    j->nseries = s->npend;
    s->pcur ^= 1;
    s->npend = 0;
    j->recs = s->q;
    memset(&s->q, 0, sizeof(s->q));
    j->now = clock_wall_ns();
    j->daemon = daemon;
    j->house = house;
}

/* The loop's half of a finished job: counters, log, callbacks in queue
 * order. A failed job's records go back to the front of the queue, ahead
 * of anything newer, to be written by the next flush; their callbacks
 * are called now, with the error, and not again. */
static void store_job_done(struct store *s, struct store_job *j)
{
    struct store_rec *r = j->recs.head, *next;
    uint32_t n = j->recs.n;

    s->stats.flushes++;
    s->stats.last_flush_ms = j->ms;
    s->stats.samples_written += j->samples_written;
    s->stats.records_written += j->records_written;
    s->backlog = j->backlog;
    if (j->status != 0) {
        s->stats.errors++;
        s->stats.samples_lost += j->nsamples;
        s->failing++;
        store_log_error(s, 0,
                        "%s; %u samples lost, %u records kept for the next "
                        "flush",
                        j->msg, j->nsamples, n);
        if (n > 0) {
            j->recs.tail->next = s->q.head;
            if (s->q.head == NULL) {
                s->q.tail = j->recs.tail;
            }
            s->q.head = j->recs.head;
            s->q.n += n;
            s->q.bytes += j->recs.bytes;
        }
        memset(&j->recs, 0, sizeof(j->recs));
        /* Counted, not followed to the end: a callback that queues a
         * record appends it behind these. */
        for (uint32_t i = 0; i < n; i++, r = r->next) {
            store_done_cb cb = r->cb;

            r->cb = NULL;
            if (cb != NULL) {
                cb(r->arg, j->status);
            }
        }
        return;
    }
    if (s->failing > 0) {
        log_info("store", "%s: writing again after %u failed flushes", s->name,
                 s->failing);
        s->failing = 0;
    }
    if (j->records_refused > 0) {
        s->stats.errors++;
        store_log_error(s, 0, "%s; %u records refused and dropped",
                        j->refused_msg, j->records_refused);
    }
    memset(&j->recs, 0, sizeof(j->recs));
    for (uint32_t i = 0; i < n; i++, r = next) {
        next = r->next;
        if (r->cb != NULL) {
            r->cb(r->arg, r->status);
        }
        free(r);
    }
    for (uint32_t i = 0; i < j->napproved && s->approval_cb != NULL; i++) {
        s->approval_cb(s->approval_arg, j->approved[i]);
    }
}

static void store_free(struct store *s);
static void store_finish(struct store *s);

static void store_start_job(struct store *s);

static void store_after_work(uv_work_t *req, int status)
{
    struct store_job *j = req->data;
    struct store *s = j->s;

    (void)status; /* the job is never canceled */
    store_job_done(s, j);
    s->running = 0;
    if (s->closing) {
        store_finish(s);
    } else if (s->urgent) {
        store_start_job(s); /* a callback queued a record that waits */
    }
}

static void store_start_job(struct store *s)
{
    int64_t mono = clock_mono_ns();
    int house = s->backlog || mono >= s->house_due;

    /* Watching approvals means looking every flush, work or not. */
    if (!store_has_work(s) && !house && s->approval_cb == NULL) {
        return;
    }
    if (house) {
        s->house_due = mono + STORE_HOUSE_INTERVAL_NS;
    }
    s->urgent = 0;
    store_job_fill(s, &s->job, 1, house);
    s->job.req.data = &s->job;
    s->running = 1;
    if (uv_queue_work(s->loop, &s->job.req, store_work, store_after_work) !=
        0) {
        /* Only for invalid arguments; do the work here rather than lose
         * it. */
        store_work(&s->job.req);
        store_after_work(&s->job.req, 0);
    }
}

static void store_on_timer(uv_timer_t *t)
{
    struct store *s = t->data;

    /* A job still running: keep filling the other buffer. */
    if (!s->running && !s->closing) {
        store_start_job(s);
    }
}

static void store_on_timer_close(uv_handle_t *h)
{
    struct store *s = h->data;

    s->timer_live = 0;
    if (s->finished) {
        store_free(s);
    }
}

/* The bus' sample callback: the per-sample path. No allocation, no lock;
 * a full buffer counts the sample as dropped. */
static void store_on_sample(void *arg, vigil_series_id id, int64_t ts, double v)
{
    struct store *s = arg;
    struct store_sample *p;

    if (s->nbuf == s->buf_cap) {
        s->stats.samples_dropped++;
        return;
    }
    p = &s->buf[s->cur][s->nbuf++];
    p->ts = ts;
    p->v = v;
    p->id = id;
}

/* A series starts matching: announce it to the writer with the next job.
 * Allocation is allowed here (once per series). */
static void store_on_series(void *arg, vigil_series_id id)
{
    struct store *s = arg;
    struct store_sref *r;
    size_t n;

    if (id >= s->seen_cap) {
        uint32_t cap = s->seen_cap ? s->seen_cap : 1024;
        uint8_t *seen;

        while (cap <= id) {
            cap *= 2;
        }
        seen = realloc(s->seen, cap);
        if (seen == NULL) {
            goto nomem;
        }
        memset(seen + s->seen_cap, 0, cap - s->seen_cap);
        s->seen = seen;
        s->seen_cap = cap;
    }
    if (s->seen[id]) {
        return; /* a second subscription matching the same series */
    }
    if (s->npend == s->pend_cap[s->pcur]) {
        uint32_t cap = s->npend ? 2 * s->npend : 256;

        r = realloc(s->pend[s->pcur], (size_t)cap * sizeof(*r));
        if (r == NULL) {
            goto nomem;
        }
        s->pend[s->pcur] = r;
        s->pend_cap[s->pcur] = cap;
    }
    r = &s->pend[s->pcur][s->npend++];
    r->id = id;
    r->key = bus_series_key(s->bus, id);
    r->name = bus_series_name(s->bus, id);
    r->labels = bus_series_labels(s->bus, id, &n);
    r->nlabels = (uint32_t)n;
    s->seen[id] = 1;
    return;
nomem:
    store_log_error(s, 0, "%s: out of memory: series %s will not be kept",
                    s->name, bus_series_key(s->bus, id));
}

/* ------------------------------------------------------- open, close */

static void store_free(struct store *s)
{
    if (s->ops != NULL) {
        s->ops->close(s);
    }
    store_recq_free(&s->q);
    store_recq_free(&s->job.recs);
    free(s->buf[0]);
    free(s->buf[1]);
    free(s->pend[0]);
    free(s->pend[1]);
    free(s->seen);
    free(s->wser);
    free(s->wsorted);
    free(s->wcount);
    free(s->labels_buf);
    free(s->name);
    free(s->host);
    free(s);
}

/* Is path a PostgreSQL connection URI? The daemon resolves [store] path
 * against the config's directory as it does for a file, so a URI may come
 * behind a directory ("/etc/vigil/postgresql://..."): what matters is
 * where the scheme starts. Returns the URI, or NULL for a file path. */
static const char *store_pg_uri(const char *path)
{
    static const char *const schemes[] = {"postgresql://", "postgres://"};

    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        const char *p = strstr(path, schemes[i]);

        if (p != NULL && (p == path || p[-1] == '/')) {
            return p;
        }
    }
    return NULL;
}

/* See store.h. Does not fail. */
int store_is_remote(const char *path)
{
    return path != NULL && store_pg_uri(path) != NULL;
}

/* See store.h. */
int store_open(const struct store_opts *opts, uv_loop_t *loop,
               struct store **out, struct vigil_err *err)
{
    struct vigil_err local;
    struct store *s;
    const struct store_be_ops *ops = &store_sqlite_ops;
    const char *path;
    char host[STORE_HOST_MAX];
    int rc;

    *out = NULL;
    if (err == NULL) {
        err = &local;
    }
    err_clear(&local);
    if (opts == NULL || opts->path == NULL || opts->path[0] == '\0') {
        return err_set(err, VIGIL_EINVAL, "store: no database path");
    }
    path = opts->path;
    if (store_pg_uri(path) != NULL) {
        ops = &store_pg_ops;
        path = store_pg_uri(path);
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return err_set(err, VIGIL_ENOMEM, "store: out of memory");
    }
    /* From here on, messages name the database with s->name: a URI's
     * password never goes into them. */
    s->ops = ops;
    s->loop = loop;
    s->name = ops->describe(path, err);
    if (s->name == NULL) {
        rc = err->code != 0 ? err->code : VIGIL_EINVAL;
        goto fail;
    }
    if (opts->sample_buffer > STORE_SAMPLE_BUFFER_MAX) {
        rc = err_set(err, VIGIL_EINVAL,
                     "%s: sample_buffer %u is above the maximum %u", s->name,
                     opts->sample_buffer, STORE_SAMPLE_BUFFER_MAX);
        goto fail;
    }
    if (opts->raw_retention_ns < 0 || opts->rollup_retention_ns < 0 ||
        opts->flush_interval_ms < 0) {
        rc = err_set(err, VIGIL_EINVAL,
                     "%s: negative retention or flush interval", s->name);
        goto fail;
    }
    if (opts->host != NULL) {
        snprintf(host, sizeof(host), "%s", opts->host);
    } else if (gethostname(host, sizeof(host)) != 0) {
        rc = err_set(err, VIGIL_EIO, "store: gethostname: %s", strerror(errno));
        goto fail;
    }
    host[sizeof(host) - 1] = '\0';
    s->host = store_strdup(host);
    s->raw_retention_ns = opts->raw_retention_ns > 0
                              ? opts->raw_retention_ns
                              : STORE_RAW_RETENTION_DEFAULT;
    s->rollup_retention_ns = opts->rollup_retention_ns > 0
                                 ? opts->rollup_retention_ns
                                 : STORE_ROLLUP_RETENTION_DEFAULT;
    if (s->host == NULL) {
        rc = err_set(err, VIGIL_ENOMEM, "store: out of memory");
        goto fail;
    }
    rc = ops->open(s, path, err);
    if (rc != 0) {
        goto fail;
    }
    if (loop == NULL) {
        *out = s;
        return 0;
    }
    s->buf_cap =
        opts->sample_buffer ? opts->sample_buffer : STORE_SAMPLE_BUFFER_DEFAULT;
    s->buf[0] = malloc((size_t)s->buf_cap * sizeof(struct store_sample));
    s->buf[1] = malloc((size_t)s->buf_cap * sizeof(struct store_sample));
    s->wsorted = malloc((size_t)s->buf_cap * sizeof(struct store_sample));
    if (s->buf[0] == NULL || s->buf[1] == NULL || s->wsorted == NULL) {
        rc = err_set(err, VIGIL_ENOMEM, "store: out of memory");
        goto fail;
    }
    s->house_due = clock_mono_ns();
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    s->timer_live = 1;
    {
        uint64_t ms = opts->flush_interval_ms > 0
                          ? (uint64_t)opts->flush_interval_ms
                          : STORE_FLUSH_MS_DEFAULT;

        uv_timer_start(&s->timer, store_on_timer, ms, ms);
    }
    *out = s;
    return 0;
fail:
    store_free(s);
    return rc;
}

/* The end, with the writer idle: write what is left on this thread (a few
 * rounds, for records that callbacks queue), report what could not be
 * written, close the connections. The memory goes once the timer is
 * closed too. */
static void store_finish(struct store *s)
{
    struct store_rec *r;
    uint32_t lost;

    for (int i = 0; i < STORE_FINAL_ROUNDS && store_has_work(s); i++) {
        store_job_fill(s, &s->job, 0, 0);
        store_job_run(s, &s->job);
        store_job_done(s, &s->job);
        if (s->job.status != 0) {
            break;
        }
    }
    lost = s->q.n;
    if (lost > 0 || s->nbuf > 0) {
        store_log_error(s, 1,
                        "%s: closing with %u records and %u samples that "
                        "could not be written",
                        s->name, lost, s->nbuf);
    }
    r = s->q.head;
    for (uint32_t i = 0; i < lost; i++, r = r->next) {
        store_done_cb cb = r->cb;

        r->cb = NULL;
        if (cb != NULL) {
            cb(r->arg, VIGIL_ECANCELED);
        }
    }
    store_recq_free(&s->q);
    s->ops->close(s);
    s->finished = 1;
    if (!s->timer_live) {
        store_free(s);
    }
}

/* See store.h. */
void store_close(struct store *s)
{
    if (s == NULL || s->closing) {
        return;
    }
    s->closing = 1;
    for (unsigned i = 0; i < s->nsubs; i++) {
        bus_unsubscribe(s->bus, s->subs[i]);
    }
    s->nsubs = 0;
    if (s->loop == NULL) {
        store_free(s);
        return;
    }
    if (s->timer_live) {
        uv_close((uv_handle_t *)&s->timer, store_on_timer_close);
    }
    if (!s->running) {
        store_finish(s);
    }
}

/* See store.h. */
int store_attach_bus(struct store *s, struct bus *bus, const char *selector,
                     struct vigil_err *err)
{
    struct bus_selector sel;
    int rc;

    if (s->loop == NULL || s->closing) {
        return err_set(err, VIGIL_ESTATE,
                       "%s: only an open daemon-mode store keeps history",
                       s->name);
    }
    if (s->bus != NULL && s->bus != bus) {
        return err_set(err, VIGIL_EINVAL,
                       "%s: the store is already attached to another bus",
                       s->name);
    }
    if (s->nsubs == STORE_SUBS_MAX) {
        return err_set(err, VIGIL_ELIMIT, "%s: more than %d selectors", s->name,
                       STORE_SUBS_MAX);
    }
    rc = bus_selector_parse(selector != NULL ? selector : "*", &sel, err);
    if (rc != 0) {
        return rc;
    }
    s->bus = bus;
    rc = bus_subscribe(bus, &sel, store_on_sample, store_on_series, s,
                       &s->subs[s->nsubs]);
    if (rc != 0) {
        return err_set(err, rc, "%s: subscribing to the bus: %s", s->name,
                       vigil_strerror(rc));
    }
    s->nsubs++;
    return 0;
}

/* ------------------------------------------------------------ records */

/* See store.h. Does not fail. */
int64_t store_next_incident_id(struct store *s)
{
    return s->next_incident++;
}

/* See store.h. Does not fail. */
int64_t store_next_action_id(struct store *s)
{
    return s->next_action++;
}

/* Tool mode: write one record now, in its own transaction. */
static int store_write_now(struct store *s, struct store_rec *r)
{
    struct store_job j;
    int status;

    memset(&j, 0, sizeof(j));
    j.s = s;
    j.recs.head = j.recs.tail = r;
    j.recs.n = 1;
    j.now = clock_wall_ns();
    store_job_run(s, &j);
    status = j.status != 0 ? j.status : r->status;
    if (j.status != 0) {
        log_error("store", "%s", j.msg);
    } else if (r->status != 0) {
        log_error("store", "%s", j.refused_msg);
    }
    if (r->cb != NULL) {
        r->cb(r->arg, status);
    }
    free(r);
    return status;
}

/* Copy and queue a record (daemon), or write it (tool). */
static int store_put(struct store *s, int kind, const void *src, size_t srcsize,
                     store_done_cb cb, void *arg)
{
    struct store_rec *r;

    if (s->finished) {
        return VIGIL_ESTATE;
    }
    if (s->loop != NULL &&
        (s->q.n >= STORE_RECORDS_MAX || s->q.bytes >= STORE_RECORD_BYTES_MAX)) {
        store_log_error(s, 0,
                        "%s: %u records waiting to be written; refusing more",
                        s->name, s->q.n);
        return VIGIL_ELIMIT;
    }
    r = store_rec_create(kind, src, srcsize);
    if (r == NULL) {
        return VIGIL_ENOMEM;
    }
    r->cb = cb;
    r->arg = arg;
    if (s->loop == NULL) {
        return store_write_now(s, r);
    }
    if (s->q.tail != NULL) {
        s->q.tail->next = r;
    } else {
        s->q.head = r;
    }
    s->q.tail = r;
    s->q.n++;
    s->q.bytes += r->size;
    if (cb != NULL) {
        /* Someone waits for this commit (an action's intent, before the
         * action may run): flush now rather than at the next tick. */
        s->urgent = 1;
        if (!s->running && !s->closing) {
            store_start_job(s);
        }
    }
    return 0;
}

/* See store.h. */
int store_put_incident(struct store *s, const struct store_incident *inc)
{
    return store_put(s, STORE_REC_INCIDENT, inc, sizeof(*inc), NULL, NULL);
}

/* See store.h. */
int store_add_transition(struct store *s, const struct store_transition *t)
{
    return store_put(s, STORE_REC_TRANSITION, t, sizeof(*t), NULL, NULL);
}

/* See store.h. */
int store_put_evidence(struct store *s, const struct store_evidence *e)
{
    return store_put(s, STORE_REC_EVIDENCE, e, sizeof(*e), NULL, NULL);
}

/* See store.h. */
int store_put_action(struct store *s, const struct store_action *a,
                     store_done_cb cb, void *arg)
{
    return store_put(s, STORE_REC_ACTION, a, sizeof(*a), cb, arg);
}

/* -------------------------------------------------------------- reads */

/* See store.h. */
int store_list_incidents(struct store *s, int open_only, unsigned limit,
                         store_incident_cb cb, void *arg)
{
    if (s->be == NULL) {
        return VIGIL_ESTATE;
    }
    return s->ops->list_incidents(s, open_only, limit, cb, arg);
}

/* See store.h. */
int store_get_incident(struct store *s, int64_t id, store_incident_cb icb,
                       store_transition_cb tcb, store_evidence_cb ecb,
                       store_action_cb acb, void *arg)
{
    if (s->be == NULL) {
        return VIGIL_ESTATE;
    }
    return s->ops->get_incident(s, id, icb, tcb, ecb, acb, arg);
}

/* See store.h. */
int store_history(struct store *s, const char *series_key, int64_t since,
                  store_sample_cb cb, store_rollup_cb rcb, void *arg)
{
    if (s->be == NULL) {
        return VIGIL_ESTATE;
    }
    return s->ops->history(s, series_key, since, cb, rcb, arg);
}

/* See store.h. Does not fail. */
void store_get_stats(const struct store *s, struct store_stats *st)
{
    *st = s->stats;
    st->records_pending = s->q.n + (s->running ? s->job.recs.n : 0);
}

/* See store.h. */
void store_on_approval(struct store *s, store_approval_cb cb, void *arg)
{
    s->approval_cb = cb;
    s->approval_arg = arg;
}

/* See store.h. */
int store_approve_action(struct store *s, int64_t id, const char *who,
                         struct vigil_err *err)
{
    if (s->loop != NULL) {
        return err_set(err, VIGIL_ESTATE, "approvals are given by the tools");
    }
    if (s->be == NULL) {
        return err_set(err, VIGIL_ESTATE, "%s: closed", s->name);
    }
    return s->ops->approve(s, id, who != NULL ? who : "", err);
}
