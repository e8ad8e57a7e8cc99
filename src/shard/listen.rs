//! Binding: the listeners every shard binds (SO_REUSEPORT, so the kernel
//! spreads the accepts); the shard's engine accepts on them.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;

use super::Shard;
use crate::config::ListenUrl;

/// Binds every listener (with SO_REUSEPORT) for the shard's engine.
/// Returns the bound addresses (the real port when 0 was asked).
/// Listener `i` here is `--listen` number `i` (the engine takes its
/// scheme from there).
pub(crate) fn serve(shard: &Rc<Shard>, urls: &[ListenUrl]) -> std::io::Result<Vec<SocketAddr>> {
    let mut bound = Vec::with_capacity(urls.len());
    for url in urls {
        let fd = bind_reuseport(&url.addr, shard.config().listen_backlog)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{url}: {e}")))?;
        let std = std::net::TcpListener::from(fd);
        bound.push(std.local_addr()?);
        shard.listeners.borrow_mut().push(OwnedFd::from(std));
    }
    Ok(bound)
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
