/* ws_url - parsing of ws:// and wss:// URLs. */
#include "ws_url.h"

#include <stdio.h>
#include <string.h>

#include <vigil/plugin.h>

/* The characters of a host name or an IPv4 address. The other characters
 * RFC 3986 allows in a registered name never occur in DNS names, and
 * refusing them catches typos early. */
static int ws_url_host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}

/* The port between p and end: digits for 1..65535. */
static int ws_url_port(const char *p, const char *end, int *out,
                       const char **why)
{
    long v = 0;
    const char *c;

    for (c = p; c < end && *c >= '0' && *c <= '9' && v <= 65535; c++) {
        v = v * 10 + (*c - '0');
    }
    if (c == p || c != end || v < 1 || v > 65535) {
        *why = "the port must be a number from 1 to 65535";
        return VIGIL_EINVAL;
    }
    *out = (int)v;
    return 0;
}

/* "[v6]" or "[v6]:port" of length n: the address into *host, *hlen, and
 * where the port starts (NULL: none). */
static int ws_url_v6(const char *a, size_t n, const char **host, size_t *hlen,
                     const char **port, const char **why)
{
    const char *close = memchr(a, ']', n);

    if (close == NULL) {
        *why = "an IPv6 address needs its closing ']'";
        return VIGIL_EINVAL;
    }
    *host = a + 1;
    *hlen = (size_t)(close - *host);
    *port = NULL;
    if (close + 1 < a + n) {
        if (close[1] != ':') {
            *why = "only ':PORT' may follow an IPv6 address";
            return VIGIL_EINVAL;
        }
        *port = close + 2;
    }
    if (*hlen == 0 || strspn(*host, "0123456789abcdefABCDEF:.") < *hlen) {
        *why = "not an IPv6 address between '[' and ']'";
        return VIGIL_EINVAL;
    }
    return 0;
}

/* Split "host[:port]" or "[v6][:port]" of length n into u. */
static int ws_url_authority(const char *a, size_t n, struct ws_url *u,
                            const char **why)
{
    const char *host = a, *port = NULL;
    size_t hlen;

    if (memchr(a, '@', n) != NULL) {
        *why = "user names and passwords in the URL are not supported";
        return VIGIL_EINVAL;
    }
    if (n > 0 && a[0] == '[') {
        if (ws_url_v6(a, n, &host, &hlen, &port, why) != 0) {
            return VIGIL_EINVAL;
        }
    } else {
        const char *colon = memchr(a, ':', n);

        hlen = colon != NULL ? (size_t)(colon - a) : n;
        port = colon != NULL ? colon + 1 : NULL;
        for (size_t i = 0; i < hlen; i++) {
            if (!ws_url_host_char(a[i])) {
                *why = "the host has a character a host name cannot have";
                return VIGIL_EINVAL;
            }
        }
    }
    if (hlen == 0) {
        *why = "the URL has no host";
        return VIGIL_EINVAL;
    }
    if (hlen >= sizeof(u->host)) {
        *why = "the host name is too long";
        return VIGIL_EINVAL;
    }
    memcpy(u->host, host, hlen);
    u->host[hlen] = '\0';
    return port != NULL ? ws_url_port(port, a + n, &u->port, why) : 0;
}

int ws_url_parse(const char *text, struct ws_url *u, const char **why)
{
    const char *rest, *slash, *hash;
    size_t plen, lead;

    memset(u, 0, sizeof(*u));
    if (strncmp(text, "ws://", 5) == 0) {
        rest = text + 5;
        u->port = 80;
    } else if (strncmp(text, "wss://", 6) == 0) {
        rest = text + 6;
        u->port = 443;
        u->tls = 1;
    } else {
        *why = "only ws:// and wss:// URLs can be probed";
        return VIGIL_EINVAL;
    }
    for (const char *c = text; *c != '\0'; c++) {
        if ((unsigned char)*c <= ' ' || *c == 0x7f) {
            *why = "the URL has a space or a control character";
            return VIGIL_EINVAL;
        }
    }
    hash = strchr(rest, '#');
    slash = strpbrk(rest, "/?");
    if (hash != NULL && (slash == NULL || hash < slash)) {
        slash = hash;
    }
    if (slash == NULL) {
        slash = rest + strlen(rest);
    }
    if (ws_url_authority(rest, (size_t)(slash - rest), u, why) != 0) {
        return VIGIL_EINVAL;
    }
    plen =
        hash != NULL && hash >= slash ? (size_t)(hash - slash) : strlen(slash);
    /* "ws://h?x=1" asks for "/?x=1". */
    lead = plen == 0 || slash[0] != '/';
    if (lead + plen + 1 > sizeof(u->path)) {
        *why = "the path is too long";
        return VIGIL_EINVAL;
    }
    snprintf(u->path, sizeof(u->path), "%s%.*s", lead ? "/" : "", (int)plen,
             slash);
    return 0;
}

void ws_url_host_header(const struct ws_url *u, char *buf, unsigned size)
{
    int v6 = strchr(u->host, ':') != NULL;
    int dflt = u->port == (u->tls ? 443 : 80);

    if (dflt) {
        snprintf(buf, size, "%s%s%s", v6 ? "[" : "", u->host, v6 ? "]" : "");
    } else {
        snprintf(buf, size, "%s%s%s:%d", v6 ? "[" : "", u->host, v6 ? "]" : "",
                 u->port);
    }
}
