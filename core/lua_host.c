/*
 * lua_host - sandboxed Lua 5.4 states for runbooks.
 *
 * What a runbook sees (its _ENV) is built from our own list, in the spirit
 * of lua/lua linit.c, never from luaL_openlibs:
 *
 *   base     assert error getmetatable ipairs next pairs pcall rawequal
 *            rawget rawlen rawset select tonumber tostring type _VERSION,
 *            plus our own load (text only, caller's _ENV by default),
 *            setmetatable (refuses __gc), xpcall (handler skipped once
 *            the budget is spent), collectgarbage ("count" only), print
 *            (to the log), require (script path)
 *   libs     table, string (without dump), math, utf8
 *   os       time, clock, date, getenv
 *   debug    traceback only
 *
 * Left out: dofile, loadfile, warn, io, package, coroutine, the rest of os
 * and debug. Those functions are also removed from the state itself (the
 * real _G, _LOADED.os, the string metatable's table), so a binding that
 * leaks an internal table leaks nothing dangerous.
 *
 * Each chunk's _ENV is a fresh table holding shallow copies of the
 * template's library tables, so `string.upper = nil` in one runbook only
 * changes that runbook's copy. Its metatable (protected by __metatable)
 * turns assignments to new globals into errors. The shared string
 * metatable is locked too: getmetatable("") is false.
 *
 * Budgets: the allocator counts bytes and refuses growth beyond mem_max;
 * a count hook installed once on the main thread checks the deadline of
 * the outermost lh_pcall every LH_HOOK_COUNT instructions and, once it has
 * passed, re-arms itself to fire on every instruction and raise, so a
 * `pcall` in the script cannot swallow it (redis luaMaskCountHook).
 *
 * Known limit: the hook only runs between Lua instructions, so one call to
 * a C function runs to completion. Pattern matching with heavy
 * backtracking (`("a"):rep(300):find(".-.-.-b")`) or sorting a huge table
 * is not interrupted; strings and tables are bounded by the memory cap.
 */
#include "lua_host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>
#include <lualib.h>

#include "clock.h"
#include "log.h"

#define LH_MIB ((size_t)1 << 20)
#define LH_DEFAULT_MEM (64 * LH_MIB)
#define LH_DEFAULT_BUDGET_NS (50 * 1000000ll)
#define LH_HOOK_COUNT 1000       /* instructions between deadline checks */
#define LH_MEM_SLACK (64 * 1024) /* extra bytes for the message handler */
#define LH_TB_FRAMES 6           /* traceback lines kept in vigil_err */
#define LH_MODNAME_MAX 128

struct lh_state {
    lua_State *L;
    size_t mem_used;
    size_t mem_max;
    int64_t budget_ns;
    int64_t deadline;   /* CLOCK_MONOTONIC ns; 0 = no call running */
    int depth;          /* nesting of lh_pcall */
    int expired;        /* the budget is spent: the hook raises on sight */
    int mem_hit;        /* the allocator refused a request in this call */
    char mem_where[96]; /* "chunk:line: " of the last refusal, or "" */
    int in_handler;     /* the message handler runs: allow LH_MEM_SLACK */
    char *path_buf;     /* script_path with ';' replaced by NULs */
    char **dirs;        /* pointers into path_buf */
    int ndirs;
    lh_print_cb print_cb;
    void *print_arg;
    /* Registry references. */
    int template_ref; /* name -> value copied into every _ENV */
    int env_size;     /* entries of an _ENV: the template's, _G, load */
    int envmt_ref;    /* metatable of every _ENV */
    int load_ref;     /* the base library's load */
    int loaded_ref;   /* module name -> value (package.loaded) */
    int preload_ref;  /* module name -> lua_CFunction */
    int guardmt_ref;  /* metatable of require's to-be-closed guard */
};

/* The value loaded[name] holds while the module's chunk runs. */
static const char lh_loading_mark = 0;

/* Base library functions copied as they are. */
static const char *const lh_base_names[] = {
    "assert",   "error",    "getmetatable", "ipairs",   "next",   "pairs",
    "pcall",    "rawequal", "rawget",       "rawlen",   "rawset", "select",
    "tonumber", "tostring", "type",         "_VERSION", NULL,
};

/* Removed from the state's real _G (never reachable, but a binding could
 * leak it). load stays reachable through load_ref only. */
static const char *const lh_base_unsafe[] = {
    "dofile", "loadfile", "load", "collectgarbage", "print", "warn", NULL,
};

static const char *const lh_os_names[] = {
    "time", "clock", "date", "getenv", NULL,
};

