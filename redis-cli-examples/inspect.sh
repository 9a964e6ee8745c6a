#!/usr/bin/env bash
# inspect.sh: look at a queue without consuming it: DELAYCARD, DELAYRANGE,
# DELAYSCORE and DELAYINFO.
#
#   DELAYD_PORT=6379 ./inspect.sh
#
# Env: DELAYD_HOST, DELAYD_PORT, QUEUE (inspect-demo), REDIS_CLI.
set -euo pipefail
HOST=${DELAYD_HOST:-127.0.0.1}
PORT=${DELAYD_PORT:-6379}
QUEUE=${QUEUE:-inspect-demo}
CLI=${REDIS_CLI:-redis-cli}
run() {
    echo "> $*"
    "$CLI" -h "$HOST" -p "$PORT" "$@"
}

echo "# Some jobs: one already due, three in the future."
run DELAYADD "$QUEUE" 0 now:a 30000 later:b 60000 later:c 90000 later:d

echo "# How many jobs the queue holds (leased ones included):"
run DELAYCARD "$QUEUE"

echo "# The next two jobs to come due, with their due times (Unix ms):"
run DELAYRANGE "$QUEUE" 0 1 WITHSCORES

echo "# The last one (negative indexes count from the end, as in ZRANGE):"
run DELAYRANGE "$QUEUE" -1 -1

echo "# When later:c is due:"
run DELAYSCORE "$QUEUE" later:c

echo "# Backlog figures: pending, ready (due, not yet taken), leased, next-due-ms,"
echo "# oldest-ready-age-ms (consumer lag) and counters. As a RESP3 map (-3):"
"$CLI" -h "$HOST" -p "$PORT" -3 --no-raw DELAYINFO "$QUEUE" | sed 's/^/  /'

echo "# Clean up."
run DEL "$QUEUE"
