/* runbook_plan - vigil.runbook, vigil.step and vigil.action. */
#include "runbook_plan.h"

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "config.h"
#include "lua_json.h"

#define PLAN_MARK_STEP "__vigil_step"
#define PLAN_MARK_ACTION "__vigil_action"
#define PLAN_STEPS_MAX 64
#define PLAN_ACTIONS_MAX 32
#define PLAN_DEFAULT_STEP_TIMEOUT_NS (30 * 1000000000LL)
#define PLAN_DEFAULT_ACTION_TIMEOUT_NS (60 * 1000000000LL)

#define PLAN_LINE "__vigil_line"

/* The curried second call: stores the name under the mark key, and the
 * line it was written on, for messages. */
static int plan_mark(lua_State *L, const char *mark)
{
    lua_Debug ar;

    luaL_checktype(L, 1, LUA_TTABLE);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_setfield(L, 1, mark);
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "l", &ar)) {
        lua_pushinteger(L, ar.currentline);
        lua_setfield(L, 1, PLAN_LINE);
    }
    lua_settop(L, 1);
    return 1;
}

/* The line a step or action was written on (0 if unknown). */
static int plan_line(lua_State *L, int idx)
{
    int line = lua_getfield(L, idx, PLAN_LINE) == LUA_TNUMBER
                   ? (int)lua_tointeger(L, -1)
                   : 0;

    lua_pop(L, 1);
    return line;
}

static int l_plan_step_body(lua_State *L)
{
    return plan_mark(L, PLAN_MARK_STEP);
}

static int l_plan_action_body(lua_State *L)
{
    return plan_mark(L, PLAN_MARK_ACTION);
}

int rb_plan_l_step(lua_State *L)
{
    size_t n;

    luaL_checklstring(L, 1, &n);
    if (n == 0 || n >= 64) {
        return luaL_error(L, "a step name has 1 to 63 characters");
    }
    lua_settop(L, 1);
    lua_pushcclosure(L, l_plan_step_body, 1);
    return 1;
}

int rb_plan_l_action(lua_State *L)
{
    size_t n;

    luaL_checklstring(L, 1, &n);
    if (n == 0 || n >= 64) {
        return luaL_error(L, "an action name has 1 to 63 characters");
    }
    lua_settop(L, 1);
    lua_pushcclosure(L, l_plan_action_body, 1);
    return 1;
}

/* A duration field of the table at idx, in ns; def when absent. */
static int64_t plan_duration(lua_State *L, int idx, const char *key,
                             int64_t def)
{
    int64_t ms, out = def;
    int t = lua_getfield(L, idx, key);

    if (t == LUA_TNUMBER) {
        out = (int64_t)(lua_tonumber(L, -1) * 1e9);
    } else if (t == LUA_TSTRING) {
        if (cfg_parse_duration_ms(lua_tostring(L, -1), &ms) != 0) {
            luaL_error(L, "%s: expected a duration such as \"30s\"", key);
        }
        out = ms * 1000000;
    } else if (t != LUA_TNIL) {
        luaL_error(L, "%s: expected a duration such as \"30s\"", key);
    }
    lua_pop(L, 1);
    if (out < 0) {
        luaL_error(L, "%s: must not be negative", key);
    }
    return out;
}

/* The table at idx minus the given keys, as JSON text (malloc'd). */
static char *plan_args_json(lua_State *L, int idx, const char *const *skip)
{
    struct vigil_err err = {0};
    json_t *obj;
    char *text;

    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        int keep = lua_type(L, -2) == LUA_TSTRING;
        for (const char *const *k = skip; keep && *k; k++) {
            keep = strcmp(lua_tostring(L, -2), *k) != 0;
        }
        if (keep) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_settable(L, -4);
        } else {
            lua_pop(L, 1);
        }
    }
    obj = lj_to_json(L, -1, &err);
    lua_pop(L, 1);
    if (obj == NULL) {
        luaL_error(L, "%s", err.msg);
    }
    text = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(obj);
    if (text == NULL) {
        luaL_error(L, "out of memory");
    }
    return text;
}

static const char *const step_reserved[] = {PLAN_MARK_STEP, PLAN_LINE,
                                            "timeout", NULL};

