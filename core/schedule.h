/*
 * schedule - periodic timers aligned to wall-clock boundaries.
 *
 * A timer with a 10 s interval fires at :00, :10, :20... of the wall clock,
 * whatever the time it was started, so that every plugin with the same
 * interval measures at the same instants and series line up. Each tick
 * computes the next boundary from the wall clock again, so lateness never
 * accumulates (no drift); a tick that comes too late for one or more
 * boundaries skips them and counts them as missed. A wall clock stepped
 * backwards or forwards by more than an interval re-aligns at once.
 *
 * The caller owns struct sched_timer (embedded in its own struct) and must
 * sched_close() it and wait for close_cb before freeing that memory.
 */
#ifndef VIGIL_SCHEDULE_H
#define VIGIL_SCHEDULE_H

#include <stdint.h>
#include <uv.h>

struct sched_timer;
typedef void (*sched_tick_cb)(struct sched_timer *t, int64_t boundary_ns);
typedef void (*sched_close_cb)(struct sched_timer *t);

struct sched_timer {
    uv_timer_t uv;
    int64_t interval_ns;
    int64_t offset_ns; /* fire at boundary + offset */
    int64_t next_ns;   /* wall-clock boundary of the next tick */
    uint64_t ticks;
    uint64_t missed; /* boundaries skipped because a tick came late */
    sched_tick_cb tick_cb;
    sched_close_cb close_cb;
    void *data; /* for the owner */
};

/* Initialise on loop. interval_ms >= 1; 0 <= offset_ms < interval_ms.
 * Returns 0 or a VIGIL_E* code. */
int sched_init(uv_loop_t *loop, struct sched_timer *t, int64_t interval_ms,
               int64_t offset_ms, sched_tick_cb cb);

/* Arm for the next boundary after now. Does not fail once initialised. */
void sched_start(struct sched_timer *t);
void sched_stop(struct sched_timer *t);

/* Stop and close; cb (may be NULL) runs from the loop once the handle is
 * closed. */
void sched_close(struct sched_timer *t, sched_close_cb cb);

/* The first boundary strictly after now_ns (exposed for tests). */
int64_t sched_next_boundary(int64_t now_ns, int64_t interval_ns,
                            int64_t offset_ns);

#endif
