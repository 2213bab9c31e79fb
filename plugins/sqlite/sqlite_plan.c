/*
 * sqlite_plan.c - EXPLAIN QUERY PLAN, read for people.
 *
 * Each plan row's detail is classified (sq_plan_classify): "SCAN t" reads
 * every row of t, "SEARCH t USING INDEX i (c=?)" only the rows it needs.
 * A SCAN names the table or its alias ("SCAN o" for `orders o`), so the
 * tables the statement reads (from the authorizer) resolve aliases, and a
 * scan of anything else (a subquery, a CTE, a constant row) is not a full
 * table scan.
 *
 * Hints are checked, not guessed: the schema is copied into an in-memory
 * database, and for each column the statement reads of a scanned table an
 * index on that one column is created there and the plan asked again. An
 * index the planner then SEARCHes with is suggested with its CREATE INDEX
 * statement. This is SQLite's `.expert` idea reduced to single-column
 * indexes; the copy has no data and no sqlite_stat1, so the planner judges
 * by the schema alone.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sqlite.h"

#define SQ_HINT_INDEX "vigil_hint_index"

/* Copy the word at p (up to a blank or the end) into out; returns the
 * end of the word. A quoted name keeps its text without the quotes. */
static const char *sq_word(const char *p, char *out, size_t size)
{
    size_t n = 0;

    if (*p == '"' || *p == '`' || *p == '[') {
        char close = *p == '[' ? ']' : *p;

        p++;
        while (*p != '\0' && *p != close) {
            if (n + 1 < size) {
                out[n++] = *p;
            }
            p++;
        }
        if (*p == close) {
            p++;
        }
    } else {
        while (*p != '\0' && *p != ' ') {
            if (n + 1 < size) {
                out[n++] = *p;
            }
            p++;
        }
    }
    out[n] = '\0';
    return p;
}

/* "(symbol=? AND status=?)" -> "symbol,status" */
static void sq_auto_columns(const char *p, char *out, size_t size)
{
    size_t n = 0;

    p = strchr(p, '(');
    out[0] = '\0';
    if (p == NULL) {
        return;
    }
    p++;
    while (*p != '\0' && *p != ')') {
        size_t len = strcspn(p, "=<>!) ");

        if (n > 0 && n + 1 < size) {
            out[n++] = ',';
        }
        if (n + len < size) {
            memcpy(out + n, p, len);
            n += len;
        }
        out[n] = '\0';
        p = strstr(p, " AND ");
        if (p == NULL) {
            break;
        }
        p += 5;
    }
}

/* Read one plan detail; see sqlite.h. Does not fail. */
void sq_plan_classify(const char *detail, struct sq_plan_detail *d)
{
    const char *p, *using;
    int scan;

    memset(d, 0, sizeof(*d));
    d->kind = SQ_PLAN_OTHER;
    if (strncmp(detail, "USE TEMP B-TREE", 15) == 0) {
        d->kind = SQ_PLAN_TEMP_BTREE;
        return;
    }
    scan = strncmp(detail, "SCAN ", 5) == 0;
    if (!scan && strncmp(detail, "SEARCH ", 7) != 0) {
        return;
    }
    p = detail + (scan ? 5 : 7);
    if (strncmp(p, "TABLE ", 6) == 0) { /* before SQLite 3.36 */
        p += 6;
    }
    if (strncmp(p, "CONSTANT ROW", 12) == 0 || *p == '(') {
        d->kind = SQ_PLAN_SCAN_OTHER; /* no table, or a subquery */
        return;
    }
    p = sq_word(p, d->name, sizeof(d->name));
    if (strncmp(p, " AS ", 4) == 0) { /* old form: "SCAN TABLE t AS a" */
        p = sq_word(p + 4, d->name, sizeof(d->name));
    }
    using = strstr(p, " USING ");
    if (strstr(p, " VIRTUAL TABLE") != NULL) {
        d->kind = SQ_PLAN_SCAN_OTHER;
    } else if (using != NULL && strstr(using, "AUTOMATIC") != NULL) {
        d->kind = SQ_PLAN_AUTO_INDEX;
        sq_auto_columns(using, d->columns, sizeof(d->columns));
    } else if (scan) {
        d->kind = using != NULL ? SQ_PLAN_INDEX_SCAN : SQ_PLAN_FULL_SCAN;
    } else {
        d->kind = SQ_PLAN_SEARCH;
    }
    if (using != NULL && d->kind != SQ_PLAN_AUTO_INDEX) {
        const char *ix = strstr(using, "INDEX ");

        if (ix != NULL) {
            sq_word(ix + 6, d->index, sizeof(d->index));
        }
    }
}

