#!/usr/bin/env bash
# Run one libFuzzer target for a bounded time over its seed corpus
# (tests/fuzz/corpus/NAME, read only); new inputs go to a temporary
# directory. Usage: run.sh FUZZER CORPUS_DIR [SECONDS]
set -euo pipefail
fuzzer=$1 corpus=$2 secs=${3:-10}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A crash prints the input (hex and Base64) before the summary.
"$fuzzer" -max_total_time="$secs" -timeout=5 -rss_limit_mb=1024 \
    -artifact_prefix="$tmp/" \
    -print_final_stats=1 "$tmp" "$corpus" 2>&1 | tail -n 12
