//! `pubsub`: P publishers and S subscribers over T topics (layout in
//! [`Layout`]): delivered msgs/s, end-to-end latency from the stamp in
//! every payload, lost and duplicated messages per publisher sequence.
//!
//! Phases: every subscriber connects and gets its SUBACK; every publisher
//! connects; across nodes (`--sub-host`/`--sub-port` elsewhere than
//! `--host`/`--port`), the route check: every publisher sends an unstamped
//! QoS 0 probe on its topic every [`PROBE_INTERVAL_MS`] until every
//! subscriber has heard each publisher whose topic it reads (the
//! subscribers' node has told the publishers' node of their subscriptions),
//! failing after `--route-wait-ms`; late probes are ignored, never counted.
//! Then all publishers start together and publish for
//! `--duration-secs` or `--messages` each, whichever ends first (paced to
//! `--rate` over all publishers, or as fast as the socket takes them),
//! then wait up to `--drain-ms` for the last deliveries (and QoS 1
//! acknowledgements).
//!
//! Hot paths: a publisher appends stamped copies of a pre-encoded PUBLISH
//! ([`PublishTemplate`]) into one buffer, up to `--batch` per write, with
//! one clock read per batch; at QoS 1 it keeps at most `--inflight`
//! unacknowledged (fewer if a v5 broker's Receive Maximum says so). A
//! subscriber reads up to 256 KiB per syscall, decodes without copying,
//! reads the clock once per read and records every message's latency and
//! sequence number; QoS 1 PUBACKs of one read go out in one write.
//!
//! Rates: messages sent / publishing time; deliveries / time from the first
//! publish to the last delivery (so a broker that queues and drains late
//! is not flattered). Lost = expected (sent x subscribers of its topic) -
//! distinct (publisher, sequence) pairs delivered, per subscriber.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_lite::future::or;
use ringmq_codec::{
    Packet, Properties, ProtocolVersion, PubAck, PubComp, PubRec, PubRel, Publish, QoS, ReasonCode,
};

use crate::cli::PubsubArgs;
use crate::conn::{ConnectSpec, ReadSize};
use crate::error::{BenchError, ConnError};
use crate::hist::Histogram;
use crate::pacing::Pacing;
use crate::payload::{probe_payload, read_probe, Deliveries, DeliveryTotals, Heard, Layout, Stamp};
use crate::procfs::{now_ns, CpuSample};
use crate::report::{Report, Value};
use crate::runtime::{run_executors, Latch, Progress};
use crate::scenario::{check_fds, common_params, machine_note, sleep_until, CpuWindow, Target};
use crate::template::PublishTemplate;

/// Shortest sleep of a paced publisher, in ns.
const MIN_PACE_NS: u64 = 200_000;

/// Milliseconds between two route probes of one publisher.
pub const PROBE_INTERVAL_MS: u64 = 20;

/// Packet identifiers of in-flight QoS 1 messages (1..=65535).
#[derive(Clone, Debug)]
pub struct PidPool {
    in_use: Vec<u64>,
    next: u16,
    used: u32,
}

impl Default for PidPool {
    fn default() -> PidPool {
        PidPool {
            in_use: vec![0; 1024],
            next: 1,
            used: 0,
        }
    }
}

impl PidPool {
    /// An empty pool.
    pub fn new() -> PidPool {
        PidPool::default()
    }

    /// Identifiers in use.
    pub fn used(&self) -> u32 {
        self.used
    }

    fn bit(id: u16) -> (usize, u64) {
        (usize::from(id / 64), 1u64 << (id % 64))
    }

    /// Take the next free identifier; `None` when all 65535 are in use.
    pub fn alloc(&mut self) -> Option<u16> {
        if self.used >= 65_535 {
            return None;
        }
        loop {
            let id = self.next;
            self.next = if self.next == u16::MAX {
                1
            } else {
                self.next + 1
            };
            let (w, b) = PidPool::bit(id);
            if self.in_use[w] & b == 0 {
                self.in_use[w] |= b;
                self.used += 1;
                return Some(id);
            }
        }
    }

    /// Free `id`; false if it was not in use (an unexpected PUBACK).
    pub fn release(&mut self, id: u16) -> bool {
        if id == 0 {
            return false;
        }
        let (w, b) = PidPool::bit(id);
        if self.in_use[w] & b == 0 {
            return false;
        }
        self.in_use[w] &= !b;
        self.used -= 1;
        true
    }
}

