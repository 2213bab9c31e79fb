/* runbook - Lua runbooks: loading, the `vigil` module, handlers, schedules,
 * conditions and reload. */
#include "runbook.h"

#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>
#include <lua.h>

#include "clock.h"
#include "log.h"
#include "lua_host.h"
#include "lua_json.h"
#include "runbook_plan.h"
#include "schedule.h"

#define RB_FILES_MAX 4096
#define RB_DEFAULT_QUARANTINE 5
#define RB_DEFAULT_NODATA_NS (300 * 1000000000LL)
#define RB_TICK_MS 1000
#define RB_REG_FILE "vigil.rbfile"

enum rb_item_kind { RB_HANDLER = 1, RB_SCHEDULE, RB_CONDITION };

/* A Lua function of a runbook that the engine calls. */
struct rb_item {
    int kind;
    char name[RULE_NAME_MAX]; /* handler: rule name or "*"; condition */
    int ref;                  /* the function in the registry */
    int line;
    int64_t every_ns; /* schedules and conditions */
    int64_t next_due;
    int level_true; /* condition: level when `when` is true */
    size_t decl;    /* condition: index of its declaration */
    unsigned errors_in_row;
    int quarantined;
};

/* What a declared rule carries besides its def: def.user points here. */
struct rb_meta {
    struct rb_file *file;
    int line;
    int labels_ref; /* table of extra labels or LUA_NOREF */
    char title[128];
    char runbook[RULE_NAME_MAX]; /* "" when the rule names none */
};

struct rb_decl {
    struct rule_def def;
    struct rb_meta *meta;
    struct rule *rule; /* once committed */
};

struct rb_file {
    struct rb_engine *engine;
    char path[PATH_MAX];
    struct lh_state *lh;
    struct rb_decl *decls;
    size_t ndecls, capdecls;
    struct rb_item *items;
    size_t nitems, capitems;
    struct rb_runbook *runbooks;
    size_t nrunbooks, caprunbooks;
    int loading;
    int seen; /* found in this load pass */
    struct rb_file *next;
};

struct rb_observer {
    rb_event_cb cb;
    void *arg;
};

struct rb_engine {
    struct rb_env env;
    char rules_dir[PATH_MAX];
    char script_path[PATH_MAX];
    struct rule_set *rules;
    struct rb_file *files;
    int64_t now;
    uv_timer_t timer;
    int timer_open;
    struct rb_observer obs[4];
    unsigned nobs;
};

static void rb_on_event(void *arg, const struct rule_event *ev);

/* ---------------------------------------------------------------- files */

static struct rb_file *file_new(struct rb_engine *e, const char *path)
{
    struct rb_file *f = calloc(1, sizeof(*f));

    if (f != NULL) {
        f->engine = e;
        snprintf(f->path, sizeof(f->path), "%s", path);
    }
    return f;
}

/* Free a file version: its rules must already be removed or adopted. */
static void file_free(struct rb_file *f)
{
    if (f == NULL) {
        return;
    }
    for (size_t i = 0; i < f->ndecls; i++) {
        free(f->decls[i].meta);
    }
    free(f->decls);
    free(f->items);
    for (size_t i = 0; i < f->nrunbooks; i++) {
        rb_plan_free(&f->runbooks[i]);
    }
    free(f->runbooks);
    lh_destroy(f->lh); /* drops every registry ref with the state */
    free(f);
}

static struct rb_file *file_of(lua_State *L)
{
    struct rb_file *f;

    lua_getfield(L, LUA_REGISTRYINDEX, RB_REG_FILE);
    f = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return f;
}

static int grow(void **arr, size_t *cap, size_t n, size_t size)
{
    if (n < *cap) {
        return 0;
    }
    size_t ncap = *cap ? *cap * 2 : 8;
    void *p = realloc(*arr, ncap * size);
    if (p == NULL) {
        return VIGIL_ENOMEM;
    }
    *arr = p;
    *cap = ncap;
    return 0;
}

/* ---------------------------------------------------------------- values */

/* Duration argument: a string such as "30s" or a number of seconds. */
static int64_t check_duration(lua_State *L, int idx, const char *what)
{
    int64_t ms = 0;

    if (lua_type(L, idx) == LUA_TNUMBER) {
        double s = lua_tonumber(L, idx);
        if (!(s >= 0) || s > 1e9) {
            luaL_error(L, "%s: expected a duration, got %f", what, s);
        }
        return (int64_t)(s * 1e9);
    }
    if (lua_type(L, idx) != LUA_TSTRING ||
        cfg_parse_duration_ms(lua_tostring(L, idx), &ms) != 0) {
        luaL_error(L, "%s: expected a duration such as \"30s\" or \"5m\"",
                   what);
    }
    return ms * 1000000;
}