/* ---------------------------------------------------------------- memory */

/* Note where the running script is ("chunk:line: ") when the allocator
 * refuses a request: Lua raises LUA_ERRMEM without calling the message
 * handler, so this is the only moment the location is known. Reading the
 * call stack from the allocator is safe: every CallInfo's saved pc points
 * into its own function's code, Lua saves the pc before nearly every
 * allocation (for its own error messages; where it does not, the line is
 * a little early), and lua_getinfo with "Sl" does not allocate. */
static void note_mem_where(struct lh_state *s)
{
    lua_Debug ar;

    s->mem_where[0] = '\0';
    for (int level = 0; lua_getstack(s->L, level, &ar); level++) {
        lua_getinfo(s->L, "Sl", &ar);
        if (ar.currentline > 0) {
            snprintf(s->mem_where, sizeof(s->mem_where),
                     "%s:%d: ", ar.short_src, ar.currentline);
            return;
        }
    }
}

/* The lua_Alloc of every state. When ptr is NULL, osize is a type tag,
 * not a size. Frees always succeed; growth beyond the cap (plus a little
 * slack while the message handler formats an error) returns NULL, which
 * Lua turns into a memory error after an emergency collection. */
static void *lh_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct lh_state *s = ud;
    size_t limit = s->mem_max + (s->in_handler ? LH_MEM_SLACK : 0);
    void *q;

    if (ptr == NULL) {
        osize = 0;
    }
    if (nsize == 0) {
        free(ptr);
        s->mem_used -= osize;
        return NULL;
    }
    if (nsize > osize &&
        (s->mem_used >= limit || nsize - osize > limit - s->mem_used)) {
        if (s->deadline != 0 && !s->in_handler) {
            note_mem_where(s);
        }
        s->mem_hit = 1;
        return NULL;
    }
    q = realloc(ptr, nsize);
    if (q == NULL) {
        return NULL;
    }
    s->mem_used = s->mem_used - osize + nsize;
    return q;
}

static int lh_panic(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);

    /* Only reachable through a bug: everything that can raise runs under
     * lua_pcall. */
    log_error("lua", "unprotected error in the Lua host: %s",
              msg != NULL ? msg : "(not a string)");
    abort();
    return 0;
}

/* ---------------------------------------------------------------- errors */

/* The cap as people read it: "8 MiB", "0.5 MiB". */
static void fmt_mib(char *buf, size_t size, size_t bytes)
{
    if (bytes % LH_MIB == 0) {
        snprintf(buf, size, "%zu MiB", bytes / LH_MIB);
    } else {
        snprintf(buf, size, "%.2f MiB", (double)bytes / (double)LH_MIB);
    }
}

/* Push "chunk:line: " of the innermost Lua function at or above level,
 * or "" when there is none. */
static void push_where(lua_State *L, int level)
{
    lua_Debug ar;

    for (; lua_getstack(L, level, &ar); level++) {
        lua_getinfo(L, "Sl", &ar);
        if (ar.currentline > 0) {
            lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
            return;
        }
    }
    lua_pushliteral(L, "");
}

/* Message handler of lh_pcall (lua/lua lua.c msghandler): make the error
 * a string with a location and append the traceback. It does not call
 * __tostring: no script code runs while reporting. Memory errors never get
 * here (Lua 5.4.4 raises even lua_error("not enough memory") as
 * LUA_ERRMEM, without the handler). */
