#!/usr/bin/env bash
# compare.sh: run one ringmq-bench scenario against ringmq, Mosquitto and
# rumqttd (whichever are installed) plus any --extra broker, one after the
# other, and print one markdown table with every broker's figures and their
# ratio to ringmq.
#
# Each broker gets a fresh process on a free loopback port, pinned to
# --broker-cpu (default 0); the load tool is pinned to --tool-cpu (default
# 1) and is given the broker's PID (--broker-pid) for CPU and memory
# figures. Every broker is stopped by its own PID (SIGTERM, then SIGKILL
# after 5 s). Every step is bounded in time.
#
# Usage:
#   scripts/compare.sh [options] SCENARIO [ringmq-bench args...]
# Options (before SCENARIO):
#   --extra NAME 'CMD {PORT}'  also run CMD ({PORT} is replaced); repeatable
#   --only LIST                comma-separated broker names to run
#   --broker-cpu N             CPU for the broker (default 0)
#   --tool-cpu N               CPU for ringmq-bench (default 1)
#   --timeout SECS             limit per broker run (default 300)
#   --no-build                 use the binaries already built
# Examples:
#   scripts/compare.sh pubsub --duration-secs 10
#   scripts/compare.sh conn -n 5000
#   scripts/compare.sh keepalive -n 200 -k 2
#   scripts/compare.sh --extra emqx 'docker run --rm -p {PORT}:1883 emqx' conn
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/release"

BROKER_CPU=0
TOOL_CPU=1
RUN_TIMEOUT=300
BUILD=1
ONLY=""
KEEP="" # no --keep: the run's files are always removed
EXTRA_NAMES=()
EXTRA_CMDS=()

die() { echo "compare.sh: $*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --extra) [[ $# -ge 3 ]] || die "--extra needs NAME and 'CMD {PORT}'"
                 EXTRA_NAMES+=("$2"); EXTRA_CMDS+=("$3"); shift 3 ;;
        --only) [[ $# -ge 2 ]] || die "--only needs a list"; ONLY="$2"; shift 2 ;;
        --broker-cpu) BROKER_CPU="$2"; shift 2 ;;
        --tool-cpu) TOOL_CPU="$2"; shift 2 ;;
        --timeout) RUN_TIMEOUT="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1 (options go before SCENARIO)" ;;
        *) break ;;
    esac
done
[[ $# -ge 1 ]] || die "usage: scripts/compare.sh [options] SCENARIO [ringmq-bench args...]"
SCENARIO="$1"; shift
case "$SCENARIO" in
    conn|idle|keepalive|takeover|pubsub) ;;
    *) die "unknown scenario $SCENARIO (conn, idle, keepalive, takeover, pubsub)" ;;
esac
BENCH_ARGS=("$@")
for a in "${BENCH_ARGS[@]}"; do
    case "$a" in
        --port|--port=*|--host|--host=*|--broker-pid|--broker-pid=*|--json)
            die "$a is set by compare.sh" ;;
    esac
done
command -v taskset >/dev/null || die "taskset (util-linux) is needed"
command -v jq >/dev/null || command -v python3 >/dev/null || die "jq or python3 is needed"

