#!/usr/bin/env bash
# soak.sh: the issue-12 proof. A broker under 30 minutes of mixed load
# (ringmq-bench soak: QoS 0/1/2 publishers and persistent subscribers,
# subscribers and publishers reset with an RST and reconnecting, client ids
# taken over again and again, silent clients whose keep-alive expires and
# whose wills a watcher must get, polite ones whose wills must not appear,
# retained churn checked by a subscriber, a QoS 1 canary every 50 ms) must
# lose no QoS 1/2 message, duplicate no QoS 2 one, miss no will, never
# stall, and give its memory back once the clients have left.
#
# Starts the broker on a free loopback port pinned to --broker-cpus
# (default: this checkout's ringmq, --shards 2) and records its resident
# memory (VmRSS of /proc/PID/status): at start (cold), after a short
# warm-up soak whose clients have all left (warm: what the allocator and
# the broker's tables keep once they have been used), every minute of the
# run, and after the run's clients left, polling up to 60 s for it to come
# back within the tolerance of the warm baseline (the cold one is printed
# too; a leak grows with the run's length, a warm-up does not hide it);
# and its peak (VmHWM or the largest sample). Runs ringmq-bench soak pinned to --tool-cpus; stops
# the broker by its PID (SIGTERM, SIGKILL after 5 s); prints a summary.
# Every step is bounded in time.
#
# Exit status: 0 when the verdict is a pass and the memory came back, 1
# when the soak found a failure (the tool's verdict, the memory, the broker
# exiting), 2 for bad options or a failed start.
#
# Usage:
#   scripts/soak.sh [options] [extra ringmq-bench soak args...]
# Options:
#   -d SECS                 load duration (default 1800)
#   --warmup SECS           warm-up soak before the baseline (default 60;
#                           0: none, the baseline is the cold one)
#   --broker 'CMD {PORT}'   run another broker ({PORT} is replaced), e.g.
#                           --broker 'mosquitto -p {PORT}'
#   --shards N              ringmq shards (default 2; ignored with --broker)
#   --broker-cpus LIST      CPUs for the broker (default 0-1)
#   --tool-cpus LIST        CPUs for ringmq-bench (default 0-1)
#   --threads N             ringmq-bench executors (default 2: the canary
#                           gets one to itself)
#   --rss-tolerance-pct P   "back to baseline": within P % of it (default 10)
#   --rss-tolerance-kib K   ... or within K KiB of it, whichever is larger
#                           (default 4096)
#   --json FILE             also keep the tool's JSON report in FILE
#   --keep DIR              keep the logs (broker, tool, RSS samples) in DIR
#   --no-build              use the binaries already built
# Examples:
#   scripts/soak.sh                       # the 30-minute proof
#   scripts/soak.sh -d 120                # a short run
#   scripts/soak.sh -d 300 --broker 'mosquitto -p {PORT}'
#   scripts/soak.sh -d 60 -- --rate 2000 --resetters 32
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/release"

DURATION=1800
WARMUP=60
BROKER_CMD=""
SHARDS=2
BROKER_CPUS=0-1
TOOL_CPUS=0-1
THREADS=2
TOL_PCT=10
TOL_KIB=4096
JSON_OUT=""
KEEP=""
BUILD=1

die() { echo "soak.sh: $*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        -d) [[ $# -ge 2 ]] || die "-d needs seconds"; DURATION="$2"; shift 2 ;;
        --warmup) [[ $# -ge 2 ]] || die "--warmup needs seconds"; WARMUP="$2"; shift 2 ;;
        --broker) [[ $# -ge 2 ]] || die "--broker needs 'CMD {PORT}'"; BROKER_CMD="$2"; shift 2 ;;
        --shards) SHARDS="$2"; shift 2 ;;
        --broker-cpus) BROKER_CPUS="$2"; shift 2 ;;
        --tool-cpus) TOOL_CPUS="$2"; shift 2 ;;
        --threads) THREADS="$2"; shift 2 ;;
        --rss-tolerance-pct) TOL_PCT="$2"; shift 2 ;;
        --rss-tolerance-kib) TOL_KIB="$2"; shift 2 ;;
        --json) JSON_OUT="$2"; shift 2 ;;
        --keep) KEEP="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        --) shift; break ;;
        -*) break ;;
        *) die "unknown argument $1" ;;
    esac
done
EXTRA=("$@")
for a in "${EXTRA[@]}"; do
    case "$a" in
        --port|--port=*|--host|--host=*|--broker-pid|--broker-pid=*|--json|--duration-secs|--duration-secs=*)
            die "$a is set by soak.sh" ;;
    esac
