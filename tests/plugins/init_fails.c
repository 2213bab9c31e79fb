/* init_fails - init reports an error: the instance is skipped. */
#include "vigil/plugin.h"

static int if_init(const struct vigil_host *host, vigil_instance *inst,
                   const void *config, void **state)
{
    (void)config, (void)state;
    host->log(inst, VIGIL_LOG_ERROR, "cannot reach the target");
    return VIGIL_EIO;
}

VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {
    .abi_version = VIGIL_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct vigil_plugin),
    .name = "init_fails",
    .version = "1.0",
    .init = if_init,
};
