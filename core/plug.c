/* plug - the plugin loader, the host table and the plugin instances. */
#include "plug.h"

#include <dlfcn.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "paths.h"
#include "schedule.h"

#define PLUG_DIAGS_MAX 32
/* Error log lines an instance may write per minute before they are only
 * counted. */
#define PLUG_ERROR_BURST 5
/* A synchronous collect longer than this blocks the loop: say so. */
#define PLUG_SLOW_COLLECT_NS (50 * 1000000LL)

struct plug_mod {
    void *dl;
    const struct vigil_plugin *desc;
    char path[PATH_MAX];
    struct plug_mod *next;
};

/* One plugin instance; the ABI's opaque vigil_instance. */
struct vigil_instance {
    struct plug_set *set;
    struct plug_mod *mod;
    const struct cfg_section *sec;
    char name[VIGIL_LABEL_VALUE_MAX];     /* instance name or plugin name */
    char src[VIGIL_LABEL_VALUE_MAX + 32]; /* "plugin=x,instance=y" */
    int named;                            /* section named an instance */
    void *config;
    void *state;
    int inited, started, stopped, failed;
    struct sched_timer timer;
    int timer_open;
    int64_t interval_ms;
    /* Collection in flight. */
    int pending;
    int64_t collect_start_mono;
    int64_t collect_ts; /* wall ns stamped on samples with ts 0 */
    int in_collect;
    /* Free metrics. */
    vigil_series_id up_id, ms_id, err_id;
    uint64_t errors;
    uint64_t errors_mark; /* errors at the end of the last collection */
    uint64_t skipped;
    int64_t err_window_start;
    unsigned err_logged, err_suppressed;
    const struct vigil_diag *diags[PLUG_DIAGS_MAX];
    unsigned ndiags;
    struct vigil_instance *next;
};

struct plug_set {
    struct plug_env env;
    struct plug_mod *mods;
    struct vigil_instance *insts;
    unsigned failed;
};

struct vigil_request {
    plug_reply_cb cb;
    plug_progress_cb progress;
    void *arg;
};

/* ---------------------------------------------------------------- loading */

static int valid_plugin_name(const char *name)
{
    if (*name == '\0' || strlen(name) > 64) {
        return 0;
    }
    for (const char *p = name; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '_')) {
            return 0;
        }
    }
    return 1;
}

static int plug_validate(struct plug_mod *m, const char *name,
                         struct vigil_err *err)
{
    const struct vigil_plugin *d = m->desc;

    if (d->abi_version != VIGIL_PLUGIN_ABI_VERSION) {
        return err_set(err, VIGIL_EABI,
                       "%s: plugin ABI version %u, this vigil speaks %u; "
                       "rebuild the plugin against this vigil's plugin.h",
                       m->path, d->abi_version, VIGIL_PLUGIN_ABI_VERSION);
    }
    if (d->struct_size < sizeof(struct vigil_plugin)) {
        return err_set(err, VIGIL_EABI,
                       "%s: descriptor is %u bytes, expected at least %zu",
                       m->path, d->struct_size, sizeof(struct vigil_plugin));
    }
    if (d->name == NULL || strcmp(d->name, name) != 0) {
        return err_set(err, VIGIL_EINVAL,
                       "%s: descriptor names plugin '%s', file is '%s'",
                       m->path, d->name ? d->name : "(null)", name);
    }
    if (d->init == NULL) {
        return err_set(err, VIGIL_EINVAL, "%s: plugin has no init callback",
                       m->path);
    }
    if (d->config_size > 0 && d->options == NULL) {
        return err_set(err, VIGIL_EINVAL,
                       "%s: config_size set but no options table", m->path);
    }
    return 0;
}

int plug_open(const char *dir, const char *name, struct plug_mod **out,
              struct vigil_err *err)
{
    struct plug_mod *m;
    int rc;

    *out = NULL;
    if (!valid_plugin_name(name)) {
        return err_set(err, VIGIL_EINVAL,
                       "bad plugin name '%s': expected [a-z0-9_]+", name);
    }
    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return err_set(err, VIGIL_ENOMEM, "out of memory");
    }
    snprintf(m->path, sizeof(m->path), "%s/%s.so", dir, name);
    if (access(m->path, F_OK) != 0) {
        rc = err_set(err, VIGIL_ENOENT, "%s: no such plugin file", m->path);
        goto fail;
    }
    m->dl = dlopen(m->path, RTLD_NOW | RTLD_LOCAL);
    if (m->dl == NULL) {
        rc = err_set(err, VIGIL_EIO, "%s: cannot load: %s", m->path, dlerror());
        goto fail;
    }
    m->desc = dlsym(m->dl, VIGIL_PLUGIN_SYMBOL);
    if (m->desc == NULL) {
        rc = err_set(err, VIGIL_EABI,
                     "%s: not a vigil plugin: no '%s' symbol exported", m->path,
                     VIGIL_PLUGIN_SYMBOL);
        goto fail;
    }
    rc = plug_validate(m, name, err);
    if (rc != 0) {
        goto fail;
    }
    *out = m;
    return 0;
