/* ruletest - `vigil test`: runbook unit tests on a virtual clock. */
#include "ruletest.h"

#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>
#include <lua.h>

#include "bus.h"
#include "config.h"
#include "incident.h"
#include "lua_host.h"
#include "runbook.h"

#define RT_REG_FILE "vigil.rtfile"
#define RT_RUNBOOKS_MAX 64
#define RT_INPUTS_MAX 64
#define RT_VALUES_MAX 100000
#define RT_TRANSITIONS_MAX 4096
#define RT_SEC 1000000000LL

struct rt_case {
    char name[128];
    int line;
    int ref; /* the case table */
};

struct rt_file {
    char path[PATH_MAX];
    char dir[PATH_MAX];
    struct lh_state *lh;
    char *runbooks[RT_RUNBOOKS_MAX];
    int nrunbooks;
    struct rt_case *cases;
    int ncases, capcases;
};

struct rt_transition {
    int64_t ts;
    char rule[RULE_NAME_MAX];
    vigil_series_id series;
    int from, to;
};

/* What the incident manager did: an incident opened, escalated or
 * resolved, or an action decided. */
struct rt_incev {
    int64_t ts;
    char what[16];
    char name[RULE_NAME_MAX]; /* rule, or action */
    char result[32];          /* actions: "dry-run", "skipped", ... */
    char detail[320];         /* the rest: why, what would run */
};

/* One running case. */
struct rt_run {
    struct rt_file *file;
    struct rt_case *c;
    struct bus *bus;
    struct rb_engine *engine;
    struct rt_transition *tr;
    int ntr;
    struct inc_mgr *incidents;
    struct rt_incev *iev;
    int niev;
    FILE *out;
    int passed, failed;
    int64_t now;
};

struct rt_input {
    vigil_series_id id;
    double *values;
    int n;
};

/* ---------------------------------------------------------------- notation */

int rtest_parse_series(const char *text, double *values, int max, char *err,
                       size_t errsize)
{
    int n = 0;
    const char *p = text;

    while (*p != '\0') {
        char tok[64];
        size_t len;
        while (*p == ' ' || *p == '\t' || *p == '\n') {
            p++;
        }
        len = strcspn(p, " \t\n");
        if (len == 0) {
            break;
        }
        if (len >= sizeof(tok)) {
            snprintf(err, errsize, "token too long at '%.20s'", p);
            return -1;
        }
        memcpy(tok, p, len);
        tok[len] = '\0';
        p += len;

        /* _ | _xN | a | axN | a+bxN | a-bxN */
        char *x = strrchr(tok, 'x');
        long count = 1;
        int gap = 0;
        double a = 0, b = 0;
        char *end;
        if (x != NULL) {
            *x = '\0';
            count = strtol(x + 1, &end, 10);
            if (*end != '\0' || count < 0 || x[1] == '\0') {
                snprintf(err, errsize, "bad repeat in '%s'", p - len);
                return -1;
            }
            if (count >= max) {
                snprintf(err, errsize, "more than %d samples", max);
                return -1;
            }
        }
        if (strcmp(tok, "_") == 0) {
            gap = 1;
            if (x == NULL) {
                count = 1;
            }
        } else {
            a = strtod(tok, &end);
            if (end == tok) {
                snprintf(err, errsize, "expected a number in '%.*s'", (int)len,
                         p - len);
                return -1;
            }
            if (*end == '+' || *end == '-') {
                b = strtod(end, &end);
            }
            if (*end != '\0') {
                snprintf(err, errsize, "unexpected '%s' in '%.*s'", end,
                         (int)len, p - len);
                return -1;
            }
            if (x != NULL) {
                count++; /* promtool: axn is n+1 samples */
            }
        }
        for (long i = 0; i < count; i++) {
            if (n == max) {
                snprintf(err, errsize, "more than %d samples", max);
                return -1;
            }
            values[n++] = gap ? NAN : a + b * (double)i;
        }
    }
    return n;
}

/* ---------------------------------------------------------------- lua */

static struct rt_file *rt_file_of(lua_State *L)
{
    struct rt_file *f;

    lua_getfield(L, LUA_REGISTRYINDEX, RT_REG_FILE);
    f = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return f;
}

