/*
 * pg_dsn.c - parse, show and resolve the pg plugin's connection string.
 * See pg_dsn.h.
 */
#include "pg_dsn.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <vigil/plugin.h>

/* Put before the DSN's own values, which override them: keepalives so
 * that a dead peer (no RST) costs seconds, not the kernel's retransmission
 * timeout; a name in pg_stat_activity unless the DSN gives one; UTF-8 text,
 * which the diagnostics' JSON needs. */
static const char *const pg_dsn_def_keys[] = {
    "keepalives",       "keepalives_idle",  "keepalives_interval",
    "keepalives_count", "tcp_user_timeout", "fallback_application_name",
    "client_encoding",
};
static const char *const pg_dsn_def_vals[] = {
    "1", "30", "10", "3", "30000", "vigil", "UTF8",
};
#define PG_DSN_NDEF (sizeof(pg_dsn_def_keys) / sizeof(pg_dsn_def_keys[0]))

void pg_oneline(char *out, size_t size, const char *msg)
{
    size_t n = 0;
    int sep = 0; /* 1: a blank is due before the next text, 2: "; " */

    if (size == 0) {
        return;
    }
    /* libpq's messages are lines, some starting with a tab, some with
     * two blanks after "ERROR:"; a log line wants single blanks. */
    for (const char *p = msg != NULL ? msg : ""; *p != '\0'; p++) {
        if (*p == '\n' || *p == '\r') {
            sep = 2;
            continue;
        }
        if (*p == ' ' || *p == '\t') {
            sep = sep > 1 ? sep : 1;
            continue;
        }
        if (sep > 0 && n > 0) {
            if (sep == 2 && n + 1 < size) {
                out[n++] = ';';
            }
            if (n + 1 < size) {
                out[n++] = ' ';
            }
        }
        sep = 0;
        if (n + 1 < size) {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
}

static const char *pg_dsn_get(const struct pg_dsn *d, const char *key)
{
    for (const PQconninfoOption *o = d->opts; o->keyword != NULL; o++) {
        if (strcmp(o->keyword, key) == 0) {
            return o->val != NULL && o->val[0] != '\0' ? o->val : NULL;
        }
    }
    return NULL;
}

/* Is this element of a host list a name libpq would look up? */
static int pg_dsn_is_name(const char *h, size_t n)
{
    char buf[256];
    unsigned char addr[16];

    if (n == 0 || h[0] == '/' || h[0] == '@') {
        return 0; /* the default, or a unix-socket directory */
    }
    if (n >= sizeof(buf)) {
        return 1;
    }
    memcpy(buf, h, n);
    buf[n] = '\0';
    return inet_pton(AF_INET, buf, addr) != 1 &&
           inet_pton(AF_INET6, buf, addr) != 1;
}

static int pg_dsn_any_name(const char *list)
{
    const char *p = list, *comma;

    for (;;) {
        comma = strchr(p, ',');
        if (pg_dsn_is_name(p, comma ? (size_t)(comma - p) : strlen(p))) {
            return 1;
        }
        if (comma == NULL) {
            return 0;
        }
        p = comma + 1;
    }
}

/* The name for messages: no password, no options. */
static void pg_dsn_show(struct pg_dsn *d)
{
    const char *user = pg_dsn_get(d, "user");
    const char *host = d->hosts[0] != '\0' ? d->hosts : "";
    const char *port = pg_dsn_get(d, "port");

    if (host[0] == '\0' && pg_dsn_get(d, "hostaddr") != NULL) {
        host = pg_dsn_get(d, "hostaddr");
    }
    snprintf(d->shown, sizeof(d->shown),
             "postgresql://%.60s%s%.120s%s%.20s/%.40s", user ? user : "",
             user ? "@" : "", host, port ? ":" : "", port ? port : "",
             d->dbname);
}

int pg_dsn_parse(struct pg_dsn *d, const char *dsn, char *err, size_t size)
{
    char *msg = NULL;
    const char *v, *addr;

    memset(d, 0, sizeof(*d));
    d->opts = PQconninfoParse(dsn, &msg);
    if (d->opts == NULL) {
        if (msg != NULL) {
            char line[256];

            pg_oneline(line, sizeof(line), msg);
            snprintf(err, size, "dsn: not a PostgreSQL connection string: %s",
                     line);
        } else {
            snprintf(err, size, "dsn: out of memory");
        }
        PQfreemem(msg);
        return VIGIL_ECONFIG;
    }
    v = pg_dsn_get(d, "dbname");
    snprintf(d->dbname, sizeof(d->dbname), "%s", v ? v : "");
    addr = pg_dsn_get(d, "hostaddr");
    if (addr == NULL) {
        addr = getenv("PGHOSTADDR");
    }
    v = pg_dsn_get(d, "host");
    if (v == NULL) {
        v = getenv("PGHOST");
    }
    if (v != NULL && strlen(v) >= sizeof(d->hosts)) {
        snprintf(err, size, "dsn: the host list is too long");
        return VIGIL_ECONFIG;
    }
    snprintf(d->hosts, sizeof(d->hosts), "%s", v ? v : "");
    v = pg_dsn_get(d, "port");
    if (v == NULL) {
        v = getenv("PGPORT");
    }
    snprintf(d->ports, sizeof(d->ports), "%.*s", (int)sizeof(d->ports) - 1,
             v ? v : "");
    d->need_resolve = (addr == NULL || addr[0] == '\0') &&
                      d->hosts[0] != '\0' && pg_dsn_any_name(d->hosts);
    pg_dsn_show(d);
    return 0;
}

void pg_dsn_fini(struct pg_dsn *d)
{
    if (d != NULL && d->opts != NULL) {
        PQconninfoFree(d->opts);
        d->opts = NULL;
    }
}

/* Element i of a comma-separated list into out; 0, or -1 when absent. */
static int pg_dsn_elem(const char *list, size_t i, char *out, size_t size)
{
    const char *p = list, *end;
    size_t n;

    for (; i > 0; i--) {
        p = strchr(p, ',');
        if (p == NULL) {
            return -1;
        }
        p++;
    }
    end = strchr(p, ',');
    if (end == NULL) {
        end = p + strlen(p);
    }
    n = (size_t)(end - p) < size ? (size_t)(end - p) : size - 1;
    memcpy(out, p, n);
    out[n] = '\0';
    return 0;
}

static size_t pg_dsn_count(const char *list)
{
    size_t n = 1;

    for (; *list != '\0'; list++) {
        n += *list == ',';
    }
    return n;
}

/* Append ",item" (or "item" first) at buf + len; the caller checked
 * the room. */
static void pg_dsn_cat(char *buf, size_t len, int sep, const char *item)
{
    size_t n = strlen(item);

    if (sep) {
        buf[len++] = ',';
    }
    memcpy(buf + len, item, n + 1);
}

/* Append one entry to the three parallel lists of out. */
static int pg_dsn_add(struct pg_dsn_hosts *out, size_t *n, const char *host,
                      const char *addr, const char *port)
{
    size_t lh = strlen(out->host), la = strlen(out->hostaddr),
           lp = strlen(out->port), sep = *n > 0;

    if (*n >= PG_DSN_HOSTS_MAX ||
        lh + sep + strlen(host) >= sizeof(out->host) ||
        la + sep + strlen(addr) >= sizeof(out->hostaddr) ||
        lp + sep + strlen(port) >= sizeof(out->port)) {
        return -1;
    }
    pg_dsn_cat(out->host, lh, (int)sep, host);
    pg_dsn_cat(out->hostaddr, la, (int)sep, addr);
    pg_dsn_cat(out->port, lp, (int)sep, port);
    (*n)++;
    return 0;
}

/* Is item an element of the comma-separated list? */
static int pg_dsn_has(const char *list, const char *item)
{
    size_t n = strlen(item);

    for (const char *p = list; p != NULL; p = strchr(p, ',')) {
        p += *p == ',';
        if (strncmp(p, item, n) == 0 && (p[n] == ',' || p[n] == '\0')) {
            return 1;
        }
    }
    return 0;
}

/* Every address of one name, as entries. Returns the getaddrinfo code. */
static int pg_dsn_lookup(struct pg_dsn_hosts *out, size_t *n, const char *name,
                         const char *port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    char addr[INET6_ADDRSTRLEN];
    int rc = getaddrinfo(name, NULL, &hints, &res);

    for (struct addrinfo *ai = res; rc == 0 && ai != NULL; ai = ai->ai_next) {
        const void *a =
            ai->ai_family == AF_INET
                ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
                : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)
                      ->sin6_addr;

        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
            inet_ntop(ai->ai_family, a, addr, sizeof(addr)) == NULL ||
            pg_dsn_has(out->hostaddr, addr)) {
            continue; /* another family, or seen already */
        }
        if (pg_dsn_add(out, n, name, addr, port) != 0) {
            break;
        }
    }
    freeaddrinfo(res);
    return rc;
}

