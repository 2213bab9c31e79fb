/*
 * ws_backoff - the delay before a reconnection: capped exponential
 * backoff with "equal jitter" (half the delay fixed, half random), so that
 * many probes cut off by the same event do not all come back at the same
 * instant, and a small pseudo-random generator for it. Pure C, tested by
 * ws_test.c.
 */
#ifndef WS_BACKOFF_H
#define WS_BACKOFF_H

#include <stdint.h>

/* The delay after `failures` failed attempts in a row (0 for the first
 * retry): min_ms doubled per failure, capped at max_ms, then a random
 * amount of up to half of it taken off using rnd. Within [d/2, d] where d
 * is the capped delay. min_ms and max_ms must be positive. Does not
 * fail. */
int64_t ws_backoff_ms(unsigned failures, int64_t min_ms, int64_t max_ms,
                      uint64_t rnd);

/* The next number of the xorshift64* sequence in *state (non-zero). Good
 * enough for jitter, not for anything secret. Does not fail. */
uint64_t ws_backoff_rand(uint64_t *state);

#endif
