/* ws_lws - the ws plugin's shared libwebsockets context. */
#include "ws_lws.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <vigil/plugin.h>

/* One client vhost per distinct ca_file. lws keeps a pointer to the vhost
 * name rather than a copy, so the name lives here. */
struct ws_lws_vh {
    struct ws_lws_vh *next;
    struct lws_vhost *vh;
    char name[24];
    char ca_file[]; /* "" for the system's store */
};

struct ws_lws {
    uv_loop_t *loop;
    struct lws_context *ctx;
    const struct lws_protocols *protocols;
    uv_timer_t reap;
    unsigned users;
    unsigned nvh;
    struct ws_lws_vh *vhosts;
    struct ws_lws_vh *creating; /* inside lws_create_vhost() */
};

/* The context being used; one that is being destroyed is no longer here,
 * so that a new acquire (a restart) never gets a dying context. */
static struct ws_lws *ws_lws_cur;

int ws_lws_acquire(uv_loop_t *loop, const struct lws_protocols *protocols,
                   char *err, size_t size)
{
    struct lws_context_creation_info info;
    void *loops[1] = {loop};
    struct ws_lws *l;

    if (ws_lws_cur != NULL) {
        ws_lws_cur->users++;
        return 0;
    }
    l = calloc(1, sizeof(*l));
    if (l == NULL) {
        snprintf(err, size, "out of memory");
        return VIGIL_ENOMEM;
    }
    /* lws's notices (its version, "accepting self-signed certificate"
     * per connection...) would go to stderr outside vigil's log format;
     * every failure it reports is also reported by ws_conn in vigil's.
     * The level is process-wide; the emitter is left as it is. */
    lws_set_log_level(LLL_ERR | LLL_WARN, NULL);
    memset(&info, 0, sizeof(info));
    /* Client only: no listening vhost, so none of the failed-create
     * traps of a server context; vhosts come from ws_lws_vhost(). */
    info.options = LWS_SERVER_OPTION_LIBUV |
                   LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT |
                   LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.foreign_loops = loops;
    l->ctx = lws_create_context(&info);
    if (l->ctx == NULL) {
        snprintf(err, size,
                 "cannot create the libwebsockets context (is the "
                 "package libwebsockets-evlib-uv installed?)");
        free(l);
        return VIGIL_EIO;
    }
    l->loop = loop;
    l->protocols = protocols;
    l->users = 1;
    uv_timer_init(loop, &l->reap);
    l->reap.data = l;
    ws_lws_cur = l;
    return 0;
}

struct lws_context *ws_lws_context(void)
{
    return ws_lws_cur != NULL ? ws_lws_cur->ctx : NULL;
}

int ws_lws_vhost(const char *ca_file, struct lws_vhost **out, char *err,
                 size_t size)
{
    struct ws_lws *l = ws_lws_cur;
    const char *ca = ca_file != NULL ? ca_file : "";
    struct lws_context_creation_info info;
    struct ws_lws_vh *v;

    if (l == NULL) {
        snprintf(err, size, "no libwebsockets context");
        return VIGIL_ESTATE;
    }
    for (v = l->vhosts; v != NULL; v = v->next) {
        if (strcmp(v->ca_file, ca) == 0) {
            break;
        }
    }
    if (v != NULL) {
        *out = v->vh;
        if (v->vh == NULL) {
            snprintf(err, size, "cannot set up TLS with %s", ca);
            return VIGIL_EIO;
        }
        return 0;
    }
    v = calloc(1, sizeof(*v) + strlen(ca) + 1);
    if (v == NULL) {
        snprintf(err, size, "out of memory");
        return VIGIL_ENOMEM;
    }
    memcpy(v->ca_file, ca, strlen(ca) + 1);
    snprintf(v->name, sizeof(v->name), "vigil-ws-%u", l->nvh);
    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = l->protocols;
    info.vhost_name = v->name;
    /* Never the system's CA bundle as lws loads it: parsing every
     * certificate of it takes about 50 ms, on the loop. Without ca_file,
     * ws_lws_verify_certs() points OpenSSL at the hashed directory
     * instead, read one issuer at a time when a handshake needs it. With
     * ca_file, that file replaces the system's store, as in the http
     * plugin: a private CA should not widen trust to every public one. */
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT |
                   LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS;
    if (ca[0] != '\0') {
        info.client_ssl_ca_filepath = ca;
    }
    l->creating = v;
    v->vh = lws_create_vhost(l->ctx, &info);
    l->creating = NULL;
    /* Kept even when that failed: lws may still hold the name while it
     * tears the vhost down, and the next caller gets the same answer. */
    l->nvh++;
    v->next = l->vhosts;
    l->vhosts = v;
    *out = v->vh;
    if (v->vh == NULL) {
        snprintf(err, size, "cannot set up TLS%s%s", ca[0] ? " with " : "", ca);
        return VIGIL_EIO;
    }
    return 0;
}

int ws_lws_ca_check(const char *path, char *err, size_t size)
{
    FILE *f = fopen(path, "r");
    X509 *x;

    if (f == NULL) {
        snprintf(err, size, "%s", strerror(errno));
        return VIGIL_ECONFIG;
    }
    x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (x == NULL) {
        ERR_clear_error(); /* not to be reported by a later TLS call */
        snprintf(err, size, "no PEM certificate in it");
        return VIGIL_ECONFIG;
    }
    X509_free(x);
    return 0;
}

void ws_lws_verify_certs(void *ssl_ctx)
{
    struct ws_lws *l = ws_lws_cur;
    const char *dir;

    if (l == NULL || l->creating == NULL || l->creating->ca_file[0] != '\0') {
        return;
    }
    /* OpenSSL's own default, SSL_CERT_DIR first as it does. */
    dir = getenv(X509_get_default_cert_dir_env());
    if (dir == NULL) {
        dir = X509_get_default_cert_dir();
    }
    SSL_CTX_load_verify_dir(ssl_ctx, dir);
}

struct ws_lws_count {
    void *ctx;
    unsigned n;
};

/* lws 4.1 marks its own static uv handles with data == the context. */
static void ws_lws_count_handle(uv_handle_t *h, void *arg)
{
    struct ws_lws_count *c = arg;

    if (h->data == c->ctx) {
        c->n++;
    }
}

static void ws_lws_freed(uv_handle_t *h)
{
    struct ws_lws *l = h->data;

    while (l->vhosts != NULL) {
        struct ws_lws_vh *v = l->vhosts;

        l->vhosts = v->next;
        free(v);
    }
    free(l);
}

/* The reaper: once lws's handles have closed, the second destroy frees
 * the context. Calling it earlier is a use-after-free: those handles live
 * inside the context's memory. */
static void ws_lws_reap(uv_timer_t *t)
{
    struct ws_lws *l = t->data;
    struct ws_lws_count c = {.ctx = l->ctx, .n = 0};

    uv_walk(l->loop, ws_lws_count_handle, &c);
    if (c.n > 0) {
        return;
    }
    lws_context_destroy(l->ctx);
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, ws_lws_freed);
}

void ws_lws_release(void)
{
    struct ws_lws *l = ws_lws_cur;

    if (l == NULL || --l->users > 0) {
        return;
    }
    ws_lws_cur = NULL;
    lws_context_destroy(l->ctx);
    uv_timer_start(&l->reap, ws_lws_reap, 1, 1);
}