static int l_rtest_runbooks(lua_State *L)
{
    struct rt_file *f = rt_file_of(L);

    luaL_checktype(L, 1, LUA_TTABLE);
    for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, 1); i++) {
        if (f->nrunbooks == RT_RUNBOOKS_MAX) {
            return luaL_error(L, "at most %d runbooks", RT_RUNBOOKS_MAX);
        }
        lua_rawgeti(L, 1, i);
        const char *rel = luaL_checkstring(L, -1);
        char path[PATH_MAX];
        if (rel[0] == '/') {
            snprintf(path, sizeof(path), "%s", rel);
        } else if (snprintf(path, sizeof(path), "%s/%s", f->dir, rel) >=
                   (int)sizeof(path)) {
            return luaL_error(L, "path too long");
        }
        f->runbooks[f->nrunbooks] = strdup(path);
        if (f->runbooks[f->nrunbooks] == NULL) {
            return luaL_error(L, "out of memory");
        }
        f->nrunbooks++;
        lua_pop(L, 1);
    }
    return 0;
}

static int l_rtest_case_body(lua_State *L)
{
    struct rt_file *f = rt_file_of(L);
    lua_Debug ar;

    luaL_checktype(L, 1, LUA_TTABLE);
    if (f->ncases == f->capcases) {
        int cap = f->capcases ? f->capcases * 2 : 16;
        void *p = realloc(f->cases, (size_t)cap * sizeof(*f->cases));
        if (p == NULL) {
            return luaL_error(L, "out of memory");
        }
        f->cases = p;
        f->capcases = cap;
    }
    struct rt_case *c = &f->cases[f->ncases];
    snprintf(c->name, sizeof(c->name), "%s",
             lua_tostring(L, lua_upvalueindex(1)));
    c->line = lua_getstack(L, 1, &ar) && lua_getinfo(L, "l", &ar)
                  ? ar.currentline
                  : 0;
    lua_pushvalue(L, 1);
    c->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    f->ncases++;
    return 0;
}

static int l_rtest_case(lua_State *L)
{
    luaL_checkstring(L, 1);
    lua_pushvalue(L, 1);
    lua_pushcclosure(L, l_rtest_case_body, 1);
    return 1;
}

static int l_rtest_open(lua_State *L)
{
    static const luaL_Reg lib[] = {
        {"runbooks", l_rtest_runbooks},
        {"case", l_rtest_case},
        {NULL, NULL},
    };

    luaL_newlib(L, lib);
    return 1;
}

/* ---------------------------------------------------------------- helpers */

