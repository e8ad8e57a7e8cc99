//! `compare`: run one scenario against several brokers in turn (each a
//! fresh process on a free loopback port) and print one table with a
//! column per broker and a ratio column per broker against the first.
//!
//! Owns: the broker processes it starts (started with `sh -c "exec CMD"`,
//! so the PID is the broker's), their presets (mosquitto, ringmq), the
//! side-by-side table and the combined JSON line.
//!
//! Invariants: every broker started is stopped by its own PID (SIGTERM,
//! SIGKILL after 5 s) by a guard's `Drop`, also on error or panic; every
//! wait is bounded (10 s to listen, 5 s to stop).

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Args, Parser};

use crate::cli::{ArgError, Cli, CpuList};
use crate::error::BenchError;
use crate::report::{thousands, Report, Value};

/// `compare` flags. The compare flags may come before SCENARIO or among
/// the scenario's arguments; everything else goes to the scenario.
#[derive(Args, Debug, Clone)]
pub struct CompareArgs {
    /// A broker: NAME=CMD, CMD a shell command line (run by `sh -c`) in
    /// which `{PORT}` becomes the port picked for it. Repeatable.
    #[arg(long = "broker", value_name = "NAME=CMD")]
    pub brokers: Vec<String>,
    /// A preset broker: mosquitto or ringmq. Repeatable.
    #[arg(long = "preset", value_name = "NAME")]
    pub presets: Vec<String>,
    /// The ringmq binary of `--preset ringmq` (default: `ringmq` next to
    /// this executable).
    #[arg(long, value_name = "PATH")]
    pub ringmq_bin: Option<PathBuf>,
    /// Pin every broker to these CPUs.
    #[arg(long, value_name = "LIST")]
    pub broker_cpus: Option<CpuList>,
    /// The scenario's `--cpus` unless its arguments give one.
    #[arg(long, value_name = "LIST")]
    pub tool_cpus: Option<String>,
    /// Write an HTML page of every run to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// One JSON line: each broker's report under its name.
    #[arg(long)]
    pub json: bool,
    /// The scenario (conn, pubsub, ...) and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

fn arg_err(flag: &'static str, reason: impl Into<String>) -> BenchError {
    BenchError::Args(ArgError {
        flag,
        reason: reason.into(),
    })
}

/// `NAME=CMD` split in two; both must be non-empty.
pub fn parse_broker(spec: &str) -> Result<(String, String), String> {
    match spec.split_once('=') {
        Some((n, c)) if !n.is_empty() && !c.trim().is_empty() => Ok((n.to_string(), c.to_string())),
        _ => Err(format!("{spec:?} is not NAME=CMD")),
    }
}

/// `cmd` with every `{PORT}` replaced by `port`.
pub fn substitute_port(cmd: &str, port: u16) -> String {
    cmd.replace("{PORT}", &port.to_string())
}

/// Takes the compare flags out of `rest` (SCENARIO and its arguments)
/// into `a`; returns the scenario and its own arguments.
pub fn split_rest(a: &mut CompareArgs) -> Result<(String, Vec<String>), BenchError> {
    let mut it = std::mem::take(&mut a.rest).into_iter();
    let scenario = it.next().ok_or_else(|| arg_err("scenario", "missing"))?;
    let mut args = Vec::new();
    while let Some(w) = it.next() {
        let (flag, inline) = match w.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (w.clone(), None),
        };
        let own = [
            "--broker",
            "--preset",
            "--ringmq-bin",
            "--broker-cpus",
            "--tool-cpus",
            "--report",
        ];
        if flag == "--json" {
            a.json = true;
            continue;
        }
        if ["--port", "--host", "--broker-pid"].contains(&flag.as_str()) {
            return Err(arg_err(
                "port",
                format!("{flag} is set by compare for each broker; drop it"),
            ));
        }
        if !own.contains(&flag.as_str()) {
            args.push(w);
            continue;
        }
        let v = match inline {
            Some(v) => v,
            None => it
                .next()
                .ok_or_else(|| arg_err("broker", format!("{flag} needs a value")))?,
        };
        match flag.as_str() {
            "--broker" => a.brokers.push(v),
            "--preset" => a.presets.push(v),
            "--ringmq-bin" => a.ringmq_bin = Some(v.into()),
            "--broker-cpus" => {
                a.broker_cpus = Some(v.parse().map_err(|e| arg_err("broker-cpus", e))?)
            }
            "--tool-cpus" => a.tool_cpus = Some(v),
            _ => a.report = Some(v.into()),
        }
    }
    Ok((scenario, args))
}

