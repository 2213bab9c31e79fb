/*
 * feed - the live feed behind the `vigil-feed` WebSocket protocol:
 * per-client subscriptions to series patterns (bus selectors) and to
 * events (rule transitions, incidents, actions), and a bounded queue of
 * outgoing frames per client.
 *
 * The module knows nothing of WebSockets: http.c hands it each text
 * message a client sends (feed_client_receive) and asks it for the next
 * frame when the socket is writable (feed_client_next); the feed asks for
 * that with the client's wake callback. A frame is a JSON array of
 * messages. A client whose queue would pass its maximum is dropped: its
 * queue is freed, nothing more is queued, and feed_client_next returns
 * -1 with the reason ("slow consumer: ...") for the close frame.
 *
 * Single-threaded (the loop). The feed borrows the bus; clients must be
 * destroyed outside bus callbacks (they unsubscribe).
 */
#ifndef VIGIL_FEED_H
#define VIGIL_FEED_H

#include <stddef.h>
#include <stdint.h>

struct bus;
struct feed;
struct feed_client;

enum feed_event_kind {
    FEED_TRANSITION = 1 << 0,
    FEED_INCIDENT = 1 << 1,
    FEED_ACTION = 1 << 2,
};

struct feed_limits {
    size_t queue_max;   /* bytes queued per client before it is dropped */
    size_t frame_max;   /* bytes per frame (a frame holds whole messages) */
    unsigned subs_max;  /* series patterns per client */
    size_t message_max; /* largest message a client may send */
};

/* Returns 0 or VIGIL_ENOMEM. lim is copied. */
int feed_create(struct bus *bus, const struct feed_limits *lim,
                struct feed **out);
/* Every client must be destroyed first. Accepts NULL. */
void feed_destroy(struct feed *f);

/* Something to send (or the client was dropped): call
 * feed_client_next when the socket is writable. */
typedef void (*feed_wake_cb)(void *user);

/* A new client; it is sent a "hello" message. Returns 0 or
 * VIGIL_ENOMEM. */
int feed_client_create(struct feed *f, feed_wake_cb wake, void *user,
                       struct feed_client **out);
/* Unsubscribe and free. Not from inside a bus callback. Accepts NULL. */
void feed_client_destroy(struct feed_client *c);

/* One complete text message from the client: {"op":"subscribe",
 * "series":[SELECTOR...], "events":["transition","incident","action"]},
 * {"op":"unsubscribe"} or {"op":"ping"}. Mistakes are answered with an
 * "error" message. Does not fail. */
void feed_client_receive(struct feed_client *c, const char *msg, size_t len);

/* The next frame: 1 with *frame and *len set (valid until the next call),
 * 0 when there is nothing to send, -1 when the client has been dropped
 * (*frame is then the reason, NUL-terminated). */
int feed_client_next(struct feed_client *c, const char **frame, size_t *len);

/* Drop a client (e.g. a message too large): the next feed_client_next
 * returns -1 with reason. Does not fail. */
void feed_client_drop(struct feed_client *c, const char *reason);

/* Send an event (a JSON object's text, with a "type") to every client
 * that subscribed to kind. Does not fail. */
void feed_event(struct feed *f, int kind, const char *json);

/* For the vigil.http.feed_... metrics. */
unsigned feed_client_count(const struct feed *f);
uint64_t feed_dropped_total(const struct feed *f);
uint64_t feed_messages_total(const struct feed *f);

#endif