static void fail(struct rt_run *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void fail(struct rt_run *r, const char *fmt, ...)
{
    va_list ap;

    fprintf(r->out, "%s:%d: case '%s': ", r->file->path, r->c->line,
            r->c->name);
    va_start(ap, fmt);
    vfprintf(r->out, fmt, ap);
    va_end(ap);
    fputc('\n', r->out);
    r->failed++;
}

/* "1m30s" for messages. */
static const char *fmt_time(int64_t ns, char *buf, size_t size)
{
    int64_t s = ns / RT_SEC;

    if (ns % RT_SEC != 0) {
        snprintf(buf, size, "%.3fs", (double)ns / 1e9);
    } else if (s >= 60 && s % 60 != 0) {
        snprintf(buf, size, "%lldm%llds", (long long)(s / 60),
                 (long long)(s % 60));
    } else if (s >= 60) {
        snprintf(buf, size, "%lldm", (long long)(s / 60));
    } else {
        snprintf(buf, size, "%llds", (long long)s);
    }
    return buf;
}

/* Field `key` of the table at idx as a duration in ns; def if absent;
 * -1 (after reporting) when malformed. */
static int64_t field_duration(struct rt_run *r, lua_State *L, int idx,
                              const char *key, int64_t def)
{
    int64_t ms, out = def;
    int t = lua_getfield(L, idx, key);

    if (t == LUA_TNUMBER) {
        out = (int64_t)(lua_tonumber(L, -1) * 1e9);
    } else if (t == LUA_TSTRING) {
        if (cfg_parse_duration_ms(lua_tostring(L, -1), &ms) != 0) {
            fail(r, "%s: expected a duration such as \"30s\"", key);
            out = -1;
        } else {
            out = ms * 1000000;
        }
    } else if (t != LUA_TNIL) {
        fail(r, "%s: expected a duration such as \"30s\"", key);
        out = -1;
    }
    lua_pop(L, 1);
    return out;
}

static void on_transition(void *arg, const struct rule_event *ev,
                          const char *file)
{
    struct rt_run *r = arg;
    struct rt_transition *t;

    (void)file;
    if (ev->flapping != 0 && ev->from == ev->to) {
        return; /* a flapping marker, not a change of state */
    }
    if (r->ntr == RT_TRANSITIONS_MAX) {
        return;
    }
    t = &r->tr[r->ntr++];
    t->ts = ev->ts;
    snprintf(t->rule, sizeof(t->rule), "%s", ev->def->name);
    t->series = ev->series;
    t->from = ev->from;
    t->to = ev->to;
}

static void on_incident(void *arg, const char *what, int64_t id,
                        const char *detail)
{
    struct rt_run *r = arg;
    struct rt_incev *e;
    size_t n;

    (void)id;
    if (r->niev == RT_TRANSITIONS_MAX || strcmp(what, "step") == 0) {
        return;
    }
    e = &r->iev[r->niev++];
    e->ts = r->now;
    snprintf(e->what, sizeof(e->what), "%s", what);
    n = strcspn(detail, " ");
    snprintf(e->name, sizeof(e->name), "%.*s", (int)n, detail);
    detail += n + (detail[n] == ' ');
    n = strcspn(detail, " :");
    snprintf(e->result, sizeof(e->result), "%.*s", (int)n, detail);
    snprintf(e->detail, sizeof(e->detail), "%s", detail);
    if (strcmp(e->result, "awaiting") == 0) {
        snprintf(e->result, sizeof(e->result), "awaiting approval");
    }
}

/* Does the series carry every label of the table at idx? */
static int labels_match(struct rt_run *r, lua_State *L, int idx,
                        vigil_series_id id)
{
    size_t n;
    const struct vigil_label *l = bus_series_labels(r->bus, id, &n);

    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        const char *k = lua_tostring(L, -2);
        const char *v = lua_tostring(L, -1);
        int found = 0;
        for (size_t i = 0; i < n && k != NULL && v != NULL; i++) {
            found |= strcmp(l[i].key, k) == 0 && strcmp(l[i].value, v) == 0;
        }
        lua_pop(L, 1);
        if (!found) {
            lua_pop(L, 1);
            return 0;
        }
    }
    return 1;
}

/* ---------------------------------------------------------------- a case */

/* Intern the series named by an input key: `name{k=v,...}`, exact
 * labels only. */
static int input_series(struct rt_run *r, const char *key, vigil_series_id *id)
{
    struct bus_selector sel;
    struct vigil_label labels[BUS_MATCHERS_MAX];
    struct vigil_err err = {0};

    if (bus_selector_parse(key, &sel, &err) != 0) {
        fail(r, "input '%s': %s", key, err.msg);
        return -1;
    }
    for (unsigned i = 0; i < sel.n; i++) {
        if (sel.m[i].negate || strpbrk(sel.m[i].value, "*?[") != NULL) {
            fail(r, "input '%s': labels must be exact (k=v)", key);
            return -1;
        }
        labels[i].key = sel.m[i].key;
        labels[i].value = sel.m[i].value;
    }
    if (bus_intern(r->bus, sel.name, labels, sel.n, id, &err) != 0) {
        fail(r, "input '%s': %s", key, err.msg);
        return -1;
    }
    return 0;
}

/* Read the case's `input` table (at idx) into inputs. */
static int read_inputs(struct rt_run *r, lua_State *L, int idx,
                       struct rt_input *in, int *nin)
{
    char err[128];
    int rc = 0;

