/*
 * status - `vigil status`: the dashboard's overview in the terminal, read
 * from a running daemon's HTTP API (GET /api/v1/status, rules, incidents,
 * plugins) with a small blocking HTTP/1.1 client of its own (this is a
 * command-line tool, not the loop).
 *
 * The address comes from --url, or from the [http] section of the config
 * (-c FILE as for `vigil run`).
 */
#ifndef VIGIL_STATUS_H
#define VIGIL_STATUS_H

#include "daemon.h"

/* Run `vigil status` (argv[0] is "status"). o gives the default config.
 * Returns 0 when the daemon answered, 1 when it could not be reached or
 * answered with an error, 2 for usage and configuration errors. */
int status_main(int argc, char **argv, const struct daemon_opts *o);

#endif
