#!/usr/bin/env bash
# A flood in one log through the running daemon (release build, not in
# dry-run, stand-in services): MB of CommitFailedException records appended
# at once to the consumer's error log, a K1 incident appended to the broker
# log 5 s into the flood. Reports how long the flood took to be decided (a
# marker record after it), how long the K1 incident waited, how much the
# audit journal grew, and how long SIGTERM took with a backlog left.
#
#   bench/flood.sh [MB]
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${1:-200}
. bench/scratch.sh
scratch_host false
start_agent
python3 - "$dir" "$mb" <<'PY'
import json, os, sys, time
d, mb = sys.argv[1], int(sys.argv[2])
audit = os.path.join(d, "state", "audit.jsonl")
one = ("2026-11-25 10:00:00.001 [pool-2-thread-1] ERROR c.g.datasync.consumer.ConsumerThread - commit failed\n"
       "org.apache.kafka.clients.consumer.CommitFailedException: Commit cannot be completed since the group has already rebalanced\n"
       "\tat org.apache.kafka.clients.consumer.internals.ConsumerCoordinator.sendOffsetCommitRequest(ConsumerCoordinator.java:600)\n")
n = mb * 1024 * 1024 // len(one)
flood = (one * 4096).encode()
k1 = ("[2026-11-25 10:00:00,001] ERROR [KafkaServer id=1] Fatal error during KafkaServer startup. Prepare to shutdown (kafka.server.KafkaServer)\n"
      "java.net.UnknownHostException: ip-10.98.2.33: ip-10.98.2.33: unknown error\n\tat java.net.InetAddress.getLocalHost(InetAddress.java:1505)\n")
marker = "2026-11-25 10:00:01.000 [main] WARN x - woken\norg.apache.kafka.common.errors.WakeupException\n\tat a.b(C.java:1)\n"
size0 = os.path.getsize(audit)
def find(pred):
    with open(audit) as f:
        for line in f:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if pred(e):
                return e
t0 = time.time()
written, k1_at = 0, None
with open(os.path.join(d, "logs", "error.log"), "ab") as f:
    while written < n:
        f.write(flood); f.flush()
        written += 4096
        if k1_at is None and time.time() - t0 >= 5:
            with open(os.path.join(d, "logs", "server.log"), "a") as s:
                s.write(k1)
            k1_at = time.time()
    f.write(marker.encode())
wrote = time.time() - t0
if k1_at is None:
    with open(os.path.join(d, "logs", "server.log"), "a") as s:
        s.write(k1)
    k1_at = time.time()
k1_done = None
while True:
    if k1_done is None and find(lambda e: e.get("kind") == "decision" and e.get("rule") == "k1_unknown_host"):
        k1_done = time.time()
    if find(lambda e: e.get("kind") == "decision" and e.get("rule") == "c3_wakeup"):
        break
    time.sleep(0.2)
done = time.time() - t0
while k1_done is None:
    if find(lambda e: e.get("rule") == "k1_unknown_host"):
        k1_done = time.time()
    time.sleep(0.05)
grown = os.path.getsize(audit) - size0
print(f"flood: {n} records, {mb} MiB written in {wrote:.1f} s, all decided {done:.1f} s after the first byte "
      f"({mb / done:.0f} MiB/s); K1 on the other log decided {k1_done - k1_at:.2f} s after it was appended; "
      f"audit grew {grown / 1024:.0f} KiB ({100 * grown / (mb * 1048576):.3f} % of the flood)")
PY
# SIGTERM with a backlog: append another flood and stop at once.
python3 -c "
import sys
one=open('$dir/logs/error.log','rb').read(1<<20)
with open('$dir/logs/error.log','ab') as f:
    for _ in range($mb): f.write(one)
"
t0=$(date +%s.%N); kill -TERM "$pid"; wait "$pid" || true; t1=$(date +%s.%N)
echo "SIGTERM with a $mb MiB backlog: stopped in $(echo "$t1 - $t0" | bc -l | xargs printf %.2f) s"
