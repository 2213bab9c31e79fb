/* Unit tests for core/lua_host.c: every sandbox escape is refused or
 * aborted with a clear message and the state keeps working afterwards;
 * budgets (time, memory), error reporting, require, nested calls, and
 * allocation failures at every size while creating a state. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>

#include "clock.h"
#include "lua_host.h"

#define MIB ((size_t)1 << 20)
#define MS 1000000ll

/* ---------------------------------------------------------------- helpers */

static void assert_contains(const char *hay, const char *needle)
{
    if (strstr(hay, needle) == NULL) {
        fail_msg("expected \"%s\" in:\n%s", needle, hay);
    }
}

static struct lh_state *new_state(size_t mem_max, int64_t budget_ns,
                                  const char *path)
{
    struct lh_limits lim = {.mem_max = mem_max, .budget_ns = budget_ns};
    struct lh_state *s = NULL;
    struct vigil_err err = {0};

    if (lh_create(&lim, path, &s, &err) != 0) {
        fail_msg("lh_create: %s", err.msg);
    }
    assert_non_null(s);
    return s;
}

/* Load text as chunk `name` and run it with nres results; checks that the
 * stack holds exactly the results on success and nothing on error. */
static int run(struct lh_state *s, const char *name, const char *text, int nres,
               struct vigil_err *err)
{
    lua_State *L = lh_lua(s);
    int top = lua_gettop(L);
    int rc;

    err_clear(err);
    rc = lh_load_string(s, name, text, err);
    if (rc != 0) {
        assert_int_equal(lua_gettop(L), top);
        return rc;
    }
    assert_int_equal(lua_gettop(L), top + 1);
    rc = lh_pcall(s, 0, nres, err);
    assert_int_equal(lua_gettop(L), top + (rc == 0 ? nres : 0));
    if (rc != 0) {
        assert_int_equal(err->code, rc);
    }
    return rc;
}

/* Run a chunk that must fail with code and a message containing want. */
static void expect_error(struct lh_state *s, const char *text, int code,
                         const char *want)
{
    struct vigil_err err = {0};
    int rc = run(s, "chunk", text, 0, &err);

    if (rc != code) {
        fail_msg("%s: got %d (%s), want %d", text, rc, err.msg, code);
    }
    assert_contains(err.msg, want);
}

/* Run a chunk that must succeed. */
static void expect_ok(struct lh_state *s, const char *text)
{
    struct vigil_err err = {0};
    int rc = run(s, "chunk", text, 0, &err);

    if (rc != 0) {
        fail_msg("%s: %s", text, err.msg);
    }
}

/* The state still works: a fresh chunk runs and returns a value. */
static void assert_usable(struct lh_state *s)
{
    struct vigil_err err = {0};
    lua_State *L = lh_lua(s);

    assert_int_equal(run(s, "usable",
                         "local t = {} for i = 1, 100 do t[i] = i end\n"
                         "return #t + #string.rep('ab', 3)",
                         1, &err),
                     0);
    assert_int_equal(lua_tointeger(L, -1), 106);
    lua_pop(L, 1);
}

static char tmpdir[64];

static void write_file(const char *rel, const char *text)
{
    char path[256];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup_dir(void **state)
{
    char path[128];

    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_lua_host.XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        return -1;
    }
    snprintf(path, sizeof(path), "%s/a", tmpdir);
    if (mkdir(path, 0700) != 0) {
        return -1;
    }
    write_file("a/b.lua", "local M = {}\n"
                          "local name, path = ...\n"
                          "M.name, M.path = name, path\n"
                          "function M.twice(x) return 2 * x end\n"
                          "return M\n");
    write_file("leak.lua", "local ok = true\n"
                           "leaked = ok\n"
                           "return ok\n");
    write_file("boom.lua", "error('boom')\n");
    write_file("self.lua", "return require 'self'\n");
    write_file("syntax.lua", "local x = = 1\n");
    write_file("bin.lua", "\033Lua binary-looking\n");
    write_file("rt.lua", "local x = 1\n"
                         "return function() return x + nil end\n");
    return 0;
}

