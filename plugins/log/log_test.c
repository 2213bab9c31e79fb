/*
 * log_test.c - the log plugin's line engine and file follower: pattern
 * kinds and their errors, lines (partial, CRLF, cut), the context rings
 * with exact contents, and the follower against real files: start at the
 * end, a file that appears later, rotation with a rotated file still
 * written, copytruncate (the size falls, or the file is rewritten past
 * the offset), a missing directory, the read budget.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"

static char tmpdir[64];

/* ------------------------------------------------------------------------
 * Helpers.
 */

static int scan_make(struct lf_scan *sc, size_t max_line, size_t before,
                     size_t after, size_t keep, const char *const *pats,
                     size_t n, char *err, size_t size)
{
    struct lf_scan_config c = {max_line, before, after, keep};
    struct vigil_list l = {n, pats};

    return lf_scan_init(sc, &c, &l, err, size);
}

static void scan_ok(struct lf_scan *sc, size_t max_line, size_t before,
                    size_t after, size_t keep, const char *const *pats,
                    size_t n)
{
    char err[256] = "";

    if (scan_make(sc, max_line, before, after, keep, pats, n, err,
                  sizeof(err)) != 0) {
        fail_msg("lf_scan_init: %s", err);
    }
}

static void feed(struct lf_scan *sc, struct lf_partial *p, const char *text)
{
    lf_scan_feed(sc, p, text, strlen(text), 1000);
}

/* Entry k (0 = newest) of pattern i as "b1|b2>MATCH<a1|a2". */
static const char *entry_text(const struct lf_scan *sc, size_t i, size_t k)
{
    static char out[4096];
    const struct lf_pattern *p = &sc->pat[i];
    size_t e = (p->head + sc->cfg.keep - 1 - k) % sc->cfg.keep, j, n = 0;
    const struct lf_entry *en = &p->ring[e];

    out[0] = '\0';
    for (j = 0; j < en->nbefore + 1 + en->nafter; j++) {
        size_t slot = j < en->nbefore ? sc->cfg.before - en->nbefore + j
                                      : sc->cfg.before + (j - en->nbefore);
        size_t len;
        int cut;
        const char *t = lf_entry_line(sc, p, e, slot, &len, &cut);
        const char *sep = j == en->nbefore       ? ">"
                          : j == en->nbefore + 1 ? "<"
                          : j > 0                ? "|"
                                                 : "";

        n += (size_t)snprintf(out + n, sizeof(out) - n, "%s%.*s%s", sep,
                              (int)len, t, cut ? "~" : "");
    }
    if (en->nafter == 0) {
        n += (size_t)snprintf(out + n, sizeof(out) - n, "<");
    }
    return out;
}

static char *path_of(const char *name)
{
    static char p[4][160];
    static int i;

    i = (i + 1) % 4;
    snprintf(p[i], sizeof(p[i]), "%s/%s", tmpdir, name);
    return p[i];
}

