//! `handshake`: N times TCP connect (then the TLS handshake and the
//! WebSocket upgrade with `--tls` / `--ws`), CONNECT -> CONNACK,
//! DISCONNECT, close, and wait for the broker to close its side. Reports
//! handshakes/s, the latency of each stage and, with `--broker-pid`, the
//! broker's CPU time per handshake.
//!
//! Unlike `conn`, connections do not stay open, so N is not bounded by
//! the open-files limit and the broker's cost is the whole life of a
//! short connection: accept, handshake(s), session set-up and tear-down.
//! A handshake counts once its CONNACK arrived; a broker that then leaves
//! the connection open past `--close-wait-ms` is counted apart, and so is
//! one that closes with a reset (it closed with the client's WebSocket
//! close or TLS close_notify unread: harmless, but visible).
//!
//! Handshakes/s is successful handshakes over the time from the first TCP
//! connect to the last close. Broker CPU per handshake is the broker's
//! utime + stime (/proc/PID/stat) over the whole run divided by the
//! successful handshakes (clock-tick resolution, so use a few thousand).
//! When some failed (a refused CONNECT), attempts/s and broker CPU per
//! attempt count them too: what a storm of wrong passwords costs.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::cli::HandshakeArgs;
use crate::conn::{Closed, ReadSize};
use crate::error::BenchError;
use crate::procfs::{now_ns, CpuSample};
use crate::report::{Report, Value};
use crate::runtime::{run_executors, Progress};
use crate::scenario::{
    common_params, layers_label, machine_note, min_opt, paced_workers, per_sec, share_of, span_ns,
    CpuWindow, Failures, StageTimes, Target,
};

/// What one thread measured.
#[derive(Debug, Default)]
struct ThreadResult {
    ok: u64,
    failures: Failures,
    close_failures: Failures,
    closed_by_reset: u64,
    stages: StageTimes,
    first_start_ns: Option<u64>,
    last_end_ns: Option<u64>,
    tls: Option<String>,
}

/// Make N short connections; one report.
pub fn run(args: &HandshakeArgs) -> Result<Report, BenchError> {
    args.validate()?;
    let target = Target::from_common(&args.common)?;
    target
        .progress
        .target
        .store(args.connections, Ordering::Relaxed);
    let cpu = CpuWindow::start(args.common.broker_pid);
    let (t, a) = (Arc::clone(&target), args.clone());
    let results = run_executors(&args.common, "handshake", &target.progress, move |thread| {
        thread_main(thread, Arc::clone(&t), a.clone())
    })?;
    let own_end = CpuSample::own();
    let broker_end = cpu.broker_now();

    let mut total = ThreadResult::default();
    for r in results {
        total.ok += r.ok;
        total.failures.merge(&r.failures);
        total.close_failures.merge(&r.close_failures);
        total.closed_by_reset += r.closed_by_reset;
        total.stages.merge(&r.stages);
        total.first_start_ns = min_opt(total.first_start_ns, r.first_start_ns);
        total.last_end_ns = total.last_end_ns.max(r.last_end_ns);
        total.tls = total.tls.or(r.tls);
    }
    let mut report = Report::new("handshake");
    common_params(&mut report, &args.common);
    report.param("connections", Value::Int(args.connections));
    report.param("rate", Value::Text(args.rate.to_string()));
    report.param("concurrency", Value::Int(args.concurrency as u64));
    machine_note(&mut report);
    if let Some(tls) = &total.tls {
        report.text("tls", "TLS negotiated", tls.clone());
    }
    report.int("handshakes_ok", "handshakes ok", total.ok);
    total.failures.report(&mut report, "handshakes");
    total.close_failures.report(&mut report, "close");
    report.int(
        "closed_by_reset",
        "broker closed with a reset",
        total.closed_by_reset,
    );
    let span_ns = span_ns(total.first_start_ns, total.last_end_ns);
    report.float("elapsed_s", "elapsed (s)", span_ns as f64 / 1e9, 3);
    report.float(
        "handshakes_per_s",
        "handshakes/s",
        per_sec(total.ok, span_ns),
        0,
    );
    report.latency(
        "tcp_connect",
        "TCP connect",
        total.stages.tcp.summary(),
        false,
    );
    if args.common.tls || args.common.ws {
        let label = layers_label(&args.common);
        report.latency("layers", label, total.stages.layers.summary(), false);
    }
    report.latency(
        "connack",
        "CONNECT -> CONNACK",
        total.stages.connack.summary(),
        false,
    );
    report.latency(
        "connect",
        "TCP connect -> CONNACK",
        total.stages.total.summary(),
        false,
    );
    let (own_used, broker_used) = cpu.used_until(&own_end, broker_end.as_ref());
    report.float(
        "tool_cpu_per_handshake_us",
        "tool CPU per handshake (µs)",
        per_handshake_us(own_used, total.ok),
        1,
    );
    // Refused CONNECTs (a wrong password) cost the broker too: count every
    // attempt when some failed.
    let attempts = total.ok + total.failures.total();
    if attempts > total.ok {
        report.float(
            "attempts_per_s",
            "attempts/s (ok + failed)",
            per_sec(attempts, span_ns),
            0,
        );
    }
    if let Some(pid) = args.common.broker_pid {
        match broker_used {
            Some(used) => {
                report.float(
                    "broker_cpu_per_handshake_us",
                    "broker CPU per handshake (µs)",
                    per_handshake_us(used, total.ok),
                    1,
                );
                if attempts > total.ok {
                    report.float(
                        "broker_cpu_per_attempt_us",
                        "broker CPU per attempt (µs)",
                        per_handshake_us(used, attempts),
                        1,
                    );
                }
            }
            None => report.text(
                "broker_cpu_per_handshake_us",
                "broker CPU per handshake (µs)",
                format!("n/a: cannot read /proc/{pid}/stat"),
            ),
        }
    } else {
        report.note("no --broker-pid: broker CPU not measured");
    }
    cpu.report_until(&mut report, own_end, broker_end);
    Ok(report)
}

