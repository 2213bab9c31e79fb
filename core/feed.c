/* feed - live feed subscriptions and per-client frame queues. */
#include "feed.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "dbuf.h"
#include "err.h"

#define FEED_REASON_MAX 120

/* A frame being filled or waiting to be sent: "[m1,m2,...". The closing
 * bracket is added when it is sent. */
struct feed_seg {
    struct dbuf text;
    struct feed_seg *next;
};

struct feed_sub {
    struct feed_client *c;
    struct bus_sub *sub;
};

struct feed_client {
    struct feed *f;
    feed_wake_cb wake;
    void *user;
    struct feed_seg *head, *tail; /* oldest first */
    struct feed_seg *sending;     /* handed out by feed_client_next */
    size_t queued;                /* bytes in head..tail */
    struct feed_sub *subs;
    unsigned nsubs;
    int events; /* enum feed_event_kind mask */
    int dropped;
    int woken; /* a wake is pending: no need to call it again */
    char reason[FEED_REASON_MAX];
    struct feed_client *prev, *next;
};

struct feed {
    struct bus *bus;
    struct feed_limits lim;
    struct feed_client *clients;
    unsigned nclients;
    uint64_t dropped, messages;
};

int feed_create(struct bus *bus, const struct feed_limits *lim,
                struct feed **out)
{
    struct feed *f = calloc(1, sizeof(*f));

    if (f == NULL) {
        return VIGIL_ENOMEM;
    }
    f->bus = bus;
    f->lim = *lim;
    *out = f;
    return 0;
}

void feed_destroy(struct feed *f)
{
    free(f);
}

static void seg_free(struct feed_seg *s)
{
    if (s != NULL) {
        dbuf_fini(&s->text);
        free(s);
    }
}

static void queue_clear(struct feed_client *c)
{
    while (c->head != NULL) {
        struct feed_seg *s = c->head;
        c->head = s->next;
        seg_free(s);
    }
    c->tail = NULL;
    c->queued = 0;
}

void feed_client_drop(struct feed_client *c, const char *reason)
{
    if (c->dropped) {
        return;
    }
    c->dropped = 1;
    c->f->dropped++;
    snprintf(c->reason, sizeof(c->reason), "%s", reason);
    queue_clear(c);
    if (!c->woken) {
        c->woken = 1;
        c->wake(c->user);
    }
}

/* Queue one message (JSON text). Drops the client when its queue would
 * pass the maximum. */
static void enqueue(struct feed_client *c, const char *msg, size_t len)
{
    struct feed_seg *s = c->tail;
    size_t before;

    if (c->dropped) {
        return;
    }
    if (c->queued + len + 2 > c->f->lim.queue_max) {
        char why[FEED_REASON_MAX];
        snprintf(why, sizeof(why),
                 "slow consumer: %zu bytes queued, the limit is %zu", c->queued,
                 c->f->lim.queue_max);
        feed_client_drop(c, why);
        return;
    }
    /* A new frame when the last one is full (room for ",msg]"). */
    if (s == NULL || s->text.len + len + 2 > c->f->lim.frame_max) {
        s = calloc(1, sizeof(*s));
        if (s == NULL) {
            feed_client_drop(c, "out of memory");
            return;
        }
        /* A message larger than a frame still gets a frame of its own. */
        dbuf_init(
            &s->text,
            (len + 2 > c->f->lim.frame_max ? len + 2 : c->f->lim.frame_max));
        if (dbuf_add(&s->text, "[", 1) != 0) {
            seg_free(s);
            feed_client_drop(c, "out of memory");
            return;
        }
        if (c->tail != NULL) {
            c->tail->next = s;
        } else {
            c->head = s;
        }
        c->tail = s;
    }
    before = s == c->tail && s->text.len == 1 ? 0 : s->text.len;
    if ((s->text.len > 1 && dbuf_add(&s->text, ",", 1) != 0) ||
        dbuf_add(&s->text, msg, len) != 0) {
        feed_client_drop(c, "out of memory");
        return;
    }
    c->queued += s->text.len - before;
    c->f->messages++;
    if (!c->woken) {
        c->woken = 1;
        c->wake(c->user);
    }
}