static int l_lh_msgh(lua_State *L)
{
    struct lh_state *s = lh_from_lua(L);
    const char *msg = lua_tostring(L, 1);

    s->in_handler++;
    if (msg == NULL) {
        push_where(L, 1);
        msg = lua_pushfstring(L, "%s(error object is a %s value)",
                              lua_tostring(L, -1), luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    s->in_handler--;
    return 1;
}

/* Copy a Lua error into err, keeping the message and the first
 * LH_TB_FRAMES lines of its traceback. Returns code. */
static int set_lua_error(struct vigil_err *err, int code, const char *msg)
{
    const char *tb = strstr(msg, "\nstack traceback:");
    const char *q;

    if (tb == NULL) {
        return err_set(err, code, "%s", msg);
    }
    q = tb + 1;
    for (int i = 0; i <= LH_TB_FRAMES; i++) {
        const char *nl = strchr(q, '\n');

        if (nl == NULL) {
            return err_set(err, code, "%s", msg);
        }
        q = nl + 1;
    }
    return err_set(err, code, "%.*s\n\t...", (int)(q - 1 - msg), msg);
}

/* ---------------------------------------------------------------- budget */

static void fmt_budget(char *buf, size_t size, int64_t ns)
{
    if (ns % 1000000 == 0) {
        snprintf(buf, size, "%lld ms", (long long)(ns / 1000000));
    } else {
        snprintf(buf, size, "%.3f ms", (double)ns / 1e6);
    }
}

/* The count hook, installed once on the main thread (threads inherit
 * it). Outside lh_pcall it does nothing. Once the deadline has passed it
 * fires on every instruction and raises each time, until the outermost
 * lh_pcall returns and puts the normal count back. */
static void lh_hook(lua_State *L, lua_Debug *ar)
{
    struct lh_state *s = lh_from_lua(L);
    char budget[32];

    if (s->deadline == 0) {
        return;
    }
    if (!s->expired) {
        if (clock_mono_ns() < s->deadline) {
            return;
        }
        s->expired = 1;
        lua_sethook(L, lh_hook, LUA_MASKCOUNT, 1);
    }
    /* Level 0 is the running function itself: luaL_error would name its
     * caller. */
    lua_getinfo(L, "Sl", ar);
    fmt_budget(budget, sizeof(budget), s->budget_ns);
    if (ar->currentline > 0) {
        lua_pushfstring(L, "%s:%d: time budget of %s exceeded", ar->short_src,
                        ar->currentline, budget);
    } else {
        lua_pushfstring(L, "time budget of %s exceeded", budget);
    }
    lua_error(L);
}

/* ---------------------------------------------------------------- sandbox */

/* Replace the table on top of the stack by a shallow copy of it. */
static void copy_table(lua_State *L)
{
    int src = lua_gettop(L);
    int n = 0;

    lua_pushnil(L);
    while (lua_next(L, src) != 0) {
        lua_pop(L, 1);
        n++;
    }
    lua_createtable(L, 0, n);
    lua_pushnil(L);
    while (lua_next(L, src) != 0) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, src + 1);
    }
    lua_remove(L, src);
}

static int l_lh_load(lua_State *L);

/* Push a fresh _ENV: copies of the template's values (library tables
 * copied one level deep), _G pointing at itself, a load bound to it, and
 * the shared protected metatable. Raises on memory errors: call it from
 * Lua or under lua_pcall. */
static void push_env(struct lh_state *s, lua_State *L)
{
    int env;

    lua_createtable(L, 0, s->env_size);
    env = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->template_ref);
    lua_pushnil(L);
    while (lua_next(L, env + 1) != 0) {
        if (lua_type(L, -1) == LUA_TTABLE) {
            copy_table(L);
        }
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, env);
    }
    lua_pop(L, 1);
    lua_pushvalue(L, env);
    lua_setfield(L, env, "_G");
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->load_ref);
    lua_pushvalue(L, env);
    lua_pushcclosure(L, l_lh_load, 2);
    lua_setfield(L, env, "load");
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->envmt_ref);
    lua_setmetatable(L, env);
}

/* __newindex of every _ENV: new globals are errors. */
static int l_lh_env_newindex(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TSTRING) {
        return luaL_error(L,
                          "assignment to undeclared global '%s' "
                          "(declare it with 'local')",
                          lua_tostring(L, 2));
    }
    return luaL_error(L, "assignment to undeclared global (a %s key)",
                      luaL_typename(L, 2));
}

/* load(chunk [, chunkname [, mode [, env]]]): the base load with mode
 * forced to "t" and env defaulting to the _ENV this load belongs to
 * (upvalue 2). An explicit env, even nil, is kept as in plain Lua. This
 * is a binding, already inside Lua: errors propagate to the caller. */
static int l_lh_load(lua_State *L)
{
    int has_env = !lua_isnone(L, 4);

    lua_settop(L, 4);
    lua_pushliteral(L, "t");
    lua_replace(L, 3);
    if (!has_env) {
        lua_pushvalue(L, lua_upvalueindex(2));
        lua_replace(L, 4);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, 4, LUA_MULTRET);
    return lua_gettop(L);
}

/* setmetatable(t, mt) refusing metatables with __gc: finalizers run with
 * hooks disabled, so a looping __gc would escape the time budget and hang
 * lua_close. Lua 5.4 only marks a table for finalization when __gc is
 * present as the metatable is set, so checking here is enough. */
static int l_lh_setmetatable(lua_State *L)
{
    int t = lua_type(L, 2);

    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
    if (t == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL) {
            return luaL_error(L, "__gc metamethods are not allowed in "
                                 "runbooks");
        }
        lua_pop(L, 1);
    }
    if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL) {
        return luaL_error(L, "cannot change a protected metatable");
    }
    lua_settop(L, 2);
    lua_setmetatable(L, 1);
    return 1;
}

