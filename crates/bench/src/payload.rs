//! What a pubsub message carries and how deliveries are accounted: the
//! 16-byte stamp at the front of every payload, per-publisher sequence
//! tracking (lost and duplicated messages), the topic layout (which
//! publisher writes to which topic, which subscriber reads which topics)
//! and the route probes that open a run across cluster nodes.
//!
//! Owns: pure maths only; no IO, no clock.
//!
//! Invariants:
//! - The stamp is bytes 0..8: publisher index (top [`PUBLISHER_BITS`]
//!   bits) and sequence number (low [`SEQUENCE_BITS`] bits), big endian;
//!   bytes 8..16: the send time in nanoseconds of `CLOCK_MONOTONIC`, big
//!   endian. CLOCK_MONOTONIC is system-wide, so publisher and subscriber
//!   may even run in different processes on the same machine.
//! - A [`SeqTracker`] counts every delivery once as `delivered`; a
//!   sequence number seen before also counts as a duplicate. `distinct` is
//!   therefore `delivered - duplicates`, and lost = expected - distinct.
//! - A route probe is [`PROBE_LEN`] bytes, shorter than a stamp, so it is
//!   never taken for a message (nor a message for a probe).

/// Smallest payload that can carry a stamp.
pub const STAMP_LEN: usize = 16;

/// Bits of the stamp's first word that hold the publisher index.
pub const PUBLISHER_BITS: u32 = 24;

/// Bits of the stamp's first word that hold the sequence number.
pub const SEQUENCE_BITS: u32 = 64 - PUBLISHER_BITS;

/// Most publishers one run can tell apart.
pub const MAX_PUBLISHERS: u32 = 1 << PUBLISHER_BITS;

const SEQUENCE_MASK: u64 = (1 << SEQUENCE_BITS) - 1;

/// The stamp carried at the front of a payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Index of the publisher (0-based, below [`MAX_PUBLISHERS`]).
    pub publisher: u32,
    /// Per-publisher sequence number, starting at 0 (wraps at 2^40).
    pub sequence: u64,
    /// Send time, nanoseconds of CLOCK_MONOTONIC.
    pub sent_ns: u64,
}

impl Stamp {
    /// Write the stamp into `out[..16]`. `out` must hold at least
    /// [`STAMP_LEN`] bytes (argument validation guarantees it).
    #[inline]
    pub fn write(&self, out: &mut [u8]) {
        let word = (u64::from(self.publisher) << SEQUENCE_BITS) | (self.sequence & SEQUENCE_MASK);
        out[..8].copy_from_slice(&word.to_be_bytes());
        out[8..16].copy_from_slice(&self.sent_ns.to_be_bytes());
    }

    /// Read a stamp from the front of a payload; `None` if it is shorter
    /// than [`STAMP_LEN`] (not one of ours).
    #[inline]
    pub fn read(payload: &[u8]) -> Option<Stamp> {
        let word = u64::from_be_bytes(payload.get(..8)?.try_into().ok()?);
        let sent_ns = u64::from_be_bytes(payload.get(8..16)?.try_into().ok()?);
        Some(Stamp {
            publisher: (word >> SEQUENCE_BITS) as u32,
            sequence: word & SEQUENCE_MASK,
            sent_ns,
        })
    }
}

/// Bytes of a route probe: [`PROBE_MAGIC`], then the publisher index
/// (big endian).
pub const PROBE_LEN: usize = PROBE_MAGIC.len() + 4;

/// The first bytes of a route probe.
pub const PROBE_MAGIC: &[u8; 8] = b"rb-probe";

// A probe must never read as a stamp.
const _: () = assert!(PROBE_LEN < STAMP_LEN);

/// The payload of publisher `publisher`'s route probe.
pub fn probe_payload(publisher: u32) -> [u8; PROBE_LEN] {
    let mut out = [0u8; PROBE_LEN];
    out[..PROBE_MAGIC.len()].copy_from_slice(PROBE_MAGIC);
    out[PROBE_MAGIC.len()..].copy_from_slice(&publisher.to_be_bytes());
    out
}

/// The publisher a route probe came from; `None` if `payload` is not one.
#[inline]
pub fn read_probe(payload: &[u8]) -> Option<u32> {
    if payload.len() != PROBE_LEN || !payload.starts_with(PROBE_MAGIC) {
        return None;
    }
    let index = payload[PROBE_MAGIC.len()..].try_into().ok()?;
    Some(u32::from_be_bytes(index))
}

