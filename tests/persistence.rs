//! Persistence (issue 16) through the real binary: `--persistence-dir`,
//! `--fsync`, `--compact-log-bytes`. Each test starts `ringmq` as a child
//! process on a directory, builds state over MQTT, kills the process
//! (SIGKILL unless it tests a graceful stop), starts a new one on the same
//! directory and checks what came back: persistent sessions (v5 and 3.1.1),
//! their subscriptions with options and identifiers, queued and in-flight
//! QoS 1/2 messages in both directions with packet ids, DUP flags and PUBREL
//! state, wills and their delays, retained messages, session expiry across
//! the downtime, damaged log tails, a changed shard count, the directory
//! lock and the control case without persistence.
//!
//! The guarantee a SIGKILL test relies on: a PUBACK, PUBREC, SUBACK or a
//! CONNACK granting a persistent session leaves only after the records it
//! depends on are in the kernel, for a publisher and a subscriber session on
//! the SAME shard (a message routed to another shard may not be covered).
//! So every SIGKILL test either runs `--shards 1` or picks its client ids
//! with `id_on_shard(prefix, 0)` (the test brokers run `--shards 2`, the
//! `SHARDS` that `id_on_shard` assumes), and says which in a comment.
//! Records are appended to a shard's log in order, so an acknowledgement
//! received for a later packet on a shard also proves every earlier record
//! of that shard written; the tests use that (a later SUBACK on the same
//! shard) where the state they check (a session that left, a will timer)
//! has no acknowledgement of its own.
//!
//! Nothing here sleeps for a fixed time: every wait is a read with a
//! deadline or `poll_until`.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::process::Process;
use common::*;

// ---------------------------------------------------------------------------
// The broker process
// ---------------------------------------------------------------------------

/// A running broker and the address of its MQTT listener.
struct Node {
    process: Process,
    addr: SocketAddr,
}

/// The flags every broker here runs with (loopback port 0, fast keep-alive
/// tick, no $SYS messages: they are retained and would be persisted too).
fn base_args(shards: usize) -> Vec<String> {
    [
        "--listen",
        "127.0.0.1:0",
        "--shards",
        &shards.to_string(),
        "--keepalive-tick-ms",
        "20",
        "--sys-interval",
        "0",
        "--log",
        "info",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Starts the binary with `shards` shards on persistence directory `dir`
/// (none: persistence off), plus `extra` flags. With a directory, waits for
/// the `persistence: recovered` log line the contract promises at every
/// start.
fn start(dir: Option<&str>, shards: usize, extra: &[&str]) -> Node {
    let mut args = base_args(shards);
    if let Some(dir) = dir {
        args.push("--persistence-dir".into());
        args.push(dir.into());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut process, addr) = Process::start(&args, "mqtt://");
    if dir.is_some() {
        process.wait_log("containing `persistence: recovered`", |l| {
            l.contains("persistence: recovered")
        });
    }
    Node { process, addr }
}

impl Node {
    /// SIGKILL (std's `Child::kill`) and reap.
    fn sigkill(mut self) {
        self.process.child.kill().expect("SIGKILL the broker");
        let status = self.process.child.wait().expect("wait for the broker");
        assert!(!status.success(), "a SIGKILLed broker exited with 0");
    }

    /// Sends `signal` (SIGTERM, SIGINT) and waits for the exit; asserts it
    /// exited by itself with status 0.
    fn stop_with(mut self, signal: libc::c_int) {
        self.process.signal(signal);
        let mut status = None;
        let exited = poll_until(Duration::from_secs(10), || {
            status = self.process.child.try_wait().expect("wait");
            status.is_some()
        });
        self.process.lines.extend(self.process.log.try_iter());
        assert!(
            exited,
            "no exit within 10 s of signal {signal}; log {:#?}",
            self.process.lines
        );
        assert!(
            status.is_some_and(|s| s.success()),
            "exit status {status:?} after signal {signal}; log {:#?}",
            self.process.lines
        );
    }

    /// Every log line so far (the ones read and the ones waiting).
    fn log_lines(&mut self) -> Vec<String> {
        self.process.lines.extend(self.process.log.try_iter());
        self.process.lines.clone()
    }

    /// The address of the `--http-listen` listener, from its log line.
    fn http_addr(&mut self) -> SocketAddr {
        self.process
            .wait_log("saying the HTTP listener started", |l| {
                l.contains("HTTP listener") && l.contains("addr=")
            });
        let line = self
            .process
            .lines
            .iter()
            .find(|l| l.contains("HTTP listener") && l.contains("addr="))
            .expect("the HTTP listener line");
        let rest = &line[line.find("addr=").unwrap() + 5..];
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
            .unwrap_or(rest.len());
        rest[..end].parse().expect("the HTTP listen address")
    }
}

/// Runs the binary with `args` until it exits (it is expected to refuse to
/// start) and answers its status and stderr. Panics (killing it) when it
/// logs that it started or is still running after 10 s.
fn run_to_exit(args: &[String]) -> (ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringmq"))
        .args(args)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the ringmq binary");
    let stderr = child.stderr.take().expect("stderr");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        })
    };
    let mut status = None;
    let mut started = false;
    poll_until(Duration::from_secs(10), || {
        status = child.try_wait().expect("wait");
        started = lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("ringmq started"));
        status.is_some() || started
    });
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        let _ = reader.join();
        panic!(
            "ringmq {args:?} did not refuse to start (started: {started}); stderr {:#?}",
            lines.lock().unwrap()
        );
    }
    let _ = reader.join();
    let text = lines.lock().unwrap().join("\n");
    (status.unwrap(), text)
}

/// A persistence directory inside `tmp` that does not exist yet (the
/// broker creates it).
fn data_dir(tmp: &TempDir) -> String {
    tmp.path_str("data")
}

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

/// A v5 CONNECT with Session Expiry 3600 and `clean` start.
fn persistent(id: &str, clean: bool) -> ConnectOpts {
    ConnectOpts::v5(id).clean(clean).session_expiry(3600)
}

/// Connects `id` as a new persistent v5 session (clean start, expiry 3600).
fn fresh_session(addr: SocketAddr, id: &str) -> RawClient {
    let (c, ack) = RawClient::connected(addr, &persistent(id, true));
    assert!(!ack.session_present, "clean start with Session Present 1");
    c
}

/// Reconnects `opts` (clean start 0) and asserts Session Present 1.
fn resume_with(addr: SocketAddr, opts: &ConnectOpts, why: &str) -> RawClient {
    assert!(!opts.clean);
    let (c, ack) = RawClient::connected(addr, opts);
    assert!(
        ack.session_present,
        "{why}: {} reconnected with clean start 0 and got Session Present 0: the session was lost",
        opts.client_id
    );
    c
}

/// Reconnects the v5 session `id` (clean start 0, expiry 3600), asserting
/// Session Present 1.
fn resume(addr: SocketAddr, id: &str, why: &str) -> RawClient {
    resume_with(addr, &persistent(id, false), why)
}

/// Sends a normal DISCONNECT and waits for the broker to close; asserts
/// nothing came before the close.
fn leave(mut c: RawClient) {
    let v5 = c.v5;
    let bytes = if v5 {
        disconnect_v5(0)
    } else {
        DISCONNECT_V3.to_vec()
    };
    c.send(&bytes).expect("send DISCONNECT");
    let got = c.expect_closed(PROMPT, "after DISCONNECT");
    assert!(got.is_empty(), "packets before the close: {got:?}");
}

/// A packet id for the `i`-th message of a run (1..=65535).
fn pid(i: usize) -> u16 {
    (i % 65_535) as u16 + 1
}

/// Publishes each payload at QoS 1 on `topic` and waits for each PUBACK
/// (success).
fn publish_all(p: &mut RawClient, topic: &str, payloads: &[String]) {
    for (i, payload) in payloads.iter().enumerate() {
        p.publish1_props(topic, payload.as_bytes(), pid(i), &[]);
    }
}

/// Publishes at QoS 1 with the RETAIN flag (and v5 `props`), waiting for a
/// successful PUBACK.
fn publish_retained(p: &mut RawClient, topic: &str, payload: &[u8], id: u16, props: &[u8]) {
    p.send(&publish_packet_full(
        topic,
        payload,
        1,
        id,
        true,
        false,
        Some(props),
    ))
    .expect("send PUBLISH");
    let a = p.expect_packet(PROMPT, "PUBACK");
    assert_eq!(a.ack(PUBACK), (id, 0), "PUBACK of retained {topic}");
}

/// A delivered PUBLISH with its DUP flag.
#[derive(Clone, Debug)]
struct Got {
    info: PublishInfo,
    dup: bool,
}

impl Got {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.info.payload).into_owned()
    }
}

