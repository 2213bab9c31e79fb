#!/bin/sh
# ctl.sh STATE_DIR stop|start - stop (fast shutdown) the server that
# start.sh started in STATE_DIR, or start it again on the same port and
# socket with the same options: for tests that watch a server go away and
# come back. stop.sh still stops and removes it at the end.
set -eu

die() {
    echo "tests/pg/ctl.sh: $*" >&2
    exit 1
}

[ $# -eq 2 ] || die "usage: ctl.sh STATE_DIR stop|start"
state=$1
bin=${PG_BIN:-/usr/lib/postgresql/15/bin}
[ -s "$state/opts" ] || die "no server started by start.sh in $state"

as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

case $2 in
stop)
    as_pg "$bin/pg_ctl" -D "$state/data" -m fast -w -t 60 stop >/dev/null
    ;;
start)
    as_pg "$bin/pg_ctl" -D "$state/data" -l "$state/server.log" -w -t 60 \
        -o "$(cat "$state/opts")" start >/dev/null ||
        { tail -20 "$state/server.log" >&2; die "pg_ctl start failed"; }
    head -1 "$state/data/postmaster.pid" >"$state/pid"
    ;;
*)
    die "usage: ctl.sh STATE_DIR stop|start"
    ;;
esac
