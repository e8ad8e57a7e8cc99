#!/usr/bin/env bash
# store-compare: the measurement behind ringmq's persistence design (README,
# "Design notes": an append-only log on io_uring vs the fjall embedded store).
# A standalone Cargo project, not in the ringmq workspace. Reruns every
# measurement 3 times (bench: records/s and batch latency for batch 1, 16,
# 128 with fsync never/always; recovery of 1,000,000 records warm and cold;
# disk bytes per record) and prints the tables. About 3 minutes.
# DATA (default: a fresh directory under /tmp) is where the files go; put it
# on the disk you want to measure. Raw output goes to results/*.txt.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -q
B=$CARGO_TARGET_DIR/release/store-compare
D="${DATA:-$(mktemp -d /tmp/store-compare.XXXXXX)}"
trap 'rm -rf "$D/bench" "$D/rec-log" "$D/rec-fjall"' EXIT
SECS=${SECS:-2}
mkdir -p results "$D"
echo "data on: $(df -T "$D" | tail -1 | awk '{print $1, $2}')"
: > results/bench.txt
for rep in 1 2 3; do
  for design in log log-direct log-pwrite fjall; do
    for mode in never always; do
      for batch in 1 16 128; do
        "$B" bench $design $mode $batch "$D/bench" "$SECS" | tee -a results/bench.txt
      done
    done
  done
done
: > results/recovery.txt
for design in log fjall; do
  "$B" write $design "$D/rec-$design" 1000000 | tee -a results/recovery.txt
  for rep in 1 2 3; do "$B" recover $design "$D/rec-$design" | tee -a results/recovery.txt; done
  for rep in 1 2 3; do "$B" recover $design "$D/rec-$design" cold | tee -a results/recovery.txt; done
done
# fjall after an explicit memtable flush (data in SSTs, no journal replay)
"$B" flush "$D/rec-fjall" | sed 's/^/fjall-flushed /' | tee -a results/recovery.txt
for rep in 1 2 3; do "$B" recover fjall "$D/rec-fjall" | sed 's/^/flushed /' | tee -a results/recovery.txt; done
for rep in 1 2 3; do "$B" recover fjall "$D/rec-fjall" cold | sed 's/^/flushed /' | tee -a results/recovery.txt; done
du -sb "$D/rec-log" "$D/rec-fjall" | tee -a results/recovery.txt
python3 summarize.py