/* The message handler our xpcall installs around the script's (upvalue
 * 1). When the error comes from the budget hook, Lua runs the handler with
 * hooks disabled, so a looping handler would never be stopped: once the
 * budget is spent the script's handler is skipped and the error passes
 * through unchanged. */
static int l_lh_xpcall_msgh(lua_State *L)
{
    if (lh_from_lua(L)->expired) {
        return 1;
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* xpcall(f, msgh, ...) as in lbaselib.c, with msgh wrapped as above. */
static int l_lh_xpcall(lua_State *L)
{
    int n = lua_gettop(L);

    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, l_lh_xpcall_msgh, 1);
    lua_replace(L, 2);
    lua_pushboolean(L, 1); /* first result */
    lua_pushvalue(L, 1);
    lua_rotate(L, 3, 2); /* true, f below f's arguments */
    if (lua_pcall(L, n - 2, LUA_MULTRET, 2) != LUA_OK) {
        lua_pushboolean(L, 0);
        lua_pushvalue(L, -2);
        return 2;
    }
    return lua_gettop(L) - 2;
}

/* collectgarbage("count") only: the other options would let a runbook
 * spend the daemon's time on full collections or stop the collector. */
static int l_lh_collectgarbage(lua_State *L)
{
    const char *opt = luaL_optstring(L, 1, "collect");

    if (strcmp(opt, "count") != 0) {
        return luaL_argerror(L, 1, "only \"count\" is allowed in runbooks");
    }
    lua_pushnumber(L, (lua_Number)lua_gc(L, LUA_GCCOUNT, 0) +
                          (lua_Number)lua_gc(L, LUA_GCCOUNTB, 0) / 1024);
    return 1;
}

/* print(...): one line "path:line: a<TAB>b" to the print callback or the
 * log, never to stdout. */
static int l_lh_print(lua_State *L)
{
    struct lh_state *s = lh_from_lua(L);
    int n = lua_gettop(L);
    luaL_Buffer b;

    luaL_buffinit(L, &b);
    luaL_where(L, 1);
    luaL_addvalue(&b);
    for (int i = 1; i <= n; i++) {
        if (i > 1) {
            luaL_addchar(&b, '\t');
        }
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    if (s->print_cb != NULL) {
        s->print_cb(s->print_arg, lua_tostring(L, -1));
    } else {
        log_info("lua", "%s", lua_tostring(L, -1));
    }
    return 0;
}

/* debug.traceback([msg [, level]]) for the xpcall idiom; no thread
 * argument. A non-string message is returned untouched, as in Lua. */
static int l_lh_traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);

    if (msg == NULL && !lua_isnoneornil(L, 1)) {
        lua_settop(L, 1);
        return 1;
    }
    luaL_traceback(L, L, msg, (int)luaL_optinteger(L, 2, 1));
    return 1;
}

/* ---------------------------------------------------------------- require */

/* Dotted names of letters, digits, '_' and '-': no '/', no "..", no
 * leading or trailing '.', no NUL. */
static int valid_module_name(const char *name, size_t len)
{
    if (len == 0 || len > LH_MODNAME_MAX || strlen(name) != len ||
        name[0] == '.' || name[len - 1] == '.') {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        char c = name[i];

        if (c == '.' && name[i + 1] == '.') {
            return 0;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.')) {
            return 0;
        }
    }
    return 1;
}

int lh_find_script(const struct lh_state *s, const char *rel, char *out,
                   size_t size)
{
    struct stat st;

    if (rel[0] == '/' || rel[0] == '\0' || strstr(rel, "..") != NULL) {
        return VIGIL_EINVAL;
    }
    for (int i = 0; i < s->ndirs; i++) {
        int n = snprintf(out, size, "%s/%s", s->dirs[i], rel);
        if (n > 0 && (size_t)n < size && stat(out, &st) == 0 &&
            S_ISREG(st.st_mode)) {
            return 0;
        }
    }
    return VIGIL_ENOENT;
}

/* Find <dir>/<a/b>.lua in the script path and push it as a text chunk
 * with its own _ENV, and its file name; raises, naming the files tried,
 * when there is none. */