done
[[ "$DURATION" =~ ^[0-9]+$ && "$DURATION" -gt 0 ]] || die "-d: a whole number of seconds"
[[ "$WARMUP" =~ ^[0-9]+$ ]] || die "--warmup: a whole number of seconds"
[[ "$TOL_PCT" =~ ^[0-9]+$ && "$TOL_KIB" =~ ^[0-9]+$ ]] || die "tolerances are whole numbers"
command -v taskset >/dev/null || die "taskset (util-linux) is needed"
command -v python3 >/dev/null || die "python3 is needed (to read the JSON report)"
# shellcheck source=SCRIPTDIR/lib.sh
source "$ROOT/scripts/lib.sh"

if [[ $BUILD -eq 1 ]]; then
    what=(-p ringmq-bench)
    [[ -n "$BROKER_CMD" ]] || what=(-p ringmq --bin ringmq -p ringmq-bench)
    echo "building ${what[*]} (release, $TARGET_DIR)..." >&2
    (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET_DIR" timeout 1800 \
        cargo build --release -q "${what[@]}") || die "build failed"
fi
[[ -x "$BIN/ringmq-bench" ]] || die "no ringmq-bench in $BIN (drop --no-build)"
if [[ -z "$BROKER_CMD" ]]; then
    [[ -x "$BIN/ringmq" ]] || die "no ringmq in $BIN (drop --no-build)"
    BROKER_CMD="$BIN/ringmq --listen 127.0.0.1:{PORT} --shards $SHARDS --log warn"
    BROKER_NAME="ringmq --shards $SHARDS"
else
    BROKER_NAME="${BROKER_CMD%% *}"
    BROKER_NAME="${BROKER_NAME##*/}"
fi

TMP="$(mktemp -d /tmp/ringmq-soak.XXXXXX)"
BROKER_PID=""
SAMPLER_PID=""
TOOL_PID=""
cleanup() {
    stop_pid "$TOOL_PID"
    stop_pid "$SAMPLER_PID"
    stop_pid "$BROKER_PID"
    if [[ -n "$KEEP" ]]; then
        mkdir -p "$KEEP" && cp -r "$TMP"/. "$KEEP"/ && echo "logs kept in $KEEP" >&2
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT="$(free_port)" || die "no free port"

rss_kib() { # VmRSS of $1 in KiB, or empty
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || true
}
hwm_kib() { # VmHWM (peak RSS) of $1 in KiB, or empty
    awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || true
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

cmd="${BROKER_CMD//\{PORT\}/$PORT}"
echo "broker: $cmd (CPUs $BROKER_CPUS)" >&2
# shellcheck disable=SC2086 # the command line is meant to be split
start_broker "$BROKER_CPUS" "$TMP/broker.log" $cmd
if ! wait_listening "$PORT"; then
    kill -0 "$BROKER_PID" 2>/dev/null || die "the broker exited: $(tail -3 "$TMP/broker.log")"
    die "the broker is not listening on 127.0.0.1:$PORT"
fi
# Let start-up allocations settle before the baseline.
sleep 2
COLD="$(rss_kib "$BROKER_PID")"
[[ -n "$COLD" ]] || die "cannot read /proc/$BROKER_PID/status"
echo "cold RSS $(mib "$COLD") MiB" >&2
WARM_VERDICT="none"
BASELINE="$COLD"
if [[ "$WARMUP" -gt 0 ]]; then
    echo "warm-up: $WARMUP s of the same load" >&2
    set +e
    timeout --kill-after=10 $((WARMUP + 600)) taskset -c "$TOOL_CPUS" "$BIN/ringmq-bench" soak \
        --host 127.0.0.1 --port "$PORT" --threads "$THREADS" --duration-secs "$WARMUP" \
        --quiet --json "${EXTRA[@]}" >"$TMP/warmup.json" 2>"$TMP/warmup.err"
    warm_rc=$?
    set -e
    WARM_VERDICT="$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["verdict"])' "$TMP/warmup.json" 2>/dev/null || echo "no report (exit $warm_rc): $(tail -1 "$TMP/warmup.err")")"
    kill -0 "$BROKER_PID" 2>/dev/null || die "the broker exited during the warm-up: $(tail -3 "$TMP/broker.log")"
    sleep 2
    BASELINE="$(rss_kib "$BROKER_PID")"
    echo "warm-up verdict: $WARM_VERDICT; warm RSS $(mib "$BASELINE") MiB" >&2
fi

# One RSS sample a minute during the run (minute, KiB).
(
    minute=0
    while sleep 60; do
        minute=$((minute + 1))
        r="$(rss_kib "$BROKER_PID")"
        [[ -n "$r" ]] || exit 0
        echo "$minute $r" >>"$TMP/rss.txt"
        echo "[soak.sh] minute $minute: broker RSS $(mib "$r") MiB" >&2
    done
) &
SAMPLER_PID=$!

START_DATE="$(date -u '+%Y-%m-%d %H:%M UTC')"
# The tool is bounded by itself (its phases have deadlines); this limit
# only guards against a hang: the load, the drain, the wills and leaving.
LIMIT=$((DURATION + 600))
echo "soak: $DURATION s of mixed load against $BROKER_NAME on 127.0.0.1:$PORT (tool CPUs $TOOL_CPUS)" >&2
set +e
timeout --kill-after=10 "$LIMIT" taskset -c "$TOOL_CPUS" "$BIN/ringmq-bench" soak \
    --host 127.0.0.1 --port "$PORT" --broker-pid "$BROKER_PID" --threads "$THREADS" \
    --duration-secs "$DURATION" --json "${EXTRA[@]}" \
    >"$TMP/soak.json" 2> >(tee "$TMP/tool.err" | awk '{ if (NR % 60 == 0) { print; fflush() } }' >&2) &
TOOL_PID=$!
wait "$TOOL_PID"
TOOL_RC=$?
TOOL_PID=""
set -e
stop_pid "$SAMPLER_PID"
SAMPLER_PID=""

BROKER_ALIVE=1
kill -0 "$BROKER_PID" 2>/dev/null || BROKER_ALIVE=0
PEAK=""
AFTER=""
BACK=0
BACK_AFTER_S=""
if [[ $BROKER_ALIVE -eq 1 ]]; then
    # VmHWM is updated lazily by the kernel (it can trail VmRSS): the peak
    # is the larger of it and the samples.
    PEAK="$(hwm_kib "$BROKER_PID")"
    PEAK="$(awk -v p="${PEAK:-0}" '$2 > p { p = $2 } END { print p }' "$TMP/rss.txt" 2>/dev/null || echo "$PEAK")"
    limit_kib=$(awk -v b="$BASELINE" -v p="$TOL_PCT" -v k="$TOL_KIB" \
        'BEGIN { t = b * p / 100; if (t < k) t = k; printf "%d", b + t }')
    t0=$SECONDS
    while :; do
        AFTER="$(rss_kib "$BROKER_PID")"
        if [[ -n "$AFTER" && "$AFTER" -le "$limit_kib" ]]; then
            BACK=1; BACK_AFTER_S=$((SECONDS - t0)); break
        fi
        ((SECONDS - t0 < 60)) || break
        sleep 2
    done
fi
stop_pid "$BROKER_PID"
BROKER_PID=""
[[ -z "$JSON_OUT" ]] || cp "$TMP/soak.json" "$JSON_OUT"

COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
    COMMIT="$COMMIT+changes"
fi
CPU_MODEL="$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)"
RSS_SAMPLES="$(awk '{ printf "%s%.1f", (NR > 1 ? " " : ""), $2 / 1024 }' "$TMP/rss.txt" 2>/dev/null || true)"

if [[ ! -s "$TMP/soak.json" ]]; then
    echo "soak.sh: ringmq-bench produced no report (exit $TOOL_RC): $(tail -3 "$TMP/tool.err")" >&2
    [[ $BROKER_ALIVE -eq 1 ]] || echo "soak.sh: the broker exited during the run: $(tail -5 "$TMP/broker.log")" >&2
    exit 1
fi

python3 - "$TMP/soak.json" "$DURATION" "$BROKER_NAME" "$COMMIT" "$(nproc)" "$CPU_MODEL" \
    "$START_DATE" "$BASELINE" "${PEAK:-}" "${AFTER:-}" "$BACK" "${BACK_AFTER_S:-}" \
    "$TOL_PCT" "$TOL_KIB" "$BROKER_ALIVE" "$RSS_SAMPLES" "$COLD" "$WARMUP" "$WARM_VERDICT" <<'EOF'
import json, sys
(path, duration, broker, commit, ncpu, cpu, start, base, peak, after, back, back_s,
 tol_pct, tol_kib, alive, samples, cold, warmup, warm_verdict) = sys.argv[1:20]
r = json.loads(open(path).read().strip().splitlines()[-1])
def g(k, d="n/a"):
    v = r.get(k)
    return d if v is None else v
def n(k):
    v = g(k)
    return f"{v:,}" if isinstance(v, int) else str(v)
def mib(kib):
    return f"{int(kib) / 1024:.1f}" if kib else "n/a"
def ms(k):
    v = r.get(k)
    return f"{v / 1000:.1f}" if isinstance(v, (int, float)) else "n/a"
print(f"soak: {duration} s of mixed load against {broker} (commit {commit}), "
      f"{ncpu} vCPU {cpu}, started {start}, seed {g('seed')}")
print()
print("| figure | value |")
print("|---|---:|")
print(f"| load / drain (s) | {g('load_s')} / {g('drain_s')} |")
for q, what in [(0, "written"), (1, "PUBACKed"), (2, "PUBRECed")]:
    print(f"| QoS {q} sent ({what}) / expected / received / lost / duplicates | "
          f"{n(f'q{q}_sent')} / {n(f'q{q}_expected')} / {n(f'q{q}_received')} / "
          f"{n(f'q{q}_lost')} / {n(f'q{q}_duplicates')} |")
print(f"| QoS 1/2 publishes never acknowledged | {n('publishes_unacked')} |")
print(f"| wills expected / received / missing / after a normal DISCONNECT | "
      f"{n('wills_expected')} / {n('wills_received')} / {n('wills_missing')} / {n('wills_unexpected')} |")
print(f"| silent clients closed by keep-alive (CONNECT to close p50 / max ms) | "
      f"{n('silent_closed')} of {n('silent_clients')} ({g('silent_close_p50_ms')} / {g('silent_close_max_ms')}) |")
print(f"| take-overs (refused, old left open) | {n('takeovers')} ({n('takeovers_refused')}, {n('takeover_old_not_closed')}) |")
print(f"| resets by RST: subscribers / publishers | {n('resets')} / {n('publisher_resets')} |")
print(f"| sessions lost on reconnect | {n('sessions_lost')} |")
print(f"| retained set / cleared / checks / wrong | {n('retained_updates')} / {n('retained_clears')} / "
      f"{int(g('retained_checks', 0)) + int(g('retained_wildcard_checks', 0)):,} / {n('retained_wrong')} |")
print(f"| canary round trips / p99 / max (ms) | {n('canary_round_trips')} / {ms('canary_rtt_p99_us')} / {ms('canary_rtt_max_us')} |")
print(f"| longest subscriber gap under load (ms) | {g('delivery_gap_max_ms')} |")
print(f"| stalls (canary or subscriber > limit) | {n('stalls')} canary, {n('subscriber_stalls')} subscriber |")
print(f"| broker CPU (% of one core) | {g('broker_cpu_pct')} |")
if warmup != "0":
    print(f"| warm-up ({warmup} s) verdict | {warm_verdict} |")
    print(f"| broker RSS cold / warm baseline / peak / after (MiB) | {mib(cold)} / {mib(base)} / {mib(peak)} / {mib(after)} |")
else:
    print(f"| broker RSS baseline / peak / after (MiB) | {mib(base)} / {mib(peak)} / {mib(after)} |")
if alive != "1":
    print("| memory back to baseline | n/a: the broker exited |")
elif back == "1":
    print(f"| memory back to baseline | yes, after {back_s} s (within {tol_pct} % or {tol_kib} KiB of {mib(base)} MiB) |")
else:
    print(f"| memory back to baseline | NO within 60 s (tolerance {tol_pct} % or {tol_kib} KiB of {mib(base)} MiB) |")
print(f"| verdict | {g('verdict')} |")
if samples:
    print()
    print(f"broker RSS each minute (MiB): {samples}")
for note in r.get("notes", []):
    print(f"note: {note}")
EOF

STATUS=0
if [[ "$WARMUP" -gt 0 && "$WARM_VERDICT" != pass ]]; then
    echo "soak.sh: FAIL: the warm-up's verdict is not a pass: $WARM_VERDICT" >&2; STATUS=1
fi
if [[ $TOOL_RC -eq 3 ]]; then
    echo "soak.sh: FAIL: the soak's verdict is not a pass" >&2; STATUS=1
elif [[ $TOOL_RC -ne 0 ]]; then
    echo "soak.sh: FAIL: ringmq-bench exited with $TOOL_RC: $(tail -2 "$TMP/tool.err")" >&2; STATUS=1
fi
if [[ $BROKER_ALIVE -ne 1 ]]; then
    echo "soak.sh: FAIL: the broker exited during the run: $(tail -5 "$TMP/broker.log")" >&2; STATUS=1
elif [[ $BACK -ne 1 ]]; then
    echo "soak.sh: FAIL: the broker's memory did not come back to its baseline within 60 s" >&2; STATUS=1
fi
exit $STATUS
