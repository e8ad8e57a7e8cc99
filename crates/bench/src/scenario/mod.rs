//! What every scenario shares: the resolved target, the connection
//! handshake with its timings, failure tallies, pacing maths and the
//! report rows about the run itself (parameters, machine, tool CPU, broker
//! CPU).
//!
//! Owns: helpers only; each scenario lives in its own file and exposes
//! `run(&Args) -> Result<Report, BenchError>`.

pub mod attack;
pub mod canary;
pub mod conn;
pub mod halfopen;
pub mod handshake;
pub mod idle;
pub mod keepalive;
pub mod netns;
pub mod pubsub;
pub mod sink;
pub mod soak;
pub mod storm;
pub mod takeover;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ringmq_codec::{ConnAck, ProtocolVersion};

use crate::cli::{Common, Rate};
use crate::conn::{within, Conn, ConnectSpec, Login, ReadSize};
use crate::error::{BenchError, ConnError};
use crate::hist::Histogram;
use crate::procfs::{cpu_model, now_ns, raise_nofile_limit, CpuSample};
use crate::report::{Report, Value};
use crate::runtime::Progress;
use crate::transport::TransportSpec;

/// What every task of a run needs to know, shared across executors.
#[derive(Debug)]
pub struct Target {
    /// The broker's address.
    pub addr: SocketAddr,
    /// Protocol version of every connection.
    pub version: ProtocolVersion,
    /// Time allowed for TCP connect and for CONNACK.
    pub connect_timeout: Duration,
    /// Client id prefix.
    pub prefix: String,
    /// Progress counters.
    pub progress: Arc<Progress>,
    /// TLS and/or WebSocket under every connection (`--tls`, `--ws`).
    pub transport: Option<Arc<TransportSpec>>,
    /// Credentials of every CONNECT (`--username`, `--password`).
    pub login: Login,
    /// Source addresses to bind, round robin (`--ifaddr`); empty: the
    /// kernel picks.
    pub sources: Sources,
}

/// `--ifaddr`'s addresses, the round-robin counter over them and how many
/// connections each one opened.
#[derive(Debug, Default)]
pub struct Sources {
    addrs: Vec<IpAddr>,
    next: AtomicUsize,
    opened: Vec<AtomicU64>,
}

impl Sources {
    /// Round robin over `addrs`.
    pub fn new(addrs: Vec<IpAddr>) -> Sources {
        Sources {
            opened: addrs.iter().map(|_| AtomicU64::new(0)).collect(),
            addrs,
            next: AtomicUsize::new(0),
        }
    }

    /// The same addresses, a fresh counter.
    pub fn fresh(&self) -> Sources {
        Sources::new(self.addrs.clone())
    }

    /// The next address and its slot, if there are any.
    fn pick(&self) -> Option<(usize, IpAddr)> {
        if self.addrs.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.addrs.len();
        Some((i, self.addrs[i]))
    }

    /// One row per address: the TCP connections it opened
    /// (`source_ADDR_connections`).
    pub fn report(&self, report: &mut Report) {
        for (addr, n) in self.addrs.iter().zip(&self.opened) {
            report.int(
                &format!("source_{addr}_connections"),
                &format!("connections from {addr}"),
                n.load(Ordering::Relaxed),
            );
        }
    }
}

impl Target {
    /// Resolve `--host`/`--port`.
    pub fn from_common(common: &Common) -> Result<Arc<Target>, BenchError> {
        Ok(Arc::new(Target {
            addr: resolve(&common.host, common.port)?,
            version: common.mqtt_version.0,
            connect_timeout: Duration::from_millis(common.connect_timeout_ms),
            prefix: common.client_prefix.clone(),
            progress: Arc::new(Progress::default()),
            transport: TransportSpec::from_common(common)?,
            login: common.login(),
            sources: Sources::new(common.ifaddr.clone().map(|a| a.0).unwrap_or_default()),
        }))
    }

