/*
 * print - a bus subscriber that writes samples as text lines, for
 * `vigil run --print SELECTOR`: one line per sample,
 *
 *   <unix_ms> <series key> <value>
 *
 * e.g. `1764162620000 sys.cpu.busy_pct{cpu="total"} 12.5`. Values use the
 * shortest form that reads back exactly, or six significant digits when
 * `rounded` is set (for a person at a terminal). A series matched by several
 * selectors is printed once. Output is buffered and flushed by
 * print_flush() (the daemon calls it once per loop iteration), so a burst
 * of samples costs one write.
 */
#ifndef VIGIL_PRINT_H
#define VIGIL_PRINT_H

#include <stdio.h>

#include "bus.h"

struct print;

/* Subscribe every selector (texts parsed with bus_selector_parse). out is
 * borrowed. Returns 0, VIGIL_EINVAL (message in err) or VIGIL_ENOMEM. */
int print_create(struct bus *bus, const char *const *selectors, size_t n,
                 FILE *out, int rounded, struct print **pp,
                 struct vigil_err *err);
void print_flush(struct print *p);
void print_destroy(struct print *p); /* unsubscribes; accepts NULL */

/* Format v in the shortest form that strtod reads back exactly. */
void print_double(char *buf, size_t size, double v);

#endif