/// The scenario's argv for one broker.
pub fn scenario_argv(
    scenario: &str,
    args: &[String],
    tool_cpus: Option<&str>,
    port: u16,
    pid: u32,
) -> Vec<String> {
    let mut v = vec!["ringmq-bench".to_string(), scenario.to_string()];
    v.extend(args.iter().cloned());
    let has_cpus = args
        .iter()
        .any(|a| a == "--cpus" || a.starts_with("--cpus="));
    if let (Some(c), false) = (tool_cpus, has_cpus) {
        v.extend(["--cpus".to_string(), c.to_string()]);
    }
    v.extend([
        "--port".to_string(),
        port.to_string(),
        "--broker-pid".to_string(),
        pid.to_string(),
    ]);
    v
}

fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

fn preset(name: &str, a: &CompareArgs, dir: &Path) -> Result<(String, String), BenchError> {
    match name {
        "mosquitto" => {
            let bin = [PathBuf::from("/usr/sbin/mosquitto")]
                .into_iter()
                .chain(
                    std::env::var_os("PATH")
                        .map(|p| std::env::split_paths(&p).map(|d| d.join("mosquitto")).collect::<Vec<_>>())
                        .unwrap_or_default(),
                )
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    arg_err(
                        "preset",
                        "mosquitto not found (/usr/sbin/mosquitto or PATH): apt-get install mosquitto",
                    )
                })?;
            let conf = dir.join("mosquitto-{PORT}.conf");
            Ok((
                "mosquitto".into(),
                format!("{} -c {}", quote(&bin), quote(&conf)),
            ))
        }
        "ringmq" => {
            let bin = match &a.ringmq_bin {
                Some(b) => b.clone(),
                None => std::env::current_exe()
                    .map_err(|e| BenchError::Io {
                        what: "current executable".into(),
                        source: e,
                    })?
                    .with_file_name("ringmq"),
            };
            if !bin.is_file() {
                return Err(arg_err(
                    "ringmq-bin",
                    format!(
                        "{} not found: cargo build --release -p ringmq (or give --ringmq-bin)",
                        bin.display()
                    ),
                ));
            }
            Ok((
                "ringmq".into(),
                format!(
                    "{} --listen 127.0.0.1:{{PORT}} --shards 1 --log warn",
                    quote(&bin)
                ),
            ))
        }
        other => Err(arg_err(
            "preset",
            format!("unknown preset {other} (mosquitto, ringmq)"),
        )),
    }
}

/// A started broker; stopped by PID when dropped.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signals our own child, which is not reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, BenchError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| BenchError::Io {
            what: "picking a free port".into(),
            source: e,
        })
}

