/*
 * err - error codes and error messages for people.
 *
 * The codes themselves are the public VIGIL_E* list in vigil/plugin.h. This
 * module adds vigil_strerror() and struct vigil_err, the buffer into which a
 * failing function writes what went wrong and where (file:line, peer,
 * plugin). The first error written wins, as in curl's Curl_failf: later,
 * less specific messages from callers up the stack do not overwrite it.
 */
#ifndef VIGIL_ERR_H
#define VIGIL_ERR_H

#include <stdarg.h>

#include "vigil/plugin.h"

#define VIGIL_ERR_MAX 512

struct vigil_err {
    int code; /* 0 or a VIGIL_E* code */
    char msg[VIGIL_ERR_MAX];
};

/* Text for a VIGIL_E* code; "unknown error" for others. Does not fail. */
const char *vigil_strerror(int code);

/* Record an error in err (may be NULL) unless one is already there.
 * Returns code, so that `return err_set(err, VIGIL_EINVAL, ...)` reads
 * naturally. */
int err_set(struct vigil_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int err_setv(struct vigil_err *err, int code, const char *fmt, va_list ap);

/* Forget the recorded error. Does not fail. */
void err_clear(struct vigil_err *err);

#endif
