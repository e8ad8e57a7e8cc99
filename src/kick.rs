//! The stall guard: a thread that interrupts every shard's sleep on a
//! fixed period.
//!
//! On this kernel (6.x) a glommio 0.9 executor sometimes sleeps in
//! `io_uring_enter` although a completion it waits for is already posted
//! (socket readiness on its main ring, seen as multi-second stalls of a
//! cross-shard publish or of a busy 1->1 stream while both cores were
//! saturated). A signal interrupts the sleep (EINTR), glommio goes round its
//! loop and finds the work, so with the guard a missed wake-up lasts at most
//! one period instead of until the next unrelated event.
//!
//! The signal is SIGURG with a handler that does nothing (installed once per
//! process, without SA_RESTART). A kick costs a shard about 100 us (glommio
//! re-arms its timers on every wake), far too much to send blindly every few
//! milliseconds to an idle shard, so the guard looks every period and kicks
//! a shard only on evidence: its inbox holds messages that were there a
//! period ago too, or it was busy a period ago and is silent now (a busy
//! shard that stops dead is the stall seen under load). Otherwise each
//! shard gets a kick every 240 ms as a last resort. The guard thread itself
//! wakes once a period (about 0.1 % of a core at 20 ms). `--stall-guard-ms 0`
//! turns the guard off.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::Duration;

extern "C" fn ignore_kick(_: libc::c_int) {}

fn install_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: a plain sigaction for SIGURG with a handler that touches
        // nothing; no SA_RESTART, so a blocking syscall returns EINTR.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = ignore_kick as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            action.sa_flags = 0;
            libc::sigaction(libc::SIGURG, &action, std::ptr::null_mut());
        }
    });
}

/// What the guard watches of one shard.
pub(crate) struct Watch {
    /// Bumped by the shard whenever it does anything.
    pub(crate) activity: Arc<std::sync::atomic::AtomicU64>,
    /// Messages waiting in the shard's inbox.
    pub(crate) backlog: Box<dyn Fn() -> usize + Send>,
}

/// The registered shard threads; kicks are sent under the lock so a thread
/// is never signalled after it has unregistered.
#[derive(Default)]
struct Threads {
    list: Mutex<Vec<Option<libc::pthread_t>>>,
}

/// Periods between last-resort kicks of a quiet shard (about four a second
/// at the default 20 ms period): a stall with no visible evidence (a
/// missed accept or read on an otherwise idle shard) lasts at most this.
const HEARTBEAT_PERIODS: u64 = 12;

/// Events in one period that make a shard "busy": a busy shard that then
/// shows no activity at all for a period gets kicked. Light traffic (a
/// fleet's PINGREQs) stays below it and costs no kicks.
const BUSY_EVENTS: u64 = 64;

/// Handle of the guard thread; stops it when dropped.
pub(crate) struct StallGuard {
    threads: Arc<Threads>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// A shard's registration; unregisters when dropped (on the shard thread).
pub(crate) struct Registration {
    threads: Arc<Threads>,
    slot: usize,
}

impl StallGuard {
    /// Starts the guard with `period` watching `shards` (in shard order,
    /// matching the order shards register); `None` for a zero period.
    pub(crate) fn start(period: Duration, shards: Vec<Watch>) -> Option<StallGuard> {
        if period.is_zero() {
            return None;
        }
        install_handler();
        let threads = Arc::new(Threads::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let threads = threads.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("ringmq-stall-guard".into())
                .spawn(move || {
                    // Per shard: activity seen at the last two looks, and
                    // the backlog seen at the last look.
                    let mut seen: Vec<(u64, u64, usize)> = vec![(0, 0, 0); shards.len()];
                    let mut round: u64 = 0;
                    while !stop.load(Ordering::Acquire) {
                        std::thread::park_timeout(period);
                        round += 1;
                        let Ok(list) = threads.list.lock() else {
                            return;
                        };
                        for (i, thread) in list.iter().enumerate() {
                            let (Some(thread), Some(watch)) = (thread, shards.get(i)) else {
                                continue;
                            };
                            let now = watch.activity.load(Ordering::Relaxed);
                            let backlog = (watch.backlog)();
                            let (last, before, last_backlog) = seen[i];
                            let stuck_backlog = backlog > 0 && last_backlog > 0 && now == last;
                            let stopped_dead =
                                now == last && last.wrapping_sub(before) >= BUSY_EVENTS;
                            let heartbeat =
                                round % HEARTBEAT_PERIODS == i as u64 % HEARTBEAT_PERIODS;
                            if stuck_backlog || stopped_dead || heartbeat {
                                // SAFETY: the thread is registered, so alive.
                                unsafe { libc::pthread_kill(*thread, libc::SIGURG) };
                            }
                            seen[i] = (now, last, backlog);
                        }
                    }
                })
                .ok()?
        };
        Some(StallGuard {
            threads,
            stop,
            thread: Some(thread),
        })
    }

    /// A handle shards can register through.
    pub(crate) fn handle(&self) -> GuardHandle {
        GuardHandle {
            threads: self.threads.clone(),
        }
    }
}

/// What a shard thread needs to register itself.
#[derive(Clone)]
pub(crate) struct GuardHandle {
    threads: Arc<Threads>,
}

impl GuardHandle {
    /// Registers the calling (shard) thread until the registration drops.
    pub(crate) fn register(&self) -> Registration {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        let mut list = self
            .threads
            .list
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        list.push(Some(me));
        Registration {
            threads: self.threads.clone(),
            slot: list.len() - 1,
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut list) = self.threads.list.lock() {
            list[self.slot] = None;
        }
    }
}

impl Drop for StallGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}
