//! `soak`: a long mixed load that must lose nothing. For
//! `--duration-secs`, at once:
//!
//! - publishers, one per (QoS, topic) over `--topics` topics of each QoS
//!   (PREFIX/q{qos}/{t}), send sequence-stamped payloads paced to `--rate`
//!   in total; QoS 1/2 publishers have persistent sessions and are reset
//!   now and then (`--publisher-reset-secs`): they reconnect and resend
//!   what was unacknowledged with DUP set (PUBREL for what got PUBREC);
//! - persistent-session subscribers (Clean Start 0, even ones MQTT 3.1.1,
//!   odd ones 5) read one topic of each QoS at that QoS: `--subscribers`
//!   are never disturbed, `--resetters` have their socket closed with an
//!   RST (SO_LINGER 0) every `--reset-secs` on average, stay away up to
//!   `--offline-ms` and reconnect, and `--fighters` client ids are fought
//!   over: a second connection takes the session over every
//!   `--takeover-ms`, again and again;
//! - will waves: every `--will-secs`, `--will-clients` clients with a
//!   QoS 1 will and Keep Alive `--will-keepalive` connect; half go silent
//!   (the broker must close them and publish the will), half disconnect
//!   normally (their will must never appear). A resetter's will must
//!   appear after each reset (which is why a resetter waits for it before
//!   reconnecting: a reconnect handled before the reset would be a
//!   take-over, after which 3.1.1 publishes no will). One persistent
//!   watcher counts the wills;
//! - retained churn: `--retained-topics` topics are set and cleared every
//!   `--retained-ms`; every second a checker subscribes to the topic just
//!   changed and must get exactly its latest value (nothing once cleared),
//!   every 30 s the whole range at once;
//! - a canary publishes QoS 1 every `--canary-ms` to its own subscriber
//!   (client ids that ringmq puts on different shards of two) and records
//!   the round trip (PUBACK and delivery). One longer than `--stall-ms` is
//!   a stall, and so is a subscriber getting nothing for that long while
//!   connected under load (it reads three flows of ~50 msg/s each).
//!
//! Then publishing stops, every QoS 1/2 message must reach every
//! subscriber of its topic within `--drain-secs`, every expected will
//! must have arrived, and everybody leaves: sessions are ended (v5
//! Session Expiry 0, v3 a clean-session connection) and the retained
//! topics cleared, so the broker's memory can go back to its baseline.
//!
//! Accounting: a QoS 0 message counts as sent when written, QoS 1 when
//! PUBACKed, QoS 2 when PUBRECed (a refusal, reason >= 0x80, is not sent).
//! Per subscriber and QoS: expected = sent by the publisher of its topic;
//! lost = expected - distinct (publisher, sequence) pairs delivered;
//! duplicates = deliveries of a pair already seen. The subscriber is a
//! proper QoS 2 receiver: a PUBLISH whose packet id awaits its PUBREL is
//! acknowledged, not delivered again, across reconnects (MQTT 4.3.3), so
//! a QoS 2 duplicate is the broker's. QoS 1 may be duplicated, never lost;
//! QoS 2 neither; QoS 0 loss is only reported. Stamps older than the run
//! (an earlier run's session) are counted apart, never as deliveries.
//!
//! The report's verdict lists every failure: QoS 1/2 lost, QoS 2
//! duplicated, a QoS 1/2 publish never acknowledged, a message delivered
//! at another QoS, a will missing or published after a normal
//! DISCONNECT, a session lost on reconnect, an old connection left open
//! by a take-over, a wrong retained message, a stall or a lost canary, a
//! client that could not reconnect within 30 s. Any of them makes
//! `ringmq-bench` exit with status 3. QoS 0 loss, QoS 1 duplicates, take-
//! overs refused by the broker's limit and wills of connections the broker
//! closed by itself are reported, not failures.
//!
//! Bounded: every wait has a deadline; the connections are counted before
//! the run (at most [`MAX_CONNECTIONS`]). `--mqtt-version` is not used:
//! the soak always mixes 3.1.1 and 5.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_lite::future::or;
use ringmq_codec::{
    ConnAck, Connect, Packet, PacketType, Properties, ProtocolVersion, PubAck, PubComp, PubRec,
    PubRel, Publish, QoS, ReasonCode, Subscribe, SubscriptionOptions, Unsubscribe, Will,
};

use clap::Args;

use crate::cli::{ArgError, Common};
use crate::conn::{within, Conn, ReadSize};
use crate::error::{BenchError, ConnError};
use crate::hist::Histogram;
use crate::payload::{Deliveries, SeqTracker, Stamp, STAMP_LEN};
use crate::procfs::{now_ns, CpuSample};
use crate::report::{Report, Value};
use crate::runtime::{cooperate, run_executors, Latch, Progress};
use crate::scenario::pubsub::PidPool;
use crate::scenario::{
    check_fds, due_count, due_offset_ns, machine_note, share_of, sleep_until, CpuWindow, Failures,
    Target,
};
use crate::template::PublishTemplate;

/// Most connections a soak may need at once (the machine is shared).
pub const MAX_CONNECTIONS: u64 = 2000;

/// Session Expiry Interval of every v5 persistent session, seconds.
const SESSION_EXPIRY_SECS: u32 = 3600;

/// Keep Alive of every long-lived client, seconds.
const KEEP_ALIVE_SECS: u16 = 30;

/// A long-lived client sends PINGREQ after this much silence of its own.
const PING_EVERY_NS: u64 = 10_000_000_000;

/// Wait for a SUBACK, UNSUBACK, PUBACK or PINGRESP outside the hot paths.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a taken-over connection may stay open after the new CONNACK.
const TAKEOVER_CLOSE_WAIT_NS: u64 = 5_000_000_000;

/// How long a reset client keeps trying to reconnect.
const RECONNECT_DEADLINE_NS: u64 = 30_000_000_000;

/// Pause between two failed reconnect attempts.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);

/// Beyond 1.5 x Keep Alive: how long a silent will client waits for the
/// broker's close, and the watcher for its will.
const WILL_GRACE_NS: u64 = 10_000_000_000;

/// How long a reset subscriber waits for its will before reconnecting.
const WILL_AFTER_RESET_WAIT_NS: u64 = 5_000_000_000;

/// How long a polite will client stays before its normal DISCONNECT.
const POLITE_STAY_MS: u64 = 500;

/// Between two checks of one retained topic, and of the whole range.
const RETAINED_CHECK_EVERY_NS: u64 = 1_000_000_000;
const RETAINED_WILDCARD_EVERY_NS: u64 = 30_000_000_000;

/// After its SUBACK, how long a retained check waits for a message that
/// should come, and for one that should not.
const RETAINED_PRESENT_WAIT_NS: u64 = 2_000_000_000;
const RETAINED_ABSENT_WAIT_NS: u64 = 300_000_000;

/// A canary round trip not complete after this is lost.
const CANARY_TIMEOUT_NS: u64 = 10_000_000_000;

/// Shortest sleep of a paced publisher, ns.
const MIN_PACE_NS: u64 = 1_000_000;

/// Most PUBLISH packets a publisher writes at once.
const BATCH: u64 = 256;

/// Examples kept of each kind of failure for the report's notes.
const EXAMPLES: usize = 5;

/// `soak` flags.
#[derive(Args, Debug, Clone)]
pub struct SoakArgs {
    /// Flags shared by every scenario (`--mqtt-version` is not used: the
    /// soak mixes 3.1.1 and 5).
    #[command(flatten)]
    pub common: Common,
    /// Seconds of mixed load (then the drain, the wills, and everybody
    /// leaves).
    #[arg(long, default_value_t = 1800.0)]
    pub duration_secs: f64,
    /// Messages per second over all publishers (one per QoS and topic).
    #[arg(long, default_value_t = 600.0)]
    pub rate: f64,
    /// Topics per QoS: publisher (q, t) writes PREFIX/q{q}/{t}; every
    /// subscriber reads one topic of each QoS, at that QoS.
    #[arg(short = 'T', long, default_value_t = 4)]
    pub topics: u32,
    /// Persistent subscribers that are never disturbed.
    #[arg(long, default_value_t = 16)]
    pub subscribers: u32,
    /// Persistent subscribers (with a will) whose socket is reset (RST)
    /// now and then; they reconnect and must get what they missed.
    #[arg(long, default_value_t = 16)]
    pub resetters: u32,
    /// Mean seconds between two resets of one resetter (each wait is
    /// uniform in [0.5, 1.5] x this).
    #[arg(long, default_value_t = 15.0)]
    pub reset_secs: f64,
    /// Longest time a reset client stays away, ms (uniform in [0, this]).
    #[arg(long, default_value_t = 1000)]
    pub offline_ms: u64,
    /// Mean seconds between two resets of one publisher (0: never).
    #[arg(long, default_value_t = 60.0)]
    pub publisher_reset_secs: f64,
    /// Persistent client ids fought over: a new connection takes the
    /// session over every --takeover-ms.
    #[arg(long, default_value_t = 8)]
    pub fighters: u32,
    /// Milliseconds between two take-overs of one id (2000: 5 per 10 s,
    /// within ringmq's default --takeover-limit of 10 per 10 s).
    #[arg(long, default_value_t = 2000)]
    pub takeover_ms: u64,
    /// Clients per will wave: half go silent until their Keep Alive
    /// expires (their will must arrive), half disconnect normally (their
    /// will must not).
    #[arg(long, default_value_t = 20)]
    pub will_clients: u32,
    /// Seconds between two will waves.
    #[arg(long, default_value_t = 10.0)]
    pub will_secs: f64,
    /// Keep Alive of the will clients, seconds.
    #[arg(long, default_value_t = 2)]
    pub will_keepalive: u16,
    /// Retained topics set and cleared (0: no retained churn).
    #[arg(long, default_value_t = 64)]
    pub retained_topics: u32,
    /// Milliseconds between two retained updates.
    #[arg(long, default_value_t = 50)]
    pub retained_ms: u64,
    /// Milliseconds between two canary round trips.
    #[arg(long, default_value_t = 50)]
    pub canary_ms: u64,
    /// A canary round trip longer than this many ms is a stall.
    #[arg(long, default_value_t = 1000)]
    pub stall_ms: u64,
    /// QoS 1/2 messages in flight per publisher (fewer if the broker's
    /// Receive Maximum says so).
    #[arg(long, default_value_t = 16)]
    pub inflight: u32,
    /// Payload bytes (at least 16: the stamp).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Seconds to wait after publishing for the last deliveries.
    #[arg(long, default_value_t = 30.0)]
    pub drain_secs: f64,
    /// Topic prefix.
    #[arg(long, default_value = "ringmq-bench/soak")]
    pub topic_prefix: String,
    /// Seed of the random choices (reset times, retained topics).
    /// Default: from the clock; the report prints it.
    #[arg(long)]
    pub seed: Option<u64>,
}

fn bad<T>(flag: &'static str, reason: impl Into<String>) -> Result<T, ArgError> {
    Err(ArgError {
        flag,
        reason: reason.into(),
    })
}

fn secs_ok(flag: &'static str, secs: f64, zero_ok: bool) -> Result<(), ArgError> {
    let low_ok = if zero_ok { secs >= 0.0 } else { secs > 0.0 };
    if secs.is_finite() && low_ok && secs <= 7.0 * 86_400.0 {
        Ok(())
    } else {
        bad(
            flag,
            format!("{secs} is not a number of seconds up to 604800"),
        )
    }
}

fn in_range(
    flag: &'static str,
    value: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<(), ArgError> {
    if range.contains(&value) {
        Ok(())
    } else {
        bad(
            flag,
            format!("{value} is not in {}..={}", range.start(), range.end()),
        )
    }
}

impl SoakArgs {
    /// Will clients alive at once at most: a silent one lives up to
    /// 1.5 x Keep Alive plus the grace, a wave starts every --will-secs.
    fn will_clients_alive(&self) -> u64 {
        let life_secs = f64::from(self.will_keepalive) * 1.5 + WILL_GRACE_NS as f64 / 1e9 + 1.0;
        let waves = (life_secs / self.will_secs.max(0.001)).ceil() as u64 + 1;
        waves.saturating_mul(u64::from(self.will_clients))
    }

    /// Connections the run may hold at once: subscribers (a fighter's two
    /// during a take-over), publishers, will clients, the watcher, the
    /// retained pair, the canary pair, and one per client for the
    /// clean-session connections that end 3.1.1 sessions.
    pub fn connections_bound(&self) -> u64 {
        let persistent =
            u64::from(self.subscribers) + u64::from(self.resetters) + 2 * u64::from(self.fighters);
        let publishers = 3 * u64::from(self.topics);
        2 * (persistent + publishers) + self.will_clients_alive() + 1 + 2 + 2
    }

    /// Checks before running.
    pub fn validate(&self) -> Result<(), ArgError> {
        self.common.validate()?;
        secs_ok("duration-secs", self.duration_secs, false)?;
        secs_ok("drain-secs", self.drain_secs, false)?;
        secs_ok("reset-secs", self.reset_secs, false)?;
        secs_ok("publisher-reset-secs", self.publisher_reset_secs, true)?;
        secs_ok("will-secs", self.will_secs, false)?;
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= 100_000.0) {
            return bad(
                "rate",
                format!("{} is not in (0, 100000] messages/s", self.rate),
            );
        }
        in_range("topics", u64::from(self.topics), 1..=64)?;
        if self.subscribers + self.resetters + self.fighters == 0 {
            return bad(
                "subscribers",
                "need at least one subscriber, resetter or fighter",
            );
        }
        in_range("offline-ms", self.offline_ms, 0..=60_000)?;
        in_range("takeover-ms", self.takeover_ms, 100..=3_600_000)?;
        in_range("will-keepalive", u64::from(self.will_keepalive), 1..=600)?;
        in_range("retained-ms", self.retained_ms, 1..=60_000)?;
        in_range(
            "retained-topics",
            u64::from(self.retained_topics),
            0..=10_000,
        )?;
        in_range("canary-ms", self.canary_ms, 1..=60_000)?;
        in_range("stall-ms", self.stall_ms, 1..=600_000)?;
        in_range("inflight", u64::from(self.inflight), 1..=1024)?;
        in_range("payload", self.payload as u64, STAMP_LEN as u64..=65_536)?;
        if self.topic_prefix.is_empty()
            || self.topic_prefix.contains(['+', '#'])
            || self.topic_prefix.ends_with('/')
            || self.topic_prefix.len() > 1024
        {
            return bad(
                "topic-prefix",
                "a topic prefix must be 1 to 1024 bytes, without '+', '#' or a trailing '/'",
            );
        }
        let bound = self.connections_bound();
        if bound > MAX_CONNECTIONS {
            return bad(
                "subscribers",
                format!(
                    "this mix may hold {bound} connections at once; the soak stays under \
                     {MAX_CONNECTIONS} (fewer clients, or fewer will clients per wave)"
                ),
            );
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------
// Pure parts: randomness, QoS 2 receiver state, accounting, verdict.
// ---------------------------------------------------------------------

/// splitmix64: small, seedable, good enough to spread resets and topics.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// Uniform in `lo..=hi` (`lo` when `hi < lo`).
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo).saturating_add(1))
    }

    /// Uniform in `[mean / 2, 3 mean / 2]`: the time to the next event of
    /// a roughly periodic one.
    pub fn around(&mut self, mean: u64) -> u64 {
        self.between(mean / 2, mean + mean / 2)
    }
}

