/* daemon - vigil run / vigil check: the loop and everything on it. */
#include "daemon.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <jansson.h>
#include <uv.h>

#include "bus.h"
#include "clock.h"
#include "config.h"
#include "http.h"
#include "log.h"
#include "plug.h"
#include "paths.h"
#include "incident.h"
#include "print.h"
#include "runbook.h"
#include "store.h"
#include "schedule.h"

#define DAEMON_RELOAD_HOOKS 16
/* Give plugins this long to close their handles at shutdown. */
#define DAEMON_STOP_GRACE_MS 5000

/* The [vigil] section. */
struct daemon_conf {
    const char *plugin_dir;
    int log_level;
    int64_t interval_ms;
    int64_t window;
    int64_t max_series;
    int64_t lag_interval_ms;
};

#define OFF(f) offsetof(struct daemon_conf, f)
static const struct vigil_option daemon_options[] = {
    {"plugin_dir", VIGIL_OPT_STRING, NULL, OFF(plugin_dir),
     "where plugins are loaded from (default: next to the binary)", 0, NULL},
    {"log_level", VIGIL_OPT_ENUM, "info", OFF(log_level),
     "most verbose level written", 0, "error|warn|info|debug"},
    {"interval", VIGIL_OPT_DURATION, "10s", OFF(interval_ms),
     "default collection interval", 0, NULL},
    {"window", VIGIL_OPT_INT, "120", OFF(window),
     "samples kept in memory per series (rules may ask for more)", 0, NULL},
    {"max_series", VIGIL_OPT_INT, "100000", OFF(max_series),
     "most series the bus accepts", 0, NULL},
    {"loop_lag_interval", VIGIL_OPT_DURATION, "100ms", OFF(lag_interval_ms),
     "how often the loop measures its own lag", 0, NULL},
    {NULL, 0, NULL, 0, NULL, 0, NULL},
};
#undef OFF

/* The [rules] section: runbooks. */
struct rules_conf {
    const char *dir;
    const char *scripts;
    int64_t budget_ms;
    uint64_t memory;
    int64_t quarantine_after;
};

#define ROFF(f) offsetof(struct rules_conf, f)
static const struct vigil_option rules_options[] = {
    {"dir", VIGIL_OPT_STRING, NULL, ROFF(dir),
     "runbooks: every *.lua below it (default: the shipped rules/host/)", 0,
     NULL},
    {"scripts", VIGIL_OPT_STRING, NULL, ROFF(scripts),
     "where runbooks `require` Lua modules from: directories separated "
     "by ';', searched in order before the shipped scripts/",
     0, NULL},
    {"budget", VIGIL_OPT_DURATION, "50ms", ROFF(budget_ms),
     "time one runbook call may take before it is aborted", 0, NULL},
    {"memory", VIGIL_OPT_BYTES, "64MiB", ROFF(memory),
     "memory one runbook may hold", 0, NULL},
    {"quarantine_after", VIGIL_OPT_INT, "5", ROFF(quarantine_after),
     "errors in a row before a handler is quarantined", 0, NULL},
    {NULL, 0, NULL, 0, NULL, 0, NULL},
};
#undef ROFF

/* The [store] section: history and incidents. */
struct store_conf {
    const char *path;
    const char *keep;
    int64_t raw_ms;
    int64_t rollup_ms;
    int64_t flush_ms;
    int64_t buffer;
};

#define SOFF(f) offsetof(struct store_conf, f)
static const struct vigil_option store_options[] = {
    {"path", VIGIL_OPT_STRING, "vigil.db", SOFF(path),
     "SQLite file relative to this config's directory, or a "
     "postgresql:// URI shared by several agents",
     VIGIL_OPT_SECRET, NULL},
    {"keep", VIGIL_OPT_STRING, "*", SOFF(keep),
     "selector of the series whose history is kept", 0, NULL},
    {"retention", VIGIL_OPT_DURATION, "2d", SOFF(raw_ms),
     "how long raw samples are kept", 0, NULL},
    {"rollup_retention", VIGIL_OPT_DURATION, "90d", SOFF(rollup_ms),
     "how long 1-minute min/avg/max roll-ups are kept", 0, NULL},
    {"flush", VIGIL_OPT_DURATION, "1s", SOFF(flush_ms),
     "how often queued writes are committed", 0, NULL},
    {"buffer", VIGIL_OPT_INT, "8192", SOFF(buffer),
     "samples held between two flushes; more are counted as dropped", 0, NULL},
    {NULL, 0, NULL, 0, NULL, 0, NULL},
};
#undef SOFF

/* The [actions] section: the cap on every runbook action. */
struct actions_conf {
    int mode;
    uint64_t output_max;
};

#define AOFF(f) offsetof(struct actions_conf, f)
static const struct vigil_option actions_options[] = {
    {"mode", VIGIL_OPT_ENUM, "dry-run", AOFF(mode),
     "off: never act; dry-run: record what would run; on: act", 0,
     "off|dry-run|on"},
    {"output_max", VIGIL_OPT_BYTES, "64KiB", AOFF(output_max),
     "output kept from each step or action", 0, NULL},
    {NULL, 0, NULL, 0, NULL, 0, NULL},
};
#undef AOFF

/* Sections the core knows; later modules append theirs. */
static const char daemon_sections[] =
    "vigil, plugin, rules, store, actions, http";