static int teardown_dir(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---------------------------------------------------------------- tests */

static void test_create_destroy(void **state)
{
    struct lh_state *s;
    struct vigil_err err = {0};

    (void)state;
    lh_destroy(NULL);
    assert_int_equal(lh_create(NULL, NULL, &s, &err), 0);
    assert_ptr_equal(lh_from_lua(lh_lua(s)), s);
    assert_true(lh_mem_used(s) > 0);
    assert_true(lh_mem_used(s) < 64 * 1024);
    assert_int_equal(lua_gettop(lh_lua(s)), 0);
    assert_usable(s);
    lh_destroy(s);
}

static void test_io_refused(void **state)
{
    struct lh_state *s = new_state(0, 0, NULL);

    (void)state;
    expect_error(s, "local f = io.open('/etc/passwd')", VIGIL_EINVAL,
                 "global 'io'");
    expect_ok(s, "assert(io == nil and package == nil and coroutine == nil)");
    expect_ok(s, "assert(dofile == nil and loadfile == nil and warn == nil)");
    assert_usable(s);
    lh_destroy(s);
}

static void test_os_restricted(void **state)
{
    struct lh_state *s = new_state(0, 0, NULL);

    (void)state;
    expect_error(s, "os.execute('true')", VIGIL_EINVAL, "field 'execute'");
    expect_error(s, "os.exit(1)", VIGIL_EINVAL, "field 'exit'");
    expect_error(s, "os.remove('/tmp/x')", VIGIL_EINVAL, "field 'remove'");
    expect_ok(s, "assert(os.rename == nil and os.tmpname == nil)");
    expect_ok(s, "assert(math.type(os.time()) == 'integer')\n"
                 "assert(type(os.clock()) == 'number')\n"
                 "assert(#os.date('%Y-%m-%d', 0) == 10)\n"
                 "local h = os.getenv('HOME')\n"
                 "assert(h == nil or type(h) == 'string')");
    assert_usable(s);
    lh_destroy(s);
}

static void test_binary_chunks_refused(void **state)
{
    struct lh_state *s = new_state(0, 0, NULL);
    struct vigil_err err = {0};
    char path[256];

    (void)state;
    assert_int_equal(lh_load_string(s, "bin", "\033Lua\x54\x00 junk", &err),
                     VIGIL_EPARSE);
    assert_contains(err.msg, "bin: ");
    assert_contains(err.msg, "binary chunk");
    assert_int_equal(lua_gettop(lh_lua(s)), 0);

    snprintf(path, sizeof(path), "%s/bin.lua", tmpdir);
    err_clear(&err);
    assert_int_equal(lh_load_file(s, path, &err), VIGIL_EPARSE);
    assert_contains(err.msg, "binary chunk");

    /* From inside: no string.dump anywhere, and load is text only even
     * when the script asks for binary. */
    expect_ok(s, "assert(string.dump == nil and ('').dump == nil)");
    expect_ok(s, "local f, e = load('\\27Lua\\x54')\n"
                 "assert(f == nil and e:find('binary chunk'), e)\n"
                 "f, e = load('\\27Lua\\x54', 'x', 'b')\n"
                 "assert(f == nil and e:find('binary chunk'), e)");
    assert_usable(s);
    lh_destroy(s);
}

static void test_package_loadlib_refused(void **state)
{
    struct lh_state *s = new_state(0, 0, NULL);

    (void)state;
    expect_error(s, "package.loadlib('/lib/x.so', 'f')", VIGIL_EINVAL,
                 "global 'package'");
    assert_usable(s);
    lh_destroy(s);
}

static void test_require_outside_path(void **state)
{
    struct lh_state *s = new_state(0, 0, tmpdir);

    (void)state;
    expect_error(s, "require '../x'", VIGIL_EINVAL, "invalid module name");
    expect_error(s, "require '/etc/passwd'", VIGIL_EINVAL,
                 "invalid module name");
    expect_error(s, "require '.hidden'", VIGIL_EINVAL, "invalid module name");
    expect_error(s, "require 'a..b'", VIGIL_EINVAL, "invalid module name");
    expect_error(s, "require 'a\\0b'", VIGIL_EINVAL, "invalid module name");
    expect_error(s, "require 'os'", VIGIL_EINVAL,
                 "module 'os' not found in the script path");
    expect_error(s, "require 'nope'", VIGIL_EINVAL, tmpdir);
    assert_usable(s);
    lh_destroy(s);

    s = new_state(0, 0, NULL);
    expect_error(s, "require 'a.b'", VIGIL_EINVAL, "no script path");
    lh_destroy(s);
}

/* Many directories: the list of files tried outgrows Lua's buffer. */
static void test_require_long_path(void **state)
{
    char path[4096];
    size_t n = 0;
    struct lh_state *s;

    (void)state;
    for (int i = 0; i < 40; i++) {
        n += (size_t)snprintf(path + n, sizeof(path) - n,
                              "/nonexistent/a/rather/long/directory/%02d;", i);
    }
    snprintf(path + n, sizeof(path) - n, "%s", tmpdir);
    s = new_state(0, 0, path);
    expect_error(s, "require 'nope'", VIGIL_EINVAL,
                 "module 'nope' not found in the script path (tried "
                 "/nonexistent/a/rather/long/directory/00/nope.lua, ");
    expect_ok(s, "assert(require('a.b').twice(2) == 4)");
    assert_usable(s);
    lh_destroy(s);
}

static void test_require_module(void **state)
{
    char path[256];
    struct lh_state *s;

    (void)state;
    snprintf(path, sizeof(path), "/nonexistent;%s/", tmpdir);
    s = new_state(0, 0, path);
    /* Found in the second directory, run with (name, path), cached. */
    expect_ok(s, "local m = require 'a.b'\n"
                 "assert(m.twice(21) == 42)\n"
                 "assert(m.name == 'a.b' and m.path:find('/a/b.lua$'))\n"
                 "assert(require 'a.b' == m)");
    expect_ok(s, "local m = require 'a.b'\n"
                 "assert(m.twice(1) == 2)");
    /* Modules are sandboxed: no new globals. */
    expect_error(s, "require 'leak'", VIGIL_EINVAL,
                 "leak.lua:2: assignment to undeclared global 'leaked'");
    expect_error(s, "require 'self'", VIGIL_EINVAL, "circular require");
    /* A module that failed is retried, not reported as circular. */
    expect_error(s, "require 'boom'", VIGIL_EINVAL, "boom.lua:1: boom");
    expect_error(s, "require 'boom'", VIGIL_EINVAL, "boom.lua:1: boom");
    expect_error(s, "require 'syntax'", VIGIL_EINVAL,
                 "error loading module 'syntax'");
    expect_error(s, "require 'bin'", VIGIL_EINVAL, "binary chunk");
    assert_usable(s);
    lh_destroy(s);
}

static int open_fake(lua_State *L)
{
    lua_newtable(L);
    lua_pushliteral(L, "preloaded");
    lua_setfield(L, -2, "kind");
    return 1;
}

static void test_preload_precedes_files(void **state)
{
    struct lh_state *s = new_state(0, 0, tmpdir);

    (void)state;
    assert_int_equal(lh_preload(s, "a.b", open_fake), 0);
    expect_ok(s, "local m = require 'a.b'\n"
                 "assert(m.kind == 'preloaded' and require 'a.b' == m)");
    lh_destroy(s);
}

static void test_memory_bomb(void **state)
{
    struct lh_state *s = new_state(8 * MIB, 5000 * MS, NULL);

    (void)state;
    expect_error(s, "local s = string.rep('x', 1e9)", VIGIL_ENOMEM,
                 "chunk:1: memory limit of 8 MiB reached");
    assert_true(lh_mem_used(s) <= 8 * MIB);
    assert_usable(s);
    expect_error(s, "local s = ('x'):rep(1e9)", VIGIL_ENOMEM,
                 "memory limit of 8 MiB reached");
    expect_error(s, "local t = {}\nfor i = 1, 1e9 do t[i] = {} end",
                 VIGIL_ENOMEM, "chunk:2: memory limit of 8 MiB reached");
    expect_error(s, "local s = 'x'\n\nwhile true do s = s .. s end",
                 VIGIL_ENOMEM, "chunk:3: memory limit of 8 MiB reached");
    assert_true(lh_mem_used(s) <= 8 * MIB);
    assert_usable(s);
    /* A script may catch a memory error and go on. */
    expect_ok(s, "local ok, e = pcall(string.rep, 'x', 1e9)\n"
                 "assert(not ok and e == 'not enough memory')");
    assert_usable(s);
    lh_destroy(s);
}

static void test_timeout(void **state)
{
    struct lh_state *s = new_state(0, 20 * MS, NULL);
    int64_t t0 = clock_mono_ns(), dt;

    (void)state;
    expect_error(s, "local n = 0\nwhile true do n = n + 1 end", VIGIL_ETIMEDOUT,
                 "chunk:2: time budget of 20 ms exceeded");
    dt = clock_mono_ns() - t0;
    assert_true(dt >= 20 * MS);
    assert_true(dt < 2000 * MS);
    /* The next call gets a fresh budget and the normal hook count. */
    assert_usable(s);
    expect_ok(s, "local n = 0 for i = 1, 10000 do n = n + i end");
    lh_destroy(s);
}

static void test_timeout_not_swallowed(void **state)
{
    struct lh_state *s = new_state(0, 20 * MS, NULL);
    lua_State *L = lh_lua(s);
    struct vigil_err err = {0};
    int64_t t0 = clock_mono_ns();

    (void)state;
    expect_error(s, "while true do pcall(function() while true do end end) end",
                 VIGIL_ETIMEDOUT, "time budget of 20 ms exceeded");
    expect_error(s,
                 "while true do\n"
                 "  xpcall(function() while true do end end,\n"
                 "         function(e) while true do end end)\n"
                 "end",
                 VIGIL_ETIMEDOUT, "time budget of 20 ms exceeded");
    expect_error(s,
                 "local function f() return pcall(f) end\n"
                 "while true do f() end",
                 VIGIL_ETIMEDOUT, "time budget");
    /* pcall called straight from C: no Lua instruction runs after the
     * error is caught, yet the call still reports the timeout. */
    assert_int_equal(
        run(s, "c", "return pcall, function() while true do end end", 2, &err),
        0);
    assert_int_equal(lh_pcall(s, 1, 2, &err), VIGIL_ETIMEDOUT);
    assert_contains(err.msg, "time budget of 20 ms exceeded");
    assert_int_equal(lua_gettop(L), 0);
    assert_true(clock_mono_ns() - t0 < 8000 * MS);
    assert_usable(s);
    lh_destroy(s);
}

static void test_runtime_error(void **state)
{
    struct lh_state *s = new_state(0, 0, NULL);
    struct vigil_err err = {0};
    char path[256];

    (void)state;
    assert_int_equal(run(s, "rules/cpu.lua",
                         "local function check(v)\n"
                         "  if v > 1 then error('too high: ' .. v) end\n"
                         "end\n"
                         "check(5)\n",
                         0, &err),
                     VIGIL_EINVAL);
    assert_contains(err.msg, "rules/cpu.lua:2: too high: 5\n");
    assert_contains(err.msg, "stack traceback:");
    assert_contains(err.msg, "rules/cpu.lua:4: in main chunk");
    assert_true(strncmp(err.msg, "rules/cpu.lua:2:", 16) == 0);

    expect_error(s, "local t = nil\nreturn t.x", VIGIL_EINVAL,
                 "chunk:2: attempt to index a nil value (local 't')");
    expect_error(s, "\nerror({code = 1})", VIGIL_EINVAL,
                 "chunk:2: (error object is a table value)");

    /* A deep stack keeps only a few traceback lines. */
    expect_error(s,
                 "local function f(n) if n == 0 then error('deep') end "
                 "return 1 + f(n - 1) end\nf(50)",
                 VIGIL_EINVAL, "\n\t...");

    /* A function from a file reports path:line. */
    snprintf(path, sizeof(path), "%s/rt.lua", tmpdir);
    err_clear(&err);
    assert_int_equal(lh_load_file(s, path, &err), 0);
    assert_int_equal(lh_pcall(s, 0, 1, &err), 0);
    assert_int_equal(lh_pcall(s, 0, 0, &err), VIGIL_EINVAL);
    assert_contains(err.msg, "rt.lua:2: attempt to perform arithmetic");
    assert_int_equal(lua_gettop(lh_lua(s)), 0);
    assert_usable(s);
    lh_destroy(s);
}

static void test_load_errors(void **state)
{
    struct lh_state *s = new_state(0, 0, NULL);
    struct vigil_err err = {0};
    char path[256];

    (void)state;
    assert_int_equal(lh_load_string(s, "syn", "local x = 1\nx = x +* 2", &err),
                     VIGIL_EPARSE);
    assert_contains(err.msg, "syn:2:");
    assert_int_equal(lua_gettop(lh_lua(s)), 0);

    snprintf(path, sizeof(path), "%s/syntax.lua", tmpdir);
    err_clear(&err);
    assert_int_equal(lh_load_file(s, path, &err), VIGIL_EPARSE);
    assert_contains(err.msg, "syntax.lua:1:");

    err_clear(&err);
    assert_int_equal(lh_load_file(s, "/nonexistent/x.lua", &err), VIGIL_ENOENT);
    assert_contains(err.msg, "cannot open /nonexistent/x.lua");
    assert_int_equal(lua_gettop(lh_lua(s)), 0);
    assert_usable(s);
    lh_destroy(s);
}

static void test_undeclared_global(void **state)
{
    struct lh_state *s = new_state(0, 0, NULL);

    (void)state;
    expect_error(s, "local a = 1\nx = a", VIGIL_EINVAL,
                 "chunk:2: assignment to undeclared global 'x'");
    expect_error(s, "function handler() end", VIGIL_EINVAL,
                 "undeclared global 'handler'");
    expect_error(s, "_G.y = 1", VIGIL_EINVAL, "undeclared global 'y'");
    expect_error(s, "load('z = 1')()", VIGIL_EINVAL, "undeclared global 'z'");
    expect_ok(s, "local x = 1 local function f() return x end\n"
                 "assert(f() == 1 and undefined_name == nil)");
    expect_ok(s, "assert(load('return string.upper(\"a\")')() == 'A')\n"
                 "local env = {}\n"
                 "load('w = 1', 'n', 't', env)()\n"
                 "assert(env.w == 1)");
    lh_destroy(s);
}

static void test_chunks_isolated(void **state)
{
    struct lh_state *s = new_state(0, 0, NULL);

    (void)state;
    expect_ok(s, "string.upper = nil\n"
                 "table.insert = nil\n"
                 "math = nil\n"
                 "print = nil\n"
                 "os.time = nil");
    expect_ok(s, "assert(string.upper('a') == 'A')\n"
                 "assert(('a'):upper() == 'A')\n"
                 "local t = {} table.insert(t, 1) assert(#t == 1)\n"
                 "assert(math.floor(1.5) == 1 and print and os.time)");
    /* The tables behind the template are out of reach. */
    expect_ok(s, "assert(getmetatable('') == false)\n"
                 "assert(getmetatable(_ENV) == false)\n"
                 "assert(_G == _ENV)");
    expect_error(s, "setmetatable(_ENV, nil)", VIGIL_EINVAL,
                 "protected metatable");
    lh_destroy(s);
}

static void test_gc_and_collectgarbage(void **state)
{
    struct lh_state *s = new_state(0, 20 * MS, NULL);

    (void)state;
    expect_error(s,
                 "setmetatable({}, {__gc = function() while true do end "
                 "end})",
                 VIGIL_EINVAL, "__gc metamethods are not allowed");
    expect_ok(s, "local t = setmetatable({}, {__index = {a = 1}})\n"
                 "assert(t.a == 1)");
    expect_ok(s, "assert(collectgarbage('count') > 0)");
    expect_error(s, "collectgarbage()", VIGIL_EINVAL, "only \"count\"");
    expect_error(s, "collectgarbage('stop')", VIGIL_EINVAL, "only \"count\"");
    lh_destroy(s);
}

static char printed[256];

static void capture_print(void *arg, const char *line)
{
    (void)arg;
    snprintf(printed, sizeof(printed), "%s", line);
}

static void test_print(void **state)
{
    struct lh_state *s = new_state(0, 0, NULL);

    (void)state;
    lh_set_print(s, capture_print, NULL);
    expect_ok(s, "\nprint('cpu', 93.5, nil, true)");
    assert_string_equal(printed, "chunk:2: cpu\t93.5\tnil\ttrue");
    expect_ok(s, "assert(debug.traceback('x'):find('^x\\nstack traceback:'))\n"
                 "assert(debug.getinfo == nil)");
    lh_destroy(s);
}

/* A binding that calls back into Lua through lh_pcall. */
static int l_nest_call(lua_State *L)
{
    struct lh_state *s = lh_from_lua(L);
    struct vigil_err err = {0};

    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 1);
    if (lh_pcall(s, 0, 1, &err) != 0) {
        return luaL_error(L, "nested call failed: %s", err.msg);
    }
    return 1;
}

