/*
 * The webhook plugin: registers the action "webhook.post", which runbook
 * actions written `webhook = "url"` (or `{ url = ..., headers = {...},
 * retries = n }`) run. Arguments: {"url", "headers": [...], "retries",
 * "body": <JSON>}; the reply: {"http_status", "attempts", "answer"} or,
 * on failure, status VIGIL_EIO with {"error", ...}.
 */
#include <jansson.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <vigil/plugin.h>

#include "webhook.h"

#define WH_HEADERS_MAX 16

struct wh_conf {
    int64_t timeout_ms;
    int64_t retries;
    struct vigil_list headers;
};

static const struct vigil_option wh_options[] = {
    {"timeout", VIGIL_OPT_DURATION, "10s", offsetof(struct wh_conf, timeout_ms),
     "time one POST may take", 0, NULL},
    {"retries", VIGIL_OPT_INT, "3", offsetof(struct wh_conf, retries),
     "tries after the first, 1 s, 2 s, 4 s... apart", 0, NULL},
    {"headers", VIGIL_OPT_LIST, NULL, offsetof(struct wh_conf, headers),
     "\"Name: value\" sent with every POST", VIGIL_OPT_SECRET, NULL},
    {NULL, 0, NULL, 0, NULL, 0, NULL},
};

struct wh {
    const struct vigil_host *host;
    vigil_instance *inst;
    const struct wh_conf *conf;
    struct hook_mgr *hooks;
};

/* One post in flight: the reply needs the host and the request. */
struct wh_post_ctx {
    struct wh *w;
    vigil_request *req;
};

static void wh_done(void *arg, const struct hook_result *r)
{
    struct wh_post_ctx *p = arg;
    json_t *o =
        json_pack("{s:I,s:I,s:s}", "http_status", (json_int_t)r->http_status,
                  "attempts", (json_int_t)r->attempts, "answer", r->body);
    char *text;

    if (o != NULL && r->error != NULL) {
        json_object_set_new(o, "error", json_string(r->error));
    }
    text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    p->w->host->reply(p->req, r->ok ? 0 : VIGIL_EIO, text);
    free(text);
    json_decref(o);
    free(p);
}

static int wh_post(void *state, const char *args_json, vigil_request *req)
{
    struct wh *w = state;
    json_t *args = json_loads(args_json, 0, NULL);
    const char *url = json_string_value(json_object_get(args, "url"));
    json_t *retries = json_object_get(args, "retries");
    json_t *hdrs = json_object_get(args, "headers");
    const char *headers[WH_HEADERS_MAX + 1];
    size_t n = 0, i;
    json_t *v;
    char *body = json_dumps(json_object_get(args, "body"),
                            JSON_COMPACT | JSON_ENCODE_ANY);
    struct wh_post_ctx *p = calloc(1, sizeof(*p));
    int rc = VIGIL_EINVAL;

    for (i = 0; i < w->conf->headers.n && n < WH_HEADERS_MAX; i++) {
        headers[n++] = w->conf->headers.v[i];
    }
    json_array_foreach(hdrs, i, v)
    {
        if (json_is_string(v) && n < WH_HEADERS_MAX) {
            headers[n++] = json_string_value(v);
        }
    }
    headers[n] = NULL;
    if (url == NULL || body == NULL || p == NULL) {
        w->host->log(w->inst, VIGIL_LOG_ERROR,
                     "webhook.post needs {\"url\": ..., \"body\": ...}");
        free(p);
    } else {
        p->w = w;
        p->req = req;
        rc = hook_post(w->hooks, url, body, headers, w->conf->timeout_ms,
                       json_is_integer(retries)
                           ? (unsigned)json_integer_value(retries)
                           : (unsigned)w->conf->retries,
                       wh_done, p);
        if (rc != 0) {
            free(p);
        }
    }
    free(body);
    json_decref(args);
    return rc;
}

static const struct vigil_diag wh_actions[] = {
    {.name = "webhook.post",
     .help = "POST a JSON body to a URL, with retries",
     .args = "{\"url\": \"https://...\", \"headers\": [\"Name: value\"], "
             "\"retries\": 3, \"body\": {...}}",
     .is_action = 1,
     .run = wh_post},
};

static int wh_init(const struct vigil_host *host, vigil_instance *inst,
                   const void *config, void **state)
{
    struct wh *w = calloc(1, sizeof(*w));
    int rc;

    if (w == NULL) {
        return VIGIL_ENOMEM;
    }
    w->host = host;
    w->inst = inst;
    w->conf = config;
    if (w->conf->retries < 0 || w->conf->retries > 10) {
        host->log(inst, VIGIL_LOG_ERROR, "retries: expected 0 to 10");
        free(w);
        return VIGIL_ECONFIG;
    }
    rc = hook_create(host->loop(inst), &w->hooks);
    if (rc != 0) {
        host->log(inst, VIGIL_LOG_ERROR, "libcurl could not start");
        free(w);
        return rc;
    }
    /* One instance provides the action; a second one is allowed (its own
     * defaults) but cannot register the same name. */
    if (host->register_diag(inst, &wh_actions[0]) == VIGIL_EEXIST) {
        host->log(inst, VIGIL_LOG_WARN,
                  "webhook.post is provided by another instance already");
    }
    *state = w;
    return 0;
}

static void wh_stop(void *state)
{
    struct wh *w = state;

    hook_close(w->hooks); /* running posts report "vigil is stopping" */
    w->hooks = NULL;
}

static void wh_destroy(void *state)
{
    free(state);
}

VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {
    .abi_version = VIGIL_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct vigil_plugin),
    .name = "webhook",
    .version = "1.0",
    .description = "the webhook.post action: incidents as JSON to a URL",
    .options = wh_options,
    .config_size = sizeof(struct wh_conf),
    .init = wh_init,
    .stop = wh_stop,
    .destroy = wh_destroy,
};