struct daemon {
    uv_loop_t loop;
    struct cfg *cfg;
    struct daemon_conf conf;
    struct rules_conf rconf;
    struct store_conf sconf;
    struct actions_conf aconf;
    struct http_conf hconf;
    struct http *http;
    struct store *store;
    struct inc_mgr *incidents;
    char rules_dir[PATH_MAX];
    char scripts_dir[PATH_MAX];
    struct rb_engine *rules;
    struct bus *bus;
    struct plug_set *plugs;
    struct print *print;

    uv_signal_t sig[3];
    uv_timer_t lag_timer;
    uv_timer_t for_timer;
    uv_timer_t grace_timer;
    uv_check_t flush_check;
    struct sched_timer self_timer;
    int stopping;
    int handles_up;
    int probe_rc;
    int probe_human;
    int probe_tty;          /* progress bar on stderr */
    int probe_bar;          /* a bar is drawn and must be erased */
    int64_t probe_drawn_ns; /* when it was last drawn */
    const struct daemon_opts *opts;
    uv_timer_t probe_timer;

    int64_t lag_expected_ns; /* monotonic time the lag timer is due */
    double lag_max_ms;       /* worst lag since the last self tick */
    int64_t self_last_mono;
    double self_last_cpu_s;

    vigil_series_id id_lag, id_samples, id_series, id_cpu, id_rss, id_running,
        id_failed, id_rules, id_quarantined;

    struct {
        daemon_reload_cb cb;
        void *arg;
    } reload[DAEMON_RELOAD_HOOKS];
    unsigned nreload;
};

static void report_diag(struct cfg_diag *diag)
{
    unsigned shown = diag->n < CFG_DIAG_MAX ? diag->n : CFG_DIAG_MAX;

    cfg_diag_sort(diag);
    for (unsigned i = 0; i < shown; i++) {
        fprintf(stderr, "%s\n", diag->msg[i]);
    }
    if (diag->n > shown) {
        fprintf(stderr, "... and %u more problems\n", diag->n - shown);
    }
}

/* [rules] scripts is a ';'-separated list of directories, each relative
 * to the config, searched in order; the shipped scripts/ comes last, so
 * an operator's module (genesis/levels.lua) overrides the shipped one
 * without copying the rest. The result goes to d->scripts_dir. */
static void scripts_path(struct daemon *d, char *buf, size_t size)
{
    char *out = d->scripts_dir, *end = out + sizeof(d->scripts_dir);
    const char *p = d->rconf.scripts ? d->rconf.scripts : "";

    *out = '\0';
    while (*p != '\0') {
        size_t n = strcspn(p, ";");
        char one[PATH_MAX];

        if (n > 0 && n < sizeof(one)) {
            memcpy(one, p, n);
            one[n] = '\0';
            out += snprintf(out, (size_t)(end - out), "%s;",
                            cfg_resolve_path(d->cfg, one));
            out = out < end ? out : end - 1;
        }
        p += n + (p[n] == ';');
    }
    snprintf(out, (size_t)(end - out), "%s",
             paths_data_dir("scripts", buf, size));
}

/* The [rules] section; directories default to the shipped ones. */
static void load_rules_conf(struct daemon *d, struct cfg_diag *diag)
{
    struct cfg_section *sec = cfg_first(d->cfg, "rules");
    char buf[PATH_MAX];

    cfg_apply(d->cfg, rules_options, sec, NULL, &d->rconf, diag);
    if (d->rconf.budget_ms < 1 || d->rconf.quarantine_after < 1) {
        cfg_diag_add(diag,
                     "%s: [rules] budget and quarantine_after must "
                     "be above 0",
                     cfg_path(d->cfg));
    }
    snprintf(d->rules_dir, sizeof(d->rules_dir), "%s",
             d->rconf.dir ? cfg_resolve_path(d->cfg, d->rconf.dir)
                          : paths_data_dir("rules/host", buf, sizeof(buf)));
    scripts_path(d, buf, sizeof(buf));
}

/* Create the runbook engine and load every runbook. Problems go to diag;
 * runbooks that load run. Returns 0 or VIGIL_ENOMEM. */
static int rules_setup(struct daemon *d, uv_loop_t *loop, struct cfg_diag *diag)
{
    struct rb_env env = {.bus = d->bus,
                         .loop = loop,
                         .rules_dir = d->rules_dir,
                         .script_path = d->scripts_dir,
                         .mem_max = (size_t)d->rconf.memory,
                         .budget_ns = d->rconf.budget_ms * 1000000,
                         .quarantine_after =
                             (unsigned)d->rconf.quarantine_after};
    int files;

    if (rb_engine_create(&env, &d->rules) != 0) {
        return VIGIL_ENOMEM;
    }
    files = rb_engine_load(d->rules, diag);
    if (loop != NULL) {
        unsigned nf, nr, nq;
        rb_engine_counts(d->rules, &nf, &nr, &nq);
        log_info("rules", "%s: %d runbooks, %u rules", d->rules_dir, files, nr);
    }
    return 0;
}

struct hook_check {
    int have_plugin;
    struct cfg_diag *diag;
};

static void check_webhooks(void *arg, const struct rb_runbook *rb)
{
    struct hook_check *h = arg;

    for (size_t i = 0; i < rb->nactions && !h->have_plugin; i++) {
        if (strcmp(rb->actions[i].kind, "webhook") == 0) {
            cfg_diag_add(h->diag,
                         "%s:%d: action '%s' sends a webhook: add "
                         "[plugin webhook] to the config",
                         rb->path, rb->actions[i].line, rb->actions[i].name);
        }
    }
}

