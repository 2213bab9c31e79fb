/*
 * exec - run a program as an investigation step or an action: argv only
 * (never a shell string), a clean environment (PATH plus the caller's
 * VIGIL_* variables), output captured and capped, a timeout after which the
 * process group gets SIGTERM and, if it has not exited two seconds later,
 * SIGKILL. Runs as a child process watched by the loop; nothing blocks.
 */
#ifndef VIGIL_EXEC_H
#define VIGIL_EXEC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct exec_result {
    int spawned;     /* 0 when the program could not be started */
    int exit_code;   /* -1 when killed by a signal */
    int term_signal; /* 0 when it exited */
    int timed_out;
    const char *error;  /* why it could not start ("no such file...") */
    const char *output; /* stdout and stderr interleaved, NUL-terminated */
    size_t output_len;
    size_t output_dropped; /* bytes beyond the cap */
    int64_t duration_ns;
};

/* Called once; the result is valid during the call only. */
typedef void (*exec_done_cb)(void *arg, const struct exec_result *r);

struct exec_job;

/* Start argv[0] (an absolute path, or a name looked up in the clean PATH)
 * with env_extra ("VIGIL_X=y" strings; NULL-terminated, may be NULL).
 * Returns 0 (cb will be called, possibly before this returns when the
 * program cannot be started) or VIGIL_ENOMEM. *job (may be NULL) lets the
 * caller cancel. */
int exec_start(uv_loop_t *loop, const char *const *argv,
               const char *const *env_extra, int64_t timeout_ns,
               size_t output_max, exec_done_cb cb, void *arg,
               struct exec_job **job);

/* Kill a running job (SIGKILL to its group); cb still runs, with
 * timed_out = 0 and term_signal = SIGKILL. */
void exec_cancel(struct exec_job *job);

#endif
