#!/bin/sh
# start.sh STATE_DIR - start a throwaway PostgreSQL server for the tests
# (the CTest fixture "pg", see tests/tests.cmake) or for bench_store.
#
# initdb in STATE_DIR/data (as the postgres user when run as root: initdb
# refuses root), listen on 127.0.0.1 on a free port with a private unix
# socket directory, trust authentication (a test server only), then
# pg_ctl start -w. Writes:
#   STATE_DIR/uri   postgresql://postgres@127.0.0.1:PORT/postgres
#   STATE_DIR/pid   the postmaster's PID (stop.sh stops exactly that one)
#   STATE_DIR/opts  the server's options (ctl.sh starts it again with them)
#
# The server binaries come from $PG_BIN, default /usr/lib/postgresql/15/bin.
# When they are missing this fails loudly: CI installs them (make deps:
# postgresql, postgresql-contrib); the tests never skip silently.
# Extra server options: $VIGIL_PG_OPTS (e.g. "-c fsync=off").
# pg_stat_statements is preloaded (the pg plugin's tests read it; the
# extension itself is created by whoever needs it, in their database); a
# shared_preload_libraries in $VIGIL_PG_OPTS comes later and wins.
set -eu

die() {
    echo "tests/pg/start.sh: $*" >&2
    exit 1
}

[ $# -eq 1 ] || die "usage: start.sh STATE_DIR"
state=$1
here=$(cd "$(dirname "$0")" && pwd)
bin=${PG_BIN:-/usr/lib/postgresql/15/bin}
for b in initdb pg_ctl postgres; do
    [ -x "$bin/$b" ] || die "no $bin/$b: the PostgreSQL 15 server is not" \
        "installed (apt-get install postgresql postgresql-contrib; or set" \
        "PG_BIN to its bin directory)"
done

# A server left behind by an interrupted run: stop it first.
if [ -e "$state" ]; then
    "$here/stop.sh" "$state"
fi

# As root, everything below runs as postgres, which must be able to reach
# the state directory.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

mkdir -p "$state"
state=$(cd "$state" && pwd)
# The socket's path must fit in sun_path (108 bytes).
if [ ${#state} -lt 70 ]; then
    sock=$state/sock
    mkdir "$sock"
else
    sock=$(mktemp -d /tmp/vigil-pg-sock.XXXXXX)
fi
echo "$sock" >"$state/sockdir"
if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "no postgres user (install postgresql)"
    chown postgres "$state" "$sock"
    as_pg test -w "$state" || die "$state: not reachable by the postgres user" \
        "(a parent directory is not searchable); use a build directory" \
        "under /tmp or make its parents o+x"
fi

as_pg "$bin/initdb" -D "$state/data" -U postgres --auth=trust -E UTF8 \
    --no-sync >"$state/initdb.log" 2>&1 ||
    { cat "$state/initdb.log" >&2; die "initdb failed"; }

# A free port: let the kernel pick one, then start on it; another process
# may take it meanwhile, so try a few times.
free_port() {
    for py in /usr/bin/python3 python3; do
        if command -v "$py" >/dev/null 2>&1; then
            "$py" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
            return
        fi
    done
    echo $((20000 + $$ % 20000))
}

# The contrib module ships with the server on Debian; without it the
# server would not start at all, so leave it out and say so.
preload=
if [ -e "$bin/../lib/pg_stat_statements.so" ]; then
    preload="-c shared_preload_libraries=pg_stat_statements"
else
    echo "tests/pg/start.sh: no pg_stat_statements module in $bin/../lib:" \
        "the server runs without it (install postgresql-contrib)" >&2
fi

started=
for attempt in 1 2 3 4 5; do
    port=$(free_port)
    opts="-p $port -k $sock -c listen_addresses=127.0.0.1 $preload"
    opts="$opts ${VIGIL_PG_OPTS:-}"
    if as_pg "$bin/pg_ctl" -D "$state/data" -l "$state/server.log" -w -t 60 \
        -o "$opts" start >/dev/null; then
        started=1
        break
    fi
done
[ -n "$started" ] || { tail -20 "$state/server.log" >&2; die "pg_ctl start failed"; }

head -1 "$state/data/postmaster.pid" >"$state/pid"
echo "$opts" >"$state/opts" # for ctl.sh start
echo "postgresql://postgres@127.0.0.1:$port/postgres" >"$state/uri"
echo "PostgreSQL $("$bin/postgres" -V | awk '{print $3}') on 127.0.0.1:$port," \
    "pid $(cat "$state/pid"), in $state"
