#!/usr/bin/env bash
# Replicated produce and idle cost on three local brokers.
#
#   bash benches/cluster.sh [messages]      (default 500000 messages of 1 KiB)
#   PARTITIONS=12 RUNS=1 IDLE=no bash benches/cluster.sh    (12 partitions a
#   topic, one run each, no idle measurement)
#   FLUSH_MESSAGES=9223372036854775807 bash benches/cluster.sh   (the brokers
#   run with Kafka's flush policy: log.flush.interval.messages set so)
#
# Starts three `sluice` brokers in cluster mode on loopback (fresh data
# folders under a temp dir), then:
#   1. `sluice bench` with acks=all into a new 1-partition topic with
#      replication factor 1, then one with replication factor 3 (three runs
#      each, every run its own topic);
#   2. creates a topic of 1,000 partitions with replication factor 3, waits
#      until all have a leader, lets it settle, and reports each broker's CPU
#      (from /proc) and resident memory over 30 idle seconds.
# Needs the release build (cargo build --release) and, for step 2, the Python
# venv that scripts/test.sh creates (.venv, with confluent-kafka).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SLUICE_BIN:-target/release/sluice}
COUNT=${1:-500000}
PARTITIONS=${PARTITIONS:-1}
RUNS=${RUNS:-3}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CLIENT=() INTERNAL=() ADMIN=()
for i in 1 2 3; do CLIENT[$i]=$(port); INTERNAL[$i]=$(port); ADMIN[$i]=$(port); done
VOTERS="1@127.0.0.1:${INTERNAL[1]},2@127.0.0.1:${INTERNAL[2]},3@127.0.0.1:${INTERNAL[3]}"
EXTRA=()
if [ -n "${FLUSH_MESSAGES:-}" ]; then
    echo "\"log.flush.interval.messages\" = $FLUSH_MESSAGES" >"$WORK/flush.toml"
    EXTRA=(--config "$WORK/flush.toml")
    echo "brokers run with log.flush.interval.messages = $FLUSH_MESSAGES"
fi
for i in 1 2 3; do
    "$BIN" --listen "127.0.0.1:${CLIENT[$i]}" --data-dir "$WORK/$i" --node-id "$i" \
        --controller-voters "$VOTERS" --admin-listen "127.0.0.1:${ADMIN[$i]}" "${EXTRA[@]}" >"$WORK/broker-$i.log" 2>&1 &
    PIDS+=($!)
done
BOOT="127.0.0.1:${CLIENT[1]},127.0.0.1:${CLIENT[2]},127.0.0.1:${CLIENT[3]}"
for i in 1 2 3; do
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/${CLIENT[$i]}") 2>/dev/null && break
        sleep 0.1
    done
done
echo "three brokers up (logs in $WORK); waiting for them to register"
sleep 3

for rf in 1 3; do
    for run in $(seq "$RUNS"); do
        echo "== acks=all, replication factor $rf, $PARTITIONS partition(s), run $run"
        if [ "$PARTITIONS" -gt 1 ]; then
            # Every partition led by broker 1 (first in its assignment), so
            # the bench talks to one leader; the followers are 2 and 3.
            .venv/bin/python - "127.0.0.1:${CLIENT[1]}" "rf$rf-run$run" "$PARTITIONS" "$rf" <<'EOF'
import sys, time
from confluent_kafka.admin import AdminClient, NewTopic
boot, name, n, rf = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
admin = AdminClient({"bootstrap.servers": boot, "log_level": 0})
admin.create_topics([NewTopic(name, n, replica_assignment=[[1, 2, 3][:rf]] * n)])[name].result()
while any(p.leader != 1 for p in admin.list_topics(name, timeout=10).topics[name].partitions.values()):
    time.sleep(0.2)
EOF
        fi
        cpu_before=$(for p in "${PIDS[@]}"; do awk '{print $14+$15}' "/proc/$p/stat"; done | paste -sd+ | bc)
        "$BIN" bench --bootstrap "127.0.0.1:${CLIENT[1]}" --topic "rf$rf-run$run" --partitions "$PARTITIONS" \
            --replication-factor "$rf" --acks -1 --count "$COUNT" --message-size 1024 2>"$WORK/bench.err" |
            grep -E "^(produced|produce |end to end)" || { tail -3 "$WORK/bench.err"; exit 1; }
        cpu_after=$(for p in "${PIDS[@]}"; do awk '{print $14+$15}' "/proc/$p/stat"; done | paste -sd+ | bc)
        echo "brokers' CPU: $(echo "scale=2; ($cpu_after - $cpu_before) / $(getconf CLK_TCK)" | bc) s for $((COUNT * 1024 / 1000000)) MB"
    done
done
[ "${IDLE:-yes}" = no ] && exit 0

if [ ! -x .venv/bin/python ]; then
    echo "no .venv (run scripts/test.sh once): skipping the idle measurement"
    exit 0
fi
echo "== 1,000 idle partitions, replication factor 3"
.venv/bin/python - "$BOOT" "${PIDS[@]}" <<'EOF'
import os, sys, time
from confluent_kafka.admin import AdminClient, NewTopic
boot, pids = sys.argv[1], sys.argv[2:]
admin = AdminClient({"bootstrap.servers": boot, "log_level": 0})
started = time.time()
admin.create_topics([NewTopic("idle", 1000, 3)], request_timeout=120)["idle"].result()
while True:
    parts = admin.list_topics(timeout=10).topics["idle"].partitions.values()
    if all(p.leader >= 0 for p in parts):
        break
    time.sleep(0.5)
leaders = {}
for p in parts:
    leaders[p.leader] = leaders.get(p.leader, 0) + 1
print(f"created and led in {time.time() - started:.1f} s; leaders per broker {dict(sorted(leaders.items()))}")
time.sleep(10)
tick = os.sysconf("SC_CLK_TCK")
def cpu(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tick
before = {p: cpu(p) for p in pids}
t0 = time.time()
time.sleep(30)
elapsed = time.time() - t0
use = [(cpu(p) - before[p]) / elapsed * 100 for p in pids]
rss = [int(open(f"/proc/{p}/status").read().split("VmRSS:")[1].split()[0]) // 1024 for p in pids]
print("idle CPU, % of one core, per broker:", ", ".join(f"{u:.1f}" for u in use), f"(total {sum(use):.1f})")
print("resident memory per broker (MiB):", ", ".join(map(str, rss)))
EOF