static void push_module_file(struct lh_state *s, lua_State *L, const char *name)
{
    int base = lua_gettop(L);
    const char *rel = luaL_gsub(L, name, ".", "/");
    luaL_Buffer tried;
    int status;

    if (s->ndirs == 0) {
        luaL_error(L, "module '%s' not found: no script path is configured",
                   name);
    }
    for (int i = 0; i < s->ndirs; i++) {
        const char *path = lua_pushfstring(L, "%s/%s.lua", s->dirs[i], rel);
        struct stat st;

        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
            lua_pop(L, 1);
            continue;
        }
        status = luaL_loadfilex(L, path, "t");
        if (status == LUA_ERRMEM) {
            lua_error(L);
        }
        if (status != LUA_OK) {
            luaL_error(L, "error loading module '%s': %s", name,
                       lua_tostring(L, -1));
        }
        push_env(s, L);
        lua_setupvalue(L, -2, 1);
        lua_replace(L, base + 1); /* rel, path, function -> function, path */
        return;
    }
    luaL_buffinit(L, &tried);
    for (int i = 0; i < s->ndirs; i++) {
        lua_pushfstring(L, "%s%s/%s.lua", i > 0 ? ", " : "", s->dirs[i], rel);
        luaL_addvalue(&tried);
    }
    luaL_pushresult(&tried);
    luaL_error(L, "module '%s' not found in the script path (tried %s)", name,
               lua_tostring(L, -1));
}

/* __close of require's guard: if the module's chunk did not finish
 * (error, timeout), forget the loading mark so a later require retries
 * instead of reporting a circular require. */
static int l_lh_require_close(lua_State *L)
{
    struct lh_state *s = lh_from_lua(L);

    lua_rawgeti(L, LUA_REGISTRYINDEX, s->loaded_ref);
    lua_rawgeti(L, 1, 1);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, -3) == LUA_TLIGHTUSERDATA &&
        lua_touserdata(L, -1) == &lh_loading_mark) {
        lua_pop(L, 1);
        lua_pushnil(L);
        lua_rawset(L, -3);
    }
    return 0;
}

/* require(name): the cached value, else a preloaded C module, else
 * <dir>/<a/b>.lua from the script path, run with (name, path) in its own
 * sandbox _ENV. Caches the result (true when the module returns nothing)
 * per state. */
static int l_lh_require(lua_State *L)
{
    struct lh_state *s = lh_from_lua(L);
    size_t len;
    const char *name = luaL_checklstring(L, 1, &len);

    lua_settop(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->loaded_ref); /* 2 */
    lua_pushvalue(L, 1);
    if (lua_rawget(L, 2) != LUA_TNIL) {
        if (lua_touserdata(L, 3) == &lh_loading_mark) {
            return luaL_error(L,
                              "module '%s' requires itself (circular "
                              "require)",
                              name);
        }
        return 1;
    }
    lua_pop(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->preload_ref);
    lua_pushvalue(L, 1);
    if (lua_rawget(L, -2) != LUA_TNIL) {
        lua_remove(L, -2);
        lua_pushliteral(L, ":preload:"); /* 3 loader, 4 data */
    } else {
        lua_pop(L, 2);
        if (!valid_module_name(name, len)) {
            return luaL_error(L,
                              "invalid module name '%s': use dotted names "
                              "of letters, digits, '_' and '-' (no '/', "
                              "'..' or leading '.')",
                              name);
        }
        push_module_file(s, L, name);
    }
    lua_pushvalue(L, 1);
    lua_pushlightuserdata(L, (void *)&lh_loading_mark);
    lua_rawset(L, 2);
    lua_createtable(L, 1, 0); /* 5: the guard */
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->guardmt_ref);
    lua_setmetatable(L, -2);
    lua_toclose(L, 5);
    lua_pushvalue(L, 3);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 4);
    lua_call(L, 2, 1); /* inside Lua already: errors go to the caller */
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
    }
    lua_pushvalue(L, 1);
    lua_pushvalue(L, -2);
    lua_rawset(L, 2);
    return 1;
}

/* ---------------------------------------------------------------- setup */

/* Set t[name] = nil for each name, t on top of the stack. */
static void remove_names(lua_State *L, const char *const *names)
{
    for (; *names != NULL; names++) {
        lua_pushnil(L);
        lua_setfield(L, -2, *names);
    }
}

