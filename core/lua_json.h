/*
 * lua_json - Lua values to and from JSON (jansson), for diagnostic
 * arguments, evidence and incident views handed to runbooks.
 *
 * Tables with keys 1..n only become arrays (an empty table becomes {}),
 * other tables objects with string keys; numbers that are integers stay
 * integers. Functions, userdata and cycles are refused with a message that
 * names the key path. Depth is bounded.
 */
#ifndef VIGIL_LUA_JSON_H
#define VIGIL_LUA_JSON_H

#include <jansson.h>
#include <lua.h>

#include "err.h"

/* Convert the value at idx; returns a new reference or NULL with err. */
json_t *lj_to_json(lua_State *L, int idx, struct vigil_err *err);

/* Push the Lua form of v (NULL pushes nil). Does not fail except by a Lua
 * memory error. */
void lj_push(lua_State *L, const json_t *v);

/* Push the Lua form of JSON text; text that is not JSON is pushed as a
 * string. */
void lj_push_text(lua_State *L, const char *text);

#endif
