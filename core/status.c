/* status - `vigil status` from the HTTP API. */
#include "status.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "dbuf.h"
#include "err.h"
#include "http.h"

#define STATUS_RESPONSE_MAX (64u << 20)
#define STATUS_TIMEOUT_S 10
#define STATUS_SYSTEM_CONFIG "/etc/vigil/vigil.ini"

struct status_target {
    char host[256];
    char port[16];
    char base[256]; /* path prefix, "" or "/vigil" */
    const char *token;
};

/* http://HOST:PORT/PREFIX into t. Returns 0 or VIGIL_EINVAL. */
static int parse_url(const char *url, struct status_target *t)
{
    const char *p = url, *slash, *colon;
    size_t n;

    if (strncmp(p, "http://", 7) != 0) {
        return VIGIL_EINVAL;
    }
    p += 7;
    slash = strchr(p, '/');
    n = slash ? (size_t)(slash - p) : strlen(p);
    if (p[0] == '[') { /* [::1]:9470 */
        const char *end = memchr(p, ']', n);
        if (end == NULL) {
            return VIGIL_EINVAL;
        }
        snprintf(t->host, sizeof(t->host), "%.*s", (int)(end - p - 1), p + 1);
        colon = end[1] == ':' ? end + 1 : NULL;
    } else {
        colon = memchr(p, ':', n);
        snprintf(t->host, sizeof(t->host), "%.*s",
                 (int)(colon ? (size_t)(colon - p) : n), p);
    }
    snprintf(t->port, sizeof(t->port), "%.*s",
             colon ? (int)(n - (size_t)(colon + 1 - p)) : 2,
             colon ? colon + 1 : "80");
    snprintf(t->base, sizeof(t->base), "%s", slash ? slash : "");
    n = strlen(t->base);
    while (n > 0 && t->base[n - 1] == '/') {
        t->base[--n] = '\0';
    }
    return t->host[0] != '\0' && t->port[0] != '\0' ? 0 : VIGIL_EINVAL;
}

/* The address the config's [http] section gives. Returns 0, or 2 after
 * printing why not. */
static int target_from_config(const struct daemon_opts *o, struct cfg **cfg,
                              struct status_target *t)
{
    struct cfg_diag *diag = malloc(sizeof(*diag));
    struct http_conf hc;
    const char *name = o->config_path ? o->config_path : o->config_name;
    int rc;

    if (diag == NULL) {
        return 2;
    }
    cfg_diag_init(diag);
    rc = o->config_path
             ? cfg_load(o->config_path, cfg, diag)
             : cfg_load_string(o->config_name, o->config_text, cfg, diag);
    if (*cfg != NULL) {
        rc = http_conf_load(*cfg, &hc, diag) != 0 ? VIGIL_ECONFIG : rc;
    }
    if (rc != 0 || *cfg == NULL) {
        for (unsigned i = 0; i < diag->n && i < CFG_DIAG_MAX; i++) {
            fprintf(stderr, "%s\n", diag->msg[i]);
        }
        free(diag);
        return 2;
    }
    free(diag);
    if (!hc.enabled) {
        fprintf(stderr,
                "vigil status: %s has no [http] section (or enabled = "
                "no): the daemon serves no API to ask; add one, or give "
                "--url\n",
                name);
        return 2;
    }
    if (hc.port == 0) {
        fprintf(stderr,
                "vigil status: %s has port = 0 (vigil picks a free port and "
                "logs it): give --url\n",
                name);
        return 2;
    }
    /* A wildcard listen address is reached on loopback. */
    snprintf(t->host, sizeof(t->host), "%s",
             !strcmp(hc.listen, "0.0.0.0") ? "127.0.0.1"
             : !strcmp(hc.listen, "::")    ? "::1"
                                           : hc.listen);
    snprintf(t->port, sizeof(t->port), "%lld", (long long)hc.port);
    t->token = hc.token;
    return 0;
}

