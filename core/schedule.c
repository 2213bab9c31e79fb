/* schedule - periodic timers aligned to wall-clock boundaries. */
#include "schedule.h"

#include "clock.h"
#include "err.h"

/* A timer may fire up to a millisecond before the wall-clock boundary
 * (libuv's loop time has millisecond resolution); such a tick counts as on
 * time. */
#define SCHED_EARLY_NS 2000000

static void on_timer(uv_timer_t *h);

int64_t sched_next_boundary(int64_t now_ns, int64_t interval_ns,
                            int64_t offset_ns)
{
    int64_t base = now_ns - offset_ns;
    int64_t q = base / interval_ns;

    if (base < 0 && base % interval_ns != 0) {
        q--; /* floor for negative times, for completeness */
    }
    return (q + 1) * interval_ns + offset_ns;
}

static void sched_arm(struct sched_timer *t, int64_t now_ns)
{
    int64_t delay_ns = t->next_ns - now_ns;
    uint64_t delay_ms;

    if (delay_ns < 0) {
        delay_ns = 0;
    }
    /* Round up: firing a little late is harmless, firing early makes
     * on_timer re-arm for the same boundary. */
    delay_ms = (uint64_t)((delay_ns + 999999) / 1000000);
    uv_update_time(t->uv.loop);
    uv_timer_start(&t->uv, on_timer, delay_ms, 0);
}

static void on_timer(uv_timer_t *h)
{
    struct sched_timer *t = (struct sched_timer *)h;
    int64_t now = clock_wall_ns();
    int64_t boundary = t->next_ns;

    if (now < boundary - SCHED_EARLY_NS) {
        if (boundary - now > t->interval_ns) {
            /* The wall clock went backwards: re-align from now. */
            t->next_ns = sched_next_boundary(now, t->interval_ns, t->offset_ns);
        }
        sched_arm(t, now);
        return;
    }
    if (now - boundary >= t->interval_ns) {
        /* Late by one or more whole intervals (a blocked loop, a suspended
         * machine or a clock step forward): skip to the current one. */
        int64_t cur = sched_next_boundary(now, t->interval_ns, t->offset_ns) -
                      t->interval_ns;
        t->missed += (uint64_t)((cur - boundary) / t->interval_ns);
        boundary = cur;
    }
    t->next_ns = boundary + t->interval_ns;
    t->ticks++;
    sched_arm(t, now);
    t->tick_cb(t, boundary);
}

int sched_init(uv_loop_t *loop, struct sched_timer *t, int64_t interval_ms,
               int64_t offset_ms, sched_tick_cb cb)
{
    if (interval_ms < 1 || offset_ms < 0 || offset_ms >= interval_ms ||
        cb == NULL) {
        return VIGIL_EINVAL;
    }
    t->interval_ns = interval_ms * 1000000;
    t->offset_ns = offset_ms * 1000000;
    t->next_ns = 0;
    t->ticks = 0;
    t->missed = 0;
    t->tick_cb = cb;
    t->close_cb = NULL;
    if (uv_timer_init(loop, &t->uv) != 0) {
        return VIGIL_EIO;
    }
    return 0;
}

void sched_start(struct sched_timer *t)
{
    int64_t now = clock_wall_ns();

    t->next_ns = sched_next_boundary(now, t->interval_ns, t->offset_ns);
    sched_arm(t, now);
}

void sched_stop(struct sched_timer *t)
{
    uv_timer_stop(&t->uv);
}

static void on_closed(uv_handle_t *h)
{
    struct sched_timer *t = (struct sched_timer *)h;

    if (t->close_cb != NULL) {
        t->close_cb(t);
    }
}

void sched_close(struct sched_timer *t, sched_close_cb cb)
{
    t->close_cb = cb;
    uv_close((uv_handle_t *)&t->uv, on_closed);
}