#[derive(Debug, Default)]
struct SubResult {
    deliveries: Deliveries,
    latency: Histogram,
    first_delivery_ns: Option<u64>,
    last_delivery_ns: Option<u64>,
    granted: Vec<u8>,
    error: Option<String>,
}

#[derive(Debug, Default)]
struct PubResult {
    sent: u64,
    acked: u64,
    unacked: u64,
    unexpected_acks: u64,
    start_ns: Option<u64>,
    end_ns: Option<u64>,
    window: u32,
    error: Option<String>,
}

#[derive(Debug, Default)]
struct ThreadResult {
    subs: Vec<SubResult>,
    pubs: Vec<(u32, PubResult)>,
}

struct Shared {
    layout: Layout,
    subs_ready: Arc<Latch>,
    pubs_ready: Arc<Latch>,
    /// Open once every subscriber heard its publishers' probes (at once
    /// when publishers and subscribers share an endpoint).
    routes_ready: Arc<Latch>,
    /// The first probe sent (u64::MAX: none).
    probe_start_ns: AtomicU64,
    /// The last subscriber's route check completed (0: none).
    routes_done_ns: AtomicU64,
    pubs_done: Arc<Latch>,
    stop: Arc<Latch>,
    expected: AtomicU64,
    setup_error: Mutex<Option<String>>,
    cpu_start: Mutex<Option<CpuWindow>>,
    cpu_end: Mutex<Option<(CpuSample, Option<CpuSample>)>>,
}

impl Shared {
    fn fail(&self, why: String) {
        self.setup_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(why);
        for latch in [
            &self.subs_ready,
            &self.pubs_ready,
            &self.routes_ready,
            &self.pubs_done,
            &self.stop,
        ] {
            latch.open();
        }
    }

    fn failed(&self) -> bool {
        self.setup_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }
}

/// Run the pubsub scenario; one report.
pub fn run(args: &PubsubArgs) -> Result<Report, BenchError> {
    run_shape("pubsub", args)
}

/// Run pubsub shaped as `shape` ([`PubsubArgs::preset`]); the report
/// carries the shape's name.
pub fn run_shape(shape: &str, args: &PubsubArgs) -> Result<Report, BenchError> {
    let args = &args.clone().preset(shape);
    args.validate()?;
    check_fds(
        "subscribers",
        u64::from(args.publishers) + u64::from(args.subscribers),
    )?;
    let target = Target::from_common(&args.common)?;
    let sub_target = if args.split() {
        let (host, port) = args.sub_endpoint();
        target.elsewhere(host, port)?
    } else {
        Arc::clone(&target)
    };
    target.progress.target.store(
        u64::from(args.publishers) + u64::from(args.subscribers),
        Ordering::Relaxed,
    );
    let layout = Layout {
        publishers: args.publishers,
        subscribers: args.subscribers,
        topics: args.topics,
        wildcard: args.wildcard,
        shared: args.shared_group.is_some(),
    };
    let shared = Arc::new(Shared {
        layout,
        subs_ready: Latch::new(args.subscribers as usize),
        pubs_ready: Latch::new(args.publishers as usize),
        routes_ready: Latch::new(if args.split() {
            args.subscribers as usize
        } else {
            0
        }),
        probe_start_ns: AtomicU64::new(u64::MAX),
        routes_done_ns: AtomicU64::new(0),
        pubs_done: Latch::new(args.publishers as usize),
        stop: Latch::new(1),
        expected: AtomicU64::new(0),
        setup_error: Mutex::new(None),
        cpu_start: Mutex::new(None),
        cpu_end: Mutex::new(None),
    });
    let (t, st, a, s) = (
        Arc::clone(&target),
        Arc::clone(&sub_target),
        args.clone(),
        Arc::clone(&shared),
    );
    let results = run_executors(&args.common, "pubsub", &target.progress, move |thread| {
        thread_main(
            thread,
            Arc::clone(&t),
            Arc::clone(&st),
            a.clone(),
            Arc::clone(&s),
        )
    })?;
    if let Some(e) = shared
        .setup_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        return Err(BenchError::Setup(e));
    }

    let mut subs = Vec::new();
    let mut pubs = Vec::new();
    for r in results {
        subs.extend(r.subs);
        pubs.extend(r.pubs);
    }
    Ok(build_report(shape, args, &layout, &subs, &pubs, &shared))
}

