//! The shard's control plane: answers to the admin API (`admin.rs` has
//! the questions) from the shard's own state, and the `$SYS` publishes
//! (`sys.rs` has the topics). Both are `Core` methods above `apply`, which
//! imports neither file.

use bytes::Bytes;
use ringmq_codec::{Publish, QoS};
use ringmq_session::{SessionId, Tick};

use super::admin::{ClientInfo, Query, Reply, Request, MAX_PAGE};
use super::apply::{Core, Deferred};
use super::sys::messages;
use super::timers::TimerEvent;

impl Core {
    /// Answers an admin request (a dropped reply channel is fine: the HTTP
    /// side gave up waiting).
    pub(crate) fn admin(&mut self, request: Request) {
        let reply = match request.query {
            Query::Client(id) => {
                Reply::Client(self.table.find(&id).map(|sid| self.client_info(sid)))
            }
            Query::List { after, limit } => Reply::List(self.list_clients(after, limit)),
            Query::Kick { client_id, discard } => Reply::Kicked(self.kick(&client_id, discard)),
        };
        let _ = request.reply.try_send(reply);
    }

    fn client_info(&self, sid: SessionId) -> ClientInfo {
        let entry = self.table.get(sid).expect("a session found in the table");
        let session = &entry.session;
        let link = entry.link.and_then(|l| self.links.get(&l));
        let (inflight, queued) = session.outbound_len();
        let mut subscriptions: Vec<(Bytes, u8)> = session
            .subscriptions()
            .map(|(filter, grant)| (filter.clone(), grant.options.qos as u8))
            .collect();
        subscriptions.sort();
        let now = self.clock.now();
        ClientInfo {
            client_id: session.client_id().clone(),
            connected: link.is_some(),
            shard: self.id.0,
            peer: link.map(|l| l.peer.to_string()),
            protocol: session.protocol(),
            keep_alive: link.map(|l| l.keep_alive.get()),
            keepalive_deadline_in_ms: session
                .keepalive_deadline()
                .map(|d: Tick| d.0 as i64 - now.0 as i64),
            session_expiry_secs: session.session_expiry_secs(),
            subscriptions,
            inflight,
            queued,
            will: session.has_will(),
        }
    }

    fn list_clients(&self, after: Option<Bytes>, limit: usize) -> Vec<ClientInfo> {
        let limit = limit.min(MAX_PAGE);
        let mut ids: Vec<(Bytes, SessionId)> = self
            .table
            .ids()
            .filter_map(|sid| {
                let id = self.table.get(sid)?.session.client_id();
                after
                    .as_ref()
                    .is_none_or(|a| id > a)
                    .then(|| (id.clone(), sid))
            })
            .collect();
        if ids.len() > limit {
            ids.select_nth_unstable(limit);
            ids.truncate(limit);
        }
        ids.sort();
        ids.into_iter()
            .map(|(_, sid)| self.client_info(sid))
            .collect()
    }

    fn kick(&mut self, client_id: &[u8], discard: bool) -> bool {
        let Some(sid) = self.table.find(client_id) else {
            return false;
        };
        let link = self
            .table
            .link_of(sid)
            .and_then(|l| self.links.get(&l))
            .cloned();
        let now = self.clock.now();
        self.now = now;
        let mut out = std::mem::take(&mut self.outbox);
        if let Some(entry) = self.table.get_mut(sid) {
            entry.session.kick(discard, now, &mut out);
        }
        self.apply(Some(sid), link.as_ref(), &mut out);
        self.outbox = out;
        self.run_deferred();
        true
    }
}

impl Core {
    /// Arms the next `$SYS` publish (shard 0 only, with --sys-interval).
    pub(crate) fn arm_sys(&mut self) {
        let secs = self.shared.config.sys_interval;
        if self.id.0 != 0 || secs == 0 {
            return;
        }
        let at = self.clock.now().add_secs(secs);
        let tick = self.clock.wheel_tick(at);
        self.wheel.insert(tick, TimerEvent::Sys);
    }

    /// Publishes the `$SYS` topics and arms the next round.
    pub(crate) fn publish_sys(&mut self) {
        let stats = self.shared.stats();
        let uptime = self.shared.epoch.elapsed().as_secs();
        let load = self.sys.update(self.now, stats.publishes_in);
        for (topic, payload) in messages(&stats, uptime, load) {
            let publish = Publish {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: true,
                topic: Bytes::from_static(topic.as_bytes()),
                packet_id: 0,
                properties: Default::default(),
                payload: Bytes::from(payload),
            };
            self.deferred.push_back(Deferred::Route {
                publish,
                origin: None,
            });
        }
        self.run_deferred();
        self.arm_sys();
    }
}