/// Reads PUBLISHes on `c` until `n` came (waiting up to PROMPT for each),
/// then 300 ms more to catch extras, acknowledging as the QoS requires
/// (PUBACK; PUBREC, then PUBCOMP for the PUBREL) and answering every PUBREL
/// for ids it PUBREC'd. Any other packet, or a PUBREL for an id it did not
/// PUBREC, panics with everything read so far. Answers every PUBLISH in
/// arrival order.
fn collect(c: &mut RawClient, n: usize) -> Vec<Got> {
    let mut got = Vec::new();
    let mut awaiting: Vec<u16> = Vec::new();
    let mut extra_until: Option<Instant> = None;
    loop {
        let timeout = match extra_until {
            Some(t) => t.saturating_duration_since(Instant::now()),
            None => PROMPT,
        };
        if got.len() >= n && extra_until.is_none() {
            extra_until = Some(Instant::now() + Duration::from_millis(300));
            continue;
        }
        let p = match c.read_packet(timeout) {
            Ok(p) => p,
            Err(ReadError::Timeout) => {
                if extra_until.is_some() || got.len() < n {
                    break;
                }
                continue;
            }
            Err(e) => panic!(
                "reading PUBLISHes: {e:?}; got {} of {n}: {:?}",
                got.len(),
                texts(&got)
            ),
        };
        match p.kind {
            PUBLISH => {
                let info = p.publish(c.v5);
                let dup = p.dup();
                match info.qos {
                    1 => c.send(&puback_packet(info.packet_id)).expect("PUBACK"),
                    2 => {
                        assert!(
                            !awaiting.contains(&info.packet_id),
                            "QoS 2 PUBLISH reusing packet id {} still awaiting PUBREL: {info:?}",
                            info.packet_id
                        );
                        c.send(&pubrec_packet(info.packet_id)).expect("PUBREC");
                        awaiting.push(info.packet_id);
                    }
                    _ => {}
                }
                got.push(Got { info, dup });
            }
            PUBREL => {
                let (id, code) = p.ack(PUBREL);
                assert_eq!(code, 0, "PUBREL reason code: {p:?}");
                let Some(at) = awaiting.iter().position(|&a| a == id) else {
                    panic!(
                        "PUBREL for packet id {id}, which was not PUBREC'd here ({awaiting:?}); \
                         raw {p:?}; PUBLISHes so far {:?}",
                        texts(&got)
                    )
                };
                awaiting.remove(at);
                c.send(&pubcomp_packet(id)).expect("PUBCOMP");
            }
            _ => panic!(
                "unexpected packet {p:?} while reading PUBLISHes; got so far {:?}",
                texts(&got)
            ),
        }
    }
    assert!(
        awaiting.is_empty(),
        "no PUBREL came for PUBREC'd packet ids {awaiting:?}"
    );
    got
}

fn texts(got: &[Got]) -> Vec<String> {
    got.iter().map(Got::text).collect()
}

/// Asserts `got` is exactly `want` (same messages, same order), explaining
/// the difference: first mismatch, missing, duplicated, unexpected.
fn assert_sequence(got: &[String], want: &[String], what: &str) {
    if got == want {
        return;
    }
    let first = got
        .iter()
        .zip(want)
        .position(|(g, w)| g != w)
        .unwrap_or(got.len().min(want.len()));
    let missing: Vec<&String> = want.iter().filter(|w| !got.contains(w)).collect();
    let mut seen = HashSet::new();
    let duplicated: Vec<&String> = got.iter().filter(|g| !seen.insert(*g)).collect();
    let unexpected: Vec<&String> = got.iter().filter(|g| !want.contains(g)).collect();
    panic!(
        "{what}: got {} messages, want {}; first difference at index {first} (got {:?}, want {:?}); \
         missing {missing:?}; duplicated {duplicated:?}; unexpected {unexpected:?}",
        got.len(),
        want.len(),
        got.get(first),
        want.get(first),
    );
}

/// `prefix0` .. `prefix{n-1}`.
fn numbered(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

// ---------------------------------------------------------------------------
// Files under the persistence directory
// ---------------------------------------------------------------------------

/// Every file under `dir` (recursively) whose name starts with `prefix`,
/// with its length.
fn files_named(dir: &Path, prefix: &str) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.map_while(Result::ok) {
        let path = e.path();
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            out.extend(files_named(&path, prefix));
        } else if e.file_name().to_string_lossy().starts_with(prefix) {
            out.push((path, meta.len()));
        }
    }
    out
}

/// Bytes of every file under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    files_named(dir, "").iter().map(|(_, n)| n).sum()
}

/// A listing of `dir` for failure messages.
fn listing(dir: &Path) -> Vec<(PathBuf, u64)> {
    files_named(dir, "")
}

// ---------------------------------------------------------------------------
// 1, 9: QoS 1 to offline persistent sessions survives SIGKILL
// ---------------------------------------------------------------------------

/// A v5 (expiry 3600) and a 3.1.1 (clean session 0) subscriber on `t/#`
/// QoS 1 leave; a publisher sends `n` QoS 1 messages and gets every PUBACK;
/// SIGKILL; restart on the same directory: both sessions are present and
/// get all `n` exactly once, in order, DUP 0 (never sent before).
///
/// Same shard: the publisher and both subscribers have ids on shard 0 of
/// `--shards 2`.
fn qos1_offline_survives_sigkill(name: &str, n: usize, extra: &[&str], rumqttc_publisher: bool) {
    let tmp = TempDir::new(name);
    let dir = data_dir(&tmp);
    let sub5 = id_on_shard(&format!("{name}-sub5-"), 0);
    let sub3 = id_on_shard(&format!("{name}-sub3-"), 0);
    let publisher = id_on_shard(&format!("{name}-pub-"), 0);
    let v3_opts = ConnectOpts::v3(&sub3).clean(false);

    let node = start(Some(&dir), 2, extra);
    let mut s5 = fresh_session(node.addr, &sub5);
    assert_eq!(
        s5.subscribe(1, &[("t/#", 1)]),
        [1],
        "SUBACK of the v5 session"
    );
    leave(s5);
    let (mut s3, ack) = RawClient::connected(node.addr, &v3_opts);
    assert!(
        !ack.session_present,
        "a new 3.1.1 session with Session Present 1"
    );
    assert_eq!(
        s3.subscribe(1, &[("t/#", 1)]),
        [1],
        "SUBACK of the v3 session"
    );
    leave(s3);

    let payloads = numbered(&format!("{name}-msg-"), 0..n);
    if rumqttc_publisher {
        use rumqttc::v5::mqttbytes::QoS;
        let (mut p, _) = V5Client::connect(node.addr, &publisher, |_| {});
        for payload in &payloads {
            p.publish("t/x", QoS::AtLeastOnce, payload.as_bytes());
        }
    } else {
        let (mut p, _) = RawClient::connected(node.addr, &ConnectOpts::v5(&publisher));
        publish_all(&mut p, "t/x", &payloads);
    }
    node.sigkill();

    let node = start(Some(&dir), 2, extra);
    for (who, opts) in [("v5", persistent(&sub5, false)), ("3.1.1", v3_opts.clone())] {
        let mut c = resume_with(node.addr, &opts, "after SIGKILL");
        let got = collect(&mut c, n);
        assert_sequence(
            &texts(&got),
            &payloads,
            &format!("{who} session after SIGKILL"),
        );
        for g in &got {
            assert_eq!(g.info.topic, "t/x");
            assert_eq!(g.info.qos, 1, "{who}: {g:?}");
            assert!(
                !g.dup,
                "{who}: a queued message never sent came with DUP 1: {g:?}"
            );
        }
        leave(c);
    }
    node.sigkill();
}

/// Test 1.
#[test]
fn qos1_to_an_offline_session_survives_sigkill() {
    qos1_offline_survives_sigkill("p1", 200, &[], false);
}

/// Test 9: `--fsync always`.
#[test]
fn qos1_survives_sigkill_with_fsync_always() {
    qos1_offline_survives_sigkill("p9a", 50, &["--fsync", "always"], true);
}

/// Test 9 (also): `--fsync never` still writes every record to the kernel
/// before the acknowledgement, so a SIGKILL (not a power cut) loses nothing.
#[test]
fn qos1_survives_sigkill_with_fsync_never() {
    qos1_offline_survives_sigkill("p9n", 50, &["--fsync", "never"], true);
}

/// Test 9 (also): `--fsync interval` with its interval given.
#[test]
fn qos1_survives_sigkill_with_fsync_interval_50ms() {
    qos1_offline_survives_sigkill(
        "p9i",
        50,
        &["--fsync", "interval", "--fsync-interval-ms", "50"],
        false,
    );
}

// ---------------------------------------------------------------------------
// 2: outbound QoS 2, queued and in flight at the kill
// ---------------------------------------------------------------------------

