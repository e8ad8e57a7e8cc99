//! The `ringmq` binary as a child process, for tests that need the real
//! command line (signals, config files): started with its log on a
//! channel, the address of a listener read from its "ringmq started"
//! line, killed if the test fails half-way.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::{poll_until, PROMPT};

/// A running broker process and its log lines.
pub struct Process {
    pub child: Child,
    /// Every stderr line, as the broker writes them.
    pub log: mpsc::Receiver<String>,
    /// Lines read from `log` so far (by [`Process::wait_log`]).
    pub lines: Vec<String>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    /// Starts the binary with `args` (no RUST_LOG, no colours) and returns
    /// it with the address of its first `scheme` listener (`"mqtt://"`,
    /// `"mqtts://"`).
    pub fn start(args: &[&str], scheme: &str) -> (Process, SocketAddr) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringmq"))
            .args(args)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the ringmq binary");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut process = Process {
            child,
            log,
            lines: Vec::new(),
        };
        let addr = loop {
            let line = process
                .log
                .recv_timeout(Duration::from_secs(20))
                .expect("the broker logs that it started");
            let started = line.contains("ringmq started");
            process.lines.push(line.clone());
            if !started {
                continue;
            }
            if let Some(at) = line.find(scheme) {
                let rest = &line[at + scheme.len()..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
                    .unwrap_or(rest.len());
                break rest[..end].parse().expect("the listen address");
            }
        };
        (process, addr)
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill on the pid of a child we own and have not reaped.
        assert_eq!(
            unsafe { libc::kill(self.child.id() as libc::pid_t, signal) },
            0
        );
    }

    /// Waits (with a deadline) until a log line satisfies `found`; `what`
    /// names it in the failure.
    pub fn wait_log(&mut self, what: &str, found: impl Fn(&str) -> bool) {
        let (log, lines) = (&self.log, &mut self.lines);
        let ok = poll_until(PROMPT, || {
            lines.extend(log.try_iter());
            lines.iter().any(|l| found(l))
        });
        assert!(ok, "no log line {what} in {lines:#?}");
    }

    /// SIGTERM, then waits for the exit; true when it exited with 0.
    pub fn terminate(&mut self) -> bool {
        self.signal(libc::SIGTERM);
        let mut status = None;
        let exited = poll_until(Duration::from_secs(10), || {
            status = self.child.try_wait().expect("wait");
            status.is_some()
        });
        exited && status.is_some_and(|s| s.success())
    }
}
