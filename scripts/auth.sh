#!/usr/bin/env bash
# auth.sh: ringmq (this checkout, --shards 1) and Mosquitto side by side
# with password authentication, both reading the SAME password file: N
# users user0..userN-1 with passwords pw0..pwN-1, written as plain
# user:password lines and hashed by `mosquitto_passwd -U` (PBKDF2-SHA512,
# $7$, as mosquitto_passwd writes by default) in a temporary directory.
#
# Measurements (`ringmq-bench handshake -n N`: TCP connect, CONNECT with
# user name and password, CONNACK, DISCONNECT, close; connects/s, the
# broker's CPU time per CONNECT (utime+stime delta / CONNECTs) and
# CONNECT -> CONNACK latency):
#   cold      N distinct users each connecting once (--username user%i
#             --password pw%i: client i is user i), on a fresh broker
#   warm      the same N users again, on the same broker process right
#             after cold (ringmq caches successful checks per shard for
#             --auth-cache-secs; Mosquitto has no cache). Run alone, warm
#             still makes the cold pass first, unreported.
#   one-user  every client is user0 (fresh broker)
#   anon      no password file, no credentials: the reference (fresh
#             broker; Mosquitto with allow_anonymous true)
#   wrong     the N users with wrong passwords (wrong%i): every CONNECT
#             must be refused; refusals by CONNACK code, attempts/s and
#             broker CPU per refused attempt (fresh broker)
#
# ringmq runs with --password-file FILE --allow-anonymous false (plus
# --broker-extra, e.g. '--auth-threads 1 --auth-cache-secs 0'); Mosquitto
# with `listener PORT 127.0.0.1`, `password_file FILE`,
# `allow_anonymous false`. The broker (every thread of it, ringmq's
# verification threads too) is pinned to --broker-cpu (default 0) and the
# tool to --tool-cpu (default 1) with taskset; the tool is given the
# broker's PID. Every broker is stopped by its own PID (SIGTERM, then
# SIGKILL after 5 s). Loopback only. Bounded: every tool run has a time
# limit (--timeout, default 120 s). On a 2-vCPU machine that others use
# the figures are noisy: read them as orders of magnitude.
#
# Usage:
#   scripts/auth.sh [options]
# Options:
#   --only LIST              measurements to run (default: all, in the order above)
#   --brokers LIST           ringmq,mosquitto (default: both)
#   -n N                     users, and CONNECTs per run (default 5000)
#   --mqtt-version V         3.1.1 (default) or 5: the refusal codes differ
#   --concurrency C          CONNECTs in flight (default 32)
#   --broker-extra 'FLAGS'   extra flags for ringmq
#   --broker-cpu LIST        CPUs for the broker (default 0)
#   --tool-cpu N             CPU for ringmq-bench (default 1)
#   --timeout SECS           limit per tool run (default 120)
#   --label TEXT             printed in the header (e.g. the commit)
#   --keep DIR               keep every run's JSON, broker log, config and the password file in DIR
#   --no-build               use the binaries already built
# Example:
#   CARGO_TARGET_DIR=/tmp/t scripts/auth.sh --only cold,warm -n 2000
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/release"

ALL_TESTS="cold,warm,one-user,anon,wrong"
ONLY="$ALL_TESTS"
BROKERS="ringmq,mosquitto"
USERS=5000
MQTT_VERSION="3.1.1"
CONCURRENCY=32
BROKER_EXTRA=""
BROKER_CPU=0
TOOL_CPU=1
RUN_TIMEOUT=120
LABEL=""
KEEP=""
BUILD=1
SHARED_OPTS="--only --brokers --broker-extra --timeout"

die() { echo "auth.sh: $*" >&2; exit 2; }
# shellcheck source=SCRIPTDIR/lib.sh
source "$ROOT/scripts/lib.sh"