/// CPU time per handshake in microseconds (0 without handshakes).
pub fn per_handshake_us(cpu: Duration, handshakes: u64) -> f64 {
    if handshakes == 0 {
        return 0.0;
    }
    cpu.as_secs_f64() * 1e6 / handshakes as f64
}

async fn thread_main(thread: usize, target: Arc<Target>, args: HandshakeArgs) -> ThreadResult {
    let threads = args.common.threads;
    let result = Rc::new(RefCell::new(ThreadResult::default()));
    let close_wait = Duration::from_millis(args.close_wait_ms);
    let keepalive = args.keepalive;
    let (r, t) = (Rc::clone(&result), Arc::clone(&target));
    let mine = share_of(thread, threads, args.connections).collect();
    paced_workers(mine, args.concurrency, args.rate, threads, move |index| {
        let (result, target) = (Rc::clone(&r), Arc::clone(&t));
        async move {
            let spec = target.connect_spec("hs", index, keepalive);
            let started_ns = now_ns();
            {
                let mut r = result.borrow_mut();
                r.first_start_ns = min_opt(r.first_start_ns, Some(started_ns));
            }
            let e = match target.establish(&spec, ReadSize::SMALL).await {
                Ok(e) => e,
                Err(e) => {
                    let mut r = result.borrow_mut();
                    r.failures.add(&e);
                    r.last_end_ns = r.last_end_ns.max(Some(now_ns()));
                    Progress::add(&target.progress.errors, 1);
                    return;
                }
            };
            Progress::add(&target.progress.up, 1);
            {
                let mut r = result.borrow_mut();
                r.ok += 1;
                r.stages.record(&e);
                if r.tls.is_none() {
                    r.tls = e.conn.tls_summary();
                }
            }
            let closed = e.conn.disconnect_and_wait(close_wait).await;
            Progress::sub(&target.progress.up, 1);
            Progress::add(&target.progress.sent, 1);
            let mut r = result.borrow_mut();
            r.last_end_ns = r.last_end_ns.max(Some(now_ns()));
            match closed {
                Ok(Closed::Orderly) => {}
                Ok(Closed::Reset) => r.closed_by_reset += 1,
                Err(e) => {
                    r.close_failures.add(&e);
                    Progress::add(&target.progress.errors, 1);
                }
            }
        }
    })
    .await;
    let r = std::mem::take(&mut *result.borrow_mut());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_handshake_figures() {
        assert_eq!(per_handshake_us(Duration::from_millis(500), 1000), 500.0);
        assert_eq!(per_handshake_us(Duration::from_secs(1), 0), 0.0);
    }
}