static void enqueue_json(struct feed_client *c, json_t *o)
{
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;

    if (text != NULL) {
        enqueue(c, text, strlen(text));
    }
    free(text);
    json_decref(o);
}

int feed_client_create(struct feed *f, feed_wake_cb wake, void *user,
                       struct feed_client **out)
{
    struct feed_client *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        return VIGIL_ENOMEM;
    }
    c->f = f;
    c->wake = wake;
    c->user = user;
    c->next = f->clients;
    if (f->clients != NULL) {
        f->clients->prev = c;
    }
    f->clients = c;
    f->nclients++;
    enqueue_json(c, json_pack("{s:s,s:s,s:{s:I,s:i}}", "type", "hello",
                              "version", VIGIL_VERSION, "limits", "queue_bytes",
                              (json_int_t)f->lim.queue_max, "subscriptions",
                              (int)f->lim.subs_max));
    *out = c;
    return 0;
}

static void unsubscribe_all(struct feed_client *c)
{
    for (unsigned i = 0; i < c->nsubs; i++) {
        bus_unsubscribe(c->f->bus, c->subs[i].sub);
    }
    free(c->subs);
    c->subs = NULL;
    c->nsubs = 0;
}

void feed_client_destroy(struct feed_client *c)
{
    if (c == NULL) {
        return;
    }
    unsubscribe_all(c);
    queue_clear(c);
    seg_free(c->sending);
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        c->f->clients = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    c->f->nclients--;
    free(c);
}

/* JSON string escaping for series keys (which hold quotes). */
static size_t json_escape(const char *in, char *out, size_t size)
{
    size_t n = 0;

    for (const char *p = in; *p != '\0' && n + 7 < size; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '"' || ch == '\\') {
            out[n++] = '\\';
            out[n++] = (char)ch;
        } else if (ch < 0x20) {
            n += (size_t)snprintf(out + n, size - n, "\\u%04x", ch);
        } else {
            out[n++] = (char)ch;
        }
    }
    out[n] = '\0';
    return n;
}

static void send_sample(struct feed_client *c, vigil_series_id id, int64_t ts,
                        double v)
{
    char key[1024], msg[1200];
    int n;

    json_escape(bus_series_key(c->f->bus, id), key, sizeof(key));
    if (isfinite(v)) {
        n = snprintf(msg, sizeof(msg),
                     "{\"type\":\"sample\",\"series\":\"%s\",\"ts_ms\":%lld,"
                     "\"value\":%.17g}",
                     key, (long long)(ts / 1000000), v);
    } else {
        n = snprintf(msg, sizeof(msg),
                     "{\"type\":\"sample\",\"series\":\"%s\",\"ts_ms\":%lld,"
                     "\"value\":null}",
                     key, (long long)(ts / 1000000));
    }
    if (n > 0 && (size_t)n < sizeof(msg)) {
        enqueue(c, msg, (size_t)n);
    }
}

static void on_sample(void *arg, vigil_series_id id, int64_t ts, double v)
{
    send_sample(arg, id, ts, v);
}

/* A series that starts matching: its latest sample at once, so that a
 * new subscriber has something to show. */
static void on_series(void *arg, vigil_series_id id)
{
    struct feed_client *c = arg;
    const struct win_sample *s = win_last(bus_window(c->f->bus, id));

    if (s != NULL) {
        send_sample(c, id, s->ts, s->v);
    }
}

