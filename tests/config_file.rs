//! `--config FILE`, `--print-config` and `ringmq.example.toml` through the
//! real binary: the printed configuration loads back unchanged, the
//! command line beats the file and the file beats `RUST_LOG` and the
//! defaults, every bad file is refused with its key and line, the example
//! file is generated and loads to the defaults, a broker started from a
//! file serves where the file says, and SIGHUP applies a changed `log` key
//! and names the changed keys that need a restart.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};

use common::process::Process;
use common::{poll_until, subscribe_packet, ConnectOpts, RawClient, TempDir, PROMPT, SUBACK};

/// Runs the binary to completion with `args` (no `RUST_LOG` unless given in
/// `env`).
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringmq"))
        .args(args)
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run the ringmq binary")
}

/// `--print-config` with `args`: the printed file.
fn print_config(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = run(&[&["--print-config"], args].concat(), env);
    assert!(
        out.status.success(),
        "--print-config {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// The value line of `key` in a printed configuration.
fn line_of<'a>(printed: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key} = ");
    printed
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {key} in {printed}"))
}

#[test]
fn print_config_loads_back_unchanged() {
    let dir = TempDir::new("config-roundtrip");
    let first = print_config(
        &[
            "--listen",
            "127.0.0.1:1884",
            "--listen",
            "ws://127.0.0.1:8080/mqtt",
            "--max-connections",
            "5",
            "--keepalive-backoff",
            "0.5",
            "--client-id-pattern",
            "%u-*",
            "--ws-allow-no-subprotocol",
            "--log",
            "ringmq=debug,warn",
        ],
        &[],
    );
    assert_eq!(line_of(&first, "max-connections"), "max-connections = 5");
    assert_eq!(
        line_of(&first, "keepalive-backoff"),
        "keepalive-backoff = 0.5"
    );
    assert_eq!(
        line_of(&first, "listen"),
        r#"listen = ["127.0.0.1:1884", "ws://127.0.0.1:8080/mqtt"]"#
    );
    assert_eq!(
        line_of(&first, "ws-allow-no-subprotocol"),
        "ws-allow-no-subprotocol = true"
    );
    assert_eq!(line_of(&first, "log"), r#"log = "ringmq=debug,warn""#);
    // An unset optional key is listed, commented out.
    assert!(first.contains("\n# password-file = "), "{first}");
    assert!(first.contains("\n# shards = "), "{first}");

    let file = dir.path_str("printed.toml");
    std::fs::write(&file, &first).unwrap();
    let second = print_config(&["--config", &file], &[]);
    assert_eq!(
        second, first,
        "the printed file did not load back unchanged"
    );
}

#[test]
fn the_command_line_beats_the_file_which_beats_rust_log_and_defaults() {
    let dir = TempDir::new("config-precedence");
    let file = dir.path_str("ringmq.toml");
    std::fs::write(
        &file,
        "keepalive-tick-ms = 50\n\
         max-connections = 7\n\
         listen = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n\
         log = \"warn\"\n",
    )
    .unwrap();
    let only_file = print_config(&["--config", &file], &[("RUST_LOG", "debug")]);
    assert_eq!(
        line_of(&only_file, "keepalive-tick-ms"),
        "keepalive-tick-ms = 50"
    );
    assert_eq!(
        line_of(&only_file, "listen"),
        r#"listen = ["127.0.0.1:1", "127.0.0.1:2"]"#
    );
    assert_eq!(
        line_of(&only_file, "log"),
        r#"log = "warn""#,
        "the file beats RUST_LOG"
    );
    assert_eq!(
        line_of(&only_file, "max-keepalive"),
        "max-keepalive = 65535"
    );

    let overridden = print_config(
        &[
            "--config",
            &file,
            "--keepalive-tick-ms",
            "20",
            "--listen",
            "127.0.0.1:3",
            "--log",
            "error",
        ],
        &[("RUST_LOG", "debug")],
    );
    assert_eq!(
        line_of(&overridden, "keepalive-tick-ms"),
        "keepalive-tick-ms = 20"
    );
    assert_eq!(
        line_of(&overridden, "listen"),
        r#"listen = ["127.0.0.1:3"]"#,
        "a repeatable flag replaces the file's list"
    );
    assert_eq!(line_of(&overridden, "log"), r#"log = "error""#);
    assert_eq!(
        line_of(&overridden, "max-connections"),
        "max-connections = 7"
    );

    // Without the key in the file, RUST_LOG is used as before.
    std::fs::write(&file, "max-connections = 7\n").unwrap();
    let env = print_config(&["--config", &file], &[("RUST_LOG", "debug")]);
    assert_eq!(line_of(&env, "log"), r#"log = "debug""#);
}

#[test]
fn every_bad_file_is_refused_naming_the_key_and_the_line() {
    let dir = TempDir::new("config-errors");
    let file = dir.path_str("bad.toml");
    for (text, want) in [
        // Unknown keys, with a suggestion when one is near.
        (
            "# comment\nmax-conections = 5\n",
            "line 2: unknown key \"max-conections\" (did you mean \"max-connections\"?)",
        ),
        (
            "keepalive_tick_ms = 5\n",
            "line 1: unknown key \"keepalive_tick_ms\" (did you mean \"keepalive-tick-ms\"?)",
        ),
        ("\n\nfrobnicate = true\n", "line 3: unknown key \"frobnicate\""),
        ("config = \"other.toml\"\n", "line 1: key \"config\" is not allowed"),
        // Wrong types.
        (
            "shards = 1\nkeepalive-tick-ms = \"100\"\n",
            "line 2: invalid value for key \"keepalive-tick-ms\": expected an integer, found a string",
        ),
        (
            "listen = \"127.0.0.1:1883\"\n",
            "line 1: invalid value for key \"listen\": expected a list of strings, found a string",
        ),
        (
            "require-certificate = \"yes\"\n",
            "line 1: invalid value for key \"require-certificate\": expected true or false, found a string",
        ),
        // Values the flag's parser refuses.
        (
            "\nmax-qos = 300\n",
            "line 2: invalid value for key \"max-qos\": 300 is not in 0..=255",
        ),
        (
            "listen = [\n  \"127.0.0.1:1883\",\n  \"nonsense\",\n]\n",
            "line 3: invalid value for key \"listen\": \"nonsense\": not HOST:PORT",
        ),
        // Values validate() refuses.
        (
            "max-connections = 1\nkeepalive-tick-ms = 0\n",
            "line 2: invalid value for key \"keepalive-tick-ms\": 0 is not in 1..=60000",
        ),
        (
            "max-session-expiry-secs = 60\n",
            "line 1: invalid value for key \"max-session-expiry-secs\" (invalid \
             --session-expiry-default-secs: 86400 is above --max-session-expiry-secs 60)",
        ),
        (
            "log = \"[[[\"\n",
            "line 1: invalid value for key \"log\": \"[[[\": ",
        ),
        // Duplicates and broken TOML.
        ("shards = 1\n\nshards = 2\n", "line 3: duplicate key \"shards\""),
        ("shards = 1\nmax-qos = \n", "line 2: not valid TOML at key \"max-qos\": "),
        ("listen = [\"127.0.0.1:1883\"\n", "line 1: not valid TOML at key \"listen\": "),
    ] {
        std::fs::write(&file, text).unwrap();
        let out = run(&["--config", &file, "--print-config"], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{text:?} printed a configuration");
        let want = format!("ringmq: config file {file} {want}");
        assert!(stderr.starts_with(&want), "{text:?}: {stderr:?} should start {want:?}");
    }
    // A validate() error that names a key the command line set names the
    // flag, as without a file.
    std::fs::write(&file, "keepalive-tick-ms = 10\n").unwrap();
    let out = run(&["--config", &file, "--keepalive-tick-ms", "0"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("ringmq: invalid --keepalive-tick-ms: "),
        "{stderr}"
    );
    // A missing file.
    let missing = dir.path_str("missing.toml");
    let out = run(&["--config", &missing], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with(&format!("ringmq: config file {missing}: cannot read it")),
        "{stderr}"
    );
}

#[test]
fn the_example_file_is_generated_and_loads_to_the_defaults() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/ringmq.example.toml");
    let committed = std::fs::read_to_string(path).expect("ringmq.example.toml");
    let generated = ringmq::config_file::example();
    assert!(
        committed == generated,
        "ringmq.example.toml is out of date with the flags: regenerate it with \
         `cargo run -- --print-example-config > ringmq.example.toml`"
    );
    let out = run(&["--print-example-config"], &[]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), generated);
    // Every flag --help lists is in it, with its help text.
    let help = String::from_utf8(run(&["--help"], &[]).stdout).expect("UTF-8");
    let mut options: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        if let Some(option) = line.strip_prefix("      --") {
            let flag = option.split([' ', '=']).next().unwrap_or("");
            options.push((flag.to_string(), String::new()));
        } else if line.trim_start().starts_with('-') {
            options.push((String::new(), String::new())); // -h, -V
        } else if let Some((_, text)) = options.last_mut() {
            text.push(' ');
            text.push_str(line);
        }
    }
    let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let comments = words(
        &committed
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .collect::<Vec<_>>()
            .join(" "),
    );
    let options: Vec<_> = options
        .into_iter()
        .filter(|(flag, _)| !["", "config", "print-config"].contains(&flag.as_str()))
        .collect();
    assert!(options.len() > 40, "{help}");
    for (flag, text) in options {
        assert!(
            committed.contains(&format!("\n# {flag} = ")),
            "--{flag} has no key in ringmq.example.toml"
        );
        let text = text.split("[default:").next().unwrap_or("");
        let text = text.split("[possible values:").next().unwrap_or("");
        let text = words(text.split("[env:").next().unwrap_or(""));
        assert!(
            comments.contains(&text),
            "--{flag}'s help {text:?} is not in ringmq.example.toml"
        );
    }

    assert_eq!(
        print_config(&["--config", path], &[]),
        print_config(&[], &[]),
        "loading the example does not give the defaults"
    );
}

/// Starts the binary on `--config file` alone and returns it with its
/// first listener's address.
fn start(file: &str) -> (Process, SocketAddr) {
    Process::start(&["--config", file], "mqtt://")
}

/// The settings every broker test file starts with (few shards and little
/// locked memory, see tests/sighup.rs).
const BASE: &str = "listen = [\"127.0.0.1:0\"]\nshards = 1\nio-memory-kib = 256\n";

#[test]
fn a_broker_started_from_a_file_serves_where_it_says() {
    let dir = TempDir::new("config-serve");
    let file = dir.path_str("ringmq.toml");
    std::fs::write(
        &file,
        format!("{BASE}log = \"info\"\nmax-connections = 100\n"),
    )
    .unwrap();
    let (_process, addr) = start(&file);
    assert!(addr.ip().is_loopback(), "{addr}");
    assert_ne!(addr.port(), 0);
    let (mut client, _) = RawClient::connected(addr, &ConnectOpts::v3("from-config-file"));
    client.ping();
}

#[test]
fn sighup_applies_the_log_filter_and_names_keys_that_need_a_restart() {
    let dir = TempDir::new("config-sighup");
    let file = dir.path_str("ringmq.toml");
    std::fs::write(
        &file,
        format!("{BASE}log = \"info\"\nmax-connections = 100\n"),
    )
    .unwrap();
    let (mut process, addr) = start(&file);

    // At "info", a connection logs nothing at DEBUG.
    let (mut before, _) = RawClient::connected(addr, &ConnectOpts::v3("before-sighup"));
    before.ping();

    std::fs::write(
        &file,
        format!("{BASE}log = \"debug\"\nmax-connections = 10\n"),
    )
    .unwrap();
    process.signal(libc::SIGHUP);
    process.wait_log("applying log", |l| {
        l.contains(" INFO ") && l.contains("config file") && l.contains("applied: log")
    });
    process.wait_log("naming max-connections", |l| {
        l.contains(" WARN ") && l.contains("needs a restart") && l.contains("max-connections")
    });
    let applied = process
        .lines
        .iter()
        .position(|l| l.contains("applied: log"))
        .expect("seen above");
    assert!(
        !process.lines[..applied]
            .iter()
            .any(|l| l.contains(" DEBUG ")),
        "DEBUG lines before the filter changed: {:#?}",
        process.lines
    );
    assert!(
        !process
            .lines
            .iter()
            .any(|l| l.contains("applied: log") && l.contains("max-connections")),
        "max-connections reported as applied: {:#?}",
        process.lines
    );

    // The new filter is in force: a connection now logs at DEBUG.
    let (mut after, _) = RawClient::connected(addr, &ConnectOpts::v3("after-sighup"));
    after.ping();
    process.wait_log("at DEBUG", |l| l.contains(" DEBUG "));

    // A file that does not load changes nothing and says where it is wrong.
    std::fs::write(&file, format!("{BASE}log = \"info\"\nmax-connections = \n")).unwrap();
    process.signal(libc::SIGHUP);
    process.wait_log("refusing the broken file", |l| {
        l.contains(" WARN ") && l.contains("not reloaded") && l.contains("line 5")
    });
    process.lines.clear();
    let (mut still, _) = RawClient::connected(addr, &ConnectOpts::v3("still-debug"));
    still.ping();
    process.wait_log("still at DEBUG", |l| l.contains(" DEBUG "));

    // SIGTERM still stops it, with exit status 0.
    assert!(process.terminate(), "no clean exit on SIGTERM");
}

#[test]
fn sighup_applies_a_live_limit_to_new_decisions() {
    let dir = TempDir::new("config-sighup-live");
    let file = dir.path_str("ringmq.toml");
    std::fs::write(&file, format!("{BASE}max-subscriptions = 10\n")).unwrap();
    let (mut process, addr) = start(&file);
    let (mut c, _) = RawClient::connected(addr, &ConnectOpts::v5("limited"));
    let two = subscribe_packet(1, &[("a", 0), ("b", 0)], true);
    c.send(&two).unwrap();
    let (_, codes) = c.expect_packet(PROMPT, "SUBACK").ack_codes(SUBACK, true);
    assert_eq!(codes, [0, 0]);

    std::fs::write(&file, format!("{BASE}max-subscriptions = 2\n")).unwrap();
    process.signal(libc::SIGHUP);
    process.wait_log("applying max-subscriptions", |l| {
        l.contains("applied: max-subscriptions")
    });
    // The same client, already connected: a third filter is over the new
    // limit (0x97); the two it holds stay.
    let mut code = 0;
    assert!(
        poll_until(PROMPT, || {
            c.send(&subscribe_packet(2, &[("c", 0)], true)).unwrap();
            let (_, codes) = c.expect_packet(PROMPT, "SUBACK").ack_codes(SUBACK, true);
            code = codes[0];
            code == 0x97
        }),
        "third SUBSCRIBE got {code:#x}"
    );
    assert!(process.terminate(), "no clean exit on SIGTERM");
}
