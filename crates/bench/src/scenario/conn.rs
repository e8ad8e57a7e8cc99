//! `conn`: open N connections at a target rate (or as fast as the
//! concurrency allows) and report connects/s, TCP connect and CONNACK
//! latency and failures by reason.
//!
//! Every connection stays open until all threads are done, so the broker
//! really holds N connections at the end; then each sends DISCONNECT.
//! CONNACK latency runs from the CONNECT write (TCP already up) to the
//! CONNACK read. With `--tls` / `--ws` the TLS handshake and the WebSocket
//! upgrade are timed on their own (TCP up to CONNECT written) and
//! "connect" times the whole way from the TCP connect to CONNACK. Connects/s is successful connections over the time from
//! the first TCP connect to the last CONNACK.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::cli::ConnArgs;
use crate::conn::{Conn, ReadSize};
use crate::error::BenchError;
use crate::report::{Report, Value};
use crate::runtime::{run_executors, Latch, Progress};
use crate::scenario::{
    check_fds, common_params, layers_label, machine_note, min_opt, paced_workers, per_sec,
    share_of, span_ns, CpuWindow, Failures, StageTimes, Target,
};

/// What one thread measured.
#[derive(Debug, Default)]
struct ThreadResult {
    ok: u64,
    failures: Failures,
    stages: StageTimes,
    first_start_ns: Option<u64>,
    last_connack_ns: Option<u64>,
}

/// Open N connections; one report.
pub fn run(args: &ConnArgs) -> Result<Report, BenchError> {
    args.validate()?;
    check_fds("connections", args.connections)?;
    let target = Target::from_common(&args.common)?;
    target
        .progress
        .target
        .store(args.connections, std::sync::atomic::Ordering::Relaxed);
    let threads = args.common.threads;
    let all_done = Latch::new(threads);
    let cpu = CpuWindow::start(args.common.broker_pid);
    let run_args = args.clone();
    let t = Arc::clone(&target);
    let results = run_executors(&args.common, "conn", &target.progress, move |thread| {
        thread_main(
            thread,
            Arc::clone(&t),
            run_args.clone(),
            Arc::clone(&all_done),
        )
    })?;

    let mut total = ThreadResult::default();
    for r in results {
        total.ok += r.ok;
        total.failures.merge(&r.failures);
        total.stages.merge(&r.stages);
        total.first_start_ns = min_opt(total.first_start_ns, r.first_start_ns);
        total.last_connack_ns = total.last_connack_ns.max(r.last_connack_ns);
    }
    let mut report = Report::new("conn");
    common_params(&mut report, &args.common);
    report.param("connections", Value::Int(args.connections));
    report.param("rate", Value::Text(args.rate.to_string()));
    report.param("concurrency", Value::Int(args.concurrency as u64));
    machine_note(&mut report);
    report.int("connections_ok", "connections ok", total.ok);
    total.failures.report(&mut report, "connections");
    let span_ns = span_ns(total.first_start_ns, total.last_connack_ns);
    report.float("elapsed_s", "elapsed (s)", span_ns as f64 / 1e9, 3);
    report.float(
        "connects_per_s",
        "connects/s",
        per_sec(total.ok, span_ns),
        0,
    );
    report.latency(
        "connack",
        "CONNACK latency",
        total.stages.connack.summary(),
        false,
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
        report.latency(
            "connect",
            "TCP connect -> CONNACK",
            total.stages.total.summary(),
            false,
        );
    }
    target.sources.report(&mut report);
    cpu.report(&mut report);
    Ok(report)
}

async fn thread_main(
    thread: usize,
    target: Arc<Target>,
    args: ConnArgs,
    all_done: Arc<Latch>,
) -> ThreadResult {
    let threads = args.common.threads;
    let result = Rc::new(RefCell::new(ThreadResult::default()));
    let held: Rc<RefCell<Vec<Conn>>> = Rc::new(RefCell::new(Vec::new()));
    let keepalive = args.keepalive;
    let (r, h, t) = (Rc::clone(&result), Rc::clone(&held), Arc::clone(&target));
    let mine = share_of(thread, threads, args.connections).collect();
    paced_workers(mine, args.concurrency, args.rate, threads, move |index| {
        let (result, held, target) = (Rc::clone(&r), Rc::clone(&h), Arc::clone(&t));
        async move {
            let spec = target.connect_spec("conn", index, keepalive);
            let outcome = target.establish(&spec, ReadSize::SMALL).await;
            let mut r = result.borrow_mut();
            match outcome {
                Ok(e) => {
                    r.ok += 1;
                    r.stages.record(&e);
                    r.first_start_ns = min_opt(r.first_start_ns, Some(e.tcp_start_ns));
                    r.last_connack_ns = r.last_connack_ns.max(Some(e.connack_ns));
                    Progress::add(&target.progress.up, 1);
                    held.borrow_mut().push(e.conn);
                }
                Err(e) => {
                    r.failures.add(&e);
                    Progress::add(&target.progress.errors, 1);
                }
            }
        }
    })
    .await;
    // Hold everything until every thread is through, then say goodbye.
    all_done.count_down();
    all_done.wait().await;
    let conns: Vec<Conn> = std::mem::take(&mut *held.borrow_mut());
    for conn in conns {
        conn.disconnect().await;
        Progress::sub(&target.progress.up, 1);
    }
    let r = std::mem::take(&mut *result.borrow_mut());
    r
}
