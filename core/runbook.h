/*
 * runbook - loads Lua runbooks and runs them against the bus.
 *
 * Each runbook file gets its own sandboxed Lua state (lua_host.h) and the
 * `vigil` module (docs/runbooks.md). Running a file declares thresholds,
 * conditions, handlers and schedules; once the whole file has run without
 * error they are committed: thresholds and conditions become compiled rules
 * in one rule set (rule.h), handlers are called on their rules'
 * transitions, schedules and conditions run on the engine's clock.
 *
 * Reload (rb_engine_load again, on SIGHUP) re-runs every file: a file with
 * an error is rejected whole and its previous version keeps running; a rule
 * whose definition did not change keeps its instances, states and hold
 * timers; a changed rule starts fresh; rules that disappeared are removed.
 *
 * Time comes from rb_engine_tick(now): the daemon calls it from a timer
 * with the wall clock (rb_engine_start), `vigil test` with a virtual
 * clock. A handler, predicate or schedule that fails `quarantine_after`
 * times in a row is quarantined (logged once, no longer called); the
 * others run on.
 *
 * The engine owns the rule set and the Lua states; it borrows the bus and
 * the loop.
 */
#ifndef VIGIL_RUNBOOK_H
#define VIGIL_RUNBOOK_H

#include <stdint.h>
#include <uv.h>

#include "bus.h"
#include "config.h"
#include "rule.h"

struct rb_engine;

struct rb_env {
    struct bus *bus;
    uv_loop_t *loop;           /* NULL: driven by rb_engine_tick only */
    const char *rules_dir;     /* every *.lua below it, sorted */
    const char *script_path;   /* ';'-separated dirs for require */
    size_t mem_max;            /* per runbook; 0 = default */
    int64_t budget_ns;         /* per call; 0 = default */
    unsigned quarantine_after; /* 0 = 5 */
};

/* Observe every transition (the test runner; later, incidents). */
typedef void (*rb_event_cb)(void *arg, const struct rule_event *ev,
                            const char *file);

int rb_engine_create(const struct rb_env *env, struct rb_engine **out);
void rb_engine_destroy(struct rb_engine *e); /* accepts NULL */

void rb_engine_observe(struct rb_engine *e, rb_event_cb cb, void *arg);

/* (Re)load every runbook under rules_dir. Problems go to diag with
 * file:line; a file with a problem keeps its previous version (or is not
 * loaded). Returns the number of files in service. */
int rb_engine_load(struct rb_engine *e, struct cfg_diag *diag);

/* The same for an explicit list of files (vigil test, vigil check). */
int rb_engine_load_files(struct rb_engine *e, const char *const *paths,
                         size_t n, struct cfg_diag *diag);

/* Run due schedules and conditions, then the rules' time-based parts.
 * now is wall-clock ns (or virtual). Does not fail. */
void rb_engine_tick(struct rb_engine *e, int64_t now);

/* Drive rb_engine_tick from a timer on env->loop; rb_engine_stop closes
 * it (the loop must then run for the close callback). */
int rb_engine_start(struct rb_engine *e);
void rb_engine_stop(struct rb_engine *e);

struct rule_set *rb_engine_rules(struct rb_engine *e);

/* ---------------------------------------------------------------- plans
 * A runbook (`vigil.runbook "name" { ... }`) says what to investigate and
 * what to do when a rule that names it (`runbook = "name"`) leaves ok. The
 * definitions belong to the file version that declared them: look them up
 * by name each time, and copy what must outlive a reload. */

enum rb_phase { RB_IMMEDIATE = 0, RB_SHORT_TERM, RB_DEEP, RB_PHASES };

struct rb_step {
    char name[64];   /* "snapshot", "exec", or a diagnostic "proc.top" */
    int phase;       /* enum rb_phase */
    char *args_json; /* the step's arguments as a JSON object */
    int64_t timeout_ns;
    int line;
};

struct rb_action {
    char name[64];       /* the runbook's name for it */
    char kind[64];       /* "exec" or a plugin action such as "pg.cancel" */
    char *args_json;     /* exec: {"argv":[...]}; plugin: its arguments */
    char mode[16];       /* "off", "dry-run", "on", "approve" */
    int on_state;        /* act from this state up: warning or critical */
    int64_t cooldown_ns; /* between two runs for the same incident key */
    int64_t timeout_ns;
    unsigned max_per_hour; /* 0 = no limit */
    unsigned breaker;      /* stop after this many runs that did not resolve
                              the incident; 0 = never */
    int when_ref;          /* Lua predicate, or LUA_NOREF (-2) */
    int line;
};

struct rb_runbook {
    char name[RULE_NAME_MAX];
    char title[128];
    struct rb_step *steps; /* in order: immediate, short_term, deep */
    size_t nsteps;
    struct rb_action *actions;
    size_t nactions;
    int recommend_ref; /* Lua function(incident) -> list; < 0: none */
    const char *path;  /* the file that declared it */
    int line;
    void *file; /* owner, for rb_action_when */
};

const struct rb_runbook *rb_engine_runbook(const struct rb_engine *e,
                                           const char *name);

/* Call fn for every runbook in service. */
void rb_engine_foreach_runbook(const struct rb_engine *e,
                               void (*fn)(void *arg,
                                          const struct rb_runbook *rb),
                               void *arg);

/* Call fn for every rule in service (thresholds and conditions), with the
 * file and line that declared it; r is borrowed until the next load. */
void rb_engine_foreach_rule(const struct rb_engine *e,
                            void (*fn)(void *arg, const struct rule *r,
                                       const char *path, int line),
                            void *arg);

/* The runbook and title a rule's definition names (NULL when none). */
const char *rb_rule_runbook(const struct rule_def *def);
const char *rb_rule_title(const struct rule_def *def);

/* Evaluate an action's `when` predicate with the incident as a Lua table
 * built from incident_json. Returns 1 (act), 0 (do not), or a negative
 * code when the predicate failed (logged with file:line). A predicate
 * that returns a table acts with those arguments over the action's own:
 * *args_out gets the merged JSON (caller frees); NULL otherwise. */
int rb_action_when(struct rb_engine *e, const struct rb_runbook *rb,
                   const struct rb_action *a, const char *incident_json,
                   char **args_out);

/* Run a runbook's `recommend` function with the incident (its evidence
 * gathered): *out gets a JSON array of the recommendations (caller
 * frees), NULL when it has none or returned nothing. Returns 0 or a
 * negative code when the function failed (logged with file:line). */
int rb_runbook_recommend(const struct rb_runbook *rb, const char *incident_json,
                         char **out);

/* Counters for status: rules, quarantined items. */
void rb_engine_counts(const struct rb_engine *e, unsigned *files,
                      unsigned *rules, unsigned *quarantined);

#endif
