//! The canary: the probe of a broker's responsiveness that `attack` and
//! `keepalive --canaries` run beside their load (scripts/hostile.sh,
//! scripts/storm.sh).
//!
//! Each canary is one clean-session client subscribed at QoS 1 to a topic
//! of its own. Every `--canary-interval-ms` it publishes a QoS 1 message
//! there (its payload is the round's number) and times the round trip:
//! PUBLISH written -> the same message delivered back. A round that never
//! comes back is lost; a tick the canary could not send on (disconnected,
//! or its previous write still blocked) is a skipped round and counts as
//! lost too. A closed canary reconnects (counted) and goes on.
//!
//! Owns: its own executor thread, so a scenario's load can delay it only
//! through the CPU, never through a shared task queue (and at nice -10
//! when allowed, so even that less); the canaries' connections; the record of every round (returned by [`Canary::finish`]).
//!
//! Canary i's client id is chosen so that ringmq's owner hash (FNV-1a 64
//! of the id modulo the shard count, `ringmq_route::owner_shard`) puts it
//! on shard i of a broker with as many shards as there are canaries: every
//! shard gets a probe. Other brokers just see N clients.
//!
//! Invariants: broker input never panics; every wait is bounded (set-up
//! by the connect timeout, the final drain by [`DRAIN_MS`]). Pure parts
//! (id choice, window statistics) are tested at the bottom.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use futures_lite::future::or;
use glommio::{ExecutorJoinHandle, Placement};
use ringmq_codec::{Packet, Properties, PubAck, Publish, QoS, ReasonCode};

use crate::cli::{ArgError, Common};
use crate::conn::{within, Conn, ReadSize};
use crate::error::{BenchError, ConnError};
use crate::hist::{exact_summary, Summary};
use crate::procfs::now_ns;
use crate::report::Report;
use crate::runtime::{executor_builder, Latch, Progress};
use crate::scenario::{sleep_until, Failures, Target};

/// How long the canaries wait for rounds still in flight once told to
/// stop, in milliseconds.
pub const DRAIN_MS: u64 = 2000;

/// Default `--canary-prefix`.
pub const DEFAULT_PREFIX: &str = "ringmq-bench/canary";

/// Keep Alive of a canary connection, seconds (it publishes far more
/// often than that, so it never pings).
const KEEP_ALIVE_SECS: u16 = 60;

/// Canary flags, flattened into the scenarios that run canaries.
#[derive(Args, Debug, Clone)]
pub struct CanaryArgs {
    /// Canary clients, each timing a QoS 1 publish -> delivery round trip
    /// on its own topic; their ids land on different shards of a ringmq
    /// with this many shards. 0: none.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub canaries: usize,
    /// Milliseconds between two round trips of one canary.
    #[arg(long, value_name = "MS", default_value_t = 50)]
    pub canary_interval_ms: u64,
    /// Canary topics are PREFIX/CLIENT_ID.
    #[arg(long, value_name = "PREFIX", default_value = DEFAULT_PREFIX)]
    pub canary_prefix: String,
}

impl CanaryArgs {
    /// `count` canaries, a round every `interval_ms`, the default prefix.
    pub fn new(count: usize, interval_ms: u64) -> CanaryArgs {
        CanaryArgs {
            canaries: count,
            canary_interval_ms: interval_ms,
            canary_prefix: DEFAULT_PREFIX.to_string(),
        }
    }

    /// Checks before running.
    pub fn validate(&self) -> Result<(), ArgError> {
        if self.canaries > 64 {
            return Err(ArgError {
                flag: "canaries",
                reason: format!("{} is not in 0..=64", self.canaries),
            });
        }
        if !(1..=60_000).contains(&self.canary_interval_ms) {
            return Err(ArgError {
                flag: "canary-interval-ms",
                reason: format!("{} is not in 1..=60000", self.canary_interval_ms),
            });
        }
        let p = &self.canary_prefix;
        if p.is_empty() || p.contains(['+', '#']) || p.ends_with('/') || p.len() > 1024 {
            return Err(ArgError {
                flag: "canary-prefix",
                reason: "a topic prefix: 1 to 1024 bytes, no '+', '#' or trailing '/'".into(),
            });
        }
        Ok(())
    }
}

