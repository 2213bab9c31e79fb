#!/usr/bin/env bash
# bench/probes: what the probes cost, each against a baseline run of the
# same binary without plugins, in % of one core and CPU per request:
#   probes_http.sh   100 HTTP targets at 1 s (keep-alive and fresh
#                    connections)                 target: < 1 % of a core
#   probes_ws.sh     100 WebSocket connections pinging at 1 s
#   probes_proc.sh   proc watching 1, 10 and 500 processes
#                                                 target: < 0.5 % for 10
# Usage: bench/probes.sh [VIGIL_BIN] [SECONDS]
set -euo pipefail
bin=$(realpath "${1:-$(dirname "$0")/../build/vigil}")
cd "$(dirname "$0")"
secs=${2:-20}
./probes_http.sh "$bin" "$secs" 100
echo
./probes_ws.sh "$bin" "$secs" 100
echo
./probes_proc.sh "$bin" "$secs"
