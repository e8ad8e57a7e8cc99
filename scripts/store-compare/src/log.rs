//! Design (a): per-shard append-only log written through io_uring.
//! Frame: [len u32 LE][crc32c(body) u32 LE][body]. One write SQE per batch,
//! optionally linked to an IORING_OP_FSYNC(DATASYNC).
use io_uring::{IoUring, opcode, squeue, types};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

const ALIGN: usize = 4096;

pub struct Log {
    ring: IoUring,
    file: File,
    off: u64,      // logical end of the log
    buf: AlignedBuf,
    len: usize,    // bytes used in buf
    direct: bool,
    fsync: bool,
    falloc_end: Option<u64>, // Some: preallocate ahead with fallocate(2)
    prezero: bool,           // preallocate by writing zeros (blocks written, not unwritten extents)
    pwrite: bool,            // baseline: plain pwrite/fdatasync syscalls, no io_uring
}

impl Log {
    pub fn open(path: &Path, fsync: bool, direct: bool, falloc: bool, pwrite: bool, prezero: bool) -> io::Result<Log> {
        let mut oo = OpenOptions::new();
        oo.create(true).write(true).read(true);
        if direct { oo.custom_flags(libc_o_direct()); }
        let file = oo.open(path)?;
        let off = file.metadata()?.len();
        assert!(off == 0 || !direct, "demo: O_DIRECT log starts empty");
        Ok(Log { ring: IoUring::new(256)?, file, off, buf: AlignedBuf::new(1 << 20),
                 len: 0, direct, fsync, falloc_end: (falloc || prezero).then_some(0), pwrite, prezero })
    }

    /// Frames one record into the pending batch.
    pub fn push(&mut self, body: &[u8]) {
        let need = self.len + 8 + body.len();
        if need > self.buf.cap { self.buf.grow(need * 2, self.len); }
        let b = self.buf.slice_mut();
        b[self.len..self.len + 4].copy_from_slice(&(body.len() as u32).to_le_bytes());
        b[self.len + 4..self.len + 8].copy_from_slice(&crc32c::crc32c(body).to_le_bytes());
        b[self.len + 8..need].copy_from_slice(body);
        self.len = need;
    }

    /// Writes the pending batch with one SQE (+ linked fdatasync); returns when complete.
    pub fn commit(&mut self) -> io::Result<()> {
        if let Some(end) = self.falloc_end {
            if self.off + self.len as u64 + 8192 > end {
                const STEP: i64 = 64 << 20;
                unsafe extern "C" { fn fallocate(fd: i32, mode: i32, off: i64, len: i64) -> i32; }
                if self.prezero {
                    use std::os::unix::fs::FileExt; // a real log would do this off the hot path / recycle segments
                    let z = vec![0u8; STEP as usize];
                    let f = OpenOptions::new().write(true).open(path_of(&self.file))?;
                    f.write_all_at(&z, end)?;
                    f.sync_data()?;
                } else if unsafe { fallocate(self.file.as_raw_fd(), 0, end as i64, STEP) } != 0 { return Err(io::Error::last_os_error()); }
                self.falloc_end = Some(end + STEP as u64);
            }
        }
        if self.pwrite {
            use std::os::unix::fs::FileExt;
            self.file.write_all_at(&self.buf.slice_mut()[..self.len], self.off)?;
            if self.fsync { self.file.sync_data()?; }
            self.off += self.len as u64;
            self.len = 0;
            return Ok(());
        }
        let fd = types::Fd(self.file.as_raw_fd());
        // O_DIRECT: rewrite the partial tail block from its aligned start, padded with zeros.
        let (start, wlen, tail) = if self.direct {
            let start = self.off - (self.off % ALIGN as u64);
            debug_assert!(self.len >= (self.off - start) as usize); // buf starts with the tail block
            let total = self.len;
            let padded = total.div_ceil(ALIGN) * ALIGN;
            self.buf.slice_mut()[total..padded].fill(0);
            (start, padded, total)
        } else { (self.off, self.len, self.len) };
        let mut write = opcode::Write::new(fd, self.buf.ptr, wlen as u32).offset(start).build().user_data(1);
        if self.fsync { write = write.flags(squeue::Flags::IO_LINK); }
        let n = if self.fsync { 2 } else { 1 };
        unsafe {
            let mut sq = self.ring.submission();
            sq.push(&write).expect("sq full");
            if self.fsync {
                let f = opcode::Fsync::new(fd).flags(types::FsyncFlags::DATASYNC).build().user_data(2);
                sq.push(&f).expect("sq full");
            }
        }
        self.ring.submit_and_wait(n)?;
        for cqe in self.ring.completion() {
            if cqe.result() < 0 { return Err(io::Error::from_raw_os_error(-cqe.result())); }
            if cqe.user_data() == 1 { assert_eq!(cqe.result() as usize, wlen, "short write"); }
        }
        if self.direct {
            let new_off = start + tail as u64;
            let keep_from = (tail / ALIGN) * ALIGN; // partial tail block stays in memory
            let keep = tail - keep_from;
            self.buf.slice_mut().copy_within(keep_from..tail, 0);
            self.len = keep;
            self.off = new_off;
        } else {
            self.off += self.len as u64;
            self.len = 0;
        }
        Ok(())
    }
}

/// Recovery: read the whole file, walk frames, check every crc; stop at the first
/// torn/corrupt/zero frame. Returns (records, good_bytes).
pub fn recover(path: &Path, mut visit: impl FnMut(&[u8])) -> io::Result<(u64, u64)> {
    let data = std::fs::read(path)?;
    let (mut pos, mut n) = (0usize, 0u64);
    while pos + 8 <= data.len() {
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().unwrap());
        if len == 0 || pos + 8 + len > data.len() { break; }
        let body = &data[pos + 8..pos + 8 + len];
        if crc32c::crc32c(body) != crc { break; }
        visit(body);
        pos += 8 + len;
        n += 1;
    }
    Ok((n, pos as u64))
}

fn path_of(f: &File) -> std::path::PathBuf { std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap() }

fn libc_o_direct() -> i32 { 0o40000 } // O_DIRECT on x86_64 Linux

struct AlignedBuf { ptr: *mut u8, cap: usize }
impl AlignedBuf {
    fn layout(cap: usize) -> std::alloc::Layout { std::alloc::Layout::from_size_align(cap, ALIGN).unwrap() }
    fn new(cap: usize) -> Self {
        let cap = cap.div_ceil(ALIGN) * ALIGN;
        AlignedBuf { ptr: unsafe { std::alloc::alloc_zeroed(Self::layout(cap)) }, cap }
    }
    fn grow(&mut self, cap: usize, keep: usize) {
        let mut nb = AlignedBuf::new(cap + ALIGN);
        nb.slice_mut()[..keep].copy_from_slice(&self.slice_mut()[..keep]);
        std::mem::swap(self, &mut nb);
    }
    fn slice_mut(&mut self) -> &mut [u8] { unsafe { std::slice::from_raw_parts_mut(self.ptr, self.cap) } }
}
impl Drop for AlignedBuf {
    fn drop(&mut self) { unsafe { std::alloc::dealloc(self.ptr, Self::layout(self.cap)) } }
}