static int parse_level_name(const char *s)
{
    static const char *const names[] = {"ok", "warning", "critical"};

    for (int i = 0; i < 3; i++) {
        if (strcmp(s, names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

/* Read `key` of the table at idx as a level: a number (one side, per
 * direction) or a pair {low, high} (a band). */
static void get_level(lua_State *L, int idx, const char *key, int below,
                      double *above_out, double *below_out)
{
    int t = lua_getfield(L, idx, key);

    if (t == LUA_TNUMBER) {
        if (below) {
            *below_out = lua_tonumber(L, -1);
        } else {
            *above_out = lua_tonumber(L, -1);
        }
    } else if (t == LUA_TTABLE) {
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        if (!lua_isnumber(L, -2) || !lua_isnumber(L, -1) ||
            lua_rawlen(L, -3) != 2) {
            luaL_error(L, "%s: expected a number or a band {low, high}", key);
        }
        *below_out = lua_tonumber(L, -2);
        *above_out = lua_tonumber(L, -1);
        lua_pop(L, 2);
    } else if (t != LUA_TNIL) {
        luaL_error(L, "%s: expected a number or a band {low, high}", key);
    }
    lua_pop(L, 1);
}

/* Levenshtein distance of short keys, for "did you mean". */
static int edit_distance(const char *a, const char *b)
{
    int la = (int)strlen(a), lb = (int)strlen(b);
    int row[64];

    if (la >= 63 || lb >= 63) {
        return 99;
    }
    for (int j = 0; j <= lb; j++) {
        row[j] = j;
    }
    for (int i = 1; i <= la; i++) {
        int prev = row[0];
        row[0] = i;
        for (int j = 1; j <= lb; j++) {
            int cur = row[j];
            int sub = prev + (a[i - 1] != b[j - 1]);
            int best =
                row[j] + 1 < row[j - 1] + 1 ? row[j] + 1 : row[j - 1] + 1;
            row[j] = sub < best ? sub : best;
            prev = cur;
        }
    }
    return row[lb];
}

static const char *const key_aliases[][2] = {
    {"critical", "crit"},   {"warning", "warn"},  {"threshold", "crit"},
    {"interval", "every"},  {"duration", "hold"}, {"for", "hold"},
    {"selector", "metric"}, {"series", "metric"}, {"statistic", "stat"},
};

/* Every key of the table at idx must be one of keys. */
static void check_keys(lua_State *L, int idx, const char *const *keys,
                       const char *what, const char *name)
{
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            luaL_error(L, "%s '%s': keys must be names", what, name);
        }
        const char *k = lua_tostring(L, -1);
        const char *best = NULL;
        int bestd = 3;
        int found = 0;
        for (const char *const *p = keys; *p; p++) {
            if (strcmp(*p, k) == 0) {
                found = 1;
                break;
            }
            int d = edit_distance(k, *p);
            if (d < bestd) {
                bestd = d;
                best = *p;
            }
        }
        /* People write the long forms; suggest the key they meant. */
        for (size_t i = 0;
             !found && i < sizeof(key_aliases) / sizeof(key_aliases[0]); i++) {
            int d = edit_distance(k, key_aliases[i][0]);
            int valid = 0;
            for (const char *const *p = keys; *p; p++) {
                valid |= strcmp(*p, key_aliases[i][1]) == 0;
            }
            if (valid && d < bestd) {
                bestd = d;
                best = key_aliases[i][1];
            }
        }
        if (!found) {
            if (best != NULL) {
                luaL_error(L, "%s '%s': unknown key '%s'; did you mean '%s'?",
                           what, name, k, best);
            }
            luaL_error(L, "%s '%s': unknown key '%s'", what, name, k);
        }
    }
}

/* ---------------------------------------------------------------- declare */

static const char *const threshold_keys[] = {
    "metric", "stat",  "window",     "warn",       "crit",   "direction",
    "hold",   "clear", "crit_clear", "clear_hold", "nodata", "flap",
    "labels", "title", "runbook",    NULL};

static const char *const condition_keys[] = {
    "when", "every",  "level", "hold",    "clear_hold", "nodata",
    "flap", "labels", "title", "runbook", NULL};

/* Settings both kinds share: hold, clear_hold, nodata, flap, labels,
 * title. The table is at idx. */
static void decl_common(lua_State *L, int idx, struct rule_def *def,
                        struct rb_meta *meta)
{
    if (lua_getfield(L, idx, "hold") != LUA_TNIL) {
        def->hold_ns = check_duration(L, -1, "hold");
    }
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "clear_hold") != LUA_TNIL) {
        def->clear_hold_ns = check_duration(L, -1, "clear_hold");
    }
    lua_pop(L, 1);
    def->nodata_ns = RB_DEFAULT_NODATA_NS;
    int t = lua_getfield(L, idx, "nodata");
    if (t == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
        def->nodata_ns = 0;
    } else if (t != LUA_TNIL) {
        def->nodata_ns = check_duration(L, -1, "nodata");
    }
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "flap") == LUA_TTABLE) {
        lua_getfield(L, -1, "count");
        lua_getfield(L, -2, "window");
        if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) < 1) {
            luaL_error(L, "flap.count: expected a whole number above 0");
        }
        def->flap_max = (unsigned)lua_tointeger(L, -2);
        def->flap_window_ns = check_duration(L, -1, "flap.window");
        lua_pop(L, 2);
    } else if (!lua_isnil(L, -1)) {
        luaL_error(L, "flap: expected { count = N, window = \"10m\" }");
    }
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "labels") == LUA_TTABLE) {
        meta->labels_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    } else {
        if (!lua_isnil(L, -1)) {
            luaL_error(L, "labels: expected a table");
        }
        lua_pop(L, 1);
    }
    if (lua_getfield(L, idx, "title") == LUA_TSTRING) {
        snprintf(meta->title, sizeof(meta->title), "%s", lua_tostring(L, -1));
    }
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "runbook") != LUA_TNIL) {
        snprintf(meta->runbook, sizeof(meta->runbook), "%s",
                 luaL_checkstring(L, -1));
    }
    lua_pop(L, 1);
}

static void decl_threshold(lua_State *L, int idx, struct rule_def *def)
{
    struct vigil_err err = {0};
    int below = 0;

    def->kind = RULE_THRESHOLD;
    if (lua_getfield(L, idx, "metric") != LUA_TSTRING) {
        luaL_error(L, "threshold '%s' needs metric = \"name{label=glob}\"",
                   def->name);
    }
    if (bus_selector_parse(lua_tostring(L, -1), &def->sel, &err) != 0) {
        luaL_error(L, "threshold '%s': metric: %s", def->name, err.msg);
    }
    lua_pop(L, 1);
    def->stat.kind = WIN_LAST;
    if (lua_getfield(L, idx, "stat") != LUA_TNIL) {
        const char *s = luaL_checkstring(L, -1);
        if (win_stat_parse(s, &def->stat) != 0) {
            luaL_error(L,
                       "threshold '%s': unknown stat '%s'; expected last, "
                       "avg, min, max, sum, count, delta, rate, slope or "
                       "pNN",
                       def->name, s);
        }
    }
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "window") != LUA_TNIL) {
        def->window_ns = check_duration(L, -1, "window");
    }
    lua_pop(L, 1);
    if (def->stat.kind != WIN_LAST && def->window_ns == 0) {
        luaL_error(L, "threshold '%s': stat '%s' needs a window", def->name,
                   win_stat_name(def->stat, (char[16]){0}, 16));
    }
    if (lua_getfield(L, idx, "direction") != LUA_TNIL) {
        const char *d = luaL_checkstring(L, -1);
        if (strcmp(d, "below") == 0) {
            below = 1;
        } else if (strcmp(d, "above") != 0) {
            luaL_error(L, "direction: expected \"above\" or \"below\"");
        }
    }
    lua_pop(L, 1);
    get_level(L, idx, "warn", below, &def->warn_above, &def->warn_below);
    get_level(L, idx, "crit", below, &def->crit_above, &def->crit_below);
    get_level(L, idx, "clear", below, &def->clear_above, &def->clear_below);
    get_level(L, idx, "crit_clear", below, &def->crit_clear_above,
              &def->crit_clear_below);
}