static void plan_step(lua_State *L, int idx, int phase, struct rb_step *st)
{
    if (lua_getfield(L, idx, PLAN_MARK_STEP) != LUA_TSTRING) {
        luaL_error(L, "expected vigil.step \"name\" { ... } in the list");
    }
    snprintf(st->name, sizeof(st->name), "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    st->phase = phase;
    st->timeout_ns =
        plan_duration(L, idx, "timeout", PLAN_DEFAULT_STEP_TIMEOUT_NS);
    st->line = plan_line(L, idx);
    st->args_json = plan_args_json(L, idx, step_reserved);
    if (strcmp(st->name, "exec") == 0 &&
        strstr(st->args_json, "\"argv\":[") == NULL) {
        luaL_error(L, "step exec needs argv = {\"/path/to/program\", ...}");
    }
}

static const char *const action_keys[] = {
    PLAN_MARK_ACTION, PLAN_LINE, "exec", "run",      "args",
    "webhook",        "mode",    "on",   "cooldown", "timeout",
    "max_per_hour",   "breaker", "when", NULL};

static void plan_action_kind(lua_State *L, int idx, struct rb_action *a)
{
    static const char *const none[] = {NULL};
    int t;

    if ((t = lua_getfield(L, idx, "exec")) == LUA_TTABLE) {
        snprintf(a->kind, sizeof(a->kind), "exec");
        lua_newtable(L);
        lua_pushvalue(L, -2);
        lua_setfield(L, -2, "argv");
        a->args_json = plan_args_json(L, lua_gettop(L), none);
        lua_pop(L, 2);
        if (strstr(a->args_json, "\"argv\":[\"") == NULL) {
            luaL_error(L,
                       "action '%s': exec is a list: {\"/path\", "
                       "\"arg\", ...}",
                       a->name);
        }
        return;
    }
    lua_pop(L, 1);
    if ((t = lua_getfield(L, idx, "webhook")) != LUA_TNIL) {
        /* webhook = "url" or { url = ..., headers = {...}, retries = n } */
        snprintf(a->kind, sizeof(a->kind), "webhook");
        if (t == LUA_TSTRING) {
            lua_newtable(L);
            lua_pushvalue(L, -2);
            lua_setfield(L, -2, "url");
        } else if (t == LUA_TTABLE) {
            lua_pushvalue(L, -1);
        } else {
            luaL_error(L, "action '%s': webhook is a URL or { url = ... }",
                       a->name);
        }
        a->args_json = plan_args_json(L, lua_gettop(L), none);
        lua_pop(L, 2);
        if (strstr(a->args_json, "\"url\":\"http") == NULL) {
            luaL_error(L, "action '%s': webhook needs an http(s) url", a->name);
        }
        return;
    }
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "run") != LUA_TSTRING) {
        luaL_error(L,
                   "action '%s' needs exec = {argv...}, webhook = "
                   "\"url\" or run = \"plugin.action\"",
                   a->name);
    }
    snprintf(a->kind, sizeof(a->kind), "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "args") == LUA_TTABLE) {
        a->args_json = plan_args_json(L, lua_gettop(L), none);
    } else if (!lua_isnil(L, -1)) {
        luaL_error(L, "action '%s': args must be a table", a->name);
    } else {
        a->args_json = strdup("{}");
    }
    lua_pop(L, 1);
}

static void plan_action(lua_State *L, int idx, struct rb_action *a)
{
    if (lua_getfield(L, idx, PLAN_MARK_ACTION) != LUA_TSTRING) {
        luaL_error(L, "expected vigil.action \"name\" { ... } in remediate");
    }
    snprintf(a->name, sizeof(a->name), "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    a->when_ref = LUA_NOREF;
    a->line = plan_line(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        const char *k = lua_tostring(L, -2);
        int ok = 0;
        for (const char *const *p = action_keys; k && *p; p++) {
            ok |= strcmp(*p, k) == 0;
        }
        lua_pop(L, 1);
        if (!ok) {
            luaL_error(L, "action '%s': unknown key '%s'", a->name,
                       k ? k : "?");
        }
    }
    plan_action_kind(L, idx, a);
    snprintf(a->mode, sizeof(a->mode), "dry-run");
    if (lua_getfield(L, idx, "mode") != LUA_TNIL) {
        const char *m = luaL_checkstring(L, -1);
        if (strcmp(m, "off") && strcmp(m, "dry-run") && strcmp(m, "on") &&
            strcmp(m, "approve")) {
            luaL_error(L,
                       "action '%s': mode is \"off\", \"dry-run\", "
                       "\"on\" or \"approve\"",
                       a->name);
        }
        snprintf(a->mode, sizeof(a->mode), "%s", m);
    }
    lua_pop(L, 1);
    a->on_state = RULE_CRITICAL;
    if (lua_getfield(L, idx, "on") != LUA_TNIL) {
        const char *o = luaL_checkstring(L, -1);
        if (strcmp(o, "warning") == 0) {
            a->on_state = RULE_WARNING;
        } else if (strcmp(o, "critical") != 0) {
            luaL_error(L, "action '%s': on is \"warning\" or \"critical\"",
                       a->name);
        }
    }
    lua_pop(L, 1);
    a->cooldown_ns = plan_duration(L, idx, "cooldown", 0);
    a->timeout_ns =
        plan_duration(L, idx, "timeout", PLAN_DEFAULT_ACTION_TIMEOUT_NS);
    if (lua_getfield(L, idx, "max_per_hour") != LUA_TNIL) {
        a->max_per_hour = (unsigned)luaL_checkinteger(L, -1);
    }
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "breaker") != LUA_TNIL) {
        a->breaker = (unsigned)luaL_checkinteger(L, -1);
    }
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "when") == LUA_TFUNCTION) {
        a->when_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    } else {
        if (!lua_isnil(L, -1)) {
            luaL_error(L, "action '%s': when must be a function", a->name);
        }
        lua_pop(L, 1);
    }
}

