/* log - key=value event lines on stderr, with secrets redacted. */
#include "log.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define LOG_LINE_MAX 2048

static int log_level = VIGIL_LOG_INFO;

static const char *const log_names[] = {"error", "warn", "info", "debug"};

void log_set_level(int level)
{
    if (level < VIGIL_LOG_ERROR) {
        level = VIGIL_LOG_ERROR;
    }
    if (level > VIGIL_LOG_DEBUG) {
        level = VIGIL_LOG_DEBUG;
    }
    log_level = level;
}

int log_get_level(void)
{
    return log_level;
}

int log_level_parse(const char *text, int *level)
{
    for (int i = 0; i <= VIGIL_LOG_DEBUG; i++) {
        if (strcasecmp(text, log_names[i]) == 0) {
            *level = i;
            return 0;
        }
    }
    if (strcasecmp(text, "warning") == 0) {
        *level = VIGIL_LOG_WARN;
        return 0;
    }
    return VIGIL_EINVAL;
}

/* Blank out the value after `key=` up to the next space, `&`, `;` or quote.
 * Matches keys case-insensitively and only at a word boundary. */
static void redact_key(char *buf, const char *key)
{
    size_t klen = strlen(key);

    for (char *p = buf; (p = strcasestr(p, key)) != NULL; p += klen) {
        if (p > buf && (p[-1] == '_' || (p[-1] >= 'a' && p[-1] <= 'z') ||
                        (p[-1] >= 'A' && p[-1] <= 'Z'))) {
            continue;
        }
        char *v = p + klen;
        if (*v == ' ') {
            v++;
        }
        if (*v != '=' && *v != ':') {
            continue;
        }
        v++;
        while (*v == ' ') {
            v++;
        }
        char *end;
        if (*v == '\'' || *v == '"') {
            /* A quoted value ends at its closing quote. */
            char q = *v++;
            end = strchr(v, q);
            end = end ? end : v + strlen(v);
        } else {
            end = v + strcspn(v, " &;,\n");
        }
        if (end - v <= 3 && strncmp(v, "***", 3) == 0) {
            continue;
        }
        if (end > v) {
            memmove(v + 3, end, strlen(end) + 1);
            memcpy(v, "***", 3);
        }
    }
}

/* scheme://user:password@host -> scheme://user:***@host */
static void redact_userinfo(char *buf)
{
    for (char *p = buf; (p = strstr(p, "://")) != NULL;) {
        p += 3;
        char *end = p + strcspn(p, "/ \"'\n");
        char *at = memchr(p, '@', (size_t)(end - p));
        if (at == NULL) {
            continue;
        }
        char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon == NULL || at - colon - 1 == 3) {
            continue;
        }
        memmove(colon + 4, at, strlen(at) + 1);
        memcpy(colon + 1, "***", 3);
    }
}

void log_redact(char *buf)
{
    static const char *const keys[] = {"password", "passwd", "secret",
                                       "token",    "apikey", "api_key"};

    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        redact_key(buf, keys[i]);
    }
    redact_userinfo(buf);
}

/* Append text to out as the inside of a double-quoted value: quotes,
 * backslashes and control characters escaped so one event is one line. */
static size_t quote_into(char *out, size_t size, const char *text)
{
    size_t o = 0;

    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        char esc[5];
        size_t n = 1;
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            n = 2;
        } else if (*p == '\n') {
            memcpy(esc, "\\n", 2);
            n = 2;
        } else if (*p < 0x20 || *p == 0x7f) {
            snprintf(esc, sizeof(esc), "\\x%02x", *p);
            n = 4;
        } else {
            esc[0] = (char)*p;
        }
        if (o + n + 1 > size) {
            break;
        }
        memcpy(out + o, esc, n);
        o += n;
    }
    out[o] = '\0';
    return o;
}

void log_vmsg(int level, const char *src, const char *fmt, va_list ap)
{
    char msg[LOG_LINE_MAX];
    char quoted[LOG_LINE_MAX];
    char ts[32];
    struct timespec now;
    struct tm tm;

    if (level > log_level) {
        return;
    }
    if (level < VIGIL_LOG_ERROR) {
        level = VIGIL_LOG_ERROR;
    }
    vsnprintf(msg, sizeof(msg), fmt, ap);
    log_redact(msg);
    quote_into(quoted, sizeof(quoted), msg);

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    /* One fprintf per event so concurrent writers do not interleave. */
    fprintf(stderr, "ts=%s.%03ldZ level=%s%s%s msg=\"%s\"\n", ts,
            now.tv_nsec / 1000000, log_names[level > 3 ? 3 : level],
            src ? " src=" : "", src ? src : "", quoted);
}

void log_msg(int level, const char *src, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vmsg(level, src, fmt, ap);
    va_end(ap);
}