/* FNV-1a of the source lines of the function on top of the stack, so that
 * a reload notices an edited predicate even when nothing else changed. */
static uint64_t function_fingerprint(lua_State *L, const char *path)
{
    uint64_t h = 1469598103934665603ULL;
    lua_Debug ar;
    char line[512];
    int n = 0;
    FILE *f;

    lua_pushvalue(L, -1);
    if (!lua_getinfo(L, ">S", &ar) || ar.linedefined <= 0 ||
        (f = fopen(path, "r")) == NULL) {
        return 0;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        size_t len = strlen(line);
        n += len > 0 && line[len - 1] == '\n';
        if (n < ar.linedefined || n > ar.lastlinedefined) {
            continue;
        }
        for (size_t i = 0; i < len; i++) {
            h = (h ^ (unsigned char)line[i]) * 1099511628211ULL;
        }
    }
    fclose(f);
    return h;
}

static void decl_condition(lua_State *L, int idx, struct rule_def *def,
                           struct rb_item *item)
{
    def->kind = RULE_CONDITION;
    /* A condition feeds levels 0..2 itself; its "threshold" is the level. */
    def->warn_above = 0.5;
    def->crit_above = 1.5;
    if (lua_getfield(L, idx, "when") != LUA_TFUNCTION) {
        luaL_error(L, "condition '%s' needs when = function() ... end",
                   def->name);
    }
    def->fingerprint = function_fingerprint(L, file_of(L)->path);
    item->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (lua_getfield(L, idx, "every") == LUA_TNIL) {
        luaL_error(L, "condition '%s' needs every = \"10s\"", def->name);
    }
    item->every_ns = check_duration(L, -1, "every");
    if (item->every_ns < 1000000) {
        luaL_error(L, "condition '%s': every must be at least 1ms", def->name);
    }
    lua_pop(L, 1);
    item->level_true = RULE_CRITICAL;
    if (lua_getfield(L, idx, "level") != LUA_TNIL) {
        item->level_true = parse_level_name(luaL_checkstring(L, -1));
        if (item->level_true < RULE_WARNING) {
            luaL_error(L, "level: expected \"warning\" or \"critical\"");
        }
    }
    lua_pop(L, 1);
}

/* The curried second call: vigil.threshold "name" { ... }. The name is
 * upvalue 1, the kind upvalue 2 (0 threshold, 1 condition). */
static int l_rb_declare(lua_State *L)
{
    struct rb_file *f = file_of(L);
    const char *name = lua_tostring(L, lua_upvalueindex(1));
    int is_cond = (int)lua_tointeger(L, lua_upvalueindex(2));
    const char *what = is_cond ? "condition" : "threshold";
    struct vigil_err err = {0};
    lua_Debug ar;

    luaL_checktype(L, 1, LUA_TTABLE);
    if (f == NULL || !f->loading) {
        return luaL_error(L, "%s '%s' declared outside a runbook load", what,
                          name);
    }
    check_keys(L, 1, is_cond ? condition_keys : threshold_keys, what, name);
    for (size_t i = 0; i < f->ndecls; i++) {
        if (strcmp(f->decls[i].def.name, name) == 0) {
            return luaL_error(L, "%s '%s' is already declared at line %d", what,
                              name, f->decls[i].meta->line);
        }
    }
    if (grow((void **)&f->decls, &f->capdecls, f->ndecls, sizeof(*f->decls)) ||
        grow((void **)&f->items, &f->capitems, f->nitems, sizeof(*f->items))) {
        return luaL_error(L, "out of memory");
    }
    struct rb_decl *d = &f->decls[f->ndecls];
    memset(d, 0, sizeof(*d));
    d->meta = calloc(1, sizeof(*d->meta));
    if (d->meta == NULL) {
        return luaL_error(L, "out of memory");
    }
    f->ndecls++; /* owned by the file from here on, even on error */
    d->meta->file = f;
    d->meta->labels_ref = LUA_NOREF;
    d->meta->line = lua_getstack(L, 1, &ar) && lua_getinfo(L, "l", &ar)
                        ? ar.currentline
                        : 0;
    rule_def_init(&d->def);
    snprintf(d->def.name, sizeof(d->def.name), "%s", name);
    d->def.user = d->meta;
    if (is_cond) {
        struct rb_item *it = &f->items[f->nitems];
        memset(it, 0, sizeof(*it));
        it->kind = RB_CONDITION;
        it->line = d->meta->line;
        it->decl = f->ndecls - 1;
        snprintf(it->name, sizeof(it->name), "%s", name);
        decl_condition(L, 1, &d->def, it);
        f->nitems++;
    } else {
        decl_threshold(L, 1, &d->def);
    }
    decl_common(L, 1, &d->def, d->meta);
    if (rule_def_check(&d->def, &err) != 0) {
        return luaL_error(L, "%s '%s': %s", what, name, err.msg);
    }
    return 0;
}

static int declare_name(lua_State *L, int is_cond)
{
    size_t len;

    luaL_checklstring(L, 1, &len);
    if (len == 0 || len >= RULE_NAME_MAX) {
        return luaL_error(L, "a rule name has 1 to %d characters",
                          RULE_NAME_MAX - 1);
    }
    lua_pushvalue(L, 1);
    lua_pushinteger(L, is_cond);
    lua_pushcclosure(L, l_rb_declare, 2);
    return 1;
}

static int l_rb_threshold(lua_State *L)
{
    return declare_name(L, 0);
}

static int l_rb_condition(lua_State *L)
{
    return declare_name(L, 1);
}

/* vigil.on(rule, fn) and vigil.every(interval, fn). */
static int add_item(lua_State *L, int kind)
{
    struct rb_file *f = file_of(L);
    lua_Debug ar;

    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (f == NULL || !f->loading) {
        return luaL_error(L, "handlers are declared while a runbook loads");
    }
    if (grow((void **)&f->items, &f->capitems, f->nitems, sizeof(*f->items))) {
        return luaL_error(L, "out of memory");
    }
    struct rb_item *it = &f->items[f->nitems];
    memset(it, 0, sizeof(*it));
    it->kind = kind;
    if (kind == RB_HANDLER) {
        snprintf(it->name, sizeof(it->name), "%s", luaL_checkstring(L, 1));
    } else {
        it->every_ns = check_duration(L, 1, "every");
        if (it->every_ns < 1000000) {
            return luaL_error(L, "every: at least 1ms");
        }
    }
    it->line = lua_getstack(L, 1, &ar) && lua_getinfo(L, "l", &ar)
                   ? ar.currentline
                   : 0;
    lua_pushvalue(L, 2);
    it->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    f->nitems++;
    return 0;
}

