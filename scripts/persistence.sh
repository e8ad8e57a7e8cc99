#!/usr/bin/env bash
# persistence.sh: what persistence costs (issue 16), ringmq (this checkout,
# --shards 1) and Mosquitto side by side, and how fast ringmq recovers a
# store of --messages queued messages after kill -9.
#
# Measurements:
#   throughput  `ringmq-bench pubsub` QoS 1, 1 publisher -> 1 subscriber,
#               64-byte payload, 64 in flight, --duration-secs at max rate,
#               the subscriber with a persistent session
#               (--persistent-subscribers: 3.1.1 Clean Session 0), so the
#               broker has something to store: a clean session's messages
#               are never written. One fresh broker (and store) per row:
#                 ringmq without --persistence-dir
#                 ringmq --persistence-dir --fsync never
#                 ringmq --persistence-dir --fsync always
#                 ringmq --persistence-dir --fsync interval (the default,
#                   --fsync-interval-ms 1000)
#                 Mosquitto, persistence false (the reference)
#                 Mosquitto, persistence true + persistence_location: it
#                   writes mosquitto.db only on autosave (autosave_interval,
#                   default 1800 s) and on exit, so during the run it
#                   writes nothing (the table shows the db size at exit)
#               Columns: delivered msgs/s, lost / duplicated, latency,
#               broker CPU, the broker's write_bytes (/proc/PID/io: what
#               it sent to the storage layer) per delivered message, and
#               the store's size (du -sb) at the end.
#   recovery    ringmq only, --persistence-dir with the default --fsync
#               interval, --max-queued-messages --messages and
#               --max-queued-bytes 512 x --messages: one offline persistent
#               session (mosquitto_sub -V 5 -x 3600 -c, subscribed at QoS 1,
#               then gone), filled with --messages QoS 1 64-byte messages
#               by `ringmq-bench pubsub -S 0 --messages N`; du -sb of the
#               store (the log); kill -9 of the broker; a restart on the
#               same store, timed from exec to its `ringmq started` line
#               (both wall-clock: $EPOCHREALTIME before exec, the log
#               line's own timestamp), and the `ms=` of its `persistence:
#               recovered ...` line (reading the store, rebuilding it and
#               writing the new snapshot); du -sb again (the new
#               snapshot); then the session resumed (mosquitto_sub -c,
#               clean start 0, -C N -W --timeout): messages received,
#               distinct sequence numbers (the stamp in each payload),
#               out of order, and the time it took (bound by mosquitto_sub).
#               Bytes per message = du / --messages (the session's own
#               records included).
#
# The store directories are under the run's temporary directory in /tmp
# (the header names its filesystem, from df -T). The broker is pinned to
# --broker-cpu (default 0) and the tools to --tool-cpu (default 1) with
# taskset; ringmq-bench is given the broker's PID. Every broker is stopped
# by its own PID (SIGTERM, then SIGKILL after 5 s; kill -9 by PID for the
# crash). Loopback only; every tool run and wait has a time limit
# (--timeout). On a 2-vCPU machine that others use the figures are noisy.
# Needs mosquitto_sub (the recovery's session) and, for its column,
# mosquitto.
#
# Usage:
#   scripts/persistence.sh [options]
# Options:
#   --only LIST              measurements (default: throughput,recovery)
#   --brokers LIST           ringmq,mosquitto (default: both; recovery is ringmq's)
#   --duration-secs S        seconds of publishing per throughput row (default 8)
#   --messages N             messages stored for the recovery (default 1000000)
#   --broker-cpu LIST        CPUs for the broker (default 0)
#   --tool-cpu N             CPU for ringmq-bench and mosquitto_sub (default 1)
#   --timeout SECS           limit per tool run, per restart and per replay (default 120)
#   --label TEXT             printed in the header (e.g. the commit)
#   --keep DIR               keep every run's JSON, broker log, config and store in DIR
#   --no-build               use the binaries already built
# Example:
#   CARGO_TARGET_DIR=/tmp/t scripts/persistence.sh --messages 200000 --duration-secs 5
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/release"