/// One round trip of one canary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Round {
    /// Which canary.
    pub canary: u32,
    /// When the round was due (CLOCK_MONOTONIC ns).
    pub due_ns: u64,
    /// When its PUBLISH was written; `None`: skipped.
    pub sent_ns: Option<u64>,
    /// When the delivery came back; `None`: lost.
    pub received_ns: Option<u64>,
}

/// Everything the canaries saw.
#[derive(Debug, Default)]
pub struct CanaryRecord {
    /// Every round, in the order they were due.
    pub rounds: Vec<Round>,
    /// Deliveries of a round that had already come back.
    pub duplicates: u64,
    /// Connections of the canaries that ended (they reconnect), by reason.
    pub disconnects: Failures,
    /// When the last canary had subscribed (ns).
    pub ready_ns: u64,
    /// Whether the canaries' thread got its higher priority (nice -10).
    pub raised_priority: bool,
}

impl CanaryRecord {
    /// A note on the canaries' scheduling priority.
    pub fn priority_note(&self) -> String {
        if self.raised_priority {
            format!("canary thread at nice {CANARY_NICE} (the load's threads at 0)")
        } else {
            "canary thread at the load's priority (setpriority refused: no CAP_SYS_NICE)"
                .to_string()
        }
    }
}

/// Round-trip figures over a window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CanaryStats {
    /// Rounds that overlap the window.
    pub rounds: u64,
    /// Of those, never sent or never delivered back.
    pub lost: u64,
    /// Round-trip times of the others, ns.
    pub rtt: Option<Summary>,
}

/// The figures of the rounds that overlap `[start_ns, end_ns]`: due in
/// it, or due earlier and still in flight at `start_ns` (a round delayed
/// into the window counts, with its whole delay).
pub fn window_stats(rounds: &[Round], start_ns: u64, end_ns: u64) -> CanaryStats {
    let mut stats = CanaryStats::default();
    let mut rtts = Vec::new();
    for r in rounds.iter().filter(|r| r.due_ns <= end_ns) {
        match (r.sent_ns, r.received_ns) {
            (Some(sent), Some(got)) if got >= start_ns || r.due_ns >= start_ns => {
                stats.rounds += 1;
                rtts.push(got.saturating_sub(sent));
            }
            (Some(_), None) => {
                stats.rounds += 1;
                stats.lost += 1;
            }
            (None, _) if r.due_ns >= start_ns => {
                stats.rounds += 1;
                stats.lost += 1;
            }
            _ => {}
        }
    }
    stats.rtt = exact_summary(&mut rtts);
    stats
}

/// Add `stats` as rows `KEY_rounds`, `KEY_lost`, `KEY_rtt_{p50,p99,max}_ms`.
pub fn report_stats(report: &mut Report, key: &str, label: &str, stats: &CanaryStats) {
    report.int(
        &format!("{key}_rounds"),
        &format!("{label}: rounds"),
        stats.rounds,
    );
    report.int(
        &format!("{key}_lost"),
        &format!("{label}: lost or skipped rounds"),
        stats.lost,
    );
    match stats.rtt {
        Some(s) => {
            for (name, v) in [("p50", s.p50), ("p99", s.p99), ("max", s.max)] {
                report.float(
                    &format!("{key}_rtt_{name}_ms"),
                    &format!("{label}: round trip {name} (ms)"),
                    v as f64 / 1e6,
                    3,
                );
            }
        }
        None => report.text(
            &format!("{key}_rtt_ms"),
            &format!("{label}: round trip"),
            "n/a: no round came back",
        ),
    }
}

/// Short form for one-line results: "p99 0.412 ms, max 3.100 ms, lost 0/420".
pub fn short(stats: &CanaryStats) -> String {
    match stats.rtt {
        Some(s) => format!(
            "p99 {:.3} ms, max {:.3} ms, lost {}/{}",
            s.p99 as f64 / 1e6,
            s.max as f64 / 1e6,
            stats.lost,
            stats.rounds
        ),
        None => format!("no round trip, lost {}/{}", stats.lost, stats.rounds),
    }
}

