/*
 * plug - the plugin loader and the plugin instances.
 *
 * A module is one dlopen'd `<dir>/<name>.so` exporting `vigil_plugin`
 * (include/vigil/plugin.h); it is loaded once however many instances use
 * it, with RTLD_NOW | RTLD_LOCAL so missing symbols fail at load time, and
 * refused with its path and the reason when the symbol is missing, the ABI
 * version differs, the descriptor is too small, its name does not match the
 * file, or it has no init.
 *
 * An instance is one `[plugin NAME]` or `[plugin NAME INSTANCE]` section:
 * its options converted through the plugin's table, its state, its
 * wall-clock-aligned collection timer (schedule.h), and the metrics every
 * plugin gets for free: `<name>.up`, `<name>.collect_ms` and
 * `<name>.errors_total` (labelled instance=... for named instances). An
 * instance that fails to load or init is reported and skipped; the others
 * run.
 *
 * The set owns modules and instances; it borrows the loop, the bus and the
 * config (plugin option strings point into the config) for its lifetime.
 */
#ifndef VIGIL_PLUG_H
#define VIGIL_PLUG_H

#include <stdio.h>
#include <uv.h>

#include "bus.h"
#include "config.h"
#include "err.h"

struct plug_mod;
struct plug_set;

/* Load <dir>/<name>.so and validate its descriptor. Returns 0, or
 * VIGIL_ENOENT / VIGIL_EABI / VIGIL_EINVAL with the path and reason in
 * err. */
int plug_open(const char *dir, const char *name, struct plug_mod **out,
              struct vigil_err *err);
void plug_close(struct plug_mod *m); /* accepts NULL */
const struct vigil_plugin *plug_desc(const struct plug_mod *m);
const char *plug_path(const struct plug_mod *m);

/* Print a plugin's options table (for `vigil help plugin NAME`). */
void plug_print_help(const struct vigil_plugin *p, FILE *out);

/* The directory plugins are loaded from when the config names none:
 * <exe dir>/plugins in a build tree, <exe dir>/../lib/vigil/plugins once
 * installed; $VIGIL_PLUGIN_DIR overrides both. Returns a static buffer. */
const char *plug_default_dir(void);

struct plug_env {
    uv_loop_t *loop;
    struct bus *bus;
    const char *plugin_dir;
    int64_t default_interval_ms;
};

/* Returns 0 or VIGIL_ENOMEM. env is copied. */
int plug_set_create(const struct plug_env *env, struct plug_set **out);

/* Create an instance for every [plugin ...] section of cfg. With
 * check_only the modules are loaded and the options validated, but no
 * init runs. Every problem goes to diag with file:line; failed instances
 * are skipped. Returns the number of instances that are ready. */
int plug_set_configure(struct plug_set *ps, struct cfg *cfg, int check_only,
                       struct cfg_diag *diag);

/* Start every instance (start callback, then its collection timer). An
 * instance whose start fails is reported and left stopped. */
void plug_set_start(struct plug_set *ps);

/* Stop timers and call each plugin's stop; the caller then runs the loop
 * until the handles are closed, and calls plug_set_destroy. */
void plug_set_stop(struct plug_set *ps);

/* Destroy instances (plugin destroy callbacks) and close the modules.
 * Accepts NULL. */
void plug_set_destroy(struct plug_set *ps);

/* Instances that are running and that failed. */
void plug_set_counts(const struct plug_set *ps, unsigned *running,
                     unsigned *failed);

/* Diagnostics and actions registered by plugins. */
typedef void (*plug_reply_cb)(void *arg, int status, const char *json);
/* A diagnostic's progress: done of total steps. */
typedef void (*plug_progress_cb)(void *arg, unsigned done, unsigned total);

/* Find a registered diagnostic by name; NULL when none. */
const struct vigil_diag *plug_find_diag(const struct plug_set *ps,
                                        const char *name);

/* Run a diagnostic; cb is called exactly once, possibly before this
 * returns. An "instance" member in args_json picks the instance of that
 * name; otherwise the first instance that registered it runs it. Returns
 * 0, or VIGIL_ENOENT when no such diagnostic exists (cb is then not
 * called). */
int plug_diag_run(struct plug_set *ps, const char *name, const char *args_json,
                  plug_reply_cb cb, void *arg);
/* The same, with progress reported to progress (may be NULL). */
int plug_diag_run_progress(struct plug_set *ps, const char *name,
                           const char *args_json, plug_reply_cb cb,
                           plug_progress_cb progress, void *arg);

/* Call fn for every registered diagnostic. */
void plug_foreach_diag(const struct plug_set *ps,
                       void (*fn)(void *arg, const char *instance,
                                  const struct vigil_diag *d),
                       void *arg);

#endif
