# shellcheck shell=bash
# lib.sh: what the side-by-side scripts share. Sourced, not run: it only
# defines functions, so a script can source it before reading its options.
# Expects ROOT, TARGET_DIR and BIN to be set and die() defined;
# shared_option sets the variables of the options it takes and reads
# SHARED_OPTS, parse_tests reads ONLY and ALL_TESTS, check_tools and
# parse_brokers read BROKERS, build_binaries BUILD, the broker functions
# BROKER_PID, run_tool TOOL_CPU, cleanup TMP and KEEP, the netns functions
# NS, VETH_HOST, VETH_CLIENT, HOST_ADDR and CLIENT_ADDR.

# shared_option ARGS...: takes the option at the head of ARGS (the words
# left to read) when it is one the side-by-side scripts read alike, and sets
# OPT_WORDS to the number of words it took: 0 when it is not one of them
# (the caller then reads it, or dies). Always: --broker-cpu (BROKER_CPU),
# --tool-cpu (TOOL_CPU), --label (LABEL), --keep (KEEP), --no-build
# (BUILD=0) and -h/--help (prints the script's header comment and exits 0).
# Only when named in SHARED_OPTS (space-separated): --only (ONLY),
# --brokers (BROKERS), --broker-extra (BROKER_EXTRA), --timeout
# (RUN_TIMEOUT).
# shellcheck disable=SC2034 # the variables are the calling script's
shared_option() {
    OPT_WORDS=0
    case "$1" in
        --only|--brokers|--broker-extra|--timeout)
            [[ " ${SHARED_OPTS:-} " == *" $1 "* ]] || return 0 ;;
    esac
    case "$1" in
        --only) [[ $# -ge 2 ]] || die "--only needs a list"; ONLY="$2"; OPT_WORDS=2 ;;
        --brokers) [[ $# -ge 2 ]] || die "--brokers needs a list"; BROKERS="$2"; OPT_WORDS=2 ;;
        --broker-extra) [[ $# -ge 2 ]] || die "--broker-extra needs flags"; BROKER_EXTRA="$2"; OPT_WORDS=2 ;;
        --timeout) RUN_TIMEOUT="$2"; OPT_WORDS=2 ;;
        --broker-cpu) BROKER_CPU="$2"; OPT_WORDS=2 ;;
        --tool-cpu) TOOL_CPU="$2"; OPT_WORDS=2 ;;
        --label) LABEL="$2"; OPT_WORDS=2 ;;
        --keep) KEEP="$2"; OPT_WORDS=2 ;;
        --no-build) BUILD=0; OPT_WORDS=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    esac
}

# TESTS: the measurements in ONLY (comma-separated), each one of ALL_TESTS.
parse_tests() {
    local t
    IFS=, read -r -a TESTS <<<"$ONLY"
    for t in "${TESTS[@]}"; do
        [[ ",$ALL_TESTS," == *",$t,"* ]] || die "unknown measurement $t ($ALL_TESTS)"
    done
}

# The tools a run needs: taskset, python3 (the table), and Mosquitto when
# it is in the broker list.
check_tools() {
    command -v taskset >/dev/null || die "taskset (util-linux) is needed"
    command -v python3 >/dev/null || die "python3 is needed (for the table)"
    if [[ ",$BROKERS," == *",mosquitto,"* ]] && ! command -v mosquitto >/dev/null; then
        die "mosquitto is not installed (Debian/Ubuntu: apt-get install -y mosquitto), or use --brokers ringmq"
    fi
}

# BROKER_LIST: the names in BROKERS (comma-separated), each ringmq or
# mosquitto.
parse_brokers() {
    IFS=, read -r -a BROKER_LIST <<<"$BROKERS"
    for b in "${BROKER_LIST[@]}"; do
        case "$b" in ringmq|mosquitto) ;; *) die "unknown broker $b (ringmq, mosquitto)" ;; esac
    done
}

