//! `storm --cut close`: 50 clients with wills against a ringmq broker on a
//! loopback port 0 all close at once; every will arrives. (Results, never
//! speed.)

use std::process::Command;

mod common;

#[test]
fn a_close_storm_gets_every_will() {
    let broker = common::broker();
    let port = broker.local_addr().port().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_ringmq-bench"))
        .args(["storm", "--cut", "close", "-n", "50", "--port", &port])
        .args(["--canaries", "1", "--json", "--quiet"])
        .output()
        .expect("ringmq-bench runs");
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(json.contains("\"clients_connected\":50"), "{json}");
    assert!(json.contains("\"will_never\":0"), "{json}");
}
