//! One shard's io_uring: submission, completion, provided read buffers.
//!
//! Mechanism only: this file knows sockets and buffers, not MQTT. The
//! shard's engine (`shard/engine.rs`) decides what to submit.
//!
//! - Every request carries a [`Token`] in its user data: what it is, for
//!   which slot, and the slot's generation.
//! - Reads select their buffer from one provided-buffer ring (`BufRing`),
//!   so a connection waiting for bytes owns no buffer; the kernel picks
//!   one when bytes arrive and the engine hands it back at once (or takes
//!   it whole and provides a fresh one).
//! - Submission never fails for lack of room: a full submission queue is
//!   submitted to the kernel and the push retried.

use std::alloc::Layout;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use io_uring::types::{BufRingEntry, SubmitArgs, Timespec};
use io_uring::{cqueue, squeue, IoUring};

/// The buffer group every read selects from.
const BGID: u16 = 0;

/// What a request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Op {
    Accept = 1,
    Recv = 2,
    Send = 3,
    Doorbell = 4,
    /// A cancel request itself (its completion is ignored).
    Cancel = 5,
    /// An fdatasync of the persistence log (--fsync interval).
    Fsync = 6,
}

/// A request's user data: op, slot and generation in one u64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) op: Op,
    pub(crate) slot: u32,
    pub(crate) gen: u32,
}

impl Token {
    fn encode(self) -> u64 {
        (self.op as u64) | (u64::from(self.slot) << 8) | (u64::from(self.gen & 0xff_ffff) << 40)
    }

    fn decode(data: u64) -> Option<Token> {
        let op = match data & 0xff {
            1 => Op::Accept,
            2 => Op::Recv,
            3 => Op::Send,
            4 => Op::Doorbell,
            5 => Op::Cancel,
            6 => Op::Fsync,
            _ => return None,
        };
        Some(Token {
            op,
            slot: (data >> 8) as u32,
            gen: ((data >> 40) & 0xff_ffff) as u32,
        })
    }

    /// Generations wrap at 24 bits (the room left in the user data).
    pub(crate) fn next_gen(gen: u32) -> u32 {
        gen.wrapping_add(1) & 0xff_ffff
    }
}

/// One completion, copied out of the ring.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Completion {
    pub(crate) token: Token,
    pub(crate) result: i32,
    /// More completions follow from the same (multishot) request.
    pub(crate) more: bool,
    /// The provided buffer the bytes are in (reads).
    pub(crate) buffer: Option<u16>,
}

/// The ring's size, from the flags.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RingSize {
    /// Submission queue entries (a power of two).
    pub(crate) entries: u32,
    /// Provided read buffers (a power of two).
    pub(crate) read_buffers: u16,
    /// Bytes of each read buffer.
    pub(crate) read_buffer_bytes: usize,
}

impl RingSize {
    /// The sizes the flags ask for.
    pub(crate) fn of(config: &crate::config::Config) -> RingSize {
        RingSize {
            entries: config.ring_depth as u32,
            read_buffers: config.read_buffers,
            read_buffer_bytes: config.read_buffer_kib * 1024,
        }
    }
}

/// Bytes of kernel ring memory a shard's ring of `entries` may lock: the
/// submission entries, the completion entries (4x) and the index array.
pub(crate) fn locked_bytes(entries: usize) -> u64 {
    let entries = entries as u64;
    entries * 64 + (4 * entries).min(65536) * 16 + entries * 4 + 4096
}

/// A shard's ring and its read buffers.
pub(crate) struct Ring {
    uring: IoUring,
    bufs: BufRing,
}

impl Ring {
    /// Creates the ring with the features the engine relies on (multishot
    /// accept and receive, provided-buffer rings: Linux 6.0 or later).
    pub(crate) fn new(size: RingSize) -> io::Result<Ring> {
        // The kernel takes at most 65536 completion entries.
        let cq = size.entries.saturating_mul(4).min(65536);
        let uring = IoUring::builder()
            .setup_single_issuer()
            .setup_coop_taskrun()
            .setup_defer_taskrun()
            .setup_cqsize(cq)
            .build(size.entries)
            .or_else(|_| {
                // An older kernel without the task-run hints still works,
                // with more interruptions.
                IoUring::builder().setup_cqsize(cq).build(size.entries)
            })?;
        let bufs = BufRing::new(&uring, size.read_buffers, size.read_buffer_bytes)?;
        Ok(Ring { uring, bufs })
    }

