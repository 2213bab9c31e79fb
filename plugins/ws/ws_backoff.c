/* ws_backoff - reconnection delays with jitter. */
#include "ws_backoff.h"

int64_t ws_backoff_ms(unsigned failures, int64_t min_ms, int64_t max_ms,
                      uint64_t rnd)
{
    int64_t d = min_ms;

    /* Doubling stops at the cap, so this cannot overflow. */
    while (failures-- > 0 && d < max_ms) {
        d *= 2;
    }
    if (d > max_ms) {
        d = max_ms;
    }
    return d - (int64_t)(rnd % ((uint64_t)(d / 2) + 1));
}

uint64_t ws_backoff_rand(uint64_t *state)
{
    uint64_t x = *state;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}