/// The receiving side of QoS 2 (MQTT 4.3.3, "method B" of 3.1.1 figure
/// 4.3): packet ids whose PUBLISH was delivered and whose PUBREL has not
/// arrived. It belongs to the client's session, so it survives the
/// connection: a PUBLISH resent with such an id is acknowledged again,
/// never delivered again.
#[derive(Clone, Debug, Default)]
pub struct Qos2Inbox {
    pending: HashSet<u16>,
}

impl Qos2Inbox {
    /// A QoS 2 PUBLISH with `packet_id` arrived: true if it is to be
    /// delivered (its id was not pending).
    pub fn receive(&mut self, packet_id: u16) -> bool {
        self.pending.insert(packet_id)
    }

    /// PUBREL for `packet_id`: the id may be used for a new message.
    pub fn release(&mut self, packet_id: u16) -> bool {
        self.pending.remove(&packet_id)
    }

    /// Ids awaiting their PUBREL.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// Sent, received, lost and duplicated messages of one QoS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QosTally {
    /// Messages the publishers of this QoS got accepted.
    pub sent: u64,
    /// Deliveries expected over all subscribers.
    pub expected: u64,
    /// Deliveries, duplicates included.
    pub received: u64,
    /// Deliveries of a (publisher, sequence) the subscriber already had.
    pub duplicates: u64,
    /// Expected deliveries that never arrived.
    pub lost: u64,
}

/// Index of the publisher of (`qos`, `topic`).
pub fn publisher_index(qos: u8, topic: u32, topics: u32) -> u32 {
    u32::from(qos) * topics + topic
}

/// Per-QoS accounting. `sent[p]` is what publisher `p` (see
/// [`publisher_index`]) got accepted; `subs` holds each subscriber's
/// topic and deliveries (one tracker per publisher).
pub fn tally(topics: u32, sent: &[u64], subs: &[(u32, &Deliveries)]) -> [QosTally; 3] {
    let mut out = [QosTally::default(); 3];
    for (q, t) in out.iter_mut().enumerate() {
        let q = q as u8;
        let sent_by = |topic: u32| {
            sent.get(publisher_index(q, topic, topics) as usize)
                .copied()
                .unwrap_or(0)
        };
        t.sent = (0..topics).map(sent_by).sum();
        for (topic, deliveries) in subs {
            let expected = sent_by(*topic);
            let (delivered, duplicates, distinct) = deliveries
                .tracker(publisher_index(q, *topic, topics))
                .map_or((0, 0, 0), |tr| {
                    (tr.delivered(), tr.duplicates(), tr.distinct())
                });
            t.expected += expected;
            t.received += delivered;
            t.duplicates += duplicates;
            t.lost += expected.saturating_sub(distinct);
        }
    }
    out
}

/// Which wills must arrive, which must not, which did.
#[derive(Clone, Debug, Default)]
pub struct WillBook {
    expected: HashSet<u64>,
    forbidden: HashSet<u64>,
    received: HashMap<u64, u32>,
}

/// What became of the wills.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WillSummary {
    /// Wills that had to be published (silent clients, resets).
    pub expected: u64,
    /// Of those, the ones the watcher got.
    pub received: u64,
    /// Of those, the ones it never got.
    pub missing: u64,
    /// Extra copies of a will already received.
    pub duplicates: u64,
    /// Wills of clients that disconnected normally (must never appear).
    pub unexpected: u64,
    /// Wills of connections that ended in a way the run did not cause
    /// (e.g. closed by the broker): neither expected nor forbidden.
    pub unannounced: u64,
}

impl WillBook {
    /// The will with `key` must be published.
    pub fn expect(&mut self, key: u64) {
        self.expected.insert(key);
    }

    /// The will with `key` must not be published (normal DISCONNECT).
    pub fn forbid(&mut self, key: u64) {
        self.forbidden.insert(key);
    }

    /// The watcher got the will with `key`.
    pub fn receive(&mut self, key: u64) {
        *self.received.entry(key).or_insert(0) += 1;
    }

    /// Whether the will with `key` arrived.
    pub fn has(&self, key: u64) -> bool {
        self.received.contains_key(&key)
    }

    /// Expected wills not received yet.
    pub fn outstanding(&self) -> usize {
        self.expected
            .iter()
            .filter(|k| !self.received.contains_key(k))
            .count()
    }

    /// The totals.
    pub fn summary(&self) -> WillSummary {
        let mut s = WillSummary {
            expected: self.expected.len() as u64,
            ..WillSummary::default()
        };
        for (key, n) in &self.received {
            s.duplicates += u64::from(n.saturating_sub(1));
            if self.expected.contains(key) {
                s.received += 1;
            } else if self.forbidden.contains(key) {
                s.unexpected += 1;
            } else {
                s.unannounced += 1;
            }
        }
        s.missing = s.expected - s.received;
        s
    }
}

/// Whether a retained check saw what the model says, topic by topic.
/// `seen` maps a topic index to the retained payload's version (`None`: an
/// empty payload, which must never be delivered); the checked topics
/// without an entry got nothing. Returns the mismatched topics.
pub fn retained_mismatches(
    model: &[Option<u64>],
    checked: &[usize],
    seen: &HashMap<usize, Option<u64>>,
) -> Vec<usize> {
    checked
        .iter()
        .copied()
        .filter(|&r| {
            let want = model.get(r).copied().flatten();
            match seen.get(&r) {
                None => want.is_some(),
                // An empty retained payload is a deletion, never delivered.
                Some(None) => true,
                Some(Some(v)) => want != Some(*v),
            }
        })
        .collect()
}

/// FNV-1a 64, ringmq's stable hash (a client id's owner shard is this
/// modulo the shard count).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Client ids of the canary's publisher and subscriber, chosen so that
/// ringmq with two shards owns them on different shards (the round trip
/// then crosses shards). Harmless for any other broker.
pub fn canary_ids(prefix: &str) -> (String, String) {
    let ids = |i: u32| {
        (
            format!("{prefix}-soak-canary{i}-pub"),
            format!("{prefix}-soak-canary{i}-sub"),
        )
    };
    (0..1000)
        .map(ids)
        .find(|(p, s)| fnv1a(p.as_bytes()) % 2 != fnv1a(s.as_bytes()) % 2)
        .unwrap_or_else(|| ids(0))
}

/// Everything the verdict looks at.
#[derive(Clone, Debug, Default)]
pub struct Findings {
    /// Per QoS.
    pub qos: [QosTally; 3],
    /// Wills.
    pub wills: WillSummary,
    /// Canary round trips longer than `--stall-ms` or never completed,
    /// and subscribers without a delivery for that long under load.
    pub stalls: u64,
    /// Canary round trips never completed.
    pub canary_lost: u64,
    /// Reconnects (subscribers, publishers, watcher) without the session.
    pub sessions_lost: u64,
    /// Retained checks that saw something else than the latest value.
    pub retained_wrong: u64,
    /// QoS 1/2 publishes never acknowledged.
    pub unacked: u64,
    /// Deliveries at another QoS than published and subscribed.
    pub qos_mismatch: u64,
    /// Take-overs after which the old connection stayed open.
    pub old_not_closed: u64,
    /// Why the run is void (a client could not do its part), if it is.
    pub incomplete: Vec<String>,
}

/// The failures `f` shows, as short sentences (empty: the soak passed).
pub fn failures(f: &Findings) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |n: u64, what: &str| {
        if n > 0 {
            out.push(format!("{n} {what}"));
        }
    };
    check(f.qos[1].lost, "QoS 1 messages lost");
    check(f.qos[2].lost, "QoS 2 messages lost");
    check(f.qos[2].duplicates, "QoS 2 messages duplicated");
    check(f.unacked, "QoS 1/2 publishes never acknowledged");
    check(f.qos_mismatch, "messages delivered at another QoS");
    check(f.wills.missing, "wills missing");
    check(
        f.wills.unexpected,
        "wills published after a normal DISCONNECT",
    );
    check(f.sessions_lost, "sessions lost on reconnect");
    check(f.old_not_closed, "taken-over connections left open");
    check(f.retained_wrong, "wrong retained messages");
    check(
        f.stalls,
        "stalls (no delivery or canary round trip within the limit)",
    );
    out.extend(f.incomplete.iter().cloned());
    out
}

// ---------------------------------------------------------------------
// Shared state of one run.
// ---------------------------------------------------------------------

/// Times and CPU samples of the run's phases.
#[derive(Debug, Default)]
struct Phases {
    cpu: Option<CpuWindow>,
    cpu_end: Option<(CpuSample, Option<CpuSample>)>,
    started_ns: Option<u64>,
    stopped_ns: Option<u64>,
    drained_ns: Option<u64>,
    left_ns: Option<u64>,
}

struct Shared {
    args: SoakArgs,
    target: Arc<Target>,
    seed: u64,
    /// Stamps older than this are an earlier run's.
    run_start_ns: u64,
    /// Every long-lived subscriber (and the will watcher) is subscribed.
    subs_ready: Arc<Latch>,
    /// The load is over: no more publishing, resets, take-overs, waves.
    stop: Arc<Latch>,
    /// Every publisher's accepted count is in `sent`.
    pubs_done: Arc<Latch>,
    /// Every subscriber has every QoS 1/2 message sent to its topic.
    drained: Arc<Latch>,
    /// Every will client has ended.
    wills_done: Arc<Latch>,
    /// Everybody leaves.
    leave: Arc<Latch>,
    /// Accepted messages per publisher, final once `pubs_done` is open.
    sent: Vec<AtomicU64>,
    next_will: AtomicU64,
    wills: Mutex<WillBook>,
    setup_error: Mutex<Option<String>>,
    phases: Mutex<Phases>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicked holder leaves plain data behind: keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn fail(&self, why: String) {
        locked(&self.setup_error).get_or_insert(why);
        for latch in [
            &self.subs_ready,
            &self.stop,
            &self.pubs_done,
            &self.drained,
            &self.wills_done,
            &self.leave,
        ] {
            latch.open();
        }
    }

    fn failed(&self) -> bool {
        locked(&self.setup_error).is_some()
    }

    /// Executors that carry the load; the canary has the last one to
    /// itself when there are two or more.
    fn load_threads(&self) -> usize {
        self.args.common.threads.saturating_sub(1).max(1)
    }

    fn canary_thread(&self) -> usize {
        self.args.common.threads - 1
    }

    fn topics(&self) -> u32 {
        self.args.topics
    }

    fn publishers(&self) -> u32 {
        3 * self.args.topics
    }

    fn data_topic(&self, qos: u8, topic: u32) -> String {
        format!("{}/q{qos}/{topic}", self.args.topic_prefix)
    }

    fn will_topic(&self, who: &str) -> String {
        format!("{}/will/{who}", self.args.topic_prefix)
    }

    fn retained_topic(&self, r: usize) -> String {
        format!("{}/ret/{r}", self.args.topic_prefix)
    }

    /// A fresh will: its key is registered by the caller.
    fn will(&self, who: &str) -> WillSpec {
        let key = self.next_will.fetch_add(1, Ordering::Relaxed);
        WillSpec {
            topic: Bytes::from(self.will_topic(who)),
            payload: stamp_bytes(key),
            key,
        }
    }

    fn book(&self) -> MutexGuard<'_, WillBook> {
        locked(&self.wills)
    }

    fn rng(&self, salt: u64) -> Rng {
        Rng::new(self.seed ^ salt.wrapping_mul(0xA24B_AED4_963E_E407))
    }
}

/// MQTT 3.1.1 for even client indices, 5 for odd ones.
fn version_of(index: u64) -> ProtocolVersion {
    if index % 2 == 0 {
        ProtocolVersion::V3_1_1
    } else {
        ProtocolVersion::V5
    }
}

fn qos_of(q: u8) -> QoS {
    QoS::from_u8(q).unwrap_or(QoS::AtMostOnce)
}

/// A 16-byte stamped payload (publisher 0, `sequence`, now).
fn stamp_bytes(sequence: u64) -> Bytes {
    let mut buf = [0u8; STAMP_LEN];
    Stamp {
        publisher: 0,
        sequence,
        sent_ns: now_ns(),
    }
    .write(&mut buf);
    Bytes::copy_from_slice(&buf)
}

