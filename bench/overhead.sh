#!/usr/bin/env bash
# bench/overhead: what vigil costs the host it watches. Runs
# `vigil run -c conf/vigil.ini` (system metrics every second) for DURATION
# seconds after a warm-up, then prints the CPU it used as % of one core and
# its steady resident memory. Usage: bench/overhead.sh [VIGIL_BIN] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-./build/vigil}
secs=${2:-60}
warm=5

"$bin" run -c conf/vigil.ini 2>/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
sleep "$warm"

# CPU time in ns of every thread, from the scheduler (finer than the 10 ms
# clock ticks of /proc/PID/stat).
cpu_ns() { cat /proc/$pid/task/*/schedstat | awk '{ s += $1 } END { print s }'; }
t0=$(cpu_ns); s0=$(date +%s.%N)
sleep "$secs"
t1=$(cpu_ns); s1=$(date +%s.%N)
rss_kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
hwm_kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")
kill -TERM $pid; wait $pid || true
trap - EXIT

awk -v t="$((t1 - t0))" -v s0="$s0" -v s1="$s1" \
    -v rss="$rss_kb" -v hwm="$hwm_kb" 'BEGIN {
    wall = s1 - s0
    printf "vigil overhead over %.1f s (conf/vigil.ini, sys every 1 s)\n", wall
    printf "  cpu: %.3f %% of one core (%.1f ms of CPU)\n", \
        100 * t / 1e9 / wall, t / 1e6
    printf "  rss: %.2f MB steady, %.2f MB peak\n", rss / 1024, hwm / 1024
    printf "  reference (issue 2): collectd 5.12 ~0.7 %%, 4.2 MB; " \
        "target < 0.3 %%, < 6 MB\n"
}'