static void append(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

/* ------------------------------------------------------------------------
 * Patterns.
 */

static void test_pattern_kinds(void **state)
{
    static const struct {
        const char *text;
        int kind;
        const char *lit;
    } cases[] = {
        {"ERROR", LF_LITERAL, "ERROR"},
        {"^Traceback", LF_PREFIX, "Traceback"},
        {"Traceback \\(most recent call last\\):", LF_LITERAL,
         "Traceback (most recent call last):"},
        {"a\\.b", LF_LITERAL, "a.b"},
        {"time(d)? ?out", LF_REGEX, NULL},
        {"\\bERROR", LF_REGEX, NULL},
        {"ERROR$", LF_REGEX, NULL},
        {"^", LF_REGEX, NULL},
        {"caf\xc3\xa9", LF_REGEX, NULL},
        {"a|b", LF_REGEX, NULL},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char lit[256];
        size_t len = 0;
        int k = lf_pattern_kind(cases[i].text, lit, sizeof(lit), &len);

        if (k != cases[i].kind ||
            (cases[i].lit != NULL && (len != strlen(cases[i].lit) ||
                                      memcmp(lit, cases[i].lit, len) != 0))) {
            fail_msg("'%s': kind %d", cases[i].text, k);
        }
    }
}

static void test_pattern_errors(void **state)
{
    static const struct {
        const char *item, *err;
    } cases[] = {
        {"ERROR", "expected 'NAME: REGEX'"},
        {"e:ERROR", "expected 'NAME: REGEX'"},
        {"e: ", "pattern 'e': no regex"},
        {"e: (", "pattern 'e': not a POSIX extended regex"},
        {".e: x", "expected 'NAME: REGEX'"},
        /* What glibc would expand without bound. */
        {"e: ERROR++", "two repetition operators in a row"},
        {"e: a*{2}", "two repetition operators in a row"},
        {"e: x{1,32767}", "a repetition bound above 255"},
        {"e: (a{1,200}){1,200}", "over 10000 copies"},
        {"e: ((((((((((((((((((((((((((((((((((x))))))))))))))))))))))))))"
         "))))))))",
         "nested more than 32 deep"},
    };
    static const char *const fine[] = {
        "e: [0-9]{3}",        "e: (ab|cd)+x{2,5}", "e: [+*]{2}", "e: a\\+\\+",
        "e: [[:digit:]]+ ms", "e: x{1,255}",       "e: a{,3}",   "e: []+]+"};
    static const char *const dup[] = {"e: a", "e: b"};
    struct lf_scan sc;
    char err[256];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err[0] = '\0';
        assert_int_equal(
            scan_make(&sc, 64, 0, 0, 1, &cases[i].item, 1, err, sizeof(err)),
            VIGIL_ECONFIG);
        if (strstr(err, cases[i].err) == NULL) {
            fail_msg("'%s': '%s'", cases[i].item, err);
        }
        lf_scan_fini(&sc);
    }
    for (i = 0; i < sizeof(fine) / sizeof(fine[0]); i++) {
        err[0] = '\0';
        if (scan_make(&sc, 64, 0, 0, 1, &fine[i], 1, err, sizeof(err)) != 0) {
            fail_msg("'%s' refused: %s", fine[i], err);
        }
        lf_scan_fini(&sc);
    }
    assert_int_equal(scan_make(&sc, 64, 0, 0, 1, dup, 2, err, sizeof(err)),
                     VIGIL_ECONFIG);
    assert_non_null(strstr(err, "pattern 'e' is defined twice"));
    lf_scan_fini(&sc);
}

static void test_match(void **state)
{
    static const char *const pats[] = {"lit: ERROR", "pre: ^Trace",
                                       "re: time(d)? ?out", "nul: a.?b"};
    struct lf_scan sc;

    (void)state;
    scan_ok(&sc, 64, 0, 0, 1, pats, 4);
    assert_true(lf_pattern_match(&sc.pat[0], "x ERROR y", 9));
    assert_false(lf_pattern_match(&sc.pat[0], "x ERRO", 6));
    /* Only the n bytes given count: no NUL needed, none looked past. */
    assert_false(lf_pattern_match(&sc.pat[0], "ERROR", 4));
    assert_true(lf_pattern_match(&sc.pat[1], "Traceback (most", 15));
    assert_false(lf_pattern_match(&sc.pat[1], " Traceback", 10));
    assert_true(lf_pattern_match(&sc.pat[2], "request timed out", 17));
    assert_true(lf_pattern_match(&sc.pat[2], "timeout", 7));
    assert_false(lf_pattern_match(&sc.pat[2], "timeout", 6));
    /* A NUL in a line is a byte like another. */
    assert_true(lf_pattern_match(&sc.pat[3], "x\0ab", 4));
    assert_true(lf_pattern_match(&sc.pat[0], "\0ERROR", 6));
    lf_scan_fini(&sc);
}

/* ------------------------------------------------------------------------
 * Lines.
 */

