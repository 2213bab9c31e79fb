/* wrong_abi - a plugin built against a future ABI: must be refused. */
#include "vigil/plugin.h"

static int wa_init(const struct vigil_host *host, vigil_instance *inst,
                   const void *config, void **state)
{
    (void)host, (void)inst, (void)config, (void)state;
    return 0;
}

VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {
    .abi_version = 999,
    .struct_size = sizeof(struct vigil_plugin),
    .name = "wrong_abi",
    .version = "1.0",
    .init = wa_init,
};