fn start(
    name: &str,
    cmd: &str,
    port: u16,
    cpus: Option<&CpuList>,
    dir: &Path,
) -> Result<Running, BenchError> {
    let log = dir.join(format!("{name}.log"));
    let out = std::fs::File::create(&log).map_err(|e| BenchError::Io {
        what: format!("creating {}", log.display()),
        source: e,
    })?;
    let err = out.try_clone().map_err(|e| BenchError::Io {
        what: "log file".into(),
        source: e,
    })?;
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("exec {}", substitute_port(cmd, port)))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    if let Some(list) = cpus {
        let cpus = list.0.clone();
        // SAFETY: the hook only calls async-signal-safe libc functions on
        // a set built on its own stack.
        unsafe {
            command.pre_exec(move || {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                for &c in &cpus {
                    libc::CPU_SET(c, &mut set);
                }
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let child = command.spawn().map_err(|e| BenchError::Io {
        what: format!("starting broker {name}"),
        source: e,
    })?;
    let mut running = Running { child, log };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = running.child.try_wait() {
            return Err(BenchError::Setup(format!(
                "broker {name} exited before listening ({status}): {cmd}\n{}",
                running.tail()
            )));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(running);
        }
        if Instant::now() >= deadline {
            return Err(BenchError::Setup(format!(
                "broker {name} did not listen on {addr} within 10 s: {cmd}\n{}",
                running.tail()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Int(n) => thousands(&n.to_string()),
        Value::Float(f, d) => format!("{f:.d$}", d = *d),
        Value::Text(t) => t.clone(),
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Int(n) => Some(*n as f64),
        Value::Float(f, _) if f.is_finite() => Some(*f),
        _ => None,
    }
}

/// "x1.85": `v` over `base`, when both are numbers and `base` is not 0.
pub fn ratio(v: &Value, base: &Value) -> Option<String> {
    let (v, b) = (number(v)?, number(base)?);
    (b != 0.0).then(|| format!("x{:.2}", v / b))
}

/// The side-by-side markdown table: one row per metric key (in the order
/// first seen), one column per run, then one `NAME/FIRST` ratio column per
/// run after the first.
pub fn table(runs: &[(String, &Report)]) -> String {
    let mut keys: Vec<(String, String)> = Vec::new();
    for (_, r) in runs {
        for row in &r.rows {
            if !keys.iter().any(|(k, _)| *k == row.key) {
                keys.push((row.key.clone(), row.label.clone()));
            }
        }
    }
    let mut header = vec!["metric".to_string()];
    header.extend(runs.iter().map(|(n, _)| n.clone()));
    if let Some((first, _)) = runs.first() {
        header.extend(runs.iter().skip(1).map(|(n, _)| format!("{n}/{first}")));
    }
    let mut lines = vec![header];
    for (key, label) in &keys {
        let values: Vec<Option<&Value>> = runs.iter().map(|(_, r)| r.get(key)).collect();
        let mut line = vec![label.clone()];
        line.extend(values.iter().map(|v| v.map_or("n/a".into(), cell)));
        for v in values.iter().skip(1) {
            let r = match (v, values[0]) {
                (Some(v), Some(b)) => ratio(v, b),
                _ => None,
            };
            line.push(r.unwrap_or_else(|| "-".into()));
        }
        lines.push(line);
    }
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (n, line) in lines.iter().enumerate() {
        out.push('|');
        for (i, c) in line.iter().enumerate() {
            let pad = " ".repeat(widths[i] - c.chars().count());
            if i == 0 {
                let _ = write!(out, " {c}{pad} |");
            } else {
                let _ = write!(out, " {pad}{c} |");
            }
        }
        out.push('\n');
        if n == 0 {
            out.push('|');
            for (i, w) in widths.iter().enumerate() {
                let colon = if i == 0 { "-" } else { ":" };
                let _ = write!(out, "{}{colon}|", "-".repeat(w + 1));
            }
            out.push('\n');
        }
    }
    out
}

/// Each run's JSON under its name, on one line.
pub fn json(runs: &[(String, &Report)]) -> String {
    let parts: Vec<String> = runs
        .iter()
        .map(|(n, r)| format!("{}:{}", crate::report::json_string(n), r.to_json()))
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// Run the scenario against every broker in turn; their reports by name.
pub fn run_all(args: &CompareArgs) -> Result<(CompareArgs, Vec<(String, Report)>), BenchError> {
    let mut a = args.clone();
    let (scenario, sargs) = split_rest(&mut a)?;
    if scenario == "compare" {
        return Err(arg_err("scenario", "compare cannot compare itself"));
    }
    let dir = std::env::temp_dir().join(format!("ringmq-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| BenchError::Io {
        what: format!("creating {}", dir.display()),
        source: e,
    })?;
    let result = run_in(&a, &scenario, &sargs, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result.map(|r| (a, r))
}

fn run_in(
    a: &CompareArgs,
    scenario: &str,
    sargs: &[String],
    dir: &Path,
) -> Result<Vec<(String, Report)>, BenchError> {
    let mut brokers = Vec::new();
    for p in &a.presets {
        brokers.push(preset(p, a, dir)?);
    }
    for b in &a.brokers {
        brokers.push(parse_broker(b).map_err(|e| arg_err("broker", e))?);
    }
    if brokers.is_empty() {
        return Err(arg_err("broker", "give at least one --broker or --preset"));
    }
    // Check the scenario's flags once before any broker starts.
    Cli::try_parse_from(scenario_argv(scenario, sargs, a.tool_cpus.as_deref(), 1, 1))
        .map_err(|e| arg_err("scenario", e.to_string()))?;
    let mut out = Vec::new();
    for (name, cmd) in brokers {
        let port = free_port()?;
        let conf = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\nmax_connections -1\nmax_queued_messages 1000000\n"
        );
        let _ = std::fs::write(dir.join(format!("mosquitto-{port}.conf")), conf);
        let running = start(&name, &cmd, port, a.broker_cpus.as_ref(), dir)?;
        let pid = running.child.id();
        eprintln!("compare: {name} pid {pid} on 127.0.0.1:{port}: {cmd}");
        let argv = scenario_argv(scenario, sargs, a.tool_cpus.as_deref(), port, pid);
        let cli = Cli::try_parse_from(argv).map_err(|e| arg_err("scenario", e.to_string()))?;
        let report = crate::run(&cli)?;
        drop(running);
        out.push((name, report));
    }
    Ok(out)
}

/// `compare` as a library call: one report whose rows are every broker's,
/// keyed `NAME.KEY`.
pub fn run(args: &CompareArgs) -> Result<Report, BenchError> {
    let (_, runs) = run_all(args)?;
    let mut report = Report::new("compare");
    for (name, r) in &runs {
        for row in &r.rows {
            report.row(
                &format!("{name}.{}", row.key),
                &format!("{name} {}", row.label),
                row.value.clone(),
            );
        }
    }
    Ok(report)
}

/// `compare` from the command line: runs, prints the table (or JSON) and
/// writes `--report`.
pub fn main(args: &CompareArgs) -> Result<String, BenchError> {
    let (a, runs) = run_all(args)?;
    let refs: Vec<(String, &Report)> = runs.iter().map(|(n, r)| (n.clone(), r)).collect();
    if let Some(path) = &a.report {
        std::fs::write(path, crate::html::render(&refs)).map_err(|e| BenchError::Io {
            what: format!("writing {}", path.display()),
            source: e,
        })?;
    }
    Ok(if a.json {
        json(&refs) + "\n"
    } else {
        table(&refs)
    })
}

/// Parse a whole `ringmq-bench compare ...` argv (tests).
pub fn parse(argv: &[&str]) -> Result<CompareArgs, String> {
    match Cli::try_parse_from(argv) {
        Ok(Cli {
            command: crate::cli::Command::Compare(a),
        }) => Ok(a),
        Ok(_) => Err("not compare".into()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_specs_and_ports() {
        assert_eq!(
            parse_broker("a=x --p {PORT}"),
            Ok(("a".into(), "x --p {PORT}".into()))
        );
        assert!(parse_broker("=x").is_err());
        assert!(parse_broker("a=").is_err());
        assert!(parse_broker("a").is_err());
        assert_eq!(substitute_port("m -p {PORT} {PORT}", 7), "m -p 7 7");
    }

    #[test]
    fn flags_after_the_scenario_are_taken_and_port_refused() {
        let mut a = parse(&[
            "ringmq-bench",
            "compare",
            "conn",
            "-n",
            "20",
            "--broker",
            "a=x",
            "--preset=ringmq",
            "--json",
        ])
        .unwrap();
        let (s, rest) = split_rest(&mut a).unwrap();
        assert_eq!((s.as_str(), rest), ("conn", vec!["-n".into(), "20".into()]));
        assert_eq!(a.brokers, vec!["a=x".to_string()]);
        assert_eq!(a.presets, vec!["ringmq".to_string()]);
        assert!(a.json);
        for bad in ["--port", "--host=x", "--broker-pid"] {
            let mut a = parse(&["ringmq-bench", "compare", "conn", bad, "1"]).unwrap();
            let e = split_rest(&mut a).unwrap_err().to_string();
            assert!(e.contains("set by compare"), "{e}");
        }
        let v = scenario_argv("conn", &[], Some("1"), 5, 9);
        assert_eq!(
            v.join(" "),
            "ringmq-bench conn --cpus 1 --port 5 --broker-pid 9"
        );
        let v = scenario_argv("conn", &["--cpus".into(), "2".into()], Some("1"), 5, 9);
        assert_eq!(
            v.join(" "),
            "ringmq-bench conn --cpus 2 --port 5 --broker-pid 9"
        );
    }

    #[test]
    fn table_has_columns_and_ratios() {
        let mut a = Report::new("conn");
        a.float("rate_per_s", "rate/s", 100.0, 1);
        a.text("why", "why", "n/a");
        let mut b = Report::new("conn");
        b.float("rate_per_s", "rate/s", 185.0, 1);
        b.int("only_b", "only b", 3);
        let t = table(&[("a".into(), &a), ("b".into(), &b)]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].contains(" a |") && lines[0].contains("b/a"), "{t}");
        assert!(t.contains("x1.85"), "{t}");
        assert!(t.contains("only b") && t.contains("n/a"), "{t}");
        let w: Vec<usize> = lines.iter().map(|l| l.chars().count()).collect();
        assert!(w.windows(2).all(|p| p[0] == p[1]), "{t}");
        assert_eq!(ratio(&Value::Int(1), &Value::Int(0)), None);
        assert!(json(&[("a".into(), &a)]).starts_with("{\"a\":{\"scenario\""));
    }
}
