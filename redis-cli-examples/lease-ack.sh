#!/usr/bin/env bash
# lease-ack.sh: at-least-once delivery. DELAYPOP ... LEASE hides a job
# instead of removing it; DELAYACK removes it once it is done. A job that is
# not acknowledged before its lease ends is delivered again.
#
#   DELAYD_PORT=6379 ./lease-ack.sh
#
# Env: DELAYD_HOST, DELAYD_PORT, QUEUE (payments), LEASE_MS (1000), REDIS_CLI.
set -euo pipefail
HOST=${DELAYD_HOST:-127.0.0.1}
PORT=${DELAYD_PORT:-6379}
QUEUE=${QUEUE:-payments}
LEASE_MS=${LEASE_MS:-1000}
CLI=${REDIS_CLI:-redis-cli}
run() {
    echo "> $*"
    "$CLI" -h "$HOST" -p "$PORT" "$@"
}

echo "# A job that is due right away."
run DELAYADD "$QUEUE" 0 charge:42

echo "# Take it with a ${LEASE_MS} ms lease: it stays in the queue, hidden."
run DELAYPOP "$QUEUE" LEASE "$LEASE_MS"
run DELAYCARD "$QUEUE"
echo "# While leased, nobody else gets it (empty reply):"
run DELAYPOP "$QUEUE"

echo "# The worker crashes and never acknowledges. Once the lease ends the job"
echo "# is delivered again (BLOCK waits for that). WITHCOUNTS adds how many times"
echo "# it has been delivered, this time included:"
run DELAYPOP "$QUEUE" LEASE "$LEASE_MS" BLOCK $(( LEASE_MS * 3 )) WITHCOUNTS

echo "# The queue's figures while the job is leased again (expired-leases counts"
echo "# the lease that ran out):"
echo "> DELAYINFO $QUEUE"
"$CLI" -h "$HOST" -p "$PORT" DELAYINFO "$QUEUE" | paste - -

echo "# This time the worker finishes and acknowledges: the job is gone."
run DELAYACK "$QUEUE" charge:42
run DELAYCARD "$QUEUE"