# Builds ringmq and ringmq-bench in release (unless BUILD=0) and checks the
# binaries are there.
build_binaries() {
    if [[ $BUILD -eq 1 ]]; then
        echo "building ringmq and ringmq-bench (release, $TARGET_DIR)..." >&2
        (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET_DIR" timeout 3600 nice -n 10 \
            cargo build --release -q -p ringmq --bin ringmq -p ringmq-bench --bin ringmq-bench) \
            || die "build failed"
    fi
    [[ -x "$BIN/ringmq" && -x "$BIN/ringmq-bench" ]] || die "no binaries in $BIN (drop --no-build)"
}

# A loopback port nobody listens on (and the $1 - 1 ports after it, when
# $1 is given), below Linux's default ephemeral range (32768-60999) so that
# no client socket of an earlier run can hold it.
free_port() {
    local span="${1:-1}" port i busy
    for _ in $(seq 1 200); do
        port=$((20000 + RANDOM % 12000))
        busy=0
        for ((i = 0; i < span; i++)); do
            if ss -Htln "sport = :$((port + i))" 2>/dev/null | grep -q .; then busy=1; break; fi
        done
        if [[ $busy -eq 0 ]]; then
            echo "$port"; return 0
        fi
    done
    return 1
}

# start_broker CPUS LOG CMD...: CMD pinned to CPUS, its output in LOG, its
# PID in BROKER_PID.
start_broker() {
    local cpus="$1" log="$2"
    shift 2
    taskset -c "$cpus" "$@" >"$log" 2>&1 &
    BROKER_PID=$!
}

# wait_listening PORT [ADDR [NETNS]]: wait (at most 10 s) until something
# accepts on ADDR:PORT (default 127.0.0.1), reached from inside network
# namespace NETNS when given; fails at once if the broker exits.
wait_listening() {
    local port="$1" addr="${2:-127.0.0.1}" netns="${3:-}"
    local deadline=$((SECONDS + 10))
    while ((SECONDS < deadline)); do
        if [[ -n "$netns" ]]; then
            if ip netns exec "$netns" bash -c "exec 3<>/dev/tcp/$addr/$port" 2>/dev/null; then return 0; fi
        elif (exec 3<>"/dev/tcp/$addr/$port") 2>/dev/null; then
            return 0
        fi
        kill -0 "$BROKER_PID" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# stop_pid PID: SIGTERM, SIGKILL after 5 s, then reap it. No-op for an
# empty PID or a process already gone.
stop_pid() {
    local pid="$1"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 5))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Stops the broker of BROKER_PID (if any) and forgets it.
stop_broker() {
    stop_pid "$BROKER_PID"
    BROKER_PID=""
}

# start_failed OUT MESSAGE ERROR: the broker did not come up. Says MESSAGE
# with the tail of OUT.log, writes {"error": ERROR} to OUT.json and stops
# the broker.
start_failed() {
    echo "   $2; its log:" >&2
    tail -5 "$1.log" >&2 || true
    echo "{\"error\":\"$3\"}" >"$1.json"
    stop_broker
}

# broker_listening OUT BROKER PORT...: wait_listening on every PORT (of
# 127.0.0.1). When one does not come up: start_failed OUT with the last
# line of OUT.log in the error, and fail.
broker_listening() {
    local out="$1" broker="$2" port
    shift 2
    for port in "$@"; do
        wait_listening "$port" && continue
        start_failed "$out" "$broker did not start listening" \
            "the broker did not start: $(tail -1 "$out.log" | tr '"\\' "''")"
        return 1
    done
}

# run_tool OUT LIMIT ARGS...: `ringmq-bench ARGS --broker-pid BROKER_PID
# --quiet --json` pinned to TOOL_CPU, at most LIMIT s. Its report goes to
# OUT.json (an {"error"} with its last line of stderr when it fails), its
# stderr to OUT.err.
run_tool() {
    local out="$1" limit="$2" why
    shift 2
    if ! timeout --kill-after=10 "$limit" taskset -c "$TOOL_CPU" "$BIN/ringmq-bench" "$@" \
        --broker-pid "$BROKER_PID" --quiet --json >"$out.json" 2>"$out.err"; then
        why="$(tail -1 "$out.err" | tr '"\\' "''")"
        echo "{\"error\":\"ringmq-bench failed: $why\"}" >"$out.json"
    fi
}

# note_died OUT BROKER WHAT: if the broker exited during WHAT, say so with
# the tail of OUT.log and mark OUT.died.
note_died() {
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
        echo "   $2 exited during $3; its log:" >&2
        tail -3 "$1.log" >&2 || true
        echo "died" >"$1.died"
    fi
}

# On exit: stop the broker, copy TMP to KEEP (when set) and remove TMP.
cleanup() {
    stop_broker
    if [[ -n "${KEEP:-}" ]]; then
        mkdir -p "$KEEP" && cp -r "$TMP"/. "$KEEP"/ 2>/dev/null || true
    fi
    rm -rf "$TMP"
}

# start_run NAME: TMP, a fresh /tmp/ringmq-NAME.XXXXXX; no broker yet;
# cleanup on exit, exit status 130 on SIGINT and SIGTERM.
start_run() {
    TMP="$(mktemp -d "/tmp/ringmq-$1.XXXXXX")"
    BROKER_PID=""
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}

# The first line of a table's header: script, date, machine and pinning.
run_header() {
    echo
    echo "${0##*/}: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)), broker on CPU $BROKER_CPU, tool on CPU $TOOL_CPU${LABEL:+, $LABEL}"
}

# Mosquitto's version as vX.Y.Z (empty if it does not say).
mosquitto_version() {
    mosquitto -h 2>/dev/null | sed -n 's/^mosquitto version /v/p' | head -1 || true
}

# write_password_file FILE N USER PASS: a Mosquitto password file of N
# users USER0..USER(N-1) with passwords PASS0..: plain user:password lines
# hashed in place by `mosquitto_passwd -U` (its default, PBKDF2-SHA512),
# which is much faster than one `mosquitto_passwd -b` per user. Fails
# unless FILE then holds N hashed lines.
write_password_file() {
    local file="$1" n="$2" user="$3" pass="$4"
    awk -v n="$n" -v u="$user" -v p="$pass" \
        'BEGIN { for (i = 0; i < n; i++) printf "%s%d:%s%d\n", u, i, p, i }' >"$file"
    mosquitto_passwd -U "$file" || return 1
    [[ "$(grep -c '^[^:]*:\$' "$file")" -eq "$n" ]]
}

# The netns tests need root and iproute2.
check_netns() {
    if [[ "$(id -u)" -ne 0 ]]; then
        die "this test needs root: it creates a network namespace and a veth pair (ip netns add, ip link add) and moves the clients into it (setns). Run it as root, e.g. sudo scripts/${0##*/}"
    fi
    command -v ip >/dev/null || die "the ip command (iproute2) is needed"
}

# Removes the namespace NS and the veth pair (if they exist).
drop_link() {
    ip netns del "$NS" 2>/dev/null || true
    ip link del "$VETH_HOST" 2>/dev/null || true
}

# A fresh namespace NS joined to this one by a veth pair: VETH_HOST with
# HOST_ADDR/30 here, VETH_CLIENT with CLIENT_ADDR/30 (and lo) inside NS.
make_link() {
    drop_link
    ip netns add "$NS"
    ip link add "$VETH_HOST" type veth peer name "$VETH_CLIENT"
    ip link set "$VETH_CLIENT" netns "$NS"
    ip addr add "$HOST_ADDR/30" dev "$VETH_HOST"
    ip link set "$VETH_HOST" up
    ip netns exec "$NS" ip addr add "$CLIENT_ADDR/30" dev "$VETH_CLIENT"
    ip netns exec "$NS" ip link set "$VETH_CLIENT" up
    ip netns exec "$NS" ip link set lo up
}