static int open_nest(lua_State *L)
{
    static const luaL_Reg fns[] = {{"call", l_nest_call}, {NULL, NULL}};

    luaL_newlib(L, fns);
    return 1;
}

static void test_nested_pcall(void **state)
{
    struct lh_state *s = new_state(0, 50 * MS, NULL);
    struct vigil_err err = {0};
    lua_State *L = lh_lua(s);
    int64_t t0;

    (void)state;
    assert_int_equal(lh_preload(s, "nest", open_nest), 0);
    assert_int_equal(run(s, "n",
                         "local n = require 'nest'\n"
                         "return n.call(function() return 40 end) + 2",
                         1, &err),
                     0);
    assert_int_equal(lua_tointeger(L, -1), 42);
    lua_pop(L, 1);
    expect_error(s,
                 "local n = require 'nest'\n"
                 "n.call(function() error('inner') end)",
                 VIGIL_EINVAL, "nested call failed: chunk:2: inner");
    /* The inner call keeps the outer deadline: 40 ms outside plus 30 ms
     * inside exceed the 50 ms budget of the outer call. */
    t0 = clock_mono_ns();
    expect_error(s,
                 "local n = require 'nest'\n"
                 "local function spin(s)\n"
                 "  local t = os.clock() while os.clock() - t < s do end\n"
                 "  return 1\n"
                 "end\n"
                 "spin(0.04)\n"
                 "return n.call(function() return spin(0.03) end)",
                 VIGIL_ETIMEDOUT, "time budget of 50 ms exceeded");
    assert_true(clock_mono_ns() - t0 < 2000 * MS);
    assert_usable(s);
    lh_destroy(s);
}

