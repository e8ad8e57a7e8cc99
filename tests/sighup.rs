//! SIGHUP through the real binary: the `ringmq` process reloads its TLS
//! material on the signal, new handshakes get the new certificate, an open
//! connection stays up, and SIGTERM still stops it cleanly; it reloads its
//! ACL file the same way, and a file that does not parse keeps the old
//! rules.

mod common;

use std::net::SocketAddr;

use common::certs::{client_config, tls_connect, Pki};
use common::process::Process;
use common::{poll_until, ConnectOpts, PacketStream, PROMPT};

/// Starts the binary on an mqtts:// port 0 and returns it with its port.
fn start(pki: &Pki) -> (Process, SocketAddr) {
    let listen = ["--listen", "mqtts://127.0.0.1:0"];
    let tls = ["--tls-cert", &pki.cert, "--tls-key", &pki.key];
    start_with(&[&listen[..], &tls[..]].concat(), "mqtts://")
}

/// Starts the binary with `args` (one shard, little locked memory, log at
/// info) and returns it with the port of its first `scheme` listener.
fn start_with(args: &[&str], scheme: &str) -> (Process, SocketAddr) {
    let base = ["--shards", "1", "--io-memory-kib", "256", "--log", "info"];
    Process::start(&[args, &base[..]].concat(), scheme)
}

#[test]
fn sighup_reloads_the_certificate_and_keeps_open_connections() {
    let pki = Pki::generate();
    let (mut process, addr) = start(&pki);
    let trust_main = client_config(&pki.ca, None, &[]);
    let trust_other = client_config(&pki.other, None, &[]);

    let stream = tls_connect(addr, &trust_main).expect("handshake with the first certificate");
    let (mut old, _) = PacketStream::connected_over(stream, &ConnectOpts::v5("before-sighup"));
    assert_eq!(old.subscribe(1, &[("hup/#", 0)]), [0]);

    pki.install(&pki.other_server);
    process.signal(libc::SIGHUP);
    // The signal is handled asynchronously: new handshakes switch soon.
    assert!(
        poll_until(PROMPT, || tls_connect(addr, &trust_other).is_ok()),
        "a client trusting only the new CA never got through after SIGHUP"
    );
    assert!(
        tls_connect(addr, &trust_main)
            .map(|s| {
                let mut c = PacketStream::new(s, false);
                let _ = c.send(&ConnectOpts::v3("old-ca").encode());
                c.read_packet(PROMPT).is_err()
            })
            .unwrap_or(true),
        "the old certificate is still served after SIGHUP"
    );
    process.wait_log("saying it reloaded", |l| {
        l.contains("TLS certificate, key and CA reloaded")
    });

    // The connection from before the reload still works.
    old.publish0("hup/x", b"still up");
    let p = old.expect_publish(PROMPT);
    assert_eq!(p.payload.as_slice(), b"still up");

    // A reload that fails keeps the new material and says why.
    pki.install_raw("garbage\n", "garbage\n");
    process.signal(libc::SIGHUP);
    process.wait_log("saying why the reload failed", |l| {
        l.contains("TLS reload failed") && l.contains("--tls-")
    });
    assert!(tls_connect(addr, &trust_other).is_ok());

    // SIGTERM still stops it, with exit status 0.
    assert!(process.terminate(), "no clean exit on SIGTERM");
}

#[test]
fn sighup_reloads_the_acl_file_and_a_bad_one_keeps_the_old_rules() {
    let dir = common::TempDir::new("sighup-acl");
    let acl = dir.path("acl");
    std::fs::write(&acl, "topic readwrite open/#\n").unwrap();
    let acl_path = acl.to_string_lossy().into_owned();
    let (mut process, addr) = start_with(
        &["--listen", "127.0.0.1:0", "--acl-file", &acl_path],
        "mqtt://",
    );
    let stream = std::net::TcpStream::connect(addr).unwrap();
    let (mut c, ack) = PacketStream::connected_over(stream, &ConnectOpts::v5("hup-acl"));
    assert_eq!(ack.code, 0);
    let puback = |c: &mut PacketStream<std::net::TcpStream>, topic: &str, id: u16| {
        c.send(&common::publish_packet(topic, b"x", 1, id, false, true))
            .unwrap();
        let ack = c.expect_packet(PROMPT, "PUBACK");
        assert_eq!(ack.kind, 4, "{ack:?}");
        assert_eq!(ack.body[..2], id.to_be_bytes());
        // v5: a reason code follows the id unless it is 0 (3.4.2.1).
        ack.body.get(2).copied().unwrap_or(0)
    };
    assert_eq!(puback(&mut c, "open/x", 1), 0x00);
    assert_eq!(puback(&mut c, "later/x", 2), 0x87);

    std::fs::write(&acl, "topic readwrite later/#\n").unwrap();
    process.signal(libc::SIGHUP);
    process.wait_log("saying the ACL reloaded", |l| {
        l.contains("ACL file reloaded")
    });
    assert_eq!(puback(&mut c, "later/x", 3), 0x00);
    assert_eq!(puback(&mut c, "open/x", 4), 0x87);

    std::fs::write(&acl, "topic readwrite open/#\nbogus line\n").unwrap();
    process.signal(libc::SIGHUP);
    process.wait_log("naming the bad line", |l| l.contains("line 2"));
    assert_eq!(puback(&mut c, "later/x", 5), 0x00, "the old rules stay");
    drop(process);
}
