//! Black-box tests of authentication with `--password-file`: the exact
//! CONNACK codes in v3 and v5, anonymous clients, the per-shard cache of
//! successful checks, reload, and that slow hash checks run off the shard
//! (other clients are served meanwhile).

mod common;

use std::num::NonZeroU32;
use std::time::Instant;

use common::*;
use ringmq_auth::password::{Hash, PasswordFile};

/// A password file in a fresh temporary directory (removed on drop).
struct Passwords {
    _dir: TempDir,
    path: String,
}

impl Passwords {
    fn new(users: &[(&str, &[u8])], iterations: u32) -> Passwords {
        let dir = TempDir::new("auth");
        let path = dir.path_str("passwd");
        let p = Passwords { _dir: dir, path };
        p.write(users, iterations);
        p
    }

    fn write(&self, users: &[(&str, &[u8])], iterations: u32) {
        let mut file = PasswordFile::new();
        for (i, (user, password)) in users.iter().enumerate() {
            let salt = [i as u8 + 1; 12];
            let iterations = NonZeroU32::new(iterations).unwrap();
            file.set(user, Hash::pbkdf2_sha512(password, salt, iterations))
                .unwrap();
        }
        std::fs::write(&self.path, file.to_text()).unwrap();
    }
}

/// The CONNACK code a CONNECT of `opts` gets.
fn connack_code(broker: &Broker, opts: &ConnectOpts) -> u8 {
    let mut c = RawClient::open(broker.local_addr());
    c.v5 = opts.is_v5();
    c.send(&opts.encode()).unwrap();
    c.expect_packet(PROMPT, "CONNACK")
        .connack(opts.is_v5())
        .code
}

#[test]
fn right_and_wrong_passwords_get_the_exact_codes_in_v3_and_v5() {
    let pw = Passwords::new(
        &[("alice", b"secret"), ("bob builder", b"can we fix it")],
        101,
    );
    let broker = start(&["--password-file", &pw.path]);
    let ok = |v5: bool, id: &str, user: &str, password: Option<&[u8]>| {
        let opts = if v5 {
            ConnectOpts::v5(id)
        } else {
            ConnectOpts::v3(id)
        };
        connack_code(&broker, &opts.login(user, password))
    };
    for v5 in [false, true] {
        let (bad, _) = if v5 { (0x86, 0x87) } else { (0x04, 0x05) };
        assert_eq!(ok(v5, "a1", "alice", Some(b"secret")), 0, "v5={v5}");
        assert_eq!(ok(v5, "b1", "bob builder", Some(b"can we fix it")), 0);
        assert_eq!(
            ok(v5, "a2", "alice", Some(b"Secret")),
            bad,
            "wrong password"
        );
        assert_eq!(ok(v5, "a3", "alice", Some(b"")), bad, "empty password");
        assert_eq!(ok(v5, "a4", "alice", None), bad, "no password");
        assert_eq!(
            ok(v5, "m1", "mallory", Some(b"secret")),
            bad,
            "unknown user"
        );
    }
    let stats = wait_stats(&broker, "every check counted", |s| {
        s.auth_ok == 4 && s.auth_failed == 8
    });
    assert_eq!(stats.connects, 4, "{stats:?}");
}

#[test]
fn anonymous_is_refused_with_a_password_file_and_allowed_when_asked() {
    let pw = Passwords::new(&[("alice", b"secret")], 101);
    let broker = start(&["--password-file", &pw.path]);
    assert_eq!(connack_code(&broker, &ConnectOpts::v5("anon5")), 0x87);
    assert_eq!(connack_code(&broker, &ConnectOpts::v3("anon3")), 0x05);
    wait_stats(&broker, "anonymous refusals counted", |s| {
        s.anonymous_refused == 2
    });

    let open = start(&["--password-file", &pw.path, "--allow-anonymous", "true"]);
    assert_eq!(connack_code(&open, &ConnectOpts::v5("anon5")), 0);
    assert_eq!(connack_code(&open, &ConnectOpts::v3("anon3")), 0);
    // A named client is still checked.
    let wrong = ConnectOpts::v3("named").login("alice", Some(b"nope"));
    assert_eq!(connack_code(&open, &wrong), 0x04);
}

#[test]
fn without_a_password_file_anyone_connects() {
    let broker = start(&[]);
    let opts = ConnectOpts::v5("free").login("whoever", Some(b"whatever"));
    assert_eq!(connack_code(&broker, &opts), 0);
    assert_eq!(connack_code(&broker, &ConnectOpts::v3("anon")), 0);
    assert_eq!(broker.stats().auth_ok + broker.stats().auth_failed, 0);
}