/// A QoS 2 subscriber (raw socket) is online for m0..m9: it completes
/// m0..m2, PUBRECs m3..m5 (gets their PUBRELs, sends no PUBCOMP) and does
/// not answer m6..m9; it DISCONNECTs (session kept); m10..m19 are queued
/// while it is away; SIGKILL; restart. On resuming: PUBREL (same ids) for
/// m3..m5 and no PUBLISH of them, PUBLISH with DUP 1 and the same ids for
/// m6..m9, then m10..m19 (DUP 0), in order; nothing for m0..m2. Each of
/// m0..m19 reaches the application exactly once overall.
///
/// Same shard: subscriber and publisher ids on shard 0 of `--shards 2`.
#[test]
fn qos2_queued_and_in_flight_survive_sigkill_without_duplicates() {
    let tmp = TempDir::new("p2");
    let dir = data_dir(&tmp);
    let sub = id_on_shard("p2-sub-", 0);
    let publisher = id_on_shard("p2-pub-", 0);
    let all = numbered("m", 0..20);

    let node = start(Some(&dir), 2, &[]);
    let mut s = fresh_session(node.addr, &sub);
    assert_eq!(s.subscribe(1, &[("q2/#", 2)]), [2]);
    let (mut p, _) = RawClient::connected(node.addr, &ConnectOpts::v5(&publisher));
    for (i, m) in all[..10].iter().enumerate() {
        p.publish2("q2/a", m.as_bytes(), pid(i), &[]);
    }
    // The application's deliveries, over both runs (QoS 2 method A: a
    // message is delivered when its PUBLISH is PUBREC'd).
    let mut delivered: Vec<String> = Vec::new();
    let mut ids = Vec::new();
    for (i, m) in all[..10].iter().enumerate() {
        let (info, dup) = s.expect_publish_raw(PROMPT);
        assert_eq!(info.payload, m.as_bytes(), "live PUBLISH {i}: {info:?}");
        assert_eq!(info.qos, 2, "{info:?}");
        assert!(!dup, "first delivery with DUP 1: {info:?}");
        ids.push(info.packet_id);
    }
    for (i, &id) in ids[..6].iter().enumerate() {
        s.send(&pubrec_packet(id)).expect("PUBREC");
        delivered.push(all[i].clone());
    }
    let mut released = Vec::new();
    for _ in 0..6 {
        let p = s.expect_packet(PROMPT, "PUBREL");
        let (id, code) = p.ack(PUBREL);
        assert_eq!(code, 0, "{p:?}");
        released.push(id);
    }
    released.sort_unstable();
    let mut want_released = ids[..6].to_vec();
    want_released.sort_unstable();
    assert_eq!(released, want_released, "PUBRELs before the kill");
    for &id in &ids[..3] {
        s.send(&pubcomp_packet(id)).expect("PUBCOMP");
    }
    // m3..m5: PUBREC'd, PUBREL received, no PUBCOMP. m6..m9: unanswered.
    leave(s);
    // Queued while away; each PUBREC (after the records it depends on)
    // also proves every earlier record of shard 0 written.
    for (i, m) in all[10..].iter().enumerate() {
        p.publish2("q2/a", m.as_bytes(), pid(10 + i), &[]);
    }
    node.sigkill();

    let node = start(Some(&dir), 2, &[]);
    let mut s = resume(node.addr, &sub, "QoS 2 session after SIGKILL");
    // Read until 3 PUBRELs and 14 PUBLISHes came and every flow is complete,
    // then 500 ms more: nothing else may come.
    let mut resent_pubrels: Vec<u16> = Vec::new();
    let mut publishes: Vec<(String, u16, bool, u8)> = Vec::new();
    let mut awaiting: Vec<u16> = Vec::new();
    let mut trace: Vec<RawPacket> = Vec::new();
    // Packet ids of m3..m9, in use until their flows complete.
    let mut unreleased: Vec<u16> = ids[3..].to_vec();
    let deadline = Instant::now() + 2 * PROMPT;
    let mut settle: Option<Instant> = None;
    loop {
        if settle.is_none()
            && resent_pubrels.len() >= 3
            && publishes.len() >= 14
            && awaiting.is_empty()
        {
            settle = Some(Instant::now() + Duration::from_millis(500));
        }
        let until = settle.unwrap_or(deadline);
        let left = until.saturating_duration_since(Instant::now());
        let p = match s.read_packet(left) {
            Ok(p) => p,
            Err(ReadError::Timeout) if settle.is_some() => break,
            Err(e) => panic!(
                "after restart: {e:?} with {} PUBRELs {resent_pubrels:?} and {} PUBLISHes {publishes:?} \
                 (awaiting PUBREL for {awaiting:?}); raw packets {trace:?}",
                resent_pubrels.len(),
                publishes.len()
            ),
        };
        trace.push(p.clone());
        match p.kind {
            PUBREL => {
                let (id, code) = p.ack(PUBREL);
                assert_eq!(code, 0, "{p:?}");
                if let Some(at) = awaiting.iter().position(|&a| a == id) {
                    awaiting.remove(at);
                } else {
                    assert!(
                        !resent_pubrels.contains(&id),
                        "PUBREL {id} resent twice; raw {trace:?}"
                    );
                    resent_pubrels.push(id);
                    unreleased.retain(|&u| u != id);
                }
                s.send(&pubcomp_packet(id)).expect("PUBCOMP");
            }
            PUBLISH => {
                let info = p.publish(true);
                assert!(
                    !awaiting.contains(&info.packet_id)
                        && (p.dup() || !unreleased.contains(&info.packet_id)),
                    "PUBLISH with packet id {} still in use; raw {trace:?}",
                    info.packet_id
                );
                publishes.push((
                    String::from_utf8_lossy(&info.payload).into_owned(),
                    info.packet_id,
                    p.dup(),
                    info.qos,
                ));
                s.send(&pubrec_packet(info.packet_id)).expect("PUBREC");
                awaiting.push(info.packet_id);
                unreleased.retain(|&u| u != info.packet_id);
            }
            _ => panic!("unexpected packet after restart: {p:?}; raw {trace:?}"),
        }
    }
    resent_pubrels.sort_unstable();
    let mut want = ids[3..6].to_vec();
    want.sort_unstable();
    assert_eq!(
        resent_pubrels,
        want,
        "PUBRELs resent for the PUBREC'd m3..m5 (ids {:?}); raw {trace:?}",
        &ids[3..6]
    );
    let payloads: Vec<String> = publishes.iter().map(|p| p.0.clone()).collect();
    assert_sequence(
        &payloads,
        &all[6..],
        "PUBLISHes after restart (m6..m9 resent, m10..m19 queued)",
    );
    for (i, (payload, id, dup, qos)) in publishes.iter().enumerate() {
        assert_eq!(*qos, 2, "{payload}");
        if i < 4 {
            assert!(
                *dup,
                "{payload}: resent in-flight PUBLISH without DUP 1; raw {trace:?}"
            );
            assert_eq!(
                *id,
                ids[6 + i],
                "{payload}: resent with another packet id; raw {trace:?}"
            );
        } else {
            assert!(!*dup, "{payload}: first delivery with DUP 1; raw {trace:?}");
        }
    }
    delivered.extend(payloads);
    assert_sequence(
        &delivered,
        &all,
        "each message delivered exactly once overall",
    );
    leave(s);
    node.sigkill();
}

// ---------------------------------------------------------------------------
// 3: inbound QoS 2 state
// ---------------------------------------------------------------------------

/// A client publishes QoS 2 with ids 7 and 8, gets both PUBRECs, SIGKILL
/// before any PUBREL; restart; it resumes (Session Present 1), resends the
/// PUBLISH of 7 with DUP 1 (gets PUBREC 7 again, success), then PUBREL 7 and
/// 8: PUBCOMP success for both (not 0x92, Packet Identifier not found). A
/// persistent subscriber gets each message exactly once.
///
/// Same shard: publisher and subscriber ids on shard 0 of `--shards 2`.
#[test]
fn inbound_qos2_state_survives_sigkill() {
    let tmp = TempDir::new("p3");
    let dir = data_dir(&tmp);
    let sub = id_on_shard("p3-sub-", 0);
    let publisher = id_on_shard("p3-pub-", 0);

    let node = start(Some(&dir), 2, &[]);
    let mut w = fresh_session(node.addr, &sub);
    assert_eq!(w.subscribe(1, &[("in2/#", 1)]), [1]);
    leave(w);
    let mut c = fresh_session(node.addr, &publisher);
    for (id, payload) in [(7u16, "seven"), (8, "eight")] {
        c.send(&publish_packet_full(
            "in2/x",
            payload.as_bytes(),
            2,
            id,
            false,
            false,
            Some(&[]),
        ))
        .expect("send PUBLISH");
        let p = c.expect_packet(PROMPT, "PUBREC");
        assert_eq!(p.ack(PUBREC), (id, 0), "PUBREC before the kill: {p:?}");
    }
    node.sigkill();

    let node = start(Some(&dir), 2, &[]);
    let mut c = resume(node.addr, &publisher, "QoS 2 publisher after SIGKILL");
    c.send(&publish_packet_full(
        "in2/x",
        b"seven",
        2,
        7,
        false,
        true,
        Some(&[]),
    ))
    .expect("resend PUBLISH 7 with DUP");
    let p = c.expect_packet(PROMPT, "PUBREC for the resent PUBLISH 7");
    assert_eq!(p.ack(PUBREC), (7, 0), "PUBREC of the resent 7: {p:?}");
    for id in [7u16, 8] {
        c.send(&pubrel_packet(id)).expect("send PUBREL");
        let p = c.expect_packet(PROMPT, "PUBCOMP");
        assert_eq!(
            p.ack(PUBCOMP),
            (id, 0),
            "PUBCOMP for PUBREL {id} after restart (0x92 = the broker forgot the id): {p:?}"
        );
    }
    leave(c);
    let mut w = resume(node.addr, &sub, "subscriber after SIGKILL");
    let got = collect(&mut w, 2);
    let mut payloads = texts(&got);
    payloads.sort();
    assert_sequence(
        &payloads,
        &["eight".to_string(), "seven".to_string()],
        "inbound QoS 2 messages routed exactly once",
    );
    leave(w);
    node.sigkill();
}

// ---------------------------------------------------------------------------
// 4: retained messages and subscriptions
// ---------------------------------------------------------------------------

