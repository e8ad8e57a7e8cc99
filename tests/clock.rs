//! Time in the broker is monotonic only: keep-alive, will delays, session
//! and message expiry and the rate limits all run on `Instant` (one epoch
//! per broker, `src/shard/timers.rs`), so a wall-clock jump (NTP step, an
//! operator's `date -s`) cannot fire or postpone anything.
//!
//! Jumping the real clock would disturb the whole machine, so this test
//! checks the property at its source: no code of the broker or its crates
//! reads the wall clock. A new use of `SystemTime` (or `CLOCK_REALTIME`)
//! must be added to `ALLOWED` with the reason it cannot touch timing.

use std::path::{Path, PathBuf};

/// Files allowed to read the wall clock, and why.
/// - `src/persist/startup.rs`: persistence stores times as Unix ms (a
///   session's departure, expiry deadlines) so they mean the same after a
///   restart. The wall clock is read once at start, to fix the mapping
///   between the broker's monotonic ticks and Unix time (`WallClock`) and
///   to see how old the files are; every timer still runs on ticks, so a
///   jump while running changes nothing.
const ALLOWED: &[&str] = &["src/persist/startup.rs"];

const WALL_CLOCK: &[&str] = &["SystemTime", "UNIX_EPOCH", "CLOCK_REALTIME", "gettimeofday"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_broker_code_reads_the_wall_clock() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [
        "src",
        "crates/codec/src",
        "crates/wheel/src",
        "crates/topic/src",
        "crates/session/src",
        "crates/route/src",
    ] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 20, "found only {} files", files.len());
    let mut found = Vec::new();
    for file in &files {
        let rel = file
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if ALLOWED.contains(&rel.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("read source");
        for (n, line) in text.lines().enumerate() {
            if WALL_CLOCK.iter().any(|w| line.contains(w)) {
                found.push(format!("{rel}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "wall-clock time in broker code (timing must be monotonic):\n{}",
        found.join("\n")
    );
}
