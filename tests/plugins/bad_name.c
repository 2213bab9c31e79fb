/* bad_name - its descriptor names another plugin: must be refused. */
#include "vigil/plugin.h"

static int bn_init(const struct vigil_host *host, vigil_instance *inst,
                   const void *config, void **state)
{
    (void)host, (void)inst, (void)config, (void)state;
    return 0;
}

VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {
    .abi_version = VIGIL_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct vigil_plugin),
    .name = "sys",
    .init = bn_init,
};
