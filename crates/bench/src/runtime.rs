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
//! - Nothing interrupts an executor from outside (no signals, no ticker
//!   tasks): each one sleeps until its own I/O, timers or cross-thread
//!   wakes need it. Two things make that safe with glommio 0.9:
//!   - Every executor comes from [`executor_builder`], whose preempt period
//!     ([`PREEMPT_TIMER`], 100 ms) is set explicitly. glommio 0.9 parks an
//!     executor that still has runnable tasks when its preempt timer has
//!     already fired by the first check of a loop turn (fixed upstream by
//!     glommio/glommio#53, in no release): with a period that long, the
//!     thread would have to be descheduled for 100 ms at exactly that
//!     point. `tests/glommio_park.rs` reproduces the park (periods up to
//!     a few ms park on this machine under load) and checks that the
//!     tool's configuration does not.
//!   - Busy loops get their reactor passes from [`cooperate`], not from
//!     the preempt timer.
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
use crate::hist::Histogram;
use crate::procfs::now_ns;
use crate::report::SeriesPoint;

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
    /// Messages missing so far as the subscribers see them: sequence gaps,
    /// net of gaps filled later (a live estimate for the time series).
    pub lost: AtomicU64,
    /// Latencies of the current interval (ns), merged in from each
    /// executor's [`interval_record`] at most every
    /// [`INTERVAL_FLUSH_NS`]; the main thread takes it once a second.
    pub interval: Mutex<Histogram>,
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

    fn snapshot(&self) -> [u64; 6] {
        [
            self.up.load(Ordering::Relaxed),
            self.target.load(Ordering::Relaxed),
            self.sent.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
            self.lost.load(Ordering::Relaxed),
        ]
    }

    /// Take the interval's latencies, leaving it empty.
    fn take_interval(&self) -> Histogram {
        std::mem::take(&mut *self.interval.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// How often an executor merges its interval latencies into
/// [`Progress::interval`] (from the recording path: no ticker task).
pub const INTERVAL_FLUSH_NS: u64 = 100_000_000;

thread_local! {
    /// This executor's latencies since its last flush, and when that was.
    static INTERVAL: std::cell::RefCell<(Histogram, u64)> =
        std::cell::RefCell::new((Histogram::new(), 0));
}

/// Record one latency (ns) for the time series' per-second percentiles.
/// Call [`interval_flush`] once per batch after recording.
#[inline]
pub fn interval_record(ns: u64) {
    INTERVAL.with(|i| i.borrow_mut().0.record(ns));
}

/// Merge this executor's interval latencies into `progress` if the last
/// merge is [`INTERVAL_FLUSH_NS`] old (`force`: now).
pub fn interval_flush(progress: &Progress, now: u64, force: bool) {
    INTERVAL.with(|i| {
        let mut i = i.borrow_mut();
        if i.0.count() == 0 || (!force && now.saturating_sub(i.1) < INTERVAL_FLUSH_NS) {
            return;
        }
        i.1 = now;
        let local = std::mem::take(&mut i.0);
        progress
            .interval
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .merge(&local);
    });
}

/// The time series of the last [`run_executors`] of this process (one
/// run at a time: the command's case; [`crate::run`] takes it).
static SERIES: Mutex<Vec<SeriesPoint>> = Mutex::new(Vec::new());

/// Take the last run's time series.
pub fn take_series() -> Vec<SeriesPoint> {
    std::mem::take(&mut *SERIES.lock().unwrap_or_else(|p| p.into_inner()))
}

/// The time series point for two snapshots `secs` apart and the
/// interval's latencies.
pub fn series_point(
    elapsed_secs: f64,
    before: [u64; 6],
    now: [u64; 6],
    secs: f64,
    interval: &Histogram,
) -> SeriesPoint {
    let [up, target, sent, received, errors, lost] = now;
    let rate = |i: usize| (now[i].saturating_sub(before[i])) as f64 / secs.max(1e-9);
    let summary = interval.summary();
    SeriesPoint {
        elapsed_s: elapsed_secs,
        conns_up: up,
        conns_target: target,
        sent,
        sent_per_s: rate(2),
        received,
        received_per_s: rate(3),
        errors,
        lost,
        p50_us: summary.map(|s| s.p50 as f64 / 1000.0),
        p99_us: summary.map(|s| s.p99 as f64 / 1000.0),
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
pub fn progress_line(elapsed_secs: f64, before: [u64; 6], now: [u64; 6], secs: f64) -> String {
    let [up, target, sent, received, errors, _] = now;
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

/// The header of `--csv`'s time series.
pub const CSV_HEADER: &str = "elapsed_s,conns_up,conns_target,sent,sent_per_s,received,\
received_per_s,errors,lost,p50_us,p99_us";

/// One `--csv` row (percentiles empty when the interval had no sample).
pub fn csv_row(p: &SeriesPoint) -> String {
    let us = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.1}"));
    format!(
        "{:.3},{},{},{},{:.1},{},{:.1},{},{},{},{}",
        p.elapsed_s,
        p.conns_up,
        p.conns_target,
        p.sent,
        p.sent_per_s,
        p.received,
        p.received_per_s,
        p.errors,
        p.lost,
        us(p.p50_us),
        us(p.p99_us)
    )
}

/// `--csv`: the file the time series goes to, if asked; a file that
/// cannot be written is an error before the run starts.
struct Series(Option<std::io::BufWriter<std::fs::File>>);

impl Series {
    fn open(common: &Common) -> Result<Series, BenchError> {
        let Some(path) = &common.csv else {
            return Ok(Series(None));
        };
        let file = std::fs::File::create(path).map_err(|source| BenchError::Io {
            what: format!("--csv {}", path.display()),
            source,
        })?;
        let mut out = std::io::BufWriter::new(file);
        let _ = writeln!(out, "{CSV_HEADER}");
        Ok(Series(Some(out)))
    }

    fn row(&mut self, point: &SeriesPoint) {
        if let Some(out) = self.0.as_mut() {
            let _ = writeln!(out, "{}", csv_row(point));
            let _ = out.flush();
        }
    }
}

/// glommio's preempt period for every executor of the tool: how long a
/// task queue runs before the executor goes back to the reactor on its
/// own (glommio's default, set explicitly so that it cannot drift). It
/// must stay far above the periods at which glommio 0.9 parks with
/// runnable tasks (see the module docs); busy loops get their reactor
/// passes from [`cooperate`] instead.
pub const PREEMPT_TIMER: Duration = Duration::from_millis(100);

/// The configuration every executor of the tool starts from (callers add
/// name, memory and ring depth).
pub fn executor_builder(placement: Placement) -> LocalExecutorBuilder {
    LocalExecutorBuilder::new(placement).preempt_timer(PREEMPT_TIMER)
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
    let mut series = Series::open(common)?;
    let mut points = Vec::new();
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
        let progress_of_thread = Arc::clone(progress);
        let mut builder = executor_builder(placement);
        if common.spin_us > 0 {
            builder = builder.spin_before_park(Duration::from_micros(common.spin_us));
        }
        let handle = builder
            .name(&format!("{name}-{thread}"))
            .io_memory(common.io_memory_kib * 1024)
            .ring_depth(common.ring_depth)
            .spawn(move || async move {
                let result = make(thread).await;
                interval_flush(&progress_of_thread, now_ns(), true);
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
                let (elapsed, secs) = ((now - start) as f64 / 1e9, (now - last_at) as f64 / 1e9);
                if !common.quiet {
                    let line = progress_line(elapsed, last, snap, secs);
                    let _ = writeln!(std::io::stderr(), "{line}");
                }
                let point = series_point(elapsed, last, snap, secs, &progress.take_interval());
                series.row(&point);
                points.push(point);
                last = snap;
                last_at = now;
            }
            // A thread died without reporting: join tells why.
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    let now = now_ns();
    let (elapsed, secs) = ((now - start) as f64 / 1e9, (now - last_at) as f64 / 1e9);
    let point = series_point(
        elapsed,
        last,
        progress.snapshot(),
        secs,
        &progress.take_interval(),
    );
    series.row(&point);
    points.push(point);
    *SERIES.lock().unwrap_or_else(|p| p.into_inner()) = points;
    let mut results = Vec::with_capacity(handles.len());
    for (thread, handle) in handles.into_iter().enumerate() {
        match handle.join() {
            Ok(r) => results.push(r),
            Err(e) => return Err(BenchError::Executor(format!("thread {thread}: {e}"))),
        }
    }
    Ok(results)
}

/// Share the executor fairly and give the reactor a pass once per slice.
/// Busy loops (a publisher whose writes never block, a subscriber whose
/// socket is always readable) call this once per batch.
///
/// glommio 0.9 runs a task queue's runnable tasks until its preempt timer
/// fires ([`PREEMPT_TIMER`], deliberately long) and only then collects I/O
/// completions and timers; reads and writes that succeed at once never
/// yield. So:
/// - within a slice (`--slice-us` of busy time on this thread) the task
///   yields, and the busy tasks of the thread take turns batch by batch;
/// - once the slice is over, every task that calls `cooperate` sleeps on a
///   timer until the reactor has run ([`ReactorPass`]): with all busy
///   tasks asleep the queue runs dry, the executor polls its rings and
///   fires the timers, and the first task to wake starts the next slice.
///
/// (Before, only the task that noticed the end of the slice slept, on
/// `glommio::timer::sleep(1 µs)`, which sometimes did not sleep at all, and
/// the other busy tasks ran on: the reactor got one pass per slice *per
/// busy task*. With 64 busy tasks a 1 ms timer fired 16 ms late in a
/// release build; now 0.13 ms.)
pub async fn cooperate() {
    let now = now_ns();
    let pass = SLICE.with(|slice| {
        if !slice.pass_due.get()
            && now.saturating_sub(slice.start.get()) >= SLICE_NS.load(Ordering::Relaxed)
        {
            slice.pass_due.set(true);
        }
        slice.pass_due.get().then(|| slice.epoch.get())
    });
    if pass.is_none() && !glommio::executor().need_preempt() {
        futures_lite::future::yield_now().await;
        return;
    }
    ReactorPass::default().await;
    // Only the reactor fires timers, so it has run since this task went to
    // sleep: the first task back from the pass it asked for starts the
    // next slice.
    if let Some(epoch) = pass {
        SLICE.with(|slice| {
            if slice.pass_due.get() && slice.epoch.get() == epoch {
                slice.pass_due.set(false);
                slice.epoch.set(epoch.wrapping_add(1));
                slice.start.set(now_ns());
            }
        });
    }
}

/// Sleep until the reactor has run: on a timer that is due almost at once
/// but is sure to be registered with the reactor.
///
/// `glommio::timer::sleep(1 µs)` is not that: a glommio 0.9 `Timer` whose
/// deadline has passed by its first poll is ready at once, never reaches
/// the reactor and does not yield at all, which happens whenever more than
/// a microsecond goes by between creating and polling it (most of the time
/// in debug builds, after an interrupt in release ones). So the first poll
/// retries with a doubled delay until the timer is really pending.
#[derive(Debug, Default)]
struct ReactorPass {
    timer: Option<glommio::timer::Timer>,
}

impl Future for ReactorPass {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(timer) = &mut self.timer {
            return Pin::new(timer).poll(cx).map(|_| ());
        }
        let mut delay = Duration::from_micros(1);
        loop {
            let mut timer = glommio::timer::Timer::new(delay);
            if Pin::new(&mut timer).poll(cx).is_pending() {
                self.timer = Some(timer);
                return Poll::Pending;
            }
            delay *= 2;
        }
    }
}

/// Busy time after which [`cooperate`] forces a reactor pass, in ns.
static SLICE_NS: AtomicU64 = AtomicU64::new(250_000);

/// This thread's [`cooperate`] slice.
struct Slice {
    /// When the current slice began (ns, [`now_ns`]).
    start: Cell<u64>,
    /// The slice is over and the reactor has not run since.
    pass_due: Cell<bool>,
    /// Slices ended so far (tells the pass a task slept for from a later one).
    epoch: Cell<u64>,
}

thread_local! {
    static SLICE: Slice = const {
        Slice {
            start: Cell::new(0),
            pass_due: Cell::new(false),
            epoch: Cell::new(0),
        }
    };
}

/// Set the slice of [`cooperate`] for every executor of this process.
pub fn set_slice(slice: Duration) {
    SLICE_NS.store(slice.as_nanos() as u64, Ordering::Relaxed);
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

    /// Lateness of a 1 ms timer, in ns, on an executor whose other tasks
    /// are `busy` loops that only call [`cooperate`]: the median of 40.
    fn timer_lateness_among_busy_tasks(busy: usize) -> u64 {
        let ex = executor_builder(Placement::Unbound)
            .io_memory(256 * 1024)
            .make()
            .expect("executor");
        ex.run(async move {
            let stop = std::rc::Rc::new(Cell::new(false));
            let tasks: Vec<_> = (0..busy)
                .map(|_| {
                    let stop = std::rc::Rc::clone(&stop);
                    glommio::spawn_local(async move {
                        while !stop.get() {
                            cooperate().await;
                        }
                    })
                })
                .collect();
            let mut late = Vec::new();
            for _ in 0..40 {
                let start = now_ns();
                glommio::timer::sleep(Duration::from_millis(1)).await;
                late.push((now_ns() - start).saturating_sub(1_000_000));
            }
            stop.set(true);
            for t in tasks {
                t.await;
            }
            late.sort_unstable();
            late[late.len() / 2]
        })
    }

    #[test]
    fn cooperate_gives_the_reactor_a_pass_every_slice_however_many_tasks_are_busy() {
        // 64 busy tasks: one pass per slice per busy task (the old
        // `cooperate`) made the timer 16-19 ms late; one pass per slice
        // keeps it within about a slice (250 us) plus a debug build's
        // overheads.
        let late = timer_lateness_among_busy_tasks(64);
        assert!(late < 3_000_000, "median lateness {late} ns");
    }

    #[test]
    fn human_numbers() {
        assert_eq!(si(950.0), "950");
        assert_eq!(si(12_345.0), "12.3k");
        assert_eq!(si(1_250_000.0), "1.25M");
        assert_eq!(si(3.2e9), "3.20G");
    }

    #[test]
    fn csv_rows_hold_the_counters_and_the_rates_since_the_last_row() {
        let none = Histogram::new();
        let point = series_point(
            2.5,
            [5, 10, 100, 50, 0, 0],
            [10, 10, 2_100, 1_050, 1, 3],
            2.0,
            &none,
        );
        let row = csv_row(&point);
        assert_eq!(row, "2.500,10,10,2100,1000.0,1050,500.0,1,3,,");
        assert_eq!(
            row.split(',').count(),
            CSV_HEADER.split(',').count(),
            "one value per column"
        );
        // Counters never go back; a snapshot taken late does not underflow.
        let row = csv_row(&series_point(
            1.0,
            [0, 0, 10, 10, 0, 0],
            [0, 0, 5, 5, 0, 0],
            0.0,
            &none,
        ));
        assert!(row.contains(",5,0.0,5,0.0,"), "{row}");
    }

    #[test]
    fn series_points_carry_the_interval_percentiles() {
        let mut hist = Histogram::new();
        for us in 1..=100u64 {
            hist.record(us * 1000);
        }
        let point = series_point(1.0, [0; 6], [1, 1, 100, 100, 0, 0], 1.0, &hist);
        let p50 = point.p50_us.expect("a median");
        let p99 = point.p99_us.expect("a p99");
        assert!((49.0..=51.0).contains(&p50), "{p50}");
        assert!((98.0..=100.0).contains(&p99), "{p99}");
        assert!(csv_row(&point).ends_with(&format!(",{p50:.1},{p99:.1}")));
    }

    #[test]
    fn progress_line_shows_rates() {
        let line = progress_line(2.0, [0, 10, 0, 0, 0, 0], [10, 10, 2_000_000, 0, 1, 0], 1.0);
        assert_eq!(
            line,
            "[   2.0s] conns 10/10 | sent 2.00M/s (2.00M) | errors 1"
        );
    }
}
