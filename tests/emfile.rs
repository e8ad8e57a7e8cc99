//! Out of descriptors on accept (EMFILE), in its own test binary with one
//! test: it changes the process-wide RLIMIT_NOFILE.
//!
//! The broker and its clients share this process and so its descriptor
//! table, so the test makes sure it is the broker's accept, not a client's
//! socket(), that runs out:
//!
//! - the client sockets that will meet the limit are created (socket(),
//!   not connected) before the limit drops; connect() needs no new
//!   descriptor, and the kernel completes the handshake and queues the
//!   connection on the listener whether or not anyone can accept it;
//! - the soft limit is lowered *before the broker starts* (with headroom
//!   for its rings, listeners and the two connections that stay open):
//!   io_uring captures RLIMIT_NOFILE when it prepares an accept, so a
//!   (multishot) accept armed before a later lowering would never see it;
//! - then every free descriptor below the limit is taken by a filler (dups
//!   of /dev/null) and exactly `SPARE` of them are given back.
//!
//! So the broker can accept at most `SPARE` more connections; the rest stay
//! queued in the kernel, unanswered. Meanwhile the connections already open
//! keep being served; once the limit is restored (and the fillers closed)
//! the broker must retry accepting on its own: the queued connections get
//! their CONNACK and a brand-new connection works.

mod common;

use common::*;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// Descriptors the broker may still take once the table is full.
const SPARE: usize = 3;
/// Client sockets prepared beyond `SPARE`: these must wait.
const EXTRA: usize = 3;
/// Descriptors left below the lowered limit for the broker's start and the
/// connections that stay open throughout.
const HEADROOM: i32 = 256;

fn get_nofile() -> libc::rlimit {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into a local we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    assert_eq!(rc, 0, "getrlimit: {}", std::io::Error::last_os_error());
    lim
}

fn set_nofile(lim: &libc::rlimit) {
    // SAFETY: setrlimit reads one rlimit from a reference we hold.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, lim) };
    assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
}

/// The highest open descriptor below `below`.
fn highest_open_fd(below: RawFd) -> RawFd {
    (0..below)
        .rev()
        // SAFETY: F_GETFD only queries the descriptor's flags.
        .find(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1)
        .unwrap_or(0)
}

/// A lowered soft RLIMIT_NOFILE and the descriptors filling the table; on
/// drop (also when the test panics) the fillers are closed and the limit
/// restored.
struct LowLimit {
    saved: libc::rlimit,
    fillers: Vec<OwnedFd>,
}

impl LowLimit {
    /// Lowers the soft limit to `limit`.
    fn lower_to(limit: RawFd) -> LowLimit {
        let saved = get_nofile();
        assert!(
            (limit as u64) < saved.rlim_cur,
            "the limit ({}) is already below {limit}",
            saved.rlim_cur
        );
        set_nofile(&libc::rlimit {
            rlim_cur: limit as u64,
            rlim_max: saved.rlim_max,
        });
        LowLimit {
            saved,
            fillers: Vec::new(),
        }
    }

