//! `storm`: many clients with wills dropped at once; when do the wills
//! come? A thin layer over `keepalive`.
//!
//! `--cut close` (default, no root): once every client has its CONNACK
//! (and one synchronised PINGREQ), every socket is closed at the same
//! moment without DISCONNECT, so the broker must publish every will at
//! once; each will is timed from that moment. `--cut link` (root): the
//! clients connect from a fresh network namespace (`scenario::netns`)
//! and, after one synchronised PINGREQ, their link goes down, as
//! scripts/storm.sh did: only the broker's keep-alive notices.
//!
//! Owns: the flags and the namespace guard of one run. Invariants: the
//! namespace is deleted when the run ends, whatever the outcome.

use clap::{Args, ValueEnum};

use crate::cli::{Common, KeepaliveArgs};
use crate::error::BenchError;
use crate::report::Report;
use crate::scenario::keepalive;
use crate::scenario::netns::{self, NetNs};

/// How the clients are dropped.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Close every socket at once (FIN, no DISCONNECT); no root.
    Close,
    /// Take the namespace's link down (no FIN, no RST); root.
    Link,
}

/// `storm` flags.
#[derive(Args, Debug, Clone)]
pub struct StormArgs {
    /// Flags shared by every scenario. With `--cut link`, a loopback
    /// --host (the default) becomes the pair's host-side address.
    #[command(flatten)]
    pub common: Common,
    /// Clients with wills.
    #[arg(short = 'n', long, default_value_t = 1000)]
    pub clients: u64,
    /// Keep Alive of each client, seconds.
    #[arg(short = 'k', long, default_value_t = 5)]
    pub keepalive: u16,
    /// How the clients are dropped.
    #[arg(long, value_enum, default_value_t = Cut::Close)]
    pub cut: Cut,
    /// /16 in which `--cut link` picks its /30.
    #[arg(long, value_name = "A.B.0.0/16", default_value = "10.213.0.0/16")]
    pub subnet: String,
    /// Canaries timing QoS 1 round trips during the storm (0: none).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub canaries: usize,
    /// Seconds to keep waiting for wills after they are due.
    #[arg(long, default_value_t = 10.0)]
    pub extra_wait_secs: f64,
    /// A will later than its due time + this many ms counts as late.
    #[arg(long, default_value_t = 100)]
    pub margin_ms: u64,
}

/// Whether `host` is a loopback name or address (not reachable from a
/// namespace).
pub fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

/// The keepalive flags a run of `storm` uses (no namespace yet).
pub fn keepalive_args(a: &StormArgs) -> KeepaliveArgs {
    KeepaliveArgs {
        common: a.common.clone(),
        clients: a.clients,
        keepalive: a.keepalive,
        margin_ms: a.margin_ms,
        pings: 0,
        will_prefix: "ringmq-bench/wills".into(),
        extra_wait_secs: a.extra_wait_secs,
        half_open: a.cut == Cut::Link,
        client_netns: None,
        after_connect: None,
        sync_ping: true,
        canaries: a.canaries,
        canary_interval_ms: 50,
        close_at_once: a.cut == Cut::Close,
    }
}

/// Run keepalive `k` with its clients in a fresh namespace of `subnet`,
/// cut after they connect; a loopback --host becomes the host side.
pub fn run_in_netns(mut k: KeepaliveArgs, subnet: &str) -> Result<Report, BenchError> {
    let subnet = netns::parse_subnet(subnet).map_err(BenchError::Setup)?;
    let ns = NetNs::create(subnet)?;
    if is_loopback(&k.common.host) {
        k.common.host = ns.addrs.host.to_string();
    }
    k.client_netns = Some(ns.name.clone());
    k.after_connect = Some(ns.cut_command());
    let (host, port) = (k.common.host.clone(), k.common.port);
    let mut report = keepalive::run(&k)
        .map_err(|e| BenchError::Setup(format!("{e}; {}", netns::unreachable_hint(&host, port))))?;
    if let Some(crate::report::Value::Int(0)) = report.get("clients_connected") {
        report.note(netns::unreachable_hint(&host, port));
    }
    drop(ns);
    Ok(report)
}

/// Run the storm scenario; one report.
pub fn run(a: &StormArgs) -> Result<Report, BenchError> {
    let k = keepalive_args(a);
    let mut report = match a.cut {
        Cut::Close => keepalive::run(&k)?,
        Cut::Link => run_in_netns(k, &a.subnet)?,
    };
    report.scenario = "storm".into();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn flags_map_onto_keepalive() {
        let cli = crate::cli::Cli::try_parse_from(["rb", "storm", "-n", "50"]).unwrap();
        let crate::cli::Command::Storm(a) = cli.command else {
            panic!("storm")
        };
        assert_eq!(a.cut, Cut::Close);
        let k = keepalive_args(&a);
        assert!(k.close_at_once && k.sync_ping && !k.half_open);
        assert_eq!(k.window_ns(), (0, 100_000_000));
        assert!(k.validate().is_ok());
        let cli = crate::cli::Cli::try_parse_from(["rb", "storm", "--cut", "link"]).unwrap();
        let crate::cli::Command::Storm(a) = cli.command else {
            panic!("storm")
        };
        let k = keepalive_args(&a);
        assert!(k.half_open && !k.close_at_once);
        assert!(is_loopback("127.0.0.1") && is_loopback("localhost"));
        assert!(!is_loopback("10.213.0.1"));
    }
}