/* De-chunk a chunked body in place. Returns 0 or VIGIL_EPARSE. */
static int dechunk(char *body, size_t *len)
{
    size_t in = 0, out = 0;

    for (;;) {
        char *end;
        unsigned long long n = strtoull(body + in, &end, 16);
        char *crlf = strstr(end, "\r\n");
        if (end == body + in || crlf == NULL) {
            return VIGIL_EPARSE;
        }
        in = (size_t)(crlf + 2 - body);
        if (n == 0) {
            break;
        }
        if (in + n + 2 > *len) {
            return VIGIL_EPARSE;
        }
        memmove(body + out, body + in, n);
        out += n;
        in += n + 2;
    }
    *len = out;
    body[out] = '\0';
    return 0;
}

/* GET path; *status and the body (JSON) on success. Returns 0 or 1 after
 * printing why. */
static int http_get(const struct status_target *t, const char *path,
                    int *status, json_t **out)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL, *ai;
    struct timeval tv = {.tv_sec = STATUS_TIMEOUT_S};
    struct dbuf b;
    char req[1024], buf[16384];
    int fd = -1, rc, n;
    char *body;

    *out = NULL;
    rc = getaddrinfo(t->host, t->port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "vigil status: %s: %s\n", t->host, gai_strerror(rc));
        return 1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            break;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        fprintf(stderr,
                "vigil status: cannot connect to %s port %s (%s): is vigil "
                "running with [http]?\n",
                t->host, t->port, strerror(errno));
        return 1;
    }
    n = snprintf(req, sizeof(req),
                 "GET %s%s HTTP/1.1\r\nHost: %s%s%s:%s\r\n%s%s%s"
                 "Accept: application/json\r\nConnection: close\r\n\r\n",
                 t->base, path, strchr(t->host, ':') ? "[" : "", t->host,
                 strchr(t->host, ':') ? "]" : "", t->port,
                 t->token && t->token[0] ? "Authorization: Bearer " : "",
                 t->token && t->token[0] ? t->token : "",
                 t->token && t->token[0] ? "\r\n" : "");
    if (n <= 0 || (size_t)n >= sizeof(req) ||
        send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        fprintf(stderr, "vigil status: cannot send the request\n");
        close(fd);
        return 1;
    }
    dbuf_init(&b, STATUS_RESPONSE_MAX);
    while ((n = (int)recv(fd, buf, sizeof(buf), 0)) > 0) {
        if (dbuf_add(&b, buf, (size_t)n) != 0) {
            n = -1;
            errno = EFBIG;
            break;
        }
    }
    close(fd);
    if (n < 0 || b.len == 0) {
        fprintf(stderr, "vigil status: no answer from %s port %s%s%s\n",
                t->host, t->port, n < 0 ? ": " : "",
                n < 0 ? strerror(errno) : "");
        dbuf_fini(&b);
        return 1;
    }
    body = strstr(b.p, "\r\n\r\n");
    if (sscanf(b.p, "HTTP/1.%*d %d", status) != 1 || body == NULL) {
        fprintf(stderr, "vigil status: not an HTTP answer from %s\n", t->host);
        dbuf_fini(&b);
        return 1;
    }
    *body = '\0';
    body += 4;
    size_t len = b.len - (size_t)(body - b.p);
    if (strcasestr(b.p, "transfer-encoding: chunked") != NULL &&
        dechunk(body, &len) != 0) {
        fprintf(stderr, "vigil status: a broken chunked answer\n");
        dbuf_fini(&b);
        return 1;
    }
    *out = json_loadb(body, len, 0, NULL);
    dbuf_fini(&b);
    if (*out == NULL) {
        fprintf(stderr, "vigil status: %s%s did not answer JSON\n", t->base,
                path);
        return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- text */

static const char *str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));

    return s ? s : "";
}

static long long num(const json_t *o, const char *key)
{
    return (long long)json_number_value(json_object_get(o, key));
}

