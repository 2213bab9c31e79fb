/*
 * runbook_plan - the investigation and remediation half of the `vigil`
 * module: vigil.step, vigil.action and the parsing of a vigil.runbook
 * table into a struct rb_runbook (runbook.h). Private to the runbook
 * module: runbook.c owns the files and calls these from its bindings.
 */
#ifndef VIGIL_RUNBOOK_PLAN_H
#define VIGIL_RUNBOOK_PLAN_H

#include <lua.h>

#include "runbook.h"

/* vigil.step "name" { args } and vigil.action "name" { ... }: both return
 * a marked table for vigil.runbook to read. */
int rb_plan_l_step(lua_State *L);
int rb_plan_l_action(lua_State *L);

/* Parse the runbook table at idx into out (zeroed by the caller). Raises
 * a Lua error that names the key on bad input; out then holds what was
 * parsed so far and must still be freed. */
void rb_plan_parse(lua_State *L, int idx, struct rb_runbook *out);

/* Free what rb_plan_parse allocated. Accepts a zeroed struct. */
void rb_plan_free(struct rb_runbook *rb);

#endif
