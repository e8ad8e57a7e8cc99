#!/usr/bin/env bash
# stallprobe.sh: the worst delay of a cross-shard delivery while both cores
# are saturated.
#
# Starts ringmq with two shards (CPUs 0-1; there is no stall guard or
# heartbeat of any kind), saturates both shards with a max-rate QoS 0
# load, and meanwhile runs a probe: one publisher and one subscriber on
# different shards at a fixed rate, whose end-to-end latency distribution
# (p50 / p99 / p999 / max, lost) is the figure. A lost wake-up shows as a
# max latency far above the rest. Every process is started here and
# stopped by its own PID; every step is bounded in time.
#
# Usage: scripts/stallprobe.sh [--secs N] [--rate R] [--broker 'CMD {PORT}'] [--no-build]
#   --secs N      probe duration (default 60; issue 11 asks for 600)
#   --rate R      probe messages per second (default 1000)
#   --broker CMD  another broker command line ({PORT} is replaced; it must
#                 run two shards on CPUs 0-1 itself), e.g. an older build
# Needs python3 (to pick client ids that land on different shards).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
SECS=60
RATE=1000
BROKER=""
BUILD=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --secs) SECS="$2"; shift 2 ;;
        --rate) RATE="$2"; shift 2 ;;
        --broker) BROKER="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "stallprobe.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
if [[ $BUILD == 1 ]]; then
    (cd "$ROOT" && cargo build --release -q -p ringmq --bin ringmq -p ringmq-bench)
fi

# A client-id prefix whose probe publisher and subscriber land on
# different shards of two (the broker's FNV-1a owner hash).
PREFIX="$(python3 - <<'EOF'
def owner(s):
    h = 0xcbf29ce484222325
    for b in s.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h % 2
for i in range(100):
    p = f"probe{i}"
    if owner(f"{p}-pub-0") != owner(f"{p}-sub-0"):
        print(p)
        break
EOF
)"

PORT=$((20000 + RANDOM % 12000))
TMP="$(mktemp -d /tmp/ringmq-stallprobe.XXXXXX)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    sleep 1
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    [[ -n "${KEEP:-}" ]] || rm -rf "$TMP"
}
trap cleanup EXIT

if [[ -n "$BROKER" ]]; then
    # shellcheck disable=SC2086 # the command line is split on purpose
    taskset -c 0,1 ${BROKER//\{PORT\}/$PORT} >"$TMP/broker.log" 2>&1 &
else
    taskset -c 0,1 "$BIN/ringmq" --listen "127.0.0.1:$PORT" --shards 2 \
        --log warn >"$TMP/broker.log" 2>&1 &
fi
PIDS+=($!)
for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
done

# Both cores busy: a max-rate QoS 0 load over four topics.
timeout $((SECS + 30)) "$BIN/ringmq-bench" pubsub --port "$PORT" -P 4 -S 4 -T 4 \
    --rate max --duration-secs $((SECS + 5)) --client-prefix load --quiet --json \
    >"$TMP/load.json" 2>"$TMP/load.err" &
PIDS+=($!)
sleep 2

timeout $((SECS + 30)) "$BIN/ringmq-bench" pubsub --port "$PORT" -P 1 -S 1 -T 1 \
    --rate "$RATE" --duration-secs "$SECS" --client-prefix "$PREFIX" --quiet --json \
    --topic-prefix probe/t >"$TMP/probe.json" 2>"$TMP/probe.err" || {
    echo "stallprobe.sh: probe failed: $(tail -1 "$TMP/probe.err")" >&2; exit 1; }

python3 - "$TMP/probe.json" "$SECS" "$RATE" "${BROKER:-ringmq --shards 2}" "$(lscpu | sed -n 's/^Model name: *//p' | head -1)" <<'EOF'
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
secs, rate, broker, cpu = sys.argv[2:6]
print(f"stall probe: {secs} s at {rate} msg/s, publisher and subscriber on different shards, "
      f"both cores saturated, {broker} ({cpu})")
print("| figure | value |")
print("|---|---:|")
for k in ["delivered_per_s", "lost", "duplicates", "latency_p50_us", "latency_p99_us",
          "latency_p999_us", "latency_max_us"]:
    if k in r:
        print(f"| {k} | {r[k]} |")
EOF
