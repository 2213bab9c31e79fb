/* small_struct - a descriptor shorter than this vigil's: must be refused. */
#include "vigil/plugin.h"

static int ss_init(const struct vigil_host *host, vigil_instance *inst,
                   const void *config, void **state)
{
    (void)host, (void)inst, (void)config, (void)state;
    return 0;
}

VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {
    .abi_version = VIGIL_PLUGIN_ABI_VERSION,
    .struct_size = 16,
    .name = "small_struct",
    .init = ss_init,
};
