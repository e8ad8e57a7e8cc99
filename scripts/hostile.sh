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
SHARED_OPTS="--only --brokers --broker-extra"

die() { echo "hostile.sh: $*" >&2; exit 2; }
# shellcheck source=SCRIPTDIR/lib.sh
source "$ROOT/scripts/lib.sh"

while [[ $# -gt 0 ]]; do
    shared_option "$@"
    [[ $OPT_WORDS -gt 0 ]] || die "unknown option $1 (see --help)"
    shift "$OPT_WORDS"
done
IFS=, read -r -a ATTACKS <<<"$ONLY"
for a in "${ATTACKS[@]}"; do
    [[ ",$ALL_ATTACKS," == *",$a,"* ]] || die "unknown attack $a ($ALL_ATTACKS)"
done
parse_brokers
check_tools
build_binaries

start_run hostile

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
        start_broker "$BROKER_CPU" "$out.log" "${cmd[@]}"
        if ! wait_listening "$port"; then
            start_failed "$out" "$broker did not start listening" "the broker did not start"
            continue
        fi
        run_tool "$out" 150 attack --kind "$attack" --host 127.0.0.1 --port "$port"
        note_died "$out" "$broker" "$attack"
        stop_broker
        python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("   " + (r["notes"][-1] if r.get("notes") else r.get("error","?")))' \
            "$out.json" >&2 2>/dev/null || true
    done
done

run_header
line="ringmq: --shards 2${BROKER_EXTRA:+ $BROKER_EXTRA}"
if [[ ",$BROKERS," == *",mosquitto,"* ]]; then
    line+="; Mosquitto: $(mosquitto_version), listener + allow_anonymous true"
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
