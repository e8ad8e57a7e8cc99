//! `attack`: one hostile client pattern against a broker, while canaries
//! (`scenario::canary`) time how the broker's other clients fare and
//! /proc (`--broker-pid`) shows what the attack costs it in memory.
//! scripts/hostile.sh runs every kind against fresh brokers.
//!
//! Kinds (`--kind`):
//! - `never-read`: one client subscribed to its own topic writes PINGREQs
//!   and QoS 0 publishes to that topic as fast as the broker takes them and
//!   never reads: every PINGRESP and every delivery piles up towards it.
//! - `deep-filter`: one client sends `--count` (16) SUBSCRIBEs, each with
//!   its own filter of `--levels` (30,000) levels ("deep0/a/a/...").
//! - `slow-subscriber`: an MQTT 3.1.1 subscriber at QoS 1 (it cannot tell
//!   the broker a Receive Maximum) never reads, while a publisher sends
//!   1 KiB QoS 1 publishes to its topic (64 in flight) for the duration.
//! - `big-announce`: `--count` (1,000) connections each send CONNECT, then
//!   a PUBLISH fixed header announcing the largest remaining length MQTT
//!   allows (268,435,455 bytes, 256 MiB less one byte), then trickle one
//!   byte of it per second.
//! - `absent-sessions`: `--count` (5,000) persistent sessions (Clean
//!   Session 0 / Clean Start 0 with a one-hour expiry), one subscription
//!   each, disconnected and left absent. Against a broker that keeps
//!   running they stay until it expires them.
//!
//! Phases: the canaries connect; `--baseline-secs` of calm, whose end is
//! the "before" memory reading; the attack, on an executor thread of its
//! own, for `--duration-secs`; its connections go (the absent sessions
//! stay: they are the attack); `--settle-secs` later, the "after" reading.
//! The peak is the largest of the readings taken every 100 ms from the
//! attack's start to the after reading. Canary figures cover the rounds
//! that overlap that same span ("calm" ones the baseline).
//!
//! "Refused" says whether the broker defended itself, and how: it closed
//! or stopped reading the never-read client, refused the deep filters in
//! SUBACK or closed, closed the slow subscriber, closed the big-announce
//! connections, or dropped probed absent sessions (100 are reconnected
//! after the after reading to see whether their session is still there).
//!
//! Bounded: `--duration-secs` at most 30; connection set-up stops at the
//! attack's end (absent sessions: after 20 s, their probes after 10 s);
//! every read and write races a deadline. At most 15,000 connections. Pure parts are tested at the
//! bottom.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io::Write as _;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use clap::{Args, ValueEnum};
use futures_lite::future::or;
use glommio::Placement;
use ringmq_codec::{
    Packet, Properties, ProtocolVersion, PubAck, Publish, QoS, ReasonCode, Subscribe,
    SubscriptionOptions,
};

use crate::cli::{ArgError, Common};
use crate::conn::{within, Conn, ConnectSpec, ReadSize};
use crate::error::{BenchError, ConnError};
use crate::hist::exact_summary;
use crate::procfs::{now_ns, process_rss};
use crate::report::{Report, Value};
use crate::runtime::{cooperate, executor_builder, set_slice, Latch, Progress};
use crate::scenario::canary::{self, Canary, CanaryArgs, CanaryRecord, CanaryStats};
use crate::scenario::{
    check_fds, common_params, machine_note, sleep_until, CpuWindow, Failures, Target,
};

/// Keep Alive of every attacking connection, seconds: longer than any
/// attack, so no broker closes one for silence.
const KEEP_ALIVE_SECS: u16 = 120;

/// PINGREQ + PUBLISH pairs per write of `never-read`.
const PAIRS_PER_WRITE: u64 = 32;

/// A write that takes this long means the broker stopped reading, ns.
const STALL_NS: u64 = 1_000_000_000;

/// Handshakes in progress at once.
const CONCURRENCY: usize = 64;

/// QoS 1 publishes in flight of the `slow-subscriber` publisher.
const PUBLISH_WINDOW: u64 = 64;

/// How long the slow subscriber reads at the end to find out whether the
/// broker closed it, ns.
const SUBSCRIBER_DRAIN_NS: u64 = 3_000_000_000;

/// v5 Session Expiry Interval of the absent sessions, seconds.
const SESSION_EXPIRY_SECS: u32 = 3600;

/// Absent sessions stop being created this long after the start, ns.
const CREATE_LIMIT_NS: u64 = 20_000_000_000;

/// The probes of the absent sessions stop this long after they start, ns.
const PROBE_LIMIT_NS: u64 = 10_000_000_000;

/// Absent sessions reconnected at the end to see whether they survived.
const PROBES: u64 = 100;

/// Largest remaining length MQTT can express (0xFF 0xFF 0xFF 0x7F).
pub const MAX_REMAINING_LENGTH: u32 = 268_435_455;

/// Memory readings while the attack runs, ms apart.
const SAMPLE_MS: u64 = 100;

/// The attacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AttackKind {
    /// A client that writes PINGREQs and QoS 0 publishes to its own
    /// subscription as fast as it can and never reads.
    NeverRead,
    /// SUBSCRIBEs with filters of 30,000 levels.
    DeepFilter,
    /// A v3.1.1 QoS 1 subscriber that never reads, fed 1 KiB publishes.
    SlowSubscriber,
    /// Connections announcing a 256 MiB PUBLISH, then a byte per second.
    BigAnnounce,
    /// Persistent sessions created and left absent.
    AbsentSessions,
}

impl AttackKind {
    /// The name `--kind` takes.
    pub fn name(self) -> &'static str {
        match self {
            AttackKind::NeverRead => "never-read",
            AttackKind::DeepFilter => "deep-filter",
            AttackKind::SlowSubscriber => "slow-subscriber",
            AttackKind::BigAnnounce => "big-announce",
            AttackKind::AbsentSessions => "absent-sessions",
        }
    }

    /// Default `--duration-secs` (absent-sessions: the hold after creating).
    pub fn default_secs(self) -> f64 {
        match self {
            AttackKind::NeverRead | AttackKind::SlowSubscriber => 15.0,
            AttackKind::DeepFilter => 10.0,
            AttackKind::BigAnnounce => 20.0,
            AttackKind::AbsentSessions => 5.0,
        }
    }

    /// Default `--count`.
    pub fn default_count(self) -> u64 {
        match self {
            AttackKind::DeepFilter => 16,
            AttackKind::BigAnnounce => 1000,
            AttackKind::AbsentSessions => 5000,
            AttackKind::NeverRead | AttackKind::SlowSubscriber => 1,
        }
    }

    /// Default `--payload`.
    pub fn default_payload(self) -> usize {
        match self {
            AttackKind::SlowSubscriber => 1024,
            _ => 256,
        }
    }

    /// Sockets the attack opens (besides the canaries).
    pub fn sockets(self, count: u64) -> u64 {
        match self {
            AttackKind::NeverRead | AttackKind::DeepFilter => 1,
            AttackKind::SlowSubscriber => 2,
            AttackKind::BigAnnounce => count,
            // Closed one by one; CONCURRENCY at most are open at once.
            AttackKind::AbsentSessions => count.min(CONCURRENCY as u64),
        }
    }
}