static int sq_ident_char(int c)
{
    return isalnum(c) || c == '_' || c == '$' || c >= 0x80;
}

/* Case-insensitive: does sql at p start with the identifier id (bare or
 * quoted) followed by a non-identifier character? Returns its end. */
static const char *sq_match_ident(const char *p, const char *id)
{
    size_t n = strlen(id);

    if (*p == '"' || *p == '`' || *p == '[') {
        char close = *p == '[' ? ']' : *p;

        if (strncasecmp(p + 1, id, n) == 0 && p[1 + n] == close) {
            return p + n + 2;
        }
        return NULL;
    }
    if (strncasecmp(p, id, n) == 0 && !sq_ident_char((unsigned char)p[n])) {
        return p + n;
    }
    return NULL;
}

static const char *sq_skip_blank(const char *p)
{
    while (isspace((unsigned char)*p)) {
        p++;
    }
    return p;
}

/* Is `table [AS] alias` written somewhere in sql? */
static int sq_aliases(const char *sql, const char *table, const char *alias)
{
    const char *p;

    for (p = sql; *p != '\0'; p++) {
        const char *e;

        if (p > sql && sq_ident_char((unsigned char)p[-1])) {
            continue;
        }
        e = sq_match_ident(p, table);
        if (e == NULL || !isspace((unsigned char)*e)) {
            continue;
        }
        e = sq_skip_blank(e);
        if (strncasecmp(e, "AS", 2) == 0 && isspace((unsigned char)e[2])) {
            e = sq_skip_blank(e + 2);
        }
        if (sq_match_ident(e, alias) != NULL) {
            return 1;
        }
    }
    return 0;
}

