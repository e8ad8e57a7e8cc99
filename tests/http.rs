//! Black-box tests of `--http-listen`: /metrics counters move as the
//! broker works, the admin API answers for connected, absent and unknown
//! client ids, DELETE kicks with DISCONNECT 0x98, the bearer token, the
//! status page and the JSON it reads, and `$SYS` topics.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

/// One HTTP request; returns (status, body).
fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let (status, _, body) = http_request(addr, method, path, token);
    (status, body)
}

fn json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let (status, body) = http(addr, "GET", path, None);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The value of one sample line `name{labels} value` of /metrics.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_move_as_clients_connect_publish_and_go() {
    let (broker, http_addr) = start_http(&[]);
    let addr = broker.local_addr();
    let (mut a, _) = RawClient::connected(addr, &ConnectOpts::v5("metrics-a"));
    let (_b, _) = RawClient::connected(addr, &ConnectOpts::v3("metrics-b"));
    a.send(&subscribe_packet(1, &[("m/#", 1)], true)).unwrap();
    a.expect_packet(PROMPT, "SUBACK");
    a.send(&publish_packet("m/x", b"1", 1, 7, false, true))
        .unwrap();
    a.expect_packet(PROMPT, "PUBACK or PUBLISH");
    let mut text = String::new();
    assert!(
        poll_until(PROMPT, || {
            text = http(http_addr, "GET", "/metrics", None).1;
            sample(&text, "ringmq_connections{protocol=\"5\"}") == Some(1.0)
                && sample(&text, "ringmq_connections{protocol=\"3.1.1\"}") == Some(1.0)
                && sample(&text, "ringmq_messages_received_total{qos=\"1\"}") == Some(1.0)
                && sample(&text, "ringmq_subscriptions") == Some(1.0)
        }),
        "{text}"
    );
    assert!(sample(&text, "ringmq_bytes_received_total").unwrap() > 0.0);
    // At least the two CONNACKs, the SUBACK, the PUBACK and the PUBLISH.
    assert!(sample(&text, "ringmq_bytes_sent_total").unwrap() >= 4.0 + 4.0 + 5.0 + 4.0 + 8.0);
    assert!(sample(&text, "ringmq_connect_seconds_count").unwrap() >= 2.0);
    a.send(&disconnect_v5(0)).unwrap();
    assert!(
        poll_until(PROMPT, || {
            text = http(http_addr, "GET", "/metrics", None).1;
            sample(&text, "ringmq_disconnects_total{reason=\"client\"}") == Some(1.0)
                && sample(&text, "ringmq_connections{protocol=\"5\"}") == Some(0.0)
        }),
        "{text}"
    );
}

#[test]
fn a_keepalive_expiry_moves_the_reason_and_the_lateness_histogram() {
    let (broker, http_addr) = start_http(&[]);
    let (_silent, _) = RawClient::connected(
        broker.local_addr(),
        &ConnectOpts::v3("silent").keep_alive(1),
    );
    let mut text = String::new();
    assert!(
        poll_until(PROMPT, || {
            text = http(http_addr, "GET", "/metrics", None).1;
            sample(
                &text,
                "ringmq_disconnects_total{reason=\"keepalive_timeout\"}",
            ) == Some(1.0)
        }),
        "{text}"
    );
    assert_eq!(
        sample(&text, "ringmq_keepalive_lateness_seconds_count"),
        Some(1.0)
    );
    let late = sample(&text, "ringmq_keepalive_lateness_seconds_sum").unwrap();
    assert!((0.0..1.0).contains(&late), "{late}");
}

