#!/usr/bin/env bash
# figures.sh: the measurements behind the README's broker figures, in one
# run: every scenario of ../shared/TARGETS.md through scripts/compare.sh
# (broker on CPU 0, ringmq-bench on CPU 1, loopback only, bounded in time).
#
# Usage: scripts/figures.sh [--only LIST]   (default: every installed broker)
# Prints one markdown table per scenario.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ONLY=()
if [ "${1:-}" = "--only" ]; then ONLY=(--only "$2"); shift 2; fi
run() { echo; echo "### $*"; scripts/compare.sh "${ONLY[@]}" "$@"; }

run pubsub --duration-secs 10
run pubsub --qos 1 --inflight 64 --duration-secs 10
run pubsub -P 50 -S 50 -T 50 --qos 1 --rate 1000 --duration-secs 10
run conn -n 5000
run idle -n 10000 --keepalive 60 --hold-secs 65
run keepalive -n 200 -k 2
run takeover -n 200 --mqtt-version 5