static void test_lines(void **state)
{
    static const char *const pats[] = {"e: ERROR"};
    struct lf_scan sc;
    struct lf_partial p;

    (void)state;
    scan_ok(&sc, 8, 0, 0, 4, pats, 1);
    assert_int_equal(lf_partial_init(&p, 8), 0);
    feed(&sc, &p, "one\ntw");
    assert_int_equal(sc.lines_total, 1);
    feed(&sc, &p, "o\r\n\nERROR\r");
    assert_int_equal(sc.lines_total, 3); /* "two", "" */
    feed(&sc, &p, "\n");
    assert_int_equal(sc.lines_total, 4);
    assert_int_equal(sc.pat[0].matched, 1);
    assert_string_equal(entry_text(&sc, 0, 0), ">ERROR<");
    /* Cut after 8 bytes, whether whole or in pieces; the rest is not a
     * line of its own. */
    feed(&sc, &p, "0123456789ERROR\n012345");
    feed(&sc, &p, "67ERROR\n");
    assert_int_equal(sc.lines_total, 6);
    assert_int_equal(sc.truncated_total, 2);
    assert_int_equal(sc.pat[0].matched, 1); /* beyond max_line: not seen */
    /* 8 bytes and a CR are not cut. */
    feed(&sc, &p, "ERROR678\r\n");
    assert_int_equal(sc.truncated_total, 2);
    assert_string_equal(entry_text(&sc, 0, 0), ">ERROR678<");
    /* A partial line waits, then flush ends it. */
    feed(&sc, &p, "ERROR at the end");
    assert_int_equal(sc.lines_total, 7);
    lf_scan_flush(&sc, &p, 1000);
    assert_int_equal(sc.lines_total, 8);
    assert_string_equal(entry_text(&sc, 0, 0), ">ERROR at~<");
    /* skip: the rest of a line begun before. */
    lf_partial_skip(&p);
    feed(&sc, &p, "ERROR tail\nnext\n");
    assert_int_equal(sc.lines_total, 9);
    assert_int_equal(sc.pat[0].matched, 3);
    lf_partial_fini(&p);
    lf_scan_fini(&sc);
}

static void test_context(void **state)
{
    static const char *const pats[] = {
        "error: ERROR", "traceback: ^Traceback \\(most recent call last\\):"};
    static const char *const log = "INFO start\n"
                                   "INFO order 1\n"
                                   "ERROR order 2 failed\n"
                                   "Traceback (most recent call last):\n"
                                   "  File \"app.py\", line 3, in <module>\n"
                                   "    place(order)\n"
                                   "ValueError: bad price\n"
                                   "INFO order 3\n"
                                   "INFO order 4\n";
    struct lf_scan sc;
    struct lf_partial p;
    size_t i;

    (void)state;
    scan_ok(&sc, 64, 2, 3, 2, pats, 2);
    assert_int_equal(lf_partial_init(&p, 64), 0);
    /* One byte at a time: the same as at once. */
    for (i = 0; log[i] != '\0'; i++) {
        lf_scan_feed(&sc, &p, log + i, 1, 1000);
    }
    assert_int_equal(sc.lines_total, 9);
    assert_int_equal(sc.pat[0].matched, 1);
    assert_int_equal(sc.pat[1].matched, 1);
    assert_string_equal(entry_text(&sc, 0, 0),
                        "INFO start|INFO order 1>ERROR order 2 failed<"
                        "Traceback (most recent call last):|  File \"app.py\", "
                        "line 3, in <module>|    place(order)");
    assert_string_equal(entry_text(&sc, 1, 0),
                        "INFO order 1|ERROR order 2 failed>Traceback (most "
                        "recent call last):<  File \"app.py\", line 3, in "
                        "<module>|    place(order)|ValueError: bad price");
    assert_int_equal(sc.pat[1].ring[0].seq, 4);
    assert_int_equal(sc.pat[1].open, -1);
    /* keep 2: a third error pushes the first out; the newest is open
     * until its after-lines come. */
    feed(&sc, &p, "ERROR a\nERROR b\n");
    assert_int_equal(sc.pat[0].count, 2);
    assert_string_equal(entry_text(&sc, 0, 1),
                        "INFO order 3|INFO order 4>ERROR a<ERROR b");
    assert_string_equal(entry_text(&sc, 0, 0), "INFO order 4|ERROR a>ERROR b<");
    assert_true(sc.pat[0].open >= 0);
    feed(&sc, &p, "x\ny\nz\nw\n");
    assert_int_equal(sc.pat[0].open, -1);
    assert_string_equal(entry_text(&sc, 0, 0),
                        "INFO order 4|ERROR a>ERROR b<x|y|z");
    lf_partial_fini(&p);
    lf_scan_fini(&sc);
}