/// Retained r/a, r/b (then cleared with an empty payload), r/c, r/d (with a
/// Message Expiry of 3600 s) and a control topic; a persistent session
/// subscribed to `s/x/#` (QoS 1, identifier 7) and `s/y` (QoS 2, No Local,
/// identifier 9). SIGKILL; restart: a fresh subscriber to `r/#` gets r/a,
/// r/c, r/d (RETAIN set, r/d with a remaining expiry in (0, 3600]) and not
/// r/b; the resumed session, without subscribing again, gets a QoS 2
/// publish on s/x/1 at its granted QoS 1 with identifier 7, does not get its
/// own publish on s/y (No Local) and gets another client's on s/y at QoS 2
/// with identifier 9; a shared subscription ($share/g/sh/#, identifier 11)
/// still delivers.
///
/// `--shards 1`: retained messages live on their topic's shard, which the
/// same-shard guarantee does not name; with one shard everything is local.
#[test]
fn retained_messages_and_subscriptions_survive_sigkill() {
    let tmp = TempDir::new("p4");
    let dir = data_dir(&tmp);
    let node = start(Some(&dir), 1, &[]);
    let mut s = fresh_session(node.addr, "p4-sub");
    assert_eq!(s.subscribe_v5(1, Some(7), &[("s/x/#", 1)]), [1]);
    assert_eq!(s.subscribe_v5(2, Some(9), &[("s/y", 2 | NO_LOCAL)]), [2]);
    assert_eq!(s.subscribe_v5(3, Some(11), &[("$share/g/sh/#", 1)]), [1]);
    leave(s);
    let (mut p, _) = RawClient::connected(node.addr, &ConnectOpts::v5("p4-pub"));
    publish_retained(&mut p, "r/a", b"A", 1, &[]);
    publish_retained(&mut p, "r/b", b"B", 2, &[]);
    publish_retained(&mut p, "r/c", b"C", 3, &[]);
    publish_retained(&mut p, "r/d", b"D", 4, &expiry_prop(3600));
    publish_retained(&mut p, "ctl", b"control", 5, &[]);
    publish_retained(&mut p, "r/b", b"", 6, &[]);
    node.sigkill();

    let node = start(Some(&dir), 1, &[]);
    let (mut f, _) = RawClient::connected(node.addr, &ConnectOpts::v5("p4-fresh"));
    let got = retained_on(&mut f, 1, "r/#", 1, "ctl");
    let by_topic: BTreeMap<String, PublishInfo> =
        got.iter().map(|p| (p.topic.clone(), p.clone())).collect();
    assert_eq!(
        by_topic
            .iter()
            .map(|(t, p)| (t.as_str(), String::from_utf8_lossy(&p.payload).into_owned()))
            .collect::<Vec<_>>(),
        [
            ("r/a", "A".to_string()),
            ("r/c", "C".to_string()),
            ("r/d", "D".to_string())
        ],
        "retained messages after SIGKILL (r/b was cleared): {got:?}"
    );
    assert_eq!(got.len(), 3, "a retained message sent twice: {got:?}");
    for p in &got {
        assert!(p.retain, "retained message without RETAIN: {p:?}");
    }
    assert!(
        !by_topic["r/a"].props.has(PROP_MESSAGE_EXPIRY),
        "{:?}",
        by_topic["r/a"]
    );
    let left = by_topic["r/d"].props.int(PROP_MESSAGE_EXPIRY);
    assert!(
        left.is_some_and(|l| l > 0 && l <= 3600),
        "r/d's remaining Message Expiry after restart: {left:?} ({:?})",
        by_topic["r/d"]
    );
    leave(f);

    let mut s = resume(node.addr, "p4-sub", "subscriber after SIGKILL");
    let (mut p, _) = RawClient::connected(node.addr, &ConnectOpts::v5("p4-pub"));
    p.publish2("s/x/1", b"x1", 1, &[]);
    let got = collect(&mut s, 1);
    assert_eq!(texts(&got), ["x1"], "s/x/# after restart");
    assert_eq!(got[0].info.topic, "s/x/1");
    assert_eq!(got[0].info.qos, 1, "granted QoS 1 lost: {:?}", got[0]);
    assert_eq!(
        got[0].info.props.ints(PROP_SUBSCRIPTION_ID),
        [7],
        "subscription identifier of s/x/# after restart: {:?}",
        got[0]
    );
    // Its own publish on s/y: No Local keeps it away.
    s.send(&publish_packet_full(
        "s/y",
        b"own",
        1,
        5,
        false,
        false,
        Some(&[]),
    ))
    .expect("send PUBLISH");
    let a = s.expect_packet(PROMPT, "PUBACK of its own publish");
    assert_eq!(
        a.kind, PUBACK,
        "a PUBLISH before the PUBACK: No Local lost? {a:?}"
    );
    let (id, code) = a.ack(PUBACK);
    assert!(
        id == 5 && (code == 0 || code == 0x10),
        "PUBACK of its own publish: {a:?}"
    );
    p.publish2("s/y", b"y1", 2, &[]);
    let got = collect(&mut s, 1);
    assert_eq!(
        texts(&got),
        ["y1"],
        "s/y after restart (\"own\" = No Local lost)"
    );
    assert_eq!(got[0].info.qos, 2, "{:?}", got[0]);
    assert_eq!(
        got[0].info.props.ints(PROP_SUBSCRIPTION_ID),
        [9],
        "subscription identifier of s/y after restart: {:?}",
        got[0]
    );
    p.publish1_props("sh/1", b"shared", 3, &[]);
    let got = collect(&mut s, 1);
    assert_eq!(
        texts(&got),
        ["shared"],
        "the shared subscription $share/g/sh/# after restart"
    );
    assert_eq!(
        got[0].info.props.ints(PROP_SUBSCRIPTION_ID),
        [11],
        "subscription identifier of the shared subscription after restart: {:?}",
        got[0]
    );
    leave(s);
    node.sigkill();
}

// ---------------------------------------------------------------------------
// 5: session expiry across the downtime
// ---------------------------------------------------------------------------

/// A session with expiry 1 s and one with 3600 s leave; SIGKILL within the
/// second; the clock passes 2.5 s after the first one left; restart: the
/// first resumes with Session Present 0 (its expiry passed while the broker
/// was down), the second with Session Present 1.
///
/// Same shard: both ids on shard 0 of `--shards 2`; the second one's SUBACK,
/// after the first one left, proves the first one's leaving written.
#[test]
fn session_expiry_counts_across_the_downtime() {
    let tmp = TempDir::new("p5");
    let dir = data_dir(&tmp);
    let short = id_on_shard("p5-short-", 0);
    let long = id_on_shard("p5-long-", 0);
    let short_opts = ConnectOpts::v5(&short).session_expiry(1);

    let node = start(Some(&dir), 2, &[]);
    let (mut a, _) = RawClient::connected(node.addr, &short_opts);
    assert_eq!(a.subscribe(1, &[("e/a", 1)]), [1]);
    let left_at = Instant::now();
    leave(a);
    let mut b = fresh_session(node.addr, &long);
    assert_eq!(b.subscribe(1, &[("e/b", 1)]), [1]);
    leave(b);
    node.sigkill();
    let killed_after = left_at.elapsed();
    assert!(
        killed_after < Duration::from_secs(1),
        "setup too slow: the broker was killed {killed_after:?} after the 1 s session left, \
         so its expiry did not pass during the downtime"
    );
    // The clock, not a sleep-then-assume: poll until 2.5 s passed since the
    // DISCONNECT was sent (1 s expiry plus room for second-granular clocks).
    assert!(poll_until(Duration::from_secs(5), || left_at.elapsed()
        > Duration::from_millis(2500)));

    let node = start(Some(&dir), 2, &[]);
    let (c, ack) = RawClient::connected(node.addr, &short_opts.clone().clean(false));
    assert!(
        !ack.session_present,
        "a session whose 1 s expiry passed during the downtime was still present {:?} after it left",
        left_at.elapsed()
    );
    leave(c);
    let c = resume(node.addr, &long, "3600 s session after the downtime");
    leave(c);
    node.sigkill();
}

// ---------------------------------------------------------------------------
// 6: a will whose delay passed during the downtime
// ---------------------------------------------------------------------------

/// A persistent subscriber on `will/#` leaves. W (session expiry 3600,
/// QoS 1 will on will/w with a 2 s delay) drops its socket (RST); once the
/// broker sees it gone (admin API), W2 (will on will/w2 with a 600 s delay)
/// connects and subscribes (the barrier), and the broker is SIGKILLed
/// within W's delay. The clock passes the delay; restart: the subscriber
/// resumes and gets W's will exactly once, and not W2's (its delay has not
/// passed).
///
/// Same shard: all ids on shard 0 of `--shards 2`.
#[test]
fn a_will_whose_delay_passed_during_the_downtime_is_published_at_start() {
    let tmp = TempDir::new("p6");
    let dir = data_dir(&tmp);
    let listener = id_on_shard("p6-listener-", 0);
    let w_id = id_on_shard("p6-w-", 0);
    let w2_id = id_on_shard("p6-w2-", 0);
    let mut will = WillOpts::new("will/w", "gone").delay(2);
    will.qos = 1;
    let mut will2 = WillOpts::new("will/w2", "gone too").delay(600);
    will2.qos = 1;

    let mut node = start(Some(&dir), 2, &["--http-listen", "127.0.0.1:0"]);
    let http = node.http_addr();
    let mut l = fresh_session(node.addr, &listener);
    assert_eq!(l.subscribe(1, &[("will/#", 1)]), [1]);
    leave(l);
    let (w, _) = RawClient::connected(node.addr, &persistent(&w_id, true).will(will));
    w.reset();
    let dropped_at = Instant::now();
    let path = format!("/api/v1/clients/{w_id}");
    let mut last = String::new();
    let gone = poll_until(PROMPT, || {
        let (status, _, body) = http_request(http, "GET", &path, None);
        last = format!("{status} {body}");
        status == 200
            && serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["connected"].as_bool())
                == Some(false)
    });
    assert!(gone, "the broker never saw W's socket close: {last}");
    let (mut w2, _) = RawClient::connected(node.addr, &persistent(&w2_id, true).will(will2));
    assert_eq!(w2.subscribe(1, &[("w2/none", 1)]), [1]);
    node.sigkill();
    let killed_after = dropped_at.elapsed();
    assert!(
        killed_after < Duration::from_secs(2),
        "setup too slow: killed {killed_after:?} after W dropped, past its 2 s will delay"
    );
    drop(w2);
    assert!(poll_until(Duration::from_secs(6), || dropped_at.elapsed()
        > Duration::from_millis(3500)));

    let node = start(Some(&dir), 2, &[]);
    let mut l = resume(node.addr, &listener, "will subscriber after SIGKILL");
    let got = collect(&mut l, 1);
    assert_eq!(
        got.iter()
            .map(|g| (g.info.topic.clone(), g.text()))
            .collect::<Vec<_>>(),
        [("will/w".to_string(), "gone".to_string())],
        "wills after the restart (W's delay passed during the downtime, W2's did not): {got:?}"
    );
    leave(l);
    node.sigkill();
}

