/*
 * vigil/plugin.h - the vigil probe plugin ABI.
 *
 * This is the only header a plugin author needs. A plugin is a shared object
 * that exports exactly one symbol, `vigil_plugin`, a const struct
 * vigil_plugin filled with designated initialisers. The core dlopens it with
 * RTLD_NOW | RTLD_LOCAL, checks abi_version and struct_size, and talks to it
 * only through the callbacks in that descriptor. The plugin talks to the core
 * only through the struct vigil_host function table passed to init(): it
 * never links against core symbols, so it can be linked --no-undefined.
 *
 * Life cycle of one plugin instance (one `[plugin NAME INSTANCE]` section):
 *
 *   init(host, inst, config, &state)   parse nothing: config is already a
 *                                      filled struct (see options below)
 *   start(state)                       optional: open sockets, start timers
 *   collect(state) ...                 called by the core's scheduler every
 *                                      `interval`, aligned to wall-clock
 *                                      boundaries; optional
 *   stop(state)                        close uv handles, cancel requests
 *   destroy(state)                     free everything; called only after
 *                                      the loop has run the close callbacks
 *
 * All callbacks run on the core's single libuv loop thread, except the
 * `work_cb` passed to host->work(), which runs on the libuv thread pool and
 * must touch nothing but its own argument.
 *
 * Compatibility: both structs start with abi_version and struct_size and are
 * append-only. Enum values and error codes are appended, never renumbered.
 */
#ifndef VIGIL_PLUGIN_H
#define VIGIL_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VIGIL_PLUGIN_ABI_VERSION 1

#if defined(__GNUC__)
#define VIGIL_EXPORT __attribute__((visibility("default")))
#define VIGIL_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define VIGIL_EXPORT
#define VIGIL_PRINTF(f, a)
#endif

/*
 * Error codes. A fallible function returns 0 on success or one of these
 * negative codes. The list is append-only.
 */
#define VIGIL_ERRNO_MAP(XX)                                                    \
    XX(EINVAL, -1, "invalid argument")                                         \
    XX(ENOMEM, -2, "out of memory")                                            \
    XX(EIO, -3, "input/output error")                                          \
    XX(ENOENT, -4, "not found")                                                \
    XX(EEXIST, -5, "already exists")                                           \
    XX(ELIMIT, -6, "limit reached")                                            \
    XX(ECONFIG, -7, "configuration error")                                     \
    XX(EABI, -8, "plugin ABI mismatch")                                        \
    XX(ETIMEDOUT, -9, "timed out")                                             \
    XX(EBUSY, -10, "busy")                                                     \
    XX(ECANCELED, -11, "canceled")                                             \
    XX(EUNAVAIL, -12, "not available on this system")                          \
    XX(EPARSE, -13, "parse error")                                             \
    XX(ESTATE, -14, "wrong state")

enum vigil_errno {
    VIGIL_OK = 0,
#define VIGIL_ERRNO_ENUM_(name, code, text) VIGIL_##name = (code),
    VIGIL_ERRNO_MAP(VIGIL_ERRNO_ENUM_)
#undef VIGIL_ERRNO_ENUM_
};

/* Text for a VIGIL_E* code. */
static inline const char *vigil_error_text(int code)
{
    switch (code) {
    case VIGIL_OK:
        return "success";
#define VIGIL_ERRNO_TEXT_(name, num, text)                                     \
    case VIGIL_##name:                                                         \
        return text;
        VIGIL_ERRNO_MAP(VIGIL_ERRNO_TEXT_)
#undef VIGIL_ERRNO_TEXT_
    default:
        return "unknown error";
    }
}

/* Returned by collect() when the plugin will finish later through
 * host->collect_done(). */
#define VIGIL_PENDING 1

/* Log levels, most severe first. */
enum vigil_log_level {
    VIGIL_LOG_ERROR = 0,
    VIGIL_LOG_WARN = 1,
    VIGIL_LOG_INFO = 2,
    VIGIL_LOG_DEBUG = 3,
};

/* ------------------------------------------------------------------------
 * Options. A plugin declares its configuration keys in a table; the core
 * parses the INI section, rejects unknown keys, converts and range-checks
 * values, and fills a struct of `config_size` bytes at the given offsets
 * before init() runs. `vigil help plugin NAME` prints the table.
 */
