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
# SIGTERM, like a JVM stuck in a shutdown hook. If run/NAME.zk exists
# ("HOST:PORT BROKER_ID"), the service is a Kafka broker in ZooKeeper's eyes:
# it registers the ephemeral /brokers/ids/BROKER_ID through a ZooKeeper
# session (Debian's zkCli.sh) that lives exactly as long as it does.
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
    zk_quit() { :; }
    if [ -f "$run/$name.zk" ]; then
        read -r connect id < "$run/$name.zk"
        fifo="$run/$name.zk.fifo"
        rm -f "$fifo" "$run/$name.zk.out"
        mkfifo -m 600 "$fifo"
        /usr/share/zookeeper/bin/zkCli.sh -server "$connect" < "$fifo" > "$run/$name.zk.out" 2>&1 &
        zkcli=$!
        echo "$zkcli" > "$run/$name.zk.pid"
        exec 9> "$fifo"
        echo "create -e /brokers/ids/$id {\"host\":\"127.0.0.1\",\"port\":9092,\"version\":4}" >&9
        until grep -q "Created /brokers/ids/$id" "$run/$name.zk.out" 2>/dev/null; do
            alive "$zkcli" || { echo "$(ts) FATAL registering broker $id in ZooKeeper failed (kafka.server.KafkaServer)" >> "$log"; exit 1; }
            sleep 0.1
        done
        # Closing the session removes the ephemeral id, as a stopping broker's does.
        zk_quit() { echo quit >&9; exec 9>&-; wait "$zkcli" 2>/dev/null; }
    fi
    if [ -f "$run/$name.ignore-term" ]; then
        trap '' TERM
    else
        trap 'zk_quit; echo "$(ts) INFO [KafkaServer id=1] shut down completed (kafka.server.KafkaServer)" >> "$log"; exit 0' TERM
    fi
    echo "$(ts) INFO [KafkaServer id=1] started (kafka.server.KafkaServer)" >> "$log"
    while :; do sleep 1 & wait $!; done
    ;;
*)
    echo "unknown command $cmd" >&2
    exit 2
    ;;
esac