static void reply_error(struct feed_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void reply_error(struct feed_client *c, const char *fmt, ...)
{
    char msg[VIGIL_ERR_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    enqueue_json(c, json_pack("{s:s,s:s}", "type", "error", "error", msg));
}

static void subscribe_series(struct feed_client *c, const char *text)
{
    struct bus_selector sel;
    struct vigil_err err = {0};
    struct feed_sub *subs;

    if (c->nsubs >= c->f->lim.subs_max) {
        reply_error(c, "at most %u series patterns per client",
                    c->f->lim.subs_max);
        return;
    }
    if (bus_selector_parse(text, &sel, &err) != 0) {
        reply_error(c, "series '%.200s': %s", text, err.msg);
        return;
    }
    subs = realloc(c->subs, (c->nsubs + 1) * sizeof(*subs));
    if (subs == NULL) {
        reply_error(c, "out of memory");
        return;
    }
    c->subs = subs;
    subs[c->nsubs].c = c;
    if (bus_subscribe(c->f->bus, &sel, on_sample, on_series, c,
                      &subs[c->nsubs].sub) != 0) {
        reply_error(c, "series '%.200s': cannot subscribe", text);
        return;
    }
    c->nsubs++;
    enqueue_json(c,
                 json_pack("{s:s,s:s}", "type", "subscribed", "series", text));
}

static int event_bit(const char *name)
{
    return !strcmp(name, "transition") ? FEED_TRANSITION
           : !strcmp(name, "incident") ? FEED_INCIDENT
           : !strcmp(name, "action")   ? FEED_ACTION
                                       : 0;
}

void feed_client_receive(struct feed_client *c, const char *msg, size_t len)
{
    json_error_t jerr;
    json_t *o, *v;
    const char *op;
    size_t i;

    if (c->dropped) {
        return;
    }
    o = json_loadb(msg, len, 0, &jerr);
    if (!json_is_object(o)) {
        reply_error(c, "expected a JSON object: %s",
                    o ? "not an object" : jerr.text);
        json_decref(o);
        return;
    }
    op = json_string_value(json_object_get(o, "op"));
    if (op != NULL && strcmp(op, "ping") == 0) {
        enqueue_json(c, json_pack("{s:s}", "type", "pong"));
    } else if (op != NULL && strcmp(op, "unsubscribe") == 0) {
        unsubscribe_all(c);
        c->events = 0;
        enqueue_json(c, json_pack("{s:s}", "type", "unsubscribed"));
    } else if (op != NULL && strcmp(op, "subscribe") == 0) {
        json_array_foreach(json_object_get(o, "series"), i, v)
        {
            if (json_is_string(v)) {
                subscribe_series(c, json_string_value(v));
            } else {
                reply_error(c, "series: expected strings (selectors)");
            }
        }
        json_array_foreach(json_object_get(o, "events"), i, v)
        {
            int bit = json_is_string(v) ? event_bit(json_string_value(v)) : 0;
            if (bit == 0) {
                reply_error(c, "events: expected \"transition\", \"incident\" "
                               "or \"action\"");
            } else if (!(c->events & bit)) {
                c->events |= bit;
                enqueue_json(c, json_pack("{s:s,s:o}", "type", "subscribed",
                                          "event", json_incref(v)));
            }
        }
    } else {
        reply_error(c, "op: expected \"subscribe\", \"unsubscribe\" or "
                       "\"ping\"");
    }
    json_decref(o);
}

int feed_client_next(struct feed_client *c, const char **frame, size_t *len)
{
    struct feed_seg *s;

    c->woken = 0;
    seg_free(c->sending);
    c->sending = NULL;
    if (c->dropped) {
        *frame = c->reason;
        *len = strlen(c->reason);
        return -1;
    }
    if ((s = c->head) == NULL) {
        return 0;
    }
    c->head = s->next;
    if (c->head == NULL) {
        c->tail = NULL;
    }
    c->queued -= s->text.len;
    /* The frame may pass frame_max by the closing bracket. */
    s->text.max += 1;
    if (dbuf_add(&s->text, "]", 1) != 0) {
        seg_free(s);
        feed_client_drop(c, "out of memory");
        *frame = c->reason;
        *len = strlen(c->reason);
        return -1;
    }
    c->sending = s;
    *frame = s->text.p;
    *len = s->text.len;
    return 1;
}

void feed_event(struct feed *f, int kind, const char *json)
{
    size_t len = strlen(json);

    for (struct feed_client *c = f->clients; c != NULL; c = c->next) {
        if (c->events & kind) {
            enqueue(c, json, len);
        }
    }
}

unsigned feed_client_count(const struct feed *f)
{
    return f->nclients;
}

uint64_t feed_dropped_total(const struct feed *f)
{
    return f->dropped;
}

uint64_t feed_messages_total(const struct feed *f)
{
    return f->messages;
}
