#!/usr/bin/env bash
# Profiles delayd under redis-benchmark DELAYADD load with perf (DWARF call
# graphs) and prints where the time goes: per thread, by innermost delayd
# function, and the hottest leaf symbols.
#
# Usage: benches/profile_delayadd.sh [--pipeline N] [--seconds S]
#        [--fsync everysec|always] [--io-threads N] [--keyspace N] [--hot]
#        [--no-build]
# Defaults: pipeline 16, 8 s of recording, everysec, io-threads 1,
# keyspace 100000000 (DELAYADD q <rand> m:<rand>: delays up to ~28 h, as in
# side_by_side.sh's add test). --hot: DELAYADD q 30000 m:<rand> instead
# (due in 30 s, the in-memory path; side_by_side.sh's addhot test).
# Needs perf and perf_event_paranoid <= 2 (user-space profiling of own
# processes). Only 127.0.0.1 is used; the server is stopped on exit.

set -euo pipefail

PIPELINE=16
SECONDS_REC=8
FSYNC=everysec
IO=1
KEYSPACE=100000000
BUILD=1
HOT=0
while [ $# -gt 0 ]; do
    case "$1" in
    --pipeline) PIPELINE=$2; shift 2 ;;
    --seconds) SECONDS_REC=$2; shift 2 ;;
    --fsync) FSYNC=$2; shift 2 ;;
    --io-threads) IO=$2; shift 2 ;;
    --keyspace) KEYSPACE=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --hot) HOT=1; shift ;;
    -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${DELAYD_BIN:-$ROOT/target/release/delayd}
if [ "$BUILD" = 1 ]; then (cd "$ROOT" && cargo build --release --bin delayd >&2); fi
[ -x "$BIN" ] || { echo "$BIN missing: run cargo build --release" >&2; exit 1; }
command -v perf >/dev/null || { echo "perf not found" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/delayd-profile.XXXXXX")
SERVER=""
LOAD=""
cleanup() {
    [ -z "$LOAD" ] || { kill "$LOAD" 2>/dev/null || true; wait "$LOAD" 2>/dev/null || true; }
    if [ -n "$SERVER" ]; then
        kill "$SERVER" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$SERVER" 2>/dev/null || true
        wait "$SERVER" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$BIN" --port "$PORT" --bind 127.0.0.1 --dir "$WORK/data" --appendfsync "$FSYNC" \
    --io-threads "$IO" 2>"$WORK/delayd.log" &
SERVER=$!
for _ in $(seq 100); do
    [ "$(timeout 5 redis-cli -h 127.0.0.1 -p "$PORT" PING 2>/dev/null)" = PONG ] && break
    sleep 0.1
done

if [ "$HOT" = 1 ]; then DELAY=30000; else DELAY=__rand_int__; fi
# The load runs longer than the recording; it is stopped afterwards.
timeout $((SECONDS_REC + 60)) redis-benchmark -h 127.0.0.1 -p "$PORT" -c 50 -P "$PIPELINE" \
    -n 2000000000 -r "$KEYSPACE" -q DELAYADD q "$DELAY" m:__rand_int__ >/dev/null 2>"$WORK/load.err" &
LOAD=$!
sleep 2
before=$(timeout 5 redis-cli -h 127.0.0.1 -p "$PORT" DELAYCARD q)
start=$(date +%s.%N)
timeout $((SECONDS_REC + 30)) perf record -F 999 -g --call-graph dwarf,16384 -p "$SERVER" \
    -o "$WORK/perf.data" -- sleep "$SECONDS_REC" 2>"$WORK/perf.err" >/dev/null || true
after=$(timeout 5 redis-cli -h 127.0.0.1 -p "$PORT" DELAYCARD q)
end=$(date +%s.%N)
kill "$LOAD" 2>/dev/null || true
wait "$LOAD" 2>/dev/null || true
LOAD=""
echo "DELAYADD q $DELAY m:__rand_int__ P$PIPELINE, appendfsync $FSYNC, io-threads $IO, keyspace $KEYSPACE:" \
    "$(awk -v a="$before" -v b="$after" -v s="$start" -v e="$end" 'BEGIN { printf "%.0f adds/s while recording (perf overhead included)", (b - a) / (e - s) }')"
[ -s "$WORK/load.err" ] && { echo "redis-benchmark stderr:"; head -5 "$WORK/load.err"; }

perf script -i "$WORK/perf.data" -F comm,ip,sym 2>/dev/null >"$WORK/script.txt"
python3 - "$WORK/script.txt" <<'EOF'
import collections, re, sys

samples, cur = [], None
for line in open(sys.argv[1], errors="replace"):
    if not line.strip():
        if cur:
            samples.append(cur)
        cur = None
    elif not line[0].isspace():
        cur = {"comm": line.split()[0], "frames": []}
    elif cur is not None:
        parts = line.strip().split(None, 1)
        cur["frames"].append(parts[1] if len(parts) > 1 else "?")
if cur:
    samples.append(cur)
if not samples:
    sys.exit("no samples")

def short(f):
    f = re.sub(r"\+0x[0-9a-f]+$", "", f).replace(" (inlined)", "")
    return re.sub(r"<[^<>]*>", "<>", f)[:100]

total = len(samples)
print(f"\n{total} samples. By thread:")
threads = collections.Counter(re.sub(r"\d+$", "", s["comm"]) for s in samples)
for k, v in threads.most_common():
    print(f"  {100 * v / total:5.1f}%  {k}")

print("\nBy innermost delayd function (all threads; 'outside delayd' = runtime, kernel, fjall workers):")
inner = collections.Counter()
for s in samples:
    label = "(outside delayd) " + re.sub(r"\d+$", "", s["comm"])
    for f in s["frames"]:
        if "delayd::" in f:
            label = short(f)
            break
    inner[label] += 1
for k, v in inner.most_common(20):
    print(f"  {100 * v / total:5.1f}%  {k}")

print("\nCallees of the hottest delayd functions (share of all samples):")
for name, _ in inner.most_common(6):
    if name.startswith("(outside"):
        continue
    sub = collections.Counter()
    n = 0
    for s in samples:
        fr = s["frames"]
        idx = next((i for i, f in enumerate(fr) if "delayd::" in f), None)
        if idx is None or short(fr[idx]) != name:
            continue
        n += 1
        chain = [short(fr[j]) for j in range(idx - 1, max(idx - 3, -1), -1)]
        sub[" > ".join(chain) or "(self)"] += 1
    print(f"  {name}: {100 * n / total:.1f}%")
    for k, v in sub.most_common(5):
        print(f"      {100 * v / total:5.1f}%  {k}")

print("\nfjall background workers, by task (share of all samples):")
tasks = collections.Counter()
for s in samples:
    if not s["comm"].startswith("fjall"):
        continue
    label = "other"
    for i, f in enumerate(s["frames"]):
        low = f.lower()
        if "compact" in low:
            label = "compaction"
            break
        if "flush" in low:
            label = "memtable flush"
            break
        if "worker_tick" in low:
            inner = short(s["frames"][i - 1]) if i > 0 else "(self)"
            label = "worker_tick > " + inner
            break
    tasks[label] += 1
for k, v in tasks.most_common(8):
    print(f"  {100 * v / total:5.1f}%  {k}")

print("\nHottest leaf symbols:")
leaf = collections.Counter((re.sub(r"\d+$", "", s["comm"]), short(s["frames"][0]) if s["frames"] else "?") for s in samples)
for (comm, sym), v in leaf.most_common(20):
    print(f"  {100 * v / total:5.1f}%  {comm:16} {sym}")
EOF
