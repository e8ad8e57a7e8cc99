//! `takeover`: N client ids, each connected once and then taken over by a
//! second connection with the same id (MQTT 3.1.4: the server must close
//! the existing connection; v5 sends DISCONNECT 0x8E first).
//!
//! Measured per id: CONNECT -> CONNACK of the second connection (TCP
//! already up), whether the first one got DISCONNECT 0x8E (v5) and was
//! closed, how long after the second CONNECT it was closed, and whether it
//! was closed before the second CONNACK. The first connection is watched
//! until `--wait-ms` after the second one's CONNACK (or failure); one still
//! open then counts as "not disconnected" and the tool closes it. The
//! second connection may go to another node of a cluster
//! (`--takeover-host`/`--takeover-port`): a cluster without take-over
//! across nodes shows there as old connections not disconnected, each id
//! costing `--wait-ms`. With `--clean-start false` the
//! first connection subscribes at QoS 1 and leaves `--queued` messages
//! unacknowledged; the second one, resuming the session, should receive
//! them. If the broker grants only QoS 0 that is reported as
//! "n/a: broker granted QoS 0", not as a loss.
//!
//! Sessions left behind are removed: v5 by DISCONNECT with Session Expiry
//! Interval 0, v3.1.1 by a final clean-session connection (to each node
//! when the second connection went to another).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::future::{or, pending, zip};
use ringmq_codec::{Packet, Properties, PubAck, QoS, ReasonCode};

use crate::cli::TakeoverArgs;
use crate::conn::{within, Conn, ReadSize};
use crate::error::{BenchError, ConnError};
use crate::hist::Histogram;
use crate::payload::{Deliveries, Stamp};
use crate::procfs::now_ns;
use crate::report::{Report, Value};
use crate::runtime::{run_executors, Latch, Progress};
use crate::scenario::{
    check_fds, common_params, machine_note, share_of, sleep_until, CpuWindow, Failures, Target,
};
use crate::template::PublishTemplate;

/// Session Expiry Interval of the v5 sessions under test.
const SESSION_EXPIRY_SECS: u32 = 300;

/// What became of the queued-message check for one id.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Queued {
    NotTested,
    NotApplicable(String),
    Tested { sent: u64, reached_old: u64 },
}

#[derive(Debug, Default)]
struct ThreadResult {
    attempted: u64,
    ok: u64,
    first_failures: Failures,
    second_failures: Failures,
    connack: Histogram,
    old_close: Histogram,
    old_got_8e: u64,
    old_other_disconnect: Failures,
    old_closed: u64,
    old_closed_before_connack: u64,
    session_present: u64,
    queued_sent: u64,
    queued_reached_old: u64,
    queued_delivered: u64,
    queued_na: Option<String>,
}

