/* paths - shipped files relative to the executable. */
#include "paths.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *paths_exe_dir(void)
{
    static char dir[PATH_MAX];
    ssize_t n;
    char *slash;

    if (dir[0] != '\0') {
        return dir;
    }
    n = readlink("/proc/self/exe", dir, sizeof(dir) - 1);
    if (n <= 0) {
        snprintf(dir, sizeof(dir), ".");
        return dir;
    }
    dir[n] = '\0';
    slash = strrchr(dir, '/');
    if (slash != NULL && slash != dir) {
        *slash = '\0';
    }
    return dir;
}

const char *paths_data_dir(const char *sub, char *buf, unsigned size)
{
    char real[PATH_MAX];

    /* Run from its build tree (which may be outside the sources): the
     * sources' own directories. */
    if (strcmp(paths_exe_dir(), VIGIL_BUILD_DIR) == 0) {
        snprintf(buf, size, "%s/%s", VIGIL_SOURCE_DIR, sub);
    } else {
        snprintf(buf, size, "%s/../%s", paths_exe_dir(), sub);
        if (access(buf, F_OK) != 0) {
            snprintf(buf, size, "%s/../share/vigil/%s", paths_exe_dir(), sub);
        }
    }
    /* Shorter in messages: /src/rules rather than /src/build/../rules. */
    if (realpath(buf, real) != NULL) {
        snprintf(buf, size, "%s", real);
    }
    return buf;
}
