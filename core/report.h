/*
 * report - incidents for people and programs: `vigil incidents list` and
 * `vigil incidents show ID` as text, Markdown or JSON, and `vigil history`,
 * all read from the store (tool mode).
 */
#ifndef VIGIL_REPORT_H
#define VIGIL_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "store.h"

enum report_format { REPORT_TEXT = 0, REPORT_MARKDOWN, REPORT_JSON };

/* Newest first; open_only limits to open incidents. Returns 0 or a
 * VIGIL_E* code (message on stderr). */
int report_list(struct store *s, int open_only, int format, FILE *out);

/* One incident with its transitions, evidence and actions. Returns 0,
 * VIGIL_ENOENT when there is no such incident, or another code. */
int report_show(struct store *s, int64_t id, int format, FILE *out);

/* Samples of one series since a time (raw, then 1-minute roll-ups). */
int report_history(struct store *s, const char *series, int64_t since,
                   int format, FILE *out);

#endif