/* vigil.runbook "name" { ... }: the second call. */
static int l_rb_runbook_body(lua_State *L)
{
    struct rb_file *f = file_of(L);
    const char *name = lua_tostring(L, lua_upvalueindex(1));
    lua_Debug ar;

    luaL_checktype(L, 1, LUA_TTABLE);
    if (f == NULL || !f->loading) {
        return luaL_error(L, "runbook '%s' declared outside a runbook load",
                          name);
    }
    for (size_t i = 0; i < f->nrunbooks; i++) {
        if (strcmp(f->runbooks[i].name, name) == 0) {
            return luaL_error(L,
                              "runbook '%s' is already declared at line "
                              "%d",
                              name, f->runbooks[i].line);
        }
    }
    if (grow((void **)&f->runbooks, &f->caprunbooks, f->nrunbooks,
             sizeof(*f->runbooks))) {
        return luaL_error(L, "out of memory");
    }
    struct rb_runbook *rb = &f->runbooks[f->nrunbooks++];
    memset(rb, 0, sizeof(*rb));
    rb->recommend_ref = LUA_NOREF;
    snprintf(rb->name, sizeof(rb->name), "%s", name);
    rb->path = f->path;
    rb->file = f;
    rb->line = lua_getstack(L, 1, &ar) && lua_getinfo(L, "l", &ar)
                   ? ar.currentline
                   : 0;
    rb_plan_parse(L, 1, rb);
    return 0;
}

static int l_rb_runbook(lua_State *L)
{
    size_t len;

    luaL_checklstring(L, 1, &len);
    if (len == 0 || len >= RULE_NAME_MAX) {
        return luaL_error(L, "a runbook name has 1 to %d characters",
                          RULE_NAME_MAX - 1);
    }
    lua_settop(L, 1);
    lua_pushcclosure(L, l_rb_runbook_body, 1);
    return 1;
}

static int l_rb_on(lua_State *L)
{
    return add_item(L, RB_HANDLER);
}

static int l_rb_every(lua_State *L)
{
    return add_item(L, RB_SCHEDULE);
}

/* ---------------------------------------------------------------- read */

/* Arguments (selector, stat, window) at 1..3. */
static void read_args(lua_State *L, struct bus_selector *sel,
                      struct win_stat *st, int64_t *span)
{
    struct vigil_err err = {0};
    const char *s = luaL_checkstring(L, 1);

    if (bus_selector_parse(s, sel, &err) != 0) {
        luaL_error(L, "%s", err.msg);
    }
    st->kind = WIN_LAST;
    if (!lua_isnoneornil(L, 2) &&
        win_stat_parse(luaL_checkstring(L, 2), st) != 0) {
        luaL_error(L, "unknown stat '%s'", lua_tostring(L, 2));
    }
    *span = lua_isnoneornil(L, 3) ? 0 : check_duration(L, 3, "window");
}

static void push_labels(lua_State *L, struct bus *bus, vigil_series_id id)
{
    size_t n;
    const struct vigil_label *l = bus_series_labels(bus, id, &n);

    lua_createtable(L, 0, (int)n);
    for (size_t i = 0; i < n; i++) {
        lua_pushstring(L, l[i].value);
        lua_setfield(L, -2, l[i].key);
    }
}

static int l_rb_value(lua_State *L)
{
    struct rb_engine *e = file_of(L)->engine;
    struct bus *bus = e->env.bus;
    struct bus_selector sel;
    struct win_stat st;
    int64_t span;
    unsigned matches = 0;
    double v = 0, out;
    int have = 0;

    read_args(L, &sel, &st, &span);
    for (uint32_t id = 0; id < bus_series_count(bus); id++) {
        if (!bus_match(bus, id, &sel)) {
            continue;
        }
        if (++matches > 1) {
            return luaL_error(L,
                              "'%s' matches several series; use "
                              "vigil.values",
                              lua_tostring(L, 1));
        }
        if (bus_stat(bus, id, st, e->now, span, &out) == 0) {
            v = out;
            have = 1;
        }
    }
    if (!have) {
        lua_pushnil(L);
    } else {
        lua_pushnumber(L, v);
    }
    return 1;
}

static int l_rb_values(lua_State *L)
{
    struct rb_engine *e = file_of(L)->engine;
    struct bus *bus = e->env.bus;
    struct bus_selector sel;
    struct win_stat st;
    int64_t span;
    double v;
    int n = 0;

    read_args(L, &sel, &st, &span);
    lua_newtable(L);
    for (uint32_t id = 0; id < bus_series_count(bus); id++) {
        if (!bus_match(bus, id, &sel) ||
            bus_stat(bus, id, st, e->now, span, &v) != 0) {
            continue;
        }
        lua_createtable(L, 0, 3);
        lua_pushstring(L, bus_series_key(bus, id));
        lua_setfield(L, -2, "series");
        push_labels(L, bus, id);
        lua_setfield(L, -2, "labels");
        lua_pushnumber(L, v);
        lua_setfield(L, -2, "value");
        lua_rawseti(L, -2, ++n);
    }
    return 1;
}

/* Severity order for "the worst state": a silent series is worse than an
 * ok one and better than one over its threshold. */
static int state_rank(int state)
{
    static const int rank[] = {0, 2, 3, 1}; /* ok warning critical nodata */

    return rank[state];
}

static int l_rb_state(lua_State *L)
{
    struct rb_engine *e = file_of(L)->engine;
    struct rule *r = rule_find(e->rules, luaL_checkstring(L, 1));
    struct rule_inst_info info;
    int worst = RULE_NODATA; /* a rule that matched nothing yet */

    if (r == NULL) {
        return luaL_error(L, "no rule named '%s'", lua_tostring(L, 1));
    }
    for (unsigned i = 0; i < rule_instances(r); i++) {
        if (rule_instance_info(r, i, &info) != 0) {
            continue;
        }
        if (i == 0 || state_rank(info.state) > state_rank(worst)) {
            worst = info.state;
        }
    }
    lua_pushstring(L, rule_state_name(worst));
    return 1;
}

