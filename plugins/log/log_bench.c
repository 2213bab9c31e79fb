/*
 * log_bench.c - the log plugin's line engine on a file: lines per second
 * and MB/s with the patterns given, and the allocations made while
 * feeding (after set-up there must be none). Not a test.
 *
 *   log_bench FILE [PATTERN]...   (PATTERN as in the config: NAME: REGEX;
 *                                 default: error, traceback, a regex)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

static long allocs;

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);

void *__wrap_malloc(size_t n)
{
    allocs++;
    return __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t m)
{
    allocs++;
    return __real_calloc(n, m);
}

void *__wrap_realloc(void *p, size_t n)
{
    allocs++;
    return __real_realloc(p, n);
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    static const char *const def[] = {
        "error: ERROR", "traceback: ^Traceback",
        "timeout: time(d)? ?out after [0-9]+ ?ms"};
    struct lf_scan_config c = {2048, 2, 5, 10};
    struct vigil_list pats = {3, def};
    struct lf_scan sc;
    struct lf_partial p;
    char err[256], *data;
    long n, before;
    size_t i, chunk = LF_READ_BUF;
    double t0, t;
    FILE *f;

    if (argc < 2) {
        fprintf(stderr, "usage: log_bench FILE [NAME: REGEX]...\n");
        return 2;
    }
    if (argc > 2) {
        pats.n = (size_t)(argc - 2);
        pats.v = (const char *const *)argv + 2;
    }
    f = fopen(argv[1], "rb");
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) <= 0) {
        fprintf(stderr, "log_bench: cannot read %s\n", argv[1]);
        return 1;
    }
    rewind(f);
    data = malloc((size_t)n);
    if (data == NULL || fread(data, 1, (size_t)n, f) != (size_t)n) {
        return 1;
    }
    fclose(f);
    if (lf_scan_init(&sc, &c, &pats, err, sizeof(err)) != 0 ||
        lf_partial_init(&p, c.max_line) != 0) {
        fprintf(stderr, "log_bench: %s\n", err);
        return 1;
    }
    before = allocs;
    t0 = now_s();
    for (i = 0; i < (size_t)n; i += chunk) {
        size_t k = (size_t)n - i < chunk ? (size_t)n - i : chunk;

        lf_scan_feed(&sc, &p, data + i, k, 1);
    }
    t = now_s() - t0;
    printf("%llu lines, %.1f MB in %.3f s: %.0f lines/s, %.0f ns/line, "
           "%.0f MB/s; allocations while feeding: %ld\n",
           (unsigned long long)sc.lines_total, (double)n / 1e6, t,
           (double)sc.lines_total / t, t * 1e9 / (double)sc.lines_total,
           (double)n / 1e6 / t, allocs - before);
    for (i = 0; i < sc.npat; i++) {
        printf("  %-12s %-8s %llu matched\n", sc.pat[i].name,
               sc.pat[i].kind == LF_LITERAL  ? "literal"
               : sc.pat[i].kind == LF_PREFIX ? "prefix"
                                             : "regex",
               (unsigned long long)sc.pat[i].matched);
    }
    lf_partial_fini(&p);
    lf_scan_fini(&sc);
    free(data);
    return allocs - before == 0 ? 0 : 1;
}
