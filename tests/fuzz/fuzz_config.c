/* libFuzzer target: the INI config parser and option conversion. Any input
 * must give a tree or diagnostics, never a crash or a leak. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

struct fz_conf {
    const char *s;
    int64_t i;
    double d;
    int b;
    int64_t dur;
    uint64_t bytes;
    int e;
    struct vigil_list l;
};

#define O(f) offsetof(struct fz_conf, f)
static const struct vigil_option fz_options[] = {
    {"s", VIGIL_OPT_STRING, "x", O(s), "", 0, NULL},
    {"i", VIGIL_OPT_INT, "1", O(i), "", 0, NULL},
    {"d", VIGIL_OPT_DOUBLE, "1.5", O(d), "", 0, NULL},
    {"b", VIGIL_OPT_BOOL, "no", O(b), "", 0, NULL},
    {"dur", VIGIL_OPT_DURATION, "1s", O(dur), "", 0, NULL},
    {"bytes", VIGIL_OPT_BYTES, "1KiB", O(bytes), "", 0, NULL},
    {"e", VIGIL_OPT_ENUM, "a", O(e), "", 0, "a|b|c"},
    {"l", VIGIL_OPT_LIST, NULL, O(l), "", 0, NULL},
    {NULL, 0, NULL, 0, NULL, 0, NULL},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct cfg_diag diag;
    char *text = malloc(size + 1);
    struct cfg *cfg = NULL;
    struct fz_conf conf;

    if (text == NULL) {
        return 0;
    }
    memcpy(text, data, size);
    text[size] = '\0';
    cfg_diag_init(&diag);
    cfg_load_string("fuzz.ini", text, &cfg, &diag);
    if (cfg != NULL) {
        for (struct cfg_section *s = cfg_first(cfg, NULL); s != NULL;
             s = cfg_next(s, NULL)) {
            memset(&conf, 0, sizeof(conf));
            cfg_apply(cfg, fz_options, s, NULL, &conf, &diag);
        }
        cfg_check_unclaimed(cfg, "x", &diag);
    }
    cfg_diag_sort(&diag);
    cfg_destroy(cfg);
    free(text);
    return 0;
}