/// FNV-1a 64 of `bytes` (ringmq's `stable_hash`).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The client id of canary `index` of `count`: `PREFIX-canary-INDEX-SALT`
/// with the smallest salt whose FNV-1a hash modulo `count` is `index`.
pub fn canary_id(prefix: &str, index: usize, count: usize) -> String {
    let count = count.max(1) as u64;
    let mut salt = 0u32;
    loop {
        let id = format!("{prefix}-canary-{index}-{salt}");
        // About `count` tries on average; 1000 x that would be a broken hash.
        if fnv1a(id.as_bytes()) % count == index as u64 % count || salt > 1000 * count as u32 {
            return id;
        }
        salt += 1;
    }
}

/// State the canaries' thread shares with the scenario's thread.
#[derive(Debug)]
struct Control {
    ready: Arc<Latch>,
    stop: Arc<Latch>,
    ready_ns: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// Running canaries (on their own executor thread).
pub struct Canary {
    control: Arc<Control>,
    handle: ExecutorJoinHandle<CanaryRecord>,
    count: usize,
}

impl Canary {
    /// Start `args.canaries` canaries against `target` on a new executor
    /// (pinned to `cpu` if given). Returns at once; see [`Canary::wait_ready`].
    pub fn start(
        common: &Common,
        target: &Arc<Target>,
        args: &CanaryArgs,
        cpu: Option<usize>,
    ) -> Result<Canary, BenchError> {
        let control = Arc::new(Control {
            ready: Latch::new(args.canaries),
            stop: Latch::new(1),
            ready_ns: AtomicU64::new(0),
            last_error: Mutex::new(None),
        });
        let placement = cpu.map_or(Placement::Unbound, Placement::Fixed);
        let (c, t, a) = (Arc::clone(&control), Arc::clone(target), args.clone());
        let handle = executor_builder(placement)
            .name("canary")
            .io_memory(common.io_memory_kib * 1024)
            .ring_depth(256)
            .spawn(move || async move { run_canaries(t, a, c).await })
            .map_err(|e| BenchError::Executor(format!("canary thread: {e}")))?;
        Ok(Canary {
            control,
            handle,
            count: args.canaries,
        })
    }

