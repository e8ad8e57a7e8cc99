#!/usr/bin/env bash
# sysmem.sh: memory per idle connection including the kernel's share.
#
# For each broker (ringmq, and Mosquitto when installed, plus any --extra),
# one after the other: start it pinned to CPU 0, read MemAvailable, open N
# idle connections with ringmq-bench (CPU 1) and hold them, read
# MemAvailable again while they are held. The drop per connection covers
# the broker's user memory, its kernel socket and io_uring/epoll state, and
# the tool's own share (the same tool for every broker), so compare the
# rows with each other, not with the broker's RSS alone. Every process is
# started here and stopped by its own PID; every step is bounded in time.
#
# Usage: scripts/sysmem.sh [-n N] [--extra NAME 'CMD {PORT}'] [--no-build]
#   -n N     connections (default 10000; mind the open-file limit)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
N=10000
BUILD=1
NAMES=()
CMDS=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        -n) N="$2"; shift 2 ;;
        --extra) NAMES+=("$2"); CMDS+=("$3"); shift 3 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "sysmem.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
if [[ $BUILD == 1 ]]; then
    (cd "$ROOT" && cargo build --release -q -p ringmq --bin ringmq -p ringmq-bench)
fi
NAMES=(ringmq "${NAMES[@]}")
CMDS=("$BIN/ringmq --listen 127.0.0.1:{PORT} --shards 1 --log warn" "${CMDS[@]}")
TMP="$(mktemp -d /tmp/ringmq-sysmem.XXXXXX)"
if command -v mosquitto >/dev/null; then
    NAMES+=(mosquitto)
    CMDS+=("mosquitto -c $TMP/mosquitto-{PORT}.conf")
fi
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

# MemAvailable in KiB (an integer, as /proc/meminfo gives it).
avail() { awk '/^MemAvailable:/ {print $2}' /proc/meminfo; }

echo "| broker | MemAvailable drop per connection (bytes, tool included, $N connections) |"
echo "|---|---:|"
for i in "${!NAMES[@]}"; do
    PORT=$((20000 + RANDOM % 12000))
    printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_connections -1\n' "$PORT" \
        >"$TMP/mosquitto-$PORT.conf"
    CMD="${CMDS[$i]//\{PORT\}/$PORT}"
    # shellcheck disable=SC2086 # the command line is split on purpose
    taskset -c 0 $CMD >"$TMP/broker.log" 2>&1 &
    BPID=$!
    PIDS+=("$BPID")
    for _ in $(seq 1 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
        sleep 0.1
    done
    sleep 1
    BEFORE="$(avail)"
    taskset -c 1 timeout 120 "$BIN/ringmq-bench" idle --port "$PORT" -n "$N" \
        --keepalive 60 --hold-secs 15 --quiet >"$TMP/tool.out" 2>&1 &
    TPID=$!
    PIDS+=("$TPID")
    # Read the low point while the connections are held.
    LOW="$BEFORE"
    while kill -0 "$TPID" 2>/dev/null; do
        NOW="$(avail)"
        (( NOW < LOW )) && LOW="$NOW"
        sleep 0.5
    done
    wait "$TPID" || true
    kill "$BPID" 2>/dev/null || true
    wait "$BPID" 2>/dev/null || true
    echo "| ${NAMES[$i]} | $(( (BEFORE - LOW) * 1024 / N )) |"
    sleep 2
done