fail:
    plug_close(m);
    return rc;
}

void plug_close(struct plug_mod *m)
{
    if (m == NULL) {
        return;
    }
    if (m->dl != NULL) {
        dlclose(m->dl);
    }
    free(m);
}

const struct vigil_plugin *plug_desc(const struct plug_mod *m)
{
    return m->desc;
}

const char *plug_path(const struct plug_mod *m)
{
    return m->path;
}

const char *plug_default_dir(void)
{
    static char dir[PATH_MAX + 64];
    const char *env = getenv("VIGIL_PLUGIN_DIR");

    if (env != NULL && *env != '\0') {
        snprintf(dir, sizeof(dir), "%s", env);
        return dir;
    }
    snprintf(dir, sizeof(dir), "%s/plugins", paths_exe_dir());
    if (access(dir, F_OK) != 0) {
        snprintf(dir, sizeof(dir), "%s/%s", paths_exe_dir(),
                 VIGIL_PLUGIN_RELDIR);
    }
    return dir;
}

static const char *opt_type_name(int type)
{
    switch (type) {
    case VIGIL_OPT_STRING:
        return "string";
    case VIGIL_OPT_INT:
        return "integer";
    case VIGIL_OPT_DOUBLE:
        return "number";
    case VIGIL_OPT_BOOL:
        return "yes|no";
    case VIGIL_OPT_DURATION:
        return "duration";
    case VIGIL_OPT_BYTES:
        return "bytes";
    case VIGIL_OPT_ENUM:
        return "choice";
    case VIGIL_OPT_LIST:
        return "list";
    default:
        return "?";
    }
}

void plug_print_help(const struct vigil_plugin *p, FILE *out)
{
    fprintf(out, "%s %s - %s\n\n", p->name, p->version ? p->version : "",
            p->description ? p->description : "");
    fprintf(out, "  [plugin %s]            or  [plugin %s NAME]\n", p->name,
            p->name);
    fprintf(out, "  %-18s %-9s %-12s %s\n", "interval", "duration", "[vigil]",
            "time between collections");
    for (const struct vigil_option *o = p->options; o && o->key; o++) {
        const char *def = o->def ? o->def : "";
        if (o->flags & VIGIL_OPT_REQUIRED) {
            def = "(required)";
        }
        fprintf(out, "  %-18s %-9s %-12s %s", o->key, opt_type_name(o->type),
                def, o->help ? o->help : "");
        if (o->type == VIGIL_OPT_ENUM && o->choices) {
            fprintf(out, " (%s)", o->choices);
        }
        fputc('\n', out);
    }
}

/* ---------------------------------------------------------------- host */

static int host_series(vigil_instance *inst, const char *name,
                       const struct vigil_label *labels, size_t n,
                       vigil_series_id *out)
{
    struct vigil_label all[VIGIL_LABELS_MAX + 1];
    struct vigil_err err = {0};
    int rc;

    if (n > VIGIL_LABELS_MAX || (n > 0 && labels == NULL)) {
        log_warn(inst->src, "series '%s': too many labels (%zu)", name, n);
        return VIGIL_EINVAL;
    }
    if (n > 0) {
        memcpy(all, labels, n * sizeof(*labels));
    }
    if (inst->named) {
        all[n].key = "instance";
        all[n].value = inst->name;
        n++;
    }
    rc = bus_intern(inst->set->env.bus, name, all, n, out, &err);
    if (rc != 0) {
        log_warn(inst->src, "%s", err.msg);
    }
    return rc;
}

static void host_publish(vigil_instance *inst, vigil_series_id id,
                         int64_t ts_ns, double value)
{
    if (ts_ns == 0) {
        /* Inside a collection, sync or pending, samples carry its time. */
        ts_ns = inst->in_collect || inst->pending ? inst->collect_ts
                                                  : clock_wall_ns();
    }
    bus_publish(inst->set->env.bus, id, ts_ns, value);
}

