//! The JSON admin API (`/api/v1/...`): counters, one client, a page of
//! clients, a kick. Questions about clients go to the shard that owns the
//! client id, through the mesh, and wait for its answer.

use std::time::Duration;

use bytes::Bytes;
use ringmq_codec::ProtocolVersion;
use serde_json::{json, Value};

use super::{decode, Request, Response};
use crate::shard::admin::{ClientInfo, Query, Reply, Request as AdminRequest, MAX_PAGE};
use crate::shard::{Msg, Shared};
use crate::stats::BUCKET_BOUNDS_US;

/// How long a shard has to answer (it answers within a loop turn unless
/// it is stalled).
const SHARD_TIMEOUT: Duration = Duration::from_secs(2);

/// Clients one page lists unless `limit` says otherwise.
const DEFAULT_PAGE: usize = 100;

pub(super) fn route(request: &Request, shared: &Shared) -> Response {
    let path = request.path.as_str();
    let method = request.method.as_str();
    if path == "/api/v1/stats" {
        return match method {
            "GET" => Response::json(200, &stats(shared)),
            _ => Response::error(405, "use GET"),
        };
    }
    if path == "/api/v1/clients" {
        return match method {
            "GET" => list(request, shared),
            _ => Response::error(405, "use GET"),
        };
    }
    let Some(id) = path.strip_prefix("/api/v1/clients/") else {
        return Response::error(404, "no such endpoint");
    };
    let id = decode(id);
    if id.is_empty() {
        return Response::error(404, "no client id");
    }
    match method {
        "GET" => match ask(shared, &id, Query::Client(Bytes::from(id.clone()))) {
            Some(Reply::Client(Some(info))) => Response::json(200, &client_json(&info)),
            Some(_) => Response::error(404, "no session for this client id"),
            None => Response::error(504, "the shard did not answer"),
        },
        "DELETE" => {
            let discard = request
                .param("discard")
                .is_some_and(|v| v == "true" || v == "1");
            let query = Query::Kick {
                client_id: Bytes::from(id.clone()),
                discard,
            };
            match ask(shared, &id, query) {
                Some(Reply::Kicked(true)) => Response::json(
                    200,
                    &json!({ "client_id": id, "disconnected": true, "session_discarded": discard }),
                ),
                Some(_) => Response::error(404, "no session for this client id"),
                None => Response::error(504, "the shard did not answer"),
            }
        }
        _ => Response::error(405, "use GET or DELETE"),
    }
}

/// Sends `query` to `shard` and waits for the answer.
fn ask_shard(shared: &Shared, shard: usize, query: Query) -> Option<Reply> {
    let (reply, answer) = crossbeam_channel::bounded(1);
    let request = Box::new(AdminRequest { query, reply });
    if !shared
        .mesh
        .send_external_timeout(shard, Msg::Admin(request), SHARD_TIMEOUT)
    {
        return None;
    }
    answer.recv_timeout(SHARD_TIMEOUT).ok()
}

/// Asks the shard that owns `client_id`.
fn ask(shared: &Shared, client_id: &str, query: Query) -> Option<Reply> {
    let shard = ringmq_route::owner_shard(client_id.as_bytes(), shared.shards).0;
    ask_shard(shared, shard, query)
}

fn list(request: &Request, shared: &Shared) -> Response {
    let limit = match request.param("limit").map(|l| l.parse::<usize>()) {
        None => DEFAULT_PAGE,
        Some(Ok(n)) if (1..=MAX_PAGE).contains(&n) => n,
        Some(_) => return Response::error(400, &format!("limit must be in 1..={MAX_PAGE}")),
    };
    let after = request.param("after").map(Bytes::from);
    let mut clients = Vec::new();
    for shard in 0..shared.shards {
        let query = Query::List {
            after: after.clone(),
            limit,
        };
        match ask_shard(shared, shard, query) {
            Some(Reply::List(page)) => clients.extend(page),
            _ => return Response::error(504, &format!("shard {shard} did not answer")),
        }
    }
    clients.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    let more = clients.len() > limit;
    clients.truncate(limit);
    let next = more
        .then(|| clients.last().map(|c| text(&c.client_id)))
        .flatten();
    Response::json(
        200,
        &json!({
            "clients": clients.iter().map(client_json).collect::<Vec<_>>(),
            "next_after": next,
        }),
    )
}

fn text(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn protocol_name(p: ProtocolVersion) -> &'static str {
    match p {
        ProtocolVersion::V3_1 => "3.1",
        ProtocolVersion::V3_1_1 => "3.1.1",
        ProtocolVersion::V5 => "5",
    }
}

fn client_json(c: &ClientInfo) -> Value {
    json!({
        "client_id": text(&c.client_id),
        "connected": c.connected,
        "shard": c.shard,
        "peer": c.peer,
        "protocol_version": protocol_name(c.protocol),
        "keepalive_secs": c.keep_alive.map(|(secs, _)| secs),
        "keepalive_imposed_by_server": c.keep_alive.map(|(_, source)| source.is_imposed()),
        "keepalive_source": c.keep_alive.map(|(_, source)| source.as_str()),
        "keepalive_deadline_in_ms": c.keepalive_deadline_in_ms,
        "session_expiry_secs": c.session_expiry_secs,
        "subscriptions": c.subscriptions.iter()
            .map(|(filter, qos)| json!({ "filter": text(filter), "qos": qos }))
            .collect::<Vec<_>>(),
        "inflight": c.inflight,
        "queued": c.queued,
        "will": c.will,
    })
}

/// Every counter, the histograms and each shard's own figures.
pub(super) fn stats(shared: &Shared) -> Value {
    let total = shared.stats();
    let counters: serde_json::Map<String, Value> = total
        .fields()
        .into_iter()
        .map(|(name, v)| (name.to_owned(), json!(v)))
        .collect();
    let hist = shared.histograms();
    let histogram = |h: &crate::stats::Histogram| {
        json!({
            "bounds_us": BUCKET_BOUNDS_US,
            "counts": h.buckets,
            "sum_us": h.sum_us,
            "count": h.count(),
        })
    };
    let per_shard: Vec<Value> = shared
        .stats
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut one = crate::stats::Stats::default();
            s.add_to(&mut one);
            json!({
                "shard": i,
                "connections": one.connections,
                "clients": one.clients_v31 + one.clients_v311 + one.clients_v5,
                "publishes_in": one.publishes_in,
                "publishes_out": one.publishes_out,
                "inbox_depth": one.inbox_depth,
                "sessions": one.sessions,
            })
        })
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": shared.epoch.elapsed().as_secs(),
        "shards": shared.shards,
        "counters": counters,
        "histograms": {
            "keepalive_lateness": histogram(&hist.keepalive_lateness),
            "takeover": histogram(&hist.takeover),
            "connect": histogram(&hist.connect),
        },
        "per_shard": per_shard,
    })
}
