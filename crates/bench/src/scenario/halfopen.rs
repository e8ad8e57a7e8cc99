//! `halfopen`: a true half-open test, a thin layer over `keepalive`. N
//! clients with Keep Alive K and wills connect from a fresh network
//! namespace (`scenario::netns`), then their side of the link goes down:
//! no FIN, no RST; only the broker's keep-alive can notice. Reported:
//! wills received / expected and each will's time after its deadline.
//!
//! Owns: the flags and the namespace guard of one run. Invariants: needs
//! root; the namespace is deleted when the run ends, whatever the outcome.

use clap::Args;

use crate::cli::{Common, KeepaliveArgs};
use crate::error::BenchError;
use crate::report::Report;
use crate::scenario::storm;

/// `halfopen` flags.
#[derive(Args, Debug, Clone)]
pub struct HalfopenArgs {
    /// Flags shared by every scenario. A loopback --host (the default)
    /// becomes the pair's host-side address: the broker must listen there
    /// or on 0.0.0.0.
    #[command(flatten)]
    pub common: Common,
    /// Clients with wills.
    #[arg(short = 'n', long, default_value_t = 200)]
    pub clients: u64,
    /// Keep Alive of each client, seconds.
    #[arg(short = 'k', long, default_value_t = 2)]
    pub keepalive: u16,
    /// /16 in which the pair's /30 is picked.
    #[arg(long, value_name = "A.B.0.0/16", default_value = "10.213.0.0/16")]
    pub subnet: String,
    /// Seconds to keep waiting for wills after they are due.
    #[arg(long, default_value_t = 5.0)]
    pub extra_wait_secs: f64,
    /// A will later than 1.5 x K + this many ms counts as late.
    #[arg(long, default_value_t = 100)]
    pub margin_ms: u64,
}

/// The keepalive flags a run of `halfopen` uses (no namespace yet).
pub fn keepalive_args(a: &HalfopenArgs) -> KeepaliveArgs {
    KeepaliveArgs {
        common: a.common.clone(),
        clients: a.clients,
        keepalive: a.keepalive,
        margin_ms: a.margin_ms,
        pings: 0,
        will_prefix: "ringmq-bench/wills".into(),
        extra_wait_secs: a.extra_wait_secs,
        half_open: true,
        client_netns: None,
        after_connect: None,
        sync_ping: false,
        canaries: 0,
        canary_interval_ms: 50,
        close_at_once: false,
    }
}

/// Run the halfopen scenario; one report.
pub fn run(a: &HalfopenArgs) -> Result<Report, BenchError> {
    let mut report = storm::run_in_netns(keepalive_args(a), &a.subnet)?;
    report.scenario = "halfopen".into();
    Ok(report)
}
