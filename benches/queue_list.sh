#!/usr/bin/env bash
# The HTTP API's queue list (GET /api/queues) at a million queues, and
# whether other clients wait while it runs.
#
# Starts delayd on free loopback ports (RESP and HTTP, --appendfsync
# everysec, members in memory: --horizon-ms 1 day), creates --queues queues
# q:0 .. q:N-1 with one member each (DELAYADD q:I 3600000 m, through
# `redis-cli --pipe`), then:
#   1. times `curl` of pages of the list (--repeat times each; median and
#      max): the first page by name, a deep offset, a deep cursor (after=),
#      globs with and without a literal prefix, and the count sorts;
#   2. measures other clients' latency with nothing else running, then
#      while sort=pending pages are fetched back to back: PING through
#      `redis-cli --latency` (a sample every 10 ms for 5 s) and DELAYCARD
#      through `redis-benchmark -c 1` (back to back).
# One markdown table per part goes to stdout; progress to stderr.
#
# Usage: benches/queue_list.sh [options]
#   --queues N          queues to create (default 1000000)
#   --repeat N          fetches of each page (default 5)
#   --no-build          do not run `cargo build --release` first
#   --delayd-flags "F"  extra flags for delayd
# Environment: DELAYD_BIN (default target/release/delayd), REDIS_CLI,
# REDIS_BENCHMARK.

set -euo pipefail

QUEUES=1000000
REPEAT=5
BUILD=1
DELAYD_FLAGS=""

usage() { sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; }

while [ $# -gt 0 ]; do
    case "$1" in
    --queues) QUEUES=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --delayd-flags) DELAYD_FLAGS=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DELAYD_BIN=${DELAYD_BIN:-$ROOT/target/release/delayd}
REDIS_CLI=${REDIS_CLI:-redis-cli}
REDIS_BENCHMARK=${REDIS_BENCHMARK:-redis-benchmark}
HOST=127.0.0.1

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in "$REDIS_CLI" "$REDIS_BENCHMARK" curl python3; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
if [ "$BUILD" = 1 ]; then
    log "building delayd (cargo build --release)"
    (cd "$ROOT" && cargo build --release --bin delayd >&2) || die "build failed"
fi
[ -x "$DELAYD_BIN" ] || die "$DELAYD_BIN missing: run cargo build --release"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/delayd-queue-list.XXXXXX")
PID=""
LOOP_PID=""

