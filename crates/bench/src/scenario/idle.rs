//! `idle`: hold N connections that send PINGREQ every K seconds and
//! measure what they cost the broker.
//!
//! Phases: read the broker's VmRSS (`--broker-pid`); open every connection
//! (rate and concurrency as in `conn`); once all threads are through, let
//! the broker settle (`--settle-ms`) and read VmRSS again: the growth over
//! the connections up is the broker's resident memory per connection. Then
//! hold for `--hold-secs`: the broker's CPU (utime + stime from /proc over
//! that window) is the cost of idling. Pings are spread: connection i
//! sends its first PINGREQ between K/2 and K after its CONNACK, then one
//! every K. Each connection also watches its socket, so a broker closing
//! it during the hold is counted.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::future::or;
use ringmq_codec::Packet;

use crate::cli::IdleArgs;
use crate::conn::{Conn, ReadSize};
use crate::error::{BenchError, ConnError};
use crate::hist::Histogram;
use crate::procfs::{now_ns, process_rss, CpuSample};
use crate::report::{Report, Value};
use crate::runtime::{run_executors, Latch, Progress};
use crate::scenario::{
    check_fds, common_params, machine_note, paced_workers, share_of, sleep_until, CpuWindow,
    Failures, Target,
};

#[derive(Debug, Default)]
struct ThreadResult {
    ok: u64,
    connect_failures: Failures,
    hold_failures: Failures,
    pings_sent: u64,
    pongs: u64,
    ping_rtt: Histogram,
}

/// Samples the monitor takes around the hold window.
#[derive(Debug, Default)]
struct Samples {
    own_rss_before: Option<u64>,
    rss_after: Option<u64>,
    own_rss_after: Option<u64>,
    up_at_settle: u64,
    hold_start: Option<CpuWindow>,
    hold_end_own: Option<CpuSample>,
    hold_end_broker: Option<CpuSample>,
    hold_secs: f64,
}

/// Hold N idle connections; one report.
pub fn run(args: &IdleArgs) -> Result<Report, BenchError> {
    args.validate()?;
    check_fds("connections", args.connections)?;
    let target = Target::from_common(&args.common)?;
    target
        .progress
        .target
        .store(args.connections, Ordering::Relaxed);
    let broker_pid = args.common.broker_pid;
    let rss_before = broker_pid.and_then(process_rss);
    let phases = Phases {
        started: Latch::new(args.common.threads),
        go: Latch::new(1),
        connected: Latch::new(args.common.threads),
        hold_end: Latch::new(1),
    };
    let samples = Arc::new(Mutex::new(Samples::default()));
    let (t, a, p, s) = (
        Arc::clone(&target),
        args.clone(),
        phases.clone(),
        Arc::clone(&samples),
    );
    let results = run_executors(&args.common, "idle", &target.progress, move |thread| {
        thread_main(thread, Arc::clone(&t), a.clone(), p.clone(), Arc::clone(&s))
    })?;

    let mut total = ThreadResult::default();
    for r in results {
        total.ok += r.ok;
        total.connect_failures.merge(&r.connect_failures);
        total.hold_failures.merge(&r.hold_failures);
        total.pings_sent += r.pings_sent;
        total.pongs += r.pongs;
        total.ping_rtt.merge(&r.ping_rtt);
    }
    let s = samples.lock().unwrap_or_else(|e| e.into_inner());
    let mut report = Report::new("idle");
    common_params(&mut report, &args.common);
    report.param("connections", Value::Int(args.connections));
    report.param("keepalive_s", Value::Int(u64::from(args.keepalive)));
    report.param("ping_s", Value::Float(args.ping_secs(), 1));
    report.param("hold_s", Value::Float(args.hold_secs, 1));
    machine_note(&mut report);
    report.int("connections_ok", "connections ok", total.ok);
    total.connect_failures.report(&mut report, "connections");
    report.int(
        "up_at_settle",
        "connections up after settling",
        s.up_at_settle,
    );
    total.hold_failures.report(&mut report, "hold");
    report.int("pings_sent", "PINGREQ sent", total.pings_sent);
    report.int("pingresp_received", "PINGRESP received", total.pongs);
    report.latency(
        "ping_rtt",
        "PINGREQ -> PINGRESP",
        total.ping_rtt.summary(),
        false,
    );
    match (broker_pid, rss_before, s.rss_after) {
        (None, ..) => report.note("no --broker-pid: broker memory and CPU not measured"),
        (Some(_), Some(before), Some(after)) => {
            report.int(
                "broker_rss_before_bytes",
                "broker RSS before (bytes)",
                before,
            );
            report.int(
                "broker_rss_after_bytes",
                "broker RSS settled (bytes)",
                after,
            );
            let per = per_connection(before, after, s.up_at_settle);
            report.float(
                "broker_rss_per_conn_bytes",
                "broker RSS growth per connection (bytes)",
                per,
                0,
            );
        }
        (Some(pid), ..) => report.text(
            "broker_rss_per_conn_bytes",
            "broker RSS growth per connection (bytes)",
            format!("n/a: cannot read /proc/{pid}/status"),
        ),
    }
    if let (Some(before), Some(after)) = (s.own_rss_before, s.own_rss_after) {
        report.float(
            "tool_rss_per_conn_bytes",
            "tool RSS growth per connection (bytes)",
            per_connection(before, after, s.up_at_settle),
            0,
        );
    }
    report.float("hold_measured_s", "hold window (s)", s.hold_secs, 2);
    if let (Some(w), Some(own)) = (s.hold_start, s.hold_end_own) {
        w.report_until(&mut report, own, s.hold_end_broker);
    }
    Ok(report)
}

