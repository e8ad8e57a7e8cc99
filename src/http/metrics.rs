//! `/metrics` in the Prometheus text format (version 0.0.4), written by
//! hand: the figures are already plain per-shard integers summed here, so
//! a metrics library would only add its own registry of atomics beside
//! them. Labels never carry client ids or topics.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::Response;
use crate::shard::Shared;
use crate::stats::{Histogram, Stats, BUCKET_BOUNDS_US};

/// Counters that are gauges (they go up and down).
const GAUGES: &[&str] = &[
    "connections",
    "sessions",
    "clients_v31",
    "clients_v311",
    "clients_v5",
    "sessions_absent",
    "subscriptions",
    "retained_messages",
    "inbox_depth",
    "store_log_bytes",
    "cluster_connected",
    "cluster_directory",
    "cluster_qos_stream",
    "cluster_retained_stream",
];

struct Text(String);

impl Text {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        self.head(name, kind, help);
        let _ = writeln!(self.0, "{name} {value}");
    }

    /// One metric with a label taking each of `values`.
    fn labelled(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        label: &str,
        values: &[(&str, u64)],
    ) {
        self.head(name, kind, help);
        for (l, v) in values {
            let _ = writeln!(self.0, "{name}{{{label}=\"{l}\"}} {v}");
        }
    }

    fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.head(name, "histogram", help);
        let mut cumulative = 0;
        for (bound, n) in BUCKET_BOUNDS_US.iter().zip(&h.buckets) {
            cumulative += n;
            let le = *bound as f64 / 1e6;
            let _ = writeln!(self.0, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(self.0, "{name}_bucket{{le=\"+Inf\"}} {}", h.count());
        let _ = writeln!(self.0, "{name}_sum {}", h.sum_us as f64 / 1e6);
        let _ = writeln!(self.0, "{name}_count {}", h.count());
    }
}

pub(super) fn render(shared: &Shared) -> Response {
    let s = shared.stats();
    let mut t = Text(String::with_capacity(16 * 1024));
    named(&mut t, &s);
    let per_shard: Vec<(String, u64)> = shared
        .stats
        .iter()
        .enumerate()
        .map(|(i, one)| (i.to_string(), one.inbox_depth.load(Ordering::Relaxed)))
        .collect();
    let values: Vec<(&str, u64)> = per_shard.iter().map(|(i, v)| (i.as_str(), *v)).collect();
    t.labelled(
        "ringmq_inbox_depth",
        "gauge",
        "Messages from other shards waiting in a shard's inbox.",
        "shard",
        &values,
    );
    let h = shared.histograms();
    t.histogram(
        "ringmq_keepalive_lateness_seconds",
        "How long after its keep-alive deadline (last packet + 1.5 x keep-alive) each silent client was closed.",
        &h.keepalive_lateness,
    );
    t.histogram(
        "ringmq_takeover_seconds",
        "A take-over's CONNECT to its CONNACK (the old connection closed first).",
        &h.takeover,
    );
    t.histogram(
        "ringmq_connect_seconds",
        "CONNECT read to CONNACK queued, a password check included.",
        &h.connect,
    );
    // Every counter under its own name too, for what the named metrics
    // above leave out (auth, ACL, TLS, limits).
    for (name, value) in s.fields() {
        let kind = if GAUGES.contains(&name) {
            "gauge"
        } else {
            "counter"
        };
        let metric = if kind == "counter" {
            format!("ringmq_stat_{name}_total")
        } else {
            format!("ringmq_stat_{name}")
        };
        t.one(&metric, kind, "See the README's list of counters.", value);
    }
    Response {
        status: 200,
        content_type: "text/plain; version=0.0.4; charset=utf-8",
        body: t.0.into_bytes(),
        headers: String::new(),
    }
}

/// The metrics named in the README, from the summed counters.
fn named(t: &mut Text, s: &Stats) {
    t.labelled(
        "ringmq_connections",
        "gauge",
        "Clients connected now (CONNACK sent), by MQTT protocol version.",
        "protocol",
        &[
            ("3.1", s.clients_v31),
            ("3.1.1", s.clients_v311),
            ("5", s.clients_v5),
        ],
    );
    t.one(
        "ringmq_sockets",
        "gauge",
        "Client sockets open now, before and after CONNECT.",
        s.connections,
    );
    t.one(
        "ringmq_connects_total",
        "counter",
        "CONNECTs accepted.",
        s.connects,
    );
    t.one(
        "ringmq_connects_refused_total",
        "counter",
        "CONNECTs refused with an error CONNACK.",
        s.connects_refused,
    );
    let qos0_in = (s.publishes_in).saturating_sub(s.publishes_in_qos1 + s.publishes_in_qos2);
    t.labelled(
        "ringmq_messages_received_total",
        "counter",
        "PUBLISH packets received from clients, by QoS.",
        "qos",
        &[
            ("0", qos0_in),
            ("1", s.publishes_in_qos1),
            ("2", s.publishes_in_qos2),
        ],
    );
    let qos0_out = (s.publishes_out).saturating_sub(s.publishes_out_qos1 + s.publishes_out_qos2);
    t.labelled(
        "ringmq_messages_sent_total",
        "counter",
        "PUBLISH packets sent to clients, by QoS.",
        "qos",
        &[
            ("0", qos0_out),
            ("1", s.publishes_out_qos1),
            ("2", s.publishes_out_qos2),
        ],
    );
    t.labelled(
        "ringmq_messages_dropped_total",
        "counter",
        "Messages not delivered or not accepted, by reason.",
        "reason",
        &[
            // QoS 0 to a client that does not read, too large for the
            // client's Maximum Packet Size, expired.
            ("undeliverable", s.publishes_dropped),
            ("queue_full", s.queue_full_dropped),
            ("queue_bytes", s.queue_bytes_dropped),
            ("acl_publish", s.acl_publish_denied),
            ("acl_read", s.acl_read_denied),
        ],
    );
    t.one(
        "ringmq_bytes_received_total",
        "counter",
        "Bytes read from client sockets (TLS and WebSocket framing included).",
        s.bytes_in,
    );
    t.one(
        "ringmq_bytes_sent_total",
        "counter",
        "Bytes the kernel took for client sockets.",
        s.bytes_out,
    );
    let limit = s.outbuf_closed + s.write_stall_closed;
    t.labelled(
        "ringmq_disconnects_total",
        "counter",
        "Connections closed, by reason.",
        "reason",
        &[
            ("client", s.disconnects_client),
            ("keepalive_timeout", s.disconnects_keepalive),
            ("takeover", s.disconnects_takeover),
            ("protocol_error", s.disconnects_protocol),
            ("socket_error", s.disconnects_network.saturating_sub(limit)),
            ("shutdown", s.disconnects_shutdown),
            ("limit", limit),
            ("admin", s.disconnects_admin),
        ],
    );
    t.one(
        "ringmq_wills_published_total",
        "counter",
        "Wills published.",
        s.wills_published,
    );
    t.one(
        "ringmq_sessions",
        "gauge",
        "Sessions kept for clients that are away (persistent sessions).",
        s.sessions_absent,
    );
    t.one(
        "ringmq_retained_messages",
        "gauge",
        "Retained messages stored.",
        s.retained_messages,
    );
    t.one(
        "ringmq_subscriptions",
        "gauge",
        "Subscriptions held (filter, session pairs).",
        s.subscriptions,
    );
}