// ---------------------------------------------------------------------------
// 7: damaged log tails
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Damage {
    /// Bytes appended after the last record.
    Garbage,
    /// The last 3 bytes cut off.
    Cut,
}

/// A persistent subscriber gets m0..m19 queued (QoS 1); SIGKILL; the largest
/// `log-*` file is damaged; restart: the broker starts, logs a line with
/// `truncated`, the file's path and `offset`; m20 is queued; SIGKILL;
/// restart: no `truncated` line this time (the first start truncated the
/// tail before appending), and the subscriber gets m0..m20 (with `Cut`, m19,
/// whose record was the last, may be missing).
///
/// Same shard: subscriber and publisher ids on shard 0 of `--shards 2`.
fn damaged_tail(name: &str, damage: Damage) {
    let tmp = TempDir::new(name);
    let dir = data_dir(&tmp);
    let sub = id_on_shard(&format!("{name}-sub-"), 0);
    let publisher = id_on_shard(&format!("{name}-pub-"), 0);
    let all = numbered("m", 0..21);

    let node = start(Some(&dir), 2, &[]);
    let mut s = fresh_session(node.addr, &sub);
    assert_eq!(s.subscribe(1, &[("d/#", 1)]), [1]);
    leave(s);
    let (mut p, _) = RawClient::connected(node.addr, &ConnectOpts::v5(&publisher));
    publish_all(&mut p, "d/x", &all[..20]);
    node.sigkill();

    let logs = files_named(Path::new(&dir), "log-");
    let (log, len) = logs
        .iter()
        .max_by_key(|(_, n)| *n)
        .cloned()
        .unwrap_or_else(|| panic!("no log-* file under {dir}: {:?}", listing(Path::new(&dir))));
    assert!(len > 0, "the largest log is empty: {logs:?}");
    match damage {
        Damage::Garbage => {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
            f.write_all(b"\xde\xad\xbe\xef garbage appended after the last record \x00\x01\x02")
                .unwrap();
        }
        Damage::Cut => {
            let f = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
            f.set_len(len - 3).unwrap();
        }
    }

    let mut node = start(Some(&dir), 2, &[]);
    let shown = log.display().to_string();
    node.process
        .wait_log("with `truncated`, the file's path and `offset`", |l| {
            l.contains("truncated") && l.contains("offset") && l.contains(&shown)
        });
    let (mut p, _) = RawClient::connected(node.addr, &ConnectOpts::v5(&publisher));
    p.publish1_props("d/x", all[20].as_bytes(), 1, &[]);
    node.sigkill();

    let mut node = start(Some(&dir), 2, &[]);
    let again: Vec<String> = node
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("truncated"))
        .collect();
    assert!(
        again.is_empty(),
        "the tail was truncated again at the next start (not truncated before appending?): {again:?}"
    );
    let mut s = resume(node.addr, &sub, "subscriber after a damaged log");
    let got = texts(&collect(&mut s, 21));
    let want: Vec<String> = match damage {
        Damage::Cut if !got.contains(&all[19]) => {
            all.iter().filter(|m| *m != &all[19]).cloned().collect()
        }
        _ => all.clone(),
    };
    assert_sequence(&got, &want, &format!("messages after {damage:?} damage"));
    leave(s);
    node.sigkill();
}

/// Test 7, garbage appended.
#[test]
fn garbage_after_the_last_record_is_truncated_and_the_broker_starts() {
    damaged_tail("p7g", Damage::Garbage);
}

/// Test 7, torn last record.
#[test]
fn a_torn_last_record_is_truncated_and_the_broker_starts() {
    damaged_tail("p7c", Damage::Cut);
}

// ---------------------------------------------------------------------------
// 8: a changed shard count
// ---------------------------------------------------------------------------

/// 20 persistent sessions, each subscribed to its own topic with one QoS 1
/// message queued, under `--shards 2`; SIGKILL; `--shards 1`: each is
/// present and gets its message (DUP 0), which it leaves unacknowledged;
/// a second message each is queued; SIGKILL; `--shards 3`: each is present
/// and gets the first again (DUP 1, same packet id) and the second.
///
/// Same shard: under `--shards 2` each message is published by a publisher
/// on its session's shard (one per shard); under `--shards 1` all is local.
#[test]
fn sessions_are_found_when_the_shard_count_changes() {
    const N: usize = 20;
    let tmp = TempDir::new("p8");
    let dir = data_dir(&tmp);
    let ids: Vec<String> = (0..N).map(|i| format!("p8-c{i}")).collect();
    let topic = |i: usize| format!("s8/{i}");
    let first = |i: usize| format!("first-{i}");
    let second = |i: usize| format!("second-{i}");
    let on_shard0 = (0..N)
        .filter(|&i| shard_for(ids[i].as_bytes(), 2) == 0)
        .count();
    assert!(
        on_shard0 > 0 && on_shard0 < N,
        "the ids do not spread over 2 shards"
    );

    let node = start(Some(&dir), 2, &[]);
    for (i, id) in ids.iter().enumerate() {
        let mut c = fresh_session(node.addr, id);
        assert_eq!(c.subscribe(1, &[(&topic(i), 1)]), [1]);
        leave(c);
    }
    let mut publishers: Vec<RawClient> = (0..2)
        .map(|shard| {
            let id = id_on_shard("p8-pub-", shard);
            RawClient::connected(node.addr, &ConnectOpts::v5(&id)).0
        })
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let p = &mut publishers[shard_for(id.as_bytes(), 2)];
        p.publish1_props(&topic(i), first(i).as_bytes(), pid(i), &[]);
    }
    drop(publishers);
    node.sigkill();

    let node = start(Some(&dir), 1, &[]);
    let mut first_ids = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let mut c = resume(node.addr, id, "--shards 2 -> 1");
        let (info, dup) = c.expect_publish_raw(PROMPT);
        assert_eq!(
            String::from_utf8_lossy(&info.payload),
            first(i),
            "{id}: {info:?}"
        );
        assert_eq!(info.topic, topic(i));
        assert!(!dup, "{id}: never sent before, came with DUP 1: {info:?}");
        first_ids.push(info.packet_id);
        // No PUBACK: the message stays in flight in the session.
        leave(c);
    }
    let (mut p, _) = RawClient::connected(node.addr, &ConnectOpts::v5("p8-pub-one"));
    for i in 0..N {
        p.publish1_props(&topic(i), second(i).as_bytes(), pid(i), &[]);
    }
    drop(p);
    node.sigkill();

    let node = start(Some(&dir), 3, &[]);
    for (i, id) in ids.iter().enumerate() {
        let mut c = resume(node.addr, id, "--shards 1 -> 3");
        let got = collect(&mut c, 2);
        assert_sequence(
            &texts(&got),
            &[first(i), second(i)],
            &format!("{id} under --shards 3"),
        );
        assert!(
            got[0].dup && got[0].info.packet_id == first_ids[i],
            "{id}: the in-flight message must be resent with DUP 1 and packet id {}: {:?}",
            first_ids[i],
            got[0]
        );
        assert!(!got[1].dup, "{id}: {:?}", got[1]);
        leave(c);
    }
    node.sigkill();
}

// ---------------------------------------------------------------------------
// 10: a graceful stop
// ---------------------------------------------------------------------------

/// Sessions on both shards of `--shards 2` with 20 queued QoS 1 messages
/// each (the publisher is on shard 0, so half of them crossed shards), a
/// retained message and an inbound QoS 2 message awaiting PUBREL; `signal`
/// stops the broker (exit 0); restart: all of it is there. A graceful stop
/// has no same-shard caveat: everything acknowledged is kept.
fn graceful_stop_keeps_everything(name: &str, signal: libc::c_int) {
    let tmp = TempDir::new(name);
    let dir = data_dir(&tmp);
    let subs = [
        id_on_shard(&format!("{name}-sub-a-"), 0),
        id_on_shard(&format!("{name}-sub-b-"), 1),
    ];
    let publisher = id_on_shard(&format!("{name}-pub-"), 0);
    let q2 = id_on_shard(&format!("{name}-q2-"), 1);
    let msgs = numbered("g", 0..20);

    let node = start(Some(&dir), 2, &[]);
    for id in &subs {
        let mut c = fresh_session(node.addr, id);
        assert_eq!(c.subscribe(1, &[("g/#", 1)]), [1]);
        leave(c);
    }
    let (mut p, _) = RawClient::connected(node.addr, &ConnectOpts::v5(&publisher));
    publish_all(&mut p, "g/x", &msgs);
    publish_retained(&mut p, "g-ret/x", b"kept", 100, &[]);
    // The control topic of `retained_on` lives on the shard of g-ret/x.
    let control = topic_on_shard("g-ctl", shard_for(b"g-ret/x", 2));
    publish_retained(&mut p, &control, b"control", 101, &[]);
    let mut c = fresh_session(node.addr, &q2);
    c.send(&publish_packet_full(
        "g/q2",
        b"q2",
        2,
        9,
        false,
        false,
        Some(&[]),
    ))
    .unwrap();
    assert_eq!(c.expect_packet(PROMPT, "PUBREC").ack(PUBREC), (9, 0));
    node.stop_with(signal);
    drop((p, c));

    let node = start(Some(&dir), 2, &[]);
    let mut c = resume(node.addr, &q2, "QoS 2 publisher after a graceful stop");
    c.send(&pubrel_packet(9)).unwrap();
    assert_eq!(
        c.expect_packet(PROMPT, "PUBCOMP").ack(PUBCOMP),
        (9, 0),
        "PUBCOMP after a graceful stop"
    );
    leave(c);
    for id in &subs {
        let mut s = resume(node.addr, id, "subscriber after a graceful stop");
        let got = texts(&collect(&mut s, 21));
        let q2s = got.iter().filter(|m| *m == "q2").count();
        let others: Vec<String> = got.iter().filter(|m| *m != "q2").cloned().collect();
        assert_sequence(
            &others,
            &msgs,
            &format!(
                "{id} (shard {}) after a graceful stop",
                shard_for(id.as_bytes(), 2)
            ),
        );
        assert_eq!(
            q2s, 1,
            "{id}: the inbound QoS 2 message delivered {q2s} times"
        );
        leave(s);
    }
    let (mut f, _) = RawClient::connected(node.addr, &ConnectOpts::v5(&format!("{name}-fresh")));
    let got = retained_on(&mut f, 1, "g-ret/#", 1, &control);
    assert_eq!(
        got.iter()
            .map(|p| (p.topic.as_str(), p.payload.as_slice()))
            .collect::<Vec<_>>(),
        [("g-ret/x", &b"kept"[..])],
        "retained after a graceful stop"
    );
    leave(f);
    node.stop_with(libc::SIGTERM);
}