/* Runbook actions that need a plugin the config does not load. */
static void check_action_plugins(struct daemon *d, struct cfg_diag *diag)
{
    struct hook_check h = {.diag = diag};

    for (struct cfg_section *sec = cfg_first(d->cfg, "plugin"); sec != NULL;
         sec = cfg_next(sec, "plugin")) {
        h.have_plugin |= sec->name && strcmp(sec->name, "webhook") == 0;
    }
    rb_engine_foreach_runbook(d->rules, check_webhooks, &h);
}

/* Open the store (monitoring goes on without it if it cannot open) and
 * the incident manager, which follows every rule transition. */
static int incidents_setup(struct daemon *d, struct cfg_diag *diag)
{
    struct store_opts so = {
        .path = store_is_remote(d->sconf.path)
                    ? d->sconf.path
                    : cfg_resolve_path(d->cfg, d->sconf.path),
        .raw_retention_ns = d->sconf.raw_ms * 1000000,
        .rollup_retention_ns = d->sconf.rollup_ms * 1000000,
        .flush_interval_ms = d->sconf.flush_ms,
        .sample_buffer = (uint32_t)d->sconf.buffer,
    };
    struct vigil_err err = {0};

    if (store_open(&so, &d->loop, &d->store, &err) != 0) {
        log_error("store", "%s; history and incidents are not kept", err.msg);
        d->store = NULL;
    } else if (store_attach_bus(d->store, d->bus, d->sconf.keep, &err) != 0) {
        cfg_diag_add(diag, "%s: [store] keep: %s", cfg_path(d->cfg), err.msg);
    } else {
        log_info("store", "%s", so.path);
    }
    struct inc_env env = {.loop = &d->loop,
                          .bus = d->bus,
                          .rules = d->rules,
                          .plugs = d->plugs,
                          .store = d->store,
                          .mode = d->aconf.mode,
                          .output_max = (size_t)d->aconf.output_max};
    if (inc_create(&env, &d->incidents) != 0) {
        return VIGIL_ENOMEM;
    }
    rb_engine_observe(d->rules, inc_on_event, d->incidents);
    return 0;
}

/* Load the config and the [vigil] section. Problems go to diag. */
static int load_config(const struct daemon_opts *o, struct daemon *d,
                       struct cfg_diag *diag)
{
    int rc;

    if (o->config_path != NULL) {
        rc = cfg_load(o->config_path, &d->cfg, diag);
        if (rc == VIGIL_ENOENT) {
            cfg_diag_add(diag, "%s: cannot open the config file",
                         o->config_path);
            return rc;
        }
    } else {
        rc = cfg_load_string(o->config_name, o->config_text, &d->cfg, diag);
    }
    if (d->cfg == NULL) {
        return rc ? rc : VIGIL_ENOMEM;
    }
    struct cfg_section *sec = cfg_first(d->cfg, "vigil");
    if (sec != NULL && (sec->name != NULL || cfg_next(sec, "vigil"))) {
        cfg_diag_add(diag,
                     "%s:%d: there is one [vigil] section and it takes "
                     "no name",
                     sec->file, sec->line);
    }
    cfg_apply(d->cfg, daemon_options, sec, NULL, &d->conf, diag);
    if (d->conf.window < 2 || d->conf.window > 1000000) {
        cfg_diag_add(diag, "%s: [vigil] window must be 2..1000000",
                     cfg_path(d->cfg));
    }
    if (d->conf.max_series < 1 || d->conf.max_series > 10000000) {
        cfg_diag_add(diag, "%s: [vigil] max_series must be 1..10000000",
                     cfg_path(d->cfg));
    }
    if (d->conf.interval_ms < 1 || d->conf.lag_interval_ms < 1) {
        cfg_diag_add(diag, "%s: [vigil] intervals must be at least 1ms",
                     cfg_path(d->cfg));
    }
    load_rules_conf(d, diag);
    cfg_apply(d->cfg, store_options, cfg_first(d->cfg, "store"), NULL,
              &d->sconf, diag);
    cfg_apply(d->cfg, actions_options, cfg_first(d->cfg, "actions"), NULL,
              &d->aconf, diag);
    http_conf_load(d->cfg, &d->hconf, diag);
    return diag->n ? VIGIL_ECONFIG : 0;
}

static const char *plugin_dir(const struct daemon_opts *o, struct daemon *d)
{
    if (o->plugin_dir != NULL) {
        return o->plugin_dir;
    }
    if (d->conf.plugin_dir != NULL) {
        return cfg_resolve_path(d->cfg, d->conf.plugin_dir);
    }
    return plug_default_dir();
}