enum vigil_opt_type {
    VIGIL_OPT_STRING = 1, /* const char *; NULL when unset and no default */
    VIGIL_OPT_INT,        /* int64_t */
    VIGIL_OPT_DOUBLE,     /* double */
    VIGIL_OPT_BOOL,       /* int: 0 or 1; yes/no, true/false, on/off, 1/0 */
    VIGIL_OPT_DURATION,   /* int64_t milliseconds; "250ms", "10s", "5m", "1h",
                             "1d"; a bare number is seconds */
    VIGIL_OPT_BYTES,      /* uint64_t; "512", "64KiB", "10MB", "1GiB" */
    VIGIL_OPT_ENUM,       /* int: index of the value in `choices` */
    VIGIL_OPT_LIST,       /* struct vigil_list; each occurrence of the key
                             (or each line of a multi-line value) appends */
};

enum vigil_opt_flags {
    VIGIL_OPT_REQUIRED = 1u << 0, /* missing key is a config error */
    VIGIL_OPT_SECRET = 1u << 1,   /* never logged or shown */
};

struct vigil_option {
    const char *key;
    int type;            /* enum vigil_opt_type */
    const char *def;     /* default as text, parsed like a config value */
    size_t offset;       /* offsetof(your_config, field) */
    const char *help;    /* one line for `vigil help plugin NAME` */
    unsigned flags;      /* enum vigil_opt_flags */
    const char *choices; /* VIGIL_OPT_ENUM: "a|b|c" */
};

struct vigil_list {
    size_t n;
    const char *const *v;
};

/* ------------------------------------------------------------------------
 * Series and labels.
 */
typedef uint32_t vigil_series_id;

struct vigil_label {
    const char *key;
    const char *value;
};

/* Limits on what a series may look like; longer names are refused. */
#define VIGIL_NAME_MAX 128
#define VIGIL_LABEL_KEY_MAX 64
#define VIGIL_LABEL_VALUE_MAX 256
#define VIGIL_LABELS_MAX 16

/* Opaque handles owned by the core. */
typedef struct vigil_instance vigil_instance;
typedef struct vigil_request vigil_request;
struct uv_loop_s;

typedef void (*vigil_work_cb)(void *arg);
typedef void (*vigil_after_work_cb)(void *arg, int status);

/*
 * A diagnostic is a named, on-demand measurement ("pg.slow_queries",
 * "http.measure") that runbooks run as investigation steps and the CLI runs
 * as `vigil probe`. An action is a named remediation ("pg.cancel"). Both are
 * asynchronous: run() starts the work and, now or later, calls
 * host->reply(req, status, json) exactly once. Arguments and results are
 * JSON texts so that plugins need no JSON library in the ABI.
 */
struct vigil_diag {
    const char *name; /* "<plugin>.<verb>", e.g. "pg.slow_queries" */
    const char *help; /* one line */
    const char *args; /* documentation of the JSON arguments */
    int is_action;    /* 0: read-only diagnostic; 1: changes things */
    /* Start the work. Return 0 when host->reply() has been or will be
     * called; a negative code when nothing was started (then reply() must
     * not be called: the core replies with that code). */
    int (*run)(void *state, const char *args_json, vigil_request *req);
    /* Called if the core gives up (timeout, shutdown) before reply();
     * optional. After it returns the plugin must not use req. */
    void (*cancel)(void *state, vigil_request *req);
};

/* ------------------------------------------------------------------------
 * The host: services the core offers a plugin. Every function takes the
 * instance handle given to init(); it is valid until destroy() returns.
 */
struct vigil_host {
    uint32_t abi_version;
    uint32_t struct_size;

    /* Intern a series: the metric name plus up to VIGIL_LABELS_MAX labels
     * (labels may be NULL when nlabels is 0), in any order: the core sorts
     * them and adds `instance` for named instances. The same name and
     * labels always give the same id. Strings are copied. Returns 0,
     * VIGIL_EINVAL (bad name or label) or VIGIL_ELIMIT (series limit
     * reached). */
    int (*series)(vigil_instance *inst, const char *name,
                  const struct vigil_label *labels, size_t nlabels,
                  vigil_series_id *out);

    /* Publish one sample. ts_ns is wall-clock nanoseconds since the epoch;
     * 0 means the start of the current collection inside collect() (so
     * that all samples of one collection share a time), now elsewhere.
     * Never allocates. Does not fail. */
    void (*publish)(vigil_instance *inst, vigil_series_id id, int64_t ts_ns,
                    double value);

    /* Log a message tagged with the plugin and instance. */
    void (*log)(vigil_instance *inst, int level, const char *fmt, ...)
        VIGIL_PRINTF(3, 4);

    /* Report a collection error: logged (rate-limited) and counted in
     * `<plugin>.errors_total`. */
    void (*error)(vigil_instance *inst, const char *fmt, ...)
        VIGIL_PRINTF(2, 3);

