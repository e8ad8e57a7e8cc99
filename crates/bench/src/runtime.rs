//! The tool's runtime: one glommio executor per `--threads` (pinned with
//! `--cpus`), the counters behind the progress line, the progress line
//! itself and [`Latch`], the one cross-thread synchronisation primitive
//! the scenarios use for their phases (all subscribed, all connected, stop).
//!
//! Owns: thread start/join and the main thread's wait loop.
//!
//! Invariants:
//! - Executors use a small `io_memory` (`--io-memory-kib`, 256 KiB by
//!   default) so several fit the locked-memory limit.
//! - Hot paths touch the shared counters once per batch, never per message.
//! - The main thread never sleeps blindly: it waits on the executors'
//!   completion channel with a one-second timeout and prints the progress
//!   line at each timeout.
//! - A [`Kicker`] thread sends every executor a no-op signal every
//!   `--kick-us` (2 ms) while the scenario runs. On this kernel a glommio
//!   0.9 executor sometimes sleeps in `io_uring_enter` although completions
//!   (socket readiness, even its own timers) are pending, and glommio 0.9
//!   can also park while its own task queue is runnable (fixed upstream in
//!   glommio/glommio#53). Both were seen here as multi-second stalls of a
//!   pubsub run; the interrupted `io_uring_enter` returns EINTR, glommio
//!   goes round its loop and finds the work, so a stall lasts at most one
//!   kick. A kick costs a few microseconds (about 2.5 % of a core for
//!   an otherwise idle tool).
//! - [`Latch`] waits are futures: a task waiting on a phase never blocks
//!   its executor, so other tasks on that thread keep running. Wakers are
//!   kept in slots freed when the waiting future is dropped, so waits raced
//!   against reads in a loop do not accumulate.

use std::cell::Cell;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

use crate::cli::Common;
use crate::error::BenchError;
use crate::procfs::now_ns;

/// Counters shown by the progress line (and read by some scenarios).
#[derive(Debug, Default)]
pub struct Progress {
    /// Connections currently up.
    pub up: AtomicU64,
    /// Connections the scenario wants up.
    pub target: AtomicU64,
    /// Messages (or packets) sent.
    pub sent: AtomicU64,
    /// Messages received.
    pub received: AtomicU64,
    /// Failures so far.
    pub errors: AtomicU64,
}

impl Progress {
    /// Add to a counter (relaxed: these are statistics).
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Subtract from a counter, saturating at zero.
    #[inline]
    pub fn sub(counter: &AtomicU64, n: u64) {
        let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(n))
        });
    }

    fn snapshot(&self) -> [u64; 5] {
        [
            self.up.load(Ordering::Relaxed),
            self.target.load(Ordering::Relaxed),
            self.sent.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        ]
    }
}