    /// The same target at `host`:`port` (another node of a cluster, for
    /// `--sub-host` or `--takeover-host`): the same protocol, transport,
    /// credentials and progress counters.
    pub fn elsewhere(&self, host: &str, port: u16) -> Result<Arc<Target>, BenchError> {
        Ok(Arc::new(Target {
            addr: resolve(host, port)?,
            version: self.version,
            connect_timeout: self.connect_timeout,
            prefix: self.prefix.clone(),
            progress: Arc::clone(&self.progress),
            transport: self.transport.clone(),
            login: self.login.clone(),
            sources: self.sources.fresh(),
        }))
    }

    /// Client id `PREFIX-ROLE-INDEX`.
    pub fn client_id(&self, role: &str, index: u64) -> String {
        format!("{}-{role}-{index}", self.prefix)
    }

    /// A clean CONNECT without will for client id `PREFIX-ROLE-INDEX`,
    /// with its credentials.
    pub fn connect_spec(&self, role: &str, index: u64, keep_alive: u16) -> ConnectSpec {
        self.spec_for(self.client_id(role, index), index, keep_alive)
    }

    /// A clean CONNECT without will for `client_id`, with the credentials
    /// of client `index`.
    pub fn spec_for(&self, client_id: String, index: u64, keep_alive: u16) -> ConnectSpec {
        ConnectSpec::new(client_id, keep_alive).with_login(&self.login, index)
    }

    /// TCP connect, then the TLS handshake and the WebSocket upgrade if
    /// the run has them, each stage within the connect timeout.
    pub async fn open(&self, sizes: ReadSize) -> Result<Opened, ConnError> {
        let tcp_start_ns = now_ns();
        let source = self.sources.pick();
        let mut conn = within(
            self.connect_timeout,
            "TCP connect",
            Conn::open_from(self.addr, source.map(|s| s.1), self.version, sizes),
        )
        .await?;
        if let Some((i, _)) = source {
            self.sources.opened[i].fetch_add(1, Ordering::Relaxed);
        }
        let tcp_up_ns = now_ns();
        if let Some(spec) = &self.transport {
            conn.wrap(spec)?;
            if spec.tls.is_some() {
                within(self.connect_timeout, "TLS handshake", conn.tls_handshake()).await?;
            }
            if spec.ws.is_some() {
                within(self.connect_timeout, "WebSocket upgrade", conn.ws_upgrade()).await?;
            }
        }
        Ok(Opened {
            conn,
            tcp_start_ns,
            tcp_up_ns,
        })
    }

    /// [`Target::open`], send CONNECT, wait for CONNACK, each stage within
    /// the connect timeout.
    pub async fn establish(
        &self,
        spec: &ConnectSpec,
        sizes: ReadSize,
    ) -> Result<Established, ConnError> {
        let Opened {
            mut conn,
            tcp_start_ns,
            tcp_up_ns,
        } = self.open(sizes).await?;
        let connect_sent_ns = now_ns();
        let connack = within(
            self.connect_timeout,
            "CONNACK",
            conn.handshake(&spec.packet(self.version)),
        )
        .await?;
        let connack_ns = now_ns();
        Ok(Established {
            conn,
            connack,
            tcp_start_ns,
            tcp_up_ns,
            connect_sent_ns,
            connack_ns,
        })
    }
}

/// The first address `host`:`port` resolves to.
fn resolve(host: &str, port: u16) -> Result<SocketAddr, BenchError> {
    let target = format!("{host}:{port}");
    (host, port)
        .to_socket_addrs()
        .map_err(|source| BenchError::Resolve {
            target: target.clone(),
            source,
        })?
        .next()
        .ok_or_else(|| BenchError::Resolve {
            target,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
        })
}

