#!/usr/bin/env bash
# Start and stop for the lab's other Java processes (Kafka brokers, monitor,
# data_sync): a pid file; stop is SIGTERM and a wait, never SIGKILL (runbook
# T3, T4).
#   daemon.sh start PID_FILE OUT_FILE -- COMMAND...
#   daemon.sh stop PID_FILE [WAIT_SECS]
set -uo pipefail
action=$1 pid_file=$2
case $action in
start)
    out=$3
    shift 4
    if [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
        echo "already running: pid $(cat "$pid_file")" >&2
        exit 1
    fi
    nohup "$@" >>"$out" 2>&1 </dev/null &
    echo $! >"$pid_file"
    echo "started, pid $!"
    ;;
stop)
    wait_secs=${3:-120}
    [ -f "$pid_file" ] || { echo "not running"; exit 0; }
    pid=$(cat "$pid_file")
    kill -TERM "$pid" 2>/dev/null || { rm -f "$pid_file"; echo "not running"; exit 0; }
    deadline=$(($(date +%s) + wait_secs))
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "pid $pid still running after ${wait_secs}s (not killed)" >&2
            exit 1
        fi
        sleep 0.2
    done
    rm -f "$pid_file"
    echo "stopped"
    ;;
*)
    echo "usage: daemon.sh start|stop PID_FILE ..." >&2
    exit 2
    ;;
esac