/// `attack` flags.
#[derive(Args, Debug, Clone)]
pub struct AttackArgs {
    /// Flags shared by every scenario (`--threads` is not used: the attack
    /// runs on one executor thread, the canaries on another; `--cpus`
    /// pins the canaries to its first CPU and the attack to its second).
    #[command(flatten)]
    pub common: Common,
    /// The attack.
    #[arg(long, value_enum)]
    pub kind: AttackKind,
    /// Seconds the attack lasts (absent-sessions: held after creating
    /// them). Default: never-read and slow-subscriber 15, deep-filter 10,
    /// big-announce 20, absent-sessions 5.
    #[arg(long)]
    pub duration_secs: Option<f64>,
    /// SUBSCRIBEs (deep-filter, default 16), connections (big-announce,
    /// 1000) or sessions (absent-sessions, 5000).
    #[arg(short = 'n', long)]
    pub count: Option<u64>,
    /// Levels of each deep-filter filter.
    #[arg(long, default_value_t = 30_000)]
    pub levels: u32,
    /// Payload bytes of never-read's QoS 0 publishes (default 256) and of
    /// slow-subscriber's QoS 1 ones (1024).
    #[arg(long)]
    pub payload: Option<usize>,
    /// Seconds of calm before the attack (canary baseline, memory before).
    #[arg(long, default_value_t = 2.0)]
    pub baseline_secs: f64,
    /// Seconds after the attack's connections are gone before the memory
    /// is read again.
    #[arg(long, default_value_t = 3.0)]
    pub settle_secs: f64,
    /// Prefix of the attack's topics.
    #[arg(long, default_value = "ringmq-bench/attack")]
    pub topic_prefix: String,
    /// The canaries.
    #[command(flatten)]
    pub canary: CanaryArgs,
}

fn bad<T>(flag: &'static str, reason: impl Into<String>) -> Result<T, ArgError> {
    Err(ArgError {
        flag,
        reason: reason.into(),
    })
}

fn secs_within(flag: &'static str, secs: f64, max: f64) -> Result<(), ArgError> {
    if secs.is_finite() && secs > 0.0 && secs <= max {
        Ok(())
    } else {
        bad(
            flag,
            format!("{secs} is not a number of seconds in (0, {max}]"),
        )
    }
}

impl AttackArgs {
    /// The attack's duration in seconds.
    pub fn duration_secs(&self) -> f64 {
        self.duration_secs
            .unwrap_or_else(|| self.kind.default_secs())
    }

    /// `--count` or the kind's default.
    pub fn count(&self) -> u64 {
        self.count.unwrap_or_else(|| self.kind.default_count())
    }

    /// `--payload` or the kind's default.
    pub fn payload(&self) -> usize {
        self.payload.unwrap_or_else(|| self.kind.default_payload())
    }

    /// Checks before running.
    pub fn validate(&self) -> Result<(), ArgError> {
        self.common.validate()?;
        self.canary.validate()?;
        secs_within("duration-secs", self.duration_secs(), 30.0)?;
        secs_within("baseline-secs", self.baseline_secs, 10.0)?;
        secs_within("settle-secs", self.settle_secs, 10.0)?;
        if !(1..=15_000).contains(&self.count()) {
            return bad("count", format!("{} is not in 1..=15000", self.count()));
        }
        if !(1..=32_000).contains(&self.levels) {
            return bad(
                "levels",
                format!(
                    "{} is not in 1..=32000 (a filter is at most 65,535 bytes)",
                    self.levels
                ),
            );
        }
        if self.payload() > 1024 * 1024 {
            return bad("payload", "at most 1 MiB");
        }
        let p = &self.topic_prefix;
        if p.is_empty() || p.contains(['+', '#']) || p.ends_with('/') || p.len() > 1024 {
            return bad(
                "topic-prefix",
                "a topic prefix: 1 to 1024 bytes, no '+', '#' or trailing '/'",
            );
        }
        Ok(())
    }
}

/// The deep-filter attack's filter `index`: `deepINDEX/a/a/...`, `levels`
/// levels in all.
pub fn deep_filter(index: u64, levels: u32) -> String {
    let mut f = format!("deep{index}");
    f.reserve(2 * levels.saturating_sub(1) as usize);
    for _ in 1..levels {
        f.push_str("/a");
    }
    f
}

/// The bytes of a PUBLISH whose fixed header announces
/// [`MAX_REMAINING_LENGTH`] bytes, none of which follow.
pub fn big_announce_header() -> [u8; 5] {
    [0x30, 0xFF, 0xFF, 0xFF, 0x7F]
}

/// Byte `k` of the trickle after [`big_announce_header`]: a topic length
/// of 1, the topic "a", then payload bytes.
pub fn trickle_byte(k: u64) -> u8 {
    match k {
        0 => 0x00,
        1 => 0x01,
        2 => b'a',
        _ => b'x',
    }
}

/// One write of `never-read`: `pairs` times PINGREQ + a QoS 0 PUBLISH of
/// `payload` bytes to `topic`.
pub fn never_read_write(
    version: ProtocolVersion,
    topic: &str,
    payload: usize,
    pairs: u64,
) -> Result<Bytes, ConnError> {
    let publish = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: Bytes::from(topic.to_string()),
        packet_id: 0,
        properties: Default::default(),
        payload: Bytes::from(vec![b'x'; payload]),
    });
    let mut buf = BytesMut::new();
    for _ in 0..pairs {
        Packet::PingReq.encode(version, &mut buf)?;
        publish.encode(version, &mut buf)?;
    }
    Ok(buf.freeze())
}

/// What the broker made of the attack.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// It defended itself, like this.
    Refused(String),
    /// It went along, with this result.
    Accepted(String),
}

impl Verdict {
    /// "yes: ..." or "no: ...".
    pub fn text(&self) -> String {
        match self {
            Verdict::Refused(how) => format!("yes: {how}"),
            Verdict::Accepted(what) => format!("no: {what}"),
        }
    }
}

/// An attack's own figures and its verdict.
struct Outcome {
    rows: Report,
    verdict: Verdict,
}

impl Outcome {
    fn new(rows: Report, verdict: Verdict) -> Outcome {
        Outcome { rows, verdict }
    }
}

/// Phases the scenario's thread and the attack's thread share.
#[derive(Debug)]
struct Phase {
    /// Opened by the scenario: start now.
    go: Arc<Latch>,
    /// Opened by the attack once its connections are gone.
    ended: Arc<Latch>,
    /// When the attack started and ended (ns).
    started_ns: AtomicU64,
    ended_ns: AtomicU64,
    /// Opened by the scenario once the after reading is taken.
    sampled: Arc<Latch>,
}

impl Phase {
    /// The attack's connections are gone (the first call counts).
    fn end(&self) {
        let _ = self
            .ended_ns
            .compare_exchange(0, now_ns(), Ordering::AcqRel, Ordering::Acquire);
        self.ended.open();
    }
}

/// What an attack function gets.
struct Ctx {
    target: Arc<Target>,
    args: AttackArgs,
    phase: Arc<Phase>,
    end_ns: u64,
}

/// MiB, signed.
fn mib(delta: i128) -> f64 {
    delta as f64 / (1024.0 * 1024.0)
}

