# Sourced by the bench scripts: a scratch pipeline host for the release
# daemon. `scratch_host DRY_RUN` builds the release binary, makes $dir with
# logs/ (server.log, error.log, info.log), a 0700 state/, a hosts file,
# consumer.properties and the stand-in service script, and writes
# $dir/pipemedic.toml following those three logs with stand-in kafka and
# consumer services and the repository's rules. `start_agent` runs the
# daemon on it ($pid) and waits until it follows its sources; the agent is
# stopped and $dir removed on exit.
scratch_host() {
    cargo build --release --quiet
    dir=$(mktemp -d)
    pid=
    trap 'if [ -n "$pid" ]; then kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; fi; rm -rf "$dir"' EXIT
    mkdir -p "$dir/logs" "$dir/state" "$dir/bin"
    chmod 700 "$dir/state"
    cp examples/bin/standin.sh "$dir/bin/"
    for f in server.log error.log info.log; do : > "$dir/logs/$f"; done
    printf '127.0.0.1 localhost\n' > "$dir/hosts"
    printf 'max.poll.records=500\n' > "$dir/consumer.properties"
    cat > "$dir/pipemedic.toml" <<CONF
state_dir = "state"
dry_run = $1
rule_dirs = ["$PWD/rules"]
hosts_file = "hosts"
[sources.kafka_server]
path = "logs/server.log"
[sources.consumer_error]
path = "logs/error.log"
[sources.consumer_info]
path = "logs/info.log"
[services.kafka]
start = ["bin/standin.sh", "start", "kafka", "$dir/logs/server.log"]
stop = ["bin/standin.sh", "stop", "kafka"]
process = { pid_file = "bin/run/kafka.pid" }
[services.consumer]
start = ["bin/standin.sh", "start", "consumer", "$dir/logs/info.log"]
stop = ["bin/standin.sh", "stop", "consumer"]
process = { pid_file = "bin/run/consumer.pid" }
[properties_files]
consumer = "consumer.properties"
CONF
}

start_agent() {
    target/release/pipemedic run --config "$dir/pipemedic.toml" 2>>"$dir/agent.log" &
    pid=$!
    until grep -q '"started"' "$dir/state/audit.jsonl" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || { cat "$dir/agent.log" >&2; exit 1; }
        sleep 0.05
    done
}