static int l_rb_log(lua_State *L)
{
    static const char *const levels[] = {"error", "warn", "info", "debug",
                                         NULL};
    int level = luaL_checkoption(L, 1, NULL, levels);
    const char *msg = luaL_checkstring(L, 2);
    struct rb_file *f = file_of(L);
    lua_Debug ar;
    int line = lua_getstack(L, 1, &ar) && lua_getinfo(L, "l", &ar)
                   ? ar.currentline
                   : 0;
    char src[PATH_MAX + 32];

    snprintf(src, sizeof(src), "runbook=%s:%d", f ? f->path : "?", line);
    log_msg(level, src, "%s", msg);
    return 0;
}

static int l_rb_now(lua_State *L)
{
    struct rb_engine *e = file_of(L)->engine;

    lua_pushnumber(L, (double)e->now / 1e9);
    return 1;
}

/* vigil.script("investigate/cpu_profile.sh"): its absolute path in the
 * script path, for exec argv. */
static int l_rb_script(lua_State *L)
{
    const char *rel = luaL_checkstring(L, 1);
    char path[PATH_MAX];
    int rc = lh_find_script(lh_from_lua(L), rel, path, sizeof(path));

    if (rc == VIGIL_EINVAL) {
        return luaL_error(L,
                          "vigil.script: '%s': a path relative to the "
                          "script directories, without '..'",
                          rel);
    }
    if (rc != 0) {
        return luaL_error(L, "vigil.script: no '%s' in the script path", rel);
    }
    lua_pushstring(L, path);
    return 1;
}

static const luaL_Reg rb_lib[] = {
    {"threshold", l_rb_threshold},
    {"condition", l_rb_condition},
    {"runbook", l_rb_runbook},
    {"step", rb_plan_l_step},
    {"action", rb_plan_l_action},
    {"on", l_rb_on},
    {"every", l_rb_every},
    {"value", l_rb_value},
    {"values", l_rb_values},
    {"state", l_rb_state},
    {"log", l_rb_log},
    {"now", l_rb_now},
    {"script", l_rb_script},
    {NULL, NULL},
};

static int l_rb_open(lua_State *L)
{
    luaL_newlib(L, rb_lib);
    return 1;
}

/* ---------------------------------------------------------------- calls */

static const char *kind_name(int kind)
{
    return kind == RB_HANDLER    ? "handler"
           : kind == RB_SCHEDULE ? "schedule"
                                 : "condition";
}

/* Call an item's function with nargs arguments already pushed above it;
 * count failures and quarantine after quarantine_after in a row. Leaves
 * nresults on the stack on success. Returns 0 or the lh_pcall code. */
static int item_call(struct rb_file *f, struct rb_item *it, int nargs,
                     int nresults)
{
    lua_State *L = lh_lua(f->lh);
    struct vigil_err err = {0};
    unsigned limit = f->engine->env.quarantine_after;
    char src[PATH_MAX + 32];
    int rc;

    rc = lh_pcall(f->lh, nargs, nresults, &err);
    if (rc == 0) {
        it->errors_in_row = 0;
        return 0;
    }
    it->errors_in_row++;
    snprintf(src, sizeof(src), "runbook=%s:%d", f->path, it->line);
    if (it->errors_in_row >= limit) {
        it->quarantined = 1;
        log_error(src,
                  "%s '%s' quarantined after %u errors in a row; "
                  "last: %s",
                  kind_name(it->kind), it->name, limit, err.msg);
    } else {
        log_error(src, "%s '%s' failed: %s", kind_name(it->kind), it->name,
                  err.msg);
    }
    (void)L;
    return rc;
}

/* Push the event table a handler receives. */
static void push_event(lua_State *L, struct rb_engine *e,
                       const struct rule_event *ev)
{
    const struct rb_meta *meta = ev->def->user;

    lua_createtable(L, 0, 10);
    lua_pushstring(L, ev->def->name);
    lua_setfield(L, -2, "rule");
    if (ev->def->kind == RULE_THRESHOLD) {
        lua_pushstring(L, bus_series_key(e->env.bus, ev->series));
        lua_setfield(L, -2, "series");
        push_labels(L, e->env.bus, ev->series);
    } else {
        lua_newtable(L);
    }
    if (meta->labels_ref != LUA_NOREF && meta->file->lh != NULL &&
        lh_lua(meta->file->lh) == L) {
        /* The rule's own labels, merged over the series' labels. */
        lua_rawgeti(L, LUA_REGISTRYINDEX, meta->labels_ref);
        lua_pushnil(L);
        while (lua_next(L, -2) != 0) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_settable(L, -5);
        }
        lua_pop(L, 1);
    }
    lua_setfield(L, -2, "labels");
    lua_pushstring(L, rule_state_name(ev->from));
    lua_setfield(L, -2, "from");
    lua_pushstring(L, rule_state_name(ev->to));
    lua_setfield(L, -2, "to");
    lua_pushnumber(L, ev->value);
    lua_setfield(L, -2, "value");
    lua_pushstring(L, ev->reason ? ev->reason : "");
    lua_setfield(L, -2, "reason");
    lua_pushnumber(L, (double)ev->ts / 1e9);
    lua_setfield(L, -2, "time");
    if (ev->flapping != 0) {
        lua_pushstring(L, ev->flapping > 0 ? "start" : "end");
        lua_setfield(L, -2, "flapping");
    }
    if (meta->title[0] != '\0') {
        lua_pushstring(L, meta->title);
        lua_setfield(L, -2, "title");
    }
}

/* Every transition: observers first (they record), then Lua handlers. */
static void rb_on_event(void *arg, const struct rule_event *ev)
{
    struct rb_engine *e = arg;
    const struct rb_meta *meta = ev->def->user;

    /* Handlers that read metrics see them as of the event. */
    e->now = ev->ts;
    for (unsigned i = 0; i < e->nobs; i++) {
        e->obs[i].cb(e->obs[i].arg, ev, meta->file->path);
    }
    for (struct rb_file *f = e->files; f != NULL; f = f->next) {
        for (size_t i = 0; i < f->nitems; i++) {
            struct rb_item *it = &f->items[i];
            if (it->kind != RB_HANDLER || it->quarantined ||
                (strcmp(it->name, ev->def->name) != 0 &&
                 !(strcmp(it->name, "*") == 0 && meta->file == f))) {
                continue;
            }
            lua_State *L = lh_lua(f->lh);
            lua_rawgeti(L, LUA_REGISTRYINDEX, it->ref);
            push_event(L, e, ev);
            item_call(f, it, 1, 0);
        }
    }
}

