/*
 * bench_lua - rate of Lua custom predicate calls through lh_pcall().
 *
 * The predicate takes two numbers (say CPU % and latency p95), compares
 * them with thresholds and returns a boolean, as a runbook's correlated
 * symptom check would. Every call goes through lh_pcall(): message handler,
 * a fresh time budget (a CLOCK_MONOTONIC read) with the count hook
 * installed, and the stack left balanced. For reference the same function
 * is also called with a bare lua_pcall (no handler, no deadline; the hook
 * is still installed), which is what lh_pcall adds its cost to.
 *
 * Target (issue 3): at least 1 million predicate evaluations per second.
 *
 * Usage: bench_lua [calls]   (default 5000000)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "clock.h"
#include "lua_host.h"

#define DEFAULT_CALLS 5000000ull
#define TARGET_PER_S 1e6

static const char predicate[] = "return function(cpu, p95)\n"
                                "  return cpu > 70 and p95 > 200\n"
                                "end\n";

/* Calls per second of lh_pcall (host = 1) or bare lua_pcall (host = 0)
 * over n calls of the function at stack index 1. */
static double run(struct lh_state *s, int host, unsigned long long n,
                  unsigned long long *hits)
{
    lua_State *L = lh_lua(s);
    struct vigil_err err = {0};
    int64_t t0 = clock_mono_ns();
    int rc;

    *hits = 0;
    for (unsigned long long i = 0; i < n; i++) {
        lua_pushvalue(L, 1);
        lua_pushnumber(L, (lua_Number)(i % 100));
        lua_pushnumber(L, (lua_Number)(i % 400));
        rc = host ? lh_pcall(s, 2, 1, &err) : lua_pcall(L, 2, 1, 0);
        if (rc != 0) {
            fprintf(stderr, "bench_lua: call failed: %s\n",
                    host ? err.msg : lua_tostring(L, -1));
            exit(1);
        }
        *hits += (unsigned long long)lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    return (double)n / ((double)(clock_mono_ns() - t0) / 1e9);
}

int main(int argc, char **argv)
{
    unsigned long long n = DEFAULT_CALLS, hits;
    struct lh_state *s;
    struct vigil_err err = {0};
    double bare, host;
    char *end;

    if (argc > 1) {
        errno = 0;
        n = strtoull(argv[1], &end, 10);
        if (errno != 0 || *end != '\0' || n == 0) {
            fprintf(stderr, "usage: bench_lua [calls]\n");
            return 2;
        }
    }
    if (lh_create(NULL, NULL, &s, &err) != 0 ||
        lh_load_string(s, "bench", predicate, &err) != 0 ||
        lh_pcall(s, 0, 1, &err) != 0) {
        fprintf(stderr, "bench_lua: %s\n", err.msg);
        lh_destroy(s);
        return 1;
    }
    run(s, 1, n / 10, &hits); /* warm up */
    bare = run(s, 0, n, &hits);
    host = run(s, 1, n, &hits);
    printf("predicate (2 numbers, compare, boolean), %llu calls each\n", n);
    printf("  bare lua_pcall : %6.2f M calls/s  %6.1f ns/call\n", bare / 1e6,
           1e9 / bare);
    printf("  lh_pcall       : %6.2f M calls/s  %6.1f ns/call  "
           "(true %llu times)\n",
           host / 1e6, 1e9 / host, hits);
    printf("  target         : %6.2f M calls/s  %s\n", TARGET_PER_S / 1e6,
           host >= TARGET_PER_S ? "met" : "NOT MET");
    printf("  state memory   : %zu bytes\n", lh_mem_used(s));
    lh_destroy(s);
    return host >= TARGET_PER_S ? 0 : 1;
}