/* Create an empty table and return a registry reference to it. */
static int new_ref_table(lua_State *L)
{
    lua_newtable(L);
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Open the libraries into the registry and build the template, the _ENV
 * metatable and the require tables. Runs under lua_pcall (argument 1 is
 * the lh_state) so that a memory error is a status, not a panic. */
static int l_lh_setup(lua_State *L)
{
    struct lh_state *s = lua_touserdata(L, 1);
    static const luaL_Reg libs[] = {
        {LUA_GNAME, luaopen_base},
        {LUA_TABLIBNAME, luaopen_table},
        {LUA_STRLIBNAME, luaopen_string},
        {LUA_MATHLIBNAME, luaopen_math},
        {LUA_UTF8LIBNAME, luaopen_utf8},
        {LUA_OSLIBNAME, luaopen_os},
        {NULL, NULL},
    };
    static const char *const copied_libs[] = {
        LUA_TABLIBNAME, LUA_STRLIBNAME, LUA_MATHLIBNAME, LUA_UTF8LIBNAME, NULL,
    };
    int tpl;

    for (const luaL_Reg *lib = libs; lib->func != NULL; lib++) {
        luaL_requiref(L, lib->name, lib->func, 0);
        lua_pop(L, 1);
    }
    lua_newtable(L);
    tpl = lua_gettop(L);

    /* Base: the allowed names, then scrub the real _G. */
    lua_pushglobaltable(L);
    for (const char *const *n = lh_base_names; *n != NULL; n++) {
        lua_getfield(L, -1, *n);
        lua_setfield(L, tpl, *n);
    }
    lua_getfield(L, -1, "load");
    s->load_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    remove_names(L, lh_base_unsafe);
    lua_pop(L, 1);
    lua_pushcfunction(L, l_lh_setmetatable);
    lua_setfield(L, tpl, "setmetatable");
    lua_pushcfunction(L, l_lh_xpcall);
    lua_setfield(L, tpl, "xpcall");
    lua_pushcfunction(L, l_lh_collectgarbage);
    lua_setfield(L, tpl, "collectgarbage");
    lua_pushcfunction(L, l_lh_print);
    lua_setfield(L, tpl, "print");
    lua_pushcfunction(L, l_lh_require);
    lua_setfield(L, tpl, "require");

    /* Libraries, from _LOADED. string.dump goes from the real table,
     * which strings still reach through their metatable. */
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, LUA_STRLIBNAME);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);
    for (const char *const *n = copied_libs; *n != NULL; n++) {
        lua_getfield(L, -1, *n);
        lua_setfield(L, tpl, *n);
    }

    /* os: keep four functions, in the template and in _LOADED.os. */
    lua_getfield(L, -1, LUA_OSLIBNAME);
    lua_newtable(L);
    for (const char *const *n = lh_os_names; *n != NULL; n++) {
        lua_getfield(L, -2, *n);
        lua_setfield(L, -2, *n);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, -4, LUA_OSLIBNAME);
    lua_setfield(L, tpl, LUA_OSLIBNAME);
    lua_pop(L, 2); /* real os, _LOADED */

    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_lh_traceback);
    lua_setfield(L, -2, "traceback");
    lua_setfield(L, tpl, "debug");

    /* Lock the string metatable: getmetatable("") would hand out the
     * real string table. */
    lua_pushliteral(L, "");
    if (lua_getmetatable(L, -1)) {
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);

    s->env_size = 2;
    lua_pushnil(L);
    while (lua_next(L, tpl) != 0) {
        lua_pop(L, 1);
        s->env_size++;
    }
    s->template_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, l_lh_env_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    s->envmt_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_lh_require_close);
    lua_setfield(L, -2, "__close");
    s->guardmt_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    s->loaded_ref = new_ref_table(L);
    s->preload_ref = new_ref_table(L);
    return 0;
}

/* Run f(s, arg) under lua_pcall: the host's own work that allocates in
 * the state (opening libraries, building an _ENV, loading a chunk) must
 * not raise outside a protected call. Leaves f's nres results, or the
 * error object; returns the lua_pcall status. */
static int lh_protect(struct lh_state *s, lua_CFunction f, void *arg, int nres)
{
    lua_State *L = s->L;

    /* On this failure nothing is pushed: callers restore their top. */
    if (!lua_checkstack(L, 3)) {
        return LUA_ERRMEM;
    }
    lua_pushcfunction(L, f);
    lua_pushlightuserdata(L, s);
    lua_pushlightuserdata(L, arg);
    return lua_pcall(L, 2, nres, 0);
}

/* ---------------------------------------------------------------- API */

/* Split script_path at ';' into s->dirs, dropping empty entries and
 * trailing slashes. Returns 0 or VIGIL_ENOMEM. */