#[test]
fn a_reconnecting_client_is_answered_from_the_cache() {
    let pw = Passwords::new(&[("alice", b"secret")], 101);
    let broker = start(&["--password-file", &pw.path]);
    let opts = ConnectOpts::v5("same-id").login("alice", Some(b"secret"));
    for _ in 0..3 {
        assert_eq!(connack_code(&broker, &opts), 0);
    }
    // The same client id lands on the same shard: one hash, two hits.
    let stats = wait_stats(&broker, "three successes", |s| s.auth_ok == 3);
    assert_eq!(stats.auth_cache_hits, 2, "{stats:?}");
    // A wrong password is never answered by the cache.
    let wrong = ConnectOpts::v5("same-id").login("alice", Some(b"secreT"));
    assert_eq!(connack_code(&broker, &wrong), 0x86);

    let uncached = start(&["--password-file", &pw.path, "--auth-cache-secs", "0"]);
    for _ in 0..2 {
        assert_eq!(connack_code(&uncached, &opts), 0);
    }
    let stats = wait_stats(&uncached, "two successes", |s| s.auth_ok == 2);
    assert_eq!(stats.auth_cache_hits, 0, "{stats:?}");
}

#[test]
fn reload_switches_to_the_new_file_and_a_bad_file_keeps_the_old() {
    let pw = Passwords::new(&[("alice", b"old")], 101);
    let broker = start(&["--password-file", &pw.path]);
    let old = ConnectOpts::v5("r1").login("alice", Some(b"old"));
    let new = ConnectOpts::v5("r1").login("alice", Some(b"new"));
    assert_eq!(connack_code(&broker, &old), 0);
    assert_eq!(connack_code(&broker, &new), 0x86);

    pw.write(&[("alice", b"new")], 101);
    broker.reload_passwords().expect("a good file reloads");
    // The old password was cached: the reload must forget it.
    assert_eq!(connack_code(&broker, &old), 0x86);
    assert_eq!(connack_code(&broker, &new), 0);

    std::fs::write(&pw.path, "alice:$7$broken\n").unwrap();
    let err = broker
        .reload_passwords()
        .expect_err("a bad file is refused");
    assert!(err.contains("line 1"), "the error names the line: {err}");
    assert_eq!(connack_code(&broker, &new), 0, "the old file stays in use");
    let stats = broker.stats();
    assert_eq!(
        (stats.password_reloads, stats.password_reload_failures),
        (1, 1),
        "{stats:?}"
    );
}

#[test]
fn slow_hash_checks_do_not_hold_up_other_clients() {
    // Hashes slow enough that their checks take far longer than a round
    // trip: with the checks on the shard threads, the ping below would
    // wait behind them; off the shards, it is answered first.
    let pw = Passwords::new(&[("slow", b"pw")], 5_000);
    let broker = start(&["--password-file", &pw.path, "--auth-threads", "1"]);
    let addr = broker.local_addr();
    let canary_opts = ConnectOpts::v5("canary").login("slow", Some(b"pw"));
    let (mut canary, ack) = RawClient::connected(addr, &canary_opts);
    assert_eq!(ack.code, 0);
    let mut parked: Vec<RawClient> = (0..6)
        .map(|i| {
            let mut c = RawClient::open(addr);
            c.v5 = true;
            // Distinct ids and a wrong password: never cached, each one a
            // full check on the single verifier thread.
            let opts = ConnectOpts::v5(&format!("storm{i}")).login("slow", Some(b"wrong"));
            c.send(&opts.encode()).unwrap();
            c
        })
        .collect();
    let started = Instant::now();
    canary.ping();
    let pinged = started.elapsed();
    let mut last = started.elapsed();
    for c in &mut parked {
        let code = c.expect_packet(PROMPT, "CONNACK").connack(true).code;
        assert_eq!(code, 0x86);
        last = started.elapsed();
    }
    assert!(
        pinged < last,
        "the canary's PINGRESP ({pinged:?}) came after every parked CONNACK ({last:?})"
    );
    wait_stats(&broker, "six refusals", |s| s.auth_failed == 6);
}

