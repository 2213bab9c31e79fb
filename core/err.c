/* err - error codes and first-error-wins messages. */
#include "err.h"

#include <stdio.h>
#include <string.h>

const char *vigil_strerror(int code)
{
    return vigil_error_text(code);
}

int err_setv(struct vigil_err *err, int code, const char *fmt, va_list ap)
{
    if (err == NULL || err->code != 0) {
        return code;
    }
    err->code = code;
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    return code;
}

int err_set(struct vigil_err *err, int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    err_setv(err, code, fmt, ap);
    va_end(ap);
    return code;
}

void err_clear(struct vigil_err *err)
{
    if (err != NULL) {
        err->code = 0;
        err->msg[0] = '\0';
    }
}
