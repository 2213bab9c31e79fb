/*
 * sqlite_fuzz.c - libFuzzer target for the sqlite plugin's text handling:
 * the `query` lines parser (sqlite_conf.c), and the reading of plan
 * details and of a statement's aliases (sqlite_plan.c), which see the
 * SQL operators write and the details SQLite prints.
 *
 * Input: lines. Every line goes to the query parser as one item of the
 * list; each line is also read as a plan detail and resolved as an alias
 * name against the whole input taken as SQL. Besides not crashing,
 * leaking or invoking undefined behaviour, it checks that:
 *   - a parse that succeeds gives named queries whose names are label
 *     values (1 to 64 of [A-Za-z0-9_.-]), unique, with SQL that starts
 *     like a read; a parse that fails says why;
 *   - a plan detail's name, index and columns are terminated strings
 *     within their buffers, and its kind is one of the kinds;
 *   - an alias resolves only to one of the tables read.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sqlite.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_LINES 256

static int fz_name_ok(const char *n)
{
    size_t i, len = strlen(n);

    if (len == 0 || len > SQ_NAME_MAX) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        char c = n[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-')) {
            return 0;
        }
    }
    return 1;
}

static void fz_queries(const char *const *v, size_t n)
{
    static const char *const reads[] = {"SELECT", "WITH", "VALUES", "PRAGMA"};
    struct vigil_list l = {n, v};
    struct sq_query *q = NULL;
    char err[SQ_MSG_MAX] = "";
    size_t nq = 0, i, j;

    if (sq_queries_parse(&l, &q, &nq, err, sizeof(err)) != 0) {
        if (err[0] == '\0' || q != NULL) {
            abort();
        }
        return;
    }
    for (i = 0; i < nq; i++) {
        char word[16];
        int ok = 0;

        if (!fz_name_ok(q[i].name) || q[i].sql == NULL || q[i].sql[0] == '\0') {
            abort();
        }
        for (j = 0; j < i; j++) {
            if (strcmp(q[i].name, q[j].name) == 0) {
                abort();
            }
        }
        sq_first_keyword(q[i].sql, word, sizeof(word));
        for (j = 0; j < sizeof(reads) / sizeof(reads[0]); j++) {
            ok |= strcmp(word, reads[j]) == 0;
        }
        if (!ok) {
            abort();
        }
    }
    sq_queries_free(q, nq);
}

static void fz_detail(const char *line, const char *sql)
{
    static const struct sq_read reads[] = {
        {"orders", "status"}, {"fills", "px"}, {"o", ""}};
    struct sq_plan_detail d;
    char table[SQ_NAME_MAX * 2];

    sq_plan_classify(line, &d);
    if (d.kind < SQ_PLAN_OTHER || d.kind > SQ_PLAN_TEMP_BTREE ||
        memchr(d.name, '\0', sizeof(d.name)) == NULL ||
        memchr(d.index, '\0', sizeof(d.index)) == NULL ||
        memchr(d.columns, '\0', sizeof(d.columns)) == NULL) {
        abort();
    }
    if (sq_plan_resolve(sql, reads, 3, line, table, sizeof(table)) &&
        strcmp(table, "orders") != 0 && strcmp(table, "fills") != 0 &&
        strcmp(table, "o") != 0) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1), *p, *lines[FZ_LINES];
    const char *v[FZ_LINES];
    size_t n = 0, i;

    if (text == NULL) {
        return 0;
    }
    memcpy(text, data, size);
    text[size] = '\0';
    for (p = text; n < FZ_LINES;) {
        char *nl = strchr(p, '\n');

        lines[n] = p;
        v[n] = p;
        n++;
        if (nl == NULL) {
            break;
        }
        *nl = '\0';
        p = nl + 1;
    }
    fz_queries(v, n);
    /* The whole input as SQL: the lines joined back. */
    for (i = 0; i + 1 < n; i++) {
        lines[i][strlen(lines[i])] = '\n';
    }
    for (i = 0, p = text; i < n; i++) {
        char line[512];
        char *nl = strchr(p, '\n');
        size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);

        len = len < sizeof(line) - 1 ? len : sizeof(line) - 1;
        memcpy(line, p, len);
        line[len] = '\0';
        fz_detail(line, text);
        p = nl != NULL ? nl + 1 : p + len;
    }
    free(text);
    return 0;
}