static void fmt_value(const json_t *v, const char *metric, char *buf,
                      size_t size)
{
    size_t n = strlen(metric);
    const char *unit = "";

    if (!json_is_number(v)) {
        snprintf(buf, size, "-");
        return;
    }
    if (n > 3 && !strcmp(metric + n - 3, "_ms")) {
        unit = " ms";
    } else if (n > 4 && !strcmp(metric + n - 4, "_pct")) {
        unit = " %";
    } else if (n > 6 && !strcmp(metric + n - 6, "_bytes")) {
        unit = " B";
    } else if (n > 6 && !strcmp(metric + n - 6, "_per_s")) {
        unit = "/s";
    }
    snprintf(buf, size, "%.4g%s", json_number_value(v), unit);
}

static void fmt_levels(const json_t *lv, char *buf, size_t size)
{
    static const struct {
        const char *key, *text;
    } k[] = {{"warn_above", "warn >"},
             {"crit_above", "crit >"},
             {"warn_below", "warn <"},
             {"crit_below", "crit <"}};
    size_t n = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < 4 && n < size; i++) {
        const json_t *v = json_object_get(lv, k[i].key);
        if (json_is_number(v)) {
            n += (size_t)snprintf(buf + n, size - n, "%s%s %g", n ? ", " : "",
                                  k[i].text, json_number_value(v));
        }
    }
}

static const char *state_color(const char *state, int tty)
{
    if (!tty) {
        return "";
    }
    return !strcmp(state, "critical")  ? "\033[1;31m"
           : !strcmp(state, "warning") ? "\033[1;33m"
           : !strcmp(state, "ok")      ? "\033[32m"
                                       : "\033[2m";
}

static void print_status(const json_t *st, const json_t *rules,
                         const json_t *incs, const json_t *plugins,
                         const struct status_target *t, int tty)
{
    const json_t *r = json_object_get(st, "rules");
    const json_t *p = json_object_get(st, "plugins");
    long long up = num(st, "uptime_s");
    const char *reset = tty ? "\033[0m" : "";
    size_t i, j;
    const json_t *x, *in;

    printf("vigil %s at http://%s%s%s:%s%s/ - up %lldd %02lldh %02lldm, "
           "%lld series, %lld plugin instances (%lld failed), store %s\n",
           str(st, "version"), strchr(t->host, ':') ? "[" : "", t->host,
           strchr(t->host, ':') ? "]" : "", t->port, t->base, up / 86400,
           up % 86400 / 3600, up % 3600 / 60, num(st, "series"),
           num(p, "running"), num(p, "failed"),
           json_is_true(json_object_get(st, "store")) ? "on" : "off");
    printf("\nRULES: %lld rules, %lld instances: %lld ok, %lld warning, "
           "%lld critical, %lld no data; %lld quarantined\n",
           num(r, "rules"), num(r, "instances"), num(r, "ok"),
           num(r, "warning"), num(r, "critical"), num(r, "nodata"),
           num(st, "quarantined"));
    if (num(r, "instances") > 0) {
        printf("  %-9s %-24s %-40s %-12s %s\n", "STATE", "RULE", "SERIES",
               "VALUE", "LEVELS");
    }
    /* Worst first. */
    static const char *const order[] = {"critical", "warning", "nodata", "ok"};
    for (size_t o = 0; o < 4; o++) {
        json_array_foreach(json_object_get(rules, "rules"), i, x)
        {
            char value[48], levels[128];
            fmt_levels(json_object_get(x, "levels"), levels, sizeof(levels));
            json_array_foreach(json_object_get(x, "instances"), j, in)
            {
                if (strcmp(str(in, "state"), order[o]) != 0) {
                    continue;
                }
                fmt_value(json_object_get(in, "value"), str(in, "metric"),
                          value, sizeof(value));
                printf("  %s%-9s%s %-24s %-40s %-12s %s\n",
                       state_color(order[o], tty), order[o], reset,
                       str(x, "name"),
                       json_object_get(in, "series") ? str(in, "series") : "-",
                       value, levels);
            }
        }
    }
    if (incs == NULL) {
        printf("\nINCIDENTS: not available (no store)\n");
    } else {
        const json_t *arr = json_object_get(incs, "incidents");
        printf("\nINCIDENTS: %zu open\n", json_array_size(arr));
        json_array_foreach(arr, i, x)
        {
            time_t s = (time_t)(num(x, "opened_ns") / 1000000000);
            char when[32];
            struct tm tm;
            gmtime_r(&s, &tm);
            strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%SZ", &tm);
            printf("  #%-5lld %s%-9s%s %s %s (opened %s)\n", num(x, "id"),
                   state_color(str(x, "state"), tty), str(x, "state"), reset,
                   str(x, "rule"), str(x, "series"), when);
        }
        if (json_array_size(arr) > 0) {
            printf("  details: vigil incidents show ID, or the dashboard\n");
        }
    }
    printf("\nPLUGINS:");
    json_array_foreach(json_object_get(plugins, "plugins"), i, x)
    {
        const char *inst = str(x, "instance");
        printf("%s %s%s%s %s%s%s", i ? "," : "", str(x, "plugin"),
               inst[0] ? " " : "", inst,
               state_color(!strcmp(str(x, "health"), "up") ? "ok" : "critical",
                           tty),
               str(x, "health"), reset);
    }
    printf("\n");
}

