#!/usr/bin/env bash
# Latency from appending an incident to the decision in the audit journal:
# the daemon (release build, dry-run) follows one Kafka server log; each
# round appends one K1 incident in a single write, as a logger does, and
# waits for its decision. Prints p50, p90, p99 and max.
#
#   bench/latency.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-200}
. bench/scratch.sh
scratch_host true
start_agent
python3 - "$dir" "$rounds" <<'PY'
import json, os, sys, time
d, rounds = sys.argv[1], int(sys.argv[2])
audit = os.path.join(d, "state", "audit.jsonl")
log = os.path.join(d, "logs", "server.log")
deadline = time.time() + 30
while not (os.path.exists(audit) and '"started"' in open(audit).read()):
    if time.time() > deadline:
        sys.exit("the agent did not start: " + open(os.path.join(d, "agent.log")).read())
    time.sleep(0.01)
pos = os.path.getsize(audit)
lat = []
for i in range(rounds):
    host = f"ip-10.{i // 250}.{i % 250}.1"
    text = ("[2026-11-25 10:00:00,001] ERROR [KafkaServer id=1] Fatal error during KafkaServer startup. Prepare to shutdown (kafka.server.KafkaServer)\n"
            f"java.net.UnknownHostException: {host}: {host}: unknown error\n"
            "\tat java.net.InetAddress.getLocalHost(InetAddress.java:1505)\n"
            f"Caused by: java.net.UnknownHostException: {host}: unknown error\n\t... 9 more\n")
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    t0 = time.perf_counter()
    os.write(fd, text.encode())
    os.close(fd)
    found = False
    while not found:
        with open(audit, "rb") as f:
            f.seek(pos)
            chunk = f.read()
        for line in chunk.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break
            pos += len(line)
            e = json.loads(line)
            if e.get("kind") == "decision" and e.get("rule") == "k1_unknown_host" and e.get("captures", {}).get("host") == host:
                found = True
        if not found:
            if time.perf_counter() - t0 > 10:
                sys.exit(f"no decision for {host} after 10 s")
            time.sleep(0.0005)
    lat.append((time.perf_counter() - t0) * 1000)
    time.sleep(0.05)
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print(f"{rounds} single-write incidents, append -> audit entry: p50 {q(0.5):.1f} ms, p90 {q(0.9):.1f} ms, p99 {q(0.99):.1f} ms, max {lat[-1]:.1f} ms")
PY