/// Run the take-over scenario; one report.
pub fn run(args: &TakeoverArgs) -> Result<Report, BenchError> {
    args.validate()?;
    check_fds(
        "concurrency",
        3 * (args.concurrency * args.common.threads) as u64,
    )?;
    let target = Target::from_common(&args.common)?;
    let (second_host, second_port) = args.takeover_endpoint();
    let second = if args.across() {
        target.elsewhere(second_host, second_port)?
    } else {
        Arc::clone(&target)
    };
    target.progress.target.store(args.ids, Ordering::Relaxed);
    let cpu = CpuWindow::start(args.common.broker_pid);
    let (t, t2, a) = (Arc::clone(&target), Arc::clone(&second), args.clone());
    let results = run_executors(&args.common, "takeover", &target.progress, move |thread| {
        thread_main(thread, Arc::clone(&t), Arc::clone(&t2), a.clone())
    })?;
    let mut total = ThreadResult::default();
    for r in results {
        total.attempted += r.attempted;
        total.ok += r.ok;
        total.first_failures.merge(&r.first_failures);
        total.second_failures.merge(&r.second_failures);
        total.connack.merge(&r.connack);
        total.old_close.merge(&r.old_close);
        total.old_got_8e += r.old_got_8e;
        total.old_other_disconnect.merge(&r.old_other_disconnect);
        total.old_closed += r.old_closed;
        total.old_closed_before_connack += r.old_closed_before_connack;
        total.session_present += r.session_present;
        total.queued_sent += r.queued_sent;
        total.queued_reached_old += r.queued_reached_old;
        total.queued_delivered += r.queued_delivered;
        total.queued_na = total.queued_na.or(r.queued_na);
    }
    let v5 = args.common.mqtt_version.0.is_v5();
    let mut report = Report::new("takeover");
    common_params(&mut report, &args.common);
    report.param("ids", Value::Int(args.ids));
    report.param("clean_start", Value::Text(args.clean_start.to_string()));
    report.param("concurrency", Value::Int(args.concurrency as u64));
    if args.across() {
        report.param("takeover_host", Value::Text(second_host.to_string()));
        report.param("takeover_port", Value::Int(u64::from(second_port)));
    }
    machine_note(&mut report);
    report.int("takeovers_ok", "take-overs completed", total.ok);
    total.first_failures.report(&mut report, "first_connection");
    total
        .second_failures
        .report(&mut report, "second_connection");
    report.latency(
        "connack",
        "second CONNECT -> CONNACK",
        total.connack.summary(),
        false,
    );
    if v5 {
        report.int(
            "old_got_disconnect_0x8e",
            "old connection got DISCONNECT 0x8E",
            total.old_got_8e,
        );
        for (label, n) in &total.old_other_disconnect.0 {
            report.int(
                &format!("old_got_other.{label}"),
                &format!("  old connection got {label}"),
                *n,
            );
        }
    } else {
        report.text(
            "old_got_disconnect_0x8e",
            "old connection got DISCONNECT 0x8E",
            "n/a: MQTT 3.1.1 has no server DISCONNECT",
        );
    }
    report.int("old_closed", "old connection closed", total.old_closed);
    let not_closed = total.ok - total.old_closed.min(total.ok);
    report.int(
        "old_not_closed",
        "old connection not disconnected (--wait-ms after the new CONNACK)",
        not_closed,
    );
    if args.across() && not_closed > 0 {
        report.note(format!(
            "{not_closed} of {} old connections (on {}:{}) were still open {} ms after the \
             second CONNACK (from {second_host}:{second_port}): the second connection did not \
             take the first one over across nodes",
            total.ok, args.common.host, args.common.port, args.wait_ms
        ));
    }
    report.int(
        "old_closed_before_connack",
        "old closed before the new CONNACK",
        total.old_closed_before_connack,
    );
    report.latency(
        "old_close",
        "second CONNECT -> old closed",
        total.old_close.summary(),
        false,
    );
    if !args.clean_start {
        report.int(
            "session_present",
            "CONNACK session present",
            total.session_present,
        );
        match (&total.queued_na, total.queued_sent) {
            (Some(why), 0) => {
                report.text("queued_delivered", "queued QoS 1 delivered", why.clone())
            }
            (_, 0) => report.text(
                "queued_delivered",
                "queued QoS 1 delivered",
                "n/a: none queued",
            ),
            (_, sent) => {
                report.text(
                    "queued_delivered",
                    "queued QoS 1 delivered",
                    format!("{}/{sent}", total.queued_delivered),
                );
                report.int(
                    "queued_lost",
                    "queued QoS 1 lost",
                    sent - total.queued_delivered.min(sent),
                );
                report.text(
                    "queued_reached_old",
                    "queued QoS 1 that reached the old connection (unacked)",
                    format!("{}/{sent}", total.queued_reached_old),
                );
            }
        }
    }
    cpu.report(&mut report);
    Ok(report)
}

