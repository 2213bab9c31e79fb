#!/usr/bin/env bash
# bench/probes_proc: what the proc plugin costs. Starts N sleeping
# children (N = 1, 10, 500 by default) whose command line carries a token,
# runs `vigil run` with one proc instance selecting them by that token
# (cmdline regex, so every collection walks all of /proc and reads every
# process's command line: the costly way to select) every 1 s, and
# measures the daemon's CPU from /proc/PID/task/*/schedstat (every
# thread, the pool's included) over SECONDS after a warm-up. A baseline
# run without plugins is measured the same way; the proc plugin's cost is
# the difference. Target (issue 6): under 0.5 % of one core for 10
# processes at 1 s.
#
# Usage: bench/probes_proc.sh [VIGIL_BIN] [SECONDS] [N...]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-./build/vigil}")
secs=${2:-20}
shift $(($# > 2 ? 2 : $#))
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1 10 500)
plugins=$(dirname "$bin")/plugins
warm=3

[ -x "$bin" ] || { echo "no vigil binary at $bin" >&2; exit 2; }
[ -f "$plugins/proc.so" ] || { echo "no $plugins/proc.so" >&2; exit 2; }

tmp=$(mktemp -d)
token="vigil-bench-$$-$RANDOM"
children=()
daemon=""
cleanup() {
    [ -z "$daemon" ] || kill "$daemon" 2>/dev/null || true
    for c in "${children[@]}"; do kill "$c" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# CPU time in ns of every thread of pid, from the scheduler (finer than
# the 10 ms ticks of /proc/PID/stat).
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null |
           awk '{ s += $1 } END { printf "%d\n", s }'; }

spawn() { # spawn N more sleeping children named by the token
    local i
    for ((i = 0; i < $1; i++)); do
        (exec -a "$token" sleep 1000000) &
        children+=($!)
    done
}

# run CONFIG LABEL WANT: start vigil, wait until it reports WANT processes
# (or, with WANT empty, for the warm-up), measure, print one line.
run() {
    local conf=$1 label=$2 want=$3 out="$tmp/out" t0 t1 s0 s1 n
    : >"$out"
    "$bin" run -c "$conf" --print 'proc.group.processes' >"$out" 2>"$tmp/err" &
    daemon=$!
    if [ -n "$want" ]; then
        # Wait (up to 30 s) for a collection that sees every child.
        for ((n = 0; n < 300; n++)); do
            if awk -v w="$want" '$3 == w { f = 1 } END { exit !f }' "$out"; then
                break
            fi
            sleep 0.1
        done
        awk -v w="$want" '$3 == w { f = 1 } END { exit !f }' "$out" || {
            echo "vigil never saw $want processes:" >&2
            tail -5 "$out" "$tmp/err" >&2
            exit 1
        }
    fi
    sleep "$warm"
    t0=$(cpu_ns "$daemon"); s0=$(date +%s.%N)
    sleep "$secs"
    t1=$(cpu_ns "$daemon"); s1=$(date +%s.%N)
    kill -TERM "$daemon"; wait "$daemon" || true
    daemon=""
    awk -v t="$((t1 - t0))" -v s0="$s0" -v s1="$s1" -v l="$label" \
        -v r="$tmp/results" 'BEGIN {
        pct = 100 * t / 1e9 / (s1 - s0)
        printf "%-24s %7.3f %% of one core (%.1f ms CPU in %.1f s)\n",
               l, pct, t / 1e6, s1 - s0
        printf "%.6f\t%s\n", pct, l >> r }'
}

cat >"$tmp/base.ini" <<EOF
[vigil]
interval = 1s
plugin_dir = $plugins
EOF
printf 'proc plugin cost, %s s each, interval 1 s, %s processes on the host\n' \
    "$secs" "$(ls -d /proc/[0-9]* | wc -l)"
run "$tmp/base.ini" "baseline (no plugins)" ""
base=$(cut -f1 "$tmp/results" | tail -1)

have=0
for n in "${counts[@]}"; do
    spawn $((n - have))
    have=$n
    cat >"$tmp/proc.ini" <<EOF
[vigil]
interval = 1s
plugin_dir = $plugins
[plugin proc bench]
; '\$\$' is a '\$' in vigil's config.
cmdline = ^$token( |\$\$)
EOF
    run "$tmp/proc.ini" "proc, $n watched" "$n"
done
echo "the proc plugin alone (minus the baseline):"
awk -F '\t' -v b="$base" 'NR > 1 {
    printf "  %-22s %+7.3f %% of one core\n", $2, $1 - b }' "$tmp/results"
echo "target (issue 6): < 0.5 % of one core for 10 processes at 1 s"
