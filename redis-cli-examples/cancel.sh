#!/usr/bin/env bash
# cancel.sh: cancel scheduled jobs with DELAYREM.
#
#   DELAYD_PORT=6379 ./cancel.sh
#
# Env: DELAYD_HOST, DELAYD_PORT, QUEUE (reminders), REDIS_CLI.
set -euo pipefail
HOST=${DELAYD_HOST:-127.0.0.1}
PORT=${DELAYD_PORT:-6379}
QUEUE=${QUEUE:-reminders}
CLI=${REDIS_CLI:-redis-cli}
run() {
    echo "> $*"
    "$CLI" -h "$HOST" -p "$PORT" "$@"
}

echo "# Schedule two reminders, in 10 and 20 minutes."
run DELAYADD "$QUEUE" 600000 order:1001 1200000 order:1002
echo "# order:1001 is due at (Unix ms):"
run DELAYSCORE "$QUEUE" order:1001

echo "# The order was paid: cancel its reminder. DELAYREM replies how many it removed."
run DELAYREM "$QUEUE" order:1001
echo "# Cancelling again removes nothing:"
run DELAYREM "$QUEUE" order:1001
echo "# A cancelled member has no due time (empty reply):"
run DELAYSCORE "$QUEUE" order:1001

echo "# Reschedule instead of cancel: DELAYADD XX moves an existing job (CH counts it)."
run DELAYADD "$QUEUE" XX CH 1800000 order:1002
run DELAYCARD "$QUEUE"

echo "# Clean up."
run DEL "$QUEUE"