async fn thread_main(
    thread: usize,
    target: Arc<Target>,
    second: Arc<Target>,
    args: TakeoverArgs,
) -> ThreadResult {
    let ids: Rc<RefCell<Vec<u64>>> = Rc::new(RefCell::new(
        share_of(thread, args.common.threads, args.ids)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect(),
    ));
    let result = Rc::new(RefCell::new(ThreadResult::default()));
    let workers: Vec<_> = (0..args.concurrency)
        .map(|worker| {
            let (ids, result, target, second, args) = (
                Rc::clone(&ids),
                Rc::clone(&result),
                Arc::clone(&target),
                Arc::clone(&second),
                args.clone(),
            );
            glommio::spawn_local(async move {
                let mut publisher: Option<Conn> = None;
                loop {
                    let Some(index) = ids.borrow_mut().pop() else {
                        break;
                    };
                    one_takeover(
                        (&target, &second),
                        &args,
                        index,
                        &mut publisher,
                        &result,
                        thread,
                        worker,
                    )
                    .await;
                }
                if let Some(p) = publisher {
                    p.disconnect().await;
                }
            })
        })
        .collect();
    for w in workers {
        w.await;
    }
    let r = std::mem::take(&mut *result.borrow_mut());
    r
}

/// What the old connection saw after the take-over began.
#[derive(Debug, Default)]
struct OldFate {
    disconnect: Option<ReasonCode>,
    closed_ns: Option<u64>,
}

/// What woke the watch of the old connection.
enum Watch {
    Read(Result<usize, ConnError>),
    SecondDone,
    GiveUp,
}