/// The scenario thread's view of the run: the broker's memory, read every
/// [`SAMPLE_MS`], and the progress line.
struct Monitor {
    pid: Option<u32>,
    peak: u64,
    gone: bool,
    kind: AttackKind,
    quiet: bool,
    progress: Arc<Progress>,
    start_ns: u64,
    next_line_ns: u64,
}

impl Monitor {
    /// The broker's RSS now (and the peak so far); `None` without
    /// `--broker-pid` or once /proc/PID has no memory (it exited).
    fn read(&mut self) -> Option<u64> {
        let rss = process_rss(self.pid?);
        match rss {
            Some(v) => self.peak = self.peak.max(v),
            None => self.gone = true,
        }
        rss
    }

    /// Read every [`SAMPLE_MS`] while `busy()`, with a progress line a
    /// second (unless quiet) naming the phase `what`.
    fn watch_while(&mut self, what: &str, mut busy: impl FnMut() -> bool) {
        while busy() {
            std::thread::sleep(Duration::from_millis(SAMPLE_MS));
            let rss = self.read();
            let now = now_ns();
            if self.quiet || now < self.next_line_ns {
                continue;
            }
            self.next_line_ns = now + 1_000_000_000;
            let rss = rss.map_or("n/a".to_string(), |v| format!("{:.1} MiB", mib(v.into())));
            let p = &self.progress;
            let _ = writeln!(
                std::io::stderr(),
                "[{:6.1}s] {} {what}: broker RSS {rss} | attack conns {} | canary rounds {} back {}",
                now.saturating_sub(self.start_ns) as f64 / 1e9,
                self.kind.name(),
                p.up.load(Ordering::Relaxed),
                p.sent.load(Ordering::Relaxed),
                p.received.load(Ordering::Relaxed),
            );
        }
    }

    /// Whether the broker is still there (a row's text).
    fn alive(&self) -> String {
        match self.pid {
            Some(pid) if process_rss(pid).is_some() && !self.gone => "yes".to_string(),
            Some(pid) => format!("NO: /proc/{pid} has no memory any more (exited)"),
            None => "n/a: no --broker-pid".to_string(),
        }
    }
}

/// What the scenario thread measured around the attack.
struct Readings {
    before: Option<u64>,
    peak: u64,
    after: Option<u64>,
    alive: String,
    /// Calm from, attack from, attack ended, after reading (ns).
    calm_ns: u64,
    start_ns: u64,
    ended_ns: u64,
    end_ns: u64,
}

/// Run the attack scenario; one report.
pub fn run(args: &AttackArgs) -> Result<Report, BenchError> {
    args.validate()?;
    let kind = args.kind;
    let canaries = args.canary.canaries;
    check_fds("count", kind.sockets(args.count()) + canaries as u64)?;
    set_slice(Duration::from_micros(args.common.slice_us));
    let target = Target::from_common(&args.common)?;
    let cpu_of = |i| args.common.cpu_of_thread(i);
    let canary = match canaries {
        0 => None,
        _ => Some(Canary::start(
            &args.common,
            &target,
            &args.canary,
            cpu_of(0),
        )?),
    };
    let calm_ns = match &canary {
        Some(c) => c.wait_ready(Duration::from_secs(10))?,
        None => now_ns(),
    };
    let mut monitor = Monitor {
        pid: args.common.broker_pid,
        peak: 0,
        gone: false,
        kind,
        quiet: args.common.quiet,
        progress: Arc::clone(&target.progress),
        start_ns: calm_ns,
        next_line_ns: 0,
    };
    let calm_end = calm_ns + (args.baseline_secs * 1e9) as u64;
    monitor.watch_while("calm", || now_ns() < calm_end);
    let before = monitor.read();
    monitor.peak = before.unwrap_or(0);

    let phase = Arc::new(Phase {
        go: Latch::new(1),
        ended: Latch::new(1),
        started_ns: AtomicU64::new(0),
        ended_ns: AtomicU64::new(0),
        sampled: Latch::new(1),
    });
    let placement = cpu_of(1).map_or(Placement::Unbound, Placement::Fixed);
    let (t, a, p) = (Arc::clone(&target), args.clone(), Arc::clone(&phase));
    let handle = executor_builder(placement)
        .name("attack")
        .io_memory(args.common.io_memory_kib * 1024)
        .ring_depth(args.common.ring_depth)
        .spawn(move || async move { attack_main(t, a, p).await })
        .map_err(|e| BenchError::Executor(format!("attack thread: {e}")))?;
    let cpu = CpuWindow::start(args.common.broker_pid);
    let start_ns = now_ns();
    phase.started_ns.store(start_ns, Ordering::Release);
    phase.go.open();
    monitor.watch_while("attack", || !phase.ended.is_open());
    let ended_ns = phase.ended_ns.load(Ordering::Acquire);
    let settle_end = ended_ns + (args.settle_secs * 1e9) as u64;
    monitor.watch_while("settle", || now_ns() < settle_end);
    let after = monitor.read();
    let end_ns = now_ns();
    let (own_cpu, broker_cpu) = (crate::procfs::CpuSample::own(), cpu.broker_now());
    let alive = monitor.alive();
    phase.sampled.open();

    let outcome = handle
        .join()
        .map_err(|e| BenchError::Executor(format!("attack thread: {e}")))?;
    let record = match canary {
        Some(c) => c.finish()?,
        None => CanaryRecord::default(),
    };
    let readings = Readings {
        before,
        peak: monitor.peak,
        after,
        alive,
        calm_ns,
        start_ns,
        ended_ns,
        end_ns,
    };
    let mut report = build_report(args, &readings, outcome, &record);
    cpu.report_until(&mut report, own_cpu, broker_cpu);
    Ok(report)
}

/// The report: parameters, the verdict, memory, canaries, the attack's
/// own rows; the one-line result as the last note.
fn build_report(
    args: &AttackArgs,
    r: &Readings,
    outcome: Outcome,
    record: &CanaryRecord,
) -> Report {
    let kind = args.kind;
    let calm = canary::window_stats(&record.rounds, r.calm_ns, r.start_ns);
    let during = canary::window_stats(&record.rounds, r.start_ns, r.end_ns);
    let mut report = Report::new("attack");
    report.param("kind", Value::Text(kind.name().to_string()));
    common_params(&mut report, &args.common);
    report.param("duration_s", Value::Float(args.duration_secs(), 1));
    report.param("count", Value::Int(args.count()));
    report.param("canaries", Value::Int(args.canary.canaries as u64));
    report.param(
        "canary_interval_ms",
        Value::Int(args.canary.canary_interval_ms),
    );
    machine_note(&mut report);
    report.text("refused", "refused", outcome.verdict.text());
    report.text(
        "broker_alive",
        "broker alive after the attack",
        r.alive.clone(),
    );
    let growth = memory_rows(&mut report, r.before, r.peak, r.after);
    report.float(
        "attack_s",
        "attack lasted (s)",
        r.ended_ns.saturating_sub(r.start_ns) as f64 / 1e9,
        2,
    );
    canary::report_stats(
        &mut report,
        "canary_calm",
        "canary before the attack",
        &calm,
    );
    canary::report_stats(&mut report, "canary", "canary during the attack", &during);
    report.int(
        "canary_disconnects",
        "canary connections lost or refused (they retry)",
        record.disconnects.total(),
    );
    report.int(
        "canary_duplicates",
        "canary deliveries of a round already back",
        record.duplicates,
    );
    if args.canary.canaries > 0 {
        report.note(record.priority_note());
    }
    for (why, n) in &record.disconnects.0 {
        report.note(format!("canary connections lost or refused: {n} x {why}"));
    }
    report.rows.extend(outcome.rows.rows);
    report.notes.extend(outcome.rows.notes);
    // The one-line result: the last line of the table output and the last
    // note in JSON.
    let line = one_line(kind, growth, &during, &outcome.verdict);
    report.note(format!("result: {line}"));
    report
}

