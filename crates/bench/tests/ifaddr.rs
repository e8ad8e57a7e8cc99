//! `--ifaddr`: connections from two loopback source addresses to a ringmq
//! broker on port 0 all connect, spread round robin. (Results, never
//! speed.)

use std::process::Command;

mod common;

#[test]
fn connections_bind_their_source_addresses_round_robin() {
    let broker = common::broker();
    let port = broker.local_addr().port().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_ringmq-bench"))
        .args(["conn", "-n", "20", "--port", &port])
        .args(["--ifaddr", "127.0.0.2,127.0.0.3", "--json", "--quiet"])
        .output()
        .expect("ringmq-bench runs");
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{json}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let int = |key: &str| -> u64 {
        json.split(&format!("\"{key}\":"))
            .nth(1)
            .and_then(|r| r.split([',', '}']).next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{key} in {json}"))
    };
    assert_eq!(int("connections_ok"), 20, "{json}");
    assert_eq!(int("source_127.0.0.2_connections"), 10, "{json}");
    assert_eq!(int("source_127.0.0.3_connections"), 10, "{json}");
}

#[test]
fn a_bad_source_address_names_the_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_ringmq-bench"))
        .args([
            "conn",
            "-n",
            "1",
            "--port",
            "1",
            "--ifaddr",
            "127.0.0.2,nope",
        ])
        .output()
        .expect("ringmq-bench runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--ifaddr"), "{err}");
}