static void host_log(vigil_instance *inst, int level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vmsg(level, inst->src, fmt, ap);
    va_end(ap);
}

/* Count the error; log it unless the instance already logged
 * PLUG_ERROR_BURST errors this minute. */
static void host_error(vigil_instance *inst, const char *fmt, ...)
{
    int64_t now = clock_mono_ns();
    va_list ap;

    inst->errors++;
    if (now - inst->err_window_start >= 60 * 1000000000LL) {
        if (inst->err_suppressed > 0) {
            log_warn(inst->src, "%u more errors were not logged",
                     inst->err_suppressed);
        }
        inst->err_window_start = now;
        inst->err_logged = 0;
        inst->err_suppressed = 0;
    }
    if (inst->err_logged >= PLUG_ERROR_BURST) {
        inst->err_suppressed++;
        return;
    }
    inst->err_logged++;
    va_start(ap, fmt);
    log_vmsg(VIGIL_LOG_ERROR, inst->src, fmt, ap);
    va_end(ap);
}

static struct uv_loop_s *host_loop(vigil_instance *inst)
{
    return inst->set->env.loop;
}

static int64_t host_now_ns(vigil_instance *inst)
{
    (void)inst;
    return clock_wall_ns();
}

struct plug_work {
    uv_work_t req;
    vigil_work_cb work_cb;
    vigil_after_work_cb after_cb;
    void *arg;
};

static void work_run(uv_work_t *req)
{
    struct plug_work *w = req->data;

    w->work_cb(w->arg);
}

static void work_after(uv_work_t *req, int status)
{
    struct plug_work *w = req->data;

    if (w->after_cb != NULL) {
        w->after_cb(w->arg, status == UV_ECANCELED ? VIGIL_ECANCELED : 0);
    }
    free(w);
}

static int host_work(vigil_instance *inst, vigil_work_cb work_cb,
                     vigil_after_work_cb after_cb, void *arg)
{
    struct plug_work *w;

    if (work_cb == NULL) {
        return VIGIL_EINVAL;
    }
    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return VIGIL_ENOMEM;
    }
    w->req.data = w;
    w->work_cb = work_cb;
    w->after_cb = after_cb;
    w->arg = arg;
    if (uv_queue_work(inst->set->env.loop, &w->req, work_run, work_after) !=
        0) {
        free(w);
        return VIGIL_EIO;
    }
    return 0;
}

/* Publish the free metrics for one finished collection. duration_ns < 0
 * means unknown (a self-scheduled cycle). */
static void collect_finish(vigil_instance *inst, int status,
                           int64_t duration_ns)
{
    struct bus *bus = inst->set->env.bus;
    /* The collection's own time, so its free metrics line up with its
     * samples; self-scheduled plugins have none. */
    int64_t now = inst->collect_ts ? inst->collect_ts : clock_wall_ns();

    if (status < 0 && inst->errors == inst->errors_mark) {
        /* The plugin failed without saying why through host->error(). */
        host_error(inst, "collection failed: %s", vigil_strerror(status));
    }
    inst->errors_mark = inst->errors;
    bus_publish(bus, inst->up_id, now, status >= 0 ? 1.0 : 0.0);
    if (duration_ns >= 0) {
        bus_publish(bus, inst->ms_id, now, (double)duration_ns / 1e6);
    }
    bus_publish(bus, inst->err_id, now, (double)inst->errors);
}

static void host_collect_done(vigil_instance *inst, int status)
{
    int64_t dur = -1;

    if (inst->pending) {
        dur = clock_mono_ns() - inst->collect_start_mono;
        inst->pending = 0;
    }
    collect_finish(inst, status, dur);
}

static int host_register_diag(vigil_instance *inst, const struct vigil_diag *d)
{
    if (d == NULL || d->name == NULL || d->run == NULL) {
        return VIGIL_EINVAL;
    }
    /* Instances of one plugin each have their own; two plugins never
     * share a name. */
    for (vigil_instance *i = inst->set->insts; i != NULL; i = i->next) {
        for (unsigned k = 0; k < i->ndiags; k++) {
            if (strcmp(i->diags[k]->name, d->name) == 0 &&
                (i == inst || i->mod != inst->mod)) {
                log_warn(inst->src, "diagnostic '%s' is already registered",
                         d->name);
                return VIGIL_EEXIST;
            }
        }
    }
    if (inst->ndiags == PLUG_DIAGS_MAX) {
        return VIGIL_ELIMIT;
    }
    inst->diags[inst->ndiags++] = d;
    return 0;
}

