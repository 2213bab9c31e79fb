/*
 * daemon - `vigil run` and `vigil check`: reads the config, owns the libuv
 * loop, the bus and the plugin set, and runs them until a signal.
 *
 * It also measures the loop itself, as the guide's event-loop blocking
 * detector does for Python: a timer every `loop_lag_interval` notes how
 * late it fires, and the worst delay of each `interval` is published as
 * vigil.loop.lag_ms, with vigil's own CPU, memory and bus counters.
 *
 * Signals: SIGINT and SIGTERM stop cleanly (plugins stopped, handles
 * closed, output flushed, exit 0); SIGHUP calls the reload hooks that
 * later modules (the runbook engine) register.
 */
#ifndef VIGIL_DAEMON_H
#define VIGIL_DAEMON_H

#include <stddef.h>
#include <stdint.h>

struct daemon;

struct daemon_opts {
    const char *config_path;  /* NULL: use config_text */
    const char *config_name;  /* name of config_text in messages */
    const char *config_text;  /* the embedded default */
    const char *plugin_dir;   /* overrides [vigil] plugin_dir; may be NULL */
    const char *const *print; /* --print selectors */
    size_t nprint;
    int64_t run_for_ms;      /* stop after this long; 0 = until a signal */
    const char *probe;       /* vigil probe: the diagnostic to run once */
    const char *probe_args;  /* its JSON arguments */
    int probe_human;         /* summarise a measurement for people instead
                                of printing the reply's JSON */
    int64_t probe_delay_ms;  /* run it after the plugins collected once */
    const char *investigate; /* vigil investigate: the runbook to run */
    int64_t *investigated;   /* out: its incident's id (0 if none) */
};

/* Run until stopped. Returns the process exit code: 0 after a clean stop,
 * 2 for configuration errors (all listed on stderr), 1 otherwise. */
int daemon_run(const struct daemon_opts *o);

/* `vigil probe NAME`: start the configured plugins (no runbooks, no
 * store), run one diagnostic, print its JSON reply and stop. Returns 0 when
 * it succeeded, 1 when it failed or does not exist, 2 for config errors. */
int daemon_probe(const struct daemon_opts *o);

/* Validate the config and every plugin section without running anything.
 * Prints each problem; returns 0 when there are none, 2 otherwise. */
int daemon_check(const struct daemon_opts *o);

/* The store file the config names, for the tools that read it. Returns
 * 0, or 2 after printing the config's problems. */
int daemon_store_path(const struct daemon_opts *o, char *buf, size_t size);

/* Register a function to call on SIGHUP. Returns 0 or VIGIL_ELIMIT. */
typedef void (*daemon_reload_cb)(void *arg);
int daemon_on_reload(struct daemon *d, daemon_reload_cb cb, void *arg);

#endif