/// A will: QoS 1, not retained, a stamp whose sequence is its key.
#[derive(Clone, Debug)]
struct WillSpec {
    topic: Bytes,
    payload: Bytes,
    key: u64,
}

// ---------------------------------------------------------------------
// Connections: CONNECT, sessions, resets.
// ---------------------------------------------------------------------

/// A client id with the credentials of its index (`--username`,
/// `--password`), which every CONNECT of that client carries.
struct Ident {
    client_id: String,
    username: Option<Bytes>,
    password: Option<Bytes>,
}

impl Ident {
    /// `client_id` with the credentials of client `index`.
    fn new(target: &Target, client_id: String, index: u64) -> Ident {
        let (username, password) = target.login.for_client(index);
        Ident {
            client_id,
            username,
            password,
        }
    }
}

fn connect_packet(
    version: ProtocolVersion,
    id: &Ident,
    clean_start: bool,
    keep_alive: u16,
    persistent: bool,
    will: Option<&WillSpec>,
) -> Connect {
    let mut properties = Properties::default();
    if version.is_v5() && persistent {
        properties.session_expiry_interval = Some(SESSION_EXPIRY_SECS);
    }
    Connect {
        protocol: version,
        clean_start,
        keep_alive,
        client_id: Bytes::copy_from_slice(id.client_id.as_bytes()),
        will: will.map(|w| Will {
            topic: w.topic.clone(),
            payload: w.payload.clone(),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties::default(),
        }),
        username: id.username.clone(),
        password: id.password.clone(),
        properties,
    }
}

/// TCP connect (TLS, WebSocket), CONNECT, CONNACK, each within the
/// connect timeout.
async fn open(
    target: &Target,
    version: ProtocolVersion,
    connect: &Connect,
    sizes: ReadSize,
) -> Result<(Conn, ConnAck), ConnError> {
    let mut conn = target.open(sizes).await?.conn;
    conn.set_version(version);
    let ack = within(target.connect_timeout, "CONNACK", conn.handshake(connect)).await?;
    Ok((conn, ack))
}

/// A clean, non-persistent connection.
async fn open_clean(
    target: &Target,
    version: ProtocolVersion,
    id: &Ident,
    sizes: ReadSize,
) -> Result<(Conn, ConnAck), ConnError> {
    let connect = connect_packet(version, id, true, KEEP_ALIVE_SECS, false, None);
    open(target, version, &connect, sizes).await
}

/// Connect with a persistent session. `fresh`: start it empty (an earlier
/// run may have left one behind).
async fn open_session(
    target: &Target,
    version: ProtocolVersion,
    id: &Ident,
    will: Option<&WillSpec>,
    fresh: bool,
) -> Result<(Conn, ConnAck), ConnError> {
    if fresh && !version.is_v5() {
        // 3.1.1 cannot start a persistent session empty in one CONNECT: a
        // clean session ends the old one first.
        let (conn, _) = open_clean(target, version, id, ReadSize::SMALL).await?;
        conn.disconnect().await;
    }
    let clean_start = fresh && version.is_v5();
    let connect = connect_packet(version, id, clean_start, KEEP_ALIVE_SECS, true, will);
    open(target, version, &connect, ReadSize::LARGE).await
}

/// End the session of `conn` and close it: v5 by DISCONNECT with Session
/// Expiry 0, 3.1.1 by a clean-session connection after it.
async fn end_session(conn: Conn, target: &Target, version: ProtocolVersion, id: &Ident) {
    if version.is_v5() {
        let properties = Properties {
            session_expiry_interval: Some(0),
            ..Properties::default()
        };
        conn.disconnect_with(properties).await;
    } else {
        conn.disconnect().await;
        forget_session(target, version, id).await;
    }
}

/// End a session whose connection is gone (best effort).
async fn forget_session(target: &Target, version: ProtocolVersion, id: &Ident) {
    if let Ok((conn, _)) = open_clean(target, version, id, ReadSize::SMALL).await {
        conn.disconnect().await;
    }
}

/// Close `conn` with an RST: SO_LINGER 0, then close. The broker sees a
/// reset connection, not a FIN and certainly not a DISCONNECT.
fn reset(conn: Conn) {
    let fd = conn.stream().as_raw_fd();
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads one `linger` we own, on a descriptor the
    // connection owns until it is dropped just below.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(conn);
}

fn puback(packet_id: u16) -> Packet {
    Packet::PubAck(PubAck {
        packet_id,
        code: ReasonCode::SUCCESS,
        properties: Properties::default(),
    })
}

fn pubrec(packet_id: u16) -> Packet {
    Packet::PubRec(PubRec {
        packet_id,
        code: ReasonCode::SUCCESS,
        properties: Properties::default(),
    })
}

fn pubrel(packet_id: u16) -> Packet {
    Packet::PubRel(PubRel {
        packet_id,
        code: ReasonCode::SUCCESS,
        properties: Properties::default(),
    })
}

fn pubcomp(packet_id: u16) -> Packet {
    Packet::PubComp(PubComp {
        packet_id,
        code: ReasonCode::SUCCESS,
        properties: Properties::default(),
    })
}

/// Subscribe and check every filter got the QoS asked for.
async fn subscribe_checked(conn: &mut Conn, filters: &[(String, QoS)]) -> Result<(), String> {
    let codes = within(ACK_TIMEOUT, "SUBACK", conn.subscribe(1, filters))
        .await
        .map_err(|e| format!("SUBSCRIBE: {}", e.label()))?;
    for ((filter, qos), code) in filters.iter().zip(&codes) {
        if code.0 != *qos as u8 {
            return Err(format!(
                "SUBSCRIBE {filter} at QoS {}: the broker answered 0x{:02X} {}",
                *qos as u8,
                code.0,
                code.name()
            ));
        }
    }
    if codes.len() != filters.len() {
        return Err(format!(
            "SUBACK has {} codes for {} filters",
            codes.len(),
            filters.len()
        ));
    }
    Ok(())
}

/// Wait for `leave`, pinging each connection every [`PING_EVERY_NS`]
/// (their PINGRESPs are left unread: two bytes each).
async fn idle_until_leave(conns: &mut [&mut Conn], shared: &Shared) {
    while !shared.leave.is_open() {
        or(
            shared.leave.wait(),
            glommio::timer::sleep(Duration::from_nanos(PING_EVERY_NS)),
        )
        .await;
        if shared.leave.is_open() {
            break;
        }
        for conn in conns.iter_mut() {
            let _ = conn.send(&Packet::PingReq).await;
        }
    }
}

// ---------------------------------------------------------------------
// A persistent client: session state that outlives its connections, and
// the read loop.
// ---------------------------------------------------------------------

/// What a persistent client does with its messages.
trait Handler {
    /// One delivered message (a QoS 2 one once, however often resent).
    fn deliver(&mut self, publish: &Publish);

    /// Whether every QoS 1/2 message published has arrived; `None` for a
    /// client the drain does not wait for.
    fn complete(&self, _shared: &Shared) -> Option<bool> {
        None
    }
}

/// Client-side session state.
struct Client<H> {
    inbox: Qos2Inbox,
    handler: H,
    /// QoS 2 PUBLISH packets resent with an id still pending: acknowledged,
    /// not delivered again.
    qos2_redelivered: u64,
    /// This client has counted down `drained`.
    drained: bool,
    /// Longest time without a delivery while connected and the load ran.
    max_gap_ns: u64,
    /// Such gaps longer than `--stall-ms`.
    stalls: u64,
}

impl<H: Handler> Client<H> {
    fn new(handler: H) -> Client<H> {
        Client {
            inbox: Qos2Inbox::default(),
            handler,
            qos2_redelivered: 0,
            drained: false,
            max_gap_ns: 0,
            stalls: 0,
        }
    }

    /// Count down `drained` once everything arrived, or (`give_up`) now.
    fn check_drained(&mut self, shared: &Shared, give_up: bool) {
        if self.drained || self.handler.complete(shared).is_none() {
            return;
        }
        if give_up || (shared.pubs_done.is_open() && self.handler.complete(shared) == Some(true)) {
            self.drained = true;
            shared.drained.count_down();
        }
    }
}

/// What one pass over the read buffer found.
#[derive(Debug, Default)]
struct Batch {
    delivered: u64,
    disconnect: Option<ReasonCode>,
}

/// Handle every whole packet read: deliver, queue the acknowledgements.
fn handle_buffered<H: Handler>(
    conn: &mut Conn,
    client: &mut Client<H>,
) -> Result<Batch, ConnError> {
    let mut batch = Batch::default();
    while let Some(packet) = conn.next_buffered()? {
        match packet {
            Packet::Publish(p) => {
                batch.delivered += 1;
                match p.qos {
                    QoS::AtMostOnce => client.handler.deliver(&p),
                    QoS::AtLeastOnce => {
                        client.handler.deliver(&p);
                        conn.queue(&puback(p.packet_id))?;
                    }
                    QoS::ExactlyOnce => {
                        if client.inbox.receive(p.packet_id) {
                            client.handler.deliver(&p);
                        } else {
                            client.qos2_redelivered += 1;
                        }
                        conn.queue(&pubrec(p.packet_id))?;
                    }
                }
            }
            Packet::PubRel(r) => {
                client.inbox.release(r.packet_id);
                conn.queue(&pubcomp(r.packet_id))?;
            }
            Packet::Disconnect(d) => batch.disconnect = Some(d.code),
            _ => {}
        }
    }
    Ok(batch)
}

/// Why [`serve`] returned.
enum Woke {
    /// `wake_at` passed.
    Timer,
    /// Everybody leaves.
    Leave,
    /// The connection ended (the broker closed it, or sent DISCONNECT).
    Ended(ConnError),
}

/// Read, deliver and acknowledge until `wake_at`, `leave` or the end of
/// the connection; ping when the client has been silent for a while.
async fn serve<H: Handler>(
    conn: &mut Conn,
    client: &RefCell<Client<H>>,
    wake_at: Option<u64>,
    shared: &Shared,
) -> Woke {
    let mut last_write = now_ns();
    let mut last_delivery = last_write;
    let stall_ns = shared.args.stall_ms * 1_000_000;
    loop {
        // Whole packets already read come first: the read that brought
        // the CONNACK may have brought the session's queued messages too.
        let batch = match handle_buffered(conn, &mut client.borrow_mut()) {
            Ok(b) => b,
            Err(e) => return Woke::Ended(e),
        };
        if !conn.wbuf().is_empty() {
            if let Err(e) = conn.flush().await {
                return Woke::Ended(e);
            }
            last_write = now_ns();
        }
        if let Some(code) = batch.disconnect {
            return Woke::Ended(ConnError::Disconnected(code));
        }
        if batch.delivered > 0 {
            let now = now_ns();
            // Subscribers only: a will watcher waits for wills by design.
            if !shared.stop.is_open() && client.borrow().handler.complete(shared).is_some() {
                let gap = now - last_delivery;
                let mut c = client.borrow_mut();
                c.max_gap_ns = c.max_gap_ns.max(gap);
                if gap > stall_ns {
                    c.stalls += 1;
                }
            }
            last_delivery = now;
            Progress::add(&shared.target.progress.received, batch.delivered);
            cooperate().await;
        }
        if shared.leave.is_open() {
            return Woke::Leave;
        }
        client.borrow_mut().check_drained(shared, false);
        let now = now_ns();
        if wake_at.is_some_and(|t| now >= t) {
            return Woke::Timer;
        }
        if now >= last_write + PING_EVERY_NS {
            if let Err(e) = conn.send(&Packet::PingReq).await {
                return Woke::Ended(e);
            }
            last_write = now;
        }
        let until = wake_at.unwrap_or(u64::MAX).min(last_write + PING_EVERY_NS);
        let watch_pubs = !client.borrow().drained && !shared.pubs_done.is_open();
        let read = or(async { Some(conn.fill().await) }, async {
            if watch_pubs {
                or(
                    or(shared.leave.wait(), shared.pubs_done.wait()),
                    sleep_until(until),
                )
                .await;
            } else {
                or(shared.leave.wait(), sleep_until(until)).await;
            }
            None
        })
        .await;
        if let Some(Err(e)) = read {
            return Woke::Ended(e);
        }
    }
}

/// What a taken-over connection saw after the new CONNACK.
#[derive(Debug, Default)]
struct OldFate {
    disconnect: Option<ReasonCode>,
    closed: bool,
}

/// Handle what the old connection still has (before anything of the new
/// one, so a PUBREL read late from the old connection can never release a
/// packet id the new one reuses) until the broker closes it or `deadline`.
async fn drain_old<H: Handler>(
    mut old: Conn,
    client: &RefCell<Client<H>>,
    deadline: u64,
) -> OldFate {
    let mut fate = OldFate::default();
    loop {
        match handle_buffered(&mut old, &mut client.borrow_mut()) {
            Ok(batch) => {
                if let Some(code) = batch.disconnect {
                    fate.disconnect.get_or_insert(code);
                }
            }
            Err(_) => {
                fate.closed = true;
                return fate;
            }
        }
        // Acknowledgements on a connection being closed: best effort.
        let _ = old.flush().await;
        let read = or(async { Some(old.fill().await) }, async {
            sleep_until(deadline).await;
            None
        })
        .await;
        match read {
            None => return fate,
            Some(Err(_)) => {
                fate.closed = true;
                return fate;
            }
            Some(Ok(_)) => {}
        }
    }
}

