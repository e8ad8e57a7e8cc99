#!/usr/bin/env bash
# halfopen.sh: a true half-open test. Clients connect from inside a network
# namespace over a veth pair, then their side of the link goes down: no FIN
# and no RST ever reach the broker, exactly like a device that lost power
# or coverage. Only the broker's keep-alive can notice. ringmq-bench
# keepalive --half-open measures, for every client, when its will reached a
# watcher outside the namespace (the broker's close cannot be seen by the
# cut-off client, so the will is the proof the broker noticed).
#
# Needs root (ip netns, veth, setns). Addresses used, inside the pair only:
# 10.213.77.1/30 (host side, the broker listens there) and 10.213.77.2/30
# (client side). The namespace and the veth pair are removed on exit, and
# the broker is stopped by its PID. Bounded in time.
#
# Usage:
#   scripts/halfopen.sh [options] [extra ringmq-bench keepalive args...]
# Options:
#   -n N              clients (default 200)
#   -k SECS           Keep Alive (default 2)
#   --mqtt-version V  3.1.1 or 5 (default 3.1.1)
#   --broker 'CMD'    broker command; {ADDR} and {PORT} are replaced
#                     (default: ringmq of this checkout, one shard)
#   --broker-cpu N    CPU for the broker (default 0)
#   --tool-cpu N      CPU for ringmq-bench (default 1)
#   --no-build        use the binaries already built
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/release"

CLIENTS=200
KEEPALIVE=2
VERSION=3.1.1
BROKER_CMD=""
BROKER_CPU=0
TOOL_CPU=1
BUILD=1
HOST_ADDR=10.213.77.1
CLIENT_ADDR=10.213.77.2

die() { echo "halfopen.sh: $*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        -n) CLIENTS="$2"; shift 2 ;;
        -k) KEEPALIVE="$2"; shift 2 ;;
        --mqtt-version) VERSION="$2"; shift 2 ;;
        --broker) BROKER_CMD="$2"; shift 2 ;;
        --broker-cpu) BROKER_CPU="$2"; shift 2 ;;
        --tool-cpu) TOOL_CPU="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) break ;;
    esac
done
EXTRA=("$@")

# shellcheck source=SCRIPTDIR/lib.sh
source "$ROOT/scripts/lib.sh"
check_netns
command -v taskset >/dev/null || die "taskset (util-linux) is needed"

if [[ $BUILD -eq 1 ]]; then
    echo "building ringmq and ringmq-bench (release, $TARGET_DIR)..." >&2
    (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET_DIR" timeout 1800 \
        cargo build --release -q -p ringmq --bin ringmq -p ringmq-bench) \
        || die "build failed"
fi
[[ -x "$BIN/ringmq-bench" ]] || die "no ringmq-bench in $BIN (drop --no-build)"
if [[ -z "$BROKER_CMD" ]]; then
    [[ -x "$BIN/ringmq" ]] || die "no ringmq in $BIN (drop --no-build)"
    BROKER_CMD="$BIN/ringmq --listen {ADDR}:{PORT} --shards 1 --log warn"
fi

# Names unique to this run (interface names: at most 15 bytes).
ID="$$"
NS="rmqho$ID"
VETH_HOST="rmqh$ID"
VETH_CLIENT="rmqc$ID"
BROKER_PID=""

trap 'stop_broker; drop_link' EXIT
trap 'exit 130' INT TERM

make_link

# Below Linux's default ephemeral range (32768-60999).
PORT=$((20000 + RANDOM % 12000))
cmd="${BROKER_CMD//\{ADDR\}/$HOST_ADDR}"
cmd="${cmd//\{PORT\}/$PORT}"
echo "broker: $cmd (CPU $BROKER_CPU)" >&2
# shellcheck disable=SC2086 # the command line is meant to be split
start_broker "$BROKER_CPU" "/tmp/halfopen-broker-$ID.log" $cmd

# Reach the broker from inside the namespace.
if ! wait_listening "$PORT" "$HOST_ADDR" "$NS"; then
    kill -0 "$BROKER_PID" 2>/dev/null || die "the broker exited: $(tail -3 "/tmp/halfopen-broker-$ID.log")"
    die "the broker is not reachable at $HOST_ADDR:$PORT from $NS"
fi

# Once every client has its CONNACK, the clients' side of the link goes
# down: nothing they or the broker send crosses it any more.
CUT="ip netns exec $NS ip link set dev $VETH_CLIENT down"
echo "clients: $CLIENTS in $NS, Keep Alive $KEEPALIVE s, then: $CUT" >&2
timeout --kill-after=10 $((KEEPALIVE * 3 + 120)) taskset -c "$TOOL_CPU" "$BIN/ringmq-bench" keepalive \
    --host "$HOST_ADDR" --port "$PORT" --mqtt-version "$VERSION" \
    -n "$CLIENTS" -k "$KEEPALIVE" --half-open --client-netns "$NS" \
    --after-connect "$CUT" --quiet "${EXTRA[@]}"
kill -0 "$BROKER_PID" 2>/dev/null || echo "warning: the broker exited during the run" >&2
rm -f "/tmp/halfopen-broker-$ID.log"