/// A connection ready for CONNECT (TCP up, TLS and WebSocket if any).
pub struct Opened {
    /// The connection.
    pub conn: Conn,
    /// When the TCP connect started.
    pub tcp_start_ns: u64,
    /// When TCP was up (the TLS handshake, if any, started).
    pub tcp_up_ns: u64,
}

/// A connection right after its CONNACK, with its timings.
pub struct Established {
    /// The connection.
    pub conn: Conn,
    /// The broker's answer.
    pub connack: ConnAck,
    /// When the TCP connect started.
    pub tcp_start_ns: u64,
    /// When TCP was up.
    pub tcp_up_ns: u64,
    /// When CONNECT was written (TCP, TLS and WebSocket were up): the
    /// layers' handshakes fall between `tcp_up_ns` and this.
    pub connect_sent_ns: u64,
    /// When CONNACK arrived.
    pub connack_ns: u64,
}

/// The latency of each stage of [`Target::establish`], over many
/// connections.
#[derive(Debug, Default)]
pub struct StageTimes {
    /// TCP connect.
    pub tcp: Histogram,
    /// TLS handshake and WebSocket upgrade: TCP up to CONNECT written.
    pub layers: Histogram,
    /// CONNECT written to CONNACK read.
    pub connack: Histogram,
    /// The whole way: TCP connect to CONNACK.
    pub total: Histogram,
}

impl StageTimes {
    /// Add one connection's stages.
    pub fn record(&mut self, e: &Established) {
        self.tcp.record(e.tcp_up_ns - e.tcp_start_ns);
        self.layers.record(e.connect_sent_ns - e.tcp_up_ns);
        self.connack.record(e.connack_ns - e.connect_sent_ns);
        self.total.record(e.connack_ns - e.tcp_start_ns);
    }

    /// Add another thread's stages.
    pub fn merge(&mut self, other: &StageTimes) {
        self.tcp.merge(&other.tcp);
        self.layers.merge(&other.layers);
        self.connack.merge(&other.connack);
        self.total.merge(&other.total);
    }
}

/// Failures counted by [`ConnError::label`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Failures(pub BTreeMap<String, u64>);

impl Failures {
    /// Count one failure.
    pub fn add(&mut self, e: &ConnError) {
        *self.0.entry(e.label()).or_insert(0) += 1;
    }

    /// Add another tally.
    pub fn merge(&mut self, other: &Failures) {
        for (k, v) in &other.0 {
            *self.0.entry(k.clone()).or_insert(0) += v;
        }
    }

    /// Total failures.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// One row per reason (`failures.<label>`), after a total row.
    pub fn report(&self, report: &mut Report, what: &str) {
        report.int(
            &format!("{what}_failed"),
            &format!("{what} failed"),
            self.total(),
        );
        for (label, n) in &self.0 {
            report.int(
                &format!("{what}_failed.{label}"),
                &format!("  {what} failed: {label}"),
                *n,
            );
        }
    }
}

/// When the `k`-th event (0-based) of a stream paced at `per_sec` is due,
/// in ns after the start.
pub fn due_offset_ns(k: u64, per_sec: f64) -> u64 {
    (k as f64 * 1e9 / per_sec) as u64
}

/// How many events of a stream paced at `per_sec` are due `elapsed_ns`
/// after its start (the first one is due at once).
pub fn due_count(elapsed_ns: u64, per_sec: f64) -> u64 {
    (elapsed_ns as f64 * per_sec / 1e9) as u64 + 1
}

/// Sleep until CLOCK_MONOTONIC reaches `at_ns` (no-op if past).
pub async fn sleep_until(at_ns: u64) {
    let now = now_ns();
    if at_ns > now {
        glommio::timer::sleep(Duration::from_nanos(at_ns - now)).await;
    }
}

