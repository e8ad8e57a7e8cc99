//! `sink` (hidden): the smallest MQTT "broker" that lets the tool measure
//! itself. It answers CONNECT with CONNACK, SUBSCRIBE with SUBACK (granting
//! up to QoS 1), PINGREQ with PINGRESP and a QoS 1 PUBLISH with PUBACK;
//! every other packet is counted and dropped. QoS 0 PUBLISH packets are
//! only framed (`frame_len`), never decoded, so the sink costs as little as
//! possible per message and the publisher's rate is the tool's own.
//!
//! With `--firehose BYTES` every subscriber gets an endless stream of
//! stamped QoS 0 PUBLISH packets on its first filter (a wildcard filter is
//! published to as its prefix plus "0"), written in 64 KiB batches as fast
//! as the socket takes them: that measures the subscriber side of the tool.
//!
//! Bounded: the sink exits after `--duration-secs`.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::future::or;
use glommio::net::TcpListener;
use glommio::Placement;
use ringmq_codec::{
    frame_len, ConnAck, Limits, Packet, PacketType, Properties, ProtocolVersion, PubAck, QoS,
    ReasonCode, SubAck,
};

use crate::cli::SinkArgs;
use crate::conn::{Conn, ReadSize};
use crate::error::{BenchError, ConnError};
use crate::payload::Stamp;
use crate::procfs::{now_ns, CpuSample};
use crate::report::{Report, Value};
use crate::runtime::{executor_builder, si};
use crate::template::PublishTemplate;

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    publishes: AtomicU64,
    bytes: AtomicU64,
    firehose_sent: AtomicU64,
}

/// Run the sink until its duration is over; one report.
pub fn run(args: &SinkArgs) -> Result<Report, BenchError> {
    args.validate()?;
    let counters = Arc::new(Counters::default());
    let placement = match args.cpu {
        Some(cpu) => Placement::Fixed(cpu),
        None => Placement::Unbound,
    };
    let listen = args.listen.clone();
    let (c, firehose, quiet) = (Arc::clone(&counters), args.firehose, args.quiet);
    let duration = Duration::from_secs_f64(args.duration_secs);
    let cpu = CpuSample::own();
    let start = now_ns();
    let handle = executor_builder(placement)
        .name("sink")
        .io_memory(256 * 1024)
        .spawn(move || serve(listen, c, firehose, duration, quiet))
        .map_err(|e| BenchError::Executor(e.to_string()))?;
    let served = handle
        .join()
        .map_err(|e| BenchError::Executor(e.to_string()))?;
    served?;
    let secs = (now_ns() - start) as f64 / 1e9;
    let mut report = Report::new("sink");
    report.param("listen", Value::Text(args.listen.clone()));
    report.param("duration_s", Value::Float(args.duration_secs, 1));
    let publishes = counters.publishes.load(Ordering::Relaxed);
    report.int(
        "connections",
        "connections accepted",
        counters.connections.load(Ordering::Relaxed),
    );
    report.int("publish_received", "PUBLISH received", publishes);
    report.int(
        "bytes_received",
        "bytes received",
        counters.bytes.load(Ordering::Relaxed),
    );
    report.int(
        "firehose_sent",
        "firehose PUBLISH sent",
        counters.firehose_sent.load(Ordering::Relaxed),
    );
    report.float("run_s", "run time (s)", secs, 2);
    report.float(
        "sink_cpu_pct",
        "sink CPU (% of one core)",
        cpu.percent_until(&CpuSample::own()),
        1,
    );
    Ok(report)
}

async fn serve(
    listen: String,
    counters: Arc<Counters>,
    firehose: Option<usize>,
    duration: Duration,
    quiet: bool,
) -> Result<(), BenchError> {
    let listener = TcpListener::bind(listen.as_str()).map_err(|e| BenchError::Io {
        what: format!("sink: bind {listen}"),
        source: e.into(),
    })?;
    let stop = Rc::new(Cell::new(false));
    let ticker = {
        let (counters, stop) = (Arc::clone(&counters), Rc::clone(&stop));
        glommio::spawn_local(async move {
            let mut last = (0, 0);
            while !stop.get() {
                glommio::timer::sleep(Duration::from_secs(1)).await;
                let now = (
                    counters.publishes.load(Ordering::Relaxed),
                    counters.firehose_sent.load(Ordering::Relaxed),
                );
                if !quiet {
                    eprintln!(
                        "sink: recv {}/s | firehose {}/s | conns {}",
                        si((now.0 - last.0) as f64),
                        si((now.1 - last.1) as f64),
                        counters.connections.load(Ordering::Relaxed)
                    );
                }
                last = now;
            }
        })
    };
    let accept_loop = async {
        loop {
            let Ok(stream) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            counters.connections.fetch_add(1, Ordering::Relaxed);
            let conn = Conn::from_stream(stream, ProtocolVersion::V3_1_1, ReadSize::LARGE);
            glommio::spawn_local(session(
                conn,
                Arc::clone(&counters),
                firehose,
                Rc::clone(&stop),
            ))
            .detach();
        }
    };
    or(accept_loop, glommio::timer::sleep(duration)).await;
    stop.set(true);
    ticker.await;
    Ok(())
}