int status_main(int argc, char **argv, const struct daemon_opts *o)
{
    struct daemon_opts d = *o;
    struct status_target t;
    struct cfg *cfg = NULL;
    const char *url = NULL;
    int json = 0, rc, code;
    json_t *st = NULL, *rules = NULL, *incs = NULL, *plugins = NULL;

    memset(&t, 0, sizeof(t));
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) &&
            i + 1 < argc) {
            d.config_path = argv[++i];
        } else if (!strcmp(argv[i], "--url") && i + 1 < argc) {
            url = argv[++i];
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else {
            fprintf(stderr,
                    "usage: vigil status [-c FILE] [--url http://HOST:PORT/] "
                    "[--json]\n");
            return 2;
        }
    }
    if (url != NULL) {
        if (parse_url(url, &t) != 0) {
            fprintf(stderr,
                    "vigil status: --url: expected http://HOST:PORT/, "
                    "got '%s'\n",
                    url);
            return 2;
        }
    } else {
        if (d.config_path == NULL && access(STATUS_SYSTEM_CONFIG, F_OK) == 0) {
            d.config_path = STATUS_SYSTEM_CONFIG;
        }
        rc = target_from_config(&d, &cfg, &t);
        if (rc != 0) {
            cfg_destroy(cfg);
            return rc;
        }
    }
    rc = http_get(&t, "/api/v1/status", &code, &st);
    if (rc == 0 && code != 200) {
        fprintf(stderr, "vigil status: /api/v1/status: %d %s\n", code,
                str(st, "error"));
        rc = 1;
    }
    if (rc == 0) {
        rc = http_get(&t, "/api/v1/rules", &code, &rules);
    }
    if (rc == 0) {
        rc = http_get(&t, "/api/v1/plugins", &code, &plugins);
    }
    if (rc == 0 && json_is_true(json_object_get(st, "store")) &&
        (http_get(&t, "/api/v1/incidents?open=1", &code, &incs) != 0 ||
         code != 200)) {
        json_decref(incs);
        incs = NULL;
    }
    if (rc == 0 && json) {
        json_t *all = json_pack("{s:O,s:O,s:O,s:O}", "status", st, "rules",
                                rules, "plugins", plugins, "incidents",
                                incs ? incs : json_null());
        json_dumpf(all, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
        json_decref(all);
    } else if (rc == 0) {
        print_status(st, rules, incs, plugins, &t, isatty(STDOUT_FILENO));
    }
    json_decref(st);
    json_decref(rules);
    json_decref(incs);
    json_decref(plugins);
    cfg_destroy(cfg);
    return rc;
}