/* Run a condition's predicate and feed its rule. */
static void run_condition(struct rb_file *f, struct rb_item *it)
{
    lua_State *L = lh_lua(f->lh);
    struct rule *r = f->decls[it->decl].rule;
    int level = RULE_OK;
    double value = NAN;

    if (r == NULL) {
        return;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, it->ref);
    if (item_call(f, it, 0, 2) != 0) {
        return;
    }
    if (lua_type(L, -2) == LUA_TSTRING) {
        level = parse_level_name(lua_tostring(L, -2));
        if (level < 0) {
            log_error("runbook",
                      "%s:%d: condition '%s' returned '%s'; "
                      "expected ok, warning or critical",
                      f->path, it->line, it->name, lua_tostring(L, -2));
            level = RULE_OK;
        }
    } else if (lua_toboolean(L, -2)) {
        level = it->level_true;
    }
    if (lua_isnumber(L, -1)) {
        value = lua_tonumber(L, -1);
    } else {
        value = level;
    }
    lua_pop(L, 2);
    rule_feed(f->engine->rules, r, f->engine->now, level, value);
}

void rb_engine_tick(struct rb_engine *e, int64_t now)
{
    e->now = now;
    for (struct rb_file *f = e->files; f != NULL; f = f->next) {
        for (size_t i = 0; i < f->nitems; i++) {
            struct rb_item *it = &f->items[i];
            if (it->kind == RB_HANDLER || it->quarantined ||
                now < it->next_due) {
                continue;
            }
            it->next_due = sched_next_boundary(now, it->every_ns, 0);
            if (it->kind == RB_CONDITION) {
                run_condition(f, it);
            } else {
                lua_rawgeti(lh_lua(f->lh), LUA_REGISTRYINDEX, it->ref);
                item_call(f, it, 0, 0);
            }
        }
    }
    rule_set_tick(e->rules, now);
}

/* ---------------------------------------------------------------- load */

/* Run path in a fresh state; on success *out holds the new version with
 * its declarations (not yet committed). */
static int file_load(struct rb_engine *e, const char *path,
                     struct rb_file **out, struct cfg_diag *diag)
{
    struct lh_limits lim = {.mem_max = e->env.mem_max,
                            .budget_ns = e->env.budget_ns};
    struct vigil_err err = {0};
    struct rb_file *f = file_new(e, path);
    int rc;

    *out = NULL;
    if (f == NULL) {
        cfg_diag_add(diag, "%s: out of memory", path);
        return VIGIL_ENOMEM;
    }
    rc = lh_create(&lim, e->script_path, &f->lh, &err);
    if (rc != 0) {
        goto fail;
    }
    lua_State *L = lh_lua(f->lh);
    lua_pushlightuserdata(L, f);
    lua_setfield(L, LUA_REGISTRYINDEX, RB_REG_FILE);
    lh_preload(f->lh, "vigil", l_rb_open);
    rc = lh_load_file(f->lh, path, &err);
    if (rc != 0) {
        goto fail;
    }
    f->loading = 1;
    rc = lh_pcall(f->lh, 0, 0, &err);
    f->loading = 0;
    if (rc != 0) {
        goto fail;
    }
    *out = f;
    return 0;
fail:
    /* A declaration error needs no traceback: file:line says it all. */
    if (strstr(err.msg, "\nstack traceback:") != NULL && f->lh != NULL &&
        rc == VIGIL_EINVAL) {
        *strstr(err.msg, "\nstack traceback:") = '\0';
    }
    /* lua_host messages already start with path:line. */
    if (strncmp(err.msg, path, strlen(path)) == 0) {
        cfg_diag_add(diag, "%s", err.msg);
    } else {
        cfg_diag_add(diag, "%s: %s", path, err.msg);
    }
    file_free(f);
    return rc;
}

static struct rb_decl *find_decl(struct rb_file *f, const char *name)
{
    for (size_t i = 0; f != NULL && i < f->ndecls; i++) {
        if (strcmp(f->decls[i].def.name, name) == 0) {
            return &f->decls[i];
        }
    }
    return NULL;
}

/* A new version's rule names must not be taken by another file. */
static int names_free(struct rb_engine *e, struct rb_file *nf,
                      struct rb_file *old, struct cfg_diag *diag)
{
    for (size_t i = 0; i < nf->ndecls; i++) {
        struct rule *r = rule_find(e->rules, nf->decls[i].def.name);
        if (r == NULL) {
            continue;
        }
        const struct rb_meta *m = rule_get_def(r)->user;
        if (m->file != old) {
            cfg_diag_add(diag,
                         "%s:%d: rule '%s' is already declared in "
                         "%s:%d",
                         nf->path, nf->decls[i].meta->line,
                         nf->decls[i].def.name, m->file->path, m->line);
            return 0;
        }
    }
    for (size_t i = 0; i < nf->nrunbooks; i++) {
        const struct rb_runbook *rb =
            rb_engine_runbook(e, nf->runbooks[i].name);
        if (rb != NULL && rb->file != old) {
            cfg_diag_add(diag,
                         "%s:%d: runbook '%s' is already declared in "
                         "%s:%d",
                         nf->path, nf->runbooks[i].line, rb->name, rb->path,
                         rb->line);
            return 0;
        }
    }
    return 1;
}

/* Every rule that names a runbook must find it (in any file). */
static void check_runbook_refs(struct rb_engine *e, struct cfg_diag *diag)
{
    for (struct rb_file *f = e->files; f != NULL; f = f->next) {
        for (size_t i = 0; i < f->ndecls; i++) {
            const struct rb_meta *m = f->decls[i].meta;
            if (m->runbook[0] != '\0' &&
                rb_engine_runbook(e, m->runbook) == NULL) {
                cfg_diag_add(diag,
                             "%s:%d: rule '%s' names runbook '%s', "
                             "which no runbook file declares",
                             f->path, m->line, f->decls[i].def.name,
                             m->runbook);
            }
        }
    }
}

/* Put a loaded version in service in place of old (may be NULL): keep
 * unchanged rules with their state, replace changed ones, drop the rest. */
static void file_commit(struct rb_engine *e, struct rb_file *nf,
                        struct rb_file *old, struct cfg_diag *diag)
{
    struct vigil_err err = {0};

