#!/usr/bin/env bash
# producer.sh: schedule jobs on a delay queue with DELAYADD.
#
#   DELAYD_PORT=6379 ./producer.sh
#
# Env: DELAYD_HOST (127.0.0.1), DELAYD_PORT (6379), QUEUE (emails),
#      REDIS_CLI (redis-cli).
set -euo pipefail
HOST=${DELAYD_HOST:-127.0.0.1}
PORT=${DELAYD_PORT:-6379}
QUEUE=${QUEUE:-emails}
CLI=${REDIS_CLI:-redis-cli}

# Prints the command, then redis-cli's reply.
run() {
    echo "> $*"
    "$CLI" -h "$HOST" -p "$PORT" "$@"
}

echo "# Three jobs, due in 1 s, 2 s and 3 s (delays are in milliseconds)."
run DELAYADD "$QUEUE" 1000 welcome:alice 2000 welcome:bob 3000 welcome:carol

echo "# A job due at an absolute Unix time in ms (AT): now + 2.5 s."
# TIME replies seconds and microseconds; the server's clock is the one that counts.
read -r secs usecs < <("$CLI" -h "$HOST" -p "$PORT" TIME | paste -sd' ')
now_ms=$(( secs * 1000 + 10#$usecs / 1000 ))
run DELAYADD "$QUEUE" AT $(( now_ms + 2500 )) digest:weekly

echo "# NX adds only new members: welcome:alice keeps its due time, reminder:dave is added."
run DELAYADD "$QUEUE" NX 60000 welcome:alice 60000 reminder:dave

echo "# Jobs now scheduled on $QUEUE:"
run DELAYCARD "$QUEUE"