/// Memory rows; returns (after - before, peak - before) in MiB if known.
fn memory_rows(
    report: &mut Report,
    before: Option<u64>,
    peak: u64,
    after: Option<u64>,
) -> Option<(f64, f64)> {
    match (before, after) {
        (Some(b), Some(a)) => {
            report.int("rss_before_bytes", "broker RSS before (bytes)", b);
            report.int("rss_peak_bytes", "broker RSS peak (bytes)", peak);
            report.int("rss_after_bytes", "broker RSS after (bytes)", a);
            let growth = mib(i128::from(a) - i128::from(b));
            let peak_growth = mib(i128::from(peak) - i128::from(b));
            report.float(
                "rss_growth_mib",
                "broker RSS after - before (MiB)",
                growth,
                1,
            );
            report.float(
                "rss_peak_growth_mib",
                "broker RSS peak - before (MiB)",
                peak_growth,
                1,
            );
            Some((growth, peak_growth))
        }
        _ => {
            report.text(
                "rss_growth_mib",
                "broker RSS growth",
                "n/a: no reading (no --broker-pid, or the broker exited)",
            );
            None
        }
    }
}

/// "never-read: RSS +1.2 MiB after (+40.0 at peak); canary p99 ...; refused: yes: ...".
pub fn one_line(
    kind: AttackKind,
    growth: Option<(f64, f64)>,
    canary: &CanaryStats,
    verdict: &Verdict,
) -> String {
    let memory = match growth {
        Some((after, peak)) => format!("RSS {after:+.1} MiB after ({peak:+.1} at peak)"),
        None => "RSS n/a".to_string(),
    };
    format!(
        "{}: {memory}; canary {}; refused: {}",
        kind.name(),
        canary::short(canary),
        verdict.text()
    )
}

async fn attack_main(target: Arc<Target>, args: AttackArgs, phase: Arc<Phase>) -> Outcome {
    phase.go.wait().await;
    let start = phase.started_ns.load(Ordering::Acquire);
    let ctx = Ctx {
        end_ns: start + (args.duration_secs() * 1e9) as u64,
        target,
        args,
        phase,
    };
    let outcome = match ctx.args.kind {
        AttackKind::NeverRead => never_read(&ctx).await,
        AttackKind::DeepFilter => deep_filters(&ctx).await,
        AttackKind::SlowSubscriber => slow_subscriber(&ctx).await,
        AttackKind::BigAnnounce => big_announce(&ctx).await,
        AttackKind::AbsentSessions => absent_sessions(&ctx).await,
    };
    // Whatever path the attack took, the scenario must not wait forever.
    ctx.phase.end();
    outcome
}

/// Run `f(i)` for `i` in `0..count`, `concurrency` at a time.
async fn pool<F, Fut>(count: u64, concurrency: usize, f: F)
where
    F: Fn(u64) -> Fut + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let next = Rc::new(Cell::new(0u64));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, f) = (Rc::clone(&next), f.clone());
            glommio::spawn_local(async move {
                loop {
                    let i = next.get();
                    if i >= count {
                        break;
                    }
                    next.set(i + 1);
                    f(i).await;
                }
            })
        })
        .collect();
    for w in workers {
        w.await;
    }
}

/// `fut`, or `None` once CLOCK_MONOTONIC reaches `until_ns`.
async fn before<T>(until_ns: u64, fut: impl Future<Output = T>) -> Option<T> {
    or(async { Some(fut.await) }, async {
        sleep_until(until_ns).await;
        None
    })
    .await
}

/// Connect and subscribe `filter` at `qos`; the granted codes.
async fn subscribed(
    target: &Target,
    spec: &ConnectSpec,
    filter: &str,
    qos: QoS,
) -> Result<(Conn, Vec<ReasonCode>), ConnError> {
    let mut e = target.establish(spec, ReadSize::SMALL).await?;
    let codes = within(
        target.connect_timeout,
        "SUBACK",
        e.conn.subscribe(1, &[(filter.to_string(), qos)]),
    )
    .await?;
    Ok((e.conn, codes))
}

fn codes_text(codes: &[ReasonCode]) -> String {
    let mut tally: std::collections::BTreeMap<u8, u64> = Default::default();
    for c in codes {
        *tally.entry(c.0).or_insert(0) += 1;
    }
    let parts: Vec<String> = tally
        .iter()
        .map(|(c, n)| format!("0x{c:02X} x{n}"))
        .collect();
    parts.join(", ")
}

async fn never_read(ctx: &Ctx) -> Outcome {
    let mut rows = Report::new("attack");
    let topic = format!("{}/never-read", ctx.args.topic_prefix);
    let spec = ctx.target.connect_spec("attack-nr", 0, KEEP_ALIVE_SECS);
    let mut conn = match subscribed(&ctx.target, &spec, &topic, QoS::AtMostOnce).await {
        Ok((conn, codes)) if codes.iter().all(|c| c.0 < 0x80) => conn,
        Ok((_, codes)) => {
            let how = format!("SUBSCRIBE refused ({})", codes_text(&codes));
            return Outcome::new(rows, Verdict::Refused(how));
        }
        Err(e) => return Outcome::new(rows, Verdict::Refused(format!("connect: {e}"))),
    };
    let chunk = match never_read_write(conn.version(), &topic, ctx.args.payload(), PAIRS_PER_WRITE)
    {
        Ok(c) => c,
        Err(e) => return Outcome::new(rows, Verdict::Refused(format!("tool: {e}"))),
    };
    Progress::add(&ctx.target.progress.up, 1);
    let start = now_ns();
    let (mut bytes, mut pairs) = (0u64, 0u64);
    let mut stalled_at: Option<u64> = None;
    let mut closed: Option<(u64, String)> = None;
    while now_ns() < ctx.end_ns {
        conn.wbuf().extend_from_slice(&chunk);
        let t0 = now_ns();
        let result = before(ctx.end_ns, conn.flush()).await;
        let t1 = now_ns();
        if t1 - t0 >= STALL_NS && stalled_at.is_none() {
            stalled_at = Some(t0 - start);
        }
        match result {
            None => break,
            Some(Ok(())) => {
                bytes += chunk.len() as u64;
                pairs += PAIRS_PER_WRITE;
            }
            Some(Err(e)) => {
                closed = Some((t1 - start, e.label()));
                break;
            }
        }
        cooperate().await;
    }
    drop(conn);
    Progress::sub(&ctx.target.progress.up, 1);
    ctx.phase.end();

    rows.int("written_bytes", "bytes the broker took", bytes);
    rows.int(
        "written_pairs",
        "PINGREQ + PUBLISH pairs the broker took",
        pairs,
    );
    let took = format!("{:.1} MiB", mib(i128::from(bytes)));
    let verdict = match (closed, stalled_at) {
        (Some((at, why)), _) => {
            rows.float(
                "closed_after_s",
                "closed by the broker after (s)",
                at as f64 / 1e9,
                2,
            );
            rows.text("close_reason", "close seen as", why.clone());
            Verdict::Refused(format!(
                "closed after {:.1} s ({why}), {took} taken",
                at as f64 / 1e9
            ))
        }
        (None, Some(at)) => {
            rows.float(
                "stopped_reading_after_s",
                "broker stopped reading after (s)",
                at as f64 / 1e9,
                2,
            );
            Verdict::Refused(format!(
                "stopped reading after {:.2} s, {took} taken",
                at as f64 / 1e9
            ))
        }
        (None, None) => Verdict::Accepted(format!("read all {took}")),
    };
    Outcome::new(rows, verdict)
}