/// Human form of a rate or count: 950, 12.3k, 1.25M.
pub fn si(value: f64) -> String {
    let abs = value.abs();
    if abs >= 1e9 {
        format!("{:.2}G", value / 1e9)
    } else if abs >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if abs >= 1e4 {
        format!("{:.1}k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}

/// The progress line for two snapshots `secs` apart.
pub fn progress_line(elapsed_secs: f64, before: [u64; 5], now: [u64; 5], secs: f64) -> String {
    let [up, target, sent, received, errors] = now;
    let rate = |i: usize| (now[i].saturating_sub(before[i])) as f64 / secs.max(1e-9);
    let mut line = format!("[{elapsed_secs:6.1}s] conns {up}/{target}");
    if sent > 0 {
        line.push_str(&format!(" | sent {}/s ({})", si(rate(2)), si(sent as f64)));
    }
    if received > 0 {
        line.push_str(&format!(
            " | recv {}/s ({})",
            si(rate(3)),
            si(received as f64)
        ));
    }
    line.push_str(&format!(" | errors {errors}"));
    line
}

/// Start `common.threads` executors, run `make(thread)` on each, print the
/// progress line every second until all finish, and return their results
/// in thread order.
pub fn run_executors<T, F, Fut>(
    common: &Common,
    name: &str,
    progress: &Arc<Progress>,
    make: F,
) -> Result<Vec<T>, BenchError>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + 'static,
{
    set_slice(Duration::from_micros(common.slice_us));
    let kicker = Kicker::start(Duration::from_micros(common.kick_us));
    let make = Arc::new(make);
    let (done_tx, done_rx) = mpsc::channel::<usize>();
    let mut handles = Vec::with_capacity(common.threads);
    for thread in 0..common.threads {
        let placement = match common.cpu_of_thread(thread) {
            Some(cpu) => Placement::Fixed(cpu),
            None => Placement::Unbound,
        };
        let make = Arc::clone(&make);
        let done = done_tx.clone();
        let kicker = kicker.handle();
        let mut builder = LocalExecutorBuilder::new(placement);
        if common.spin_us > 0 {
            builder = builder.spin_before_park(Duration::from_micros(common.spin_us));
        }
        let handle = builder
            .name(&format!("{name}-{thread}"))
            .io_memory(common.io_memory_kib * 1024)
            .ring_depth(common.ring_depth)
            .spawn(move || async move {
                let kick = kicker.register();
                let result = make(thread).await;
                drop(kick);
                let _ = done.send(thread);
                result
            })
            .map_err(|e| BenchError::Executor(format!("thread {thread}: {e}")))?;
        handles.push(handle);
    }
    drop(done_tx);

    let start = now_ns();
    let mut last = progress.snapshot();
    let mut last_at = start;
    let mut finished = 0;
    while finished < common.threads {
        match done_rx.recv_timeout(Duration::from_secs(1)) {
            Ok(_) => finished += 1,
            Err(RecvTimeoutError::Timeout) => {
                let now = now_ns();
                let snap = progress.snapshot();
                if !common.quiet {
                    let line = progress_line(
                        (now - start) as f64 / 1e9,
                        last,
                        snap,
                        (now - last_at) as f64 / 1e9,
                    );
                    let _ = writeln!(std::io::stderr(), "{line}");
                }
                last = snap;
                last_at = now;
            }
            // A thread died without reporting: join tells why.
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    let mut results = Vec::with_capacity(handles.len());
    for (thread, handle) in handles.into_iter().enumerate() {
        match handle.join() {
            Ok(r) => results.push(r),
            Err(e) => return Err(BenchError::Executor(format!("thread {thread}: {e}"))),
        }
    }
    Ok(results)
}

/// Let the other tasks of this executor run if the preempt timer says
/// so. Busy loops (a publisher whose writes never block) call this once
/// per batch.
///
/// A plain `yield_now` is not enough: glommio keeps running a task queue's
/// runnable tasks and only visits the reactor (socket readiness, timers)
/// when its preempt timer fires, which a busy loop on a loaded machine can
/// postpone for seconds. So after each slice of `--slice-us` the task
/// sleeps on a 1 µs timer: with every busy task asleep, the executor has to
/// pass through the reactor before any of them runs again.
pub async fn cooperate() {
    let now = now_ns();
    let due = SLICE_START.with(|start| {
        if now.saturating_sub(start.get()) >= SLICE_NS.load(Ordering::Relaxed) {
            start.set(now);
            true
        } else {
            false
        }
    });
    if due || glommio::executor().need_preempt() {
        glommio::timer::sleep(Duration::from_micros(1)).await;
    }
}

/// Busy time after which [`cooperate`] forces a reactor pass, in ns.
static SLICE_NS: AtomicU64 = AtomicU64::new(250_000);

thread_local! {
    static SLICE_START: Cell<u64> = const { Cell::new(0) };
}

/// Set the slice of [`cooperate`] for every executor of this process.
pub fn set_slice(slice: Duration) {
    SLICE_NS.store(slice.as_nanos() as u64, Ordering::Relaxed);
}

/// Threads the [`Kicker`] signals, by registration slot.
type Kicked = Arc<Mutex<Vec<Option<libc::pthread_t>>>>;

/// A thread that interrupts every registered executor thread with a no-op
/// signal once per period (see the module docs). Stops when dropped.
#[derive(Debug)]
pub struct Kicker {
    threads: Kicked,
    stop: Arc<std::sync::atomic::AtomicBool>,
    join: Option<std::thread::JoinHandle<()>>,
}

/// Where executor threads register with a [`Kicker`].
#[derive(Debug, Clone)]
pub struct KickHandle {
    threads: Kicked,
}

/// An executor thread's registration; dropping it (on that thread, before
/// it exits) stops the kicks, so no signal ever targets a finished thread.
#[derive(Debug)]
pub struct Registration {
    threads: Kicked,
    slot: usize,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = threads.get_mut(self.slot) {
            *t = None;
        }
    }
}

impl KickHandle {
    /// Register the calling thread (an executor) for kicks.
    pub fn register(&self) -> Registration {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        threads.push(Some(me));
        Registration {
            threads: Arc::clone(&self.threads),
            slot: threads.len() - 1,
        }
    }
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// The signal used for kicks: a real-time one nobody else here uses.
fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN() + 5
}

impl Kicker {
    /// Start kicking every `period` (zero: never, the thread is not even
    /// started).
    pub fn start(period: Duration) -> Kicker {
        let threads: Kicked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if period.is_zero() {
            return Kicker {
                threads,
                stop,
                join: None,
            };
        }
        // A handler (not SIG_IGN) so that the signal interrupts a blocking
        // io_uring_enter; no SA_RESTART so that the call returns EINTR.
        // SAFETY: sigaction with a handler that does nothing, on a signal
        // reserved for this purpose.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = ignore_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            action.sa_flags = 0;
            libc::sigaction(kick_signal(), &action, std::ptr::null_mut());
        }
        let (t, s) = (Arc::clone(&threads), Arc::clone(&stop));
        let join = std::thread::Builder::new()
            .name("kicker".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    std::thread::sleep(period);
                    let threads = t.lock().unwrap_or_else(|p| p.into_inner());
                    for thread in threads.iter().flatten() {
                        // SAFETY: a registered thread is alive: it removes
                        // itself under this lock before it finishes.
                        unsafe { libc::pthread_kill(*thread, kick_signal()) };
                    }
                }
            })
            .ok();
        Kicker {
            threads,
            stop,
            join,
        }
    }

    /// Where executors register.
    pub fn handle(&self) -> KickHandle {
        KickHandle {
            threads: Arc::clone(&self.threads),
        }
    }
}

impl Drop for Kicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(join) = self.join.take() {
            let _ = join.join();
        }
    }
}