static int parse_script_path(struct lh_state *s, const char *script_path)
{
    size_t n = 1;
    char *p;

    if (script_path == NULL || script_path[0] == '\0') {
        return 0;
    }
    s->path_buf = strdup(script_path);
    if (s->path_buf == NULL) {
        return VIGIL_ENOMEM;
    }
    for (p = s->path_buf; *p != '\0'; p++) {
        n += *p == ';';
    }
    s->dirs = calloc(n, sizeof(*s->dirs));
    if (s->dirs == NULL) {
        return VIGIL_ENOMEM;
    }
    p = s->path_buf;
    for (;;) {
        char *semi = strchr(p, ';');
        size_t len;

        if (semi != NULL) {
            *semi = '\0';
        }
        len = strlen(p);
        while (len > 1 && p[len - 1] == '/') {
            p[--len] = '\0';
        }
        if (len > 0) {
            s->dirs[s->ndirs++] = p;
        }
        if (semi == NULL) {
            break;
        }
        p = semi + 1;
    }
    return 0;
}

int lh_create(const struct lh_limits *lim, const char *script_path,
              struct lh_state **out, struct vigil_err *err)
{
    struct lh_state *s = calloc(1, sizeof(*s));
    char cap[32];
    int rc;

    *out = NULL;
    if (s == NULL) {
        return err_set(err, VIGIL_ENOMEM, "lua: out of memory");
    }
    s->mem_max =
        lim != NULL && lim->mem_max > 0 ? lim->mem_max : LH_DEFAULT_MEM;
    s->budget_ns = lim != NULL && lim->budget_ns > 0 ? lim->budget_ns
                                                     : LH_DEFAULT_BUDGET_NS;
    fmt_mib(cap, sizeof(cap), s->mem_max);
    if (parse_script_path(s, script_path) != 0) {
        rc = err_set(err, VIGIL_ENOMEM, "lua: out of memory");
        goto fail;
    }
    s->L = lua_newstate(lh_alloc, s);
    if (s->L == NULL) {
        rc = err_set(err, VIGIL_ENOMEM,
                     "lua: cannot create a state within the memory limit "
                     "of %s",
                     cap);
        goto fail;
    }
    *(struct lh_state **)lua_getextraspace(s->L) = s;
    lua_atpanic(s->L, lh_panic);
    rc = lh_protect(s, l_lh_setup, NULL, 0);
    if (rc != LUA_OK) {
        rc = err_set(err, VIGIL_ENOMEM,
                     "lua: cannot open the libraries within the memory "
                     "limit of %s",
                     cap);
        goto fail;
    }
    lua_sethook(s->L, lh_hook, LUA_MASKCOUNT, LH_HOOK_COUNT);
    *out = s;
    return 0;
fail:
    lh_destroy(s);
    return rc;
}

void lh_destroy(struct lh_state *s)
{
    if (s == NULL) {
        return;
    }
    if (s->L != NULL) {
        lua_close(s->L);
    }
    free(s->dirs);
    free(s->path_buf);
    free(s);
}

lua_State *lh_lua(struct lh_state *s)
{
    return s->L;
}

struct lh_state *lh_from_lua(lua_State *L)
{
    return *(struct lh_state **)lua_getextraspace(L);
}

void lh_set_print(struct lh_state *s, lh_print_cb cb, void *arg)
{
    s->print_cb = cb;
    s->print_arg = arg;
}

size_t lh_mem_used(const struct lh_state *s)
{
    return s->mem_used;
}

struct lh_load_req {
    const char *path; /* file, or NULL for text */
    const char *name;
    const char *text;
    int status; /* luaL_load* status */
};

/* Protected half of lh_load_*: load the chunk (text only) and give it a
 * fresh _ENV. On a load error raises the message, with req->status set. */
static int l_lh_load_chunk(lua_State *L)
{
    struct lh_state *s = lua_touserdata(L, 1);
    struct lh_load_req *req = lua_touserdata(L, 2);

    if (req->path != NULL) {
        req->status = luaL_loadfilex(L, req->path, "t");
    } else {
        const char *chunkname = lua_pushfstring(L, "=%s", req->name);

        req->status =
            luaL_loadbufferx(L, req->text, strlen(req->text), chunkname, "t");
    }
    if (req->status != LUA_OK) {
        return lua_error(L);
    }
    push_env(s, L);
    lua_setupvalue(L, -2, 1);
    return 1;
}

static int lh_load(struct lh_state *s, struct lh_load_req *req,
                   struct vigil_err *err)
{
    lua_State *L = s->L;
    const char *what = req->path != NULL ? req->path : req->name;
    int top = lua_gettop(L);
    int rc = lh_protect(s, l_lh_load_chunk, req, 1);
    const char *msg = "?";
    char cap[32];

