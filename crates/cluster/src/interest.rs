//! A node's interest on NATS: the subscriptions that cover its local MQTT
//! subscriptions, reference-counted over every shard's filters, so NATS
//! sends a publish to a node once per matching subject however many local
//! subscribers it has, and the subscription goes with the last of them.
//!
//! Plain data: `add` and `remove` answer the NATS subscription changes to
//! make; [`Interest::subscriptions`] lists them all (to subscribe again
//! after a reconnection).

use std::collections::HashMap;

use crate::subject::{filter_subjects, SubjectError};

/// One NATS subscription: a subject, in a queue group for `$share`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subscription {
    /// The subject (may hold `*` and a final `>`).
    pub subject: String,
    /// The queue group (a shared subscription's group), if any.
    pub queue: Option<String>,
}

/// A change to make on the NATS connection.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// Subscribe (the first local filter that needs it).
    Subscribe(Subscription),
    /// Unsubscribe (the last local filter that needed it is gone).
    Unsubscribe(Subscription),
}

/// The node's NATS subscriptions and how many local filters need each.
#[derive(Debug)]
pub struct Interest {
    prefix: String,
    counts: HashMap<Subscription, u64>,
}

impl Interest {
    /// No interest yet, under cluster prefix `prefix` (checked).
    pub fn new(prefix: &str) -> Result<Interest, SubjectError> {
        crate::subject::check_prefix(prefix)?;
        Ok(Interest {
            prefix: prefix.to_string(),
            counts: HashMap::new(),
        })
    }

    /// A local subscription to `filter` was added (on any shard); pushes
    /// the subscriptions now needed that were not.
    pub fn add(&mut self, filter: &str, out: &mut Vec<Change>) -> Result<(), SubjectError> {
        for s in self.subscriptions_of(filter)? {
            let count = self.counts.entry(s.clone()).or_insert(0);
            *count += 1;
            if *count == 1 {
                out.push(Change::Subscribe(s));
            }
        }
        Ok(())
    }

    /// A local subscription to `filter` was removed; pushes the
    /// subscriptions no longer needed. Removing a filter never added
    /// changes nothing.
    pub fn remove(&mut self, filter: &str, out: &mut Vec<Change>) -> Result<(), SubjectError> {
        for s in self.subscriptions_of(filter)? {
            let Some(count) = self.counts.get_mut(&s) else {
                continue;
            };
            *count -= 1;
            if *count == 0 {
                self.counts.remove(&s);
                out.push(Change::Unsubscribe(s));
            }
        }
        Ok(())
    }

    /// Every subscription needed now, in no particular order.
    pub fn subscriptions(&self) -> impl Iterator<Item = &Subscription> {
        self.counts.keys()
    }

    fn subscriptions_of(&self, filter: &str) -> Result<Vec<Subscription>, SubjectError> {
        let f = filter_subjects(&self.prefix, filter)?;
        Ok(f.subjects
            .into_iter()
            .map(|subject| Subscription {
                subject,
                queue: f.queue.clone(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn changes(i: &mut Interest, add: bool, filter: &str) -> Vec<Change> {
        let mut out = Vec::new();
        if add {
            i.add(filter, &mut out).unwrap();
        } else {
            i.remove(filter, &mut out).unwrap();
        }
        out
    }

    fn sub(subject: &str, queue: Option<&str>) -> Subscription {
        Subscription {
            subject: subject.to_string(),
            queue: queue.map(str::to_string),
        }
    }

    #[test]
    fn one_nats_subscription_per_subject_however_many_filters() {
        let mut i = Interest::new("r").unwrap();
        assert_eq!(
            changes(&mut i, true, "a/#"),
            [
                Change::Subscribe(sub("r.t.a", None)),
                Change::Subscribe(sub("r.t.a.>", None))
            ]
        );
        // `a` shares a subject with `a/#`: nothing new.
        assert_eq!(changes(&mut i, true, "a"), []);
        assert_eq!(changes(&mut i, true, "a/#"), []);
        assert_eq!(changes(&mut i, false, "a/#"), []);
        assert_eq!(
            changes(&mut i, false, "a/#"),
            [Change::Unsubscribe(sub("r.t.a.>", None))]
        );
        assert_eq!(
            changes(&mut i, false, "a"),
            [Change::Unsubscribe(sub("r.t.a", None))]
        );
        assert_eq!(changes(&mut i, false, "a"), [], "never added");
        // A shared filter is its own subscription, in its queue group.
        assert_eq!(
            changes(&mut i, true, "$share/g/a"),
            [Change::Subscribe(sub("r.t.a", Some("g.a")))]
        );
        assert!(i.add("a/#/b", &mut Vec::new()).is_err());
    }

    proptest! {
        /// After any sequence of adds and removes (removes only of what is
        /// held), the subscriptions are exactly those of the filters held,
        /// and the changes made add up to them.
        #[test]
        fn interest_follows_the_held_filters(
            ops in prop::collection::vec((any::<bool>(), 0usize..6), 0..60)
        ) {
            let filters = ["a/#", "a", "a/+", "#", "$share/g/a", "b/c"];
            let mut i = Interest::new("r").unwrap();
            let mut held: Vec<&str> = Vec::new();
            let mut subscribed: BTreeSet<Subscription> = BTreeSet::new();
            for (add, n) in ops {
                let f = filters[n];
                let add = add || !held.contains(&f);
                if add {
                    held.push(f);
                } else {
                    let at = held.iter().position(|h| *h == f).unwrap();
                    held.remove(at);
                }
                for c in changes(&mut i, add, f) {
                    match c {
                        Change::Subscribe(s) => prop_assert!(subscribed.insert(s)),
                        Change::Unsubscribe(s) => prop_assert!(subscribed.remove(&s)),
                    }
                }
                let mut want = BTreeSet::new();
                for f in &held {
                    let fs = filter_subjects("r", f).unwrap();
                    for subject in fs.subjects {
                        want.insert(Subscription { subject, queue: fs.queue.clone() });
                    }
                }
                let have: BTreeSet<Subscription> = i.subscriptions().cloned().collect();
                prop_assert_eq!(&have, &want);
                prop_assert_eq!(&subscribed, &want);
            }
        }
    }
}
