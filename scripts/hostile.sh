#!/usr/bin/env bash
# hostile.sh: every hostile client pattern of `ringmq-bench attack` against
# a FRESH ringmq (this checkout, --shards 2) and a FRESH Mosquitto (a
# minimal config: a 127.0.0.1 listener, allow_anonymous true), one broker
# process per attack, and one table of what each attack cost each broker:
# its resident memory after the attack and at its peak (MiB over the
# before reading), the canaries' QoS 1 round trips during it (p99 / max,
# lost rounds), and whether it refused the attack (and how).
#
# Attacks (see crates/bench/src/scenario/attack.rs): never-read,
# deep-filter, slow-subscriber, big-announce, absent-sessions. Each is
# bounded (at most ~40 s) and runs on loopback with fewer than 1,100
# connections at once.
#
# The broker is pinned to --broker-cpu (default 0; ringmq's two shards
# share it) and the tool to --tool-cpu (default 1), as in compare.sh. Each
# broker is stopped by its own PID (SIGTERM, then SIGKILL after 5 s); a
# broker that died during an attack is reported as such. On a 2-vCPU
# machine that others use, the figures are noisy: read them as orders of
# magnitude.
#
# Usage:
#   scripts/hostile.sh [options]
# Options:
#   --only LIST              comma-separated attacks to run (default: all)
#   --brokers LIST           ringmq,mosquitto (default: both)
#   --broker-extra 'FLAGS'   extra flags for ringmq (e.g. '--max-topic-levels 128')
#   --broker-cpu LIST        CPUs for the broker (default 0)
#   --tool-cpu N             CPU for ringmq-bench (default 1)
#   --label TEXT             printed in the header (e.g. the commit of an export)
#   --keep DIR               keep every run's JSON and broker log in DIR
#   --no-build               use the binaries already built
# Example:
#   CARGO_TARGET_DIR=/tmp/t scripts/hostile.sh --only never-read,deep-filter
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/release"

ALL_ATTACKS="never-read,deep-filter,slow-subscriber,big-announce,absent-sessions"
ONLY="$ALL_ATTACKS"
BROKERS="ringmq,mosquitto"
BROKER_EXTRA=""
BROKER_CPU=0
TOOL_CPU=1
LABEL=""
KEEP=""
BUILD=1

die() { echo "hostile.sh: $*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --only) [[ $# -ge 2 ]] || die "--only needs a list"; ONLY="$2"; shift 2 ;;
        --brokers) [[ $# -ge 2 ]] || die "--brokers needs a list"; BROKERS="$2"; shift 2 ;;
        --broker-extra) [[ $# -ge 2 ]] || die "--broker-extra needs flags"; BROKER_EXTRA="$2"; shift 2 ;;
        --broker-cpu) BROKER_CPU="$2"; shift 2 ;;
        --tool-cpu) TOOL_CPU="$2"; shift 2 ;;
        --label) LABEL="$2"; shift 2 ;;
        --keep) KEEP="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
IFS=, read -r -a ATTACKS <<<"$ONLY"
for a in "${ATTACKS[@]}"; do
    [[ ",$ALL_ATTACKS," == *",$a,"* ]] || die "unknown attack $a ($ALL_ATTACKS)"
done
IFS=, read -r -a BROKER_LIST <<<"$BROKERS"
for b in "${BROKER_LIST[@]}"; do
    case "$b" in ringmq|mosquitto) ;; *) die "unknown broker $b (ringmq, mosquitto)" ;; esac
done
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
check_tools
build_binaries