/// Resident memory growth per connection, in bytes (negative if the
/// broker shrank).
pub fn per_connection(before: u64, after: u64, connections: u64) -> f64 {
    if connections == 0 {
        return 0.0;
    }
    (after as f64 - before as f64) / connections as f64
}

#[derive(Clone)]
struct Phases {
    started: Arc<Latch>,
    go: Arc<Latch>,
    connected: Arc<Latch>,
    hold_end: Arc<Latch>,
}

async fn thread_main(
    thread: usize,
    target: Arc<Target>,
    args: IdleArgs,
    phases: Phases,
    samples: Arc<Mutex<Samples>>,
) -> ThreadResult {
    let threads = args.common.threads;
    let mine = share_of(thread, threads, args.connections).collect();
    let result = Rc::new(RefCell::new(ThreadResult::default()));
    let idle_tasks = Rc::new(RefCell::new(Vec::new()));
    let ping_ns = (args.ping_secs() * 1e9) as u64;
    // The tool's own baseline memory: every executor (and its rings) up,
    // no connection yet.
    phases.started.count_down();
    phases.started.wait().await;
    if thread == 0 {
        samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .own_rss_before = process_rss(std::process::id());
        phases.go.open();
    }
    phases.go.wait().await;
    let keepalive = args.keepalive;
    let n = args.connections;
    let (r, tasks, t, hold_end) = (
        Rc::clone(&result),
        Rc::clone(&idle_tasks),
        Arc::clone(&target),
        Arc::clone(&phases.hold_end),
    );
    paced_workers(mine, args.concurrency, args.rate, threads, move |index| {
        let (result, tasks, target, hold_end) = (
            Rc::clone(&r),
            Rc::clone(&tasks),
            Arc::clone(&t),
            Arc::clone(&hold_end),
        );
        async move {
            let spec = target.connect_spec("idle", index, keepalive);
            match target.establish(&spec, ReadSize::SMALL).await {
                Ok(e) => {
                    result.borrow_mut().ok += 1;
                    Progress::add(&target.progress.up, 1);
                    // Spread the pings over [K/2, K) after CONNACK.
                    let spread = ping_ns / 2 * index / n.max(1);
                    let first = e.connect_sent_ns + ping_ns / 2 + spread;
                    let task = glommio::spawn_local(hold(
                        e.conn, first, ping_ns, hold_end, result, target,
                    ));
                    tasks.borrow_mut().push(task);
                }
                Err(e) => {
                    result.borrow_mut().connect_failures.add(&e);
                    Progress::add(&target.progress.errors, 1);
                }
            }
        }
    })
    .await;
    phases.connected.count_down();
    if thread == 0 {
        monitor(&args, &target, &phases, &samples).await;
    }
    let tasks: Vec<_> = std::mem::take(&mut *idle_tasks.borrow_mut());
    for task in tasks {
        task.await;
    }
    let r = std::mem::take(&mut *result.borrow_mut());
    r
}

