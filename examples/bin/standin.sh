#!/usr/bin/env bash
# A stand-in for a managed service (Kafka broker, canal server, Tomcat) with
# the same interface the agent uses on the real ones: a start script that
# backgrounds the process and writes a pid file, a stop script that sends
# SIGTERM and waits, and a log that says "started" / "shut down completed".
#
#   standin.sh start NAME LOG   start NAME in the background, logging to LOG
#   standin.sh stop NAME        SIGTERM it and wait until it is gone
#   standin.sh run NAME LOG     the "service" itself (used by start)
#
# State lives next to this script in run/: NAME.pid, NAME.starts (one line
# per start), NAME.stops. If run/NAME.ignore-term exists the service ignores
# SIGTERM, like a JVM stuck in a shutdown hook.
set -u
here=$(cd "$(dirname "$0")" && pwd)
run="$here/run"
mkdir -p "$run"
cmd=${1:?usage: standin.sh start|stop|run NAME [LOG]}
name=${2:?name}
ts() { date '+[%Y-%m-%d %H:%M:%S,000]'; }
# Alive and not a zombie (in a container nobody may reap the orphan).
alive() { [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status"; }

case "$cmd" in
start)
    log=${3:?log}
    if [ -f "$run/$name.pid" ] && alive "$(cat "$run/$name.pid")"; then
        echo "$name already running"
        exit 1
    fi
    echo "start $(date +%s)" >> "$run/$name.starts"
    nohup "$here/standin.sh" run "$name" "$log" >/dev/null 2>&1 &
    echo $! > "$run/$name.pid"
    ;;
stop)
    [ -f "$run/$name.pid" ] || { echo "$name is not running"; exit 0; }
    pid=$(cat "$run/$name.pid")
    echo "stop $(date +%s)" >> "$run/$name.stops"
    kill -TERM "$pid" 2>/dev/null
    while alive "$pid"; do sleep 0.1; done
    rm -f "$run/$name.pid"
    ;;
run)
    log=${3:?log}
    if [ -f "$run/$name.ignore-term" ]; then
        trap '' TERM
    else
        trap 'echo "$(ts) INFO [KafkaServer id=1] shut down completed (kafka.server.KafkaServer)" >> "$log"; exit 0' TERM
    fi
    echo "$(ts) INFO [KafkaServer id=1] started (kafka.server.KafkaServer)" >> "$log"
    while :; do sleep 1 & wait $!; done
    ;;
*)
    echo "unknown command $cmd" >&2
    exit 2
    ;;
esac
