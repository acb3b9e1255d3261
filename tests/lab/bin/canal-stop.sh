#!/usr/bin/env bash
# The lab canal server's bin/stop.sh, behaving as canal's own: SIGTERM to the
# pid in bin/canal.pid, then waits for the process to exit (never SIGKILL,
# runbook T4), then removes the pid file.
set -uo pipefail
base=$(cd "$(dirname "$0")/.." && pwd)
pid_file=$base/bin/canal.pid
if [ ! -f "$pid_file" ]; then
    echo "canal is not running. exists"
    exit 0
fi
pid=$(cat "$pid_file")
echo -e "$(hostname): stopping canal $pid ... "
kill "$pid" 2>/dev/null
started=$(date +%s)
while kill -0 "$pid" 2>/dev/null; do
    sleep 0.2
done
rm -f "$pid_file"
echo "Oook! cost:$(($(date +%s) - started))"
