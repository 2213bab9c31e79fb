/*
 * pg_dsn - the pg plugin's connection string.
 *
 * The `dsn` option is parsed once, at init, with PQconninfoParse (no I/O):
 * a bad string is a configuration error then, not a connect failure
 * later. From the parsed options this module gives
 *
 *   - a name safe to log: postgresql://user@host:port/dbname, rebuilt
 *     from the parts, so neither a password nor `options` can slip in;
 *   - the keyword/value arrays PQconnectStartParams takes, with vigil's
 *     defaults (TCP keepalives, fallback_application_name) before the
 *     DSN's own values, which override them;
 *   - host-name resolution for the thread pool: libpq calls getaddrinfo()
 *     inside PQconnectStart/PQconnectPoll, which would block the loop on a
 *     slow DNS server. When the DSN names hosts and gives no hostaddr,
 *     pg_dsn_resolve() looks them up beforehand (on the pool) and
 *     pg_dsn_params() passes the addresses as `hostaddr`, with `host`
 *     kept for TLS and authentication, so libpq does no lookup at all.
 *
 * The struct pg_dsn owns the parsed options; everything else borrows
 * from it.
 */
#ifndef VIGIL_PG_DSN_H
#define VIGIL_PG_DSN_H

#include <stddef.h>

#include <libpq-fe.h>

/* Hosts (after expansion into addresses) one connection may try. */
#define PG_DSN_HOSTS_MAX 16
/* Keyword/value pairs pg_dsn_params() may produce, plus the NULL. */
#define PG_DSN_PARAMS_MAX 64
#define PG_DSN_SHOWN_MAX 256
#define PG_DSN_LIST_MAX 2048 /* a comma-separated host list */

struct pg_dsn {
    PQconninfoOption *opts; /* owned; from PQconninfoParse */
    char shown[PG_DSN_SHOWN_MAX];
    char dbname[128]; /* the database connected to, "" for libpq's default */
    /* The host and port lists libpq would use (from the DSN, else PGHOST
     * and PGPORT), and whether some host needs a DNS lookup. */
    char hosts[PG_DSN_LIST_MAX];
    char ports[PG_DSN_LIST_MAX];
    int need_resolve;
};

/* Where one connection goes, host names resolved: parallel lists. */
struct pg_dsn_hosts {
    char host[PG_DSN_LIST_MAX];
    char hostaddr[PG_DSN_LIST_MAX];
    char port[PG_DSN_LIST_MAX];
};

/* Parse dsn into d. Returns 0, or VIGIL_ECONFIG with a one-line reason in
 * err (libpq's, which never quotes a password). d must be released with
 * pg_dsn_fini() either way. */
int pg_dsn_parse(struct pg_dsn *d, const char *dsn, char *err, size_t size);

/* Release d's parsed options; accepts a zeroed or half-built d. */
void pg_dsn_fini(struct pg_dsn *d);

/* Blocking (getaddrinfo): for the thread pool. Resolve the hosts in the
 * comma-separated list `hosts` (ports: a list of one, or one per host),
 * every address of a name becoming an entry of out. Numeric addresses and
 * socket directories pass through. Returns 0, or VIGIL_EIO with the
 * reason in err when no host could be resolved. */
int pg_dsn_resolve(const char *hosts, const char *ports,
                   struct pg_dsn_hosts *out, char *err, size_t size);

/* Fill keys/vals (capacity PG_DSN_PARAMS_MAX + 1, NULL-terminated) for
 * PQconnectStartParams(keys, vals, 0): vigil's defaults, then the DSN's
 * values, then h's lists when h is not NULL. The strings are borrowed
 * from d, h and static storage. Does not fail. */
void pg_dsn_params(const struct pg_dsn *d, const struct pg_dsn_hosts *h,
                   const char **keys, const char **vals);

/* Copy a libpq message into out as one line: line breaks become "; ",
 * runs of blanks and tabs one blank, trailing ones go. Does not fail. */
void pg_oneline(char *out, size_t size, const char *msg);

#endif
