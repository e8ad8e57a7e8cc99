//! The admin API's questions to a shard and its answers, as plain data:
//! one client, a page of clients, a kick. The HTTP thread sends a
//! [`Request`] through the mesh and waits on its reply channel; the shard
//! answers from its own state (`control.rs`).

use bytes::Bytes;
use crossbeam_channel::Sender;
use ringmq_codec::ProtocolVersion;

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