/// Test 10, SIGTERM.
#[test]
fn sigterm_keeps_everything() {
    graceful_stop_keeps_everything("p10t", libc::SIGTERM);
}

/// Test 10, SIGINT.
#[test]
fn sigint_keeps_everything() {
    graceful_stop_keeps_everything("p10i", libc::SIGINT);
}

// ---------------------------------------------------------------------------
// 11: the directory lock and bad directories
// ---------------------------------------------------------------------------

/// A second broker on a directory a running broker holds fails to start
/// (non-zero exit, stderr names the directory, no panic) while the first
/// serves on; once the first is killed the directory is free again.
#[test]
fn a_second_broker_on_the_same_directory_fails_to_start() {
    let tmp = TempDir::new("p11");
    let dir = data_dir(&tmp);
    let node = start(Some(&dir), 1, &[]);
    let mut args = base_args(1);
    args.extend(["--persistence-dir".to_string(), dir.clone()]);
    let (status, stderr) = run_to_exit(&args);
    assert!(!status.success(), "second broker exited with {status}");
    assert!(
        stderr.contains(&dir),
        "the refusal does not name the directory {dir}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "a panic: {stderr}");
    assert_serves(node.addr);
    node.sigkill();
    // The lock goes with the process.
    let node = start(Some(&dir), 1, &[]);
    assert_serves(node.addr);
    node.sigkill();
}

/// `--persistence-dir` naming a regular file fails with an error naming it,
/// not a panic; so does a bad `--fsync` value.
#[test]
fn a_regular_file_as_the_directory_or_a_bad_fsync_value_is_refused_cleanly() {
    let tmp = TempDir::new("p11f");
    let file = tmp.path_str("a-file");
    std::fs::write(&file, b"not a directory\n").unwrap();
    let mut args = base_args(1);
    args.extend(["--persistence-dir".to_string(), file.clone()]);
    let (status, stderr) = run_to_exit(&args);
    assert!(!status.success(), "exited with {status}");
    assert!(!stderr.contains("panicked"), "a panic: {stderr}");
    assert!(
        stderr.contains(&file),
        "the error does not name {file}: {stderr}"
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b"not a directory\n",
        "the file was changed"
    );

    let mut args = base_args(1);
    args.extend([
        "--persistence-dir".to_string(),
        tmp.path_str("d"),
        "--fsync".to_string(),
        "sometimes".to_string(),
    ]);
    let (status, stderr) = run_to_exit(&args);
    assert!(!status.success(), "--fsync sometimes: exited with {status}");
    assert!(!stderr.contains("panicked"), "a panic: {stderr}");
    assert!(
        stderr.contains("--fsync") || stderr.contains("sometimes"),
        "the error does not name --fsync: {stderr}"
    );
}

/// The directory (and its missing parents) is created; it holds `CURRENT`
/// and a `shard-N` directory per shard with `log-*` or `snapshot-*` files.
#[test]
fn the_directory_is_created_with_its_layout() {
    let tmp = TempDir::new("p-layout");
    let dir = tmp.path("missing/parent/data");
    let dir_s = dir.to_string_lossy().into_owned();
    let node = start(Some(&dir_s), 2, &[]);
    let ids = [id_on_shard("lay-", 0), id_on_shard("lay-", 1)];
    for id in &ids {
        let mut c = fresh_session(node.addr, id);
        assert_eq!(c.subscribe(1, &[("lay/#", 1)]), [1]);
        leave(c);
    }
    assert!(dir.is_dir(), "{dir_s} was not created");
    assert!(
        poll_until(PROMPT, || dir.join("CURRENT").is_file()),
        "no CURRENT file: {:?}",
        listing(&dir)
    );
    for shard in 0..2 {
        let sd = dir.join(format!("shard-{shard}"));
        assert!(sd.is_dir(), "no {sd:?}: {:?}", listing(&dir));
        let files = [files_named(&sd, "log-"), files_named(&sd, "snapshot-")].concat();
        assert!(
            !files.is_empty(),
            "no log-* or snapshot-* file in {sd:?}: {:?}",
            listing(&dir)
        );
    }
    node.sigkill();
}

// ---------------------------------------------------------------------------
// 12: persistence off
// ---------------------------------------------------------------------------

/// Without `--persistence-dir` a SIGKILL loses the sessions (v5 with expiry
/// 3600 and 3.1.1 clean session 0): Session Present 0 after the restart.
/// The control case: it is the flag that keeps them in the other tests. And
/// nothing is written to the working directory.
#[test]
fn without_persistence_a_restart_loses_the_sessions() {
    let node = start(None, 2, &[]);
    let mut s = fresh_session(node.addr, "p12-v5");
    assert_eq!(s.subscribe(1, &[("off/#", 1)]), [1]);
    leave(s);
    {
        let (mut c, _) = V3Client::connect(node.addr, "p12-v3", |o| {
            o.set_clean_session(false);
        });
        assert_eq!(
            c.subscribe("off/#", rumqttc::QoS::AtLeastOnce),
            [rumqttc::SubscribeReasonCode::Success(
                rumqttc::QoS::AtLeastOnce
            )]
        );
        c.client.disconnect().expect("queue DISCONNECT");
        let _ = c.conn.recv_timeout(PROMPT);
    }
    let (mut p, _) = RawClient::connected(node.addr, &ConnectOpts::v5("p12-pub"));
    p.publish1_props("off/x", b"lost", 1, &[]);
    // Sanity: the sessions are present before the kill.
    let mut c = resume(node.addr, "p12-v5", "before the kill");
    assert_eq!(texts(&collect(&mut c, 1)), ["lost"], "before the kill");
    leave(c);
    node.sigkill();

    let node = start(None, 2, &[]);
    let (c, ack) = RawClient::connected(node.addr, &persistent("p12-v5", false));
    assert!(
        !ack.session_present,
        "v5 session survived without persistence"
    );
    leave(c);
    let (_c, ack) = V3Client::connect(node.addr, "p12-v3", |o| {
        o.set_clean_session(false);
    });
    assert!(
        !ack.session_present,
        "3.1.1 session survived without persistence"
    );
    node.sigkill();
}

// ---------------------------------------------------------------------------
// Compaction
// ---------------------------------------------------------------------------

/// `--compact-log-bytes 4096`: 300 queued QoS 1 messages make the log pass
/// the limit, so a `snapshot-*` file appears; SIGKILL; restart: all 300
/// come, in order. Then 1,000 more flow through the online session (each
/// acknowledged, so the state stays small): the directory stays small
/// (under 64 KiB: compaction replaced the log and dropped old files); a
/// SIGKILL and restart bring back the session with nothing to resend.
///
/// Same shard: subscriber and publisher ids on shard 0 of `--shards 2`.
#[test]
fn compaction_keeps_the_state_and_bounds_the_directory() {
    let tmp = TempDir::new("p13");
    let dir = data_dir(&tmp);
    let flags = ["--compact-log-bytes", "4096"];
    let sub = id_on_shard("p13-sub-", 0);
    let publisher = id_on_shard("p13-pub-", 0);
    let pad = |i: usize| format!("c{i:05}-{}", "x".repeat(57));
    let first: Vec<String> = (0..300).map(pad).collect();

    let node = start(Some(&dir), 2, &flags);
    let mut s = fresh_session(node.addr, &sub);
    assert_eq!(s.subscribe(1, &[("c/#", 1)]), [1]);
    leave(s);
    let (mut p, _) = RawClient::connected(node.addr, &ConnectOpts::v5(&publisher));
    publish_all(&mut p, "c/x", &first);
    let dir_path = PathBuf::from(&dir);
    assert!(
        poll_until(PROMPT, || !files_named(&dir_path, "snapshot-").is_empty()),
        "no snapshot-* file after ~30 KB of log with --compact-log-bytes 4096: {:?}",
        listing(&dir_path)
    );
    node.sigkill();

    let node = start(Some(&dir), 2, &flags);
    let mut s = resume(node.addr, &sub, "after compaction and SIGKILL");
    assert_sequence(
        &texts(&collect(&mut s, first.len())),
        &first,
        "queued messages after compaction",
    );
    let (mut p, _) = RawClient::connected(node.addr, &ConnectOpts::v5(&publisher));
    for batch in 0..20 {
        let payloads: Vec<String> = (0..50).map(|i| pad(1000 + batch * 50 + i)).collect();
        for (i, m) in payloads.iter().enumerate() {
            p.send(&publish_packet("c/y", m.as_bytes(), 1, pid(i), false, true))
                .unwrap();
        }
        for i in 0..50 {
            let a = p.expect_packet(PROMPT, "PUBACK");
            assert_eq!(a.ack(PUBACK), (pid(i), 0));
        }
        let got = texts(&collect_exactly(&mut s, 50));
        assert_sequence(&got, &payloads, &format!("online batch {batch}"));
    }
    // The subscriber's PUBACKs have no acknowledgement of their own: its
    // SUBACK, which leaves only after the records before it on the shard
    // are written, makes them durable before the kill.
    assert_eq!(s.subscribe(2, &[("c-barrier/none", 1)]), [1]);
    let mut size = 0;
    let small = poll_until(PROMPT, || {
        size = dir_bytes(&dir_path);
        size < 64 * 1024
    });
    assert!(
        small,
        "{size} bytes under the directory after 1,000 acknowledged messages with \
         --compact-log-bytes 4096 and almost no state: {:?}",
        listing(&dir_path)
    );
    node.sigkill();

    let node = start(Some(&dir), 2, &flags);
    let mut s = resume(node.addr, &sub, "after the second SIGKILL");
    let got = collect(&mut s, 0);
    assert!(
        got.is_empty(),
        "{} acknowledged messages came back after compaction (payload, DUP, packet id): {:?}",
        got.len(),
        got.iter()
            .map(|g| (g.text(), g.dup, g.info.packet_id))
            .collect::<Vec<_>>()
    );
    leave(s);
    node.sigkill();
}

/// Like `collect` for exactly `n` QoS 1 messages, without the extra wait.
fn collect_exactly(c: &mut RawClient, n: usize) -> Vec<Got> {
    (0..n)
        .map(|i| {
            let p = c.expect_packet(PROMPT, &format!("PUBLISH {i} of {n}"));
            let info = p.publish(c.v5);
            if info.qos == 1 {
                c.send(&puback_packet(info.packet_id)).expect("PUBACK");
            }
            Got { dup: p.dup(), info }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// More: acknowledgements durable at once, message expiry, redistribution
// killed at once, SIGKILL during compaction
// ---------------------------------------------------------------------------

/// The guarantee itself, with nothing after it: a CONNACK granting a
/// persistent session (v5 expiry 3600, 3.1.1 clean session 0), with the
/// broker SIGKILLed right after it (the clients still connected): both are
/// present after the restart. Then a SUBACK, SIGKILL right after it: the
/// session is present and its subscription routes without re-subscribing.
///
/// Same shard: every id on shard 0 of `--shards 2`.
#[test]
fn a_connack_or_suback_is_durable_the_moment_it_arrives() {
    let tmp = TempDir::new("p14");
    let dir = data_dir(&tmp);
    let a = id_on_shard("p14-a-", 0);
    let b = id_on_shard("p14-b-", 0);
    let v3 = id_on_shard("p14-v3-", 0);
    let publisher = id_on_shard("p14-pub-", 0);
    let v3_opts = ConnectOpts::v3(&v3).clean(false);

    let node = start(Some(&dir), 2, &[]);
    let ca = fresh_session(node.addr, &a);
    let (c3, ack) = RawClient::connected(node.addr, &v3_opts);
    assert!(!ack.session_present);
    node.sigkill();
    drop((ca, c3));

    let node = start(Some(&dir), 2, &[]);
    leave(resume(node.addr, &a, "v5 CONNACK then SIGKILL at once"));
    leave(resume_with(
        node.addr,
        &v3_opts,
        "3.1.1 CONNACK then SIGKILL at once",
    ));
    let mut cb = fresh_session(node.addr, &b);
    assert_eq!(cb.subscribe_v5(1, Some(3), &[("imm/#", 1)]), [1]);
    node.sigkill();
    drop(cb);

    let node = start(Some(&dir), 2, &[]);
    let mut cb = resume(node.addr, &b, "SUBACK then SIGKILL at once");
    let (mut p, _) = RawClient::connected(node.addr, &ConnectOpts::v5(&publisher));
    p.publish1_props("imm/x", b"routed", 1, &[]);
    let got = collect(&mut cb, 1);
    assert_eq!(
        texts(&got),
        ["routed"],
        "the subscription made just before the kill"
    );
    assert_eq!(got[0].info.props.ints(PROP_SUBSCRIPTION_ID), [3]);
    leave(cb);
    node.sigkill();
}

/// Message expiry counts across the downtime too: a queued QoS 1 message
/// and a retained one with Message Expiry 1 s are gone after 2.5 s of
/// downtime; their 3600 s siblings come with a remaining expiry that
/// counts the downtime (at most 3598 s).
///
/// `--shards 1`: the retained messages are local.
#[test]
fn message_expiry_counts_across_the_downtime() {
    let tmp = TempDir::new("p15");
    let dir = data_dir(&tmp);
    let node = start(Some(&dir), 1, &[]);
    let mut s = fresh_session(node.addr, "p15-sub");
    assert_eq!(s.subscribe(1, &[("x/#", 1)]), [1]);
    leave(s);
    let (mut p, _) = RawClient::connected(node.addr, &ConnectOpts::v5("p15-pub"));
    let sent_at = Instant::now();
    p.publish1_props("x/short", b"short", 1, &expiry_prop(1));
    p.publish1_props("x/long", b"long", 2, &expiry_prop(3600));
    publish_retained(&mut p, "rx/short", b"short", 3, &expiry_prop(1));
    publish_retained(&mut p, "rx/long", b"long", 4, &expiry_prop(3600));
    publish_retained(&mut p, "ctl", b"control", 5, &[]);
    node.sigkill();
    let killed_after = sent_at.elapsed();
    assert!(
        killed_after < Duration::from_secs(1),
        "setup too slow: killed {killed_after:?} after the 1 s messages were sent"
    );
    assert!(poll_until(Duration::from_secs(5), || sent_at.elapsed()
        > Duration::from_millis(2500)));

    let node = start(Some(&dir), 1, &[]);
    let mut s = resume(node.addr, "p15-sub", "after the downtime");
    let got = collect(&mut s, 1);
    assert_eq!(
        texts(&got),
        ["long"],
        "queued messages after 2.5 s of downtime (the 1 s one expired): {got:?}"
    );
    let left = got[0].info.props.int(PROP_MESSAGE_EXPIRY);
    assert!(
        left.is_some_and(|l| l > 0 && l <= 3598),
        "remaining expiry of the queued 3600 s message after 2.5 s of downtime: {left:?}"
    );
    leave(s);
    let (mut f, _) = RawClient::connected(node.addr, &ConnectOpts::v5("p15-fresh"));
    let got = retained_on(&mut f, 1, "rx/#", 1, "ctl");
    assert_eq!(
        got.iter()
            .map(|p| (p.topic.as_str(), p.payload.as_slice()))
            .collect::<Vec<_>>(),
        [("rx/long", &b"long"[..])],
        "retained messages after 2.5 s of downtime (the 1 s one expired): {got:?}"
    );
    let left = got[0].props.int(PROP_MESSAGE_EXPIRY);
    assert!(
        left.is_some_and(|l| l > 0 && l <= 3598),
        "remaining expiry of the retained 3600 s message after 2.5 s of downtime: {left:?}"
    );
    leave(f);
    node.sigkill();
}

/// Retained messages on 12 topics (spread over the shards) and 8 sessions
/// with a queued message each under `--shards 2`; SIGTERM; a start with
/// `--shards 3` SIGKILLed as soon as it has recovered (the redistribution
/// it made must be whole or not at all); a start with `--shards 1`: every
/// retained message and every session with its message is there.
///
/// The first stop is graceful (SIGTERM), so no same-shard caveat applies.
#[test]
fn a_redistribution_killed_at_once_still_finds_everything() {
    let tmp = TempDir::new("p16");
    let dir = data_dir(&tmp);
    let topics: Vec<String> = (0..12).map(|i| format!("rs/{i}")).collect();
    let ids: Vec<String> = (0..8).map(|i| format!("p16-c{i}")).collect();

    let node = start(Some(&dir), 2, &[]);
    for (i, id) in ids.iter().enumerate() {
        let mut c = fresh_session(node.addr, id);
        assert_eq!(c.subscribe(1, &[(&format!("q16/{i}"), 1)]), [1]);
        leave(c);
    }
    let (mut p, _) = RawClient::connected(node.addr, &ConnectOpts::v5("p16-pub"));
    for (i, t) in topics.iter().enumerate() {
        publish_retained(&mut p, t, format!("r{i}").as_bytes(), pid(i), &[]);
    }
    for i in 0..ids.len() {
        p.publish1_props(&format!("q16/{i}"), format!("q{i}").as_bytes(), pid(i), &[]);
    }
    node.stop_with(libc::SIGTERM);
    drop(p);

    let node = start(Some(&dir), 3, &[]);
    node.sigkill();

    let node = start(Some(&dir), 1, &[]);
    let (mut f, _) = RawClient::connected(node.addr, &ConnectOpts::v5("p16-fresh"));
    assert_eq!(f.subscribe(1, &[("rs/#", 1)]), [1]);
    let mut got = texts(&collect(&mut f, topics.len()));
    got.sort();
    let mut want = numbered("r", 0..topics.len());
    want.sort();
    assert_sequence(
        &got,
        &want,
        "retained messages after 2 -> 3 (killed) -> 1 shards",
    );
    leave(f);
    for (i, id) in ids.iter().enumerate() {
        let mut c = resume(node.addr, id, "after 2 -> 3 (killed) -> 1 shards");
        assert_sequence(&texts(&collect_exactly(&mut c, 1)), &[format!("q{i}")], id);
        leave(c);
    }
    node.sigkill();
}

/// `--compact-log-bytes 4096` and SIGKILLs at many moments of a stream of
/// pipelined QoS 1 publishes (16 in flight) to an offline session, so some
/// land during a compaction, one right after a start: at the end every
/// message whose PUBACK arrived is there exactly once, nothing is
/// duplicated, and the order is the publish order (a message whose PUBACK
/// did not arrive may be there or not).
///
/// Same shard: subscriber and publisher ids on shard 0 of `--shards 2`.
#[test]
fn sigkill_at_any_moment_during_compaction_loses_nothing_acknowledged() {
    let tmp = TempDir::new("p17");
    let dir = data_dir(&tmp);
    let flags = ["--compact-log-bytes", "4096"];
    let sub = id_on_shard("p17-sub-", 0);
    let publisher = id_on_shard("p17-pub-", 0);
    let pad = |i: usize| format!("k{i:05}-{}", "y".repeat(57));

    let node = start(Some(&dir), 2, &flags);
    let mut s = fresh_session(node.addr, &sub);
    assert_eq!(s.subscribe(1, &[("k/#", 1)]), [1]);
    leave(s);
    node.sigkill();

    let mut sent: Vec<String> = Vec::new();
    let mut acked: HashSet<String> = HashSet::new();
    for cycle in 0..7usize {
        let node = start(Some(&dir), 2, &flags);
        if cycle == 3 {
            node.sigkill();
            continue;
        }
        let (mut p, _) = RawClient::connected(node.addr, &ConnectOpts::v5(&publisher));
        let count = 90 + cycle * 13;
        let mut by_id: BTreeMap<u16, String> = BTreeMap::new();
        let mut unacked = 0usize;
        for i in 0..count {
            let payload = pad(sent.len());
            let id = pid(i);
            p.send(&publish_packet(
                "k/x",
                payload.as_bytes(),
                1,
                id,
                false,
                true,
            ))
            .unwrap();
            by_id.insert(id, payload.clone());
            sent.push(payload);
            unacked += 1;
            while unacked >= 16 && i + 1 < count {
                let a = p.expect_packet(PROMPT, "PUBACK");
                let (id, code) = a.ack(PUBACK);
                assert_eq!(code, 0, "{a:?}");
                acked.insert(by_id.remove(&id).expect("PUBACK for a packet id in flight"));
                unacked -= 1;
            }
        }
        // The last window is in flight: kill now.
        node.sigkill();
        // PUBACKs that arrived before the kill are in the socket buffer.
        while let Ok(a) = p.read_packet(Duration::from_millis(200)) {
            let (id, code) = a.ack(PUBACK);
            assert_eq!(code, 0, "{a:?}");
            acked.insert(by_id.remove(&id).expect("PUBACK for a packet id in flight"));
        }
    }

    assert!(
        !files_named(Path::new(&dir), "snapshot-").is_empty(),
        "no compaction happened (no snapshot-* file): {:?}",
        listing(Path::new(&dir))
    );
    let node = start(Some(&dir), 2, &flags);
    let mut s = resume(node.addr, &sub, "after SIGKILLs during compaction");
    let got = collect(&mut s, sent.len());
    let got_texts = texts(&got);
    let mut seen = HashSet::new();
    let duplicated: Vec<&String> = got_texts.iter().filter(|g| !seen.insert(*g)).collect();
    assert!(duplicated.is_empty(), "duplicated messages: {duplicated:?}");
    let mut missing: Vec<&String> = acked.iter().filter(|a| !seen.contains(a)).collect();
    missing.sort();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged messages lost (of {} sent, {} delivered): {missing:?}",
        missing.len(),
        acked.len(),
        sent.len(),
        got_texts.len()
    );
    let order: Vec<usize> = got_texts
        .iter()
        .map(|g| {
            sent.iter()
                .position(|s| s == g)
                .expect("a message never sent")
        })
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "delivered out of publish order: {order:?}"
    );
    for g in &got {
        assert!(!g.dup, "a message never sent came with DUP 1: {g:?}");
    }
    leave(s);
    node.sigkill();
}

/// Beyond the same-shard contract, after commit 3ed6191 ("a PUBACK/PUBREC
/// waits until every shard the message went to has written it"): the
/// publisher on shard 0, persistent subscribers on shards 0 and 1; 100 QoS 1
/// and 20 QoS 2 messages, each acknowledged; SIGKILL; restart: both
/// sessions get all 120 exactly once, in order.
#[test]
fn cross_shard_deliveries_acknowledged_survive_sigkill() {
    let tmp = TempDir::new("p18");
    let dir = data_dir(&tmp);
    let subs = [id_on_shard("p18-sub-a-", 0), id_on_shard("p18-sub-b-", 1)];
    let publisher = id_on_shard("p18-pub-", 0);
    let q1 = numbered("one-", 0..100);
    let q2 = numbered("two-", 0..20);

    let node = start(Some(&dir), 2, &[]);
    for id in &subs {
        let mut c = fresh_session(node.addr, id);
        assert_eq!(c.subscribe(1, &[("xs/#", 2)]), [2]);
        leave(c);
    }
    let (mut p, _) = RawClient::connected(node.addr, &ConnectOpts::v5(&publisher));
    publish_all(&mut p, "xs/t", &q1);
    for (i, m) in q2.iter().enumerate() {
        p.publish2("xs/t", m.as_bytes(), pid(i), &[]);
    }
    node.sigkill();

    let node = start(Some(&dir), 2, &[]);
    let want = [q1, q2].concat();
    for id in &subs {
        let mut s = resume(node.addr, id, "cross-shard subscriber after SIGKILL");
        let got = texts(&collect(&mut s, want.len()));
        assert_sequence(
            &got,
            &want,
            &format!("{id} (shard {})", shard_for(id.as_bytes(), 2)),
        );
        leave(s);
    }
    node.sigkill();
}

/// `--fsync interval` syncs the log through the shard's ring: once records
/// are written, an fdatasync follows within the interval even when nothing
/// else happens (counted in `store_fsyncs`), and `--fsync never` makes none.
#[test]
fn fsync_interval_syncs_in_time_and_never_does_not() {
    for (mode, want_sync) in [("interval", true), ("never", false)] {
        let dir = TempDir::new(&format!("fsync-{mode}"));
        let store = dir.path_str("store");
        let broker = common::start(&[
            "--persistence-dir",
            &store,
            "--fsync",
            mode,
            "--fsync-interval-ms",
            "20",
        ]);
        let (mut sub, _) = RawClient::connected(
            broker.local_addr(),
            &ConnectOpts::v5("fsync-sub")
                .clean(false)
                .session_expiry(600),
        );
        sub.subscribe(1, &[("f/#", 1)]);
        let (mut publisher, _) =
            RawClient::connected(broker.local_addr(), &ConnectOpts::v5("fsync-pub"));
        publisher.publish1("f/x", b"kept", 1);
        let written = wait_stats(&broker, "records written", |s| s.store_writes > 0);
        assert!(written.store_bytes_written > 0);
        if want_sync {
            wait_stats(&broker, "an fdatasync within the interval", |s| {
                s.store_fsyncs > 0
            });
        } else {
            // Nothing to wait for: give an interval's worth of time ten
            // times over, then check none came.
            let until = Instant::now() + Duration::from_millis(200);
            poll_until(Duration::from_secs(1), || Instant::now() >= until);
            assert_eq!(broker.stats().store_fsyncs, 0, "--fsync never synced");
        }
        drop(sub);
    }
}

/// A subscription an ACL reload between restarts no longer allows is left
/// out at import and out of the store too: restoring the old rules later
/// does not bring it back (the store must not keep what the live session
/// dropped).
#[test]
fn a_subscription_revoked_at_import_stays_gone() {
    let tmp = TempDir::new("p-acl");
    let dir = data_dir(&tmp);
    let open_acl = tmp.path_str("open.acl");
    let narrow_acl = tmp.path_str("narrow.acl");
    std::fs::write(&open_acl, "user u\ntopic readwrite #\n").expect("write ACL");
    std::fs::write(&narrow_acl, "user u\ntopic readwrite b/#\n").expect("write ACL");
    let opts = |id: &str, clean: bool| persistent(id, clean).login("u", None);

    let node = start(Some(&dir), 1, &["--acl-file", &open_acl]);
    let (mut s, _) = RawClient::connected(node.addr, &opts("acl-sub", true));
    assert_eq!(s.subscribe_v5(1, None, &[("a/x", 1), ("b/x", 1)]), [1, 1]);
    leave(s);
    node.sigkill();

    // Under the narrow rules the import drops a/x.
    let node = start(Some(&dir), 1, &["--acl-file", &narrow_acl]);
    node.sigkill();

    // The open rules again: a/x must not have come back from the store.
    let node = start(Some(&dir), 1, &["--acl-file", &open_acl]);
    let mut s = resume_with(node.addr, &opts("acl-sub", false), "after two restarts");
    let (mut p, _) = RawClient::connected(node.addr, &ConnectOpts::v5("acl-pub").login("u", None));
    p.publish1("a/x", b"a", 1);
    p.publish1("b/x", b"b", 2);
    assert_eq!(
        texts(&collect(&mut s, 1)),
        ["b"],
        "a/x was revoked at the second start and must stay gone"
    );
}