static void host_reply(vigil_request *req, int status, const char *json)
{
    req->cb(req->arg, status, json);
    free(req);
}

static const char *host_instance_name(vigil_instance *inst)
{
    return inst->name;
}

static void host_progress(vigil_request *req, unsigned done, unsigned total)
{
    if (req != NULL && req->progress != NULL) {
        req->progress(req->arg, done, total);
    }
}

static const struct vigil_host plug_host = {
    .abi_version = VIGIL_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct vigil_host),
    .series = host_series,
    .publish = host_publish,
    .log = host_log,
    .error = host_error,
    .loop = host_loop,
    .now_ns = host_now_ns,
    .work = host_work,
    .collect_done = host_collect_done,
    .register_diag = host_register_diag,
    .reply = host_reply,
    .instance_name = host_instance_name,
    .progress = host_progress,
};

/* ---------------------------------------------------------------- instances */

static void on_tick(struct sched_timer *t, int64_t boundary_ns)
{
    vigil_instance *inst = t->data;
    int rc;

    if (inst->pending) {
        inst->skipped++;
        log_debug(inst->src, "previous collection still running; tick "
                             "skipped");
        return;
    }
    /* Samples carry the boundary the collection belongs to (the timer may
     * fire a millisecond early or a little late), so series line up. */
    inst->collect_ts = boundary_ns;
    inst->collect_start_mono = clock_mono_ns();
    inst->in_collect = 1;
    rc = inst->mod->desc->collect(inst->state);
    inst->in_collect = 0;
    if (rc == VIGIL_PENDING) {
        inst->pending = 1;
        return;
    }
    int64_t dur = clock_mono_ns() - inst->collect_start_mono;
    if (dur > PLUG_SLOW_COLLECT_NS) {
        log_warn(inst->src,
                 "collect took %.1f ms on the loop; a plugin that must "
                 "block should use host->work()",
                 (double)dur / 1e6);
    }
    collect_finish(inst, rc, dur);
}

static int inst_series(vigil_instance *inst, const char *measure,
                       vigil_series_id *id)
{
    char name[VIGIL_NAME_MAX];

    snprintf(name, sizeof(name), "%s.%s", inst->mod->desc->name, measure);
    return host_series(inst, name, NULL, 0, id);
}

static struct plug_mod *set_module(struct plug_set *ps, const char *name,
                                   struct vigil_err *err)
{
    struct plug_mod *m;

    for (m = ps->mods; m != NULL; m = m->next) {
        if (strcmp(m->desc->name, name) == 0) {
            return m;
        }
    }
    if (plug_open(ps->env.plugin_dir, name, &m, err) != 0) {
        return NULL;
    }
    m->next = ps->mods;
    ps->mods = m;
    return m;
}

static void inst_free(vigil_instance *inst)
{
    if (inst->inited && inst->mod->desc->destroy != NULL) {
        inst->mod->desc->destroy(inst->state);
    }
    free(inst->config);
    free(inst);
}

/* Options the core handles for every plugin section. */
static const char *const inst_extra_keys[] = {"interval", NULL};

