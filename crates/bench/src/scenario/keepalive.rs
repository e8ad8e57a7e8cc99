//! `keepalive`: the headline measurement. N clients with Keep Alive K and
//! a will go silent with their sockets open; a watcher subscribed to the
//! will topics sees the wills. For every client: time from its last packet
//! (the CONNECT, or its last PINGREQ with `--pings`) to the broker closing
//! it (read returns 0 or an error) and to its will reaching the watcher.
//!
//! The standard says the server closes after 1.5 x K of silence
//! (MQTT 3.1.1 / 5.0 section 3.1.2.10): earlier than that is "early",
//! later than 1.5 K + `--margin-ms` is "late".
//!
//! Half-open mode (`--half-open`, used by scripts/halfopen.sh): the
//! clients' link is cut after they connect (`--after-connect` runs the
//! cut), so no close can reach them; they hold their sockets without
//! reading or closing until the watcher is done, and only wills are
//! measured. With `--client-netns` the clients' sockets are created inside
//! that network namespace while the watcher stays outside.
//!
//! Will storm (`--sync-ping`, `--canaries`, used by scripts/storm.sh):
//! once every client has its CONNACK, all of them send one PINGREQ at the
//! same moment and wait for its PINGRESP, and only then does
//! `--after-connect` run: the broker saw every client's last packet
//! within a few milliseconds, so their deadlines (last packet + 1.5 K)
//! fall together and the broker must close them and publish their wills
//! all at once. Reported: the span from the first will to the last, each
//! will's lateness against its own deadline, and the round trips of the
//! canaries (`scenario::canary`, in the tool's own namespace) during the
//! storm (from the earliest deadline to the last will) and before the cut.
//!
//! Bounded: a client waits at most until 1.5 K + margin + `--extra-wait-secs`
//! after its last packet; the watcher until that long after the last
//! client connected (or pinged); the synchronised pings at most 60 s.

use std::cell::RefCell;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::future::or;
use ringmq_codec::{Packet, QoS, ReasonCode};

use crate::cli::KeepaliveArgs;
use crate::conn::{within, Conn, ReadSize};
use crate::error::{BenchError, ConnError};
use crate::hist::{exact_summary, Summary};
use crate::procfs::now_ns;
use crate::report::{Report, Value};
use crate::runtime::{run_executors, Latch, Progress};
use crate::scenario::canary::{self, Canary, CanaryArgs};
use crate::scenario::{
    check_fds, common_params, machine_note, share_of, sleep_until, CpuWindow, Failures, Target,
};

/// Handshakes in progress at once per thread.
const CONCURRENCY: usize = 64;

/// Longest wait for the synchronised pings (`--sync-ping`), seconds.
const SYNC_PING_LIMIT_SECS: u64 = 60;

/// How often the watcher pings (its own Keep Alive is twice this).
const WATCHER_PING_SECS: u64 = 30;

/// The fate of one silent client.
#[derive(Clone, Debug)]
struct ClientOutcome {
    index: u64,
    last_packet_ns: u64,
    closed_ns: Option<u64>,
    disconnect: Option<ReasonCode>,
    close_error: Option<String>,
}

#[derive(Debug, Default)]
struct ThreadResult {
    clients: Vec<ClientOutcome>,
    failures: Failures,
    wills: Vec<(u64, u64)>,
    duplicate_wills: u64,
    foreign_wills: u64,
    after_connect: Option<String>,
    cut_ns: Option<u64>,
    watcher_error: Option<String>,
}

struct Shared {
    watch_ready: Arc<Latch>,
    all_connected: Arc<Latch>,
    watcher_done: Arc<Latch>,
    /// `--sync-ping`: counted down once per client (pinged, or failed).
    pinged: Arc<Latch>,
    /// `close_at_once`: opened when every client closes its socket.
    cut: Arc<Latch>,
    /// When `cut` opened, ns.
    cut_ns: AtomicU64,
    connected_ok: AtomicU64,
    last_connected_ns: AtomicU64,
    setup_error: Mutex<Option<String>>,
}