#[derive(Debug, Default)]
struct Waiters {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

/// A count-down latch whose wait is a future, usable across executors.
#[derive(Debug)]
pub struct Latch {
    count: AtomicUsize,
    waiters: Mutex<Waiters>,
}

impl Latch {
    /// A latch that opens after `count` count-downs (0: open already).
    pub fn new(count: usize) -> Arc<Latch> {
        Arc::new(Latch {
            count: AtomicUsize::new(count),
            waiters: Mutex::new(Waiters::default()),
        })
    }

    /// True once open.
    #[inline]
    pub fn is_open(&self) -> bool {
        self.count.load(Ordering::Acquire) == 0
    }

    /// Count down by one (no effect once open); the last one opens it.
    pub fn count_down(&self) {
        let prev = self
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| c.checked_sub(1));
        if prev == Ok(1) {
            self.wake_all();
        }
    }

    /// Open now, whatever the count.
    pub fn open(&self) {
        if self.count.swap(0, Ordering::AcqRel) != 0 {
            self.wake_all();
        }
    }

    fn wake_all(&self) {
        let wakers: Vec<Waker> = {
            let mut w = lock(&self.waiters);
            w.free.clear();
            std::mem::take(&mut w.slots).into_iter().flatten().collect()
        };
        for waker in wakers {
            waker.wake();
        }
    }

    /// Wait until open.
    pub fn wait(&self) -> LatchWait<'_> {
        LatchWait {
            latch: self,
            slot: None,
        }
    }
}

fn lock(m: &Mutex<Waiters>) -> std::sync::MutexGuard<'_, Waiters> {
    // A panic while holding this lock leaves plain data behind: keep going.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Future of [`Latch::wait`].
#[derive(Debug)]
pub struct LatchWait<'a> {
    latch: &'a Latch,
    slot: Option<usize>,
}

impl Future for LatchWait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.latch.is_open() {
            return Poll::Ready(());
        }
        let latch = self.latch;
        let mut w = lock(&latch.waiters);
        // Re-check under the lock: wake_all takes the lock after opening.
        if latch.is_open() {
            return Poll::Ready(());
        }
        match self.slot {
            Some(i) if i < w.slots.len() => match &mut w.slots[i] {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                entry => *entry = Some(cx.waker().clone()),
            },
            _ => {
                let i = match w.free.pop() {
                    Some(i) => {
                        w.slots[i] = Some(cx.waker().clone());
                        i
                    }
                    None => {
                        w.slots.push(Some(cx.waker().clone()));
                        w.slots.len() - 1
                    }
                };
                drop(w);
                self.slot = Some(i);
            }
        }
        Poll::Pending
    }
}

