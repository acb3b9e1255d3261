#!/usr/bin/env bash
# Idle cost of the daemon: CPU time and resident memory while it follows the
# seven M1–M4 sources of the example configuration and nothing is written.
#
#   bench/idle.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
cargo build --release --quiet
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
target/release/pipemedic demo --dir "$dir" >/dev/null 2>&1 &   # materialises the example, feeds 3 incidents
pid=$!
sleep 8    # let the demo's incidents pass
tick=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
c0=$(cpu); t0=$(date +%s.%N)
sleep "$secs"
c1=$(cpu); t1=$(date +%s.%N)
wall=$(echo "$t1 - $t0" | bc -l)
echo "idle for $(printf %.0f "$wall") s: CPU $(echo "($c1 - $c0) / $tick" | bc -l | xargs printf %.3f) s" \
     "($(echo "100 * ($c1 - $c0) / $tick / $wall" | bc -l | xargs printf %.4f) %)," \
     "RSS $(awk '/VmRSS/ {print $2, $3}' "/proc/$pid/status"), peak $(awk '/VmHWM/ {print $2, $3}' "/proc/$pid/status")," \
     "threads $(ls /proc/$pid/task | wc -l)"
echo "wake-ups (voluntary context switches): $(awk '/^voluntary_ctxt_switches/ {print $2}' /proc/$pid/status)"