    *nin = 0;
    if (lua_getfield(L, idx, "input") != LUA_TTABLE) {
        lua_pop(L, 1);
        return 0; /* a case may test conditions without input */
    }
    lua_pushnil(L);
    while (rc == 0 && lua_next(L, -2) != 0) {
        const char *key = lua_tostring(L, -2);
        const char *text = lua_tostring(L, -1);
        struct rt_input *x = &in[*nin];
        if (key == NULL || text == NULL || *nin == RT_INPUTS_MAX) {
            fail(r,
                 "input: expected [\"series\"] = \"values\" (at most "
                 "%d series)",
                 RT_INPUTS_MAX);
            rc = -1;
        } else if (input_series(r, key, &x->id) != 0) {
            rc = -1;
        } else if ((x->values = malloc(RT_VALUES_MAX * sizeof(double))) ==
                   NULL) {
            rc = -1;
        } else {
            (*nin)++;
            x->n = rtest_parse_series(text, x->values, RT_VALUES_MAX, err,
                                      sizeof(err));
            if (x->n < 0) {
                fail(r, "input '%s': %s", key, err);
                rc = -1;
            }
        }
        lua_pop(L, 1);
    }
    if (rc != 0) {
        lua_pop(L, 1); /* the key lua_next left */
    }
    lua_pop(L, 1);
    return rc;
}

/* Check one `expect` entry (table at idx) against the engine now. */
static void check_expect(struct rt_run *r, lua_State *L, int idx, int i)
{
    char tb[32];
    int64_t at = field_duration(r, L, idx, "at", 0);
    const char *name, *want;
    struct rule *rule;
    struct rule_inst_info info;
    int found = 0, state = -1;

    lua_getfield(L, idx, "rule");
    lua_getfield(L, idx, "state");
    name = lua_tostring(L, -2);
    want = lua_tostring(L, -1);
    if (name == NULL || want == NULL) {
        fail(r, "expect[%d]: needs rule and state", i);
        goto out;
    }
    rule = rule_find(rb_engine_rules(r->engine), name);
    if (rule == NULL) {
        fail(r, "expect[%d]: no rule named '%s'", i, name);
        goto out;
    }
    int has_labels = lua_getfield(L, idx, "labels") == LUA_TTABLE;
    int lidx = lua_gettop(L);
    for (unsigned k = 0; k < rule_instances(rule); k++) {
        if (rule_instance_info(rule, k, &info) != 0 ||
            (has_labels && !labels_match(r, L, lidx, info.series))) {
            continue;
        }
        found++;
        state = info.state;
    }
    lua_pop(L, 1);
    if (found > 1) {
        fail(r,
             "expect[%d] at %s: rule '%s' has %d instances here; give "
             "labels to pick one",
             i, fmt_time(at, tb, sizeof(tb)), name, found);
    } else if (found == 0 && strcmp(want, "nodata") != 0) {
        fail(r, "expect[%d] at %s: rule '%s' has no instance%s, expected %s", i,
             fmt_time(at, tb, sizeof(tb)), name,
             has_labels ? " with these labels" : "", want);
    } else if (found == 1 && strcmp(rule_state_name(state), want) != 0) {
        fail(r, "expect[%d] at %s: rule '%s' is %s, expected %s", i,
             fmt_time(at, tb, sizeof(tb)), name, rule_state_name(state), want);
    } else {
        r->passed++;
    }
out:
    lua_pop(L, 2);
}

/* Compare every transition with the case's `transitions` list (at idx). */
static void check_transitions(struct rt_run *r, lua_State *L, int idx)
{
    int n = (int)lua_rawlen(L, idx);
    char tb[32], tb2[32];

    for (int i = 1; i <= n || i <= r->ntr; i++) {
        if (i > n || i > r->ntr) {
            if (i > n) {
                const struct rt_transition *t = &r->tr[i - 1];
                fail(r, "transitions: unexpected #%d at %s: %s %s -> %s", i,
                     fmt_time(t->ts, tb, sizeof(tb)), t->rule,
                     rule_state_name(t->from), rule_state_name(t->to));
            } else {
                fail(r, "transitions: expected %d, got %d", n, r->ntr);
            }
            return;
        }
        const struct rt_transition *t = &r->tr[i - 1];
        lua_rawgeti(L, idx, i);
        int e = lua_gettop(L);
        int64_t at = field_duration(r, L, e, "at", -2);
        lua_getfield(L, e, "rule");
        lua_getfield(L, e, "to");
        lua_getfield(L, e, "from");
        const char *rule = lua_tostring(L, -3);
        const char *to = lua_tostring(L, -2);
        const char *from = lua_tostring(L, -1);
        int ok =
            rule != NULL && to != NULL && strcmp(rule, t->rule) == 0 &&
            strcmp(to, rule_state_name(t->to)) == 0 &&
            (from == NULL || strcmp(from, rule_state_name(t->from)) == 0) &&
            (at == -2 || at == t->ts);
        if (!ok) {
            fail(r,
                 "transitions[%d]: expected %s -> %s at %s, got %s %s -> "
                 "%s at %s",
                 i, rule ? rule : "?", to ? to : "?",
                 at >= 0 ? fmt_time(at, tb, sizeof(tb)) : "any time", t->rule,
                 rule_state_name(t->from), rule_state_name(t->to),
                 fmt_time(t->ts, tb2, sizeof(tb2)));
            lua_settop(L, e - 1);
            return;
        }
        lua_settop(L, e - 1);
    }
    r->passed++;
}