/// The route check of one subscriber: which of the publishers whose topic
/// it reads it has heard a probe from.
#[derive(Clone, Debug)]
pub struct Heard {
    /// Per publisher: still to be heard.
    missing: Vec<bool>,
    left: u32,
}

impl Heard {
    /// Nothing heard yet by subscriber `s` of `layout`.
    pub fn new(layout: &Layout, s: u32) -> Heard {
        let missing: Vec<bool> = (0..layout.publishers)
            .map(|p| layout.reads(s, layout.topic_of_publisher(p)))
            .collect();
        let left = missing.iter().filter(|&&m| m).count() as u32;
        Heard { missing, left }
    }

    /// Note a probe from `publisher`; true if it was the last one missing.
    pub fn probe(&mut self, publisher: u32) -> bool {
        match self.missing.get_mut(publisher as usize) {
            Some(m) if *m => {
                *m = false;
                self.left -= 1;
                self.left == 0
            }
            _ => false,
        }
    }

    /// Every publisher this subscriber reads has been heard.
    pub fn complete(&self) -> bool {
        self.left == 0
    }
}

/// Which sequence numbers of one publisher arrived, as a growable bitset
/// (one bit per message: 10 million messages cost 1.25 MB).
#[derive(Clone, Debug, Default)]
pub struct SeqTracker {
    bits: Vec<u64>,
    delivered: u64,
    duplicates: u64,
    reordered: u64,
    highest: Option<u64>,
    /// Change of [`SeqTracker::gaps`] since the last
    /// [`Deliveries::take_gap_delta`] (the live loss estimate).
    gap_delta: i64,
}

/// Largest sequence number a tracker accepts (2^31 messages, a 256 MiB
/// bitset at most); beyond it deliveries are counted but not deduplicated,
/// so a corrupt stamp cannot allocate without bound.
pub const MAX_TRACKED_SEQUENCE: u64 = (1 << 31) - 1;

impl SeqTracker {
    /// An empty tracker.
    pub fn new() -> SeqTracker {
        SeqTracker::default()
    }

    /// Count one delivery of `sequence`; true if it was seen before.
    #[inline]
    pub fn record(&mut self, sequence: u64) -> bool {
        self.delivered += 1;
        if sequence > MAX_TRACKED_SEQUENCE {
            return false;
        }
        let word = (sequence / 64) as usize;
        let bit = 1u64 << (sequence % 64);
        if word >= self.bits.len() {
            let len = (word + 1).next_power_of_two().max(16);
            self.bits.resize(len, 0);
        }
        let seen = self.bits[word] & bit != 0;
        self.bits[word] |= bit;
        if seen {
            self.duplicates += 1;
            return true;
        }
        match self.highest {
            // Later than a message already delivered: out of order, and it
            // fills a gap.
            Some(h) if sequence < h => {
                self.reordered += 1;
                self.gap_delta -= 1;
            }
            Some(h) => self.gap_delta += (sequence - h - 1) as i64,
            None => self.gap_delta += sequence as i64,
        }
        self.highest = Some(self.highest.map_or(sequence, |h| h.max(sequence)));
        false
    }

    /// Deliveries of a new sequence number below the highest one already
    /// seen: messages that overtook it (per publisher, so across topics
    /// too only if the publisher wrote one topic, as in pubsub).
    pub fn reordered(&self) -> u64 {
        self.reordered
    }

