//! Claiming a client id in the cluster's directory (a JetStream key-value
//! bucket: client id -> owner node and epoch, each write with a revision),
//! as a sans-IO state machine.
//!
//! A node that gets a CONNECT for a client id it does not hold runs one
//! [`Claim`]: it answers each [`Input`] (what the bucket or another node
//! said) with the next [`Step`] to carry out. Races are settled by the
//! bucket's compare-and-set on the revision, never by timing: a claim
//! that loses a race reads again and goes on from what it finds, up to a
//! bound.
//!
//! - No owner: create the key (fails if someone created it meanwhile).
//! - Owned by another node: ask it to take the client over (it sends
//!   DISCONNECT 0x8E, closes, writes the session, replies); then write
//!   this node over the revision read. If it does not answer in time, its
//!   heartbeat key decides: expired means dead, and the key is taken; alive
//!   means the CONNECT is refused (the owner is busy, not gone).
//! - Owned by this node (a restart, or a claim that raced with itself):
//!   write it again with this connection's epoch.
//!
//! Invariant (proptest below, several nodes racing over a model bucket
//! with any interleaving): every grant follows a successful write, the
//! revisions of the grants strictly increase, and the bucket ends naming
//! the node granted last.

/// Who holds a client id: a node and that node's connection epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The node's `--node-id`.
    pub node: String,
    /// Increases with each connection the node accepts for the id.
    pub epoch: u64,
}

/// What the control thread does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Read the key (answer [`Input::Got`]).
    Get,
    /// Create the key with this owner, failing if it exists
    /// ([`Input::Created`]).
    Create(Owner),
    /// Write this owner if the key is still at `revision`
    /// ([`Input::Updated`]).
    Update {
        /// The new owner (this node).
        owner: Owner,
        /// The revision the write must find.
        revision: u64,
    },
    /// Ask `node` to hand the client over ([`Input::HandedOver`], or
    /// [`Input::NoAnswer`] after the timeout).
    AskTakeover {
        /// The owner to ask.
        node: String,
    },
    /// Read `node`'s heartbeat key ([`Input::Alive`]).
    CheckAlive {
        /// The node that did not answer.
        node: String,
    },
    /// The id is this node's: accept the CONNECT. `from`: the node that
    /// held it before (its session is in the sessions bucket), if any.
    Granted {
        /// The previous owner.
        from: Option<String>,
        /// The revision this node's write got.
        revision: u64,
    },
    /// Refuse the CONNECT.
    Refused(Refusal),
}

/// Why a claim ends without the id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The owner did not answer but its heartbeat is alive: busy, not gone
    /// (CONNACK 0x89 Server busy).
    OwnerUnresponsive,
    /// Lost the race more than the bound allows (0x89 as well).
    TooManyRaces,
    /// The owner keeps the id: the new connection's user may not take it
    /// over (`--takeover-same-user-only`; CONNACK 0x87 Not authorized).
    Denied,
}

/// What the bucket or another node answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// The key's value and revision, or nothing.
    Got(Option<(Owner, u64)>),
    /// The create succeeded (with this revision) or found the key there.
    Created(Option<u64>),
    /// The compare-and-set succeeded (with this revision) or found the
    /// revision moved on.
    Updated(Option<u64>),
    /// The owner handed the client over (true) or says it no longer holds
    /// it (false).
    HandedOver(bool),
    /// The owner did not answer in time.
    NoAnswer,
    /// The owner refuses to let the id go to this connection's user.
    Denied,
    /// The silent owner's heartbeat key is (true) or is not (false) alive.
    Alive(bool),
}

/// One node's claim of one client id.
#[derive(Debug)]
pub struct Claim {
    me: Owner,
    /// Reads left before giving up.
    reads_left: u32,
    /// The owner and revision the claim acts on.
    seen: Option<(Owner, u64)>,
    done: bool,
}

impl Claim {
    /// A claim by `me`, reading the key at most `max_reads` times (at least
    /// 1), and its first step (always [`Step::Get`]).
    pub fn new(me: Owner, max_reads: u32) -> (Claim, Step) {
        let claim = Claim {
            me,
            reads_left: max_reads.max(1) - 1,
            seen: None,
            done: false,
        };
        (claim, Step::Get)
    }