fn build_report(
    shape: &str,
    args: &PubsubArgs,
    layout: &Layout,
    subs: &[SubResult],
    pubs: &[(u32, PubResult)],
    shared: &Shared,
) -> Report {
    let mut report = Report::new(shape);
    common_params(&mut report, &args.common);
    if args.split() {
        let (host, port) = args.sub_endpoint();
        report.param("sub_host", Value::Text(host.to_string()));
        report.param("sub_port", Value::Int(u64::from(port)));
    }
    report.param("publishers", Value::Int(u64::from(args.publishers)));
    report.param("subscribers", Value::Int(u64::from(args.subscribers)));
    report.param("topics", Value::Int(u64::from(args.topics)));
    report.param("wildcard", Value::Text(args.wildcard.to_string()));
    report.param("pub_qos", Value::Int(u64::from(args.publish_qos())));
    report.param("sub_qos", Value::Int(u64::from(args.subscribe_qos())));
    if let Some(g) = &args.shared_group {
        report.param("shared_group", Value::Text(g.clone()));
    }
    if let Some(ms) = args.interval_ms {
        report.param("interval_ms", Value::Float(ms, 1));
    }
    if let Some(r) = args.ramp {
        report.param("ramp", Value::Text(r.to_string()));
    }
    report.param("payload_bytes", Value::Int(args.payload as u64));
    report.param("rate", Value::Text(args.rate.to_string()));
    report.param("duration_s", Value::Float(args.duration_secs, 1));
    if let Some(m) = args.messages {
        report.param("messages", Value::Int(m));
    }
    if args.persistent_subscribers {
        report.param("persistent_subscribers", Value::Text("true".to_string()));
    }
    if args.publish_qos() > 0 {
        report.param("inflight", Value::Int(u64::from(args.inflight)));
    }
    machine_note(&mut report);

    let sent: u64 = pubs.iter().map(|(_, p)| p.sent).sum();
    let expected: u64 = pubs.iter().map(|(i, p)| layout.expected(*i, p.sent)).sum();
    let mut totals = DeliveryTotals::default();
    let mut latency = Histogram::new();
    let mut foreign = 0;
    if layout.shared {
        // One group: its members' deliveries count as one subscriber's.
        let mut group = Deliveries::new(args.publishers);
        for s in subs {
            group.absorb(&s.deliveries);
        }
        totals = group.totals();
        foreign = group.foreign();
    }
    for s in subs {
        if !layout.shared {
            totals.add(s.deliveries.totals());
            foreign += s.deliveries.foreign();
        }
        latency.merge(&s.latency);
    }
    // Without publishers of ours (an external source), the clock starts
    // at the first delivery.
    let start = if pubs.is_empty() {
        subs.iter().filter_map(|s| s.first_delivery_ns).min()
    } else {
        pubs.iter().filter_map(|(_, p)| p.start_ns).min()
    };
    let pub_end = pubs.iter().filter_map(|(_, p)| p.end_ns).max();
    let last_delivery = subs.iter().filter_map(|s| s.last_delivery_ns).max();
    let secs = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e9,
        _ => 0.0,
    };
    let rate = |n: u64, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    let publish_secs = secs(start, pub_end);
    let delivery_secs = secs(start, last_delivery);

    report.int("sent", "messages sent", sent);
    report.float("sent_per_s", "sent msgs/s", rate(sent, publish_secs), 0);
    report.int("delivered", "messages delivered", totals.delivered);
    report.float(
        "delivered_per_s",
        "delivered msgs/s",
        rate(totals.delivered, delivery_secs),
        0,
    );
    if args.publishers > 0 {
        report.int("expected", "deliveries expected", expected);
        report.int("lost", "lost", totals.lost(expected));
    } else {
        report.int("lost", "lost (sequence gaps)", totals.gaps);
    }
    report.int("duplicates", "duplicated", totals.duplicates);
    report.int(
        "reordered",
        "out of order (after a later one of its publisher)",
        totals.reordered,
    );
    if foreign > 0 {
        report.int("foreign", "unstamped payloads (not ours)", foreign);
    }
    report.latency("latency", "end-to-end latency", latency.summary(), true);
    report.plot_latency("latency", "end-to-end latency", &latency);
    if !matches!(args.pacing(), crate::pacing::Pacing::Max) {
        report.note(
            "latency counts from each message's scheduled send time (no coordinated omission)",
        );
    }
    report.float("publish_s", "publishing time (s)", publish_secs, 3);
    report.float(
        "delivery_s",
        "first publish to last delivery (s)",
        delivery_secs,
        3,
    );
    if args.split() {
        let start = shared.probe_start_ns.load(Ordering::Acquire);
        let done = shared.routes_done_ns.load(Ordering::Acquire);
        report.float(
            "route_check_ms",
            "route check: first probe -> every subscriber reached (ms)",
            done.saturating_sub(start) as f64 / 1e6,
            1,
        );
    }
    if args.publish_qos() > 0 && args.publishers > 0 {
        let acked: u64 = pubs.iter().map(|(_, p)| p.acked).sum();
        let unacked: u64 = pubs.iter().map(|(_, p)| p.unacked).sum();
        let odd: u64 = pubs.iter().map(|(_, p)| p.unexpected_acks).sum();
        let window = pubs.iter().map(|(_, p)| p.window).min().unwrap_or(0);
        let ack = if args.publish_qos() == 2 {
            "PUBCOMP"
        } else {
            "PUBACK"
        };
        report.int("puback", &format!("{ack} received"), acked);
        report.int("unacked", "unacknowledged at the end", unacked);
        if odd > 0 {
            report.int("puback_unexpected", "PUBACK for no message in flight", odd);
        }
        report.int("inflight_used", "in-flight window used", u64::from(window));
    }
    let granted: Vec<u8> = subs
        .iter()
        .flat_map(|s| s.granted.iter().copied())
        .collect();
    if let Some(&min) = granted.iter().min() {
        if min < args.subscribe_qos() {
            report.note(format!(
                "the broker granted QoS {min} to some subscriptions (asked {})",
                args.subscribe_qos()
            ));
        }
    }
    for (i, p) in pubs {
        if let Some(e) = &p.error {
            report.note(format!("publisher {i}: {e}"));
        }
    }
    for (i, s) in subs.iter().enumerate() {
        if let Some(e) = &s.error {
            report.note(format!("subscriber {i}: {e}"));
        }
    }
    let start_window = *shared.cpu_start.lock().unwrap_or_else(|p| p.into_inner());
    let end = *shared.cpu_end.lock().unwrap_or_else(|p| p.into_inner());
    if let (Some(w), Some((own, broker))) = (start_window, end) {
        w.report_until(&mut report, own, broker);
    }
    report
}

