/* undefined_sym - calls a core function directly instead of through the
 * host table; RTLD_NOW must refuse it at load time. */
#include "vigil/plugin.h"

void bus_publish_directly(int x);

static int us_init(const struct vigil_host *host, vigil_instance *inst,
                   const void *config, void **state)
{
    (void)host, (void)inst, (void)config, (void)state;
    bus_publish_directly(1);
    return 0;
}

VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {
    .abi_version = VIGIL_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct vigil_plugin),
    .name = "undefined_sym",
    .init = us_init,
};