    /// Whether the claim has ended (granted or refused).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The next step after `input`. An input that does not fit the step
    /// asked for is taken as a lost race (read again).
    pub fn on(&mut self, input: Input) -> Step {
        if self.done {
            return Step::Refused(Refusal::TooManyRaces);
        }
        match input {
            Input::Got(None) => {
                self.seen = None;
                Step::Create(self.me.clone())
            }
            Input::Got(Some((owner, revision))) => {
                let step = if owner.node == self.me.node {
                    Step::Update {
                        owner: self.me.clone(),
                        revision,
                    }
                } else {
                    Step::AskTakeover {
                        node: owner.node.clone(),
                    }
                };
                self.seen = Some((owner, revision));
                step
            }
            Input::Created(Some(revision)) => self.grant(None, revision),
            Input::Updated(Some(revision)) => {
                let from = self
                    .seen
                    .as_ref()
                    .map(|(o, _)| o.node.clone())
                    .filter(|n| *n != self.me.node);
                self.grant(from, revision)
            }
            Input::HandedOver(true) => self.write_over_seen(),
            Input::Alive(false) => self.write_over_seen(),
            Input::NoAnswer => match &self.seen {
                Some((owner, _)) => Step::CheckAlive {
                    node: owner.node.clone(),
                },
                None => self.read_again(),
            },
            Input::Alive(true) => {
                self.done = true;
                Step::Refused(Refusal::OwnerUnresponsive)
            }
            Input::Denied => {
                self.done = true;
                Step::Refused(Refusal::Denied)
            }
            Input::Created(None) | Input::Updated(None) | Input::HandedOver(false) => {
                self.read_again()
            }
        }
    }

    fn write_over_seen(&mut self) -> Step {
        match &self.seen {
            Some((_, revision)) => Step::Update {
                owner: self.me.clone(),
                revision: *revision,
            },
            None => self.read_again(),
        }
    }

    fn read_again(&mut self) -> Step {
        if self.reads_left == 0 {
            self.done = true;
            return Step::Refused(Refusal::TooManyRaces);
        }
        self.reads_left -= 1;
        Step::Get
    }