    /* The core's libuv loop. Plugins may create their own handles on it and
     * must close them in stop(). */
    struct uv_loop_s *(*loop)(vigil_instance *inst);

    /* Wall-clock nanoseconds since the epoch. */
    int64_t (*now_ns)(vigil_instance *inst);

    /* Run work_cb(arg) on the thread pool, then after_cb(arg, status) on the
     * loop (status VIGIL_ECANCELED if it was canceled at shutdown). */
    int (*work)(vigil_instance *inst, vigil_work_cb work_cb,
                vigil_after_work_cb after_cb, void *arg);

    /* Finish a collect() that returned VIGIL_PENDING: status 0 when the
     * target was reached, a negative code otherwise. Sets `<plugin>.up`
     * and `<plugin>.collect_ms`. */
    void (*collect_done)(vigil_instance *inst, int status);

    /* Register a diagnostic or action; the struct must outlive the
     * instance (a static const table is the norm). */
    int (*register_diag)(vigil_instance *inst, const struct vigil_diag *d);

    /* Complete a diagnostic or action request. json may be NULL; it is
     * copied. Call exactly once per run(). */
    void (*reply)(vigil_request *req, int status, const char *json);

    /* The instance name ("api" in `[plugin http api]`), or the plugin name
     * when the section names no instance. */
    const char *(*instance_name)(vigil_instance *inst);

    /* Say how far a long diagnostic has got (done of total steps: 37 of
     * 100 requests), shown by `vigil probe` on a terminal. Optional to
     * call; call it through vigil_progress(), which checks that the core
     * is new enough to have it. */
    void (*progress)(vigil_request *req, unsigned done, unsigned total);
};

/* Intern n unlabelled series, names[i] into ids[i]; 0 or the first
 * error (the rest are then not interned). */
static inline int vigil_series_names(const struct vigil_host *host,
                                     vigil_instance *inst,
                                     const char *const *names, size_t n,
                                     vigil_series_id *ids)
{
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = host->series(inst, names[i], NULL, 0, &ids[i]);
    }
    return rc;
}

/* Intern one series per value of one label (errors_total by class):
 * name{key=values[i]} into ids[i]; 0 or the first error. */
static inline int vigil_series_by_label(const struct vigil_host *host,
                                        vigil_instance *inst, const char *name,
                                        const char *key,
                                        const char *const *values, size_t n,
                                        vigil_series_id *ids)
{
    struct vigil_label l = {.key = key};
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < n; i++) {
        l.value = values[i];
        rc = host->series(inst, name, &l, 1, &ids[i]);
    }
    return rc;
}

/* host->progress when this core has it; nothing otherwise. */
static inline void vigil_progress(const struct vigil_host *host,
                                  vigil_request *req, unsigned done,
                                  unsigned total)
{
    if (host->struct_size >=
            offsetof(struct vigil_host, progress) + sizeof(host->progress) &&
        host->progress != NULL) {
        host->progress(req, done, total);
    }
}

/* ------------------------------------------------------------------------
 * The descriptor a plugin exports as `vigil_plugin`.
 */
struct vigil_plugin {
    uint32_t abi_version; /* VIGIL_PLUGIN_ABI_VERSION */
    uint32_t struct_size; /* sizeof(struct vigil_plugin) */
    const char *name;     /* must equal the file name without ".so" */
    const char *version;
    const char *description;

    /* Configuration: table ended by an entry with key == NULL. */
    const struct vigil_option *options;
    size_t config_size;

    /* Create the instance. `config` is filled from the options table and is
     * borrowed until destroy() returns. Store host and inst for later use.
     * Return 0 and set *state, or a negative code after host->log() says
     * why. Required. */
    int (*init)(const struct vigil_host *host, vigil_instance *inst,
                const void *config, void **state);

    /* Start background activity. Optional. */
    int (*start)(void *state);

    /* Take one measurement. Return 0 when done, a negative code when the
     * target could not be measured, or VIGIL_PENDING and later call
     * host->collect_done(). While a collection is pending the scheduler
     * skips ticks. Optional: self-scheduling plugins leave it NULL. */
    int (*collect)(void *state);

    /* Stop: close uv handles and cancel requests. Called once for every
     * instance whose init succeeded, started or not. The loop keeps
     * running until their close callbacks are done. Optional. */
    void (*stop)(void *state);

    /* Free the state. Optional. */
    void (*destroy)(void *state);
};

/* The one symbol a plugin exports. */
#define VIGIL_PLUGIN_SYMBOL "vigil_plugin"

#ifdef __cplusplus
}
#endif

#endif /* VIGIL_PLUGIN_H */
