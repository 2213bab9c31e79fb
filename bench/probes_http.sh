#!/usr/bin/env bash
# bench/probes_http: what the http plugin costs. Starts a local HTTP
# server (Python's, in another process: its CPU is not counted), runs
# `vigil run` with N http instances (N = 100 by default), each probing its
# own URL every 1 s, and measures the daemon's CPU from
# /proc/PID/task/*/schedstat (every thread, libcurl's resolver threads
# included) over SECONDS after a warm-up. A baseline run without plugins
# is measured the same way; the difference is the plugin's cost, printed
# as % of one core and as CPU microseconds per request. Run twice: with
# keep-alive connections (keep_alive = yes, the default) and with a
# fresh connection per request (keep_alive = no: connect and close every
# time, the worst case). Target (issue 5): under 1 % of one
# core for 100 HTTP targets at 1 s.
#
# Usage: bench/probes_http.sh [VIGIL_BIN] [SECONDS] [N]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-./build/vigil}")
secs=${2:-20}
n=${3:-100}
plugins=$(dirname "$bin")/plugins
warm=3

[ -x "$bin" ] || { echo "no vigil binary at $bin" >&2; exit 2; }
[ -f "$plugins/http.so" ] || { echo "no $plugins/http.so" >&2; exit 2; }

tmp=$(mktemp -d)
daemon=""
server=""
cleanup() {
    [ -z "$daemon" ] || kill "$daemon" 2>/dev/null || true
    [ -z "$server" ] || kill "$server" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null |
           awk '{ s += $1 } END { printf "%d\n", s }'; }

# The target: a threading HTTP/1.1 server answering every path with a
# small body, keep-alive honoured.
cat >"$tmp/server.py" <<'PY'
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def log_message(self, *a): pass
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")
class S(ThreadingHTTPServer):
    request_queue_size = 1024  # 100 probes connect at the same instant
s = S(("127.0.0.1", 0), H)
s.daemon_threads = True
print(s.server_address[1], flush=True)
s.serve_forever()
PY
python3 "$tmp/server.py" >"$tmp/port" 2>"$tmp/server.err" &
server=$!
for ((i = 0; i < 50; i++)); do [ -s "$tmp/port" ] && break; sleep 0.1; done
port=$(cat "$tmp/port")
[ -n "$port" ] || { echo "the HTTP server did not start" >&2; exit 1; }

# run CONFIG LABEL REQUESTS_PER_S: start vigil, warm up, measure.
run() {
    local conf=$1 label=$2 rps=$3 t0 t1 s0 s1
    "$bin" run -c "$conf" >/dev/null 2>"$tmp/err" &
    daemon=$!
    sleep "$warm"
    kill -0 "$daemon" || { cat "$tmp/err" >&2; exit 1; }
    t0=$(cpu_ns "$daemon"); s0=$(date +%s.%N)
    sleep "$secs"
    t1=$(cpu_ns "$daemon"); s1=$(date +%s.%N)
    kill -TERM "$daemon"; wait "$daemon" || true
    daemon=""
    awk -v t="$((t1 - t0))" -v s0="$s0" -v s1="$s1" -v l="$label" \
        -v rps="$rps" -v r="$tmp/results" 'BEGIN {
        pct = 100 * t / 1e9 / (s1 - s0)
        printf "%-34s %7.3f %% of one core (%.1f ms CPU in %.1f s)\n",
               l, pct, t / 1e6, s1 - s0
        printf "%.6f\t%s\t%s\n", pct, l, rps >> r }'
    if grep -q 'level=error' "$tmp/err"; then
        echo "  errors were logged:" >&2; grep -m3 'level=error' "$tmp/err" >&2
    fi
}

# The store keeps only vigil's own series, so that the figures are the
# probe's; the last run keeps every sample's history, as `keep = *` does.
head_ini() {
    printf '[vigil]\ninterval = 1s\nplugin_dir = %s\n' "$plugins"
    printf '[store]\npath = %s/vigil.db\nkeep = %s\n' "$tmp" "${1:-vigil.*}"
}
targets() { # targets FRESH: N http sections
    local i
    for ((i = 0; i < n; i++)); do
        printf '[plugin http t%d]\nurl = http://127.0.0.1:%s/t%d\n' \
            "$i" "$port" "$i"
        printf 'interval = 1s\nkeep_alive = %s\n' "$1"
    done
}
head_ini >"$tmp/base.ini"
{ head_ini; targets yes; } >"$tmp/keep.ini"
{ head_ini; targets no; } >"$tmp/fresh.ini"
{ head_ini '*'; targets no; } >"$tmp/stored.ini"

printf 'http plugin cost, %s s each, %s targets at 1 s\n' "$secs" "$n"
run "$tmp/base.ini" "baseline (no plugins)" 0
run "$tmp/keep.ini" "http, $n targets, keep-alive" "$n"
run "$tmp/fresh.ini" "http, $n targets, fresh connects" "$n"
run "$tmp/stored.ini" "same, every sample stored" "$n"
base=$(head -1 "$tmp/results" | cut -f1)
echo "the http plugin alone (minus the baseline):"
awk -F '\t' -v b="$base" 'NR > 1 {
    d = $1 - b
    printf "  %-32s %+7.3f %% of one core, %6.1f us CPU per request\n",
           $2, d, d / 100 * 1e6 / $3 }' "$tmp/results"
echo "target (issue 5): < 1 % of one core for 100 HTTP targets at 1 s"
