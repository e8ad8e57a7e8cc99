//! ringmq-bench: a load generator for MQTT 3.1.1 / 5.0 brokers, good
//! enough to benchmark any of them (ringmq, Mosquitto, rumqttd, ...).
//!
//! Module map:
//! - `cli`: flags of every scenario and their validation.
//! - `runtime`: glommio executors (one per `--threads`, optionally
//!   pinned), progress counters and line, the cross-thread [`runtime::Latch`].
//! - `conn`: one MQTT connection over glommio with batched writes and
//!   copy-free decoding through `ringmq-codec`.
//! - `transport`: the optional TLS (`--tls`) and WebSocket (`--ws`) byte
//!   layers under every connection; `ws`: the WebSocket codec (pure).
//! - `template`: pre-encoded, stamped PUBLISH packets for the publishers.
//! - `pacing`: when each paced message is due (fixed rate, ramp; pure).
//! - `payload`: the payload stamp, lost/duplicate accounting and the
//!   publisher/subscriber/topic layout (pure).
//! - `hist`: HDR-style latency histogram and percentile summaries (pure).
//! - `procfs`: /proc and getrusage readings (CPU, RSS), the clock.
//! - `report`: the human-readable table and the one-line JSON.
//! - `html`: `--report`'s self-contained HTML page with SVG plots (pure).
//! - `scenario`: `conn`, `handshake`, `idle`, `keepalive`, `takeover`,
//!   `pubsub`, `attack` (with the `canary` it shares with `keepalive`),
//!   `soak`, `storm` and `halfopen` (thin layers over `keepalive`, with
//!   the `netns` pair they share) and the hidden `sink`, one file each.
//!
//! Invariants: the tool never touches a broker's internals: it measures
//! only what a client can see (plus /proc for `--broker-pid`). Hot paths
//! batch: one write per batch of packets, one read per up to 256 KiB, one
//! clock read per batch, counters updated per batch.

#![warn(missing_docs)]

pub mod cli;
pub mod compare;
pub mod conn;
pub mod error;
pub mod hist;
pub mod html;
pub mod pacing;
pub mod payload;
pub mod procfs;
pub mod report;
pub mod runtime;
pub mod scenario;
pub mod template;
pub mod transport;
pub mod ws;

use cli::{Cli, Command};
use error::BenchError;
use report::Report;

/// Run the scenario `cli` names and return its report, with the run's
/// time series.
pub fn run(cli: &Cli) -> Result<Report, BenchError> {
    let mut report = run_scenario(cli)?;
    if report.series.is_empty() {
        report.series = runtime::take_series();
    }
    Ok(report)
}

fn run_scenario(cli: &Cli) -> Result<Report, BenchError> {
    match &cli.command {
        Command::Conn(a) => scenario::conn::run(a),
        Command::Handshake(a) => scenario::handshake::run(a),
        Command::Idle(a) => scenario::idle::run(a),
        Command::Keepalive(a) => scenario::keepalive::run(a),
        Command::Takeover(a) => scenario::takeover::run(a),
        Command::Pubsub(a) => scenario::pubsub::run(a),
        Command::P2p(a) => scenario::pubsub::run_shape("p2p", a),
        Command::Fanout(a) => scenario::pubsub::run_shape("fanout", a),
        Command::Fanin(a) => scenario::pubsub::run_shape("fanin", a),
        Command::Sharedsub(a) => scenario::pubsub::run_shape("sharedsub", a),
        Command::Sink(a) => scenario::sink::run(a),
        Command::Attack(a) => scenario::attack::run(a),
        Command::Soak(a) => scenario::soak::run(a),
        Command::Storm(a) => scenario::storm::run(a),
        Command::Halfopen(a) => scenario::halfopen::run(a),
        Command::Compare(a) => compare::run(a),
    }
}

/// The flags every scenario shares, if `cli`'s command has them (the
/// hidden sink does not).
pub fn common(cli: &Cli) -> Option<&cli::Common> {
    match &cli.command {
        Command::Conn(a) => Some(&a.common),
        Command::Handshake(a) => Some(&a.common),
        Command::Idle(a) => Some(&a.common),
        Command::Keepalive(a) => Some(&a.common),
        Command::Takeover(a) => Some(&a.common),
        Command::Pubsub(a)
        | Command::P2p(a)
        | Command::Fanout(a)
        | Command::Fanin(a)
        | Command::Sharedsub(a) => Some(&a.common),
        Command::Sink(_) => None,
        Command::Attack(a) => Some(&a.common),
        Command::Soak(a) => Some(&a.common),
        Command::Storm(a) => Some(&a.common),
        Command::Halfopen(a) => Some(&a.common),
        Command::Compare(_) => None,
    }
}

/// Whether `cli` asked for JSON output.
pub fn wants_json(cli: &Cli) -> bool {
    match &cli.command {
        Command::Sink(a) => a.json,
        _ => common(cli).is_some_and(|c| c.json),
    }
}