/// Connection counters of one persistent client.
#[derive(Debug, Default)]
struct ConnStats {
    reconnects: u64,
    sessions_lost: u64,
    resets: u64,
    takeovers: u64,
    takeovers_refused: u64,
    old_got_8e: u64,
    old_not_closed: u64,
    connect_failures: Failures,
    ended: Failures,
    gave_up: u64,
}

impl ConnStats {
    fn merge(&mut self, o: &ConnStats) {
        self.reconnects += o.reconnects;
        self.sessions_lost += o.sessions_lost;
        self.resets += o.resets;
        self.takeovers += o.takeovers;
        self.takeovers_refused += o.takeovers_refused;
        self.old_got_8e += o.old_got_8e;
        self.old_not_closed += o.old_not_closed;
        self.connect_failures.merge(&o.connect_failures);
        self.ended.merge(&o.ended);
        self.gave_up += o.gave_up;
    }
}

/// Reconnect to the session (Clean Start 0) until it works or the
/// deadline passes; a session that is gone counts as lost and the filters
/// are subscribed again.
async fn reconnect(
    shared: &Shared,
    version: ProtocolVersion,
    id: &Ident,
    will: Option<&WillSpec>,
    filters: &[(String, QoS)],
    stats: &mut ConnStats,
) -> Option<Conn> {
    let deadline = now_ns() + RECONNECT_DEADLINE_NS;
    loop {
        match open_session(&shared.target, version, id, will, false).await {
            Ok((mut conn, ack)) => {
                stats.reconnects += 1;
                if !ack.session_present {
                    stats.sessions_lost += 1;
                    if !filters.is_empty() && subscribe_checked(&mut conn, filters).await.is_err() {
                        stats.connect_failures.add(&ConnError::Timeout("SUBACK"));
                        continue;
                    }
                }
                return Some(conn);
            }
            Err(e) => {
                stats.connect_failures.add(&e);
                if now_ns() > deadline || shared.leave.is_open() {
                    stats.gave_up += 1;
                    return None;
                }
                glommio::timer::sleep(RECONNECT_PAUSE).await;
            }
        }
    }
}

// ---------------------------------------------------------------------
// Subscribers.
// ---------------------------------------------------------------------

/// How a persistent subscriber is disturbed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Never.
    Steady,
    /// Its socket is reset now and then.
    Reset,
    /// Its client id is taken over again and again.
    Fight,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Steady => "sub",
            Role::Reset => "rst",
            Role::Fight => "fight",
        }
    }
}

/// Deliveries of one subscriber.
struct SubInbox {
    topics: u32,
    topic: u32,
    run_start_ns: u64,
    deliveries: Deliveries,
    stale: u64,
    qos_mismatch: u64,
}

impl Handler for SubInbox {
    fn deliver(&mut self, p: &Publish) {
        match Stamp::read(&p.payload) {
            Some(s) if s.sent_ns < self.run_start_ns => self.stale += 1,
            Some(s) => {
                if s.publisher < 3 * self.topics && s.publisher / self.topics != p.qos as u32 {
                    self.qos_mismatch += 1;
                }
                self.deliveries.record(&p.payload);
            }
            // Counted as foreign by the tracker.
            None => {
                self.deliveries.record(&p.payload);
            }
        }
    }

    fn complete(&self, shared: &Shared) -> Option<bool> {
        Some((1..=2).all(|q| {
            let p = publisher_index(q, self.topic, self.topics);
            let sent = shared.sent[p as usize].load(Ordering::Acquire);
            self.deliveries.tracker(p).map_or(0, SeqTracker::distinct) >= sent
        }))
    }
}

/// One subscriber's results.
struct SubReport {
    role: Role,
    max_gap_ns: u64,
    stalls: u64,
    topic: u32,
    deliveries: Deliveries,
    stale: u64,
    qos_mismatch: u64,
    qos2_redelivered: u64,
    stats: ConnStats,
}

#[derive(Default)]
struct ThreadResult {
    subs: Vec<SubReport>,
    pubs: Vec<PubReport>,
    waves: WaveStats,
    retained: Option<RetainedStats>,
    canary: Option<CanaryStats>,
    watcher: Option<WatcherStats>,
}

type Results = Rc<RefCell<ThreadResult>>;

/// The global index of a subscriber: steady ones first, then resetters,
/// then fighters. It picks the topic, the version and the thread.
fn global_index(args: &SoakArgs, role: Role, index: u32) -> u32 {
    match role {
        Role::Steady => index,
        Role::Reset => args.subscribers + index,
        Role::Fight => args.subscribers + args.resetters + index,
    }
}

async fn subscriber(role: Role, index: u32, shared: Arc<Shared>, result: Results) {
    let args = &shared.args;
    let target = &shared.target;
    let g = global_index(args, role, index);
    let topic = g % shared.topics();
    let version = version_of(u64::from(g));
    let id = Ident::new(
        target,
        target.client_id(&format!("soak-{}", role.name()), u64::from(index)),
        u64::from(index),
    );
    let filters: Vec<(String, QoS)> = (0..3u8)
        .map(|q| (shared.data_topic(q, topic), qos_of(q)))
        .collect();
    let client = RefCell::new(Client::new(SubInbox {
        topics: shared.topics(),
        topic,
        run_start_ns: shared.run_start_ns,
        deliveries: Deliveries::new(shared.publishers()),
        stale: 0,
        qos_mismatch: 0,
    }));
    let mut stats = ConnStats::default();
    let mut rng = shared.rng(u64::from(g) << 8 | 1);
    let who = format!("{}{index}", role.name());
    let mut will = (role == Role::Reset).then(|| shared.will(&who));

    let setup = async {
        let (mut conn, _) = open_session(target, version, &id, will.as_ref(), true)
            .await
            .map_err(|e| e.to_string())?;
        subscribe_checked(&mut conn, &filters).await?;
        Ok::<_, String>(conn)
    }
    .await;
    let mut conn = match setup {
        Ok(c) => Some(c),
        Err(e) => {
            shared.fail(format!("{}: {e}", id.client_id));
            None
        }
    };
    shared.subs_ready.count_down();
    shared.subs_ready.wait().await;
    if shared.failed() {
        if let Some(c) = conn {
            end_session(c, target, version, &id).await;
        }
        return;
    }
    Progress::add(&target.progress.up, 1);

    let reset_ns = (args.reset_secs * 1e9) as u64;
    let takeover_ns = args.takeover_ms * 1_000_000;
    let next_disruption = |rng: &mut Rng| match role {
        Role::Steady => None,
        Role::Reset => Some(now_ns() + rng.around(reset_ns)),
        Role::Fight => Some(now_ns() + rng.between(takeover_ns * 9 / 10, takeover_ns * 11 / 10)),
    };
    let mut wake_at = next_disruption(&mut rng);
    while let Some(c) = conn.as_mut() {
        match serve(c, &client, wake_at, &shared).await {
            Woke::Leave => break,
            Woke::Timer if shared.stop.is_open() => wake_at = None,
            Woke::Timer => {
                match role {
                    Role::Steady => {}
                    Role::Reset => {
                        if let (Some(w), Some(c)) = (&will, conn.take()) {
                            shared.book().expect(w.key);
                            reset(c);
                        }
                        stats.resets += 1;
                        glommio::timer::sleep(Duration::from_millis(
                            rng.below(args.offline_ms + 1),
                        ))
                        .await;
                        // Reconnecting before the broker noticed the reset
                        // would be a take-over of a dead connection (3.1.1
                        // publishes no will then): wait for the will first.
                        if let Some(w) = &will {
                            wait_for_will(&shared, w.key).await;
                        }
                        will = Some(shared.will(&who));
                        conn =
                            reconnect(&shared, version, &id, will.as_ref(), &filters, &mut stats)
                                .await;
                    }
                    Role::Fight => {
                        take_over(
                            &shared, version, &id, &filters, &client, &mut conn, &mut stats,
                        )
                        .await
                    }
                }
                wake_at = next_disruption(&mut rng);
            }
            Woke::Ended(e) => {
                // Not caused by the run: a will it publishes is unannounced.
                stats.ended.add(&e);
                if role == Role::Reset {
                    will = Some(shared.will(&who));
                }
                conn = reconnect(&shared, version, &id, will.as_ref(), &filters, &mut stats).await;
            }
        }
    }
    client.borrow_mut().check_drained(&shared, true);
    if !shared.leave.is_open() {
        // Gave up reconnecting: wait for the end, then report what it has.
        shared.leave.wait().await;
    }
    match conn {
        Some(c) => {
            if let Some(w) = &will {
                shared.book().forbid(w.key);
            }
            end_session(c, target, version, &id).await;
        }
        None => forget_session(target, version, &id).await,
    }
    Progress::sub(&target.progress.up, 1);
    let client = client.into_inner();
    result.borrow_mut().subs.push(SubReport {
        role,
        max_gap_ns: client.max_gap_ns,
        stalls: client.stalls,
        topic,
        stale: client.handler.stale,
        qos_mismatch: client.handler.qos_mismatch,
        deliveries: client.handler.deliveries,
        qos2_redelivered: client.qos2_redelivered,
        stats,
    });
}

/// Wait (at most [`WILL_AFTER_RESET_WAIT_NS`]) until the watcher has the
/// will with `key`.
async fn wait_for_will(shared: &Shared, key: u64) {
    let deadline = now_ns() + WILL_AFTER_RESET_WAIT_NS;
    while !shared.book().has(key) && now_ns() < deadline && !shared.leave.is_open() {
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }
}

/// A second connection takes the session over; the old one must get
/// DISCONNECT 0x8E (v5) and be closed. A refusal (the broker's take-over
/// limit) leaves the old connection in place.
async fn take_over<H: Handler>(
    shared: &Shared,
    version: ProtocolVersion,
    id: &Ident,
    filters: &[(String, QoS)],
    client: &RefCell<Client<H>>,
    conn: &mut Option<Conn>,
    stats: &mut ConnStats,
) {
    match open_session(&shared.target, version, id, None, false).await {
        Ok((mut new, ack)) => {
            stats.takeovers += 1;
            if let Some(old) = conn.take() {
                let fate = drain_old(old, client, now_ns() + TAKEOVER_CLOSE_WAIT_NS).await;
                if fate.disconnect == Some(ReasonCode::SESSION_TAKEN_OVER) {
                    stats.old_got_8e += 1;
                }
                if !fate.closed {
                    stats.old_not_closed += 1;
                }
            }
            if !ack.session_present {
                stats.sessions_lost += 1;
                if subscribe_checked(&mut new, filters).await.is_err() {
                    stats.connect_failures.add(&ConnError::Timeout("SUBACK"));
                }
            }
            *conn = Some(new);
        }
        Err(ConnError::Refused { .. }) => stats.takeovers_refused += 1,
        Err(e) => stats.connect_failures.add(&e),
    }
}

// ---------------------------------------------------------------------
// Publishers.
// ---------------------------------------------------------------------

/// One QoS 1/2 message in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Flight {
    packet_id: u16,
    sequence: u64,
    sent_ns: u64,
    /// PUBREC arrived, PUBREL sent (QoS 2).
    released: bool,
}

/// A publisher's outgoing QoS 1/2 state, kept across its connections.
#[derive(Debug, Default)]
struct Outgoing {
    pool: PidPool,
    /// In sequence order (resent in that order).
    flights: Vec<Flight>,
    accepted: u64,
    refused: u64,
    unexpected: u64,
}

impl Outgoing {
    fn push(&mut self, sequence: u64, sent_ns: u64) -> Option<u16> {
        let packet_id = self.pool.alloc()?;
        self.flights.push(Flight {
            packet_id,
            sequence,
            sent_ns,
            released: false,
        });
        Some(packet_id)
    }

    fn remove(&mut self, i: usize) {
        let f = self.flights.remove(i);
        self.pool.release(f.packet_id);
    }

    /// Account one packet from the broker; the PUBREL to send, if any.
    fn on_packet(&mut self, packet: &Packet) -> Option<Packet> {
        let find = |flights: &[Flight], id: u16, released: bool| {
            flights
                .iter()
                .position(|f| f.packet_id == id && f.released == released)
        };
        match packet {
            Packet::PubAck(a) => match find(&self.flights, a.packet_id, false) {
                Some(i) => {
                    self.remove(i);
                    if a.code.0 >= 0x80 {
                        self.refused += 1;
                    } else {
                        self.accepted += 1;
                    }
                }
                None => self.unexpected += 1,
            },
            Packet::PubRec(r) => {
                match self.flights.iter().position(|f| f.packet_id == r.packet_id) {
                    Some(i) if r.code.0 >= 0x80 => {
                        self.remove(i);
                        self.refused += 1;
                    }
                    Some(i) => {
                        let f = &mut self.flights[i];
                        if !f.released {
                            f.released = true;
                            self.accepted += 1;
                        }
                        return Some(pubrel(r.packet_id));
                    }
                    None => self.unexpected += 1,
                }
            }
            Packet::PubComp(c) => match find(&self.flights, c.packet_id, true) {
                Some(i) => self.remove(i),
                None => self.unexpected += 1,
            },
            _ => {}
        }
        None
    }

    /// Read every whole packet buffered and queue the PUBRELs.
    fn take_acks(&mut self, conn: &mut Conn) -> Result<(), ConnError> {
        while let Some(packet) = conn.next_buffered()? {
            if let Packet::Disconnect(d) = packet {
                return Err(ConnError::Disconnected(d.code));
            }
            if let Some(reply) = self.on_packet(&packet) {
                conn.queue(&reply)?;
            }
        }
        Ok(())
    }