fn thread_of_subscriber(s: u32, threads: usize) -> usize {
    s as usize % threads
}

fn thread_of_publisher(p: u32, subscribers: u32, threads: usize) -> usize {
    (subscribers as usize + p as usize) % threads
}

async fn thread_main(
    thread: usize,
    target: Arc<Target>,
    sub_target: Arc<Target>,
    args: PubsubArgs,
    shared: Arc<Shared>,
) -> ThreadResult {
    let threads = args.common.threads;
    let result = Rc::new(RefCell::new(ThreadResult::default()));
    let mut tasks = Vec::new();
    for s in (0..args.subscribers).filter(|&s| thread_of_subscriber(s, threads) == thread) {
        tasks.push(glommio::spawn_local(subscriber(
            s,
            Arc::clone(&sub_target),
            args.clone(),
            Arc::clone(&shared),
            Rc::clone(&result),
        )));
    }
    for p in (0..args.publishers)
        .filter(|&p| thread_of_publisher(p, args.subscribers, threads) == thread)
    {
        tasks.push(glommio::spawn_local(publisher(
            p,
            Arc::clone(&target),
            args.clone(),
            Arc::clone(&shared),
            Rc::clone(&result),
        )));
    }
    if thread == 0 {
        tasks.push(glommio::spawn_local(drain(
            args.clone(),
            Arc::clone(&target),
            Arc::clone(&shared),
        )));
    }
    for t in tasks {
        t.await;
    }
    let r = std::mem::take(&mut *result.borrow_mut());
    r
}

/// Thread 0: the CPU window and the end of the run.
async fn drain(args: PubsubArgs, target: Arc<Target>, shared: Arc<Shared>) {
    let set_start = || {
        *shared.cpu_start.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(CpuWindow::start(args.common.broker_pid));
    };
    if args.publishers == 0 {
        shared.subs_ready.wait().await;
        set_start();
        or(
            shared.stop.wait(),
            glommio::timer::sleep(Duration::from_secs_f64(args.duration_secs)),
        )
        .await;
    } else {
        shared.pubs_ready.wait().await;
        shared.routes_ready.wait().await;
        set_start();
        shared.pubs_done.wait().await;
        // Pairs with the fence in `subscriber`: of the last subscriber to
        // count a delivery and this task, at least one sees the other's
        // update (its count here, `pubs_done` there), so the run never
        // waits out `--drain-ms` with everything delivered.
        std::sync::atomic::fence(Ordering::SeqCst);
        let complete = target.progress.received.load(Ordering::Acquire)
            >= shared.expected.load(Ordering::Acquire);
        if !complete && args.subscribers > 0 {
            or(
                shared.stop.wait(),
                glommio::timer::sleep(Duration::from_millis(args.drain_ms)),
            )
            .await;
        }
    }
    shared.stop.open();
    let window = *shared.cpu_start.lock().unwrap_or_else(|p| p.into_inner());
    let broker = window.and_then(|w| w.broker_now());
    *shared.cpu_end.lock().unwrap_or_else(|p| p.into_inner()) = Some((CpuSample::own(), broker));
}

