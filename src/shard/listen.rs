//! Accepting: the listeners every shard binds (SO_REUSEPORT), and the
//! inbox task, which also starts the sockets other shards hand over.

use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use glommio::net::{TcpListener, TcpStream};
use tracing::warn;

use super::conn;
use super::Shard;
use crate::mesh::Doorbell;

/// Binds every listener (with SO_REUSEPORT), starts accepting and starts
/// the inbox task.
pub(crate) fn serve(shard: &Rc<Shard>, addrs: &[SocketAddr]) -> std::io::Result<Vec<SocketAddr>> {
    let mut bound = Vec::with_capacity(addrs.len());
    let mut tasks = Vec::with_capacity(addrs.len());
    let ring = shard.config().io_engine == crate::config::IoEngine::Ring;
    for addr in addrs {
        let fd = bind_reuseport(addr, shard.config().listen_backlog)?;
        if ring {
            // The ring engine accepts on the socket itself.
            let std = std::net::TcpListener::from(fd);
            bound.push(std.local_addr()?);
            shard.ring_listeners.borrow_mut().push(OwnedFd::from(std));
            continue;
        }
        let raw = fd.as_raw_fd();
        // SAFETY: `fd` is an open listening socket we own; the listener
        // takes ownership and closes it when dropped.
        let listener = unsafe { TcpListener::from_raw_fd(fd.into_raw_fd()) };
        bound.push(listener.local_addr()?);
        let shard = shard.clone();
        tasks.push(glommio::spawn_local(accept_loop(shard, listener, raw)));
    }
    *shard.listeners.borrow_mut() = tasks;
    if ring {
        return Ok(bound);
    }
    if let Some(doorbell) = shard.doorbell.take() {
        glommio::spawn_local(inbox_loop(shard.clone(), doorbell)).detach();
    }
    Ok(bound)
}

async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, raw_fd: RawFd) {
    loop {
        let mut accept = std::pin::pin!(listener.accept());
        let accepted = std::future::poll_fn(|cx| {
            if shard.shutting_down() {
                return Poll::Ready(None);
            }
            match accept.as_mut().poll(cx) {
                Poll::Ready(r) => Poll::Ready(Some(r)),
                Poll::Pending => {
                    let mut core = shard.core.borrow_mut();
                    if !core.accept_wakers.iter().any(|w| w.will_wake(cx.waker())) {
                        core.accept_wakers.push(cx.waker().clone());
                    }
                    Poll::Pending
                }
            }
        })
        .await;
        let Some(accepted) = accepted else {
            // An io_uring accept in flight keeps the socket listening
            // after close(); shutdown() stops it at once, so the port is
            // closed before `Broker::shutdown` returns.
            // SAFETY: `raw_fd` belongs to `listener`, alive here.
            unsafe { libc::shutdown(raw_fd, libc::SHUT_RDWR) };
            return;
        };
        match accepted {
            Ok(stream) => {
                let peer = stream
                    .peer_addr()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                // Small MQTT packets must not wait for Nagle.
                let _ = stream.set_nodelay(true);
                spawn(&shard, stream, peer, BytesMut::new(), false);
            }
            Err(e) => {
                // Out of descriptors or similar: say so, back off a little
                // rather than spin.
                warn!(shard = shard.id, error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

fn spawn(shard: &Rc<Shard>, stream: TcpStream, peer: SocketAddr, read: BytesMut, adopted: bool) {
    glommio::spawn_local(conn::run(shard.clone(), stream, peer, read, adopted)).detach();
}

/// Drains the inbox whenever it rings, and starts adopted sockets.
async fn inbox_loop(shard: Rc<Shard>, doorbell: OwnedFd) {
    let doorbell = Doorbell::new(doorbell);
    loop {
        let adopts = {
            let mut core = shard.core.borrow_mut();
            core.now = core.clock.read().1;
            core.drain_inbox();
            std::mem::take(&mut core.adopts)
        };
        if !adopts.is_empty() {
            shard.bump_activity();
        }
        for adopt in adopts {
            // SAFETY: `fd` is an open socket we own; ownership moves into
            // the stream, which closes it when dropped.
            let stream = unsafe { TcpStream::from_raw_fd(adopt.fd.into_raw_fd()) };
            spawn(
                &shard,
                stream,
                adopt.peer,
                BytesMut::from(&adopt.read[..]),
                true,
            );
        }
        if shard.shutting_down() {
            return;
        }
        let parked = shard.core.borrow().inbox.park();
        if parked {
            doorbell.wait().await;
        }
        shard.bump_activity();
    }
}

/// A listening TCP socket with SO_REUSEPORT, so every shard can bind the
/// same address and the kernel spreads the accepts.
fn bind_reuseport(addr: &SocketAddr, backlog: u32) -> std::io::Result<OwnedFd> {
    use std::io::Error;
    let (domain, storage, len) = sockaddr(addr);
    // SAFETY: plain socket syscalls on a descriptor we create and own;
    // `storage` outlives the bind call and `len` is its real size.
    unsafe {
        let fd = libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let one: libc::c_int = 1;
        for opt in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
            let rc = libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            if rc != 0 {
                return Err(Error::last_os_error());
            }
        }
        if libc::bind(
            fd.as_raw_fd(),
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
        ) != 0
        {
            return Err(Error::last_os_error());
        }
        // `--listen-backlog` is at most 65535 (validated), so it fits.
        if libc::listen(fd.as_raw_fd(), backlog as libc::c_int) != 0 {
            return Err(Error::last_os_error());
        }
        Ok(fd)
    }
}

fn sockaddr(addr: &SocketAddr) -> (libc::c_int, libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is valid; we fill the variant
    // that matches the address family.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            (
                libc::AF_INET,
                storage,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            (
                libc::AF_INET6,
                storage,
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        }
    }
}
