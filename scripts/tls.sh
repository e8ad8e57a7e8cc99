#!/usr/bin/env bash
# tls.sh: ringmq (this checkout, --shards 1) and Mosquitto side by side
# over TLS and WebSocket, both configured with the SAME certificate: a
# throwaway CA and an ECDSA P-256 server certificate for localhost and
# 127.0.0.1, made with openssl in a temporary directory. Each broker gets
# an mqtts listener, a ws listener (path /mqtt; Mosquitto answers on any
# path) and a plain mqtt listener (for the reference figure and because
# Mosquitto 2.0 does not start with WebSocket listeners alone).
#
# Measurements (one fresh broker process each):
#   handshake     `ringmq-bench handshake --tls -n N`: full TLS handshakes
#                 (no resumption) + CONNECT/CONNACK + DISCONNECT per second,
#                 the broker's CPU time per handshake (utime+stime delta /
#                 handshakes), connect latency
#   ws-handshake  the same over ws:// (the WebSocket upgrade, no TLS)
#   mqtts         `pubsub` QoS 0, 64-byte payload, 1 publisher -> 1
#                 subscriber over mqtts: delivered msgs/s, latency, broker CPU
#   ws            the same over ws://
#   idle-tls      `idle --tls -n IDLE`: the broker's resident memory growth
#                 per idle TLS connection (settled 2 s after the last CONNACK)
#   idle-plain    the same over plain mqtt, for reference
#
# The broker is pinned to --broker-cpu (default 0) and the tool to
# --tool-cpu (default 1) with taskset, as in compare.sh and hostile.sh;
# the tool is given the broker's PID. Every broker is stopped by its own
# PID (SIGTERM, then SIGKILL after 5 s). Loopback only (Mosquitto 2.0.11's
# WebSocket listener binds every address whatever the listener line
# says; the tool only connects to 127.0.0.1). Bounded: every run has a
# time limit (--timeout, default 300 s), connections stay under 15,000 per
# process. On a 2-vCPU machine that others use the figures are noisy:
# read them as orders of magnitude.
#
# Usage:
#   scripts/tls.sh [options]
# Options:
#   --only LIST              measurements to run (default: all, in the order above)
#   --brokers LIST           ringmq,mosquitto (default: both)
#   -n N                     handshakes per handshake run (default 5000)
#   --idle N                 idle connections (default 5000, at most 14000)
#   --duration SECS          seconds of publishing per throughput run (default 10)
#   --broker-extra 'FLAGS'   extra flags for ringmq
#   --broker-cpu LIST        CPUs for the broker (default 0)
#   --tool-cpu N             CPU for ringmq-bench (default 1)
#   --timeout SECS           limit per run (default 300)
#   --label TEXT             printed in the header (e.g. the commit)
#   --keep DIR               keep every run's JSON, broker log and the certificates in DIR
#   --no-build               use the binaries already built
# Example:
#   CARGO_TARGET_DIR=/tmp/t scripts/tls.sh --only handshake,mqtts -n 2000
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/release"

ALL_TESTS="handshake,ws-handshake,mqtts,ws,idle-tls,idle-plain"
ONLY="$ALL_TESTS"
BROKERS="ringmq,mosquitto"
HANDSHAKES=5000
IDLE=5000
DURATION=10
BROKER_EXTRA=""
BROKER_CPU=0
TOOL_CPU=1
RUN_TIMEOUT=300
LABEL=""
KEEP=""
BUILD=1
SHARED_OPTS="--only --brokers --broker-extra --timeout"

die() { echo "tls.sh: $*" >&2; exit 2; }
# shellcheck source=SCRIPTDIR/lib.sh
source "$ROOT/scripts/lib.sh"