/// Run the keepalive scenario; one report.
pub fn run(args: &KeepaliveArgs) -> Result<Report, BenchError> {
    args.validate()?;
    check_fds("clients", args.clients + 1 + args.canaries as u64)?;
    let target = Target::from_common(&args.common)?;
    target
        .progress
        .target
        .store(args.clients, Ordering::Relaxed);
    let shared = Arc::new(Shared {
        watch_ready: Latch::new(1),
        all_connected: Latch::new(args.common.threads),
        watcher_done: Latch::new(1),
        pinged: Latch::new(if args.sync_ping {
            args.clients as usize
        } else {
            0
        }),
        cut: Latch::new(1),
        cut_ns: AtomicU64::new(0),
        connected_ok: AtomicU64::new(0),
        last_connected_ns: AtomicU64::new(0),
        setup_error: Mutex::new(None),
    });
    // The canaries stay in the tool's namespace, on a thread of their own.
    let canary = match args.canaries {
        0 => None,
        n => {
            let c = Canary::start(
                &args.common,
                &target,
                &CanaryArgs::new(n, args.canary_interval_ms),
                args.common.cpu_of_thread(args.common.threads),
            )?;
            c.wait_ready(Duration::from_secs(10))?;
            Some(c)
        }
    };
    let cpu = CpuWindow::start(args.common.broker_pid);
    let (t, a, s) = (Arc::clone(&target), args.clone(), Arc::clone(&shared));
    let results = run_executors(&args.common, "keepalive", &target.progress, move |thread| {
        thread_main(thread, Arc::clone(&t), a.clone(), Arc::clone(&s))
    })?;
    let canary_record = canary.map(Canary::finish).transpose()?;
    if let Some(e) = shared
        .setup_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        return Err(BenchError::Setup(e));
    }

    let mut clients = Vec::new();
    let mut failures = Failures::default();
    let mut wills = Vec::new();
    let (mut duplicate_wills, mut foreign_wills) = (0, 0);
    let mut after_connect = None;
    let mut cut_ns = None;
    let mut watcher_error = None;
    for r in results {
        cut_ns = cut_ns.or(r.cut_ns);
        watcher_error = watcher_error.or(r.watcher_error);
        clients.extend(r.clients);
        failures.merge(&r.failures);
        wills.extend(r.wills);
        duplicate_wills += r.duplicate_wills;
        foreign_wills += r.foreign_wills;
        after_connect = after_connect.or(r.after_connect);
    }
    clients.sort_by_key(|c| c.index);
    let analysis = analyse(&clients, &wills, args.window_ns());

    let mut report = Report::new("keepalive");
    common_params(&mut report, &args.common);
    report.param("clients", Value::Int(args.clients));
    report.param("keepalive_s", Value::Int(u64::from(args.keepalive)));
    report.param("margin_ms", Value::Int(args.margin_ms));
    report.param("pings", Value::Int(u64::from(args.pings)));
    report.param("half_open", Value::Text(args.half_open.to_string()));
    if args.sync_ping {
        report.param("sync_ping", Value::Text("true".into()));
    }
    machine_note(&mut report);
    let (early, _) = args.window_ns();
    report.float(
        "expected_close_s",
        "expected close: 1.5 x Keep Alive (s)",
        early as f64 / 1e9,
        3,
    );
    report.int(
        "clients_connected",
        "clients connected",
        clients.len() as u64,
    );
    failures.report(&mut report, "connections");
    if let Some(cmd) = after_connect {
        report.text("after_connect", "--after-connect", cmd);
    }
    if args.half_open {
        report.text(
            "close_us",
            "broker close seen by client",
            "n/a: half-open (link cut, no FIN can arrive)",
        );
    } else {
        window_rows(&mut report, "close", "close", &analysis.close);
        report.int(
            "closed_never",
            "never closed (within the wait)",
            analysis.close.missing,
        );
        if args.common.mqtt_version.0.is_v5() {
            report.int(
                "disconnect_0x8d",
                "DISCONNECT 0x8D (Keep Alive timeout) received",
                analysis.disconnect_8d,
            );
            report.int(
                "disconnect_other",
                "DISCONNECT with another reason",
                analysis.disconnect_other,
            );
        }
    }
    window_rows(&mut report, "will", "will", &analysis.will);
    report.int(
        "will_never",
        "will never arrived (within the wait)",
        analysis.will.missing,
    );
    report.int("will_duplicates", "duplicate wills", duplicate_wills);
    if foreign_wills > 0 {
        report.int(
            "will_foreign",
            "messages on will topics from no client of ours",
            foreign_wills,
        );
    }
    if let Some(d) = analysis.will_minus_close {
        report.float(
            "will_minus_close_min_ms",
            "will minus close, min (ms)",
            d.0 as f64 / 1e6,
            3,
        );
        report.float(
            "will_minus_close_max_ms",
            "will minus close, max (ms)",
            d.1 as f64 / 1e6,
            3,
        );
    }
    let (expected_ns, _) = args.window_ns();
    let storm = storm(&clients, &wills, expected_ns);
    storm_rows(&mut report, &storm);
    report.plot_samples(
        "will_lateness",
        if args.close_at_once {
            "will arrival after the close"
        } else {
            "will arrival after its deadline"
        },
        "ms",
        storm.lateness_ms.clone(),
    );
    if let Some(record) = &canary_record {
        let window = storm.window();
        let calm_end = cut_ns.or(window.map(|w| w.0)).unwrap_or_else(now_ns);
        let calm = canary::window_stats(&record.rounds, record.ready_ns, calm_end);
        canary::report_stats(&mut report, "canary_calm", "canary before the cut", &calm);
        match window {
            Some((start, end)) => {
                let during = canary::window_stats(&record.rounds, start, end);
                canary::report_stats(
                    &mut report,
                    "canary_storm",
                    "canary during the storm",
                    &during,
                );
            }
            None => report.text(
                "canary_storm_rounds",
                "canary during the storm",
                "n/a: no client connected",
            ),
        }
        report.int(
            "canary_disconnects",
            "canary connections lost or refused (they retry)",
            record.disconnects.total(),
        );
        report.note(record.priority_note());
    }
    cpu.report(&mut report);
    if let Some(e) = watcher_error {
        report.note(format!("the will watcher's connection ended early: {e}"));
    }
    Ok(report)
}

