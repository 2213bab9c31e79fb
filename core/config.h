/*
 * config - the INI configuration: parsing, ${ENV} substitution, validation
 * against option tables, and messages that say file:line.
 *
 * cfg_load() reads the whole file with inih into a tree of sections and
 * entries, each remembering its line. Section headers have one to three
 * words: `[vigil]`, `[plugin sys]`, `[plugin http api]` give type, name
 * and instance. Modules then claim their sections (cfg_first/cfg_next) and
 * convert them with cfg_apply() and a `struct vigil_option` table (the same
 * table type plugins declare); finally cfg_check_unclaimed() reports any
 * section nobody claimed. Every problem is appended to a struct cfg_diag so
 * that `vigil check` can list them all, not just the first.
 *
 * Values:
 *   ${NAME} and ${NAME:-default} are replaced from the environment (an unset
 *   NAME without a default is an error); $$ is a literal $.
 *   An indented line continues the previous value (joined with "\n"); only
 *   VIGIL_OPT_LIST accepts multi-line values or repeated keys.
 *   Lines are limited to 199 characters (the inih build's limit); a longer
 *   line is an error, never silently cut.
 *   One pair of matching quotes around a whole value is removed ("x" and
 *   'x' give x; inih itself keeps them). A ';' after white space starts
 *   a comment even inside quotes; an unclosed quote is reported.
 *   A value is at most CFG_VALUE_MAX characters after substitution and
 *   joining.
 *
 * The struct cfg owns every string and list that cfg_apply() stores in a
 * destination struct; they stay valid until cfg_destroy().
 */
#ifndef VIGIL_CONFIG_H
#define VIGIL_CONFIG_H

#include <stdint.h>

#include "err.h"

#define CFG_DIAG_MAX 64
#define CFG_VALUE_MAX 4096

/* Collected problems, each "file:line: message". Bounded: past
 * CFG_DIAG_MAX only the count grows. */
struct cfg_diag {
    unsigned n; /* problems reported (may exceed CFG_DIAG_MAX) */
    char msg[CFG_DIAG_MAX][VIGIL_ERR_MAX];
};

void cfg_diag_init(struct cfg_diag *d);
void cfg_diag_add(struct cfg_diag *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Order the messages by line number (stable). */
void cfg_diag_sort(struct cfg_diag *d);

struct cfg_entry {
    const char *key;
    const char *value; /* after substitution; continuation lines joined */
    int line;
    int used; /* set by cfg_apply */
    struct cfg_entry *next;
};

struct cfg_section {
    const char *type;     /* "vigil", "plugin", ... */
    const char *name;     /* second word or NULL */
    const char *instance; /* third word or NULL */
    const char *file;
    int line;
    int claimed; /* set by cfg_first/cfg_next */
    struct cfg_entry *entries;
    struct cfg_section *next;
};

struct cfg;

/* Parse path. Syntax errors, bad section headers, duplicate sections,
 * unset environment variables and over-long lines go to diag; the tree
 * holds everything that parsed. Returns 0 when diag got nothing,
 * VIGIL_ENOENT when the file cannot be opened (*out NULL), VIGIL_ECONFIG
 * otherwise (*out still set). Also VIGIL_ENOMEM when out of memory (*out
 * NULL). Every non-zero return also adds a message to diag. */
int cfg_load(const char *path, struct cfg **out, struct cfg_diag *diag);

/* Same, from a string; `name` is used in messages. For tests and for the
 * embedded default. */
int cfg_load_string(const char *name, const char *text, struct cfg **out,
                    struct cfg_diag *diag);

void cfg_destroy(struct cfg *cfg); /* accepts NULL */

/* The path given to cfg_load (or the name given to cfg_load_string). */
const char *cfg_path(const struct cfg *cfg);

/* Iterate over sections of a type, marking them claimed. A NULL type
 * matches every section. */
struct cfg_section *cfg_first(struct cfg *cfg, const char *type);
struct cfg_section *cfg_next(struct cfg_section *sec, const char *type);

/* Fill dst from opts: defaults first, then the section's entries. Unknown
 * keys (not in opts nor in `extra`, a NULL-terminated list of keys the
 * caller handles itself; may be NULL), bad values and missing required
 * keys go to diag with file:line. sec may be NULL (defaults only).
 * Returns 0 or VIGIL_ECONFIG (or VIGIL_ENOMEM when out of memory).
 * Options without a default are zeroed; a list key present in sec
 * replaces the default list; the first entry of a scalar key is used. */
int cfg_apply(struct cfg *cfg, const struct vigil_option *opts,
              const struct cfg_section *sec, const char *const *extra,
              void *dst, struct cfg_diag *diag);

/* The entry for key in sec, or NULL. */
const struct cfg_entry *cfg_get(const struct cfg_section *sec, const char *key);

/* Report every unclaimed section: "file:line: unknown section [x];
 * expected one of: <known>". Returns the number reported. */
unsigned cfg_check_unclaimed(struct cfg *cfg, const char *known,
                             struct cfg_diag *diag);

/* Value parsers shared with the CLI and the rule engine. Each returns 0 or
 * VIGIL_EINVAL. */
int cfg_parse_duration_ms(const char *text, int64_t *ms);
int cfg_parse_bytes(const char *text, uint64_t *bytes);
int cfg_parse_bool(const char *text, int *b);
int cfg_parse_int(const char *text, int64_t *v);
int cfg_parse_double(const char *text, double *v);

/* Resolve a path relative to the directory of the config file (absolute
 * paths are returned as they are). The result is owned by cfg. Returns
 * NULL only when out of memory. */
const char *cfg_resolve_path(struct cfg *cfg, const char *path);

#endif
