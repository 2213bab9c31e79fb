/* no_symbol - a shared object that is not a vigil plugin. */
#include "vigil/plugin.h"

VIGIL_EXPORT int not_a_plugin(void);
VIGIL_EXPORT int not_a_plugin(void)
{
    return 42;
}