/// Thread 0: settle, sample memory, run the hold window, stop everybody.
async fn monitor(args: &IdleArgs, target: &Target, phases: &Phases, samples: &Mutex<Samples>) {
    phases.connected.wait().await;
    glommio::timer::sleep(Duration::from_millis(args.settle_ms)).await;
    let window = CpuWindow::start(args.common.broker_pid);
    {
        let mut s = samples.lock().unwrap_or_else(|e| e.into_inner());
        s.up_at_settle = target.progress.up.load(Ordering::Relaxed);
        s.rss_after = args.common.broker_pid.and_then(process_rss);
        s.own_rss_after = process_rss(std::process::id());
        s.hold_start = Some(window);
    }
    let start = now_ns();
    glommio::timer::sleep(Duration::from_secs_f64(args.hold_secs)).await;
    {
        let mut s = samples.lock().unwrap_or_else(|e| e.into_inner());
        s.hold_end_own = Some(CpuSample::own());
        s.hold_end_broker = window.broker_now();
        s.hold_secs = (now_ns() - start) as f64 / 1e9;
    }
    phases.hold_end.open();
}

enum Event {
    Stop,
    Ping,
    Read(Result<usize, ConnError>),
}

/// One idle connection: ping on schedule, answer nothing, watch the socket.
async fn hold(
    mut conn: Conn,
    first_ping_ns: u64,
    ping_ns: u64,
    hold_end: Arc<Latch>,
    result: Rc<RefCell<ThreadResult>>,
    target: Arc<Target>,
) {
    let mut next_ping = first_ping_ns;
    let mut pending: Option<u64> = None;
    let failure = loop {
        let event = or(
            async {
                hold_end.wait().await;
                Event::Stop
            },
            or(
                async {
                    sleep_until(next_ping).await;
                    Event::Ping
                },
                async { Event::Read(conn.fill().await) },
            ),
        )
        .await;
        match event {
            Event::Stop => break None,
            Event::Ping => {
                next_ping += ping_ns;
                if let Err(e) = conn.send(&Packet::PingReq).await {
                    break Some(e);
                }
                pending = Some(now_ns());
                result.borrow_mut().pings_sent += 1;
            }
            Event::Read(Err(e)) => break Some(e),
            Event::Read(Ok(_)) => {
                let mut stop = None;
                loop {
                    match conn.next_buffered() {
                        Ok(Some(Packet::PingResp)) => {
                            let mut r = result.borrow_mut();
                            r.pongs += 1;
                            if let Some(sent) = pending.take() {
                                r.ping_rtt.record(now_ns() - sent);
                            }
                        }
                        Ok(Some(Packet::Disconnect(d))) => {
                            stop = Some(ConnError::Disconnected(d.code));
                            break;
                        }
                        Ok(Some(other)) => {
                            stop = Some(ConnError::Unexpected(other.packet_type()));
                            break;
                        }
                        Ok(None) => break,
                        Err(e) => {
                            stop = Some(e);
                            break;
                        }
                    }
                }
                if stop.is_some() {
                    break stop;
                }
            }
        }
    };
    Progress::sub(&target.progress.up, 1);
    match failure {
        Some(e) => {
            result.borrow_mut().hold_failures.add(&e);
            Progress::add(&target.progress.errors, 1);
        }
        None => conn.disconnect().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_per_connection() {
        assert_eq!(per_connection(1_000_000, 8_000_000, 10_000), 700.0);
        assert_eq!(per_connection(2_000, 1_000, 10), -100.0);
        assert_eq!(per_connection(1, 2, 0), 0.0);
    }
}
