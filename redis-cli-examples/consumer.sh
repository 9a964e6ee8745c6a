#!/usr/bin/env bash
# consumer.sh: take jobs as they come due, with DELAYPOP ... BLOCK and
# BDELAYPOP. Stops after MAX_JOBS jobs or at the first empty wait, so it
# always ends.
#
#   DELAYD_PORT=6379 ./consumer.sh
#
# Env: DELAYD_HOST, DELAYD_PORT, QUEUE (emails), MAX_JOBS (4),
#      WAIT_MS (5000: how long one pop may block), REDIS_CLI.
set -euo pipefail
HOST=${DELAYD_HOST:-127.0.0.1}
PORT=${DELAYD_PORT:-6379}
QUEUE=${QUEUE:-emails}
MAX_JOBS=${MAX_JOBS:-4}
WAIT_MS=${WAIT_MS:-5000}
CLI=${REDIS_CLI:-redis-cli}
cli() { "$CLI" -h "$HOST" -p "$PORT" "$@"; }

got=0
echo "# DELAYPOP $QUEUE BLOCK $WAIT_MS: wait up to $WAIT_MS ms for the next due job."
while [ "$got" -lt "$MAX_JOBS" ]; do
    job=$(cli DELAYPOP "$QUEUE" BLOCK "$WAIT_MS")
    if [ -z "$job" ]; then
        echo "nothing came due within $WAIT_MS ms"
        break
    fi
    got=$((got + 1))
    echo "job $got: $job"
done

# BDELAYPOP watches several queues at once (timeout in seconds) and replies
# with the queue, the member and its due time (Unix ms).
secs=$(awk "BEGIN { print $WAIT_MS / 1000 }")
echo "# BDELAYPOP $QUEUE $QUEUE:urgent $secs"
reply=$(cli BDELAYPOP "$QUEUE" "$QUEUE:urgent" "$secs" | paste -sd' ')
if [ -n "$reply" ]; then
    echo "bdelaypop: $reply"
else
    echo "bdelaypop: timed out"
fi
echo "consumed $got job(s) with DELAYPOP BLOCK"
