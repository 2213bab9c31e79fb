/* good - a well-behaved test plugin: options of every kind, a collect that
 * publishes `good.value` = count, and a diagnostic `good.echo`. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "vigil/plugin.h"

struct good_conf {
    const char *target;
    int64_t count;
    int64_t pause_ms;
    int fail;
};

struct good {
    const struct vigil_host *host;
    vigil_instance *inst;
    const struct good_conf *conf;
    vigil_series_id id;
    int collects;
};

static const struct vigil_option good_options[] = {
    {"target", VIGIL_OPT_STRING, NULL, offsetof(struct good_conf, target),
     "what to measure", VIGIL_OPT_REQUIRED, NULL},
    {"count", VIGIL_OPT_INT, "3", offsetof(struct good_conf, count),
     "value to publish", 0, NULL},
    {"pause", VIGIL_OPT_DURATION, "0", offsetof(struct good_conf, pause_ms),
     "unused duration", 0, NULL},
    {"fail", VIGIL_OPT_BOOL, "no", offsetof(struct good_conf, fail),
     "make every collect fail", 0, NULL},
    {NULL, 0, NULL, 0, NULL, 0, NULL},
};

static int good_echo(void *state, const char *args, vigil_request *req)
{
    struct good *g = state;

    g->host->reply(req, 0, args);
    return 0;
}

static const struct vigil_diag good_diags[] = {
    {.name = "good.echo", .help = "reply with the arguments", .run = good_echo},
};

static int good_init(const struct vigil_host *host, vigil_instance *inst,
                     const void *config, void **state)
{
    struct good *g = calloc(1, sizeof(*g));
    struct vigil_label l = {"target", NULL};
    int rc;

    if (g == NULL) {
        return VIGIL_ENOMEM;
    }
    g->host = host;
    g->inst = inst;
    g->conf = config;
    l.value = g->conf->target;
    rc = host->series(inst, "good.value", &l, 1, &g->id);
    if (rc != 0) {
        free(g);
        return rc;
    }
    if (strcmp(host->instance_name(inst), "a") == 0) {
        host->register_diag(inst, &good_diags[0]);
    }
    *state = g;
    return 0;
}

static int good_collect(void *state)
{
    struct good *g = state;

    g->collects++;
    if (g->conf->fail) {
        g->host->error(g->inst, "target %s failed on purpose", g->conf->target);
        return VIGIL_EIO;
    }
    g->host->publish(g->inst, g->id, 0, (double)g->conf->count);
    return 0;
}

static void good_destroy(void *state)
{
    free(state);
}

VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {
    .abi_version = VIGIL_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct vigil_plugin),
    .name = "good",
    .version = "1.0",
    .description = "test plugin that works",
    .options = good_options,
    .config_size = sizeof(struct good_conf),
    .init = good_init,
    .collect = good_collect,
    .destroy = good_destroy,
};
