#!/usr/bin/env bash
# acl.sh: what an ACL costs on the message path, ringmq (this checkout,
# --shards 1) and Mosquitto side by side, both reading the SAME acl_file.
#
# The ACL file has --users user sections (user0..userN-1, each with
# `topic readwrite ringmq-bench/#` and `topic deny ringmq-bench/secret/#`),
# plus two patterns (`pattern write devices/%c/#`, `pattern read
# $SYS/broker/#`): a realistic size of file, so a broker that walks its
# rules per message pays for it.
#
# Measurements (`ringmq-bench pubsub`, QoS --qos, 64-byte payload,
# -P publishers -> -S subscribers over -T topics, --duration-secs at max
# rate; every client sends --username user%i):
#   none      no ACL file: the reference
#   acl       the ACL file; subscribers take their own topics (granted
#             outright: no rule denies any topic they match)
#   filtered  the ACL file plus `topic deny ringmq-bench/t/secret` in
#             every section, and the subscribers take PREFIX/+ (--wildcard):
#             a deny rule overlaps their filter, so every delivery to them
#             is checked (ringmq: from the session's decision cache)
#
# Both brokers run without a password file (allow_anonymous true for
# Mosquitto): the username in CONNECT picks the ACL section in both. The
# broker is pinned to --broker-cpu (default 0) and the tool to --tool-cpu
# (default 1) with taskset; the tool is given the broker's PID. Every
# broker is stopped by its own PID. Loopback only; every tool run has a
# time limit (--timeout). On a 2-vCPU machine the figures are noisy.
#
# Usage:
#   scripts/acl.sh [options]
# Options:
#   --only LIST              measurements (default: none,acl,filtered)
#   --brokers LIST           ringmq,mosquitto (default: both)
#   --users N                user sections in the ACL file (default 1000)
#   -P N / -S N / -T N       publishers, subscribers, topics (default 1 / 1 / 1)
#   --qos Q                  0 (default) or 1
#   --duration-secs S        seconds of publishing per run (default 10)
#   --broker-extra 'FLAGS'   extra flags for ringmq
#   --broker-cpu LIST        CPUs for the broker (default 0)
#   --tool-cpu N             CPU for ringmq-bench (default 1)
#   --timeout SECS           limit per tool run (default 120)
#   --label TEXT             printed in the header (e.g. the commit)
#   --keep DIR               keep every run's JSON, broker log, config and ACL file in DIR
#   --no-build               use the binaries already built
# Example:
#   CARGO_TARGET_DIR=/tmp/t scripts/acl.sh --qos 1 --duration-secs 5
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/release"

ALL_TESTS="none,acl,filtered"
ONLY="$ALL_TESTS"
BROKERS="ringmq,mosquitto"
USERS=1000
PUBS=1
SUBS=1
TOPICS=1
QOS=0
DURATION=10
BROKER_EXTRA=""
BROKER_CPU=0
TOOL_CPU=1
RUN_TIMEOUT=120
LABEL=""
KEEP=""
BUILD=1
SHARED_OPTS="--only --brokers --broker-extra --timeout"

die() { echo "acl.sh: $*" >&2; exit 2; }
# shellcheck source=SCRIPTDIR/lib.sh
source "$ROOT/scripts/lib.sh"