fn topic(args: &PubsubArgs, t: u32) -> String {
    format!("{}/{t}", args.topic_prefix)
}

fn qos_of(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// A subscription filter, inside the shared group if the run has one.
fn filter(args: &PubsubArgs, f: String) -> String {
    match &args.shared_group {
        Some(g) => format!("$share/{g}/{f}"),
        None => f,
    }
}

async fn subscriber(
    s: u32,
    target: Arc<Target>,
    args: PubsubArgs,
    shared: Arc<Shared>,
    result: Rc<RefCell<ThreadResult>>,
) {
    let mut out = SubResult::default();
    if args.publishers > 0 {
        out.deliveries = Deliveries::new(args.publishers);
    }
    let mut heard = args.split().then(|| Heard::new(&shared.layout, s));
    let filters: Vec<(String, QoS)> = if args.wildcard {
        vec![(
            filter(&args, format!("{}/+", args.topic_prefix)),
            qos_of(args.subscribe_qos()),
        )]
    } else {
        shared
            .layout
            .topics_of_subscriber(s)
            .into_iter()
            .map(|t| (filter(&args, topic(&args, t)), qos_of(args.subscribe_qos())))
            .collect()
    };
    let mut spec = target.connect_spec("sub", u64::from(s), 0);
    if args.persistent_subscribers {
        keep_session(&mut spec, target.version);
    }
    let setup = async {
        let mut e = target.establish(&spec, ReadSize::LARGE).await?;
        let codes = e.conn.subscribe(1, &filters).await?;
        Ok::<_, ConnError>((e.conn, codes))
    }
    .await;
    let mut conn = match setup {
        Ok((conn, codes)) => {
            if let Some(bad) = codes.iter().find(|c| c.0 >= 0x80) {
                shared.fail(format!(
                    "subscriber {s}: SUBSCRIBE refused (0x{:02X} {})",
                    bad.0,
                    bad.name()
                ));
                return;
            }
            out.granted = codes.iter().map(|c| c.0).collect();
            conn
        }
        Err(e) => {
            shared.fail(format!("subscriber {s}: {e}"));
            return;
        }
    };
    Progress::add(&target.progress.up, 1);
    shared.subs_ready.count_down();
    if heard.as_ref().is_some_and(Heard::complete) {
        // None of its topics has a publisher: nothing to hear.
        heard = None;
        shared.routes_ready.count_down();
    }
    let progress = &target.progress;
    loop {
        // Checked first: `or` prefers the read, and a busy socket is
        // always readable.
        if shared.stop.is_open() {
            break;
        }
        let read = or(async { Some(conn.fill().await) }, async {
            shared.stop.wait().await;
            None
        })
        .await;
        let Some(read) = read else { break };
        if let Err(e) = read {
            out.error = Some(format!("connection ended: {}", e.label()));
            break;
        }
        let now = now_ns();
        let mut n = 0u64;
        let mut failure = None;
        loop {
            match conn.next_buffered() {
                Ok(Some(Packet::Publish(p))) => {
                    if let Some(publisher) = read_probe(&p.payload) {
                        // A route probe, early or late: never a delivery.
                        if heard.as_mut().is_some_and(|h| h.probe(publisher)) {
                            heard = None;
                            shared.routes_done_ns.fetch_max(now, Ordering::AcqRel);
                            shared.routes_ready.count_down();
                        }
                    } else {
                        n += 1;
                        if let Some(stamp) = out.deliveries.record(&p.payload) {
                            let ns = now.saturating_sub(stamp.sent_ns);
                            out.latency.record(ns);
                            crate::runtime::interval_record(ns);
                        }
                    }
                    let ack = match p.qos {
                        QoS::AtMostOnce => None,
                        QoS::AtLeastOnce => Some(Packet::PubAck(PubAck {
                            packet_id: p.packet_id,
                            code: ReasonCode::SUCCESS,
                            properties: Properties::default(),
                        })),
                        QoS::ExactlyOnce => Some(Packet::PubRec(PubRec {
                            packet_id: p.packet_id,
                            code: ReasonCode::SUCCESS,
                            properties: Properties::default(),
                        })),
                    };
                    if let Some(ack) = ack {
                        if let Err(e) = conn.queue(&ack) {
                            failure = Some(e);
                            break;
                        }
                    }
                }
                Ok(Some(Packet::PubRel(r))) => {
                    let comp = Packet::PubComp(PubComp {
                        packet_id: r.packet_id,
                        code: ReasonCode::SUCCESS,
                        properties: Properties::default(),
                    });
                    if let Err(e) = conn.queue(&comp) {
                        failure = Some(e);
                        break;
                    }
                }
                Ok(Some(Packet::Disconnect(d))) => {
                    failure = Some(ConnError::Disconnected(d.code));
                    break;
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if n > 0 {
            out.first_delivery_ns.get_or_insert(now);
            out.last_delivery_ns = Some(now);
            Progress::add(&progress.received, n);
            crate::runtime::interval_flush(progress, now, false);
            // A group member sees only part of each sequence: the live
            // estimate is for ordinary subscribers.
            if !shared.layout.shared {
                match out.deliveries.take_gap_delta() {
                    d if d > 0 => Progress::add(&progress.lost, d as u64),
                    d if d < 0 => Progress::sub(&progress.lost, d.unsigned_abs()),
                    _ => {}
                }
            }
        }
        if failure.is_none() {
            if let Err(e) = conn.flush().await {
                failure = Some(e);
            }
        }
        if let Some(e) = failure {
            out.error = Some(format!("connection ended: {}", e.label()));
            break;
        }
        // Pairs with the fence in `drain` (see there).
        std::sync::atomic::fence(Ordering::SeqCst);
        if shared.pubs_done.is_open()
            && args.publishers > 0
            && progress.received.load(Ordering::Acquire) >= shared.expected.load(Ordering::Acquire)
        {
            shared.stop.open();
        }
        crate::runtime::cooperate().await;
    }
    if heard.is_some() && !shared.routes_ready.is_open() {
        let why = out.error.as_deref().unwrap_or("stopped");
        shared.fail(format!("subscriber {s}: {why} during the route check"));
    }
    if out.error.is_some() {
        Progress::add(&progress.errors, 1);
    }
    Progress::sub(&progress.up, 1);
    conn.disconnect().await;
    result.borrow_mut().subs.push(out);
}

async fn publisher(
    p: u32,
    target: Arc<Target>,
    args: PubsubArgs,
    shared: Arc<Shared>,
    result: Rc<RefCell<ThreadResult>>,
) {
    let mut out = PubResult::default();
    let qos = qos_of(args.publish_qos());
    let spec = target.connect_spec("pub", u64::from(p), 0);
    let mut e = match target.establish(&spec, ReadSize::LARGE).await {
        Ok(e) => e,
        Err(e) => {
            shared.fail(format!("publisher {p}: {e}"));
            return;
        }
    };
    if let Some(max) = e
        .connack
        .properties
        .maximum_qos
        .filter(|&m| m < args.publish_qos())
    {
        shared.fail(format!(
            "publisher {p}: the broker announced Maximum QoS {max} in CONNACK; QoS {} cannot be measured",
            args.publish_qos()
        ));
        return;
    }
    let window = match e.connack.properties.receive_maximum {
        Some(rm) => args.inflight.min(u32::from(rm)),
        None => args.inflight,
    };
    out.window = window;
    let topic = topic(&args, shared.layout.topic_of_publisher(p));
    let template = match PublishTemplate::new(target.version, &topic, qos, args.payload) {
        Ok(t) => t,
        Err(err) => {
            shared.fail(format!("publisher {p}: {err}"));
            return;
        }
    };
    Progress::add(&target.progress.up, 1);
    shared.pubs_ready.count_down();
    shared.subs_ready.wait().await;
    shared.pubs_ready.wait().await;
    if args.split() && !shared.failed() {
        if let Err(why) = probe_routes(p, &mut e.conn, &topic, &args, &shared).await {
            shared.fail(format!("publisher {p}: {why}"));
        }
    }
    if shared.failed() {
        return;
    }

    let conn = &mut e.conn;
    // QoS 1 and 2: packet ids in flight, bounded by the window.
    let qos1 = qos != QoS::AtMostOnce;
    let pacing = args.pacing().share(args.publishers);
    let rate = (!matches!(pacing, Pacing::Max)).then_some(pacing);
    let batch = args.batch as u64;
    let mut pool = PidPool::new();
    let mut seq = 0u64;
    let start = now_ns();
    let end = start + (args.duration_secs * 1e9) as u64;
    out.start_ns = Some(start);
    let progress = &target.progress;
    let mut failure: Option<ConnError> = None;
    'publish: loop {
        let now = now_ns();
        let left = args.messages.map_or(u64::MAX, |m| m.saturating_sub(seq));
        if now >= end || left == 0 {
            break;
        }
        let mut n = batch.min(left);
        if let Some(r) = rate {
            n = n.min(r.due_count(now - start).saturating_sub(seq));
        }
        if qos1 {
            n = n.min(u64::from(window.saturating_sub(pool.used())));
        }
        if n > 0 {
            let stamp_ns = now_ns();
            for _ in 0..n {
                let pid = if qos1 { pool.alloc().unwrap_or(0) } else { 0 };
                // Paced: the time the message was due, so that a broker
                // that holds the publisher back cannot hide the wait.
                let sent_ns = match rate {
                    Some(r) => start + r.due_ns(seq),
                    None => stamp_ns,
                };
                let stamp = Stamp {
                    publisher: p,
                    sequence: seq,
                    sent_ns,
                };
                template.append(conn.wbuf(), &stamp, pid);
                seq += 1;
            }
            if let Err(err) = conn.flush().await {
                failure = Some(err);
                break;
            }
            Progress::add(&progress.sent, n);
            crate::runtime::cooperate().await;
            if rate.is_none() && (!qos1 || pool.used() < window) {
                continue;
            }
        }
        // Paced: wake when the next message is due, but at most every
        // MIN_PACE_NS, sending all that are due at once (a timer per
        // message would cost more than the messages).
        let wake_at = match rate {
            Some(r) => (start + r.due_ns(seq)).max(now_ns() + MIN_PACE_NS).min(end),
            None => end,
        };
        if qos1 && pool.used() > 0 {
            let read = or(async { Some(conn.fill().await) }, async {
                sleep_until(wake_at).await;
                None
            })
            .await;
            match read {
                None => {}
                Some(Err(err)) => {
                    failure = Some(err);
                    break 'publish;
                }
                Some(Ok(_)) => {
                    let acks = match take_acks(conn, &mut pool, &mut out) {
                        Ok(()) => conn.flush().await,
                        Err(err) => Err(err),
                    };
                    if let Err(err) = acks {
                        failure = Some(err);
                        break 'publish;
                    }
                }
            }
        } else {
            sleep_until(wake_at).await;
        }
    }
    out.end_ns = Some(now_ns());
    out.sent = seq;
    // Account before waiting for acknowledgements: subscribers may stop as
    // soon as everything expected has arrived.
    shared
        .expected
        .fetch_add(shared.layout.expected(p, seq), Ordering::AcqRel);
    shared.pubs_done.count_down();
    if qos1 && failure.is_none() {
        let deadline = now_ns() + args.drain_ms * 1_000_000;
        while pool.used() > 0 {
            let read = or(async { Some(conn.fill().await) }, async {
                sleep_until(deadline).await;
                None
            })
            .await;
            match read {
                None => break,
                Some(Err(err)) => {
                    failure = Some(err);
                    break;
                }
                Some(Ok(_)) => {
                    let acks = match take_acks(conn, &mut pool, &mut out) {
                        Ok(()) => conn.flush().await,
                        Err(err) => Err(err),
                    };
                    if let Err(err) = acks {
                        failure = Some(err);
                        break;
                    }
                }
            }
        }
    }
    out.unacked = u64::from(pool.used());
    if let Some(err) = failure {
        out.error = Some(format!("connection ended: {}", err.label()));
        Progress::add(&progress.errors, 1);
    }
    Progress::sub(&progress.up, 1);
    e.conn.disconnect().await;
    result.borrow_mut().pubs.push((p, out));
}

/// The route check of publisher `p`: a QoS 0 probe on `topic` every
/// [`PROBE_INTERVAL_MS`] until every subscriber has heard its publishers,
/// at most `--route-wait-ms`.
async fn probe_routes(
    p: u32,
    conn: &mut crate::conn::Conn,
    topic: &str,
    args: &PubsubArgs,
    shared: &Shared,
) -> Result<(), String> {
    let probe = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: Bytes::copy_from_slice(topic.as_bytes()),
        packet_id: 0,
        properties: Properties::default().into(),
        payload: Bytes::copy_from_slice(&probe_payload(p)),
    });
    let start = now_ns();
    shared.probe_start_ns.fetch_min(start, Ordering::AcqRel);
    let deadline = start + args.route_wait_ms * 1_000_000;
    while !shared.routes_ready.is_open() {
        if now_ns() >= deadline {
            let (host, port) = args.sub_endpoint();
            return Err(format!(
                "route check: not every subscriber on {host}:{port} heard the probes of the \
                 publishers on {}:{} within {} ms (--route-wait-ms): are the two nodes one cluster?",
                args.common.host, args.common.port, args.route_wait_ms
            ));
        }
        conn.send(&probe)
            .await
            .map_err(|e| format!("connection ended during the route check: {}", e.label()))?;
        let wake = (now_ns() + PROBE_INTERVAL_MS * 1_000_000).min(deadline);
        or(shared.routes_ready.wait(), sleep_until(wake)).await;
    }
    Ok(())
}

/// Session Expiry Interval of `--persistent-subscribers` (5.0), seconds.
const PERSISTENT_SESSION_SECS: u32 = 3600;

/// Make `spec` ask for a session that outlives the connection: Clean
/// Session 0 in 3.x, a Session Expiry Interval in 5.0 (with Clean Start,
/// so each run starts from a new session).
fn keep_session(spec: &mut ConnectSpec, version: ProtocolVersion) {
    if version.is_v5() {
        spec.session_expiry = Some(PERSISTENT_SESSION_SECS);
    } else {
        spec.clean_start = false;
    }
}

fn take_acks(
    conn: &mut crate::conn::Conn,
    pool: &mut PidPool,
    out: &mut PubResult,
) -> Result<(), ConnError> {
    while let Some(packet) = conn.next_buffered()? {
        match packet {
            // QoS 1 ends at PUBACK, QoS 2 at PUBCOMP (after our PUBREL).
            Packet::PubAck(PubAck { packet_id, .. })
            | Packet::PubComp(PubComp { packet_id, .. }) => {
                if pool.release(packet_id) {
                    out.acked += 1;
                } else {
                    out.unexpected_acks += 1;
                }
            }
            Packet::PubRec(rec) => {
                if rec.code.0 >= 0x80 {
                    // Refused: the exchange ends here (no PUBREL).
                    if pool.release(rec.packet_id) {
                        out.acked += 1;
                    }
                    continue;
                }
                conn.queue(&Packet::PubRel(PubRel {
                    packet_id: rec.packet_id,
                    code: ReasonCode::SUCCESS,
                    properties: Properties::default(),
                }))?;
            }
            Packet::Disconnect(d) => return Err(ConnError::Disconnected(d.code)),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_pool_cycles_and_skips_ids_in_use() {
        let mut pool = PidPool::new();
        assert_eq!(pool.alloc(), Some(1));
        assert_eq!(pool.alloc(), Some(2));
        assert!(pool.release(1));
        assert!(!pool.release(1), "double release");
        assert!(!pool.release(0), "0 is never an id");
        assert_eq!(pool.used(), 1);
        // Take every id: 2 is still in use, so 65534 more fit.
        let mut taken = 0;
        while pool.alloc().is_some() {
            taken += 1;
        }
        assert_eq!(taken, 65_534);
        assert_eq!(pool.used(), 65_535);
        assert!(pool.release(40_000));
        assert_eq!(pool.alloc(), Some(40_000), "the only free one");
    }

    #[test]
    fn pid_pool_wraps_past_65535() {
        let mut pool = PidPool::new();
        for _ in 0..65_535 {
            let id = pool.alloc().expect("free");
            assert!(pool.release(id));
        }
        assert_eq!(pool.alloc(), Some(1), "wrapped, skipping 0");
    }

    #[test]
    fn persistent_subscribers_keep_their_sessions() {
        let mut v3 = ConnectSpec::new("s".into(), 0);
        keep_session(&mut v3, ProtocolVersion::V3_1_1);
        assert!(!v3.clean_start);
        let mut v5 = ConnectSpec::new("s".into(), 0);
        keep_session(&mut v5, ProtocolVersion::V5);
        assert!(v5.clean_start);
        assert_eq!(v5.session_expiry, Some(PERSISTENT_SESSION_SECS));
        let packet = v5.packet(ProtocolVersion::V5);
        assert_eq!(
            packet.properties.session_expiry_interval,
            Some(PERSISTENT_SESSION_SECS)
        );
    }

    #[test]
    fn roles_spread_over_threads() {
        // 1 -> 1 on two threads: subscriber on 0, publisher on 1.
        assert_eq!(thread_of_subscriber(0, 2), 0);
        assert_eq!(thread_of_publisher(0, 1, 2), 1);
        // Everything on one thread.
        assert_eq!(thread_of_publisher(7, 3, 1), 0);
    }
}