/// Watch the old connection until the broker closes it, or `wait_ns`
/// after the second connection's outcome (`second_done` open, at
/// `second_done_ns`), or `until_ns` while that outcome is not known.
/// Gives the connection back when it is still open.
async fn watch_old(
    mut conn: Conn,
    until_ns: u64,
    wait_ns: u64,
    second_done: &Latch,
    second_done_ns: &Cell<u64>,
) -> (OldFate, Option<Conn>) {
    let mut fate = OldFate::default();
    loop {
        let known = second_done.is_open();
        let give_up_ns = if known {
            second_done_ns.get() + wait_ns
        } else {
            until_ns
        };
        let event = or(
            async { Watch::Read(conn.fill().await) },
            or(
                async {
                    sleep_until(give_up_ns).await;
                    Watch::GiveUp
                },
                async {
                    if known {
                        pending::<()>().await;
                    }
                    second_done.wait().await;
                    Watch::SecondDone
                },
            ),
        )
        .await;
        match event {
            Watch::GiveUp => return (fate, Some(conn)),
            Watch::SecondDone => {}
            Watch::Read(Err(_)) => {
                fate.closed_ns = Some(now_ns());
                return (fate, None);
            }
            Watch::Read(Ok(_)) => loop {
                match conn.next_buffered() {
                    Ok(Some(Packet::Disconnect(d))) => {
                        fate.disconnect.get_or_insert(d.code);
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => {
                        fate.closed_ns = Some(now_ns());
                        return (fate, None);
                    }
                }
            },
        }
    }
}

/// One id: the first connection to `target`, the take-over by a second
/// one to `second_target` (the same target unless --takeover-host/-port).
#[allow(clippy::too_many_arguments)]
async fn one_takeover(
    (target, second_target): (&Arc<Target>, &Arc<Target>),
    args: &TakeoverArgs,
    index: u64,
    publisher: &mut Option<Conn>,
    result: &Rc<RefCell<ThreadResult>>,
    thread: usize,
    worker: usize,
) {
    let v5 = target.version.is_v5();
    let persistent = !args.clean_start;
    let wait = Duration::from_millis(args.wait_ms);
    result.borrow_mut().attempted += 1;
    let id = target.client_id("to", index);
    let topic = format!("{}/to/{index}", target.prefix);

    // The first connection.
    let mut first = target.spec_for(id.clone(), index, 60);
    if persistent {
        if v5 {
            first.session_expiry = Some(SESSION_EXPIRY_SECS);
        } else {
            first.clean_start = false;
        }
    }
    let old = match target.establish(&first, ReadSize::SMALL).await {
        Ok(e) => e,
        Err(e) => {
            result.borrow_mut().first_failures.add(&e);
            Progress::add(&target.progress.errors, 1);
            return;
        }
    };
    Progress::add(&target.progress.up, 1);
    let mut old_conn = old.conn;
    let mut queued = Queued::NotTested;
    if persistent && args.queued > 0 {
        queued = leave_queued(
            &mut old_conn,
            &old.connack,
            target,
            args,
            &topic,
            publisher,
            thread,
            worker,
        )
        .await;
    }

    // The take-over: watch the old connection while the new one connects.
    let wait_ns = wait.as_nanos() as u64;
    let until = now_ns() + target.connect_timeout.as_nanos() as u64 + wait_ns;
    let second_done = Latch::new(1);
    let second_done_ns = Cell::new(0);
    let mut second = second_target.spec_for(id.clone(), index, 60);
    second.clean_start = args.clean_start;
    if persistent && v5 {
        second.session_expiry = Some(SESSION_EXPIRY_SECS);
    }
    let connect = async {
        let new = second_target.establish(&second, ReadSize::SMALL).await;
        second_done_ns.set(now_ns());
        second_done.open();
        new
    };
    let watch = watch_old(old_conn, until, wait_ns, &second_done, &second_done_ns);
    let (new, (fate, old_left)) = zip(connect, watch).await;
    Progress::sub(&target.progress.up, 1);
    let mut new = match new {
        Ok(e) => e,
        Err(e) => {
            result.borrow_mut().second_failures.add(&e);
            Progress::add(&target.progress.errors, 1);
            if let Some(old) = old_left {
                close_old(old, persistent && v5).await;
            }
            return;
        }
    };
    {
        let mut r = result.borrow_mut();
        r.ok += 1;
        r.connack.record(new.connack_ns - new.connect_sent_ns);
        match fate.disconnect {
            Some(ReasonCode::SESSION_TAKEN_OVER) => r.old_got_8e += 1,
            Some(code) => r.old_other_disconnect.add(&ConnError::Disconnected(code)),
            None => {}
        }
        if let Some(closed) = fate.closed_ns {
            r.old_closed += 1;
            r.old_close
                .record(closed.saturating_sub(new.connect_sent_ns));
            if closed <= new.connack_ns {
                r.old_closed_before_connack += 1;
            }
        }
        if new.connack.session_present {
            r.session_present += 1;
        }
    }
    Progress::add(&target.progress.sent, 1);

    match queued {
        Queued::NotTested => {}
        Queued::NotApplicable(why) => {
            result.borrow_mut().queued_na.get_or_insert(why);
        }
        Queued::Tested { sent, reached_old } => {
            let delivered = collect_queued(&mut new.conn, sent, wait).await;
            let mut r = result.borrow_mut();
            r.queued_sent += sent;
            r.queued_reached_old += reached_old;
            r.queued_delivered += delivered;
        }
    }

    // Leave no session behind: the new one's, then the old one's where it
    // was not taken over.
    if persistent && v5 {
        new.conn.disconnect_with(discard_session()).await;
    } else {
        new.conn.disconnect().await;
    }
    if let Some(old) = old_left {
        close_old(old, persistent && v5).await;
    }
    if persistent && !v5 {
        let nodes: &[&Arc<Target>] = if Arc::ptr_eq(target, second_target) {
            &[target]
        } else {
            &[target, second_target]
        };
        for node in nodes {
            if let Ok(e) = node
                .establish(&node.spec_for(id.clone(), index, 60), ReadSize::SMALL)
                .await
            {
                e.conn.disconnect().await;
            }
        }
    }
}

/// DISCONNECT properties that end the session with the connection (v5).
fn discard_session() -> Properties {
    Properties {
        session_expiry_interval: Some(0),
        ..Properties::default()
    }
}

/// Close an old connection the broker left open, discarding its session
/// when it has one (v5; 3.1.1 sessions go with the final clean connection).
async fn close_old(old: Conn, discard: bool) {
    if discard {
        old.disconnect_with(discard_session()).await;
    } else {
        old.disconnect().await;
    }
}

/// Subscribe the old connection at QoS 1 and get `--queued` messages sent
/// to it that it never acknowledges.
#[allow(clippy::too_many_arguments)]
async fn leave_queued(
    old: &mut Conn,
    connack: &ringmq_codec::ConnAck,
    target: &Arc<Target>,
    args: &TakeoverArgs,
    topic: &str,
    publisher: &mut Option<Conn>,
    thread: usize,
    worker: usize,
) -> Queued {
    if connack.properties.maximum_qos == Some(0) {
        return Queued::NotApplicable(
            "n/a: broker granted QoS 0 (Maximum QoS 0 in CONNACK)".into(),
        );
    }
    let wait = Duration::from_millis(args.wait_ms);
    let codes = match within(
        wait,
        "SUBACK",
        old.subscribe(1, &[(topic.to_string(), QoS::AtLeastOnce)]),
    )
    .await
    {
        Ok(codes) => codes,
        Err(e) => return Queued::NotApplicable(format!("n/a: SUBSCRIBE failed: {}", e.label())),
    };
    match codes.first().map(|c| c.0) {
        Some(1) | Some(2) => {}
        Some(0) => return Queued::NotApplicable("n/a: broker granted QoS 0".into()),
        other => {
            return Queued::NotApplicable(format!("n/a: SUBSCRIBE refused ({other:02X?})"));
        }
    }
    if publisher.is_none() {
        let spec = target.connect_spec(&format!("topub{thread}"), worker as u64, 60);
        match target.establish(&spec, ReadSize::SMALL).await {
            Ok(e) => *publisher = Some(e.conn),
            Err(e) => {
                return Queued::NotApplicable(format!("n/a: publisher failed: {}", e.label()))
            }
        }
    }
    let Some(p) = publisher.as_mut() else {
        return Queued::NotApplicable("n/a: no publisher".into());
    };
    let template = match PublishTemplate::new(target.version, topic, QoS::AtLeastOnce, 16) {
        Ok(t) => t,
        Err(e) => return Queued::NotApplicable(format!("n/a: {e}")),
    };
    let sent = u64::from(args.queued);
    for seq in 0..sent {
        let stamp = Stamp {
            publisher: 0,
            sequence: seq,
            sent_ns: now_ns(),
        };
        template.append(p.wbuf(), &stamp, seq as u16 + 1);
    }
    let publish_ok = within(wait, "PUBACK", async {
        p.flush().await?;
        let mut acked = 0;
        while acked < sent {
            if let Packet::PubAck(_) = p.recv().await? {
                acked += 1;
            }
        }
        Ok(())
    })
    .await;
    if let Err(e) = publish_ok {
        *publisher = None;
        return Queued::NotApplicable(format!("n/a: publishing failed: {}", e.label()));
    }
    // Let the old connection receive them (never acknowledged), so they
    // sit in the session as in-flight QoS 1 messages.
    let mut got = 0;
    let _ = within(wait, "queued PUBLISH", async {
        while got < sent {
            if let Packet::Publish(_) = old.recv().await? {
                got += 1;
            }
        }
        Ok(())
    })
    .await;
    Queued::Tested {
        sent,
        reached_old: got,
    }
}

/// Read the queued messages on the new connection (acknowledging each);
/// the number of distinct ones that arrived within `wait`.
async fn collect_queued(conn: &mut Conn, sent: u64, wait: Duration) -> u64 {
    let mut deliveries = Deliveries::new(1);
    let _ = within(wait, "queued redelivery", async {
        while deliveries.totals().distinct < sent {
            if let Packet::Publish(p) = conn.recv().await? {
                deliveries.record(&p.payload);
                if p.qos != QoS::AtMostOnce {
                    conn.send(&Packet::PubAck(PubAck {
                        packet_id: p.packet_id,
                        code: ReasonCode::SUCCESS,
                        properties: Properties::default(),
                    }))
                    .await?;
                }
            }
        }
        Ok(())
    })
    .await;
    deliveries.totals().distinct
}
