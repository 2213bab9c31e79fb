/*
 * lua_host - sandboxed Lua 5.4 states for runbooks.
 *
 * One state per runbook file. The state has its own allocator with a
 * memory cap, the libraries from our own list (base without dofile,
 * loadfile and binary chunks; table, string, math, utf8; os.time, os.clock,
 * os.date and os.getenv only), and a `require` that loads text chunks only,
 * only from the configured script directories, each in the sandbox.
 * Every chunk runs with its own _ENV whose unknown globals read as errors
 * when assigned ("assignment to undeclared global 'x'"): runbooks declare
 * their variables with `local`.
 *
 * C enters Lua only through lh_pcall(): a message handler adds the
 * traceback, an instruction-count hook enforces the time budget of the
 * call, and the error is copied into a vigil_err with file:line. Once the
 * budget is spent the hook raises again on every check until the call
 * returns, so a `pcall` inside the script cannot swallow it.
 *
 * Only this module and the binding files include lua.h.
 */
#ifndef VIGIL_LUA_HOST_H
#define VIGIL_LUA_HOST_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "err.h"

struct lh_limits {
    size_t mem_max;    /* bytes the state may hold; 0 = 64 MiB */
    int64_t budget_ns; /* wall time one lh_pcall may run; 0 = 50 ms */
};

struct lh_state;

/* Create a sandboxed state. script_path is a ';'-separated list of
 * directories that `require "a.b"` searches as <dir>/a/b.lua (may be
 * NULL: require then fails). Strings are copied. Returns 0,
 * VIGIL_ENOMEM. */
int lh_create(const struct lh_limits *lim, const char *script_path,
              struct lh_state **out, struct vigil_err *err);
void lh_destroy(struct lh_state *s); /* accepts NULL */

lua_State *lh_lua(struct lh_state *s);

/* The lh_state that owns L (for bindings). */
struct lh_state *lh_from_lua(lua_State *L);

/* The first <dir>/<rel> of the script path that is a file, into out:
 * what `vigil.script(rel)` gives runbooks, so that an exec step or action
 * names a shipped (or an operator's overriding) script. Returns 0,
 * VIGIL_EINVAL for an absolute path or one with "..", VIGIL_ENOENT. */
int lh_find_script(const struct lh_state *s, const char *rel, char *out,
                   size_t size);

/* Load path as a text chunk with a fresh sandbox _ENV and push the
 * function (not run). chunkname is "@path" so errors say path:line.
 * Returns 0, VIGIL_ENOENT, VIGIL_EPARSE (also for binary chunks) or
 * VIGIL_ENOMEM with the message in err; nothing is pushed on error. */
int lh_load_file(struct lh_state *s, const char *path, struct vigil_err *err);

/* Same from a string; the chunkname is "=name", so errors say name:line
 * (name may be NULL: "chunk"). */
int lh_load_string(struct lh_state *s, const char *name, const char *text,
                   struct vigil_err *err);

/* Call the function below nargs arguments on the stack, as lua_pcall
 * does, under the time budget. On error nothing is left on the stack and
 * err holds "file:line: message" plus a short traceback; returns
 * VIGIL_ETIMEDOUT (budget), VIGIL_ENOMEM (memory cap; no traceback) or
 * VIGIL_EINVAL (a runtime error). A binding may call it again while a call
 * runs: the inner call shares the outer call's deadline. Main thread
 * only (the sandbox has no coroutines). */
int lh_pcall(struct lh_state *s, int nargs, int nresults,
             struct vigil_err *err);

/* Register a C module that `require(name)` returns (e.g. the core half
 * of the `vigil` library); it is opened once per state, in the sandbox,
 * and takes precedence over files of the same name. name is copied.
 * Returns 0 or VIGIL_ENOMEM (the state's memory cap). */
int lh_preload(struct lh_state *s, const char *name, lua_CFunction open);

/* Where `print` goes. line is "path:line: arg1<TAB>arg2...", valid during
 * the call only. The default (cb NULL) writes it to the log at info
 * level with src "lua". Does not fail. */
typedef void (*lh_print_cb)(void *arg, const char *line);
void lh_set_print(struct lh_state *s, lh_print_cb cb, void *arg);

/* Bytes currently allocated by the state. */
size_t lh_mem_used(const struct lh_state *s);

#endif
