/* err - error codes and first-error-wins messages. */
#include "err.h"

#include <stdio.h>
#include <string.h>

const char *vigil_strerror(int code)
{
    switch (code) {
    case VIGIL_OK:
        return "success";
#define XX(name, num, text)                                                  \
    case VIGIL_##name:                                                       \
        return text;
        VIGIL_ERRNO_MAP(XX)
#undef XX
    default:
        return "unknown error";
    }
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