/* Compare the incident events (actions = 0: opened, escalated, resolved
 * of rules) or the action decisions (actions = 1) with the list at idx:
 * { at = "1m" (optional), rule = ..., event = ... } or
 * { at = ..., action = ..., result = ..., detail = "text it contains" }. */
static void check_incevs(struct rt_run *r, lua_State *L, int idx, int actions)
{
    const char *what = actions ? "actions" : "incidents";
    const char *kname = actions ? "action" : "rule";
    const char *kval = actions ? "result" : "event";
    int n = (int)lua_rawlen(L, idx), k = 0;
    char tb[32], tb2[32];

    for (int i = 0; i < r->niev; i++) {
        const struct rt_incev *e = &r->iev[i];
        int is_action = strcmp(e->what, "action") == 0;
        if (is_action != actions ||
            (actions && (!strcmp(e->result, "started") ||
                         !strcmp(e->result, "approved")))) {
            continue;
        }
        const char *got = actions ? e->result : e->what;
        if (++k > n) {
            fail(r, "%s: unexpected #%d at %s: %s %s", what, k,
                 fmt_time(e->ts, tb, sizeof(tb)), e->name, got);
            return;
        }
        lua_rawgeti(L, idx, k);
        int t = lua_gettop(L);
        int64_t at = field_duration(r, L, t, "at", -2);
        lua_getfield(L, t, "detail");
        lua_getfield(L, t, kname);
        lua_getfield(L, t, kval);
        const char *wname = lua_tostring(L, -2), *wval = lua_tostring(L, -1);
        const char *wdetail = lua_tostring(L, -3);
        int ok = wname && wval && !strcmp(wname, e->name) &&
                 !strcmp(wval, got) && (at == -2 || at == e->ts);
        if (ok && wdetail != NULL && strstr(e->detail, wdetail) == NULL) {
            fail(r, "%s[%d]: %s %s: expected '%s' in '%s'", what, k, e->name,
                 got, wdetail, e->detail);
            lua_settop(L, t - 1);
            return;
        }
        if (!ok) {
            fail(r, "%s[%d]: expected %s %s at %s, got %s %s at %s", what, k,
                 wname ? wname : "?", wval ? wval : "?",
                 at >= 0 ? fmt_time(at, tb, sizeof(tb)) : "any time", e->name,
                 got, fmt_time(e->ts, tb2, sizeof(tb2)));
            lua_settop(L, t - 1);
            return;
        }
        lua_settop(L, t - 1);
    }
    if (k < n) {
        fail(r, "%s: expected %d, got %d", what, n, k);
        return;
    }
    r->passed++;
}

struct rt_expect {
    int64_t at;
    int index; /* in the expect list */
};

static int cmp_expect(const void *a, const void *b)
{
    const struct rt_expect *x = a, *y = b;

    if (x->at != y->at) {
        return x->at < y->at ? -1 : 1;
    }
    return x->index - y->index;
}

/* Publish inputs and tick the engine from 0 to the end, checking each
 * expectation as its time comes. The case table is at idx. */
static void simulate(struct rt_run *r, lua_State *L, int idx,
                     struct rt_input *in, int nin, int64_t interval)
{
    struct rt_expect ex[256];
    int nex = 0, next_ex = 0;
    int64_t end = 0, tick = interval < RT_SEC ? interval : RT_SEC;