/* ------------------------------------------------------------------------
 * Following files.
 */

struct fol {
    struct lf_scan sc;
    struct lf_follow fw;
    char buf[256];
};

static void fol_make(struct fol *f, const char *path, int at_end,
                     int64_t rotate_wait_ns)
{
    static const char *const pats[] = {"e: ERROR"};

    scan_ok(&f->sc, 64, 0, 0, 8, pats, 1);
    assert_int_equal(lf_follow_init(&f->fw, path, at_end, rotate_wait_ns, 64),
                     0);
}

static void fol_poll(struct fol *f, int64_t now)
{
    lf_follow_poll(&f->fw, &f->sc, f->buf, sizeof(f->buf), 1u << 20, now);
}

static void fol_free(struct fol *f)
{
    lf_follow_fini(&f->fw);
    lf_scan_fini(&f->sc);
}

static void test_follow_start_at_end(void **state)
{
    const char *path = path_of("end.log");
    struct fol f;

    (void)state;
    append(path, "ERROR old 1\nERROR old 2\nERROR half");
    fol_make(&f, path, 1, 0);
    fol_poll(&f, 1);
    assert_true(f.fw.present);
    assert_int_equal(f.sc.lines_total, 0);
    append(path, " of a line\nERROR new\n");
    fol_poll(&f, 2);
    assert_int_equal(f.sc.lines_total, 1);
    assert_int_equal(f.sc.pat[0].matched, 1);
    assert_string_equal(entry_text(&f.sc, 0, 0), ">ERROR new<");
    fol_free(&f);

    /* start_at = beginning reads it all. */
    fol_make(&f, path, 0, 0);
    fol_poll(&f, 1);
    assert_int_equal(f.sc.lines_total, 4);
    fol_free(&f);
}

static void test_follow_appears(void **state)
{
    const char *path = path_of("later.log");
    const char *nodir = path_of("no/such/dir/app.log");
    struct fol f;

    (void)state;
    fol_make(&f, path, 1, 0);
    fol_poll(&f, 1);
    assert_false(f.fw.present);
    assert_int_equal(f.fw.err, 0);
    assert_true(f.fw.dir_ino != 0);
    /* Appeared after the first look: read from its beginning. */
    append(path, "a\nERROR b\n");
    fol_poll(&f, 2);
    assert_true(f.fw.present);
    assert_int_equal(f.sc.lines_total, 2);
    assert_int_equal(f.fw.rotations, 0);
    fol_free(&f);

    fol_make(&f, nodir, 1, 0);
    fol_poll(&f, 1);
    assert_false(f.fw.present);
    assert_int_equal(f.fw.err, 0);
    assert_int_equal(f.fw.dir_ino, 0);
    fol_free(&f);

    /* A directory at the path is an error, said with the path. */
    fol_make(&f, tmpdir, 1, 0);
    fol_poll(&f, 1);
    assert_int_equal(f.fw.err, EINVAL);
    assert_non_null(strstr(f.fw.errmsg, "not a regular file"));
    fol_free(&f);
}