    /// After a reconnect (MQTT 4.4): every unacknowledged PUBLISH again,
    /// DUP set, same packet id; PUBREL for every one that got its PUBREC.
    fn resend(
        &self,
        conn: &mut Conn,
        template: &PublishTemplate,
        publisher: u32,
    ) -> Result<(), ConnError> {
        for f in &self.flights {
            if f.released {
                conn.queue(&pubrel(f.packet_id))?;
            } else {
                let start = conn.wbuf().len();
                let stamp = Stamp {
                    publisher,
                    sequence: f.sequence,
                    sent_ns: f.sent_ns,
                };
                template.append(conn.wbuf(), &stamp, f.packet_id);
                // The DUP flag, bit 3 of the fixed header.
                conn.wbuf()[start] |= 0x08;
            }
        }
        Ok(())
    }
}

/// One publisher's results.
#[derive(Debug, Default)]
struct PubReport {
    qos: u8,
    written: u64,
    accepted: u64,
    refused: u64,
    unacked: u64,
    unexpected_acks: u64,
    resets: u64,
    stats: ConnStats,
    error: Option<String>,
}

async fn publisher_connect(
    shared: &Shared,
    version: ProtocolVersion,
    id: &Ident,
    qos: u8,
    fresh: bool,
) -> Result<(Conn, ConnAck), ConnError> {
    if qos == 0 {
        open_clean(&shared.target, version, id, ReadSize::LARGE).await
    } else {
        open_session(&shared.target, version, id, None, fresh).await
    }
}

async fn publisher(qos: u8, topic: u32, shared: Arc<Shared>, result: Results) {
    let args = &shared.args;
    let target = &shared.target;
    let p = publisher_index(qos, topic, shared.topics());
    let version = version_of(u64::from(p));
    let id = Ident::new(
        target,
        target.client_id("soak-pub", u64::from(p)),
        u64::from(p),
    );
    let mut out = PubReport {
        qos,
        ..PubReport::default()
    };
    let mut rng = shared.rng(u64::from(p) << 8 | 2);
    let setup = async {
        let (conn, ack) = publisher_connect(&shared, version, &id, qos, true)
            .await
            .map_err(|e| e.to_string())?;
        if ack.properties.maximum_qos.is_some_and(|m| m < qos) {
            return Err(format!("the broker's Maximum QoS is below {qos}"));
        }
        let template = PublishTemplate::new(
            version,
            &shared.data_topic(qos, topic),
            qos_of(qos),
            args.payload,
        )
        .map_err(|e| e.to_string())?;
        Ok::<_, String>((conn, ack, template))
    }
    .await;
    let (conn, ack, template) = match setup {
        Ok(s) => s,
        Err(e) => {
            shared.fail(format!("{}: {e}", id.client_id));
            shared.pubs_done.count_down();
            return;
        }
    };
    let receive_maximum = ack.properties.receive_maximum.map_or(u32::MAX, u32::from);
    let window = u64::from(args.inflight.min(receive_maximum));
    let mut conn = Some(conn);
    shared.subs_ready.wait().await;
    if shared.failed() {
        shared.pubs_done.count_down();
        return;
    }
    Progress::add(&target.progress.up, 1);

    let rate = args.rate / f64::from(shared.publishers());
    let reset_ns = (args.publisher_reset_secs * 1e9) as u64;
    let next_reset = |rng: &mut Rng| (reset_ns > 0).then(|| now_ns() + rng.around(reset_ns));
    let mut reset_at = next_reset(&mut rng);
    let mut outgoing = Outgoing::default();
    let mut seq = 0u64;
    let start = now_ns();
    let progress = &target.progress;
    while !shared.stop.is_open() {
        let Some(c) = conn.as_mut() else {
            let Some(mut c) = reconnect_publisher(&shared, version, &id, qos, &mut out.stats).await
            else {
                out.error = Some("could not reconnect".into());
                break;
            };
            if outgoing.resend(&mut c, &template, p).is_err() || c.flush().await.is_err() {
                continue;
            }
            conn = Some(c);
            continue;
        };
        let now = now_ns();
        if reset_at.is_some_and(|t| now >= t) {
            if let Some(c) = conn.take() {
                reset(c);
            }
            out.resets += 1;
            glommio::timer::sleep(Duration::from_millis(rng.below(args.offline_ms + 1))).await;
            reset_at = next_reset(&mut rng);
            continue;
        }
        let due = due_count(now - start, rate).saturating_sub(seq);
        let room = if qos == 0 {
            BATCH
        } else {
            window.saturating_sub(outgoing.flights.len() as u64)
        };
        let n = due.min(room).min(BATCH);
        for _ in 0..n {
            let packet_id = if qos == 0 {
                0
            } else {
                // The window is far below 65535 ids: one is always free.
                outgoing.push(seq, now).unwrap_or(0)
            };
            let stamp = Stamp {
                publisher: p,
                sequence: seq,
                sent_ns: now,
            };
            template.append(c.wbuf(), &stamp, packet_id);
            seq += 1;
        }
        if n > 0 {
            Progress::add(&progress.sent, n);
            if let Err(e) = c.flush().await {
                out.stats.ended.add(&e);
                conn = None;
                continue;
            }
        }
        let mut wake = (start + due_offset_ns(seq, rate)).max(now_ns() + MIN_PACE_NS);
        if let Some(t) = reset_at {
            wake = wake.min(t.max(now_ns() + MIN_PACE_NS));
        }
        if qos == 0 || outgoing.flights.is_empty() {
            or(shared.stop.wait(), sleep_until(wake)).await;
            continue;
        }
        let read = or(async { Some(c.fill().await) }, async {
            or(shared.stop.wait(), sleep_until(wake)).await;
            None
        })
        .await;
        let acked = match read {
            None => Ok(()),
            Some(Err(e)) => Err(e),
            Some(Ok(_)) => match outgoing.take_acks(c) {
                Ok(()) => c.flush().await,
                Err(e) => Err(e),
            },
        };
        if let Err(e) = acked {
            out.stats.ended.add(&e);
            conn = None;
        }
        cooperate().await;
    }
    // Drain: every message in flight acknowledged.
    let deadline = now_ns() + (args.drain_secs * 1e9) as u64;
    while !outgoing.flights.is_empty() && now_ns() < deadline {
        let Some(c) = conn.as_mut() else {
            match reconnect_publisher(&shared, version, &id, qos, &mut out.stats).await {
                Some(mut c) => {
                    if outgoing.resend(&mut c, &template, p).is_ok() && c.flush().await.is_ok() {
                        conn = Some(c);
                    }
                    continue;
                }
                None => break,
            }
        };
        let read = or(async { Some(c.fill().await) }, async {
            sleep_until(deadline).await;
            None
        })
        .await;
        let acked = match read {
            None => Ok(()),
            Some(Err(e)) => Err(e),
            Some(Ok(_)) => match outgoing.take_acks(c) {
                Ok(()) => c.flush().await,
                Err(e) => Err(e),
            },
        };
        if let Err(e) = acked {
            out.stats.ended.add(&e);
            conn = None;
        }
    }
    out.written = seq;
    out.accepted = if qos == 0 { seq } else { outgoing.accepted };
    out.refused = outgoing.refused;
    out.unacked = outgoing.flights.len() as u64;
    out.unexpected_acks = outgoing.unexpected;
    shared.sent[p as usize].store(out.accepted, Ordering::Release);
    shared.pubs_done.count_down();

    if let Some(c) = conn.as_mut() {
        idle_until_leave(&mut [c], &shared).await;
    } else {
        shared.leave.wait().await;
    }
    match conn {
        Some(c) if qos > 0 => end_session(c, target, version, &id).await,
        Some(c) => c.disconnect().await,
        None if qos > 0 => forget_session(target, version, &id).await,
        None => {}
    }
    Progress::sub(&target.progress.up, 1);
    result.borrow_mut().pubs.push(out);
}

/// Reconnect a publisher (its session must still be there for QoS 1/2).
async fn reconnect_publisher(
    shared: &Shared,
    version: ProtocolVersion,
    id: &Ident,
    qos: u8,
    stats: &mut ConnStats,
) -> Option<Conn> {
    let deadline = now_ns() + RECONNECT_DEADLINE_NS;
    loop {
        match publisher_connect(shared, version, id, qos, false).await {
            Ok((conn, ack)) => {
                stats.reconnects += 1;
                if qos > 0 && !ack.session_present {
                    stats.sessions_lost += 1;
                }
                return Some(conn);
            }
            Err(e) => {
                stats.connect_failures.add(&e);
                if now_ns() > deadline || shared.leave.is_open() {
                    stats.gave_up += 1;
                    return None;
                }
                glommio::timer::sleep(RECONNECT_PAUSE).await;
            }
        }
    }
}

// ---------------------------------------------------------------------
// Wills: the watcher and the waves of keep-alive clients.
// ---------------------------------------------------------------------

/// The watcher's deliveries: will keys into the book.
struct WillInbox {
    shared: Arc<Shared>,
    stale: u64,
    foreign: u64,
}

impl Handler for WillInbox {
    fn deliver(&mut self, p: &Publish) {
        match Stamp::read(&p.payload) {
            Some(s) if s.sent_ns < self.shared.run_start_ns => self.stale += 1,
            Some(s) => self.shared.book().receive(s.sequence),
            None => self.foreign += 1,
        }
    }
}

#[derive(Debug, Default)]
struct WatcherStats {
    stale: u64,
    foreign: u64,
    stats: ConnStats,
}

async fn watcher(shared: Arc<Shared>, result: Results) {
    let target = &shared.target;
    let version = ProtocolVersion::V5;
    let id = Ident::new(target, target.client_id("soak-watch", 0), 0);
    let filters = vec![(
        format!("{}/will/#", shared.args.topic_prefix),
        QoS::AtLeastOnce,
    )];
    let client = RefCell::new(Client::new(WillInbox {
        shared: Arc::clone(&shared),
        stale: 0,
        foreign: 0,
    }));
    let mut stats = ConnStats::default();
    let setup = async {
        let (mut conn, _) = open_session(target, version, &id, None, true)
            .await
            .map_err(|e| e.to_string())?;
        subscribe_checked(&mut conn, &filters).await?;
        Ok::<_, String>(conn)
    }
    .await;
    let mut conn = match setup {
        Ok(c) => Some(c),
        Err(e) => {
            shared.fail(format!("will watcher: {e}"));
            None
        }
    };
    shared.subs_ready.count_down();
    while let Some(c) = conn.as_mut() {
        match serve(c, &client, None, &shared).await {
            Woke::Leave => break,
            Woke::Timer => {}
            Woke::Ended(e) => {
                stats.ended.add(&e);
                conn = reconnect(&shared, version, &id, None, &filters, &mut stats).await;
            }
        }
    }
    match conn {
        Some(c) => end_session(c, target, version, &id).await,
        None => forget_session(target, version, &id).await,
    }
    let client = client.into_inner();
    result.borrow_mut().watcher = Some(WatcherStats {
        stale: client.handler.stale,
        foreign: client.handler.foreign,
        stats,
    });
}

/// Will clients of every wave of one thread.
#[derive(Debug, Default)]
struct WaveStats {
    silent: u64,
    polite: u64,
    failures: Failures,
    closed: u64,
    not_closed: u64,
    closed_early: u64,
    disconnect_8d: u64,
    close_delay: Histogram,
}

impl WaveStats {
    fn merge(&mut self, o: &WaveStats) {
        self.silent += o.silent;
        self.polite += o.polite;
        self.failures.merge(&o.failures);
        self.closed += o.closed;
        self.not_closed += o.not_closed;
        self.closed_early += o.closed_early;
        self.disconnect_8d += o.disconnect_8d;
        self.close_delay.merge(&o.close_delay);
    }
}

async fn will_waves(thread: usize, shared: Arc<Shared>, result: Results) {
    let args = &shared.args;
    let stats = Rc::new(RefCell::new(WaveStats::default()));
    let mut tasks = Vec::new();
    shared.subs_ready.wait().await;
    if !shared.failed() && args.will_clients > 0 {
        let interval = (args.will_secs * 1e9) as u64;
        let mut next = now_ns();
        let mut wave = 0u64;
        loop {
            or(shared.stop.wait(), sleep_until(next)).await;
            if shared.stop.is_open() {
                break;
            }
            for i in share_of(thread, shared.load_threads(), u64::from(args.will_clients)) {
                tasks.push(glommio::spawn_local(will_client(
                    wave,
                    i,
                    Arc::clone(&shared),
                    Rc::clone(&stats),
                )));
            }
            wave += 1;
            next += interval;
        }
    }
    for t in tasks {
        t.await;
    }
    shared.wills_done.count_down();
    result.borrow_mut().waves.merge(&stats.borrow());
}

