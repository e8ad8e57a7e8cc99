#!/usr/bin/env bash
# metrics.sh: what --http-listen and a Prometheus-like scraper cost on the
# message path. ringmq (this checkout, --shards 1) runs QoS 0 1 -> 1 at max
# rate (`ringmq-bench pubsub`) with the HTTP listener off, then on with
# /metrics fetched every --scrape-ms (default 1000) by curl for the whole
# run; --runs pairs (default 3), alternating off/on, each on a fresh broker.
#
# The broker is pinned to --broker-cpu (default 0) and the tool to
# --tool-cpu (default 1) with taskset; the scraper runs unpinned. Every
# process is stopped by its own PID. Loopback only; every tool run has a
# time limit (--timeout). On a 2-vCPU machine the figures are noisy: the
# spread between runs of one kind is the noise floor.
#
# Usage:
#   scripts/metrics.sh [options]
# Options:
#   --runs N                 off/on pairs (default 3)
#   --duration-secs S        seconds of publishing per run (default 10)
#   --qos Q                  0 (default) or 1
#   --scrape-ms MS           time between scrapes (default 1000)
#   --broker-extra 'FLAGS'   extra flags for ringmq
#   --broker-cpu LIST        CPUs for the broker (default 0)
#   --tool-cpu N             CPU for ringmq-bench (default 1)
#   --timeout SECS           limit per tool run (default 120)
#   --label TEXT             printed in the header (e.g. the commit)
#   --keep DIR               keep every run's JSON and broker log in DIR
#   --no-build               use the binaries already built
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/release"

RUNS=3
DURATION=10
QOS=0
SCRAPE_MS=1000
BROKERS="ringmq"
BROKER_EXTRA=""
BROKER_CPU=0
TOOL_CPU=1
RUN_TIMEOUT=120
LABEL=""
KEEP=""
BUILD=1
SHARED_OPTS="--broker-extra --timeout"

die() { echo "metrics.sh: $*" >&2; exit 2; }
# shellcheck source=SCRIPTDIR/lib.sh
source "$ROOT/scripts/lib.sh"

while [[ $# -gt 0 ]]; do
    case "$1" in
        --runs) [[ $# -ge 2 ]] || die "--runs needs a number"; RUNS="$2"; shift 2 ;;
        --duration-secs) [[ $# -ge 2 ]] || die "--duration-secs needs a number"; DURATION="$2"; shift 2 ;;
        --qos) [[ $# -ge 2 ]] || die "--qos needs 0 or 1"; QOS="$2"; shift 2 ;;
        --scrape-ms) [[ $# -ge 2 ]] || die "--scrape-ms needs a number"; SCRAPE_MS="$2"; shift 2 ;;
        *)
            shared_option "$@"
            [[ $OPT_WORDS -gt 0 ]] || die "unknown option $1 (see --help)"
            shift "$OPT_WORDS" ;;
    esac
done
[[ "$RUNS" =~ ^[0-9]+$ && "$RUNS" -ge 1 && "$RUNS" -le 20 ]] || die "--runs must be in 1..20"
[[ "$DURATION" =~ ^[0-9]+$ && "$DURATION" -ge 1 && "$DURATION" -le 600 ]] || die "--duration-secs must be in 1..600"
[[ "$SCRAPE_MS" =~ ^[0-9]+$ && "$SCRAPE_MS" -ge 10 ]] || die "--scrape-ms must be at least 10"
case "$QOS" in 0|1) ;; *) die "--qos must be 0 or 1" ;; esac
command -v curl >/dev/null || die "curl is needed (the scraper)"
check_tools
build_binaries

start_run metrics
SCRAPER_PID=""
stop_scraper() { stop_pid "$SCRAPER_PID"; SCRAPER_PID=""; }
trap 'stop_scraper; cleanup' EXIT

for run in $(seq 1 "$RUNS"); do
    for mode in off on; do
        port="$(free_port 2)" || die "no free port"
        out="$TMP/$mode.$run"
        # shellcheck disable=SC2206 # the extra flags are meant to be split
        cmd=("$BIN/ringmq" --listen "127.0.0.1:$port" --shards 1 --log warn $BROKER_EXTRA)
        ports=("$port")
        if [[ $mode == on ]]; then
            cmd+=(--http-listen "127.0.0.1:$((port + 1))")
            ports+=("$((port + 1))")
        fi
        echo "== run $run, metrics $mode (CPU $BROKER_CPU): ${cmd[*]}" >&2
        start_broker "$BROKER_CPU" "$out.log" "${cmd[@]}"
        broker_listening "$out" ringmq "${ports[@]}" || continue
        if [[ $mode == on ]]; then
            url="http://127.0.0.1:$((port + 1))/metrics"
            interval="$(awk -v ms="$SCRAPE_MS" 'BEGIN { printf "%.3f", ms / 1000 }')"
            (while :; do curl -s -o /dev/null --max-time 5 "$url" || true; sleep "$interval"; done) &
            SCRAPER_PID=$!
        fi
        run_tool "$out" "$RUN_TIMEOUT" pubsub -P 1 -S 1 --qos "$QOS" --payload 64 \
            --duration-secs "$DURATION" --drain-ms 500 --host 127.0.0.1 --port "$port"
        if [[ $mode == on ]]; then
            scrapes="$(curl -s "$url" | sed -n 's/^ringmq_stat_connects_total //p')"
            echo "   scraper ran; broker still answers /metrics (connects_total=$scrapes)" >&2
        fi
        stop_scraper
        note_died "$out" ringmq "run $run"
        stop_broker
    done
done

run_header
echo "ringmq: --shards 1${BROKER_EXTRA:+ $BROKER_EXTRA}; QoS $QOS, 64 B, 1 -> 1, $DURATION s at max rate; scrape every $SCRAPE_MS ms when on"
echo
python3 - "$TMP" "$RUNS" <<'PY'
import json, os, sys
tmp, runs = sys.argv[1], int(sys.argv[2])
def load(mode, run):
    try:
        return json.load(open(os.path.join(tmp, f"{mode}.{run}.json")))
    except Exception:
        return {"error": "no result"}
print("| run | metrics off: delivered msgs/s | metrics on, scraped: delivered msgs/s |")
print("|---|---:|---:|")
totals = {"off": [], "on": []}
for run in range(1, runs + 1):
    cells = []
    for mode in ("off", "on"):
        r = load(mode, run)
        v = r.get("delivered_per_s")
        if isinstance(v, (int, float)):
            totals[mode].append(v)
            lost = r.get("lost", 0)
            cells.append(f"{v:,.0f}" + (f" (lost {lost:,})" if lost else ""))
        else:
            cells.append(str(r.get("error", "n/a")))
    print(f"| {run} | {cells[0]} | {cells[1]} |")
means = [sum(totals[m]) / len(totals[m]) if totals[m] else float("nan") for m in ("off", "on")]
print(f"| mean | {means[0]:,.0f} | {means[1]:,.0f} |")
PY
