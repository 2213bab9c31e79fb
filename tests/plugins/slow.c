/* slow - a collect that blocks the loop for `block` (default 200ms), as a
 * badly written plugin would; vigil must say so and keep running. */
#include <stddef.h>
#include <time.h>

#include "vigil/plugin.h"

struct slow_conf {
    int64_t block_ms;
};

static const struct vigil_option slow_options[] = {
    {"block", VIGIL_OPT_DURATION, "200ms", offsetof(struct slow_conf, block_ms),
     "how long collect blocks", 0, NULL},
    {NULL, 0, NULL, 0, NULL, 0, NULL},
};

static int slow_init(const struct vigil_host *host, vigil_instance *inst,
                     const void *config, void **state)
{
    (void)host, (void)inst;
    *state = (void *)config;
    return 0;
}

static int slow_collect(void *state)
{
    const struct slow_conf *c = state;
    struct timespec ts = {c->block_ms / 1000, (c->block_ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
    return 0;
}

VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {
    .abi_version = VIGIL_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct vigil_plugin),
    .name = "slow",
    .version = "1.0",
    .description = "test plugin whose collect blocks",
    .options = slow_options,
    .config_size = sizeof(struct slow_conf),
    .init = slow_init,
    .collect = slow_collect,
};