/* Build one instance from its section; NULL after reporting to diag. */
static vigil_instance *inst_create(struct plug_set *ps, struct cfg *cfg,
                                   const struct cfg_section *sec,
                                   int check_only, struct cfg_diag *diag)
{
    struct vigil_err err = {0};
    vigil_instance *inst = calloc(1, sizeof(*inst));
    const struct cfg_entry *iv;
    int rc;

    if (inst == NULL) {
        cfg_diag_add(diag, "%s:%d: out of memory", sec->file, sec->line);
        return NULL;
    }
    inst->set = ps;
    inst->sec = sec;
    inst->named = sec->instance != NULL;
    snprintf(inst->name, sizeof(inst->name), "%s",
             sec->instance ? sec->instance : sec->name);
    snprintf(inst->src, sizeof(inst->src), "plugin=%s%s%s", sec->name,
             inst->named ? ",instance=" : "", inst->named ? inst->name : "");
    inst->mod = set_module(ps, sec->name, &err);
    if (inst->mod == NULL) {
        cfg_diag_add(diag, "%s:%d: [plugin %s]: %s", sec->file, sec->line,
                     sec->name, err.msg);
        goto fail;
    }
    inst->interval_ms = ps->env.default_interval_ms;
    iv = cfg_get(sec, "interval");
    if (iv != NULL &&
        (cfg_parse_duration_ms(iv->value, &inst->interval_ms) != 0 ||
         inst->interval_ms < 1)) {
        cfg_diag_add(diag,
                     "%s:%d: interval: expected a duration such as "
                     "500ms, 10s or 1m, got '%s'",
                     sec->file, iv->line, iv->value);
        goto fail;
    }
    const struct vigil_plugin *d = inst->mod->desc;
    inst->config = calloc(1, d->config_size ? d->config_size : 1);
    if (inst->config == NULL) {
        cfg_diag_add(diag, "%s:%d: out of memory", sec->file, sec->line);
        goto fail;
    }
    static const struct vigil_option no_options[] = {{0}};
    if (cfg_apply(cfg, d->options ? d->options : no_options, sec,
                  inst_extra_keys, inst->config, diag) != 0) {
        goto fail;
    }
    if (check_only) {
        return inst;
    }
    if (inst_series(inst, "up", &inst->up_id) != 0 ||
        inst_series(inst, "collect_ms", &inst->ms_id) != 0 ||
        inst_series(inst, "errors_total", &inst->err_id) != 0) {
        cfg_diag_add(diag, "%s:%d: [plugin %s]: cannot create its series",
                     sec->file, sec->line, sec->name);
        goto fail;
    }
    rc = d->init(&plug_host, inst, inst->config, &inst->state);
    if (rc != 0) {
        cfg_diag_add(diag, "%s:%d: [plugin %s%s%s]: init failed: %s", sec->file,
                     sec->line, sec->name, inst->named ? " " : "",
                     inst->named ? inst->name : "", vigil_strerror(rc));
        bus_publish(ps->env.bus, inst->up_id, clock_wall_ns(), 0.0);
        goto fail;
    }
    inst->inited = 1;
    return inst;
fail:
    ps->failed++;
    inst_free(inst);
    return NULL;
}

int plug_set_create(const struct plug_env *env, struct plug_set **out)
{
    struct plug_set *ps = calloc(1, sizeof(*ps));

    *out = NULL;
    if (ps == NULL) {
        return VIGIL_ENOMEM;
    }
    ps->env = *env;
    *out = ps;
    return 0;
}

int plug_set_configure(struct plug_set *ps, struct cfg *cfg, int check_only,
                       struct cfg_diag *diag)
{
    vigil_instance **tail = &ps->insts;
    int ready = 0;

    for (struct cfg_section *sec = cfg_first(cfg, "plugin"); sec != NULL;
         sec = cfg_next(sec, "plugin")) {
        if (sec->name == NULL) {
            cfg_diag_add(diag,
                         "%s:%d: [plugin] needs a plugin name, as in "
                         "[plugin sys] or [plugin http api]",
                         sec->file, sec->line);
            ps->failed++;
            continue;
        }
        vigil_instance *inst = inst_create(ps, cfg, sec, check_only, diag);
        if (inst == NULL) {
            continue;
        }
        *tail = inst;
        tail = &inst->next;
        ready++;
    }
    return ready;
}

static void inst_start(vigil_instance *inst)
{
    const struct vigil_plugin *d = inst->mod->desc;
    int rc;

    if (d->start != NULL) {
        rc = d->start(inst->state);
        if (rc != 0) {
            log_error(inst->src, "%s:%d: start failed: %s", inst->sec->file,
                      inst->sec->line, vigil_strerror(rc));
            bus_publish(inst->set->env.bus, inst->up_id, clock_wall_ns(), 0.0);
            inst->failed = 1;
            inst->set->failed++;
            return;
        }
    }
    inst->started = 1;
    if (d->collect == NULL) {
        return;
    }
    if (sched_init(inst->set->env.loop, &inst->timer, inst->interval_ms, 0,
                   on_tick) != 0) {
        log_error(inst->src, "cannot create the collection timer");
        return;
    }
    inst->timer.data = inst;
    inst->timer_open = 1;
    sched_start(&inst->timer);
    log_info(inst->src, "started, collecting every %lld ms",
             (long long)inst->interval_ms);
}

void plug_set_start(struct plug_set *ps)
{
    for (vigil_instance *i = ps->insts; i != NULL; i = i->next) {
        inst_start(i);
    }
}

void plug_set_stop(struct plug_set *ps)
{
    for (vigil_instance *i = ps ? ps->insts : NULL; i != NULL; i = i->next) {
        if (i->timer_open) {
            sched_close(&i->timer, NULL);
            i->timer_open = 0;
        }
        if (i->inited && !i->stopped && i->mod->desc->stop != NULL) {
            i->mod->desc->stop(i->state);
        }
        i->stopped = 1;
        i->started = 0;
    }
}

