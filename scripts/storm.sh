#!/usr/bin/env bash
# storm.sh: a will storm. N clients (default 10,000) with wills connect
# from inside a network namespace over a veth pair; once every one has its
# CONNACK they all send one PINGREQ at the same moment (so the broker sees
# every client's last packet within milliseconds and their keep-alive
# deadlines fall together), then their side of the link goes down: no FIN,
# no RST, exactly like a cell tower losing power. Only the broker's
# keep-alive can notice, for all of them at once. Measured by
# `ringmq-bench keepalive --half-open --sync-ping --canaries 2`:
# - wills expected / received (every one must arrive, at a watcher outside
#   the namespace);
# - time from the first will to the last, and from the earliest deadline
#   to the last will (time to process the storm);
# - each will's lateness against its own deadline (last PINGREQ + 1.5 x
#   Keep Alive): p50 / p99 / max;
# - the canaries' QoS 1 round trips (every 50 ms, outside the namespace,
#   one per ringmq shard) during the storm and before the cut: whether the
#   shards stay responsive while they close and announce 10,000 clients.
# Run against ringmq of this checkout (--shards 2) and Mosquitto, one after
# the other, each in a fresh namespace and a fresh broker process, and
# printed as one table.
#
# Needs root (ip netns, veth, setns). Addresses, inside the pair only:
# 10.213.78.1/30 (host side, the broker listens there) and 10.213.78.2/30
# (client side). The namespace and veth pair are removed after each run
# and on exit; every broker is stopped by its PID. Bounded: each run at
# most 3 x Keep Alive + 180 s. The clients use one process (the open-files
# hard limit is 20,000 per process: keep -n under 15,000).
#
# Usage:
#   scripts/storm.sh [options]
# Options:
#   -n N                     clients (default 10000, at most 15000)
#   -k SECS                  Keep Alive (default 5)
#   --mqtt-version V         3.1.1 or 5 (default 3.1.1)
#   --brokers LIST           ringmq,mosquitto (default both)
#   --broker-extra 'FLAGS'   extra flags for ringmq
#   --broker-cpu LIST        CPUs for the broker (default 0; ringmq's two shards share it)
#   --tool-cpu N             CPU for ringmq-bench (default 1)
#   --label TEXT             printed in the header (e.g. the commit of an export)
#   --keep DIR               keep every run's JSON and broker log in DIR
#   --no-build               use the binaries already built
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/release"

CLIENTS=10000
KEEPALIVE=5
VERSION=3.1.1
BROKERS="ringmq,mosquitto"
BROKER_EXTRA=""
BROKER_CPU=0
TOOL_CPU=1
LABEL=""
KEEP=""
BUILD=1
HOST_ADDR=10.213.78.1
CLIENT_ADDR=10.213.78.2

die() { echo "storm.sh: $*" >&2; exit 2; }
# shellcheck source=SCRIPTDIR/lib.sh
source "$ROOT/scripts/lib.sh"

# --brokers and --broker-extra stay here, not in SHARED_OPTS: storm.sh does
# not check for a missing value.
while [[ $# -gt 0 ]]; do
    case "$1" in
        -n) CLIENTS="$2"; shift 2 ;;
        -k) KEEPALIVE="$2"; shift 2 ;;
        --mqtt-version) VERSION="$2"; shift 2 ;;
        --brokers) BROKERS="$2"; shift 2 ;;
        --broker-extra) BROKER_EXTRA="$2"; shift 2 ;;
        *) shared_option "$@"
           [[ $OPT_WORDS -gt 0 ]] || die "unknown option $1 (see --help)"
           shift "$OPT_WORDS" ;;
    esac
done
[[ "$CLIENTS" =~ ^[0-9]+$ && "$CLIENTS" -ge 1 && "$CLIENTS" -le 15000 ]] \
    || die "-n $CLIENTS: 1 to 15000 (one tool process; the open-files hard limit is 20,000)"
[[ "$KEEPALIVE" =~ ^[0-9]+$ && "$KEEPALIVE" -ge 1 && "$KEEPALIVE" -le 60 ]] || die "-k $KEEPALIVE: 1 to 60"
parse_brokers
check_netns
check_tools
build_binaries

# Names unique to this run (interface names: at most 15 bytes).
ID="$$"
NS="rmqst$ID"
VETH_HOST="rmqsh$ID"
VETH_CLIENT="rmqsc$ID"
start_run storm
trap 'cleanup; drop_link' EXIT