    for (size_t i = 0; old != NULL && i < old->ndecls; i++) {
        struct rb_decl *od = &old->decls[i];
        struct rb_decl *nd = find_decl(nf, od->def.name);
        if (od->rule == NULL) {
            continue;
        }
        if (nd != NULL && rule_def_same(&od->def, &nd->def)) {
            nd->rule = od->rule;
            rule_set_user(nd->rule, nd->meta);
        } else {
            rule_remove(e->rules, od->rule);
        }
        od->rule = NULL;
    }
    for (size_t i = 0; i < nf->ndecls; i++) {
        struct rb_decl *nd = &nf->decls[i];
        if (nd->rule == NULL &&
            rule_add(e->rules, &nd->def, &nd->rule, &err) != 0) {
            cfg_diag_add(diag, "%s:%d: %s", nf->path, nd->meta->line, err.msg);
            err.code = 0;
        }
    }
}

static struct rb_file **file_slot(struct rb_engine *e, const char *path)
{
    struct rb_file **pf = &e->files;

    while (*pf != NULL && strcmp((*pf)->path, path) != 0) {
        pf = &(*pf)->next;
    }
    return pf;
}

static void load_one(struct rb_engine *e, const char *path,
                     struct cfg_diag *diag)
{
    struct rb_file **slot = file_slot(e, path);
    struct rb_file *old = *slot, *nf;

    if (old != NULL) {
        old->seen = 1;
    }
    if (file_load(e, path, &nf, diag) != 0) {
        return; /* the old version, if any, keeps running */
    }
    if (!names_free(e, nf, old, diag)) {
        file_free(nf);
        return;
    }
    file_commit(e, nf, old, diag);
    nf->seen = 1;
    nf->next = old ? old->next : NULL;
    *slot = nf;
    file_free(old);
}

/* Remove files that were not seen in this pass (deleted runbooks). */
static void drop_unseen(struct rb_engine *e)
{
    struct rb_file **pf = &e->files;

    while (*pf != NULL) {
        struct rb_file *f = *pf;
        if (f->seen) {
            f->seen = 0;
            pf = &f->next;
            continue;
        }
        for (size_t i = 0; i < f->ndecls; i++) {
            rule_remove(e->rules, f->decls[i].rule);
        }
        *pf = f->next;
        file_free(f);
    }
}

static int count_files(const struct rb_engine *e)
{
    int count = 0;

    for (const struct rb_file *f = e->files; f != NULL; f = f->next) {
        count++;
    }
    return count;
}