/// Close or will delays of every client, split by the standard's window.
#[derive(Debug, Default, PartialEq)]
pub struct Window {
    /// Delays in ns from the last packet, one per observed event.
    pub summary: Option<Summary>,
    /// Before 1.5 x Keep Alive.
    pub early: u64,
    /// Within [1.5 K, 1.5 K + margin].
    pub on_time: u64,
    /// After 1.5 K + margin.
    pub late: u64,
    /// Never observed.
    pub missing: u64,
}

/// What [`analyse`] makes of the raw outcomes.
#[derive(Debug, Default, PartialEq)]
pub struct Analysis {
    /// Broker closes.
    pub close: Window,
    /// Wills.
    pub will: Window,
    /// DISCONNECT 0x8D received before the close.
    pub disconnect_8d: u64,
    /// DISCONNECT with any other reason.
    pub disconnect_other: u64,
    /// (min, max) of will arrival minus close, ns (signed).
    pub will_minus_close: Option<(i64, i64)>,
}

/// Classify delays against `(early_ns, late_ns)`: below the first is
/// early, above the second late.
pub fn classify(delays: &[Option<u64>], (early_ns, late_ns): (u64, u64)) -> Window {
    let mut w = Window::default();
    let mut seen = Vec::with_capacity(delays.len());
    for d in delays {
        match d {
            None => w.missing += 1,
            Some(d) if *d < early_ns => {
                w.early += 1;
                seen.push(*d);
            }
            Some(d) if *d > late_ns => {
                w.late += 1;
                seen.push(*d);
            }
            Some(d) => {
                w.on_time += 1;
                seen.push(*d);
            }
        }
    }
    w.summary = exact_summary(&mut seen);
    w
}

fn analyse(clients: &[ClientOutcome], wills: &[(u64, u64)], window: (u64, u64)) -> Analysis {
    let will_at: std::collections::HashMap<u64, u64> = wills.iter().copied().collect();
    let close: Vec<Option<u64>> = clients
        .iter()
        .map(|c| c.closed_ns.map(|t| t.saturating_sub(c.last_packet_ns)))
        .collect();
    let will: Vec<Option<u64>> = clients
        .iter()
        .map(|c| {
            will_at
                .get(&c.index)
                .map(|t| t.saturating_sub(c.last_packet_ns))
        })
        .collect();
    let diffs: Vec<i64> = clients
        .iter()
        .filter_map(|c| {
            let w = *will_at.get(&c.index)?;
            Some(w as i64 - c.closed_ns? as i64)
        })
        .collect();
    Analysis {
        close: classify(&close, window),
        will: classify(&will, window),
        disconnect_8d: clients
            .iter()
            .filter(|c| c.disconnect == Some(ReasonCode::KEEP_ALIVE_TIMEOUT))
            .count() as u64,
        disconnect_other: clients
            .iter()
            .filter(|c| {
                c.disconnect
                    .is_some_and(|d| d != ReasonCode::KEEP_ALIVE_TIMEOUT)
            })
            .count() as u64,
        will_minus_close: diffs.iter().min().copied().zip(diffs.iter().max().copied()),
    }
}