impl Drop for LatchWait<'_> {
    fn drop(&mut self) {
        let Some(i) = self.slot else { return };
        if self.latch.is_open() {
            return;
        }
        let mut w = lock(&self.latch.waiters);
        if i < w.slots.len() && w.slots[i].is_some() {
            w.slots[i] = None;
            w.free.push(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::task::Wake;

    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn poll_once(fut: &mut LatchWait<'_>, flag: &Arc<Flag>) -> Poll<()> {
        let waker = Waker::from(Arc::clone(flag));
        let mut cx = Context::from_waker(&waker);
        Pin::new(fut).poll(&mut cx)
    }

    #[test]
    fn latch_opens_on_last_count_down_and_wakes() {
        let latch = Latch::new(2);
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let mut wait = latch.wait();
        assert!(poll_once(&mut wait, &flag).is_pending());
        latch.count_down();
        assert!(!flag.0.load(Ordering::SeqCst));
        assert!(!latch.is_open());
        latch.count_down();
        assert!(flag.0.load(Ordering::SeqCst), "woken");
        assert!(latch.is_open());
        assert!(poll_once(&mut wait, &flag).is_ready());
        latch.count_down();
        assert!(latch.is_open(), "stays open");
    }

    #[test]
    fn dropped_waits_free_their_slot() {
        let latch = Latch::new(1);
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        for _ in 0..100 {
            let mut wait = latch.wait();
            assert!(poll_once(&mut wait, &flag).is_pending());
            assert!(
                poll_once(&mut wait, &flag).is_pending(),
                "re-poll keeps its slot"
            );
        }
        assert_eq!(lock(&latch.waiters).slots.len(), 1);
        latch.open();
        assert!(latch.is_open());
        assert!(
            !flag.0.load(Ordering::SeqCst),
            "nobody was waiting any more"
        );
    }

    #[test]
    fn open_latch_is_ready_at_once() {
        let latch = Latch::new(0);
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        assert!(poll_once(&mut latch.wait(), &flag).is_ready());
    }

    #[test]
    fn latch_across_threads() {
        let latch = Latch::new(4);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let l = Arc::clone(&latch);
                std::thread::spawn(move || l.count_down())
            })
            .collect();
        for t in threads {
            t.join().expect("count-down thread");
        }
        assert!(latch.is_open());
    }

    #[test]
    fn kicker_interrupts_a_blocked_registered_thread() {
        let kicker = Kicker::start(Duration::from_millis(5));
        let handle = kicker.handle();
        let blocked = std::thread::spawn(move || {
            let registration = handle.register();
            // Blocks up to 10 s unless a kick interrupts it.
            // SAFETY: poll on zero descriptors only sleeps.
            let rc = unsafe { libc::poll(std::ptr::null_mut(), 0, 10_000) };
            let errno = std::io::Error::last_os_error().raw_os_error();
            drop(registration);
            (rc, errno)
        });
        let (rc, errno) = blocked.join().expect("thread");
        assert_eq!((rc, errno), (-1, Some(libc::EINTR)));
        assert!(
            lock_kicked(&kicker).iter().all(Option::is_none),
            "deregistered"
        );
    }

    fn lock_kicked(k: &Kicker) -> Vec<Option<libc::pthread_t>> {
        k.threads.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    #[test]
    fn human_numbers() {
        assert_eq!(si(950.0), "950");
        assert_eq!(si(12_345.0), "12.3k");
        assert_eq!(si(1_250_000.0), "1.25M");
        assert_eq!(si(3.2e9), "3.20G");
    }

    #[test]
    fn progress_line_shows_rates() {
        let line = progress_line(2.0, [0, 10, 0, 0, 0], [10, 10, 2_000_000, 0, 1], 1.0);
        assert_eq!(
            line,
            "[   2.0s] conns 10/10 | sent 2.00M/s (2.00M) | errors 1"
        );
    }
}