while [[ $# -gt 0 ]]; do
    case "$1" in
        --users) [[ $# -ge 2 ]] || die "--users needs a number"; USERS="$2"; shift 2 ;;
        -P) [[ $# -ge 2 ]] || die "-P needs a number"; PUBS="$2"; shift 2 ;;
        -S) [[ $# -ge 2 ]] || die "-S needs a number"; SUBS="$2"; shift 2 ;;
        -T) [[ $# -ge 2 ]] || die "-T needs a number"; TOPICS="$2"; shift 2 ;;
        --qos) [[ $# -ge 2 ]] || die "--qos needs 0 or 1"; QOS="$2"; shift 2 ;;
        --duration-secs) [[ $# -ge 2 ]] || die "--duration-secs needs a number"; DURATION="$2"; shift 2 ;;
        *) shared_option "$@"
           [[ $OPT_WORDS -gt 0 ]] || die "unknown option $1 (see --help)"
           shift "$OPT_WORDS" ;;
    esac
done
parse_tests
parse_brokers
for v in USERS PUBS SUBS TOPICS; do
    [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -ge 1 && "${!v}" -le 100000 ]] || die "$v must be in 1..100000"
done
case "$QOS" in 0|1) ;; *) die "--qos must be 0 or 1" ;; esac
[[ "$DURATION" =~ ^[0-9]+$ && "$DURATION" -ge 1 && "$DURATION" -le 600 ]] || die "--duration-secs must be in 1..600"
[[ "$RUN_TIMEOUT" =~ ^[0-9]+$ && "$RUN_TIMEOUT" -ge 10 ]] || die "--timeout must be at least 10"
check_tools
build_binaries

start_run acl

# write_acl FILE EXTRA: the ACL file, with line EXTRA in every section.
write_acl() {
    awk -v n="$USERS" -v extra="$2" 'BEGIN {
        print "# acl.sh: " n " users"
        print "pattern write devices/%c/#"
        print "pattern read $SYS/broker/#"
        for (i = 0; i < n; i++) {
            printf "\nuser user%d\ntopic readwrite ringmq-bench/#\ntopic deny ringmq-bench/secret/#\n", i
            if (extra != "") print extra
        }
    }' >"$1"
}
write_acl "$TMP/acl.plain" ""
write_acl "$TMP/acl.filtered" "topic deny ringmq-bench/t/secret"
# Mosquitto started as root reads its files after dropping to the
# mosquitto user: let that group (only) read them.
if [[ $EUID -eq 0 ]] && id mosquitto >/dev/null 2>&1; then
    chgrp mosquitto "$TMP" "$TMP/acl.plain" "$TMP/acl.filtered"
    chmod 750 "$TMP"
    chmod 640 "$TMP/acl.plain" "$TMP/acl.filtered"
fi

PUBSUB=(pubsub -P "$PUBS" -S "$SUBS" -T "$TOPICS" --qos "$QOS" --payload 64
    --duration-secs "$DURATION" --drain-ms 1000 --username 'user%i')

for test in "${TESTS[@]}"; do
    case "$test" in
        none) acl="" ; extra=() ;;
        acl) acl="$TMP/acl.plain" ; extra=() ;;
        filtered) acl="$TMP/acl.filtered" ; extra=(--wildcard) ;;
    esac
    for broker in "${BROKER_LIST[@]}"; do
        port="$(free_port)" || die "no free port"
        out="$TMP/$test.$broker"
        case "$broker" in
            ringmq)
                # shellcheck disable=SC2206 # the extra flags are meant to be split
                cmd=("$BIN/ringmq" --listen "127.0.0.1:$port" --shards 1 --log warn
                     ${acl:+--acl-file "$acl"} $BROKER_EXTRA) ;;
            mosquitto)
                {
                    echo "listener $port 127.0.0.1"
                    echo "allow_anonymous true"
                    echo "max_connections -1"
                    if [[ -n "$acl" ]]; then echo "acl_file $acl"; fi
                } >"$out.conf"
                cmd=(mosquitto -c "$out.conf") ;;
        esac
        echo "== $test vs $broker on 127.0.0.1:$port (CPU $BROKER_CPU): ${cmd[*]}" >&2
        start_broker "$BROKER_CPU" "$out.log" "${cmd[@]}"
        broker_listening "$out" "$broker" "$port" || continue
        run_tool "$out" "$RUN_TIMEOUT" "${PUBSUB[@]}" "${extra[@]}" --host 127.0.0.1 --port "$port"
        note_died "$out" "$broker" "$test"
        stop_broker
    done
done

run_header
line="ringmq: --shards 1${BROKER_EXTRA:+ $BROKER_EXTRA}"
if [[ ",$BROKERS," == *",mosquitto,"* ]]; then
    line+="; Mosquitto: $(mosquitto_version)"
fi
echo "$line; ACL file: $USERS user sections + 2 patterns; QoS $QOS, 64 B, $PUBS -> $SUBS over $TOPICS topic(s), $DURATION s at max rate"
echo
python3 - "$TMP" "$ONLY" "$BROKERS" "$ROOT/scripts" <<'EOF'
import sys
tmp, tests, brokers = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(",")
sys.path.insert(0, sys.argv[4])
from table import num, print_table

what = {
    "none": "no ACL",
    "acl": "ACL, own topics",
    "filtered": "ACL, PREFIX/+ overlapping a deny",
}

def rows(t, r):
    lost = r.get("lost", 0)
    extra = f" (lost {lost:,})" if isinstance(lost, int) and lost else ""
    return [
        (f"{what[t]}: delivered msgs/s", num(r, "delivered_per_s", "{:,.0f}") + extra),
        (f"{what[t]}: broker / tool CPU (% of one core)",
         num(r, "broker_cpu_pct", "{:.0f}") + " / " + num(r, "tool_cpu_pct", "{:.0f}")),
    ]

notes = print_table(tmp, tests, brokers, rows)
print()
print("Max-rate publishing: a broker that cannot keep up drops QoS 0 (counted as lost); "
      "broker CPU is utime+stime over the run, on one pinned CPU.")
for n in notes:
    print("- " + n)
EOF