#[test]
fn the_api_answers_for_connected_absent_and_unknown_ids_and_kicks() {
    let (broker, http_addr) = start_http(&[]);
    let addr = broker.local_addr();
    let opts = ConnectOpts::v5("sensor/42")
        .keep_alive(30)
        .session_expiry(300);
    let (mut c, _) = RawClient::connected(addr, &opts);
    c.send(&subscribe_packet(1, &[("cmd/42", 1)], true))
        .unwrap();
    c.expect_packet(PROMPT, "SUBACK");
    let v = json(http_addr, "/api/v1/clients/sensor%2F42");
    assert_eq!(v["client_id"], "sensor/42");
    assert_eq!(v["connected"], true);
    assert_eq!(v["protocol_version"], "5");
    assert_eq!(v["keepalive_secs"], 30);
    assert_eq!(v["keepalive_imposed_by_server"], false);
    assert_eq!(v["keepalive_source"], "client");
    assert_eq!(v["session_expiry_secs"], 300);
    assert_eq!(v["subscriptions"][0]["filter"], "cmd/42");
    assert_eq!(v["shard"], shard_for(b"sensor/42", SHARDS) as u64);
    let deadline = v["keepalive_deadline_in_ms"].as_i64().unwrap();
    // 1.5 x 30 s from its last packet (stamped rounded up to the ms).
    assert!((40_000..=45_001).contains(&deadline), "{deadline}");
    let (status, _) = http(http_addr, "GET", "/api/v1/clients/nobody", None);
    assert_eq!(status, 404);

    let (status, body) = http(http_addr, "DELETE", "/api/v1/clients/sensor%2F42", None);
    assert_eq!(status, 200, "{body}");
    let kick = c.expect_packet(PROMPT, "DISCONNECT");
    assert!(kick.is_disconnect(0x98), "{kick:?}");
    // Absent now, its session kept (expiry 300).
    let mut v = serde_json::Value::Null;
    assert!(
        poll_until(PROMPT, || {
            v = json(http_addr, "/api/v1/clients/sensor%2F42");
            v["connected"] == false
        }),
        "{v}"
    );
    assert_eq!(v["subscriptions"][0]["filter"], "cmd/42");
    // Discarding ends the session.
    let (status, _) = http(
        http_addr,
        "DELETE",
        "/api/v1/clients/sensor%2F42?discard=true",
        None,
    );
    assert_eq!(status, 200);
    assert!(poll_until(PROMPT, || {
        http(http_addr, "GET", "/api/v1/clients/sensor%2F42", None).0 == 404
    }));
}

