/*
 * hello - a complete out-of-tree vigil plugin: it publishes the length of
 * a file every interval as `hello.file.size_bytes{path=...}`.
 *
 *   cc -shared -fPIC $(pkg-config --cflags vigil-plugin) \
 *      -Wl,--no-undefined -o hello.so hello.c
 *
 * Then, in the config:
 *
 *   [plugin hello]
 *   path = /var/log/syslog
 *   interval = 5s
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <vigil/plugin.h>

/* Filled by vigil from the [plugin hello] section before init. */
struct hello_conf {
    const char *path;
    int missing_ok;
};

static const struct vigil_option hello_options[] = {
    {"path", VIGIL_OPT_STRING, NULL, offsetof(struct hello_conf, path),
     "file to watch", VIGIL_OPT_REQUIRED, NULL},
    {"missing_ok", VIGIL_OPT_BOOL, "no",
     offsetof(struct hello_conf, missing_ok),
     "a missing file publishes 0 instead of failing", 0, NULL},
    {NULL, 0, NULL, 0, NULL, 0, NULL},
};

struct hello {
    const struct vigil_host *host;
    vigil_instance *inst;
    const struct hello_conf *conf;
    vigil_series_id size_id;
};

static int hello_init(const struct vigil_host *host, vigil_instance *inst,
                      const void *config, void **state)
{
    struct hello *h = calloc(1, sizeof(*h));
    int rc;

    if (h == NULL) {
        return VIGIL_ENOMEM;
    }
    h->host = host;
    h->inst = inst;
    h->conf = config;
    /* Intern the series once; publishing by id never allocates. */
    struct vigil_label label = {"path", h->conf->path};
    rc = host->series(inst, "hello.file.size_bytes", &label, 1, &h->size_id);
    if (rc != 0) {
        free(h);
        return rc;
    }
    *state = h;
    return 0;
}

static int hello_collect(void *state)
{
    struct hello *h = state;
    struct stat st;

    if (stat(h->conf->path, &st) != 0) {
        if (errno == ENOENT && h->conf->missing_ok) {
            h->host->publish(h->inst, h->size_id, 0, 0.0);
            return 0;
        }
        /* Logged (rate-limited) and counted in hello.errors_total; the
         * core publishes hello.up = 0 for this collection. */
        h->host->error(h->inst, "%s: %s", h->conf->path, strerror(errno));
        return VIGIL_EIO;
    }
    h->host->publish(h->inst, h->size_id, 0, (double)st.st_size);
    return 0;
}

static void hello_destroy(void *state)
{
    free(state);
}

VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {
    .abi_version = VIGIL_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct vigil_plugin),
    .name = "hello",
    .version = "1.0",
    .description = "size of a file",
    .options = hello_options,
    .config_size = sizeof(struct hello_conf),
    .init = hello_init,
    .collect = hello_collect,
    .destroy = hello_destroy,
};
