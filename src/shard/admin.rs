//! The admin API's questions to a shard, answered on the shard from its
//! own state (never by another thread reading it): one client, a page of
//! clients, a kick. The HTTP thread sends a [`Request`] through the mesh
//! and waits on its reply channel.

use bytes::Bytes;
use crossbeam_channel::Sender;
use ringmq_codec::ProtocolVersion;
use ringmq_session::{SessionId, Tick};

use super::apply::Core;

/// What the admin API asks one shard.
#[derive(Debug)]
pub(crate) enum Query {
    /// One client by id.
    Client(Bytes),
    /// Up to `limit` clients whose ids sort after `after`, in id order.
    List { after: Option<Bytes>, limit: usize },
    /// Disconnect a client (v5: DISCONNECT 0x98); `discard` ends its
    /// session too.
    Kick { client_id: Bytes, discard: bool },
}

/// A question and where its answer goes.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) query: Query,
    pub(crate) reply: Sender<Reply>,
}

/// A shard's answer.
#[derive(Debug)]
pub(crate) enum Reply {
    Client(Option<ClientInfo>),
    List(Vec<ClientInfo>),
    /// Whether the client id had a session here.
    Kicked(bool),
}

/// What the API tells about one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientInfo {
    pub(crate) client_id: Bytes,
    pub(crate) connected: bool,
    pub(crate) shard: usize,
    pub(crate) peer: Option<String>,
    pub(crate) protocol: ProtocolVersion,
    /// Keep-alive granted (seconds) and who chose it; `None` without a
    /// connection.
    pub(crate) keep_alive: Option<(u16, ringmq_session::KeepAliveSource)>,
    /// Milliseconds from now to the keep-alive deadline (negative: past).
    pub(crate) keepalive_deadline_in_ms: Option<i64>,
    pub(crate) session_expiry_secs: u32,
    /// (filter, granted QoS)
    pub(crate) subscriptions: Vec<(Bytes, u8)>,
    pub(crate) inflight: usize,
    pub(crate) queued: usize,
    pub(crate) will: bool,
}

/// Most clients one page may ask for.
pub(crate) const MAX_PAGE: usize = 1000;

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