    /// Block until every canary has subscribed; an error naming the last
    /// failure after `timeout`.
    pub fn wait_ready(&self, timeout: Duration) -> Result<u64, BenchError> {
        let deadline = now_ns() + timeout.as_nanos() as u64;
        while !self.control.ready.is_open() {
            if now_ns() > deadline {
                let why = lock(&self.control.last_error)
                    .clone()
                    .unwrap_or_else(|| "no answer".to_string());
                return Err(BenchError::Setup(format!(
                    "the {} canaries were not all up within {} s: {why}",
                    self.count,
                    timeout.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(self.control.ready_ns.load(Ordering::Acquire))
    }

    /// Stop sending, wait up to [`DRAIN_MS`] for rounds in flight, and
    /// return the record.
    pub fn finish(self) -> Result<CanaryRecord, BenchError> {
        self.control.stop.open();
        self.handle
            .join()
            .map_err(|e| BenchError::Executor(format!("canary thread: {e}")))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain data behind the lock: a panic elsewhere leaves it usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Nice value of the canaries' thread: above the load's threads, which
/// may share its CPU, so the tool's own busy loops delay it less.
const CANARY_NICE: i32 = -10;

/// Give the calling thread [`CANARY_NICE`]; false without CAP_SYS_NICE.
fn raise_priority() -> bool {
    // SAFETY: plain syscall on the calling thread (in Linux, nice values
    // are per thread and `who` 0 names the caller); no memory involved.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, CANARY_NICE) == 0 }
}

async fn run_canaries(
    target: Arc<Target>,
    args: CanaryArgs,
    control: Arc<Control>,
) -> CanaryRecord {
    let raised = raise_priority();
    let record = Rc::new(RefCell::new(CanaryRecord::default()));
    let tasks: Vec<_> = (0..args.canaries)
        .map(|i| {
            let id = canary_id(&target.prefix, i, args.canaries);
            glommio::spawn_local(one_canary(
                i as u32,
                id,
                Arc::clone(&target),
                args.clone(),
                Arc::clone(&control),
                Rc::clone(&record),
            ))
        })
        .collect();
    for t in tasks {
        t.await;
    }
    let mut r = std::mem::take(&mut *record.borrow_mut());
    r.ready_ns = control.ready_ns.load(Ordering::Acquire);
    r.raised_priority = raised;
    r
}

/// Why a canary could not get going.
enum SetupFailure {
    Conn(ConnError),
    SubscribeRefused(u8),
}

/// Connect (with the credentials of client `index`) and subscribe to
/// `topic` at QoS 1.
async fn set_up(target: &Target, index: u32, id: &str, topic: &str) -> Result<Conn, SetupFailure> {
    let spec = target.spec_for(id.to_string(), u64::from(index), KEEP_ALIVE_SECS);
    let mut e = target
        .establish(&spec, ReadSize::SMALL)
        .await
        .map_err(SetupFailure::Conn)?;
    let codes = within(
        target.connect_timeout,
        "SUBACK",
        e.conn
            .subscribe(1, &[(topic.to_string(), QoS::AtLeastOnce)]),
    )
    .await
    .map_err(SetupFailure::Conn)?;
    match codes.first() {
        Some(c) if c.0 < 0x80 => Ok(e.conn),
        Some(c) => Err(SetupFailure::SubscribeRefused(c.0)),
        None => Err(SetupFailure::Conn(ConnError::Unexpected(
            ringmq_codec::PacketType::SubAck,
        ))),
    }
}

enum Event {
    Stop,
    Tick,
    Read(Result<usize, ConnError>),
}

/// One canary: connect, then a round every interval until told to stop,
/// then wait for the rounds in flight (at most [`DRAIN_MS`]).
async fn one_canary(
    index: u32,
    id: String,
    target: Arc<Target>,
    args: CanaryArgs,
    control: Arc<Control>,
    record: Rc<RefCell<CanaryRecord>>,
) {
    let topic_name = format!("{}/{id}", args.canary_prefix);
    let topic = Bytes::from(topic_name.clone());
    let interval_ns = args.canary_interval_ms * 1_000_000;
    let mut first = true;
    let mut next_due = now_ns();
    let mut packet_id: u16 = 0;
    let mut drain_until: Option<u64> = None;
    loop {
        // Stopping while not connected: rounds of an earlier connection
        // cannot come back any more.
        if control.stop.is_open() {
            break;
        }
        let setup = or(
            async { Some(set_up(&target, index, &id, &topic_name).await) },
            async {
                control.stop.wait().await;
                None
            },
        )
        .await;
        let mut conn = match setup {
            None => break,
            Some(Ok(conn)) => conn,
            Some(Err(failure)) => {
                let why = match failure {
                    SetupFailure::SubscribeRefused(code) => {
                        format!("SUBSCRIBE {topic_name} refused (0x{code:02X})")
                    }
                    SetupFailure::Conn(e) => {
                        record.borrow_mut().disconnects.add(&e);
                        e.to_string()
                    }
                };
                *lock(&control.last_error) = Some(format!("{id}: {why}"));
                glommio::timer::sleep(Duration::from_nanos(interval_ns)).await;
                continue;
            }
        };
        if first {
            first = false;
            control.ready_ns.fetch_max(now_ns(), Ordering::AcqRel);
            control.ready.count_down();
            next_due = now_ns();
        }
        // Rounds of an earlier connection can no longer come back.
        let mut in_flight: u64 = 0;
        loop {
            if control.stop.is_open() && drain_until.is_none() {
                drain_until = Some(now_ns() + DRAIN_MS * 1_000_000);
            }
            if let Some(until) = drain_until {
                if in_flight == 0 || now_ns() >= until {
                    conn.disconnect().await;
                    return;
                }
            } else {
                skip_missed(&record, index, &mut next_due, interval_ns, now_ns());
            }
            let wake_at = drain_until.unwrap_or(next_due);
            let event = or(
                async {
                    if drain_until.is_some() {
                        std::future::pending::<()>().await;
                    }
                    control.stop.wait().await;
                    Event::Stop
                },
                or(
                    async {
                        sleep_until(wake_at).await;
                        Event::Tick
                    },
                    async { Event::Read(conn.fill().await) },
                ),
            )
            .await;
            let result = match event {
                Event::Stop => continue,
                Event::Tick if drain_until.is_some() => continue,
                Event::Tick => {
                    let round = {
                        let mut r = record.borrow_mut();
                        r.rounds.push(Round {
                            canary: index,
                            due_ns: next_due,
                            sent_ns: Some(now_ns()),
                            received_ns: None,
                        });
                        r.rounds.len() - 1
                    };
                    next_due += interval_ns;
                    Progress::add(&target.progress.sent, 1);
                    packet_id = packet_id.checked_add(1).unwrap_or(1);
                    in_flight += 1;
                    let publish = Publish {
                        dup: false,
                        qos: QoS::AtLeastOnce,
                        retain: false,
                        topic: topic.clone(),
                        packet_id,
                        properties: Default::default(),
                        payload: Bytes::copy_from_slice(&(round as u64).to_le_bytes()),
                    };
                    // A write the broker does not take blocks this canary:
                    // the ticks it misses meanwhile are skipped rounds.
                    bounded(&control, conn.send(&Packet::Publish(publish))).await
                }
                Event::Read(Ok(_)) => {
                    let input =
                        handle_input(&mut conn, index, &record, &mut in_flight, &target.progress);
                    bounded(&control, input).await
                }
                Event::Read(Err(e)) => Err(e),
            };
            if let Err(e) = result {
                *lock(&control.last_error) = Some(format!("{id}: {e}"));
                record.borrow_mut().disconnects.add(&e);
                if drain_until.is_some() {
                    return;
                }
                break;
            }
        }
    }
    // Told to stop while disconnected: the ticks of the outage were due
    // too.
    if !first {
        skip_missed(&record, index, &mut next_due, interval_ns, now_ns());
    }
}

/// `fut` (a write), unless the canaries have been told to stop more than
/// [`DRAIN_MS`] ago: a broker that never takes a canary's bytes cannot
/// hold up [`Canary::finish`].
async fn bounded<T>(
    control: &Control,
    fut: impl std::future::Future<Output = Result<T, ConnError>>,
) -> Result<T, ConnError> {
    or(fut, async {
        control.stop.wait().await;
        glommio::timer::sleep(Duration::from_millis(DRAIN_MS)).await;
        Err(ConnError::Timeout("canary write"))
    })
    .await
}

/// Record the ticks of canary `index` missed by more than an interval
/// by `now_ns` (disconnected, or a write blocked) as skipped rounds.
fn skip_missed(
    record: &RefCell<CanaryRecord>,
    index: u32,
    next_due: &mut u64,
    interval_ns: u64,
    now_ns: u64,
) {
    let mut r = record.borrow_mut();
    while *next_due + interval_ns <= now_ns {
        r.rounds.push(Round {
            canary: index,
            due_ns: *next_due,
            sent_ns: None,
            received_ns: None,
        });
        *next_due += interval_ns;
    }
}

/// Handle what a read brought: deliveries (acknowledged) close rounds.
async fn handle_input(
    conn: &mut Conn,
    index: u32,
    record: &Rc<RefCell<CanaryRecord>>,
    in_flight: &mut u64,
    progress: &Progress,
) -> Result<(), ConnError> {
    let at = now_ns();
    while let Some(packet) = conn.next_buffered()? {
        match packet {
            Packet::Publish(p) => {
                if p.qos != QoS::AtMostOnce {
                    conn.queue(&Packet::PubAck(PubAck {
                        packet_id: p.packet_id,
                        code: ReasonCode::SUCCESS,
                        properties: Properties::default(),
                    }))?;
                }
                let Ok(bytes) = <[u8; 8]>::try_from(&p.payload[..]) else {
                    continue;
                };
                let n = u64::from_le_bytes(bytes) as usize;
                let mut r = record.borrow_mut();
                match r.rounds.get_mut(n) {
                    Some(round) if round.canary == index && round.received_ns.is_none() => {
                        round.received_ns = Some(at);
                        *in_flight = in_flight.saturating_sub(1);
                        Progress::add(&progress.received, 1);
                    }
                    Some(_) => r.duplicates += 1,
                    None => {}
                }
            }
            Packet::Disconnect(d) => return Err(ConnError::Disconnected(d.code)),
            _ => {}
        }
    }
    conn.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(due: u64, sent: Option<u64>, got: Option<u64>) -> Round {
        Round {
            canary: 0,
            due_ns: due,
            sent_ns: sent,
            received_ns: got,
        }
    }

    #[test]
    fn fnv1a_reference_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn canary_ids_land_on_their_shard() {
        for count in 1..=8 {
            for i in 0..count {
                let id = canary_id("rb", i, count);
                assert!(id.starts_with(&format!("rb-canary-{i}-")), "{id}");
                assert_eq!(fnv1a(id.as_bytes()) % count as u64, i as u64, "{id}");
            }
        }
        assert_eq!(canary_id("rb", 0, 0), canary_id("rb", 0, 1));
    }

    #[test]
    fn window_counts_overlapping_rounds() {
        let rounds = [
            // Before the window, back before it: not counted.
            round(0, Some(1), Some(5)),
            // Before, delayed into the window: counted with its whole RTT.
            round(10, Some(10), Some(150)),
            // In the window.
            round(100, Some(100), Some(130)),
            round(110, Some(111), None),
            round(120, None, None),
            // Skipped before the window: not counted.
            round(50, None, None),
            // Due after the window: not counted, even if lost.
            round(300, Some(300), None),
            // Before the window and never back: lost across it.
            round(20, Some(20), None),
        ];
        let s = window_stats(&rounds, 100, 200);
        assert_eq!((s.rounds, s.lost), (5, 3));
        let rtt = s.rtt.expect("two came back");
        assert_eq!((rtt.count, rtt.min, rtt.max), (2, 30, 140));
        assert_eq!(window_stats(&[], 0, 10), CanaryStats::default());
    }

    #[test]
    fn missed_ticks_become_skipped_rounds() {
        let record = RefCell::new(CanaryRecord::default());
        let mut next_due = 100;
        // Less than an interval late: nothing skipped, the tick is still on.
        skip_missed(&record, 3, &mut next_due, 50, 149);
        assert!(record.borrow().rounds.is_empty());
        assert_eq!(next_due, 100);
        skip_missed(&record, 3, &mut next_due, 50, 260);
        let due: Vec<u64> = record.borrow().rounds.iter().map(|r| r.due_ns).collect();
        assert_eq!(due, [100, 150, 200]);
        assert_eq!(next_due, 250);
        assert!(record
            .borrow()
            .rounds
            .iter()
            .all(|r| r.canary == 3 && r.sent_ns.is_none()));
        let lost = window_stats(&record.borrow().rounds, 0, 1000);
        assert_eq!((lost.rounds, lost.lost), (3, 3));
    }

    #[test]
    fn short_form_and_rows() {
        let s = window_stats(&[round(0, Some(0), Some(2_000_000))], 0, 10);
        assert_eq!(short(&s), "p99 2.000 ms, max 2.000 ms, lost 0/1");
        let none = window_stats(&[round(0, None, None)], 0, 10);
        assert_eq!(short(&none), "no round trip, lost 1/1");
        let mut r = Report::new("t");
        report_stats(&mut r, "canary", "canary", &s);
        assert_eq!(
            r.get("canary_rtt_p99_ms"),
            Some(&crate::report::Value::Float(2.0, 3))
        );
        report_stats(&mut r, "calm", "calm", &none);
        assert!(r.get("calm_rtt_ms").is_some());
    }

    #[test]
    fn flags_are_checked() {
        let ok = CanaryArgs {
            canaries: 2,
            canary_interval_ms: 50,
            canary_prefix: "a/b".into(),
        };
        assert_eq!(ok.validate(), Ok(()));
        let mut bad = ok.clone();
        bad.canary_interval_ms = 0;
        assert_eq!(
            bad.validate().map_err(|e| e.flag),
            Err("canary-interval-ms")
        );
        let mut bad = ok.clone();
        bad.canary_prefix = "a/#".into();
        assert_eq!(bad.validate().map_err(|e| e.flag), Err("canary-prefix"));
        let mut bad = ok;
        bad.canaries = 65;
        assert_eq!(bad.validate().map_err(|e| e.flag), Err("canaries"));
    }
}