/// One will client: silent (the broker must close it after 1.5 x Keep
/// Alive and publish its will) or polite (normal DISCONNECT: no will).
async fn will_client(wave: u64, i: u64, shared: Arc<Shared>, stats: Rc<RefCell<WaveStats>>) {
    let args = &shared.args;
    let silent = (wave + i) % 2 == 0;
    let version = version_of(i);
    let who = format!("w{wave}-{i}");
    let will = shared.will(&who);
    let id = format!("{}-soak-will-{wave}-{i}", shared.target.prefix);
    let id = Ident::new(&shared.target, id, i);
    let connect = connect_packet(version, &id, true, args.will_keepalive, false, Some(&will));
    let connect_ns = now_ns();
    let mut conn = match open(&shared.target, version, &connect, ReadSize::SMALL).await {
        Ok((conn, _)) => conn,
        Err(e) => {
            stats.borrow_mut().failures.add(&e);
            return;
        }
    };
    if !silent {
        stats.borrow_mut().polite += 1;
        glommio::timer::sleep(Duration::from_millis(POLITE_STAY_MS)).await;
        shared.book().forbid(will.key);
        conn.disconnect().await;
        return;
    }
    shared.book().expect(will.key);
    stats.borrow_mut().silent += 1;
    let expiry_ns = u64::from(args.will_keepalive) * 1_500_000_000;
    let deadline = connect_ns + expiry_ns + WILL_GRACE_NS;
    let mut disconnect = None;
    let closed_ns = loop {
        let read = or(async { Some(conn.fill().await) }, async {
            sleep_until(deadline).await;
            None
        })
        .await;
        match read {
            None => break None,
            Some(Err(_)) => break Some(now_ns()),
            Some(Ok(_)) => loop {
                match conn.next_buffered() {
                    Ok(Some(Packet::Disconnect(d))) => {
                        disconnect.get_or_insert(d.code);
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => break,
                }
            },
        }
    };
    let mut s = stats.borrow_mut();
    if disconnect == Some(ReasonCode::KEEP_ALIVE_TIMEOUT) {
        s.disconnect_8d += 1;
    }
    match closed_ns {
        Some(t) => {
            s.closed += 1;
            let delay = t.saturating_sub(connect_ns);
            s.close_delay.record(delay);
            if delay < expiry_ns {
                s.closed_early += 1;
            }
        }
        None => s.not_closed += 1,
    }
}

// ---------------------------------------------------------------------
// Retained churn.
// ---------------------------------------------------------------------

#[derive(Debug, Default)]
struct RetainedStats {
    updates: u64,
    clears: u64,
    checks: u64,
    wildcard_checks: u64,
    wrong: u64,
    stray: u64,
    examples: Vec<String>,
    error: Option<String>,
}

/// The checker's view of one SUBSCRIBE: retained versions by topic index.
#[derive(Debug, Default)]
struct Probe {
    seen: HashMap<usize, Option<u64>>,
    stray: u64,
}

fn retained_index(shared: &Shared, topic: &[u8]) -> Option<usize> {
    let prefix = format!("{}/ret/", shared.args.topic_prefix);
    std::str::from_utf8(topic)
        .ok()?
        .strip_prefix(prefix.as_str())?
        .parse()
        .ok()
}

/// Publish a retained value (`None`: clear it) at QoS 1 and wait for the
/// PUBACK; its reason code.
async fn set_retained(
    conn: &mut Conn,
    topic: &str,
    value: Option<u64>,
    packet_id: u16,
) -> Result<ReasonCode, ConnError> {
    let publish = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: Bytes::copy_from_slice(topic.as_bytes()),
        packet_id,
        properties: Properties::default().into(),
        payload: value.map_or_else(Bytes::new, stamp_bytes),
    };
    conn.send(&Packet::Publish(publish)).await?;
    within(ACK_TIMEOUT, "PUBACK", async {
        loop {
            match conn.recv().await? {
                Packet::PubAck(a) if a.packet_id == packet_id => return Ok(a.code),
                Packet::Disconnect(d) => return Err(ConnError::Disconnected(d.code)),
                _ => {}
            }
        }
    })
    .await
}

/// SUBSCRIBE to `filter`, collect the retained messages until `want` of
/// them arrived or `wait_ns` after the SUBACK, then UNSUBSCRIBE.
async fn probe(
    shared: &Shared,
    conn: &mut Conn,
    filter: &str,
    packet_id: u16,
    want: usize,
    wait_ns: u64,
) -> Result<Probe, ConnError> {
    let subscribe = Subscribe {
        packet_id,
        properties: Properties::default(),
        filters: vec![(
            Bytes::copy_from_slice(filter.as_bytes()),
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                ..SubscriptionOptions::default()
            },
        )],
    };
    conn.send(&Packet::Subscribe(subscribe)).await?;
    let mut out = Probe::default();
    let hard_deadline = now_ns() + ACK_TIMEOUT.as_nanos() as u64 + wait_ns;
    let mut suback_ns: Option<u64> = None;
    let take =
        |conn: &mut Conn, out: &mut Probe, suback_ns: &mut Option<u64>, unsuback: &mut bool| {
            while let Some(packet) = conn.next_buffered()? {
                match packet {
                    Packet::SubAck(a) if a.packet_id == packet_id => {
                        if a.codes.first().is_some_and(|c| c.0 >= 0x80) {
                            return Err(ConnError::Unexpected(PacketType::SubAck));
                        }
                        suback_ns.get_or_insert(now_ns());
                    }
                    Packet::UnsubAck(a) if a.packet_id == packet_id => *unsuback = true,
                    Packet::Publish(p) => {
                        if p.qos != QoS::AtMostOnce {
                            conn.queue(&puback(p.packet_id))?;
                        }
                        match retained_index(shared, &p.topic).filter(|_| p.retain) {
                            Some(r) => {
                                let version = Stamp::read(&p.payload).map(|s| s.sequence);
                                out.seen.insert(r, version);
                            }
                            None => out.stray += 1,
                        }
                    }
                    Packet::Disconnect(d) => return Err(ConnError::Disconnected(d.code)),
                    _ => {}
                }
            }
            Ok::<_, ConnError>(())
        };
    let mut unsuback = false;
    loop {
        take(conn, &mut out, &mut suback_ns, &mut unsuback)?;
        conn.flush().await?;
        if let Some(t) = suback_ns {
            if (want > 0 && out.seen.len() >= want) || now_ns() >= t + wait_ns {
                break;
            }
        }
        let until = suback_ns
            .map_or(hard_deadline, |t| t + wait_ns)
            .min(hard_deadline);
        let read = or(async { Some(conn.fill().await) }, async {
            sleep_until(until).await;
            None
        })
        .await;
        match read {
            None if suback_ns.is_none() => return Err(ConnError::Timeout("SUBACK")),
            None => break,
            Some(r) => {
                r?;
            }
        }
    }
    let unsubscribe = Unsubscribe {
        packet_id,
        properties: Properties::default(),
        filters: vec![Bytes::copy_from_slice(filter.as_bytes())],
    };
    conn.send(&Packet::Unsubscribe(unsubscribe)).await?;
    within(ACK_TIMEOUT, "UNSUBACK", async {
        loop {
            take(conn, &mut out, &mut suback_ns, &mut unsuback)?;
            conn.flush().await?;
            if unsuback {
                return Ok(());
            }
            conn.fill().await?;
        }
    })
    .await?;
    Ok(out)
}

async fn retained(shared: Arc<Shared>, result: Results) {
    let args = &shared.args;
    let target = &shared.target;
    let mut st = RetainedStats::default();
    let pub_id = Ident::new(target, target.client_id("soak-ret", 0), 0);
    let chk_id = Ident::new(target, target.client_id("soak-chk", 0), 0);
    let count = args.retained_topics as usize;
    if count == 0 {
        return;
    }
    let setup = async {
        let (mut p, _) = open_clean(target, ProtocolVersion::V5, &pub_id, ReadSize::SMALL).await?;
        let (c, _) = open_clean(target, ProtocolVersion::V3_1_1, &chk_id, ReadSize::LARGE).await?;
        // An earlier run may have left values behind.
        for r in 0..count {
            set_retained(&mut p, &shared.retained_topic(r), None, 1).await?;
        }
        Ok::<_, ConnError>((p, c))
    }
    .await;
    let (mut pubc, mut chk) = match setup {
        Ok(s) => s,
        Err(e) => {
            shared.fail(format!("retained churn: {e}"));
            return;
        }
    };
    shared.subs_ready.wait().await;
    if shared.failed() {
        return;
    }
    let mut rng = shared.rng(3);
    let mut model: Vec<Option<u64>> = vec![None; count];
    let mut version = 0u64;
    let mut n = 0u64;
    let mut packet_id = || {
        n += 1;
        (n % 65_535) as u16 + 1
    };
    let interval = args.retained_ms * 1_000_000;
    let mut next = now_ns();
    let mut next_check = next + RETAINED_CHECK_EVERY_NS;
    let mut next_wildcard = next + RETAINED_WILDCARD_EVERY_NS;
    let mut outcome: Result<(), ConnError> = Ok(());
    while outcome.is_ok() && !shared.stop.is_open() {
        or(shared.stop.wait(), sleep_until(next)).await;
        if shared.stop.is_open() {
            break;
        }
        next = (next + interval).max(now_ns());
        let r = rng.below(count as u64) as usize;
        let clear = model[r].is_some() && rng.below(4) == 0;
        let value = if clear {
            None
        } else {
            version += 1;
            Some(version)
        };
        outcome = async {
            let code =
                set_retained(&mut pubc, &shared.retained_topic(r), value, packet_id()).await?;
            if code.0 >= 0x80 {
                st.examples.push(format!(
                    "retained PUBACK 0x{:02X} {} for topic {r}",
                    code.0,
                    code.name()
                ));
                st.wrong += 1;
            } else {
                model[r] = value;
            }
            if clear {
                st.clears += 1;
            } else {
                st.updates += 1;
            }
            let now = now_ns();
            if now >= next_check {
                next_check = now + RETAINED_CHECK_EVERY_NS;
                let wait = if model[r].is_some() {
                    RETAINED_PRESENT_WAIT_NS
                } else {
                    RETAINED_ABSENT_WAIT_NS
                };
                let want = usize::from(model[r].is_some());
                let seen = probe(
                    &shared,
                    &mut chk,
                    &shared.retained_topic(r),
                    packet_id(),
                    want,
                    wait,
                )
                .await?;
                judge(&mut st, &model, &[r], &seen);
                st.checks += 1;
            }
            if now >= next_wildcard {
                next_wildcard = now + RETAINED_WILDCARD_EVERY_NS;
                check_all(&shared, &mut chk, packet_id(), &model, &mut st).await?;
            }
            Ok(())
        }
        .await;
    }
    // The end: the whole range once more, then clear it and check that
    // nothing is left.
    let ended = async {
        outcome?;
        check_all(&shared, &mut chk, packet_id(), &model, &mut st).await?;
        for (r, value) in model.iter_mut().enumerate() {
            if value.take().is_some() {
                set_retained(&mut pubc, &shared.retained_topic(r), None, packet_id()).await?;
                st.clears += 1;
            }
        }
        check_all(&shared, &mut chk, packet_id(), &model, &mut st).await
    }
    .await;
    if let Err(e) = ended {
        st.error = Some(e.label());
    }
    idle_until_leave(&mut [&mut pubc, &mut chk], &shared).await;
    pubc.disconnect().await;
    chk.disconnect().await;
    result.borrow_mut().retained = Some(st);
}

async fn check_all(
    shared: &Shared,
    chk: &mut Conn,
    packet_id: u16,
    model: &[Option<u64>],
    st: &mut RetainedStats,
) -> Result<(), ConnError> {
    let want = model.iter().filter(|v| v.is_some()).count();
    let wait = if want > 0 {
        RETAINED_PRESENT_WAIT_NS
    } else {
        RETAINED_ABSENT_WAIT_NS
    };
    let filter = format!("{}/ret/+", shared.args.topic_prefix);
    let seen = probe(shared, chk, &filter, packet_id, want, wait).await?;
    let all: Vec<usize> = (0..model.len()).collect();
    judge(st, model, &all, &seen);
    st.wildcard_checks += 1;
    Ok(())
}

fn judge(st: &mut RetainedStats, model: &[Option<u64>], checked: &[usize], seen: &Probe) {
    st.stray += seen.stray;
    for r in retained_mismatches(model, checked, &seen.seen) {
        st.wrong += 1;
        if st.examples.len() < EXAMPLES {
            st.examples.push(format!(
                "retained topic {r}: latest {:?}, subscriber got {:?}",
                model[r],
                seen.seen.get(&r)
            ));
        }
    }
}

// ---------------------------------------------------------------------
// The canary.
// ---------------------------------------------------------------------

#[derive(Debug, Default)]
struct CanaryStats {
    round_trips: u64,
    rtt: Histogram,
    lost: u64,
    stalls: u64,
    /// (seconds into the run, round trip in ms) of the first stalls.
    examples: Vec<(f64, f64)>,
    error: Option<String>,
}

enum Side {
    Pub(Result<usize, ConnError>),
    Sub(Result<usize, ConnError>),
    Late,
}

