//! The shard's side of persistence: what it recovered at start goes back
//! into its table, routes, wheel and retained store; each turn's records
//! are committed before the turn's output leaves; compaction advances a
//! step per turn. `Core` methods above `apply` (nothing imports this).

use bytes::Bytes;
use ringmq_codec::{QoS, Will};
use ringmq_session::{decode_properties, Session};
use ringmq_store::{Event, StoreState, WillRecord};
use tracing::warn;

use super::apply::{Core, Deferred};
use crate::stats::ShardStats;

/// Tells each peer how many of its messages are written (`Msg::Durable`):
/// each non-zero count in `counts`, or with `only_new` each above what
/// `reported` holds for that peer; `reported` follows. A count sent twice
/// is harmless (the peer releases what waits for it or less).
fn report(
    outlet: &mut crate::mesh::Outlet<super::msg::Msg>,
    counts: &[u64],
    reported: &mut [u64],
    only_new: bool,
) {
    for (peer, (&count, seen)) in counts.iter().zip(reported.iter_mut()).enumerate() {
        if count > 0 && (!only_new || count > *seen) {
            *seen = count;
            outlet.send(peer, super::msg::Msg::Durable(count));
        }
    }
}

impl Core {
    /// Brings back what this shard's store held at start: every session
    /// (detached, resumable, its routes added and timers armed) and every
    /// retained message. A stored session the broker cannot take back (a
    /// protocol byte it does not know) is logged and left out.
    pub(crate) fn import(&mut self, state: StoreState) {
        let Some(clock) = self.journal.as_ref().map(|j| *j.clock()) else {
            return;
        };
        let now = self.clock.now();
        let mut out = std::mem::take(&mut self.outbox);
        for (client_id, stored) in &state.sessions {
            match Session::import(
                client_id.clone(),
                stored,
                &clock,
                &self.policy,
                now,
                &mut out,
            ) {
                Ok(session) => {
                    // What the import left out (subscriptions or a will
                    // the ACL no longer allows) is left out of the store
                    // too, or the next start would find it again.
                    let mut gone = Vec::new();
                    for filter in stored.subscriptions.keys() {
                        if session.subscription(filter).is_none() {
                            gone.push(Event::SubscriptionGone {
                                client_id: client_id.clone(),
                                filter: filter.clone(),
                            });
                        }
                    }
                    if stored.will.is_some() && !session.has_will() {
                        gone.push(Event::WillGone {
                            client_id: client_id.clone(),
                        });
                    }
                    self.record_all(&gone);
                    let sid = self.table.insert(session);
                    ShardStats::inc(&self.stats.sessions);
                    self.apply(Some(sid), None, &mut out);
                }
                Err(e) => {
                    out.drain().for_each(drop);
                    warn!(client_id = ?client_id, error = %e, "persistence: stored session left out");
                    self.record_all(&[Event::SessionGone {
                        client_id: client_id.clone(),
                    }]);
                }
            }
        }
        self.outbox = out;
        for (topic, r) in &state.retained {
            let gone = Event::RetainedGone {
                topic: topic.clone(),
            };
            let (Some(qos), Ok(properties)) =
                (QoS::from_u8(r.qos), decode_properties(&r.properties))
            else {
                warn!(topic = ?topic, "persistence: retained message with bad fields left out");
                self.record_all(&[gone]);
                continue;
            };
            let expires_at = r.expires_at_unix_ms.map(|t| clock.to_tick(t));
            if expires_at.is_some_and(|t| t < now) {
                self.record_all(&[gone]);
                continue;
            }
            // Into the store directly: not routed, and not journaled again
            // (the new epoch's snapshot holds it) unless it does not fit
            // this run's --max-retained / --max-retained-bytes.
            let outcome = self
                .retained
                .store(topic, &r.payload, qos, &properties, expires_at);
            if matches!(
                outcome,
                ringmq_route::StoreOutcome::Full | ringmq_route::StoreOutcome::FullBytes
            ) {
                ShardStats::inc(&self.stats.retained_dropped);
                self.record_all(&[gone]);
            }
        }
        self.run_deferred();
        // What the import left out is on disk before the shard serves: a
        // crash right after start must not bring it back.
        self.commit_journal();
    }