static void test_mem_used_bounded(void **state)
{
    struct lh_state *s = new_state(4 * MIB, 5000 * MS, NULL);
    struct vigil_err err = {0};
    size_t base = lh_mem_used(s);
    lua_State *L = lh_lua(s);

    (void)state;
    /* Chunks kept on the stack each hold an _ENV. */
    for (int i = 0; i < 20; i++) {
        assert_int_equal(lh_load_string(s, "c", "return 1", &err), 0);
    }
    assert_true(lh_mem_used(s) > base + 20 * 1024);
    lua_settop(L, 0);
    lua_gc(L, LUA_GCCOLLECT, 0);
    assert_true(lh_mem_used(s) < base + 16 * 1024);
    /* Growth stops at the cap. */
    expect_error(s,
                 "local t = {} while true do t[#t + 1] = ('x'):rep(100) .. "
                 "#t end",
                 VIGIL_ENOMEM, "memory limit of 4 MiB reached");
    assert_true(lh_mem_used(s) <= 4 * MIB);
    lh_destroy(s);
}

/* Allocation failures: create states under every small cap; each either
 * works or fails cleanly with VIGIL_ENOMEM. Then run a chunk under caps
 * just above what the state needs: each call succeeds or reports the
 * memory limit, and the stack stays balanced. */