void plug_set_destroy(struct plug_set *ps)
{
    if (ps == NULL) {
        return;
    }
    while (ps->insts != NULL) {
        vigil_instance *i = ps->insts;
        ps->insts = i->next;
        inst_free(i);
    }
    while (ps->mods != NULL) {
        struct plug_mod *m = ps->mods;
        ps->mods = m->next;
        plug_close(m);
    }
    free(ps);
}

void plug_set_counts(const struct plug_set *ps, unsigned *running,
                     unsigned *failed)
{
    unsigned n = 0;

    for (vigil_instance *i = ps->insts; i != NULL; i = i->next) {
        n += i->started;
    }
    *running = n;
    *failed = ps->failed;
}

/* ---------------------------------------------------------------- diagnostics
 */

/* The diagnostic NAME of the instance called INSTANCE, or of the first
 * instance that has it when INSTANCE is NULL. */
static const struct vigil_diag *find_diag_of(const struct plug_set *ps,
                                             const char *name,
                                             const char *instance,
                                             vigil_instance **owner)
{
    for (vigil_instance *i = ps->insts; i != NULL; i = i->next) {
        if (instance != NULL && strcmp(i->name, instance) != 0) {
            continue;
        }
        for (unsigned k = 0; k < i->ndiags; k++) {
            if (strcmp(i->diags[k]->name, name) == 0) {
                *owner = i;
                return i->diags[k];
            }
        }
    }
    return NULL;
}

static const struct vigil_diag *
find_diag(const struct plug_set *ps, const char *name, vigil_instance **owner)
{
    return find_diag_of(ps, name, NULL, owner);
}

/* The "instance" member of a JSON object, copied into buf; NULL when
 * there is none. A cheap scan first: most arguments never name one. */
static const char *args_instance(const char *args, char *buf, size_t size)
{
    json_t *a, *v;
    const char *out = NULL;

    if (args == NULL || strstr(args, "\"instance\"") == NULL) {
        return NULL;
    }
    a = json_loads(args, JSON_DECODE_ANY, NULL);
    v = json_is_object(a) ? json_object_get(a, "instance") : NULL;
    if (json_is_string(v) && json_string_length(v) < size) {
        snprintf(buf, size, "%s", json_string_value(v));
        out = buf;
    }
    json_decref(a);
    return out;
}

const struct vigil_diag *plug_find_diag(const struct plug_set *ps,
                                        const char *name)
{
    vigil_instance *owner;

    return find_diag(ps, name, &owner);
}

int plug_diag_run(struct plug_set *ps, const char *name, const char *args_json,
                  plug_reply_cb cb, void *arg)
{
    return plug_diag_run_progress(ps, name, args_json, cb, NULL, arg);
}

int plug_diag_run_progress(struct plug_set *ps, const char *name,
                           const char *args_json, plug_reply_cb cb,
                           plug_progress_cb progress, void *arg)
{
    vigil_instance *owner = NULL;
    char ibuf[128];
    /* {"instance": NAME} picks which instance runs it: http.measure of
     * the "api" target rather than of whichever came first. */
    const char *inst = args_instance(args_json, ibuf, sizeof(ibuf));
    const struct vigil_diag *d = find_diag_of(ps, name, inst, &owner);

    if (d == NULL && inst != NULL) {
        /* A plugin may resolve "instance" itself (proc.snapshot). */
        d = find_diag(ps, name, &owner);
    }
    vigil_request *req;
    int rc;

    if (d == NULL) {
        return VIGIL_ENOENT;
    }
    req = calloc(1, sizeof(*req));
    if (req == NULL) {
        cb(arg, VIGIL_ENOMEM, NULL);
        return 0;
    }
    req->cb = cb;
    req->progress = progress;
    req->arg = arg;
    rc = d->run(owner->state, args_json ? args_json : "{}", req);
    if (rc < 0) {
        /* run() refused synchronously and will not reply. */
        host_reply(req, rc, NULL);
    }
    return 0;
}

void plug_foreach_diag(const struct plug_set *ps,
                       void (*fn)(void *arg, const char *instance,
                                  const struct vigil_diag *d),
                       void *arg)
{
    for (vigil_instance *i = ps->insts; i != NULL; i = i->next) {
        for (unsigned k = 0; k < i->ndiags; k++) {
            fn(arg, i->name, i->diags[k]);
        }
    }
}