async fn deep_filters(ctx: &Ctx) -> Outcome {
    let mut rows = Report::new("attack");
    let count = ctx.args.count();
    let spec = ctx.target.connect_spec("attack-deep", 0, KEEP_ALIVE_SECS);
    let mut conn = match ctx.target.establish(&spec, ReadSize::SMALL).await {
        Ok(e) => e.conn,
        Err(e) => return Outcome::new(rows, Verdict::Refused(format!("connect: {e}"))),
    };
    Progress::add(&ctx.target.progress.up, 1);
    for i in 0..count {
        let subscribe = Subscribe {
            packet_id: (i % 65_535 + 1) as u16,
            properties: Properties::default(),
            filters: vec![(
                Bytes::from(deep_filter(i, ctx.args.levels)),
                SubscriptionOptions {
                    qos: QoS::AtMostOnce,
                    ..SubscriptionOptions::default()
                },
            )],
        };
        if let Err(e) = conn.queue(&Packet::Subscribe(subscribe)) {
            return Outcome::new(rows, Verdict::Refused(format!("tool: {e}")));
        }
    }
    let sent_at = now_ns();
    let mut codes = Vec::new();
    let mut last_ack_ns = None;
    let mut closed: Option<String> = None;
    let exchange = before(ctx.end_ns, async {
        conn.flush().await?;
        while (codes.len() as u64) < count {
            match conn.recv().await? {
                Packet::SubAck(ack) => {
                    codes.extend(ack.codes.first().copied());
                    last_ack_ns = Some(now_ns());
                }
                Packet::Disconnect(d) => return Err(ConnError::Disconnected(d.code)),
                _ => {}
            }
        }
        Ok(())
    })
    .await;
    match exchange {
        Some(Err(e)) => closed = Some(e.label()),
        None => {}
        Some(Ok(())) => {
            // Hold the subscriptions until the end; a close now counts too.
            let hold = before(ctx.end_ns, async {
                loop {
                    conn.fill().await?;
                    while let Some(p) = conn.next_buffered()? {
                        if let Packet::Disconnect(d) = p {
                            return Err::<(), _>(ConnError::Disconnected(d.code));
                        }
                    }
                }
            })
            .await;
            if let Some(Err(e)) = hold {
                closed = Some(e.label());
            }
        }
    }
    if closed.is_none() {
        conn.disconnect().await;
    } else {
        drop(conn);
    }
    Progress::sub(&ctx.target.progress.up, 1);
    ctx.phase.end();

    let granted = codes.iter().filter(|c| c.0 < 0x80).count() as u64;
    let refused = codes.len() as u64 - granted;
    rows.int("subscribes_sent", "SUBSCRIBEs sent", count);
    rows.int(
        "filter_levels",
        "levels per filter",
        u64::from(ctx.args.levels),
    );
    rows.int("suback_granted", "SUBACK: granted", granted);
    rows.int("suback_refused", "SUBACK: refused (>= 0x80)", refused);
    if !codes.is_empty() {
        rows.text("suback_codes", "SUBACK codes", codes_text(&codes));
    }
    if let Some(at) = last_ack_ns {
        rows.float(
            "suback_ms",
            "last SUBACK after the SUBSCRIBEs (ms)",
            (at - sent_at) as f64 / 1e6,
            1,
        );
    }
    let verdict = match closed {
        Some(why) => {
            rows.text("closed", "connection closed by the broker", why.clone());
            Verdict::Refused(format!("closed after {} SUBACKs ({why})", codes.len()))
        }
        None if refused > 0 => Verdict::Refused(format!("SUBACK {}", codes_text(&codes))),
        None if (codes.len() as u64) < count => Verdict::Accepted(format!(
            "only {} of {count} SUBACKs within the attack",
            codes.len()
        )),
        None => Verdict::Accepted(format!(
            "{granted} filters of {} levels granted",
            ctx.args.levels
        )),
    };
    Outcome::new(rows, verdict)
}