#[test]
fn the_client_list_pages_over_every_shard_in_id_order() {
    let (broker, http_addr) = start_http(&[]);
    let addr = broker.local_addr();
    let ids: Vec<String> = (0..7).map(|i| format!("dev-{i}")).collect();
    let _clients: Vec<_> = ids
        .iter()
        .map(|id| RawClient::connected(addr, &ConnectOpts::v3(id)).0)
        .collect();
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let path = if after.is_empty() {
            "/api/v1/clients?limit=3".to_owned()
        } else {
            format!("/api/v1/clients?limit=3&after={after}")
        };
        let page = json(http_addr, &path);
        let clients = page["clients"].as_array().unwrap();
        assert!(clients.len() <= 3);
        seen.extend(
            clients
                .iter()
                .map(|c| c["client_id"].as_str().unwrap().to_owned()),
        );
        match page["next_after"].as_str() {
            Some(next) => after = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    assert_eq!(
        http(http_addr, "GET", "/api/v1/clients?limit=0", None).0,
        400
    );
}

#[test]
fn the_token_guards_the_api_but_not_metrics_or_the_page() {
    let (_broker, http_addr) = start_http(&["--http-token", "s3cret"]);
    assert_eq!(http(http_addr, "GET", "/api/v1/stats", None).0, 401);
    assert_eq!(
        http(http_addr, "GET", "/api/v1/stats", Some("wrong")).0,
        401
    );
    assert_eq!(
        http(http_addr, "GET", "/api/v1/stats", Some("s3cret")).0,
        200
    );
    assert_eq!(http(http_addr, "GET", "/metrics", None).0, 200);
    let (status, page) = http(http_addr, "GET", "/", None);
    assert_eq!(status, 200);
    assert!(page.contains("<html"), "{page}");
}

#[test]
fn stats_json_has_counters_histograms_and_shards() {
    let (broker, http_addr) = start_http(&[]);
    let (_c, _) = RawClient::connected(broker.local_addr(), &ConnectOpts::v5("j"));
    let v = json(http_addr, "/api/v1/stats");
    assert_eq!(v["shards"], SHARDS as u64);
    assert_eq!(v["per_shard"].as_array().unwrap().len(), SHARDS);
    assert!(v["counters"]["connects"].as_u64().unwrap() >= 1);
    let h = &v["histograms"]["connect"];
    assert_eq!(
        h["counts"].as_array().unwrap().len(),
        h["bounds_us"].as_array().unwrap().len() + 1
    );
}

#[test]
fn sys_topics_are_published_retained_and_match_the_broker() {
    let broker = start(&["--sys-interval", "1"]);
    let addr = broker.local_addr();
    let (mut c, _) = RawClient::connected(addr, &ConnectOpts::v3("sys-watcher"));
    c.send(&subscribe_packet(1, &[("$SYS/broker/#", 0)], false))
        .unwrap();
    c.expect_packet(PROMPT, "SUBACK");
    // One PUBLISH of our own, so the message counters have something.
    c.send(&publish_packet("plain/topic", b"x", 0, 0, false, false))
        .unwrap();
    // Within a couple of intervals the values describe this broker: one
    // client, one subscription (ours), our publish received.
    let mut seen = std::collections::HashMap::new();
    let want = [
        ("$SYS/broker/clients/connected", "1"),
        ("$SYS/broker/subscriptions/count", "1"),
        ("$SYS/broker/messages/received", "1"),
        ("$SYS/broker/publish/messages/received", "1"),
    ];
    let matches = |seen: &std::collections::HashMap<String, String>| {
        want.iter()
            .all(|(t, v)| seen.get(*t).is_some_and(|got| got == v))
    };
    assert!(
        poll_until(PROMPT, || {
            if let Ok(p) = c.read_packet(std::time::Duration::from_millis(200)) {
                if p.kind == PUBLISH {
                    let p = p.publish(false);
                    seen.insert(p.topic, String::from_utf8_lossy(&p.payload).into_owned());
                }
            }
            matches(&seen)
        }),
        "{seen:#?}"
    );
    assert!(seen["$SYS/broker/version"].starts_with("ringmq version "));
    assert!(seen["$SYS/broker/uptime"].ends_with(" seconds"));
    // A client cannot publish into $SYS (v3: acknowledged, dropped). Had
    // it been routed, it would reach us right after its PUBACK, before
    // the broker's next uptime: read up to that one.
    c.send(&publish_packet(
        "$SYS/broker/uptime",
        b"forged",
        1,
        9,
        false,
        false,
    ))
    .unwrap();
    let (mut acked, mut next_uptime) = (false, false);
    while !next_uptime {
        let p = c.expect_packet(PROMPT, "PUBACK or a $SYS publish");
        if p.kind == PUBACK {
            acked = true;
        } else if p.kind == PUBLISH {
            let p = p.publish(false);
            assert_ne!(
                p.payload, b"forged",
                "a client's PUBLISH into $SYS was delivered"
            );
            next_uptime = acked && p.topic == "$SYS/broker/uptime";
        }
    }
}

#[test]
fn metrics_parse_as_prometheus_text_with_the_documented_names_and_types() {
    use prometheus_parse::{Scrape, Value};
    let (broker, http_addr) = start_http(&[]);
    let (_c, _) = RawClient::connected(broker.local_addr(), &ConnectOpts::v5("p"));
    let (status, text) = http(http_addr, "GET", "/metrics", None);
    assert_eq!(status, 200);
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = Scrape::parse(lines).expect("Prometheus text format");
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    assert!(samples > 50, "{samples}");
    let kind = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .map(|s| match &s.value {
                Value::Counter(_) => "counter",
                Value::Gauge(_) => "gauge",
                Value::Histogram(_) => "histogram",
                _ => "other",
            })
    };
    for (name, want) in [
        ("ringmq_connections", "gauge"),
        ("ringmq_connects_total", "counter"),
        ("ringmq_messages_received_total", "counter"),
        ("ringmq_messages_sent_total", "counter"),
        ("ringmq_messages_dropped_total", "counter"),
        ("ringmq_bytes_received_total", "counter"),
        ("ringmq_bytes_sent_total", "counter"),
        ("ringmq_disconnects_total", "counter"),
        ("ringmq_wills_published_total", "counter"),
        ("ringmq_sessions", "gauge"),
        ("ringmq_retained_messages", "gauge"),
        ("ringmq_subscriptions", "gauge"),
        ("ringmq_inbox_depth", "gauge"),
        ("ringmq_keepalive_lateness_seconds", "histogram"),
        ("ringmq_takeover_seconds", "histogram"),
        ("ringmq_connect_seconds", "histogram"),
    ] {
        assert_eq!(kind(name), Some(want), "{name}");
    }
    // Histogram buckets are cumulative and end at the count.
    let connect = scrape
        .samples
        .iter()
        .find(|s| s.metric == "ringmq_connect_seconds")
        .unwrap();
    let Value::Histogram(buckets) = &connect.value else {
        unreachable!()
    };
    assert!(buckets.windows(2).all(|w| w[0].count <= w[1].count));
    assert!(buckets.last().unwrap().count >= 1.0);
    // No label carries a client id.
    assert!(!text.contains("\"p\""), "a client id in a label");
}