    /// Add the deliveries another member of a shared subscription group
    /// counted for the same publisher: a sequence number both saw is a
    /// duplicate of the group (the group as one subscriber).
    pub fn absorb(&mut self, other: &SeqTracker) {
        if other.bits.len() > self.bits.len() {
            self.bits.resize(other.bits.len(), 0);
        }
        let mut overlap = 0u64;
        for (mine, theirs) in self.bits.iter_mut().zip(&other.bits) {
            overlap += u64::from((*mine & theirs).count_ones());
            *mine |= theirs;
        }
        self.delivered += other.delivered;
        self.duplicates += other.duplicates + overlap;
        self.reordered += other.reordered;
        self.highest = match (self.highest, other.highest) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    /// Deliveries counted, duplicates included.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Deliveries of a sequence number already seen.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Different sequence numbers seen.
    pub fn distinct(&self) -> u64 {
        self.delivered - self.duplicates
    }

    /// Highest sequence number seen.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    /// Sequence numbers below the highest one seen that never arrived: the
    /// loss estimate when the number sent is unknown (external publisher).
    pub fn gaps(&self) -> u64 {
        self.highest
            .map_or(0, |h| (h + 1).saturating_sub(self.distinct()))
    }
}

/// Delivery accounting of one subscriber: a tracker per publisher index.
#[derive(Clone, Debug)]
pub struct Deliveries {
    trackers: Vec<SeqTracker>,
    foreign: u64,
    max_publishers: u32,
}

/// Publisher indices accepted when the publishers are not ours.
pub const EXTERNAL_PUBLISHERS: u32 = 1024;

impl Default for Deliveries {
    fn default() -> Deliveries {
        Deliveries::new(EXTERNAL_PUBLISHERS)
    }
}

impl Deliveries {
    /// Nothing delivered yet; stamps naming a publisher index at or above
    /// `max_publishers` count as foreign (they are not from this run, and
    /// a bogus index must not allocate trackers up to it).
    pub fn new(max_publishers: u32) -> Deliveries {
        Deliveries {
            trackers: Vec::new(),
            foreign: 0,
            max_publishers,
        }
    }

    /// Account one delivered payload; returns its stamp, or `None` for a
    /// payload without one (counted as foreign).
    #[inline]
    pub fn record(&mut self, payload: &[u8]) -> Option<Stamp> {
        let Some(stamp) = Stamp::read(payload).filter(|s| s.publisher < self.max_publishers) else {
            self.foreign += 1;
            return None;
        };
        let index = stamp.publisher as usize;
        if index >= self.trackers.len() {
            self.trackers.resize_with(index + 1, SeqTracker::new);
        }
        self.trackers[index].record(stamp.sequence);
        Some(stamp)
    }

    /// How much the loss estimate (sequence gaps) moved since the last
    /// call: positive for newly skipped sequence numbers, negative for
    /// gaps filled late.
    pub fn take_gap_delta(&mut self) -> i64 {
        self.trackers
            .iter_mut()
            .map(|t| std::mem::take(&mut t.gap_delta))
            .sum()
    }

    /// Add another subscriber's deliveries as if one subscriber had seen
    /// them all (the members of one shared subscription group).
    pub fn absorb(&mut self, other: &Deliveries) {
        if other.trackers.len() > self.trackers.len() {
            self.trackers
                .resize_with(other.trackers.len(), SeqTracker::new);
        }
        for (mine, theirs) in self.trackers.iter_mut().zip(&other.trackers) {
            mine.absorb(theirs);
        }
        self.foreign += other.foreign;
    }

    /// Payloads without a stamp of this run (too short, or naming a
    /// publisher index out of range).
    pub fn foreign(&self) -> u64 {
        self.foreign
    }

    /// The tracker of one publisher, if it delivered anything.
    pub fn tracker(&self, publisher: u32) -> Option<&SeqTracker> {
        self.trackers.get(publisher as usize)
    }

    /// Totals over all publishers.
    pub fn totals(&self) -> DeliveryTotals {
        let mut t = DeliveryTotals::default();
        for tracker in &self.trackers {
            t.delivered += tracker.delivered();
            t.duplicates += tracker.duplicates();
            t.distinct += tracker.distinct();
            t.gaps += tracker.gaps();
            t.reordered += tracker.reordered();
        }
        t
    }
}

/// Sums over trackers (and over subscribers once added up).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryTotals {
    /// Every delivery, duplicates included.
    pub delivered: u64,
    /// Deliveries of a (publisher, sequence) already seen by that subscriber.
    pub duplicates: u64,
    /// Different (publisher, sequence) pairs per subscriber.
    pub distinct: u64,
    /// Missing sequence numbers below each publisher's highest one.
    pub gaps: u64,
    /// New sequence numbers that arrived after a higher one of the same
    /// publisher.
    pub reordered: u64,
}

impl DeliveryTotals {
    /// Add another subscriber's totals.
    pub fn add(&mut self, other: DeliveryTotals) {
        self.delivered += other.delivered;
        self.duplicates += other.duplicates;
        self.distinct += other.distinct;
        self.gaps += other.gaps;
        self.reordered += other.reordered;
    }

    /// Messages expected but never delivered (0 if more arrived).
    pub fn lost(&self, expected: u64) -> u64 {
        expected.saturating_sub(self.distinct)
    }
}

