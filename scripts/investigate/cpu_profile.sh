#!/bin/sh
# cpu_profile.sh PATTERN [SECONDS] - a CPU profile of the process whose
# command line matches PATTERN (pgrep -f; the first match), for the
# genesis runbooks' "Run CPU profiler" step. Uses the first profiler found:
#   py-spy   (a Python process: its Python stacks, the guide's cProfile
#            view without restarting the service)
#   perf     (any process: native stacks, sampled at 99 Hz)
# and prints the top of the profile as text, which vigil keeps as the
# step's evidence. Says so plainly, and exits 3, when neither is installed
# or the process is gone: the evidence then records why there is none.
set -u
pattern=${1:?usage: cpu_profile.sh PATTERN [SECONDS]}
secs=${2:-10}

# The oldest match that is not this script (its own command line
# carries the pattern too).
pid=""
for p in $(pgrep -f -- "$pattern"); do
    [ "$p" = $$ ] || { pid=$p; break; }
done
[ -n "$pid" ] || {
    echo "no process matches '$pattern'"
    exit 3
}
echo "profiling pid $pid ($(tr '\0' ' ' </proc/"$pid"/cmdline | cut -c1-120)) for ${secs}s"

if command -v py-spy >/dev/null 2>&1; then
    echo "profiler: py-spy"
    exec py-spy top --pid "$pid" --nonblocking --duration "$secs" 2>&1 | tail -n 60
fi
if command -v perf >/dev/null 2>&1; then
    echo "profiler: perf"
    out=$(mktemp) || exit 1
    trap 'rm -f "$out"' EXIT
    if ! perf record -q -F 99 -g -p "$pid" -o "$out" -- sleep "$secs" 2>&1; then
        echo "perf record failed (perf_event_paranoid is $(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null))"
        exit 3
    fi
    # Where the time goes by library first (a library without symbols,
    # such as libcrypto, would otherwise scatter over many addresses),
    # then by function.
    echo "by library:"
    perf report -i "$out" --stdio --no-children --sort dso -g none \
        --percent-limit 1 2>/dev/null | grep -v -e '^$' -e '^#' | head -n 15
    echo "by function:"
    perf report -i "$out" --stdio --no-children --sort dso,symbol -g none \
        --percent-limit 1 2>/dev/null | grep -v -e '^$' -e '^#' | head -n 40
    exit 0
fi
echo "no profiler on this host: install py-spy (Python) or perf (linux-perf)"
exit 3
