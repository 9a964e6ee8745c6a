#!/usr/bin/env bash
# A local delayd cluster for trying it out, as Redis's utils/create-cluster:
#
#   scripts/cluster.sh start    # builds if needed, starts 3 nodes on 7000-7002
#   redis-cli -c -p 7000        # any node; -c follows MOVED
#   scripts/cluster.sh stop     # stops them (data kept)
#   scripts/cluster.sh clean    # removes the data and logs
#
# Settings (environment): PORT (first client port, 7000), NODES (3), DIR
# (./cluster-data), DELAYD_BIN (target/release/delayd, built if missing),
# APPENDFSYNC (everysec). Node i listens on PORT+i-1, its cluster bus on
# that port + 10000, and keeps its data in DIR/node-i.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-7000}
NODES=${NODES:-3}
DIR=${DIR:-cluster-data}
BIN=${DELAYD_BIN:-target/release/delayd}
APPENDFSYNC=${APPENDFSYNC:-everysec}

spec() {
    local s="" i
    for i in $(seq 1 "$NODES"); do
        s+="${s:+,}$i=127.0.0.1:$((PORT + i - 1))"
    done
    echo "$s"
}

# Waits until every node answers CLUSTER INFO with cluster_state:ok.
wait_ok() {
    local i deadline=$((SECONDS + 60))
    if ! command -v redis-cli >/dev/null; then
        sleep 5
        return
    fi
    for i in $(seq 1 "$NODES"); do
        until redis-cli -p $((PORT + i - 1)) CLUSTER INFO 2>/dev/null | grep -q 'cluster_state:ok'; do
            if ((SECONDS > deadline)); then
                echo "node $i not ready after 60 s; see $DIR/node-$i.log" >&2
                exit 1
            fi
            sleep 0.2
        done
    done
    # Each node leads its own group soon after the first bootstrapped them.
    until [ "$(redis-cli -p "$PORT" CLUSTER NODES | grep -c master)" -ge "$NODES" ]; do
        if ((SECONDS > deadline)); then
            break
        fi
        sleep 0.2
    done
}

case "${1:-}" in
start)
    [ -x "$BIN" ] || cargo build --release
    mkdir -p "$DIR"
    nodes=$(spec)
    for i in $(seq 1 "$NODES"); do
        "$BIN" --port $((PORT + i - 1)) --dir "$DIR/node-$i" --appendfsync "$APPENDFSYNC" \
            --cluster-nodes "$nodes" --cluster-id "$i" >"$DIR/node-$i.log" 2>&1 &
        echo $! >"$DIR/node-$i.pid"
    done
    wait_ok
    echo "cluster of $NODES nodes ready: redis-cli -c -p $PORT"
    ;;
stop)
    for i in $(seq 1 "$NODES"); do
        f="$DIR/node-$i.pid"
        if [ -f "$f" ]; then
            kill "$(cat "$f")" 2>/dev/null || true
            rm -f "$f"
        fi
    done
    ;;
clean)
    "$0" stop
    rm -rf "$DIR"
    ;;
*)
    echo "usage: $0 start|stop|clean" >&2
    exit 2
    ;;
esac