    /// Takes every free descriptor below the limit, then frees `spare` of
    /// them.
    fn fill_leaving(&mut self, spare: usize) {
        let null = std::fs::File::open("/dev/null").expect("open /dev/null");
        loop {
            // SAFETY: dup of a descriptor we own; the new one is ours.
            let fd = unsafe { libc::fcntl(null.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
            if fd < 0 {
                let e = std::io::Error::last_os_error();
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "filling: {e}");
                break;
            }
            // SAFETY: `fd` was just returned by fcntl and is owned by no one else.
            self.fillers.push(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        // `null` itself is closed here: one more free slot; give back one
        // filler fewer.
        drop(null);
        assert!(
            self.fillers.len() >= spare,
            "only {} descriptors were free",
            self.fillers.len()
        );
        self.fillers.truncate(self.fillers.len() - (spare - 1));
    }
}

impl Drop for LowLimit {
    fn drop(&mut self) {
        self.fillers.clear();
        set_nofile(&self.saved);
    }
}

/// An unconnected IPv4 TCP socket.
fn tcp_socket() -> OwnedFd {
    // SAFETY: socket() has no memory arguments; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` was just created and is owned by no one else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Connects a socket made by `tcp_socket` (blocking; needs no descriptor).
fn connect_fd(fd: OwnedFd, addr: SocketAddr) -> TcpStream {
    let SocketAddr::V4(v4) = addr else {
        panic!("the test broker listens on IPv4: {addr}")
    };
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*v4.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: `sin` is a valid sockaddr_in for the length passed.
    let rc = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
    TcpStream::from(fd)
}

/// What became of a client that sent CONNECT while descriptors ran out.
#[derive(Debug, PartialEq, Eq)]
enum Fate {
    Answered,
    Closed,
}

#[test]
fn accept_survives_running_out_of_descriptors() {
    let began = Instant::now();
    let sockets: Vec<OwnedFd> = (0..SPARE + EXTRA).map(|_| tcp_socket()).collect();
    let before = get_nofile();
    let limit = highest_open_fd(before.rlim_cur.min(1 << 20) as RawFd) + 1 + HEADROOM;
    let mut low = LowLimit::lower_to(limit);

    let broker = start(&[]);
    let addr = broker.local_addr();
    let canary_id = id_on_shard("emfile-canary-", 0);
    let (mut canary, _) = RawClient::connected(addr, &ConnectOpts::v5(&canary_id));
    assert_eq!(canary.subscribe(1, &[("emfile/echo", 1)]), [1]);
    let peer_id = id_on_shard("emfile-peer-", 1);
    let (mut peer, _) = RawClient::connected(addr, &ConnectOpts::v3(&peer_id));
    let mut echoes = 0u16;
    let mut round_trip = |canary: &mut RawClient, peer: &mut RawClient| {
        echoes += 1;
        let payload = format!("echo-{echoes}");
        peer.publish1("emfile/echo", payload.as_bytes(), echoes);
        let p = canary.expect_publish(PROMPT);
        assert_eq!(p.payload, payload.as_bytes(), "echo {echoes}");
        canary.ping();
        peer.ping();
    };
    round_trip(&mut canary, &mut peer);

    // From here on the broker can take SPARE more descriptors.
    low.fill_leaving(SPARE);
    let mut clients: Vec<RawClient> = sockets
        .into_iter()
        .map(|fd| {
            // An empty client id: the v5 broker assigns one the accepting
            // shard owns, so no hand-off (which duplicates the socket and
            // so needs a descriptor of its own) gets in the way.
            let mut c = RawClient::from_stream(connect_fd(fd, addr), true);
            c.send(&ConnectOpts::v5("").encode()).expect("send CONNECT");
            c
        })
        .collect();
    let mut fate: Vec<Option<Fate>> = (0..clients.len()).map(|_| None).collect();
    let settle = |clients: &mut [RawClient], fate: &mut [Option<Fate>], wait: Duration| {
        for (c, f) in clients.iter_mut().zip(fate.iter_mut()) {
            if f.is_none() {
                *f = match c.read_packet(wait) {
                    Ok(p) => {
                        let ack = p.connack(true);
                        assert_eq!(ack.code, 0, "CONNACK {ack:?}");
                        assert!(ack.props.has(PROP_ASSIGNED_CLIENT_ID), "{ack:?}");
                        Some(Fate::Answered)
                    }
                    Err(ReadError::Timeout) => None,
                    Err(ReadError::Closed) => Some(Fate::Closed),
                    Err(e) => panic!("client read: {e:?}"),
                };
            }
        }
        fate.iter().filter(|f| **f == Some(Fate::Answered)).count()
    };
    // Up to SPARE of them are accepted and answered at once.
    poll_until(Duration::from_secs(2), || {
        settle(&mut clients, &mut fate, Duration::from_millis(1)) >= SPARE
    });
    // The others get nothing while the table is full.
    let answered = settle(&mut clients, &mut fate, Duration::from_millis(200));
    let waiting: Vec<usize> = (0..clients.len()).filter(|&i| fate[i].is_none()).collect();
    assert_eq!(
        (answered, waiting.len()),
        (SPARE, EXTRA),
        "with {SPARE} descriptors to spare, {SPARE} connections are accepted and answered \
         and the others wait, none closed (answered, waiting): {fate:?}"
    );
    wait_stats(
        &broker,
        "open connections and accept errors while out of descriptors",
        |s| s.connections == 2 + answered as u64 && s.accept_errors > 0,
    );

    // The connections already open keep being served.
    for _ in 0..5 {
        round_trip(&mut canary, &mut peer);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        if fate[i] == Some(Fate::Answered) {
            c.ping();
        }
    }

    // Descriptors again: the broker must retry accepting by itself.
    drop(low);
    let retried = Instant::now();
    for &i in &waiting {
        let p = clients[i].expect_packet(
            PROMPT,
            "CONNACK once descriptors are back (the broker must retry accepting after EMFILE)",
        );
        assert_eq!(p.connack(true).code, 0, "client {i}");
        clients[i].ping();
    }
    let waited = retried.elapsed();
    let (mut fresh, _) = RawClient::connected(addr, &ConnectOpts::v5("emfile-fresh"));
    fresh.ping();
    round_trip(&mut canary, &mut peer);
    wait_stats(&broker, "every connection accepted", |s| {
        s.connections == (2 + answered + waiting.len() + 1) as u64
    });
    assert_serves(addr);
    eprintln!(
        "emfile: {answered} of {} connections answered while out of descriptors, {} waited \
         and were answered {waited:?} after the limit was raised; {:?} in all",
        SPARE + EXTRA,
        waiting.len(),
        began.elapsed()
    );
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "took {:?}",
        began.elapsed()
    );
}
