#!/usr/bin/env bash
# bench/ingest: how fast vigil takes in StatsD. Starts `vigil run` with only
# the statsd plugin (flush every second) on a free loopback port, then
# blasts it with bench_ingest (datagrams of many lines over ~1,000 names)
# at increasing rates, STEP_S seconds each. For each rate it compares the
# lines sent with the lines vigil counted (statsd.lines_total) and reads
# vigil's CPU time from /proc/PID/task/*/schedstat. Prints the highest rate
# with under 1% loss, vigil's CPU at that rate, CPU ns per metric, and the
# parser's ns per line from statsd_bench_parse.
#
# Usage: bench/ingest.sh [BUILD_DIR] [STEP_S] [DATAGRAM_BYTES]
#   BUILD_DIR       defaults to ./build (vigil, bench_ingest and
#                   plugins/statsd/statsd_bench_parse are taken from it)
#   STEP_S          seconds of sending per rate (default 3)
#   DATAGRAM_BYTES  datagram size (default 1400: what clients send under a
#                   1500-byte MTU)
# Bounded in time: at most ~12 rates of STEP_S + ~3 s each. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(cd "${1:-./build}" && pwd)
step=${2:-3}
dgram=${3:-1400}
vigil=$build/vigil
sender=$build/bench_ingest
parser=$build/plugins/statsd/statsd_bench_parse
for f in "$vigil" "$sender" "$parser"; do
    [ -x "$f" ] || { echo "bench/ingest: $f missing (build first)" >&2; exit 1; }
done

tmp=$(mktemp -d)
pid=
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# A free port: bind port 0, read it back, close.
port=$(/usr/bin/python3 -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')
mkdir -p "$tmp/rules"
cat > "$tmp/vigil.ini" <<EOF
[vigil]
interval = 1s
log_level = warn

[rules]
dir = $tmp/rules

; History only for the plugin's own counters: what the store costs depends
; on series x frequency, not on the ingest rate measured here.
[store]
keep = statsd.*

[plugin statsd]
listen = 127.0.0.1:$port
tcp = no
interval = 1s
EOF

: > "$tmp/out"
"$vigil" run -c "$tmp/vigil.ini" --print 'statsd.lines_total' \
    > "$tmp/out" 2> "$tmp/err" &
pid=$!

# The last statsd.lines_total vigil printed (0 before the first flush).
lines_total() {
    awk '$2 == "statsd.lines_total" { v = $3 } END { print v + 0 }' "$tmp/out"
}
# Wait until vigil has flushed twice more: everything sent before is
# counted (the loop drains the socket before each flush).
settle() {
    local n0
    n0=$(grep -c 'statsd.lines_total' "$tmp/out" || true)
    for _ in $(seq 60); do
        sleep 0.1
        [ "$(grep -c 'statsd.lines_total' "$tmp/out" || true)" -ge $((n0 + 2)) ] && return 0
    done
    echo "bench/ingest: vigil stopped flushing" >&2
    cat "$tmp/err" >&2
    exit 1
}
cpu_ns() { cat /proc/$pid/task/*/schedstat | awk '{ s += $1 } END { printf "%.0f\n", s }'; }

settle
printf '%-12s %-12s %-12s %-8s %-10s %s\n' \
    rate/s sent counted loss% cpu% ns/metric
best_rate=0 best_cpu=0 best_ns=0 fails=0
for rate in 250000 500000 1000000 2000000 3000000 4000000 5000000 6000000 \
            7000000 8000000 10000000 12000000; do
    l0=$(lines_total)
    c0=$(cpu_ns)
    "$sender" "$port" "$rate" "$step" "$dgram" > "$tmp/sent"
    settle
    c1=$(cpu_ns)
    l1=$(lines_total)
    sent=$(awk '$1 == "sent_lines" { print $2 }' "$tmp/sent")
    secs=$(awk '$1 == "seconds" { print $2 }' "$tmp/sent")
    read -r loss cpu ns achieved <<< "$(awk -v s="$sent" -v r=$((l1 - l0)) \
        -v c=$((c1 - c0)) -v t="$secs" -v want="$rate" 'BEGIN {
        loss = s > 0 ? 100 * (s - r) / s : 100
        # CPU over the sending time (the settle time is idle flushing).
        printf "%.2f %.1f %.1f %d\n", loss, 100 * c / 1e9 / t, \
            (r > 0 ? c / r : 0), (s / t >= 0.97 * want) }')"
    printf '%-12s %-12s %-12s %-8s %-10s %s%s\n' "$rate" "$sent" \
        $((l1 - l0)) "$loss" "$cpu" "$ns" \
        "$([ "$achieved" = 1 ] || echo '  (sender could not keep up)')"
    if awk -v l="$loss" 'BEGIN { exit !(l < 1) }' && [ "$achieved" = 1 ]; then
        best_rate=$rate best_cpu=$cpu best_ns=$ns fails=0
    else
        fails=$((fails + 1))
        [ "$fails" -ge 2 ] && break
    fi
done
kill "$pid"; wait "$pid" || true
pid=

"$parser" 20 > "$tmp/parse"
echo
echo "bench/ingest: StatsD over UDP loopback, ${dgram}-byte datagrams," \
     "~1000 names, flush every 1 s"
echo "  highest rate with < 1% loss: $best_rate metrics/s"
echo "  vigil CPU at that rate:      $best_cpu % of one core"
echo "  CPU per metric:              $best_ns ns"
awk '
$1 == "parse_ns_per_line" { printf "  parser alone:                %s ns/line\n", $2 }
$1 == "agg_ns_per_line" { printf "  parse + aggregate:           %s ns/line\n", $2 }
$1 == "allocations_after_warmup" {
    printf "  allocations per line after warm-up: %s in total\n", $2 }
' "$tmp/parse"
echo "  reference (issue 7): collectd 5.12 ~2.3 M/s at ~240 ns/metric;" \
     "Netdata 1.37 >= 4 M/s at ~180 ns;"
echo "  target >= 4 M metrics/s, < 1% loss, < 90 ns CPU/metric"
