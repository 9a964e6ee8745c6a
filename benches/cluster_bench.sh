#!/usr/bin/env bash
# DELAYADD throughput and latency of a 3-node delayd cluster beside one
# delayd node and beside Redis, all with appendfsync always, in one run
# (issue 12's "Measure"). All processes share this machine's cores: a
# cluster here runs three nodes' work on them.
#
#   benches/cluster_bench.sh            # N=100000 requests, C=50 clients
#
# Prints one line per run: target, pipeline, rps, p50 and p99 (ms).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${DELAYD_BIN:-target/release/delayd}
N=${N:-100000}
C=${C:-50}
FSYNC=${FSYNC:-always}
[ -x "$BIN" ] || cargo build --release
tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    DIR="$tmp/cluster" PORT=7410 scripts/cluster.sh stop >/dev/null 2>&1 || true
    sleep 0.5
    rm -rf "$tmp"
}
trap cleanup EXIT

redis-server --port 7400 --save '' --appendonly yes --appendfsync "$FSYNC" --dir "$tmp" \
    --daemonize no >"$tmp/redis.log" 2>&1 &
pids+=($!)
"$BIN" --port 7401 --dir "$tmp/single" --appendfsync "$FSYNC" >"$tmp/single.log" 2>&1 &
pids+=($!)
DIR="$tmp/cluster" PORT=7410 APPENDFSYNC="$FSYNC" DELAYD_BIN="$BIN" scripts/cluster.sh start >/dev/null
for p in 7400 7401; do
    until redis-cli -p $p PING >/dev/null 2>&1; do sleep 0.1; done
done

# rps, p50 and p99 from redis-benchmark's CSV line.
run() {
    local name=$1 pipeline=$2
    shift 2
    local line
    line=$(redis-benchmark -n "$N" -c "$C" -P "$pipeline" -r 1000000 --csv "$@" | tail -1)
    IFS=, read -r _ rps _ _ p50 _ p99 _ <<<"${line//\"/}"
    printf '%-16s P%-3s %10s rps  p50 %6s ms  p99 %6s ms\n' "$name" "$pipeline" "$rps" "$p50" "$p99"
}

echo "appendfsync $FSYNC, $C clients, $N requests, delays of 30 minutes"
for P in 1 16; do
    run "redis ZADD" "$P" -p 7400 ZADD '{tag}q' 1800000 'm:__rand_int__'
    run "delayd, 1 node" "$P" -p 7401 DELAYADD '{tag}q' 1800000 'm:__rand_int__'
    run "delayd, 3 nodes" "$P" --cluster -p 7410 DELAYADD '{tag}q' 1800000 'm:__rand_int__'
done