/// How publishers and subscribers map onto topics.
///
/// Publisher `p` writes to topic `p % topics`. Without a wildcard, when
/// there are at least as many subscribers as topics, subscriber `s` reads
/// topic `s % topics`; with fewer subscribers than topics, subscriber `s`
/// reads every topic `t` with `t % subscribers == s`. Either way every
/// topic has a reader when there is at least one subscriber. With a
/// wildcard every subscriber reads every topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Number of publishers.
    pub publishers: u32,
    /// Number of subscribers.
    pub subscribers: u32,
    /// Number of topics (at least 1).
    pub topics: u32,
    /// Subscribers use one wildcard filter covering every topic.
    pub wildcard: bool,
    /// Every subscription is in one shared subscription group
    /// (`$share/GROUP/...`): each message reaches one of its readers.
    pub shared: bool,
}

impl Layout {
    /// The topic publisher `p` writes to.
    pub fn topic_of_publisher(&self, p: u32) -> u32 {
        p % self.topics.max(1)
    }

    /// Whether subscriber `s` reads topic `t`.
    pub fn reads(&self, s: u32, t: u32) -> bool {
        if self.wildcard {
            return true;
        }
        let topics = self.topics.max(1);
        if self.subscribers >= topics {
            t == s % topics
        } else {
            t % self.subscribers == s
        }
    }

    /// The topics subscriber `s` subscribes to (without a wildcard).
    pub fn topics_of_subscriber(&self, s: u32) -> Vec<u32> {
        (0..self.topics.max(1))
            .filter(|&t| self.reads(s, t))
            .collect()
    }

    /// How many subscribers receive each message published on topic `t`.
    pub fn fan_out(&self, t: u32) -> u64 {
        if self.shared {
            return u64::from(self.subscribers > 0);
        }
        if self.wildcard {
            return u64::from(self.subscribers);
        }
        let topics = self.topics.max(1);
        if self.subscribers >= topics {
            // Subscribers s with s % topics == t.
            let full = u64::from(self.subscribers / topics);
            full + u64::from(t < self.subscribers % topics)
        } else {
            u64::from(self.subscribers > 0)
        }
    }