    for (int i = 0; i < nin; i++) {
        if (in[i].n > 0 && (int64_t)(in[i].n - 1) * interval > end) {
            end = (int64_t)(in[i].n - 1) * interval;
        }
    }
    if (lua_getfield(L, idx, "expect") == LUA_TTABLE) {
        int n = (int)lua_rawlen(L, -1);
        for (int i = 1; i <= n && nex < 256; i++) {
            lua_rawgeti(L, -1, i);
            ex[nex].at = field_duration(r, L, lua_gettop(L), "at", -1);
            ex[nex].index = i;
            if (ex[nex].at < 0) {
                fail(r, "expect[%d]: needs at = \"1m\"", i);
            } else {
                end = ex[nex].at > end ? ex[nex].at : end;
                nex++;
            }
            lua_pop(L, 1);
        }
    }
    int eidx = lua_gettop(L);
    qsort(ex, (size_t)nex, sizeof(*ex), cmp_expect);
    for (int64_t t = 0; t <= end; t += tick) {
        r->now = t;
        if (t % interval == 0) {
            int64_t k = t / interval;
            for (int i = 0; i < nin; i++) {
                if (k < in[i].n && !isnan(in[i].values[k])) {
                    bus_publish(r->bus, in[i].id, t, in[i].values[k]);
                }
            }
        }
        r->now = t;
        rb_engine_tick(r->engine, t);
        while (next_ex < nex && ex[next_ex].at <= t) {
            lua_rawgeti(L, eidx, ex[next_ex].index);
            check_expect(r, L, lua_gettop(L), ex[next_ex].index);
            lua_pop(L, 1);
            next_ex++;
        }
    }
    lua_pop(L, 1);
}

static void run_case(struct rt_file *f, struct rt_case *c,
                     const char *script_path, FILE *out, int *passed,
                     int *failed)
{
    struct rt_run r = {.file = f, .c = c, .out = out};
    struct rt_input in[RT_INPUTS_MAX];
    struct bus_limits lim;
    struct cfg_diag *diag = calloc(1, sizeof(*diag));
    lua_State *L = lh_lua(f->lh);
    int nin = 0;

    memset(in, 0, sizeof(in));
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
    int idx = lua_gettop(L);
    bus_limits_default(&lim);
    r.tr = calloc(RT_TRANSITIONS_MAX, sizeof(*r.tr));
    struct rb_env env = {.script_path = script_path};
    if (diag == NULL || r.tr == NULL || bus_create(&lim, &r.bus) != 0 ||
        (env.bus = r.bus, rb_engine_create(&env, &r.engine)) != 0) {
        fail(&r, "out of memory");
        goto out;
    }
    rb_engine_observe(r.engine, on_transition, &r);
    struct inc_env ienv = {
        .bus = r.bus, .rules = r.engine, .mode = INC_MODE_DRY_RUN};
    r.iev = calloc(RT_TRANSITIONS_MAX, sizeof(*r.iev));
    if (r.iev == NULL || inc_create(&ienv, &r.incidents) != 0) {
        fail(&r, "out of memory");
        goto out;
    }
    inc_observe(r.incidents, on_incident, &r);
    rb_engine_observe(r.engine, inc_on_event, r.incidents);
    rb_engine_load_files(r.engine, (const char *const *)f->runbooks,
                         (size_t)f->nrunbooks, diag);
    for (unsigned i = 0; i < diag->n && i < CFG_DIAG_MAX; i++) {
        fail(&r, "runbook: %s", diag->msg[i]);
    }
    if (diag->n > 0) {
        goto out;
    }
    int64_t interval = field_duration(&r, L, idx, "interval", 10 * RT_SEC);
    if (interval <= 0) {
        if (interval == 0) {
            fail(&r, "interval must be above 0");
        }
        goto out;
    }
    if (read_inputs(&r, L, idx, in, &nin) != 0) {
        goto out;
    }
    simulate(&r, L, idx, in, nin, interval);
    if (lua_getfield(L, idx, "transitions") == LUA_TTABLE) {
        check_transitions(&r, L, lua_gettop(L));
    }
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "incidents") == LUA_TTABLE) {
        check_incevs(&r, L, lua_gettop(L), 0);
    }
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "actions") == LUA_TTABLE) {
        check_incevs(&r, L, lua_gettop(L), 1);
    }
    lua_pop(L, 1);
