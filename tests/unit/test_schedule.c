/* Tests for schedule: boundary arithmetic, aligned ticks on a real loop,
 * skipping (not bunching) boundaries after the loop was blocked. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <time.h>
#include <uv.h>

#include "clock.h"
#include "err.h"
#include "schedule.h"

static void test_next_boundary(void **state)
{
    const int64_t s = 1000000000;

    (void)state;
    assert_int_equal(sched_next_boundary(0, 10 * s, 0), 10 * s);
    assert_int_equal(sched_next_boundary(10 * s, 10 * s, 0), 20 * s);
    assert_int_equal(sched_next_boundary(10 * s - 1, 10 * s, 0), 10 * s);
    assert_int_equal(sched_next_boundary(123 * s + 7, 60 * s, 0), 180 * s);
    assert_int_equal(sched_next_boundary(123 * s, 60 * s, 5 * s), 125 * s);
    assert_int_equal(sched_next_boundary(125 * s, 60 * s, 5 * s), 185 * s);
}

struct ticks {
    int n;
    int64_t boundary[8];
    int64_t fired[8];
    int block_first_ms;
};

static void on_tick(struct sched_timer *t, int64_t boundary)
{
    struct ticks *k = t->data;

    k->boundary[k->n] = boundary;
    k->fired[k->n] = clock_wall_ns();
    if (k->n == 0 && k->block_first_ms > 0) {
        struct timespec ts = {0, (long)k->block_first_ms * 1000000};
        nanosleep(&ts, NULL); /* a blocked loop, on purpose */
    }
    if (++k->n == 4) {
        sched_close(t, NULL);
    }
}

static void run_ticks(struct ticks *k, int64_t interval_ms,
                      struct sched_timer *t)
{
    uv_loop_t loop;

    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(sched_init(&loop, t, interval_ms, 0, on_tick), 0);
    t->data = k;
    sched_start(t);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_aligned_ticks(void **state)
{
    struct ticks k = {0};
    struct sched_timer t;
    const int64_t iv = 50 * 1000000;

    (void)state;
    run_ticks(&k, 50, &t);
    assert_int_equal(k.n, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(k.boundary[i] % iv, 0);
        /* Never before its boundary (libuv's ms clock may be up to 2 ms
         * early), and each tick is the next boundary: no drift. */
        assert_true(k.fired[i] >= k.boundary[i] - 2000000);
        if (i > 0) {
            assert_int_equal(k.boundary[i] - k.boundary[i - 1], iv);
        }
    }
    assert_int_equal(t.missed, 0);
}

static void test_blocked_loop_skips(void **state)
{
    struct ticks k = {.block_first_ms = 175};
    struct sched_timer t;
    const int64_t iv = 50 * 1000000;

    (void)state;
    run_ticks(&k, 50, &t);
    /* The first tick blocked for 3.5 intervals: the next tick is the
     * current boundary, not a burst of the three it missed. */
    assert_true(k.boundary[1] - k.boundary[0] >= 3 * iv);
    assert_int_equal(k.boundary[1] % iv, 0);
    assert_int_equal(k.boundary[2] - k.boundary[1], iv);
    assert_true(t.missed >= 2);
}

static void test_bad_args(void **state)
{
    uv_loop_t loop;
    struct sched_timer t;

    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(sched_init(&loop, &t, 0, 0, on_tick), VIGIL_EINVAL);
    assert_int_equal(sched_init(&loop, &t, 10, 10, on_tick), VIGIL_EINVAL);
    assert_int_equal(sched_init(&loop, &t, 10, 0, NULL), VIGIL_EINVAL);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_next_boundary),
        cmocka_unit_test(test_aligned_ticks),
        cmocka_unit_test(test_blocked_loop_skips),
        cmocka_unit_test(test_bad_args),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