# MQTT 5 runs need rumqttd's v5 listener.
MQTT5=0
for ((i = 0; i < ${#BENCH_ARGS[@]}; i++)); do
    case "${BENCH_ARGS[$i]}" in
        --mqtt-version=5*) MQTT5=1 ;;
        --mqtt-version) [[ "${BENCH_ARGS[$((i + 1))]:-}" == 5* ]] && MQTT5=1 ;;
    esac
done

# shellcheck source=SCRIPTDIR/lib.sh
source "$ROOT/scripts/lib.sh"
build_binaries
start_run compare

# Brokers to run: name and command line ({PORT} replaced).
NAMES=(ringmq)
CMDS=("$BIN/ringmq --listen 127.0.0.1:{PORT} --shards 1 --log warn")
SKIPPED=()
if command -v mosquitto >/dev/null; then
    NAMES+=(mosquitto)
    CMDS+=("mosquitto -c $TMP/mosquitto-{PORT}.conf")
else
    SKIPPED+=("mosquitto: not installed (Debian/Ubuntu: apt-get install -y mosquitto)")
fi
if command -v rumqttd >/dev/null; then
    NAMES+=(rumqttd)
    CMDS+=("rumqttd --config $TMP/rumqttd-{PORT}.toml")
else
    SKIPPED+=("rumqttd: not installed (cargo install rumqttd; needs a Rust toolchain)")
fi
for i in "${!EXTRA_NAMES[@]}"; do
    NAMES+=("${EXTRA_NAMES[$i]}")
    CMDS+=("${EXTRA_CMDS[$i]}")
done

write_configs() {
    local port="$1"
    cat >"$TMP/mosquitto-$port.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous true
max_connections -1
EOF
    cat >"$TMP/rumqttd-$port.toml" <<EOF
id = 0
[router]
id = 0
max_connections = 20010
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "127.0.0.1:$port"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 1048576
    max_inflight_count = 100
    dynamic_filters = true
[v5.1]
name = "v5-1"
listen = "127.0.0.1:$((port + 1))"
next_connection_delay_ms = 0
    [v5.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 1048576
    max_inflight_count = 100
EOF
}

json_get() { # json_get FILE KEY -> value or empty
    if command -v jq >/dev/null; then
        jq -r --arg k "$2" 'if has($k) then .[$k] | tostring else "" end' "$1" 2>/dev/null || true
    else
        python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); v=d.get(sys.argv[2]); print("" if v is None else v)' "$1" "$2" 2>/dev/null || true
    fi
}

RAN=()
FAILED=()
for i in "${!NAMES[@]}"; do
    name="${NAMES[$i]}"
    if [[ -n "$ONLY" && ",$ONLY," != *",$name,"* ]]; then continue; fi
    # The port after it is rumqttd's v5 listener.
    port="$(free_port 2)" || die "no free port"
    write_configs "$port"
    tool_port="$port"
    if [[ "$name" == rumqttd && $MQTT5 -eq 1 ]]; then tool_port=$((port + 1)); fi
    cmd="${CMDS[$i]//\{PORT\}/$port}"
    echo "== $name on 127.0.0.1:$tool_port (CPU $BROKER_CPU): $cmd" >&2
    # shellcheck disable=SC2086 # the command line is meant to be split
    start_broker "$BROKER_CPU" "$TMP/$name.log" $cmd
    if ! wait_listening "$tool_port"; then
        echo "   $name did not start listening; its log:" >&2
        tail -5 "$TMP/$name.log" >&2 || true
        stop_broker
        FAILED+=("$name: did not start (see above)")
        continue
    fi
    if timeout --kill-after=10 "$RUN_TIMEOUT" taskset -c "$TOOL_CPU" "$BIN/ringmq-bench" "$SCENARIO" \
        --host 127.0.0.1 --port "$tool_port" --broker-pid "$BROKER_PID" --json \
        "${BENCH_ARGS[@]}" >"$TMP/$name.json" 2>"$TMP/$name.err"; then
        RAN+=("$name")
    else
        FAILED+=("$name: ringmq-bench failed: $(tail -1 "$TMP/$name.err")")
    fi
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
        FAILED+=("$name: the broker exited during the run")
    fi
    stop_broker
done

[[ ${#RAN[@]} -gt 0 ]] || { printf '%s\n' "${FAILED[@]}" >&2; die "no broker run succeeded"; }

case "$SCENARIO" in
    conn) KEYS=(connections_ok connections_failed connects_per_s connack_p50_us connack_p99_us
                connack_max_us broker_cpu_pct tool_cpu_pct) ;;
    idle) KEYS=(up_at_settle hold_failed broker_rss_per_conn_bytes broker_cpu_pct
                ping_rtt_p50_us ping_rtt_p99_us tool_cpu_pct) ;;
    keepalive) KEYS=(clients_connected close_min_ms close_p50_ms close_p99_ms close_max_ms
                     close_early close_late closed_never disconnect_0x8d will_min_ms will_p50_ms
                     will_p99_ms will_max_ms will_early will_late will_never) ;;
    takeover) KEYS=(takeovers_ok connack_p50_us connack_p99_us connack_max_us
                    old_got_disconnect_0x8e old_closed old_close_p99_us session_present
                    queued_delivered) ;;
    pubsub) KEYS=(sent_per_s delivered_per_s lost duplicates latency_p50_us latency_p99_us
                  latency_p999_us latency_max_us broker_cpu_pct tool_cpu_pct) ;;
esac

ref="$TMP/ringmq.json"
[[ -s "$ref" ]] || ref=""
header="| $SCENARIO |"; rule="|---|"
for name in "${RAN[@]}"; do header+=" $name |"; rule+="---:|"; done
echo
echo "ringmq-bench $SCENARIO ${BENCH_ARGS[*]:-} ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1); broker on CPU $BROKER_CPU, tool on CPU $TOOL_CPU)"
echo
echo "$header"
echo "$rule"
for key in "${KEYS[@]}"; do
    line="| $key |"
    any=0
    base=""
    [[ -n "$ref" ]] && base="$(json_get "$ref" "$key")"
    for name in "${RAN[@]}"; do
        v="$(json_get "$TMP/$name.json" "$key")"
        [[ -n "$v" ]] && any=1
        cell="${v:-n/a}"
        if [[ "$name" != ringmq && -n "$v" && -n "$base" ]] \
            && [[ "$v" =~ ^-?[0-9.]+$ && "$base" =~ ^-?[0-9.]+$ ]]; then
            ratio="$(awk -v a="$v" -v b="$base" 'BEGIN { if (b == 0) print "-"; else printf "%.2fx", a / b }')"
            cell="$v ($ratio)"
        fi
        line+=" $cell |"
    done
    [[ $any -eq 1 ]] && echo "$line"
done
echo
echo "Ratios are broker / ringmq for the same metric (higher is better for rates, worse for latencies, CPU and memory)."
for s in "${SKIPPED[@]}"; do echo "skipped $s"; done
for f in "${FAILED[@]}"; do echo "failed $f"; done
for name in "${RAN[@]}"; do
    notes="$(json_get "$TMP/$name.json" notes)"
    [[ -n "$notes" && "$notes" != "[]" ]] && echo "notes ($name): $notes"
done
exit 0
