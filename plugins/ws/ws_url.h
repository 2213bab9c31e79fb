/*
 * ws_url - parsing of the ws plugin's WebSocket URLs: ws:// and wss://,
 * a host name, IPv4 address or [IPv6] literal, an optional port and a
 * path with its query. Pure C, no libwebsockets, so that the unit test
 * (ws_test.c) builds it alone. The parser is strict on purpose: what it
 * accepts is exactly what the connection code can use, and anything else
 * gets a reason an operator can act on.
 */
#ifndef WS_URL_H
#define WS_URL_H

#define WS_URL_HOST_MAX 256
#define WS_URL_PATH_MAX 1024
#define WS_URL_MAX (WS_URL_HOST_MAX + WS_URL_PATH_MAX + 16)

struct ws_url {
    int tls;                    /* 1 for wss:// */
    int port;                   /* 1..65535; 80 or 443 when not given */
    char host[WS_URL_HOST_MAX]; /* without the brackets of an IPv6 literal */
    char path[WS_URL_PATH_MAX]; /* "/" when not given; query included */
};

/* Parse text into u. Returns 0, or VIGIL_EINVAL with *why set to a static
 * sentence saying what is wrong (u is then unspecified). The fragment
 * (after '#') is dropped: it is never sent to a server. */
int ws_url_parse(const char *text, struct ws_url *u, const char **why);

/* The Host header value for u into buf: the host, bracketed when it is
 * an IPv6 literal, with ":port" when the port is not the scheme's
 * default. Does not fail; truncates to size. */
void ws_url_host_header(const struct ws_url *u, char *buf, unsigned size);

#endif