int pg_dsn_resolve(const char *hosts, const char *ports,
                   struct pg_dsn_hosts *out, char *err, size_t size)
{
    size_t nh = pg_dsn_count(hosts), np = pg_dsn_count(ports), n = 0;
    char host[256], port[64];

    memset(out, 0, sizeof(*out));
    err[0] = '\0';
    for (size_t i = 0; i < nh; i++) {
        pg_dsn_elem(hosts, i, host, sizeof(host));
        if (pg_dsn_elem(ports, np == 1 ? 0 : i, port, sizeof(port)) != 0) {
            port[0] = '\0'; /* libpq reports the mismatch itself */
        }
        if (!pg_dsn_is_name(host, strlen(host))) {
            pg_dsn_add(out, &n, host, "", port);
            continue;
        }
        int rc = pg_dsn_lookup(out, &n, host, port);
        if (rc != 0) { /* the others may do: libpq tries them */
            snprintf(err, size, "cannot resolve host '%s': %s", host,
                     gai_strerror(rc));
        }
    }
    if (n == 0) {
        if (err[0] == '\0') {
            snprintf(err, size, "no address for host '%s'", hosts);
        }
        return VIGIL_EIO;
    }
    return 0;
}

void pg_dsn_params(const struct pg_dsn *d, const struct pg_dsn_hosts *h,
                   const char **keys, const char **vals)
{
    size_t n = 0;

    for (size_t i = 0; i < PG_DSN_NDEF; i++, n++) {
        keys[n] = pg_dsn_def_keys[i];
        vals[n] = pg_dsn_def_vals[i];
    }
    for (const PQconninfoOption *o = d->opts;
         o->keyword != NULL && n + 3 < PG_DSN_PARAMS_MAX; o++) {
        if (o->val == NULL || o->val[0] == '\0' ||
            (h != NULL && (strcmp(o->keyword, "host") == 0 ||
                           strcmp(o->keyword, "hostaddr") == 0 ||
                           strcmp(o->keyword, "port") == 0))) {
            continue;
        }
        keys[n] = o->keyword;
        vals[n++] = o->val;
    }
    if (h != NULL) {
        keys[n] = "host";
        vals[n++] = h->host;
        keys[n] = "hostaddr";
        vals[n++] = h->hostaddr;
        keys[n] = "port";
        vals[n++] = h->port;
    }
    keys[n] = NULL;
    vals[n] = NULL;
}
