#!/usr/bin/env bash
# bench/probes_ws: what the ws plugin costs. Starts a local WebSocket
# server (tests/lib/ws_server.py on Debian's python3-websockets, which
# counts the pings it answers and the messages it sends), runs `vigil run`
# with N ws instances (N = 100 by default), each its own connection
# pinging every 1 s, and measures the daemon's CPU from
# /proc/PID/task/*/schedstat (every thread) over SECONDS after a warm-up.
# A baseline run without plugins is measured the same way; the plugin's
# cost is the difference. Three runs separate the costs:
#   1. pings only (collections every 60 s): CPU per ping;
#   2. the same, collected every 1 s: what a collection adds;
#   3. and the server sends every client a message every 100 ms: CPU per
#      message received.
# Prints figures; asserts nothing.
#
# Usage: bench/probes_ws.sh [VIGIL_BIN] [SECONDS] [N]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-./build/vigil}")
secs=${2:-20}
n=${3:-100}
plugins=$(dirname "$bin")/plugins
server=$PWD/tests/lib/ws_server.py
warm=3

[ -x "$bin" ] || { echo "no vigil binary at $bin" >&2; exit 2; }
[ -f "$plugins/ws.so" ] || { echo "no $plugins/ws.so" >&2; exit 2; }
/usr/bin/python3 -c 'import websockets' 2>/dev/null ||
    { echo "python3-websockets is missing (make deps)" >&2; exit 2; }

tmp=$(mktemp -d)
daemon=""
srv=""
cleanup() {
    [ -z "$daemon" ] || kill "$daemon" 2>/dev/null || true
    [ -z "$srv" ] || kill "$srv" 2>/dev/null || true
    exec 3>&- 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null |
           awk '{ s += $1 } END { printf "%d\n", s }'; }

# start_server EVERY_MS: the server on a free port, commands through fd 3.
start_server() {
    mkfifo "$tmp/in.$1"
    /usr/bin/python3 "$server" --port 0 --every "$1" <"$tmp/in.$1" \
        >"$tmp/srv.$1" 2>&1 &
    srv=$!
    exec 3>"$tmp/in.$1"
    for ((i = 0; i < 100; i++)); do
        grep -q '^ready ' "$tmp/srv.$1" 2>/dev/null && break
        sleep 0.1
    done
    port=$(awk '/^ready / { print $2 }' "$tmp/srv.$1")
    [ -n "$port" ] || { echo "the server did not start" >&2; exit 1; }
}

stop_server() {
    exec 3>&-
    kill "$srv"; wait "$srv" 2>/dev/null || true
    srv=""
}

# The server's counts "PINGS MESSAGES" (asks it, waits for the answer).
counts() {
    local before
    before=$(grep -c '^stats ' "$1" || true)
    echo stats >&3
    for ((i = 0; i < 50; i++)); do
        [ "$(grep -c '^stats ' "$1" || true)" -gt "$before" ] && break
        sleep 0.05
    done
    awk '/^stats / { p = $2; m = $3 } END { print p + 0, m + 0 }' "$1"
}

# run CONFIG LABEL [SERVER_OUT WANT]: start vigil, wait for WANT clients
# on the server, measure, print one line.
run() {
    local conf=$1 label=$2 out=${3:-} want=${4:-0} t0 t1 s0 s1
    local c0="0 0" c1="0 0" mark=0
    # Only this run's connections count: lines after the mark.
    [ -z "$out" ] || mark=$(wc -l <"$out")
    "$bin" run -c "$conf" >/dev/null 2>"$tmp/err" &
    daemon=$!
    if [ -n "$out" ]; then
        for ((i = 0; i < 300; i++)); do
            tail -n +"$((mark + 1))" "$out" | grep -q "^open $want\$" && break
            sleep 0.1
        done
        tail -n +"$((mark + 1))" "$out" | grep -q "^open $want\$" || {
            echo "only $(awk '/^open / { n = $2 } END { print n + 0 }' \
                 "$out") of $want connected:" >&2
            tail -5 "$tmp/err" >&2
            exit 1
        }
    fi
    sleep "$warm"
    [ -z "$out" ] || c0=$(counts "$out")
    t0=$(cpu_ns "$daemon"); s0=$(date +%s.%N)
    sleep "$secs"
    t1=$(cpu_ns "$daemon"); s1=$(date +%s.%N)
    [ -z "$out" ] || c1=$(counts "$out")
    kill -TERM "$daemon"; wait "$daemon" || true
    daemon=""
    awk -v t="$((t1 - t0))" -v s0="$s0" -v s1="$s1" -v l="$label" \
        -v c0="$c0" -v c1="$c1" -v r="$tmp/results" 'BEGIN {
        split(c0, a, " "); split(c1, b, " ")
        p = b[1] - a[1]; m = b[2] - a[2]
        pct = 100 * t / 1e9 / (s1 - s0)
        printf "%-34s %7.3f %% of one core (%.1f ms CPU in %.1f s; " \
               "%d pings, %d messages)\n", l, pct, t / 1e6, s1 - s0, p, m
        printf "%.6f\t%d\t%d\t%.3f\t%s\n", pct, p, m, s1 - s0, l >> r }'
}

write_conf() { # write_conf FILE PORT COLLECT_INTERVAL
    {
        printf '[vigil]\ninterval = 1s\nplugin_dir = %s\n' "$plugins"
        for ((i = 0; i < n; i++)); do
            printf '[plugin ws c%d]\nurl = ws://127.0.0.1:%s/\n' "$i" "$2"
            printf 'ping_interval = 1s\ninterval = %s\n' "$3"
        done
    } >"$1"
}

printf 'ws plugin cost, %s s each, %d connections pinging every 1 s\n' \
    "$secs" "$n"
printf '[vigil]\ninterval = 1s\nplugin_dir = %s\n' "$plugins" >"$tmp/base.ini"
run "$tmp/base.ini" "baseline (no plugins)"

start_server 0
write_conf "$tmp/ws.ini" "$port" 60s
run "$tmp/ws.ini" "1. $n conns, pings" "$tmp/srv.0" "$n"
write_conf "$tmp/ws.ini" "$port" 1s
run "$tmp/ws.ini" "2. + collected every 1 s" "$tmp/srv.0" "$n"
stop_server

start_server 100
write_conf "$tmp/ws.ini" "$port" 1s
run "$tmp/ws.ini" "3. + 10 messages/s per conn" "$tmp/srv.100" "$n"
stop_server

# Each run's cost above the baseline, and above the run before it.
awk -F '\t' -v n="$n" '
    { pct[NR] = $1; p[NR] = $2; m[NR] = $3; s[NR] = $4 }
    function us(dpct, sec, count) {  # CPU us per event
        return count > 0 ? dpct / 100 * sec * 1e6 / count : 0 }
    END {
        printf "the ws plugin alone (minus the baseline): %+.3f %%, " \
               "%+.3f %%, %+.3f %% of one core\n",
               pct[2] - pct[1], pct[3] - pct[1], pct[4] - pct[1]
        printf "  per ping:       %6.1f us of CPU (run 1)\n",
               us(pct[2] - pct[1], s[2], p[2])
        printf "  per collection: %6.1f us of CPU (run 2 - run 1)\n",
               us(pct[3] - pct[2], s[3], n * s[3])
        printf "  per message:    %6.1f us of CPU (run 3 - run 2)\n",
               us(pct[4] - pct[3], s[4], m[4])
    }' "$tmp/results"