async fn canary(shared: Arc<Shared>, result: Results) {
    let args = &shared.args;
    let target = &shared.target;
    let mut st = CanaryStats::default();
    let (pub_id, sub_id) = canary_ids(&target.prefix);
    let (pub_id, sub_id) = (Ident::new(target, pub_id, 0), Ident::new(target, sub_id, 0));
    let topic = format!("{}/canary", args.topic_prefix);
    let version = ProtocolVersion::V5;
    let setup = async {
        let (mut sub, _) = open_clean(target, version, &sub_id, ReadSize::SMALL)
            .await
            .map_err(|e| e.to_string())?;
        subscribe_checked(&mut sub, &[(topic.clone(), QoS::AtLeastOnce)]).await?;
        let (p, _) = open_clean(target, version, &pub_id, ReadSize::SMALL)
            .await
            .map_err(|e| e.to_string())?;
        let template = PublishTemplate::new(version, &topic, QoS::AtLeastOnce, STAMP_LEN)
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((sub, p, template))
    }
    .await;
    let (mut sub, mut pubc, template) = match setup {
        Ok(s) => s,
        Err(e) => {
            shared.fail(format!("canary: {e}"));
            return;
        }
    };
    shared.subs_ready.wait().await;
    let start = now_ns();
    let interval = args.canary_ms * 1_000_000;
    let stall_ns = args.stall_ms * 1_000_000;
    let mut next = start;
    let mut seq = 0u64;
    'run: while !shared.leave.is_open() && !shared.failed() {
        or(shared.leave.wait(), sleep_until(next)).await;
        if shared.leave.is_open() {
            break;
        }
        let packet_id = (seq % 65_535) as u16 + 1;
        let sent = now_ns();
        let stamp = Stamp {
            publisher: 0,
            sequence: seq,
            sent_ns: sent,
        };
        template.append(pubc.wbuf(), &stamp, packet_id);
        if let Err(e) = pubc.flush().await {
            st.error = Some(format!("publisher: {}", e.label()));
            break;
        }
        let deadline = sent + CANARY_TIMEOUT_NS;
        let (mut acked, mut delivered) = (false, false);
        while !(acked && delivered) {
            let side = or(async { Side::Pub(pubc.fill().await) }, async {
                or(async { Side::Sub(sub.fill().await) }, async {
                    sleep_until(deadline).await;
                    Side::Late
                })
                .await
            })
            .await;
            let step = match side {
                Side::Late => break,
                Side::Pub(r) => r.and_then(|_| {
                    while let Some(packet) = pubc.next_buffered()? {
                        if matches!(packet, Packet::PubAck(a) if a.packet_id == packet_id) {
                            acked = true;
                        }
                    }
                    Ok(())
                }),
                Side::Sub(r) => r.and_then(|_| {
                    while let Some(packet) = sub.next_buffered()? {
                        if let Packet::Publish(m) = packet {
                            if Stamp::read(&m.payload).is_some_and(|s| s.sequence == seq) {
                                delivered = true;
                            }
                            sub.queue(&puback(m.packet_id))?;
                        }
                    }
                    Ok(())
                }),
            };
            let step = match step {
                Ok(()) => sub.flush().await,
                Err(e) => Err(e),
            };
            if let Err(e) = step {
                st.error = Some(e.label());
                break 'run;
            }
        }
        let now = now_ns();
        let rtt = now - sent;
        st.round_trips += 1;
        let complete = acked && delivered;
        if complete {
            st.rtt.record(rtt);
        } else {
            st.lost += 1;
        }
        if !complete || rtt > stall_ns {
            st.stalls += 1;
            if st.examples.len() < EXAMPLES {
                st.examples
                    .push(((sent - start) as f64 / 1e9, rtt as f64 / 1e6));
            }
        }
        seq += 1;
        next = (next + interval).max(now);
    }
    sub.disconnect().await;
    pubc.disconnect().await;
    result.borrow_mut().canary = Some(st);
}

// ---------------------------------------------------------------------
// The run.
// ---------------------------------------------------------------------