for broker in "${BROKER_LIST[@]}"; do
    out="$TMP/$broker"
    make_link
    # Below Linux's default ephemeral range (32768-60999).
    port=$((20000 + RANDOM % 12000))
    case "$broker" in
        ringmq)
            # shellcheck disable=SC2206 # the extra flags are meant to be split
            cmd=("$BIN/ringmq" --listen "$HOST_ADDR:$port" --shards 2 --log warn $BROKER_EXTRA) ;;
        mosquitto)
            printf 'listener %s %s\nallow_anonymous true\n' "$port" "$HOST_ADDR" >"$out.conf"
            cmd=(mosquitto -c "$out.conf") ;;
    esac
    echo "== storm vs $broker on $HOST_ADDR:$port (CPU $BROKER_CPU): ${cmd[*]}" >&2
    start_broker "$BROKER_CPU" "$out.log" "${cmd[@]}"
    # Reach the broker from inside the namespace.
    if ! wait_listening "$port" "$HOST_ADDR" "$NS"; then
        start_failed "$out" "$broker is not reachable at $HOST_ADDR:$port from $NS" "the broker did not start"
        continue
    fi
    CUT="ip netns exec $NS ip link set dev $VETH_CLIENT down"
    echo "   $CLIENTS clients in $NS, Keep Alive $KEEPALIVE s, one synchronised PINGREQ, then: $CUT" >&2
    run_tool "$out" $((KEEPALIVE * 3 + 180)) keepalive \
        --host "$HOST_ADDR" --port "$port" --mqtt-version "$VERSION" \
        -n "$CLIENTS" -k "$KEEPALIVE" --half-open --client-netns "$NS" --sync-ping \
        --after-connect "$CUT" --canaries 2 --extra-wait-secs 10 --connect-timeout-ms 10000
    note_died "$out" "$broker" "the storm"
    stop_broker
    drop_link
done

run_header
line="$CLIENTS clients with wills (MQTT $VERSION, Keep Alive $KEEPALIVE s) pinged at once, then their link cut (netns veth down); ringmq --shards 2${BROKER_EXTRA:+ $BROKER_EXTRA}"
if [[ ",$BROKERS," == *",mosquitto,"* ]]; then
    line+="; Mosquitto $(mosquitto_version)"
fi
echo "$line"
echo
python3 - "$TMP" "$BROKERS" <<'EOF'
import json, os, sys
tmp, brokers = sys.argv[1], sys.argv[2].split(",")
names = {"ringmq": "ringmq", "mosquitto": "Mosquitto"}
runs = {}
for b in brokers:
    try:
        runs[b] = json.load(open(os.path.join(tmp, b + ".json")))
    except Exception as e:
        runs[b] = {"error": f"no result ({e})"}
    if os.path.exists(os.path.join(tmp, b + ".died")):
        runs[b]["died"] = True

def num(r, k, fmt="{:.1f}"):
    v = r.get(k)
    return fmt.format(v) if isinstance(v, (int, float)) else (str(v) if v is not None else "n/a")

def triple(r, a, b, c):
    return " / ".join(num(r, k) for k in (a, b, c))

def received(r):
    got = sum(r.get(k, 0) for k in ("will_early", "will_on_time", "will_late"))
    return f"{r.get('clients_connected', 'n/a')} / {got}"

def canary(r, key):
    if not isinstance(r.get(f"{key}_rtt_p99_ms"), (int, float)):
        return f"none back, lost {r.get(key + '_lost', 'n/a')}/{r.get(key + '_rounds', 'n/a')}"
    return (f"{r[key + '_rtt_p99_ms']:.2f} / {r[key + '_rtt_max_ms']:.2f}, "
            f"lost {r.get(key + '_lost', 0)}/{r.get(key + '_rounds', 0)}")

rows = [
    ("clients connected", lambda r: num(r, "clients_connected", "{}")),
    ("wills expected / received", received),
    ("wills early (before 1.5 x K)", lambda r: num(r, "will_early", "{}")),
    ("duplicate wills", lambda r: num(r, "will_duplicates", "{}")),
    ("deadlines: earliest to latest (ms)", lambda r: num(r, "deadline_spread_ms")),
    ("first to last will (ms)", lambda r: num(r, "will_first_to_last_ms")),
    ("earliest deadline to last will (ms)", lambda r: num(r, "storm_ms")),
    ("will lateness vs its deadline p50 / p99 / max (ms)",
     lambda r: triple(r, "will_lateness_p50_ms", "will_lateness_p99_ms", "will_lateness_max_ms")),
    ("canary RTT during the storm p99 / max (ms)", lambda r: canary(r, "canary_storm")),
    ("canary RTT before the cut p99 / max (ms)", lambda r: canary(r, "canary_calm")),
    ("broker CPU over the run (% of one core)", lambda r: num(r, "broker_cpu_pct")),
]
print("| figure | " + " | ".join(names[b] for b in brokers) + " |")
print("|---|" + "---:|" * len(brokers))
for label, f in rows:
    cells = []
    for b in brokers:
        r = runs[b]
        if "error" in r:
            cells.append(("DIED: " if r.get("died") else "") + r["error"])
        else:
            cells.append(("DIED " if r.get("died") else "") + f(r))
    print(f"| {label} | " + " | ".join(cells) + " |")
print()
print("Deadline: a client's last PINGREQ + 1.5 x Keep Alive. Storm: from the earliest "
      "deadline to the last will; the canaries' rounds that overlap it count. "
      "Lost canary rounds were skipped or never delivered back.")
EOF
