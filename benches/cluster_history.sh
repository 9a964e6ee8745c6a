#!/usr/bin/env bash
# The long run of the cluster history checker (tests/cluster_history.rs,
# docs/cluster.md §9): three nodes of the debug binary under producers and
# leasing consumers, with at least --kills kill -9s of the node leading the
# most slots (each restarted on its data ~2 s later), one SIGSTOP of a
# leader for ~3 s, one node restarted on a wiped directory and one 5 s
# partition of a leader (in a network namespace the test makes; needs
# root), over at least --secs of load; then a drain and the offline check.
# Prints the summary (ops by outcome, faults, failover times fault -> first
# acknowledged write, firing lateness, violations) and exits non-zero on
# any violation.
#
# Usage: benches/cluster_history.sh [--secs N] [--kills N]
# Defaults: 180 s, 12 kills (the CI run in `cargo test` is 45 s, 3 kills).

set -euo pipefail

SECS=180
KILLS=12
while [ $# -gt 0 ]; do
  case "$1" in
    --secs) SECS="$2"; shift 2 ;;
    --kills) KILLS="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
if [ "$KILLS" -lt 10 ]; then
  echo "the long run wants at least 10 leader kills (got --kills $KILLS)" >&2
  exit 2
fi

cd "$(dirname "$0")/.."
DELAYD_HISTORY_SECS="$SECS" DELAYD_HISTORY_KILLS="$KILLS" \
  cargo test --test cluster_history -- --nocapture --test-threads 1 2>&1 \
  | grep -v -e '^\s*[0-9]*: ' -e '^\s*at '
# (pipefail: the test's status is the script's)