out:
    lua_settop(L, idx - 1);
    for (int i = 0; i < nin; i++) {
        free(in[i].values);
    }
    inc_destroy(r.incidents);
    rb_engine_destroy(r.engine);
    bus_destroy(r.bus);
    free(r.tr);
    free(r.iev);
    free(diag);
    *passed += r.passed;
    *failed += r.failed;
}

/* ---------------------------------------------------------------- files */

static void rt_file_free(struct rt_file *f)
{
    for (int i = 0; i < f->nrunbooks; i++) {
        free(f->runbooks[i]);
    }
    free(f->cases);
    lh_destroy(f->lh);
    free(f);
}

/* Run one test file; returns 0, or -1 when it could not be run. */
static int run_file(const char *path, const char *script_path, FILE *out,
                    int *passed, int *failed)
{
    struct rt_file *f = calloc(1, sizeof(*f));
    struct lh_limits lim = {0};
    struct vigil_err err = {0};
    char *slash;
    int rc = -1;

    if (f == NULL) {
        return -1;
    }
    snprintf(f->path, sizeof(f->path), "%s", path);
    snprintf(f->dir, sizeof(f->dir), "%s", path);
    slash = strrchr(f->dir, '/');
    if (slash != NULL) {
        *slash = '\0';
    } else {
        snprintf(f->dir, sizeof(f->dir), ".");
    }
    if (lh_create(&lim, script_path, &f->lh, &err) != 0) {
        goto out;
    }
    lua_State *L = lh_lua(f->lh);
    lua_pushlightuserdata(L, f);
    lua_setfield(L, LUA_REGISTRYINDEX, RT_REG_FILE);
    lh_preload(f->lh, "vigil.test", l_rtest_open);
    if (lh_load_file(f->lh, path, &err) != 0 ||
        lh_pcall(f->lh, 0, 0, &err) != 0) {
        goto out;
    }
    if (f->ncases == 0) {
        err_set(&err, VIGIL_EINVAL, "%s: no test.case in this file", path);
        goto out;
    }
    for (int i = 0; i < f->ncases; i++) {
        run_case(f, &f->cases[i], script_path, out, passed, failed);
    }
    rc = 0;
out:
    if (rc != 0) {
        fprintf(out, "%s\n", err.msg[0] ? err.msg : "out of memory");
        (*failed)++;
    }
    rt_file_free(f);
    return rc;
}

static int cmp_path(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every *_test.lua below dir. */
static void scan_tests(const char *dir, char **paths, size_t *n, size_t max)
{
    DIR *dh = opendir(dir);
    struct dirent *de;

    if (dh == NULL) {
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
            scan_tests(path, paths, n, max);
        } else if (len > 9 && strcmp(de->d_name + len - 9, "_test.lua") == 0) {
            paths[*n] = strdup(path);
            *n += paths[*n] != NULL;
        }
    }
    closedir(dh);
}

int rtest_run(const char *const *paths, size_t n, const char *script_path,
              FILE *out)
{
    enum { MAX_FILES = 4096 };
    char **files = calloc(MAX_FILES, sizeof(*files));
    size_t nfiles = 0;
    int passed = 0, failed = 0, broken = 0;
    struct stat st;

    if (files == NULL) {
        return 2;
    }
    for (size_t i = 0; i < n; i++) {
        if (stat(paths[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            size_t from = nfiles;
            scan_tests(paths[i], files, &nfiles, MAX_FILES);
            qsort(files + from, nfiles - from, sizeof(*files), cmp_path);
        } else if (nfiles < MAX_FILES) {
            files[nfiles] = strdup(paths[i]);
            nfiles += files[nfiles] != NULL;
        }
    }
    if (nfiles == 0) {
        fprintf(out, "no test files (*_test.lua) found\n");
        broken = 1;
    }
    for (size_t i = 0; i < nfiles; i++) {
        broken |= run_file(files[i], script_path, out, &passed, &failed) != 0;
        free(files[i]);
    }
    free(files);
    fprintf(out, "%d passed, %d failed\n", passed, failed);
    return broken ? 2 : failed ? 1 : 0;
}