int daemon_check(const struct daemon_opts *o)
{
    struct daemon d;
    struct cfg_diag *diag = malloc(sizeof(*diag));
    struct bus_limits lim;
    int rc = 2;

    memset(&d, 0, sizeof(d));
    if (diag == NULL) {
        return 1;
    }
    cfg_diag_init(diag);
    load_config(o, &d, diag);
    if (d.cfg != NULL) {
        bus_limits_default(&lim);
        struct plug_env env = {.loop = NULL,
                               .plugin_dir = plugin_dir(o, &d),
                               .default_interval_ms = d.conf.interval_ms};
        if (bus_create(&lim, &env.bus) == 0 &&
            plug_set_create(&env, &d.plugs) == 0) {
            plug_set_configure(d.plugs, d.cfg, 1, diag);
            d.bus = env.bus;
            if (rules_setup(&d, NULL, diag) == 0) {
                check_action_plugins(&d, diag);
            }
        }
        cfg_check_unclaimed(d.cfg, daemon_sections, diag);
        rb_engine_destroy(d.rules);
        plug_set_destroy(d.plugs);
        bus_destroy(env.bus);
    }
    report_diag(diag);
    if (diag->n == 0) {
        printf("%s: OK\n", o->config_path ? o->config_path : o->config_name);
        rc = 0;
    }
    cfg_destroy(d.cfg);
    free(diag);
    return rc;
}

int daemon_on_reload(struct daemon *d, daemon_reload_cb cb, void *arg)
{
    if (d->nreload == DAEMON_RELOAD_HOOKS) {
        return VIGIL_ELIMIT;
    }
    d->reload[d->nreload].cb = cb;
    d->reload[d->nreload].arg = arg;
    d->nreload++;
    return 0;
}

/* ---------------------------------------------------------------- self */

static void on_lag_timer(uv_timer_t *t)
{
    struct daemon *d = t->data;
    int64_t now = clock_mono_ns();
    double lag_ms = (double)(now - d->lag_expected_ns) / 1e6;

    if (lag_ms < 0) {
        lag_ms = 0; /* libuv rounds timers to whole milliseconds */
    }
    if (lag_ms > d->lag_max_ms) {
        d->lag_max_ms = lag_ms;
    }
    d->lag_expected_ns = now + d->conf.lag_interval_ms * 1000000;
}

