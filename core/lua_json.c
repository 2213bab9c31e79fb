/* lua_json - Lua values to and from JSON. */
#include "lua_json.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#define LJ_DEPTH_MAX 32

static json_t *to_json(lua_State *L, int idx, int depth, char *path,
                       size_t plen, struct vigil_err *err);

/* Is the table at idx a sequence 1..n with n > 0? */
static int is_array(lua_State *L, int idx)
{
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx), count = 0;

    if (n == 0) {
        return 0;
    }
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 ||
            lua_tointeger(L, -1) > n) {
            lua_pop(L, 1);
            return 0;
        }
        count++;
    }
    return count == n;
}

static json_t *table_to_json(lua_State *L, int idx, int depth, char *path,
                             size_t plen, struct vigil_err *err)
{
    size_t len = strlen(path);
    json_t *out;

    if (is_array(L, idx)) {
        out = json_array();
        for (lua_Integer i = 1; out && i <= (lua_Integer)lua_rawlen(L, idx);
             i++) {
            lua_rawgeti(L, idx, i);
            snprintf(path + len, plen - len, "[%lld]", (long long)i);
            json_t *v = to_json(L, lua_gettop(L), depth + 1, path, plen, err);
            lua_pop(L, 1);
            if (v == NULL || json_array_append_new(out, v) != 0) {
                json_decref(out);
                return NULL;
            }
        }
        path[len] = '\0';
        return out;
    }
    out = json_object();
    lua_pushnil(L);
    while (out != NULL && lua_next(L, idx) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            err_set(err, VIGIL_EINVAL, "%s: keys must be strings",
                    path[0] ? path : "value");
            lua_pop(L, 2);
            json_decref(out);
            return NULL;
        }
        const char *k = lua_tostring(L, -2);
        snprintf(path + len, plen - len, "%s%s", len ? "." : "", k);
        json_t *v = to_json(L, lua_gettop(L), depth + 1, path, plen, err);
        lua_pop(L, 1);
        if (v == NULL || json_object_set_new(out, k, v) != 0) {
            lua_pop(L, 1);
            json_decref(out);
            return NULL;
        }
    }
    path[len] = '\0';
    return out;
}

static json_t *to_json(lua_State *L, int idx, int depth, char *path,
                       size_t plen, struct vigil_err *err)
{
    if (depth > LJ_DEPTH_MAX) {
        err_set(err, VIGIL_EINVAL, "%s: nested too deep (or a cycle)",
                path[0] ? path : "value");
        return NULL;
    }
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return json_null();
    case LUA_TBOOLEAN:
        return json_boolean(lua_toboolean(L, idx));
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            return json_integer((json_int_t)lua_tointeger(L, idx));
        }
        if (!isfinite(lua_tonumber(L, idx))) {
            return json_null(); /* JSON has no NaN or infinity */
        }
        return json_real(lua_tonumber(L, idx));
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        return json_stringn_nocheck(s, n);
    }
    case LUA_TTABLE:
        return table_to_json(L, idx, depth, path, plen, err);
    default:
        err_set(err, VIGIL_EINVAL, "%s: a %s cannot be turned into JSON",
                path[0] ? path : "value", luaL_typename(L, idx));
        return NULL;
    }
}

json_t *lj_to_json(lua_State *L, int idx, struct vigil_err *err)
{
    char path[256] = "";

    return to_json(L, lua_absindex(L, idx), 0, path, sizeof(path), err);
}

void lj_push(lua_State *L, const json_t *v)
{
    const char *k;
    json_t *item;
    size_t i;

    luaL_checkstack(L, 4, "JSON too deep");
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_OBJECT:
        lua_createtable(L, 0, (int)json_object_size(v));
        json_object_foreach((json_t *)v, k, item)
        {
            lj_push(L, item);
            lua_setfield(L, -2, k);
        }
        break;
    case JSON_ARRAY:
        lua_createtable(L, (int)json_array_size(v), 0);
        json_array_foreach(v, i, item)
        {
            lj_push(L, item);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    case JSON_STRING:
        lua_pushlstring(L, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        lua_pushinteger(L, (lua_Integer)json_integer_value(v));
        break;
    case JSON_REAL:
        lua_pushnumber(L, json_real_value(v));
        break;
    case JSON_TRUE:
        lua_pushboolean(L, 1);
        break;
    case JSON_FALSE:
        lua_pushboolean(L, 0);
        break;
    default:
        lua_pushnil(L);
        break;
    }
}

void lj_push_text(lua_State *L, const char *text)
{
    json_t *v = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;

    if (v == NULL) {
        if (text != NULL) {
            lua_pushstring(L, text);
        } else {
            lua_pushnil(L);
        }
        return;
    }
    lj_push(L, v);
    json_decref(v);
}