cleanup() {
    if [ -n "$LOOP_PID" ]; then kill "$LOOP_PID" 2>/dev/null || true; wait "$LOOP_PID" 2>/dev/null || true; fi
    if [ -n "$PID" ]; then
        kill "$PID" 2>/dev/null || true
        # Bounded: a server that ignores SIGTERM for 10 s is killed.
        for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
PORT=$(free_port)
HTTP=$(free_port)
# shellcheck disable=SC2086
"$DELAYD_BIN" --port "$PORT" --bind "$HOST" --http-port "$HTTP" --dir "$WORK/data" \
    --appendfsync everysec --horizon-ms 86400000 $DELAYD_FLAGS 2>"$WORK/delayd.log" &
PID=$!
for _ in $(seq 100); do
    [ "$(timeout 5 "$REDIS_CLI" -h "$HOST" -p "$PORT" PING 2>/dev/null)" = PONG ] && break
    kill -0 "$PID" 2>/dev/null || { cat "$WORK/delayd.log" >&2; die "delayd died at startup"; }
    sleep 0.1
done
API="http://$HOST:$HTTP/api"

log "creating $QUEUES queues"
start=$(date +%s.%N)
python3 - "$QUEUES" <<'EOF' | timeout 1200 "$REDIS_CLI" -h "$HOST" -p "$PORT" --pipe >"$WORK/pipe.out"
import sys
n, out = int(sys.argv[1]), sys.stdout.buffer
for i in range(n):
    q = b"q:%d" % i
    out.write(b"*4\r\n$8\r\nDELAYADD\r\n$%d\r\n%s\r\n$7\r\n3600000\r\n$1\r\nm\r\n" % (len(q), q))
EOF
load_s=$(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')")
grep -q "errors: 0, replies: $QUEUES" "$WORK/pipe.out" || { cat "$WORK/pipe.out" >&2; die "the load failed"; }
have=$(curl -s "$API/overview" | python3 -c 'import json, sys; print(json.load(sys.stdin)["queues"])')
[ "$have" = "$QUEUES" ] || die "$have queues, not $QUEUES"
rss_mb=$(awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$PID/status")
log "loaded in ${load_s}s; RSS ${rss_mb} MB"

# Fetches a page --repeat times: "median max" of the times (ms), and the
# last answer's status, total and row count.
fetch() { # query
    local i out times=()
    for i in $(seq "$REPEAT"); do
        out=$(curl -s -o "$WORK/page.json" -w '%{http_code} %{time_total}' "$API/queues?$1")
        times+=("${out#* }")
    done
    python3 - "${out%% *}" "$WORK/page.json" "${times[@]}" <<'EOF'
import json, statistics, sys
status, page, times = sys.argv[1], sys.argv[2], [float(t) * 1000 for t in sys.argv[3:]]
try:
    p = json.load(open(page))
    what = f"{p['total']} / {len(p['queues'])}" if status == "200" else p.get("error", "?")[:40]
except Exception as e:
    what = f"? ({e})"
print(f"{statistics.median(times):.1f} | {max(times):.1f} | {status} | {what} |")
EOF
}

DEEP=$((QUEUES * 9 / 10))
declare -a CASES=(
    "first page by name|limit=50"
    "first page by name, desc|limit=50&order=desc"
    "deep offset ($DEEP)|offset=$DEEP&limit=50"
    "deep cursor (after=q:$DEEP)|after=q:$DEEP&limit=50"
    "prefix glob q:12345*|match=q:12345*&limit=50"
    "prefix glob q:1* (1/9 of the names)|match=q:1*&limit=50"
    "glob without a prefix *999|match=*999&limit=50"
    "sort=pending desc|sort=pending&order=desc&limit=50"
    "sort=dead_lettered desc|sort=dead_lettered&order=desc&limit=50"
    "sort=pending desc, offset $DEEP|sort=pending&order=desc&offset=$DEEP&limit=50"
)

log "timing pages ($REPEAT fetches each)"
TABLE1="| page (\`GET /api/queues?…\`) | median ms | max ms | status | total / rows |
|---|---|---|---|---|"
for c in "${CASES[@]}"; do
    name=${c%%|*}
    query=${c#*|}
    TABLE1+=$'\n'"| $name: \`$query\` | $(fetch "$query")"
done

# Other clients' latency: PING every 10 ms (redis-cli --latency, min / avg /
# max over 5 s) and DELAYCARD back to back on one connection
# (redis-benchmark: p50 / p99 / max).
probe() {
    local ping bench
    ping=$(timeout 30 "$REDIS_CLI" -h "$HOST" -p "$PORT" --latency -i 5 --raw)
    # Empty when 20,000 DELAYCARDs take more than 60 s (a stalled server).
    bench=$(timeout 60 "$REDIS_BENCHMARK" -h "$HOST" -p "$PORT" -c 1 -n 20000 --csv DELAYCARD q:1 | tail -1) || bench=""
    python3 - "$ping" "$bench" <<'EOF'
import csv, sys
lo, hi, avg, n = sys.argv[1].split()
ping = f"{lo} / {float(avg):.2f} / {hi} ({n} samples)"
try:
    row = next(csv.reader([sys.argv[2]]))
    rps, p50, p99, mx = row[1], row[4], row[6], row[7]
    print(f"{ping} | {float(rps):.0f} | {p50} / {p99} / {mx} |")
except (StopIteration, IndexError, ValueError):
    print(f"{ping} | 20,000 not done in 60 s | - |")
EOF
}

TABLE2="| other clients | PING ms: min / avg / max | DELAYCARD rps | DELAYCARD ms: p50 / p99 / max | sort=pending pages fetched meanwhile |
|---|---|---|---|---|"
log "other clients, nothing else running"
TABLE2+=$'\n'"| idle | $(probe) -- |"
log "other clients, while sort=pending pages are fetched back to back"
(
    while :; do
        curl -s -o /dev/null -w '%{time_total}\n' "$API/queues?sort=pending&order=desc&limit=50"
    done
) >"$WORK/loop.times" &
LOOP_PID=$!
sleep 0.5
during=$(probe)
kill "$LOOP_PID" 2>/dev/null || true
wait "$LOOP_PID" 2>/dev/null || true
LOOP_PID=""
listed=$(python3 -c '
import sys
t = [float(x) for x in open(sys.argv[1]).read().split()]
print(f"{len(t)}, mean {1000 * sum(t) / max(len(t), 1):.0f} ms")' "$WORK/loop.times")
TABLE2+=$'\n'"| during sort=pending listings | $during $listed |"

rss_after=$(awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$PID/status")
echo "delayd $("$DELAYD_BIN" --version 2>/dev/null | head -1), $QUEUES queues of one member each (loaded in ${load_s} s); RSS ${rss_mb} MB after the load, ${rss_after} MB at the end."
echo "$(nproc) CPUs; load average (1/5/15 min) before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?"); ${SECONDS}s."
echo
echo "$TABLE1"
echo
echo "$TABLE2"