#[test]
fn a_connect_storm_with_authentication_does_not_stall_a_canary() {
    // 64 users, each with a hash of its own (no cache can help), all
    // connecting at once onto one verifier thread. A canary connected
    // before the storm keeps doing round trips (PINGREQ, and a publish to
    // itself); it must complete many of them while the storm's checks
    // are still being worked through.
    const STORM: usize = 32;
    let users: Vec<(String, Vec<u8>)> = (0..STORM)
        .map(|i| (format!("dev{i}"), format!("pw{i}").into_bytes()))
        .chain([("canary".to_owned(), b"canary".to_vec())])
        .collect();
    let refs: Vec<(&str, &[u8])> = users
        .iter()
        .map(|(u, p)| (u.as_str(), p.as_slice()))
        .collect();
    let pw = Passwords::new(&refs, 2_000);
    let broker = start(&["--password-file", &pw.path, "--auth-threads", "1"]);
    let addr = broker.local_addr();
    let canary_opts = ConnectOpts::v5("canary").login("canary", Some(b"canary"));
    let (mut canary, ack) = RawClient::connected(addr, &canary_opts);
    assert_eq!(ack.code, 0);
    canary
        .send(&subscribe_packet(1, &[("canary/echo", 0)], true))
        .unwrap();
    canary.expect_packet(PROMPT, "SUBACK");

    let mut storm: Vec<RawClient> = users[..STORM]
        .iter()
        .map(|(user, password)| {
            let mut c = RawClient::open(addr);
            c.v5 = true;
            let opts = ConnectOpts::v5(user).login(user, Some(password));
            c.send(&opts.encode()).unwrap();
            c
        })
        .collect();
    let mut round_trips = 0;
    let mut during_storm = 0;
    while round_trips < 200 {
        canary.ping();
        canary
            .send(&publish_packet("canary/echo", b"x", 0, 0, false, true))
            .unwrap();
        let echo = canary.expect_packet(PROMPT, "the canary's echo");
        assert_eq!(echo.publish(true).topic, "canary/echo");
        round_trips += 1;
        if broker.stats().auth_ok < STORM as u64 + 1 {
            during_storm += 1;
        }
    }
    for c in &mut storm {
        let code = c.expect_packet(PROMPT, "CONNACK").connack(true).code;
        assert_eq!(code, 0);
    }
    assert!(
        during_storm >= 20,
        "only {during_storm} of the canary's round trips completed while the storm's \
         checks were pending"
    );
    wait_stats(&broker, "every check done", |s| {
        s.auth_ok == STORM as u64 + 1 && s.auth_cache_hits == 0
    });
}

#[test]
fn mosquitto_hashes_and_a_file_from_ringmq_passwd_both_work() {
    // Lines as mosquitto_passwd 2.0.11 wrote them ($7$ and, with -H
    // sha512, $6$), one computed with Python's hashlib and one from the
    // reference argon2 tool (the crate's tests say how each was made).
    let fixtures = "\
# written by mosquitto_passwd 2.0.11
alice smith:$7$101$7aoUxC97msd4JXd9$+CbyhXPaNWCCycIx3dhHD0e4KcQSMRdX+YtNYRgHohEX4JsiKH632F/7oHcC7Pr5bu2Q7LpDFAYKGuC8Z1XwWw==
bob:$6$kinKeUH44zjejA42$YU5J6J0a8SUATFHMEtN8DZJ/kj9yCJ4VL5UvkJH8DECQA8WKZX/ahuu43a57LJTEgozY/qSiUPAaTphzzSZwFA==
py:$7$101$AQIDBAUGBwgJCgsM$mIOMyf0G01/LkKvFuu6raA+sJydkdh2qDZD+cyTDcrMk08Rnc3N+vIiTgRJqnolJL9TU+/R/F+mbz31mQG16jg==
argon:$argon2id$v=19$m=1024,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZg$jD7g/0f4C7xIVTwEX2nAc/ZbMxxAcburWl0JLJUbxG3MekEs50g17OUms4qpKhXNSVv0Y4MWFo/gRdYvDV9FJQ
";
    let pw = Passwords::new(&[], 101);
    std::fs::write(&pw.path, fixtures).unwrap();
    // And a second file written by the broker's own command.
    let own = format!("{}.own", pw.path);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringmq"))
        .args(["passwd", "-c", "-b", &own, "dave", "from ringmq"])
        .output()
        .expect("run ringmq passwd");
    assert!(out.status.success(), "ringmq passwd: {out:?}");

    let fixture_broker = start(&["--password-file", &pw.path, "--auth-cache-secs", "0"]);
    let own_broker = start(&["--password-file", &own, "--auth-cache-secs", "0"]);
    let cases: [(&Broker, &str, &[u8]); 5] = [
        (&fixture_broker, "alice smith", b"s3cret:pw"),
        (&fixture_broker, "bob", b"hunter2"),
        (&fixture_broker, "py", b"correct horse"),
        (&fixture_broker, "argon", b"correct horse"),
        (&own_broker, "dave", b"from ringmq"),
    ];
    for v5 in [false, true] {
        let bad = if v5 { 0x86 } else { 0x04 };
        for (n, (broker, user, password)) in cases.iter().enumerate() {
            let opts = |id: &str| {
                if v5 {
                    ConnectOpts::v5(id)
                } else {
                    ConnectOpts::v3(id)
                }
            };
            let id = format!("c{n}");
            let right = connack_code(broker, &opts(&id).login(user, Some(password)));
            assert_eq!(right, 0, "{user} v5={v5}");
            let wrong = connack_code(broker, &opts(&id).login(user, Some(b"wrong")));
            assert_eq!(wrong, bad, "{user} v5={v5}");
        }
    }
}
