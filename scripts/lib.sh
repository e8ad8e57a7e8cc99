# lib.sh: what the side-by-side scripts share. Sourced, not run. Expects
# ROOT, TARGET_DIR, BIN, BROKERS and BUILD to be set and die() defined.

# The tools a run needs: taskset, python3 (the table), and Mosquitto when
# it is in the broker list.
check_tools() {
    command -v taskset >/dev/null || die "taskset (util-linux) is needed"
    command -v python3 >/dev/null || die "python3 is needed (for the table)"
    if [[ ",$BROKERS," == *",mosquitto,"* ]] && ! command -v mosquitto >/dev/null; then
        die "mosquitto is not installed (Debian/Ubuntu: apt-get install -y mosquitto), or use --brokers ringmq"
    fi
}

# Builds ringmq and ringmq-bench in release (unless BUILD=0) and checks the
# binaries are there.
build_binaries() {
    if [[ $BUILD -eq 1 ]]; then
        echo "building ringmq and ringmq-bench (release, $TARGET_DIR)..." >&2
        (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET_DIR" timeout 3600 nice -n 10 \
            cargo build --release -q -p ringmq --bin ringmq -p ringmq-bench) \
            || die "build failed"
    fi
    [[ -x "$BIN/ringmq" && -x "$BIN/ringmq-bench" ]] || die "no binaries in $BIN (drop --no-build)"
}
