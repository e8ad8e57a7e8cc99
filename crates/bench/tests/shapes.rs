//! The Open MQTT Benchmark shapes against a ringmq broker on a loopback
//! port 0: p2p at QoS 2 both ways and a $share group at QoS 1 under a
//! ramp deliver every message exactly once as the tool counts them. (Flags
//! and results, never speed.)

use std::process::Command;

mod common;
use common::broker;

/// Run the tool with `args` and `--json`; the integer `key`s of its line.
fn run(port: u16, args: &[&str], keys: &[&str]) -> (Vec<u64>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ringmq-bench"))
        .args(args)
        .args(["--port", &port.to_string(), "--json", "--quiet"])
        .output()
        .expect("ringmq-bench runs");
    let json = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{json}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let values = keys
        .iter()
        .map(|k| {
            json.split(&format!("\"{k}\":"))
                .nth(1)
                .and_then(|r| r.split([',', '}']).next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{k} in {json}"))
        })
        .collect();
    (values, json)
}

#[test]
fn p2p_at_qos_2_delivers_each_message_once() {
    let b = broker();
    let (v, json) = run(
        b.local_addr().port(),
        &["p2p", "-P", "3", "--qos", "2", "--messages", "200"],
        &[
            "sent",
            "delivered",
            "expected",
            "lost",
            "duplicates",
            "puback",
        ],
    );
    let [sent, delivered, expected, lost, dups, comp] = v[..] else {
        unreachable!()
    };
    assert_eq!(sent, 600, "{json}");
    assert_eq!(
        (delivered, expected, lost, dups),
        (600, 600, 0, 0),
        "{json}"
    );
    assert_eq!(comp, 600, "every QoS 2 exchange completed: {json}");
    assert!(json.contains("\"scenario\":\"p2p\""), "{json}");
    assert!(json.contains("\"subscribers\":3"), "{json}");
}

#[test]
fn a_shared_group_gets_each_message_once_under_a_ramp() {
    let b = broker();
    let (v, json) = run(
        b.local_addr().port(),
        &[
            "sharedsub",
            "-P",
            "2",
            "-S",
            "3",
            "--qos",
            "1",
            "--ramp",
            "200,200,0.5",
            "--duration-secs",
            "1",
        ],
        &["sent", "delivered", "expected", "lost", "duplicates"],
    );
    let [sent, delivered, expected, lost, dups] = v[..] else {
        unreachable!()
    };
    // 0.5 s at 200/s, then 0.5 s at 400/s: about 300.
    assert!((200..=350).contains(&sent), "{json}");
    assert_eq!(expected, sent, "one delivery per message: {json}");
    assert_eq!((delivered, lost, dups), (sent, 0, 0), "{json}");
    assert!(json.contains("\"shared_group\":\"bench\""), "{json}");
}
