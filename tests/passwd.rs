//! `ringmq passwd` from the outside: the built binary run in a temporary
//! directory, its files read back with `ringmq_auth::password`, and, where
//! `mosquitto_passwd` is installed, files passed between the two tools.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

mod common;
use common::TempDir;

use ringmq_auth::password::{PasswordFile, Verdict};

const MOSQUITTO_PASSWD: &str = "/usr/bin/mosquitto_passwd";

/// Every name in `dir`, sorted (to catch temporary files left behind).
fn names(dir: &TempDir) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(&dir.0)
        .expect("read the test directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Runs `ringmq passwd ARGS` in `dir`, with `stdin` piped in (or no input).
fn passwd(dir: &TempDir, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringmq"))
        .arg("passwd")
        .args(args)
        .current_dir(&dir.0)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ringmq passwd");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(input)
            .expect("write stdin");
    }
    child.wait_with_output().expect("wait for ringmq passwd")
}

fn assert_ok(out: &Output, args: &str) {
    assert!(
        out.status.success(),
        "ringmq passwd {args}: {:?}, stderr {:?}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty(), "ringmq passwd {args}: {out:?}");
}

/// Exit status `code` and one stderr line `ringmq passwd: ...` holding `needle`.
fn assert_fails(out: &Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr {stderr:?}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("ringmq passwd: "), "{stderr:?}");
    assert!(
        stderr.contains(needle),
        "{stderr:?} should contain {needle:?}"
    );
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).expect("read the password file")
}

fn parse(path: &Path) -> PasswordFile {
    PasswordFile::parse(&read(path)).expect("the password file parses")
}