while [[ $# -gt 0 ]]; do
    case "$1" in
        -n) [[ $# -ge 2 ]] || die "-n needs a number"; HANDSHAKES="$2"; shift 2 ;;
        --idle) [[ $# -ge 2 ]] || die "--idle needs a number"; IDLE="$2"; shift 2 ;;
        --duration) [[ $# -ge 2 ]] || die "--duration needs seconds"; DURATION="$2"; shift 2 ;;
        *) shared_option "$@"
           [[ $OPT_WORDS -gt 0 ]] || die "unknown option $1 (see --help)"
           shift "$OPT_WORDS" ;;
    esac
done
parse_tests
parse_brokers
[[ "$HANDSHAKES" =~ ^[0-9]+$ && "$HANDSHAKES" -ge 1 && "$HANDSHAKES" -le 1000000 ]] \
    || die "-n must be in 1..1000000"
[[ "$IDLE" =~ ^[0-9]+$ && "$IDLE" -ge 1 && "$IDLE" -le 14000 ]] \
    || die "--idle must be in 1..14000 (one tool process, open-files limit 20,000)"
[[ "$DURATION" =~ ^[0-9]+$ && "$DURATION" -ge 1 && "$DURATION" -le 600 ]] \
    || die "--duration must be whole seconds in 1..600"
[[ "$RUN_TIMEOUT" =~ ^[0-9]+$ && "$RUN_TIMEOUT" -ge 10 ]] || die "--timeout must be at least 10"
check_tools
command -v openssl >/dev/null || die "openssl is needed (for the certificates)"
build_binaries

start_run tls

# The certificates: a CA and a server certificate it signed, ECDSA P-256,
# valid two days, for localhost and 127.0.0.1.
PKI="$TMP/pki"
mkdir "$PKI"
(
    cd "$PKI"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key
    openssl req -x509 -new -key ca.key -sha256 -days 2 -subj "/CN=ringmq tls.sh test CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.pem
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out server.key
    openssl req -new -key server.key -subj "/CN=localhost" -out server.csr
    printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -sha256 -extfile server.ext -out server.pem
) >"$TMP/openssl.log" 2>&1 || { cat "$TMP/openssl.log" >&2; die "openssl could not make the certificates"; }
# Mosquitto started as root reads its certificate after dropping to the
# mosquitto user: let that group (only) read the key.
if [[ $EUID -eq 0 ]] && id mosquitto >/dev/null 2>&1; then
    chgrp mosquitto "$TMP" "$PKI" "$PKI/server.key" "$PKI/server.pem"
    chmod 750 "$TMP" "$PKI"
    chmod 640 "$PKI/server.key" "$PKI/server.pem"
fi

TLS_ARGS=(--tls --ca "$PKI/ca.pem" --server-name localhost)
for test in "${TESTS[@]}"; do
    for broker in "${BROKER_LIST[@]}"; do
        p_tls="$(free_port)" || die "no free port"
        p_ws="$(free_port)" || die "no free port"
        p_mqtt="$(free_port)" || die "no free port"
        [[ "$p_tls" != "$p_ws" && "$p_ws" != "$p_mqtt" && "$p_tls" != "$p_mqtt" ]] \
            || { p_ws=$((p_tls + 1)); p_mqtt=$((p_tls + 2)); }
        out="$TMP/$test.$broker"
        case "$broker" in
            ringmq)
                # shellcheck disable=SC2206 # the extra flags are meant to be split
                cmd=("$BIN/ringmq" --listen "mqtts://127.0.0.1:$p_tls"
                     --listen "ws://127.0.0.1:$p_ws/mqtt" --listen "127.0.0.1:$p_mqtt"
                     --tls-cert "$PKI/server.pem" --tls-key "$PKI/server.key"
                     --shards 1 --log warn $BROKER_EXTRA) ;;
            mosquitto)
                cat >"$out.conf" <<EOF
allow_anonymous true
max_connections -1
listener $p_mqtt 127.0.0.1
listener $p_tls 127.0.0.1
certfile $PKI/server.pem
keyfile $PKI/server.key
listener $p_ws 127.0.0.1
protocol websockets
EOF
                cmd=(mosquitto -c "$out.conf") ;;
        esac
        case "$test" in
            handshake) port=$p_tls
                args=(handshake -n "$HANDSHAKES" "${TLS_ARGS[@]}") ;;
            ws-handshake) port=$p_ws
                args=(handshake -n "$HANDSHAKES" --ws --ws-path /mqtt) ;;
            mqtts) port=$p_tls
                args=(pubsub -P 1 -S 1 --qos 0 --payload 64 --duration-secs "$DURATION" --drain-ms 500 "${TLS_ARGS[@]}") ;;
            ws) port=$p_ws
                args=(pubsub -P 1 -S 1 --qos 0 --payload 64 --duration-secs "$DURATION" --drain-ms 500 --ws --ws-path /mqtt) ;;
            idle-tls) port=$p_tls
                args=(idle -n "$IDLE" --hold-secs 5 --settle-ms 2000 "${TLS_ARGS[@]}") ;;
            idle-plain) port=$p_mqtt
                args=(idle -n "$IDLE" --hold-secs 5 --settle-ms 2000) ;;
        esac
        echo "== $test vs $broker on 127.0.0.1:$port (CPU $BROKER_CPU): ${cmd[*]}" >&2
        start_broker "$BROKER_CPU" "$out.log" "${cmd[@]}"
        broker_listening "$out" "$broker" "$p_tls" "$p_ws" "$p_mqtt" || continue
        run_tool "$out" "$RUN_TIMEOUT" "${args[@]}" --host 127.0.0.1 --port "$port"
        note_died "$out" "$broker" "$test"
        stop_broker
    done
