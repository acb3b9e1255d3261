#!/usr/bin/env bash
# The lab canal server's bin/startup.sh, behaving as canal's own: refuses to
# start while bin/canal.pid exists (even a stale one, as canal's does), starts
# the server in the background, writes its pid to bin/canal.pid.
set -euo pipefail
base=$(cd "$(dirname "$0")/.." && pwd)
pid_file=$base/bin/canal.pid
if [ -f "$pid_file" ]; then
    echo "found canal.pid , Please run stop.sh first ,then startup.sh" >&2
    exit 1
fi
mkdir -p "$base/logs/canal"
cd "$base/bin"
# -DappName=otter-canal is how canal's process is found (pipemedic's
# process = { cmdline_contains = "appName=otter-canal" }).
nohup java -Xms128m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dfile.encoding=UTF-8 -DappName=otter-canal -Dcanal.logs.dir="$base/logs" \
    -Dlogback.configurationFile="$base/conf/logback.xml" -Dcanal.conf="$base/conf/canal.properties" \
    -cp "$base/conf:$base/lib/*" com.alibaba.otter.canal.deployer.CanalLauncher \
    >>"$base/logs/canal/canal_stdout.log" 2>&1 </dev/null &
echo $! >"$pid_file"
echo "cd to $base/bin for workaround relative path"
echo "canal started, pid $(cat "$pid_file")"