    fn push(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: every pointer an entry carries (send buffers, the
            // doorbell buffer) is owned by the engine and outlives the
            // request; see the callers.
            if unsafe { self.uring.submission().push(&entry) }.is_ok() {
                return;
            }
            // Full: hand what is queued to the kernel and retry.
            if let Err(e) = self.uring.submit() {
                if e.raw_os_error() != Some(libc::EBUSY) && e.raw_os_error() != Some(libc::EINTR) {
                    tracing::warn!(error = %e, "io_uring submit failed");
                }
            }
        }
    }

    /// fdatasync of `fd` (a file: the shard's persistence log), done by the
    /// kernel while the shard runs on.
    pub(crate) fn fdatasync(&mut self, fd: RawFd, token: Token) {
        let entry = io_uring::opcode::Fsync::new(io_uring::types::Fd(fd))
            .flags(io_uring::types::FsyncFlags::DATASYNC)
            .build()
            .user_data(token.encode());
        self.push(entry);
    }

    /// Multishot accept on a listening socket.
    pub(crate) fn accept(&mut self, fd: RawFd, token: Token) {
        let entry = io_uring::opcode::AcceptMulti::new(io_uring::types::Fd(fd))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(token.encode());
        self.push(entry);
    }

    /// One receive into a provided buffer (before CONNECT: nothing more is
    /// read until the first packet is handled).
    pub(crate) fn recv_once(&mut self, fd: RawFd, token: Token) {
        let entry = io_uring::opcode::Recv::new(io_uring::types::Fd(fd), std::ptr::null_mut(), 0)
            .buf_group(BGID)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT)
            .user_data(token.encode());
        self.push(entry);
    }

    /// Multishot receive into provided buffers.
    pub(crate) fn recv_multi(&mut self, fd: RawFd, token: Token) {
        let entry = io_uring::opcode::RecvMulti::new(io_uring::types::Fd(fd), BGID)
            .build()
            .user_data(token.encode());
        self.push(entry);
    }

    /// Sends `len` bytes at `ptr`, all of them (MSG_WAITALL) unless the
    /// connection fails.
    ///
    /// # Safety
    /// `ptr..ptr+len` stays valid and unchanged until the completion.
    pub(crate) unsafe fn send(&mut self, fd: RawFd, ptr: *const u8, len: u32, token: Token) {
        let entry = io_uring::opcode::Send::new(io_uring::types::Fd(fd), ptr, len)
            .flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL)
            .build()
            .user_data(token.encode());
        self.push(entry);
    }

    /// A plain receive into caller memory (the doorbell).
    ///
    /// # Safety
    /// `buf..buf+len` stays valid until the completion.
    pub(crate) unsafe fn recv_into(&mut self, fd: RawFd, buf: *mut u8, len: u32, token: Token) {
        let entry = io_uring::opcode::Recv::new(io_uring::types::Fd(fd), buf, len)
            .build()
            .user_data(token.encode());
        self.push(entry);
    }

    /// Cancels every request carrying `token`.
    pub(crate) fn cancel(&mut self, token: Token) {
        let entry = io_uring::opcode::AsyncCancel::new(token.encode())
            .build()
            .user_data(
                Token {
                    op: Op::Cancel,
                    ..token
                }
                .encode(),
            );
        self.push(entry);
    }

    /// Hands queued requests to the kernel without waiting.
    pub(crate) fn submit(&mut self) {
        let _ = self.uring.submit();
    }

    /// Submits, then sleeps until a completion arrives or `timeout` passes
    /// (`None`: no limit).
    pub(crate) fn submit_and_wait(&mut self, timeout: Option<Duration>) {
        let result = match timeout {
            Some(t) => {
                let ts = Timespec::new().sec(t.as_secs()).nsec(t.subsec_nanos());
                let args = SubmitArgs::new().timespec(&ts);
                self.uring.submitter().submit_with_args(1, &args)
            }
            None => self.uring.submit_and_wait(1),
        };
        if let Err(e) = result {
            match e.raw_os_error() {
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) => {}
                _ => tracing::warn!(error = %e, "io_uring wait failed"),
            }
        }
    }

    /// Moves every ready completion into `out`.
    pub(crate) fn reap(&mut self, out: &mut Vec<Completion>) {
        let mut cq = self.uring.completion();
        cq.sync();
        for cqe in &mut cq {
            let Some(token) = Token::decode(cqe.user_data()) else {
                continue;
            };
            out.push(Completion {
                token,
                result: cqe.result(),
                more: cqueue::more(cqe.flags()),
                buffer: cqueue::buffer_select(cqe.flags()),
            });
        }
    }

    /// Whether a completion is waiting.
    pub(crate) fn has_completions(&mut self) -> bool {
        let mut cq = self.uring.completion();
        cq.sync();
        !cq.is_empty()
    }

    /// The `len` bytes a read put into buffer `id`, copied onto the end of
    /// `into`; the buffer goes back to the kernel at once.
    pub(crate) fn copy_read(&mut self, id: u16, len: usize, into: &mut BytesMut) {
        into.extend_from_slice(&self.bufs.slots[usize::from(id)][..len]);
        self.bufs.provide(id);
    }

    /// The `len` bytes a read put into buffer `id`, to work on in place; the buffer
    /// goes back with [`Ring::give_back`].
    pub(crate) fn read_slice(&mut self, id: u16, len: usize) -> &mut [u8] {
        &mut self.bufs.slots[usize::from(id)][..len]
    }

    /// Gives buffer `id` back to the kernel unread (an empty or stale read).
    pub(crate) fn give_back(&mut self, id: u16) {
        self.bufs.provide(id);
    }

    /// The `len` bytes a read put into buffer `id`, taken whole (no copy);
    /// a fresh buffer takes its place in the ring.
    pub(crate) fn take_read(&mut self, id: u16, len: usize) -> BytesMut {
        let fresh = BytesMut::zeroed(self.bufs.buf_bytes);
        let mut taken = std::mem::replace(&mut self.bufs.slots[usize::from(id)], fresh);
        taken.truncate(len);
        self.bufs.provide(id);
        taken
    }

    /// Bytes of one read buffer.
    pub(crate) fn read_buffer_bytes(&self) -> usize {
        self.bufs.buf_bytes
    }
}