static const char *const phase_keys[RB_PHASES] = {"immediate", "short_term",
                                                  "deep"};

void rb_plan_parse(lua_State *L, int idx, struct rb_runbook *out)
{
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        const char *k = lua_tostring(L, -2);
        int ok = k && (!strcmp(k, "title") || !strcmp(k, "remediate") ||
                       !strcmp(k, "recommend"));
        for (int p = 0; k && p < RB_PHASES; p++) {
            ok |= strcmp(k, phase_keys[p]) == 0;
        }
        lua_pop(L, 1);
        if (!ok) {
            luaL_error(L,
                       "runbook '%s': unknown key '%s'; expected title, "
                       "immediate, short_term, deep, remediate or "
                       "recommend",
                       out->name, k ? k : "?");
        }
    }
    if (lua_getfield(L, idx, "title") == LUA_TSTRING) {
        snprintf(out->title, sizeof(out->title), "%s", lua_tostring(L, -1));
    }
    lua_pop(L, 1);
    out->recommend_ref = LUA_NOREF;
    if (lua_getfield(L, idx, "recommend") == LUA_TFUNCTION) {
        out->recommend_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    } else {
        if (!lua_isnil(L, -1)) {
            luaL_error(L, "runbook '%s': recommend must be a function",
                       out->name);
        }
        lua_pop(L, 1);
    }
    out->steps = calloc(PLAN_STEPS_MAX, sizeof(*out->steps));
    out->actions = calloc(PLAN_ACTIONS_MAX, sizeof(*out->actions));
    if (out->steps == NULL || out->actions == NULL) {
        luaL_error(L, "out of memory");
    }
    for (int p = 0; p < RB_PHASES; p++) {
        if (lua_getfield(L, idx, phase_keys[p]) == LUA_TTABLE) {
            int list = lua_gettop(L);
            for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, list);
                 i++) {
                if (out->nsteps == PLAN_STEPS_MAX) {
                    luaL_error(L, "runbook '%s': at most %d steps", out->name,
                               PLAN_STEPS_MAX);
                }
                lua_rawgeti(L, list, i);
                luaL_checktype(L, -1, LUA_TTABLE);
                plan_step(L, lua_gettop(L), p, &out->steps[out->nsteps++]);
                lua_pop(L, 1);
            }
        } else if (!lua_isnil(L, -1)) {
            luaL_error(L, "runbook '%s': %s is a list of vigil.step", out->name,
                       phase_keys[p]);
        }
        lua_pop(L, 1);
    }
    if (lua_getfield(L, idx, "remediate") == LUA_TTABLE) {
        int list = lua_gettop(L);
        for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, list); i++) {
            if (out->nactions == PLAN_ACTIONS_MAX) {
                luaL_error(L, "runbook '%s': at most %d actions", out->name,
                           PLAN_ACTIONS_MAX);
            }
            lua_rawgeti(L, list, i);
            luaL_checktype(L, -1, LUA_TTABLE);
            /* Counted before parsing so that a failed parse is freed. */
            plan_action(L, lua_gettop(L), &out->actions[out->nactions++]);
            lua_pop(L, 1);
        }
    } else if (!lua_isnil(L, -1)) {
        luaL_error(L, "runbook '%s': remediate is a list of vigil.action",
                   out->name);
    }
    lua_pop(L, 1);
}

void rb_plan_free(struct rb_runbook *rb)
{
    for (size_t i = 0; rb->steps != NULL && i < rb->nsteps; i++) {
        free(rb->steps[i].args_json);
    }
    for (size_t i = 0; rb->actions != NULL && i < rb->nactions; i++) {
        free(rb->actions[i].args_json);
    }
    free(rb->steps);
    free(rb->actions);
    rb->steps = NULL;
    rb->actions = NULL;
    rb->nsteps = rb->nactions = 0;
}
