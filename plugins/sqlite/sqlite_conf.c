/*
 * sqlite_conf.c - the `query` option's lines into named queries.
 *
 * The option is a list (VIGIL_OPT_LIST): every `query = ...` line and every
 * indented continuation line is one item, and the core does not say which
 * item began a key. So a query begins at an item of the form `NAME:` or
 * `NAME: SQL` (NAME as in a label value, no blanks), and any other item
 * continues the query before it:
 *
 *   query = open_orders: SELECT count(*) FROM orders WHERE status = 'open'
 *   query = recent_fills:
 *       SELECT symbol, sum(qty) FROM fills
 *       WHERE ts > strftime('%s', 'now') - 60 GROUP BY symbol
 *
 * A continuation line that itself looks like `word: ...` would begin a new
 * query; SQL has no such line.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sqlite.h"

static int sq_name_char(int c, int first)
{
    if (isalnum(c) || c == '_') {
        return 1;
    }
    return !first && (c == '.' || c == '-');
}

/* The length of the NAME in `NAME:` or `NAME: ...` at the start of item,
 * or 0 when item does not begin a query. */
static size_t sq_item_name(const char *item)
{
    size_t n = 0;

    while (sq_name_char((unsigned char)item[n], n == 0)) {
        n++;
    }
    if (n == 0 || item[n] != ':') {
        return 0;
    }
    if (item[n + 1] != '\0' && item[n + 1] != ' ' && item[n + 1] != '\t') {
        return 0; /* "a:b" is not NAME: SQL */
    }
    return n;
}

/* Append text to *sql (a malloc'd string, or NULL) after a newline. */
static int sq_append(char **sql, const char *text)
{
    size_t old = *sql != NULL ? strlen(*sql) : 0;
    size_t add = strlen(text);
    char *p;

    while (add > 0 && (*text == ' ' || *text == '\t')) {
        text++;
        add--;
    }
    if (old + 1 + add + 1 > SQ_SQL_MAX) {
        return VIGIL_ELIMIT;
    }
    p = realloc(*sql, old + 1 + add + 1);
    if (p == NULL) {
        return VIGIL_ENOMEM;
    }
    if (old > 0) {
        p[old++] = '\n';
    }
    memcpy(p + old, text, add + 1);
    *sql = p;
    return 0;
}

/* A statement's first keyword; see sqlite.h. Does not fail. */
void sq_first_keyword(const char *sql, char *word, size_t size)
{
    const char *p = sql;
    size_t n = 0;

    for (;;) {
        while (isspace((unsigned char)*p)) {
            p++;
        }
        if (p[0] == '-' && p[1] == '-') {
            p = strchr(p, '\n');
            if (p == NULL) {
                p = "";
            }
        } else if (p[0] == '/' && p[1] == '*') {
            const char *end = strstr(p + 2, "*/");

            p = end != NULL ? end + 2 : "";
        } else {
            break;
        }
    }
    while (isalpha((unsigned char)p[n]) && n + 1 < size) {
        word[n] = (char)toupper((unsigned char)p[n]);
        n++;
    }
    if (size > 0) {
        word[n] = '\0';
    }
}

/* Check one finished query: it has SQL and that SQL starts like a read.
 * The real check (sq_conn_prepare) needs the database; this one catches
 * `DELETE ...` when vigil starts. */
static int sq_query_check(const struct sq_query *q, char *err, size_t size)
{
    static const char *const reads[] = {"SELECT", "WITH", "VALUES", "PRAGMA",
                                        NULL};
    char word[16];
    size_t i;

    if (q->sql == NULL || q->sql[0] == '\0') {
        snprintf(err, size, "query '%s': no SQL after '%s:'", q->name, q->name);
        return VIGIL_ECONFIG;
    }
    sq_first_keyword(q->sql, word, sizeof(word));
    for (i = 0; reads[i] != NULL; i++) {
        if (strcmp(word, reads[i]) == 0) {
            return 0;
        }
    }
    snprintf(err, size,
             "query '%s': only reads are run (SELECT, WITH, VALUES or a "
             "PRAGMA that reads), not '%s'",
             q->name, word[0] != '\0' ? word : q->sql);
    return VIGIL_ECONFIG;
}

/* Free parsed queries; accepts NULL. See sqlite.h. */
void sq_queries_free(struct sq_query *q, size_t n)
{
    size_t i;

    if (q == NULL) {
        return;
    }
    for (i = 0; i < n; i++) {
        free(q[i].sql);
    }
    free(q);
}

/* Begin query number *n from an item that starts with a name of len. */
static int sq_begin(struct sq_query *q, size_t *n, const char *item, size_t len,
                    char *err, size_t size)
{
    size_t i;

    if (*n == SQ_QUERIES_MAX) {
        snprintf(err, size, "more than %d queries", SQ_QUERIES_MAX);
        return VIGIL_ECONFIG;
    }
    if (len > SQ_NAME_MAX) {
        snprintf(err, size, "query name '%.*s...' is longer than %d", 16, item,
                 SQ_NAME_MAX);
        return VIGIL_ECONFIG;
    }
    memcpy(q[*n].name, item, len);
    q[*n].name[len] = '\0';
    for (i = 0; i < *n; i++) {
        if (strcmp(q[i].name, q[*n].name) == 0) {
            snprintf(err, size, "query '%s' is defined twice", q[*n].name);
            return VIGIL_ECONFIG;
        }
    }
    (*n)++;
    return 0;
}

/* The `query` lines into named queries; see sqlite.h. */
int sq_queries_parse(const struct vigil_list *lines, struct sq_query **out,
                     size_t *n, char *err, size_t size)
{
    struct sq_query *q;
    size_t i, nq = 0;
    int rc = 0;

    *out = NULL;
    *n = 0;
    if (lines->n == 0) {
        return 0;
    }
    q = calloc(SQ_QUERIES_MAX, sizeof(*q));
    if (q == NULL) {
        return VIGIL_ENOMEM;
    }
    for (i = 0; i < lines->n && rc == 0; i++) {
        const char *item = lines->v[i];
        size_t len = sq_item_name(item);

        if (len > 0) {
            if (nq > 0) {
                rc = sq_query_check(&q[nq - 1], err, size);
            }
            if (rc == 0) {
                rc = sq_begin(q, &nq, item, len, err, size);
            }
            item += len + 1;
        } else if (nq == 0) {
            snprintf(err, size,
                     "query '%.40s': expected 'NAME: SELECT ...' (a name "
                     "for the query label, a colon, then the SQL)",
                     item);
            rc = VIGIL_ECONFIG;
        }
        if (rc == 0 && item[strspn(item, " \t")] != '\0') {
            rc = sq_append(&q[nq - 1].sql, item);
            if (rc == VIGIL_ELIMIT) {
                snprintf(err, size, "query '%s': longer than %d bytes",
                         q[nq - 1].name, SQ_SQL_MAX - 1);
                rc = VIGIL_ECONFIG;
            } else if (rc == VIGIL_ENOMEM) {
                snprintf(err, size, "out of memory");
            }
        }
    }
    if (rc == 0 && nq > 0) {
        rc = sq_query_check(&q[nq - 1], err, size);
    }
    if (rc != 0) {
        sq_queries_free(q, nq);
        return rc;
    }
    *out = q;
    *n = nq;
    return 0;
}