/// The provided-buffer ring: `count` entries the kernel takes buffers
/// from, and the memory behind each.
struct BufRing {
    entries: *mut BufRingEntry,
    layout: Layout,
    mask: u16,
    /// Our copy of the tail (the kernel reads the shared one).
    tail: u16,
    buf_bytes: usize,
    slots: Vec<BytesMut>,
}

impl BufRing {
    fn new(uring: &IoUring, count: u16, buf_bytes: usize) -> io::Result<BufRing> {
        assert!(count.is_power_of_two(), "validated by the config");
        let size = std::mem::size_of::<BufRingEntry>() * usize::from(count);
        let layout = Layout::from_size_align(size, 4096)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: a non-zero size with a valid alignment.
        let entries = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<BufRingEntry>();
        if entries.is_null() {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        let mut ring = BufRing {
            entries,
            layout,
            mask: count - 1,
            tail: 0,
            buf_bytes,
            slots: (0..count).map(|_| BytesMut::zeroed(buf_bytes)).collect(),
        };
        // SAFETY: `entries` is page aligned, zeroed and `count` entries long;
        // it lives until the ring is dropped (the kernel's registration
        // ends with the ring, which is dropped first: see `Drop for Ring`).
        unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(entries as u64, count, BGID, 0)?;
        }
        for id in 0..count {
            ring.provide(id);
        }
        Ok(ring)
    }

    /// Puts buffer `id` (its current memory) back into the ring.
    fn provide(&mut self, id: u16) {
        let slot = &mut self.slots[usize::from(id)];
        let index = usize::from(self.tail & self.mask);
        // SAFETY: `index` is within the ring; the kernel only reads entries
        // between its head and the tail we publish below.
        unsafe {
            let entry = &mut *self.entries.add(index);
            entry.set_addr(slot.as_mut_ptr() as u64);
            entry.set_len(slot.len() as u32);
            entry.set_bid(id);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail lives in the first entry's reserved field, which
        // the kernel reads atomically.
        unsafe {
            let tail = BufRingEntry::tail(self.entries)
                .cast_mut()
                .cast::<AtomicU16>();
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        let _ = self.uring.submitter().unregister_buf_ring(BGID);
        // SAFETY: allocated in `BufRing::new` with this layout; the kernel
        // no longer refers to it.
        unsafe { std::alloc::dealloc(self.bufs.entries.cast(), self.bufs.layout) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for op in [Op::Accept, Op::Recv, Op::Send, Op::Doorbell, Op::Cancel] {
            for (slot, gen) in [(0, 0), (7, 1), (u32::MAX, 0xff_ffff)] {
                let t = Token { op, slot, gen };
                assert_eq!(Token::decode(t.encode()), Some(t));
            }
        }
        assert_eq!(Token::next_gen(0xff_ffff), 0);
        assert_eq!(Token::decode(0), None);
    }
}