done

run_header
line="ringmq: --shards 1${BROKER_EXTRA:+ $BROKER_EXTRA}"
if [[ ",$BROKERS," == *",mosquitto,"* ]]; then
    line+="; Mosquitto: $(mosquitto_version)"
fi
echo "$line; certificate: ECDSA P-256 for localhost/127.0.0.1, one CA; $(openssl version 2>/dev/null | cut -d' ' -f1-2)"
echo
python3 - "$TMP" "$ONLY" "$BROKERS" "$HANDSHAKES" "$IDLE" "$DURATION" "$ROOT/scripts" <<'EOF'
import sys
tmp, tests, brokers = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(",")
handshakes, idle, duration = sys.argv[4], sys.argv[5], sys.argv[6]
sys.path.insert(0, sys.argv[7])
from table import ms, num, print_table

def mib(r, key):
    v = r.get(key)
    return f"{v / 2**20:.1f}" if isinstance(v, (int, float)) else "n/a"

def fails(r, keys):
    n = sum(r.get(k, 0) for k in keys if isinstance(r.get(k), int))
    return "" if n == 0 else f" ({n} failed)"

def handshake_rows(r, what):
    f = fails(r, ["handshakes_failed", "close_failed"])
    return [
        (f"{what} handshakes/s (-n {handshakes})", num(r, "handshakes_per_s", "{:,.0f}") + f),
        (f"{what} broker CPU per handshake (µs)", num(r, "broker_cpu_per_handshake_us", "{:,.0f}")),
        (f"{what} connect -> CONNACK p50 / p99 (ms)", ms(r, "connect_p50_us", "connect_p99_us")),
    ]

def pubsub_rows(r, what):
    lost = r.get("lost", 0)
    extra = f" (lost {lost})" if isinstance(lost, int) and lost else ""
    return [
        (f"{what} QoS 0 64 B 1 -> 1: delivered msgs/s", num(r, "delivered_per_s", "{:,.0f}") + extra),
        (f"{what} latency p50 / p99 (ms)", ms(r, "latency_p50_us", "latency_p99_us")),
        (f"{what} broker / tool CPU (% of one core)",
         num(r, "broker_cpu_pct", "{:.0f}") + " / " + num(r, "tool_cpu_pct", "{:.0f}")),
    ]

def idle_rows(r, what):
    up = r.get("up_at_settle")
    f = fails(r, ["connections_failed", "hold_failed"])
    return [
        (f"{what} idle: RSS per connection (bytes, {idle} conns)",
         num(r, "broker_rss_per_conn_bytes", "{:,.0f}") + f),
        (f"{what} idle: broker RSS settled (MiB)",
         mib(r, "broker_rss_after_bytes") + ("" if up is None or str(up) == idle else f" ({up} up)")),
    ]

rows_by = {
    "handshake": lambda r: handshake_rows(r, "mqtts"),
    "ws-handshake": lambda r: handshake_rows(r, "ws"),
    "mqtts": lambda r: pubsub_rows(r, "mqtts"),
    "ws": lambda r: pubsub_rows(r, "ws"),
    "idle-tls": lambda r: idle_rows(r, "mqtts"),
    "idle-plain": lambda r: idle_rows(r, "mqtt"),
}

def notes_of(t, r):
    notes = []
    if t in ("handshake", "ws-handshake") and isinstance(r.get("closed_by_reset"), int) and r["closed_by_reset"]:
        notes.append(f"{r['closed_by_reset']} of the closes after DISCONNECT were resets")
    if t == "handshake" and "tls" in r:
        notes.append(f"negotiated {r['tls']}")
    return notes

notes = print_table(tmp, tests, brokers, lambda t, r: rows_by[t](r), notes_of)
print()
print(f"Handshakes: full TLS handshakes (no session resumption) + CONNECT/CONNACK + DISCONNECT, "
      f"32 in flight; broker CPU is utime+stime over the run / handshakes. Throughput: {duration} s "
      f"of QoS 0 at the publisher's max rate, so latency is mostly queueing and a broker may drop "
      f"QoS 0 messages for a subscriber that falls behind (lost); CPU covers the publishing and "
      f"a drain of up to 0.5 s. Idle: RSS growth over the connections, settled 2 s.")
for n in notes:
    print("- " + n)
EOF