static double self_cpu_seconds(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Resident set size from /proc/self/statm; 0 when unreadable. */
static double self_rss_bytes(void)
{
    char buf[128];
    unsigned long size = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    if (f == NULL) {
        return 0;
    }
    if (fgets(buf, sizeof(buf), f) == NULL ||
        sscanf(buf, "%lu %lu", &size, &rss) != 2) {
        rss = 0;
    }
    fclose(f);
    return (double)rss * (double)sysconf(_SC_PAGESIZE);
}

static void on_self_tick(struct sched_timer *t, int64_t boundary_ns)
{
    struct daemon *d = t->data;
    int64_t now = boundary_ns; /* aligned, as plugin samples are */
    int64_t mono = clock_mono_ns();
    double cpu = self_cpu_seconds();
    unsigned running, failed;

    bus_publish(d->bus, d->id_lag, now, d->lag_max_ms);
    d->lag_max_ms = 0;
    if (d->self_last_mono != 0) {
        double wall_s = (double)(mono - d->self_last_mono) / 1e9;
        bus_publish(d->bus, d->id_cpu, now,
                    100.0 * (cpu - d->self_last_cpu_s) / wall_s);
    }
    d->self_last_mono = mono;
    d->self_last_cpu_s = cpu;
    bus_publish(d->bus, d->id_rss, now, self_rss_bytes());
    plug_set_counts(d->plugs, &running, &failed);
    bus_publish(d->bus, d->id_running, now, running);
    bus_publish(d->bus, d->id_failed, now, failed);
    bus_publish(d->bus, d->id_series, now, bus_series_count(d->bus));
    if (d->rules != NULL) {
        unsigned files, rules, quarantined;
        rb_engine_counts(d->rules, &files, &rules, &quarantined);
        bus_publish(d->bus, d->id_rules, now, rules);
        bus_publish(d->bus, d->id_quarantined, now, quarantined);
    }
    bus_publish(d->bus, d->id_samples, now, (double)bus_samples_total(d->bus));
}

static int self_series(struct daemon *d)
{
    static const struct {
        const char *name;
        size_t off;
    } s[] = {
        {"vigil.loop.lag_ms", offsetof(struct daemon, id_lag)},
        {"vigil.bus.samples_total", offsetof(struct daemon, id_samples)},
        {"vigil.bus.series", offsetof(struct daemon, id_series)},
        {"vigil.process.cpu_pct", offsetof(struct daemon, id_cpu)},
        {"vigil.process.rss_bytes", offsetof(struct daemon, id_rss)},
        {"vigil.plugins.running", offsetof(struct daemon, id_running)},
        {"vigil.plugins.failed", offsetof(struct daemon, id_failed)},
        {"vigil.rules.loaded", offsetof(struct daemon, id_rules)},
        {"vigil.rules.quarantined", offsetof(struct daemon, id_quarantined)},
    };
    struct vigil_err err = {0};

    for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
        vigil_series_id *id = (vigil_series_id *)((char *)d + s[i].off);
        if (bus_intern(d->bus, s[i].name, NULL, 0, id, &err) != 0) {
            log_error("core", "%s", err.msg);
            return err.code;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- stop */

static void close_all(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) {
        uv_close(h, NULL);
    }
}

static void on_grace_timer(uv_timer_t *t)
{
    struct daemon *d = t->data;

    log_error("core",
              "plugins did not close their handles within %d ms; "
              "closing them",
              DAEMON_STOP_GRACE_MS);
    uv_walk(&d->loop, close_all, NULL);
}

/* Every rule transition goes to the log. */
static void on_rule_event(void *arg, const struct rule_event *ev,
                          const char *file)
{
    struct daemon *d = arg;
    char src[RULE_NAME_MAX + 16];

    snprintf(src, sizeof(src), "rule=%s", ev->def->name);
    log_msg(ev->to == RULE_CRITICAL  ? VIGIL_LOG_ERROR
            : ev->to == RULE_WARNING ? VIGIL_LOG_WARN
                                     : VIGIL_LOG_INFO,
            src, "%s%s%s -> %s: %s (%s)",
            ev->def->kind == RULE_THRESHOLD ? bus_series_key(d->bus, ev->series)
                                            : "",
            ev->def->kind == RULE_THRESHOLD ? " " : "",
            rule_state_name(ev->from), rule_state_name(ev->to),
            ev->reason ? ev->reason : "", file);
}

/* SIGHUP: re-run every runbook; broken ones keep their old version. */
static void on_reload_rules(void *arg)
{
    struct daemon *d = arg;
    struct cfg_diag *diag = malloc(sizeof(*diag));
    unsigned files, rules, quarantined;

    if (diag == NULL) {
        log_error("rules", "reload: out of memory");
        return;
    }
    cfg_diag_init(diag);
    rb_engine_load(d->rules, diag);
    cfg_diag_sort(diag);
    for (unsigned i = 0; i < diag->n && i < CFG_DIAG_MAX; i++) {
        log_error("rules",
                  "reload: %s (the previous version keeps "
                  "running)",
                  diag->msg[i]);
    }
    rb_engine_counts(d->rules, &files, &rules, &quarantined);
    log_info("rules",
             "reloaded: %u runbooks, %u rules, %u quarantined, "
             "%u errors",
             files, rules, quarantined, diag->n);
    free(diag);
}

static void daemon_stop(struct daemon *d, const char *why)
{
    if (d->stopping) {
        return;
    }
    d->stopping = 1;
    log_info("core", "stopping (%s)", why);
    http_stop(d->http);
    plug_set_stop(d->plugs);
    rb_engine_stop(d->rules);
    inc_stop(d->incidents);
    /* Commits what is queued, synchronously: acceptable at shutdown. */
    store_close(d->store);
    d->store = NULL;
    for (int i = 0; i < 3; i++) {
        uv_close((uv_handle_t *)&d->sig[i], NULL);
    }
    uv_close((uv_handle_t *)&d->lag_timer, NULL);
    uv_close((uv_handle_t *)&d->for_timer, NULL);
    uv_close((uv_handle_t *)&d->probe_timer, NULL);
    uv_close((uv_handle_t *)&d->flush_check, NULL);
    sched_close(&d->self_timer, NULL);
    /* The grace timer does not keep the loop alive: it only fires if a
     * plugin leaves a handle open. */
    uv_timer_start(&d->grace_timer, on_grace_timer, DAEMON_STOP_GRACE_MS, 0);
    uv_unref((uv_handle_t *)&d->grace_timer);
}

/* SIGHUP, or POST /api/v1/reload. */
static void daemon_reload(void *arg)
{
    struct daemon *d = arg;

    log_info("core", "reloading (%u hooks)", d->nreload);
    for (unsigned i = 0; i < d->nreload; i++) {
        d->reload[i].cb(d->reload[i].arg);
    }
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct daemon *d = s->data;

    if (signum == SIGHUP) {
        log_info("core", "SIGHUP");
        daemon_reload(d);
        return;
    }
    daemon_stop(d, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

static void on_for_timer(uv_timer_t *t)
{
    struct daemon *d = t->data;

    if (d->probe_rc < 0) { /* vigil probe got no reply in time */
        fprintf(stderr, "vigil probe: no result within --for\n");
        d->probe_rc = 1;
    }
    daemon_stop(d, "--for elapsed");
}

static void on_flush(uv_check_t *c)
{
    struct daemon *d = c->data;

    print_flush(d->print);
}

/* ---------------------------------------------------------------- probe */

/* Did a measurement succeed for none of its tries? */
static int v_ok_zero(const char *json)
{
    json_t *v = json ? json_loads(json, 0, NULL) : NULL;
    const json_t *ok = json_object_get(v, "ok");
    int none = json_is_integer(ok) && json_integer_value(ok) == 0;

    json_decref(v);
    return none;
}

/* A measurement (mean_ms...) as the guide's scripts print it. */
static void print_measure(const json_t *v)
{
    static const char *const keys[] = {"mean_ms", "stdev_ms", "min_ms",
                                       "max_ms",  "p50_ms",   "p95_ms",
                                       "p99_ms"};
    static const char *const names[] = {"Mean", "StdDev", "Min", "Max",
                                        "P50",  "P95",    "P99"};
    const json_t *target = json_object_get(v, "url");

    if (target != NULL) {
        printf("Latency statistics for %s:\n", json_string_value(target));
    } else {
        printf("Latency statistics for %s:%lld:\n",
               json_string_value(json_object_get(v, "host")),
               (long long)json_integer_value(json_object_get(v, "port")));
    }
    printf("  requests: %lld ok, %lld errors\n",
           (long long)json_integer_value(json_object_get(v, "ok")),
           (long long)json_integer_value(json_object_get(v, "errors")));
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const json_t *x = json_object_get(v, keys[i]);
        if (json_is_number(x)) {
            printf("  %-7s %.2f ms\n", names[i], json_number_value(x));
        }
    }
    const json_t *ph = json_object_get(v, "phases");
    const char *k;
    json_t *x;
    if (json_is_object(ph)) {
        printf("  phases (mean):");
        json_object_foreach((json_t *)ph, k, x)
        {
            if (json_is_number(x)) {
                printf(" %s %.2f ms", k, json_number_value(x));
            }
        }
        printf("\n");
    }
}

/* A progress bar on stderr while a measurement runs, only on a terminal:
 * redrawn at most every 100 ms, erased before the result is printed. */
static void on_probe_progress(void *arg, unsigned done, unsigned total)
{
    struct daemon *d = arg;
    int64_t now = clock_mono_ns();
    char bar[31];
    unsigned fill;

    if (!d->probe_tty || total == 0 ||
        (done < total && now - d->probe_drawn_ns < 100000000)) {
        return;
    }
    d->probe_drawn_ns = now;
    fill = (unsigned)((uint64_t)(done > total ? total : done) * 30 / total);
    memset(bar, '#', fill);
    memset(bar + fill, '.', 30 - fill);
    bar[30] = '\0';
    fprintf(stderr, "\r%s [%s] %u/%u", d->opts->probe, bar, done, total);
    d->probe_bar = 1;
}

/* A query measured with its plan (sqlite.measure) as people read it. */
static void print_query(const json_t *v)
{
    const json_t *t = json_object_get(v, "timing"), *x;
    size_t i;

    printf("Query on %s: %s\n", json_string_value(json_object_get(v, "file")),
           json_string_value(json_object_get(v, "sql")));
    printf("  runs: %lld ok, %lld busy, %lld errors; %lld rows, %lld rows "
           "read by full scans\n",
           (long long)json_integer_value(json_object_get(v, "ok")),
           (long long)json_integer_value(json_object_get(v, "busy")),
           (long long)json_integer_value(json_object_get(v, "errors")),
           (long long)json_integer_value(json_object_get(v, "rows")),
           (long long)json_integer_value(json_object_get(v, "fullscan_steps")));
    if (json_is_object(t)) {
        printf(
            "  time: mean %.3f ms, stdev %.3f, min %.3f, max %.3f, P50 %.3f, "
            "P95 %.3f, P99 %.3f\n",
            json_number_value(json_object_get(t, "mean_ms")),
            json_number_value(json_object_get(t, "stdev_ms")),
            json_number_value(json_object_get(t, "min_ms")),
            json_number_value(json_object_get(t, "max_ms")),
            json_number_value(json_object_get(t, "p50_ms")),
            json_number_value(json_object_get(t, "p95_ms")),
            json_number_value(json_object_get(t, "p99_ms")));
    }
    printf("  plan:\n");
    json_array_foreach(json_object_get(v, "plan"), i, x)
    {
        printf("    %s%s\n", json_string_value(json_object_get(x, "detail")),
               json_is_true(json_object_get(x, "full_scan")) ? "  <- full scan"
                                                             : "");
    }
    json_array_foreach(json_object_get(v, "hints"), i, x)
    {
        printf("  hint: %s\n", json_string_value(x));
    }
}

static void on_probe_reply(void *arg, int status, const char *json)
{
    struct daemon *d = arg;
    json_t *v = json ? json_loads(json, JSON_DECODE_ANY, NULL) : NULL;

    if (d->probe_bar) {
        fputs("\r\033[K", stderr); /* the bar gives way to the result */
        d->probe_bar = 0;
    }

    if (v != NULL && d->probe_human && json_is_object(v) &&
        json_object_get(v, "mean_ms") != NULL) {
        print_measure(v);
        json_decref(v);
    } else if (v != NULL && d->probe_human && json_is_object(v) &&
               json_object_get(v, "plan") != NULL &&
               json_object_get(v, "timing") != NULL) {
        print_query(v);
        json_decref(v);
    } else if (v != NULL) {
        /* 12 significant digits: 33.3451, not 33.345100000000002; epoch
         * seconds keep their milliseconds. */
        json_dumpf(v, stdout,
                   JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_REAL_PRECISION(12));
        fputc('\n', stdout);
        json_decref(v);
    } else if (json != NULL) {
        printf("%s\n", json);
    }
    fflush(stdout);
    if (status != 0) {
        fprintf(stderr, "vigil probe: %s\n", vigil_strerror(status));
    }
    /* A measurement where nothing succeeded is a failure for scripts. */
    d->probe_rc = status == 0 && !(v_ok_zero(json)) ? 0 : 1;
    /* Not from inside the plugin's reply: stop on the next loop turn. */
    uv_timer_start(&d->for_timer, on_for_timer, 0, 0);
}

static void list_diag(void *arg, const char *instance,
                      const struct vigil_diag *diag)
{
    (void)arg;
    fprintf(stderr, "  %-22s %s%s (from %s)\n", diag->name,
            diag->is_action ? "[action] " : "", diag->help ? diag->help : "",
            instance);
}

static void probe_start(struct daemon *d, const struct daemon_opts *o)
{
    int rc = plug_diag_run_progress(d->plugs, o->probe,
                                    o->probe_args ? o->probe_args : "{}",
                                    on_probe_reply, on_probe_progress, d);

    if (rc == VIGIL_ENOENT) {
        fprintf(stderr,
                "vigil probe: no configured plugin provides '%s'; "
                "available here:\n",
                o->probe);
        plug_foreach_diag(d->plugs, list_diag, NULL);
        d->probe_rc = 1;
        uv_timer_start(&d->for_timer, on_for_timer, 0, 0);
    }
}

/* ---------------------------------------------------------------- investigate
 */

static void on_investigated(void *arg, int64_t id)
{
    struct daemon *d = arg;

    *d->opts->investigated = id;
    /* Not from inside the incident manager: stop on the next turn. */
    uv_timer_start(&d->for_timer, on_for_timer, 0, 0);
}

static void list_runbook(void *arg, const struct rb_runbook *rb)
{
    (void)arg;
    fprintf(stderr, "  %-24s %s (%s:%d)\n", rb->name, rb->title, rb->path,
            rb->line);
}

/* Plugins have collected once: run the runbook's steps. */
static void on_investigate_timer(uv_timer_t *t)
{
    struct daemon *d = t->data;
    const char *name = d->opts->investigate;

    if (inc_investigate(d->incidents, name, on_investigated, d) != 0) {
        fprintf(stderr, "vigil investigate: no runbook '%s'; loaded here:\n",
                name);
        rb_engine_foreach_runbook(d->rules, list_runbook, NULL);
        uv_timer_start(&d->for_timer, on_for_timer, 0, 0);
    }
}

static void on_probe_timer(uv_timer_t *t)
{
    struct daemon *d = t->data;

    probe_start(d, d->opts);
}

int daemon_probe(const struct daemon_opts *o)
{
    return daemon_run(o);
}

/* ---------------------------------------------------------------- run */

/* Signals, timers and the flush check. Intervals were validated with the
 * config, so nothing here can fail. */
static void start_handles(struct daemon *d, const struct daemon_opts *o)
{
    static const int signums[3] = {SIGINT, SIGTERM, SIGHUP};
    uv_loop_t *loop = &d->loop;

    for (int i = 0; i < 3; i++) {
        uv_signal_init(loop, &d->sig[i]);
        d->sig[i].data = d;
        uv_signal_start(&d->sig[i], on_signal, signums[i]);
    }
    uv_timer_init(loop, &d->lag_timer);
    d->lag_timer.data = d;
    d->lag_expected_ns = clock_mono_ns() + d->conf.lag_interval_ms * 1000000;
    uv_timer_start(&d->lag_timer, on_lag_timer,
                   (uint64_t)d->conf.lag_interval_ms,
                   (uint64_t)d->conf.lag_interval_ms);
    uv_timer_init(loop, &d->for_timer);
    d->for_timer.data = d;
    if (o->run_for_ms > 0) {
        uv_timer_start(&d->for_timer, on_for_timer, (uint64_t)o->run_for_ms, 0);
    }
    uv_timer_init(loop, &d->probe_timer);
    d->probe_timer.data = d;
    uv_timer_init(loop, &d->grace_timer);
    d->grace_timer.data = d;
    uv_check_init(loop, &d->flush_check);
    d->flush_check.data = d;
    uv_check_start(&d->flush_check, on_flush);
    sched_init(loop, &d->self_timer, d->conf.interval_ms, 0, on_self_tick);
    d->self_timer.data = d;
    sched_start(&d->self_timer);
}

static void log_open_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    log_error("core", "handle still open at exit: %s",
              uv_handle_type_name(h->type));
}

/* Build everything up to a running loop; returns an exit code != 0 on
 * failure (after reporting). */
static int daemon_setup(struct daemon *d, const struct daemon_opts *o,
                        struct cfg_diag *diag)
{
    struct bus_limits lim;
    struct vigil_err err = {0};

    load_config(o, d, diag);
    if (diag->n > 0) {
        return 2;
    }
    /* A probe's output is its result: only warnings and errors besides. */
    log_set_level(o->probe || o->investigate ? VIGIL_LOG_WARN
                                             : d->conf.log_level);
    bus_limits_default(&lim);
    lim.window_default = (uint32_t)d->conf.window;
    lim.max_series = (uint32_t)d->conf.max_series;
    if (bus_create(&lim, &d->bus) != 0 || self_series(d) != 0) {
        return 1;
    }
    if (o->nprint > 0 && print_create(d->bus, o->print, o->nprint, stdout,
                                      isatty(STDOUT_FILENO), &d->print, &err)) {
        fprintf(stderr, "--print: %s\n", err.msg);
        return 2;
    }
    struct plug_env env = {.loop = &d->loop,
                           .bus = d->bus,
                           .plugin_dir = plugin_dir(o, d),
                           .default_interval_ms = d->conf.interval_ms};
    if (plug_set_create(&env, &d->plugs) != 0) {
        return 1;
    }
    plug_set_configure(d->plugs, d->cfg, 0, diag);
    if (o->probe != NULL) {
        /* A probe measures; it opens no incident and writes no store. */
        cfg_first(d->cfg, "rules");
        cfg_first(d->cfg, "store");
        cfg_first(d->cfg, "actions");
        cfg_check_unclaimed(d->cfg, daemon_sections, diag);
        return 0;
    }
    if (rules_setup(d, &d->loop, diag) != 0) {
        return 1;
    }
    rb_engine_observe(d->rules, on_rule_event, d);
    daemon_on_reload(d, on_reload_rules, d);
    check_action_plugins(d, diag);
    if (incidents_setup(d, diag) != 0) {
        return 1;
    }
    if (d->hconf.enabled && o->investigate == NULL) {
        struct http_env he = {.loop = &d->loop,
                              .bus = d->bus,
                              .rules = d->rules,
                              .incidents = d->incidents,
                              .plugs = d->plugs,
                              .store_path =
                                  d->store == NULL ? NULL
                                  : store_is_remote(d->sconf.path)
                                      ? d->sconf.path
                                      : cfg_resolve_path(d->cfg, d->sconf.path),
                              .interval_ms = d->conf.interval_ms,
                              .reload = daemon_reload,
                              .reload_arg = d};
        if (http_create(&d->hconf, &he, &d->http) != 0) {
            return 1;
        }
    }
    cfg_check_unclaimed(d->cfg, daemon_sections, diag);
    /* A plugin that cannot start is reported and skipped; the config
     * itself must be right. */
    for (unsigned i = 0; i < diag->n && i < CFG_DIAG_MAX; i++) {
        log_error("config", "%s", diag->msg[i]);
    }
    return 0;
}

/* What runs once the plugins have started: the rules (vigil run), or
 * one diagnostic (vigil probe), or one runbook's steps (vigil
 * investigate). */
static void start_mode(struct daemon *d, const struct daemon_opts *o)
{
    d->opts = o;
    if (o->probe != NULL) {
        d->probe_rc = -1; /* no reply yet */
        d->probe_human = o->probe_human;
        d->probe_tty = o->probe_human && isatty(STDERR_FILENO);
        if (o->probe_delay_ms > 0) {
            uv_timer_start(&d->probe_timer, on_probe_timer,
                           (uint64_t)o->probe_delay_ms, 0);
        } else {
            probe_start(d, o);
        }
    } else if (o->investigate != NULL) {
        /* No rule runs: an investigation opens no other incident. */
        *o->investigated = 0;
        uv_timer_start(&d->probe_timer, on_investigate_timer,
                       (uint64_t)o->probe_delay_ms, 0);
    } else {
        rb_engine_start(d->rules);
    }
}

/* Stop what is still running (after a failed setup), let every close
 * callback run, free everything and check that the loop closes; frees d.
 * Returns rc, or 1 when handles were left open. */
static int teardown(struct daemon *d, int rc)
{
    if (!d->stopping) { /* setup failed: stop what it started */
        http_stop(d->http);
        plug_set_stop(d->plugs);
        inc_stop(d->incidents);
        store_close(d->store);
        d->store = NULL;
    }
    /* Run the close callbacks of everything stopped above, then close the
     * (unreferenced) grace timer, which kept no loop iteration alive. */
    uv_run(&d->loop, UV_RUN_DEFAULT);
    if (d->handles_up) {
        uv_close((uv_handle_t *)&d->grace_timer, NULL);
        uv_run(&d->loop, UV_RUN_DEFAULT);
    }
    plug_set_destroy(d->plugs);
    inc_destroy(d->incidents); /* after the plugins: no reply can come */
    rb_engine_destroy(d->rules);
    http_destroy(d->http); /* after everything that could call it back */
    print_destroy(d->print);
    bus_destroy(d->bus);
    cfg_destroy(d->cfg);
    if (uv_loop_close(&d->loop) != 0) {
        uv_walk(&d->loop, log_open_handle, NULL);
        rc = rc ? rc : 1;
    }
    free(d);
    return rc;
}

int daemon_run(const struct daemon_opts *o)
{
    struct daemon *d = calloc(1, sizeof(*d));
    struct cfg_diag *diag = malloc(sizeof(*diag));
    unsigned running, failed;
    int rc = 1;

    if (d == NULL || diag == NULL || uv_loop_init(&d->loop) != 0) {
        free(d);
        free(diag);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    cfg_diag_init(diag);
    rc = daemon_setup(d, o, diag);
    if (rc != 0) {
        report_diag(diag);
        goto out;
    }
    start_handles(d, o);
    d->handles_up = 1;
    if (d->http != NULL) {
        http_start(d->http); /* logs the dashboard's address, or why not */
    }
    plug_set_start(d->plugs);
    start_mode(d, o);
    plug_set_counts(d->plugs, &running, &failed);
    log_info("core",
             "vigil %s running: config %s, %u plugin instances "
             "(%u failed), %u series, actions %s; incidents: vigil "
             "incidents list -c %s",
             VIGIL_VERSION, cfg_path(d->cfg), running, failed,
             bus_series_count(d->bus),
             d->aconf.mode == INC_MODE_ON        ? "on"
             : d->aconf.mode == INC_MODE_DRY_RUN ? "dry-run"
                                                 : "off",
             o->config_path ? o->config_path : "FILE");
    uv_run(&d->loop, UV_RUN_DEFAULT);
    rc = o->probe != NULL ? d->probe_rc : 0;
out:
    rc = teardown(d, rc);
    free(diag);
    return rc;
}

int daemon_store_path(const struct daemon_opts *o, char *buf, size_t size)
{
    struct daemon d;
    struct cfg_diag *diag = malloc(sizeof(*diag));
    int rc = 2;

    memset(&d, 0, sizeof(d));
    if (diag == NULL) {
        return 1;
    }
    cfg_diag_init(diag);
    load_config(o, &d, diag);
    if (diag->n == 0) {
        snprintf(buf, size, "%s",
                 store_is_remote(d.sconf.path)
                     ? d.sconf.path
                     : cfg_resolve_path(d.cfg, d.sconf.path));
        rc = 0;
    } else {
        report_diag(diag);
    }
    cfg_destroy(d.cfg);
    free(diag);
    return rc;
}
