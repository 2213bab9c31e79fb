#!/bin/sh
# run.sh STATE_DIR COMMAND [ARG...] - run COMMAND with VIGIL_TEST_PG set to
# the URI of the server that start.sh started in STATE_DIR.
set -eu
state=$1
shift
[ -s "$state/uri" ] || {
    echo "tests/pg/run.sh: no server in $state (tests/pg/start.sh)" >&2
    exit 1
}
VIGIL_TEST_PG=$(cat "$state/uri")
export VIGIL_TEST_PG
exec "$@"