int rb_engine_load_files(struct rb_engine *e, const char *const *paths,
                         size_t n, struct cfg_diag *diag)
{
    for (size_t i = 0; i < n; i++) {
        load_one(e, paths[i], diag);
    }
    return count_files(e);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Collect *.lua below dir (recursively) into paths. */
static void scan_dir(const char *dir, char **paths, size_t *n, size_t max,
                     int depth)
{
    DIR *dh = opendir(dir);
    struct dirent *de;

    if (dh == NULL || depth > 8) {
        if (dh != NULL) {
            closedir(dh);
        }
        return;
    }
    while ((de = readdir(dh)) != NULL && *n < max) {
        char path[PATH_MAX];
        struct stat st;
        size_t len = strlen(de->d_name);
        if (de->d_name[0] == '.' ||
            snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >=
                (int)sizeof(path) ||
            stat(path, &st) != 0) {
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            scan_dir(path, paths, n, max, depth + 1);
        } else if (S_ISREG(st.st_mode) && len > 4 &&
                   strcmp(de->d_name + len - 4, ".lua") == 0 &&
                   strstr(de->d_name, "_test.lua") == NULL) {
            paths[*n] = strdup(path);
            if (paths[*n] != NULL) {
                (*n)++;
            }
        }
    }
    closedir(dh);
}

int rb_engine_load(struct rb_engine *e, struct cfg_diag *diag)
{
    char **paths = calloc(RB_FILES_MAX, sizeof(*paths));
    size_t n = 0;
    int count;

    if (paths == NULL) {
        cfg_diag_add(diag, "%s: out of memory", e->rules_dir);
        return 0;
    }
    scan_dir(e->rules_dir, paths, &n, RB_FILES_MAX, 0);
    qsort(paths, n, sizeof(*paths), cmp_str);
    rb_engine_load_files(e, (const char *const *)paths, n, diag);
    drop_unseen(e);
    check_runbook_refs(e, diag);
    count = count_files(e);
    for (size_t i = 0; i < n; i++) {
        free(paths[i]);
    }
    free(paths);
    return count;
}

/* ---------------------------------------------------------------- engine */

int rb_engine_create(const struct rb_env *env, struct rb_engine **out)
{
    struct rb_engine *e = calloc(1, sizeof(*e));

    *out = NULL;
    if (e == NULL) {
        return VIGIL_ENOMEM;
    }
    e->env = *env;
    snprintf(e->rules_dir, sizeof(e->rules_dir), "%s",
             env->rules_dir ? env->rules_dir : "rules");
    snprintf(e->script_path, sizeof(e->script_path), "%s",
             env->script_path ? env->script_path : "");
    e->env.rules_dir = e->rules_dir;
    e->env.script_path = e->script_path;
    if (e->env.quarantine_after == 0) {
        e->env.quarantine_after = RB_DEFAULT_QUARANTINE;
    }
    if (rule_set_create(env->bus, rb_on_event, e, &e->rules) != 0) {
        free(e);
        return VIGIL_ENOMEM;
    }
    *out = e;
    return 0;
}

void rb_engine_destroy(struct rb_engine *e)
{
    if (e == NULL) {
        return;
    }
    /* Rules first: their defs point into the files' metadata. */
    rule_set_destroy(e->rules);
    while (e->files != NULL) {
        struct rb_file *f = e->files;
        e->files = f->next;
        file_free(f);
    }
    free(e);
}

void rb_engine_observe(struct rb_engine *e, rb_event_cb cb, void *arg)
{
    if (e->nobs < sizeof(e->obs) / sizeof(e->obs[0])) {
        e->obs[e->nobs].cb = cb;
        e->obs[e->nobs].arg = arg;
        e->nobs++;
    }
}

static void on_engine_timer(uv_timer_t *t)
{
    rb_engine_tick(t->data, clock_wall_ns());
}

int rb_engine_start(struct rb_engine *e)
{
    if (e->env.loop == NULL || e->timer_open) {
        return VIGIL_ESTATE;
    }
    uv_timer_init(e->env.loop, &e->timer);
    e->timer.data = e;
    e->timer_open = 1;
    e->now = clock_wall_ns();
    uv_timer_start(&e->timer, on_engine_timer, 0, RB_TICK_MS);
    return 0;
}

void rb_engine_stop(struct rb_engine *e)
{
    if (e != NULL && e->timer_open) {
        uv_close((uv_handle_t *)&e->timer, NULL);
        e->timer_open = 0;
    }
}

struct rule_set *rb_engine_rules(struct rb_engine *e)
{
    return e->rules;
}

void rb_engine_counts(const struct rb_engine *e, unsigned *files,
                      unsigned *rules, unsigned *quarantined)
{
    *files = *rules = *quarantined = 0;
    for (const struct rb_file *f = e->files; f != NULL; f = f->next) {
        (*files)++;
        for (size_t i = 0; i < f->ndecls; i++) {
            *rules += f->decls[i].rule != NULL;
        }
        for (size_t i = 0; i < f->nitems; i++) {
            *quarantined += f->items[i].quarantined;
        }
    }
}

/* ---------------------------------------------------------------- plans */

const struct rb_runbook *rb_engine_runbook(const struct rb_engine *e,
                                           const char *name)
{
    for (const struct rb_file *f = e->files; f != NULL; f = f->next) {
        for (size_t i = 0; i < f->nrunbooks; i++) {
            if (strcmp(f->runbooks[i].name, name) == 0) {
                return &f->runbooks[i];
            }
        }
    }
    return NULL;
}

void rb_engine_foreach_runbook(const struct rb_engine *e,
                               void (*fn)(void *arg,
                                          const struct rb_runbook *rb),
                               void *arg)
{
    for (const struct rb_file *f = e->files; f != NULL; f = f->next) {
        for (size_t i = 0; i < f->nrunbooks; i++) {
            fn(arg, &f->runbooks[i]);
        }
    }
}

void rb_engine_foreach_rule(const struct rb_engine *e,
                            void (*fn)(void *arg, const struct rule *r,
                                       const char *path, int line),
                            void *arg)
{
    for (const struct rb_file *f = e->files; f != NULL; f = f->next) {
        for (size_t i = 0; i < f->ndecls; i++) {
            if (f->decls[i].rule != NULL) {
                fn(arg, f->decls[i].rule, f->path,
                   f->decls[i].meta ? f->decls[i].meta->line : 0);
            }
        }
    }
}

const char *rb_rule_runbook(const struct rule_def *def)
{
    const struct rb_meta *m = def->user;

    return m != NULL && m->runbook[0] != '\0' ? m->runbook : NULL;
}

const char *rb_rule_title(const struct rule_def *def)
{
    const struct rb_meta *m = def->user;

    return m != NULL && m->title[0] != '\0' ? m->title : def->name;
}

int rb_runbook_recommend(const struct rb_runbook *rb, const char *incident_json,
                         char **out)
{
    struct rb_file *f = rb->file;
    lua_State *L;
    struct vigil_err err = {0};
    json_t *list;
    int rc;

    *out = NULL;
    if (rb->recommend_ref < 0 || f == NULL) {
        return 0;
    }
    L = lh_lua(f->lh);
    lua_rawgeti(L, LUA_REGISTRYINDEX, rb->recommend_ref);
    lj_push_text(L, incident_json);
    rc = lh_pcall(f->lh, 1, 1, &err);
    if (rc != 0) {
        log_error("runbook", "%s:%d: runbook '%s': recommend failed: %s",
                  rb->path, rb->line, rb->name, err.msg);
        return rc;
    }
    list = lua_isnil(L, -1) ? NULL : lj_to_json(L, -1, &err);
    lua_pop(L, 1);
    if (list != NULL && !json_is_array(list) && json_object_size(list) == 0) {
        json_decref(list); /* an empty table: nothing to recommend */
        list = json_array();
    }
    if (list != NULL && !json_is_array(list)) {
        log_error("runbook", "%s:%d: runbook '%s': recommend returns a list",
                  rb->path, rb->line, rb->name);
        json_decref(list);
        return VIGIL_EINVAL;
    }
    if (list != NULL && json_array_size(list) > 0) {
        *out = json_dumps(list, JSON_COMPACT);
    }
    json_decref(list);
    return 0;
}

/* The table a `when` returned (on top of L), over the action's own
 * arguments: its keys replace theirs. */
static int when_args(lua_State *L, const struct rb_action *a, char **out,
                     struct vigil_err *err)
{
    json_t *over = lj_to_json(L, -1, err);
    json_t *args = json_loads(a->args_json, 0, NULL);
    int rc = VIGIL_EINVAL;

    if (over == NULL || args == NULL) {
        if (over != NULL) {
            err_set(err, VIGIL_EINVAL, "the action's arguments are not JSON");
        }
    } else if (!json_is_object(over) || json_object_size(over) == 0) {
        err_set(err, VIGIL_EINVAL,
                "returned a table that is not a table of arguments");
    } else if (json_object_update(args, over) == 0 &&
               (*out = json_dumps(args, JSON_COMPACT)) != NULL) {
        rc = 0;
    }
    json_decref(over);
    json_decref(args);
    return rc;
}

int rb_action_when(struct rb_engine *e, const struct rb_runbook *rb,
                   const struct rb_action *a, const char *incident_json,
                   char **args_out)
{
    struct rb_file *f = rb->file;
    lua_State *L = lh_lua(f->lh);
    struct vigil_err err = {0};
    int rc;

    (void)e;
    *args_out = NULL;
    if (a->when_ref == LUA_NOREF) {
        return 1;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->when_ref);
    lj_push_text(L, incident_json);
    rc = lh_pcall(f->lh, 1, 1, &err);
    if (rc != 0) {
        log_error("runbook", "%s:%d: action '%s': when failed: %s", rb->path,
                  a->line, a->name, err.msg);
        return rc;
    }
    if (lua_istable(L, -1)) {
        rc = when_args(L, a, args_out, &err);
        if (rc != 0) {
            log_error("runbook", "%s:%d: action '%s': when: %s", rb->path,
                      a->line, a->name, err.msg);
        }
        lua_pop(L, 1);
        return rc != 0 ? rc : 1;
    }
    rc = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return rc;
}