fn verdict(path: &Path, user: &str, password: &str) -> Verdict {
    parse(path).verify(user.as_bytes(), Some(password.as_bytes()))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn create_add_and_change_in_batch_mode() {
    let dir = TempDir::new("batch");
    let file = dir.path("pw");
    assert_ok(
        &passwd(&dir, &["-c", "-b", "pw", "alice", "s3cret"], None),
        "-c -b",
    );
    assert_eq!(mode(&file), 0o600, "a new file is the owner's only");
    assert_eq!(verdict(&file, "alice", "s3cret"), Verdict::Ok);
    assert_eq!(verdict(&file, "alice", "wrong"), Verdict::BadCredentials);
    let line = read(&file);
    assert!(line.starts_with("alice:$7$101$"), "{line:?}");

    // A second user is appended; a password with ':' and blanks is fine.
    assert_ok(&passwd(&dir, &["-b", "pw", "bob", "a: b"], None), "-b bob");
    assert_eq!(parse(&file).users().collect::<Vec<_>>(), ["alice", "bob"]);
    assert_eq!(verdict(&file, "alice", "s3cret"), Verdict::Ok);
    assert_eq!(verdict(&file, "bob", "a: b"), Verdict::Ok);

    // Changing alice keeps her place and leaves bob's line as it was.
    let bob_line = read(&file).lines().nth(1).map(str::to_owned);
    assert_ok(
        &passwd(&dir, &["-b", "pw", "alice", "new"], None),
        "-b alice",
    );
    assert_eq!(verdict(&file, "alice", "new"), Verdict::Ok);
    assert_eq!(verdict(&file, "alice", "s3cret"), Verdict::BadCredentials);
    assert_eq!(read(&file).lines().nth(1).map(str::to_owned), bob_line);

    // -c starts again from nothing.
    assert_ok(
        &passwd(&dir, &["-c", "-b", "pw", "carol", "x"], None),
        "-c carol",
    );
    assert_eq!(parse(&file).users().collect::<Vec<_>>(), ["carol"]);
    assert_eq!(names(&dir), ["pw"], "no temporary file left");
}

#[test]
fn iterations_flag_is_written_into_the_line() {
    let dir = TempDir::new("iterations");
    let file = dir.path("pw");
    assert_ok(
        &passwd(&dir, &["-I", "1000", "-c", "-b", "pw", "u", "p"], None),
        "-I 1000",
    );
    assert!(read(&file).starts_with("u:$7$1000$"), "{:?}", read(&file));
    assert_eq!(verdict(&file, "u", "p"), Verdict::Ok);
    assert_fails(
        &passwd(&dir, &["-I", "0", "-b", "pw", "u", "p"], None),
        2,
        "-I 0",
    );
    assert_fails(
        &passwd(&dir, &["-I", "many", "-b", "pw", "u", "p"], None),
        2,
        "-I many",
    );
}

#[test]
fn piped_password_without_batch_mode() {
    let dir = TempDir::new("piped");
    let file = dir.path("pw");
    assert_ok(
        &passwd(&dir, &["-c", "pw", "alice"], Some(b"from stdin\n")),
        "-c (stdin)",
    );
    assert_eq!(verdict(&file, "alice", "from stdin"), Verdict::Ok);
    // A CRLF line ending is not part of the password; only one line is read.
    assert_ok(
        &passwd(&dir, &["pw", "bob"], Some(b"crlf\r\nignored\n")),
        "bob (stdin)",
    );
    assert_eq!(verdict(&file, "bob", "crlf"), Verdict::Ok);

    let before = read(&file);
    assert_fails(
        &passwd(&dir, &["pw", "carol"], Some(b"\n")),
        1,
        "empty password",
    );
    assert_fails(&passwd(&dir, &["pw", "carol"], None), 1, "no password");
    assert_eq!(read(&file), before, "a failed command changes nothing");
}

#[test]
fn delete_a_user() {
    let dir = TempDir::new("delete");
    let file = dir.path("pw");
    assert_ok(&passwd(&dir, &["-c", "-b", "pw", "alice", "a"], None), "-c");
    assert_ok(&passwd(&dir, &["-b", "pw", "bob", "b"], None), "-b");
    assert_ok(&passwd(&dir, &["-D", "pw", "alice"], None), "-D alice");
    assert_eq!(parse(&file).users().collect::<Vec<_>>(), ["bob"]);
    assert_eq!(verdict(&file, "alice", "a"), Verdict::BadCredentials);
    assert_eq!(verdict(&file, "bob", "b"), Verdict::Ok);

    let before = read(&file);
    assert_fails(
        &passwd(&dir, &["-D", "pw", "alice"], None),
        1,
        "\"alice\" is not in pw",
    );
    assert_eq!(read(&file), before);
}

#[test]
fn upgrade_plain_text_file_keeping_mode_comments_and_hashes() {
    let dir = TempDir::new("upgrade");
    let file = dir.path("pw");
    // bob's line: written by mosquitto_passwd 2.0.11 for the password "s3cret:pw".
    let bob = "bob:$7$101$7aoUxC97msd4JXd9$+CbyhXPaNWCCycIx3dhHD0e4KcQSMRdX+YtNYRgHohEX4JsiKH632F/7oHcC7Pr5bu2Q7LpDFAYKGuC8Z1XwWw==";
    std::fs::write(&file, format!("# fleet\nalice:plain pw\n{bob}\ncarol:x\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();

    assert_ok(&passwd(&dir, &["-U", "pw"], None), "-U");
    let text = read(&file);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "# fleet");
    assert!(lines[1].starts_with("alice:$7$101$"), "{text}");
    assert_eq!(lines[2], bob, "a hashed line is kept as it was");
    assert!(lines[3].starts_with("carol:$7$101$"), "{text}");
    assert_eq!(verdict(&file, "alice", "plain pw"), Verdict::Ok);
    assert_eq!(verdict(&file, "bob", "s3cret:pw"), Verdict::Ok);
    assert_eq!(verdict(&file, "carol", "x"), Verdict::Ok);
    assert_eq!(mode(&file), 0o640, "an existing file keeps its mode");

    // Running it again changes nothing (every line is a hash now).
    assert_ok(&passwd(&dir, &["-U", "pw"], None), "-U again");
    assert_eq!(read(&file), text);
    assert_eq!(names(&dir), ["pw"]);
}

#[test]
fn errors_are_one_line_and_change_nothing() {
    let dir = TempDir::new("errors");
    let file = dir.path("pw");

    // No file and no -c: nothing is created.
    assert_fails(
        &passwd(&dir, &["-b", "pw", "alice", "a"], None),
        1,
        "pw does not exist (use -c to create it)",
    );
    assert_eq!(names(&dir), Vec::<String>::new());

    assert_ok(&passwd(&dir, &["-c", "-b", "pw", "alice", "a"], None), "-c");
    let before = read(&file);
    assert_fails(
        &passwd(&dir, &["-b", "pw", "a:b", "p"], None),
        1,
        "username contains ':'",
    );
    assert_fails(&passwd(&dir, &["-b", "pw", "#x", "p"], None), 1, "username");
    assert_eq!(read(&file), before);

    // A file that does not parse is named with its line and left alone.
    let broken = dir.path("broken");
    std::fs::write(&broken, format!("{before}# note\nno colon here\n")).unwrap();
    assert_fails(
        &passwd(&dir, &["-b", "broken", "bob", "b"], None),
        1,
        "broken: line 3: no ':'",
    );
    assert_fails(&passwd(&dir, &["-D", "broken", "alice"], None), 1, "line 3");
    assert_fails(&passwd(&dir, &["-U", "broken"], None), 1, "line 3");
    assert_eq!(read(&broken), format!("{before}# note\nno colon here\n"));

    // Usage errors: exit status 2.
    for (args, needle) in [
        (
            &["-c", "-D", "pw", "alice"][..],
            "-c and -D cannot be used together",
        ),
        (&["-c", "-U", "pw"], "-c and -U cannot be used together"),
        (
            &["-b", "-D", "pw", "alice", "a"],
            "-b and -D cannot be used together",
        ),
        (&["-U", "pw", "alice"], "expected FILE"),
        (&["-b", "pw", "alice"], "expected FILE USER PASSWORD"),
        (&["pw"], "expected FILE USER"),
        (&[], "expected FILE USER"),
        (&["-q", "pw", "alice"], "unknown option -q"),
    ] {
        assert_fails(&passwd(&dir, args, None), 2, needle);
    }
    assert_eq!(read(&file), before);
    assert_eq!(names(&dir), ["broken", "pw"], "no temporary file left");
}

#[test]
fn help_says_what_iterations_mean() {
    let dir = TempDir::new("help");
    let out = passwd(&dir, &["--help"], None);
    assert_ok(&out, "--help");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("-I ITERATIONS"), "{help}");
    assert!(help.contains("Mosquitto 2.0 reads any count"), "{help}");
    assert!(help.contains("higher is stronger"), "{help}");
}

#[test]
fn files_pass_between_mosquitto_passwd_and_ringmq_passwd() {
    if !Path::new(MOSQUITTO_PASSWD).exists() {
        eprintln!("note: {MOSQUITTO_PASSWD} is not installed; skipping the Mosquitto round trip");
        return;
    }
    let dir = TempDir::new("mosquitto");
    let file = dir.path("pw");
    let mosquitto = |args: &[&str]| {
        let out = Command::new(MOSQUITTO_PASSWD)
            .args(args)
            .current_dir(&dir.0)
            .stdin(Stdio::null())
            .output()
            .expect("run mosquitto_passwd");
        assert!(out.status.success(), "mosquitto_passwd {args:?}: {out:?}");
    };
    mosquitto(&["-c", "-b", "pw", "mosq", "from mosquitto"]);
    assert_ok(
        &passwd(&dir, &["-b", "pw", "ring", "from ringmq"], None),
        "-b",
    );
    assert_eq!(verdict(&file, "mosq", "from mosquitto"), Verdict::Ok);
    assert_eq!(verdict(&file, "ring", "from ringmq"), Verdict::Ok);

    // And back: mosquitto_passwd keeps ringmq's line when it adds its own
    // (a line it could not read it would report as corrupt and drop).
    mosquitto(&["-b", "pw", "mosq2", "again"]);
    assert_eq!(
        parse(&file).users().collect::<Vec<_>>(),
        ["mosq", "ring", "mosq2"]
    );
    assert_eq!(verdict(&file, "ring", "from ringmq"), Verdict::Ok);
    assert_eq!(verdict(&file, "mosq2", "again"), Verdict::Ok);
}

#[test]
fn a_symlink_stays_and_its_target_is_replaced() {
    let dir = TempDir::new("symlink");
    assert_ok(
        &passwd(&dir, &["-c", "-b", "real", "alice", "a"], None),
        "-c",
    );
    std::os::unix::fs::symlink("real", dir.path("link")).unwrap();
    assert_ok(&passwd(&dir, &["-b", "link", "bob", "b"], None), "-b link");
    let link = std::fs::symlink_metadata(dir.path("link")).unwrap();
    assert!(link.file_type().is_symlink(), "the link is still a link");
    assert_eq!(verdict(&dir.path("real"), "bob", "b"), Verdict::Ok);
    assert_eq!(names(&dir), ["link", "real"]);
}
