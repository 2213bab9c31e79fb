/*
 * log - one line per event on stderr, as key=value pairs:
 *
 *   ts=2026-11-26T13:10:20.123Z level=warn src=plugin=http,instance=api
 *   msg="connect refused"
 *
 * (on one line). Messages are escaped so that a line is always one event,
 * and anything that looks like a secret (password=..., token=...,
 * user:password@ in URLs) is replaced by "***" before it is written.
 * Levels are enum vigil_log_level from vigil/plugin.h.
 */
#ifndef VIGIL_LOG_H
#define VIGIL_LOG_H

#include <stdarg.h>
#include <stddef.h>

#include "vigil/plugin.h"

/* Set the most verbose level that is written. Does not fail. */
void log_set_level(int level);
int log_get_level(void);

/* Parse "error|warn|info|debug"; returns 0 or VIGIL_EINVAL. */
int log_level_parse(const char *text, int *level);

/* Write one event. src says who speaks ("core", "config",
 * "plugin=sys"); it may be NULL. */
void log_msg(int level, const char *src, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vmsg(int level, const char *src, const char *fmt, va_list ap);

/* Replace secrets in buf (NUL-terminated) by "***", in place. Exposed for
 * tests and for modules that show config values. Does not fail. */
void log_redact(char *buf);

#define log_error(src, ...) log_msg(VIGIL_LOG_ERROR, src, __VA_ARGS__)
#define log_warn(src, ...) log_msg(VIGIL_LOG_WARN, src, __VA_ARGS__)
#define log_info(src, ...) log_msg(VIGIL_LOG_INFO, src, __VA_ARGS__)
#define log_debug(src, ...) log_msg(VIGIL_LOG_DEBUG, src, __VA_ARGS__)

#endif