    pub(crate) fn record_all(&mut self, events: &[Event]) {
        if let Some(journal) = self.journal.as_mut() {
            for e in events {
                journal.record_event(e);
            }
        }
    }

    /// Wills that came due while the broker was down: published once, now
    /// that every shard holds its sessions and routes.
    pub(crate) fn publish_stored_wills(&mut self, wills: Vec<(Bytes, WillRecord)>) {
        for (client_id, w) in wills {
            let (Some(qos), Ok(properties)) =
                (QoS::from_u8(w.qos), decode_properties(&w.properties))
            else {
                warn!(client_id = ?client_id, "persistence: stored will with bad fields left out");
                continue;
            };
            let will = Will {
                topic: w.topic,
                payload: w.payload,
                qos,
                retain: w.retain,
                properties,
            };
            ShardStats::inc(&self.stats.wills_published);
            self.deferred.push_back(Deferred::Route {
                publish: super::apply::will_publish(will),
                origin: None,
            });
        }
        self.run_deferred();
    }

    /// Writes the turn's records (before its output is flushed), and moves
    /// a compaction on by one step.
    pub(crate) fn commit_journal(&mut self) {
        // --cluster-nats: the stored copies of sessions follow the turn too
        // (not durable in the same sense: sent on, not awaited).
        self.flush_cluster_sessions();
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        journal.commit(&self.stats);
        if let Some(d) = self.durability.as_mut() {
            // What other shards' messages made this shard record is written
            // (under --fsync always: once synced): their publishers'
            // acknowledgements may go.
            if d.received != d.reported {
                match journal.unsynced_epoch() {
                    Some(epoch) => {
                        d.reported.clone_from(&d.received);
                        d.pending.push_back((epoch, d.received.clone()));
                    }
                    None => report(&mut self.outlet, &d.received, &mut d.reported, true),
                }
            }
        }
        if journal.compacting() {
            let table = &self.table;
            let done = journal.compact_step(|id| {
                let sid = table.find(id)?;
                table.get(sid).map(|e| &e.session)
            });
            if done {
                journal.finish_compaction(&self.stats);
            }
        } else if journal.wants_compaction() {
            let sessions: Vec<Bytes> = self
                .table
                .ids()
                .filter_map(|sid| self.table.get(sid))
                .filter(|e| e.session.journals())
                .map(|e| e.session.client_id().clone())
                .collect();
            let clock = *journal.clock();
            let retained = self.retained.iter().map(|m| Event::RetainedPut {
                topic: m.topic.clone(),
                payload: m.payload.clone(),
                qos: m.qos as u8,
                properties: m
                    .properties
                    .as_deref()
                    .map_or_else(Bytes::new, ringmq_session::encode_message_properties),
                expires_at_unix_ms: m.expires_at.map(|t| clock.to_unix(t)),
            });
            journal.start_compaction(sessions, retained);
        }
    }

    /// The ring's fdatasync of the log completed with `result`: release
    /// the output that waited for it (--fsync always) and report to other
    /// shards the counts it covers.
    pub(crate) fn journal_synced(&mut self, result: i32) {
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        let upto = journal.synced(result, &self.stats);
        while self.sync_waits.front().is_some_and(|(e, _)| *e <= upto) {
            if let Some((_, link)) = self.sync_waits.pop_front() {
                link.release();
            }
        }
        if let Some(d) = self.durability.as_mut() {
            let mut last = None;
            while d.pending.front().is_some_and(|(e, _)| *e <= upto) {
                last = d.pending.pop_front().map(|(_, counts)| counts);
            }
            if let Some(counts) = last {
                let mut sent = vec![0; counts.len()];
                report(&mut self.outlet, &counts, &mut sent, false);
            }
        }
    }

    /// `peer` has written what our first `upto` messages to it made it
    /// record: release the connections that waited for that.
    pub(crate) fn durable(&mut self, peer: usize, upto: u64) {
        let Some(d) = self.durability.as_mut() else {
            return;
        };
        let waits = &mut d.waits[peer];
        while waits.front().is_some_and(|(seq, _)| *seq <= upto) {
            if let Some((_, link)) = waits.pop_front() {
                link.release();
            }
        }
    }

    /// The broker is stopping: the last records written and synced.
    pub(crate) fn close_journal(&mut self) {
        if let Some(journal) = self.journal.as_mut() {
            journal.close(&self.stats);
        }
    }
}