/* The table a SCAN or SEARCH name stands for; see sqlite.h. */
int sq_plan_resolve(const char *sql, const struct sq_read *reads, size_t nreads,
                    const char *name, char *table, size_t size)
{
    size_t i;

    for (i = 0; i < nreads; i++) {
        if (strcasecmp(reads[i].table, name) == 0) {
            snprintf(table, size, "%s", reads[i].table);
            return 1;
        }
    }
    for (i = 0; i < nreads; i++) {
        if (sq_aliases(sql, reads[i].table, name)) {
            snprintf(table, size, "%s", reads[i].table);
            return 1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Hints on a copy of the schema.
 */

/* An in-memory database with the schema of c's (tables, indexes, views;
 * what does not replay, such as a virtual table whose module is missing,
 * is left out). NULL when it cannot be made. */
static sqlite3 *sq_schema_copy(struct sq_conn *c)
{
    static const char *const list =
        "SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL AND "
        "type IN ('table', 'index', 'view') AND name NOT LIKE 'sqlite_%' "
        "ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 "
        "ELSE 2 END, rowid";
    sqlite3 *mem = NULL;
    sqlite3_stmt *st = NULL;
    int rc;

    if (sqlite3_open_v2(":memory:", &mem,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        sqlite3_close(mem);
        return NULL;
    }
    sqlite3_db_config(mem, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
    sqlite3_db_config(mem, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
    c->internal = 1;
    rc = sqlite3_prepare_v2(c->db, list, -1, &st, NULL);
    while (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        const char *ddl = (const char *)sqlite3_column_text(st, 0);

        if (ddl != NULL) {
            sqlite3_exec(mem, ddl, NULL, NULL, NULL);
        }
    }
    sqlite3_finalize(st);
    c->internal = 0;
    return mem;
}

/* Would the planner SEARCH with an index on table(column)? 1 yes, 0 no,
 * -1 when the statement does not prepare on the copy. */
static int sq_index_helps(sqlite3 *mem, const char *eqp, const char *table,
                          const char *column)
{
    char *ddl = sqlite3_mprintf(
        "CREATE INDEX \"" SQ_HINT_INDEX "\" ON \"%w\"(\"%w\")", table, column);
    sqlite3_stmt *st = NULL;
    int helps = 0;

    if (ddl == NULL || sqlite3_exec(mem, ddl, NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_free(ddl);
        return 0;
    }
    sqlite3_free(ddl);
    if (sqlite3_prepare_v2(mem, eqp, -1, &st, NULL) != SQLITE_OK) {
        helps = -1;
    }
    while (helps == 0 && sqlite3_step(st) == SQLITE_ROW) {
        struct sq_plan_detail d;
        const char *text = (const char *)sqlite3_column_text(st, 3);

        sq_plan_classify(text != NULL ? text : "", &d);
        /* A SCAN of the new index still reads all of it: no help. */
        helps = d.kind == SQ_PLAN_SEARCH && strcmp(d.index, SQ_HINT_INDEX) == 0;
    }
    sqlite3_finalize(st);
    sqlite3_exec(mem, "DROP INDEX \"" SQ_HINT_INDEX "\"", NULL, NULL, NULL);
    return helps;
}

/* Columns of table, among those the statement reads, whose own index the
 * planner would search with: appended to cols (a JSON array). Returns
 * how many, or -1 when the statement does not prepare on the copy. */
static int sq_hint_columns(sqlite3 *mem, const char *eqp,
                           const struct sq_conn *c, const char *table,
                           json_t *cols)
{
    size_t i, tried = 0;
    int found = 0;

    for (i = 0; i < c->nreads && tried < SQ_HINT_CANDIDATES; i++) {
        const struct sq_read *r = &c->reads[i];
        int h;

        if (strcasecmp(r->table, table) != 0 || r->column[0] == '\0') {
            continue;
        }
        tried++;
        h = sq_index_helps(mem, eqp, r->table, r->column);
        if (h < 0) {
            return -1;
        }
        if (h > 0) {
            json_array_append_new(cols, json_string(r->column));
            found++;
        }
    }
    return found;
}

/* The columns of table the statement reads, "a, b, c". */
static void sq_read_list(const struct sq_conn *c, const char *table, char *out,
                         size_t size)
{
    size_t i, n = 0;

    out[0] = '\0';
    for (i = 0; i < c->nreads; i++) {
        const struct sq_read *r = &c->reads[i];

        if (strcasecmp(r->table, table) == 0 && r->column[0] != '\0' &&
            n + strlen(r->column) + 3 < size) {
            n += (size_t)snprintf(out + n, size - n, "%s%s", n ? ", " : "",
                                  r->column);
        }
    }
}

static void sq_hint_scan(sqlite3 *mem, const char *eqp, const struct sq_conn *c,
                         const char *table, json_t *hints)
{
    json_t *cols = json_array();
    char text[1024], reads[512];
    int n = mem != NULL && cols != NULL
                ? sq_hint_columns(mem, eqp, c, table, cols)
                : -1;

    sq_read_list(c, table, reads, sizeof(reads));
    if (n > 0) {
        const char *col = json_string_value(json_array_get(cols, 0));

        snprintf(text, sizeof(text),
                 "SCAN %s reads every row of %s on each run: CREATE INDEX "
                 "%s_%s ON %s(%s) lets SQLite search it instead (the "
                 "planner chose it on a copy of the schema)",
                 table, table, table, col, table, col);
    } else if (n == 0) {
        snprintf(text, sizeof(text),
                 "SCAN %s reads every row of %s on each run, and no index "
                 "on one of the columns it reads (%s) would be searched: "
                 "it may need a multi-column index, a condition an index "
                 "can serve (no function or leading wildcard on the "
                 "column), or it really reads the whole table",
                 table, table, reads[0] ? reads : "none");
    } else {
        snprintf(text, sizeof(text),
                 "SCAN %s reads every row of %s on each run: an index on "
                 "the column(s) it filters or joins %s by (among %s) would "
                 "let SQLite search it instead",
                 table, table, table, reads[0] ? reads : "its columns");
    }
    json_array_append_new(hints, json_string(text));
    json_decref(cols);
}

/* ------------------------------------------------------------------------
 * The plan as JSON.
 */

/* One plan row into rows; full scans and their hints noted. */
static void sq_plan_row(struct sq_conn *c, const char *sql, sqlite3 **mem,
                        const char *eqp, sqlite3_stmt *st, json_t *rows,
                        json_t *scans, json_t *hints)
{
    const char *detail = (const char *)sqlite3_column_text(st, 3);
    struct sq_plan_detail d;
    char table[SQ_NAME_MAX * 2] = "";
    json_t *row = json_object();
    char text[512];

    detail = detail != NULL ? detail : "";
    sq_plan_classify(detail, &d);
    if (d.name[0] != '\0' &&
        !sq_plan_resolve(sql, c->reads, c->nreads, d.name, table,
                         sizeof(table)) &&
        (d.kind == SQ_PLAN_FULL_SCAN || d.kind == SQ_PLAN_AUTO_INDEX)) {
        d.kind = SQ_PLAN_SCAN_OTHER; /* a CTE or subquery result */
    }
    json_object_set_new(row, "id", json_integer(sqlite3_column_int(st, 0)));
    json_object_set_new(row, "parent", json_integer(sqlite3_column_int(st, 1)));
    json_object_set_new(row, "detail", json_string(detail));
    json_object_set_new(row, "full_scan",
                        json_boolean(d.kind == SQ_PLAN_FULL_SCAN));
    if (table[0] != '\0') {
        json_object_set_new(row, "table", json_string(table));
    }
    if (d.index[0] != '\0') {
        json_object_set_new(row, "index", json_string(d.index));
    }
    json_array_append_new(rows, row);
    if (d.kind == SQ_PLAN_FULL_SCAN) {
        json_array_append_new(scans, json_string(table));
        if (*mem == NULL) {
            *mem = sq_schema_copy(c);
        }
        sq_hint_scan(*mem, eqp, c, table, hints);
    } else if (d.kind == SQ_PLAN_AUTO_INDEX) {
        snprintf(text, sizeof(text),
                 "SQLite builds a temporary index on %s(%s) on every run: "
                 "CREATE INDEX %s_auto ON %s(%s) keeps one",
                 table, d.columns, table, table, d.columns);
        json_array_append_new(hints, json_string(text));
    } else if (d.kind == SQ_PLAN_TEMP_BTREE) {
        snprintf(text, sizeof(text),
                 "%s: a sort on every run; an index whose columns match "
                 "the ORDER BY or GROUP BY would give the rows in order",
                 detail);
        json_array_append_new(hints, json_string(text));
    }
}

/* A plan with its flags and checked hints; see sqlite.h. */
int sq_plan_json(struct sq_conn *c, const char *sql, json_t *out, char *msg,
                 size_t size)
{
    json_t *rows = json_array(), *scans = json_array(), *hints = json_array();
    sqlite3_stmt *st = NULL;
    sqlite3 *mem = NULL;
    char *eqp = NULL;
    size_t n = 0;
    int rc;

    /* The guard first: a plan is only asked for a statement vigil would
     * run, and its reads (the authorizer's) resolve aliases. */
    c->want_reads = 1;
    rc = sq_conn_prepare(c, sql, 0, &st, msg, size);
    c->want_reads = 0;
    sqlite3_finalize(st);
    st = NULL;
    if (rc != SQ_OK) {
        goto out;
    }
    eqp = sqlite3_mprintf("EXPLAIN QUERY PLAN %s", sql);
    c->internal = 1;
    rc = eqp == NULL || rows == NULL || scans == NULL || hints == NULL
             ? SQLITE_NOMEM
             : sqlite3_prepare_v2(c->db, eqp, -1, &st, NULL);
    c->internal = 0;
    if (rc != SQLITE_OK) {
        snprintf(msg, size, "EXPLAIN QUERY PLAN: %s", sqlite3_errmsg(c->db));
        rc = (rc & 0xff) == SQLITE_BUSY ? SQ_BUSY : SQ_ERROR;
        goto out;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && n++ < SQ_PLAN_ROWS) {
        sq_plan_row(c, sql, &mem, eqp, st, rows, scans, hints);
    }
    rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQ_OK
         : (rc & 0xff) == SQLITE_BUSY          ? SQ_BUSY
                                               : SQ_ERROR;
    if (rc != SQ_OK) {
        snprintf(msg, size, "EXPLAIN QUERY PLAN: %s", sqlite3_errmsg(c->db));
        goto out;
    }
    json_object_set(out, "plan", rows);
    json_object_set(out, "full_scans", scans);
    json_object_set(out, "hints", hints);
out:
    sqlite3_finalize(st);
    sqlite3_close(mem);
    sqlite3_free(eqp);
    json_decref(rows);
    json_decref(scans);
    json_decref(hints);
    return rc;
}
