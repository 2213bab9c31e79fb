/* print - samples as text lines, for people and tests. */
#include "print.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct print_sel {
    struct print *p;
    struct bus_sub *sub;
    unsigned index;
};

struct print {
    struct bus *bus;
    FILE *out;
    struct print_sel *sels;
    size_t nsels;
    /* owner[id] = 1 + index of the selector that prints series id, so a
     * series matched twice is printed once. Grown in the series callback,
     * never on the per-sample path. */
    unsigned *owner;
    size_t owner_cap;
    int dirty;
    int rounded;
};

void print_double(char *buf, size_t size, double v)
{
    if (isnan(v)) {
        snprintf(buf, size, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, size, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) {
            return;
        }
    }
}

static void on_series(void *arg, vigil_series_id id)
{
    struct print_sel *s = arg;
    struct print *p = s->p;

    if (id >= p->owner_cap) {
        size_t cap = p->owner_cap ? p->owner_cap : 256;
        while (cap <= id) {
            cap *= 2;
        }
        unsigned *o = realloc(p->owner, cap * sizeof(*o));
        if (o == NULL) {
            return; /* the series is not printed; nothing else breaks */
        }
        memset(o + p->owner_cap, 0, (cap - p->owner_cap) * sizeof(*o));
        p->owner = o;
        p->owner_cap = cap;
    }
    if (p->owner[id] == 0) {
        p->owner[id] = s->index + 1;
    }
}

static void on_sample(void *arg, vigil_series_id id, int64_t ts, double v)
{
    struct print_sel *s = arg;
    struct print *p = s->p;
    char num[32];

    if (id >= p->owner_cap || p->owner[id] != s->index + 1) {
        return;
    }
    if (p->rounded) {
        snprintf(num, sizeof(num), "%.6g", v);
    } else {
        print_double(num, sizeof(num), v);
    }
    fprintf(p->out, "%lld %s %s\n", (long long)(ts / 1000000),
            bus_series_key(p->bus, id), num);
    p->dirty = 1;
}

int print_create(struct bus *bus, const char *const *selectors, size_t n,
                 FILE *out, int rounded, struct print **pp,
                 struct vigil_err *err)
{
    struct print *p = calloc(1, sizeof(*p));
    int rc = 0;

    *pp = NULL;
    if (p == NULL || (p->sels = calloc(n ? n : 1, sizeof(*p->sels))) == NULL) {
        free(p);
        return err_set(err, VIGIL_ENOMEM, "out of memory");
    }
    p->bus = bus;
    p->out = out;
    p->rounded = rounded;
    for (size_t i = 0; i < n; i++) {
        struct bus_selector sel;
        rc = bus_selector_parse(selectors[i], &sel, err);
        if (rc != 0) {
            goto fail;
        }
        p->sels[i].p = p;
        p->sels[i].index = (unsigned)i;
        rc = bus_subscribe(bus, &sel, on_sample, on_series, &p->sels[i],
                           &p->sels[i].sub);
        if (rc != 0) {
            err_set(err, rc, "cannot subscribe '%s'", selectors[i]);
            goto fail;
        }
        p->nsels = i + 1;
    }
    *pp = p;
    return 0;
fail:
    print_destroy(p);
    return rc;
}

void print_flush(struct print *p)
{
    if (p != NULL && p->dirty) {
        fflush(p->out);
        p->dirty = 0;
    }
}

void print_destroy(struct print *p)
{
    if (p == NULL) {
        return;
    }
    for (size_t i = 0; i < p->nsels; i++) {
        bus_unsubscribe(p->bus, p->sels[i].sub);
    }
    print_flush(p);
    free(p->sels);
    free(p->owner);
    free(p);
}