static void test_follow_rotation(void **state)
{
    const char *path = path_of("rot.log");
    const char *rotated = path_of("rot.log.1");
    struct fol f;
    int fd;

    (void)state;
    unlink(path);
    append(path, "");
    fol_make(&f, path, 1, 1000);
    fol_poll(&f, 1);
    append(path, "ERROR 1\nline 2\n");
    fol_poll(&f, 2);
    assert_int_equal(f.sc.lines_total, 2);
    /* logrotate: rename, create; the application still writes to the old
     * file (its fd) before it reopens. */
    fd = open(path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(rename(path, rotated), 0);
    assert_int_equal(write(fd, "ERROR 3 late\nhalf", 17), 17);
    append(path, "ERROR 4 new\n");
    fol_poll(&f, 3);
    assert_int_equal(f.fw.rotations, 1);
    assert_int_equal(f.sc.lines_total, 4);
    assert_int_equal(f.sc.pat[0].matched, 3);
    /* Written to the rotated file after the switch: still read, and its
     * half line completed, within rotate_wait. */
    assert_int_equal(write(fd, " line\nERROR 5 late\n", 19), 19);
    fol_poll(&f, 500);
    assert_int_equal(f.sc.lines_total, 6);
    assert_int_equal(f.sc.pat[0].matched, 4);
    assert_true(f.fw.old.fd >= 0);
    /* After rotate_wait it is read one last time and closed; a line it
     * did not end is a line. */
    assert_int_equal(write(fd, "ERROR 6 unended", 15), 15);
    fol_poll(&f, 2000);
    assert_true(f.fw.old.fd < 0);
    assert_int_equal(f.sc.lines_total, 7);
    assert_int_equal(f.sc.pat[0].matched, 5);
    assert_string_equal(entry_text(&f.sc, 0, 0), ">ERROR 6 unended<");
    close(fd);
    fol_free(&f);
}

static void test_follow_truncation(void **state)
{
    const char *path = path_of("trunc.log");
    struct fol f;

    (void)state;
    unlink(path);
    append(path, "");
    fol_make(&f, path, 1, 0);
    fol_poll(&f, 1);
    append(path, "ERROR one\nERROR two\nhalf");
    fol_poll(&f, 2);
    assert_int_equal(f.sc.lines_total, 2);
    /* copytruncate: the size falls below what was read. */
    assert_int_equal(truncate(path, 0), 0);
    append(path, "ERROR three\n");
    fol_poll(&f, 3);
    assert_int_equal(f.fw.truncations, 1);
    assert_int_equal(f.sc.lines_total, 3);
    assert_int_equal(f.sc.pat[0].matched, 3);
    /* Truncated and written past the old offset between two polls: the
     * bytes before the offset changed. */
    assert_int_equal(truncate(path, 0), 0);
    append(path, "ERROR four is longer than the file was\nfive\n");
    fol_poll(&f, 4);
    assert_int_equal(f.fw.truncations, 2);
    assert_int_equal(f.sc.lines_total, 5);
    assert_int_equal(f.sc.pat[0].matched, 4);
    fol_free(&f);
}

static void test_follow_budget(void **state)
{
    const char *path = path_of("big.log");
    struct fol f;
    int i;

    (void)state;
    unlink(path);
    for (i = 0; i < 100; i++) {
        append(path, "0123456789abcdefghijklmnopqrstuvwxyz\n");
    }
    fol_make(&f, path, 0, 0);
    lf_follow_poll(&f.fw, &f.sc, f.buf, sizeof(f.buf), 1000, 1);
    assert_true(f.fw.more);
    assert_int_equal(f.fw.bytes, 1000);
    for (i = 0; i < 10 && f.fw.more; i++) {
        lf_follow_poll(&f.fw, &f.sc, f.buf, sizeof(f.buf), 1000, 1);
    }
    assert_false(f.fw.more);
    assert_int_equal(f.sc.lines_total, 100);
    fol_free(&f);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/vigil-log-XXXXXX");
    return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pattern_kinds),
        cmocka_unit_test(test_pattern_errors),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_lines),
        cmocka_unit_test(test_context),
        cmocka_unit_test(test_follow_start_at_end),
        cmocka_unit_test(test_follow_appears),
        cmocka_unit_test(test_follow_rotation),
        cmocka_unit_test(test_follow_truncation),
        cmocka_unit_test(test_follow_budget),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