/// The will storm: when the clients' deadlines fell and their wills came.
#[derive(Debug, Default, PartialEq)]
pub struct Storm {
    /// Earliest and latest deadline (last packet + 1.5 K), ns.
    pub deadlines: Option<(u64, u64)>,
    /// First and last will arrival, ns.
    pub wills: Option<(u64, u64)>,
    /// Each will's arrival after its own client's deadline, ns (an early
    /// will counts 0; `classify` counts those).
    pub lateness: Option<Summary>,
    /// The same lateness of every will, ms, in arrival order.
    pub lateness_ms: Vec<f64>,
}

impl Storm {
    /// From the earliest deadline to the last will (or the latest
    /// deadline, if later): when the broker had the storm to process.
    pub fn window(&self) -> Option<(u64, u64)> {
        let (first, last) = self.deadlines?;
        let end = self.wills.map_or(last, |(_, w)| w.max(last));
        Some((first, end))
    }
}

/// The storm figures of `clients` and the `(index, arrival)` of their
/// wills; a client's deadline is its last packet + `expected_ns`.
fn storm(clients: &[ClientOutcome], wills: &[(u64, u64)], expected_ns: u64) -> Storm {
    let deadline: std::collections::HashMap<u64, u64> = clients
        .iter()
        .map(|c| (c.index, c.last_packet_ns + expected_ns))
        .collect();
    let mut late: Vec<u64> = wills
        .iter()
        .filter_map(|(i, at)| Some(at.saturating_sub(*deadline.get(i)?)))
        .collect();
    let lateness_ms = late.iter().map(|&ns| ns as f64 / 1e6).collect();
    let span = |v: &mut dyn Iterator<Item = u64>| {
        v.fold(None, |acc: Option<(u64, u64)>, x| {
            Some(acc.map_or((x, x), |(a, b)| (a.min(x), b.max(x))))
        })
    };
    Storm {
        deadlines: span(&mut deadline.values().copied()),
        wills: span(&mut wills.iter().map(|w| w.1)),
        lateness: exact_summary(&mut late),
        lateness_ms,
    }
}

fn storm_rows(report: &mut Report, storm: &Storm) {
    let ms = |ns: u64| ns as f64 / 1e6;
    if let Some((first, last)) = storm.deadlines {
        report.float(
            "deadline_spread_ms",
            "deadlines: earliest to latest (ms)",
            ms(last - first),
            1,
        );
    }
    if let Some((first, last)) = storm.wills {
        report.float(
            "will_first_to_last_ms",
            "wills: first to last (ms)",
            ms(last - first),
            1,
        );
    }
    if let Some((start, end)) = storm.window() {
        report.float(
            "storm_ms",
            "storm: earliest deadline to last will (ms)",
            ms(end - start),
            1,
        );
    }
    if let Some(s) = storm.lateness {
        for (name, v) in [("p50", s.p50), ("p99", s.p99), ("max", s.max)] {
            report.float(
                &format!("will_lateness_{name}_ms"),
                &format!("will after its deadline, {name} (ms)"),
                ms(v),
                1,
            );
        }
    }
}

fn window_rows(report: &mut Report, key: &str, what: &str, w: &Window) {
    match w.summary {
        Some(s) => {
            let ms = |ns: u64| ns as f64 / 1e6;
            for (name, v) in [
                ("min", s.min),
                ("p50", s.p50),
                ("p99", s.p99),
                ("max", s.max),
            ] {
                report.float(
                    &format!("{key}_{name}_ms"),
                    &format!("{what} after last packet, {name} (ms)"),
                    ms(v),
                    1,
                );
            }
        }
        None => report.text(
            &format!("{key}_ms"),
            &format!("{what} after last packet"),
            "n/a: none seen",
        ),
    }
    report.int(
        &format!("{key}_early"),
        &format!("{what}: early (< 1.5 K)"),
        w.early,
    );
    report.int(
        &format!("{key}_on_time"),
        &format!("{what}: on time"),
        w.on_time,
    );
    report.int(
        &format!("{key}_late"),
        &format!("{what}: late (> 1.5 K + margin)"),
        w.late,
    );
}