while [[ $# -gt 0 ]]; do
    case "$1" in
        -n) [[ $# -ge 2 ]] || die "-n needs a number"; USERS="$2"; shift 2 ;;
        --mqtt-version) [[ $# -ge 2 ]] || die "--mqtt-version needs a version"; MQTT_VERSION="$2"; shift 2 ;;
        --concurrency) [[ $# -ge 2 ]] || die "--concurrency needs a number"; CONCURRENCY="$2"; shift 2 ;;
        *) shared_option "$@"
           [[ $OPT_WORDS -gt 0 ]] || die "unknown option $1 (see --help)"
           shift "$OPT_WORDS" ;;
    esac
done
parse_tests
parse_brokers
[[ "$USERS" =~ ^[0-9]+$ && "$USERS" -ge 1 && "$USERS" -le 100000 ]] \
    || die "-n must be in 1..100000"
[[ "$CONCURRENCY" =~ ^[0-9]+$ && "$CONCURRENCY" -ge 1 && "$CONCURRENCY" -le 1000 ]] \
    || die "--concurrency must be in 1..1000"
case "$MQTT_VERSION" in 3.1.1|4|311|5|5.0) ;; *) die "--mqtt-version must be 3.1.1 or 5" ;; esac
[[ "$RUN_TIMEOUT" =~ ^[0-9]+$ && "$RUN_TIMEOUT" -ge 10 ]] || die "--timeout must be at least 10"
check_tools
command -v mosquitto_passwd >/dev/null \
    || die "mosquitto_passwd is needed to write the password file (Debian/Ubuntu: apt-get install -y mosquitto)"
build_binaries

start_run auth

# The password file: plain lines, hashed in place by mosquitto_passwd.
PASSWD="$TMP/passwd"
write_password_file "$PASSWD" "$USERS" user pw \
    || die "mosquitto_passwd -U could not hash $PASSWD"
# Mosquitto started as root reads its password file after dropping to the
# mosquitto user: let that group (only) read it.
if [[ $EUID -eq 0 ]] && id mosquitto >/dev/null 2>&1; then
    chgrp mosquitto "$TMP" "$PASSWD"
    chmod 750 "$TMP"
    chmod 640 "$PASSWD"
fi

HS_ARGS=(handshake -n "$USERS" --concurrency "$CONCURRENCY" --mqtt-version "$MQTT_VERSION")
has_test() { [[ ",$ONLY," == *",$1,"* ]]; }

# run_args NAME: the credentials of measurement NAME, in RUN_ARGS.
run_args() {
    case "$1" in
        cold|warm) RUN_ARGS=(--username 'user%i' --password 'pw%i') ;;
        one-user) RUN_ARGS=(--username user0 --password pw0) ;;
        anon) RUN_ARGS=() ;;
        wrong) RUN_ARGS=(--username 'user%i' --password 'wrong%i') ;;
    esac
}

# broker_cmd BROKER PORT AUTH OUT: the command line of BROKER on PORT in
# CMD, with the password file when AUTH is 1 (Mosquitto's config goes to
# OUT.conf).
broker_cmd() {
    local broker="$1" port="$2" auth="$3" out="$4"
    case "$broker" in
        ringmq)
            CMD=("$BIN/ringmq" --listen "127.0.0.1:$port" --shards 1 --log warn)
            if [[ $auth -eq 1 ]]; then
                CMD+=(--password-file "$PASSWD" --allow-anonymous false)
            fi
            # shellcheck disable=SC2206 # the extra flags are meant to be split
            CMD+=($BROKER_EXTRA) ;;
        mosquitto)
            {
                echo "listener $port 127.0.0.1"
                echo "max_connections -1"
                if [[ $auth -eq 1 ]]; then
                    echo "password_file $PASSWD"
                    echo "allow_anonymous false"
                else
                    echo "allow_anonymous true"
                fi
            } >"$out.conf"
            CMD=(mosquitto -c "$out.conf") ;;
    esac
}

# session BROKER AUTH NAME...: one fresh broker (with the password file
# when AUTH is 1), then one tool run per NAME, in order, against it. Run
# NAME's report goes to TMP/NAME.BROKER.json; the broker's log and config
# are named after the first NAME.
session() {
    local broker="$1" auth="$2" port out name
    shift 2
    port="$(free_port)" || die "no free port"
    out="$TMP/$1.$broker"
    broker_cmd "$broker" "$port" "$auth" "$out"
    echo "== $* vs $broker on 127.0.0.1:$port (CPU $BROKER_CPU): ${CMD[*]}" >&2
    start_broker "$BROKER_CPU" "$out.log" "${CMD[@]}"
    if ! broker_listening "$out" "$broker" "$port"; then
        for name in "$@"; do cp "$out.json" "$TMP/$name.$broker.json" 2>/dev/null || true; done
        return 0
    fi
    for name in "$@"; do
        run_args "$name"
        run_tool "$TMP/$name.$broker" "$RUN_TIMEOUT" "${HS_ARGS[@]}" "${RUN_ARGS[@]}" \
            --host 127.0.0.1 --port "$port"
        note_died "$out" "$broker" "$name"
        if [[ -f "$out.died" ]]; then touch "$TMP/$name.$broker.died"; fi
    done
    stop_broker
}