async fn slow_subscriber(ctx: &Ctx) -> Outcome {
    let mut rows = Report::new("attack");
    let topic = format!("{}/slow", ctx.args.topic_prefix);
    // MQTT 3.1.1 whatever --mqtt-version says: it cannot announce a
    // Receive Maximum, so the broker's own window is all that holds.
    let v3 = Target {
        addr: ctx.target.addr,
        version: ProtocolVersion::V3_1_1,
        connect_timeout: ctx.target.connect_timeout,
        prefix: ctx.target.prefix.clone(),
        progress: Arc::clone(&ctx.target.progress),
        transport: ctx.target.transport.clone(),
        login: ctx.target.login.clone(),
        sources: ctx.target.sources.fresh(),
    };
    let spec = ctx
        .target
        .connect_spec("attack-slow-sub", 0, KEEP_ALIVE_SECS);
    let mut sub = match subscribed(&v3, &spec, &topic, QoS::AtLeastOnce).await {
        Ok((conn, codes)) if codes.iter().all(|c| c.0 < 0x80) => {
            rows.text(
                "subscriber_granted",
                "subscriber granted",
                codes_text(&codes),
            );
            conn
        }
        Ok((_, codes)) => {
            let how = format!("SUBSCRIBE refused ({})", codes_text(&codes));
            return Outcome::new(rows, Verdict::Refused(how));
        }
        Err(e) => return Outcome::new(rows, Verdict::Refused(format!("subscriber: {e}"))),
    };
    let spec = ctx
        .target
        .connect_spec("attack-slow-pub", 0, KEEP_ALIVE_SECS);
    let mut publisher = match ctx.target.establish(&spec, ReadSize::SMALL).await {
        Ok(e) => e.conn,
        Err(e) => return Outcome::new(rows, Verdict::Refused(format!("publisher: {e}"))),
    };
    Progress::add(&ctx.target.progress.up, 2);
    let payload = Bytes::from(vec![b'x'; ctx.args.payload()]);
    let topic_bytes = Bytes::from(topic.clone());
    let start = now_ns();
    let (mut sent, mut acked, mut in_flight) = (0u64, 0u64, 0u64);
    let mut last_ack_ns = start;
    let mut packet_id: u16 = 0;
    let mut publisher_closed: Option<String> = None;
    while now_ns() < ctx.end_ns {
        while in_flight < PUBLISH_WINDOW {
            packet_id = packet_id.checked_add(1).unwrap_or(1);
            let p = Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: topic_bytes.clone(),
                packet_id,
                properties: Default::default(),
                payload: payload.clone(),
            });
            if let Err(e) = publisher.queue(&p) {
                publisher_closed = Some(format!("tool: {e}"));
                break;
            }
            in_flight += 1;
            sent += 1;
        }
        let round = before(ctx.end_ns, async {
            publisher.flush().await?;
            publisher.fill().await?;
            let mut acks = 0;
            while let Some(p) = publisher.next_buffered()? {
                match p {
                    Packet::PubAck(_) => acks += 1,
                    Packet::Disconnect(d) => return Err(ConnError::Disconnected(d.code)),
                    _ => {}
                }
            }
            Ok(acks)
        })
        .await;
        match round {
            None => break,
            Some(Ok(acks)) => {
                if acks > 0 {
                    last_ack_ns = now_ns();
                }
                acked += acks;
                in_flight = in_flight.saturating_sub(acks);
            }
            Some(Err(e)) => {
                publisher_closed = Some(e.label());
                break;
            }
        }
        if publisher_closed.is_some() {
            break;
        }
        cooperate().await;
    }
    let elapsed_ns = now_ns() - start;
    if publisher_closed.is_none() {
        publisher.disconnect().await;
    }
    // Now read, to find out whether the broker closed the subscriber and
    // how much it still had for it.
    let (mut drained, mut sub_closed) = (0u64, None);
    let drain = before(now_ns() + SUBSCRIBER_DRAIN_NS, async {
        loop {
            match sub.recv().await? {
                Packet::Publish(p) => {
                    drained += 1;
                    if p.qos != QoS::AtMostOnce {
                        sub.send(&Packet::PubAck(PubAck {
                            packet_id: p.packet_id,
                            code: ReasonCode::SUCCESS,
                            properties: Properties::default(),
                        }))
                        .await?;
                    }
                }
                Packet::Disconnect(d) => return Err::<(), _>(ConnError::Disconnected(d.code)),
                _ => {}
            }
        }
    })
    .await;
    if let Some(Err(e)) = drain {
        sub_closed = Some(e.label());
    }
    drop(sub);
    Progress::sub(&ctx.target.progress.up, 2);
    ctx.phase.end();

    let secs = elapsed_ns as f64 / 1e9;
    rows.int("publishes_sent", "publisher: QoS 1 publishes sent", sent);
    rows.int("publishes_acked", "publisher: PUBACKs received", acked);
    rows.float(
        "publishes_acked_per_s",
        "publisher: PUBACKs per second",
        acked as f64 / secs.max(1e-9),
        0,
    );
    rows.float(
        "publisher_last_ack_s",
        "publisher: last PUBACK after (s)",
        (last_ack_ns - start) as f64 / 1e9,
        2,
    );
    rows.int(
        "subscriber_drained",
        "subscriber: deliveries read when it finally read (3 s)",
        drained,
    );
    rows.text(
        "subscriber_closed",
        "subscriber closed by the broker",
        sub_closed.clone().unwrap_or_else(|| "no".to_string()),
    );
    if let Some(why) = &publisher_closed {
        rows.text("publisher_closed", "publisher closed", why.clone());
    }
    let verdict = match (sub_closed, publisher_closed) {
        (Some(why), _) => Verdict::Refused(format!("subscriber closed ({why})")),
        (None, Some(why)) => Verdict::Refused(format!("publisher closed ({why})")),
        (None, None) => Verdict::Accepted(format!(
            "subscriber kept, {drained} deliveries waiting; publisher {:.0} acks/s",
            acked as f64 / secs.max(1e-9)
        )),
    };
    Outcome::new(rows, verdict)
}

/// What became of one big-announce connection.
#[derive(Clone, Debug, Default)]
struct Trickle {
    closed_after_ns: Option<u64>,
    disconnect: Option<ReasonCode>,
}

async fn big_announce(ctx: &Ctx) -> Outcome {
    let mut rows = Report::new("attack");
    let count = ctx.args.count();
    let outcomes: Rc<RefCell<Vec<Trickle>>> = Rc::new(RefCell::new(Vec::new()));
    let failures = Rc::new(RefCell::new(Failures::default()));
    let tasks = Rc::new(RefCell::new(Vec::new()));
    let end_ns = ctx.end_ns;
    let target = Arc::clone(&ctx.target);
    {
        let (outcomes, failures, tasks) = (
            Rc::clone(&outcomes),
            Rc::clone(&failures),
            Rc::clone(&tasks),
        );
        pool(count, CONCURRENCY, move |i| {
            let (outcomes, failures, tasks, target) = (
                Rc::clone(&outcomes),
                Rc::clone(&failures),
                Rc::clone(&tasks),
                Arc::clone(&target),
            );
            async move {
                if now_ns() >= end_ns {
                    return;
                }
                let spec = target.connect_spec("attack-big", i, KEEP_ALIVE_SECS);
                match before(end_ns, target.establish(&spec, ReadSize::SMALL)).await {
                    Some(Ok(e)) => {
                        Progress::add(&target.progress.up, 1);
                        let task = glommio::spawn_local(trickle(e.conn, end_ns, target, outcomes));
                        tasks.borrow_mut().push(task);
                    }
                    Some(Err(e)) => failures.borrow_mut().add(&e),
                    None => {}
                }
            }
        })
        .await;
    }
    let all = std::mem::take(&mut *tasks.borrow_mut());
    for t in all {
        t.await;
    }
    ctx.phase.end();

    let outcomes = outcomes.borrow();
    let failures = failures.borrow();
    let connected = outcomes.len() as u64;
    let mut closed: Vec<u64> = outcomes.iter().filter_map(|t| t.closed_after_ns).collect();
    let reasons: Vec<ReasonCode> = outcomes.iter().filter_map(|t| t.disconnect).collect();
    rows.int("connections_up", "connections up (header sent)", connected);
    failures.report(&mut rows, "connections");
    rows.int(
        "closed_by_broker",
        "closed by the broker",
        closed.len() as u64,
    );
    if !reasons.is_empty() {
        rows.text(
            "disconnect_codes",
            "DISCONNECT reasons",
            codes_text(&reasons),
        );
    }
    let summary = exact_summary(&mut closed);
    if let Some(s) = summary {
        rows.float(
            "close_p50_ms",
            "close after the header, p50 (ms)",
            s.p50 as f64 / 1e6,
            1,
        );
        rows.float(
            "close_max_ms",
            "close after the header, max (ms)",
            s.max as f64 / 1e6,
            1,
        );
    }
    let verdict = match summary {
        Some(s) => Verdict::Refused(format!(
            "{}/{connected} closed, median {:.0} ms after the header",
            s.count,
            s.p50 as f64 / 1e6
        )),
        None if failures.total() > 0 => Verdict::Refused(format!(
            "{} connections refused, 0/{connected} closed",
            failures.total()
        )),
        None => Verdict::Accepted(format!("0/{connected} closed")),
    };
    Outcome::new(rows, verdict)
}

enum TrickleEvent {
    Tick,
    Read(Result<usize, ConnError>),
}