/// Runs `concurrency` workers on this executor that share out `mine`: each
/// takes the next index in order and calls `each` with it, after sleeping
/// until that start is due when `rate` (the whole run's, over `threads`
/// executors) is not `Max`. Pacing counts from the call. Returns once every
/// index is done.
pub async fn paced_workers<F, Fut>(
    mine: Vec<u64>,
    concurrency: usize,
    rate: Rate,
    threads: usize,
    each: F,
) where
    F: Fn(u64) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let per_thread_rate = match rate {
        Rate::Max => None,
        Rate::PerSec(r) => Some(r / threads as f64),
    };
    let start_ns = now_ns();
    let mine = Rc::new(mine);
    let next = Rc::new(Cell::new(0usize));
    let each = Rc::new(each);
    let workers: Vec<_> = (0..concurrency.min(mine.len()))
        .map(|_| {
            let (mine, next, each) = (Rc::clone(&mine), Rc::clone(&next), Rc::clone(&each));
            glommio::spawn_local(async move {
                loop {
                    let k = next.get();
                    let Some(&index) = mine.get(k) else { break };
                    next.set(k + 1);
                    if let Some(rate) = per_thread_rate {
                        sleep_until(start_ns + due_offset_ns(k as u64, rate)).await;
                    }
                    each(index).await;
                }
            })
        })
        .collect();
    for w in workers {
        w.await;
    }
}

/// Events per second: `n` over `span_ns` (0 for an empty span).
pub fn per_sec(n: u64, span_ns: u64) -> f64 {
    if span_ns == 0 {
        return 0.0;
    }
    n as f64 / (span_ns as f64 / 1e9)
}

/// The nanoseconds from `first` to `last` (0 unless both are known and in
/// order).
pub fn span_ns(first: Option<u64>, last: Option<u64>) -> u64 {
    match (first, last) {
        (Some(a), Some(b)) if b > a => b - a,
        _ => 0,
    }
}

/// The earlier of two optional instants.
pub fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// What the `layers` latency times.
pub fn layers_label(common: &Common) -> &'static str {
    match (common.tls, common.ws) {
        (true, true) => "TLS handshake + WebSocket upgrade",
        (true, false) => "TLS handshake",
        _ => "WebSocket upgrade",
    }
}

/// The parameters every report starts with.
pub fn common_params(report: &mut Report, common: &Common) {
    report.param("host", Value::Text(common.host.clone()));
    report.param("port", Value::Int(u64::from(common.port)));
    report.param("mqtt_version", Value::Text(common.mqtt_version.to_string()));
    report.param("transport", Value::Text(common.scheme().to_string()));
    report.param("threads", Value::Int(common.threads as u64));
    if let Some(username) = &common.username {
        report.param("username", Value::Text(username.clone()));
    }
    if let Some(cpus) = &common.cpus {
        let list: Vec<String> = cpus.0.iter().map(usize::to_string).collect();
        report.param("cpus", Value::Text(list.join(",")));
    }
}

/// CPU samples of the tool and (with `--broker-pid`) the broker, taken at
/// the start of a measurement window.
#[derive(Clone, Copy, Debug)]
pub struct CpuWindow {
    own: CpuSample,
    broker: Option<(u32, Option<CpuSample>)>,
}

impl CpuWindow {
    /// Start a window now.
    pub fn start(broker_pid: Option<u32>) -> CpuWindow {
        CpuWindow {
            own: CpuSample::own(),
            broker: broker_pid.map(|pid| (pid, CpuSample::of(pid))),
        }
    }

    /// Close the window now and add its rows: the tool's CPU and the
    /// broker's, as % of one core.
    pub fn report(&self, report: &mut Report) {
        self.report_until(report, CpuSample::own(), self.broker_now());
    }

    /// The broker's CPU sample now, if a broker is watched.
    pub fn broker_now(&self) -> Option<CpuSample> {
        self.broker.and_then(|(pid, _)| CpuSample::of(pid))
    }