/// Move this thread into network namespace `name` (needs CAP_SYS_ADMIN).
fn enter_netns(name: &str) -> Result<(), String> {
    let path = format!("/var/run/netns/{name}");
    let file = std::fs::File::open(&path).map_err(|e| format!("cannot open {path}: {e}"))?;
    // SAFETY: setns takes a descriptor we own for the duration of the call.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(format!(
            "setns({path}): {} (root needed)",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

async fn thread_main(
    thread: usize,
    target: Arc<Target>,
    args: KeepaliveArgs,
    shared: Arc<Shared>,
) -> ThreadResult {
    let result = Rc::new(RefCell::new(ThreadResult::default()));
    let watcher = (thread == 0).then(|| {
        glommio::spawn_local(watch(
            Arc::clone(&target),
            args.clone(),
            Arc::clone(&shared),
            Rc::clone(&result),
        ))
    });
    shared.watch_ready.wait().await;
    let failed = |e: String| {
        let mut slot = shared.setup_error.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(e);
    };
    let ready = shared
        .setup_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .is_none();
    let mut client_tasks = Vec::new();
    let mut tried = false;
    if ready {
        let netns_ok = match &args.client_netns {
            Some(ns) => enter_netns(ns).map_err(failed).is_ok(),
            None => true,
        };
        if netns_ok {
            tried = true;
            client_tasks = connect_clients(thread, &target, &args, &shared, &result).await;
        }
    }
    if !tried {
        // These clients will never ping: nobody must wait for them.
        for _ in share_of(thread, args.common.threads, args.clients) {
            shared.pinged.count_down();
        }
    }
    shared.all_connected.count_down();
    if thread == 0 {
        shared.all_connected.wait().await;
        or(shared.pinged.wait(), async {
            glommio::timer::sleep(Duration::from_secs(SYNC_PING_LIMIT_SECS)).await;
        })
        .await;
        let cut_at = now_ns();
        result.borrow_mut().cut_ns = Some(cut_at);
        shared.cut_ns.store(cut_at, Ordering::Relaxed);
        shared.cut.open();
        if let Some(cmd) = &args.after_connect {
            let outcome = run_command(cmd.clone()).await;
            result.borrow_mut().after_connect = Some(outcome);
        }
    }
    for task in client_tasks {
        task.await;
    }
    if let Some(w) = watcher {
        w.await;
    }
    let r = std::mem::take(&mut *result.borrow_mut());
    r
}

/// Run a shell command off the executor; "exit N in X ms".
async fn run_command(cmd: String) -> String {
    let start = now_ns();
    let shown = cmd.clone();
    let status = glommio::executor()
        .spawn_blocking(move || {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(&cmd)
                .status()
        })
        .await;
    let ms = (now_ns() - start) as f64 / 1e6;
    match status {
        Ok(s) => format!("{shown} (exit {}, {ms:.0} ms)", s.code().unwrap_or(-1)),
        Err(e) => format!("{shown} (failed: {e})"),
    }
}

async fn connect_clients(
    thread: usize,
    target: &Arc<Target>,
    args: &KeepaliveArgs,
    shared: &Arc<Shared>,
    result: &Rc<RefCell<ThreadResult>>,
) -> Vec<glommio::Task<()>> {
    let mine: Rc<RefCell<Vec<u64>>> = Rc::new(RefCell::new(
        share_of(thread, args.common.threads, args.clients)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect(),
    ));
    let tasks = Rc::new(RefCell::new(Vec::new()));
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (mine, tasks, target, args, shared, result) = (
                Rc::clone(&mine),
                Rc::clone(&tasks),
                Arc::clone(target),
                args.clone(),
                Arc::clone(shared),
                Rc::clone(result),
            );
            glommio::spawn_local(async move {
                loop {
                    let Some(index) = mine.borrow_mut().pop() else {
                        break;
                    };
                    let mut spec = target.connect_spec("ka", index, args.keepalive);
                    spec.will = Some((
                        format!("{}/{index}", args.will_prefix),
                        index.to_string().into_bytes(),
                    ));
                    match target.establish(&spec, ReadSize::SMALL).await {
                        Ok(e) => {
                            Progress::add(&target.progress.up, 1);
                            shared.connected_ok.fetch_add(1, Ordering::Relaxed);
                            shared
                                .last_connected_ns
                                .fetch_max(e.connack_ns, Ordering::Relaxed);
                            let task = glommio::spawn_local(silent(
                                e.conn,
                                index,
                                e.connect_sent_ns,
                                args.clone(),
                                Arc::clone(&shared),
                                Rc::clone(&result),
                                Arc::clone(&target),
                            ));
                            tasks.borrow_mut().push(task);
                        }
                        Err(e) => {
                            result.borrow_mut().failures.add(&e);
                            Progress::add(&target.progress.errors, 1);
                            shared.pinged.count_down();
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await;
    }
    let t = std::mem::take(&mut *tasks.borrow_mut());
    t
}

enum Event {
    GiveUp,
    Ping,
    Read(Result<usize, ConnError>),
}

/// One client: optional pings, then silence until the broker closes it.
async fn silent(
    mut conn: Conn,
    index: u64,
    connect_sent_ns: u64,
    args: KeepaliveArgs,
    shared: Arc<Shared>,
    result: Rc<RefCell<ThreadResult>>,
    target: Arc<Target>,
) {
    let k_ns = u64::from(args.keepalive) * 1_000_000_000;
    let (_, late_ns) = args.window_ns();
    let extra_ns = (args.extra_wait_secs * 1e9) as u64;
    let mut outcome = ClientOutcome {
        index,
        last_packet_ns: connect_sent_ns,
        closed_ns: None,
        disconnect: None,
        close_error: None,
    };
    if args.sync_ping {
        shared.all_connected.wait().await;
        let sent_at = now_ns();
        let pong = within(target.connect_timeout, "PINGRESP", async {
            conn.send(&Packet::PingReq).await?;
            loop {
                if let Packet::PingResp = conn.recv().await? {
                    return Ok(());
                }
            }
        })
        .await;
        shared
            .last_connected_ns
            .fetch_max(sent_at, Ordering::Relaxed);
        shared.pinged.count_down();
        match pong {
            Ok(()) => outcome.last_packet_ns = sent_at,
            Err(e) => {
                outcome.closed_ns = Some(now_ns());
                outcome.close_error = Some(e.label());
                Progress::sub(&target.progress.up, 1);
                result.borrow_mut().clients.push(outcome);
                return;
            }
        }
    }
    if args.close_at_once {
        // Abrupt close: no DISCONNECT, the socket just goes (FIN), all
        // clients at the same moment; the will is due right then.
        shared.cut.wait().await;
        outcome.last_packet_ns = shared.cut_ns.load(Ordering::Relaxed);
        drop(conn);
        outcome.closed_ns = Some(now_ns());
        Progress::sub(&target.progress.up, 1);
        result.borrow_mut().clients.push(outcome);
        return;
    }
    let mut pings_left = args.pings;
    loop {
        let give_up_at = outcome.last_packet_ns + late_ns + extra_ns;
        let next_ping = outcome.last_packet_ns + k_ns;
        let event = if args.half_open {
            // Never read, never close: hold the socket until the watcher
            // is done (or the wait runs out).
            or(
                async {
                    shared.watcher_done.wait().await;
                    Event::GiveUp
                },
                async {
                    sleep_until(give_up_at).await;
                    Event::GiveUp
                },
            )
            .await
        } else {
            or(
                async {
                    sleep_until(give_up_at).await;
                    Event::GiveUp
                },
                or(
                    async {
                        if pings_left == 0 {
                            std::future::pending::<()>().await;
                        }
                        sleep_until(next_ping).await;
                        Event::Ping
                    },
                    async { Event::Read(conn.fill().await) },
                ),
            )
            .await
        };
        match event {
            Event::GiveUp => break,
            Event::Ping => {
                pings_left -= 1;
                let sent_at = now_ns();
                if let Err(e) = conn.send(&Packet::PingReq).await {
                    outcome.closed_ns = Some(now_ns());
                    outcome.close_error = Some(e.label());
                    break;
                }
                outcome.last_packet_ns = sent_at;
            }
            Event::Read(Ok(_)) => {
                let mut bad = None;
                loop {
                    match conn.next_buffered() {
                        Ok(Some(Packet::Disconnect(d))) => {
                            outcome.disconnect.get_or_insert(d.code);
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(e) => {
                            bad = Some(e);
                            break;
                        }
                    }
                }
                if let Some(e) = bad {
                    outcome.closed_ns = Some(now_ns());
                    outcome.close_error = Some(e.label());
                    break;
                }
            }
            Event::Read(Err(e)) => {
                outcome.closed_ns = Some(now_ns());
                if e != ConnError::Closed {
                    outcome.close_error = Some(e.label());
                }
                break;
            }
        }
    }
    Progress::sub(&target.progress.up, 1);
    // Dropping the socket now sends nothing in half-open mode: the link is
    // cut, so neither FIN nor RST can reach the broker.
    drop(conn);
    result.borrow_mut().clients.push(outcome);
}

enum WatchEvent {
    Done,
    Ping,
    Read(Result<usize, ConnError>),
}

/// The will watcher (thread 0): subscribe to PREFIX/+, record wills.
async fn watch(
    target: Arc<Target>,
    args: KeepaliveArgs,
    shared: Arc<Shared>,
    result: Rc<RefCell<ThreadResult>>,
) {
    let mut spec = target.connect_spec("kawatch", 0, (WATCHER_PING_SECS * 2) as u16);
    spec.clean_start = true;
    let filter = format!("{}/+", args.will_prefix);
    let setup = async {
        let mut e = target.establish(&spec, ReadSize::LARGE).await?;
        let codes = e
            .conn
            .subscribe(1, &[(filter.clone(), QoS::AtMostOnce)])
            .await?;
        Ok::<_, ConnError>((e.conn, codes))
    }
    .await;
    let mut conn = match setup {
        Ok((conn, codes)) if codes.iter().all(|c| c.0 < 0x80) => conn,
        Ok((_, codes)) => {
            let code = codes.first().map_or(0, |c| c.0);
            fail(
                &shared,
                format!("will watcher: SUBSCRIBE {filter} refused (0x{code:02X})"),
            );
            return;
        }
        Err(e) => {
            fail(&shared, format!("will watcher could not subscribe: {e}"));
            return;
        }
    };
    shared.watch_ready.open();

    let (_, late_ns) = args.window_ns();
    let extra_ns = (args.extra_wait_secs * 1e9) as u64;
    let pings_ns = u64::from(args.pings) * u64::from(args.keepalive) * 1_000_000_000;
    let prefix = format!("{}/", args.will_prefix);
    let mut seen = std::collections::HashSet::new();
    let mut next_ping = now_ns() + WATCHER_PING_SECS * 1_000_000_000;
    loop {
        let all_in = shared.all_connected.is_open()
            && seen.len() as u64 >= shared.connected_ok.load(Ordering::Relaxed);
        if all_in {
            break;
        }
        let event = or(
            async {
                shared.all_connected.wait().await;
                shared.pinged.wait().await;
                let last = shared.last_connected_ns.load(Ordering::Relaxed);
                sleep_until(last + pings_ns + late_ns + extra_ns).await;
                WatchEvent::Done
            },
            or(
                async {
                    sleep_until(next_ping).await;
                    WatchEvent::Ping
                },
                async { WatchEvent::Read(conn.fill().await) },
            ),
        )
        .await;
        match event {
            WatchEvent::Done => break,
            WatchEvent::Ping => {
                next_ping += WATCHER_PING_SECS * 1_000_000_000;
                if conn.send(&Packet::PingReq).await.is_err() {
                    break;
                }
            }
            WatchEvent::Read(Err(e)) => {
                result.borrow_mut().watcher_error = Some(e.label());
                break;
            }
            WatchEvent::Read(Ok(_)) => {
                let at = now_ns();
                while let Ok(Some(packet)) = conn.next_buffered() {
                    let Packet::Publish(p) = packet else { continue };
                    let index = std::str::from_utf8(&p.topic)
                        .ok()
                        .and_then(|t| t.strip_prefix(&prefix))
                        .and_then(|i| i.parse::<u64>().ok())
                        .filter(|&i| i < args.clients);
                    let mut r = result.borrow_mut();
                    match index {
                        Some(i) if seen.insert(i) => r.wills.push((i, at)),
                        Some(_) => r.duplicate_wills += 1,
                        None => r.foreign_wills += 1,
                    }
                }
            }
        }
    }
    shared.watcher_done.open();
    conn.disconnect().await;
}

fn fail(shared: &Shared, why: String) {
    shared
        .setup_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert(why);
    shared.watch_ready.open();
    shared.watcher_done.open();
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: (u64, u64) = (3_000_000_000, 3_100_000_000);

    #[test]
    fn classify_against_the_window() {
        let delays = [
            Some(2_999_999_999),
            Some(3_000_000_000),
            Some(3_100_000_000),
            Some(3_100_000_001),
            None,
        ];
        let w = classify(&delays, WINDOW);
        assert_eq!((w.early, w.on_time, w.late, w.missing), (1, 2, 1, 1));
        let s = w.summary.expect("four seen");
        assert_eq!((s.count, s.min, s.max), (4, 2_999_999_999, 3_100_000_001));
    }

    #[test]
    fn storm_spans_and_lateness() {
        let c = |index, last| ClientOutcome {
            index,
            last_packet_ns: last,
            closed_ns: None,
            disconnect: None,
            close_error: None,
        };
        let clients = vec![c(0, 1_000), c(1, 2_000), c(2, 1_500)];
        // Deadlines 3 s after the last packets; will 1 comes early, will 2 never.
        let wills = vec![(0, 3_000_101_000), (1, 3_000_001_000)];
        let s = storm(&clients, &wills, 3_000_000_000);
        assert_eq!(s.deadlines, Some((3_000_001_000, 3_000_002_000)));
        assert_eq!(s.wills, Some((3_000_001_000, 3_000_101_000)));
        let late = s.lateness.expect("two wills");
        assert_eq!((late.count, late.min, late.max), (2, 0, 100_000));
        assert_eq!(s.window(), Some((3_000_001_000, 3_000_101_000)));
        let quiet = storm(&clients, &[], 3_000_000_000);
        assert_eq!(quiet.window(), Some((3_000_001_000, 3_000_002_000)));
        assert_eq!(storm(&[], &[], 1), Storm::default());
    }

    #[test]
    fn storm_rows_have_the_keys_storm_sh_reads() {
        let s = Storm {
            deadlines: Some((1_000_000, 3_000_000)),
            wills: Some((2_000_000, 6_000_000)),
            lateness: exact_summary(&mut [0, 3_000_000]),
            ..Storm::default()
        };
        let mut r = Report::new("keepalive");
        storm_rows(&mut r, &s);
        for (key, ms) in [
            ("deadline_spread_ms", 2.0),
            ("will_first_to_last_ms", 4.0),
            ("storm_ms", 5.0),
            ("will_lateness_p50_ms", 0.0),
            ("will_lateness_max_ms", 3.0),
        ] {
            assert_eq!(r.get(key), Some(&Value::Float(ms, 1)), "{key}");
        }
        assert!(r.get("will_lateness_p99_ms").is_some());
        let mut empty = Report::new("keepalive");
        storm_rows(&mut empty, &Storm::default());
        assert!(empty.rows.is_empty());
    }

    #[test]
    fn analyse_pairs_wills_with_clients() {
        let client = |index, last, closed: Option<u64>, disconnect| ClientOutcome {
            index,
            last_packet_ns: last,
            closed_ns: closed,
            disconnect,
            close_error: None,
        };
        let clients = vec![
            client(
                0,
                1_000,
                Some(3_000_001_000),
                Some(ReasonCode::KEEP_ALIVE_TIMEOUT),
            ),
            client(1, 2_000, None, None),
            client(2, 0, Some(5_000_000_000), Some(ReasonCode(0x8E))),
        ];
        // Will 0 arrives 5 us after its close; will 2 never; will 1 late.
        let wills = vec![(0, 3_000_006_000), (1, 9_000_000_000)];
        let a = analyse(&clients, &wills, WINDOW);
        assert_eq!((a.close.on_time, a.close.late, a.close.missing), (1, 1, 1));
        assert_eq!((a.will.on_time, a.will.late, a.will.missing), (1, 1, 1));
        assert_eq!((a.disconnect_8d, a.disconnect_other), (1, 1));
        assert_eq!(a.will_minus_close, Some((5_000, 5_000)));
    }
}