#[test]
fn a_takeover_moves_the_reason_and_the_takeover_histogram() {
    let (broker, http_addr) = start_http(&[]);
    let addr = broker.local_addr();
    let (mut old, _) = RawClient::connected(addr, &ConnectOpts::v5("twice"));
    let (_new, ack) = RawClient::connected(addr, &ConnectOpts::v5("twice"));
    assert_eq!(ack.code, 0);
    assert!(old.expect_packet(PROMPT, "DISCONNECT").is_disconnect(0x8E));
    let mut text = String::new();
    assert!(
        poll_until(PROMPT, || {
            text = http(http_addr, "GET", "/metrics", None).1;
            sample(&text, "ringmq_disconnects_total{reason=\"takeover\"}") == Some(1.0)
                && sample(&text, "ringmq_takeover_seconds_count") == Some(1.0)
        }),
        "{text}"
    );
}

#[test]
fn the_imposed_keepalive_and_its_source_show_in_the_api() {
    let (broker, http_addr) = start_http(&["--min-keepalive", "20"]);
    let (_c, ack) =
        RawClient::connected(broker.local_addr(), &ConnectOpts::v5("low").keep_alive(5));
    assert_eq!(ack.code, 0);
    let v = json(http_addr, "/api/v1/clients/low");
    assert_eq!(v["keepalive_secs"], 20);
    assert_eq!(v["keepalive_imposed_by_server"], true);
    assert_eq!(v["keepalive_source"], "raised_to_min");
}

#[test]
fn a_trickled_or_garbage_request_does_not_hold_the_listener() {
    use std::io::{Read, Write};
    let (_broker, http_addr) = start_http(&[]);
    // Garbage gets 400.
    let mut bad = std::net::TcpStream::connect(http_addr).unwrap();
    bad.set_read_timeout(Some(PROMPT)).unwrap();
    bad.write_all(b"\x00\x01\x02 nonsense\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = bad.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    // A client that never finishes its head is answered 408 and closed
    // within the head deadline, while others are served meanwhile.
    let mut slow = std::net::TcpStream::connect(http_addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
    assert_eq!(http(http_addr, "GET", "/metrics", None).0, 200);
    let started = std::time::Instant::now();
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(started.elapsed() < Duration::from_secs(8));
}