/// One client of the sink.
async fn session(
    mut conn: Conn,
    counters: Arc<Counters>,
    firehose: Option<usize>,
    stop: Rc<Cell<bool>>,
) {
    let limits = Limits::default();
    let mut hose: Option<PublishTemplate> = None;
    let mut seq = 0u64;
    while !stop.get() {
        // Firehose: write a batch whenever nothing is waiting to be read.
        if let Some(t) = &hose {
            let stamp_ns = now_ns();
            let n = (64 * 1024 / t.len()).max(1) as u64;
            for _ in 0..n {
                let stamp = Stamp {
                    publisher: 0,
                    sequence: seq,
                    sent_ns: stamp_ns,
                };
                t.append(conn.wbuf(), &stamp, 0);
                seq += 1;
            }
            if conn.flush().await.is_err() {
                return;
            }
            counters.firehose_sent.fetch_add(n, Ordering::Relaxed);
            crate::runtime::cooperate().await;
            if conn.buffered_len() == 0 {
                // Take whatever arrived, but do not wait for it.
                match futures_lite::future::poll_once(conn.fill()).await {
                    None => continue,
                    Some(Err(_)) => return,
                    Some(Ok(_)) => {}
                }
            }
        } else {
            if conn.fill().await.is_err() {
                return;
            }
            // A read that finds data never yields: let the other sessions,
            // the ticker and the stop timer run.
            crate::runtime::cooperate().await;
        }
        match handle_buffered(&mut conn, &counters, &limits, firehose, &mut hose) {
            Ok(true) => {}
            Ok(false) | Err(_) => return,
        }
        if conn.flush().await.is_err() {
            return;
        }
    }
}

/// Answer every whole packet buffered; false when the client is done.
fn handle_buffered(
    conn: &mut Conn,
    counters: &Counters,
    limits: &Limits,
    firehose: Option<usize>,
    hose: &mut Option<PublishTemplate>,
) -> Result<bool, ConnError> {
    let mut publishes = 0u64;
    let mut bytes = 0u64;
    let mut open = true;
    loop {
        let buf = conn.buffered();
        let Some(len) = frame_len(buf, limits)? else {
            break;
        };
        if buf.len() < len {
            break;
        }
        bytes += len as u64;
        let first = buf[0];
        let is_qos0_publish = first >> 4 == PacketType::Publish as u8 && first & 0x06 == 0;
        if is_qos0_publish {
            publishes += 1;
            conn.consume(len);
            continue;
        }
        let Some(packet) = conn.next_buffered()? else {
            break;
        };
        match packet {
            Packet::Connect(c) => {
                conn.set_version(c.protocol);
                conn.queue(&Packet::ConnAck(ConnAck {
                    session_present: false,
                    code: ReasonCode::SUCCESS,
                    properties: Properties::default(),
                }))?;
            }
            Packet::Publish(p) => {
                publishes += 1;
                if p.qos == QoS::AtLeastOnce {
                    conn.queue(&Packet::PubAck(PubAck {
                        packet_id: p.packet_id,
                        code: ReasonCode::SUCCESS,
                        properties: Properties::default(),
                    }))?;
                }
            }
            Packet::Subscribe(s) => {
                let codes = s
                    .filters
                    .iter()
                    .map(|(_, o)| ReasonCode((o.qos as u8).min(1)))
                    .collect();
                if let (Some(size), None, Some((filter, _))) = (firehose, &hose, s.filters.first())
                {
                    let topic = String::from_utf8_lossy(filter).replace(['+', '#'], "0");
                    *hose =
                        PublishTemplate::new(conn.version(), &topic, QoS::AtMostOnce, size).ok();
                }
                conn.queue(&Packet::SubAck(SubAck {
                    packet_id: s.packet_id,
                    properties: Properties::default(),
                    codes,
                }))?;
            }
            Packet::PingReq => conn.queue(&Packet::PingResp)?,
            Packet::Disconnect(_) => {
                open = false;
                break;
            }
            _ => {}
        }
    }
    counters.publishes.fetch_add(publishes, Ordering::Relaxed);
    counters.bytes.fetch_add(bytes, Ordering::Relaxed);
    Ok(open)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringmq_codec::decode;

    #[test]
    fn qos0_publish_first_byte_test() {
        // The sink frames QoS 0 PUBLISH without decoding: check the test
        // on the first byte against the codec's encoder.
        let t = PublishTemplate::new(ProtocolVersion::V3_1_1, "a/b", QoS::AtMostOnce, 16)
            .expect("encodes");
        let mut buf = bytes::BytesMut::new();
        t.append(
            &mut buf,
            &Stamp {
                publisher: 0,
                sequence: 0,
                sent_ns: 0,
            },
            0,
        );
        let first = buf[0];
        assert!(first >> 4 == PacketType::Publish as u8 && first & 0x06 == 0);
        let q1 = PublishTemplate::new(ProtocolVersion::V3_1_1, "a/b", QoS::AtLeastOnce, 16)
            .expect("encodes");
        let mut buf = bytes::BytesMut::new();
        q1.append(
            &mut buf,
            &Stamp {
                publisher: 0,
                sequence: 0,
                sent_ns: 0,
            },
            1,
        );
        assert_ne!(buf[0] & 0x06, 0);
        let frozen = buf.freeze();
        let decoded = decode(&frozen, ProtocolVersion::V3_1_1, &Limits::default());
        assert!(matches!(decoded, Ok(Some((Packet::Publish(_), _)))));
    }
}
