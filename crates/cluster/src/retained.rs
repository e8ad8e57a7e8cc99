//! A node's retained writes against what it reads back from the cluster's
//! retained stream: which stream messages to store, and when.
//!
//! A node stores a retained message from a local client at once (its
//! clients read their own writes), and publishes it to the stream, whose
//! last message per subject is the cluster's value. It follows the stream
//! and stores what it reads, in stream order. Storing every message as it
//! comes would end every node on the stream's last value, but a node would
//! sometimes go back for a while: its own write is in its store before the
//! stream orders it, so a message the stream put before it (another
//! node's, or an earlier one of its own) can arrive after it. [`Order`]
//! holds those back, per subject:
//!
//! - while a write of ours awaits its acknowledgement, what arrives is
//!   held (only the newest: the stream keeps one message per subject);
//! - once our write is acknowledged at stream sequence `q`, what arrives
//!   (or was held) below `q` is dropped, as our write replaces it; the
//!   write is done once the stream shows `q` or later on the subject;
//! - a failed write is forgotten, and what was held may then pass.
//!
//! So what passes is in stream order, never older than a write of ours
//! still in flight, and a subject's last message always passes once no
//! write of ours is pending on it: the node converges on the stream. Our
//! own writes come back too and pass when they are the last; storing a
//! value the node holds already costs little and keeps the node exact when
//! another node's message, sent to the store before ours was known here,
//! reached the store after ours.
//!
//! Bounded: at most `max_writes` writes are tracked; beyond, a write is not
//! ([`Order::written`] answers `None`), which gives up only the holding
//! back for it, never convergence. Sans-IO: sequences and acknowledgements
//! come in as calls; the caller stores what the calls hand back.

use std::collections::HashMap;

/// One of our writes being tracked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteId(u64);

/// Orders what the stream hands back against this node's writes; `M` is
/// the caller's message.
#[derive(Debug)]
pub struct Order<M> {
    subjects: HashMap<String, Subject<M>>,
    next_id: u64,
    /// Writes tracked over every subject.
    writes: usize,
    max_writes: usize,
}

#[derive(Debug)]
struct Subject<M> {
    /// Our writes in flight: id, and stream sequence once acknowledged.
    writes: Vec<(u64, Option<u64>)>,
    /// The highest stream sequence read on the subject.
    seen: u64,
    /// The newest message read and not yet passed, with its sequence.
    held: Option<(u64, M)>,
}

impl<M> Order<M> {
    /// Tracks at most `max_writes` writes at a time.
    pub fn new(max_writes: usize) -> Self {
        Self {
            subjects: HashMap::new(),
            next_id: 0,
            writes: 0,
            max_writes,
        }
    }

    /// Writes tracked now.
    pub fn tracked(&self) -> usize {
        self.writes
    }