    /// Deliveries expected when publisher `p` sent `sent` messages.
    pub fn expected(&self, p: u32, sent: u64) -> u64 {
        sent * self.fan_out(self.topic_of_publisher(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stamp_layout_is_fixed() {
        let mut buf = [0xAAu8; 20];
        Stamp {
            publisher: 3,
            sequence: 0x1_0000_0002,
            sent_ns: 0x0102_0304_0506_0708,
        }
        .write(&mut buf);
        assert_eq!(
            buf,
            [
                0x00, 0x00, 0x03, 0x01, 0x00, 0x00, 0x00, 0x02, // publisher 3, seq
                0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // time
                0xAA, 0xAA, 0xAA, 0xAA, // untouched filler
            ]
        );
    }

    #[test]
    fn short_payload_has_no_stamp() {
        assert_eq!(Stamp::read(&[0u8; 15]), None);
        assert!(Stamp::read(&[0u8; 16]).is_some());
        let mut d = Deliveries::new(4);
        assert!(d.record(b"hello").is_none());
        assert_eq!(d.foreign(), 1);
        assert_eq!(d.totals(), DeliveryTotals::default());
    }

    #[test]
    fn tracker_counts_duplicates_and_gaps() {
        let mut t = SeqTracker::new();
        assert!(!t.record(0));
        assert!(!t.record(1));
        assert!(t.record(1));
        assert!(!t.record(5));
        assert!(!t.record(4));
        assert!(t.record(0));
        assert_eq!(t.delivered(), 6);
        assert_eq!(t.duplicates(), 2);
        assert_eq!(t.distinct(), 4);
        assert_eq!(t.highest(), Some(5));
        assert_eq!(t.gaps(), 2, "2 and 3 never arrived");
    }

    #[test]
    fn tracker_ignores_absurd_sequences_for_dedup() {
        let mut t = SeqTracker::new();
        assert!(!t.record(MAX_TRACKED_SEQUENCE + 1));
        assert!(!t.record(MAX_TRACKED_SEQUENCE + 1));
        assert_eq!(t.delivered(), 2);
        assert!(t.bits.is_empty());
    }

    #[test]
    fn publisher_index_out_of_range_is_foreign() {
        let mut d = Deliveries::new(3);
        let mut payload = [0u8; 16];
        Stamp {
            publisher: MAX_PUBLISHERS - 1,
            sequence: 0,
            sent_ns: 0,
        }
        .write(&mut payload);
        assert!(d.record(&payload).is_none());
        assert_eq!(d.foreign(), 1);
        assert!(d.trackers.is_empty(), "no tracker allocated");
        Stamp {
            publisher: 2,
            sequence: 0,
            sent_ns: 0,
        }
        .write(&mut payload);
        assert!(d.record(&payload).is_some());
        assert_eq!(d.totals().delivered, 1);
    }

    #[test]
    fn deliveries_split_by_publisher() {
        let mut d = Deliveries::new(3);
        let mut payload = [0u8; 64];
        for (publisher, sequence) in [(0, 0), (2, 0), (2, 1), (2, 1), (0, 2)] {
            Stamp {
                publisher,
                sequence,
                sent_ns: 7,
            }
            .write(&mut payload);
            let stamp = d.record(&payload).expect("stamped");
            assert_eq!(stamp.sent_ns, 7);
        }
        assert_eq!(d.tracker(0).map(SeqTracker::distinct), Some(2));
        assert_eq!(d.tracker(1).map(SeqTracker::delivered), Some(0));
        assert_eq!(d.tracker(2).map(SeqTracker::duplicates), Some(1));
        let totals = d.totals();
        assert_eq!(
            totals,
            DeliveryTotals {
                delivered: 5,
                duplicates: 1,
                distinct: 4,
                gaps: 1,
                reordered: 0,
            }
        );
        assert_eq!(totals.lost(6), 2);
        assert_eq!(totals.lost(3), 0);
    }

    #[test]
    fn layout_examples() {
        // Fan-in: 4 publishers, 1 topic, 1 subscriber.
        let fan_in = Layout {
            publishers: 4,
            subscribers: 1,
            topics: 1,
            wildcard: false,
            shared: false,
        };
        assert_eq!(fan_in.expected(3, 10), 10);
        // Fan-out: 1 publisher, 1 topic, 5 subscribers.
        let fan_out = Layout {
            publishers: 1,
            subscribers: 5,
            topics: 1,
            wildcard: false,
            shared: false,
        };
        assert_eq!(fan_out.expected(0, 10), 50);
        // Pairs: 3 publishers, 3 topics, 3 subscribers.
        let pairs = Layout {
            publishers: 3,
            subscribers: 3,
            topics: 3,
            wildcard: false,
            shared: false,
        };
        assert_eq!(pairs.topics_of_subscriber(1), vec![1]);
        assert_eq!(pairs.expected(2, 7), 7);
        // Fewer subscribers than topics: 2 subscribers share 5 topics.
        let shared = Layout {
            publishers: 5,
            subscribers: 2,
            topics: 5,
            wildcard: false,
            shared: false,
        };
        assert_eq!(shared.topics_of_subscriber(0), vec![0, 2, 4]);
        assert_eq!(shared.topics_of_subscriber(1), vec![1, 3]);
        // Wildcard: everybody reads everything.
        let wild = Layout {
            wildcard: true,
            ..shared
        };
        assert_eq!(wild.expected(4, 3), 6);
        // No subscribers: nothing expected.
        let none = Layout {
            subscribers: 0,
            ..shared
        };
        assert_eq!(none.expected(0, 100), 0);
        // One shared group: each message reaches one member.
        let group = Layout {
            shared: true,
            ..fan_out
        };
        assert_eq!(group.expected(0, 10), 10);
    }

    #[test]
    fn reordering_and_the_live_gap_estimate() {
        let mut d = Deliveries::new(2);
        let msg = |seq: u64| {
            let mut b = [0u8; 16];
            Stamp {
                publisher: 1,
                sequence: seq,
                sent_ns: 0,
            }
            .write(&mut b);
            b
        };
        for seq in [0, 1, 4, 2, 2, 5] {
            d.record(&msg(seq));
        }
        // 4 skipped 2 and 3 (+2); 2 filled one (-1); 5 follows 4.
        assert_eq!(d.take_gap_delta(), 1);
        assert_eq!(d.take_gap_delta(), 0, "taken");
        let t = d.totals();
        assert_eq!((t.reordered, t.duplicates, t.gaps), (1, 1, 1));
        d.record(&msg(3));
        assert_eq!(d.take_gap_delta(), -1);
        assert_eq!(d.totals().reordered, 2);
    }

    #[test]
    fn members_of_a_shared_group_add_up_as_one_subscriber() {
        let mut a = SeqTracker::new();
        let mut b = SeqTracker::new();
        for seq in [0, 2, 4] {
            a.record(seq);
        }
        for seq in [1, 3, 4] {
            b.record(seq);
        }
        a.absorb(&b);
        assert_eq!(a.delivered(), 6);
        assert_eq!(a.duplicates(), 1, "4 reached both members");
        assert_eq!(a.distinct(), 5);
        assert_eq!(a.gaps(), 0);
    }

    #[test]
    fn probes_are_not_stamps() {
        let probe = probe_payload(0x0102_0304);
        assert_eq!(&probe[..8], b"rb-probe");
        assert_eq!(&probe[8..], &[1, 2, 3, 4]);
        assert_eq!(read_probe(&probe), Some(0x0102_0304));
        assert_eq!(Stamp::read(&probe), None);
        let mut d = Deliveries::new(4);
        assert!(d.record(&probe).is_none(), "a probe is no message");
        assert_eq!(read_probe(&probe[..11]), None);
        let mut longer = [0u8; 16];
        longer[..12].copy_from_slice(&probe);
        assert_eq!(
            read_probe(&longer),
            None,
            "a stamped payload is never a probe"
        );
        assert_eq!(read_probe(b"rb-probX\0\0\0\0"), None);
    }

    #[test]
    fn route_check_waits_for_every_publisher_read() {
        // 5 publishers on 5 topics, 2 subscribers: 0 reads 0, 2, 4.
        let layout = Layout {
            publishers: 5,
            subscribers: 2,
            topics: 5,
            wildcard: false,
            shared: false,
        };
        let mut heard = Heard::new(&layout, 0);
        assert!(!heard.complete());
        assert!(!heard.probe(1), "not a topic of this subscriber");
        assert!(!heard.probe(0));
        assert!(!heard.probe(0), "heard twice");
        assert!(!heard.probe(4));
        assert!(!heard.probe(9), "out of range");
        assert!(heard.probe(2), "the last one");
        assert!(heard.complete());
        assert!(!heard.probe(2), "completes once");
        // A subscriber whose topics no publisher writes: nothing to hear.
        let quiet = Layout {
            publishers: 1,
            subscribers: 3,
            topics: 3,
            wildcard: false,
            shared: false,
        };
        assert!(Heard::new(&quiet, 2).complete());
        assert!(!Heard::new(&quiet, 0).complete());
    }

    proptest! {
        #[test]
        fn stamp_round_trips(
            publisher in 0u32..MAX_PUBLISHERS,
            sequence in 0u64..(1 << SEQUENCE_BITS),
            sent_ns: u64,
            extra in 0usize..32,
        ) {
            let stamp = Stamp { publisher, sequence, sent_ns };
            let mut buf = vec![0u8; STAMP_LEN + extra];
            stamp.write(&mut buf);
            prop_assert_eq!(Stamp::read(&buf), Some(stamp));
        }

        /// fan_out agrees with counting `reads` over every subscriber.
        #[test]
        fn fan_out_matches_reads(
            subscribers in 0u32..40,
            topics in 1u32..40,
            wildcard: bool,
        ) {
            let layout = Layout { publishers: 1, subscribers, topics, wildcard, shared: false };
            for t in 0..topics {
                let counted = (0..subscribers).filter(|&s| layout.reads(s, t)).count() as u64;
                prop_assert_eq!(layout.fan_out(t), counted);
                if subscribers > 0 {
                    prop_assert!(counted >= 1, "topic {} has no reader", t);
                }
            }
        }

        /// lost + distinct == expected whenever nothing unexpected arrived.
        #[test]
        fn lost_and_duplicates_add_up(
            sent in 0u64..500,
            deliveries in proptest::collection::vec(0u64..500, 0..800),
        ) {
            let mut t = SeqTracker::new();
            let mut model = std::collections::HashMap::new();
            for &seq in deliveries.iter().filter(|&&s| s < sent) {
                t.record(seq);
                *model.entry(seq).or_insert(0u64) += 1;
            }
            let distinct = model.len() as u64;
            let delivered: u64 = model.values().sum();
            prop_assert_eq!(t.distinct(), distinct);
            prop_assert_eq!(t.duplicates(), delivered - distinct);
            let totals = DeliveryTotals {
                delivered: t.delivered(),
                duplicates: t.duplicates(),
                distinct: t.distinct(),
                gaps: t.gaps(),
                reordered: t.reordered(),
            };
            prop_assert_eq!(totals.lost(sent) + distinct, sent);
        }
    }
}
