/* dbuf - a bounded growable byte buffer. */
#include "dbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

void dbuf_init(struct dbuf *b, size_t max)
{
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void dbuf_fini(struct dbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
}

void dbuf_reset(struct dbuf *b)
{
    b->len = 0;
    if (b->p != NULL) {
        b->p[0] = '\0';
    }
}

/* Room for n more bytes and the NUL. */
static int dbuf_room(struct dbuf *b, size_t n)
{
    size_t cap;
    char *p;

    if (n > b->max || b->len > b->max - n) {
        return VIGIL_ELIMIT;
    }
    if (b->len + n + 1 <= b->cap) {
        return 0;
    }
    cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) {
        cap *= 2;
    }
    if (cap > b->max + 1) {
        cap = b->max + 1;
    }
    p = realloc(b->p, cap);
    if (p == NULL) {
        return VIGIL_ENOMEM;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

int dbuf_add(struct dbuf *b, const void *data, size_t n)
{
    int rc = dbuf_room(b, n);

    if (rc != 0) {
        return rc;
    }
    if (n > 0) {
        memcpy(b->p + b->len, data, n);
    }
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int dbuf_addstr(struct dbuf *b, const char *s)
{
    return dbuf_add(b, s, strlen(s));
}

int dbuf_printf(struct dbuf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    int n, rc;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        return VIGIL_EINVAL;
    }
    if ((size_t)n < sizeof(small)) {
        return dbuf_add(b, small, (size_t)n);
    }
    rc = dbuf_room(b, (size_t)n);
    if (rc != 0) {
        return rc;
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void dbuf_consume(struct dbuf *b, size_t n)
{
    if (n >= b->len) {
        dbuf_reset(b);
        return;
    }
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
    b->p[b->len] = '\0';
}

char *dbuf_take(struct dbuf *b)
{
    char *p = b->p;

    b->p = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}
