#!/bin/sh
# stop.sh STATE_DIR - stop the server that start.sh started there (exactly
# that one: the PID it wrote) and remove the directory.
set -u

die() {
    echo "tests/pg/stop.sh: $*" >&2
    exit 1
}

[ $# -eq 1 ] || die "usage: stop.sh STATE_DIR"
state=$1
bin=${PG_BIN:-/usr/lib/postgresql/15/bin}
[ -e "$state" ] || exit 0

as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pid=
[ -f "$state/pid" ] && pid=$(cat "$state/pid")
if [ -f "$state/data/postmaster.pid" ] && [ -x "$bin/pg_ctl" ]; then
    as_pg "$bin/pg_ctl" -D "$state/data" -m fast -w -t 30 stop >/dev/null 2>&1
fi
# pg_ctl did not do it (or is gone): that PID, and only it.
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
fi
if [ -f "$state/sockdir" ]; then
    sock=$(cat "$state/sockdir")
    case $sock in
    /tmp/vigil-pg-sock.*) rm -rf "$sock" ;;
    esac
fi
rm -rf "$state"
