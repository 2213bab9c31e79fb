/*
 * dbuf - a growable byte buffer with a maximum, for text built piece by
 * piece (HTTP responses, Prometheus text, feed frames).
 *
 * Appending past the maximum fails and leaves the buffer as it was, so a
 * caller can stop cleanly at a record boundary (the idea of curl's
 * docs/internals/DYNBUF.md). The text is always NUL-terminated. The
 * caller owns the struct; dbuf_fini() frees the memory.
 */
#ifndef VIGIL_DBUF_H
#define VIGIL_DBUF_H

#include <stddef.h>

struct dbuf {
    char *p;    /* NULL until the first append */
    size_t len; /* bytes held, without the terminating NUL */
    size_t cap; /* bytes allocated */
    size_t max; /* most bytes len may reach */
};

/* An empty buffer that may grow to max bytes. Does not fail. */
void dbuf_init(struct dbuf *b, size_t max);

/* Free the memory; the buffer is empty (and usable) again. Does not
 * fail. */
void dbuf_fini(struct dbuf *b);

/* Forget the contents, keeping the memory. Does not fail. */
void dbuf_reset(struct dbuf *b);

/* Append n bytes / a formatted string. Return 0, or VIGIL_ELIMIT (would
 * pass max) or VIGIL_ENOMEM; on failure nothing is appended. */
int dbuf_add(struct dbuf *b, const void *data, size_t n);
int dbuf_addstr(struct dbuf *b, const char *s);
int dbuf_printf(struct dbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Remove the first n bytes (n <= len). Does not fail. */
void dbuf_consume(struct dbuf *b, size_t n);

/* Hand the memory over to the caller (to free()); the buffer is empty.
 * Returns NULL when nothing was ever appended. */
char *dbuf_take(struct dbuf *b);

#endif