    /// CPU time the tool and (if watched and readable) the broker used
    /// from the window's start to these later samples.
    pub fn used_until(
        &self,
        own: &CpuSample,
        broker: Option<&CpuSample>,
    ) -> (Duration, Option<Duration>) {
        let broker = match (self.broker, broker) {
            (Some((_, Some(a))), Some(b)) => Some(b.cpu.saturating_sub(a.cpu)),
            _ => None,
        };
        (own.cpu.saturating_sub(self.own.cpu), broker)
    }

    /// Like [`CpuWindow::report`] with samples taken earlier.
    pub fn report_until(&self, report: &mut Report, own: CpuSample, broker: Option<CpuSample>) {
        report.float(
            "tool_cpu_pct",
            "tool CPU (% of one core)",
            self.own.percent_until(&own),
            1,
        );
        if let Some((pid, start)) = self.broker {
            match (start, broker) {
                (Some(a), Some(b)) => report.float(
                    "broker_cpu_pct",
                    "broker CPU (% of one core)",
                    a.percent_until(&b),
                    2,
                ),
                _ => report.text(
                    "broker_cpu_pct",
                    "broker CPU (% of one core)",
                    format!("n/a: cannot read /proc/{pid}/stat"),
                ),
            }
        }
    }
}

/// Closing rows: the machine.
pub fn machine_note(report: &mut Report) {
    report.param("machine", Value::Text(cpu_model()));
}

/// Make sure `sockets` descriptors fit the open-files limit.
pub fn check_fds(flag: &'static str, sockets: u64) -> Result<(), BenchError> {
    let limit = raise_nofile_limit();
    crate::cli::check_fd_budget(flag, sockets, limit)?;
    Ok(())
}

/// The indices `0..count` that thread `thread` of `threads` handles.
pub fn share_of(thread: usize, threads: usize, count: u64) -> impl Iterator<Item = u64> {
    (thread as u64..count).step_by(threads.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_maths() {
        assert_eq!(due_offset_ns(0, 1000.0), 0);
        assert_eq!(due_offset_ns(1, 1000.0), 1_000_000);
        assert_eq!(due_offset_ns(3, 2.0), 1_500_000_000);
        assert_eq!(due_count(0, 1000.0), 1);
        assert_eq!(due_count(999_999, 1000.0), 1);
        assert_eq!(due_count(1_000_000, 1000.0), 2);
        assert_eq!(due_count(1_000_000_000, 1e6), 1_000_001);
        assert_eq!(per_sec(5000, 2_000_000_000), 2500.0);
        assert_eq!(per_sec(1, 0), 0.0);
        assert_eq!(span_ns(Some(5), Some(12)), 7);
        assert_eq!(span_ns(Some(5), Some(5)), 0);
        assert_eq!(span_ns(None, Some(5)), 0);
        assert_eq!(min_opt(Some(3), Some(2)), Some(2));
        assert_eq!(min_opt(None, Some(2)), Some(2));
        assert_eq!(min_opt(Some(3), None), Some(3));
    }

    #[test]
    fn shares_cover_every_index_once() {
        let threads = 3;
        let mut all: Vec<u64> = (0..threads)
            .flat_map(|t| share_of(t, threads, 10))
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(share_of(2, 3, 10).collect::<Vec<_>>(), vec![2, 5, 8]);
    }

    #[test]
    fn failures_merge_and_report() {
        let mut a = Failures::default();
        a.add(&ConnError::Closed);
        a.add(&ConnError::Closed);
        let mut b = Failures::default();
        b.add(&ConnError::Timeout("CONNACK"));
        a.merge(&b);
        assert_eq!(a.total(), 3);
        let mut r = Report::new("t");
        a.report(&mut r, "connections");
        assert_eq!(r.get("connections_failed"), Some(&Value::Int(3)));
        assert_eq!(
            r.get("connections_failed.closed by broker"),
            Some(&Value::Int(2))
        );
        assert_eq!(
            r.get("connections_failed.timeout: CONNACK"),
            Some(&Value::Int(1))
        );
    }
}