static void test_alloc_failures(void **state)
{
    struct lh_state *s;
    struct vigil_err err;
    size_t need = 0;

    (void)state;
    for (size_t cap = 512; cap < 64 * 1024; cap += 512) {
        struct lh_limits lim = {.mem_max = cap};
        int rc;

        err_clear(&err);
        s = NULL;
        rc = lh_create(&lim, NULL, &s, &err);
        if (rc == 0) {
            if (need == 0) {
                need = cap;
            }
            lh_destroy(s);
        } else {
            assert_int_equal(rc, VIGIL_ENOMEM);
            assert_null(s);
            assert_contains(err.msg, "memory limit");
        }
    }
    assert_true(need > 0);
    for (size_t cap = need; cap < need + 32 * 1024; cap += 256) {
        int rc;

        s = new_state(cap, 0, NULL);
        err_clear(&err);
        rc =
            run(s, "t",
                "local t = {} for i = 1, 200 do t[i] = tostring(i) .. 'x' end\n"
                "return table.concat(t, ',')",
                1, &err);
        if (rc == 0) {
            lua_pop(lh_lua(s), 1);
        } else {
            assert_int_equal(rc, VIGIL_ENOMEM);
            assert_contains(err.msg, "memory limit");
        }
        assert_int_equal(lua_gettop(lh_lua(s)), 0);
        assert_true(lh_mem_used(s) <= cap + 64 * 1024);
        lh_destroy(s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_destroy),
        cmocka_unit_test(test_io_refused),
        cmocka_unit_test(test_os_restricted),
        cmocka_unit_test(test_binary_chunks_refused),
        cmocka_unit_test(test_package_loadlib_refused),
        cmocka_unit_test(test_require_outside_path),
        cmocka_unit_test(test_require_long_path),
        cmocka_unit_test(test_require_module),
        cmocka_unit_test(test_preload_precedes_files),
        cmocka_unit_test(test_memory_bomb),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_timeout_not_swallowed),
        cmocka_unit_test(test_runtime_error),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_undeclared_global),
        cmocka_unit_test(test_chunks_isolated),
        cmocka_unit_test(test_gc_and_collectgarbage),
        cmocka_unit_test(test_print),
        cmocka_unit_test(test_nested_pcall),
        cmocka_unit_test(test_mem_used_bounded),
        cmocka_unit_test(test_alloc_failures),
    };

    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