    fn grant(&mut self, from: Option<String>, revision: u64) -> Step {
        self.done = true;
        Step::Granted { from, revision }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn me(node: &str) -> Owner {
        Owner {
            node: node.to_string(),
            epoch: 1,
        }
    }

    #[test]
    fn an_unowned_id_is_created() {
        let (mut c, step) = Claim::new(me("a"), 3);
        assert_eq!(step, Step::Get);
        assert_eq!(c.on(Input::Got(None)), Step::Create(me("a")));
        assert_eq!(
            c.on(Input::Created(Some(1))),
            Step::Granted {
                from: None,
                revision: 1
            }
        );
        assert!(c.is_done());
    }

    #[test]
    fn another_nodes_id_is_handed_over_then_written_over_its_revision() {
        let (mut c, _) = Claim::new(me("a"), 3);
        assert_eq!(
            c.on(Input::Got(Some((me("b"), 7)))),
            Step::AskTakeover {
                node: "b".to_string()
            }
        );
        assert_eq!(
            c.on(Input::HandedOver(true)),
            Step::Update {
                owner: me("a"),
                revision: 7
            }
        );
        assert_eq!(
            c.on(Input::Updated(Some(8))),
            Step::Granted {
                from: Some("b".to_string()),
                revision: 8
            }
        );
    }

    #[test]
    fn an_owner_that_denies_the_user_ends_the_claim_without_a_write() {
        let (mut c, _) = Claim::new(me("a"), 3);
        assert_eq!(
            c.on(Input::Got(Some((me("b"), 7)))),
            Step::AskTakeover { node: "b".into() }
        );
        assert_eq!(c.on(Input::Denied), Step::Refused(Refusal::Denied));
        assert!(c.is_done());
    }

    #[test]
    fn a_silent_owner_is_taken_over_only_when_its_heartbeat_expired() {
        let (mut c, _) = Claim::new(me("a"), 3);
        c.on(Input::Got(Some((me("b"), 7))));
        assert_eq!(
            c.on(Input::NoAnswer),
            Step::CheckAlive {
                node: "b".to_string()
            }
        );
        assert_eq!(
            c.on(Input::Alive(false)),
            Step::Update {
                owner: me("a"),
                revision: 7
            }
        );
        let (mut c, _) = Claim::new(me("a"), 3);
        c.on(Input::Got(Some((me("b"), 7))));
        c.on(Input::NoAnswer);
        assert_eq!(
            c.on(Input::Alive(true)),
            Step::Refused(Refusal::OwnerUnresponsive)
        );
    }

    #[test]
    fn lost_races_read_again_up_to_the_bound() {
        let (mut c, _) = Claim::new(me("a"), 2);
        c.on(Input::Got(None));
        assert_eq!(c.on(Input::Created(None)), Step::Get);
        c.on(Input::Got(Some((me("b"), 1))));
        c.on(Input::HandedOver(true));
        assert_eq!(
            c.on(Input::Updated(None)),
            Step::Refused(Refusal::TooManyRaces)
        );
        assert!(c.is_done());
    }

    /// The bucket: one key, its value and revision.
    #[derive(Default)]
    struct Bucket {
        value: Option<(Owner, u64)>,
        revision: u64,
    }

    impl Bucket {
        fn answer(&mut self, step: &Step, alive: bool) -> Option<Input> {
            Some(match step {
                Step::Get => Input::Got(self.value.clone()),
                Step::Create(owner) => {
                    if self.value.is_some() {
                        Input::Created(None)
                    } else {
                        self.revision += 1;
                        self.value = Some((owner.clone(), self.revision));
                        Input::Created(Some(self.revision))
                    }
                }
                Step::Update { owner, revision } => {
                    if self.value.as_ref().map(|v| v.1) == Some(*revision) {
                        self.revision += 1;
                        self.value = Some((owner.clone(), self.revision));
                        Input::Updated(Some(self.revision))
                    } else {
                        Input::Updated(None)
                    }
                }
                // The owner hands over (it may be racing itself: fine).
                Step::AskTakeover { .. } => {
                    if alive {
                        Input::HandedOver(true)
                    } else {
                        Input::NoAnswer
                    }
                }
                Step::CheckAlive { .. } => Input::Alive(false),
                Step::Granted { .. } | Step::Refused(_) => return None,
            })
        }
    }

    proptest! {
        /// Several nodes claim one id at once; the order in which their
        /// steps reach the bucket is arbitrary. Grants are ordered by the
        /// revision they wrote, and the bucket names the last one.
        #[test]
        fn racing_claims_are_settled_by_the_revision(
            nodes in 2usize..5,
            order in prop::collection::vec(0usize..5, 1..200),
            owners_answer in any::<bool>(),
        ) {
            let mut bucket = Bucket::default();
            let mut claims: Vec<(Claim, Step)> = (0..nodes)
                .map(|n| Claim::new(me(&format!("n{n}")), 8))
                .collect();
            let mut grants: Vec<(String, u64)> = Vec::new();
            for pick in order.into_iter().chain((0..nodes * 40).map(|i| i % 5)) {
                let n = pick % nodes;
                let (claim, step) = &mut claims[n];
                if claim.is_done() {
                    continue;
                }
                let Some(input) = bucket.answer(step, owners_answer) else {
                    continue;
                };
                let next = claim.on(input);
                if let Step::Granted { revision, .. } = &next {
                    grants.push((format!("n{n}"), *revision));
                }
                *step = next;
            }
            for (c, _) in &claims {
                prop_assert!(c.is_done(), "every claim ends");
            }
            prop_assert!(!grants.is_empty(), "someone gets the id");
            prop_assert!(grants.windows(2).all(|w| w[0].1 < w[1].1));
            let last = grants.last().unwrap();
            let (owner, revision) = bucket.value.clone().unwrap();
            prop_assert_eq!(&owner.node, &last.0);
            prop_assert_eq!(revision, last.1);
        }
    }
}