    /// A write of ours on `subject` (already in our store) is about to be
    /// published; `None` when too many are tracked (then it is not).
    pub fn written(&mut self, subject: &str) -> Option<WriteId> {
        if self.writes >= self.max_writes {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.writes += 1;
        self.subjects
            .entry(subject.to_string())
            .or_insert_with(|| Subject {
                writes: Vec::new(),
                seen: 0,
                held: None,
            })
            .writes
            .push((id, None));
        Some(WriteId(id))
    }

    /// The stream took write `id` at sequence `seq`. Answers a held
    /// message that may now be stored.
    pub fn acked(&mut self, subject: &str, id: WriteId, seq: u64) -> Option<M> {
        let s = self.subjects.get_mut(subject)?;
        let i = s.writes.iter().position(|&(w, _)| w == id.0)?;
        if seq <= s.seen {
            // Its sequence, or a later one, was read already.
            s.writes.remove(i);
            self.writes -= 1;
        } else {
            s.writes[i].1 = Some(seq);
        }
        self.settle(subject)
    }

    /// Write `id` did not reach the stream (or its acknowledgement was
    /// lost). Answers a held message that may now be stored.
    pub fn failed(&mut self, subject: &str, id: WriteId) -> Option<M> {
        let s = self.subjects.get_mut(subject)?;
        let i = s.writes.iter().position(|&(w, _)| w == id.0)?;
        s.writes.remove(i);
        self.writes -= 1;
        self.settle(subject)
    }

    /// Message `m` was read from the stream at sequence `seq`. Answers the
    /// message to store now, if any (`m`, or nothing: it is held or
    /// dropped).
    pub fn arrived(&mut self, subject: &str, seq: u64, m: M) -> Option<M> {
        let Some(s) = self.subjects.get_mut(subject) else {
            return Some(m);
        };
        s.seen = s.seen.max(seq);
        let before = s.writes.len();
        s.writes.retain(|&(_, q)| q.is_none_or(|q| q > seq));
        self.writes -= before - s.writes.len();
        // The stream is read in order; a consumer started again may still
        // repeat an older one, which never replaces a newer.
        if s.held.as_ref().is_none_or(|&(h, _)| h < seq) {
            s.held = Some((seq, m));
        }
        self.settle(subject)
    }

    /// Passes, drops or keeps `subject`'s held message as its writes now
    /// say, and forgets the subject once nothing is left of it.
    fn settle(&mut self, subject: &str) -> Option<M> {
        let s = self.subjects.get_mut(subject)?;
        let out = match s.held {
            Some((h, _)) if s.writes.iter().any(|&(_, q)| q.is_some_and(|q| q > h)) => {
                s.held = None;
                None
            }
            Some(_) if s.writes.iter().any(|&(_, q)| q.is_none()) => None,
            Some(_) => s.held.take().map(|(_, m)| m),
            None => None,
        };
        if s.writes.is_empty() && s.held.is_none() {
            self.subjects.remove(subject);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nothing_tracked_passes_at_once() {
        let mut o = Order::new(4);
        assert_eq!(o.arrived("s", 1, "x"), Some("x"));
        assert!(o.subjects.is_empty());
    }

    #[test]
    fn an_older_message_after_our_write_is_dropped() {
        let mut o = Order::new(4);
        let w = o.written("s").unwrap();
        // Another node's message, sequenced before ours, arrives first.
        assert_eq!(
            o.arrived("s", 4, "theirs"),
            None,
            "held while unacknowledged"
        );
        assert_eq!(o.acked("s", w, 5), None, "ours replaces it");
        assert_eq!(o.arrived("s", 5, "ours"), Some("ours"));
        assert_eq!(o.tracked(), 0);
        assert!(o.subjects.is_empty());
    }

    #[test]
    fn a_newer_message_passes_once_our_write_is_placed_before_it() {
        let mut o = Order::new(4);
        let w = o.written("s").unwrap();
        // Ours was superseded before we read it back.
        assert_eq!(o.arrived("s", 6, "theirs"), None);
        assert_eq!(o.acked("s", w, 5), Some("theirs"));
        assert_eq!(o.tracked(), 0);
    }

    #[test]
    fn our_earlier_write_does_not_come_back_over_a_later_one() {
        let mut o = Order::new(4);
        let w1 = o.written("s").unwrap();
        let w2 = o.written("s").unwrap();
        assert_eq!(o.acked("s", w1, 1), None);
        assert_eq!(o.arrived("s", 1, "first"), None, "w2 is still in flight");
        assert_eq!(o.acked("s", w2, 2), None, "w2 replaces it");
        assert_eq!(o.arrived("s", 2, "second"), Some("second"));
        assert_eq!(o.tracked(), 0);
    }

    #[test]
    fn a_failed_write_lets_the_held_message_pass() {
        let mut o = Order::new(4);
        let w = o.written("s").unwrap();
        assert_eq!(o.arrived("s", 3, "theirs"), None);
        assert_eq!(o.failed("s", w), Some("theirs"));
        assert!(o.subjects.is_empty());
    }

    #[test]
    fn beyond_the_bound_writes_are_not_tracked() {
        let mut o = Order::new(1);
        let w = o.written("a").unwrap();
        assert_eq!(o.written("b"), None);
        assert_eq!(o.arrived("b", 1, "b"), Some("b"));
        o.failed("a", w);
        assert!(o.written("b").is_some());
    }

    /// What happens, in the order it happens, on one node.
    #[derive(Clone, Debug)]
    enum Step {
        /// A local client writes subject `.0`.
        Own(usize),
        /// Another node's write on subject `.0` is sequenced.
        Foreign(usize),
        /// Our oldest unsent write reaches NATS: stored and acknowledged
        /// (`Ok`), refused (`Refused`), or stored with its acknowledgement
        /// lost (`Lost`).
        Send(Sent),
        /// An acknowledgement (or failure) reaches the node, any of them.
        Ack(usize),
        /// The consumer reads the next message the stream still holds.
        Read,
    }

    #[derive(Clone, Copy, Debug)]
    enum Sent {
        Ok,
        Refused,
        Lost,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (0..2usize).prop_map(Step::Own),
            2 => (0..2usize).prop_map(Step::Foreign),
            3 => prop_oneof![
                6 => Just(Sent::Ok),
                1 => Just(Sent::Refused),
                1 => Just(Sent::Lost),
            ]
            .prop_map(Step::Send),
            3 => any::<usize>().prop_map(Step::Ack),
            4 => Just(Step::Read),
        ]
    }

    /// One of our writes as the model sees it.
    struct Write {
        subject: usize,
        value: u32,
        id: Option<WriteId>,
        seq: Option<u64>,
        /// Its failure was reported to the `Order`.
        failed: bool,
    }

    /// NATS, the stream and one node holding an `Order`.
    struct World {
        order: Order<(u64, u32)>,
        /// The stream's last message per subject (sequence, value).
        stream: [Option<(u64, u32)>; 2],
        next_seq: u64,
        /// The consumer's position.
        read: u64,
        /// The node's store.
        local: [Option<u32>; 2],
        writes: Vec<Write>,
        /// Indices into `writes` not yet sent, in order.
        unsent: std::collections::VecDeque<usize>,
        /// Acknowledgements on their way: write, `Some(seq)` or failure.
        acks: Vec<(usize, Option<u64>)>,
        next_value: u32,
    }

    const SUBJECTS: [&str; 2] = ["p.r.t.a", "p.r.t.b"];

    impl World {
        fn new(max_writes: usize) -> Self {
            World {
                order: Order::new(max_writes),
                stream: [None; 2],
                next_seq: 1,
                read: 0,
                local: [None; 2],
                writes: Vec::new(),
                unsent: Default::default(),
                acks: Vec::new(),
                next_value: 0,
            }
        }

        fn value(&mut self) -> u32 {
            self.next_value += 1;
            self.next_value
        }

        fn sequence(&mut self, subject: usize, value: u32) -> u64 {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.stream[subject] = Some((seq, value));
            seq
        }

        /// Stores what the `Order` passed, checking it is never older than
        /// a tracked write of ours still in flight or placed after it.
        fn store(&mut self, subject: usize, passed: Option<(u64, u32)>) -> Result<(), String> {
            let Some((seq, value)) = passed else {
                return Ok(());
            };
            for w in &self.writes {
                if w.subject == subject && w.id.is_some() && !w.failed {
                    // Unsent or unacknowledged writes count as after it:
                    // the order must not guess.
                    let after = w.seq.is_none_or(|q| q > seq);
                    if after && self.in_flight(w) {
                        return Err(format!(
                            "stored {value} (seq {seq}) over our write {} (seq {:?})",
                            w.value, w.seq
                        ));
                    }
                }
            }
            self.local[subject] = Some(value);
            Ok(())
        }

        /// Whether `w` is still on its way: unsent, or not yet read back
        /// (neither its sequence nor a later one).
        fn in_flight(&self, w: &Write) -> bool {
            w.seq.is_none_or(|q| self.read < q)
        }

        fn apply(&mut self, step: Step) -> Result<(), String> {
            match step {
                Step::Own(subject) => {
                    let value = self.value();
                    self.local[subject] = Some(value);
                    let id = self.order.written(SUBJECTS[subject]);
                    self.writes.push(Write {
                        subject,
                        value,
                        id,
                        seq: None,
                        failed: false,
                    });
                    self.unsent.push_back(self.writes.len() - 1);
                }
                Step::Foreign(subject) => {
                    let value = self.value();
                    self.sequence(subject, value);
                }
                Step::Send(sent) => {
                    let Some(i) = self.unsent.pop_front() else {
                        return Ok(());
                    };
                    let (subject, value) = (self.writes[i].subject, self.writes[i].value);
                    let seq = match sent {
                        Sent::Refused => None,
                        Sent::Ok | Sent::Lost => Some(self.sequence(subject, value)),
                    };
                    self.writes[i].seq = seq;
                    let ack = if matches!(sent, Sent::Ok) { seq } else { None };
                    self.acks.push((i, ack));
                }
                Step::Ack(n) => {
                    if self.acks.is_empty() {
                        return Ok(());
                    }
                    let (i, ack) = self.acks.remove(n % self.acks.len());
                    let subject = self.writes[i].subject;
                    let Some(id) = self.writes[i].id else {
                        return Ok(());
                    };
                    let passed = match ack {
                        Some(seq) => self.order.acked(SUBJECTS[subject], id, seq),
                        None => {
                            self.writes[i].failed = true;
                            self.order.failed(SUBJECTS[subject], id)
                        }
                    };
                    self.store(subject, passed)?;
                }
                Step::Read => {
                    // The smallest sequence above the position the stream
                    // still holds (superseded messages are never read).
                    let next = (0..2)
                        .filter_map(|s| self.stream[s].map(|(seq, v)| (seq, s, v)))
                        .filter(|&(seq, _, _)| seq > self.read)
                        .min();
                    if let Some((seq, subject, value)) = next {
                        self.read = seq;
                        let passed = self.order.arrived(SUBJECTS[subject], seq, (seq, value));
                        self.store(subject, passed)?;
                    }
                }
            }
            Ok(())
        }

        /// Sends what is unsent, delivers every acknowledgement and reads
        /// the stream to its end.
        fn settle(&mut self) -> Result<(), String> {
            while !self.unsent.is_empty() {
                self.apply(Step::Send(Sent::Ok))?;
            }
            while !self.acks.is_empty() {
                self.apply(Step::Ack(0))?;
            }
            while self
                .stream
                .iter()
                .flatten()
                .any(|&(seq, _)| seq > self.read)
            {
                self.apply(Step::Read)?;
            }
            Ok(())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Whatever the interleaving, a node never stores a message the
        /// stream put before a tracked write of ours in flight, and once
        /// everything is read it holds the stream's last value.
        #[test]
        fn a_node_follows_the_stream_without_going_back(
            steps in prop::collection::vec(step(), 0..60),
            max_writes in 1..6usize,
        ) {
            let mut w = World::new(max_writes);
            for s in steps.iter().cloned() {
                w.apply(s).map_err(TestCaseError::fail)?;
                prop_assert!(w.order.tracked() <= max_writes);
            }
            w.settle().map_err(TestCaseError::fail)?;
            prop_assert_eq!(w.order.tracked(), 0, "writes read back are done");
            let failures = w.writes.iter().any(|x| x.failed || x.seq.is_none());
            if !failures {
                for s in 0..2 {
                    prop_assert_eq!(w.local[s], w.stream[s].map(|(_, v)| v), "subject {}", s);
                }
            }
            // Another node writes last: whatever failed before, every
            // subject ends on it, and nothing is left tracked.
            for s in 0..2 {
                w.apply(Step::Foreign(s)).map_err(TestCaseError::fail)?;
            }
            w.settle().map_err(TestCaseError::fail)?;
            for s in 0..2 {
                prop_assert_eq!(w.local[s], w.stream[s].map(|(_, v)| v), "subject {}", s);
            }
            prop_assert_eq!(w.order.tracked(), 0);
            prop_assert!(w.order.subjects.is_empty());
        }
    }
}