    if (rc == LUA_OK) {
        return 0;
    }
    if (lua_gettop(L) > top && lua_type(L, -1) == LUA_TSTRING) {
        msg = lua_tostring(L, -1);
    }
    if (rc == LUA_ERRMEM || req->status == LUA_ERRMEM) {
        fmt_mib(cap, sizeof(cap), s->mem_max);
        rc = err_set(err, VIGIL_ENOMEM, "%s: memory limit of %s reached", what,
                     cap);
    } else if (req->status == LUA_ERRFILE) {
        rc = err_set(err, VIGIL_ENOENT, "%s", msg);
    } else if (strncmp(msg, what, strlen(what)) == 0) {
        rc = err_set(err, VIGIL_EPARSE, "%s", msg); /* "name:line: ..." */
    } else {
        /* A binary chunk: the message has no chunk name. */
        rc = err_set(err, VIGIL_EPARSE, "%s: %s", what, msg);
    }
    lua_settop(L, top);
    return rc;
}

int lh_load_file(struct lh_state *s, const char *path, struct vigil_err *err)
{
    struct lh_load_req req = {.path = path, .status = LUA_OK};

    return lh_load(s, &req, err);
}

int lh_load_string(struct lh_state *s, const char *name, const char *text,
                   struct vigil_err *err)
{
    struct lh_load_req req = {
        .name = name != NULL ? name : "chunk",
        .text = text,
        .status = LUA_OK,
    };

    return lh_load(s, &req, err);
}

int lh_pcall(struct lh_state *s, int nargs, int nresults, struct vigil_err *err)
{
    lua_State *L = s->L;
    int base = lua_gettop(L) - nargs; /* the function; the handler goes here */
    int outer = s->depth == 0;
    int rc, timed_out;
    char text[32];

    if (!lua_checkstack(L, 1)) {
        lua_settop(L, base - 1);
        return err_set(err, VIGIL_ENOMEM, "lua: stack overflow");
    }
    if (outer) {
        s->deadline = clock_mono_ns() + s->budget_ns;
        s->mem_hit = 0;
        s->mem_where[0] = '\0';
    }
    lua_pushcfunction(L, l_lh_msgh);
    lua_insert(L, base);
    s->depth++;
    rc = lua_pcall(L, nargs, nresults, base);
    s->depth--;
    timed_out = s->expired;
    if (outer) {
        s->deadline = 0;
        s->in_handler = 0;
        if (s->expired) {
            s->expired = 0;
            lua_sethook(L, lh_hook, LUA_MASKCOUNT, LH_HOOK_COUNT);
        }
    }
    if (rc == LUA_OK && !timed_out) {
        lua_remove(L, base);
        return 0;
    }
    if (timed_out) {
        if (rc == LUA_OK || rc == LUA_ERRMEM ||
            lua_type(L, -1) != LUA_TSTRING) {
            /* The script's own pcall caught the last raise, or there was
             * no memory left to format it. */
            fmt_budget(text, sizeof(text), s->budget_ns);
            rc = err_set(err, VIGIL_ETIMEDOUT, "time budget of %s exceeded",
                         text);
        } else {
            rc = set_lua_error(err, VIGIL_ETIMEDOUT, lua_tostring(L, -1));
        }
    } else if (rc == LUA_ERRMEM) {
        /* No handler ran: no traceback, the location comes from the
         * allocator. */
        fmt_mib(text, sizeof(text), s->mem_max);
        rc = s->mem_hit
                 ? err_set(err, VIGIL_ENOMEM, "%smemory limit of %s reached",
                           s->mem_where, text)
                 : err_set(err, VIGIL_ENOMEM, "lua: out of memory");
    } else {
        rc = set_lua_error(err, VIGIL_EINVAL,
                           lua_type(L, -1) == LUA_TSTRING
                               ? lua_tostring(L, -1)
                               : "(error object is not a string)");
    }
    lua_settop(L, base - 1);
    return rc;
}

/* Protected half of lh_preload. */
static int l_lh_preload(lua_State *L)
{
    struct lh_state *s = lua_touserdata(L, 1);
    const luaL_Reg *reg = lua_touserdata(L, 2);

    lua_rawgeti(L, LUA_REGISTRYINDEX, s->preload_ref);
    lua_pushcfunction(L, reg->func);
    lua_setfield(L, -2, reg->name);
    return 0;
}

int lh_preload(struct lh_state *s, const char *name, lua_CFunction open)
{
    luaL_Reg reg = {name, open};
    int top = lua_gettop(s->L);
    char cap[32];

    if (lh_protect(s, l_lh_preload, &reg, 0) != LUA_OK) {
        lua_settop(s->L, top);
        fmt_mib(cap, sizeof(cap), s->mem_max);
        log_error("lua", "cannot register module '%s': memory limit of %s",
                  name, cap);
        return VIGIL_ENOMEM;
    }
    return 0;
}