for broker in "${BROKER_LIST[@]}"; do
    # Warm needs the cold pass before it on the same broker process.
    if has_test warm; then
        session "$broker" 1 cold warm
    elif has_test cold; then
        session "$broker" 1 cold
    fi
    if has_test one-user; then session "$broker" 1 one-user; fi
    if has_test anon; then session "$broker" 0 anon; fi
    if has_test wrong; then session "$broker" 1 wrong; fi
done

run_header
line=""
if [[ ",$BROKERS," == *",ringmq,"* ]]; then
    line+="ringmq: --shards 1 --password-file F --allow-anonymous false${BROKER_EXTRA:+ $BROKER_EXTRA}; "
fi
if [[ ",$BROKERS," == *",mosquitto,"* ]]; then
    line+="Mosquitto: $(mosquitto_version), password_file F, allow_anonymous false; "
fi
hash="$(head -1 "$PASSWD" | cut -d: -f2 | cut -d'$' -f2,3)"
echo "${line}F: $USERS users, \$$hash\$ (mosquitto_passwd -U); MQTT $MQTT_VERSION, $CONCURRENCY CONNECTs in flight"
echo
python3 - "$TMP" "$ONLY" "$BROKERS" "$USERS" "$ROOT/scripts" <<'EOF'
import sys
tmp, tests, brokers, users = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(","), sys.argv[4]
sys.path.insert(0, sys.argv[5])
from table import ms, num, print_table

what = {
    "cold": f"cold: {users} users once",
    "warm": f"warm: the {users} users again",
    "one-user": f"one user, {users} CONNECTs",
    "anon": f"no authentication, {users} CONNECTs",
    "wrong": f"wrong password, {users} users",
}

def refusals(t, r):
    """'N x CONNACK 0x.. name' per reason of failure."""
    prefix = "handshakes_failed."
    parts = [f"{v:,} × {k[len(prefix):]}" for k, v in sorted(r.items())
             if k.startswith(prefix) and isinstance(v, int) and v]
    return [", ".join(parts)] if parts else []

def ok_rows(t, r):
    failed = r.get("handshakes_failed", 0)
    f = f" ({failed:,} failed)" if isinstance(failed, int) and failed else ""
    return [
        (f"{what[t]}: connects/s", num(r, "handshakes_per_s", "{:,.0f}") + f),
        (f"{what[t]}: broker CPU per CONNECT (µs)", num(r, "broker_cpu_per_handshake_us", "{:,.0f}")),
        (f"{what[t]}: CONNECT -> CONNACK p50 / p99 (ms)", ms(r, "connack_p50_us", "connack_p99_us")),
    ]

def wrong_rows(t, r):
    ok = r.get("handshakes_ok", 0)
    f = f" ({ok:,} ACCEPTED)" if isinstance(ok, int) and ok else ""
    return [
        (f"{what[t]}: refused/s", num(r, "attempts_per_s", "{:,.0f}") + f),
        (f"{what[t]}: broker CPU per refusal (µs)", num(r, "broker_cpu_per_attempt_us", "{:,.0f}")),
    ]

def rows(t, r):
    return wrong_rows(t, r) if t == "wrong" else ok_rows(t, r)

notes = print_table(tmp, tests, brokers, rows, refusals)
print()
print("Each CONNECT is a whole short connection (TCP connect, CONNECT, CONNACK, DISCONNECT, "
      "close); connects/s is over the run, broker CPU is utime+stime over the run / CONNECTs "
      "(every broker thread, on one pinned CPU). Cold and warm run against one broker process, "
      "the others each against a fresh one.")
for n in notes:
    print("- " + n)
EOF