ALL_TESTS="throughput,recovery"
ONLY="$ALL_TESTS"
BROKERS="ringmq,mosquitto"
DURATION=8
MESSAGES=1000000
BROKER_CPU=0
TOOL_CPU=1
RUN_TIMEOUT=120
LABEL=""
KEEP=""
BUILD=1
SHARED_OPTS="--only --brokers --timeout"

die() { echo "persistence.sh: $*" >&2; exit 2; }
# shellcheck source=SCRIPTDIR/lib.sh
source "$ROOT/scripts/lib.sh"

while [[ $# -gt 0 ]]; do
    case "$1" in
        --duration-secs) [[ $# -ge 2 ]] || die "--duration-secs needs a number"; DURATION="$2"; shift 2 ;;
        --messages) [[ $# -ge 2 ]] || die "--messages needs a number"; MESSAGES="$2"; shift 2 ;;
        *) shared_option "$@"
           [[ $OPT_WORDS -gt 0 ]] || die "unknown option $1 (see --help)"
           shift "$OPT_WORDS" ;;
    esac
done
parse_tests
parse_brokers
[[ "$DURATION" =~ ^[0-9]+$ && "$DURATION" -ge 1 && "$DURATION" -le 600 ]] || die "--duration-secs must be in 1..600"
[[ "$MESSAGES" =~ ^[0-9]+$ && "$MESSAGES" -ge 1 && "$MESSAGES" -le 10000000 ]] || die "--messages must be in 1..10000000"
[[ "$RUN_TIMEOUT" =~ ^[0-9]+$ && "$RUN_TIMEOUT" -ge 30 ]] || die "--timeout must be at least 30"
check_tools
if [[ ",$ONLY," == *",recovery,"* && ",$BROKERS," == *",ringmq,"* ]] && ! command -v mosquitto_sub >/dev/null; then
    die "mosquitto_sub is needed for the recovery (Debian/Ubuntu: apt-get install -y mosquitto-clients), or use --only throughput"
fi
build_binaries

start_run persistence
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
# Mosquitto started as root drops to the mosquitto user before it writes
# its db: let that group (only) into the run directory.
MOSQ_USER=""
if [[ $EUID -eq 0 ]] && id mosquitto >/dev/null 2>&1; then
    MOSQ_USER=mosquitto
    chgrp mosquitto "$TMP"
    chmod 750 "$TMP"
fi

has_test() { [[ ",$ONLY," == *",$1,"* ]]; }
has_broker() { [[ ",$BROKERS," == *",$1,"* ]]; }

# The bytes PID has sent to the storage layer (empty if unreadable).
write_bytes() {
    sed -n 's/^write_bytes: //p' "/proc/$1/io" 2>/dev/null || true
}

# du -sb of DIR in bytes (0 when it does not exist).
dir_bytes() {
    if [[ -d "$1" ]]; then du -sb "$1" | cut -f1; else echo 0; fi
}

# The files of store DIR with their sizes, one "path bytes" a line.
store_files() {
    if [[ -d "$1" ]]; then (cd "$1" && find . -type f -printf '%P %s\n' | sort); fi
}

PUBSUB=(pubsub -P 1 -S 1 -T 1 --qos 1 --payload 64 --inflight 64
    --duration-secs "$DURATION" --drain-ms 2000 --persistent-subscribers)

# throughput CONFIG BROKER: one throughput row. CONFIG is off, never,
# always or interval (ringmq's --fsync) for ringmq, off or persist for
# Mosquitto. Writes TMP/CONFIG.BROKER.{json,log,err,disk} (and .conf and
# .store).
throughput() {
    local cfg="$1" broker="$2" port out store wb0 wb1 du_run
    port="$(free_port 1)" || die "no free port"
    out="$TMP/$cfg.$broker"
    store="$out.store"
    local cmd=()
    case "$broker" in
        ringmq)
            cmd=("$BIN/ringmq" --listen "127.0.0.1:$port" --shards 1 --log warn)
            if [[ "$cfg" != off ]]; then cmd+=(--persistence-dir "$store" --fsync "$cfg"); fi ;;
        mosquitto)
            {
                echo "listener $port 127.0.0.1"
                echo "allow_anonymous true"
                echo "max_connections -1"
                if [[ "$cfg" == persist ]]; then
                    echo "persistence true"
                    echo "persistence_location $store/"
                else
                    echo "persistence false"
                fi
            } >"$out.conf"
            if [[ "$cfg" == persist ]]; then
                mkdir -p "$store"
                if [[ -n "$MOSQ_USER" ]]; then chown "$MOSQ_USER:" "$store"; fi
            fi
            cmd=(mosquitto -c "$out.conf") ;;
    esac
    echo "== throughput $cfg vs $broker on 127.0.0.1:$port (CPU $BROKER_CPU): ${cmd[*]}" >&2
    start_broker "$BROKER_CPU" "$out.log" "${cmd[@]}"
    broker_listening "$out" "$broker" "$port" || return 0
    wb0="$(write_bytes "$BROKER_PID")"
    run_tool "$out" "$RUN_TIMEOUT" "${PUBSUB[@]}" --host 127.0.0.1 --port "$port"
    wb1="$(write_bytes "$BROKER_PID")"
    note_died "$out" "$broker" "throughput $cfg"
    du_run="$(dir_bytes "$store")"
    stop_broker
    {
        echo "write_bytes=$(( ${wb1:-0} - ${wb0:-0} ))"
        [[ -n "$wb0" && -n "$wb1" ]] || echo "write_bytes_error=/proc/PID/io unreadable"
        echo "store=$([[ "$cfg" == off ]] && echo 0 || echo 1)"
        echo "du_run=$du_run"
        echo "du_exit=$(dir_bytes "$store")"
    } >"$out.disk"
}

# recovery: fill, kill -9, restart, replay (see the header). Writes
# TMP/recovery.* and the key=value lines of TMP/recovery.vals.
recovery() {
    local out="$TMP/recovery" store="$TMP/recovery.store" port vals="$TMP/recovery.vals"
    local topic="pbench/t/0" session="pbench-keeper" t0 t1 deadline rc
    : >"$vals"
    port="$(free_port 1)" || die "no free port"
    local cmd=("$BIN/ringmq" --listen "127.0.0.1:$port" --shards 1 --log info
        --persistence-dir "$store" --max-queued-messages "$MESSAGES"
        --max-queued-bytes "$((MESSAGES * 512))")
    local sub=(taskset -c "$TOOL_CPU" mosquitto_sub
        -h 127.0.0.1 -p "$port" -V 5 -x 3600 -c -i "$session" -q 1 -t "$topic")
    echo "== recovery: fill $MESSAGES messages on 127.0.0.1:$port (CPU $BROKER_CPU): ${cmd[*]}" >&2
    start_broker "$BROKER_CPU" "$out.fill.log" "${cmd[@]}"
    if ! broker_listening "$out.fill" ringmq "$port"; then
        echo "error=the broker did not start for the fill" >>"$vals"; return 0
    fi
    # The offline session: subscribe at QoS 1, leave.
    if ! timeout --kill-after=5 30 "${sub[@]}" -E >"$out.session.out" 2>&1; then
        echo "error=mosquitto_sub could not make the persistent session: $(tail -1 "$out.session.out")" >>"$vals"
        stop_broker; return 0
    fi
    run_tool "$out.fill" "$RUN_TIMEOUT" pubsub -P 1 -S 0 --qos 1 --payload 64 --inflight 64 \
        --messages "$MESSAGES" --duration-secs "$((RUN_TIMEOUT - 20))" --drain-ms 5000 \
        --topic-prefix "${topic%/0}" --host 127.0.0.1 --port "$port"
    note_died "$out.fill" ringmq "the fill"
    echo "du_fill=$(dir_bytes "$store")" >>"$vals"
    store_files "$store" >"$out.fill.files"
    if [[ -f "$out.fill.died" ]]; then
        echo "error=the broker died during the fill" >>"$vals"; BROKER_PID=""; return 0
    fi
    echo "== recovery: kill -9 $BROKER_PID, restart on the same store" >&2
    kill -KILL "$BROKER_PID"
    wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=""

    t0="$EPOCHREALTIME"
    start_broker "$BROKER_CPU" "$out.restart.log" "${cmd[@]}"
    deadline=$((SECONDS + RUN_TIMEOUT))
    while ! grep -q 'ringmq started' "$out.restart.log" 2>/dev/null; do
        if ! kill -0 "$BROKER_PID" 2>/dev/null; then
            echo "error=the broker exited during the restart: $(tail -1 "$out.restart.log" | sed 's/\x1b\[[0-9;]*m//g')" >>"$vals"
            BROKER_PID=""; return 0
        fi
        if ((SECONDS >= deadline)); then
            echo "error=no 'ringmq started' within $RUN_TIMEOUT s of the restart" >>"$vals"
            stop_broker; return 0
        fi
        sleep 0.01
    done
    t1="$EPOCHREALTIME"
    echo "exec_at=$t0" >>"$vals"
    echo "started_seen_at=$t1" >>"$vals"
    if ! broker_listening "$out.restart" ringmq "$port"; then
        echo "error=the restarted broker does not listen" >>"$vals"; return 0
    fi
    echo "du_restart=$(dir_bytes "$store")" >>"$vals"
    store_files "$store" >"$out.restart.files"

    echo "== recovery: resume the session, wait for $MESSAGES messages (at most $RUN_TIMEOUT s)" >&2
    t0="$EPOCHREALTIME"
    set +e
    timeout --kill-after=5 "$((RUN_TIMEOUT + 10))" "${sub[@]}" -C "$MESSAGES" -W "$RUN_TIMEOUT" \
        -F '%x' 2>"$out.replay.err" | awk '
        { s = substr($0, 1, 16); n++
          if (!(s in seen)) { seen[s] = 1; d++ }
          if (n > 1 && s <= prev) back++
          if (n == 1) first = s
          prev = s }
        END { printf "received=%d\ndistinct=%d\nout_of_order=%d\nfirst_seq=%s\nlast_seq=%s\n",
              n, d, back, first, prev }' >>"$vals"
    rc="${PIPESTATUS[0]}"
    set -e
    t1="$EPOCHREALTIME"
    echo "replay_s=$(python3 -c "print(f'{$t1 - $t0:.3f}')")" >>"$vals"
    echo "replay_rc=$rc" >>"$vals"
    note_died "$out.restart" ringmq "the replay"
    sed 's/\x1b\[[0-9;]*m//g' "$out.fill.log" "$out.restart.log" \
        | grep -E ' (WARN|ERROR) ' | grep -v 'no --password-file' >"$out.warnings" || true
    stop_broker
}

if has_test throughput; then
    if has_broker ringmq; then
        for cfg in off never always interval; do throughput "$cfg" ringmq; done
    fi
    if has_broker mosquitto; then
        for cfg in off persist; do throughput "$cfg" mosquitto; done
    fi
fi
if has_test recovery; then
    if has_broker ringmq; then recovery; else echo "(recovery skipped: it is ringmq's, and --brokers has no ringmq)" >&2; fi
fi

run_header
fs="$(df -T "$TMP" | awk 'NR == 2 { print $2 " on " $1 " (mounted on " $7 ")" }')"
line="ringmq $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'): --shards 1"
if has_broker mosquitto; then line+="; Mosquitto: $(mosquitto_version)"; fi
echo "$line; stores in $TMP: $fs"
echo "load average (1/5/15 min) at the start: $LOAD_BEFORE, at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on this machine skews the figures)"
echo
python3 - "$TMP" "$ONLY" "$BROKERS" "$DURATION" "$MESSAGES" "$RUN_TIMEOUT" "$ROOT/scripts" <<'EOF'
import os, re, sys
from datetime import datetime, timezone
tmp, tests, brokers = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(",")
duration, messages, limit = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
sys.path.insert(0, sys.argv[7])
from table import kv, load, ms, num

def size(b):
    b = int(b)
    if b >= 10 * 1024 * 1024:
        return f"{b / 1024 / 1024:,.1f} MiB"
    if b >= 10 * 1024:
        return f"{b / 1024:,.1f} KiB"
    return f"{b:,} B"

notes = []
if "throughput" in tests:
    rows = []
    if "ringmq" in brokers:
        rows += [("off", "ringmq", "ringmq, no persistence"),
                 ("never", "ringmq", "ringmq, --fsync never"),
                 ("always", "ringmq", "ringmq, --fsync always"),
                 ("interval", "ringmq", "ringmq, --fsync interval (default, 1000 ms)")]
    if "mosquitto" in brokers:
        rows += [("off", "mosquitto", "Mosquitto, persistence false"),
                 ("persist", "mosquitto", "Mosquitto, persistence true (autosave 1800 s)")]
    print(f"Throughput: QoS 1, 1 publisher -> 1 persistent-session subscriber (Clean Session 0), "
          f"64 B payload, 64 in flight, {duration} s at max rate")
    print()
    print("| broker | delivered msgs/s | lost / dup | latency p50 / p99 (ms) | broker / tool CPU (%) "
          "| written to disk (B per msg) | store on disk |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for cfg, broker, label in rows:
        r = load(tmp, f"{cfg}", broker)
        d = kv(os.path.join(tmp, f"{cfg}.{broker}.disk"))
        if "error" in r:
            notes.append(f"{label}: {r['error']}")
            print(f"| {label} | n/a | n/a | n/a | n/a | n/a | n/a |")
            continue
        if r.get("died"):
            notes.append(f"{label}: the broker DIED during the run")
        for n in r.get("notes", []):
            notes.append(f"{label}: {n}")
        delivered = r.get("delivered", 0)
        lost = f"{r.get('lost', 0):,} / {r.get('duplicates', 0):,}"
        lat = ms(r, "latency_p50_us", "latency_p99_us")
        cpu = num(r, "broker_cpu_pct", "{:.0f}") + " / " + num(r, "tool_cpu_pct", "{:.0f}")
        if "write_bytes" in d and "write_bytes_error" not in d:
            wb = int(d["write_bytes"])
            per = f" ({wb / delivered:,.0f})" if delivered else ""
            written = size(wb) + per
        else:
            written = "n/a"
        if d.get("store") == "1":
            key = "du_exit" if broker == "mosquitto" else "du_run"
            store = size(d.get(key, 0)) + (" (db at exit)" if broker == "mosquitto" else "")
        else:
            store = "-"
        print(f"| {label} | {num(r, 'delivered_per_s', '{:,.0f}')} | {lost} | {lat} | {cpu} "
              f"| {written} | {store} |")
    print()
    print("Written to disk: the broker's write_bytes in /proc/PID/io over the run (pages it dirtied "
          "in files; the kernel writes them back later with --fsync never), per delivered message. "
          "Store on disk: du -sb of the store directory at the end of the run, before the broker "
          "stops (ringmq), or after it exits (Mosquitto).")
    if "mosquitto" in brokers:
        print("Mosquitto with persistence true writes mosquitto.db only on autosave "
              "(autosave_interval, default 1800 s) and on exit: during the run it writes "
              "nothing, so a crash loses everything since the last save; its row costs "
              "what in-memory queuing does.")
    print()

if "recovery" in tests and "ringmq" in brokers:
    v = kv(os.path.join(tmp, "recovery.vals"))
    fill = load(tmp, "recovery", "fill")
    print(f"Recovery: ringmq, one offline persistent session (v5, expiry 3600 s, QoS 1) holding "
          f"{messages:,} QoS 1 64 B messages, --fsync interval, kill -9, restart")
    print()
    rec = {}
    started_ts = None
    try:
        with open(os.path.join(tmp, "recovery.restart.log"), errors="replace") as f:
            for line in f:
                line = re.sub(r"\x1b\[[0-9;]*m", "", line)
                ts = line.split(" ", 1)[0]
                if "persistence: recovered" in line:
                    rec = dict(re.findall(r"(\w+)=(\S+)", line))
                if "ringmq started" in line and started_ts is None:
                    try:
                        started_ts = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                            tzinfo=timezone.utc).timestamp()
                    except ValueError:
                        pass
    except OSError:
        pass
    def per_msg(key):
        if key not in v:
            return "n/a"
        b = int(v[key])
        return f"{size(b)} ({b / messages:,.1f} B per message)"
    rows = []
    if "error" in fill:
        rows.append(("fill: messages published (PUBACK received)", "n/a"))
        notes.append(f"recovery fill: {fill['error']}")
    else:
        rows.append(("fill: messages published (PUBACK received)",
                     f"{fill.get('sent', 0):,} ({fill.get('puback', 0):,})"))
        rows.append(("fill: msgs/s (broker CPU %)",
                     num(fill, "sent_per_s", "{:,.0f}") + " (" + num(fill, "broker_cpu_pct", "{:.0f}") + ")"))
        if fill.get("sent") != messages or fill.get("puback") != messages:
            notes.append(f"recovery fill: {fill.get('sent')} sent and {fill.get('puback')} acknowledged, "
                         f"not {messages:,} (time limit {limit} s?)")
        for n in fill.get("notes", []):
            notes.append(f"recovery fill: {n}")
    rows.append(("store after the fill (du -sb: log)", per_msg("du_fill")))
    if "exec_at" in v:
        exec_at = float(v["exec_at"])
        if started_ts is not None:
            rows.append(("restart: exec -> `ringmq started` (ms)", f"{(started_ts - exec_at) * 1000:,.0f}"))
        else:
            rows.append(("restart: exec -> `ringmq started` seen (ms, polled)",
                         f"{(float(v['started_seen_at']) - exec_at) * 1000:,.0f}"))
    else:
        rows.append(("restart: exec -> `ringmq started` (ms)", "n/a"))
    rows.append(("restart: `persistence: recovered` ms=", rec.get("ms", "n/a")))
    if rec:
        rows.append(("recovered sessions / messages / retained",
                     f"{int(rec.get('sessions', 0)):,} / {int(rec.get('messages', 0)):,} / "
                     f"{int(rec.get('retained', 0)):,}"))
        rows.append(("recovered read_bytes", size(rec.get("read_bytes", 0))))
        if int(rec.get("messages", -1)) != messages:
            notes.append(f"recovery: the broker recovered {int(rec.get('messages', 0)):,} messages, "
                         f"not the {messages:,} stored")
    rows.append(("store after the restart (du -sb: new snapshot)", per_msg("du_restart")))
    if "received" in v:
        received = int(v["received"])
        rows.append((f"replay: messages received by the resumed session (limit {limit} s)",
                     f"{received:,} ({int(v['distinct']):,} distinct, "
                     f"{int(v['out_of_order']):,} out of order)"))
        secs = float(v.get("replay_s", 0))
        rows.append(("replay: seconds (msgs/s), mosquitto_sub-bound",
                     f"{secs:.2f} ({received / secs:,.0f})" if secs > 0 else "n/a"))
        if received != messages or int(v["distinct"]) != messages:
            notes.append(f"recovery replay: {received:,} received, {int(v['distinct']):,} distinct, "
                         f"expected {messages:,} (mosquitto_sub exit {v.get('replay_rc')}; "
                         f"first/last sequence {v.get('first_seq')}/{v.get('last_seq')})")
    else:
        rows.append(("replay: messages received by the resumed session", "n/a"))
    if "error" in v:
        notes.append(f"recovery: {v['error']}")
    if os.path.exists(os.path.join(tmp, "recovery.fill.died")) or \
            os.path.exists(os.path.join(tmp, "recovery.restart.died")):
        notes.append("recovery: the broker DIED")
    try:
        with open(os.path.join(tmp, "recovery.warnings")) as f:
            warnings = [l.strip() for l in f if l.strip()]
    except OSError:
        warnings = []
    if warnings:
        notes.append(f"recovery: {len(warnings)} WARN/ERROR lines in the broker's logs "
                     "(besides 'no --password-file'), the first: " + " || ".join(warnings[:3]))
    print("| measurement | ringmq |")
    print("|---|---:|")
    for label, cell in rows:
        print(f"| {label} | {cell} |")
    print()
    for name in ("fill", "restart"):
        try:
            with open(os.path.join(tmp, f"recovery.{name}.files")) as f:
                files = ", ".join(f"{p} {size(b)}" for p, b in (l.split() for l in f if l.strip()))
        except OSError:
            files = "n/a"
        print(f"Store files after the {name}: {files}")
    print("Bytes per message: du -sb of the store / messages stored (the session's own records "
          "and the files' headers included).")
for n in notes:
    print("- " + n)
EOF
