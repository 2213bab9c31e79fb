/*
 * incident - what happens when a rule leaves ok.
 *
 * A rule instance (rule + series) entering warning or critical opens an
 * incident, or escalates the one already open for it (one open incident
 * per instance); returning to ok resolves it. Every transition while it is
 * open is recorded. If the rule names a runbook (docs/runbooks.md), its
 * investigation steps run in order (immediate, short-term, deep), each
 * asynchronously with a time budget, and what they return is the
 * incident's evidence; a step that fails or times out is recorded as such
 * and the next one runs. Then the runbook's remediation actions are
 * considered in order, under their guardrails:
 *
 *   mode       off | dry-run | on | approve, capped by [actions] mode
 *              (dry-run records exactly what would have run)
 *   on         the state from which the action applies (default critical)
 *   cooldown   time between two runs for the same rule instance
 *   max_per_hour  runs of the action across all instances
 *   breaker    no more runs once this many did not resolve the incident
 *   when       a Lua predicate over the incident and its evidence
 *
 * Every decision, including each skip and why, is written to the store as
 * an action row; a run's intent is committed before it starts and its
 * result after. Escalation to a worse state considers the actions again.
 *
 * Steps: "snapshot" (statistics of metric windows), "exec" (a command's
 * output), or any diagnostic a plugin registered ("proc.top"). Actions:
 * exec (argv, clean environment with VIGIL_* variables, timeout, output
 * cap) or a plugin action ("pg.cancel").
 *
 * The manager borrows the loop, bus, runbook engine, plugin set and store;
 * destroy it after the plugin set, so no diagnostic can reply to it later.
 */
#ifndef VIGIL_INCIDENT_H
#define VIGIL_INCIDENT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "bus.h"
#include "plug.h"
#include "rule.h"
#include "runbook.h"
#include "store.h"

struct inc_mgr;

enum inc_mode { INC_MODE_OFF = 0, INC_MODE_DRY_RUN, INC_MODE_ON };

struct inc_env {
    uv_loop_t *loop;
    struct bus *bus;
    struct rb_engine *rules;
    struct plug_set *plugs; /* may be NULL: no plugin steps or actions */
    struct store *store;    /* may be NULL: incidents in the log only */
    int mode;               /* enum inc_mode: the cap on every action */
    size_t output_max;      /* captured output per step or action; 0 = 64K */
};

int inc_create(const struct inc_env *env, struct inc_mgr **out);

/* Kill running commands and stop timers; the loop must then run for the
 * close callbacks. */
void inc_stop(struct inc_mgr *m);
void inc_destroy(struct inc_mgr *m); /* accepts NULL */

/* The runbook engine's observer (rb_engine_observe(e, inc_on_event, m)). */
void inc_on_event(void *arg, const struct rule_event *ev, const char *file);

/* What happened, for tests and status: "opened", "escalated", "resolved",
 * "step", "action"; detail is the step or action name and its outcome. */
typedef void (*inc_notify_cb)(void *arg, const char *what, int64_t id,
                              const char *detail);
void inc_observe(struct inc_mgr *m, inc_notify_cb cb, void *arg);

unsigned inc_open_count(const struct inc_mgr *m);

/* A person acknowledged open incident id (who: for the log and the
 * feed); stored with the incident. Returns 0, or VIGIL_ENOENT when no
 * open incident has that id. */
int inc_acknowledge(struct inc_mgr *m, int64_t id, const char *who);

/* `vigil investigate`: run every step of the runbook now, as an incident
 * of the rule "investigate" with no actions, resolved when the last step
 * is done; then cb(arg, id). Returns 0, or VIGIL_ENOENT when no runbook
 * has that name. */
typedef void (*inc_done_cb)(void *arg, int64_t id);
int inc_investigate(struct inc_mgr *m, const char *runbook, inc_done_cb cb,
                    void *arg);

/* Parse "off|dry-run|on"; returns 0 or VIGIL_EINVAL. */
int inc_mode_parse(const char *text, int *mode);

#endif