/// One big-announce connection: the header, then a byte a second until
/// `end_ns` or until the broker closes it.
async fn trickle(
    mut conn: Conn,
    end_ns: u64,
    target: Arc<Target>,
    outcomes: Rc<RefCell<Vec<Trickle>>>,
) {
    let mut out = Trickle::default();
    conn.wbuf().extend_from_slice(&big_announce_header());
    let header_ns = now_ns();
    let mut k = 0u64;
    let mut result = before(end_ns, conn.flush()).await;
    while let Some(Ok(())) = result {
        let next = (header_ns + (k + 1) * 1_000_000_000).min(end_ns);
        let event = or(
            async {
                sleep_until(next).await;
                TrickleEvent::Tick
            },
            async { TrickleEvent::Read(conn.fill().await) },
        )
        .await;
        result = match event {
            TrickleEvent::Tick if now_ns() >= end_ns => None,
            TrickleEvent::Tick => {
                conn.wbuf().extend_from_slice(&[trickle_byte(k)]);
                k += 1;
                before(end_ns, conn.flush()).await
            }
            TrickleEvent::Read(Ok(_)) => {
                let mut r = Some(Ok(()));
                loop {
                    match conn.next_buffered() {
                        Ok(Some(Packet::Disconnect(d))) => {
                            out.disconnect.get_or_insert(d.code);
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(e) => {
                            r = Some(Err(e));
                            break;
                        }
                    }
                }
                r
            }
            TrickleEvent::Read(Err(e)) => Some(Err(e)),
        };
    }
    if let Some(Err(_)) = result {
        out.closed_after_ns = Some(now_ns() - header_ns);
    }
    drop(conn);
    Progress::sub(&target.progress.up, 1);
    outcomes.borrow_mut().push(out);
}

async fn absent_sessions(ctx: &Ctx) -> Outcome {
    let mut rows = Report::new("attack");
    let count = ctx.args.count();
    let start = now_ns();
    let create_until = start + CREATE_LIMIT_NS;
    let created: Rc<RefCell<Vec<u64>>> = Rc::new(RefCell::new(Vec::new()));
    let failures = Rc::new(RefCell::new(Failures::default()));
    let refused_subs = Rc::new(Cell::new(0u64));
    let target = Arc::clone(&ctx.target);
    let prefix = ctx.args.topic_prefix.clone();
    {
        let (created, failures, refused_subs) = (
            Rc::clone(&created),
            Rc::clone(&failures),
            Rc::clone(&refused_subs),
        );
        pool(count, CONCURRENCY, move |i| {
            let (created, failures, refused_subs, target) = (
                Rc::clone(&created),
                Rc::clone(&failures),
                Rc::clone(&refused_subs),
                Arc::clone(&target),
            );
            let filter = format!("{prefix}/absent/{i}");
            async move {
                if now_ns() >= create_until {
                    return;
                }
                let spec = absent_spec(&target, i);
                match before(
                    create_until,
                    subscribed(&target, &spec, &filter, QoS::AtLeastOnce),
                )
                .await
                {
                    Some(Ok((conn, codes))) => {
                        if codes.iter().any(|c| c.0 >= 0x80) {
                            refused_subs.set(refused_subs.get() + 1);
                        }
                        conn.disconnect().await;
                        created.borrow_mut().push(i);
                        Progress::add(&target.progress.up, 1);
                    }
                    Some(Err(e)) => failures.borrow_mut().add(&e),
                    None => {}
                }
            }
        })
        .await;
    }
    let created_ns = now_ns();
    sleep_until(created_ns + (ctx.args.duration_secs() * 1e9) as u64).await;
    ctx.phase.end();
    // The after reading first: reconnecting changes what the broker holds.
    or(ctx.phase.sampled.wait(), async {
        glommio::timer::sleep(Duration::from_secs(60)).await;
    })
    .await;
    let (mut probed, mut present) = (0u64, 0u64);
    let mut probe_failures = Failures::default();
    let mut sessions = std::mem::take(&mut *created.borrow_mut());
    sessions.sort_unstable();
    let probe_until = now_ns() + PROBE_LIMIT_NS;
    for k in probe_indices(sessions.len() as u64, PROBES) {
        let spec = absent_spec(&ctx.target, sessions[k as usize]);
        match before(probe_until, ctx.target.establish(&spec, ReadSize::SMALL)).await {
            Some(Ok(e)) => {
                probed += 1;
                if e.connack.session_present {
                    present += 1;
                }
                e.conn.disconnect().await;
            }
            Some(Err(e)) => probe_failures.add(&e),
            None => break,
        }
    }

    let (created, failures) = (sessions.len() as u64, failures.borrow());
    let secs = (created_ns - start) as f64 / 1e9;
    rows.int("sessions_created", "absent sessions created", created);
    failures.report(&mut rows, "connections");
    rows.int(
        "subscribe_refused",
        "sessions whose SUBSCRIBE was refused",
        refused_subs.get(),
    );
    rows.float("create_s", "time to create them (s)", secs, 2);
    rows.float(
        "sessions_per_s",
        "sessions created per second",
        created as f64 / secs.max(1e-9),
        0,
    );
    rows.int("probed", "sessions probed afterwards", probed);
    rows.int("probed_present", "probed: session still present", present);
    probe_failures.report(&mut rows, "probe");
    let gone = probed - present;
    let verdict = if gone > 0 || failures.total() > 0 {
        Verdict::Refused(format!(
            "{gone}/{probed} probed sessions gone, {} refused at CONNECT",
            failures.total()
        ))
    } else {
        Verdict::Accepted(format!(
            "{created} kept ({present}/{probed} probed present)"
        ))
    };
    Outcome::new(rows, verdict)
}

/// CONNECT of absent session `i`: not clean, with an expiry in v5.
fn absent_spec(target: &Target, i: u64) -> ConnectSpec {
    let mut spec = target.connect_spec("attack-absent", i, KEEP_ALIVE_SECS);
    spec.clean_start = false;
    spec.session_expiry = Some(SESSION_EXPIRY_SECS);
    spec
}

/// `probes` indices spread evenly over `0..count` (all of them if fewer).
pub fn probe_indices(count: u64, probes: u64) -> Vec<u64> {
    if count <= probes {
        return (0..count).collect();
    }
    (0..probes).map(|k| k * count / probes).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use ringmq_codec::{decode, Limits};

    fn parse(args: &[&str]) -> AttackArgs {
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            a: AttackArgs,
        }
        let mut all = vec!["attack"];
        all.extend_from_slice(args);
        Wrap::try_parse_from(all).expect("parses").a
    }

    #[test]
    fn kinds_parse_and_default() {
        for (name, kind) in [
            ("never-read", AttackKind::NeverRead),
            ("deep-filter", AttackKind::DeepFilter),
            ("slow-subscriber", AttackKind::SlowSubscriber),
            ("big-announce", AttackKind::BigAnnounce),
            ("absent-sessions", AttackKind::AbsentSessions),
        ] {
            let a = parse(&["--kind", name]);
            assert_eq!(a.kind, kind);
            assert_eq!(kind.name(), name);
            assert_eq!(a.validate(), Ok(()), "{name}");
            assert!(a.duration_secs() <= 30.0);
        }
        let a = parse(&["--kind", "big-announce"]);
        assert_eq!((a.count(), a.payload()), (1000, 256));
        assert_eq!(parse(&["--kind", "absent-sessions"]).count(), 5000);
        assert_eq!(parse(&["--kind", "slow-subscriber"]).payload(), 1024);
        assert_eq!(parse(&["--kind", "deep-filter", "-n", "3"]).count(), 3);
    }

    #[test]
    fn bad_values_name_their_flag() {
        let flag = |args: &[&str]| parse(args).validate().map_err(|e| e.flag);
        assert_eq!(
            flag(&["--kind", "never-read", "--duration-secs", "31"]),
            Err("duration-secs")
        );
        assert_eq!(
            flag(&["--kind", "big-announce", "-n", "15001"]),
            Err("count")
        );
        assert_eq!(
            flag(&["--kind", "deep-filter", "--levels", "40000"]),
            Err("levels")
        );
        assert_eq!(
            flag(&["--kind", "deep-filter", "--levels", "0"]),
            Err("levels")
        );
        assert_eq!(
            flag(&["--kind", "never-read", "--settle-secs", "0"]),
            Err("settle-secs")
        );
        assert_eq!(
            flag(&["--kind", "never-read", "--topic-prefix", "a/#"]),
            Err("topic-prefix")
        );
        assert_eq!(
            flag(&["--kind", "never-read", "--canary-interval-ms", "0"]),
            Err("canary-interval-ms")
        );
    }

    #[test]
    fn deep_filters_have_their_levels_and_fit_a_string() {
        let f = deep_filter(7, 30_000);
        assert!(f.starts_with("deep7/a/a"));
        assert_eq!(f.split('/').count(), 30_000);
        assert!(f.len() <= 65_535);
        assert_eq!(deep_filter(0, 1), "deep0");
        assert!(deep_filter(15, 32_000).len() <= 65_535);
        assert_ne!(deep_filter(1, 3), deep_filter(2, 3));
    }

    #[test]
    fn big_announce_header_announces_the_largest_length() {
        let h = big_announce_header();
        assert_eq!(h[0] >> 4, 3, "PUBLISH");
        // Variable byte integer (MQTT 1.5.5).
        let mut value = 0u32;
        for (i, b) in h[1..].iter().enumerate() {
            value |= u32::from(b & 0x7F) << (7 * i);
        }
        assert_eq!(value, MAX_REMAINING_LENGTH);
        assert_eq!(h[4] & 0x80, 0, "last length byte");
        let body: Vec<u8> = (0..5).map(trickle_byte).collect();
        assert_eq!(body, [0, 1, b'a', b'x', b'x']);
    }

    #[test]
    fn never_read_writes_pings_and_publishes() {
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            let mut buf = never_read_write(version, "t/x", 10, 3).expect("encodes");
            let mut kinds = Vec::new();
            while !buf.is_empty() {
                let (p, used) = decode(&buf, version, &Limits::default())
                    .expect("decodes")
                    .expect("whole");
                kinds.push(p.packet_type());
                if let Packet::Publish(p) = p {
                    assert_eq!(
                        (&p.topic[..], p.payload.len(), p.qos),
                        (&b"t/x"[..], 10, QoS::AtMostOnce)
                    );
                }
                buf = buf.slice(used..);
            }
            use ringmq_codec::PacketType::{PingReq, Publish as Pub};
            assert_eq!(kinds, [PingReq, Pub, PingReq, Pub, PingReq, Pub]);
        }
    }

    #[test]
    fn probes_spread_over_the_sessions() {
        assert_eq!(probe_indices(3, 100), vec![0, 1, 2]);
        let p = probe_indices(5000, 100);
        assert_eq!((p.len(), p[0], p[1], p[99]), (100, 0, 50, 4950));
    }

    #[test]
    fn verdicts_and_the_one_line_result() {
        assert_eq!(Verdict::Refused("closed".into()).text(), "yes: closed");
        assert_eq!(Verdict::Accepted("kept".into()).text(), "no: kept");
        let stats = CanaryStats {
            rounds: 10,
            lost: 1,
            rtt: None,
        };
        assert_eq!(
            one_line(AttackKind::NeverRead, Some((1.25, 40.0)), &stats, &Verdict::Accepted("x".into())),
            "never-read: RSS +1.2 MiB after (+40.0 at peak); canary no round trip, lost 1/10; refused: no: x"
        );
        assert!(one_line(
            AttackKind::DeepFilter,
            None,
            &stats,
            &Verdict::Refused("y".into())
        )
        .starts_with("deep-filter: RSS n/a;"));
    }

    #[test]
    fn memory_rows_are_signed_mib() {
        let mut r = Report::new("attack");
        r.param("kind", Value::Text("x".into()));
        let g = memory_rows(&mut r, Some(10 << 20), 50 << 20, Some(8 << 20));
        assert_eq!(g, Some((-2.0, 40.0)));
        assert_eq!(r.get("rss_growth_mib"), Some(&Value::Float(-2.0, 1)));
        let mut r = Report::new("attack");
        r.param("kind", Value::Text("x".into()));
        assert_eq!(memory_rows(&mut r, None, 0, None), None);
        assert!(matches!(r.get("rss_growth_mib"), Some(Value::Text(_))));
    }

    #[test]
    fn report_has_the_keys_hostile_sh_reads() {
        let args = parse(&["--kind", "never-read"]);
        let round = |due, got| canary::Round {
            canary: 0,
            due_ns: due,
            sent_ns: Some(due),
            received_ns: Some(got),
        };
        let record = CanaryRecord {
            rounds: vec![round(10, 20), round(200, 1_200)],
            ..CanaryRecord::default()
        };
        let readings = Readings {
            before: Some(1 << 20),
            peak: 5 << 20,
            after: Some(2 << 20),
            alive: "yes".into(),
            calm_ns: 0,
            start_ns: 100,
            ended_ns: 150,
            end_ns: 300,
        };
        let outcome = Outcome::new(Report::new("attack"), Verdict::Accepted("read all".into()));
        let r = build_report(&args, &readings, outcome, &record);
        for key in [
            "refused",
            "broker_alive",
            "rss_growth_mib",
            "rss_peak_growth_mib",
            "canary_rounds",
            "canary_lost",
            "canary_rtt_p99_ms",
            "canary_rtt_max_ms",
            "canary_calm_rounds",
        ] {
            assert!(r.get(key).is_some(), "{key} missing");
        }
        assert_eq!(r.get("canary_rounds"), Some(&Value::Int(1)));
        assert_eq!(r.get("canary_calm_rounds"), Some(&Value::Int(1)));
        assert_eq!(r.get("rss_peak_growth_mib"), Some(&Value::Float(4.0, 1)));
        assert_eq!(
            r.notes.last().map(String::as_str),
            Some(
                "result: never-read: RSS +1.0 MiB after (+4.0 at peak); canary p99 0.001 ms, \
                 max 0.001 ms, lost 0/1; refused: no: read all"
            )
        );
        assert!(r.to_json().contains("\"refused\":\"no: read all\""));
    }

    #[test]
    fn codes_are_tallied() {
        let codes = [ReasonCode(0x80), ReasonCode(0x00), ReasonCode(0x80)];
        assert_eq!(codes_text(&codes), "0x00 x1, 0x80 x2");
        assert_eq!(codes_text(&[]), "");
    }
}
