/* exec - child processes for steps and actions, watched by the loop. */
#include "exec.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "err.h"

#define EXEC_ENV_MAX 64
#define EXEC_KILL_GRACE_MS 2000
/* After the program exits, how long its output may still arrive (a
 * background child can hold the pipe open). */
#define EXEC_DRAIN_MS 500
#define EXEC_CLEAN_PATH                                                        \
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

struct exec_job {
    uv_process_t proc;
    uv_pipe_t out;
    uv_timer_t timer; /* timeout, then kill grace, then drain */
    exec_done_cb cb;
    void *arg;
    char *buf;
    size_t len, max, dropped;
    int64_t started;
    int exited, eof, timed_out, killed, open_handles;
    int64_t exit_status;
    int term_signal;
    pid_t pid;
    char error[128];
    int spawned;
};

static void job_finish_cb(uv_handle_t *h)
{
    struct exec_job *j = h->data;
    struct exec_result r;

    if (--j->open_handles > 0) {
        return;
    }
    memset(&r, 0, sizeof(r));
    r.spawned = j->spawned;
    r.exit_code = j->term_signal ? -1 : (int)j->exit_status;
    r.term_signal = j->term_signal;
    r.timed_out = j->timed_out;
    r.error = j->error[0] ? j->error : NULL;
    j->buf[j->len] = '\0';
    r.output = j->buf;
    r.output_len = j->len;
    r.output_dropped = j->dropped;
    r.duration_ns = clock_mono_ns() - j->started;
    j->cb(j->arg, &r);
    free(j->buf);
    free(j);
}

/* Close every handle; the callback runs when the last one is closed. */
static void job_close(struct exec_job *j)
{
    uv_handle_t *hs[3] = {(uv_handle_t *)&j->proc, (uv_handle_t *)&j->out,
                          (uv_handle_t *)&j->timer};
    int n = 0;

    /* Count first: a close callback must not see the count reach 0 early. */
    for (int i = 0; i < 3; i++) {
        n += hs[i]->type != UV_UNKNOWN_HANDLE && !uv_is_closing(hs[i]);
    }
    j->open_handles = n;
    for (int i = 0; i < 3; i++) {
        if (hs[i]->type != UV_UNKNOWN_HANDLE && !uv_is_closing(hs[i])) {
            hs[i]->data = j;
            uv_close(hs[i], job_finish_cb);
        }
    }
}

static void maybe_done(struct exec_job *j)
{
    if (j->exited && j->eof) {
        job_close(j);
    }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static char scratch[65536];
    struct exec_job *j = h->data;

    (void)hint;
    /* Read straight into the capture buffer while it has room. */
    if (j->len < j->max) {
        buf->base = j->buf + j->len;
        buf->len = j->max - j->len;
    } else {
        buf->base = scratch; /* loop thread only: one reader at a time */
        buf->len = sizeof(scratch);
    }
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct exec_job *j = s->data;

    if (n > 0) {
        if (buf->base == j->buf + j->len) {
            j->len += (size_t)n;
        } else {
            j->dropped += (size_t)n;
        }
        return;
    }
    if (n < 0) {
        uv_read_stop(s);
        j->eof = 1;
        maybe_done(j);
    }
}

static void on_drain(uv_timer_t *t)
{
    struct exec_job *j = t->data;

    j->eof = 1; /* stop waiting for output held by a background child */
    maybe_done(j);
}

static void on_child_exit(uv_process_t *p, int64_t status, int sig)
{
    struct exec_job *j = p->data;

    j->exited = 1;
    j->exit_status = status;
    j->term_signal = sig;
    uv_timer_stop(&j->timer);
    if (!j->eof) {
        uv_timer_start(&j->timer, on_drain, EXEC_DRAIN_MS, 0);
    }
    maybe_done(j);
}

static void on_kill(uv_timer_t *t)
{
    struct exec_job *j = t->data;

    kill(-j->pid, SIGKILL);
}

static void on_timeout(uv_timer_t *t)
{
    struct exec_job *j = t->data;

    j->timed_out = 1;
    kill(-j->pid, SIGTERM);
    uv_timer_start(&j->timer, on_kill, EXEC_KILL_GRACE_MS, 0);
}

/* The child's environment: a clean PATH and the caller's variables. */
static int build_env(const char *const *extra, char **env)
{
    int n = 0;

    env[n++] = (char *)EXEC_CLEAN_PATH;
    for (int i = 0; extra != NULL && extra[i] != NULL; i++) {
        if (n == EXEC_ENV_MAX - 1) {
            return VIGIL_ELIMIT;
        }
        env[n++] = (char *)extra[i];
    }
    env[n] = NULL;
    return 0;
}

int exec_start(uv_loop_t *loop, const char *const *argv,
               const char *const *env_extra, int64_t timeout_ns,
               size_t output_max, exec_done_cb cb, void *arg,
               struct exec_job **job)
{
    struct exec_job *j = calloc(1, sizeof(*j));
    uv_process_options_t opt;
    uv_stdio_container_t stdio[3];
    char *env[EXEC_ENV_MAX];
    uv_file fds[2];
    int rc;

    if (job != NULL) {
        *job = NULL;
    }
    if (j == NULL || (j->buf = malloc(output_max + 1)) == NULL) {
        free(j);
        return VIGIL_ENOMEM;
    }
    j->cb = cb;
    j->arg = arg;
    j->max = output_max;
    j->started = clock_mono_ns();
    uv_timer_init(loop, &j->timer);
    j->timer.data = j;
    if (build_env(env_extra, env) != 0 || argv == NULL || argv[0] == NULL) {
        snprintf(j->error, sizeof(j->error), "%s",
                 argv && argv[0] ? "too many environment variables"
                                 : "empty argv");
        goto fail;
    }
    if ((rc = uv_pipe(fds, 0, 0)) != 0) {
        snprintf(j->error, sizeof(j->error), "pipe: %s", uv_strerror(rc));
        goto fail;
    }
    uv_pipe_init(loop, &j->out, 0);
    j->out.data = j;
    uv_pipe_open(&j->out, fds[0]);
    memset(&opt, 0, sizeof(opt));
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_INHERIT_FD;
    stdio[1].data.fd = fds[1];
    stdio[2] = stdio[1];
    opt.file = argv[0];
    opt.args = (char **)argv;
    opt.env = env;
    opt.stdio = stdio;
    opt.stdio_count = 3;
    opt.exit_cb = on_child_exit;
    /* Its own process group, so a timeout kills what it started too. */
    opt.flags = UV_PROCESS_DETACHED;
    rc = uv_spawn(loop, &j->proc, &opt);
    close(fds[1]);
    j->proc.data = j;
    if (rc != 0) {
        snprintf(j->error, sizeof(j->error), "%s: %s", argv[0],
                 uv_strerror(rc));
        goto fail;
    }
    j->spawned = 1;
    j->pid = j->proc.pid;
    uv_read_start((uv_stream_t *)&j->out, on_alloc, on_read);
    if (timeout_ns > 0) {
        uv_timer_start(&j->timer, on_timeout,
                       (uint64_t)((timeout_ns + 999999) / 1000000), 0);
    }
    if (job != NULL) {
        *job = j;
    }
    return 0;
fail:
    j->exited = j->eof = 1;
    job_close(j);
    return 0;
}

void exec_cancel(struct exec_job *job)
{
    if (job != NULL && job->spawned && !job->exited) {
        kill(-job->pid, SIGKILL);
    }
}