TMP="$(mktemp -d /tmp/ringmq-hostile.XXXXXX)"
BROKER_PID=""
stop_broker() {
    [[ -n "$BROKER_PID" ]] || return 0
    kill -TERM "$BROKER_PID" 2>/dev/null || true
    local deadline=$((SECONDS + 5))
    while kill -0 "$BROKER_PID" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.05; done
    kill -KILL "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=""
}
cleanup() {
    stop_broker
    if [[ -n "$KEEP" ]]; then
        mkdir -p "$KEEP" && cp -r "$TMP"/. "$KEEP"/ 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A loopback port nobody listens on, below Linux's default ephemeral range
# (32768-60999) so that no client socket of an earlier run can hold it.
free_port() {
    local port
    for _ in $(seq 1 200); do
        port=$((20000 + RANDOM % 12000))
        if ! ss -Htln "sport = :$port" 2>/dev/null | grep -q .; then
            echo "$port"; return 0
        fi
    done
    return 1
}

# Wait (at most 10 s) until something accepts on 127.0.0.1:$1.
wait_listening() {
    local deadline=$((SECONDS + 10))
    while ((SECONDS < deadline)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        kill -0 "$BROKER_PID" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

for attack in "${ATTACKS[@]}"; do
    for broker in "${BROKER_LIST[@]}"; do
        port="$(free_port)" || die "no free port"
        out="$TMP/$attack.$broker"
        case "$broker" in
            ringmq)
                # shellcheck disable=SC2206 # the extra flags are meant to be split
                cmd=("$BIN/ringmq" --listen "127.0.0.1:$port" --shards 2 --log warn $BROKER_EXTRA) ;;
            mosquitto)
                printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" >"$out.conf"
                cmd=(mosquitto -c "$out.conf") ;;
        esac
        echo "== $attack vs $broker on 127.0.0.1:$port (CPU $BROKER_CPU): ${cmd[*]}" >&2
        taskset -c "$BROKER_CPU" "${cmd[@]}" >"$out.log" 2>&1 &
        BROKER_PID=$!
        if ! wait_listening "$port"; then
            echo "   $broker did not start listening; its log:" >&2
            tail -5 "$out.log" >&2 || true
            echo '{"error":"the broker did not start"}' >"$out.json"
            stop_broker
            continue
        fi
        if ! timeout --kill-after=10 150 taskset -c "$TOOL_CPU" "$BIN/ringmq-bench" attack \
            --kind "$attack" --host 127.0.0.1 --port "$port" --broker-pid "$BROKER_PID" \
            --quiet --json >"$out.json" 2>"$out.err"; then
            why="$(tail -1 "$out.err" | tr '"\\' "''")"
            echo "{\"error\":\"ringmq-bench failed: $why\"}" >"$out.json"
        fi
        if ! kill -0 "$BROKER_PID" 2>/dev/null; then
            echo "   $broker exited during $attack; its log:" >&2
            tail -3 "$out.log" >&2 || true
            echo "died" >"$out.died"
        fi
        stop_broker
        python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("   " + (r["notes"][-1] if r.get("notes") else r.get("error","?")))' \
            "$out.json" >&2 2>/dev/null || true
    done
done

echo
echo "hostile.sh: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)), broker on CPU $BROKER_CPU, tool on CPU $TOOL_CPU${LABEL:+, $LABEL}"
line="ringmq: --shards 2${BROKER_EXTRA:+ $BROKER_EXTRA}"
if [[ ",$BROKERS," == *",mosquitto,"* ]]; then
    line+="; Mosquitto: $(mosquitto -h 2>/dev/null | sed -n 's/^mosquitto version /v/p' | head -1 || true), listener + allow_anonymous true"
fi
echo "$line"
echo
python3 - "$TMP" "$ONLY" "$BROKERS" <<'EOF'
import json, os, sys
tmp, attacks, brokers = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(",")
names = {"ringmq": "ringmq", "mosquitto": "Mosquitto"}

def cells(attack, broker):
    base = os.path.join(tmp, f"{attack}.{broker}")
    try:
        r = json.load(open(base + ".json"))
    except Exception:
        return ["n/a", "n/a", "no result"]
    died = os.path.exists(base + ".died") or str(r.get("broker_alive", "yes")).startswith("NO")
    if "error" in r:
        return ["DIED" if died else "n/a", "n/a", r["error"]]
    g, p = r.get("rss_growth_mib"), r.get("rss_peak_growth_mib")
    rss = f"{g:+.1f} / {p:+.1f}" if isinstance(g, (int, float)) else str(g)
    if died:
        rss = "DIED " + rss
    p99, mx = r.get("canary_rtt_p99_ms"), r.get("canary_rtt_max_ms")
    lost, rounds = r.get("canary_lost", 0), r.get("canary_rounds", 0)
    if isinstance(p99, (int, float)):
        canary = f"{p99:.2f} / {mx:.2f} ms, lost {lost}/{rounds}"
    else:
        canary = f"none back, lost {lost}/{rounds}"
    return [rss, canary, r.get("refused", "?")]

head = ["attack"]
for b in brokers:
    n = names[b]
    head += [f"{n}: RSS after / peak (MiB)", f"{n}: canary p99 / max", f"{n}: refused?"]
print("| " + " | ".join(head) + " |")
print("|" + "|".join(["---"] + ["---:", "---:", "---"] * len(brokers)) + "|")
for a in attacks:
    row = [a]
    for b in brokers:
        row += cells(a, b)
    print("| " + " | ".join(row) + " |")
print()
print("RSS: the broker's resident memory after the attack (settled 3 s) and at its peak, "
      "minus the reading before it. Canary: QoS 1 publish -> own delivery every 50 ms "
      "from 2 clients (one per ringmq shard), over the attack and the settle time; "
      "lost counts rounds skipped or never delivered back.")
EOF