/// Thread 0: the phases.
async fn controller(shared: Arc<Shared>) {
    let args = &shared.args;
    shared.subs_ready.wait().await;
    if shared.failed() {
        return;
    }
    {
        let mut ph = locked(&shared.phases);
        ph.cpu = Some(CpuWindow::start(args.common.broker_pid));
        ph.started_ns = Some(now_ns());
    }
    or(
        shared.stop.wait(),
        glommio::timer::sleep(Duration::from_secs_f64(args.duration_secs)),
    )
    .await;
    shared.stop.open();
    locked(&shared.phases).stopped_ns = Some(now_ns());
    shared.pubs_done.wait().await;
    or(
        shared.drained.wait(),
        glommio::timer::sleep(Duration::from_secs_f64(args.drain_secs)),
    )
    .await;
    locked(&shared.phases).drained_ns = Some(now_ns());
    // Every will client has ended (each is bounded) and every expected
    // will arrived, or the grace is over.
    let grace = u64::from(args.will_keepalive) * 1_500_000_000 + WILL_GRACE_NS + 5_000_000_000;
    or(
        async {
            shared.wills_done.wait().await;
            while shared.book().outstanding() > 0 {
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        },
        glommio::timer::sleep(Duration::from_nanos(grace)),
    )
    .await;
    {
        let mut ph = locked(&shared.phases);
        let broker = ph.cpu.and_then(|w| w.broker_now());
        ph.cpu_end = Some((CpuSample::own(), broker));
        ph.left_ns = Some(now_ns());
    }
    shared.leave.open();
}

async fn thread_main(thread: usize, shared: Arc<Shared>) -> ThreadResult {
    let args = &shared.args;
    let result: Results = Rc::new(RefCell::new(ThreadResult::default()));
    let mut tasks = Vec::new();
    let lt = shared.load_threads();
    if thread < lt {
        let roles = [
            (Role::Steady, args.subscribers),
            (Role::Reset, args.resetters),
            (Role::Fight, args.fighters),
        ];
        for (role, count) in roles {
            for index in 0..count {
                if global_index(args, role, index) as usize % lt == thread {
                    tasks.push(glommio::spawn_local(subscriber(
                        role,
                        index,
                        Arc::clone(&shared),
                        Rc::clone(&result),
                    )));
                }
            }
        }
        for qos in 0..3u8 {
            for topic in 0..shared.topics() {
                let p = publisher_index(qos, topic, shared.topics());
                if (p as usize + 1) % lt == thread {
                    tasks.push(glommio::spawn_local(publisher(
                        qos,
                        topic,
                        Arc::clone(&shared),
                        Rc::clone(&result),
                    )));
                }
            }
        }
        tasks.push(glommio::spawn_local(will_waves(
            thread,
            Arc::clone(&shared),
            Rc::clone(&result),
        )));
    }
    if thread == 0 {
        tasks.push(glommio::spawn_local(controller(Arc::clone(&shared))));
        tasks.push(glommio::spawn_local(watcher(
            Arc::clone(&shared),
            Rc::clone(&result),
        )));
        tasks.push(glommio::spawn_local(retained(
            Arc::clone(&shared),
            Rc::clone(&result),
        )));
    }
    if thread == shared.canary_thread() {
        tasks.push(glommio::spawn_local(canary(
            Arc::clone(&shared),
            Rc::clone(&result),
        )));
    }
    for t in tasks {
        t.await;
    }
    let r = std::mem::take(&mut *result.borrow_mut());
    r
}

/// Run the soak; one report (its `failed` flag set when the verdict is
/// not a pass).
pub fn run(args: &SoakArgs) -> Result<Report, BenchError> {
    args.validate()?;
    check_fds("subscribers", args.connections_bound())?;
    let target = Target::from_common(&args.common)?;
    let seed = args.seed.unwrap_or_else(now_ns);
    let publishers = 3 * args.topics;
    let persistent = args.subscribers + args.resetters + args.fighters;
    target
        .progress
        .target
        .store(u64::from(persistent + publishers), Ordering::Relaxed);
    let shared = Arc::new(Shared {
        args: args.clone(),
        target: Arc::clone(&target),
        seed,
        run_start_ns: now_ns(),
        subs_ready: Latch::new(persistent as usize + 1),
        stop: Latch::new(1),
        pubs_done: Latch::new(publishers as usize),
        drained: Latch::new(persistent as usize),
        wills_done: Latch::new(args.common.threads.saturating_sub(1).max(1)),
        leave: Latch::new(1),
        sent: (0..publishers).map(|_| AtomicU64::new(0)).collect(),
        next_will: AtomicU64::new(0),
        wills: Mutex::new(WillBook::default()),
        setup_error: Mutex::new(None),
        phases: Mutex::new(Phases::default()),
    });
    let s = Arc::clone(&shared);
    let results = run_executors(&args.common, "soak", &target.progress, move |thread| {
        thread_main(thread, Arc::clone(&s))
    })?;
    if let Some(e) = locked(&shared.setup_error).take() {
        return Err(BenchError::Setup(e));
    }
    let mut all = ThreadResult::default();
    for r in results {
        all.subs.extend(r.subs);
        all.pubs.extend(r.pubs);
        all.waves.merge(&r.waves);
        all.retained = all.retained.or(r.retained);
        all.canary = all.canary.or(r.canary);
        all.watcher = all.watcher.or(r.watcher);
    }
    Ok(build_report(&shared, &all))
}

fn build_report(shared: &Shared, all: &ThreadResult) -> Report {
    let args = &shared.args;
    let mut report = Report::new("soak");
    report.param("host", Value::Text(args.common.host.clone()));
    report.param("port", Value::Int(u64::from(args.common.port)));
    report.param("mqtt_versions", Value::Text("3.1.1+5".into()));
    report.param("threads", Value::Int(args.common.threads as u64));
    report.param("duration_s", Value::Float(args.duration_secs, 1));
    report.param("rate_per_s", Value::Float(args.rate, 1));
    report.param("topics", Value::Int(u64::from(args.topics)));
    report.param("subscribers", Value::Int(u64::from(args.subscribers)));
    report.param("resetters", Value::Int(u64::from(args.resetters)));
    report.param("fighters", Value::Int(u64::from(args.fighters)));
    report.param("publishers", Value::Int(u64::from(shared.publishers())));
    report.param("will_clients", Value::Int(u64::from(args.will_clients)));
    report.param(
        "retained_topics",
        Value::Int(u64::from(args.retained_topics)),
    );
    report.param("seed", Value::Int(shared.seed));
    machine_note(&mut report);

    let ph = locked(&shared.phases);
    let secs = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) if b >= a => (b - a) as f64 / 1e9,
        _ => 0.0,
    };
    report.float("load_s", "load (s)", secs(ph.started_ns, ph.stopped_ns), 1);
    report.float(
        "drain_s",
        "stop to drained (s)",
        secs(ph.stopped_ns, ph.drained_ns),
        1,
    );
    report.float(
        "wills_wait_s",
        "drained to everybody leaving (s)",
        secs(ph.drained_ns, ph.left_ns),
        1,
    );

    let mut sent = vec![0u64; shared.publishers() as usize];
    for (p, s) in sent.iter_mut().zip(&shared.sent) {
        *p = s.load(Ordering::Acquire);
    }
    let subs: Vec<(u32, &Deliveries)> = all.subs.iter().map(|s| (s.topic, &s.deliveries)).collect();
    let qos = tally(shared.topics(), &sent, &subs);
    for (q, t) in qos.iter().enumerate() {
        let what = match q {
            0 => "written",
            1 => "PUBACKed",
            _ => "PUBRECed",
        };
        report.int(
            &format!("q{q}_sent"),
            &format!("QoS {q} sent ({what})"),
            t.sent,
        );
        report.int(
            &format!("q{q}_expected"),
            &format!("QoS {q} deliveries expected"),
            t.expected,
        );
        report.int(
            &format!("q{q}_received"),
            &format!("QoS {q} received"),
            t.received,
        );
        report.int(&format!("q{q}_lost"), &format!("QoS {q} lost"), t.lost);
        report.int(
            &format!("q{q}_duplicates"),
            &format!("QoS {q} duplicates"),
            t.duplicates,
        );
    }
    let stale: u64 = all.subs.iter().map(|s| s.stale).sum();
    let foreign: u64 = all.subs.iter().map(|s| s.deliveries.foreign()).sum();
    let qos_mismatch: u64 = all.subs.iter().map(|s| s.qos_mismatch).sum();
    let redelivered: u64 = all.subs.iter().map(|s| s.qos2_redelivered).sum();
    report.int("qos_mismatch", "delivered at another QoS", qos_mismatch);
    report.int(
        "qos2_resent_pending",
        "QoS 2 resent with its id pending (acked, not redelivered)",
        redelivered,
    );
    let watcher_stale = all.watcher.as_ref().map_or(0, |w| w.stale + w.foreign);
    if stale + foreign + watcher_stale > 0 {
        report.int(
            "stale",
            "deliveries from an earlier run or unstamped",
            stale + foreign + watcher_stale,
        );
    }

    let mut pub_stats = ConnStats::default();
    let (mut refused, mut unacked, mut unexpected, mut pub_resets) = (0, 0, 0, 0);
    for p in &all.pubs {
        pub_stats.merge(&p.stats);
        refused += p.refused;
        unacked += p.unacked;
        unexpected += p.unexpected_acks;
        pub_resets += p.resets;
        if let Some(e) = &p.error {
            report.note(format!("a QoS {} publisher: {e}", p.qos));
        }
    }
    report.int("publisher_resets", "publisher resets (RST)", pub_resets);
    report.int(
        "publishes_refused",
        "publishes refused (reason >= 0x80)",
        refused,
    );
    report.int(
        "publishes_unacked",
        "QoS 1/2 publishes never acknowledged",
        unacked,
    );
    if unexpected > 0 {
        report.int(
            "acks_unexpected",
            "acks for no message in flight",
            unexpected,
        );
    }

    let mut by_role: [ConnStats; 3] = Default::default();
    for s in &all.subs {
        let i = match s.role {
            Role::Steady => 0,
            Role::Reset => 1,
            Role::Fight => 2,
        };
        by_role[i].merge(&s.stats);
    }
    let mut subs_total = ConnStats::default();
    for r in &by_role {
        subs_total.merge(r);
    }
    report.int("resets", "subscriber resets (RST)", by_role[1].resets);
    report.int("takeovers", "take-overs", by_role[2].takeovers);
    report.int(
        "takeovers_refused",
        "take-overs refused by the broker",
        by_role[2].takeovers_refused,
    );
    report.int(
        "takeover_old_got_0x8e",
        "old connection got DISCONNECT 0x8E (v5 ids)",
        by_role[2].old_got_8e,
    );
    report.int(
        "takeover_old_not_closed",
        "old connection left open by a take-over",
        by_role[2].old_not_closed,
    );
    report.int(
        "reconnects",
        "reconnects (subscribers and publishers)",
        subs_total.reconnects + pub_stats.reconnects,
    );
    let watcher = all.watcher.as_ref();
    let sessions_lost = subs_total.sessions_lost
        + pub_stats.sessions_lost
        + watcher.map_or(0, |w| w.stats.sessions_lost);
    report.int("sessions_lost", "sessions lost on reconnect", sessions_lost);
    let mut ended = subs_total.ended.clone();
    ended.merge(&pub_stats.ended);
    if let Some(w) = watcher {
        ended.merge(&w.stats.ended);
    }
    ended.report(&mut report, "connections_ended_by_broker");
    let mut connect_failures = subs_total.connect_failures.clone();
    connect_failures.merge(&pub_stats.connect_failures);
    connect_failures.report(&mut report, "reconnect_attempts");
    let gave_up = subs_total.gave_up + pub_stats.gave_up;

    let wills = shared.book().summary();
    report.int("wills_expected", "wills expected", wills.expected);
    report.int("wills_received", "wills received", wills.received);
    report.int("wills_missing", "wills missing", wills.missing);
    report.int("wills_duplicates", "wills duplicated", wills.duplicates);
    report.int(
        "wills_unexpected",
        "wills after a normal DISCONNECT",
        wills.unexpected,
    );
    report.int(
        "wills_unannounced",
        "wills of connections the broker ended",
        wills.unannounced,
    );
    let w = &all.waves;
    report.int("silent_clients", "silent will clients", w.silent);
    report.int("polite_clients", "polite will clients", w.polite);
    report.int(
        "silent_closed",
        "silent clients closed by the broker",
        w.closed,
    );
    report.int(
        "silent_not_closed",
        "silent clients never closed",
        w.not_closed,
    );
    report.int(
        "silent_closed_early",
        "closed before 1.5 x Keep Alive",
        w.closed_early,
    );
    match w.close_delay.summary() {
        Some(s) => {
            for (name, v) in [("min", s.min), ("p50", s.p50), ("max", s.max)] {
                report.float(
                    &format!("silent_close_{name}_ms"),
                    &format!("CONNECT to close, {name} (ms)"),
                    v as f64 / 1e6,
                    1,
                );
            }
        }
        None => report.text("silent_close_ms", "CONNECT to close", "n/a: none closed"),
    }
    w.failures.report(&mut report, "will_clients");

    let retained = all.retained.as_ref();
    if let Some(r) = retained {
        report.int("retained_updates", "retained set", r.updates);
        report.int("retained_clears", "retained cleared", r.clears);
        report.int("retained_checks", "retained checks (one topic)", r.checks);
        report.int(
            "retained_wildcard_checks",
            "retained checks (all topics)",
            r.wildcard_checks,
        );
        report.int("retained_wrong", "retained checks wrong", r.wrong);
        report.int("retained_stray", "stray messages at the checker", r.stray);
        for e in &r.examples {
            report.note(e.clone());
        }
    }

    let canary = all.canary.as_ref();
    let max_gap = all.subs.iter().map(|s| s.max_gap_ns).max().unwrap_or(0);
    let sub_stalls: u64 = all.subs.iter().map(|s| s.stalls).sum();
    if let Some(c) = canary {
        report.int("canary_round_trips", "canary round trips", c.round_trips);
        report.latency("canary_rtt", "canary round trip", c.rtt.summary(), true);
        report.int("canary_lost", "canary round trips lost", c.lost);
        report.float(
            "delivery_gap_max_ms",
            "longest time a subscriber got nothing (ms)",
            max_gap as f64 / 1e6,
            1,
        );
        report.int(
            "subscriber_stalls",
            &format!("subscriber gaps > {} ms", args.stall_ms),
            sub_stalls,
        );
        report.int(
            "stalls",
            &format!("stalls (round trip > {} ms)", args.stall_ms),
            c.stalls,
        );
        for (at, ms) in &c.examples {
            report.note(format!(
                "stall: a canary round trip of {ms:.1} ms at {at:.1} s"
            ));
        }
    }

    if let (Some(cpu), Some((own, broker))) = (ph.cpu, ph.cpu_end) {
        cpu.report_until(&mut report, own, broker);
    }

    let mut findings = Findings {
        qos,
        wills,
        stalls: canary.map_or(0, |c| c.stalls) + sub_stalls,
        canary_lost: canary.map_or(0, |c| c.lost),
        sessions_lost,
        retained_wrong: retained.map_or(0, |r| r.wrong),
        unacked,
        qos_mismatch,
        old_not_closed: by_role[2].old_not_closed,
        incomplete: Vec::new(),
    };
    if gave_up > 0 {
        findings
            .incomplete
            .push(format!("{gave_up} clients could not reconnect"));
    }
    if let Some(e) = retained.and_then(|r| r.error.as_ref()) {
        findings
            .incomplete
            .push(format!("retained churn ended early: {e}"));
    }
    if let Some(e) = canary.and_then(|c| c.error.as_ref()) {
        findings
            .incomplete
            .push(format!("the canary ended early: {e}"));
    }
    let failed = failures(&findings);
    if failed.is_empty() {
        report.text("verdict", "verdict", "pass");
    } else {
        report.text("verdict", "verdict", format!("FAIL: {}", failed.join("; ")));
        report.failed = true;
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deliveries(publishers: u32, pairs: &[(u32, u64)]) -> Deliveries {
        let mut d = Deliveries::new(publishers);
        let mut payload = [0u8; STAMP_LEN];
        for &(publisher, sequence) in pairs {
            Stamp {
                publisher,
                sequence,
                sent_ns: 1,
            }
            .write(&mut payload);
            d.record(&payload);
        }
        d
    }

    fn soak_args(args: &[&str]) -> SoakArgs {
        use clap::Parser;
        let mut all = vec!["ringmq-bench", "soak"];
        all.extend_from_slice(args);
        match crate::cli::Cli::try_parse_from(all).map(|c| c.command) {
            Ok(crate::cli::Command::Soak(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flags_validate_and_bound_the_connections() {
        let a = soak_args(&[]);
        assert_eq!(a.validate(), Ok(()));
        assert_eq!(a.duration_secs, 1800.0);
        // 48 persistent connections (a fighter's two) and 12 publishers,
        // doubled for the session-ending ones; 3 waves of 20 will clients;
        // watcher, retained pair, canary pair.
        assert_eq!(a.connections_bound(), 2 * (48 + 12) + 60 + 5);
        let flag = |args: &[&str]| soak_args(args).validate().map_err(|e| e.flag);
        assert_eq!(flag(&["--will-clients", "2000"]), Err("subscribers"));
        assert_eq!(flag(&["--resetters", "1000"]), Err("subscribers"));
        assert_eq!(flag(&["--duration-secs", "0"]), Err("duration-secs"));
        assert_eq!(flag(&["--publisher-reset-secs", "0"]), Ok(()));
        assert_eq!(flag(&["--rate", "0"]), Err("rate"));
        assert_eq!(flag(&["-T", "0"]), Err("topics"));
        assert_eq!(flag(&["--payload", "15"]), Err("payload"));
        assert_eq!(flag(&["--takeover-ms", "10"]), Err("takeover-ms"));
        assert_eq!(flag(&["--topic-prefix", "a/#"]), Err("topic-prefix"));
        assert_eq!(
            flag(&["--subscribers", "0", "--resetters", "0", "--fighters", "0"]),
            Err("subscribers")
        );
        assert_eq!(flag(&["--retained-topics", "0"]), Ok(()));
    }

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut r = Rng::new(1);
        for _ in 0..1000 {
            assert!(r.below(10) < 10);
            let v = r.between(5, 8);
            assert!((5..=8).contains(&v));
            let t = r.around(1000);
            assert!((500..=1500).contains(&t));
        }
        assert_eq!(r.below(0), 0);
        assert_eq!(r.between(9, 3), 9);
    }

    #[test]
    fn qos2_inbox_delivers_once_until_released() {
        let mut inbox = Qos2Inbox::default();
        assert!(inbox.receive(5), "first PUBLISH is delivered");
        assert!(!inbox.receive(5), "resent before PUBREL: not again");
        assert_eq!(inbox.pending(), 1);
        assert!(inbox.release(5));
        assert!(!inbox.release(5), "a PUBREL resent after PUBCOMP");
        assert!(inbox.receive(5), "the id reused for a new message");
    }

    #[test]
    fn tally_counts_per_qos_and_subscriber() {
        let topics = 2;
        // Publishers: QoS 0 topics 0/1 = 0/1, QoS 1 = 2/3, QoS 2 = 4/5.
        let sent = [10, 10, 5, 5, 3, 3];
        // Subscriber on topic 0: QoS 0 lost 2, QoS 1 complete with a
        // duplicate, QoS 2 lost one.
        let a = deliveries(
            6,
            &[
                (0, 0),
                (0, 1),
                (0, 2),
                (0, 3),
                (0, 4),
                (0, 5),
                (0, 6),
                (0, 7),
                (2, 0),
                (2, 1),
                (2, 2),
                (2, 3),
                (2, 4),
                (2, 4),
                (4, 0),
                (4, 2),
            ],
        );
        // Subscriber on topic 1: QoS 2 duplicated, QoS 1 nothing.
        let b = deliveries(6, &[(5, 0), (5, 1), (5, 2), (5, 2)]);
        let t = tally(topics, &sent, &[(0, &a), (1, &b)]);
        assert_eq!(
            t[0],
            QosTally {
                sent: 20,
                expected: 20,
                received: 8,
                duplicates: 0,
                lost: 12,
            }
        );
        assert_eq!(
            t[1],
            QosTally {
                sent: 10,
                expected: 10,
                received: 6,
                duplicates: 1,
                lost: 5,
            }
        );
        assert_eq!(
            t[2],
            QosTally {
                sent: 6,
                expected: 6,
                received: 6,
                duplicates: 1,
                lost: 1,
            }
        );
    }

    #[test]
    fn tally_of_nothing_sent_loses_nothing() {
        let d = deliveries(3, &[]);
        let t = tally(1, &[0, 0, 0], &[(0, &d)]);
        assert_eq!(t, [QosTally::default(); 3]);
    }

    #[test]
    fn will_book_sorts_every_will() {
        let mut b = WillBook::default();
        for k in 0..4 {
            b.expect(k);
        }
        b.forbid(10);
        b.receive(0);
        b.receive(1);
        b.receive(1);
        b.receive(10);
        b.receive(20);
        assert_eq!(b.outstanding(), 2);
        assert!(b.has(1) && b.has(20) && !b.has(2));
        assert_eq!(
            b.summary(),
            WillSummary {
                expected: 4,
                received: 2,
                missing: 2,
                duplicates: 1,
                unexpected: 1,
                unannounced: 1,
            }
        );
        b.receive(2);
        b.receive(3);
        assert_eq!(b.outstanding(), 0);
        assert_eq!(b.summary().missing, 0);
    }

    #[test]
    fn retained_mismatch_rules() {
        let model = [Some(3), None, Some(7), None];
        let all = [0, 1, 2, 3];
        let mut seen = HashMap::new();
        seen.insert(0, Some(3));
        seen.insert(2, Some(7));
        assert!(retained_mismatches(&model, &all, &seen).is_empty());
        // Stale version, a cleared topic delivered, an empty payload.
        seen.insert(2, Some(6));
        seen.insert(1, Some(1));
        seen.insert(3, None);
        assert_eq!(retained_mismatches(&model, &all, &seen), vec![1, 2, 3]);
        // Missing: set, but nothing came.
        let seen = HashMap::new();
        assert_eq!(retained_mismatches(&model, &all, &seen), vec![0, 2]);
        // Only the checked topics count.
        assert!(retained_mismatches(&model, &[1], &seen).is_empty());
    }

    #[test]
    fn canary_ids_land_on_different_shards_of_two() {
        // FNV-1a 64 reference values.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let (p, s) = canary_ids("rb");
        assert_ne!(fnv1a(p.as_bytes()) % 2, fnv1a(s.as_bytes()) % 2);
        assert!(p.starts_with("rb-soak-canary") && s.ends_with("-sub"));
    }

    #[test]
    fn outgoing_qos1_and_qos2_flows() {
        let mut o = Outgoing::default();
        let a = o.push(0, 1).expect("id");
        let b = o.push(1, 1).expect("id");
        // QoS 1: PUBACK accepts; one with a failure code refuses.
        assert_eq!(o.on_packet(&puback(a)), None);
        let mut refused = PubAck {
            packet_id: b,
            code: ReasonCode::QUOTA_EXCEEDED,
            properties: Properties::default(),
        };
        assert_eq!(o.on_packet(&Packet::PubAck(refused.clone())), None);
        assert_eq!((o.accepted, o.refused, o.flights.len()), (1, 1, 0));
        refused.packet_id = 999;
        o.on_packet(&Packet::PubAck(refused));
        assert_eq!(o.unexpected, 1);

        // QoS 2: PUBREC accepts once (a repeated PUBREC only gets its
        // PUBREL again), PUBCOMP ends it.
        let c = o.push(2, 1).expect("id");
        assert_eq!(o.on_packet(&pubrec(c)), Some(pubrel(c)));
        assert_eq!(o.on_packet(&pubrec(c)), Some(pubrel(c)));
        assert_eq!(o.accepted, 2);
        assert!(o.flights[0].released);
        assert_eq!(o.on_packet(&pubcomp(c)), None);
        assert!(o.flights.is_empty());
        assert_eq!(o.on_packet(&pubcomp(c)), None);
        assert_eq!(o.unexpected, 2, "PUBCOMP for nothing in flight");
        assert_eq!(o.pool.used(), 0, "every id released");
    }

    #[test]
    fn verdict_lists_each_failure() {
        assert!(failures(&Findings::default()).is_empty());
        let mut f = Findings::default();
        // QoS 0 loss and QoS 1 duplicates are allowed.
        f.qos[0].lost = 100;
        f.qos[1].duplicates = 7;
        assert!(failures(&f).is_empty());
        f.qos[1].lost = 1;
        f.qos[2].duplicates = 2;
        f.wills.missing = 3;
        f.stalls = 1;
        f.incomplete.push("the canary ended early: x".into());
        assert_eq!(
            failures(&f),
            vec![
                "1 QoS 1 messages lost".to_string(),
                "2 QoS 2 messages duplicated".to_string(),
                "3 wills missing".to_string(),
                "1 stalls (no delivery or canary round trip within the limit)".to_string(),
                "the canary ended early: x".to_string(),
            ]
        );
    }
}
